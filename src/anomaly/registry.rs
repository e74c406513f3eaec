//! The one list of detectors: their names in job files, how each is built for a series, and
//! [`AnyDetector`], the one type whose state serialises with the job's. Adding a detector: its
//! own file implementing [`Detector`], and a variant in each enum here.

use serde::{Deserialize, Serialize};

use super::detector::Detector;
use super::forest::IsolationForest;
use super::ks::KsShift;
use super::likelihood::Likelihood;
use super::mad::RobustZ;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectorKind {
    /// Rolling median and MAD: a robust z-score per feature.
    Mad,
    /// Two-sample Kolmogorov-Smirnov test: the recent values against the baseline's.
    Ks,
    /// Isolation forest over the feature vectors (Liu, Ting and Zhou 2008).
    IsolationForest,
    /// Robust z-scores, and the anomaly likelihood of their recent average (Ahmad et al. 2017).
    Likelihood,
}

impl DetectorKind {
    pub const NAMES: &'static [&'static str] = &["likelihood", "mad", "ks", "isolation_forest"];

    pub fn parse(name: &str) -> Option<DetectorKind> {
        match name {
            "mad" => Some(DetectorKind::Mad),
            "ks" => Some(DetectorKind::Ks),
            "isolation_forest" => Some(DetectorKind::IsolationForest),
            "likelihood" => Some(DetectorKind::Likelihood),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DetectorKind::Mad => "mad",
            DetectorKind::Ks => "ks",
            DetectorKind::IsolationForest => "isolation_forest",
            DetectorKind::Likelihood => "likelihood",
        }
    }

    /// A fresh detector for one series; `seed` makes the forest's choices the same every run.
    pub fn build(self, baseline: usize, warmup: usize, seed: u64) -> AnyDetector {
        match self {
            DetectorKind::Mad => AnyDetector::Mad(RobustZ::new(baseline, warmup)),
            DetectorKind::Ks => AnyDetector::Ks(KsShift::new(baseline, warmup)),
            DetectorKind::IsolationForest => AnyDetector::IsolationForest(IsolationForest::new(baseline, warmup, seed)),
            DetectorKind::Likelihood => AnyDetector::Likelihood(Likelihood::new(baseline, warmup)),
        }
    }
}

/// Fresh detectors for one series, seeded from its name (the series' label values), so the
/// forest makes the same random choices for it in every run.
pub fn for_series(kinds: &[DetectorKind], baseline: usize, warmup: usize, name: &[&str]) -> Vec<AnyDetector> {
    let seed = name.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, part| part.bytes().fold(h, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3)));
    kinds.iter().map(|d| d.build(baseline, warmup, seed)).collect()
}

/// Every detector, as one type whose state serialises with the job's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AnyDetector {
    Mad(RobustZ),
    Ks(KsShift),
    IsolationForest(IsolationForest),
    Likelihood(Likelihood),
}

impl Detector for AnyDetector {
    fn name(&self) -> &'static str {
        match self {
            AnyDetector::Mad(d) => d.name(),
            AnyDetector::Ks(d) => d.name(),
            AnyDetector::IsolationForest(d) => d.name(),
            AnyDetector::Likelihood(d) => d.name(),
        }
    }

    fn observe(&mut self, x: &[f64]) -> Option<f64> {
        match self {
            AnyDetector::Mad(d) => d.observe(x),
            AnyDetector::Ks(d) => d.observe(x),
            AnyDetector::IsolationForest(d) => d.observe(x),
            AnyDetector::Likelihood(d) => d.observe(x),
        }
    }

    fn deviations(&self) -> Option<&[f64]> {
        match self {
            AnyDetector::Mad(d) => d.deviations(),
            AnyDetector::Ks(d) => d.deviations(),
            AnyDetector::IsolationForest(d) => d.deviations(),
            AnyDetector::Likelihood(d) => d.deviations(),
        }
    }
}
