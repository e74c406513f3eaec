//! Robust z-scores: per feature, the distance of a value from the rolling median of the
//! series' baseline, in units of its median absolute deviation (× 1.4826, so one unit is one
//! standard deviation for normal data). Medians and MADs ignore the outliers they look for,
//! where a mean and a standard deviation would be dragged by them.

use serde::{Deserialize, Serialize};

use super::baseline::Baseline;
use super::detector::{logistic, Detector};

/// The robust z at which the score is 0.5.
pub const HALF_Z: f64 = 6.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RobustZ {
    #[serde(flatten)]
    window: Baseline,
    last: Vec<f64>,
}

impl RobustZ {
    pub fn new(baseline: usize, warmup: usize) -> Self {
        RobustZ { window: Baseline::new(baseline.max(2), warmup.max(2)), last: Vec::new() }
    }
}

/// The median of `v` (sorted in place).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

/// Signed robust z of `x` against `values`.
pub fn robust_z(values: &[f64], x: f64) -> f64 {
    let mut v = values.to_vec();
    let med = median(&mut v);
    let mut dev: Vec<f64> = v.iter().map(|y| (y - med).abs()).collect();
    let mad = median(&mut dev);
    // A flat baseline has no MAD: fall back on the mean deviation, then on the value's scale,
    // so a quantised series does not call every step an anomaly.
    let mean_dev = dev.iter().sum::<f64>() / dev.len().max(1) as f64;
    let scale = (1.4826 * mad).max(1.2533 * mean_dev).max(1e-3 * med.abs()).max(1e-9);
    (x - med) / scale
}

impl Detector for RobustZ {
    fn name(&self) -> &'static str {
        "mad"
    }

    fn observe(&mut self, x: &[f64]) -> Option<f64> {
        let score = if self.window.is_warm() {
            self.last = (0..x.len()).map(|j| robust_z(&self.window.column(j), x[j])).collect();
            Some(self.last.iter().map(|z| logistic(z.abs(), HALF_Z)).fold(0.0, f64::max))
        } else {
            self.last.clear();
            None
        };
        self.window.push(x);
        score
    }

    fn deviations(&self) -> Option<&[f64]> {
        (!self.last.is_empty()).then_some(self.last.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spike_scores_high_and_noise_low_after_warming_up() {
        let mut d = RobustZ::new(100, 20);
        let mut x: u64 = 1;
        let mut noise = || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((x >> 33) as f64 / (1u64 << 31) as f64) - 0.5
        };
        for i in 0..20 {
            assert_eq!(d.observe(&[10.0 + noise()]), None, "warming up at {i}");
        }
        let quiet: Vec<f64> = (0..200).map(|_| d.observe(&[10.0 + noise()]).unwrap()).collect();
        assert!(quiet.iter().all(|s| *s < 0.5), "{:?}", quiet.iter().cloned().fold(0.0, f64::max));
        assert!(d.observe(&[25.0]).unwrap() > 0.99);
        assert!(d.deviations().unwrap()[0] > 10.0);
    }
}
