//! Evaluation: super-resolved rasters compared with the HR raster they were made from, and the
//! preview pictures of the evaluation graph.
//!
//! Metrics follow the usual super-resolution conventions:
//! - computed on native values (DN, reflectance, ...), band by band, with each band's data range
//!   taken as `max − min` of the HR band's compared pixels;
//! - a border of `factor` pixels is left out, as is every pixel that is nodata in the HR raster;
//! - PSNR from the band's mean squared error; SSIM as [`geosr::metrics::ssim`] computes it
//!   (scikit-image's Gaussian variant), averaged over the 11×11 windows that hold only compared
//!   pixels;
//! - the per-raster figure of a method is the mean of its band PSNRs (SSIMs).
//!
//! Rasters are read in strips of rows, so memory does not grow with the raster's height.
//!
//! ```
//! use geosr_raster::evaluate::compare_rasters;
//! let hr = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/demo/landsat8-224078-crop.tif"));
//! let cmp = compare_rasters(hr, &[("self".into(), hr.to_path_buf())], 4, None).unwrap();
//! assert!(cmp.methods["self"].psnr_mean.is_infinite());
//! assert!((cmp.methods["self"].ssim_mean - 1.0).abs() < 1e-9);
//! ```
use crate::raster::{RasterInfo, RasterSource};
use geosr::error::{Error, Result};
use geosr::metrics::{filter_valid, gaussian_window};
use geosr::plot::{Canvas, BLACK, WHITE};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Which pixels hold data: the declared nodata value (or the `nodata` setting) band by band,
/// else, for integer rasters, pixels that are 0 in every band (Landsat's wedges); NaN always.
#[derive(Debug, Clone, Copy)]
pub struct ValidRule {
    nodata: Option<f64>,
    declared: bool,
}

impl ValidRule {
    pub fn for_raster(info: &RasterInfo, setting: Option<f64>) -> Self {
        let declared = info.nodata.or(setting);
        ValidRule {
            nodata: declared.or(if info.is_integer() { Some(0.0) } else { None }),
            declared: declared.is_some(),
        }
    }

    /// One flag per pixel of a CHW block: true where every band holds data.
    pub fn mask(&self, px: &[f32], c: usize, plane: usize) -> Vec<bool> {
        (0..plane)
            .map(|i| {
                let v = |b: usize| px[b * plane + i];
                if (0..c).any(|b| v(b).is_nan()) {
                    return false;
                }
                match self.nodata {
                    None => true,
                    Some(nd) if self.declared => (0..c).all(|b| v(b) as f64 != nd),
                    Some(nd) => (0..c).any(|b| v(b) as f64 != nd),
                }
            })
            .collect()
    }
}

/// Scores of one method on one raster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodScores {
    /// PSNR (dB) per band.
    pub psnr: Vec<f64>,
    /// SSIM per band.
    pub ssim: Vec<f64>,
    /// Root mean squared error per band, native units.
    pub rmse: Vec<f64>,
    pub psnr_mean: f64,
    pub ssim_mean: f64,
    /// Mean VGG feature distance over the tiles without nodata (from `vgg-loss`), when measured.
    pub vgg_distance: Option<f64>,
    pub vgg_tiles: usize,
    /// Mean of prediction − HR per band, native units.
    #[serde(default)]
    pub bias: Vec<f64>,
    /// `bias` over the HR band's mean.
    #[serde(default)]
    pub relative_bias: Vec<f64>,
    /// Mean spectral angle (degrees) between the prediction's and the HR's band vectors, over
    /// pixels where both are non-zero; `None` for single-band rasters.
    #[serde(default)]
    pub sam_degrees: Option<f64>,
    /// Where the method moved away from bicubic, and which way ([`DetailSplit`]); `None` for
    /// bicubic itself or without a bicubic method to compare with.
    #[serde(default)]
    pub detail_split: Option<DetailSplit>,
    /// PSNR (dB) per band of the prediction degraded back with the model's degradation against
    /// the LR it was made from (`None` where identical); empty when the LR was not at hand.
    #[serde(default)]
    pub lr_psnr: Vec<Option<f64>>,
}

