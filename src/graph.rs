//! Reading a dora graph file: its nodes (plain nodes, `operator:` nodes and the operators of
//! `operators:` runtime nodes), what each runs, its inputs, outputs and environment, and the
//! edges between them. `geosr check` and the run summary read graphs through this one reader.
use crate::error::{Error, Result};
use serde_yaml::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// One node of a graph.
#[derive(Debug, Clone)]
pub struct GraphNode {
    pub id: String,
    /// The geosr stage it runs, from the executable, library or script name.
    pub stage: Option<String>,
    /// input id → (source node, source output)
    pub inputs: BTreeMap<String, (String, String)>,
    /// input id → the source as written (`node/output`)
    pub sources: BTreeMap<String, String>,
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
            let mut sources = BTreeMap::new();
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
                sources.insert(name.to_owned(), src.to_owned());
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
                sources,
                outputs,
                env: env.clone(),
                queue_sizes,
                reliable,
            });
        }
    }
    Ok(out)
}

/// One edge of a dataflow graph: `from_node/output → to_node.input`.
#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    pub from_node: String,
    pub output: String,
    pub to_node: String,
    pub input: String,
}

/// The edges between the nodes of a graph (dora's timers and logs left out).
pub fn edges(nodes: &[GraphNode]) -> Vec<Edge> {
    let mut out = Vec::new();
    for n in nodes {
        for (input, src) in &n.sources {
            let Some((from, output)) = src.split_once('/') else {
                continue;
            };
            if from == "dora" {
                continue;
            }
            out.push(Edge {
                from_node: from.into(),
                output: output.into(),
                to_node: n.id.clone(),
                input: input.clone(),
            });
        }
    }
    out
}

/// The edges of a graph file.
pub fn graph_edges(graph: &Path) -> Result<Vec<Edge>> {
    Ok(edges(&read_graph(graph)?))
}

#[cfg(test)]
mod tests {
    use super::*;

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
