//! Metadata columns: where each row came from. The engine adds them to `events` when the SQL
//! names them, so `SELECT *` stays the declared columns plus the window. Decoded batches always
//! carry `_partition` and `_offset`: the engine uses them to know which source positions its
//! window state still holds (for committing offsets).

use datafusion::arrow::datatypes::{DataType, TimeUnit};

/// Metadata columns, in the order they are added:
/// - `_partition`: the source partition (file index in sorted order, Kafka partition, generator shard);
/// - `_offset`: the position in it (1-based line, Parquet row number, Kafka offset);
/// - `_topic`, `_timestamp`: the Kafka topic and message timestamp (null elsewhere);
/// - `_trace_id`: the trace id of a W3C `traceparent` header (null without one).
pub const METADATA_COLUMNS: &[&str] = &["_partition", "_offset", "_topic", "_timestamp", "_trace_id"];

/// Metadata columns in every decoded batch, whatever the SQL says.
pub const ALWAYS_DECODED: &[&str] = &["_partition", "_offset"];

/// The metadata columns decoded for a SQL text: [`ALWAYS_DECODED`] and those it names.
pub fn decoded_for(sql: &str) -> Vec<&'static str> {
    let named = referenced_by(sql);
    METADATA_COLUMNS.iter().copied().filter(|n| ALWAYS_DECODED.contains(n) || named.contains(n)).collect()
}

pub fn data_type(name: &str) -> DataType {
    match name {
        "_partition" => DataType::Int32,
        "_offset" => DataType::Int64,
        "_topic" | "_trace_id" => DataType::Utf8,
        "_timestamp" => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        other => panic!("not a metadata column: {other}"),
    }
}

pub fn is_metadata_column(name: &str) -> bool {
    METADATA_COLUMNS.contains(&name)
}

/// The metadata columns a SQL text refers to, in [`METADATA_COLUMNS`] order.
///
/// A word match on the SQL's identifiers (`_offset`, `"_offset"`); a false positive (the word in
/// a string literal) only adds a column the query ignores.
pub fn referenced_by(sql: &str) -> Vec<&'static str> {
    let words: Vec<&str> = sql
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect();
    METADATA_COLUMNS.iter().copied().filter(|n| words.iter().any(|w| w.eq_ignore_ascii_case(n))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_only_named_metadata_columns() {
        assert_eq!(referenced_by("SELECT * FROM events"), Vec::<&str>::new());
        assert_eq!(referenced_by("SELECT max(\"_offset\"), _partition FROM events"), vec!["_partition", "_offset"]);
        assert_eq!(referenced_by("SELECT my_offset FROM events"), Vec::<&str>::new());
    }
}
