//! The first stage of a scaled-out job: the source topic, re-keyed into the internal topic.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use datafusion::arrow::row::{RowConverter, SortField};
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use crate::decode::pool::{DecodePool, Pending};
use crate::decode::{event_times, Decoder};
use crate::job::Job;
use crate::kafka::{Cluster, DeliveryLog};
use crate::sink::route::Route;
use crate::source::kafka::clocks::{Marker, MARKER_HEADER};
use crate::source::kafka::{GroupContext, KafkaSource};
use crate::source::{Chunk, Decoded, Payload, Poll, Source};
use crate::time::watermark::{ClockState, Watermarks};

/// How often the open transaction commits: the second stage sees records this much later.
const COMMIT_EVERY: Duration = Duration::from_millis(100);
/// How often every owned partition's clock is written again, changed or not: a second stage
/// that starts, or takes over an internal partition, hears every clock within this.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// What the first stage did, for the closing message.
#[derive(Debug, Default, Clone, Copy)]
pub struct Forwarded {
    pub records: u64,
    /// Pane partials sent for them (see [`super::partials`]), and records the stage found late.
    pub partials: u64,
    pub late: u64,
    pub dead_letters: u64,
    pub markers: u64,
    pub transactions: u64,
    /// Where the stage's time went: reading the source, writing, committing transactions.
    pub reading: Duration,
    pub writing: Duration,
    pub committing: Duration,
}

impl std::fmt::Display for Forwarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sent = if self.partials > 0 || self.late > 0 {
            format!("{} records as {} pane partials ({} late records routed)", self.records, self.partials, self.late)
        } else {
            format!("{} records", self.records)
        };
        write!(
            f,
            "{} and {} clock markers forwarded in {} transactions, {} dead letters; {:.1}s reading, {:.1}s writing, {:.1}s committing",
            sent,
            self.markers,
            self.transactions,
            self.dead_letters,
            self.reading.as_secs_f64(),
            self.writing.as_secs_f64(),
            self.committing.as_secs_f64()
        )
    }
}

/// The open transaction: what it wrote, and the source positions it will commit.
struct Open {
    producer: Arc<ThreadedProducer<DeliveryLog>>,
    source_topic: String,
    /// Per source partition, the next offset after what was forwarded.
    positions: Vec<Option<i64>>,
    writes: u64,
    /// A commit inside a revocation failed: the stage stops with it.
    failed: Option<String>,
    transactions: u64,
}

impl Open {
    /// Commit what was written with the consumed offsets, and begin the next transaction.
    fn commit(&mut self, consumer: &BaseConsumer<GroupContext>) -> anyhow::Result<()> {
        let positions: Vec<(usize, i64, String)> = self.positions.iter().enumerate().filter_map(|(p, o)| o.map(|o| (p, o, String::new()))).collect();
        if self.writes == 0 && positions.is_empty() {
            return Ok(());
        }
        // Without rust-rdkafka's 100 ms wait in the flush (see `crate::kafka::commit_transaction`):
        // with it, the transactions held the shuffle at a tenth of one stage.
        crate::source::kafka::commit_with_offsets(consumer, &self.source_topic, &self.producer, &positions, Duration::from_secs(30))
            .context("the shuffle's transaction")?;
        self.positions.iter_mut().for_each(|p| *p = None);
        self.writes = 0;
        self.transactions += 1;
        Ok(())
    }
}

/// A source event waiting for its turn: a chunk decoding, or a change of a partition's clock
/// or ownership.
enum Step {
    Chunk { partition: usize, behind: bool, raw: Arc<Payload>, pending: Pending },
    /// Caught up, read to this offset then.
    CaughtUp(usize, Option<i64>),
    NotCaughtUp(usize),
    Assigned(Vec<usize>),
    Revoked(Vec<usize>),
}

impl Step {
    /// Whether it is about one of partitions `ps`.
    fn of(&self, ps: &[usize]) -> bool {
        match self {
            Step::Chunk { partition: p, .. } | Step::CaughtUp(p, _) | Step::NotCaughtUp(p) => ps.contains(p),
            Step::Assigned(_) | Step::Revoked(_) => false,
        }
    }
}

