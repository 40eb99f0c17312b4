//! Helpers shared by the integration tests: fixture rasters and paths into the checkout.
#![allow(dead_code)]
use std::path::{Path, PathBuf};

/// The checkout (these helpers serve the tests of more than one crate of the workspace).
pub fn root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .find(|d| d.join("graphs").is_dir())
        .expect("the crate lies inside the checkout")
        .to_path_buf()
}

/// The converted VGG-16 weights made by `scripts/setup`.
pub fn vgg_weights() -> PathBuf {
    let p = root().join("weights/vgg16.safetensors");
    assert!(
        p.is_file(),
        "{} is missing: run scripts/setup first",
        p.display()
    );
    p
}

/// A textured test pattern: smooth gradients, edges and fine stripes, per band.
pub fn pattern(bands: usize, w: usize, h: usize, scale: f32, offset: f32) -> Vec<f32> {
    let mut v = Vec::with_capacity(bands * w * h);
    for b in 0..bands {
        for y in 0..h {
            for x in 0..w {
                let (xf, yf) = (x as f32, y as f32);
                let smooth = 0.5 + 0.25 * ((xf * 0.05 + b as f32).sin() * (yf * 0.07).cos());
                let edge = if (x / 11 + y / 13) % 2 == 0 {
                    0.15
                } else {
                    0.0
                };
                let stripes = 0.08 * ((xf + yf * 0.5) * 0.9).sin();
                v.push(offset + scale * (smooth + edge + stripes));
            }
        }
    }
    v
}

pub const GT: [f64; 6] = [500_000.0, 30.0, 0.0, 7_000_000.0, 0.0, -30.0];

pub fn utm21n() -> String {
    let sr = gdal::spatial_ref::SpatialRef::from_epsg(32621).unwrap();
    sr.to_wkt().unwrap()
}

/// Writes a UInt16 GeoTIFF of the test pattern (values ~2000–14000, like Landsat DNs).
pub fn uint16_scene(path: &Path, bands: usize, w: usize, h: usize) {
    let px = pattern(bands, w, h, 10_000.0, 2_000.0);
    geosr_raster::raster::write_geotiff::<u16>(path, bands, w, h, &px, GT, &utm21n(), None)
        .unwrap();
}
