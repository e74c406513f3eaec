//! Osprey: a stream processing engine for telemetry analytics.
//!
//! The pipeline, one module per stage:
//!
//! ```text
//! source ──► decode ──► time (watermarks, windows) ──► exec (windowed SQL) ──► sink
//! ```
//!
//! [`pipeline::Pipeline`] wires the stages for one job; [`job::Job`] is a validated job file.

pub mod alert;
pub mod anomaly;
pub mod checkpoint;
pub mod decode;
pub mod exec;
pub mod fleet;
pub mod history;
pub mod invariant;
pub mod job;
pub mod kind;
pub mod kafka;
pub mod log;
pub mod metrics;
pub mod output;
pub mod pipeline;
pub mod plan;
pub mod progress;
pub mod query;
pub mod server;
pub mod shuffle;
pub mod sink;
pub mod slo;
pub mod source;
pub mod jobfile;
pub mod state;
pub mod time;

/// Milliseconds since the Unix epoch, the unit of every event time in the engine.
pub type Millis = i64;
