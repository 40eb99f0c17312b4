//! The consistency layer: the network's output projected onto the images whose degradation is
//! the input, `SR ← SR + Dᵀ(DDᵀ)⁻¹(LR − D·SR)`, with `D` the deterministic part of the model's
//! own degradation (Gaussian blur if any, then bilinear downsampling, edges renormalised exactly
//! as `geosr_raster::degrade` does). Afterwards `D·SR = LR` up to the solver's residual: the
//! output keeps the radiometry the sensor measured and adds only detail that averages away.
//!
//! `(DDᵀ)⁻¹` has no closed form at tile edges, so the layer solves `DDᵀz = LR − D·SR` by
//! conjugate gradients preconditioned with the interior inverse (a short separable filter):
//! interior modes are solved at once, the few edge modes in a handful of steps. Every step is a
//! depthwise convolution, its transpose, a sum or an elementwise operation, written once here
//! against [`Ops`] and run by both engines: on libtorch ([`TchOps`], also differentiated through
//! in training) and as ONNX nodes (`crate::onnx`).
//!
//! ```
//! use geosr::card::DegradationSpec;
//! use geosr_torch::projection::{LrProjection, TchOps};
//! use tch::{Kind, Tensor};
//! let spec = DegradationSpec { antialias: true, blur_sigma: 0.0, noise_std: 0.0, jpeg_quality: None };
//! let p = LrProjection::new(1, 2, &spec);
//! let lr = Tensor::rand([1, 1, 8, 8], (Kind::Float, tch::Device::Cpu));
//! let sr = Tensor::zeros([1, 1, 16, 16], (Kind::Float, tch::Device::Cpu));
//! let sr = p.apply(&mut TchOps, &sr, &lr);
//! let back = p.degrade(&mut TchOps, &sr);
//! assert!(f64::try_from((back - lr).abs().max()).unwrap() < 1e-4);
//! ```
use geosr::card::DegradationSpec;
use geosr::taps::{bilinear_taps, gaussian_taps, interior_kernel, InteriorKernel};
use tch::Tensor;

/// Conjugate-gradient steps. After the first two the residual falls by orders of magnitude a
/// step (the preconditioner leaves only edge modes); this many reach float precision at ×2–×8,
/// with or without blur, except a blur of a pixel or more at ×2, where DDᵀ is ill-conditioned
/// and a bound is all they reach (tests/projection.rs).
pub const ITERATIONS: usize = 8;

/// Half-width of the interior inverse filter, in LR pixels.
const INVERSE_RADIUS: usize = 8;

/// Guards the solver's divisions once the residual is exactly zero (a tile the network already
/// made consistent, e.g. a constant one).
const TINY: f32 = 1e-30;

/// The operations the layer needs, on tensors of shape N×C×H×W.
pub trait Ops {
    type T;
    /// Depthwise (the same kernel on every band) 1-D convolution along `axis` (2: rows, 3:
    /// columns) with zero padding `pad` at both ends; `transpose` gives its adjoint.
    fn conv1d(&mut self, x: &Self::T, k: &Conv1d, axis: usize, transpose: bool) -> Self::T;
    /// A tensor of ones shaped like `x`.
    fn ones_like(&mut self, x: &Self::T) -> Self::T;
    /// The first element along `axis`, the axis kept (size 1).
    fn first(&mut self, x: &Self::T, axis: usize) -> Self::T;
    fn add(&mut self, a: &Self::T, b: &Self::T) -> Self::T;
    fn sub(&mut self, a: &Self::T, b: &Self::T) -> Self::T;
    fn mul(&mut self, a: &Self::T, b: &Self::T) -> Self::T;
    fn div(&mut self, a: &Self::T, b: &Self::T) -> Self::T;
    /// Sum over rows and columns, kept as N×C×1×1.
    fn sum_hw(&mut self, x: &Self::T) -> Self::T;
    /// `max(x, v)` elementwise.
    fn at_least(&mut self, x: &Self::T, v: f32) -> Self::T;
}

/// A depthwise 1-D convolution: kernel, stride and zero padding at each end.
#[derive(Debug, Clone, PartialEq)]
pub struct Conv1d {
    pub bands: i64,
    pub kernel: Vec<f32>,
    pub stride: i64,
    pub pad: i64,
}

