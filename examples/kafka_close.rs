//! For `scripts/bench-kafka.sh`: one record per partition of a topic, in 2100 by event time,
//! so a live job's every window closes once it has read the topic (the benchmark's sign that
//! a live run has caught up).
//!
//! cargo run --release --example kafka_close -- BROKERS TOPIC

use std::time::Duration;

use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientConfig;

/// 2100-01-01T00:00:00Z: after any generated event.
const CLOSE: i64 = 4_102_444_800_000;

fn main() {
    let mut args = std::env::args().skip(1);
    let (brokers, topic) = (args.next().expect("BROKERS"), args.next().expect("TOPIC"));
    let producer: ThreadedProducer<DefaultProducerContext> =
        ClientConfig::new().set("bootstrap.servers", &brokers).create().expect("a producer");
    let md = producer.client().fetch_metadata(Some(&topic), Duration::from_secs(10)).expect("metadata");
    let partitions = md.topics()[0].partitions().len() as i32;
    let line = format!("{{\"ts\":{CLOSE},\"service\":\"zz-close\",\"status\":200,\"duration_ms\":1,\"bytes\":0}}");
    for p in 0..partitions {
        producer.send(BaseRecord::to(&topic).key("zz-close").payload(&line).partition(p).timestamp(CLOSE)).map_err(|(e, _)| e).expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    println!("closing records at {CLOSE} on {partitions} partitions");
}
