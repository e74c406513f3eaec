//! Each alert's state machine, in event time, with Prometheus's meaning of `for` and
//! `keep_firing_for`:
//!
//! ```text
//! inactive ──holds──► pending ──held for `for`──► firing ──clear for `keep_firing_for`──► resolved
//!     ▲                  │ clear                                                            │
//!     └──────────────────┴───────────────────────── holds again: pending, a new cycle ◄──────┘
//! ```
//!
//! Only `firing` and `resolved` are transitions users see (one record each); an alert that
//! keeps holding is not repeated (dedup), and `sequence` counts a fingerprint's transitions
//! across cycles. A fingerprint that has resolved is remembered for `retention` of event time
//! so that its next cycle continues its sequence.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{fingerprint_hex, fingerprint_of, rfc3339, Alert, Observation, Status};
use crate::Millis;

/// How long a condition must hold before firing, and stay clear before resolving.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Timing {
    pub for_: Millis,
    pub keep_firing_for: Millis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum State {
    Inactive { since: Millis },
    Pending { active_at: Millis },
    Firing { starts_at: Millis, clear_since: Option<Millis> },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tracked {
    latest: Observation,
    state: State,
    sequence: u64,
    evaluations: u64,
    /// The evaluation that last saw it hold (a counter of this process, not checkpointed).
    #[serde(skip)]
    seen_in: u64,
}

/// The lifecycle of every alert of one job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lifecycle {
    job: String,
    kind: String,
    default: Timing,
    per_rule: BTreeMap<String, Timing>,
    retention: Millis,
    /// By fingerprint as a number; checkpointed with the hex text as keys, in order, as
    /// before. A hash map: at 100,000 alerts a tree's lookups were a cache miss per level.
    #[serde(with = "hex_keys")]
    alerts: Alerts,
    last_evaluation: Option<Millis>,
    #[serde(skip)]
    evaluation: u64,
    /// Evaluations at which an alert kept firing and no record was written.
    pub deduplicated: u64,
    /// Evaluations older than one already made (a late window update), ignored.
    pub stale_evaluations: u64,
}

/// Alerts by fingerprint. The fingerprint is a hash already, so it is its own hash (mixed once).
type Alerts = std::collections::HashMap<u64, Tracked, std::hash::BuildHasherDefault<FingerprintHasher>>;

#[derive(Default)]
struct FingerprintHasher(u64);

impl std::hash::Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ *b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        // Spread the bits both ways: the map reads the low bits for a bucket, the high for a tag.
        let n = n ^ (n >> 29);
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (n >> 32);
    }
}

/// One day: how long a resolved fingerprint's sequence is remembered by default.
pub const DEFAULT_RETENTION: Millis = 24 * 3_600_000;

/// An alert firing now, as the server's page lists it. Its summary is written when the page
/// asks for it: the list is renewed at every transition, and most renewals are never shown.
#[derive(Debug, Clone)]
pub struct Firing {
    pub starts_at: Millis,
    /// Its newest observation.
    pub latest: Observation,
}

impl Firing {
    pub fn summary(&self) -> Option<String> {
        self.latest.shown().annotations.get("summary").cloned()
    }
}

impl Lifecycle {
    /// Up to `limit` of the alerts firing now, in fingerprint order.
    pub fn firing_list(&self, limit: usize) -> Vec<Firing> {
        let mut firing: Vec<(u64, &Tracked)> = self.alerts.iter().filter(|(_, t)| matches!(t.state, State::Firing { .. })).map(|(fp, t)| (*fp, t)).collect();
        if firing.len() > limit && limit > 0 {
            firing.select_nth_unstable_by_key(limit - 1, |(fp, _)| *fp);
            firing.truncate(limit);
        }
        firing.sort_unstable_by_key(|(fp, _)| *fp);
        firing
            .into_iter()
            .filter_map(|(_, t)| match t.state {
                State::Firing { starts_at, .. } => Some(Firing { starts_at, latest: t.latest.clone() }),
                _ => None,
            })
            .take(limit)
            .collect()
    }

    pub fn new(job: &str, kind: &str, default: Timing) -> Self {
        Lifecycle {
            job: job.into(),
            kind: kind.into(),
            default,
            per_rule: BTreeMap::new(),
            retention: DEFAULT_RETENTION,
            alerts: Alerts::default(),
            last_evaluation: None,
            evaluation: 0,
            deduplicated: 0,
            stale_evaluations: 0,
        }
    }

