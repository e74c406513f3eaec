//! One module per subcommand.

pub mod alerts;
pub mod demo;
pub mod eval;
pub mod explain;
pub mod generate;
pub mod replay;
pub mod run;
pub mod serve;
pub mod slo;
pub mod validate;

use std::path::Path;

use anyhow::Context;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use osprey::job::Job;
use osprey::pipeline::Summary;

/// Load and validate a job, turning its error into the message users see.
pub fn load_job(path: &Path) -> anyhow::Result<Job> {
    osprey::plan::validate(path).map_err(|e| anyhow::anyhow!("{e}\n(the job was not started)"))
}

/// The Kafka cluster: `--brokers`, else OSPREY_BROKERS, else the job's `[source] brokers`.
pub fn cluster(job: &Job, flag: Option<&str>) -> Option<osprey::kafka::Cluster> {
    let from_job = match &job.source {
        osprey::job::SourceConfig::Kafka(k) => k.brokers.clone(),
        _ => None,
    };
    let brokers = flag.map(str::to_string).or_else(|| std::env::var("OSPREY_BROKERS").ok().filter(|b| !b.is_empty())).or(from_job)?;
    let mut cluster = osprey::kafka::Cluster::new(brokers);
    if let osprey::job::SourceConfig::Kafka(k) = &job.source {
        cluster.properties = k.properties.clone();
    }
    Some(cluster)
}

/// Refuses a run whose output, dead-letter or late file is one of its input files, or two of
/// whose destinations are one file: writing would destroy the input (or mix two streams).
/// `output` replaces the job's file sink when given.
pub fn check_destinations(job: &Job, inputs: Option<&str>, output: Option<&Path>, rows: Option<&Path>) -> anyhow::Result<()> {
    use osprey::job::{RouteConfig, SinkConfig};
    let mut destinations: Vec<(&str, std::path::PathBuf)> = Vec::new();
    match (output, &job.sink, &job.alerts) {
        (Some(p), _, _) => destinations.push(("output", p.to_path_buf())),
        (None, SinkConfig::File { path }, None) => destinations.push(("[sink] file", path.clone())),
        _ => {}
    }
    if let Some(p) = rows {
        destinations.push(("rows file", p.to_path_buf()));
    }
    if let Some(a) = &job.alerts {
        if let Some(p) = &a.file {
            destinations.push(("alert file", p.clone()));
        }
        if let Some(p) = &a.notifications {
            destinations.push(("notifications file", p.clone()));
        }
    }
    if let RouteConfig::File(p) = &job.dead_letter {
        destinations.push(("dead-letter file", p.clone()));
    }
    if let RouteConfig::File(p) = &job.late {
        destinations.push(("late-record file", p.clone()));
    }
    let inputs = match inputs {
        Some(pattern) => osprey::source::file::expand(pattern).unwrap_or_default(),
        None => Vec::new(),
    };
    let inputs: Vec<std::path::PathBuf> = inputs.iter().filter_map(|p| std::fs::canonicalize(p).ok()).collect();
    let mut seen: Vec<(&str, std::path::PathBuf)> = Vec::new();
    for (what, path) in destinations {
        let resolved = resolve(&path);
        if inputs.contains(&resolved) {
            anyhow::bail!(
                "job `{}`: the {what} {} is also an input file; writing it would destroy the input. Choose another path.",
                job.name,
                path.display()
            );
        }
        if let Some((other, _)) = seen.iter().find(|(_, p)| *p == resolved) {
            anyhow::bail!("job `{}`: the {what} and the {other} are the same file, {}; give each its own path.", job.name, path.display());
        }
        seen.push((what, resolved));
    }
    Ok(())
}

/// Where `replay` and `run` write, when the command line overrides the job file.
#[derive(clap::Args)]
pub struct Outputs {
    /// Write result rows here as JSON lines instead of the job's sink; for an alerting job
    /// (slo, invariant, anomaly), its alert records instead of its [alerts] destinations.
    #[arg(long, short)]
    pub output: Option<std::path::PathBuf>,
    /// An alerting job's evaluated rows (the SQL's result per window), as JSON lines.
    #[arg(long)]
    pub rows: Option<std::path::PathBuf>,
    /// Write dead letters here (JSON lines) instead of the job's [dead_letter].
    #[arg(long)]
    pub dead_letters: Option<std::path::PathBuf>,
    /// Write late records here (JSON lines) instead of the job's [late].
    #[arg(long)]
    pub late: Option<std::path::PathBuf>,
    /// Several jobs: each job's output (as --output) in DIR/<job>.jsonl.
    #[arg(long = "output-dir", value_name = "DIR", conflicts_with = "output")]
    pub dir: Option<std::path::PathBuf>,
}

