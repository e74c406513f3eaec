//! The jobs a server runs: their definitions (kept in `<data-dir>/registry.json`, so a
//! restarted server resumes them), their threads, status and counters.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::{json, Value};

use crate::job::{Job, JobError, RouteConfig, SinkConfig, SourceConfig};
use crate::kafka::Cluster;
use crate::metrics::JobCounters;
use crate::pipeline::{Options, Pipeline};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    /// Stopped by a user, or its bounded input ended.
    Stopped,
    Failed,
}

/// What a job's thread reports.
#[derive(Debug)]
pub struct Run {
    pub status: Status,
    pub last_error: Option<String>,
    pub finished: bool,
    pub alerts_fired: u64,
}

impl Run {
    /// Just started: running, nothing fired, no error.
    fn running() -> Run {
        Run { status: Status::Running, last_error: None, finished: false, alerts_fired: 0 }
    }
}

pub struct Entry {
    pub text: String,
    pub job: Job,
    pub run: Arc<Mutex<Run>>,
    pub stop: Arc<AtomicBool>,
    pub counters: Option<Arc<JobCounters>>,
    /// The job's last log lines (JSON objects), across its restarts.
    pub log: crate::log::JobLog,
    /// What the on-call page draws, across its restarts.
    pub history: Arc<crate::history::JobHistory>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Why it reads its source on its own whatever the other jobs are (planned once: it
    /// plans the job's SQL).
    own: Option<String>,
    /// Why it reads its source on its own, when it runs and does.
    alone: Option<String>,
}

impl Entry {
    /// Stop the job's own thread, if it runs alone, and wait for it (it checkpoints).
    fn stop_alone(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

use super::shared::{Change, Follower, RegistryTopic, Saved};

mod shares;

use shares::{reads_alone, Pending, ShareRun};

/// How often a server's jobs checkpoint.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

pub struct Registry {
    pub data_dir: PathBuf,
    pub cluster: Option<Cluster>,
    pub jobs: BTreeMap<String, Entry>,
    /// The shared registry topic; `None`: `<data-dir>/registry.json`.
    shared: Option<RegistryTopic>,
    /// Applying a change read from the shared topic: nothing is written back.
    applying: bool,
    /// Jobs reading one source together (`crate::fleet`).
    shares: Vec<ShareRun>,
    /// Starting many jobs at once (a server's start, a batch of shared changes): shares are
    /// formed once, after all of them, not once per job.
    batching: bool,
    /// Jobs started and waiting for their share to be formed, and when it will be.
    pending: Option<Pending>,
}


/// Why a submission is refused: the HTTP status and the error.
pub struct Refusal {
    pub status: u16,
    pub body: Value,
}

impl Refusal {
    fn new(status: u16, message: impl Into<String>) -> Refusal {
        Refusal { status, body: json!({ "error": { "message": message.into() } }) }
    }

    fn job(e: &JobError) -> Refusal {
        Refusal {
            status: 422,
            body: json!({ "error": {
                "message": e.message,
                "line": (e.line > 0).then_some(e.line),
                "column": (e.column > 0).then_some(e.column),
                "help": e.help,
                "text": e.to_string(),
            }}),
        }
    }
}

impl Registry {
    /// The registry in `<data-dir>/registry.json`, or (`topic`, with a cluster) in a shared
    /// compacted topic: then also the follower of that topic's later changes.
    pub fn open(data_dir: PathBuf, cluster: Option<Cluster>, topic: Option<&str>) -> anyhow::Result<(Registry, Option<Follower>)> {
        std::fs::create_dir_all(data_dir.join("jobs"))?;
        let data_dir = data_dir.canonicalize()?;
        let shared = match (&cluster, topic) {
            (Some(c), Some(t)) => Some(RegistryTopic::open(c, t)?),
            _ => None,
        };
        let mut r = Registry { data_dir, cluster, jobs: BTreeMap::new(), shared, applying: false, shares: Vec::new(), batching: true, pending: None };
        if let Some(shared) = &r.shared {
            let (changes, follower) = shared.read()?;
            crate::log_info!("serve: registry in the Kafka topic `{}` ({} entries read)", shared.topic(), changes.len());
            r.applying = true;
            for (name, entry) in changes {
                r.apply(&name, entry);
            }
            r.applying = false;
            r.batching = false;
            r.regroup();
            return Ok((r, Some(follower)));
        }
        let path = r.file();
        if path.exists() {
            let saved: Vec<Saved> = serde_json::from_str(&std::fs::read_to_string(&path)?)
                .map_err(|e| anyhow::anyhow!("{}: {e}; move it aside to start with no jobs", path.display()))?;
            for s in saved {
                match r.check(&s.text) {
                    Ok(job) => {
                        crate::log_info!("serve: resuming job `{}`{}", job.name, if s.stopped { " (stopped)" } else { "" });
                        r.insert(s.text, job, !s.stopped);
                    }
                    Err(e) => crate::log_warn!("serve: job `{}` from {} no longer validates: {}", s.name, path.display(), e.body),
                }
            }
        }
        r.batching = false;
        r.regroup();
        Ok((r, None))
    }

    /// Follow one change another server (or this one) wrote to the shared registry.
    pub fn apply_changes(&mut self, changes: Vec<Change>) {
        self.applying = true;
        self.batching = true;
        for (name, entry) in changes {
            self.apply(&name, entry);
        }
        self.applying = false;
        self.batching = false;
        // A job stopped leaves its share now; jobs started (here, or echoed back from this
        // server's own submissions) join with the others started around them.
        if self.a_share_reads_for_a_stopped_job() {
            self.regroup();
        } else {
            self.regroup_soon();
        }
    }

    fn apply(&mut self, name: &str, entry: Option<Saved>) {
        let Some(entry) = entry else {
            if self.jobs.contains_key(name) {
                crate::log_info!("serve: job `{name}` deleted in the shared registry");
                self.delete(name);
            }
            return;
        };
        let running = self.jobs.get(name).map(|e| e.run.lock().expect("not poisoned").status == Status::Running);
        match self.jobs.get(name) {
            Some(e) if e.text == entry.text => match (entry.stopped, running) {
                (true, Some(true)) => {
                    crate::log_info!("serve: job `{name}` stopped in the shared registry");
                    self.stop(name);
                }
                (false, Some(false)) => {
                    crate::log_info!("serve: job `{name}` restarted in the shared registry");
                    self.start(name);
                }
                _ => {}
            },
            _ => {
                if self.jobs.contains_key(name) {
                    self.delete(name);
                }
                match self.check(&entry.text) {
                    Ok(job) => {
                        crate::log_info!("serve: job `{name}` from the shared registry{}", if entry.stopped { " (stopped)" } else { "" });
                        self.insert(entry.text, job, !entry.stopped);
                    }
                    Err(e) => crate::log_warn!("serve: job `{name}` from the shared registry does not validate here: {}", e.body),
                }
            }
        }
    }

    fn file(&self) -> PathBuf {
        self.data_dir.join("registry.json")
    }

    fn saved(&self, e: &Entry) -> Saved {
        Saved { name: e.job.name.clone(), text: e.text.clone(), stopped: e.run.lock().expect("not poisoned").status != Status::Running }
    }

    /// Record `name`'s entry (or its deletion): in the shared topic, or the whole file.
    fn save(&self, name: &str) -> anyhow::Result<()> {
        if self.applying {
            return Ok(());
        }
        if let Some(shared) = &self.shared {
            let entry = self.jobs.get(name).map(|e| self.saved(e));
            return shared.publish(name, entry.as_ref());
        }
        let saved: Vec<Saved> = self
            .jobs
            .values()
            .map(|e| self.saved(e))
            .collect();
        let tmp = self.file().with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&saved)?)?;
        std::fs::rename(&tmp, self.file())?;
        Ok(())
    }

