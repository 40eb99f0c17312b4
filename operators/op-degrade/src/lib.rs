//! `op-degrade`: the degradation stage as a dora operator: bilinear downsampling by `factor`,
//! then the optional Gaussian blur (`blur_sigma`, before downsampling), JPEG (`jpeg_quality`)
//! and noise (`noise_std`). Same contract as the `degrade` node: every input `hr…` is answered on
//! the output `lr…` of the same suffix. See README.md beside this file.
use geosr::card::Degradation;
use geosr::settings::Settings;
use geosr::tile::TileBatch;
use geosr_operator::{TileOperator, TileStage};
use geosr_raster::degrade::Degrade as _;

dora_operator_api::register_operator!(TileOperator<Degrade>);

pub struct Degrade(Degradation);

impl TileStage for Degrade {
    const STAGE: &'static str = "degrade";

    fn from_env() -> eyre::Result<(Self, std::path::PathBuf)> {
        let s = Settings::from_env()?;
        // Training writes counts into its run (never a finished one); evaluation into log_dir.
        let dir = match s.model {
            Some(_) => s.log_dir.clone(),
            None => {
                s.check_run_dir()?;
                s.run_dir.clone()
            }
        };
        let card = geosr::checkpoint::model_card_of(&s)?;
        Ok((Degrade(Degradation::for_stage(&s, card.as_ref())), dir))
    }

    fn on_batch(&mut self, input: &str, hr: TileBatch) -> eyre::Result<Vec<(String, TileBatch)>> {
        let output = input
            .strip_prefix("hr")
            .map(|suffix| format!("lr{suffix}"))
            .ok_or_else(|| eyre::eyre!("input `{input}` should be named hr or hr_<suffix>"))?;
        Ok(vec![(output, self.0.apply_batch(&hr)?)])
    }
}
