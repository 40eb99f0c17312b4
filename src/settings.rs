//! Settings shared by every stage, with one set of names across all graphs.
//!
//! Values come, lowest precedence first, from: the defaults in [`Settings::default`]; a YAML
//! settings file named by `GEOSR_SETTINGS`; environment variables `GEOSR_<KEY>` (for example
//! `GEOSR_INPUT`, `GEOSR_FACTOR`, `GEOSR_STEPS`). The environment reaches a node from the
//! dataflow-level `env:` block of a graph, from `dora start --env K=V` (which merges into that
//! block), or from a node-level `env:` entry, which wins.
//!
//! `dora start --env` refuses values that look numeric, so numbers are best given in the
//! settings file:
//!
//! ```yaml
//! # my-run.yml, used as: dora start graphs/train.yml --attach --env GEOSR_SETTINGS=/abs/my-run.yml
//! input: /data/scene.tif
//! factor: 4
//! steps: 2000
//! ```
//!
//! Relative paths in the settings file resolve against the file's folder; relative paths in
//! the environment resolve against the node's working directory, which dora sets to the graph
//! file's folder. Defaults point into the project checkout (found from the node binary's
//! location, or `GEOSR_ROOT`).
use crate::error::{Error, Result};
use serde::{Deserialize, Deserializer, Serialize};
use std::path::{Path, PathBuf};

/// A list of small integers given either as a YAML sequence or as `"3,2,1"`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct IntList(pub Vec<u32>);

impl<'de> Deserialize<'de> for IntList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Seq(Vec<u32>),
            One(u32),
            Text(String),
        }
        match Repr::deserialize(d)? {
            Repr::Seq(v) => Ok(IntList(v)),
            Repr::One(v) => Ok(IntList(vec![v])),
            Repr::Text(s) => s
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| p.parse::<u32>().map_err(serde::de::Error::custom))
                .collect::<std::result::Result<_, _>>()
                .map(IntList),
        }
    }
}

/// Declares a settings enum whose YAML/JSON spelling is given per variant, with `as_str` and
/// `Display` giving the same spelling back.
macro_rules! choice {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }
        impl $name {
            /// The spelling used in settings files and model cards.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> std::result::Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "`{other}` is not one of {}",
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}

choice!(
    /// The U-Net's final upsampling.
    Upsample { PixelShuffle = "pixelshuffle", Deconv = "deconv" }
);
choice!(
    /// U-Net size presets (`model_size`): `small` is the demo's network; the bigger ones are for
    /// hardware that can train them (BENCHMARKS.md, "Model sizes").
    ModelSize { Small = "small", Medium = "medium", Large = "large" }
);

impl ModelSize {
    /// `(unet_depth, unet_width)` of the preset.
    pub fn depth_and_width(self) -> (u32, u32) {
        match self {
            ModelSize::Small => (2, 32),
            ModelSize::Medium => (2, 64),
            ModelSize::Large => (3, 64),
        }
    }
}

choice!(
    /// The interpolated input added to the U-Net's output, so it learns the residual.
    Skip { Bicubic = "bicubic", Bilinear = "bilinear", None = "none" }
);
choice!(
    /// The learning-rate schedule after warm-up.
    LrSchedule { Cosine = "cosine", Constant = "constant" }
);
choice!(
    /// The per-pixel loss term.
    PixelLoss { L1 = "l1", Mse = "mse", None = "none" }
);
choice!(
    /// Where the torch stages run.
    DeviceChoice { Auto = "auto", Cpu = "cpu", Cuda = "cuda" }
);
choice!(
    /// What `tile-ingest` serves.
    IngestMode {
        /// Chips for training, on request.
        Train = "train",
        /// The overlapping LR tiles of a raster, in raster order.
        Infer = "infer",
        /// Overlapping HR tiles of every input raster, to degrade and compare.
        Evaluate = "evaluate",
    }
);
choice!(
    /// The inference engine of `unet-infer`.
    Engine { Ort = "ort", Tch = "tch" }
);
choice!(
    /// A classic resampler (the `upscale` stage and the evaluation baselines).
    Resampler { Bilinear = "bilinear", Bicubic = "bicubic", Lanczos = "lanczos" }
);
choice!(
    /// The output format of the writer.
    OutputFormat { GTiff = "GTiff", Cog = "COG" }
);

