//! The streaming engine against an independent batch computation: every row at once through
//! DataFusion with an explicit window column, compared window by window.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::file_format::options::JsonReadOptions;
use datafusion::prelude::SessionContext;
use osprey::pipeline::{Options, Pipeline};
use osprey::source::file::FileSource;
use osprey::source::generator::{write_json_lines, GeneratorConfig, Stream};
use serde_json::Value;

/// Generated requests, delivered out of order (up to 2 s) across 3 partitions, in one file.
fn generated(dir: &Path, events: u64, seed: u64) -> PathBuf {
    let mut cfg = GeneratorConfig::new(Stream::HttpRequests);
    cfg.rate = 50.0;
    cfg.seed = seed;
    cfg.max_delay = 2_000;
    let path = dir.join("requests.jsonl");
    let mut out = Vec::new();
    write_json_lines(cfg, events, &mut out).unwrap();
    std::fs::write(&path, out).unwrap();
    path
}

fn job(dir: &Path, window: &str, sql: &str) -> osprey::job::Job {
    let text = format!(
        r#"name = "check"
sql = """
{sql}
"""
[source]
kind = "file"
path = "requests.jsonl"
[source.schema]
ts = "timestamp"
service = "string"
status = "int64"
duration_ms = "float64"
bytes = "int64"
host = "string"
[event_time]
column = "ts"
watermark_delay = "3s"
[window]
{window}
"#
    );
    let path = dir.join("check.toml");
    std::fs::write(&path, text).unwrap();
    osprey::plan::validate(&path).unwrap()
}

/// Run the job over `input` and return its JSON rows in output order.
fn stream(job: &osprey::job::Job, input: &str, chunk_bytes: usize) -> Vec<Value> {
    stream_with(job, input, chunk_bytes, Options::replay().decode_threads)
}

fn stream_with(job: &osprey::job::Job, input: &str, chunk_bytes: usize, decode_threads: usize) -> Vec<Value> {
    let out = job.path.with_extension("out.jsonl");
    let source = FileSource::open(input, osprey::job::FileFormat::Auto).unwrap().with_chunk_bytes(chunk_bytes);
    let sink = osprey::sink::build(job, Some(&out), None).unwrap();
    let options = Options { decode_threads, ..Options::replay() };
    // Each run its own dead-letter and late files: runs in parallel may not share one.
    let mut job = job.clone();
    job.dead_letter = osprey::job::RouteConfig::File(job.path.with_extension("dlq.jsonl"));
    job.late = osprey::job::RouteConfig::File(job.path.with_extension("late.jsonl"));
    let summary = Pipeline::new(job, Box::new(source), sink, options).unwrap().run().unwrap();
    assert_eq!(summary.counters.late_records, 0, "the watermark delay covers the disorder");
    assert_eq!(summary.counters.decode_errors, 0);
    std::fs::read_to_string(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The same aggregate computed by DataFusion over the whole file at once.
fn batch(file: &Path, sql: &str) -> Vec<Value> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ctx = SessionContext::new();
        let schema = Schema::new(vec![
            Field::new("ts", DataType::Utf8, true),
            Field::new("service", DataType::Utf8, true),
            Field::new("status", DataType::Int64, true),
            Field::new("duration_ms", DataType::Float64, true),
            Field::new("bytes", DataType::Int64, true),
            Field::new("host", DataType::Utf8, true),
        ]);
        let options = JsonReadOptions::default().schema(&schema).file_extension(".jsonl");
        ctx.register_json("raw", file.to_str().unwrap(), options).await.unwrap();
        ctx.sql("CREATE VIEW events_all AS SELECT * EXCLUDE (ts), to_timestamp_millis(ts) AS ts FROM raw").await.unwrap();
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let mut out = Vec::new();
        for b in &batches {
            osprey::output::json::write_rows(b, &mut out);
        }
        String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    })
}

/// Rows grouped by window, each window's rows sorted, for a comparison that ignores row order
/// within a window.
fn by_window(rows: Vec<Value>) -> BTreeMap<(String, String), Vec<String>> {
    let mut m: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for r in rows {
        let key = (r["window_start"].as_str().unwrap().to_string(), r["window_end"].as_str().unwrap().to_string());
        m.entry(key).or_default().push(r.to_string());
    }
    for v in m.values_mut() {
        v.sort();
    }
    m
}

const MEASURES: &str = "count(*) AS requests, sum(CASE WHEN status >= 500 THEN 1 ELSE 0 END) AS errors, \
    sum(bytes) AS bytes, min(duration_ms) AS fastest, max(duration_ms) AS slowest, count(DISTINCT host) AS hosts";

