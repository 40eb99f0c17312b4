//! `geosr check`: a dataflow graph validated before it starts.
//!
//! dora starts any graph whose YAML parses; a loss stage wired where tiles are expected, an
//! inference graph without a model or a degradation that does not match the model only show up
//! later as a crash in one node, or as a model quietly trained on the wrong data. The checker
//! reads the graph, resolves each node's settings the way the node will (graph `env:`, the
//! `--env` values given, `GEOSR_SETTINGS`), and reports one sentence per problem.
//!
//! Every edge must join two ports of the same kind (`geosr::registry::Kind`, from the port's
//! name) and stay on dora's reliable path. Stages geosr knows (by the file name of the node's
//! executable, operator library or Python script) are checked against their entry in
//! `geosr::registry` (required ports, model, output) and for what depends on their settings.
//!
//! ```
//! let problems = geosr::check::check_graph("graphs/train.yml".as_ref(), &[]).unwrap();
//! assert!(problems.is_empty(), "{problems:?}");
//! ```
use crate::card::ModelCard;
use crate::error::Result;
use crate::graph::{read_graph, GraphNode};
use crate::registry::{wiring_problems, Kind};
use crate::settings::{Engine, IngestMode, Settings};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Checks `graph` with extra environment `env` (as `dora start --env K=V` would give it).
/// Returns one sentence per problem; empty means the graph is fine.
pub fn check_graph(graph: &Path, env: &[(String, String)]) -> Result<Vec<String>> {
    let nodes = read_graph(graph)?;
    let cwd = graph
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let cwd = std::fs::canonicalize(&cwd).unwrap_or(cwd);
    let mut problems = Vec::new();
    let by_id: BTreeMap<&str, &GraphNode> = nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    if by_id.len() != nodes.len() {
        problems.push("two nodes share an id".to_owned());
    }
    // Edges: the source exists, declares the output, and carries what the input expects.
    for n in &nodes {
        for (input, (from, out)) in &n.inputs {
            if from == "dora" || from.starts_with("dora/") {
                continue; // timers and dora's own sources
            }
            // `node/op/output` names the single operator of an `operator:` node explicitly.
            let src = by_id
                .get(from.as_str())
                .or_else(|| from.split_once('/').and_then(|(node, _)| by_id.get(node)));
            let Some(src) = src else {
                problems.push(format!(
                    "node `{}` input `{input}` comes from `{from}/{out}`, but there is no node `{from}`",
                    n.id
                ));
                continue;
            };
            if !src.outputs.contains(out) {
                problems.push(format!(
                    "node `{}` input `{input}` comes from `{from}/{out}`, but `{from}` has no output `{out}` (it has: {})",
                    n.id,
                    src.outputs.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
                continue;
            }
            // dora 1.1's default direct path may drop a message under load or let a later one
            // overtake it; backpressure keeps an edge on the daemon's reliable, ordered path.
            if Kind::of_port(input).is_some() && !n.reliable.contains(input) {
                problems.push(format!(
                    "node `{}` input `{input}` must be wired as `{{source: {from}/{out}, queue_policy: backpressure}}`: on dora's default path a message can be dropped under load, and a batch that never comes stops the flow",
                    n.id
                ));
            }
            if let (Some(want), Some(got)) = (Kind::of_port(input), Kind::of_port(out)) {
                if want != got {
                    problems.push(format!(
                        "node `{}` input `{input}` expects {}, but `{from}/{out}` sends {}",
                        n.id,
                        want.describe(),
                        got.describe()
                    ));
                }
            }
        }
    }
    // Each known stage: its settings as the node will read them, its ports, its model.
    let mut cards: Vec<(String, PathBuf, ModelCard)> = Vec::new();
    let mut settings_of: BTreeMap<String, Settings> = BTreeMap::new();
    for n in &nodes {
        let Some(stage) = n.stage.as_deref() else {
            continue;
        };
        let mut vars = env.to_vec();
        vars.extend(n.env.iter().cloned()); // a node-level entry wins, as in dora
        let s = match Settings::from_sources(&vars, &cwd) {
            Ok(s) => s,
            Err(e) => {
                problems.push(format!("node `{}`: {}", n.id, e.full_text()));
                continue;
            }
        };
        let mut need = |what: &str, ok: bool| {
            if !ok {
                problems.push(format!("node `{}` ({stage}): {what}", n.id));
            }
        };
        // The ports every stage has (geosr::registry), then what depends on its settings.
        let ins: Vec<&str> = n.inputs.keys().map(String::as_str).collect();
        let outs: Vec<&str> = n.outputs.iter().map(String::as_str).collect();
        for p in wiring_problems(stage, &ins, &outs) {
            need(&p, false);
        }
        let has_in = |p: &str| n.inputs.contains_key(p);
        let any_in = |p: &str| n.inputs.keys().any(|k| k.starts_with(p));
        let has_out = |p: &str| n.outputs.contains(p);
        if let Some(spec) = crate::registry::spec(stage) {
            need(
                "no model: set GEOSR_MODEL to the run directory of a trained model",
                !spec.needs_model || s.model.is_some(),
            );
            need(
                "needs `output` (GEOSR_OUTPUT), what it writes",
                !spec.needs_output || s.output.is_some(),
            );
        }
        match stage {
            "tile-ingest" => {
                let sends = match s.ingest_mode {
                    IngestMode::Infer => "lr",
                    _ => "hr",
                };
                need(
                    &format!(
                        "in `{}` mode it sends `{sends}`, which the node does not declare as an output",
                        s.ingest_mode
                    ),
                    has_out(sends),
                );
                // (`infer` without a model serves native values, for the classic resamplers)
                if s.ingest_mode == IngestMode::Evaluate {
                    need(
                        &format!("`{}` mode needs `model` (GEOSR_MODEL)", s.ingest_mode),
                        s.model.is_some(),
                    );
                }
            }
            "degrade" => {
                for i in n.inputs.keys().filter(|k| k.starts_with("hr")) {
                    let o = format!("lr{}", &i[2..]);
                    need(
                        &format!(
                            "answers input `{i}` on `{o}`, which is not declared as an output"
                        ),
                        has_out(&o),
                    );
                }
            }
            "vgg-loss" | "pixel-loss" => {
                if any_in("sr_") {
                    need(
                        "scores `sr_<method>` inputs on output `distance`, which is not declared",
                        has_out("distance") && stage == "vgg-loss",
                    );
                } else {
                    need(
                        "needs input `pred` and output `loss` (the loss-stage protocol)",
                        has_in("pred") && has_out("loss"),
                    );
                }
            }
            "evaluate" => {
                let methods: BTreeSet<&String> =
                    n.inputs.keys().filter(|k| k.starts_with("sr_")).collect();
                if let Some((scorer, _)) = n.inputs.get("vgg") {
                    if let Some(v) = by_id.get(scorer.as_str()) {
                        let scored: BTreeSet<&String> =
                            v.inputs.keys().filter(|k| k.starts_with("sr_")).collect();
                        need(
                            &format!(
                                "its `sr_` inputs ({}) and those of `{scorer}` ({}) must be the same methods, or batches wait for scores that never come",
                                methods.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                                scored.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                            ),
                            scored == methods,
                        );
                    }
                    let q = n.queue_sizes.get("vgg").copied().unwrap_or(10);
                    need(
                        &format!(
                            "`prefetch` {} × {} methods score batches can wait on input `vgg`, whose queue_size is {q}: raise it",
                            s.prefetch,
                            methods.len()
                        ),
                        s.prefetch as usize * methods.len() <= q,
                    );
                }
            }
            _ => {}
        }
        for (key, dir) in [("model", &s.model), ("resume", &s.resume)] {
            let Some(dir) = dir else { continue };
            match crate::checkpoint::load_checkpoint(dir) {
                Ok(ck) => {
                    if stage == "unet-infer"
                        && s.engine == Engine::Ort
                        && !dir.join("model.onnx").is_file()
                    {
                        problems.push(format!(
                            "node `{}` ({stage}): {} has no model.onnx for the `ort` engine (run `geosr export {}`)",
                            n.id,
                            dir.display(),
                            dir.display()
                        ));
                    }
                    if !cards.iter().any(|(_, d, _)| d == dir) {
                        cards.push((key.to_owned(), dir.clone(), ck.card));
                    }
                }
                Err(e) => problems.push(format!(
                    "node `{}` ({stage}): `{key}`: {}",
                    n.id,
                    e.full_text()
                )),
            }
        }
        settings_of.insert(n.id.clone(), s);
    }
    // Degradation and resampling must match the model the graph trains on, resumes or runs.
    for n in &nodes {
        let (Some(stage), Some(s)) = (n.stage.as_deref(), settings_of.get(&n.id)) else {
            continue;
        };
        if !matches!(stage, "degrade" | "upscale") || s.model.is_some() {
            continue; // with `model` set the stage takes the card's factor itself
        }
        for (key, dir, card) in &cards {
            if card.downsample_factor != s.factor {
                problems.push(format!(
                    "node `{}` ({stage}) works at factor {}, but the model in {} (`{key}`) is ×{}",
                    n.id,
                    s.factor,
                    dir.display(),
                    card.downsample_factor
                ));
            }
        }
    }
    Ok(problems)
}
