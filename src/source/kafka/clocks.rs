//! A scaled-out job's second stage reads the internal topic, where the first stage writes the
//! job's records and, after them, markers with its source partitions' clocks (see
//! `crate::shuffle`). Per internal partition, the clocks heard there make a watermark (the
//! least over the source's partitions, as one process would take it); it is handed to the
//! pipeline as [`Poll::Clock`](crate::source::Poll::Clock) once every record before its
//! marker has been handed out, so no record is judged against a clock that already counts it.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::time::watermark::{ClockState, Watermarks};
use crate::Millis;

/// The header that makes a message of the internal topic a marker.
pub const MARKER_HEADER: &str = "osprey-watermark";
/// The header naming a forwarded record's source partition and offset (`3:1200`).
pub const SOURCE_HEADER: &str = "osprey-source";

/// A marker's payload: one source partition's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    pub partition: usize,
    pub clock: ClockState,
}

/// Per internal partition: the source clocks heard, and watermarks waiting for their records.
pub struct Clocks {
    source_partitions: usize,
    delay: Millis,
    heard: Vec<Watermarks>,
    /// Records buffered, and handed out, since the partition was (re)assigned.
    buffered: Vec<u64>,
    handed: Vec<u64>,
    /// Watermarks due once `handed` reaches their record count, oldest first.
    due: Vec<VecDeque<(u64, Millis)>>,
    /// The last watermark told (or due) per partition.
    told: Vec<Millis>,
}

impl Clocks {
    pub fn new(partitions: usize, source_partitions: usize, delay: Millis) -> Clocks {
        Clocks {
            source_partitions,
            delay,
            heard: (0..partitions).map(|_| Watermarks::new(source_partitions, delay)).collect(),
            buffered: vec![0; partitions],
            handed: vec![0; partitions],
            due: vec![VecDeque::new(); partitions],
            told: vec![Millis::MIN; partitions],
        }
    }

    /// A record of partition `p` was buffered.
    pub fn buffered(&mut self, p: usize) {
        self.buffered[p] += 1;
    }

    /// A marker on partition `p`; the watermark to tell now (every record before it was handed
    /// out already), if it moved.
    pub fn marker(&mut self, p: usize, payload: &[u8]) -> Option<Millis> {
        let Ok(m) = serde_json::from_slice::<Marker>(payload) else {
            crate::log_warn!("internal topic partition {p}: a marker that does not parse was skipped");
            return None;
        };
        if m.partition >= self.source_partitions {
            return None;
        }
        let watermark = self.heard[p].apply(m.partition, m.clock);
        if watermark <= self.told[p] {
            return None;
        }
        self.told[p] = watermark;
        if self.buffered[p] == self.handed[p] {
            return Some(watermark);
        }
        self.due[p].push_back((self.buffered[p], watermark));
        None
    }

    /// `n` records of partition `p` were handed out; the watermark now due, if any.
    pub fn handed(&mut self, p: usize, n: usize) -> Option<Millis> {
        self.handed[p] += n as u64;
        let mut out = None;
        while self.due[p].front().is_some_and(|&(at, _)| at <= self.handed[p]) {
            out = self.due[p].pop_front().map(|(_, w)| w);
        }
        out
    }

    /// Partition `p` starts over (assigned, revoked): what was heard there goes.
    pub fn forget(&mut self, p: usize) {
        self.heard[p] = Watermarks::new(self.source_partitions, self.delay);
        self.buffered[p] = 0;
        self.handed[p] = 0;
        self.due[p].clear();
        self.told[p] = Millis::MIN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(partition: usize, max_ts: Millis) -> Vec<u8> {
        let clock = ClockState { max_ts: Some(max_ts), idle: false, caught_up: false, behind: false, read: true };
        serde_json::to_vec(&Marker { partition, clock }).unwrap()
    }

    #[test]
    fn a_watermark_waits_for_the_records_before_its_marker_and_takes_the_least_source_clock() {
        let mut c = Clocks::new(2, 2, 1_000);
        c.buffered(0);
        c.buffered(0);
        assert_eq!(c.marker(0, &marker(0, 10_000)), None, "source partition 1 not heard yet");
        assert_eq!(c.marker(0, &marker(1, 20_000)), None, "two records still to hand out");
        c.buffered(0);
        assert_eq!(c.handed(0, 1), None);
        assert_eq!(c.handed(0, 1), Some(9_000), "due after the second record, least over sources less the delay");
        assert_eq!(c.marker(0, &marker(0, 30_000)), None, "the third record is still buffered");
        assert_eq!(c.handed(0, 1), Some(19_000));
        // Nothing buffered: a marker tells at once; a clock that went back (a re-read) does not.
        assert_eq!(c.marker(0, &marker(1, 5_000)), None);
        assert_eq!(c.marker(0, &marker(1, 40_000)), Some(29_000));
        assert_eq!(c.marker(1, b"garbage"), None);
    }
}
