//! `unet-train`: trains the U-Net. Asks ingest for batches (request/credit flow), sends each SR
//! prediction to the loss stages, sums the gradients they return, steps Adam, validates, and
//! writes checkpoints, the model card and metrics.csv. See README.md beside this file.
use dora_node_api::DoraNode;
use eyre::{bail, WrapErr};
use geosr::checkpoint::{latest_checkpoint, write_checkpoint, ModelCard};
use geosr::flow::{Request, TileCounts};
use geosr::metrics_log::MetricsLog;
use geosr::node::{Inbox, Next};
use geosr::settings::{Settings, DEFAULT_STEPS};
use geosr::stage::{send_array, send_batch};
use geosr::tile::TileBatch;
use geosr_torch::train::{combine_grads, Trainer, Validation};
use geosr_torch::unet::UNetConfig;
use geosr_torch::{SettingsTorch, TileTensors, TorchResult};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;
use tch::Tensor;

/// One step whose prediction is out with the loss stages.
struct Pending {
    batch_id: u64,
    tiles: usize,
    pred: Tensor,
    /// The message sent, to send again if no reply comes.
    msg: TileBatch,
    replies: BTreeMap<String, (f64, Tensor)>,
}

/// A validation pass in progress. Batches are joined (LR with HR) and scored in index order,
/// whatever order they arrive in, so the figures do not depend on timing.
#[derive(Default)]
struct ValPass {
    total: Option<u32>,
    requested: u32,
    done: u32,
    /// By index in the split.
    lr: BTreeMap<u32, TileBatch>,
    hr: BTreeMap<u32, TileBatch>,
    quality: Validation,
}

struct Run {
    settings: Settings,
    node: DoraNode,
    losses: Vec<(String, f64)>,
    trainer: Option<Trainer>,
    first: Option<TileBatch>,
    total_steps: u64,
    val_every: u64,
    /// The next training batch number to ask for (batch `k` trains step `k + 1`).
    next_request: u64,
    /// Training batches received and not yet trained on, by batch number.
    queue: BTreeMap<u64, TileBatch>,
    pending: Option<Pending>,
    val: Option<ValPass>,
    counts: TileCounts,
    /// Opened when the first batch arrives, so a run that fails to start changes nothing.
    metrics: Option<MetricsLog>,
    /// The step the run resumed from (0 for a fresh run).
    start_step: u64,
    /// The step of the last checkpoint on disk (the resumed one at first).
    saved_step: u64,
    loss_sum: f64,
    loss_n: u64,
    last_val: Option<Validation>,
    started: Instant,
    window_start: Instant,
    window_tiles: usize,
    epoch: u32,
    finished: bool,
    /// Seconds since start at which each step of this process completed (for timing.json).
    step_done_s: Vec<f64>,
}

const STAGE: &str = "unet-train";

fn main() -> ExitCode {
    geosr::node::run(STAGE, || {
        geosr::stage::keep_freed_memory();
        let (node, inbox, settings) = geosr::node::start(STAGE)?;
        settings.check_run_dir()?;
        geosr::stage::init(STAGE, &settings.run_dir);
        settings.apply_threads();
        train(node, inbox, settings)
    })
}

