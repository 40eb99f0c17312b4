//! Small helpers shared by the dora nodes: sending tile batches, reading settings with the
//! right context, and the whole event loop of a loss stage.
use crate::error::{Error, Result};
use crate::flow::TileCounts;
use crate::loss::{loss_and_grad, LossFn};
use crate::tile::TileBatch;
use dora_node_api::dora_core::config::DataId;
use dora_node_api::{DoraNode, Event, MetadataParameters};
use std::collections::BTreeMap;
use std::path::Path;

/// Process set-up shared by every node: logging (see [`crate::telemetry`]).
pub fn init(stage: &str, log_dir: &Path) -> Option<std::path::PathBuf> {
    crate::telemetry::init(stage, Some(log_dir))
}

/// For stages that move big tile buffers around without libtorch (ingest, degrade, upscale,
/// writer): pins glibc's mmap threshold at 1 MiB.
///
/// Tile batches are tens of MB. glibc raises its mmap threshold each time such a block is
/// freed, after which new ones come from the heap and freed ones are not returned: the writer
/// node measured 824 MB peak RSS that way against 477 MB with the threshold pinned (2041×1860
/// scene ×4, `graphs/upscale-classic.yml`). Not for libtorch stages: their activations would
/// then be fresh zeroed pages on every allocation, which measured 46 tiles/s of training
/// against 82 tiles/s without it.
pub fn pin_mmap_threshold() {
    // SAFETY: mallopt only sets an allocator parameter; called at start-up before other threads.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Sends a tile batch on `output`, moving its pixels into Arrow without a copy.
pub fn send_batch(node: &mut DoraNode, output: &str, batch: TileBatch) -> eyre::Result<usize> {
    let n = batch.len();
    let array = batch.into_arrow()?;
    node.send_output(
        DataId::from(output.to_owned()),
        MetadataParameters::default(),
        array,
    )?;
    Ok(n)
}

/// Sends any Arrow array on `output`.
pub fn send_array(
    node: &mut DoraNode,
    output: &str,
    array: arrow::array::ArrayRef,
) -> eyre::Result<()> {
    node.send_output(
        DataId::from(output.to_owned()),
        MetadataParameters::default(),
        array,
    )?;
    Ok(())
}

/// Writes `stages/<node id>.json` under the run directory: what this stage is and how it is set.
pub fn describe_stage(
    run_dir: &Path,
    node_id: &str,
    description: &serde_json::Value,
) -> Result<()> {
    let body = serde_json::json!({ "stage": node_id, "description": description });
    crate::checkpoint::write_atomic(
        &run_dir.join("stages").join(format!("{node_id}.json")),
        serde_json::to_string_pretty(&body)
            .expect("json")
            .as_bytes(),
    )
}

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
