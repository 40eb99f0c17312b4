//! The raster stages at node level, without a daemon: `geotiff-writer` and `evaluate` run on
//! recorded inputs (dora's `init_testing`) and their requests and files are checked.
#[path = "../../../tests/common/mod.rs"]
mod common;
#[path = "../../../tests/common/stage_test.rs"]
mod stage_test;
use common::*;
use geosr::card::{Degradation, ModelCard};
use geosr::scores::{Score, ScoreBatch};
use geosr::settings::{Resampler, Settings};
use geosr::tile::TileBatch;
use geosr_raster::degrade::Degrade;
use geosr_raster::raster::RasterSource;
use geosr_raster::scan::{EvalPlan, ScanPlan, ScenePlan};
use geosr_raster::scenes::SceneList;
use geosr_raster::upscale::upscale_batch;
use stage_test::*;
use std::path::Path;

fn read_all(p: &Path) -> Vec<f32> {
    let r = RasterSource::open(p, &[]).unwrap();
    r.read_window(0, 0, r.info.width as u32, r.info.height as u32)
        .unwrap()
}

/// Runs `geotiff-writer` on the recorded SR batches, wired from `from`.
fn run_writer(
    mut rec: Recording,
    from: &str,
    settings: &Settings,
) -> (
    eyre::Result<()>,
    Vec<dora_node_api::integration_testing::OutputJson>,
) {
    let mut counts = geosr::flow::TileCounts::new("geotiff-writer");
    rec.run(&[("sr", from)], settings, |mut node, mut inbox| {
        geosr_raster::writer::write_super_resolved(&mut node, &mut inbox, settings, &mut counts)
            .map(drop)
    })
}

/// SR batches that arrive out of order and twice: the writer places each by its index and
/// writes the same raster as when they come in order.
#[test]
fn geotiff_writer_places_batches_by_index() {
    let dir = tempfile::tempdir().unwrap();
    let lr = dir.path().join("lr.tif");
    uint16_scene(&lr, 3, 64, 48);
    let plan = ScanPlan::new(&lr, None, 16, 2, 2, None).unwrap();
    let n = plan.batches();
    assert!(n >= 6, "{n} batches");
    let sr: Vec<TileBatch> = (0..n)
        .map(|i| upscale_batch(&plan.batch(i).unwrap(), 2, Resampler::Bicubic).unwrap())
        .collect();
    let write = |order: &[usize], out: &Path| {
        let settings = Settings {
            input: lr.clone(),
            output: Some(out.to_path_buf()),
            infer_tile: 16,
            overlap: 2,
            infer_batch: 2,
            prefetch: 8,
            log_dir: dir.path().join("logs"),
            ..Settings::default()
        };
        let mut rec = Recording::new(&dir.path().join(format!("inputs-{}", order[1])));
        for (k, &i) in order.iter().enumerate() {
            rec.input(0.1 + 0.05 * k as f64, "sr", sr[i].to_arrow().unwrap());
        }
        let (result, outputs) = run_writer(rec, "upscale/sr", &settings);
        result.unwrap();
        requests(&outputs)
    };
    let in_order: Vec<usize> = (0..n).collect();
    let mut shuffled = vec![0, 2, 1, 1];
    shuffled.extend(3..n);
    let (a, b) = (dir.path().join("a.tif"), dir.path().join("b.tif"));
    let asked = write(&in_order, &a);
    write(&shuffled, &b);
    assert_eq!(
        asked,
        (0..n as u64)
            .map(|i| ("infer".to_owned(), i))
            .collect::<Vec<_>>(),
        "every batch asked for once"
    );
    assert_eq!(read_all(&a), read_all(&b));
    assert_eq!(RasterSource::open(&b, &[]).unwrap().info.width, 128);
}

