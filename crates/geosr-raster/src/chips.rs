//! Chip planning for training: which windows of which rasters become HR chips, how they are
//! normalised, which are held out for validation, and in which order they are served.
//!
//! `tile-ingest` is a thin shell around [`ChipPlan`]; the benchmark's single-process loop and
//! the tests use it directly.
use crate::raster::{list_rasters, RasterSource};
use geosr::card::Normalisation;
use geosr::error::{Error, Result};
use geosr::settings::Settings;
use geosr::tile::{Split, TileBatch, TileGeometry, Wire};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;

/// Per-band normalisation from samples of valid pixels: the 1st percentile, the 1st–99th
/// percentile span and the median of each band.
fn normalisation_from_samples(samples: &mut [Vec<f32>]) -> Normalisation {
    let mut offset = Vec::new();
    let mut scale = Vec::new();
    let mut fill = Vec::new();
    for s in samples.iter_mut() {
        s.sort_by(|a, b| a.total_cmp(b));
        let q = |p: f64| {
            if s.is_empty() {
                0.0
            } else {
                s[((s.len() - 1) as f64 * p).round() as usize]
            }
        };
        let (lo, mid, hi) = (q(0.01), q(0.5), q(0.99));
        offset.push(lo);
        scale.push(if hi > lo { hi - lo } else { 1.0 });
        fill.push(mid);
    }
    Normalisation {
        offset,
        scale,
        fill,
    }
}

/// How nodata pixels are recognised in a raster.
#[derive(Debug, Clone, Copy, PartialEq)]
enum NodataRule {
    /// A declared or configured value, in any band.
    Value(f64),
    /// Integer rasters without a declared value: 0 in every band.
    AllZero,
    /// Float rasters without a declared value: NaN.
    NaN,
}

impl NodataRule {
    fn mask(self, chip: &[f32], c: usize, n: usize) -> Vec<bool> {
        (0..n)
            .map(|p| match self {
                NodataRule::Value(v) => {
                    (0..c).any(|b| chip[b * n + p] as f64 == v || chip[b * n + p].is_nan())
                }
                NodataRule::AllZero => (0..c).all(|b| chip[b * n + p] == 0.0),
                NodataRule::NaN => (0..c).any(|b| chip[b * n + p].is_nan()),
            })
            .collect()
    }
    fn declared(self) -> Option<f64> {
        match self {
            NodataRule::Value(v) => Some(v),
            NodataRule::AllZero => Some(0.0),
            NodataRule::NaN => Some(f64::NAN),
        }
    }
}

/// One chip: raster index and HR window origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chip {
    pub raster: usize,
    pub x: u32,
    pub y: u32,
}

/// The rasters, the kept chips, the split, the normalisation and the serving order.
pub struct ChipPlan {
    sources: Vec<RasterSource>,
    lr_sources: Option<Vec<RasterSource>>,
    nodata: Vec<NodataRule>,
    pub norm: Normalisation,
    pub train: Vec<Chip>,
    pub val: Vec<Chip>,
    /// Chips looked at and chips skipped for nodata, for the run log.
    pub candidates: usize,
    pub skipped_nodata: usize,
    chip: u32,
    factor: u32,
    batch: usize,
    seed: u64,
    augment: bool,
    /// The epoch whose shuffled order is held, and that order.
    shuffled: Option<(u32, Vec<usize>)>,
    /// Training batch number that [`ChipPlan::next_train`] serves next.
    next_train: u64,
    /// Validation batches served so far (they get ids above [`VAL_BATCH_IDS`]).
    val_served: u64,
}

/// Validation batches get ids from here on, training batch `k` gets id `k`: ids stay unique
/// within a run, and a training batch's id (which seeds its augmentation and any noise of the
/// degradation) does not depend on when validation ran.
pub const VAL_BATCH_IDS: u64 = 1 << 62;

