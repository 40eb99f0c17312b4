//! The Arrow tile contract: how a batch of tiles travels between stages.
//!
//! A batch is one Arrow `StructArray` (equivalently a `RecordBatch`) with **one row per tile**.
//! Everything a stage needs travels in the data itself, never only in dora metadata, so Rust
//! operators (which cannot attach metadata) and Python nodes (`pyarrow`) read it the same way.
//!
//! | column | Arrow type | meaning |
//! |---|---|---|
//! | `batch_id` | UInt64 | id of the batch, unique within a run; matches predictions, HR tiles and gradients |
//! | `epoch` | UInt32 | pass over the training chips this batch belongs to |
//! | `split` | Utf8 | `train`, `val` or `infer` |
//! | `index_in_split` | UInt32 | position of the batch within its split and epoch |
//! | `batches_in_split` | UInt32 | number of batches in that split and epoch |
//! | `source` | Utf8 | path of the raster the tile comes from |
//! | `window` | FixedSizeList<UInt32, 4> | `x_off, y_off, width, height` of the tile in the source raster's pixels |
//! | `geotransform` | FixedSizeList<Float64, 6> | GDAL geotransform of the tile's own pixel grid |
//! | `crs` | Utf8 | CRS of the source raster as WKT (empty when unknown) |
//! | `nodata` | Float64, nullable | nodata value of the source raster, in native units |
//! | `bands` | UInt32 | channels per tile (C) |
//! | `height`, `width` | UInt32 | pixel rows and columns per tile (H, W) |
//! | `factor` | UInt32 | source pixels per tile pixel along each axis: 1 for HR, `downsample_factor` for LR |
//! | `colour` | Utf8 | comma-separated GDAL colour interpretation of the bands, e.g. `blue,green,red` |
//! | `band_offset`, `band_scale` | FixedSizeList<Float32, C> | normalisation: native = pixel × scale + offset |
//! | `pixels` | FixedSizeList<Float32, C·H·W> | the tile, channel-major (CHW), normalised; or FixedSizeList<UInt16, C·H·W> in native units (see [`Wire`]) |
//! | `loss` | Float64, nullable | loss stages: this tile's share of the batch loss (sum = batch loss); `pixels` then hold ∂loss/∂prediction |
//!
//! A batch's rows share `batch_id`, `epoch`, `split`, the shape columns and the normalisation.
//! Training tiles may be flipped or rotated (`augment`); their geometry still describes the
//! source window.
//!
//! ```
//! use geosr::tile::{TileBatch, Split};
//! let batch = TileBatch::example(2, 3, 4, 4);
//! let round = TileBatch::from_arrow(&batch.to_arrow().unwrap()).unwrap();
//! assert_eq!(round, batch);
//! assert_eq!(round.split, Split::Train);
//! ```
use crate::error::{Error, Result};
use arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, Float32Array, Float64Array, StringArray,
    StructArray, UInt16Array, UInt32Array, UInt64Array,
};
use arrow::buffer::{NullBuffer, ScalarBuffer};
use arrow::datatypes::{
    DataType, Field, Fields, Float32Type, Float64Type, UInt16Type, UInt32Type, UInt64Type,
};
use std::sync::Arc;

/// Which part of the data a batch belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Val,
    Infer,
}

impl Split {
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Infer => "infer",
        }
    }
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "train" => Ok(Split::Train),
            "val" => Ok(Split::Val),
            "infer" => Ok(Split::Infer),
            other => Err(Error::Contract(format!("unknown split `{other}`"))),
        }
    }
}

/// Where one tile sits in its source raster.
#[derive(Debug, Clone, PartialEq)]
pub struct TileGeometry {
    pub source: String,
    /// `x_off, y_off, width, height` in source pixels.
    pub window: [u32; 4],
    /// GDAL geotransform of the tile's own pixel grid.
    pub geotransform: [f64; 6],
    pub crs: String,
    pub nodata: Option<f64>,
}