/// Every setting of every stage. Each stage reads the ones it needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    // --- data (tile-ingest) ---
    /// A raster, or a folder of rasters, holding the high-resolution imagery.
    pub input: PathBuf,
    /// Paired low-resolution rasters (a raster or a folder whose file names match `input`'s).
    /// When set, ingest emits LR tiles itself and no degradation is applied.
    pub input_lr: Option<PathBuf>,
    /// 1-based band numbers to use; empty means all bands.
    pub bands: IntList,
    /// High-resolution chip edge in pixels.
    pub chip_size: u32,
    /// Step between chips in pixels; defaults to `chip_size` (no overlap, so no leak between
    /// training and validation chips).
    pub stride: Option<u32>,
    /// Chips with more than this share of nodata pixels are skipped.
    pub max_nodata_pct: f64,
    /// Nodata value to use when the raster declares none. Without either, integer rasters treat
    /// pixels that are 0 in every band as nodata (Landsat's black wedges) and float rasters
    /// treat NaN as nodata.
    pub nodata: Option<f64>,
    /// Share of chips held out for validation.
    pub val_split_pct: f64,
    /// Seed of the chip shuffle, the split and the network initialisation.
    pub seed: u64,
    /// Tiles per batch.
    pub batch_size: u32,
    /// Training length in optimiser steps; wins over `epochs`.
    pub steps: Option<u32>,
    /// Training length in passes over the training chips, used when `steps` is unset.
    pub epochs: Option<u32>,
    /// Random flips and 90° rotations of training chips (validation chips stay as they are).
    pub augment: bool,
    /// 1-based band numbers to treat as red, green, blue for the perceptual loss; empty means
    /// the bands' GDAL colour interpretation, else the first three bands.
    pub rgb_bands: IntList,

    // --- degradation (degrade) ---
    /// Resolution ratio between HR and LR: 2, 3, 4 or 8.
    pub factor: u32,
    /// `true`: the bilinear (triangle) kernel is widened by `factor`, as GDAL's and Pillow's
    /// bilinear downsampling do. `false`: OpenCV `INTER_LINEAR`, two taps per axis.
    pub antialias: bool,
    /// Gaussian blur sigma in HR pixels applied before downsampling (0 = off).
    pub blur_sigma: f64,
    /// Standard deviation of Gaussian noise added to LR pixels, in normalised units (0 = off).
    pub noise_std: f64,
    /// JPEG quality (1–100) applied to LR tiles through GDAL's JPEG driver (unset = off).
    pub jpeg_quality: Option<u8>,

    // --- model and optimisation (unet-train) ---
    /// A U-Net size preset; sets `unet_depth` and `unet_width` (give either, not both).
    pub model_size: Option<ModelSize>,
    /// Number of down-sampling levels of the U-Net.
    pub unet_depth: u32,
    /// Channels of the first U-Net level (doubled at every level).
    pub unet_width: u32,
    /// Final upsampling: `pixelshuffle` or `deconv` (transposed convolution).
    pub upsample: Upsample,
    /// Interpolated input added to the output so the net learns the residual: `bicubic`,
    /// `bilinear` or `none`.
    pub skip: Skip,
    /// The consistency layer: the network's output corrected so that degrading it with the
    /// model's own degradation gives its input back (`geosr_torch::projection`). On by default:
    /// better on every quality and radiometric measure of the benchmark (BENCHMARKS.md).
    pub consistency_layer: bool,
    /// Peak learning rate of Adam.
    pub lr: f64,
    /// `cosine` (decay to 5% of `lr`) or `constant`.
    pub lr_schedule: LrSchedule,
    /// Linear warm-up steps.
    pub warmup_steps: u32,
    /// Largest global L2 norm of the parameter gradients that one Adam step takes; a larger one
    /// is scaled down to it (`null`: no limit). Keeps one outsized step from throwing a trained
    /// network off, as it did to an unclipped `medium` run (BENCHMARKS.md, "Model sizes").
    pub max_grad_norm: Option<f64>,
    /// Validate every this many steps (default: every epoch, or every few epochs so that at
    /// least 100 steps lie between validations) and always at the end.
    pub val_every: Option<u32>,
    /// Write a checkpoint every this many steps (0 = only at the end).
    pub checkpoint_every: u32,
    /// A run directory or checkpoint directory to resume from.
    pub resume: Option<PathBuf>,
    /// A run (or checkpoint) directory whose weights a new run starts from, instead of random
    /// ones: same architecture, band count and factor; normalisation and optimiser start afresh.
    pub init_from: Option<PathBuf>,
    /// Batches requested ahead of the one being trained on.
    pub prefetch: u32,
    /// Weights of the loss stages wired into the trainer, `name=weight,...`, where name is the
    /// trainer input id without its `loss_` prefix; stages not named get weight 1.
    pub loss_weights: String,

    // --- losses (vgg-loss, pixel-loss) ---
    /// VGG-16 conv weights converted by `geosr import-vgg`.
    pub vgg_weights: PathBuf,
    /// Feature layers and their weights, `relu2_2` or `relu1_2:0.5,relu2_2:1`.
    pub vgg_layers: String,
    /// Weight of the feature (perceptual) term.
    pub feature_weight: f64,
    /// Per-pixel term: `l1`, `mse` or `none`.
    pub pixel_loss: PixelLoss,
    /// Weight of the per-pixel term.
    pub pixel_weight: f64,

    // --- inference (tile-ingest in infer mode, unet-infer, upscale, geotiff-writer) ---
    /// `train` (chips for training), `infer` (overlapping LR tiles of the input in raster order)
    /// or `evaluate` (overlapping HR tiles of every input raster, to degrade and compare).
    pub ingest_mode: IngestMode,
    /// Inference tile edge in LR pixels (a multiple of 2^unet_depth).
    pub infer_tile: u32,
    /// LR pixels shared by neighbouring inference tiles; blended with feathering.
    pub overlap: u32,
    /// Tiles per inference batch.
    pub infer_batch: u32,
    /// `tch` (libtorch, default: the fastest measured on the CPU and proven on CUDA) or `ort`
    /// (ONNX Runtime on the ONNX export).
    pub engine: Engine,
    /// Classic resampler of the `upscale` stage: `bilinear`, `bicubic` or `lanczos`.
    pub upscale_method: Resampler,
    /// `upscale` sends its tiles as native integers (`UInt16`, half the bytes of `f32`) when
    /// the input raster is `Byte` or `UInt16`: for a writer, which rounds to those integers
    /// anyway; not for an evaluation, which scores the unrounded values.
    pub upscale_integer_tiles: bool,
    /// `GTiff` or `COG`.
    pub output_format: OutputFormat,
    /// Crops shown in the evaluation preview PNG (0 = no preview).
    pub preview_crops: u32,
    /// Edge of each preview crop in HR pixels (drawn at ⌊256 / size⌋×, 1× to 4×).
    pub preview_size: u32,
    /// GDAL creation options, comma-separated.
    pub creation_options: String,
    /// Write the no-reference consistency report beside each output (`<name>.report.json` and
    /// `.md`): default on when a model is given, off for classic upscaling.
    pub consistency_report: Option<bool>,
    /// With the report, also write `<name>.report.tif`: per input pixel, the root mean square
    /// over bands of the output degraded back minus the input (one `f32` per input pixel held
    /// in memory while the scene is written).
    pub consistency_map: bool,

    // --- runs and devices ---
    /// Where a training run writes its model, card, metrics and logs.
    pub run_dir: PathBuf,
    /// Where the inference and upscaling graphs' stages write logs and tile counts.
    pub log_dir: PathBuf,
    /// A run directory to load a model from (inference, evaluation).
    pub model: Option<PathBuf>,
    /// What an inference or evaluation graph writes.
    pub output: Option<PathBuf>,
    /// `auto` (CUDA when available), `cpu` or `cuda`.
    pub device: DeviceChoice,
    /// libtorch intra-op threads (default: all cores).
    pub threads: Option<i32>,
    /// Seconds a stage waits for a reply it asked for (a batch, a loss, a score) before it gives
    /// up with an error naming what it waited for. Covers the slowest legitimate wait: the first
    /// step on a GPU, a large window read, a busy loss stage.
    pub wait_timeout_s: u32,
    /// Seconds without a reply after which a waiting stage asks again for what is missing: dora
    /// can lose a message between daemons under load, and every request is safe to repeat.
    pub resend_after_s: u32,
    /// With several `unet-infer` workers side by side, the one this is (0-based): it takes the
    /// batches whose index modulo `workers` is `worker`.
    pub worker: u32,
    /// How many `unet-infer` workers share the batches.
    pub workers: u32,
}

