//! `otlp_json`: export requests by the OTLP/JSON rules (the protobuf JSON mapping with
//! lowerCamelCase keys, trace and span ids as hex, 64-bit integers as strings or numbers,
//! enums as numbers or names). Snake-case keys are accepted too, as protobuf parsers do.

use serde_json::{Map, Value};

use super::{duration_ms, span_kind, status_code, Cell, Field, Rows};
use crate::jobfile::Signal;

pub fn flatten(signal: Signal, payload: &[u8], rows: &mut Rows) -> Result<(), String> {
    let request: Value = serde_json::from_slice(payload).map_err(|e| format!("not an OTLP/JSON export request: {e}"))?;
    let request = request.as_object().ok_or("not an OTLP/JSON export request: not a JSON object")?;
    let (outer, middle, inner) = match signal {
        Signal::Traces => (("resourceSpans", "resource_spans"), ("scopeSpans", "scope_spans"), ("spans", "spans")),
        Signal::Metrics => (("resourceMetrics", "resource_metrics"), ("scopeMetrics", "scope_metrics"), ("metrics", "metrics")),
        Signal::Logs => (("resourceLogs", "resource_logs"), ("scopeLogs", "scope_logs"), ("logRecords", "log_records")),
    };
    for r in list(request, outer)? {
        let r = object(r, outer.0)?;
        let resource = get(r, ("resource", "resource")).map(|v| object(v, "resource")).transpose()?;
        for s in list(r, middle)? {
            let s = object(s, middle.0)?;
            let scope = get(s, ("scope", "scope")).map(|v| object(v, "scope")).transpose()?;
            let ctx = Context { resource, scope };
            for item in list(s, inner)? {
                let item = object(item, inner.0)?;
                match signal {
                    Signal::Traces => span(&ctx, item, rows)?,
                    Signal::Metrics => metric(&ctx, item, rows)?,
                    Signal::Logs => log(&ctx, item, rows)?,
                }
            }
        }
    }
    Ok(())
}

type Obj = Map<String, Value>;

struct Context<'a> {
    resource: Option<&'a Obj>,
    scope: Option<&'a Obj>,
}

impl<'a> Context<'a> {
    fn common(&self, field: &Field, attributes: &'a [Value]) -> Option<Cell<'a>> {
        Some(match field {
            Field::Resource(key) => self.resource.and_then(|r| attrs(r)).map(|a| attribute(a, key)).unwrap_or(Cell::Null),
            Field::ScopeName => self.scope.map(|s| string(s, ("name", "name"))).unwrap_or(Cell::Null),
            Field::ScopeVersion => self.scope.map(|s| string(s, ("version", "version"))).unwrap_or(Cell::Null),
            Field::Attribute(key) => attribute(attributes, key),
            _ => return None,
        })
    }
}

fn get<'a>(o: &'a Obj, (camel, snake): (&str, &str)) -> Option<&'a Value> {
    o.get(camel).or_else(|| o.get(snake)).filter(|v| !v.is_null())
}

fn object<'a>(v: &'a Value, what: &str) -> Result<&'a Obj, String> {
    v.as_object().ok_or_else(|| format!("`{what}` holds {}, not an object", kind_of(v)))
}

/// The array under a key; absent or null is empty (an empty request is valid).
fn list<'a>(o: &'a Obj, key: (&str, &str)) -> Result<&'a [Value], String> {
    match get(o, key) {
        None => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(v) => Err(format!("`{}` holds {}, not an array", key.0, kind_of(v))),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn attrs(o: &Obj) -> Option<&[Value]> {
    match get(o, ("attributes", "attributes")) {
        Some(Value::Array(a)) => Some(a),
        _ => None,
    }
}

fn string<'a>(o: &'a Obj, key: (&str, &str)) -> Cell<'a> {
    match get(o, key) {
        Some(Value::String(s)) if !s.is_empty() => Cell::Str(s),
        _ => Cell::Null,
    }
}

