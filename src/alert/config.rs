//! `[alerts]`, validated: destinations, lifecycle timing, grouping, inhibition, storm limit.

use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::group::GroupConfig;
use super::inhibit::InhibitRule;
use super::lifecycle::{Timing, DEFAULT_RETENTION};
use crate::jobfile::file::AlertsFile;
use crate::jobfile::{Checker, JobError};
use crate::Millis;

#[derive(Debug, Clone, PartialEq)]
pub struct AlertsConfig {
    pub topic: Option<String>,
    pub alertmanager: Vec<String>,
    pub file: Option<PathBuf>,
    pub stdout: bool,
    /// Lines people read on stdout (the demo), not JSON; past `console_limit` firings of the
    /// job, the rest are only counted.
    pub console: bool,
    pub console_limit: Option<u64>,
    pub notifications: Option<PathBuf>,
    pub timing: Timing,
    pub group: GroupConfig,
    pub inhibit: Vec<InhibitRule>,
    pub storm_limit: u64,
    pub storm_interval: Millis,
    pub resend_interval: Duration,
    pub generator_url: Option<String>,
    pub retention: Millis,
}

/// The topic alerts of a Kafka job go to when `[alerts]` names no destination.
pub const DEFAULT_TOPIC: &str = "osprey-alerts";

impl AlertsConfig {
    /// No `[alerts]` table: a Kafka job's alerts go to `osprey-alerts`, any other job's to stdout.
    pub fn defaults(kafka_job: bool) -> Self {
        AlertsConfig {
            topic: kafka_job.then(|| DEFAULT_TOPIC.to_string()),
            alertmanager: Vec::new(),
            file: None,
            stdout: !kafka_job,
            console: false,
            console_limit: None,
            notifications: None,
            timing: Timing::default(),
            group: GroupConfig::default(),
            inhibit: vec![InhibitRule {
                source_severity: "page".into(),
                target_severity: "ticket".into(),
                equal: vec!["alertname".into()],
            }],
            storm_limit: 100,
            storm_interval: 60_000,
            resend_interval: Duration::from_secs(60),
            generator_url: None,
            retention: DEFAULT_RETENTION,
        }
    }

    /// Only `path` receives the alerts (`--output`): what a replay compares.
    pub fn only_file(&mut self, path: PathBuf) {
        self.topic = None;
        self.alertmanager.clear();
        self.stdout = false;
        self.console = false;
        self.file = Some(path);
    }
}

impl Checker<'_> {
    /// `[alerts]` as written, over `c` (the defaults, as the job's kind adjusted them).
    pub fn alerts(&self, written: Option<&Spanned<AlertsFile>>, mut c: AlertsConfig) -> Result<AlertsConfig, JobError> {
        let Some(a) = written else { return Ok(c) };
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
            c.file = Some(self.relative(p.get_ref()));
        }
        if let Some(p) = &a.notifications {
            c.notifications = Some(self.relative(p.get_ref()));
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
        Ok(c)
    }
}