    /// Validate a job file's text as a submission: everything `osprey validate` checks, and
    /// that every path it reads or writes is inside the data directory.
    pub fn check(&self, text: &str) -> Result<Job, Refusal> {
        let path = self.data_dir.join("jobs").join("submitted.toml");
        let mut job = crate::job::parse(&path, text).map_err(|e| Refusal::job(&e))?;
        // Relative default destinations land in the data directory, not the server's folder.
        for route in [&mut job.dead_letter, &mut job.late] {
            if let RouteConfig::File(p) = route {
                if p.is_relative() {
                    *p = self.data_dir.join(&*p);
                }
            }
        }
        let mut paths: Vec<(&str, PathBuf)> = vec![("sql_file", job.sql.file.clone())];
        if let SourceConfig::File { pattern, .. } = &job.source {
            paths.push(("[source] path", PathBuf::from(pattern)));
        }
        if let SinkConfig::File { path } = &job.sink {
            paths.push(("[sink] path", path.clone()));
        }
        for (what, route) in [("[dead_letter] path", &job.dead_letter), ("[late] path", &job.late)] {
            if let RouteConfig::File(p) = route {
                paths.push((what, p.clone()));
            }
        }
        if let Some(a) = &job.alerts {
            if let Some(p) = &a.file {
                paths.push(("[alerts] file", p.clone()));
            }
            if let Some(p) = &a.notifications {
                paths.push(("[alerts] notifications", p.clone()));
            }
        }
        for (what, p) in paths {
            if !self.confined(&p) {
                return Err(Refusal::new(
                    422,
                    format!("{what} `{}` is outside the server's data directory {}; a submitted job reads and writes only there", p.display(), self.data_dir.display()),
                ));
            }
        }
        crate::plan::plan(&job).map_err(|e| Refusal::job(&e))?;
        Ok(job)
    }

