//! Anomaly jobs: per-series detectors over window features, DBSCAN incidents.
//!
//! The job's SQL gives one row per series per window: the features. Each series has its own
//! detectors ([`Detector`]); each scores the series' feature vector against the series' own
//! baseline, in [0, 1], and says it is warming up (raises nothing) until it has one. A series
//! whose score (the highest of its detectors) is at or above `threshold` is anomalous at that
//! evaluation. The anomalous series of one evaluation are clustered with DBSCAN over their
//! scores, the direction their features moved, and their labels, so anomalies that occur
//! together become one incident, and one alert: see [`cluster`].

pub mod artime;
pub mod baseline;
pub mod cad;
pub mod cluster;
pub mod detector;
pub mod evaluator;
pub mod kind;
pub mod forest;
pub mod ks;
pub mod likelihood;
pub mod mad;
pub mod nab;
pub mod registry;
pub mod seasonal;

pub use detector::Detector;
pub use registry::{AnyDetector, DetectorKind};
pub use evaluator::AnomalyEvaluator;

/// `[anomaly]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyConfig {
    pub series: Vec<String>,
    pub features: Vec<String>,
    pub detectors: Vec<DetectorKind>,
    pub threshold: f64,
    pub baseline: usize,
    pub warmup: usize,
    pub eps: f64,
    pub min_points: usize,
    pub severity: String,
    pub summary: Option<String>,
    pub runbook_url: Option<String>,
}

/// One set of defaults for every series (what `osprey eval nab` scores).
pub mod defaults {
    use super::DetectorKind;
    /// Robust z-scores through the anomaly likelihood: a job's default. It scores every feature
    /// and warms up in 32 windows.
    pub const DETECTORS: &[DetectorKind] = &[DetectorKind::Likelihood];
    /// For one-feature series with a long history, as NAB's are: ARTime (adaptive resonance),
    /// the best of Osprey's on NAB's series under NAB's rules (the README has each one's). Not
    /// a job's default: it reads only the first feature, learns `max(baseline, warmup)` windows
    /// before it scores, and needs a value range (NAB hands one; a stream's is its warm-up's).
    pub const UNIVARIATE: &[DetectorKind] = &[DetectorKind::Artime];
    pub const THRESHOLD: f64 = 0.5;
    /// Windows of history a detector keeps per series.
    pub const BASELINE: usize = 256;
    /// Windows of history before a detector scores.
    pub const WARMUP: usize = 32;
    pub const EPS: f64 = 0.5;
    pub const MIN_POINTS: usize = 2;
}