fn train(node: DoraNode, mut inbox: Inbox, settings: Settings) -> eyre::Result<()> {
    let losses = loss_inputs(&inbox.input_ids(), &settings)?;
    let resume = match &settings.resume {
        Some(dir) => Some(latest_checkpoint(dir).wrap_err("resume")?),
        None => None,
    };
    let start_step = resume.as_ref().map(|r| r.card.step).unwrap_or(0);
    tracing::info!(?losses, run_dir = %settings.run_dir.display(), "trainer ready");
    let mut run = Run {
        total_steps: settings.steps.map(u64::from).unwrap_or(0),
        val_every: settings.val_every.map(u64::from).unwrap_or(0),
        settings,
        node,
        losses,
        trainer: None,
        first: None,
        next_request: start_step,
        queue: BTreeMap::new(),
        pending: None,
        val: None,
        counts: TileCounts::new(STAGE),
        metrics: None,
        start_step,
        saved_step: start_step,
        loss_sum: 0.0,
        loss_n: 0,
        last_val: None,
        started: Instant::now(),
        window_start: Instant::now(),
        window_tiles: 0,
        epoch: 0,
        finished: false,
        step_done_s: Vec::new(),
    };
    // One batch first: it tells the run's length in epochs and the tiles' band count.
    run.request_train(1)?;
    let mut resume = resume;
    while !run.finished {
        let waiting = run.waiting_for(&inbox);
        let next = match inbox.next(Some(&waiting)) {
            Ok(next) => next,
            Err(e) => return Err(run.stopped_early(&format!("{e:#}"))),
        };
        match next {
            Next::Input { id, data } => {
                let batch = TileBatch::from_arrow(data.as_ref()).map_err(|e| {
                    eyre::eyre!("input `{id}` from `{}`: {e}", inbox.source_of(&id))
                })?;
                run.counts.count_in(&id, batch.len());
                match id.as_str() {
                    "lr" => {
                        if run.trainer.is_none() {
                            run.init_trainer(&batch, resume.take())?;
                        }
                        // A batch asked for again after a silence may come twice: the first wins.
                        if batch.batch_id >= run.step() {
                            run.queue.entry(batch.batch_id).or_insert(batch);
                        }
                    }
                    "lr_val" | "hr_val" => {
                        let val = run.val.as_mut().ok_or_else(|| {
                            eyre::eyre!("validation batch outside a validation pass")
                        })?;
                        val.total = Some(batch.batches_in_split);
                        let slot = if id == "lr_val" {
                            &mut val.lr
                        } else {
                            &mut val.hr
                        };
                        if batch.index_in_split >= val.done {
                            slot.insert(batch.index_in_split, batch);
                        }
                    }
                    other if other.starts_with("loss") => run.loss_reply(other, batch)?,
                    other => tracing::warn!(input = other, "ignoring unexpected input"),
                }
                run.drive()?;
            }
            Next::Closed { id } => {
                let why = format!("`{}` ended", inbox.source_of(&id));
                return Err(run.stopped_early(&why));
            }
            Next::PeerFailed { node, error } => {
                return Err(run.stopped_early(&format!("`{node}` failed ({error})")));
            }
            Next::Stop => return Err(run.stopped_early("the dataflow was stopped")),
            Next::Silence => run.ask_again()?,
        }
    }
    run.counts.write(&run.settings.run_dir)?;
    Ok(())
}

/// Loss inputs are named `loss` or `loss_<name>`; weights come from `loss_weights`.
fn loss_inputs(inputs: &[String], s: &Settings) -> eyre::Result<Vec<(String, f64)>> {
    let names: Vec<String> = inputs
        .iter()
        .filter(|i| i.starts_with("loss"))
        .cloned()
        .collect();
    if names.is_empty() {
        bail!("no loss stage is wired; add an input named loss_<name> (for example loss_vgg: vgg-loss/loss)");
    }
    let weights = s.loss_weight_map()?;
    for (w, _) in &weights {
        if !names
            .iter()
            .any(|n| n.trim_start_matches("loss").trim_start_matches('_') == w)
        {
            bail!(
                "loss_weights names `{w}`, but the wired loss inputs are {}",
                names.join(", ")
            );
        }
    }
    Ok(names
        .into_iter()
        .map(|n| {
            let short = n
                .trim_start_matches("loss")
                .trim_start_matches('_')
                .to_owned();
            let w = weights
                .iter()
                .find(|(k, _)| *k == short)
                .map(|(_, w)| *w)
                .unwrap_or(1.0);
            (n, w)
        })
        .collect())
}

impl Run {
    fn step(&self) -> u64 {
        self.trainer.as_ref().map(|t| t.step()).unwrap_or(0)
    }

    /// Asks for the next `n` training batches, never past the last step's.
    fn request_train(&mut self, n: u64) -> eyre::Result<()> {
        for _ in 0..n {
            if self.trainer.is_some() && self.next_request >= self.total_steps {
                break;
            }
            let k = self.next_request;
            send_array(&mut self.node, "request", Request::train(k).to_arrow())?;
            self.counts.count_out("request", 1);
            self.next_request += 1;
        }
        Ok(())
    }

    /// What the trainer waits for now, for the message of a wait that runs out.
    fn waiting_for(&self, inbox: &Inbox) -> String {
        if let Some(p) = &self.pending {
            let missing: Vec<String> = self
                .losses
                .iter()
                .filter(|(name, _)| !p.replies.contains_key(name))
                .map(|(name, _)| format!("`{}`", inbox.source_of(name)))
                .collect();
            return format!(
                "the loss of step {} from {}",
                self.step() + 1,
                missing.join(", ")
            );
        }
        if let Some(v) = &self.val {
            return format!(
                "validation batch {} of {} from `{}` and `{}`",
                v.done,
                v.total.map(|t| t.to_string()).unwrap_or("?".into()),
                inbox.source_of("lr_val"),
                inbox.source_of("hr_val")
            );
        }
        format!(
            "training batch {} from `{}`",
            self.step(),
            inbox.source_of("lr")
        )
    }

