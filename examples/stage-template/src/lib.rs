//! `op-stage-template`: a geosr stage as a dora operator. It answers every tile batch on `sr`
//! with one batch on `sr` (same ids, geometry and shape), so it can sit between any stage that
//! makes SR tiles and any stage that takes them, on a request/credit flow, unchanged.
//!
//! Replace the body of [`process`] with what the stage does; rename the ports in `on_event` and
//! in the graph if it maps other kinds of tiles (`hr*`, `lr*`: see docs/tile-contract.md).
use dora_operator_api::{register_operator, DoraOperator, DoraOutputSender, DoraStatus, Event};
use geosr::flow::TileCounts;
use geosr::settings::Settings;
use geosr::tile::TileBatch;

/// The stage's name: in error messages and its tile-counts file (use it as the node id).
const STAGE: &str = "stage-template";

/// What the stage does to one batch. `pixels` holds N·C·H·W normalised values (native value =
/// pixel × band_scale + band_offset); `derived` keeps ids and geometry for a new pixel buffer.
fn process(batch: TileBatch, _config: &Config) -> eyre::Result<TileBatch> {
    let pixels = batch.pixels.clone();
    Ok(batch.derived(batch.bands, batch.height, batch.width, pixels)?)
}

/// The stage's own settings, read once from its environment (the node's `env:` in the graph).
/// geosr's shared settings (`Settings`) ignore names they do not know, so a stage may add its own.
struct Config {
    log_dir: std::path::PathBuf,
}

impl Config {
    fn from_env() -> eyre::Result<Self> {
        let shared = Settings::from_env().map_err(|e| eyre::eyre!("{STAGE}: {e}"))?;
        Ok(Config {
            log_dir: shared.log_dir,
        })
    }
}

register_operator!(Stage);

#[derive(Default)]
struct Stage {
    config: Option<Config>,
    counts: TileCounts,
}

impl Stage {
    fn input(
        &mut self,
        id: &str,
        array: &dyn dora_operator_api::arrow_v59::array::Array,
        out: &mut DoraOutputSender,
    ) -> eyre::Result<()> {
        if self.config.is_none() {
            self.config = Some(Config::from_env()?);
            self.counts = TileCounts::new(STAGE);
        }
        let config = self.config.as_ref().expect("just set");
        let (output, reply) =
            geosr::stage::map_arrow(STAGE, id, array, &mut self.counts, |_, batch| {
                Ok(("sr".into(), process(batch, config)?))
            })?;
        out.send(&output, reply)
            .map_err(|e| eyre::eyre!("{STAGE}: {e}"))
    }
}

impl DoraOperator for Stage {
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
            Event::InputParseError { id, error } => Err(format!("{STAGE}: input `{id}`: {error}")),
            Event::Stop => Ok(DoraStatus::Stop),
            _ => Ok(DoraStatus::Continue),
        }
    }
}

/// Tile counts for `geosr summary --graph`: written when the runtime drops the operator.
impl Drop for Stage {
    fn drop(&mut self) {
        if let Some(c) = &self.config {
            if let Err(e) = self.counts.write(&c.log_dir) {
                eprintln!("{STAGE}: writing tile counts: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The core library's example batch goes through the stage with its geometry intact.
    #[test]
    fn keeps_ids_geometry_and_shape() {
        let config = Config {
            log_dir: std::env::temp_dir(),
        };
        let batch = TileBatch::example(2, 3, 8, 8);
        let out = process(batch.clone(), &config).unwrap();
        assert_eq!(
            (out.batch_id, out.tiles.clone()),
            (batch.batch_id, batch.tiles.clone())
        );
        assert_eq!(out.pixels.len(), batch.pixels.len());
        // and it survives the Arrow round trip every message takes
        let back = TileBatch::from_arrow(out.to_arrow().unwrap().as_ref()).unwrap();
        assert_eq!(back, out);
    }
}
