//! The model card (`model.json`) and the records it is made from.
//!
//! The card is what every later use of a model reads: inference and evaluation take the factor,
//! bands, normalisation and degradation from it. The downsampling factor is recorded once, as
//! `downsample_factor`; the network configuration and the degradation are stored without it and
//! get it back through [`ModelCard::unet_config`] and [`ModelCard::degradation`]. Its parts come
//! from typed records written by the stages: [`DataProvenance`] by `tile-ingest` (`data.json`)
//! and [`StageDescription`] by each loss stage (`stages/<node>.json`); a record with a field
//! missing fails to load, naming the file.
//!
//! A stage given a model works at the model's factor and degradation, one given none at the
//! settings': [`factor_for`] and [`Degradation::for_stage`] say which, in one place.
use crate::error::{Error, Result};
use crate::settings::{Settings, Skip, Upsample};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Per-band normalisation: `normalised = (native − offset) / scale`.
///
/// Offsets and scales are the 1st percentile and the 1st–99th percentile span of the valid
/// pixels of the training chips, so most of a scene maps into [0, 1] whatever its data type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalisation {
    pub offset: Vec<f32>,
    pub scale: Vec<f32>,
    /// Value (native units) that nodata pixels are replaced with before normalising: the
    /// band's median.
    pub fill: Vec<f32>,
}

/// What a stage needs to know about a raster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RasterInfo {
    pub path: PathBuf,
    pub width: usize,
    pub height: usize,
    /// 1-based band numbers read from the file.
    pub bands: Vec<u32>,
    /// GDAL data type name of the first selected band, e.g. `UInt16`.
    pub data_type: String,
    pub geotransform: [f64; 6],
    /// WKT, empty when the raster has no CRS.
    pub crs: String,
    pub nodata: Option<f64>,
    /// GDAL colour interpretation of each selected band, lower case (`red`, `undefined`, ...).
    pub colour: Vec<String>,
}

impl RasterInfo {
    /// True for integer data types, where 0-in-every-band is taken as nodata by default.
    pub fn is_integer(&self) -> bool {
        !self.data_type.starts_with("Float") && !self.data_type.starts_with("CFloat")
    }

    /// Geotransform of the pixel grid of a window, resampled to `out_w × out_h` pixels.
    pub fn window_geotransform(
        &self,
        x: u32,
        y: u32,
        w: u32,
        h: u32,
        out_w: usize,
        out_h: usize,
    ) -> [f64; 6] {
        let g = self.geotransform;
        let (x, y) = (x as f64, y as f64);
        let sx = w as f64 / out_w as f64;
        let sy = h as f64 / out_h as f64;
        [
            g[0] + x * g[1] + y * g[2],
            g[1] * sx,
            g[2] * sy,
            g[3] + x * g[4] + y * g[5],
            g[4] * sx,
            g[5] * sy,
        ]
    }
}

/// The U-Net as the card records it (its factor is the card's `downsample_factor`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Architecture {
    pub bands: i64,
    pub depth: i64,
    pub width: i64,
    pub upsample: Upsample,
    pub skip: Skip,
    /// Ends with the consistency layer, which inverts the card's `degradation` (no weights).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub consistency_layer: bool,
}

/// The network to build: the architecture at a factor.
#[derive(Debug, Clone, PartialEq)]
pub struct UNetConfig {
    pub bands: i64,
    pub factor: i64,
    pub depth: i64,
    pub width: i64,
    pub upsample: Upsample,
    pub skip: Skip,
    /// The consistency layer and the degradation it inverts, if the network ends with one.
    pub consistency: Option<DegradationSpec>,
}

impl std::fmt::Display for UNetConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bands, ×{}, depth {}, width {}, {}, skip {}{}",
            self.bands,
            self.factor,
            self.depth,
            self.width,
            self.upsample,
            self.skip,
            if self.consistency.is_some() {
                ", consistency layer"
            } else {
                ""
            }
        )
    }
}

impl UNetConfig {
    /// The network the settings ask for, for tiles of `bands` bands.
    pub fn from_settings(s: &Settings, bands: usize) -> Self {
        UNetConfig {
            bands: bands as i64,
            factor: s.factor as i64,
            depth: s.unet_depth as i64,
            width: s.unet_width as i64,
            upsample: s.upsample,
            skip: s.skip,
            consistency: s
                .consistency_layer
                .then(|| Degradation::from_settings(s).spec),
        }
    }

    /// The architecture part, as the card records it.
    pub fn architecture(&self) -> Architecture {
        Architecture {
            bands: self.bands,
            depth: self.depth,
            width: self.width,
            upsample: self.upsample,
            skip: self.skip,
            consistency_layer: self.consistency.is_some(),
        }
    }
}

/// How HR tiles become LR ones, as the card records it (the factor is the card's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DegradationSpec {
    pub antialias: bool,
    pub blur_sigma: f64,
    pub noise_std: f64,
    pub jpeg_quality: Option<u8>,
}

