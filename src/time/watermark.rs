//! Watermarks: per-partition event-time progress, and the job's watermark, their minimum.
//!
//! A partition's watermark is its largest event time minus the watermark delay. The job's
//! watermark is the least over partitions that still count (not ended, not idle), and it never
//! goes back. A partition that has seen nothing holds it at the start, until it is idle.
//!
//! A live partition read to the end of its log ("caught up") keeps counting while every
//! partition is caught up (the steady state: a record a little behind another partition's is
//! not late). It stops counting while another partition works through a backlog, as an ended
//! partition of a replay does, so a live run over a backlog closes the replay's windows at the
//! replay's moments; and a caught-up partition that never gave an event time never counts.
//! The claim is leaned on only once it has stood for [`CLAIM_SETTLES`]: a burst (producers back
//! after an outage) lands on a topic's partitions moments apart, and a partition read to its end
//! just before its part landed would otherwise let another's backlog carry the watermark past
//! all of its records.
//!
//! Nor does a partition that was read and gave no event time (its records so far were all dead
//! letters): it has no clock to hold anything at, and holding the watermark at the start would
//! make nothing late and let no window close until it is idle or ended.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::Millis;

/// How long a caught-up claim stands before the watermark leans on it (see the module's text):
/// a burst's records land on every partition within a few fetches, and a live run's windows
/// come out well within a second of their watermark.
pub const CLAIM_SETTLES: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Watermarks {
    delay: Millis,
    partitions: Vec<PartitionClock>,
    current: Millis,
    /// The least watermark over counting partitions, cached for the per-record path.
    least: Millis,
    /// A second stage's clocks (see [`Watermarks::second_stage`]).
    #[serde(skip)]
    second_stage: bool,
}

/// One partition's clock as a scaled-out job's first stage tells its second (see
/// `crate::shuffle`): enough for the second stage to judge it as one process would.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockState {
    /// Its largest event time (`None` before the first).
    pub max_ts: Option<Millis>,
    pub idle: bool,
    pub caught_up: bool,
    pub behind: bool,
    pub read: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PartitionClock {
    max_ts: Millis,
    ended: bool,
    idle: bool,
    #[serde(skip)]
    last_record: Option<Instant>,
    /// Live: read to the end of its log, and nothing read since (see the module's text).
    #[serde(skip)]
    caught_up: bool,
    /// When it last said it was caught up; the claim counts once it has stood for
    /// [`CLAIM_SETTLES`] (`settled`).
    #[serde(skip)]
    claimed_at: Option<Instant>,
    #[serde(skip)]
    settled: bool,
    /// Live: its last chunk came from a backlog (the source held more of it).
    #[serde(skip)]
    behind: bool,
    /// A chunk of it was processed (since it was last rewound).
    #[serde(skip)]
    read: bool,
    /// Rewound, and no event time seen since: its chunks so far were re-reads of records
    /// already processed (dropped before they reach the clock), not dead letters, so it holds
    /// the watermark where it is rather than stepping aside as a partition of dead letters does.
    #[serde(skip)]
    rewound: bool,
}

impl Watermarks {
    pub fn new(partitions: usize, delay: Millis) -> Self {
        let clocks = (0..partitions)
            .map(|_| PartitionClock {
                max_ts: Millis::MIN,
                ended: false,
                idle: false,
                last_record: None,
                caught_up: false,
                claimed_at: None,
                settled: false,
                behind: false,
                read: false,
                rewound: false,
            })
            .collect();
        let mut w = Watermarks { delay, partitions: clocks, current: Millis::MIN, least: Millis::MIN, second_stage: false };
        w.recompute();
        w
    }

    /// The job's watermark: every window ending at or before it is complete.
    pub fn current(&self) -> Millis {
        self.current
    }

    /// One partition's watermark (`Millis::MIN` before its first record).
    pub fn partition(&self, p: usize) -> Millis {
        self.clock_watermark(&self.partitions[p])
    }

