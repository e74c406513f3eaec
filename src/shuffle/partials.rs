//! Pane partials: what a scaled-out job's first stage sends through the internal topic when
//! every aggregate of its SQL merges, instead of each record.
//!
//! The job's SQL is split as a cumulative window's is ([`cumulative::split`]): the first stage
//! runs the partial query over each chunk's records of one window, and sends one row per
//! window and group (`count(*)` as a count, `avg` as a sum and a count, ...) to the internal
//! partition of the group's key; the second stage runs the final query over the partial rows
//! of each window (`sum` of the counts, ...), which gives the job's rows. A chunk of thousands
//! of records of five services becomes five partial rows.
//!
//! Lateness is judged once, in the first stage, against its partitions' clocks: a late record
//! goes to the job's `[late]` destination from there, as it is; the rest are aggregated. The
//! second stage places a partial row in its window by the window's start, and fires windows by
//! the clocks the first stages tell, as it does raw records.
//!
//! Only query jobs over tumbling windows send partials, and only when the partial rows can
//! travel as JSON and the merged result has the job's columns. The rest (an alerting kind,
//! whose evaluator reads rows as they are; a percentile, a distinct count, whose state is every
//! value) send raw records. `osprey explain` says which, and why.

use datafusion::arrow::array::UInt32Array;
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};

use crate::exec::{cumulative, WindowQuery};
use crate::job::{Job, RouteConfig, WindowConfig};
use crate::jobfile::{Column, ColumnType};
use crate::time::FiredWindow;
use crate::Millis;

/// The event-time column of partial rows: their window's start.
pub const WINDOW_COLUMN: &str = "__osprey_window";

/// A job's SQL split into what the first stage sends and what the second stage runs.
pub struct Partials {
    /// The job's SQL up to its aggregates, over one window's records of a chunk.
    partial: WindowQuery,
    /// Window size and slide (equal for tumbling windows), and the pane partials are per.
    size: Millis,
    slide: Millis,
    pane: Millis,
    /// The shuffle key's columns in partial rows; empty: every row to internal partition 0.
    key: Vec<usize>,
    converter: Option<RowConverter>,
    /// The second stage's job: partial rows in, the job's rows out.
    second: Job,
}

impl Partials {
    /// The split of `job`, re-keyed by `key`, when it asks for partials
    /// (`[source] shuffle = "partials"`), or why it sends raw records.
    pub fn plan(job: &Job, key: &[String]) -> Result<Partials, String> {
        if !job.pane_partials {
            return Err("the default".into());
        }
        Self::split(job, key)
    }

    fn split(job: &Job, key: &[String]) -> Result<Partials, String> {
        if job.kind.raises_alerts() {
            return Err(format!("a {} job's evaluator reads the rows of its windows as they are", job.kind.name()));
        }
        let (size, slide) = match job.window {
            WindowConfig::Tumbling { size } => (size, size),
            WindowConfig::Hopping { size, slide } => (size, slide),
            _ => return Err("only tumbling and hopping windows send partials".into()),
        };
        if !crate::source::metadata::referenced_by(&job.sql.text).is_empty() {
            return Err("its SQL reads message metadata, which partials do not carry".into());
        }
        let flow = job.dataflow();
        let split = cumulative::split(&flow).map_err(|e| e.message.replace("a cumulative window", "a partial"))?;
        let bounds = ["window_start", "window_end"];
        if size != slide && bounds.iter().any(|b| split.window_partial.to_ascii_lowercase().contains(b)) {
            return Err("its WHERE reads the window's bounds, which a pane of a hopping window does not have".into());
        }
        let mut partial_flow = flow.clone();
        partial_flow.sql.text = split.window_partial.clone();
        let partial = WindowQuery::plan(&partial_flow).map_err(|e| e.message)?;
        let schema = partial.output_schema();
        let mut columns = Vec::new();
        for f in schema.fields() {
            if f.name().contains('.') || f.name() == WINDOW_COLUMN {
                return Err(format!("its partial column `{}` cannot be a JSON field of its own", f.name()));
            }
            let ty = column_type(f.data_type()).ok_or_else(|| format!("its partial column `{}` is of type {}, which partial rows do not carry", f.name(), f.data_type()))?;
            columns.push(Column { name: f.name().clone(), ty });
        }
        columns.push(Column { name: WINDOW_COLUMN.into(), ty: ColumnType::Timestamp });
        let mut second = job.clone();
        second.columns = columns;
        second.event_time.column = WINDOW_COLUMN.into();
        second.sql.text = cumulative::reading(&split.final_, "events");
        // Dead letters and late records are routed by the first stage (a file route is one
        // writer's): what the second could find is said on stderr.
        second.dead_letter = RouteConfig::Stderr;
        second.late = RouteConfig::Stderr;
        let merged = WindowQuery::plan(&second.dataflow()).map_err(|e| format!("the merge of its partials does not plan: {}", e.message))?.output_schema();
        let whole = WindowQuery::plan(&flow).map_err(|e| e.message)?.output_schema();
        if !same_columns(&merged, &whole) {
            return Err("the merge of its partials gives other columns than its SQL".into());
        }
        let key: Vec<usize> = key.iter().map(|k| schema.index_of(k).map_err(|_| format!("the key column `{k}` is not a column of its partials"))).collect::<Result<_, _>>()?;
        let converter = if key.is_empty() {
            None
        } else {
            Some(RowConverter::new(key.iter().map(|&i| SortField::new(schema.field(i).data_type().clone())).collect()).map_err(|e| e.to_string())?)
        };
        Ok(Partials { partial, size, slide, pane: gcd(size, slide), key, converter, second })
    }

