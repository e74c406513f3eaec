//! Every series' counts of one SLO job, kept pane by pane: for each pane, the series that
//! counted something in it and what they counted.
//!
//! Why by pane and not by series: at every pane end each window loses the pane that left it.
//! With a ring per series, moving 10,000 series one pane read a leaving pane per series and
//! window, a cache miss each, whether the series had counted anything or not: three quarters of
//! an SLO job's time. By pane, moving every series reads the few columns that leave a window,
//! front to back, and touches only the series in them. A series quiet in the leaving panes
//! costs nothing, and the running sums of every series (16 bytes per series and window) stay
//! in cache.
//!
//! Memory follows the traffic: 8 bytes per series and pane it counted in, within the longest
//! window (8 more when some of its events were bad). A period longer than a week (30 days) is
//! counted in at most 720 blocks: 16 bytes per series and block it counted in.
//!
//! Each window's sum is kept running, so evaluating a series costs O(windows), whatever the
//! windows' lengths.

use std::collections::HashMap;

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
    /// Panes held (the longest window).
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

    /// Heap bytes one series takes at most, whatever its traffic: a pair of events and one of
    /// bad events in every pane of the longest window and every block of the period (10 bytes
    /// each at worst: a slot far from the previous pair's, a count in the billions; 2 or 3 as
    /// counts and slots usually are), and its running sums.
    pub fn bytes_per_series(&self) -> usize {
        let blocks = match self.period {
            Period::Fine { .. } => 0,
            Period::Blocks { blocks, .. } => blocks as usize * 2 * MAX_PAIR + std::mem::size_of::<Counts>(),
        };
        self.ring as usize * 2 * MAX_PAIR + self.windows.len() * std::mem::size_of::<Counts>() + blocks
    }

    fn blocks(&self) -> Option<(i64, i64)> {
        match self.period {
            Period::Fine { .. } => None,
            Period::Blocks { block, blocks } => Some((block as i64, blocks as i64)),
        }
    }
}

/// Bytes of one packed pair at most (two varints of up to 33 bits).
const MAX_PAIR: usize = 10;

/// A series' place in the store (the evaluator names it).
pub type Slot = u32;

/// A pane's count as the store holds it: saturated at `u32::MAX` (4 billion events of one
/// series in one pane), so what leaves a window is what came in.
fn saturate(n: u64) -> u64 {
    n.min(u32::MAX as u64)
}

/// `(slot, n)` pairs, packed: each as its slot's difference from the previous pair's (zigzag)
/// and `n`, in LEB128 varints. A pane's pairs go in by slot, so a pair takes two or three
/// bytes instead of eight: at 100,000 series counting every minute, a 3-day window is 1 GB
/// rather than 3.5.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Pairs {
    bytes: Vec<u8>,
    /// The slot of the last pair (the next one is written relative to it).
    last: Slot,
}

impl Pairs {
    fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.last = 0;
    }

    fn push(&mut self, slot: Slot, n: u64) {
        let d = slot as i64 - self.last as i64;
        put(&mut self.bytes, ((d << 1) ^ (d >> 63)) as u64);
        put(&mut self.bytes, n);
        self.last = slot;
    }

    fn iter(&self) -> PairsIter<'_> {
        PairsIter { bytes: &self.bytes, slot: 0 }
    }

    fn from_pairs(pairs: impl IntoIterator<Item = (Slot, u64)>) -> Pairs {
        let mut out = Pairs::default();
        for (s, n) in pairs {
            out.push(s, n);
        }
        out
    }
}

fn put(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

struct PairsIter<'a> {
    bytes: &'a [u8],
    slot: Slot,
}

impl PairsIter<'_> {
    #[inline]
    fn take(&mut self) -> u64 {
        let mut n = 0u64;
        let mut shift = 0;
        loop {
            let b = self.bytes[0];
            self.bytes = &self.bytes[1..];
            n |= ((b & 0x7f) as u64) << shift;
            if b < 0x80 {
                return n;
            }
            shift += 7;
        }
    }
}

