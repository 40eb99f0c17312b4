//! The fault matrix: every case runs through real dora graphs and must end the same way — a
//! non-zero exit of `dora start`, one line naming the cause, nothing at the output path, no
//! temporary file left — or, for the training kills, a run that resumes from its last complete
//! checkpoint and ends with the weights of a run that was never interrupted.
//!
//! Run with `--nocapture` to see the table of cases and outcomes (BENCHMARKS.md, RELIABILITY).
//! Needs `scripts/setup`; the full-disk and read-only cases need root (tmpfs mounts) and are
//! skipped with a message otherwise.
mod common;
#[path = "common/graphs.rs"]
mod graphs;
use common::*;
use graphs::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Lines a user must never see: dora's wrapper of a peer's failure, Rust Debug formatting,
/// panics, backtraces nobody asked for.
const NOISE: &[&str] = &[
    "internal error",
    "failed to init event stream",
    "Some(",
    "panicked",
    "Stack backtrace",
    "RUST_BACKTRACE",
];

fn row(case: &str, outcome: &str) {
    println!("| {case} | {outcome} |");
}

/// The one line of a failed run that names the cause: the `Error:` line of the stage that failed.
fn error_line<'a>(log: &'a str, needle: &str) -> Option<&'a str> {
    log.lines()
        .filter(|l| l.contains("Error: ") || l.contains("failed:"))
        .find(|l| l.contains(needle))
}

/// The temporaries (`.<name>.<pid>.tmp…`) in `dir`.
fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.') && n.contains(".tmp"))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `graph` with `settings` and checks the failure contract; returns the log.
fn must_fail(
    case: &str,
    graph: &str,
    settings: &Path,
    cause: &str,
    output: Option<&Path>,
) -> String {
    let (ok, log) = run_graph_with(graph, settings, &[], 300);
    assert!(!ok, "{case}: the graph should fail:\n{log}");
    let line = error_line(&log, cause)
        .unwrap_or_else(|| panic!("{case}: no error line naming `{cause}` in:\n{log}"));
    for noise in NOISE {
        assert!(
            !log.contains(noise),
            "{case}: `{noise}` in the output:\n{log}"
        );
    }
    if let Some(out) = output {
        assert!(!out.exists(), "{case}: {} exists", out.display());
        let dir = out.parent().unwrap();
        assert!(
            temporaries(dir).is_empty(),
            "{case}: temporaries left: {:?}",
            temporaries(dir)
        );
    }
    let shown = line.split("Error: ").last().unwrap_or(line).trim();
    row(case, &format!("fails: `{shown}`"));
    log
}

/// A model for the inference cases: 3 bands, ×2, one U-Net level.
fn small_model(dir: &Path) -> PathBuf {
    let scene = dir.join("train-scene.tif");
    uint16_scene(&scene, 3, 160, 128);
    let run = dir.join("runs/model");
    let s = write_settings(dir, "model", &tiny(&scene, &run, "steps: 4\n"));
    let (ok, log) = run_graph("graphs/train.yml", &s);
    assert!(ok, "training the test model failed:\n{log}");
    run
}

/// Settings of an inference run; `extra` lines win over the defaults here.
fn infer_settings(
    dir: &Path,
    name: &str,
    input: &Path,
    model: Option<&Path>,
    out: &Path,
    extra: &str,
) -> PathBuf {
    let mut lines = vec![
        format!("input: {}", input.display()),
        format!("output: {}", out.display()),
        format!("log_dir: {}", dir.join("runs").join(name).display()),
        "factor: 2".into(),
        "threads: 1".into(),
        "wait_timeout_s: 60".into(),
    ];
    if let Some(m) = model {
        lines.push(format!("model: {}", m.display()));
    }
    let given: Vec<&str> = extra.lines().filter_map(|l| l.split(':').next()).collect();
    lines.retain(|l| !given.contains(&l.split(':').next().unwrap_or("")));
    write_settings(dir, name, &format!("{}\n{extra}", lines.join("\n")))
}

