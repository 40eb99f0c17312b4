//! Running graphs through real dora daemons, for the integration tests: a daemon for the test
//! (or a whole cluster of its own), `dora start` with a time limit, settings files.
#![allow(dead_code)]
use super::common::root;
use geosr::card::ModelCard;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn dora_bin() -> PathBuf {
    let p = root().join(".venv/bin/dora");
    assert!(p.is_file(), "{} missing: run scripts/setup", p.display());
    p
}

/// Brings a coordinator and daemon up for the test and down again afterwards, unless one was
/// already running.
pub struct Daemon {
    started: bool,
}

impl Daemon {
    pub fn up() -> Self {
        let running = dora(&["list"]).status.success();
        if !running {
            let out = dora(&["up"]);
            assert!(
                out.status.success(),
                "dora up failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Daemon { started: !running }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.started {
            let _ = dora(&["down"]);
        }
    }
}

pub fn dora(args: &[&str]) -> std::process::Output {
    let path = format!(
        "{}:{}",
        root().join(".venv/bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new(dora_bin())
        .args(args)
        .current_dir(root())
        .env("PATH", path)
        .output()
        .expect("dora runs")
}

/// Runs `dora start <graph> --attach` with a settings file; returns success and all output.
pub fn run_graph(graph: &str, settings: &Path) -> (bool, String) {
    run_graph_with(graph, settings, &[], 300)
}

/// [`run_graph`] with more `dora start` arguments and a time limit, after which the run fails.
pub fn run_graph_with(
    graph: &str,
    settings: &Path,
    extra: &[&str],
    limit_s: u64,
) -> (bool, String) {
    let path = format!(
        "{}:{}",
        root().join(".venv/bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let log = settings.with_extension("log");
    let mut child = Command::new(dora_bin())
        .args(["start", graph, "--attach"])
        .args(extra)
        .arg("--env")
        .arg(format!("GEOSR_SETTINGS={}", settings.display()))
        .current_dir(root())
        .env("PATH", path)
        .env("RUST_BACKTRACE", "0")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::from(
            std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
        ))
        .spawn()
        .expect("dora start runs");
    let deadline = Instant::now() + Duration::from_secs(limit_s);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "{graph} did not finish within {limit_s} s; log: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    (
        status.success(),
        std::fs::read_to_string(&log).unwrap_or_default(),
    )
}

pub fn write_settings(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(format!("{name}.yml"));
    std::fs::write(&p, body).unwrap();
    p
}

/// Small but complete: 2x, a one-level U-Net, VGG up to relu1_2, a few steps.
pub fn tiny(input: &Path, run: &Path, extra: &str) -> String {
    format!(
        "input: {}\nrun_dir: {}\nchip_size: 32\nfactor: 2\nunet_depth: 1\nunet_width: 8\nbatch_size: 4\nval_split_pct: 25\nvgg_layers: relu1_2\nfeature_weight: 1.0e-6\nthreads: 1\n{extra}",
        input.display(),
        run.display()
    )
}

pub fn card(run: &Path) -> ModelCard {
    serde_json::from_str(&std::fs::read_to_string(run.join("model.json")).unwrap()).unwrap()
}

/// A free TCP port on loopback (the OS picks it; the listener is closed again at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A coordinator and two daemons of its own on loopback, apart from any other cluster: ports
/// picked free for this cluster alone, machine ids of its own (a daemon left over from an earlier
/// cluster can never stand in for one of these), and the two daemons linked by explicit zenoh
/// endpoints with multicast scouting off, so nothing depends on discovery.
pub struct Cluster {
    pub children: Vec<std::process::Child>,
    pub port: String,
    pub machines: [String; 2],
}

impl Cluster {
    pub fn start(dir: &Path) -> Self {
        let path = format!(
            "{}:{}",
            root().join(".venv/bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let spawn = |args: &[String], cwd: &Path, log: &str| {
            std::fs::create_dir_all(cwd).unwrap();
            Command::new(dora_bin())
                .args(args)
                .current_dir(cwd)
                .env("PATH", &path)
                .env("DORA_WORKSPACE", root())
                .stdout(std::fs::File::create(dir.join(log)).unwrap())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        };
        let port = free_port().to_string();
        let id = format!("{}-{}", std::process::id(), free_port());
        let machines = [format!("cpu-{id}"), format!("gpu-{id}")];
        let mut cluster = Cluster {
            children: vec![],
            port: port.clone(),
            machines: machines.clone(),
        };
        let s = |v: &str| v.to_owned();
        cluster.children.push(spawn(
            &[
                s("coordinator"),
                s("--port"),
                port.clone(),
                s("--store"),
                s("memory"),
            ],
            dir,
            "coordinator.log",
        ));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).is_err() {
            assert!(
                Instant::now() < deadline,
                "the coordinator did not open port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let zenoh = [free_port(), free_port()];
        for (i, m) in machines.iter().enumerate() {
            cluster.children.push(spawn(
                &[
                    s("daemon"),
                    s("--machine-id"),
                    m.clone(),
                    s("--coordinator-port"),
                    port.clone(),
                    s("--local-listen-port"),
                    free_port().to_string(),
                    s("--zenoh-no-multicast"),
                    s("--zenoh-listen"),
                    format!("127.0.0.1:{}", zenoh[i]),
                    s("--zenoh-connect"),
                    format!("tcp/127.0.0.1:{}", zenoh[1 - i]),
                ],
                &dir.join(m),
                &format!("daemon-{i}.log"),
            ));
        }
        // Both daemons registered: `dora list` against this coordinator answers, and a start
        // before both are in would find no machine of that name.
        std::thread::sleep(Duration::from_secs(3));
        cluster
    }

    /// graphs/train-two-machines.yml with this cluster's machine ids, written into `dir`.
    pub fn graph(&self, dir: &Path) -> PathBuf {
        self.graph_named(dir, "train-two-machines.yml")
    }

    /// `graphs/<name>` with its `cpu` and `gpu` machines renamed to this cluster's.
    pub fn graph_named(&self, dir: &Path, name: &str) -> PathBuf {
        let text = std::fs::read_to_string(root().join("graphs").join(name)).unwrap();
        let text = text
            .replace("machine: cpu", &format!("machine: {}", self.machines[0]))
            .replace("machine: gpu", &format!("machine: {}", self.machines[1]));
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = dora(&["destroy", "--coordinator-port", &self.port]);
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
