//! The `unet-train` stage: asks `tile-ingest` for training batch after training batch (by
//! number, `prefetch` ahead), sends each prediction to the loss stages, sums the gradients they
//! return, steps Adam, validates, and writes checkpoints, the model card, `metrics.csv`,
//! `curves.png` and `timing.json`.
//!
//! Its parts, each on its own: [`LossWiring`] (which inputs are loss stages, with which
//! weights), [`TrainingBatches`] (the requests and the batches in step order),
//! [`ValidationPass`] (validation batches asked for with a credit window, LR and HR joined,
//! scored in index order), `geosr::metrics_log` and `geosr::card` (the card assembled from typed
//! records). [`run`] drives them from the events of the stage.
use crate::tensor::{device_name, shape_text, SettingsTorch, TileTensors, TorchResult};
use crate::train::{combine_grads, Trainer, Validation};
use dora_node_api::DoraNode;
use eyre::{bail, WrapErr};
use geosr::card::{CardMetrics, CardParts, Degradation, LossInput, ModelCard, UNetConfig};
use geosr::checkpoint::{latest_checkpoint, write_checkpoint, LoadedCheckpoint};
use geosr::flow::{CreditWindow, Join, Request, TileCounts};
use geosr::metrics_log::{MetricsLog, MetricsRow};
use geosr::node::{Inbox, Next};
use geosr::settings::{Settings, DEFAULT_STEPS};
use geosr::stage::{send_array, send_batch, StepTiming};
use geosr::tile::TileBatch;
use std::collections::BTreeMap;
use std::time::Instant;
use tch::Tensor;

/// The loss stages wired into the trainer: inputs named `loss` or `loss_<name>`, weighted by the
/// `loss_weights` setting (`<name>=w`; 1 when not named).
#[derive(Debug, Clone, PartialEq)]
pub struct LossWiring(pub Vec<LossInput>);

impl LossWiring {
    /// The loss inputs among `inputs` (input id → `node/output`).
    pub fn new(inputs: &BTreeMap<String, String>, s: &Settings) -> eyre::Result<Self> {
        let names: Vec<&String> = inputs.keys().filter(|i| i.starts_with("loss")).collect();
        if names.is_empty() {
            bail!("no loss stage is wired; add an input named loss_<name> (for example loss_vgg: {{source: vgg-loss/loss, queue_policy: backpressure}})");
        }
        let short = |n: &str| {
            n.trim_start_matches("loss")
                .trim_start_matches('_')
                .to_owned()
        };
        let weights = s.loss_weight_map()?;
        for (w, _) in &weights {
            if !names.iter().any(|n| short(n) == *w) {
                let wired: Vec<&str> = names.iter().map(|n| n.as_str()).collect();
                bail!(
                    "loss_weights names `{w}`, but the wired loss inputs are {}",
                    wired.join(", ")
                );
            }
        }
        Ok(LossWiring(
            names
                .into_iter()
                .map(|n| LossInput {
                    input: n.clone(),
                    weight: weights
                        .iter()
                        .find(|(k, _)| *k == short(n))
                        .map(|(_, w)| *w)
                        .unwrap_or(1.0),
                    from: inputs[n].clone(),
                })
                .collect(),
        ))
    }
}

/// The training batches: asked for by number from the step the run starts at, at most
/// `ahead` beyond the step being trained, and handed out in step order (batch `k` trains step
/// `k + 1`) whatever order they arrive in.
#[derive(Debug, Default)]
pub struct TrainingBatches {
    /// The next batch number to ask for.
    next: u64,
    /// Received and not yet trained on, by batch number.
    queue: BTreeMap<u64, TileBatch>,
}

impl TrainingBatches {
    pub fn starting_at(step: u64) -> Self {
        TrainingBatches {
            next: step,
            queue: BTreeMap::new(),
        }
    }

    /// The batch numbers to ask for now, at most `n` of them and none at or past `end`.
    pub fn to_request(&mut self, n: u64, end: Option<u64>) -> Vec<u64> {
        let stop = end.map_or(self.next + n, |e| e.min(self.next + n));
        let out: Vec<u64> = (self.next..stop.max(self.next)).collect();
        self.next = self.next.max(stop);
        out
    }

    /// Keeps a received batch (a second copy of one asked for again is dropped).
    pub fn receive(&mut self, step: u64, batch: TileBatch) {
        if batch.batch_id >= step {
            self.queue.entry(batch.batch_id).or_insert(batch);
        }
    }

