//! The GPU proof: geosr's own training step (U-Net, perceptual loss, gradient hand-over, Adam)
//! and inference on a CUDA device, checked against the CPU of the same host and timed.
//!
//! `scripts/gpu-kit` packs it with its data (a normalised crop of the demo scene and only the
//! VGG-16 layers the loss uses); `scripts/gpu-proof` runs it on the GPU host beside the PyTorch
//! eager reference (`scripts/torch-reference.py --kit`) and writes one table. Without CUDA every
//! CUDA measurement is reported as skipped, with the reason, and the CPU half still runs.
//!
//! Chips are cut from the crop at seeded positions and degraded with libtorch's antialiased
//! bilinear resize, as the PyTorch reference does, so that both train on the same kind of data.
use crate::loss::{loss_and_grad, LossFn, PerceptualLoss};
use crate::tensor::{cuda_device, device_name};
use crate::train::Trainer;
use crate::unet::{UNet, UNetConfig};
use geosr::error::{Error, Result};
use geosr::settings::Settings;
use geosr::stage::StepTiming;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// The crop of the kit: one tensor `hr`, bands × rows × columns, each band scaled so that its
/// 1st and 99th percentiles are 0 and 1 (as `scripts/torch-reference.py` scales the demo crop).
pub const CROP_FILE: &str = "crop.safetensors";
/// The VGG-16 convolutions up to `relu2_2`, in torchvision's names.
pub const VGG_FILE: &str = "vgg16-relu2_2.safetensors";
/// The demo crop's bands, as the loss needs them to find red, green and blue.
const COLOUR: &str = "blue,green,red";

/// One network and batch size to train.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ProofConfig {
    pub name: String,
    pub batch: i64,
    pub hr_chip: i64,
    pub factor: i64,
    pub depth: i64,
    pub width: i64,
}

impl ProofConfig {
    /// The demo's network, batch and chips (the default settings).
    pub fn demo() -> Self {
        let s = Settings::default();
        ProofConfig {
            name: "demo".into(),
            batch: s.batch_size as i64,
            hr_chip: s.chip_size as i64,
            factor: s.factor as i64,
            depth: s.unet_depth as i64,
            width: s.unet_width as i64,
        }
    }

    /// A size that keeps a GPU busy: batch 64, 256-pixel HR chips, a deeper and wider U-Net.
    pub fn gpu_sized() -> Self {
        let demo = Self::demo();
        ProofConfig {
            name: "gpu-sized".into(),
            batch: 64,
            hr_chip: 256,
            depth: demo.depth + 1,
            width: demo.width * 2,
            ..demo
        }
    }

    fn settings(&self, vgg: &Path) -> Settings {
        Settings {
            batch_size: self.batch as u32,
            chip_size: self.hr_chip as u32,
            factor: self.factor as u32,
            unet_depth: self.depth as u32,
            unet_width: self.width as u32,
            vgg_weights: vgg.to_path_buf(),
            // The PyTorch reference is the plain U-Net.
            consistency_layer: false,
            ..Settings::default()
        }
    }

    fn unet(&self, bands: i64) -> UNetConfig {
        UNetConfig::from_settings(&self.settings(Path::new("")), bands as usize)
    }

