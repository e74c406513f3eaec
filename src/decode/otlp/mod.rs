//! OpenTelemetry input (`format = "otlp_proto"` or `"otlp_json"`): each record is one export
//! request, as the Collector's Kafka exporter writes them (or, `otlp_json`, as its file exporter
//! writes them, one per line), flattened into one row per span, metric data point or log record.
//!
//! Only the declared columns are read ([`Field`] names them, `../shared/DESIGN.md` fixes the
//! names). Each row is written as a small JSON object keyed by column position and handed to
//! the ordinary JSON decoder, so every type conversion, null and dead-letter rule is the JSON
//! path's: a request that does not decode is one dead letter (its partition, offset and reason),
//! a span whose value does not fit its declared type is one dead letter, a missing attribute is
//! null.
//!
//! `otlp_proto` is decoded with the generated messages of `opentelemetry-proto` (prost).
//! `otlp_json` is read by the OTLP/JSON rules (lowerCamelCase keys, hex ids, 64-bit integers as
//! strings or numbers, enums as numbers or names) in [`json`]: the crate's own serde support
//! drops metric data points in that format (opentelemetry-rust issue 3527).

mod json;
mod lite;
mod proto;
mod typed;

use std::fmt::Write as _;

use crate::jobfile::{Column, ColumnType, OtlpEncoding, Signal};

/// A column of an OTLP job: which part of a span, data point or log record it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    /// `resource.<key>`: an attribute of the resource (`resource.service.name`).
    Resource(String),
    ScopeName,
    ScopeVersion,
    /// `attributes.<key>`: the span's, data point's or log record's own attribute.
    Attribute(String),
    TraceId,
    SpanId,
    ParentSpanId,
    Name,
    Kind,
    StartTime,
    EndTime,
    DurationMs,
    StatusCode,
    StatusMessage,
    MetricName,
    MetricUnit,
    MetricType,
    Time,
    Value,
    Count,
    Sum,
    Min,
    Max,
    ObservedTime,
    SeverityNumber,
    SeverityText,
    Body,
}

const COMMON: &[&str] = &["resource.<key>", "scope.name", "scope.version", "attributes.<key>"];
const TRACES: &[&str] = &["trace_id", "span_id", "parent_span_id", "name", "kind", "start_time", "end_time", "duration_ms", "status_code", "status_message"];
const METRICS: &[&str] = &["metric_name", "metric_unit", "metric_type", "time", "start_time", "value", "count", "sum", "min", "max"];
const LOGS: &[&str] = &["time", "observed_time", "severity_number", "severity_text", "body", "trace_id", "span_id"];

impl Field {
    /// The field a column of `signal` reads, or `None` for a name the contract does not have.
    pub fn parse(signal: Signal, name: &str) -> Option<Field> {
        if let Some(key) = name.strip_prefix("resource.").filter(|k| !k.is_empty()) {
            return Some(Field::Resource(key.to_string()));
        }
        if let Some(key) = name.strip_prefix("attributes.").filter(|k| !k.is_empty()) {
            return Some(Field::Attribute(key.to_string()));
        }
        let field = match name {
            "scope.name" => Field::ScopeName,
            "scope.version" => Field::ScopeVersion,
            _ => match (signal, name) {
                (Signal::Traces | Signal::Logs, "trace_id") => Field::TraceId,
                (Signal::Traces | Signal::Logs, "span_id") => Field::SpanId,
                (Signal::Traces, "parent_span_id") => Field::ParentSpanId,
                (Signal::Traces, "name") => Field::Name,
                (Signal::Traces, "kind") => Field::Kind,
                (Signal::Traces | Signal::Metrics, "start_time") => Field::StartTime,
                (Signal::Traces, "end_time") => Field::EndTime,
                (Signal::Traces, "duration_ms") => Field::DurationMs,
                (Signal::Traces, "status_code") => Field::StatusCode,
                (Signal::Traces, "status_message") => Field::StatusMessage,
                (Signal::Metrics, "metric_name") => Field::MetricName,
                (Signal::Metrics, "metric_unit") => Field::MetricUnit,
                (Signal::Metrics, "metric_type") => Field::MetricType,
                (Signal::Metrics | Signal::Logs, "time") => Field::Time,
                (Signal::Metrics, "value") => Field::Value,
                (Signal::Metrics, "count") => Field::Count,
                (Signal::Metrics, "sum") => Field::Sum,
                (Signal::Metrics, "min") => Field::Min,
                (Signal::Metrics, "max") => Field::Max,
                (Signal::Logs, "observed_time") => Field::ObservedTime,
                (Signal::Logs, "severity_number") => Field::SeverityNumber,
                (Signal::Logs, "severity_text") => Field::SeverityText,
                (Signal::Logs, "body") => Field::Body,
                _ => return None,
            },
        };
        Some(field)
    }

