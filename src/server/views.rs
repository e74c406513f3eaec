//! The data behind the on-call page's charts, as the JSON routes return it: a job's recent
//! rates and health, its SLO series (worst first) with their budget, burn rates and firing
//! spans, the alert timeline across jobs, and one alert record.

use serde_json::{json, Value};

use super::registry::{Entry, Registry, Status};
use crate::history::slo::SeriesHistory;
use crate::history::Health;
use crate::slo::{compact, SloConfig};
use crate::Millis;

/// A job's status and why: failed, falling behind, losing records, or keeping up.
pub fn health(e: &Entry) -> Health {
    let r = e.run.lock().expect("not poisoned");
    let failed = (r.status == Status::Failed).then(|| r.last_error.clone().unwrap_or_else(|| "no error recorded".into()));
    let concerns = e.history.samples.lock().expect("not poisoned").concerns();
    Health::judge(failed.as_deref(), r.status == Status::Running, concerns)
}

/// `GET /v1/jobs/{name}/history`
pub fn history(e: &Entry) -> Value {
    let health = health(e);
    let samples = e.history.samples.lock().expect("not poisoned");
    json!({ "name": e.job.name, "health": health, "samples": samples.kept })
}

/// An alert pair of an SLO, as the charts draw it.
pub struct Pair {
    pub rule: String,
    pub severity: String,
    pub long: String,
    pub short: String,
    pub factor: f64,
}

pub fn pairs(c: &SloConfig) -> Vec<Pair> {
    use rust_decimal::prelude::ToPrimitive;
    c.alerts
        .iter()
        .map(|a| Pair {
            rule: a.rule(),
            severity: a.severity.clone(),
            long: compact(&a.long_text),
            short: compact(&a.short_text),
            factor: a.burn_rate.to_f64().unwrap_or(0.0),
        })
        .collect()
}

/// One series as JSON; with `points`, its lines and spans too.
pub fn series(windows: &[String], s: &SeriesHistory, points: bool) -> Value {
    let rates = |p: &crate::history::slo::Point| -> Value {
        windows.iter().zip(&p.burn_rates).map(|(w, r)| (w.clone(), json!(r))).collect::<serde_json::Map<_, _>>().into()
    };
    let mut v = json!({
        "id": s.id(),
        "labels": s.labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "error_budget_remaining": s.latest.as_ref().map(|p| p.error_budget_remaining),
        "burn_rates": s.latest.as_ref().map(rates),
        "evaluated_at": s.latest.as_ref().map(|p| crate::alert::rfc3339(p.t)),
        "firing": s.firing_now(),
    });
    if points {
        v["points"] = s.line().iter().map(|p| json!({ "t": crate::alert::rfc3339(p.t), "error_budget_remaining": p.error_budget_remaining, "burn_rates": rates(p) })).collect();
        v["spans"] = s
            .spans
            .iter()
            .map(|(rule, spans)| {
                let list: Vec<Value> = spans.iter().map(|sp| json!({ "start": crate::alert::rfc3339(sp.start), "end": sp.end.map(crate::alert::rfc3339) })).collect();
                (rule.clone(), Value::from(list))
            })
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    v
}

/// `GET /v1/jobs/{name}/slo`: every series worst first, the first `detailed` with their
/// points (or just `only`, by id). `None`: not an SLO job.
pub fn slo(e: &Entry, only: Option<&str>, detailed: usize) -> Option<Value> {
    let config = e.job.config::<SloConfig>()?;
    let h = e.history.slo.lock().expect("not poisoned");
    let all = h.worst_first();
    let chosen: Vec<Value> = match only {
        Some(id) => h.get(id).map(|s| series(&h.windows, s, true)).into_iter().collect(),
        None => all.iter().enumerate().map(|(i, s)| series(&h.windows, s, i < detailed)).collect(),
    };
    Some(json!({
        "name": e.job.name,
        "objective": config.objective.normalize().to_string(),
        "period": config.period_text,
        "windows": h.windows,
        "pairs": pairs(config).iter().map(|p| json!({ "rule": p.rule, "severity": p.severity, "long_window": p.long, "short_window": p.short, "burn_rate": p.factor })).collect::<Vec<_>>(),
        "series_total": all.len(),
        "untracked_series": h.untracked,
        "series": chosen,
    }))
}

/// One line of the alert timeline.
pub struct Moment {
    pub job: String,
    pub at: Millis,
    pub alert: crate::alert::Alert,
}

/// One job's kept transitions, in the order they happened.
pub fn moments_of(e: &Entry) -> Vec<Moment> {
    let t = e.history.transitions.lock().expect("not poisoned");
    t.kept.iter().map(|t| Moment { job: e.job.name.clone(), at: t.at, alert: t.alert.clone() }).collect()
}

/// Every job's transitions in the 24 hours before the newest, newest first.
pub fn moments(reg: &Registry) -> Vec<Moment> {
    let mut all: Vec<Moment> = reg.jobs.values().flat_map(moments_of).collect();
    let newest = all.iter().map(|m| m.at).max().unwrap_or(0);
    all.retain(|m| m.at >= newest - crate::history::transitions::KEPT);
    all.sort_by(|a, b| b.at.cmp(&a.at).then(a.job.cmp(&b.job)).then(b.alert.sequence.cmp(&a.alert.sequence)));
    all
}

/// Where a transition's record is shown.
pub fn record_link(m: &Moment) -> String {
    format!("/jobs/{}/alerts/{}/{}", super::html::segment(&m.job), super::html::segment(&m.alert.fingerprint), m.alert.sequence)
}

/// `GET /v1/alerts/timeline`
pub fn timeline(reg: &Registry) -> Value {
    let list: Vec<Value> = moments(reg)
        .iter()
        .map(|m| {
            json!({
                "job": m.job,
                "at": crate::alert::rfc3339(m.at),
                "status": m.alert.status,
                "rule": m.alert.rule,
                "severity": m.alert.severity,
                "labels": m.alert.labels,
                "summary": m.alert.annotations.get("summary"),
                "fingerprint": m.alert.fingerprint,
                "sequence": m.alert.sequence,
                "record": format!("/v1{}", record_link(m)),
            })
        })
        .collect();
    json!({ "transitions": list })
}

/// `GET /v1/jobs/{name}/alerts/{fingerprint}/{sequence}`: the alert record (v1) as written.
pub fn alert(e: &Entry, fingerprint: &str, sequence: u64) -> Option<crate::alert::Alert> {
    e.history.transitions.lock().expect("not poisoned").find(fingerprint, sequence).cloned()
}
