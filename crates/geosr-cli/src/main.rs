//! `geosr`: the project's command line helper.
//!
//! ```text
//! geosr import-vgg <keras-vgg16.onnx> <out.safetensors>   convert the ImageNet VGG-16 conv weights
//! geosr summary <run_dir> [--graph <graph.yml>]           print a run's summary, check tile counts
//! geosr check <graph.yml> [--env K=V ...]                 validate a graph before `dora start`
//! geosr export <run_dir>                                   (re)write <run_dir>/model.onnx from its checkpoint
//! geosr curves <run_dir>                                   (re)draw <run_dir>/curves.png from metrics.csv
//! geosr bench [steps]                                      dataflow vs single process, hop vs memcpy
//! geosr bench-infer <model_run_dir> <lr.tif> [big_edge]    inference MP/s (ort, tch), peak RSS
//! ```
//!
//! `bench` needs a running dora (`dora up`) and `scripts/env.sh` sourced; it takes the training
//! settings from the environment like the nodes (`GEOSR_SETTINGS`, `GEOSR_*`) and writes
//! `runs/bench/bench.md`.
use eyre::{bail, WrapErr};
use geosr::settings::Engine;
use std::path::PathBuf;

fn main() -> std::process::ExitCode {
    geosr::node::run("geosr", command)
}