    /// The column names a signal has, for errors.
    pub fn names(signal: Signal) -> Vec<&'static str> {
        let own = match signal {
            Signal::Traces => TRACES,
            Signal::Metrics => METRICS,
            Signal::Logs => LOGS,
        };
        own.iter().chain(COMMON).copied().collect()
    }
}

/// One value of a row, before it is written in its column's type.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell<'a> {
    Null,
    Str(&'a str),
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Nanoseconds since the epoch (0: unset).
    Nanos(u64),
    /// An array or map attribute, or a non-string body, as JSON text.
    Json(String),
    /// A string field whose bytes are not UTF-8.
    BadText,
}

/// Lower-case hex of an id; empty ids (no parent) are null.
pub fn hex_id(bytes: &[u8]) -> Cell<'static> {
    if bytes.is_empty() {
        return Cell::Null;
    }
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    Cell::Text(s)
}

pub fn span_kind(kind: i32) -> Cell<'static> {
    Cell::Str(match kind {
        1 => "internal",
        2 => "server",
        3 => "client",
        4 => "producer",
        5 => "consumer",
        _ => "unspecified",
    })
}

pub fn status_code(code: i32) -> Cell<'static> {
    Cell::Str(match code {
        1 => "ok",
        2 => "error",
        _ => "unset",
    })
}

pub fn duration_ms(start: u64, end: u64) -> Cell<'static> {
    if start == 0 || end == 0 {
        return Cell::Null;
    }
    Cell::Float((end as i128 - start as i128) as f64 / 1e6)
}

/// Flattens export requests into JSON rows for the JSON decoder.
#[derive(Debug, Clone)]
pub struct Flattener {
    pub signal: Signal,
    pub encoding: OtlpEncoding,
    fields: Vec<Field>,
    types: Vec<ColumnType>,
}

impl Flattener {
    /// `None` if a column is not a field of the signal (validation refuses such jobs first).
    pub fn new(signal: Signal, encoding: OtlpEncoding, columns: &[Column]) -> Option<Flattener> {
        let fields = columns.iter().map(|c| Field::parse(signal, &c.name)).collect::<Option<Vec<_>>>()?;
        Some(Flattener { signal, encoding, fields, types: columns.iter().map(|c| c.ty).collect() })
    }

    /// Append one JSON object per span (data point, log record) of `payload` to `out`, with
    /// the column at position `i` under the key `c{i}`; the number of rows, or why the payload
    /// is not an export request of this signal.
    pub fn flatten(&self, payload: &[u8], out: &mut Vec<u8>, ends: &mut Vec<usize>) -> Result<usize, String> {
        let mut rows = Rows { flattener: self, target: Target::Json { out, ends }, count: 0, bad_text: false };
        self.walk(payload, &mut rows)?;
        Ok(rows.count)
    }

    fn walk(&self, payload: &[u8], rows: &mut Rows) -> Result<(), String> {
        match self.encoding {
            OtlpEncoding::Proto => proto::flatten(self.signal, payload, rows),
            OtlpEncoding::Json => json::flatten(self.signal, payload, rows),
        }
    }
}

/// Where a walker puts rows: it asks for each field's cell of the current item.
pub struct Rows<'f, 'o> {
    flattener: &'f Flattener,
    target: Target<'o>,
    count: usize,
    /// A declared string that is not UTF-8 was read: the payload is not a valid request.
    pub bad_text: bool,
}

enum Target<'o> {
    /// JSON objects for the JSON decoder, and where each ends.
    Json { out: &'o mut Vec<u8>, ends: &'o mut Vec<usize> },
    /// Straight into columns of the declared types; `exact` turns false at the first value
    /// only the JSON path's rules can judge.
    Columns { columns: &'o mut [typed::Builder], event_time: usize, exact: &'o mut bool },
}

impl Rows<'_, '_> {
    /// One row: `cell(i, field)` gives column `i`'s value.
    pub fn push<'a>(&mut self, mut cell: impl FnMut(&Field) -> Cell<'a>) {
        self.count += 1;
        let (out, ends) = match &mut self.target {
            Target::Json { out, ends } => (out, ends),
            Target::Columns { columns, event_time, exact } => {
                if **exact {
                    for (i, (field, builder)) in self.flattener.fields.iter().zip(columns.iter_mut()).enumerate() {
                        let value = cell(field);
                        if value == Cell::BadText {
                            self.bad_text = true;
                            return;
                        }
                        if !builder.append(value, i == *event_time) {
                            **exact = false;
                            return;
                        }
                    }
                }
                return;
            }
        };
        out.push(b'{');
        let mut first = true;
        for (i, (field, ty)) in self.flattener.fields.iter().zip(&self.flattener.types).enumerate() {
            let value = cell(field);
            if value == Cell::Null {
                continue;
            }
            if value == Cell::BadText {
                self.bad_text = true;
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            let _ = write!(Writer(out), "\"c{i}\":");
            write_cell(out, value, *ty);
        }
        out.push(b'}');
        ends.push(out.len());
    }
}

