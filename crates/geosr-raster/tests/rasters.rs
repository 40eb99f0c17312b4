//! Chip planning on real GeoTIFFs written through GDAL: data types, nodata, splits, paired
//! data, and one clear error per kind of bad input.
#[path = "../../../tests/common/mod.rs"]
mod common;
use common::*;
use geosr::settings::Settings;
use geosr::tile::Split;
use geosr_raster::chips::ChipPlan;

fn settings(input: &std::path::Path) -> Settings {
    Settings {
        input: input.to_path_buf(),
        chip_size: 32,
        factor: 2,
        batch_size: 4,
        unet_depth: 1,
        val_split_pct: 25.0,
        ..Settings::default()
    }
}

#[test]
fn chips_from_uint8_uint16_and_float32_rasters() {
    let dir = tempfile::tempdir().unwrap();
    let px = pattern(3, 128, 96, 200.0, 10.0);
    let p8 = dir.path().join("a.tif");
    geosr_raster::raster::write_geotiff::<u8>(&p8, 3, 128, 96, &px, GT, &utm21n(), None).unwrap();
    let p16 = dir.path().join("b.tif");
    uint16_scene(&p16, 3, 128, 96);
    let pf = dir.path().join("c.tif");
    geosr_raster::raster::write_geotiff::<f32>(&pf, 3, 128, 96, &px, GT, "", None).unwrap();
    for p in [&p8, &p16, &pf] {
        let mut plan = ChipPlan::new(&settings(p)).unwrap();
        assert_eq!(plan.candidates, 4 * 3, "{}", p.display());
        assert_eq!(plan.train.len() + plan.val.len(), 12);
        assert_eq!(plan.val.len(), 3);
        let (hr, lr) = plan.next_train().unwrap();
        assert!(lr.is_none());
        assert_eq!((hr.len(), hr.bands, hr.height, hr.width), (4, 3, 32, 32));
        // Normalised to roughly [0, 1] by the 1st–99th percentiles.
        let (lo, hi) = hr
            .pixels
            .iter()
            .fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
        assert!(lo > -0.3 && hi < 1.3, "{}: {lo}..{hi}", p.display());
        // Geometry: the tile's geotransform starts at its window.
        let t = &hr.tiles[0];
        assert_eq!(t.geotransform[0], GT[0] + 30.0 * t.window[0] as f64);
        assert_eq!(t.geotransform[3], GT[3] - 30.0 * t.window[1] as f64);
    }
}

#[test]
fn epochs_reshuffle_and_validation_is_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("s.tif");
    uint16_scene(&p, 3, 128, 128);
    let mut plan = ChipPlan::new(&settings(&p)).unwrap();
    let per_epoch = plan.train_batches();
    assert_eq!(per_epoch, plan.train.len() / 4);
    let mut first_epoch = Vec::new();
    for _ in 0..per_epoch {
        let (b, _) = plan.next_train().unwrap();
        assert_eq!(b.epoch, 0);
        first_epoch.extend(b.tiles.iter().map(|t| t.window));
    }
    let (b, _) = plan.next_train().unwrap();
    assert_eq!(b.epoch, 1);
    let mut sorted = first_epoch.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted.len(),
        first_epoch.len(),
        "no chip twice within an epoch"
    );
    let (v1, _) = plan.val_batch(0).unwrap();
    let (v2, _) = plan.val_batch(0).unwrap();
    assert_eq!(v1.split, Split::Val);
    assert_eq!(v1.pixels, v2.pixels);
    let val_windows: Vec<_> = plan.val.iter().map(|c| [c.x, c.y]).collect();
    assert!(
        plan.train
            .iter()
            .all(|c| !val_windows.contains(&[c.x, c.y])),
        "validation chips are held out"
    );
}