/// Shares of the compared pixels by what a method did against bicubic upscaling of the same
/// LR, in the spirit of opensr-test. With band vectors `sr`, `hr` and `bicubic` at a pixel,
/// `a = |sr − hr|` (the method's error), `t = |bicubic − hr|` (bicubic's error) and a tolerance
/// `ε` = 1 % of the norm of the bands' data ranges:
/// - **improvement**: `a < t − ε`, nearer the truth than bicubic;
/// - **hallucination**: `a > t + ε`, further from the truth than bicubic (detail that is not
///   there, or that is wrong);
/// - **omission**: otherwise, as near as bicubic (detail the HR holds was not added, or there
///   was none to add).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DetailSplit {
    pub improvement: f64,
    pub omission: f64,
    pub hallucination: f64,
}

/// The method the detail split compares with.
const SPLIT_REFERENCE: &str = "bicubic";

/// Every method compared with one HR raster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RasterComparison {
    pub hr: PathBuf,
    pub width: usize,
    pub height: usize,
    pub bands: usize,
    pub border: usize,
    /// Pixels compared (valid and outside the border).
    pub pixels: u64,
    /// SSIM windows averaged.
    pub ssim_windows: u64,
    /// Data range per band (`max − min` of the compared HR pixels).
    pub data_range: Vec<f64>,
    pub methods: BTreeMap<String, MethodScores>,
}

/// Rows per strip: about two million pixels.
fn strip_rows(width: usize) -> usize {
    (2_000_000 / width.max(1)).clamp(16, 1024)
}

/// Compares each `(name, raster)` of `preds` with the HR raster `hr` (same size and bands).
pub fn compare_rasters(
    hr: &Path,
    preds: &[(String, PathBuf)],
    border: usize,
    nodata: Option<f64>,
) -> Result<RasterComparison> {
    compare_in_strips(hr, preds, border, nodata, None)
}

