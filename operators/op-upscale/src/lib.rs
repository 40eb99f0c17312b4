//! `op-upscale`: the classic resamplers (bilinear, bicubic, Lanczos-3 by `factor`) as a dora
//! operator. Same contract as the `upscale` node: input `lr`, output `sr`.
//! See README.md beside this file.
use dora_operator_api::{register_operator, DoraOperator, DoraOutputSender, DoraStatus, Event};
use geosr::flow::TileCounts;
use geosr::settings::Settings;

register_operator!(UpscaleOperator);

#[derive(Default)]
struct UpscaleOperator {
    /// Settings, factor and method, read at the first event.
    ready: Option<(Settings, usize, String)>,
    counts: TileCounts,
}

impl UpscaleOperator {
    fn input(
        &mut self,
        id: &str,
        array: &dyn dora_operator_api::arrow_v59::array::Array,
        out: &mut DoraOutputSender,
    ) -> eyre::Result<()> {
        if self.ready.is_none() {
            let s = Settings::from_env().map_err(|e| eyre::eyre!("op-upscale: {e}"))?;
            let f =
                geosr::upscale::factor_for_stage(&s).map_err(|e| eyre::eyre!("op-upscale: {e}"))?;
            let method = s.upscale_method.clone();
            self.counts = TileCounts::new("upscale");
            self.ready = Some((s, f as usize, method));
        }
        let (_, f, method) = self.ready.as_ref().expect("just set");
        let (output, reply) =
            geosr::stage::map_arrow("op-upscale", id, array, &mut self.counts, |_, lr| {
                Ok(("sr".into(), geosr::upscale::upscale_batch(&lr, *f, method)?))
            })?;
        out.send(&output, reply)
            .map_err(|e| eyre::eyre!("op-upscale: {e}"))
    }
}

impl DoraOperator for UpscaleOperator {
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
                Err(format!("op-upscale: input `{id}`: {error}"))
            }
            Event::Stop => Ok(DoraStatus::Stop),
            _ => Ok(DoraStatus::Continue),
        }
    }
}

/// The runtime does not always deliver `Stop` to an operator whose inputs have closed; it
/// always drops it, so the tile counts are written here.
impl Drop for UpscaleOperator {
    fn drop(&mut self) {
        if let Some((s, ..)) = &self.ready {
            if let Err(e) = self.counts.write(&s.log_dir) {
                eprintln!("op-upscale: writing tile counts: {e}");
            }
        }
    }
}