/// A 64-bit unsigned integer: a decimal string or a number.
fn u64_of(o: &Obj, key: (&str, &str)) -> Result<Option<u64>, String> {
    match get(o, key) {
        None => Ok(None),
        Some(Value::String(s)) => s.parse().map(Some).map_err(|_| format!("`{}` = {s:?} is not an unsigned integer", key.0)),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| format!("`{}` = {n} is not an unsigned integer", key.0)),
        Some(v) => Err(format!("`{}` holds {}, not an integer", key.0, kind_of(v))),
    }
}

fn i64_of(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

fn f64_of(o: &Obj, key: (&str, &str)) -> Result<Option<f64>, String> {
    match get(o, key) {
        None => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        // The JSON mapping writes non-finite doubles as strings.
        Some(Value::String(s)) => s.parse().map(Some).map_err(|_| format!("`{}` = {s:?} is not a number", key.0)),
        Some(v) => Err(format!("`{}` holds {}, not a number", key.0, kind_of(v))),
    }
}

/// An enum written as its number or its name (`SPAN_KIND_SERVER`).
fn enum_of(o: &Obj, key: (&str, &str), names: &[&str]) -> Result<i32, String> {
    match get(o, key) {
        None => Ok(0),
        Some(Value::Number(n)) => n.as_i64().map(|i| i as i32).ok_or_else(|| format!("`{}` = {n} is not an enum number", key.0)),
        Some(Value::String(s)) => names.iter().position(|n| n == s).map(|i| i as i32).ok_or_else(|| format!("`{}` = {s:?} is not one of {}", key.0, names.join(", "))),
        Some(v) => Err(format!("`{}` holds {}, not an enum", key.0, kind_of(v))),
    }
}

fn id(o: &Obj, key: (&str, &str)) -> Result<Cell<'static>, String> {
    match get(o, key) {
        None => Ok(Cell::Null),
        Some(Value::String(s)) if s.is_empty() => Ok(Cell::Null),
        Some(Value::String(s)) if s.len() % 2 == 0 && s.bytes().all(|b| b.is_ascii_hexdigit()) => Ok(Cell::Text(s.to_ascii_lowercase())),
        Some(v) => Err(format!("`{}` is not a hex id: {v}", key.0)),
    }
}

fn attribute<'a>(list: &'a [Value], key: &str) -> Cell<'a> {
    list.iter()
        .filter_map(Value::as_object)
        .find(|kv| kv.get("key").and_then(Value::as_str) == Some(key))
        .and_then(|kv| kv.get("value"))
        .map(any)
        .unwrap_or(Cell::Null)
}

/// An `AnyValue`: `{"stringValue": ...}`, `{"intValue": "5"}`, arrays and maps as JSON text.
fn any(v: &Value) -> Cell<'_> {
    let Some(o) = v.as_object() else { return Cell::Null };
    if let Some(Value::String(s)) = get(o, ("stringValue", "string_value")) {
        return Cell::Str(s);
    }
    if let Some(Value::Bool(b)) = get(o, ("boolValue", "bool_value")) {
        return Cell::Bool(*b);
    }
    if let Some(i) = get(o, ("intValue", "int_value")).and_then(i64_of) {
        return Cell::Int(i);
    }
    if let Some(f) = get(o, ("doubleValue", "double_value")) {
        return match f {
            Value::Number(n) => n.as_f64().map(Cell::Float).unwrap_or(Cell::Null),
            Value::String(s) => s.parse().map(Cell::Float).unwrap_or(Cell::Null),
            _ => Cell::Null,
        };
    }
    if get(o, ("arrayValue", "array_value")).is_some() || get(o, ("kvlistValue", "kvlist_value")).is_some() || get(o, ("bytesValue", "bytes_value")).is_some() {
        return Cell::Json(plain(v).to_string());
    }
    Cell::Null
}

