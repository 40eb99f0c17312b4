//! The event loop of geosr's dora Rust operators, so an operator crate holds only what its stage
//! does. A stage implements [`TileStage`]; the operator is [`TileOperator<Stage>`], registered
//! with dora's macro in the stage's own `cdylib` crate:
//!
//! ```ignore
//! dora_operator_api::register_operator!(geosr_operator::TileOperator<Upscale>);
//! ```
//!
//! [`TileOperator`] reads the stage's settings at the first event (`Default` cannot fail), decodes
//! every input as a tile batch, hands it to the stage, sends and counts what the stage answers,
//! and writes the tile counts when the runtime drops it (the runtime does not always deliver
//! `Stop` to an operator whose inputs have closed; it always drops it).
use dora_operator_api::{DoraOperator, DoraOutputSender, DoraStatus, Event};
use geosr::flow::TileCounts;
use geosr::tile::TileBatch;
use std::path::PathBuf;

/// What a geosr operator does with tile batches.
pub trait TileStage: Sized {
    /// The stage's name: in error messages and as its tile-counts file (`counts/<STAGE>.json`),
    /// so graphs give the operator's node this id.
    const STAGE: &'static str;

    /// Reads the stage's settings from the environment; returns the stage and the folder its
    /// counts go to.
    fn from_env() -> eyre::Result<(Self, PathBuf)>;

    /// Answers one input batch with zero or more `(output id, batch)` replies: a map stage
    /// answers each batch with one, a loss stage once both halves of a batch are in.
    fn on_batch(&mut self, input: &str, batch: TileBatch)
        -> eyre::Result<Vec<(String, TileBatch)>>;
}

/// A [`TileStage`] as a dora operator.
pub struct TileOperator<S> {
    stage: Option<(S, PathBuf)>,
    counts: TileCounts,
}

impl<S> Default for TileOperator<S> {
    fn default() -> Self {
        TileOperator {
            stage: None,
            counts: TileCounts::default(),
        }
    }
}

impl<S: TileStage> TileOperator<S> {
    fn input(
        &mut self,
        id: &str,
        array: &dyn dora_operator_api::arrow_v59::array::Array,
        out: &mut DoraOutputSender,
    ) -> eyre::Result<()> {
        if self.stage.is_none() {
            self.stage = Some(S::from_env().map_err(|e| eyre::eyre!("{}: {e}", S::STAGE))?);
            self.counts = TileCounts::new(S::STAGE);
        }
        let (stage, _) = self.stage.as_mut().expect("just set");
        let batch = TileBatch::from_arrow(array)
            .map_err(|e| eyre::eyre!("{}: input `{id}`: {e}", S::STAGE))?;
        self.counts.count_in(id, batch.len());
        for (output, reply) in stage
            .on_batch(id, batch)
            .map_err(|e| eyre::eyre!("{}: {e}", S::STAGE))?
        {
            self.counts.count_out(&output, reply.len());
            out.send(&output, reply.into_arrow()?)
                .map_err(|e| eyre::eyre!("{}: sending `{output}`: {e}", S::STAGE))?;
        }
        Ok(())
    }
}

impl<S: TileStage> DoraOperator for TileOperator<S> {
    fn on_event(
        &mut self,
        event: &Event,
        out: &mut DoraOutputSender,
    ) -> Result<DoraStatus, String> {
        match event {
            Event::Input { id, data, .. } => {
                self.input(id, data.as_array().as_ref(), out)
                    .map_err(|e| format!("{e:#}"))?;
                Ok(DoraStatus::Continue)
            }
            Event::InputParseError { id, error } => {
                Err(format!("{}: input `{id}`: {error}", S::STAGE))
            }
            Event::Stop => Ok(DoraStatus::Stop),
            _ => Ok(DoraStatus::Continue),
        }
    }
}

impl<S> Drop for TileOperator<S> {
    fn drop(&mut self) {
        if let Some((_, dir)) = &self.stage {
            if let Err(e) = self.counts.write(dir) {
                eprintln!("{}: writing tile counts: {e}", self.counts.stage);
            }
        }
    }
}
