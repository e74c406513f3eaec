//! One job's pipeline: source → decode → windows → SQL → sink, plus the routes for dead
//! letters and late records, counters and progress.
//!
//! The loop is synchronous on its own thread; DataFusion runs on a small runtime inside
//! [`WindowQuery`]. Job kinds that come after `query` (SLO, invariant, anomaly) plug in as an
//! operator between the SQL result and the sink, in [`Pipeline::emit`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use datafusion::arrow::array::UInt32Array;
use datafusion::arrow::compute::take_record_batch;

use crate::decode::pool::{DecodePool, Pending};
use crate::decode::{event_times, Decoded, Decoder};
use crate::alert::stage::AlertCounts;
use crate::alert::{AlertStage, Evaluation, Evaluator, Holding};
use crate::exec::JobQuery;
use crate::job::Job;
use crate::metrics::{CountersSnapshot, JobCounters};
use crate::kafka::Cluster;
use crate::progress::Progress;
use crate::sink::route::Route;
use crate::Millis;
use crate::sink::{Sink, WindowResult};
use crate::source::generator::format_ts;
use crate::source::{Poll, Source};
use crate::time::{FiredWindow, WindowOperator};

mod checkpointing;
mod handover;
use checkpointing::Checkpoints;

/// How the pipeline treats time and the end of its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bounded input as fast as possible; every window closes at the end.
    Replay,
    /// Until stopped; idle partitions stop holding the watermark after `idle_timeout`.
    Live,
}

pub struct Options {
    pub mode: Mode,
    /// Set to stop a live run (Ctrl-C).
    pub stop: Arc<AtomicBool>,
    /// On stop, emit open windows with the rows they have instead of discarding them.
    pub flush_on_stop: bool,
    pub progress: bool,
    /// Threads decoding chunks beside the pipeline thread (0: decode inline).
    pub decode_threads: usize,
    /// The Kafka cluster for Kafka routes (dead letters, late records).
    pub cluster: Option<Cluster>,
    /// Longest time between offset commits while windows fire rarely.
    pub commit_interval: Duration,
    /// Checkpoint the job's state into a state folder (`osprey run --state-dir`).
    pub state: Option<StateOptions>,
    /// Keep what the on-call page draws (`osprey serve`): alert transitions, SLO series.
    pub history: Option<Arc<crate::history::JobHistory>>,
    /// The second stage of a scaled-out job (`crate::shuffle`): its source is the internal
    /// topic, its watermark the first stage's clocks (already delayed).
    pub shuffled: bool,
    /// The second stage's lag as its users mean it: the job's own topic, as the first stage
    /// reads it ([`crate::shuffle::FirstStage::lag`]), not the internal topic's.
    pub source_lag: Option<crate::shuffle::SourceLag>,
    /// The late records a first stage sending pane partials routed, and where: counted as the
    /// job's (its second stage's own are on stderr).
    pub upstream_late: Option<(Arc<std::sync::atomic::AtomicU64>, String)>,
    /// Count into these (a server holds them before the pipeline is built on a thread of a
    /// share); `None`: counters of its own.
    pub counters: Option<Arc<JobCounters>>,
}

/// Where and how often a job checkpoints.
#[derive(Debug, Clone)]
pub struct StateOptions {
    pub dir: std::path::PathBuf,
    pub interval: Duration,
    /// Ignore the checkpoints there (a changed job whose old state does not fit).
    pub fresh: bool,
    /// With `fresh`: where the source starts instead (Kafka: a time or offsets).
    pub from: Option<crate::source::kafka::Position>,
}

impl Options {
    pub fn replay() -> Self {
        Options {
            mode: Mode::Replay,
            stop: Arc::new(AtomicBool::new(false)),
            flush_on_stop: false,
            progress: false,
            decode_threads: default_decode_threads(),
            cluster: None,
            commit_interval: Duration::from_secs(1),
            state: None,
            history: None,
            shuffled: false,
            source_lag: None,
            upstream_late: None,
            counters: None,
        }
    }

    pub fn live(stop: Arc<AtomicBool>) -> Self {
        Options { mode: Mode::Live, stop, ..Options::replay() }
    }

    /// These options for a pipeline over `live`'s source: the second stage's, when two.
    pub fn over(self, live: &crate::shuffle::LiveSource) -> Self {
        match &live.first_stage {
            None => self,
            Some(first) => Options { shuffled: true, source_lag: Some(first.lag.clone()), upstream_late: first.late.clone(), ..self },
        }
    }
}

/// One decode thread per core: the pipeline thread's own work is the smaller part.
pub fn default_decode_threads() -> usize {
    crate::decode::pool::default_workers()
}

