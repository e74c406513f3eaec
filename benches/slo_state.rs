//! SLO state at fleet scale: the heap bytes of the pane store when every series counts events
//! in every minute, the worst steady traffic for it (a series quiet in a minute costs nothing
//! there). The default pairs' windows (5m to 3d) and a 30-day period of 1-minute panes.
//!
//! Two phases, since filling 30 days of 100,000 series takes 4.3 billion counts:
//! - `SERIES` (100,000) series for 3 days and an hour: the longest window's panes, measured whole;
//! - `PERIOD_SERIES` (10,000) series for 30 days and a day: the period's blocks, per series.
//!
//! Prints bytes per series of each and their sum for `SERIES` series (add a few hundred bytes
//! per series for its key and index in the operator).
//!   cargo bench --bench slo_state

use osprey::slo::store::{Counts, Layout, Store, Touched};

const DEFAULT_PANES: [u32; 7] = [5, 30, 60, 120, 360, 1_440, 4_320];

fn fill(series: u32, panes: i64) -> (Store, f64) {
    let layout = Layout::new(DEFAULT_PANES.to_vec(), 43_200);
    let mut store = Store::new(&layout);
    let mut touched = Touched::default();
    let mut x: u64 = 17;
    let started = std::time::Instant::now();
    for p in 0..panes {
        for s in 0..series {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let total = 1 + (x >> 58); // 1 to 64 events a minute
            let bad = u64::from((x >> 20) % 1_000 == 0);
            store.add(s, Counts { bad, total });
        }
        store.advance(&layout, p, &mut touched);
        touched.bad.clear();
        touched.emptier.clear();
        if p % 1_440 == 0 {
            eprintln!("  {series} series: day {} of {}, {:.0} MiB", p / 1_440, panes / 1_440, store.heap_bytes() as f64 / 1048576.0);
        }
    }
    let rate = (series as f64 * panes as f64) / started.elapsed().as_secs_f64();
    (store, rate)
}

fn main() {
    let env = |k: &str, d: u32| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let (series, period_series) = (env("SERIES", 100_000), env("PERIOD_SERIES", 10_000));
    let (ring, rate) = fill(series, 4_320 + 60);
    let ring_bytes = ring.heap_bytes() as f64 / series as f64;
    drop(ring);
    // The period's blocks at 30 days, less what its ring holds (measured above).
    let (period, _) = fill(period_series, 43_200 + 1_440);
    let (small_ring, _) = fill(period_series, 4_320 + 60);
    let block_bytes = (period.heap_bytes() as f64 - small_ring.heap_bytes() as f64) / period_series as f64;
    println!("pane counts per second (add and move): {rate:.0}");
    println!("3-day window of 1-minute panes: {ring_bytes:.0} bytes per series ({series} series)");
    println!("30-day period in 720 blocks:    {block_bytes:.0} bytes per series ({period_series} series)");
    let total = (ring_bytes + block_bytes) * series as f64;
    println!("{series} series counting every minute: {:.0} MiB of pane state", total / 1048576.0);
}
