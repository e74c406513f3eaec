//! One SLO series' counts: pane partials in a ring, and running sums per window.
//!
//! Memory is bounded per series, whatever the traffic: `(bad, total)` as two `u32` per pane of
//! the longest window (a 3-day window of 1-minute panes: 4,320 panes, 34.6 KB), and for a
//! period longer than the ring (30 days), the period's counts in at most 720 blocks (an hour
//! each for 30 days, 11.5 KB). Each window's sum is kept running: advancing a pane adds the
//! new pane and subtracts the one that left, so an evaluation costs O(windows), not O(panes).
//!
//! The ring grows with the series' age, up to the longest window: a series seen for an hour
//! holds an hour of panes, not three days of zeros. Panes before the series began are empty,
//! so a window reaching back past its beginning reads nothing from memory. (A fleet's series
//! come and go; allocating and zeroing the full ring for each new one was a seventh of an
//! SLO job's time at 10,000 series.)

use serde::{Deserialize, Serialize};

/// Counts over some span of panes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub bad: u64,
    pub total: u64,
}

/// How a job's windows sit on its panes (shared by every series of the job).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// Length of each running window, in panes.
    pub windows: Vec<u32>,
    /// Ring length in panes (the longest window).
    pub ring: u32,
    /// The period: `Fine(n)` is a window of n panes in the ring (index into `windows`);
    /// `Blocks` counts it in blocks of `block` panes, `blocks` of them.
    pub period: Period,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Period {
    Fine { window: usize },
    Blocks { block: u32, blocks: u32 },
}

/// Periods up to this many panes are counted exactly in the ring (a week of minutes).
const FINE_PERIOD_PANES: u32 = 7 * 24 * 60;
/// A longer period is counted in at most this many blocks.
const PERIOD_BLOCKS: u32 = 720;

impl Layout {
    /// `windows` in panes (alert windows, deduplicated by the caller), `period` in panes.
    pub fn new(mut windows: Vec<u32>, period: u32) -> Layout {
        let longest = windows.iter().copied().max().unwrap_or(1);
        let period = if period <= longest.max(FINE_PERIOD_PANES) {
            let window = match windows.iter().position(|&w| w == period) {
                Some(i) => i,
                None => {
                    windows.push(period);
                    windows.len() - 1
                }
            };
            Period::Fine { window }
        } else {
            let block = period.div_ceil(PERIOD_BLOCKS);
            Period::Blocks { block, blocks: period.div_ceil(block) }
        };
        let ring = windows.iter().copied().max().unwrap_or(1).max(1);
        Layout { windows, ring, period }
    }

    /// Heap bytes of one series in this layout once its ring is whole (its longest window old).
    pub fn bytes_per_series(&self) -> usize {
        let blocks = match self.period {
            Period::Fine { .. } => 0,
            Period::Blocks { blocks, .. } => blocks as usize * std::mem::size_of::<Counts>(),
        };
        self.ring as usize * 8 + self.windows.len() * std::mem::size_of::<Counts>() + blocks + std::mem::size_of::<Series>()
    }
}

/// One series: its ring of panes, running sums, and the period's blocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Series {
    /// `(bad, total)` of pane `p` at `p % ring.len()`, for the panes after `origin` and within
    /// the longest window of the head. Its length is at least that many panes (see [`Series::reserve`]).
    ring: Vec<[u32; 2]>,
    /// Every pane at or before it is empty (where the series began; `i64::MIN`: not known,
    /// a checkpoint written when the ring was always whole).
    #[serde(default = "unknown_origin")]
    origin: i64,
    sums: Vec<Counts>,
    blocks: Vec<Counts>,
    period_sum: Counts,
    /// The newest pane folded in (its index: start / pane).
    head: i64,
    /// The newest pane that counted an event (`i64::MAX`: not known, a checkpoint written
    /// before it was kept).
    #[serde(default = "unknown_pane")]
    last: i64,
}

fn unknown_pane() -> i64 {
    i64::MAX
}

fn unknown_origin() -> i64 {
    i64::MIN
}

impl Series {
    /// A series whose newest pane is `head` and that has counted nothing yet.
    pub fn new(layout: &Layout, head: i64) -> Series {
        let blocks = match layout.period {
            Period::Fine { .. } => Vec::new(),
            Period::Blocks { blocks, .. } => vec![Counts::default(); blocks as usize],
        };
        Series {
            ring: Vec::new(),
            origin: head,
            sums: vec![Counts::default(); layout.windows.len()],
            blocks,
            period_sum: Counts::default(),
            head,
            last: i64::MIN,
        }
    }

