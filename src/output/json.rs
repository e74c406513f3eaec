//! Result rows as JSON objects, the format of `../shared/DESIGN.md`: timestamps as RFC 3339 in
//! UTC with `Z`, decimals as strings, integers and floats as numbers, keys in SQL order.
//! Non-finite floats, which JSON cannot hold, are `null`.

use chrono::SecondsFormat;
use datafusion::arrow::array::*;
use datafusion::arrow::datatypes::*;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

/// Every row of `batch`, one JSON object per line.
/// The rows of one fired window as JSON lines, with the markers that let a consumer fold
/// updates: `"_revision": n` on every row of a window's n-th update (its rows replace those of
/// every lower revision of the same window), `"_incomplete": true` on a window emitted at a
/// stop before it closed. An update that leaves the window with no rows is one line,
/// `{"window_start", "window_end", "_revision": n, "_rows": 0}`, so the retraction is seen.
pub fn write_window(result: &super::WindowResult, out: &mut Vec<u8>) {
    if result.update && result.rows() == 0 {
        write_empty_update(result, out);
        out.push(b'\n');
        return;
    }
    for b in result.batches {
        for row in 0..b.num_rows() {
            write_row_marked(b, row, result.revision, result.incomplete, out);
            out.push(b'\n');
        }
    }
}

/// A row with the window's markers (see [`write_window`]).
pub fn write_row_marked(batch: &RecordBatch, row: usize, revision: u32, incomplete: bool, out: &mut Vec<u8>) {
    write_row(batch, row, out);
    if revision == 0 && !incomplete {
        return;
    }
    out.pop();
    if revision > 0 {
        out.extend_from_slice(format!(",\"_revision\":{revision}").as_bytes());
    }
    if incomplete {
        out.extend_from_slice(b",\"_incomplete\":true");
    }
    out.push(b'}');
}

/// The record that says an update removed every row of a window.
pub fn write_empty_update(result: &super::WindowResult, out: &mut Vec<u8>) {
    use datafusion::arrow::array::TimestampMillisecondArray;
    let bounds = TimestampMillisecondArray::from(vec![result.start, result.end]).with_timezone("UTC");
    out.extend_from_slice(b"{\"window_start\":");
    write_value(&bounds, 0, out);
    out.extend_from_slice(b",\"window_end\":");
    write_value(&bounds, 1, out);
    out.extend_from_slice(format!(",\"_revision\":{},\"_rows\":0}}", result.revision).as_bytes());
}

pub fn write_rows(batch: &RecordBatch, out: &mut Vec<u8>) {
    for row in 0..batch.num_rows() {
        write_row(batch, row, out);
        out.push(b'\n');
    }
}

/// One row as a JSON object (no newline).
pub fn write_row(batch: &RecordBatch, row: usize, out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, (field, column)) in batch.schema().fields().iter().zip(batch.columns()).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(field.name(), out);
        out.push(b':');
        write_value(column.as_ref(), row, out);
    }
    out.push(b'}');
}

