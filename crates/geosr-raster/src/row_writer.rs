//! Writing finished rows of an output raster on a thread of their own.
//!
//! GDAL's GeoTIFF driver compresses blocks on its worker threads but keeps only one job more in
//! flight than it has workers: a caller that writes a block row and then goes back to its own
//! work (blending the next tiles) leaves those workers idle until it writes again. Handing the
//! rows to a thread that does nothing but write keeps GDAL's queue fed while the caller works.
//!
//! ```
//! use geosr_raster::row_writer::RowWriter;
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("rows.tif");
//! let gtiff = gdal::DriverManager::get_driver_by_name("GTiff").unwrap();
//! let ds = gtiff.create_with_band_type::<u16, _>(&path, 4, 2, 1).unwrap();
//! let mut writer = RowWriter::start(ds, &path, 1);
//! let mut rows = writer.buffer(4 * 2);
//! rows.copy_from_slice(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
//! writer.write(1, 0, (4, 2), rows).unwrap();
//! let ds = writer.finish().unwrap();
//! let back = ds.rasterband(1).unwrap().read_as::<u16>((0, 0), (4, 2), (4, 2), None).unwrap();
//! assert_eq!(back.data(), &[1, 2, 3, 4, 5, 6, 7, 8]);
//! ```
use crate::gdal_errors::checked;
use gdal::raster::Buffer;
use gdal::Dataset;
use geosr::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

/// Rows of one band to write: `data` is `size.1` rows of `size.0` values from row `y0` on.
struct Rows {
    band: usize,
    y0: usize,
    size: (usize, usize),
    data: Vec<f32>,
}

/// A thread that owns a dataset and writes the rows it is handed, in order.
pub struct RowWriter {
    out: PathBuf,
    rows: Option<SyncSender<Rows>>,
    /// Buffers the thread is done with, for the caller to fill again.
    spare: Receiver<Vec<f32>>,
    thread: Option<JoinHandle<Result<Dataset>>>,
}

impl RowWriter {
    /// Starts the thread; at most `queued` row sets wait for it before [`RowWriter::write`]
    /// blocks, which bounds the memory held. `out` names the file in errors.
    pub fn start(ds: Dataset, out: &Path, queued: usize) -> Self {
        let (tx, rx) = sync_channel::<Rows>(queued.max(1));
        let (spare_tx, spare) = channel();
        let path = out.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("geosr-row-writer".into())
            .spawn(move || -> Result<Dataset> {
                for rows in rx {
                    let mut band = ds
                        .rasterband(rows.band)
                        .map_err(|e| Error::raster_caused(&path, "GDAL", e))?;
                    let doing = format!("writing rows {}..{}", rows.y0, rows.y0 + rows.size.1);
                    let mut buffer = Buffer::new(rows.size, rows.data);
                    checked(&path, &doing, || {
                        band.write((0, rows.y0 as isize), rows.size, &mut buffer)
                    })?;
                    // The caller may have stopped taking buffers back; that is fine.
                    let _ = spare_tx.send(buffer.into_shape_and_vec().1);
                }
                Ok(ds)
            })
            .expect("spawning a thread");
        RowWriter {
            out: out.to_path_buf(),
            rows: Some(tx),
            spare,
            thread: Some(thread),
        }
    }

    /// A buffer of `len` values to fill, reusing one the thread has written when there is one.
    pub fn buffer(&self, len: usize) -> Vec<f32> {
        let mut v = self.spare.try_recv().unwrap_or_default();
        v.resize(len, 0.0);
        v
    }

    /// Queues `size.1` rows of `size.0` values of band `band` (from 1) from row `y0` on. Fails
    /// with the thread's error if an earlier write failed.
    pub fn write(
        &mut self,
        band: usize,
        y0: usize,
        size: (usize, usize),
        data: Vec<f32>,
    ) -> Result<()> {
        let sent = match &self.rows {
            Some(tx) => tx
                .send(Rows {
                    band,
                    y0,
                    size,
                    data,
                })
                .is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The thread only stops taking rows when a write failed: report that failure.
        self.rows = None;
        match self.join() {
            Err(e) => Err(e),
            Ok(_) => Err(Error::raster(&self.out, "the row writer stopped early")),
        }
    }

    /// Waits for every queued row to be written and returns the dataset.
    pub fn finish(mut self) -> Result<Dataset> {
        self.rows = None;
        self.join()
    }

    fn join(&mut self) -> Result<Dataset> {
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(Error::raster(&self.out, "the row writer thread panicked")),
            None => Err(Error::raster(&self.out, "the row writer has already ended")),
        }
    }
}

impl Drop for RowWriter {
    /// Unfinished: the thread writes what it holds and the dataset closes before this returns,
    /// so a temporary file removed after it is not still open.
    fn drop(&mut self) {
        self.rows = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_is_reported_by_the_next_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("two.tif");
        let gtiff = gdal::DriverManager::get_driver_by_name("GTiff").unwrap();
        let ds = gtiff
            .create_with_band_type::<u16, _>(&path, 4, 2, 1)
            .unwrap();
        let mut writer = RowWriter::start(ds, &path, 1);
        // Band 2 does not exist: the thread fails and stops.
        writer.write(2, 0, (4, 1), vec![0.0; 4]).unwrap();
        let mut err = None;
        for _ in 0..10 {
            if let Err(e) = writer.write(1, 0, (4, 1), vec![0.0; 4]) {
                err = Some(e);
                break;
            }
        }
        let err = err.expect("a later write reports the failure");
        assert!(err.to_string().contains("two.tif"), "{err}");
    }

    #[test]
    fn rows_are_written_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("order.tif");
        let gtiff = gdal::DriverManager::get_driver_by_name("GTiff").unwrap();
        let ds = gtiff
            .create_with_band_type::<f32, _>(&path, 3, 4, 2)
            .unwrap();
        let mut writer = RowWriter::start(ds, &path, 2);
        for y in 0..4 {
            for b in 1..=2 {
                let mut rows = writer.buffer(3);
                rows.fill((y * 10 + b) as f32);
                writer.write(b, y, (3, 1), rows).unwrap();
            }
        }
        let ds = writer.finish().unwrap();
        for b in 1..=2 {
            let got = ds
                .rasterband(b)
                .unwrap()
                .read_as::<f32>((0, 0), (3, 4), (3, 4), None)
                .unwrap();
            let want: Vec<f32> = (0..4).flat_map(|y| [(y * 10 + b) as f32; 3]).collect();
            assert_eq!(got.data(), &want[..]);
        }
    }
}
