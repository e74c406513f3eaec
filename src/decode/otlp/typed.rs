//! Columns built straight from OTLP values, for the values whose conversion no rule of the
//! JSON path could question: anything else sends its chunk the JSON way.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanBuilder, Float32Builder, Float64Builder, Int32Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder, UInt64Builder};

use super::Cell;
use crate::jobfile::ColumnType;

pub enum Builder {
    Text(StringBuilder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    UInt64(UInt64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Bool(BooleanBuilder),
    Time(TimestampMillisecondBuilder),
}

impl Builder {
    /// `None` for the types only the JSON path converts (decimals, dates).
    pub fn new(ty: ColumnType) -> Option<Builder> {
        Some(match ty {
            ColumnType::String => Builder::Text(StringBuilder::new()),
            ColumnType::Int32 => Builder::Int32(Int32Builder::new()),
            ColumnType::Int64 => Builder::Int64(Int64Builder::new()),
            ColumnType::UInt64 => Builder::UInt64(UInt64Builder::new()),
            ColumnType::Float32 => Builder::Float32(Float32Builder::new()),
            ColumnType::Float64 => Builder::Float64(Float64Builder::new()),
            ColumnType::Bool => Builder::Bool(BooleanBuilder::new()),
            ColumnType::Timestamp => Builder::Time(TimestampMillisecondBuilder::new()),
            ColumnType::Date | ColumnType::Decimal { .. } => return None,
        })
    }

    /// Append `value`, or say it needs the JSON path (nothing is appended then, and the
    /// chunk's columns are dropped). An event time must be present.
    pub fn append(&mut self, value: Cell, event_time: bool) -> bool {
        match (self, value) {
            (_, Cell::Null | Cell::Nanos(0)) if event_time => return false,
            (Builder::Text(b), Cell::Null) => b.append_null(),
            (Builder::Text(b), Cell::Str(s)) => b.append_value(s),
            (Builder::Text(b), Cell::Text(s) | Cell::Json(s)) => b.append_value(s),
            (Builder::Int32(b), Cell::Null) => b.append_null(),
            (Builder::Int32(b), Cell::Int(i)) if i32::try_from(i).is_ok() => b.append_value(i as i32),
            (Builder::Int64(b), Cell::Null) => b.append_null(),
            (Builder::Int64(b), Cell::Int(i)) => b.append_value(i),
            (Builder::UInt64(b), Cell::Null) => b.append_null(),
            (Builder::UInt64(b), Cell::Int(i)) if i >= 0 => b.append_value(i as u64),
            (Builder::Float32(b), Cell::Null) => b.append_null(),
            (Builder::Float64(b), Cell::Null) => b.append_null(),
            (Builder::Float64(b), Cell::Float(f)) if f.is_finite() => b.append_value(f),
            (Builder::Float64(b), Cell::Int(i)) if i.unsigned_abs() < (1u64 << 53) => b.append_value(i as f64),
            (Builder::Bool(b), Cell::Null) => b.append_null(),
            (Builder::Bool(b), Cell::Bool(v)) => b.append_value(v),
            (Builder::Time(b), Cell::Null | Cell::Nanos(0)) => b.append_null(),
            (Builder::Time(b), Cell::Nanos(n)) if n / 1_000_000 <= i64::MAX as u64 => b.append_value((n / 1_000_000) as i64),
            _ => return false,
        }
        true
    }

    pub fn finish(self) -> ArrayRef {
        match self {
            Builder::Text(mut b) => Arc::new(b.finish()),
            Builder::Int32(mut b) => Arc::new(b.finish()),
            Builder::Int64(mut b) => Arc::new(b.finish()),
            Builder::UInt64(mut b) => Arc::new(b.finish()),
            Builder::Float32(mut b) => Arc::new(b.finish()),
            Builder::Float64(mut b) => Arc::new(b.finish()),
            Builder::Bool(mut b) => Arc::new(b.finish()),
            Builder::Time(mut b) => Arc::new(b.finish().with_timezone("UTC")),
        }
    }
}
