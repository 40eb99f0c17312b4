//! `geosr bench`: the dataflow against a single-process loop with the same model, batch and
//! loss, and one tile hop between two nodes against a plain memcpy of the same bytes.
use geosr::error::{Error, Result};
use geosr::settings::Settings;
use geosr_torch::SettingsTorch;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// One measured line of the table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchRow {
    pub what: String,
    pub value: f64,
    pub unit: String,
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::checkpoint_caused(path, "not JSON", e))
}

/// Runs `dora start <graph> --attach` with `settings` written to a file; fails with the tail of
/// dora's output when the dataflow fails.
pub fn run_dataflow(root: &Path, graph: &str, settings: &Settings, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let file = dir.join("settings.yml");
    let yaml = serde_yaml::to_string(settings).expect("settings serialise");
    std::fs::write(&file, yaml).map_err(|e| Error::io(&file, e))?;
    let out = Command::new("dora")
        .args(["start", graph, "--attach", "--env"])
        .arg(format!("GEOSR_SETTINGS={}", file.display()))
        .current_dir(root)
        .output()
        .map_err(|e| Error::io("dora (is scripts/env.sh sourced?)", e))?;
    let log = dir.join("dora.log");
    let mut text = out.stdout.clone();
    text.extend_from_slice(&out.stderr);
    geosr::atomic::write_atomic(&log, &text)?;
    if !out.status.success() {
        let t = String::from_utf8_lossy(&text);
        let tail: Vec<&str> = t.lines().rev().take(15).collect();
        return Err(Error::setting(
            graph,
            format!(
                "dataflow failed (log {}):\n{}",
                log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ),
        ));
    }
    Ok(())
}

/// Bytes per second of copying a `bytes`-sized buffer, best of `reps` copies after a warm-up.
pub fn memcpy_bandwidth(bytes: usize, reps: usize) -> f64 {
    let src: Vec<u8> = (0..bytes).map(|i| i as u8).collect();
    let mut dst = vec![0u8; bytes];
    dst.copy_from_slice(&src);
    let start = Instant::now();
    for _ in 0..reps {
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
    }
    (bytes * reps) as f64 / start.elapsed().as_secs_f64()
}

/// Runs the whole benchmark and returns the markdown table.
pub fn run(
    root: &Path,
    base: &Settings,
    steps: u32,
    out_dir: &Path,
) -> Result<(String, Vec<BenchRow>)> {
    let mut rows = Vec::new();
    // 1. Training throughput: the dataflow.
    let mut s = base.clone();
    s.steps = Some(steps);
    s.val_every = Some(u32::MAX); // validate only after the last step, outside the timing
    s.run_dir = out_dir.join("dataflow");
    if s.run_dir.exists() {
        std::fs::remove_dir_all(&s.run_dir).map_err(|e| Error::io(&s.run_dir, e))?;
    }
    run_dataflow(
        root,
        "graphs/train.yml",
        &s,
        &out_dir.join("dataflow-settings"),
    )?;
    let timing = read_json(&s.run_dir.join("timing.json"))?;
    let flow = timing["steps_per_s"].as_f64().unwrap_or(f64::NAN);

    // 2. The same training in one process.
    s.apply_threads();
    let loss = geosr_torch::loss::PerceptualLoss::new(&s, s.torch_device()?)?;
    let single =
        crate::in_process::train_in_process(&s, &loss, steps as u64, false, |_, _| {})?.steps_per_s;
    rows.push(BenchRow {
        what: "training, dataflow (5 processes)".into(),
        value: flow,
        unit: "steps/s".into(),
    });
    rows.push(BenchRow {
        what: "training, single process (same model, batch, loss)".into(),
        value: single,
        unit: "steps/s".into(),
    });
    rows.push(BenchRow {
        what: "ratio dataflow / single process".into(),
        value: flow / single,
        unit: "".into(),
    });

    // 3. One hop between two nodes against memcpy.
    let mut h = base.clone();
    h.run_dir = out_dir.join("hop");
    run_dataflow(
        root,
        "graphs/bench-hop.yml",
        &h,
        &out_dir.join("hop-settings"),
    )?;
    let hop = read_json(&h.run_dir.join("hop.json"))?;
    let hop_bps = hop["gb_per_s"].as_f64().unwrap_or(f64::NAN) * 1e9;
    let msg = hop["message_bytes"].as_u64().unwrap_or(0) as usize;
    let mem_bps = memcpy_bandwidth(msg.max(1), 200);
    rows.push(BenchRow {
        what: format!(
            "tile hop between two nodes ({:.1} MiB batches)",
            msg as f64 / 1048576.0
        ),
        value: hop_bps / 1e9,
        unit: "GB/s".into(),
    });
    rows.push(BenchRow {
        what: "memcpy of the same bytes".into(),
        value: mem_bps / 1e9,
        unit: "GB/s".into(),
    });
    rows.push(BenchRow {
        what: "ratio hop / memcpy".into(),
        value: hop_bps / mem_bps,
        unit: "".into(),
    });

    let mut md = String::new();
    let _ = writeln!(md, "| measurement | value | unit |\n|---|---:|---|");
    for r in &rows {
        let _ = writeln!(md, "| {} | {:.3} | {} |", r.what, r.value, r.unit);
    }
    let _ = writeln!(
        md,
        "\nTraining: {} steps (first 10 untimed), batch {}, chip {} px, x{}, U-Net depth {} width {}, loss `{}` + {} pixel, {}.",
        steps, s.batch_size, s.chip_size, s.factor, s.unet_depth, s.unet_width, s.vgg_layers, s.pixel_loss,
        machine()
    );
    Ok((md, rows))
}

