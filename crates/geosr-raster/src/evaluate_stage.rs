//! The `evaluate` stage, the end of the evaluation graph: requests HR tile batches (credit flow),
//! joins for each batch its LR tiles, every method's super-resolved tiles and their VGG scores,
//! mosaics each method into a GeoTIFF, and when a raster is complete compares every method with
//! the HR raster ([`crate::evaluate`]). Writes `report.json`, `report.md` and a preview PNG per
//! raster.
use crate::consistency::{Consistency, CountedOnce};
use crate::evaluate::{RasterReport, Report};
use crate::mosaic::{Mosaic, MosaicOptions};
use crate::raster::RasterSource;
use dora_node_api::DoraNode;
use geosr::flow::{CreditWindow, Join, Request, TileCounts};
use geosr::node::{Inbox, Next};
use geosr::scores::ScoreBatch;
use geosr::settings::Settings;
use geosr::stage::send_array;
use geosr::tile::TileBatch;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// One message of a tile batch: tiles (`hr`, `lr`, `sr_<method>`) or a method's VGG scores.
enum Part {
    Tiles(TileBatch),
    Scores(ScoreBatch),
}

/// Everything that belongs to one tile batch, joined.
struct Parts {
    hr: TileBatch,
    lr: Option<TileBatch>,
    sr: BTreeMap<String, TileBatch>,
    scores: Vec<ScoreBatch>,
}

impl Parts {
    /// The parts of a complete join (`hr`, `lr`, `sr_<method>`, `vgg:<method>`).
    fn from_join(mut all: BTreeMap<String, Part>) -> eyre::Result<Self> {
        let mut tiles = |name: &str| match all.remove(name) {
            Some(Part::Tiles(b)) => Some(b),
            _ => None,
        };
        let hr = tiles("hr").ok_or_else(|| eyre::eyre!("a joined batch without HR tiles"))?;
        let lr = tiles("lr");
        let mut sr = BTreeMap::new();
        let mut scores = Vec::new();
        for (name, part) in all {
            match (name.strip_prefix("sr_"), part) {
                (Some(m), Part::Tiles(b)) => {
                    sr.insert(m.to_owned(), b);
                }
                (_, Part::Scores(s)) => scores.push(s),
                (_, Part::Tiles(_)) => eyre::bail!("unexpected part `{name}`"),
            }
        }
        Ok(Parts { hr, lr, sr, scores })
    }
}

/// The raster being assembled.
struct RasterRun {
    hr: PathBuf,
    source: RasterSource,
    rule: crate::evaluate::ValidRule,
    mosaics: BTreeMap<String, Mosaic>,
    outputs: BTreeMap<String, PathBuf>,
    /// method → (sum of distances, tiles) over tiles without nodata.
    vgg: BTreeMap<String, (f64, usize)>,
    /// method → its SR degraded back against the LR it was made from (with an `lr` input).
    consistency: BTreeMap<String, Consistency>,
    /// LR-grid pixels already counted, per method.
    counted: BTreeMap<String, CountedOnce>,
}

struct Evaluator {
    settings: Settings,
    /// The model's degradation, for bringing each method's SR back to the LR grid.
    degradation: geosr::card::Degradation,
    out_dir: PathBuf,
    factor: u32,
    methods: Vec<String>,
    has_lr: bool,
    has_vgg: bool,
    opts: MosaicOptions,
    current: Option<RasterRun>,
    done: Vec<RasterReport>,
    /// What the VGG scores measure, as vgg-loss names it (`vgg_relu2_2`).
    vgg_metric: Option<String>,
}

/// Nearest-neighbour upsampling of an LR batch to the HR grid: the "what the analyst has" column.
fn nearest(lr: &TileBatch, f: usize) -> eyre::Result<TileBatch> {
    let (c, h, w) = (lr.bands, lr.height, lr.width);
    let mut px = Vec::with_capacity(lr.pixels.len() * f * f);
    for tile in lr.pixels.chunks_exact(lr.tile_len()) {
        for b in 0..c {
            for y in 0..h * f {
                for x in 0..w * f {
                    px.push(tile[b * h * w + (y / f) * w + x / f]);
                }
            }
        }
    }
    Ok(lr.derived(c, h * f, w * f, px)?)
}

