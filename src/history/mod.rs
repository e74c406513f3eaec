//! What a served job did lately, kept for the on-call page and its JSON routes: rates and
//! lag sampled over the last hour ([`samples`]), each SLO series' budget and burn rates over
//! event time ([`slo`]), and the alert transitions of the last day ([`transitions`]).
//!
//! Bounded whatever the traffic: an hour of samples, a fixed number of points and spans per
//! series, a fixed number of series and transitions. Only `osprey serve` keeps one; a job run
//! from the CLI pays nothing.

pub mod samples;
pub mod slo;
pub mod transitions;

use std::sync::Mutex;

pub use samples::{Health, Sample, Samples};
pub use slo::{SeriesHistory, SloHistory};
pub use transitions::{Transition, Transitions};

#[derive(Default)]
pub struct JobHistory {
    pub samples: Mutex<Samples>,
    pub slo: Mutex<SloHistory>,
    pub transitions: Mutex<Transitions>,
}

impl JobHistory {
    pub fn new() -> Self {
        JobHistory::default()
    }
}