impl Iterator for PairsIter<'_> {
    type Item = (Slot, u64);

    #[inline]
    fn next(&mut self) -> Option<(Slot, u64)> {
        if self.bytes.is_empty() {
            return None;
        }
        let z = self.take();
        let d = (z >> 1) as i64 ^ -((z & 1) as i64);
        self.slot = (self.slot as i64 + d) as Slot;
        Some((self.slot, self.take()))
    }
}

/// The series that counted something in one pane (or one block of the period): `(slot, n)` for
/// their events, and for their bad events (rarer, in a list of their own). No zero counts; a
/// block may hold a series more than once (one pair per pane it counted in, merged when the
/// block is done).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Column {
    totals: Pairs,
    bads: Pairs,
}

impl Column {
    fn is_empty(&self) -> bool {
        self.totals.is_empty() && self.bads.is_empty()
    }

    fn clear(&mut self) {
        self.totals.clear();
        self.bads.clear();
    }

    fn push(&mut self, slot: Slot, c: Counts) {
        if c.total > 0 {
            self.totals.push(slot, c.total);
        }
        if c.bad > 0 {
            self.bads.push(slot, c.bad);
        }
    }

    /// What the column holds for each of `slots`.
    fn gather(&self, slots: &HashMap<Slot, Counts>) -> HashMap<Slot, Counts> {
        let mut held: HashMap<Slot, Counts> = HashMap::with_capacity(slots.len());
        for (s, n) in self.totals.iter() {
            if slots.contains_key(&s) {
                held.entry(s).or_default().total += n;
            }
        }
        for (s, n) in self.bads.iter() {
            if slots.contains_key(&s) {
                held.entry(s).or_default().bad += n;
            }
        }
        held
    }

    /// Change what the column holds per slot by `deltas` (never below zero), in one pass.
    fn apply(&mut self, deltas: &HashMap<Slot, (i64, i64)>) {
        fn one(list: &mut Pairs, deltas: &HashMap<Slot, (i64, i64)>, pick: fn(&(i64, i64)) -> i64) {
            let mut left: HashMap<Slot, i64> = deltas.iter().map(|(s, d)| (*s, pick(d))).filter(|(_, d)| *d != 0).collect();
            if left.is_empty() {
                return;
            }
            let mut pairs: Vec<(Slot, u64)> = list.iter().collect();
            for (s, n) in pairs.iter_mut() {
                let Some(d) = left.get_mut(s) else { continue };
                let now = *n as i64;
                let new = (now + *d).max(0);
                *d -= new - now;
                *n = new as u64;
            }
            let mut more: Vec<(Slot, i64)> = left.into_iter().filter(|(_, d)| *d > 0).collect();
            more.sort_unstable();
            pairs.extend(more.into_iter().map(|(s, d)| (s, d as u64)));
            *list = Pairs::from_pairs(pairs.into_iter().filter(|(_, n)| *n > 0));
        }
        one(&mut self.totals, deltas, |d| d.1);
        one(&mut self.bads, deltas, |d| d.0);
    }

    /// One pair per series, in slot order (a block, once done).
    fn merge(&mut self) {
        for list in [&mut self.totals, &mut self.bads] {
            let mut pairs: Vec<(Slot, u64)> = list.iter().collect();
            pairs.sort_unstable_by_key(|(s, _)| *s);
            pairs.dedup_by(|later, kept| {
                if later.0 == kept.0 {
                    kept.1 += later.1;
                    true
                } else {
                    false
                }
            });
            *list = Pairs::from_pairs(pairs);
            list.bytes.shrink_to_fit();
        }
    }

    fn heap_bytes(&self) -> usize {
        self.totals.bytes.capacity() + self.bads.bytes.capacity()
    }
}

