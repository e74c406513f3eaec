//! Distribution shift: the two-sample Kolmogorov-Smirnov test between a series' most recent
//! values and its baseline before them, per feature. It catches what a point detector misses:
//! a level or spread that changed and stays changed.

use serde::{Deserialize, Serialize};

use super::baseline::Baseline;
use super::detector::Detector;

/// Recent values compared with the baseline.
pub const RECENT: usize = 12;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KsShift {
    /// The baseline and, after it, the `RECENT` vectors compared with it.
    #[serde(flatten)]
    window: Baseline,
}

impl KsShift {
    pub fn new(baseline: usize, warmup: usize) -> Self {
        KsShift { window: Baseline::new(baseline.max(RECENT * 2), warmup.max(RECENT * 2)) }
    }
}

/// The KS statistic: the largest distance between the two empirical distribution functions.
pub fn statistic(a: &[f64], b: &[f64]) -> f64 {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by(|x, y| x.total_cmp(y));
    b.sort_by(|x, y| x.total_cmp(y));
    let (mut i, mut j, mut d) = (0, 0, 0.0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    d
}

/// The asymptotic p-value of statistic `d` for samples of `n` and `m` (Kolmogorov's
/// distribution, with Stephens' small-sample correction).
pub fn p_value(d: f64, n: usize, m: usize) -> f64 {
    let ne = (n * m) as f64 / (n + m) as f64;
    let lambda = (ne.sqrt() + 0.12 + 0.11 / ne.sqrt()) * d;
    if lambda < 1e-3 {
        return 1.0;
    }
    let mut sum = 0.0;
    for k in 1..=100 {
        let term = (-2.0 * (k * k) as f64 * lambda * lambda).exp();
        sum += if k % 2 == 1 { term } else { -term };
        if term < 1e-12 {
            break;
        }
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

impl Detector for KsShift {
    fn name(&self) -> &'static str {
        "ks"
    }

    fn observe(&mut self, x: &[f64]) -> Option<f64> {
        self.window.push_within(x, self.window.capacity() + RECENT);
        if self.window.len() < self.window.warmup() + RECENT {
            return None;
        }
        let split = self.window.len() - RECENT;
        let mut score: f64 = 0.0;
        for j in 0..x.len() {
            let column = self.window.column(j);
            let (before, recent) = column.split_at(split);
            let p = p_value(statistic(before, recent), before.len(), recent.len());
            // 0.5 at p = 1e-5: a shift that noise makes once in a hundred thousand tries.
            score = score.max((-p.max(1e-300).log10() / 10.0).min(1.0));
        }
        Some(score)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statistic_and_p_value_match_worked_values() {
        assert_eq!(statistic(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]), 0.0);
        assert!((statistic(&[1.0, 2.0, 3.0, 4.0], &[3.5, 5.0, 6.0, 7.0]) - 0.75).abs() < 1e-12);
        // Kolmogorov's distribution: Q(1.36) ~= 0.049 (the 5% critical value).
        let n = 10_000;
        let d = 1.36 / ((n * n) as f64 / (2 * n) as f64).sqrt();
        assert!((p_value(d, n, n) - 0.05).abs() < 0.005, "{}", p_value(d, n, n));
    }

    #[test]
    fn a_level_shift_is_found_and_a_steady_series_is_not() {
        let mut d = KsShift::new(100, 50);
        let mut scores = Vec::new();
        for i in 0..200 {
            let level = if i < 150 { 0.0 } else { 5.0 };
            scores.push(d.observe(&[level + (i % 7) as f64 * 0.3]));
        }
        assert!(scores[..149].iter().flatten().all(|s| *s < 0.5));
        assert!(scores[160..].iter().flatten().any(|s| *s >= 0.5));
    }
}