#[test]
fn bad_inputs_fail_with_one_line_and_write_nothing() {
    let _daemon = Daemon::up();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = small_model(d);
    let scene = d.join("scene.tif");
    uint16_scene(&scene, 3, 160, 128);
    let out = d.join("out/sr.tif");

    // Inputs that are not what they claim.
    let truncated = d.join("truncated.tif");
    let bytes = std::fs::read(&scene).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let text = d.join("text.tif");
    std::fs::write(&text, "this is text, not a raster").unwrap();
    let gray = d.join("gray.tif");
    uint16_scene(&gray, 1, 64, 64);
    for (case, input, cause) in [
        ("truncated TIFF", &truncated, "truncated.tif"),
        (
            "text file named .tif",
            &text,
            "text.tif: GDAL cannot open it as a raster",
        ),
        (
            "missing file",
            &d.join("nowhere.tif"),
            "nowhere.tif: no such file",
        ),
        (
            "band-count mismatch",
            &gray,
            "has 1 bands; the model was trained on 3",
        ),
    ] {
        let s = infer_settings(d, "bad-input", input, Some(&model), &out, "");
        must_fail(case, "graphs/infer.yml", &s, cause, Some(&out));
    }

    // A corrupt ONNX export.
    let broken = d.join("broken-model");
    std::fs::create_dir_all(&broken).unwrap();
    for f in ["model.json", "model.safetensors", "optimizer.safetensors"] {
        std::fs::copy(model.join(f), broken.join(f)).unwrap();
    }
    std::fs::write(broken.join("model.onnx"), b"\x08\x07garbage, not protobuf").unwrap();
    let s = infer_settings(
        d,
        "corrupt-onnx",
        &scene,
        Some(&broken),
        &out,
        "engine: ort\n",
    );
    must_fail(
        "corrupt model.onnx",
        "graphs/infer.yml",
        &s,
        "model.onnx",
        Some(&out),
    );
    // Weights cut short (the default engine reads them).
    let weights = std::fs::read(model.join("model.safetensors")).unwrap();
    std::fs::write(
        broken.join("model.safetensors"),
        &weights[..weights.len() / 2],
    )
    .unwrap();
    let s = infer_settings(d, "corrupt-weights", &scene, Some(&broken), &out, "");
    must_fail(
        "truncated model.safetensors",
        "graphs/infer.yml",
        &s,
        "model.safetensors",
        Some(&out),
    );

    // Settings a stage cannot start with.
    let bad_yaml = d.join("bad-yaml.yml");
    std::fs::write(&bad_yaml, "input: [unclosed\nfactor: 4\n").unwrap();
    must_fail(
        "bad settings YAML",
        "graphs/upscale-classic.yml",
        &bad_yaml,
        "bad-yaml.yml",
        None,
    );
    let s = infer_settings(d, "unknown-key", &scene, None, &out, "stpes: 7\n");
    must_fail(
        "unknown settings key",
        "graphs/upscale-classic.yml",
        &s,
        "setting `stpes`: no such setting; did you mean `steps`?",
        Some(&out),
    );
    let s = write_settings(
        d,
        "factor",
        &format!(
            "input: {}\noutput: {}\nlog_dir: {}\nfactor: 5\n",
            scene.display(),
            out.display(),
            d.join("runs/factor").display()
        ),
    );
    must_fail(
        "factor not allowed",
        "graphs/upscale-classic.yml",
        &s,
        "5 is not one of 2, 3, 4, 8",
        Some(&out),
    );

    // Training inputs that cannot give chips, and weights that are not there.
    let small = d.join("small.tif");
    uint16_scene(&small, 3, 24, 24);
    let empty = d.join("all-nodata.tif");
    geosr_raster::raster::write_geotiff::<u16>(
        &empty,
        3,
        96,
        96,
        &vec![0.0; 3 * 96 * 96],
        GT,
        &utm21n(),
        None,
    )
    .unwrap();
    for (case, input, extra, cause) in [
        (
            "raster smaller than a chip",
            &small,
            "",
            "smaller than one chip",
        ),
        (
            "all-nodata raster (training)",
            &empty,
            "",
            "yields 0 usable chip(s)",
        ),
        (
            "missing VGG weights",
            &scene,
            "vgg_weights: /nonexistent/vgg16.safetensors\n",
            "/nonexistent/vgg16.safetensors: not found",
        ),
    ] {
        let run = d.join("runs/train-bad");
        let s = write_settings(
            d,
            "train-bad",
            &tiny(input, &run, &format!("steps: 3\n{extra}")),
        );
        must_fail(case, "graphs/train.yml", &s, cause, None);
        assert!(
            !run.join("model.json").exists() && !run.join("checkpoints").exists(),
            "{case}: nothing half-written"
        );
        let _ = std::fs::remove_dir_all(&run);
    }

    // An all-nodata raster is a legitimate inference input (a scene outside the sensor's
    // swath): the output is nodata everywhere.
    let s = infer_settings(d, "nodata-infer", &empty, Some(&model), &out, "");
    let (ok, log) = run_graph("graphs/infer.yml", &s);
    assert!(ok, "all-nodata inference:\n{log}");
    let r = geosr_raster::raster::RasterSource::open(&out, &[]).unwrap();
    let v = r.read_window(0, 0, 192, 192).unwrap();
    assert!(v.iter().all(|x| *x == 0.0), "nodata (0) everywhere");
    row(
        "all-nodata raster (inference)",
        "succeeds: the output is nodata everywhere, like gdalwarp's",
    );
}

