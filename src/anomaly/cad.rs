//! The Contextual Anomaly Detector, open source edition (Smirnov and Petrosyan, 2016; second
//! place in the Numenta Anomaly Benchmark's 2016 contest), written from its description.
//!
//! Each value is quantised to a few bits, each bit a *fact*. A *context* pairs a left group
//! of facts (the previous step's facts and the contexts that were active then, as "neuron"
//! facts) with a right group (this step's facts). Contexts are learnt as they are first seen;
//! a context predicts its right facts whenever its whole left group is present again, and
//! remembers how often its prediction came true. A step is anomalous when its value's facts
//! were not predicted, few of the contexts whose left side matched also matched on the right,
//! and many of the contexts it could create are new. After a high score the detector rests (returns 0)
//! for `rest` steps, so one anomaly is one detection.
//!
//! The value range is needed to quantise. NAB hands its detectors the whole series' range; a
//! stream has no such thing, so the range is the first `learn` values' (values outside it
//! quantise past the ends, which are new facts, and so surprising).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::detector::Detector;

/// Published defaults.
pub const BITS: u32 = 3;
pub const BASE_THRESHOLD: f64 = 0.75;
pub const MAX_LEFT_SEMI_CONTEXT: usize = 7;
pub const MAX_ACTIVE_NEURONS: usize = 15;

/// Facts of quantised value bits start here; a neuron fact is `NEURON + context id`.
const VALUE_FACT: u64 = 1 << 16;
const NEURON: u64 = 1 << 31;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Semi {
    /// How many facts it holds.
    len: usize,
    /// Its facts present at the last crossing, in order.
    crossed: Vec<u64>,
    /// Left semi-contexts only: the context for each right semi-context it pairs with.
    contexts: BTreeMap<u32, u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Context {
    /// Right facts it expected, summed over the steps its left side matched.
    expected: u64,
    /// Of those, the ones that came.
    came: u64,
    /// Steps it matched whole.
    active: u64,
    right_facts: Vec<u64>,
    /// Made from two consecutive steps directly (not from crossing others).
    zero_level: bool,
    left: u32,
    right: u32,
}

/// The memory of contexts (left and right semi-contexts, and the pairs of them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Memory {
    /// By side (0 left, 1 right): which semi-contexts hold a fact.
    facts: [HashMap<u64, Vec<u32>>; 2],
    /// By side: semi-context id by its facts.
    ids: [HashMap<Vec<u64>, u32>; 2],
    semis: [Vec<Semi>; 2],
    /// By side: semi-contexts that shared a fact with the last crossing.
    crossed: [Vec<u32>; 2],
    contexts: Vec<Context>,
    /// The zero-level context made at this step: not judged in the same step.
    new_context: Option<u32>,
}

impl Memory {
    fn semi(&mut self, side: usize, facts: &[u64]) -> u32 {
        if let Some(&id) = self.ids[side].get(facts) {
            return id;
        }
        let id = self.semis[side].len() as u32;
        self.ids[side].insert(facts.to_vec(), id);
        self.semis[side].push(Semi { len: facts.len(), ..Semi::default() });
        for f in facts {
            self.facts[side].entry(*f).or_default().push(id);
        }
        id
    }

    /// Store contexts not seen before: how many were new. A zero-level one (`zero`) marks an
    /// existing context as zero-level, or becomes this step's new context.
    fn store(&mut self, pairs: &[(Vec<u64>, Vec<u64>)], zero: bool) -> usize {
        let mut added = 0;
        for (left, right) in pairs {
            let (l, r) = (self.semi(0, left), self.semi(1, right));
            match self.semis[0][l as usize].contexts.get(&r) {
                Some(&c) => {
                    if zero {
                        self.contexts[c as usize].zero_level = true;
                        return 0;
                    }
                }
                None => {
                    let c = self.contexts.len() as u32;
                    self.semis[0][l as usize].contexts.insert(r, c);
                    self.contexts.push(Context { expected: 0, came: 0, active: 0, right_facts: right.clone(), zero_level: zero, left: l, right: r });
                    added += 1;
                    if zero {
                        self.new_context = Some(c);
                        return 1;
                    }
                }
            }
        }
        added
    }

    /// Which semi-contexts of `side` the facts touch, and which facts of each.
    fn cross(&mut self, side: usize, facts: &[u64]) {
        for &id in &self.crossed[side] {
            self.semis[side][id as usize].crossed.clear();
        }
        let mut touched: Vec<u32> = Vec::new();
        for f in facts {
            if let Some(ids) = self.facts[side].get(f) {
                for &id in ids {
                    let s = &mut self.semis[side][id as usize];
                    if s.crossed.is_empty() {
                        touched.push(id);
                    }
                    s.crossed.push(*f);
                }
            }
        }
        touched.sort_unstable();
        self.crossed[side] = touched;
    }

