//! What the GPU path relies on, checked where it can be on any host: CUDA asked for without CUDA
//! is an error with its cause, the flat Adam does the per-parameter arithmetic exactly, the loss
//! loads from a file with only the VGG layers it uses, and the GPU proof runs its CPU half.
#[path = "../../../tests/common/mod.rs"]
mod common;
use common::*;
use geosr::settings::{DeviceChoice, Settings};
use geosr_torch::adam::Adam;
use geosr_torch::loss::{LossFn, PerceptualLoss};
use geosr_torch::proof::{self, ProofConfig, ProofOptions};
use geosr_torch::SettingsTorch;
use std::path::Path;
use tch::{nn::VarStore, Device, Kind, Tensor};

/// The first four convolutions of the real VGG-16 file (what `scripts/gpu-kit` packs).
fn write_vgg_to_relu2_2(path: &Path) {
    let stored = Tensor::read_safetensors(vgg_weights()).unwrap();
    let keep: Vec<(String, Tensor)> = stored
        .into_iter()
        .filter(|(n, _)| n.split('.').nth(1).unwrap().parse::<usize>().unwrap() < 9)
        .collect();
    assert_eq!(keep.len(), 8);
    Tensor::write_safetensors(&keep, path).unwrap();
}

#[test]
fn cuda_asked_for_without_cuda_is_an_error_naming_the_cause() {
    if geosr_torch::cuda_device().is_ok() {
        eprintln!("this host has CUDA: nothing to check");
        return;
    }
    let s = Settings {
        device: DeviceChoice::Cuda,
        ..Settings::default()
    };
    let err = s.torch_device().unwrap_err().full_text();
    assert!(
        err.starts_with("setting `device`: cuda was asked for but"),
        "{err}"
    );
    let auto = Settings::default().torch_device().unwrap();
    assert_eq!(auto, Device::Cpu, "auto falls back to the CPU");
}

#[test]
fn ort_on_cuda_without_its_cuda_provider_fails_instead_of_running_on_the_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.onnx");
    let cfg = geosr_torch::unet::UNetConfig::from_settings(&Settings::default(), 3);
    let vs = VarStore::new(Device::Cpu);
    let _net = geosr_torch::unet::UNet::new(&vs.root(), &cfg);
    geosr_torch::onnx::export_unet(&cfg, &vs.variables(), &path).unwrap();
    assert!(geosr_torch::infer::OrtEngine::load(&path, Some(1), false).is_ok());
    match geosr_torch::infer::OrtEngine::load(&path, Some(1), true) {
        Ok(_) => eprintln!("this ONNX Runtime has a working CUDA provider: nothing to check"),
        Err(e) => {
            let text = e.full_text();
            assert!(
                text.contains("CUDA provider is not available") && text.contains("engine: tch"),
                "{text}"
            );
        }
    }
}

#[test]
fn adam_over_a_flat_buffer_does_the_per_parameter_arithmetic_exactly() {
    tch::manual_seed(3);
    let vs = VarStore::new(Device::Cpu);
    let a = vs.root().randn("a", &[3, 5], 0.0, 1.0);
    let b = vs.root().randn("b", &[7], 0.0, 1.0);
    let (mut ra, mut rb) = (a.detach().copy(), b.detach().copy());
    let mut ma = ra.zeros_like();
    let mut va = ra.zeros_like();
    let mut mb = rb.zeros_like();
    let mut vb = rb.zeros_like();
    let mut adam = Adam::new(&vs);
    let (b1, b2, eps, lr) = (0.9f64, 0.999f64, 1e-8, 1e-2);
    for step in 1..=4 {
        adam.zero_grad();
        let loss = (&a * &a).sum(Kind::Float) + (&b * 3.0).sin().sum(Kind::Float);
        loss.backward();
        let (ga, gb) = (a.grad().copy(), b.grad().copy());
        adam.step(lr);
        let bc1 = 1.0 - b1.powi(step);
        let bc2 = 1.0 - b2.powi(step);
        for (p, m, v, g) in [
            (&mut ra, &mut ma, &mut va, &ga),
            (&mut rb, &mut mb, &mut vb, &gb),
        ] {
            *m = &*m * b1 + g * (1.0 - b1);
            *v = &*v * b2 + g.square() * (1.0 - b2);
            *p = &*p - (&*m / bc1) / ((&*v / bc2).sqrt() + eps) * lr;
        }
        // The variables the network holds are the ones updated, to the last bit.
        assert!(a.detach().equal(&ra), "a after step {step}");
        assert!(b.detach().equal(&rb), "b after step {step}");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("optimizer.safetensors");
    adam.save(&path).unwrap();
    let stored = Tensor::read_safetensors(&path).unwrap();
    let get = |k: &str| &stored.iter().find(|(n, _)| n == k).unwrap().1;
    assert!(get("m.a").equal(&ma) && get("v.b").equal(&vb));
    let mut again = Adam::new(&vs);
    again.load(&path, 4).unwrap();
    again.save(&dir.path().join("again.safetensors")).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        std::fs::read(dir.path().join("again.safetensors")).unwrap()
    );
}