/// Which HR pixels of each tile's window hold data: read once per batch, for the VGG scores and
/// the LR consistency of every method.
fn hr_masks(run: &RasterRun, hr: &TileBatch) -> geosr::Result<Vec<Vec<bool>>> {
    hr.tiles
        .iter()
        .map(|t| {
            let [x, y, w, h] = t.window;
            let px = run.source.read_window(x, y, w, h)?;
            Ok(run.rule.mask(&px, hr.bands, (w * h) as usize))
        })
        .collect()
}

/// One LR tile as the LR consistency compares with it: native values of its `lw`×`lh` pixels
/// and which of them have their whole HR block holding data.
struct LrTile {
    px: Vec<f32>,
    valid: Vec<bool>,
    lw: usize,
    lh: usize,
}

/// The LR tiles of a batch, once for every method (`None` for a tile smaller than one LR pixel).
fn lr_tiles(hr: &TileBatch, lr: &TileBatch, masks: &[Vec<bool>], f: usize) -> Vec<Option<LrTile>> {
    hr.tiles
        .iter()
        .zip(masks)
        .enumerate()
        .map(|(i, (t, mask))| {
            let w = t.window[2] as usize;
            let (lw, lh) = (w / f, t.window[3] as usize / f);
            (lw > 0 && lh > 0).then(|| LrTile {
                px: lr.native_tile(i, lw, lh),
                valid: (0..lw * lh)
                    .map(|j| {
                        let (tx, ty) = (j % lw, j / lw);
                        (0..f).all(|dy| (0..f).all(|dx| mask[(ty * f + dy) * w + tx * f + dx]))
                    })
                    .collect(),
                lw,
                lh,
            })
        })
        .collect()
}

/// Adds one batch of a method to its LR consistency: each SR tile degraded back with the model's
/// degradation against the LR tile it was made from, over LR pixels whose HR block holds data,
/// each counted once, away from tile edges ([`CountedOnce`]).
fn lr_consistency(
    run: &mut RasterRun,
    method: &str,
    hr: &TileBatch,
    lr_tiles: &[Option<LrTile>],
    sr: &TileBatch,
    f: usize,
) {
    let (Some(c), Some(counted)) = (run.consistency.get_mut(method), run.counted.get_mut(method))
    else {
        return;
    };
    for (i, (t, lr)) in hr.tiles.iter().zip(lr_tiles).enumerate() {
        let Some(lr) = lr else { continue };
        let (lw, lh) = (lr.lw, lr.lh);
        let sr_px = sr.native_tile(i, lw * f, lh * f);
        let mut count = lr.valid.clone();
        counted.claim(
            t.window[0] as usize / f,
            t.window[1] as usize / f,
            lw,
            lh,
            &mut count,
        );
        c.add_tile(&sr_px, &lr.px, &count, (lw, lh), t.window);
    }
}

impl Evaluator {
    /// The names of the parts a batch is complete with.
    fn part_names(&self) -> Vec<String> {
        let mut names = vec!["hr".to_owned()];
        if self.has_lr {
            names.push("lr".into());
        }
        for m in &self.methods {
            names.push(format!("sr_{m}"));
            if self.has_vgg {
                names.push(format!("vgg:{m}"));
            }
        }
        names
    }

