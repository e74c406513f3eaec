//! `otlp_proto`: export requests in protobuf, decoded with `opentelemetry-proto`'s messages.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use super::{duration_ms, find, hex_id, span_kind, status_code, Cell, Field, Rows};
use crate::jobfile::Signal;

pub fn flatten(signal: Signal, payload: &[u8], rows: &mut Rows) -> Result<(), String> {
    let bad = |e: prost::DecodeError| format!("not an OTLP {} export request in protobuf: {e}", signal.name());
    match signal {
        Signal::Traces => {
            // SAFETY: the request and every `Bytes` of it are dropped before this function
            // returns (rows copy what they read), while `payload` lives on in the caller. A
            // static `Bytes` is a plain slice: sharing its parts costs no reference counts,
            // which were a third of the decoding time with a shared buffer.
            let payload: &'static [u8] = unsafe { std::mem::transmute::<&[u8], &'static [u8]>(payload) };
            let request = super::lite::ExportTraceServiceRequest::decode(bytes::Bytes::from_static(payload)).map_err(bad)?;
            traces(request, rows);
            if rows.bad_text {
                return Err(format!("not an OTLP {} export request in protobuf: a string field is not UTF-8", signal.name()));
            }
        }
        Signal::Metrics => metrics(ExportMetricsServiceRequest::decode(payload).map_err(bad)?, rows),
        Signal::Logs => logs(ExportLogsServiceRequest::decode(payload).map_err(bad)?, rows),
    }
    Ok(())
}

/// The cell of a field every signal has, or `None` for the signal's own fields.
fn common<'a>(field: &Field, resource: Option<&'a Resource>, scope: Option<&'a InstrumentationScope>, attributes: &'a [KeyValue]) -> Option<Cell<'a>> {
    Some(match field {
        Field::Resource(key) => resource.map(|r| attribute(&r.attributes, key)).unwrap_or(Cell::Null),
        Field::ScopeName => scope.map(|s| non_empty(&s.name)).unwrap_or(Cell::Null),
        Field::ScopeVersion => scope.map(|s| non_empty(&s.version)).unwrap_or(Cell::Null),
        Field::Attribute(key) => attribute(attributes, key),
        _ => return None,
    })
}

fn non_empty(s: &str) -> Cell<'_> {
    if s.is_empty() { Cell::Null } else { Cell::Str(s) }
}

fn attribute<'a>(list: &'a [KeyValue], key: &str) -> Cell<'a> {
    find(list, key, |kv| &kv.key).and_then(|kv| kv.value.as_ref()).map(any).unwrap_or(Cell::Null)
}

fn any(v: &AnyValue) -> Cell<'_> {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => Cell::Str(s),
        Some(any_value::Value::BoolValue(b)) => Cell::Bool(*b),
        Some(any_value::Value::IntValue(i)) => Cell::Int(*i),
        Some(any_value::Value::DoubleValue(f)) => Cell::Float(*f),
        Some(_) => Cell::Json(json_text(v).to_string()),
        None => Cell::Null,
    }
}

/// Arrays and maps as JSON (bytes as lower-case hex).
fn json_text(v: &AnyValue) -> serde_json::Value {
    use serde_json::Value as J;
    match &v.value {
        Some(any_value::Value::StringValue(s)) => J::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => J::Bool(*b),
        Some(any_value::Value::IntValue(i)) => J::from(*i),
        Some(any_value::Value::DoubleValue(f)) => serde_json::Number::from_f64(*f).map(J::Number).unwrap_or(J::Null),
        Some(any_value::Value::ArrayValue(a)) => J::Array(a.values.iter().map(json_text).collect()),
        Some(any_value::Value::KvlistValue(m)) => {
            J::Object(m.values.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map(json_text).unwrap_or(J::Null))).collect())
        }
        Some(any_value::Value::BytesValue(b)) => J::String(b.iter().map(|x| format!("{x:02x}")).collect()),
        _ => J::Null,
    }
}