impl Default for Settings {
    fn default() -> Self {
        let root = project_root();
        Settings {
            input: root.join("data/demo/landsat8-224078-crop.tif"),
            input_lr: None,
            bands: IntList::default(),
            chip_size: 64,
            stride: None,
            max_nodata_pct: 10.0,
            nodata: None,
            val_split_pct: 10.0,
            seed: 42,
            batch_size: 16,
            steps: None,
            epochs: None,
            augment: true,
            rgb_bands: IntList::default(),
            factor: 4,
            antialias: true,
            blur_sigma: 0.0,
            noise_std: 0.0,
            jpeg_quality: None,
            model_size: None,
            unet_depth: 2,
            unet_width: 32,
            upsample: Upsample::PixelShuffle,
            skip: Skip::Bicubic,
            consistency_layer: true,
            lr: 1e-3,
            lr_schedule: LrSchedule::Cosine,
            warmup_steps: 20,
            max_grad_norm: Some(MAX_GRAD_NORM_DEFAULT),
            val_every: None,
            checkpoint_every: 0,
            resume: None,
            init_from: None,
            prefetch: 2,
            loss_weights: String::new(),
            vgg_weights: root.join("weights/vgg16.safetensors"),
            vgg_layers: "relu2_2".into(),
            feature_weight: 2e-7,
            pixel_loss: PixelLoss::L1,
            pixel_weight: 1.0,
            ingest_mode: IngestMode::Train,
            infer_tile: 96,
            overlap: 8,
            infer_batch: 4,
            engine: Engine::Tch,
            upscale_method: Resampler::Bicubic,
            upscale_integer_tiles: false,
            output_format: OutputFormat::GTiff,
            preview_crops: 3,
            preview_size: 128,
            creation_options: "TILED=YES,COMPRESS=DEFLATE,PREDICTOR=2,BIGTIFF=IF_SAFER".into(),
            consistency_report: None,
            consistency_map: false,
            run_dir: root.join("runs/train"),
            log_dir: root.join("runs/logs"),
            model: None,
            output: None,
            device: DeviceChoice::Auto,
            threads: None,
            wait_timeout_s: 600,
            resend_after_s: 60,
            worker: 0,
            workers: 1,
        }
    }
}

