use std::path::Path;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Float64Type, Int32Type, Int64Type, TimestampMillisecondType};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue, KeyValueList};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{span, status, ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

use crate::decode::{Decoded, Decoder};
use crate::source::{Payload, RawRecord};

fn job(format: &str, signal: &str, schema: &str, time: &str) -> crate::jobfile::Dataflow {
    let text = format!(
        "name = \"t\"\nsql = \"SELECT * FROM events\"\n[source]\nkind = \"kafka\"\ntopic = \"otlp\"\nformat = \"{format}\"\nsignal = \"{signal}\"\n[source.schema]\n{schema}\n[event_time]\ncolumn = \"{time}\"\n[window]\nkind = \"tumbling\"\nsize = \"1m\"\n"
    );
    crate::job::parse(Path::new("t.toml"), &text).unwrap_or_else(|e| panic!("{e}")).dataflow()
}

/// Messages as a chunk of one partition, at offsets 10, 11, ...
fn messages(payloads: &[Vec<u8>]) -> Payload {
    let mut data = Vec::new();
    let mut records = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        records.push(RawRecord { start: data.len() as u32, end: (data.len() + p.len()) as u32, offset: 10 + i as i64 });
        data.extend_from_slice(p);
    }
    Payload::Json { data, records, meta: None }
}

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(v) }), ..Default::default() }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

const T0: u64 = 1_767_571_200_000_000_000; // 2026-01-05T00:00:00Z in nanoseconds

fn span_of(name: &str, kind: span::SpanKind, start_ms: u64, dur_us: u64, code: status::StatusCode, attrs: Vec<KeyValue>) -> Span {
    Span {
        trace_id: vec![0xab; 16],
        span_id: vec![0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08],
        name: name.into(),
        kind: kind as i32,
        start_time_unix_nano: T0 + start_ms * 1_000_000,
        end_time_unix_nano: T0 + start_ms * 1_000_000 + dur_us * 1_000,
        attributes: attrs,
        status: Some(Status { code: code as i32, message: String::new() }),
        ..Default::default()
    }
}

fn traces() -> ExportTraceServiceRequest {
    let resource = |svc: &str| Some(Resource { attributes: vec![kv("service.name", s(svc))], ..Default::default() });
    ExportTraceServiceRequest {
        resource_spans: vec![
            ResourceSpans {
                resource: resource("api"),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope { name: "http".into(), version: "1.2".into(), ..Default::default() }),
                    spans: vec![
                        span_of("GET /a", span::SpanKind::Server, 0, 1500, status::StatusCode::Unset, vec![kv("http.response.status_code", any_value::Value::IntValue(200))]),
                        span_of("GET /b", span::SpanKind::Server, 10, 2500, status::StatusCode::Error, vec![kv("http.response.status_code", any_value::Value::IntValue(503))]),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            },
            ResourceSpans {
                resource: resource("db"),
                scope_spans: vec![ScopeSpans { spans: vec![span_of("query", span::SpanKind::Client, 20, 300, status::StatusCode::Ok, vec![])], ..Default::default() }],
                ..Default::default()
            },
        ],
    }
}

const SPAN_SCHEMA: &str = "\"resource.service.name\" = \"string\"\n\"scope.name\" = \"string\"\nname = \"string\"\nkind = \"string\"\nend_time = \"timestamp\"\nduration_ms = \"float64\"\nstatus_code = \"string\"\n\"attributes.http.response.status_code\" = \"int32\"\ntrace_id = \"string\"\nspan_id = \"string\"\nparent_span_id = \"string\"";

fn strings(d: &Decoded, col: &str) -> Vec<Option<String>> {
    let a = d.batch.column_by_name(col).unwrap_or_else(|| panic!("{col}")).as_string::<i32>();
    (0..a.len()).map(|i| a.is_valid(i).then(|| a.value(i).to_string())).collect()
}

