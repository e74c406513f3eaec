//! A seasonal baseline: for telemetry whose level follows the clock (traffic that peaks every
//! afternoon), each hour of the day has its own expected level and spread, so the daily peak
//! is compared with earlier days' peaks, never with the night before it. A detector whose
//! baseline is the last few hours calls every morning ramp an anomaly once a series' noise is
//! small beside its daily swing, as it is for any high-volume series.
//!
//! Per hour of the day (UTC) and feature it keeps a level and a spread (the mean absolute
//! deviation): running means over a bucket's first `memory` samples, exponentially weighted
//! after that, so a slowly growing service moves its baseline along. Once a bucket scores, a
//! sample is clipped to its level ± [`CLIP_Z`] spreads before it is learnt: an incident moves
//! the baseline a little, never to itself. It scores as `mad` does: the largest robust z over
//! the features, through the same logistic curve.
//!
//! Only the hour of the day: a weekly cycle (quiet weekends) is not modelled.

use serde::{Deserialize, Serialize};

use super::detector::{logistic, Detector};
use super::mad::HALF_Z;
use crate::Millis;

const HOUR: Millis = 3_600_000;
const DAY: Millis = 24 * HOUR;
/// One bucket per hour of the day.
pub const BUCKETS: usize = 24;
/// Samples of an hour before it is trusted: one day's sample is a point, not a spread.
const MIN_SAMPLES: u32 = 3;
/// A trusted bucket learns a sample only up to this many of its spreads from its level.
const CLIP_Z: f64 = 4.0;
/// Mean absolute deviation to standard deviation, for normal data.
const MEAN_DEV_TO_SIGMA: f64 = 1.2533;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seasonal {
    /// Samples of a bucket its estimates average over.
    memory: u32,
    /// Observations before it scores (as every detector's warm-up).
    warmup: usize,
    seen: usize,
    /// The first observation's time: nothing scores before a whole day has been seen.
    first: Option<Millis>,
    /// Per bucket, the samples learnt.
    counts: Vec<u32>,
    /// Per bucket × feature (`bucket * features + feature`): level and mean absolute deviation.
    level: Vec<f64>,
    spread: Vec<f64>,
    features: usize,
    last: Vec<f64>,
}

impl Seasonal {
    pub fn new(baseline: usize, warmup: usize) -> Self {
        Seasonal {
            memory: baseline.clamp(MIN_SAMPLES as usize, u32::MAX as usize) as u32,
            warmup,
            seen: 0,
            first: None,
            counts: vec![0; BUCKETS],
            level: Vec::new(),
            spread: Vec::new(),
            features: 0,
            last: Vec::new(),
        }
    }

    fn bucket(t: Millis) -> usize {
        (t.rem_euclid(DAY) / HOUR) as usize
    }

    fn is_warm(&self, t: Millis, b: usize) -> bool {
        self.seen >= self.warmup && self.first.is_some_and(|f| t - f >= DAY) && self.counts[b] >= MIN_SAMPLES
    }

    /// The bucket's standard deviation for feature `j`, floored so that a flat series does not
    /// call every step an anomaly (as `mad` floors its scale).
    fn sigma(&self, i: usize) -> f64 {
        (MEAN_DEV_TO_SIGMA * self.spread[i]).max(1e-3 * self.level[i].abs()).max(1e-9)
    }

    /// Learn `x` into bucket `b`; `trusted`: the bucket scores, so `x` is clipped first (not
    /// before: a day's first samples of an hour may all be its burst).
    fn learn(&mut self, b: usize, x: &[f64], trusted: bool) {
        self.counts[b] = self.counts[b].saturating_add(1);
        let alpha = 1.0 / self.counts[b].min(self.memory) as f64;
        for (j, &v) in x.iter().enumerate() {
            let i = b * self.features + j;
            let v = if trusted {
                let reach = CLIP_Z * self.sigma(i);
                v.clamp(self.level[i] - reach, self.level[i] + reach)
            } else {
                v
            };
            let deviation = (v - self.level[i]).abs();
            // The first sample sets the level; its spread comes from the samples after it.
            if self.counts[b] == 1 {
                self.level[i] = v;
                continue;
            }
            self.spread[i] += (deviation - self.spread[i]) * alpha;
            self.level[i] += (v - self.level[i]) * alpha;
        }
    }
}

