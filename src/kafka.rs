//! Kafka plumbing shared by the source, the sink and the routes: client settings, topic
//! creation, and a producer whose `flush` says whether every record was acknowledged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

/// Settings for one cluster: the bootstrap servers and librdkafka properties that override
/// Osprey's defaults (from the job's `[source.kafka]` / `[sink.kafka]` tables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub brokers: String,
    pub properties: Vec<(String, String)>,
    /// Exactly-once: every producer of the job is this one transactional producer.
    pub transactional_id: Option<String>,
}

impl Cluster {
    pub fn new(brokers: impl Into<String>) -> Self {
        Cluster { brokers: brokers.into(), properties: Vec::new(), transactional_id: None }
    }

    /// A client configuration: `defaults`, then the job's properties over them.
    pub fn config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in defaults {
            c.set(*k, *v);
        }
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    /// Create the topics that do not exist yet (`partitions` each, replication 1 unless the
    /// broker says otherwise). Tansu, like many managed clusters, does not create on produce.
    pub fn ensure_topics(&self, topics: &[(&str, i32)]) -> anyhow::Result<()> {
        self.ensure_topics_with(topics, &[])
    }

    /// A compacted topic (`cleanup.policy=compact`): Kafka keeps the latest record per key.
    pub fn ensure_compacted_topic(&self, topic: &str) -> anyhow::Result<()> {
        self.ensure_topics_with(&[(topic, 1)], &[("cleanup.policy", "compact")])
    }

    /// Create missing topics with topic-level `config`.
    pub fn ensure_topics_with(&self, topics: &[(&str, i32)], config: &[(&str, &str)]) -> anyhow::Result<()> {
        let admin: AdminClient<DefaultClientContext> = self
            .config(&[])
            .create()
            .with_context(|| format!("cannot connect to Kafka at {}", self.brokers))?;
        let new: Vec<NewTopic> = topics
            .iter()
            .map(|(t, p)| config.iter().fold(NewTopic::new(t, *p, TopicReplication::Fixed(1)), |n, (k, v)| n.set(k, v)))
            .collect();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = rt
            .block_on(admin.create_topics(new.iter(), &options))
            .with_context(|| format!("cannot create topics on {}", self.brokers))?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => bail!("cannot create the Kafka topic `{topic}` on {}: {code}", self.brokers),
            }
        }
        Ok(())
    }
}

/// Counts deliveries that failed, so `flush` can refuse to report success.
#[derive(Default)]
pub struct DeliveryLog {
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for DeliveryLog {}

impl ProducerContext for DeliveryLog {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            self.first_error.lock().expect("not poisoned").get_or_insert_with(|| e.to_string());
        }
    }
}

/// A producer with acks=all and idempotence: a record counts once the broker has it.
#[derive(Clone)]
pub struct KafkaProducer {
    producer: Arc<ThreadedProducer<DeliveryLog>>,
    brokers: String,
}

/// The transactional producers of this process, by transactional id: a job's sink, alert
/// topic and routes share one, so one transaction holds all they write.
fn transactional_producers() -> &'static Mutex<std::collections::HashMap<String, Arc<ThreadedProducer<DeliveryLog>>>> {
    static PRODUCERS: std::sync::OnceLock<Mutex<std::collections::HashMap<String, Arc<ThreadedProducer<DeliveryLog>>>>> =
        std::sync::OnceLock::new();
    PRODUCERS.get_or_init(Default::default)
}

/// The cluster's transactional producer, created, with its fencing of an earlier instance
/// (`init_transactions` aborts what a crashed run left open) and a first transaction begun.
pub fn transactional(cluster: &Cluster) -> anyhow::Result<Option<Arc<ThreadedProducer<DeliveryLog>>>> {
    let Some(id) = &cluster.transactional_id else { return Ok(None) };
    let mut all = transactional_producers().lock().expect("not poisoned");
    if let Some(p) = all.get(id) {
        return Ok(Some(p.clone()));
    }
    let producer: ThreadedProducer<DeliveryLog> = cluster
        .config(&[
            ("transactional.id", id),
            ("acks", "all"),
            ("enable.idempotence", "true"),
            ("compression.type", "lz4"),
            ("linger.ms", "5"),
            ("transaction.timeout.ms", "60000"),
        ])
        .create_with_context(DeliveryLog::default())
        .with_context(|| format!("cannot create a transactional Kafka producer for {}", cluster.brokers))?;
    producer
        .init_transactions(Duration::from_secs(30))
        .with_context(|| format!("Kafka at {} refused transactions for `{id}` (does the broker allow them?)", cluster.brokers))?;
    producer.begin_transaction().context("cannot begin a Kafka transaction")?;
    let producer = Arc::new(producer);
    all.insert(id.clone(), producer.clone());
    Ok(Some(producer))
}