#[test]
fn the_loss_loads_from_a_file_with_only_the_layers_it_uses() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("vgg16-relu2_2.safetensors");
    write_vgg_to_relu2_2(&short);
    let s = Settings::default(); // relu2_2
    let full = PerceptualLoss::with_weights(&s, &vgg_weights(), Device::Cpu).unwrap();
    let part = PerceptualLoss::with_weights(&s, &short, Device::Cpu).unwrap();
    tch::manual_seed(1);
    let pred = Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu));
    let hr = Tensor::rand([2, 3, 32, 32], (Kind::Float, Device::Cpu));
    let colour = "blue,green,red";
    assert!(full
        .per_tile(&pred, &hr, colour)
        .unwrap()
        .equal(&part.per_tile(&pred, &hr, colour).unwrap()));

    let deeper = Settings {
        vgg_layers: "relu3_3".into(),
        ..Settings::default()
    };
    let err = PerceptualLoss::with_weights(&deeper, &short, Device::Cpu)
        .err()
        .unwrap()
        .full_text();
    assert!(err.contains("has no tensor `features.10."), "{err}");

    let foreign = dir.path().join("foreign.safetensors");
    let mut tensors = Tensor::read_safetensors(&short).unwrap();
    tensors.push((
        "classifier.0.weight".into(),
        Tensor::zeros([2], tch::kind::FLOAT_CPU),
    ));
    Tensor::write_safetensors(&tensors, &foreign).unwrap();
    let err = PerceptualLoss::with_weights(&s, &foreign, Device::Cpu)
        .err()
        .unwrap()
        .full_text();
    assert!(err.contains("holds tensor `classifier.0.weight`"), "{err}");
}

#[test]
fn the_gpu_proof_runs_its_cpu_half_and_reports_what_it_skipped() {
    let kit = tempfile::tempdir().unwrap();
    write_vgg_to_relu2_2(&kit.path().join(proof::VGG_FILE));
    // A smooth synthetic scene: there is detail for the network to learn.
    let y = Tensor::arange(96, tch::kind::FLOAT_CPU).view([1, 96, 1]) / 96.0;
    let x = Tensor::arange(96, tch::kind::FLOAT_CPU).view([1, 1, 96]) / 96.0;
    let band = |k: f64| ((&y * k * 7.0).sin() * (&x * k * 5.0).cos() + 1.0) / 2.0;
    let crop = Tensor::cat(&[band(1.0), band(1.5), band(2.0)], 0).to_kind(Kind::Half);
    Tensor::write_safetensors(&[("hr", crop)], kit.path().join(proof::CROP_FILE)).unwrap();

    let mut opts = ProofOptions::new(kit.path());
    opts.cpu_steps = 15;
    opts.infer_batch = 2;
    opts.infer_tile = 16;
    opts.infer_repeats = 1;
    opts.configs = vec![ProofConfig {
        batch: 4,
        hr_chip: 32,
        ..ProofConfig::demo()
    }];
    let report = proof::run_proof(&opts).unwrap();
    let out = tempfile::tempdir().unwrap();
    let md = proof::write_report(out.path(), &report, "a test", None).unwrap();
    assert!(out.path().join("proof.json").is_file());
    if report.cuda_skipped.is_none() {
        eprintln!("this host has CUDA: the CPU-only report is not checked");
        return;
    }
    assert_eq!(report.training.len(), 1, "{md}");
    let t = &report.training[0];
    assert!(
        t.device == "cpu" && t.steps == 15 && t.steps_per_s > 0.0,
        "{md}"
    );
    assert!(report.inference[0].mp_per_s > 0.0, "{md}");
    let skipped = report.checks.iter().filter(|c| c.passed.is_none()).count();
    assert_eq!(skipped, 2, "parity and inference parity need CUDA: {md}");
    assert!(md.contains("CUDA measurements skipped:"), "{md}");
    assert!(proof::all_passed(&report), "{md}");
}
