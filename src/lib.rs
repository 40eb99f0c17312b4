//! # geosr
//!
//! Super-resolution of satellite imagery as a dora dataflow. This crate is the core every stage
//! calls, and it does not link libtorch: the Arrow tile contract ([`tile`], [`flow`]), raster
//! I/O and tiling ([`raster`], [`chips`], [`scan`], [`mosaic`]), degradation ([`degrade`]),
//! classic resamplers ([`upscale`]), metrics and evaluation reports ([`metrics`], [`evaluate`],
//! [`scores`], [`plot`]), checkpoints and the model card
//! ([`checkpoint`]), settings ([`settings`]), run summaries ([`summary`]), graph checking ([`check`]), node helpers
//! ([`stage`]) and logging ([`telemetry`]). The networks, losses, training and inference
//! engines live in `geosr-torch` (crates/geosr-torch), used only by the stages that run a model.
//! The stages under `nodes/` are thin shells over the two.
pub mod atomic;
pub mod check;
pub mod checkpoint;
pub mod chips;
pub mod degrade;
pub mod error;
pub mod evaluate;
pub mod flow;
pub mod gdal_errors;
pub mod metrics;
pub mod metrics_log;
pub mod mosaic;
pub mod node;
pub mod pixel_loss;
pub mod plot;
pub mod raster;
pub mod scan;
pub mod scores;
pub mod settings;
pub mod stage;
pub mod summary;
pub mod telemetry;
pub mod tile;
pub mod upscale;
pub mod writer;

pub use error::{Error, Result};
