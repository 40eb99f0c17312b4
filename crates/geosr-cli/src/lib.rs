//! The `geosr` command's library parts: the benchmarks ([`bench`]) and the single-process
//! training loop they compare the dataflow with ([`in_process`]).
pub mod bench;
pub mod in_process;