/// One value as JSON.
pub fn write_value(array: &dyn Array, row: usize, out: &mut Vec<u8>) {
    if array.is_null(row) {
        out.extend_from_slice(b"null");
        return;
    }
    macro_rules! int {
        ($t:ty) => {{
            let v = array.as_primitive::<$t>().value(row);
            out.extend_from_slice(v.to_string().as_bytes());
        }};
    }
    match array.data_type() {
        DataType::Boolean => out.extend_from_slice(if array.as_boolean().value(row) { b"true" } else { b"false" }),
        DataType::Int8 => int!(Int8Type),
        DataType::Int16 => int!(Int16Type),
        DataType::Int32 => int!(Int32Type),
        DataType::Int64 => int!(Int64Type),
        DataType::UInt8 => int!(UInt8Type),
        DataType::UInt16 => int!(UInt16Type),
        DataType::UInt32 => int!(UInt32Type),
        DataType::UInt64 => int!(UInt64Type),
        DataType::Float16 => write_f64(array.as_primitive::<Float16Type>().value(row).to_f64(), out),
        DataType::Float32 => {
            let v = array.as_primitive::<Float32Type>().value(row);
            if v.is_finite() {
                serde_json::to_writer(&mut *out, &v).expect("writing to a Vec");
            } else {
                out.extend_from_slice(b"null");
            }
        }
        DataType::Float64 => write_f64(array.as_primitive::<Float64Type>().value(row), out),
        DataType::Utf8 => write_str(array.as_string::<i32>().value(row), out),
        DataType::LargeUtf8 => write_str(array.as_string::<i64>().value(row), out),
        DataType::Utf8View => write_str(array.as_string_view().value(row), out),
        DataType::Decimal128(_, _) => write_str(&array.as_primitive::<Decimal128Type>().value_as_string(row), out),
        DataType::Decimal256(_, _) => write_str(&array.as_primitive::<Decimal256Type>().value_as_string(row), out),
        DataType::Timestamp(unit, _) => {
            let v = match unit {
                TimeUnit::Second => array.as_primitive::<TimestampSecondType>().value(row).checked_mul(1_000_000_000),
                TimeUnit::Millisecond => array.as_primitive::<TimestampMillisecondType>().value(row).checked_mul(1_000_000),
                TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().value(row).checked_mul(1_000),
                TimeUnit::Nanosecond => Some(array.as_primitive::<TimestampNanosecondType>().value(row)),
            };
            match v.map(chrono::DateTime::from_timestamp_nanos) {
                Some(t) => write_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true), out),
                None => write_display(array, row, out),
            }
        }
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _) | DataType::ListView(_) => {
            let values = list_value(array, row);
            out.push(b'[');
            for i in 0..values.len() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(values.as_ref(), i, out);
            }
            out.push(b']');
        }
        DataType::Struct(fields) => {
            let s = array.as_struct();
            out.push(b'{');
            for (i, (f, c)) in fields.iter().zip(s.columns()).enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(f.name(), out);
                out.push(b':');
                write_value(c.as_ref(), row, out);
            }
            out.push(b'}');
        }
        DataType::Dictionary(_, _) => {
            let d = array.as_any_dictionary();
            let key = d.normalized_keys()[row];
            write_value(d.values().as_ref(), key, out);
        }
        // Dates, times, durations, intervals, binary, maps: Arrow's own text, as a string.
        _ => write_display(array, row, out),
    }
}

fn list_value(array: &dyn Array, row: usize) -> ArrayRef {
    match array.data_type() {
        DataType::List(_) => array.as_list::<i32>().value(row),
        DataType::LargeList(_) => array.as_list::<i64>().value(row),
        DataType::FixedSizeList(_, _) => array.as_fixed_size_list().value(row),
        DataType::ListView(_) => array.as_list_view::<i32>().value(row),
        other => unreachable!("not a list: {other}"),
    }
}

fn write_f64(v: f64, out: &mut Vec<u8>) {
    if v.is_finite() {
        serde_json::to_writer(&mut *out, &v).expect("writing to a Vec");
    } else {
        out.extend_from_slice(b"null");
    }
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, s).expect("writing to a Vec");
}

fn write_display(array: &dyn Array, row: usize, out: &mut Vec<u8>) {
    let text = ArrayFormatter::try_new(array, &FormatOptions::default())
        .map(|f| f.value(row).to_string())
        .unwrap_or_default();
    write_str(&text, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn values_follow_the_result_format() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("t", DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())), true),
            Field::new("n", DataType::Int64, true),
            Field::new("x", DataType::Float64, true),
            Field::new("price", DataType::Decimal128(18, 4), true),
            Field::new("s", DataType::Utf8, true),
            Field::new("d", DataType::Date32, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(TimestampMillisecondArray::from(vec![Some(1_767_603_600_000), Some(1_767_603_600_250)]).with_timezone("UTC")),
                Arc::new(Int64Array::from(vec![Some(3), None])),
                Arc::new(Float64Array::from(vec![0.5, f64::NAN])),
                Arc::new(Decimal128Array::from(vec![1_234_500, -1]).with_precision_and_scale(18, 4).unwrap()),
                Arc::new(StringArray::from(vec!["a\"b", "é"])),
                Arc::new(Date32Array::from(vec![20458, 0])),
            ],
        )
        .unwrap();
        let mut out = Vec::new();
        write_rows(&batch, &mut out);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], r#"{"t":"2026-01-05T09:00:00Z","n":3,"x":0.5,"price":"123.4500","s":"a\"b","d":"2026-01-05"}"#);
        assert_eq!(lines[1], r#"{"t":"2026-01-05T09:00:00.250Z","n":null,"x":null,"price":"-0.0001","s":"é","d":"1970-01-01"}"#);
    }
}
