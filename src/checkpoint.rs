//! Run directories and checkpoints (the model card itself is [`crate::card`]).
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
//! `checkpoints/step-*` folder is complete or absent. The top-level files are then each written
//! to a temporary name and renamed, weights first and card last; the card names the SHA-256 of
//! its weights and optimiser state, so a mismatch is detected on load, and [`latest_checkpoint`]
//! falls back to the step folder. See [`write_checkpoint`].
use crate::atomic::PendingFile;
use crate::card::ModelCard;
use crate::error::{Error, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

/// The files of a checkpoint, in the order they are put in place (the card last).
const CHECKPOINT_FILES: [&str; 3] = ["model.safetensors", "optimizer.safetensors", "model.json"];

/// Writes a checkpoint (weights, optimiser state, card) as the run directory's top-level model
/// and, with `keep_step_folder`, as `checkpoints/step-NNNNNN` too. Returns where it was kept.
/// `save_weights` and `save_optimizer` write to the paths given.
///
/// The step folder is complete on disk before the top-level files are touched, and the top-level
/// files are all written and synced before the first is renamed; a process killed in between
/// leaves the step folder, which [`latest_checkpoint`] then finds. A write that fails (a full
/// disk) changes nothing at the top level.
pub fn write_checkpoint(
    run_dir: &Path,
    card: &mut ModelCard,
    save_weights: impl Fn(&Path) -> Result<()>,
    save_optimizer: impl Fn(&Path) -> Result<()>,
    keep_step_folder: bool,
) -> Result<PathBuf> {
    let dest = run_dir
        .join("checkpoints")
        .join(format!("step-{:06}", card.step));
    let existed = dest.is_dir();
    let folder = PendingFile::new(&dest, "")?;
    let tmp = folder.path().to_path_buf();
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    save_weights(&tmp.join("model.safetensors"))?;
    save_optimizer(&tmp.join("optimizer.safetensors"))?;
    card.weights_sha256 = sha256_file(&tmp.join("model.safetensors"))?;
    card.optimizer_sha256 = sha256_file(&tmp.join("optimizer.safetensors"))?;
    card.written_unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let card_json = serde_json::to_vec_pretty(card).expect("card serialises");
    std::fs::write(tmp.join("model.json"), &card_json)
        .map_err(|e| Error::io(tmp.join("model.json"), e))?;
    let folder = folder.commit()?;

    // Top level: every file written and synced first, then renamed, card last.
    let mut pending = Vec::new();
    for file in CHECKPOINT_FILES {
        let p = PendingFile::new(&run_dir.join(file), "")?;
        std::fs::copy(folder.join(file), p.path()).map_err(|e| Error::io(run_dir.join(file), e))?;
        pending.push(p);
    }
    for p in pending {
        p.commit()?;
    }
    if keep_step_folder || existed {
        Ok(folder)
    } else {
        std::fs::remove_dir_all(&folder).map_err(|e| Error::io(&folder, e))?;
        Ok(run_dir.to_path_buf())
    }
}

/// The card of the model named by the `model` setting, if one is named.
pub fn model_card_of(s: &crate::settings::Settings) -> Result<Option<ModelCard>> {
    s.model
        .as_ref()
        .map(|dir| load_checkpoint(dir).map(|c| c.card))
        .transpose()
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
        .map_err(|e| Error::checkpoint_caused(&card_path, "not a geosr model card", e))?;
    let weights = dir.join("model.safetensors");
    let sha = sha256_file(&weights)?;
    if sha != card.weights_sha256 {
        return Err(Error::checkpoint(
            &weights,
            "SHA-256 differs from the one in model.json (a half-written or foreign file)",
        ));
    }
    let optimizer = dir.join("optimizer.safetensors");
    if !card.optimizer_sha256.is_empty()
        && optimizer.is_file()
        && sha256_file(&optimizer)? != card.optimizer_sha256
    {
        return Err(Error::checkpoint(
            &optimizer,
            "SHA-256 differs from the one in model.json (a half-written or foreign file)",
        ));
    }
    Ok(LoadedCheckpoint {
        dir: dir.to_path_buf(),
        card,
        optimizer,
        weights,
    })
}

/// The checkpoint to resume from in `dir`: a checkpoint folder as it is, or for a run directory
/// the complete checkpoint with the highest step among its top-level model and its
/// `checkpoints/step-*` folders. A top-level model left inconsistent by a process killed while
/// writing it is passed over for the step folder written just before.
pub fn latest_checkpoint(dir: &Path) -> Result<LoadedCheckpoint> {
    let top = load_checkpoint(dir);
    let mut best: Option<LoadedCheckpoint> = None;
    let steps = std::fs::read_dir(dir.join("checkpoints"))
        .map(|d| d.flatten().map(|e| e.path()).collect::<Vec<_>>())
        .unwrap_or_default();
    for p in steps {
        let is_step = p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("step-"));
        if !is_step {
            continue;
        }
        if let Ok(c) = load_checkpoint(&p) {
            if best.as_ref().is_none_or(|b| c.card.step > b.card.step) {
                best = Some(c);
            }
        }
    }
    match (top, best) {
        (Ok(t), Some(b)) if b.card.step > t.card.step => Ok(b),
        (Ok(t), _) => Ok(t),
        (Err(_), Some(b)) => {
            tracing::warn!(dir = %dir.display(), from = %b.dir.display(), "the top-level model is incomplete; resuming from the last complete checkpoint folder");
            Ok(b)
        }
        (Err(e), None) => Err(e),
    }
}