    /// A rule whose timing differs from the job's.
    pub fn with_rule_timing(mut self, rule: &str, timing: Timing) -> Self {
        self.per_rule.insert(rule.into(), timing);
        self
    }

    pub fn with_retention(mut self, retention: Millis) -> Self {
        self.retention = retention;
        self
    }

    /// Alerts currently tracked (pending, firing, or remembered after resolving).
    pub fn tracked(&self) -> usize {
        self.alerts.len()
    }

    /// One evaluation at event time `t`: `holding` are the label sets whose condition holds;
    /// every other alert of the job is clear. Returns the transitions, firing ones in the order
    /// of `holding`, then resolved ones by fingerprint.
    pub fn evaluate(&mut self, t: Millis, holding: Vec<Observation>) -> Vec<Alert> {
        self.evaluate_some(t, holding, None)
    }

    /// An evaluation that speaks only of some alerts: `holding` hold, those of `cleared`
    /// (fingerprints) are clear, every other alert stays as it is. What an evaluator whose
    /// conditions change one at a time (deadlines) sends between full evaluations.
    pub fn evaluate_changes(&mut self, t: Millis, holding: Vec<Observation>, cleared: &[u64]) -> Vec<Alert> {
        let cleared: std::collections::HashSet<u64> = cleared.iter().copied().collect();
        self.evaluate_some(t, holding, Some(cleared))
    }

    /// `only_cleared`: `None`, every alert not holding is clear; `Some(set)`, only those.
    fn evaluate_some(&mut self, t: Millis, holding: Vec<Observation>, only_cleared: Option<std::collections::HashSet<u64>>) -> Vec<Alert> {
        if self.last_evaluation.is_some_and(|last| t < last) {
            self.stale_evaluations += 1;
            return Vec::new();
        }
        self.last_evaluation = Some(t);
        // Marks which alerts held in this evaluation, without a set of them.
        self.evaluation += 1;
        let now = self.evaluation;
        let mut out = Vec::new();
        let mut seen = 0;
        for obs in holding {
            let fp = obs.fingerprint.unwrap_or_else(|| fingerprint_of(&self.job, &obs.rule, &obs.labels));
            debug_assert_eq!(fp, fingerprint_of(&self.job, &obs.rule, &obs.labels), "an evaluator's fingerprint is the stage's");
            let timing = self.per_rule.get(&obs.rule).copied().unwrap_or(self.default);
            let tracked = match self.alerts.entry(fp) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(Tracked { latest: obs.clone(), state: State::Inactive { since: t }, sequence: 0, evaluations: 0, seen_in: 0 })
                }
            };
            if tracked.seen_in == now {
                continue; // one alert per label set and evaluation; the first row speaks for it
            }
            tracked.seen_in = now;
            seen += 1;
            tracked.latest = obs;
            match tracked.state {
                State::Inactive { .. } if timing.for_ == 0 => fire(tracked, t),
                State::Inactive { .. } => tracked.state = State::Pending { active_at: t },
                State::Pending { active_at } if t - active_at >= timing.for_ => fire(tracked, t),
                State::Pending { .. } => {}
                State::Firing { starts_at, .. } => {
                    tracked.state = State::Firing { starts_at, clear_since: None };
                    tracked.evaluations += 1;
                    self.deduplicated += 1;
                    continue;
                }
            }
            if matches!(tracked.state, State::Firing { .. }) {
                out.push(record(&self.job, &self.kind, fp, tracked, None));
            }
        }
        if seen == self.alerts.len() {
            return out; // every alert held: none to clear or forget (a steady evaluation)
        }
        let mut forget = Vec::new();
        let mut firing = Vec::new();
        let clear = |fp: &u64, tracked: &Tracked| tracked.seen_in != now && only_cleared.as_ref().is_none_or(|c| c.contains(fp));
        for (&fp, tracked) in self.alerts.iter_mut().filter(|(fp, tracked)| clear(fp, tracked)) {
            match tracked.state {
                State::Pending { .. } => tracked.state = State::Inactive { since: t },
                State::Firing { starts_at, clear_since } => firing.push((fp, starts_at, clear_since)),
                State::Inactive { since } if t - since > self.retention => forget.push(fp),
                State::Inactive { .. } => {}
            }
        }
        // Firing alerts that cleared, in fingerprint order, as the records of resolved ones have
        // always come (only these are sorted: the inactive ones kept for `retention` are many).
        firing.sort_unstable_by_key(|&(fp, ..)| fp);
        for (fp, starts_at, clear_since) in firing {
            let tracked = self.alerts.get_mut(&fp).expect("a firing alert is tracked");
            let timing = self.per_rule.get(&tracked.latest.rule).copied().unwrap_or(self.default);
            let since = clear_since.unwrap_or(t);
            if t - since >= timing.keep_firing_for {
                tracked.sequence += 1;
                tracked.state = State::Inactive { since: t };
                out.push(record(&self.job, &self.kind, fp, tracked, Some((starts_at, t))));
            } else {
                tracked.state = State::Firing { starts_at, clear_since: Some(since) };
            }
        }
        for fp in forget {
            self.alerts.remove(&fp);
        }
        out
    }
}

