//! Bilinear degradation checked against GDAL's own resampling of the same GeoTIFF, and the
//! OpenCV variant against a direct computation.
#[path = "../../../tests/common/mod.rs"]
mod common;
use common::*;
use geosr_raster::degrade::downsample_bilinear;
use geosr_raster::raster::RasterSource;
use std::process::Command;

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Antialiased bilinear equals GDAL's `-r bilinear` shrinking, borders included.
#[test]
fn antialiased_bilinear_matches_gdal() {
    let dir = tempfile::tempdir().unwrap();
    let (w, h) = (96, 72);
    let px = pattern(2, w, h, 1000.0, 50.0);
    let src = dir.path().join("hr.tif");
    geosr_raster::raster::write_geotiff::<f32>(&src, 2, w, h, &px, GT, &utm21n(), None).unwrap();
    for f in [2usize, 3, 4, 8] {
        let ours = downsample_bilinear(&px, 2, h, w, f, true);
        let (ow, oh) = (w / f, h / f);
        for tool in ["gdal_translate", "gdalwarp"] {
            // gdalwarp's kernel differs slightly at odd ratios (max 2e-3 of the range seen).
            if tool == "gdalwarp" && f == 3 {
                continue;
            }
            let dst = dir.path().join(format!("{tool}-{f}.tif"));
            let args_size = (ow.to_string(), oh.to_string());
            let args: Vec<&str> = match tool {
                "gdalwarp" => vec![
                    "-q",
                    "-overwrite",
                    "-r",
                    "bilinear",
                    "-ts",
                    &args_size.0,
                    &args_size.1,
                ],
                _ => vec![
                    "-q",
                    "-r",
                    "bilinear",
                    "-outsize",
                    &args_size.0,
                    &args_size.1,
                ],
            };
            let out = Command::new(tool)
                .args(&args)
                .arg(&src)
                .arg(&dst)
                .output()
                .expect("GDAL tools (scripts/setup)");
            assert!(
                out.status.success(),
                "{tool}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let theirs = RasterSource::open(&dst, &[])
                .unwrap()
                .read_window(0, 0, ow as u32, oh as u32)
                .unwrap();
            let d = max_diff(&ours, &theirs);
            assert!(d < 1e-5 * 1000.0, "factor {f}, {tool}: max difference {d}");
        }
    }
}

/// `antialias: false` is OpenCV's INTER_LINEAR: each output pixel is the bilinear
/// interpolation of the input at ((x + 0.5)·f − 0.5, (y + 0.5)·f − 0.5), computed here directly.
#[test]
fn opencv_linear_matches_direct_interpolation() {
    let (w, h) = (48, 72);
    let px = pattern(1, w, h, 1.0, 0.0);
    for f in [2usize, 3, 4, 8] {
        let ours = downsample_bilinear(&px, 1, h, w, f, false);
        let (ow, oh) = (w / f, h / f);
        for y in 0..oh {
            for x in 0..ow {
                let sx = ((x as f64 + 0.5) * f as f64 - 0.5).max(0.0);
                let sy = ((y as f64 + 0.5) * f as f64 - 0.5).max(0.0);
                let (x0, y0) = (sx.floor() as usize, sy.floor() as usize);
                let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
                let (ax, ay) = ((sx - x0 as f64) as f32, (sy - y0 as f64) as f32);
                let at = |xx: usize, yy: usize| px[yy * w + xx];
                let v = (1.0 - ay) * ((1.0 - ax) * at(x0, y0) + ax * at(x1, y0))
                    + ay * ((1.0 - ax) * at(x0, y1) + ax * at(x1, y1));
                assert!(
                    (ours[y * ow + x] - v).abs() < 1e-5,
                    "factor {f} at ({x},{y}): {} vs {v}",
                    ours[y * ow + x]
                );
            }
        }
    }
}
