//! Anomaly likelihood (Ahmad, Lavin, Purdy and Agha 2017, the post-processing behind
//! Numenta's NAB entries) over robust z-scores: not "is this window far from the baseline"
//! but "is the recent run of deviations unusual for this series". Each window's raw score is
//! its largest robust z ([`RobustZ`]) over [`Z_FULL`], capped at 1; the series keeps the
//! distribution (mean and variance) of the moving average of the last [`AVERAGE`] raw scores
//! over its last [`HISTORY`] windows, and the current average's tail probability under a
//! normal with those moments is the likelihood. A spiky series, whose z-scores are often large,
//! learns that large is normal for it; a series that shifts and stays shifted is caught after a
//! few windows even when no single one is extreme. A single window at or past [`Z_AT_ONCE`]
//! robust standard deviations is anomalous at once, as with `mad`, and stays out of the
//! average.
//!
//! On NAB's 24 series here this scores 46.9 to `mad`'s 39.3 (the README has the table); most of the
//! gain is fewer false detections on bursty series.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::detector::{logistic, Detector};
use super::mad::RobustZ;

/// The robust z of a raw score of 1: deviations past it count as "fully unexpected".
pub const Z_FULL: f64 = 10.0;
/// A single window this far out (robust standard deviations) is anomalous by itself.
pub const Z_AT_ONCE: f64 = 10.0;
/// Windows in the moving average of raw scores (Numenta's averaging window).
pub const AVERAGE: usize = 10;
/// Windows of moving averages whose distribution is learnt (Numenta's historic window).
pub const HISTORY: usize = 8640;
/// Averages are learnt in blocks of this many, each kept as its count and sums only, and the
/// oldest block goes as a whole: the history spans `HISTORY - BLOCK` to `HISTORY` windows, and a
/// series holds 90 blocks (about 2 KB, in memory and in every checkpoint) instead of 8,640
/// averages (69 KB; 690 MB at 10,000 series).
pub const BLOCK: usize = 96;
/// Moving averages learnt before the likelihood scores: consecutive averages share nine of
/// their ten windows, so this is about ten independent ones (32 made a quiet series' 77th
/// window an anomaly).
pub const LEARN: usize = 10 * AVERAGE;
/// The tail probability scored 0.5: `-log10` of it.
pub const HALF_TAIL_LOG10: f64 = 5.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Likelihood {
    z: RobustZ,
    /// Averages learnt before the likelihood scores: [`LEARN`], or the warm-up when longer.
    warmup: usize,
    /// The last [`AVERAGE`] raw scores.
    recent: VecDeque<f64>,
    /// The learnt moving averages, oldest block first, and their totals.
    blocks: VecDeque<Moments>,
    total: Moments,
}

/// How many values, their sum and their sum of squares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Moments {
    n: usize,
    sum: f64,
    sum_sq: f64,
}

impl Moments {
    fn add(&mut self, x: f64) {
        self.n += 1;
        self.sum += x;
        self.sum_sq += x * x;
    }
}

impl Likelihood {
    pub fn new(baseline: usize, warmup: usize) -> Self {
        Likelihood { z: RobustZ::new(baseline, warmup), warmup: warmup.max(LEARN), recent: VecDeque::new(), blocks: VecDeque::new(), total: Moments::default() }
    }

    /// The tail probability of `average` under the learnt normal; `None` while learning.
    fn tail(&self, average: f64) -> Option<f64> {
        let Moments { n, sum, sum_sq } = self.total;
        if n < self.warmup {
            return None;
        }
        let mean = sum / n as f64;
        let variance = (sum_sq / n as f64 - mean * mean).max(0.0);
        // A series whose deviations never varied is not infinitely sure of them. (Numenta's
        // floors, a mean of 0.03 and a variance of 3e-4, are for HTM's raw scores; here they
        // only lost a subtle shift on a quiet NAB series, 46.9 to 45.0, and spared no false
        // detection.)
        let sd = variance.sqrt().max(1e-4);
        Some(normal_tail((average - mean) / sd))
    }

    fn learn(&mut self, average: f64) {
        match self.blocks.back_mut() {
            Some(block) if block.n < BLOCK => block.add(average),
            _ => {
                let mut block = Moments::default();
                block.add(average);
                self.blocks.push_back(block);
            }
        }
        self.total.add(average);
        if self.total.n > HISTORY {
            self.blocks.pop_front();
            // Summed afresh from the blocks (90 of them, every 96 windows), so the totals
            // never drift by what subtracting the old block would leave behind.
            self.total = self.blocks.iter().fold(Moments::default(), |t, b| Moments { n: t.n + b.n, sum: t.sum + b.sum, sum_sq: t.sum_sq + b.sum_sq });
        }
        debug_assert!(self.total.n <= HISTORY && self.blocks.len() <= HISTORY.div_ceil(BLOCK) + 1);
    }
}