/// How a batch's `pixels` travel. A decoded batch always holds normalised `f32`; the wire type
/// only says what [`TileBatch::into_arrow`] writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Wire {
    /// Normalised `Float32`: what every stage writes unless it knows better.
    #[default]
    Float32,
    /// `UInt16` in native units (pixel × scale + offset, rounded, clamped to 0–65535): half the
    /// bytes, for tiles bound for a `UInt16` raster whose values nothing downstream needs finer
    /// than the integers it will be written as (the classic resamplers: where tiles overlap they
    /// hold the same values, so rounding before feathering is rounding after it).
    NativeUInt16,
}

/// A decoded batch of tiles. See the module documentation for the Arrow layout.
#[derive(Debug, Clone, PartialEq)]
pub struct TileBatch {
    pub batch_id: u64,
    pub epoch: u32,
    pub split: Split,
    pub index_in_split: u32,
    pub batches_in_split: u32,
    pub bands: usize,
    pub height: usize,
    pub width: usize,
    pub factor: u32,
    pub colour: String,
    pub band_offset: Vec<f32>,
    pub band_scale: Vec<f32>,
    pub tiles: Vec<TileGeometry>,
    /// N·C·H·W values, tile-major then channel-major.
    pub pixels: Vec<f32>,
    /// Per-tile loss (loss stages only).
    pub loss: Option<Vec<f64>>,
    /// How `pixels` are written to Arrow.
    pub wire: Wire,
}

/// An error when a column holds NaN or an infinity: no stage can use such a value, and one would
/// spread through every sum it enters.
fn finite(name: &str, values: impl Iterator<Item = f64>) -> Result<()> {
    let mut values = values;
    if values.any(|v| !v.is_finite()) {
        return Err(Error::Contract(format!(
            "column `{name}` holds NaN or an infinite value"
        )));
    }
    Ok(())
}

/// Normalised pixels (CHW tiles of `tile_len`) as native `UInt16`: rounded, clamped, NaN as 0.
fn native_u16(pixels: &[f32], tile_len: usize, offset: &[f32], scale: &[f32]) -> Vec<u16> {
    let plane = tile_len / offset.len().max(1);
    let mut out = Vec::with_capacity(pixels.len());
    for tile in pixels.chunks_exact(tile_len) {
        for (b, band) in tile.chunks_exact(plane).enumerate() {
            let (s, o) = (scale[b], offset[b]);
            out.extend(band.iter().map(|v| crate::rounding::to_u16(v * s + o)));
        }
    }
    out
}

/// Native `UInt16` pixels back to normalised `f32`.
fn normalised_f32(native: &[u16], tile_len: usize, offset: &[f32], scale: &[f32]) -> Vec<f32> {
    let plane = tile_len / offset.len().max(1);
    let mut out = Vec::with_capacity(native.len());
    for tile in native.chunks_exact(tile_len) {
        for (b, band) in tile.chunks_exact(plane).enumerate() {
            let (inv, o) = (1.0 / scale[b], offset[b]);
            out.extend(band.iter().map(|&v| (v as f32 - o) * inv));
        }
    }
    out
}

