//! The no-reference report of an inference run: with no HR to compare with, how faithfully the
//! SR output keeps what the sensor measured.
//!
//! Each SR tile is brought back to the input's resolution with the model's own degradation
//! (bilinear by `factor`, with its antialiasing and blur) and compared with the LR pixels it was
//! made from, over the part of the tile no neighbour shares more of (each LR pixel counted
//! about once) and only where the input holds data:
//!
//! * **LR consistency**, per band: PSNR of down(SR) against the LR, the LR band's range
//!   (max − min of its valid pixels) as the peak; a model that only adds detail the input cannot
//!   see scores high, one that shifts or smears the scene scores low.
//! * **Bias**, per band: mean of down(SR) − LR in native units, and relative to the LR mean.
//! * **Detail added**: high-frequency energy of the SR against bicubic upscaling of the same LR,
//!   where the high-frequency energy of an image is the mean squared difference between each
//!   pixel and the mean of its `factor`×`factor` block (what the LR grid cannot hold). 1 means
//!   as smooth as bicubic; above 1, the model added detail (true or not: see the consistency).
//! * **Tiles to look at**: the tiles with the highest normalised inconsistency,
//!   `sqrt(mean over bands of mse_b / range_b²)`, with their LR windows and map bounds.
//!
//! ```
//! use geosr_raster::consistency::Consistency;
//! // A 2×2 LR tile upscaled ×2 by repetition is perfectly consistent under a box-like degradation.
//! let lr = vec![10.0f32, 20.0, 30.0, 40.0];
//! let sr: Vec<f32> = [10.0, 10.0, 20.0, 20.0, 10.0, 10.0, 20.0, 20.0,
//!                     30.0, 30.0, 40.0, 40.0, 30.0, 30.0, 40.0, 40.0].to_vec();
//! let mut c = Consistency::new(1, 2, false, 0.0, 5);
//! c.add_tile(&sr, &lr, &[true; 4], (2, 2), [0, 0, 2, 2]);
//! let r = c.report([0.0, 1.0, 0.0, 0.0, 0.0, -1.0]);
//! assert!(r.bands[0].bias.abs() < 1e-6);
//! assert!(r.bands[0].lr_psnr.is_none()); // identical: no finite PSNR
//! ```
use crate::degrade::{downsample_bilinear, gaussian_blur};
use crate::upscale::upscale;
use geosr::settings::Resampler;
use serde::{Deserialize, Serialize};

/// Sums over one band.
#[derive(Debug, Clone, Default)]
struct BandSums {
    err: f64,
    sq: f64,
    lr: f64,
    n: u64,
    lo: f64,
    hi: f64,
    hf_sr: f64,
    hf_bicubic: f64,
    hf_n: u64,
}

/// One tile's sums, for ranking the tiles.
#[derive(Debug, Clone)]
struct TileSums {
    window: [u32; 4],
    sq: Vec<f64>,
    n: u64,
}

/// Accumulates the report over the tiles of one output.
pub struct Consistency {
    bands: usize,
    factor: usize,
    antialias: bool,
    blur_sigma: f64,
    worst: usize,
    /// Whether to measure the detail added over bicubic (it costs a bicubic upscale per tile).
    detail: bool,
    /// Per input pixel, the root mean square over bands of down(SR) − input, when asked for.
    map: Option<InconsistencyMap>,
    sums: Vec<BandSums>,
    tiles: Vec<TileSums>,
}

/// One band of the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BandConsistency {
    /// PSNR (dB) of down(SR) against the LR; `None` when they are identical.
    pub lr_psnr: Option<f64>,
    /// Mean of down(SR) − LR, native units.
    pub bias: f64,
    /// `bias` over the LR band's mean.
    pub relative_bias: f64,
    /// Range (max − min) of the LR band's valid pixels, the PSNR's peak.
    pub lr_range: f64,
    /// High-frequency energy of the SR over that of bicubic upscaling of the same LR.
    pub detail_vs_bicubic: Option<f64>,
}

/// A tile worth looking at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TileInconsistency {
    /// `x, y, width, height` in the input's pixels.
    pub lr_window: [u32; 4],
    /// `min_x, min_y, max_x, max_y` in the input's CRS.
    pub bounds: [f64; 4],
    /// `sqrt(mean over bands of mse_b / range_b²)` of down(SR) against the LR.
    pub normalised_rmse: f64,
}

