//! Kafka: a consumer group for live runs, or an explicit assignment over an offset range for
//! replays. Each topic partition is a source partition with its own watermark.
//!
//! Offsets are committed by the pipeline ([`Source::commit`]) only after every output that
//! depends on them was acknowledged: at-least-once, never ahead of the output. When the group
//! takes partitions away, the pipeline drops their rows from its windows; the new owner
//! re-reads them from the last commit, which never passes a row still held in a window.

use std::collections::VecDeque;
use std::mem::ManuallyDrop;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{Chunk, PartitionInfo, Payload, Poll, RecordMeta, Source};
use crate::kafka::Cluster;

mod batch;
pub mod clocks;
mod intake;

use crate::Millis;
use batch::BatchQueue;
use intake::{Accepted, Buffer, Gather, Incoming, Intake};

/// Where a Kafka source starts and stops.
#[derive(Debug, Clone)]
pub enum Start {
    /// Join the consumer group; resume from its committed offsets (the earliest without one).
    Group { group: String },
    /// Read each partition from one position to another, then end.
    Range { from: Position, to: Position },
}

/// A position in every partition of a topic.
#[derive(Debug, Clone)]
pub enum Position {
    /// The first offset whose message timestamp is at or after this instant.
    Time(Millis),
    /// Per partition; partitions not listed start at the beginning (as `from`) or end at the
    /// end (as `to`).
    Offsets(Vec<(i32, i64)>),
    /// The low watermark (as `from`) or the high watermark at start (as `to`).
    Edge,
}

enum GroupEvent {
    Assigned(Vec<usize>),
    Revoked(Vec<usize>),
}

/// What runs inside a revocation, before the partitions go (see [`KafkaSource::before_revoke`]).
pub type RevokeHook = Box<dyn FnMut(&BaseConsumer<GroupContext>) + Send>;

/// A [`RevokeHook`] that is told the topic too (see [`Source::on_revoke`]).
pub type TopicRevokeHook = Box<dyn FnMut(&BaseConsumer<GroupContext>, &str) + Send>;

/// Hears the group's rebalances, for the pipeline to act on after `poll` returns.
pub struct GroupContext {
    events: Arc<Mutex<Vec<GroupEvent>>>,
    before_revoke: Mutex<Option<RevokeHook>>,
    /// `auto.offset.reset` is the earliest offset: a partition the group never committed
    /// starts at its beginning (see [`start_at_commits`]).
    uncommitted_from_start: bool,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    /// rust-rdkafka's rebalance, with one change: assigned partitions start where the
    /// group's commits say, read here once (see [`start_at_commits`]).
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let assigning = err == RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
        if assigning {
            start_at_commits(consumer, tpl, self.uncommitted_from_start);
        }
        let cooperative = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
        let done = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if cooperative { consumer.incremental_assign(tpl) } else { consumer.assign(tpl) }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                if let Some(hook) = self.before_revoke.lock().expect("not poisoned").as_mut() {
                    hook(consumer);
                }
                let parts = tpl.elements().iter().map(|e| e.partition() as usize).collect();
                self.events.lock().expect("not poisoned").push(GroupEvent::Revoked(parts));
                if cooperative { consumer.incremental_unassign(tpl) } else { consumer.unassign() }
            }
            other => {
                // As rust-rdkafka (and librdkafka's examples) do: give up the assignment.
                crate::log_warn!("the Kafka group's rebalance failed: {}", RDKafkaErrorCode::from(other));
                if cooperative { consumer.incremental_unassign(tpl) } else { consumer.unassign() }
            }
        };
        if let Err(e) = done {
            crate::log_warn!("the Kafka group's rebalance could not be applied: {e}");
        }
        if assigning {
            let parts = tpl.elements().iter().map(|e| e.partition() as usize).collect();
            self.events.lock().expect("not poisoned").push(GroupEvent::Assigned(parts));
        }
    }
}

/// Give each partition of `tpl` its start by offset: the group's commit, or (`from_start`)
/// the beginning by name where it has none. librdkafka would read the commits itself after the
/// assignment; read here, they are read once. And it resets a partition without one (every
/// partition of a new group) as after an error, waiting 100 ms before it asks for the first
/// offset. Any doubt (no answer within a second, an error for the partition, a commit still
/// in a transaction) leaves the partition to librdkafka. The bound keeps a slow answer (an
/// exactly-once job's commit held by a crashed run's open transaction) from holding the
/// rebalance long.
fn start_at_commits(consumer: &BaseConsumer<GroupContext>, tpl: &mut TopicPartitionList, from_start: bool) {
    let Ok(committed) = consumer.committed_offsets(tpl.clone(), Duration::from_secs(1)) else { return };
    for e in committed.elements().iter().filter(|e| e.error().is_ok()) {
        let start = match e.offset() {
            Offset::Offset(o) => Offset::Offset(o),
            Offset::Invalid if from_start => Offset::Beginning,
            _ => continue,
        };
        // Cannot fail: the partition is in `tpl`.
        let _ = tpl.set_partition_offset(e.topic(), e.partition(), start);
    }
}

pub struct KafkaSource {
    /// Messages read in batches: a range replay's consumer queue, a group member's partition
    /// queues (declared before `consumer`: it must be dropped first).
    batch: Option<BatchQueue>,
    /// Closed by `KafkaSource`'s `Drop`, with a bound, never by its own unbounded drop.
    consumer: ManuallyDrop<BaseConsumer<GroupContext>>,
    topic: Arc<str>,
    infos: Vec<PartitionInfo>,
    events: Arc<Mutex<Vec<GroupEvent>>>,
    /// Messages read and not yet handed out, and where each partition stands.
    intake: Intake,
    assigned: Vec<bool>,
    ready: VecDeque<Poll>,
    total_records: Option<u64>,
    brokers: String,
    group: String,
    /// Range mode: a partition has handed out a chunk; its end was reported; it is paused.
    started: Vec<bool>,
    end_sent: Vec<bool>,
    paused: Vec<bool>,
    /// Per partition, the offset after the last message librdkafka handed over (records and
    /// markers alike): where a resumed partition goes on (see [`KafkaSource::flow`]).
    next_offset: Vec<Option<i64>>,
    /// Per partition, the offset after the last message handed out.
    handed: Vec<Option<i64>>,
    /// Group mode: [`Poll::CaughtUp`] was said since the partition's last chunk.
    told_caught_up: Vec<bool>,
    /// Group mode: the offset partition `p` was read to when [`Poll::CaughtUp`] was last said
    /// (not the log's end as fetched since: messages read after it may not be handed out yet).
    caught_up_at: Vec<Option<i64>>,
    /// Redelivered messages were reported (see `Intake::taken_to`).
    told_redelivered: bool,
    /// Since when the broker has not answered (logged once).
    unreachable: Option<Instant>,
    /// The broker answered again after an outage: every caught-up claim made before it is
    /// stale (producers wrote meanwhile, and the log ends cached then are old).
    reconnected: bool,
    /// Group mode: the group has assigned partitions to this member at least once.
    assigned_before: bool,
    /// Group mode: positions the last commit could not store (the broker away), said at the end.
    uncommitted: Option<Vec<(usize, i64)>>,
    /// A scaled-out job's second stage: the first stage's clocks, read off the internal topic.
    clocks: Option<clocks::Clocks>,
}

