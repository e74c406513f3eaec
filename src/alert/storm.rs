//! Storm control: a per-job limit on firings per interval of event time. Past it, further
//! firings fold into one storm alert that says how many it holds, and their resolves are
//! folded too; nothing is dropped without being counted. The storm resolves at the first
//! evaluation after a whole interval without a fold.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{fingerprint, rfc3339, Alert, Status};
use crate::Millis;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StormLimit {
    job: String,
    kind: String,
    /// Firings shown per interval; 0 turns the limit off.
    limit: u64,
    interval: Millis,
    bucket: Millis,
    shown_in_bucket: u64,
    /// Folded alerts still firing.
    folded: BTreeSet<String>,
    /// The storm alert while it fires: (starts_at, folded so far, sample of labels).
    storm: Option<(Millis, u64, Vec<BTreeMap<String, String>>)>,
    last_fold: Millis,
    sequence: u64,
    /// Transitions folded into storm alerts, in all.
    pub folded_transitions: u64,
    /// Storm alerts fired.
    pub storms: u64,
}

const SAMPLE: usize = 10;

impl StormLimit {
    pub fn new(job: &str, kind: &str, limit: u64, interval: Millis) -> Self {
        StormLimit {
            job: job.into(),
            kind: kind.into(),
            limit,
            interval: interval.max(1),
            bucket: Millis::MIN,
            shown_in_bucket: 0,
            folded: BTreeSet::new(),
            storm: None,
            last_fold: Millis::MIN,
            sequence: 0,
            folded_transitions: 0,
            storms: 0,
        }
    }

    pub fn apply(&mut self, t: Millis, transitions: Vec<Alert>) -> Vec<Alert> {
        if self.limit == 0 {
            return transitions;
        }
        let bucket = t - t.rem_euclid(self.interval);
        if bucket != self.bucket {
            self.bucket = bucket;
            self.shown_in_bucket = 0;
        }
        let mut out = Vec::with_capacity(transitions.len());
        for a in transitions {
            match a.status {
                Status::Firing if self.shown_in_bucket >= self.limit => {
                    self.folded_transitions += 1;
                    self.last_fold = t;
                    self.folded.insert(a.fingerprint.clone());
                    match &mut self.storm {
                        Some((_, n, sample)) => {
                            *n += 1;
                            if sample.len() < SAMPLE {
                                sample.push(a.labels.clone());
                            }
                        }
                        None => {
                            self.storm = Some((t, 1, vec![a.labels.clone()]));
                            self.storms += 1;
                            self.sequence += 1;
                            out.push(self.record(Status::Firing, t, None));
                        }
                    }
                }
                Status::Firing => {
                    self.shown_in_bucket += 1;
                    out.push(a);
                }
                Status::Resolved if self.folded.remove(&a.fingerprint) => self.folded_transitions += 1,
                Status::Resolved => out.push(a),
            }
        }
        if self.storm.is_some() && t - self.last_fold >= self.interval {
            self.sequence += 1;
            out.push(self.record(Status::Resolved, t, Some(t)));
            self.storm = None;
        }
        out
    }

    fn record(&self, status: Status, t: Millis, ends: Option<Millis>) -> Alert {
        let (starts, folded, sample) = self.storm.clone().unwrap_or((t, 0, Vec::new()));
        let labels: BTreeMap<String, String> =
            [("alertname".to_string(), self.job.clone()), ("severity".to_string(), "page".to_string())].into();
        Alert {
            fingerprint: fingerprint(&self.job, "storm", &BTreeMap::new()),
            status,
            sequence: self.sequence,
            job: self.job.clone(),
            kind: self.kind.clone(),
            rule: "storm".into(),
            severity: "page".into(),
            labels,
            annotations: [(
                "summary".to_string(),
                format!(
                    "alert storm: more than {} alerts fired within {}; {folded} more are folded into this one",
                    self.limit,
                    humantime::format_duration(std::time::Duration::from_millis(self.interval as u64))
                ),
            )]
            .into(),
            starts_at: rfc3339(starts),
            ends_at: ends.map(rfc3339),
            value: folded.into(),
            threshold: self.limit.into(),
            evidence: json!({ "folded": folded, "still_firing": self.folded.len(), "sample_labels": sample }),
            evaluations: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::lifecycle::{Lifecycle, Timing};
    use crate::alert::Observation;

    fn obs(key: usize) -> Observation {
        crate::alert::observation("r", "ticket", &[("key", &key.to_string())])
    }

    #[test]
    fn past_the_limit_firings_fold_into_one_storm_alert_that_counts_them() {
        let mut l = Lifecycle::new("job", "invariant", Timing::default());
        let mut s = StormLimit::new("job", "invariant", 3, 60_000);
        // 10 alerts fire at once: 3 shown, 7 folded into one storm alert.
        let shown = s.apply(0, l.evaluate(0, (0..10).map(obs).collect()));
        assert_eq!(shown.len(), 4);
        assert_eq!(shown[3].rule, "storm");
        assert_eq!(shown[3].evidence["folded"], 1, "the storm fires at the first fold");
        assert_eq!(s.folded_transitions, 7);
        // All resolve a minute later: the 3 shown resolve, the 7 folded stay folded; the storm
        // resolves (a whole interval without a fold) and says how many it held.
        let shown = s.apply(60_000, l.evaluate(60_000, vec![]));
        let rules: Vec<(&str, Status)> = shown.iter().map(|a| (a.rule.as_str(), a.status)).collect();
        assert_eq!(rules, [("r", Status::Resolved), ("r", Status::Resolved), ("r", Status::Resolved), ("storm", Status::Resolved)]);
        assert_eq!(shown[3].evidence["folded"], 7);
        assert_eq!(shown[3].evidence["still_firing"], 0);
        assert_eq!(s.folded_transitions, 14);
        assert_eq!(s.storms, 1);
    }
}