    /// Parameters of this configuration's U-Net.
    pub fn parameters(&self, bands: i64) -> i64 {
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let _net = UNet::new(&vs.root(), &self.unet(bands));
        vs.trainable_variables()
            .iter()
            .map(Tensor::numel)
            .sum::<usize>() as i64
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct ProofOptions {
    /// The folder `scripts/gpu-kit` packed ([`CROP_FILE`], [`VGG_FILE`]).
    pub kit: PathBuf,
    /// Steps of the demo configuration on CUDA (the loss must fall over them).
    pub train_steps: u64,
    /// Steps of the GPU-sized configuration on CUDA.
    pub large_steps: u64,
    /// Steps of the demo configuration on the CPU (timing, and the learning check without CUDA).
    pub cpu_steps: u64,
    /// First steps run on both devices from the same weights and batches.
    pub parity_steps: u64,
    /// Largest relative difference allowed between the CPU's and CUDA's losses in those steps.
    pub parity_tolerance: f64,
    /// Inference: LR tiles per batch, their edge in pixels, timed batches.
    pub infer_batch: i64,
    pub infer_tile: i64,
    pub infer_repeats: usize,
    /// The configurations timed on CUDA.
    pub configs: Vec<ProofConfig>,
}

impl ProofOptions {
    pub fn new(kit: impl Into<PathBuf>) -> Self {
        ProofOptions {
            kit: kit.into(),
            train_steps: 300,
            large_steps: 60,
            cpu_steps: 30,
            parity_steps: 5,
            parity_tolerance: 1e-2,
            infer_batch: 16,
            infer_tile: 128,
            infer_repeats: 10,
            configs: vec![ProofConfig::demo(), ProofConfig::gpu_sized()],
        }
    }

    /// What the PyTorch reference must train to be compared: the configurations and steps.
    pub fn plan(&self) -> serde_json::Value {
        serde_json::json!({
            "configs": self.configs,
            "train_steps": self.train_steps,
            "large_steps": self.large_steps,
        })
    }
}

/// One pass/fail check with what was measured.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    /// `None` when skipped.
    pub passed: Option<bool>,
    pub detail: String,
}

/// Training speed of one configuration on one device.
#[derive(Debug, Clone, Serialize)]
pub struct TrainTiming {
    pub config: ProofConfig,
    pub parameters: i64,
    pub device: String,
    pub steps: u64,
    /// Steps after the first 10 per second, each step ending with the loss read back.
    pub steps_per_s: f64,
    pub first_loss: f64,
    pub last_loss: f64,
}

/// Inference speed on one device.
#[derive(Debug, Clone, Serialize)]
pub struct InferTiming {
    pub device: String,
    /// Output megapixels per second, host memory to host memory.
    pub mp_per_s: f64,
    pub batch: i64,
    pub lr_tile: i64,
}

/// Everything the proof measured.
#[derive(Debug, Clone, Serialize)]
pub struct ProofReport {
    /// Why CUDA was not used, when it was not.
    pub cuda_skipped: Option<String>,
    pub cpu_threads: i32,
    pub checks: Vec<Check>,
    pub training: Vec<TrainTiming>,
    pub inference: Vec<InferTiming>,
}

/// Reads the kit's crop.
pub fn load_crop(kit: &Path) -> Result<Tensor> {
    let path = kit.join(CROP_FILE);
    if !path.is_file() {
        return Err(Error::weights(
            &path,
            "not found; `scripts/gpu-kit` packs it beside the binary",
        ));
    }
    let tensors = Tensor::read_safetensors(&path)
        .map_err(|e| Error::weights_caused(&path, "not a readable safetensors file", e))?;
    let (_, crop) = tensors
        .into_iter()
        .find(|(n, _)| n == "hr")
        .ok_or_else(|| Error::weights(&path, "has no tensor `hr`"))?;
    if crop.dim() != 3 || crop.size()[0] != 3 {
        return Err(Error::weights(
            &path,
            format!(
                "`hr` is {}, not 3 × rows × columns",
                crate::shape_text(&crop.size())
            ),
        ));
    }
    Ok(crop.to_kind(Kind::Float))
}

/// HR chips cut from the crop at seeded positions, kept on `device`.
pub struct ChipPool {
    chips: Tensor,
    state: u64,
}

impl ChipPool {
    pub fn new(crop: &Tensor, chip: i64, count: i64, seed: u64, device: Device) -> Result<Self> {
        let (rows, cols) = (crop.size()[1], crop.size()[2]);
        if rows < chip || cols < chip {
            return Err(Error::Contract(format!(
                "the crop ({rows}×{cols}) is smaller than a {chip}-pixel chip"
            )));
        }
        let mut state = seed;
        let chips: Vec<Tensor> = (0..count)
            .map(|_| {
                let y = (splitmix(&mut state) % (rows - chip + 1) as u64) as i64;
                let x = (splitmix(&mut state) % (cols - chip + 1) as u64) as i64;
                crop.narrow(1, y, chip).narrow(2, x, chip)
            })
            .collect();
        Ok(ChipPool {
            chips: Tensor::stack(&chips, 0).to_device(device),
            state,
        })
    }

