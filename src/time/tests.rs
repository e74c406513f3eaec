use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Int64Array, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use datafusion::arrow::record_batch::RecordBatch;

use super::*;
use crate::jobfile::{timestamp_type, WindowConfig};

fn batch(rows: &[(Millis, &str, i64)]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("ts", timestamp_type(), true),
        Field::new("k", DataType::Utf8, true),
        Field::new("v", DataType::Int64, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(TimestampMillisecondArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>()).with_timezone("UTC")),
            Arc::new(StringArray::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
            Arc::new(Int64Array::from(rows.iter().map(|r| r.2).collect::<Vec<_>>())),
        ],
    )
    .unwrap()
}

/// (start, end, sorted values, update) of each fired window.
fn summary(fired: &[FiredWindow]) -> Vec<(Millis, Millis, Vec<i64>, bool)> {
    fired
        .iter()
        .map(|w| {
            let mut v: Vec<i64> = w.batches.iter().flat_map(|b| b.column(2).as_primitive::<Int64Type>().values().to_vec()).collect();
            v.sort();
            (w.start, w.end, v, w.update)
        })
        .collect()
}

fn op(window: WindowConfig, delay: Millis, lateness: Millis) -> WindowOperator {
    let keys = if matches!(window, WindowConfig::Session { .. }) { vec![1] } else { vec![] };
    WindowOperator::new(&window, keys, 0, 1, delay, lateness)
}

#[test]
fn tumbling_windows_fire_when_the_watermark_passes_their_end() {
    let mut o = op(WindowConfig::Tumbling { size: 10 }, 0, 0);
    let p = o.process(0, &batch(&[(1, "a", 1), (5, "a", 2), (9, "a", 3)]));
    assert!(p.fired.is_empty(), "nothing is complete before ts 10");
    let p = o.process(0, &batch(&[(10, "a", 4), (12, "a", 5)]));
    assert_eq!(summary(&p.fired), vec![(0, 10, vec![1, 2, 3], false)]);
    assert_eq!(summary(&o.finish()), vec![(10, 20, vec![4, 5], false)]);
}

#[test]
fn out_of_order_records_within_the_delay_land_in_their_window() {
    let mut o = op(WindowConfig::Tumbling { size: 10 }, 5, 0);
    // 12 arrives before 8 and 9; the watermark (12 - 5 = 7) keeps [0, 10) open.
    let p = o.process(0, &batch(&[(2, "a", 1), (12, "a", 2), (8, "a", 3), (9, "a", 4), (16, "a", 5)]));
    assert_eq!(summary(&p.fired), vec![(0, 10, vec![1, 3, 4], false)]);
    assert!(p.late_rows.is_empty());
    assert_eq!(summary(&o.finish()), vec![(10, 20, vec![2, 5], false)]);
}

#[test]
fn records_past_the_lateness_are_returned_as_late() {
    let mut o = op(WindowConfig::Tumbling { size: 10 }, 0, 0);
    let p = o.process(0, &batch(&[(1, "a", 1), (25, "a", 2), (3, "a", 3), (19, "a", 4), (20, "a", 5)]));
    // [0,10) fired at 25; 3 and 19 belong to windows already closed.
    assert_eq!(summary(&p.fired), vec![(0, 10, vec![1], false)]);
    assert_eq!(p.late_rows, vec![2, 3]);
    assert_eq!(summary(&o.finish()), vec![(20, 30, vec![2, 5], false)]);
}

#[test]
fn records_within_the_lateness_update_a_fired_window() {
    let mut o = op(WindowConfig::Tumbling { size: 10 }, 0, 10);
    let p = o.process(0, &batch(&[(1, "a", 1), (12, "a", 2), (4, "a", 3), (25, "a", 4), (5, "a", 5)]));
    // 4 arrives after [0,10) fired at 12: an update. 5 arrives at watermark 25 >= 10 + 10: late.
    assert_eq!(
        summary(&p.fired),
        vec![(0, 10, vec![1], false), (0, 10, vec![1, 3], true), (10, 20, vec![2], false)]
    );
    assert_eq!(p.late_rows, vec![4]);
}

