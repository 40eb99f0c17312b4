//! `degrade`: HR tiles in, LR tiles out (bilinear downsampling by `factor`, optional blur,
//! noise, JPEG). Every input `hr…` is answered on the output `lr…` of the same suffix.
//! See README.md beside this file.
use geosr::card::Degradation;
use geosr_raster::degrade::Degrade;
use std::process::ExitCode;

const STAGE: &str = "degrade";

fn main() -> ExitCode {
    geosr::node::run(STAGE, || {
        let (node, inbox, settings) = geosr::node::start(STAGE)?;
        if settings.model.is_none() {
            settings.check_run_dir()?;
        }
        geosr::stage::pin_mmap_threshold();
        // Training graphs log into the run; evaluation graphs (a model given) into `log_dir`.
        let log_dir = match settings.model {
            Some(_) => settings.log_dir.clone(),
            None => settings.run_dir.clone(),
        };
        geosr::stage::init(STAGE, &log_dir);
        // Evaluation degrades exactly as the model's training did: the card's settings win.
        let card = geosr::checkpoint::model_card_of(&settings)?;
        let deg = Degradation::for_stage(&settings, card.as_ref());
        tracing::info!(?deg, from_model = settings.model.is_some(), "degrade ready");
        geosr::stage::map_batches(node, inbox, &log_dir, |id, hr| {
            let output = id
                .strip_prefix("hr")
                .map(|suffix| format!("lr{suffix}"))
                .ok_or_else(|| eyre::eyre!("input `{id}` should be named hr or hr_<suffix>"))?;
            Ok((output, deg.apply_batch(&hr)?))
        })
    })
}
