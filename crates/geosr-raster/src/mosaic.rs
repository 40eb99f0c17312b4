//! Mosaicking super-resolved tiles into one georeferenced raster, with feathered blending
//! across tile overlaps and bounded memory.
//!
//! Tiles arrive in raster order. Weighted sums are kept only for the rows that a tile still to
//! come can touch; rows above the current tile row are final and are written out, so memory
//! grows with the output width times one tile row, not with the raster. The output goes to a
//! temporary file beside the final path and is renamed into place only when complete (see
//! [`geosr::atomic`]); every GDAL failure while writing, flushing or closing is an error
//! ([`crate::gdal_errors`]), and a failed run leaves nothing at the output path.
use crate::consistency::{Consistency, ConsistencyReport, CountedOnce};
use crate::evaluate::ValidRule;
use crate::gdal_errors::{checked, Watch};
use crate::raster::RasterSource;
use crate::row_writer::RowWriter;
use gdal::raster::RasterCreationOptions;
use gdal::DriverManager;
use geosr::atomic::PendingFile;
use geosr::error::{Error, Result};
use geosr::rounding::round_half_away;
use geosr::settings::OutputFormat;
use geosr::tile::TileBatch;
use std::path::{Path, PathBuf};

/// Output options.
#[derive(Debug, Clone)]
pub struct MosaicOptions {
    /// GDAL creation options, e.g. `TILED=YES,COMPRESS=DEFLATE`.
    pub creation_options: Vec<String>,
    pub format: OutputFormat,
    /// LR pixels of overlap between neighbouring tiles (the feathering width is factor × this).
    pub overlap: u32,
    /// Write the no-reference consistency report beside the output ([`crate::consistency`]),
    /// degrading the output back this way.
    pub consistency: Option<ConsistencySpec>,
}

/// How the consistency report brings the output back to the input's resolution: the model's
/// degradation (its deterministic part).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConsistencySpec {
    pub antialias: bool,
    pub blur_sigma: f64,
    /// Also write the per-pixel inconsistency map (`<name>.report.tif`).
    pub map: bool,
}

/// Tiles named in the consistency report as the ones to look at.
const WORST_TILES: usize = 10;

/// Where the consistency report of `output` goes: `<output without extension>.report.<ext>`.
pub fn report_path(output: &Path, ext: &str) -> PathBuf {
    let stem = output
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    output.with_file_name(format!("{stem}.report.{ext}"))
}

/// Feathering weight of a tile's pixel `d` pixels in from a side that has a neighbour, with `o`
/// pixels of overlap: zero for the outer quarter, where a tile's own edge handling shows, then a
/// linear ramp to one at three quarters. Where one tile's weight is 0 its neighbour's is 1, so
/// every pixel is covered.
pub fn feather(d: usize, o: usize) -> f32 {
    if o == 0 {
        1.0
    } else {
        let o = o as f32;
        ((d as f32 + 0.5 - o / 4.0) / (o / 2.0)).clamp(0.0, 1.0)
    }
}

/// The output being assembled.
pub struct Mosaic {
    src: RasterSource,
    out: PathBuf,
    /// The temporary file being written; removed if the mosaic is dropped unfinished.
    pending: Option<PendingFile>,
    /// Writes finished rows on its own thread (owns the dataset until [`Mosaic::finish`]).
    writer: Option<RowWriter>,
    opts: MosaicOptions,
    factor: usize,
    bands: usize,
    width: usize,
    height: usize,
    nodata: Option<f64>,
    integer_range: Option<(f64, f64)>,
    /// First output row still held in memory.
    lo: usize,
    /// Weighted sums, `rows × bands × width`, and weights, `rows × width`, from row `lo` on:
    /// each band of a row is one contiguous run, so the loops over it vectorise.
    sum: Vec<f32>,
    weight: Vec<f32>,
    rows: usize,
    pub tiles_written: usize,
    /// Rows per block of the output file.
    block_rows: usize,
    /// The no-reference report being gathered, when asked for.
    consistency: Option<Consistency>,
    valid: ValidRule,
    /// Input pixels already in the report (none without a report).
    counted: CountedOnce,
}

fn gdal_err(path: &Path) -> impl Fn(gdal::errors::GdalError) -> Error + '_ {
    move |e| Error::raster_caused(path, "GDAL", e)
}

