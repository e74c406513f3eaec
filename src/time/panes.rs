//! Tumbling and hopping windows built from panes.
//!
//! A pane is the greatest common divisor of size and slide; each row is stored once, in its
//! pane, and a window is the list of its panes' batches (Arrow batches are shared, not copied).
//! A tumbling window is one pane.

use std::collections::{BTreeMap, BTreeSet};

use datafusion::arrow::array::UInt32Array;
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use super::{floor_to, Fate, FiredWindow};
use crate::state::SerdeBatches;
use crate::Millis;

#[derive(Debug, Serialize, Deserialize)]
pub struct Panes {
    size: Millis,
    slide: Millis,
    pane: Millis,
    /// Pane start → its rows.
    panes: BTreeMap<Millis, SerdeBatches>,
    /// Ends of windows that hold rows and have not fired.
    unfired: BTreeSet<Millis>,
    /// Ends of windows that fired and still accept late rows.
    /// Ends of windows that fired and still accept late rows, with how often they fired.
    retained: BTreeMap<Millis, u32>,
    /// Ends of windows to fire at once (late rows arrived after their end).
    due_now: BTreeSet<Millis>,
    /// Rows of the batch being processed, per pane, as runs of row numbers.
    #[serde(skip)]
    pending: Vec<(Millis, Vec<(u32, u32)>)>,
    /// The last pane decided, with the watermark it was decided against.
    #[serde(skip)]
    last: Option<(Millis, Millis, Fate)>,
    /// Panes the batch being processed gave rows to (see [`Panes::take_touched`]).
    #[serde(skip)]
    touched: Vec<Millis>,
}

impl Panes {
    pub fn new(size: Millis, slide: Millis) -> Self {
        assert!(size > 0 && slide > 0 && slide <= size, "validated window");
        Panes {
            size,
            slide,
            pane: gcd(size, slide),
            panes: BTreeMap::new(),
            unfired: BTreeSet::new(),
            retained: BTreeMap::new(),
            due_now: BTreeSet::new(),
            pending: Vec::new(),
            last: None,
            touched: Vec::new(),
        }
    }

    /// Ends of the windows that contain the pane starting at `p`, earliest first.
    /// The end of the last window holding event time `t`.
    pub fn last_end(&self, t: Millis) -> Millis {
        floor_to(floor_to(t, self.pane), self.slide) + self.size
    }

    fn window_ends(&self, p: Millis) -> impl Iterator<Item = Millis> + use<> {
        let last_start = floor_to(p, self.slide);
        let (size, slide) = (self.size, self.slide);
        let first_start = last_start - ((size - 1 - (p - last_start)) / slide) * slide;
        (0..)
            .map(move |k| first_start + k * slide)
            .take_while(move |s| *s <= last_start)
            .map(move |s| s + size)
    }

    pub fn accept(&mut self, row: u32, t: Millis, wm: Millis, lateness: Millis) -> Fate {
        let p = floor_to(t, self.pane);
        let fate = match self.last {
            Some((lp, lwm, fate)) if lp == p && lwm == wm => fate,
            _ => {
                let mut fate = Fate::Late;
                let ends: Vec<Millis> = self.window_ends(p).collect();
                for end in ends {
                    if end.saturating_add(lateness) <= wm {
                        continue; // that window is gone
                    }
                    if end <= wm {
                        self.due_now.insert(end);
                        fate = Fate::FireNow;
                    } else {
                        self.unfired.insert(end);
                        if fate == Fate::Late {
                            fate = Fate::Stored;
                        }
                    }
                }
                self.last = Some((p, wm, fate));
                fate
            }
        };
        if fate != Fate::Late {
            self.push_pending(p, row);
        }
        fate
    }

    fn push_pending(&mut self, p: Millis, row: u32) {
        let slot = match self.pending.iter().position(|(q, _)| *q == p) {
            Some(i) => i,
            None => {
                self.pending.push((p, Vec::new()));
                self.pending.len() - 1
            }
        };
        let runs = &mut self.pending[slot].1;
        match runs.last_mut() {
            Some((_, end)) if *end == row => *end = row + 1,
            _ => runs.push((row, row + 1)),
        }
    }

    pub fn materialize(&mut self, batch: &RecordBatch) {
        for (p, runs) in self.pending.drain(..) {
            let rows = if let [(start, end)] = runs[..] {
                batch.slice(start as usize, (end - start) as usize)
            } else {
                let idx: UInt32Array = runs.iter().flat_map(|(s, e)| *s..*e).collect();
                take_record_batch(batch, &idx).expect("row numbers are in range")
            };
            self.panes.entry(p).or_default().0.push(rows);
            if self.touched.last() != Some(&p) {
                self.touched.push(p);
            }
        }
        self.last = None;
    }

