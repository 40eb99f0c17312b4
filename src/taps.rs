//! Resampling taps: the weights that bilinear downsampling, Gaussian blur and upsampling give
//! each output sample, and [`resample_separable`], which applies them. The raster stages use
//! them (`geosr_raster::degrade`, `geosr_raster::upscale`); the network's consistency
//! layer (`geosr_torch::projection`) builds the same operators as convolutions from
//! [`interior_kernel`], so both agree on what "degrading by the model's degradation" means.
//!
//! ```
//! use geosr::taps::{bilinear_taps, interior_kernel};
//! // Antialiased ×4: eight taps per output sample, starting two samples before its block.
//! let k = interior_kernel(|n| bilinear_taps(n, n / 4, true), 4);
//! assert_eq!((k.offset, k.weights.len()), (-2, 8));
//! assert!((k.weights.iter().sum::<f64>() - 1.0).abs() < 1e-6);
//! ```

/// Taps of one output sample: the first input index and the weights from there on.
#[derive(Debug, Clone, PartialEq)]
pub struct Taps {
    pub start: usize,
    pub weights: Vec<f32>,
}

/// Applies separable taps to a CHW stack of planes.
pub fn resample_separable(
    src: &[f32],
    c: usize,
    h: usize,
    w: usize,
    rows: &[Taps],
    cols: &[Taps],
) -> Vec<f32> {
    let (oh, ow) = (rows.len(), cols.len());
    let mut tmp = vec![0f32; h * ow];
    let mut out = vec![0f32; c * oh * ow];
    for ch in 0..c {
        let plane = &src[ch * h * w..(ch + 1) * h * w];
        for y in 0..h {
            let row = &plane[y * w..(y + 1) * w];
            for (x, t) in cols.iter().enumerate() {
                tmp[y * ow + x] = t
                    .weights
                    .iter()
                    .zip(&row[t.start..])
                    .map(|(a, b)| a * b)
                    .sum();
            }
        }
        let dst = &mut out[ch * oh * ow..(ch + 1) * oh * ow];
        for (y, t) in rows.iter().enumerate() {
            let line = &mut dst[y * ow..(y + 1) * ow];
            for (k, wgt) in t.weights.iter().enumerate() {
                let srow = &tmp[(t.start + k) * ow..(t.start + k + 1) * ow];
                line.iter_mut().zip(srow).for_each(|(d, s)| *d += wgt * s);
            }
        }
    }
    out
}

/// Upsampling taps from `n_in` to `n_in × factor` samples with half-pixel centres, for a kernel
/// of `radius` input samples; taps beyond the edges fold onto the edge sample (edge pixels
/// repeat), and each output's weights are normalised to sum to one.
pub fn upsampling_taps(
    n_in: usize,
    factor: usize,
    radius: usize,
    kernel: impl Fn(f64) -> f64,
) -> Vec<Taps> {
    let r = radius as isize;
    (0..n_in * factor)
        .map(|i| {
            let centre = (i as f64 + 0.5) / factor as f64 - 0.5;
            let base = centre.floor() as isize;
            let lo = (base - r + 1).clamp(0, n_in as isize - 1) as usize;
            let hi = (base + r).clamp(0, n_in as isize - 1) as usize;
            let mut w = vec![0f64; hi - lo + 1];
            for j in base - r + 1..=base + r {
                let jc = j.clamp(lo as isize, hi as isize) as usize;
                w[jc - lo] += kernel(j as f64 - centre);
            }
            let s: f64 = w.iter().sum();
            Taps {
                start: lo,
                weights: w.into_iter().map(|v| (v / s) as f32).collect(),
            }
        })
        .collect()
}

/// Keys' cubic convolution kernel with parameter `a`: −0.5 is GDAL's `cubic`, −0.75 PyTorch's
/// bicubic (and the ONNX export's `cubic_coeff_a`). Its radius is two samples.
pub fn keys_cubic(a: f64, x: f64) -> f64 {
    let x = x.abs();
    if x <= 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    } else {
        0.0
    }
}

