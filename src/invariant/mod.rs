//! Invariant jobs: business-correctness checks. The SQL's result rows are candidates; the
//! `violation` boolean picks the rows that break the invariant, and `key` names one
//! violation: one alert per key, firing while the key violates, resolved when it stops.
//!
//! Evidence on every alert: the key, the row's computed values, the limit where there is one,
//! and a bounded sample of the window's input records of that key, with their source position
//! (file and line, or topic/partition and offset) and trace id.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::Context;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::{json, Map, Value};

use crate::alert::{fingerprint_of, result_column, Evaluation, Evaluator, Fingerprinter, KeyError, Observation, Verdicts};
use crate::exec::predicate::RowPredicate;
use crate::output::json::{write_row, write_value};

pub mod deadline;
pub mod kind;
pub use deadline::{DeadlineConfig, DeadlineEvaluator};

/// `[invariant]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct InvariantConfig {
    pub key: Vec<String>,
    pub violation: Option<String>,
    pub severity: String,
    pub summary: Option<String>,
    pub value: Option<String>,
    pub threshold: Value,
    pub runbook_url: Option<String>,
    /// `[invariant.deadline]`: keys that must close within a time of opening.
    pub deadline: Option<DeadlineConfig>,
}

/// Input records of one key kept as evidence, at most.
pub const SAMPLE_RECORDS: usize = 5;

pub struct InvariantEvaluator {
    job: String,
    config: InvariantConfig,
    predicate: Option<RowPredicate>,
    key_columns: Vec<usize>,
    /// `(index into the key, column)` in key name order, as labels sort.
    keys_by_name: Vec<(usize, usize)>,
    value_column: Option<usize>,
}

impl InvariantEvaluator {
    /// Checks the config against the SQL's result columns: the messages say which key is wrong.
    pub fn new(job: &str, config: InvariantConfig, output: &SchemaRef) -> Result<Self, KeyError> {
        let column = |name: &str, key: &'static str| result_column(output, name, key);
        let key_columns = config.key.iter().map(|k| column(k, "key")).collect::<Result<Vec<_>, _>>()?;
        let value_column = config.value.as_deref().map(|v| column(v, "value")).transpose()?;
        if let Some(summary) = &config.summary {
            for name in placeholders(summary) {
                column(&name, "summary")?;
            }
        }
        let predicate = match &config.violation {
            Some(v) => Some(RowPredicate::compile(v, output).map_err(|e| KeyError { key: "violation", message: format!("{e}") })?),
            None => None,
        };
        let mut keys_by_name: Vec<(usize, usize)> = key_columns.iter().copied().enumerate().collect();
        keys_by_name.sort_by(|a, b| config.key[a.0].cmp(&config.key[b.0]));
        keys_by_name.dedup_by(|a, b| config.key[a.0] == config.key[b.0]);
        Ok(InvariantEvaluator { job: job.into(), config, predicate, key_columns, keys_by_name, value_column })
    }
}

impl Evaluator for InvariantEvaluator {
    fn kind(&self) -> &'static str {
        "invariant"
    }

    fn evaluate(&mut self, e: &Evaluation) -> anyhow::Result<Verdicts> {
        let holding = self.holding(e)?;
        if !e.changes_only {
            return Ok(Verdicts::one(e.window_end, holding));
        }
        // Only changed groups were evaluated: those not violating now, and dropped ones, clear.
        // As fingerprints, from the key columns as they are: most rows of a pane clear
        // nothing, and a label map per row was a fifth of a cumulative invariant's time.
        let violating: HashSet<u64> = holding.iter().map(|o| o.fingerprint.unwrap_or_else(|| fingerprint_of(&self.job, &o.rule, &o.labels))).collect();
        let mut cleared = Vec::new();
        for (batch, only_not_violating) in e.rows.iter().map(|b| (b, true)).chain(e.dropped.iter().map(|b| (b, false))) {
            for row in 0..batch.num_rows() {
                let fp = self.fingerprint(batch, row);
                if !(only_not_violating && violating.contains(&fp)) {
                    cleared.push(fp);
                }
            }
        }
        Ok(Verdicts { evaluations: vec![(e.window_end, crate::alert::Holding::Changes { holding, cleared })], rows: None })
    }
}

impl InvariantEvaluator {
    /// A row's alert fingerprint, without its labels: its key columns in name order.
    fn fingerprint(&self, batch: &RecordBatch, row: usize) -> u64 {
        let mut f = Fingerprinter::new(&self.job, &self.job);
        for &(name, c) in &self.keys_by_name {
            let column = batch.column(c);
            match column.as_string_opt::<i32>() {
                Some(s) if s.is_valid(row) => f.label(&self.config.key[name], s.value(row)),
                _ => f.label(&self.config.key[name], &text(column.as_ref(), row)),
            }
        }
        f.finish()
    }

    /// A row's alert labels: its key columns.
    fn labels(&self, batch: &RecordBatch, row: usize) -> BTreeMap<String, String> {
        self.config.key.iter().cloned().zip(self.key_columns.iter().map(|&c| text(batch.column(c).as_ref(), row))).collect()
    }

