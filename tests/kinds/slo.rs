//! SLO jobs: the same alerts as Prometheus, the guards, latency SLOs.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use serde_json::Value;

use super::{assert_valid_alerts, osprey, osprey_ok, rows_of, stderr, Rng};

/// 2026-01-05T00:00:00Z: minute 0 of the test traffic.
const T0: i64 = 1_767_571_200_000;
const MINUTE: i64 = 60_000;

const AVAILABILITY: &str = r#"name = "availability"
kind = "slo"
[slo]
objective = 0.999
good = "status < 500"
labels = ["service"]
min_events = 20
[source]
kind = "file"
path = "traffic.jsonl"
[source.schema]
ts = "timestamp"
service = "string"
status = "int64"
duration_ms = "float64"
[event_time]
column = "ts"
[alerts]
file = "alerts.jsonl"
"#;

/// One service's traffic: events per minute, and the error probability of a minute.
struct Service {
    name: &'static str,
    /// An event every `1 / per_minute` minutes when below 1.
    per_minute: f64,
    error_rate: fn(i64) -> f64,
}

/// Eight hours of requests: a fast burn on api (a page), a one-minute blip on api that must
/// not page, a slow burn on web (tickets), and a service too quiet to page on.
fn scenario() -> Vec<Service> {
    vec![
        Service { name: "api", per_minute: 100.0, error_rate: |m| if (120..135).contains(&m) { 0.3 } else if m == 300 { 0.5 } else { 0.0005 } },
        Service { name: "web", per_minute: 30.0, error_rate: |m| if (200..400).contains(&m) { 0.012 } else { 0.0005 } },
        Service { name: "tiny", per_minute: 0.5, error_rate: |_| 0.5 },
    ]
}

const MINUTES: i64 = 480;

/// The traffic as JSON lines, and per service and minute the (bad, total) counts.
fn traffic(services: &[Service]) -> (String, BTreeMap<&'static str, Vec<(u64, u64)>>) {
    let mut rng = Rng(0x5eed);
    let mut lines = Vec::new();
    let mut counts: BTreeMap<&'static str, Vec<(u64, u64)>> = BTreeMap::new();
    for m in 0..MINUTES {
        for s in services {
            let n = if s.per_minute >= 1.0 { s.per_minute as i64 } else { (m as f64 * s.per_minute).floor() as i64 - ((m - 1) as f64 * s.per_minute).floor() as i64 };
            let c = counts.entry(s.name).or_insert_with(|| vec![(0, 0); MINUTES as usize]);
            for i in 0..n {
                let ts = T0 + m * MINUTE + i * MINUTE / n.max(1);
                let bad = rng.next_f64() < (s.error_rate)(m);
                let status = if bad { 503 } else { 200 };
                let duration = 20.0 + 400.0 * rng.next_f64();
                lines.push((ts, format!("{{\"ts\":{ts},\"service\":\"{}\",\"status\":{status},\"duration_ms\":{duration:.1}}}", s.name)));
                c[m as usize].0 += bad as u64;
                c[m as usize].1 += 1;
            }
        }
    }
    lines.sort_by_key(|(ts, _)| *ts);
    (lines.into_iter().map(|(_, l)| l + "\n").collect(), counts)
}

/// Per minute of the scenario, the alerts Osprey had firing: label sets as Prometheus shows
/// them (the recording rules add `slo`).
fn firing_by_minute(alerts: &[Value]) -> Vec<Vec<BTreeMap<String, String>>> {
    let mut out = vec![Vec::new(); MINUTES as usize + 1];
    let at = |v: &Value| v.as_str().map(|s| (chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis() - T0) / MINUTE);
    for a in alerts.iter().filter(|a| a["status"] == "resolved" || !alerts.iter().any(|b| b["fingerprint"] == a["fingerprint"] && b["status"] == "resolved" && b["starts_at"] == a["starts_at"])) {
        let from = at(&a["starts_at"]).unwrap();
        let to = at(&a["ends_at"]).unwrap_or(MINUTES + 1);
        let mut labels: BTreeMap<String, String> =
            a["labels"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())).collect();
        labels.remove("alertname");
        labels.insert("slo".into(), "availability".into());
        for m in from..to.min(MINUTES + 1) {
            out[m as usize].push(labels.clone());
        }
    }
    out
}

