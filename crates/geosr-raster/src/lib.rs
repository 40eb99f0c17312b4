//! # geosr-raster
//!
//! The raster path of geosr, on GDAL: reading rasters and their windows ([`raster`], with GDAL's
//! own error reports caught by [`gdal_errors`]), training chips and inference tiles ([`chips`],
//! [`scan`], of one scene or many: [`scenes`]), degradation ([`degrade`]), classic resamplers ([`upscale`]), mosaicking SR tiles
//! into a GeoTIFF ([`mosaic`], [`writer`]) and the comparison of results with HR rasters
//! ([`evaluate`]); and the loops of the stages that need more than a map over batches
//! ([`ingest`], [`writer`], [`evaluate_stage`]). The raster stages (`tile-ingest`, `degrade`,
//! `upscale`, `geotiff-writer`, `evaluate`) link it; the network stages do not, so they run
//! without GDAL.
pub mod chips;
pub mod consistency;
pub mod degrade;
pub mod evaluate;
pub mod evaluate_stage;
pub mod gdal_errors;
pub mod ingest;
pub mod mosaic;
pub mod raster;
pub mod row_writer;
pub mod scan;
pub mod scenes;
pub mod upscale;
pub mod writer;
