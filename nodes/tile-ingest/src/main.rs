//! `tile-ingest`: serves HR chips (and LR chips for paired data) one batch per request, or, with
//! `ingest_mode: infer`, the overlapping LR tiles of a raster to super-resolve, in raster order
//! (`geosr_raster::ingest`). See README.md beside this file for inputs, outputs and settings.
use std::process::ExitCode;

const STAGE: &str = "tile-ingest";

fn main() -> ExitCode {
    geosr::node::run(STAGE, || {
        geosr::stage::keep_freed_memory();
        let (node, inbox, settings) = geosr::node::start(STAGE)?;
        geosr_raster::ingest::run(node, inbox, &settings)
    })
}