    /// Every partition's watermark, for sources that read the laggard first.
    pub fn per_partition(&self) -> Vec<Millis> {
        self.partitions.iter().map(|c| self.clock_watermark(c)).collect()
    }

    fn clock_watermark(&self, c: &PartitionClock) -> Millis {
        if c.max_ts == Millis::MIN { Millis::MIN } else { c.max_ts.saturating_sub(self.delay) }
    }

    /// The latest event time any partition has seen (`Millis::MIN` before the first).
    pub fn latest(&self) -> Millis {
        self.partitions.iter().map(|c| c.max_ts).max().unwrap_or(Millis::MIN)
    }

    /// How many partitions there are.
    pub fn len(&self) -> usize {
        self.partitions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.partitions.is_empty()
    }

    /// Partition `p`'s clock, to send to a second stage.
    pub fn state(&self, p: usize) -> ClockState {
        let c = &self.partitions[p];
        // A claim not yet settled is not leaned on here, nor by a second stage.
        ClockState { max_ts: (c.max_ts != Millis::MIN).then_some(c.max_ts), idle: c.idle, caught_up: c.caught_up && c.settled, behind: c.behind, read: c.read }
    }

    /// Take partition `p`'s clock as another process reports it; its largest event time never
    /// goes back (a partition re-read by a new owner reports less for a while).
    pub fn apply(&mut self, p: usize, s: ClockState) -> Millis {
        let c = &mut self.partitions[p];
        c.max_ts = c.max_ts.max(s.max_ts.unwrap_or(Millis::MIN));
        (c.idle, c.caught_up, c.behind, c.read) = (s.idle, s.caught_up, s.behind, s.read);
        // The first stage reports a claim once it has settled there.
        c.settled = s.caught_up;
        self.recompute();
        self.current
    }

    /// The partitions that hold nothing only because they are caught up (read to their log
    /// end while another works through a backlog, or caught up before any event time): a
    /// second stage checks that claim against the source's log ends before leaning on it.
    pub fn released(&self) -> Vec<usize> {
        let backlog = self.partitions.iter().any(|c| !c.ended && !c.idle && c.behind);
        (0..self.partitions.len())
            .filter(|&p| {
                let c = &self.partitions[p];
                !c.ended && !c.idle && c.caught_up && (c.max_ts == Millis::MIN || (c.settled && backlog))
            })
            .collect()
    }

    /// The partitions that hold nothing because they are idle (a second stage checks that
    /// claim too: see [`Watermarks::released`]).
    pub fn idle(&self) -> Vec<usize> {
        (0..self.partitions.len()).filter(|&p| !self.partitions[p].ended && self.partitions[p].idle).collect()
    }

    /// Partition `p` is neither caught up nor idle after all (its log grew since it said so):
    /// it holds the watermark at its clock again, until it says otherwise. An idle partition
    /// wakes as at its first record (the whole stream, when it had paused).
    pub fn hold(&mut self, p: usize) -> Millis {
        if self.partitions[p].idle {
            self.wake(p);
        }
        self.partitions[p].caught_up = false;
        self.recompute();
        self.current
    }

    /// Move partition `p`'s watermark to at least `watermark` without a record (a second
    /// stage, whose clock comes from its first stage's reports; its delay is 0).
    pub fn advance(&mut self, p: usize, watermark: Millis) -> Millis {
        debug_assert_eq!(self.delay, 0, "an external clock is already delayed");
        let c = &mut self.partitions[p];
        if watermark > c.max_ts {
            c.max_ts = watermark;
            self.recompute();
        }
        self.current
    }

    /// Record an event time seen on partition `p`; returns the job's watermark after it.
    #[inline]
    pub fn observe(&mut self, p: usize, ts: Millis) -> Millis {
        if self.partitions[p].idle {
            self.wake(p);
            let clock = &mut self.partitions[p];
            if ts > clock.max_ts {
                clock.max_ts = ts;
            }
            clock.rewound = false;
            self.recompute();
            return self.current;
        }
        let clock = &mut self.partitions[p];
        if ts <= clock.max_ts {
            return self.current;
        }
        let before = if clock.max_ts == Millis::MIN { Millis::MIN } else { clock.max_ts.saturating_sub(self.delay) };
        clock.max_ts = ts;
        clock.rewound = false;
        if before <= self.least {
            self.recompute();
        }
        self.current
    }

