//! Inference tiling: an LR raster of any size cut into overlapping tiles in raster order, read
//! window by window through GDAL (never the whole raster), normalised as the model card says.
use crate::raster::RasterSource;
use geosr::card::ModelCard;
use geosr::error::{Error, Result};
use geosr::tile::{Split, TileBatch, TileGeometry, Wire};
use std::path::Path;

/// The tiles of one raster.
pub struct ScanPlan {
    src: RasterSource,
    norm: geosr::card::Normalisation,
    /// Tile edge in LR pixels (both axes; smaller rasters are padded up to it).
    pub tile: (u32, u32),
    /// Tile windows `x, y, w, h` (w, h = valid part, ≤ tile) in raster order.
    pub windows: Vec<[u32; 4]>,
    batch: usize,
    nodata: Option<f64>,
}

/// Tile origins along one axis: steps of `tile - overlap`, the last one moved back to end at
/// the raster's edge.
fn origins(len: u32, tile: u32, overlap: u32) -> Vec<u32> {
    if len <= tile {
        return vec![0];
    }
    let step = (tile - overlap).max(1);
    let mut v: Vec<u32> = (0..)
        .map(|i| i * step)
        .take_while(|&x| x + tile < len)
        .collect();
    v.push(len - tile);
    v
}

impl ScanPlan {
    /// Plans the tiles of `path` for the model of `card` (or, without one, for a classic
    /// resampler: native values, any size). A raster whose band count or data type differs
    /// from what the model was trained on is refused.
    pub fn new(
        path: &Path,
        card: Option<&ModelCard>,
        tile: u32,
        overlap: u32,
        batch: usize,
        nodata: Option<f64>,
    ) -> Result<Self> {
        Self::scaled(path, card, tile, overlap, batch, nodata, 1)
    }

    /// Plans the tiles of an HR raster for evaluation: tiles and overlap are `scale` times the
    /// LR values given (`scale` = the model's factor), so that once degraded they have the size
    /// and overlap of the LR tiles inference uses (the same windows when the raster's sides are
    /// multiples of the factor).
    pub fn hr(
        path: &Path,
        card: &ModelCard,
        tile: u32,
        overlap: u32,
        batch: usize,
        nodata: Option<f64>,
    ) -> Result<Self> {
        let f = card.downsample_factor;
        Self::scaled(path, Some(card), tile * f, overlap * f, batch, nodata, f)
    }

