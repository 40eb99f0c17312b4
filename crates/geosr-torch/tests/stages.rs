//! The network stages at node level, without a daemon: `unet-train` and `vgg-loss` run on
//! recorded inputs (dora's `init_testing`) and their outputs and files are checked.
#[path = "../../../tests/common/mod.rs"]
mod common;
#[path = "../../../tests/common/stage_test.rs"]
mod stage_test;
use geosr::card::{DataProvenance, Normalisation, RasterInfo, StageDescription};
use geosr::settings::Settings;
use geosr::tile::{Split, TileBatch};
use stage_test::*;
use std::path::Path;

/// A batch of `n` tiles of 3 × `edge`² with id `id`, as `tile-ingest` and `degrade` would send.
fn batch(id: u64, split: Split, index: u32, of: u32, n: usize, edge: usize) -> TileBatch {
    let mut b = TileBatch::example(n, 3, edge, edge);
    b.batch_id = id;
    b.split = split;
    b.index_in_split = index;
    b.batches_in_split = of;
    b.band_offset = vec![0.0; 3];
    b.band_scale = vec![1.0; 3];
    b.factor = if edge == 16 { 2 } else { 1 };
    b.pixels = (0..b.pixels.len())
        .map(|i| ((i * 37 + id as usize * 11) % 100) as f32 / 100.0)
        .collect();
    b
}

/// A loss stage's reply to the prediction of batch `id`: a zero gradient and a loss per tile.
fn loss_reply(id: u64) -> TileBatch {
    let mut b = batch(id, Split::Train, 0, 4, 2, 32);
    b.pixels = vec![0.0; b.pixels.len()];
    b.loss = Some(vec![0.25, 0.25]);
    b
}

/// The records the trainer's model card is made from, as `tile-ingest` and the loss stage
/// write them.
fn records(run: &Path) {
    let norm = Normalisation {
        offset: vec![0.0; 3],
        scale: vec![1.0; 3],
        fill: vec![0.5; 3],
    };
    let raster = RasterInfo {
        path: run.join("scene.tif"),
        width: 64,
        height: 64,
        bands: vec![1, 2, 3],
        data_type: "UInt16".into(),
        geotransform: common::GT,
        crs: String::new(),
        nodata: None,
        colour: vec!["red".into(), "green".into(), "blue".into()],
    };
    let data = DataProvenance {
        rasters: vec![raster],
        paired_lr: None,
        chip_size: 32,
        stride: 32,
        chips_considered: 4,
        chips_skipped_nodata: 0,
        max_nodata_pct: 10.0,
        train_chips: 3,
        val_chips: 1,
        train_batches_per_epoch: 4,
        val_batches: 1,
        batch_size: 2,
        seed: 42,
        normalisation: norm,
    };
    geosr::atomic::write_atomic(&run.join("data.json"), &serde_json::to_vec(&data).unwrap())
        .unwrap();
    let d = StageDescription {
        stage: "vgg-loss".into(),
        description: serde_json::json!({"vgg_layers": "relu1_2"}),
    };
    geosr::atomic::write_atomic(
        &run.join("stages/vgg-loss.json"),
        &serde_json::to_vec(&d).unwrap(),
    )
    .unwrap();
}