    /// Saves what the run has (a checkpoint at the last completed step) and says how to go on.
    fn stopped_early(&mut self, why: &str) -> eyre::Report {
        let saved = match self.save_progress("stopped early") {
            Ok(()) if self.saved_step > 0 => format!(
                "the last checkpoint is at step {}; continue with `resume: {}`",
                self.saved_step,
                self.settings.run_dir.display()
            ),
            Ok(()) => "no step was trained, nothing was saved".to_owned(),
            Err(e) => format!("saving a checkpoint failed too ({e:#})"),
        };
        let _ = self.counts.write(&self.settings.run_dir);
        eyre::eyre!(
            "stopped at step {} of {}: {why}; {saved}",
            self.step(),
            self.total_steps
        )
    }

    fn init_trainer(
        &mut self,
        first: &TileBatch,
        resume: Option<geosr::checkpoint::LoadedCheckpoint>,
    ) -> eyre::Result<()> {
        let start = self.start_step;
        let per_epoch = first.batches_in_split.max(1) as u64;
        if self.total_steps == 0 {
            self.total_steps = self
                .settings
                .epochs
                .map(|e| e as u64 * per_epoch)
                .unwrap_or(DEFAULT_STEPS as u64);
        }
        if self.val_every == 0 {
            // Once per epoch, but not more often than every 100 steps: small datasets have
            // epochs of a few steps and validation would then dominate the run.
            let epochs_per_val = 100u64.div_ceil(per_epoch);
            self.val_every = (per_epoch * epochs_per_val).min(self.total_steps);
        }
        let run_dir = &self.settings.run_dir;
        std::fs::create_dir_all(run_dir)
            .wrap_err_with(|| format!("creating {}", run_dir.display()))?;
        // A resumed run keeps the rows up to its checkpoint: what a killed run logged after that
        // is not this run's history.
        let resumed_at = resume.as_ref().map(|r| r.card.step);
        self.metrics = Some(MetricsLog::open(&run_dir.join("metrics.csv"), resumed_at)?);
        let cfg = UNetConfig::from_settings(&self.settings, first.bands);
        let device = self.settings.torch_device()?;
        let mut trainer = Trainer::new(&cfg, &self.settings, device, self.total_steps);
        if let Some(ckpt) = resume {
            trainer.resume(&ckpt)?;
            tracing::info!(from = %ckpt.dir.display(), step = start, "resumed");
        }
        tracing::info!(
            ?device,
            total_steps = self.total_steps,
            val_every = self.val_every,
            batches_per_epoch = per_epoch,
            bands = first.bands,
            parameters = trainer
                .vs
                .trainable_variables()
                .iter()
                .map(|t| t.numel())
                .sum::<usize>(),
            "training starts"
        );
        self.trainer = Some(trainer);
        self.first = Some(TileBatch {
            pixels: Vec::new(),
            tiles: Vec::new(),
            ..first.clone()
        });
        // Ask for exactly the batches the remaining steps use, `prefetch` ahead of training.
        self.request_train((self.settings.prefetch as u64).max(1))?;
        Ok(())
    }

    /// After a silence: sends again what has gone unanswered (the prediction out, with its
    /// training batch so the loss stages get the HR tiles again; the batches asked for), since
    /// dora may have lost it. Every stage drops a second answer.
    fn ask_again(&mut self) -> eyre::Result<()> {
        let mut again: Vec<Request> = Vec::new();
        if let Some(p) = &self.pending {
            let msg = p.msg.clone();
            again.push(Request::train(p.batch_id));
            let n = send_batch(&mut self.node, "pred", msg)?;
            self.counts.count_out("pred", n);
        } else if let Some(v) = &self.val {
            again.extend(
                (v.done..v.requested)
                    .filter(|i| !(v.lr.contains_key(i) && v.hr.contains_key(i)))
                    .map(|i| Request::val(i as u64)),
            );
        } else {
            again.extend(
                (self.step()..self.next_request)
                    .filter(|k| !self.queue.contains_key(k))
                    .map(Request::train),
            );
        }
        for r in again {
            send_array(&mut self.node, "request", r.to_arrow())?;
            self.counts.count_out("request", 1);
        }
        Ok(())
    }

