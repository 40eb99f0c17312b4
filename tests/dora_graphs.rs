//! The training graphs run through a real dora coordinator and daemon on small GeoTIFFs: the
//! checkpoint, the model card, metrics.csv, resume, tile counts along every edge, and one clear
//! failure per kind of bad input with nothing half-written.
//!
//! Needs `scripts/setup` (dora in .venv, release binaries, VGG weights); `scripts/test` runs it.
mod common;
#[path = "common/graphs.rs"]
mod graphs;
use common::*;
use graphs::*;
use std::path::{Path, PathBuf};

#[test]
fn training_graphs_through_a_real_daemon() {
    let _daemon = Daemon::up();
    let dir = tempfile::tempdir().unwrap();
    let scene = dir.path().join("scene.tif");
    uint16_scene(&scene, 3, 160, 128);

    // Perceptual training, validation every 3 steps.
    let run = dir.path().join("runs/vgg");
    let s = write_settings(
        dir.path(),
        "vgg",
        &tiny(&scene, &run, "steps: 6\nval_every: 3\n"),
    );
    let (ok, log) = run_graph("graphs/train.yml", &s);
    assert!(ok, "train.yml failed:\n{log}");
    assert!(
        log.contains("progress") && log.contains("validation"),
        "progress and validation show while it runs:\n{log}"
    );
    let c = card(&run);
    assert_eq!(
        (
            c.step,
            c.downsample_factor,
            c.architecture.width,
            c.architecture.bands
        ),
        (6, 2, 8, 3)
    );
    assert_eq!(c.data_type, "UInt16");
    assert_eq!(c.colour, "gray,undefined,undefined");
    assert!(
        c.losses.iter().any(|l| l.stage == "vgg-loss"
            && l.from == "vgg-loss/loss"
            && l.description["vgg_layers"] == "relu1_2"),
        "{:?}",
        c.losses
    );
    assert!(c.metrics.unwrap().val_psnr.is_finite());
    assert_eq!(
        geosr::checkpoint::sha256_file(&run.join("model.safetensors")).unwrap(),
        c.weights_sha256
    );
    assert!(run
        .join("checkpoints/step-000006/model.safetensors")
        .is_file());
    assert!(run.join("optimizer.safetensors").is_file());
    let timing: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("timing.json")).unwrap()).unwrap();
    assert_eq!(
        timing["batch_size"], 4,
        "the settings' batch size: {timing}"
    );
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let val_rows: Vec<&str> = csv
        .lines()
        .skip(1)
        .filter(|l| l.split(',').nth(3).is_some_and(|v| !v.is_empty()))
        .collect();
    assert_eq!(val_rows.len(), 2, "validation at steps 3 and 6:\n{csv}");
    assert!(csv.starts_with("step,epoch,train_loss,val_psnr,val_ssim,bicubic_psnr,bicubic_ssim"));
    let (summary, edges_ok) =
        geosr::summary::summarise(&run, Some(&root().join("graphs/train.yml"))).unwrap();
    assert!(edges_ok, "tile counts along the graph:\n{summary}");
    assert!(summary.contains("none lost"), "{summary}");

    // Inference with the trained model, through both engines, and the classic graph.
    let out_ort = dir.path().join("out/sr-ort.tif");
    let s = write_settings(dir.path(), "infer-ort", &format!("input: {}\nmodel: {}\noutput: {}\nlog_dir: {}\ninfer_tile: 32\noverlap: 4\nengine: ort\nthreads: 1\n", scene.display(), run.display(), out_ort.display(), dir.path().join("runs/infer").display()));
    let (ok, log) = run_graph("graphs/infer.yml", &s);
    assert!(ok, "infer.yml failed:\n{log}");
    let out_tch = dir.path().join("out/sr-tch.tif");
    let s = write_settings(dir.path(), "infer-tch", &format!("input: {}\nmodel: {}\noutput: {}\nlog_dir: {}\ninfer_tile: 32\noverlap: 4\nengine: tch\nthreads: 1\n", scene.display(), run.display(), out_tch.display(), dir.path().join("runs/infer").display()));
    let (ok, log) = run_graph("graphs/infer.yml", &s);
    assert!(ok, "infer.yml with tch failed:\n{log}");
    let read = |p: &Path| {
        let r = geosr_raster::raster::RasterSource::open(p, &[]).unwrap();
        let v = r
            .read_window(0, 0, r.info.width as u32, r.info.height as u32)
            .unwrap();
        (r.info, v)
    };
    // Two workers sharing the batches write what one does.
    let out_workers = dir.path().join("out/sr-workers.tif");
    let s = write_settings(dir.path(), "infer-workers", &format!("input: {}\nmodel: {}\noutput: {}\nlog_dir: {}\ninfer_tile: 32\noverlap: 4\nengine: tch\nthreads: 1\n", scene.display(), run.display(), out_workers.display(), dir.path().join("runs/infer-workers").display()));
    let (ok, log) = run_graph("graphs/infer-workers.yml", &s);
    assert!(ok, "infer-workers.yml failed:\n{log}");
    let workers_counts: Vec<geosr::flow::TileCounts> = ["unet-infer-0", "unet-infer-1"]
        .iter()
        .map(|n| {
            let p = dir
                .path()
                .join(format!("runs/infer-workers/counts/{n}.json"));
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
        })
        .collect();
    let (info, a) = read(&out_ort);
    let (_, b) = read(&out_tch);
    assert_eq!(read(&out_workers).1, b, "two workers write what one writes");
    let took: Vec<u64> = workers_counts.iter().map(|c| c.outputs["sr"][0]).collect();
    assert!(took.iter().all(|&n| n > 0), "both workers worked: {took:?}");
    assert_eq!(
        (info.width, info.height, info.data_type.as_str()),
        (320, 256, "UInt16")
    );
    assert_eq!(info.geotransform[1], GT[1] / 2.0);
    let differ = a
        .iter()
        .zip(&b)
        .filter(|(x, y)| (**x - **y).abs() > 1.0)
        .count();
    assert_eq!(
        differ, 0,
        "ort and tch outputs differ by more than one DN at {differ} pixels"
    );
    assert!(geosr::summary::edge_mismatches(
        &geosr::summary::graph_edges(&root().join("graphs/infer.yml")).unwrap(),
        &geosr::summary::read_counts(&dir.path().join("runs/infer")).unwrap()
    )
    .is_empty());
    let out_classic = dir.path().join("out/lanczos.tif");
    let s = write_settings(dir.path(), "classic", &format!("input: {}\noutput: {}\nlog_dir: {}\nfactor: 2\nupscale_method: lanczos\noutput_format: COG\n", scene.display(), out_classic.display(), dir.path().join("runs/classic").display()));
    let (ok, log) = run_graph("graphs/upscale-classic.yml", &s);
    assert!(ok, "upscale-classic.yml failed:\n{log}");
    assert_eq!(read(&out_classic).0.width, 320);

    graph_check_catches_each_class_of_mistake(dir.path(), &run);

    // Evaluation on a folder of two HR rasters, one with a nodata wedge. The settings ask for
    // factor 4; the model card's ×2 degradation must win, or nothing would line up.
    let hr_dir = dir.path().join("hr");
    std::fs::create_dir_all(&hr_dir).unwrap();
    uint16_scene(&hr_dir.join("a.tif"), 3, 160, 128);
    let (w2, h2) = (96usize, 80usize);
    let mut px = pattern(3, w2, h2, 10_000.0, 2_000.0);
    for b in 0..3 {
        for y in 0..h2 {
            for x in 0..(h2 - y) / 3 {
                px[b * w2 * h2 + y * w2 + x] = 0.0;
            }
        }
    }
    geosr_raster::raster::write_geotiff::<u16>(
        &hr_dir.join("b.tif"),
        3,
        w2,
        h2,
        &px,
        GT,
        &utm21n(),
        None,
    )
    .unwrap();
    let eval_dir = dir.path().join("eval");
    let eval_logs = dir.path().join("runs/eval");
    let eval_settings = format!("input: {}\nmodel: {}\noutput: {}\nlog_dir: {}\ninfer_tile: 16\noverlap: 2\nfactor: 4\nthreads: 1\npreview_size: 32\n", hr_dir.display(), run.display(), eval_dir.display(), eval_logs.display());
    let s = write_settings(dir.path(), "eval", &eval_settings);
    let (ok, log) = run_graph("graphs/evaluate.yml", &s);
    assert!(ok, "evaluate.yml failed:\n{log}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(eval_dir.join("report.json")).unwrap())
            .unwrap();
    let rasters = report["rasters"].as_array().unwrap();
    assert_eq!(rasters.len(), 2);
    assert_eq!(report["factor"], 2);
    // scored at the layers the model was trained with (relu1_2), not the default relu2_2
    assert_eq!(report["vgg_metric"], "vgg_relu1_2");
    for (r, (w, h)) in rasters.iter().zip([(160, 128), (w2, h2)]) {
        let methods = r["methods"].as_object().unwrap();
        let names: Vec<&str> = methods.keys().map(String::as_str).collect();
        assert_eq!(names, ["bicubic", "bilinear", "lanczos", "nearest", "unet"]);
        for (name, m) in methods {
            assert!(m["psnr_mean"].as_f64().unwrap() > 10.0, "{name}: {m}");
            let ssim = m["ssim_mean"].as_f64().unwrap();
            assert!(ssim > 0.0 && ssim < 1.0, "{name}: {m}");
            // every method but the enlarged LR went through vgg-loss
            assert_eq!(
                m["vgg_distance"].is_number(),
                name != "nearest",
                "{name}: {m}"
            );
        }
        // the written rasters sit on the HR grid
        for (_, out) in r["outputs"].as_object().unwrap() {
            let (info, _) = read(Path::new(out.as_str().unwrap()));
            assert_eq!((info.width, info.height, info.geotransform), (w, h, GT));
        }
        assert!(Path::new(r["preview"].as_str().unwrap()).is_file());
        let compared = r["pixels"].as_u64().unwrap();
        let inside = ((w - 4) * (h - 4)) as u64;
        if w == w2 {
            assert!(
                compared < inside,
                "the wedge is left out: {compared} of {inside}"
            );
        } else {
            assert_eq!(compared, inside);
        }
    }
    assert!(std::fs::read_to_string(eval_dir.join("report.md"))
        .unwrap()
        .contains("| unet |"));
    assert!(geosr::summary::edge_mismatches(
        &geosr::summary::graph_edges(&root().join("graphs/evaluate.yml")).unwrap(),
        &geosr::summary::read_counts(&eval_logs).unwrap()
    )
    .is_empty());
    // A second evaluation into the same folder is refused and the first report stays.
    let before = std::fs::read(eval_dir.join("report.json")).unwrap();
    let (ok, log) = run_graph("graphs/evaluate.yml", &s);
    assert!(!ok && log.contains("already holds a report"), "{log}");
    assert_eq!(std::fs::read(eval_dir.join("report.json")).unwrap(), before);
    // A model for 3 bands refuses a 1-band raster, and nothing is written.
    let gray = dir.path().join("gray.tif");
    uint16_scene(&gray, 1, 64, 64);
    let out_bad = dir.path().join("out/bad.tif");
    let s = write_settings(
        dir.path(),
        "infer-bad",
        &format!(
            "input: {}\nmodel: {}\noutput: {}\nlog_dir: {}\n",
            gray.display(),
            run.display(),
            out_bad.display(),
            dir.path().join("runs/infer-bad").display()
        ),
    );
    let (ok, log) = run_graph("graphs/infer.yml", &s);
    assert!(
        !ok && log.contains("has 1 bands; the model was trained on 3"),
        "{log}"
    );
    assert!(!out_bad.exists());

    // Resume the same run to 9 steps: optimiser state and step count carry on.
    let s = write_settings(
        dir.path(),
        "resume",
        &tiny(
            &scene,
            &run,
            &format!("steps: 9\nval_every: 3\nresume: {}\n", run.display()),
        ),
    );
    let (ok, log) = run_graph("graphs/train.yml", &s);
    assert!(ok, "resume failed:\n{log}");
    assert_eq!(card(&run).step, 9);
    assert_eq!(
        std::fs::read_to_string(run.join("metrics.csv"))
            .unwrap()
            .matches("step,epoch")
            .count(),
        1,
        "metrics.csv appended, not restarted"
    );

    // A new run from the trained run's weights (`init_from`): its own step count and optimiser,
    // the card names where it started, and no tiny-data warning since it does not start from
    // random weights. From a run of another architecture it is refused, saying so.
    let run2 = dir.path().join("runs/from-earlier");
    let s = write_settings(
        dir.path(),
        "init-from",
        &tiny(
            &scene,
            &run2,
            &format!("steps: 3\nval_every: 3\ninit_from: {}\n", run.display()),
        ),
    );
    let (ok, log) = run_graph("graphs/train.yml", &s);
    assert!(ok, "init_from failed:\n{log}");
    let started = card(&run2);
    assert_eq!(started.step, 3);
    assert!(
        started
            .init_from
            .as_ref()
            .is_some_and(|p| p.starts_with(&run)),
        "{:?}",
        started.init_from
    );
    assert!(!log.contains("the training set is tiny"), "{log}");
    let s = write_settings(
        dir.path(),
        "init-from-other",
        &tiny(
            &scene,
            &dir.path().join("runs/other-arch"),
            &format!("steps: 3\nupsample: deconv\ninit_from: {}\n", run.display()),
        ),
    );
    let (ok, log) = run_graph("graphs/train.yml", &s);
    assert!(!ok && log.contains("architecture"), "{log}");

    // A fresh run into a finished run's folder is refused and changes nothing there.
    let before = std::fs::read(run.join("model.safetensors")).unwrap();
    let s = write_settings(dir.path(), "again", &tiny(&scene, &run, "steps: 3\n"));
    let (ok, log) = run_graph("graphs/train.yml", &s);
    assert!(
        !ok && log.contains("already holds a trained model"),
        "{log}"
    );
    assert_eq!(
        std::fs::read(run.join("model.safetensors")).unwrap(),
        before
    );

    // The pixel-loss graph: the same graph with another loss stage wired.
    let run_px = dir.path().join("runs/pixel");
    let s = write_settings(
        dir.path(),
        "pixel",
        &tiny(&scene, &run_px, "steps: 4\npixel_loss: mse\n"),
    );
    let (ok, log) = run_graph("graphs/train-pixel.yml", &s);
    assert!(ok, "train-pixel.yml failed:\n{log}");
    let c = card(&run_px);
    assert!(
        c.losses
            .iter()
            .any(|l| l.stage == "pixel-loss" && l.description["pixel_loss"] == "mse"),
        "{:?}",
        c.losses
    );
    assert!(
        geosr::summary::summarise(&run_px, Some(&root().join("graphs/train-pixel.yml")))
            .unwrap()
            .1
    );

    // Bad inputs: one clear error each, a non-zero exit, and no checkpoint.
    let small = dir.path().join("small.tif");
    uint16_scene(&small, 3, 24, 24);
    let text = dir.path().join("readme.tif");
    std::fs::write(&text, "this is text, not a raster").unwrap();
    let cases = [
        (
            "missing",
            tiny(
                &dir.path().join("nowhere.tif"),
                &dir.path().join("runs/missing"),
                "steps: 3\n",
            ),
            "nowhere.tif: no such file",
        ),
        (
            "not-raster",
            tiny(&text, &dir.path().join("runs/not-raster"), "steps: 3\n"),
            "readme.tif: GDAL cannot open it as a raster",
        ),
        (
            "too-small",
            tiny(&small, &dir.path().join("runs/too-small"), "steps: 3\n"),
            "smaller than one chip",
        ),
        (
            "no-weights",
            tiny(
                &scene,
                &dir.path().join("runs/no-weights"),
                "steps: 3\nvgg_weights: /nonexistent/vgg16.safetensors\n",
            ),
            "/nonexistent/vgg16.safetensors: not found",
        ),
    ];
    for (name, body, message) in cases {
        let s = write_settings(dir.path(), name, &body);
        let (ok, log) = run_graph("graphs/train.yml", &s);
        assert!(!ok, "{name}: the graph should fail:\n{log}");
        assert!(
            log.contains(message),
            "{name}: expected `{message}` in:\n{log}"
        );
        let run = dir.path().join("runs").join(name);
        assert!(
            !run.join("model.safetensors").exists() && !run.join("checkpoints").exists(),
            "{name}: nothing half-written"
        );
    }
}

