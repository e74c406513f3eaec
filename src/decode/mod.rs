//! Raw records → Arrow batches of the job's schema, with dead letters for what does not decode.
//!
//! JSON records of jobs with flat schemas (no nested columns, no dates) go through a one-pass
//! decoder ([`flat`]) first; what it hands back, and every other job's records, go through
//! arrow-json's tape decoder in whole chunks. A record the tape refuses
//! (malformed, truncated) is set aside where it stands. arrow-json fails a whole `flush()` on
//! one value of the wrong type, so once a chunk has held one, chunks are decoded with type
//! conflicts read as nulls and only the rows holding a null are checked strictly
//! ([`Decoder::decode_tolerant`]): a few bad records per thousand cost a few percent, not a
//! bisection per chunk. Event times, decimals and integers are decoded as
//! text and converted here ([`convert`]), because arrow-json rejects epoch milliseconds in
//! strings, cuts off extra decimal digits without a word, and truncates `200.5` to an integer.

pub mod convert;
mod flat;
pub mod otlp;
pub mod pool;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use datafusion::arrow::array::{
    new_empty_array, new_null_array, Array, ArrayRef, AsArray, BooleanArray, Decimal128Builder, Int32Array, Int64Array, StringArray,
    StructArray, TimestampMillisecondArray, TimestampMillisecondBuilder, UInt32Array,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::{cast_with_options, concat_batches, CastOptions};
use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::json::reader::Decoder as JsonDecoder;
use datafusion::arrow::json::ReaderBuilder;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};

use crate::jobfile::{ColumnType, Dataflow};
use crate::source::metadata::{self, METADATA_COLUMNS};
use crate::source::{Payload, RawRecord, RecordMeta};
use crate::Millis;

// What a chunk becomes: the source's vocabulary, so a shared reader can hand a chunk over
// decoded (`crate::fleet`) without sources knowing the decoder.
pub use crate::source::{DeadLetter, Decoded};

/// Decodes chunks for one job.
pub struct Decoder {
    /// What arrow-json reads: nested structs, event times and decimals as text.
    read_schema: SchemaRef,
    leaves: Vec<Leaf>,
    schema: SchemaRef,
    event_time: usize,
    metadata: Vec<&'static str>,
    /// Set after a chunk held a type conflict: the next ones start in tolerant mode
    /// ([`Decoder::decode_tolerant`]) instead of failing a strict decode first.
    tolerant: AtomicBool,
    /// The one-pass decoder, when every column is a top-level scalar arrow-json reads as is.
    flat: Option<flat::FlatDecoder>,
    /// OpenTelemetry sources: export requests flattened into rows first.
    otlp: Option<otlp::OtlpDecoder>,
}

struct Leaf {
    name: String,
    /// Child indices from the top of `read_schema` down to the leaf.
    path: Vec<usize>,
    ty: ColumnType,
}

/// Rows decoded from some records of a chunk, and the records that did not decode.
struct Rows {
    batch: RecordBatch,
    batches: Vec<RecordBatch>,
    /// The record index of each row of `batch`.
    records: Vec<usize>,
    bad: Vec<(usize, String)>,
}

impl Rows {
    fn empty(schema: SchemaRef) -> Self {
        Rows { batch: RecordBatch::new_empty(schema), batches: Vec::new(), records: Vec::new(), bad: Vec::new() }
    }

    fn concat(&mut self) {
        let mut parts = std::mem::take(&mut self.batches);
        if self.batch.num_rows() > 0 {
            parts.insert(0, self.batch.clone());
        }
        self.batch = match parts.len() {
            0 => RecordBatch::new_empty(self.batch.schema()),
            1 => parts.pop().unwrap(),
            _ => concat_batches(&self.batch.schema(), &parts).expect("same schema"),
        };
    }

    /// Append `other`'s rows after this one's (records stay in decoding order, not sorted).
    fn append(&mut self, other: Rows) {
        self.batches.push(other.batch);
        self.records.extend(other.records);
        self.bad.extend(other.bad);
        self.concat();
    }
}