fn schema_fields(c: usize, chw: usize, wire: Wire) -> Fields {
    let f32_item = Arc::new(Field::new("item", DataType::Float32, false));
    Fields::from(vec![
        Field::new("batch_id", DataType::UInt64, false),
        Field::new("epoch", DataType::UInt32, false),
        Field::new("split", DataType::Utf8, false),
        Field::new("index_in_split", DataType::UInt32, false),
        Field::new("batches_in_split", DataType::UInt32, false),
        Field::new("source", DataType::Utf8, false),
        Field::new(
            "window",
            DataType::FixedSizeList(Arc::new(Field::new("item", DataType::UInt32, false)), 4),
            false,
        ),
        Field::new(
            "geotransform",
            DataType::FixedSizeList(Arc::new(Field::new("item", DataType::Float64, false)), 6),
            false,
        ),
        Field::new("crs", DataType::Utf8, false),
        Field::new("nodata", DataType::Float64, true),
        Field::new("bands", DataType::UInt32, false),
        Field::new("height", DataType::UInt32, false),
        Field::new("width", DataType::UInt32, false),
        Field::new("factor", DataType::UInt32, false),
        Field::new("colour", DataType::Utf8, false),
        Field::new(
            "band_offset",
            DataType::FixedSizeList(f32_item.clone(), c as i32),
            false,
        ),
        Field::new(
            "band_scale",
            DataType::FixedSizeList(f32_item.clone(), c as i32),
            false,
        ),
        Field::new(
            "pixels",
            DataType::FixedSizeList(
                match wire {
                    Wire::Float32 => f32_item,
                    Wire::NativeUInt16 => Arc::new(Field::new("item", DataType::UInt16, false)),
                },
                chw as i32,
            ),
            false,
        ),
        Field::new("loss", DataType::Float64, true),
    ])
}

impl TileBatch {
    /// Number of tiles.
    pub fn len(&self) -> usize {
        self.tiles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tiles.is_empty()
    }

    /// Values per tile (C·H·W).
    pub fn tile_len(&self) -> usize {
        self.bands * self.height * self.width
    }

    /// Tile `i` in native units (`pixel × band_scale + band_offset`), CHW, cropped to its
    /// top-left `w`×`h` pixels (a tile at the raster's edge holds padding beyond its window).
    pub fn native_tile(&self, i: usize, w: usize, h: usize) -> Vec<f32> {
        let px = &self.pixels[i * self.tile_len()..(i + 1) * self.tile_len()];
        let mut out = Vec::with_capacity(self.bands * w * h);
        for b in 0..self.bands {
            let (scale, offset) = (self.band_scale[b], self.band_offset[b]);
            for row in 0..h {
                let r = &px[(b * self.height + row) * self.width..][..w];
                out.extend(r.iter().map(|v| v * scale + offset));
            }
        }
        out
    }

    /// The NCHW shape as libtorch wants it.
    pub fn shape(&self) -> [i64; 4] {
        [
            self.len() as i64,
            self.bands as i64,
            self.height as i64,
            self.width as i64,
        ]
    }

    /// Checks the invariants the Arrow layout relies on.
    pub fn check(&self) -> Result<()> {
        let n = self.len();
        if self.pixels.len() != n * self.tile_len() {
            return Err(Error::Contract(format!(
                "batch {}: {} pixel values for {n} tiles of {}x{}x{}",
                self.batch_id,
                self.pixels.len(),
                self.bands,
                self.height,
                self.width
            )));
        }
        if self.band_offset.len() != self.bands || self.band_scale.len() != self.bands {
            return Err(Error::Contract(format!(
                "batch {}: normalisation for {} / {} bands, tiles have {}",
                self.batch_id,
                self.band_offset.len(),
                self.band_scale.len(),
                self.bands
            )));
        }
        if let Some(l) = &self.loss {
            if l.len() != n {
                return Err(Error::Contract(format!(
                    "batch {}: {} loss values for {n} tiles",
                    self.batch_id,
                    l.len()
                )));
            }
        }
        Ok(())
    }

    /// Encodes a copy of the batch as one Arrow `StructArray` (one row per tile).
    pub fn to_arrow(&self) -> Result<ArrayRef> {
        self.clone().into_arrow()
    }

