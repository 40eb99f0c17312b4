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

/// Failures kept for [`Watch`]; older ones are dropped.
const KEPT: usize = 64;

struct Failures {
    /// Failures raised so far in the process.
    count: u64,
    /// The most recent ones, with their sequence number.
    recent: VecDeque<(u64, String)>,
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
                f.recent.push_back((n, msg.trim().to_owned()));
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
}

impl Watch {
    pub fn start() -> Self {
        setup();
        Watch {
            from: FAILURES.lock().unwrap_or_else(|p| p.into_inner()).count,
        }
    }

    /// GDAL's failure messages since [`Watch::start`], oldest first.
    pub fn failures(&self) -> Vec<String> {
        let f = FAILURES.lock().unwrap_or_else(|p| p.into_inner());
        f.recent
            .iter()
            .filter(|(n, _)| *n > self.from)
            .map(|(_, m)| m.clone())
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