#[test]
fn tumbling_stream_equals_batch() {
    let dir = tempfile::tempdir().unwrap();
    let file = generated(dir.path(), 20_000, 1);
    let sql = format!("SELECT window_start, window_end, service, {MEASURES} FROM events GROUP BY window_start, window_end, service");
    let j = job(dir.path(), "kind = \"tumbling\"\nsize = \"1m\"", &sql);
    let streamed = stream(&j, file.to_str().unwrap(), 64 << 10);
    let expected = batch(
        &file,
        &format!(
            "SELECT date_bin(INTERVAL '1 minute', ts, TIMESTAMP '1970-01-01T00:00:00Z') AS window_start, \
             date_bin(INTERVAL '1 minute', ts, TIMESTAMP '1970-01-01T00:00:00Z') + INTERVAL '1 minute' AS window_end, \
             service, {MEASURES} FROM events_all GROUP BY 1, 2, service"
        ),
    );
    assert!(expected.len() > 20, "several windows: {}", expected.len());
    assert_eq!(by_window(streamed.clone()), by_window(expected));
    // Windows come out in order of their end.
    let ends: Vec<&str> = streamed.iter().map(|r| r["window_end"].as_str().unwrap()).collect();
    assert!(ends.windows(2).all(|w| w[0] <= w[1]));
}

#[test]
fn hopping_stream_equals_batch() {
    let dir = tempfile::tempdir().unwrap();
    let file = generated(dir.path(), 12_000, 2);
    let sql = format!("SELECT window_start, window_end, service, {MEASURES} FROM events GROUP BY window_start, window_end, service");
    let j = job(dir.path(), "kind = \"hopping\"\nsize = \"3m\"\nslide = \"1m\"", &sql);
    let streamed = stream(&j, file.to_str().unwrap(), 32 << 10);
    // Each row is in the three windows that start at its minute and the two before.
    let unions: Vec<String> = (0..3)
        .map(|i| {
            format!(
                "SELECT *, date_bin(INTERVAL '1 minute', ts, TIMESTAMP '1970-01-01T00:00:00Z') - INTERVAL '{i} minutes' AS window_start FROM events_all"
            )
        })
        .collect();
    let expected = batch(
        &file,
        &format!(
            "SELECT window_start, window_start + INTERVAL '3 minutes' AS window_end, service, {MEASURES} \
             FROM ({}) GROUP BY window_start, service",
            unions.join(" UNION ALL ")
        ),
    );
    assert_eq!(by_window(streamed), by_window(expected));
}

#[test]
fn session_stream_equals_batch() {
    let dir = tempfile::tempdir().unwrap();
    let file = generated(dir.path(), 6_000, 3);
    // Sessions per host with a gap of 1 s: with ~50 events/s over 15 hosts, many short sessions.
    let sql = "SELECT window_start, window_end, host, count(*) AS requests, sum(bytes) AS bytes FROM events GROUP BY window_start, window_end, host";
    let j = job(dir.path(), "kind = \"session\"\ngap = \"1s\"\nkey = [\"host\"]", sql);
    let streamed = stream(&j, file.to_str().unwrap(), 16 << 10);
    // Gaps and islands: a new session starts where the gap to the previous event exceeds 1 s.
    let expected = batch(
        &file,
        "WITH marked AS (
            SELECT *, CASE WHEN ts - lag(ts) OVER (PARTITION BY host ORDER BY ts) <= INTERVAL '1 second' THEN 0 ELSE 1 END AS starts
            FROM events_all),
         numbered AS (
            SELECT *, sum(starts) OVER (PARTITION BY host ORDER BY ts ROWS UNBOUNDED PRECEDING) AS session FROM marked)
         SELECT min(ts) AS window_start, max(ts) + INTERVAL '1 second' AS window_end, host, count(*) AS requests, sum(bytes) AS bytes
         FROM numbered GROUP BY host, session",
    );
    assert!(expected.len() > 100, "many sessions: {}", expected.len());
    assert_eq!(by_window(streamed), by_window(expected));
}

#[test]
fn decode_threads_and_chunk_sizes_do_not_change_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let file = generated(dir.path(), 8_000, 4);
    // Row-level output in the order the engine produced it: the strictest comparison.
    let sql = "SELECT window_start, service, status, bytes FROM events";
    let j = job(dir.path(), "kind = \"tumbling\"\nsize = \"1m\"", sql);
    let path = file.to_str().unwrap();
    let reference = stream_with(&j, path, 64 << 10, 0);
    assert_eq!(reference.len(), 8_000);
    for (chunk, threads) in [(64 << 10, 3), (7_777, 2), (1 << 20, 1)] {
        assert_eq!(stream_with(&j, path, chunk, threads), reference, "chunk {chunk}, {threads} decode threads");
    }
}

