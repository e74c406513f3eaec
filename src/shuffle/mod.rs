//! Scale-out for a job whose grouping its topic is not keyed by: two stages joined by an
//! internal topic, `osprey-<job>-shuffle`, keyed by the job's group key.
//!
//! Several `osprey run` of a job share its topic's partitions. When the topic is keyed by the
//! job's group key (`[source] key`), each group's records sit in one partition, so in one
//! process, and one stage is enough. Otherwise every process would write its own partial row
//! for the same window and group. So:
//!
//! - **first stage** ([`Forwarder`], a thread beside the pipeline): reads the topic in the job's
//!   consumer group, decodes each record (dead letters are routed here), and writes its bytes
//!   to the internal partition its group key hashes to. After each chunk, and every second, it
//!   writes each of its source partitions' clocks (largest event time, idle, caught up) as a
//!   marker to every internal partition. Writes and consumed offsets commit in one Kafka
//!   transaction (every 100 ms, and inside a revocation), so a crash or a rebalance neither
//!   loses a record nor forwards one twice.
//! - **second stage** (the ordinary pipeline, `Options::shuffled`): reads the internal topic
//!   (`read_committed`) in its own group, `osprey-<job>-shuffle`. Its watermark is not taken
//!   from the records: per internal partition, it is the least over the source partitions'
//!   clocks heard there, as one process over the whole topic would have it, taken only after
//!   the records written before the marker (`source::kafka::clocks`). Lateness is judged here,
//!   against that watermark: the first stage of one process sees only its own partitions'
//!   clocks, which would call records late that one process would not.
//!
//! Both stages run in every process of the job.

mod forward;
pub mod partials;

pub use forward::{Forwarded, Forwarder};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;

use crate::exec::grouping::Grouping;
use crate::exec::JobQuery;
use crate::job::{InputFormat, Job, SourceConfig};

/// How a live run of a job reads its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stages {
    /// The job reads its source directly; why that gives one process's results.
    One(String),
    /// Through the internal topic, re-keyed by these input columns (empty: every record to
    /// internal partition 0).
    Two { key: Vec<String> },
}

/// How long an open transaction of a crashed process blocks `read_committed` readers before
/// the broker aborts it. Through the shuffle, a restarted process has a new transactional id,
/// so its start does not abort the old one's.
const TRANSACTION_TIMEOUT_MS: &str = "10000";

/// The internal topic of job `name`.
pub fn topic(name: &str) -> String {
    format!("osprey-{name}-shuffle")
}

/// A transactional id of this process's own for a stage of job `name`'s shuffle: the group's
/// generation fences a member that lost its partitions (KIP-447), so no two need to share one.
pub fn transactional_id(name: &str, stage: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("osprey-{name}-{stage}-{}-{}", std::process::id(), nanos % 1_000_000_000)
}

/// The consumer group of a job's second stage.
pub fn group(name: &str) -> String {
    format!("osprey-{name}-shuffle")
}

/// Whether a live run of `job` (planned as `query`) needs the shuffle, and on what key.
pub fn stages(job: &Job, query: &JobQuery) -> Stages {
    if !matches!(job.source, SourceConfig::Kafka(_)) {
        return Stages::One("its source is not a Kafka topic: one process reads it all".into());
    }
    if !matches!(job.input, InputFormat::Json) {
        return Stages::One(
            "OpenTelemetry input: one message holds rows of many keys, so it is not re-keyed; with several processes, per-key results are whole only when the topic is keyed by the group key".into(),
        );
    }
    // The message timestamp and trace id travel with each record; where it was read does not.
    let named: Vec<&str> = crate::source::metadata::referenced_by(&job.sql.text).into_iter().filter(|c| ["_partition", "_offset", "_topic"].contains(c)).collect();
    if !named.is_empty() {
        return Stages::One(format!("its SQL reads {}, which re-keying would change: it reads the topic directly", named.join(", ")));
    }
    if job.exactly_once() {
        // Through the shuffle, whoever reads a partition next skips the records of windows
        // already emitted (see `crate::pipeline::handover`); these cannot be told apart.
        let alone = "so one instance of it runs at a time (its transactional id fences any other)";
        if job.alerts.is_some() {
            return Stages::One(format!("exactly-once alerting: its state (alert lifecycle, SLO rings, timers) does not move with a partition, {alone}"));
        }
        if matches!(job.window, crate::job::WindowConfig::Session { .. }) {
            return Stages::One(format!("exactly-once over session windows: a partition read again cannot tell which of its sessions were emitted, {alone}"));
        }
    }
    let inputs: Vec<&str> = job.columns.iter().map(|c| c.name.as_str()).collect();
    let state = match job.kind.state_key() {
        Some(key) => Grouping::Keys(key.into_iter().filter(|k| inputs.contains(&k.as_str())).collect()),
        None => Grouping::RowWise,
    };
    let grouping = query.grouping().and(state);
    if grouping.covered_by(&job.source_key) {
        return Stages::One(match &grouping {
            Grouping::RowWise => "each record's output is its own: processes may split the topic anyhow".into(),
            Grouping::Keys(k) => format!("the topic is keyed by [{}] ([source] key), which holds each group [{}] in one partition", job.source_key.join(", "), k.join(", ")),
        });
    }
    match grouping {
        Grouping::Keys(key) => Stages::Two { key },
        Grouping::RowWise => unreachable!("row-wise is always covered"),
    }
}

