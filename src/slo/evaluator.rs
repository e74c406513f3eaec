//! The SLO operator: pane counts in, burn-rate evaluations and rows out.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::series::{Counts, Layout, Series};
use super::{compact, SloConfig};
use crate::alert::{fingerprint_of, rfc3339, Deferred, Details, Evaluation, Evaluator, Holding, Labels, Observation, Verdicts};
use crate::jobfile::timestamp_type;
use crate::Millis;

/// Columns of an SLO's rows besides its labels and `burn_rate_<window>`.
pub const ROW_COLUMNS: &[&str] =
    &["window_start", "window_end", "events", "bad_events", "error_budget_remaining", "time_to_exhaustion_s", "firing"];

/// The label value of the series that label sets past `max_series` fold into.
pub const OVERFLOW: &str = "__overflow__";

/// Joins label values into a series key (a character no label value is expected to hold).
const SEPARATOR: &str = "\u{1f}";

/// One series: its label values and its counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tracked {
    pub labels: Vec<String>,
    pub series: Series,
    /// Counts of the pane being folded in, not yet in the ring.
    #[serde(default)]
    pending: Counts,
    /// No pair can burn until the series counts new events: in every pair the long or the
    /// short window holds no bad event, and windows only lose events between counts. Such a
    /// series is neither evaluated nor moved at a pane end it has no events for (it is moved
    /// when it next counts, or is corrected); unless rows are wanted.
    #[serde(default)]
    dormant: bool,
    /// Per alert pair, once it first holds: its labels and fingerprint, shared by every
    /// observation of it after (a burning series holds at every pane).
    #[serde(skip)]
    raised: Raised,
}

/// See [`Tracked::raised`]: a cache, so two series with and without it are equal.
#[derive(Debug, Clone, Default)]
struct Raised(std::sync::OnceLock<Box<[std::sync::OnceLock<(u64, Labels)>]>>);

impl PartialEq for Raised {
    fn eq(&self, _: &Raised) -> bool {
        true
    }
}

/// What the operator remembers (checkpointed with the job).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SloState {
    /// By label values (joined by U+001F), in the order of `labels`.
    pub series: BTreeMap<String, Tracked>,
    /// The newest pane evaluated.
    pub last: Option<i64>,
    /// Pane rows of new label sets folded into the overflow series, and their events.
    pub folded_rows: u64,
    pub folded_events: u64,
    pub evaluations: u64,
}

pub struct SloEvaluator {
    layout: Layout,
    /// Per alert pair: its long and short window's index in the layout, and its threshold
    /// on the bad fraction (`burn_rate × (1 - objective)`), exact and as a float.
    pairs: Vec<Pair>,
    /// Column name suffix per layout window (`5m`, `1h`, `30d`).
    window_names: Vec<String>,
    /// The window `time_to_exhaustion` takes the current burn from: the fastest pair's long one.
    current_window: usize,
    schema: SchemaRef,
    state: SloState,
    logged_overflow: bool,
    /// The job's name, `[slo]` and error budget, shared with the deferred observations.
    texts: Arc<Texts>,
}

struct Pair {
    /// Index into the config's alerts.
    alert: usize,
    long: usize,
    short: usize,
    threshold: Decimal,
    threshold_f: f64,
    rule: String,
}