    pub fn head(&self) -> i64 {
        self.head
    }

    /// Move to pane `to` (> head), with `counts` in pane `to` and none in the panes between.
    pub fn advance(&mut self, layout: &Layout, to: i64, counts: Counts) {
        debug_assert!(to > self.head, "panes advance: {to} after {}", self.head);
        let ring = layout.ring as i64;
        if to - self.head > ring {
            // Every window lost all it had: start empty one ring before `to`.
            let head = to - ring;
            self.skip_blocks(layout, head);
            self.sums.iter_mut().for_each(|s| *s = Counts::default());
            self.head = head;
            // Nothing before `to` is in any window: the panes between only move the period's
            // blocks, and the series begins again with a small ring.
            self.ring = Vec::new();
            self.origin = to - 1;
        }
        self.reserve(layout, self.origin, to);
        while self.head < to {
            let p = self.head + 1;
            let new = if p == to { counts } else { Counts::default() };
            self.step(layout, p, new);
            self.head = p;
        }
    }

    /// Make the ring long enough for the panes after `origin` up to `newest` (at most the
    /// longest window of them), moving what it holds to the longer ring's slots.
    fn reserve(&mut self, layout: &Layout, origin: i64, newest: i64) {
        let full = layout.ring as usize;
        let needed = newest.saturating_sub(origin).clamp(0, full as i64) as usize;
        let len = self.ring.len();
        if needed <= len {
            return;
        }
        let grown = needed.max(2 * len).max(8).min(full);
        let mut ring = vec![[0, 0]; grown];
        // The panes held now: after the old origin, within the old ring of the head.
        let first = self.origin.max(self.head - len as i64) + 1;
        for q in first..=self.head {
            ring[q.rem_euclid(grown as i64) as usize] = self.ring[q.rem_euclid(len as i64) as usize];
        }
        self.ring = ring;
    }

    /// Pane `q`'s counts; `q` within the longest window of the head (or the pane leaving it).
    #[inline]
    fn read(&self, q: i64) -> [u32; 2] {
        if q <= self.origin {
            return [0, 0];
        }
        self.ring[q.rem_euclid(self.ring.len() as i64) as usize]
    }

    fn step(&mut self, layout: &Layout, p: i64, new: Counts) {
        debug_assert!(self.ring.len() as i64 >= (p - self.origin).min(layout.ring as i64), "the ring holds every pane a window reads");
        if new.total > 0 {
            self.last = p;
        }
        // One division per step: each window's leaving pane is found from the new pane's slot.
        let len = self.ring.len() as i64;
        let slot = p.rem_euclid(len);
        for i in 0..self.sums.len() {
            let n = layout.windows[i] as i64;
            // A pane at or before the origin is empty; a window longer than a young ring
            // reaches back past it.
            let [bad, total] = if p - n <= self.origin || n > len {
                [0, 0]
            } else {
                let at = slot - n;
                self.ring[if at < 0 { at + len } else { at } as usize]
            };
            let sum = &mut self.sums[i];
            sum.bad = sum.bad + new.bad - bad as u64;
            sum.total = sum.total + new.total - total as u64;
        }
        self.ring[slot as usize] = [saturate(new.bad), saturate(new.total)];
        if let Period::Blocks { block, blocks } = layout.period {
            let b = p.div_euclid(block as i64);
            let slot = &mut self.blocks[b.rem_euclid(blocks as i64) as usize];
            if p.rem_euclid(block as i64) == 0 {
                // A new block: the one it replaces leaves the period.
                self.period_sum.bad -= slot.bad;
                self.period_sum.total -= slot.total;
                *slot = Counts::default();
            }
            slot.bad += new.bad;
            slot.total += new.total;
            self.period_sum.bad += new.bad;
            self.period_sum.total += new.total;
        }
    }

    /// Jump the head to `head` without counting the panes between: the blocks they pass
    /// leave the period.
    fn skip_blocks(&mut self, layout: &Layout, head: i64) {
        let Period::Blocks { block, blocks } = layout.period else { return };
        let (from, to) = (self.head.div_euclid(block as i64), head.div_euclid(block as i64));
        if to - from >= blocks as i64 {
            self.blocks.iter_mut().for_each(|b| *b = Counts::default());
            self.period_sum = Counts::default();
            return;
        }
        for b in from + 1..=to {
            let slot = &mut self.blocks[b.rem_euclid(blocks as i64) as usize];
            self.period_sum.bad -= slot.bad;
            self.period_sum.total -= slot.total;
            *slot = Counts::default();
        }
    }