    fn start_raster(&mut self, hr: &Path) -> eyre::Result<()> {
        let source = RasterSource::open(hr, &[])?;
        let rule = crate::evaluate::ValidRule::for_raster(&source.info, self.settings.nodata);
        let stem = hr
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "raster".into());
        let dir = self.out_dir.join(&stem);
        let mut mosaics = BTreeMap::new();
        let mut outputs = BTreeMap::new();
        let mut names = self.methods.clone();
        if self.has_lr {
            names.push("nearest".into());
        }
        for m in names {
            let out = dir.join(format!("{m}.tif"));
            mosaics.insert(m.clone(), Mosaic::create(hr, &out, 1, self.opts.clone())?);
            outputs.insert(m, out);
        }
        tracing::info!(raster = %hr.display(), methods = ?self.methods, "evaluating");
        let f = self.factor as usize;
        let (mut consistency, mut counted) = (BTreeMap::new(), BTreeMap::new());
        if self.has_lr {
            let (lr_w, lr_h) = (source.info.width / f, source.info.height / f);
            let overlap = self.settings.overlap as usize;
            for m in &self.methods {
                let spec = &self.degradation.spec;
                consistency.insert(
                    m.clone(),
                    Consistency::new(
                        source.info.bands.len(),
                        f,
                        spec.antialias,
                        spec.blur_sigma,
                        0,
                    )
                    .without_detail(),
                );
                counted.insert(m.clone(), CountedOnce::new(lr_w, lr_h, overlap));
            }
        }
        self.current = Some(RasterRun {
            hr: hr.to_path_buf(),
            source,
            rule,
            mosaics,
            outputs,
            vgg: BTreeMap::new(),
            consistency,
            counted,
        });
        Ok(())
    }

    fn add(&mut self, p: Parts) -> eyre::Result<()> {
        let hr = p.hr;
        let path = PathBuf::from(&hr.tiles[0].source);
        if self.current.as_ref().map(|r| &r.hr) != Some(&path) {
            self.finish_raster()?;
            self.start_raster(&path)?;
        }
        let f = self.factor as usize;
        let run = self.current.as_mut().expect("started");
        for (m, sr) in &p.sr {
            run.mosaics
                .get_mut(m)
                .expect("one mosaic per method")
                .add(sr)
                .map_err(|e| eyre::eyre!("{m}: {e}"))?;
        }
        let with_lr = p.lr.is_some() && !run.consistency.is_empty();
        let masks = if self.has_vgg || with_lr {
            hr_masks(run, &hr)?
        } else {
            Vec::new()
        };
        if let Some(lr) = &p.lr {
            if with_lr {
                let tiles = lr_tiles(&hr, lr, &masks, f);
                for (m, sr) in &p.sr {
                    lr_consistency(run, m, &hr, &tiles, sr, f);
                }
            }
            run.mosaics
                .get_mut("nearest")
                .expect("nearest mosaic")
                .add(&nearest(lr, f)?)
                .map_err(|e| eyre::eyre!("nearest: {e}"))?;
        }
        if self.has_vgg {
            // VGG distances count only on tiles without nodata: a filled wedge would otherwise
            // score as a perfect match.
            for s in p.scores.iter().flat_map(|b| &b.0) {
                let valid = masks
                    .get(s.tile as usize)
                    .is_some_and(|m| m.iter().all(|v| *v));
                if valid {
                    let e = run.vgg.entry(s.method.clone()).or_default();
                    e.0 += s.value;
                    e.1 += 1;
                }
            }
        }
        Ok(())
    }

    fn finish_raster(&mut self) -> eyre::Result<()> {
        let Some(run) = self.current.take() else {
            return Ok(());
        };
        for (m, mosaic) in run.mosaics {
            mosaic.finish().map_err(|e| eyre::eyre!("{m}: {e}"))?;
        }
        let border = self.factor as usize;
        let preds: Vec<(String, PathBuf)> = run
            .outputs
            .iter()
            .map(|(m, p)| (m.clone(), p.clone()))
            .collect();
        let started = Instant::now();
        let mut cmp =
            crate::evaluate::compare_rasters(&run.hr, &preds, border, self.settings.nodata)?;
        for (m, s) in cmp.methods.iter_mut() {
            if let Some(c) = run.consistency.get(m) {
                s.lr_psnr = c.report([0.0; 6]).bands.iter().map(|b| b.lr_psnr).collect();
            }
            if let Some((sum, n)) = run.vgg.get(m) {
                s.vgg_tiles = *n;
                s.vgg_distance = (*n > 0).then(|| sum / *n as f64);
            }
        }
        tracing::info!(raster = %run.hr.display(), seconds = format!("{:.1}", started.elapsed().as_secs_f64()), "compared");
        let mut preview = None;
        if self.settings.preview_crops > 0 {
            let size = self.settings.preview_size as usize;
            let crops = crate::evaluate::pick_crops(
                &run.hr,
                size,
                self.settings.preview_crops as usize,
                border,
                self.settings.nodata,
                &cmp.data_range,
            )?;
            // LR (nearest) | classic baselines shown: bicubic | the models | HR
            let mut panels: Vec<(String, PathBuf)> = Vec::new();
            if let Some(p) = run.outputs.get("nearest") {
                panels.push(("LR (nearest)".into(), p.clone()));
            }
            if let Some(p) = run.outputs.get("bicubic") {
                panels.push(("bicubic".into(), p.clone()));
            }
            for (m, p) in &run.outputs {
                if !["nearest", "bilinear", "bicubic", "lanczos"].contains(&m.as_str()) {
                    panels.push((format!("SR ({m})"), p.clone()));
                }
            }
            panels.push(("HR".into(), run.hr.clone()));
            let stem = run
                .hr
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let path = self.out_dir.join(format!("preview-{stem}.png"));
            let zoom = (256 / size.max(1)).clamp(1, 4);
            crate::evaluate::render_preview(
                &panels,
                &crops,
                size,
                zoom,
                crate::evaluate::display_bands(&run.source.info),
                &cmp.data_range,
                &path,
            )?;
            preview = Some(path);
        }
        self.done.push(RasterReport {
            comparison: cmp,
            outputs: run.outputs,
            preview,
        });
        Ok(())
    }
}