#[test]
fn burn_rate_alerts_fire_and_resolve_at_the_minutes_prometheus_evaluates_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("job.toml"), AVAILABILITY).unwrap();
    let (text, counts) = traffic(&scenario());
    std::fs::write(d.join("traffic.jsonl"), text).unwrap();
    // Without rows, series that cannot burn until they count new events are not evaluated at
    // every pane end: the alerts must be the same, byte for byte.
    osprey_ok(&["replay", "job.toml", "--quiet"], d);
    let without_rows = std::fs::read_to_string(d.join("alerts.jsonl")).unwrap();
    osprey_ok(&["replay", "job.toml", "--quiet", "--rows", "rows.jsonl"], d);
    assert_eq!(std::fs::read_to_string(d.join("alerts.jsonl")).unwrap(), without_rows, "alerts differ with --rows");
    let alerts = rows_of(&d.join("alerts.jsonl"));
    assert_valid_alerts(&alerts);

    // What the scenario must show, before comparing with Prometheus.
    let fired = |service: &str, rule: &str| -> Vec<i64> {
        alerts
            .iter()
            .filter(|a| a["status"] == "firing" && a["labels"]["service"] == service && a["rule"] == rule)
            .map(|a| (chrono::DateTime::parse_from_rfc3339(a["starts_at"].as_str().unwrap()).unwrap().timestamp_millis() - T0) / MINUTE)
            .collect()
    };
    let page = fired("api", "page-1h-5m");
    assert_eq!(page.len(), 1, "the fast burn pages once: {page:?}");
    assert!((121..=135).contains(&page[0]), "within the burn: minute {}", page[0]);
    assert!(alerts.iter().any(|a| a["status"] == "resolved" && a["rule"] == "page-1h-5m"), "the page resolves");
    assert!(fired("tiny", "page-1h-5m").is_empty() && fired("tiny", "page-6h-30m").is_empty(), "min_events keeps a quiet service from paging");
    assert!(!fired("web", "ticket-1d-2h").is_empty(), "the slow burn opens a ticket");
    let a = alerts.iter().find(|a| a["rule"] == "page-1h-5m").unwrap();
    assert_eq!(a["labels"]["long_window"], "1h");
    assert_eq!(a["labels"]["short_window"], "5m");
    assert_eq!(a["threshold"], 14.4);
    assert!(a["value"].as_f64().unwrap() > 14.4);
    assert!(a["evidence"]["short"]["burn_rate"].as_f64().unwrap() > 14.4);

    // Rows: one per series and minute once it has events, with every window's burn rate.
    let rows = rows_of(&d.join("rows.jsonl"));
    let api: Vec<&Value> = rows.iter().filter(|r| r["service"] == "api").collect();
    assert_eq!(api.len(), MINUTES as usize);
    let r = api[130];
    let (bad, total): (u64, u64) = counts["api"][125..=130].iter().fold((0, 0), |(b, t), c| (b + c.0, t + c.1));
    let (bad5, total5) = counts["api"][126..=130].iter().fold((0, 0), |(b, t), c| (b + c.0, t + c.1));
    assert!((r["burn_rate_5m"].as_f64().unwrap() - bad5 as f64 / total5 as f64 / 0.001).abs() < 1e-6, "{r}");
    assert!(bad > 0 && total > 0);
    assert!(r["error_budget_remaining"].as_f64().unwrap() < 1.0);

    // Prometheus: counters sampled at every minute, the rules `osprey slo rules` exports.
    let rules = osprey(&["slo", "rules", "job.toml"], d);
    assert!(rules.status.success(), "{}", stderr(&rules));
    std::fs::write(d.join("rules.yml"), &rules.stdout).unwrap();
    let check = std::process::Command::new("promtool").args(["check", "rules", "rules.yml"]).current_dir(d).output().expect("promtool (Debian package prometheus) is installed");
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    std::fs::write(d.join("test.yml"), promtool_test(&counts, &firing_by_minute(&alerts))).unwrap();
    let test = std::process::Command::new("promtool").args(["test", "rules", "test.yml"]).current_dir(d).output().unwrap();
    let out = String::from_utf8_lossy(&test.stdout).into_owned() + &String::from_utf8_lossy(&test.stderr);
    assert!(test.status.success(), "Prometheus disagrees with Osprey:\n{}", &out[..out.len().min(6000)]);
}

