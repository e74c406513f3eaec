//! The alert stage of one job: lifecycle, inhibition, storm limit, then every destination,
//! with grouped notifications beside them.

use serde::{Deserialize, Serialize};

use super::dest::{alertmanager::Alertmanager, file::JsonLines, kafka::AlertTopic, AlertDestination};
use super::group::Grouper;
use super::inhibit::Inhibitor;
use super::lifecycle::Lifecycle;
use super::storm::StormLimit;
use super::{Alert, AlertsConfig, Observation, Status};
use crate::kafka::Cluster;
use crate::Millis;

/// Everything the stage must remember across a restart (checkpointed with the job).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageState {
    pub lifecycle: Lifecycle,
    pub inhibitor: Inhibitor,
    pub storm: StormLimit,
    pub grouper: Grouper,
}

/// What the stage did, for the run summary and `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct AlertCounts {
    pub fired: u64,
    pub resolved: u64,
    /// Evaluations where an alert kept firing and no record was repeated.
    pub deduplicated: u64,
    pub suppressed: u64,
    pub released: u64,
    pub folded: u64,
    pub storms: u64,
    pub notifications: u64,
    /// Transitions that reached grouping (`notifications` of them were sent).
    pub grouped: u64,
}

pub struct AlertStage {
    state: StageState,
    destinations: Vec<Box<dyn AlertDestination>>,
    notifications: Option<JsonLines>,
    fired: u64,
    resolved: u64,
    line: Vec<u8>,
}

impl AlertStage {
    /// The stage a job's `[alerts]` describes; `kind` is the job kind's name.
    pub fn new(job: &str, kind: &str, config: &AlertsConfig, cluster: Option<&Cluster>) -> anyhow::Result<Self> {
        let mut destinations: Vec<Box<dyn AlertDestination>> = Vec::new();
        if let Some(topic) = &config.topic {
            let Some(cluster) = cluster else {
                anyhow::bail!(
                    "job `{job}` sends its alerts to the Kafka topic `{topic}`: pass --brokers HOST:PORT (or set OSPREY_BROKERS), \
                     or --output FILE to write them to a file instead"
                );
            };
            destinations.push(Box::new(AlertTopic::new(cluster, topic)?));
        }
        if !config.alertmanager.is_empty() {
            let generator = match &config.generator_url {
                Some(base) => format!("{}/{job}", base.trim_end_matches('/')),
                None => format!("osprey://job/{job}"),
            };
            destinations.push(Box::new(Alertmanager::new(config.alertmanager.clone(), config.resend_interval, generator)));
        }
        if let Some(path) = &config.file {
            destinations.push(Box::new(JsonLines::file(path)?));
        }
        if config.stdout {
            destinations.push(Box::new(JsonLines::stdout()));
        }
        if config.console {
            destinations.push(Box::new(super::dest::console::Console::new(config.console_limit)));
        }
        let notifications = config.notifications.as_deref().map(JsonLines::file).transpose()?;
        let state = StageState {
            lifecycle: Lifecycle::new(job, kind, config.timing).with_retention(config.retention),
            inhibitor: Inhibitor::new(config.inhibit.clone()),
            storm: StormLimit::new(job, kind, config.storm_limit, config.storm_interval),
            grouper: Grouper::new(config.group.clone()),
        };
        Ok(AlertStage { state, destinations, notifications, fired: 0, resolved: 0, line: Vec::new() })
    }

    /// One evaluation at event time `t`: the records it produced, already sent.
    pub fn evaluate(&mut self, t: Millis, holding: Vec<Observation>) -> anyhow::Result<Vec<Alert>> {
        self.judge(t, super::Holding::All(holding))
    }

    /// One evaluation at event time `t`, full or of changes only.
    pub fn judge(&mut self, t: Millis, holding: super::Holding) -> anyhow::Result<Vec<Alert>> {
        let transitions = match holding {
            super::Holding::All(h) => self.state.lifecycle.evaluate(t, h),
            super::Holding::Changes { holding, cleared } => self.state.lifecycle.evaluate_changes(t, holding, &cleared),
        };
        let shown = self.state.inhibitor.apply(transitions);
        let shown = self.state.storm.apply(t, shown);
        for a in &shown {
            match a.status {
                Status::Firing => self.fired += 1,
                Status::Resolved => self.resolved += 1,
            }
            self.line.clear();
            serde_json::to_writer(&mut self.line, a)?;
            for d in &mut self.destinations {
                d.send(a, &self.line)?;
            }
        }
        let notes = self.state.grouper.advance(t, &shown);
        if let Some(n) = &mut self.notifications {
            for note in notes {
                let line = serde_json::to_vec(&note)?;
                n.send_raw(&line)?;
            }
        }
        Ok(shown)
    }

    /// Every record so far is delivered (Kafka acknowledged, files written).
    pub fn flush(&mut self) -> anyhow::Result<()> {
        for d in &mut self.destinations {
            d.flush()?;
        }
        if let Some(n) = &mut self.notifications {
            n.flush()?;
        }
        Ok(())
    }

    pub fn finish(&mut self) -> anyhow::Result<()> {
        for d in &mut self.destinations {
            d.finish()?;
        }
        if let Some(n) = &mut self.notifications {
            n.flush()?;
        }
        Ok(())
    }

    pub fn describe(&self) -> String {
        let names: Vec<String> = self.destinations.iter().map(|d| d.describe()).collect();
        if names.is_empty() { "nowhere".into() } else { names.join(", ") }
    }

    pub fn counts(&self) -> AlertCounts {
        let s = &self.state;
        AlertCounts {
            fired: self.fired,
            resolved: self.resolved,
            deduplicated: s.lifecycle.deduplicated,
            suppressed: s.inhibitor.suppressed,
            released: s.inhibitor.released,
            folded: s.storm.folded_transitions,
            storms: s.storm.storms,
            notifications: s.grouper.notifications,
            grouped: s.grouper.transitions,
        }
    }

    pub fn state(&self) -> &StageState {
        &self.state
    }

    /// Continue from a checkpointed state (dedup and sequences carry on).
    pub fn restore(&mut self, state: StageState) {
        self.state = state;
    }
}
