//! A scaled-out job's second stage reads the internal topic, where the first stage writes the
//! job's records and, after them, markers with its source partitions' clocks (see
//! `crate::shuffle`). Per internal partition, the clocks heard there make a watermark (the
//! least over the source's partitions, as one process would take it); it is handed to the
//! pipeline as [`Poll::Clock`](crate::source::Poll::Clock) once every record before its
//! marker has been handed out, so no record is judged against a clock that already counts it.
//!
//! A clock that says "caught up" (read to its log end) stops holding the watermark while
//! another partition works through a backlog, as in one process. Heard second-hand, that claim
//! can be stale: its owner may have died (SIGKILL) while new records arrive on its partition,
//! and nobody reads them until the group hands the partition over. So a claim carries the
//! offset it was caught up to, and before a watermark leans on it the second stage asks the
//! broker for the partition's log end (once per fetch round): a log that grew since holds the
//! watermark at the partition's clock, as a partition with unread records would in one process.
//!
//! An "idle" claim (no record for `idle_timeout`) is checked the same way. In one process, a
//! stream back from a quiet spell wakes every partition at once; heard from other processes,
//! the partitions whose owners have not read their new records yet still say idle, and the
//! first partition back would carry the watermark past all their records.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::time::watermark::{ClockState, Watermarks};
use crate::Millis;

/// The header that makes a message of the internal topic a marker.
pub const MARKER_HEADER: &str = "osprey-watermark";

/// A marker's payload: one source partition's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    pub partition: usize,
    pub clock: ClockState,
    /// With a caught-up or idle clock: the offset the partition was read to (its log end then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<i64>,
}

/// Where the source's partitions end now, asked of the broker; `None` when it cannot say.
pub trait LogEnds {
    fn log_end(&mut self, source_partition: usize) -> Option<i64>;
}

/// Per internal partition: the source clocks heard, and watermarks waiting for their records.
pub struct Clocks {
    /// The source topic, whose log ends check caught-up claims.
    pub source_topic: String,
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
    /// Per internal partition and source partition: the offset its caught-up claim names.
    claims: Vec<Vec<Option<i64>>>,
    /// Log ends asked this fetch round (cleared by [`Clocks::new_round`]).
    ends: Vec<Option<Option<i64>>>,
}

impl Clocks {
    pub fn new(source_topic: &str, partitions: usize, source_partitions: usize, delay: Millis) -> Clocks {
        Clocks {
            source_topic: source_topic.to_string(),
            source_partitions,
            delay,
            heard: (0..partitions).map(|_| Watermarks::new(source_partitions, delay)).collect(),
            buffered: vec![0; partitions],
            handed: vec![0; partitions],
            due: vec![VecDeque::new(); partitions],
            told: vec![Millis::MIN; partitions],
            claims: vec![vec![None; source_partitions]; partitions],
            ends: vec![None; source_partitions],
        }
    }

    /// A new fetch round: log ends asked before it may predate its markers.
    pub fn new_round(&mut self) {
        self.ends.iter_mut().for_each(|e| *e = None);
    }

    /// A record of partition `p` was buffered.
    pub fn buffered(&mut self, p: usize) {
        self.buffered[p] += 1;
    }