/// Errors of a broker that is away for a while (restarting, a network blip): librdkafka
/// reconnects by itself, so the job waits instead of failing.
fn transient(e: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    let code = match e {
        KafkaError::MessageConsumption(c) | KafkaError::ConsumerCommit(c) | KafkaError::Global(c) => *c,
        _ => return false,
    };
    matches!(
        code,
        C::AllBrokersDown
            | C::BrokerTransportFailure
            | C::NetworkException
            | C::RequestTimedOut
            | C::OperationTimedOut
            | C::CoordinatorNotAvailable
            | C::NotCoordinator
            | C::CoordinatorLoadInProgress
            | C::Resolve
            | C::TimedOutQueue
            | C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::RebalanceInProgress
            | C::WaitingForCoordinator
            | C::UnknownMemberId
            | C::IllegalGeneration
    )
}

/// How long a commit waits for the group coordinator's answer before it counts as failed for
/// now (a later commit covers its positions).
const COMMIT_WAIT: Duration = Duration::from_secs(5);

/// Commit `tpl`, waiting at most `wait` for the answer. librdkafka's synchronous commit waits
/// without end for a coordinator: with the broker away, the job's loop stopped there, and a
/// SIGTERM with it (the broker-outage test, in one CI run).
fn commit_within(consumer: &BaseConsumer<GroupContext>, tpl: &TopicPartitionList, wait: Duration) -> Result<(), KafkaError> {
    use rdkafka::bindings as rd;
    use rdkafka::types::RDKafkaErrorCode;
    let no_error = rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR;
    let rk = consumer.client().native_ptr();
    // SAFETY: a live client and list; the queue is ours, and librdkafka keeps its own reference
    // to it until the commit's answer is delivered, so destroying it here is safe either way.
    unsafe {
        let queue = rd::rd_kafka_queue_new(rk);
        let asked = rd::rd_kafka_commit_queue(rk, tpl.ptr(), queue, None, std::ptr::null_mut());
        let result = if asked != no_error {
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::from(asked)))
        } else {
            let event = rd::rd_kafka_queue_poll(queue, wait.as_millis().min(i32::MAX as u128) as i32);
            if event.is_null() {
                Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::OperationTimedOut))
            } else {
                let err = rd::rd_kafka_event_error(event);
                rd::rd_kafka_event_destroy(event);
                if err == no_error { Ok(()) } else { Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::from(err))) }
            }
        };
        rd::rd_kafka_queue_destroy(queue);
        result
    }
}

/// Messages taken per `fetch`, at most.
const MAX_MESSAGES: usize = 16_384;
/// Payload bytes per `fetch` on the `poll` path; a batch holds at most what librdkafka had
/// queued (`queued.max.messages.kbytes`).
const MAX_BYTES: usize = 8 << 20;
/// Range replays hand out chunks of exactly this many records per partition (fewer only at a
/// partition's end), so chunk boundaries never depend on how fetches were cut.
const RANGE_CHUNK: usize = 8_192;
/// A partition whose buffer holds this many records stops fetching until it is drained.
const RANGE_BUFFER: usize = 4 * RANGE_CHUNK;
/// A live partition's messages wait at most this long for a full chunk once it is caught up
/// with the topic only partly: latency stays in milliseconds while backlogs read in chunks.
const LINGER: Duration = Duration::from_millis(10);