fn command() -> eyre::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("import-vgg") if args.len() == 3 => {
            let n =
                geosr_torch::vgg::import_onnx(&PathBuf::from(&args[1]), &PathBuf::from(&args[2]))?;
            if n != geosr_torch::vgg::PARAMETERS {
                bail!(
                    "converted {n} parameters, VGG-16's conv base has {}",
                    geosr_torch::vgg::PARAMETERS
                );
            }
            println!("wrote {} ({n} parameters in 13 conv layers)", args[2]);
        }
        Some("summary") if args.len() >= 2 => {
            let run = PathBuf::from(&args[1]);
            let graph = match args.get(2).map(String::as_str) {
                Some("--graph") => Some(PathBuf::from(
                    args.get(3)
                        .ok_or_else(|| eyre::eyre!("--graph needs a file"))?,
                )),
                Some(other) => bail!("unknown argument `{other}`"),
                None => None,
            };
            let (text, ok) =
                geosr::summary::summarise(&run, graph.as_deref()).wrap_err("summary")?;
            print!("{text}");
            if !ok {
                bail!("tile counts do not match along the graph");
            }
        }
        Some("check") if args.len() >= 2 => {
            let graph = PathBuf::from(&args[1]);
            let mut env = Vec::new();
            let mut rest = args[2..].iter();
            while let Some(a) = rest.next() {
                let kv = match a.as_str() {
                    "--env" => rest.next().ok_or_else(|| eyre::eyre!("--env needs K=V"))?,
                    other => bail!("unknown argument `{other}`"),
                };
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| eyre::eyre!("--env `{kv}` is not K=V"))?;
                env.push((k.to_owned(), v.to_owned()));
            }
            let problems = geosr::check::check_graph(&graph, &env).wrap_err("check")?;
            if problems.is_empty() {
                println!("{}: ok", graph.display());
            } else {
                for p in &problems {
                    eprintln!("{}: {p}", graph.display());
                }
                eprintln!(
                    "{} problem(s); fix them before `dora start`",
                    problems.len()
                );
                std::process::exit(1);
            }
        }
        Some("bench") if args.len() <= 2 => {
            // the single-process baseline allocates as the training stages do
            geosr::stage::keep_freed_memory();
            let steps: u32 = match args.get(1) {
                Some(v) => v
                    .parse()
                    .map_err(|_| eyre::eyre!("steps `{v}` is not a number"))?,
                None => 110,
            };
            let root = geosr::settings::project_root();
            let settings = geosr::settings::Settings::from_env()?;
            let dir = geosr_cli::bench::default_dir(&root);
            let (md, _) = geosr_cli::bench::run(&root, &settings, steps, &dir)?;
            geosr::atomic::write_atomic(&dir.join("bench.md"), md.as_bytes())?;
            print!("{md}");
        }
        Some("export") if args.len() == 2 => {
            let run = PathBuf::from(&args[1]);
            let ckpt = geosr::checkpoint::load_checkpoint(&run)?;
            let mut vs = tch::nn::VarStore::new(tch::Device::Cpu);
            let _net = geosr_torch::unet::UNet::new(&vs.root(), &ckpt.card.unet_config());
            vs.load(&ckpt.weights)?;
            let out = run.join("model.onnx");
            geosr_torch::onnx::export_unet(&ckpt.card.unet_config(), &vs.variables(), &out)?;
            println!("wrote {}", out.display());
        }
        Some("curves") if args.len() == 2 => {
            let run = PathBuf::from(&args[1]);
            let out = run.join("curves.png");
            geosr::plot::training_curves(&run.join("metrics.csv"), &out)?;
            println!("wrote {}", out.display());
        }
        Some("bench-infer") if (3..=4).contains(&args.len()) => {
            let root = geosr::settings::project_root();
            let dir = geosr_cli::bench::default_dir(&root).join("infer");
            let mut s = geosr::settings::Settings::from_env()?;
            s.model = Some(std::fs::canonicalize(&args[1])?);
            s.input = std::fs::canonicalize(&args[2])?;
            s.log_dir = dir.join("logs");
            let factor = geosr::checkpoint::load_checkpoint(s.model.as_ref().expect("set"))?
                .card
                .downsample_factor;
            let mut md = String::from("| run | output MP | seconds | MP/s | peak RSS of the nodes |\n|---|---:|---:|---:|---:|\n");
            let mut row = |name: &str, r: &geosr_cli::bench::InferRun| {
                md.push_str(&format!(
                    "| {name} | {:.1} | {:.1} | {:.2} | {:.0} MiB |\n",
                    r.output_megapixels,
                    r.seconds,
                    r.output_megapixels / r.seconds,
                    r.peak_rss_bytes as f64 / 1048576.0
                ));
            };
            for engine in [Engine::Ort, Engine::Tch] {
                s.engine = engine;
                s.output = Some(dir.join(format!("sr-{engine}.tif")));
                let r = geosr_cli::bench::run_inference(
                    &root,
                    "graphs/infer.yml",
                    &s,
                    &dir.join(engine.as_str()),
                )?;
                row(&format!("{} x{factor} with {engine}", args[2]), &r);
            }
            if let Some(edge) = args.get(3) {
                let edge: usize = edge
                    .parse()
                    .map_err(|_| eyre::eyre!("big_edge `{edge}` is not a number"))?;
                let big = dir.join(format!("synthetic-{edge}.tif"));
                if !big.exists() {
                    geosr_cli::bench::synthetic_raster(&big, edge, edge)?;
                }
                s.input = big;
                s.engine = Engine::Ort;
                s.output = Some(dir.join("sr-big.tif"));
                let r = geosr_cli::bench::run_inference(
                    &root,
                    "graphs/infer.yml",
                    &s,
                    &dir.join("big"),
                )?;
                row(
                    &format!("synthetic {edge}x{edge} 3-band UInt16 with ort"),
                    &r,
                );
                let _ = std::fs::remove_file(dir.join("sr-big.tif"));
            }
            md.push_str(&format!("\n{}\n", geosr_cli::bench::machine()));
            geosr::atomic::write_atomic(&dir.join("bench-infer.md"), md.as_bytes())?;
            print!("{md}");
        }
        _ => {
            eprintln!("usage:\n  geosr import-vgg <keras-vgg16.onnx> <out.safetensors>\n  geosr summary <run_dir> [--graph <graph.yml>]\n  geosr check <graph.yml> [--env K=V ...]\n  geosr export <run_dir>\n  geosr curves <run_dir>\n  geosr bench [steps]\n  geosr bench-infer <model_run_dir> <lr.tif> [big_edge]");
            std::process::exit(2);
        }
    }
    Ok(())
}
