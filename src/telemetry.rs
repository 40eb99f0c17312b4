//! Logging for every stage: human-readable lines on stderr (which dora shows and keeps in its
//! node logs) and JSON lines in `<run_dir>/logs/<stage>.jsonl`.
use std::path::Path;
use tracing_subscriber::{fmt, layer::SubscriberExt, util::SubscriberInitExt, EnvFilter};

/// Starts logging for `stage`. `RUST_LOG` filters as usual (default `info`). Returns the log file
/// path when one could be opened.
pub fn init(stage: &str, run_dir: Option<&Path>) -> Option<std::path::PathBuf> {
    // Our crates at info; dora's and zenoh's internals only when something is wrong (their
    // shutdown chatter and transport diagnostics would drown the progress lines).
    // Our crates (the core and this stage's binary) at info; dora's and zenoh's internals only
    // when something is wrong (their shutdown chatter and transport diagnostics would drown the
    // progress lines).
    let own = stage.replace('-', "_");
    let filter = || {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| {
            EnvFilter::new(format!(
                "warn,geosr=info,{own}=info,dora_node_api=error,zenoh=off,zenoh_transport=off"
            ))
        })
    };
    // dora prefixes and timestamps each captured line itself: no colours, no second clock.
    let stderr = fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(false)
        .without_time();
    let file_path = run_dir.map(|d| d.join("logs").join(format!("{stage}.jsonl")));
    let file = file_path.as_ref().and_then(|p| {
        std::fs::create_dir_all(p.parent()?).ok()?;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .ok()
    });
    let opened = file.is_some();
    let json = file.map(|f| {
        fmt::layer()
            .json()
            .with_writer(std::sync::Mutex::new(f))
            .with_current_span(false)
    });
    let _ = tracing_subscriber::registry()
        .with(filter())
        .with(stderr)
        .with(json)
        .try_init();
    if opened {
        file_path
    } else {
        None
    }
}