/// A source event waiting for its turn.
enum Queued {
    /// Partition, the offset of its last record, from a backlog, the decoding.
    Chunk(usize, i64, bool, Pending),
    PartitionEnd(usize),
    CaughtUp(usize),
    NotCaughtUp(usize),
    Clock(usize, crate::Millis),
    Assigned(Vec<usize>),
    Revoked(Vec<usize>),
}

/// What a run did, for the closing message.
#[derive(Debug, Clone)]
pub struct Summary {
    pub counters: CountersSnapshot,
    /// Open windows left when a live run stopped (discarded unless flushed).
    pub open_windows_at_stop: usize,
    pub rows_in_open_windows: usize,
    pub flushed_on_stop: bool,
    pub stopped: bool,
    pub dead_letters_to: String,
    pub late_to: String,
    pub elapsed: Duration,
    /// Declared columns that were absent or null in every decoded record (a schema that does
    /// not match the input, when records were decoded at all).
    pub never_present: Vec<String>,
    /// Alerting jobs: what the alert stage did, and where its records went.
    pub alerts: Option<(AlertCounts, String)>,
    /// Alerting jobs: the job kind's own counters (SLO series, folded label sets, ...).
    pub evaluator: Vec<(&'static str, u64)>,
}

/// An alerting job's operator and alert stage, after the SQL.
struct Alerting {
    evaluator: Box<dyn Evaluator>,
    stage: AlertStage,
    /// Source partition names for evidence, taken once (partitions never change).
    partition_names: Vec<String>,
}

pub struct Pipeline {
    job: Job,
    source: Box<dyn Source>,
    decoder: Arc<Decoder>,
    operator: WindowOperator,
    query: JobQuery,
    sink: Box<dyn Sink>,
    dead_letters: Route,
    late: Route,
    counters: Arc<JobCounters>,
    options: Options,
    /// Per declared column: a decoded record had a value for it.
    columns_seen: Vec<bool>,
    /// `None` for query jobs; their rows go to the sink. An alerting job's sink gets its
    /// evaluated rows (`--rows`).
    alerting: Option<Alerting>,
    /// Per partition, the offset of the last record processed.
    processed: Vec<Option<i64>>,
    /// What was last committed, per partition.
    committed: Vec<Option<i64>>,
    /// Windows fired since the last commit.
    fired_since_commit: usize,
    /// Where event time stood when evaluators were last told it passed (live runs).
    time_passed: Option<Millis>,
    last_commit: Instant,
    partition_column: usize,
    offset_column: usize,
    /// Fault injection for tests (OSPREY_FAULT_EXIT_BEFORE_COMMIT=N): exit at the N-th commit
    /// of positions behind fired windows, after the output was acknowledged and before the
    /// offsets are committed: the crash at-least-once delivery must survive.
    exit_before_commit: Option<u64>,
    checkpoints: Option<Checkpoints>,
    /// After a restore, per partition, the first record not in the state: earlier ones the
    /// source delivers again (a group resumes at its commit, files at their start) are skipped.
    resume: Vec<Option<i64>>,
    /// Restored from a checkpoint and not yet assigned partitions by a consumer group.
    restored_unassigned: bool,
    /// When the source's lag was last asked for.
    lag_asked: Option<Instant>,
    /// The watermark the last commit noted.
    noted_watermark: crate::Millis,
    /// Of the late records a first stage routed, those counted as the job's.
    upstream_late_counted: u64,
    /// The latest event time when open windows were last fed (see [`Pipeline::feed_open`]).
    fed_up_to: Millis,
    /// Per partition read again from a commit without its window state: the watermark that
    /// commit noted. Its records in windows that closed by then were emitted already, and are
    /// skipped (not emitted again as partial windows) until the job's watermark gets there.
    /// With how many records were skipped so far.
    emitted: Vec<Option<(crate::Millis, u64)>>,
    /// Exactly-once: the job's transactional producer (sink, alert topic, routes); each
    /// checkpoint commits its transaction with the consumed offsets.
    transaction: Option<Arc<rdkafka::producer::ThreadedProducer<crate::kafka::DeliveryLog>>>,
    /// Exactly-once in a second stage: what a revocation commits (see [`handover`]).
    handover: Option<handover::Handover>,
}

/// Set up `cluster` for a job whose sink is exactly-once: one transactional producer, whose
/// id is the job's, for everything it writes. Call before building its sink.
pub fn prepare_cluster(job: &Job, cluster: &mut Cluster) {
    if job.exactly_once() {
        cluster.transactional_id = Some(format!("osprey-{}", job.name));
    }
}

impl Pipeline {
    pub fn new(job: Job, mut source: Box<dyn Source>, sink: Box<dyn Sink>, options: Options) -> anyhow::Result<Self> {
        let named = crate::source::metadata::referenced_by(&job.sql.text);
        source.metadata_wanted(named.contains(&"_timestamp"), named.contains(&"_trace_id"));
        let query = crate::plan::plan(&job).map_err(|e| anyhow::anyhow!("{e}"))?;
        let decoder = Arc::new(Decoder::new(&job.dataflow()));
        let schema = decoder.schema();
        let key_columns = match &job.window {
            crate::job::WindowConfig::Session { key, .. } => {
                key.iter().map(|k| schema.index_of(k).expect("validated key column")).collect()
            }
            _ => Vec::new(),
        };
        let mut operator = WindowOperator::new(
            &job.window,
            key_columns,
            job.event_time_index(),
            source.partitions().len(),
            if options.shuffled { 0 } else { job.event_time.watermark_delay },
            job.event_time.allowed_lateness,
        );
        if options.shuffled {
            operator.set_external_clock();
        }
        let partitions = source.partitions().len();
        let declared = job.columns.len();
        let names: Vec<String> = source.partitions().iter().map(|p| p.name.clone()).collect();
        let alerting = Self::alerting(&job, &query, schema.clone(), options.cluster.as_ref(), names)?;
        // A replay reads a range and commits nothing: its output is at-least-once.
        let transaction = match (&options.cluster, job.exactly_once() && options.mode == Mode::Live) {
            (Some(c), true) => {
                // A second stage commits what its windows hold instead (see `handover`).
                anyhow::ensure!(
                    options.state.is_some() || options.shuffled,
                    "job `{}` ({}): exactly-once delivery needs --state-dir: each transaction commits with a checkpoint of the job's state",
                    job.name,
                    job.path.display()
                );
                anyhow::ensure!(c.transactional_id.is_some(), "job `{}`: its cluster was not prepared for exactly-once", job.name);
                crate::kafka::transactional(c)?
            }
            _ => None,
        };
        let store = match &options.state {
            Some(state) => Some(crate::checkpoint::Store::open(&state.dir, &job.name).with_context(|| format!("job `{}`", job.name))?),
            None => None,
        };
        let mut pipeline = Pipeline {
            dead_letters: Route::new(job.dead_letter.clone(), options.cluster.as_ref(), &job.name, "dlq")?,
            late: Route::new(job.late.clone(), options.cluster.as_ref(), &job.name, "late")?,
            processed: vec![None; partitions],
            committed: vec![None; partitions],
            fired_since_commit: 0,
            time_passed: None,
            last_commit: Instant::now(),
            partition_column: schema.index_of("_partition").expect("always decoded"),
            offset_column: schema.index_of("_offset").expect("always decoded"),
            exit_before_commit: std::env::var("OSPREY_FAULT_EXIT_BEFORE_COMMIT").ok().and_then(|v| v.parse().ok()),
            job,
            source,
            decoder,
            operator,
            query,
            sink,
            counters: options.counters.clone().unwrap_or_else(|| Arc::new(JobCounters::new())),
            columns_seen: vec![false; declared],
            alerting,
            checkpoints: None,
            resume: vec![None; partitions],
            restored_unassigned: false,
            lag_asked: None,
            noted_watermark: crate::Millis::MIN,
            upstream_late_counted: 0,
            fed_up_to: Millis::MIN,
            emitted: vec![None; partitions],
            handover: None,
            transaction,
            options,
        };
        if let (Some(producer), true) = (&pipeline.transaction, pipeline.options.shuffled) {
            pipeline.handover = Some(handover::Handover::new(&mut *pipeline.source, producer.clone(), &pipeline.job.name)?);
        }
        if let Some(store) = store {
            let state = pipeline.options.state.clone().expect("checked");
            let restored = if state.fresh { 0 } else { pipeline.restore(&store)? };
            if let (true, Some(from)) = (state.fresh, &state.from) {
                let positions = pipeline.source.positions_at(from).with_context(|| format!("job `{}`: --from", pipeline.job.name))?;
                crate::log_info!("{}: starting fresh at {positions:?} (per partition)", pipeline.job.name);
                pipeline.resume = positions.clone();
                pipeline.source.resume_at(&positions);
            }
            let sequence = restored.max(store.last_sequence()?);
            pipeline.checkpoints = Some(Checkpoints {
                dir: store.dir().to_path_buf(),
                sequence,
                writer: crate::checkpoint::Writer::new(store),
                interval: state.interval,
                last: Instant::now(),
                shape: crate::checkpoint::shape(&pipeline.job),
                failing: false,
            });
        }
        Ok(pipeline)
    }