    /// The batch of the step after `step`, if it is in.
    pub fn take(&mut self, step: u64) -> Option<TileBatch> {
        self.queue.remove(&step)
    }

    /// Batches asked for from `step` on and not in: to ask again after a silence.
    pub fn missing(&self, step: u64) -> Vec<u64> {
        (step..self.next)
            .filter(|k| !self.queue.contains_key(k))
            .collect()
    }
}

/// A validation pass: batches asked for with a credit window, each batch's LR and HR halves
/// joined, and the pairs scored in index order so the figures do not depend on timing.
pub struct ValidationPass {
    window: CreditWindow<(TileBatch, TileBatch)>,
    join: Join<TileBatch>,
    pub quality: Validation,
}

impl ValidationPass {
    pub fn new(credit: u64) -> Self {
        ValidationPass {
            window: CreditWindow::new(credit),
            join: Join::new(&["lr_val", "hr_val"], credit as usize + 2),
            quality: Validation::default(),
        }
    }

    /// The validation batches to ask for now.
    pub fn to_request(&mut self) -> Vec<u64> {
        self.window.to_request()
    }

    /// Takes a validation batch from input `lr_val` or `hr_val`.
    pub fn receive(&mut self, input: &str, batch: TileBatch) -> geosr::Result<()> {
        let (index, total) = (batch.index_in_split as u64, batch.batches_in_split as u64);
        if index < self.window.delivered() {
            return Ok(()); // a second answer to a batch asked for again
        }
        if let Some(mut pair) = self.join.insert(index, input, batch)? {
            let lr = pair.remove("lr_val").expect("joined");
            let hr = pair.remove("hr_val").expect("joined");
            self.window.receive(index, total, (lr, hr))?;
        }
        Ok(())
    }

    /// Scores the pairs that are next in order; returns whether any was.
    pub fn score_ready(&mut self, trainer: &Trainer) -> geosr::Result<bool> {
        let mut scored = false;
        while let Some((lr, hr)) = self.window.next_ready() {
            trainer.validate(&lr, &hr, &mut self.quality)?;
            scored = true;
        }
        Ok(scored)
    }

    pub fn done(&self) -> bool {
        self.window.done()
    }

    /// The batches asked for and not yet in.
    pub fn missing(&self) -> Vec<u64> {
        self.window.missing()
    }

    /// `i of n` for messages.
    pub fn progress(&self) -> String {
        self.window.progress()
    }
}

/// One step whose prediction is out with the loss stages.
struct Pending {
    batch_id: u64,
    tiles: usize,
    pred: Tensor,
    /// The message sent, to send again if no reply comes.
    msg: TileBatch,
    replies: BTreeMap<String, (f64, Tensor)>,
}

/// The mean training loss, the tile rate and the largest gradient norm since the last progress
/// line, and the steps whose gradients were clipped since the run (or its resumption) began.
struct Progress {
    loss_sum: f64,
    loss_n: u64,
    since: Instant,
    tiles: usize,
    grad_norm_max: f64,
    clipped: u64,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            loss_sum: 0.0,
            loss_n: 0,
            since: Instant::now(),
            tiles: 0,
            grad_norm_max: 0.0,
            clipped: 0,
        }
    }
}

/// Fewer training chips than this make a run from random weights learn little: the trainer
/// warns and suggests `init_from`.
const TINY_TRAINING_SET: u64 = 100;

/// The trainer's state between events.
struct Run {
    settings: Settings,
    node: DoraNode,
    losses: LossWiring,
    trainer: Option<Trainer>,
    /// The first batch's header (bands, colour, batch size).
    first: Option<TileBatch>,
    total_steps: u64,
    val_every: u64,
    batches: TrainingBatches,
    pending: Option<Pending>,
    val: Option<ValidationPass>,
    counts: TileCounts,
    /// Opened when the first batch arrives, so a run that fails to start changes nothing.
    metrics: Option<MetricsLog>,
    /// The step the run resumed from (0 for a fresh run).
    start_step: u64,
    /// The step of the last checkpoint on disk (the resumed one at first).
    saved_step: u64,
    progress: Progress,
    last_val: Option<Validation>,
    timing: StepTiming,
    epoch: u32,
    finished: bool,
    /// The run whose weights this one started from (kept through resumes).
    init_from: Option<std::path::PathBuf>,
}

