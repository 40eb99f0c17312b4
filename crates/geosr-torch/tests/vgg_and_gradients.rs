//! The VGG-16 import and the loss-stage protocol, with real weights and real libtorch.
#[path = "../../../tests/common/mod.rs"]
mod common;
use common::*;
use geosr::settings::PixelLoss as PixelLossKind;
use geosr::settings::Settings;
use geosr::tile::TileBatch;
use geosr_torch::loss::{loss_and_grad, LossFn, PerceptualLoss, PixelLoss};
use geosr_torch::unet::{UNet, UNetConfig};
use geosr_torch::TileTensors;
use tch::{nn::VarStore, Device, Kind, Tensor};

fn checksums(tensors: &[(String, Tensor)]) -> (usize, f64, f64) {
    let n: usize = tensors.iter().map(|(_, t)| t.numel()).sum();
    let sum: f64 = tensors
        .iter()
        .map(|(_, t)| t.to_kind(Kind::Double).sum(Kind::Double).double_value(&[]))
        .sum();
    let abs: f64 = tensors
        .iter()
        .map(|(_, t)| {
            t.to_kind(Kind::Double)
                .abs()
                .sum(Kind::Double)
                .double_value(&[])
        })
        .sum();
    (n, sum, abs)
}

#[test]
fn converted_vgg16_has_the_imagenet_conv_layers() {
    let stored = Tensor::read_safetensors(vgg_weights()).unwrap();
    let weights: Vec<_> = stored
        .iter()
        .filter(|(n, _)| n.ends_with(".weight"))
        .collect();
    assert_eq!(weights.len(), 13, "13 conv layers");
    for (i, (cin, cout)) in geosr_torch::vgg::CONV_INDICES
        .iter()
        .zip(geosr_torch::vgg::CONV_CHANNELS)
    {
        let w = &stored
            .iter()
            .find(|(n, _)| *n == format!("features.{i}.weight"))
            .unwrap()
            .1;
        assert_eq!(w.size(), [cout, cin, 3, 3]);
    }
    let (n, sum, abs) = checksums(&stored);
    assert_eq!(n, 14_714_688);
    // Checksums of the converted tensors (measured once; they pin the exact weights).
    assert!((sum - VGG_SUM).abs() < 1e-3, "sum {sum}");
    assert!((abs - VGG_ABS_SUM).abs() < 1e-2, "abs sum {abs}");
}

const VGG_SUM: f64 = -9405.04281257936;
const VGG_ABS_SUM: f64 = 103173.53233196016;

#[test]
fn import_from_onnx_reproduces_the_weights_file() {
    let onnx = root().join(".cache/vgg16.onnx");
    assert!(
        onnx.is_file(),
        "{} is missing: run scripts/setup",
        onnx.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("v.safetensors");
    assert_eq!(
        geosr_torch::vgg::import_onnx(&onnx, &out).unwrap(),
        geosr_torch::vgg::PARAMETERS
    );
    let a = Tensor::read_safetensors(&out).unwrap();
    let b = Tensor::read_safetensors(vgg_weights()).unwrap();
    for (name, t) in &a {
        let u = &b.iter().find(|(n, _)| n == name).unwrap().1;
        assert!(t.equal(u), "{name} differs");
    }
    // A file that is not ONNX is refused, naming it.
    let junk = dir.path().join("junk.onnx");
    std::fs::write(&junk, [0xffu8; 64]).unwrap();
    let err = geosr_torch::vgg::import_onnx(&junk, &out)
        .unwrap_err()
        .to_string();
    assert!(err.contains("junk.onnx"), "{err}");
}

#[test]
fn missing_or_wrong_weights_are_clear_errors() {
    let s = Settings::default();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.safetensors");
    let err = PerceptualLoss::with_weights(&s, &missing, Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("absent.safetensors") && err.contains("not found"),
        "{err}"
    );
    let wrong = dir.path().join("other.safetensors");
    Tensor::write_safetensors(
        &[(
            "features.0.weight",
            Tensor::zeros([64, 3, 5, 5], (Kind::Float, Device::Cpu)),
        )],
        &wrong,
    )
    .unwrap();
    let err = PerceptualLoss::with_weights(&s, &wrong, Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("other.safetensors"), "{err}");
    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"definitely not safetensors").unwrap();
    let err = PerceptualLoss::with_weights(&s, &garbage, Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("garbage.safetensors"), "{err}");
}