/// The report of one output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsistencyReport {
    /// LR pixels compared (valid, each counted about once).
    pub lr_pixels: u64,
    pub bands: Vec<BandConsistency>,
    /// Highest normalised inconsistency first.
    pub worst_tiles: Vec<TileInconsistency>,
}

impl Consistency {
    /// For `bands`-band tiles at `factor`×, degraded as the model's card says (`antialias`,
    /// `blur_sigma`; its noise and JPEG steps are random or lossy and left out), keeping the
    /// `worst` most inconsistent tiles.
    pub fn new(
        bands: usize,
        factor: usize,
        antialias: bool,
        blur_sigma: f64,
        worst: usize,
    ) -> Self {
        Consistency {
            bands,
            factor,
            antialias,
            blur_sigma,
            worst,
            detail: true,
            map: None,
            sums: vec![
                BandSums {
                    lo: f64::MAX,
                    hi: f64::MIN,
                    ..Default::default()
                };
                bands
            ],
            tiles: Vec::new(),
        }
    }

    /// Also keeps a map of the inconsistency over the whole `width`×`height` input: per pixel,
    /// the root mean square over bands of down(SR) − input, native units; NaN where nothing was
    /// compared (nodata). One `f32` per input pixel.
    pub fn with_map(mut self, width: usize, height: usize) -> Self {
        self.map = Some(InconsistencyMap {
            width,
            height,
            values: vec![f32::NAN; width * height],
        });
        self
    }

    /// The map kept by [`Consistency::with_map`].
    pub fn map(&self) -> Option<&InconsistencyMap> {
        self.map.as_ref()
    }

    /// Leaves out the detail measure (`detail_vs_bicubic` is then `None`): for callers that
    /// need only the consistency and the bias.
    pub fn without_detail(mut self) -> Self {
        self.detail = false;
        self
    }

    /// Adds one tile: `sr` (native units, CHW, `size.1·factor` × `size.0·factor`), the `lr`
    /// pixels of the same window (native, CHW, `size.1` × `size.0`) and which LR pixels to
    /// compare (`count`, one per pixel: those that hold data and that this tile counts, see
    /// [`CountedOnce`]). `window` is the tile's LR window in the input.
    pub fn add_tile(
        &mut self,
        sr: &[f32],
        lr: &[f32],
        count: &[bool],
        size: (usize, usize),
        window: [u32; 4],
    ) {
        let (c, f) = (self.bands, self.factor);
        let (w, h) = size;
        let (sw, sh) = (w * f, h * f);
        let blurred;
        let src = if self.blur_sigma > 0.0 {
            blurred = gaussian_blur(sr, c, sh, sw, self.blur_sigma);
            &blurred[..]
        } else {
            sr
        };
        let down = downsample_bilinear(src, c, sh, sw, f, self.antialias);
        let bicubic = if self.detail {
            upscale(lr, c, h, w, f, Resampler::Bicubic)
        } else {
            Vec::new()
        };
        let mut tile = TileSums {
            window,
            sq: vec![0.0; c],
            n: 0,
        };
        let (lr_plane, sr_plane) = (w * h, sw * sh);
        for y in 0..h {
            for x in 0..w {
                let i = y * w + x;
                if !count[i] {
                    continue;
                }
                tile.n += 1;
                let mut pixel_sq = 0.0;
                for b in 0..c {
                    let (d, l) = (down[b * lr_plane + i] as f64, lr[b * lr_plane + i] as f64);
                    let s = &mut self.sums[b];
                    s.err += d - l;
                    s.sq += (d - l) * (d - l);
                    s.lr += l;
                    s.n += 1;
                    s.lo = s.lo.min(l);
                    s.hi = s.hi.max(l);
                    tile.sq[b] += (d - l) * (d - l);
                    pixel_sq += (d - l) * (d - l);
                    if self.detail {
                        let plane = b * sr_plane;
                        s.hf_sr += block_energy(&sr[plane..][..sr_plane], sw, x, y, f);
                        s.hf_bicubic += block_energy(&bicubic[plane..][..sr_plane], sw, x, y, f);
                        s.hf_n += (f * f) as u64;
                    }
                }
                if let Some(m) = self.map.as_mut() {
                    let (gx, gy) = (window[0] as usize + x, window[1] as usize + y);
                    if gx < m.width && gy < m.height {
                        m.values[gy * m.width + gx] = (pixel_sq / c as f64).sqrt() as f32;
                    }
                }
            }
        }
        if tile.n > 0 {
            self.tiles.push(tile);
        }
    }