/// A `promtool test rules` file: the counters, and at every minute the alerts Osprey fired.
fn promtool_test(counts: &BTreeMap<&'static str, Vec<(u64, u64)>>, firing: &[Vec<BTreeMap<String, String>>]) -> String {
    let mut y = String::from("rule_files: [rules.yml]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n");
    for (service, minutes) in counts {
        for (metric, pick) in [("osprey_slo_events_total", 1), ("osprey_slo_bad_events_total", 0)] {
            let mut sum = 0;
            let mut values = vec!["0".to_string()];
            for c in minutes {
                sum += if pick == 1 { c.1 } else { c.0 };
                values.push(sum.to_string());
            }
            writeln!(y, "      - series: '{metric}{{slo=\"availability\",service=\"{service}\"}}'\n        values: '{}'", values.join(" ")).unwrap();
        }
    }
    y.push_str("    alert_rule_test:\n");
    let summary = |labels: &BTreeMap<String, String>| {
        let rate = match (labels["long_window"].as_str(), labels["short_window"].as_str()) {
            ("1h", _) => "14.4",
            ("6h", "30m") => "6",
            ("1d", _) => "3",
            _ => "1",
        };
        format!("availability: the error budget burns faster than {rate}x over both {} and {}", labels["long_window"], labels["short_window"])
    };
    for (m, alerts) in firing.iter().enumerate().skip(1) {
        writeln!(y, "      - eval_time: {m}m\n        alertname: availability").unwrap();
        if alerts.is_empty() {
            y.push_str("        exp_alerts: []\n");
            continue;
        }
        y.push_str("        exp_alerts:\n");
        for labels in alerts {
            y.push_str("          - exp_labels:\n");
            for (k, v) in labels {
                writeln!(y, "              {k}: \"{v}\"").unwrap();
            }
            writeln!(y, "            exp_annotations:\n              summary: \"{}\"", summary(labels)).unwrap();
        }
    }
    y
}

#[test]
fn a_label_with_a_hundred_thousand_values_folds_into_one_overflow_series() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let job = AVAILABILITY.replace("labels = [\"service\"]", "labels = [\"service\"]\nmax_series = 1000").replace("min_events = 20", "min_events = 0");
    std::fs::write(d.join("job.toml"), job).unwrap();
    let mut text = String::new();
    for i in 0..100_000i64 {
        // Every event its own "service" (a user id where a service belongs), all bad.
        writeln!(text, "{{\"ts\":{},\"service\":\"user-{i}\",\"status\":500,\"duration_ms\":1}}", T0 + i * 10).unwrap();
    }
    std::fs::write(d.join("traffic.jsonl"), text).unwrap();
    let err = osprey_ok(&["replay", "job.toml", "--rows", "rows.jsonl"], d);
    assert_eq!(err.matches("more than max_series = 1000").count(), 1, "logged once: {err}");
    assert!(err.contains("`service` has 1000 distinct values"), "{err}");
    assert!(err.contains("folded label sets 99000") || err.contains("folded events 99000"), "{err}");
    let alerts = rows_of(&d.join("alerts.jsonl"));
    let overflow = alerts.iter().filter(|a| a["labels"]["service"] == "__overflow__").count();
    assert!(overflow >= 1, "the overflow series alerts like any other");
    let rows = rows_of(&d.join("rows.jsonl"));
    let series: std::collections::BTreeSet<&str> = rows.iter().map(|r| r["service"].as_str().unwrap()).collect();
    assert!(series.len() <= 1001, "{} series", series.len());
}