/// Spans from the lite messages: strings are checked as UTF-8 as a column reads them.
fn traces(request: super::lite::ExportTraceServiceRequest, rows: &mut Rows) {
    use super::lite;
    fn text(b: &[u8]) -> Cell<'_> {
        match std::str::from_utf8(b) {
            Ok("") => Cell::Null,
            Ok(s) => Cell::Str(s),
            Err(_) => Cell::BadText,
        }
    }
    fn any(v: &lite::AnyValue) -> Cell<'_> {
        match &v.value {
            Some(lite::Value::String(s)) => match std::str::from_utf8(s) {
                Ok(s) => Cell::Str(s),
                Err(_) => Cell::BadText,
            },
            Some(lite::Value::Bool(b)) => Cell::Bool(*b),
            Some(lite::Value::Int(i)) => Cell::Int(*i),
            Some(lite::Value::Double(f)) => Cell::Float(*f),
            Some(_) => match json(v) {
                Some(j) => Cell::Json(j.to_string()),
                None => Cell::BadText,
            },
            None => Cell::Null,
        }
    }
    fn json(v: &lite::AnyValue) -> Option<serde_json::Value> {
        use serde_json::Value as J;
        Some(match &v.value {
            Some(lite::Value::String(s)) => J::String(std::str::from_utf8(s).ok()?.to_string()),
            Some(lite::Value::Bool(b)) => J::Bool(*b),
            Some(lite::Value::Int(i)) => J::from(*i),
            Some(lite::Value::Double(f)) => serde_json::Number::from_f64(*f).map(J::Number).unwrap_or(J::Null),
            Some(lite::Value::Array(a)) => J::Array(a.values.iter().map(json).collect::<Option<_>>()?),
            Some(lite::Value::Kvlist(m)) => J::Object(
                m.values
                    .iter()
                    .map(|kv| Some((std::str::from_utf8(&kv.key).ok()?.to_string(), kv.value.as_ref().map(json).unwrap_or(Some(J::Null))?)))
                    .collect::<Option<_>>()?,
            ),
            Some(lite::Value::Bytes(b)) => J::String(b.iter().map(|x| format!("{x:02x}")).collect()),
            None => J::Null,
        })
    }
    fn attribute<'a>(list: &'a [lite::KeyValue], key: &str) -> Cell<'a> {
        list.iter().find(|kv| kv.key.as_ref() == key.as_bytes()).and_then(|kv| kv.value.as_ref()).map(any).unwrap_or(Cell::Null)
    }
    for rs in &request.resource_spans {
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                rows.push(|f| match f {
                    Field::Resource(key) => rs.resource.as_ref().map(|r| attribute(&r.attributes, key)).unwrap_or(Cell::Null),
                    Field::ScopeName => ss.scope.as_ref().map(|s| text(&s.name)).unwrap_or(Cell::Null),
                    Field::ScopeVersion => ss.scope.as_ref().map(|s| text(&s.version)).unwrap_or(Cell::Null),
                    Field::Attribute(key) => attribute(&span.attributes, key),
                    Field::TraceId => hex_id(&span.trace_id),
                    Field::SpanId => hex_id(&span.span_id),
                    Field::ParentSpanId => hex_id(&span.parent_span_id),
                    Field::Name => match std::str::from_utf8(&span.name) {
                        Ok(s) => Cell::Str(s),
                        Err(_) => Cell::BadText,
                    },
                    Field::Kind => span_kind(span.kind),
                    Field::StartTime => Cell::Nanos(span.start_time_unix_nano),
                    Field::EndTime => Cell::Nanos(span.end_time_unix_nano),
                    Field::DurationMs => duration_ms(span.start_time_unix_nano, span.end_time_unix_nano),
                    Field::StatusCode => status_code(span.status.as_ref().map(|s| s.code).unwrap_or(0)),
                    Field::StatusMessage => span.status.as_ref().map(|s| text(&s.message)).unwrap_or(Cell::Null),
                    _ => Cell::Null,
                });
            }
        }
    }
}

/// One data point's own values, whatever its metric's type.
struct Point<'a> {
    attributes: &'a [KeyValue],
    start: u64,
    time: u64,
    value: Cell<'a>,
    count: Option<u64>,
    sum: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
}

