//! Incremental tumbling windows: a live window's rows go through its SQL as they come, so
//! that when the watermark closes it only the last rows and the result are left to run.
//!
//! A window's SQL over all its rows costs what its rows cost, and it ran at the close: twenty
//! jobs closing the same second each ran a second of rows at that moment (5-10 ms each), and
//! the last one's output waited for all of them. Here each open window has an execution of
//! the job's plan of its own, whose scan reads a [`Feed`]: the rows a window gathers are
//! pushed to it in chunks while it is open, and the execution is polled until it has taken
//! them (an aggregation updates its groups row by row and waits for more). The close pushes
//! what is left, ends the feed and collects the result.
//!
//! It is the same plan over the same rows in the same order, so the result is the same, float
//! sums and `count(DISTINCT)` included: only plans whose operators consume input as it comes,
//! whatever its cut, are fed ([`table::Replanner::not_feedable`]); a job whose approximate
//! percentiles depend on the cut, a join or a subquery (which would see part of the rows), a
//! hopping or session window, run whole at the close as before. A window updated by late
//! rows, a window whose rows are no longer the ones fed (partitions taken away), a restored
//! checkpoint (open executions are not saved: the window's rows are) also run whole.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::task::Poll;

use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::physical_plan::SendableRecordBatchStream;
use futures::StreamExt;

use super::table::Feed;
use super::{with_window_columns, WindowQuery};
use crate::jobfile::{Dataflow, WindowConfig};
use crate::time::FiredWindow;
use crate::Millis;

/// A window's rows not fed yet are pushed once there are this many: fewer would cost more per
/// batch than per row in the aggregation (what a live poll brings is often a few records).
pub const FEED_ROWS: usize = 4096;

/// Open windows fed at most at once: each holds an execution and its groups, so a job whose
/// watermark delay spans thousands of its windows feeds the first ones and runs the rest whole.
const MAX_OPEN: usize = 64;

/// A tumbling window's SQL, fed while the window is open or run whole at its close.
pub struct IncrementalQuery {
    whole: WindowQuery,
    /// Open windows' executions, by start.
    open: BTreeMap<Millis, Open>,
    chunks_fed: u64,
    closed_from_feeds: u64,
}

/// One open window's execution.
struct Open {
    feed: Arc<Feed>,
    stream: SendableRecordBatchStream,
    /// What it gave so far (an aggregation gives nothing before its input ends).
    out: Vec<RecordBatch>,
    ended: bool,
    /// The batches fed, each by its first column's address: a window's batch list only grows
    /// while it is open, so they are its first, in this order (checked).
    fed: Vec<usize>,
    /// The stream has passed the window's end and its rows so far were fed: stragglers wait
    /// for [`FEED_ROWS`] or the close.
    passed: bool,
}

/// A batch's identity while the window holds it.
fn identity(b: &RecordBatch) -> usize {
    Arc::as_ptr(b.column(0)) as *const u8 as usize
}

impl IncrementalQuery {
    /// `whole` fed as its windows' rows come, or why it runs whole at the close.
    pub fn plan(job: &Dataflow, whole: WindowQuery) -> Result<IncrementalQuery, (WindowQuery, String)> {
        let why = if !matches!(job.window, WindowConfig::Tumbling { .. }) {
            Some("only tumbling windows are fed as their rows come".to_string())
        } else if whole.one_batch {
            Some("an approximate percentile is built from all of a window's values at once".into())
        } else {
            whole.replanner.not_feedable()
        };
        match why {
            Some(why) => Err((whole, why)),
            None => Ok(IncrementalQuery { whole, open: BTreeMap::new(), chunks_fed: 0, closed_from_feeds: 0 }),
        }
    }

    pub fn whole(&self) -> &WindowQuery {
        &self.whole
    }

    /// Feed the open window `[start, end)` what it holds beyond what was fed, when that is
    /// [`FEED_ROWS`] or more, or when `passed` (the stream's latest event time is past the
    /// window's end: it holds most of what it will) and it was not fed so since. An error
    /// leaves the window to run whole at its close, where the SQL's error is reported.
    pub fn feed(&mut self, start: Millis, end: Millis, batches: &[RecordBatch], passed: bool) {
        if self.open.get(&start).is_some_and(|o| !same_prefix(&o.fed, batches)) {
            self.open.remove(&start);
        }
        let fed = self.open.get(&start).map_or(0, |o| o.fed.len());
        let new = &batches[fed..];
        if new.iter().any(|b| b.num_columns() == 0) {
            return; // no identity to check them by
        }
        let rows: usize = new.iter().map(|b| b.num_rows()).sum();
        let now_passed = passed && !self.open.get(&start).is_some_and(|o| o.passed);
        if rows == 0 || (rows < FEED_ROWS && !now_passed) {
            return;
        }
        if !self.open.contains_key(&start) {
            if self.open.len() >= MAX_OPEN {
                return;
            }
            match self.start() {
                Some(open) => self.open.insert(start, open),
                None => return,
            };
        }
        let open = self.open.get_mut(&start).expect("opened");
        let pushed = push(&self.whole, open, new, start, end).and_then(|()| drive(&self.whole, open));
        if pushed.is_err() {
            self.open.remove(&start);
            return;
        }
        open.fed.extend(new.iter().map(identity));
        open.passed |= passed;
        self.chunks_fed += 1;
    }