/// A degradation to apply: bilinear downsampling by `factor` and the extras of `spec`.
#[derive(Debug, Clone, PartialEq)]
pub struct Degradation {
    pub factor: u32,
    pub spec: DegradationSpec,
}

impl Degradation {
    pub fn from_settings(s: &Settings) -> Self {
        Degradation {
            factor: s.factor,
            spec: DegradationSpec {
                antialias: s.antialias,
                blur_sigma: s.blur_sigma,
                noise_std: s.noise_std,
                jpeg_quality: s.jpeg_quality,
            },
        }
    }

    /// The degradation a stage applies: the model's when one is given (evaluation degrades
    /// exactly as training did), else the settings'.
    pub fn for_stage(s: &Settings, card: Option<&ModelCard>) -> Self {
        match card {
            Some(c) => c.degradation(),
            None => Self::from_settings(s),
        }
    }
}

/// The factor a stage works at: the model's when one is given (so outputs line up with the
/// model's), else the `factor` setting.
pub fn factor_for(s: &Settings, card: Option<&ModelCard>) -> u32 {
    card.map(|c| c.downsample_factor).unwrap_or(s.factor)
}

/// What `tile-ingest` used for training: written as `data.json`, kept in the card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataProvenance {
    pub rasters: Vec<RasterInfo>,
    pub paired_lr: Option<PathBuf>,
    pub chip_size: u32,
    pub stride: u32,
    pub chips_considered: usize,
    pub chips_skipped_nodata: usize,
    pub max_nodata_pct: f64,
    pub train_chips: usize,
    pub val_chips: usize,
    pub train_batches_per_epoch: usize,
    pub val_batches: usize,
    pub batch_size: u32,
    pub seed: u64,
    pub normalisation: Normalisation,
}

/// What a loss stage says of itself at start-up (`stages/<node>.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageDescription {
    /// The node id.
    pub stage: String,
    /// The stage's own settings (`vgg_layers`, `pixel_loss`, ...): each loss stage has its own.
    pub description: serde_json::Value,
}

/// One loss stage wired into the trainer, as the card records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossEntry {
    /// The trainer's input (`loss_vgg`).
    pub input: String,
    pub weight: f64,
    /// The `node/output` feeding that input.
    pub from: String,
    /// The node id and its own description.
    pub stage: String,
    pub description: serde_json::Value,
}

/// Validation figures at the checkpoint, on normalised pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CardMetrics {
    pub val_psnr: f64,
    pub val_ssim: f64,
    pub bicubic_psnr: f64,
    pub bicubic_ssim: f64,
    pub val_tiles: usize,
}

/// Everything needed to use a trained model and to know where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub geosr_version: String,
    pub architecture: Architecture,
    pub downsample_factor: u32,
    /// 1-based band numbers of the source rasters, in tile order.
    pub bands: Vec<u32>,
    pub colour: String,
    /// GDAL data type of the training rasters.
    pub data_type: String,
    pub normalisation: Normalisation,
    pub degradation: DegradationSpec,
    /// Loss stages wired into the trainer: weight, source and the stage's own description.
    #[serde(deserialize_with = "losses_of_any_card")]
    pub losses: Vec<LossEntry>,
    pub provenance: DataProvenance,
    /// The last validation (none before the first).
    pub metrics: Option<CardMetrics>,
    pub step: u64,
    pub epoch: u32,
    pub device: String,
    pub weights_sha256: String,
    /// SHA-256 of `optimizer.safetensors` (empty in cards written before it was recorded).
    #[serde(default)]
    pub optimizer_sha256: String,
    pub written_unix_s: u64,
    /// The run whose weights this one started from (`init_from`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_from: Option<PathBuf>,
}

/// What a checkpoint's card is made of, besides the records read from the run directory.
#[derive(Debug, Clone)]
pub struct CardParts {
    pub config: UNetConfig,
    pub degradation: Degradation,
    /// The colour interpretation of the training tiles' bands.
    pub colour: String,
    pub metrics: Option<CardMetrics>,
    pub step: u64,
    pub epoch: u32,
    pub device: String,
    /// The run whose weights training started from, if any.
    pub init_from: Option<PathBuf>,
}

/// A loss input of the trainer: its input id, weight and the `node/output` feeding it.
#[derive(Debug, Clone, PartialEq)]
pub struct LossInput {
    pub input: String,
    pub weight: f64,
    pub from: String,
}

