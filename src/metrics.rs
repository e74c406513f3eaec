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
    pub checkpoints: AtomicU64,
    pub checkpoint_failures: AtomicU64,
    /// An alerting job's alert stage: transitions written (fired, resolved) and evaluations
    /// it kept quiet (dedup, inhibition, storms), as it goes.
    pub alerts_emitted: AtomicU64,
    pub alerts_suppressed: AtomicU64,
    /// Consumer lag per source partition (name, records behind), refreshed every few seconds.
    pub lag: std::sync::Mutex<Vec<(String, i64)>>,
    /// The alerts firing now (an alerting job), refreshed after each evaluation.
    pub firing: std::sync::Mutex<Vec<crate::alert::lifecycle::Firing>>,
    /// The last durable checkpoint's size in bytes, and the time to save it (serialise and
    /// write) in microseconds.
    pub checkpoint_bytes: AtomicU64,
    pub checkpoint_micros: AtomicU64,
    watermark: AtomicI64,
    /// From a window's close (the watermark passed its end) to its output written, seconds:
    /// counts per bucket of [`LATENCY_BUCKETS`] (cumulative when read), the sum in microseconds.
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
}

/// Upper bounds (seconds) of the window-close-to-output latency histogram.
pub const LATENCY_BUCKETS: [f64; 8] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

/// The histogram as Prometheus reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Latency {
    /// (upper bound, observations at or below it)
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum_seconds: f64,
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
    pub checkpoints: u64,
    pub checkpoint_failures: u64,
    pub alerts_emitted: u64,
    pub alerts_suppressed: u64,
    pub checkpoint_bytes: u64,
    pub checkpoint_micros: u64,
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

    /// One window's close-to-output time.
    pub fn observe_latency(&self, d: std::time::Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| s <= *b) {
            self.latency_buckets[i].fetch_add(1, Relaxed);
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_us.fetch_add(d.as_micros() as u64, Relaxed);
    }

    pub fn latency(&self) -> Latency {
        let mut running = 0;
        let buckets = LATENCY_BUCKETS
            .iter()
            .zip(&self.latency_buckets)
            .map(|(b, c)| {
                running += c.load(Relaxed);
                (*b, running)
            })
            .collect();
        Latency { buckets, count: self.latency_count.load(Relaxed), sum_seconds: self.latency_sum_us.load(Relaxed) as f64 / 1e6 }
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
            checkpoints: self.checkpoints.load(Relaxed),
            alerts_emitted: self.alerts_emitted.load(Relaxed),
            alerts_suppressed: self.alerts_suppressed.load(Relaxed),
            checkpoint_failures: self.checkpoint_failures.load(Relaxed),
            checkpoint_bytes: self.checkpoint_bytes.load(Relaxed),
            checkpoint_micros: self.checkpoint_micros.load(Relaxed),
            watermark: self.watermark.load(Relaxed),
        }
    }
}
