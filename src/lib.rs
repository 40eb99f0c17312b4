//! # geosr
//!
//! Super-resolution of satellite imagery as a dora dataflow. This crate is the core every stage
//! calls: the Arrow tile contract ([`tile`], [`flow`]), raster I/O ([`raster`], [`chips`]),
//! degradation ([`degrade`]), the networks ([`unet`], [`vgg`]), losses ([`loss`]), metrics
//! ([`metrics`]), training ([`train`], [`adam`]), checkpoints ([`checkpoint`]), settings
//! ([`settings`]) and logging ([`telemetry`]). The stages under `nodes/` are thin shells over it.
pub mod adam;
pub mod bench;
pub mod checkpoint;
pub mod chips;
pub mod degrade;
pub mod error;
pub mod flow;
pub mod infer;
pub mod loss;
pub mod metrics;
pub mod mosaic;
pub mod onnx;
pub mod raster;
pub mod scan;
pub mod settings;
pub mod stage;
pub mod summary;
pub mod telemetry;
pub mod tile;
pub mod train;
pub mod unet;
pub mod upscale;
pub mod vgg;

pub use error::{Error, Result};