/// CPU model, core count and memory of this machine, for the record.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|k| k.parse::<f64>().ok())
        })
        .map(|kb| kb / 1048576.0)
        .unwrap_or(0.0);
    format!(
        "{cpu}, {cores} cores, {mem_gib:.0} GiB, torch threads {}",
        tch::get_num_threads()
    )
}

/// Default output folder of the benchmark.
pub fn default_dir(root: &Path) -> PathBuf {
    root.join("runs/bench")
}

/// Resident memory (bytes) of every process whose executable lies in `bin_dir`, summed, this
/// process excepted.
/// Shared-memory pages mapped by two nodes count twice, so this errs high.
pub fn nodes_rss(bin_dir: &Path) -> u64 {
    let mut total = 0;
    // The benchmark's own process lives in the same folder; it is not part of the graph.
    let me = std::process::id().to_string();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0;
    };
    for p in procs.flatten() {
        if p.file_name().to_str() == Some(me.as_str()) {
            continue;
        }
        let exe = std::fs::read_link(p.path().join("exe")).unwrap_or_default();
        if !exe.starts_with(bin_dir) {
            continue;
        }
        let status = std::fs::read_to_string(p.path().join("status")).unwrap_or_default();
        if let Some(kb) = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
        {
            total += kb * 1024;
        }
    }
    total
}

/// What one inference run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InferRun {
    pub seconds: f64,
    pub output_megapixels: f64,
    pub peak_rss_bytes: u64,
}

/// Runs `graph` on `settings` and samples the nodes' memory every 100 ms.
pub fn run_inference(
    root: &Path,
    graph: &str,
    settings: &Settings,
    dir: &Path,
) -> Result<InferRun> {
    let out = settings
        .output
        .clone()
        .ok_or_else(|| Error::setting("output", "the benchmark needs an output path"))?;
    let _ = std::fs::remove_file(&out);
    let bin_dir = root
        .join("target/release")
        .canonicalize()
        .map_err(|e| Error::io(root.join("target/release"), e))?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(nodes_rss(&bin_dir));
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            peak
        })
    };
    let start = Instant::now();
    let result = run_dataflow(root, graph, settings, dir);
    let seconds = start.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap_or(0);
    result?;
    let info = geosr_raster::raster::RasterSource::open(&out, &[])?.info;
    Ok(InferRun {
        seconds,
        output_megapixels: (info.width * info.height) as f64 / 1e6,
        peak_rss_bytes: peak,
    })
}

/// Writes a synthetic `w × h` 3-band UInt16 GeoTIFF strip by strip (never whole in memory).
pub fn synthetic_raster(path: &Path, w: usize, h: usize) -> Result<()> {
    use gdal::raster::{Buffer, RasterCreationOptions};
    let err = |e: gdal::errors::GdalError| Error::raster_caused(path, "GDAL", e);
    let driver = gdal::DriverManager::get_driver_by_name("GTiff").map_err(err)?;
    let co =
        RasterCreationOptions::from_iter(["TILED=YES", "COMPRESS=DEFLATE", "BIGTIFF=IF_SAFER"]);
    let mut ds = driver
        .create_with_band_type_with_options::<u16, _>(path, w, h, 3, &co)
        .map_err(err)?;
    ds.set_geo_transform(&[500_000.0, 30.0, 0.0, 7_000_000.0, 0.0, -30.0])
        .map_err(err)?;
    let strip = 256;
    for b in 0..3 {
        let mut band = ds.rasterband(b + 1).map_err(err)?;
        for y0 in (0..h).step_by(strip) {
            let rows = strip.min(h - y0);
            let mut v = Vec::with_capacity(rows * w);
            for y in y0..y0 + rows {
                for x in 0..w {
                    let (xf, yf) = (x as f32, y as f32);
                    let s = 6000.0
                        + 2500.0 * ((xf * 0.013 + b as f32).sin() * (yf * 0.017).cos())
                        + if (x / 37 + y / 29) % 2 == 0 {
                            900.0
                        } else {
                            0.0
                        }
                        + 400.0 * ((xf + 0.7 * yf) * 0.9).sin();
                    v.push(s as u16);
                }
            }
            band.write((0, y0 as isize), (w, rows), &mut Buffer::new((w, rows), v))
                .map_err(err)?;
        }
    }
    Ok(())
}