impl Detector for Likelihood {
    fn name(&self) -> &'static str {
        "likelihood"
    }

    fn observe(&mut self, x: &[f64]) -> Option<f64> {
        self.z.observe(x)?;
        let z = self.z.deviations().map(|d| d.iter().fold(0.0, |m: f64, z| m.max(z.abs()))).unwrap_or(0.0);
        let at_once = logistic(z, Z_AT_ONCE);
        if z >= Z_AT_ONCE {
            // Reported on its own; in the average it would make the next windows look like a
            // sustained shift (a lone spike flagging ten quiet windows after it).
            return Some(at_once);
        }
        self.recent.push_back((z / Z_FULL).min(1.0));
        if self.recent.len() > AVERAGE {
            self.recent.pop_front();
        }
        if self.recent.len() < AVERAGE {
            return Some(at_once);
        }
        let average = self.recent.iter().sum::<f64>() / AVERAGE as f64;
        let tail = self.tail(average);
        self.learn(average);
        let sustained = tail.map(|t| logistic(-t.max(f64::MIN_POSITIVE).log10(), HALF_TAIL_LOG10)).unwrap_or(0.0);
        Some(at_once.max(sustained))
    }

    fn deviations(&self) -> Option<&[f64]> {
        self.z.deviations()
    }
}

/// P(Z > z) for a standard normal: `erfc(z / √2) / 2`.
pub fn normal_tail(z: f64) -> f64 {
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// The complementary error function, from the Chebyshev fit in Numerical Recipes (`erfcc`):
/// fractional error below 1.2e-7 everywhere, ample for tail probabilities compared at 1e-5.
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06 + t * (0.278_868_07 + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_matches_tabulated_normal_values() {
        for (z, p) in [(0.0, 0.5), (1.0, 0.158_655_25), (3.0, 1.349_898e-3), (4.264_890_8, 1e-5), (-2.0, 0.977_249_87)] {
            let got = normal_tail(z);
            assert!((got - p).abs() <= 2e-7 * p.max(1e-3) + 1e-12, "P(Z > {z}) = {got}, expected {p}");
        }
    }

    fn noise(seed: &mut u64) -> f64 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 33) as f64 / (1u64 << 31) as f64) - 0.5
    }

    #[test]
    fn a_sustained_shift_is_found_though_no_window_is_extreme_and_noise_is_not() {
        let mut d = Likelihood::new(256, 32);
        let mut seed = 7;
        let quiet: Vec<f64> = (0..600).filter_map(|_| d.observe(&[10.0 + noise(&mut seed)])).collect();
        assert!(quiet.len() > 500 && quiet.iter().all(|s| *s < 0.5), "noise stays below 0.5: {:?}", quiet.iter().cloned().fold(0.0, f64::max));
        // Up by about three of the noise's robust standard deviations, for good: no single
        // window is far out, the run of them is.
        let shifted: Vec<f64> = (0..20).map(|_| d.observe(&[11.1 + noise(&mut seed)]).unwrap()).collect();
        let first = shifted.iter().position(|s| *s >= 0.5);
        assert!(first.is_some_and(|i| i < 15), "found within 15 windows: {shifted:?}");
        assert!(d.deviations().unwrap()[0] > 2.0);
    }

    #[test]
    fn a_spiky_series_learns_its_spikes_but_a_far_spike_is_anomalous_at_once() {
        let mut d = Likelihood::new(256, 32);
        let mut seed = 11;
        let mut scores = Vec::new();
        for i in 0..1_000 {
            // A spike of about eight robust standard deviations every 25 windows.
            let spike = if i % 25 == 0 { 2.4 } else { 0.0 };
            scores.extend(d.observe(&[10.0 + noise(&mut seed) + spike]));
        }
        let late = &scores[scores.len() - 300..];
        assert!(late.iter().all(|s| *s < 0.5), "its usual spikes are not anomalies once learnt");
        assert!(d.observe(&[10.0 + 40.0]).unwrap() >= 0.5, "forty times the noise is");
    }

    #[test]
    fn a_long_running_series_keeps_a_bounded_history_of_the_last_windows() {
        let mut d = Likelihood::new(64, 8);
        let mut seed = 5;
        let mut sizes = Vec::new();
        for i in 0..3 * HISTORY {
            d.observe(&[noise(&mut seed)]);
            if i % 1000 == 0 {
                sizes.push(crate::state::to_bytes(&d).unwrap().len());
            }
        }
        assert!((HISTORY - BLOCK..=HISTORY).contains(&d.total.n), "the last 8,544 to 8,640 averages: {}", d.total.n);
        assert_eq!(d.total.n, d.blocks.iter().map(|b| b.n).sum::<usize>());
        let largest = sizes.iter().max().unwrap();
        assert!(*largest < 8_000, "a series' state stays small (the baseline and 90 blocks): {sizes:?}");
    }

    #[test]
    fn a_restored_detector_scores_the_same() {
        let mut a = Likelihood::new(64, 8);
        let mut seed = 3;
        for _ in 0..200 {
            a.observe(&[noise(&mut seed)]);
        }
        let mut b: Likelihood = crate::state::from_bytes(&crate::state::to_bytes(&a).unwrap()).unwrap();
        for _ in 0..50 {
            let x = [noise(&mut seed) * 3.0];
            assert_eq!(a.observe(&x), b.observe(&x));
        }
    }
}
