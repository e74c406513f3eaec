//! ARTime: adaptive resonance over windows of the recent past (Mark Hampton, 2021; the best
//! published result on NAB), written here from its description and its open edition.
//!
//! The idea: a series is downsampled (a step every `probation / 104` values keeps the value
//! that strays furthest from a running average), quantised to 80 levels, pulled to its running
//! median when within 0.075 of it, and every step the last 8 levels and their Haar wavelet
//! coefficients make one 16-value pattern. A fuzzy ART network (dual vigilance) learns the
//! patterns as categories. A pattern that resonates with no category above the lower vigilance
//! makes a new cluster: that is an anomaly, unless one was raised in the last 12 steps (or a
//! category was made recently) and this one is not clearly less familiar than the last. The
//! vigilances themselves follow the series: the lower one moves toward the least similarity
//! seen in the last half trend window, the upper is the running mean similarity.
//!
//! The probation period is learnt as a batch, as NAB's runner hands it: its patterns, ordered
//! from the least typical to the most, set the starting vigilance.
//!
//! A value range is needed to quantise. NAB hands every detector the whole series' minimum
//! and maximum; a stream has none, so the range is the probation's (`Artime::new`) unless one
//! is given (`Artime::with_range`). Values past a learnt range take the end levels.
//!
//! Scores: ARTime's confidence of an anomaly, mapped so that NAB's optimised threshold for
//! ARTime (0.317486, standard profile, from NAB's own thresholds) is Osprey's shared 0.5.

use serde::{Deserialize, Serialize};

use super::detector::Detector;

/// Steps in one pattern.
const WINDOW: usize = 8;
/// Patterns the downsampled probation holds.
const WINDOWS_PER_PROBATION: usize = 13;
const LEVELS: usize = 80;
/// A level this close to the running median is the median (noise is not a pattern).
const CHOMP: f64 = 0.075;
/// Steps after an anomaly during which another needs to be clearly less familiar.
const MASK: usize = WINDOW * 3 / 2;
const INITIAL_VIGILANCE: f64 = 0.80;
const MAX_UPPER_VIGILANCE: f64 = 0.97;
/// Features of a pattern (levels and wavelet coefficients); categories hold them complement
/// coded, twice as many.
const DIM: usize = 2 * WINDOW;
/// Categories a series keeps. ARTime's own network grows without end (831 categories over
/// NAB's longest series, 18,050 values); a stream runs for ever, so past this the category
/// resonated with least recently is replaced. 256 KiB of weights a series at most.
const MAX_CATEGORIES: usize = 1024;
/// ARTime's confidence at which NAB's optimiser put its detection threshold.
pub const DETECTS_AT: f64 = 0.317486;

/// A fuzzy ART network with two vigilances (distributed dual-vigilance fuzzy ART): a pattern
/// resonating above `upper` refines every such category; one between `lower` and `upper`
/// becomes a category of its best match's cluster; below `lower`, a cluster of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Art {
    lower: f64,
    upper: f64,
    /// Categories, `2 × DIM` weights each, end to end.
    weights: Vec<f64>,
    /// Per category, the pattern it last resonated with (or was made from), counted from 1.
    last_used: Vec<u64>,
    presented: u64,
}

/// What the network made of one pattern.
struct Resonance {
    /// The best category's match.
    similarity: f64,
    /// The best category's match on the newest level alone.
    energy: f64,
    /// The pattern made a cluster of its own.
    new_cluster: bool,
}

impl Art {
    fn new() -> Art {
        Art { lower: 0.0, upper: 0.0, weights: Vec::new(), last_used: Vec::new(), presented: 0 }
    }

    fn categories(&self) -> usize {
        self.weights.len() / (2 * DIM)
    }

    /// A new category made of the pattern itself, in place of the least recently used one
    /// once `MAX_CATEGORIES` are held.
    fn commit(&mut self, x: &[f64; 2 * DIM]) {
        debug_assert_eq!(self.last_used.len(), self.categories());
        if self.categories() < MAX_CATEGORIES {
            self.weights.extend_from_slice(x);
            self.last_used.push(self.presented);
        } else {
            let (oldest, _) = self.last_used.iter().enumerate().min_by_key(|(_, u)| **u).expect("categories are held");
            self.weights[oldest * 2 * DIM..(oldest + 1) * 2 * DIM].copy_from_slice(x);
            self.last_used[oldest] = self.presented;
        }
    }

