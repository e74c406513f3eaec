use std::path::PathBuf;
use std::process::ExitCode;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use osprey::job::{Job, SourceConfig};
use osprey::pipeline::{Options, Pipeline};

#[derive(clap::Args)]
pub struct Args {
    /// The job files. Jobs over one source read and decode it once, each with its own windows,
    /// state and outputs; a job that runs in two stages or delivers exactly once reads alone.
    #[arg(required = true, value_name = "JOB")]
    pub jobs: Vec<PathBuf>,
    /// Kafka bootstrap servers (HOST:PORT,...); also OSPREY_BROKERS, or [source] brokers.
    #[arg(long)]
    pub brokers: Option<String>,
    #[command(flatten)]
    pub outputs: super::Outputs,
    /// When stopped, emit open windows with the rows they have instead of discarding them.
    #[arg(long)]
    pub flush_on_stop: bool,
    /// Checkpoint the job's whole state and source positions into DIR/<job>/, and continue
    /// from the newest whole checkpoint there at start.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Time between checkpoints (with --state-dir).
    #[arg(long, default_value = "10s", value_parser = super::positive_duration)]
    pub checkpoint_interval: std::time::Duration,
    /// Start without the checkpoints in --state-dir (a changed job whose old state does not fit):
    /// Kafka resumes at the group's committed offsets, files at their start.
    #[arg(long, requires = "state_dir")]
    pub fresh: bool,
    /// With --fresh, Kafka: start at the first message at or after this time (RFC 3339)
    /// instead of the group's committed offsets.
    #[arg(long, requires = "fresh", conflicts_with = "from_offsets")]
    pub from: Option<String>,
    /// With --fresh, Kafka: start at these offsets, PARTITION:OFFSET,... (unlisted partitions
    /// at the beginning).
    #[arg(long, requires = "fresh")]
    pub from_offsets: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let stop = super::stop_on_signal();
    if args.jobs.len() > 1 {
        return run_many(args, stop);
    }
    let (job, (sink_output, rows)) = super::load_jobs(&args.jobs, &args.outputs, None)?.remove(0);
    run_alone(job, sink_output, rows, &args, stop)?;
    Ok(ExitCode::SUCCESS)
}

/// One job on its own source (and, scaled out, its shuffle); its destinations were checked
/// when it was loaded.
fn run_alone(job: Job, sink_output: Option<PathBuf>, rows: Option<PathBuf>, args: &Args, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let mut cluster = super::cluster(&job, args.brokers.as_deref());
    if let Some(c) = &mut cluster {
        osprey::pipeline::prepare_cluster(&job, c);
    }
    let from = match (&args.from, &args.from_offsets) {
        (None, None) => None,
        (t, o) => Some(super::replay::position(t.as_deref(), o.as_deref())?),
    };
    let query = osprey::plan::plan(&job).map_err(|e| anyhow::anyhow!("{e}"))?;
    let live = osprey::shuffle::open_live(&job, &query, cluster.as_ref(), from.as_ref(), stop.clone())?;
    drop(query);
    let shuffled = live.first_stage.is_some();
    if shuffled {
        osprey::log_info!("{}: {}", job.name, live.stages);
    }
    let cluster = live.outputs_cluster(&job, cluster);
    let sink = osprey::sink::build(&job, sink_output.as_deref().or(rows.as_deref()), cluster.as_ref())?;
    if args.state_dir.is_some() && matches!(job.source, SourceConfig::Generator(_)) {
        anyhow::bail!(
            "job `{}` ({}): --state-dir needs a source with positions to resume from (a file or a Kafka topic); the generator has none",
            job.name,
            job.path.display()
        );
    }
    // Two stages: `--from` went to the first stage's source.
    let from = if shuffled { None } else { from };
    let state = args.state_dir.clone().map(|dir| osprey::pipeline::StateOptions { dir, interval: args.checkpoint_interval, fresh: args.fresh, from });
    let options = Options { flush_on_stop: args.flush_on_stop, cluster, state, ..Options::live(stop.clone()) }.over(&live);
    osprey::log_info!("{}: running; Ctrl-C stops", job.name);
    let second = live.pipeline_job(&job);
    let summary = Pipeline::new(second, live.source, sink, options).and_then(|p| p.run());
    // The first stage stops with the second, and commits what it forwarded.
    let forwarded = live.first_stage.map(|first| first.finish());
    let summary = summary?;
    if let Some(forwarded) = forwarded {
        osprey::log_info!("{}: shuffle: {}", job.name, forwarded?);
    }
    super::report(&job, &summary, false);
    Ok(())
}

