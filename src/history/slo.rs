//! Each SLO series' error budget left and burn rates over event time, and the spans in which
//! each alert pair's condition held, read from the SLO evaluator's rows (one per series and
//! pane end).
//!
//! Bounded: at most [`MAX_POINTS`] points a series (when full, every other point goes and
//! the series keeps one point in two from then on, so the line still spans the whole run),
//! [`MAX_SPANS`] spans a pair, [`MAX_SERIES`] series (later ones are counted, not kept).

use std::collections::{BTreeMap, HashMap};

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Float64Type, TimestampMillisecondType};
use datafusion::arrow::record_batch::RecordBatch;
use serde::Serialize;

use crate::Millis;

pub const MAX_POINTS: usize = 240;
pub const MAX_SPANS: usize = 50;
pub const MAX_SERIES: usize = 1_000;

/// One pane end of one series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// Event time of the pane's end.
    pub t: Millis,
    pub error_budget_remaining: f64,
    /// Burn rate per window, in the order of [`SloHistory::windows`] (`None`: no events).
    pub burn_rates: Vec<Option<f64>>,
}

/// When an alert pair's condition held: from the first pane end it held at to the first it
/// no longer did (`None`: it holds still).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Span {
    pub start: Millis,
    pub end: Option<Millis>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SeriesHistory {
    /// Label name and value, in the job's order.
    pub labels: Vec<(String, String)>,
    /// The label set's fingerprint, as an alert's: stable across runs and builds.
    pub id: String,
    pub points: Vec<Point>,
    /// The newest point, also when thinning left it out of `points`.
    pub latest: Option<Point>,
    /// By rule (`page-1h-5m`).
    pub spans: BTreeMap<String, Vec<Span>>,
    /// Keep one pane end in `stride`; `skipped` since the last kept.
    #[serde(skip)]
    stride: usize,
    #[serde(skip)]
    skipped: usize,
}

impl SeriesHistory {
    fn push(&mut self, point: Point, firing: &[&str]) {
        let t = point.t;
        for rule in firing {
            let spans = self.spans.entry(rule.to_string()).or_default();
            if spans.last().is_none_or(|s| s.end.is_some()) {
                spans.push(Span { start: t, end: None });
                if spans.len() > MAX_SPANS {
                    spans.remove(0);
                }
            }
        }
        for (rule, spans) in self.spans.iter_mut() {
            if let Some(open) = spans.last_mut().filter(|s| s.end.is_none()) {
                if !firing.contains(&rule.as_str()) {
                    open.end = Some(t);
                }
            }
        }
        self.latest = Some(point.clone());
        self.stride = self.stride.max(1);
        if self.skipped + 1 < self.stride {
            self.skipped += 1;
            return;
        }
        self.skipped = 0;
        self.points.push(point);
        if self.points.len() > MAX_POINTS {
            let mut i = 0;
            self.points.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            self.stride *= 2;
        }
    }

    /// The points to draw: the kept ones and the newest.
    pub fn line(&self) -> Vec<&Point> {
        let mut out: Vec<&Point> = self.points.iter().collect();
        if let Some(l) = &self.latest {
            if out.last().is_none_or(|p| p.t < l.t) {
                out.push(l);
            }
        }
        out
    }

    pub fn firing_now(&self) -> Vec<&str> {
        self.spans.iter().filter(|(_, s)| s.last().is_some_and(|s| s.end.is_none())).map(|(r, _)| r.as_str()).collect()
    }

    /// A stable id for links.
    pub fn id(&self) -> &str {
        &self.id
    }
}

#[derive(Debug, Clone, Default)]
pub struct SloHistory {
    /// The burn-rate windows (`5m`, `1h`, ... and the period's), from the rows' columns.
    pub windows: Vec<String>,
    pub series: HashMap<String, SeriesHistory>,
    /// Series seen past [`MAX_SERIES`], not kept.
    pub untracked: u64,
}