/// The stage: evaluates every batch of the input rasters and writes the report, or fails
/// with nothing written.
pub fn run(mut node: DoraNode, mut inbox: Inbox, settings: Settings) -> eyre::Result<()> {
    let out_dir = settings.output.clone().ok_or_else(|| {
        eyre::eyre!("GEOSR_OUTPUT is not set; give the folder to write the report into")
    })?;
    let model = settings.model.clone().ok_or_else(|| {
        eyre::eyre!("GEOSR_MODEL is not set; give the run directory of a trained model")
    })?;
    if out_dir.join("report.json").exists() {
        eyre::bail!(
            "{} already holds a report; give a new GEOSR_OUTPUT so it is not overwritten",
            out_dir.display()
        );
    }
    let card = geosr::checkpoint::load_checkpoint(&model)?.card;
    let inputs = inbox.input_ids();
    let methods: Vec<String> = inputs
        .iter()
        .filter_map(|k| k.strip_prefix("sr_").map(str::to_owned))
        .collect();
    if methods.is_empty() {
        eyre::bail!("no input named sr_<method>; wire at least one super-resolving stage");
    }
    if inputs.iter().any(|i| i == "lr") && methods.iter().any(|m| m == "nearest") {
        eyre::bail!("`nearest` is the name of the enlarged-LR column (input `lr`); give the method `sr_nearest` another name");
    }
    let mut ev = Evaluator {
        degradation: card.degradation(),
        factor: card.downsample_factor,
        methods,
        has_lr: inputs.iter().any(|i| i == "lr"),
        has_vgg: inputs.iter().any(|i| i == "vgg"),
        opts: MosaicOptions {
            creation_options: settings.creation_option_list(),
            format: geosr::settings::OutputFormat::GTiff,
            // Tiles are on the HR grid here, so the overlap is in HR pixels.
            overlap: settings.overlap * card.downsample_factor,
            consistency: None,
        },
        current: None,
        done: Vec::new(),
        vgg_metric: None,
        out_dir: out_dir.clone(),
        settings: settings.clone(),
    };
    let mut counts = TileCounts::new("evaluate");
    let mut window: CreditWindow<Parts> = CreditWindow::new(settings.prefetch as u64);
    // The parts of the batches requested and not yet complete, by batch id (= index).
    let names = ev.part_names();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut parts: Join<Part> = Join::new(&names, settings.prefetch as usize + 2);
    let mut total = None;
    let started = Instant::now();
    let no_report = "no report was written";
    while !window.done() {
        for i in window.to_request() {
            send_array(&mut node, "request", Request::infer(i).to_arrow())?;
            counts.count_out("request", 1);
        }
        let waiting = format!("the parts of batch {}", window.progress());
        match inbox.next(Some(&waiting))? {
            Next::Input { id, data } => {
                let (key, part, name) = if id == "vgg" {
                    let s = ScoreBatch::from_arrow(data.as_ref())
                        .map_err(|e| eyre::eyre!("input `vgg`: {e}"))?;
                    counts.count_in("vgg", s.0.len());
                    let Some(first) = s.0.first() else { continue };
                    // Scores must name evaluate's own methods: vgg-loss and evaluate are
                    // wired with the same `sr_<method>` inputs.
                    if !ev.methods.contains(&first.method) {
                        eyre::bail!(
                            "a VGG score for method `{}`, which is not one of this node's inputs ({}); wire vgg-loss and evaluate with the same sr_<method> inputs",
                            first.method,
                            ev.methods.join(", ")
                        );
                    }
                    ev.vgg_metric.get_or_insert_with(|| first.metric.clone());
                    let name = format!("vgg:{}", first.method);
                    (first.batch_id, Part::Scores(s), name)
                } else {
                    let b = TileBatch::from_arrow(data.as_ref()).map_err(|e| {
                        eyre::eyre!("input `{id}` from `{}`: {e}", inbox.source_of(&id))
                    })?;
                    counts.count_in(&id, b.len());
                    total = Some(b.batches_in_split as u64);
                    (b.batch_id, Part::Tiles(b), id)
                };
                // A second answer to a batch asked for again after a silence is dropped.
                if window.has(key) {
                    continue;
                }
                if let Some(all) = parts.insert(key, &name, part)? {
                    let n = total.expect("a tile batch is among the parts");
                    window.receive(key, n, Parts::from_join(all)?)?;
                }
                // Batches go into the mosaics in index order.
                while let Some(p) = window.next_ready() {
                    ev.add(p)?;
                    let d = window.delivered();
                    if d.is_multiple_of(10) || window.done() {
                        tracing::info!(batch = d, of = window.total(), "progress");
                    }
                }
            }
            Next::Closed { id } => eyre::bail!(
                "the input `{id}` from `{}` ended after batch {}; {no_report}",
                inbox.source_of(&id),
                window.progress()
            ),
            Next::PeerFailed { node, error } => {
                eyre::bail!("`{node}` failed ({error}); {no_report}")
            }
            Next::Stop => eyre::bail!("stopped after batch {}; {no_report}", window.progress()),
            Next::Silence => {
                for i in window.missing() {
                    send_array(&mut node, "request", Request::infer(i).to_arrow())?;
                    counts.count_out("request", 1);
                }
            }
        }
    }
    ev.finish_raster()?;
    let report = Report {
        model: model.clone(),
        factor: card.downsample_factor,
        degradation: serde_json::to_value(&card.degradation)?,
        border: card.downsample_factor as usize,
        metric_notes: "PSNR and SSIM per band on native values, data range = max − min of the HR band's compared pixels, nodata and a border of `factor` pixels left out; SSIM: 11×11 Gaussian window (σ 1.5), as scikit-image with gaussian_weights=True. VGG distance: mean squared VGG-16 feature difference at the layers the model was trained with (its vgg-loss stage; else the `vgg_layers` setting; see `vgg_metric`), over tiles without nodata; its scale depends on the model's normalisation, so compare methods within one report. Method `nearest` is the LR itself, enlarged. Identical images have an infinite PSNR, written as null in JSON.".into(),
        overall: crate::evaluate::overall(&ev.done),
        vgg_metric: ev.vgg_metric.clone(),
        rasters: ev.done,
        seconds: started.elapsed().as_secs_f64(),
    };
    // report.json marks a finished evaluation (a second run into the folder is refused), so
    // it is written last.
    let md = report.to_markdown();
    geosr::atomic::write_atomic(&out_dir.join("report.md"), md.as_bytes())?;
    geosr::atomic::write_atomic(
        &out_dir.join("report.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    println!("{md}");
    println!("report: {}", out_dir.join("report.md").display());
    counts.write(&settings.log_dir)?;
    Ok(())
}