/// An `AnyValue` as plain JSON (arrays and maps of plain values; bytes as their base64 text).
fn plain(v: &Value) -> Value {
    let Some(o) = v.as_object() else { return Value::Null };
    if let Some(Value::Object(a)) = get(o, ("arrayValue", "array_value")) {
        let values = a.get("values").and_then(Value::as_array).map(|v| v.iter().map(plain).collect()).unwrap_or_default();
        return Value::Array(values);
    }
    if let Some(Value::Object(m)) = get(o, ("kvlistValue", "kvlist_value")) {
        let values = m.get("values").and_then(Value::as_array).cloned().unwrap_or_default();
        return Value::Object(
            values
                .iter()
                .filter_map(Value::as_object)
                .filter_map(|kv| Some((kv.get("key")?.as_str()?.to_string(), kv.get("value").map(plain).unwrap_or(Value::Null))))
                .collect(),
        );
    }
    match any(v) {
        Cell::Str(s) => Value::String(s.to_string()),
        Cell::Bool(b) => Value::Bool(b),
        Cell::Int(i) => Value::from(i),
        Cell::Float(f) => serde_json::Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null),
        _ => get(o, ("bytesValue", "bytes_value")).cloned().unwrap_or(Value::Null),
    }
}

const SPAN_KINDS: &[&str] = &["SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER", "SPAN_KIND_CLIENT", "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER"];
const STATUS_CODES: &[&str] = &["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"];

fn span(ctx: &Context, s: &Obj, rows: &mut Rows) -> Result<(), String> {
    let start = u64_of(s, ("startTimeUnixNano", "start_time_unix_nano"))?.unwrap_or(0);
    let end = u64_of(s, ("endTimeUnixNano", "end_time_unix_nano"))?.unwrap_or(0);
    let kind = enum_of(s, ("kind", "kind"), SPAN_KINDS)?;
    let status = get(s, ("status", "status")).map(|v| object(v, "status")).transpose()?;
    let code = status.map(|st| enum_of(st, ("code", "code"), STATUS_CODES)).transpose()?.unwrap_or(0);
    let (trace, span_id, parent) = (id(s, ("traceId", "trace_id"))?, id(s, ("spanId", "span_id"))?, id(s, ("parentSpanId", "parent_span_id"))?);
    let attributes = attrs(s).unwrap_or(&[]);
    rows.push(|f| {
        ctx.common(f, attributes).unwrap_or_else(|| match f {
            Field::TraceId => trace.clone(),
            Field::SpanId => span_id.clone(),
            Field::ParentSpanId => parent.clone(),
            Field::Name => string(s, ("name", "name")),
            Field::Kind => span_kind(kind),
            Field::StartTime => Cell::Nanos(start),
            Field::EndTime => Cell::Nanos(end),
            Field::DurationMs => duration_ms(start, end),
            Field::StatusCode => status_code(code),
            Field::StatusMessage => status.map(|st| string(st, ("message", "message"))).unwrap_or(Cell::Null),
            _ => Cell::Null,
        })
    });
    Ok(())
}