    /// The report; `geotransform` is the input's, for the tiles' map bounds.
    pub fn report(&self, geotransform: [f64; 6]) -> ConsistencyReport {
        let ranges: Vec<f64> = self
            .sums
            .iter()
            .map(|s| {
                if s.n > 0 {
                    (s.hi - s.lo).max(1e-12)
                } else {
                    1.0
                }
            })
            .collect();
        let bands = self
            .sums
            .iter()
            .zip(&ranges)
            .map(|(s, &range)| {
                let n = s.n.max(1) as f64;
                let mse = s.sq / n;
                let mean_lr = s.lr / n;
                BandConsistency {
                    lr_psnr: (mse > 0.0).then(|| 10.0 * (range * range / mse).log10()),
                    bias: s.err / n,
                    relative_bias: if mean_lr != 0.0 {
                        s.err / n / mean_lr
                    } else {
                        0.0
                    },
                    lr_range: range,
                    detail_vs_bicubic: (s.hf_bicubic > 0.0).then(|| s.hf_sr / s.hf_bicubic),
                }
            })
            .collect();
        let score = |t: &TileSums| -> f64 {
            let n = t.n.max(1) as f64;
            let m: f64 =
                t.sq.iter()
                    .zip(&ranges)
                    .map(|(sq, r)| sq / n / (r * r))
                    .sum::<f64>()
                    / t.sq.len().max(1) as f64;
            m.sqrt()
        };
        let mut ranked: Vec<(f64, &TileSums)> = self.tiles.iter().map(|t| (score(t), t)).collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
        let g = geotransform;
        let worst_tiles = ranked
            .into_iter()
            .take(self.worst)
            .map(|(s, t)| {
                let [x, y, w, h] = t.window.map(|v| v as f64);
                let corners = [(x, y), (x + w, y), (x, y + h), (x + w, y + h)]
                    .map(|(px, py)| (g[0] + px * g[1] + py * g[2], g[3] + px * g[4] + py * g[5]));
                let xs = corners.map(|c| c.0);
                let ys = corners.map(|c| c.1);
                let min = |v: [f64; 4]| v.iter().copied().fold(f64::MAX, f64::min);
                let max = |v: [f64; 4]| v.iter().copied().fold(f64::MIN, f64::max);
                TileInconsistency {
                    lr_window: t.window,
                    bounds: [min(xs), min(ys), max(xs), max(ys)],
                    normalised_rmse: s,
                }
            })
            .collect();
        ConsistencyReport {
            lr_pixels: self.sums.first().map_or(0, |s| s.n),
            bands,
            worst_tiles,
        }
    }
}

/// The inconsistency of each input pixel ([`Consistency::with_map`]), row-major.
pub struct InconsistencyMap {
    pub width: usize,
    pub height: usize,
    pub values: Vec<f32>,
}

/// Which input pixels a report has counted, so that each counts once, and which part of a tile
/// counts as the tile's own.
pub struct CountedOnce {
    bits: Vec<u64>,
    width: usize,
    height: usize,
    overlap: usize,
}

impl CountedOnce {
    /// For a `width`×`height` input cut into tiles that share `overlap` pixels.
    pub fn new(width: usize, height: usize, overlap: usize) -> Self {
        CountedOnce {
            bits: vec![0; (width * height).div_ceil(64)],
            width,
            height,
            overlap,
        }
    }

    /// Narrows `count` (a flag per pixel of the `w`×`h` tile at `x`, `y`) to the pixels this
    /// tile counts: away from its edges (half of each overlap trimmed where a neighbour shares
    /// it) and not counted before (the last tile of a row or column is moved back to end at
    /// the edge and shares more; the first tile counts those).
    pub fn claim(&mut self, x: usize, y: usize, w: usize, h: usize, count: &mut [bool]) {
        let o = self.overlap;
        let x0 = if x > 0 { o / 2 } else { 0 };
        let y0 = if y > 0 { o / 2 } else { 0 };
        let x1 = if x + w < self.width {
            w.saturating_sub(o - o / 2)
        } else {
            w
        };
        let y1 = if y + h < self.height {
            h.saturating_sub(o - o / 2)
        } else {
            h
        };
        for (i, flag) in count.iter_mut().enumerate().take(w * h) {
            let (tx, ty) = (i % w, i / w);
            let own = (x0..x1).contains(&tx) && (y0..y1).contains(&ty);
            let g = (y + ty) * self.width + x + tx;
            *flag = *flag
                && own
                && g < self.width * self.height
                && (self.bits[g / 64] >> (g % 64)) & 1 == 0;
            if *flag {
                self.bits[g / 64] |= 1 << (g % 64);
            }
        }
    }
}