impl std::fmt::Display for Stages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stages::One(why) => write!(f, "one stage: {why}"),
            Stages::Two { key } if key.is_empty() => write!(
                f,
                "two stages: every record meets in one process (the grouping has no plain input column), through the internal topic's partition 0"
            ),
            Stages::Two { key } => write!(
                f,
                "two stages: the topic is not keyed by [{}] (declare [source] key if it is), so records are re-keyed by it through an internal topic",
                key.join(", ")
            ),
        }
    }
}

/// Per source partition this process forwards: its name and how many records behind its log
/// end the first stage is.
pub type SourceLag = Arc<Mutex<Vec<(String, i64)>>>;

/// The first stage of a two-stage live run, on a thread of its own. It sets the run's stop
/// flag if it fails, so the pipeline (the second stage) ends too; then [`FirstStage::finish`].
pub struct FirstStage {
    thread: std::thread::JoinHandle<anyhow::Result<Forwarded>>,
    stop: Arc<AtomicBool>,
    /// The job's lag as its users mean it: on the job's own topic. The internal topic's never
    /// reads 0 (each transaction's commit marker takes an offset).
    pub lag: SourceLag,
    /// Sending pane partials, it judges lateness: the late records it routed so far, and where.
    pub late: Option<(Arc<std::sync::atomic::AtomicU64>, String)>,
}

impl FirstStage {
    /// Stop the first stage (the second has ended) and wait for it to commit what it forwarded.
    pub fn finish(self) -> anyhow::Result<Forwarded> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the shuffle's first stage panicked")))
    }
}

/// A live run's source: the job's own (one stage), or the internal topic with the first stage
/// beside it (two stages).
pub struct LiveSource {
    pub source: Box<dyn crate::source::Source>,
    pub first_stage: Option<FirstStage>,
    pub stages: Stages,
    /// Two stages through pane partials: the job the second stage runs over them.
    pub second_stage: Option<Job>,
}

impl LiveSource {
    /// The cluster `job`'s outputs write to. Exactly-once through two stages: this process's
    /// second stage has a transactional id of its own, as its first stage has, where one stage
    /// has the job's (see `crate::pipeline::prepare_cluster`).
    pub fn outputs_cluster(&self, job: &Job, cluster: Option<crate::kafka::Cluster>) -> Option<crate::kafka::Cluster> {
        let mut cluster = cluster?;
        if self.first_stage.is_some() && job.exactly_once() {
            cluster.transactional_id = Some(transactional_id(&job.name, "out"));
            cluster.properties.push(("transaction.timeout.ms".into(), TRANSACTION_TIMEOUT_MS.into()));
        }
        Some(cluster)
    }

    /// The job as the pipeline over [`LiveSource::source`] runs it. Two stages: dead letters
    /// were found and routed by the first; the second reads only records that decoded
    /// (anything it could not decode would show on stderr).
    pub fn pipeline_job(&self, job: &Job) -> Job {
        if let Some(second) = &self.second_stage {
            return second.clone();
        }
        let mut job = job.clone();
        if self.first_stage.is_some() {
            job.dead_letter = crate::job::RouteConfig::Stderr;
        }
        job
    }
}