impl KafkaSource {
    pub fn open(cluster: &Cluster, topic: &str, start: Start) -> anyhow::Result<KafkaSource> {
        let group = match &start {
            Start::Group { group } => group.clone(),
            Start::Range { .. } => format!("osprey-replay-{}", std::process::id()),
        };
        let events = Arc::new(Mutex::new(Vec::new()));
        let config = cluster.config(&[
            ("group.id", &group),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            ("enable.partition.eof", "true"),
            // Apache Kafka answers a fetch as soon as data is there, so this bounds only
            // the wait on an idle partition. (Tansu holds every fetch for about half of
            // it even when data is ready: set 10 in `[source] properties` there.)
            ("fetch.wait.max.ms", "100"),
            // Records of aborted transactions, and of open ones, are never read.
            ("isolation.level", "read_committed"),
            // While the pipeline decodes a burst, librdkafka's queue passes
            // queued.min.messages and fetching pauses for this long; the default 1 s left a
            // replay waiting on an empty queue two thirds of the time (4x slower).
            ("fetch.queue.backoff.ms", "10"),
            // A dead member's partitions move on after this (the broker's minimum is 6 s).
            ("session.timeout.ms", "6000"),
            ("heartbeat.interval.ms", "1000"),
        ]);
        let uncommitted_from_start = matches!(config.get("auto.offset.reset"), Some("earliest" | "smallest" | "beginning"));
        let consumer: BaseConsumer<GroupContext> = config
            .create_with_context(GroupContext { events: events.clone(), before_revoke: Mutex::new(None), uncommitted_from_start })
            .with_context(|| format!("cannot create a Kafka consumer for {}", cluster.brokers))?;
        // A live run waits a minute for its topic to appear (a producer starting beside it).
        let patience = if matches!(start, Start::Group { .. }) { 60 } else { 0 };
        let mut partitions = 0;
        for attempt in 0..=patience {
            let metadata = consumer
                .fetch_metadata(Some(topic), Duration::from_secs(10))
                .with_context(|| format!("cannot reach Kafka at {} (is the broker running?)", cluster.brokers))?;
            partitions = metadata.topics().iter().find(|t| t.name() == topic).map(|t| t.partitions().len()).unwrap_or(0);
            if partitions > 0 || attempt == patience {
                break;
            }
            if attempt == 0 {
                crate::log_info!("waiting for the Kafka topic `{topic}` to exist on {}", cluster.brokers);
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        if partitions == 0 {
            bail!("the Kafka topic `{topic}` does not exist on {} (create it, or check [source] topic)", cluster.brokers);
        }
        let infos = (0..partitions).map(|p| PartitionInfo { name: format!("{topic}/{p}") }).collect();
        let mut source = KafkaSource {
            batch: None,
            consumer: ManuallyDrop::new(consumer),
            topic: Arc::from(topic),
            infos,
            events,
            intake: Intake::new(partitions),
            assigned: vec![false; partitions],
            ready: VecDeque::new(),
            total_records: None,
            brokers: cluster.brokers.clone(),
            group: group.clone(),
            started: vec![false; partitions],
            end_sent: vec![false; partitions],
            paused: vec![false; partitions],
            next_offset: vec![None; partitions],
            handed: vec![None; partitions],
            told_caught_up: vec![false; partitions],
            caught_up_at: vec![None; partitions],
            told_redelivered: false,
            unreachable: None,
            reconnected: false,
            assigned_before: false,
            uncommitted: None,
            clocks: None,
        };
        match start {
            Start::Group { .. } => {
                // No partition counts until the group assigns it.
                source.ready.push_back(Poll::Revoked((0..partitions).collect()));
                // Before the first assignment: see `batch`.
                source.batch = Some(BatchQueue::of_partitions(&source.consumer, topic, partitions).with_context(|| {
                    format!("cannot set up the partition queues of `{topic}` (librdkafka refused one)")
                })?);
                source.consumer.subscribe(&[topic]).with_context(|| format!("cannot subscribe to `{topic}`"))?
            }
            Start::Range { from, to } => source.assign_range(partitions, &from, &to)?,
        }
        Ok(source)
    }

    /// A scaled-out job's second stage over its internal topic: markers there carry the
    /// clocks of the source's `source_partitions` partitions, delayed by `delay` (see
    /// [`clocks`]).
    pub fn open_second_stage(cluster: &Cluster, topic: &str, group: &str, source_topic: &str, source_partitions: usize, delay: Millis) -> anyhow::Result<KafkaSource> {
        let mut source = KafkaSource::open(cluster, topic, Start::Group { group: group.to_string() })?;
        source.clocks = Some(clocks::Clocks::new(source_topic, source.infos.len(), source_partitions, delay));
        Ok(source)
    }

    /// Run `hook` inside each revocation, before the partitions go to another member: a first
    /// stage commits its open transaction there, so the new owner starts where it stopped.
    pub fn before_revoke(&mut self, hook: RevokeHook) {
        *self.consumer.context().before_revoke.lock().expect("not poisoned") = Some(hook);
    }

    /// The consumer, for a first stage's transactions.
    pub fn consumer(&self) -> &BaseConsumer<GroupContext> {
        &self.consumer
    }

    fn assign_range(&mut self, partitions: usize, from: &Position, to: &Position) -> anyhow::Result<()> {
        let mut starts = Vec::with_capacity(partitions);
        let mut ends = Vec::with_capacity(partitions);
        for p in 0..partitions as i32 {
            let (low, high) = self
                .consumer
                .fetch_watermarks(&self.topic, p, Duration::from_secs(10))
                .with_context(|| format!("cannot read the offsets of {}/{p}", self.topic))?;
            starts.push(self.offset_at(p, from, low, high, low)?);
            ends.push(self.offset_at(p, to, low, high, high)?);
        }
        let mut tpl = TopicPartitionList::new();
        for (p, (&s, &e)) in starts.iter().zip(&ends).enumerate() {
            if s < e {
                tpl.add_partition_offset(&self.topic, p as i32, Offset::Offset(s))?;
                self.assigned[p] = true;
            } else {
                self.intake.done[p] = true;
                self.end_sent[p] = true;
                self.ready.push_back(Poll::PartitionEnd(p));
            }
        }
        self.total_records = Some(starts.iter().zip(&ends).map(|(s, e)| (e - s).max(0) as u64).sum());
        self.consumer.assign(&tpl).context("cannot assign the partitions")?;
        // No group, so no rebalance can reach the batch call (see `batch`).
        self.batch = BatchQueue::of(&self.consumer);
        self.intake.ends = Some(ends);
        Ok(())
    }

    /// Where `at` is in partition `p`, whose log runs from `low` to `high`: `edge` for
    /// [`Position::Edge`] and for a partition the offsets do not list (`low` as a start, `high`
    /// as an end).
    fn offset_at(&self, p: i32, at: &Position, low: i64, high: i64, edge: i64) -> anyhow::Result<i64> {
        let offset = match at {
            Position::Edge => edge,
            Position::Offsets(list) => list.iter().find(|(q, _)| *q == p).map(|(_, o)| *o).unwrap_or(edge),
            Position::Time(t) => self.offset_for_time(p, *t, low, high)?,
        };
        Ok(offset.clamp(low, high))
    }

    /// The first offset at or after `t`. Brokers answer "none" (-1) past the last message;
    /// Tansu 0.6 answers 0 instead, so an answer is checked against the message it names.
    fn offset_for_time(&self, p: i32, t: Millis, low: i64, high: i64) -> anyhow::Result<i64> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, p, Offset::Offset(t))?;
        let answer = self
            .consumer
            .offsets_for_times(tpl, Duration::from_secs(10))
            .with_context(|| format!("cannot look up offsets by time in {}/{p}", self.topic))?;
        let offset = match answer.find_partition(&self.topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) if o >= low && o < high => o,
            _ => return Ok(high),
        };
        if offset == low && low < high {
            // Verify: a time past the last message must mean the end, whatever the broker said.
            if let Some(last_time) = self.message_time(p, high - 1)? {
                if last_time < t {
                    return Ok(high);
                }
            }
        }
        Ok(offset)
    }

    /// The timestamp of the message at `offset`, read with a throwaway consumer.
    fn message_time(&self, p: i32, offset: i64) -> anyhow::Result<Option<Millis>> {
        let probe: BaseConsumer = Cluster::new(self.brokers.clone())
            .config(&[("group.id", "osprey-probe"), ("enable.auto.commit", "false")])
            .create()?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, p, Offset::Offset(offset))?;
        probe.assign(&tpl)?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Some(Ok(m)) = probe.poll(Duration::from_millis(200)) {
                return Ok(Incoming::timestamp(&m));
            }
        }
        Ok(None)
    }

    fn group_label(&self) -> String {
        format!("group `{}`", self.group)
    }

    fn partition_names(&self, ps: &[usize]) -> String {
        if ps.is_empty() {
            return "no partition".into();
        }
        ps.iter().map(|&p| format!("{}/{p}", self.topic)).collect::<Vec<_>>().join(", ")
    }

    /// Read what librdkafka has (waiting up to `wait` for the first message) into the
    /// partition buffers; in range mode, mark partitions that reached their end.
    fn fetch(&mut self, wait: Duration) -> anyhow::Result<usize> {
        if let Some(c) = &mut self.clocks {
            c.new_round();
        }
        if self.batch.is_none() {
            return self.fetch_polled(wait);
        }
        if self.intake.ends.is_some() {
            return self.fetch_batch(wait);
        }
        // A group member: its consumer queue carries rebalances and errors, served first;
        // its messages come from the partition queues, in batches. With no partition yet,
        // the wait is where the assignment comes (on the partition queues it was heard only
        // at the wait's end).
        let unassigned = !self.assigned.contains(&true);
        let polled = self.fetch_polled(if unassigned { wait } else { Duration::ZERO })?;
        // Before reading messages: an assignment clears its partitions' buffers, and must not
        // clear messages of the new assignment read after it.
        self.take_events();
        if let Some(batch) = &self.batch {
            batch.forward((0..self.assigned.len()).filter(|&p| self.assigned[p]));
        }
        let fetched = self.fetch_batch(if unassigned { Duration::ZERO } else { wait })?;
        if self.intake.redelivered > 0 && !std::mem::replace(&mut self.told_redelivered, true) {
            crate::log_warn!(
                "{}: librdkafka delivered messages of `{}` it had delivered already (a partition read again from an older position); they are skipped, not handed out twice",
                self.group_label(),
                self.topic
            );
        }
        Ok(polled + fetched)
    }

    /// [`fetch`](Self::fetch) one `poll` at a time: rebalances and errors on a group member's
    /// consumer queue (and its messages, if its partition queues could not be split off).
    fn fetch_polled(&mut self, wait: Duration) -> anyhow::Result<usize> {
        let (mut count, mut bytes) = (0usize, 0usize);
        let mut wait = wait;
        while count < MAX_MESSAGES && bytes < MAX_BYTES {
            let Some(result) = self.consumer.poll(wait) else { break };
            wait = Duration::ZERO;
            let m = match result {
                Ok(m) => m,
                Err(KafkaError::PartitionEOF(p)) => {
                    self.intake.reached_end(p, None);
                    continue;
                }
                Err(e) if transient(&e) => {
                    self.outage(&e);
                    break;
                }
                Err(e) => bail!("reading the Kafka topic `{}`: {e}", self.topic),
            };
            if let Some(since) = self.unreachable.take() {
                self.answers_again(since);
                self.reconnected = true;
            }
            if let Some(next) = self.next_offset.get_mut(m.partition() as usize) {
                *next = Some(m.offset() + 1);
            }
            if take_marker(&mut self.clocks, &self.consumer, &self.assigned, &mut self.ready, &m) {
                continue;
            }
            match self.intake.accept(&m) {
                Accepted::Buffered(size) => {
                    count += 1;
                    bytes += size;
                    if let Some(c) = &mut self.clocks {
                        c.buffered(Incoming::partition(&m) as usize);
                    }
                }
                Accepted::Skipped => {}
                Accepted::Seek(p, position) => {
                    self.seek(p, position)?;
                    self.next_offset[p] = Some(position);
                }
            }
        }
        Ok(count)
    }

    /// [`fetch`](Self::fetch) through the batch queue: one call per batch, not per message.
    fn fetch_batch(&mut self, wait: Duration) -> anyhow::Result<usize> {
        let mut queue = self.batch.take().expect("a batch queue");
        let result = self.fetch_from(&mut queue, wait);
        self.batch = Some(queue);
        result
    }

    fn fetch_from(&mut self, queue: &mut BatchQueue, wait: Duration) -> anyhow::Result<usize> {
        let batch = queue.take(wait, MAX_MESSAGES);
        let mut count = 0;
        // Partitions sent back to a checkpoint's position by this batch: the rest of their
        // messages in it are stale (librdkafka drops those still queued itself).
        let mut seeked: Vec<usize> = Vec::new();
        for m in batch.iter() {
            if seeked.contains(&(m.partition() as usize)) {
                continue;
            }
            if let Some(code) = m.error() {
                match code {
                    RDKafkaErrorCode::PartitionEOF => self.intake.reached_end(m.partition(), Some(m.offset())),
                    code if transient(&KafkaError::MessageConsumption(code)) => self.outage(&m.error_text()),
                    _ => bail!("reading the Kafka topic `{}`: {}", self.topic, m.error_text()),
                }
                continue;
            }
            if let Some(since) = self.unreachable.take() {
                self.answers_again(since);
                self.reconnected = true;
            }
            if let Some(next) = self.next_offset.get_mut(m.partition() as usize) {
                *next = Some(m.offset() + 1);
            }
            if take_marker(&mut self.clocks, &self.consumer, &self.assigned, &mut self.ready, &m) {
                continue;
            }
            match self.intake.accept(&m) {
                Accepted::Buffered(_) => {
                    count += 1;
                    if let Some(c) = &mut self.clocks {
                        c.buffered(m.partition() as usize);
                    }
                }
                Accepted::Skipped => {}
                Accepted::Seek(p, position) => {
                    self.seek(p, position)?;
                    self.next_offset[p] = Some(position);
                    seeked.push(p);
                }
            }
        }
        let empty = batch.len() == 0;
        debug_assert!(count <= batch.len());
        // Read every time, so the log queue does not grow; heard only while nothing comes.
        if let Some(why) = queue.alarm().filter(|_| empty) {
            self.outage(&why);
        }
        Ok(count)
    }

    /// Seek without waiting for the fetcher's answer (a resumed partition's start).
    fn seek_async(&mut self, p: usize, position: i64) -> anyhow::Result<()> {
        self.consumer
            .seek(&self.topic, p as i32, Offset::Offset(position), Duration::ZERO)
            .map_err(|e| anyhow::anyhow!("cannot seek {}/{p} to {position} as it resumes: {e}", self.topic))
    }

    fn seek(&mut self, p: usize, position: i64) -> anyhow::Result<()> {
        self.consumer
            .seek(&self.topic, p as i32, Offset::Offset(position), Duration::from_secs(10))
            .map_err(|e| anyhow::anyhow!("cannot seek {}/{p} back to the checkpoint's offset {position}: {e}", self.topic))
    }

    /// Where partition `p` stands when it was read to its end and everything read was handed
    /// out: past its last message handed out, or the end the broker named when that is further
    /// (a transaction's commit marker, never handed out, may end the log); `None` otherwise.
    fn at_end(&self, p: usize) -> Option<i64> {
        (self.intake.caught_up[p] && self.intake.buffers[p].is_empty()).then(|| self.handed[p].max(self.intake.end_at[p])).flatten()
    }

    /// Where partition `p`'s last caught-up claim stands: the offset after the last message
    /// handed out, or the end the broker named when nothing was; `None` when it cannot say
    /// (a second stage then does not lean on the claim).
    pub(crate) fn read_to(&self, p: usize) -> Option<i64> {
        self.caught_up_at[p]
    }

    /// The end of partition `p`'s log as its last fetch answer gave it, without a request
    /// (this runs on the pipeline thread every two seconds); `None` before one came.
    fn cached_end(&self, p: usize) -> Option<i64> {
        let topic = std::ffi::CString::new(self.topic.as_bytes()).ok()?;
        let (mut low, mut high) = (-1i64, -1i64);
        // SAFETY: a live client, a NUL-terminated topic name, and valid out-pointers; librdkafka
        // only reads its own cached partition state.
        let err = unsafe {
            rdkafka::bindings::rd_kafka_get_watermark_offsets(self.consumer.client().native_ptr(), topic.as_ptr(), p as i32, &mut low, &mut high)
        };
        (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high)
    }

    fn answers_again(&self, since: Instant) {
        crate::log_info!("Kafka at {} answers again (after {:.1} s); reading `{}` on", self.brokers, since.elapsed().as_secs_f64(), self.topic);
    }

    /// Hand out the next chunk of partition `p`: its first record alone when the partition has
    /// not started (see [`poll_range`](Self::poll_range)), else its oldest chunk.
    fn next_chunk(&mut self, p: usize) -> anyhow::Result<Poll> {
        let g = if self.started[p] { self.intake.buffers[p].pop_front() } else { self.intake.buffers[p].pop_first() };
        self.started[p] = true;
        self.flow(p)?;
        Ok(self.chunk(p, g))
    }

    fn chunk(&mut self, p: usize, g: Gather) -> Poll {
        if let Some(last) = g.records.last() {
            self.handed[p] = Some(last.offset + 1);
        }
        self.told_caught_up[p] = false;
        if let Some(w) = self.clocks.as_mut().and_then(|c| c.handed(p, g.records.len())) {
            self.ready.push_back(Poll::Clock(p, w));
        }
        // A range replay's partitions end instead; a live one is behind while it holds more.
        let behind = self.intake.ends.is_none() && (g.records.len() >= RANGE_CHUNK || !self.intake.buffers[p].is_empty());
        let meta = RecordMeta { topic: self.topic.clone(), timestamps: g.timestamps, trace_ids: g.trace_ids };
        Poll::Chunk(Chunk {
            partition: p,
            behind,
            bytes: g.data.len() as u64,
            payload: Payload::Json { data: g.data, records: g.records, meta: Some(meta) },
        })
    }

    /// A range replay reads like a file replay: the partition not yet started, else the one
    /// furthest behind in event time, in chunks of exactly [`RANGE_CHUNK`] records, so the
    /// output never depends on fetch timing. Others' messages wait in their buffers (a full
    /// buffer pauses its partition).
    ///
    /// Each partition's first chunk is its first record alone. So every partition has an event
    /// time before any full chunk runs, and a record an hour late in a partition's first chunk
    /// is judged against the other partitions' clocks, as a live read of the interleaved topic
    /// would judge it, not against partitions that have not spoken yet (nothing is late then).
    fn poll_range(&mut self, watermarks: &[Millis]) -> anyhow::Result<Poll> {
        loop {
            let next = (0..self.intake.buffers.len())
                .filter(|&p| !self.end_sent[p])
                .min_by_key(|&p| (self.started[p], watermarks.get(p).copied().unwrap_or(Millis::MIN), p));
            let Some(p) = next else { return Ok(Poll::End) };
            let have = self.intake.buffers[p].len();
            if have >= RANGE_CHUNK || (have > 0 && (self.intake.done[p] || !self.started[p])) {
                return self.next_chunk(p);
            }
            if self.intake.done[p] {
                self.end_sent[p] = true;
                return Ok(Poll::PartitionEnd(p));
            }
            self.flow(p)?;
            if self.fetch(Duration::from_millis(100))? == 0 && !self.intake.done[p] {
                return Ok(Poll::Idle);
            }
        }
    }

    /// A live run reads its assigned partitions like a replay while they have a backlog (after
    /// a restart, a rebalance, a slow spell): the partition furthest behind in event time
    /// first, in chunks of [`RANGE_CHUNK`], the others paused once their buffers fill, as
    /// Flink's watermark alignment does, so whether a record is late does not depend on which
    /// partition's fetch returned first. A caught-up partition's messages go out as they come,
    /// after at most [`LINGER`].
    fn poll_group(&mut self, watermarks: &[Millis]) -> anyhow::Result<Poll> {
        loop {
            if let Some(p) = self.ready.pop_front() {
                return Ok(p);
            }
            let told = (0..self.intake.buffers.len())
                .find(|&p| self.assigned[p] && self.intake.caught_up[p] && self.intake.buffers[p].is_empty() && !self.told_caught_up[p]);
            if let Some(p) = told {
                self.told_caught_up[p] = true;
                self.caught_up_at[p] = self.at_end(p);
                return Ok(Poll::CaughtUp(p));
            }
            let next = (0..self.intake.buffers.len())
                .filter(|&p| self.assigned[p] && !(self.intake.caught_up[p] && self.intake.buffers[p].is_empty()))
                .min_by_key(|&p| (self.started[p], watermarks.get(p).copied().unwrap_or(Millis::MIN), p));
            if let Some(p) = next {
                let have = self.intake.buffers[p].len();
                let lingered = self.intake.first_at[p].is_some_and(|t| t.elapsed() >= LINGER);
                if have >= RANGE_CHUNK || (have > 0 && (self.intake.caught_up[p] || lingered || !self.started[p])) {
                    if self.take_back_stale_claims(p) {
                        continue;
                    }
                    let chunk = self.next_chunk(p)?;
                    self.intake.first_at[p] = (!self.intake.buffers[p].is_empty()).then(Instant::now);
                    return Ok(chunk);
                }
                self.flow(p)?;
            }
            let fetched = self.fetch(if next.is_some() { LINGER } else { Duration::from_millis(100) })?;
            self.take_events();
            if fetched == 0 && self.ready.is_empty() && !next.is_some_and(|p| self.intake.caught_up[p]) {
                return Ok(Poll::Idle);
            }
        }
    }

    /// Before partition `p`'s chunk goes out: every other partition that said
    /// [`Poll::CaughtUp`] and has more to read now (messages buffered, or a log end past the
    /// one it was caught up to, as its last fetch answer gives it) says
    /// [`Poll::NotCaughtUp`] first. Otherwise a burst landing on every partition at once
    /// (producers back after an outage) would make `p`'s chunk a backlog that the others'
    /// stale claims do not hold back, and their records of the same minutes would be late.
    /// Returns whether any did (they wait in `ready`, before the chunk).
    fn take_back_stale_claims(&mut self, p: usize) -> bool {
        if self.clocks.is_some() {
            // A second stage's clocks are its first stage's (see `clocks`).
            return false;
        }
        let reconnected = std::mem::take(&mut self.reconnected);
        for q in 0..self.told_caught_up.len() {
            if q == p || !self.told_caught_up[q] {
                continue;
            }
            let grown = || self.cached_end(q).zip(self.intake.end_at[q]).is_some_and(|(end, at)| end > at);
            if !reconnected && self.intake.caught_up[q] && self.intake.buffers[q].is_empty() && !grown() {
                continue;
            }
            self.told_caught_up[q] = false;
            // Told again at its next end of log, once everything read is handed out.
            self.intake.caught_up[q] = false;
            self.ready.push_back(Poll::NotCaughtUp(q));
        }
        !self.ready.is_empty()
    }

    /// Pause partitions with full buffers, resume the rest (always `wanted`).
    fn flow(&mut self, wanted: usize) -> anyhow::Result<()> {
        let mut pause = TopicPartitionList::new();
        let mut resume = TopicPartitionList::new();
        for p in 0..self.intake.buffers.len() {
            let full = p != wanted && self.assigned[p] && self.intake.buffers[p].len() >= RANGE_BUFFER && !self.intake.done[p];
            if full && !self.paused[p] {
                pause.add_partition(&self.topic, p as i32);
                self.paused[p] = true;
            } else if !full && self.paused[p] {
                resume.add_partition(&self.topic, p as i32);
                self.paused[p] = false;
            }
        }
        if pause.count() > 0 {
            self.consumer.pause(&pause).context("cannot pause a partition")?;
        }
        if resume.count() > 0 {
            self.consumer.resume(&resume).context("cannot resume a partition")?;
            // And where it left off. librdkafka's own position can be one message past that:
            // when the next offset was a transaction's commit marker, the record after it was
            // never handed over (seen through the shuffle's internal topic: one record of two
            // million, in one run of ten).
            for e in resume.elements() {
                let p = e.partition() as usize;
                if let Some(next) = self.next_offset[p] {
                    self.seek_async(p, next)?;
                }
            }
        }
        Ok(())
    }

    /// Say once that the broker is unreachable; the job waits for it and reconnects.
    fn outage(&mut self, e: &dyn std::fmt::Display) {
        if self.unreachable.is_none() {
            crate::log_warn!("Kafka at {} is unreachable ({e}); the job waits and reconnects, nothing is lost", self.brokers);
            self.unreachable = Some(Instant::now());
        }
    }

    /// A partition (re)assigned or revoked starts over: the new owner reads from the commit.
    fn forget(&mut self, p: usize) {
        self.intake.buffers[p] = Buffer::default();
        self.next_offset[p] = None;
        self.handed[p] = None;
        self.told_caught_up[p] = false;
        self.caught_up_at[p] = None;
        self.intake.end_at[p] = None;
        self.intake.taken_to[p] = None;
        if let Some(c) = &mut self.clocks {
            c.forget(p);
        }
        self.started[p] = false;
        self.intake.caught_up[p] = false;
        self.intake.first_at[p] = None;
        self.paused[p] = false;
    }

    fn take_events(&mut self) {
        let events: Vec<GroupEvent> = std::mem::take(&mut *self.events.lock().expect("not poisoned"));
        for e in events {
            match e {
                GroupEvent::Assigned(ps) => {
                    crate::log_info!("{}: assigned {}", self.group_label(), self.partition_names(&ps));
                    if !std::mem::replace(&mut self.assigned_before, true) {
                        // A restored job's partitions that went to another member: the pipeline
                        // drops their restored rows, so they are read from the group's commit
                        // when they come here later, never from the checkpoint's positions.
                        // (Exactly-once keeps those rows, and there the commit is the restored
                        // checkpoint's positions.) Done here, in event order, not when the
                        // pipeline reaches the assignment: its chunks may be behind the next one.
                        for p in (0..self.intake.resume.len()).filter(|p| !ps.contains(p)) {
                            self.intake.resume[p] = None;
                        }
                    }
                    let mut resume = TopicPartitionList::new();
                    for &p in &ps {
                        self.assigned[p] = true;
                        self.forget(p);
                        resume.add_partition(&self.topic, p as i32);
                    }
                    // A partition paused before it was revoked must fetch again in its new turn.
                    if let Err(e) = self.consumer.resume(&resume) {
                        crate::log_warn!("{}: cannot resume {}: {e}", self.group_label(), self.partition_names(&ps));
                    }
                    self.ready.push_back(Poll::Assigned(ps));
                }
                GroupEvent::Revoked(ps) => {
                    if !ps.is_empty() {
                        crate::log_info!("{}: revoked {}", self.group_label(), self.partition_names(&ps));
                    }
                    for &p in &ps {
                        self.assigned[p] = false;
                        self.forget(p);
                        // Its rows leave the windows: whoever reads it next starts at the commit.
                        self.intake.resume[p] = None;
                    }
                    self.ready.push_back(Poll::Revoked(ps));
                }
            }
        }
    }
}