impl SloEvaluator {
    pub fn new(job: &str, config: SloConfig) -> SloEvaluator {
        let pane = config.pane;
        let mut windows: Vec<(Millis, String)> = Vec::new();
        for a in &config.alerts {
            for (w, text) in [(a.long, &a.long_text), (a.short, &a.short_text)] {
                if !windows.iter().any(|(d, _)| *d == w) {
                    windows.push((w, compact(text)));
                }
            }
        }
        windows.sort_by_key(|(d, _)| *d);
        let panes = |d: Millis| (d / pane).max(1) as u32;
        let layout = Layout::new(windows.iter().map(|(d, _)| panes(*d)).collect(), panes(config.period));
        // Burn-rate columns: every alert window, then the period's (in the ring, or in blocks).
        let mut window_names: Vec<String> = windows.iter().map(|(_, n)| n.clone()).collect();
        if !windows.iter().any(|(d, _)| panes(*d) == panes(config.period)) {
            window_names.push(compact(&config.period_text));
        }
        let index = |d: Millis| layout.windows.iter().position(|&w| w == panes(d)).expect("every alert window is in the layout");
        let budget = config.budget();
        let pairs: Vec<Pair> = config
            .alerts
            .iter()
            .enumerate()
            .map(|(alert, a)| {
                let threshold = a.burn_rate * budget;
                let threshold_f = threshold.to_f64().unwrap_or(f64::MAX);
                Pair { alert, long: index(a.long), short: index(a.short), threshold, threshold_f, rule: a.rule() }
            })
            .collect();
        let current_window = config.alerts.iter().min_by_key(|a| a.long).map(|a| index(a.long)).unwrap_or(0);
        let mut fields = vec![
            Field::new("window_start", timestamp_type(), false),
            Field::new("window_end", timestamp_type(), false),
        ];
        fields.extend(config.labels.iter().map(|l| Field::new(l, DataType::Utf8, false)));
        fields.push(Field::new("events", DataType::Int64, false));
        fields.push(Field::new("bad_events", DataType::Int64, false));
        fields.extend(window_names.iter().map(|n| Field::new(format!("burn_rate_{n}"), DataType::Float64, true)));
        fields.push(Field::new("error_budget_remaining", DataType::Float64, false));
        fields.push(Field::new("time_to_exhaustion_s", DataType::Float64, true));
        fields.push(Field::new("firing", DataType::Utf8, true));
        let texts = Arc::new(Texts { job: job.into(), config, budget: budget.to_f64().unwrap_or(0.0) });
        SloEvaluator {
            texts,
            layout,
            pairs,
            window_names,
            current_window,
            schema: Arc::new(Schema::new(fields)),
            state: SloState::default(),
            logged_overflow: false,
        }
    }

    /// Heap bytes one series takes at most, whatever its traffic (its ring whole).
    pub fn bytes_per_series(&self) -> usize {
        self.layout.bytes_per_series()
    }

    /// Heap bytes a series takes now, on average (rings grow with a series' age).
    pub fn mean_bytes_per_series(&self) -> usize {
        let n = self.state.series.len();
        if n == 0 {
            return 0;
        }
        self.state.series.values().map(|t| t.series.heap_bytes()).sum::<usize>() / n
    }

    pub fn state(&self) -> &SloState {
        &self.state
    }

    pub fn restore(&mut self, state: SloState) {
        self.state = state;
    }

