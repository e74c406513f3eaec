//! `osprey explain JOB` (the plan and the output schema) and `osprey describe JOB` (the
//! declared and derived columns): what a job will do, before running it.

use std::path::Path;
use std::process::ExitCode;

use datafusion::arrow::datatypes::Schema;
use osprey::exec::incremental::IncrementalQuery;
use osprey::exec::{JobQuery, WindowQuery};
use osprey::job::{Job, SourceConfig, WindowConfig};

pub fn explain(path: &Path) -> anyhow::Result<ExitCode> {
    let job = super::load_job(path)?;
    let query = WindowQuery::plan(&job.dataflow()).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("job `{}` ({}), per {}:", job.name, kind_title(&job), window(&job.window));
    println!("\nplan (optimised once, run on each window's rows):\n{}", query.explain());
    println!("\noutput columns:");
    print_schema(&query.output_schema());
    if job.kind.raises_alerts() {
        println!("\neach window's rows are evaluated into alerts (see `osprey describe`)");
    } else {
        println!("\nrows go to {}", sink(&job));
    }
    let planned = osprey::plan::plan(&job).map_err(|e| anyhow::anyhow!("{e}"))?;
    let close = match &planned {
        JobQuery::Incremental(_) => "fed its rows as they come while the window is open (live runs), so its close runs only the rows since and the result".to_string(),
        JobQuery::Cumulative(_) => "running aggregates per group since the start, folded in pane by pane".into(),
        JobQuery::Windowed(_) if job.kind.pane_sql(&job.sql.text).is_some() => {
            format!("run over all its rows at the close (the [{}] pane aggregation over the job's SQL cannot be fed as its rows come)", job.kind.name())
        }
        JobQuery::Windowed(_) => {
            let why = IncrementalQuery::plan(&job.dataflow(), query).err().map(|(_, why)| why).unwrap_or_default();
            format!("run over all its rows at the close ({why})")
        }
    };
    println!("\neach window's SQL: {close}");
    let stages = osprey::shuffle::stages(&job, &planned);
    println!("\nscaled out (`osprey run` in several processes): {stages}");
    if let osprey::shuffle::Stages::Two { key } = &stages {
        match osprey::shuffle::partials::why_raw(&job, key) {
            None => println!("  the first stage sends pane partials: one row per pane and group of each chunk, merged by the second stage"),
            Some(why) => println!("  the first stage sends each record ({why})"),
        }
        if job.exactly_once() {
            println!("  exactly once across both stages: each process's stages commit in transactions of their own ids, the second with, per internal partition, the first row its windows hold and the watermark they were emitted up to");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn describe(path: &Path) -> anyhow::Result<ExitCode> {
    let job = super::load_job(path)?;
    let query = WindowQuery::plan(&job.dataflow()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let source = match &job.source {
        SourceConfig::Kafka(k) => format!("Kafka topic `{}` (group `{}`)", k.topic, k.group),
        SourceConfig::File { pattern, .. } => format!("files {pattern}"),
        SourceConfig::Generator(g) => format!("the built-in `{}` generator", g.stream.name()),
    };
    println!("job `{}`: {}, from {source}", job.name, kind_title(&job));
    if let Some(d) = &job.description {
        println!("  {d}");
    }
    println!("\ndeclared columns (event time: `{}`):", job.event_time.column);
    for c in &job.columns {
        println!("  {:<24} {:?}", c.name, c.ty);
    }
    println!("\nthe SQL's `events` table (declared, named metadata, window columns):");
    print_schema(&query.input_schema());
    println!("\nresult columns:");
    print_schema(&query.output_schema());
    println!("\nwindow: {}; watermark delay {} ms, allowed lateness {} ms", window(&job.window), job.event_time.watermark_delay, job.event_time.allowed_lateness);
    for line in job.kind.describe() {
        println!("{line}");
    }
    if let Some(a) = &job.alerts {
        let mut to = Vec::new();
        if let Some(t) = &a.topic {
            to.push(format!("Kafka topic {t}"));
        }
        to.extend(a.alertmanager.iter().map(|u| format!("Alertmanager {u}")));
        if let Some(f) = &a.file {
            to.push(f.display().to_string());
        }
        if a.stdout {
            to.push("stdout".into());
        }
        println!("alerts to: {}", to.join(", "));
    } else {
        println!("rows to: {}", sink(&job));
    }
    Ok(ExitCode::SUCCESS)
}

/// The kind as these commands have always printed it: `Query`, `Slo`.
fn kind_title(job: &Job) -> String {
    let name = job.kind.name();
    name[..1].to_ascii_uppercase() + &name[1..]
}

fn print_schema(schema: &Schema) {
    for f in schema.fields() {
        println!("  {:<24} {}{}", f.name(), f.data_type(), if f.is_nullable() { "" } else { " (never null)" });
    }
}

fn window(w: &WindowConfig) -> String {
    let d = |ms: i64| humantime::format_duration(std::time::Duration::from_millis(ms as u64)).to_string();
    match w {
        WindowConfig::Tumbling { size } => format!("tumbling {}", d(*size)),
        WindowConfig::Hopping { size, slide } => format!("hopping {} every {}", d(*size), d(*slide)),
        WindowConfig::Session { gap, key } => format!("session, gap {}, per [{}]", d(*gap), key.join(", ")),
        WindowConfig::Cumulative { size, ttl } => {
            format!("cumulative since the start, every {}{}", d(*size), ttl.map(|t| format!(", groups idle {} dropped", d(t))).unwrap_or_default())
        }
    }
}

fn sink(job: &osprey::job::Job) -> String {
    match &job.sink {
        osprey::job::SinkConfig::Stdout { .. } => "stdout".into(),
        osprey::job::SinkConfig::File { path } => path.display().to_string(),
        osprey::job::SinkConfig::Kafka { topic, .. } => format!("Kafka topic {topic}"),
    }
}
