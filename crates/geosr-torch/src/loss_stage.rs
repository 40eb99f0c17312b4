//! The event loop of a loss stage node, shared by `vgg-loss` and `pixel-loss`.
use crate::loss::{loss_and_grad, LossFn};
use crate::tensor::TileTensors;
use dora_node_api::{DoraNode, Event};
use geosr::error::Error;
use geosr::flow::TileCounts;
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
    stage: &str,
    loss: &dyn LossFn,
    run_dir: &Path,
    device: tch::Device,
) -> eyre::Result<()> {
    let (mut node, mut events) = DoraNode::init_from_env()?;
    let node_id = node.id().to_string();
    describe_stage(run_dir, &node_id, &loss.describe())?;
    let mut counts = TileCounts::new(&node_id);
    let mut hr_wait: BTreeMap<u64, TileBatch> = BTreeMap::new();
    let mut pred_wait: BTreeMap<u64, TileBatch> = BTreeMap::new();
    tracing::info!(stage, node = %node_id, ?device, "loss stage ready");
    while let Some(event) = events.recv() {
        match event {
            Event::Input { id, data, .. } => {
                let batch = TileBatch::from_arrow(data.as_array().as_ref())
                    .map_err(|e| eyre::eyre!("{node_id}: input `{id}`: {e}"))?;
                counts.count_in(id.as_str(), batch.len());
                match id.as_str() {
                    "hr" => hr_wait.insert(batch.batch_id, batch),
                    "pred" => pred_wait.insert(batch.batch_id, batch),
                    other => {
                        return Err(eyre::eyre!(
                            "{node_id}: unexpected input `{other}` (expected `hr` and `pred`)"
                        ))
                    }
                };
                let ready: Vec<u64> = pred_wait
                    .keys()
                    .filter(|k| hr_wait.contains_key(k))
                    .copied()
                    .collect();
                for id in ready {
                    let pred = pred_wait.remove(&id).expect("listed");
                    let hr = hr_wait.remove(&id).expect("listed");
                    let (value, shares, grad) =
                        loss_and_grad(loss, &pred.tensor(device), &hr.tensor(device), &hr.colour)?;
                    let mut reply = pred.with_pixels(&grad)?;
                    reply.loss = Some(shares);
                    tracing::debug!(batch = id, loss = value, "loss evaluated");
                    let n = send_batch(&mut node, "loss", reply)?;
                    counts.count_out("loss", n);
                }
                // Predictions of batches whose HR never comes would pile up; HR of the last
                // prefetched batches legitimately waits. Both stay small under the credit flow.
                if hr_wait.len() > 64 || pred_wait.len() > 64 {
                    return Err(Error::Contract(format!(
                        "{node_id}: {} HR and {} predictions wait for their other half; check the graph's wiring",
                        hr_wait.len(),
                        pred_wait.len()
                    ))
                    .into());
                }
            }
            Event::InputClosed { id } if id.as_str() == "pred" => break,
            Event::Stop(_) => break,
            _ => {}
        }
    }
    counts.write(run_dir)?;
    Ok(())
}
