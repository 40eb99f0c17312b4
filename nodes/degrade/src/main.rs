//! `degrade`: HR tiles in, LR tiles out (bilinear downsampling by `factor`, optional blur,
//! noise, JPEG). Every input `hr…` is answered on the output `lr…` of the same suffix.
//! See README.md beside this file.
use geosr::degrade::Degradation;
use geosr::settings::Settings;

fn main() -> eyre::Result<()> {
    let settings = Settings::from_env().map_err(|e| eyre::eyre!("degrade: {e}"))?;
    settings
        .check_run_dir()
        .map_err(|e| eyre::eyre!("degrade: {e}"))?;
    geosr::stage::pin_mmap_threshold();
    geosr::stage::init("degrade", &settings.run_dir);
    let deg = Degradation::from_settings(&settings);
    tracing::info!(?deg, "degrade ready");
    geosr::stage::map_batches("degrade", &settings.run_dir, |id, hr| {
        let output = id
            .strip_prefix("hr")
            .map(|suffix| format!("lr{suffix}"))
            .ok_or_else(|| {
                eyre::eyre!("degrade: input `{id}` should be named hr or hr_<suffix>")
            })?;
        Ok((output, deg.apply_batch(&hr)?))
    })
}