impl Conv1d {
    /// The interior kernel as a convolution with equal zero padding at both ends, so that `n`
    /// inputs give `n / stride` outputs: output `i` reads inputs from `i·stride − pad` on, over
    /// `stride + 2·pad` taps (the kernel is placed in that window, zeros around it).
    fn centred(bands: i64, k: &InteriorKernel, stride: usize) -> Self {
        let (offset, len) = (k.offset, k.weights.len() as isize);
        let pad = (-offset).max(offset + len - stride as isize).max(0);
        let mut kernel = vec![0f32; stride + 2 * pad as usize];
        for (t, w) in k.weights.iter().enumerate() {
            kernel[(offset + pad) as usize + t] = *w as f32;
        }
        Conv1d {
            bands,
            kernel,
            stride: stride as i64,
            pad: pad as i64,
        }
    }
}

/// `D`'s edge renormalisation per axis (rows, columns): of the blur at SR size, of the
/// downsampling at LR size; each one pixel wide across the other axis.
struct Norms<T> {
    blur: [Option<T>; 2],
    down: [T; 2],
}

/// The layer for one band count, factor and degradation.
#[derive(Debug, Clone, PartialEq)]
pub struct LrProjection {
    blur: Option<Conv1d>,
    down: Conv1d,
    inverse: Conv1d,
}

impl LrProjection {
    pub fn new(bands: i64, factor: i64, spec: &DegradationSpec) -> Self {
        let f = factor as usize;
        let down = interior_kernel(|n| bilinear_taps(n, n / f, spec.antialias), f);
        let blur = (spec.blur_sigma > 0.0)
            .then(|| interior_kernel(|n| gaussian_taps(n, spec.blur_sigma), 1));
        // The whole interior operator along one axis (blur, then downsampling) and its LR-rate
        // autocorrelation: DDᵀ away from the edges.
        let total = match &blur {
            Some(b) => full_convolution(&b.weights, &down.weights),
            None => down.weights.clone(),
        };
        let inverse = toeplitz_inverse_row(&autocorrelation(&total, f), INVERSE_RADIUS);
        LrProjection {
            blur: blur.map(|b| Conv1d::centred(bands, &b, 1)),
            down: Conv1d::centred(bands, &down, f),
            inverse: Conv1d::centred(
                bands,
                &InteriorKernel {
                    offset: -(INVERSE_RADIUS as isize),
                    weights: inverse,
                },
                1,
            ),
        }
    }

    fn separable<O: Ops>(o: &mut O, x: &O::T, k: &Conv1d, transpose: bool) -> O::T {
        let rows = o.conv1d(x, k, 2, transpose);
        o.conv1d(&rows, k, 3, transpose)
    }

    /// The edge renormalisation of `D` along each axis, from a one-pixel-wide slice of the SR
    /// tensor: `D`'s renormalisation is a product of one per axis, so `D` is separable.
    fn norms<O: Ops>(&self, o: &mut O, sr: &O::T) -> Norms<O::T> {
        let mut axis_norms = |axis: usize| {
            let other = if axis == 2 { 3 } else { 2 };
            let line = o.first(sr, other);
            let ones = o.ones_like(&line);
            let blur = self.blur.as_ref().map(|b| o.conv1d(&ones, b, axis, false));
            let down = o.conv1d(&ones, &self.down, axis, false);
            (blur, down)
        };
        let (blur_rows, down_rows) = axis_norms(2);
        let (blur_cols, down_cols) = axis_norms(3);
        Norms {
            blur: [blur_rows, blur_cols],
            down: [down_rows, down_cols],
        }
    }

    /// `D` along one axis (2: rows, 3: columns).
    fn down_axis<O: Ops>(&self, o: &mut O, x: &O::T, axis: usize, n: &Norms<O::T>) -> O::T {
        let i = axis - 2;
        let blurred = match (&self.blur, &n.blur[i]) {
            (Some(b), Some(norm)) => {
                let s = o.conv1d(x, b, axis, false);
                Some(o.div(&s, norm))
            }
            _ => None,
        };
        let d = o.conv1d(blurred.as_ref().unwrap_or(x), &self.down, axis, false);
        o.div(&d, &n.down[i])
    }