/// A second stage's marker: its clock is taken (told at once when nothing of its partition
/// waits), never buffered as a record. False for any other message.
fn take_marker(clocks: &mut Option<clocks::Clocks>, consumer: &BaseConsumer<GroupContext>, assigned: &[bool], ready: &mut VecDeque<Poll>, m: &impl Incoming) -> bool {
    let Some(clocks) = clocks else { return false };
    if m.header(clocks::MARKER_HEADER).is_none() {
        return false;
    }
    let p = m.partition() as usize;
    if assigned.get(p).copied().unwrap_or(false) {
        let mut ends = BrokerEnds { consumer, topic: clocks.source_topic.clone() };
        if let Some(w) = clocks.marker(p, m.payload(), &mut ends) {
            ready.push_back(Poll::Clock(p, w));
        }
    }
    true
}

/// The source topic's log ends, asked of the broker (a second stage's check of caught-up claims).
struct BrokerEnds<'a> {
    consumer: &'a BaseConsumer<GroupContext>,
    topic: String,
}

impl clocks::LogEnds for BrokerEnds<'_> {
    fn log_end(&mut self, p: usize) -> Option<i64> {
        self.consumer.fetch_watermarks(&self.topic, p as i32, Duration::from_secs(2)).ok().map(|(_, high)| high)
    }
}

