//! `osprey eval nab`: the default detectors on the Numenta Anomaly Benchmark's layout, scored
//! the way NAB's scorer scores them (standard profile).
//!
//! NAB's rules, as its scorer applies them: the first 15% of a series (at most 750 rows) is a
//! probation period, not scored. A detection (score ≥ threshold) inside a labelled window
//! scores `A_TP × σ(p) / σ(-1)`, where `p` is its position relative to the window's right
//! edge (−1 at the left edge, 0 at the right) and `σ(p) = 2 / (1 + e^{5p}) − 1`; a window
//! keeps only its best detection (the earliest), and a window without one costs `A_FN`. A
//! detection outside every window costs `A_FP × σ(p)`, with `p` its distance past the previous
//! window relative to that window's width (no previous window: the full cost). Standard
//! profile: A_TP 1, A_FP 0.11, A_FN 1. The total over the corpus is normalised to 100 for the
//! perfect detector and 0 for the null one (no detections), both scored by the same rules.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::detector::Detector;
use super::registry::DetectorKind;

pub const A_TP: f64 = 1.0;
pub const A_FP: f64 = 0.11;
pub const A_FN: f64 = 1.0;
const PROBATION: f64 = 0.15;

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// NAB's scaled sigmoid of a relative position.
pub fn scaled_sigmoid(p: f64) -> f64 {
    if p >= 3.0 { -1.0 } else { 2.0 * sigmoid(-5.0 * p) - 1.0 }
}

/// NAB's probation period of a series of `n` rows: its first 15%, at most 750 rows.
pub fn probation_rows(n: usize) -> usize {
    ((PROBATION * n as f64).floor()).min(PROBATION * 5000.0) as usize
}

/// NAB's raw, perfect and null scores of one series or, summed with `+=`, of several, and
/// the counts behind precision and recall.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scored {
    pub raw: f64,
    pub perfect: f64,
    pub null: f64,
    pub windows: usize,
    pub detections: usize,
    pub detections_in_windows: usize,
    pub windows_detected: usize,
}

impl std::ops::AddAssign<&Scored> for Scored {
    fn add_assign(&mut self, s: &Scored) {
        self.raw += s.raw;
        self.perfect += s.perfect;
        self.null += s.null;
        self.windows += s.windows;
        self.detections += s.detections;
        self.detections_in_windows += s.detections_in_windows;
        self.windows_detected += s.windows_detected;
    }
}

/// NAB's score of one series: `detected[i]` says whether row `i` is a detection; `windows`
/// are inclusive row ranges.
pub fn score(detected: &[bool], windows: &[(usize, usize)]) -> Scored {
    let n = detected.len();
    let probation = probation_rows(n);
    let run = |detected: &dyn Fn(usize) -> bool| -> (f64, usize, usize, usize) {
        let max_tp = scaled_sigmoid(-1.0);
        let mut window_scores: BTreeMap<usize, f64> = BTreeMap::new();
        let mut fp = 0.0;
        let (mut detections, mut in_windows) = (0, 0);
        let mut prev: Option<(usize, usize)> = None; // (right index, width)
        let mut w = 0;
        for i in 0..n {
            while w < windows.len() && windows[w].1 < i {
                prev = Some((windows[w].1, windows[w].1 - windows[w].0 + 1));
                w += 1;
            }
            let inside = w < windows.len() && windows[w].0 <= i && i <= windows[w].1;
            if inside && i >= probation {
                window_scores.entry(w).or_insert(-A_FN);
            }
            if i < probation || !detected(i) {
                continue;
            }
            detections += 1;
            if inside {
                in_windows += 1;
                let (left, right) = windows[w];
                let width = (right - left + 1) as f64;
                let p = -((right - i + 1) as f64) / width;
                let s = scaled_sigmoid(p) * A_TP / max_tp;
                let e = window_scores.entry(w).or_insert(-A_FN);
                *e = e.max(s);
            } else {
                let p = match prev {
                    None => 3.0,
                    Some((right, width)) => (i - right) as f64 / (width as f64 - 1.0).max(1.0),
                };
                fp += scaled_sigmoid(p) * A_FP;
            }
        }
        let detected_windows = window_scores.values().filter(|s| **s > -A_FN).count();
        (window_scores.values().sum::<f64>() + fp, detections, in_windows, detected_windows)
    };
    let (raw, detections, detections_in_windows, windows_detected) = run(&|i| detected[i]);
    let (perfect, ..) = run(&|i| windows.iter().any(|&(l, r)| l <= i && i <= r));
    let (null, ..) = run(&|_| false);
    let scorable = windows.iter().filter(|&&(_, r)| r >= probation).count();
    Scored { raw, perfect, null, windows: scorable, detections, detections_in_windows, windows_detected }
}