    /// Partition `p` has a record again after being idle. When every counting partition was
    /// idle, the whole stream had paused (a quiet spell, producers away), and it comes back
    /// on every partition at once, the others' records only a fetch behind: all wake, each
    /// with a new idle timeout to show its records, so the first partition back does not
    /// carry the watermark past the others' records alone and make them late.
    fn wake(&mut self, p: usize) {
        let all_idle = self.partitions.iter().all(|c| c.ended || c.idle);
        let now = Instant::now();
        for (q, c) in self.partitions.iter_mut().enumerate() {
            if c.idle && (q == p || all_idle) {
                c.idle = false;
                c.last_record = Some(now);
                // Read to its end before the pause, not since: its new records may be a
                // fetch away, so it holds the watermark even while another works through a
                // backlog (a stream back after an outage comes back as one).
                c.caught_up = false;
            }
        }
    }

    /// Note that records arrived on `p` now (live sources), for idle detection.
    pub fn touch(&mut self, p: usize, now: Instant) {
        self.partitions[p].last_record = Some(now);
    }

    /// A chunk of partition `p` is about to be processed; `behind`: from a backlog.
    pub fn chunk_arrives(&mut self, p: usize, behind: bool) {
        let c = &mut self.partitions[p];
        if c.caught_up || c.behind != behind || !c.read {
            c.caught_up = false;
            c.behind = behind;
            c.read = true;
            self.recompute();
        }
    }

    /// Live partition `p` was read to the end of its log; returns the job's watermark after.
    pub fn caught_up(&mut self, p: usize) -> Millis {
        if self.second_stage {
            // Its clock is the markers' (their source partitions' caught-up claims included);
            // an internal partition read to its end before its records came would otherwise
            // stop holding the watermark, and the others would carry it past them.
            return self.current;
        }
        let c = &mut self.partitions[p];
        if !c.caught_up {
            (c.caught_up, c.settled, c.claimed_at) = (true, false, Some(Instant::now()));
        }
        c.behind = false;
        self.recompute();
        self.current
    }

    /// Partition `p` has no more records: it stops holding the watermark.
    pub fn end_partition(&mut self, p: usize) -> Millis {
        self.partitions[p].ended = true;
        self.recompute();
        self.current
    }

    /// Partitions `ps` left this process (a consumer group rebalance). Each holds the watermark
    /// where it was until it is idle (`idle_timeout` from now), not at once: a group hands a
    /// partition over in steps (a killed member keeps its share until its session expires), and
    /// a partition that comes back within that time finds its backlog behind a watermark that
    /// the other partitions alone would have carried past it: all of it late.
    ///
    /// All at once, then the watermark once: in a second stage (where they stop holding at
    /// once), taken one by one the last partition left would carry the watermark to its clock
    /// alone (a restored second stage, all of its partitions revoked before its first
    /// assignment, fired a window with 1 of its 164 records).
    pub fn deactivate(&mut self, ps: &[usize]) {
        for &p in ps {
            let c = &mut self.partitions[p];
            (c.caught_up, c.behind) = (false, false);
            c.last_record = Some(Instant::now());
            c.idle = self.second_stage;
        }
        if self.second_stage {
            self.recompute();
        }
    }

    /// The clocks of a second stage (an internal topic keyed by the job's group key, its
    /// partitions' clocks told by markers): a partition handed away stops holding the
    /// watermark at once, since its groups are no other partition's and one that comes back
    /// is judged by its own clock until it catches up (`WindowOperator::assign`). Nor is a
    /// partition ever idle by the wall clock or caught up: its markers keep its clock moving
    /// (with the source partitions' own idleness and ends in it), and one called idle or
    /// caught up while its records had not come yet would let the others' clocks carry the
    /// watermark past all of them.
    pub fn second_stage(&mut self) {
        self.second_stage = true;
    }