/// How a commit's metadata notes the job's watermark (see [`Source::commit_noting`]).
const WATERMARK_NOTE: &str = "osprey-watermark=";
/// After the watermark, in an exactly-once second stage's commits: the checkpoint whose state
/// went with the transaction (see [`watermark_note`]).
const CHECKPOINT_NOTE: &str = " checkpoint=";

/// A commit's note: the watermark the partition's windows were emitted up to and, in an
/// exactly-once second stage, the token of the checkpoint committed with them. A process of
/// several restores a checkpoint only for the partitions whose last commit names it: the others
/// were committed since by another process, or by this one without a checkpoint.
pub fn watermark_note(watermark: Millis, checkpoint: Option<u64>) -> String {
    match checkpoint {
        Some(token) => format!("{WATERMARK_NOTE}{watermark}{CHECKPOINT_NOTE}{token:016x}"),
        None => format!("{WATERMARK_NOTE}{watermark}"),
    }
}

/// The checkpoint token of a note made by [`watermark_note`].
pub fn noted_checkpoint(note: &str) -> Option<u64> {
    u64::from_str_radix(note.split_once(CHECKPOINT_NOTE)?.1, 16).ok()
}

/// The watermark of a note made by [`watermark_note`].
fn noted_watermark(note: &str) -> Option<Millis> {
    note.strip_prefix(WATERMARK_NOTE)?.split(CHECKPOINT_NOTE).next()?.parse().ok()
}

