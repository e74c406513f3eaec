//! The alert transitions (fired, resolved) of a job's last 24 hours of event time, each a
//! whole alert record so the page can show its labels, annotations and evidence.

use std::collections::VecDeque;

use serde::Serialize;

use crate::alert::{parse_time, Alert, Status};
use crate::Millis;

/// How far back, in event time from the newest transition.
pub const KEPT: Millis = 24 * 3_600_000;
/// At most this many, newest kept.
pub const MAX: usize = 2_000;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    /// Event time of the transition: the record's `starts_at` when it fired, `ends_at` when
    /// it resolved.
    pub at: Millis,
    pub alert: Alert,
}

#[derive(Debug, Clone, Default)]
pub struct Transitions {
    pub kept: VecDeque<Transition>,
    /// The newest transition's time (transitions may arrive out of time order).
    newest: Option<Millis>,
}

impl Transitions {
    pub fn push(&mut self, alert: &Alert) {
        let at = match alert.status {
            Status::Firing => parse_time(&alert.starts_at),
            Status::Resolved => alert.ends_at.as_deref().and_then(parse_time),
        };
        let Some(at) = at else { return };
        self.kept.push_back(Transition { at, alert: alert.clone() });
        let newest = self.newest.map_or(at, |n| n.max(at));
        self.newest = Some(newest);
        while self.kept.len() > MAX || self.kept.front().is_some_and(|t| t.at < newest - KEPT) {
            self.kept.pop_front();
        }
    }

    pub fn find(&self, fingerprint: &str, sequence: u64) -> Option<&Alert> {
        self.kept.iter().map(|t| &t.alert).find(|a| a.fingerprint == fingerprint && a.sequence == sequence)
    }
}
