//! The dependency rule, checked on the stage binaries as built: the network stages link libtorch
//! and not GDAL (a GPU host runs them without GDAL and its dependency tree), the raster stages
//! link GDAL and not libtorch. `scripts/test` builds the release binaries before the tests run.
mod common;
use common::root;
use std::process::Command;

fn linked(binary: &str) -> String {
    let path = root().join("target/release").join(binary);
    assert!(
        path.is_file(),
        "{} is missing: build with `cargo build --release --workspace` first",
        path.display()
    );
    let out = Command::new("ldd").arg(&path).output().expect("ldd runs");
    assert!(
        out.status.success(),
        "ldd {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn network_stages_link_no_gdal_and_raster_stages_no_libtorch() {
    for stage in ["unet-train", "vgg-loss", "pixel-loss", "unet-infer"] {
        let libs = linked(stage);
        assert!(
            libs.contains("libtorch"),
            "{stage} should link libtorch:\n{libs}"
        );
        assert!(!libs.contains("libgdal"), "{stage} links GDAL:\n{libs}");
    }
    for stage in [
        "tile-ingest",
        "degrade",
        "upscale",
        "geotiff-writer",
        "evaluate",
    ] {
        let libs = linked(stage);
        assert!(
            !libs.contains("libtorch"),
            "{stage} links libtorch:\n{libs}"
        );
    }
    for stage in ["tile-ingest", "degrade", "geotiff-writer", "evaluate"] {
        assert!(
            linked(stage).contains("libgdal"),
            "{stage} should link GDAL"
        );
    }
}
