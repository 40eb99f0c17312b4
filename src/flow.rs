//! Flow control between stages.
//!
//! dora drops the oldest message of an input whose queue is full, so a fast producer would
//! silently lose tiles. Every consumer of tile batches therefore *asks* for them: it sends a
//! [`Request`] on a request edge back to the producer, which answers with exactly one batch
//! per request. A consumer keeps at most `prefetch` requests outstanding, so queues never
//! fill and no tile is dropped.
//!
//! A request is an Arrow `StructArray` with one row: `split` (Utf8: `train` or `val`) and
//! `index` (UInt64: which validation batch; ignored for `train`, where the producer hands out
//! its next shuffled batch).
use crate::error::{Error, Result};
use crate::tile::Split;
use arrow::array::{Array, ArrayRef, AsArray, StringArray, StructArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Fields, UInt64Type};
use std::sync::Arc;

/// One request for one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub split: Split,
    pub index: u64,
}

impl Request {
    pub fn train() -> Self {
        Request {
            split: Split::Train,
            index: 0,
        }
    }
    pub fn val(index: u64) -> Self {
        Request {
            split: Split::Val,
            index,
        }
    }
    pub fn infer(index: u64) -> Self {
        Request {
            split: Split::Infer,
            index,
        }
    }

    pub fn to_arrow(self) -> ArrayRef {
        let fields = Fields::from(vec![
            Field::new("split", DataType::Utf8, false),
            Field::new("index", DataType::UInt64, false),
        ]);
        Arc::new(
            StructArray::try_new(
                fields,
                vec![
                    Arc::new(StringArray::from(vec![self.split.as_str()])),
                    Arc::new(UInt64Array::from(vec![self.index])),
                ],
                None,
            )
            .expect("request columns match their fields"),
        )
    }

    pub fn from_arrow(array: &dyn Array) -> Result<Self> {
        let bad = || {
            Error::Contract(format!(
                "a request must be Struct<split: Utf8, index: UInt64>, got {}",
                array.data_type()
            ))
        };
        let s = array.as_struct_opt().ok_or_else(bad)?;
        if s.len() != 1 {
            return Err(Error::Contract(format!(
                "a request has one row, got {}",
                s.len()
            )));
        }
        let split = s
            .column_by_name("split")
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or_else(bad)?;
        let index = s
            .column_by_name("index")
            .and_then(|c| c.as_primitive_opt::<UInt64Type>())
            .ok_or_else(bad)?;
        Ok(Request {
            split: Split::parse(split.value(0))?,
            index: index.value(0),
        })
    }
}

/// Batches and tiles counted on each input and output of a stage, written to the run
/// directory so the run summary can check every edge of the graph: what a producer sent on an
/// output equals what each consumer received on the input wired to it.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct TileCounts {
    pub stage: String,
    /// input id → [batches, tiles]
    pub inputs: std::collections::BTreeMap<String, [u64; 2]>,
    /// output id → [batches, tiles]
    pub outputs: std::collections::BTreeMap<String, [u64; 2]>,
}

impl TileCounts {
    pub fn new(stage: &str) -> Self {
        TileCounts {
            stage: stage.to_owned(),
            ..Default::default()
        }
    }
    pub fn count_in(&mut self, input: &str, tiles: usize) {
        let e = self.inputs.entry(input.to_owned()).or_default();
        e[0] += 1;
        e[1] += tiles as u64;
    }
    pub fn count_out(&mut self, output: &str, tiles: usize) {
        let e = self.outputs.entry(output.to_owned()).or_default();
        e[0] += 1;
        e[1] += tiles as u64;
    }
    /// Writes `counts/<stage>.json` under the run directory.
    pub fn write(&self, run_dir: &std::path::Path) -> Result<()> {
        let dir = run_dir.join("counts");
        crate::checkpoint::write_atomic(
            &dir.join(format!("{}.json", self.stage)),
            serde_json::to_string_pretty(self)
                .expect("counts serialise")
                .as_bytes(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn request_round_trip() {
        for r in [Request::train(), Request::val(12)] {
            assert_eq!(Request::from_arrow(&r.to_arrow()).unwrap(), r);
        }
        assert!(Request::from_arrow(&UInt64Array::from(vec![1u64])).is_err());
    }
}
