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
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut job = super::load_job(&args.job)?;
    let (sink_output, rows) = args.outputs.apply(&mut job)?;
    let cluster = super::cluster(&job, args.brokers.as_deref());
    let inputs = match &job.source {
        SourceConfig::File { pattern, .. } => Some(pattern.as_str()),
        _ => None,
    };
    super::check_destinations(&job, inputs, sink_output.as_deref(), rows.as_deref())?;
    let source = osprey::source::open_live(&job, cluster.as_ref())?;
    let sink = osprey::sink::build(&job, sink_output.as_deref().or(rows.as_deref()), cluster.as_ref())?;
    let stop = super::stop_on_signal();
    let options = Options { flush_on_stop: args.flush_on_stop, cluster, ..Options::live(stop) };
    osprey::log_info!("{}: running; Ctrl-C stops", job.name);
    let summary = Pipeline::new(job.clone(), source, sink, options)?.run()?;
    super::report(&job, &summary, false);
    Ok(ExitCode::SUCCESS)
}