/// Every series of one job, moved pane by pane together. Its serialised form holds the columns
/// only; the running sums are recomputed from them on restore ([`Store::rebuild`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Store {
    /// The newest pane folded in; every series is at it (`None`: none yet).
    head: Option<i64>,
    /// The panes `(head - ring, head]`, pane `p` at `p % ring` (empty until the first pane).
    panes: Vec<Column>,
    /// A period counted in blocks: its blocks up to the head's, block `b` at `b % blocks`.
    blocks: Vec<Column>,
    /// Per slot and window (at `slot × windows + i`): the window's counts, ending with the head.
    #[serde(skip)]
    sums: Vec<Counts>,
    /// Per slot: the period's counts, when counted in blocks.
    #[serde(skip)]
    period: Vec<Counts>,
    /// The pane being folded in, per slot, and the slots it has, a bit each: walked in slot
    /// order, as a column takes its pairs, without sorting them (the sort was a third of a
    /// pane's step at 10,000 series).
    #[serde(skip)]
    pending: Vec<Counts>,
    #[serde(skip)]
    queued: Vec<u64>,
    #[serde(skip)]
    windows: usize,
}

/// The slots of word `word` of a bit set whose bits are `bits`, in order.
fn set_bits(word: usize, mut bits: u64) -> impl Iterator<Item = Slot> {
    std::iter::from_fn(move || {
        (bits != 0).then(|| {
            let bit = bits.trailing_zeros();
            bits &= bits - 1;
            (word * 64) as Slot + bit
        })
    })
}

/// Slots a move or a correction changed, for the evaluator to look at again.
#[derive(Debug, Default)]
pub struct Touched {
    /// A window's bad count changed: whether a pair can burn may have changed.
    pub bad: Vec<Slot>,
    /// Counts left a window or the period (or a new series counted nothing): it may be empty.
    pub emptier: Vec<Slot>,
}

impl Store {
    pub fn new(layout: &Layout) -> Store {
        let mut store = Store::default();
        store.rebuild(layout);
        store
    }

    pub fn head(&self) -> Option<i64> {
        self.head
    }

    /// After deserialising: size the per-slot parts and recompute every running sum from the
    /// columns.
    pub fn rebuild(&mut self, layout: &Layout) {
        self.windows = layout.windows.len();
        self.sums.clear();
        self.period.clear();
        self.pending.clear();
        self.queued.clear();
        let Some(head) = self.head else { return };
        let ring = layout.ring as i64;
        let pane_slots = self.panes.iter().flat_map(|c| c.totals.iter().chain(c.bads.iter()).map(|e| e.0));
        let block_slots = self.blocks.iter().flat_map(|c| c.totals.iter().chain(c.bads.iter()).map(|e| e.0));
        if let Some(most) = pane_slots.chain(block_slots).max() {
            self.reserve(most);
        }
        for age in 0..ring.min(self.panes.len() as i64) {
            let column = &self.panes[(head - age).rem_euclid(ring) as usize];
            for (s, n) in column.totals.iter() {
                for (i, &w) in layout.windows.iter().enumerate() {
                    if age < w as i64 {
                        self.sums[s as usize * self.windows + i].total += n as u64;
                    }
                }
            }
            for (s, n) in column.bads.iter() {
                for (i, &w) in layout.windows.iter().enumerate() {
                    if age < w as i64 {
                        self.sums[s as usize * self.windows + i].bad += n as u64;
                    }
                }
            }
        }
        for column in &self.blocks {
            for (s, n) in column.totals.iter() {
                self.period[s as usize].total += n;
            }
            for (s, n) in column.bads.iter() {
                self.period[s as usize].bad += n;
            }
        }
    }

    /// A store at pane `head` holding what checkpoints of rings per series held: `(slot, pane,
    /// counts)` within the longest window, `(slot, block, counts)` within the period.
    pub fn from_parts(layout: &Layout, head: i64, panes: &[(Slot, i64, Counts)], blocks: &[(Slot, i64, Counts)]) -> Store {
        let mut store = Store { head: Some(head), ..Store::default() };
        store.allocate(layout);
        let ring = layout.ring as i64;
        for &(s, p, c) in panes {
            if head - p >= 0 && head - p < ring {
                store.panes[p.rem_euclid(ring) as usize].push(s, c);
            }
        }
        if let Some((_, count)) = layout.blocks() {
            for &(s, b, c) in blocks {
                store.blocks[b.rem_euclid(count) as usize].push(s, c);
            }
        }
        store.rebuild(layout);
        store
    }