/// [`compare_rasters`] with the strip height given (tests: many strips give the same scores).
#[doc(hidden)]
pub fn compare_in_strips(
    hr: &Path,
    preds: &[(String, PathBuf)],
    border: usize,
    nodata: Option<f64>,
    rows: Option<usize>,
) -> Result<RasterComparison> {
    let src = RasterSource::open(hr, &[])?;
    let (w, h, c) = (src.info.width, src.info.height, src.info.bands.len());
    let rule = ValidRule::for_raster(&src.info, nodata);
    let mut others = Vec::with_capacity(preds.len());
    for (name, path) in preds {
        let p = RasterSource::open(path, &[])?;
        if (p.info.width, p.info.height, p.info.bands.len()) != (w, h, c) {
            return Err(Error::raster(
                path,
                format!(
                    "is {}x{} with {} bands; the HR raster {} it is compared with is {w}x{h} with {c}",
                    p.info.width,
                    p.info.height,
                    p.info.bands.len(),
                    hr.display()
                ),
            ));
        }
        others.push((name.clone(), p));
    }
    if w <= 2 * border || h <= 2 * border {
        return Err(Error::raster(
            hr,
            format!("{w}x{h} leaves nothing to compare inside a border of {border} pixels"),
        ));
    }
    let inside =
        |x: usize, y: usize| x >= border && x < w - border && y >= border && y < h - border;
    let rows = rows.unwrap_or_else(|| strip_rows(w)).max(1);

    // Pass 1: each band's data range over the compared pixels.
    let (mut lo, mut hi) = (vec![f64::MAX; c], vec![f64::MIN; c]);
    let mut pixels = 0u64;
    for c0 in (0..h).step_by(rows) {
        let n = rows.min(h - c0);
        let px = src.read_window(0, c0 as u32, w as u32, n as u32)?;
        let plane = w * n;
        let mask = rule.mask(&px, c, plane);
        for (i, ok) in mask.iter().enumerate() {
            if *ok && inside(i % w, c0 + i / w) {
                pixels += 1;
                for b in 0..c {
                    let v = px[b * plane + i] as f64;
                    lo[b] = lo[b].min(v);
                    hi[b] = hi[b].max(v);
                }
            }
        }
    }
    if pixels == 0 {
        return Err(Error::raster(
            hr,
            "has no valid pixel to compare (all nodata or inside the border)",
        ));
    }
    let range: Vec<f64> = (0..c).map(|b| (hi[b] - lo[b]).max(1e-12)).collect();

    // Pass 2: squared errors and SSIM sums, strips with a 5-row halo for the 11×11 windows.
    let k = gaussian_window();
    let m = others.len();
    let mut sq = vec![vec![0f64; c]; m];
    let mut err_sum = vec![vec![0f64; c]; m];
    let mut hr_sum = vec![0f64; c];
    let (mut sam_sum, mut sam_n) = (vec![0f64; m], vec![0u64; m]);
    // Improvement, omission, hallucination counts against the split's reference method.
    let mut split = vec![[0u64; 3]; m];
    let reference = others.iter().position(|(n, _)| n == SPLIT_REFERENCE);
    let eps = 0.01 * range.iter().map(|r| r * r).sum::<f64>().sqrt();
    let mut ssim_sum = vec![vec![0f64; c]; m];
    let mut windows = 0u64;
    for c0 in (0..h).step_by(rows) {
        let c1 = (c0 + rows).min(h);
        let (in0, in1) = (c0.saturating_sub(5), (c1 + 5).min(h));
        let hs = in1 - in0;
        let plane = w * hs;
        let hr_px = src.read_window(0, in0 as u32, w as u32, hs as u32)?;
        let mask: Vec<bool> = rule
            .mask(&hr_px, c, plane)
            .into_iter()
            .enumerate()
            .map(|(i, ok)| ok && inside(i % w, in0 + i / w))
            .collect();
        // Window centres of this strip whose 11×11 window holds only compared pixels.
        let (cy0, cy1) = (c0.max(5), c1.min(h.saturating_sub(5)));
        let full = if cy1 > cy0 && w >= 11 && hs >= 11 {
            full_windows(&mask, hs, w)
        } else {
            Vec::new()
        };
        let ow = w.saturating_sub(10);
        let centres: Vec<usize> = if full.is_empty() {
            Vec::new()
        } else {
            (cy0..cy1)
                .flat_map(|cy| {
                    let r = cy - 5 - in0;
                    (0..ow).map(move |x| r * ow + x)
                })
                .filter(|&i| full[i])
                .collect()
        };
        windows += centres.len() as u64;
        // Rows of this strip proper (not the halo) for the squared errors.
        let own = (c0 - in0) * w..(c1 - in0) * w;
        let hr_stats: Vec<Option<[Vec<f64>; 3]>> = (0..c)
            .map(|b| {
                (!centres.is_empty()).then(|| {
                    let a: Vec<f64> = hr_px[b * plane..(b + 1) * plane]
                        .iter()
                        .map(|v| *v as f64)
                        .collect();
                    let aa: Vec<f64> = a.iter().map(|v| v * v).collect();
                    [
                        filter_valid(&a, hs, w, &k).0,
                        filter_valid(&aa, hs, w, &k).0,
                        a,
                    ]
                })
            })
            .collect();
        for b in 0..c {
            let ap = &hr_px[b * plane..(b + 1) * plane];
            hr_sum[b] += own
                .clone()
                .filter(|&i| mask[i])
                .map(|i| ap[i] as f64)
                .sum::<f64>();
        }
        let strips: Vec<Vec<f32>> = others
            .iter()
            .map(|(_, p)| p.read_window(0, in0 as u32, w as u32, hs as u32))
            .collect::<Result<_>>()?;
        for (j, pr) in strips.iter().enumerate() {
            let reference = reference.filter(|&r| r != j).map(|r| &strips[r]);
            for i in own.clone().filter(|&i| mask[i]) {
                let (mut dot, mut na, mut np, mut err, mut reference_err) =
                    (0.0, 0.0, 0.0, 0.0, 0.0);
                for b in 0..c {
                    let (a, p) = (hr_px[b * plane + i] as f64, pr[b * plane + i] as f64);
                    dot += a * p;
                    na += a * a;
                    np += p * p;
                    err += (p - a) * (p - a);
                    if let Some(q) = reference {
                        let q = q[b * plane + i] as f64;
                        reference_err += (q - a) * (q - a);
                    }
                }
                if c > 1 && na > 0.0 && np > 0.0 {
                    let cos = dot / (na.sqrt() * np.sqrt());
                    sam_sum[j] += cos.clamp(-1.0, 1.0).acos().to_degrees();
                    sam_n[j] += 1;
                }
                if reference.is_some() {
                    let (err, reference_err) = (err.sqrt(), reference_err.sqrt());
                    let class = if err < reference_err - eps {
                        0
                    } else if err > reference_err + eps {
                        2
                    } else {
                        1
                    };
                    split[j][class] += 1;
                }
            }
        }
        for (j, pr) in strips.iter().enumerate() {
            for b in 0..c {
                let (ap, bp) = (
                    &hr_px[b * plane..(b + 1) * plane],
                    &pr[b * plane..(b + 1) * plane],
                );
                for i in own.clone().filter(|&i| mask[i]) {
                    let d = bp[i] as f64 - ap[i] as f64;
                    sq[j][b] += d * d;
                    err_sum[j][b] += d;
                }
                if let Some([ma, maa, a]) = &hr_stats[b] {
                    let bv: Vec<f64> = bp.iter().map(|v| *v as f64).collect();
                    let bb: Vec<f64> = bv.iter().map(|v| v * v).collect();
                    let ab: Vec<f64> = a.iter().zip(&bv).map(|(x, y)| x * y).collect();
                    let mb = filter_valid(&bv, hs, w, &k).0;
                    let mbb = filter_valid(&bb, hs, w, &k).0;
                    let mab = filter_valid(&ab, hs, w, &k).0;
                    let cov_norm = 121.0 / 120.0;
                    let (c1s, c2s) = ((0.01 * range[b]).powi(2), (0.03 * range[b]).powi(2));
                    ssim_sum[j][b] += centres
                        .iter()
                        .map(|&i| {
                            let (ux, uy) = (ma[i], mb[i]);
                            let vx = cov_norm * (maa[i] - ux * ux);
                            let vy = cov_norm * (mbb[i] - uy * uy);
                            let vxy = cov_norm * (mab[i] - ux * uy);
                            ((2.0 * ux * uy + c1s) * (2.0 * vxy + c2s))
                                / ((ux * ux + uy * uy + c1s) * (vx + vy + c2s))
                        })
                        .sum::<f64>();
                }
            }
        }
    }
    let mut methods = BTreeMap::new();
    for (j, (name, _)) in others.iter().enumerate() {
        let mse: Vec<f64> = sq[j].iter().map(|s| s / pixels as f64).collect();
        let psnr: Vec<f64> = (0..c)
            .map(|b| 10.0 * (range[b] * range[b] / mse[b]).log10())
            .collect();
        let ssim: Vec<f64> = (0..c)
            .map(|b| {
                if windows == 0 {
                    f64::NAN
                } else {
                    ssim_sum[j][b] / windows as f64
                }
            })
            .collect();
        methods.insert(
            name.clone(),
            MethodScores {
                psnr_mean: psnr.iter().sum::<f64>() / c as f64,
                ssim_mean: ssim.iter().sum::<f64>() / c as f64,
                rmse: mse.iter().map(|v| v.sqrt()).collect(),
                psnr,
                ssim,
                vgg_distance: None,
                vgg_tiles: 0,
                bias: err_sum[j].iter().map(|e| e / pixels as f64).collect(),
                relative_bias: err_sum[j]
                    .iter()
                    .zip(&hr_sum)
                    .map(|(e, h)| if *h != 0.0 { e / h } else { 0.0 })
                    .collect(),
                sam_degrees: (sam_n[j] > 0).then(|| sam_sum[j] / sam_n[j] as f64),
                lr_psnr: Vec::new(),
                detail_split: (reference.is_some_and(|r| r != j)).then(|| {
                    let [i, o, h] = split[j].map(|n| n as f64 / pixels as f64);
                    DetailSplit {
                        improvement: i,
                        omission: o,
                        hallucination: h,
                    }
                }),
            },
        );
    }
    Ok(RasterComparison {
        hr: hr.to_path_buf(),
        width: w,
        height: h,
        bands: c,
        border,
        pixels,
        ssim_windows: windows,
        data_range: range,
        methods,
    })
}