#[test]
fn nodata_chips_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("wedge.tif");
    let (w, h) = (128, 128);
    let mut px = pattern(3, w, h, 10_000.0, 2_000.0);
    // A black wedge (0 in every band, as Landsat's) over the upper-right triangle.
    for b in 0..3 {
        for y in 0..h {
            for x in 0..w {
                if x > y + 20 {
                    px[b * w * h + y * w + x] = 0.0;
                }
            }
        }
    }
    geosr_raster::raster::write_geotiff::<u16>(&p, 3, w, h, &px, GT, &utm21n(), None).unwrap();
    let plan = ChipPlan::new(&settings(&p)).unwrap();
    assert_eq!(plan.candidates, 16);
    assert!(plan.skipped_nodata >= 5, "skipped {}", plan.skipped_nodata);
    // Declared nodata wins over the all-zero rule.
    let q = dir.path().join("declared.tif");
    geosr_raster::raster::write_geotiff::<u16>(&q, 3, w, h, &px, GT, &utm21n(), Some(65535.0))
        .unwrap();
    assert_eq!(ChipPlan::new(&settings(&q)).unwrap().skipped_nodata, 0);
}

#[test]
fn paired_hr_lr_folders() {
    let dir = tempfile::tempdir().unwrap();
    let (hr_dir, lr_dir) = (dir.path().join("images"), dir.path().join("labels"));
    std::fs::create_dir_all(&hr_dir).unwrap();
    std::fs::create_dir_all(&lr_dir).unwrap();
    uint16_scene(&hr_dir.join("t1.tif"), 3, 128, 64);
    uint16_scene(&lr_dir.join("t1.tif"), 3, 64, 32);
    let mut s = settings(&hr_dir);
    s.input_lr = Some(lr_dir.clone());
    let mut plan = ChipPlan::new(&s).unwrap();
    let (hr, lr) = plan.next_train().unwrap();
    let lr = lr.unwrap();
    assert_eq!((lr.height, lr.width, lr.factor), (16, 16, 2));
    assert_eq!(lr.batch_id, hr.batch_id);
    assert_eq!(lr.tiles[0].window[0] * 2, hr.tiles[0].window[0]);
    // A wrongly sized LR raster is refused, naming it.
    uint16_scene(&lr_dir.join("t1.tif"), 3, 60, 32);
    let err = ChipPlan::new(&s).err().unwrap().to_string();
    assert!(
        err.contains("t1.tif") && err.contains("expected 64x32"),
        "{err}"
    );
}

#[test]
fn bad_inputs_give_one_clear_error_each() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.tif");
    let err = ChipPlan::new(&settings(&missing))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("nope.tif") && err.contains("no such file"),
        "{err}"
    );

    let text = dir.path().join("notes.tif");
    std::fs::write(&text, "not a raster at all").unwrap();
    let err = ChipPlan::new(&settings(&text)).err().unwrap().to_string();
    assert!(
        err.contains("notes.tif") && err.contains("cannot open it as a raster"),
        "{err}"
    );

    let small = dir.path().join("small.tif");
    uint16_scene(&small, 3, 20, 20);
    let err = ChipPlan::new(&settings(&small)).err().unwrap().to_string();
    assert!(
        err.contains("small.tif") && err.contains("smaller than one chip"),
        "{err}"
    );

    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let err = ChipPlan::new(&settings(&empty)).err().unwrap().to_string();
    assert!(err.contains("holds no raster files"), "{err}");

    let mut s = settings(&small);
    s.bands = geosr::settings::IntList(vec![4]);
    let err = ChipPlan::new(&s).err().unwrap().to_string();
    assert!(err.contains("band 4"), "{err}");
}

#[test]
fn dihedral_transforms_are_the_eight_symmetries() {
    use geosr_raster::chips::dihedral;
    let n = 3;
    let plane: Vec<f32> = (0..9).map(|v| v as f32).collect();
    let all: Vec<Vec<f32>> = (0..8).map(|t| dihedral(&plane, 1, n, t)).collect();
    assert_eq!(all[0], plane);
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            assert_ne!(a, b, "eight distinct transforms");
        }
        let mut sorted = a.clone();
        sorted.sort_by(f32::total_cmp);
        assert_eq!(sorted, plane, "a permutation of the pixels");
    }
    // Four quarter turns make a full turn.
    let mut r = plane.clone();
    for _ in 0..4 {
        r = dihedral(&r, 1, n, 1);
    }
    assert_eq!(r, plane);
}