/// `positions` (partition, next offset, note; an empty note is none) of `topic` as a list to
/// commit.
fn noted_offsets<'a>(topic: &str, positions: impl IntoIterator<Item = &'a (usize, i64, String)>) -> rdkafka::error::KafkaResult<TopicPartitionList> {
    let mut tpl = TopicPartitionList::new();
    for (p, offset, note) in positions {
        let mut e = tpl.add_partition(topic, *p as i32);
        e.set_offset(Offset::Offset(*offset))?;
        if !note.is_empty() {
            e.set_metadata(note.clone());
        }
    }
    Ok(tpl)
}

/// Commit `producer`'s open transaction with `positions` (partition, next offset, note) of
/// `topic` as `consumer`'s group's offsets, and begin the next. The group's generation goes
/// with them, so a member that lost its partitions in a rebalance is refused (KIP-447).
pub fn commit_with_offsets(
    consumer: &BaseConsumer<GroupContext>,
    topic: &str,
    producer: &rdkafka::producer::ThreadedProducer<crate::kafka::DeliveryLog>,
    positions: &[(usize, i64, String)],
    timeout: Duration,
) -> anyhow::Result<()> {
    use rdkafka::producer::Producer;
    if !positions.is_empty() {
        let group = consumer.group_metadata().context("the consumer has no group metadata (not in a group yet?)")?;
        producer.send_offsets_to_transaction(&noted_offsets(topic, positions)?, &group, Duration::from_secs(30)).context("cannot put the offsets into the transaction")?;
    }
    crate::kafka::commit_transaction(producer, timeout).context("cannot commit the transaction")?;
    producer.begin_transaction().context("cannot begin the next transaction")?;
    Ok(())
}

