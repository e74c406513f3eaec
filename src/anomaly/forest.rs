//! Isolation forest (Liu, Ting and Zhou, 2008): anomalies are few and different, so random
//! axis-aligned cuts isolate them in fewer steps than normal points. Each tree is grown on a
//! subsample of at most 256 vectors of the series' baseline, to depth `ceil(log2(256))`; a
//! point's score is `2^(-E[h(x)] / c(n))`, where `h` is its path length (plus `c(size)` for the
//! points left in a leaf) and `c(n)` the average path length of an unsuccessful search in a
//! binary search tree of `n` points. The forest is trained on the sliding baseline and
//! retrained every `RETRAIN` observations; random choices come from a seeded generator, so a
//! replay scores the same.
//!
//! The paper's score is about 0.5 for ordinary points and near 1 for anomalies; Osprey reports
//! `2 × (s - 0.5)` clipped to [0, 1], so that 0.5, the default threshold, means `s = 0.75`.

use serde::{Deserialize, Serialize};

use super::baseline::Baseline;
use super::detector::Detector;

pub const TREES: usize = 100;
pub const SUBSAMPLE: usize = 256;
pub const RETRAIN: u64 = 32;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Node {
    Leaf { size: usize },
    Split { feature: usize, at: f64, left: Box<Node>, right: Box<Node> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsolationForest {
    #[serde(flatten)]
    window: Baseline,
    seed: u64,
    rng: u64,
    trees: Vec<Node>,
    /// Subsample size the trees were grown on (for `c(n)`).
    sample: usize,
    since_training: u64,
}

/// Average path length of an unsuccessful search in a binary search tree of `n` points.
pub fn c(n: usize) -> f64 {
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        n => {
            let n = n as f64;
            2.0 * ((n - 1.0).ln() + 0.577_215_664_901_532_9) - 2.0 * (n - 1.0) / n
        }
    }
}

impl IsolationForest {
    pub fn new(baseline: usize, warmup: usize, seed: u64) -> Self {
        IsolationForest {
            window: Baseline::new(baseline.max(8), warmup.max(8)),
            seed,
            rng: seed ^ 0x9E37_79B9_7F4A_7C15,
            trees: Vec::new(),
            sample: 0,
            since_training: 0,
        }
    }

    fn next(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Grow the forest on the current baseline.
    pub fn train(&mut self) {
        let data: Vec<Vec<f64>> = self.window.iter().cloned().collect();
        let sample = data.len().min(SUBSAMPLE);
        let depth = (sample.max(2) as f64).log2().ceil() as usize;
        let mut trees = Vec::with_capacity(TREES);
        for _ in 0..TREES {
            // A subsample without replacement (partial Fisher-Yates over indices).
            let mut idx: Vec<usize> = (0..data.len()).collect();
            for i in 0..sample {
                let j = i + (self.next() % (idx.len() - i) as u64) as usize;
                idx.swap(i, j);
            }
            let points: Vec<&[f64]> = idx[..sample].iter().map(|&i| data[i].as_slice()).collect();
            trees.push(self.grow(&points, 0, depth));
        }
        self.trees = trees;
        self.sample = sample;
        self.since_training = 0;
    }

    fn grow(&mut self, points: &[&[f64]], depth: usize, limit: usize) -> Node {
        if depth >= limit || points.len() <= 1 {
            return Node::Leaf { size: points.len() };
        }
        let dims = points[0].len();
        // A feature that still varies among these points, then a cut between its min and max.
        let start = (self.next() % dims as u64) as usize;
        for k in 0..dims {
            let feature = (start + k) % dims;
            let (lo, hi) = points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p[feature]), hi.max(p[feature])));
            if hi > lo {
                let at = lo + self.uniform() * (hi - lo);
                let (left, right): (Vec<&[f64]>, Vec<&[f64]>) = points.iter().partition(|p| p[feature] < at);
                return Node::Split {
                    feature,
                    at,
                    left: Box::new(self.grow(&left, depth + 1, limit)),
                    right: Box::new(self.grow(&right, depth + 1, limit)),
                };
            }
        }
        Node::Leaf { size: points.len() }
    }

    /// The paper's score of `x`: about 0.5 for ordinary points, near 1 for anomalies.
    pub fn raw_score(&self, x: &[f64]) -> f64 {
        if self.trees.is_empty() {
            return 0.5;
        }
        let mean: f64 = self.trees.iter().map(|t| path(t, x, 0)).sum::<f64>() / self.trees.len() as f64;
        2f64.powf(-mean / c(self.sample).max(1e-9))
    }
}

fn path(node: &Node, x: &[f64], depth: usize) -> f64 {
    match node {
        Node::Leaf { size } => depth as f64 + c(*size),
        Node::Split { feature, at, left, right } => path(if x[*feature] < *at { left } else { right }, x, depth + 1),
    }
}

impl Detector for IsolationForest {
    fn name(&self) -> &'static str {
        "isolation_forest"
    }

    fn observe(&mut self, x: &[f64]) -> Option<f64> {
        let score = if self.window.is_warm() {
            if self.trees.is_empty() || self.since_training >= RETRAIN {
                self.train();
            }
            self.since_training += 1;
            Some((2.0 * (self.raw_score(x) - 0.5)).clamp(0.0, 1.0))
        } else {
            None
        };
        self.window.push(x);
        score
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planted_outliers_score_above_inliers() {
        let mut f = IsolationForest::new(256, 64, 7);
        let mut x: u64 = 3;
        let mut noise = || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((x >> 33) as f64 / (1u64 << 31) as f64) - 0.5
        };
        for _ in 0..256 {
            f.observe(&[noise(), noise()]);
        }
        f.train();
        let inliers: Vec<f64> = (0..50).map(|_| f.raw_score(&[noise(), noise()])).collect();
        let outliers = [f.raw_score(&[4.0, 4.0]), f.raw_score(&[-3.0, -3.0]), f.raw_score(&[3.0, -4.0])];
        let worst_inlier = inliers.iter().cloned().fold(0.0, f64::max);
        assert!(outliers.iter().all(|o| *o > worst_inlier), "{outliers:?} vs {worst_inlier}");
        assert!(outliers.iter().all(|o| *o > 0.6), "{outliers:?}");
        assert!((c(256) - 10.24).abs() < 0.01, "c(256) = {}", c(256));
    }

    #[test]
    fn a_restored_forest_scores_the_same() {
        let mut f = IsolationForest::new(64, 16, 1);
        for i in 0..40 {
            f.observe(&[(i % 5) as f64]);
        }
        let copy: IsolationForest = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        let (mut a, mut b) = (f, copy);
        for i in 0..50 {
            assert_eq!(a.observe(&[(i % 9) as f64]), b.observe(&[(i % 9) as f64]));
        }
    }
}
