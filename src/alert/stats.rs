//! Alert-fatigue figures from a stream of alert records (`osprey alerts stats`): the numbers
//! that tell a team its alerting wears people out.

use std::collections::{BTreeMap, HashMap};

use chrono::{Datelike, Timelike};
use serde::Serialize;

use super::group::{GroupConfig, Grouper};
use super::{parse_time, Alert, Status};
use crate::Millis;

/// Figures for one rule (job/rule), or for all of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    pub fired: u64,
    pub resolved: u64,
    /// Evaluations where an alert kept firing and no notification was repeated.
    pub deduplicated: u64,
    /// Transitions minus the notifications Alertmanager-style grouping made of them.
    pub grouping_saved: u64,
    /// Alerts folded into storm alerts.
    pub folded_in_storms: u64,
    /// Firings of a fingerprint within `flap_window` of its last resolve.
    pub flapping: u64,
    pub median_firing_seconds: Option<f64>,
    pub p90_firing_seconds: Option<f64>,
    /// Share of firings that started outside business hours (Monday to Friday, in UTC).
    pub outside_business_hours: Option<f64>,
    #[serde(skip)]
    durations: Vec<Millis>,
    #[serde(skip)]
    outside: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub per_rule: BTreeMap<String, Figures>,
    pub total: Figures,
}

/// What counts as flapping and as business hours.
#[derive(Debug, Clone, Copy)]
pub struct StatsOptions {
    pub flap_window: Millis,
    /// Start and end hour (UTC) of the working day, Monday to Friday.
    pub business_hours: (u32, u32),
}

impl Default for StatsOptions {
    fn default() -> Self {
        StatsOptions { flap_window: 30 * 60_000, business_hours: (9, 18) }
    }
}

/// The figures of `records`, in the order they were written.
pub fn compute(records: &[Alert], options: StatsOptions) -> Stats {
    let mut per_rule: BTreeMap<String, Figures> = BTreeMap::new();
    let mut last_resolve: HashMap<&str, Millis> = HashMap::new();
    let mut groupers: BTreeMap<String, Grouper> = BTreeMap::new();
    for a in records {
        let rule = format!("{}/{}", a.job, a.rule);
        let f = per_rule.entry(rule.clone()).or_default();
        let start = parse_time(&a.starts_at).unwrap_or(0);
        match a.status {
            Status::Firing => {
                f.fired += 1;
                if last_resolve.get(a.fingerprint.as_str()).is_some_and(|r| start - r <= options.flap_window) {
                    f.flapping += 1;
                }
                if let Some(d) = chrono::DateTime::from_timestamp_millis(start) {
                    let weekend = d.weekday().number_from_monday() > 5;
                    let (open, close) = options.business_hours;
                    if weekend || d.hour() < open || d.hour() >= close {
                        f.outside += 1;
                    }
                }
            }
            Status::Resolved => {
                f.resolved += 1;
                let end = a.ends_at.as_deref().and_then(parse_time).unwrap_or(start);
                f.durations.push(end - start);
                f.deduplicated += a.evaluations.saturating_sub(1);
                last_resolve.insert(&a.fingerprint, end);
                if a.rule == "storm" {
                    f.folded_in_storms += a.evidence.get("folded").and_then(|v| v.as_u64()).unwrap_or(0);
                }
            }
        }
        let at = match a.status {
            Status::Firing => start,
            Status::Resolved => a.ends_at.as_deref().and_then(parse_time).unwrap_or(start),
        };
        groupers.entry(rule).or_insert_with(|| Grouper::new(GroupConfig::default())).advance(at, std::slice::from_ref(a));
    }
    for (rule, mut g) in groupers {
        g.flush_pending();
        if let Some(f) = per_rule.get_mut(&rule) {
            f.grouping_saved = g.transitions.saturating_sub(g.notifications);
        }
    }
    let mut total = Figures::default();
    for f in per_rule.values_mut() {
        finish(f);
        total.fired += f.fired;
        total.resolved += f.resolved;
        total.deduplicated += f.deduplicated;
        total.grouping_saved += f.grouping_saved;
        total.folded_in_storms += f.folded_in_storms;
        total.flapping += f.flapping;
        total.outside += f.outside;
        total.durations.extend(&f.durations);
    }
    finish(&mut total);
    Stats { per_rule, total }
}

fn finish(f: &mut Figures) {
    f.durations.sort_unstable();
    let pick = |q: f64| -> Option<f64> {
        if f.durations.is_empty() {
            return None;
        }
        let i = ((f.durations.len() - 1) as f64 * q).round() as usize;
        Some(f.durations[i] as f64 / 1000.0)
    };
    f.median_firing_seconds = pick(0.5);
    f.p90_firing_seconds = pick(0.9);
    f.outside_business_hours = (f.fired > 0).then(|| f.outside as f64 / f.fired as f64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::lifecycle::{Lifecycle, Timing};
    use crate::alert::Observation;

    fn obs(key: &str) -> Observation {
        crate::alert::observation("r", "page", &[("key", key)])
    }

    #[test]
    fn flapping_durations_dedup_and_night_firings_are_counted() {
        let monday_9 = 1_767_603_600_000; // 2026-01-05T09:00:00Z, a Monday
        let mut l = Lifecycle::new("job", "invariant", Timing::default());
        let mut records = Vec::new();
        let mut eval = |t: Millis, keys: &[&str]| records.extend(l.evaluate(t, keys.iter().map(|k| obs(k)).collect()));
        // `a` fires for 3 minutes (3 evaluations), resolves, fires again 2 minutes later: flapping.
        eval(monday_9, &["a"]);
        eval(monday_9 + 60_000, &["a"]);
        eval(monday_9 + 120_000, &["a"]);
        eval(monday_9 + 180_000, &[]);
        eval(monday_9 + 300_000, &["a"]);
        eval(monday_9 + 360_000, &[]);
        // `b` fires at 03:00 the next night, for 10 minutes.
        let night = monday_9 + 18 * 3_600_000;
        eval(night, &["b"]);
        eval(night + 600_000, &[]);
        let s = compute(&records, StatsOptions::default());
        let t = &s.total;
        assert_eq!((t.fired, t.resolved, t.flapping, t.deduplicated), (3, 3, 1, 2));
        assert_eq!(t.median_firing_seconds, Some(180.0));
        assert_eq!(t.p90_firing_seconds, Some(600.0));
        assert_eq!(t.outside_business_hours, Some(1.0 / 3.0));
        assert_eq!(s.per_rule.len(), 1);
    }
}
