//! A tumbling count + sum + percentile job over generated events replayed from a JSON-lines
//! file, events/s: Osprey's streaming replay against DataFusion's one-shot batch query over the
//! same file with an explicit window column, in the same process.
//!
//! `OSPREY_BENCH_EVENTS` sets the size (default 5,000,000; the file is made once, under
//! `target/bench-data`).

use std::path::{Path, PathBuf};

/// The allocator of the `osprey` binary, so the figures match what users run.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use osprey::pipeline::{Options, Pipeline};
use osprey::source::file::FileSource;
use osprey::source::generator::{write_json_lines, GeneratorConfig, Stream};

pub const SQL: &str = include_str!("../sql/bench_tumbling.sql");

fn data_file(events: u64) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("requests-{events}.jsonl"));
    if !path.exists() {
        let mut cfg = GeneratorConfig::new(Stream::HttpRequests);
        cfg.rate = 2_000.0;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        write_json_lines(cfg, events, &mut out).unwrap();
    }
    path
}

fn job(file: &Path) -> osprey::job::Job {
    let text = format!(
        "name = \"bench\"\nsql = \"\"\"\n{SQL}\"\"\"\n[source]\nkind = \"file\"\npath = \"{}\"\n[source.schema]\nts = \"timestamp\"\nservice = \"string\"\nduration_ms = \"float64\"\nbytes = \"int64\"\n[event_time]\ncolumn = \"ts\"\nwatermark_delay = \"5s\"\n[window]\nkind = \"tumbling\"\nsize = \"1m\"\n",
        file.display()
    );
    osprey::job::parse(Path::new("bench.toml"), &text).unwrap()
}

fn osprey_replay(job: &osprey::job::Job, file: &Path, out: &Path) -> u64 {
    let source = FileSource::open(file.to_str().unwrap(), osprey::job::FileFormat::Auto).unwrap();
    let sink = osprey::sink::build(job, Some(out), None).unwrap();
    let summary = Pipeline::new(job.clone(), Box::new(source), sink, Options::replay()).unwrap().run().unwrap();
    summary.counters.rows_out
}

fn datafusion_batch(file: &Path) -> usize {
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::file_format::options::JsonReadOptions;
    use datafusion::prelude::SessionContext;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ctx = SessionContext::new();
        let schema = Schema::new(vec![
            Field::new("ts", DataType::Utf8, true),
            Field::new("service", DataType::Utf8, true),
            Field::new("duration_ms", DataType::Float64, true),
            Field::new("bytes", DataType::Int64, true),
        ]);
        let opts = JsonReadOptions::default().schema(&schema).file_extension(".jsonl");
        ctx.register_json("raw", file.to_str().unwrap(), opts).await.unwrap();
        let sql = "SELECT date_bin(INTERVAL '1 minute', to_timestamp_millis(ts)) AS window_start, service, count(*) AS requests, \
                   sum(bytes) AS bytes, approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms) AS p99_ms \
                   FROM raw GROUP BY 1, service";
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        batches.iter().map(|b| b.num_rows()).sum()
    })
}

fn replay(c: &mut Criterion) {
    let events: u64 = std::env::var("OSPREY_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(5_000_000);
    let file = data_file(events);
    let job = job(&file);
    let out = file.with_extension("out.jsonl");
    let mut group = c.benchmark_group("replay_tumbling_1m");
    group.sample_size(10);
    group.throughput(Throughput::Elements(events));
    group.bench_function("datafusion_batch", |b| b.iter(|| datafusion_batch(&file)));
    group.bench_function("osprey_replay", |b| b.iter(|| osprey_replay(&job, &file, &out)));
    group.finish();
}

criterion_group!(benches, replay);
criterion_main!(benches);