impl ChipPlan {
    /// Opens the input rasters and plans chips as `settings` say.
    pub fn new(settings: &Settings) -> Result<Self> {
        let paths = list_rasters(&settings.input)?;
        let chip = settings.chip_size;
        let mut sources = Vec::new();
        for p in &paths {
            let src = RasterSource::open(p, &settings.bands.0)?;
            if src.info.width < chip as usize || src.info.height < chip as usize {
                return Err(Error::raster(
                    p,
                    format!(
                        "is {}x{} pixels, smaller than one chip of {chip}x{chip} (chip_size)",
                        src.info.width, src.info.height
                    ),
                ));
            }
            if let Some(first) = sources.first() {
                let first: &RasterSource = first;
                if first.info.bands.len() != src.info.bands.len() {
                    return Err(Error::raster(
                        p,
                        format!(
                            "has {} bands selected, {} has {}",
                            src.info.bands.len(),
                            first.info.path.display(),
                            first.info.bands.len()
                        ),
                    ));
                }
            }
            sources.push(src);
        }
        let lr_sources = match &settings.input_lr {
            None => None,
            Some(lr) => Some(open_pairs(&paths, lr, settings)?),
        };
        let nodata: Vec<NodataRule> = sources
            .iter()
            .map(|s| match (s.info.nodata, settings.nodata) {
                (Some(v), _) | (None, Some(v)) => NodataRule::Value(v),
                (None, None) if s.info.is_integer() => NodataRule::AllZero,
                (None, None) => NodataRule::NaN,
            })
            .collect();

        let c = sources[0].info.bands.len();
        let stride = settings.stride();
        let n = (chip * chip) as usize;
        let mut kept = Vec::new();
        let mut samples = vec![Vec::new(); c];
        let mut candidates = 0;
        for (r, src) in sources.iter().enumerate() {
            let (w, h) = (src.info.width as u32, src.info.height as u32);
            for y in (0..=h - chip).step_by(stride as usize) {
                for x in (0..=w - chip).step_by(stride as usize) {
                    candidates += 1;
                    let px = src.read_window(x, y, chip, chip)?;
                    let mask = nodata[r].mask(&px, c, n);
                    let bad = mask.iter().filter(|m| **m).count();
                    if bad as f64 * 100.0 > settings.max_nodata_pct * n as f64 {
                        continue;
                    }
                    // A thinned sample of valid pixels is plenty for percentiles.
                    for p in (0..n).step_by(7).filter(|&p| !mask[p]) {
                        for (b, s) in samples.iter_mut().enumerate() {
                            s.push(px[b * n + p]);
                        }
                    }
                    kept.push(Chip { raster: r, x, y });
                }
            }
        }
        let skipped_nodata = candidates - kept.len();
        if kept.len() < 2 {
            return Err(Error::raster(
                &settings.input,
                format!(
                    "yields {} usable chip(s) of {chip} px ({candidates} looked at, {skipped_nodata} over {}% nodata); need at least 2 for training and validation",
                    kept.len(),
                    settings.max_nodata_pct
                ),
            ));
        }
        let norm = normalisation_from_samples(&mut samples);
        let mut rng = rand::rngs::StdRng::seed_from_u64(settings.seed);
        kept.shuffle(&mut rng);
        let n_val = if settings.val_split_pct > 0.0 {
            ((kept.len() as f64 * settings.val_split_pct / 100.0).round() as usize)
                .clamp(1, kept.len() - 1)
        } else {
            0
        };
        let val = kept.split_off(kept.len() - n_val);
        let plan = ChipPlan {
            sources,
            lr_sources,
            nodata,
            norm,
            train: kept,
            val,
            candidates,
            skipped_nodata,
            chip,
            factor: settings.factor,
            batch: settings.batch_size as usize,
            seed: settings.seed,
            augment: settings.augment,
            shuffled: None,
            next_train: 0,
            val_served: 0,
        };
        Ok(plan)
    }

    /// The rasters in use.
    pub fn rasters(&self) -> Vec<&crate::raster::RasterInfo> {
        self.sources.iter().map(|s| &s.info).collect()
    }

    /// Bands per tile.
    pub fn bands(&self) -> usize {
        self.sources[0].info.bands.len()
    }

    /// True when LR tiles come from paired rasters rather than from degradation.
    pub fn paired(&self) -> bool {
        self.lr_sources.is_some()
    }