    /// `Dᵀ` along one axis.
    fn up_axis<O: Ops>(&self, o: &mut O, y: &O::T, axis: usize, n: &Norms<O::T>) -> O::T {
        let i = axis - 2;
        let y = o.div(y, &n.down[i]);
        let up = o.conv1d(&y, &self.down, axis, true);
        match (&self.blur, &n.blur[i]) {
            (Some(b), Some(norm)) => {
                let up = o.div(&up, norm);
                o.conv1d(&up, b, axis, true)
            }
            _ => up,
        }
    }

    fn forward<O: Ops>(&self, o: &mut O, x: &O::T, n: &Norms<O::T>) -> O::T {
        let rows = self.down_axis(o, x, 2, n);
        self.down_axis(o, &rows, 3, n)
    }

    fn adjoint<O: Ops>(&self, o: &mut O, y: &O::T, n: &Norms<O::T>) -> O::T {
        let cols = self.up_axis(o, y, 3, n);
        self.up_axis(o, &cols, 2, n)
    }

    /// `DDᵀ` on an LR tensor, one axis at a time, so nothing is ever at SR size in both axes.
    fn gram<O: Ops>(&self, o: &mut O, p: &O::T, n: &Norms<O::T>) -> O::T {
        let up = self.up_axis(o, p, 3, n);
        let cols = self.down_axis(o, &up, 3, n);
        let up = self.up_axis(o, &cols, 2, n);
        self.down_axis(o, &up, 2, n)
    }

    /// `D·sr`: the SR tensor degraded as the model's degradation does (its deterministic part).
    pub fn degrade<O: Ops>(&self, o: &mut O, sr: &O::T) -> O::T {
        let norms = self.norms(o, sr);
        self.forward(o, sr, &norms)
    }

    /// `sr` corrected so that degrading it gives `lr` back.
    pub fn apply<O: Ops>(&self, o: &mut O, sr: &O::T, lr: &O::T) -> O::T {
        let norms = self.norms(o, sr);
        let down = self.forward(o, sr, &norms);
        // Preconditioned conjugate gradients on DDᵀz = r, one system per tile and band.
        let mut r = o.sub(lr, &down);
        let y = Self::separable(o, &r, &self.inverse, false);
        let ry = o.mul(&r, &y);
        let mut ry = o.sum_hw(&ry);
        let mut p = y;
        let mut z: Option<O::T> = None;
        for step in 0..ITERATIONS {
            let q = self.gram(o, &p, &norms);
            let pq = o.mul(&p, &q);
            let pq = o.sum_hw(&pq);
            let pq = o.at_least(&pq, TINY);
            let alpha = o.div(&ry, &pq);
            let ap = o.mul(&alpha, &p);
            z = Some(match z {
                Some(z) => o.add(&z, &ap),
                None => ap,
            });
            if step + 1 == ITERATIONS {
                break;
            }
            let aq = o.mul(&alpha, &q);
            r = o.sub(&r, &aq);
            let y = Self::separable(o, &r, &self.inverse, false);
            let ry_next = o.mul(&r, &y);
            let ry_next = o.sum_hw(&ry_next);
            let ry_safe = o.at_least(&ry, TINY);
            let beta = o.div(&ry_next, &ry_safe);
            let bp = o.mul(&beta, &p);
            p = o.add(&y, &bp);
            ry = ry_next;
        }
        let z = z.expect("at least one step");
        let correction = self.adjoint(o, &z, &norms);
        o.add(sr, &correction)
    }
}

/// Full convolution of two kernels (the blur's, then the downsampling's): the taps of the
/// downsampling of the blurred signal, in input samples.
fn full_convolution(a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; a.len() + b.len() - 1];
    for (i, x) in a.iter().enumerate() {
        for (j, y) in b.iter().enumerate() {
            out[i + j] += x * y;
        }
    }
    out
}

/// `g[m] = Σ_t k[t]·k[t + m·stride]` for m ≥ 0: one row of DDᵀ in the interior.
fn autocorrelation(k: &[f64], stride: usize) -> Vec<f64> {
    (0..)
        .map(|m| m * stride)
        .take_while(|&s| s < k.len())
        .map(|s| k.iter().zip(&k[s..]).map(|(a, b)| a * b).sum())
        .collect()
}

