//! The SLO operator: pane counts in, burn-rate evaluations and rows out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use hashbrown::DefaultHashBuilder;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::store::{Counts, Layout, Slot, Store, Touched};
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

/// What the operator remembers (checkpointed with the job): the series' keys by slot and their
/// counts by pane. What [`Series`] holds is rebuilt from it on restore.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SloState {
    /// Per slot of the store: the series' label values joined by U+001F (`None`: a free slot).
    #[serde(default)]
    keys: Vec<Option<Arc<str>>>,
    #[serde(default)]
    store: Store,
    /// A checkpoint of rings per series (read, never written): see [`super::legacy`].
    #[serde(default, skip_serializing)]
    series: super::legacy::Legacy,
    /// The newest pane evaluated.
    pub last: Option<i64>,
    /// Pane rows of new label sets folded into the overflow series, and their events.
    pub folded_rows: u64,
    pub folded_events: u64,
    pub evaluations: u64,
}

/// The series tracked, found by key, in key order, and those that may burn.
#[derive(Default)]
struct Series {
    /// With a fast hash: every pane row looks its series up, and SipHash was a tenth of it.
    by_key: HashMap<Key, Slot, DefaultHashBuilder>,
    /// Every series in key order (rows go out in it).
    ordered: BTreeMap<Arc<str>, Slot>,
    /// The series some pair may burn for: in its long and its short window some event was
    /// bad. The others cannot burn until they count a bad event (windows only lose events
    /// between counts), so a pane end evaluates these only; in key order, as observations go.
    hot: BTreeMap<Arc<str>, Slot>,
    slots: Vec<Option<Tracked>>,
    free: Vec<Slot>,
}

/// A series key as the index holds it: inline up to 22 bytes (label values are mostly short),
/// so finding a series reads the index's table and not a string elsewhere in memory (that was
/// a cache miss per pane row at 10,000 series).
#[derive(Clone)]
enum Key {
    Inline { len: u8, bytes: [u8; 22] },
    Heap(Box<str>),
}

impl Key {
    fn new(s: &str) -> Key {
        match s.len() {
            len @ 0..=22 => {
                let mut bytes = [0; 22];
                bytes[..len].copy_from_slice(s.as_bytes());
                Key::Inline { len: len as u8, bytes }
            }
            _ => Key::Heap(s.into()),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Key::Inline { len, bytes } => &bytes[..*len as usize],
            Key::Heap(s) => s.as_bytes(),
        }
    }
}

impl std::borrow::Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl std::hash::Hash for Key {
    // As `[u8]` hashes, so the key's bytes find it.
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.as_bytes().hash(h)
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Key {}

/// One series: its labels, whether it is hot, and what its alerts look like once raised.
struct Tracked {
    key: Arc<str>,
    labels: Vec<String>,
    hot: bool,
    /// Per alert pair, once it first holds: its labels and fingerprint, shared by every
    /// observation of it after (a burning series holds at every pane).
    raised: Box<[std::sync::OnceLock<(u64, Labels)>]>,
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
    series: Series,
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
        let state = SloState { store: Store::new(&layout), ..SloState::default() };
        SloEvaluator {
            texts,
            layout,
            pairs,
            window_names,
            current_window,
            schema: Arc::new(Schema::new(fields)),
            state,
            series: Series::default(),
            logged_overflow: false,
        }
    }

    /// Heap bytes a series takes now, on average (its counts, its sums, its key and labels).
    pub fn mean_bytes_per_series(&self) -> usize {
        let n = self.series.by_key.len();
        if n == 0 {
            return 0;
        }
        let per_slot = std::mem::size_of::<Option<Tracked>>() + std::mem::size_of::<Option<Arc<str>>>();
        let names: usize = self.series.slots.iter().flatten().map(|t| 3 * (t.key.len() + 48) + t.labels.iter().map(|l| l.len() + 24).sum::<usize>()).sum();
        (self.state.store.heap_bytes() + self.series.slots.capacity() * per_slot + names) / n
    }

    pub fn state(&self) -> &SloState {
        &self.state
    }