/// Normalised NAB score: 100 for the perfect detector, 0 for the null one.
pub fn normalised(raw: f64, perfect: f64, null: f64) -> f64 {
    if perfect == null { 0.0 } else { 100.0 * (raw - null) / (perfect - null) }
}

/// One series' result for the report.
pub struct SeriesResult {
    pub name: String,
    pub scored: Scored,
}

/// Stream every series of `dir` through `detectors` (fresh for each series, one set of
/// defaults), write NAB's results layout under `out/osprey/`, and score each series. `range`:
/// hand each detector the series' minimum and maximum, as NAB's runner does.
pub fn evaluate(dir: &Path, out: &Path, detectors: &[DetectorKind], threshold: f64, range: bool, progress: &mut dyn FnMut(&str)) -> anyhow::Result<Vec<SeriesResult>> {
    let labels_path = dir.join("labels.json");
    let labels: BTreeMap<String, Vec<(String, String)>> = serde_json::from_str(
        &std::fs::read_to_string(&labels_path).with_context(|| format!("cannot read {}: a NAB folder has labels.json", labels_path.display()))?,
    )
    .with_context(|| format!("{}: expected {{\"<category>/<file>.csv\": [[start, end], ...]}}", labels_path.display()))?;
    let mut files: Vec<PathBuf> = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let category = entry?.path();
        if category.is_dir() {
            for f in std::fs::read_dir(&category)? {
                let f = f?.path();
                if f.extension().is_some_and(|e| e == "csv") {
                    files.push(f);
                }
            }
        }
    }
    files.sort();
    anyhow::ensure!(!files.is_empty(), "{}: no <category>/<file>.csv series found", dir.display());
    let mut results = Vec::new();
    for file in files {
        let category = file.parent().and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let key = format!("{category}/{name}");
        progress(&key);
        let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
        let mut timestamps = Vec::new();
        let mut times = Vec::new();
        let mut values = Vec::new();
        for (n, line) in text.lines().enumerate().skip(1) {
            if line.trim().is_empty() {
                continue;
            }
            let (t, v) = line.split_once(',').with_context(|| format!("{}:{}: expected timestamp,value", file.display(), n + 1))?;
            let v: f64 = v.trim().parse().with_context(|| format!("{}:{}: `{v}` is not a number", file.display(), n + 1))?;
            let at = chrono::NaiveDateTime::parse_from_str(t.trim(), "%Y-%m-%d %H:%M:%S")
                .with_context(|| format!("{}:{}: `{t}` is not a time like 2014-02-14 14:30:00", file.display(), n + 1))?;
            times.push(at.and_utc().timestamp_millis());
            timestamps.push(t.trim().to_string());
            values.push(v);
        }
        // NAB hands every detector the series' probation period: it is the warm-up here (and
        // the baseline, for detectors that learn from a window of history). NAB also hands
        // detectors the whole series' minimum and maximum (every published NAB score was made
        // with them); `range` false withholds them, as a stream has none, and the detectors
        // that quantise learn a range from the probation instead.
        let probation = probation_rows(values.len());
        let mut dets = super::registry::for_series(detectors, probation, probation, &[&key]);
        if range {
            let (lo, hi) = super::detector::range_of(&values);
            for d in &mut dets {
                d.given_range(lo, hi);
            }
        }
        let raw: Vec<f64> = values.iter().zip(&times).map(|(v, &t)| dets.iter_mut().filter_map(|d| d.observe_at(t, &[*v])).fold(0.0, f64::max)).collect();
        let scores = alert_scores(&raw, threshold);
        let windows = window_rows(&timestamps, labels.get(&key).map(Vec::as_slice).unwrap_or(&[]));
        let in_window = |i: usize| windows.iter().any(|&(l, r)| l <= i && i <= r);
        let dest = out.join("osprey").join(&category);
        std::fs::create_dir_all(&dest).with_context(|| format!("cannot create {}", dest.display()))?;
        let mut csv = String::from("timestamp,value,anomaly_score,label\n");
        for (i, (t, v)) in timestamps.iter().zip(&values).enumerate() {
            csv.push_str(&format!("{t},{v},{:.6},{}\n", scores[i], in_window(i) as u8));
        }
        std::fs::write(dest.join(format!("osprey_{name}")), csv).with_context(|| format!("cannot write {}", dest.display()))?;
        let detected: Vec<bool> = scores.iter().map(|s| *s >= threshold).collect();
        results.push(SeriesResult { name: key, scored: score(&detected, &windows) });
    }
    Ok(results)
}