    /// Encodes the batch as one Arrow `StructArray` (one row per tile), moving the pixel buffer
    /// into Arrow without a copy.
    pub fn into_arrow(self) -> Result<ArrayRef> {
        self.check()?;
        let n = self.len();
        let c = self.bands;
        let rep_u32 = |v: u32| Arc::new(UInt32Array::from(vec![v; n])) as ArrayRef;
        let rep_str = |v: &str| Arc::new(StringArray::from(vec![v; n])) as ArrayRef;
        let f32_list = |values: Vec<f32>, size: usize| -> Result<ArrayRef> {
            let item = Arc::new(Field::new("item", DataType::Float32, false));
            let values = Arc::new(Float32Array::new(ScalarBuffer::from(values), None));
            Ok(Arc::new(FixedSizeListArray::try_new(
                item,
                size as i32,
                values,
                None,
            )?))
        };
        let windows: Vec<u32> = self.tiles.iter().flat_map(|t| t.window).collect();
        let gts: Vec<f64> = self.tiles.iter().flat_map(|t| t.geotransform).collect();
        let offsets: Vec<f32> = (0..n)
            .flat_map(|_| self.band_offset.iter().copied())
            .collect();
        let scales: Vec<f32> = (0..n)
            .flat_map(|_| self.band_scale.iter().copied())
            .collect();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from(vec![self.batch_id; n])),
            rep_u32(self.epoch),
            rep_str(self.split.as_str()),
            rep_u32(self.index_in_split),
            rep_u32(self.batches_in_split),
            Arc::new(StringArray::from_iter_values(
                self.tiles.iter().map(|t| t.source.as_str()),
            )),
            Arc::new(FixedSizeListArray::try_new(
                Arc::new(Field::new("item", DataType::UInt32, false)),
                4,
                Arc::new(UInt32Array::from(windows)),
                None,
            )?),
            Arc::new(FixedSizeListArray::try_new(
                Arc::new(Field::new("item", DataType::Float64, false)),
                6,
                Arc::new(Float64Array::from(gts)),
                None,
            )?),
            Arc::new(StringArray::from_iter_values(
                self.tiles.iter().map(|t| t.crs.as_str()),
            )),
            Arc::new(Float64Array::from(
                self.tiles.iter().map(|t| t.nodata).collect::<Vec<_>>(),
            )),
            rep_u32(c as u32),
            rep_u32(self.height as u32),
            rep_u32(self.width as u32),
            rep_u32(self.factor),
            rep_str(&self.colour),
            f32_list(offsets, c)?,
            f32_list(scales, c)?,
            // The one large column: handed to Arrow without copying, or as native integers.
            match self.wire {
                Wire::Float32 => f32_list(self.pixels, self.bands * self.height * self.width)?,
                Wire::NativeUInt16 => {
                    let native = native_u16(
                        &self.pixels,
                        self.bands * self.height * self.width,
                        &self.band_offset,
                        &self.band_scale,
                    );
                    Arc::new(FixedSizeListArray::try_new(
                        Arc::new(Field::new("item", DataType::UInt16, false)),
                        (self.bands * self.height * self.width) as i32,
                        Arc::new(UInt16Array::new(ScalarBuffer::from(native), None)),
                        None,
                    )?)
                }
            },
            match self.loss {
                Some(l) => Arc::new(Float64Array::from(l)),
                None => Arc::new(Float64Array::new(
                    ScalarBuffer::from(vec![0.0; n]),
                    Some(NullBuffer::new_null(n)),
                )),
            },
        ];
        Ok(Arc::new(StructArray::try_new(
            schema_fields(c, c * self.height * self.width, self.wire),
            columns,
            None,
        )?))
    }

    /// Decodes a batch, checking every column of the contract.
    pub fn from_arrow(array: &dyn Array) -> Result<Self> {
        let s = array.as_struct_opt().ok_or_else(|| {
            Error::Contract(format!(
                "expected a Struct array of tiles, got {}",
                array.data_type()
            ))
        })?;
        let n = s.len();
        if n == 0 {
            return Err(Error::Contract("a tile batch has no rows".into()));
        }
        let col = |name: &str| {
            s.column_by_name(name)
                .ok_or_else(|| Error::Contract(format!("column `{name}` is missing")))
        };
        fn prim<'a, T: arrow::datatypes::ArrowPrimitiveType>(
            a: &'a ArrayRef,
            name: &str,
        ) -> Result<&'a arrow::array::PrimitiveArray<T>> {
            a.as_primitive_opt::<T>().ok_or_else(|| {
                Error::Contract(format!("column `{name}` has type {}", a.data_type()))
            })
        }
        let strings = |name: &str| -> Result<&StringArray> {
            let a = col(name)?;
            a.as_string_opt::<i32>().ok_or_else(|| {
                Error::Contract(format!("column `{name}` has type {}", a.data_type()))
            })
        };
        let list = |name: &str, size: usize| -> Result<ArrayRef> {
            let a = col(name)?;
            let l = a.as_fixed_size_list_opt().ok_or_else(|| {
                Error::Contract(format!("column `{name}` has type {}", a.data_type()))
            })?;
            if l.value_length() < 0 || l.value_length() as usize != size {
                return Err(Error::Contract(format!(
                    "column `{name}` holds {} values per tile, expected {size}",
                    l.value_length()
                )));
            }
            // Slice so an offset struct (a sliced batch) reads the right rows.
            let start = l.offset().saturating_mul(size);
            if l.values().len() < start.saturating_add(n.saturating_mul(size)) {
                return Err(Error::Contract(format!(
                    "column `{name}` holds {} values for {n} tiles of {size}",
                    l.values().len().saturating_sub(start)
                )));
            }
            Ok(l.values().slice(start, n * size))
        };
        let first_u32 =
            |name: &str| -> Result<u32> { Ok(prim::<UInt32Type>(col(name)?, name)?.value(0)) };

        let bands = first_u32("bands")? as usize;
        let height = first_u32("height")? as usize;
        let width = first_u32("width")? as usize;
        // The shape must be what the pixel column really holds: a header claiming more is refused
        // before anything of its size is allocated.
        let tile_len = bands
            .checked_mul(height)
            .and_then(|v| v.checked_mul(width))
            .filter(|v| *v > 0 && *v <= i32::MAX as usize)
            .ok_or_else(|| {
                Error::Contract(format!(
                    "tiles of {bands}x{height}x{width} (bands x height x width) are not a usable shape"
                ))
            })?;

        let windows = list("window", 4)?;
        let windows = prim::<UInt32Type>(&windows, "window")?;
        let gts = list("geotransform", 6)?;
        let gts = prim::<Float64Type>(&gts, "geotransform")?;
        finite("geotransform", gts.values().iter().copied())?;
        let sources = strings("source")?;
        let crs = strings("crs")?;
        let nodata = prim::<Float64Type>(col("nodata")?, "nodata")?;
        let tiles = (0..n)
            .map(|i| TileGeometry {
                source: sources.value(i).to_owned(),
                window: std::array::from_fn(|k| windows.value(i * 4 + k)),
                geotransform: std::array::from_fn(|k| gts.value(i * 6 + k)),
                crs: crs.value(i).to_owned(),
                nodata: nodata.is_valid(i).then(|| nodata.value(i)),
            })
            .collect();
        let offsets = list("band_offset", bands)?;
        let offsets = prim::<Float32Type>(&offsets, "band_offset")?;
        let scales = list("band_scale", bands)?;
        let scales = prim::<Float32Type>(&scales, "band_scale")?;
        finite("band_offset", offsets.values().iter().map(|v| *v as f64))?;
        finite("band_scale", scales.values().iter().map(|v| *v as f64))?;
        if scales.values().contains(&0.0) {
            return Err(Error::Contract("column `band_scale` holds a zero".into()));
        }
        let pixels = list("pixels", tile_len)?;
        let (pixels, wire) = match pixels.data_type() {
            DataType::UInt16 => {
                let native = prim::<UInt16Type>(&pixels, "pixels")?;
                let pixels = normalised_f32(
                    native.values(),
                    tile_len,
                    &offsets.values()[..bands],
                    &scales.values()[..bands],
                );
                (pixels, Wire::NativeUInt16)
            }
            _ => {
                let pixels = prim::<Float32Type>(&pixels, "pixels")?;
                finite("pixels", pixels.values().iter().map(|v| *v as f64))?;
                (pixels.values().to_vec(), Wire::Float32)
            }
        };
        let loss = prim::<Float64Type>(col("loss")?, "loss")?;
        let loss = (loss.null_count() == 0).then(|| loss.values().to_vec());
        if let Some(l) = &loss {
            finite("loss", l.iter().copied())?;
        }
        let batch = TileBatch {
            batch_id: prim::<UInt64Type>(col("batch_id")?, "batch_id")?.value(0),
            epoch: first_u32("epoch")?,
            split: Split::parse(strings("split")?.value(0))?,
            index_in_split: first_u32("index_in_split")?,
            batches_in_split: first_u32("batches_in_split")?,
            bands,
            height,
            width,
            factor: first_u32("factor")?,
            colour: strings("colour")?.value(0).to_owned(),
            band_offset: offsets.values()[..bands].to_vec(),
            band_scale: scales.values()[..bands].to_vec(),
            tiles,
            pixels,
            loss,
            wire,
        };
        batch.check()?;
        Ok(batch)
    }

    /// A small batch with made-up geometry, for documentation and tests.
    pub fn example(n: usize, c: usize, h: usize, w: usize) -> Self {
        TileBatch {
            batch_id: 7,
            epoch: 1,
            split: Split::Train,
            index_in_split: 3,
            batches_in_split: 10,
            bands: c,
            height: h,
            width: w,
            factor: 1,
            colour: "red,green,blue".into(),
            band_offset: vec![100.0; c],
            band_scale: vec![2.5; c],
            tiles: (0..n)
                .map(|i| TileGeometry {
                    source: format!("scene-{i}.tif"),
                    window: [i as u32 * w as u32, 0, w as u32, h as u32],
                    geotransform: [
                        500_000.0 + 30.0 * (i * w) as f64,
                        30.0,
                        0.0,
                        7_000_000.0,
                        0.0,
                        -30.0,
                    ],
                    crs: "EPSG:32621".into(),
                    nodata: if i % 2 == 0 { Some(0.0) } else { None },
                })
                .collect(),
            pixels: (0..n * c * h * w).map(|v| v as f32 * 0.25).collect(),
            loss: None,
            wire: Wire::Float32,
        }
    }

    /// A batch covering the same ground with `c × h × w` tiles: pixel sizes in the
    /// geotransforms and the `factor` column follow the new grid.
    pub fn derived(&self, c: usize, h: usize, w: usize, pixels: Vec<f32>) -> Result<Self> {
        let tiles = self
            .tiles
            .iter()
            .map(|g| {
                let mut g = g.clone();
                let sx = self.width as f64 / w as f64;
                let sy = self.height as f64 / h as f64;
                g.geotransform[1] *= sx;
                g.geotransform[2] *= sy;
                g.geotransform[4] *= sx;
                g.geotransform[5] *= sy;
                g
            })
            .collect();
        let mut out = TileBatch {
            bands: c,
            height: h,
            width: w,
            // source pixels per tile pixel, from the tile grids (a padded tile's window is
            // smaller than the tile, so the window would understate it)
            factor: ((self.factor as usize * self.width) / w).max(1) as u32,
            tiles,
            pixels,
            loss: None,
            wire: Wire::Float32,
            ..self.clone_header()
        };
        if c != self.bands {
            out.band_offset = vec![0.0; c];
            out.band_scale = vec![1.0; c];
        }
        out.check()?;
        Ok(out)
    }

    /// The batch's header: every column but the tiles, their pixels and losses, which are not
    /// copied (`..self.clone()` would copy the whole pixel buffer only to drop it).
    fn clone_header(&self) -> Self {
        TileBatch {
            batch_id: self.batch_id,
            epoch: self.epoch,
            split: self.split,
            index_in_split: self.index_in_split,
            batches_in_split: self.batches_in_split,
            bands: self.bands,
            height: self.height,
            width: self.width,
            factor: self.factor,
            colour: self.colour.clone(),
            band_offset: self.band_offset.clone(),
            band_scale: self.band_scale.clone(),
            tiles: Vec::new(),
            pixels: Vec::new(),
            loss: None,
            wire: self.wire,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_tiles_travel_as_native_uint16_and_come_back_normalised() {
        // native = pixel × 2.5 + 100; pixels count up by 0.25, so natives step by 0.625.
        let mut b = TileBatch::example(2, 2, 3, 4);
        b.band_scale = vec![2.5, 2.5];
        b.band_offset = vec![100.0, 100.0];
        b.pixels[1] = f32::NAN;
        b.pixels[2] = -1000.0;
        b.wire = Wire::NativeUInt16;
        let array = b.to_arrow().unwrap();
        let pixels = array.as_struct().column_by_name("pixels").unwrap();
        assert_eq!(
            pixels.as_fixed_size_list().value_type(),
            DataType::UInt16,
            "half the bytes of f32"
        );
        let back = TileBatch::from_arrow(array.as_ref()).unwrap();
        assert_eq!(back.wire, Wire::NativeUInt16);
        for (i, (a, v)) in b.pixels.iter().zip(&back.pixels).enumerate() {
            let native = v * 2.5 + 100.0;
            let want = match i {
                1 => 0.0, // NaN
                2 => 0.0, // below the type's range
                _ => (a * 2.5 + 100.0).round(),
            };
            assert!(
                (native - want).abs() < 1e-3,
                "pixel {i}: {native} for {want}"
            );
        }
    }

    #[test]
    fn native_tile_undoes_the_normalisation_and_crops() {
        // Tile 1 of 2, 2 bands of 3×4; pixels count up by 0.25, native = pixel × 2.5 + 100.
        let b = TileBatch::example(2, 2, 3, 4);
        let got = b.native_tile(1, 2, 2);
        let at = |band: usize, y: usize, x: usize| {
            b.pixels[b.tile_len() + (band * 3 + y) * 4 + x] * 2.5 + 100.0
        };
        let want: Vec<f32> = (0..2)
            .flat_map(|band| (0..2).flat_map(move |y| (0..2).map(move |x| (band, y, x))))
            .map(|(band, y, x)| at(band, y, x))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn round_trip_keeps_everything() {
        let mut b = TileBatch::example(3, 2, 5, 4);
        assert_eq!(TileBatch::from_arrow(&b.to_arrow().unwrap()).unwrap(), b);
        b.loss = Some(vec![0.5, 1.5, 2.0]);
        b.split = Split::Val;
        assert_eq!(TileBatch::from_arrow(&b.to_arrow().unwrap()).unwrap(), b);
    }

    #[test]
    fn sliced_rows_decode() {
        let b = TileBatch::example(4, 1, 2, 2);
        let arr = b.to_arrow().unwrap();
        let tail = TileBatch::from_arrow(&arr.slice(2, 2)).unwrap();
        assert_eq!(tail.tiles, b.tiles[2..].to_vec());
        assert_eq!(tail.pixels, b.pixels[8..].to_vec());
    }

    #[test]
    fn wrong_shapes_are_refused() {
        let mut b = TileBatch::example(2, 1, 2, 2);
        b.pixels.pop();
        assert!(matches!(b.to_arrow(), Err(Error::Contract(_))));
        let not_struct = Float32Array::from(vec![1.0f32]);
        let err = TileBatch::from_arrow(&not_struct).unwrap_err();
        assert!(err.to_string().contains("Struct"), "{err}");
    }
}
