//! A server's jobs over one source read it together: which jobs share, and their shares'
//! threads (`crate::fleet` does the reading).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{record_end, Registry, Run, Status};
use crate::job::{Job, SourceConfig};
use crate::metrics::JobCounters;
use crate::pipeline::Options;

/// Jobs of the server that read one source together, one read and one decode for all of
/// them (`crate::fleet`), each with its own pipeline, state and outputs.
///
/// Why a share is stopped and formed again when a job joins or leaves, rather than changed
/// while it reads: a job that joins must start at its own position (its checkpoint, or where
/// a new job starts), which the share's reader is past. Stopped, every job of the share
/// checkpoints; formed again, each continues from its checkpoint and the reader starts at the
/// least of their positions, as a restarted server would.
pub(super) struct ShareRun {
    pub(super) jobs: Vec<String>,
    pub(super) stop: Arc<AtomicBool>,
    /// Stopped to be formed again (or the server shuts down): its jobs' ends are not stops
    /// their users asked for, and they stay running.
    pub(super) regrouping: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ShareRun {
    /// Its jobs stop (and stay running in the registry: see `regrouping`).
    pub(super) fn tell_to_stop(&self) {
        self.regrouping.store(true, Ordering::SeqCst);
        self.stop.store(true, Ordering::Relaxed);
    }

    /// [`ShareRun::tell_to_stop`], and wait for its jobs (they checkpoint).
    pub(super) fn stop_to_regroup(&mut self) {
        self.tell_to_stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Why a served job reads its source on its own (`None`: it may share). Beside what keeps a
/// job of `osprey run` alone ([`crate::fleet::reads_alone`]): a generator has no positions to
/// continue from, so a share formed again would start it over.
pub(super) fn reads_alone(job: &Job) -> Option<String> {
    if matches!(job.source, SourceConfig::Generator(_)) {
        return Some("its generator has no position to continue from when its share is formed again".into());
    }
    crate::fleet::reads_alone(job)
}

/// How long a started job waits for others started with it: forming a share stops and
/// restores every job in it, so twenty jobs submitted one after the other form it once, not
/// nineteen times.
const SETTLE: Duration = Duration::from_millis(500);

/// Submissions that keep coming still form the shares at least this often.
const SETTLE_AT_MOST: Duration = Duration::from_secs(3);

/// Shares to form again once `due`: a job started at `since` waits for them.
pub(super) struct Pending {
    since: Instant,
    due: Instant,
}

impl Registry {
    /// Form the shares again after a short wait (see [`SETTLE`]), with whatever else starts
    /// in it.
    pub(super) fn regroup_soon(&mut self) {
        let now = Instant::now();
        let since = self.pending.as_ref().map_or(now, |p| p.since);
        self.pending = Some(Pending { since, due: (now + SETTLE).min(since + SETTLE_AT_MOST) });
    }

    /// A share still reads for a job that is no longer running (stopped, deleted or failed).
    pub(super) fn a_share_reads_for_a_stopped_job(&self) -> bool {
        let running = |name: &String| self.jobs.get(name).is_some_and(|e| e.run.lock().expect("not poisoned").status == Status::Running);
        self.shares.iter().any(|share| !share.jobs.iter().all(running))
    }

    /// Form the shares if started jobs have waited long enough, or a job of a share failed
    /// (the share's group commit would wait for its position); the server calls it often.
    pub fn regroup_if_due(&mut self) {
        if self.pending.as_ref().is_some_and(|p| Instant::now() >= p.due) || self.a_share_reads_for_a_stopped_job() {
            self.regroup();
        }
    }

    /// Form the shares the running jobs should read in, and start what changed: a share whose
    /// jobs are the same runs on; one that lost or gained a job is stopped (its jobs
    /// checkpoint) and formed again; a job left on its own runs alone.
    pub(super) fn regroup(&mut self) {
        self.pending = None;
        let names: Vec<String> = self
            .jobs
            .iter()
            .filter(|(_, e)| e.run.lock().expect("not poisoned").status == Status::Running && e.own.is_none())
            .map(|(n, _)| n.clone())
            .collect();
        let list: Vec<Job> = names.iter().map(|n| self.jobs[n].job.clone()).collect();
        let (shares, alone) = crate::fleet::plan(&list, |_| None);
        let mut wanted: Vec<Vec<String>> = shares.iter().map(|s| s.jobs.iter().map(|&i| names[i].clone()).collect()).collect();
        // Who reads alone, and why (the job's view says it; its log when that changes).
        let mut reasons: std::collections::BTreeMap<String, String> = alone.iter().map(|a| (names[a.job].clone(), a.reason.clone())).collect();
        for (name, e) in self.jobs.iter_mut() {
            let reason = reasons.remove(name).or_else(|| e.own.clone());
            if reason.is_some() && reason != e.alone {
                crate::log_info!("{name}: reads its source on its own: {}", reason.as_deref().unwrap_or_default());
            }
            e.alone = reason;
        }
        wanted.extend(alone.iter().map(|a| vec![names[a.job].clone()]));
        // Stop the shares not wanted as they are, all at once, then wait for them.
        let (keep, gone): (Vec<ShareRun>, Vec<ShareRun>) =
            std::mem::take(&mut self.shares).into_iter().partition(|s| wanted.contains(&s.jobs) && s.thread.as_ref().is_some_and(|t| !t.is_finished()));
        self.shares = keep;
        gone.iter().for_each(ShareRun::tell_to_stop);
        for mut s in gone {
            s.stop_to_regroup();
        }
        // A job running alone that now joins a share stops first (it checkpoints).
        for (name, e) in self.jobs.iter_mut() {
            if e.own.is_none() && e.thread.is_some() && !wanted.contains(&vec![name.clone()]) {
                e.stop_alone();
            }
        }
        for jobs in wanted {
            if jobs.len() == 1 {
                let running = self.jobs[&jobs[0]].thread.as_ref().is_some_and(|t| !t.is_finished());
                if !running {
                    self.launch_alone(&jobs[0]);
                }
            } else if !self.shares.iter().any(|s| s.jobs == jobs) {
                self.launch_share(jobs);
            }
        }
    }

    /// Start these jobs reading their source together, each on a thread of its own.
    fn launch_share(&mut self, jobs: Vec<String>) {
        let stop = Arc::new(AtomicBool::new(false));
        let regrouping = Arc::new(AtomicBool::new(false));
        let members_jobs: Vec<&Job> = jobs.iter().map(|n| &self.jobs[n].job).collect();
        let first = members_jobs[0];
        let source: anyhow::Result<Box<dyn crate::source::Source>> = match (&first.source, &self.cluster) {
            (SourceConfig::Kafka(k), Some(c)) => {
                let group = crate::fleet::group(&members_jobs);
                crate::source::kafka::KafkaSource::open(c, &k.topic, crate::source::kafka::Start::Group { group }).map(|s| Box::new(s) as Box<dyn crate::source::Source>)
            }
            _ => crate::source::open_live(&first.source, &first.job_ref(), self.cluster.as_ref()),
        };
        let source = match source {
            Ok(s) => s,
            Err(err) => {
                for name in &jobs {
                    crate::log_error!("{name}: cannot start: the source it shares with {}: {err:#}", jobs.join(", "));
                    let mut r = self.jobs[name].run.lock().expect("not poisoned");
                    r.status = Status::Failed;
                    r.last_error = Some(format!("{err:#}"));
                }
                return;
            }
        };
        crate::log_info!("serve: {}: one read and one decode of their source", jobs.join(", "));
        let state = self.state_options();
        let mut members = Vec::new();
        let mut runs = Vec::new();
        for name in &jobs {
            let e = self.jobs.get_mut(name).expect("a running job");
            let counters = Arc::new(JobCounters::new());
            e.counters = Some(counters.clone());
            *e.run.lock().expect("not poisoned") = Run::running();
            runs.push((name.clone(), e.run.clone()));
            let (log, history, run) = (e.log.clone(), e.history.clone(), e.run.clone());
            let (stop, regrouping, state) = (stop.clone(), regrouping.clone(), state.clone());
            let mut cluster = self.cluster.clone();
            if let Some(c) = &mut cluster {
                crate::pipeline::prepare_cluster(&e.job, c);
            }
            let job_name = name.clone();
            members.push(crate::fleet::Member {
                job: e.job.clone(),
                build: Box::new(move |job: &Job| {
                    // The job's thread logs as the job for as long as it lives.
                    std::mem::forget(crate::log::for_job(&job.name, log));
                    crate::log_info!("{}: started", job.name);
                    let sink = crate::sink::build(job, None, cluster.as_ref())?;
                    Ok((sink, Options { cluster, state: Some(state), history: Some(history), counters: Some(counters), ..Options::live(stop) }))
                }),
                ended: Some(Box::new(move |result| {
                    // Stopped for its share to be formed again: it runs on there.
                    let regrouped = regrouping.load(Ordering::SeqCst) && result.as_ref().is_ok_and(|s| s.stopped);
                    if !regrouped {
                        record_end(&job_name, &run, result);
                    }
                })),
            });
        }
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let results = crate::fleet::run(source, members, stop, false, false);
                // The shared source failed: each job says so (its own end said only that
                // the source went away).
                for ((name, run), result) in runs.iter().zip(results) {
                    if let Err(err) = result {
                        let mut r = run.lock().expect("not poisoned");
                        if r.status == Status::Failed {
                            r.last_error = Some(format!("{err:#}"));
                        } else if r.status == Status::Running {
                            crate::log_error!("{name}: failed: {err:#}");
                            r.status = Status::Failed;
                            r.last_error = Some(format!("{err:#}"));
                        }
                    }
                }
            }
        });
        self.shares.push(ShareRun { jobs, stop, regrouping, thread: Some(thread) });
    }
}
