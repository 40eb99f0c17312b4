//! `op-sharpen`: unsharp masking of SR tiles, `x + amount · (x − blur_σ(x))`, a classic
//! post-processing step after interpolation. Made from examples/stage-template as the
//! walk-through of docs/writing-a-stage.md. It answers every tile batch on `sr` with one batch
//! on `sr` (same ids, geometry and shape).
use geosr::settings::Settings;
use geosr::tile::TileBatch;
use geosr_operator::{TileOperator, TileStage};

dora_operator_api::register_operator!(TileOperator<Stage>);

/// The stage and its own settings, read once from its environment (the node's `env:` in the
/// graph). geosr's shared settings ignore names they do not know, so a stage may add its own.
pub struct Stage {
    /// `SHARPEN_AMOUNT` (default 0.5): how much of the detail layer is added back.
    amount: f32,
    /// `SHARPEN_SIGMA` (default 1.0 pixel): the blur that defines the detail layer.
    sigma: f64,
}

impl TileStage for Stage {
    /// Its name in messages and its tile-counts file: use it as the node id in graphs.
    const STAGE: &'static str = "sharpen";

    fn from_env() -> eyre::Result<(Self, std::path::PathBuf)> {
        let shared = Settings::from_env()?;
        let var = |name: &str, default: f64| -> eyre::Result<f64> {
            match std::env::var(name) {
                Ok(v) => v
                    .parse()
                    .map_err(|_| eyre::eyre!("{name}=`{v}` is not a number")),
                Err(_) => Ok(default),
            }
        };
        let stage = Stage {
            amount: var("SHARPEN_AMOUNT", 0.5)? as f32,
            sigma: var("SHARPEN_SIGMA", 1.0)?,
        };
        Ok((stage, shared.log_dir))
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
fn process(batch: &TileBatch, stage: &Stage) -> eyre::Result<TileBatch> {
    let (c, h, w) = (batch.bands, batch.height, batch.width);
    let mut pixels = Vec::with_capacity(batch.pixels.len());
    for tile in batch.pixels.chunks_exact(batch.tile_len()) {
        let blurred = geosr_raster::degrade::gaussian_blur(tile, c, h, w, stage.sigma);
        pixels.extend(
            tile.iter()
                .zip(&blurred)
                .map(|(x, b)| x + stage.amount * (x - b)),
        );
    }
    Ok(batch.derived(c, h, w, pixels)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The core library's example batch goes through the stage with its geometry intact, and
    /// through the Arrow round trip every message takes.
    #[test]
    fn keeps_ids_geometry_and_shape() {
        let mut stage = Stage {
            amount: 0.5,
            sigma: 1.0,
        };
        let batch = TileBatch::example(2, 3, 8, 8);
        let replies = stage.on_batch("sr", batch.clone()).unwrap();
        let (output, out) = &replies[0];
        assert_eq!(output, "sr");
        assert_eq!((out.batch_id, &out.tiles), (batch.batch_id, &batch.tiles));
        assert_eq!(out.pixels.len(), batch.pixels.len());
        let back = TileBatch::from_arrow(out.to_arrow().unwrap().as_ref()).unwrap();
        assert_eq!(&back, out);
        // a constant tile has no detail to sharpen
        let flat = batch.derived(3, 8, 8, vec![0.25; 2 * 3 * 64]).unwrap();
        let same = process(&flat, &stage).unwrap();
        assert!(same.pixels.iter().all(|v| (v - 0.25).abs() < 1e-6));
    }
}