impl Outputs {
    /// Point the job's routes and alert destinations at these files; returns (the query
    /// sink's output, the rows file).
    pub fn apply(&self, job: &mut Job) -> anyhow::Result<(Option<std::path::PathBuf>, Option<std::path::PathBuf>)> {
        if let Some(p) = &self.dead_letters {
            job.dead_letter = osprey::job::RouteConfig::File(p.clone());
        }
        if let Some(p) = &self.late {
            job.late = osprey::job::RouteConfig::File(p.clone());
        }
        alert_outputs(job, self.output.as_deref(), self.rows.as_deref())
    }
}

/// A job with its `--output` and `--rows` files.
pub type Loaded = (Job, (Option<std::path::PathBuf>, Option<std::path::PathBuf>));

/// Load several jobs, each with its outputs: `--output-dir` gives each its own file; the
/// one-file flags are refused, as the jobs would write over each other. Each job's
/// destinations are checked against its input files (`input`, else its own).
pub fn load_jobs(paths: &[std::path::PathBuf], outputs: &Outputs, input: Option<&str>) -> anyhow::Result<Vec<Loaded>> {
    if paths.len() > 1 {
        for (flag, given) in [("--output", outputs.output.is_some()), ("--rows", outputs.rows.is_some()), ("--dead-letters", outputs.dead_letters.is_some()), ("--late", outputs.late.is_some())] {
            anyhow::ensure!(
                !given,
                "{flag} names one file, and {} jobs would write over each other in it: use --output-dir DIR (each job's output in DIR/<job>.jsonl), or the destinations in the job files",
                paths.len()
            );
        }
    }
    if let Some(dir) = &outputs.dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create --output-dir {}", dir.display()))?;
    }
    let mut jobs: Vec<Loaded> = Vec::new();
    for path in paths {
        let mut job = load_job(path)?;
        if let Some((other, _)) = jobs.iter().find(|(j, _)| j.name == job.name) {
            anyhow::bail!("two jobs are named `{}` ({} and {}); a job's name keys its state, group and outputs: rename one", job.name, other.path.display(), path.display());
        }
        let outs = match &outputs.dir {
            Some(dir) => {
                let file = dir.join(format!("{}.jsonl", job.name));
                let routes = Outputs { output: None, rows: None, dir: None, dead_letters: outputs.dead_letters.clone(), late: outputs.late.clone() };
                routes.apply(&mut job)?;
                alert_outputs(&mut job, Some(&file), outputs.rows.as_deref())?
            }
            None => outputs.apply(&mut job)?,
        };
        let own = match &job.source {
            osprey::job::SourceConfig::File { pattern, .. } => Some(pattern.as_str()),
            _ => None,
        };
        check_destinations(&job, input.or(own), outs.0.as_deref(), outs.1.as_deref())?;
        jobs.push((job, outs));
    }
    Ok(jobs)
}

/// For an alerting job, `--output` takes the place of its alert destinations and `--rows`
/// gets its evaluated rows: returns (the query sink's `--output`, the rows file).
pub fn alert_outputs(
    job: &mut Job,
    output: Option<&Path>,
    rows: Option<&Path>,
) -> anyhow::Result<(Option<std::path::PathBuf>, Option<std::path::PathBuf>)> {
    match &mut job.alerts {
        Some(alerts) => {
            if let Some(p) = output {
                alerts.only_file(p.to_path_buf());
            }
            Ok((None, rows.map(Path::to_path_buf)))
        }
        None if rows.is_some() => anyhow::bail!(
            "job `{}` is a query job: its rows are its output (--output); --rows is for alerting jobs",
            job.name
        ),
        None => Ok((output.map(Path::to_path_buf), None)),
    }
}

/// An absolute path with links resolved, for a file that may not exist yet.
fn resolve(path: &Path) -> std::path::PathBuf {
    if let Ok(p) = std::fs::canonicalize(path) {
        return p;
    }
    let parent = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    match (std::fs::canonicalize(parent), path.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => std::env::current_dir().map(|d| d.join(path)).unwrap_or_else(|_| path.to_path_buf()),
    }
}

