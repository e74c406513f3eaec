//! Several jobs over one source in one process (`osprey run a.toml b.toml`, `osprey replay`):
//! the source is read once and decoded once, into the union of the jobs' columns, and each job
//! gets the columns it declared and runs its own pipeline (its windows, lateness, dead-letter
//! route, state and outputs) on a thread of its own.
//!
//! Why not one pipeline with many jobs inside: a job's pipeline already owns everything a job
//! must keep apart (positions, checkpoints, routes), and on threads of their own the jobs
//! run side by side while the reader decodes ahead. What they share is what costs the most per
//! record and is the same for all of them: reading and decoding.
//!
//! A job joins a share only when the share would give it exactly the rows it gets alone:
//! the same source, format and event-time column, and no column declared with another type
//! (see [`plan`]). A chunk in which the shared decode found a dead letter is decoded again by
//! each job whose columns are not the whole union, so a record only another job cannot read is
//! never lost to this one.

mod branch;
mod reader;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::job::{Job, SourceConfig};
use crate::pipeline::{Options, Pipeline, Summary};
use crate::sink::Sink;
use crate::Millis;

use branch::Branch;
use reader::Reader;

/// Jobs that read one source together, by their index in the list given to [`plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub jobs: Vec<usize>,
}

/// A job that reads on its own, and why.
#[derive(Debug, Clone)]
pub struct Alone {
    pub job: usize,
    pub reason: String,
}

/// Which jobs read together. `own` gives a reason a job must read on its own whatever the
/// others are (a scaled-out job's two stages, an exactly-once job's transactions). Jobs join
/// the first share they fit, in the order given; a share of one is reported as alone only when
/// it conflicts with another share over the same source.
pub fn plan(jobs: &[Job], own: impl Fn(&Job) -> Option<String>) -> (Vec<Share>, Vec<Alone>) {
    let mut shares: Vec<Share> = Vec::new();
    let mut alone = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        if let Some(reason) = own(job) {
            alone.push(Alone { job: i, reason });
            continue;
        }
        let mut refused = None;
        let mut joined = false;
        for share in shares.iter_mut() {
            let first = &jobs[share.jobs[0]];
            if !same_source(first, job) {
                continue;
            }
            match share.jobs.iter().find_map(|&j| conflict(&jobs[j], job)) {
                None => {
                    share.jobs.push(i);
                    joined = true;
                    break;
                }
                Some(reason) => refused = Some(reason),
            }
        }
        if joined {
            continue;
        }
        match refused {
            Some(reason) => alone.push(Alone { job: i, reason }),
            None => shares.push(Share { jobs: vec![i] }),
        }
    }
    (shares, alone)
}

/// Why a job reads its source on its own whatever the others are (`None`: it may share): a
/// scaled-out job's two stages read through their own consumer groups, and an exactly-once
/// job's transactions commit its own group's offsets.
pub fn reads_alone(job: &Job) -> Option<String> {
    if job.exactly_once() {
        return Some("it delivers exactly once, and its transactions commit its own consumer group's offsets".into());
    }
    let query = crate::plan::plan(job).ok()?;
    let stages = crate::shuffle::stages(job, &query);
    matches!(stages, crate::shuffle::Stages::Two { .. }).then(|| format!("it runs in {stages}"))
}

/// The same records, read the same way (a Kafka group is not part of it: a share has its own).
fn same_source(a: &Job, b: &Job) -> bool {
    let source = match (&a.source, &b.source) {
        (SourceConfig::Kafka(x), SourceConfig::Kafka(y)) => x.topic == y.topic && x.brokers == y.brokers && x.properties == y.properties,
        (SourceConfig::File { pattern: p, format: f }, SourceConfig::File { pattern: q, format: g }) => f == g && (p == q || same_files(p, q)),
        (SourceConfig::Generator(x), SourceConfig::Generator(y)) => x == y,
        _ => false,
    };
    source && a.input == b.input
}

/// Two patterns (written from two job folders, say) naming the same files.
fn same_files(p: &str, q: &str) -> bool {
    let files = |pattern: &str| -> Option<Vec<std::path::PathBuf>> {
        crate::source::file::expand(pattern).ok()?.iter().map(|f| std::fs::canonicalize(f).ok()).collect()
    };
    matches!((files(p), files(q)), (Some(a), Some(b)) if a == b)
}

/// Why two jobs over the same source cannot share one decode.
fn conflict(a: &Job, b: &Job) -> Option<String> {
    if a.event_time.column != b.event_time.column {
        return Some(format!(
            "its event time is `{}`, job `{}`'s is `{}` (the shared decode drops records without an event time)",
            b.event_time.column, a.name, a.event_time.column
        ));
    }
    for c in &b.columns {
        for d in &a.columns {
            if c.name == d.name && c.ty != d.ty {
                return Some(format!("it reads `{}` as {}, job `{}` as {}", c.name, c.ty.arrow_type(), a.name, d.ty.arrow_type()));
            }
            let nested = |x: &str, y: &str| y.strip_prefix(x).is_some_and(|rest| rest.starts_with('.'));
            if nested(&c.name, &d.name) || nested(&d.name, &c.name) {
                return Some(format!("it reads `{}` and job `{}` reads `{}`: one is a field of the other", c.name, a.name, d.name));
            }
        }
    }
    None
}

/// Per job, per partition.
type Grid<T> = Vec<Vec<T>>;

