//! Image quality metrics on CHW `f32` planes: PSNR and SSIM.
//!
//! SSIM follows Wang et al. 2004 as scikit-image computes it with `gaussian_weights=True`:
//! an 11×11 Gaussian window with σ = 1.5, K1 = 0.01, K2 = 0.03, the sample covariance, and the
//! mean over the valid (fully covered) window positions.
//!
//! ```
//! use geosr::metrics::{psnr, ssim};
//! let a = vec![0.5f32; 32 * 32];
//! assert!(psnr(&a, &a, 1.0).is_infinite());
//! assert!((ssim(&a, &a, 32, 32, 1.0) - 1.0).abs() < 1e-9);
//! ```

/// Peak signal-to-noise ratio in dB for a data range `range`.
pub fn psnr(a: &[f32], b: &[f32], range: f64) -> f64 {
    assert_eq!(a.len(), b.len());
    let mse = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (range * range / mse).log10()
}

/// The 11-tap Gaussian window (σ 1.5) of SSIM, normalised to sum 1.
pub fn gaussian_window() -> [f64; 11] {
    let mut w = [0.0; 11];
    for (i, v) in w.iter_mut().enumerate() {
        let d = i as f64 - 5.0;
        *v = (-d * d / (2.0 * 1.5 * 1.5)).exp();
    }
    let s: f64 = w.iter().sum();
    w.map(|v| v / s)
}

/// Separable 'valid' filtering of one plane with the 11-tap window.
pub fn filter_valid(x: &[f64], h: usize, w: usize, k: &[f64; 11]) -> (Vec<f64>, usize, usize) {
    let (oh, ow) = (h - 10, w - 10);
    let mut rows = vec![0.0; h * ow];
    for y in 0..h {
        for x0 in 0..ow {
            rows[y * ow + x0] = (0..11).map(|t| k[t] * x[y * w + x0 + t]).sum();
        }
    }
    let mut out = vec![0.0; oh * ow];
    for y0 in 0..oh {
        for x0 in 0..ow {
            out[y0 * ow + x0] = (0..11).map(|t| k[t] * rows[(y0 + t) * ow + x0]).sum();
        }
    }
    (out, oh, ow)
}

/// Mean SSIM of one plane pair (`h`, `w` ≥ 11) for a data range `range`.
pub fn ssim(a: &[f32], b: &[f32], h: usize, w: usize, range: f64) -> f64 {
    assert!(h >= 11 && w >= 11, "SSIM needs planes of at least 11×11");
    let k = gaussian_window();
    let a: Vec<f64> = a.iter().map(|v| *v as f64).collect();
    let b: Vec<f64> = b.iter().map(|v| *v as f64).collect();
    let prod = |p: &[f64], q: &[f64]| p.iter().zip(q).map(|(x, y)| x * y).collect::<Vec<f64>>();
    let (ma, ..) = filter_valid(&a, h, w, &k);
    let (mb, ..) = filter_valid(&b, h, w, &k);
    let (maa, ..) = filter_valid(&prod(&a, &a), h, w, &k);
    let (mbb, ..) = filter_valid(&prod(&b, &b), h, w, &k);
    let (mab, ..) = filter_valid(&prod(&a, &b), h, w, &k);
    // scikit-image uses the unbiased (sample) covariance over the window's 121 pixels.
    let cov_norm = 121.0 / 120.0;
    let (c1, c2) = ((0.01 * range).powi(2), (0.03 * range).powi(2));
    let n = ma.len();
    (0..n)
        .map(|i| {
            let (ux, uy) = (ma[i], mb[i]);
            let vx = cov_norm * (maa[i] - ux * ux);
            let vy = cov_norm * (mbb[i] - uy * uy);
            let vxy = cov_norm * (mab[i] - ux * uy);
            ((2.0 * ux * uy + c1) * (2.0 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
        })
        .sum::<f64>()
        / n as f64
}

/// Running means of PSNR and SSIM over tiles (each tile: PSNR over all its bands, SSIM the
/// mean over bands).
#[derive(Debug, Default, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QualitySum {
    pub tiles: usize,
    pub psnr_sum: f64,
    pub ssim_sum: f64,
}

impl QualitySum {
    /// Adds every tile of `pred` vs `truth`, both N·C·H·W.
    pub fn add_batch(
        &mut self,
        pred: &[f32],
        truth: &[f32],
        c: usize,
        h: usize,
        w: usize,
        range: f64,
    ) {
        let per = c * h * w;
        for (p, t) in pred.chunks_exact(per).zip(truth.chunks_exact(per)) {
            // Cap identical tiles at 100 dB so one perfect tile cannot make the mean infinite.
            self.psnr_sum += psnr(p, t, range).min(100.0);
            self.ssim_sum += (0..c)
                .map(|b| {
                    ssim(
                        &p[b * h * w..(b + 1) * h * w],
                        &t[b * h * w..(b + 1) * h * w],
                        h,
                        w,
                        range,
                    )
                })
                .sum::<f64>()
                / c as f64;
            self.tiles += 1;
        }
    }
    pub fn psnr(&self) -> f64 {
        self.psnr_sum / self.tiles.max(1) as f64
    }
    pub fn ssim(&self) -> f64 {
        self.ssim_sum / self.tiles.max(1) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psnr_of_a_known_error() {
        // Every pixel off by 0.1 on a range of 1: MSE 0.01, PSNR 20 dB.
        let a = vec![0.3f32; 100];
        let b = vec![0.4f32; 100];
        assert!((psnr(&a, &b, 1.0) - 20.0).abs() < 1e-4);
    }

    #[test]
    fn ssim_drops_with_noise_and_is_symmetric() {
        let (h, w) = (32, 32);
        let a: Vec<f32> = (0..h * w).map(|i| (i % w) as f32 / w as f32).collect();
        let b: Vec<f32> = a
            .iter()
            .enumerate()
            .map(|(i, v)| v + if i % 3 == 0 { 0.05 } else { -0.02 })
            .collect();
        let s = ssim(&a, &b, h, w, 1.0);
        assert!(s < 0.99 && s > 0.3, "{s}");
        assert!((s - ssim(&b, &a, h, w, 1.0)).abs() < 1e-12);
    }
}
