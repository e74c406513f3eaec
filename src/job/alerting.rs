//! `[alerts]` and the alerting kinds' tables (`[invariant]`, `[slo]`), checked.

use std::collections::BTreeMap;
use std::ops::Range;

use rust_decimal::Decimal;

use super::spec::{JobFile, WindowFile};
use super::{relative_to_job, Checker, JobError, JobKind, WindowConfig};
use crate::alert::group::GroupConfig;
use crate::alert::inhibit::InhibitRule;
use crate::alert::AlertsConfig;
use crate::invariant::InvariantConfig;
use crate::slo::{BurnAlert, Condition, SloConfig};
use crate::Millis;

impl Checker<'_> {
    pub(super) fn alerts(&self, kind: JobKind, f: &JobFile, kafka_job: bool) -> Result<Option<AlertsConfig>, JobError> {
        if kind == JobKind::Query {
            if let Some(a) = &f.alerts {
                return Err(JobError::at_span(self.path, self.text, a.span(), "[alerts] is for alerting jobs; this is a query job")
                    .with_help("set kind = \"invariant\" (or remove [alerts]); a query job's rows go to [sink]"));
            }
            return Ok(None);
        }
        let mut c = AlertsConfig::defaults(kafka_job);
        if kind == JobKind::Slo {
            // Every pair's record, as Prometheus evaluates them; inhibition is the reader's choice.
            c.inhibit.clear();
        }
        let Some(a) = &f.alerts else { return Ok(Some(c)) };
        let a = a.get_ref();
        let named = a.topic.is_some() || a.alertmanager.is_some() || a.file.is_some() || a.stdout.is_some();
        if named {
            c.topic = None;
            c.stdout = a.stdout.unwrap_or(false);
        }
        if let Some(t) = &a.topic {
            if t.get_ref().trim().is_empty() {
                return Err(self.err(t, "`topic` is empty").with_help("name a Kafka topic, for example \"osprey-alerts\""));
            }
            c.topic = Some(t.get_ref().clone());
        }
        if let Some(urls) = &a.alertmanager {
            for u in urls.get_ref().clone().into_vec() {
                if !u.starts_with("http://") {
                    return Err(self
                        .err(urls, format!("Alertmanager URL `{u}` is not http://HOST:PORT"))
                        .with_help("give Alertmanager's base URL, for example \"http://127.0.0.1:9093\" (https is not built yet)"));
                }
                c.alertmanager.push(u.trim_end_matches('/').to_string());
            }
        }
        if let Some(p) = &a.file {
            c.file = Some(relative_to_job(self.path, p.get_ref()));
        }
        if let Some(p) = &a.notifications {
            c.notifications = Some(relative_to_job(self.path, p.get_ref()));
        }
        if let Some(d) = &a.for_ {
            c.timing.for_ = self.duration(d, "for")?;
        }
        if let Some(d) = &a.keep_firing_for {
            c.timing.keep_firing_for = self.duration(d, "keep_firing_for")?;
        }
        let defaults = GroupConfig::default();
        c.group = GroupConfig {
            by: a.group_by.clone().unwrap_or(defaults.by),
            wait: a.group_wait.as_ref().map(|d| self.duration(d, "group_wait")).transpose()?.unwrap_or(defaults.wait),
            interval: a.group_interval.as_ref().map(|d| self.positive_duration(d, "group_interval")).transpose()?.unwrap_or(defaults.interval),
            repeat: a.repeat_interval.as_ref().map(|d| self.positive_duration(d, "repeat_interval")).transpose()?.unwrap_or(defaults.repeat),
        };
        if let Some(n) = a.storm_limit {
            c.storm_limit = n;
        }
        if let Some(d) = &a.storm_interval {
            c.storm_interval = self.positive_duration(d, "storm_interval")?;
        }
        if let Some(d) = &a.resend_interval {
            c.resend_interval = std::time::Duration::from_millis(self.positive_duration(d, "resend_interval")? as u64);
        }
        if let Some(d) = &a.retention {
            c.retention = self.positive_duration(d, "retention")?;
        }
        if let Some(rules) = &a.inhibit {
            c.inhibit = rules
                .iter()
                .map(|r| InhibitRule {
                    source_severity: r.source_severity.clone(),
                    target_severity: r.target_severity.clone(),
                    equal: r.equal.clone().unwrap_or_else(|| vec!["alertname".into()]),
                })
                .collect();
        }
        c.generator_url = a.generator_url.clone();
        Ok(Some(c))
    }

    pub(super) fn invariant(
        &self,
        kind: JobKind,
        f: &JobFile,
        spans: &mut BTreeMap<&'static str, Range<usize>>,
    ) -> Result<Option<InvariantConfig>, JobError> {
        let table = f.invariant.as_ref();
        match (kind, table) {
            (JobKind::Invariant, None) => {
                let k = f.kind.as_ref().expect("written");
                return Err(self
                    .err(k, "an invariant job needs an [invariant] table")
                    .with_help("add [invariant] with key = [\"<column>\"] and violation = \"<SQL boolean over a result row>\""));
            }
            (JobKind::Invariant, Some(_)) => {}
            (_, Some(t)) => {
                return Err(JobError::at_span(self.path, self.text, t.span(), "[invariant] belongs to kind = \"invariant\" jobs")
                    .with_help("set kind = \"invariant\" before the first [table]"));
            }
            (_, None) => return Ok(None),
        }
        let t = table.expect("matched").get_ref();
        let deadline = match &t.deadline {
            None => None,
            Some(d) => {
                let d = d.get_ref();
                spans.insert("invariant.deadline.key", d.key.span());
                spans.insert("invariant.deadline.opens", d.opens.span());
                spans.insert("invariant.deadline.closes", d.closes.span());
                let key = d.key.get_ref().clone().into_vec();
                if key.is_empty() {
                    return Err(self.err(&d.key, "`key` names no column").with_help("key = [\"order_id\"]: the events' columns naming one timer"));
                }
                if let Some(v) = &t.violation {
                    return Err(self
                        .err(v, "a deadline job has no `violation`: missing the deadline is the violation")
                        .with_help("remove `violation`, or put the check in a job of its own"));
                }
                Some(crate::invariant::DeadlineConfig {
                    key,
                    opens: d.opens.get_ref().clone(),
                    closes: d.closes.get_ref().clone(),
                    within: self.positive_duration(&d.within, "within")?,
                    within_text: d.within.get_ref().trim().to_string(),
                })
            }
        };
        let key = match (&t.key, &deadline) {
            (Some(k), _) => {
                spans.insert("invariant.key", k.span());
                let key = k.get_ref().clone().into_vec();
                if key.is_empty() {
                    return Err(self.err(k, "`key` names no column").with_help("key = [\"account\", \"symbol\"]: the columns naming one violation"));
                }
                if let Some(d) = &deadline {
                    if d.key != key {
                        return Err(self.err(k, "[invariant] key differs from [invariant.deadline] key").with_help("remove [invariant] key: a deadline's alerts are keyed by its own key"));
                    }
                }
                key
            }
            (None, Some(d)) => d.key.clone(),
            (None, None) => {
                return Err(JobError::at_span(self.path, self.text, table.expect("matched").span(), "[invariant] needs `key`")
                    .with_help("key = [\"account\", \"symbol\"]: the result columns naming one violation"));
            }
        };
        if let Some(v) = &t.violation {
            spans.insert("invariant.violation", v.span());
        }
        if let Some(v) = &t.value {
            spans.insert("invariant.value", v.span());
        }
        if let Some(s) = &t.summary {
            spans.insert("invariant.summary", s.span());
        }
        let threshold = match &t.threshold {
            None => serde_json::Value::Null,
            Some(v) => match v.get_ref() {
                toml::Value::Integer(i) => (*i).into(),
                toml::Value::Float(x) => serde_json::Number::from_f64(*x).map(serde_json::Value::Number).unwrap_or_default(),
                toml::Value::String(s) if crate::decode::convert::parse_decimal(s, 38, 10).is_ok() => s.clone().into(),
                _ => {
                    return Err(self
                        .err(v, "`threshold` is not a number")
                        .with_help("write the limit as a number, or an exact decimal as a string: threshold = \"10000.00\""));
                }
            },
        };
        Ok(Some(InvariantConfig {
            key,
            violation: t.violation.as_ref().map(|v| v.get_ref().clone()),
            severity: t.severity.clone().unwrap_or_else(|| "critical".into()),
            summary: t.summary.as_ref().map(|s| s.get_ref().clone()),
            value: t.value.as_ref().map(|v| v.get_ref().clone()),
            threshold,
            runbook_url: t.runbook_url.clone(),
            deadline,
        }))
    }
}