impl Mosaic {
    /// Prepares `out` for the SR version of `source` at `factor`× its resolution.
    pub fn create(source: &Path, out: &Path, factor: usize, opts: MosaicOptions) -> Result<Self> {
        let src = RasterSource::open(source, &[])?;
        let info = &src.info;
        let (width, height, bands) = (info.width * factor, info.height * factor, info.bands.len());
        let pending = PendingFile::new(out, ".tif")?;
        let tmp = pending.path().to_path_buf();
        let watch = Watch::start();
        let driver = DriverManager::get_driver_by_name("GTiff").map_err(gdal_err(out))?;
        let mut co: Vec<String> = opts.creation_options.clone();
        // Rows are written band by band; with band-interleaved blocks each band's block row is
        // complete when written, so GDAL never has to evict (and later rewrite) a half-filled
        // compressed block, whatever the raster's width.
        if !has_option(&co, "INTERLEAVE") {
            co.push("INTERLEAVE=BAND".into());
        }
        if opts.format == OutputFormat::Cog {
            // The COG is made from this intermediate at the end; keep it simple and fast.
            co = vec![
                "TILED=YES".into(),
                "BIGTIFF=IF_SAFER".into(),
                "INTERLEAVE=BAND".into(),
            ];
        }
        // Compression, not blending, is most of the writer's work: let GDAL compress the blocks
        // of each written block row on every core unless the user chose otherwise.
        if !has_option(&co, "NUM_THREADS") {
            co.push("NUM_THREADS=ALL_CPUS".into());
        }
        let co = RasterCreationOptions::from_iter(co.iter().map(String::as_str));
        let ds =
            match info.data_type.as_str() {
                "Byte" | "UInt8" => driver
                    .create_with_band_type_with_options::<u8, _>(&tmp, width, height, bands, &co),
                "UInt16" => driver
                    .create_with_band_type_with_options::<u16, _>(&tmp, width, height, bands, &co),
                "Int16" => driver
                    .create_with_band_type_with_options::<i16, _>(&tmp, width, height, bands, &co),
                "UInt32" => driver
                    .create_with_band_type_with_options::<u32, _>(&tmp, width, height, bands, &co),
                "Int32" => driver
                    .create_with_band_type_with_options::<i32, _>(&tmp, width, height, bands, &co),
                "Float64" => driver
                    .create_with_band_type_with_options::<f64, _>(&tmp, width, height, bands, &co),
                _ => driver
                    .create_with_band_type_with_options::<f32, _>(&tmp, width, height, bands, &co),
            }
            .map_err(|e| Error::raster_caused(out, "cannot create the output", e))?;
        watch.check(out, "creating the output")?;
        let mut ds = ds;
        let g = info.geotransform;
        let f = factor as f64;
        ds.set_geo_transform(&[g[0], g[1] / f, g[2] / f, g[3], g[4] / f, g[5] / f])
            .map_err(gdal_err(out))?;
        if !info.crs.is_empty() {
            ds.set_projection(&info.crs).map_err(gdal_err(out))?;
        }
        // The nodata the source declares, else the implicit 0 of integer rasters.
        let nodata = info
            .nodata
            .or(if info.is_integer() { Some(0.0) } else { None });
        for b in 1..=bands {
            let mut band = ds.rasterband(b).map_err(gdal_err(out))?;
            if let Some(nd) = nodata {
                band.set_no_data_value(Some(nd)).map_err(gdal_err(out))?;
            }
            let interp = src.info.colour[b - 1].clone();
            if let Ok(ci) = gdal::raster::ColorInterpretation::from_name(&interp) {
                let _ = band.set_color_interpretation(ci);
            }
        }
        let block_rows = ds
            .rasterband(1)
            .map_err(gdal_err(out))?
            .block_size()
            .1
            .max(1);
        let integer_range = match info.data_type.as_str() {
            "Byte" | "UInt8" => Some((0.0, 255.0)),
            "UInt16" => Some((0.0, 65535.0)),
            "Int16" => Some((-32768.0, 32767.0)),
            "UInt32" => Some((0.0, 4294967295.0)),
            "Int32" => Some((-2147483648.0, 2147483647.0)),
            _ => None,
        };
        // One block row of every band may wait for the writer thread.
        let writer = RowWriter::start(ds, out, bands);
        let consistency = opts.consistency.map(|c| {
            let report = Consistency::new(bands, factor, c.antialias, c.blur_sigma, WORST_TILES);
            if c.map {
                report.with_map(info.width, info.height)
            } else {
                report
            }
        });
        let valid = ValidRule::for_raster(&src.info, None);
        let counted = match consistency {
            Some(_) => CountedOnce::new(info.width, info.height, opts.overlap as usize),
            None => CountedOnce::new(0, 0, 0),
        };
        Ok(Mosaic {
            src,
            out: out.to_path_buf(),
            pending: Some(pending),
            writer: Some(writer),
            opts,
            factor,
            bands,
            width,
            height,
            nodata,
            integer_range,
            lo: 0,
            sum: Vec::new(),
            weight: Vec::new(),
            rows: 0,
            tiles_written: 0,
            block_rows,
            counted,
            consistency,
            valid,
        })
    }

