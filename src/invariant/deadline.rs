//! Deadlines: "every order is resolved within 30 s". An event matching `opens` starts a timer
//! for its key; one matching `closes` before the deadline stops it. When event time passes a
//! deadline with the key still open, the key violates (the alert fires at the deadline), until
//! a closing event arrives (it resolves then).
//!
//! The timers live in the job's state and run in event time, over each fired pane's events in
//! event-time order, so a replay fires them at the same event times as the live run. Each
//! evaluation names only what changed (one key past its deadline, one closed late), so a
//! thousand overdue orders cost nothing per event; `[alerts] for` and `keep_firing_for` do
//! not apply (the deadline is the wait).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use anyhow::Context;
use datafusion::arrow::array::{Array, AsArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::{Int32Type, Int64Type, SchemaRef};
use hashbrown::DefaultHashBuilder;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::{interpolate, row_object, text, InvariantConfig};
use crate::alert::KeyError;
use crate::alert::{rfc3339, Evaluation, Evaluator, Holding, Observation, Verdicts};
use crate::decode::event_times;
use crate::exec::predicate::RowPredicate;
use crate::Millis;

/// `[invariant.deadline]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadlineConfig {
    pub key: Vec<String>,
    pub opens: String,
    pub closes: String,
    pub within: Millis,
    /// As written ("30s"), for summaries and evidence.
    pub within_text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Timer {
    opened_at: Millis,
    deadline: Millis,
    /// The opening event, with its source position.
    record: Opening,
}

/// A timer's opening event. Most timers close in time and never need it as evidence, so it
/// stays Arrow until its deadline passes (or a checkpoint writes it): the pane's openings still
/// open at its end are copied into one small batch, one copy per column, not one JSON object
/// per event. Written and read back as the JSON evidence (the checkpoint's form).
#[derive(Clone)]
enum Opening {
    /// Row `row` of the pane's input batch `batch`, during the evaluation that opened it.
    Pending { batch: usize, row: usize },
    /// Row `row` of a batch of openings, with the source's partition names.
    Row { batch: Arc<RecordBatch>, row: usize, names: Arc<[String]> },
    Json(Value),
}

impl Opening {
    fn json(&self, input: &[RecordBatch], names: &[String]) -> Value {
        match self {
            Opening::Pending { batch, row } => sample(&input[*batch], *row, names),
            Opening::Row { batch, row, names } => sample(batch, *row, names),
            Opening::Json(v) => v.clone(),
        }
    }

    /// Outside an evaluation (a checkpoint, a comparison), where no evaluation is pending.
    fn to_json(&self) -> Value {
        debug_assert!(!matches!(self, Opening::Pending { .. }), "an opening is pending only inside an evaluation");
        self.json(&[], &[])
    }
}

impl PartialEq for Opening {
    fn eq(&self, other: &Opening) -> bool {
        self.to_json() == other.to_json()
    }
}

impl std::fmt::Debug for Opening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.to_json())
    }
}

impl Serialize for Opening {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Opening {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(Opening::Json)
    }
}

/// The timers (checkpointed with the job).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeadlineState {
    /// Hashed, not ordered: every event looks its key up. A checkpoint writes it in key order.
    #[serde(serialize_with = "in_key_order")]
    open: HashMap<Vec<String>, Timer, DefaultHashBuilder>,
    /// The open timers by deadline, so time passing looks only at those due (derived from
    /// `open`, rebuilt on restore). A timer closed in time leaves its entry here, skipped when
    /// due (its key no longer open at that deadline): most close within seconds, and taking
    /// each out of the tree at its closing was a tenth of the job.
    #[serde(skip)]
    by_deadline: std::collections::BTreeSet<(Millis, Vec<String>)>,
    /// Open past their deadline, until a closing event.
    overdue: BTreeMap<Vec<String>, Timer>,
    /// The newest event time seen: at the end of input, time has reached it and no further.
    newest: Option<Millis>,
    pub opened: u64,
    pub peak_open: u64,
    pub closed_in_time: u64,
    pub missed: u64,
}

impl DeadlineState {
    /// `by_deadline` from the open timers alone.
    fn index_deadlines(&mut self) {
        self.by_deadline = self.open.iter().map(|(k, t)| (t.deadline, k.clone())).collect();
    }
}

/// The open timers in key order, as checkpoints wrote them when they were ordered: the same
/// state makes the same bytes.
fn in_key_order<S: serde::Serializer>(open: &HashMap<Vec<String>, Timer, DefaultHashBuilder>, s: S) -> Result<S::Ok, S::Error> {
    open.iter().collect::<BTreeMap<_, _>>().serialize(s)
}