/// The middle row of the inverse of a long symmetric Toeplitz matrix with first row `g`,
/// truncated to `radius` on each side: the interior of the inverse as a filter.
fn toeplitz_inverse_row(g: &[f64], radius: usize) -> Vec<f64> {
    let n = 8 * radius + 1;
    let mid = n / 2;
    let at = |i: usize, j: usize| g.get(i.abs_diff(j)).copied().unwrap_or(0.0);
    // Solve G x = e_mid by Gaussian elimination (G is symmetric positive definite).
    let mut a: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            let mut row: Vec<f64> = (0..n).map(|j| at(i, j)).collect();
            row.push(if i == mid { 1.0 } else { 0.0 });
            row
        })
        .collect();
    for c in 0..n {
        let pivot_row = a[c].clone();
        for row in a.iter_mut().skip(c + 1) {
            let m = row[c] / pivot_row[c];
            if m != 0.0 {
                for (v, p) in row[c..].iter_mut().zip(&pivot_row[c..]) {
                    *v -= m * p;
                }
            }
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        let s: f64 = (r + 1..n).map(|k| a[r][k] * x[k]).sum();
        x[r] = (a[r][n] - s) / a[r][r];
    }
    x[mid - radius..=mid + radius].to_vec()
}

/// The layer on libtorch tensors.
pub struct TchOps;

impl TchOps {
    /// The kernel as a one-channel weight along `axis`, of `like`'s kind and device.
    fn weight(k: &Conv1d, axis: usize, like: &Tensor) -> Tensor {
        let l = k.kernel.len() as i64;
        let shape = if axis == 2 {
            [1, 1, l, 1]
        } else {
            [1, 1, 1, l]
        };
        Tensor::from_slice(&k.kernel)
            .to_kind(like.kind())
            .to_device(like.device())
            .view(shape)
    }
}

impl Ops for TchOps {
    type T = Tensor;
    fn conv1d(&mut self, x: &Tensor, k: &Conv1d, axis: usize, transpose: bool) -> Tensor {
        let w = Self::weight(k, axis, x);
        let (stride, pad) = if axis == 2 {
            ([k.stride, 1], [k.pad, 0])
        } else {
            ([1, k.stride], [0, k.pad])
        };
        if transpose {
            let w = w.repeat([k.bands, 1, 1, 1]);
            x.conv_transpose2d(&w, None::<Tensor>, stride, pad, [0, 0], k.bands, [1, 1])
        } else {
            // One plane per image and no groups: libtorch's plain convolution is faster on the
            // CPU than its grouped one for these single-channel kernels.
            let s = x.size();
            let planes = x.reshape([s[0] * s[1], 1, s[2], s[3]]);
            let out = planes.conv2d(&w, None::<Tensor>, stride, pad, [1, 1], 1);
            let o = out.size();
            out.reshape([s[0], s[1], o[2], o[3]])
        }
    }
    fn ones_like(&mut self, x: &Tensor) -> Tensor {
        x.ones_like()
    }
    fn first(&mut self, x: &Tensor, axis: usize) -> Tensor {
        x.narrow(axis as i64, 0, 1)
    }
    fn add(&mut self, a: &Tensor, b: &Tensor) -> Tensor {
        a + b
    }
    fn sub(&mut self, a: &Tensor, b: &Tensor) -> Tensor {
        a - b
    }
    fn mul(&mut self, a: &Tensor, b: &Tensor) -> Tensor {
        a * b
    }
    fn div(&mut self, a: &Tensor, b: &Tensor) -> Tensor {
        a / b
    }
    fn sum_hw(&mut self, x: &Tensor) -> Tensor {
        x.sum_dim_intlist([2i64, 3].as_slice(), true, None)
    }
    fn at_least(&mut self, x: &Tensor, v: f32) -> Tensor {
        x.clamp_min(v as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interior_inverse_inverts_the_interior_operator() {
        // Antialiased ×4: the filter applied to the autocorrelation gives a unit impulse.
        let k = interior_kernel(|n| bilinear_taps(n, n / 4, true), 4);
        let g = autocorrelation(&k.weights, 4);
        let inv = toeplitz_inverse_row(&g, INVERSE_RADIUS);
        let r = INVERSE_RADIUS as isize;
        for m in -3isize..=3 {
            let v: f64 = (-r..=r)
                .map(|j| {
                    let gi = g.get((m - j).unsigned_abs()).copied().unwrap_or(0.0);
                    inv[(j + r) as usize] * gi
                })
                .sum();
            let want = if m == 0 { 1.0 } else { 0.0 };
            assert!((v - want).abs() < 1e-4, "offset {m}: {v}");
        }
    }
}