/// For the 'valid' 11×11 window positions of an `h`×`w` mask: true where all 121 pixels are set.
fn full_windows(mask: &[bool], h: usize, w: usize) -> Vec<bool> {
    let ow = w - 10;
    let mut rows = vec![0u8; h * ow];
    for y in 0..h {
        let mut run = (0..11).filter(|&t| mask[y * w + t]).count() as u8;
        rows[y * ow] = run;
        for x in 1..ow {
            run = run + mask[y * w + x + 10] as u8 - mask[y * w + x - 1] as u8;
            rows[y * ow + x] = run;
        }
    }
    let oh = h - 10;
    let mut out = vec![false; oh * ow];
    for x in 0..ow {
        let mut run: u32 = (0..11).map(|t| rows[t * ow + x] as u32).sum();
        out[x] = run == 121;
        for y in 1..oh {
            run = run + rows[(y + 10) * ow + x] as u32 - rows[(y - 1) * ow + x] as u32;
            out[y * ow + x] = run == 121;
        }
    }
    out
}

/// Positions (0-based) of the bands to show as red, green, blue: from the colour
/// interpretation, else the first three bands, else the first band as grey.
pub fn display_bands(info: &RasterInfo) -> [usize; 3] {
    let pos = |n: &str| info.colour.iter().position(|c| c == n);
    match (pos("red"), pos("green"), pos("blue")) {
        (Some(r), Some(g), Some(b)) => [r, g, b],
        _ if info.bands.len() >= 3 => [0, 1, 2],
        _ => [0, 0, 0],
    }
}

