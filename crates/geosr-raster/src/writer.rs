//! The loop of `geotiff-writer`: asks for LR batches through the credit flow, takes their SR
//! versions in index order whatever order they arrive in, blends them into a [`Mosaic`] per
//! scene and puts each file in place when it is complete ([`crate::scenes`] for runs of many
//! scenes).
use crate::mosaic::{ConsistencySpec, Mosaic, MosaicOptions};
use dora_node_api::DoraNode;
use geosr::flow::{CreditWindow, Request, TileCounts};
use geosr::node::{Inbox, Next};
use geosr::settings::Settings;
use geosr::stage::send_array;
use geosr::tile::TileBatch;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::scan::ScenePlan;

/// What a finished write reports.
#[derive(Debug, Default)]
pub struct Written {
    /// The files written, in scene order.
    pub paths: Vec<PathBuf>,
    /// Scenes whose output was there already (complete) and were left alone.
    pub complete_already: usize,
    pub tiles: usize,
    /// Batches that arrived before one requested earlier, put back in order.
    pub overtaking: u64,
}

/// Progress over the scenes of a run: scenes done, output megapixels per second, time left.
struct Progress {
    started: Instant,
    done_mp: f64,
    total_mp: f64,
    scenes_done: usize,
    scenes: usize,
}

impl Progress {
    fn scene_done(&mut self, mp: f64, path: &Path) {
        self.scenes_done += 1;
        self.done_mp += mp;
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let rate = self.done_mp / secs;
        let eta = (self.total_mp - self.done_mp).max(0.0) / rate.max(1e-9);
        tracing::info!(
            scene = self.scenes_done,
            of = self.scenes,
            output = %path.display(),
            megapixels_per_s = format!("{rate:.2}"),
            eta_s = format!("{eta:.0}"),
            "scene written"
        );
        if self.scenes > 1 {
            println!(
                "scene {} of {} written: {} ({rate:.2} MP/s so far, about {eta:.0} s left)",
                self.scenes_done,
                self.scenes,
                path.display()
            );
        }
    }
}

/// A scene whose last tiles are in, being finished on a thread of its own (its last rows
/// compressed, the file closed and renamed into place) while the next scene's tiles are
/// blended: the end of one scene and the start of the next keep the cores busy together.
/// Dropped unfinished (the run failed), it still waits for the thread, so the scene's file is
/// either in place or removed before the stage exits.
struct Finishing {
    thread: Option<std::thread::JoinHandle<geosr::Result<PathBuf>>>,
    megapixels: f64,
}

impl Finishing {
    fn start(mosaic: Mosaic) -> Self {
        let megapixels = mosaic.output_megapixels();
        let thread = std::thread::Builder::new()
            .name("geosr-finish-scene".into())
            .spawn(move || mosaic.finish())
            .expect("spawning a thread");
        Finishing {
            thread: Some(thread),
            megapixels,
        }
    }