    /// The violations among one window's rows.
    fn holding(&mut self, e: &Evaluation) -> anyhow::Result<Vec<Observation>> {
        let mut out = Vec::new();
        let mut samples: Option<HashMap<Vec<String>, Vec<Value>>> = None;
        for batch in e.rows {
            let violating = match &self.predicate {
                Some(p) => Some(p.eval(batch).with_context(|| format!("job `{}`: evaluating `violation`", self.job))?),
                None => None,
            };
            for row in 0..batch.num_rows() {
                if violating.as_ref().is_some_and(|v| !v.value(row)) {
                    continue;
                }
                let values = row_object(batch, row);
                let key: Vec<String> = self.key_columns.iter().map(|&c| text(batch.column(c).as_ref(), row)).collect();
                let labels = self.labels(batch, row);
                let samples = samples.get_or_insert_with(|| sample_by_key(e, &self.config.key));
                let mut annotations = BTreeMap::new();
                if let Some(s) = &self.config.summary {
                    annotations.insert("summary".to_string(), interpolate(s, &values));
                }
                if let Some(r) = &self.config.runbook_url {
                    annotations.insert("runbook_url".to_string(), r.clone());
                }
                let value = self.value_column.map(|c| values[batch.schema().field(c).name()].clone()).unwrap_or(Value::Null);
                let evidence = json!({
                    "key": labels,
                    "values": values,
                    "limit": self.config.threshold,
                    "window": { "start": crate::alert::rfc3339(e.window_start), "end": crate::alert::rfc3339(e.window_end) },
                    "records": samples.get(&key).cloned().unwrap_or_default(),
                });
                out.push(Observation {
                    deferred: None,
                    fingerprint: None,
                    rule: self.job.clone(),
                    severity: self.config.severity.clone(),
                    labels: labels.into(),
                    annotations,
                    value,
                    threshold: self.config.threshold.clone(),
                    evidence,
                });
            }
        }
        Ok(out)
    }
}

/// `{column}` names in a summary.
pub fn placeholders(summary: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = summary;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else { break };
        out.push(rest[open + 1..open + close].trim().to_string());
        rest = &rest[open + close + 1..];
    }
    out
}

/// The summary with each `{column}` replaced by the row's value (strings without quotes).
pub fn interpolate(summary: &str, values: &Map<String, Value>) -> String {
    let mut out = String::with_capacity(summary.len());
    let mut rest = summary;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else { break };
        out.push_str(&rest[..open]);
        let name = rest[open + 1..open + close].trim();
        match values.get(name) {
            Some(Value::String(s)) => out.push_str(s),
            Some(v) => out.push_str(&v.to_string()),
            None => out.push_str(&rest[open..=open + close]),
        }
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

/// A row as a JSON object, in the result format (decimals exact, as strings).
pub(crate) fn row_object(batch: &RecordBatch, row: usize) -> Map<String, Value> {
    let mut bytes = Vec::new();
    write_row(batch, row, &mut bytes);
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// A value as label text: strings as they are, anything else as its JSON.
pub(crate) fn text(array: &dyn Array, row: usize) -> String {
    if let Some(s) = array.as_string_opt::<i32>() {
        if s.is_valid(row) {
            return s.value(row).to_string();
        }
    }
    let mut out = Vec::new();
    write_value(array, row, &mut out);
    String::from_utf8(out).unwrap_or_default().trim_matches('"').to_string()
}

/// Up to [`SAMPLE_RECORDS`] input records of the window per key (by the key columns that are
/// input columns), each with its source position and trace id.
fn sample_by_key(e: &Evaluation, key: &[String]) -> HashMap<Vec<String>, Vec<Value>> {
    let mut out: HashMap<Vec<String>, Vec<Value>> = HashMap::new();
    for batch in e.input {
        let schema = batch.schema();
        let Some(cols) = key.iter().map(|k| schema.index_of(k).ok()).collect::<Option<Vec<usize>>>() else {
            return out; // a key computed by the SQL: no input record carries it
        };
        let partition = schema.index_of("_partition").ok();
        let offset = schema.index_of("_offset").ok();
        let trace = schema.index_of("_trace_id").ok();
        for row in 0..batch.num_rows() {
            let k: Vec<String> = cols.iter().map(|&c| text(batch.column(c).as_ref(), row)).collect();
            let list = out.entry(k).or_default();
            if list.len() >= SAMPLE_RECORDS {
                continue;
            }
            let mut record = row_object(batch, row);
            record.retain(|name, _| !name.starts_with('_'));
            let p = partition.map(|c| batch.column(c).as_primitive::<datafusion::arrow::datatypes::Int32Type>().value(row) as usize);
            let mut sample = json!({
                "source": p.and_then(|p| e.partition_names.get(p)).cloned().unwrap_or_default(),
                "offset": offset.map(|c| batch.column(c).as_primitive::<datafusion::arrow::datatypes::Int64Type>().value(row)),
                "record": record,
            });
            if let Some(c) = trace {
                let t = text(batch.column(c).as_ref(), row);
                if !t.is_empty() && t != "null" {
                    sample["trace_id"] = Value::String(t);
                }
            }
            list.push(sample);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_name_row_values() {
        let values: Map<String, Value> = serde_json::from_str(r#"{"account":"ACC-1","net":"10500.0000","n":3}"#).unwrap();
        assert_eq!(interpolate("{account} holds {net} ({n}) {missing}", &values), "ACC-1 holds 10500.0000 (3) {missing}");
        assert_eq!(placeholders("{a} and { b }"), ["a", "b"]);
    }
}