    /// The job the second stage runs over the partial rows.
    pub fn second_stage(&self) -> &Job {
        &self.second
    }

    /// The start of the pane holding event time `t` (its window's, for tumbling windows).
    pub fn pane_of(&self, t: Millis) -> Millis {
        t - t.rem_euclid(self.pane)
    }

    /// The end of the last window holding event time `t`: once the watermark is past it (and
    /// the allowed lateness), the record is late.
    pub fn last_end(&self, t: Millis) -> Millis {
        let p = self.pane_of(t);
        p - p.rem_euclid(self.slide) + self.size
    }

    /// The partial rows of `rows` of `batch` (records of the pane starting at `start`): each
    /// as the JSON the second stage decodes, with the hash of its key.
    pub fn aggregate(&self, batch: &RecordBatch, start: Millis, rows: &[u32]) -> anyhow::Result<Vec<(u64, Vec<u8>)>> {
        let taken = if rows.len() == batch.num_rows() { batch.clone() } else { take_record_batch(batch, &UInt32Array::from(rows.to_vec()))? };
        // A tumbling window's pane is the window; a hopping window's pane has no bounds of its
        // own, and its partial reads none (checked when planned).
        let window = FiredWindow { start, end: start + self.pane, key: Vec::new(), batches: vec![taken], update: false, revision: 0 };
        let mut out = Vec::new();
        for b in self.partial.run(&window)? {
            let hashes: Vec<u64> = match &self.converter {
                None => vec![0; b.num_rows()],
                Some(converter) => {
                    let columns: Vec<_> = self.key.iter().map(|&i| b.column(i).clone()).collect();
                    let keys = converter.convert_columns(&columns)?;
                    (0..b.num_rows()).map(|i| crate::checkpoint::fnv(keys.row(i).as_ref())).collect()
                }
            };
            for (i, hash) in hashes.into_iter().enumerate() {
                let mut row = Vec::new();
                crate::output::json::write_row(&b, i, &mut row);
                let mut json = format!("{{\"{WINDOW_COLUMN}\":{start},").into_bytes();
                json.extend_from_slice(&row[1..]);
                out.push((hash, json));
            }
        }
        Ok(out)
    }
}

/// Why `job` re-keyed by `key` sends raw records, or `None` when it sends partials.
pub fn why_raw(job: &Job, key: &[String]) -> Option<String> {
    match (Partials::split(job, key), job.pane_partials) {
        (Err(why), _) => Some(why),
        (Ok(_), true) => None,
        (Ok(_), false) => Some(
            "the default; its aggregates merge, so `[source] shuffle = \"partials\"` would send one row per pane and group instead (lateness then judged in the first stage)".into(),
        ),
    }
}