    /// The columns, empty, once: a pane per pane of the longest window, a block per block.
    fn allocate(&mut self, layout: &Layout) {
        if self.panes.is_empty() {
            self.panes = vec![Column::default(); layout.ring as usize];
            if let Some((_, blocks)) = layout.blocks() {
                self.blocks = vec![Column::default(); blocks as usize];
            }
        }
    }

    /// Make room for `slot` in the per-slot parts.
    pub fn reserve(&mut self, slot: Slot) {
        let n = slot as usize + 1;
        if self.period.len() < n {
            self.sums.resize(n * self.windows, Counts::default());
            self.period.resize(n, Counts::default());
            self.pending.resize(n, Counts::default());
            self.queued.resize(n.div_ceil(64), 0);
        }
    }

    /// Count `c` for `slot` in the pane being folded in (the next [`Store::advance`]'s).
    pub fn add(&mut self, slot: Slot, c: Counts) {
        self.reserve(slot);
        self.queued[slot as usize / 64] |= 1 << (slot % 64);
        let p = &mut self.pending[slot as usize];
        p.bad += c.bad;
        p.total += c.total;
    }

    /// What `slot` counted in the pane being folded in.
    #[cfg(test)]
    pub fn pending_of(&self, slot: Slot) -> Counts {
        self.pending.get(slot as usize).copied().unwrap_or_default()
    }

    /// Start over at pane `head` (only when no series holds anything).
    pub fn restart(&mut self, head: i64) {
        debug_assert!(self.panes.iter().all(Column::is_empty) && self.blocks.iter().all(Column::is_empty), "restarted while holding counts");
        self.head = Some(head);
    }

    /// Move every series to pane `to`, with what was folded in ([`Store::add`]) in pane `to`
    /// and nothing in the panes between.
    pub fn advance(&mut self, layout: &Layout, to: i64, touched: &mut Touched) {
        let head = *self.head.get_or_insert(to - 1);
        debug_assert!(to > head, "panes advance: {to} after {head}");
        self.allocate(layout);
        for q in head + 1..to {
            self.step(layout, q, false, touched);
        }
        self.step(layout, to, true, touched);
    }

    fn step(&mut self, layout: &Layout, q: i64, fold: bool, touched: &mut Touched) {
        let (ring, w) = (layout.ring as i64, self.windows);
        // Each window loses the pane that leaves it; the longest window's is the oldest held,
        // and its place takes the new pane.
        for (i, &n) in layout.windows.iter().enumerate() {
            let column = &self.panes[(q - n as i64).rem_euclid(ring) as usize];
            for (s, n) in column.totals.iter() {
                let sum = &mut self.sums[s as usize * w + i].total;
                debug_assert!(*sum >= n as u64, "a window loses only what it counted");
                *sum -= n as u64;
            }
            for (s, n) in column.bads.iter() {
                self.sums[s as usize * w + i].bad -= n as u64;
                touched.bad.push(s);
            }
            if n == layout.ring {
                touched.emptier.extend(column.totals.iter().map(|(s, _)| s));
            }
        }
        let slot = q.rem_euclid(ring) as usize;
        self.panes[slot].clear();
        let blocks = layout.blocks();
        if let Some((block, count)) = blocks {
            let b = q.div_euclid(block);
            if q.rem_euclid(block) == 0 {
                // A new block: the one it replaces leaves the period; the one before is done.
                let leaving = &mut self.blocks[b.rem_euclid(count) as usize];
                for (s, n) in leaving.totals.iter() {
                    self.period[s as usize].total -= n;
                    touched.emptier.push(s);
                }
                for (s, n) in leaving.bads.iter() {
                    self.period[s as usize].bad -= n;
                }
                leaving.clear();
                self.blocks[(b - 1).rem_euclid(count) as usize].merge();
            }
        }
        if fold {
            let column = &mut self.panes[slot];
            // By slot: the column's pairs then take a byte or two for the slot.
            let queued = self.queued.iter_mut().enumerate().filter(|(_, bits)| **bits != 0);
            for s in queued.flat_map(|(word, bits)| set_bits(word, std::mem::take(bits))) {
                let c = std::mem::take(&mut self.pending[s as usize]);
                // Saturated as the pane holds it, so what leaves is what came.
                let c = Counts { bad: saturate(c.bad), total: saturate(c.total) };
                if c.total == 0 {
                    touched.emptier.push(s);
                    continue;
                }
                column.push(s, c);
                for sum in &mut self.sums[s as usize * w..(s as usize + 1) * w] {
                    sum.bad += c.bad;
                    sum.total += c.total;
                }
                if c.bad > 0 {
                    touched.bad.push(s);
                }
                if let Some((block, count)) = blocks {
                    self.blocks[q.div_euclid(block).rem_euclid(count) as usize].push(s, c);
                    let period = &mut self.period[s as usize];
                    period.bad += c.bad;
                    period.total += c.total;
                }
            }
        }
        self.head = Some(q);
    }

