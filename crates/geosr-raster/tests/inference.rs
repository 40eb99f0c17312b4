//! Inference tiling and mosaicking on real GeoTIFFs: georeferencing, size, seams (constant and
//! ramp), nodata, data types, atomic output, band-count mismatch, bounded memory.
#[path = "../../../tests/common/mod.rs"]
mod common;
use common::*;
use geosr::tile::{TileBatch, Wire};
use geosr_raster::mosaic::{Mosaic, MosaicOptions};
use geosr_raster::raster::RasterSource;
use geosr_raster::scan::ScanPlan;
use std::path::Path;

fn opts(overlap: u32) -> MosaicOptions {
    MosaicOptions {
        creation_options: vec!["TILED=YES".into(), "COMPRESS=DEFLATE".into()],
        format: geosr::settings::OutputFormat::GTiff,
        overlap,
        consistency: None,
    }
}

/// The classic path of graphs/upscale-classic.yml, in process: tiles → resampler → mosaic; with
/// `wire`, each SR batch goes through Arrow that way on its way to the mosaic.
fn upscale_raster(
    src: &Path,
    out: &Path,
    factor: usize,
    method: &str,
    tile: u32,
    overlap: u32,
    wire: Option<Wire>,
) -> usize {
    let plan = ScanPlan::new(src, None, tile, overlap, 3, None).unwrap();
    let mut m = Mosaic::create(src, out, factor, opts(overlap)).unwrap();
    let mut peak = 0;
    for i in 0..plan.batches() {
        let lr = plan.batch(i).unwrap();
        let mut px = Vec::new();
        for t in lr.pixels.chunks_exact(lr.tile_len()) {
            px.extend(geosr_raster::upscale::upscale(
                t,
                lr.bands,
                lr.height,
                lr.width,
                factor,
                method.parse().unwrap(),
            ));
        }
        let mut sr = lr
            .derived(lr.bands, lr.height * factor, lr.width * factor, px)
            .unwrap();
        if let Some(wire) = wire {
            sr.wire = wire;
            sr = TileBatch::from_arrow(sr.into_arrow().unwrap().as_ref()).unwrap();
        }
        m.add(&sr).unwrap();
        peak = peak.max(m.buffer_bytes());
    }
    m.finish().unwrap();
    peak
}

fn read_all(p: &Path) -> (geosr_raster::raster::RasterInfo, Vec<f32>) {
    let s = RasterSource::open(p, &[]).unwrap();
    let (w, h) = (s.info.width as u32, s.info.height as u32);
    let v = s.read_window(0, 0, w, h).unwrap();
    (s.info, v)
}

#[test]
fn georeferencing_size_and_type_follow_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("lr.tif");
    uint16_scene(&src, 3, 70, 45);
    let out = dir.path().join("out/sr.tif");
    upscale_raster(&src, &out, 4, "bicubic", 32, 4, None);
    let (info, px) = read_all(&out);
    assert_eq!((info.width, info.height, info.bands.len()), (280, 180, 3));
    assert_eq!(info.data_type, "UInt16");
    assert_eq!(
        info.geotransform,
        [GT[0], GT[1] / 4.0, 0.0, GT[3], 0.0, GT[5] / 4.0]
    );
    assert!(
        info.crs.contains("32621") || info.crs.contains("UTM zone 21N"),
        "{}",
        info.crs
    );
    assert!(
        px.iter().all(|v| (1000.0..16000.0).contains(v)),
        "native value range restored"
    );
    let names: Vec<_> = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "no temporary files left: {names:?}");
}