    /// Pane `p` (at or before head) now holds `counts` instead of what it held: a late record
    /// within the allowed lateness corrected it. Panes older than the ring only correct the
    /// period's blocks.
    pub fn correct(&mut self, layout: &Layout, p: i64, counts: Counts) {
        let ring = layout.ring as i64;
        let age = self.head - p;
        if age < 0 || age >= ring {
            return;
        }
        if counts.total > 0 && self.last != i64::MAX {
            self.last = self.last.max(p);
        }
        if p <= self.origin {
            // A pane from before the series began: it begins earlier.
            self.reserve(layout, p - 1, self.head);
            self.origin = p - 1;
        }
        let len = self.ring.len() as i64;
        let slot = &mut self.ring[p.rem_euclid(len) as usize];
        let (old_bad, old_total) = (slot[0] as u64, slot[1] as u64);
        *slot = [saturate(counts.bad), saturate(counts.total)];
        let (new_bad, new_total) = (slot[0] as u64, slot[1] as u64);
        for (sum, &n) in self.sums.iter_mut().zip(&layout.windows) {
            if age < n as i64 {
                sum.bad = sum.bad + new_bad - old_bad;
                sum.total = sum.total + new_total - old_total;
            }
        }
        if let Period::Blocks { block, blocks } = layout.period {
            let b = p.div_euclid(block as i64);
            if self.head.div_euclid(block as i64) - b < blocks as i64 {
                let slot = &mut self.blocks[b.rem_euclid(blocks as i64) as usize];
                slot.bad = slot.bad + new_bad - old_bad;
                slot.total = slot.total + new_total - old_total;
                self.period_sum.bad = self.period_sum.bad + new_bad - old_bad;
                self.period_sum.total = self.period_sum.total + new_total - old_total;
            }
        }
    }

    /// Counts of window `i` of the layout, ending with the head pane.
    pub fn window(&self, i: usize) -> Counts {
        self.sums[i]
    }

    /// Counts in the head pane.
    pub fn pane(&self) -> Counts {
        let [bad, total] = self.read(self.head);
        Counts { bad: bad as u64, total: total as u64 }
    }

    /// Counts over the period ending with the head pane.
    pub fn period(&self, layout: &Layout) -> Counts {
        match layout.period {
            Period::Fine { window } => self.sums[window],
            Period::Blocks { .. } => self.period_sum,
        }
    }

    /// The first head pane at which nothing this series counted is left in any window or the
    /// period, were it moved there without new events: what [`Series::is_empty`] would say
    /// then, without moving it (`None`: not known).
    pub fn empty_from(&self, layout: &Layout) -> Option<i64> {
        if self.last == i64::MAX {
            return None;
        }
        if self.last == i64::MIN {
            return Some(self.head);
        }
        let windows = self.last + layout.ring as i64;
        Some(match layout.period {
            Period::Fine { .. } => windows,
            Period::Blocks { block, blocks } => windows.max((self.last.div_euclid(block as i64) + blocks as i64) * block as i64),
        })
    }

    /// Heap bytes this series takes now (at most [`Layout::bytes_per_series`]).
    pub fn heap_bytes(&self) -> usize {
        self.ring.capacity() * 8 + (self.sums.capacity() + self.blocks.capacity()) * std::mem::size_of::<Counts>() + std::mem::size_of::<Series>()
    }

    /// Nothing counted in any window or the period: the series can be forgotten.
    pub fn is_empty(&self, layout: &Layout) -> bool {
        self.sums.iter().all(|s| s.total == 0) && self.period(layout).total == 0
    }
}