/// `geosr check` passes every README graph (given what its comment says to pass) and reports
/// each class of mistake with one sentence naming the node and the problem.
fn graph_check_catches_each_class_of_mistake(tmp: &Path, run: &Path) {
    use geosr::check::check_graph;
    let model = ("GEOSR_MODEL".to_owned(), run.display().to_string());
    let output = (
        "GEOSR_OUTPUT".to_owned(),
        tmp.join("out/x").display().to_string(),
    );
    for g in std::fs::read_dir(root().join("graphs")).unwrap() {
        let g = g.unwrap().path();
        if g.extension().is_none_or(|e| e != "yml") {
            continue; // dora's own out/ log folders
        }
        let problems = check_graph(&g, &[model.clone(), output.clone()]).unwrap();
        assert!(problems.is_empty(), "{}: {problems:?}", g.display());
    }
    // Mistakes are made on copies of the real graphs, beside them so relative paths still hold.
    let variant = |name: &str, from: &str, old: &str, new: &str| -> PathBuf {
        let text = std::fs::read_to_string(root().join("graphs").join(from)).unwrap();
        assert!(text.contains(old), "{from} has no `{old}`");
        let p = tmp.join(format!("{name}.yml"));
        std::fs::write(&p, text.replacen(old, new, 1)).unwrap();
        p
    };
    let only = |g: &Path, env: &[(String, String)], want: &str| {
        let problems = check_graph(g, env).unwrap();
        assert!(
            problems.len() == 1 && problems[0].contains(want),
            "{}: expected one problem containing `{want}`, got {problems:?}",
            g.display()
        );
    };
    // 1. a loss stage wired where LR tiles are expected
    let g = variant(
        "loss-as-tiles",
        "train.yml",
        "lr: {source: degrade/lr,",
        "lr: {source: vgg-loss/loss,",
    );
    only(
        &g,
        &[],
        "input `lr` expects LR tiles, but `vgg-loss/loss` sends a loss reply",
    );
    // 2. an output that does not exist
    let g = variant(
        "no-such-output",
        "train.yml",
        "lr: {source: degrade/lr,",
        "lr: {source: degrade/lowres,",
    );
    only(&g, &[], "`degrade` has no output `lowres`");
    // 3. a required input missing: a trainer without any loss stage
    let g = variant(
        "no-loss",
        "train.yml",
        "      loss_vgg: {source: vgg-loss/loss, queue_policy: backpressure}\n",
        "",
    );
    only(
        &g,
        &[],
        "needs at least one input `loss` or `loss_<name>` (a loss reply (loss and gradient))",
    );
    // 4. an edge on dora's default, lossy path
    let g = variant(
        "drop-oldest",
        "upscale-classic.yml",
        "sr: {source: upscale/sr, queue_policy: backpressure}",
        "sr: upscale/sr",
    );
    only(
        &g,
        std::slice::from_ref(&output),
        "input `sr` must be wired as `{source: upscale/sr, queue_policy: backpressure}`",
    );
    // 5. inference without a model
    let problems = check_graph(
        &root().join("graphs/infer.yml"),
        std::slice::from_ref(&output),
    )
    .unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("`unet-infer` (unet-infer): no model")),
        "{problems:?}"
    );
    // 6. a model without its ONNX export for the `ort` engine
    let bare = tmp.join("bare-model");
    std::fs::create_dir_all(&bare).unwrap();
    for f in ["model.json", "model.safetensors"] {
        std::fs::copy(run.join(f), bare.join(f)).unwrap();
    }
    only(
        &root().join("graphs/infer.yml"),
        &[
            ("GEOSR_MODEL".into(), bare.display().to_string()),
            ("GEOSR_ENGINE".into(), "ort".into()),
            output.clone(),
        ],
        "has no model.onnx for the `ort` engine",
    );
    // 7. an evaluation whose VGG scorer is not wired with the same methods (it would hang)
    let g = variant(
        "vgg-methods",
        "evaluate.yml",
        "      sr_lanczos: {source: upscale-lanczos/sr, queue_policy: backpressure}\n",
        "",
    );
    only(
        &g,
        &[model.clone(), output.clone()],
        "must be the same methods",
    );
    // 8. a degradation factor that differs from the model being resumed (×2)
    let settings = tmp.join("factor4.yml");
    std::fs::write(&settings, format!("factor: 4\nresume: {}\n", run.display())).unwrap();
    only(
        &root().join("graphs/train.yml"),
        &[("GEOSR_SETTINGS".into(), settings.display().to_string())],
        "node `degrade` (degrade) works at factor 4, but the model in",
    );
}

