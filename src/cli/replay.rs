use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use osprey::job::{FileFormat, SourceConfig};
use osprey::pipeline::{Options, Pipeline};
use osprey::source::file::FileSource;
use osprey::source::kafka::{KafkaSource, Position, Start};
use osprey::source::Source;

#[derive(clap::Args)]
pub struct Args {
    /// The job file.
    pub job: PathBuf,
    /// Files to replay: a path or a quoted glob ('archive/*.jsonl'); JSON lines, or Parquet by extension.
    /// Defaults to the job's own source.
    #[arg(long, short)]
    pub input: Option<String>,
    /// Replay the job's Kafka topic from this cluster (HOST:PORT,...); also OSPREY_BROKERS, or [source] brokers.
    #[arg(long)]
    pub brokers: Option<String>,
    /// Kafka: start at the first message at or after this time (RFC 3339). Default: the beginning.
    #[arg(long, conflicts_with = "from_offsets")]
    pub from: Option<String>,
    /// Kafka: stop before the first message at or after this time (RFC 3339). Default: the end at start.
    #[arg(long, conflicts_with = "to_offsets")]
    pub to: Option<String>,
    /// Kafka: start offsets, PARTITION:OFFSET,... (unlisted partitions start at the beginning).
    #[arg(long)]
    pub from_offsets: Option<String>,
    /// Kafka: end offsets (exclusive), PARTITION:OFFSET,... (unlisted partitions end at the end).
    #[arg(long)]
    pub to_offsets: Option<String>,
    #[command(flatten)]
    pub outputs: super::Outputs,
    /// No progress bar and no throughput line (what did not decode or was late is still said).
    #[arg(long, short)]
    pub quiet: bool,
    /// Exit with status 3 when more than this fraction of the records did not decode (a gzip
    /// archive, a wrong file): the output is still written. 1 never fails.
    #[arg(long, default_value_t = 0.5, value_parser = super::fraction)]
    pub max_dead_letter_ratio: f64,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut job = super::load_job(&args.job)?;
    let (sink_output, rows) = args.outputs.apply(&mut job)?;
    let cluster = super::cluster(&job, args.brokers.as_deref());
    let inputs = match (&args.input, &job.source) {
        (Some(input), _) => Some(input.clone()),
        (None, SourceConfig::File { pattern, .. }) => Some(pattern.clone()),
        _ => None,
    };
    super::check_destinations(&job, inputs.as_deref(), sink_output.as_deref(), rows.as_deref())?;
    let source: Box<dyn Source> = match (&args.input, &job.source) {
        (Some(input), _) => Box::new(open_files(&job.name, input, FileFormat::Auto)?),
        (None, SourceConfig::File { pattern, format }) => Box::new(open_files(&job.name, pattern, *format)?),
        (None, SourceConfig::Kafka(k)) => {
            let Some(cluster) = &cluster else {
                bail!("job `{}` reads Kafka: pass --brokers HOST:PORT (or set OSPREY_BROKERS), or --input FILES", job.name);
            };
            let from = position(args.from.as_deref(), args.from_offsets.as_deref())?;
            let to = position(args.to.as_deref(), args.to_offsets.as_deref())?;
            Box::new(KafkaSource::open(cluster, &k.topic, Start::Range { from, to })?)
        }
        (None, SourceConfig::Generator(_)) => bail!(
            "job `{}` ({}) reads the generator; pass --input 'archive/*.jsonl' to replay files",
            job.name,
            args.job.display()
        ),
    };
    let sink = osprey::sink::build(&job, sink_output.as_deref().or(rows.as_deref()), cluster.as_ref())?;
    let options = Options { progress: !args.quiet && !osprey::log::json(), cluster, ..Options::replay() };
    let summary = Pipeline::new(job.clone(), source, sink, options)?.run()?;
    super::report(&job, &summary, args.quiet);
    let c = &summary.counters;
    if c.records_in > 0 && c.decode_errors as f64 > args.max_dead_letter_ratio * c.records_in as f64 {
        osprey::log_error!(
            "{}: {} of {} records ({:.0}%) did not decode, more than --max-dead-letter-ratio {}: is the input the right file, \
             uncompressed JSON lines or Parquet? (exit status 3)",
            job.name,
            c.decode_errors,
            c.records_in,
            100.0 * c.decode_errors as f64 / c.records_in as f64,
            args.max_dead_letter_ratio
        );
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}

fn open_files(job: &str, pattern: &str, format: FileFormat) -> anyhow::Result<FileSource> {
    FileSource::open(pattern, format).map_err(|e| anyhow::anyhow!("job `{job}`: {e:#}"))
}

pub(super) fn position(time: Option<&str>, offsets: Option<&str>) -> anyhow::Result<Position> {
    if let Some(t) = time {
        return osprey::job::parse_instant(t).map(Position::Time).map_err(|e| anyhow::anyhow!(e));
    }
    let Some(list) = offsets else { return Ok(Position::Edge) };
    let mut out = Vec::new();
    for item in list.split(',').filter(|s| !s.trim().is_empty()) {
        let (p, o) = item
            .split_once(':')
            .with_context(|| format!("bad offset `{item}`: write PARTITION:OFFSET, for example 0:1200,1:950"))?;
        let p: i32 = p.trim().parse().with_context(|| format!("bad partition in `{item}`"))?;
        let o: i64 = o.trim().parse().with_context(|| format!("bad offset in `{item}`"))?;
        out.push((p, o));
    }
    Ok(Position::Offsets(out))
}
