//! `osprey eval nab`: the anomaly detectors scored on the Numenta Anomaly Benchmark's layout.

use std::path::PathBuf;
use std::process::ExitCode;

use osprey::anomaly::nab::{evaluate, normalised, Scored};
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
    #[arg(long, alias = "detector", value_delimiter = ',', default_values_t = defaults::UNIVARIATE.iter().map(|d| d.name().to_string()).collect::<Vec<_>>())]
    detectors: Vec<String>,
    /// A row is a detection when its score is at or above this.
    #[arg(long, default_value_t = defaults::THRESHOLD, value_parser = super::fraction)]
    threshold: f64,
    /// Do not hand the detectors each series' minimum and maximum (NAB's runner hands them; a
    /// stream has none): `artime` and `cad` then learn a range from the probation period.
    #[arg(long)]
    no_range: bool,
}

pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    let Command::Nab(a) = command;
    let detectors = a
        .detectors
        .iter()
        .map(|d| DetectorKind::parse(d.trim()).ok_or_else(|| anyhow::anyhow!("unknown detector `{d}`; the detectors are {}", DetectorKind::NAMES.join(", "))))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let names: Vec<&str> = detectors.iter().map(|d| d.name()).collect();
    let range = if a.no_range { "range learnt from the probation" } else { "each series' range given, as NAB gives it" };
    osprey::log_info!("eval nab: {} with detectors {} (threshold {}, {range})", a.dir.display(), names.join("+"), a.threshold);
    let results = evaluate(&a.dir, &a.results, &detectors, a.threshold, !a.no_range, &mut |name| osprey::log_info!("  {name}"))?;
    println!("{:<58} {:>7} {:>10} {:>9} {:>7} {:>9}", "series", "windows", "detections", "precision", "recall", "NAB score");
    let pct = |a: usize, b: usize| if b == 0 { "-".to_string() } else { format!("{:.2}", a as f64 / b as f64) };
    let line = |name: &str, s: &Scored| {
        println!(
            "{:<58} {:>7} {:>10} {:>9} {:>7} {:>9.1}",
            name,
            s.windows,
            s.detections,
            pct(s.detections_in_windows, s.detections),
            pct(s.windows_detected, s.windows),
            normalised(s.raw, s.perfect, s.null)
        )
    };
    // Per category: how many series, and their sums.
    let mut categories: std::collections::BTreeMap<&str, (usize, Scored)> = Default::default();
    let mut total = Scored::default();
    for r in &results {
        line(&r.name, &r.scored);
        let (series, sum) = categories.entry(r.name.split_once('/').map_or("", |(c, _)| c)).or_default();
        *series += 1;
        *sum += &r.scored;
        total += &r.scored;
    }
    // NAB normalises a category's score over the category's own perfect and null detectors.
    for (category, (series, sum)) in &categories {
        line(&format!("category {category} ({series} series)"), sum);
    }
    line(&format!("total ({} series)", results.len()), &total);
    println!("standard profile (A_TP 1, A_FP 0.11, A_FN 1); results in {}", a.results.join("osprey").display());
    Ok(ExitCode::SUCCESS)
}

