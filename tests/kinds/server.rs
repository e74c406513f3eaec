//! `osprey serve` over HTTP: submissions validated fully (bad and hostile jobs refused with the
//! reason), jobs run and are operated through the API, `/metrics` passes promtool, the OpenAPI
//! document lists every route, a restarted server resumes its jobs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::osprey_ok;

struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start(d: &Path, port: u16) -> Server {
    let log = std::fs::File::create(d.join(format!("serve-{port}.log"))).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_osprey"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir", "data"])
        .env("OSPREY_TOKEN", "s3cret")
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "the server never listened");
        std::thread::sleep(Duration::from_millis(100));
    }
    Server { child, addr }
}

/// (status, JSON body or the text as a string)
fn http(s: &Server, method: &str, path: &str, body: &str, token: Option<&str>) -> (u16, Value) {
    let mut stream = TcpStream::connect(&s.addr).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/toml\r\nContent-Length: {}\r\n{auth}Connection: close\r\n\r\n{body}", s.addr, body.len()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::String(body.to_string())))
}

const JOB: &str = r#"name = "red"
sql = "SELECT service, count(*) AS requests FROM events GROUP BY service"
[source]
kind = "file"
path = "../requests.jsonl"
[source.schema]
ts = "timestamp"
service = "string"
[event_time]
column = "ts"
watermark_delay = "5s"
[window]
kind = "tumbling"
size = "1m"
[sink]
kind = "file"
path = "../out/red.jsonl"
"#;

