use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use osprey::source::generator::{write_json_lines, GeneratorConfig, Stream};

#[derive(clap::Args)]
pub struct Args {
    /// http-requests or trading-events.
    #[arg(long, default_value = "http-requests")]
    pub stream: String,
    /// How many events.
    #[arg(long, short = 'n', default_value_t = 100_000)]
    pub events: u64,
    /// Events per second of event time.
    #[arg(long, default_value_t = 200.0)]
    pub rate: f64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Share of malformed records (dead-letter practice).
    #[arg(long, default_value_t = 0.0)]
    pub malformed: f64,
    /// Share of records delivered minutes late.
    #[arg(long, default_value_t = 0.0)]
    pub late: f64,
    /// Output file (JSON lines); stdout when absent.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let stream = Stream::from_name(&args.stream)
        .with_context(|| format!("unknown stream `{}`; the streams are {}", args.stream, Stream::NAMES.join(", ")))?;
    let mut cfg = GeneratorConfig::new(stream);
    cfg.rate = args.rate;
    cfg.seed = args.seed;
    cfg.malformed_fraction = args.malformed;
    cfg.late_fraction = args.late;
    let written = match &args.output {
        Some(path) => {
            let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?);
            let n = write_json_lines(cfg, args.events, &mut out)?;
            out.flush()?;
            n
        }
        None => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let n = write_json_lines(cfg, args.events, &mut out)?;
            out.flush()?;
            n
        }
    };
    if let Some(path) = &args.output {
        eprintln!("wrote {written} {} events to {}", args.stream, path.display());
    }
    Ok(ExitCode::SUCCESS)
}
