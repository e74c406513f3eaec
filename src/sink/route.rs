//! Destinations for records the job could not use: dead letters (did not decode) and late
//! records (past the allowed lateness). Each is written as one JSON line with its reason and
//! its position in the source, so nothing is lost and everything can be replayed.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;
use serde_json::{json, Value};

use crate::sink::config::RouteConfig;
use crate::kafka::{Cluster, KafkaProducer};

pub struct Route {
    config: RouteConfig,
    file: Option<BufWriter<File>>,
    producer: Option<KafkaProducer>,
    written: u64,
}

impl Route {
    /// A route; a Kafka route needs `cluster`, and without one falls back to the default file.
    pub fn new(config: RouteConfig, cluster: Option<&Cluster>, job: &str, suffix: &str) -> anyhow::Result<Self> {
        let (config, producer) = match (config, cluster) {
            (RouteConfig::Kafka { topic }, Some(c)) => {
                c.ensure_topics(&[(topic.as_str(), 1)])?;
                (RouteConfig::Kafka { topic }, Some(KafkaProducer::new(c)?))
            }
            (RouteConfig::Kafka { .. }, None) => (RouteConfig::File(PathBuf::from(format!("osprey-out/{job}.{suffix}.jsonl"))), None),
            (other, _) => (other, None),
        };
        // Opened now, not at the first record: an earlier run's file never looks like this one's.
        let file = match &config {
            RouteConfig::File(path) => Some(BufWriter::new(crate::sink::file::open_fresh(path, &format!("{} file", describe_suffix(suffix)))?)),
            _ => None,
        };
        Ok(Route { config, file, producer, written: 0 })
    }

    /// Where records go, for the run summary.
    pub fn describe(&self) -> String {
        match &self.config {
            RouteConfig::File(p) => p.display().to_string(),
            RouteConfig::Stdout => "stdout".into(),
            RouteConfig::Stderr => "stderr".into(),
            RouteConfig::Kafka { topic } => format!("Kafka topic {topic}"),
        }
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn write(&mut self, record: &Value) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        self.written += 1;
        match &self.config {
            RouteConfig::File(path) => {
                let f = self.file.as_mut().expect("a file route opens its file when built");
                f.write_all(&line).with_context(|| format!("cannot write {}", path.display()))
            }
            RouteConfig::Stdout => Ok(std::io::stdout().lock().write_all(&line)?),
            RouteConfig::Stderr => Ok(std::io::stderr().lock().write_all(&line)?),
            RouteConfig::Kafka { topic } => {
                line.pop();
                self.producer.as_ref().expect("a Kafka route has a producer").send(topic, None, &line)
            }
        }
    }

    pub fn flush(&mut self) -> anyhow::Result<()> {
        if let Some(f) = &mut self.file {
            f.flush()?;
        }
        if let Some(p) = &self.producer {
            p.flush()?;
        }
        Ok(())
    }
}

fn describe_suffix(suffix: &str) -> &str {
    match suffix {
        "dlq" => "dead-letter",
        "late" => "late-record",
        other => other,
    }
}

/// The raw bytes of a record as JSON: text when they are UTF-8, hex otherwise.
/// The record a dead letter of job `job` becomes on its route: where it came from
/// (`source`, the partition's name), why, and its bytes.
pub fn dead_letter(job: &str, source: &str, d: &crate::decode::DeadLetter) -> Value {
    let (raw_key, raw) = raw_json(&d.raw);
    let mut record = json!({
        "job": job,
        "source": source,
        "partition": d.partition,
        "offset": d.offset,
        "reason": d.reason,
    });
    record[raw_key] = raw;
    record
}

/// The record a late record becomes on its route: where it came from, its event time, the
/// watermark that made it late and the decoded record (`row` of `batch`).
#[allow(clippy::too_many_arguments)]
pub fn late_record(job: &str, source: &str, partition: usize, offset: i64, event_time: crate::Millis, watermark: crate::Millis, lateness: crate::Millis, batch: &datafusion::arrow::record_batch::RecordBatch, row: usize) -> anyhow::Result<Value> {
    let mut row_json = Vec::new();
    crate::output::json::write_row(batch, row, &mut row_json);
    Ok(json!({
        "job": job,
        "source": source,
        "partition": partition,
        "offset": offset,
        "event_time": crate::source::generator::format_ts(event_time),
        "watermark": crate::source::generator::format_ts(watermark),
        "reason": format!("late: every window of this record closed more than allowed_lateness ({lateness} ms) ago"),
        "record": serde_json::from_slice::<Value>(&row_json)?,
    }))
}

pub fn raw_json(raw: &[u8]) -> (&'static str, Value) {
    match std::str::from_utf8(raw) {
        Ok(s) => ("raw", json!(s)),
        Err(_) => ("raw_hex", json!(raw.iter().map(|b| format!("{b:02x}")).collect::<String>())),
    }
}
