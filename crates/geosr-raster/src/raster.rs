//! Raster I/O through GDAL: opening rasters or folders of them, reading windows as `f32`, and
//! writing GeoTIFFs.
//!
//! Every error names the file and the problem, so "not a raster", "no such file" and "too small
//! for a chip" each read as one clear sentence.
//!
//! ```
//! use geosr_raster::raster::RasterSource;
//! let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/demo/landsat8-224078-crop.tif");
//! let src = RasterSource::open(demo.as_ref(), &[]).unwrap();
//! let chip = src.read_window(0, 0, 64, 64).unwrap(); // CHW, f32
//! assert_eq!(chip.len(), src.info.bands.len() * 64 * 64);
//! ```
use gdal::raster::{GdalDataType, RasterCreationOptions};
use gdal::{Dataset, DriverManager};
use geosr::error::{Error, Result};
use geosr::rounding::round_half_away;
use std::path::{Path, PathBuf};

pub use geosr::card::RasterInfo;

/// An open raster with a band selection.
pub struct RasterSource {
    pub info: RasterInfo,
    dataset: Dataset,
}

impl RasterSource {
    /// The GDAL dataset underneath (for GDAL utilities such as building a VRT).
    pub fn dataset(&self) -> &Dataset {
        &self.dataset
    }