/// Training batches that arrive out of order and twice, loss replies that come late or twice,
/// and a validation pass: the trainer asks for exactly what it needs, predicts in step order,
/// and ends with a checkpoint whose card is made from the typed records.
#[test]
fn unet_train_trains_in_step_order_whatever_the_arrival_order() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    records(&run);
    let settings = Settings {
        run_dir: run.clone(),
        steps: Some(2),
        val_every: Some(2),
        factor: 2,
        chip_size: 32,
        unet_depth: 1,
        unet_width: 8,
        batch_size: 2,
        threads: Some(1),
        ..Settings::default()
    };
    let val_id = 1 << 62;
    let mut rec = Recording::new(&dir.path().join("inputs"));
    rec.input(
        0.05,
        "lr",
        batch(1, Split::Train, 1, 4, 2, 16).to_arrow().unwrap(),
    )
    .input(
        0.10,
        "lr",
        batch(0, Split::Train, 0, 4, 2, 16).to_arrow().unwrap(),
    )
    .input(
        0.15,
        "lr",
        batch(0, Split::Train, 0, 4, 2, 16).to_arrow().unwrap(),
    )
    .input(0.60, "loss_vgg", loss_reply(0).to_arrow().unwrap())
    .input(0.65, "loss_vgg", loss_reply(0).to_arrow().unwrap())
    .input(1.10, "loss_vgg", loss_reply(1).to_arrow().unwrap())
    .input(
        1.60,
        "hr_val",
        batch(val_id, Split::Val, 0, 1, 1, 32).to_arrow().unwrap(),
    )
    .input(
        1.65,
        "lr_val",
        batch(val_id, Split::Val, 0, 1, 1, 16).to_arrow().unwrap(),
    );
    let wiring = [
        ("lr", "degrade/lr"),
        ("lr_val", "degrade/lr_val"),
        ("hr_val", "tile-ingest/hr_val"),
        ("loss_vgg", "vgg-loss/loss"),
    ];
    let (result, outputs) = rec.run(&wiring, &settings, |node, inbox| {
        geosr_torch::train_stage::run(node, inbox, settings.clone())
    });
    result.unwrap();
    assert_eq!(
        requests(&outputs),
        [("train".into(), 0), ("train".into(), 1), ("val".into(), 0)],
        "exactly the batches the two steps and one validation use"
    );
    let preds: Vec<_> = outputs
        .iter()
        .filter(|o| o["id"] == "pred")
        .map(|o| column(o, "batch_id")[0].as_u64().unwrap())
        .collect();
    assert_eq!(preds, [0, 1], "steps take their batches in order");
    let card = geosr::checkpoint::load_checkpoint(&run).unwrap().card;
    assert_eq!((card.step, card.downsample_factor), (2, 2));
    assert_eq!(card.losses.len(), 1);
    assert_eq!(
        (card.losses[0].stage.as_str(), card.losses[0].from.as_str()),
        ("vgg-loss", "vgg-loss/loss")
    );
    assert_eq!(card.vgg_layers(), Some("relu1_2"));
    assert_eq!(card.metrics.unwrap().val_tiles, 1);
    assert_eq!(card.provenance.train_chips, 3);
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "header, step 2, validation:\n{csv}");
    assert!(run.join("model.onnx").is_file() && run.join("curves.png").is_file());
}

/// A loss stage answers each prediction once both halves are in, in any order, and drops the
/// HR tiles of batches already answered.
#[test]
fn vgg_loss_answers_each_prediction_once_its_hr_is_in() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let settings = Settings {
        run_dir: run.clone(),
        vgg_weights: common::vgg_weights(),
        vgg_layers: "relu1_2".into(),
        threads: Some(1),
        ..Settings::default()
    };
    let loss = geosr_torch::loss::PerceptualLoss::new(&settings, tch::Device::Cpu).unwrap();
    let hr = |id| batch(id, Split::Train, id as u32, 4, 2, 32);
    let pred = |id| {
        let mut b = hr(id);
        b.pixels.iter_mut().for_each(|v| *v = 1.0 - *v);
        b
    };
    let mut rec = Recording::new(&dir.path().join("inputs"));
    rec.input(0.05, "hr", hr(0).to_arrow().unwrap())
        .input(0.10, "pred", pred(0).to_arrow().unwrap())
        .input(0.20, "pred", pred(1).to_arrow().unwrap())
        .input(0.30, "hr", hr(1).to_arrow().unwrap())
        .input(0.35, "hr", hr(0).to_arrow().unwrap())
        .closed(0.50, "pred");
    let wiring = [("hr", "tile-ingest/hr"), ("pred", "unet-train/pred")];
    let (result, outputs) = rec.run(&wiring, &settings, |node, inbox| {
        geosr_torch::loss_stage::run_loss_stage(
            (node, inbox),
            "vgg-loss",
            &loss,
            &run,
            tch::Device::Cpu,
        )
    });
    result.unwrap();
    assert_eq!(output_ids(&outputs), ["loss", "loss"]);
    for (o, id) in outputs.iter().zip([0u64, 1]) {
        assert_eq!(column(o, "batch_id")[0].as_u64(), Some(id));
        let shares: Vec<f64> = column(o, "loss")
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert!(
            shares.len() == 2 && shares.iter().all(|v| v.is_finite() && *v > 0.0),
            "{shares:?}"
        );
    }
    let described: StageDescription =
        geosr::card::read_record(&run.join("stages/test-node.json")).unwrap();
    assert_eq!(described.description["vgg_layers"], "relu1_2");
}
