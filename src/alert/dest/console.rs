//! Alert records as lines people read, on stdout: what `osprey demo` and `alerts tail` show.

use std::io::Write;

use super::AlertDestination;
use crate::alert::{Alert, Status};

pub struct Console {
    /// Firings shown at most; the records past it are counted, not printed.
    limit: Option<u64>,
    firings: u64,
}

impl Console {
    pub fn new(limit: Option<u64>) -> Self {
        Console { limit, firings: 0 }
    }
}

impl AlertDestination for Console {
    fn send(&mut self, alert: &Alert, _: &[u8]) -> anyhow::Result<()> {
        if alert.status == Status::Firing {
            self.firings += 1;
        }
        if self.limit.is_some_and(|l| self.firings > l) {
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        // A reader that went away (`| head`) is not an error of the job's.
        let _ = writeln!(out, "{}", line(alert)).and_then(|_| out.flush());
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        Ok(())
    }

    fn describe(&self) -> String {
        "the console".into()
    }
}

/// One record as a line people read.
pub fn line(a: &Alert) -> String {
    let labels: Vec<String> = a
        .labels
        .iter()
        .filter(|(k, _)| k.as_str() != "alertname" && k.as_str() != "severity")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let value = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        serde_json::Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap_or(0.0);
            let t = format!("{x:.3}");
            t.trim_end_matches('0').trim_end_matches('.').to_string()
        }
        other => other.to_string(),
    };
    let when = match a.status {
        Status::Firing => format!("since {}", a.starts_at),
        Status::Resolved => format!("{} → {}", a.starts_at, a.ends_at.as_deref().unwrap_or("?")),
    };
    let summary = a.annotations.get("summary").map(|s| format!("  {s}")).unwrap_or_default();
    format!(
        "{:<8} {:<9} {}  {}  value {} (threshold {})  {when}  [{} #{}]{summary}",
        match a.status {
            Status::Firing => "FIRING",
            Status::Resolved => "resolved",
        },
        a.severity,
        a.labels.get("alertname").map(String::as_str).unwrap_or(&a.job),
        if labels.is_empty() { "-".to_string() } else { labels.join(" ") },
        value(&a.value),
        value(&a.threshold),
        a.fingerprint,
        a.sequence
    )
}

