//! Result rows as a plain-text table for people (`osprey demo`, `format = "table"`).

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Float32Type, Float64Type, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;

/// Format rows as an aligned table; floats get at most three decimals.
pub fn format(schema: &SchemaRef, batches: &[RecordBatch]) -> String {
    let headers: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut rows: Vec<Vec<String>> = Vec::new();
    for b in batches {
        for r in 0..b.num_rows() {
            rows.push(b.columns().iter().map(|c| cell(c.as_ref(), r)).collect());
        }
    }
    let numeric: Vec<bool> = schema.fields().iter().map(|f| f.data_type().is_numeric()).collect();
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).chain([headers[i].chars().count()]).max().unwrap_or(0))
        .collect();
    let line = |cells: &[String]| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let pad = widths[i] - c.chars().count();
                if numeric[i] { format!("{}{c}", " ".repeat(pad)) } else { format!("{c}{}", " ".repeat(pad)) }
            })
            .collect();
        format!("  {}", parts.join("  ")).trim_end().to_string()
    };
    let mut out = line(&headers);
    out.push('\n');
    out.push_str(&format!("  {}", widths.iter().map(|w| "─".repeat(*w)).collect::<Vec<_>>().join("  ")));
    for r in &rows {
        out.push('\n');
        out.push_str(&line(r));
    }
    out
}

fn cell(array: &dyn Array, row: usize) -> String {
    if array.is_null(row) {
        return "∅".into();
    }
    match array.data_type() {
        DataType::Float64 => float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Float32 => float(array.as_primitive::<Float32Type>().value(row) as f64),
        DataType::Timestamp(_, _) => {
            let mut out = Vec::new();
            super::json::write_value(array, row, &mut out);
            String::from_utf8_lossy(&out).trim_matches('"').replace('T', " ").trim_end_matches('Z').to_string()
        }
        _ => {
            let mut out = Vec::new();
            super::json::write_value(array, row, &mut out);
            let s = String::from_utf8_lossy(&out).to_string();
            s.strip_prefix('"').and_then(|s| s.strip_suffix('"')).map(str::to_string).unwrap_or(s)
        }
    }
}

fn float(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}
