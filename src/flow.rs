//! Flow control between stages.
//!
//! dora drops the oldest message of an input whose queue is full, so a fast producer would
//! silently lose tiles. Every consumer of tile batches therefore *asks* for them: it sends a
//! [`Request`] on a request edge back to the producer, which answers with exactly one batch
//! per request. A consumer keeps at most `prefetch` requests outstanding, so queues never
//! fill and no tile is dropped.
//!
//! A request is an Arrow `StructArray` with one row: `split` (Utf8: `train`, `val` or `infer`)
//! and `index` (UInt64: which batch of that split; for `train`, the batch's number counted from
//! the first step of the run, so a resumed run asks for exactly the batches an uninterrupted one
//! would have seen).
//!
//! Replies may arrive in another order than they were asked for: dora 1.1 sends a large message
//! over its daemon instead of shared memory when the sender's shared-memory pool is full, and a
//! message on that path can be overtaken by the next one. [`CreditWindow`] keeps the requests
//! outstanding and hands the replies back in index order.
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
    /// Training batch `index`, counted from the run's first step.
    pub fn train(index: u64) -> Self {
        Request {
            split: Split::Train,
            index,
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

/// The requesting side of the credit flow: asks for batches `0..total` by index with at most
/// `credit` of them outstanding, and hands the replies back in index order whatever order they
/// arrive in. The first request is for index 0 alone; its reply tells how many batches there are.
///
/// ```
/// use geosr::flow::CreditWindow;
/// let mut w = CreditWindow::new(2);
/// assert_eq!(w.to_request(), vec![0]);
/// w.receive(0, 3, "a").unwrap();
/// assert_eq!(w.next_ready(), Some("a"));
/// assert_eq!(w.to_request(), vec![1, 2]);
/// w.receive(2, 3, "c").unwrap(); // overtook batch 1
/// assert_eq!(w.overtaking(), 1);
/// assert_eq!(w.next_ready(), None);
/// w.receive(1, 3, "b").unwrap();
/// assert_eq!((w.next_ready(), w.next_ready()), (Some("b"), Some("c")));
/// assert!(w.done());
/// ```
#[derive(Debug)]
pub struct CreditWindow<T> {
    credit: u64,
    total: Option<u64>,
    requested: u64,
    delivered: u64,
    held: std::collections::BTreeMap<u64, T>,
    overtaking: u64,
    duplicates: u64,
}

impl<T> CreditWindow<T> {
    /// A window of `credit` requests in flight (at least one).
    pub fn new(credit: u64) -> Self {
        CreditWindow {
            credit: credit.max(1),
            total: None,
            requested: 0,
            delivered: 0,
            held: Default::default(),
            overtaking: 0,
            duplicates: 0,
        }
    }

    /// The indices to ask for now; they count as requested from here on.
    pub fn to_request(&mut self) -> Vec<u64> {
        let end = match self.total {
            None if self.requested == 0 => 1,
            None => self.requested,
            Some(n) => n.min(self.delivered + self.credit),
        };
        let out: Vec<u64> = (self.requested..end.max(self.requested)).collect();
        self.requested = self.requested.max(end);
        out
    }

    /// Takes the reply to request `index`, of a split of `total` batches. A second reply to the
    /// same request (the request was asked again after a silence, and both answers came) is
    /// dropped: returns whether the reply was new.
    pub fn receive(&mut self, index: u64, total: u64, item: T) -> Result<bool> {
        if let Some(n) = self.total {
            if n != total {
                return Err(Error::Contract(format!(
                    "batch {index} says its split has {total} batches, earlier ones said {n}"
                )));
            }
        }
        if index >= self.requested || index >= total {
            return Err(Error::Contract(format!(
                "batch {index} arrived, but only batches below {} were asked for",
                self.requested.min(total)
            )));
        }
        if index < self.delivered || self.held.contains_key(&index) {
            self.duplicates += 1;
            return Ok(false);
        }
        self.total = Some(total);
        if (self.delivered..index).any(|i| !self.held.contains_key(&i)) {
            self.overtaking += 1;
        }
        self.held.insert(index, item);
        Ok(true)
    }

    /// Whether the reply to `index` was already taken (handed out or held).
    pub fn has(&self, index: u64) -> bool {
        index < self.delivered || self.held.contains_key(&index)
    }

    /// The requests still unanswered, to ask again after a silence.
    pub fn missing(&self) -> Vec<u64> {
        (self.delivered..self.requested)
            .filter(|i| !self.held.contains_key(i))
            .collect()
    }

    /// Second replies dropped so far.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Replies that arrived before one asked for earlier (how often order had to be restored).
    pub fn overtaking(&self) -> u64 {
        self.overtaking
    }

    /// The next reply in index order, if it has arrived.
    pub fn next_ready(&mut self) -> Option<T> {
        let item = self.held.remove(&self.delivered)?;
        self.delivered += 1;
        Some(item)
    }

    /// Replies handed out so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Number of batches, once the first reply told.
    pub fn total(&self) -> Option<u64> {
        self.total
    }

    /// Every batch handed out.
    pub fn done(&self) -> bool {
        self.total == Some(self.delivered)
    }

    /// `delivered of total` for messages (`of ?` before the first reply).
    pub fn progress(&self) -> String {
        match self.total {
            Some(n) => format!("{} of {n}", self.delivered),
            None => format!("{} of ?", self.delivered),
        }
    }
}

/// Joins the messages that belong together — the halves of a batch that arrive on different
/// inputs — by key, whatever order they arrive in. A key is complete when every part named at
/// construction is in; at most `bound` keys may wait for parts, so a part that never comes is
/// an error rather than memory that grows.
///
/// ```
/// use geosr::flow::Join;
/// let mut j = Join::new(&["hr", "pred"], 8);
/// assert!(j.insert(3, "pred", "p3").unwrap().is_none());
/// let whole = j.insert(3, "hr", "h3").unwrap().unwrap();
/// assert_eq!((whole["hr"], whole["pred"]), ("h3", "p3"));
/// assert!(j.insert(3, "loss", "x").is_err()); // not a part of this join
/// ```
#[derive(Debug)]
pub struct Join<T> {
    parts: Vec<String>,
    bound: usize,
    waiting: std::collections::BTreeMap<u64, std::collections::BTreeMap<String, T>>,
}

impl<T> Join<T> {
    pub fn new(parts: &[&str], bound: usize) -> Self {
        Join {
            parts: parts.iter().map(|p| p.to_string()).collect(),
            bound: bound.max(1),
            waiting: Default::default(),
        }
    }

    /// Adds part `part` of `key` (a second copy of a part replaces the first); returns every
    /// part of the key once all are in.
    pub fn insert(
        &mut self,
        key: u64,
        part: &str,
        value: T,
    ) -> Result<Option<std::collections::BTreeMap<String, T>>> {
        if !self.parts.iter().any(|p| p == part) {
            return Err(Error::Contract(format!(
                "`{part}` is not one of the parts joined here ({})",
                self.parts.join(", ")
            )));
        }
        let entry = self.waiting.entry(key).or_default();
        entry.insert(part.to_owned(), value);
        if entry.len() == self.parts.len() {
            return Ok(self.waiting.remove(&key));
        }
        if self.waiting.len() > self.bound {
            let (k, missing) = self.oldest_missing().expect("not empty");
            return Err(Error::Contract(format!(
                "{} batches wait for their other parts (batch {k} for {}); a stage is not sending them, check the graph's wiring",
                self.waiting.len(),
                missing.join(", ")
            )));
        }
        Ok(None)
    }

    /// Forgets every key below `key` (parts that are no longer needed).
    pub fn forget_below(&mut self, key: u64) {
        self.waiting = self.waiting.split_off(&key);
    }

    /// Whether `key` has part `part` waiting.
    pub fn has(&self, key: u64, part: &str) -> bool {
        self.waiting.get(&key).is_some_and(|p| p.contains_key(part))
    }

    /// The oldest waiting key and the parts it still misses.
    pub fn oldest_missing(&self) -> Option<(u64, Vec<String>)> {
        let (k, have) = self.waiting.iter().next()?;
        let missing = self
            .parts
            .iter()
            .filter(|p| !have.contains_key(*p))
            .cloned()
            .collect();
        Some((*k, missing))
    }

    /// The oldest key that waits for part `part` (it has others).
    pub fn first_missing(&self, part: &str) -> Option<u64> {
        self.waiting
            .iter()
            .find(|(_, have)| !have.contains_key(part))
            .map(|(k, _)| *k)
    }

    /// Keys waiting for parts.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

/// The share of a flow's batches that one of several parallel workers takes: batch `i` goes to
/// worker `i mod count`. Every worker sees every request's batch (dora sends an output to every
/// input wired to it) and answers only its own, so no batch is lost or done twice whatever the
/// number of workers, and a batch asked for again is answered again by the same worker.
///
/// ```
/// use geosr::flow::Share;
/// let second = Share::new(1, 2).unwrap();
/// assert!(!second.takes(0) && second.takes(1) && second.takes(3));
/// assert!(Share::ALL.takes(7));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    pub index: u64,
    pub count: u64,
}

impl Share {
    /// One worker: every batch.
    pub const ALL: Share = Share { index: 0, count: 1 };

    pub fn new(index: u64, count: u64) -> Option<Self> {
        (index < count).then_some(Share { index, count })
    }

    /// Whether batch `index` is this worker's.
    pub fn takes(&self, index: u64) -> bool {
        index % self.count == self.index
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
        crate::atomic::write_atomic(
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
    fn credit_window_keeps_credit_and_refuses_strays() {
        let mut w = CreditWindow::new(3);
        assert_eq!(w.to_request(), vec![0]);
        assert_eq!(
            w.to_request(),
            Vec::<u64>::new(),
            "nothing more before the first reply"
        );
        w.receive(0, 10, 0).unwrap();
        assert_eq!(w.next_ready(), Some(0));
        assert_eq!(w.to_request(), vec![1, 2, 3]);
        assert!(w.receive(5, 10, 5).is_err(), "never asked for");
        assert!(w.receive(1, 11, 1).is_err(), "total changed");
        assert!(w.receive(3, 10, 3).unwrap());
        assert!(!w.receive(3, 10, 3).unwrap(), "a second reply is dropped");
        assert_eq!(w.missing(), vec![1, 2]);
        assert_eq!(w.to_request(), Vec::<u64>::new(), "3 outstanding, credit 3");
        w.receive(1, 10, 1).unwrap();
        assert_eq!(w.next_ready(), Some(1));
        assert_eq!(w.next_ready(), None, "2 still missing");
        assert_eq!(w.to_request(), vec![4]);
        assert!(!w.receive(0, 10, 0).unwrap(), "already delivered");
        assert_eq!((w.duplicates(), w.progress()), (2, "2 of 10".to_owned()));
    }

    #[test]
    fn join_bounds_what_waits() {
        let mut j = Join::new(&["lr", "hr"], 2);
        for k in 0..2 {
            assert!(j.insert(k, "lr", k).unwrap().is_none());
        }
        assert_eq!(j.oldest_missing(), Some((0, vec!["hr".to_owned()])));
        let err = j.insert(2, "lr", 2).unwrap_err().to_string();
        assert!(err.contains("batch 0 for hr"), "{err}");
        j.forget_below(2);
        assert_eq!(j.waiting(), 1);
        assert!(j.has(2, "lr") && !j.has(2, "hr"));
        assert_eq!(j.insert(2, "hr", 20).unwrap().unwrap()["hr"], 20);
        assert_eq!(j.waiting(), 0);
    }

    #[test]
    fn request_round_trip() {
        for r in [Request::train(4), Request::val(12)] {
            assert_eq!(Request::from_arrow(&r.to_arrow()).unwrap(), r);
        }
        assert!(Request::from_arrow(&UInt64Array::from(vec![1u64])).is_err());
    }
}
