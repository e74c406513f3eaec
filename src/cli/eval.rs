//! `osprey eval nab`: the anomaly detectors scored on the Numenta Anomaly Benchmark's layout.

use std::path::PathBuf;
use std::process::ExitCode;

use osprey::anomaly::nab::{evaluate, normalised};
use osprey::anomaly::{defaults, DetectorKind};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Stream every series of a NAB-style folder (<category>/<file>.csv and labels.json) through
    /// the default detectors, write NAB's results layout, print precision, recall and NAB's
    /// standard-profile score per series and in total.
    Nab(NabArgs),
}

#[derive(clap::Args)]
pub struct NabArgs {
    /// A folder laid out like NAB's data: <category>/<file>.csv (timestamp,value) and labels.json.
    dir: PathBuf,
    /// Where to write OUT/osprey/<category>/osprey_<file>.csv (timestamp,value,anomaly_score,label).
    #[arg(long)]
    results: PathBuf,
    /// Detectors, comma-separated or repeated (`--detector mad --detector ks`); the score is the highest.
    #[arg(long, alias = "detector", value_delimiter = ',', default_values_t = defaults::DETECTORS.iter().map(|d| d.name().to_string()).collect::<Vec<_>>())]
    detectors: Vec<String>,
    /// A row is a detection when its score is at or above this.
    #[arg(long, default_value_t = defaults::THRESHOLD, value_parser = super::fraction)]
    threshold: f64,
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    let Command::Nab(a) = command;
    let detectors = a
        .detectors
        .iter()
        .map(|d| DetectorKind::parse(d.trim()).ok_or_else(|| anyhow::anyhow!("unknown detector `{d}`; the detectors are {}", DetectorKind::NAMES.join(", "))))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let names: Vec<&str> = detectors.iter().map(|d| d.name()).collect();
    osprey::log_info!("eval nab: {} with detectors {} (threshold {})", a.dir.display(), names.join("+"), a.threshold);
    let results = evaluate(&a.dir, &a.results, &detectors, a.threshold, &mut |name| osprey::log_info!("  {name}"))?;
    println!("{:<58} {:>7} {:>10} {:>9} {:>7} {:>9}", "series", "windows", "detections", "precision", "recall", "NAB score");
    let (mut raw, mut perfect, mut null) = (0.0, 0.0, 0.0);
    let (mut windows, mut detected, mut detections, mut inside) = (0, 0, 0, 0);
    let pct = |a: usize, b: usize| if b == 0 { "-".to_string() } else { format!("{:.2}", a as f64 / b as f64) };
    for r in &results {
        let s = &r.scored;
        println!(
            "{:<58} {:>7} {:>10} {:>9} {:>7} {:>9.1}",
            r.name,
            s.windows,
            s.detections,
            pct(s.detections_in_windows, s.detections),
            pct(s.windows_detected, s.windows),
            normalised(s.raw, s.perfect, s.null)
        );
        raw += s.raw;
        perfect += s.perfect;
        null += s.null;
        windows += s.windows;
        detected += s.windows_detected;
        detections += s.detections;
        inside += s.detections_in_windows;
    }
    println!(
        "{:<58} {:>7} {:>10} {:>9} {:>7} {:>9.1}",
        format!("total ({} series)", results.len()),
        windows,
        detections,
        pct(inside, detections),
        pct(detected, windows),
        normalised(raw, perfect, null)
    );
    println!("standard profile (A_TP 1, A_FP 0.11, A_FN 1); results in {}", a.results.join("osprey").display());
    Ok(ExitCode::SUCCESS)
}
