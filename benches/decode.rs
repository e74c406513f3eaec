//! JSON → Arrow decoding, events/s: Osprey's decoder (bad-record isolation, exact event times
//! and decimals) against arrow-json's bare decoder on the same bytes, in the same process.

use std::hint::black_box;
use std::path::Path;

/// The allocator of the `osprey` binary, so the figures match what users run.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use datafusion::arrow::json::ReaderBuilder;
use osprey::decode::Decoder;
use osprey::source::generator::{write_json_lines, GeneratorConfig, Stream};
use osprey::source::{Payload, RawRecord};

const JOB: &str = r#"name = "bench"
sql = "SELECT count(*) FROM events"
[source]
kind = "file"
path = "x.jsonl"
[source.schema]
ts = "timestamp"
service = "string"
endpoint = "string"
status = "int64"
duration_ms = "float64"
bytes = "int64"
host = "string"
build = "string"
trace_id = "string"
[event_time]
column = "ts"
[window]
kind = "tumbling"
size = "1m"
"#;

fn chunk(events: u64) -> (Vec<u8>, Vec<RawRecord>) {
    let mut data = Vec::new();
    write_json_lines(GeneratorConfig::new(Stream::HttpRequests), events, &mut data).unwrap();
    let mut records = Vec::new();
    let mut start = 0;
    for (i, line) in data.split(|b| *b == b'\n').enumerate() {
        if !line.is_empty() {
            records.push(RawRecord { start: start as u32, end: (start + line.len()) as u32, offset: i as i64 + 1 });
        }
        start += line.len() + 1;
    }
    (data, records)
}

fn decode(c: &mut Criterion) {
    let job = osprey::job::parse(Path::new("bench.toml"), JOB).unwrap();
    let (data, records) = chunk(20_000);
    let payload = Payload::Json { data: data.clone(), records: records.clone(), meta: None };
    let decoder = Decoder::new(&job.dataflow());
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(records.len() as u64));
    // Baseline: arrow-json alone, timestamps left as text, no isolation of bad records.
    let bare_schema = {
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        let f = |n: &str, t: DataType| Field::new(n, t, true);
        std::sync::Arc::new(Schema::new(vec![
            f("ts", DataType::Utf8),
            f("service", DataType::Utf8),
            f("endpoint", DataType::Utf8),
            f("status", DataType::Int64),
            f("duration_ms", DataType::Float64),
            f("bytes", DataType::Int64),
            f("host", DataType::Utf8),
            f("build", DataType::Utf8),
            f("trace_id", DataType::Utf8),
        ]))
    };
    group.bench_function("arrow_json_bare", |b| {
        b.iter(|| {
            let mut d = ReaderBuilder::new(bare_schema.clone()).with_batch_size(records.len()).build_decoder().unwrap();
            d.decode(&data).unwrap();
            black_box(d.flush().unwrap())
        })
    });
    group.bench_function("osprey_decoder", |b| b.iter(|| black_box(decoder.decode(0, &payload))));
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