/// An anomalous run ends after this many rows clear (four hours of NAB's 5-minute rows).
pub const QUIET_ROWS: usize = 48;

/// What an alert on the series says, row by row, through the alert stage's own lifecycle
/// (`keep_firing_for` = `QUIET_ROWS` rows, one evaluation per row): a row where the alert
/// fires keeps its score; every other row is capped just below the threshold, because an alert
/// that keeps firing is deduplicated, not raised again.
pub fn alert_scores(raw: &[f64], threshold: f64) -> Vec<f64> {
    use crate::alert::lifecycle::{Lifecycle, Timing};
    let below = threshold * 0.999;
    let mut lifecycle = Lifecycle::new("eval", "anomaly", Timing { for_: 0, keep_firing_for: QUIET_ROWS as crate::Millis });
    let anomalous = crate::alert::Observation {
        deferred: None,
        fingerprint: None,
        rule: "anomaly".into(),
        severity: "warning".into(),
        labels: Default::default(),
        annotations: Default::default(),
        value: serde_json::Value::Null,
        threshold: serde_json::Value::Null,
        evidence: serde_json::Value::Null,
    };
    raw.iter()
        .enumerate()
        .map(|(i, &s)| {
            let holding = if s >= threshold { vec![anomalous.clone()] } else { Vec::new() };
            let fired = lifecycle.evaluate(i as crate::Millis, holding).iter().any(|a| a.status == crate::alert::Status::Firing);
            if fired { s } else { s.min(below) }
        })
        .collect()
}

/// Labelled windows (timestamps) as inclusive row ranges of a series.
fn window_rows(timestamps: &[String], windows: &[(String, String)]) -> Vec<(usize, usize)> {
    let parse = |s: &str| chrono::NaiveDateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S%.f").ok();
    let times: Vec<Option<chrono::NaiveDateTime>> = timestamps.iter().map(|t| parse(t)).collect();
    let mut out = Vec::new();
    for (start, end) in windows {
        let (Some(s), Some(e)) = (parse(start), parse(end)) else { continue };
        let rows: Vec<usize> = times.iter().enumerate().filter(|(_, t)| t.is_some_and(|t| t >= s && t <= e)).map(|(i, _)| i).collect();
        if let (Some(&l), Some(&r)) = (rows.first(), rows.last()) {
            out.push((l, r));
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scaled_sigmoid_matches_nab() {
        assert!((scaled_sigmoid(-1.0) - 0.98661).abs() < 1e-5);
        assert!((scaled_sigmoid(-0.5) - 0.84828).abs() < 1e-5);
        assert_eq!(scaled_sigmoid(0.0), 0.0);
        assert_eq!(scaled_sigmoid(3.0), -1.0);
    }

    #[test]
    fn a_series_scored_by_hand() {
        // 100 rows: probation is the first 15. One window, rows 40..=59 (width 20).
        let windows = [(40, 59)];
        let mut d = vec![false; 100];
        d[10] = true; // in probation: ignored
        d[20] = true; // before any window: -A_FP
        d[50] = true; // in the window: p = -(59 - 50 + 1) / 20 = -0.5
        d[55] = true; // later in the same window: the window keeps its best
        d[79] = true; // after the window: p = (79 - 59) / 19
        let s = score(&d, &windows);
        let expect = scaled_sigmoid(-0.5) / scaled_sigmoid(-1.0) - A_FP + scaled_sigmoid(20.0 / 19.0) * A_FP;
        assert!((s.raw - expect).abs() < 1e-12, "{} vs {expect}", s.raw);
        assert!((s.perfect - 1.0).abs() < 1e-12);
        assert_eq!(s.null, -1.0);
        assert_eq!((s.detections, s.detections_in_windows, s.windows_detected), (4, 2, 1));
    }
}
