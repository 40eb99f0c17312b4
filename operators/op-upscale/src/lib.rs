//! `op-upscale`: the classic resamplers (bilinear, bicubic, Lanczos-3 by `factor`) as a dora
//! operator. Same contract as the `upscale` node: input `lr`, output `sr`.
//! See README.md beside this file.
use geosr::settings::Settings;
use geosr::tile::TileBatch;
use geosr_operator::{TileOperator, TileStage};

dora_operator_api::register_operator!(TileOperator<Upscale>);

pub struct Upscale {
    factor: usize,
    method: String,
}

impl TileStage for Upscale {
    const STAGE: &'static str = "upscale";

    fn from_env() -> eyre::Result<(Self, std::path::PathBuf)> {
        let s = Settings::from_env()?;
        // with `model` set (evaluation), the model's factor, so outputs line up
        let factor = geosr::upscale::factor_for_stage(&s)? as usize;
        let method = s.upscale_method.clone();
        Ok((Upscale { factor, method }, s.log_dir))
    }

    fn on_batch(&mut self, _: &str, lr: TileBatch) -> eyre::Result<Vec<(String, TileBatch)>> {
        let sr = geosr::upscale::upscale_batch(&lr, self.factor, &self.method)?;
        Ok(vec![("sr".into(), sr)])
    }
}