    /// Fold one SQL result's pane counts into the series: into `pending` for the pane being
    /// evaluated, or (`late`) as corrections of an evaluated pane. New label sets past
    /// `max_series` fold into the overflow series. `head`: where a new series starts.
    fn fold(&mut self, rows: &[RecordBatch], head: i64, late: Option<&mut BTreeMap<String, Counts>>) {
        let n = self.texts.config.labels.len();
        let overflow_key = vec![OVERFLOW; n].join(SEPARATOR);
        let mut tracked = self.state.series.len() - (n > 0 && self.state.series.contains_key(&overflow_key)) as usize;
        let mut late = late;
        let mut key = String::new();
        for batch in rows {
            // Strings may come as views and counts as other integer types: one form for all.
            let as_type = |c: usize, t: &DataType| datafusion::arrow::compute::cast(batch.column(c), t).expect("labels cast to text, counts to Int64");
            let label_columns: Vec<ArrayRef> = (0..n).map(|c| as_type(c, &DataType::Utf8)).collect();
            let events = as_type(n, &DataType::Int64);
            let good = as_type(n + 1, &DataType::Int64);
            let (events, good) = (events.as_primitive::<Int64Type>(), good.as_primitive::<Int64Type>());
            for row in 0..batch.num_rows() {
                key.clear();
                for (i, c) in label_columns.iter().enumerate() {
                    if i > 0 {
                        key.push_str(SEPARATOR);
                    }
                    let s = c.as_string::<i32>();
                    if s.is_valid(row) {
                        key.push_str(s.value(row));
                    }
                }
                let total = events.value(row).max(0) as u64;
                let good = if good.is_valid(row) { good.value(row).clamp(0, total as i64) as u64 } else { 0 };
                let counts = Counts { bad: total - good, total };
                // The common case, one lookup: a series already tracked, this pane's counts.
                if late.is_none() {
                    if let Some(t) = self.state.series.get_mut(key.as_str()) {
                        t.pending.bad += counts.bad;
                        t.pending.total += counts.total;
                        continue;
                    }
                }
                if !self.state.series.contains_key(key.as_str()) {
                    if tracked >= self.texts.config.max_series && key != overflow_key {
                        self.state.folded_rows += 1;
                        self.state.folded_events += total;
                        self.log_overflow_once();
                        key.clone_from(&overflow_key);
                    } else if key != overflow_key {
                        tracked += 1;
                    }
                    if !self.state.series.contains_key(key.as_str()) {
                        let labels = if n == 0 { Vec::new() } else { key.split(SEPARATOR).map(str::to_string).collect() };
                        let series = Series::new(&self.layout, head);
                        self.state.series.insert(key.clone(), Tracked { labels, series, pending: Counts::default(), dormant: false, raised: Raised::default() });
                    }
                }
                match late.as_deref_mut() {
                    Some(corrections) => {
                        let c = corrections.entry(key.clone()).or_default();
                        c.bad += counts.bad;
                        c.total += counts.total;
                    }
                    None => {
                        let t = self.state.series.get_mut(key.as_str()).expect("inserted");
                        t.pending.bad += counts.bad;
                        t.pending.total += counts.total;
                    }
                }
            }
        }
    }

    fn log_overflow_once(&mut self) {
        if self.logged_overflow {
            return;
        }
        self.logged_overflow = true;
        crate::log_warn!(
            "{}: more than max_series = {} label sets; new ones fold into one series with every label `{OVERFLOW}`{}. \
             Drop the exploding label from [slo] labels, or raise max_series",
            self.texts.job,
            self.texts.config.max_series,
            self.exploding_label().map(|(l, n)| format!(" (`{l}` has {n} distinct values)")).unwrap_or_default()
        );
    }

    /// The label with the most distinct values among the tracked series.
    fn exploding_label(&self) -> Option<(String, usize)> {
        let labels = || self.state.series.values().map(|t| &t.labels).filter(|l| !is_overflow(l));
        (0..self.texts.config.labels.len())
            .map(|i| (self.texts.config.labels[i].clone(), labels().map(|k| &k[i]).collect::<BTreeSet<_>>().len()))
            .max_by_key(|(_, n)| *n)
    }

    /// Move every series to pane `p` (with its pending counts when `fold`, else none) and
    /// evaluate the pane's end.
    fn evaluate_pane(&mut self, p: i64, fold: bool, want_rows: bool, rows: &mut RowsBuilder) -> Vec<Observation> {
        let (layout, pairs) = (&self.layout, &self.pairs);
        for t in self.state.series.values_mut() {
            let c = if fold { std::mem::take(&mut t.pending) } else { Counts::default() };
            if t.dormant && c.total == 0 && !want_rows {
                continue;
            }
            if t.series.head() < p {
                t.series.advance(layout, p, c);
            }
            let burns_none = pairs.iter().all(|pair| t.series.window(pair.long).bad == 0 || t.series.window(pair.short).bad == 0);
            t.dormant = burns_none && !want_rows && t.series.empty_from(layout).is_some();
        }
        self.state.series.retain(|_, t| match t.dormant {
            // As `is_empty` would say once moved to `p`.
            true => t.series.empty_from(layout).is_some_and(|from| p < from),
            false => !t.series.is_empty(layout),
        });
        self.state.last = Some(p);
        self.state.evaluations += 1;
        let t = (p + 1) * self.texts.config.pane;
        let mut out = Vec::new();
        for tracked in self.state.series.values().filter(|t| !t.dormant) {
            let (labels, series) = (&tracked.labels, &tracked.series);
            let mut firing: Vec<&str> = Vec::new();
            for (i, pair) in self.pairs.iter().enumerate() {
                let (long, short) = (series.window(pair.long), series.window(pair.short));
                if !(self.burns(long, pair) && self.burns(short, pair)) {
                    continue;
                }
                firing.push(&pair.rule);
                out.push(self.observation(t, tracked, i, long, short));
            }
            if want_rows {
                rows.push(self, t, labels, series, &firing);
            }
        }
        out
    }