/// Picks up to `n` crops of `size`² pixels for the preview: candidate cells with no nodata,
/// ranked by texture (mean absolute gradient relative to each band's range), taken at the
/// 95th, 75th and 50th percentiles (then further down), so the picture shows busy, typical
/// and quiet ground rather than the method's best case. Returns top-left corners.
pub fn pick_crops(
    hr: &Path,
    size: usize,
    n: usize,
    border: usize,
    nodata: Option<f64>,
    range: &[f64],
) -> Result<Vec<[usize; 2]>> {
    let src = RasterSource::open(hr, &[])?;
    let (w, h, c) = (src.info.width, src.info.height, src.info.bands.len());
    let rule = ValidRule::for_raster(&src.info, nodata);
    if w < size + 2 * border || h < size + 2 * border {
        return Ok(vec![[0, 0]]);
    }
    let xs: Vec<usize> = (border..=w - border - size).step_by(size).collect();
    let ys: Vec<usize> = (border..=h - border - size).step_by(size).collect();
    // At most about 400 candidates, thinned along both axes so they still cover the raster and
    // a huge raster is not read whole.
    let every = ((xs.len() * ys.len()) as f64 / 400.0)
        .sqrt()
        .ceil()
        .max(1.0) as usize;
    let all: Vec<[usize; 2]> = ys
        .iter()
        .step_by(every)
        .flat_map(|&y| xs.iter().step_by(every).map(move |&x| [x, y]))
        .collect();
    let mut scored = Vec::new();
    for &[x, y] in &all {
        let px = src.read_window(x as u32, y as u32, size as u32, size as u32)?;
        let plane = size * size;
        if !rule.mask(&px, c, plane).iter().all(|v| *v) {
            continue;
        }
        let mut t = 0.0;
        for b in 0..c {
            let p = &px[b * plane..(b + 1) * plane];
            let mut g = 0.0;
            for yy in 0..size - 1 {
                for xx in 0..size - 1 {
                    let v = p[yy * size + xx];
                    g += ((p[yy * size + xx + 1] - v).abs() + (p[(yy + 1) * size + xx] - v).abs())
                        as f64;
                }
            }
            t += g / ((size - 1) * (size - 1)) as f64 / range[b].max(1e-12);
        }
        scored.push((t / c as f64, [x, y]));
    }
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut picks = Vec::new();
    for q in [0.05, 0.25, 0.5, 0.7, 0.85, 0.95].iter().take(n.max(1)) {
        if scored.is_empty() {
            break;
        }
        let i = ((scored.len() - 1) as f64 * q).round() as usize;
        if !picks.contains(&scored[i].1) {
            picks.push(scored[i].1);
        }
    }
    if picks.is_empty() {
        picks.push([border, border]);
    }
    Ok(picks)
}