/// How long a consumer may take to leave its group when the job ends.
const CLOSE_LIMIT: Duration = Duration::from_secs(15);

impl Drop for KafkaSource {
    /// rust-rdkafka's own drop leaves the group and polls until librdkafka says it is closed,
    /// with no bound: a coordinator that never answers (a broker going away at that moment)
    /// would keep the process from ending. Nothing of the job's depends on the close (offsets
    /// are committed explicitly, after their outputs), so it gets `CLOSE_LIMIT` on a thread of
    /// its own; past that the process goes on without it and the group's session timeout
    /// hands the partitions over instead.
    fn drop(&mut self) {
        if let Some(positions) = self.uncommitted.take() {
            let at: Vec<String> = positions.iter().map(|(p, o)| format!("{}/{p} at {o}", self.topic)).collect();
            crate::log_warn!(
                "the job stopped while Kafka at {} was unreachable: {} could not commit {}; a restart reads again from the group's previous commit (outputs since then come again, unless a --state-dir checkpoint holds them)",
                self.brokers,
                self.group_label(),
                at.join(", ")
            );
        }
        self.batch.take(); // its queue handle first: it belongs to the consumer
        // SAFETY: taken once, here; the field is never used again.
        let consumer = unsafe { ManuallyDrop::take(&mut self.consumer) };
        let (closed, done) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new().name("kafka-close".into()).spawn(move || {
            drop(consumer);
            let _ = closed.send(());
        });
        if spawned.is_ok() && done.recv_timeout(CLOSE_LIMIT).is_err() {
            crate::log_warn!(
                "the Kafka consumer of `{}` (group `{}`) did not leave its group within {CLOSE_LIMIT:?}; going on without it (the group hands its partitions over after its session timeout)",
                self.topic,
                self.group
            );
        }
    }
}

impl Source for KafkaSource {
    fn partitions(&self) -> &[PartitionInfo] {
        &self.infos
    }

    fn poll(&mut self, watermarks: &[Millis]) -> anyhow::Result<Poll> {
        if let Some(p) = self.ready.pop_front() {
            return Ok(p);
        }
        if self.intake.ends.is_some() {
            return self.poll_range(watermarks);
        }
        self.poll_group(watermarks)
    }