    fn loss_reply(&mut self, input: &str, batch: TileBatch) -> eyre::Result<()> {
        // A second answer (the prediction was sent again after a silence) is dropped.
        let Some(pending) = self
            .pending
            .as_mut()
            .filter(|p| p.batch_id == batch.batch_id && !p.replies.contains_key(input))
        else {
            tracing::debug!(input, batch = batch.batch_id, "a second loss reply dropped");
            return Ok(());
        };
        let loss: f64 = batch
            .loss
            .as_ref()
            .ok_or_else(|| eyre::eyre!("`{input}` sent no loss column"))?
            .iter()
            .sum();
        let grad = batch.tensor(tch::Device::Cpu);
        if grad.size() != pending.pred.size() {
            bail!(
                "`{input}` sent a gradient of shape {} for a prediction of {}",
                geosr_torch::shape_text(&grad.size()),
                geosr_torch::shape_text(&pending.pred.size())
            );
        }
        pending.replies.insert(input.to_owned(), (loss, grad));
        Ok(())
    }

    /// Moves training or validation on as far as the messages received allow.
    fn drive(&mut self) -> eyre::Result<()> {
        loop {
            if self.finished {
                return Ok(());
            }
            if self.val.is_some() {
                if !self.drive_validation()? {
                    return Ok(());
                }
                continue;
            }
            if let Some(p) = &self.pending {
                if p.replies.len() < self.losses.len() {
                    return Ok(());
                }
                self.finish_step()?;
                continue;
            }
            if self.step() >= self.total_steps {
                // Resumed at or past the end: validate once and finish.
                self.start_validation()?;
                if self.val.is_none() {
                    return self.finish();
                }
                continue;
            }
            // Steps take their batches in order: batch `k` trains step `k + 1`.
            let Some(batch) = self.queue.remove(&self.step()) else {
                return Ok(());
            };
            self.start_step(batch)?;
        }
    }

    fn start_step(&mut self, batch: TileBatch) -> eyre::Result<()> {
        let trainer = self
            .trainer
            .as_ref()
            .expect("trainer exists once a batch arrived");
        self.epoch = batch.epoch;
        let pred = trainer.predict(&batch);
        let msg = batch.with_pixels(&pred.detach())?;
        self.pending = Some(Pending {
            batch_id: batch.batch_id,
            tiles: batch.len(),
            pred,
            msg: msg.clone(),
            replies: BTreeMap::new(),
        });
        let n = send_batch(&mut self.node, "pred", msg)?;
        self.counts.count_out("pred", n);
        self.request_train(1)?;
        Ok(())
    }

    fn finish_step(&mut self) -> eyre::Result<()> {
        let p = self.pending.take().expect("checked");
        let parts: Vec<(f64, Tensor)> = self
            .losses
            .iter()
            .map(|(name, w)| (*w, p.replies[name].1.shallow_clone()))
            .collect();
        let loss: f64 = self
            .losses
            .iter()
            .map(|(name, w)| w * p.replies[name].0)
            .sum();
        if !loss.is_finite() {
            bail!(
                "unet-train: the loss became {loss} at step {}; lower `lr`",
                self.step() + 1
            );
        }
        let grad = combine_grads(&parts);
        let trainer = self.trainer.as_mut().expect("exists");
        let lr = trainer.apply(&p.pred, &grad);
        let step = trainer.step();
        self.step_done_s.push(self.started.elapsed().as_secs_f64());
        self.loss_sum += loss;
        self.loss_n += 1;
        self.window_tiles += p.tiles;
        if step.is_multiple_of(10) || step == self.total_steps {
            let secs = self.window_start.elapsed().as_secs_f64();
            let rate = self.window_tiles as f64 / secs.max(1e-9);
            tracing::info!(
                step,
                of = self.total_steps,
                loss = format!("{:.5}", self.loss_sum / self.loss_n as f64),
                tiles_per_s = format!("{rate:.1}"),
                lr = format!("{lr:.2e}"),
                "progress"
            );
            self.write_row(step, None, lr)?;
            self.window_start = Instant::now();
            self.window_tiles = 0;
        }
        let due = step.is_multiple_of(self.val_every) || step == self.total_steps;
        if due {
            self.start_validation()?;
        }
        let every = self.settings.checkpoint_every as u64;
        if every > 0 && step.is_multiple_of(every) && step != self.total_steps {
            self.save(true, "periodic")?;
        }
        Ok(())
    }