    /// Training batches per epoch (the last incomplete batch is dropped so shapes stay fixed).
    pub fn train_batches(&self) -> usize {
        (self.train.len() / self.batch).max(1)
    }

    /// Validation batches (the last may be smaller).
    pub fn val_batches(&self) -> usize {
        self.val.len().div_ceil(self.batch)
    }

    /// The chip order of `epoch`: every training chip once, shuffled by the seed and the epoch.
    fn epoch_order(&mut self, epoch: u32) -> &[usize] {
        if self.shuffled.as_ref().is_none_or(|(e, _)| *e != epoch) {
            let mut rng = rand::rngs::StdRng::seed_from_u64(
                self.seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(epoch as u64 + 1)),
            );
            let mut order: Vec<usize> = (0..self.train.len()).collect();
            order.shuffle(&mut rng);
            self.shuffled = Some((epoch, order));
        }
        &self.shuffled.as_ref().expect("just set").1
    }

    /// Training batch `k` of the run (HR, and LR when paired): batch `k mod batches-per-epoch`
    /// of epoch `k / batches-per-epoch`. The same `k` always gives the same tiles, so a resumed
    /// run continues exactly where its checkpoint left off.
    pub fn train_batch(&mut self, k: u64) -> Result<(TileBatch, Option<TileBatch>)> {
        let per_epoch = self.train_batches() as u64;
        let (epoch, index) = (k / per_epoch, k % per_epoch);
        let epoch = u32::try_from(epoch).map_err(|_| {
            Error::Contract(format!(
                "training batch {k} asked for: past any epoch count"
            ))
        })?;
        let per = self.batch.min(self.train.len());
        let start = index as usize * per;
        let picked = self.epoch_order(epoch)[start..start + per].to_vec();
        let chips: Vec<Chip> = picked.into_iter().map(|i| self.train[i]).collect();
        let of = per_epoch as u32;
        let hr = self.read_side(&chips, Split::Train, epoch, index as u32, of, k, false)?;
        let lr = match self.paired() {
            true => Some(self.read_side(&chips, Split::Train, epoch, index as u32, of, k, true)?),
            false => None,
        };
        Ok((hr, lr))
    }

    /// The next training batch, counting from batch 0 (for loops that train in one process).
    pub fn next_train(&mut self) -> Result<(TileBatch, Option<TileBatch>)> {
        let k = self.next_train;
        self.next_train += 1;
        self.train_batch(k)
    }

    /// Validation batch `index` (HR, and LR when paired).
    pub fn val_batch(&mut self, index: usize) -> Result<(TileBatch, Option<TileBatch>)> {
        let start = index * self.batch;
        if start >= self.val.len() {
            return Err(Error::Contract(format!(
                "validation batch {index} asked for, there are {}",
                self.val_batches()
            )));
        }
        let chips = self.val[start..(start + self.batch).min(self.val.len())].to_vec();
        let id = VAL_BATCH_IDS + self.val_served;
        self.val_served += 1;
        let of = self.val_batches() as u32;
        let hr = self.read_side(&chips, Split::Val, 0, index as u32, of, id, false)?;
        let lr = match self.paired() {
            true => Some(self.read_side(&chips, Split::Val, 0, index as u32, of, id, true)?),
            false => None,
        };
        Ok((hr, lr))
    }

    // The batch's whole header is the argument list; a struct for it would be used here only.
    #[allow(clippy::too_many_arguments)]
    fn read_side(
        &self,
        chips: &[Chip],
        split: Split,
        epoch: u32,
        index: u32,
        of: u32,
        id: u64,
        lr: bool,
    ) -> Result<TileBatch> {
        let c = self.bands();
        let (f, size) = if lr {
            (self.factor, self.chip / self.factor)
        } else {
            (1, self.chip)
        };
        let n = (size * size) as usize;
        let mut pixels = Vec::with_capacity(chips.len() * c * n);
        let mut tiles = Vec::with_capacity(chips.len());
        for chip in chips {
            let src = if lr {
                &self.lr_sources.as_ref().expect("paired")[chip.raster]
            } else {
                &self.sources[chip.raster]
            };
            let (x, y) = (chip.x / f, chip.y / f);
            let mut px = src.read_window(x, y, size, size)?;
            let mask = self.nodata[chip.raster].mask(&px, c, n);
            for b in 0..c {
                let plane = &mut px[b * n..(b + 1) * n];
                for (v, &bad) in plane.iter_mut().zip(&mask) {
                    let native = if bad { self.norm.fill[b] } else { *v };
                    *v = (native - self.norm.offset[b]) / self.norm.scale[b];
                }
            }
            if self.augment && split == Split::Train {
                // One of the 8 flips/rotations of the square, the same for HR and paired LR
                // (seeded by run seed, batch and tile).
                let k = tiles.len() as u64;
                let mut rng = rand::rngs::StdRng::seed_from_u64(
                    self.seed ^ id.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ k,
                );
                px = dihedral(&px, c, size as usize, rng.gen_range(0..8));
            }
            pixels.extend_from_slice(&px);
            let info = &self.sources[chip.raster].info;
            tiles.push(TileGeometry {
                source: src.info.path.to_string_lossy().into_owned(),
                window: [x, y, size, size],
                geotransform: src.info.window_geotransform(
                    x,
                    y,
                    size,
                    size,
                    size as usize,
                    size as usize,
                ),
                crs: info.crs.clone(),
                nodata: self.nodata[chip.raster].declared(),
            });
        }
        Ok(TileBatch {
            batch_id: id,
            epoch,
            split,
            index_in_split: index,
            batches_in_split: of,
            bands: c,
            height: size as usize,
            width: size as usize,
            factor: f,
            colour: self.sources[0].info.colour.join(","),
            band_offset: self.norm.offset.clone(),
            band_scale: self.norm.scale.clone(),
            tiles,
            pixels,
            loss: None,
            wire: Wire::Float32,
        })
    }
}