/// Renders the preview grid: one row per crop, one column per `(label, raster)` panel (all at
/// the HR raster's grid), each crop shown `zoom`× with the same contrast stretch across the row
/// (2nd–98th percentile of the last panel, the HR). Each row's caption gives the crop's origin
/// and each panel's PSNR on it (mean over bands, with `range`).
#[allow(clippy::too_many_arguments)]
pub fn render_preview(
    panels: &[(String, PathBuf)],
    crops: &[[usize; 2]],
    size: usize,
    zoom: usize,
    rgb: [usize; 3],
    range: &[f64],
    out: &Path,
) -> Result<()> {
    let sources: Vec<RasterSource> = panels
        .iter()
        .map(|(_, p)| RasterSource::open(p, &[]))
        .collect::<Result<_>>()?;
    let hr = sources.last().expect("the HR panel comes last");
    let size = size.min(hr.info.width).min(hr.info.height);
    let cell = size * zoom;
    let (gap, head, caption) = (8usize, 24usize, 16usize);
    let width = gap + panels.len() * (cell + gap);
    let height = head + crops.len() * (cell + caption + gap);
    let mut canvas = Canvas::new(width, height, WHITE);
    for (i, (label, _)) in panels.iter().enumerate() {
        let x = (gap + i * (cell + gap)) as i64;
        let lw = Canvas::text_width(label, 1);
        canvas.text(x + (cell as i64 - lw) / 2, 8, label, BLACK, 1);
    }
    let plane = size * size;
    for (row, &[cx, cy]) in crops.iter().enumerate() {
        let y0 = head + row * (cell + caption + gap);
        let reads: Vec<Vec<f32>> = sources
            .iter()
            .map(|s| s.read_window(cx as u32, cy as u32, size as u32, size as u32))
            .collect::<Result<_>>()?;
        let truth = reads.last().expect("HR");
        let stretch: Vec<(f32, f32)> = rgb
            .iter()
            .map(|&b| {
                let mut v: Vec<f32> = truth[b * plane..(b + 1) * plane]
                    .iter()
                    .copied()
                    .filter(|v| v.is_finite())
                    .collect();
                v.sort_by(f32::total_cmp);
                if v.is_empty() {
                    return (0.0, 1.0);
                }
                let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
                let (lo, hi) = (q(0.02), q(0.98));
                (lo, (hi - lo).max(1e-6))
            })
            .collect();
        let mut text = format!("crop x={cx} y={cy}:");
        for (i, px) in reads.iter().enumerate() {
            let mut rgb_px = vec![0u8; cell * cell * 3];
            for yy in 0..cell {
                for xx in 0..cell {
                    let at = (yy / zoom) * size + xx / zoom;
                    for (k, &b) in rgb.iter().enumerate() {
                        let (lo, span) = stretch[k];
                        let v = ((px[b * plane + at] - lo) / span * 255.0).clamp(0.0, 255.0);
                        rgb_px[(yy * cell + xx) * 3 + k] = v as u8;
                    }
                }
            }
            let x = (gap + i * (cell + gap)) as i64;
            canvas.blit(x, y0 as i64, cell, cell, &rgb_px);
            if i + 1 < reads.len() {
                let c = hr.info.bands.len();
                let p: f64 = (0..c)
                    .map(|b| {
                        let pa = &px[b * plane..(b + 1) * plane];
                        let pt = &truth[b * plane..(b + 1) * plane];
                        geosr::metrics::psnr(pa, pt, range[b]).min(99.0)
                    })
                    .sum::<f64>()
                    / c as f64;
                text.push_str(&format!(" {} {p:.2} dB", panels[i].0));
            }
        }
        canvas.text(gap as i64, (y0 + cell + 4) as i64, &text, BLACK, 1);
    }
    canvas.write_png(out)
}

