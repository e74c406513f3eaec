//! The anomaly operator: per-series detectors over each window's feature rows, DBSCAN
//! incidents, one alert per incident.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanBuilder, Float64Builder, StringBuilder, TimestampMillisecondBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::cluster::{incidents, Anomalous};
use super::detector::Detector;
use super::registry::AnyDetector;
use super::AnomalyConfig;
use crate::alert::{result_column, Evaluation, Evaluator, KeyError, Observation, Verdicts};
use crate::jobfile::timestamp_type;

/// A series' detectors (checkpointed with the job).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesDetectors {
    pub detectors: Vec<AnyDetector>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AnomalyState {
    pub series: BTreeMap<Vec<String>, SeriesDetectors>,
    pub evaluations: u64,
    pub anomalous: u64,
    pub incidents: u64,
}

pub struct AnomalyEvaluator {
    job: String,
    config: AnomalyConfig,
    series_columns: Vec<usize>,
    feature_columns: Vec<usize>,
    schema: SchemaRef,
    state: AnomalyState,
}

impl AnomalyEvaluator {
    pub fn new(job: &str, config: AnomalyConfig, output: &SchemaRef) -> Result<Self, KeyError> {
        let column = |name: &str, key: &'static str| result_column(output, name, key);
        let series_columns = config.series.iter().map(|s| column(s, "series")).collect::<Result<Vec<_>, _>>()?;
        let feature_columns = config.features.iter().map(|f| column(f, "features")).collect::<Result<Vec<_>, _>>()?;
        for (&c, name) in feature_columns.iter().zip(&config.features) {
            let t = output.field(c).data_type();
            if !(t.is_numeric() || matches!(t, DataType::Decimal128(..))) {
                return Err(KeyError { key: "features", message: format!("feature `{name}` is {t}, not a number") });
            }
        }
        let mut fields = vec![Field::new("window_start", timestamp_type(), false), Field::new("window_end", timestamp_type(), false)];
        fields.extend(config.series.iter().map(|s| Field::new(s, DataType::Utf8, false)));
        fields.extend(config.features.iter().map(|f| Field::new(f, DataType::Float64, true)));
        fields.extend(config.detectors.iter().map(|d| Field::new(format!("score_{}", d.name()), DataType::Float64, true)));
        fields.push(Field::new("score", DataType::Float64, true));
        fields.push(Field::new("anomalous", DataType::Boolean, false));
        Ok(AnomalyEvaluator { job: job.into(), config, series_columns, feature_columns, schema: Arc::new(Schema::new(fields)), state: AnomalyState::default() })
    }

    pub fn state(&self) -> &AnomalyState {
        &self.state
    }

    pub fn restore(&mut self, state: AnomalyState) {
        self.state = state;
    }

    fn detectors_for(&mut self, labels: &[String]) -> &mut SeriesDetectors {
        if !self.state.series.contains_key(labels) {
            let c = &self.config;
            let name: Vec<&str> = labels.iter().map(String::as_str).collect();
            let detectors = super::registry::for_series(&c.detectors, c.baseline, c.warmup, &name);
            self.state.series.insert(labels.to_vec(), SeriesDetectors { detectors });
        }
        self.state.series.get_mut(labels).expect("inserted")
    }

