//! The shared reader: reads the source, decodes each chunk once into the union of the jobs'
//! columns, and hands each job its columns; commits, per partition, the least position all the
//! jobs may commit.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};

use super::Shared;
use crate::decode::pool::{DecodePool, Pending};
use crate::decode::{event_times, Decoded, Decoder};
use crate::job::Job;
use crate::jobfile::Dataflow;
use crate::progress::Progress;
use crate::source::{Chunk, Payload, Poll, Source};
use crate::Millis;

/// Events waiting in a job's channel: enough to keep it busy while the reader decodes, few
/// enough that the slowest job paces the reader and memory stays bounded.
pub(crate) const CHANNEL_DEPTH: usize = 8;

/// How often positions the jobs may commit are committed.
const COMMIT_EVERY: Duration = Duration::from_millis(200);

/// How often the source is asked for its lag, which every job then shows.
const LAG_EVERY: Duration = Duration::from_secs(2);

/// How a commit's metadata notes each job's watermark (see [`Source::commit_noting`]).
const WATERMARKS_NOTE: &str = "osprey-watermarks=";

/// A job of the share, as the reader sees it.
struct Link {
    name: String,
    events: SyncSender<Poll>,
    /// The job's decoded schema, and where each of its columns is in the shared decode.
    schema: SchemaRef,
    columns: Vec<usize>,
    /// The job declares every column of the share: the shared dead letters are its own.
    whole: bool,
}

enum Item {
    Chunk { partition: usize, bytes: u64, behind: bool, records: usize, last: i64, raw: Arc<Payload>, pending: Pending },
    Event(Poll),
}

pub struct Reader {
    source: Box<dyn Source>,
    decoder: Arc<Decoder>,
    event_time: usize,
    links: Vec<Link>,
    shared: Arc<Shared>,
    /// Per partition, what was last committed (offset and note).
    committed: Vec<Option<(i64, String)>>,
    last_commit: Instant,
}

/// The columns of all `jobs`, each once, in the order first declared; the first job's event
/// time and format (a share's are the same).
fn union(jobs: &[Job]) -> Dataflow {
    let mut flow = jobs[0].dataflow();
    for job in &jobs[1..] {
        for c in &job.columns {
            if !flow.columns.iter().any(|d| d.name == c.name) {
                flow.columns.push(c.clone());
            }
        }
    }
    flow
}

impl Reader {
    pub(super) fn new(source: Box<dyn Source>, jobs: &[Job], senders: Vec<SyncSender<Poll>>, shared: Arc<Shared>) -> anyhow::Result<Self> {
        let flow = union(jobs);
        let mut metadata: Vec<&'static str> = Vec::new();
        for job in jobs {
            for m in crate::source::metadata::decoded_for(&job.sql.text) {
                if !metadata.contains(&m) {
                    metadata.push(m);
                }
            }
        }
        let decoder = Arc::new(Decoder::with_metadata(&flow, metadata));
        let all = decoder.schema();
        let mut links = Vec::new();
        for (job, events) in jobs.iter().zip(senders) {
            let schema = Decoder::new(&job.dataflow()).schema();
            let columns = schema
                .fields()
                .iter()
                .map(|f| all.index_of(f.name()).with_context(|| format!("job `{}`: column `{}` is not in the shared decode", job.name, f.name())))
                .collect::<anyhow::Result<Vec<usize>>>()?;
            links.push(Link { name: job.name.clone(), events, schema, columns, whole: job.columns.len() == flow.columns.len() });
        }
        let partitions = source.partitions().len();
        Ok(Reader {
            source,
            event_time: flow.event_time_index(),
            decoder,
            links,
            shared,
            committed: vec![None; partitions],
            last_commit: Instant::now(),
        })
    }