    fn alerting(job: &Job, query: &JobQuery, decoded: datafusion::arrow::datatypes::SchemaRef, cluster: Option<&Cluster>, partition_names: Vec<String>) -> anyhow::Result<Option<Alerting>> {
        let Some(config) = &job.alerts else { return Ok(None) };
        // The decoder is built already: its schema, not a second decoder's.
        let planned = crate::kind::Planned { output: query.output_schema(), decoded, event_time_index: job.event_time_index() };
        let evaluator: Box<dyn Evaluator> = match job.kind.evaluator(&job.name, &planned).map_err(|e| anyhow::anyhow!("{}", job.kind_error(e)))? {
            Some(e) => e,
            None => anyhow::bail!("job `{}`: kind {} raises no alerts in this version", job.name, job.kind.name()),
        };
        let stage = AlertStage::new(&job.name, evaluator.kind(), config, cluster)?;
        Ok(Some(Alerting { evaluator, stage, partition_names }))
    }

    /// The job's counters, readable while it runs.
    pub fn counters(&self) -> Arc<JobCounters> {
        self.counters.clone()
    }

    pub fn run(mut self) -> anyhow::Result<Summary> {
        let started = Instant::now();
        let total = self.source.progress_total();
        let mut progress = Progress::new(&self.job.name, total, self.options.progress);
        let live = self.options.mode == Mode::Live;
        let pool = DecodePool::new(self.decoder.clone(), self.options.decode_threads);
        // Source events in order; chunks decode on the pool meanwhile. A fixed depth makes the
        // source's choices depend on the data only: chunk n is chosen after n - depth are done.
        let mut queue: VecDeque<Queued> = VecDeque::new();
        let mut source_done = false;
        let mut idle_checked = Instant::now();
        loop {
            let stopping = self.options.stop.load(Ordering::Relaxed);
            if !stopping && !source_done && queue.len() < pool.depth() {
                self.publish_handover()?;
                let watermarks = self.operator.watermarks().per_partition();
                match self.source.poll(&watermarks).with_context(|| format!("job `{}`: reading the source", self.job.name))? {
                    Poll::Chunk(chunk) => {
                        progress.advance(chunk.bytes, chunk.payload.len() as u64);
                        JobCounters::add(&self.counters.records_in, chunk.payload.len() as u64);
                        JobCounters::add(&self.counters.bytes_in, chunk.bytes);
                        let last = chunk.payload.last_offset();
                        queue.push_back(Queued::Chunk(chunk.partition, last, chunk.behind, pool.submit(chunk)));
                        continue;
                    }
                    Poll::PartitionEnd(p) => {
                        queue.push_back(Queued::PartitionEnd(p));
                        continue;
                    }
                    Poll::CaughtUp(p) => {
                        queue.push_back(Queued::CaughtUp(p));
                        continue;
                    }
                    Poll::NotCaughtUp(p) => {
                        queue.push_back(Queued::NotCaughtUp(p));
                        continue;
                    }
                    Poll::Clock(p, watermark) => {
                        queue.push_back(Queued::Clock(p, watermark));
                        continue;
                    }
                    Poll::Assigned(ps) => {
                        queue.push_back(Queued::Assigned(ps));
                        continue;
                    }
                    // Exactly-once in a second stage: the revocation committed the open
                    // transaction; nothing of these partitions may go into the next one. (A
                    // group starting up revokes everything before its first assignment: the
                    // restored rows stay until that says which partitions are ours.)
                    Poll::Revoked(ps) if self.handover.is_some() && !self.restored_unassigned => {
                        self.publish_handover()?;
                        forget_queued(&mut queue, &ps);
                        self.give_up(ps)?;
                        continue;
                    }
                    Poll::Revoked(ps) => {
                        queue.push_back(Queued::Revoked(ps));
                        continue;
                    }
                    // A replay waits for its source rather than work through the queue: the
                    // next chunk must be chosen after exactly n - depth are done (above), or a
                    // stall (a slow fetch, a broker away) would change which partition is read
                    // next, and with it the row order and percentiles of the output.
                    Poll::Idle if queue.is_empty() || !live => {
                        if live {
                            let timeout = self.job.event_time.idle_timeout;
                            self.operator.watermarks_mut().mark_idle(Instant::now(), started, timeout);
                            let fired = self.operator.fire();
                            self.emit(fired)?;
                            self.time_passes()?;
                        }
                        self.maybe_checkpoint()?;
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    Poll::Idle => {}
                    Poll::End => source_done = true,
                }
            }
            match queue.pop_front() {
                Some(Queued::Chunk(partition, last, behind, pending)) => {
                    let mut decoded = pending.wait();
                    if let Some(h) = &mut self.handover {
                        let first = decoded.offsets.first().into_iter().chain(decoded.dead_letters.first().map(|d| &d.offset)).min();
                        h.reading(partition, first.copied().unwrap_or(last + 1));
                    }
                    // A second stage's partitions hold the watermark at their clocks alone.
                    if !self.options.shuffled {
                        self.operator.watermarks_mut().chunk_arrives(partition, behind);
                    }
                    if let Some(first) = self.resume[partition] {
                        skip_before(&mut decoded, first)?;
                        if last + 1 >= first {
                            self.resume[partition] = None;
                        }
                    }
                    if live {
                        let now = Instant::now();
                        self.operator.watermarks_mut().touch(partition, now);
                        // A busy partition never lets the source say Idle: look for quiet
                        // (or handed-over) partitions between chunks too.
                        if now.duration_since(idle_checked) >= IDLE_CHECK {
                            idle_checked = now;
                            self.operator.watermarks_mut().mark_idle(now, started, self.job.event_time.idle_timeout);
                        }
                    }
                    self.skip_emitted(partition, &mut decoded)?;
                    self.process(partition, decoded)?;
                    // Live and not catching up: feed open windows' rows to their SQL now, so
                    // their close runs little. (A replay or a backlog closes windows as fast as
                    // it would feed them.)
                    if live && !behind {
                        self.feed_open()?;
                    }
                    // Never back: a chunk wholly before a restored position (a file is read
                    // again from its start) leaves the position where the checkpoint put it,
                    // whose state holds those records. Set back, a checkpoint taken then
                    // made its restart count them twice.
                    self.processed[partition] = Some(self.processed[partition].map_or(last, |p| p.max(last)));
                }
                Some(Queued::PartitionEnd(p)) => {
                    self.operator.watermarks_mut().end_partition(p);
                    let fired = self.operator.fire();
                    self.emit(fired)?;
                }
                Some(Queued::Clock(p, watermark)) => {
                    self.operator.watermarks_mut().advance(p, watermark);
                    let fired = self.operator.fire();
                    self.emit(fired)?;
                }
                Some(Queued::CaughtUp(p)) => {
                    self.operator.watermarks_mut().caught_up(p);
                    let fired = self.operator.fire();
                    self.emit(fired)?;
                }
                // Holding the watermark again never moves it: nothing to fire.
                Some(Queued::NotCaughtUp(p)) => {
                    if !self.options.shuffled {
                        self.operator.watermarks_mut().hold(p);
                    }
                }
                Some(Queued::Assigned(ps)) => {
                    // Exactly-once: one instance of the job at a time (its transactional id
                    // fences any other), so every partition is this process's, whatever a
                    // rebalance with a dead instance says for a while.
                    if std::mem::take(&mut self.restored_unassigned) && !self.fenced_alone() {
                        // The restored state may hold rows of partitions the group gave to
                        // another process, which reads them from the group's commit.
                        let elsewhere: Vec<usize> = (0..self.processed.len()).filter(|p| !ps.contains(p)).collect();
                        self.operator.drop_partitions(&elsewhere, self.partition_column);
                        self.query.forget_fed();
                        for p in elsewhere {
                            self.processed[p] = None;
                            self.resume[p] = None;
                        }
                    }
                    self.operator.assign(&ps);
                    for p in ps {
                        // Read from the group's commit (no checkpoint, or none with this
                        // partition's rows), its window state starts empty here: the windows
                        // the commit's note says were emitted are not emitted again in part.
                        // (Exactly-once commits with its checkpoints, whose state it holds.)
                        if self.resume[p].is_none() && !self.fenced_alone() {
                            self.emitted[p] = self.source.emitted_up_to(p).map(|w| (w, 0));
                        }
                    }
                }
                Some(Queued::Revoked(_)) if self.fenced_alone() => {
                    // Its rows stay: the offsets committed with the transactions are past them,
                    // so nobody reads them again, and the partition comes back to this process.
                }
                Some(Queued::Revoked(ps)) if self.restored_unassigned => {
                    // Before the first assignment (a group starting up): the restored rows stay
                    // until the assignment says which partitions are ours.
                    self.operator.watermarks_mut().deactivate(&ps);
                }
                Some(Queued::Revoked(ps)) => self.give_up(ps)?,
                None if source_done || stopping => break,
                None => {}
            }
            if live {
                self.time_passes()?;
            }
            self.maybe_checkpoint()?;
        }
        // Partitions still skipping (their records came in one go): say what they skipped.
        for p in 0..self.emitted.len() {
            if let Some((_, skipped)) = self.emitted[p].take() {
                self.say_skipped(p, skipped);
            }
        }
        let ended = source_done;
        let mut open_windows_at_stop = 0;
        let mut rows_in_open_windows = 0;
        if ended || self.options.flush_on_stop {
            let fired = self.operator.finish();
            // At the end of bounded input every window is complete; at a stop it is not.
            self.emit_marked(fired, !ended, ended)?;
            self.final_checkpoint()?;
        } else {
            // Commit up to the first row of the windows about to be discarded: a restart
            // reads them again (or, checkpointing, restores them).
            self.final_checkpoint()?;
            rows_in_open_windows = self.operator.buffered_rows();
            open_windows_at_stop = self.operator.drain_open().len();
        }
        progress.finish();
        self.count_upstream_late();
        self.sink.flush()?;
        self.dead_letters.flush()?;
        self.late.flush()?;
        if let Some(a) = &mut self.alerting {
            a.stage.finish()?;
        }
        Ok(Summary {
            alerts: self.alerting.as_ref().map(|a| (a.stage.counts(), a.stage.describe())),
            evaluator: self.query.stats().into_iter().chain(self.alerting.as_ref().map(|a| a.evaluator.stats()).unwrap_or_default()).collect(),
            counters: self.counters.snapshot(),
            open_windows_at_stop,
            rows_in_open_windows,
            flushed_on_stop: !ended && self.options.flush_on_stop,
            stopped: !ended,
            dead_letters_to: self.dead_letters.describe(),
            late_to: match &self.options.upstream_late {
                Some((_, to)) => to.clone(),
                None => self.late.describe(),
            },
            elapsed: started.elapsed(),
            never_present: self
                .columns_seen
                .iter()
                .zip(&self.job.columns)
                .filter(|(seen, _)| !**seen)
                .map(|(_, c)| c.name.clone())
                .collect(),
        })
    }

    /// Exactly-once, one instance: its transactional id fences any other, so every partition
    /// is this process's (a second stage's are not: see [`handover`]).
    fn fenced_alone(&self) -> bool {
        self.transaction.is_some() && self.handover.is_none()
    }

    /// Partitions `ps` went to another process, which re-reads them from the last commit (no
    /// held row is past it): their rows go.
    fn give_up(&mut self, ps: Vec<usize>) -> anyhow::Result<()> {
        self.operator.drop_partitions(&ps, self.partition_column);
        self.query.forget_fed();
        if let Some(h) = &mut self.handover {
            h.gone(&ps);
        }
        for p in ps {
            self.processed[p] = None;
            self.committed[p] = None;
            // Read again from the commit, before a restored checkpoint's position: nothing of
            // it may be skipped now that its rows are gone.
            self.resume[p] = None;
        }
        let fired = self.operator.fire();
        self.emit(fired)
    }

    /// Drop the rows of windows emitted before this partition was last committed (see
    /// `emitted`), while the job's watermark is behind that point.
    fn skip_emitted(&mut self, partition: usize, decoded: &mut Decoded) -> anyhow::Result<()> {
        let Some((floor, skipped)) = self.emitted[partition] else { return Ok(()) };
        if self.operator.watermark_for(partition) >= floor {
            self.emitted[partition] = None;
            self.say_skipped(partition, skipped);
            return Ok(());
        }
        let times = event_times(&decoded.batch, self.job.event_time_index());
        let keep: Vec<bool> = times.iter().map(|&t| !self.operator.closed_by(t, floor)).collect();
        if keep.iter().all(|&k| k) {
            return Ok(());
        }
        let dropped = keep.iter().filter(|&&k| !k).count() as u64;
        self.emitted[partition] = Some((floor, skipped + dropped));
        let mask = datafusion::arrow::array::BooleanArray::from(keep.clone());
        decoded.batch = datafusion::arrow::compute::filter_record_batch(&decoded.batch, &mask)?;
        let mut i = 0;
        decoded.offsets.retain(|_| {
            i += 1;
            keep[i - 1]
        });
        Ok(())
    }

    fn say_skipped(&self, partition: usize, skipped: u64) {
        if skipped > 0 {
            let name = &self.source.partitions()[partition].name;
            crate::log_info!("{}: {name} was read again from its last commit: {skipped} records of windows emitted before it came here were skipped", self.job.name);
        }
    }

    fn process(&mut self, partition: usize, decoded: Decoded) -> anyhow::Result<()> {
        let partition_name = self.source.partitions()[partition].name.clone();
        for d in &decoded.dead_letters {
            debug_assert_eq!(d.partition, partition);
            self.dead_letters.write(&crate::sink::route::dead_letter(&self.job.name, &partition_name, d))?;
        }
        JobCounters::add(&self.counters.decode_errors, decoded.dead_letters.len() as u64);
        for (i, seen) in self.columns_seen.iter_mut().enumerate() {
            if !*seen {
                let column = decoded.batch.column(i);
                *seen = column.null_count() < column.len();
            }
        }
        let processed = self.operator.process(partition, &decoded.batch);
        if !processed.late_rows.is_empty() {
            let late = take_record_batch(&decoded.batch, &UInt32Array::from(processed.late_rows.clone()))?;
            let ts = event_times(&late, self.job.event_time_index());
            for (i, &row) in processed.late_rows.iter().enumerate() {
                let offset = decoded.offsets[row as usize];
                let lateness = self.job.event_time.allowed_lateness;
                let record = crate::sink::route::late_record(&self.job.name, &partition_name, partition, offset, ts[i], processed.late_watermarks[i], lateness, &late, i)?;
                self.late.write(&record)?;
            }
            JobCounters::add(&self.counters.late_records, processed.late_rows.len() as u64);
        }
        self.emit(processed.fired)
    }

    /// Count the late records a first stage routed since last asked as the job's.
    pub(super) fn count_upstream_late(&mut self) {
        if let Some((routed, _)) = &self.options.upstream_late {
            let now = routed.load(Ordering::Relaxed);
            JobCounters::add(&self.counters.late_records, now - self.upstream_late_counted);
            self.upstream_late_counted = now;
        }
    }

    /// Feed open tumbling windows' rows to their executions (see [`crate::exec::incremental`]),
    /// unless nothing reads the SQL's rows.
    fn feed_open(&mut self) -> anyhow::Result<()> {
        let crate::exec::JobQuery::Incremental(q) = &mut self.query else { return Ok(()) };
        if self.alerting.as_ref().is_some_and(|a| !a.evaluator.needs_rows()) && self.sink.discards() {
            return Ok(());
        }
        let latest = self.operator.watermarks().latest();
        let passed = (std::mem::replace(&mut self.fed_up_to, latest), latest);
        for (start, end, batches) in self.operator.take_touched(passed) {
            q.feed(start, end, batches, end <= latest);
        }
        Ok(())
    }

    /// Run the SQL on each fired window and hand the result to the sink.
    fn emit(&mut self, fired: Vec<FiredWindow>) -> anyhow::Result<()> {
        self.emit_marked(fired, false, false)
    }

    /// `incomplete`: the windows are emitted at a stop, before the watermark closed them.
    /// `end_of_input`: bounded input ended; these are its last windows.
    fn emit_marked(&mut self, fired: Vec<FiredWindow>, incomplete: bool, end_of_input: bool) -> anyhow::Result<()> {
        self.counters.set_watermark(self.operator.watermark());
        let schema = self.query.output_schema();
        for w in fired {
            let closed = Instant::now();
            let skip_sql = self.alerting.as_ref().is_some_and(|a| !a.evaluator.needs_rows()) && self.sink.discards();
            let out = if skip_sql {
                crate::exec::QueryRows { rows: Vec::new(), dropped: Vec::new(), changes_only: false }
            } else {
                self.query.run(&w).map_err(|e| {
                anyhow::anyhow!(
                    "job `{}` ({}): the SQL failed on window {} → {}: {e}\n  fix the SQL (for example a cast of a bad value), then run it again",
                    self.job.name,
                    self.job.path.display(),
                    format_ts(w.start),
                    format_ts(w.end)
                )
                })?
            };
            let batches = out.rows;
            let result = WindowResult {
                job: &self.job.name,
                start: w.start,
                end: w.end,
                update: w.update,
                revision: w.revision,
                incomplete,
                schema: &schema,
                batches: &batches,
            };
            JobCounters::add(if w.update { &self.counters.window_updates } else { &self.counters.windows_closed }, 1);
            let Some(a) = &mut self.alerting else {
                JobCounters::add(&self.counters.rows_out, result.rows() as u64);
                self.sink.write(&result)?;
                self.counters.observe_latency(closed.elapsed());
                self.fired_since_commit += 1;
                continue;
            };
            // The page draws an SLO's burn rates from its rows, wanted by a sink or not.
            let history = self.options.history.as_ref().filter(|_| a.evaluator.kind() == "slo");
            let evaluation = Evaluation {
                window_start: w.start,
                window_end: w.end,
                rows: &batches,
                input: &w.batches,
                partition_names: &a.partition_names,
                update: w.update,
                dropped: &out.dropped,
                changes_only: out.changes_only,
                want_rows: !self.sink.discards() || history.is_some(),
                end_of_input,
            };
            let verdicts = a.evaluator.evaluate(&evaluation)?;
            let history = history.cloned();
            match (&verdicts.rows, a.evaluator.rows_schema()) {
                (Some(rows), Some(schema)) => self.write_own_rows(rows, &schema, (w.start, w.end), incomplete, history.as_ref())?,
                _ => {
                    JobCounters::add(&self.counters.rows_out, result.rows() as u64);
                    self.sink.write(&result)?;
                }
            }
            self.judge(verdicts.evaluations)?;
            self.counters.observe_latency(closed.elapsed());
            self.fired_since_commit += 1;
        }
        Ok(())
    }

    /// Hand an evaluator's evaluations to the alert stage.
    fn judge(&mut self, evaluations: Vec<(Millis, Holding)>) -> anyhow::Result<()> {
        let Some(a) = &mut self.alerting else { return Ok(()) };
        for (t, holding) in evaluations {
            let transitions = a.stage.judge(t, holding)?;
            if let (Some(h), false) = (&self.options.history, transitions.is_empty()) {
                let mut kept = h.transitions.lock().expect("not poisoned");
                transitions.iter().for_each(|alert| kept.push(alert));
            }
        }
        let counts = a.stage.counts();
        let emitted = counts.fired + counts.resolved;
        // The page's list of firing alerts changes only with a transition.
        if self.counters.alerts_emitted.swap(emitted, Ordering::Relaxed) != emitted {
            *self.counters.firing.lock().expect("not poisoned") = a.stage.state().lifecycle.firing_list(FIRING_SHOWN);
        }
        self.counters.alerts_suppressed.store(counts.deduplicated + counts.suppressed + counts.folded, Ordering::Relaxed);
        Ok(())
    }

    /// A live run's event time moved past window ends where this job fired nothing (a quiet
    /// stream, or a second stage whose records went elsewhere): evaluators that change with
    /// time alone (deadline timers, SLO windows) say so now rather than at their next window,
    /// which may never come. A replay's windows decide alone, as they always have.
    fn time_passes(&mut self) -> anyhow::Result<()> {
        let Some(until) = self.operator.complete_before() else { return Ok(()) };
        if self.alerting.is_none() || self.time_passed.is_some_and(|t| t >= until) {
            return Ok(());
        }
        self.time_passed = Some(until);
        let a = self.alerting.as_mut().expect("checked");
        let history = self.options.history.clone().filter(|_| a.evaluator.kind() == "slo");
        let want_rows = !self.sink.discards() || history.is_some();
        let verdicts = a.evaluator.time_passes(until, &a.partition_names, want_rows)?;
        if let (Some(rows), Some(schema)) = (&verdicts.rows, a.evaluator.rows_schema()) {
            // The pane ends evaluated.
            let ends = verdicts.evaluations.first().zip(verdicts.evaluations.last()).map(|(a, b)| (a.0, b.0)).unwrap_or((until, until));
            self.write_own_rows(rows, &schema, ends, false, history.as_ref())?;
        }
        self.judge(verdicts.evaluations)
    }

    /// An evaluator's own rows (burn rates; each row names its own pane) for `window`: to the
    /// page's history (`history`, SLO jobs under `serve`) and to the sink unless it discards.
    fn write_own_rows(&mut self, rows: &[datafusion::arrow::record_batch::RecordBatch], schema: &datafusion::arrow::datatypes::SchemaRef, window: (Millis, Millis), incomplete: bool, history: Option<&Arc<crate::history::JobHistory>>) -> anyhow::Result<()> {
        if let Some(h) = history {
            let mut slo = h.slo.lock().expect("not poisoned");
            rows.iter().for_each(|b| slo.record(b));
        }
        let own = WindowResult { job: &self.job.name, start: window.0, end: window.1, update: false, revision: 0, incomplete, schema, batches: rows };
        if own.rows() > 0 && !self.sink.discards() {
            JobCounters::add(&self.counters.rows_out, own.rows() as u64);
            self.sink.write(&own)?;
        }
        Ok(())
    }
}



/// How often a live run that is never idle looks for partitions past their `idle_timeout`.
const IDLE_CHECK: Duration = Duration::from_millis(200);

/// Firing alerts a job publishes for the server's page.
const FIRING_SHOWN: usize = 100;

/// Drop a decoded chunk's rows and dead letters before position `first` (already in a
/// restored state).
/// Partitions `ps` were taken away before what is queued of them was handled: it goes (and
/// an assignment still queued no longer gives them).
fn forget_queued(queue: &mut VecDeque<Queued>, ps: &[usize]) {
    queue.retain(|q| !matches!(q, Queued::Chunk(p, ..) | Queued::PartitionEnd(p) | Queued::CaughtUp(p) | Queued::NotCaughtUp(p) | Queued::Clock(p, _) if ps.contains(p)));
    for q in queue.iter_mut() {
        if let Queued::Assigned(given) = q {
            given.retain(|p| !ps.contains(p));
        }
    }
}

fn skip_before(decoded: &mut Decoded, first: i64) -> anyhow::Result<()> {
    decoded.dead_letters.retain(|d| d.offset >= first);
    if decoded.offsets.first().is_none_or(|&o| o >= first) {
        return Ok(());
    }
    let keep = datafusion::arrow::array::BooleanArray::from(decoded.offsets.iter().map(|&o| o >= first).collect::<Vec<_>>());
    decoded.batch = datafusion::arrow::compute::filter_record_batch(&decoded.batch, &keep)?;
    decoded.offsets.retain(|&o| o >= first);
    Ok(())
}
