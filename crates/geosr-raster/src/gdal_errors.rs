//! GDAL's own error reports, caught and checked.
//!
//! GDAL reports many failures only through its error handler: a GeoTIFF block that cannot be
//! written when the disk is full is reported while the block cache is flushed or the dataset is
//! closed, and GDAL 3.6's `GDALClose`/`GDALFlushCache` return nothing. [`setup`] installs one
//! handler for the process that keeps the failures (and sends warnings to the log instead of
//! stderr); [`Watch`] then tells whether an operation raised one, with GDAL's message.
//!
//! ```
//! use geosr_raster::gdal_errors::Watch;
//! let watch = Watch::start();
//! let gtiff = gdal::DriverManager::get_driver_by_name("GTiff").unwrap();
//! assert!(gtiff.create("/nonexistent/x.tif", 8, 8, 1).is_err());
//! let err = watch.check("/nonexistent/x.tif".as_ref(), "creating").unwrap_err();
//! assert!(err.to_string().starts_with("raster /nonexistent/x.tif: creating failed: "), "{err}");
//! ```
use gdal::errors::CplErrType;
use geosr::error::{Error, Result};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::Mutex;
use std::thread::ThreadId;

/// Failures kept for [`Watch`]; older ones are dropped.
const KEPT: usize = 64;

struct Failures {
    /// Failures raised so far in the process.
    count: u64,
    /// The most recent ones: sequence number, the thread that raised it, message.
    recent: VecDeque<(u64, Raiser, String)>,
}

/// The thread a failure was raised on. GDAL calls the handler on the thread that failed, so a
/// failure raised on one of our own (named) threads concerns only the watches on that thread:
/// the writing of one scene must not fail on another scene's error, and tests running side by
/// side must not see each other's. A failure on a thread GDAL started itself (unnamed, such as
/// its compression workers) concerns every watch.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Raiser {
    Ours(ThreadId),
    Gdal,
}

impl Raiser {
    fn current() -> Self {
        let t = std::thread::current();
        match t.name() {
            Some(_) => Raiser::Ours(t.id()),
            None => Raiser::Gdal,
        }
    }
}

static FAILURES: Mutex<Failures> = Mutex::new(Failures {
    count: 0,
    recent: VecDeque::new(),
});

/// Installs the handler (once per process) and caps GDAL's block cache.
///
/// GDAL's block cache defaults to 5% of RAM per process; with tiled, compressed output that many
/// dirty blocks pile up in the writer. Stages keep it at 64 MiB unless `GDAL_CACHEMAX` is set in
/// the environment.
pub fn setup() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("GDAL_CACHEMAX").is_none() {
            let _ = gdal::config::set_config_option("GDAL_CACHEMAX", "64");
        }
        gdal::config::set_error_handler(|kind, _code, msg| match kind {
            CplErrType::Failure | CplErrType::Fatal => {
                let mut f = FAILURES.lock().unwrap_or_else(|p| p.into_inner());
                f.count += 1;
                let n = f.count;
                f.recent
                    .push_back((n, Raiser::current(), msg.trim().to_owned()));
                if f.recent.len() > KEPT {
                    f.recent.pop_front();
                }
            }
            CplErrType::Warning => tracing::warn!("GDAL: {}", msg.trim()),
            _ => tracing::debug!("GDAL: {}", msg.trim()),
        });
    });
}

/// Notes where GDAL's failure count stands, to ask later whether something failed since.
#[derive(Debug, Clone, Copy)]
pub struct Watch {
    from: u64,
    /// The thread it watches (see [`Raiser`]).
    on: Raiser,
}

impl Watch {
    /// Starts watching GDAL's failures on this thread (and on GDAL's own threads).
    pub fn start() -> Self {
        setup();
        Watch {
            from: FAILURES.lock().unwrap_or_else(|p| p.into_inner()).count,
            on: Raiser::current(),
        }
    }

    /// GDAL's failure messages since [`Watch::start`], oldest first.
    pub fn failures(&self) -> Vec<String> {
        let f = FAILURES.lock().unwrap_or_else(|p| p.into_inner());
        f.recent
            .iter()
            .filter(|(n, by, _)| {
                *n > self.from && (*by == self.on || *by == Raiser::Gdal || self.on == Raiser::Gdal)
            })
            .map(|(_, _, m)| m.clone())
            .collect()
    }

    /// An error naming `path` and GDAL's first message (the root of any that followed) when
    /// something failed since the start.
    pub fn check(&self, path: &Path, doing: &str) -> Result<()> {
        match self.failures().first() {
            None => Ok(()),
            Some(first) => Err(Error::raster(path, format!("{doing} failed: {first}"))),
        }
    }
}

/// Runs `f` and fails if it, or GDAL's error handler while it ran, reported a failure.
pub fn checked<T>(
    path: &Path,
    doing: &str,
    f: impl FnOnce() -> std::result::Result<T, gdal::errors::GdalError>,
) -> Result<T> {
    let watch = Watch::start();
    let value = f().map_err(|e| {
        // GDAL's handler usually holds the more precise message of the two.
        match watch.check(path, doing) {
            Err(reported) => reported,
            Ok(()) => Error::raster_caused(path, format!("{doing} failed"), e),
        }
    })?;
    watch.check(path, doing)?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watch_sees_failures_of_its_own_thread_not_of_another_of_ours() {
        let watch = Watch::start();
        std::thread::Builder::new()
            .name("elsewhere".into())
            .spawn(|| {
                let gtiff = gdal::DriverManager::get_driver_by_name("GTiff").unwrap();
                assert!(gtiff.create("/nonexistent/a.tif", 8, 8, 1).is_err());
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(watch.failures().is_empty(), "{:?}", watch.failures());
        let gtiff = gdal::DriverManager::get_driver_by_name("GTiff").unwrap();
        assert!(gtiff.create("/nonexistent/b.tif", 8, 8, 1).is_err());
        let seen = watch.failures();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(seen[0].contains("b.tif"), "{seen:?}");
    }
}
