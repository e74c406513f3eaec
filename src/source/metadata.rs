//! Metadata columns: where each row came from. The engine adds them to `events` when the SQL
//! names them, so `SELECT *` stays the declared columns plus the window.

use datafusion::arrow::datatypes::DataType;

/// Metadata columns every source provides.
pub const METADATA_COLUMNS: &[(&str, DataType)] = &[
    // The source partition: file index in sorted order, Kafka partition, generator shard.
    ("_partition", DataType::Int32),
    // Position in the partition: 1-based line (JSON lines), row number (Parquet), Kafka offset.
    ("_offset", DataType::Int64),
];

pub fn is_metadata_column(name: &str) -> bool {
    METADATA_COLUMNS.iter().any(|(n, _)| *n == name)
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
    METADATA_COLUMNS
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| words.iter().any(|w| w.eq_ignore_ascii_case(n)))
        .collect()
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
