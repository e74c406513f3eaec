use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use osprey::job::{FileFormat, SourceConfig};
use osprey::pipeline::{Options, Pipeline};
use osprey::source::file::FileSource;

#[derive(clap::Args)]
pub struct Args {
    /// The job file.
    pub job: PathBuf,
    /// Files to replay: a path or a quoted glob ('archive/*.jsonl'); JSON lines, or Parquet by extension.
    /// Defaults to the job's own file source.
    #[arg(long, short)]
    pub input: Option<String>,
    /// Write result rows here as JSON lines instead of the job's sink.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Write dead letters here (JSON lines) instead of the job's [dead_letter].
    #[arg(long)]
    pub dead_letters: Option<PathBuf>,
    /// Write late records here (JSON lines) instead of the job's [late].
    #[arg(long)]
    pub late: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut job = super::load_job(&args.job)?;
    let (pattern, format) = match (&args.input, &job.source) {
        (Some(input), _) => (input.clone(), FileFormat::Auto),
        (None, SourceConfig::File { pattern, format }) => (pattern.clone(), *format),
        (None, _) => bail!(
            "job `{}` ({}) does not read files; pass --input 'archive/*.jsonl' to replay files",
            job.name,
            args.job.display()
        ),
    };
    if let Some(p) = &args.dead_letters {
        job.dead_letter = osprey::job::RouteConfig::File(p.clone());
    }
    if let Some(p) = &args.late {
        job.late = osprey::job::RouteConfig::File(p.clone());
    }
    let source = FileSource::open(&pattern, format).map_err(|e| anyhow::anyhow!("job `{}`: {e:#}", job.name))?;
    let sink = osprey::sink::build(&job, args.output.as_deref())?;
    let options = Options { progress: !args.quiet, ..Options::replay() };
    let summary = Pipeline::new(job.clone(), Box::new(source), sink, options)?.run()?;
    if !args.quiet {
        super::report(&job, &summary);
    }
    Ok(ExitCode::SUCCESS)
}