/// Feed one record to the decoder; `Err` if it is not exactly one whole JSON value.
fn feed(decoder: &mut JsonDecoder, bytes: &[u8]) -> Result<(), String> {
    let before = decoder.len();
    let taken = decoder.decode(bytes).map_err(|e| clean_arrow_error(&e.to_string()))?;
    if taken < bytes.len() && !bytes[taken..].iter().all(u8::is_ascii_whitespace) {
        return Err("trailing content after the JSON object (one object per record)".into());
    }
    if decoder.has_partial_record() {
        return Err("malformed JSON: the record ends before its value does (truncated line?)".into());
    }
    match decoder.len() - before {
        1 => Ok(()),
        0 => Err("no JSON object in the record".into()),
        values => Err(format!("expected one JSON object per record, found {values}")),
    }
}

impl Decoder {
    pub fn new(job: &Dataflow) -> Self {
        Self::with_metadata(job, metadata::decoded_for(&job.sql.text))
    }

    /// A decoder that adds the given metadata columns (see [`metadata::METADATA_COLUMNS`]);
    /// `_partition` and `_offset` are always among them.
    pub fn with_metadata(job: &Dataflow, mut metadata: Vec<&'static str>) -> Self {
        for always in metadata::ALWAYS_DECODED {
            if !metadata.contains(always) {
                metadata.push(always);
            }
        }
        metadata.sort_by_key(|m| METADATA_COLUMNS.iter().position(|n| n == m));
        let mut root = Node::default();
        for c in &job.columns {
            root.insert(&c.name.split('.').collect::<Vec<_>>(), read_type(c.ty));
        }
        let leaves = job
            .columns
            .iter()
            .map(|c| Leaf { name: c.name.clone(), path: root.path(&c.name.split('.').collect::<Vec<_>>()), ty: c.ty })
            .collect();
        let mut fields: Vec<Field> = job.columns.iter().map(|c| Field::new(&c.name, c.ty.arrow_type(), true)).collect();
        for name in &metadata {
            fields.push(Field::new(*name, metadata::data_type(name), true));
        }
        let read_schema = Arc::new(Schema::new(root.fields()));
        let otlp = otlp::OtlpDecoder::new(job, metadata.clone());
        Decoder {
            otlp,
            flat: flat::FlatDecoder::new(job),
            read_schema,
            leaves,
            schema: Arc::new(Schema::new(fields)),
            event_time: job.event_time_index(),
            metadata,
            tolerant: AtomicBool::new(false),
        }
    }

