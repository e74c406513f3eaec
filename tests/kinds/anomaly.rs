//! Anomaly jobs and `eval nab`: injected anomalies found, noise quiet, co-occurring anomalies
//! one incident, the NAB score of a fixture worked out by hand.

use std::fmt::Write;

use serde_json::Value;

use super::{assert_valid_alerts, osprey_ok, rows_of, Rng};

const T0: i64 = 1_767_571_200_000;
const MINUTE: i64 = 60_000;

const JOB: &str = r#"name = "latency_anomaly"
kind = "anomaly"
sql = "SELECT service, endpoint, avg(latency_ms) AS latency_ms FROM events GROUP BY service, endpoint"
[source]
kind = "file"
path = "events.jsonl"
[source.schema]
ts = "timestamp"
service = "string"
endpoint = "string"
latency_ms = "float64"
[event_time]
column = "ts"
[window]
kind = "tumbling"
size = "1m"
[anomaly]
series = ["service", "endpoint"]
features = ["latency_ms"]
[alerts]
file = "alerts.jsonl"
"#;

/// Six series for 300 minutes of noisy latency; `spike(series, minute)` multiplies a minute.
fn events(spike: impl Fn(&str, i64) -> f64) -> String {
    let series = [("checkout", "/pay"), ("checkout", "/confirm"), ("checkout", "/cart"), ("search", "/q"), ("search", "/suggest"), ("cart", "/add")];
    let mut rng = Rng(11);
    let mut out = String::new();
    for m in 0..300 {
        for (service, endpoint) in series {
            for i in 0..6 {
                let base = 50.0 + 10.0 * rng.next_f64();
                let v = base * spike(&format!("{service}{endpoint}"), m);
                writeln!(out, "{{\"ts\":{},\"service\":\"{service}\",\"endpoint\":\"{endpoint}\",\"latency_ms\":{v:.2}}}", T0 + m * MINUTE + i * 10_000).unwrap();
            }
        }
    }
    out
}

fn minute(v: &Value) -> i64 {
    (chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap().timestamp_millis() - T0) / MINUTE
}

#[test]
fn injected_anomalies_are_flagged_co_occurring_ones_are_one_incident_and_noise_stays_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("job.toml"), JOB).unwrap();
    // Minute 200: checkout's three endpoints slow down together, and search/q on its own.
    // Minute 250: only cart/add.
    let text = events(|s, m| match (s, m) {
        (s, 200) if s.starts_with("checkout") || s == "search/q" => 5.0,
        ("cart/add", 250) => 5.0,
        _ => 1.0,
    });
    std::fs::write(d.join("events.jsonl"), text).unwrap();
    osprey_ok(&["replay", "job.toml", "--rows", "rows.jsonl", "--quiet"], d);
    let alerts = rows_of(&d.join("alerts.jsonl"));
    assert_valid_alerts(&alerts);
    let firing: Vec<&Value> = alerts.iter().filter(|a| a["status"] == "firing").collect();
    let at = |m: i64| firing.iter().filter(|a| minute(&a["starts_at"]) == m + 1).collect::<Vec<_>>();
    let incidents200 = at(200);
    assert_eq!(incidents200.len(), 2, "checkout's endpoints one incident, search another: {incidents200:?}");
    let checkout = incidents200.iter().find(|a| a["labels"]["service"] == "checkout").expect("a checkout incident");
    assert_eq!(checkout["evidence"]["members"].as_array().unwrap().len(), 3, "{checkout}");
    assert!(checkout["evidence"]["members"][0]["moved"]["latency_ms"].as_f64().unwrap() > 3.0);
    assert_eq!(at(250).len(), 1);
    assert_eq!(at(250)[0]["labels"]["incident"], "cart /add");
    // Nothing else fired: stationary noise over 6 series and 300 minutes stayed quiet.
    let others: Vec<String> = firing.iter().filter(|a| ![201, 251].contains(&minute(&a["starts_at"]))).map(|a| format!("{} at minute {}", a["labels"], minute(&a["starts_at"]))).collect();
    let other = others.len();
    let rows = rows_of(&d.join("rows.jsonl"));
    let scored = rows.iter().filter(|r| !r["score"].is_null()).count();
    let false_positives = rows.iter().filter(|r| r["anomalous"] == true).filter(|r| ![200, 250].contains(&minute(&r["window_start"]))).count();
    assert!(other == 0 && false_positives as f64 / scored as f64 <= 0.005, "{other} other incidents {others:?}; {false_positives} of {scored} quiet windows flagged");
    // Warming up: no score for a series' first windows.
    assert!(rows.iter().filter(|r| minute(&r["window_start"]) < 30).all(|r| r["score"].is_null()));
}

