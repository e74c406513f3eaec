//! Event time: watermarks, window assignment, lateness, and the operator that turns a stream
//! of decoded batches into complete windows.
//!
//! Semantics (the same as Flink's, so results can be checked against any SQL engine):
//! - a window `[start, end)` fires once the job's watermark reaches `end`;
//! - a record is late when every window it belongs to has `end + allowed_lateness <= watermark`;
//!   late records are returned to the caller, who routes them;
//! - a record for a window that fired but is still within the allowed lateness updates it, and
//!   the window fires again at once, marked as an update;
//! - the watermark advances record by record, so results do not depend on how the input was cut
//!   into batches.

mod panes;
mod sessions;
pub mod watermark;

use std::collections::BTreeMap;

use datafusion::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use crate::decode::event_times;
use crate::jobfile::WindowConfig;
use crate::Millis;
use panes::Panes;
use sessions::Sessions;
pub use watermark::Watermarks;

/// A window whose rows are ready for the SQL.
#[derive(Debug, Clone)]
pub struct FiredWindow {
    pub start: Millis,
    pub end: Millis,
    /// Session windows: the key's bytes (Arrow row format), for a stable order.
    pub key: Vec<u8>,
    pub batches: Vec<RecordBatch>,
    /// True when the window fired before and late records changed it.
    pub update: bool,
    /// 0 the first time the window fires, then 1, 2, ... for each update.
    pub revision: u32,
}

impl FiredWindow {
    pub fn rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

/// What one batch did.
#[derive(Debug, Default)]
pub struct Processed {
    /// Windows fired while the batch was processed, in firing order.
    pub fired: Vec<FiredWindow>,
    /// Rows of the batch that were too late for every window they belong to.
    pub late_rows: Vec<u32>,
    /// For each late row, the watermark that made it late (the one in force when it arrived).
    pub late_watermarks: Vec<Millis>,
}

/// How a record fits the windows, decided against the watermark before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Stored for windows still open.
    Stored,
    /// Stored in a window whose end the watermark has passed: fire it now.
    FireNow,
    /// Too late for every window.
    Late,
}

/// Window state of one kind.
#[derive(Debug, Serialize, Deserialize)]
enum Assigner {
    Panes(Panes),
    Sessions(Sessions),
}

/// The windowing operator of one job: watermarks plus open windows. Serialisable, so a
/// checkpoint can store it next to source offsets.
#[derive(Debug, Serialize, Deserialize)]
pub struct WindowOperator {
    watermarks: Watermarks,
    assigner: Assigner,
    lateness: Millis,
    event_time: usize,
    /// A scaled-out job's second stage: the watermark comes from the first stage's clocks
    /// ([`Watermarks::advance`]), never from the records (set again after a restore).
    #[serde(skip)]
    external_clock: bool,
    /// Second stage: partitions read again from their commit (handed over by a rebalance)
    /// while this process's watermark is ahead of them, each with windows of its own.
    #[serde(default)]
    catching_up: BTreeMap<usize, Panes>,
}

impl WindowOperator {
    /// `event_time` is the index of the event-time column in decoded batches; session keys are
    /// column indices too.
    pub fn new(window: &WindowConfig, key_columns: Vec<usize>, event_time: usize, partitions: usize, delay: Millis, lateness: Millis) -> Self {
        let assigner = match window {
            WindowConfig::Tumbling { size } | WindowConfig::Cumulative { size, .. } => Assigner::Panes(Panes::new(*size, *size)),
            WindowConfig::Hopping { size, slide } => Assigner::Panes(Panes::new(*size, *slide)),
            WindowConfig::Session { gap, .. } => Assigner::Sessions(Sessions::new(*gap, key_columns)),
        };
        WindowOperator {
            watermarks: Watermarks::new(partitions, delay),
            assigner,
            lateness,
            event_time,
            external_clock: false,
            catching_up: BTreeMap::new(),
        }
    }

