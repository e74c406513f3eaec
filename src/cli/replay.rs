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
    /// The job files. Jobs over one source read and decode it once (see `osprey run`).
    #[arg(required = true, value_name = "JOB")]
    pub jobs: Vec<PathBuf>,
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
    if args.jobs.len() > 1 || args.outputs.dir.is_some() {
        return run_many(args);
    }
    let mut job = super::load_job(&args.jobs[0])?;
    let (sink_output, rows) = args.outputs.apply(&mut job)?;
    let cluster = super::cluster(&job, args.brokers.as_deref());
    let inputs = match (&args.input, &job.source) {
        (Some(input), _) => Some(input.clone()),
        (None, SourceConfig::File { pattern, .. }) => Some(pattern.clone()),
        _ => None,
    };
    super::check_destinations(&job, inputs.as_deref(), sink_output.as_deref(), rows.as_deref())?;
    let source = open_source(&args, &job, cluster.as_ref())?;
    let sink = osprey::sink::build(&job, sink_output.as_deref().or(rows.as_deref()), cluster.as_ref())?;
    let options = Options { progress: !args.quiet && !osprey::log::json(), cluster, ..Options::replay() };
    let summary = Pipeline::new(job.clone(), source, sink, options)?.run()?;
    Ok(judge(&args, &job, &summary))
}

/// Several jobs: those over one source read it together (`osprey::fleet`), each share on a
/// thread of its own.
fn run_many(args: Args) -> anyhow::Result<ExitCode> {
    let args = std::sync::Arc::new(args);
    let jobs = super::load_jobs(&args.jobs, &args.outputs, args.input.as_deref())?;
    let mut list: Vec<osprey::job::Job> = jobs.iter().map(|(j, _)| j.clone()).collect();
    if let Some(input) = &args.input {
        // `--input` is every job's source.
        list.iter_mut().for_each(|j| j.source = SourceConfig::File { pattern: input.clone(), format: FileFormat::Auto });
    }
    let (shares, alone) = osprey::fleet::plan(&list, |_| None);
    let mut groups: Vec<Vec<usize>> = shares.into_iter().map(|s| s.jobs).collect();
    for a in alone {
        osprey::log_info!("{}: reads its source on its own: {}", list[a.job].name, a.reason);
        groups.push(vec![a.job]);
    }
    let quiet = args.quiet || osprey::log::json();
    let jobs = std::sync::Arc::new(jobs);
    let threads: Vec<_> = groups
        .into_iter()
        .map(|group| {
            let (args, jobs) = (args.clone(), jobs.clone());
            std::thread::spawn(move || -> Vec<(usize, anyhow::Result<osprey::pipeline::Summary>)> {
                let first = &jobs[group[0]].0;
                if group.len() > 1 {
                    let names: Vec<&str> = group.iter().map(|&i| jobs[i].0.name.as_str()).collect();
                    osprey::log_info!("{}: one read and one decode of their source", names.join(", "));
                }
                let cluster = super::cluster(first, args.brokers.as_deref());
                let source = match open_source(&args, first, cluster.as_ref()) {
                    Ok(s) => s,
                    Err(e) => {
                        let message = format!("{e:#}");
                        return group.iter().map(|&i| (i, Err(anyhow::anyhow!("{message}")))).collect();
                    }
                };
                let members = group
                    .iter()
                    .map(|&i| {
                        let (job, (output, rows)) = jobs[i].clone();
                        let brokers = args.brokers.clone();
                        osprey::fleet::Member {
                            job,
                            build: Box::new(move |job: &osprey::job::Job| {
                                let cluster = super::cluster(job, brokers.as_deref());
                                let sink = osprey::sink::build(job, output.as_deref().or(rows.as_deref()), cluster.as_ref())?;
                                Ok((sink, Options { cluster, ..Options::replay() }))
                            }),
                            ended: None,
                        }
                    })
                    .collect();
                let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                group.iter().copied().zip(osprey::fleet::run(source, members, stop, !quiet, false)).collect()
            })
        })
        .collect();
    let mut results: Vec<(usize, anyhow::Result<osprey::pipeline::Summary>)> =
        threads.into_iter().flat_map(|t| t.join().expect("a share's thread does not panic")).collect();
    results.sort_by_key(|(i, _)| *i);
    let mut code = ExitCode::SUCCESS;
    let mut failed = 0;
    for (i, result) in results {
        let job = &jobs[i].0;
        match result {
            Ok(summary) => {
                if judge(&args, job, &summary) != ExitCode::SUCCESS {
                    code = ExitCode::from(3);
                }
            }
            Err(e) => {
                osprey::log_error!("error: job `{}` ({}): {e:#}", job.name, job.path.display());
                failed += 1;
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} jobs failed (above); the others finished", jobs.len());
    }
    Ok(code)
}

/// The source a replay of `job` reads: `--input`, the job's files, or a range of its topic.
fn open_source(args: &Args, job: &osprey::job::Job, cluster: Option<&osprey::kafka::Cluster>) -> anyhow::Result<Box<dyn Source>> {
    Ok(match (&args.input, &job.source) {
        (Some(input), _) => Box::new(open_files(&job.name, input, FileFormat::Auto)?),
        (None, SourceConfig::File { pattern, format }) => Box::new(open_files(&job.name, pattern, *format)?),
        (None, SourceConfig::Kafka(k)) => {
            let Some(cluster) = cluster else {
                bail!("job `{}` reads Kafka: pass --brokers HOST:PORT (or set OSPREY_BROKERS), or --input FILES", job.name);
            };
            let from = position(args.from.as_deref(), args.from_offsets.as_deref())?;
            let to = position(args.to.as_deref(), args.to_offsets.as_deref())?;
            Box::new(KafkaSource::open(cluster, &k.topic, Start::Range { from, to })?)
        }
        (None, SourceConfig::Generator(_)) => bail!(
            "job `{}` ({}) reads the generator; pass --input 'archive/*.jsonl' to replay files",
            job.name,
            job.path.display()
        ),
    })
}

/// Report a job's replay; exit status 3 when too many of its records did not decode.
fn judge(args: &Args, job: &osprey::job::Job, summary: &osprey::pipeline::Summary) -> ExitCode {
    super::report(job, summary, args.quiet);
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
        return ExitCode::from(3);
    }
    ExitCode::SUCCESS
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