    /// The schema of decoded batches.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    pub fn decode(&self, partition: usize, payload: &Payload) -> Decoded {
        match payload {
            // The pool hands these over without a copy; this path is for callers without one.
            Payload::Decoded { decoded, .. } => return (**decoded).clone(),
            Payload::Shared(p) => return self.decode(partition, p),
            _ => {}
        }
        if let Some(otlp) = &self.otlp {
            return otlp.decode(partition, payload, &self.schema);
        }
        match payload {
            Payload::Json { data, records, meta } => self.decode_json(partition, data, records, meta.as_ref()),
            Payload::Arrow { batch, first_offset } => self.decode_arrow(partition, batch, *first_offset),
            Payload::Decoded { .. } | Payload::Shared(_) => unreachable!("matched above"),
        }
    }

    fn decode_json(&self, partition: usize, data: &[u8], records: &[RawRecord], meta: Option<&RecordMeta>) -> Decoded {
        // Columns in the job's types, with the record index of each row, from each path.
        let mut parts: Vec<(Vec<ArrayRef>, Vec<usize>)> = Vec::new();
        let rest = match &self.flat {
            None => (0..records.len()).collect(),
            Some(flat) => {
                let fast = flat.decode(data, records);
                parts.push((fast.columns, fast.records));
                fast.rest
            }
        };
        let mut dead_letters = Vec::new();
        if !rest.is_empty() {
            let Rows { batch: raw, records: tape_records, bad, .. } = self.decode_tape(data, records, &rest);
            dead_letters.extend(bad.into_iter().map(|(i, reason)| dead_letter(partition, &records[i], data, reason)));
            let columns: Vec<ArrayRef> = self.leaves.iter().map(|l| leaf_array(&raw, &l.path)).collect();
            let offsets: Vec<i64> = tape_records.iter().map(|&i| records[i].offset).collect();
            let raw_of = |row: usize| {
                let r = &records[tape_records[row]];
                data[r.start as usize..r.end as usize].to_vec()
            };
            let (columns, kept) = self.convert(partition, columns, &offsets, &mut dead_letters, raw_of);
            parts.push((columns, kept.into_iter().map(|row| tape_records[row]).collect()));
        }
        let (columns, row_records) = self.in_record_order(parts);
        let offsets: Vec<i64> = row_records.iter().map(|&i| records[i].offset).collect();
        let batch = self.assemble(partition, columns, &offsets, meta.map(|m| (m, &row_records[..])));
        dead_letters.sort_by_key(|d| d.offset);
        Decoded { batch, offsets, dead_letters }
    }

    /// The rows of both paths as one set of columns, in record order (a chunk's rows keep
    /// their order whichever path decoded them: percentiles depend on it).
    fn in_record_order(&self, parts: Vec<(Vec<ArrayRef>, Vec<usize>)>) -> (Vec<ArrayRef>, Vec<usize>) {
        let mut parts: Vec<_> = parts.into_iter().filter(|(_, rows)| !rows.is_empty()).collect();
        match parts.len() {
            0 => ((0..self.leaves.len()).map(|i| new_empty_array(self.schema.field(i).data_type())).collect(), Vec::new()),
            1 => parts.pop().unwrap(),
            _ => {
                let records: Vec<usize> = parts.iter().flat_map(|(_, r)| r.iter().copied()).collect();
                let mut order: Vec<u32> = (0..records.len() as u32).collect();
                order.sort_by_key(|&row| records[row as usize]);
                let order = UInt32Array::from(order);
                let columns = (0..self.leaves.len())
                    .map(|c| {
                        let pieces: Vec<&dyn Array> = parts.iter().map(|(cols, _)| cols[c].as_ref()).collect();
                        let joined = datafusion::arrow::compute::concat(&pieces).expect("same types");
                        datafusion::arrow::compute::take(&joined, &order, None).expect("indices in range")
                    })
                    .collect();
                (columns, order.values().iter().map(|&row| records[row as usize]).collect())
            }
        }
    }

    /// Decode the records `which` through arrow-json's tape: strictly, or tolerantly once a
    /// chunk has held a type conflict.
    fn decode_tape(&self, data: &[u8], records: &[RawRecord], which: &[usize]) -> Rows {
        let strict = if self.tolerant.load(Ordering::Relaxed) { None } else { self.decode_rows(data, records, which, false).ok() };
        match strict {
            Some(rows) => rows,
            None => self.decode_tolerant(data, records, which),
        }
    }

    /// Type conflicts read as nulls, then only the rows holding a null are decoded again
    /// strictly to tell a conflict (a dead letter) from a value that was null or absent.
    /// Rows without a null cannot hold a conflict, and a conflict-free row decodes to the same
    /// values either way, so the output equals the strict path's.
    fn decode_tolerant(&self, data: &[u8], records: &[RawRecord], which: &[usize]) -> Rows {
        let Ok(mut rows) = self.decode_rows(data, records, which, true) else {
            // Only a conflict arrow-json does not turn into a null gets here: split the chunk.
            let mut rows = Rows::empty(self.read_schema.clone());
            self.isolate(data, records, which, &mut rows);
            return rows;
        };
        let leaves: Vec<ArrayRef> = self.leaves.iter().map(|l| leaf_array(&rows.batch, &l.path)).collect();
        let candidates: Vec<usize> = (0..rows.records.len())
            .filter(|&row| leaves.iter().any(|c| c.is_null(row)))
            .map(|row| rows.records[row])
            .collect();
        // Many legitimate nulls make the second pass costly: try strict decoding first again.
        self.tolerant.store(candidates.len() * 8 < which.len().max(1), Ordering::Relaxed);
        let mut checked = Rows::empty(self.read_schema.clone());
        self.isolate(data, records, &candidates, &mut checked);
        if checked.bad.is_empty() {
            return rows;
        }
        let conflicts: std::collections::HashSet<usize> = checked.bad.iter().map(|(i, _)| *i).collect();
        let keep = BooleanArray::from(rows.records.iter().map(|i| !conflicts.contains(i)).collect::<Vec<_>>());
        rows.batch = datafusion::arrow::compute::filter_record_batch(&rows.batch, &keep).expect("filter keeps the schema");
        rows.records.retain(|i| !conflicts.contains(i));
        rows.bad.extend(checked.bad);
        rows
    }

    /// Decode `which` strictly, splitting on a type conflict until each bad record stands alone.
    fn isolate(&self, data: &[u8], records: &[RawRecord], which: &[usize], out: &mut Rows) {
        if which.is_empty() {
            return;
        }
        match self.decode_rows(data, records, which, false) {
            Ok(rows) => out.append(rows),
            Err(reason) if which.len() == 1 => out.bad.push((which[0], reason)),
            Err(_) => {
                let mid = which.len() / 2;
                self.isolate(data, records, &which[..mid], out);
                self.isolate(data, records, &which[mid..], out);
            }
        }
    }

    /// Decode the records `which` together. A record the JSON tape refuses (malformed,
    /// truncated, two objects) is set aside with its reason and its neighbours decode on; `Err`
    /// is a value that does not convert to its column (never, when `tolerant`).
    fn decode_rows(&self, data: &[u8], records: &[RawRecord], which: &[usize], tolerant: bool) -> Result<Rows, String> {
        // One more than the records: the decoder stops taking bytes once a batch is full, and a
        // record holding a second object must show up as two values, not lose its tail.
        let build = || {
            ReaderBuilder::new(self.read_schema.clone())
                .with_batch_size(which.len() + 1)
                .with_coerce_primitive(true)
                .with_ignore_type_conflicts(tolerant)
                .build_decoder()
                .map_err(|e| e.to_string())
        };
        let mut decoder = build()?;
        let mut out = Rows::empty(self.read_schema.clone());
        let mut segment: Vec<usize> = Vec::new();
        let flush = |decoder: &mut JsonDecoder, segment: &mut Vec<usize>, out: &mut Rows| -> Result<(), String> {
            if let Some(batch) = decoder.flush().map_err(|e| clean_arrow_error(&e.to_string()))? {
                out.batches.push(batch);
            }
            out.records.append(segment);
            Ok(())
        };
        for &i in which {
            let bytes = &data[records[i].start as usize..records[i].end as usize];
            // A truncated record (the common malformation) is judged on a decoder of its own,
            // so the chunk's decoder need not be rebuilt and its segment fed again.
            if bytes.trim_ascii_end().last() != Some(&b'}') {
                if let Err(reason) = feed(&mut build()?, bytes) {
                    out.bad.push((i, reason));
                    continue;
                }
            }
            match feed(&mut decoder, bytes) {
                Ok(()) => segment.push(i),
                Err(reason) => {
                    out.bad.push((i, reason));
                    // The decoder may hold part of the bad record: the segment before it again.
                    decoder = build()?;
                    for &j in segment.iter() {
                        feed(&mut decoder, &data[records[j].start as usize..records[j].end as usize])?;
                    }
                    flush(&mut decoder, &mut segment, &mut out)?;
                    decoder = build()?;
                }
            }
        }
        flush(&mut decoder, &mut segment, &mut out)?;
        out.concat();
        Ok(out)
    }

    fn decode_arrow(&self, partition: usize, input: &RecordBatch, first_offset: i64) -> Decoded {
        let mut dead_letters = Vec::new();
        let mut columns = Vec::with_capacity(self.leaves.len());
        let mut row_errors: Vec<(usize, String)> = Vec::new();
        for leaf in &self.leaves {
            let source = find_column(input, &leaf.name);
            let col = match source {
                None => new_null_array(&read_type(leaf.ty), input.num_rows()),
                Some(a) => match (leaf.ty, a.data_type()) {
                    // Text and epoch numbers go through the same checks as JSON.
                    (ColumnType::Timestamp | ColumnType::Decimal { .. }, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
                    | (ColumnType::Decimal { .. }, _)
                    | (ColumnType::Timestamp, DataType::Int64 | DataType::UInt64 | DataType::Int32) => {
                        cast_with_options(&a, &DataType::Utf8, &CastOptions::default()).expect("anything casts to text")
                    }
                    (ColumnType::Timestamp, DataType::Timestamp(_, _)) => {
                        cast_with_options(&a, &DataType::Timestamp(TimeUnit::Millisecond, None), &CastOptions::default())
                            .and_then(|a| cast_with_options(&a, &DataType::Int64, &CastOptions::default()))
                            .and_then(|a| cast_with_options(&a, &DataType::Utf8, &CastOptions::default()))
                            .unwrap_or_else(|_| new_null_array(&DataType::Utf8, input.num_rows()))
                    }
                    (ty, _) => {
                        let target = ty.arrow_type();
                        let cast = cast_with_options(&a, &target, &CastOptions { safe: true, ..Default::default() })
                            .unwrap_or_else(|_| new_null_array(&target, a.len()));
                        for row in 0..a.len() {
                            if a.is_valid(row) && cast.is_null(row) {
                                row_errors.push((row, format!("column `{}`: cannot convert the value to {target}", leaf.name)));
                            }
                        }
                        cast
                    }
                },
            };
            columns.push(col);
        }
        let offsets: Vec<i64> = (0..input.num_rows() as i64).map(|i| first_offset + i).collect();
        let row_json = |row: usize| {
            let mut out = Vec::new();
            crate::output::json::write_row(input, row, &mut out);
            out
        };
        for (row, reason) in row_errors {
            dead_letters.push(DeadLetter { partition, offset: offsets[row], reason, raw: row_json(row) });
        }
        let (batch, offsets) = self.finish(partition, columns, offsets, &mut dead_letters, row_json);
        dead_letters.sort_by_key(|d| d.offset);
        dead_letters.dedup_by_key(|d| d.offset);
        Decoded { batch, offsets, dead_letters }
    }

    /// Convert text columns to event times and decimals, drop rows with errors or no event
    /// time (as dead letters), and add the metadata columns.
    fn finish(
        &self,
        partition: usize,
        columns: Vec<ArrayRef>,
        offsets: Vec<i64>,
        dead_letters: &mut Vec<DeadLetter>,
        raw: impl Fn(usize) -> Vec<u8>,
    ) -> (RecordBatch, Vec<i64>) {
        let (columns, kept) = self.convert(partition, columns, &offsets, dead_letters, raw);
        let offsets: Vec<i64> = kept.iter().map(|&row| offsets[row]).collect();
        (self.assemble(partition, columns, &offsets, None), offsets)
    }

    /// Convert text columns to event times, decimals and integers, and drop the rows with
    /// errors or no event time, as dead letters; the columns and the rows kept.
    fn convert(
        &self,
        partition: usize,
        mut columns: Vec<ArrayRef>,
        offsets: &[i64],
        dead_letters: &mut Vec<DeadLetter>,
        raw: impl Fn(usize) -> Vec<u8>,
    ) -> (Vec<ArrayRef>, Vec<usize>) {
        let rows = offsets.len();
        let mut errors: Vec<Option<String>> = vec![None; rows];
        for (leaf, col) in self.leaves.iter().zip(columns.iter_mut()) {
            match leaf.ty {
                ColumnType::Timestamp => *col = convert_timestamps(col, &leaf.name, &mut errors),
                ColumnType::Decimal { precision, scale } => {
                    *col = convert_decimals(col, &leaf.name, precision, scale, &mut errors)
                }
                ColumnType::Int32 | ColumnType::Int64 | ColumnType::UInt64 if col.data_type() == &DataType::Utf8 => {
                    *col = convert_integers(col, &leaf.name, leaf.ty, &mut errors)
                }
                _ => {}
            }
        }
        let ts = &columns[self.event_time];
        for (row, err) in errors.iter_mut().enumerate() {
            if err.is_none() && ts.is_null(row) {
                *err = Some(format!("missing event time: column `{}` is absent or null", self.leaves[self.event_time].name));
            }
        }
        let already_dead: std::collections::HashSet<i64> = dead_letters.iter().map(|d| d.offset).collect();
        for (row, err) in errors.iter().enumerate() {
            if let Some(reason) = err {
                if !already_dead.contains(&offsets[row]) {
                    dead_letters.push(DeadLetter { partition, offset: offsets[row], reason: reason.clone(), raw: raw(row) });
                }
            }
        }
        let dead_rows: std::collections::HashSet<i64> = dead_letters.iter().map(|d| d.offset).collect();
        let kept: Vec<usize> = (0..rows).filter(|&row| !dead_rows.contains(&offsets[row])).collect();
        if kept.len() < rows {
            let mask = BooleanArray::from((0..rows).map(|row| !dead_rows.contains(&offsets[row])).collect::<Vec<_>>());
            for c in &mut columns {
                *c = datafusion::arrow::compute::filter(c, &mask).expect("filter keeps the type");
            }
        }
        (columns, kept)
    }

    /// The batch of the job's schema: the declared columns, then the metadata columns the SQL
    /// uses. `meta` gives each row's record index into the chunk's [`RecordMeta`].
    fn assemble(&self, partition: usize, mut columns: Vec<ArrayRef>, offsets: &[i64], meta: Option<(&RecordMeta, &[usize])>) -> RecordBatch {
        let n = offsets.len();
        for name in &self.metadata {
            columns.push(match (*name, &meta) {
                ("_partition", _) => Arc::new(Int32Array::from_value(partition as i32, n)),
                ("_offset", _) => Arc::new(Int64Array::from(offsets.to_vec())),
                ("_topic", Some((m, _))) => Arc::new(StringArray::from(vec![Some(m.topic.as_ref()); n])),
                ("_timestamp", Some((m, idx))) => Arc::new(
                    TimestampMillisecondArray::from(idx.iter().map(|&i| m.timestamps[i]).collect::<Vec<_>>()).with_timezone("UTC"),
                ),
                ("_trace_id", Some((m, idx))) => {
                    Arc::new(StringArray::from(idx.iter().map(|&i| m.trace_ids[i].as_deref()).collect::<Vec<_>>()))
                }
                (other, _) => new_null_array(&metadata::data_type(other), n),
            });
        }
        RecordBatch::try_new_with_options(self.schema.clone(), columns, &RecordBatchOptions::new().with_row_count(Some(n)))
            .expect("decoded columns match the job schema")
    }
}

