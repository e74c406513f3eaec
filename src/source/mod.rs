//! Sources: where raw records come from. Each source has numbered partitions (a file, a Kafka
//! partition, a generator shard) and hands the pipeline one [`Chunk`] of one partition at a time.

pub mod config;
pub mod file;
pub mod generator;
pub mod kafka;
pub mod metadata;

use datafusion::arrow::record_batch::RecordBatch;

use crate::Millis;

/// A partition of a source, named for dead letters and progress ("archive/a.jsonl", "http-requests/2").
#[derive(Debug, Clone)]
pub struct PartitionInfo {
    pub name: String,
}

/// One record's place in a JSON chunk.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord {
    /// Byte range in [`Payload::Json::data`].
    pub start: u32,
    pub end: u32,
    /// Position in the partition: the 1-based line of a file, the offset of a Kafka message.
    pub offset: i64,
}

/// What a Kafka message carries beside its value, one entry per record of a chunk.
#[derive(Debug, Clone)]
pub struct RecordMeta {
    pub topic: std::sync::Arc<str>,
    /// The message timestamp (epoch milliseconds).
    pub timestamps: Vec<Option<i64>>,
    /// The trace id of a W3C `traceparent` header.
    pub trace_ids: Vec<Option<String>>,
}

/// A record that did not decode, with everything needed to find and replay it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub partition: usize,
    /// Line, row or Kafka offset in the partition.
    pub offset: i64,
    pub reason: String,
    /// The record's original bytes (for Parquet rows: the row as JSON).
    pub raw: Vec<u8>,
}

/// The rows of one chunk that decoded, and those that did not (see `crate::decode`).
#[derive(Debug, Clone)]
pub struct Decoded {
    /// Declared columns, then the metadata columns the SQL uses. The event time is never null.
    pub batch: RecordBatch,
    /// Each row's position in its partition (line, row or Kafka offset).
    pub offsets: Vec<i64>,
    pub dead_letters: Vec<DeadLetter>,
}

#[derive(Debug)]
pub enum Payload {
    /// JSON text, one record per range; `meta` for sources that have more than bytes (Kafka).
    Json { data: Vec<u8>, records: Vec<RawRecord>, meta: Option<RecordMeta> },
    /// Rows already in Arrow (Parquet), numbered from `first_offset`.
    Arrow { batch: RecordBatch, first_offset: i64 },
    /// Decoded already, by a reader several jobs share (`crate::fleet`): `records` raw records
    /// of which `last_offset` was the last.
    Decoded { decoded: Box<Decoded>, records: usize, last_offset: i64 },
    /// A chunk several jobs share, which this job decodes itself (`crate::fleet`).
    Shared(std::sync::Arc<Payload>),
}

