//! # geosr-torch
//!
//! The parts of geosr that run networks, on libtorch (tch) and ONNX Runtime: the U-Net
//! ([`unet`]), the VGG-16 loss network and its weight import ([`vgg`]), losses and the
//! loss-stage protocol ([`loss`], [`loss_stage`]), Adam ([`adam`]), training ([`train`]), ONNX
//! export ([`onnx`]), inference engines ([`infer`]) and the benchmarks ([`bench`]). Only the
//! stages that run a model link it; the rest use the core crate `geosr` alone and do not carry
//! libtorch (about 147 MB of resident memory per process measured for a binary that links it).
pub mod adam;
pub mod bench;
pub mod infer;
pub mod loss;
pub mod loss_stage;
pub mod onnx;
pub mod tensor;
pub mod train;
pub mod unet;
pub mod vgg;

pub use tensor::{device_name, shape_text, tensor_values, SettingsTorch, TileTensors, TorchResult};