/// The light stages as Rust operators: training through op-degrade (with noise and JPEG) and
/// op-pixel-loss, and op-upscale giving exactly what the upscale node gives.
#[test]
fn operators_run_in_the_dora_runtime() {
    let _daemon = Daemon::up();
    let dir = tempfile::tempdir().unwrap();
    let scene = dir.path().join("scene.tif");
    uint16_scene(&scene, 3, 160, 128);
    let run = dir.path().join("runs/ops");
    let s = write_settings(
        dir.path(),
        "ops",
        &tiny(
            &scene,
            &run,
            "steps: 6\nval_every: 3\nnoise_std: 0.01\njpeg_quality: 80\n",
        ),
    );
    let (ok, log) = run_graph("graphs/train-operators.yml", &s);
    assert!(ok, "train-operators.yml failed:\n{log}");
    let c = card(&run);
    assert_eq!(c.step, 6);
    assert_eq!(c.degradation.jpeg_quality, Some(80));
    assert!(
        c.losses.iter().any(|l| l.description["runs_as"]
            .as_str()
            .is_some_and(|r| r.contains("operator"))),
        "{:?}",
        c.losses
    );
    let (text, ok) =
        geosr::summary::summarise(&run, Some(&root().join("graphs/train-operators.yml"))).unwrap();
    assert!(ok, "{text}");

    let outs: Vec<PathBuf> = ["upscale-classic.yml", "upscale-classic-op.yml"]
        .iter()
        .map(|g| {
            let out = dir.path().join(format!("out/{g}.tif"));
            let s = write_settings(dir.path(), g, &format!("input: {}\noutput: {}\nlog_dir: {}\nfactor: 2\nupscale_method: lanczos\ninfer_tile: 32\noverlap: 4\n", scene.display(), out.display(), dir.path().join(format!("runs/{g}")).display()));
            let (ok, log) = run_graph(&format!("graphs/{g}"), &s);
            assert!(ok, "{g} failed:\n{log}");
            out
        })
        .collect();
    let read = |p: &Path| {
        let r = geosr_raster::raster::RasterSource::open(p, &[]).unwrap();
        r.read_window(0, 0, r.info.width as u32, r.info.height as u32)
            .unwrap()
    };
    assert_eq!(read(&outs[0]), read(&outs[1]));

    // Many scenes in one run: a folder in, a folder out, the same result per scene as a run of
    // its own; a re-run leaves complete outputs alone.
    let scenes = dir.path().join("scenes");
    std::fs::create_dir(&scenes).unwrap();
    std::fs::copy(&scene, scenes.join("first.tif")).unwrap();
    uint16_scene(&scenes.join("second.tif"), 3, 72, 40);
    let folder = dir.path().join("out/many");
    let s = write_settings(dir.path(), "many", &format!("input: {}\noutput: {}\nlog_dir: {}\nfactor: 2\nupscale_method: lanczos\ninfer_tile: 32\noverlap: 4\n", scenes.display(), folder.display(), dir.path().join("runs/many").display()));
    let (ok, log) = run_graph("graphs/upscale-classic.yml", &s);
    assert!(ok, "upscale-classic.yml on a folder failed:\n{log}");
    assert!(log.contains("scene 2 of 2 written"), "{log}");
    assert_eq!(read(&folder.join("first.tif")), read(&outs[0]));
    let second = geosr_raster::raster::RasterSource::open(&folder.join("second.tif"), &[]).unwrap();
    assert_eq!((second.info.width, second.info.height), (144, 80));
    // Both scenes share a CRS: one VRT opens them as one layer (they overlap at the origin).
    let vrt = geosr_raster::raster::RasterSource::open(&folder.join("scenes.vrt"), &[]).unwrap();
    assert_eq!((vrt.info.width, vrt.info.height), (320, 256));
    let before = std::fs::metadata(folder.join("first.tif"))
        .unwrap()
        .modified()
        .unwrap();
    let (ok, log) = run_graph("graphs/upscale-classic.yml", &s);
    assert!(
        ok && log.contains("wrote 0 scenes") && log.contains("2 complete already"),
        "{log}"
    );
    let after = std::fs::metadata(folder.join("first.tif"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(before, after, "a complete output is left alone");
}

/// A Python node (numpy + pyarrow) in place of the Rust `degrade` node: the same LR tiles, so
/// the bicubic baseline of validation is the same, and every edge delivers all its tiles.
#[test]
fn python_degrade_node_matches_the_rust_one() {
    let _daemon = Daemon::up();
    let dir = tempfile::tempdir().unwrap();
    let scene = dir.path().join("scene.tif");
    uint16_scene(&scene, 3, 160, 128);
    let metrics: Vec<Vec<String>> = ["train.yml", "train-python.yml"]
        .iter()
        .map(|g| {
            let run = dir.path().join(format!("runs/{g}"));
            let s = write_settings(
                dir.path(),
                g,
                &tiny(&scene, &run, "steps: 4\nval_every: 2\n"),
            );
            let (ok, log) = run_graph(&format!("graphs/{g}"), &s);
            assert!(ok, "{g} failed:\n{log}");
            let (text, ok) =
                geosr::summary::summarise(&run, Some(&root().join("graphs").join(g))).unwrap();
            assert!(ok, "{text}");
            std::fs::read_to_string(run.join("metrics.csv"))
                .unwrap()
                .lines()
                .filter(|l| !l.contains(",,,,"))
                .skip(1)
                .map(str::to_owned)
                .collect()
        })
        .collect();
    assert_eq!(metrics[0].len(), 2);
    for (rust, py) in metrics[0].iter().zip(&metrics[1]) {
        // columns 5 and 6: bicubic PSNR and SSIM of the validation LR tiles
        let cols = |l: &str| -> Vec<f64> {
            l.split(',')
                .skip(5)
                .take(2)
                .map(|v| v.parse().unwrap())
                .collect()
        };
        let (a, b) = (cols(rust), cols(py));
        assert!(
            (a[0] - b[0]).abs() < 1e-3 && (a[1] - b[1]).abs() < 1e-4,
            "rust {rust} vs python {py}"
        );
    }
}

/// graphs/train-two-machines.yml on a coordinator and two daemons of its own (`cpu`, `gpu`) on
/// loopback: every node runs on the daemon its `deploy:` names and every edge delivers all its
/// tiles across the daemons. dora 1.1 loses a message between daemons now and then; the stage
/// waiting for it asks again after `resend_after_s` (here 5 s), and only if that failed for
/// `wait_timeout_s` would the run end, with a sentence naming what was waited for.
#[test]
fn training_spans_two_daemons() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(dir.path());
    let graph = cluster.graph(dir.path());
    let scene = dir.path().join("scene.tif");
    uint16_scene(&scene, 3, 160, 128);
    let run = dir.path().join("runs/two");
    let s = write_settings(
        dir.path(),
        "two",
        &tiny(
            &scene,
            &run,
            "steps: 4\nval_every: 2\nwait_timeout_s: 60\nresend_after_s: 5\n",
        ),
    );
    let (ok, text) = run_graph_with(
        graph.to_str().unwrap(),
        &s,
        &["--coordinator-port", &cluster.port],
        120,
    );
    if !ok {
        // What each stage counted, and what the daemons warned of: where the message was lost.
        let mut report = String::new();
        for e in std::fs::read_dir(run.join("counts"))
            .into_iter()
            .flatten()
            .flatten()
        {
            report += &std::fs::read_to_string(e.path()).unwrap_or_default();
        }
        for log in ["coordinator.log", "daemon-0.log", "daemon-1.log"] {
            let text = std::fs::read_to_string(dir.path().join(log)).unwrap_or_default();
            for l in text
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            {
                report += &format!("{log}: {l}\n");
            }
        }
        panic!("two-daemon training failed:\n{text}\ncounts and daemon warnings:\n{report}");
    }
    for (node, machine) in [
        ("tile-ingest", &cluster.machines[0]),
        ("unet-train", &cluster.machines[1]),
        ("vgg-loss", &cluster.machines[1]),
    ] {
        assert!(
            text.contains(&format!("{node} on daemon `{machine}`")),
            "{node} did not run on `{machine}`:\n{text}"
        );
    }
    assert_eq!(card(&run).step, 4);
    let resends = text.matches("nothing came; asking again").count();
    println!("asked again after a silence: {resends} time(s)");
    for l in text
        .lines()
        .filter(|l| l.contains("nothing came; asking again"))
    {
        println!("{l}");
    }
    // Every edge delivered every tile, unless dora lost one and it was asked for again: the
    // summary then shows where.
    let (summary, ok) =
        geosr::summary::summarise(&run, Some(&root().join("graphs/train-two-machines.yml")))
            .unwrap();
    assert!(ok || resends > 0, "{summary}");

    // Inference with the network on the other daemon: the file is complete and georeferenced.
    let graph = cluster.graph_named(dir.path(), "infer-two-machines.yml");
    let out = dir.path().join("out/two-machines.tif");
    let s = write_settings(dir.path(), "infer-two", &format!("input: {}\nmodel: {}\noutput: {}\nlog_dir: {}\ninfer_tile: 32\noverlap: 4\nthreads: 1\nwait_timeout_s: 60\nresend_after_s: 5\n", scene.display(), run.display(), out.display(), dir.path().join("runs/infer-two").display()));
    let (ok, text) = run_graph_with(
        graph.to_str().unwrap(),
        &s,
        &["--coordinator-port", &cluster.port],
        120,
    );
    assert!(ok, "two-daemon inference failed:\n{text}");
    assert!(
        text.contains(&format!("unet-infer on daemon `{}`", cluster.machines[1])),
        "{text}"
    );
    let info = geosr_raster::raster::RasterSource::open(&out, &[])
        .unwrap()
        .info;
    assert_eq!((info.width, info.height), (320, 256));
}
