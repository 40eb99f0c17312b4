//! `op-degrade`: the degradation stage as a dora operator: bilinear downsampling by `factor`,
//! then the optional Gaussian blur (`blur_sigma`, before downsampling), JPEG (`jpeg_quality`)
//! and noise (`noise_std`). Same contract as the `degrade` node: every input `hr…` is answered on
//! the output `lr…` of the same suffix. See README.md beside this file.
use dora_operator_api::{register_operator, DoraOperator, DoraOutputSender, DoraStatus, Event};
use geosr::degrade::Degradation;
use geosr::flow::TileCounts;
use geosr::settings::Settings;
use std::path::PathBuf;

register_operator!(DegradeOperator);

#[derive(Default)]
struct DegradeOperator {
    /// The degradation and where counts go, read at the first event.
    ready: Option<(Degradation, PathBuf)>,
    counts: TileCounts,
}

impl DegradeOperator {
    fn input(
        &mut self,
        id: &str,
        array: &dyn dora_operator_api::arrow_v59::array::Array,
        out: &mut DoraOutputSender,
    ) -> eyre::Result<()> {
        if self.ready.is_none() {
            let s = Settings::from_env().map_err(|e| eyre::eyre!("op-degrade: {e}"))?;
            // Training writes counts into its run (never a finished one); evaluation into log_dir.
            let dir = match s.model {
                Some(_) => s.log_dir.clone(),
                None => {
                    s.check_run_dir()
                        .map_err(|e| eyre::eyre!("op-degrade: {e}"))?;
                    s.run_dir.clone()
                }
            };
            let deg = Degradation::for_stage(&s).map_err(|e| eyre::eyre!("op-degrade: {e}"))?;
            self.counts = TileCounts::new("degrade");
            self.ready = Some((deg, dir));
        }
        let (deg, _) = self.ready.as_ref().expect("just set");
        let (output, reply) =
            geosr::stage::map_arrow("op-degrade", id, array, &mut self.counts, |id, hr| {
                let output = id
                    .strip_prefix("hr")
                    .map(|suffix| format!("lr{suffix}"))
                    .ok_or_else(|| {
                        eyre::eyre!("op-degrade: input `{id}` should be named hr or hr_<suffix>")
                    })?;
                Ok((output, deg.apply_batch(&hr)?))
            })?;
        out.send(&output, reply)
            .map_err(|e| eyre::eyre!("op-degrade: {e}"))
    }
}

impl DoraOperator for DegradeOperator {
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
                Err(format!("op-degrade: input `{id}`: {error}"))
            }
            Event::Stop => Ok(DoraStatus::Stop),
            _ => Ok(DoraStatus::Continue),
        }
    }
}

/// The runtime does not always deliver `Stop` to an operator whose inputs have closed; it
/// always drops it, so the tile counts are written here.
impl Drop for DegradeOperator {
    fn drop(&mut self) {
        if let Some((_, dir)) = &self.ready {
            if let Err(e) = self.counts.write(dir) {
                eprintln!("op-degrade: writing tile counts: {e}");
            }
        }
    }
}