    fn scaled(
        path: &Path,
        card: Option<&ModelCard>,
        tile: u32,
        overlap: u32,
        batch: usize,
        nodata: Option<f64>,
        scale: u32,
    ) -> Result<Self> {
        let src = RasterSource::open(path, &[])?;
        let Some(card) = card else {
            let c = src.info.bands.len();
            let norm = geosr::card::Normalisation {
                offset: vec![0.0; c],
                scale: vec![1.0; c],
                fill: vec![0.0; c],
            };
            return Self::tiled(src, norm, 1, tile, overlap, batch, nodata);
        };
        let n = card.bands.len();
        if src.info.bands.len() != n {
            return Err(Error::raster(
                path,
                format!(
                    "has {} bands; the model was trained on {n} (bands {} of {} rasters)",
                    src.info.bands.len(),
                    card.bands
                        .iter()
                        .map(|b| b.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    card.data_type
                ),
            ));
        }
        if src.info.data_type != card.data_type {
            return Err(Error::raster(
                path,
                format!("is {}; the model was trained on {} rasters and its normalisation is for that range", src.info.data_type, card.data_type),
            ));
        }
        let level = scale << card.architecture.depth;
        Self::tiled(
            src,
            card.normalisation.clone(),
            level,
            tile,
            overlap,
            batch,
            nodata,
        )
    }

    fn tiled(
        src: RasterSource,
        norm: geosr::card::Normalisation,
        level: u32,
        tile: u32,
        overlap: u32,
        batch: usize,
        nodata: Option<f64>,
    ) -> Result<Self> {
        if !tile.is_multiple_of(level) || overlap * 2 >= tile {
            return Err(Error::setting("infer_tile", format!("{tile} source pixels must be a multiple of {level} and more than twice the overlap {overlap}")));
        }
        let (w, h) = (src.info.width as u32, src.info.height as u32);
        // Rasters smaller than a tile get one padded tile of the next multiple of 2^depth.
        let fit = |len: u32| {
            if len < tile {
                len.div_ceil(level) * level
            } else {
                tile
            }
        };
        let tile = (fit(w), fit(h));
        let mut windows = Vec::new();
        for y in origins(h, tile.1, overlap) {
            for x in origins(w, tile.0, overlap) {
                windows.push([x, y, tile.0.min(w), tile.1.min(h)]);
            }
        }
        let nodata = src.info.nodata.or(nodata).or(if src.info.is_integer() {
            Some(0.0)
        } else {
            None
        });
        Ok(ScanPlan {
            src,
            norm,
            tile,
            windows,
            batch,
            nodata,
        })
    }

    pub fn batches(&self) -> usize {
        self.windows.len().div_ceil(self.batch)
    }

    pub fn raster(&self) -> &crate::raster::RasterInfo {
        &self.src.info
    }

    /// Batch `index` of LR tiles, normalised; padding (small rasters) repeats edge pixels and
    /// nodata pixels take the band's fill value, both outside what the writer keeps.
    pub fn batch(&self, index: usize) -> Result<TileBatch> {
        let start = index * self.batch;
        if start >= self.windows.len() {
            return Err(Error::Contract(format!(
                "inference batch {index} asked for, there are {}",
                self.batches()
            )));
        }
        let wins = &self.windows[start..(start + self.batch).min(self.windows.len())];
        let c = self.src.info.bands.len();
        let (tw, th) = (self.tile.0 as usize, self.tile.1 as usize);
        let norm = &self.norm;
        let mut pixels = Vec::with_capacity(wins.len() * c * tw * th);
        let mut tiles = Vec::with_capacity(wins.len());
        for &[x, y, w, h] in wins {
            let px = self.src.read_window(x, y, w, h)?;
            let (w_, h_) = (w as usize, h as usize);
            for b in 0..c {
                for ty in 0..th {
                    let sy = ty.min(h_ - 1);
                    for tx in 0..tw {
                        let sx = tx.min(w_ - 1);
                        let mut v = px[b * w_ * h_ + sy * w_ + sx];
                        let is_nodata = v.is_nan()
                            || self.nodata.is_some_and(|nd| {
                                v as f64 == nd
                                    && !all_bands_valid(
                                        &px,
                                        c,
                                        w_ * h_,
                                        sy * w_ + sx,
                                        nd,
                                        self.src.info.nodata.is_some(),
                                    )
                            });
                        if is_nodata {
                            v = norm.fill[b];
                        }
                        pixels.push((v - norm.offset[b]) / norm.scale[b]);
                    }
                }
            }
            tiles.push(TileGeometry {
                source: self.src.info.path.to_string_lossy().into_owned(),
                window: [x, y, w, h],
                geotransform: self
                    .src
                    .info
                    .window_geotransform(x, y, tw as u32, th as u32, tw, th),
                crs: self.src.info.crs.clone(),
                nodata: self.nodata,
            });
        }
        Ok(TileBatch {
            batch_id: index as u64,
            epoch: 0,
            split: Split::Infer,
            index_in_split: index as u32,
            batches_in_split: self.batches() as u32,
            bands: c,
            height: th,
            width: tw,
            factor: 1,
            colour: self.src.info.colour.join(","),
            band_offset: norm.offset.clone(),
            band_scale: norm.scale.clone(),
            tiles,
            pixels,
            loss: None,
            wire: Wire::Float32,
        })
    }
}

/// The HR tiles of every raster named by `input` (a file or a folder), for evaluation: batches
/// never mix rasters and are numbered across all of them, rasters in file-name order.
pub struct EvalPlan {
    pub plans: Vec<ScanPlan>,
    /// Global index of each raster's first batch.
    first_batch: Vec<usize>,
}

impl EvalPlan {
    pub fn new(
        input: &Path,
        card: &ModelCard,
        tile: u32,
        overlap: u32,
        batch: usize,
        nodata: Option<f64>,
    ) -> Result<Self> {
        let mut plans = Vec::new();
        let mut first_batch = Vec::new();
        let mut total = 0;
        let mut stems = std::collections::BTreeMap::new();
        for path in crate::raster::list_rasters(input)? {
            // Outputs are named after the file stem: two rasters may not share one.
            let stem = path
                .file_stem()
                .map(|s| s.to_os_string())
                .unwrap_or_default();
            if let Some(other) = stems.insert(stem, path.clone()) {
                return Err(Error::raster(
                    &path,
                    format!(
                        "has the same name as {} up to the extension; the evaluation's outputs would overwrite each other",
                        other.display()
                    ),
                ));
            }
            let plan = ScanPlan::hr(&path, card, tile, overlap, batch, nodata)?;
            first_batch.push(total);
            total += plan.batches();
            plans.push(plan);
        }
        Ok(EvalPlan { plans, first_batch })
    }

    pub fn batches(&self) -> usize {
        self.plans.iter().map(ScanPlan::batches).sum()
    }