fn assert_spans(d: &Decoded) {
    assert!(d.dead_letters.is_empty(), "{:?}", d.dead_letters);
    assert_eq!(strings(d, "resource.service.name"), [Some("api"), Some("api"), Some("db")].map(|s| s.map(String::from)));
    assert_eq!(strings(d, "scope.name"), [Some("http"), Some("http"), None].map(|s| s.map(String::from)));
    assert_eq!(strings(d, "kind"), [Some("server"), Some("server"), Some("client")].map(|s| s.map(String::from)));
    assert_eq!(strings(d, "status_code"), [Some("unset"), Some("error"), Some("ok")].map(|s| s.map(String::from)));
    assert_eq!(strings(d, "trace_id")[0].as_deref(), Some("abababababababababababababababab"));
    assert_eq!(strings(d, "span_id")[0].as_deref(), Some("0102030405060708"));
    assert_eq!(strings(d, "parent_span_id"), vec![None, None, None], "an empty parent id is null");
    let code = d.batch.column_by_name("attributes.http.response.status_code").unwrap().as_primitive::<Int32Type>();
    assert_eq!((code.value(0), code.value(1), code.is_null(2)), (200, 503, true), "a span without the attribute has null");
    let dur = d.batch.column_by_name("duration_ms").unwrap().as_primitive::<Float64Type>();
    assert_eq!((dur.value(0), dur.value(1), dur.value(2)), (1.5, 2.5, 0.3));
    let end = d.batch.column_by_name("end_time").unwrap().as_primitive::<TimestampMillisecondType>();
    assert_eq!(end.value(1), (T0 / 1_000_000) as i64 + 12, "10 ms in, 2.5 ms long: ends at 12 ms (milliseconds, rounded down)");
    assert_eq!(d.offsets, vec![10, 10, 10], "every row of a message has the message's offset");
}

#[test]
fn spans_in_protobuf_become_one_row_each_with_the_declared_fields() {
    let decoder = Decoder::new(&job("otlp_proto", "traces", SPAN_SCHEMA, "end_time"));
    assert_spans(&decoder.decode(0, &messages(&[traces().encode_to_vec()])));
}

#[test]
fn the_same_spans_in_otlp_json_give_the_same_rows() {
    // As the OTLP/JSON encoding writes them: camelCase, hex ids, 64-bit integers as strings.
    let json = r#"{"resourceSpans":[
      {"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},
       "scopeSpans":[{"scope":{"name":"http","version":"1.2"},"spans":[
         {"traceId":"ABABABABABABABABABABABABABABABAB","spanId":"0102030405060708","parentSpanId":"","name":"GET /a","kind":2,
          "startTimeUnixNano":"1767571200000000000","endTimeUnixNano":"1767571200001500000",
          "attributes":[{"key":"http.response.status_code","value":{"intValue":"200"}}],"status":{}},
         {"traceId":"abababababababababababababababab","spanId":"0102030405060708","name":"GET /b","kind":"SPAN_KIND_SERVER",
          "startTimeUnixNano":1767571200010000000,"endTimeUnixNano":"1767571200012500000",
          "attributes":[{"key":"http.response.status_code","value":{"intValue":503}}],"status":{"code":2},"unknownField":{"x":1}}]}]},
      {"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"db"}}]},
       "scopeSpans":[{"spans":[{"traceId":"abababababababababababababababab","spanId":"0102030405060708","name":"query","kind":3,
          "startTimeUnixNano":"1767571200020000000","endTimeUnixNano":"1767571200020300000","status":{"code":"STATUS_CODE_OK"}}]}]}]}"#;
    let decoder = Decoder::new(&job("otlp_json", "traces", SPAN_SCHEMA, "end_time"));
    assert_spans(&decoder.decode(0, &messages(&[json.as_bytes().to_vec()])));
}