#[test]
fn eval_nab_scores_a_two_series_fixture_as_worked_out_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("nab/fixture")).unwrap();
    // Scored with `eval nab`'s default (`artime`, handed each series' range as NAB hands it)
    // and with `likelihood`, a job's default: both catch both spikes, and nothing else.
    // Two flat series of 400 rows, 5 minutes apart. a: one spike at row 220, inside its window
    // (rows 200..=239). b: one spike at row 100, before its window (rows 300..=339), none in it.
    let ts = |i: usize| (chrono::NaiveDate::from_ymd_opt(2020, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap() + chrono::Duration::minutes(5 * i as i64)).format("%Y-%m-%d %H:%M:%S").to_string();
    for (name, spike) in [("a.csv", 220), ("b.csv", 100)] {
        let mut csv = String::from("timestamp,value\n");
        for i in 0..400 {
            writeln!(csv, "{},{}", ts(i), if i == spike { 90.0 } else { 10.0 }).unwrap();
        }
        std::fs::write(d.join("nab/fixture").join(name), csv).unwrap();
    }
    let labels = serde_json::json!({
        "fixture/a.csv": [[format!("{}.000000", ts(200)), format!("{}.000000", ts(239))]],
        "fixture/b.csv": [[format!("{}.000000", ts(300)), format!("{}.000000", ts(339))]],
    });
    std::fs::write(d.join("nab/labels.json"), labels.to_string()).unwrap();
    for detector in [&["--detector", "likelihood"][..], &[]] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_osprey")).args(["eval", "nab", "nab", "--results", "out"]).args(detector).current_dir(d).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let report = String::from_utf8_lossy(&o.stdout).into_owned();
        // By hand, NAB's standard profile: a's detection at p = -(239 - 220 + 1) / 40 = -0.5 scores
        // sigma(-0.5) / sigma(-1); b's costs A_FP (no window before it) and its window A_FN.
        let sigma = |p: f64| 2.0 / (1.0 + (5.0 * p).exp()) - 1.0;
        let raw = sigma(-0.5) / sigma(-1.0) - 0.11 - 1.0;
        let expected = 100.0 * (raw - -2.0) / (2.0 - -2.0);
        let total: f64 = report.lines().find(|l| l.starts_with("total")).unwrap().split_whitespace().last().unwrap().parse().unwrap();
        assert!((total - expected).abs() < 0.051, "{detector:?}: {total} vs {expected:.2}\n{report}");
    }
    // NAB's results layout, one row per input row.
    let out = std::fs::read_to_string(d.join("out/osprey/fixture/osprey_a.csv")).unwrap();
    assert!(out.starts_with("timestamp,value,anomaly_score,label\n"));
    assert_eq!(out.lines().count(), 401);
    let row220: Vec<&str> = out.lines().nth(221).unwrap().split(',').collect();
    assert!(row220[2].parse::<f64>().unwrap() >= 0.5 && row220[3] == "1", "{row220:?}");
}

/// A day's worth of minutes.
const DAY_MINUTES: i64 = 24 * 60;