impl Payload {
    pub fn len(&self) -> usize {
        match self {
            Payload::Json { records, .. } => records.len(),
            Payload::Arrow { batch, .. } => batch.num_rows(),
            Payload::Decoded { records, .. } => *records,
            Payload::Shared(p) => p.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The position of the last record (-1: none).
    pub fn last_offset(&self) -> i64 {
        match self {
            Payload::Json { records, .. } => records.last().map(|r| r.offset).unwrap_or(-1),
            Payload::Arrow { batch, first_offset } => first_offset + batch.num_rows() as i64 - 1,
            Payload::Decoded { last_offset, .. } => *last_offset,
            Payload::Shared(p) => p.last_offset(),
        }
    }
}

/// Records of one partition, in partition order.
#[derive(Debug)]
pub struct Chunk {
    pub partition: usize,
    pub payload: Payload,
    /// Bytes read from the source for this chunk, for progress.
    pub bytes: u64,
    /// A live source already holds more of this partition: it is working through a backlog,
    /// and partitions that are caught up stop holding the watermark meanwhile (see
    /// [`Poll::CaughtUp`]). Bounded sources say `false`: their partitions end instead.
    pub behind: bool,
}

/// What a source has for the pipeline now.
#[derive(Debug)]
pub enum Poll {
    Chunk(Chunk),
    /// A partition has no more records, ever (end of a file): it no longer holds the watermark back.
    PartitionEnd(usize),
    /// A live partition was read to the end of its log, and everything read was handed out.
    /// While another partition works through a backlog, it does not hold the watermark back
    /// (as an ended partition of a replay does not), and a partition that never gave an event
    /// time (all dead letters so far) never does: the backlog's windows close when a replay's
    /// would, and its late records are the replay's. Its next chunk makes it count again.
    CaughtUp(usize),
    /// A partition that said [`Poll::CaughtUp`] has more to read after all (its log grew, its
    /// new records are on their way): it holds the watermark at its clock again, so another
    /// partition's backlog does not carry the watermark past its records.
    NotCaughtUp(usize),
    /// A scaled-out job's second stage: internal partition `p`'s watermark is now this, as the
    /// first stage's clocks say (`crate::shuffle`); it comes after the records it covers.
    Clock(usize, Millis),
    /// Nothing right now (a live source); ask again soon.
    Idle,
    /// The consumer group gave these partitions to this process.
    Assigned(Vec<usize>),
    /// The consumer group took these partitions away: their rows leave the windows, and the
    /// new owner re-reads them from the last committed offset.
    Revoked(Vec<usize>),
    /// Every partition has ended.
    End,
}

/// A source of raw records.
pub trait Source: Send {
    fn partitions(&self) -> &[PartitionInfo];

    /// The next chunk. `watermarks[p]` is partition `p`'s watermark (`Millis::MIN` before its
    /// first record): a source that can choose (files) reads the partition furthest behind, so
    /// partitions advance together and the job's watermark keeps moving.
    fn poll(&mut self, watermarks: &[Millis]) -> anyhow::Result<Poll>;

    /// Total bytes this source will read, when known (files), for the progress bar's ETA.
    fn total_bytes(&self) -> Option<u64> {
        None
    }

    /// Records this source will read, when known (a Kafka replay range), for the progress bar.
    fn total_records(&self) -> Option<u64> {
        None
    }

    /// What a progress bar counts toward: records when known, else bytes.
    fn progress_total(&self) -> crate::progress::Total {
        match (self.total_records(), self.total_bytes()) {
            (Some(r), _) => crate::progress::Total::Records(r),
            (None, Some(b)) => crate::progress::Total::Bytes(b),
            (None, None) => crate::progress::Total::Unknown,
        }
    }

    /// Whether anything reads the records' message timestamps and trace ids (the metadata
    /// columns `_timestamp` and `_trace_id`): a source that reads them at a cost may skip
    /// them when not. All are read unless told.
    fn metadata_wanted(&mut self, _timestamps: bool, _trace_ids: bool) {}

    /// Record that everything before `offset` in each listed partition is done: the output
    /// that depends on it was acknowledged. Sources without positions to keep ignore it.
    fn commit(&mut self, _positions: &[(usize, i64)]) -> anyhow::Result<()> {
        Ok(())
    }

    /// Commit `(partition, offset, watermark)`, noting with each partition the watermark its
    /// windows were emitted up to: whoever reads it again from this commit without its window
    /// state ([`Source::emitted_up_to`]) knows which records of it went out already. Sources
    /// without such notes commit as [`Source::commit`] does.
    fn commit_noting(&mut self, positions: &[(usize, i64, Millis)]) -> anyhow::Result<()> {
        let plain: Vec<(usize, i64)> = positions.iter().map(|&(p, o, _)| (p, o)).collect();
        self.commit(&plain)
    }

    /// Commit `(partition, offset, note)` with a note of the caller's own (several jobs sharing
    /// one read note each job's watermark, `crate::fleet`); an empty note is none. Sources
    /// without notes commit as [`Source::commit`] does.
    fn commit_notes(&mut self, positions: &[(usize, i64, String)]) -> anyhow::Result<()> {
        let plain: Vec<(usize, i64)> = positions.iter().map(|(p, o, _)| (*p, *o)).collect();
        self.commit(&plain)
    }

    /// The note committed with partition `p`'s last commit, if any.
    fn committed_note(&mut self, _p: usize) -> Option<String> {
        None
    }

    /// The watermark noted with partition `p`'s last commit (see [`Source::commit_noting`]).
    fn emitted_up_to(&mut self, _p: usize) -> Option<Millis> {
        None
    }

    /// Per assigned partition, how many records the source is behind the end of its log
    /// (Kafka: the high watermark less the next offset handed out). Asked every few seconds;
    /// `None` where there is no such notion (files, the generator).
    fn lag(&mut self) -> Option<Vec<(usize, i64)>> {
        None
    }

    /// [`Source::lag`] by partition name, as counters and pages show it.
    fn named_lag(&mut self) -> Option<Vec<(String, i64)>> {
        let lag = self.lag()?;
        let names = self.partitions();
        Some(lag.into_iter().map(|(p, n)| (names[p].name.clone(), n)).collect())
    }

    /// Exactly-once: per partition, the offset the consumer group committed (with the last
    /// transaction) and its note (empty: none). `None`: the source has no such thing.
    fn committed(&mut self) -> anyhow::Result<Option<Vec<Option<(i64, String)>>>> {
        Ok(None)
    }

    /// Exactly-once: commit the producer's open transaction with `positions` (per partition,
    /// the next record, a note as [`Source::commit_notes`] takes) as the group's consumed
    /// offsets, and begin the next.
    fn commit_transaction(
        &mut self,
        _producer: &rdkafka::producer::ThreadedProducer<crate::kafka::DeliveryLog>,
        _positions: &[(usize, i64, String)],
    ) -> anyhow::Result<()> {
        anyhow::bail!("exactly-once delivery needs a Kafka source in a consumer group")
    }

    /// Run `hook` inside each revocation of a consumer group's partitions, before they go:
    /// an exactly-once second stage commits its open transaction there. `false`: this source
    /// has no such thing.
    fn on_revoke(&mut self, _hook: kafka::TopicRevokeHook) -> bool {
        false
    }

    /// Per partition, the position of `from` (a time or offsets), for a job starting fresh there.
    fn positions_at(&mut self, _from: &kafka::Position) -> anyhow::Result<Vec<Option<i64>>> {
        anyhow::bail!("starting at a time or offsets needs a Kafka source")
    }

    /// A restored job continues at these positions (per partition, the next record): a
    /// source that can seek does; the pipeline skips what comes before them anyway.
    fn resume_at(&mut self, _positions: &[Option<i64>]) {}

    /// True when the source is bounded (files): at its end the pipeline closes every window.
    fn is_bounded(&self) -> bool;
}

/// A job's own source, read live (`osprey run`, a job of `osprey serve`): a file source reads
/// its files to the end, the generator runs paced, Kafka joins the job's consumer group.
/// `job` names the job and its file in errors.
pub fn open_live(config: &config::SourceConfig, job: &crate::jobfile::JobRef, cluster: Option<&crate::kafka::Cluster>) -> anyhow::Result<Box<dyn Source>> {
    use config::SourceConfig;
    Ok(match config {
        SourceConfig::Generator(g) => Box::new(generator::GeneratorSource::new(g.clone(), generator::Pacing::Live)),
        SourceConfig::File { pattern, format } => Box::new(file::FileSource::open(pattern, *format)?),
        SourceConfig::Kafka(k) => {
            let Some(cluster) = cluster else {
                anyhow::bail!(
                    "job `{}` ({}) reads the Kafka topic `{}`: pass --brokers HOST:PORT (or set OSPREY_BROKERS, or [source] brokers)",
                    job.name,
                    job.file.display(),
                    k.topic
                );
            };
            Box::new(kafka::KafkaSource::open(cluster, &k.topic, kafka::Start::Group { group: k.group.clone() })?)
        }
    })
}