/// A tmpfs of `size` mounted at `dir` (read-only with `ro`), unmounted on drop. None when this
/// process may not mount (not root).
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, size: &str, ro: bool) -> Option<Self> {
        std::fs::create_dir_all(dir).unwrap();
        let opts = format!("size={size}{}", if ro { ",ro" } else { "" });
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &opts, "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Mount(dir.to_path_buf()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn full_and_read_only_outputs_fail_cleanly() {
    let _daemon = Daemon::up();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let scene = d.join("scene.tif");
    uint16_scene(&scene, 3, 512, 512);
    let Some(full) = Mount::tmpfs(&d.join("full"), "1m", false) else {
        println!("skipped: mounting a tmpfs needs root (the full-disk and read-only cases)");
        return;
    };
    // A 1 MiB filesystem for a 24 MiB output (uncompressed, so its size does not depend on the
    // pattern): GDAL's write errors must fail the writer.
    let out = full.0.join("sr.tif");
    let big = "factor: 4\ncreation_options: TILED=YES\n";
    let s = infer_settings(d, "full", &scene, None, &out, big);
    must_fail(
        "output on a full filesystem",
        "graphs/upscale-classic.yml",
        &s,
        "No space left on device",
        Some(&out),
    );
    assert_eq!(
        std::fs::read_dir(&full.0).unwrap().count(),
        0,
        "the filesystem is empty again"
    );
    let s = infer_settings(
        d,
        "full-cog",
        &scene,
        None,
        &out,
        &format!("{big}output_format: COG\n"),
    );
    must_fail(
        "output on a full filesystem (COG)",
        "graphs/upscale-classic.yml",
        &s,
        "sr.tif",
        Some(&out),
    );

    let ro = Mount::tmpfs(&d.join("ro"), "8m", true).expect("root mounted the first tmpfs");
    let out = ro.0.join("sr.tif");
    let s = infer_settings(d, "read-only", &scene, None, &out, "");
    must_fail(
        "output folder not writable",
        "graphs/upscale-classic.yml",
        &s,
        "Read-only file system",
        Some(&out),
    );
}

/// The pids of `stage` processes started for the run whose settings file is `settings`.
fn stage_pids(stage: &str, settings: &Path) -> Vec<i32> {
    let exe = root().join("target/release").join(stage);
    let want = format!("GEOSR_SETTINGS={}", settings.display());
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let same_exe = std::fs::read_link(e.path().join("exe"))
            .is_ok_and(|p| p == exe || p == exe.canonicalize().unwrap_or_default());
        let env = std::fs::read(e.path().join("environ")).unwrap_or_default();
        let ours = env.split(|b| *b == 0).any(|v| v == want.as_bytes());
        if same_exe && ours {
            out.push(pid);
        }
    }
    out
}