fn wait_for(s: &Server, name: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, j) = http(s, "GET", &format!("/v1/jobs/{name}"), "", None);
        if done(&j) || Instant::now() > deadline {
            return j;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn jobs_are_submitted_validated_and_operated_over_http_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("data")).unwrap();
    osprey_ok(&["generate", "--events", "20000", "--output", "data/requests.jsonl"], d);
    let port = free_port();
    let s = start(d, port);

    // No token, a wrong one: refused before anything is read.
    assert_eq!(http(&s, "POST", "/v1/jobs", JOB, None).0, 401);
    assert_eq!(http(&s, "POST", "/v1/jobs", JOB, Some("s3cre")).0, 401);
    // Bad jobs: the line, the column and the reason.
    let (status, e) = http(&s, "POST", "/v1/jobs", &JOB.replace("count(*)", "cuont(*)"), Some("s3cret"));
    assert_eq!(status, 422, "{e}");
    assert_eq!((e["error"]["line"].as_u64(), e["error"]["column"].as_u64()), (Some(2), Some(24)), "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("cuont"));
    let (status, e) = http(&s, "POST", "/v1/validate", "name = \"x\"\nkind = [", Some("s3cret"));
    assert_eq!(status, 422, "{e}");
    // Hostile jobs: the server's disk is out of reach.
    let hostile = [
        JOB.replace("../requests.jsonl", "/etc/passwd"),
        JOB.replace("../requests.jsonl", "../../../../etc/passwd"),
        JOB.replace("../out/red.jsonl", "/tmp/osprey-hostile.jsonl"),
        JOB.replace("SELECT service, count(*) AS requests FROM events GROUP BY service", "COPY (SELECT 1) TO '/tmp/x.csv'"),
        JOB.replace("FROM events", "FROM read_csv('/etc/passwd')"),
        JOB.replace("SELECT service, count(*) AS requests FROM events GROUP BY service", "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'"),
    ];
    for (i, job) in hostile.iter().enumerate() {
        let (status, e) = http(&s, "POST", "/v1/jobs", &job.replace("name = \"red\"", &format!("name = \"evil{i}\"")), Some("s3cret"));
        assert!((400..500).contains(&status), "hostile job {i} accepted: {e}");
    }
    assert!(!Path::new("/tmp/osprey-hostile.jsonl").exists());
    let (_, all) = http(&s, "GET", "/v1/jobs", "", None);
    assert_eq!(all["jobs"].as_array().unwrap().len(), 0, "nothing refused was registered: {all}");

    // A good job runs to the end of its file, its rows in the data directory.
    let (status, j) = http(&s, "POST", "/v1/jobs", JOB, Some("s3cret"));
    assert_eq!(status, 201, "{j}");
    assert_eq!(http(&s, "POST", "/v1/jobs", JOB, Some("s3cret")).0, 409, "one job per name");
    let j = wait_for(&s, "red", |j| j["finished"] == true);
    assert_eq!((j["status"].as_str(), j["records_in"].as_u64()), (Some("stopped"), Some(20_000)), "{j}");
    assert!(std::fs::read_to_string(d.join("data/out/red.jsonl")).unwrap().lines().count() >= 5, "one row per service and minute");
    // Restart it: it reads its file again (its old output kept aside, never truncated).
    let (status, j) = http(&s, "POST", "/v1/jobs/red/restart", "", Some("s3cret"));
    assert_eq!(status, 200, "{j}");
    wait_for(&s, "red", |j| j["finished"] == true);
    assert_eq!(http(&s, "GET", "/v1/jobs/nope", "", None).0, 404);

    // Metrics: the Prometheus text format, as promtool reads it.
    let (status, metrics) = http(&s, "GET", "/metrics", "", None);
    assert_eq!(status, 200);
    let text = metrics.as_str().unwrap().to_string();
    assert!(text.contains("osprey_job_records_in_total{job=\"red\"} 20000"), "{text}");
    assert!(text.contains("osprey_job_window_output_seconds_bucket{job=\"red\",le=\"+Inf\"}"), "{text}");
    let mut check = Command::new("promtool").args(["check", "metrics"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    check.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // The OpenAPI document names every route the server answers.
    let (_, doc) = http(&s, "GET", "/openapi.json", "", None);
    for route in ["/v1/jobs", "/v1/validate", "/v1/jobs/{name}", "/v1/jobs/{name}/stop", "/v1/jobs/{name}/restart", "/metrics", "/healthz", "/readyz", "/openapi.json"] {
        assert!(doc["paths"].get(route).is_some(), "{route} undocumented");
    }
    assert_eq!(http(&s, "GET", "/healthz", "", None).0, 200);
    assert_eq!(http(&s, "GET", "/readyz", "", None).0, 200);

    // The CLI talks to it.
    let o = Command::new(env!("CARGO_BIN_EXE_osprey")).args(["jobs", "--server", &format!("http://{}", s.addr)]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("red"), "{}", String::from_utf8_lossy(&o.stderr));

    // A restarted server resumes its registry.
    drop(s);
    let s = start(d, free_port());
    let (status, j) = http(&s, "GET", "/v1/jobs/red", "", None);
    assert_eq!(status, 200, "{j}");
    assert_eq!(http(&s, "DELETE", "/v1/jobs/red", "", Some("s3cret")).0, 200);
    assert_eq!(http(&s, "GET", "/v1/jobs/red", "", None).0, 404);
}

#[test]
fn the_server_refuses_to_listen_beyond_loopback_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_osprey"))
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir", "data"])
        .env_remove("OSPREY_TOKEN")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("without a token"));
}

const ALERTING: &str = r#"name = "busy"
kind = "invariant"
sql = "SELECT window_start, window_end, service, count(*) AS requests FROM events GROUP BY window_start, window_end, service"
[source]
kind = "file"
path = "../requests.jsonl"
[source.schema]
ts = "timestamp"
service = "string"
[event_time]
column = "ts"
watermark_delay = "5s"
[window]
kind = "tumbling"
size = "1m"
[invariant]
key = ["service"]
violation = "requests > 0"
summary = "{service} <b>served</b> {requests} requests"
value = "requests"
threshold = 0
"#;