    /// `p` (made absolute, `..` resolved without touching the disk, links in the existing
    /// part resolved) is inside the data directory.
    fn confined(&self, p: &Path) -> bool {
        let mut out = PathBuf::new();
        for c in p.components() {
            match c {
                Component::ParentDir => {
                    if !out.pop() {
                        return false;
                    }
                }
                Component::CurDir => {}
                other => out.push(other.as_os_str()),
            }
        }
        // Resolve links in the longest part that exists (a glob's folder, a file to create).
        let mut existing = out.clone();
        let mut rest = Vec::new();
        while !existing.exists() {
            match (existing.file_name().map(|n| n.to_os_string()), existing.parent().map(Path::to_path_buf)) {
                (Some(name), Some(parent)) => {
                    rest.push(name);
                    existing = parent;
                }
                _ => return false,
            }
        }
        let Ok(mut real) = existing.canonicalize() else { return false };
        for name in rest.into_iter().rev() {
            real.push(name);
        }
        real.starts_with(&self.data_dir) && real != self.data_dir
    }

    /// Add a validated job; start it unless `stopped`.
    pub fn insert(&mut self, text: String, job: Job, start: bool) {
        let run = Arc::new(Mutex::new(Run { status: Status::Stopped, ..Run::running() }));
        let name = job.name.clone();
        let own = reads_alone(&job);
        self.jobs.insert(name.clone(), Entry { text, job, run, stop: Arc::new(AtomicBool::new(false)), counters: None, log: Default::default(), history: Default::default(), thread: None, own, alone: None });
        if start {
            self.start(&name);
        }
        self.save_or_warn(&name);
    }

    /// Validate, add and start a job: its view.
    pub fn submit(&mut self, text: String) -> Result<Value, Refusal> {
        let job = self.check(&text)?;
        if self.jobs.contains_key(&job.name) {
            return Err(Refusal::new(409, format!("a job named `{}` exists; stop and delete it first, or give this one another name", job.name)));
        }
        let name = job.name.clone();
        self.insert(text, job, true);
        Ok(self.view(&self.jobs[&name]))
    }

    fn save_or_warn(&self, name: &str) {
        if let Err(e) = self.save(name) {
            crate::log_warn!("serve: cannot save the registry: {e:#}");
        }
    }

    /// Start (or restart) a job's pipeline on a thread of its own; the registry says it runs.
    pub fn start(&mut self, name: &str) {
        self.launch(name);
        self.save_or_warn(name);
    }