    /// A fresh execution of the plan, reading a feed of its own.
    fn start(&self) -> Option<Open> {
        let feed = Arc::new(Feed::default());
        let plan = self.whole.replanner.fed(&feed).ok()??;
        let _runtime = self.whole.runtime.enter();
        let stream = plan.execute(0, self.whole.state.task_ctx()).ok()?;
        Some(Open { feed, stream, out: Vec::new(), ended: false, fed: Vec::new(), passed: false })
    }

    /// Forget every open execution (the window state lost rows: partitions taken away).
    pub fn forget(&mut self) {
        self.open.clear();
    }

    /// The SQL's result over a fired window: its execution's, when that was fed the window's
    /// first batches; else over all its rows.
    pub fn run(&mut self, window: &FiredWindow) -> datafusion::error::Result<Vec<RecordBatch>> {
        // Windows fire in order of end: executions of windows starting before this one are stale.
        self.open = self.open.split_off(&window.start);
        let open = self.open.remove(&window.start).filter(|o| window.revision == 0 && same_prefix(&o.fed, &window.batches));
        let Some(mut open) = open else { return self.whole.run(window) };
        let rest = &window.batches[open.fed.len()..];
        if rest.iter().any(|b| b.num_rows() > 0) {
            push(&self.whole, &mut open, rest, window.start, window.end)?;
        }
        open.feed.close();
        if !open.ended {
            let Open { stream, out, .. } = &mut open;
            self.whole.runtime.block_on(async {
                while let Some(b) = stream.next().await {
                    out.push(b?);
                }
                Ok::<_, datafusion::error::DataFusionError>(())
            })?;
        }
        self.closed_from_feeds += 1;
        Ok(open.out)
    }

    /// Counters for the run's summary.
    pub fn stats(&self) -> Vec<(&'static str, u64)> {
        vec![("chunks fed to open windows", self.chunks_fed), ("windows closed from their feeds", self.closed_from_feeds)]
    }
}

/// Push `batches` (as one batch, with the window columns) to an open window's feed.
fn push(whole: &WindowQuery, open: &mut Open, batches: &[RecordBatch], start: Millis, end: Millis) -> datafusion::error::Result<()> {
    let given: Vec<&RecordBatch> = batches.iter().filter(|b| b.num_rows() > 0).collect();
    let Some(first) = given.first() else { return Ok(()) };
    let one = if given.len() == 1 { (*first).clone() } else { concat_batches(&first.schema(), given.iter().copied())? };
    open.feed.push(with_window_columns(&one, &whole.visible, &whole.input_schema, start, end)?);
    Ok(())
}

/// Poll an open window's execution until it has taken what was pushed (it then waits for more).
fn drive(whole: &WindowQuery, open: &mut Open) -> datafusion::error::Result<()> {
    if open.ended {
        return Ok(());
    }
    let Open { stream, out, ended, .. } = open;
    whole.runtime.block_on(futures::future::poll_fn(|cx| loop {
        match stream.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(b))) => out.push(b),
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
            Poll::Ready(None) => {
                *ended = true;
                return Poll::Ready(Ok(()));
            }
            Poll::Pending => return Poll::Ready(Ok(())),
        }
    }))
}

