//! `hop-bench`: measures how fast tile batches cross one dora edge. Run by `geosr bench` through
//! `graphs/bench-hop.yml`; see README.md beside this file.
//!
//! As `source` (env `HOP_ROLE=source`) it answers each request with a tile batch of
//! `HOP_TILES` tiles of 3×`HOP_EDGE`×`HOP_EDGE` f32. As `sink` it requests `HOP_MESSAGES`
//! batches (two in flight), reads every pixel of each one where it lies (shared memory, no
//! copy), and writes `<run_dir>/hop.json`: bytes, seconds and GB/s from the first to the last
//! batch received.
use arrow::array::AsArray;
use arrow::datatypes::Float32Type;
use dora_node_api::{DoraNode, Event};
use geosr::flow::Request;
use geosr::stage::{send_array, send_batch};
use geosr::tile::TileBatch;
use std::time::Instant;

fn env_num(key: &str, default: usize) -> eyre::Result<usize> {
    match std::env::var(key) {
        Ok(v) => v
            .parse()
            .map_err(|_| eyre::eyre!("hop-bench: {key}={v} is not a number")),
        Err(_) => Ok(default),
    }
}

fn main() -> eyre::Result<()> {
    let settings =
        geosr::settings::Settings::from_env().map_err(|e| eyre::eyre!("hop-bench: {e}"))?;
    let role = std::env::var("HOP_ROLE").unwrap_or_default();
    let (mut node, mut events) = DoraNode::init_from_env()?;
    match role.as_str() {
        "source" => {
            let (tiles, edge) = (env_num("HOP_TILES", 16)?, env_num("HOP_EDGE", 128)?);
            let mut batch = TileBatch::example(tiles, 3, edge, edge);
            let mut id = 0;
            while let Some(event) = events.recv() {
                match event {
                    Event::Input { .. } => {
                        batch.batch_id = id;
                        id += 1;
                        send_batch(&mut node, "tiles", batch.clone())?;
                    }
                    Event::Stop(_) | Event::InputClosed { .. } => break,
                    _ => {}
                }
            }
        }
        "sink" => {
            let messages = env_num("HOP_MESSAGES", 200)?;
            // The source answers any request with its one batch: the index is not used.
            for _ in 0..2 {
                send_array(&mut node, "request", Request::train(0).to_arrow())?;
            }
            let (mut received, mut bytes, mut checksum) = (0usize, 0usize, 0f64);
            let mut first: Option<Instant> = None;
            let mut last = Instant::now();
            while let Some(event) = events.recv() {
                let Event::Input { data, .. } = event else {
                    continue;
                };
                let s = data.as_array().as_struct();
                let pixels = s
                    .column_by_name("pixels")
                    .ok_or_else(|| eyre::eyre!("no pixels column"))?;
                let values = pixels
                    .as_fixed_size_list()
                    .values()
                    .as_primitive::<Float32Type>();
                // Touch every byte, as a memcpy would.
                checksum += values.values().iter().map(|v| *v as f64).sum::<f64>();
                bytes += values.len() * 4;
                received += 1;
                last = Instant::now();
                if received == 1 {
                    first = Some(last);
                    bytes = 0; // time from the first arrival: count what arrives after it
                }
                if received + 1 < messages {
                    send_array(&mut node, "request", Request::train(0).to_arrow())?;
                }
                if received == messages {
                    break;
                }
            }
            let secs = first.map(|f| (last - f).as_secs_f64()).unwrap_or(0.0);
            let body = serde_json::json!({
                "messages": received, "bytes": bytes, "seconds": secs,
                "gb_per_s": bytes as f64 / secs / 1e9, "checksum": checksum,
                "message_bytes": bytes / received.saturating_sub(1).max(1),
            });
            geosr::atomic::write_atomic(
                &settings.run_dir.join("hop.json"),
                serde_json::to_string_pretty(&body)?.as_bytes(),
            )?;
        }
        other => eyre::bail!("hop-bench: HOP_ROLE must be `source` or `sink`, got `{other}`"),
    }
    Ok(())
}
