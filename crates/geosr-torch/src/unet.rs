//! The image transformation network: a U-Net working at LR resolution that upsamples at the
//! end (pixel shuffle or a transposed convolution) and adds an interpolated copy of its input,
//! so it learns only the residual detail.
//!
//! The last convolution starts at zero, so an untrained network reproduces the bicubic (or
//! bilinear) skip exactly and training can only move it away from there. With the consistency
//! layer ([`crate::projection`]) that output is then projected so that the model's degradation
//! gives the input back.
//!
//! ```
//! use geosr::settings::{Skip, Upsample};
//! use geosr_torch::unet::{UNet, UNetConfig};
//! let cfg = UNetConfig { bands: 3, factor: 4, depth: 2, width: 32, upsample: Upsample::PixelShuffle, skip: Skip::Bicubic, consistency: None };
//! let vs = tch::nn::VarStore::new(tch::Device::Cpu);
//! let net = UNet::new(&vs.root(), &cfg);
//! let sr = net.forward(&tch::Tensor::zeros([1, 3, 16, 16], (tch::Kind::Float, tch::Device::Cpu)));
//! assert_eq!(sr.size(), [1, 3, 64, 64]);
//! ```
use crate::projection::{LrProjection, TchOps};
pub use geosr::card::UNetConfig;
use geosr::settings::{Skip, Upsample};
use tch::{nn, nn::Module, Tensor};

struct Block {
    a: nn::Conv2D,
    b: nn::Conv2D,
}

impl Block {
    fn new(p: &nn::Path, cin: i64, cout: i64) -> Self {
        let cfg = nn::ConvConfig {
            padding: 1,
            ..Default::default()
        };
        Block {
            a: nn::conv2d(p / "a", cin, cout, 3, cfg),
            b: nn::conv2d(p / "b", cout, cout, 3, cfg),
        }
    }
    fn forward(&self, x: &Tensor) -> Tensor {
        x.apply(&self.a).leaky_relu().apply(&self.b).leaky_relu()
    }
}

enum Tail {
    Shuffle(nn::Conv2D),
    Deconv(nn::ConvTranspose2D),
}

/// The U-Net. Its variables live in the `VarStore` whose path it was built on.
pub struct UNet {
    cfg: UNetConfig,
    head: nn::Conv2D,
    enc: Vec<Block>,
    down: Vec<nn::Conv2D>,
    mid: Block,
    up: Vec<nn::Conv2D>,
    dec: Vec<Block>,
    tail: Tail,
    consistency: Option<LrProjection>,
}

impl UNet {
    pub fn new(p: &nn::Path, cfg: &UNetConfig) -> Self {
        let w = |level: i64| cfg.width << level;
        let pad1 = nn::ConvConfig {
            padding: 1,
            ..Default::default()
        };
        let down_cfg = nn::ConvConfig {
            padding: 1,
            stride: 2,
            ..Default::default()
        };
        let head = nn::conv2d(p / "head", cfg.bands, w(0), 3, pad1);
        let enc = (0..cfg.depth)
            .map(|l| Block::new(&(p / format!("enc{l}")), w(l), w(l)))
            .collect();
        let down = (0..cfg.depth)
            .map(|l| nn::conv2d(p / format!("down{l}"), w(l), w(l + 1), 3, down_cfg))
            .collect();
        let mid = Block::new(&(p / "mid"), w(cfg.depth), w(cfg.depth));
        let up = (0..cfg.depth)
            .map(|l| nn::conv2d(p / format!("up{l}"), w(l + 1), w(l), 3, pad1))
            .collect();
        let dec = (0..cfg.depth)
            .map(|l| Block::new(&(p / format!("dec{l}")), 2 * w(l), w(l)))
            .collect();
        let zero = nn::ConvConfig {
            padding: 1,
            ws_init: nn::Init::Const(0.0),
            bs_init: nn::Init::Const(0.0),
            ..Default::default()
        };
        let tail = if cfg.upsample == Upsample::Deconv {
            let tcfg = nn::ConvTransposeConfig {
                stride: cfg.factor,
                ws_init: nn::Init::Const(0.0),
                bs_init: nn::Init::Const(0.0),
                ..Default::default()
            };
            Tail::Deconv(nn::conv_transpose2d(
                p / "tail",
                w(0),
                cfg.bands,
                cfg.factor,
                tcfg,
            ))
        } else {
            Tail::Shuffle(nn::conv2d(
                p / "tail",
                w(0),
                cfg.bands * cfg.factor * cfg.factor,
                3,
                zero,
            ))
        };
        UNet {
            cfg: cfg.clone(),
            head,
            enc,
            down,
            mid,
            up,
            dec,
            tail,
            consistency: cfg
                .consistency
                .as_ref()
                .map(|spec| LrProjection::new(cfg.bands, cfg.factor, spec)),
        }
    }

    pub fn config(&self) -> &UNetConfig {
        &self.cfg
    }

    /// LR (N×C×h×w, h and w multiples of 2^depth) → SR (N×C×fh×fw).
    pub fn forward(&self, lr: &Tensor) -> Tensor {
        let base = interpolate(lr, self.cfg.factor, self.cfg.skip);
        self.forward_with_base(lr, base)
    }

    /// [`UNet::forward`] for inference: the same network, its bicubic skip computed on the host
    /// where `lr` is there ([`bicubic_on_host`]); outputs agree with `forward` to float rounding.
    pub fn infer(&self, lr: &Tensor) -> Tensor {
        let base = match self.cfg.skip {
            Skip::Bicubic => bicubic_on_host(lr, self.cfg.factor)
                .or_else(|| interpolate(lr, self.cfg.factor, Skip::Bicubic)),
            skip => interpolate(lr, self.cfg.factor, skip),
        };
        self.forward_with_base(lr, base)
    }

