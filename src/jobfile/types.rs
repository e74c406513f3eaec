//! Column types of a job's `[source.schema]`, and how each maps to Arrow.

use datafusion::arrow::datatypes::{DataType, TimeUnit};

/// The Arrow type of every event-time column and of `window_start` / `window_end`.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

/// A declared column type. Strings in job files, Arrow types in batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    String,
    Int32,
    Int64,
    UInt64,
    Float32,
    Float64,
    Bool,
    Date,
    /// RFC 3339 string or epoch milliseconds → `Timestamp(ms, UTC)`.
    Timestamp,
    /// JSON string or number → `Decimal128(precision, scale)`, exact.
    Decimal { precision: u8, scale: i8 },
}

/// Every spelling accepted in a job file, for suggestions.
pub const TYPE_NAMES: &[&str] = &[
    "string", "int32", "int64", "uint64", "float32", "float64", "bool", "date", "timestamp", "decimal(p,s)",
];

impl ColumnType {
    pub fn parse(text: &str) -> Result<ColumnType, String> {
        let t = text.trim().to_ascii_lowercase();
        Ok(match t.as_str() {
            "string" | "utf8" | "text" => ColumnType::String,
            "int32" | "int" => ColumnType::Int32,
            "int64" | "bigint" => ColumnType::Int64,
            "uint64" => ColumnType::UInt64,
            "float32" | "float" => ColumnType::Float32,
            "float64" | "double" => ColumnType::Float64,
            "bool" | "boolean" => ColumnType::Bool,
            "date" => ColumnType::Date,
            "timestamp" => ColumnType::Timestamp,
            _ if t.starts_with("decimal") => return parse_decimal(&t),
            _ => {
                let mut msg = format!("unknown column type `{text}`");
                if let Some(near) = super::error::closest(&t, TYPE_NAMES.iter().copied()) {
                    msg.push_str(&format!(" (did you mean `{near}`?)"));
                }
                msg.push_str(&format!("; the types are {}", TYPE_NAMES.join(", ")));
                return Err(msg);
            }
        })
    }

    pub fn arrow_type(self) -> DataType {
        match self {
            ColumnType::String => DataType::Utf8,
            ColumnType::Int32 => DataType::Int32,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::UInt64 => DataType::UInt64,
            ColumnType::Float32 => DataType::Float32,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Bool => DataType::Boolean,
            ColumnType::Date => DataType::Date32,
            ColumnType::Timestamp => timestamp_type(),
            ColumnType::Decimal { precision, scale } => DataType::Decimal128(precision, scale),
        }
    }
}

fn parse_decimal(t: &str) -> Result<ColumnType, String> {
    let usage = "write decimal(precision, scale), for example decimal(18,4), with 1 <= precision <= 38 and 0 <= scale <= precision";
    let inner = t
        .strip_prefix("decimal")
        .map(str::trim)
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("bad decimal type `{t}`: {usage}"))?;
    let mut parts = inner.split(',').map(str::trim);
    let (Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("bad decimal type `{t}`: {usage}"));
    };
    let precision: u8 = p.parse().map_err(|_| format!("bad decimal precision `{p}`: {usage}"))?;
    let scale: i8 = s.parse().map_err(|_| format!("bad decimal scale `{s}`: {usage}"))?;
    if !(1..=38).contains(&precision) || scale < 0 || scale as u8 > precision {
        return Err(format!("bad decimal type `{t}`: {usage}"));
    }
    Ok(ColumnType::Decimal { precision, scale })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_type() {
        for name in ["string", "int32", "int64", "uint64", "float32", "float64", "bool", "date", "timestamp"] {
            assert!(ColumnType::parse(name).is_ok(), "{name}");
        }
        assert_eq!(
            ColumnType::parse("decimal(18, 4)").unwrap(),
            ColumnType::Decimal { precision: 18, scale: 4 }
        );
    }

    #[test]
    fn rejects_bad_types_with_a_suggestion() {
        let err = ColumnType::parse("in64").unwrap_err();
        assert!(err.contains("did you mean `int64`"), "{err}");
        assert!(ColumnType::parse("decimal(40,2)").is_err());
        assert!(ColumnType::parse("decimal(4,6)").is_err());
    }
}
