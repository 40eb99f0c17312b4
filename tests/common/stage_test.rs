//! Node-level tests without a daemon: a stage's loop runs on recorded inputs through dora's
//! `DoraNode::init_testing` (Arrow batches written as Arrow IPC files, replayed at given times)
//! and its outputs are captured. dora's testing mode declares no inputs, so the wiring the stage
//! would see (input id → `node/output`) is given to its inbox here.
#![allow(dead_code)]
use dora_node_api::arrow_v59::array::{Array, ArrayRef, StructArray};
use dora_node_api::arrow_v59::ipc::writer::FileWriter;
use dora_node_api::arrow_v59::record_batch::RecordBatch;
use dora_node_api::dora_core::config::DataId;
use dora_node_api::integration_testing::integration_testing_format::{
    IncomingEvent, InputData, TimedIncomingEvent,
};
use dora_node_api::integration_testing::{
    drain_outputs, output_channel, IntegrationTestInput, OutputJson, TestingInput, TestingOptions,
    TestingOutput,
};
use dora_node_api::DoraNode;
use geosr::node::Inbox;
use geosr::settings::Settings;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Inputs to replay into a stage.
pub struct Recording {
    dir: PathBuf,
    events: Vec<TimedIncomingEvent>,
}

impl Recording {
    pub fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        Recording {
            dir: dir.to_path_buf(),
            events: Vec::new(),
        }
    }

    /// `array` (a struct array: a tile, score or request batch) arrives on `input` at `t` s.
    pub fn input(&mut self, t: f64, input: &str, array: ArrayRef) -> &mut Self {
        let s = array
            .as_any()
            .downcast_ref::<StructArray>()
            .expect("geosr messages are struct arrays")
            .clone();
        let batch = RecordBatch::from(s);
        let path = self.dir.join(format!("input-{}.arrow", self.events.len()));
        let mut w =
            FileWriter::try_new(std::fs::File::create(&path).unwrap(), &batch.schema()).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
        self.events.push(TimedIncomingEvent {
            time_offset_secs: t,
            event: IncomingEvent::Input {
                id: DataId::from(input.to_owned()),
                metadata: None,
                data: Some(Box::new(InputData::ArrowFile {
                    path,
                    batch_index: 0,
                    column: None,
                })),
            },
        });
        self
    }

    /// Input `input` closes at `t` s.
    pub fn closed(&mut self, t: f64, input: &str) -> &mut Self {
        self.events.push(TimedIncomingEvent {
            time_offset_secs: t,
            event: IncomingEvent::InputClosed {
                id: DataId::from(input.to_owned()),
            },
        });
        self
    }

    /// Runs `stage` on the recording with inputs wired as `wiring` (input id, `node/output`);
    /// returns its result and every output it sent (`id`, `data` as JSON).
    pub fn run(
        &mut self,
        wiring: &[(&str, &str)],
        settings: &Settings,
        stage: impl FnOnce(DoraNode, Inbox) -> eyre::Result<()>,
    ) -> (eyre::Result<()>, Vec<OutputJson>) {
        let input = IntegrationTestInput::new(
            "stage-under-test".parse().unwrap(),
            std::mem::take(&mut self.events),
        );
        let (tx, mut rx) = output_channel();
        let (node, events) = DoraNode::init_testing(
            TestingInput::Input(input),
            TestingOutput::ToChannel(tx),
            TestingOptions {
                skip_output_time_offsets: true,
            },
        )
        .unwrap();
        let sources: BTreeMap<String, String> = wiring
            .iter()
            .map(|(i, s)| (i.to_string(), s.to_string()))
            .collect();
        let inbox = Inbox::with_inputs(events, settings, sources);
        let result = stage(node, inbox);
        (result, drain_outputs(&mut rx))
    }
}

/// The ids of the outputs, in the order they were sent.
pub fn output_ids(outputs: &[OutputJson]) -> Vec<String> {
    outputs
        .iter()
        .map(|o| o["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The `(split, index)` of every request among the outputs.
pub fn requests(outputs: &[OutputJson]) -> Vec<(String, u64)> {
    outputs
        .iter()
        .filter(|o| o["id"] == "request")
        .map(|o| {
            let row = &o["data"][0];
            (
                row["split"].as_str().unwrap_or_default().to_owned(),
                row["index"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect()
}

/// The value of column `column` in each row of an output (a struct array, one JSON object a
/// row).
pub fn column(output: &OutputJson, column: &str) -> Vec<serde_json::Value> {
    output["data"]
        .as_array()
        .map(|rows| rows.iter().map(|r| r[column].clone()).collect())
        .unwrap_or_default()
}
