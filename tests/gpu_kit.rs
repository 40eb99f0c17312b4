//! The GPU kit as whoever next has a GPU will use it: `scripts/gpu-kit` packs it, and
//! `scripts/gpu-proof` runs it from a clean environment with only `LD_LIBRARY_PATH`-style access
//! to libtorch. Here, without CUDA, the CUDA rows must say "skipped" and why, and the CPU half
//! must pass.
mod common;
use common::*;
use std::process::Command;

#[test]
fn the_kit_packs_and_its_proof_runs_from_a_clean_environment() {
    let root = root();
    let dir = tempfile::tempdir().unwrap();
    let kit = dir.path().join("kit");
    let pack = Command::new(root.join("scripts/gpu-kit"))
        .env("GEOSR_KIT", &kit)
        .env("GEOSR_KIT_NO_BUILD", "1")
        .current_dir(&root)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&pack.stdout).to_string() + &String::from_utf8_lossy(&pack.stderr);
    assert!(pack.status.success(), "{text}");
    for f in [
        "gpu-proof",
        "crop.safetensors",
        "vgg16-relu2_2.safetensors",
        "configs.json",
    ] {
        assert!(kit.join(f).is_file(), "{f} missing from the kit: {text}");
    }
    let size: u64 = std::fs::read_dir(&kit)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(
        size < 32 << 20,
        "the kit must leave room in a 64 MiB call: {size} bytes"
    );

    let torch_lib = std::fs::canonicalize(root.join(".libtorch/lib/libtorch_cpu.so"))
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let out = dir.path().join("out");
    let run = Command::new(root.join("scripts/gpu-proof"))
        .arg(&out)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("GEOSR_KIT", &kit)
        .env("GEOSR_TORCH_LIB", &torch_lib)
        .env("GEOSR_PROOF_ARGS", "--cpu-steps 12")
        .current_dir(&root)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&run.stdout).to_string() + &String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{text}");
    let md = std::fs::read_to_string(out.join("proof.md")).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("proof.json")).unwrap()).unwrap();
    if json["geosr"]["cuda_skipped"].is_null() {
        eprintln!("this host has CUDA: the CPU-only report is not checked");
        return;
    }
    assert!(
        md.contains("CUDA measurements skipped: cuda was asked for but"),
        "{md}"
    );
    assert!(
        md.contains("| loss falls (12 steps on cpu) | pass |"),
        "{md}"
    );
    assert_eq!(json["geosr"]["training"][0]["steps"], 12, "{json}");
}