/// The page at `/`, loaded by a real headless browser (Debian's chromium): the submitted jobs
/// with their status, and the alerts firing now, with markup from a job's text escaped.
#[test]
fn the_page_shows_submitted_jobs_and_their_firing_alerts_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("data")).unwrap();
    osprey_ok(&["generate", "--events", "5000", "--output", "data/requests.jsonl"], d);
    let s = start(d, free_port());
    for job in [JOB, ALERTING] {
        let (status, body) = http(&s, "POST", "/v1/jobs", job, Some("s3cret"));
        assert_eq!(status, 201, "{body}");
    }
    for name in ["red", "busy"] {
        let j = wait_for(&s, name, |j| j["finished"] == true);
        assert_eq!(j["finished"], true, "{j}");
    }
    // Each job's own log lines, with its name on every one, over HTTP and through `osprey logs`.
    let (status, logs) = http(&s, "GET", "/v1/jobs/busy/logs", "", None);
    assert_eq!(status, 200, "{logs}");
    let lines = logs["lines"].as_array().unwrap();
    assert!(lines.iter().all(|l| l["job"] == "busy"), "{logs}");
    assert!(lines.iter().any(|l| l["message"].as_str().unwrap().contains("finished its input")), "{logs}");
    let printed = Command::new(env!("CARGO_BIN_EXE_osprey"))
        .args(["logs", "red", "--server", &format!("http://{}", s.addr)])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&printed.stdout);
    assert!(printed.contains("red: started") && !printed.contains("busy:"), "{printed}");
    let dom = browser(d, &s, "/", &["--dump-dom"]);
    assert!(dom.contains("<h1>Osprey</h1>"), "the browser rendered the page\n{dom}");
    for name in ["red", "busy"] {
        assert!(dom.contains(&format!("data-job=\"{name}\"")), "job {name} listed\n{dom}");
    }
    let alerts: Vec<&str> = dom.lines().filter(|l| l.contains("class=\"alert\"")).collect();
    assert!(!alerts.is_empty() && alerts.iter().all(|l| l.contains("<td>busy</td>")), "busy's alerts listed\n{dom}");
    assert!(alerts.iter().any(|l| l.contains("service=checkout")), "{alerts:?}");
    assert!(alerts.iter().all(|l| !l.contains("<b>") && l.contains("&lt;b&gt;served")), "a job's text is escaped, not markup\n{alerts:?}");
}