/// The alerts map in checkpoints: keyed by the fingerprint's hex text, as every version wrote it.
mod hex_keys {
    use std::collections::BTreeMap;

    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(map: &super::Alerts, s: S) -> Result<S::Ok, S::Error> {
        let mut keys: Vec<&u64> = map.keys().collect();
        keys.sort_unstable();
        s.collect_map(keys.into_iter().map(|k| (super::fingerprint_hex(*k), &map[k])))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<super::Alerts, D::Error> {
        let text: BTreeMap<String, super::Tracked> = BTreeMap::deserialize(d)?;
        text.into_iter()
            .map(|(k, v)| u64::from_str_radix(&k, 16).map(|k| (k, v)).map_err(|_| D::Error::custom(format!("`{k}` is not an alert fingerprint"))))
            .collect()
    }
}

fn fire(tracked: &mut Tracked, t: Millis) {
    tracked.state = State::Firing { starts_at: t, clear_since: None };
    tracked.sequence += 1;
    tracked.evaluations = 1;
}

/// The record of a transition: firing (`resolved` is `None`) or resolved at `(starts, ends)`.
fn record(job: &str, kind: &str, fp: u64, tracked: &Tracked, resolved: Option<(Millis, Millis)>) -> Alert {
    let shown = tracked.latest.shown();
    let obs = &*shown;
    let mut labels = (*obs.labels).clone();
    labels.insert("alertname".into(), job.into());
    labels.insert("severity".into(), obs.severity.clone());
    let (status, starts_at, ends_at) = match (resolved, &tracked.state) {
        (Some((s, e)), _) => (Status::Resolved, s, Some(e)),
        (None, State::Firing { starts_at, .. }) => (Status::Firing, *starts_at, None),
        (None, _) => unreachable!("a firing record is made only in the firing state"),
    };
    Alert {
        fingerprint: fingerprint_hex(fp),
        status,
        sequence: tracked.sequence,
        job: job.into(),
        kind: kind.into(),
        rule: obs.rule.clone(),
        severity: obs.severity.clone(),
        labels,
        annotations: obs.annotations.clone(),
        starts_at: rfc3339(starts_at),
        ends_at: ends_at.map(rfc3339),
        value: obs.value.clone(),
        threshold: obs.threshold.clone(),
        evidence: if obs.evidence.is_null() { Value::Object(Default::default()) } else { obs.evidence.clone() },
        evaluations: tracked.evaluations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(key: &str) -> Observation {
        crate::alert::observation("r", "page", &[("key", key)])
    }

    /// (t, holding keys) per evaluation → "t:key:status:seq" per transition.
    fn run(timing: Timing, steps: &[(Millis, &[&str])]) -> Vec<String> {
        let mut l = Lifecycle::new("job", "invariant", timing);
        let mut out = Vec::new();
        for (t, keys) in steps {
            for a in l.evaluate(*t, keys.iter().map(|k| obs(k)).collect()) {
                out.push(format!("{t}:{}:{:?}:{}", a.labels["key"], a.status, a.sequence));
            }
        }
        out
    }

    #[test]
    fn without_for_an_alert_fires_at_once_and_resolves_at_the_first_clear_evaluation() {
        let got = run(Timing::default(), &[(1, &["a"]), (2, &["a"]), (3, &[]), (4, &["a"])]);
        assert_eq!(got, ["1:a:Firing:1", "3:a:Resolved:2", "4:a:Firing:3"]);
    }

    #[test]
    fn for_holds_it_pending_and_a_clear_evaluation_resets_it() {
        let t = Timing { for_: 2, keep_firing_for: 0 };
        // Holds at 1, 2 (pending), clear at 3 (back to inactive), holds 4, 5, 6: fires at 6.
        let got = run(t, &[(1, &["a"]), (2, &["a"]), (3, &[]), (4, &["a"]), (5, &["a"]), (6, &["a"]), (7, &[])]);
        assert_eq!(got, ["6:a:Firing:1", "7:a:Resolved:2"]);
    }

    #[test]
    fn keep_firing_for_rides_out_flapping_input() {
        let t = Timing { for_: 0, keep_firing_for: 3 };
        // Flaps every step: without keep_firing_for it would fire and resolve four times.
        let steps: &[(Millis, &[&str])] = &[(1, &["a"]), (2, &[]), (3, &["a"]), (4, &[]), (5, &["a"]), (6, &[]), (7, &[]), (8, &[]), (9, &[])];
        assert_eq!(run(t, steps), ["1:a:Firing:1", "9:a:Resolved:2"]);
        assert_eq!(run(Timing::default(), steps).len(), 6);
    }

    #[test]
    fn a_record_has_the_contract_fields_and_resolved_repeats_starts_at() {
        let mut l = Lifecycle::new("pos", "invariant", Timing::default());
        let fired = l.evaluate(1_767_603_600_000, vec![obs("a")]);
        let resolved = l.evaluate(1_767_603_660_000, vec![]);
        assert_eq!(fired[0].labels["alertname"], "pos");
        assert_eq!(fired[0].labels["severity"], "page");
        assert_eq!(fired[0].ends_at, None);
        assert_eq!(resolved[0].starts_at, "2026-01-05T09:00:00Z");
        assert_eq!(resolved[0].ends_at.as_deref(), Some("2026-01-05T09:01:00Z"));
        assert_eq!(fired[0].fingerprint, resolved[0].fingerprint);
    }

    #[test]
    fn dedup_survives_a_restart_through_serialised_state() {
        let mut l = Lifecycle::new("job", "invariant", Timing::default());
        assert_eq!(l.evaluate(1, vec![obs("a")]).len(), 1);
        let bytes = serde_json::to_vec(&l).unwrap();
        let mut restored: Lifecycle = serde_json::from_slice(&bytes).unwrap();
        assert!(restored.evaluate(2, vec![obs("a")]).is_empty(), "still firing: not emitted again");
        let r = restored.evaluate(3, vec![]);
        assert_eq!((r[0].status, r[0].sequence, r[0].evaluations), (Status::Resolved, 2, 2));
    }

    #[test]
    fn evaluations_never_go_back_in_time_and_old_fingerprints_are_forgotten() {
        let mut l = Lifecycle::new("job", "invariant", Timing::default()).with_retention(10);
        l.evaluate(5, vec![obs("a")]);
        assert!(l.evaluate(4, vec![]).is_empty());
        assert_eq!(l.stale_evaluations, 1);
        l.evaluate(6, vec![]);
        l.evaluate(100, vec![]);
        assert_eq!(l.tracked(), 0);
    }

    /// The map is a hash map; what users see keeps fingerprint order: resolved records within
    /// an evaluation, and the checkpoint's bytes, whatever order alerts arrived in.
    #[test]
    fn resolved_records_and_checkpoints_follow_fingerprint_order() {
        let keys: Vec<String> = (0..50).map(|i| format!("k{i}")).collect();
        let fed = |order: &mut dyn Iterator<Item = &String>| {
            let mut l = Lifecycle::new("job", "invariant", Timing::default());
            l.evaluate(1, order.map(|k| obs(k)).collect());
            let bytes = serde_json::to_string(&l).unwrap();
            let resolved: Vec<String> = l.evaluate(2, Vec::new()).into_iter().map(|a| a.fingerprint).collect();
            (bytes, resolved)
        };
        let (a, resolved) = fed(&mut keys.iter());
        let (b, again) = fed(&mut keys.iter().rev());
        assert_eq!(a, b);
        assert_eq!(resolved, again);
        let mut sorted = resolved.clone();
        sorted.sort();
        assert_eq!(resolved.len(), 50);
        assert_eq!(resolved, sorted);
    }
}