/// The report of an evaluation run (`report.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub model: PathBuf,
    pub factor: u32,
    pub degradation: serde_json::Value,
    pub border: usize,
    pub metric_notes: String,
    /// What the VGG distances measure (`vgg_relu2_2`), when the graph wires vgg-loss.
    pub vgg_metric: Option<String>,
    pub rasters: Vec<RasterReport>,
    /// Per method: the mean over rasters of PSNR and SSIM, and the tile-weighted VGG distance.
    pub overall: BTreeMap<String, OverallScores>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RasterReport {
    #[serde(flatten)]
    pub comparison: RasterComparison,
    /// The super-resolved and resampled rasters written, by method.
    pub outputs: BTreeMap<String, PathBuf>,
    pub preview: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OverallScores {
    pub psnr_mean: f64,
    pub ssim_mean: f64,
    pub vgg_distance: Option<f64>,
    pub vgg_tiles: usize,
    pub rasters: usize,
}

/// Means over rasters (PSNR, SSIM) and over tiles (VGG distance) per method.
pub fn overall(rasters: &[RasterReport]) -> BTreeMap<String, OverallScores> {
    let mut out: BTreeMap<String, OverallScores> = BTreeMap::new();
    let mut vgg_sum: BTreeMap<String, f64> = BTreeMap::new();
    for r in rasters {
        for (name, s) in &r.comparison.methods {
            let o = out.entry(name.clone()).or_default();
            o.psnr_mean += s.psnr_mean;
            o.ssim_mean += s.ssim_mean;
            o.rasters += 1;
            if let Some(d) = s.vgg_distance {
                *vgg_sum.entry(name.clone()).or_default() += d * s.vgg_tiles as f64;
                o.vgg_tiles += s.vgg_tiles;
            }
        }
    }
    for (name, o) in out.iter_mut() {
        o.psnr_mean /= o.rasters as f64;
        o.ssim_mean /= o.rasters as f64;
        if o.vgg_tiles > 0 {
            o.vgg_distance = Some(vgg_sum[name] / o.vgg_tiles as f64);
        }
    }
    out
}

fn table(
    md: &mut String,
    methods: &[(String, f64, f64, Option<f64>)],
    bands: Option<&RasterComparison>,
) {
    let base = methods.iter().find(|m| m.0 == "bicubic").cloned();
    md.push_str(
        "| method | PSNR (dB) | Δ PSNR vs bicubic | SSIM | VGG distance | VGG vs bicubic |",
    );
    if let Some(r) = bands {
        for b in 1..=r.bands {
            md.push_str(&format!(" PSNR b{b} | SSIM b{b} |"));
        }
    }
    md.push('\n');
    md.push_str("|---|---:|---:|---:|---:|---:|");
    if let Some(r) = bands {
        md.push_str(&"---:|---:|".repeat(r.bands));
    }
    md.push('\n');
    for (name, p, s, v) in methods {
        let dp = base
            .as_ref()
            .map(|b| format!("{:+.2}", p - b.1))
            .unwrap_or_default();
        let vs = v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "–".into());
        let vr = match (v, base.as_ref().and_then(|b| b.3)) {
            (Some(v), Some(b)) if b > 0.0 => format!("{:.3}", v / b),
            _ => "–".into(),
        };
        md.push_str(&format!(
            "| {name} | {p:.2} | {dp} | {s:.4} | {vs} | {vr} |"
        ));
        if let Some(r) = bands {
            let m = &r.methods[name];
            for b in 0..r.bands {
                md.push_str(&format!(" {:.2} | {:.4} |", m.psnr[b], m.ssim[b]));
            }
        }
        md.push('\n');
    }
}

/// Radiometry of each method on one raster: bias per band, spectral angle, and what it did
/// against bicubic.
fn radiometry_table(md: &mut String, c: &RasterComparison) {
    md.push_str(&format!(
        "\nRadiometry: bias = mean(prediction − HR) per band, native units (relative to the HR \
         band's mean); SAM = mean spectral angle to the HR; improvement / omission / \
         hallucination = shares of the pixels nearer the HR than {SPLIT_REFERENCE} by more than \
         1 % of the data range, as near, or further; LR consistency = PSNR (dB) per band of the \
         prediction degraded back with the model's degradation against the LR it was made from.\n\n\
         | method | bias per band (relative) | SAM ° | improvement | omission | hallucination | LR consistency dB |\n\
         |---|---|---:|---:|---:|---:|---|\n"
    ));
    for (name, m) in ordered(&c.methods) {
        let bias: Vec<String> = m
            .bias
            .iter()
            .zip(&m.relative_bias)
            .map(|(b, r)| format!("{b:+.2} ({:+.3}%)", r * 100.0))
            .collect();
        let sam = m.sam_degrees.map_or("–".into(), |v| format!("{v:.3}"));
        let split = m.detail_split.map_or("– | – | –".into(), |d| {
            format!(
                "{:.1}% | {:.1}% | {:.1}%",
                d.improvement * 100.0,
                d.omission * 100.0,
                d.hallucination * 100.0
            )
        });
        let lr = if m.lr_psnr.is_empty() {
            "–".to_owned()
        } else {
            m.lr_psnr
                .iter()
                .map(|p| p.map_or("identical".into(), |v| format!("{v:.2}")))
                .collect::<Vec<_>>()
                .join(", ")
        };
        md.push_str(&format!(
            "| {name} | {} | {sam} | {split} | {lr} |\n",
            bias.join(", ")
        ));
    }
}