    fn observation(&self, t_start: i64, t_end: i64, members: &[&Anomalous], features: &BTreeMap<Vec<String>, Vec<f64>>) -> Observation {
        let n = self.config.series.len();
        // Labels every member shares name the incident.
        let mut labels = BTreeMap::new();
        for i in 0..n {
            let first = &members[0].labels[i];
            if members.iter().all(|m| &m.labels[i] == first) {
                labels.insert(self.config.series[i].clone(), first.clone());
            }
        }
        let names: Vec<String> = members.iter().map(|m| m.labels.join(" ")).collect();
        let incident = if labels.is_empty() {
            let mut sorted = names.clone();
            sorted.sort();
            format!("mixed-{:08x}", sorted.join(",").bytes().fold(0x811c_9dc5u32, |h, b| (h ^ b as u32).wrapping_mul(0x0100_0193)))
        } else {
            self.config.series.iter().filter_map(|s| labels.get(s).cloned()).collect::<Vec<_>>().join(" ")
        };
        labels.insert("incident".into(), incident.clone());
        let score = members.iter().map(|m| m.score).fold(0.0, f64::max);
        let evidence_members: Vec<Value> = members
            .iter()
            .map(|m| {
                let series: BTreeMap<&str, &str> = self.config.series.iter().map(String::as_str).zip(m.labels.iter().map(String::as_str)).collect();
                let values = features.get(&m.labels).cloned().unwrap_or_default();
                let moved: BTreeMap<&str, f64> = self.config.features.iter().map(String::as_str).zip(m.moved.iter().copied()).filter(|(_, z)| z.abs() >= 3.0).collect();
                json!({
                    "series": series,
                    "score": m.score,
                    "features": self.config.features.iter().map(String::as_str).zip(values).collect::<BTreeMap<_, _>>(),
                    "moved": moved,
                })
            })
            .collect();
        let summary = match &self.config.summary {
            Some(s) => crate::invariant::interpolate(s, &serde_json::Map::from_iter([("incident".to_string(), Value::String(incident.clone()))])),
            None => format!("{}: {} anomalous series in incident {incident} ({}), score {score:.2}", self.job, members.len(), names.join(", ")),
        };
        let mut annotations = BTreeMap::from([("summary".to_string(), summary)]);
        if let Some(r) = &self.config.runbook_url {
            annotations.insert("runbook_url".into(), r.clone());
        }
        Observation {
            deferred: None,
            fingerprint: None,
            rule: self.job.clone(),
            severity: self.config.severity.clone(),
            labels: labels.into(),
            annotations,
            value: json!(score),
            threshold: json!(self.config.threshold),
            evidence: json!({
                "window": { "start": crate::alert::rfc3339(t_start), "end": crate::alert::rfc3339(t_end) },
                "members": evidence_members,
                "detectors": self.config.detectors.iter().map(|d| d.name()).collect::<Vec<_>>(),
            }),
        }
    }
}

impl Evaluator for AnomalyEvaluator {
    crate::alert::state_in_checkpoints!();

