//! The alert stage: what SLO, invariant and anomaly jobs raise, and where it goes.
//!
//! A job kind's operator turns each evaluation (a fired window, at its end in event time) into
//! [`Observation`]s: the label sets whose condition holds now. The stage runs them through
//! separate steps, each with Alertmanager's meaning of its name:
//!
//! ```text
//! observations ─► lifecycle (pending → firing → resolved; `for`, `keep_firing_for`; dedup)
//!              ─► inhibition (a firing `page` holds back `ticket`s with the same labels)
//!              ─► storm limit (past N firings per interval, one storm alert holds the rest)
//!              ─► destinations (Kafka topic, Alertmanager, file, stdout) and notifications
//!                 (group_by, group_wait, group_interval, repeat_interval)
//! ```
//!
//! Everything runs in event time, so a replay gives the live run's records byte for byte, and
//! every step's state serialises with the job's.

pub mod config;
pub mod dest;
pub mod group;
pub mod inhibit;
pub mod lifecycle;
pub mod stage;
pub mod stats;
pub mod storm;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Millis;

pub use config::AlertsConfig;
pub use stage::AlertStage;

/// The alert record, v1 (`schema/alert-v1.json`): one per transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub fingerprint: String,
    pub status: Status,
    /// Counts this fingerprint's transitions: 1 the first firing, 2 its resolve, 3 ...
    pub sequence: u64,
    pub job: String,
    pub kind: String,
    pub rule: String,
    pub severity: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Event time it fired (RFC 3339, UTC).
    pub starts_at: String,
    /// Event time it resolved; `null` while firing.
    pub ends_at: Option<String>,
    /// The measured value (a number, or an exact decimal as a string).
    pub value: Value,
    pub threshold: Value,
    /// Kind-specific: the key, the computed values, sample records with their positions.
    pub evidence: Value,
    /// Evaluations at which the condition held since it fired (on a resolved record: all of
    /// them). What dedup saved is `evaluations - 1` per firing.
    pub evaluations: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Firing,
    Resolved,
}

/// One label set whose condition holds at an evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "Shown")]
pub struct Observation {
    pub rule: String,
    pub severity: String,
    /// Without `alertname` and `severity`: the stage adds them. Shared, so an evaluator that
    /// raises the same label set at every evaluation (an SLO's burning series) builds it once.
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub value: Value,
    pub threshold: Value,
    pub evidence: Value,
    /// Set: `annotations`, `value`, `threshold` and `evidence` are built by it when a record
    /// or a checkpoint shows them ([`Observation::shown`]). An SLO's burning series hold at
    /// every pane, and the stage keeps only the last observation of each: most of those
    /// texts would be built to be thrown away.
    #[serde(skip)]
    pub deferred: Option<Deferred>,
    /// `fingerprint_of(job, rule, labels)`, when the evaluator keeps it (`None`: the stage
    /// computes it).
    #[serde(skip)]
    pub fingerprint: Option<u64>,
}

/// An observation's labels (see [`Observation::labels`]).
pub type Labels = std::sync::Arc<BTreeMap<String, String>>;

/// The texts of an observation, built on demand (see [`Observation::deferred`]).
#[derive(Clone)]
pub struct Deferred(pub std::sync::Arc<dyn Fn() -> Details + Send + Sync>);

/// What a [`Deferred`] builds.
pub struct Details {
    pub annotations: BTreeMap<String, String>,
    pub value: Value,
    pub threshold: Value,
    pub evidence: Value,
}

impl std::fmt::Debug for Deferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Deferred")
    }
}

impl PartialEq for Deferred {
    fn eq(&self, other: &Deferred) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Observation {
    /// The observation with its texts built (itself when they were not deferred).
    pub fn shown(&self) -> std::borrow::Cow<'_, Observation> {
        match &self.deferred {
            None => std::borrow::Cow::Borrowed(self),
            Some(d) => {
                let Details { annotations, value, threshold, evidence } = (d.0)();
                std::borrow::Cow::Owned(Observation {
                    deferred: None,
                    fingerprint: self.fingerprint,
                    rule: self.rule.clone(),
                    severity: self.severity.clone(),
                    labels: self.labels.clone(),
                    annotations,
                    value,
                    threshold,
                    evidence,
                })
            }
        }
    }
}

/// An observation as checkpoints (and every other serialisation) hold it: texts built.
#[derive(Serialize)]
struct Shown {
    rule: String,
    severity: String,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    value: Value,
    threshold: Value,
    evidence: Value,
}

impl From<Observation> for Shown {
    fn from(o: Observation) -> Shown {
        let o = o.shown().into_owned();
        Shown { rule: o.rule, severity: o.severity, labels: std::sync::Arc::unwrap_or_clone(o.labels), annotations: o.annotations, value: o.value, threshold: o.threshold, evidence: o.evidence }
    }
}

