//! Classic resamplers for upscaling: bilinear, bicubic (Keys, a = −0.5, as GDAL's `cubic`) and
//! Lanczos-3 (as GDAL's `lanczos`), with half-pixel centres and edge pixels repeated. The
//! baselines SR is compared against, and a stand-in for the U-Net that needs no model.
//!
//! ```
//! use geosr::settings::Resampler;
//! use geosr_raster::upscale::upscale;
//! let lr = vec![2.0f32; 4 * 4];
//! let hr = upscale(&lr, 1, 4, 4, 4, Resampler::Lanczos);
//! assert!(hr.iter().all(|v| (v - 2.0).abs() < 1e-5)); // constant stays constant
//! ```
use crate::degrade::{resample_separable, Taps};
use crate::raster::RasterSource;
use geosr::error::Result;
use geosr::settings::Resampler;
use geosr::tile::{TileBatch, Wire};
use std::collections::HashMap;
use std::path::Path;

/// A resampling kernel: its radius in input pixels and its weight function.
type Kernel = (f64, fn(f64) -> f64);

fn kernel(method: Resampler) -> Kernel {
    fn bilinear(x: f64) -> f64 {
        (1.0 - x.abs()).max(0.0)
    }
    fn bicubic(x: f64) -> f64 {
        geosr::taps::keys_cubic(-0.5, x)
    }
    fn lanczos3(x: f64) -> f64 {
        let x = x.abs();
        if x < 1e-12 {
            1.0
        } else if x < 3.0 {
            let px = std::f64::consts::PI * x;
            3.0 * px.sin() * (px / 3.0).sin() / (px * px)
        } else {
            0.0
        }
    }
    match method {
        Resampler::Bilinear => (1.0, bilinear),
        Resampler::Bicubic => (2.0, bicubic),
        Resampler::Lanczos => (3.0, lanczos3),
    }
}

/// Upscales every tile of an LR batch by `f` with `method`, keeping ids and windows.
pub fn upscale_batch(
    lr: &geosr::tile::TileBatch,
    f: usize,
    method: Resampler,
) -> Result<geosr::tile::TileBatch> {
    let mut pixels = Vec::with_capacity(lr.pixels.len() * f * f);
    for tile in lr.pixels.chunks_exact(lr.tile_len()) {
        pixels.extend(upscale(tile, lr.bands, lr.height, lr.width, f, method));
    }
    lr.derived(lr.bands, lr.height * f, lr.width * f, pixels)
}

/// Whether rounding each upscaled tile to integers before the mosaic feathers them gives the
/// mosaic's own rounding: true when every pixel that the feathering blends lies far enough from
/// its tile's edge that the resampler's taps stay inside the tile, so overlapping tiles hold the
/// same values there.
pub fn rounding_before_feathering_is_exact(method: Resampler, factor: usize, overlap: u32) -> bool {
    let (radius, _) = kernel(method);
    let o = overlap as usize * factor;
    // Without overlap nothing is blended. (The far side mirrors this one: a tap it would clamp
    // has zero weight where the near side's condition holds.)
    (0..o)
        .filter(|&d| crate::mosaic::feather(d, o) > 0.0)
        .all(|d| {
            let centre = (d as f64 + 0.5) / factor as f64 - 0.5;
            centre.floor() - radius + 1.0 >= 0.0
        })
}

/// How `upscale` sends its tiles: native `UInt16` when asked for, exact
/// ([`rounding_before_feathering_is_exact`]) and every tile's source raster is `Byte` or `UInt16`
/// (each source opened once to look); else `f32`.
pub struct TileWire {
    integers: bool,
    bands: Vec<u32>,
    known: HashMap<String, bool>,
}

impl TileWire {
    pub fn new(settings: &geosr::settings::Settings, factor: usize) -> Self {
        TileWire {
            integers: settings.upscale_integer_tiles
                && rounding_before_feathering_is_exact(
                    settings.upscale_method,
                    factor,
                    settings.overlap,
                ),
            bands: settings.bands.0.clone(),
            known: HashMap::new(),
        }
    }

    pub fn for_batch(&mut self, batch: &TileBatch) -> Result<Wire> {
        if !self.integers {
            return Ok(Wire::Float32);
        }
        for t in &batch.tiles {
            if !self.known.contains_key(&t.source) {
                let info = RasterSource::open(Path::new(&t.source), &self.bands)?.info;
                let fits = matches!(info.data_type.as_str(), "Byte" | "UInt8" | "UInt16");
                self.known.insert(t.source.clone(), fits);
            }
            if !self.known[&t.source] {
                return Ok(Wire::Float32);
            }
        }
        Ok(Wire::NativeUInt16)
    }
}

/// Upsampling taps from `n_in` to `n_in × factor` samples.
pub fn upscale_taps(n_in: usize, factor: usize, method: Resampler) -> Vec<Taps> {
    let (radius, k) = kernel(method);
    geosr::taps::upsampling_taps(n_in, factor, radius as usize, k)
}

/// Upscales CHW planes by `factor` with `method`.
pub fn upscale(
    src: &[f32],
    c: usize,
    h: usize,
    w: usize,
    factor: usize,
    method: Resampler,
) -> Vec<f32> {
    let rows = upscale_taps(h, factor, method);
    let cols = upscale_taps(w, factor, method);
    resample_separable(src, c, h, w, &rows, &cols)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_tiles_only_where_overlapping_tiles_agree() {
        use Resampler::*;
        // The default overlap (8 LR pixels) leaves 2 pixels unblended: enough for bicubic's
        // reach, not for Lanczos-3's.
        assert!(rounding_before_feathering_is_exact(Bicubic, 4, 8));
        assert!(rounding_before_feathering_is_exact(Bilinear, 2, 8));
        assert!(!rounding_before_feathering_is_exact(Lanczos, 4, 8));
        assert!(rounding_before_feathering_is_exact(Lanczos, 4, 16));
        // An overlap of 4 leaves one pixel: bilinear only.
        assert!(rounding_before_feathering_is_exact(Bilinear, 2, 4));
        assert!(!rounding_before_feathering_is_exact(Bicubic, 2, 4));
        assert!(rounding_before_feathering_is_exact(Lanczos, 3, 0));
    }
}