struct Writer<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// A cell as JSON, shaped for the column's declared type: text for string columns, epoch
/// milliseconds for timestamps given in nanoseconds, numbers as numbers.
fn write_cell(out: &mut Vec<u8>, value: Cell, ty: ColumnType) {
    let text_column = matches!(ty, ColumnType::String);
    match value {
        Cell::Null | Cell::BadText => out.extend_from_slice(b"null"),
        Cell::Str(s) => write_string(out, s),
        Cell::Text(s) | Cell::Json(s) => write_string(out, &s),
        Cell::Bool(b) if text_column => write_string(out, if b { "true" } else { "false" }),
        Cell::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        Cell::Int(i) if text_column => write_string(out, &i.to_string()),
        Cell::Int(i) => {
            let _ = write!(Writer(out), "{i}");
        }
        Cell::Float(f) if !f.is_finite() => out.extend_from_slice(b"null"),
        Cell::Float(f) if text_column => write_string(out, &f.to_string()),
        Cell::Float(f) => {
            let _ = write!(Writer(out), "{f:?}");
        }
        Cell::Nanos(0) => out.extend_from_slice(b"null"),
        Cell::Nanos(n) if matches!(ty, ColumnType::Timestamp) => {
            let _ = write!(Writer(out), "{}", n / 1_000_000);
        }
        Cell::Nanos(n) if text_column => write_string(out, &n.to_string()),
        Cell::Nanos(n) => {
            let _ = write!(Writer(out), "{n}");
        }
    }
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(Writer(out), "\\u{:04x}", c as u32);
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// An attribute list's value for `key`.
pub fn find<'a, K>(list: &'a [K], key: &str, key_of: impl Fn(&K) -> &str) -> Option<&'a K> {
    list.iter().find(|kv| key_of(kv) == key)
}

/// A decoder for OpenTelemetry records: export requests flattened into rows, the rows decoded
/// by a JSON decoder whose columns are named by position, then given their declared names.
pub struct OtlpDecoder {
    flattener: Flattener,
    inner: Box<super::Decoder>,
    names: Vec<String>,
}

impl OtlpDecoder {
    pub fn new(flow: &crate::jobfile::Dataflow, metadata: Vec<&'static str>) -> Option<OtlpDecoder> {
        let crate::jobfile::InputFormat::Otlp { encoding, signal } = flow.input else { return None };
        let flattener = Flattener::new(signal, encoding, &flow.columns)?;
        let mut rows = flow.clone();
        rows.input = crate::jobfile::InputFormat::Json;
        rows.columns = flow.columns.iter().enumerate().map(|(i, c)| Column { name: format!("c{i}"), ty: c.ty }).collect();
        rows.event_time.column = format!("c{}", flow.event_time_index());
        let inner = Box::new(super::Decoder::with_metadata(&rows, metadata));
        Some(OtlpDecoder { flattener, inner, names: flow.columns.iter().map(|c| c.name.clone()).collect() })
    }

    pub fn decode(&self, partition: usize, payload: &crate::source::Payload, schema: &datafusion::arrow::datatypes::SchemaRef) -> super::Decoded {
        use crate::source::Payload;
        let Payload::Json { data, records, meta } = payload else {
            unreachable!("OpenTelemetry sources give records as bytes (Kafka messages or lines)")
        };
        if self.flattener.encoding == OtlpEncoding::Proto {
            if let Some(decoded) = self.decode_typed(partition, data, records, meta.as_ref(), schema) {
                return decoded;
            }
        }
        self.decode_rows(partition, payload, schema)
    }

