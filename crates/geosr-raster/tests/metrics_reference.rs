//! The evaluation metrics against known values: scikit-image's PSNR and SSIM on a saved pair
//! (tests/fixtures/metrics, made by scripts/reference-metrics.py), the same with a nodata wedge,
//! and the PSNR of a noise of known power.
use geosr_raster::evaluate::compare_rasters;
#[path = "../../../tests/common/mod.rs"]
mod common;
use common::root;
use geosr_raster::raster::{write_geotiff, RasterSource};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/metrics").join(name)
}

fn reference(case: &str) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let text = std::fs::read_to_string(fixture("reference.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let list = |k: &str| -> Vec<f64> {
        v[case][k]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    (list("psnr"), list("ssim"), list("data_range"))
}

fn read(path: &Path) -> (RasterSource, Vec<f32>) {
    let src = RasterSource::open(path, &[]).unwrap();
    let px = src
        .read_window(0, 0, src.info.width as u32, src.info.height as u32)
        .unwrap();
    (src, px)
}

fn write_like(src: &RasterSource, px: &[f32], path: &Path) {
    let i = &src.info;
    write_geotiff::<u16>(
        path,
        i.bands.len(),
        i.width,
        i.height,
        px,
        i.geotransform,
        &i.crs,
        None,
    )
    .unwrap();
}

fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= tol,
            "{what}: got {got:?}, scikit-image {want:?}"
        );
    }
}

#[test]
fn psnr_and_ssim_match_scikit_image() {
    let cmp = compare_rasters(
        &fixture("hr.tif"),
        &[("pred".into(), fixture("pred.tif"))],
        4,
        None,
    )
    .unwrap();
    let (psnr, ssim, range) = reference("full");
    let m = &cmp.methods["pred"];
    assert_close(&cmp.data_range, &range, 0.0, "data range");
    assert_close(&m.psnr, &psnr, 1e-9, "PSNR");
    assert_close(&m.ssim, &ssim, 1e-9, "SSIM");
    assert_eq!(cmp.pixels, 88 * 88);
    assert_eq!(cmp.ssim_windows, 78 * 78);
}

#[test]
fn nodata_is_left_out_exactly() {
    // Columns 0..20 become nodata in the HR (0 in every band, Landsat's convention) and hold
    // garbage in the prediction: the scores must equal scikit-image's on the columns left.
    let dir = tempfile::tempdir().unwrap();
    let (src, mut hr) = read(&fixture("hr.tif"));
    let (_, mut pred) = read(&fixture("pred.tif"));
    let (w, h) = (src.info.width, src.info.height);
    for b in 0..3 {
        for y in 0..h {
            for x in 0..20 {
                hr[b * w * h + y * w + x] = 0.0;
                pred[b * w * h + y * w + x] = 60000.0;
            }
        }
    }
    let (hr_p, pred_p) = (dir.path().join("hr.tif"), dir.path().join("pred.tif"));
    write_like(&src, &hr, &hr_p);
    write_like(&src, &pred, &pred_p);
    let cmp = compare_rasters(&hr_p, &[("pred".into(), pred_p)], 4, None).unwrap();
    let (psnr, ssim, range) = reference("wedge");
    let m = &cmp.methods["pred"];
    assert_close(&cmp.data_range, &range, 0.0, "data range");
    assert_close(&m.psnr, &psnr, 1e-9, "PSNR");
    assert_close(&m.ssim, &ssim, 1e-9, "SSIM");
}

#[test]
fn psnr_of_a_known_noise_power() {
    // ±50 DN in a checkerboard: MSE is exactly 2500, so PSNR = 10·log10(range² / 2500).
    let dir = tempfile::tempdir().unwrap();
    let (src, hr) = read(&fixture("hr.tif"));
    let w = src.info.width;
    let noisy: Vec<f32> = hr
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v + if (i % w + i / w) % 2 == 0 {
                50.0
            } else {
                -50.0
            }
        })
        .collect();
    let p = dir.path().join("noisy.tif");
    write_like(&src, &noisy, &p);
    let cmp = compare_rasters(&fixture("hr.tif"), &[("noisy".into(), p)], 4, None).unwrap();
    for (b, got) in cmp.methods["noisy"].psnr.iter().enumerate() {
        let r = cmp.data_range[b];
        let want = 10.0 * (r * r / 2500.0).log10();
        assert!((got - want).abs() < 1e-9, "band {b}: {got} vs {want}");
    }
    assert!(cmp.methods["noisy"].ssim_mean < 1.0);
}

#[test]
fn a_prediction_of_another_size_is_refused_naming_it() {
    let err = compare_rasters(
        &fixture("hr.tif"),
        &[(
            "crop".into(),
            root().join("data/demo/landsat8-224078-crop.tif"),
        )],
        4,
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("landsat8-224078-crop.tif") && err.contains("96x96"),
        "{err}"
    );
}

#[test]
fn strips_of_any_height_give_the_same_scores() {
    // Large rasters are read in strips with a 5-row halo; a few rows per strip must not change
    // a thing, including strips shorter than the 11-row SSIM window.
    let preds = [("pred".to_owned(), fixture("pred.tif"))];
    let whole =
        geosr_raster::evaluate::compare_in_strips(&fixture("hr.tif"), &preds, 4, None, Some(1000))
            .unwrap();
    for rows in [1, 3, 7, 16, 50] {
        let s = geosr_raster::evaluate::compare_in_strips(
            &fixture("hr.tif"),
            &preds,
            4,
            None,
            Some(rows),
        )
        .unwrap();
        assert_eq!(
            (s.pixels, s.ssim_windows),
            (whole.pixels, whole.ssim_windows),
            "{rows} rows"
        );
        assert_close(
            &s.methods["pred"].psnr,
            &whole.methods["pred"].psnr,
            1e-9,
            "PSNR",
        );
        assert_close(
            &s.methods["pred"].ssim,
            &whole.methods["pred"].ssim,
            1e-12,
            "SSIM",
        );
    }
}

/// Bias, relative bias, spectral angle and the detail split against numpy's (radiometry.json,
/// made by scripts/reference-radiometry.py; `other.tif` stands in for bicubic).
#[test]
fn radiometric_scores_match_numpy() {
    let cmp = compare_rasters(
        &fixture("hr.tif"),
        &[
            ("pred".into(), fixture("pred.tif")),
            ("bicubic".into(), fixture("other.tif")),
        ],
        4,
        None,
    )
    .unwrap();
    let text = std::fs::read_to_string(fixture("radiometry.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let want = &v["full"];
    let list = |k: &str| -> Vec<f64> {
        want[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let m = &cmp.methods["pred"];
    assert_close(&m.bias, &list("bias"), 1e-9, "bias");
    assert_close(
        &m.relative_bias,
        &list("relative_bias"),
        1e-12,
        "relative bias",
    );
    let sam = m.sam_degrees.unwrap();
    assert!(
        (sam - want["sam_degrees"].as_f64().unwrap()).abs() < 1e-9,
        "SAM {sam}"
    );
    let split = m.detail_split.unwrap();
    let ws = &want["detail_split"];
    for (got, key) in [
        (split.improvement, "improvement"),
        (split.omission, "omission"),
        (split.hallucination, "hallucination"),
    ] {
        assert!(
            (got - ws[key].as_f64().unwrap()).abs() < 1e-12,
            "{key}: {got} vs {}",
            ws[key]
        );
    }
    assert!(
        split.improvement > 0.1 && split.hallucination > 0.1,
        "all three classes occur: {split:?}"
    );
    assert!(
        cmp.methods["bicubic"].detail_split.is_none(),
        "the reference is not split against itself"
    );
}