pub struct DeadlineEvaluator {
    job: String,
    invariant: InvariantConfig,
    config: DeadlineConfig,
    opens: RowPredicate,
    closes: RowPredicate,
    key_columns: Vec<usize>,
    event_time: usize,
    state: DeadlineState,
    /// The source's partition names, shared by the openings kept as Arrow.
    names: Option<Arc<[String]>>,
}

impl DeadlineEvaluator {
    /// `input`: the decoded events' schema (declared and metadata columns).
    pub fn new(job: &str, invariant: InvariantConfig, input: &SchemaRef, event_time: usize) -> Result<Self, KeyError> {
        let config = invariant.deadline.clone().expect("a deadline job");
        let key_columns = config
            .key
            .iter()
            .map(|k| {
                input.index_of(k).map_err(|_| KeyError {
                    key: "deadline.key",
                    message: format!("`{k}` is not a declared column (the deadline's key is over the events)"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let predicate = |sql: &str, key: &'static str| {
            RowPredicate::compile(sql, input).map_err(|e| KeyError { key, message: format!("{}", e.to_string().lines().next().unwrap_or("")) })
        };
        let opens = predicate(&config.opens, "deadline.opens")?;
        let closes = predicate(&config.closes, "deadline.closes")?;
        Ok(DeadlineEvaluator { job: job.into(), invariant, config, opens, closes, key_columns, event_time, state: DeadlineState::default(), names: None })
    }

    pub fn state(&self) -> &DeadlineState {
        &self.state
    }

    pub fn restore(&mut self, state: DeadlineState) {
        self.state = state;
        self.state.index_deadlines();
    }

    /// Move every open timer whose deadline is before `t` to overdue, in deadline order: each
    /// fires at its deadline, and its opening event becomes its evidence.
    fn expire_before(&mut self, t: Millis, input: &[RecordBatch], names: &[String], changes: &mut Vec<(Millis, Holding)>) {
        while self.state.by_deadline.first().is_some_and(|(deadline, _)| *deadline < t) {
            let (deadline, k) = self.state.by_deadline.pop_first().expect("checked");
            if self.state.open.get(&k).is_none_or(|timer| timer.deadline != deadline) {
                continue; // closed in time (or closed and opened again since)
            }
            let mut timer = self.state.open.remove(&k).expect("checked");
            timer.record = Opening::Json(timer.record.json(input, names));
            self.state.missed += 1;
            let observation = self.observation(&k, &timer);
            change(changes, deadline).0.push(observation);
            self.state.overdue.insert(k, timer);
        }
    }

    /// The openings of this evaluation still open at its end, copied out of the pane's input
    /// (which is about to be dropped) into one batch per input batch.
    fn keep_openings(&mut self, e: &Evaluation, opened_now: &[Vec<String>]) -> anyhow::Result<()> {
        let mut rows: Vec<Vec<u32>> = vec![Vec::new(); e.input.len()];
        // (key, input batch, its row in the kept batch)
        let mut placed: Vec<(&Vec<String>, usize, usize)> = Vec::new();
        for k in opened_now {
            if let Some(Timer { record: Opening::Pending { batch, row }, .. }) = self.state.open.get(k) {
                placed.push((k, *batch, rows[*batch].len()));
                rows[*batch].push(*row as u32);
            }
        }
        if placed.is_empty() {
            return Ok(());
        }
        if self.names.as_deref() != Some(e.partition_names) {
            self.names = Some(e.partition_names.into());
        }
        let names = self.names.clone().expect("set above");
        let kept: Vec<Option<Arc<RecordBatch>>> = rows
            .into_iter()
            .enumerate()
            .map(|(b, rows)| (!rows.is_empty()).then(|| take_record_batch(&e.input[b], &UInt32Array::from(rows)).map(Arc::new)).transpose())
            .collect::<Result<_, _>>()?;
        for (k, b, at) in placed {
            let timer = self.state.open.get_mut(k).expect("placed while open");
            timer.record = Opening::Row { batch: kept[b].clone().expect("gathered above"), row: at, names: names.clone() };
        }
        debug_assert!(self.state.open.values().all(|t| !matches!(t.record, Opening::Pending { .. })));
        Ok(())
    }

    fn observation(&self, key: &[String], timer: &Timer) -> Observation {
        let labels: BTreeMap<String, String> = self.config.key.iter().cloned().zip(key.iter().cloned()).collect();
        let Opening::Json(record) = &timer.record else { unreachable!("an expired timer's opening is JSON") };
        let mut values: Map<String, Value> = record.get("record").and_then(|r| r.as_object()).cloned().unwrap_or_default();
        values.insert("opened_at".into(), rfc3339(timer.opened_at).into());
        values.insert("deadline".into(), rfc3339(timer.deadline).into());
        values.insert("within".into(), self.config.within_text.clone().into());
        let summary = match &self.invariant.summary {
            Some(s) => interpolate(s, &values),
            None => format!(
                "{} {} opened at {} and not closed within {}",
                self.config.key.join(","),
                key.join(","),
                rfc3339(timer.opened_at),
                self.config.within_text
            ),
        };
        let mut annotations = BTreeMap::from([("summary".to_string(), summary)]);
        if let Some(r) = &self.invariant.runbook_url {
            annotations.insert("runbook_url".into(), r.clone());
        }
        let within_s = self.config.within as f64 / 1000.0;
        Observation {
            deferred: None,
            fingerprint: None,
            rule: self.job.clone(),
            severity: self.invariant.severity.clone(),
            labels: labels.clone().into(),
            annotations,
            value: json!(within_s),
            threshold: json!(within_s),
            evidence: json!({
                "key": labels,
                "opened_at": rfc3339(timer.opened_at),
                "deadline": rfc3339(timer.deadline),
                "within": self.config.within_text,
                "opens": self.config.opens,
                "closes": self.config.closes,
                "records": [record],
            }),
        }
    }
}

impl Evaluator for DeadlineEvaluator {
    crate::alert::state_in_checkpoints!();

    fn kind(&self) -> &'static str {
        "invariant"
    }

    fn evaluate(&mut self, e: &Evaluation) -> anyhow::Result<Verdicts> {
        // Every event of the pane, in event-time order; an opening before a closing at one time.
        let mut events: Vec<(Millis, bool, usize, usize)> = Vec::new(); // (ts, closes, batch, row)
        for (b, batch) in e.input.iter().enumerate() {
            let opens = self.opens.eval(batch).with_context(|| format!("job `{}`: evaluating deadline `opens`", self.job))?;
            let closes = self.closes.eval(batch).with_context(|| format!("job `{}`: evaluating deadline `closes`", self.job))?;
            let ts = event_times(batch, self.event_time);
            // Every event moves time, not only openings and closings (a heartbeat after the
            // last order passes its deadline, as the watermark of a live run does).
            if let Some(&newest) = ts.iter().max() {
                self.state.newest = Some(self.state.newest.map_or(newest, |n| n.max(newest)));
            }
            for row in 0..batch.num_rows() {
                if opens.value(row) {
                    events.push((ts[row], false, b, row));
                }
                if closes.value(row) {
                    events.push((ts[row], true, b, row));
                }
            }
        }
        events.sort_by_key(|&(ts, closes, b, row)| (ts, closes, b, row));
        let mut verdicts = Verdicts::default();
        let mut changes: Vec<(Millis, Holding)> = Vec::new();
        let mut opened_now: Vec<Vec<String>> = Vec::new();
        for &(ts, closes, b, row) in &events {
            let batch = &e.input[b];
            let key: Vec<String> = self.key_columns.iter().map(|&c| text(batch.column(c).as_ref(), row)).collect();
            self.expire_before(ts, e.input, e.partition_names, &mut changes);
            if closes {
                if self.state.open.remove(&key).is_some() {
                    self.state.closed_in_time += 1;
                } else if self.state.overdue.remove(&key).is_some() {
                    // Closed late: resolves now.
                    let labels = self.config.key.iter().cloned().zip(key.iter().cloned()).collect();
                    change(&mut changes, ts).1.push(crate::alert::fingerprint_of(&self.job, &self.job, &labels));
                }
            } else if !self.state.open.contains_key(&key) && !self.state.overdue.contains_key(&key) {
                self.state.opened += 1;
                let timer = Timer { opened_at: ts, deadline: ts + self.config.within, record: Opening::Pending { batch: b, row } };
                self.state.by_deadline.insert((timer.deadline, key.clone()));
                opened_now.push(key.clone());
                self.state.open.insert(key, timer);
                self.state.peak_open = self.state.peak_open.max(self.state.open.len() as u64);
                // Entries of timers closed in time are skipped, not removed.
                if crate::state::index_to_rebuild(self.state.by_deadline.len(), self.state.open.len()) {
                    self.state.index_deadlines();
                }
            }
        }
        // Time has passed the pane's end, or at the end of input, the newest event.
        let until = if e.end_of_input { e.window_end.min(self.state.newest.unwrap_or(e.window_end)) } else { e.window_end };
        self.expire_before(until, e.input, e.partition_names, &mut changes);
        self.keep_openings(e, &opened_now)?;
        verdicts.evaluations = changes;
        Ok(verdicts)
    }

    fn time_passes(&mut self, until: Millis, partition_names: &[String], _want_rows: bool) -> anyhow::Result<Verdicts> {
        // Between evaluations every opening is kept as its own row: none is pending.
        let mut changes = Vec::new();
        self.expire_before(until, &[], partition_names, &mut changes);
        Ok(Verdicts { evaluations: changes, rows: None })
    }

    fn needs_rows(&self) -> bool {
        false
    }

    fn stats(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("opened", self.state.opened),
            ("closed in time", self.state.closed_in_time),
            ("missed deadlines", self.state.missed),
            ("open now", self.state.open.len() as u64),
            ("peak open", self.state.peak_open),
            ("overdue now", self.state.overdue.len() as u64),
        ]
    }
}

/// The evaluation of changes at `t` (the last one, or a new one): what holds and what clears.
fn change(changes: &mut Vec<(Millis, Holding)>, t: Millis) -> (&mut Vec<Observation>, &mut Vec<u64>) {
    if changes.last().is_none_or(|(last, _)| *last != t) {
        changes.push((t, Holding::Changes { holding: Vec::new(), cleared: Vec::new() }));
    }
    match &mut changes.last_mut().expect("pushed").1 {
        Holding::Changes { holding, cleared } => (holding, cleared),
        Holding::All(_) => unreachable!("a deadline sends changes only"),
    }
}

/// The event as evidence: its values and its source position and trace id.
fn sample(batch: &RecordBatch, row: usize, partition_names: &[String]) -> Value {
    let schema = batch.schema();
    let mut record = row_object(batch, row);
    record.retain(|name, _| !name.starts_with('_'));
    let partition = schema.index_of("_partition").ok().map(|c| batch.column(c).as_primitive::<Int32Type>().value(row) as usize);
    let offset = schema.index_of("_offset").ok().map(|c| batch.column(c).as_primitive::<Int64Type>().value(row));
    let mut out = json!({
        "source": partition.and_then(|p| partition_names.get(p)).cloned().unwrap_or_default(),
        "offset": offset,
        "record": record,
    });
    if let Some(c) = schema.index_of("_trace_id").ok() {
        let column = batch.column(c);
        if column.is_valid(row) {
            out["trace_id"] = Value::String(text(column.as_ref(), row));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ArrayRef, Int32Array, Int64Array, StringArray, TimestampMillisecondArray};

    fn evaluator() -> DeadlineEvaluator {
        let text = "name = \"d\"\nkind = \"invariant\"\n[source]\nkind = \"file\"\npath = \"x.jsonl\"\n\
            [source.schema]\nts = \"timestamp\"\nevent = \"string\"\norder_id = \"string\"\n\
            [event_time]\ncolumn = \"ts\"\n[window]\nkind = \"tumbling\"\nsize = \"1s\"\n\
            [invariant]\nsummary = \"order {order_id}\"\n\
            [invariant.deadline]\nkey = [\"order_id\"]\nopens = \"event = 'order'\"\ncloses = \"event = 'cancel'\"\nwithin = \"30s\"\n";
        let job = crate::job::parse(std::path::Path::new("d.toml"), text).expect("the job parses");
        let config = job.config::<InvariantConfig>().expect("an invariant job").clone();
        DeadlineEvaluator::new("d", config, &batch(&[]).schema(), 0).expect("the key is declared")
    }

    /// Decoded events `(ts, event, order_id)`, with their source positions.
    fn batch(events: &[(Millis, &str, &str)]) -> RecordBatch {
        let ts = TimestampMillisecondArray::from_iter_values(events.iter().map(|e| e.0)).with_timezone("UTC");
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("ts", Arc::new(ts)),
            ("event", Arc::new(StringArray::from_iter_values(events.iter().map(|e| e.1)))),
            ("order_id", Arc::new(StringArray::from_iter_values(events.iter().map(|e| e.2)))),
            ("_partition", Arc::new(Int32Array::from_iter_values(events.iter().map(|_| 0)))),
            ("_offset", Arc::new(Int64Array::from_iter_values((0..events.len() as i64).map(|o| o + 7)))),
        ];
        RecordBatch::try_from_iter(columns)
        .unwrap()
    }

    fn pane(e: &mut DeadlineEvaluator, start: Millis, events: &[(Millis, &str, &str)]) -> Vec<(Millis, Holding)> {
        last_pane(e, start, events, false)
    }

    fn last_pane(e: &mut DeadlineEvaluator, start: Millis, events: &[(Millis, &str, &str)], end_of_input: bool) -> Vec<(Millis, Holding)> {
        let input = [batch(events)];
        let names = ["t/0".to_string()];
        let evaluation = Evaluation {
            window_start: start,
            window_end: start + 1_000,
            rows: &[],
            input: &input,
            partition_names: &names,
            update: false,
            changes_only: false,
            dropped: &[],
            want_rows: false,
            end_of_input,
        };
        e.evaluate(&evaluation).unwrap().evaluations
    }

    fn shown(evaluations: &[(Millis, Holding)]) -> Vec<String> {
        evaluations.iter().map(|(t, h)| format!("{t} {h:?}")).collect()
    }

    /// A process whose events stop (a quiet stream, a second stage whose records went to other
    /// processes) still fires the deadlines its watermark passes, at their deadlines and with
    /// their openings as evidence: what its next pane would have said.
    #[test]
    fn time_passing_alone_fires_the_deadlines_it_passes() {
        let opened = [(1_000, "order", "A"), (1_200, "order", "B"), (1_500, "order", "C"), (1_700, "cancel", "C")];
        let mut told = evaluator();
        assert!(pane(&mut told, 1_000, &opened).is_empty());
        assert!(told.time_passes(31_000, &["t/0".into()], false).unwrap().evaluations.is_empty(), "A's deadline is 31 s: not passed yet");
        let passed = told.time_passes(32_000, &["t/0".into()], false).unwrap().evaluations;
        assert_eq!(passed.len(), 2, "A and B, each at its deadline: {passed:?}");
        assert_eq!((passed[0].0, passed[1].0), (31_000, 31_200));
        let Holding::Changes { holding, .. } = &passed[0].1 else { panic!("a deadline sends changes") };
        assert_eq!(holding[0].labels.get("order_id").map(String::as_str), Some("A"));
        let evidence = &holding[0].shown().evidence;
        assert!(evidence.to_string().contains("\"offset\":7"), "the opening is the evidence: {evidence}");
        // The same as the next pane says, when one comes.
        let mut waited = evaluator();
        pane(&mut waited, 1_000, &opened);
        let next = pane(&mut waited, 40_000, &[(40_100, "cancel", "A")]);
        let (fired, resolved) = next.split_at(2);
        assert_eq!(shown(fired), shown(&passed));
        // B, told already, is not fired again; A's late close resolves it either way.
        let after = pane(&mut told, 40_000, &[(40_100, "cancel", "A")]);
        assert_eq!(shown(&after), shown(resolved));
    }

    /// At the end of a replay, event time has reached the newest event of any kind, not only
    /// the newest order or close: a heartbeat after an order's deadline passes it, as the
    /// watermark of a live run over the same topic does.
    #[test]
    fn the_end_of_input_passes_the_deadlines_before_its_newest_event_of_any_kind() {
        let mut e = evaluator();
        pane(&mut e, 1_000, &[(1_000, "order", "A"), (1_500, "order", "B")]);
        let end = last_pane(&mut e, 31_000, &[(31_200, "heartbeat", "")], true);
        assert_eq!(shown(&end).len(), 1, "A's deadline (31 s) is before the heartbeat, B's (31.5 s) after: {end:?}");
        assert_eq!(end[0].0, 31_000);
    }

    /// A timer closed in time leaves its deadline behind in the index: it never fires, and
    /// the same key opened again fires once, at its own deadline, not at the old one.
    #[test]
    fn a_key_closed_in_time_and_opened_again_fires_once_at_its_new_deadline() {
        let mut e = evaluator();
        pane(&mut e, 1_000, &[(1_000, "order", "A"), (1_100, "cancel", "A"), (1_400, "order", "B"), (1_600, "cancel", "B")]);
        pane(&mut e, 5_000, &[(5_000, "order", "A")]);
        assert!(e.time_passes(34_000, &["t/0".into()], false).unwrap().evaluations.is_empty(), "A's first deadline (31 s) passed closed; its second is 35 s");
        let passed = e.time_passes(40_000, &["t/0".into()], false).unwrap().evaluations;
        assert_eq!(passed.iter().map(|(t, _)| *t).collect::<Vec<_>>(), [35_000], "A once, at 35 s; B never: {passed:?}");
        assert_eq!((e.state.missed, e.state.closed_in_time), (1, 2));
        // Restored from a checkpoint, the index holds the open timers alone.
        let mut restored = evaluator();
        restored.restore(e.state.clone());
        assert_eq!(restored.state, e.state);
    }
}
