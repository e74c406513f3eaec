//! The alert stage with 100,000 active fingerprints: observations and transitions per second
//! through lifecycle, inhibition, storm limit and grouping, against a baseline that only
//! hashes each label set into a map (the least any alerting must do), in the same process.
//! Also prints the heap bytes the stage holds per fingerprint.

use std::alloc::{GlobalAlloc, Layout};
use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use osprey::alert::{fingerprint, AlertStage, AlertsConfig, Observation};

/// mimalloc, as the binary uses, counting live heap bytes.
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);
static INNER: mimalloc::MiMalloc = mimalloc::MiMalloc;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Relaxed);
        unsafe { INNER.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Relaxed);
        unsafe { INNER.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Relaxed);
        unsafe { INNER.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const KEYS: usize = 100_000;

fn observations(range: std::ops::Range<usize>) -> Vec<Observation> {
    range
        .map(|i| Observation {
            rule: "position".into(),
            severity: if i % 10 == 0 { "page".into() } else { "ticket".into() },
            labels: BTreeMap::from([("account".to_string(), format!("ACC-{}", i % 1000)), ("symbol".to_string(), format!("S{}", i / 1000))]).into(),
            annotations: Default::default(),
            value: (i as i64).into(),
            threshold: 10_000.into(),
            evidence: serde_json::Value::Null,
            deferred: None,
            fingerprint: None,
        })
        .collect()
}

fn stage() -> AlertStage {
    let mut c = AlertsConfig::defaults(false);
    c.stdout = false;
    c.storm_limit = 0;
    AlertStage::new("bench", "invariant", &c, None).unwrap()
}

fn bench(c: &mut Criterion) {
    // Heap per fingerprint: the stage with 100,000 firing alerts, minus the empty stage.
    let all = observations(0..KEYS);
    let before = LIVE.load(Relaxed);
    let mut s = stage();
    s.evaluate(60_000, all.clone()).unwrap();
    let held = LIVE.load(Relaxed) - before;
    let serialized = osprey::state::to_bytes(s.state()).unwrap().len();
    eprintln!(
        "alert stage state: {} heap bytes per fingerprint ({} serialised), {} fingerprints",
        held / KEYS as isize,
        serialized / KEYS,
        KEYS
    );

    let mut g = c.benchmark_group("alert_stage_100k");
    g.throughput(Throughput::Elements(KEYS as u64));
    g.sample_size(10);
    // Every alert keeps firing: each evaluation is 100,000 deduplicated observations.
    let mut t = 120_000;
    g.bench_function("steady", |b| {
        b.iter_batched(
            || all.clone(),
            |obs| {
                t += 60_000;
                black_box(s.evaluate(t, obs).unwrap().len())
            },
            BatchSize::LargeInput,
        )
    });
    // Half the alerts flip each evaluation: 100,000 transitions per evaluation.
    let halves = [observations(0..KEYS / 2), observations(KEYS / 2..KEYS)];
    let mut flip = 0;
    g.bench_function("flapping", |b| {
        b.iter_batched(
            || {
                flip += 1;
                halves[flip % 2].clone()
            },
            |obs| {
                t += 60_000;
                black_box(s.evaluate(t, obs).unwrap().len())
            },
            BatchSize::LargeInput,
        )
    });
    // Baseline: fingerprint each label set and upsert it in a hash map.
    let mut map: HashMap<String, u64> = HashMap::new();
    g.bench_function("baseline_hash_upsert", |b| {
        b.iter_batched(
            || all.clone(),
            |obs| {
                for o in obs {
                    let labels: &BTreeMap<String, String> = &o.labels;
                    *map.entry(fingerprint("bench", &o.rule, labels)).or_default() += 1;
                }
                black_box(map.len())
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
