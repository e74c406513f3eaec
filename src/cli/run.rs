use std::path::PathBuf;
use std::process::ExitCode;

use osprey::job::SourceConfig;
use osprey::pipeline::{Options, Pipeline};

#[derive(clap::Args)]
pub struct Args {
    /// The job file.
    pub job: PathBuf,
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
    let mut job = super::load_job(&args.job)?;
    let (sink_output, rows) = args.outputs.apply(&mut job)?;
    let mut cluster = super::cluster(&job, args.brokers.as_deref());
    if let Some(c) = &mut cluster {
        osprey::pipeline::prepare_cluster(&job, c);
    }
    let inputs = match &job.source {
        SourceConfig::File { pattern, .. } => Some(pattern.as_str()),
        _ => None,
    };
    super::check_destinations(&job, inputs, sink_output.as_deref(), rows.as_deref())?;
    let stop = super::stop_on_signal();
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
    let source = live.source;
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
    let state = args.state_dir.map(|dir| osprey::pipeline::StateOptions { dir, interval: args.checkpoint_interval, fresh: args.fresh, from });
    let options = Options { flush_on_stop: args.flush_on_stop, cluster, state, shuffled, ..Options::live(stop.clone()) };
    osprey::log_info!("{}: running; Ctrl-C stops", job.name);
    // Two stages: dead letters are found, and routed, by the first; the second reads only
    // records that decoded (anything it could not decode would show on stderr).
    let mut second = job.clone();
    if shuffled {
        second.dead_letter = osprey::job::RouteConfig::Stderr;
    }
    let summary = Pipeline::new(second, source, sink, options).and_then(|p| p.run());
    // The first stage stops with the second, and commits what it forwarded.
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let forwarded = live.first_stage.map(|t| t.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the shuffle's first stage panicked"))));
    let summary = summary?;
    if let Some(forwarded) = forwarded {
        let f = forwarded?;
        osprey::log_info!(
            "{}: shuffle: {} records and {} clock markers forwarded in {} transactions, {} dead letters; {:.1}s reading, {:.1}s writing, {:.1}s committing",
            job.name,
            f.records,
            f.markers,
            f.transactions,
            f.dead_letters,
            f.reading.as_secs_f64(),
            f.writing.as_secs_f64(),
            f.committing.as_secs_f64()
        );
    }
    super::report(&job, &summary, false);
    Ok(ExitCode::SUCCESS)
}