#[test]
fn hopping_windows_share_panes_and_hold_each_row_in_every_window() {
    let mut o = op(WindowConfig::Hopping { size: 10, slide: 5 }, 0, 0);
    let mut fired = o.process(0, &batch(&[(1, "a", 1), (6, "a", 2), (11, "a", 3)])).fired;
    fired.extend(o.finish());
    assert_eq!(
        summary(&fired),
        vec![
            (-5, 5, vec![1], false),
            (0, 10, vec![1, 2], false),
            (5, 15, vec![2, 3], false),
            (10, 20, vec![3], false),
        ]
    );
    assert_eq!(o.buffered_rows(), 0, "every pane is released once its last window fired");
}

#[test]
fn session_windows_split_on_gaps_and_merge_per_key() {
    let mut o = op(WindowConfig::Session { gap: 5, key: vec!["k".into()] }, 0, 0);
    let p = o.process(0, &batch(&[(0, "a", 1), (3, "b", 2), (4, "a", 3), (20, "a", 4), (12, "a", 5), (8, "a", 6)]));
    let mut fired = p.fired;
    fired.extend(o.finish());
    // Key a: 0 and 4 → [0,9). The watermark is 20 when 12 and 8 arrive: their sessions would
    // end at 17 and 13, both passed, and nothing open is near: late. Key b: [3,8).
    assert_eq!(p.late_rows, vec![4, 5]);
    let s = summary(&fired);
    assert_eq!(s.len(), 3, "{s:?}");
    assert!(s.contains(&(0, 9, vec![1, 3], false)), "{s:?}");
    assert!(s.contains(&(3, 8, vec![2], false)), "{s:?}");
    assert!(s.contains(&(20, 25, vec![4], false)), "{s:?}");
}

#[test]
fn session_merges_when_a_record_bridges_two_sessions() {
    let mut o = op(WindowConfig::Session { gap: 5, key: vec![] }, 100, 0);
    o.process(0, &batch(&[(0, "a", 1), (10, "a", 2), (5, "a", 3)]));
    assert_eq!(summary(&o.finish()), vec![(0, 15, vec![1, 2, 3], false)]);
}

#[test]
fn watermark_moves_record_by_record_so_batching_does_not_change_results() {
    let rows: Vec<(Millis, &str, i64)> = (0..200).map(|i| (((i * 7919) % 97 + i) as Millis, "a", i as i64)).collect();
    let run = |chunk: usize| {
        let mut o = op(WindowConfig::Hopping { size: 20, slide: 10 }, 15, 5);
        let mut fired = Vec::new();
        let mut late = Vec::new();
        for (n, part) in rows.chunks(chunk).enumerate() {
            let p = o.process(0, &batch(part));
            fired.extend(p.fired);
            late.extend(p.late_rows.iter().map(|r| n * chunk + *r as usize));
        }
        fired.extend(o.finish());
        (summary(&fired), late)
    };
    let whole = run(200);
    assert!(!whole.1.is_empty(), "the data has late records");
    assert!(whole.0.iter().any(|w| w.3), "and updates");
    for chunk in [1, 3, 64] {
        assert_eq!(run(chunk), whole, "chunks of {chunk}");
    }
}

#[test]
fn operator_state_survives_serialisation() {
    let rows: Vec<(Millis, &str, i64)> = (0..300).map(|i| ((i * 3 + (i % 7) * 5) as Millis, ["a", "b"][i % 2], i as i64)).collect();
    for window in [
        WindowConfig::Tumbling { size: 50 },
        WindowConfig::Hopping { size: 60, slide: 20 },
        WindowConfig::Session { gap: 4, key: vec!["k".into()] },
    ] {
        let mut straight = op(window.clone(), 10, 5);
        let mut expected = straight.process(0, &batch(&rows)).fired;
        expected.extend(straight.finish());

        let mut first = op(window.clone(), 10, 5);
        let mut got = first.process(0, &batch(&rows[..150])).fired;
        let bytes = crate::state::to_bytes(&first).unwrap();
        drop(first);
        let mut restored: WindowOperator = crate::state::from_bytes(&bytes).unwrap();
        got.extend(restored.process(0, &batch(&rows[150..])).fired);
        got.extend(restored.finish());
        assert_eq!(summary(&got), summary(&expected), "{window:?}");
    }
}