    /// Every event before the returned time is in a window that fired by watermark `wm`
    /// (tumbling windows; hopping ones give `None`, their events span several windows).
    pub fn complete_before(&self, wm: Millis) -> Option<Millis> {
        (self.size == self.slide).then(|| floor_to(wm, self.size))
    }

    pub fn next_fire(&self) -> Millis {
        self.unfired.first().copied().unwrap_or(Millis::MAX)
    }

    pub fn fire(&mut self, wm: Millis, lateness: Millis) -> Vec<FiredWindow> {
        let mut ends: BTreeSet<Millis> = std::mem::take(&mut self.due_now);
        while let Some(&end) = self.unfired.first() {
            if end > wm {
                break;
            }
            self.unfired.pop_first();
            ends.insert(end);
        }
        let mut fired = Vec::with_capacity(ends.len());
        for end in ends {
            let start = end - self.size;
            let batches: Vec<RecordBatch> =
                self.panes.range(start..end).flat_map(|(_, b)| b.0.iter().cloned()).collect();
            let times = self.retained.entry(end).or_insert(0);
            let revision = *times;
            *times += 1;
            fired.push(FiredWindow { start, end, key: Vec::new(), batches, update: revision > 0, revision });
        }
        // Forget windows past their lateness, and panes no window needs any more.
        self.retained.retain(|end, _| end.saturating_add(lateness) > wm);
        let (size, slide) = (self.size, self.slide);
        self.panes.retain(|&p, _| (floor_to(p, slide) + size).saturating_add(lateness) > wm);
        self.last = None;
        fired
    }

    /// Empty windows of the same shape.
    pub fn empty_like(&self) -> Panes {
        Panes::new(self.size, self.slide)
    }

    /// Take in `other`'s rows and open windows (a catching-up partition's, every one of them
    /// ending after this one's watermark, so none has fired here).
    pub fn absorb(&mut self, other: Panes) {
        for (p, b) in other.panes {
            self.panes.entry(p).or_default().0.extend(b.0);
        }
        self.unfired.extend(other.unfired);
        self.due_now.extend(other.due_now);
        self.last = None;
    }

    /// Every batch held, once.
    pub fn batches(&self) -> impl Iterator<Item = &RecordBatch> {
        self.panes.values().flat_map(|b| b.0.iter())
    }

    /// Keep only the batches `keep` accepts.
    pub fn retain_batches(&mut self, keep: impl Fn(&RecordBatch) -> bool) {
        for b in self.panes.values_mut() {
            b.0.retain(|batch| keep(batch));
        }
        self.panes.retain(|_, b| !b.0.is_empty());
    }

    /// A new batch: the panes it touches are noted afresh.
    pub fn forget_touched(&mut self) {
        self.touched.clear();
    }

    /// Tumbling windows that have not fired and either took rows of the last batch or end in
    /// `passed` (start exclusive, end inclusive): start, end and rows so far (a window's
    /// batches only grow until it fires). Hopping windows give none. What it costs is what
    /// changed, not how many windows are open.
    pub fn take_touched(&mut self, passed: (Millis, Millis)) -> Vec<(Millis, Millis, &[RecordBatch])> {
        let mut starts = std::mem::take(&mut self.touched);
        if self.size != self.slide {
            return Vec::new();
        }
        if passed.0 < passed.1 {
            starts.extend(self.unfired.range(passed.0.saturating_add(1)..=passed.1).map(|end| end - self.size));
        }
        starts.sort_unstable();
        starts.dedup();
        starts
            .into_iter()
            .filter(|s| self.unfired.contains(&(s + self.size)))
            .filter_map(|s| self.panes.get(&s).map(|b| (s, s + self.size, b.0.as_slice())))
            .collect()
    }

    pub fn open_windows(&self) -> usize {
        self.unfired.len()
    }

    pub fn buffered_rows(&self) -> usize {
        self.panes.values().flat_map(|b| b.0.iter()).map(|b| b.num_rows()).sum()
    }
}

fn gcd(a: Millis, b: Millis) -> Millis {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hopping_windows_containing_a_pane() {
        let p = Panes::new(10, 5);
        assert_eq!(p.window_ends(0).collect::<Vec<_>>(), vec![5, 10]);
        assert_eq!(p.window_ends(7 - 7 % 5).collect::<Vec<_>>(), vec![10, 15]);
        let p = Panes::new(10, 4); // pane 2
        // pane [6,8) is in windows starting at 0 and 4: [0,10), [4,14)
        assert_eq!(p.window_ends(6).collect::<Vec<_>>(), vec![10, 14]);
        // pane [-2,0) is in windows starting at -8 and -4
        assert_eq!(p.window_ends(-2).collect::<Vec<_>>(), vec![2, 6]);
        let t = Panes::new(60, 60);
        assert_eq!(t.window_ends(120).collect::<Vec<_>>(), vec![180]);
    }
}