    /// Whether every window holding event time `t` ends at or before `watermark` (and so was
    /// emitted when the watermark got there). Sessions never say so: their ends depend on
    /// their rows.
    pub fn closed_by(&self, t: Millis, watermark: Millis) -> bool {
        match &self.assigner {
            Assigner::Panes(p) => p.last_end(t) <= watermark,
            Assigner::Sessions(_) => false,
        }
    }

    /// The watermark comes from outside (a second stage): records no longer move it, and a
    /// partition handed away stops holding it at once (see [`WindowOperator::assign`]).
    pub fn set_external_clock(&mut self) {
        self.external_clock = true;
        self.watermarks.second_stage();
    }

    pub fn watermark(&self) -> Millis {
        self.watermarks.current()
    }

    /// The watermark partition `p`'s records are judged against, and its windows emitted up
    /// to: the job's, or a catching-up partition's own clock while that is behind.
    pub fn watermark_for(&self, p: usize) -> Millis {
        let current = self.watermarks.current();
        if self.catching_up.contains_key(&p) { self.watermarks.partition(p).min(current) } else { current }
    }

    /// Partitions `ps` were assigned to this process (all at once: see
    /// [`Watermarks::activate`]). In a second stage the internal topic is keyed by the job's
    /// group key, so a partition's records hold groups no other partition holds; when it is
    /// read from its commit while this process's watermark has moved ahead (another process had
    /// it, or it was taken away and given back), its records are judged, and its windows fired,
    /// by its own clock until that reaches the job's watermark. Judged by the job's watermark,
    /// every record the previous owner had not emitted would be late: lost.
    pub fn assign(&mut self, ps: &[usize]) {
        self.watermarks.activate(ps);
        let (Assigner::Panes(main), true) = (&self.assigner, self.external_clock) else { return };
        let current = self.watermarks.current();
        for &p in ps.iter().filter(|&&p| self.watermarks.partition(p) < current) {
            self.catching_up.insert(p, main.empty_like());
        }
    }

    pub fn watermarks(&self) -> &Watermarks {
        &self.watermarks
    }

    pub fn watermarks_mut(&mut self) -> &mut Watermarks {
        &mut self.watermarks
    }

    /// Windows holding rows that have not fired yet.
    pub fn open_windows(&self) -> usize {
        let side: usize = self.catching_up.values().map(|c| c.open_windows()).sum();
        side + match &self.assigner {
            Assigner::Panes(p) => p.open_windows(),
            Assigner::Sessions(s) => s.open_windows(),
        }
    }

    /// Tumbling windows open in the job's own state (not a catching-up partition's) that took
    /// rows of the last batch, or end in `passed` (see [`Panes::take_touched`]).
    pub fn take_touched(&mut self, passed: (Millis, Millis)) -> Vec<(Millis, Millis, &[RecordBatch])> {
        match &mut self.assigner {
            Assigner::Panes(p) => p.take_touched(passed),
            Assigner::Sessions(_) => Vec::new(),
        }
    }

    /// Per partition, the smallest source offset of a row held in window state: a consumer
    /// may commit up to it, never past it. `partition` and `offset` are the columns of the
    /// `_partition` and `_offset` metadata; every stored batch comes from one partition.
    pub fn held_offsets(&self, partition: usize, offset: usize) -> std::collections::BTreeMap<usize, i64> {
        use datafusion::arrow::array::AsArray;
        use datafusion::arrow::datatypes::{Int32Type, Int64Type};
        let mut least = std::collections::BTreeMap::new();
        let batches: Box<dyn Iterator<Item = &RecordBatch>> = match &self.assigner {
            Assigner::Panes(p) => Box::new(p.batches()),
            Assigner::Sessions(s) => Box::new(s.batches()),
        };
        let batches = batches.chain(self.catching_up.values().flat_map(|c| c.batches()));
        for b in batches.filter(|b| b.num_rows() > 0) {
            let p = b.column(partition).as_primitive::<Int32Type>().value(0) as usize;
            if let Some(min) = datafusion::arrow::compute::min(b.column(offset).as_primitive::<Int64Type>()) {
                let e = least.entry(p).or_insert(min);
                *e = (*e).min(min);
            }
        }
        least
    }

