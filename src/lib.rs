//! # geosr
//!
//! Super-resolution of satellite imagery as a dora dataflow. This crate is the core every stage
//! calls; it links neither GDAL nor libtorch. It holds the Arrow messages ([`tile`], [`scores`])
//! and the flow between stages ([`flow`], [`node`], [`stage`], [`registry`]), settings
//! ([`settings`]), the model card and checkpoints ([`card`], [`checkpoint`], [`metrics_log`]),
//! files written whole ([`atomic`]), rounding whole rasters ([`rounding`]), metrics ([`metrics`], [`pixel_loss`]), pictures ([`plot`]),
//! graph checking and run summaries ([`graph`], [`check`], [`summary`]) and logging
//! ([`telemetry`]), and resampling taps shared by the raster stages and the network ([`taps`]).
//!
//! The crates beside it keep the two heavy dependencies apart: `geosr-raster` (GDAL: raster
//! I/O, tiling, degradation, mosaics, evaluation) serves the raster stages, `geosr-torch`
//! (libtorch, ONNX Runtime: networks, losses, training, inference) the network stages. No stage
//! links both; `geosr-cli` (the `geosr` command and the benchmarks) does.
pub mod atomic;
pub mod card;
pub mod check;
pub mod checkpoint;
pub mod error;
pub mod flow;
pub mod graph;
pub mod metrics;
pub mod metrics_log;
pub mod node;
pub mod pixel_loss;
pub mod plot;
pub mod registry;
pub mod rounding;
pub mod scores;
pub mod settings;
pub mod stage;
pub mod summary;
pub mod taps;
pub mod telemetry;
pub mod tile;

pub use error::{Error, Result};