    /// Match of a category: how much of it the pattern covers (cubed, so near misses fall
    /// fast), times how much of it the newest level covers (squared).
    fn matches(w: &[f64], x: &[f64; 2 * DIM]) -> (f64, f64) {
        let (mut covered, mut size) = (0.0, 0.0);
        for (wi, xi) in w.iter().zip(x) {
            covered += wi.min(*xi);
            size += wi;
        }
        if size == 0.0 {
            size = 0.001;
        }
        let features = covered / size;
        // The newest level is the last feature; its complement the last of all.
        let (a, b) = (DIM - 1, 2 * DIM - 1);
        let e_size = w[a] + w[b];
        let energy = if e_size > 0.0 { (w[a].min(x[a]) + w[b].min(x[b])) / e_size } else { 1.0 };
        (features.powi(3) * energy.powi(2), energy)
    }

    /// Present one pattern; `learn` false only measures it. The very first pattern seeds a
    /// category of ones and is not itself learnt.
    fn present(&mut self, f: &[f64; DIM], learn: bool) -> Resonance {
        let mut x = [0.0; 2 * DIM];
        for i in 0..DIM {
            x[i] = f[i];
            x[DIM + i] = 1.0 - f[i];
        }
        self.presented += 1;
        if self.weights.is_empty() {
            self.weights = vec![1.0; 2 * DIM];
            self.last_used = vec![self.presented];
            return Resonance { similarity: 0.0, energy: 0.0, new_cluster: true };
        }
        let mut best = (0.0, 0.0);
        let mut resonant = false;
        for (c, w) in self.weights.chunks_exact_mut(2 * DIM).enumerate() {
            let (m, e) = Art::matches(w, &x);
            if m > best.0 {
                best = (m, e);
            }
            // Every category resonating above the upper vigilance learns (fast learning: it
            // shrinks to what it shares with the pattern). A category's match is its own, so
            // learning one changes no other's.
            if learn && m >= self.upper {
                resonant = true;
                self.last_used[c] = self.presented;
                for (w, xi) in w.iter_mut().zip(&x) {
                    *w = w.min(*xi);
                }
            }
        }
        if !learn {
            return Resonance { similarity: best.0, energy: best.1, new_cluster: true };
        }
        let new_cluster = if resonant {
            false
        } else {
            self.commit(&x);
            best.0 < self.lower
        };
        Resonance { similarity: best.0, energy: best.1, new_cluster }
    }
}

/// A running median of levels from their counts, moved at most one occupied level a step (close
/// enough to the median for pulling noise to it, and constant time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct LevelMedian {
    counts: Vec<u32>,
    level: usize,
    below: i64,
    above: i64,
    seen: i64,
}

impl LevelMedian {
    fn new() -> LevelMedian {
        LevelMedian { counts: vec![0; LEVELS + 1], level: 0, below: 0, above: 0, seen: 0 }
    }

    fn add(&mut self, level: usize) -> usize {
        self.seen += 1;
        self.counts[level] += 1;
        if self.seen == 1 {
            self.level = level;
        }
        if self.level > level {
            self.below += 1;
        } else if self.level < level {
            self.above += 1;
        }
        let half = self.seen / 2;
        if half < self.above {
            self.below += self.counts[self.level] as i64;
            self.level += 1;
            while self.level < LEVELS && self.counts[self.level] == 0 {
                self.level += 1;
            }
            self.above -= self.counts[self.level] as i64;
        } else if half < self.below {
            self.above += self.counts[self.level] as i64;
            self.level = self.level.saturating_sub(1);
            while self.level > 0 && self.counts[self.level] == 0 {
                self.level -= 1;
            }
            self.below -= self.counts[self.level] as i64;
        }
        self.level
    }
}

/// Orthonormal Haar transform of 8 values: the coarsest average, then details from coarse to
/// fine (each pair's second minus its first, the convention ARTime's results were made with).
fn haar(x: &[f64; WINDOW]) -> [f64; WINDOW] {
    let mut out = [0.0; WINDOW];
    let mut approx: Vec<f64> = x.to_vec();
    let mut end = WINDOW;
    while approx.len() > 1 {
        let half = approx.len() / 2;
        let s = std::f64::consts::FRAC_1_SQRT_2;
        let next: Vec<f64> = (0..half).map(|k| (approx[2 * k] + approx[2 * k + 1]) * s).collect();
        for k in 0..half {
            out[end - half + k] = (approx[2 * k + 1] - approx[2 * k]) * s;
        }
        end -= half;
        approx = next;
    }
    out[0] = approx[0];
    out
}