    /// Forget every row of these partitions (the consumer group took them away).
    pub fn drop_partitions(&mut self, partitions: &[usize], partition_column: usize) {
        use datafusion::arrow::array::AsArray;
        use datafusion::arrow::datatypes::Int32Type;
        let keep = |b: &RecordBatch| {
            b.num_rows() == 0 || !partitions.contains(&(b.column(partition_column).as_primitive::<Int32Type>().value(0) as usize))
        };
        match &mut self.assigner {
            Assigner::Panes(p) => p.retain_batches(keep),
            Assigner::Sessions(s) => s.retain_batches(keep),
        }
        self.watermarks.deactivate(partitions);
        for &p in partitions {
            self.catching_up.remove(&p);
            self.watermarks.rewind(p);
        }
    }

    /// Rows held in window state.
    pub fn buffered_rows(&self) -> usize {
        let side: usize = self.catching_up.values().map(|c| c.buffered_rows()).sum();
        side + match &self.assigner {
            Assigner::Panes(p) => p.buffered_rows(),
            Assigner::Sessions(s) => s.buffered_rows(),
        }
    }

    /// Every event before the returned time is in a window that fired: the job's watermark
    /// (or a catching-up partition's own clock, when behind it) down to a window end. `None`
    /// before the first event time, after the end of input, and for sessions and hopping
    /// windows.
    pub fn complete_before(&self) -> Option<Millis> {
        let Assigner::Panes(panes) = &self.assigner else { return None };
        let wm = self.catching_up.keys().map(|&p| self.watermarks.partition(p)).fold(self.watermarks.current(), Millis::min);
        if wm == Millis::MIN || wm == Millis::MAX {
            return None;
        }
        panes.complete_before(wm)
    }

    /// Assign a decoded batch from `partition` to windows, firing those the watermark completes.
    pub fn process(&mut self, partition: usize, batch: &RecordBatch) -> Processed {
        let mut out = Processed::default();
        if batch.num_rows() == 0 {
            return out;
        }
        if let Assigner::Panes(p) = &mut self.assigner {
            p.forget_touched();
        }
        let ts = event_times(batch, self.event_time);
        if self.catching_up.contains_key(&partition) {
            return self.process_catching_up(partition, batch, &ts);
        }
        let keys = match &mut self.assigner {
            Assigner::Sessions(s) => s.keys(batch),
            Assigner::Panes(_) => Vec::new(),
        };
        // A second stage judges a record as its first stage saw it: by the clocks told on its
        // own internal partition before it, when those are ahead of the job's watermark (the
        // least over internal partitions, which one not yet heard from holds at nothing).
        let judged_by = if self.external_clock { self.watermarks.partition(partition) } else { Millis::MIN };
        for (row, &t) in ts.iter().enumerate() {
            let wm = self.watermarks.current().max(judged_by);
            let fate = match &mut self.assigner {
                Assigner::Panes(p) => p.accept(row as u32, t, wm, self.lateness),
                Assigner::Sessions(s) => s.accept(row as u32, t, &keys[row], wm, self.lateness),
            };
            if fate == Fate::Late {
                out.late_rows.push(row as u32);
                out.late_watermarks.push(wm);
            }
            let new_wm = if self.external_clock { wm } else { self.watermarks.observe(partition, t) };
            if fate == Fate::FireNow || (new_wm > wm && new_wm >= self.next_fire()) {
                self.materialize(batch);
                out.fired.extend(self.fire());
            }
        }
        self.materialize(batch);
        out
    }