#[test]
fn a_latency_slo_counts_slow_requests_as_bad_and_replays_give_the_same_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let job = AVAILABILITY
        .replace("name = \"availability\"", "name = \"latency\"")
        .replace("objective = 0.999", "objective = 0.99")
        .replace("good = \"status < 500\"", "good = \"duration_ms <= 300\"")
        .replace("[source]", "[[slo.alert]]\nseverity = \"page\"\nlong = \"30m\"\nshort = \"5m\"\nburn_rate = 10\n[source]");
    std::fs::write(d.join("job.toml"), job).unwrap();
    let mut text = String::new();
    let mut rng = Rng(9);
    for m in 0..120i64 {
        for i in 0..60i64 {
            // Slow requests 0.5% of the time; minutes 60-70: a third of them.
            let slow = rng.next_f64() < if (60..70).contains(&m) { 0.33 } else { 0.005 };
            let ms = if slow { 900.0 } else { 40.0 };
            writeln!(text, "{{\"ts\":{},\"service\":\"api\",\"status\":200,\"duration_ms\":{ms}}}", T0 + m * MINUTE + i * 1000).unwrap();
        }
    }
    std::fs::write(d.join("traffic.jsonl"), &text).unwrap();
    osprey_ok(&["replay", "job.toml", "--quiet"], d);
    let first = std::fs::read_to_string(d.join("alerts.jsonl")).unwrap();
    let alerts: Vec<Value> = first.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(alerts.len(), 2, "{first}");
    assert_eq!(alerts[0]["rule"], "page-30m-5m");
    let start = (chrono::DateTime::parse_from_rfc3339(alerts[0]["starts_at"].as_str().unwrap()).unwrap().timestamp_millis() - T0) / MINUTE;
    assert!((61..=70).contains(&start), "minute {start}");
    assert_eq!(alerts[1]["status"], "resolved");
    // The same input cut into two files, replayed again: the same records, byte for byte.
    let lines: Vec<&str> = text.lines().collect();
    std::fs::create_dir(d.join("parts")).unwrap();
    std::fs::write(d.join("parts/a.jsonl"), lines[..3000].join("\n") + "\n").unwrap();
    std::fs::write(d.join("parts/b.jsonl"), lines[3000..].join("\n") + "\n").unwrap();
    osprey_ok(&["replay", "job.toml", "--quiet", "--input", "parts/*.jsonl", "--output", "again.jsonl"], d);
    assert_eq!(std::fs::read_to_string(d.join("again.jsonl")).unwrap(), first);
}

#[test]
fn bad_slo_tables_are_refused_with_the_line_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cases = [
        ("objective = 0.999", "objective = 1.5", "fraction between 0 and 1"),
        ("good = \"status < 500\"", "good = \"stats < 500\"", "stats"),
        ("good = \"status < 500\"", "good = \"status + 1\"", "not a boolean"),
        ("labels = [\"service\"]", "labels = [\"servce\"]", "did you mean `service`"),
        ("min_events = 20", "min_events = 20\npane = \"1m\"\n[[slo.alert]]\nlong = \"90s\"\nshort = \"5m\"\nburn_rate = 2", "whole number of panes"),
    ];
    for (from, to, expect) in cases {
        std::fs::write(d.join("bad.toml"), AVAILABILITY.replace(from, to)).unwrap();
        let o = osprey(&["validate", "bad.toml"], d);
        let err = stderr(&o);
        assert!(!o.status.success(), "{to}: accepted");
        assert!(err.contains(expect), "{to}: {err}");
        assert!(err.contains("bad.toml:"), "names the file and line: {err}");
    }
    let _ = Path::new("unused");
}
