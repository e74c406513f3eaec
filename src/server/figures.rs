//! The on-call page's figures, built from a job's history: its rates and lag, an SLO series'
//! budget and burn rates with the spans its pairs fired, and the alert timeline.

use std::fmt::Write;

use super::charts::{Chart, Line, Shade, Unit};
use super::html::{escape, segment, time};
use super::registry::Entry;
use super::views::{record_link, Moment, Pair};
use crate::history::slo::SeriesHistory;

/// Records in, dead letters and late records per second, lag and window-close-to-output
/// latency over the last hour (wall clock).
pub fn job(e: &Entry) -> String {
    let samples = e.history.samples.lock().expect("not poisoned");
    let series = |f: fn(&crate::history::Sample) -> Option<f64>| -> Vec<(i64, f64)> { samples.kept.iter().filter_map(|s| f(s).map(|v| (s.at, v))).collect() };
    let chart = |title: &str, class: &str, unit: Unit, lines: Vec<(&str, Vec<(i64, f64)>)>| {
        let mut c = Chart::new(title, class, unit);
        c.lines = lines.into_iter().map(|(label, points)| Line { label: label.into(), points }).collect();
        c.render()
    };
    let mut out = String::from("<div class=\"charts\">");
    out.push_str(&chart("records in per second, last hour", "records-in", Unit::PerSecond, vec![("in", series(|s| Some(s.records_in_per_s)))]));
    out.push_str(&chart(
        "dead letters and late records per second",
        "losses",
        Unit::PerSecond,
        vec![("dead letters", series(|s| Some(s.dead_letters_per_s))), ("late", series(|s| Some(s.late_per_s)))],
    ));
    out.push_str(&chart("consumer lag (records behind)", "lag", Unit::Count, vec![("lag", series(|s| Some(s.lag as f64)))]));
    out.push_str(&chart(
        "window close to output",
        "latency",
        Unit::Millis,
        vec![("mean", series(|s| s.latency_mean_ms)), ("p99 ≤", series(|s| s.latency_p99_ms))],
    ));
    out.push_str("</div>");
    out
}

/// One SLO series: the budget left over the period, then per alert pair its long- and
/// short-window burn rates against its factor, with the spans it fired shaded; one time axis.
pub fn series(job: &str, pairs: &[Pair], windows: &[String], s: &SeriesHistory, period: &str) -> String {
    let line = s.line();
    let x = match (line.first(), line.last()) {
        (Some(a), Some(b)) => Some((a.t, b.t)),
        _ => None,
    };
    let who = labels(&s.labels);
    let mut out = format!(
        "<section class=\"series\" data-series=\"{id}\"><h4><a href=\"/jobs/{job_seg}/series/{id}\">{who}</a>{firing}</h4><div class=\"charts\">",
        id = s.id(),
        job_seg = segment(job),
        who = escape(&who),
        firing = if s.firing_now().is_empty() { String::new() } else { format!(" <span class=\"red\">firing: {}</span>", escape(&s.firing_now().join(", "))) },
    );
    let mut budget = Chart::new(format!("{who}: error budget left over {period}"), "budget", Unit::Percent);
    budget.x = x;
    budget.lines.push(Line { label: "budget left".into(), points: line.iter().map(|p| (p.t, p.error_budget_remaining)).collect() });
    budget.thresholds.push((0.0, "exhausted".into()));
    out.push_str(&budget.render());
    let window = |w: &str| windows.iter().position(|x| x == w);
    for pair in pairs {
        let mut c = Chart::new(format!("{who}: {} burn rate, {} and {} windows, fires above {}×", pair.rule, pair.long, pair.short, pair.factor), format!("burn {}", pair.rule), Unit::Times);
        c.x = x;
        for w in [&pair.long, &pair.short] {
            let Some(i) = window(w) else { continue };
            c.lines.push(Line { label: w.clone(), points: line.iter().filter_map(|p| p.burn_rates[i].map(|r| (p.t, r))).collect() });
        }
        c.thresholds.push((pair.factor, format!("{}×", pair.factor)));
        c.shades = s.spans.get(&pair.rule).map(|spans| spans.iter().map(|sp| Shade { label: pair.rule.clone(), start: sp.start, end: sp.end }).collect()).unwrap_or_default();
        out.push_str(&c.render());
    }
    out.push_str("</div></section>\n");
    out
}

/// An SLO job's `n` worst series drawn; the number of series it has.
pub fn worst_series(job: &str, config: &crate::slo::SloConfig, history: &crate::history::SloHistory, n: usize) -> (String, usize) {
    let worst = history.worst_first();
    let pairs = super::views::pairs(config);
    let drawn = worst.iter().take(n).map(|s| series(job, &pairs, &history.windows, s, &config.period_text)).collect();
    (drawn, worst.len())
}

/// A job's health as words: `amber: dead letters ...`.
pub fn health(h: &crate::history::Health) -> String {
    if h.reasons.is_empty() {
        h.status.to_string()
    } else {
        format!("{}: {}", h.status, escape(&h.reasons.join("; ")))
    }
}

pub fn labels(labels: &[(String, String)]) -> String {
    if labels.is_empty() {
        return "all events".into();
    }
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
}

/// The alert timeline: transitions newest first, each linking to its record.
pub fn timeline(moments: &[Moment], limit: usize) -> String {
    if moments.is_empty() {
        return "<p id=\"timeline\">No alert fired or resolved in the last 24 hours.</p>\n".into();
    }
    let mut out = String::from("<ol id=\"timeline\" class=\"timeline\">\n");
    for m in moments.iter().take(limit) {
        let status = match m.alert.status {
            crate::alert::Status::Firing => "firing",
            crate::alert::Status::Resolved => "resolved",
        };
        let labels: Vec<String> = m.alert.labels.iter().filter(|(k, _)| k.as_str() != "alertname" && k.as_str() != "severity").map(|(k, v)| format!("{k}={v}")).collect();
        writeln!(
            out,
            "<li class=\"transition {status}\" data-job=\"{job}\" data-status=\"{status}\"><time>{at}</time> <span class=\"what\">{what}</span> <b>{job}</b> {rule} [{sev}] {labels} — <a href=\"{link}\">record</a></li>",
            at = time(m.at),
            what = if status == "firing" { "fired" } else { "resolved" },
            job = escape(&m.job),
            rule = escape(&m.alert.rule),
            sev = escape(&m.alert.severity),
            labels = escape(&labels.join(", ")),
            link = record_link(m),
        )
        .unwrap();
    }
    if moments.len() > limit {
        writeln!(out, "<li>… and {} earlier: GET /v1/alerts/timeline</li>", moments.len() - limit).unwrap();
    }
    out.push_str("</ol>\n");
    out
}