    /// The window burns faster than the pair's rate, with enough events to say so.
    fn burns(&self, c: Counts, pair: &Pair) -> bool {
        if c.total == 0 || c.total < self.texts.config.min_events {
            return false;
        }
        let fraction = c.bad as f64 / c.total as f64;
        if (fraction - pair.threshold_f).abs() > 1e-9 * pair.threshold_f.abs() {
            return fraction > pair.threshold_f;
        }
        // Close to the threshold: compare exactly, bad > threshold × total.
        match pair.threshold.checked_mul(Decimal::from(c.total)) {
            Some(limit) => Decimal::from(c.bad) > limit,
            None => fraction > pair.threshold_f,
        }
    }

    fn burn_rate(&self, c: Counts) -> Option<f64> {
        burn_rate(c, self.texts.budget)
    }

    /// Budget left over the period: 1 when nothing was bad, below 0 when overspent.
    fn budget_remaining(&self, series: &Series) -> f64 {
        let p = series.period(&self.layout);
        if p.total == 0 || self.texts.budget <= 0.0 {
            return 1.0;
        }
        1.0 - (p.bad as f64 / p.total as f64) / self.texts.budget
    }

    /// Seconds until the budget is gone at the current burn; `None` when it is not burning.
    fn time_to_exhaustion(&self, series: &Series) -> Option<f64> {
        let remaining = self.budget_remaining(series);
        if remaining <= 0.0 {
            return Some(0.0);
        }
        let burn = self.burn_rate(series.window(self.current_window))?;
        (burn > 0.0).then(|| remaining * (self.texts.config.period as f64 / 1000.0) / burn)
    }

    /// Pair `i` holds for this series: its labels now (built once per series and pair), its
    /// texts when a record shows them.
    fn observation(&self, t: Millis, tracked: &Tracked, i: usize, long: Counts, short: Counts) -> Observation {
        let (pair, series) = (&self.pairs[i], &tracked.series);
        let alert = &self.texts.config.alerts[pair.alert];
        let raised = tracked.raised.0.get_or_init(|| (0..self.pairs.len()).map(|_| std::sync::OnceLock::new()).collect());
        let (fingerprint, labels) = raised[i].get_or_init(|| {
            let mut labels: BTreeMap<String, String> = self.texts.config.labels.iter().cloned().zip(tracked.labels.iter().cloned()).collect();
            labels.insert("long_window".into(), alert.long_text.clone());
            labels.insert("short_window".into(), alert.short_text.clone());
            (fingerprint_of(&self.texts.job, &pair.rule, &labels), Labels::new(labels))
        });
        let facts = Facts {
            alert: pair.alert,
            t,
            labels: labels.clone(),
            long,
            short,
            remaining: self.budget_remaining(series),
            time_to_exhaustion: self.time_to_exhaustion(series),
        };
        let texts = self.texts.clone();
        Observation {
            rule: pair.rule.clone(),
            severity: alert.severity.clone(),
            labels: labels.clone(),
            fingerprint: Some(*fingerprint),
            annotations: BTreeMap::new(),
            value: Value::Null,
            threshold: Value::Null,
            evidence: Value::Null,
            deferred: Some(Deferred(Arc::new(move || texts.details(&facts)))),
        }
    }
}

/// What an SLO observation's texts are built from (see [`Observation::deferred`]).
struct Facts {
    alert: usize,
    t: Millis,
    /// The observation's labels: the series' and the pair's windows.
    labels: Labels,
    long: Counts,
    short: Counts,
    remaining: f64,
    time_to_exhaustion: Option<f64>,
}