    /// Partition `p`'s rows were dropped, to be read again from the group's commit (a
    /// rebalance took it away): its event-time progress goes with them. A clock left where the
    /// first reading took it would not hold the watermark back while the partition is read
    /// again from before that point, and the other partitions would carry the watermark past
    /// its re-read records: all of them late. Until its first record it holds the watermark
    /// where it is (it never goes back).
    pub fn rewind(&mut self, p: usize) {
        self.partitions[p].max_ts = Millis::MIN;
        self.partitions[p].read = false;
        self.partitions[p].rewound = true;
        self.recompute();
    }

    /// Partitions `ps` belong to this process again; their watermarks resume where they were.
    /// All at once, then the watermark once: taken one by one, the first of them would count
    /// alone while the others were still idle, and carry the watermark to its clock.
    pub fn activate(&mut self, ps: &[usize]) {
        for &p in ps {
            let c = &mut self.partitions[p];
            (c.caught_up, c.behind) = (false, false);
            c.ended = false;
            c.idle = false;
            c.last_record = Some(Instant::now());
        }
        self.recompute();
    }

    /// Mark partitions with no record for `timeout` as idle (live runs only: a replay has no
    /// wall clock to be idle by). `started` counts for partitions that never had a record.
    pub fn mark_idle(&mut self, now: Instant, started: Instant, timeout: Duration) -> Millis {
        if self.second_stage {
            return self.current;
        }
        let mut changed = false;
        for c in &mut self.partitions {
            if c.caught_up && !c.settled && c.claimed_at.is_none_or(|t| now.duration_since(t) >= CLAIM_SETTLES) {
                c.settled = true;
                changed = true;
            }
            let last = c.last_record.unwrap_or(started);
            if !c.ended && !c.idle && now.duration_since(last) >= timeout {
                c.idle = true;
                changed = true;
            }
        }
        if changed {
            self.recompute();
        }
        self.current
    }

    /// End of input: every window is complete.
    pub fn finish(&mut self) -> Millis {
        self.current = Millis::MAX;
        self.current
    }

