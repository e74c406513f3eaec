//! The alerting job kinds end to end, through the `osprey` binary as users run it: SLO burn
//! rates checked against Prometheus's own rule evaluation (promtool), and more to come.

mod anomaly;
mod checkpoints;
mod knight;
mod server;
mod slo;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

pub fn osprey(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_osprey")).args(args).current_dir(dir).output().expect("osprey runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Run osprey and insist it succeeds; its stderr.
pub fn osprey_ok(args: &[&str], dir: &Path) -> String {
    let o = osprey(args, dir);
    assert!(o.status.success(), "osprey {}\n{}", args.join(" "), stderr(&o));
    stderr(&o)
}

pub fn rows_of(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect()
}

/// Every record validates against the shipped alert schema.
pub fn assert_valid_alerts(records: &[Value]) {
    let schema: Value = serde_json::from_str(include_str!("../../schema/alert-v1.json")).unwrap();
    let v = jsonschema::validator_for(&schema).unwrap();
    for r in records {
        let errors: Vec<String> = v.iter_errors(r).map(|e| format!("{e} at {}", e.instance_path())).collect();
        assert!(errors.is_empty(), "{r}\n{errors:?}");
    }
}

/// A small deterministic random source (xorshift64*), so test traffic is the same every run.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}