/// High-frequency energy of the `f`×`f` block of LR pixel (`x`, `y`) in an SR plane `sw` wide:
/// the sum of squared differences between its pixels and their mean.
fn block_energy(plane: &[f32], sw: usize, x: usize, y: usize, f: usize) -> f64 {
    let (mut sum, mut sq) = (0f64, 0f64);
    for r in y * f..(y + 1) * f {
        for v in &plane[r * sw + x * f..][..f] {
            let v = *v as f64;
            sum += v;
            sq += v * v;
        }
    }
    (sq - sum * sum / (f * f) as f64).max(0.0)
}

impl ConsistencyReport {
    /// The report as Markdown, for a person; `names` are the band names.
    pub fn markdown(&self, input: &str, output: &str, names: &[String]) -> String {
        let mut md = format!(
            "# Consistency of {output}\n\nNo HR to compare with: the output, degraded back with the model's own \
             degradation, against the input {input} ({} valid input pixels).\n\n\
             | band | LR consistency, PSNR dB | bias (native) | relative bias | detail vs bicubic |\n|---|---:|---:|---:|---:|\n",
            self.lr_pixels
        );
        for (i, b) in self.bands.iter().enumerate() {
            let name = names
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("band {}", i + 1));
            let psnr = b.lr_psnr.map_or("identical".into(), |p| format!("{p:.2}"));
            let detail = b
                .detail_vs_bicubic
                .map_or("–".into(), |d| format!("{d:.3}"));
            md.push_str(&format!(
                "| {name} | {psnr} | {:.3} | {:+.4}% | {detail} |\n",
                b.bias,
                b.relative_bias * 100.0
            ));
        }
        md.push_str(
            "\nLR consistency: PSNR of down(SR) against the input, the input band's range as the peak. \
             Detail vs bicubic: high-frequency energy (each pixel against the mean of its factor×factor \
             block) of the output over that of bicubic upscaling; above 1 the model added detail.\n",
        );
        if !self.worst_tiles.is_empty() {
            md.push_str("\n## Tiles to look at (least consistent first)\n\n| input window x, y, w, h | bounds (min x, min y, max x, max y) | normalised RMSE |\n|---|---|---:|\n");
            for t in &self.worst_tiles {
                let [x, y, w, h] = t.lr_window;
                let [a, b, c, d] = t.bounds;
                md.push_str(&format!(
                    "| {x}, {y}, {w}, {h} | {a:.1}, {b:.1}, {c:.1}, {d:.1} | {:.5} |\n",
                    t.normalised_rmse
                ));
            }
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A smooth LR ramp, its bicubic ×2 and a version with a stripe pattern added.
    fn ramp(w: usize, h: usize) -> Vec<f32> {
        (0..w * h)
            .map(|i| 100.0 + (i % w) as f32 * 3.0 + (i / w) as f32 * 2.0)
            .collect()
    }

    #[test]
    fn bias_shows_an_offset_and_the_psnr_its_size() {
        let (w, h, f) = (8, 8, 2);
        let lr = ramp(w, h);
        let sr: Vec<f32> = upscale(&lr, 1, h, w, f, Resampler::Bicubic)
            .iter()
            .map(|v| v + 5.0)
            .collect();
        let mut c = Consistency::new(1, f, true, 0.0, 3);
        // Only the tile's inner 4×4 counts, as a tile with neighbours on every side.
        let inner: Vec<bool> = (0..w * h)
            .map(|i| (2..6).contains(&(i % w)) && (2..6).contains(&(i / w)))
            .collect();
        c.add_tile(&sr, &lr, &inner, (w, h), [0, 0, 8, 8]);
        let r = c.report([0.0, 30.0, 0.0, 0.0, 0.0, -30.0]);
        let b = &r.bands[0];
        // Inside the tile, bicubic of a ramp degraded back is the ramp: what is left is the +5.
        assert!((b.bias - 5.0).abs() < 0.05, "{b:?}");
        let mean: f64 = (2..6)
            .flat_map(|y| (2..6).map(move |x| (y, x)))
            .map(|(y, x)| lr[y * w + x] as f64)
            .sum::<f64>()
            / 16.0;
        assert!((b.relative_bias - 5.0 / mean).abs() < 1e-3, "{b:?}");
        let psnr = 10.0 * (b.lr_range * b.lr_range / 25.0f64).log10();
        assert!((b.lr_psnr.unwrap() - psnr).abs() < 0.1, "{b:?} vs {psnr}");
        assert_eq!(r.lr_pixels, 16);
        assert_eq!(r.worst_tiles[0].bounds, [0.0, -240.0, 240.0, 0.0]);
    }

    #[test]
    fn added_detail_raises_the_detail_ratio_and_nodata_is_left_out() {
        let (w, h, f) = (8, 8, 2);
        let lr = ramp(w, h);
        let bicubic = upscale(&lr, 1, h, w, f, Resampler::Bicubic);
        let stripes: Vec<f32> = bicubic
            .iter()
            .enumerate()
            .map(|(i, v)| v + if i % 2 == 0 { 4.0 } else { -4.0 })
            .collect();
        let full = vec![true; w * h];
        let mut same = Consistency::new(1, f, true, 0.0, 3);
        same.add_tile(&bicubic, &lr, &full, (w, h), [0, 0, 8, 8]);
        let mut more = Consistency::new(1, f, true, 0.0, 3);
        more.add_tile(&stripes, &lr, &full, (w, h), [0, 0, 8, 8]);
        let d_same = same.report([0.0; 6]).bands[0].detail_vs_bicubic.unwrap();
        let d_more = more.report([0.0; 6]).bands[0].detail_vs_bicubic.unwrap();
        assert!((d_same - 1.0).abs() < 1e-9, "{d_same}");
        assert!(d_more > 2.0, "{d_more}");
        // Stripes at the SR Nyquist average out in the degradation: still consistent.
        let mut half = vec![true; w * h];
        half[..w * h / 2].iter_mut().for_each(|v| *v = false);
        let mut masked = Consistency::new(1, f, true, 0.0, 3);
        masked.add_tile(&stripes, &lr, &half, (w, h), [0, 0, 8, 8]);
        assert_eq!(masked.report([0.0; 6]).lr_pixels, 32);
    }

    #[test]
    fn the_map_holds_each_compared_pixel_at_its_place() {
        let (w, h, f) = (4, 4, 2);
        let lr = ramp(w, h);
        let sr: Vec<f32> = upscale(&lr, 1, h, w, f, Resampler::Bicubic)
            .iter()
            .map(|v| v + 3.0)
            .collect();
        let mut c = Consistency::new(1, f, true, 0.0, 1).with_map(6, 5);
        let mut count = vec![true; w * h];
        count[0] = false; // as if nodata
        c.add_tile(&sr, &lr, &count, (w, h), [2, 1, 4, 4]);
        let m = c.map().unwrap();
        assert!(m.values[6 + 2].is_nan(), "not compared");
        assert!(m.values[..6].iter().all(|v| v.is_nan()), "outside the tile");
        let inside = m.values[2 * 6 + 3]; // tile pixel (1, 1)
        assert!((inside - 3.0).abs() < 0.5, "{inside}");
    }

    #[test]
    fn overlapping_tiles_count_each_pixel_once() {
        // A 10-pixel row cut into tiles of 6 sharing 2: origins 0 and 4.
        let mut counted = CountedOnce::new(10, 1, 2);
        let mut a = vec![true; 6];
        counted.claim(0, 0, 6, 1, &mut a);
        let mut b = vec![true; 6];
        counted.claim(4, 0, 6, 1, &mut b);
        assert_eq!(a, [true, true, true, true, true, false]);
        assert_eq!(b, [false, true, true, true, true, true]);
        // A tile moved back over counted pixels takes only what is left.
        let mut c = vec![true; 6];
        counted.claim(3, 0, 6, 1, &mut c);
        assert!(c.iter().all(|v| !v));
    }

    #[test]
    fn the_worst_tile_comes_first() {
        let (w, h, f) = (4, 4, 2);
        let lr = ramp(w, h);
        let good = upscale(&lr, 1, h, w, f, Resampler::Bicubic);
        let bad: Vec<f32> = good.iter().map(|v| v * 1.5).collect();
        let mut c = Consistency::new(1, f, true, 0.0, 1);
        let full = vec![true; w * h];
        c.add_tile(&good, &lr, &full, (w, h), [0, 0, 4, 4]);
        c.add_tile(&bad, &lr, &full, (w, h), [4, 0, 4, 4]);
        let r = c.report([0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
        assert_eq!(r.worst_tiles.len(), 1);
        assert_eq!(r.worst_tiles[0].lr_window, [4, 0, 4, 4]);
    }
}
