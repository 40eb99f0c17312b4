//! `degrade`: HR tiles in, LR tiles out (bilinear downsampling by `factor`, optional blur,
//! noise, JPEG). Every input `hr…` is answered on the output `lr…` of the same suffix.
//! See README.md beside this file.
use dora_node_api::{DoraNode, Event};
use eyre::WrapErr;
use geosr::degrade::Degradation;
use geosr::flow::TileCounts;
use geosr::settings::Settings;
use geosr::stage::send_batch;
use geosr::tile::TileBatch;

fn main() -> eyre::Result<()> {
    let settings = Settings::from_env().map_err(|e| eyre::eyre!("degrade: {e}"))?;
    settings
        .check_run_dir()
        .map_err(|e| eyre::eyre!("degrade: {e}"))?;
    geosr::stage::pin_mmap_threshold();
    geosr::stage::init("degrade", &settings.run_dir);
    let deg = Degradation::from_settings(&settings);
    let (mut node, mut events) = DoraNode::init_from_env()?;
    let mut counts = TileCounts::new("degrade");
    tracing::info!(?deg, "degrade ready");
    while let Some(event) = events.recv() {
        match event {
            Event::Input { id, data, .. } => {
                let output = id
                    .as_str()
                    .strip_prefix("hr")
                    .map(|suffix| format!("lr{suffix}"))
                    .ok_or_else(|| {
                        eyre::eyre!("degrade: input `{id}` should be named hr or hr_<suffix>")
                    })?;
                let hr = TileBatch::from_arrow(data.as_array().as_ref())
                    .wrap_err_with(|| format!("degrade: input `{id}`"))?;
                counts.count_in(id.as_str(), hr.len());
                let lr = deg.apply_batch(&hr)?;
                counts.count_out(&output, send_batch(&mut node, &output, lr)?);
            }
            Event::Stop(_) => break,
            _ => {}
        }
    }
    counts.write(&settings.run_dir)?;
    Ok(())
}
