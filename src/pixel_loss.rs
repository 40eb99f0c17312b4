//! The per-pixel loss and its gradient in plain Rust, for stages that do not link libtorch (the
//! `op-pixel-loss` operator). Same definition as `geosr_torch::loss::PixelLoss`: per tile the
//! mean over C·H·W of |pred − hr| (`l1`) or (pred − hr)² (`mse`), times `weight`; the batch loss
//! is the mean over tiles. `crates/geosr-torch/tests` checks both against libtorch autograd.
//!
//! ```
//! use geosr::pixel_loss::loss_and_grad;
//! use geosr::settings::PixelLoss;
//! let (loss, shares, grad) = loss_and_grad(PixelLoss::Mse, 1.0, &[1.0, 3.0], &[0.0, 0.0], 1).unwrap();
//! assert_eq!(loss, 5.0);           // (1 + 9) / 2
//! assert_eq!(shares, vec![5.0]);
//! assert_eq!(grad, vec![1.0, 3.0]); // 2·(p − h) / 2
//! ```
use crate::error::{Error, Result};
use crate::settings::PixelLoss;
use crate::tile::TileBatch;

/// Batch loss, each tile's share (summing to the loss) and ∂loss/∂pred, for `n` tiles laid out
/// one after the other in `pred` and `hr`.
pub fn loss_and_grad(
    kind: PixelLoss,
    weight: f64,
    pred: &[f32],
    hr: &[f32],
    n: usize,
) -> Result<(f64, Vec<f64>, Vec<f32>)> {
    if pred.len() != hr.len() || n == 0 || !pred.len().is_multiple_of(n) {
        return Err(Error::Contract(format!(
            "prediction ({} values) and HR ({} values) do not split into {n} equal tiles",
            pred.len(),
            hr.len()
        )));
    }
    let per = pred.len() / n;
    // d(batch loss)/d(pixel) = weight / (n · per) · d(pixel term)
    let scale = weight / (n * per) as f64;
    let mut shares = Vec::with_capacity(n);
    let mut grad = Vec::with_capacity(pred.len());
    for (p, h) in pred.chunks_exact(per).zip(hr.chunks_exact(per)) {
        let mut sum = 0.0;
        for (a, b) in p.iter().zip(h) {
            let d = *a as f64 - *b as f64;
            let (term, g) = match kind {
                PixelLoss::L1 => (
                    d.abs(),
                    if d > 0.0 {
                        1.0
                    } else if d < 0.0 {
                        -1.0
                    } else {
                        0.0
                    },
                ),
                PixelLoss::Mse => (d * d, 2.0 * d),
                PixelLoss::None => {
                    return Err(Error::setting(
                        "pixel_loss",
                        "`none` has no gradient; use l1 or mse",
                    ))
                }
            };
            sum += term;
            grad.push((g * scale) as f32);
        }
        shares.push(sum / per as f64 * weight / n as f64);
    }
    Ok((shares.iter().sum(), shares, grad))
}

/// The loss-stage reply for a prediction batch and its HR batch: the prediction's geometry,
/// `pixels` = ∂loss/∂pred, `loss` = each tile's share.
pub fn reply(kind: PixelLoss, weight: f64, pred: &TileBatch, hr: &TileBatch) -> Result<TileBatch> {
    if (pred.len(), pred.tile_len()) != (hr.len(), hr.tile_len()) {
        return Err(Error::Contract(format!(
            "batch {}: prediction {}x{}x{}x{} and HR {}x{}x{}x{} differ in shape",
            pred.batch_id,
            pred.len(),
            pred.bands,
            pred.height,
            pred.width,
            hr.len(),
            hr.bands,
            hr.height,
            hr.width
        )));
    }
    let (_, shares, grad) = loss_and_grad(kind, weight, &pred.pixels, &hr.pixels, pred.len())?;
    let mut out = pred.derived(pred.bands, pred.height, pred.width, grad)?;
    out.loss = Some(shares);
    Ok(out)
}
