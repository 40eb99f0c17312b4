//! `op-stage-template`: a geosr stage as a dora operator. It answers every tile batch on `sr`
//! with one batch on `sr` (same ids, geometry and shape), so it can sit between any stage that
//! makes SR tiles and any stage that takes them, on a request/credit flow, unchanged.
//!
//! Replace the body of `process` with what the stage does and its settings in `from_env`; the
//! event loop, Arrow decoding and encoding and tile counts come from `geosr_operator`. Rename
//! the ports in `on_batch` and in the graph if it maps other kinds of tiles (`hr*`, `lr*`: see
//! docs/tile-contract.md).
use geosr::settings::Settings;
use geosr::tile::TileBatch;
use geosr_operator::{TileOperator, TileStage};

dora_operator_api::register_operator!(TileOperator<Stage>);

/// The stage and its own settings, read once from its environment (the node's `env:` in the
/// graph). geosr's shared settings ignore names they do not know, so a stage may add its own.
pub struct Stage {}

impl TileStage for Stage {
    /// Its name in messages and its tile-counts file: use it as the node id in graphs.
    const STAGE: &'static str = "stage-template";

    fn from_env() -> eyre::Result<(Self, std::path::PathBuf)> {
        let shared = Settings::from_env()?;
        Ok((Stage {}, shared.log_dir))
    }

    fn on_batch(
        &mut self,
        _input: &str,
        batch: TileBatch,
    ) -> eyre::Result<Vec<(String, TileBatch)>> {
        Ok(vec![("sr".into(), process(&batch, self)?)])
    }
}

/// What the stage does to one batch. `pixels` holds N·C·H·W normalised values (native value =
/// pixel × band_scale + band_offset); `derived` keeps ids and geometry for a new pixel buffer.
fn process(batch: &TileBatch, _stage: &Stage) -> eyre::Result<TileBatch> {
    let pixels = batch.pixels.clone();
    Ok(batch.derived(batch.bands, batch.height, batch.width, pixels)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The core library's example batch goes through the stage with its geometry intact, and
    /// through the Arrow round trip every message takes.
    #[test]
    fn keeps_ids_geometry_and_shape() {
        let mut stage = Stage {};
        let batch = TileBatch::example(2, 3, 8, 8);
        let replies = stage.on_batch("sr", batch.clone()).unwrap();
        let (output, out) = &replies[0];
        assert_eq!(output, "sr");
        assert_eq!((out.batch_id, &out.tiles), (batch.batch_id, &batch.tiles));
        assert_eq!(out.pixels.len(), batch.pixels.len());
        let back = TileBatch::from_arrow(out.to_arrow().unwrap().as_ref()).unwrap();
        assert_eq!(&back, out);
    }
}
