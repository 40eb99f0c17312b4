//! `unet-infer`: super-resolves LR tile batches with a trained model — ONNX Runtime by default,
//! libtorch with `engine: tch`. See README.md beside this file.
use geosr::checkpoint::load_checkpoint;
use geosr::settings::Settings;
use geosr_torch::infer::{Engine, OrtEngine, TchEngine};
use geosr_torch::SettingsTorch;

fn main() -> eyre::Result<()> {
    let settings = Settings::from_env().map_err(|e| eyre::eyre!("unet-infer: {e}"))?;
    geosr::stage::init("unet-infer", &settings.log_dir);
    settings.apply_threads();
    let model = settings.model.clone().ok_or_else(|| {
        eyre::eyre!("unet-infer: GEOSR_MODEL is not set; give the run directory of a trained model")
    })?;
    let ckpt = load_checkpoint(&model).map_err(|e| eyre::eyre!("unet-infer: {e}"))?;
    let card = ckpt.card.clone();
    let mut engine: Box<dyn Engine> = match settings.engine.as_str() {
        "tch" => Box::new(
            TchEngine::load(&ckpt, settings.torch_device()?)
                .map_err(|e| eyre::eyre!("unet-infer: {e}"))?,
        ),
        _ => Box::new(
            OrtEngine::load(
                &model.join("model.onnx"),
                settings.threads.map(|t| t.max(1) as usize),
                settings.torch_device()?.is_cuda(),
            )
            .map_err(|e| eyre::eyre!("unet-infer: {e}"))?,
        ),
    };
    let f = card.downsample_factor as usize;
    tracing::info!(engine = engine.name(), model = %model.display(), factor = f, "unet-infer ready");
    geosr::stage::map_batches("unet-infer", &settings.log_dir, |_, lr| {
        if lr.bands != card.bands.len() {
            eyre::bail!(
                "unet-infer: tiles have {} bands, the model {} expects {}",
                lr.bands,
                model.display(),
                card.bands.len()
            );
        }
        let sr = engine.run(&lr.pixels, [lr.len(), lr.bands, lr.height, lr.width])?;
        Ok((
            "sr".into(),
            lr.derived(lr.bands, lr.height * f, lr.width * f, sr)?,
        ))
    })
}