    /// The output's upscaling factor.
    pub fn factor(&self) -> usize {
        self.factor
    }

    /// Output megapixels (width × height).
    pub fn output_megapixels(&self) -> f64 {
        (self.width * self.height) as f64 / 1e6
    }

    /// Bytes held for blending right now (capacity, which is what the process holds).
    pub fn buffer_bytes(&self) -> usize {
        (self.sum.capacity() + self.weight.capacity()) * 4
    }

    /// Grows the held rows to reach output row `until`. Rows are whole runs of the buffers
    /// (`[row][band][x]`), so growing and dropping rows never copies the buffers into new ones
    /// once the first tile row has set their capacity.
    fn ensure_rows(&mut self, until: usize) {
        let need = until.saturating_sub(self.lo);
        if need > self.rows {
            self.sum.resize(need * self.width * self.bands, 0.0);
            self.weight.resize(need * self.width, 0.0);
            self.rows = need;
        }
    }

    /// Blends one batch of SR tiles in (normalised pixels; the batch's band offsets and scales
    /// restore native values).
    pub fn add(&mut self, batch: &TileBatch) -> Result<()> {
        let f = self.factor;
        let (th, tw) = (batch.height, batch.width);
        // Sides on the raster's border keep full weight ([`feather`] on the others).
        let o = self.opts.overlap as usize * f;
        let ramp = move |d: usize| feather(d, o);
        let side = |p: usize, size: usize, low: bool, high: bool| -> f32 {
            let a = if low { ramp(p) } else { 1.0 };
            let b = if high { ramp(size - 1 - p) } else { 1.0 };
            a.min(b)
        };
        let mut column_weights = Vec::new();
        for (i, t) in batch.tiles.iter().enumerate() {
            let [x, y, w, h] = t.window.map(|v| v as usize);
            let (x0, y0, vw, vh) = (x * f, y * f, w * f, h * f);
            if y0 < self.lo {
                return Err(Error::Contract(format!(
                    "{}: tile at row {y} arrived after rows up to {} were written: tiles must come in raster order",
                    self.out.display(),
                    self.lo / f
                )));
            }
            if x0 + vw > self.width || vw > tw || vh > th {
                return Err(Error::Contract(format!(
                    "{}: tile window {x},{y} {w}×{h} does not fit the raster or its {tw}×{th} pixels",
                    self.out.display()
                )));
            }
            // Rows above this tile's top can no longer change; write them in whole block rows of
            // the output, since a compressed block written twice leaves its first copy as dead
            // space in the file.
            self.flush_until(y0 - y0 % self.block_rows)?;
            self.ensure_rows(y0 + vh);
            let px = &batch.pixels[i * batch.tile_len()..(i + 1) * batch.tile_len()];
            let (left, right) = (x0 > 0, x0 + vw < self.width);
            let (top, bottom) = (y0 > 0, y0 + vh < self.height);
            column_weights.clear();
            column_weights.extend((0..vw).map(|tx| side(tx, vw, left, right)));
            let (w_out, bands) = (self.width, self.bands);
            for ty in 0..vh {
                let wy = side(ty, vh, top, bottom);
                if wy == 0.0 {
                    continue;
                }
                let row = y0 + ty - self.lo;
                let weights = &mut self.weight[row * w_out + x0..][..vw];
                for (acc, wx) in weights.iter_mut().zip(&column_weights) {
                    *acc += wy * wx;
                }
                for b in 0..bands {
                    let (scale, offset) = (batch.band_scale[b], batch.band_offset[b]);
                    let src = &px[b * th * tw + ty * tw..][..vw];
                    let dst = &mut self.sum[(row * bands + b) * w_out + x0..][..vw];
                    for ((acc, v), wx) in dst.iter_mut().zip(src).zip(&column_weights) {
                        let wgt = wy * wx;
                        // A zero weight must not let a NaN of the tile's edge in.
                        *acc += if wgt > 0.0 {
                            wgt * (v * scale + offset)
                        } else {
                            0.0
                        };
                    }
                }
            }
            if let Some(c) = self.consistency.as_mut() {
                // The LR the tile was made from; each LR pixel counts once, away from tile edges.
                let lr = self
                    .src
                    .read_window(x as u32, y as u32, w as u32, h as u32)?;
                let mut count = self.valid.mask(&lr, bands, w * h);
                let sr = batch.native_tile(i, vw, vh);
                self.counted.claim(x, y, w, h, &mut count);
                c.add_tile(&sr, &lr, &count, (w, h), t.window);
            }
            self.tiles_written += 1;
        }
        Ok(())
    }

