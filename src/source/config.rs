//! `[source]`: which source a job reads and how, checked.

use super::generator::{GeneratorConfig, Incident, Stream};
use crate::jobfile::file::SourceFile;
use crate::jobfile::{closest, parse_instant, Checker, InputFormat, JobError, OtlpEncoding, Signal};

#[derive(Debug, Clone)]
pub enum SourceConfig {
    Kafka(KafkaSourceConfig),
    File { pattern: String, format: FileFormat },
    Generator(GeneratorConfig),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSourceConfig {
    pub topic: String,
    /// From the job file; `--brokers` or OSPREY_BROKERS win over it.
    pub brokers: Option<String>,
    pub group: String,
    pub properties: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// By extension: `.parquet` is Parquet, anything else JSON lines.
    Auto,
    JsonLines,
    Parquet,
}

impl Checker<'_> {
    /// How the source's records are written: `format`, and `signal` for OpenTelemetry.
    pub fn input_format(&self, s: &SourceFile) -> Result<InputFormat, JobError> {
        let encoding = match s.format.as_ref().map(|f| f.get_ref().as_str()) {
            Some("otlp_proto") => Some(OtlpEncoding::Proto),
            Some("otlp_json") => Some(OtlpEncoding::Json),
            _ => None,
        };
        match (encoding, &s.signal) {
            (None, None) => Ok(InputFormat::Json),
            (None, Some(signal)) => Err(self
                .err(signal, "`signal` is for OpenTelemetry sources")
                .with_help("set format = \"otlp_proto\" or \"otlp_json\", or remove `signal`")),
            (Some(_), None) => Err(self
                .err(s.format.as_ref().expect("an OTLP format is written"), "an OpenTelemetry source needs `signal`")
                .with_help("add signal = \"traces\" (or \"metrics\", \"logs\") to [source]")),
            (Some(encoding), Some(signal)) => {
                let parsed = Signal::parse(signal.get_ref()).ok_or_else(|| {
                    let e = self.err(signal, format!("unknown signal `{}`", signal.get_ref()));
                    match closest(signal.get_ref(), Signal::NAMES) {
                        Some(near) => e.with_help(format!("did you mean `{near}`?")),
                        None => e.with_help("the signals are traces, metrics and logs"),
                    }
                })?;
                if s.kind.get_ref() == "generator" {
                    return Err(self.err(&s.kind, "the generator writes JSON, not OpenTelemetry").with_help("remove format and signal, or read a Kafka topic or files"));
                }
                Ok(InputFormat::Otlp { encoding, signal: parsed })
            }
        }
    }

    pub fn source(&self, s: &SourceFile) -> Result<SourceConfig, JobError> {
        let kind = s.kind.get_ref().as_str();
        if let Some(format) = &s.format {
            if !["json", "parquet", "otlp_proto", "otlp_json"].contains(&format.get_ref().as_str()) {
                let e = self.err(format, format!("unknown source format `{}`", format.get_ref()));
                return Err(match closest(format.get_ref(), ["json", "parquet", "otlp_proto", "otlp_json"]) {
                    Some(near) => e.with_help(format!("did you mean `{near}`?")),
                    None => e.with_help(
                        "the formats are json (one JSON object per message or line), parquet (files only), otlp_proto and otlp_json (OpenTelemetry export requests)",
                    ),
                });
            }
        }
        match kind {
            "kafka" => {
                let topic = s.topic.as_ref().ok_or_else(|| {
                    self.err(&s.kind, "a kafka source needs `topic`").with_help("add topic = \"<topic name>\" to [source]")
                })?;
                Ok(SourceConfig::Kafka(KafkaSourceConfig {
                    topic: topic.get_ref().clone(),
                    brokers: s.brokers.clone(),
                    group: s.group.clone().unwrap_or_default(),
                    properties: s.properties.clone().unwrap_or_default().into_iter().collect(),
                }))
            }
            "file" => {
                let path = s.path.as_ref().ok_or_else(|| {
                    self.err(&s.kind, "a file source needs `path`")
                        .with_help("add path = \"archive/*.jsonl\" (relative to the job file) to [source]")
                })?;
                let format = match s.format.as_ref().map(|f| f.get_ref().as_str()) {
                    Some("parquet") => FileFormat::Parquet,
                    Some("otlp_proto") => {
                        return Err(self
                            .err(s.format.as_ref().expect("matched"), "a file source reads otlp_json, not otlp_proto")
                            .with_help("files hold JSON lines of export requests, as the Collector's file exporter writes them: format = \"otlp_json\""));
                    }
                    Some(_) => FileFormat::JsonLines,
                    None => FileFormat::Auto,
                };
                let pattern = self.relative(path.get_ref()).to_string_lossy().into_owned();
                Ok(SourceConfig::File { pattern, format })
            }
            "generator" => self.generator(s).map(SourceConfig::Generator),
            other => {
                let mut e = self.err(&s.kind, format!("unknown source kind `{other}`"));
                e = match closest(other, ["kafka", "file", "generator"]) {
                    Some(near) => e.with_help(format!("did you mean `{near}`?")),
                    None => e.with_help("the source kinds are kafka, file and generator"),
                };
                Err(e)
            }
        }
    }


