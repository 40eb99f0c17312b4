//! `geotiff-writer`: requests LR tiles in raster order (credit flow), receives their SR
//! versions, blends them into one GeoTIFF/COG at `output` and renames it into place when
//! complete. See README.md beside this file.
use std::process::ExitCode;
use std::time::Instant;

const STAGE: &str = "geotiff-writer";

fn main() -> ExitCode {
    geosr::node::run(STAGE, || {
        let (mut node, mut inbox, settings) = geosr::node::start(STAGE)?;
        geosr::stage::keep_freed_memory();
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
        tracing::info!(
            scenes = written.paths.len(),
            complete_already = written.complete_already,
            tiles = written.tiles,
            batches_out_of_order = written.overtaking,
            seconds = format!("{secs:.1}"),
            "written"
        );
        if let [path] = written.paths.as_slice() {
            let info = geosr_raster::raster::RasterSource::open(path, &[])?.info;
            println!(
                "wrote {} ({}x{}, {} bands, {}) in {secs:.1} s",
                path.display(),
                info.width,
                info.height,
                info.bands.len(),
                info.data_type
            );
        } else {
            println!(
                "wrote {} scenes in {secs:.1} s ({} complete already, left alone)",
                written.paths.len(),
                written.complete_already
            );
        }
        Ok(())
    })
}
