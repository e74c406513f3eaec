//! `[sink]`, `[dead_letter]` and `[late]`: where a job's rows, dead letters and late records
//! go, checked.

use std::path::PathBuf;

use toml::Spanned;

use crate::jobfile::file::{RouteFile, SinkFile};
use crate::jobfile::{closest, Checker, JobError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdoutFormat {
    Json,
    Table,
}

#[derive(Debug, Clone)]
pub enum SinkConfig {
    Stdout { format: StdoutFormat },
    File { path: PathBuf },
    Kafka { topic: String, key: Vec<String>, properties: Vec<(String, String)>, delivery: Delivery },
}

/// What a Kafka sink promises (`[sink] delivery`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Delivery {
    /// Every output at least once: after a crash, output since the last commit again.
    #[default]
    AtLeastOnce,
    /// Outputs, alert records and consumed offsets in one Kafka transaction per checkpoint: a
    /// `read_committed` consumer sees each output once, whatever crashes.
    ExactlyOnce,
}

/// Where dead letters or late records go. Never "nowhere".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteConfig {
    File(PathBuf),
    Stdout,
    Stderr,
    Kafka { topic: String },
}

impl Checker<'_> {
    pub fn sink(&self, s: &SinkFile, kafka_source: bool) -> Result<SinkConfig, JobError> {
        let key = s.key.as_ref().map(|k| k.get_ref().clone().into_vec()).unwrap_or_default();
        match s.kind.get_ref().as_str() {
            "stdout" => {
                let format = match s.format.as_ref().map(|f| (f, f.get_ref().as_str())) {
                    None | Some((_, "json")) => StdoutFormat::Json,
                    Some((_, "table")) => StdoutFormat::Table,
                    Some((f, other)) => {
                        return Err(self
                            .err(f, format!("unknown stdout format `{other}`"))
                            .with_help("use format = \"json\" (JSON lines) or \"table\""));
                    }
                };
                Ok(SinkConfig::Stdout { format })
            }
            "file" => {
                let path = s.path.as_ref().ok_or_else(|| {
                    self.err(&s.kind, "a file sink needs `path`").with_help("add path = \"out/<job>.jsonl\" to [sink]")
                })?;
                Ok(SinkConfig::File { path: self.relative(path.get_ref()) })
            }
            "kafka" => {
                let topic = s.topic.as_ref().ok_or_else(|| {
                    self.err(&s.kind, "a kafka sink needs `topic`").with_help("add topic = \"<output topic>\" to [sink]")
                })?;
                let delivery = match s.delivery.as_ref().map(|d| (d, d.get_ref().as_str())) {
                    None | Some((_, "at-least-once")) => Delivery::AtLeastOnce,
                    Some((_, "exactly-once")) => {
                        if !kafka_source {
                            return Err(self
                                .err(s.delivery.as_ref().expect("matched"), "exactly-once delivery needs a Kafka source")
                                .with_help("the consumed offsets go into the same transaction as the output; use delivery = \"at-least-once\""));
                        }
                        Delivery::ExactlyOnce
                    }
                    Some((d, other)) => {
                        return Err(self
                            .err(d, format!("unknown delivery `{other}`"))
                            .with_help("use delivery = \"at-least-once\" (the default) or \"exactly-once\""));
                    }
                };
                Ok(SinkConfig::Kafka {
                    topic: topic.get_ref().clone(),
                    key,
                    properties: s.properties.clone().unwrap_or_default().into_iter().collect(),
                    delivery,
                })
            }
            other => {
                let e = self.err(&s.kind, format!("unknown sink kind `{other}`"));
                Err(match closest(other, ["kafka", "file", "stdout"]) {
                    Some(near) => e.with_help(format!("did you mean `{near}`?")),
                    None => e.with_help("the sink kinds are kafka, file and stdout"),
                })
            }
        }
    }

    /// A Kafka job sends dead letters and late records to `<job>.dlq` / `<job>.late` topics by
    /// default; other jobs to files under `osprey-out/`.
    pub fn route(&self, r: Option<&Spanned<RouteFile>>, job: &str, suffix: &str, kafka: bool) -> Result<RouteConfig, JobError> {
        let Some(r) = r else {
            if kafka {
                return Ok(RouteConfig::Kafka { topic: format!("{job}.{suffix}") });
            }
            return Ok(RouteConfig::File(PathBuf::from(format!("osprey-out/{job}.{suffix}.jsonl"))));
        };
        let r = r.get_ref();
        match r.kind.get_ref().as_str() {
            // A path written in the job file is relative to it, like a source's; the default is
            // relative to where osprey runs.
            "file" => Ok(RouteConfig::File(match r.path.as_ref() {
                Some(p) => self.relative(p.get_ref()),
                None => PathBuf::from(format!("osprey-out/{job}.{suffix}.jsonl")),
            })),
            "stdout" => Ok(RouteConfig::Stdout),
            "stderr" => Ok(RouteConfig::Stderr),
            "kafka" => Ok(RouteConfig::Kafka {
                topic: r.topic.as_ref().map(|t| t.get_ref().clone()).unwrap_or_else(|| format!("{job}.{suffix}")),
            }),
            other => Err(self
                .err(&r.kind, format!("unknown destination kind `{other}`"))
                .with_help("records are never dropped: use kind = \"file\" (with path), \"stdout\", \"stderr\" or \"kafka\"")),
        }
    }
}