    /// A batch of a catching-up partition: into its own windows, judged by its own clock.
    fn process_catching_up(&mut self, partition: usize, batch: &RecordBatch, ts: &[Millis]) -> Processed {
        let mut out = Processed::default();
        let wm = self.watermark_for(partition);
        let side = self.catching_up.get_mut(&partition).expect("catching up");
        let mut fire_now = false;
        for (row, &t) in ts.iter().enumerate() {
            match side.accept(row as u32, t, wm, self.lateness) {
                Fate::Late => {
                    out.late_rows.push(row as u32);
                    out.late_watermarks.push(wm);
                }
                Fate::FireNow => fire_now = true,
                Fate::Stored => {}
            }
        }
        side.materialize(batch);
        if fire_now {
            out.fired = side.fire(wm, self.lateness);
        }
        out
    }

    /// Fire what the current watermark completes (after an end of partition or idleness).
    pub fn fire(&mut self) -> Vec<FiredWindow> {
        let wm = self.watermarks.current();
        let lateness = self.lateness;
        let mut fired = match &mut self.assigner {
            Assigner::Panes(p) => p.fire(wm, lateness),
            Assigner::Sessions(s) => s.fire(wm, lateness),
        };
        if !self.catching_up.is_empty() {
            fired.extend(self.fire_catching_up(wm));
        }
        fired.sort_by(|a, b| (a.end, a.start, &a.key).cmp(&(b.end, b.start, &b.key)));
        fired
    }

    /// Each catching-up partition's windows its own clock completes. A partition whose clock
    /// reached `wm` has caught up: its open windows (all ending after `wm`) join the job's.
    fn fire_catching_up(&mut self, wm: Millis) -> Vec<FiredWindow> {
        let mut fired = Vec::new();
        let mut caught_up = Vec::new();
        for (&p, side) in &mut self.catching_up {
            let own = self.watermarks.partition(p).min(wm);
            fired.extend(side.fire(own, self.lateness));
            if own >= wm {
                caught_up.push(p);
            }
        }
        for p in caught_up {
            let side = self.catching_up.remove(&p).expect("listed");
            let Assigner::Panes(main) = &mut self.assigner else { unreachable!("only panes catch up") };
            main.absorb(side);
        }
        fired
    }

    /// End of input: fire every window, in order of end.
    pub fn finish(&mut self) -> Vec<FiredWindow> {
        self.watermarks.finish();
        let mut fired = self.fire();
        self.drain_catching_up(&mut fired);
        fired
    }

    /// Take the open windows without firing them (a stop that discards them).
    pub fn drain_open(&mut self) -> Vec<FiredWindow> {
        let mut w = match &mut self.assigner {
            Assigner::Panes(p) => p.fire(Millis::MAX, 0),
            Assigner::Sessions(s) => s.fire(Millis::MAX, 0),
        };
        self.drain_catching_up(&mut w);
        w
    }

    /// Every catching-up partition's windows into `fired` (the end of input, or a stop), and
    /// all of them in order of end.
    fn drain_catching_up(&mut self, fired: &mut Vec<FiredWindow>) {
        for (_, mut side) in std::mem::take(&mut self.catching_up) {
            fired.extend(side.fire(Millis::MAX, 0));
        }
        fired.sort_by(|a, b| (a.end, a.start, &a.key).cmp(&(b.end, b.start, &b.key)));
    }

    fn next_fire(&self) -> Millis {
        match &self.assigner {
            Assigner::Panes(p) => p.next_fire(),
            Assigner::Sessions(s) => s.next_fire(),
        }
    }

    fn materialize(&mut self, batch: &RecordBatch) {
        match &mut self.assigner {
            Assigner::Panes(p) => p.materialize(batch),
            Assigner::Sessions(s) => s.materialize(batch),
        }
    }
}

/// Floor of `t` to a multiple of `unit` (toward minus infinity).
#[inline]
fn floor_to(t: Millis, unit: Millis) -> Millis {
    t - t.rem_euclid(unit)
}

#[cfg(test)]
mod tests;
