//! `geotiff-writer`: requests LR tiles in raster order (credit flow), receives their SR
//! versions, blends them into one GeoTIFF/COG at `output` and renames it into place when
//! complete. See README.md beside this file.
use std::process::ExitCode;
use std::time::Instant;

const STAGE: &str = "geotiff-writer";

fn main() -> ExitCode {
    geosr::node::run(STAGE, || {
        let (mut node, mut inbox, settings) = geosr::node::start(STAGE)?;
        geosr::stage::pin_mmap_threshold();
        geosr::stage::init(STAGE, &settings.log_dir);
        let started = Instant::now();
        // The tile counts are written whatever the outcome: they show where tiles stopped.
        let mut counts = geosr::flow::TileCounts::new(STAGE);
        let result = geosr_raster::writer::write_super_resolved(
            &mut node,
            &mut inbox,
            &settings,
            &mut counts,
        );
        counts.write(&settings.log_dir)?;
        let written = result?;
        let secs = started.elapsed().as_secs_f64();
        let info = geosr_raster::raster::RasterSource::open(&written.path, &[])?.info;
        let mp = (info.width * info.height) as f64 / 1e6;
        tracing::info!(output = %written.path.display(), width = info.width, height = info.height, tiles = written.tiles, batches_out_of_order = written.overtaking, seconds = format!("{secs:.1}"), megapixels_per_s = format!("{:.2}", mp / secs), "written");
        println!(
            "wrote {} ({}x{}, {} bands, {}) in {secs:.1} s",
            written.path.display(),
            info.width,
            info.height,
            info.bands.len(),
            info.data_type
        );
        Ok(())
    })
}