/// Epoch milliseconds of the event-time column of a decoded batch.
pub fn event_times(batch: &RecordBatch, column: usize) -> &[Millis] {
    batch.column(column).as_primitive::<datafusion::arrow::datatypes::TimestampMillisecondType>().values()
}

fn read_type(ty: ColumnType) -> DataType {
    match ty {
        ColumnType::Timestamp | ColumnType::Decimal { .. } => DataType::Utf8,
        ColumnType::Int32 | ColumnType::Int64 | ColumnType::UInt64 => DataType::Utf8,
        other => other.arrow_type(),
    }
}

fn convert_timestamps(col: &ArrayRef, name: &str, errors: &mut [Option<String>]) -> ArrayRef {
    let text = col.as_string::<i32>();
    let mut out = TimestampMillisecondBuilder::with_capacity(text.len());
    for (row, v) in text.iter().enumerate() {
        match v.map(convert::parse_timestamp) {
            None => out.append_null(),
            Some(Ok(ms)) => out.append_value(ms),
            Some(Err(e)) => {
                errors[row].get_or_insert_with(|| format!("column `{name}`: {e}"));
                out.append_null();
            }
        }
    }
    Arc::new(out.finish().with_timezone("UTC"))
}

fn convert_decimals(col: &ArrayRef, name: &str, precision: u8, scale: i8, errors: &mut [Option<String>]) -> ArrayRef {
    let text = col.as_string::<i32>();
    let mut out = Decimal128Builder::with_capacity(text.len());
    for (row, v) in text.iter().enumerate() {
        match v.map(|t| convert::parse_decimal(t, precision, scale)) {
            None => out.append_null(),
            Some(Ok(d)) => out.append_value(d),
            Some(Err(e)) => {
                errors[row].get_or_insert_with(|| format!("column `{name}`: {e}"));
                out.append_null();
            }
        }
    }
    Arc::new(out.finish().with_precision_and_scale(precision, scale).expect("validated precision and scale"))
}