impl SloHistory {
    /// Fold one batch of the SLO evaluator's rows in: `window_end`, the label columns (text),
    /// `burn_rate_<window>`, `error_budget_remaining` and `firing` (rules, comma-separated).
    pub fn record(&mut self, batch: &RecordBatch) {
        let schema = batch.schema();
        let column = |name: &str| schema.index_of(name).ok().map(|i| batch.column(i));
        let (Some(end), Some(budget)) = (column("window_end"), column("error_budget_remaining")) else { return };
        let (Some(end), Some(budget)) = (end.as_primitive_opt::<TimestampMillisecondType>(), budget.as_primitive_opt::<Float64Type>()) else { return };
        let firing = column("firing").and_then(|c| c.as_string_opt::<i32>());
        let mut labels = Vec::new();
        let mut burns = Vec::new();
        for (i, f) in schema.fields().iter().enumerate() {
            if let Some(w) = f.name().strip_prefix("burn_rate_") {
                if let Some(c) = batch.column(i).as_primitive_opt::<Float64Type>() {
                    burns.push((w.to_string(), c));
                }
            } else if f.data_type() == &DataType::Utf8 && f.name() != "firing" {
                labels.push((f.name().clone(), batch.column(i).as_string::<i32>()));
            }
        }
        if self.windows.is_empty() {
            self.windows = burns.iter().map(|(w, _)| w.clone()).collect();
        }
        let mut key = String::new();
        for row in 0..batch.num_rows() {
            key.clear();
            for (_, c) in &labels {
                key.push_str(c.value(row));
                key.push('\u{1f}');
            }
            if !self.series.contains_key(&key) {
                if self.series.len() >= MAX_SERIES {
                    self.untracked += 1;
                    continue;
                }
                let named: Vec<(String, String)> = labels.iter().map(|(n, c)| (n.clone(), c.value(row).to_string())).collect();
                let id = crate::alert::fingerprint("", "slo-series", &named.iter().cloned().collect());
                self.series.insert(key.clone(), SeriesHistory { labels: named, id, ..SeriesHistory::default() });
            }
            let point = Point {
                t: end.value(row),
                error_budget_remaining: budget.value(row),
                burn_rates: burns.iter().map(|(_, c)| c.is_valid(row).then(|| c.value(row))).collect(),
            };
            let rules: Vec<&str> = match firing {
                Some(f) if f.is_valid(row) => f.value(row).split(',').filter(|r| !r.is_empty()).collect(),
                _ => Vec::new(),
            };
            self.series.get_mut(&key).expect("inserted").push(point, &rules);
        }
    }

    /// Series worst first: firing before quiet, then least budget left.
    pub fn worst_first(&self) -> Vec<&SeriesHistory> {
        // Each series' key once, not at every comparison.
        let mut keyed: Vec<(usize, f64, &SeriesHistory)> = self
            .series
            .values()
            .map(|s| (s.firing_now().len(), s.latest.as_ref().map(|p| p.error_budget_remaining).unwrap_or(1.0), s))
            .collect();
        keyed.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.total_cmp(&b.1)).then_with(|| a.2.labels.cmp(&b.2.labels)));
        keyed.into_iter().map(|(_, _, s)| s).collect()
    }

    pub fn get(&self, id: &str) -> Option<&SeriesHistory> {
        self.series.values().find(|s| s.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Float64Array, StringArray, TimestampMillisecondArray};
    use datafusion::arrow::datatypes::{Field, Schema, TimeUnit};
    use std::sync::Arc;

    fn rows(t: Millis, service: &str, budget: f64, burn: f64, firing: Option<&str>) -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("window_end", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), false),
            Field::new("service", DataType::Utf8, false),
            Field::new("burn_rate_5m", DataType::Float64, true),
            Field::new("error_budget_remaining", DataType::Float64, false),
            Field::new("firing", DataType::Utf8, true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(TimestampMillisecondArray::from(vec![t]).with_timezone("UTC")),
                Arc::new(StringArray::from(vec![service])),
                Arc::new(Float64Array::from(vec![burn])),
                Arc::new(Float64Array::from(vec![budget])),
                Arc::new(StringArray::from(vec![firing])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn spans_open_and_close_with_the_firing_column_and_points_stay_bounded() {
        let mut h = SloHistory::default();
        for i in 0..1_000 {
            let firing = (100..200).contains(&i).then_some("page-1h-5m");
            h.record(&rows(i * 60_000, "checkout", 1.0 - i as f64 / 1000.0, 2.0, firing));
            h.record(&rows(i * 60_000, "search", 1.0, 0.0, None));
        }
        assert_eq!(h.windows, vec!["5m"]);
        let worst = h.worst_first();
        assert_eq!(worst[0].labels, vec![("service".to_string(), "checkout".to_string())], "least budget first");
        let s = worst[0];
        assert_eq!(s.spans["page-1h-5m"], vec![Span { start: 100 * 60_000, end: Some(200 * 60_000) }]);
        assert!(s.points.len() <= MAX_POINTS && s.points.len() > MAX_POINTS / 4, "{}", s.points.len());
        let line = s.line();
        assert_eq!(line.first().unwrap().t, 0, "the line starts at the first pane");
        assert_eq!(line.last().unwrap().t, 999 * 60_000, "and ends at the newest");
        assert!(line.windows(2).all(|w| w[0].t < w[1].t));
        assert_eq!(h.get(s.id()).unwrap().labels, s.labels);
        assert!(s.firing_now().is_empty());
    }
}