    /// Every request flattened into JSON rows, decoded by the JSON decoder.
    pub(super) fn decode_rows(&self, partition: usize, payload: &crate::source::Payload, schema: &datafusion::arrow::datatypes::SchemaRef) -> super::Decoded {
        use crate::source::{Payload, RawRecord, RecordMeta};
        let Payload::Json { data, records, meta } = payload else { unreachable!("checked by decode") };
        let (mut out, mut ends, mut rows) = (Vec::with_capacity(data.len()), Vec::new(), Vec::new());
        let mut row_meta = meta.as_ref().map(|m| RecordMeta { topic: m.topic.clone(), timestamps: Vec::new(), trace_ids: Vec::new() });
        let mut dead_letters = Vec::new();
        for (i, r) in records.iter().enumerate() {
            let bytes = &data[r.start as usize..r.end as usize];
            let (before, first) = (out.len(), ends.len());
            match self.flattener.flatten(bytes, &mut out, &mut ends) {
                Ok(_) => {
                    for k in first..ends.len() {
                        let start = if k == first { before } else { ends[k - 1] };
                        rows.push(RawRecord { start: start as u32, end: ends[k] as u32, offset: r.offset });
                        if let (Some(m), Some(all)) = (row_meta.as_mut(), meta.as_ref()) {
                            m.timestamps.push(all.timestamps.get(i).copied().flatten());
                            m.trace_ids.push(all.trace_ids.get(i).cloned().flatten());
                        }
                    }
                }
                Err(reason) => {
                    out.truncate(before);
                    ends.truncate(first);
                    dead_letters.push(super::DeadLetter { partition, offset: r.offset, reason, raw: bytes.to_vec() });
                }
            }
        }
        let flat = Payload::Json { data: out, records: rows, meta: row_meta };
        let mut decoded = self.inner.decode(partition, &flat);
        decoded.batch = RecordBatch::try_new(schema.clone(), decoded.batch.columns().to_vec()).expect("the same columns under their declared names");
        for d in &mut decoded.dead_letters {
            d.raw = self.named(&d.raw);
            for (i, name) in self.names.iter().enumerate().rev() {
                d.reason = d.reason.replace(&format!("`c{i}`"), &format!("`{name}`"));
            }
        }
        decoded.dead_letters.extend(dead_letters);
        decoded.dead_letters.sort_by_key(|d| d.offset);
        decoded
    }

    /// Protobuf requests straight into columns of the declared types, when every value is one
    /// the JSON path would take as it is (a string in a string column, an integer in range, a
    /// time in nanoseconds, an event time present); otherwise `None`, and the chunk goes the
    /// JSON way, which judges the rest with its own rules and reasons.
    fn decode_typed(
        &self,
        partition: usize,
        data: &[u8],
        records: &[crate::source::RawRecord],
        meta: Option<&crate::source::RecordMeta>,
        schema: &datafusion::arrow::datatypes::SchemaRef,
    ) -> Option<super::Decoded> {
        let mut columns: Vec<typed::Builder> = self.flattener.types.iter().map(|t| typed::Builder::new(*t)).collect::<Option<_>>()?;
        let mut exact = true;
        let (mut offsets, mut row_records, mut dead_letters) = (Vec::new(), Vec::new(), Vec::new());
        let event_time = self.inner.event_time;
        for (i, r) in records.iter().enumerate() {
            let bytes = &data[r.start as usize..r.end as usize];
            let mut rows = Rows { flattener: &self.flattener, target: Target::Columns { columns: &mut columns, event_time, exact: &mut exact }, count: 0, bad_text: false };
            match self.flattener.walk(bytes, &mut rows) {
                Ok(()) => {
                    let n = rows.count;
                    offsets.extend(std::iter::repeat_n(r.offset, n));
                    row_records.extend(std::iter::repeat_n(i, n));
                }
                // A request that fails before its first row is one dead letter; one that fails
                // after some (a string that is not UTF-8) sends the chunk the JSON way, which
                // takes its rows back.
                Err(_) if rows.count > 0 => return None,
                Err(reason) => dead_letters.push(super::DeadLetter { partition, offset: r.offset, reason, raw: bytes.to_vec() }),
            }
            if !exact {
                return None;
            }
        }
        let arrays = columns.into_iter().map(typed::Builder::finish).collect();
        let batch = self.inner.assemble(partition, arrays, &offsets, meta.map(|m| (m, &row_records[..])));
        let batch = RecordBatch::try_new(schema.clone(), batch.columns().to_vec()).expect("the same columns under their declared names");
        Some(super::Decoded { batch, offsets, dead_letters })
    }

    /// A flattened row with its columns' declared names, for a dead letter.
    fn named(&self, row: &[u8]) -> Vec<u8> {
        let Ok(serde_json::Value::Object(o)) = serde_json::from_slice::<serde_json::Value>(row) else { return row.to_vec() };
        let renamed: serde_json::Map<String, serde_json::Value> = o
            .into_iter()
            .map(|(k, v)| {
                let name = k.strip_prefix('c').and_then(|i| i.parse::<usize>().ok()).and_then(|i| self.names.get(i)).cloned().unwrap_or(k);
                (name, v)
            })
            .collect();
        serde_json::to_vec(&renamed).unwrap_or_else(|_| row.to_vec())
    }
}

use datafusion::arrow::record_batch::RecordBatch;

#[cfg(test)]
mod tests;
