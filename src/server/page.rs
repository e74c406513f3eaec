//! `GET /`: the page an on-call engineer opens. Each job with its status and why it is red;
//! its rates, lag and latency as small charts; each SLO's worst series with the budget left
//! and the burn rates of its alert pairs, the spans they fired shaded; the alerts firing now;
//! and the last day's alert timeline. Drawn on the server, no script; it reloads every 5 s.

use std::fmt::Write;

use super::figures;
use super::html::{document, escape, segment, time};
use super::registry::Registry;
use super::views;
use crate::slo::SloConfig;

/// SLO series drawn on the front page per job; the rest are on the job's page.
const WORST_SHOWN: usize = 3;
/// Up to this many jobs, every job's charts are open; past it, those of red and amber jobs.
const OPEN_CHARTS: usize = 5;
/// Timeline lines on the front page.
const TIMELINE_SHOWN: usize = 50;

pub fn render(reg: &Registry) -> String {
    let mut jobs = String::new();
    let mut alerts = String::new();
    let mut per_job = String::new();
    let mut budgets = String::new();
    for e in reg.jobs.values() {
        let view = reg.view(e);
        let text = |k: &str| view[k].as_str().map(str::to_string).unwrap_or_else(|| view[k].to_string());
        let status = text("status");
        let health = views::health(e);
        let watermark = view["watermark"].as_str().unwrap_or("—").to_string();
        let name = escape(&e.job.name);
        let link = format!("/jobs/{}", segment(&e.job.name));
        writeln!(
            jobs,
            "<tr class=\"job\" data-job=\"{name}\"><td><a href=\"{link}\">{name}</a></td><td>{kind}</td><td class=\"status {status}\">{status}</td><td class=\"health {h}\">{why}</td><td>{inn}</td><td>{out}</td><td>{wm}</td><td>{err}</td></tr>",
            kind = escape(&text("kind")),
            status = escape(&status),
            h = health.status,
            why = figures::health(&health),
            inn = view["records_in"],
            out = view["records_out"],
            wm = escape(&watermark),
            err = escape(view["last_error"].as_str().unwrap_or("")),
        )
        .unwrap();
        // A few jobs: all open; many: the ones that need a look.
        let open = if reg.jobs.len() <= OPEN_CHARTS || matches!(health.status, "red" | "amber") { " open" } else { "" };
        writeln!(per_job, "<details class=\"job-charts\" data-job=\"{name}\"{open}><summary>{name}: <span class=\"{h}\">{h}</span></summary>{charts}</details>", h = health.status, charts = figures::job(e)).unwrap();
        if let Some(config) = e.job.config::<SloConfig>() {
            let (drawn, total) = figures::worst_series(&e.job.name, config, &e.history.slo.lock().expect("not poisoned"), WORST_SHOWN);
            writeln!(budgets, "<h3 class=\"slo\" data-job=\"{name}\">{name}: {} over {}</h3>", escape(&config.objective.normalize().to_string()), escape(&config.period_text)).unwrap();
            if total == 0 {
                budgets.push_str("<p>No pane evaluated yet.</p>\n");
            }
            budgets.push_str(&drawn);
            if total > WORST_SHOWN {
                writeln!(budgets, "<p><a href=\"{link}\">all {total} series of {name}</a></p>").unwrap();
            }
        }
        let Some(c) = &e.counters else { continue };
        for f in c.firing.lock().expect("not poisoned").iter() {
            let labels: Vec<String> = f.latest.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            writeln!(
                alerts,
                "<tr class=\"alert\"><td>{name}</td><td>{rule}</td><td>{sev}</td><td>{labels}</td><td>{summary}</td><td>{since}</td></tr>",
                rule = escape(&f.latest.rule),
                sev = escape(&f.latest.severity),
                labels = escape(&labels.join(", ")),
                summary = escape(f.summary().as_deref().unwrap_or("")),
                since = escape(&time(f.starts_at)),
            )
            .unwrap();
        }
    }
    if jobs.is_empty() {
        jobs.push_str("<tr><td colspan=\"8\">No jobs yet: <code>osprey submit JOB.toml</code> or POST /v1/jobs.</td></tr>\n");
    }
    if alerts.is_empty() {
        alerts.push_str("<tr><td colspan=\"6\">Nothing is firing.</td></tr>\n");
    }
    if budgets.is_empty() {
        budgets.push_str("<p>No SLO jobs.</p>\n");
    }
    let timeline = figures::timeline(&views::moments(reg), TIMELINE_SHOWN);
    let body = format!(
        r#"<h1>Osprey</h1>
<h2>Jobs</h2>
<table id="jobs"><tr><th>job</th><th>kind</th><th>status</th><th>health</th><th>records in</th><th>records out</th><th>watermark</th><th>last error</th></tr>
{jobs}</table>
<h2>Firing alerts</h2>
<table id="alerts"><tr><th>job</th><th>rule</th><th>severity</th><th>labels</th><th>summary</th><th>since</th></tr>
{alerts}</table>
<h2 id="budgets">Error budgets</h2>
{budgets}
<h2>Alert timeline, last 24 hours (event time)</h2>
{timeline}
<h2>Jobs over the last hour</h2>
{per_job}"#
    );
    document("Osprey", &body, true)
}
