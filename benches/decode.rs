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

/// The same spans as OpenTelemetry export requests in protobuf (100 spans a message, as a
/// Collector batches them) and as flat JSON lines (every field of the span, one object a line),
/// decoded by jobs declaring the same seven columns: spans per second of each path.
fn otlp(c: &mut Criterion) {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
    use prost::Message;

    const SPANS: usize = 20_000;
    const PER_MESSAGE: usize = 100;
    let kv = |k: &str, v: any_value::Value| KeyValue { key: k.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() };
    let t0: u64 = 1_767_571_200_000_000_000;
    let span = |i: usize| {
        let start = t0 + i as u64 * 50_000_000;
        let end = start + 1_000_000 + (i as u64 * 7_919_000) % 300_000_000;
        let status = if i % 50 == 0 { 503 } else { 200 };
        (i % 5, format!("/route/{}", i % 7), status, start, end)
    };
    let mut proto = Vec::new();
    let mut proto_records = Vec::new();
    let mut json = Vec::new();
    let mut json_records = Vec::new();
    for m in 0..SPANS / PER_MESSAGE {
        let mut by_service: Vec<Vec<Span>> = vec![Vec::new(); 5];
        for i in m * PER_MESSAGE..(m + 1) * PER_MESSAGE {
            let (svc, route, status, start, end) = span(i);
            let trace_id: Vec<u8> = (0..16).map(|b| (i * 31 + b) as u8).collect();
            let span_id: Vec<u8> = (0..8).map(|b| (i * 17 + b) as u8).collect();
            by_service[svc].push(Span {
                trace_id: trace_id.clone(),
                span_id: span_id.clone(),
                name: format!("GET {route}"),
                kind: 2,
                start_time_unix_nano: start,
                end_time_unix_nano: end,
                attributes: vec![kv("http.route", any_value::Value::StringValue(route.clone())), kv("http.response.status_code", any_value::Value::IntValue(status)), kv("http.request.method", any_value::Value::StringValue("GET".into()))],
                status: Some(Status { code: if status >= 500 { 2 } else { 0 }, message: String::new() }),
                ..Default::default()
            });
            let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
            let line = format!(
                "{{\"trace_id\":\"{}\",\"span_id\":\"{}\",\"name\":\"GET {route}\",\"kind\":\"server\",\"start_time\":{},\"end_time\":{},\"duration_ms\":{},\"status_code\":\"{}\",\"service\":\"svc-{svc}\",\"route\":\"{route}\",\"http_status\":{status},\"method\":\"GET\"}}",
                hex(&trace_id),
                hex(&span_id),
                start / 1_000_000,
                end / 1_000_000,
                (end - start) as f64 / 1e6,
                if status >= 500 { "error" } else { "unset" },
            );
            json_records.push(RawRecord { start: json.len() as u32, end: (json.len() + line.len()) as u32, offset: i as i64 });
            json.extend_from_slice(line.as_bytes());
            json.push(b'\n');
        }
        let request = ExportTraceServiceRequest {
            resource_spans: by_service
                .into_iter()
                .enumerate()
                .map(|(svc, spans)| ResourceSpans {
                    resource: Some(Resource { attributes: vec![kv("service.name", any_value::Value::StringValue(format!("svc-{svc}")))], ..Default::default() }),
                    scope_spans: vec![ScopeSpans { spans, ..Default::default() }],
                    ..Default::default()
                })
                .collect(),
        };
        let bytes = request.encode_to_vec();
        proto_records.push(RawRecord { start: proto.len() as u32, end: (proto.len() + bytes.len()) as u32, offset: m as i64 });
        proto.extend_from_slice(&bytes);
    }
    let job = |source: &str, schema: &str, time: &str| {
        let text = format!("name = \"b\"\nsql = \"SELECT count(*) FROM events\"\n[source]\n{source}\n[source.schema]\n{schema}\n[event_time]\ncolumn = \"{time}\"\n[window]\nkind = \"tumbling\"\nsize = \"1m\"\n");
        Decoder::new(&osprey::job::parse(Path::new("bench.toml"), &text).unwrap().dataflow())
    };
    let otlp = job(
        "kind = \"kafka\"\ntopic = \"s\"\nformat = \"otlp_proto\"\nsignal = \"traces\"",
        "\"resource.service.name\" = \"string\"\n\"attributes.http.route\" = \"string\"\n\"attributes.http.response.status_code\" = \"int32\"\nkind = \"string\"\nstatus_code = \"string\"\nduration_ms = \"float64\"\nend_time = \"timestamp\"",
        "end_time",
    );
    let flat = job(
        "kind = \"kafka\"\ntopic = \"s\"",
        "service = \"string\"\nroute = \"string\"\nhttp_status = \"int32\"\nkind = \"string\"\nstatus_code = \"string\"\nduration_ms = \"float64\"\nend_time = \"timestamp\"",
        "end_time",
    );
    let proto_payload = Payload::Json { data: proto, records: proto_records, meta: None };
    let json_payload = Payload::Json { data: json, records: json_records, meta: None };
    assert_eq!(otlp.decode(0, &proto_payload).batch.num_rows(), SPANS);
    assert_eq!(flat.decode(0, &json_payload).batch.num_rows(), SPANS);
    let mut group = c.benchmark_group("otlp_spans");
    group.throughput(Throughput::Elements(SPANS as u64));
    group.bench_function("flat_json_lines", |b| b.iter(|| black_box(flat.decode(0, &json_payload))));
    group.bench_function("otlp_proto", |b| b.iter(|| black_box(otlp.decode(0, &proto_payload))));
    group.finish();
}

criterion_group!(benches, decode, otlp);
criterion_main!(benches);
