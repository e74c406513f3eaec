//! The job file as written (TOML, v1): every key of `../shared/DESIGN.md`, with spans.
//!
//! These structs only describe the text; `job::Job` is the validated form. The job kinds'
//! tables are described in the kinds' own folders.

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobFile {
    pub name: Spanned<String>,
    pub kind: Option<Spanned<String>>,
    pub description: Option<String>,
    pub sql: Option<Spanned<String>>,
    pub sql_file: Option<Spanned<String>>,
    pub source: Spanned<SourceFile>,
    pub event_time: Spanned<EventTimeFile>,
    /// Required but for SLO jobs, whose window is their pane.
    pub window: Option<Spanned<WindowFile>>,
    pub sink: Option<Spanned<SinkFile>>,
    pub dead_letter: Option<Spanned<RouteFile>>,
    pub late: Option<Spanned<RouteFile>>,
    /// Alerting jobs: where alerts go, their timing, grouping and storm control.
    pub alerts: Option<Spanned<AlertsFile>>,
    // The job kinds' own tables: each kind reads its table itself (`src/<kind>/`); named here
    // so that a misspelt table is refused with the names that exist.
    pub invariant: Option<Spanned<IgnoredAny>>,
    pub slo: Option<Spanned<IgnoredAny>>,
    pub anomaly: Option<Spanned<IgnoredAny>>,
}

/// `[alerts]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsFile {
    /// Kafka topic (keyed by fingerprint, compacted); default for a Kafka job: `osprey-alerts`.
    pub topic: Option<Spanned<String>>,
    /// Alertmanager base URLs (API v2).
    pub alertmanager: Option<Spanned<OneOrMany>>,
    /// JSON lines file, relative to the job file.
    pub file: Option<Spanned<String>>,
    pub stdout: Option<bool>,
    /// Grouped notifications as JSON lines, relative to the job file.
    pub notifications: Option<Spanned<String>>,
    #[serde(rename = "for")]
    pub for_: Option<Spanned<String>>,
    pub keep_firing_for: Option<Spanned<String>>,
    pub group_by: Option<Vec<String>>,
    pub group_wait: Option<Spanned<String>>,
    pub group_interval: Option<Spanned<String>>,
    pub repeat_interval: Option<Spanned<String>>,
    /// Firings shown per `storm_interval` before they fold into one storm alert; 0: no limit.
    pub storm_limit: Option<u64>,
    pub storm_interval: Option<Spanned<String>>,
    /// Alertmanager: how often firing alerts are sent again (wall clock).
    pub resend_interval: Option<Spanned<String>>,
    pub inhibit: Option<Vec<InhibitFile>>,
    /// Base of `generatorURL` in Alertmanager (the job name is appended).
    pub generator_url: Option<String>,
    /// How long a resolved alert's sequence is remembered (event time).
    pub retention: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitFile {
    pub source_severity: String,
    pub target_severity: String,
    pub equal: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceFile {
    pub kind: Spanned<String>,
    pub format: Option<Spanned<String>>,
    /// otlp_proto, otlp_json: `traces`, `metrics` or `logs`
    pub signal: Option<Spanned<String>>,
    /// what the topic is keyed by (columns)
    pub key: Option<Spanned<OneOrMany>>,
    /// kafka, scaled out through the shuffle: what its first stage sends (`records`, the
    /// default, or `partials`)
    pub shuffle: Option<Spanned<String>>,
    pub schema: Spanned<Schema>,
    /// kafka
    pub topic: Option<Spanned<String>>,
    /// kafka: bootstrap servers (`--brokers` and OSPREY_BROKERS override it)
    pub brokers: Option<String>,
    /// kafka: consumer group (default `osprey-<job>`)
    pub group: Option<String>,
    /// kafka: librdkafka properties over Osprey's defaults
    pub properties: Option<std::collections::BTreeMap<String, String>>,
    /// file: a path or glob, relative to the job file
    pub path: Option<Spanned<String>>,
    /// generator: which built-in stream (`http-requests`, `trading-events`)
    pub stream: Option<Spanned<String>>,
    /// generator: events per second of event time
    pub rate: Option<Spanned<f64>>,
    pub partitions: Option<Spanned<u32>>,
    pub seed: Option<u64>,
    /// generator: event-time seconds per wall-clock second when run live
    pub speed: Option<Spanned<f64>>,
    /// generator: RFC 3339 instant of the first event
    pub start: Option<Spanned<String>>,
    /// generator: share of records that are malformed (to exercise dead letters)
    pub malformed_fraction: Option<Spanned<f64>>,
    /// generator: share of records delivered later than the watermark delay
    pub late_fraction: Option<Spanned<f64>>,
    /// generator: an injected incident (error burst and latency rise on one service)
    pub incident_at: Option<Spanned<String>>,
    pub incident_for: Option<Spanned<String>>,
    pub incident_service: Option<String>,
}

/// `[source.schema]`: column = type, in the order written.
#[derive(Debug)]
pub struct Schema(pub Vec<(Spanned<String>, Spanned<String>)>);

impl<'de> Deserialize<'de> for Schema {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Schema;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a table of column = \"type\"")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Schema, A::Error> {
                let mut columns = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    let ty = map.next_value::<Spanned<String>>().map_err(|e| {
                        de::Error::custom(format!("column `{}`: {e}; write its type as a string", key.get_ref()))
                    })?;
                    columns.push((key, ty));
                }
                Ok(Schema(columns))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventTimeFile {
    pub column: Spanned<String>,
    pub watermark_delay: Option<Spanned<String>>,
    pub allowed_lateness: Option<Spanned<String>>,
    pub idle_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowFile {
    pub kind: Spanned<String>,
    pub size: Option<Spanned<String>>,
    pub slide: Option<Spanned<String>>,
    pub gap: Option<Spanned<String>>,
    pub key: Option<Spanned<OneOrMany>>,
    /// cumulative: groups idle this long (event time) are dropped
    pub ttl: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkFile {
    pub kind: Spanned<String>,
    pub topic: Option<Spanned<String>>,
    /// kafka: librdkafka producer properties over Osprey's defaults
    pub properties: Option<std::collections::BTreeMap<String, String>>,
    pub key: Option<Spanned<OneOrMany>>,
    pub path: Option<Spanned<String>>,
    /// stdout: `json` (default) or `table`
    pub format: Option<Spanned<String>>,
    /// kafka: `at-least-once` (default) or `exactly-once`
    pub delivery: Option<Spanned<String>>,
}

/// Where dead letters or late records go: `[dead_letter]`, `[late]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    pub kind: Spanned<String>,
    pub path: Option<Spanned<String>>,
    pub topic: Option<Spanned<String>>,
}

/// A key that takes one column name or a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}