/// The stage: trains until the last step, or stops with an error after saving what it has.
pub fn run(node: DoraNode, mut inbox: Inbox, settings: Settings) -> eyre::Result<()> {
    let sources: BTreeMap<String, String> = inbox
        .input_ids()
        .into_iter()
        .map(|i| {
            let from = inbox.mapping_of(&i);
            (i, from)
        })
        .collect();
    let losses = LossWiring::new(&sources, &settings)?;
    let mut resume = match &settings.resume {
        Some(dir) => Some(latest_checkpoint(dir).wrap_err("resume")?),
        None => None,
    };
    let start_step = resume.as_ref().map(|r| r.card.step).unwrap_or(0);
    tracing::info!(losses = ?losses.0.iter().map(|l| &l.input).collect::<Vec<_>>(), run_dir = %settings.run_dir.display(), "trainer ready");
    let mut run = Run {
        total_steps: settings.steps.map(u64::from).unwrap_or(0),
        val_every: settings.val_every.map(u64::from).unwrap_or(0),
        settings,
        node,
        losses,
        trainer: None,
        first: None,
        batches: TrainingBatches::starting_at(start_step),
        pending: None,
        val: None,
        counts: TileCounts::new("unet-train"),
        metrics: None,
        start_step,
        saved_step: start_step,
        progress: Progress::default(),
        last_val: None,
        timing: StepTiming::default(),
        epoch: 0,
        finished: false,
        init_from: None,
    };
    // One batch first: it tells the run's length in epochs and the tiles' band count.
    run.request_train(1)?;
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
                        let step = run.step();
                        run.batches.receive(step, batch);
                    }
                    "lr_val" | "hr_val" => {
                        let val = run.val.as_mut().ok_or_else(|| {
                            eyre::eyre!("validation batch outside a validation pass")
                        })?;
                        val.receive(&id, batch)?;
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

impl Run {
    fn step(&self) -> u64 {
        self.trainer.as_ref().map(|t| t.step()).unwrap_or(0)
    }

    fn send_request(&mut self, r: Request) -> eyre::Result<()> {
        send_array(&mut self.node, "request", r.to_arrow())?;
        self.counts.count_out("request", 1);
        Ok(())
    }

    /// Asks for the next `n` training batches, never past the last step's.
    fn request_train(&mut self, n: u64) -> eyre::Result<()> {
        let end = self.trainer.is_some().then_some(self.total_steps);
        for k in self.batches.to_request(n, end) {
            self.send_request(Request::train(k))?;
        }
        Ok(())
    }

    /// What the trainer waits for now, for the message of a wait that runs out.
    fn waiting_for(&self, inbox: &Inbox) -> String {
        if let Some(p) = &self.pending {
            let missing: Vec<String> = self
                .losses
                .0
                .iter()
                .filter(|l| !p.replies.contains_key(&l.input))
                .map(|l| format!("`{}`", inbox.source_of(&l.input)))
                .collect();
            return format!(
                "the loss of step {} from {}",
                self.step() + 1,
                missing.join(", ")
            );
        }
        if let Some(v) = &self.val {
            return format!(
                "validation batch {} from `{}` and `{}`",
                v.progress(),
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

    /// After a silence: sends again what has gone unanswered (the prediction out, with its
    /// training batch so the loss stages get the HR tiles again; the batches asked for), since
    /// dora may have lost it. Every stage drops a second answer.
    fn ask_again(&mut self) -> eyre::Result<()> {
        let again: Vec<Request> = if let Some(p) = &self.pending {
            let msg = p.msg.clone();
            let k = p.batch_id;
            let n = send_batch(&mut self.node, "pred", msg)?;
            self.counts.count_out("pred", n);
            vec![Request::train(k)]
        } else if let Some(v) = &self.val {
            v.missing().into_iter().map(Request::val).collect()
        } else {
            let step = self.step();
            self.batches
                .missing(step)
                .into_iter()
                .map(Request::train)
                .collect()
        };
        for r in again {
            self.send_request(r)?;
        }
        Ok(())
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
        resume: Option<LoadedCheckpoint>,
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
            self.init_from = ckpt.card.init_from.clone();
        } else if let Some(dir) = &self.settings.init_from {
            let ckpt = latest_checkpoint(dir).wrap_err("init_from")?;
            trainer.init_from(&ckpt, cfg.factor as u32)?;
            tracing::info!(from = %ckpt.dir.display(), "starting from the weights of an earlier run");
            self.init_from = Some(ckpt.dir.clone());
        }
        // A few dozen chips are too few to learn SR from scratch: say so (the warning reaches the
        // dora CLI's output).
        let train_chips = per_epoch * first.len() as u64;
        if train_chips < TINY_TRAINING_SET && self.init_from.is_none() {
            let msg = format!(
                "the training set is tiny ({train_chips} chips an epoch): from random weights expect little over bicubic; start from a trained model with `init_from: <run>`"
            );
            tracing::warn!("{msg}");
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
        // Without its pixels; its tile list stays, as the batch size of `timing.json`.
        self.first = Some(TileBatch {
            pixels: Vec::new(),
            ..first.clone()
        });
        // Ask for exactly the batches the remaining steps use, `prefetch` ahead of training.
        self.request_train((self.settings.prefetch as u64).max(1))?;
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
                shape_text(&grad.size()),
                shape_text(&pending.pred.size())
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
                if p.replies.len() < self.losses.0.len() {
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
            let step = self.step();
            let Some(batch) = self.batches.take(step) else {
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
            .0
            .iter()
            .map(|l| (l.weight, p.replies[&l.input].1.shallow_clone()))
            .collect();
        let loss: f64 = self
            .losses
            .0
            .iter()
            .map(|l| l.weight * p.replies[&l.input].0)
            .sum();
        if !loss.is_finite() {
            bail!(
                "the loss became {loss} at step {}; lower `lr`",
                self.step() + 1
            );
        }
        let grad = combine_grads(&parts);
        let trainer = self.trainer.as_mut().expect("exists");
        let (lr, taken) = trainer.apply(&p.pred, &grad);
        let step = trainer.step();
        self.timing.step_done();
        self.progress.loss_sum += loss;
        self.progress.loss_n += 1;
        self.progress.tiles += p.tiles;
        self.progress.grad_norm_max = self.progress.grad_norm_max.max(taken.grad_norm);
        if taken.clipped {
            self.progress.clipped += 1;
            tracing::debug!(step, grad_norm = taken.grad_norm, "gradients clipped");
        }
        if step.is_multiple_of(10) || step == self.total_steps {
            let secs = self.progress.since.elapsed().as_secs_f64();
            let rate = self.progress.tiles as f64 / secs.max(1e-9);
            tracing::info!(
                step,
                of = self.total_steps,
                loss = format!(
                    "{:.5}",
                    self.progress.loss_sum / self.progress.loss_n as f64
                ),
                tiles_per_s = format!("{rate:.1}"),
                lr = format!("{lr:.2e}"),
                grad_norm_max = format!("{:.3}", self.progress.grad_norm_max),
                clipped_steps = self.progress.clipped,
                "progress"
            );
            self.write_row(step, None, Some(lr))?;
            self.progress.since = Instant::now();
            self.progress.tiles = 0;
            self.progress.grad_norm_max = 0.0;
        }
        if step.is_multiple_of(self.val_every) || step == self.total_steps {
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
        let mut pass = ValidationPass::new((self.settings.prefetch as u64).max(1));
        for i in pass.to_request() {
            self.send_request(Request::val(i))?;
        }
        self.val = Some(pass);
        Ok(())
    }

    /// Returns whether progress was made.
    fn drive_validation(&mut self) -> eyre::Result<bool> {
        let trainer = self.trainer.as_ref().expect("exists");
        let pass = self.val.as_mut().expect("checked");
        let progressed = pass.score_ready(trainer)?;
        let more = pass.to_request();
        for i in more {
            self.send_request(Request::val(i))?;
        }
        let pass = self.val.as_ref().expect("checked");
        if pass.done() {
            let q = self.val.take().expect("checked").quality;
            self.end_validation(q)?;
            return Ok(true);
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
        self.write_row(step, Some(q), None)?;
        if step >= self.total_steps {
            self.finish()?;
        } else {
            self.save_progress("validated")?;
        }
        Ok(())
    }

    fn write_row(&mut self, step: u64, q: Option<Validation>, lr: Option<f64>) -> eyre::Result<()> {
        let p = &mut self.progress;
        let row = MetricsRow {
            step,
            epoch: self.epoch,
            train_loss: (p.loss_n > 0).then(|| p.loss_sum / p.loss_n as f64),
            validation: q.map(|q| [q.sr.psnr(), q.sr.ssim(), q.bicubic.psnr(), q.bicubic.ssim()]),
            lr,
            elapsed_s: self.timing.elapsed_s(),
        };
        if let Some(metrics) = self.metrics.as_mut() {
            metrics.append(&row.csv())?;
            if q.is_none() {
                p.loss_sum = 0.0;
                p.loss_n = 0;
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> eyre::Result<()> {
        self.save(true, "final")?;
        self.write_timing()?;
        self.finished = true;
        Ok(())
    }

    /// Training throughput of this process ([`StepTiming`]), validation excluded when it only
    /// runs at the end.
    fn write_timing(&self) -> eyre::Result<()> {
        let (steps, secs) = self.timing.timed();
        let body = serde_json::json!({
            "steps_timed": steps as f64,
            "seconds": secs,
            "steps_per_s": self.timing.steps_per_s(),
            "batch_size": self.first.as_ref().map(|b| b.len()),
            "total_seconds": self.timing.elapsed_s(),
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
        let run = &self.settings.run_dir;
        let parts = CardParts {
            config: trainer.net.config().clone(),
            degradation: Degradation::from_settings(&self.settings),
            colour: self.first.as_ref().expect("a batch arrived").colour.clone(),
            metrics: self.last_val.map(|q| CardMetrics {
                val_psnr: q.sr.psnr(),
                val_ssim: q.sr.ssim(),
                bicubic_psnr: q.bicubic.psnr(),
                bicubic_ssim: q.bicubic.ssim(),
                val_tiles: q.sr.tiles,
            }),
            step: trainer.step(),
            epoch: self.epoch,
            device: device_name(trainer.device),
            init_from: self.init_from.clone(),
        };
        let mut card = ModelCard::assemble(run, parts, &self.losses.0)?;
        let dir = write_checkpoint(
            run,
            &mut card,
            |p| trainer.vs.save(p).torch(),
            |p| trainer.adam.save(p),
            keep,
        )?;
        // The ONNX export beside the weights, for `engine: ort` and other tools.
        crate::onnx::export_unet(
            trainer.net.config(),
            &trainer.vs.variables(),
            &run.join("model.onnx"),
        )?;
        // The curves picture follows every checkpoint; a failure to draw it never stops training.
        if let Err(e) =
            geosr::plot::training_curves(&run.join("metrics.csv"), &run.join("curves.png"))
        {
            tracing::warn!(error = %e, "curves.png not drawn");
        }
        self.saved_step = card.step;
        tracing::info!(step = card.step, why, dir = %dir.display(), "checkpoint written");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_batches_come_in_step_order_and_never_past_the_end() {
        let mut b = TrainingBatches::starting_at(4);
        assert_eq!(b.to_request(1, None), vec![4]);
        assert_eq!(b.to_request(3, Some(6)), vec![5]);
        let mut late = TileBatch::example(1, 1, 2, 2);
        late.batch_id = 5;
        b.receive(4, late);
        assert_eq!(b.take(4), None, "batch 4 is not in yet");
        assert_eq!(b.missing(4), vec![4]);
        let mut first = TileBatch::example(1, 1, 2, 2);
        first.batch_id = 4;
        b.receive(4, first.clone());
        b.receive(4, first);
        assert_eq!(b.take(4).map(|t| t.batch_id), Some(4));
        assert_eq!(b.take(5).map(|t| t.batch_id), Some(5));
        assert!(b.missing(6).is_empty());
    }

    #[test]
    fn loss_wiring_takes_weights_by_name() {
        let inputs: BTreeMap<String, String> = [
            ("lr", "degrade/lr"),
            ("loss_vgg", "vgg-loss/loss"),
            ("loss_pixel", "pixel-loss/loss"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let s = Settings {
            loss_weights: "pixel=0.5".into(),
            ..Settings::default()
        };
        let w = LossWiring::new(&inputs, &s).unwrap();
        assert_eq!(
            w.0.iter()
                .map(|l| (l.input.as_str(), l.weight, l.from.as_str()))
                .collect::<Vec<_>>(),
            [
                ("loss_pixel", 0.5, "pixel-loss/loss"),
                ("loss_vgg", 1.0, "vgg-loss/loss")
            ]
        );
        let bad = Settings {
            loss_weights: "ssim=1".into(),
            ..Settings::default()
        };
        let err = LossWiring::new(&inputs, &bad).unwrap_err().to_string();
        assert!(err.contains("`ssim`"), "{err}");
    }
}
