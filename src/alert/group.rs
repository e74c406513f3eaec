//! Notifications, grouped as Alertmanager groups them: alerts with the same `group_by` labels
//! go out together; a new group waits `group_wait` for more alerts, later changes go out at
//! most every `group_interval`, and a group that still fires is repeated every
//! `repeat_interval`. In event time, so replays notify at the same instants.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{rfc3339, Alert, Status};
use crate::Millis;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupConfig {
    pub by: Vec<String>,
    pub wait: Millis,
    pub interval: Millis,
    pub repeat: Millis,
}

impl Default for GroupConfig {
    /// Alertmanager's defaults.
    fn default() -> Self {
        GroupConfig { by: vec!["alertname".into()], wait: 30_000, interval: 300_000, repeat: 4 * 3_600_000 }
    }
}

/// One notification: a group's firing alerts, and those resolved since the last one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub group: BTreeMap<String, String>,
    pub at: String,
    /// `new`, `changed` or `repeat`.
    pub reason: String,
    pub firing: Vec<String>,
    pub resolved: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Group {
    labels: BTreeMap<String, String>,
    firing: BTreeSet<String>,
    resolved: BTreeSet<String>,
    /// When the next notification is due (a change is waiting), if any.
    due: Option<Millis>,
    last_sent: Option<Millis>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Grouper {
    config: GroupConfig,
    groups: BTreeMap<Vec<String>, Group>,
    /// Transitions that reached grouping, and notifications made of them.
    pub transitions: u64,
    pub notifications: u64,
}

impl Grouper {
    pub fn new(config: GroupConfig) -> Self {
        Grouper { config, ..Default::default() }
    }

    /// Notifications due up to `t` (oldest first), then the transitions of `t` added.
    pub fn advance(&mut self, t: Millis, transitions: &[Alert]) -> Vec<Notification> {
        let mut out = self.due(t);
        for a in transitions {
            self.transitions += 1;
            let key: Vec<String> = self.config.by.iter().map(|l| a.labels.get(l).cloned().unwrap_or_default()).collect();
            let labels = self.config.by.iter().map(|l| (l.clone(), a.labels.get(l).cloned().unwrap_or_default())).collect();
            let g = self.groups.entry(key).or_insert_with(|| Group { labels, ..Default::default() });
            match a.status {
                Status::Firing => {
                    g.firing.insert(a.fingerprint.clone());
                    g.resolved.remove(&a.fingerprint);
                }
                Status::Resolved => {
                    g.firing.remove(&a.fingerprint);
                    g.resolved.insert(a.fingerprint.clone());
                }
            }
            if g.due.is_none() {
                g.due = Some(match g.last_sent {
                    None => t + self.config.wait,
                    Some(last) => (last + self.config.interval).max(t),
                });
            }
        }
        out.extend(self.due(t));
        out
    }

    /// Send every change still waiting, whatever its time (the end of a stream); no repeats.
    pub fn flush_pending(&mut self) -> usize {
        let mut n = 0;
        for g in self.groups.values_mut() {
            if g.due.take().is_some() {
                g.resolved.clear();
                n += 1;
            }
        }
        self.notifications += n as u64;
        n
    }

    /// Notifications due at or before `t`.
    pub fn due(&mut self, t: Millis) -> Vec<Notification> {
        let mut out = Vec::new();
        let repeat = self.config.repeat;
        for g in self.groups.values_mut() {
            loop {
                let repeat_at = g.last_sent.filter(|_| !g.firing.is_empty()).map(|l| l + repeat);
                let (at, reason) = match (g.due, repeat_at) {
                    (Some(d), _) if d <= t => (d, if g.last_sent.is_none() { "new" } else { "changed" }),
                    // A long gap in event time repeats once, at the last repeat point it passed.
                    (None, Some(r)) if r <= t => (r + (t - r) / repeat * repeat, "repeat"),
                    _ => break,
                };
                out.push((at, Notification {
                    group: g.labels.clone(),
                    at: rfc3339(at),
                    reason: reason.into(),
                    firing: g.firing.iter().cloned().collect(),
                    resolved: std::mem::take(&mut g.resolved).into_iter().collect(),
                }));
                g.last_sent = Some(at);
                g.due = None;
            }
        }
        self.groups.retain(|_, g| !g.firing.is_empty() || g.due.is_some());
        out.sort_by(|a, b| a.0.cmp(&b.0));
        self.notifications += out.len() as u64;
        out.into_iter().map(|(_, n)| n).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::lifecycle::{Lifecycle, Timing};
    use crate::alert::Observation;

    fn obs(service: &str, key: &str) -> Observation {
        crate::alert::observation("r", "page", &[("service", service), ("key", key)])
    }

    #[test]
    fn alerts_of_a_group_go_out_together_after_group_wait_then_at_most_every_group_interval() {
        let config = GroupConfig { by: vec!["service".into()], wait: 30, interval: 100, repeat: 1000 };
        let mut l = Lifecycle::new("job", "invariant", Timing::default());
        let mut g = Grouper::new(config);
        let mut step = |t, o: Vec<Observation>| {
            let transitions = l.evaluate(t, o);
            g.advance(t, &transitions).into_iter().map(|n| (n.group["service"].clone(), n.reason, n.firing.len(), n.resolved.len())).collect::<Vec<_>>()
        };
        // Three api alerts within group_wait: one notification at 30 holding all three.
        assert!(step(0, vec![obs("api", "a")]).is_empty());
        assert!(step(10, vec![obs("api", "a"), obs("api", "b"), obs("api", "c")]).is_empty());
        assert_eq!(step(30, vec![obs("api", "a"), obs("api", "b"), obs("api", "c")]), [("api".into(), "new".into(), 3, 0)]);
        // One resolves at 40: the change waits for group_interval (30 + 100).
        assert!(step(40, vec![obs("api", "a"), obs("api", "b")]).is_empty());
        assert_eq!(step(130, vec![obs("api", "a"), obs("api", "b")]), [("api".into(), "changed".into(), 2, 1)]);
        // Nothing changes: repeated at 130 + 1000.
        assert!(step(1000, vec![obs("api", "a"), obs("api", "b")]).is_empty());
        assert_eq!(step(1130, vec![obs("api", "a"), obs("api", "b")]), [("api".into(), "repeat".into(), 2, 0)]);
        // 4 transitions became 3 notifications.
        assert_eq!((g.transitions, g.notifications), (4, 3));
    }
}