    /// The right side of a step: judge the contexts whose left side matched the previous
    /// step, count the active ones, and list contexts that crossing could make.
    fn judge(&mut self, facts: &[u64], make_new: bool) -> (Vec<(u32, u64)>, usize, Vec<(Vec<u64>, Vec<u64>)>) {
        self.cross(1, facts);
        let mut active = Vec::new();
        let mut selected = 0;
        let mut potential = Vec::new();
        for &l in &self.crossed[0] {
            let left = &self.semis[0][l as usize];
            let whole = left.len == left.crossed.len();
            for (&r, &c) in &left.contexts {
                if self.new_context == Some(c) {
                    continue;
                }
                let right = &self.semis[1][r as usize];
                let ctx = &mut self.contexts[c as usize];
                let came = right.crossed.len();
                if whole {
                    selected += 1;
                    ctx.expected += right.len as u64;
                    if came > 0 {
                        ctx.came += came as u64;
                        if came == right.len {
                            ctx.active += 1;
                            active.push((c, ctx.active));
                        } else if ctx.zero_level && make_new && left.crossed.len() <= MAX_LEFT_SEMI_CONTEXT {
                            potential.push((left.crossed.clone(), right.crossed.clone()));
                        }
                    }
                } else if ctx.zero_level && make_new && came > 0 && left.crossed.len() <= MAX_LEFT_SEMI_CONTEXT {
                    potential.push((left.crossed.clone(), right.crossed.clone()));
                }
            }
        }
        self.new_context = None;
        (active, selected, potential)
    }