    /// Writes out every held row above `row` (output pixels).
    fn flush_until(&mut self, row: usize) -> Result<()> {
        let n = row.saturating_sub(self.lo).min(self.rows);
        if n == 0 {
            return Ok(());
        }
        let (w, f, bands) = (self.width, self.factor, self.bands);
        // Nodata: an output pixel is nodata where its source (LR) pixel is.
        let src_y0 = self.lo / f;
        let src_y1 = (self.lo + n - 1) / f + 1;
        let src_w = self.src.info.width;
        let nodata_mask = match self.nodata {
            Some(nd) => {
                let src = self.src.read_window(
                    0,
                    src_y0 as u32,
                    src_w as u32,
                    (src_y1 - src_y0) as u32,
                )?;
                Some(nodata_mask(
                    &src,
                    bands,
                    src_w * (src_y1 - src_y0),
                    nd,
                    self.src.info.nodata.is_some(),
                ))
            }
            None => None,
        };
        let plane = src_w * (src_y1 - src_y0);
        let writer = self.writer.as_mut().expect("open until finished");
        for b in 0..bands {
            let mut out = writer.buffer(n * w);
            for r in 0..n {
                let sy = (self.lo + r) / f - src_y0;
                let sums = &self.sum[(r * bands + b) * w..][..w];
                let weights = &self.weight[r * w..][..w];
                let dst = &mut out[r * w..][..w];
                for ((o, s), wt) in dst.iter_mut().zip(sums).zip(weights) {
                    *o = s / wt.max(1e-12);
                }
                if let Some((lo, hi)) = self.integer_range {
                    let (lo, hi) = (lo as f32, hi as f32);
                    for o in dst.iter_mut() {
                        *o = round_half_away(*o).clamp(lo, hi);
                    }
                }
                match (&nodata_mask, self.nodata) {
                    (Some(mask), Some(nd)) => {
                        let mask_row = &mask[b * plane + sy * src_w..][..src_w];
                        let nd32 = nd as f32;
                        // A valid pixel must not read as nodata: nudge it by one unit.
                        let nudged = if self.integer_range.is_some_and(|(_, hi)| nd < hi) {
                            (nd + 1.0) as f32
                        } else {
                            (nd - 1.0) as f32
                        };
                        // Each source pixel covers `f` output pixels of the row.
                        for (run, &masked) in dst.chunks_mut(f).zip(mask_row) {
                            for o in run {
                                *o = if masked {
                                    nd32
                                } else if *o as f64 == nd {
                                    nudged
                                } else {
                                    *o
                                };
                            }
                        }
                    }
                    _ => {
                        for (o, wt) in dst.iter_mut().zip(weights) {
                            if *wt == 0.0 {
                                *o = f32::NAN;
                            }
                        }
                    }
                }
            }
            writer.write(b + 1, self.lo, (w, n), out)?;
        }
        // Drop the written rows from the buffers.
        let keep = self.rows - n;
        self.sum.copy_within(n * w * bands.., 0);
        self.sum.truncate(keep * w * bands);
        self.weight.copy_within(n * w.., 0);
        self.weight.truncate(keep * w);
        self.rows = keep;
        self.lo += n;
        Ok(())
    }

