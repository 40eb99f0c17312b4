//! # geosr-torch
//!
//! The parts of geosr that run networks, on libtorch (tch) and ONNX Runtime: the U-Net
//! ([`unet`]), the VGG-16 loss network and its weight import ([`vgg`]), losses and the
//! loss-stage protocol ([`loss`], [`loss_stage`]), Adam ([`adam`]), training ([`train`],
//! [`train_stage`]), ONNX export ([`onnx`]), the consistency layer ([`projection`]), inference engines ([`infer`]) and the GPU proof
//! ([`proof`]). Only the stages
//! that run a model link it, and it does not link GDAL: a GPU host needs libtorch, not GDAL.
pub mod adam;
pub mod infer;
pub mod loss;
pub mod loss_stage;
pub mod onnx;
pub mod projection;
pub mod proof;
pub mod tensor;
pub mod train;
pub mod train_stage;
pub mod unet;
pub mod vgg;

pub use tensor::{
    cuda_device, device_name, passive_openmp_wait, shape_text, tensor_values, SettingsTorch,
    TileTensors, TorchResult,
};