fn convert_integers(col: &ArrayRef, name: &str, ty: ColumnType, errors: &mut [Option<String>]) -> ArrayRef {
    let text = col.as_string::<i32>();
    let mut parsed: Vec<Option<i128>> = Vec::with_capacity(text.len());
    for (row, v) in text.iter().enumerate() {
        match v.map(|t| convert::parse_integer_of(t, ty)) {
            None => parsed.push(None),
            Some(Ok(n)) => parsed.push(Some(n)),
            Some(Err(e)) => {
                errors[row].get_or_insert_with(|| format!("column `{name}`: {e}"));
                parsed.push(None);
            }
        }
    }
    match ty {
        ColumnType::Int32 => Arc::new(Int32Array::from(parsed.iter().map(|v| v.map(|n| n as i32)).collect::<Vec<_>>())),
        ColumnType::Int64 => Arc::new(Int64Array::from(parsed.iter().map(|v| v.map(|n| n as i64)).collect::<Vec<_>>())),
        _ => Arc::new(datafusion::arrow::array::UInt64Array::from(parsed.iter().map(|v| v.map(|n| n as u64)).collect::<Vec<_>>())),
    }
}

fn dead_letter(partition: usize, r: &RawRecord, data: &[u8], reason: String) -> DeadLetter {
    DeadLetter { partition, offset: r.offset, reason, raw: data[r.start as usize..r.end as usize].to_vec() }
}