    /// Whether the thread has ended (the file is in place, or it failed).
    fn is_done(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Waits until the file is in place and counts it as written.
    fn wait(mut self, progress: &mut Progress, written: &mut Written) -> eyre::Result<()> {
        let thread = self.thread.take().expect("joined once");
        let path = thread
            .join()
            .map_err(|_| eyre::eyre!("the thread finishing a scene panicked"))??;
        progress.scene_done(self.megapixels, &path);
        written.paths.push(path);
        Ok(())
    }
}

impl Drop for Finishing {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Requests every batch of every scene still to do, mosaics the replies scene by scene and
/// renames each output into place when it is complete. Any failure (a peer that ended, a wait
/// that ran out, a GDAL error) leaves nothing at the output path of the scene being written;
/// scenes finished before stay. Scenes that could not be planned are named in the error at the
/// end, after the others are written. `counts` records what crossed each edge, also when it
/// fails.
pub fn write_super_resolved(
    node: &mut DoraNode,
    inbox: &mut Inbox,
    settings: &Settings,
    counts: &mut TileCounts,
) -> eyre::Result<Written> {
    let output = settings.output.clone().ok_or_else(|| {
        eyre::eyre!("GEOSR_OUTPUT is not set; give the path of the GeoTIFF to write (a folder for several scenes)")
    })?;
    let opts = MosaicOptions {
        creation_options: settings.creation_option_list(),
        format: settings.output_format,
        overlap: settings.overlap,
        consistency: consistency_spec(settings)?,
    };
    let (list, plan) = ScenePlan::from_settings(settings)?;
    if list.many {
        std::fs::create_dir_all(&output).map_err(|e| geosr::Error::io(&output, e))?;
    }
    let mut written = Written {
        complete_already: list.complete.len(),
        ..Default::default()
    };
    let mut progress = Progress {
        started: Instant::now(),
        done_mp: 0.0,
        total_mp: 0.0,
        scenes_done: 0,
        scenes: plan.scenes.len(),
    };
    let mut window = CreditWindow::new(settings.prefetch as u64);
    // The scene being written and its mosaic, and the one before it being finished.
    let mut current: Option<(usize, Mosaic)> = None;
    let mut finishing: Option<Finishing> = None;
    // One `sr…` input per inference worker.
    let mut sources: Vec<String> = inbox
        .input_ids()
        .iter()
        .map(|id| inbox.source_of(id))
        .collect();
    sources.sort();
    sources.dedup();
    let sr_from = sources.join("`, `");
    let total = plan.batches() as u64;
    while (written.paths.len() < plan.scenes.len()) && !window.done() {
        for i in window.to_request() {
            send_array(node, "request", Request::infer(i).to_arrow())?;
            counts.count_out("request", 1);
        }
        let not_written = || {
            let scene = current.as_ref().map(|(k, _)| &plan.scenes[*k].0.output);
            match scene {
                Some(p) => format!("{} was not written", p.display()),
                None => format!("{} was not written", output.display()),
            }
        };
        let waiting = format!("batch {} from `{sr_from}`", window.progress());
        match inbox.next(Some(&waiting))? {
            Next::Input { id, data } => {
                let sr = TileBatch::from_arrow(data.as_ref())
                    .map_err(|e| eyre::eyre!("input `{id}` from `{sr_from}`: {e}"))?;
                counts.count_in(&id, sr.len());
                if sr.batches_in_split as u64 != total {
                    eyre::bail!(
                        "`{sr_from}` sends batches of a run of {} batches, this writer planned {total} (do both stages read the same input and output?)",
                        sr.batches_in_split
                    );
                }
                window.receive(sr.index_in_split as u64, total, sr)?;
                while let Some(sr) = window.next_ready() {
                    let index = sr.index_in_split as usize;
                    let k = plan.scene_of(index).ok_or_else(|| {
                        eyre::eyre!("batch {index} is beyond the {total} planned")
                    })?;
                    if current.as_ref().is_none_or(|(c, _)| *c != k) {
                        let scene = &plan.scenes[k].0;
                        let m = open_mosaic(&sr, &scene.output, &opts)?;
                        if progress.total_mp == 0.0 {
                            let f2 = (m.factor() * m.factor()) as f64;
                            progress.total_mp = plan
                                .scenes
                                .iter()
                                .map(|(_, p)| {
                                    (p.raster().width * p.raster().height) as f64 * f2 / 1e6
                                })
                                .sum();
                        }
                        current = Some((k, m));
                    }
                    let (_, m) = current.as_mut().expect("opened above");
                    m.add(&sr)?;
                    // Report the scene before as soon as its file is in place.
                    if finishing.as_ref().is_some_and(Finishing::is_done) {
                        let done = finishing.take().expect("checked above");
                        done.wait(&mut progress, &mut written)?;
                    }
                    if index == plan.last_batch_of(k) {
                        let (_, m) = current.take().expect("opened above");
                        written.tiles += m.tiles_written;
                        if let Some(previous) = finishing.take() {
                            previous.wait(&mut progress, &mut written)?;
                        }
                        finishing = Some(Finishing::start(m));
                    }
                    let d = window.delivered();
                    if d.is_multiple_of(10) || window.done() {
                        tracing::info!(batch = d, of = window.total(), "progress");
                    }
                }
            }
            Next::Closed { id } => eyre::bail!(
                "the input `{id}` from `{}` ended after batch {}; {}",
                inbox.source_of(&id),
                window.progress(),
                not_written()
            ),
            Next::PeerFailed { node, error } => {
                eyre::bail!("`{node}` failed ({error}); {}", not_written())
            }
            Next::Stop => eyre::bail!(
                "stopped after batch {}; {}",
                window.progress(),
                not_written()
            ),
            Next::Silence => {
                for i in window.missing() {
                    send_array(node, "request", Request::infer(i).to_arrow())?;
                    counts.count_out("request", 1);
                }
            }
        }
    }
    if let Some(last) = finishing.take() {
        last.wait(&mut progress, &mut written)?;
    }
    written.overtaking = window.overtaking();
    if list.many {
        let mut outputs: Vec<PathBuf> = written.paths.clone();
        outputs.extend(list.complete.iter().map(|s| s.output.clone()));
        outputs.sort();
        // The VRT is a convenience: a failure to make one is a warning, never a failed run.
        match write_vrt(&output.join(SCENES_VRT), &outputs) {
            Ok(Some(vrt)) => {
                tracing::info!(vrt = %vrt.display(), scenes = outputs.len(), "VRT of the outputs")
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e.full_text(), "no VRT of the outputs"),
        }
    }
    if !plan.failed.is_empty() {
        let names: Vec<String> = plan
            .failed
            .iter()
            .map(|(s, why)| format!("{} ({why})", s.input.display()))
            .collect();
        eyre::bail!(
            "{} of {} scenes could not be read and were left out, the other {} were written: {}",
            plan.failed.len(),
            plan.failed.len() + plan.scenes.len() + list.complete.len(),
            written.paths.len() + list.complete.len(),
            names.join("; ")
        );
    }
    if plan.scenes.is_empty() && list.complete.is_empty() {
        eyre::bail!("no scene to write");
    }
    Ok(written)
}

/// How the consistency report degrades the output back, if one is written: with the model's
/// degradation in inference (on unless `consistency_report: false`), with the settings' when a
/// classic graph asks for it (`consistency_report: true`).
fn consistency_spec(settings: &Settings) -> eyre::Result<Option<ConsistencySpec>> {
    let on = settings
        .consistency_report
        .unwrap_or(settings.model.is_some());
    if !on {
        return Ok(None);
    }
    let card = match &settings.model {
        Some(model) => Some(geosr::card::read_record::<geosr::card::ModelCard>(
            &model.join("model.json"),
        )?),
        None => None,
    };
    let d = geosr::card::Degradation::for_stage(settings, card.as_ref());
    Ok(Some(ConsistencySpec {
        antialias: d.spec.antialias,
        blur_sigma: d.spec.blur_sigma,
        map: settings.consistency_map,
    }))
}

/// The VRT a run of several scenes writes beside their outputs, for opening them as one layer.
pub const SCENES_VRT: &str = "scenes.vrt";

/// Writes a VRT of `outputs` at `path` (atomically) when they share a CRS, band count and data
/// type; `None`, with a warning, when they do not (they are then opened one by one).
pub fn write_vrt(path: &Path, outputs: &[PathBuf]) -> geosr::Result<Option<PathBuf>> {
    if outputs.is_empty() {
        return Ok(None);
    }
    let sources: Vec<crate::raster::RasterSource> = outputs
        .iter()
        .map(|p| crate::raster::RasterSource::open(p, &[]))
        .collect::<geosr::Result<_>>()?;
    let key = |s: &crate::raster::RasterSource| {
        (
            s.info.crs.clone(),
            s.info.bands.len(),
            s.info.data_type.clone(),
        )
    };
    if let Some((i, _)) = sources
        .iter()
        .enumerate()
        .find(|(_, s)| key(s) != key(&sources[0]))
    {
        tracing::warn!(
            first = %outputs[0].display(),
            other = %outputs[i].display(),
            "no VRT of the outputs: they differ in CRS, band count or data type"
        );
        return Ok(None);
    }
    let datasets: Vec<&gdal::Dataset> = sources.iter().map(|s| s.dataset()).collect();
    let pending = geosr::atomic::PendingFile::new(path, ".vrt")?;
    crate::gdal_errors::checked(path, "writing the VRT", || {
        gdal::programs::raster::build_vrt(Some(pending.path()), &datasets, None).map(drop)
    })?;
    pending.commit().map(Some)
}

/// The mosaic for the raster the first batch comes from, at the factor its tiles' grids show.
fn open_mosaic(
    first: &TileBatch,
    output: &std::path::Path,
    opts: &MosaicOptions,
) -> eyre::Result<Mosaic> {
    let t = &first.tiles[0];
    let src_gt = crate::raster::RasterSource::open(t.source.as_ref(), &[])?
        .info
        .geotransform;
    let factor = (src_gt[1] / t.geotransform[1]).round();
    if !(1.0..=64.0).contains(&factor) {
        eyre::bail!(
            "tiles of {} have a pixel size of {} against the raster's {}: not an SR batch of it",
            t.source,
            t.geotransform[1],
            src_gt[1]
        );
    }
    tracing::info!(source = %t.source, factor, output = %output.display(), "writing");
    Ok(Mosaic::create(
        t.source.as_ref(),
        output,
        factor as usize,
        opts.clone(),
    )?)
}