    fn kind(&self) -> &'static str {
        "anomaly"
    }

    fn evaluate(&mut self, e: &Evaluation) -> anyhow::Result<Verdicts> {
        if e.update {
            // Detectors learn each window once; a late update would teach them twice.
            return Ok(Verdicts { evaluations: Vec::new(), rows: Some(Vec::new()) });
        }
        let mut rows = Rows::new(&self.config);
        let mut anomalous: Vec<Anomalous> = Vec::new();
        let mut features_by_series: BTreeMap<Vec<String>, Vec<f64>> = BTreeMap::new();
        // Rows in series order, so detectors and incidents never depend on the SQL's order.
        let mut inputs: Vec<(Vec<String>, Vec<f64>)> = Vec::new();
        for batch in e.rows {
            let features: Vec<ArrayRef> = self
                .feature_columns
                .iter()
                .map(|&c| datafusion::arrow::compute::cast(batch.column(c), &DataType::Float64))
                .collect::<Result<_, _>>()?;
            for row in 0..batch.num_rows() {
                let labels: Vec<String> = self.series_columns.iter().map(|&c| crate::invariant::text(batch.column(c).as_ref(), row)).collect();
                let x: Vec<f64> = features
                    .iter()
                    .map(|f| {
                        let f = f.as_primitive::<Float64Type>();
                        if f.is_valid(row) { f.value(row) } else { f64::NAN }
                    })
                    .collect();
                inputs.push((labels, x));
            }
        }
        inputs.sort_by(|a, b| a.0.cmp(&b.0));
        inputs.dedup_by(|a, b| a.0 == b.0); // one row per series and window: the first speaks
        let threshold = self.config.threshold;
        for (labels, x) in inputs {
            if x.iter().any(|v| !v.is_finite()) {
                rows.push(e, &labels, &x, &vec![None; self.config.detectors.len()], None, false);
                continue;
            }
            let d = self.detectors_for(&labels);
            let scores: Vec<Option<f64>> = d.detectors.iter_mut().map(|det| det.observe_at(e.window_start, &x)).collect();
            let moved = d.detectors.iter().find_map(|det| det.deviations().map(<[f64]>::to_vec)).unwrap_or_else(|| vec![0.0; x.len()]);
            let score = scores.iter().flatten().copied().reduce(f64::max);
            let is_anomalous = score.is_some_and(|s| s >= threshold);
            rows.push(e, &labels, &x, &scores, score, is_anomalous);
            if is_anomalous {
                anomalous.push(Anomalous { labels: labels.clone(), score: score.unwrap_or(0.0), moved });
                features_by_series.insert(labels, x);
            }
        }
        self.state.evaluations += 1;
        self.state.anomalous += anomalous.len() as u64;
        let groups = incidents(&anomalous, self.config.eps, self.config.min_points);
        self.state.incidents += groups.len() as u64;
        let holding: Vec<Observation> = groups
            .iter()
            .map(|g| {
                let members: Vec<&Anomalous> = g.iter().map(|&i| &anomalous[i]).collect();
                self.observation(e.window_start, e.window_end, &members, &features_by_series)
            })
            .collect();
        let mut verdicts = Verdicts::one(e.window_end, holding);
        verdicts.rows = Some(if e.want_rows { vec![rows.finish(&self.schema)?] } else { Vec::new() });
        Ok(verdicts)
    }

    fn rows_schema(&self) -> Option<SchemaRef> {
        Some(self.schema.clone())
    }

    fn stats(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("series", self.state.series.len() as u64),
            ("evaluations", self.state.evaluations),
            ("anomalous series-windows", self.state.anomalous),
            ("incidents", self.state.incidents),
        ]
    }
}

/// Per series and window: features, each detector's score, the score, anomalous or not.
struct Rows {
    start: TimestampMillisecondBuilder,
    end: TimestampMillisecondBuilder,
    labels: Vec<StringBuilder>,
    features: Vec<Float64Builder>,
    scores: Vec<Float64Builder>,
    score: Float64Builder,
    anomalous: BooleanBuilder,
}

impl Rows {
    fn new(c: &AnomalyConfig) -> Self {
        Rows {
            start: TimestampMillisecondBuilder::new().with_timezone("UTC"),
            end: TimestampMillisecondBuilder::new().with_timezone("UTC"),
            labels: c.series.iter().map(|_| StringBuilder::new()).collect(),
            features: c.features.iter().map(|_| Float64Builder::new()).collect(),
            scores: c.detectors.iter().map(|_| Float64Builder::new()).collect(),
            score: Float64Builder::new(),
            anomalous: BooleanBuilder::new(),
        }
    }

    fn push(&mut self, e: &Evaluation, labels: &[String], x: &[f64], scores: &[Option<f64>], score: Option<f64>, anomalous: bool) {
        self.start.append_value(e.window_start);
        self.end.append_value(e.window_end);
        for (b, l) in self.labels.iter_mut().zip(labels) {
            b.append_value(l);
        }
        for (b, v) in self.features.iter_mut().zip(x) {
            b.append_option(v.is_finite().then_some(*v));
        }
        for (b, s) in self.scores.iter_mut().zip(scores) {
            b.append_option(*s);
        }
        self.score.append_option(score);
        self.anomalous.append_value(anomalous);
    }

    fn finish(mut self, schema: &SchemaRef) -> anyhow::Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = vec![Arc::new(self.start.finish()), Arc::new(self.end.finish())];
        columns.extend(self.labels.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        columns.extend(self.features.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        columns.extend(self.scores.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        columns.push(Arc::new(self.score.finish()));
        columns.push(Arc::new(self.anomalous.finish()));
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }
}