    /// The left side of the next step: store the contexts crossing made, and predict the
    /// facts of the next step (those of the best-proven contexts whose left side matched).
    fn predict(&mut self, facts: &[u64], potential: &[(Vec<u64>, Vec<u64>)]) -> (usize, Vec<u64>) {
        let added = if potential.is_empty() { 0 } else { self.store(potential, false) };
        self.cross(0, facts);
        let mut best = 0.0;
        let mut chosen: Vec<u32> = Vec::new();
        for &l in &self.crossed[0] {
            let left = &self.semis[0][l as usize];
            if left.len != left.crossed.len() {
                continue;
            }
            for &c in left.contexts.values() {
                let ctx = &self.contexts[c as usize];
                let weight = if ctx.expected > 0 { ctx.came as f64 / ctx.expected as f64 } else { 0.0 };
                if weight > best {
                    best = weight;
                    chosen.clear();
                    chosen.push(c);
                } else if weight == best {
                    chosen.push(c);
                }
            }
        }
        let mut predicted: Vec<u64> = chosen.iter().flat_map(|&c| self.contexts[c as usize].right_facts.iter().copied()).collect();
        predicted.sort_unstable();
        predicted.dedup();
        (added, predicted)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cad {
    /// Values kept until the range is learnt.
    learning: Vec<f64>,
    learn: usize,
    min: f64,
    step: f64,
    rest: usize,
    memory: Memory,
    left: Vec<u64>,
    predicted: Vec<u64>,
    /// The last `rest` raw scores.
    recent: std::collections::VecDeque<f64>,
}

impl Cad {
    /// `learn`: values that set the range before any is scored; `rest`: steps without a
    /// detection after a high score.
    pub fn new(learn: usize, rest: usize) -> Cad {
        Cad {
            learning: Vec::new(),
            learn: learn.max(1),
            min: 0.0,
            step: 1.0,
            rest: rest.max(1),
            memory: Memory::default(),
            left: Vec::new(),
            predicted: Vec::new(),
            recent: std::collections::VecDeque::from([1.0]),
        }
    }

    /// With a known range (as NAB gives its detectors): no learning.
    pub fn with_range(min: f64, max: f64, rest: usize) -> Cad {
        let mut c = Cad::new(1, rest);
        c.set_range(min, max);
        c.learn = 0;
        c
    }

    fn set_range(&mut self, min: f64, max: f64) {
        let top = (1u64 << BITS) as f64 - 1.0;
        let range = if max - min > 0.0 { max - min } else { top };
        self.min = min;
        self.step = range / top;
    }

    /// The value's facts: one per bit of its quantised value.
    fn facts(&self, x: f64) -> Vec<u64> {
        let q = ((x - self.min) / self.step).max(0.0);
        let q = if q.is_finite() { q.min(1e15) as u64 } else { 0 };
        let bits = (64 - q.leading_zeros()).max(BITS);
        (0..bits).map(|i| VALUE_FACT + 2 * i as u64 + ((q >> i) & 1)).collect()
    }

    /// The score of one value.
    fn score(&mut self, x: f64) -> f64 {
        let facts = self.facts(x);
        let top = (1u64 << BITS) as f64 - 1.0;
        let missed: f64 = facts.iter().filter(|f| self.predicted.binary_search(f).is_err()).map(|f| 2f64.powi(((f - VALUE_FACT) / 2) as i32)).sum();
        let error = missed / top;
        let (active_share, new_share) = self.step(&facts);
        let score = if error > 0.0 { (1.0 - active_share + new_share) / 2.0 } else { 0.0 };
        let resting = self.recent.iter().any(|&s| s >= BASE_THRESHOLD);
        self.recent.push_back(score);
        while self.recent.len() > self.rest {
            self.recent.pop_front();
        }
        if resting { 0.0 } else { score }
    }

    /// One step: the share of matching contexts that were active, the share of contexts it
    /// could make that were new; the next step's predicted facts are kept.
    fn step(&mut self, facts: &[u64]) -> (f64, f64) {
        let mut candidates: Vec<(Vec<u64>, Vec<u64>)> = Vec::new();
        let made_new = if !self.left.is_empty() && !facts.is_empty() {
            let zero = (self.left.clone(), facts.to_vec());
            candidates.push(zero.clone());
            self.memory.store(&[zero], true) == 1
        } else {
            false
        };
        let (mut active, selected, potential) = self.memory.judge(facts, made_new);
        for p in &potential {
            if !candidates.contains(p) {
                candidates.push(p.clone());
            }
        }
        let active_share = if selected > 0 { active.len() as f64 / selected as f64 } else { 0.0 };
        // The most proven contexts become this step's neurons.
        active.sort_by_key(|&(c, n)| (n, self.memory.contexts[c as usize].left, self.memory.contexts[c as usize].right));
        let neurons = active.iter().rev().take(MAX_ACTIVE_NEURONS).map(|&(c, _)| NEURON + c as u64);
        let mut left: Vec<u64> = facts.iter().copied().chain(neurons).collect();
        left.sort_unstable();
        left.dedup();
        let (mut added, predicted) = self.memory.predict(&left, &potential);
        self.left = left;
        self.predicted = predicted;
        added += made_new as usize;
        let new_share = if made_new && !candidates.is_empty() { added as f64 / candidates.len() as f64 } else { 0.0 };
        (active_share, new_share)
    }
}

impl Detector for Cad {
    fn name(&self) -> &'static str {
        "cad"
    }

    fn observe(&mut self, x: &[f64]) -> Option<f64> {
        let v = *x.first()?;
        if self.learn > 0 && self.learning.len() < self.learn {
            self.learning.push(v);
            if self.learning.len() < self.learn {
                return None;
            }
            let (lo, hi) = super::detector::range_of(&self.learning);
            self.set_range(lo, hi);
            let learnt = std::mem::take(&mut self.learning);
            for x in learnt {
                self.score(x);
            }
            self.learn = 0;
            return None;
        }
        Some(calibrated(self.score(v)))
    }

    fn given_range(&mut self, min: f64, max: f64) {
        if self.learn > 0 && self.learning.is_empty() {
            // As `with_range`: CAD learns and scores from the first value, as NAB runs it.
            self.set_range(min, max);
            self.learn = 0;
        }
    }
}

/// CAD's raw score at which it detects, mapped to 0.5, the threshold every detector shares
/// (linear on both sides, so the order of scores is kept).
pub const DETECTS_AT: f64 = 0.7;

fn calibrated(raw: f64) -> f64 {
    if raw < DETECTS_AT {
        raw / DETECTS_AT * 0.5
    } else {
        0.5 + (raw - DETECTS_AT) / (1.0 - DETECTS_AT) * 0.5
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeating_pattern_is_learnt_and_a_break_in_it_scores_high() {
        let pattern = [1.0, 3.0, 7.0, 3.0, 1.0, 0.0];
        let mut d = Cad::with_range(0.0, 7.0, 10);
        let mut late = Vec::new();
        for i in 0..600 {
            late.push(d.observe(&[pattern[i % pattern.len()]]).unwrap());
        }
        assert!(late[500..].iter().all(|s| *s < 0.2), "a learnt pattern is quiet: {:?}", &late[500..]);
        let broken = d.observe(&[6.0]).unwrap();
        assert!(broken >= 0.5, "a value the contexts never saw there: {broken}");
        assert_eq!(d.observe(&[5.0]).unwrap(), 0.0, "then it rests");
    }

    #[test]
    fn the_range_is_learnt_from_the_first_values_and_replays_the_same() {
        let values: Vec<f64> = (0..400).map(|i| ((i as f64) * 0.3).sin() * 10.0).collect();
        let run = || {
            let mut d = Cad::new(50, 20);
            values.iter().map(|v| d.observe(&[*v])).collect::<Vec<_>>()
        };
        let a = run();
        assert!(a[..49].iter().all(Option::is_none) && a[50..].iter().all(Option::is_some));
        assert_eq!(a, run(), "the same input scores the same");
    }
}