/// Scales values to [0, 1] by their own minimum and maximum (all zero when flat).
fn unit(x: &mut [f64]) {
    let lo = x.iter().copied().fold(f64::INFINITY, f64::min);
    for v in x.iter_mut() {
        *v -= lo;
    }
    let hi = x.iter().copied().fold(0.0, f64::max);
    if hi != 0.0 {
        for v in x.iter_mut() {
            *v /= hi;
        }
    }
}

/// Cosine similarity, with a zero vector's similarity one minus the other's length.
fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let na = a.iter().map(|v| v * v).sum::<f64>().sqrt();
    let nb = b.iter().map(|v| v * v).sum::<f64>().sqrt();
    if na == 0.0 {
        1.0 - nb
    } else if nb == 0.0 {
        1.0 - na
    } else {
        a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>() / (na * nb)
    }
}

/// A mean of values whose last one can still be lowered; summed in arrival order, as a list's
/// sum would be.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct AnomalySimilarities {
    earlier_sum: f64,
    count: u64,
    last: Option<f64>,
}

impl AnomalySimilarities {
    fn push(&mut self, x: f64) {
        if let Some(last) = self.last {
            self.earlier_sum += last;
        }
        self.last = Some(x);
        self.count += 1;
    }

    fn lower_last(&mut self, x: f64) {
        if let Some(last) = &mut self.last {
            *last = last.min(x);
        }
    }

    fn mean(&self) -> Option<f64> {
        self.last.map(|last| (self.earlier_sum + last) / self.count as f64)
    }
}

