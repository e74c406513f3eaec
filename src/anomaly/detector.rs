//! The `Detector` trait: what every detector does, whichever it is. The detectors a job can
//! name are listed in [`super::registry`].

/// Scores one series' feature vectors against its own past.
pub trait Detector: Send {
    fn name(&self) -> &'static str;
    /// The score of `x` against the baseline so far, in [0, 1]; `None` while warming up.
    /// Then `x` joins the baseline.
    fn observe(&mut self, x: &[f64]) -> Option<f64>;
    /// [`observe`](Self::observe) at event time `t` (a window's start): what Osprey calls. Only
    /// a detector whose baseline follows the clock ([`Seasonal`](super::seasonal::Seasonal))
    /// reads `t`.
    fn observe_at(&mut self, t: crate::Millis, x: &[f64]) -> Option<f64> {
        let _ = t;
        self.observe(x)
    }
    /// Per feature, how far the last observed vector was from the baseline, in robust
    /// standard deviations (signed), when the detector can say; for evidence and clustering.
    fn deviations(&self) -> Option<&[f64]> {
        None
    }
    /// The series' whole range, known in advance (NAB hands it to its detectors; a stream has
    /// none). Only detectors that quantise values read it, before their first value.
    fn given_range(&mut self, min: f64, max: f64) {
        let _ = (min, max);
    }
}

/// The least and greatest of `values` (what a detector that quantises learns, or is given, as
/// its range); NaNs are passed over.
pub fn range_of(values: &[f64]) -> (f64, f64) {
    values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| (lo.min(x), hi.max(x)))
}

/// A score in [0, 1] from a deviation in robust standard deviations: 0.5 at `half`, rising
/// like a logistic curve (0.12 at `half - 2`, 0.88 at `half + 2`).
pub fn logistic(z: f64, half: f64) -> f64 {
    if !z.is_finite() {
        return if z > 0.0 { 1.0 } else { 0.0 };
    }
    1.0 / (1.0 + (-(z - half)).exp())
}