    /// A marker on partition `p`; the watermark to tell now (every record before it was handed
    /// out already), if it moved. `ends` answers for caught-up claims the watermark would lean on.
    pub fn marker(&mut self, p: usize, payload: &[u8], ends: &mut dyn LogEnds) -> Option<Millis> {
        let Ok(m) = serde_json::from_slice::<Marker>(payload) else {
            crate::log_warn!("internal topic partition {p}: a marker that does not parse was skipped");
            return None;
        };
        if m.partition >= self.source_partitions {
            return None;
        }
        self.claims[p][m.partition] = if m.clock.caught_up || m.clock.idle { m.end } else { None };
        // Try it on a copy: a watermark, once raised, never goes back.
        let mut next = self.heard[p].clone();
        let mut watermark = next.apply(m.partition, m.clock);
        if watermark > self.told[p] {
            let claimed = next.released().into_iter().chain(next.idle());
            let stale: Vec<usize> = claimed.filter(|&s| !self.claim_holds(p, s, ends)).collect();
            if !stale.is_empty() {
                next = self.heard[p].clone();
                for &s in &stale {
                    next.hold(s);
                }
                let clock = if stale.contains(&m.partition) { ClockState { caught_up: false, idle: false, ..m.clock } } else { m.clock };
                watermark = next.apply(m.partition, clock);
            }
        }
        self.heard[p] = next;
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

    /// Whether source partition `s`'s caught-up claim heard on `p` still names its log end.
    fn claim_holds(&mut self, p: usize, s: usize, ends: &mut dyn LogEnds) -> bool {
        let Some(claim) = self.claims[p][s] else { return false };
        let end = *self.ends[s].get_or_insert_with(|| ends.log_end(s));
        end.is_some_and(|end| claim >= end)
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
        self.claims[p].iter_mut().for_each(|c| *c = None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(partition: usize, max_ts: Millis) -> Vec<u8> {
        let clock = ClockState { max_ts: Some(max_ts), idle: false, caught_up: false, behind: false, read: true };
        serde_json::to_vec(&Marker { partition, clock, end: None }).unwrap()
    }

    /// A source whose partitions end where the test says.
    struct Ends(Vec<i64>);
    impl LogEnds for Ends {
        fn log_end(&mut self, s: usize) -> Option<i64> {
            self.0.get(s).copied()
        }
    }

    #[test]
    fn a_watermark_waits_for_the_records_before_its_marker_and_takes_the_least_source_clock() {
        let mut c = Clocks::new("src", 2, 2, 1_000);
        c.buffered(0);
        c.buffered(0);
        assert_eq!(c.marker(0, &marker(0, 10_000), &mut Ends(vec![])), None, "source partition 1 not heard yet");
        assert_eq!(c.marker(0, &marker(1, 20_000), &mut Ends(vec![])), None, "two records still to hand out");
        c.buffered(0);
        assert_eq!(c.handed(0, 1), None);
        assert_eq!(c.handed(0, 1), Some(9_000), "due after the second record, least over sources less the delay");
        assert_eq!(c.marker(0, &marker(0, 30_000), &mut Ends(vec![])), None, "the third record is still buffered");
        assert_eq!(c.handed(0, 1), Some(19_000));
        // Nothing buffered: a marker tells at once; a clock that went back (a re-read) does not.
        assert_eq!(c.marker(0, &marker(1, 5_000), &mut Ends(vec![])), None);
        assert_eq!(c.marker(0, &marker(1, 40_000), &mut Ends(vec![])), Some(29_000));
        assert_eq!(c.marker(1, b"garbage", &mut Ends(vec![])), None);
    }

    #[test]
    fn a_caught_up_claim_releases_the_watermark_only_while_its_log_has_not_grown() {
        let clock = |max_ts, caught_up, behind| ClockState { max_ts: Some(max_ts), idle: false, caught_up, behind, read: true };
        let send = |c: &mut Clocks, s, clock, end, ends: &mut Ends| c.marker(0, &serde_json::to_vec(&Marker { partition: s, clock, end }).unwrap(), ends);
        let mut c = Clocks::new("src", 1, 2, 0);
        let mut ends = Ends(vec![100, 500]);
        assert_eq!(send(&mut c, 0, clock(10_000, true, false), Some(100), &mut ends), None, "partition 1 not heard");
        // Partition 1 works through a backlog; partition 0 is at its end: it does not hold.
        assert_eq!(send(&mut c, 1, clock(50_000, false, true), None, &mut ends), Some(50_000));
        // Partition 0's owner dies and its log grows: the same claim no longer releases.
        c.new_round();
        ends.0[0] = 140;
        assert_eq!(send(&mut c, 1, clock(60_000, false, true), None, &mut ends), None, "held at partition 0's clock");
        // Its new owner reads the new records and is caught up again.
        c.new_round();
        assert_eq!(send(&mut c, 0, clock(12_000, true, false), Some(140), &mut ends), Some(60_000));
        // A broker that cannot say: the claim does not hold.
        struct Silent;
        impl LogEnds for Silent {
            fn log_end(&mut self, _: usize) -> Option<i64> {
                None
            }
        }
        c.new_round();
        let mut c2 = Clocks::new("src", 1, 2, 0);
        c2.marker(0, &serde_json::to_vec(&Marker { partition: 0, clock: clock(10_000, true, false), end: Some(100) }).unwrap(), &mut Silent);
        assert_eq!(c2.marker(0, &serde_json::to_vec(&Marker { partition: 1, clock: clock(50_000, false, true), end: None }).unwrap(), &mut Silent), Some(10_000));
    }

    /// Every partition went quiet (idle) before the stream came back; partition 0's owner reads
    /// its new records first. Partition 1's owner has not read its own yet and still says idle:
    /// its log grew past the offset that claim names, so it holds the watermark, as one
    /// process waking every partition would.
    #[test]
    fn an_idle_claim_whose_log_grew_holds_the_watermark() {
        let idle = |max_ts| ClockState { max_ts: Some(max_ts), idle: true, caught_up: false, behind: false, read: true };
        let busy = |max_ts| ClockState { max_ts: Some(max_ts), idle: false, caught_up: false, behind: true, read: true };
        let send = |c: &mut Clocks, s, clock, end, ends: &mut Ends| c.marker(0, &serde_json::to_vec(&Marker { partition: s, clock, end }).unwrap(), ends);
        let mut c = Clocks::new("src", 1, 2, 0);
        let mut ends = Ends(vec![100, 200]);
        assert_eq!(send(&mut c, 1, idle(5_000), Some(200), &mut ends), None, "partition 0 not heard");
        assert_eq!(send(&mut c, 0, idle(5_000), Some(100), &mut ends), None, "both idle: nothing to go by");
        // The stream comes back on both; only partition 0's owner has read it.
        c.new_round();
        ends.0 = vec![900, 800];
        assert_eq!(send(&mut c, 0, busy(90_000), None, &mut ends), Some(5_000), "partition 1 holds it at its clock");
        // Its owner reads its records and says so: the watermark follows the least.
        c.new_round();
        assert_eq!(send(&mut c, 1, busy(40_000), None, &mut ends), Some(40_000));
        // Quiet again and read to the end: the idle claim holds, partition 0 alone counts.
        c.new_round();
        assert_eq!(send(&mut c, 1, idle(41_000), Some(800), &mut ends), Some(90_000));
    }
}