impl Checker<'_> {
    /// A whole number written as `key`, at least `min`; `default` when absent.
    fn at_least(&self, v: &Option<toml::Spanned<i64>>, key: &str, default: usize, min: i64) -> Result<usize, JobError> {
        match v {
            None => Ok(default),
            Some(n) if *n.get_ref() >= min => Ok(*n.get_ref() as usize),
            Some(n) => Err(self.err(n, format!("`{key}` must be at least {min}"))),
        }
    }

    pub(super) fn slo(
        &self,
        kind: JobKind,
        f: &JobFile,
        spans: &mut BTreeMap<&'static str, Range<usize>>,
    ) -> Result<Option<SloConfig>, JobError> {
        let table = match (kind, f.slo.as_ref()) {
            (JobKind::Slo, Some(t)) => t,
            (JobKind::Slo, None) => {
                let k = f.kind.as_ref().expect("written");
                return Err(self.err(k, "an SLO job needs an [slo] table").with_help(
                    "add [slo] with objective = 0.999 and good = \"<SQL boolean over one event>\" (or bad = \"...\")",
                ));
            }
            (_, Some(t)) => {
                return Err(JobError::at_span(self.path, self.text, t.span(), "[slo] belongs to kind = \"slo\" jobs")
                    .with_help("set kind = \"slo\" before the first [table]"));
            }
            (_, None) => return Ok(None),
        };
        let t = table.get_ref();
        let objective = crate::slo::exact(t.objective.get_ref())
            .filter(|o| *o > Decimal::ZERO && *o < Decimal::ONE)
            .ok_or_else(|| {
                self.err(&t.objective, "`objective` must be a fraction between 0 and 1 (exclusive)")
                    .with_help("objective = 0.999 means 99.9% of events are good; the error budget is the other 0.1%")
            })?;
        let condition = match (&t.good, &t.bad) {
            (Some(g), None) => {
                spans.insert("slo.good", g.span());
                Condition::Good(g.get_ref().clone())
            }
            (None, Some(b)) => {
                spans.insert("slo.bad", b.span());
                Condition::Bad(b.get_ref().clone())
            }
            (Some(g), Some(_)) => {
                return Err(self.err(g, "[slo] has both `good` and `bad`").with_help("keep one: bad events are the ones that are not good"));
            }
            (None, None) => {
                return Err(JobError::at_span(self.path, self.text, table.span(), "[slo] needs `good` or `bad`")
                    .with_help("good = \"status < 500\": an SQL boolean over one event"));
            }
        };
        let labels = match &t.labels {
            Some(l) => {
                spans.insert("slo.labels", l.span());
                l.get_ref().clone().into_vec()
            }
            None => Vec::new(),
        };
        let pane_text = t.pane.as_ref().map(|p| (p, "pane")).or_else(|| {
            f.window.as_ref().and_then(|w| w.get_ref().size.as_ref()).map(|s| (s, "size"))
        });
        let pane = match pane_text {
            Some((p, key)) => {
                if let Some(p) = &t.pane {
                    spans.insert("slo.pane", p.span());
                }
                self.positive_duration(p, key)?
            }
            None => 60_000,
        };
        let period = match &t.period {
            Some(p) => self.positive_duration(p, "period")?,
            None => 30 * 86_400_000,
        };
        let period_text = t.period.as_ref().map(|p| p.get_ref().trim().to_string()).unwrap_or_else(|| "30d".into());
        let multiple = |d: Millis, at: &toml::Spanned<String>, key: &str| -> Result<(), JobError> {
            if d % pane != 0 {
                return Err(self
                    .err(at, format!("`{key}` = `{}` is not a whole number of panes ({})", at.get_ref(), humantime::format_duration(std::time::Duration::from_millis(pane as u64))))
                    .with_help("windows are sums of panes: use a multiple of the pane, or a shorter pane"));
            }
            Ok(())
        };
        if let Some(p) = &t.period {
            multiple(period, p, "period")?;
        }
        let alerts = match &t.alert {
            None => crate::slo::default_alerts(),
            Some(list) if list.is_empty() => {
                return Err(JobError::at_span(self.path, self.text, table.span(), "[slo] has an empty list of alerts")
                    .with_help("remove `alert = []` for the SRE workbook's four pairs, or add [[slo.alert]] tables"));
            }
            Some(list) => {
                let mut out = Vec::new();
                for a in list {
                    let a = a.get_ref();
                    let long = self.positive_duration(&a.long, "long")?;
                    let short = self.positive_duration(&a.short, "short")?;
                    multiple(long, &a.long, "long")?;
                    multiple(short, &a.short, "short")?;
                    if long / pane > 100_000 {
                        return Err(self.err(&a.long, "`long` spans more than 100,000 panes").with_help("use a longer pane"));
                    }
                    let burn_rate = crate::slo::exact(a.burn_rate.get_ref()).filter(|r| *r > Decimal::ZERO).ok_or_else(|| {
                        self.err(&a.burn_rate, "`burn_rate` must be a number above 0")
                            .with_help("14.4 pages when a 30-day budget would last about two days")
                    })?;
                    out.push(BurnAlert {
                        severity: a.severity.clone().unwrap_or_else(|| "page".into()),
                        long,
                        short,
                        long_text: a.long.get_ref().trim().to_string(),
                        short_text: a.short.get_ref().trim().to_string(),
                        burn_rate,
                    });
                }
                out
            }
        };
        for a in &alerts {
            if alerts.iter().filter(|b| b.rule() == a.rule()).count() > 1 {
                return Err(JobError::at_span(self.path, self.text, table.span(), format!("two [[slo.alert]] pairs are both `{}`", a.rule()))
                    .with_help("give each pair its own severity or windows"));
            }
        }
        Ok(Some(SloConfig {
            objective,
            period,
            period_text,
            condition,
            labels,
            pane,
            min_events: self.at_least(&t.min_events, "min_events", 0, 0)? as u64,
            max_series: self.at_least(&t.max_series, "max_series", 10_000, 1)?,
            alerts,
            summary: t.summary.clone(),
            runbook_url: t.runbook_url.clone(),
        }))
    }

    /// An SLO job's `[window]`, when written: tumbling, one pane long.
    pub(super) fn slo_window(&self, w: &toml::Spanned<WindowFile>, slo: &SloConfig, pane_written: bool) -> Result<WindowConfig, JobError> {
        let w = w.get_ref();
        let size = w.size.as_ref().map(|s| self.positive_duration(s, "size")).transpose()?;
        if w.kind.get_ref() != "tumbling" || size.is_none() || w.slide.is_some() || w.gap.is_some() || w.key.is_some() {
            return Err(self
                .err(&w.kind, "an SLO job's window is its pane: kind = \"tumbling\" with size = the pane")
                .with_help("remove [window] (the pane is [slo] pane, 1m by default); sliding windows come from [[slo.alert]] long and short"));
        }
        let size = size.expect("checked");
        if pane_written && size != slo.pane {
            return Err(self
                .err(w.size.as_ref().expect("checked"), "[window] size differs from [slo] pane")
                .with_help("remove [window]: an SLO job's window is its pane"));
        }
        Ok(WindowConfig::Tumbling { size })
    }
}

