//! Anomaly detectors at 10,000 series (the forest at 1,000): feature vectors (two features) scored per second by each
//! detector, each series with its own warmed-up baseline; and DBSCAN per evaluation over 100
//! (1%) and 10,000 (every series) anomalous series. Baseline: the cost of copying each vector
//! into its series' history, the least a streaming detector does.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use osprey::anomaly::cluster::{incidents, Anomalous};
use osprey::anomaly::{defaults, Detector, DetectorKind};

const SERIES: usize = 10_000;

fn vector(series: usize, t: usize) -> [f64; 2] {
    let x = ((series * 7919 + t * 104_729) % 1000) as f64 / 1000.0;
    [50.0 + 10.0 * x, 0.01 + 0.002 * (1.0 - x)]
}

fn detectors(c: &mut Criterion) {
    let mut g = c.benchmark_group("anomaly");
    g.sample_size(10);
    g.throughput(Throughput::Elements(SERIES as u64));
    g.bench_function("baseline: copy into history", |b| {
        let mut history: Vec<std::collections::VecDeque<[f64; 2]>> = vec![Default::default(); SERIES];
        let mut t = 0;
        b.iter(|| {
            t += 1;
            for (s, h) in history.iter_mut().enumerate() {
                h.push_back(vector(s, t));
                if h.len() > defaults::BASELINE {
                    h.pop_front();
                }
            }
            black_box(&history);
        })
    });
    for kind in [DetectorKind::Likelihood, DetectorKind::Mad, DetectorKind::Ks, DetectorKind::IsolationForest, DetectorKind::Cad, DetectorKind::Artime] {
        // The forest retrains every 32 windows (100 trees each time): warming 10,000 of them
        // would take minutes, so it is measured on 1,000 and reported per vector.
        let series = if kind == DetectorKind::IsolationForest { SERIES / 10 } else { SERIES };
        g.throughput(Throughput::Elements(series as u64));
        let mut ds: Vec<_> = (0..series).map(|s| kind.build(defaults::BASELINE, defaults::WARMUP, s as u64)).collect();
        for t in 0..defaults::BASELINE {
            for (s, d) in ds.iter_mut().enumerate() {
                d.observe(&vector(s, t));
            }
        }
        let mut t = defaults::BASELINE;
        g.bench_function(format!("{}: one window of {series} series", kind.name()), |b| {
            b.iter(|| {
                t += 1;
                for (s, d) in ds.iter_mut().enumerate() {
                    black_box(d.observe(&vector(s, t)));
                }
            })
        });
    }
    for anomalous in [100, SERIES] {
        let points: Vec<Anomalous> = (0..anomalous)
            .map(|s| Anomalous { labels: vec![format!("svc-{}", s % 50), format!("/e{}", s % 7)], score: 0.5 + (s % 10) as f64 / 20.0, moved: vec![6.0, 0.0] })
            .collect();
        g.throughput(Throughput::Elements(anomalous as u64));
        g.bench_function(format!("dbscan: {anomalous} anomalous series"), |b| {
            b.iter_batched(|| points.clone(), |p| black_box(incidents(&p, defaults::EPS, defaults::MIN_POINTS)), BatchSize::LargeInput)
        });
    }
    g.finish();
}

criterion_group!(benches, detectors);
criterion_main!(benches);