    /// Pane `p` (at or before the head) now holds `fixes` for their slots instead of what it
    /// held: late records within the allowed lateness corrected it. Panes older than the
    /// longest window are not held and not corrected.
    pub fn correct(&mut self, layout: &Layout, p: i64, fixes: &HashMap<Slot, Counts>, touched: &mut Touched) {
        let head = *self.head.get_or_insert(p);
        let (ring, w) = (layout.ring as i64, self.windows);
        let age = head - p;
        if age < 0 || age >= ring || fixes.is_empty() {
            return;
        }
        self.allocate(layout);
        for &s in fixes.keys() {
            self.reserve(s);
        }
        let column = &mut self.panes[p.rem_euclid(ring) as usize];
        let held = column.gather(fixes);
        let deltas: HashMap<Slot, (i64, i64)> = fixes
            .iter()
            .map(|(s, c)| {
                let was = held.get(s).copied().unwrap_or_default();
                let (bad, total) = (saturate(c.bad) as i64, saturate(c.total) as i64);
                (*s, (bad - was.bad as i64, total - was.total as i64))
            })
            .filter(|(_, d)| *d != (0, 0))
            .collect();
        column.apply(&deltas);
        let add = |c: &mut Counts, (bad, total): (i64, i64)| {
            c.bad = (c.bad as i64 + bad) as u64;
            c.total = (c.total as i64 + total) as u64;
        };
        for (&s, &d) in &deltas {
            for (i, &n) in layout.windows.iter().enumerate() {
                if age < n as i64 {
                    add(&mut self.sums[s as usize * w + i], d);
                }
            }
            if d.0 != 0 {
                touched.bad.push(s);
            }
            if d.1 < 0 || d.0 < 0 {
                touched.emptier.push(s);
            }
        }
        if let Some((block, count)) = layout.blocks() {
            let b = p.div_euclid(block);
            if head.div_euclid(block) - b < count {
                self.blocks[b.rem_euclid(count) as usize].apply(&deltas);
                for (&s, &d) in &deltas {
                    add(&mut self.period[s as usize], d);
                }
            }
        }
    }

    /// Counts of window `i` of the layout for `slot`, ending with the head pane.
    pub fn window(&self, slot: Slot, i: usize) -> Counts {
        self.sums[slot as usize * self.windows + i]
    }

    /// Counts of `slot` over the period ending with the head pane.
    pub fn period(&self, layout: &Layout, slot: Slot) -> Counts {
        match layout.period {
            Period::Fine { window } => self.window(slot, window),
            Period::Blocks { .. } => self.period[slot as usize],
        }
    }

    /// Counts in the head pane, per slot that counted in it.
    pub fn head_pane(&self, layout: &Layout) -> HashMap<Slot, Counts> {
        let mut out: HashMap<Slot, Counts> = HashMap::new();
        let Some(head) = self.head else { return out };
        let Some(column) = self.panes.get(head.rem_euclid(layout.ring as i64) as usize) else { return out };
        for (s, n) in column.totals.iter() {
            out.entry(s).or_default().total += n as u64;
        }
        for (s, n) in column.bads.iter() {
            out.entry(s).or_default().bad += n as u64;
        }
        out
    }