/// Reads the source in the job's consumer group and writes each record to the internal
/// partition of its group key, with markers of its partitions' clocks (see the module above).
pub struct Forwarder {
    job: String,
    source: KafkaSource,
    decoder: Arc<Decoder>,
    /// The group key's columns in decoded batches; empty: everything to partition 0.
    key_columns: Vec<usize>,
    converter: Option<RowConverter>,
    event_time: usize,
    watermarks: Watermarks,
    idle_timeout: Duration,
    topic: String,
    partitions: i32,
    open: Arc<Mutex<Open>>,
    producer: Arc<ThreadedProducer<DeliveryLog>>,
    dead_letters: Route,
    /// Pane partials, when the job's aggregates merge: then late records are judged and
    /// routed here, and the rest sent as partials (see [`super::partials`]).
    partials: Option<(super::partials::Partials, Route)>,
    /// Late records routed (with partials), shared with the second stage's counters.
    late_routed: Arc<std::sync::atomic::AtomicU64>,
    lateness: crate::Millis,
    assigned: Vec<bool>,
    /// Per source partition, the clock last written.
    sent: Vec<Option<ClockState>>,
    /// Per source partition, the offset its last caught-up claim was read to, as of the steps
    /// processed (the source may have read past it into chunks still decoding).
    claimed: Vec<Option<i64>>,
    /// Per source partition: assigned while the stage's watermark was ahead of its clock (read
    /// from its commit after a rebalance or a restart), so its records are judged by its own
    /// clock until that catches up, as a second stage judges a partition handed over to it.
    /// Judged by the watermark its other partitions had carried on, all were late.
    catching_up: Vec<bool>,
    /// The source's lag, told at each heartbeat (see [`super::FirstStage::lag`]).
    lag: super::SourceLag,
    done: Forwarded,
}

impl Forwarder {
    /// The first stage of `job` over `source` (opened in the job's group), writing to the
    /// internal topic `topic` of `partitions` partitions.
    pub fn new(job: &Job, key: &[String], cluster: &Cluster, mut source: KafkaSource, topic: &str, partitions: usize, lag: super::SourceLag, partials: Option<super::partials::Partials>) -> anyhow::Result<Forwarder> {
        let decoder = Decoder::new(&job.dataflow());
        let schema = decoder.schema();
        // Forwarded with each record only for the second stage's SQL (partials read none).
        let named = crate::source::metadata::referenced_by(&job.sql.text);
        source.metadata_wanted(named.contains(&"_timestamp"), named.contains(&"_trace_id"));
        let key_columns: Vec<usize> = key.iter().map(|k| schema.index_of(k).with_context(|| format!("the group key column `{k}` is not decoded"))).collect::<anyhow::Result<_>>()?;
        let converter = if key_columns.is_empty() {
            None
        } else {
            Some(RowConverter::new(key_columns.iter().map(|&i| SortField::new(schema.field(i).data_type().clone())).collect())?)
        };
        let id = super::transactional_id(&job.name, "shuffle");
        let mut own = cluster.clone();
        own.transactional_id = Some(id.clone());
        own.properties.push(("transaction.timeout.ms".into(), super::TRANSACTION_TIMEOUT_MS.into()));
        let producer = crate::kafka::transactional(&own)?.expect("a transactional id was set");
        // Exactly-once: what this stage routes to Kafka goes into its transactions too.
        let routes = if job.exactly_once() { &own } else { cluster };
        let source_partitions = source.partitions().len();
        let source_topic = match &job.source {
            crate::job::SourceConfig::Kafka(k) => k.topic.clone(),
            _ => bail!("job `{}`: the shuffle reads a Kafka source", job.name),
        };
        let open = Arc::new(Mutex::new(Open {
            producer: producer.clone(),
            source_topic,
            positions: vec![None; source_partitions],
            writes: 0,
            failed: None,
            transactions: 0,
        }));
        // Inside a revocation, before the partitions go: commit what was forwarded, so their
        // next owner starts exactly after it.
        let in_revoke = open.clone();
        source.before_revoke(Box::new(move |consumer| {
            let mut open = in_revoke.lock().expect("not poisoned");
            if let Err(e) = open.commit(consumer) {
                open.failed.get_or_insert_with(|| format!("{e:#}"));
            }
        }));
        Ok(Forwarder {
            job: job.name.clone(),
            decoder: Arc::new(decoder),
            key_columns,
            converter,
            event_time: job.event_time_index(),
            watermarks: Watermarks::new(source_partitions, job.event_time.watermark_delay),
            idle_timeout: job.event_time.idle_timeout,
            topic: topic.to_string(),
            partitions: partitions as i32,
            producer,
            open,
            dead_letters: Route::new(job.dead_letter.clone(), Some(routes), &job.name, "dlq")?,
            partials: match partials {
                Some(p) => Some((p, Route::new(job.late.clone(), Some(routes), &job.name, "late")?)),
                None => None,
            },
            lateness: job.event_time.allowed_lateness,
            late_routed: Arc::default(),
            assigned: vec![false; source_partitions],
            sent: vec![None; source_partitions],
            claimed: vec![None; source_partitions],
            catching_up: vec![false; source_partitions],
            lag,
            source,
            done: Forwarded::default(),
        })
    }