/// Requests per minute of three services over three days: each swings ±60% around its mean
/// over the day (peaking at 15:00 UTC), with 2% noise, and frontend triples for its nightly
/// batch, 02:00–02:10. `night_surge`: search's 03:00–03:30 of the third day at its daily mean,
/// two and a half times its usual night, and still below every afternoon.
fn daily_traffic(night_surge: bool) -> String {
    let mut rng = Rng(5);
    let mut out = String::new();
    for m in 0..3 * DAY_MINUTES {
        let hours = (m % DAY_MINUTES) as f64 / 60.0;
        let cycle = 1.0 + 0.6 * (std::f64::consts::TAU * (hours - 9.0) / 24.0).sin();
        for (service, mean) in [("frontend", 3000.0), ("search", 1200.0), ("checkout", 400.0)] {
            let surge = night_surge && service == "search" && (2 * DAY_MINUTES + 180..2 * DAY_MINUTES + 210).contains(&m);
            let batch = service == "frontend" && (120..130).contains(&(m % DAY_MINUTES));
            let level = if surge { mean } else if batch { 3.0 * mean * cycle } else { mean * cycle };
            let requests = (level * (1.0 + 0.02 * (2.0 * rng.next_f64() - 1.0))).round();
            writeln!(out, "{{\"ts\":{},\"service\":\"{service}\",\"requests\":{requests}}}", T0 + m * MINUTE).unwrap();
        }
    }
    out
}

/// The firing alerts of a per-service traffic job over `events`, with `detectors`.
fn traffic_alerts(d: &std::path::Path, detectors: &str, events: &str) -> Vec<Value> {
    let job = format!(
        "name = \"traffic\"\nkind = \"anomaly\"\nsql = \"SELECT service, sum(requests) AS requests FROM events GROUP BY service\"\n[source]\nkind = \"file\"\npath = \"traffic.jsonl\"\n[source.schema]\nts = \"timestamp\"\nservice = \"string\"\nrequests = \"float64\"\n[event_time]\ncolumn = \"ts\"\n[window]\nkind = \"tumbling\"\nsize = \"1m\"\n[anomaly]\nseries = [\"service\"]\nfeatures = [\"requests\"]\ndetectors = {detectors}\n[alerts]\nfile = \"alerts.jsonl\"\n"
    );
    std::fs::write(d.join("traffic.toml"), job).unwrap();
    std::fs::write(d.join("traffic.jsonl"), events).unwrap();
    let _ = std::fs::remove_file(d.join("alerts.jsonl"));
    osprey_ok(&["replay", "traffic.toml", "--quiet"], d);
    let alerts = if d.join("alerts.jsonl").exists() { rows_of(&d.join("alerts.jsonl")) } else { Vec::new() };
    assert_valid_alerts(&alerts);
    alerts.into_iter().filter(|a| a["status"] == "firing").collect()
}

#[test]
fn the_seasonal_baseline_keeps_daily_peaks_quiet_and_catches_a_night_at_the_day_s_level() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let at = |a: &Value| format!("{} at minute {}", a["labels"]["service"], minute(&a["starts_at"]));
    let surge_window = 2 * DAY_MINUTES + 180..=2 * DAY_MINUTES + 211;
    // A baseline of the last hours (`mad`'s) has the day's ramp in its spread: a night at the
    // day's level is within it, and missed.
    let plain = traffic_alerts(d, "[\"mad\"]", &daily_traffic(true));
    assert!(!plain.iter().any(|a| a["labels"]["service"] == "search" && surge_window.contains(&minute(&a["starts_at"]))), "{:?}", plain.iter().map(at).collect::<Vec<_>>());
    // Each hour of the day its own baseline: three days of peaks, troughs and nightly batches
    // raise nothing...
    let quiet = traffic_alerts(d, "[\"seasonal\"]", &daily_traffic(false));
    assert!(quiet.is_empty(), "{:?}", quiet.iter().map(at).collect::<Vec<_>>());
    // ...and search at its daily mean in the middle of the night is caught, nothing else.
    let surge = traffic_alerts(d, "[\"seasonal\"]", &daily_traffic(true));
    let window = 2 * DAY_MINUTES + 180..=2 * DAY_MINUTES + 182;
    assert!(!surge.is_empty() && surge.iter().all(|a| a["labels"]["service"] == "search"), "{:?}", surge.iter().map(at).collect::<Vec<_>>());
    assert!(surge.iter().any(|a| window.contains(&minute(&a["starts_at"]))), "caught within two minutes: {:?}", surge.iter().map(at).collect::<Vec<_>>());
}