impl Checker<'_> {
    pub(super) fn anomaly(
        &self,
        kind: JobKind,
        f: &JobFile,
        spans: &mut BTreeMap<&'static str, Range<usize>>,
    ) -> Result<Option<crate::anomaly::AnomalyConfig>, JobError> {
        use crate::anomaly::{defaults, DetectorKind};
        let table = match (kind, f.anomaly.as_ref()) {
            (JobKind::Anomaly, Some(t)) => t,
            (JobKind::Anomaly, None) => {
                let k = f.kind.as_ref().expect("written");
                return Err(self.err(k, "an anomaly job needs an [anomaly] table").with_help(
                    "add [anomaly] with series = [\"service\"] and features = [\"p99_ms\"]: result columns of the SQL",
                ));
            }
            (_, Some(t)) => {
                return Err(JobError::at_span(self.path, self.text, t.span(), "[anomaly] belongs to kind = \"anomaly\" jobs")
                    .with_help("set kind = \"anomaly\" before the first [table]"));
            }
            (_, None) => return Ok(None),
        };
        let t = table.get_ref();
        spans.insert("anomaly.series", t.series.span());
        spans.insert("anomaly.features", t.features.span());
        let features = t.features.get_ref().clone().into_vec();
        if features.is_empty() {
            return Err(self.err(&t.features, "`features` names no column").with_help("features = [\"p99_ms\", \"error_rate\"]"));
        }
        let detectors = match &t.detectors {
            None => defaults::DETECTORS.to_vec(),
            Some(d) => {
                let mut out = Vec::new();
                for name in d.get_ref().clone().into_vec() {
                    let kind = DetectorKind::parse(&name).ok_or_else(|| {
                        let e = self.err(d, format!("unknown detector `{name}`"));
                        match super::error::closest(&name, DetectorKind::NAMES.iter().copied()) {
                            Some(near) => e.with_help(format!("did you mean `{near}`?")),
                            None => e.with_help(format!("the detectors are {}", DetectorKind::NAMES.join(", "))),
                        }
                    })?;
                    if !out.contains(&kind) {
                        out.push(kind);
                    }
                }
                if out.is_empty() {
                    return Err(self.err(d, "`detectors` is empty").with_help("remove it for the default (likelihood)"));
                }
                out
            }
        };
        let threshold = match &t.threshold {
            Some(v) if (0.0..=1.0).contains(v.get_ref()) => *v.get_ref(),
            Some(v) => return Err(self.err(v, "`threshold` must be between 0 and 1 (scores are in [0, 1])")),
            None => defaults::THRESHOLD,
        };
        let baseline = self.at_least(&t.baseline, "baseline", defaults::BASELINE, 8)?;
        let warmup = self.at_least(&t.warmup, "warmup", defaults::WARMUP.min(baseline), 2)?;
        let (eps, min_points) = match &t.cluster {
            None => (defaults::EPS, defaults::MIN_POINTS),
            Some(c) => {
                let c = c.get_ref();
                let eps = match &c.eps {
                    Some(e) if *e.get_ref() > 0.0 => *e.get_ref(),
                    Some(e) => return Err(self.err(e, "`eps` must be above 0")),
                    None => defaults::EPS,
                };
                (eps, self.at_least(&c.min_points, "min_points", defaults::MIN_POINTS, 1)?)
            }
        };
        Ok(Some(crate::anomaly::AnomalyConfig {
            series: t.series.get_ref().clone().into_vec(),
            features,
            detectors,
            threshold,
            baseline,
            warmup,
            eps,
            min_points,
            severity: t.severity.clone().unwrap_or_else(|| "warning".into()),
            summary: t.summary.clone(),
            runbook_url: t.runbook_url.clone(),
        }))
    }
}