/// A histogram's or an exponential histogram's point: the same fields in two message types.
macro_rules! histogram {
    ($p:expr) => {
        Point { attributes: &$p.attributes, start: $p.start_time_unix_nano, time: $p.time_unix_nano, value: Cell::Null, count: Some($p.count), sum: $p.sum, min: $p.min, max: $p.max }
    };
}

fn metrics(request: ExportMetricsServiceRequest, rows: &mut Rows) {
    for rm in &request.resource_metrics {
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                let (kind, points): (&str, Vec<Point>) = match &m.data {
                    Some(metric::Data::Gauge(g)) => ("gauge", g.data_points.iter().map(number).collect()),
                    Some(metric::Data::Sum(s)) => ("sum", s.data_points.iter().map(number).collect()),
                    Some(metric::Data::Histogram(h)) => ("histogram", h.data_points.iter().map(|p| histogram!(p)).collect()),
                    Some(metric::Data::ExponentialHistogram(h)) => ("exponential_histogram", h.data_points.iter().map(|p| histogram!(p)).collect()),
                    Some(metric::Data::Summary(s)) => (
                        "summary",
                        s.data_points
                            .iter()
                            .map(|p| Point { attributes: &p.attributes, start: p.start_time_unix_nano, time: p.time_unix_nano, value: Cell::Null, count: Some(p.count), sum: Some(p.sum), min: None, max: None })
                            .collect(),
                    ),
                    None => continue,
                };
                for p in &points {
                    rows.push(|f| {
                        common(f, rm.resource.as_ref(), sm.scope.as_ref(), p.attributes).unwrap_or_else(|| match f {
                            Field::MetricName => Cell::Str(&m.name),
                            Field::MetricUnit => non_empty(&m.unit),
                            Field::MetricType => Cell::Str(kind),
                            Field::Time => Cell::Nanos(p.time),
                        Field::StartTime => Cell::Nanos(p.start),
                            Field::Value => p.value.clone(),
                            Field::Count => p.count.map(|c| Cell::Int(c as i64)).unwrap_or(Cell::Null),
                            Field::Sum => p.sum.map(Cell::Float).unwrap_or(Cell::Null),
                            Field::Min => p.min.map(Cell::Float).unwrap_or(Cell::Null),
                            Field::Max => p.max.map(Cell::Float).unwrap_or(Cell::Null),
                            _ => Cell::Null,
                        })
                    });
                }
            }
        }
    }
}

fn number(p: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint) -> Point<'_> {
    let value = match p.value {
        Some(number_data_point::Value::AsDouble(f)) => Cell::Float(f),
        Some(number_data_point::Value::AsInt(i)) => Cell::Int(i),
        None => Cell::Null,
    };
    Point { attributes: &p.attributes, start: p.start_time_unix_nano, time: p.time_unix_nano, value, count: None, sum: None, min: None, max: None }
}

fn logs(request: ExportLogsServiceRequest, rows: &mut Rows) {
    for rl in &request.resource_logs {
        for sl in &rl.scope_logs {
            for r in &sl.log_records {
                rows.push(|f| {
                    common(f, rl.resource.as_ref(), sl.scope.as_ref(), &r.attributes).unwrap_or_else(|| match f {
                        Field::Time => Cell::Nanos(r.time_unix_nano),
                        Field::ObservedTime => Cell::Nanos(r.observed_time_unix_nano),
                        Field::SeverityNumber => Cell::Int(r.severity_number as i64),
                        Field::SeverityText => non_empty(&r.severity_text),
                        Field::Body => match r.body.as_ref() {
                            Some(AnyValue { value: Some(any_value::Value::StringValue(s)) }) => Cell::Str(s),
                            Some(v) if v.value.is_some() => Cell::Json(json_text(v).to_string()),
                            _ => Cell::Null,
                        },
                        Field::TraceId => hex_id(&r.trace_id),
                        Field::SpanId => hex_id(&r.span_id),
                        _ => Cell::Null,
                    })
                });
            }
        }
    }
}