fn metric(ctx: &Context, m: &Obj, rows: &mut Rows) -> Result<(), String> {
    let types = [
        ("gauge", ("gauge", "gauge")),
        ("sum", ("sum", "sum")),
        ("histogram", ("histogram", "histogram")),
        ("exponential_histogram", ("exponentialHistogram", "exponential_histogram")),
        ("summary", ("summary", "summary")),
    ];
    let Some((kind, data)) = types.iter().find_map(|(kind, key)| get(m, *key).map(|d| (*kind, d))) else { return Ok(()) };
    let data = object(data, kind)?;
    for p in list(data, ("dataPoints", "data_points"))? {
        let p = object(p, "dataPoints")?;
        let start = u64_of(p, ("startTimeUnixNano", "start_time_unix_nano"))?.unwrap_or(0);
        let time = u64_of(p, ("timeUnixNano", "time_unix_nano"))?.unwrap_or(0);
        let value = match (get(p, ("asDouble", "as_double")), get(p, ("asInt", "as_int"))) {
            (Some(Value::Number(n)), _) => n.as_f64().map(Cell::Float).unwrap_or(Cell::Null),
            (Some(Value::String(s)), _) => s.parse().map(Cell::Float).map_err(|_| format!("`asDouble` = {s:?} is not a number"))?,
            (_, Some(i)) => Cell::Int(i64_of(i).ok_or_else(|| format!("`asInt` = {i} is not an integer"))?),
            _ => Cell::Null,
        };
        let points = matches!(kind, "histogram" | "exponential_histogram" | "summary");
        let count = if points { u64_of(p, ("count", "count"))?.map(|c| Cell::Int(c as i64)).unwrap_or(Cell::Int(0)) } else { Cell::Null };
        let sum = if points { f64_of(p, ("sum", "sum"))?.map(Cell::Float).unwrap_or(Cell::Null) } else { Cell::Null };
        let (min, max) = if kind == "summary" || !points {
            (Cell::Null, Cell::Null)
        } else {
            (f64_of(p, ("min", "min"))?.map(Cell::Float).unwrap_or(Cell::Null), f64_of(p, ("max", "max"))?.map(Cell::Float).unwrap_or(Cell::Null))
        };
        let attributes = attrs(p).unwrap_or(&[]);
        rows.push(|f| {
            ctx.common(f, attributes).unwrap_or_else(|| match f {
                Field::MetricName => string(m, ("name", "name")),
                Field::MetricUnit => string(m, ("unit", "unit")),
                Field::MetricType => Cell::Str(kind),
                Field::Time => Cell::Nanos(time),
                Field::StartTime => Cell::Nanos(start),
                Field::Value => value.clone(),
                Field::Count => count.clone(),
                Field::Sum => sum.clone(),
                Field::Min => min.clone(),
                Field::Max => max.clone(),
                _ => Cell::Null,
            })
        });
    }
    Ok(())
}

fn log(ctx: &Context, r: &Obj, rows: &mut Rows) -> Result<(), String> {
    let time = u64_of(r, ("timeUnixNano", "time_unix_nano"))?.unwrap_or(0);
    let observed = u64_of(r, ("observedTimeUnixNano", "observed_time_unix_nano"))?.unwrap_or(0);
    let severity = match get(r, ("severityNumber", "severity_number")) {
        None => Cell::Int(0),
        Some(v) => Cell::Int(i64_of(v).or_else(|| v.as_str().and_then(severity_by_name)).ok_or_else(|| format!("`severityNumber` = {v} is not a severity"))?),
    };
    let (trace, span_id) = (id(r, ("traceId", "trace_id"))?, id(r, ("spanId", "span_id"))?);
    let body = match get(r, ("body", "body")) {
        None => Cell::Null,
        Some(b) => match any(b) {
            Cell::Str(s) => Cell::Str(s),
            Cell::Null => Cell::Null,
            _ => Cell::Json(plain(b).to_string()),
        },
    };
    let attributes = attrs(r).unwrap_or(&[]);
    rows.push(|f| {
        ctx.common(f, attributes).unwrap_or_else(|| match f {
            Field::Time => Cell::Nanos(time),
            Field::ObservedTime => Cell::Nanos(observed),
            Field::SeverityNumber => severity.clone(),
            Field::SeverityText => string(r, ("severityText", "severity_text")),
            Field::Body => body.clone(),
            Field::TraceId => trace.clone(),
            Field::SpanId => span_id.clone(),
            _ => Cell::Null,
        })
    });
    Ok(())
}

/// `SEVERITY_NUMBER_WARN2` → 14.
fn severity_by_name(name: &str) -> Option<i64> {
    let rest = name.strip_prefix("SEVERITY_NUMBER_")?;
    let base = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
    if rest == "UNSPECIFIED" {
        return Some(0);
    }
    let split = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
    let (word, n) = rest.split_at(split);
    let i = base.iter().position(|b| *b == word)? as i64;
    let n: i64 = if n.is_empty() { 1 } else { n.parse().ok()? };
    (1..=4).contains(&n).then_some(i * 4 + n)
}
