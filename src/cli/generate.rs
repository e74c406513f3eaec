use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use osprey::kafka::{Cluster, KafkaProducer};
use osprey::source::generator::{for_each_event, for_each_event_live, write_json_lines, GeneratorConfig, Stream};

#[derive(clap::Args)]
pub struct Args {
    /// http-requests or trading-events.
    #[arg(long, default_value = "http-requests")]
    pub stream: String,
    /// How many events.
    #[arg(long, short = 'n', default_value_t = 100_000)]
    pub events: u64,
    /// Events per second of event time (above 0, at most 1,000,000).
    #[arg(long, default_value_t = 200.0, value_parser = super::rate)]
    pub rate: f64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Share of malformed records (dead-letter practice).
    #[arg(long, default_value_t = 0.0, value_parser = super::fraction)]
    pub malformed: f64,
    /// Share of records delivered minutes late.
    #[arg(long, default_value_t = 0.0, value_parser = super::fraction)]
    pub late: f64,
    /// Output file (JSON lines); stdout when absent and no --brokers.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Produce to Kafka instead (HOST:PORT,...): keyed by service (http) or order (trading),
    /// message timestamps = event times.
    #[arg(long, requires = "topic")]
    pub brokers: Option<String>,
    /// The topic to produce to (created if missing, with --partitions).
    #[arg(long)]
    pub topic: Option<String>,
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub partitions: u32,
    /// With --brokers: produce in real time at --rate until Ctrl-C, instead of --events at once.
    #[arg(long, requires = "brokers")]
    pub live: bool,
    /// trading-events: from this far into event time, old code on host trade-8 trades against
    /// the firm (the Knight scenario: self-trades, a runaway position, orders left open,
    /// overfills, a second build in its heartbeats).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub knight_at: Option<std::time::Duration>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let stream = Stream::from_name(&args.stream)
        .with_context(|| format!("unknown stream `{}`; the streams are {}", args.stream, Stream::NAMES.join(", ")))?;
    let mut cfg = GeneratorConfig::new(stream);
    cfg.rate = args.rate;
    cfg.seed = args.seed;
    cfg.malformed_fraction = args.malformed;
    cfg.late_fraction = args.late;
    cfg.partitions = args.partitions;
    if let Some(k) = args.knight_at {
        anyhow::ensure!(stream == Stream::TradingEvents, "--knight-at is for --stream trading-events");
        cfg.knight_at = Some(k.as_millis() as i64);
    }
    if let (Some(brokers), Some(topic)) = (&args.brokers, &args.topic) {
        let cluster = Cluster::new(brokers.clone());
        cluster.ensure_topics(&[(topic.as_str(), args.partitions as i32)])?;
        let producer = KafkaProducer::new(&cluster)?;
        let started = std::time::Instant::now();
        let mut error = None;
        let send = |partition: u32, line: &str, error: &mut Option<anyhow::Error>| {
            if error.is_none() {
                let key = field(line, "service").or_else(|| field(line, "order_id")).unwrap_or("");
                if let Err(e) = producer.send_to(topic, partition as i32, key.as_bytes(), line.as_bytes(), event_time(line)) {
                    *error = Some(e);
                }
            }
        };
        if args.live {
            let stop = super::stop_on_signal();
            cfg.start = chrono::Utc::now().timestamp_millis();
            osprey::log_info!("producing {} events/s to {topic} on {brokers}; Ctrl-C stops", args.rate);
            let n = for_each_event_live(cfg, &stop, |p, line| send(p, line, &mut error));
            producer.flush()?;
            osprey::log_info!("produced {n} events");
            return error.map_or(Ok(ExitCode::SUCCESS), Err);
        }
        let n = for_each_event(cfg, args.events, |partition, line| {
            if error.is_none() {
                let key = field(line, "service").or_else(|| field(line, "order_id")).unwrap_or("");
                if let Err(e) = producer.send_to(topic, partition as i32, key.as_bytes(), line.as_bytes(), event_time(line)) {
                    error = Some(e);
                }
            }
        });
        if let Some(e) = error {
            return Err(e);
        }
        producer.flush()?;
        let secs = started.elapsed().as_secs_f64();
        osprey::log_info!("produced {n} {} events to {topic} on {brokers} in {secs:.1}s ({:.0}/s)", args.stream, n as f64 / secs);
        return Ok(ExitCode::SUCCESS);
    }
    let written = match &args.output {
        Some(path) => {
            let file = osprey::sink::file::open_fresh(path, "output file")?;
            let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
            let n = write_json_lines(cfg, args.events, &mut out)?;
            out.flush()?;
            n
        }
        None => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            match write_json_lines(cfg, args.events, &mut out).and_then(|n| out.flush().map(|_| n)) {
                Ok(n) => n,
                // The reader has what it wanted (`osprey generate | head`): not an error.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
                Err(e) => return Err(e).context("cannot write to stdout"),
            }
        }
    };
    if let Some(path) = &args.output {
        osprey::log_info!("wrote {written} {} events to {}", args.stream, path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The event time of a generated line (it starts with `{"ts":"<RFC 3339>"`).
fn event_time(line: &str) -> Option<i64> {
    let rest = line.strip_prefix("{\"ts\":\"")?;
    osprey::decode::convert::parse_timestamp(&rest[..rest.find('"')?]).ok()
}

/// A string field of a generated line (flat JSON, no escapes).
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let marker = format!("\"{name}\":\"");
    let rest = &line[line.find(&marker)? + marker.len()..];
    Some(&rest[..rest.find('"')?])
}