    fn metadata_wanted(&mut self, timestamps: bool, trace_ids: bool) {
        self.intake.want_timestamps = timestamps;
        self.intake.want_trace_ids = trace_ids;
    }

    fn commit(&mut self, positions: &[(usize, i64)]) -> anyhow::Result<()> {
        let unnoted: Vec<(usize, i64, Millis)> = positions.iter().map(|&(p, o)| (p, o, Millis::MIN)).collect();
        self.commit_noting(&unnoted)
    }

    fn commit_noting(&mut self, positions: &[(usize, i64, Millis)]) -> anyhow::Result<()> {
        let noted: Vec<(usize, i64, String)> = positions
            .iter()
            .map(|&(p, o, w)| (p, o, if w == Millis::MIN { String::new() } else { watermark_note(w, None) }))
            .collect();
        self.commit_notes(&noted)
    }

    fn commit_notes(&mut self, positions: &[(usize, i64, String)]) -> anyhow::Result<()> {
        if self.intake.ends.is_some() {
            return Ok(()); // a replay reads a range; it moves no group forward
        }
        let tpl = noted_offsets(&self.topic, positions.iter().filter(|(p, ..)| self.assigned.get(*p).copied().unwrap_or(false)))?;
        if tpl.count() == 0 {
            return Ok(());
        }
        match commit_within(&self.consumer, &tpl, COMMIT_WAIT) {
            Ok(()) => {
                self.uncommitted = None;
                Ok(())
            }
            // A later commit covers these positions; the job goes on while the broker is away.
            Err(e) if transient(&e) => {
                self.outage(&e);
                self.uncommitted = Some(positions.iter().map(|(p, o, _)| (*p, *o)).collect());
                Ok(())
            }
            Err(e) => Err(e).with_context(|| format!("cannot commit offsets of `{}` to {}", self.topic, self.brokers)),
        }
    }

    fn total_records(&self) -> Option<u64> {
        self.total_records
    }

    fn lag(&mut self) -> Option<Vec<(usize, i64)>> {
        let mut out = Vec::new();
        for p in (0..self.assigned.len()).filter(|&p| self.assigned[p]) {
            // A paused partition is not fetched, so its cached end is old: ask the broker.
            let cached = if self.paused[p] { None } else { self.cached_end(p) };
            let high = match cached {
                Some(high) => high,
                None => match self.consumer.fetch_watermarks(&self.topic, p as i32, Duration::from_millis(500)) {
                    Ok((_, high)) => high,
                    Err(_) => continue,
                },
            };
            let next = self.handed[p].unwrap_or_else(|| high - self.intake.buffers[p].len() as i64).max(self.at_end(p).unwrap_or(i64::MIN));
            out.push((p, (high - next).max(0)));
        }
        Some(out)
    }

    fn emitted_up_to(&mut self, p: usize) -> Option<Millis> {
        noted_watermark(&self.committed_note(p)?)
    }

    fn committed_note(&mut self, p: usize) -> Option<String> {
        if self.intake.ends.is_some() {
            return None;
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, p as i32);
        let answer = self.consumer.committed_offsets(tpl, Duration::from_secs(10)).ok()?;
        let e = answer.find_partition(&self.topic, p as i32)?;
        Some(e.metadata().to_string()).filter(|m| !m.is_empty())
    }

    fn committed(&mut self) -> anyhow::Result<Option<Vec<Option<(i64, String)>>>> {
        if self.intake.ends.is_some() {
            return Ok(None);
        }
        let mut tpl = TopicPartitionList::new();
        for p in 0..self.infos.len() {
            tpl.add_partition(&self.topic, p as i32);
        }
        let answer = self
            .consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .with_context(|| format!("cannot read the committed offsets of {} on {}", self.group_label(), self.brokers))?;
        Ok(Some(
            (0..self.infos.len())
                .map(|p| match answer.find_partition(&self.topic, p as i32).map(|e| (e.offset(), e.metadata().to_string())) {
                    Some((Offset::Offset(o), note)) => Some((o, note)),
                    _ => None,
                })
                .collect(),
        ))
    }

    fn commit_transaction(
        &mut self,
        producer: &rdkafka::producer::ThreadedProducer<crate::kafka::DeliveryLog>,
        positions: &[(usize, i64, String)],
    ) -> anyhow::Result<()> {
        commit_with_offsets(&self.consumer, &self.topic, producer, positions, Duration::from_secs(60)).with_context(|| format!("{}", self.group_label()))
    }

    fn on_revoke(&mut self, mut hook: TopicRevokeHook) -> bool {
        let topic = self.topic.clone();
        self.before_revoke(Box::new(move |consumer| hook(consumer, &topic)));
        true
    }

    fn positions_at(&mut self, from: &Position) -> anyhow::Result<Vec<Option<i64>>> {
        let mut out = Vec::new();
        for p in 0..self.infos.len() as i32 {
            let (low, high) = self
                .consumer
                .fetch_watermarks(&self.topic, p, Duration::from_secs(10))
                .with_context(|| format!("cannot read the offsets of {}/{p}", self.topic))?;
            out.push(Some(self.offset_at(p, from, low, high, low)?));
        }
        Ok(out)
    }

    fn resume_at(&mut self, positions: &[Option<i64>]) {
        if self.intake.ends.is_none() {
            self.intake.resume = positions.to_vec();
        }
    }

    fn is_bounded(&self) -> bool {
        self.intake.ends.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A commit's note gives back its watermark with or without a checkpoint's token, and a
    /// note of an older version (the watermark alone) still reads: a restart after an upgrade
    /// skips what was emitted.
    #[test]
    fn a_commit_note_gives_back_its_watermark_and_checkpoint() {
        let plain = watermark_note(1_767_600_000_000, None);
        assert_eq!(plain, "osprey-watermark=1767600000000", "the note older runs wrote and read");
        assert_eq!((noted_watermark(&plain), noted_checkpoint(&plain)), (Some(1_767_600_000_000), None));
        let with = watermark_note(-5, Some(0x00ab_cdef_0123_4567));
        assert_eq!((noted_watermark(&with), noted_checkpoint(&with)), (Some(-5), Some(0x00ab_cdef_0123_4567)));
        assert_eq!((noted_watermark("something else"), noted_checkpoint("something else")), (None, None));
    }
}