    /// A job that may share its source's read is (re)started in a share formed again with
    /// it; one that may not, on a thread of its own.
    fn launch(&mut self, name: &str) {
        let Some(e) = self.jobs.get_mut(name) else { return };
        if e.own.is_some() {
            return self.launch_alone(name);
        }
        // Started again while it runs: alone, it stops first; in a share, the share restarts.
        e.stop_alone();
        *e.run.lock().expect("not poisoned") = Run::running();
        if let Some(share) = self.shares.iter_mut().find(|s| s.jobs.iter().any(|j| j == name)) {
            share.stop_to_regroup();
        }
        if !self.batching {
            self.regroup_soon();
        }
    }

    fn launch_alone(&mut self, name: &str) {
        let state = self.state_options();
        let Some(e) = self.jobs.get_mut(name) else { return };
        e.stop_alone();
        let stop = Arc::new(AtomicBool::new(false));
        e.stop = stop.clone();
        *e.run.lock().expect("not poisoned") = Run::running();
        let job = e.job.clone();
        let run = e.run.clone();
        let log = e.log.clone();
        let history = e.history.clone();
        let _logging = crate::log::for_job(&job.name, log.clone());
        let mut cluster = self.cluster.clone();
        if let Some(c) = &mut cluster {
            crate::pipeline::prepare_cluster(&job, c);
        }
        // Scaled out (several servers over one topic), a job whose grouping the topic is not
        // keyed by runs in two stages, as `osprey run` does (`crate::shuffle`).
        let mut first_stage = None;
        let built = (|| -> anyhow::Result<Pipeline> {
            let query = crate::plan::plan(&job).map_err(|e| anyhow::anyhow!("{e}"))?;
            let live = crate::shuffle::open_live(&job, &query, cluster.as_ref(), None, stop.clone())?;
            if live.first_stage.is_some() {
                crate::log_info!("{}: {}", job.name, live.stages);
            }
            let cluster = live.outputs_cluster(&job, cluster.clone());
            let sink = crate::sink::build(&job, None, cluster.as_ref())?;
            // Jobs with positions to resume from checkpoint under <data-dir>/state/<job>/.
            let state = (!matches!(job.source, SourceConfig::Generator(_))).then_some(state);
            let options = Options { cluster: cluster.clone(), decode_threads: 1, state, history: Some(history), ..Options::live(stop) }.over(&live);
            let second = live.pipeline_job(&job);
            first_stage = live.first_stage;
            Pipeline::new(second, live.source, sink, options)
        })();
        match built {
            Err(err) => {
                if let Some(first) = first_stage.take() {
                    let _ = first.finish();
                }
                crate::log_error!("{}: cannot start: {err:#}", job.name);
                let mut r = run.lock().expect("not poisoned");
                r.status = Status::Failed;
                r.last_error = Some(format!("{err:#}"));
            }
            Ok(pipeline) => {
                e.counters = Some(pipeline.counters());
                e.thread = Some(std::thread::spawn(move || {
                    let _logging = crate::log::for_job(&job.name, log);
                    crate::log_info!("{}: started", job.name);
                    let mut result = pipeline.run();
                    // The first stage stops with the second, and commits what it forwarded.
                    if let Some(first) = first_stage {
                        match (first.finish(), &result) {
                            (Ok(f), _) => crate::log_info!("{}: shuffle: {f}", job.name),
                            (Err(e), Ok(_)) => result = Err(e),
                            (Err(e), Err(_)) => crate::log_error!("{}: the shuffle's first stage: {e:#}", job.name),
                        }
                    }
                    record_end(&job.name, &run, &result);
                }));
            }
        }
    }

    /// Where and how often a served job checkpoints: `<data-dir>/state/<job>/`.
    fn state_options(&self) -> crate::pipeline::StateOptions {
        crate::pipeline::StateOptions { dir: self.data_dir.join("state"), interval: CHECKPOINT_INTERVAL, fresh: false, from: None }
    }

    pub fn stop(&mut self, name: &str) -> bool {
        let Some(e) = self.jobs.get_mut(name) else { return false };
        e.stop_alone();
        {
            let mut r = e.run.lock().expect("not poisoned");
            if r.status == Status::Running {
                r.status = Status::Stopped;
            }
        }
        // In a share: the others go on in a share without it.
        if !self.batching {
            self.regroup();
        }
        self.save_or_warn(name);
        true
    }