/// One evaluation of an alerting job: a fired window and its SQL result.
pub struct Evaluation<'a> {
    pub window_start: Millis,
    pub window_end: Millis,
    /// The SQL's result rows.
    pub rows: &'a [datafusion::arrow::record_batch::RecordBatch],
    /// The window's decoded input rows (with `_partition`, `_offset`), for evidence.
    pub input: &'a [datafusion::arrow::record_batch::RecordBatch],
    /// Source partition names (file, or topic/partition), by `_partition`.
    pub partition_names: &'a [String],
    /// The window fired before: a late record within the allowed lateness updated it.
    pub update: bool,
    /// `rows` are only the groups that changed (a cumulative window): the others hold as
    /// before; `dropped` are the rows of groups dropped after `ttl` (they no longer hold).
    pub changes_only: bool,
    pub dropped: &'a [datafusion::arrow::record_batch::RecordBatch],
    /// Someone reads the evaluator's rows (`--rows`); otherwise it need not build them.
    pub want_rows: bool,
    /// The input ended: event time reached the newest event and goes no further.
    pub end_of_input: bool,
}

/// What an evaluator made of one fired window.
#[derive(Debug, Default)]
pub struct Verdicts {
    /// Evaluations in event-time order. A fired window may hold none (a late update), one, or
    /// several (an SLO evaluates every pane end, also empty ones).
    pub evaluations: Vec<(Millis, Holding)>,
    /// The evaluator's own rows, in [`Evaluator::rows_schema`]; `None`: the SQL's rows.
    pub rows: Option<Vec<datafusion::arrow::record_batch::RecordBatch>>,
}

/// A problem with one key of a job kind's table (`[invariant] value`, `[anomaly] series`),
/// found once the SQL's result columns are known; the job names the line of `key`.
#[derive(Debug)]
pub struct KeyError {
    pub key: &'static str,
    pub message: String,
}

/// The index of the result column `name`, or an error for `key` listing the columns.
pub fn result_column(output: &datafusion::arrow::datatypes::Schema, name: &str, key: &'static str) -> Result<usize, KeyError> {
    output.index_of(name).map_err(|_| KeyError {
        key,
        message: format!(
            "`{name}` is not a column of the SQL result (its columns: {})",
            output.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
        ),
    })
}

/// What one evaluation says.
#[derive(Debug)]
pub enum Holding {
    /// The label sets whose condition holds; every other alert of the job is clear.
    All(Vec<Observation>),
    /// Only changes: these hold now, these (rule, labels) are clear now, the rest as before.
    /// `cleared`: fingerprints ([`fingerprint_of`]) of alerts that no longer hold.
    Changes { holding: Vec<Observation>, cleared: Vec<u64> },
}

impl Verdicts {
    /// One full evaluation at `t`.
    pub fn one(t: Millis, holding: Vec<Observation>) -> Verdicts {
        Verdicts { evaluations: vec![(t, Holding::All(holding))], rows: None }
    }
}