/// Default number of optimiser steps when neither `steps` nor `epochs` is set.
pub const DEFAULT_STEPS: u32 = 2000;

/// Default of `max_grad_norm`, chosen from the gradient norms of training runs (BENCHMARKS.md,
/// "Model sizes").
pub const MAX_GRAD_NORM_DEFAULT: f64 = 0.2;

/// A `model_size` preset given in the file or environment sets `unet_depth` and `unet_width`;
/// giving either of those as well with another value is refused, since one would silently
/// override the other (the same value, as in a settings file written out whole, is accepted).
fn apply_model_size(map: &mut serde_yaml::Mapping, given: &[String]) -> Result<()> {
    if !given.iter().any(|k| k == "model_size") {
        return Ok(());
    }
    let Some(text) = map.get("model_size").and_then(|v| v.as_str()) else {
        return Ok(()); // null, or a wrong type that deserialising reports
    };
    let size: ModelSize = text
        .parse()
        .map_err(|e: String| Error::setting("model_size", e))?;
    let (depth, width) = size.depth_and_width();
    for (key, preset) in [("unet_depth", depth), ("unet_width", width)] {
        let value = map.get(key);
        if given.iter().any(|k| k == key) && value.and_then(|v| v.as_u64()) != Some(preset as u64) {
            return Err(Error::setting(
                "model_size",
                format!(
                    "`{size}` means unet_depth {depth} and unet_width {width}, but `{key}` is given as {}: give one or the other",
                    value.map(yaml_text).unwrap_or_default()
                ),
            ));
        }
    }
    map.insert("unet_depth".into(), depth.into());
    map.insert("unet_width".into(), width.into());
    Ok(())
}

