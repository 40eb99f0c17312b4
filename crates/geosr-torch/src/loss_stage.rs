//! The event loops of a loss stage node: training (shared by `vgg-loss` and `pixel-loss`) and
//! the evaluation mode of `vgg-loss`, which scores predictions without gradients.
use crate::loss::{loss_and_grad, LossFn, PerceptualLoss};
use crate::tensor::TileTensors;
use dora_node_api::DoraNode;
use geosr::error::Error;
use geosr::flow::{Join, TileCounts};
use geosr::node::{Inbox, Next};
use geosr::scores::{Score, ScoreBatch};
use geosr::stage::{describe_stage, send_batch};
use geosr::tile::TileBatch;
use std::collections::BTreeMap;
use std::path::Path;

/// The event loop of a loss stage.
///
/// Inputs: `hr` (HR training batches, straight from ingest) and `pred` (the trainer's SR
/// predictions). Both carry `batch_id`; when both halves of a batch have arrived, the stage sends
/// on `loss` a batch with the prediction's geometry whose `pixels` are ∂loss/∂pred and whose
/// `loss` column holds each tile's share of the batch loss.
pub fn run_loss_stage(
    (mut node, mut inbox): (DoraNode, Inbox),
    stage: &str,
    loss: &dyn LossFn,
    run_dir: &Path,
    device: tch::Device,
) -> eyre::Result<()> {
    let node_id = node.id().to_string();
    describe_stage(run_dir, &node_id, &loss.describe())?;
    let mut counts = TileCounts::new(&node_id);
    // HR tiles of prefetched batches wait for their predictions; a few dozen is far beyond
    // what the credit flow lets in.
    let mut halves: Join<TileBatch> = Join::new(&["hr", "pred"], 64);
    let mut latest_pred: Option<u64> = None;
    tracing::info!(stage, node = %node_id, ?device, "loss stage ready");
    loop {
        // A prediction waiting for its HR batch is a wait with a bound; otherwise the stage is
        // idle until the trainer's next step.
        let waiting = halves.first_missing("hr").map(|id| {
            format!(
                "the HR tiles of batch {id} from `{}`",
                inbox.source_of("hr")
            )
        });
        match inbox.next(waiting.as_deref())? {
            Next::Input { id, data } => {
                let batch = TileBatch::from_arrow(data.as_ref()).map_err(|e| {
                    eyre::eyre!("input `{id}` from `{}`: {e}", inbox.source_of(&id))
                })?;
                counts.count_in(&id, batch.len());
                // The trainer predicts batches in order, so once prediction `k` is in, HR tiles
                // and predictions of earlier batches (second answers to requests the trainer
                // made again after a silence) will never be needed.
                let key = batch.batch_id;
                if id == "pred" {
                    latest_pred = latest_pred.max(Some(key));
                    halves.forget_below(key);
                } else if latest_pred.is_some_and(|k| key < k) {
                    continue;
                }
                let Some(mut both) = halves.insert(key, &id, batch)? else {
                    continue;
                };
                let (pred, hr) = (
                    both.remove("pred").expect("joined"),
                    both.remove("hr").expect("joined"),
                );
                let (value, shares, grad) =
                    loss_and_grad(loss, &pred.tensor(device), &hr.tensor(device), &hr.colour)?;
                if !value.is_finite() {
                    eyre::bail!(
                        "the loss of batch {key} is {value}: training diverged; lower `lr` and resume from the last checkpoint"
                    );
                }
                let mut reply = pred.with_pixels(&grad)?;
                reply.loss = Some(shares);
                tracing::debug!(batch = key, loss = value, "loss evaluated");
                let n = send_batch(&mut node, "loss", reply)?;
                counts.count_out("loss", n);
            }
            Next::Closed { id } if id == "pred" => break,
            Next::Closed { .. } | Next::Silence => {}
            Next::PeerFailed { node, .. } => {
                tracing::info!(%node, "a stage feeding this one failed; stopping");
                break;
            }
            Next::Stop => break,
        }
    }
    counts.write(run_dir)?;
    Ok(())
}

