//! `metrics.csv` of a training run: one row per logged step or validation, rewritten atomically
//! at every row so the file on disk is always whole, and cut back to the checkpoint's step when
//! a run is resumed (rows a killed run logged after its last checkpoint are not its history).
//!
//! ```
//! use geosr::metrics_log::MetricsLog;
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("metrics.csv");
//! let mut log = MetricsLog::open(&path, None).unwrap();
//! for step in [10, 20, 30] {
//!     log.append(&format!("{step},0,0.5,,,,,1e-3,1.0")).unwrap();
//! }
//! let resumed = MetricsLog::open(&path, Some(20)).unwrap();
//! assert_eq!(resumed.rows().count(), 2);
//! ```
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The columns of `metrics.csv`.
pub const HEADER: &str =
    "step,epoch,train_loss,val_psnr,val_ssim,bicubic_psnr,bicubic_ssim,lr,elapsed_s";

/// One row: a logged step (mean training loss since the last row, learning rate) or a
/// validation (PSNR and SSIM of the model and of bicubic).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricsRow {
    pub step: u64,
    pub epoch: u32,
    pub train_loss: Option<f64>,
    /// SR PSNR, SR SSIM, bicubic PSNR, bicubic SSIM.
    pub validation: Option<[f64; 4]>,
    pub lr: Option<f64>,
    pub elapsed_s: f64,
}

impl MetricsRow {
    /// The row as `metrics.csv` holds it (the columns of [`HEADER`]).
    pub fn csv(&self) -> String {
        let v =
            |x: Option<f64>, digits: usize| x.map(|x| format!("{x:.digits$}")).unwrap_or_default();
        let val = |i: usize| self.validation.map(|q| q[i]);
        format!(
            "{},{},{},{},{},{},{},{},{:.1}",
            self.step,
            self.epoch,
            v(self.train_loss, 6),
            v(val(0), 4),
            v(val(1), 5),
            v(val(2), 4),
            v(val(3), 5),
            self.lr.map(|lr| format!("{lr:.3e}")).unwrap_or_default(),
            self.elapsed_s
        )
    }
}

/// The rows of a run's `metrics.csv`.
#[derive(Debug)]
pub struct MetricsLog {
    path: PathBuf,
    rows: Vec<String>,
}

impl MetricsLog {
    /// A new log, or with `resume_step` the existing one's rows up to that step. Nothing is
    /// written until the first [`MetricsLog::append`], so a run that fails to start changes
    /// nothing.
    pub fn open(path: &Path, resume_step: Option<u64>) -> Result<Self> {
        let mut rows = Vec::new();
        if let (Some(step), true) = (resume_step, path.is_file()) {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            let mut lines = text.lines();
            if lines.next() != Some(HEADER) {
                return Err(Error::checkpoint(
                    path,
                    format!("does not start with the header `{HEADER}`"),
                ));
            }
            rows = lines
                .filter(|l| {
                    l.split(',')
                        .next()
                        .and_then(|s| s.parse::<u64>().ok())
                        .is_some_and(|s| s <= step)
                })
                .map(str::to_owned)
                .collect();
        }
        Ok(MetricsLog {
            path: path.to_path_buf(),
            rows,
        })
    }

    /// Adds a row (the columns of [`HEADER`]) and writes the file.
    pub fn append(&mut self, row: &str) -> Result<()> {
        self.rows.push(row.to_owned());
        let mut text = String::with_capacity(HEADER.len() + 1 + self.rows.len() * 64);
        text.push_str(HEADER);
        text.push('\n');
        for r in &self.rows {
            text.push_str(r);
            text.push('\n');
        }
        crate::atomic::write_atomic(&self.path, text.as_bytes())
    }

    /// The rows so far, without the header.
    pub fn rows(&self) -> impl Iterator<Item = &str> {
        self.rows.iter().map(String::as_str)
    }
}