/// What the jobs of a share tell the reader, and it them, beside the events on their channels.
pub(crate) struct Shared {
    /// Per job, per partition: the position (and watermark note) it may commit.
    pub(crate) commits: Mutex<Grid<Option<(i64, Millis)>>>,
    /// Per job, per partition: revoked by the group, and the job has not yet been told. Its
    /// positions there are stale until it has.
    pub(crate) fenced: Mutex<Grid<bool>>,
    /// Per job, per partition: the watermark the group's last commit noted for it.
    pub(crate) notes: Mutex<Grid<Option<Millis>>>,
    /// Per job: the positions a restored checkpoint continues at.
    pub(crate) resume: Mutex<Vec<Option<Vec<Option<i64>>>>>,
    pub(crate) lag: Mutex<Option<Vec<(usize, i64)>>>,
    /// Per job: its pipeline has ended (or never started).
    pub(crate) ended: Vec<AtomicBool>,
}

impl Shared {
    fn new(jobs: usize, partitions: usize) -> Self {
        Shared {
            commits: Mutex::new(vec![vec![None; partitions]; jobs]),
            fenced: Mutex::new(vec![vec![false; partitions]; jobs]),
            notes: Mutex::new(vec![vec![None; partitions]; jobs]),
            resume: Mutex::new(vec![None; jobs]),
            lag: Mutex::new(None),
            ended: (0..jobs).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    fn end(&self, member: usize) {
        self.ended[member].store(true, Ordering::SeqCst);
    }

    pub(crate) fn all_ended(&self) -> bool {
        self.ended.iter().all(|e| e.load(Ordering::SeqCst))
    }
}

/// What a job of a share needs beside its job: its sink, and its options (a shared reader
/// decodes, so `decode_threads` is ignored).
pub struct Member {
    pub job: Job,
    pub build: Build,
    /// Told how the job ended, on its thread, as soon as it has (the others may run on).
    pub ended: Option<Ended>,
}

/// Builds a job's sink and options, on the job's own thread.
pub type Build = Box<dyn FnOnce(&Job) -> anyhow::Result<(Box<dyn Sink>, Options)> + Send>;

/// See [`Member::ended`].
pub type Ended = Box<dyn FnOnce(&anyhow::Result<Summary>) + Send>;

/// Read `source` once for all `members`, each job on a thread of its own. Returns each job's
/// result in the order given. `progress`: one progress bar for the share. `together`: a job
/// that fails stops the others (a live process: its supervisor restarts them all, and each
/// continues from its checkpoint); otherwise the others finish.
pub fn run(source: Box<dyn crate::source::Source>, members: Vec<Member>, stop: Arc<AtomicBool>, progress: bool, together: bool) -> Vec<anyhow::Result<Summary>> {
    let jobs: Vec<Job> = members.iter().map(|m| m.job.clone()).collect();
    let partitions = source.partitions().to_vec();
    let shared = Arc::new(Shared::new(members.len(), partitions.len()));
    let bounded = source.is_bounded();
    let mut senders = Vec::new();
    let mut handles = Vec::new();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    for (i, member) in members.into_iter().enumerate() {
        let (tx, rx) = std::sync::mpsc::sync_channel(reader::CHANNEL_DEPTH);
        senders.push(tx);
        let branch = Branch::new(i, partitions.clone(), rx, shared.clone(), bounded);
        let shared = shared.clone();
        let ready = ready_tx.clone();
        let stop = stop.clone();
        let name = member.job.name.clone();
        let thread_name = name.clone();
        let handle = std::thread::Builder::new()
            .name(format!("osprey-job-{i}"))
            .spawn(move || {
                let result = (|| {
                    let (sink, mut options) = (member.build)(&member.job)?;
                    options.decode_threads = 0;
                    options.progress = false;
                    let pipeline = Pipeline::new(member.job, Box::new(branch), sink, options);
                    // Built (and restored) or not, the reader may start.
                    let _ = ready.send(());
                    pipeline?.run()
                })();
                let _ = ready.send(());
                shared.end(i);
                if let Some(ended) = member.ended {
                    ended(&result);
                }
                if let (Err(e), true) = (&result, together) {
                    crate::log_error!("job `{name}` failed, and the jobs beside it stop: {e:#}");
                    stop.store(true, Ordering::Relaxed);
                }
                result
            })
            .unwrap_or_else(|e| panic!("cannot start a thread for job `{thread_name}`: {e}"));
        handles.push(handle);
    }
    drop(ready_tx);
    // Every pipeline is built (its checkpoint restored, its resume positions given) before the
    // first read.
    let mut started = 0;
    while started < jobs.len() && ready_rx.recv().is_ok() {
        started += 1;
    }
    let reader = Reader::new(source, &jobs, senders, shared.clone());
    let read = match reader {
        Ok(r) => r.run(&stop, progress),
        Err(e) => Err(e),
    };
    let mut results: Vec<anyhow::Result<Summary>> =
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the job's thread panicked")))).collect();
    if let Err(e) = read {
        // The reader failed: every job that did not fail on its own says why it ended.
        let message = format!("{e:#}");
        for (r, job) in results.iter_mut().zip(&jobs) {
            if r.is_ok() {
                *r = Err(anyhow::anyhow!("job `{}`: the shared source failed: {message}", job.name));
            }
        }
    }
    results
}

/// The consumer group of a share over a Kafka topic: the jobs' own group when they all name
/// the same one, else one named after all of them (sorted), so the same set of jobs resumes
/// where it stopped.
pub fn group(jobs: &[&Job]) -> String {
    let groups: Vec<&str> = jobs
        .iter()
        .filter_map(|j| match &j.source {
            SourceConfig::Kafka(k) => Some(k.group.as_str()),
            _ => None,
        })
        .collect();
    if let Some(first) = groups.first().filter(|first| groups.iter().all(|g| g == *first)) {
        return first.to_string();
    }
    let mut names: Vec<&str> = jobs.iter().map(|j| j.name.as_str()).collect();
    names.sort_unstable();
    format!("osprey-{}", names.join("+"))
}

#[cfg(test)]
mod tests;