    /// With pane partials: the count of late records this stage routes, and where they go.
    pub fn late_counter(&self) -> Option<(Arc<std::sync::atomic::AtomicU64>, String)> {
        self.partials.as_ref().map(|(_, route)| (self.late_routed.clone(), route.describe()))
    }

    /// Forward until `stop` is set; the last transaction commits on the way out. Chunks decode
    /// on a pool while the source reads ahead; every source event is handled in the order it
    /// came, so the clocks and claims written are those of what was forwarded before them.
    pub fn run(mut self, stop: Arc<AtomicBool>) -> anyhow::Result<Forwarded> {
        let started = Instant::now();
        let (mut last_commit, mut last_beat) = (Instant::now(), Instant::now());
        let mut dirty = BTreeSet::new();
        let pool = DecodePool::new(self.decoder.clone(), crate::decode::pool::default_workers());
        let mut queue: VecDeque<Step> = VecDeque::new();
        while !stop.load(Ordering::Relaxed) {
            if let Some(e) = self.open.lock().expect("not poisoned").failed.take() {
                bail!("job `{}`: the shuffle's first stage could not commit inside a rebalance: {e}", self.job);
            }
            if queue.len() < pool.depth() {
                let watermarks = self.watermarks.per_partition();
                let asked = Instant::now();
                let polled = self.source.poll(&watermarks).with_context(|| format!("job `{}`: reading the source", self.job))?;
                self.done.reading += asked.elapsed();
                let step = match polled {
                    Poll::Chunk(chunk) => {
                        let raw = Arc::new(chunk.payload);
                        let pending = pool.submit(Chunk { partition: chunk.partition, payload: Payload::Shared(raw.clone()), bytes: chunk.bytes, behind: chunk.behind });
                        Some(Step::Chunk { partition: chunk.partition, behind: chunk.behind, raw, pending })
                    }
                    Poll::CaughtUp(p) => Some(Step::CaughtUp(p, self.source.read_to(p))),
                    Poll::NotCaughtUp(p) => Some(Step::NotCaughtUp(p)),
                    Poll::Assigned(ps) => Some(Step::Assigned(ps)),
                    Poll::Revoked(ps) => {
                        // Committed inside the revocation, up to what was forwarded: chunks of
                        // these partitions not forwarded yet are the next owner's to read.
                        queue.retain(|s| !s.of(&ps));
                        Some(Step::Revoked(ps))
                    }
                    Poll::Idle => {
                        if queue.is_empty() {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        None
                    }
                    Poll::Clock(..) | Poll::PartitionEnd(_) | Poll::End => None,
                };
                if let Some(step) = step {
                    queue.push_back(step);
                    if queue.len() < pool.depth() {
                        continue;
                    }
                }
            }
            if let Some(step) = queue.pop_front() {
                self.step(step, &mut dirty)?;
            }
            let now = Instant::now();
            self.watermarks.mark_idle(now, started, self.idle_timeout);
            if now.duration_since(last_beat) >= HEARTBEAT {
                last_beat = now;
                if let Some(lag) = self.source.named_lag() {
                    *self.lag.lock().expect("not poisoned") = lag;
                }
                self.sent.iter_mut().for_each(|s| *s = None);
                dirty.extend((0..self.assigned.len()).filter(|&p| self.assigned[p]));
            } else {
                // Clocks that changed without a chunk (idle, caught up).
                dirty.extend((0..self.assigned.len()).filter(|&p| self.assigned[p] && self.sent[p] != Some(self.watermarks.state(p))));
            }
            for p in std::mem::take(&mut dirty) {
                self.mark(p)?;
            }
            if now.duration_since(last_commit) >= COMMIT_EVERY {
                last_commit = now;
                self.commit()?;
            }
        }
        // Steps still queued were not forwarded: their records are read again from the commit.
        self.commit()?;
        self.dead_letters.flush()?;
        if let Some((_, late)) = &mut self.partials {
            late.flush()?;
        }
        self.done.transactions = self.open.lock().expect("not poisoned").transactions;
        Ok(self.done)
    }

    /// Handle one source event, in the order they came.
    fn step(&mut self, step: Step, dirty: &mut BTreeSet<usize>) -> anyhow::Result<()> {
        match step {
            Step::Chunk { partition, behind, raw, pending } => {
                dirty.insert(partition);
                let writing = Instant::now();
                let decoded = pending.wait();
                self.forward(partition, behind, &raw, decoded)?;
                self.done.writing += writing.elapsed();
            }
            Step::CaughtUp(p, read_to) => {
                self.watermarks.caught_up(p);
                self.claimed[p] = read_to;
                dirty.insert(p);
            }
            Step::NotCaughtUp(p) => {
                self.watermarks.hold(p);
                dirty.insert(p);
            }
            Step::Assigned(ps) => {
                self.watermarks.activate(&ps);
                let current = self.watermarks.current();
                for p in ps {
                    self.assigned[p] = true;
                    self.claimed[p] = None;
                    self.catching_up[p] = self.watermarks.partition(p) < current;
                    dirty.insert(p);
                }
            }
            Step::Revoked(ps) => {
                // Committed inside the revocation; re-read from there by the next owner. A
                // group starting up revokes what it never assigned: no clock of those starts
                // over (rewound, a partition of dead letters would hold the watermark, which
                // judges lateness here when the stage sends partials).
                self.watermarks.deactivate(&ps);
                for p in ps {
                    self.catching_up[p] = false;
                    if std::mem::replace(&mut self.assigned[p], false) {
                        self.watermarks.rewind(p);
                    }
                    self.sent[p] = None;
                    self.claimed[p] = None;
                }
            }
        }
        Ok(())
    }

    fn commit(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut open = self.open.lock().expect("not poisoned");
        let result = open.commit(self.source.consumer()).with_context(|| format!("job `{}`: the shuffle's first stage", self.job));
        self.done.committing += started.elapsed();
        result
    }

    /// Write partition `p`'s clock to every internal partition, if it changed.
    fn mark(&mut self, p: usize) -> anyhow::Result<()> {
        if !self.assigned[p] {
            return Ok(());
        }
        let clock = self.watermarks.state(p);
        if self.sent[p] == Some(clock) {
            return Ok(());
        }
        self.sent[p] = Some(clock);
        // A caught-up or idle claim names the offset it was read to, for the second stage to
        // check against the log's end (see `source::kafka::clocks`).
        let end = if clock.caught_up || clock.idle { self.claimed[p] } else { None };
        let payload = serde_json::to_vec(&Marker { partition: p, clock, end })?;
        for q in 0..self.partitions {
            let headers = OwnedHeaders::new().insert(Header { key: MARKER_HEADER, value: Some("1") });
            self.send(BaseRecord::to(&self.topic).partition(q).payload(payload.as_slice()).headers(headers))?;
        }
        self.done.markers += self.partitions as u64;
        self.open.lock().expect("not poisoned").writes += self.partitions as u64;
        Ok(())
    }

    /// Decode a chunk (dead letters are routed here), then write each record's own bytes to
    /// the internal partition of its group key, in source order.
    fn forward(&mut self, p: usize, behind: bool, payload: &Payload, decoded: Decoded) -> anyhow::Result<()> {
        let name = self.source.partitions()[p].name.clone();
        for d in &decoded.dead_letters {
            self.dead_letters.write(&crate::sink::route::dead_letter(&self.job, &name, d))?;
        }
        self.done.dead_letters += decoded.dead_letters.len() as u64;
        let Payload::Json { data, records, meta } = payload else { bail!("a Kafka chunk is JSON bytes") };
        let rows = decoded.batch.num_rows();
        let hashes: Vec<u64> = match &self.converter {
            None => vec![0; rows],
            Some(converter) => {
                let columns: Vec<_> = self.key_columns.iter().map(|&i| decoded.batch.column(i).clone()).collect();
                let keys = converter.convert_columns(&columns)?;
                (0..rows).map(|i| crate::checkpoint::fnv(keys.row(i).as_ref())).collect()
            }
        };
        let times = event_times(&decoded.batch, self.event_time);
        self.watermarks.chunk_arrives(p, behind);
        self.watermarks.touch(p, Instant::now());
        if self.partials.is_some() {
            return self.forward_partials(p, &name, &decoded, &times, records);
        }
        let mut at = 0;
        for row in 0..rows {
            let offset = decoded.offsets[row];
            while records[at].offset != offset {
                at += 1; // dead letters in between
            }
            let r = records[at];
            self.watermarks.observe(p, times[row]);
            let key = hashes[row].to_be_bytes();
            let target = if self.converter.is_some() { (hashes[row] % self.partitions as u64) as i32 } else { 0 };
            let mut record = BaseRecord::to(&self.topic).partition(target).payload(&data[r.start as usize..r.end as usize]);
            // Headers only where there is something to carry: one allocated per record was a
            // tenth of the stage's own time.
            let trace = meta.as_ref().and_then(|m| m.trace_ids[at].as_ref()).map(|t| format!("00-{t}-0000000000000001-01"));
            if let Some(t) = &trace {
                record = record.headers(OwnedHeaders::new().insert(Header { key: "traceparent", value: Some(t) }));
            }
            if self.converter.is_some() {
                record = record.key(&key[..]);
            }
            if let Some(t) = meta.as_ref().and_then(|m| m.timestamps[at]) {
                record = record.timestamp(t);
            }
            self.send(record)?;
        }
        self.done.records += rows as u64;
        let mut open = self.open.lock().expect("not poisoned");
        open.writes += rows as u64;
        if let Some(last) = records.last() {
            open.positions[p] = Some(last.offset + 1);
        }
        Ok(())
    }

    /// A decoded chunk of partition `p` as pane partials: each record judged late or not
    /// against the clocks before it (as one process judges it), late ones routed, the others
    /// aggregated per pane (a tumbling window's is the window) and group.
    fn forward_partials(&mut self, p: usize, name: &str, decoded: &Decoded, times: &[crate::Millis], records: &[crate::source::RawRecord]) -> anyhow::Result<()> {
        let (partials, late) = self.partials.as_mut().expect("partials");
        let mut panes: std::collections::BTreeMap<crate::Millis, Vec<u32>> = std::collections::BTreeMap::new();
        let mut late_rows = 0;
        for (row, &t) in times.iter().enumerate() {
            let mut wm = self.watermarks.current();
            if self.catching_up[p] {
                let own = self.watermarks.partition(p);
                if own < wm {
                    wm = own;
                } else {
                    self.catching_up[p] = false;
                }
            }
            let start = partials.pane_of(t);
            if partials.last_end(t).saturating_add(self.lateness) <= wm {
                let record = crate::sink::route::late_record(&self.job, name, p, decoded.offsets[row], t, wm, self.lateness, &decoded.batch, row)?;
                late.write(&record)?;
                late_rows += 1;
            } else {
                panes.entry(start).or_default().push(row as u32);
            }
            self.watermarks.observe(p, t);
        }
        let mut out = Vec::new();
        for (start, rows) in panes {
            out.extend(partials.aggregate(&decoded.batch, start, &rows)?);
        }
        let sent = out.len() as u64;
        for (hash, json) in out {
            let key = hash.to_be_bytes();
            let target = (hash % self.partitions as u64) as i32;
            self.send(BaseRecord::to(&self.topic).partition(target).key(&key[..]).payload(json.as_slice()))?;
        }
        self.done.records += times.len() as u64;
        self.done.partials += sent;
        self.done.late += late_rows;
        self.late_routed.fetch_add(late_rows, Ordering::Relaxed);
        let mut open = self.open.lock().expect("not poisoned");
        open.writes += sent;
        if let Some(last) = records.last() {
            open.positions[p] = Some(last.offset + 1);
        }
        Ok(())
    }

    fn send(&self, mut record: BaseRecord<'_, [u8], [u8]>) -> anyhow::Result<()> {
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err((e, _)) => bail!("job `{}`: cannot write to the internal topic `{}`: {e}", self.job, self.topic),
            }
        }
    }
}