/// What a real headless browser (Debian's chromium) makes of `path`: its stdout (the DOM with
/// `--dump-dom`), then its stderr.
fn browser(d: &Path, s: &Server, path: &str, args: &[&str]) -> String {
    let browser = ["chromium", "chromium-browser"].into_iter().find(|b| Command::new(b).arg("--version").output().is_ok());
    let browser = browser.expect("chromium is installed (./scripts/test.sh installs Debian's chromium)");
    let out = Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"])
        .args(args)
        .arg(format!("http://{}{path}", s.addr))
        .env("HOME", d)
        .output()
        .unwrap();
    format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The demo's incident (a 5xx burst on checkout) under an SLO job, with a page pair whose
/// severity is markup and 1% of records malformed.
const INCIDENT_SLO: &str = r#"name = "availability"
kind = "slo"
[slo]
objective = 0.995
period = "1d"
good = "status < 500"
labels = ["service"]
pane = "1m"
[[slo.alert]]
severity = "page <img src=x onerror=alert(1)>"
long = "1h"
short = "5m"
burn_rate = 14.4
[[slo.alert]]
severity = "ticket"
long = "6h"
short = "30m"
burn_rate = 6
[source]
kind = "generator"
stream = "http-requests"
rate = 100
speed = 600
incident_at = "30m"
incident_for = "10m"
malformed_fraction = 0.01
[source.schema]
ts = "timestamp"
service = "string"
status = "int64"
[event_time]
column = "ts"
watermark_delay = "5s"
[alerts]
stdout = false
"#;

/// The on-call page in a real browser while the incident runs: checkout's error budget line
/// falls below zero, the fast pair's firing span is drawn on its burn-rate chart, the
/// timeline holds the pair's fired and resolved transitions with links to their records, the
/// job is amber and says why (dead letters), and the markup in a label is shown as text. The
/// same data is served as JSON. A screenshot is kept in the test's target folder.
#[test]
fn the_on_call_page_draws_the_budget_burn_rates_firing_spans_and_alert_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("data")).unwrap();
    let s = start(d, free_port());
    let (status, body) = http(&s, "POST", "/v1/jobs", INCIDENT_SLO, Some("s3cret"));
    assert_eq!(status, 201, "{body}");
    let fast = "page <img src=x onerror=alert(1)>-1h-5m";
    let deadline = Instant::now() + Duration::from_secs(90);
    let (timeline, history) = loop {
        let (_, timeline) = http(&s, "GET", "/v1/alerts/timeline", "", None);
        let (_, history) = http(&s, "GET", "/v1/jobs/availability/history", "", None);
        let seen = |status: &str| timeline["transitions"].as_array().unwrap().iter().any(|t| t["rule"] == fast && t["status"] == status);
        let sampled = history["samples"].as_array().is_some_and(|s| s.len() >= 3);
        if (seen("firing") && seen("resolved") && sampled) || Instant::now() > deadline {
            break (timeline, history);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let transitions = timeline["transitions"].as_array().unwrap();
    let fired = transitions.iter().find(|t| t["rule"] == fast && t["status"] == "firing").unwrap_or_else(|| panic!("the fast pair fired\n{timeline}"));
    assert!(transitions.iter().any(|t| t["rule"] == fast && t["status"] == "resolved"), "and resolved\n{timeline}");
    assert_eq!(fired["labels"]["service"], "checkout", "{fired}");
    assert!(history["samples"].as_array().unwrap().iter().any(|s| s["records_in_per_s"].as_f64().unwrap() > 0.0), "{history}");
    assert_eq!(history["health"]["status"], "amber", "{history}");

    // The JSON behind the charts: checkout worst, its budget gone, its points and spans.
    let (status, slo) = http(&s, "GET", "/v1/jobs/availability/slo", "", None);
    assert_eq!(status, 200, "{slo}");
    let worst = &slo["series"][0];
    assert_eq!(worst["labels"]["service"], "checkout", "worst first\n{slo}");
    assert!(worst["error_budget_remaining"].as_f64().unwrap() < 0.0, "{worst}");
    assert!(!worst["spans"][fast].as_array().unwrap().is_empty(), "{worst}");
    let id = worst["id"].as_str().unwrap();
    let (status, one) = http(&s, "GET", &format!("/v1/jobs/availability/slo/{id}"), "", None);
    assert_eq!((status, one["series"][0]["id"].as_str()), (200, Some(id)), "{one}");
    let (status, _) = http(&s, "GET", "/v1/jobs/availability/slo/nosuchseries", "", None);
    assert_eq!(status, 404);
    let record = fired["record"].as_str().unwrap();
    let (status, alert) = http(&s, "GET", record, "", None);
    assert_eq!(status, 200, "{alert}");
    assert_eq!((alert["rule"].as_str(), alert["sequence"].as_u64()), (Some(fast), Some(1)), "{alert}");

    let dom = browser(d, &s, "/", &["--dump-dom"]);
    let section = dom.split("<section class=\"series\"").skip(1).find(|sec| sec.contains("service=checkout")).unwrap_or_else(|| panic!("checkout's series drawn\n{dom}"));
    let attribute = |tag: &str, name: &str| -> f64 {
        let rest = tag.split(&format!("{name}=\"")).nth(1).unwrap_or_else(|| panic!("{name} in {tag}"));
        rest.split('"').next().unwrap().parse().unwrap()
    };
    let budget = section.split("<polyline").find(|p| p.contains("data-series=\"budget left\"")).unwrap_or_else(|| panic!("a budget line\n{section}"));
    let (first, last) = (attribute(budget, "data-first"), attribute(budget, "data-last"));
    assert!(first > 0.0 && last < 0.0, "the budget line falls from {first} to {last}");
    let burn = section.split("<svg").find(|c| c.contains("class=\"chart burn page &lt;img")).unwrap_or_else(|| panic!("the fast pair's chart\n{section}"));
    assert!(burn.contains("<rect class=\"span\" data-rule=\"page &lt;img src=x onerror=alert(1)&gt;-1h-5m\""), "its firing span\n{burn}");
    assert!(burn.contains("data-value=\"14.4\""), "its factor\n{burn}");
    let timeline_html = dom.split("id=\"timeline\"").nth(1).unwrap_or_else(|| panic!("a timeline\n{dom}"));
    for status in ["firing", "resolved"] {
        let line = timeline_html.lines().find(|l| l.contains(&format!("data-status=\"{status}\"")) && l.contains("-1h-5m"));
        let line = line.unwrap_or_else(|| panic!("a {status} line\n{timeline_html}"));
        assert!(line.contains("href=\"/jobs/availability/alerts/"), "{line}");
    }
    assert!(!dom.contains("<img"), "markup in a label stays text\n{dom}");
    assert!(dom.contains("page &lt;img src=x onerror=alert(1)&gt;"), "{dom}");
    let job_row = dom.lines().find(|l| l.contains("class=\"job\"")).unwrap();
    assert!(job_row.contains("amber: dead letters"), "the job says why it is not green\n{job_row}");
    for class in ["records-in", "losses", "lag", "latency"] {
        assert!(dom.contains(&format!("class=\"chart {class}\"")), "the job's {class} chart\n{dom}");
    }
    // The record behind a timeline line, as a page.
    let page = browser(d, &s, &record.trim_start_matches("/v1").to_string(), &["--dump-dom"]);
    assert!(page.contains("id=\"evidence\"") && page.contains("burn_rate") && !page.contains("<img"), "{page}");

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("oncall-page.png");
    let _ = std::fs::remove_file(&shot);
    browser(d, &s, "/", &["--window-size=1400,2400", &format!("--screenshot={}", shot.display())]);
    assert!(std::fs::metadata(&shot).map(|m| m.len() > 10_000).unwrap_or(false), "a screenshot at {}", shot.display());
}

/// schemathesis (from PyPI; `./scripts/test.sh` installs it) generates requests from the
/// OpenAPI document, valid and broken, to every route with the token: no response may be a
/// server error, break the documented schema or use an undocumented status. Job files the
/// document can only call strings are refused by their meaning (422), which is why
/// `positive_data_acceptance` is left out.
#[test]
fn schemathesis_finds_the_server_true_to_its_openapi_document() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("data")).unwrap();
    let s = start(d, free_port());
    let tool = std::env::var("OSPREY_SCHEMATHESIS").unwrap_or_else(|_| "schemathesis".into());
    let out = Command::new(&tool)
        .args(["run", &format!("http://{}/openapi.json", s.addr), "-H", "Authorization: Bearer s3cret"])
        .args(["--max-examples", "25", "--seed", "7", "--exclude-checks", "positive_data_acceptance"])
        .current_dir(d)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool} ({e}): run ./scripts/test.sh, which installs it, or set OSPREY_SCHEMATHESIS"));
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{report}");
    // Every operation schemathesis found in the document was tested, none skipped.
    let number_after = |label: &str| -> Vec<usize> {
        let rest = report.split(label).nth(1).unwrap_or_default();
        rest.split(|c: char| !c.is_ascii_digit()).filter(|t| !t.is_empty()).take(2).map(|t| t.parse().unwrap()).collect()
    };
    let (selected, tested) = (number_after("Selected: "), number_after("Tested: "));
    assert!(selected.len() == 2 && selected[0] == selected[1] && selected[0] >= 12, "{report}");
    assert_eq!(tested.first(), selected.first(), "{report}");
}