/// Whether `fed` names the first batches of `batches`, in order.
fn same_prefix(fed: &[usize], batches: &[RecordBatch]) -> bool {
    fed.len() <= batches.len() && fed.iter().zip(batches).all(|(&id, b)| id == identity(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray, TimestampMillisecondArray};
    use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};

    fn job(sql: &str, window: &str) -> Dataflow {
        let text = format!(
            r#"name = "w"
sql = "{sql}"
[source]
kind = "file"
path = "x.jsonl"
[source.schema]
ts = "timestamp"
service = "string"
bytes = "int64"
ms = "float64"
ok = "bool"
[event_time]
column = "ts"
[window]
{window}
"#
        );
        crate::job::parse(std::path::Path::new("w.toml"), &text).unwrap().dataflow()
    }

    const TUMBLING: &str = "kind = \"tumbling\"\nsize = \"1s\"";

    /// Rows `from..to` of one second: five services, some null byte counts.
    fn batch(schema: &SchemaRef, from: usize, to: usize) -> RecordBatch {
        let services = ["checkout", "frontend", "inventory", "payments", "search"];
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| -> ArrayRef {
                match (f.name().as_str(), f.data_type()) {
                    ("service", _) => Arc::new(StringArray::from_iter_values((from..to).map(|i| services[(i * 7 + i / 13) % 5]))),
                    ("bytes", _) => Arc::new(Int64Array::from_iter((from..to).map(|i| (i % 17 != 0).then_some((i * 31 % 1000) as i64)))),
                    ("ms", _) => Arc::new(Float64Array::from_iter_values((from..to).map(|i| 0.1 + (i as f64).sqrt()))),
                    ("ok", _) => Arc::new(BooleanArray::from_iter((from..to).map(|i| Some(i % 11 != 0)))),
                    (_, DataType::Timestamp(TimeUnit::Millisecond, tz)) => {
                        Arc::new(TimestampMillisecondArray::from_iter_values((from..to).map(|i| (i % 1000) as i64)).with_timezone_opt(tz.clone()))
                    }
                    (_, other) => datafusion::arrow::array::new_null_array(other, to - from),
                }
            })
            .collect();
        RecordBatch::try_new(schema.clone(), columns).unwrap()
    }

    fn lines(batches: &[RecordBatch]) -> Vec<String> {
        let mut out = Vec::new();
        for b in batches {
            crate::output::json::write_rows(b, &mut out);
        }
        String::from_utf8(out).unwrap().lines().map(String::from).collect()
    }

    fn window(batches: Vec<RecordBatch>) -> FiredWindow {
        FiredWindow { start: 0, end: 1000, key: Vec::new(), batches, update: false, revision: 0 }
    }

    /// A window fed in chunks as its batches come gives the rows, in the order, that its SQL
    /// over all of them gives (float sums to the last bit), however the batches are cut and
    /// whenever they were fed; and so does a window whose rows are no longer those fed.
    #[test]
    fn a_window_fed_as_it_comes_gives_the_rows_of_its_sql_over_all_of_them() {
        let sqls = [
            "SELECT window_start, service, count(*) AS n, sum(bytes) AS bytes, min(ms) AS fastest, max(ms) AS slowest, sum(ms) AS total_ms, avg(ms) AS mean_ms FROM events GROUP BY window_start, window_end, service",
            "SELECT service, median(ms) AS median_ms, count(DISTINCT bytes) AS sizes, stddev(ms) AS sd FROM events GROUP BY service ORDER BY service",
            "SELECT service, count(*) AS n FROM events WHERE bytes % 3 = 0 GROUP BY service HAVING count(*) > 10 ORDER BY n DESC",
            "SELECT count(*) AS n, max(bytes) AS top, bool_or(ok) AS any_ok FROM events WHERE service = 'nothing'",
            "SELECT window_end, service, bool_and(ok) AS all_ok, sum(bytes) - min(bytes) AS spread, count(bytes) AS counted FROM events GROUP BY window_end, service",
        ];
        let rows = 40_000;
        let mut seed = 7u64;
        let mut next = move |n: usize| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as usize % n
        };
        for sql in sqls {
            let flow = job(sql, TUMBLING);
            let schema = crate::decode::Decoder::new(&flow).schema();
            let whole = WindowQuery::plan(&flow).unwrap();
            let mut q = IncrementalQuery::plan(&flow, WindowQuery::plan(&flow).unwrap()).unwrap_or_else(|(_, why)| panic!("{sql}: {why}"));
            for round in 0..4 {
                let mut batches = Vec::new();
                let mut at = 0;
                while at < rows {
                    let cut = [1, 50, 700, 5_000, 9_000][next(5)];
                    batches.push(batch(&schema, at, (at + cut).min(rows)));
                    at += cut;
                    q.feed(0, 1000, &batches, next(4) == 0);
                }
                if round == 3 {
                    batches.remove(batches.len() / 2); // rows taken away after they were fed
                }
                let expected = lines(&whole.run(&window(batches.clone())).unwrap());
                assert!(!expected.is_empty(), "{sql}");
                assert_eq!(lines(&q.run(&window(batches)).unwrap()), expected, "{sql}, round {round}");
            }
            assert!(q.closed_from_feeds == 3 && q.chunks_fed > 4, "{sql}: {} chunks fed, {} windows closed from feeds", q.chunks_fed, q.closed_from_feeds);
        }
    }

    /// SQL whose result depends on how its rows are cut, that reads them other than once or
    /// aggregates nothing, and windows other than tumbling ones, run whole.
    #[test]
    fn sql_whose_result_depends_on_the_cut_runs_whole() {
        let refused = [
            ("SELECT service, approx_percentile_cont(ms, 0.99) AS p FROM events GROUP BY service", TUMBLING, "percentile"),
            ("SELECT service, count(*) AS n FROM events WHERE bytes > (SELECT avg(bytes) FROM events) GROUP BY service", TUMBLING, "made again"),
            ("SELECT service, ms FROM events", TUMBLING, "aggregates nothing"),
            ("SELECT service, count(*) AS n FROM events GROUP BY service", "kind = \"hopping\"\nsize = \"2s\"\nslide = \"1s\"", "tumbling"),
        ];
        for (sql, window, why) in refused {
            let flow = job(sql, window);
            match IncrementalQuery::plan(&flow, WindowQuery::plan(&flow).unwrap()) {
                Ok(_) => panic!("{sql} was fed"),
                Err((_, reason)) => assert!(reason.contains(why), "{sql}: {reason}"),
            }
        }
    }
}
