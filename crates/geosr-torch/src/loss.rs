//! Loss stages: given a prediction and the matching HR batch, the per-tile loss and the
//! gradient of the batch loss with respect to the prediction.
//!
//! The trainer sums the gradients of all wired loss stages (weighted as its settings say) and
//! back-propagates the sum through the U-Net with `(pred · grad).sum().backward()`, which gives
//! exactly the parameter gradients of the summed loss. That is why a loss stage can live in its
//! own process: only predictions and gradients cross the process boundary.
use crate::tensor::TorchResult;
use crate::vgg::{caffe_input, parse_layers, Vgg16};
use geosr::error::{Error, Result};
use geosr::settings::{PixelLoss as PixelLossKind, Settings};
use std::path::Path;
use tch::{Device, Kind, Reduction, Tensor};

/// A loss that can be evaluated on a batch. `per_tile` returns an N-vector whose mean is the
/// batch loss; it must stay differentiable with respect to `pred`.
pub trait LossFn {
    fn per_tile(&self, pred: &Tensor, hr: &Tensor, colour: &str) -> Result<Tensor>;
    /// A description recorded in the model card.
    fn describe(&self) -> serde_json::Value;
}

/// The batch loss, each tile's share of it (shares sum to the loss) and ∂loss/∂pred.
pub fn loss_and_grad(
    f: &dyn LossFn,
    pred: &Tensor,
    hr: &Tensor,
    colour: &str,
) -> Result<(f64, Vec<f64>, Tensor)> {
    let pred = pred.detach().set_requires_grad(true);
    let per_tile = f.per_tile(&pred, hr, colour)?;
    let n = per_tile.size()[0] as f64;
    let loss = per_tile.sum(Kind::Float) / n;
    loss.backward();
    let grad = pred.grad().detach();
    let shares: Vec<f64> = Vec::<f32>::try_from(per_tile.detach().to_device(Device::Cpu) / n)
        .torch()?
        .into_iter()
        .map(f64::from)
        .collect();
    Ok((loss.double_value(&[]), shares, grad))
}

/// Per-pixel loss on normalised pixels.
#[derive(Debug, Clone)]
pub struct PixelLoss {
    pub kind: PixelLossKind,
    pub weight: f64,
}

impl PixelLoss {
    pub fn from_settings(s: &Settings) -> Self {
        PixelLoss {
            kind: s.pixel_loss,
            weight: s.pixel_weight,
        }
    }
}

impl LossFn for PixelLoss {
    fn per_tile(&self, pred: &Tensor, hr: &Tensor, _colour: &str) -> Result<Tensor> {
        check_shapes(pred, hr)?;
        let diff = match self.kind {
            PixelLossKind::L1 => pred.l1_loss(hr, Reduction::None),
            PixelLossKind::Mse => pred.mse_loss(hr, Reduction::None),
            PixelLossKind::None => {
                return Ok(
                    Tensor::zeros([pred.size()[0]], (Kind::Float, pred.device()))
                        * pred.sum(Kind::Float),
                )
            }
        };
        Ok(diff.mean_dim([1i64, 2, 3].as_slice(), false, Kind::Float) * self.weight)
    }
    fn describe(&self) -> serde_json::Value {
        serde_json::json!({ "pixel_loss": self.kind, "pixel_weight": self.weight })
    }
}

fn check_shapes(pred: &Tensor, hr: &Tensor) -> Result<()> {
    if pred.size() != hr.size() {
        return Err(Error::Contract(format!(
            "prediction {} and HR {} differ in shape",
            crate::shape_text(&pred.size()),
            crate::shape_text(&hr.size())
        )));
    }
    Ok(())
}

/// Johnson et al.'s feature reconstruction loss on a frozen VGG-16, plus an optional
/// per-pixel term: `Σ_l w_l · mean((φ_l(pred) − φ_l(hr))²) · feature_weight + pixel`.
///
/// Tiles with three bands known as red, green and blue (from `rgb_bands` or the bands' colour
/// interpretation) go through VGG as one colour image; any other band set goes through band by
/// band as grey images and the band losses are averaged.
pub struct PerceptualLoss {
    vgg: Vgg16,
    layers: Vec<(usize, f64)>,
    layer_spec: String,
    feature_weight: f64,
    rgb_bands: Vec<u32>,
    pixel: PixelLoss,
}

