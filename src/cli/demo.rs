//! `osprey demo`: the bundled jobs on generated telemetry, with an incident to find.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use osprey::job::{Job, SourceConfig};
use osprey::pipeline::{Options, Pipeline};
use osprey::sink::{Sink, WindowResult};
use osprey::source::generator::{format_ts, GeneratorSource, Incident, Pacing, Stream};

/// The bundled jobs, compiled in so `osprey demo` runs from any folder.
const EMBEDDED: &[(&str, &str)] = &[
    ("jobs/http_red.toml", include_str!("../../jobs/http_red.toml")),
    ("jobs/http_error_burst.toml", include_str!("../../jobs/http_error_burst.toml")),
    ("jobs/trading_flow.toml", include_str!("../../jobs/trading_flow.toml")),
    ("jobs/build_drift.toml", include_str!("../../jobs/build_drift.toml")),
    ("jobs/api_availability.toml", include_str!("../../jobs/api_availability.toml")),
    ("jobs/api_latency.toml", include_str!("../../jobs/api_latency.toml")),
    ("jobs/http_anomaly.toml", include_str!("../../jobs/http_anomaly.toml")),
    ("sql/http_error_burst.sql", include_str!("../../sql/http_error_burst.sql")),
    ("jobs/knight/self_trade.toml", include_str!("../../jobs/knight/self_trade.toml")),
    ("jobs/knight/position_limit.toml", include_str!("../../jobs/knight/position_limit.toml")),
    ("jobs/knight/overfill.toml", include_str!("../../jobs/knight/overfill.toml")),
    ("jobs/knight/order_deadline.toml", include_str!("../../jobs/knight/order_deadline.toml")),
    ("jobs/knight/version_skew.toml", include_str!("../../jobs/knight/version_skew.toml")),
    ("jobs/knight/cash_conservation.toml", include_str!("../../jobs/knight/cash_conservation.toml")),
];

/// What the demo shows.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// A 5xx burst and a latency rise on `checkout`: the RED view, the SLO pages.
    Incident,
    /// Knight Capital, 2012: old code on one of 8 trading hosts trades against the others. The
    /// business checks in jobs/knight/ fire while the RED view stays normal.
    Knight,
}

#[derive(clap::Args)]
pub struct Args {
    /// Wall-clock running time.
    #[arg(long, default_value = "30s", value_parser = super::positive_duration)]
    pub duration: Duration,
    /// Generator seed: the same seed prints the same results.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Event-time seconds per wall-clock second.
    #[arg(long, default_value_t = 40.0, value_parser = super::speed)]
    pub speed: f64,
    /// Folder of job files; defaults to ./jobs, or the bundled jobs when there is none.
    #[arg(long)]
    pub jobs: Option<PathBuf>,
    /// At the end, print the windows still open (marked incomplete) instead of discarding them.
    #[arg(long)]
    pub flush_on_stop: bool,
    #[arg(long, value_enum, default_value = "incident")]
    pub scenario: Scenario,
}

/// Prints each window as a table, one window at a time across jobs; an alerting job's rows
/// (burn rates) are kept for the closing summary instead, its alerts print as they happen.
struct DemoSink {
    out: Arc<Mutex<()>>,
    /// Tables for query jobs; an alerting job's rows are not shown (its alerts are).
    print: bool,
    keep: Option<Arc<Mutex<Vec<serde_json::Value>>>>,
}

impl Sink for DemoSink {
    fn write(&mut self, result: &WindowResult) -> anyhow::Result<()> {
        if result.rows() == 0 {
            return Ok(());
        }
        if let Some(keep) = &self.keep {
            let mut bytes = Vec::new();
            osprey::output::json::write_window(result, &mut bytes);
            let mut rows = keep.lock().expect("not poisoned");
            rows.extend(bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).filter_map(|l| serde_json::from_slice(l).ok()));
            return Ok(());
        }
        if !self.print {
            return Ok(());
        }
        let _guard = self.out.lock().expect("not poisoned");
        println!("{}", osprey::sink::stdout::render(result));
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let _extracted;
    let dir = match &args.jobs {
        Some(d) => d.clone(),
        None if Path::new("jobs").is_dir() => PathBuf::from("jobs"),
        None => {
            let tmp = tempdir()?;
            for (path, text) in EMBEDDED {
                let p = tmp.join(path);
                std::fs::create_dir_all(p.parent().expect("has a folder"))?;
                std::fs::write(&p, text)?;
            }
            _extracted = tmp.clone();
            tmp.join("jobs")
        }
    };
    let toml_files = |dir: &Path| -> anyhow::Result<Vec<PathBuf>> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read the jobs folder {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        paths.sort();
        Ok(paths)
    };
    let paths = match args.scenario {
        Scenario::Incident => toml_files(&dir)?,
        // The business checks, and the RED view of the same services.
        Scenario::Knight => {
            let mut p = toml_files(&dir.join("knight"))?;
            p.push(dir.join("http_red.toml"));
            p
        }
    };