fn yaml_text(v: &serde_yaml::Value) -> String {
    serde_yaml::to_string(v)
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// The fields whose values are paths, resolved against the folder they were given relative to.
const PATH_KEYS: &[&str] = &[
    "input",
    "input_lr",
    "resume",
    "init_from",
    "vgg_weights",
    "run_dir",
    "model",
    "output",
    "log_dir",
];

impl Settings {
    /// Reads the settings of this process: defaults, then `GEOSR_SETTINGS`, then `GEOSR_*`.
    pub fn from_env() -> Result<Self> {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        let cwd = std::env::current_dir().map_err(|e| Error::io(".", e))?;
        Self::from_sources(&vars, &cwd)
    }

    /// Same as [`Settings::from_env`] with the environment and working directory given.
    pub fn from_sources(vars: &[(String, String)], cwd: &Path) -> Result<Self> {
        let mut value = serde_yaml::to_value(Settings::default()).expect("defaults serialise");
        // Keys the file or the environment gave, as opposed to defaults.
        let mut given: Vec<String> = Vec::new();
        let map = value
            .as_mapping_mut()
            .expect("settings serialise to a mapping");
        if let Some((_, file)) = vars.iter().find(|(k, _)| k == "GEOSR_SETTINGS") {
            let path = absolute(cwd, Path::new(file));
            let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            let file_value: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| {
                Error::setting("GEOSR_SETTINGS", format!("{}: {e}", path.display()))
            })?;
            let base = path.parent().unwrap_or(cwd).to_path_buf();
            if let Some(m) = file_value.as_mapping() {
                for (k, v) in m {
                    given.extend(k.as_str().map(str::to_owned));
                    map.insert(k.clone(), resolve_path_value(k, v.clone(), &base));
                }
            } else if !file_value.is_null() {
                return Err(Error::setting(
                    "GEOSR_SETTINGS",
                    format!("{} must hold a YAML mapping of settings", path.display()),
                ));
            }
        }
        let known: Vec<String> = map
            .keys()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect();
        for (k, raw) in vars {
            let Some(name) = k.strip_prefix("GEOSR_") else {
                continue;
            };
            let key = name.to_ascii_lowercase();
            if !known.contains(&key) {
                continue; // GEOSR_SETTINGS, GEOSR_ROOT and names for other tools
            }
            let v: serde_yaml::Value = if PATH_KEYS.contains(&key.as_str()) {
                serde_yaml::Value::String(raw.clone())
            } else {
                serde_yaml::from_str(raw).unwrap_or_else(|_| serde_yaml::Value::String(raw.clone()))
            };
            given.push(key.clone());
            let key_v = serde_yaml::Value::String(key);
            let v = resolve_path_value(&key_v, v, cwd);
            map.insert(key_v, v);
        }
        apply_model_size(map, &given)?;
        let settings: Settings = match serde_yaml::from_value(value.clone()) {
            Ok(s) => s,
            Err(e) => return Err(explain(&value, &known_keys(), e)),
        };
        settings.validate()?;
        Ok(settings)
    }

    /// Checks values that no single stage could sensibly start with.
    pub fn validate(&self) -> Result<()> {
        if self.resume.is_some() && self.init_from.is_some() {
            return Err(Error::setting(
                "init_from",
                "give either `resume` (continue a run) or `init_from` (start a new run from its weights), not both",
            ));
        }
        if ![2, 3, 4, 8].contains(&self.factor) {
            return Err(Error::setting(
                "factor",
                format!("{} is not one of 2, 3, 4, 8", self.factor),
            ));
        }
        if !self.chip_size.is_multiple_of(self.factor) {
            return Err(Error::setting(
                "chip_size",
                format!(
                    "{} is not a multiple of factor {}",
                    self.chip_size, self.factor
                ),
            ));
        }
        let lr = self.chip_size / self.factor;
        let level = 1u32 << self.unet_depth;
        if !lr.is_multiple_of(level) {
            return Err(Error::setting(
                "chip_size",
                format!(
                    "LR chips of {lr} px (chip_size {} / factor {}) must be a multiple of 2^unet_depth = {level}",
                    self.chip_size, self.factor
                ),
            ));
        }
        if let Some(n) = self.max_grad_norm {
            if !(n.is_finite() && n > 0.0) {
                return Err(Error::setting(
                    "max_grad_norm",
                    format!("{n} is not a positive number (give `null` for no limit)"),
                ));
            }
        }
        if self.batch_size == 0 {
            return Err(Error::setting("batch_size", "must be at least 1"));
        }
        if self.infer_batch == 0 {
            return Err(Error::setting("infer_batch", "must be at least 1"));
        }
        // Requests in flight must fit dora's input queues (10 by default), or messages drop.
        if !(1..=8).contains(&self.prefetch) {
            return Err(Error::setting(
                "prefetch",
                format!(
                    "{} is not in 1..=8 (dora's input queues hold 10 messages)",
                    self.prefetch
                ),
            ));
        }
        if self.wait_timeout_s == 0 {
            return Err(Error::setting("wait_timeout_s", "must be at least 1"));
        }
        if self.resend_after_s == 0 {
            return Err(Error::setting("resend_after_s", "must be at least 1"));
        }
        if self.workers == 0 || self.worker >= self.workers {
            return Err(Error::setting(
                "worker",
                format!(
                    "worker {} of {} workers: give workers ≥ 1 and worker from 0 to workers − 1",
                    self.worker, self.workers
                ),
            ));
        }
        if self.preview_size < 16 {
            return Err(Error::setting(
                "preview_size",
                format!(
                    "{} px is too small for a preview crop (at least 16)",
                    self.preview_size
                ),
            ));
        }
        if !(0.0..100.0).contains(&self.val_split_pct) {
            return Err(Error::setting("val_split_pct", "must be in [0, 100)"));
        }
        if !(0.0..=100.0).contains(&self.max_nodata_pct) {
            return Err(Error::setting("max_nodata_pct", "must be in [0, 100]"));
        }
        if let Some(q) = self.jpeg_quality {
            if !(1..=100).contains(&q) {
                return Err(Error::setting("jpeg_quality", "must be in 1..=100"));
            }
        }
        if !self.rgb_bands.0.is_empty() && self.rgb_bands.0.len() != 3 {
            return Err(Error::setting(
                "rgb_bands",
                "give exactly three band numbers",
            ));
        }
        self.loss_weight_map()?;
        Ok(())
    }

    /// Refuses to start a fresh run in a run directory that already holds a finished model, so
    /// no stage overwrites another run's files. Every stage that writes there calls this first.
    pub fn check_run_dir(&self) -> Result<()> {
        let card = self.run_dir.join("model.json");
        if self.resume.is_none() && card.exists() {
            return Err(Error::setting(
                "run_dir",
                format!(
                    "{} already holds a trained model; give a new GEOSR_RUN_DIR, or set `resume` to continue it",
                    self.run_dir.display()
                ),
            ));
        }
        Ok(())
    }

    /// `creation_options` as a list (`TILED=YES,COMPRESS=DEFLATE` → two entries).
    pub fn creation_option_list(&self) -> Vec<String> {
        self.creation_options
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// `wait_timeout_s` as a duration.
    pub fn wait_limit(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.wait_timeout_s as u64)
    }

    /// `resend_after_s` as a duration.
    pub fn resend_limit(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.resend_after_s as u64)
    }

    /// HR chip step.
    pub fn stride(&self) -> u32 {
        self.stride.unwrap_or(self.chip_size)
    }

    /// LR chip edge.
    pub fn lr_size(&self) -> u32 {
        self.chip_size / self.factor
    }

    /// The parsed `loss_weights` setting.
    pub fn loss_weight_map(&self) -> Result<Vec<(String, f64)>> {
        self.loss_weights
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|item| {
                let (name, w) = item.split_once('=').ok_or_else(|| {
                    Error::setting("loss_weights", format!("`{item}` is not name=weight"))
                })?;
                let w: f64 = w.trim().parse().map_err(|_| {
                    Error::setting("loss_weights", format!("`{w}` is not a number"))
                })?;
                Ok((name.trim().to_owned(), w))
            })
            .collect()
    }
}

