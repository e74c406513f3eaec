//! `GET /`: one server-rendered page listing the jobs, their status and their firing alerts.
//! No script: it refreshes itself every five seconds.

use std::fmt::Write;

use super::registry::Registry;

/// Text safe inside HTML elements and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub fn render(reg: &Registry) -> String {
    let mut jobs = String::new();
    let mut alerts = String::new();
    for e in reg.jobs.values() {
        let view = reg.view(e);
        let text = |k: &str| view[k].as_str().map(str::to_string).unwrap_or_else(|| view[k].to_string());
        let status = text("status");
        let watermark = view["watermark"].as_str().unwrap_or("—").to_string();
        let error = view["last_error"].as_str().unwrap_or("").to_string();
        writeln!(
            jobs,
            "<tr class=\"job\" data-job=\"{name}\"><td>{name}</td><td>{kind}</td><td class=\"status {status}\">{status}</td><td>{inn}</td><td>{out}</td><td>{wm}</td><td>{err}</td></tr>",
            name = escape(&e.job.name),
            kind = escape(&text("kind")),
            status = escape(&status),
            inn = view["records_in"],
            out = view["records_out"],
            wm = escape(&watermark),
            err = escape(&error),
        )
        .unwrap();
        let Some(c) = &e.counters else { continue };
        for f in c.firing.lock().expect("not poisoned").iter() {
            let labels: Vec<String> = f.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            writeln!(
                alerts,
                "<tr class=\"alert\"><td>{job}</td><td>{rule}</td><td>{sev}</td><td>{labels}</td><td>{summary}</td><td>{since}</td></tr>",
                job = escape(&e.job.name),
                rule = escape(&f.rule),
                sev = escape(&f.severity),
                labels = escape(&labels.join(", ")),
                summary = escape(f.summary.as_deref().unwrap_or("")),
                since = escape(&crate::alert::rfc3339(f.starts_at)),
            )
            .unwrap();
        }
    }
    if jobs.is_empty() {
        jobs.push_str("<tr><td colspan=\"7\">No jobs yet: <code>osprey submit JOB.toml</code> or POST /v1/jobs.</td></tr>\n");
    }
    if alerts.is_empty() {
        alerts.push_str("<tr><td colspan=\"6\">Nothing is firing.</td></tr>\n");
    }
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<title>Osprey</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; margin-bottom: 2em; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: left; }}
.running {{ color: #186a3b; }} .failed {{ color: #b03a2e; }} .stopped {{ color: #7b7d7d; }}
</style></head>
<body>
<h1>Osprey</h1>
<h2>Jobs</h2>
<table id="jobs"><tr><th>job</th><th>kind</th><th>status</th><th>records in</th><th>records out</th><th>watermark</th><th>last error</th></tr>
{jobs}</table>
<h2>Firing alerts</h2>
<table id="alerts"><tr><th>job</th><th>rule</th><th>severity</th><th>labels</th><th>summary</th><th>since</th></tr>
{alerts}</table>
<p><a href="/metrics">/metrics</a> · <a href="/openapi.json">/openapi.json</a></p>
</body></html>
"#
    )
}