    /// Opens `path` and checks that `bands` (1-based; empty = all) exist.
    pub fn open(path: &Path, bands: &[u32]) -> Result<Self> {
        crate::gdal_errors::setup();
        if !path.exists() {
            return Err(Error::raster(path, "no such file"));
        }
        if path.is_dir() {
            return Err(Error::raster(path, "is a folder, expected a raster file"));
        }
        let watch = crate::gdal_errors::Watch::start();
        let dataset = Dataset::open(path).map_err(|_| {
            let why = watch.failures().join("; ");
            let why = why.trim_start_matches(&format!("{}: ", path.display()).to_string());
            match why.is_empty() {
                true => Error::raster(path, "GDAL cannot open it as a raster"),
                false => Error::raster(path, format!("GDAL cannot open it as a raster ({why})")),
            }
        })?;
        let count = dataset.raster_count();
        if count == 0 {
            return Err(Error::raster(
                path,
                "has no raster bands (is it a vector file?)",
            ));
        }
        let bands: Vec<u32> = if bands.is_empty() {
            (1..=count as u32).collect()
        } else {
            bands.to_vec()
        };
        if let Some(b) = bands.iter().find(|&&b| b == 0 || b as usize > count) {
            return Err(Error::raster(
                path,
                format!("band {b} asked for, the raster has bands 1..={count}"),
            ));
        }
        let (width, height) = dataset.raster_size();
        let first = dataset
            .rasterband(bands[0] as usize)
            .map_err(|e| Error::raster_caused(path, "GDAL", e))?;
        let data_type = first.band_type().name();
        if first.band_type() == GdalDataType::Unknown || data_type.starts_with("C") {
            return Err(Error::raster(
                path,
                format!("band data type {data_type} is not supported"),
            ));
        }
        let nodata = first.no_data_value();
        let mut colour = Vec::with_capacity(bands.len());
        for &b in &bands {
            let band = dataset
                .rasterband(b as usize)
                .map_err(|e| Error::raster_caused(path, "GDAL", e))?;
            colour.push(band.color_interpretation().name().to_ascii_lowercase());
        }
        // A raster without georeferencing still trains; its tiles carry a pixel-unit transform.
        let geotransform = dataset
            .geo_transform()
            .unwrap_or([0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
        let crs = dataset.projection();
        let info = RasterInfo {
            path: path.to_path_buf(),
            width,
            height,
            bands,
            data_type,
            geotransform,
            crs,
            nodata,
            colour,
        };
        Ok(RasterSource { info, dataset })
    }

    /// Reads a window of the selected bands as `f32`, channel-major (CHW).
    pub fn read_window(&self, x: u32, y: u32, w: u32, h: u32) -> Result<Vec<f32>> {
        let (w_, h_) = (w as usize, h as usize);
        if x as usize + w_ > self.info.width || y as usize + h_ > self.info.height {
            return Err(Error::raster(
                &self.info.path,
                format!(
                    "window {w}x{h} at ({x},{y}) lies outside the {}x{} raster",
                    self.info.width, self.info.height
                ),
            ));
        }
        let mut out = vec![0f32; self.info.bands.len() * w_ * h_];
        for (i, &b) in self.info.bands.iter().enumerate() {
            let band = self
                .dataset
                .rasterband(b as usize)
                .map_err(|e| Error::raster_caused(&self.info.path, "GDAL", e))?;
            let doing = format!("reading window at ({x},{y})");
            crate::gdal_errors::checked(&self.info.path, &doing, || {
                band.read_into_slice::<f32>(
                    (x as isize, y as isize),
                    (w_, h_),
                    (w_, h_),
                    &mut out[i * w_ * h_..(i + 1) * w_ * h_],
                    None,
                )
            })?;
        }
        Ok(out)
    }
}

/// The raster files named by `input`: the file itself, or the files of a folder (sorted, not
/// recursive) that GDAL recognises by extension. Errors when there is none.
pub fn list_rasters(input: &Path) -> Result<Vec<PathBuf>> {
    if !input.exists() {
        return Err(Error::raster(input, "no such file or folder"));
    }
    if input.is_file() {
        return Ok(vec![input.to_path_buf()]);
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(input).map_err(|e| Error::io(input, e))? {
        let path = entry.map_err(|e| Error::io(input, e))?.path();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        if path.is_file()
            && ["tif", "tiff", "vrt", "img", "jp2", "png", "jpg", "jpeg"].contains(&ext.as_str())
        {
            out.push(path);
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(Error::raster(
            input,
            "the folder holds no raster files (.tif, .tiff, .vrt, .img, .jp2, .png, .jpg)",
        ));
    }
    Ok(out)
}

/// Writes `pixels` (CHW `f32`) as a GeoTIFF of data type `T` (tests and fixtures), atomically and
/// checked (see [`geosr::atomic`], [`crate::gdal_errors`]). Values are rounded and clamped when
/// `T` is an integer type.
// The raster's full description is the argument list; a struct for it would be used here only.
#[allow(clippy::too_many_arguments)]
pub fn write_geotiff<T: gdal::raster::GdalType + Copy + FromF32>(
    path: &Path,
    bands: usize,
    width: usize,
    height: usize,
    pixels: &[f32],
    geotransform: [f64; 6],
    crs_wkt: &str,
    nodata: Option<f64>,
) -> Result<()> {
    let pending = geosr::atomic::PendingFile::new(path, ".tif")?;
    let tmp = pending.path();
    let watch = crate::gdal_errors::Watch::start();
    let gdal_err = |e: gdal::errors::GdalError| Error::raster_caused(path, "GDAL", e);
    let driver = DriverManager::get_driver_by_name("GTiff").map_err(gdal_err)?;
    let options = RasterCreationOptions::from_iter(["COMPRESS=DEFLATE", "TILED=YES"]);
    let mut ds = driver
        .create_with_band_type_with_options::<T, _>(tmp, width, height, bands, &options)
        .map_err(|e| Error::raster_caused(path, "cannot create", e))?;
    ds.set_geo_transform(&geotransform).map_err(gdal_err)?;
    if !crs_wkt.is_empty() {
        ds.set_projection(crs_wkt).map_err(gdal_err)?;
    }
    for b in 0..bands {
        let mut band = ds.rasterband(b + 1).map_err(gdal_err)?;
        let plane: Vec<T> = pixels[b * width * height..(b + 1) * width * height]
            .iter()
            .map(|&v| T::from_f32(v))
            .collect();
        let mut buf = gdal::raster::Buffer::new((width, height), plane);
        band.write((0, 0), (width, height), &mut buf)
            .map_err(gdal_err)?;
        if let Some(nd) = nodata {
            band.set_no_data_value(Some(nd)).map_err(gdal_err)?;
        }
    }
    ds.flush_cache().map_err(gdal_err)?;
    drop(ds);
    watch.check(path, "writing")?;
    pending.commit().map(drop)
}

/// Conversion from the `f32` working type to a raster's native type.
pub trait FromF32 {
    fn from_f32(v: f32) -> Self;
}
impl FromF32 for f32 {
    fn from_f32(v: f32) -> Self {
        v
    }
}
impl FromF32 for u8 {
    fn from_f32(v: f32) -> Self {
        round_half_away(v).clamp(0.0, 255.0) as u8
    }
}
impl FromF32 for u16 {
    fn from_f32(v: f32) -> Self {
        geosr::rounding::to_u16(v)
    }
}
impl FromF32 for i16 {
    fn from_f32(v: f32) -> Self {
        round_half_away(v).clamp(-32768.0, 32767.0) as i16
    }
}