#[test]
fn a_fired_window_carries_its_rows_untouched() {
    let mut o = op(WindowConfig::Tumbling { size: 10 }, 0, 0);
    o.process(0, &batch(&[(1, "x", 7)]));
    let w = &o.finish()[0];
    let b = &w.batches[0];
    assert_eq!(b.column(1).as_string::<i32>().value(0), "x");
    assert!(b.column(0).is_valid(0));
}

/// A second stage: partition 1 comes to this process (a rebalance) while partition 0 carried
/// the watermark far ahead. Its records, read from its commit, are its groups' only ones: they
/// are judged by partition 1's own clock, and their windows fire when that clock passes them,
/// each once and whole; records behind its own clock are still late; caught up, it joins the
/// job's windows.
#[test]
fn a_second_stage_partition_handed_over_late_is_judged_by_its_own_clock_until_it_catches_up() {
    let mut o = WindowOperator::new(&WindowConfig::Tumbling { size: 10 }, vec![], 0, 2, 0, 0);
    o.set_external_clock();
    o.drop_partitions(&[0, 1], 1_000); // every partition starts revoked (no rows: the column is not read)
    o.assign(&[0]);
    o.watermarks_mut().advance(0, 5);
    assert!(o.process(0, &batch(&[(1, "a", 1), (12, "a", 2)])).late_rows.is_empty());
    o.watermarks_mut().advance(0, 40);
    assert_eq!(summary(&o.fire()), vec![(0, 10, vec![1], false), (10, 20, vec![2], false)], "partition 1 is not this process's: it holds nothing");
    o.assign(&[1]);
    o.watermarks_mut().caught_up(1);
    assert_eq!(o.watermark_for(1), Millis::MIN, "nothing heard of partition 1 yet, read to its end or not");
    let p = o.process(1, &batch(&[(3, "b", 10), (14, "b", 11), (15, "b", 12)]));
    assert!(p.late_rows.is_empty() && p.fired.is_empty(), "behind the job's watermark, not behind its own clock");
    o.watermarks_mut().advance(1, 12);
    assert_eq!(summary(&o.fire()), vec![(0, 10, vec![10], false)], "[10, 20) waits for partition 1's clock");
    let p = o.process(1, &batch(&[(8, "b", 13), (19, "b", 14), (45, "b", 15)]));
    assert_eq!(p.late_rows, vec![0], "behind partition 1's own clock: late");
    o.process(0, &batch(&[(41, "a", 3)]));
    o.watermarks_mut().advance(1, 44);
    assert_eq!(summary(&o.fire()), vec![(10, 20, vec![11, 12, 14], false)]);
    assert_eq!(o.watermark_for(1), 40, "caught up: judged by the job's watermark again");
    o.watermarks_mut().advance(0, 50);
    o.watermarks_mut().advance(1, 50);
    assert_eq!(summary(&o.fire()), vec![(40, 50, vec![3, 15], false)], "one window again, both partitions' rows");
    // No record on partition 1 for an hour of wall clock: its markers speak for it, not idleness.
    o.watermarks_mut().advance(0, 90);
    let (now, hour) = (std::time::Instant::now(), std::time::Duration::from_secs(3600));
    assert_eq!(o.watermarks_mut().mark_idle(now + hour, now, std::time::Duration::from_secs(1)), 50);
    // A fresh second stage: partition 1 is read to its end before its first records come.
    let mut o = WindowOperator::new(&WindowConfig::Tumbling { size: 10 }, vec![], 0, 2, 0, 0);
    o.set_external_clock();
    o.drop_partitions(&[0, 1], 1_000);
    o.assign(&[0]);
    o.assign(&[1]);
    o.watermarks_mut().caught_up(1);
    assert_eq!(o.watermarks_mut().advance(0, 500), Millis::MIN, "partition 1 still holds the watermark");
}