/// A folder of scenes: the writer writes each into the output folder under its own name,
/// leaves a complete one alone, and names the unreadable one at the end after the others.
#[test]
fn geotiff_writer_writes_a_folder_of_scenes_one_file_each() {
    let dir = tempfile::tempdir().unwrap();
    let scenes = dir.path().join("scenes");
    std::fs::create_dir(&scenes).unwrap();
    uint16_scene(&scenes.join("a.tif"), 3, 40, 24);
    uint16_scene(&scenes.join("b.tif"), 3, 24, 40);
    uint16_scene(&scenes.join("done.tif"), 3, 24, 24);
    std::fs::write(scenes.join("broken.tif"), b"not a GeoTIFF").unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("done.tif"), b"an earlier run's output").unwrap();

    let list = SceneList::new(&scenes, &out).unwrap();
    let plan = ScenePlan::new(&list, None, 16, 2, 2, None).unwrap();
    assert_eq!(
        plan.scenes.len(),
        2,
        "a and b; done is complete, broken cannot be read"
    );
    assert_eq!(plan.failed[0].0.input, scenes.join("broken.tif"));
    let n = plan.batches();
    let settings = Settings {
        input: scenes.clone(),
        output: Some(out.clone()),
        infer_tile: 16,
        overlap: 2,
        infer_batch: 2,
        prefetch: 4,
        log_dir: dir.path().join("logs"),
        ..Settings::default()
    };
    let mut rec = Recording::new(&dir.path().join("inputs"));
    for i in 0..n {
        let sr = upscale_batch(&plan.batch(i).unwrap(), 2, Resampler::Bicubic).unwrap();
        rec.input(0.1 + 0.05 * i as f64, "sr", sr.to_arrow().unwrap());
    }
    let (result, outputs) = run_writer(rec, "upscale/sr", &settings);
    let err = format!("{:#}", result.unwrap_err());
    assert!(
        err.contains("1 of 4 scenes could not be read")
            && err.contains("broken.tif")
            && err.contains("the other 3 were written"),
        "{err}"
    );
    assert_eq!(
        requests(&outputs).len(),
        n,
        "every batch of both scenes asked for once"
    );
    for (name, w, h) in [("a.tif", 80, 48), ("b.tif", 48, 80)] {
        let info = RasterSource::open(&out.join(name), &[]).unwrap().info;
        assert_eq!((info.width, info.height), (w, h), "{name}");
    }
    assert_eq!(
        std::fs::read(out.join("done.tif")).unwrap(),
        b"an earlier run's output"
    );
    assert!(!out.join("broken.tif").exists());
}

/// A model card for rasters of 3 UInt16 bands at ×2, with a weights file it names.
fn model(dir: &Path) -> ModelCard {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("model.safetensors"), b"weights").unwrap();
    let card: ModelCard = serde_json::from_value(serde_json::json!({
        "geosr_version": "0",
        "architecture": {"bands": 3, "depth": 1, "width": 8, "upsample": "pixelshuffle", "skip": "bicubic"},
        "downsample_factor": 2, "bands": [1, 2, 3], "colour": "gray,undefined,undefined", "data_type": "UInt16",
        "normalisation": {"offset": [2000.0, 2000.0, 2000.0], "scale": [10000.0, 10000.0, 10000.0], "fill": [0.0, 0.0, 0.0]},
        "degradation": {"antialias": true, "blur_sigma": 0.0, "noise_std": 0.0, "jpeg_quality": null},
        "losses": [], "metrics": null, "step": 1, "epoch": 0, "device": "cpu",
        "weights_sha256": geosr::checkpoint::sha256_file(&dir.join("model.safetensors")).unwrap(),
        "written_unix_s": 0,
        "provenance": {"rasters": [], "paired_lr": null, "chip_size": 32, "stride": 32, "chips_considered": 0,
            "chips_skipped_nodata": 0, "max_nodata_pct": 10.0, "train_chips": 0, "val_chips": 0,
            "train_batches_per_epoch": 0, "val_batches": 0, "batch_size": 2, "seed": 42,
            "normalisation": {"offset": [2000.0, 2000.0, 2000.0], "scale": [10000.0, 10000.0, 10000.0], "fill": [0.0, 0.0, 0.0]}}
    }))
    .unwrap();
    geosr::atomic::write_atomic(&dir.join("model.json"), &serde_json::to_vec(&card).unwrap())
        .unwrap();
    card
}

