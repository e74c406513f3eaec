//! Inhibition, as Alertmanager means it: while a `source` alert fires (a `page`), new firings
//! of `target` alerts (`ticket`s) whose `equal` labels match it are held back. A held alert that
//! resolves under the page was never shown and is dropped; one still firing when the page
//! resolves is released then. Both are counted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Alert, Status};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InhibitRule {
    pub source_severity: String,
    pub target_severity: String,
    /// Labels that must be equal on both (absent on both counts as equal).
    pub equal: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Inhibitor {
    rules: Vec<InhibitRule>,
    /// Source alerts firing now (shown), by fingerprint.
    sources: BTreeMap<String, Alert>,
    /// Target alerts firing but held back, by fingerprint.
    held: BTreeMap<String, Alert>,
    /// Transitions held back (a held firing, and a held alert's resolve).
    pub suppressed: u64,
    /// Held alerts shown once their source resolved.
    pub released: u64,
    /// What is held was checked against the sources since this stage was built or restored
    /// (the rules may have changed since a checkpoint was written).
    #[serde(skip)]
    checked: bool,
}

impl Inhibitor {
    pub fn new(rules: Vec<InhibitRule>) -> Self {
        Inhibitor { rules, ..Default::default() }
    }

    /// The transitions of one evaluation that are shown, in order; releases come last.
    pub fn apply(&mut self, transitions: Vec<Alert>) -> Vec<Alert> {
        if self.rules.is_empty() {
            return transitions;
        }
        // Sources first: a page firing in the same evaluation as a ticket inhibits it.
        let mut source_resolved = false;
        for a in &transitions {
            if self.rules.iter().any(|r| r.source_severity == a.severity) {
                match a.status {
                    Status::Firing => {
                        self.sources.insert(a.fingerprint.clone(), a.clone());
                    }
                    Status::Resolved => source_resolved |= self.sources.remove(&a.fingerprint).is_some(),
                }
            }
        }
        let mut out = Vec::with_capacity(transitions.len());
        for a in transitions {
            match a.status {
                Status::Firing if self.inhibited(&a) => {
                    self.suppressed += 1;
                    self.held.insert(a.fingerprint.clone(), a);
                }
                Status::Resolved if self.held.remove(&a.fingerprint).is_some() => self.suppressed += 1,
                _ => out.push(a),
            }
        }
        // A held alert stays inhibited while every source that held it still fires: only a
        // resolved source can release one (steady evaluations skip the scan of what is held).
        if !source_resolved && self.checked {
            return out;
        }
        self.checked = true;
        let free: Vec<String> = self.held.iter().filter(|(_, a)| !self.inhibited(a)).map(|(f, _)| f.clone()).collect();
        for f in free {
            self.released += 1;
            out.push(self.held.remove(&f).expect("listed"));
        }
        out
    }

    fn inhibited(&self, target: &Alert) -> bool {
        self.rules.iter().filter(|r| r.target_severity == target.severity).any(|r| {
            self.sources.values().any(|s| {
                s.severity == r.source_severity
                    && s.fingerprint != target.fingerprint
                    && r.equal.iter().all(|l| s.labels.get(l) == target.labels.get(l))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::lifecycle::{Lifecycle, Timing};
    use crate::alert::Observation;

    fn obs(severity: &str, service: &str) -> Observation {
        crate::alert::observation(&format!("{severity}-rule"), severity, &[("service", service)])
    }

    #[test]
    fn a_firing_page_holds_back_tickets_of_the_same_service_only() {
        let mut l = Lifecycle::new("slo", "slo", Timing::default());
        let mut inh = Inhibitor::new(vec![InhibitRule {
            source_severity: "page".into(),
            target_severity: "ticket".into(),
            equal: vec!["alertname".into(), "service".into()],
        }]);
        let mut shown = |t, o: Vec<Observation>| {
            inh.apply(l.evaluate(t, o)).into_iter().map(|a| format!("{}:{}:{:?}", a.severity, a.labels["service"], a.status)).collect::<Vec<_>>()
        };
        // Page and ticket on api at once, a ticket on web: the api ticket is held.
        assert_eq!(shown(1, vec![obs("page", "api"), obs("ticket", "api"), obs("ticket", "web")]), ["page:api:Firing", "ticket:web:Firing"]);
        // The page resolves while the api ticket still fires: released.
        assert_eq!(shown(2, vec![obs("ticket", "api"), obs("ticket", "web")]), ["page:api:Resolved", "ticket:api:Firing"]);
        // A ticket that fires and resolves under a page is never shown.
        let mut third = shown(3, vec![obs("page", "db"), obs("ticket", "db")]);
        third.sort();
        assert_eq!(third, ["page:db:Firing", "ticket:api:Resolved", "ticket:web:Resolved"]);
        assert_eq!(shown(4, vec![obs("page", "db")]), Vec::<String>::new());
        assert_eq!((inh.suppressed, inh.released), (3, 1));
    }

    /// What is held is checked again after a restore: the rules may have changed since the
    /// checkpoint (steady evaluations skip the check).
    #[test]
    fn a_held_alert_no_rule_holds_after_a_restore_is_released_at_once() {
        let mut l = Lifecycle::new("slo", "slo", Timing::default());
        let rule = |equal: &str| InhibitRule { source_severity: "page".into(), target_severity: "ticket".into(), equal: vec![equal.into()] };
        let mut inh = Inhibitor::new(vec![rule("alertname")]);
        let held = inh.apply(l.evaluate(1, vec![obs("page", "api"), obs("ticket", "web")]));
        assert_eq!(held.len(), 1, "the page is shown, the web ticket held: {held:?}");
        assert_eq!(inh.apply(l.evaluate(2, vec![obs("page", "api"), obs("ticket", "web")])), Vec::new());
        // Restored under a rule that needs the same service: nothing holds the web ticket.
        let saved = serde_json::to_string(&inh).unwrap();
        let mut restored: Inhibitor = serde_json::from_str(&saved).unwrap();
        restored.rules = vec![rule("service")];
        let shown = restored.apply(l.evaluate(3, vec![obs("page", "api"), obs("ticket", "web")]));
        assert_eq!(shown.iter().map(|a| format!("{}:{:?}", a.labels["service"], a.status)).collect::<Vec<_>>(), ["web:Firing"]);
    }
}
