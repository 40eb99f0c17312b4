//! The U-Net exported to ONNX by our own writer gives the same output under ONNX Runtime as
//! under libtorch.
#[path = "../../../tests/common/mod.rs"]
mod common;
use geosr::card::DegradationSpec;
use geosr::settings::{Skip, Upsample};
use geosr_torch::infer::{Engine, OrtEngine};
use geosr_torch::unet::{UNet, UNetConfig};
use tch::{nn::VarStore, Device, Kind, Tensor};

fn parity(cfg: UNetConfig) {
    tch::manual_seed(11);
    let vs = VarStore::new(Device::Cpu);
    let net = UNet::new(&vs.root(), &cfg);
    // Random weights everywhere, the zero-initialised tail included.
    tch::no_grad(|| {
        for (_, mut t) in vs.variables() {
            let _ = t.g_add_(&(t.randn_like() * 0.05));
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.onnx");
    geosr_torch::onnx::export_unet(&cfg, &vs.variables(), &path).unwrap();
    let (n, c, h, w) = (3usize, cfg.bands as usize, 16usize, 24usize);
    let x = Tensor::rand(
        [n as i64, c as i64, h as i64, w as i64],
        (Kind::Float, Device::Cpu),
    );
    let expected: Vec<f32> = tch::no_grad(|| net.forward(&x))
        .flatten(0, -1)
        .try_into()
        .unwrap();
    let input: Vec<f32> = x.flatten(0, -1).try_into().unwrap();
    let mut ort = OrtEngine::load(&path, Some(1), false).unwrap();
    let got = ort.run(&input, [n, c, h, w]).unwrap();
    assert_eq!(got.len(), expected.len());
    let diff = got
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-4, "{cfg:?}: max |ort - tch| = {diff}");
}

#[test]
fn ort_matches_tch_for_every_variant() {
    let layer = |antialias: bool, blur_sigma: f64| {
        Some(DegradationSpec {
            antialias,
            blur_sigma,
            noise_std: 0.0,
            jpeg_quality: None,
        })
    };
    for (depth, upsample, skip, factor, bands, consistency) in [
        (2, Upsample::PixelShuffle, Skip::Bicubic, 4, 3, None),
        (1, Upsample::PixelShuffle, Skip::Bilinear, 2, 4, None),
        (2, Upsample::Deconv, Skip::None, 3, 1, None),
        (1, Upsample::Deconv, Skip::Bicubic, 8, 3, None),
        // The consistency layer, with and without blur, at even and odd factors.
        (
            2,
            Upsample::PixelShuffle,
            Skip::Bicubic,
            4,
            3,
            layer(true, 0.0),
        ),
        (
            1,
            Upsample::PixelShuffle,
            Skip::Bicubic,
            3,
            2,
            layer(true, 1.0),
        ),
        (1, Upsample::Deconv, Skip::None, 2, 1, layer(false, 0.0)),
    ] {
        parity(UNetConfig {
            bands,
            factor,
            depth,
            width: 8,
            upsample,
            skip,
            consistency,
        });
    }
}
