//! `op-upscale`: the classic resamplers (bilinear, bicubic, Lanczos-3 by `factor`) as a dora
//! operator. Same contract as the `upscale` node: input `lr`, output `sr`.
//! See README.md beside this file.
use geosr::settings::{Resampler, Settings};
use geosr::tile::TileBatch;
use geosr_operator::{TileOperator, TileStage};

dora_operator_api::register_operator!(TileOperator<Upscale>);

pub struct Upscale {
    factor: usize,
    method: Resampler,
}

impl TileStage for Upscale {
    const STAGE: &'static str = "upscale";

    fn from_env() -> eyre::Result<(Self, std::path::PathBuf)> {
        let s = Settings::from_env()?;
        // with `model` set (evaluation), the model's factor, so outputs line up
        let card = geosr::checkpoint::model_card_of(&s)?;
        let factor = geosr::card::factor_for(&s, card.as_ref()) as usize;
        let method = s.upscale_method;
        Ok((Upscale { factor, method }, s.log_dir))
    }

    fn on_batch(&mut self, _: &str, lr: TileBatch) -> eyre::Result<Vec<(String, TileBatch)>> {
        let sr = geosr_raster::upscale::upscale_batch(&lr, self.factor, self.method)?;
        Ok(vec![("sr".into(), sr)])
    }
}
