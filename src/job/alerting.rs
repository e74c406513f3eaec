//! `[alerts]` and the alerting kinds' tables (`[invariant]`), checked.

use std::collections::BTreeMap;
use std::ops::Range;

use super::spec::JobFile;
use super::{relative_to_job, Checker, JobError, JobKind};
use crate::alert::group::GroupConfig;
use crate::alert::inhibit::InhibitRule;
use crate::alert::AlertsConfig;
use crate::invariant::InvariantConfig;

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
        spans.insert("invariant.key", t.key.span());
        let key = t.key.get_ref().clone().into_vec();
        if key.is_empty() {
            return Err(self.err(&t.key, "`key` names no column").with_help("key = [\"account\", \"symbol\"]: the columns naming one violation"));
        }
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
        }))
    }
}