impl ModelCard {
    /// The card of a checkpoint of the run in `run_dir`: `parts`, the data provenance written by
    /// `tile-ingest` (`data.json`) and the description each loss stage wrote of itself
    /// (`stages/<node>.json`). A record that is missing or lacks a field is an error naming the
    /// file; the hashes are filled in when the files are written.
    pub fn assemble(run_dir: &Path, parts: CardParts, losses: &[LossInput]) -> Result<Self> {
        let provenance: DataProvenance = read_record(&run_dir.join("data.json"))?;
        let first = provenance
            .rasters
            .first()
            .ok_or_else(|| Error::checkpoint(run_dir.join("data.json"), "lists no raster"))?;
        let (bands, data_type) = (first.bands.clone(), first.data_type.clone());
        let losses = losses
            .iter()
            .map(|l| {
                let node = l.from.split('/').next().unwrap_or_default();
                let path = run_dir.join("stages").join(format!("{node}.json"));
                let d: StageDescription = read_record(&path)?;
                Ok(LossEntry {
                    input: l.input.clone(),
                    weight: l.weight,
                    from: l.from.clone(),
                    stage: d.stage,
                    description: d.description,
                })
            })
            .collect::<Result<_>>()?;
        Ok(ModelCard {
            geosr_version: env!("CARGO_PKG_VERSION").into(),
            architecture: parts.config.architecture(),
            downsample_factor: parts.config.factor as u32,
            bands,
            colour: parts.colour,
            data_type,
            normalisation: provenance.normalisation.clone(),
            degradation: parts.degradation.spec,
            losses,
            provenance,
            metrics: parts.metrics,
            step: parts.step,
            epoch: parts.epoch,
            device: parts.device,
            weights_sha256: String::new(),
            optimizer_sha256: String::new(),
            written_unix_s: 0,
            init_from: parts.init_from,
        })
    }

    /// The network this card describes.
    pub fn unet_config(&self) -> UNetConfig {
        let a = &self.architecture;
        UNetConfig {
            bands: a.bands,
            factor: self.downsample_factor as i64,
            depth: a.depth,
            width: a.width,
            upsample: a.upsample,
            skip: a.skip,
            consistency: a.consistency_layer.then(|| self.degradation.clone()),
        }
    }

    /// The degradation the model was trained with.
    pub fn degradation(&self) -> Degradation {
        Degradation {
            factor: self.downsample_factor,
            spec: self.degradation.clone(),
        }
    }

    /// The `vgg_layers` the model's `vgg-loss` stage was trained with, if it had one.
    pub fn vgg_layers(&self) -> Option<&str> {
        self.losses
            .iter()
            .find(|l| l.stage == "vgg-loss")
            .and_then(|l| l.description["vgg_layers"].as_str())
    }
}

/// The card's loss entries, also from cards written before they were typed: those listed each
/// input (with its source in Rust Debug text) and each stage description as separate entries.
fn losses_of_any_card<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<LossEntry>, D::Error> {
    let raw = Vec::<serde_json::Value>::deserialize(d)?;
    if raw
        .iter()
        .all(|v| v.get("input").is_some() && v.get("stage").is_some())
    {
        return serde_json::from_value(serde_json::Value::Array(raw))
            .map_err(serde::de::Error::custom);
    }
    let described = |node: &str| {
        raw.iter()
            .find(|v| v.get("input").is_none() && v["stage"] == node)
            .map(|v| v["description"].clone())
            .unwrap_or(serde_json::Value::Null)
    };
    Ok(raw
        .iter()
        .filter(|v| v.get("input").is_some())
        .map(|v| {
            let from = v["from"].as_str().unwrap_or_default();
            // `User(UserInputMapping { source: NodeId("vgg-loss"), output: DataId("loss") })`
            let field = |key: &str| {
                from.split(&format!("{key}(\""))
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .unwrap_or_default()
                    .to_owned()
            };
            let node = field("NodeId");
            LossEntry {
                input: v["input"].as_str().unwrap_or_default().to_owned(),
                weight: v["weight"].as_f64().unwrap_or(1.0),
                from: format!("{node}/{}", field("DataId")),
                description: described(&node),
                stage: node,
            }
        })
        .collect())
}

/// Reads a JSON record written by a stage, naming the file in any error.
pub fn read_record<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::checkpoint_caused(path, "not the record geosr expects here", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_with_a_field_missing_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("data.json");
        std::fs::write(&p, r#"{"rasters": [], "chip_size": 64}"#).unwrap();
        let err = read_record::<DataProvenance>(&p).unwrap_err().full_text();
        assert!(
            err.contains("data.json") && err.contains("missing field"),
            "{err}"
        );
    }

    #[test]
    fn cards_written_before_the_loss_entries_were_typed_still_read() {
        let old = serde_json::json!([
            {"input": "loss_vgg", "weight": 1.0, "from": "User(UserInputMapping { source: NodeId(\"vgg-loss\"), output: DataId(\"loss\") })"},
            {"stage": "vgg-loss", "description": {"vgg_layers": "relu2_2"}}
        ]);
        let losses = losses_of_any_card(old).unwrap();
        assert_eq!(losses.len(), 1);
        assert_eq!(
            (losses[0].from.as_str(), losses[0].stage.as_str()),
            ("vgg-loss/loss", "vgg-loss")
        );
        assert_eq!(losses[0].description["vgg_layers"], "relu2_2");
    }

    #[test]
    fn the_factor_has_one_home() {
        let s = Settings {
            factor: 2,
            ..Settings::default()
        };
        assert_eq!(factor_for(&s, None), 2);
        let cfg = UNetConfig::from_settings(&s, 3);
        assert_eq!((cfg.factor, cfg.architecture().bands), (2, 3));
        assert_eq!(Degradation::from_settings(&s).factor, 2);
    }
}