    fn forward_with_base(&self, lr: &Tensor, base: Option<Tensor>) -> Tensor {
        let mut x = lr.apply(&self.head).leaky_relu();
        let mut skips = Vec::with_capacity(self.enc.len());
        for (block, down) in self.enc.iter().zip(&self.down) {
            x = block.forward(&x);
            skips.push(x.shallow_clone());
            x = x.apply(down).leaky_relu();
        }
        x = self.mid.forward(&x);
        for l in (0..self.dec.len()).rev() {
            let size = skips[l].size();
            x = x
                .upsample_nearest2d([size[2], size[3]], None, None)
                .apply(&self.up[l])
                .leaky_relu();
            x = self.dec[l].forward(&Tensor::cat(&[&x, &skips[l]], 1));
        }
        let residual = match &self.tail {
            Tail::Shuffle(conv) => x.apply(conv).pixel_shuffle(self.cfg.factor),
            Tail::Deconv(deconv) => deconv.forward(&x),
        };
        let sr = match base {
            Some(base) => base + residual,
            None => residual,
        };
        match &self.consistency {
            Some(layer) => layer.apply(&mut TchOps, &sr, lr),
            None => sr,
        }
    }
}

/// Bicubic or bilinear upsampling by `factor` (half-pixel centres, as GDAL and OpenCV), or
/// `None` for `Skip::None`.
pub fn interpolate(lr: &Tensor, factor: i64, mode: Skip) -> Option<Tensor> {
    let s = lr.size();
    let out = [s[2] * factor, s[3] * factor];
    let f = factor as f64;
    match mode {
        Skip::Bicubic => Some(lr.upsample_bicubic2d(out, false, f, f)),
        Skip::Bilinear => Some(lr.upsample_bilinear2d(out, false, f, f)),
        Skip::None => None,
    }
}

/// PyTorch's bicubic kernel (and the ONNX export's `cubic_coeff_a`).
fn pytorch_cubic(x: f64) -> f64 {
    geosr::taps::keys_cubic(-0.75, x)
}

/// `upsample_bicubic2d(align_corners = false)` of a `Float` tensor in host memory, computed as
/// separable taps ([`geosr::taps::resample_separable`]) instead of libtorch's CPU kernel, which
/// visits all sixteen taps of every output pixel with per-pixel index arithmetic and took much of
/// a small U-Net's inference time. `None` for tensors on a device, of another kind, or that need
/// gradients: those keep libtorch's kernel.
pub fn bicubic_on_host(lr: &Tensor, factor: i64) -> Option<Tensor> {
    if lr.device() != tch::Device::Cpu || lr.kind() != tch::Kind::Float || lr.requires_grad() {
        return None;
    }
    let s = lr.size();
    let [n, c, h, w] = [s[0], s[1], s[2], s[3]].map(|v| v as usize);
    let f = factor as usize;
    let values = Vec::<f32>::try_from(lr.contiguous().view(-1)).ok()?;
    let rows = geosr::taps::upsampling_taps(h, f, 2, pytorch_cubic);
    let cols = geosr::taps::upsampling_taps(w, f, 2, pytorch_cubic);
    let mut out = Vec::with_capacity(n * c * h * w * f * f);
    for image in values.chunks_exact(c * h * w) {
        out.extend(geosr::taps::resample_separable(
            image, c, h, w, &rows, &cols,
        ));
    }
    Some(Tensor::from_slice(&out).view([s[0], s[1], s[2] * factor, s[3] * factor]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn bicubic_on_host_is_libtorchs_bicubic() {
        tch::manual_seed(7);
        for factor in [2i64, 3, 4, 8] {
            let lr = Tensor::rand([2, 3, 9, 13], (Kind::Float, Device::Cpu)) * 4.0 - 1.0;
            let ours = bicubic_on_host(&lr, factor).expect("a host float tensor");
            let f = factor as f64;
            let theirs = lr.upsample_bicubic2d([9 * factor, 13 * factor], false, f, f);
            assert_eq!(ours.size(), theirs.size());
            let diff = (&ours - &theirs).abs().max().double_value(&[]);
            // libtorch works out each pixel's source position in f32, so its weights drift from
            // the exact ones by float rounding (most at ×3, where 1/3 is inexact).
            assert!(diff < 1e-5, "×{factor}: max |ours - libtorch| = {diff}");
        }
        let needs_grad =
            Tensor::rand([1, 1, 4, 4], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        assert!(bicubic_on_host(&needs_grad, 2).is_none());
        let double = Tensor::rand([1, 1, 4, 4], (Kind::Double, Device::Cpu));
        assert!(bicubic_on_host(&double, 2).is_none());
    }

    #[test]
    fn infer_is_forward() {
        tch::manual_seed(3);
        let cfg = UNetConfig {
            bands: 3,
            factor: 4,
            depth: 2,
            width: 8,
            upsample: Upsample::PixelShuffle,
            skip: Skip::Bicubic,
            consistency: None,
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let net = UNet::new(&vs.root(), &cfg);
        // Weights away from the zero-initialised tail, so the residual is not zero.
        tch::no_grad(|| {
            for (_, mut v) in vs.variables() {
                let _ = v.uniform_(-0.2, 0.2);
            }
        });
        let lr = Tensor::rand([2, 3, 16, 12], (Kind::Float, Device::Cpu));
        let (a, b) = tch::no_grad(|| (net.forward(&lr), net.infer(&lr)));
        let diff = (&a - &b).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "max |infer - forward| = {diff}");
        let residual = (&a - interpolate(&lr, 4, Skip::Bicubic).unwrap())
            .abs()
            .max()
            .double_value(&[]);
        assert!(
            residual > 1e-3,
            "the test network adds a residual: {residual}"
        );
    }
}