/// arrow-json's messages carry a "Json error: " prefix; the dead letter says it is JSON already.
fn clean_arrow_error(e: &str) -> String {
    let e = e.strip_prefix("Json error: ").unwrap_or(e);
    e.strip_prefix("Parser error: ").unwrap_or(e).to_string()
}

/// The leaf at `path`, with the nulls of every struct above it.
fn leaf_array(batch: &RecordBatch, path: &[usize]) -> ArrayRef {
    let mut array = batch.column(path[0]).clone();
    let mut nulls: Option<NullBuffer> = None;
    for &i in &path[1..] {
        let s: &StructArray = array.as_struct();
        nulls = NullBuffer::union(nulls.as_ref(), s.nulls());
        array = s.column(i).clone();
    }
    with_parent_nulls(array, nulls)
}

/// A column of an Arrow batch by declared name: top level, or a dotted path through structs.
fn find_column(batch: &RecordBatch, name: &str) -> Option<ArrayRef> {
    if let Some(c) = batch.column_by_name(name) {
        return Some(c.clone());
    }
    let mut parts = name.split('.');
    let mut array = batch.column_by_name(parts.next()?)?.clone();
    let mut nulls: Option<NullBuffer> = None;
    for part in parts {
        let s = array.as_struct_opt()?;
        nulls = NullBuffer::union(nulls.as_ref(), s.nulls());
        array = s.column_by_name(part)?.clone();
    }
    Some(with_parent_nulls(array, nulls))
}

