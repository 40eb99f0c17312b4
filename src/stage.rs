//! Helpers shared by the stage processes: logging set-up, allocator tuning, sending tile batches,
//! describing a stage, and the event loop of the stages that map each batch to one reply.
use crate::error::Result;
use crate::flow::{Share, TileCounts};
use crate::node::{Inbox, Next};
use crate::tile::TileBatch;
use dora_node_api::dora_core::config::DataId;
use dora_node_api::{DoraNode, MetadataParameters};
use std::path::Path;

/// Process set-up shared by every node: logging (see [`crate::telemetry`]).
pub fn init(stage: &str, log_dir: &Path) -> Option<std::path::PathBuf> {
    crate::telemetry::init(stage, Some(log_dir))
}

/// For evaluate and degrade: pins glibc's mmap threshold at 1 MiB, so that the big tile buffers
/// they free go back to the system instead of staying in the heap, which keeps their peak RSS
/// near what they hold. The price is fresh, zeroed pages for every buffer; the stages on the
/// region-scale path take the other side of that trade (see [`keep_freed_memory`]).
pub fn pin_mmap_threshold() {
    // SAFETY: mallopt only sets an allocator parameter, under glibc's own lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// For the stages that allocate and free the same large buffers again and again: the libtorch
/// stages (unet-train, unet-infer, vgg-loss, pixel-loss, the in-process trainer), and
/// tile-ingest, upscale and geotiff-writer, whose batches are the same size every time. Keeps freed memory in the
/// process for the next step instead of handing it back.
///
/// With glibc's defaults those buffers come from fresh `mmap`s or a trimmed heap, so each step
/// pays page faults to zero them again (BENCHMARKS.md measures the cost for the perceptual loss
/// and for the region-scale graphs). The price is that the process keeps its peak working set
/// resident.
pub fn keep_freed_memory() {
    // SAFETY: mallopt only sets allocator parameters, under glibc's own lock.
    unsafe {
        if libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20) == 0 {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20); // the most some glibc builds take
        }
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
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
    crate::atomic::write_atomic(
        &run_dir.join("stages").join(format!("{node_id}.json")),
        serde_json::to_string_pretty(&body)
            .expect("json")
            .as_bytes(),
    )
}

/// The event loop of a stage that answers every input batch with exactly one output batch
/// (degrade, upscale, unet-infer): decodes each batch, asks `f` for the output id and the reply,
/// sends it and counts both, until its inputs end; then writes the counts to `log_dir` under the
/// node's id. Such a stage keeps nothing, so it sits on a request/credit flow unchanged; when a
/// stage before it fails it ends quietly, and the stage at the end of the flow reports the loss.
pub fn map_batches(
    node: DoraNode,
    inbox: Inbox,
    log_dir: &Path,
    f: impl FnMut(&str, TileBatch) -> eyre::Result<(String, TileBatch)>,
) -> eyre::Result<()> {
    map_batches_shared(node, inbox, log_dir, Share::ALL, f)
}

/// [`map_batches`] for one of several workers side by side: answers only the batches of its
/// [`Share`] (by the batch's index in its split) and passes over the others, which count as
/// received so that every edge's counts still balance.
pub fn map_batches_shared(
    mut node: DoraNode,
    mut inbox: Inbox,
    log_dir: &Path,
    share: Share,
    mut f: impl FnMut(&str, TileBatch) -> eyre::Result<(String, TileBatch)>,
) -> eyre::Result<()> {
    // Counts are named after the node, not the stage: a graph may run one stage several times
    // (three `upscale` nodes in the evaluation graph).
    let mut counts = TileCounts::new(node.id().as_ref());
    loop {
        match inbox.next(None)? {
            Next::Input { id, data } => {
                let batch = TileBatch::from_arrow(data.as_ref()).map_err(|e| {
                    eyre::eyre!("input `{id}` from `{}`: {e}", inbox.source_of(&id))
                })?;
                counts.count_in(&id, batch.len());
                if !share.takes(batch.index_in_split as u64) {
                    continue;
                }
                let (output, reply) = f(&id, batch)?;
                counts.count_out(&output, send_batch(&mut node, &output, reply)?);
            }
            Next::PeerFailed { node, .. } => {
                tracing::info!(%node, "a stage before this one failed; stopping");
                break;
            }
            Next::Closed { .. } | Next::Silence => {}
            Next::Stop => break,
        }
    }
    counts.write(log_dir)?;
    Ok(())
}

/// Steps per second of a training loop, leaving out the first steps (start-up, allocator and
/// thread-pool warm-up): the dataflow's `timing.json` and the single-process loop measure the
/// same way.
#[derive(Debug, Clone)]
pub struct StepTiming {
    started: std::time::Instant,
    done_s: Vec<f64>,
}

impl Default for StepTiming {
    fn default() -> Self {
        StepTiming {
            started: std::time::Instant::now(),
            done_s: Vec::new(),
        }
    }
}

impl StepTiming {
    /// Steps left out of the rate.
    pub const WARM_UP: usize = 10;

    /// Notes that a step completed now.
    pub fn step_done(&mut self) {
        self.done_s.push(self.started.elapsed().as_secs_f64());
    }

    /// Steps timed and the seconds they took: from the end of the warm-up to the last step.
    pub fn timed(&self) -> (usize, f64) {
        let t = &self.done_s;
        let skip = Self::WARM_UP.min(t.len().saturating_sub(1));
        let secs = t.last().copied().unwrap_or(0.0) - t.get(skip).copied().unwrap_or(0.0);
        (t.len().saturating_sub(1 + skip), secs)
    }

    /// Steps per second after the warm-up (NaN with too few steps to tell).
    pub fn steps_per_s(&self) -> f64 {
        let (n, secs) = self.timed();
        if secs > 0.0 {
            n as f64 / secs
        } else {
            f64::NAN
        }
    }

    /// Seconds since the loop started.
    pub fn elapsed_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}
