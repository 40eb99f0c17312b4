//! What every stage process does around its own work: joining the dataflow, waiting for events
//! with a bound, noticing a peer or the daemon that is gone, and ending with one clear line.
//!
//! - [`run`] wraps a stage's `main`: an error prints one line, `Error: <stage>: <what happened>`
//!   (the marker dora uses to pick a node's error out of its output), and the process exits 1.
//!   The cause chain is in that line. dora sets `RUST_BACKTRACE=1` for every node it starts, so
//!   that variable cannot tell whether the user asked for a backtrace; `GEOSR_BACKTRACE=1` (or
//!   `RUST_BACKTRACE=full`) does, and adds the report with its backtrace.
//! - [`connect`] joins the dataflow. Stages connect before anything that can fail (settings,
//!   input, model): a stage that failed before connecting would leave its peers waiting at dora's
//!   start-up barrier, and each of them would fail with an unhelpful "internal error".
//! - [`Inbox::next`] is the only way stages receive events. While the stage waits for something
//!   it asked for, every `resend_after_s` of silence it hears [`Next::Silence`] and asks again
//!   for what is missing (dora can lose a message between daemons under load; every request is
//!   idempotent and duplicates are ignored), and the wait is bounded by `wait_timeout_s`. A stage
//!   idle between requests waits as long as its peers live. Either way a daemon that is gone
//!   (killed, or its host lost) ends the wait at once, and a peer that failed is reported by name.
use dora_node_api::{DoraNode, Event, EventStream};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// How often a waiting stage checks on its daemon.
const TICK: Duration = Duration::from_secs(1);

/// Whether the user asked for backtraces (see the module documentation).
fn backtrace_asked() -> bool {
    std::env::var("GEOSR_BACKTRACE").is_ok_and(|v| v == "1")
        || std::env::var("RUST_BACKTRACE").is_ok_and(|v| v == "full")
}

/// Runs a stage's body and turns its error (or a panic, which is a bug) into one line on stderr
/// and exit code 1.
pub fn run(stage: &str, body: impl FnOnce() -> eyre::Result<()>) -> ExitCode {
    if !backtrace_asked() {
        let name = stage.to_owned();
        std::panic::set_hook(Box::new(move |info| {
            let at = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            eprintln!("Error: {name}: internal fault{at}: {msg} (a bug in geosr; GEOSR_BACKTRACE=1 shows where)");
        }));
    }
    match body() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {}", one_line(stage, &e));
            if backtrace_asked() {
                eprintln!("{e:?}");
            }
            ExitCode::FAILURE
        }
    }
}

/// `<stage>: <cause>: <cause>…`, without repeating what an outer message already says.
pub fn one_line(stage: &str, e: &eyre::Report) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        // dora's node errors wrap the useful sentence in "internal error".
        if text == "internal error" || parts.iter().any(|p| p.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    let line = parts.join(": ");
    let prefix = format!("{stage}: ");
    if line.starts_with(&prefix) {
        line
    } else {
        format!("{prefix}{line}")
    }
}

/// Joins the dataflow as this process's node. The inbox waits as the default settings say until
/// [`Inbox::configure`] gives the stage's own.
pub fn connect(stage: &str) -> eyre::Result<(DoraNode, Inbox)> {
    let (node, events) = DoraNode::init_from_env().map_err(|e| {
        let report = eyre::Report::new(e);
        let cause = report
            .chain()
            .last()
            .map(|c| c.to_string())
            .unwrap_or_default();
        eyre::eyre!("{stage}: could not join the dataflow ({cause})")
    })?;
    let inbox = Inbox::new(&node, events, &crate::settings::Settings::default());
    Ok((node, inbox))
}

