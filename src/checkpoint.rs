//! Run directories, checkpoints and the model card.
//!
//! A run directory holds:
//!
//! ```text
//! runs/<name>/
//!   model.safetensors     weights of the latest checkpoint
//!   optimizer.safetensors Adam moments of the latest checkpoint
//!   model.json            the model card (architecture, factor, bands, normalisation, losses,
//!                         data provenance, metrics, the weights' SHA-256)
//!   checkpoints/step-NNNNNN/{model.safetensors, optimizer.safetensors, model.json}
//!   metrics.csv           step, epoch, train loss, val PSNR/SSIM, bicubic PSNR/SSIM
//!   logs/<stage>.jsonl    structured logs
//!   counts/<stage>.json   tiles in and out of each stage
//!   stages/<stage>.json   each loss stage's own description
//! ```
//!
//! Checkpoints are written into a hidden temporary folder and renamed into place, so a
//! `checkpoints/step-*` folder is complete or absent. The top-level files are each written to a
//! temporary name and renamed, weights first and card last; the card names the SHA-256 of its
//! weights so a mismatch is detected on load.
use crate::chips::Normalisation;
use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Architecture, as recorded in the model card.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct UNetConfig {
    pub bands: i64,
    pub factor: i64,
    pub depth: i64,
    pub width: i64,
    pub upsample: String,
    pub skip: String,
}

impl UNetConfig {
    pub fn from_settings(s: &crate::settings::Settings, bands: usize) -> Self {
        UNetConfig {
            bands: bands as i64,
            factor: s.factor as i64,
            depth: s.unet_depth as i64,
            width: s.unet_width as i64,
            upsample: s.upsample.clone(),
            skip: s.skip.clone(),
        }
    }
}

/// Everything needed to use a trained model and to know where it came from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelCard {
    pub geosr_version: String,
    pub architecture: UNetConfig,
    pub downsample_factor: u32,
    /// 1-based band numbers of the source rasters, in tile order.
    pub bands: Vec<u32>,
    pub colour: String,
    /// GDAL data type of the training rasters.
    pub data_type: String,
    pub normalisation: Normalisation,
    pub degradation: crate::degrade::Degradation,
    /// Loss stages wired into the trainer: name, weight, and the stage's own description.
    pub losses: Vec<serde_json::Value>,
    pub provenance: serde_json::Value,
    pub metrics: serde_json::Value,
    pub step: u64,
    pub epoch: u32,
    pub device: String,
    pub weights_sha256: String,
    pub written_unix_s: u64,
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tmp = temp_sibling(path);
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

/// Writes a checkpoint (weights, optimiser state, card) as the run directory's top-level model
/// and, with `keep_step_folder`, as `checkpoints/step-NNNNNN` too. Returns where it was kept.
/// `save_weights` and `save_optimizer` write to the paths given.
pub fn write_checkpoint(
    run_dir: &Path,
    card: &mut ModelCard,
    save_weights: impl Fn(&Path) -> Result<()>,
    save_optimizer: impl Fn(&Path) -> Result<()>,
    keep_step_folder: bool,
) -> Result<PathBuf> {
    let ckpts = run_dir.join("checkpoints");
    std::fs::create_dir_all(&ckpts).map_err(|e| Error::io(&ckpts, e))?;
    let name = format!("step-{:06}", card.step);
    let tmp = ckpts.join(format!(".{name}.{}.tmp", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    save_weights(&tmp.join("model.safetensors"))?;
    save_optimizer(&tmp.join("optimizer.safetensors"))?;
    card.weights_sha256 = sha256_file(&tmp.join("model.safetensors"))?;
    card.written_unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let card_json = serde_json::to_vec_pretty(card).expect("card serialises");
    std::fs::write(tmp.join("model.json"), &card_json)
        .map_err(|e| Error::io(tmp.join("model.json"), e))?;

    // Top level: same bytes, each file renamed into place, card last.
    for file in ["model.safetensors", "optimizer.safetensors", "model.json"] {
        let bytes = std::fs::read(tmp.join(file)).map_err(|e| Error::io(tmp.join(file), e))?;
        write_atomic(&run_dir.join(file), &bytes)?;
    }
    let dest = ckpts.join(&name);
    if keep_step_folder {
        if dest.exists() {
            std::fs::remove_dir_all(&dest).map_err(|e| Error::io(&dest, e))?;
        }
        std::fs::rename(&tmp, &dest).map_err(|e| Error::io(&dest, e))?;
        Ok(dest)
    } else {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        Ok(run_dir.to_path_buf())
    }
}

/// A model found in a run or checkpoint directory.
pub struct LoadedCheckpoint {
    pub dir: PathBuf,
    pub card: ModelCard,
    pub weights: PathBuf,
    pub optimizer: PathBuf,
}

/// Finds and checks the model of a run directory (its top-level model) or a checkpoint folder.
pub fn load_checkpoint(dir: &Path) -> Result<LoadedCheckpoint> {
    let card_path = dir.join("model.json");
    if !card_path.is_file() {
        return Err(Error::checkpoint(
            dir,
            "has no model.json: not a run or checkpoint directory",
        ));
    }
    let text = std::fs::read_to_string(&card_path).map_err(|e| Error::io(&card_path, e))?;
    let card: ModelCard = serde_json::from_str(&text)
        .map_err(|e| Error::checkpoint(&card_path, format!("not a geosr model card: {e}")))?;
    let weights = dir.join("model.safetensors");
    let sha = sha256_file(&weights)?;
    if sha != card.weights_sha256 {
        return Err(Error::checkpoint(
            &weights,
            "SHA-256 differs from the one in model.json (a half-written or foreign file)",
        ));
    }
    Ok(LoadedCheckpoint {
        dir: dir.to_path_buf(),
        card,
        optimizer: dir.join("optimizer.safetensors"),
        weights,
    })
}
