//! The `tile-ingest` stage: serves HR chips (and LR chips for paired data) one batch per request,
//! or, with `ingest_mode: infer`, the overlapping LR tiles of a raster to super-resolve, or with
//! `ingest_mode: evaluate` the HR tiles of the rasters to evaluate on.
use crate::chips::ChipPlan;
use dora_node_api::DoraNode;
use geosr::card::DataProvenance;
use geosr::flow::{Request, TileCounts};
use geosr::node::{Inbox, Next};
use geosr::settings::{IngestMode, Settings};
use geosr::stage::send_batch;
use geosr::tile::{Split, TileBatch};
const STAGE: &str = "tile-ingest";

/// The stage in the mode its settings name; ends when the stage asking for tiles ends.
pub fn run(node: DoraNode, inbox: Inbox, settings: &Settings) -> eyre::Result<()> {
    match settings.ingest_mode {
        IngestMode::Infer => serve_inference_tiles(node, inbox, settings),
        IngestMode::Evaluate => serve_evaluation_tiles(node, inbox, settings),
        IngestMode::Train => serve_training_chips(node, inbox, settings),
    }
}

/// Training mode: `train` request `k` → training batch `k` on `hr` (and `lr` when paired);
/// `val` request `i` → validation batch `i` on `hr_val` (and `lr_val`).
fn serve_training_chips(node: DoraNode, inbox: Inbox, settings: &Settings) -> eyre::Result<()> {
    settings.check_run_dir()?;
    geosr::stage::init(STAGE, &settings.run_dir);
    // Plan before serving anything: a bad input fails here with one message naming the file.
    let mut plan = ChipPlan::new(settings)?;
    let rasters: Vec<_> = plan.rasters().into_iter().cloned().collect();
    let data = DataProvenance {
        rasters: rasters.clone(),
        paired_lr: settings.input_lr.clone(),
        chip_size: settings.chip_size,
        stride: settings.stride(),
        chips_considered: plan.candidates,
        chips_skipped_nodata: plan.skipped_nodata,
        max_nodata_pct: settings.max_nodata_pct,
        train_chips: plan.train.len(),
        val_chips: plan.val.len(),
        train_batches_per_epoch: plan.train_batches(),
        val_batches: plan.val_batches(),
        batch_size: settings.batch_size,
        seed: settings.seed,
        normalisation: plan.norm.clone(),
    };
    geosr::atomic::write_atomic(
        &settings.run_dir.join("data.json"),
        serde_json::to_string_pretty(&data)?.as_bytes(),
    )?;
    tracing::info!(
        rasters = rasters.len(),
        train_chips = plan.train.len(),
        val_chips = plan.val.len(),
        skipped_nodata = plan.skipped_nodata,
        "chips planned"
    );
    serve(node, inbox, &settings.run_dir, |req| {
        let (hr, lr, suffix) = match req.split {
            Split::Train => {
                let (hr, lr) = plan.train_batch(req.index)?;
                (hr, lr, "")
            }
            _ => {
                let (hr, lr) = plan.val_batch(req.index as usize)?;
                (hr, lr, "_val")
            }
        };
        let mut out = vec![(format!("hr{suffix}"), hr)];
        if let Some(lr) = lr {
            out.push((format!("lr{suffix}"), lr));
        }
        Ok(out)
    })
}

/// Evaluation mode: answers request `i` with batch `i` of overlapping HR tiles on `hr`, cut so
/// that, once degraded by the model's factor, they have the size and overlap of the LR tiles
/// inference uses.
fn serve_evaluation_tiles(node: DoraNode, inbox: Inbox, settings: &Settings) -> eyre::Result<()> {
    geosr::stage::init(STAGE, &settings.log_dir);
    let dir = settings.model.as_ref().ok_or_else(|| {
        eyre::eyre!("evaluation needs GEOSR_MODEL, the run directory of a trained model")
    })?;
    let card = geosr::checkpoint::load_checkpoint(dir)?.card;
    let plan = crate::scan::EvalPlan::new(
        &settings.input,
        &card,
        settings.infer_tile,
        settings.overlap,
        settings.infer_batch as usize,
        settings.nodata,
    )?;
    tracing::info!(
        input = %settings.input.display(),
        rasters = plan.plans.len(),
        batches = plan.batches(),
        "evaluation tiles planned"
    );
    serve(node, inbox, &settings.log_dir, |req| {
        Ok(vec![("hr".into(), plan.batch(req.index as usize)?)])
    })
}

/// Inference mode: answers `infer` request `i` with LR batch `i` on `lr`, numbered across the
/// scenes still to do ([`crate::scenes`]).
fn serve_inference_tiles(node: DoraNode, inbox: Inbox, settings: &Settings) -> eyre::Result<()> {
    geosr::stage::init(STAGE, &settings.log_dir);
    let (list, plan) = crate::scan::ScenePlan::from_settings(settings)?;
    for (scene, why) in &plan.failed {
        tracing::warn!(scene = %scene.input.display(), %why, "scene left out");
    }
    tracing::info!(
        input = %settings.input.display(),
        scenes = plan.scenes.len(),
        complete_already = list.complete.len(),
        left_out = plan.failed.len(),
        batches = plan.batches(),
        "inference tiles planned"
    );
    serve(node, inbox, &settings.log_dir, |req| {
        Ok(vec![("lr".into(), plan.batch(req.index as usize)?)])
    })
}

/// The request loop: each request is answered with the batches `answer` gives, until the stage
/// that asks ends (a requester that failed reports that itself).
fn serve(
    mut node: DoraNode,
    mut inbox: Inbox,
    counts_dir: &std::path::Path,
    mut answer: impl FnMut(Request) -> geosr::Result<Vec<(String, TileBatch)>>,
) -> eyre::Result<()> {
    let mut counts = TileCounts::new(STAGE);
    loop {
        match inbox.next(None)? {
            Next::Input { id, data } if id == "request" => {
                let req = Request::from_arrow(data.as_ref())?;
                counts.count_in("request", 1);
                for (output, batch) in answer(req)? {
                    counts.count_out(&output, send_batch(&mut node, &output, batch)?);
                }
            }
            Next::Input { id, .. } => tracing::warn!(input = %id, "ignoring unexpected input"),
            Next::PeerFailed { node, .. } => {
                tracing::info!(%node, "the stage asking for tiles failed; stopping");
                break;
            }
            Next::Closed { .. } | Next::Stop => break,
            Next::Silence => {}
        }
    }
    counts.write(counts_dir)?;
    Ok(())
}
