//! Checkpoints written before the store kept counts by pane: a ring of panes per series. They
//! restore into the store as the counts those rings held.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::store::{Counts, Layout, Period};

/// One series as those checkpoints held it (the fields restoring needs).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Tracked {
    pub series: Series,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Series {
    /// `(bad, total)` of pane `p` at `p % ring.len()`, for the panes after `origin` within the
    /// ring's length of `head`.
    ring: Vec<[u32; 2]>,
    #[serde(default = "before_everything")]
    origin: i64,
    /// The period's blocks, block `b` at `b % blocks.len()`, for the blocks up to the head's.
    blocks: Vec<Counts>,
    head: i64,
}

fn before_everything() -> i64 {
    i64::MIN
}

/// A series' panes and blocks that are still in some window or the period at pane `now`:
/// `(pane, counts)` and `(block, counts)`.
pub fn counts_at(series: &Series, layout: &Layout, now: i64) -> (Vec<(i64, Counts)>, Vec<(i64, Counts)>) {
    let len = series.ring.len() as i64;
    let mut panes = Vec::new();
    if len > 0 {
        let first = series.origin.max(series.head - len).max(now - layout.ring as i64) + 1;
        for q in first..=series.head {
            let [bad, total] = series.ring[q.rem_euclid(len) as usize];
            if total > 0 {
                panes.push((q, Counts { bad: bad as u64, total: total as u64 }));
            }
        }
    }
    let mut blocks = Vec::new();
    if let Period::Blocks { block, blocks: count } = layout.period {
        let (block, count) = (block as i64, count as i64);
        let (held, head) = (series.blocks.len() as i64, series.head.div_euclid(block));
        if held > 0 {
            let first = (head - held.min(count)).max(now.div_euclid(block) - count) + 1;
            for b in first..=head {
                let c = series.blocks[b.rem_euclid(held) as usize];
                if c.total > 0 {
                    blocks.push((b, c));
                }
            }
        }
    }
    (panes, blocks)
}

pub type Legacy = BTreeMap<String, Tracked>;

impl Tracked {
    pub fn series_head(&self) -> i64 {
        self.series.head
    }
}
