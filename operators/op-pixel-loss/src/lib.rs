//! `op-pixel-loss`: the per-pixel loss stage (`l1` or `mse`, times `pixel_weight`) as a dora
//! operator, run inside the dora runtime instead of its own process. Same loss-stage protocol as
//! the `pixel-loss` node: inputs `hr` and `pred`, output `loss` (∂loss/∂pred in `pixels`, each
//! tile's share in `loss`). Plain Rust, no libtorch. See README.md beside this file.
use dora_operator_api::{register_operator, DoraOperator, DoraOutputSender, DoraStatus, Event};
use geosr::flow::TileCounts;
use geosr::settings::Settings;
use geosr::tile::TileBatch;
use std::collections::BTreeMap;

register_operator!(PixelLossOperator);

#[derive(Default)]
struct PixelLossOperator {
    settings: Option<Settings>,
    hr: BTreeMap<u64, TileBatch>,
    pred: BTreeMap<u64, TileBatch>,
    counts: TileCounts,
}

impl PixelLossOperator {
    /// Settings are read at the first event: `Default` cannot fail, `on_event` can.
    fn settings(&mut self) -> eyre::Result<&Settings> {
        if self.settings.is_none() {
            let s = Settings::from_env().map_err(|e| eyre::eyre!("op-pixel-loss: {e}"))?;
            s.check_run_dir()
                .map_err(|e| eyre::eyre!("op-pixel-loss: {e}"))?;
            if s.pixel_loss == "none" {
                eyre::bail!(
                    "op-pixel-loss: pixel_loss is `none`; a pixel-loss stage needs `l1` or `mse`"
                );
            }
            self.counts = TileCounts::new("pixel-loss");
            // What the model card records about this loss stage.
            geosr::stage::describe_stage(
                &s.run_dir,
                "pixel-loss",
                &serde_json::json!({
                    "pixel_loss": s.pixel_loss,
                    "pixel_weight": s.pixel_weight,
                    "runs_as": "dora operator (op-pixel-loss)",
                }),
            )?;
            self.settings = Some(s);
        }
        Ok(self.settings.as_ref().expect("just set"))
    }

    fn input(
        &mut self,
        id: &str,
        array: &dyn dora_operator_api::arrow_v59::array::Array,
        out: &mut DoraOutputSender,
    ) -> eyre::Result<()> {
        let (kind, weight) = {
            let s = self.settings()?;
            (s.pixel_loss.clone(), s.pixel_weight)
        };
        let batch = TileBatch::from_arrow(array)
            .map_err(|e| eyre::eyre!("op-pixel-loss: input `{id}`: {e}"))?;
        self.counts.count_in(id, batch.len());
        let key = batch.batch_id;
        match id {
            "hr" => self.hr.insert(key, batch),
            "pred" => self.pred.insert(key, batch),
            other => {
                eyre::bail!("op-pixel-loss: unexpected input `{other}` (expected `hr` and `pred`)")
            }
        };
        if let (Some(pred), Some(hr)) = (self.pred.get(&key), self.hr.get(&key)) {
            let reply = geosr::pixel_loss::reply(&kind, weight, pred, hr)?;
            self.pred.remove(&key);
            self.hr.remove(&key);
            self.counts.count_out("loss", reply.len());
            out.send("loss", reply.into_arrow()?)
                .map_err(|e| eyre::eyre!("op-pixel-loss: {e}"))?;
        }
        Ok(())
    }
}

/// The runtime does not always deliver `Stop` to an operator whose inputs have closed; it
/// always drops it, so the tile counts are written here.
impl Drop for PixelLossOperator {
    fn drop(&mut self) {
        if let Some(s) = &self.settings {
            if let Err(e) = self.counts.write(&s.run_dir) {
                eprintln!("op-pixel-loss: writing tile counts: {e}");
            }
        }
    }
}

impl DoraOperator for PixelLossOperator {
    fn on_event(
        &mut self,
        event: &Event,
        out: &mut DoraOutputSender,
    ) -> Result<DoraStatus, String> {
        match event {
            Event::Input { id, data, .. } => {
                self.input(id, data.as_array().as_ref(), out)
                    .map_err(|e| e.to_string())?;
                Ok(DoraStatus::Continue)
            }
            Event::InputParseError { id, error } => {
                Err(format!("op-pixel-loss: input `{id}`: {error}"))
            }
            Event::InputClosed { id } if *id == "pred" => Ok(DoraStatus::Stop),
            Event::Stop => Ok(DoraStatus::Stop),
            _ => Ok(DoraStatus::Continue),
        }
    }
}
