//! Files that appear whole or not at all.
//!
//! Everything geosr writes (rasters, checkpoints, the ONNX export, reports, PNGs, CSVs, counts)
//! goes to a hidden temporary sibling of its final path, `.<name>.<pid>.tmp<suffix>`, is synced
//! to disk, and is renamed into place only when complete. A failure, or an early return, removes
//! the temporary, so a failed write never replaces a good earlier file. A process killed outright
//! cannot clean up after itself; its temporaries are removed the next time the same output is
//! written (a temporary whose process is no longer running is stale).
//!
//! ```
//! use geosr::atomic::{write_atomic, PendingFile};
//! let dir = tempfile::tempdir().unwrap();
//! let out = dir.path().join("report.json");
//! write_atomic(&out, b"{}").unwrap();
//! assert_eq!(std::fs::read(&out).unwrap(), b"{}");
//!
//! // An abandoned write leaves nothing behind, and the earlier file stays.
//! let pending = PendingFile::new(&out, "").unwrap();
//! std::fs::write(pending.path(), b"half").unwrap();
//! drop(pending);
//! assert_eq!(std::fs::read(&out).unwrap(), b"{}");
//! assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
//! ```
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// A file or folder being written under a temporary name beside its destination.
#[derive(Debug)]
pub struct PendingFile {
    dest: PathBuf,
    tmp: PathBuf,
    committed: bool,
}

impl PendingFile {
    /// Prepares a write of `dest`: creates its folder, removes stale temporaries of `dest` left by
    /// processes that are gone, and picks this process's temporary name (`suffix` is appended,
    /// e.g. `.tif`).
    pub fn new(dest: &Path, suffix: &str) -> Result<Self> {
        let dir = parent(dest);
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        remove_stale_temporaries(dest);
        let tmp = temporary_name(dest, std::process::id(), suffix);
        remove_any(&tmp).map_err(|e| Error::io(&tmp, e))?;
        // A folder that cannot take the file fails here, naming the destination, rather than
        // later in a driver's words about a hidden temporary name.
        std::fs::File::create(&tmp)
            .and_then(|_| std::fs::remove_file(&tmp))
            .map_err(|e| Error::io(dest, e))?;
        Ok(PendingFile {
            dest: dest.to_path_buf(),
            tmp,
            committed: false,
        })
    }

    /// Where to write now.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Where the file goes when complete.
    pub fn destination(&self) -> &Path {
        &self.dest
    }

    /// Syncs the temporary (a file, or every file of a folder) to disk and renames it into
    /// place. A folder replaces an existing folder of the same name.
    pub fn commit(mut self) -> Result<PathBuf> {
        sync_tree(&self.tmp)?;
        if self.tmp.is_dir() && self.dest.is_dir() {
            std::fs::remove_dir_all(&self.dest).map_err(|e| Error::io(&self.dest, e))?;
        }
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| Error::io(&self.dest, e))?;
        self.committed = true;
        // The rename itself is durable once the folder's entry is on disk.
        if let Ok(d) = std::fs::File::open(parent(&self.dest)) {
            let _ = d.sync_all();
        }
        Ok(self.dest.clone())
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = remove_any(&self.tmp);
        }
    }
}

/// Writes `bytes` to `path` atomically (see the module documentation).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let pending = PendingFile::new(path, "")?;
    std::fs::write(pending.path(), bytes).map_err(|e| Error::io(path, e))?;
    pending.commit().map(drop)
}

/// `.<name>.<pid>.tmp<suffix>` beside `dest`.
pub fn temporary_name(dest: &Path, pid: u32, suffix: &str) -> PathBuf {
    dest.with_file_name(format!(".{}.{pid}.tmp{suffix}", file_name(dest)))
}

/// Removes the temporaries of `dest` whose writing process is no longer running. Returns how
/// many were removed.
pub fn remove_stale_temporaries(dest: &Path) -> usize {
    let prefix = format!(".{}.", file_name(dest));
    let Ok(entries) = std::fs::read_dir(parent(dest)) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.split_once(".tmp"))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !process_alive(pid) && remove_any(&entry.path()).is_ok() {
            tracing::info!(path = %entry.path().display(), "removed a stale temporary file of a run that is gone");
            removed += 1;
        }
    }
    removed
}

/// Whether a process with this id runs on this host.
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks whether the process exists and may be signalled.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn parent(p: &Path) -> &Path {
    p.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn remove_any(p: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// fsync of a file, or of every file in a folder and the folder itself: write errors that the
/// kernel deferred (a full disk, an I/O error) surface here rather than after the rename.
fn sync_tree(p: &Path) -> Result<()> {
    if p.is_dir() {
        for entry in std::fs::read_dir(p).map_err(|e| Error::io(p, e))? {
            sync_tree(&entry.map_err(|e| Error::io(p, e))?.path())?;
        }
    }
    let f = std::fs::File::open(p).map_err(|e| Error::io(p, e))?;
    f.sync_all().map_err(|e| Error::io(p, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_temporaries_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("sr.tif");
        // A pid that cannot be running (above the kernel's pid_max) and our own live one.
        let dead = temporary_name(&out, 99_999_999, ".tif");
        std::fs::write(&dead, b"x").unwrap();
        let other = dir.path().join(".other.tif.99999999.tmp.tif");
        std::fs::write(&other, b"x").unwrap();
        let pending = PendingFile::new(&out, ".tif").unwrap();
        std::fs::write(pending.path(), b"mine").unwrap();
        assert!(!dead.exists(), "the dead run's temporary is gone");
        assert!(other.exists(), "another output's temporary stays");
        assert_eq!(remove_stale_temporaries(&out), 0, "ours is alive");
        assert_eq!(pending.commit().unwrap(), out);
        assert_eq!(std::fs::read(&out).unwrap(), b"mine");
    }

    #[test]
    fn folders_commit_whole_and_replace() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("checkpoints/step-000004");
        for body in [&b"one"[..], b"two"] {
            let p = PendingFile::new(&dest, "").unwrap();
            std::fs::create_dir_all(p.path()).unwrap();
            std::fs::write(p.path().join("model.json"), body).unwrap();
            p.commit().unwrap();
        }
        assert_eq!(std::fs::read(dest.join("model.json")).unwrap(), b"two");
        let left: Vec<_> = std::fs::read_dir(dest.parent().unwrap()).unwrap().collect();
        assert_eq!(left.len(), 1);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("model.json");
        write_atomic(&out, b"good").unwrap();
        // A folder where the file should go: the rename fails, the temporary is removed.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir_all(blocked.join("inside")).unwrap();
        assert!(write_atomic(&blocked, b"x").is_err());
        assert_eq!(std::fs::read(&out).unwrap(), b"good");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
    }
}