    fn generator(&self, s: &SourceFile) -> Result<GeneratorConfig, JobError> {
        let stream_key = s.stream.as_ref().ok_or_else(|| {
            self.err(&s.kind, "a generator source needs `stream`")
                .with_help(format!("add stream = \"{}\" to [source]", Stream::NAMES.join("\" or \"")))
        })?;
        let stream = Stream::from_name(stream_key.get_ref()).ok_or_else(|| {
            self.err(stream_key, format!("unknown generator stream `{}`", stream_key.get_ref()))
                .with_help(format!("the streams are {}", Stream::NAMES.join(", ")))
        })?;
        let mut g = GeneratorConfig::new(stream);
        if let Some(rate) = &s.rate {
            if !(*rate.get_ref() > 0.0 && *rate.get_ref() <= crate::source::generator::MAX_RATE) {
                return Err(self.err(
                    rate,
                    format!("`rate` (events per second) must be above zero and at most {}", crate::source::generator::MAX_RATE),
                )
                .with_help("for more events, generate a file (osprey generate) and replay it"));
            }
            g.rate = *rate.get_ref();
        }
        if let Some(p) = &s.partitions {
            if *p.get_ref() == 0 || *p.get_ref() > 1024 {
                return Err(self.err(p, "`partitions` must be between 1 and 1024"));
            }
            g.partitions = *p.get_ref();
        }
        if let Some(seed) = s.seed {
            g.seed = seed;
        }
        if let Some(speed) = &s.speed {
            if !(*speed.get_ref() > 0.0) {
                return Err(self.err(speed, "`speed` must be above zero"));
            }
            g.speed = *speed.get_ref();
        }
        if let Some(start) = &s.start {
            g.start = parse_instant(start.get_ref()).map_err(|m| self.err(start, m))?;
        }
        for (value, slot, key) in [
            (&s.malformed_fraction, &mut g.malformed_fraction, "malformed_fraction"),
            (&s.late_fraction, &mut g.late_fraction, "late_fraction"),
        ] {
            if let Some(v) = value {
                if !(0.0..=1.0).contains(v.get_ref()) {
                    return Err(self.err(v, format!("`{key}` must be between 0 and 1")));
                }
                *slot = *v.get_ref();
            }
        }
        if let Some(at) = &s.incident_at {
            let duration = match &s.incident_for {
                Some(d) => self.positive_duration(d, "incident_for")?,
                None => 4 * 60_000,
            };
            g.incident = Some(Incident {
                at: self.duration(at, "incident_at")?,
                duration,
                service: s.incident_service.clone().unwrap_or_else(|| "checkout".into()),
            });
        }
        Ok(g)
    }
}