    let event_minutes = args.duration.as_secs_f64() * args.speed / 60.0;
    let incident_at = ((event_minutes * 0.4) as i64).max(1) * 60_000;
    let incident = Incident { at: incident_at, duration: 4 * 60_000, service: "checkout".into() };
    let knight_at = ((event_minutes * 0.2) as i64).max(1) * 60_000;
    let mut jobs: Vec<(Job, SourceConfig)> = Vec::new();
    let alert_dir = tempdir()?.join("alerts");
    for path in &paths {
        let mut job = super::load_job(path)?;
        if let Some(a) = &mut job.alerts {
            // Alerts as lines people read while it runs, and a file for the closing summary.
            a.only_file(alert_dir.join(format!("{}.jsonl", job.name)));
            a.console = true;
            a.console_limit = Some(3);
        }
        if args.scenario == Scenario::Knight && matches!(job.source, SourceConfig::Kafka(_)) {
            // The checks read the topic trading-events; here, the generator's desk.
            let mut g = osprey::source::generator::GeneratorConfig::new(Stream::TradingEvents);
            g.rate = 40.0;
            job.source = SourceConfig::Generator(g);
            job.dead_letter = osprey::job::RouteConfig::Stderr;
            job.late = osprey::job::RouteConfig::Stderr;
        }
        let SourceConfig::Generator(mut g) = job.source.clone() else {
            osprey::log_info!("demo: skipping {} (its source is not the generator)", path.display());
            continue;
        };
        g.speed = args.speed;
        g.seed = args.seed;
        match (args.scenario, g.stream) {
            (Scenario::Incident, Stream::HttpRequests) => g.incident = Some(incident.clone()),
            (Scenario::Knight, Stream::TradingEvents) => g.knight_at = Some(knight_at),
            _ => {}
        }
        jobs.push((job, SourceConfig::Generator(g)));
    }
    let start = osprey::source::generator::DEFAULT_START;
    println!(
        "Osprey demo: {} jobs on generated telemetry, {:.0} minutes of event time in {:?} (seed {}).",
        jobs.len(),
        event_minutes,
        args.duration,
        args.seed
    );
    let names: Vec<&str> = jobs.iter().map(|(j, _)| j.name.as_str()).collect();
    let watch: Vec<&str> = [
        ("http_error_burst", "http_error_burst"),
        ("http_red", "the p99_ms column of http_red"),
        ("api_availability", "the api_availability SLO page (FIRING lines)"),
        ("http_anomaly", "the http_anomaly incident grouping checkout's endpoints"),
    ]
        .iter()
        .filter(|(job, _)| names.contains(job))
        .map(|(_, what)| *what)
        .collect();
    if args.scenario == Scenario::Knight {
        println!(
            "Knight Capital, 2012: from {} host trade-8 runs the old build {} and trades against the firm.\n\
             Watch the FIRING lines of the checks in jobs/knight/ while http_red (latency, errors) stays normal.\n",
            format_ts(start + knight_at),
            osprey::source::generator::OLD_BUILD
        );
    } else if jobs.iter().any(|(_, s)| matches!(s, SourceConfig::Generator(g) if g.stream == Stream::HttpRequests)) {
        println!(
            "Injected incident: `{}` errors and latency rise from {} to {}.{}\n",
            incident.service,
            format_ts(start + incident.at),
            format_ts(start + incident.at + incident.duration),
            if watch.is_empty() { String::new() } else { format!(" Watch {}.", watch.join(" and ")) }
        );
    }