    fn recompute(&mut self) {
        let counting = |c: &&PartitionClock| !c.ended && !c.idle;
        let backlog = self.partitions.iter().filter(counting).any(|c| c.behind);
        let least = self
            .partitions
            .iter()
            .filter(counting)
            .filter(|c| !(c.max_ts == Millis::MIN && !c.rewound && (c.read || c.caught_up)) && !(c.caught_up && c.settled && backlog))
            .map(|c| self.clock_watermark(c))
            .min();
        self.least = least.unwrap_or(Millis::MIN);
        if let Some(least) = least {
            self.current = self.current.max(least);
        } else if self.partitions.iter().all(|c| c.ended) {
            // Nothing left to wait for.
            self.current = self.current.max(self.partitions.iter().map(|c| self.clock_watermark(c)).max().unwrap_or(Millis::MIN));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_handed_away_holds_the_watermark_until_idle_so_it_can_come_back_in_time() {
        let start = Instant::now();
        let timeout = Duration::from_secs(30);
        let mut w = Watermarks::new(3, 0);
        for p in 0..3 {
            w.observe(p, 10_000);
        }
        // A rebalance leaves this process partition 2 only (a killed member's session has not
        // expired yet); partition 2's backlog runs far ahead.
        w.deactivate(&[0, 1]);
        assert_eq!(w.observe(2, 90_000), 10_000, "partitions 0 and 1 still hold it");
        assert_eq!(w.mark_idle(Instant::now() + Duration::from_secs(5), start, timeout), 10_000);
        // They come back within the idle timeout: their records are not late.
        w.activate(&[0, 1]);
        assert_eq!(w.observe(0, 11_000), 10_000);
        assert_eq!(w.observe(1, 12_000), 11_000);
        // Taken away and read again from the commit, before where its first reading got to:
        // the re-read must hold the watermark, not the clock the first reading left.
        w.observe(2, 95_000);
        w.deactivate(&[2]);
        w.rewind(2);
        assert_eq!(w.observe(0, 96_000), 11_000);
        assert_eq!(w.observe(1, 97_000), 11_000, "partition 2 holds it until it is read again");
        w.activate(&[2]);
        assert_eq!(w.observe(2, 13_000), 13_000);
        assert_eq!(w.observe(2, 98_000), 96_000);
        // A partition another live member keeps stops holding once it is idle.
        w.deactivate(&[1]);
        let later = Instant::now() + Duration::from_secs(31);
        w.touch(0, later);
        w.touch(2, later);
        assert_eq!(w.observe(0, 99_000), 97_000, "partition 1 holds it while it may come back");
        assert_eq!(w.mark_idle(later, start, timeout), 98_000);
    }

    /// Three partitions with a record each (1,000 to 1,002 ms) at `start`.
    fn three_with_records_at(start: Instant) -> Watermarks {
        let mut w = Watermarks::new(3, 0);
        for p in 0..3 {
            w.observe(p, 1_000 + p as Millis);
            w.touch(p, start);
        }
        w
    }

    /// A rebalance rewinds a partition to be read again from the group's commit; its re-read
    /// records are dropped before they reach the clock. Its chunks of re-reads are not dead
    /// letters: it holds the watermark where it was until a new record, also through a quiet
    /// spell and a burst that wakes every partition (a broker outage mid-run, then the topic's
    /// rest at once, made every record of the burst but one partition's late).
    #[test]
    fn a_rewound_partition_of_re_reads_holds_the_watermark_until_its_next_record() {
        let start = Instant::now();
        let mut w = three_with_records_at(start);
        for p in 1..3 {
            w.deactivate(&[p]);
            w.rewind(p);
            w.activate(&[p]);
            w.chunk_arrives(p, false); // every row a re-read, dropped
            w.caught_up(p);
        }
        assert_eq!(w.mark_idle(start + Duration::from_secs(60), start, Duration::from_secs(30)), 1_000);
        assert_eq!(w.observe(0, 50_000), 1_000, "partition 0 back from the quiet spell does not carry the watermark alone");
        assert_eq!(w.observe(1, 40_000), 1_000);
        assert_eq!(w.observe(2, 45_000), 40_000);
    }

    /// The source takes back a quiet partition's claim when its log grows (records of a burst
    /// on their way): that wakes the stream as its first record would. Waking that partition
    /// alone left a third one idle, and the first two carried the watermark past all its
    /// records (a broker outage mid-run, then the topic's rest at once).
    #[test]
    fn a_quiet_stream_whose_log_grows_wakes_every_partition() {
        let start = Instant::now();
        let mut w = three_with_records_at(start);
        assert_eq!(w.mark_idle(start + Duration::from_secs(60), start, Duration::from_secs(30)), 1_000);
        assert_eq!(w.hold(1), 1_000);
        assert_eq!(w.observe(0, 50_000), 1_001);
        assert_eq!(w.observe(1, 40_000), 1_002, "partition 2, a fetch behind, still holds the watermark");
        assert_eq!(w.observe(2, 45_000), 40_000);
    }

    #[test]
    fn a_stream_back_from_a_quiet_spell_wakes_every_partition() {
        let start = Instant::now();
        let mut w = three_with_records_at(start);
        assert_eq!(w.current(), 1_000);
        // A quiet minute: all idle, the watermark holds.
        assert_eq!(w.mark_idle(start + Duration::from_secs(60), start, Duration::from_secs(30)), 1_000);
        // Partition 0 comes back far ahead; the others, a fetch behind, still count.
        assert_eq!(w.observe(0, 50_000), 1_001, "the first partition back does not carry the watermark alone");
        assert_eq!(w.mark_idle(Instant::now(), start, Duration::from_secs(30)), 1_001, "woken partitions have a new timeout");
        assert_eq!(w.observe(1, 40_000), 1_002);
        assert_eq!(w.observe(2, 45_000), 40_000);
        // Only one partition quiet while others run: it alone is idle, as before.
        w.touch(0, start);
        w.touch(1, Instant::now());
        w.touch(2, Instant::now());
        assert_eq!(w.mark_idle(start + Duration::from_secs(31), start, Duration::from_secs(30)), 40_000);
        assert_eq!(w.mark_idle(Instant::now() + Duration::from_secs(1), start, Duration::from_secs(30)), 40_000);
    }

    #[test]
    fn a_caught_up_partition_holds_the_watermark_only_while_no_other_works_through_a_backlog() {
        let mut w = Watermarks::new(3, 0);
        // Partition 1 was read, and gave nothing but dead letters: it holds nothing.
        w.chunk_arrives(1, false);
        w.chunk_arrives(0, true);
        assert_eq!(w.observe(0, 1_000), Millis::MIN, "partition 2 has not been read yet");
        w.chunk_arrives(2, true);
        assert_eq!(w.observe(2, 2_000), 1_000, "partition 1 holds nothing");
        // Partition 0 reaches the end of its log while partition 2 still has a backlog: once
        // the claim has stood a moment (its part of a burst may land just after), it does not
        // hold back the backlog.
        let (start, hour) = (Instant::now(), Duration::from_secs(3600));
        assert_eq!(w.caught_up(0), 1_000, "a claim just made holds");
        assert_eq!(w.mark_idle(Instant::now(), start, hour), 1_000);
        assert_eq!(w.mark_idle(Instant::now() + CLAIM_SETTLES, start, hour), 2_000, "a caught-up partition does not hold back a backlog");
        assert_eq!(w.observe(2, 5_000), 5_000);
        // Steady state: everyone caught up, records trickle in; a caught-up partition holds
        // again, so a record a little behind another partition's is not late.
        w.caught_up(2);
        w.chunk_arrives(2, false);
        assert_eq!(w.observe(2, 9_000), 5_000, "partition 0 holds at its clock once nobody is behind");
        w.chunk_arrives(0, false);
        assert_eq!(w.observe(0, 6_000), 6_000);
        // A burst on every partition: 2's chunk is a backlog, but 0 said caught up before its
        // own records came. Taken back (its log grew) before 2's chunk, it holds at its clock.
        w.caught_up(0);
        w.caught_up(2);
        w.hold(0);
        w.chunk_arrives(2, true);
        assert_eq!(w.observe(2, 60_000), 6_000, "partition 0's records of these minutes are still to come");
        w.chunk_arrives(0, true);
        assert_eq!(w.observe(0, 30_000), 30_000);
        // A partition caught up without ever giving a time (empty) never holds.
        let mut w = Watermarks::new(2, 0);
        w.caught_up(1);
        w.chunk_arrives(0, false);
        assert_eq!(w.observe(0, 700), 700);
    }

    #[test]
    fn job_watermark_is_the_least_partition_and_never_goes_back() {
        let mut w = Watermarks::new(2, 5);
        assert_eq!(w.observe(0, 100), Millis::MIN, "partition 1 has not spoken");
        assert_eq!(w.observe(1, 50), 45);
        assert_eq!(w.observe(1, 200), 95);
        assert_eq!(w.observe(0, 90), 95, "an older record does not move it");
        assert_eq!(w.observe(0, 300), 195);
    }

    #[test]
    fn ended_and_idle_partitions_stop_holding_it() {
        let mut w = Watermarks::new(2, 0);
        w.observe(0, 100);
        assert_eq!(w.current(), Millis::MIN);
        let start = Instant::now();
        w.touch(0, start + Duration::from_secs(10));
        assert_eq!(w.mark_idle(start + Duration::from_secs(31), start, Duration::from_secs(30)), 100);
        assert_eq!(w.observe(1, 40), 100, "a partition back from idle cannot pull it back");
        let mut w = Watermarks::new(2, 0);
        w.observe(0, 100);
        assert_eq!(w.end_partition(1), 100);
    }
}