impl KafkaProducer {
    pub fn new(cluster: &Cluster) -> anyhow::Result<Self> {
        if let Some(producer) = transactional(cluster)? {
            return Ok(KafkaProducer { producer, brokers: cluster.brokers.clone() });
        }
        let producer: ThreadedProducer<DeliveryLog> = cluster
            .config(&[
                ("acks", "all"),
                ("enable.idempotence", "true"),
                ("compression.type", "lz4"),
                ("linger.ms", "5"),
                ("message.timeout.ms", "30000"),
            ])
            .create_with_context(DeliveryLog::default())
            .with_context(|| format!("cannot create a Kafka producer for {}", cluster.brokers))?;
        Ok(KafkaProducer { producer: Arc::new(producer), brokers: cluster.brokers.clone() })
    }

    /// Queue one record; waits while librdkafka's queue is full.
    pub fn send(&self, topic: &str, key: Option<&[u8]>, payload: &[u8]) -> anyhow::Result<()> {
        let mut record = BaseRecord::to(topic).payload(payload);
        if let Some(k) = key {
            record = record.key(k);
        }
        self.enqueue(topic, record)
    }

    /// Queue one record to a given partition, with a message timestamp.
    pub fn send_to(&self, topic: &str, partition: i32, key: &[u8], payload: &[u8], timestamp: Option<i64>) -> anyhow::Result<()> {
        let mut record = BaseRecord::to(topic).payload(payload).key(key).partition(partition);
        if let Some(t) = timestamp {
            record = record.timestamp(t);
        }
        self.enqueue(topic, record)
    }

    /// Queue a tombstone (a null value) for `key`: compaction then forgets the key.
    pub fn send_tombstone(&self, topic: &str, partition: i32, key: &[u8]) -> anyhow::Result<()> {
        self.enqueue(topic, BaseRecord::to(topic).key(key).partition(partition))
    }

    fn enqueue(&self, topic: &str, mut record: BaseRecord<'_, [u8], [u8]>) -> anyhow::Result<()> {
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => bail!("cannot produce to the Kafka topic `{topic}` on {}: {e}", self.brokers),
            }
        }
    }

    /// Wait until the broker acknowledged every queued record; an error if any was refused.
    pub fn flush(&self) -> anyhow::Result<()> {
        flush(&self.producer, Duration::from_secs(60))
            .with_context(|| format!("Kafka at {} did not acknowledge the output in 60 s", self.brokers))?;
        let ctx = self.producer.context();
        let failed = ctx.failed.swap(0, Ordering::Relaxed);
        if failed > 0 {
            let first = ctx.first_error.lock().expect("not poisoned").take().unwrap_or_default();
            bail!("Kafka at {} refused {failed} output records (first: {first})", self.brokers);
        }
        Ok(())
    }
}

/// Wait until every record queued on `producer` is acknowledged, or `timeout`.
///
/// Not rust-rdkafka's `flush`: between non-blocking checks it polls the producer's event
/// queue for up to 100 ms, and a `ThreadedProducer`'s own thread serves that queue, so the
/// poll saw nothing and slept its 100 ms out. Every flush with a record in flight took at least
/// 100 ms: each of the shuffle's transactions (115 ms each, 15 of a 17 s run), each Kafka
/// sink's commit. Delivery reports are events here, so librdkafka's own flush only waits for
/// its count of queued records to reach zero, which the producer's thread brings about.
pub fn flush<C: ProducerContext + 'static>(producer: &ThreadedProducer<C>, timeout: Duration) -> Result<(), KafkaError> {
    let millis = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: the handle is live for as long as `producer` is borrowed.
    match unsafe { rdkafka::bindings::rd_kafka_flush(producer.client().native_ptr(), millis) } {
        rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => Ok(()),
        e => Err(KafkaError::Flush(e.into())),
    }
}

/// Commit `producer`'s open transaction: [`flush`] first, so rust-rdkafka's own flush inside
/// the commit finds nothing in flight and returns at once.
pub fn commit_transaction<C: ProducerContext + 'static>(producer: &ThreadedProducer<C>, timeout: Duration) -> Result<(), KafkaError> {
    flush(producer, timeout)?;
    producer.commit_transaction(timeout)
}

/// The trace id of a W3C `traceparent` header value: `00-<32 hex trace id>-<16 hex>-<2 hex>`.
pub fn trace_id(traceparent: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(traceparent).ok()?.trim();
    let mut parts = text.split('-');
    let (_version, trace, span, _flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(trace, 32) && hex(span, 16) && trace != "0".repeat(32)).then(|| trace.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    #[test]
    fn trace_ids_come_from_valid_traceparents_only() {
        let t = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(super::trace_id(t).as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(super::trace_id(b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"), None);
        assert_eq!(super::trace_id(b"garbage"), None);
    }
}