    /// Take a checkpoint's state: the running sums and the series' index are rebuilt from it.
    pub fn restore(&mut self, state: SloState) {
        self.state = state;
        let legacy = std::mem::take(&mut self.state.series);
        if legacy.is_empty() {
            self.state.store.rebuild(&self.layout);
        } else {
            self.restore_legacy(legacy);
        }
        self.series = Series::default();
        let keys = self.state.keys.clone();
        self.series.slots = (0..keys.len()).map(|_| None).collect();
        for (slot, key) in keys.iter().enumerate() {
            match key {
                Some(key) => self.track(slot as Slot, key.clone()),
                None => self.series.free.push(slot as Slot),
            }
        }
        self.series.free.reverse();
        for slot in 0..self.state.keys.len() as Slot {
            self.state.store.reserve(slot);
            if self.series.slots[slot as usize].is_some() && self.state.store.is_empty(&self.layout, slot) {
                self.forget(slot);
            }
            self.rejudge(slot);
        }
    }

    /// Rings per series into the store: each series at the slot of its rank in key order.
    fn restore_legacy(&mut self, legacy: super::legacy::Legacy) {
        let now = self.state.last.or(legacy.values().map(|t| t.series_head()).max()).unwrap_or(0);
        let (mut panes, mut blocks) = (Vec::new(), Vec::new());
        self.state.keys = Vec::new();
        for (slot, (key, tracked)) in legacy.into_iter().enumerate() {
            let (p, b) = super::legacy::counts_at(&tracked.series, &self.layout, now);
            panes.extend(p.into_iter().map(|(q, c)| (slot as Slot, q, c)));
            blocks.extend(b.into_iter().map(|(q, c)| (slot as Slot, q, c)));
            self.state.keys.push(Some(Arc::from(key)));
        }
        self.state.store = Store::from_parts(&self.layout, now, &panes, &blocks);
    }

    /// A slot for a new series.
    fn insert(&mut self, key: &str) -> Slot {
        let slot = self.series.free.pop().unwrap_or(self.state.keys.len() as Slot);
        let key: Arc<str> = Arc::from(key);
        if slot as usize == self.state.keys.len() {
            self.state.keys.push(None);
            self.series.slots.push(None);
        }
        self.state.keys[slot as usize] = Some(key.clone());
        self.state.store.reserve(slot);
        self.track(slot, key);
        slot
    }

    fn track(&mut self, slot: Slot, key: Arc<str>) {
        let labels = if self.texts.config.labels.is_empty() { Vec::new() } else { key.split(SEPARATOR).map(str::to_string).collect() };
        self.series.by_key.insert(Key::new(&key), slot);
        self.series.ordered.insert(key.clone(), slot);
        let raised = (0..self.pairs.len()).map(|_| std::sync::OnceLock::new()).collect();
        self.series.slots[slot as usize] = Some(Tracked { key, labels, hot: false, raised });
    }

    /// Forget a series with nothing left in any window or the period.
    fn forget(&mut self, slot: Slot) {
        let Some(t) = self.series.slots[slot as usize].take() else { return };
        self.series.by_key.remove(t.key.as_bytes());
        self.series.ordered.remove(&t.key);
        if t.hot {
            self.series.hot.remove(&t.key);
        }
        self.state.keys[slot as usize] = None;
        self.state.store.forget(&self.layout, slot);
        self.series.free.push(slot);
    }

    /// Whether some pair may burn for the series in `slot`, after its bad counts changed.
    fn rejudge(&mut self, slot: Slot) {
        let store = &self.state.store;
        let Some(t) = self.series.slots.get_mut(slot as usize).and_then(Option::as_mut) else { return };
        let hot = self.pairs.iter().any(|pair| store.window(slot, pair.long).bad > 0 && store.window(slot, pair.short).bad > 0);
        if hot != t.hot {
            t.hot = hot;
            if hot {
                self.series.hot.insert(t.key.clone(), slot);
            } else {
                self.series.hot.remove(&t.key);
            }
        }
    }

    /// After a move or a correction: forget the series left empty, rejudge those whose bad
    /// counts changed.
    fn settle(&mut self, touched: &Touched) {
        for &slot in &touched.emptier {
            if self.series.slots[slot as usize].is_some() && self.state.store.is_empty(&self.layout, slot) {
                self.forget(slot);
            }
        }
        for &slot in &touched.bad {
            self.rejudge(slot);
        }
    }