    /// Nothing counted in any window or the period: the slot's series can be forgotten.
    pub fn is_empty(&self, layout: &Layout, slot: Slot) -> bool {
        let s = slot as usize;
        (s + 1) * self.windows > self.sums.len()
            || self.sums[s * self.windows..(s + 1) * self.windows].iter().all(|c| c.total == 0) && self.period(layout, slot).total == 0
    }

    /// Forget an empty slot (its number may be given to a new series).
    pub fn forget(&mut self, layout: &Layout, slot: Slot) {
        debug_assert!(self.is_empty(layout, slot), "only an empty series is forgotten");
        debug_assert!(self.pending.get(slot as usize).is_none_or(|c| *c == Counts::default()));
        if (slot as usize + 1) * self.windows <= self.sums.len() {
            // Bad counts never outlive events (bad ≤ total in every pane).
            debug_assert!(self.sums[slot as usize * self.windows..(slot as usize + 1) * self.windows].iter().all(|c| c.bad == 0));
        }
    }

    /// Heap bytes the store takes.
    pub fn heap_bytes(&self) -> usize {
        let columns: usize = self.panes.iter().map(Column::heap_bytes).sum::<usize>() + self.blocks.iter().map(Column::heap_bytes).sum::<usize>();
        let size = std::mem::size_of::<Counts>();
        columns
            + (self.panes.capacity() + self.blocks.capacity()) * std::mem::size_of::<Column>()
            + (self.sums.capacity() + self.period.capacity() + self.pending.capacity()) * size
            + self.queued.capacity() * 8
    }
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

