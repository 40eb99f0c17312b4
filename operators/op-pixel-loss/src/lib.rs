//! `op-pixel-loss`: the per-pixel loss stage (`l1` or `mse`, times `pixel_weight`) as a dora
//! operator, run inside the dora runtime instead of its own process. Same loss-stage protocol as
//! the `pixel-loss` node: inputs `hr` and `pred`, output `loss` (∂loss/∂pred in `pixels`, each
//! tile's share in `loss`). Plain Rust, no libtorch. See README.md beside this file.
use geosr::flow::Join;
use geosr::settings::Settings;
use geosr::tile::TileBatch;
use geosr_operator::{TileOperator, TileStage};

dora_operator_api::register_operator!(TileOperator<PixelLoss>);

pub struct PixelLoss {
    kind: geosr::settings::PixelLoss,
    weight: f64,
    /// Halves of a batch waiting for the other one, by `batch_id`.
    halves: Join<TileBatch>,
}

impl TileStage for PixelLoss {
    const STAGE: &'static str = "pixel-loss";

    fn from_env() -> eyre::Result<(Self, std::path::PathBuf)> {
        let s = Settings::from_env()?;
        s.check_run_dir()?;
        if s.pixel_loss == geosr::settings::PixelLoss::None {
            eyre::bail!("pixel_loss is `none`; a pixel-loss stage needs `l1` or `mse`");
        }
        // What the model card records about this loss stage.
        geosr::stage::describe_stage(
            &s.run_dir,
            Self::STAGE,
            &serde_json::json!({
                "pixel_loss": s.pixel_loss,
                "pixel_weight": s.pixel_weight,
                "runs_as": "dora operator (op-pixel-loss)",
            }),
        )?;
        let stage = PixelLoss {
            kind: s.pixel_loss,
            weight: s.pixel_weight,
            halves: Join::new(&["hr", "pred"], 64),
        };
        Ok((stage, s.run_dir))
    }

    fn on_batch(
        &mut self,
        input: &str,
        batch: TileBatch,
    ) -> eyre::Result<Vec<(String, TileBatch)>> {
        let Some(both) = self.halves.insert(batch.batch_id, input, batch)? else {
            return Ok(Vec::new());
        };
        let reply = geosr::pixel_loss::reply(self.kind, self.weight, &both["pred"], &both["hr"])?;
        Ok(vec![("loss".into(), reply)])
    }
}
