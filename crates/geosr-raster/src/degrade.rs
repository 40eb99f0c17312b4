//! Degradation of high-resolution tiles into low-resolution ones.
//!
//! Bilinear downsampling by an integer `factor`, with pixel centres aligned as GDAL, OpenCV and
//! Pillow align them (output pixel `i` is centred on input coordinate `(i + 0.5)·factor − 0.5`):
//!
//! * `antialias = true` (default): the triangle kernel is widened by `factor`, which is what
//!   GDAL's `-r bilinear` and Pillow's `BILINEAR` do when shrinking, and what a sensor's
//!   footprint does; taps outside the tile are dropped and the rest renormalised.
//! * `antialias = false`: OpenCV's `INTER_LINEAR` — two taps per axis, edge pixels replicated.
//!
//! Optional extra degradations, all off by default: Gaussian blur before downsampling, Gaussian
//! noise and JPEG compression (through GDAL's JPEG driver) after it.
//!
//! ```
//! use geosr_raster::degrade::downsample_bilinear;
//! // A 4×4 ramp shrunk by 2 keeps its mean.
//! let hr: Vec<f32> = (0..16).map(|v| v as f32).collect();
//! let lr = downsample_bilinear(&hr, 1, 4, 4, 2, true);
//! assert_eq!(lr.len(), 4);
//! assert!((lr.iter().sum::<f32>() / 4.0 - 7.5).abs() < 1e-5);
//! ```
use geosr::card::Degradation;
use geosr::error::{Error, Result};
use geosr::tile::TileBatch;
use rand::{Rng, SeedableRng};

pub use geosr::taps::{bilinear_taps, gaussian_taps, resample_separable, Taps};

/// Bilinear downsampling of CHW planes by an integer factor.
pub fn downsample_bilinear(
    src: &[f32],
    c: usize,
    h: usize,
    w: usize,
    factor: usize,
    antialias: bool,
) -> Vec<f32> {
    let rows = bilinear_taps(h, h / factor, antialias);
    let cols = bilinear_taps(w, w / factor, antialias);
    resample_separable(src, c, h, w, &rows, &cols)
}

/// Gaussian blur of CHW planes (kernel radius 3σ, edges renormalised).
pub fn gaussian_blur(src: &[f32], c: usize, h: usize, w: usize, sigma: f64) -> Vec<f32> {
    resample_separable(
        src,
        c,
        h,
        w,
        &gaussian_taps(h, sigma),
        &gaussian_taps(w, sigma),
    )
}

/// Applying a [`Degradation`] (its description lives in the model card, `geosr::card`).
pub trait Degrade {
    /// Degrades one CHW tile. `seed` makes the noise repeatable per tile.
    fn apply(&self, tile: &[f32], c: usize, h: usize, w: usize, seed: u64) -> Result<Vec<f32>>;
    /// Degrades every tile of an HR batch into an LR batch with the same ids and ground
    /// footprint. Noise seeds follow the batch and tile, so a run is repeatable.
    fn apply_batch(&self, hr: &TileBatch) -> Result<TileBatch>;
}

impl Degrade for Degradation {
    fn apply(&self, tile: &[f32], c: usize, h: usize, w: usize, seed: u64) -> Result<Vec<f32>> {
        let f = self.factor as usize;
        let spec = &self.spec;
        if !h.is_multiple_of(f) || !w.is_multiple_of(f) {
            return Err(Error::Contract(format!(
                "tile {w}x{h} is not a multiple of factor {f}"
            )));
        }
        let blurred;
        let src = if spec.blur_sigma > 0.0 {
            blurred = gaussian_blur(tile, c, h, w, spec.blur_sigma);
            &blurred[..]
        } else {
            tile
        };
        let mut lr = downsample_bilinear(src, c, h, w, f, spec.antialias);
        if let Some(q) = spec.jpeg_quality {
            lr = jpeg_round_trip(&lr, c, h / f, w / f, q)?;
        }
        if spec.noise_std > 0.0 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            for v in lr.iter_mut() {
                // Box–Muller: two uniforms give one standard normal sample.
                let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
                let u2: f64 = rng.gen();
                let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                *v += (z * spec.noise_std) as f32;
            }
        }
        Ok(lr)
    }

    fn apply_batch(&self, hr: &TileBatch) -> Result<TileBatch> {
        let f = self.factor as usize;
        let (c, h, w) = (hr.bands, hr.height, hr.width);
        let mut pixels = Vec::with_capacity(hr.pixels.len() / (f * f));
        for (i, tile) in hr.pixels.chunks_exact(hr.tile_len()).enumerate() {
            let seed = hr.batch_id.wrapping_mul(1_000_003).wrapping_add(i as u64);
            pixels.extend(self.apply(tile, c, h, w, seed)?);
        }
        hr.derived(c, h / f, w / f, pixels)
    }
}

