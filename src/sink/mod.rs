//! Sinks: where result rows go. One module per kind; [`build`] makes the one a job names.

pub mod config;
pub mod file;
pub mod kafka;
pub mod route;
pub mod stdout;

use std::path::Path;


use crate::jobfile::JobRef;
use config::{SinkConfig, StdoutFormat};

pub use crate::output::WindowResult;

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

/// What a sink is built from: a job's `[sink]`, and whether the job raises alerts instead.
pub trait SinkSpec {
    fn sink_config(&self) -> &SinkConfig;
    /// An alerting job's output is its alerts; its rows go only where `--rows` says.
    fn raises_alerts(&self) -> bool;
    fn job_ref(&self) -> JobRef<'_>;
}

/// The sink a job's `[sink]` names; `output`, when given, replaces it with a JSON-lines file.
/// A Kafka sink needs `cluster` (from `--brokers`, OSPREY_BROKERS or the job).
pub fn build(job: &impl SinkSpec, output: Option<&Path>, cluster: Option<&crate::kafka::Cluster>) -> anyhow::Result<Box<dyn Sink>> {
    if job.raises_alerts() {
        // An alerting job's output is its alerts ([alerts]); its rows go only where --rows says.
        return Ok(match output {
            Some(path) => Box::new(file::FileSink::create(path)?),
            None => Box::new(Discard),
        });
    }
    if let Some(path) = output {
        return Ok(Box::new(file::FileSink::create(path)?));
    }
    let who = job.job_ref();
    Ok(match job.sink_config() {
        SinkConfig::Stdout { format: StdoutFormat::Json } => Box::new(stdout::JsonLines::stdout()),
        SinkConfig::Stdout { format: StdoutFormat::Table } => Box::new(stdout::Table::stdout()),
        SinkConfig::File { path } => Box::new(file::FileSink::create(path)?),
        SinkConfig::Kafka { topic, key, properties, .. } => {
            let Some(cluster) = cluster else {
                anyhow::bail!(
                    "job `{}` ({}): its sink is the Kafka topic `{topic}`; pass --brokers HOST:PORT (or set OSPREY_BROKERS), \
                     or --output FILE to write the results to a file instead",
                    who.name,
                    who.file.display()
                );
            };
            let mut cluster = cluster.clone();
            cluster.properties.extend(properties.iter().cloned());
            cluster.ensure_topics(&[(topic.as_str(), 1)])?;
            Box::new(kafka::KafkaSink::new(crate::kafka::KafkaProducer::new(&cluster)?, topic.clone(), key.clone()))
        }
    })
}
