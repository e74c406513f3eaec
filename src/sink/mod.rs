//! Sinks: where result rows go. One module per kind; [`build`] makes the one a job names.

pub mod file;
pub mod kafka;
pub mod route;
pub mod stdout;

use std::path::Path;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;

use crate::job::{Job, SinkConfig, StdoutFormat};
use crate::Millis;

/// The SQL result of one fired window.
pub struct WindowResult<'a> {
    pub job: &'a str,
    pub start: Millis,
    pub end: Millis,
    /// The window fired before; these rows replace its earlier result.
    pub update: bool,
    /// 0 the first time a window fires, n for its n-th update (`_revision` in JSON).
    pub revision: u32,
    /// Emitted at a stop (`--flush-on-stop`) before the watermark closed it (`_incomplete`).
    pub incomplete: bool,
    pub schema: &'a SchemaRef,
    pub batches: &'a [RecordBatch],
}

impl WindowResult<'_> {
    pub fn rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}

pub trait Sink: Send {
    fn write(&mut self, result: &WindowResult) -> anyhow::Result<()>;
    fn flush(&mut self) -> anyhow::Result<()>;
    /// Nothing written here is kept: rows need not be built for it.
    fn discards(&self) -> bool {
        false
    }
}

/// Drops the rows: an alerting job's rows when no `--rows` file asks for them.
pub struct Discard;

impl Sink for Discard {
    fn write(&mut self, _: &WindowResult) -> anyhow::Result<()> {
        Ok(())
    }
    fn discards(&self) -> bool {
        true
    }
    fn flush(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// The sink a job's `[sink]` names; `output`, when given, replaces it with a JSON-lines file.
/// A Kafka sink needs `cluster` (from `--brokers`, OSPREY_BROKERS or the job).
pub fn build(job: &Job, output: Option<&Path>, cluster: Option<&crate::kafka::Cluster>) -> anyhow::Result<Box<dyn Sink>> {
    if job.alerts.is_some() {
        // An alerting job's output is its alerts ([alerts]); its rows go only where --rows says.
        return Ok(match output {
            Some(path) => Box::new(file::FileSink::create(path)?),
            None => Box::new(Discard),
        });
    }
    if let Some(path) = output {
        return Ok(Box::new(file::FileSink::create(path)?));
    }
    Ok(match &job.sink {
        SinkConfig::Stdout { format: StdoutFormat::Json } => Box::new(stdout::JsonLines::stdout()),
        SinkConfig::Stdout { format: StdoutFormat::Table } => Box::new(stdout::Table::stdout()),
        SinkConfig::File { path } => Box::new(file::FileSink::create(path)?),
        SinkConfig::Kafka { topic, key, properties, .. } => {
            let Some(cluster) = cluster else {
                anyhow::bail!(
                    "job `{}` ({}): its sink is the Kafka topic `{topic}`; pass --brokers HOST:PORT (or set OSPREY_BROKERS), \
                     or --output FILE to write the results to a file instead",
                    job.name,
                    job.path.display()
                );
            };
            let mut cluster = cluster.clone();
            cluster.properties.extend(properties.iter().cloned());
            cluster.ensure_topics(&[(topic.as_str(), 1)])?;
            Box::new(kafka::KafkaSink::new(crate::kafka::KafkaProducer::new(&cluster)?, topic.clone(), key.clone()))
        }
    })
}