/// A job kind that raises alerts: turns each evaluation into the label sets that hold.
pub trait Evaluator: Send {
    fn kind(&self) -> &'static str;
    fn evaluate(&mut self, e: &Evaluation) -> anyhow::Result<Verdicts>;
    /// The columns of the evaluator's own rows, when it makes them (SLO burn rates).
    fn rows_schema(&self) -> Option<datafusion::arrow::datatypes::SchemaRef> {
        None
    }
    /// Counters for the run's summary and `/metrics`.
    fn stats(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
    /// The evaluator's state for a checkpoint (empty: it keeps none between windows). An
    /// evaluator whose state is one serialisable value writes these with `state_in_checkpoints!()`.
    fn save_state(&self) -> anyhow::Result<Vec<u8>> {
        Ok(Vec::new())
    }

    /// Continue from the bytes of [`Evaluator::save_state`].
    fn load_state(&mut self, _state: &[u8]) -> anyhow::Result<()> {
        Ok(())
    }

    /// Event time has passed `until` (every event before it was in a window this job fired)
    /// though none of its windows reached it: a live stream gone quiet while its watermark
    /// moved, or a second stage whose records went to other processes. An evaluator whose
    /// verdicts change with time alone (deadline timers, SLO windows sliding on) gives them
    /// now, not at its next window, with the event times they would have had then. Its rows,
    /// if any, are in [`Evaluator::rows_schema`]. Replays never call it: their windows decide.
    fn time_passes(&mut self, _until: Millis, _partition_names: &[String], _want_rows: bool) -> anyhow::Result<Verdicts> {
        Ok(Verdicts::default())
    }

    /// Whether it reads the SQL's rows; one that reads only the window's events (deadlines)
    /// spares the SQL when nobody reads the rows either.
    fn needs_rows(&self) -> bool {
        true
    }
}

/// `save_state` and `load_state` of an [`Evaluator`] whose whole state is the value its
/// `state()` returns and its `restore()` takes: written inside its `impl Evaluator`.
macro_rules! state_in_checkpoints {
    () => {
        fn save_state(&self) -> anyhow::Result<Vec<u8>> {
            crate::state::to_bytes(self.state())
        }

        fn load_state(&mut self, state: &[u8]) -> anyhow::Result<()> {
            self.restore(crate::state::from_bytes(state)?);
            Ok(())
        }
    };
}
pub(crate) use state_in_checkpoints;

/// The stable identity of an alert: job, rule and labels (sorted), hashed (FNV-1a, 64 bits)
/// into 16 hex digits. The same on every machine and in every version of the record.
pub fn fingerprint(job: &str, rule: &str, labels: &BTreeMap<String, String>) -> String {
    fingerprint_hex(fingerprint_of(job, rule, labels))
}

/// The fingerprint as a number: what the alert stage keys its alerts by inside (no string
/// built per observation); [`fingerprint_hex`] is its text in records.
pub fn fingerprint_of(job: &str, rule: &str, labels: &BTreeMap<String, String>) -> u64 {
    let mut f = Fingerprinter::new(job, rule);
    for (k, v) in labels {
        f.label(k, v);
    }
    f.finish()
}

/// [`fingerprint_of`] label by label, for labels at hand in name order without a map (an
/// evaluator saying which of many rows no longer hold).
pub struct Fingerprinter(u64);

impl Fingerprinter {
    pub fn new(job: &str, rule: &str) -> Fingerprinter {
        let mut f = Fingerprinter(0xcbf2_9ce4_8422_2325);
        f.eat(job.as_bytes());
        f.eat(rule.as_bytes());
        f
    }

    /// The next label, in name order.
    pub fn label(&mut self, name: &str, value: &str) {
        self.eat(name.as_bytes());
        self.eat(value.as_bytes());
    }

    pub fn finish(&self) -> u64 {
        self.0
    }

    fn eat(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        for b in bytes {
            h ^= *b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff; // a separator no UTF-8 text contains
        self.0 = h.wrapping_mul(0x0100_0000_01b3);
    }
}

/// A fingerprint's text: 16 lower-case hex digits (so text order is number order).
pub fn fingerprint_hex(fp: u64) -> String {
    format!("{fp:016x}")
}

/// An event time as RFC 3339 in UTC with `Z`; milliseconds only when not zero.
pub fn rfc3339(t: Millis) -> String {
    match chrono::DateTime::from_timestamp_millis(t) {
        Some(d) if t % 1000 == 0 => d.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Some(d) => d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        None => t.to_string(),
    }
}

/// Epoch milliseconds of an RFC 3339 time written by [`rfc3339`].
pub fn parse_time(text: &str) -> Option<Millis> {
    chrono::DateTime::parse_from_rfc3339(text).ok().map(|d| d.timestamp_millis())
}

/// An observation for the stage's tests: rule, severity, labels; value 1 over threshold 0.
#[cfg(test)]
pub(crate) fn observation(rule: &str, severity: &str, labels: &[(&str, &str)]) -> Observation {
    Observation {
        deferred: None,
        fingerprint: None,
        rule: rule.into(),
        severity: severity.into(),
        labels: Labels::new(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
        annotations: Default::default(),
        value: 1.into(),
        threshold: 0.into(),
        evidence: Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_stable_and_tell_labels_apart() {
        let labels = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let a = fingerprint("job", "rule", &labels(&[("service", "api")]));
        assert_eq!(a, fingerprint("job", "rule", &labels(&[("service", "api")])));
        assert_eq!(a.len(), 16);
        assert_ne!(a, fingerprint("job", "rule", &labels(&[("service", "web")])));
        assert_ne!(a, fingerprint("job", "rule2", &labels(&[("service", "api")])));
        // Concatenation cannot collide: ("ab","c") is not ("a","bc").
        assert_ne!(fingerprint("j", "r", &labels(&[("ab", "c")])), fingerprint("j", "r", &labels(&[("a", "bc")])));
        // The value users see in records: fixed forever.
        assert_eq!(fingerprint("api", "page", &BTreeMap::new()), fingerprint("api", "page", &BTreeMap::new()));
    }

    #[test]
    fn times_print_fractions_only_when_present() {
        assert_eq!(rfc3339(1_767_603_600_000), "2026-01-05T09:00:00Z");
        assert_eq!(rfc3339(1_767_603_600_250), "2026-01-05T09:00:00.250Z");
        assert_eq!(parse_time("2026-01-05T09:00:00.250Z"), Some(1_767_603_600_250));
    }
}