    /// Fold one SQL result's pane counts into the series: into the store's pane being folded
    /// in, or (`late`) as corrections of an evaluated pane. New label sets past `max_series`
    /// fold into the overflow series.
    fn fold(&mut self, rows: &[RecordBatch], late: Option<&mut HashMap<Slot, Counts>>) {
        let n = self.texts.config.labels.len();
        let overflow_key = vec![OVERFLOW; n].join(SEPARATOR);
        let mut tracked = self.series.by_key.len() - (n > 0 && self.series.by_key.contains_key(overflow_key.as_bytes())) as usize;
        let mut late = late;
        let mut key = String::new();
        for batch in rows {
            // Strings may come as views and counts as other integer types: one form for all.
            let as_type = |c: usize, t: &DataType| datafusion::arrow::compute::cast(batch.column(c), t).expect("labels cast to text, counts to Int64");
            let label_columns: Vec<ArrayRef> = (0..n).map(|c| as_type(c, &DataType::Utf8)).collect();
            let events = as_type(n, &DataType::Int64);
            let good = as_type(n + 1, &DataType::Int64);
            let (events, good) = (events.as_primitive::<Int64Type>(), good.as_primitive::<Int64Type>());
            let labels: Vec<_> = label_columns.iter().map(|c| c.as_string::<i32>()).collect();
            for row in 0..batch.num_rows() {
                let total = events.value(row).max(0) as u64;
                let good = if good.is_valid(row) { good.value(row).clamp(0, total as i64) as u64 } else { 0 };
                let counts = Counts { bad: total - good, total };
                // One label (the usual case) is its own key: found without building one.
                let known = match labels.as_slice() {
                    [only] => self.series.by_key.get(only.is_valid(row).then(|| only.value(row)).unwrap_or("").as_bytes()).copied(),
                    _ => None,
                };
                let slot = match known {
                    Some(slot) => slot,
                    None => {
                        key.clear();
                        for (i, s) in labels.iter().enumerate() {
                            if i > 0 {
                                key.push_str(SEPARATOR);
                            }
                            if s.is_valid(row) {
                                key.push_str(s.value(row));
                            }
                        }
                        self.slot_of(&key, &mut tracked, total, &overflow_key)
                    }
                };
                match late.as_deref_mut() {
                    Some(corrections) => {
                        let c = corrections.entry(slot).or_default();
                        c.bad += counts.bad;
                        c.total += counts.total;
                    }
                    None => self.state.store.add(slot, counts),
                }
            }
        }
    }