    /// `n` chips drawn with replacement.
    pub fn batch(&mut self, n: i64) -> Tensor {
        let count = self.chips.size()[0] as u64;
        let idx: Vec<i64> = (0..n)
            .map(|_| (splitmix(&mut self.state) % count) as i64)
            .collect();
        let idx = Tensor::from_slice(&idx).to_device(self.chips.device());
        self.chips.index_select(0, &idx)
    }
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Antialiased bilinear reduction by `factor`.
pub fn degrade(hr: &Tensor, factor: i64) -> Tensor {
    let (h, w) = (hr.size()[2], hr.size()[3]);
    let scale = 1.0 / factor as f64;
    hr.internal_upsample_bilinear2d_aa([h / factor, w / factor], false, scale, scale)
}

/// A trainer and its loss on one device.
struct Run {
    trainer: Trainer,
    loss: PerceptualLoss,
    factor: i64,
}

impl Run {
    fn new(cfg: &ProofConfig, kit: &Path, device: Device, total_steps: u64) -> Result<Self> {
        let s = cfg.settings(&kit.join(VGG_FILE));
        Ok(Run {
            trainer: Trainer::new(&cfg.unet(3), &s, device, total_steps),
            loss: PerceptualLoss::new(&s, device)?,
            factor: cfg.factor,
        })
    }

    /// One training step as the dataflow takes it: predict, loss and ∂loss/∂pred from the loss,
    /// back-propagate through the U-Net, Adam. Returns the loss.
    fn step(&mut self, hr: &Tensor) -> Result<f64> {
        let device = self.trainer.device;
        let hr = hr.to_device(device);
        let lr = degrade(&hr, self.factor);
        let pred = self.trainer.net.forward(&lr);
        let (value, _, grad) = loss_and_grad(&self.loss, &pred.detach(), &hr, COLOUR)?;
        self.trainer.apply(&pred, &grad);
        Ok(value)
    }

    /// The loss on a fixed batch, without training.
    fn probe(&self, hr: &Tensor) -> Result<f64> {
        let hr = hr.to_device(self.trainer.device);
        tch::no_grad(|| {
            let pred = self.trainer.net.forward(&degrade(&hr, self.factor));
            let per_tile = self.loss.per_tile(&pred, &hr, COLOUR)?;
            Ok(per_tile.mean(Kind::Float).double_value(&[]))
        })
    }