/// Open a live run's source for `job` (see [`stages`]). A topic of one partition is read in one
/// stage whatever its key. `from` (a fresh start at a time or offsets) applies to the first
/// stage's source; the second stage then starts at its group's commit.
pub fn open_live(
    job: &Job,
    query: &JobQuery,
    cluster: Option<&crate::kafka::Cluster>,
    from: Option<&crate::source::kafka::Position>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<LiveSource> {
    let stages = stages(job, query);
    let (Stages::Two { key }, Some(cluster), SourceConfig::Kafka(k)) = (&stages, cluster, &job.source) else {
        let source = crate::source::open_live(&job.source, &job.job_ref(), cluster)?;
        return Ok(LiveSource { source, first_stage: None, stages, second_stage: None });
    };
    use crate::source::Source;
    let mut source = crate::source::kafka::KafkaSource::open(cluster, &k.topic, crate::source::kafka::Start::Group { group: k.group.clone() })?;
    let partitions = source.partitions().len();
    if partitions < 2 {
        let stages = Stages::One(format!("the topic `{}` has one partition: one process reads it all", k.topic));
        return Ok(LiveSource { source: Box::new(source), first_stage: None, stages, second_stage: None });
    }
    if let Some(from) = from {
        let positions = source.positions_at(from).with_context(|| format!("job `{}`: --from", job.name))?;
        crate::log_info!("{}: starting fresh at {positions:?} (per partition of the source, in the shuffle's first stage)", job.name);
        source.resume_at(&positions);
    }
    let internal = topic(&job.name);
    cluster.ensure_topics(&[(internal.as_str(), partitions as i32)])?;
    let lag = SourceLag::default();
    let partials = match partials::Partials::plan(job, key) {
        Ok(p) => Some(p),
        Err(why) => {
            crate::log_info!("{}: the first stage forwards each record: {why}", job.name);
            None
        }
    };
    let second_stage = partials.as_ref().map(|p| p.second_stage().clone());
    let forwarder = Forwarder::new(job, key, cluster, source, &internal, partitions, lag.clone(), partials)?;
    let late = forwarder.late_counter();
    let second = crate::source::kafka::KafkaSource::open_second_stage(cluster, &internal, &group(&job.name), &k.topic, partitions, job.event_time.watermark_delay)?;
    let name = job.name.clone();
    let on_failure = stop.clone();
    let thread = std::thread::Builder::new().name("shuffle".into()).spawn(move || {
        let result = forwarder.run(on_failure.clone());
        if let Err(e) = &result {
            crate::log_error!("job `{name}`: the shuffle's first stage failed: {e:#}");
            on_failure.store(true, Ordering::Relaxed);
        }
        result
    })?;
    Ok(LiveSource { source: Box::new(second), first_stage: Some(FirstStage { thread, stop, lag, late }), stages, second_stage })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bundled Kafka job, its topic not declared keyed, its sink exactly-once, with
    /// `window` in place of its own.
    fn exactly_once_job(window: &str) -> (Job, JobQuery) {
        let text = include_str!("../../jobs/kafka/http_red.toml").replace("key = [\"service\"]", "").replace("kind = \"tumbling\"\nsize = \"1m\"", window);
        let job = crate::job::parse(std::path::Path::new("jobs/kafka/http_red.toml"), &format!("{text}delivery = \"exactly-once\"\n")).unwrap();
        assert!(job.exactly_once());
        let query = crate::plan::plan(&job).unwrap();
        (job, query)
    }

    /// An exactly-once query job scales out like any other (each process's stages have
    /// transactional ids of their own); over session windows it runs one instance, and says why.
    #[test]
    fn exactly_once_runs_in_two_stages_but_over_sessions() {
        let (job, query) = exactly_once_job("kind = \"tumbling\"\nsize = \"1m\"");
        assert_eq!(stages(&job, &query), Stages::Two { key: vec!["service".to_string()] });
        let (job, query) = exactly_once_job("kind = \"session\"\ngap = \"1m\"\nkey = [\"service\"]");
        let Stages::One(why) = stages(&job, &query) else { panic!("sessions run in one stage") };
        assert!(why.contains("exactly-once over session windows") && why.contains("one instance"), "{why}");
    }
}