#[test]
fn integer_tiles_write_the_same_raster_where_the_rule_allows_them() {
    use geosr::settings::Resampler;
    use geosr_raster::upscale::rounding_before_feathering_is_exact as exact;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("scene.tif");
    uint16_scene(&src, 3, 150, 110);
    let run = |name: &str, method: &str, overlap: u32, wire: Wire| {
        let out = dir.path().join(format!("{name}.tif"));
        upscale_raster(&src, &out, 4, method, 48, overlap, Some(wire));
        read_all(&out).1
    };
    // Bicubic at the default overlap: the rule allows integers, and the raster is the same.
    assert!(exact(Resampler::Bicubic, 4, 8));
    let f32_tiles = run("f32", "bicubic", 8, Wire::Float32);
    assert_eq!(f32_tiles, run("u16", "bicubic", 8, Wire::NativeUInt16));
    // Lanczos at the same overlap: the rule refuses, and rightly: rounding first would differ.
    assert!(!exact(Resampler::Lanczos, 4, 8));
    let a = run("lanczos-f32", "lanczos", 8, Wire::Float32);
    let b = run("lanczos-u16", "lanczos", 8, Wire::NativeUInt16);
    let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(
        differ > 0 && worst <= 1.0,
        "{differ} pixels differ, by up to {worst}"
    );
}

#[test]
fn a_constant_stays_constant_and_a_ramp_stays_a_ramp_across_tiles() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (90usize, 75usize);
    let constant = dir.path().join("constant.tif");
    geosr_raster::raster::write_geotiff::<f32>(
        &constant,
        1,
        w,
        h,
        &vec![7.25; w * h],
        GT,
        "",
        None,
    )
    .unwrap();
    let out = dir.path().join("constant-sr.tif");
    upscale_raster(&constant, &out, 2, "lanczos", 32, 6, None);
    let (_, px) = read_all(&out);
    let worst = px.iter().map(|v| (v - 7.25).abs()).fold(0f32, f32::max);
    assert!(worst < 1e-4, "constant drifted by {worst}");

    // A ramp through bilinear upscaling is the same ramp sampled at the HR pixel centres.
    let ramp: Vec<f32> = (0..h)
        .flat_map(|y| (0..w).map(move |x| 3.0 * x as f32 + 2.0 * y as f32))
        .collect();
    let src = dir.path().join("ramp.tif");
    geosr_raster::raster::write_geotiff::<f32>(&src, 1, w, h, &ramp, GT, "", None).unwrap();
    let out = dir.path().join("ramp-sr.tif");
    let f = 2usize;
    upscale_raster(&src, &out, f, "bilinear", 32, 6, None);
    let (_, px) = read_all(&out);
    let mut worst = 0f32;
    for y in 2 * f..(h - 2) * f {
        for x in 2 * f..(w - 2) * f {
            let lx = (x as f32 + 0.5) / f as f32 - 0.5;
            let ly = (y as f32 + 0.5) / f as f32 - 0.5;
            worst = worst.max((px[y * w * f + x] - (3.0 * lx + 2.0 * ly)).abs());
        }
    }
    // Tiles meet every 26 LR px here; each tile repeats its edge pixels, which would show as
    // steps at the joins if the feathering let them through.
    assert!(worst < 1e-3, "ramp broken at tile borders by up to {worst}");
}

#[test]
fn nodata_stays_nodata() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (64usize, 48usize);
    let mut px = pattern(3, w, h, 10_000.0, 2_000.0);
    for b in 0..3 {
        for y in 0..h {
            for x in 0..w {
                if x + y < 20 {
                    px[b * w * h + y * w + x] = 0.0; // a Landsat-style wedge, undeclared
                }
            }
        }
    }
    let src = dir.path().join("wedge.tif");
    geosr_raster::raster::write_geotiff::<u16>(&src, 3, w, h, &px, GT, &utm21n(), None).unwrap();
    let out = dir.path().join("wedge-sr.tif");
    upscale_raster(&src, &out, 2, "bicubic", 32, 4, None);
    let (info, sr) = read_all(&out);
    assert_eq!(
        info.nodata,
        Some(0.0),
        "the implicit nodata is declared in the output"
    );
    let (ow, plane) = (w * 2, w * 2 * h * 2);
    for y in 0..h * 2 {
        for x in 0..ow {
            let lr_nodata = x / 2 + y / 2 < 20;
            for b in 0..3 {
                let v = sr[b * plane + y * ow + x];
                assert_eq!(v == 0.0, lr_nodata, "band {b} at ({x},{y}): {v}");
            }
        }
    }
}