    pub fn delete(&mut self, name: &str) -> bool {
        if !self.stop(name) {
            return false;
        }
        self.jobs.remove(name);
        // A job submitted again under this name starts from nothing.
        let _ = std::fs::remove_dir_all(self.data_dir.join("state").join(name));
        self.save_or_warn(name);
        true
    }

    /// Stop every job (the server shuts down); the registry keeps them as running, so a
    /// restart resumes them.
    pub fn shutdown(&mut self) {
        // All told first, so they stop side by side; then each waited for.
        self.shares.iter().for_each(ShareRun::tell_to_stop);
        for e in self.jobs.values_mut() {
            e.stop.store(true, Ordering::Relaxed);
        }
        self.shares.iter_mut().for_each(ShareRun::stop_to_regroup);
        self.jobs.values_mut().for_each(Entry::stop_alone);
    }

    /// A job as the API shows it.
    pub fn view(&self, e: &Entry) -> Value {
        let r = e.run.lock().expect("not poisoned");
        let c = e.counters.as_ref().map(|c| c.snapshot());
        json!({
            "name": e.job.name,
            "kind": e.job.kind.name(),
            "status": r.status,
            "finished": r.finished,
            "records_in": c.map(|c| c.records_in).unwrap_or(0),
            "records_out": c.map(|c| c.rows_out).unwrap_or(0),
            "decode_errors": c.map(|c| c.decode_errors).unwrap_or(0),
            "late_records": c.map(|c| c.late_records).unwrap_or(0),
            "windows_closed": c.map(|c| c.windows_closed).unwrap_or(0),
            // Before the first record there is none; at the end of a bounded input it is past every window.
            "watermark": c.and_then(|c| match c.watermark {
                i64::MIN => None,
                i64::MAX => Some("end of input".to_string()),
                w => Some(crate::alert::rfc3339(w)),
            }),
            // Records behind the end of each source partition (Kafka), refreshed every 2 s.
            "lag": e.counters.as_ref().map(|c| c.lag.lock().expect("not poisoned").iter().map(|(p, n)| (p.clone(), json!(n))).collect::<serde_json::Map<_, _>>()),
            "alerts_fired": r.alerts_fired,
            // As it runs: alert transitions written (fired and resolved) and evaluations kept quiet.
            "alerts_emitted": c.map(|c| c.alerts_emitted).unwrap_or(0),
            "alerts_suppressed": c.map(|c| c.alerts_suppressed).unwrap_or(0),
            "last_error": r.last_error,
            // The jobs it reads and decodes its source with (`osprey run` with several jobs
            // does the same); empty when it reads alone.
            "reads_with": self.shares.iter().find(|s| s.jobs.contains(&e.job.name)).map(|s| s.jobs.iter().filter(|j| **j != e.job.name).cloned().collect::<Vec<_>>()).unwrap_or_default(),
            // Why it reads its source on its own while it runs (null: it shares, or could).
            "reads_alone": (r.status == Status::Running).then_some(e.alone.as_ref()).flatten(),
        })
    }
}

/// A job's pipeline ended: the registry says how.
fn record_end(name: &str, run: &Mutex<Run>, result: &anyhow::Result<crate::pipeline::Summary>) {
    let mut r = run.lock().expect("not poisoned");
    match result {
        Ok(summary) => {
            crate::log_info!(
                "{name}: {} after {} records in, {} rows out",
                if summary.stopped { "stopped" } else { "finished its input" },
                summary.counters.records_in,
                summary.counters.rows_out
            );
            r.status = Status::Stopped;
            r.finished = !summary.stopped;
            r.alerts_fired = summary.alerts.as_ref().map(|(a, _)| a.fired).unwrap_or(0);
        }
        Err(err) => {
            crate::log_error!("{name}: failed: {err:#}");
            r.status = Status::Failed;
            r.last_error = Some(format!("{err:#}"));
        }
    }
}