/// Starts `graph`, waits until `ready` holds, kills `stage` with SIGKILL; returns whether the
/// run was still going when the kill landed, and the log.
fn run_and_kill(
    graph: &str,
    settings: &Path,
    stage: &str,
    ready: impl Fn() -> bool,
) -> (bool, bool, String) {
    let handle = {
        let (graph, settings) = (graph.to_owned(), settings.to_path_buf());
        std::thread::spawn(move || run_graph_with(&graph, &settings, &[], 300))
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ready() && !handle.is_finished() {
        assert!(
            Instant::now() < deadline,
            "{stage}: the run never got going"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pids = stage_pids(stage, settings);
    let killed = !handle.is_finished() && !pids.is_empty();
    for pid in pids {
        // SAFETY: sends a signal to a process this test started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let (ok, log) = handle.join().unwrap();
    (killed, ok, log)
}

fn log_mentions(path: &Path, what: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| t.contains(what))
}

#[test]
fn killed_inference_stages_leave_nothing_behind() {
    let _daemon = Daemon::up();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = small_model(d);
    let scene = d.join("big.tif");
    uint16_scene(&scene, 3, 1600, 1200);
    let out = d.join("out/sr.tif");
    for stage in ["tile-ingest", "unet-infer", "geotiff-writer"] {
        let s = infer_settings(
            d,
            &format!("kill-{stage}"),
            &scene,
            Some(&model),
            &out,
            "infer_tile: 64\noverlap: 4\n",
        );
        let writer_log = d.join(format!("runs/kill-{stage}/logs/geotiff-writer.jsonl"));
        let (killed, ok, log) = run_and_kill("graphs/infer.yml", &s, stage, || {
            log_mentions(&writer_log, "progress")
        });
        assert!(killed, "{stage}: the run ended before the kill:\n{log}");
        assert!(!ok, "{stage}: dora start must fail after a kill:\n{log}");
        let line =
            error_line(&log, stage).unwrap_or_else(|| panic!("{stage}: no line names it:\n{log}"));
        assert!(
            log.contains("SIGKILL"),
            "{stage}: the signal is named:\n{log}"
        );
        for noise in NOISE {
            assert!(
                !log.contains(noise),
                "{stage}: `{noise}` in the output:\n{log}"
            );
        }
        assert!(!out.exists(), "{stage}: nothing at the output path");
        let left = temporaries(out.parent().unwrap());
        if stage == "geotiff-writer" {
            // A process killed outright cannot clean up; the next write of the same output does.
            assert_eq!(left.len(), 1, "{left:?}");
            let s = infer_settings(
                d,
                "after-kill",
                &scene,
                Some(&model),
                &out,
                "infer_tile: 64\noverlap: 4\n",
            );
            let (ok, log) = run_graph("graphs/infer.yml", &s);
            assert!(ok, "the run after the kill:\n{log}");
            assert!(out.exists() && temporaries(out.parent().unwrap()).is_empty());
            std::fs::remove_file(&out).unwrap();
            row(
                &format!("kill -9 of {stage} (inference)"),
                "fails; its temporary stays until the next run of the same output removes it",
            );
        } else {
            assert!(left.is_empty(), "{stage}: temporaries left: {left:?}");
            let shown = line.split("Error: ").last().unwrap_or(line).trim();
            row(
                &format!("kill -9 of {stage} (inference)"),
                &format!("fails: `{shown}`"),
            );
        }
    }
}

/// The tensors of a safetensors file, name → raw bytes (the file's order of tensors may differ
/// between two writes of the same weights).
fn tensors(path: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, v)| {
            let o = v["data_offsets"].as_array().unwrap();
            let (a, b) = (
                o[0].as_u64().unwrap() as usize,
                o[1].as_u64().unwrap() as usize,
            );
            (k.clone(), data[a..b].to_vec())
        })
        .collect()
}

#[test]
fn killed_training_stages_resume_to_the_same_weights() {
    let _daemon = Daemon::up();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let scene = d.join("scene.tif");
    uint16_scene(&scene, 3, 256, 192);
    let steps = "steps: 120\nval_every: 10\nwait_timeout_s: 60\n";
    let reference = d.join("runs/reference");
    let s = write_settings(d, "reference", &tiny(&scene, &reference, steps));
    let (ok, log) = run_graph("graphs/train.yml", &s);
    assert!(ok, "the uninterrupted run:\n{log}");
    let want = tensors(&reference.join("model.safetensors"));
    let mut rng_state = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    for stage in ["tile-ingest", "degrade", "unet-train", "vgg-loss"] {
        let run = d.join(format!("runs/kill-{stage}"));
        let s = write_settings(d, &format!("kill-{stage}"), &tiny(&scene, &run, steps));
        // A random moment after the first checkpoint.
        rng_state = rng_state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = Duration::from_millis((rng_state >> 33) % 1000);
        let card = run.join("model.json");
        let seen = std::cell::Cell::new(None::<Instant>);
        let (killed, ok, log) = run_and_kill("graphs/train.yml", &s, stage, || {
            if !card.exists() {
                return false;
            }
            let first = seen.get().unwrap_or_else(Instant::now);
            seen.set(Some(first));
            first.elapsed() >= delay
        });
        assert!(killed, "{stage}: the run ended before the kill:\n{log}");
        assert!(!ok, "{stage}: dora start must fail after a kill:\n{log}");
        assert!(
            error_line(&log, stage).is_some(),
            "{stage}: no line names it:\n{log}"
        );
        for noise in NOISE {
            assert!(
                !log.contains(noise),
                "{stage}: `{noise}` in the output:\n{log}"
            );
        }
        let at = geosr::checkpoint::latest_checkpoint(&run)
            .unwrap()
            .card
            .step;
        // Continue the same run to the end.
        let s = write_settings(
            d,
            &format!("resume-{stage}"),
            &tiny(&scene, &run, &format!("{steps}resume: {}\n", run.display())),
        );
        let (ok, log) = run_graph("graphs/train.yml", &s);
        assert!(ok, "{stage}: resuming failed:\n{log}");
        assert_eq!(graphs::card(&run).step, 120);
        let got = tensors(&run.join("model.safetensors"));
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>()
        );
        let differ: Vec<&String> = want.keys().filter(|k| got[*k] != want[*k]).collect();
        assert!(differ.is_empty(), "{stage}: resumed at step {at}, these tensors differ from the uninterrupted run: {differ:?}");
        let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
        let logged: Vec<u64> = csv
            .lines()
            .skip(1)
            .filter_map(|l| l.split(',').next()?.parse().ok())
            .collect();
        assert!(
            logged.windows(2).all(|w| w[0] <= w[1]),
            "{stage}: metrics.csv rows in step order after the resume: {logged:?}"
        );
        row(
            &format!("kill -9 of {stage} (training)"),
            &format!("fails naming it; resumed from step {at} of 120, the final weights are bit-identical to the uninterrupted run"),
        );
    }
}