fn gcd(a: Millis, b: Millis) -> Millis {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The job file type a partial column decodes as, where there is one.
fn column_type(t: &DataType) -> Option<ColumnType> {
    Some(match t {
        DataType::Utf8 => ColumnType::String,
        DataType::Int32 => ColumnType::Int32,
        DataType::Int64 => ColumnType::Int64,
        DataType::UInt64 => ColumnType::UInt64,
        DataType::Float32 => ColumnType::Float32,
        DataType::Float64 => ColumnType::Float64,
        DataType::Boolean => ColumnType::Bool,
        DataType::Date32 => ColumnType::Date,
        DataType::Timestamp(TimeUnit::Millisecond, _) => ColumnType::Timestamp,
        DataType::Decimal128(p, s) => ColumnType::Decimal { precision: *p, scale: *s },
        _ => return None,
    })
}

/// The same column names, and types but for a decimal's precision (a merged sum is widened;
/// its values, and so its JSON, are the same).
fn same_columns(a: &SchemaRef, b: &SchemaRef) -> bool {
    a.fields().len() == b.fields().len()
        && a.fields().iter().zip(b.fields()).all(|(x, y)| {
            x.name() == y.name()
                && match (x.data_type(), y.data_type()) {
                    (DataType::Decimal128(_, s), DataType::Decimal128(_, t)) => s == t,
                    (p, q) => p == q,
                }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Decoder;
    use crate::source::{Payload, RawRecord};

    const TUMBLING: &str = "kind = \"tumbling\"\nsize = \"10s\"";
    const HOPPING: &str = "kind = \"hopping\"\nsize = \"10s\"\nslide = \"4s\"";

    fn job(sql: &str, window: &str) -> Job {
        let text = format!(
            "name = \"p\"\nsql = \"{sql}\"\n[source]\nkind = \"file\"\npath = \"x.jsonl\"\nshuffle = \"partials\"\n[source.schema]\nts = \"timestamp\"\nservice = \"string\"\nhost = \"string\"\nbytes = \"int64\"\nms = \"float64\"\nprice = \"decimal(10,2)\"\n[event_time]\ncolumn = \"ts\"\n[window]\n{window}\n"
        );
        crate::job::parse(std::path::Path::new("p.toml"), &text).unwrap()
    }

    fn payload(lines: &[Vec<u8>]) -> Payload {
        let (mut data, mut records) = (Vec::new(), Vec::new());
        for (i, l) in lines.iter().enumerate() {
            records.push(RawRecord { start: data.len() as u32, end: (data.len() + l.len()) as u32, offset: i as i64 });
            data.extend_from_slice(l);
            data.push(b'\n');
        }
        Payload::Json { data, records, meta: None }
    }

    fn json_lines(batches: &[RecordBatch]) -> Vec<String> {
        let mut out = Vec::new();
        for b in batches {
            crate::output::json::write_rows(b, &mut out);
        }
        String::from_utf8(out).unwrap().lines().map(String::from).collect()
    }

    /// Records sent as pane partials, chunk by chunk, and merged by the second stage's job
    /// give each window the rows the job's SQL gives over the records themselves: counts,
    /// integer and decimal sums, minima and maxima, averages, HAVING and ORDER BY; tumbling
    /// windows, and hopping ones whose windows share panes.
    #[test]
    fn partials_of_chunks_merged_give_the_rows_of_the_job_s_sql() {
        let sql = "SELECT window_start, service, count(*) AS n, sum(bytes) AS bytes, sum(price) AS amount, max(ms) AS slowest, min(host) AS first_host, avg(bytes) AS mean FROM events WHERE bytes > 10 GROUP BY window_start, window_end, service HAVING count(*) > 2 ORDER BY service";
        let services = ["checkout", "frontend", "search", "payments"];
        let base = 1_700_000_000_000i64;
        let records: Vec<Vec<u8>> = (0..3_000i64)
            .map(|i| {
                let price = format!("{}.{:02}", i % 97, i % 100);
                format!(
                    r#"{{"ts":{},"service":"{}","host":"h{}","bytes":{},"ms":{},"price":"{price}"}}"#,
                    base + i * 37,
                    services[(i * 7 % 11 % 4) as usize],
                    i % 5,
                    i * 13 % 500,
                    (i as f64 * 0.37).sin() * 100.0
                )
                .into_bytes()
            })
            .collect();
        for (window, size, slide) in [(TUMBLING, 10_000, 10_000), (HOPPING, 10_000, 4_000)] {
            let job = job(sql, window);
            let partials = Partials::plan(&job, &["service".to_string()]).unwrap_or_else(|why| panic!("{why}"));
            let decoder = Decoder::new(&job.dataflow());
            let second_decoder = Decoder::new(&partials.second_stage().dataflow());
            let whole = WindowQuery::plan(&job.dataflow()).unwrap();
            let merged = WindowQuery::plan(&partials.second_stage().dataflow()).unwrap();
            // The first stage's chunks: uneven cuts, each aggregated per pane.
            let mut sent: Vec<(Millis, Vec<u8>)> = Vec::new();
            let mut at = 0;
            for cut in [1, 700, 13, 1_286, 1_000] {
                let decoded = decoder.decode(0, &payload(&records[at..at + cut]));
                assert!(decoded.dead_letters.is_empty());
                let times = crate::decode::event_times(&decoded.batch, job.event_time_index());
                let mut panes: std::collections::BTreeMap<Millis, Vec<u32>> = Default::default();
                for (row, &t) in times.iter().enumerate() {
                    panes.entry(partials.pane_of(t)).or_default().push(row as u32);
                }
                for (start, rows) in panes {
                    sent.extend(partials.aggregate(&decoded.batch, start, &rows).unwrap().into_iter().map(|(_, json)| (start, json)));
                }
                at += cut;
            }
            let all = decoder.decode(0, &payload(&records));
            let times = crate::decode::event_times(&all.batch, job.event_time_index());
            let (first, last) = (times.iter().min().copied().unwrap(), times.iter().max().copied().unwrap());
            let (mut windows, mut compared) = (0, 0);
            let mut start = first - first.rem_euclid(slide) - size + slide;
            while start <= last {
                let end = start + size;
                let of_window: Vec<u32> = (0..times.len() as u32).filter(|&r| (start..end).contains(&times[r as usize])).collect();
                let rows: Vec<Vec<u8>> = sent.iter().filter(|(p, _)| (start..end).contains(p)).map(|(_, j)| j.clone()).collect();
                let fired = |batches| FiredWindow { start, end, key: Vec::new(), batches, update: false, revision: 0 };
                let expected = json_lines(&whole.run(&fired(vec![take_record_batch(&all.batch, &UInt32Array::from(of_window)).unwrap()])).unwrap());
                let partial_rows = second_decoder.decode(0, &payload(&rows));
                assert!(partial_rows.dead_letters.is_empty(), "{:?}", partial_rows.dead_letters);
                assert_eq!(json_lines(&merged.run(&fired(vec![partial_rows.batch])).unwrap()), expected, "{window}: window {start}");
                windows += 1;
                compared += expected.len();
                start += slide;
            }
            assert!(windows > 5 && compared > 20, "{window}: {windows} windows, {compared} rows");
        }
    }

    /// SQL whose state is every value, that reads message metadata, or (hopping windows) the
    /// window's bounds before aggregating, is sent as records; and so is any job that does not
    /// ask for partials.
    #[test]
    fn what_does_not_merge_is_sent_as_records() {
        for (sql, window, why) in [
            ("SELECT window_start, service, approx_percentile_cont(ms, 0.99) AS p99 FROM events GROUP BY window_start, window_end, service", TUMBLING, "approx_percentile_cont"),
            ("SELECT window_start, service, count(DISTINCT host) AS hosts FROM events GROUP BY window_start, window_end, service", TUMBLING, "DISTINCT"),
            ("SELECT window_start, service, _partition AS p, count(*) AS n FROM events GROUP BY window_start, window_end, service, _partition", TUMBLING, "metadata"),
            ("SELECT window_start, service, count(*) AS n FROM events WHERE ts >= window_start + INTERVAL '1 second' GROUP BY window_start, window_end, service", HOPPING, "bounds"),
        ] {
            let reason = why_raw(&job(sql, window), &["service".to_string()]).unwrap_or_else(|| panic!("{sql} sends partials"));
            assert!(reason.contains(why), "{sql}: {reason}");
        }
        // Records are the default: partials only when the job asks.
        let mut asked = job("SELECT window_start, service, count(*) AS n FROM events GROUP BY window_start, window_end, service", TUMBLING);
        assert!(why_raw(&asked, &["service".to_string()]).is_none());
        asked.pane_partials = false;
        assert!(why_raw(&asked, &["service".to_string()]).is_some_and(|w| w.contains("shuffle = \"partials\"")));
    }
}