/// Several jobs: those over one source read it together (`osprey::fleet`); one that runs in
/// two stages, or delivers exactly once (its transactions commit its own group's offsets),
/// runs alone beside them.
fn run_many(args: Args, stop: Arc<AtomicBool>) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.from.is_none() && args.from_offsets.is_none(),
        "--from and --from-offsets start one job fresh at a position: run that job on its own with them"
    );
    let args = Arc::new(args);
    let jobs = super::load_jobs(&args.jobs, &args.outputs, None)?;
    for (job, _) in &jobs {
        if args.state_dir.is_some() && matches!(job.source, SourceConfig::Generator(_)) {
            anyhow::bail!("job `{}` ({}): --state-dir needs a source with positions to resume from (a file or a Kafka topic); the generator has none", job.name, job.path.display());
        }
    }
    let list: Vec<Job> = jobs.iter().map(|(j, _)| j.clone()).collect();
    let (shares, alone) = osprey::fleet::plan(&list, osprey::fleet::reads_alone);
    let jobs = Arc::new(jobs);
    // Each thread: per job of its share (by index), how it ended.
    type Ended = Vec<(usize, anyhow::Result<()>)>;
    let mut threads: Vec<std::thread::JoinHandle<Ended>> = Vec::new();
    for a in alone {
        osprey::log_info!("{}: reads its source on its own: {}", list[a.job].name, a.reason);
        let (args, jobs, stop) = (args.clone(), jobs.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let (job, (output, rows)) = jobs[a.job].clone();
            let result = run_alone(job, output, rows, &args, stop.clone());
            if result.is_err() {
                // One process, one fate: the other jobs stop (and commit) too.
                stop.store(true, Ordering::Relaxed);
            }
            vec![(a.job, result)]
        }));
    }
    for share in shares {
        let (args, jobs, stop) = (args.clone(), jobs.clone(), stop.clone());
        threads.push(std::thread::spawn(move || run_share(&share.jobs, &jobs, &args, stop)));
    }
    let mut results: Vec<(usize, anyhow::Result<()>)> = threads.into_iter().flat_map(|t| t.join().expect("a share's thread does not panic")).collect();
    results.sort_by_key(|(i, _)| *i);
    let mut failed = 0;
    for (i, result) in results {
        if let Err(e) = result {
            let job = &jobs[i].0;
            osprey::log_error!("error: job `{}` ({}): {e:#}", job.name, job.path.display());
            failed += 1;
        }
    }
    anyhow::ensure!(failed == 0, "{failed} of {} jobs failed (above)", jobs.len());
    Ok(ExitCode::SUCCESS)
}

fn run_share(group: &[usize], jobs: &[super::Loaded], args: &Args, stop: Arc<AtomicBool>) -> Vec<(usize, anyhow::Result<()>)> {
    let fail = |e: anyhow::Error| {
        let message = format!("{e:#}");
        group.iter().map(|&i| (i, Err(anyhow::anyhow!("{message}")))).collect()
    };
    let members: Vec<&Job> = group.iter().map(|&i| &jobs[i].0).collect();
    let first = members[0];
    let cluster = super::cluster(first, args.brokers.as_deref());
    let source: Box<dyn osprey::source::Source> = match (&first.source, &cluster) {
        (SourceConfig::Kafka(k), Some(c)) => {
            let group = osprey::fleet::group(&members);
            match osprey::source::kafka::KafkaSource::open(c, &k.topic, osprey::source::kafka::Start::Group { group }) {
                Ok(s) => Box::new(s),
                Err(e) => return fail(e),
            }
        }
        _ => match osprey::source::open_live(&first.source, &first.job_ref(), cluster.as_ref()) {
            Ok(s) => s,
            Err(e) => return fail(e),
        },
    };
    if members.len() > 1 {
        let names: Vec<&str> = members.iter().map(|j| j.name.as_str()).collect();
        osprey::log_info!("{}: one read and one decode of their source; running, Ctrl-C stops", names.join(", "));
    } else {
        osprey::log_info!("{}: running; Ctrl-C stops", first.name);
    }
    let fleet_members = group
        .iter()
        .map(|&i| {
            let (job, (output, rows)) = jobs[i].clone();
            let brokers = args.brokers.clone();
            let (flush_on_stop, stop) = (args.flush_on_stop, stop.clone());
            let state = args.state_dir.clone().map(|dir| osprey::pipeline::StateOptions { dir, interval: args.checkpoint_interval, fresh: args.fresh, from: None });
            osprey::fleet::Member {
                job,
                build: Box::new(move |job: &Job| {
                    let cluster = super::cluster(job, brokers.as_deref());
                    let sink = osprey::sink::build(job, output.as_deref().or(rows.as_deref()), cluster.as_ref())?;
                    Ok((sink, Options { flush_on_stop, cluster, state, ..Options::live(stop) }))
                }),
                ended: None,
            }
        })
        .collect();
    let summaries = osprey::fleet::run(source, fleet_members, stop, false, true);
    group
        .iter()
        .zip(summaries)
        .map(|(&i, s)| {
            (
                i,
                s.map(|summary| {
                    super::report(&jobs[i].0, &summary, false);
                }),
            )
        })
        .collect()
}
