//! `unet-infer`: super-resolves LR tile batches with a trained model — libtorch by default, ONNX
//! Runtime with `engine: ort`; with `workers` > 1, only its share of the batches. See README.md
//! beside this file.
use geosr::checkpoint::load_checkpoint;
use geosr_torch::infer::{Engine, OrtEngine, TchEngine};
use geosr_torch::SettingsTorch;
use std::process::ExitCode;

const STAGE: &str = "unet-infer";

fn main() -> ExitCode {
    // Inference shares the cores with the writer's compression threads.
    geosr_torch::passive_openmp_wait();
    geosr::node::run(STAGE, || {
        let (node, inbox, settings) = geosr::node::start(STAGE)?;
        geosr::stage::init(STAGE, &settings.log_dir);
        geosr::stage::keep_freed_memory();
        settings.apply_threads();
        let model = settings.model.clone().ok_or_else(|| {
            eyre::eyre!("GEOSR_MODEL is not set; give the run directory of a trained model")
        })?;
        let ckpt = load_checkpoint(&model)?;
        let card = ckpt.card.clone();
        let device = settings.torch_device()?;
        let mut engine: Box<dyn Engine> = match settings.engine.as_str() {
            "tch" => Box::new(TchEngine::load(&ckpt, device)?),
            _ => Box::new(OrtEngine::load(
                &model.join("model.onnx"),
                settings.threads.map(|t| t.max(1) as usize),
                device.is_cuda(),
            )?),
        };
        let f = card.downsample_factor as usize;
        tracing::info!(engine = engine.name(), model = %model.display(), factor = f, "unet-infer ready");
        let share = geosr::flow::Share::new(settings.worker as u64, settings.workers as u64)
            .ok_or_else(|| eyre::eyre!("worker {} of {}", settings.worker, settings.workers))?;
        geosr::stage::map_batches_shared(node, inbox, &settings.log_dir, share, |_, lr| {
            if lr.bands != card.bands.len() {
                eyre::bail!(
                    "tiles have {} bands, the model {} expects {}",
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
    })
}