/// A command-line fraction, 0 to 1.
pub fn fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("`{text}` is not a fraction between 0 and 1")),
    }
}

/// A generator rate: events per second of event time.
pub fn rate(text: &str) -> Result<f64, String> {
    let max = osprey::source::generator::MAX_RATE;
    match text.parse::<f64>() {
        Ok(r) if r > 0.0 && r <= max => Ok(r),
        _ => Err(format!("`{text}` is not a rate above 0 and at most {max} events per second")),
    }
}

/// A speed-up of event time: above 0.
pub fn speed(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s.is_finite() => Ok(s),
        _ => Err(format!("`{text}` is not a speed above 0 (1 is real time, 60 a minute a second)")),
    }
}

/// A duration above zero (humantime: "30s", "2m").
pub fn positive_duration(text: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("the duration must be above zero".into()),
        Err(e) => Err(format!("`{text}` is not a duration ({e}); write one such as 30s or 2m")),
    }
}

/// A flag set by Ctrl-C or SIGTERM.
pub fn stop_on_signal() -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        rt.block_on(async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
        flag.store(true, Ordering::Relaxed);
    });
    stop
}

/// The closing lines of a run, on stderr. `quiet` drops the throughput line, never what was
/// lost or set aside.
pub fn report(job: &Job, s: &Summary, quiet: bool) {
    let c = &s.counters;
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    let decoded = c.records_in.saturating_sub(c.decode_errors);
    if decoded > 0 && !s.never_present.is_empty() {
        let list = s.never_present.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
        osprey::log_warn!(
            "{}: warning: declared column{} {list} {} absent or null in all {decoded} decoded records; \
             does [source.schema] in {} match this input?",
            job.name,
            if s.never_present.len() == 1 { "" } else { "s" },
            if s.never_present.len() == 1 { "was" } else { "were" },
            job.path.display()
        );
    }
    if quiet {
        report_losses(job, s);
        return;
    }
    osprey::log_info!(
        "{}: {} in {:.2}s ({:.0}/s); {} closed, {}, {} out",
        job.name,
        plural(c.records_in, "record"),
        secs,
        c.records_in as f64 / secs,
        plural(c.windows_closed, "window"),
        plural(c.window_updates, "update"),
        plural(c.rows_out, "row")
    );
    report_losses(job, s);
    if let Some((a, to)) = &s.alerts {
        osprey::log_info!(
            "{}: {} fired, {} resolved (to {to}); {} repeats deduplicated, {} suppressed by inhibition, {} folded into {}, {} from {} transitions",
            job.name,
            plural(a.fired, "alert"),
            a.resolved,
            a.deduplicated,
            a.suppressed,
            a.folded,
            plural(a.storms, "storm alert"),
            plural(a.notifications, "notification"),
            a.grouped
        );
    }
    if !s.evaluator.is_empty() {
        let parts: Vec<String> = s.evaluator.iter().map(|(k, v)| format!("{} {v}", k.replace('_', " "))).collect();
        osprey::log_info!("{}: {}", job.name, parts.join(", "));
    }
    if s.stopped {
        if s.flushed_on_stop {
            osprey::log_warn!("{}: stopped; open windows were emitted with the rows they had (marked \"_incomplete\")", job.name);
        } else if s.open_windows_at_stop > 0 {
            osprey::log_warn!(
                "{}: stopped; {} ({}) not complete, discarded (--flush-on-stop emits them instead)",
                job.name,
                plural(s.open_windows_at_stop as u64, "open window"),
                plural(s.rows_in_open_windows as u64, "row")
            );
        } else {
            osprey::log_info!("{}: stopped; no window was open", job.name);
        }
    }
}

/// "1 window", "2 windows".
pub fn plural(n: u64, word: &str) -> String {
    if n == 1 { format!("1 {word}") } else { format!("{n} {word}s") }
}

/// Dead letters and late records: always said, even with `--quiet`.
fn report_losses(job: &Job, s: &Summary) {
    let c = &s.counters;
    if c.decode_errors > 0 {
        osprey::log_warn!("{}: {} did not decode; they are in {}", job.name, plural(c.decode_errors, "record"), s.dead_letters_to);
    }
    if c.late_records > 0 {
        osprey::log_warn!(
            "{}: {} late; {} in {}",
            job.name,
            if c.late_records == 1 { "1 record was".to_string() } else { format!("{} records were", c.late_records) },
            if c.late_records == 1 { "it is" } else { "they are" },
            s.late_to
        );
    }
}