/// The prediction inputs of a node in evaluation mode: every input named `sr_<method>`.
pub fn scored_methods(inbox: &Inbox) -> Vec<String> {
    inbox
        .input_ids()
        .iter()
        .filter_map(|k| k.strip_prefix("sr_").map(str::to_owned))
        .collect()
}

/// The evaluation mode of `vgg-loss`: inputs `hr` (HR tiles) and `sr_<method>` (that method's
/// super-resolved tiles, same geometry); for every prediction batch it sends on `distance` one
/// score batch ([`geosr::scores`]) with each tile's VGG feature distance to its HR tile,
/// `Σ_l w_l · mean((φ_l(sr) − φ_l(hr))²)` at `vgg_layers`, computed without gradients. The HR
/// features of a batch are computed once and kept until every method has been scored.
pub fn run_scoring_stage(
    (mut node, mut inbox): (DoraNode, Inbox),
    loss: &PerceptualLoss,
    log_dir: &Path,
    device: tch::Device,
) -> eyre::Result<()> {
    let node_id = node.id().to_string();
    let methods = scored_methods(&inbox);
    let metric = format!("vgg_{}", loss.layer_spec().replace([':', ',', '.'], "_"));
    tracing::info!(node = %node_id, ?methods, %metric, ?device, "scoring stage ready");
    let mut counts = TileCounts::new(&node_id);
    // batch id → (HR features, images per tile, colour, methods still to score)
    let mut hr_features: BTreeMap<u64, (Vec<tch::Tensor>, i64, usize)> = BTreeMap::new();
    let mut waiting: BTreeMap<u64, Vec<(String, TileBatch)>> = BTreeMap::new();
    let _guard = tch::no_grad_guard();
    loop {
        let awaited = waiting.keys().next().map(|id| {
            format!(
                "the HR tiles of batch {id} from `{}`",
                inbox.source_of("hr")
            )
        });
        match inbox.next(awaited.as_deref())? {
            Next::Input { id, data } => {
                let batch = TileBatch::from_arrow(data.as_ref()).map_err(|e| {
                    eyre::eyre!("input `{id}` from `{}`: {e}", inbox.source_of(&id))
                })?;
                counts.count_in(&id, batch.len());
                let bid = batch.batch_id;
                if id == "hr" {
                    let (f, groups) = loss.features(&batch.tensor(device), &batch.colour);
                    hr_features.insert(bid, (f, groups, methods.len()));
                } else if let Some(m) = id.strip_prefix("sr_") {
                    waiting.entry(bid).or_default().push((m.to_owned(), batch));
                } else {
                    eyre::bail!("unexpected input `{id}` (expected `hr` and `sr_<method>`)");
                }
                let Some((fh, groups, left)) = hr_features.get_mut(&bid) else {
                    continue;
                };
                for (method, pred) in waiting.remove(&bid).unwrap_or_default() {
                    let n = pred.len() as i64;
                    let (fp, _) = loss.features(&pred.tensor(device), &pred.colour);
                    let d = loss.feature_distance(&fp, fh, n, *groups);
                    let values = Vec::<f32>::try_from(d.to_device(tch::Device::Cpu))?;
                    let rows = values
                        .iter()
                        .enumerate()
                        .map(|(i, v)| Score {
                            batch_id: bid,
                            tile: i as u32,
                            method: method.clone(),
                            metric: metric.clone(),
                            value: *v as f64,
                        })
                        .collect();
                    geosr::stage::send_array(&mut node, "distance", ScoreBatch(rows).to_arrow())?;
                    counts.count_out("distance", values.len());
                    *left = left.saturating_sub(1);
                }
                if *left == 0 {
                    hr_features.remove(&bid);
                }
                if hr_features.len() > 64 || waiting.len() > 64 {
                    return Err(Error::Contract(format!(
                        "{} HR batches and {} predictions wait for their other half; check the graph's wiring",
                        hr_features.len(),
                        waiting.len()
                    ))
                    .into());
                }
            }
            Next::PeerFailed { node, .. } => {
                tracing::info!(%node, "a stage feeding this one failed; stopping");
                break;
            }
            Next::Closed { .. } | Next::Silence => {}
            Next::Stop => break,
        }
    }
    counts.write(log_dir)?;
    Ok(())
}
