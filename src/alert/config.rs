//! `[alerts]`, validated: destinations, lifecycle timing, grouping, inhibition, storm limit.

use std::path::PathBuf;
use std::time::Duration;

use super::group::GroupConfig;
use super::inhibit::InhibitRule;
use super::lifecycle::{Timing, DEFAULT_RETENTION};
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
