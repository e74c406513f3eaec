//! The alert topic: one message per transition, keyed by fingerprint, on a compacted topic so
//! that Kafka keeps each alert's latest state. Idempotent, acks=all: an alert counts as
//! delivered when the broker acknowledged it.

use super::AlertDestination;
use crate::alert::Alert;
use crate::kafka::{Cluster, KafkaProducer};

pub struct AlertTopic {
    producer: KafkaProducer,
    topic: String,
}

impl AlertTopic {
    pub fn new(cluster: &Cluster, topic: &str) -> anyhow::Result<Self> {
        cluster.ensure_compacted_topic(topic)?;
        Ok(AlertTopic { producer: KafkaProducer::new(cluster)?, topic: topic.into() })
    }
}

impl AlertDestination for AlertTopic {
    fn send(&mut self, alert: &Alert, line: &[u8]) -> anyhow::Result<()> {
        self.producer.send(&self.topic, Some(alert.fingerprint.as_bytes()), line)
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.producer.flush()
    }

    fn describe(&self) -> String {
        format!("Kafka topic {}", self.topic)
    }
}
