//! `gpu-proof`: geosr's training step and inference on CUDA, checked against the CPU and timed
//! (see `geosr_torch::proof`). Packed by `scripts/gpu-kit`, run by `scripts/gpu-proof`.
//!
//! ```text
//! gpu-proof --out DIR [--kit DIR] [--card NAME] [--pytorch FILE] [--steps N] [--large-steps N] [--cpu-steps N]
//! gpu-proof --configs     the configurations and step counts, as JSON (for the PyTorch reference)
//! ```
use eyre::{bail, eyre, WrapErr};
use geosr_torch::proof::{self, ProofOptions};
use std::path::PathBuf;

fn main() -> std::process::ExitCode {
    geosr::node::run("gpu-proof", command)
}

fn command() -> eyre::Result<()> {
    let exe_dir = std::env::current_exe()?.parent().map(PathBuf::from);
    let mut opts = ProofOptions::new(exe_dir.unwrap_or_default());
    let (mut out, mut card, mut pytorch) = (None, "this host".to_string(), None);
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| eyre!("{flag} needs a value"));
        let count = |v: String| {
            v.parse::<u64>()
                .wrap_err_with(|| format!("{v} is not a count"))
        };
        match flag.as_str() {
            "--kit" => opts.kit = value()?.into(),
            "--out" => out = Some(PathBuf::from(value()?)),
            "--card" => card = value()?,
            "--pytorch" => pytorch = Some(PathBuf::from(value()?)),
            "--steps" => opts.train_steps = count(value()?)?,
            "--large-steps" => opts.large_steps = count(value()?)?,
            "--cpu-steps" => opts.cpu_steps = count(value()?)?,
            "--configs" => {
                println!("{}", serde_json::to_string_pretty(&opts.plan())?);
                return Ok(());
            }
            other => bail!("unknown argument `{other}` (see the usage in scripts/gpu-proof)"),
        }
    }
    let out = out.ok_or_else(|| eyre!("--out DIR is required"))?;
    let torch = match &pytorch {
        Some(p) if p.is_file() => Some(proof::read_pytorch(p)?),
        _ => None,
    };
    let report = proof::run_proof(&opts)?;
    let md = proof::write_report(&out, &report, &card, torch.as_ref())?;
    print!("{md}");
    if !proof::all_passed(&report) {
        bail!("a check failed (see {})", out.join("proof.md").display());
    }
    Ok(())
}
