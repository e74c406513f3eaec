//! Session windows: per key, runs of records with gaps shorter than `gap`.
//!
//! A session is `[first event, last event + gap)`. A record joins every session of its key
//! that it touches, merging them; it starts a new one otherwise.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::UInt32Array;
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};
use serde::{Deserialize, Serialize};

use super::{Fate, FiredWindow};
use crate::state::SerdeBatches;
use crate::Millis;

#[derive(Debug, Serialize, Deserialize)]
pub struct Sessions {
    gap: Millis,
    key_columns: Vec<usize>,
    sessions: BTreeMap<u64, Session>,
    by_key: HashMap<Vec<u8>, Vec<u64>>,
    /// (end, id) of sessions that have not fired.
    unfired: BTreeSet<(Millis, u64)>,
    /// Sessions to fire at once: late rows arrived after their end.
    due_now: BTreeSet<u64>,
    next_id: u64,
    /// Sessions that fired and still accept late rows.
    retained: BTreeSet<u64>,
    /// Sessions with rows of the batch being processed.
    #[serde(skip)]
    touched: Vec<u64>,
    #[serde(skip)]
    converter: Option<Arc<RowConverter>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Session {
    key: Vec<u8>,
    start: Millis,
    end: Millis,
    batches: SerdeBatches,
    /// How often the session fired.
    fired: u32,
    /// Rows of the batch being processed.
    #[serde(skip)]
    pending: Vec<u32>,
}

impl Sessions {
    pub fn new(gap: Millis, key_columns: Vec<usize>) -> Self {
        Sessions {
            gap,
            key_columns,
            sessions: BTreeMap::new(),
            by_key: HashMap::new(),
            unfired: BTreeSet::new(),
            due_now: BTreeSet::new(),
            next_id: 0,
            retained: BTreeSet::new(),
            touched: Vec::new(),
            converter: None,
        }
    }

    /// Each row's key, in Arrow's row format (comparable bytes, one per distinct key).
    pub fn keys(&mut self, batch: &RecordBatch) -> Vec<Vec<u8>> {
        if self.key_columns.is_empty() {
            return vec![Vec::new(); batch.num_rows()];
        }
        let columns: Vec<_> = self.key_columns.iter().map(|&i| batch.column(i).clone()).collect();
        let converter = self.converter.get_or_insert_with(|| {
            let fields = columns.iter().map(|c| SortField::new(c.data_type().clone())).collect();
            Arc::new(RowConverter::new(fields).expect("key types are sortable"))
        });
        let rows = converter.convert_columns(&columns).expect("key columns convert");
        rows.iter().map(|r| r.as_ref().to_vec()).collect()
    }

    pub fn accept(&mut self, row: u32, t: Millis, key: &[u8], wm: Millis, lateness: Millis) -> Fate {
        let end = t.saturating_add(self.gap);
        let ids = self.by_key.entry(key.to_vec()).or_default();
        let touching: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|id| {
                let s = &self.sessions[id];
                s.start <= end && t <= s.end // touching intervals merge, as in Flink
            })
            .collect();
        if touching.is_empty() && end.saturating_add(lateness) <= wm {
            return Fate::Late;
        }
        // Merge every touched session into the first (or a new one).
        let id = match touching.first() {
            Some(&id) => id,
            None => {
                let id = self.next_id;
                self.next_id += 1;
                ids.push(id);
                self.sessions.insert(
                    id,
                    Session { key: key.to_vec(), start: t, end, batches: SerdeBatches::default(), fired: 0, pending: Vec::new() },
                );
                self.unfired.insert((end, id));
                id
            }
        };
        for &other in touching.iter().skip(1) {
            let gone = self.sessions.remove(&other).expect("listed session");
            self.by_key.get_mut(key).expect("key listed").retain(|i| *i != other);
            self.unfired.remove(&(gone.end, other));
            self.due_now.remove(&other);
            self.retained.remove(&other);
            let s = self.sessions.get_mut(&id).expect("kept session");
            s.start = s.start.min(gone.start);
            self.unfired.remove(&(s.end, id));
            s.end = s.end.max(gone.end);
            s.fired = s.fired.max(gone.fired);
            s.batches.0.extend(gone.batches.0);
            s.pending.extend(gone.pending);
        }
        let s = self.sessions.get_mut(&id).expect("kept session");
        self.unfired.remove(&(s.end, id));
        s.start = s.start.min(t);
        s.end = s.end.max(end);
        if self.touched.last() != Some(&id) {
            self.touched.push(id); // duplicates are harmless: materialize empties pending once
        }
        s.pending.push(row);
        if s.end <= wm || s.fired > 0 {
            self.due_now.insert(id);
            Fate::FireNow
        } else {
            self.unfired.insert((s.end, id));
            Fate::Stored
        }
    }