    fn start_validation(&mut self) -> eyre::Result<()> {
        if self.settings.val_split_pct <= 0.0 {
            if self.step() >= self.total_steps {
                self.finish()?;
            }
            return Ok(());
        }
        let mut pass = ValPass::default();
        send_array(&mut self.node, "request", Request::val(0).to_arrow())?;
        self.counts.count_out("request", 1);
        pass.requested = 1;
        self.val = Some(pass);
        Ok(())
    }

    /// Returns whether progress was made.
    fn drive_validation(&mut self) -> eyre::Result<bool> {
        let trainer = self.trainer.as_ref().expect("exists");
        let pass = self.val.as_mut().expect("checked");
        let mut progressed = false;
        while pass.lr.contains_key(&pass.done) && pass.hr.contains_key(&pass.done) {
            let lr = pass.lr.remove(&pass.done).expect("checked");
            let hr = pass.hr.remove(&pass.done).expect("checked");
            trainer.validate(&lr, &hr, &mut pass.quality)?;
            pass.done += 1;
            progressed = true;
        }
        if let Some(total) = pass.total {
            let outstanding = pass.requested - pass.done;
            let room = (self.settings.prefetch.max(1)).saturating_sub(outstanding);
            let to_ask = room.min(total - pass.requested);
            for _ in 0..to_ask {
                send_array(
                    &mut self.node,
                    "request",
                    Request::val(pass.requested as u64).to_arrow(),
                )?;
                self.counts.count_out("request", 1);
                pass.requested += 1;
            }
            if pass.done == total {
                let q = self.val.take().expect("checked").quality;
                self.end_validation(q)?;
                return Ok(true);
            }
        }
        Ok(progressed)
    }

    fn end_validation(&mut self, q: Validation) -> eyre::Result<()> {
        let step = self.step();
        tracing::info!(
            step,
            val_psnr = format!("{:.3}", q.sr.psnr()),
            bicubic_psnr = format!("{:.3}", q.bicubic.psnr()),
            val_ssim = format!("{:.4}", q.sr.ssim()),
            bicubic_ssim = format!("{:.4}", q.bicubic.ssim()),
            tiles = q.sr.tiles,
            "validation"
        );
        self.last_val = Some(q);
        self.write_row(step, Some(q), f64::NAN)?;
        if step >= self.total_steps {
            self.finish()?;
        } else {
            self.save_progress("validated")?;
        }
        Ok(())
    }

    fn write_row(&mut self, step: u64, q: Option<Validation>, lr: f64) -> eyre::Result<()> {
        let loss = if self.loss_n > 0 {
            format!("{:.6}", self.loss_sum / self.loss_n as f64)
        } else {
            String::new()
        };
        let v =
            |x: Option<f64>, digits: usize| x.map(|x| format!("{x:.digits$}")).unwrap_or_default();
        let Some(metrics) = self.metrics.as_mut() else {
            return Ok(());
        };
        metrics.append(&format!(
            "{step},{},{loss},{},{},{},{},{},{:.1}",
            self.epoch,
            v(q.map(|q| q.sr.psnr()), 4),
            v(q.map(|q| q.sr.ssim()), 5),
            v(q.map(|q| q.bicubic.psnr()), 4),
            v(q.map(|q| q.bicubic.ssim()), 5),
            if lr.is_nan() {
                String::new()
            } else {
                format!("{lr:.3e}")
            },
            self.started.elapsed().as_secs_f64()
        ))?;
        if q.is_none() {
            self.loss_sum = 0.0;
            self.loss_n = 0;
        }
        Ok(())
    }

    fn finish(&mut self) -> eyre::Result<()> {
        self.save(true, "final")?;
        self.write_timing()?;
        self.finished = true;
        Ok(())
    }

    /// Training throughput of this process, steps after the first 10 (start-up, allocator and
    /// thread-pool warm-up) to the last, validation excluded when it only runs at the end.
    fn write_timing(&self) -> eyre::Result<()> {
        let t = &self.step_done_s;
        let skip = 10.min(t.len().saturating_sub(1));
        let (steps, secs) = (
            (t.len() - 1 - skip) as f64,
            t.last().copied().unwrap_or(0.0) - t.get(skip).copied().unwrap_or(0.0),
        );
        let body = serde_json::json!({
            "steps_timed": steps,
            "seconds": secs,
            "steps_per_s": if secs > 0.0 { steps / secs } else { f64::NAN },
            "batch_size": self.first.as_ref().map(|b| b.len()),
            "total_seconds": self.started.elapsed().as_secs_f64(),
        });
        geosr::atomic::write_atomic(
            &self.settings.run_dir.join("timing.json"),
            serde_json::to_string_pretty(&body)?.as_bytes(),
        )?;
        Ok(())
    }

