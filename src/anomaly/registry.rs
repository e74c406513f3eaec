//! The one list of detectors: their names in job files, how each is built for a series, and
//! [`AnyDetector`], the one type whose state serialises with the job's. Adding a detector is
//! its own file implementing [`Detector`] and one entry in the [`detectors!`] list below.

use serde::{Deserialize, Serialize};

use super::artime::Artime;
use super::cad::Cad;
use super::detector::Detector;
use super::forest::IsolationForest;
use super::ks::KsShift;
use super::likelihood::Likelihood;
use super::mad::RobustZ;
use super::seasonal::Seasonal;

/// Generates [`DetectorKind`] (the names), [`AnyDetector`] (the states) and the matches
/// between them from one list: `Variant(Type) = "name", |baseline, warmup, seed| constructor`.
/// Variant names are part of checkpoints (serde tags) and of a job's shape (`Debug`): keep them.
macro_rules! detectors {
    ($( $(#[$doc:meta])* $variant:ident($ty:ty) = $name:literal, |$b:ident, $w:ident, $s:ident| $build:expr; )*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum DetectorKind {
            $( $(#[$doc])* $variant, )*
        }

        impl DetectorKind {
            /// As written in `[anomaly] detectors`, the default first.
            pub const NAMES: &'static [&'static str] = &[$($name),*];

            pub fn parse(name: &str) -> Option<DetectorKind> {
                match name {
                    $( $name => Some(DetectorKind::$variant), )*
                    _ => None,
                }
            }

            pub fn name(self) -> &'static str {
                match self {
                    $( DetectorKind::$variant => $name, )*
                }
            }

            /// A fresh detector for one series; `seed` makes random choices the same every run.
            #[allow(unused_variables)]
            pub fn build(self, baseline: usize, warmup: usize, seed: u64) -> AnyDetector {
                match self {
                    $( DetectorKind::$variant => {
                        let ($b, $w, $s) = (baseline, warmup, seed);
                        AnyDetector::$variant($build)
                    } )*
                }
            }
        }

        /// Every detector, as one type whose state serialises with the job's.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        pub enum AnyDetector {
            $( $variant($ty), )*
        }

        impl Detector for AnyDetector {
            fn name(&self) -> &'static str {
                match self {
                    $( AnyDetector::$variant(d) => d.name(), )*
                }
            }

            fn observe(&mut self, x: &[f64]) -> Option<f64> {
                match self {
                    $( AnyDetector::$variant(d) => d.observe(x), )*
                }
            }

            fn observe_at(&mut self, t: crate::Millis, x: &[f64]) -> Option<f64> {
                match self {
                    $( AnyDetector::$variant(d) => d.observe_at(t, x), )*
                }
            }

            fn deviations(&self) -> Option<&[f64]> {
                match self {
                    $( AnyDetector::$variant(d) => d.deviations(), )*
                }
            }

            fn given_range(&mut self, min: f64, max: f64) {
                match self {
                    $( AnyDetector::$variant(d) => d.given_range(min, max), )*
                }
            }
        }
    };
}

detectors! {
    /// Robust z-scores, and the anomaly likelihood of their recent average (Ahmad et al. 2017).
    Likelihood(Likelihood) = "likelihood", |b, w, s| Likelihood::new(b, w);
    /// Rolling median and MAD: a robust z-score per feature.
    Mad(RobustZ) = "mad", |b, w, s| RobustZ::new(b, w);
    /// Two-sample Kolmogorov-Smirnov test: the recent values against the baseline's.
    Ks(KsShift) = "ks", |b, w, s| KsShift::new(b, w);
    /// Isolation forest over the feature vectors (Liu, Ting and Zhou 2008).
    IsolationForest(IsolationForest) = "isolation_forest", |b, w, s| IsolationForest::new(b, w, s);
    /// Contexts of quantised values (the Contextual Anomaly Detector, Smirnov 2016).
    Cad(Cad) = "cad", |b, w, s| Cad::new(b.max(w), b.max(w) / 5);
    /// Each hour of the day its own level and spread: a daily peak is not an anomaly.
    Seasonal(Seasonal) = "seasonal", |b, w, s| Seasonal::new(b, w);
    /// Adaptive resonance over windows of the recent past (ARTime, Hampton 2021).
    Artime(Artime) = "artime", |b, w, s| Artime::new(b.max(w));
}

/// Fresh detectors for one series, seeded from its name (the series' label values), so the
/// forest makes the same random choices for it in every run.
pub fn for_series(kinds: &[DetectorKind], baseline: usize, warmup: usize, name: &[&str]) -> Vec<AnyDetector> {
    let seed = name.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, part| part.bytes().fold(h, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3)));
    kinds.iter().map(|d| d.build(baseline, warmup, seed)).collect()
}