/// Applies transform `t` (0–7: rotation by t·90° for t < 4, then the same after a horizontal
/// flip) to each `n × n` plane of a CHW stack.
pub fn dihedral(src: &[f32], c: usize, n: usize, t: u32) -> Vec<f32> {
    let mut out = vec![0f32; src.len()];
    for ch in 0..c {
        let (s, d) = (
            &src[ch * n * n..(ch + 1) * n * n],
            &mut out[ch * n * n..(ch + 1) * n * n],
        );
        for y in 0..n {
            for x in 0..n {
                let (mut sx, mut sy) = (x, y);
                if t >= 4 {
                    sx = n - 1 - sx;
                }
                for _ in 0..(t % 4) {
                    (sx, sy) = (sy, n - 1 - sx);
                }
                d[y * n + x] = s[sy * n + sx];
            }
        }
    }
    out
}

/// Opens the LR rasters matching each HR raster by file name and checks their sizes.
fn open_pairs(
    hr: &[PathBuf],
    lr_input: &std::path::Path,
    settings: &Settings,
) -> Result<Vec<RasterSource>> {
    let lr_paths = list_rasters(lr_input)?;
    hr.iter()
        .map(|h| {
            let name = h.file_name().expect("a raster file has a name");
            let lr = if lr_input.is_file() {
                lr_input.to_path_buf()
            } else {
                lr_paths
                    .iter()
                    .find(|p| p.file_name() == Some(name))
                    .cloned()
                    .ok_or_else(|| {
                        Error::raster(
                            h,
                            format!(
                                "has no LR raster of the same name in {}",
                                lr_input.display()
                            ),
                        )
                    })?
            };
            let hr_src = RasterSource::open(h, &settings.bands.0)?;
            let src = RasterSource::open(&lr, &settings.bands.0)?;
            let f = settings.factor as usize;
            if src.info.width != hr_src.info.width / f || src.info.height != hr_src.info.height / f
            {
                return Err(Error::raster(
                    &lr,
                    format!(
                        "is {}x{}, expected {}x{} (HR {}x{} / factor {f})",
                        src.info.width,
                        src.info.height,
                        hr_src.info.width / f,
                        hr_src.info.height / f,
                        hr_src.info.width,
                        hr_src.info.height
                    ),
                ));
            }
            Ok(src)
        })
        .collect()
}