/// A file source that answers `Idle` at pseudo-random polls, as a Kafka replay does while a
/// fetch is slow or the broker is away.
struct Stalling {
    inner: FileSource,
    state: u64,
}

impl osprey::source::Source for Stalling {
    fn partitions(&self) -> &[osprey::source::PartitionInfo] {
        self.inner.partitions()
    }
    fn poll(&mut self, watermarks: &[osprey::Millis]) -> anyhow::Result<osprey::source::Poll> {
        self.state = self.state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        if (self.state >> 33) % 3 == 0 {
            return Ok(osprey::source::Poll::Idle);
        }
        self.inner.poll(watermarks)
    }
    fn is_bounded(&self) -> bool {
        true
    }
}

/// A replay whose source stalls now and then (slow fetches, a broker away) gives the same
/// rows in the same order as one that never waits: which partition is read next does not
/// depend on how far the pipeline got meanwhile.
#[test]
fn a_replay_whose_source_stalls_gives_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let file = generated(dir.path(), 30_000, 12);
    let text = std::fs::read_to_string(&file).unwrap();
    let parts = dir.path().join("parts");
    std::fs::create_dir(&parts).unwrap();
    let mut thirds = [String::new(), String::new(), String::new()];
    for (i, line) in text.lines().enumerate() {
        thirds[i % 3].push_str(line);
        thirds[i % 3].push('\n');
    }
    for (i, t) in thirds.iter().enumerate() {
        std::fs::write(parts.join(format!("{i}.jsonl")), t).unwrap();
    }
    // No ORDER BY: row order inside a window follows the order chunks were read in.
    let sql = "SELECT window_start, service, count(*) AS n, \
        approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms) AS p99 FROM events GROUP BY window_start, service";
    let j = job(dir.path(), "kind = \"tumbling\"\nsize = \"1m\"", sql);
    let run = |stall: bool| {
        let input = parts.join("*.jsonl");
        let inner = FileSource::open(input.to_str().unwrap(), osprey::job::FileFormat::Auto).unwrap().with_chunk_bytes(16 << 10);
        let out = dir.path().join(format!("stall-{stall}.jsonl"));
        let mut job = j.clone();
        job.dead_letter = osprey::job::RouteConfig::File(dir.path().join(format!("stall-{stall}.dlq.jsonl")));
        job.late = osprey::job::RouteConfig::File(dir.path().join(format!("stall-{stall}.late.jsonl")));
        let sink = osprey::sink::build(&job, Some(&out), None).unwrap();
        let source: Box<dyn osprey::source::Source> =
            if stall { Box::new(Stalling { inner, state: 7 }) } else { Box::new(inner) };
        Pipeline::new(job, source, sink, Options { decode_threads: 2, ..Options::replay() }).unwrap().run().unwrap();
        std::fs::read_to_string(out).unwrap()
    };
    let steady = run(false);
    assert!(steady.lines().count() >= 40, "{steady}");
    assert_eq!(run(true), steady, "stalls changed the output");
}

/// The approximate percentiles of the bundled jobs give the same bytes whatever chunks the rows
/// arrive in: small or large reads, or the same file split in two partitions.
#[test]
fn approximate_percentiles_do_not_depend_on_how_rows_are_chunked() {
    let dir = tempfile::tempdir().unwrap();
    let file = generated(dir.path(), 30_000, 9);
    let sql = "SELECT window_start, window_end, service, count(*) AS requests, \
        approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms) AS p99, \
        approx_median(duration_ms) AS p50 FROM events GROUP BY window_start, window_end, service ORDER BY service";
    let j = job(dir.path(), "kind = \"tumbling\"\nsize = \"10m\"", sql);
    let path = file.to_str().unwrap();
    let reference = stream_with(&j, path, 1 << 20, 1);
    assert!(reference.len() >= 5, "{reference:?}");
    assert_eq!(stream_with(&j, path, 5_000, 2), reference, "small chunks");
    let text = std::fs::read_to_string(&file).unwrap();
    let halves = dir.path().join("halves");
    std::fs::create_dir(&halves).unwrap();
    let (mut a, mut b) = (String::new(), String::new());
    for (i, line) in text.lines().enumerate() {
        let half = if i % 2 == 0 { &mut a } else { &mut b };
        half.push_str(line);
        half.push('\n');
    }
    std::fs::write(halves.join("a.jsonl"), a).unwrap();
    std::fs::write(halves.join("b.jsonl"), b).unwrap();
    let split = stream_with(&j, halves.join("*.jsonl").to_str().unwrap(), 8_000, 2);
    assert_eq!(by_window(split), by_window(reference), "one file or two");
}