    /// Read until the source ends (every job then gets `End`) or `stop`, then wait for every
    /// job to end, committing what they may commit meanwhile.
    pub(super) fn run(mut self, stop: &AtomicBool, progress: bool) -> anyhow::Result<()> {
        self.resume();
        let bounded = self.source.is_bounded();
        let total = self.source.progress_total();
        let label = format!("{} jobs", self.links.len());
        let mut progress = Progress::new(&label, total, progress);
        let pool = DecodePool::new(self.decoder.clone(), crate::pipeline::default_decode_threads());
        // As a job's own pipeline does: a fixed number of chunks in flight, so which file is
        // read next depends on the data only, and a share reads the files in the order each of
        // its jobs would alone.
        let depth = pool.depth();
        let mut queue: VecDeque<Item> = VecDeque::new();
        let mut times = vec![Millis::MIN; self.source.partitions().len()];
        let mut done = false;
        let mut lag_asked: Option<Instant> = None;
        loop {
            self.maybe_commit(false)?;
            if !bounded && lag_asked.is_none_or(|t| t.elapsed() >= LAG_EVERY) {
                lag_asked = Some(Instant::now());
                *self.shared.lag.lock().expect("not poisoned") = self.source.lag();
            }
            if self.all_ended() {
                break;
            }
            let stopping = stop.load(Ordering::Relaxed);
            if !stopping && !done && queue.len() < depth {
                match self.source.poll(&times).context("reading the shared source")? {
                    Poll::Chunk(chunk) => {
                        progress.advance(chunk.bytes, chunk.payload.len() as u64);
                        let records = chunk.payload.len();
                        let last = chunk.payload.last_offset();
                        let raw = Arc::new(chunk.payload);
                        let pending = pool.submit(Chunk { partition: chunk.partition, payload: Payload::Shared(raw.clone()), bytes: chunk.bytes, behind: chunk.behind });
                        queue.push_back(Item::Chunk { partition: chunk.partition, bytes: chunk.bytes, behind: chunk.behind, records, last, raw, pending });
                        continue;
                    }
                    // Waiting for the source, not working through the queue, keeps a replay's
                    // choices independent of timing (see the pipeline's loop).
                    Poll::Idle if queue.is_empty() || bounded => {
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    }
                    Poll::Idle => {}
                    Poll::End => done = true,
                    Poll::Assigned(ps) => {
                        self.read_notes(&ps);
                        queue.push_back(Item::Event(Poll::Assigned(ps)));
                        continue;
                    }
                    Poll::Revoked(ps) => {
                        self.fence(&ps);
                        queue.push_back(Item::Event(Poll::Revoked(ps)));
                        continue;
                    }
                    event => {
                        queue.push_back(Item::Event(event));
                        continue;
                    }
                }
            }
            match queue.pop_front() {
                Some(Item::Chunk { partition, bytes, behind, records, last, raw, pending }) => {
                    let decoded = pending.wait();
                    if let Some(&t) = event_times(&decoded.batch, self.event_time).iter().max() {
                        times[partition] = times[partition].max(t);
                    }
                    for i in 0..self.links.len() {
                        let link = &self.links[i];
                        let payload = if !decoded.dead_letters.is_empty() && !link.whole {
                            // A record the union could not read may be one this job can.
                            Payload::Shared(raw.clone())
                        } else {
                            Payload::Decoded { decoded: Box::new(project(link, &decoded)?), records, last_offset: last }
                        };
                        self.send(i, Poll::Chunk(Chunk { partition, payload, bytes, behind }), stop);
                    }
                }
                Some(Item::Event(event)) => {
                    for i in 0..self.links.len() {
                        self.send(i, copy(&event), stop);
                    }
                }
                None if done => {
                    for i in 0..self.links.len() {
                        self.send(i, Poll::End, stop);
                    }
                    break;
                }
                None if stopping => break,
                None => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        progress.finish();
        while !self.all_ended() {
            self.maybe_commit(false)?;
            std::thread::sleep(Duration::from_millis(10));
        }
        self.maybe_commit(true)
    }

    fn all_ended(&self) -> bool {
        self.shared.all_ended()
    }

    /// Hand job `i` an event, waiting while its channel is full (the slowest job paces the
    /// reader). Dropped for a job that ended, or when stopping (a stopped job reads no more).
    fn send(&mut self, i: usize, mut event: Poll, stop: &AtomicBool) {
        loop {
            match self.links[i].events.try_send(event) {
                Ok(()) => return,
                Err(TrySendError::Disconnected(_)) => return,
                Err(TrySendError::Full(e)) => {
                    if self.shared.ended[i].load(Ordering::SeqCst) || stop.load(Ordering::Relaxed) {
                        return;
                    }
                    event = e;
                    if let Err(e) = self.maybe_commit(false) {
                        crate::log_warn!("{}: commit failed: {e:#}", self.links[i].name);
                    }
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
    }

    /// Restored jobs continue at their checkpoints: the source starts, per partition, at the
    /// least of their positions (each job skips what it has already), or at the group's commit
    /// when a job has no checkpoint.
    fn resume(&mut self) {
        let resume = self.shared.resume.lock().expect("not poisoned").clone();
        if resume.iter().all(Option::is_none) {
            return;
        }
        let partitions = self.source.partitions().len();
        let positions: Vec<Option<i64>> = (0..partitions)
            .map(|p| resume.iter().map(|r| r.as_ref().and_then(|r| r.get(p).copied().flatten())).collect::<Option<Vec<i64>>>()?.into_iter().min())
            .collect();
        self.source.resume_at(&positions);
    }

    /// The group took these partitions: what the jobs noted for them is stale until each job
    /// has been told (see [`super::Branch`]).
    fn fence(&mut self, ps: &[usize]) {
        let mut fenced = self.shared.fenced.lock().expect("not poisoned");
        let mut commits = self.shared.commits.lock().expect("not poisoned");
        for m in 0..self.links.len() {
            for &p in ps {
                fenced[m][p] = true;
                commits[m][p] = None;
            }
        }
        for &p in ps {
            self.committed[p] = None;
        }
    }

    /// The watermark each job's windows were emitted up to at the group's last commit.
    fn read_notes(&mut self, ps: &[usize]) {
        let mut notes = self.shared.notes.lock().expect("not poisoned");
        for &p in ps {
            let note = self.source.committed_note(p);
            let map: Option<serde_json::Map<String, serde_json::Value>> =
                note.as_deref().and_then(|n| n.strip_prefix(WATERMARKS_NOTE)).and_then(|j| serde_json::from_str(j).ok());
            for (m, link) in self.links.iter().enumerate() {
                notes[m][p] = map.as_ref().and_then(|map| map.get(&link.name)).and_then(|v| v.as_i64());
            }
        }
    }

    /// Commit, per partition, the least position every job may commit, with each job's
    /// watermark note. `now`: whether or not the interval passed.
    fn maybe_commit(&mut self, now: bool) -> anyhow::Result<()> {
        if !now && self.last_commit.elapsed() < COMMIT_EVERY {
            return Ok(());
        }
        self.last_commit = Instant::now();
        let mut out = Vec::new();
        {
            let commits = self.shared.commits.lock().expect("not poisoned");
            for p in 0..self.committed.len() {
                let Some(all) = commits.iter().map(|c| c[p]).collect::<Option<Vec<(i64, Millis)>>>() else { continue };
                let offset = all.iter().map(|&(o, _)| o).min().expect("a share has jobs");
                let noted: serde_json::Map<String, serde_json::Value> = self
                    .links
                    .iter()
                    .zip(&all)
                    .filter(|(_, (_, w))| *w != Millis::MIN)
                    .map(|(l, &(_, w))| (l.name.clone(), serde_json::Value::from(w)))
                    .collect();
                let note = if noted.is_empty() { String::new() } else { format!("{WATERMARKS_NOTE}{}", serde_json::Value::Object(noted)) };
                if self.committed[p].as_ref() != Some(&(offset, note.clone())) {
                    self.committed[p] = Some((offset, note.clone()));
                    out.push((p, offset, note));
                }
            }
        }
        if out.is_empty() {
            return Ok(());
        }
        self.source.commit_notes(&out).context("committing the shared source's positions")
    }
}

/// The job's columns of a shared decode (no copy: the arrays are shared).
fn project(link: &Link, decoded: &Decoded) -> anyhow::Result<Decoded> {
    let columns = link.columns.iter().map(|&i| decoded.batch.column(i).clone()).collect();
    let options = RecordBatchOptions::new().with_row_count(Some(decoded.batch.num_rows()));
    let batch = RecordBatch::try_new_with_options(link.schema.clone(), columns, &options).with_context(|| format!("job `{}`: its columns of the shared decode", link.name))?;
    Ok(Decoded { batch, offsets: decoded.offsets.clone(), dead_letters: decoded.dead_letters.clone() })
}

/// An event for another job (chunks are never copied this way).
fn copy(event: &Poll) -> Poll {
    match event {
        Poll::PartitionEnd(p) => Poll::PartitionEnd(*p),
        Poll::CaughtUp(p) => Poll::CaughtUp(*p),
        Poll::NotCaughtUp(p) => Poll::NotCaughtUp(*p),
        Poll::Clock(p, w) => Poll::Clock(*p, *w),
        Poll::Assigned(ps) => Poll::Assigned(ps.clone()),
        Poll::Revoked(ps) => Poll::Revoked(ps.clone()),
        Poll::Idle => Poll::Idle,
        Poll::End => Poll::End,
        Poll::Chunk(_) => unreachable!("chunks are handed out one job at a time"),
    }
}
