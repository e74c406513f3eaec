//! A series' recent feature vectors, the baseline a detector scores against, and when it has
//! seen enough of them to score at all (its warm-up). Shared by the detectors that keep raw
//! history (`mad`, `ks`, the isolation forest); `likelihood` keeps its own as block sums.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// The last `baseline` vectors of one series. Detectors embed it with `#[serde(flatten)]`:
/// its fields are the ones each detector had before it was shared, so their checkpoints read
/// back unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// How many vectors are kept.
    baseline: usize,
    /// How many are needed before a score means anything.
    warmup: usize,
    history: VecDeque<Vec<f64>>,
}

impl Baseline {
    pub fn new(baseline: usize, warmup: usize) -> Self {
        Baseline { baseline, warmup, history: VecDeque::new() }
    }

    /// Enough history to score against.
    pub fn is_warm(&self) -> bool {
        self.history.len() >= self.warmup
    }

    pub fn len(&self) -> usize {
        self.history.len()
    }

    pub fn is_empty(&self) -> bool {
        self.history.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.baseline
    }

    pub fn warmup(&self) -> usize {
        self.warmup
    }

    /// Keep `x`, dropping the oldest past the capacity.
    pub fn push(&mut self, x: &[f64]) {
        self.push_within(x, self.baseline);
    }

    /// Keep `x`, dropping the oldest past `limit` (a detector that compares its newest vectors
    /// with the baseline before them keeps both).
    pub fn push_within(&mut self, x: &[f64], limit: usize) {
        self.history.push_back(x.to_vec());
        while self.history.len() > limit {
            self.history.pop_front();
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Vec<f64>> {
        self.history.iter()
    }

    /// Feature `j` of every kept vector, oldest first.
    pub fn column(&self, j: usize) -> Vec<f64> {
        self.history.iter().map(|h| h[j]).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_and_warms_up_at_its_count() {
        let mut b = Baseline::new(3, 2);
        b.push(&[1.0]);
        assert!(!b.is_warm());
        b.push(&[2.0]);
        assert!(b.is_warm());
        b.push(&[3.0]);
        b.push(&[4.0]);
        assert_eq!(b.column(0), vec![2.0, 3.0, 4.0]);
        b.push_within(&[5.0], 4);
        assert_eq!(b.len(), 4);
    }

    /// A detector's state written before the baseline was shared reads back into it.
    #[test]
    fn flattened_fields_read_the_state_written_before_the_baseline_was_shared() {
        #[derive(Serialize)]
        struct Before {
            baseline: usize,
            warmup: usize,
            history: VecDeque<Vec<f64>>,
            last: Vec<f64>,
        }
        #[derive(Deserialize, Debug)]
        struct After {
            #[serde(flatten)]
            window: Baseline,
            last: Vec<f64>,
        }
        let before = Before { baseline: 5, warmup: 2, history: VecDeque::from(vec![vec![1.0, 2.0]]), last: vec![0.5] };
        let bytes = crate::state::to_bytes(&before).unwrap();
        let after: After = crate::state::from_bytes(&bytes).unwrap();
        assert_eq!((after.window.capacity(), after.window.warmup(), after.window.column(1), after.last), (5, 2, vec![2.0], vec![0.5]));
    }
}
