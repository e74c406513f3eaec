//! The baseline of `scripts/bench-kafka.sh`: a plain rdkafka consumer that reads a whole topic
//! and discards it, with the consumer settings Osprey uses, printing messages per second.
//!
//! cargo run --release --example kafka_consume -- BROKERS TOPIC

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

fn main() {
    let mut args = std::env::args().skip(1);
    let (brokers, topic) = (args.next().expect("BROKERS"), args.next().expect("TOPIC"));
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "osprey-bench-raw")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", std::env::var("FETCH_WAIT_MAX_MS").unwrap_or_else(|_| "10".into()))
        // As Osprey's: with librdkafka's default (1 s), a consumer whose queue filled paused
        // fetching for a whole second, and this baseline read 2M events in 1.0 s or in 2.0 s.
        .set("fetch.queue.backoff.ms", "10")
        .set("isolation.level", "read_committed")
        .create()
        .expect("a consumer");
    let md = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10)).expect("metadata");
    let partitions = md.topics()[0].partitions().len() as i32;
    let mut tpl = TopicPartitionList::new();
    let mut left = 0;
    for p in 0..partitions {
        let (low, high) = consumer.fetch_watermarks(&topic, p, Duration::from_secs(10)).expect("watermarks");
        if high > low {
            tpl.add_partition_offset(&topic, p, Offset::Offset(low)).unwrap();
            left += 1;
        }
    }
    consumer.assign(&tpl).expect("assign");
    let started = Instant::now();
    let (mut messages, mut bytes) = (0u64, 0u64);
    while left > 0 {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                messages += 1;
                bytes += m.payload().map_or(0, |p| p.len()) as u64;
            }
            Some(Err(KafkaError::PartitionEOF(_))) => left -= 1,
            Some(Err(e)) => panic!("{e}"),
            None => {}
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!("raw_consume messages={messages} bytes={bytes} seconds={secs:.3} messages_per_s={:.0}", messages as f64 / secs);
}