/// The evaluation end of the graph on recorded parts (HR, LR, one method's SR and its VGG
/// scores), a batch's parts interleaved with the next one's: every batch is joined, mosaicked
/// in order and scored, and the report names the method and its VGG distance.
#[test]
fn evaluate_joins_the_parts_of_each_batch() {
    let dir = tempfile::tempdir().unwrap();
    let hr_dir = dir.path().join("hr");
    std::fs::create_dir_all(&hr_dir).unwrap();
    uint16_scene(&hr_dir.join("scene.tif"), 3, 64, 48);
    let model_dir = dir.path().join("model");
    let card = model(&model_dir);
    let plan = EvalPlan::new(&hr_dir, &card, 16, 2, 2, None).unwrap();
    let deg = Degradation::for_stage(&Settings::default(), Some(&card));
    let mut rec = Recording::new(&dir.path().join("inputs"));
    let mut t = 0.1;
    for i in 0..plan.batches() {
        let hr = plan.batch(i).unwrap();
        let lr = deg.apply_batch(&hr).unwrap();
        let sr = upscale_batch(&lr, 2, Resampler::Bicubic).unwrap();
        let scores = ScoreBatch(
            (0..hr.len())
                .map(|k| Score {
                    batch_id: hr.batch_id,
                    tile: k as u32,
                    method: "bicubic".into(),
                    metric: "vgg_relu2_2".into(),
                    value: 0.5,
                })
                .collect(),
        );
        // The scores first, the HR last: parts come in any order.
        for (input, array) in [
            ("vgg", scores.to_arrow()),
            ("sr_bicubic", sr.to_arrow().unwrap()),
            ("lr", lr.to_arrow().unwrap()),
            ("hr", hr.to_arrow().unwrap()),
        ] {
            rec.input(t, input, array);
            t += 0.02;
        }
    }
    let out = dir.path().join("eval");
    let settings = Settings {
        model: Some(model_dir),
        output: Some(out.clone()),
        infer_tile: 16,
        overlap: 2,
        prefetch: 8,
        preview_size: 16,
        log_dir: dir.path().join("logs"),
        ..Settings::default()
    };
    let wiring = [
        ("hr", "tile-ingest/hr"),
        ("lr", "degrade/lr"),
        ("sr_bicubic", "upscale/sr"),
        ("vgg", "vgg-loss/distance"),
    ];
    let (result, outputs) = rec.run(&wiring, &settings, |node, inbox| {
        geosr_raster::evaluate_stage::run(node, inbox, settings.clone())
    });
    result.unwrap();
    assert_eq!(
        requests(&outputs),
        (0..plan.batches() as u64)
            .map(|i| ("infer".to_owned(), i))
            .collect::<Vec<_>>(),
        "every batch asked for once"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let methods = report["rasters"][0]["methods"].as_object().unwrap();
    assert_eq!(methods.keys().collect::<Vec<_>>(), ["bicubic", "nearest"]);
    assert_eq!(methods["bicubic"]["vgg_distance"], 0.5);
    assert!(
        methods["bicubic"]["psnr_mean"].as_f64().unwrap()
            > methods["nearest"]["psnr_mean"].as_f64().unwrap()
    );
    // Bicubic degraded back with the card's bilinear degradation is close to, not equal to,
    // the LR it was made from; the enlarged LR column has no LR consistency of its own.
    let lr_psnr = methods["bicubic"]["lr_psnr"].as_array().unwrap();
    assert_eq!(lr_psnr.len(), 3);
    assert!(
        lr_psnr
            .iter()
            .all(|p| p.as_f64().is_some_and(|v| v > 25.0 && v < 90.0)),
        "{lr_psnr:?}"
    );
    assert!(methods["nearest"]["lr_psnr"].as_array().unwrap().is_empty());
}

/// The VRT of a run's outputs: one layer when they share a CRS, none (not an error) when not.
#[test]
fn a_vrt_joins_outputs_that_share_a_crs() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a.tif"),
        dir.path().join("b.tif"),
        dir.path().join("c.tif"),
    );
    uint16_scene(&a, 3, 40, 24);
    uint16_scene(&b, 3, 24, 40);
    let wgs84 = gdal::spatial_ref::SpatialRef::from_epsg(4326)
        .unwrap()
        .to_wkt()
        .unwrap();
    let px = pattern(3, 8, 8, 10_000.0, 2_000.0);
    geosr_raster::raster::write_geotiff::<u16>(&c, 3, 8, 8, &px, GT, &wgs84, None).unwrap();
    let vrt = dir.path().join("scenes.vrt");
    let written = geosr_raster::writer::write_vrt(&vrt, &[a.clone(), b.clone()]).unwrap();
    assert_eq!(written.as_deref(), Some(vrt.as_path()));
    let info = RasterSource::open(&vrt, &[]).unwrap().info;
    assert_eq!((info.width, info.height, info.bands.len()), (40, 40, 3));
    let other = dir.path().join("mixed.vrt");
    assert_eq!(
        geosr_raster::writer::write_vrt(&other, &[a, c]).unwrap(),
        None
    );
    assert!(!other.exists());
}