    pub fn materialize(&mut self, batch: &RecordBatch) {
        for id in std::mem::take(&mut self.touched) {
            let Some(s) = self.sessions.get_mut(&id) else { continue };
            if s.pending.is_empty() {
                continue;
            }
            let mut rows = std::mem::take(&mut s.pending);
            rows.sort_unstable();
            let idx = UInt32Array::from(rows);
            s.batches.0.push(take_record_batch(batch, &idx).expect("row numbers are in range"));
        }
    }

    pub fn next_fire(&self) -> Millis {
        self.unfired.first().map(|(end, _)| *end).unwrap_or(Millis::MAX)
    }

    pub fn fire(&mut self, wm: Millis, lateness: Millis) -> Vec<FiredWindow> {
        let mut ids: BTreeSet<u64> = std::mem::take(&mut self.due_now);
        while let Some(&(end, id)) = self.unfired.first() {
            if end > wm {
                break;
            }
            self.unfired.pop_first();
            ids.insert(id);
        }
        let mut fired = Vec::with_capacity(ids.len());
        for id in ids {
            let s = self.sessions.get_mut(&id).expect("listed session");
            fired.push(FiredWindow {
                start: s.start,
                end: s.end,
                key: s.key.clone(),
                batches: s.batches.0.clone(),
                update: s.fired > 0,
                revision: s.fired,
            });
            s.fired += 1;
            self.retained.insert(id);
        }
        // Forget sessions past their lateness.
        let gone: Vec<u64> = self
            .retained
            .iter()
            .copied()
            .filter(|id| self.sessions[id].end.saturating_add(lateness) <= wm)
            .collect();
        for id in gone {
            self.retained.remove(&id);
            let s = self.sessions.remove(&id).expect("listed");
            if let Some(ids) = self.by_key.get_mut(&s.key) {
                ids.retain(|i| *i != id);
                if ids.is_empty() {
                    self.by_key.remove(&s.key);
                }
            }
        }
        fired
    }

    /// Every batch held, once.
    pub fn batches(&self) -> impl Iterator<Item = &RecordBatch> {
        self.sessions.values().flat_map(|s| s.batches.0.iter())
    }

    /// Keep only the batches `keep` accepts; sessions left with no rows are forgotten.
    pub fn retain_batches(&mut self, keep: impl Fn(&RecordBatch) -> bool) {
        let mut empty = Vec::new();
        for (id, s) in &mut self.sessions {
            s.batches.0.retain(|b| keep(b));
            if s.batches.0.is_empty() && s.pending.is_empty() {
                empty.push(*id);
            }
        }
        for id in empty {
            let s = self.sessions.remove(&id).expect("listed");
            self.unfired.remove(&(s.end, id));
            self.retained.remove(&id);
            self.due_now.remove(&id);
            if let Some(ids) = self.by_key.get_mut(&s.key) {
                ids.retain(|i| *i != id);
            }
        }
    }

    pub fn open_windows(&self) -> usize {
        self.unfired.len()
    }

    pub fn buffered_rows(&self) -> usize {
        self.sessions.values().flat_map(|s| s.batches.0.iter()).map(|b| b.num_rows()).sum()
    }
}