#[test]
fn stages_end_when_their_daemon_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let scene = d.join("big.tif");
    uint16_scene(&scene, 3, 1600, 1200);
    let out = d.join("out/sr.tif");
    let cluster = Cluster::start(d);
    let graph = d.join("classic-one-machine.yml");
    let text = std::fs::read_to_string(root().join("graphs/upscale-classic.yml")).unwrap();
    let abs = format!("{}/", root().join("target/release").display());
    std::fs::write(
        &graph,
        text.replace("../target/release/", &abs)
            .replace(
                "\n  - id: upscale\n",
                &format!(
                    "\n  - id: upscale\n    deploy:\n      machine: {}\n",
                    cluster.machines[0]
                ),
            )
            .replace(
                "\n  - id: tile-ingest\n",
                &format!(
                    "\n  - id: tile-ingest\n    deploy:\n      machine: {}\n",
                    cluster.machines[0]
                ),
            )
            .replace(
                "\n  - id: geotiff-writer\n",
                &format!(
                    "\n  - id: geotiff-writer\n    deploy:\n      machine: {}\n",
                    cluster.machines[0]
                ),
            ),
    )
    .unwrap();
    let s = infer_settings(d, "daemon-gone", &scene, None, &out, "factor: 4\n");
    let writer_log = d.join("runs/daemon-gone/logs/geotiff-writer.jsonl");
    let handle = {
        let (graph, s, port) = (graph.clone(), s.clone(), cluster.port.clone());
        std::thread::spawn(move || {
            run_graph_with(
                graph.to_str().unwrap(),
                &s,
                &["--coordinator-port", &port],
                120,
            )
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !log_mentions(&writer_log, "progress") {
        assert!(
            Instant::now() < deadline && !handle.is_finished(),
            "the run never got going"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let stages = ["tile-ingest", "upscale", "geotiff-writer"];
    assert!(stages.iter().all(|st| !stage_pids(st, &s).is_empty()));
    drop(cluster); // kills the coordinator and both daemons outright
    let gone = Instant::now();
    while stages.iter().any(|st| !stage_pids(st, &s).is_empty()) {
        assert!(
            gone.elapsed() < Duration::from_secs(10),
            "stages still alive 10 s after their daemon died: {:?}",
            stages
                .iter()
                .map(|st| (st, stage_pids(st, &s)))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let secs = gone.elapsed().as_secs_f64();
    let _ = handle.join();
    assert!(!out.exists());
    assert!(
        temporaries(out.parent().unwrap()).is_empty(),
        "the writer removed its temporary"
    );
    row(
        "daemon killed mid-run",
        &format!("every stage ends within {secs:.1} s; nothing at the output path"),
    );
}

/// Inference as a busy production host runs it: the shipped graphs with batches of about 7 MB,
/// 8 requests in flight and a CPU hog beside them. Before the graphs kept every edge on dora's
/// daemon path (`queue_policy: backpressure`), such runs lost requests and batches on dora 1.1's
/// direct path, and the writer failed on batches that overtook others; every run must succeed.
#[test]
fn inference_is_order_proof_under_load() {
    let _daemon = Daemon::up();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = small_model(d);
    let scene = d.join("scene.tif");
    uint16_scene(&scene, 3, 768, 512);
    let classic = root().join("graphs/upscale-classic.yml");
    let sr = root().join("graphs/infer.yml");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hogs: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                }
                x
            })
        })
        .collect();
    let mut overtaken = 0;
    // 4 × 3 × 384² floats per classic batch at ×4; 16 × 3 × 192² per SR batch at the model's ×2.
    let runs = [
        (&classic, None, 6, "factor: 4\nprefetch: 8\n"),
        (
            &sr,
            Some(model.as_path()),
            3,
            "infer_batch: 16\nprefetch: 8\n",
        ),
    ];
    for (g, model, times, extra) in runs {
        for i in 0..times {
            let out = d.join(format!("out/{i}.tif"));
            let name = format!("order-{}-{i}", model.is_some());
            let s = infer_settings(d, &name, &scene, model, &out, extra);
            let (ok, log) = run_graph_with(g.to_str().unwrap(), &s, &[], 300);
            assert!(ok, "{} run {i} failed under load:\n{log}", g.display());
            let wlog =
                std::fs::read_to_string(d.join(format!("runs/{name}/logs/geotiff-writer.jsonl")))
                    .unwrap();
            let line = wlog
                .lines()
                .find(|l| l.contains("batches_out_of_order"))
                .unwrap();
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            overtaken += v["fields"]["batches_out_of_order"].as_u64().unwrap();
            std::fs::remove_file(&out).unwrap();
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for h in hogs {
        h.join().unwrap();
    }
    row(
        "classic ×6 and SR ×3, 8 requests in flight, beside a CPU hog",
        &format!("all succeed ({overtaken} batches arrived out of order)"),
    );
}