/// A struct child is not null where its parent is: add the parents' nulls to the leaf's.
fn with_parent_nulls(array: ArrayRef, parents: Option<NullBuffer>) -> ArrayRef {
    let Some(parents) = parents else { return array };
    let merged = NullBuffer::union(Some(&parents), array.nulls());
    let data = array.to_data().into_builder().nulls(merged).build().expect("same length");
    datafusion::arrow::array::make_array(data)
}

/// The tree of nested fields arrow-json reads.
#[derive(Default)]
struct Node {
    children: Vec<(String, Node)>,
    leaf: Option<DataType>,
}

impl Node {
    fn insert(&mut self, path: &[&str], ty: DataType) {
        let idx = match self.children.iter().position(|(n, _)| n == path[0]) {
            Some(i) => i,
            None => {
                self.children.push((path[0].to_string(), Node::default()));
                self.children.len() - 1
            }
        };
        if path.len() == 1 {
            self.children[idx].1.leaf = Some(ty);
        } else {
            self.children[idx].1.insert(&path[1..], ty);
        }
    }

    fn path(&self, path: &[&str]) -> Vec<usize> {
        let i = self.children.iter().position(|(n, _)| n == path[0]).expect("inserted");
        let mut out = vec![i];
        if path.len() > 1 {
            out.extend(self.children[i].1.path(&path[1..]));
        }
        out
    }

    fn fields(&self) -> Vec<Field> {
        self.children
            .iter()
            .map(|(name, node)| match &node.leaf {
                Some(ty) => Field::new(name, ty.clone(), true),
                None => Field::new(name, DataType::Struct(Fields::from(node.fields())), true),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