    fn train(
        &mut self,
        pool: &mut ChipPool,
        batch: i64,
        steps: u64,
    ) -> Result<(StepTiming, Vec<f64>)> {
        let mut timing = StepTiming::default();
        let mut losses = Vec::with_capacity(steps as usize);
        for _ in 0..steps {
            losses.push(self.step(&pool.batch(batch))?);
            timing.step_done();
        }
        Ok((timing, losses))
    }
}

/// Runs the proof: on CUDA when libtorch finds a device, with the CPU of the same host as the
/// reference; without CUDA, the CPU half alone.
pub fn run_proof(opts: &ProofOptions) -> Result<ProofReport> {
    // First: libtorch keeps its first answer about CUDA.
    let cuda = cuda_device();
    let crop = load_crop(&opts.kit)?;
    let demo = opts
        .configs
        .first()
        .cloned()
        .unwrap_or_else(ProofConfig::demo);
    let mut report = ProofReport {
        cuda_skipped: cuda.as_ref().err().cloned(),
        cpu_threads: tch::get_num_threads(),
        checks: Vec::new(),
        training: Vec::new(),
        inference: Vec::new(),
    };
    let probe = ChipPool::new(&crop, demo.hr_chip, demo.batch, 7, Device::Cpu)?.chips;

    // 1. The first steps on both devices from the same weights and batches.
    match cuda {
        Ok(gpu) => report.checks.push(parity(opts, &demo, &crop, gpu)?),
        Err(ref why) => report.checks.push(Check {
            name: "first steps, CUDA against CPU".into(),
            passed: None,
            detail: format!("skipped: {why}"),
        }),
    }

    // 2. Learning and speed of the demo configuration; the GPU-sized one on CUDA only.
    let main_device = cuda.clone().unwrap_or(Device::Cpu);
    let steps = if cuda.is_ok() {
        opts.train_steps
    } else {
        opts.cpu_steps
    };
    let mut pool = ChipPool::new(&crop, demo.hr_chip, demo.batch * 20, 1, main_device)?;
    let mut run = Run::new(&demo, &opts.kit, main_device, steps)?;
    let before = run.probe(&probe)?;
    let (timing, losses) = run.train(&mut pool, demo.batch, steps)?;
    let after = run.probe(&probe)?;
    report.checks.push(Check {
        name: format!(
            "loss falls ({} steps on {})",
            steps,
            device_name(main_device)
        ),
        passed: Some(after < before),
        detail: format!(
            "loss on a fixed batch {before:.5} before, {after:.5} after ({:+.1} %)",
            100.0 * (after - before) / before
        ),
    });
    report
        .training
        .push(timing_row(&demo, main_device, steps, &timing, &losses));
    if cuda.is_ok() {
        // The CPU figure of the same host, for the ratio.
        let mut cpu_pool = ChipPool::new(&crop, demo.hr_chip, demo.batch * 20, 1, Device::Cpu)?;
        let mut cpu_run = Run::new(&demo, &opts.kit, Device::Cpu, opts.cpu_steps)?;
        let (t, l) = cpu_run.train(&mut cpu_pool, demo.batch, opts.cpu_steps)?;
        report
            .training
            .push(timing_row(&demo, Device::Cpu, opts.cpu_steps, &t, &l));
        for cfg in opts.configs.iter().skip(1) {
            let mut pool = ChipPool::new(&crop, cfg.hr_chip, cfg.batch * 8, 2, main_device)?;
            let mut big = Run::new(cfg, &opts.kit, main_device, opts.large_steps)?;
            let (t, l) = big.train(&mut pool, cfg.batch, opts.large_steps)?;
            report
                .training
                .push(timing_row(cfg, main_device, opts.large_steps, &t, &l));
        }
    }

    // 3. Inference with the trained demo network, host memory to host memory.
    let lr = ChipPool::new(&crop, opts.infer_tile, opts.infer_batch, 3, Device::Cpu)?.chips;
    let out_mp = (opts.infer_batch * (opts.infer_tile * demo.factor).pow(2)) as f64 / 1e6;
    let net = &run.trainer.net;
    let cpu_repeats = opts.infer_repeats.div_ceil(5);
    let repeats = if cuda.is_ok() {
        opts.infer_repeats
    } else {
        cpu_repeats
    };
    let (mp_s, out_main) = time_inference(net, &lr, main_device, repeats, out_mp);
    report.inference.push(InferTiming {
        device: device_name(main_device),
        mp_per_s: mp_s,
        batch: opts.infer_batch,
        lr_tile: opts.infer_tile,
    });
    if cuda.is_ok() {
        run.trainer.vs.set_device(Device::Cpu);
        let (cpu_mp_s, out_cpu) =
            time_inference(&run.trainer.net, &lr, Device::Cpu, cpu_repeats, out_mp);
        report.inference.push(InferTiming {
            device: "cpu".into(),
            mp_per_s: cpu_mp_s,
            batch: opts.infer_batch,
            lr_tile: opts.infer_tile,
        });
        let diff = (&out_main - &out_cpu).abs().max().double_value(&[]);
        report.checks.push(Check {
            name: "inference, CUDA against CPU".into(),
            passed: Some(diff <= 1e-2),
            detail: format!(
                "largest difference {diff:.2e} (normalised units, a band's 1st–99th percentile span is 1; allowed 1e-2)"
            ),
        });
    } else {
        report.checks.push(Check {
            name: "inference, CUDA against CPU".into(),
            passed: None,
            detail: "skipped: no CUDA".into(),
        });
    }
    Ok(report)
}

fn timing_row(
    cfg: &ProofConfig,
    device: Device,
    steps: u64,
    timing: &StepTiming,
    losses: &[f64],
) -> TrainTiming {
    TrainTiming {
        config: cfg.clone(),
        parameters: cfg.parameters(3),
        device: device_name(device),
        steps,
        steps_per_s: timing.steps_per_s(),
        first_loss: losses.first().copied().unwrap_or(f64::NAN),
        last_loss: losses.last().copied().unwrap_or(f64::NAN),
    }
}

/// The first `parity_steps` on the CPU and on `gpu`, from the same seed and batches.
fn parity(opts: &ProofOptions, cfg: &ProofConfig, crop: &Tensor, gpu: Device) -> Result<Check> {
    let mut pool = ChipPool::new(crop, cfg.hr_chip, cfg.batch * 4, 11, Device::Cpu)?;
    let batches: Vec<Tensor> = (0..opts.parity_steps)
        .map(|_| pool.batch(cfg.batch))
        .collect();
    let mut losses = Vec::new();
    for device in [Device::Cpu, gpu] {
        let mut run = Run::new(cfg, &opts.kit, device, opts.parity_steps)?;
        let l: Vec<f64> = batches.iter().map(|b| run.step(b)).collect::<Result<_>>()?;
        losses.push(l);
    }
    let worst = losses[0]
        .iter()
        .zip(&losses[1])
        .map(|(c, g)| (c - g).abs() / c.abs().max(1e-12))
        .fold(0.0, f64::max);
    Ok(Check {
        name: format!("first {} steps, CUDA against CPU", opts.parity_steps),
        passed: Some(worst <= opts.parity_tolerance),
        detail: format!(
            "largest relative loss difference {worst:.2e} (allowed {:.0e}; cuDNN convolutions use TF32 by default); CPU {:?}, CUDA {:?}",
            opts.parity_tolerance,
            losses[0].iter().map(|v| format!("{v:.6}")).collect::<Vec<_>>(),
            losses[1].iter().map(|v| format!("{v:.6}")).collect::<Vec<_>>()
        ),
    })
}

/// Output MP/s of `net` on `device` (after two untimed batches) and the output of one batch,
/// on the CPU.
fn time_inference(
    net: &UNet,
    lr: &Tensor,
    device: Device,
    repeats: usize,
    out_mp: f64,
) -> (f64, Tensor) {
    let once = || tch::no_grad(|| net.forward(&lr.to_device(device)).to_device(Device::Cpu));
    let first = once();
    let _ = once();
    let start = Instant::now();
    for _ in 0..repeats {
        let _ = once();
    }
    let secs = start.elapsed().as_secs_f64();
    (out_mp * repeats as f64 / secs, first)
}

/// The PyTorch eager reference's results (`scripts/torch-reference.py --kit`).
pub fn read_pytorch(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::checkpoint_caused(path, "not the PyTorch reference's JSON", e))
}

/// The table of `report`, with the PyTorch reference's steps/s where given.
pub fn render_markdown(
    report: &ProofReport,
    card: &str,
    pytorch: Option<&serde_json::Value>,
) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "GPU proof on {card}; CPU threads {}.",
        report.cpu_threads
    );
    if let Some(why) = &report.cuda_skipped {
        let _ = writeln!(md, "\nCUDA measurements skipped: {why}");
    }
    let _ = writeln!(md, "\n| training | params | device | steps | geosr steps/s | PyTorch eager steps/s | geosr / PyTorch |");
    let _ = writeln!(md, "|---|---:|---|---:|---:|---:|---:|");
    for t in &report.training {
        let c = &t.config;
        let torch = pytorch.and_then(|p| p["configs"][&c.name][&t.device]["steps_per_s"].as_f64());
        let _ = writeln!(
            md,
            "| {} (batch {}, HR {} px, ×{}, depth {}, width {}) | {} | {} | {} | {:.2} | {} | {} |",
            c.name,
            c.batch,
            c.hr_chip,
            c.factor,
            c.depth,
            c.width,
            t.parameters,
            t.device,
            t.steps,
            t.steps_per_s,
            torch.map_or("not run".into(), |v| format!("{v:.2}")),
            torch.map_or("—".into(), |v| format!("{:.2}", t.steps_per_s / v)),
        );
    }
    let _ = writeln!(
        md,
        "\n| inference (tch, LR tiles → ×4) | device | output MP/s |"
    );
    let _ = writeln!(md, "|---|---|---:|");
    for i in &report.inference {
        let _ = writeln!(
            md,
            "| batch {} of {} px | {} | {:.1} |",
            i.batch, i.lr_tile, i.device, i.mp_per_s
        );
    }
    let _ = writeln!(md, "\n| check | result | measured |");
    let _ = writeln!(md, "|---|---|---|");
    for c in &report.checks {
        let result = match c.passed {
            Some(true) => "pass",
            Some(false) => "FAIL",
            None => "skipped",
        };
        let _ = writeln!(md, "| {} | {} | {} |", c.name, result, c.detail);
    }
    md
}

/// Writes `proof.md` and `proof.json` into `out`.
pub fn write_report(
    out: &Path,
    report: &ProofReport,
    card: &str,
    pytorch: Option<&serde_json::Value>,
) -> Result<String> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let md = render_markdown(report, card, pytorch);
    geosr::atomic::write_atomic(&out.join("proof.md"), md.as_bytes())?;
    let json = serde_json::json!({ "card": card, "geosr": report, "pytorch": pytorch });
    let text = serde_json::to_string_pretty(&json).expect("the report serialises");
    geosr::atomic::write_atomic(&out.join("proof.json"), text.as_bytes())?;
    Ok(md)
}

/// Whether every check that ran passed.
pub fn all_passed(report: &ProofReport) -> bool {
    report.checks.iter().all(|c| c.passed != Some(false))
}
