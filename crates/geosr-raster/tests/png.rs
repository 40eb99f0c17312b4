//! geosr's own PNG writer (`geosr::plot`) read back by GDAL's PNG driver: an independent decoder
//! sees the pixels that were drawn.
use geosr::plot::{Canvas, WHITE};
use geosr_raster::raster::RasterSource;

#[test]
fn gdal_reads_the_png_geosr_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Canvas::new(16, 8, WHITE);
    c.set(3, 2, [10, 20, 30]);
    let p = dir.path().join("x.png");
    c.write_png(&p).unwrap();
    let src = RasterSource::open(&p, &[]).unwrap();
    assert_eq!(
        (src.info.width, src.info.height, src.info.bands.len()),
        (16, 8, 3)
    );
    let px = src.read_window(0, 0, 16, 8).unwrap();
    assert_eq!(
        [px[2 * 16 + 3], px[128 + 2 * 16 + 3], px[256 + 2 * 16 + 3]],
        [10.0, 20.0, 30.0]
    );
    assert_eq!(px[0], 255.0);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}
