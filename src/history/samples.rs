//! A job's rates over the last hour of wall-clock time, one sample per tick of the server's
//! sampler: records in, dead letters and late records per second, consumer lag, and
//! window-close-to-output latency.

use std::collections::VecDeque;

use serde::Serialize;

use crate::metrics::{CountersSnapshot, JobCounters, Latency};
use crate::Millis;

/// How far back the samples go.
pub const KEPT: Millis = 3_600_000;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// Wall-clock time of the sample, epoch milliseconds.
    pub at: Millis,
    pub records_in_per_s: f64,
    pub dead_letters_per_s: f64,
    pub late_per_s: f64,
    /// Records behind the end of the source, summed over its partitions (Kafka; else 0).
    pub lag: i64,
    /// Window close to output written, over the windows closed since the last sample.
    pub latency_mean_ms: Option<f64>,
    /// The upper bound of the histogram bucket holding the 99th percentile.
    pub latency_p99_ms: Option<f64>,
    /// Event time the job has reached (`None` before its first record).
    pub watermark: Option<Millis>,
}

#[derive(Default)]
pub struct Samples {
    pub kept: VecDeque<Sample>,
    last: Option<(Millis, CountersSnapshot, Latency)>,
}

impl Samples {
    /// Take a sample of `counters` at wall-clock `now`: rates since the previous sample.
    pub fn take(&mut self, counters: &JobCounters, now: Millis) {
        let snap = counters.snapshot();
        let latency = counters.latency();
        let lag = counters.lag.lock().expect("not poisoned").iter().map(|(_, n)| (*n).max(0)).sum();
        if let Some((at, prev, prev_latency)) = &self.last {
            let secs = ((now - at) as f64 / 1000.0).max(1e-3);
            let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
            let windows = latency.count.saturating_sub(prev_latency.count);
            let (mean, p99) = if windows == 0 {
                (None, None)
            } else {
                let mean = (latency.sum_seconds - prev_latency.sum_seconds) / windows as f64 * 1000.0;
                // The smallest bucket bound holding 99% of this interval's windows.
                let wanted = (windows as f64 * 0.99).ceil() as u64;
                let p99 = latency
                    .buckets
                    .iter()
                    .zip(&prev_latency.buckets)
                    .find(|((_, n), (_, p))| n - p >= wanted)
                    .map(|((bound, _), _)| bound * 1000.0);
                (Some(mean), p99)
            };
            self.kept.push_back(Sample {
                at: now,
                records_in_per_s: rate(snap.records_in, prev.records_in),
                dead_letters_per_s: rate(snap.decode_errors, prev.decode_errors),
                late_per_s: rate(snap.late_records, prev.late_records),
                lag,
                latency_mean_ms: mean,
                latency_p99_ms: p99,
                watermark: (snap.watermark != Millis::MIN).then_some(snap.watermark),
            });
        }
        self.last = Some((now, snap, latency));
        while self.kept.front().is_some_and(|s| s.at < now - KEPT) {
            self.kept.pop_front();
        }
    }

    /// Why the job needs a look, judged over the last minute of samples; empty when it is
    /// keeping up.
    pub fn concerns(&self) -> Vec<String> {
        let Some(newest) = self.kept.back() else { return Vec::new() };
        let recent: Vec<&Sample> = self.kept.iter().filter(|s| s.at >= newest.at - 60_000).collect();
        let mut out = Vec::new();
        let first = recent[0];
        if recent.len() >= 3 && newest.lag > 0 && recent.windows(2).all(|w| w[1].lag >= w[0].lag) && newest.lag > first.lag {
            out.push(format!("falling behind: lag grew from {} to {} records in {} s", first.lag, newest.lag, (newest.at - first.at) / 1000));
        }
        let mean = |f: fn(&Sample) -> f64| recent.iter().map(|s| f(s)).sum::<f64>() / recent.len() as f64;
        let dead = mean(|s| s.dead_letters_per_s);
        if dead > 0.0 {
            out.push(format!("dead letters: {dead:.1}/s over the last minute (records that did not decode)"));
        }
        let late = mean(|s| s.late_per_s);
        if late > 0.0 {
            out.push(format!("late records: {late:.1}/s over the last minute (past the allowed lateness)"));
        }
        let reading = mean(|s| s.records_in_per_s) > 0.0;
        if recent.len() >= 3 && reading && first.watermark.is_some() && first.watermark == newest.watermark {
            out.push("watermark stuck: records arrive but event time has not moved for a minute (an idle partition?)".into());
        }
        out
    }
}

/// A job's status as the page shows it: `red` (failed or falling behind), `amber` (losing
/// records to dead letters or lateness, or a stuck watermark), `green`, or `stopped`; and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Health {
    pub status: &'static str,
    pub reasons: Vec<String>,
}

impl Health {
    pub fn judge(failed: Option<&str>, running: bool, concerns: Vec<String>) -> Health {
        if let Some(error) = failed {
            return Health { status: "red", reasons: vec![format!("failed: {error}")] };
        }
        if !running {
            return Health { status: "stopped", reasons: Vec::new() };
        }
        let status = if concerns.iter().any(|c| c.starts_with("falling behind")) {
            "red"
        } else if concerns.is_empty() {
            "green"
        } else {
            "amber"
        };
        Health { status, reasons: concerns }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn rates_are_per_second_between_samples_and_an_hour_is_kept() {
        let c = JobCounters::new();
        let mut s = Samples::default();
        s.take(&c, 0);
        assert!(s.kept.is_empty(), "the first tick only remembers");
        c.records_in.store(5_000, Relaxed);
        c.decode_errors.store(10, Relaxed);
        c.observe_latency(std::time::Duration::from_millis(3));
        s.take(&c, 5_000);
        let last = s.kept.back().unwrap();
        assert_eq!((last.records_in_per_s, last.dead_letters_per_s), (1000.0, 2.0));
        assert_eq!(last.latency_p99_ms, Some(5.0), "3 ms falls in the 5 ms bucket");
        assert!(s.concerns().iter().any(|c| c.starts_with("dead letters")), "{:?}", s.concerns());
        for i in 2..=800 {
            s.take(&c, i * 5_000);
        }
        assert!(s.kept.front().unwrap().at >= 800 * 5_000 - KEPT);
        assert!(s.concerns().is_empty(), "a quiet minute: {:?}", s.concerns());
    }

    #[test]
    fn growing_lag_turns_a_job_red_and_says_so() {
        let c = JobCounters::new();
        let mut s = Samples::default();
        for i in 0..6 {
            *c.lag.lock().unwrap() = vec![("t/0".into(), i * 1000)];
            s.take(&c, i * 5_000);
        }
        let h = Health::judge(None, true, s.concerns());
        assert_eq!(h.status, "red");
        assert!(h.reasons[0].contains("lag grew from"), "{h:?}");
        assert_eq!(Health::judge(Some("broker gone"), true, vec![]).reasons, vec!["failed: broker gone"]);
    }
}