impl Detector for Seasonal {
    fn name(&self) -> &'static str {
        "seasonal"
    }

    /// Without a time every sample is of one hour that never has a day behind it: it never
    /// scores. Osprey always gives one ([`observe_at`](Detector::observe_at)).
    fn observe(&mut self, x: &[f64]) -> Option<f64> {
        self.observe_at(0, x)
    }

    fn observe_at(&mut self, t: Millis, x: &[f64]) -> Option<f64> {
        if self.features != x.len() {
            // The first vector sets the width; a series whose width changes starts over.
            *self = Seasonal { features: x.len(), level: vec![0.0; BUCKETS * x.len()], spread: vec![0.0; BUCKETS * x.len()], ..Seasonal::new(self.memory as usize, self.warmup) };
        }
        let b = Self::bucket(t);
        self.first.get_or_insert(t);
        let warm = self.is_warm(t, b);
        let score = if warm {
            self.last = x.iter().enumerate().map(|(j, v)| (v - self.level[b * self.features + j]) / self.sigma(b * self.features + j)).collect();
            Some(self.last.iter().map(|z| logistic(z.abs(), HALF_Z)).fold(0.0, f64::max))
        } else {
            self.last.clear();
            None
        };
        self.learn(b, x, warm);
        self.seen += 1;
        score
    }

    fn deviations(&self) -> Option<&[f64]> {
        (!self.last.is_empty()).then_some(self.last.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Millis = 60_000;

    /// A level that swings ±60% over the day, peaking at 15:00, with 2% noise.
    fn daily(t: Millis, noise: f64) -> f64 {
        let hours = t.rem_euclid(DAY) as f64 / HOUR as f64;
        1000.0 * (1.0 + 0.6 * (std::f64::consts::TAU * (hours - 9.0) / 24.0).sin()) * (1.0 + 0.02 * noise)
    }

    fn noise(seed: &mut u64) -> f64 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 33) as f64 / (1u64 << 31) as f64) * 2.0 - 1.0
    }

    #[test]
    fn the_daily_peak_is_quiet_and_a_night_at_the_day_s_level_is_not() {
        let mut d = Seasonal::new(256, 32);
        let mut seed = 7;
        let mut scores = Vec::new();
        for m in 0..3 * 24 * 60 {
            let t = m * MINUTE;
            let s = d.observe_at(t, &[daily(t, noise(&mut seed))]);
            assert_eq!(s.is_some(), t >= DAY, "minute {m}: it scores once a day has been seen");
            scores.extend(s);
        }
        let top = scores.iter().cloned().fold(0.0, f64::max);
        assert!(top < 0.5, "two days of peaks and troughs, none anomalous: {top}");
        // 03:00 on day four at the afternoon's level.
        let t = 3 * DAY + 3 * HOUR;
        let s = d.observe_at(t, &[daily(15 * HOUR, 0.0)]).unwrap();
        assert!(s > 0.99, "{s}");
        assert!(d.deviations().unwrap()[0] > 10.0);
    }

    #[test]
    fn an_incident_barely_moves_the_baseline() {
        let mut d = Seasonal::new(256, 0);
        let mut seed = 3;
        for m in 0..2 * 24 * 60 {
            let t = m * MINUTE;
            d.observe_at(t, &[daily(t, noise(&mut seed))]);
        }
        // An hour of ten times the traffic, then the same hour a day later is normal again.
        for m in 0..60 {
            let t = 2 * DAY + 10 * HOUR + m * MINUTE;
            d.observe_at(t, &[10.0 * daily(t, 0.0)]);
        }
        for m in 60..24 * 60 {
            let t = 2 * DAY + 10 * HOUR + m * MINUTE;
            d.observe_at(t, &[daily(t, noise(&mut seed))]);
        }
        let t = 3 * DAY + 10 * HOUR + 30 * MINUTE;
        let s = d.observe_at(t, &[daily(t, 0.5)]).unwrap();
        assert!(s < 0.5, "the hour after an incident day: {s}");
    }

    #[test]
    fn state_round_trips_and_replays_the_same() {
        let mut a = Seasonal::new(64, 8);
        let mut seed = 5;
        for m in 0..2000 {
            a.observe_at(m * 5 * MINUTE, &[daily(m * 5 * MINUTE, noise(&mut seed)), m as f64]);
        }
        let mut b: Seasonal = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        for m in 2000..2100 {
            let x = [daily(m * 5 * MINUTE, noise(&mut seed)), m as f64];
            assert_eq!(a.observe_at(m * 5 * MINUTE, &x), b.observe_at(m * 5 * MINUTE, &x));
        }
    }
}