/// Orders methods for tables: classic resamplers first, then the rest by name.
fn ordered<T>(m: &BTreeMap<String, T>) -> Vec<(&String, &T)> {
    let rank = |n: &str| match n {
        "nearest" => 0,
        "bilinear" => 1,
        "bicubic" => 2,
        "lanczos" => 3,
        _ => 4,
    };
    let mut v: Vec<_> = m.iter().collect();
    v.sort_by_key(|(n, _)| (rank(n), (*n).clone()));
    v
}

impl Report {
    /// The `report.md` text: the overall table, then one per raster with per-band figures.
    pub fn to_markdown(&self) -> String {
        let mut md = format!(
            "# Evaluation of {}\n\n×{} super-resolution; LR made from the HR by the training degradation `{}`.\n{}\n\n## Overall ({} raster{})\n\n",
            self.model.display(),
            self.factor,
            self.degradation,
            self.metric_notes,
            self.rasters.len(),
            if self.rasters.len() == 1 { "" } else { "s" }
        );
        let rows: Vec<_> = ordered(&self.overall)
            .into_iter()
            .map(|(n, o)| (n.clone(), o.psnr_mean, o.ssim_mean, o.vgg_distance))
            .collect();
        table(&mut md, &rows, None);
        for r in &self.rasters {
            let c = &r.comparison;
            md.push_str(&format!(
                "\n## {}\n\n{}×{} px, {} bands, {} pixels compared, {} SSIM windows; data range per band {}.\n\n",
                c.hr.display(),
                c.width,
                c.height,
                c.bands,
                c.pixels,
                c.ssim_windows,
                c.data_range
                    .iter()
                    .map(|r| format!("{r}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            let rows: Vec<_> = ordered(&c.methods)
                .into_iter()
                .map(|(n, s)| (n.clone(), s.psnr_mean, s.ssim_mean, s.vgg_distance))
                .collect();
            table(&mut md, &rows, Some(c));
            radiometry_table(&mut md, c);
            if let Some(p) = &r.preview {
                md.push_str(&format!(
                    "\n![preview]({})\n",
                    p.file_name().unwrap_or_default().to_string_lossy()
                ));
            }
        }
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_windows_match_a_direct_count() {
        let (h, w) = (23, 30);
        let mask: Vec<bool> = (0..h * w).map(|i| (i * 7919) % 97 != 0).collect();
        let got = full_windows(&mask, h, w);
        for y in 0..h - 10 {
            for x in 0..w - 10 {
                let all = (0..11).all(|dy| (0..11).all(|dx| mask[(y + dy) * w + x + dx]));
                assert_eq!(got[y * (w - 10) + x], all, "{x},{y}");
            }
        }
    }

    #[test]
    fn implicit_nodata_needs_every_band() {
        let info = RasterInfo {
            path: "x".into(),
            width: 2,
            height: 1,
            bands: vec![1, 2],
            data_type: "UInt16".into(),
            geotransform: [0.0, 1.0, 0.0, 0.0, 0.0, -1.0],
            crs: String::new(),
            nodata: None,
            colour: vec![],
        };
        let rule = ValidRule::for_raster(&info, None);
        // pixel 0: 0 in band 1 only (valid); pixel 1: 0 in both bands (nodata)
        assert_eq!(rule.mask(&[0.0, 0.0, 5.0, 0.0], 2, 2), vec![true, false]);
        let declared = ValidRule::for_raster(&info, Some(0.0));
        assert_eq!(
            declared.mask(&[0.0, 0.0, 5.0, 0.0], 2, 2),
            vec![false, false]
        );
    }
}
