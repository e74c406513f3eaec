use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use osprey::job::SourceConfig;
use osprey::pipeline::{Options, Pipeline};
use osprey::source::file::FileSource;
use osprey::source::generator::{GeneratorSource, Pacing};
use osprey::source::Source;

#[derive(clap::Args)]
pub struct Args {
    /// The job file.
    pub job: PathBuf,
    /// Write result rows here as JSON lines instead of the job's sink.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// When stopped, emit open windows with the rows they have instead of discarding them.
    #[arg(long)]
    pub flush_on_stop: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let job = super::load_job(&args.job)?;
    let source: Box<dyn Source> = match &job.source {
        SourceConfig::Generator(g) => Box::new(GeneratorSource::new(g.clone(), Pacing::Live)),
        SourceConfig::File { pattern, format } => Box::new(FileSource::open(pattern, *format)?),
        SourceConfig::Kafka { topic } => bail!(
            "job `{}` ({}) reads the Kafka topic `{topic}`, and Kafka sources are not built yet in this version; \
             use `osprey replay {} --input FILES` on an archive of the topic",
            job.name,
            args.job.display(),
            args.job.display()
        ),
    };
    let sink = osprey::sink::build(&job, args.output.as_deref())?;
    let stop = super::stop_on_signal();
    let options = Options { flush_on_stop: args.flush_on_stop, ..Options::live(stop) };
    eprintln!("{}: running; Ctrl-C stops", job.name);
    let summary = Pipeline::new(job.clone(), source, sink, options)?.run()?;
    super::report(&job, &summary);
    Ok(ExitCode::SUCCESS)
}