    /// Global batch `index`: its raster's batch, renumbered across all rasters.
    pub fn batch(&self, index: usize) -> Result<TileBatch> {
        let plans: Vec<&ScanPlan> = self.plans.iter().collect();
        numbered_batch(&plans, &self.first_batch, index, "evaluation")
    }
}

/// Which plan holds global batch `index`, given each plan's first global batch.
fn plan_of(first_batch: &[usize], total: usize, index: usize) -> Option<usize> {
    first_batch
        .iter()
        .rposition(|&first| first <= index)
        .filter(|_| index < total)
}

/// Global batch `index` of several plans, renumbered across them.
fn numbered_batch(
    plans: &[&ScanPlan],
    first_batch: &[usize],
    index: usize,
    what: &str,
) -> Result<TileBatch> {
    let total: usize = plans.iter().map(|p| p.batches()).sum();
    let r = plan_of(first_batch, total, index).ok_or_else(|| {
        Error::Contract(format!("{what} batch {index} asked for, there are {total}"))
    })?;
    let mut b = plans[r].batch(index - first_batch[r])?;
    b.batch_id = index as u64;
    b.index_in_split = index as u32;
    b.batches_in_split = total as u32;
    Ok(b)
}

/// The LR tiles of every scene of an inference run ([`crate::scenes`]): batches never mix
/// scenes and are numbered across all of them, in the list's order.
///
/// With one scene, a scene that cannot be planned is an error, as always. With several, such a
/// scene (unreadable, or bands and type that do not fit the model) is set aside with the reason
/// and the others go on: one bad file among thousands should not stop the rest; the writer names
/// it when the others are done and the run ends with an error.
pub struct ScenePlan {
    pub scenes: Vec<(crate::scenes::Scene, ScanPlan)>,
    pub failed: Vec<(crate::scenes::Scene, String)>,
    first_batch: Vec<usize>,
}

impl ScenePlan {
    pub fn new(
        list: &crate::scenes::SceneList,
        card: Option<&ModelCard>,
        tile: u32,
        overlap: u32,
        batch: usize,
        nodata: Option<f64>,
    ) -> Result<Self> {
        let mut plan = ScenePlan {
            scenes: Vec::new(),
            failed: Vec::new(),
            first_batch: Vec::new(),
        };
        let mut total = 0;
        for scene in &list.todo {
            match ScanPlan::new(&scene.input, card, tile, overlap, batch, nodata) {
                Ok(p) => {
                    plan.first_batch.push(total);
                    total += p.batches();
                    plan.scenes.push((scene.clone(), p));
                }
                Err(e) if list.many => plan.failed.push((scene.clone(), e.full_text())),
                Err(e) => return Err(e),
            }
        }
        Ok(plan)
    }

    /// The scenes the settings name (`input`, `output`) and their plan, as `tile-ingest` and
    /// `geotiff-writer` both make them: the two must agree batch for batch.
    pub fn from_settings(
        settings: &geosr::settings::Settings,
    ) -> Result<(crate::scenes::SceneList, Self)> {
        let card = match &settings.model {
            Some(dir) => Some(geosr::checkpoint::load_checkpoint(dir)?.card),
            None => None,
        };
        let output = settings.output.clone().unwrap_or_default();
        let list = crate::scenes::SceneList::new(&settings.input, &output)?;
        let plan = ScenePlan::new(
            &list,
            card.as_ref(),
            settings.infer_tile,
            settings.overlap,
            settings.infer_batch as usize,
            settings.nodata,
        )?;
        Ok((list, plan))
    }

    pub fn batches(&self) -> usize {
        self.scenes.iter().map(|(_, p)| p.batches()).sum()
    }

    /// Global batch `index`, renumbered across all scenes.
    pub fn batch(&self, index: usize) -> Result<TileBatch> {
        let plans: Vec<&ScanPlan> = self.scenes.iter().map(|(_, p)| p).collect();
        numbered_batch(&plans, &self.first_batch, index, "inference")
    }

    /// The scene (its position in [`ScenePlan::scenes`]) that global batch `index` belongs to.
    pub fn scene_of(&self, index: usize) -> Option<usize> {
        plan_of(&self.first_batch, self.batches(), index)
    }

    /// The global index of scene `k`'s last batch.
    pub fn last_batch_of(&self, k: usize) -> usize {
        self.first_batch[k] + self.scenes[k].1.batches() - 1
    }
}

/// With an implicit nodata value (0 in integer rasters that declare none), a pixel is nodata
/// only when every band holds it; a declared value applies band by band.
fn all_bands_valid(px: &[f32], c: usize, plane: usize, at: usize, nd: f64, declared: bool) -> bool {
    if declared {
        return false;
    }
    (0..c).any(|b| px[b * plane + at] as f64 != nd)
}