/// The job's side of an observation's texts, shared by every deferred one.
struct Texts {
    job: String,
    config: SloConfig,
    budget: f64,
}

impl Texts {
    fn details(&self, f: &Facts) -> Details {
        let (t, labels, long, short, remaining) = (f.t, &f.labels, f.long, f.short, f.remaining);
        let alert = &self.config.alerts[f.alert];
        let burn_rate = |c: Counts| burn_rate(c, self.budget);
        let burn_long = burn_rate(long).unwrap_or(0.0);
        let burn_short = burn_rate(short).unwrap_or(0.0);
        let threshold = alert.burn_rate.normalize().to_f64().unwrap_or(0.0);
        let mut values = Map::new();
        let series: Vec<&str> = self.config.labels.iter().map(|l| labels.get(l).map_or("", String::as_str)).collect();
        for (l, v) in self.config.labels.iter().zip(&series) {
            values.insert(l.clone(), Value::String(v.to_string()));
        }
        values.insert("long_window".into(), alert.long_text.clone().into());
        values.insert("short_window".into(), alert.short_text.clone().into());
        values.insert("burn_rate_long".into(), format!("{burn_long:.2}").into());
        values.insert("burn_rate_short".into(), format!("{burn_short:.2}").into());
        values.insert("burn_rate".into(), threshold.into());
        values.insert("error_budget_remaining".into(), format!("{:.1}%", remaining * 100.0).into());
        let who = if series.is_empty() { String::new() } else { format!(" ({})", series.join(", ")) };
        let summary = match &self.config.summary {
            Some(s) => crate::invariant::interpolate(s, &values),
            None => format!(
                "{}{who} burns its error budget {burn_long:.1}x over {} and {burn_short:.1}x over {} (alert above {threshold}x); {:.1}% of the {} budget left",
                self.job,
                alert.long_text,
                alert.short_text,
                remaining * 100.0,
                self.config.period_text
            ),
        };
        let mut annotations = BTreeMap::from([("summary".to_string(), summary)]);
        if let Some(r) = &self.config.runbook_url {
            annotations.insert("runbook_url".into(), r.clone());
        }
        let window = |text: &str, c: Counts, burn: f64| json!({"window": text, "events": c.total, "bad_events": c.bad, "burn_rate": burn});
        Details {
            annotations,
            value: json_number(burn_long),
            threshold: json_number(threshold),
            evidence: json!({
                "evaluated_at": rfc3339(t),
                "objective": self.config.objective.normalize().to_string(),
                "long": window(&alert.long_text, long, burn_long),
                "short": window(&alert.short_text, short, burn_short),
                "error_budget_remaining": json_number(remaining),
                "period": self.config.period_text,
                "time_to_exhaustion_s": f.time_to_exhaustion.map(json_number),
            }),
        }
    }
}

/// Bad over total as a multiple of the error budget; `None` with no events or no budget.
fn burn_rate(c: Counts, budget: f64) -> Option<f64> {
    (c.total > 0 && budget > 0.0).then(|| c.bad as f64 / c.total as f64 / budget)
}

fn is_overflow(labels: &[String]) -> bool {
    // (a series whose every label is the overflow value)
    !labels.is_empty() && labels.iter().all(|l| l == OVERFLOW)
}

fn json_number(x: f64) -> Value {
    serde_json::Number::from_f64(x).map(Value::Number).unwrap_or(Value::Null)
}

impl Evaluator for SloEvaluator {
    crate::alert::state_in_checkpoints!();

