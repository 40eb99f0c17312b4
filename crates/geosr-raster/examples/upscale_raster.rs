//! Classic upscaling of a whole raster without dora, through the same tiling (`ScanPlan`) and
//! writer (`Mosaic`) as `graphs/upscale-classic.yml` — the core library on its own.
//!
//! ```sh
//! cargo run --release -p geosr-raster --example upscale_raster -- data/demo/landsat8-224078-crop.tif out/crop-x4.tif lanczos
//! ```
use geosr::settings::Resampler;
use geosr_raster::mosaic::{Mosaic, MosaicOptions};
use geosr_raster::scan::ScanPlan;
use std::path::PathBuf;

fn main() -> eyre::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output, method] = <[String; 3]>::try_from(args).map_err(|_| {
        eyre::eyre!("usage: upscale_raster <input.tif> <output.tif> <bilinear|bicubic|lanczos>")
    })?;
    let method: Resampler = method.parse().map_err(|e| eyre::eyre!("method: {e}"))?;
    // The graph's defaults: tiles, overlap, batch and creation options.
    let s = geosr::settings::Settings::default();
    let factor = 4;
    let (input, output) = (PathBuf::from(input), PathBuf::from(output));
    let plan = ScanPlan::new(
        &input,
        None,
        s.infer_tile,
        s.overlap,
        s.infer_batch as usize,
        None,
    )?;
    let opts = MosaicOptions {
        creation_options: s.creation_option_list(),
        format: s.output_format,
        overlap: s.overlap,
        consistency: None,
    };
    let mut mosaic = Mosaic::create(&input, &output, factor, opts)?;
    for i in 0..plan.batches() {
        let lr = plan.batch(i)?;
        let mut pixels = Vec::with_capacity(lr.pixels.len() * factor * factor);
        for tile in lr.pixels.chunks_exact(lr.tile_len()) {
            pixels.extend(geosr_raster::upscale::upscale(
                tile, lr.bands, lr.height, lr.width, factor, method,
            ));
        }
        mosaic.add(&lr.derived(lr.bands, lr.height * factor, lr.width * factor, pixels)?)?;
    }
    let path = mosaic.finish()?;
    println!(
        "wrote {} ({} tiles, x{factor} {method})",
        path.display(),
        plan.windows.len()
    );
    Ok(())
}