/// Bilinear (triangle) resampling taps from `n_in` to `n_out` samples.
pub fn bilinear_taps(n_in: usize, n_out: usize, antialias: bool) -> Vec<Taps> {
    let scale = n_in as f64 / n_out as f64;
    // Widen the kernel only when shrinking.
    let stretch = if antialias && scale > 1.0 { scale } else { 1.0 };
    (0..n_out)
        .map(|i| {
            let centre = (i as f64 + 0.5) * scale - 0.5;
            if antialias {
                // Inputs strictly inside the kernel's support (weights > 0), clipped to the tile.
                let lo = ((centre - stretch).floor() + 1.0).max(0.0) as usize;
                let hi = (((centre + stretch).ceil() - 1.0) as usize).min(n_in - 1);
                let mut w: Vec<f64> = (lo..=hi)
                    .map(|j| (1.0 - ((j as f64 - centre) / stretch).abs()).max(0.0))
                    .collect();
                let sum: f64 = w.iter().sum();
                w.iter_mut().for_each(|v| *v /= sum);
                Taps {
                    start: lo,
                    weights: w.into_iter().map(|v| v as f32).collect(),
                }
            } else {
                // OpenCV INTER_LINEAR: clamp the centre into the image, two taps.
                let c = centre.max(0.0);
                let j0 = (c.floor() as usize).min(n_in - 1);
                let frac = if j0 + 1 < n_in {
                    (c - j0 as f64) as f32
                } else {
                    0.0
                };
                if j0 + 1 < n_in {
                    Taps {
                        start: j0,
                        weights: vec![1.0 - frac, frac],
                    }
                } else {
                    Taps {
                        start: j0,
                        weights: vec![1.0],
                    }
                }
            }
        })
        .collect()
}

/// Gaussian blur taps over `n` samples (kernel radius 3σ; taps outside are dropped and the rest
/// renormalised).
pub fn gaussian_taps(n: usize, sigma: f64) -> Vec<Taps> {
    let r = (3.0 * sigma).ceil() as isize;
    (0..n as isize)
        .map(|i| {
            let lo = (i - r).max(0);
            let hi = (i + r).min(n as isize - 1);
            let mut wts: Vec<f64> = (lo..=hi)
                .map(|j| (-((j - i) as f64).powi(2) / (2.0 * sigma * sigma)).exp())
                .collect();
            let s: f64 = wts.iter().sum();
            wts.iter_mut().for_each(|v| *v /= s);
            Taps {
                start: lo as usize,
                weights: wts.into_iter().map(|v| v as f32).collect(),
            }
        })
        .collect()
}

/// The taps of an output sample far from any edge, as a convolution kernel: output `i` is
/// `Σ_t weights[t] · input[i·stride + offset + t]`.
#[derive(Debug, Clone, PartialEq)]
pub struct InteriorKernel {
    pub offset: isize,
    pub weights: Vec<f64>,
}

/// The interior kernel of a taps generator (`taps(n)` gives the taps over `n` input samples)
/// with input stride `stride` per output sample: read off the middle output of a long run,
/// where no edge reaches.
pub fn interior_kernel(taps: impl Fn(usize) -> Vec<Taps>, stride: usize) -> InteriorKernel {
    let n_out = 64;
    let all = taps(n_out * stride);
    let mid = n_out / 2;
    let t = &all[mid];
    InteriorKernel {
        offset: t.start as isize - (mid * stride) as isize,
        weights: t.weights.iter().map(|&v| v as f64).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cubic_interpolates_and_sums_to_one_at_every_offset() {
        for a in [-0.5, -0.75] {
            assert_eq!(keys_cubic(a, 0.0), 1.0);
            for x in [1.0, -1.0, 2.0, 2.5] {
                assert!(keys_cubic(a, x).abs() < 1e-12, "a {a}, x {x}");
            }
            for t in 0..=20 {
                let frac = t as f64 / 20.0;
                let sum: f64 = (-1..=2).map(|j| keys_cubic(a, j as f64 - frac)).sum();
                assert!((sum - 1.0).abs() < 1e-12, "a {a}, offset {frac}: {sum}");
            }
        }
        // PyTorch's kernel has the deeper negative lobe, so it sharpens more.
        assert!(keys_cubic(-0.75, 1.5) < keys_cubic(-0.5, 1.5));
    }

    #[test]
    fn interior_kernels_are_centred_where_the_taps_are() {
        // Not antialiased, ×4: OpenCV's two taps of equal weight around the block's centre.
        let k = interior_kernel(|n| bilinear_taps(n, n / 4, false), 4);
        assert_eq!(k.offset, 1);
        assert_eq!(k.weights, vec![0.5, 0.5]);
        // Antialiased ×3: five taps, a triangle around the block's middle sample.
        let k = interior_kernel(|n| bilinear_taps(n, n / 3, true), 3);
        assert_eq!(k.offset, -1);
        assert_eq!(k.weights.len(), 5);
        assert!((k.weights[2] - 1.0 / 3.0).abs() < 1e-6);
        // Blur: 2·⌈3σ⌉+1 taps centred on the sample, symmetric.
        let k = interior_kernel(|n| gaussian_taps(n, 1.0), 1);
        assert_eq!((k.offset, k.weights.len()), (-3, 7));
        assert!((k.weights[0] - k.weights[6]).abs() < 1e-9);
    }
}