/// Where the series stands while its range is not known yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Range {
    /// Values kept until the probation ends.
    Learning(Vec<f64>),
    Known { min: f64, max: f64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artime {
    range: Range,
    probation: usize,
    /// Raw values per downsampled step.
    stride: usize,
    /// Downsampled steps the probation holds.
    trend: usize,
    /// Raw values seen.
    seen: u64,
    /// Downsampled steps taken (1-based once the first is taken).
    step: usize,
    stride_values: Vec<f64>,
    moving_average: f64,
    median: LevelMedian,
    levels: [f64; WINDOW],
    /// The probation's patterns, learnt as a batch when it ends.
    probation_patterns: Vec<[f64; DIM]>,
    art: Art,
    similarity_sum: f64,
    similarity_count: u64,
    recent_similarity: std::collections::VecDeque<f64>,
    recent_shortfall: std::collections::VecDeque<f64>,
    /// The least similarity of each anomaly's masking window, as a running mean: a stream
    /// raises anomalies for ever.
    anomaly_similarities: AnomalySimilarities,
    last_anomaly: usize,
    last_anomaly_similarity: f64,
    last_vigilance_update: usize,
    mask_after_category: bool,
    steps_without_new_cluster: usize,
}

impl Artime {
    /// `probation`: values learnt before any is scored (NAB's probation period); the value
    /// range is theirs.
    pub fn new(probation: usize) -> Artime {
        let probation = probation.max(2 * WINDOW);
        let probation = probation - probation % 2;
        let stride = (probation / (WINDOW * WINDOWS_PER_PROBATION)).max(1);
        let trend = probation / stride;
        Artime {
            range: Range::Learning(Vec::new()),
            probation,
            stride,
            trend,
            seen: 0,
            step: 0,
            stride_values: vec![0.0; stride],
            moving_average: 0.0,
            median: LevelMedian::new(),
            levels: [0.0; WINDOW],
            probation_patterns: Vec::new(),
            art: Art::new(),
            similarity_sum: 0.0,
            similarity_count: 0,
            recent_similarity: std::iter::repeat_n(1.0, trend / 2 + 1).collect(),
            recent_shortfall: std::iter::repeat_n(0.0, trend + 1).collect(),
            anomaly_similarities: AnomalySimilarities::default(),
            last_anomaly: 0,
            last_anomaly_similarity: 0.0,
            last_vigilance_update: 0,
            mask_after_category: false,
            steps_without_new_cluster: 0,
        }
    }

    /// With the series' range known in advance, as NAB hands it to its detectors.
    pub fn with_range(probation: usize, min: f64, max: f64) -> Artime {
        let mut a = Artime::new(probation);
        a.range = Range::Known { min, max };
        a
    }

    /// One raw value: ARTime's confidence that it is an anomaly (0 on most steps).
    fn value(&mut self, v: f64) -> f64 {
        let Range::Known { min, max } = self.range else { unreachable!("the range is known before values are scored") };
        self.seen += 1;
        self.stride_values.rotate_left(1);
        *self.stride_values.last_mut().expect("a stride holds a value") = v;
        if self.seen % self.stride as u64 != 0 {
            return 0.0;
        }
        self.step += 1;
        let n = self.stride as f64;
        let mean = self.stride_values.iter().sum::<f64>() / n;
        let hi = self.stride_values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let lo = self.stride_values.iter().copied().fold(f64::INFINITY, f64::min);
        if self.step == 1 {
            self.moving_average = mean;
        }
        self.moving_average = (self.moving_average + mean) / 2.0;
        // The value that strays furthest from the moving average stands for the stride, if it
        // strays by a tenth of the mean; the mean otherwise.
        let mut x = if (hi - self.moving_average).abs() < (lo - self.moving_average).abs() { lo } else { hi };
        if (x - mean).abs() < 0.1 * mean {
            x = mean;
        }
        x -= min;
        if max - min != 0.0 {
            x /= max - min;
        }
        let level = (x * LEVELS as f64).round_ties_even().clamp(0.0, LEVELS as f64) as usize;
        let mut x = level as f64 / LEVELS as f64;
        let median = self.median.add(level) as f64 / LEVELS as f64;
        if (x - median).abs() < CHOMP {
            x = median;
        }
        self.levels.rotate_left(1);
        self.levels[WINDOW - 1] = x;
        let mut pattern = [0.0; DIM];
        if self.step >= WINDOW {
            let mut shape = self.levels;
            unit(&mut shape);
            let mut coefficients = haar(&shape);
            unit(&mut coefficients);
            pattern[..WINDOW].copy_from_slice(&coefficients);
            pattern[WINDOW..].copy_from_slice(&self.levels);
        }
        if self.step <= self.trend {
            self.probation_patterns.push(pattern);
            if self.step == self.trend {
                self.learn_probation();
            }
            0.0
        } else {
            self.detect(&pattern, self.step)
        }
    }

    /// The probation as a batch: its starting vigilance from a trial network over its patterns
    /// (least typical first), then every pattern through the network, no anomaly raised.
    fn learn_probation(&mut self) {
        let patterns = std::mem::take(&mut self.probation_patterns);
        let full = &patterns[(WINDOW - 1).min(patterns.len())..];
        let sums: Vec<f64> = full.iter().enumerate().map(|(i, a)| full.iter().enumerate().map(|(j, b)| if i == j { 1.0 } else { cosine(a, b) }).sum()).collect();
        let mut order: Vec<usize> = (0..full.len()).collect();
        order.sort_by(|&a, &b| sums[a].total_cmp(&sums[b]));
        let mut trial = Art::new();
        trial.lower = INITIAL_VIGILANCE;
        trial.upper = INITIAL_VIGILANCE;
        let similarities: Vec<f64> = order.iter().map(|&i| trial.present(&full[i], true).similarity).collect();
        let from = (self.trend / 2).saturating_sub(1).min(similarities.len().saturating_sub(1));
        let tail = &similarities[from..];
        let vigilance = if tail.is_empty() { INITIAL_VIGILANCE } else { tail.iter().sum::<f64>() / tail.len() as f64 };
        self.art.lower = vigilance;
        self.art.upper = vigilance;
        for (i, p) in patterns.iter().enumerate() {
            self.detect(p, i + 1);
        }
    }

    /// One pattern at downsampled step `i`: its confidence of an anomaly, then the vigilances'
    /// update when due.
    fn detect(&mut self, pattern: &[f64; DIM], i: usize) -> f64 {
        let since_anomaly = i - self.last_anomaly;
        let update_after_anomaly = since_anomaly == MASK;
        let update_for_trend = i - self.last_vigilance_update >= self.trend / 2;
        let masked_after_anomaly = since_anomaly <= MASK;
        if i > self.trend + MASK && self.mask_after_category && self.steps_without_new_cluster >= MASK {
            self.mask_after_category = false;
        }
        let r = self.art.present(pattern, i >= WINDOW);
        let new_cluster = r.new_cluster;
        self.steps_without_new_cluster = if new_cluster { 0 } else { self.steps_without_new_cluster + 1 };
        self.similarity_sum += r.similarity;
        self.similarity_count += 1;
        self.recent_similarity.pop_front();
        self.recent_similarity.push_back(r.similarity);
        self.recent_shortfall.pop_front();
        self.recent_shortfall.push_back(self.art.upper - r.similarity);
        if since_anomaly < MASK {
            self.anomaly_similarities.lower_last(r.similarity);
        }
        let masking = self.mask_after_category || masked_after_anomaly;
        let clearly_less_familiar = r.similarity < self.last_anomaly_similarity * if masked_after_anomaly { 0.90 } else { 0.70 };
        let mut confidence = 0.0;
        if i > self.trend && new_cluster && (!masking || clearly_less_familiar) {
            confidence = self.confidence(r.similarity, r.energy);
            self.anomaly_similarities.push(r.similarity);
            self.last_anomaly_similarity = r.similarity;
            self.last_anomaly = i;
        }
        self.mask_after_category |= new_cluster;
        if i > self.trend && (update_after_anomaly || update_for_trend) {
            self.update_vigilance(i);
        }
        confidence
    }

    fn update_vigilance(&mut self, i: usize) {
        let least = self.recent_similarity.iter().copied().fold(f64::INFINITY, f64::min);
        let upper = (self.similarity_sum / self.similarity_count as f64).min(MAX_UPPER_VIGILANCE);
        let previous = self.art.lower;
        let mut lower = if previous <= least {
            previous + (least - previous) * 0.19
        } else {
            let mut decrease = 0.0;
            if i > 2 * self.trend {
                let short: Vec<f64> = self.recent_shortfall.iter().filter(|&&d| d > 0.05).map(|d| d.min(0.37)).collect();
                if !short.is_empty() {
                    decrease = short.iter().sum::<f64>() / short.len() as f64;
                }
            }
            let lower = previous - decrease.max(0.01) / 2.0;
            match self.anomaly_similarities.mean() {
                None => lower,
                Some(mean) => lower.max(mean),
            }
        };
        lower = lower.min(upper);
        self.art.lower = lower;
        self.art.upper = upper;
        self.last_vigilance_update = i;
        self.mask_after_category = true;
    }

    /// How far below both vigilances the pattern fell, and how unlike the newest level was.
    fn confidence(&self, similarity: f64, energy: f64) -> f64 {
        let s = similarity.min(0.999);
        let below = |vigilance: f64| ((1.0 - s) - (1.0 - vigilance)) / (1.0 - s);
        let c = below(self.art.upper) * 0.35 + below(self.art.lower) * 0.65 + (1.0 - energy) * 1.5;
        (c.min(1.0) * 1e6).round_ties_even() / 1e6
    }

    /// Categories the network holds (its state grows with them).
    pub fn categories(&self) -> usize {
        self.art.categories()
    }
}

/// ARTime's confidence mapped to Osprey's scale: `DETECTS_AT` is 0.5, linear on both sides.
fn calibrated(confidence: f64) -> f64 {
    if confidence < DETECTS_AT {
        confidence / DETECTS_AT * 0.5
    } else {
        0.5 + (confidence - DETECTS_AT) / (1.0 - DETECTS_AT) * 0.5
    }
}

impl Detector for Artime {
    fn name(&self) -> &'static str {
        "artime"
    }

    fn observe(&mut self, x: &[f64]) -> Option<f64> {
        let v = *x.first()?;
        if let Range::Learning(values) = &mut self.range {
            values.push(v);
            if values.len() < self.probation {
                return None;
            }
            let values = std::mem::take(values);
            let (lo, hi) = super::detector::range_of(&values);
            self.range = Range::Known { min: lo, max: hi };
            for v in values {
                self.value(v);
            }
            return None;
        }
        let warming = self.seen < self.probation as u64;
        let c = self.value(v);
        if warming { None } else { Some(calibrated(c)) }
    }

    fn given_range(&mut self, min: f64, max: f64) {
        if matches!(&self.range, Range::Learning(v) if v.is_empty()) {
            self.range = Range::Known { min, max };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_haar_transform_orders_coarse_to_fine() {
        let x = [2.0, 5.0, 8.0, 9.0, 7.0, 4.0, -1.0, 1.0];
        let h = haar(&x);
        let expect = [12.374, -4.596, 5.0, -5.5, 2.121, 0.707, -2.121, 1.414];
        for (a, b) in h.iter().zip(expect) {
            assert!((a - b).abs() < 1e-3, "{h:?}");
        }
    }

    #[test]
    fn the_running_median_follows_the_levels() {
        let mut m = LevelMedian::new();
        for l in [10, 10, 10, 50, 50, 50, 50, 50, 50, 50] {
            m.add(l);
        }
        assert_eq!(m.level, 50);
    }

    /// A steady cycle raises nothing once learnt; a burst far outside it is an anomaly,
    /// raised once.
    #[test]
    fn a_burst_in_a_steady_cycle_is_raised_once() {
        let probation = 750;
        let mut d = Artime::new(probation);
        let value = |i: usize| 50.0 + 10.0 * ((i as f64) * std::f64::consts::TAU / 96.0).sin() + ((i * 7919) % 13) as f64 * 0.2;
        let mut scores = Vec::new();
        for i in 0..4000 {
            let v = if (3000..3020).contains(&i) { 95.0 } else { value(i) };
            scores.push(d.observe(&[v]));
        }
        assert!(scores[..probation - 1].iter().all(Option::is_none));
        let raised: Vec<usize> = scores.iter().enumerate().filter(|(_, s)| s.is_some_and(|s| s >= 0.5)).map(|(i, _)| i).collect();
        let in_burst = raised.iter().filter(|&&i| (3000..3060).contains(&i)).count();
        assert!(in_burst >= 1, "the burst is raised: {raised:?}");
        assert!(raised.iter().filter(|&&i| !(3000..3060).contains(&i) && i > 1500).count() <= 1, "a learnt cycle stays quiet: {raised:?}");
    }

    #[test]
    fn a_network_holds_at_most_its_categories_replacing_the_least_recent() {
        let mut art = Art::new();
        art.lower = 0.99;
        art.upper = 0.99;
        // Pseudo-random patterns (splitmix64), none alike enough to resonate at 0.99.
        let pattern = |i: usize| -> [f64; DIM] {
            std::array::from_fn(|k| {
                let mut z = (i * DIM + k) as u64 + 0x9e37_79b9_7f4a_7c15;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                (z ^ (z >> 31)) as f64 / u64::MAX as f64
            })
        };
        art.present(&pattern(0), true);
        for i in 1..MAX_CATEGORIES + 200 {
            art.present(&pattern(i), true);
        }
        assert_eq!(art.categories(), MAX_CATEGORIES);
        // The newest pattern is held as it was presented; the first ones are gone.
        let newest = pattern(MAX_CATEGORIES + 199);
        assert!(art.present(&newest, false).similarity > 0.99);
        assert!(art.present(&pattern(1), false).similarity < 0.99);
    }

    #[test]
    fn a_replay_scores_the_same_and_the_state_round_trips() {
        let series: Vec<f64> = (0..3000).map(|i| ((i * 37) % 101) as f64 + if i == 2500 { 400.0 } else { 0.0 }).collect();
        let mut a = Artime::new(450);
        let first: Vec<Option<f64>> = series[..2000].iter().map(|v| a.observe(&[*v])).collect();
        let saved = serde_json::to_string(&a).unwrap();
        let mut b: Artime = serde_json::from_str(&saved).unwrap();
        let rest_a: Vec<Option<f64>> = series[2000..].iter().map(|v| a.observe(&[*v])).collect();
        let rest_b: Vec<Option<f64>> = series[2000..].iter().map(|v| b.observe(&[*v])).collect();
        assert_eq!(rest_a, rest_b);
        let mut c = Artime::new(450);
        let again: Vec<Option<f64>> = series[..2000].iter().map(|v| c.observe(&[*v])).collect();
        assert_eq!(first, again);
    }
}