#[test]
fn payloads_that_do_not_decode_are_dead_letters_and_the_rest_still_decode() {
    let decoder = Decoder::new(&job("otlp_proto", "traces", SPAN_SCHEMA, "end_time"));
    let good = traces().encode_to_vec();
    let truncated = good[..good.len() / 2].to_vec();
    let empty = ExportTraceServiceRequest::default().encode_to_vec();
    // An unknown field (number 99, a varint) is skipped, as protobuf readers do.
    let mut unknown = good.clone();
    unknown.extend_from_slice(&[0x98, 0x06, 0x01]);
    let d = decoder.decode(3, &messages(&[b"{\"not\": \"protobuf\"}".to_vec(), truncated, empty, unknown, vec![0xff; 7]]));
    let dead: Vec<(usize, i64)> = d.dead_letters.iter().map(|l| (l.partition, l.offset)).collect();
    assert_eq!(dead, vec![(3, 10), (3, 11), (3, 14)], "{:?}", d.dead_letters);
    assert!(d.dead_letters.iter().all(|l| l.reason.contains("OTLP traces export request")), "{:?}", d.dead_letters);
    assert_eq!(d.batch.num_rows(), 3, "the empty request has no rows, the one with an unknown field all three");
    assert_eq!(d.offsets, vec![13, 13, 13]);

    let json = Decoder::new(&job("otlp_json", "traces", SPAN_SCHEMA, "end_time"));
    let d = json.decode(0, &messages(&[b"{\"resourceSpans\": 5}".to_vec(), b"{\"resourceSpans\": [".to_vec(), b"{}".to_vec()]));
    assert_eq!(d.dead_letters.iter().map(|l| l.offset).collect::<Vec<_>>(), vec![10, 11]);
    assert!(d.dead_letters[0].reason.contains("not an array"), "{}", d.dead_letters[0].reason);
    assert_eq!(d.batch.num_rows(), 0);
}

#[test]
fn a_value_that_does_not_fit_its_column_makes_that_span_a_dead_letter_naming_the_column() {
    let mut request = traces();
    request.resource_spans[0].scope_spans[0].spans[1].attributes = vec![kv("http.response.status_code", s("five hundred"))];
    let huge = "x".repeat(1 << 20);
    request.resource_spans[1].scope_spans[0].spans[0].attributes = vec![kv("big", s(&huge))];
    let schema = format!("{SPAN_SCHEMA}\n\"attributes.big\" = \"string\"");
    let decoder = Decoder::new(&job("otlp_proto", "traces", &schema, "end_time"));
    let d = decoder.decode(0, &messages(&[request.encode_to_vec()]));
    assert_eq!(d.batch.num_rows(), 2);
    assert_eq!(d.dead_letters.len(), 1, "{:?}", d.dead_letters);
    let reason = &d.dead_letters[0].reason;
    assert!(reason.contains("attributes.http.response.status_code") && !reason.contains("`c7`"), "{reason}");
    let raw: serde_json::Value = serde_json::from_slice(&d.dead_letters[0].raw).unwrap();
    assert_eq!(raw["name"], "GET /b", "the dead letter is the span's row under its declared names");
    assert_eq!(strings(&d, "attributes.big")[1].as_ref().map(|s| s.len()), Some(1 << 20), "a huge attribute value arrives whole");
}

