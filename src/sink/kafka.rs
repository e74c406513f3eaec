//! A Kafka topic: one message per result row, JSON, keyed by the sink's key columns.
//! `flush` returns once the broker acknowledged every row (acks=all, idempotent producer),
//! which is what lets the pipeline commit the input offsets behind them.

use datafusion::arrow::array::{Array, AsArray};

use super::{Sink, WindowResult};
use crate::kafka::KafkaProducer;
use crate::output::json;

pub struct KafkaSink {
    producer: KafkaProducer,
    topic: String,
    key: Vec<String>,
    row: Vec<u8>,
}

impl KafkaSink {
    pub fn new(producer: KafkaProducer, topic: String, key: Vec<String>) -> Self {
        KafkaSink { producer, topic, key, row: Vec::new() }
    }
}

/// A message key from the key columns: one column's value as text (strings unquoted), or a
/// JSON array of several.
pub fn key_of(batch: &datafusion::arrow::record_batch::RecordBatch, columns: &[usize], row: usize) -> Vec<u8> {
    let mut out = Vec::new();
    if let [single] = columns {
        let column = batch.column(*single);
        if let Some(text) = column.as_string_opt::<i32>().filter(|t| t.is_valid(row)) {
            return text.value(row).as_bytes().to_vec();
        }
        json::write_value(column.as_ref(), row, &mut out);
        return out;
    }
    out.push(b'[');
    for (i, c) in columns.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json::write_value(batch.column(*c).as_ref(), row, &mut out);
    }
    out.push(b']');
    out
}

impl Sink for KafkaSink {
    fn write(&mut self, result: &WindowResult) -> anyhow::Result<()> {
        if result.update && result.rows() == 0 {
            self.row.clear();
            json::write_empty_update(result, &mut self.row);
            return self.producer.send(&self.topic, None, &self.row);
        }
        for batch in result.batches {
            let schema = batch.schema();
            let key_columns: Vec<usize> = self.key.iter().filter_map(|k| schema.index_of(k).ok()).collect();
            for row in 0..batch.num_rows() {
                self.row.clear();
                json::write_row_marked(batch, row, result.revision, result.incomplete, &mut self.row);
                let key = (!key_columns.is_empty()).then(|| key_of(batch, &key_columns, row));
                self.producer.send(&self.topic, key.as_deref(), &self.row)?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.producer.flush()
    }
}