    /// A few series moved together, some quiet for long spells, corrected late now and then:
    /// every window's running sum equals the sum recomputed from the panes, and so does a store
    /// rebuilt from its serialised form.
    #[test]
    fn running_sums_equal_sums_recomputed_from_the_panes() {
        for layout in [Layout::new(vec![5, 60, 3], 60), Layout::new(vec![5, 60], 600), Layout::new(vec![5, 60], 20_000)] {
            let mut store = Store::new(&layout);
            let mut panes: Vec<Vec<(i64, Counts)>> = vec![Vec::new(); 4];
            let mut p = 100;
            let mut x: u64 = 7;
            let mut touched = Touched::default();
            for step in 0..3_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                p += if step % 97 == 0 { 70 } else { 1 + (x >> 60) as i64 % 3 };
                for s in 0..4u32 {
                    // series 3 is quiet most of the time
                    if (x >> (10 + s)) & 1 == 0 || s == 3 && step % 50 != 0 {
                        continue;
                    }
                    let c = Counts { bad: (x >> (33 + s)) % 5, total: 5 + (x >> 40) % 20 };
                    store.add(s, c);
                    panes[s as usize].push((p, c));
                }
                store.advance(&layout, p, &mut touched);
                if step % 13 == 0 && p > 110 {
                    let q = p - 2; // a late correction of one series
                    let fixed = Counts { bad: 1, total: 9 };
                    store.correct(&layout, q, &HashMap::from([(1, fixed)]), &mut touched);
                    panes[1].retain(|(pp, _)| *pp != q);
                    panes[1].push((q, fixed));
                }
                if step % 29 == 0 && p > 110 {
                    // a correction to nothing
                    let q = p - 4;
                    store.correct(&layout, q, &HashMap::from([(2, Counts::default())]), &mut touched);
                    panes[2].retain(|(pp, _)| *pp != q);
                }
                let check = |store: &Store| {
                    for (s, series) in panes.iter().enumerate() {
                        for (i, &n) in layout.windows.iter().enumerate() {
                            assert_eq!(store.window(s as u32, i), naive(series, p, n as i64), "series {s}, window {n} at pane {p}");
                        }
                    }
                };
                check(&store);
                if let Some((block, count)) = layout.blocks() {
                    // The period: the blocks up to the head's.
                    let from = (p.div_euclid(block) - count + 1) * block;
                    for (s, series) in panes.iter().enumerate() {
                        assert_eq!(store.period(&layout, s as u32), naive(series, p, p - from + 1), "period of series {s} at pane {p}");
                    }
                }
                if step % 101 == 0 {
                    let mut restored: Store = crate::state::from_bytes(&crate::state::to_bytes(&store).unwrap()).unwrap();
                    restored.rebuild(&layout);
                    for s in 0..4 {
                        restored.reserve(s);
                    }
                    check(&restored);
                    for s in 0..4 {
                        assert_eq!(restored.period(&layout, s), store.period(&layout, s));
                    }
                }
            }
        }
    }

    /// Pairs read back as written, in any slot order and at any size, and sorted ones are small.
    #[test]
    fn packed_pairs_read_back_as_written() {
        let written = vec![(5, 1), (3, 0), (u32::MAX, u64::MAX), (0, 300), (70_000, 7), (70_001, 1 << 40)];
        assert_eq!(Pairs::from_pairs(written.clone()).iter().collect::<Vec<_>>(), written);
        let sorted = Pairs::from_pairs((0..1_000).map(|s| (s * 2, 40)));
        assert_eq!(sorted.bytes.len(), 2_000, "two bytes a pair");
    }

    #[test]
    fn a_long_period_is_counted_in_blocks() {
        let layout = Layout::new(vec![5, 60], 43_200);
        assert_eq!(layout.period, Period::Blocks { block: 60, blocks: 720 });
        let mut store = Store::new(&layout);
        let mut touched = Touched::default();
        for p in 0..50_000 {
            store.add(0, Counts { bad: 1, total: 2 });
            store.advance(&layout, p, &mut touched);
        }
        // The last 719 whole blocks and the current partial one (50,000 = 833 * 60 + 20).
        assert_eq!(store.period(&layout, 0), Counts { bad: 719 * 60 + 20, total: 2 * (719 * 60 + 20) });
        // Blocks done are merged: one entry per series.
        assert!(store.blocks.iter().all(|b| b.totals.iter().count() <= 60));
        assert!(store.blocks.iter().filter(|b| b.totals.iter().count() == 1).count() >= 700);
        // A gap longer than the ring but shorter than the period keeps the older blocks.
        store.add(0, Counts { bad: 0, total: 1 });
        store.advance(&layout, 50_000 + 10_000, &mut touched);
        let kept = 43_200 / 60 - 1 - 10_000 / 60; // whole blocks still inside the period
        let bad = store.period(&layout, 0).bad;
        assert!(bad <= kept as u64 * 60 + 60 && bad >= kept as u64 * 60 - 60, "{bad}");
        store.add(0, Counts { bad: 0, total: 1 });
        store.advance(&layout, 200_000, &mut touched);
        assert_eq!(store.period(&layout, 0), Counts { bad: 0, total: 1 });
    }

    /// A series quiet for longer than every window and the period is empty, and moving costs
    /// it nothing: memory follows what was counted.
    #[test]
    fn memory_follows_what_was_counted() {
        let layout = Layout::new(vec![5, 4_320], 43_200);
        let mut store = Store::new(&layout);
        let mut touched = Touched::default();
        store.add(0, Counts { bad: 1, total: 4 });
        store.advance(&layout, 1_000, &mut touched);
        for p in 1_001..1_000 + 4_320 {
            store.add(1, Counts { bad: 0, total: 1 });
            store.advance(&layout, p, &mut touched);
        }
        assert_eq!(store.window(0, 1), Counts { bad: 1, total: 4 });
        assert_eq!(store.window(1, 1), Counts { bad: 0, total: 4_319 });
        store.advance(&layout, 1_000 + 4_320, &mut touched);
        assert_eq!(store.window(0, 1), Counts::default(), "the pane left the longest window");
        assert!(!store.is_empty(&layout, 0), "the period still holds it");
        let bytes = store.heap_bytes();
        assert!(bytes < 2 * layout.bytes_per_series() + 200_000, "{bytes}");
        store.advance(&layout, 1_000 + 4_320 + 43_200 + 60, &mut touched);
        assert!(store.is_empty(&layout, 0) && store.is_empty(&layout, 1));
        assert!(touched.emptier.contains(&0) && touched.emptier.contains(&1));
    }
}