/// A restored second stage whose partitions' clocks are apart (0 and 2 ahead of 1, whose window
/// holds one row): its source says every partition is revoked before the group's first
/// assignment, then assigns them all. Taken one by one, the last partition revoked (or the first
/// assigned) counted alone and carried the watermark to its clock; partition 1's window then
/// fired with its one restored row, and the rest of its records made a second window.
#[test]
fn a_restored_second_stage_revoked_and_assigned_whole_keeps_the_watermark_at_its_least_clock() {
    let mut o = WindowOperator::new(&WindowConfig::Tumbling { size: 10 }, vec![], 0, 3, 0, 0);
    o.set_external_clock();
    o.assign(&[0, 1, 2]);
    for (p, w) in [(0, 40), (1, 5), (2, 30)] {
        o.watermarks_mut().advance(p, w);
    }
    assert!(o.process(1, &batch(&[(7, "b", 1)])).late_rows.is_empty());
    assert!(o.fire().is_empty());
    let mut o: WindowOperator = crate::state::from_bytes(&crate::state::to_bytes(&o).unwrap()).unwrap();
    o.set_external_clock();
    o.watermarks_mut().deactivate(&[0, 1, 2]);
    assert_eq!((o.watermark(), summary(&o.fire())), (5, vec![]), "every partition revoked: nothing moves");
    o.assign(&[0, 1, 2]);
    assert_eq!((o.watermark(), summary(&o.fire())), (5, vec![]), "assigned again: partition 1 holds it");
    o.process(1, &batch(&[(8, "b", 2)]));
    o.watermarks_mut().advance(1, 12);
    assert_eq!(summary(&o.fire()), vec![(0, 10, vec![1, 2], false)], "one window, whole");
}

/// A second stage judges a record by the clocks told on its own internal partition before it,
/// as its first stage saw it, also while another internal partition has told nothing yet and
/// holds the job's watermark at nothing: a record an hour late is late, not a window of its own.
#[test]
fn a_second_stage_judges_a_record_by_the_clock_told_on_its_own_partition() {
    let mut o = WindowOperator::new(&WindowConfig::Tumbling { size: 10 }, vec![], 0, 2, 0, 0);
    o.set_external_clock();
    o.assign(&[0, 1]);
    o.watermarks_mut().advance(0, 3_600_000);
    assert_eq!(o.watermark(), Millis::MIN, "partition 1 has told nothing");
    let p = o.process(0, &batch(&[(5, "a", 1), (3_600_005, "a", 2)]));
    assert_eq!(p.late_rows, vec![0], "an hour behind partition 0's clock");
    assert!(o.process(1, &batch(&[(7, "b", 3)])).late_rows.is_empty(), "partition 1 has no clock to be late by");
    o.watermarks_mut().advance(1, 3_600_000);
    assert_eq!(summary(&o.fire()), vec![(0, 10, vec![3], false)]);
}

/// The windows to feed after a batch are those it gave rows to and those the stream passed
/// the end of since last asked, never all that are open: open windows are many when the
/// watermark delay spans many of them.
#[test]
fn windows_to_feed_are_those_a_batch_touched_or_the_stream_passed() {
    let mut o = op(WindowConfig::Tumbling { size: 1000 }, 10_000, 0);
    let starts = |o: &mut WindowOperator, passed| o.take_touched(passed).iter().map(|w| (w.0, w.2.len())).collect::<Vec<_>>();
    o.process(0, &batch(&[(100, "a", 1), (1_500, "a", 2), (2_100, "a", 3)]));
    assert_eq!(starts(&mut o, (Millis::MIN, 0)), vec![(0, 1), (1_000, 1), (2_000, 1)]);
    o.process(0, &batch(&[(2_200, "a", 4), (5_000, "a", 5)]));
    assert_eq!(starts(&mut o, (0, 0)), vec![(2_000, 2), (5_000, 1)], "touched only");
    assert_eq!(starts(&mut o, (0, 0)), vec![], "nothing new");
    assert_eq!(starts(&mut o, (0, 2_000)), vec![(0, 1), (1_000, 1)], "passed: windows ending in (0, 2000]");
    o.process(0, &batch(&[(30_000, "a", 6)]));
    assert!(!o.take_touched((2_000, 30_000)).iter().any(|w| w.0 < 20_000), "fired windows are not fed");
}
