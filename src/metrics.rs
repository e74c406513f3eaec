//! Counters per job. Atomics, so an HTTP `/metrics` endpoint can read them while the job runs.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use crate::Millis;

#[derive(Debug, Default)]
pub struct JobCounters {
    pub records_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub decode_errors: AtomicU64,
    pub late_records: AtomicU64,
    pub windows_closed: AtomicU64,
    pub window_updates: AtomicU64,
    pub rows_out: AtomicU64,
    watermark: AtomicI64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CountersSnapshot {
    pub records_in: u64,
    pub bytes_in: u64,
    pub decode_errors: u64,
    pub late_records: u64,
    pub windows_closed: u64,
    pub window_updates: u64,
    pub rows_out: u64,
    /// Epoch milliseconds; `i64::MIN` before the first watermark.
    pub watermark: Millis,
}

impl JobCounters {
    pub fn new() -> Self {
        let c = JobCounters::default();
        c.watermark.store(Millis::MIN, Relaxed);
        c
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn set_watermark(&self, wm: Millis) {
        self.watermark.store(wm, Relaxed);
    }

    pub fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot {
            records_in: self.records_in.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            decode_errors: self.decode_errors.load(Relaxed),
            late_records: self.late_records.load(Relaxed),
            windows_closed: self.windows_closed.load(Relaxed),
            window_updates: self.window_updates.load(Relaxed),
            rows_out: self.rows_out.load(Relaxed),
            watermark: self.watermark.load(Relaxed),
        }
    }
}