/// Inference with a model writes the no-reference report beside the output: bicubic SR tiles
/// add no detail over bicubic and stay close to the input; the same tiles shifted by +50 show
/// that as the bias. `consistency_report: false` writes none.
#[test]
fn geotiff_writer_reports_consistency_without_a_reference() {
    let dir = tempfile::tempdir().unwrap();
    let lr = dir.path().join("lr.tif");
    uint16_scene(&lr, 3, 64, 48);
    let run = dir.path().join("run");
    model(&run);
    let plan = ScanPlan::new(&lr, None, 16, 2, 2, None).unwrap();
    let write = |shift: f32, report: Option<bool>, out: &Path| {
        // `Some(true)` also asks for the map.
        let settings = Settings {
            input: lr.clone(),
            output: Some(out.to_path_buf()),
            model: Some(run.clone()),
            infer_tile: 16,
            overlap: 2,
            infer_batch: 2,
            prefetch: 8,
            consistency_report: report,
            consistency_map: report == Some(true),
            log_dir: dir.path().join("logs"),
            ..Settings::default()
        };
        let mut rec = Recording::new(&dir.path().join(format!("inputs-{shift}-{report:?}")));
        for i in 0..plan.batches() {
            let mut sr = upscale_batch(&plan.batch(i).unwrap(), 2, Resampler::Bicubic).unwrap();
            let per_band = sr.tile_len() / sr.bands;
            for (k, v) in sr.pixels.iter_mut().enumerate() {
                *v += shift / sr.band_scale[(k / per_band) % sr.bands];
            }
            rec.input(0.1 + 0.05 * i as f64, "sr", sr.to_arrow().unwrap());
        }
        let (result, _) = run_writer(rec, "unet-infer/sr", &settings);
        result.unwrap();
    };
    let report = |out: &Path| -> serde_json::Value {
        let path = geosr_raster::mosaic::report_path(out, "json");
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };

    let plain = dir.path().join("plain.tif");
    write(0.0, Some(true), &plain);
    let r = report(&plain);
    assert!(geosr_raster::mosaic::report_path(&plain, "md").is_file());
    let bands = r["consistency"]["bands"].as_array().unwrap();
    assert_eq!(bands.len(), 3);
    for b in bands {
        assert!(
            (b["detail_vs_bicubic"].as_f64().unwrap() - 1.0).abs() < 1e-6,
            "{b}"
        );
        assert!(b["lr_psnr"].as_f64().unwrap() > 25.0, "{b}");
        assert!(b["relative_bias"].as_f64().unwrap().abs() < 0.01, "{b}");
    }
    let worst = r["consistency"]["worst_tiles"].as_array().unwrap();
    assert!(!worst.is_empty() && worst.len() <= 10);
    assert_eq!(r["consistency"]["lr_pixels"].as_u64().unwrap(), 64 * 48);

    let shifted = dir.path().join("shifted.tif");
    write(50.0, None, &shifted);
    for (b, p) in report(&shifted)["consistency"]["bands"]
        .as_array()
        .unwrap()
        .iter()
        .zip(bands)
    {
        let d = b["bias"].as_f64().unwrap() - p["bias"].as_f64().unwrap();
        assert!((d - 50.0).abs() < 0.5, "bias moved by {d}");
    }
    // The map (asked for with `consistency_map`): one value per input pixel, the root mean
    // square over bands of down(SR) − LR, so its mean square is the bands' mean MSE.
    let map_path = geosr_raster::mosaic::report_path(&plain, "tif");
    let map = RasterSource::open(&map_path, &[]).unwrap();
    assert_eq!(
        (map.info.width, map.info.height, map.info.bands.len()),
        (64, 48, 1)
    );
    let values = read_all(&map_path);
    let mean_sq = values.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / values.len() as f64;
    let mse = |b: &serde_json::Value| {
        let (psnr, range) = (
            b["lr_psnr"].as_f64().unwrap(),
            b["lr_range"].as_f64().unwrap(),
        );
        range * range / 10f64.powf(psnr / 10.0)
    };
    let want = bands.iter().map(mse).sum::<f64>() / 3.0;
    assert!(
        (mean_sq - want).abs() < 1e-4 * want,
        "{mean_sq} against {want}"
    );
    assert!(
        !geosr_raster::mosaic::report_path(&shifted, "tif").exists(),
        "no map unless asked"
    );

    let quiet = dir.path().join("quiet.tif");
    write(0.0, Some(false), &quiet);
    assert!(quiet.is_file());
    assert!(!geosr_raster::mosaic::report_path(&quiet, "json").exists());
}