    fn kind(&self) -> &'static str {
        "slo"
    }

    fn evaluate(&mut self, e: &Evaluation) -> anyhow::Result<Verdicts> {
        let pane = self.texts.config.pane;
        let p = e.window_start.div_euclid(pane);
        let mut verdicts = Verdicts::default();
        if e.update || self.state.last.is_some_and(|last| p <= last) {
            // A late record corrected a pane already evaluated: later evaluations see it.
            let mut corrections = BTreeMap::new();
            let head = self.state.last.unwrap_or(p);
            self.fold(e.rows, head, Some(&mut corrections));
            for (key, c) in corrections {
                if let Some(t) = self.state.series.get_mut(&key) {
                    if t.series.head() < head {
                        t.series.advance(&self.layout, head, Counts::default());
                    }
                    t.dormant = false;
                    t.series.correct(&self.layout, p, c);
                }
            }
            return Ok(verdicts);
        }
        let mut rows = RowsBuilder::new(self);
        let mut q = self.state.last.map(|l| l + 1).unwrap_or(p);
        // Pane ends with no events are evaluated too; once no series has anything left in
        // any window, the rest of a gap would say nothing.
        while q < p {
            if self.state.series.is_empty() {
                break;
            }
            let holding = self.evaluate_pane(q, false, e.want_rows, &mut rows);
            verdicts.evaluations.push(((q + 1) * pane, Holding::All(holding)));
            q += 1;
        }
        self.fold(e.rows, p - 1, None);
        let holding = self.evaluate_pane(p, true, e.want_rows, &mut rows);
        verdicts.evaluations.push(((p + 1) * pane, Holding::All(holding)));
        if e.want_rows {
            verdicts.rows = Some(vec![rows.finish(&self.schema)?]);
        } else {
            verdicts.rows = Some(Vec::new());
        }
        Ok(verdicts)
    }

    fn rows_schema(&self) -> Option<SchemaRef> {
        Some(self.schema.clone())
    }

    fn stats(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("series", self.state.series.len() as u64),
            ("evaluations", self.state.evaluations),
            ("folded_label_sets", self.state.folded_rows),
            ("folded_events", self.state.folded_events),
            ("state_bytes_per_series", self.mean_bytes_per_series() as u64),
        ]
    }
}

/// The rows of one or more evaluations, column by column.
struct RowsBuilder {
    start: TimestampMillisecondBuilder,
    end: TimestampMillisecondBuilder,
    labels: Vec<StringBuilder>,
    events: Int64Builder,
    bad: Int64Builder,
    burn: Vec<Float64Builder>,
    remaining: Float64Builder,
    exhaustion: Float64Builder,
    firing: StringBuilder,
}

impl RowsBuilder {
    fn new(e: &SloEvaluator) -> Self {
        RowsBuilder {
            start: TimestampMillisecondBuilder::new().with_timezone("UTC"),
            end: TimestampMillisecondBuilder::new().with_timezone("UTC"),
            labels: e.texts.config.labels.iter().map(|_| StringBuilder::new()).collect(),
            events: Int64Builder::new(),
            bad: Int64Builder::new(),
            burn: e.window_names.iter().map(|_| Float64Builder::new()).collect(),
            remaining: Float64Builder::new(),
            exhaustion: Float64Builder::new(),
            firing: StringBuilder::new(),
        }
    }

    fn push(&mut self, e: &SloEvaluator, t: Millis, labels: &[String], series: &Series, firing: &[&str]) {
        self.start.append_value(t - e.texts.config.pane);
        self.end.append_value(t);
        for (b, v) in self.labels.iter_mut().zip(labels) {
            b.append_value(v);
        }
        let pane = series.pane();
        self.events.append_value(pane.total as i64);
        self.bad.append_value(pane.bad as i64);
        for (i, b) in self.burn.iter_mut().enumerate() {
            let c = if i < e.layout.windows.len() { series.window(i) } else { series.period(&e.layout) };
            b.append_option(e.burn_rate(c));
        }
        self.remaining.append_value(e.budget_remaining(series));
        self.exhaustion.append_option(e.time_to_exhaustion(series));
        if firing.is_empty() { self.firing.append_null() } else { self.firing.append_value(firing.join(",")) }
    }

    fn finish(mut self, schema: &SchemaRef) -> anyhow::Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = vec![Arc::new(self.start.finish()), Arc::new(self.end.finish())];
        columns.extend(self.labels.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        columns.push(Arc::new(self.events.finish()));
        columns.push(Arc::new(self.bad.finish()));
        columns.extend(self.burn.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        columns.push(Arc::new(self.remaining.finish()));
        columns.push(Arc::new(self.exhaustion.finish()));
        columns.push(Arc::new(self.firing.finish()));
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }
}