/// The start of every stage: joins the dataflow, then reads the settings (so that a bad setting
/// is reported by a stage that peers see fail, not one that vanished before joining) and lets
/// the inbox wait as they say.
pub fn start(stage: &str) -> eyre::Result<(DoraNode, Inbox, crate::settings::Settings)> {
    let (node, mut inbox) = connect(stage)?;
    let outputs: Vec<String> = node
        .node_config()
        .outputs
        .iter()
        .map(|o| o.to_string())
        .collect();
    let inputs = inbox.input_ids();
    let problems = crate::registry::wiring_problems(
        stage,
        &inputs.iter().map(String::as_str).collect::<Vec<_>>(),
        &outputs.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    if !problems.is_empty() {
        eyre::bail!(
            "the graph wires this node wrongly: it {}",
            problems.join("; it ")
        );
    }
    let settings = crate::settings::Settings::from_env()?;
    inbox.configure(&settings);
    Ok((node, inbox, settings))
}

/// One event, as stages need it.
#[derive(Debug)]
pub enum Next {
    Input {
        id: String,
        data: arrow::array::ArrayRef,
    },
    /// The stage feeding this input ended.
    Closed { id: String },
    /// A stage this one receives from exited with an error (or was killed).
    PeerFailed { node: String, error: String },
    /// dora asks the stage to stop (every input closed, or `dora stop`).
    Stop,
    /// Nothing came for `resend_after_s` while the stage waits for a reply: time to ask again.
    Silence,
}

/// The events of a stage, received with bounds (see the module documentation).
pub struct Inbox {
    events: EventStream,
    /// Input id → the `node/output` feeding it.
    sources: BTreeMap<String, String>,
    limit: Duration,
    resend: Duration,
    parent: u32,
    /// When the last event arrived (or the last [`Next::Silence`] was given).
    quiet_since: Instant,
}

impl Inbox {
    /// The inbox of `node` (from [`connect`]), waiting as `settings` say.
    pub fn new(node: &DoraNode, events: EventStream, settings: &crate::settings::Settings) -> Self {
        let sources = node
            .node_config()
            .inputs
            .iter()
            .map(|(id, input)| (id.to_string(), input.mapping.to_string()))
            .collect();
        Self::with_inputs(events, settings, sources)
    }

    /// An inbox whose inputs (input id → `node/output`) are given rather than read from the
    /// node's configuration: node-level tests run stages on `DoraNode::init_testing`, whose
    /// configuration declares no inputs.
    pub fn with_inputs(
        events: EventStream,
        settings: &crate::settings::Settings,
        sources: BTreeMap<String, String>,
    ) -> Self {
        Inbox {
            events,
            sources,
            limit: settings.wait_limit(),
            resend: settings.resend_limit(),
            parent: std::os::unix::process::parent_id(),
            quiet_since: Instant::now(),
        }
    }

    /// Waits as `settings` say: `wait_timeout_s` before giving up, `resend_after_s` of silence
    /// before asking again.
    pub fn configure(&mut self, settings: &crate::settings::Settings) {
        self.limit = settings.wait_limit();
        self.resend = settings.resend_limit();
    }

    /// The node feeding input `id` (`tile-ingest` for `tile-ingest/lr`).
    pub fn source_of(&self, id: &str) -> String {
        self.sources
            .get(id)
            .map(|m| m.split('/').next().unwrap_or(m).to_owned())
            .unwrap_or_else(|| format!("the stage wired to `{id}`"))
    }

    /// The `node/output` wired to input `id` (empty for an input the node does not have).
    pub fn mapping_of(&self, id: &str) -> String {
        self.sources.get(id).cloned().unwrap_or_default()
    }

    /// The ids of this node's inputs.
    pub fn input_ids(&self) -> Vec<String> {
        self.sources.keys().cloned().collect()
    }

    /// The next event. `waiting` names what the stage waits for, when it waits for something it
    /// asked for (`batch 12 of 73 from unet-infer`); the wait then ends with an error after
    /// `wait_timeout_s`. `None` means the stage is idle and may wait as long as its peers live.
    pub fn next(&mut self, waiting: Option<&str>) -> eyre::Result<Next> {
        let started = Instant::now();
        loop {
            let Some(event) = self.events.recv_timeout(TICK) else {
                return Ok(Next::Stop);
            };
            if !matches!(&event, Event::Error(m) if m.contains("timed out")) {
                self.quiet_since = Instant::now();
            }
            match event {
                Event::Input { id, data, .. } => {
                    return Ok(Next::Input {
                        id: id.to_string(),
                        data: data.as_array().clone(),
                    })
                }
                Event::InputClosed { id } => return Ok(Next::Closed { id: id.to_string() }),
                Event::NodeFailed {
                    source_node_id,
                    error,
                    ..
                } => {
                    return Ok(Next::PeerFailed {
                        node: source_node_id.to_string(),
                        error: first_meaningful_line(&error),
                    })
                }
                Event::Stop(_) => return Ok(Next::Stop),
                Event::Error(msg) if msg.contains("timed out") => {
                    if std::os::unix::process::parent_id() != self.parent {
                        eyre::bail!("the dora daemon that started this stage is gone; stopping");
                    }
                    if let Some(what) = waiting {
                        if started.elapsed() >= self.limit {
                            eyre::bail!(
                                "waited {} s for {what} and nothing came, asking again every {} s; the stage that sends it may be stuck, or dora lost messages (settings `wait_timeout_s`, `resend_after_s`)",
                                self.limit.as_secs(),
                                self.resend.as_secs()
                            );
                        }
                        if self.quiet_since.elapsed() >= self.resend {
                            self.quiet_since = Instant::now();
                            tracing::warn!(waiting = what, "nothing came; asking again");
                            return Ok(Next::Silence);
                        }
                    }
                }
                Event::Error(msg) => {
                    eyre::bail!(
                        "lost the connection to the dora daemon ({})",
                        first_meaningful_line(&msg)
                    )
                }
                _ => {}
            }
        }
    }
}

/// The line of dora's error text that says what happened (its node errors carry the failed
/// node's whole stderr).
fn first_meaningful_line(text: &str) -> String {
    // The failed node's own one-line error, if it printed one.
    if let Some(line) = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with("Error: "))
    {
        return line.trim_start().trim_start_matches("Error: ").to_owned();
    }
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("---"))
        .unwrap_or(text)
        .trim_end_matches(" with stderr output:")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_joins_causes_once() {
        let e = eyre::eyre!("No space left on device").wrap_err("geotiff-writer: /out/sr.tif");
        assert_eq!(
            one_line("geotiff-writer", &e),
            "geotiff-writer: /out/sr.tif: No space left on device"
        );
        let e = eyre::eyre!("raster x.tif: no such file");
        assert_eq!(
            one_line("tile-ingest", &e),
            "tile-ingest: raster x.tif: no such file"
        );
    }

    #[test]
    fn peer_errors_are_cut_to_their_sentence() {
        let stderr = "exited with code 1 with stderr output:\n----\nError: unet-infer: model.onnx: not an ONNX model\n----";
        assert_eq!(
            first_meaningful_line(stderr),
            "unet-infer: model.onnx: not an ONNX model"
        );
        assert_eq!(
            first_meaningful_line("exited because of signal SIGKILL"),
            "exited because of signal SIGKILL"
        );
    }
}
