//! `osprey slo rules`: the SLO as Prometheus recording and alerting rules, as Sloth writes
//! them, so a team can run the same alerts from Prometheus counters and compare.
//!
//! The rules read two counters per series, `<events>{slo="<job>", <labels>}` and
//! `<bad>{slo="<job>", <labels>}`, that count all and bad events. With samples at every pane
//! end and Prometheus 2's closed ranges, `increase(x[w])` at an evaluation is exactly the
//! count of the panes in `[t-w, t)`, so these rules fire and resolve at Osprey's evaluation
//! times (the README says where they can differ).

use std::fmt::Write;

use super::{compact, SloConfig};
use crate::Millis;

/// Names of the two counters the rules read.
pub struct Metrics {
    pub events: String,
    pub bad: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics { events: "osprey_slo_events_total".into(), bad: "osprey_slo_bad_events_total".into() }
    }
}

/// A duration in PromQL's syntax, in one unit (`90m`, not `1h 30m`).
pub fn promql_duration(ms: Millis) -> String {
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)] {
        if ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// A YAML double-quoted string.
fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

/// The rules file for one SLO job (`for_`: the job's `[alerts] for`).
pub fn rules_yaml(job: &str, config: &SloConfig, for_: Millis, metrics: &Metrics) -> String {
    let selector = format!("{{slo={}}}", quoted(job));
    let by = if config.labels.is_empty() { String::new() } else { format!(" by ({})", config.labels.join(", ")) };
    let mut windows: Vec<(Millis, String)> = Vec::new();
    for a in &config.alerts {
        for w in [a.long, a.short] {
            if !windows.iter().any(|(d, _)| *d == w) {
                windows.push((w, promql_duration(w)));
            }
        }
    }
    windows.sort();
    let mut out = String::new();
    writeln!(out, "# Prometheus rules for the Osprey SLO job `{job}` (objective {}), from `osprey slo rules`.", config.objective.normalize()).unwrap();
    writeln!(out, "# They read the counters {} (all events) and {} (bad events),", metrics.events, metrics.bad).unwrap();
    writeln!(out, "# labelled slo=\"{job}\"{}.", if config.labels.is_empty() { String::new() } else { format!(" and by {}", config.labels.join(", ")) }).unwrap();
    writeln!(out, "groups:").unwrap();
    writeln!(out, "  - name: {}", quoted(&format!("osprey-slo-{job}"))).unwrap();
    writeln!(out, "    rules:").unwrap();
    for (_, w) in &windows {
        writeln!(out, "      - record: osprey_slo:bad_ratio_{w}").unwrap();
        writeln!(
            out,
            "        expr: sum{by} (increase({bad}{selector}[{w}])) / sum{by} (increase({events}{selector}[{w}]))",
            bad = metrics.bad,
            events = metrics.events
        )
        .unwrap();
        writeln!(out, "        labels:\n          slo: {}", quoted(job)).unwrap();
        if config.min_events > 0 {
            writeln!(out, "      - record: osprey_slo:events_{w}").unwrap();
            writeln!(out, "        expr: sum{by} (increase({}{selector}[{w}]))", metrics.events).unwrap();
            writeln!(out, "        labels:\n          slo: {}", quoted(job)).unwrap();
        }
    }
    for a in &config.alerts {
        let threshold = (a.burn_rate * config.budget()).normalize();
        let (long, short) = (promql_duration(a.long), promql_duration(a.short));
        let mut expr = format!("osprey_slo:bad_ratio_{long}{selector} > {threshold} and osprey_slo:bad_ratio_{short}{selector} > {threshold}");
        if config.min_events > 0 {
            let n = config.min_events;
            write!(expr, " and osprey_slo:events_{long}{selector} >= {n} and osprey_slo:events_{short}{selector} >= {n}").unwrap();
        }
        writeln!(out, "      - alert: {}", quoted(job)).unwrap();
        writeln!(out, "        expr: {expr}").unwrap();
        if for_ > 0 {
            writeln!(out, "        for: {}", promql_duration(for_)).unwrap();
        }
        writeln!(out, "        labels:").unwrap();
        writeln!(out, "          severity: {}", quoted(&a.severity)).unwrap();
        writeln!(out, "          long_window: {}", quoted(&a.long_text)).unwrap();
        writeln!(out, "          short_window: {}", quoted(&a.short_text)).unwrap();
        writeln!(out, "        annotations:").unwrap();
        writeln!(out, "          summary: {}", quoted(&summary(job, a))).unwrap();
        if let Some(r) = &config.runbook_url {
            writeln!(out, "          runbook_url: {}", quoted(r)).unwrap();
        }
    }
    out
}

/// The alerting rule's summary: fixed text, so `promtool test rules` can expect it.
pub fn summary(job: &str, a: &super::BurnAlert) -> String {
    format!(
        "{job}: the error budget burns faster than {}x over both {} and {}",
        a.burn_rate.normalize(),
        compact(&a.long_text),
        compact(&a.short_text)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_one_unit() {
        assert_eq!(promql_duration(90 * 60_000), "90m");
        assert_eq!(promql_duration(3 * 86_400_000), "3d");
        assert_eq!(promql_duration(1_500), "1500ms");
    }
}
