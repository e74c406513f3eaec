//! For `scripts/bench-kafka.sh`: one record per partition of a topic, an hour of event time
//! after its newest message, so a live job's every window closes once it has read the topic
//! (the benchmark's sign that a live run has caught up).
//!
//! cargo run --release --example kafka_close -- BROKERS TOPIC

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

fn main() {
    let mut args = std::env::args().skip(1);
    let (brokers, topic) = (args.next().expect("BROKERS"), args.next().expect("TOPIC"));
    let config = |group: &str| {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &brokers).set("group.id", group);
        c
    };
    let consumer: BaseConsumer = config("osprey-bench-close").create().expect("a consumer");
    let md = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10)).expect("metadata");
    let partitions = md.topics()[0].partitions().len() as i32;
    // The newest message timestamp over the partitions' last messages.
    let mut newest = i64::MIN;
    for p in 0..partitions {
        let (low, high) = consumer.fetch_watermarks(&topic, p, Duration::from_secs(10)).expect("watermarks");
        if high <= low {
            continue;
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, p, Offset::Offset(high - 1)).unwrap();
        consumer.assign(&tpl).expect("assign");
        loop {
            match consumer.poll(Duration::from_secs(10)) {
                Some(Ok(m)) => {
                    newest = newest.max(m.timestamp().to_millis().expect("a timestamp"));
                    break;
                }
                Some(Err(e)) => panic!("{e}"),
                None => panic!("no message at the end of {topic}/{p}"),
            }
        }
    }
    let close = newest + 3_600_000;
    let producer: ThreadedProducer<DefaultProducerContext> = config("unused").create().expect("a producer");
    let line = format!("{{\"ts\":{close},\"service\":\"zz-close\",\"status\":200,\"duration_ms\":1,\"bytes\":0}}");
    for p in 0..partitions {
        producer.send(BaseRecord::to(&topic).key("zz-close").payload(&line).partition(p).timestamp(close)).map_err(|(e, _)| e).expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    println!("closing records at {close} on {partitions} partitions");
}