impl PerceptualLoss {
    pub fn new(s: &Settings, device: Device) -> Result<Self> {
        Self::with_weights(s, &s.vgg_weights, device)
    }

    pub fn with_weights(s: &Settings, weights: &Path, device: Device) -> Result<Self> {
        let layers = parse_layers(&s.vgg_layers)?;
        let deepest = layers.iter().map(|(i, _)| *i).max().unwrap_or(0);
        Ok(PerceptualLoss {
            vgg: Vgg16::load(weights, device, deepest)?,
            layers,
            layer_spec: s.vgg_layers.clone(),
            feature_weight: s.feature_weight,
            rgb_bands: s.rgb_bands.0.clone(),
            pixel: PixelLoss::from_settings(s),
        })
    }

    /// Positions (0-based) of red, green, blue among the tile's bands, if known.
    pub fn rgb_positions(&self, colour: &str, bands: usize) -> Option<[usize; 3]> {
        if self.rgb_bands.len() == 3 {
            let p: Vec<usize> = self.rgb_bands.iter().map(|b| *b as usize - 1).collect();
            return p.iter().all(|&i| i < bands).then(|| [p[0], p[1], p[2]]);
        }
        let names: Vec<&str> = colour.split(',').collect();
        let pos = |n: &str| names.iter().position(|c| *c == n);
        match (pos("red"), pos("green"), pos("blue")) {
            (Some(r), Some(g), Some(b)) => Some([r, g, b]),
            _ if bands == 3 => Some([0, 1, 2]),
            _ => None,
        }
    }
}

impl PerceptualLoss {
    /// VGG features of N tiles at the configured layers, and how many images each tile became:
    /// 1 when its red, green and blue go through as one colour image, else one grey image per
    /// band.
    pub fn features(&self, x: &Tensor, colour: &str) -> (Vec<Tensor>, i64) {
        let [n, c, h, w] = x.size()[..] else {
            unreachable!("tiles are 4-D")
        };
        let (image, groups) = match self.rgb_positions(colour, c as usize) {
            Some(rgb) => {
                let idx = Tensor::from_slice(&rgb.map(|i| i as i64)).to_device(x.device());
                (x.index_select(1, &idx), 1)
            }
            None => (
                x.reshape([n * c, 1, h, w]).expand([n * c, 3, h, w], false),
                c,
            ),
        };
        let idx: Vec<usize> = self.layers.iter().map(|(i, _)| *i).collect();
        (self.vgg.features(&caffe_input(&image), &idx), groups)
    }

    /// The feature reconstruction distance per tile, `Σ_l w_l · mean((a_l − b_l)²)` (without
    /// `feature_weight`), from features made by [`PerceptualLoss::features`].
    pub fn feature_distance(&self, a: &[Tensor], b: &[Tensor], n: i64, groups: i64) -> Tensor {
        let device = a.first().map(|t| t.device()).unwrap_or(Device::Cpu);
        let mut total = Tensor::zeros([n], (Kind::Float, device));
        for ((fa, fb), (_, wl)) in a.iter().zip(b).zip(&self.layers) {
            let per_image =
                (fa - fb)
                    .square()
                    .mean_dim([1i64, 2, 3].as_slice(), false, Kind::Float);
            total += per_image
                .view([n, groups])
                .mean_dim([1i64].as_slice(), false, Kind::Float)
                * *wl;
        }
        total
    }

    /// The `vgg_layers` setting this loss was made with (for naming scores).
    pub fn layer_spec(&self) -> &str {
        &self.layer_spec
    }
}

impl LossFn for PerceptualLoss {
    fn per_tile(&self, pred: &Tensor, hr: &Tensor, colour: &str) -> Result<Tensor> {
        check_shapes(pred, hr)?;
        let n = pred.size()[0];
        let (fp, groups) = self.features(pred, colour);
        let (fh, _) = tch::no_grad(|| self.features(hr, colour));
        let mut out = self.feature_distance(&fp, &fh, n, groups) * self.feature_weight;
        if self.pixel.kind != PixelLossKind::None && self.pixel.weight != 0.0 {
            out += self.pixel.per_tile(pred, hr, colour)?;
        }
        Ok(out)
    }
    fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "loss": "perceptual",
            "network": "VGG-16 (ImageNet, Keras/Caffe weights), frozen",
            "vgg_layers": self.layer_spec,
            "feature_weight": self.feature_weight,
            "pixel": self.pixel.describe(),
        })
    }
}