/// Every setting's name.
fn known_keys() -> Vec<String> {
    serde_yaml::to_value(Settings::default())
        .expect("defaults serialise")
        .as_mapping()
        .expect("a mapping")
        .keys()
        .filter_map(|k| k.as_str().map(str::to_owned))
        .collect()
}

/// serde's error for the whole mapping, turned into one naming the setting at fault: an unknown
/// key with the closest known one, or the key whose value has the wrong type.
fn explain(value: &serde_yaml::Value, known: &[String], e: serde_yaml::Error) -> Error {
    let map = value.as_mapping().cloned().unwrap_or_default();
    for k in map.keys() {
        let Some(name) = k.as_str() else {
            return Error::setting(format!("{k:?}"), "a setting's name must be text");
        };
        if !known.iter().any(|n| n == name) {
            let closest = known
                .iter()
                .min_by_key(|n| edit_distance(n, name))
                .filter(|n| edit_distance(n, name) <= 2 + name.len() / 4);
            return Error::setting(
                name,
                match closest {
                    Some(c) => format!("no such setting; did you mean `{c}`?"),
                    None => "no such setting (README.md lists them all)".to_owned(),
                },
            );
        }
    }
    // One key at a time over the defaults: the first that fails is the one at fault.
    let defaults = serde_yaml::to_value(Settings::default()).expect("defaults serialise");
    for (k, v) in &map {
        let mut one = defaults.clone();
        one.as_mapping_mut()
            .expect("a mapping")
            .insert(k.clone(), v.clone());
        if let Err(err) = serde_yaml::from_value::<Settings>(one) {
            let shown = serde_yaml::to_string(v).unwrap_or_default();
            return Error::setting(
                k.as_str().unwrap_or("?"),
                format!("`{}` is not a valid value ({err})", shown.trim()),
            );
        }
    }
    Error::setting("settings", e.to_string())
}

