//! Incidents: DBSCAN (`linfa-clustering`) over the anomalous series of one evaluation, so that
//! anomalies that occur together become one incident and one alert, not forty pages.
//!
//! Each anomalous series is a point of: its score; for each feature, which way and how far it
//! moved (robust z clipped to ±8, scaled to ±1, weight 0.25); and for each series label, a
//! one-hot coordinate per value seen in this evaluation, weight 1 for the first label
//! (`service`) and 0.1 for the others (`endpoint`, `host`). Two endpoints of one service whose
//! latency rose together are about 0.1 apart; two services are at least 1.4 apart, so with the
//! default `eps` of 0.5 they are separate incidents unless `eps` says otherwise. A series
//! DBSCAN leaves as noise is an incident of its own.

use std::collections::BTreeMap;

use linfa::traits::Transformer;
use linfa_clustering::Dbscan;
use ndarray::Array2;

/// One anomalous series at one evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Anomalous {
    pub labels: Vec<String>,
    pub score: f64,
    /// Per feature: signed robust z (0 where no detector says).
    pub moved: Vec<f64>,
}

/// Label weights: the first label separates incidents, the others only group within one.
const FIRST_LABEL: f64 = 1.0;
const OTHER_LABELS: f64 = 0.1;
const DIRECTION: f64 = 0.25;

/// Groups of indices into `points`, each one incident, in the order of their first member.
pub fn incidents(points: &[Anomalous], eps: f64, min_points: usize) -> Vec<Vec<usize>> {
    if points.is_empty() {
        return Vec::new();
    }
    let labels = points[0].labels.len();
    let features = points[0].moved.len();
    // One-hot columns per label value seen.
    let mut columns: Vec<BTreeMap<&str, usize>> = vec![BTreeMap::new(); labels];
    let mut width = 1 + features;
    for (l, col) in columns.iter_mut().enumerate() {
        for p in points {
            let n = col.len();
            col.entry(p.labels[l].as_str()).or_insert_with(|| n);
        }
        width += col.len();
    }
    let mut data = Array2::<f64>::zeros((points.len(), width));
    for (i, p) in points.iter().enumerate() {
        data[[i, 0]] = p.score;
        for (f, z) in p.moved.iter().enumerate() {
            data[[i, 1 + f]] = DIRECTION * (z.clamp(-8.0, 8.0) / 8.0);
        }
        let mut offset = 1 + features;
        for (l, col) in columns.iter().enumerate() {
            let w = if l == 0 { FIRST_LABEL } else { OTHER_LABELS };
            data[[i, offset + col[p.labels[l].as_str()]]] = w;
            offset += col.len();
        }
    }
    let memberships = Dbscan::params(min_points.max(1)).tolerance(eps).transform(&data).expect("valid DBSCAN parameters");
    let mut by_cluster: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    let mut out: Vec<Vec<usize>> = Vec::new();
    for (i, m) in memberships.iter().enumerate() {
        match m {
            Some(c) => by_cluster.entry(*c).or_default().push(i),
            None => out.push(vec![i]),
        }
    }
    out.extend(by_cluster.into_values());
    out.sort_by_key(|members| members[0]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(service: &str, endpoint: &str, score: f64, z: f64) -> Anomalous {
        Anomalous { labels: vec![service.into(), endpoint.into()], score, moved: vec![z] }
    }

    #[test]
    fn co_occurring_anomalies_of_one_service_cluster_and_others_do_not() {
        let points = vec![
            point("checkout", "/checkout", 0.9, 7.0),
            point("checkout", "/confirm", 0.8, 6.5),
            point("checkout", "/cart", 0.95, 8.0),
            point("search", "/search", 0.7, -5.0),
        ];
        assert_eq!(incidents(&points, 0.5, 2), vec![vec![0, 1, 2], vec![3]]);
        // A wide eps joins everything; min_points above the group size leaves all as noise.
        assert_eq!(incidents(&points, 3.0, 2), vec![vec![0, 1, 2, 3]]);
        assert_eq!(incidents(&points, 0.5, 5).len(), 4);
    }
}