/// Parameter gradients of a loss computed two ways: (a) the dataflow protocol — a loss stage
/// returns ∂loss/∂pred through the Arrow contract and the trainer back-propagates it; (b) plain
/// in-process autograd of the same loss through the network.
fn compare_protocol_with_autograd(loss: &dyn LossFn, bands: i64, colour: &str) {
    tch::manual_seed(3);
    let cfg = UNetConfig {
        bands,
        factor: 2,
        depth: 1,
        width: 8,
        upsample: geosr::settings::Upsample::PixelShuffle,
        skip: geosr::settings::Skip::Bicubic,
        consistency: None,
    };
    let vs = VarStore::new(Device::Cpu);
    let net = UNet::new(&vs.root(), &cfg);
    // Move the zero-initialised tail off zero so every layer gets a gradient.
    tch::no_grad(|| {
        for (_, mut t) in vs.variables() {
            let _ = t.g_add_(&(t.randn_like() * 0.05));
        }
    });
    let mut lr = TileBatch::example(2, bands as usize, 16, 16);
    lr.pixels = Tensor::rand([2 * bands * 16 * 16], (Kind::Float, Device::Cpu))
        .try_into()
        .unwrap();
    lr.colour = colour.into();
    let hr = Tensor::rand([2, bands, 32, 32], (Kind::Float, Device::Cpu));

    // (a) the protocol, through Arrow both ways.
    let pred = net.forward(&lr.tensor(Device::Cpu));
    let sent = TileBatch::from_arrow(&lr.with_pixels(&pred.detach()).unwrap().to_arrow().unwrap())
        .unwrap();
    let (value, shares, grad) =
        loss_and_grad(loss, &sent.tensor(Device::Cpu), &hr, colour).unwrap();
    let mut reply = sent.with_pixels(&grad).unwrap();
    reply.loss = Some(shares.clone());
    let back = TileBatch::from_arrow(&reply.to_arrow().unwrap()).unwrap();
    assert!(
        (back.loss.as_ref().unwrap().iter().sum::<f64>() - value).abs()
            < 1e-6 * value.abs().max(1.0)
    );
    (&pred * back.tensor(Device::Cpu))
        .sum(Kind::Float)
        .backward();
    let mut names: Vec<String> = vs.variables().keys().cloned().collect();
    names.sort();
    let via_protocol: Vec<Tensor> = names
        .iter()
        .map(|n| vs.variables()[n].grad().copy())
        .collect();

    // (b) in-process autograd.
    for (_, t) in vs.variables() {
        let _ = t.grad().zero_();
    }
    let pred = net.forward(&lr.tensor(Device::Cpu));
    let direct = loss.per_tile(&pred, &hr, colour).unwrap().mean(Kind::Float);
    assert!((direct.double_value(&[]) - value).abs() < 1e-5 * value.abs().max(1.0));
    direct.backward();
    for (n, g) in names.iter().zip(&via_protocol) {
        let d = vs.variables()[n].grad();
        let scale = d.abs().max().double_value(&[]).max(1e-12);
        let diff = (&d - g).abs().max().double_value(&[]);
        assert!(
            diff / scale < 1e-4,
            "{n}: relative difference {}",
            diff / scale
        );
        assert!(scale > 1e-12, "{n} got no gradient");
    }
}

#[test]
fn pixel_loss_gradient_equals_autograd() {
    for kind in [PixelLossKind::L1, PixelLossKind::Mse] {
        compare_protocol_with_autograd(&PixelLoss { kind, weight: 1.0 }, 3, "red,green,blue");
    }
}

#[test]
fn perceptual_loss_gradient_equals_autograd() {
    let s = Settings {
        vgg_layers: "relu1_2:0.5,relu2_2".into(),
        feature_weight: 0.01,
        ..Settings::default()
    };
    let loss = PerceptualLoss::with_weights(&s, &vgg_weights(), Device::Cpu).unwrap();
    compare_protocol_with_autograd(&loss, 3, "blue,green,red");
    compare_protocol_with_autograd(&loss, 4, "blue,green,red,undefined");
    // Band sets without red, green and blue go through VGG band by band as grey images.
    compare_protocol_with_autograd(&loss, 2, "undefined,undefined");
}

/// The operator's plain-Rust pixel loss (geosr::pixel_loss) gives libtorch's loss, shares and
/// gradient, so a graph may swap the `pixel-loss` node for `op-pixel-loss`.
#[test]
fn plain_rust_pixel_loss_equals_libtorch() {
    tch::manual_seed(3);
    let (n, c, h, w) = (3, 2, 5, 4);
    let pred = Tensor::randn([n, c, h, w], (Kind::Float, Device::Cpu));
    let hr = Tensor::randn([n, c, h, w], (Kind::Float, Device::Cpu));
    let flat = |t: &Tensor| Vec::<f32>::try_from(t.reshape([-1])).unwrap();
    for kind in [PixelLossKind::L1, PixelLossKind::Mse] {
        let torch = PixelLoss { kind, weight: 0.7 };
        let (loss, shares, grad) = loss_and_grad(&torch, &pred, &hr, "").unwrap();
        let (loss2, shares2, grad2) =
            geosr::pixel_loss::loss_and_grad(kind, 0.7, &flat(&pred), &flat(&hr), n as usize)
                .unwrap();
        assert!(
            (loss - loss2).abs() < 1e-6 * loss.abs().max(1.0),
            "{kind}: {loss} vs {loss2}"
        );
        for (a, b) in shares.iter().zip(&shares2) {
            assert!(
                (a - b).abs() < 1e-6,
                "{kind}: shares {shares:?} vs {shares2:?}"
            );
        }
        let g = flat(&grad);
        let worst = g
            .iter()
            .zip(&grad2)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-7, "{kind}: gradient differs by {worst}");
    }
}
