//! `osprey alerts tail` and `osprey alerts stats`: the alert stream as people read it.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use osprey::alert::stats::{compute, StatsOptions};
use osprey::alert::Alert;
use osprey::kafka::Cluster;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Follow the alert topic (or print an alert file): status, severity, labels, since when, value against threshold.
    Tail(TailArgs),
    /// Alert-fatigue figures per rule and in total: fired, dedup and grouping savings, storms, flapping, time firing, night firings.
    Stats(StatsArgs),
}

#[derive(clap::Args)]
pub struct TailArgs {
    /// Kafka bootstrap servers; also OSPREY_BROKERS.
    #[arg(long)]
    brokers: Option<String>,
    #[arg(long, default_value = osprey::alert::config::DEFAULT_TOPIC)]
    topic: String,
    /// Start from the first record instead of new ones.
    #[arg(long)]
    from_beginning: bool,
    /// Read a JSON-lines alert file instead of Kafka.
    #[arg(long, short, conflicts_with = "brokers")]
    input: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct StatsArgs {
    #[arg(long)]
    brokers: Option<String>,
    #[arg(long, default_value = osprey::alert::config::DEFAULT_TOPIC)]
    topic: String,
    /// A JSON-lines alert file (what `replay --output` writes) instead of Kafka.
    #[arg(long, short, conflicts_with = "brokers")]
    input: Option<PathBuf>,
    /// A firing within this long of the same alert's resolve counts as flapping.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    flap_window: Duration,
    /// Working hours in UTC, Monday to Friday, as START-END.
    #[arg(long, default_value = "9-18")]
    business_hours: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Tail(a) => tail(a),
        Command::Stats(a) => stats(a),
    }
}

fn brokers(flag: Option<String>) -> anyhow::Result<String> {
    flag.or_else(|| std::env::var("OSPREY_BROKERS").ok().filter(|b| !b.is_empty()))
        .context("pass --brokers HOST:PORT (or set OSPREY_BROKERS), or --input FILE")
}

fn read_file(path: &PathBuf) -> anyhow::Result<Vec<Alert>> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(&line).with_context(|| format!("{}:{}: not an alert record", path.display(), i + 1))?);
    }
    Ok(out)
}

/// Every record of the topic, from the beginning to its end now.
fn read_topic(brokers: &str, topic: &str) -> anyhow::Result<Vec<Alert>> {
    let consumer = consumer(brokers, topic, true)?;
    let mut out = Vec::new();
    let mut ends = 0;
    let parts = consumer.assignment()?.count();
    while ends < parts {
        match consumer.poll(Duration::from_secs(10)) {
            Some(Ok(m)) => {
                if let Some(p) = m.payload() {
                    if let Ok(a) = serde_json::from_slice(p) {
                        out.push(a);
                    }
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => ends += 1,
            Some(Err(e)) => anyhow::bail!("reading {topic}: {e}"),
            None => break,
        }
    }
    Ok(out)
}

fn consumer(brokers: &str, topic: &str, from_beginning: bool) -> anyhow::Result<BaseConsumer> {
    let c: BaseConsumer = Cluster::new(brokers)
        .config(&[("group.id", "osprey-alerts-reader"), ("enable.auto.commit", "false"), ("enable.partition.eof", "true")])
        .create()?;
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10)).with_context(|| format!("cannot reach Kafka at {brokers}"))?;
    let parts = md.topics().first().map(|t| t.partitions().len()).unwrap_or(0);
    if parts == 0 {
        anyhow::bail!("the alert topic `{topic}` does not exist on {brokers} (no alerting job wrote to it yet?)");
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..parts as i32 {
        tpl.add_partition_offset(topic, p, if from_beginning { Offset::Beginning } else { Offset::End })?;
    }
    c.assign(&tpl)?;
    Ok(c)
}

pub use osprey::alert::dest::console::line;

/// A line on stdout; false when the reader went away (`| head`).
fn print(text: &str) -> bool {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").and_then(|_| out.flush()).is_ok()
}

fn tail(a: TailArgs) -> anyhow::Result<ExitCode> {
    if let Some(path) = &a.input {
        for alert in read_file(path)? {
            if !print(&line(&alert)) {
                break;
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let brokers = brokers(a.brokers)?;
    let c = consumer(&brokers, &a.topic, a.from_beginning)?;
    let stop = super::stop_on_signal();
    osprey::log_info!("following {} on {brokers}; Ctrl-C stops", a.topic);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            match m.payload().map(serde_json::from_slice::<Alert>) {
                Some(Ok(alert)) => {
                    if !print(&line(&alert)) {
                        break;
                    }
                }
                Some(Err(e)) => osprey::log_warn!("{}/{} offset {}: not an alert record ({e})", a.topic, m.partition(), m.offset()),
                None => {}
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn stats(a: StatsArgs) -> anyhow::Result<ExitCode> {
    let records = match &a.input {
        Some(path) => read_file(path)?,
        None => read_topic(&brokers(a.brokers.clone())?, &a.topic)?,
    };
    let (open, close) = a
        .business_hours
        .split_once('-')
        .and_then(|(s, e)| Some((s.trim().parse().ok()?, e.trim().parse().ok()?)))
        .filter(|(s, e): &(u32, u32)| s < e && *e <= 24)
        .context("--business-hours takes START-END hours, for example 9-18")?;
    let s = compute(&records, StatsOptions { flap_window: a.flap_window.as_millis() as i64, business_hours: (open, close) });
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
        return Ok(ExitCode::SUCCESS);
    }
    let secs = |v: Option<f64>| v.map(|s| humantime::format_duration(Duration::from_secs(s as u64)).to_string()).unwrap_or_else(|| "-".into());
    println!(
        "{:<40} {:>6} {:>8} {:>8} {:>8} {:>7} {:>6} {:>10} {:>10} {:>7}",
        "rule", "fired", "resolved", "dedup", "grouping", "storms", "flaps", "median", "p90", "night"
    );
    let mut rows: Vec<(&str, &osprey::alert::stats::Figures)> = s.per_rule.iter().map(|(r, f)| (r.as_str(), f)).collect();
    rows.push(("total", &s.total));
    for (rule, f) in rows {
        println!(
            "{:<40} {:>6} {:>8} {:>8} {:>8} {:>7} {:>6} {:>10} {:>10} {:>7}",
            rule,
            f.fired,
            f.resolved,
            f.deduplicated,
            f.grouping_saved,
            f.folded_in_storms,
            f.flapping,
            secs(f.median_firing_seconds),
            secs(f.p90_firing_seconds),
            f.outside_business_hours.map(|x| format!("{:.0}%", x * 100.0)).unwrap_or_else(|| "-".into())
        );
    }
    println!("(dedup: repeats not sent; grouping: transitions saved by Alertmanager-style grouping; storms: alerts folded; night: fired outside {open}:00-{close}:00 UTC, Mon-Fri)");
    Ok(ExitCode::SUCCESS)
}