fn saturate(n: u64) -> u32 {
    n.min(u32::MAX as u64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sums recomputed from scratch over a plain list of panes.
    fn naive(panes: &[(i64, Counts)], head: i64, n: i64) -> Counts {
        let mut c = Counts::default();
        for (p, k) in panes {
            if *p > head - n && *p <= head {
                c.bad += k.bad;
                c.total += k.total;
            }
        }
        c
    }

    #[test]
    fn running_sums_equal_sums_recomputed_from_the_panes() {
        let layout = Layout::new(vec![5, 60, 3], 60);
        let mut s = Series::new(&layout, 99);
        let mut panes = Vec::new();
        let mut p = 100;
        let mut x: u64 = 7;
        for step in 0..2_000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            // gaps of one to several panes, sometimes longer than the ring
            p += if step % 97 == 0 { 70 } else { 1 + (x >> 60) as i64 % 3 };
            let c = Counts { bad: (x >> 33) % 5, total: 5 + (x >> 40) % 20 };
            s.advance(&layout, p, c);
            panes.push((p, c));
            if step == 2 {
                // A late record for a pane before the series began: it begins earlier.
                let q = 97;
                let fixed = Counts { bad: 2, total: 3 };
                s.correct(&layout, q, fixed);
                panes.push((q, fixed));
            }
            if step % 13 == 0 && p > 110 {
                let q = p - 2; // a late correction
                let fixed = Counts { bad: 1, total: 9 };
                s.correct(&layout, q, fixed);
                panes.retain(|(pp, _)| *pp != q);
                panes.push((q, fixed));
            }
            for (i, &n) in layout.windows.iter().enumerate() {
                assert_eq!(s.window(i), naive(&panes, p, n as i64), "window {n} at pane {p}");
            }
        }
    }

    /// A young series holds only the panes since it began; an old one, the longest window.
    #[test]
    fn the_ring_grows_with_the_series_age_up_to_the_longest_window() {
        let layout = Layout::new(vec![5, 4_320], 43_200);
        let mut s = Series::new(&layout, 1_000);
        s.advance(&layout, 1_010, Counts { bad: 1, total: 4 });
        // The period's 720 blocks (11,520 bytes) and ten panes, not 4,320.
        assert!(s.heap_bytes() < 12_000, "ten panes old: {} bytes", s.heap_bytes());
        assert_eq!(s.pane(), Counts { bad: 1, total: 4 });
        for p in 1_011..10_000 {
            s.advance(&layout, p, Counts { bad: 0, total: 1 });
        }
        assert_eq!(s.window(1), Counts { bad: 0, total: 4_320 });
        assert!(s.heap_bytes() <= layout.bytes_per_series() && s.heap_bytes() > 40_000, "{}", s.heap_bytes());
        // Quiet for longer than the ring: it starts small again.
        s.advance(&layout, 20_000, Counts { bad: 1, total: 1 });
        assert_eq!((s.window(0), s.window(1)), (Counts { bad: 1, total: 1 }, Counts { bad: 1, total: 1 }));
        assert!(s.heap_bytes() < 12_000, "{}", s.heap_bytes());
    }

    /// Where a series not moved says it would be empty is where moving it says so.
    #[test]
    fn empty_from_says_what_moving_the_series_would() {
        for layout in [Layout::new(vec![5, 60, 3], 60), Layout::new(vec![5, 60], 43_200)] {
            let mut x: u64 = 11;
            let mut s = Series::new(&layout, 0);
            let mut p = 0;
            for step in 0..3_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                p += 1 + (x >> 58) as i64 % 8 + if step % 211 == 0 { 40_000 } else { 0 };
                let total = if (x >> 20) % 3 == 0 { 0 } else { 1 + (x >> 33) % 9 };
                s.advance(&layout, p, Counts { bad: total / 3, total });
                let from = s.empty_from(&layout).unwrap();
                for gap in [1, 2, 3, 59, 60, 61, 3_000, 43_199, 43_200, 43_260, 50_000] {
                    let mut moved = s.clone();
                    moved.advance(&layout, p + gap, Counts::default());
                    assert_eq!(moved.is_empty(&layout), p + gap >= from, "pane {p} + {gap}, empty from {from}");
                }
            }
        }
    }

    #[test]
    fn a_long_period_is_counted_in_blocks() {
        let layout = Layout::new(vec![5, 60], 43_200);
        assert_eq!(layout.period, Period::Blocks { block: 60, blocks: 720 });
        let mut s = Series::new(&layout, -1);
        for p in 0..50_000 {
            s.advance(&layout, p, Counts { bad: 1, total: 2 });
        }
        // The last 719 whole blocks and the current partial one (50,000 = 833 * 60 + 20).
        assert_eq!(s.period(&layout), Counts { bad: 719 * 60 + 20, total: 2 * (719 * 60 + 20) });
        assert!(layout.bytes_per_series() < 50_000);
        // A gap longer than the ring but shorter than the period keeps the older blocks.
        s.advance(&layout, 50_000 + 10_000, Counts { bad: 0, total: 1 });
        let kept = 43_200 / 60 - 1 - 10_000 / 60; // whole blocks still inside the period
        assert!(s.period(&layout).bad <= kept as u64 * 60 + 60 && s.period(&layout).bad >= kept as u64 * 60 - 60);
        s.advance(&layout, 200_000, Counts { bad: 0, total: 1 });
        assert_eq!(s.period(&layout), Counts { bad: 0, total: 1 });
    }
}