/// Levenshtein distance, for suggesting a setting's name.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn resolve_path_value(
    key: &serde_yaml::Value,
    v: serde_yaml::Value,
    base: &Path,
) -> serde_yaml::Value {
    match (key.as_str(), v) {
        (Some(k), serde_yaml::Value::String(s)) if PATH_KEYS.contains(&k) && !s.is_empty() => {
            serde_yaml::Value::String(absolute(base, Path::new(&s)).to_string_lossy().into_owned())
        }
        (_, v) => v,
    }
}

fn absolute(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// The project checkout: `GEOSR_ROOT`, else the first ancestor of the running binary, else of
/// the working directory (dora starts nodes in the graph's folder), that holds both
/// `Cargo.toml` and `graphs/`, else the working directory. The binary's path is resolved by the
/// kernel, so a `target/` that is a symlink to a cache elsewhere leads outside the checkout;
/// the working directory then finds it.
pub fn project_root() -> PathBuf {
    if let Some(root) = std::env::var_os("GEOSR_ROOT") {
        return PathBuf::from(root);
    }
    let is_root = |dir: &Path| dir.join("Cargo.toml").is_file() && dir.join("graphs").is_dir();
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let exe = std::env::current_exe().unwrap_or_default();
    exe.ancestors()
        .chain(cwd.ancestors())
        .find(|dir| is_root(dir))
        .map(Path::to_path_buf)
        .unwrap_or(cwd)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn env_overrides_defaults_and_parses_numbers() {
        let s = Settings::from_sources(
            &vars(&[
                ("GEOSR_FACTOR", "2"),
                ("GEOSR_INPUT", "x.tif"),
                ("GEOSR_BANDS", "3,2,1"),
            ]),
            Path::new("/graphs"),
        )
        .unwrap();
        assert_eq!(s.factor, 2);
        assert_eq!(s.input, PathBuf::from("/graphs/x.tif"));
        assert_eq!(s.bands.0, vec![3, 2, 1]);
    }

    #[test]
    fn max_grad_norm_is_a_positive_limit_or_none() {
        let s = Settings::from_sources(&vars(&[]), Path::new("/")).unwrap();
        assert_eq!(s.max_grad_norm, Some(MAX_GRAD_NORM_DEFAULT));
        let s = Settings::from_sources(&vars(&[("GEOSR_MAX_GRAD_NORM", "null")]), Path::new("/"))
            .unwrap();
        assert_eq!(s.max_grad_norm, None);
        for bad in ["0", "-1", ".nan"] {
            let e = Settings::from_sources(&vars(&[("GEOSR_MAX_GRAD_NORM", bad)]), Path::new("/"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("max_grad_norm"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_model_size_sets_depth_and_width_and_refuses_them_beside_it() {
        let s = Settings::from_sources(&vars(&[("GEOSR_MODEL_SIZE", "large")]), Path::new("/"))
            .unwrap();
        assert_eq!((s.unet_depth, s.unet_width), (3, 64));
        let s = Settings::from_sources(&vars(&[]), Path::new("/")).unwrap();
        assert_eq!(
            (s.unet_depth, s.unet_width),
            ModelSize::Small.depth_and_width()
        );
        let e = Settings::from_sources(
            &vars(&[("GEOSR_MODEL_SIZE", "medium"), ("GEOSR_UNET_WIDTH", "16")]),
            Path::new("/"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains(
                "`medium` means unet_depth 2 and unet_width 64, but `unet_width` is given as 16"
            ),
            "{e}"
        );
        // Settings written out whole and read back (the preset's own values beside it) load.
        let s = Settings::from_sources(
            &vars(&[("GEOSR_MODEL_SIZE", "medium"), ("GEOSR_UNET_WIDTH", "64")]),
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(s.unet_width, 64);
        let e = Settings::from_sources(&vars(&[("GEOSR_MODEL_SIZE", "huge")]), Path::new("/"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`huge` is not one of small, medium, large"),
            "{e}"
        );
    }

    #[test]
    fn settings_file_then_env() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s.yml");
        std::fs::write(
            &f,
            "steps: 7\ninput: scene.tif\nfactor: 8\nchip_size: 128\n",
        )
        .unwrap();
        let s = Settings::from_sources(
            &vars(&[
                ("GEOSR_SETTINGS", f.to_str().unwrap()),
                ("GEOSR_FACTOR", "4"),
            ]),
            Path::new("/elsewhere"),
        )
        .unwrap();
        assert_eq!(s.steps, Some(7));
        assert_eq!(s.factor, 4, "environment wins over the file");
        assert_eq!(
            s.input,
            dir.path().join("scene.tif"),
            "file paths resolve against the file"
        );
    }

    #[test]
    fn bad_values_name_the_setting() {
        let err =
            Settings::from_sources(&vars(&[("GEOSR_FACTOR", "5")]), Path::new("/")).unwrap_err();
        assert!(err.to_string().contains("factor"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s.yml");
        std::fs::write(&f, "stpes: 7\n").unwrap();
        let err = Settings::from_sources(
            &vars(&[("GEOSR_SETTINGS", f.to_str().unwrap())]),
            Path::new("/"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "setting `stpes`: no such setting; did you mean `steps`?"
        );
        std::fs::write(&f, "steps: many\n").unwrap();
        let err = Settings::from_sources(
            &vars(&[("GEOSR_SETTINGS", f.to_str().unwrap())]),
            Path::new("/"),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("setting `steps`: `many` is not a valid value"),
            "{err}"
        );
    }
}