    let stop = super::stop_on_signal();
    let out = Arc::new(Mutex::new(()));
    let mut handles = Vec::new();
    for (job, source) in jobs {
        let SourceConfig::Generator(g) = source else { unreachable!() };
        // Four jobs share two cores: each decodes on its own thread.
        let options = Options { decode_threads: 0, flush_on_stop: args.flush_on_stop, ..Options::live(stop.clone()) };
        let keep = job.config::<osprey::slo::SloConfig>().is_some().then(|| Arc::new(Mutex::new(Vec::new())));
        let sink = Box::new(DemoSink { out: out.clone(), print: job.alerts.is_none(), keep: keep.clone() });
        let pipeline = Pipeline::new(job.clone(), Box::new(GeneratorSource::new(g, Pacing::Live)), sink, options)?;
        handles.push((job, keep, std::thread::spawn(move || pipeline.run())));
    }
    let deadline = std::time::Instant::now() + args.duration;
    while std::time::Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    println!("── demo over ──");
    let mut closing = Vec::new();
    let mut business: Vec<(String, u64)> = Vec::new();
    for (job, keep, handle) in handles {
        let summary = handle.join().expect("a job thread ends")?;
        super::report(&job, &summary, false);
        if job.config::<osprey::invariant::InvariantConfig>().is_some() {
            business.push((job.name.clone(), summary.alerts.as_ref().map(|(a, _)| a.fired).unwrap_or(0)));
        }
        if let (Some(slo), Some(rows), Some(alerts)) = (job.config::<osprey::slo::SloConfig>(), keep, job.alerts.as_ref().and_then(|a| a.file.clone())) {
            closing.extend(slo_summary(&job.name, slo, &rows.lock().expect("not poisoned"), &alerts));
        }
    }
    if args.scenario == Scenario::Knight {
        println!("\n── infrastructure green, business red ──");
        println!("http_red: latency and error rates of every service stayed at their usual levels (the tables above).");
        for (name, fired) in &business {
            let verdict = if *fired > 0 { "RED" } else { "ok" };
            println!("{name:<18} {verdict:<4} {fired} alert{}", if *fired == 1 { "" } else { "s" });
        }
    }
    if !closing.is_empty() {
        println!("\n── SLO alerts: when they fired and what they cost ──");
        for line in closing {
            println!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per SLO alert: when it fired and resolved, and how much of the period's error
/// budget the bad events in between cost, at the traffic the run saw.
fn slo_summary(job: &str, slo: &osprey::slo::SloConfig, rows: &[serde_json::Value], alerts: &Path) -> Vec<String> {
    use rust_decimal::prelude::ToPrimitive;
    let Ok(text) = std::fs::read_to_string(alerts) else { return Vec::new() };
    let records: Vec<osprey::alert::Alert> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let time = |v: &serde_json::Value| v.as_str().and_then(osprey::alert::parse_time);
    let budget = slo.budget().to_f64().unwrap_or(0.0);
    let label_values = |r: &serde_json::Value| slo.labels.iter().map(|l| r[l].as_str().unwrap_or("").to_string()).collect::<Vec<_>>();
    let mut out = Vec::new();
    for a in records.iter().filter(|a| a.status == osprey::alert::Status::Firing) {
        let start = osprey::alert::parse_time(&a.starts_at).unwrap_or(0);
        let end = records
            .iter()
            .find(|r| r.fingerprint == a.fingerprint && r.status == osprey::alert::Status::Resolved && r.starts_at == a.starts_at)
            .and_then(|r| r.ends_at.as_deref().and_then(osprey::alert::parse_time));
        let series: Vec<String> = slo.labels.iter().map(|l| a.labels.get(l).cloned().unwrap_or_default()).collect();
        let mine: Vec<&serde_json::Value> = rows.iter().filter(|r| label_values(r) == series).collect();
        // Bad events from the pane before it fired to its end (or the end of the run).
        let bad: u64 = mine
            .iter()
            .filter(|r| time(&r["window_end"]).is_some_and(|t| t >= start - slo.pane && end.is_none_or(|e| t <= e)))
            .map(|r| r["bad_events"].as_u64().unwrap_or(0))
            .sum();
        let events: u64 = mine.iter().map(|r| r["events"].as_u64().unwrap_or(0)).sum();
        let panes = mine.len().max(1) as f64;
        let per_period = events as f64 / panes * (slo.period as f64 / slo.pane as f64);
        let cost = if per_period > 0.0 && budget > 0.0 { 100.0 * bad as f64 / (budget * per_period) } else { 0.0 };
        let who = if series.is_empty() { String::new() } else { format!(" {}", series.join(",")) };
        out.push(format!(
            "{job}{who}: {} ({}) fired {}, {}; {bad} bad events in that time: {cost:.2}% of the {} error budget at this traffic",
            a.rule,
            a.severity,
            a.starts_at,
            match end {
                Some(e) => format!("resolved {}", osprey::alert::rfc3339(e)),
                None => "still firing at the end".into(),
            },
            slo.period_text
        ));
    }
    out
}

fn tempdir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("osprey-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
