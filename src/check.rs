//! `geosr check`: a dataflow graph validated before it starts.
//!
//! dora starts any graph whose YAML parses; a loss stage wired where tiles are expected, an
//! inference graph without a model or a degradation that does not match the model only show up
//! later as a crash in one node, or as a model quietly trained on the wrong data. The checker
//! reads the graph, resolves each node's settings the way the node will (graph `env:`, the
//! `--env` values given, `GEOSR_SETTINGS`), and reports one sentence per problem.
//!
//! What a port carries follows from its name, the convention every geosr stage keeps (see
//! docs/tile-contract.md): `hr*` HR tiles, `lr*` LR tiles, `sr*` and `pred` SR tiles, `loss*`
//! loss replies, `request` requests, `distance` and `vgg` score batches. Every edge must join
//! two ports of the same kind. Stages geosr knows (by the file name of the node's executable,
//! operator library or Python script) are also checked for their required ports and settings.
//!
//! ```
//! let problems = geosr::check::check_graph("graphs/train.yml".as_ref(), &[]).unwrap();
//! assert!(problems.is_empty(), "{problems:?}");
//! ```
use crate::card::ModelCard;
use crate::error::{Error, Result};
use crate::settings::Settings;
use crate::settings::{Engine, IngestMode};
use serde_yaml::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What travels on a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    HrTiles,
    LrTiles,
    SrTiles,
    LossReply,
    Request,
    Scores,
}

impl Kind {
    /// The kind of a port from its name, `None` for names outside the convention.
    pub fn of_port(name: &str) -> Option<Kind> {
        let is = |p: &str| name == p || name.starts_with(&format!("{p}_"));
        Some(match () {
            _ if name == "request" => Kind::Request,
            _ if is("hr") => Kind::HrTiles,
            _ if is("lr") => Kind::LrTiles,
            _ if is("sr") || name == "pred" => Kind::SrTiles,
            _ if is("loss") => Kind::LossReply,
            _ if name == "distance" || name == "vgg" => Kind::Scores,
            _ => return None,
        })
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::HrTiles => "HR tiles",
            Kind::LrTiles => "LR tiles",
            Kind::SrTiles => "SR tiles",
            Kind::LossReply => "a loss reply (loss and gradient)",
            Kind::Request => "requests",
            Kind::Scores => "score batches",
        }
    }
}

/// One node of a graph as the checker sees it.
#[derive(Debug, Clone)]
pub struct GraphNode {
    pub id: String,
    /// The geosr stage it runs, from the executable, library or script name.
    pub stage: Option<String>,
    /// input id → (source node, source output)
    pub inputs: BTreeMap<String, (String, String)>,
    pub outputs: BTreeSet<String>,
    pub env: Vec<(String, String)>,
    /// input id → its `queue_size` (dora's default is 10)
    pub queue_sizes: BTreeMap<String, usize>,
    /// The inputs set to `queue_policy: backpressure`.
    pub reliable: BTreeSet<String>,
}

/// The geosr stage a file implements: `tile-ingest`, `libop_pixel_loss.so` → `pixel-loss`,
/// `degrade.py` → `degrade`.
pub fn stage_of_file(path: &str) -> String {
    let name = Path::new(path)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name
        .strip_suffix(".so")
        .or_else(|| name.strip_suffix(".py"))
        .unwrap_or(&name);
    let stem = stem.strip_prefix("lib").unwrap_or(stem);
    let stem = stem.strip_prefix("op_").unwrap_or(stem);
    stem.replace('_', "-")
}

fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Reads the nodes of a dora graph file: plain nodes, `operator:` nodes and `operators:`
/// runtime nodes (each operator becomes a node `<node>/<operator>`).
pub fn read_graph(graph: &Path) -> Result<Vec<GraphNode>> {
    let text = std::fs::read_to_string(graph).map_err(|e| Error::io(graph, e))?;
    let doc: Value = serde_yaml::from_str(&text)
        .map_err(|e| Error::setting("graph", format!("{}: {e}", graph.display())))?;
    let mut out = Vec::new();
    let nodes = doc["nodes"]
        .as_sequence()
        .ok_or_else(|| Error::setting("graph", format!("{}: no `nodes:` list", graph.display())))?;
    for node in nodes {
        let id = node["id"].as_str().unwrap_or_default().to_owned();
        let env: Vec<(String, String)> = node["env"]
            .as_mapping()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), as_string(v)?)))
            .collect();
        let mut parts: Vec<(String, &Value, Option<String>)> = Vec::new();
        if node["operator"].is_mapping() {
            let op = &node["operator"];
            let file = op["shared-library"].as_str().or(op["python"].as_str());
            parts.push((id.clone(), op, file.map(stage_of_file)));
        } else if let Some(ops) = node["operators"].as_sequence() {
            for op in ops {
                let file = op["shared-library"].as_str().or(op["python"].as_str());
                let op_id = op["id"].as_str().unwrap_or_default();
                parts.push((format!("{id}/{op_id}"), op, file.map(stage_of_file)));
            }
        } else {
            parts.push((id.clone(), node, node["path"].as_str().map(stage_of_file)));
        }
        for (pid, spec, stage) in parts {
            let mut inputs = BTreeMap::new();
            let mut queue_sizes = BTreeMap::new();
            let mut reliable = BTreeSet::new();
            for (k, v) in spec["inputs"].as_mapping().into_iter().flatten() {
                if let (Some(name), Some(q)) = (k.as_str(), v["queue_size"].as_u64()) {
                    queue_sizes.insert(name.to_owned(), q as usize);
                }
                if let (Some(name), Some("backpressure")) = (k.as_str(), v["queue_policy"].as_str())
                {
                    reliable.insert(name.to_owned());
                }
                let src = v
                    .as_str()
                    .or_else(|| v["source"].as_str())
                    .unwrap_or_default();
                let Some(name) = k.as_str() else { continue };
                // `node/output`, or `node/operator/output` for an operator's output
                let (from, out) = match src.rsplit_once('/') {
                    Some((f, o)) => (f.to_owned(), o.to_owned()),
                    None => (src.to_owned(), String::new()),
                };
                inputs.insert(name.to_owned(), (from, out));
            }
            let outputs = spec["outputs"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect();
            out.push(GraphNode {
                id: pid,
                stage,
                inputs,
                outputs,
                env: env.clone(),
                queue_sizes,
                reliable,
            });
        }
    }
    Ok(out)
}

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
                problems.push(format!("node `{}`: {e}", n.id));
                continue;
            }
        };
        let mut need = |what: &str, ok: bool| {
            if !ok {
                problems.push(format!("node `{}` ({stage}): {what}", n.id));
            }
        };
        let has_in = |p: &str| n.inputs.contains_key(p);
        let any_in = |p: &str| n.inputs.keys().any(|k| k.starts_with(p));
        let has_out = |p: &str| n.outputs.contains(p);
        match stage {
            "tile-ingest" => {
                need(
                    "needs input `request` (ingest answers requests)",
                    has_in("request"),
                );
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
                need("needs an input named `hr` or `hr_<suffix>`", any_in("hr"));
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
            "unet-train" => {
                need("needs input `lr` (LR training batches)", has_in("lr"));
                need(
                    "needs at least one loss input `loss_<name>`",
                    any_in("loss_"),
                );
                need(
                    "needs outputs `request` and `pred`",
                    has_out("request") && has_out("pred"),
                );
            }
            "vgg-loss" | "pixel-loss" => {
                let scoring = any_in("sr_");
                need("needs input `hr`", has_in("hr"));
                if scoring {
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
            "unet-infer" | "upscale" => {
                need(
                    "needs input `lr` and output `sr`",
                    has_in("lr") && has_out("sr"),
                );
            }
            "geotiff-writer" => {
                need(
                    "needs input `sr` and output `request`",
                    has_in("sr") && has_out("request"),
                );
                need(
                    "needs `output` (GEOSR_OUTPUT), the GeoTIFF to write",
                    s.output.is_some(),
                );
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
                need(
                    "needs input `hr` and at least one `sr_<method>`",
                    has_in("hr") && any_in("sr_"),
                );
                need("needs output `request`", has_out("request"));
                need(
                    "needs `output` (GEOSR_OUTPUT), the report folder",
                    s.output.is_some(),
                );
            }
            _ => {}
        }
        let needs_model = matches!(stage, "unet-infer" | "evaluate");
        if needs_model && s.model.is_none() {
            problems.push(format!(
                "node `{}` ({stage}): no model: set GEOSR_MODEL to the run directory of a trained model",
                n.id
            ));
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
                Err(e) => problems.push(format!("node `{}` ({stage}): `{key}`: {e}", n.id)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_kinds_follow_the_names() {
        assert_eq!(Kind::of_port("hr_val"), Some(Kind::HrTiles));
        assert_eq!(Kind::of_port("lr"), Some(Kind::LrTiles));
        assert_eq!(Kind::of_port("sr_bicubic"), Some(Kind::SrTiles));
        assert_eq!(Kind::of_port("pred"), Some(Kind::SrTiles));
        assert_eq!(Kind::of_port("loss_vgg"), Some(Kind::LossReply));
        assert_eq!(Kind::of_port("request"), Some(Kind::Request));
        assert_eq!(Kind::of_port("tick"), None);
        assert_eq!(Kind::of_port("hrx"), None);
    }

    #[test]
    fn stage_names_from_files() {
        assert_eq!(
            stage_of_file("../target/release/tile-ingest"),
            "tile-ingest"
        );
        assert_eq!(
            stage_of_file("../target/release/libop_pixel_loss.so"),
            "pixel-loss"
        );
        assert_eq!(stage_of_file("../nodes/degrade-py/degrade.py"), "degrade");
    }
}