/// JPEG-compresses normalised CHW planes (0–1 mapped to 0–255, each plane as its own grey
/// image) through GDAL's in-memory files and decodes them again.
pub fn jpeg_round_trip(src: &[f32], c: usize, h: usize, w: usize, quality: u8) -> Result<Vec<f32>> {
    use gdal::raster::{Buffer, RasterCreationOptions};
    use gdal::DriverManager;
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let err = |e: gdal::errors::GdalError| Error::Contract(format!("JPEG degradation: {e}"));
    let mem = DriverManager::get_driver_by_name("MEM").map_err(err)?;
    let jpeg = DriverManager::get_driver_by_name("JPEG").map_err(err)?;
    let mut out = vec![0f32; src.len()];
    for ch in 0..c {
        let plane = &src[ch * h * w..(ch + 1) * h * w];
        let bytes: Vec<u8> = plane
            .iter()
            .map(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8)
            .collect();
        let ds = mem
            .create_with_band_type::<u8, _>("", w, h, 1)
            .map_err(err)?;
        ds.rasterband(1)
            .map_err(err)?
            .write((0, 0), (w, h), &mut Buffer::new((w, h), bytes))
            .map_err(err)?;
        let name = format!(
            "/vsimem/geosr-jpeg-{}-{}.jpg",
            std::process::id(),
            COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let opts = RasterCreationOptions::from_iter([format!("QUALITY={quality}")]);
        let copy = ds.create_copy(&jpeg, &name, &opts).map_err(err)?;
        drop(copy);
        let back = gdal::Dataset::open(&name).map_err(err)?;
        let buf = back
            .rasterband(1)
            .map_err(err)?
            .read_as::<u8>((0, 0), (w, h), (w, h), None)
            .map_err(err)?;
        for (o, v) in out[ch * h * w..(ch + 1) * h * w].iter_mut().zip(buf.data()) {
            *o = *v as f32 / 255.0;
        }
        drop(back);
        let _ = gdal::vsi::unlink_mem_file(&name);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opencv_linear_by_4_averages_the_two_central_pixels() {
        // Output i sits at 4i + 1.5: halfway between inputs 4i+1 and 4i+2.
        let src: Vec<f32> = (0..8).map(|v| (v * v) as f32).collect();
        let taps = bilinear_taps(8, 2, false);
        assert_eq!(
            taps,
            vec![
                Taps {
                    start: 1,
                    weights: vec![0.5, 0.5]
                },
                Taps {
                    start: 5,
                    weights: vec![0.5, 0.5]
                }
            ]
        );
        let out = resample_separable(
            &src,
            1,
            1,
            8,
            &[Taps {
                start: 0,
                weights: vec![1.0],
            }],
            &taps,
        );
        assert_eq!(out, vec![(1.0 + 4.0) / 2.0, (25.0 + 36.0) / 2.0]);
    }

    #[test]
    fn antialiased_taps_sum_to_one_and_are_symmetric() {
        for f in [2usize, 3, 4, 8] {
            let taps = bilinear_taps(8 * f, 8, true);
            for t in &taps {
                assert!((t.weights.iter().sum::<f32>() - 1.0).abs() < 1e-6);
            }
            let mid = &taps[3];
            let n = mid.weights.len();
            for k in 0..n {
                assert!(
                    (mid.weights[k] - mid.weights[n - 1 - k]).abs() < 1e-6,
                    "factor {f}"
                );
            }
            // Odd factors centre on an input pixel, whose ±factor neighbours get weight 0.
            assert_eq!(
                n,
                2 * f - f % 2,
                "factor {f}: a widened triangle spans 2·factor inputs"
            );
        }
    }

    #[test]
    fn constant_stays_constant_and_blur_keeps_mean() {
        let src = vec![3.25f32; 2 * 16 * 16];
        for aa in [true, false] {
            assert!(downsample_bilinear(&src, 2, 16, 16, 4, aa)
                .iter()
                .all(|v| (v - 3.25).abs() < 1e-5));
        }
        assert!(gaussian_blur(&src, 2, 16, 16, 1.5)
            .iter()
            .all(|v| (v - 3.25).abs() < 1e-5));
    }

    #[test]
    fn noise_is_seeded_and_has_the_asked_spread() {
        let d = Degradation {
            factor: 2,
            spec: geosr::card::DegradationSpec {
                antialias: true,
                blur_sigma: 0.0,
                noise_std: 0.1,
                jpeg_quality: None,
            },
        };
        let tile = vec![0.5f32; 64 * 64];
        let a = d.apply(&tile, 1, 64, 64, 9).unwrap();
        assert_eq!(a, d.apply(&tile, 1, 64, 64, 9).unwrap());
        let var = a
            .iter()
            .map(|v| (v - 0.5) as f64 * (v - 0.5) as f64)
            .sum::<f64>()
            / a.len() as f64;
        assert!((var.sqrt() - 0.1).abs() < 0.02, "std {}", var.sqrt());
    }
}