    /// Writes the remaining rows, closes the file and renames it into place (through a COG
    /// copy when asked). Returns the output path. Any GDAL failure while writing, flushing or
    /// closing fails it, and nothing appears at the output path.
    pub fn finish(mut self) -> Result<PathBuf> {
        if self.lo + self.rows < self.height {
            return Err(Error::Contract(format!(
                "the mosaic got tiles down to output row {} of {}: the dataflow ended early",
                self.lo + self.rows,
                self.height
            )));
        }
        self.flush_until(self.height)?;
        // Declared in this order so that on an early return the dataset closes before the
        // temporary file is removed.
        let pending = self.pending.take().expect("pending until finished");
        let mut ds = self.writer.take().expect("open until finished").finish()?;
        checked(&self.out, "flushing the output", || ds.flush_cache())?;
        let watch = Watch::start();
        if self.opts.format == OutputFormat::Cog {
            // The COG is a copy of the finished intermediate, written atomically itself.
            let cog = PendingFile::new(&self.out, ".cog.tif")?;
            let driver = DriverManager::get_driver_by_name("COG").map_err(gdal_err(&self.out))?;
            let mut co = self.opts.creation_options.clone();
            if !has_option(&co, "NUM_THREADS") {
                co.push("NUM_THREADS=ALL_CPUS".into());
            }
            let co = RasterCreationOptions::from_iter(co.iter().map(String::as_str));
            checked(&self.out, "writing the COG", || {
                ds.create_copy(&driver, cog.path(), &co).map(drop)
            })?;
            drop(ds);
            watch.check(&self.out, "closing the output")?;
            drop(pending);
            let reports = self.write_report()?;
            return cog.commit().inspect_err(|_| {
                reports.iter().for_each(|r| drop(std::fs::remove_file(r)));
            });
        }
        drop(ds); // closes the GeoTIFF: its last blocks and directory are written here
        watch.check(&self.out, "closing the output")?;
        let reports = self.write_report()?;
        pending.commit().inspect_err(|_| {
            reports.iter().for_each(|r| drop(std::fs::remove_file(r)));
        })
    }

    /// The consistency report gathered so far, if one was asked for.
    pub fn consistency_report(&self) -> Option<ConsistencyReport> {
        let c = self.consistency.as_ref()?;
        Some(c.report(self.src.info.geotransform))
    }

    /// Writes the consistency report (JSON and Markdown) beside the output, each atomically;
    /// returns the files written.
    fn write_report(&self) -> Result<Vec<PathBuf>> {
        let Some(report) = self.consistency_report() else {
            return Ok(Vec::new());
        };
        let input = self.src.info.path.display().to_string();
        let json = serde_json::json!({
            "input": input,
            "output": self.out.display().to_string(),
            "factor": self.factor,
            "consistency": report,
        });
        let md = report.markdown(
            &input,
            &self.out.display().to_string(),
            &self.src.info.colour,
        );
        let (json_path, md_path) = (report_path(&self.out, "json"), report_path(&self.out, "md"));
        let text = serde_json::to_string_pretty(&json).expect("the report serialises") + "\n";
        geosr::atomic::write_atomic(&json_path, text.as_bytes())?;
        geosr::atomic::write_atomic(&md_path, md.as_bytes())?;
        let mut written = vec![json_path, md_path];
        if let Some(map) = self.consistency.as_ref().and_then(Consistency::map) {
            let path = report_path(&self.out, "tif");
            let info = &self.src.info;
            crate::raster::write_geotiff::<f32>(
                &path,
                1,
                map.width,
                map.height,
                &map.values,
                info.geotransform,
                &info.crs,
                Some(f64::NAN),
            )?;
            written.push(path);
        }
        Ok(written)
    }
}

/// Whether the creation options set `key`.
fn has_option(options: &[String], key: &str) -> bool {
    options.iter().any(|o| {
        o.split_once('=')
            .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case(key))
    })
}

/// Which source pixels are nodata, per band (`bands × plane`): where the source declares a
/// nodata value, a band's pixel equal to it (or NaN); where it declares none (the implicit 0 of
/// integer rasters), a pixel whose bands all equal it, for every band.
fn nodata_mask(src: &[f32], bands: usize, plane: usize, nd: f64, declared: bool) -> Vec<bool> {
    let is = |v: f32| v as f64 == nd;
    if declared {
        src.iter().map(|&v| is(v) || v.is_nan()).collect()
    } else {
        let all: Vec<bool> = (0..plane)
            .map(|i| (0..bands).all(|b| is(src[b * plane + i])))
            .collect();
        (0..bands).flat_map(|_| all.iter().copied()).collect()
    }
}

impl Drop for Mosaic {
    /// An unfinished mosaic closes its dataset before its temporary file is removed (the
    /// [`PendingFile`] does that): nothing half-written stays behind.
    fn drop(&mut self) {
        self.writer = None;
        self.pending = None;
    }
}