    /// Saves a checkpoint when a step was trained since the last one.
    fn save_progress(&mut self, why: &str) -> eyre::Result<()> {
        if self.trainer.is_some() && self.step() > self.saved_step {
            self.save(false, why)?;
        }
        Ok(())
    }

    fn save(&mut self, keep: bool, why: &str) -> eyre::Result<()> {
        let trainer = self.trainer.as_ref().expect("a model exists");
        let mut card = self.card(trainer)?;
        let dir = write_checkpoint(
            &self.settings.run_dir,
            &mut card,
            |p| trainer.vs.save(p).torch(),
            |p| trainer.adam.save(p),
            keep,
        )?;
        // The inference graph's default engine reads the ONNX export beside the weights.
        geosr_torch::onnx::export_unet(
            trainer.net.config(),
            &trainer.vs.variables(),
            &self.settings.run_dir.join("model.onnx"),
        )?;
        // The curves picture follows every checkpoint; a failure to draw it never stops training.
        let run = &self.settings.run_dir;
        if let Err(e) =
            geosr::evaluate::plot_training_curves(&run.join("metrics.csv"), &run.join("curves.png"))
        {
            tracing::warn!(error = %e, "curves.png not drawn");
        }
        self.saved_step = card.step;
        tracing::info!(step = card.step, why, dir = %dir.display(), "checkpoint written");
        Ok(())
    }

    fn card(&self, trainer: &Trainer) -> eyre::Result<ModelCard> {
        let run = &self.settings.run_dir;
        let data: serde_json::Value = read_json(&run.join("data.json"))?;
        let first = self.first.as_ref().expect("a batch arrived");
        let norm = serde_json::from_value(data["normalisation"].clone())
            .wrap_err("data.json has no normalisation: was tile-ingest wired?")?;
        let rasters = data["rasters"].as_array().cloned().unwrap_or_default();
        let r0 = rasters.first().cloned().unwrap_or_default();
        let mut losses = Vec::new();
        for (name, w) in &self.losses {
            let stage = self.node.node_config().inputs.get(
                &dora_node_api::dora_core::config::DataId::from(name.clone()),
            );
            let source = stage.map(|s| s.mapping.to_string()).unwrap_or_default();
            losses.push(serde_json::json!({ "input": name, "weight": w, "from": source }));
        }
        // Attach each loss stage's own description, written by the stage at start-up.
        let stages = std::fs::read_dir(run.join("stages"))
            .map(|d| d.filter_map(|e| e.ok()).collect::<Vec<_>>())
            .unwrap_or_default();
        for e in stages {
            losses.push(read_json(&e.path())?);
        }
        let metrics = match self.last_val {
            Some(q) => serde_json::json!({
                "val_psnr": q.sr.psnr(), "val_ssim": q.sr.ssim(),
                "bicubic_psnr": q.bicubic.psnr(), "bicubic_ssim": q.bicubic.ssim(),
                "val_tiles": q.sr.tiles,
                "units": "normalised pixels; data range 1 = each band's 1st-99th percentile span",
            }),
            None => serde_json::Value::Null,
        };
        Ok(ModelCard {
            geosr_version: env!("CARGO_PKG_VERSION").into(),
            architecture: trainer.net.config().clone(),
            downsample_factor: self.settings.factor,
            bands: serde_json::from_value(r0["bands"].clone()).unwrap_or_default(),
            colour: first.colour.clone(),
            data_type: r0["data_type"].as_str().unwrap_or("").to_owned(),
            normalisation: norm,
            degradation: geosr::degrade::Degradation::from_settings(&self.settings),
            losses,
            provenance: data,
            metrics,
            step: trainer.step(),
            epoch: self.epoch,
            device: geosr_torch::device_name(trainer.device),
            weights_sha256: String::new(),
            optimizer_sha256: String::new(),
            written_unix_s: 0,
        })
    }
}

fn read_json(path: &Path) -> eyre::Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).wrap_err_with(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).wrap_err_with(|| format!("parsing {}", path.display()))
}