#[test]
fn unfinished_output_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("lr.tif");
    uint16_scene(&src, 1, 40, 40);
    let out = dir.path().join("sr.tif");
    {
        let plan = ScanPlan::new(&src, None, 16, 2, 2, None).unwrap();
        let mut m = Mosaic::create(&src, &out, 2, opts(2)).unwrap();
        let lr = plan.batch(0).unwrap();
        let sr = lr
            .derived(1, 32, 32, lr.pixels.iter().flat_map(|v| [*v; 4]).collect())
            .unwrap();
        m.add(&sr).unwrap();
        assert!(
            m.finish().is_err(),
            "finishing with tiles missing is an error"
        );
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "only the input remains"
    );
}

#[test]
fn band_count_and_type_must_match_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let card: geosr::card::ModelCard = serde_json::from_value(serde_json::json!({
        "geosr_version": "0", "architecture": {"bands": 3, "factor": 4, "depth": 2, "width": 8, "upsample": "pixelshuffle", "skip": "bicubic"},
        "downsample_factor": 4, "bands": [1, 2, 3], "colour": "", "data_type": "UInt16",
        "normalisation": {"offset": [0.0, 0.0, 0.0], "scale": [1.0, 1.0, 1.0], "fill": [0.0, 0.0, 0.0]},
        "degradation": {"factor": 4, "antialias": true, "blur_sigma": 0.0, "noise_std": 0.0, "jpeg_quality": null},
        "losses": [], "metrics": null,
        "provenance": {"rasters": [], "paired_lr": null, "chip_size": 64, "stride": 64, "chips_considered": 0,
            "chips_skipped_nodata": 0, "max_nodata_pct": 10.0, "train_chips": 0, "val_chips": 0,
            "train_batches_per_epoch": 0, "val_batches": 0, "batch_size": 16, "seed": 42,
            "normalisation": {"offset": [0.0, 0.0, 0.0], "scale": [1.0, 1.0, 1.0], "fill": [0.0, 0.0, 0.0]}}, "step": 1, "epoch": 0, "device": "Cpu", "weights_sha256": "", "written_unix_s": 0
    }))
    .unwrap();
    let one = dir.path().join("one-band.tif");
    uint16_scene(&one, 1, 40, 40);
    let err = ScanPlan::new(&one, Some(&card), 32, 4, 2, None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("one-band.tif") && err.contains("has 1 bands; the model was trained on 3"),
        "{err}"
    );
    let float = dir.path().join("float.tif");
    geosr_raster::raster::write_geotiff::<f32>(
        &float,
        3,
        40,
        40,
        &pattern(3, 40, 40, 1.0, 0.0),
        GT,
        "",
        None,
    )
    .unwrap();
    let err = ScanPlan::new(&float, Some(&card), 32, 4, 2, None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("Float32") && err.contains("UInt16"), "{err}");
}

#[test]
fn memory_follows_one_tile_row_not_the_raster() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (64usize, 1600usize);
    let src = dir.path().join("tall.tif");
    geosr_raster::raster::write_geotiff::<f32>(
        &src,
        1,
        w,
        h,
        &pattern(1, w, h, 1.0, 0.0),
        GT,
        "",
        None,
    )
    .unwrap();
    let peak = upscale_raster(
        &src,
        &dir.path().join("tall-sr.tif"),
        4,
        "bilinear",
        32,
        4,
        None,
    );
    let whole = (w * 4) * (h * 4) * 4 * 2;
    assert!(
        peak * 8 < whole,
        "blending buffers peaked at {peak} bytes for a {whole}-byte raster"
    );
}
