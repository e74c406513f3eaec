//! A job's own page (`/jobs/{name}`: its charts and every SLO series, worst first), one SLO
//! series (`/jobs/{name}/series/{id}`) and one alert record
//! (`/jobs/{name}/alerts/{fingerprint}/{sequence}`).

use std::fmt::Write;

use super::figures;
use super::html::{document, escape, segment};
use super::registry::Entry;
use super::views;
use crate::slo::SloConfig;

/// Series drawn on a job's page; the rest are listed with links.
const DRAWN: usize = 10;

pub fn job(e: &Entry) -> String {
    let name = escape(&e.job.name);
    let health = views::health(e);
    let mut body = format!(
        "<h1>{name}</h1>\n<p class=\"health {h}\">{why}</p>\n<h2>Over the last hour</h2>\n{charts}\n",
        h = health.status,
        why = figures::health(&health),
        charts = figures::job(e),
    );
    if let Some(config) = e.job.config::<SloConfig>() {
        let h = e.history.slo.lock().expect("not poisoned");
        let (drawn, total) = figures::worst_series(&e.job.name, config, &h, DRAWN);
        writeln!(body, "<h2>Error budgets ({total} series, worst first)</h2>\n{drawn}").unwrap();
        if total > DRAWN {
            let worst = h.worst_first();
            body.push_str("<table id=\"series\"><tr><th>series</th><th>budget left</th><th>firing</th></tr>\n");
            for s in &worst[DRAWN..] {
                writeln!(
                    body,
                    "<tr><td><a href=\"/jobs/{job}/series/{id}\">{who}</a></td><td>{left}</td><td>{firing}</td></tr>",
                    job = segment(&e.job.name),
                    id = s.id(),
                    who = escape(&figures::labels(&s.labels)),
                    left = s.latest.as_ref().map(|p| format!("{:.1}%", p.error_budget_remaining * 100.0)).unwrap_or_default(),
                    firing = escape(&s.firing_now().join(", ")),
                )
                .unwrap();
            }
            body.push_str("</table>\n");
        }
        if h.untracked > 0 {
            writeln!(body, "<p>{} more series are evaluated but not drawn (the page keeps {}).</p>", h.untracked, crate::history::slo::MAX_SERIES).unwrap();
        }
    }
    let mut moments = views::moments_of(e);
    moments.reverse();
    writeln!(body, "<h2>Alert timeline</h2>\n{}", figures::timeline(&moments, 200)).unwrap();
    document(&format!("Osprey: {}", e.job.name), &body, true)
}

pub fn series(e: &Entry, id: &str) -> Option<String> {
    let config = e.job.config::<SloConfig>()?;
    let h = e.history.slo.lock().expect("not poisoned");
    let s = h.get(id)?;
    let who = figures::labels(&s.labels);
    let body = format!(
        "<h1>{job}: {who}</h1>\n<p><a href=\"/jobs/{seg}\">{job}</a></p>\n{charts}",
        job = escape(&e.job.name),
        seg = segment(&e.job.name),
        who = escape(&who),
        charts = figures::series(&e.job.name, &views::pairs(config), &h.windows, s, &config.period_text),
    );
    Some(document(&format!("Osprey: {} {who}", e.job.name), &body, true))
}

pub fn alert(e: &Entry, a: &crate::alert::Alert) -> String {
    let rows = |m: &std::collections::BTreeMap<String, String>| -> String {
        m.iter().map(|(k, v)| format!("<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(v))).collect()
    };
    let status = match a.status {
        crate::alert::Status::Firing => "firing",
        crate::alert::Status::Resolved => "resolved",
    };
    let body = format!(
        "<h1>{rule} <span class=\"{class}\">{status}</span></h1>\n<p>job <a href=\"/jobs/{seg}\">{job}</a> · severity {sev} · fired {starts}{ends} · evaluations {evals} · value {value} (threshold {threshold})</p>\n<h2>Labels</h2><table id=\"labels\">{labels}</table>\n<h2>Annotations</h2><table id=\"annotations\">{annotations}</table>\n<h2>Evidence</h2><pre id=\"evidence\">{evidence}</pre>\n<h2>Record</h2><pre id=\"record\">{record}</pre>",
        rule = escape(&a.rule),
        class = if status == "firing" { "red" } else { "green" },
        job = escape(&e.job.name),
        seg = segment(&e.job.name),
        sev = escape(&a.severity),
        starts = escape(&a.starts_at),
        ends = a.ends_at.as_ref().map(|t| format!(" · resolved {}", escape(t))).unwrap_or_default(),
        evals = a.evaluations,
        value = escape(&a.value.to_string()),
        threshold = escape(&a.threshold.to_string()),
        labels = rows(&a.labels),
        annotations = rows(&a.annotations),
        evidence = escape(&serde_json::to_string_pretty(&a.evidence).unwrap_or_default()),
        record = escape(&serde_json::to_string(a).unwrap_or_default()),
    );
    document(&format!("Osprey: {} {}", e.job.name, a.rule), &body, false)
}
