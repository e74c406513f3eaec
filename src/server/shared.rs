//! The registry in a compacted Kafka topic, shared by every `osprey serve` that names it: one
//! message per job keyed by its name (the definition and whether it is stopped), a tombstone
//! when it is deleted. A server reads the topic to its end at start, then follows it, so a job
//! submitted, stopped, restarted or deleted on one server is so on all; each runs its own
//! instance of every job, and Kafka-sourced jobs split their partitions through their consumer
//! group.

use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use crate::kafka::{Cluster, KafkaProducer};

/// A job's entry in the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    pub name: String,
    pub text: String,
    pub stopped: bool,
}

/// One change read from the topic: a job's latest entry, or its deletion (`None`).
pub type Change = (String, Option<Saved>);

pub struct RegistryTopic {
    topic: String,
    producer: KafkaProducer,
    cluster: Cluster,
}

impl RegistryTopic {
    pub fn open(cluster: &Cluster, topic: &str) -> anyhow::Result<RegistryTopic> {
        cluster.ensure_compacted_topic(topic).with_context(|| format!("the registry topic `{topic}` on {}", cluster.brokers))?;
        Ok(RegistryTopic { topic: topic.to_string(), producer: KafkaProducer::new(cluster)?, cluster: cluster.clone() })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Write a job's entry (or its tombstone) and wait for the broker to have it.
    pub fn publish(&self, name: &str, entry: Option<&Saved>) -> anyhow::Result<()> {
        match entry {
            Some(s) => self.producer.send_to(&self.topic, 0, name.as_bytes(), &serde_json::to_vec(s)?, None)?,
            None => self.producer.send_tombstone(&self.topic, 0, name.as_bytes())?,
        }
        self.producer.flush()
    }

    /// Every entry in the topic up to its end, in order, and a follower from there on.
    pub fn read(&self) -> anyhow::Result<(Vec<Change>, Follower)> {
        let consumer: BaseConsumer = self
            .cluster
            .config(&[("group.id", "osprey-registry"), ("enable.auto.commit", "false"), ("isolation.level", "read_committed")])
            .create()?;
        let (low, high) = consumer
            .fetch_watermarks(&self.topic, 0, Duration::from_secs(10))
            .with_context(|| format!("cannot read the registry topic `{}`", self.topic))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, 0, Offset::Offset(low))?;
        consumer.assign(&tpl)?;
        let mut changes = Vec::new();
        let mut next = low;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while next < high {
            anyhow::ensure!(std::time::Instant::now() < deadline, "the registry topic `{}` did not read to its end in 30 s", self.topic);
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    next = m.offset() + 1;
                    changes.extend(decode(&m));
                }
                Some(Err(e)) => anyhow::bail!("reading the registry topic `{}`: {e}", self.topic),
                None => {}
            }
        }
        Ok((changes, Follower { consumer }))
    }
}

/// Reads the registry topic's new entries as other servers (and this one) write them.
pub struct Follower {
    consumer: BaseConsumer,
}

impl Follower {
    /// Changes that arrived, waiting up to `wait` for the first.
    pub fn poll(&self, wait: Duration) -> Vec<Change> {
        let mut out = Vec::new();
        let mut wait = wait;
        while let Some(result) = self.consumer.poll(wait) {
            wait = Duration::ZERO;
            match result {
                Ok(m) => out.extend(decode(&m)),
                Err(e) => crate::log_warn!("serve: reading the registry topic: {e}"),
            }
        }
        out
    }
}

fn decode<M: Message>(m: &M) -> Option<Change> {
    let name = String::from_utf8_lossy(m.key()?).into_owned();
    match m.payload() {
        None | Some([]) => Some((name, None)),
        Some(p) => match serde_json::from_slice::<Saved>(p) {
            Ok(s) => Some((name, Some(s))),
            Err(e) => {
                crate::log_warn!("serve: registry entry `{name}` (offset {}) is not a job entry: {e}; ignored", m.offset());
                None
            }
        },
    }
}
