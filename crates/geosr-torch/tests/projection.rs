//! The consistency layer against the raster stages' own degradation (`geosr_raster::degrade`,
//! an independent implementation of the same operator by taps rather than convolutions).
use geosr::card::{Degradation, DegradationSpec};
use geosr_raster::degrade::Degrade;
use geosr_torch::projection::{LrProjection, TchOps};
use tch::{Device, Kind, Tensor};

fn spec(antialias: bool, blur_sigma: f64) -> DegradationSpec {
    DegradationSpec {
        antialias,
        blur_sigma,
        noise_std: 0.0,
        jpeg_quality: None,
    }
}

fn values(t: &Tensor) -> Vec<f32> {
    geosr_torch::tensor_values(t)
}

/// The raster stages' degradation of every tile of an N×C×H×W tensor.
fn raster_degrade(sr: &Tensor, factor: u32, spec: &DegradationSpec) -> Vec<f32> {
    let d = Degradation {
        factor,
        spec: spec.clone(),
    };
    let [n, c, h, w] = sr.size()[..] else {
        panic!()
    };
    let px = values(sr);
    let len = (c * h * w) as usize;
    (0..n as usize)
        .flat_map(|i| {
            d.apply(
                &px[i * len..(i + 1) * len],
                c as usize,
                h as usize,
                w as usize,
                0,
            )
            .unwrap()
        })
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Worst |D·SR − LR| after the layer, and worst |D_layer − D_raster| on the raw SR.
fn check(factor: i64, spec: &DegradationSpec) -> (f32, f32) {
    tch::manual_seed(7);
    let (h, w) = (20, 28);
    let lr = Tensor::randn([2, 3, h, w], (Kind::Float, Device::Cpu));
    // A network output that is not consistent: the LR upsampled plus structured error.
    let sr = lr.upsample_bicubic2d([h * factor, w * factor], false, None, None)
        + Tensor::randn([2, 3, h * factor, w * factor], (Kind::Float, Device::Cpu)) * 0.3;
    let p = LrProjection::new(3, factor, spec);
    let ours = values(&p.degrade(&mut TchOps, &sr));
    let theirs = raster_degrade(&sr, factor as u32, spec);
    let operator_gap = max_abs_diff(&ours, &theirs);
    let corrected = p.apply(&mut TchOps, &sr, &lr);
    let back = raster_degrade(&corrected, factor as u32, spec);
    (max_abs_diff(&back, &values(&lr)), operator_gap)
}

#[test]
fn the_layer_reproduces_the_input_under_the_models_degradation() {
    for factor in [2, 3, 4, 8] {
        for antialias in [true, false] {
            let (residual, gap) = check(factor, &spec(antialias, 0.0));
            eprintln!(
                "×{factor} antialias {antialias}: residual {residual:.2e}, operator gap {gap:.2e}"
            );
            assert!(
                gap < 1e-5,
                "×{factor}: the layer's D differs from degrade by {gap}"
            );
            assert!(residual < 1e-5, "×{factor}: D·SR − LR up to {residual}");
        }
    }
}

#[test]
fn with_blur_too() {
    for factor in [2, 3, 4, 8] {
        let (residual, gap) = check(factor, &spec(true, 1.0));
        eprintln!("×{factor} blur 1: residual {residual:.2e}, operator gap {gap:.2e}");
        assert!(gap < 1e-5);
        // A blur of one HR pixel at ×2 leaves DDᵀ ill-conditioned (its interior condition
        // number is about 46 per axis): the fixed steps get within a stated bound, not to float
        // precision.
        let bound = if factor == 2 { 5e-2 } else { 1e-5 };
        assert!(residual < bound, "×{factor}: D·SR − LR up to {residual}");
    }
}