#[test]
fn metric_points_give_values_counts_and_sums() {
    let point = |ms: u64, v: number_data_point::Value| NumberDataPoint { time_unix_nano: T0 + ms * 1_000_000, value: Some(v), attributes: vec![kv("host", s("a"))], ..Default::default() };
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource { attributes: vec![kv("service.name", s("api"))], ..Default::default() }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    Metric { name: "queue".into(), unit: "1".into(), data: Some(metric::Data::Gauge(Gauge { data_points: vec![point(1, number_data_point::Value::AsInt(7)), point(2, number_data_point::Value::AsDouble(2.5))] })), ..Default::default() },
                    Metric {
                        name: "latency".into(),
                        unit: "ms".into(),
                        data: Some(metric::Data::Histogram(Histogram {
                            data_points: vec![HistogramDataPoint { time_unix_nano: T0 + 3_000_000, count: 4, sum: Some(10.0), min: Some(1.0), max: Some(4.0), ..Default::default() }],
                            aggregation_temporality: 2,
                        })),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let schema = "metric_name = \"string\"\nmetric_type = \"string\"\ntime = \"timestamp\"\nvalue = \"float64\"\ncount = \"int64\"\nsum = \"float64\"\nmax = \"float64\"\n\"attributes.host\" = \"string\"\n\"resource.service.name\" = \"string\"";
    let proto = Decoder::new(&job("otlp_proto", "metrics", schema, "time")).decode(0, &messages(&[request.encode_to_vec()]));
    let json_text = r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},"scopeMetrics":[{"metrics":[
        {"name":"queue","unit":"1","gauge":{"dataPoints":[
           {"timeUnixNano":"1767571200001000000","asInt":"7","attributes":[{"key":"host","value":{"stringValue":"a"}}]},
           {"timeUnixNano":"1767571200002000000","asDouble":2.5,"attributes":[{"key":"host","value":{"stringValue":"a"}}]}]}},
        {"name":"latency","unit":"ms","histogram":{"aggregationTemporality":2,"dataPoints":[
           {"timeUnixNano":"1767571200003000000","count":"4","sum":10.0,"min":1.0,"max":4.0,"bucketCounts":["1","3"],"explicitBounds":[2.0]}]}}]}]}]}"#;
    let json = Decoder::new(&job("otlp_json", "metrics", schema, "time")).decode(0, &messages(&[json_text.as_bytes().to_vec()]));
    for d in [&proto, &json] {
        assert!(d.dead_letters.is_empty(), "{:?}", d.dead_letters);
        assert_eq!(strings(d, "metric_type"), [Some("gauge"), Some("gauge"), Some("histogram")].map(|s| s.map(String::from)));
        let value = d.batch.column_by_name("value").unwrap().as_primitive::<Float64Type>();
        assert_eq!((value.value(0), value.value(1), value.is_null(2)), (7.0, 2.5, true));
        let count = d.batch.column_by_name("count").unwrap().as_primitive::<Int64Type>();
        assert_eq!((count.is_null(0), count.value(2)), (true, 4));
        assert_eq!(d.batch.column_by_name("max").unwrap().as_primitive::<Float64Type>().value(2), 4.0);
        assert_eq!(strings(d, "attributes.host"), [Some("a"), Some("a"), None].map(|s| s.map(String::from)));
        assert_eq!(strings(d, "resource.service.name")[2].as_deref(), Some("api"));
    }
}

#[test]
fn log_records_give_their_body_as_text_and_maps_as_json() {
    let record = |ms: u64, body: any_value::Value| LogRecord {
        time_unix_nano: T0 + ms * 1_000_000,
        severity_number: 17,
        severity_text: "ERROR".into(),
        body: Some(AnyValue { value: Some(body) }),
        trace_id: vec![1; 16],
        ..Default::default()
    };
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: vec![record(1, s("disk full")), record(2, any_value::Value::KvlistValue(KeyValueList { values: vec![kv("a", any_value::Value::IntValue(1))] }))],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let schema = "time = \"timestamp\"\nseverity_number = \"int32\"\nseverity_text = \"string\"\nbody = \"string\"\ntrace_id = \"string\"";
    let d = Decoder::new(&job("otlp_proto", "logs", schema, "time")).decode(0, &messages(&[request.encode_to_vec()]));
    assert!(d.dead_letters.is_empty(), "{:?}", d.dead_letters);
    assert_eq!(strings(&d, "body"), vec![Some("disk full".to_string()), Some("{\"a\":1}".to_string())]);
    assert_eq!(d.batch.column_by_name("severity_number").unwrap().as_primitive::<Int32Type>().value(0), 17);
    assert_eq!(strings(&d, "trace_id")[0].as_deref(), Some("01010101010101010101010101010101"));
}