    /// The slot of the series `key`, tracked first when new: the overflow series' once
    /// `tracked` (the series tracked, overflow aside) reached `max_series`.
    fn slot_of(&mut self, key: &str, tracked: &mut usize, total: u64, overflow_key: &str) -> Slot {
        if let Some(&slot) = self.series.by_key.get(key.as_bytes()) {
            return slot;
        }
        let mut key = key;
        if *tracked >= self.texts.config.max_series && key != overflow_key {
            self.state.folded_rows += 1;
            self.state.folded_events += total;
            self.log_overflow_once();
            key = overflow_key;
        } else if key != overflow_key {
            *tracked += 1;
        }
        match self.series.by_key.get(key.as_bytes()) {
            Some(&slot) => slot,
            None => self.insert(key),
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
        let labels = || self.series.slots.iter().flatten().map(|t| &t.labels).filter(|l| !is_overflow(l));
        (0..self.texts.config.labels.len())
            .map(|i| (self.texts.config.labels[i].clone(), labels().map(|k| &k[i]).collect::<BTreeSet<_>>().len()))
            .max_by_key(|(_, n)| *n)
    }

    /// Evaluate the pane ends with no events after the last evaluated pane and before pane
    /// `p`: windows slide on without events too. Once no series has anything left in any
    /// window, the rest of a gap would say nothing.
    fn evaluate_gap(&mut self, p: i64, want_rows: bool, rows: &mut RowsBuilder, verdicts: &mut Verdicts) {
        let pane = self.texts.config.pane;
        let Some(last) = self.state.last else { return };
        for q in last + 1..p {
            if self.series.by_key.is_empty() {
                break;
            }
            let holding = self.evaluate_pane(q, want_rows, rows);
            verdicts.evaluations.push(((q + 1) * pane, Holding::All(holding)));
        }
    }

    /// Move every series to pane `p` (with the counts folded in) and evaluate the pane's end:
    /// the hot series, or every series when rows are wanted.
    fn evaluate_pane(&mut self, p: i64, want_rows: bool, rows: &mut RowsBuilder) -> Vec<Observation> {
        let mut touched = Touched::default();
        self.state.store.advance(&self.layout, p, &mut touched);
        self.settle(&touched);
        self.state.last = Some(p);
        self.state.evaluations += 1;
        let t = (p + 1) * self.texts.config.pane;
        let store = &self.state.store;
        if !want_rows {
            let mut out = Vec::with_capacity(self.series.hot.len());
            for &slot in self.series.hot.values() {
                let tracked = self.series.slots[slot as usize].as_ref().expect("a hot series is tracked");
                for (i, pair) in self.pairs.iter().enumerate() {
                    let (long, short) = (store.window(slot, pair.long), store.window(slot, pair.short));
                    if self.burns(long, pair) && self.burns(short, pair) {
                        out.push(self.observation(t, tracked, slot, i, long, short));
                    }
                }
            }
            return out;
        }
        let mut out = Vec::new();
        let panes = store.head_pane(&self.layout);
        for &slot in self.series.ordered.values() {
            let tracked = self.series.slots[slot as usize].as_ref().expect("an ordered series is tracked");
            let mut firing: Vec<&str> = Vec::new();
            for (i, pair) in self.pairs.iter().enumerate() {
                let (long, short) = (store.window(slot, pair.long), store.window(slot, pair.short));
                if self.burns(long, pair) && self.burns(short, pair) {
                    firing.push(&pair.rule);
                    out.push(self.observation(t, tracked, slot, i, long, short));
                }
            }
            rows.push(self, t, &tracked.labels, slot, panes.get(&slot).copied().unwrap_or_default(), &firing);
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
    fn budget_remaining(&self, slot: Slot) -> f64 {
        let p = self.state.store.period(&self.layout, slot);
        if p.total == 0 || self.texts.budget <= 0.0 {
            return 1.0;
        }
        1.0 - (p.bad as f64 / p.total as f64) / self.texts.budget
    }

    /// Seconds until the budget is gone at the current burn; `None` when it is not burning.
    fn time_to_exhaustion(&self, slot: Slot) -> Option<f64> {
        let remaining = self.budget_remaining(slot);
        if remaining <= 0.0 {
            return Some(0.0);
        }
        let burn = self.burn_rate(self.state.store.window(slot, self.current_window))?;
        (burn > 0.0).then(|| remaining * (self.texts.config.period as f64 / 1000.0) / burn)
    }

    /// Pair `i` holds for this series: its labels now (built once per series and pair), its
    /// texts when a record shows them.
    fn observation(&self, t: Millis, tracked: &Tracked, slot: Slot, i: usize, long: Counts, short: Counts) -> Observation {
        let pair = &self.pairs[i];
        let alert = &self.texts.config.alerts[pair.alert];
        let (fingerprint, labels) = tracked.raised[i].get_or_init(|| {
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
            remaining: self.budget_remaining(slot),
            time_to_exhaustion: self.time_to_exhaustion(slot),
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
            let mut fixes = HashMap::new();
            self.fold(e.rows, Some(&mut fixes));
            let mut touched = Touched::default();
            self.state.store.correct(&self.layout, p, &fixes, &mut touched);
            // A new series whose pane is too old to correct holds nothing.
            touched.emptier.extend(fixes.keys());
            self.settle(&touched);
            return Ok(verdicts);
        }
        let mut rows = RowsBuilder::new(self);
        self.evaluate_gap(p, e.want_rows, &mut rows, &mut verdicts);
        if self.series.by_key.is_empty() && self.state.store.head().is_some_and(|h| h < p - 1) {
            self.state.store.restart(p - 1);
        }
        self.fold(e.rows, None);
        let holding = self.evaluate_pane(p, e.want_rows, &mut rows);
        verdicts.evaluations.push(((p + 1) * pane, Holding::All(holding)));
        if e.want_rows {
            verdicts.rows = Some(vec![rows.finish(&self.schema)?]);
        } else {
            verdicts.rows = Some(Vec::new());
        }
        Ok(verdicts)
    }

    fn time_passes(&mut self, until: Millis, _partition_names: &[String], want_rows: bool) -> anyhow::Result<Verdicts> {
        let mut verdicts = Verdicts::default();
        if self.state.last.is_none() {
            return Ok(verdicts);
        }
        let mut rows = RowsBuilder::new(self);
        // The panes ending at or before `until`.
        self.evaluate_gap(until.div_euclid(self.texts.config.pane), want_rows, &mut rows, &mut verdicts);
        if want_rows && !verdicts.evaluations.is_empty() {
            verdicts.rows = Some(vec![rows.finish(&self.schema)?]);
        }
        Ok(verdicts)
    }

    fn rows_schema(&self) -> Option<SchemaRef> {
        Some(self.schema.clone())
    }

    fn stats(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("series", self.series.by_key.len() as u64),
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

    fn push(&mut self, e: &SloEvaluator, t: Millis, labels: &[String], slot: Slot, pane: Counts, firing: &[&str]) {
        self.start.append_value(t - e.texts.config.pane);
        self.end.append_value(t);
        for (b, v) in self.labels.iter_mut().zip(labels) {
            b.append_value(v);
        }
        self.events.append_value(pane.total as i64);
        self.bad.append_value(pane.bad as i64);
        for (i, b) in self.burn.iter_mut().enumerate() {
            let store = &e.state.store;
            let c = if i < e.layout.windows.len() { store.window(slot, i) } else { store.period(&e.layout, slot) };
            b.append_option(e.burn_rate(c));
        }
        self.remaining.append_value(e.budget_remaining(slot));
        self.exhaustion.append_option(e.time_to_exhaustion(slot));
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

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};

    fn evaluator() -> SloEvaluator {
        let text = "name = \"t\"\nkind = \"slo\"\n[slo]\nobjective = 0.99\ngood = \"status < 500\"\nlabels = [\"service\"]\n\
            [source]\nkind = \"file\"\npath = \"x.jsonl\"\n[source.schema]\nts = \"timestamp\"\nservice = \"string\"\nstatus = \"int64\"\n\
            [event_time]\ncolumn = \"ts\"\n";
        let job = crate::job::parse(std::path::Path::new("t.toml"), text).expect("the job parses");
        SloEvaluator::new("t", job.config::<SloConfig>().expect("an SLO job").clone())
    }

    /// Pane counts of a few services: `(service, events, good)`.
    fn batch(rows: &[(String, i64, i64)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("service", DataType::Utf8, false),
            Field::new("events", DataType::Int64, false),
            Field::new("good", DataType::Int64, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0.clone()))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
        ];
        RecordBatch::try_new(schema, columns).unwrap()
    }

    /// A pane row finds its series again whichever way its key is read: straight from the one
    /// label column, or joined from several; a null label value is a value of its own.
    #[test]
    fn pane_rows_find_their_series_again_by_one_label_or_several() {
        let two = |service: Option<&str>, region: Option<&str>| (service.map(String::from), region.map(String::from));
        let rows = [two(Some("api"), Some("eu")), two(Some("api"), Some("us")), two(None, Some("eu")), two(Some("api"), None)];
        let schema = Arc::new(Schema::new(vec![
            Field::new("service", DataType::Utf8, true),
            Field::new("region", DataType::Utf8, true),
            Field::new("events", DataType::Int64, false),
            Field::new("good", DataType::Int64, false),
        ]));
        let pane = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter(rows.iter().map(|r| r.0.clone()))),
                Arc::new(StringArray::from_iter(rows.iter().map(|r| r.1.clone()))),
                Arc::new(Int64Array::from(vec![3; rows.len()])),
                Arc::new(Int64Array::from(vec![2; rows.len()])),
            ],
        )
        .unwrap();
        let mut by_two = SloEvaluator::new("t", {
            let mut config = evaluator().texts.config.clone();
            config.labels = vec!["service".into(), "region".into()];
            config
        });
        let mut by_one = evaluator();
        let service_only = pane.project(&[0, 2, 3]).unwrap();
        for _ in 0..3 {
            by_two.fold(std::slice::from_ref(&pane), None);
            by_one.fold(std::slice::from_ref(&service_only), None);
        }
        assert_eq!(by_two.series.by_key.len(), 4, "each label pair once, however many panes");
        assert_eq!(by_one.series.by_key.len(), 2, "`api` and the null service, once each");
        let null = by_one.series.by_key.get("".as_bytes()).copied().expect("the null service is the empty value");
        assert_eq!(by_one.state.store.pending_of(null), Counts { bad: 3, total: 9 }, "its three panes' rows in one series");
    }

    /// What each evaluation held, as records show it.
    fn run(e: &mut SloEvaluator, panes: &[(i64, bool, Vec<(String, i64, i64)>)], out: &mut Vec<String>) {
        for (p, update, rows) in panes {
            let rows = vec![batch(rows)];
            let evaluation = Evaluation {
                window_start: p * 60_000,
                window_end: (p + 1) * 60_000,
                rows: &rows,
                input: &[],
                partition_names: &[],
                update: *update,
                changes_only: false,
                dropped: &[],
                want_rows: p % 7 == 0,
                end_of_input: false,
            };
            for (t, holding) in e.evaluate(&evaluation).unwrap().evaluations {
                let Holding::All(holding) = holding else { panic!("an SLO says what holds") };
                for o in holding {
                    out.push(format!("{t} {}", serde_json::to_string(&*o.shown()).unwrap()));
                }
            }
        }
    }

    /// A live run tells the evaluator when event time passes pane ends where no events came
    /// (a quiet stream, a second stage whose records went elsewhere): the gaps' evaluations
    /// come then, in part or whole, and say what they would say at the next pane.
    #[test]
    fn time_passing_evaluates_a_gap_as_the_next_pane_would() {
        let panes = scenario();
        let mut whole = Vec::new();
        run(&mut evaluator(), &panes, &mut whole);
        let mut told = Vec::new();
        let mut e = evaluator();
        let mut said = 0;
        for pane in &panes {
            let (p, update, _) = pane;
            if !update {
                // Halfway through the gap before `p`, then up to its start.
                let last = e.state.last.unwrap_or(*p);
                for until in [(last + p) / 2 * 60_000 + 30_000, p * 60_000] {
                    let verdicts = e.time_passes(until, &[], false).unwrap();
                    said += verdicts.evaluations.len();
                    for (t, holding) in verdicts.evaluations {
                        assert!(t <= until, "an evaluation after the time passed");
                        let Holding::All(holding) = holding else { panic!("an SLO says what holds") };
                        told.extend(holding.iter().map(|o| format!("{t} {}", serde_json::to_string(&*o.shown()).unwrap())));
                    }
                }
            }
            run(&mut e, std::slice::from_ref(pane), &mut told);
        }
        assert!(said > 100, "gaps were evaluated as time passed: {said}");
        assert_eq!(told.len(), whole.len());
        assert!(told == whole, "time passing changed what the evaluations say");
    }

    /// Six services over 2,500 panes with spells of errors, gaps of 90 panes, and late
    /// corrections (the `bool`).
    fn scenario() -> Vec<(i64, bool, Vec<(String, i64, i64)>)> {
        let mut x: u64 = 3;
        let mut panes = Vec::new();
        let mut p = 1_000;
        for step in 0..2_500 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            p += if step % 400 == 399 { 90 } else { 1 };
            let mut rows = Vec::new();
            for s in 0..6 {
                if (x >> (20 + s)) & 3 == 0 {
                    continue;
                }
                let errors = if (step / 150 + s as i32) % 5 == 0 { 30 } else { 0 };
                let events = 50 + (x >> 40) as i64 % 50;
                rows.push((format!("svc-{s}"), events, events - errors.min(events)));
            }
            panes.push((p, false, rows));
            if step % 37 == 5 {
                panes.push((p - 3, true, vec![("svc-1".to_string(), 80, 10)]));
            }
        }
        panes
    }

    /// Services with spells of errors, gaps longer than the shorter windows, and late
    /// corrections: a run restored from its checkpoint halfway says what the run without the
    /// restart says, pane for pane.
    #[test]
    fn a_run_restored_from_its_checkpoint_says_what_the_run_without_it_says() {
        let panes = scenario();
        let mut whole = Vec::new();
        run(&mut evaluator(), &panes, &mut whole);
        assert!(whole.len() > 1_000, "the scenario burns: {} observations", whole.len());
        let half = panes.len() / 2;
        let mut first = evaluator();
        let mut restarted = Vec::new();
        run(&mut first, &panes[..half], &mut restarted);
        let mut second = evaluator();
        second.load_state(&first.save_state().unwrap()).unwrap();
        assert_eq!(second.state(), first.state(), "the checkpoint holds the whole state");
        run(&mut second, &panes[half..], &mut restarted);
        assert_eq!(restarted.len(), whole.len());
        assert!(restarted == whole, "the restored run differs");
    }
}