#[test]
fn jobs_naming_a_field_the_signal_lacks_or_no_signal_are_refused_with_the_line() {
    let text = |format: &str, extra: &str, col: &str| {
        format!("name = \"t\"\nsql = \"SELECT * FROM events\"\n[source]\nkind = \"kafka\"\ntopic = \"o\"\nformat = \"{format}\"\n{extra}\n[source.schema]\nend_time = \"timestamp\"\n{col} = \"string\"\n[event_time]\ncolumn = \"end_time\"\n[window]\nkind = \"tumbling\"\nsize = \"1m\"\n")
    };
    let e = crate::job::parse(Path::new("t.toml"), &text("otlp_proto", "signal = \"traces\"", "nmae")).unwrap_err();
    assert!(e.message.contains("`nmae` is not a column of OpenTelemetry traces") && e.line == 10, "{e}");
    assert_eq!(e.help.as_deref(), Some("did you mean `name`?"));
    let e = crate::job::parse(Path::new("t.toml"), &text("otlp_proto", "", "name")).unwrap_err();
    assert!(e.message.contains("needs `signal`") && e.line == 6, "{e}");
    let e = crate::job::parse(Path::new("t.toml"), &text("otlp_json", "signal = \"spans\"", "name")).unwrap_err();
    assert!(e.message.contains("unknown signal `spans`"), "{e}");
    let e = crate::job::parse(Path::new("t.toml"), &text("otlp_proto", "signal = \"metrics\"", "metric_name")).unwrap_err();
    assert!(e.message.contains("`end_time` is not a column of OpenTelemetry metrics"), "metrics have `time`, not `end_time`: {e}");
    let e = crate::job::parse(Path::new("t.toml"), &text("otlp_proto", "signal = \"traces\"\nkey = [\"service\"]", "name")).unwrap_err();
    assert!(e.message.contains("source key column `service`"), "{e}");
}

/// The typed path (protobuf values straight into columns) gives the batch the JSON rows give,
/// and a chunk holding a value it cannot judge goes the JSON way whole.
#[test]
fn protobuf_straight_into_columns_equals_the_json_rows_and_falls_back_whole() {
    let flow = job("otlp_proto", "traces", SPAN_SCHEMA, "end_time");
    let decoder = Decoder::new(&flow);
    let otlp = decoder.otlp.as_ref().unwrap();
    let payload = messages(&[traces().encode_to_vec(), b"junk".to_vec(), traces().encode_to_vec()]);
    let schema = decoder.schema();
    let typed = otlp.decode_typed(0, match &payload { Payload::Json { data, .. } => data, _ => unreachable!() }, match &payload { Payload::Json { records, .. } => records, _ => unreachable!() }, None, &schema).expect("every value fits");
    let rows = otlp.decode_rows(0, &payload, &schema);
    assert_eq!(typed.batch, rows.batch);
    assert_eq!(typed.offsets, rows.offsets);
    assert_eq!(typed.dead_letters, rows.dead_letters);
    assert_eq!(typed.batch.num_rows(), 6);

    let mut odd = traces();
    odd.resource_spans[0].scope_spans[0].spans[0].attributes = vec![kv("http.response.status_code", any_value::Value::DoubleValue(200.0))];
    let payload = messages(&[traces().encode_to_vec(), odd.encode_to_vec()]);
    let Payload::Json { data, records, .. } = &payload else { unreachable!() };
    assert!(otlp.decode_typed(0, data, records, None, &schema).is_none(), "a float in an int32 column is the JSON path's to judge");
    let d = decoder.decode(0, &payload);
    assert_eq!(d.batch.num_rows() + d.dead_letters.len(), 6, "{:?}", d.dead_letters);
}

/// A declared string that is not UTF-8 makes its request a dead letter, as a full decode would;
/// the other requests of the chunk still decode.
#[test]
fn a_declared_string_that_is_not_utf8_makes_its_request_a_dead_letter() {
    let good = traces().encode_to_vec();
    let mut bad = good.clone();
    let at = bad.windows(6).position(|w| w == b"GET /b").unwrap();
    bad[at + 5] = 0xff;
    let decoder = Decoder::new(&job("otlp_proto", "traces", SPAN_SCHEMA, "end_time"));
    let d = decoder.decode(0, &messages(&[good.clone(), bad, good]));
    assert_eq!(d.dead_letters.iter().map(|l| l.offset).collect::<Vec<_>>(), vec![11], "{:?}", d.dead_letters);
    assert!(d.dead_letters[0].reason.contains("UTF-8"), "{}", d.dead_letters[0].reason);
    assert_eq!(d.offsets, vec![10, 10, 10, 12, 12, 12]);
}
