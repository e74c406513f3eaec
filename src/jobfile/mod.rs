//! What a job file says, in the words every layer shares: column types, the event time, the
//! window, the SQL text, errors that point into the file, and [`Checker`], the helpers that
//! turn written values (durations, paths, counts) into checked ones.
//!
//! This is the bottom of the job's layers: sources, sinks, the alert stage and every job kind
//! parse their own tables with these, and `job/` assembles them. Nothing here imports up.

pub mod error;
pub mod file;
pub mod types;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

pub use error::{closest, JobError};
pub use types::{timestamp_type, ColumnType};

use crate::Millis;

/// Columns the engine adds to every window's `events` table.
pub const WINDOW_START: &str = "window_start";
pub const WINDOW_END: &str = "window_end";

/// A byte range of the job file's text.
pub type Span = Range<usize>;
/// Where some keys (`"slo.labels"`) sit in the job file, for errors found after parsing.
pub type Spans = std::collections::BTreeMap<&'static str, Span>;

#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub ty: ColumnType,
}

/// The job's SQL and where it sits, so planning errors point into the right file.
#[derive(Debug, Clone)]
pub struct SqlText {
    pub text: String,
    /// The file holding the SQL: the job file or its `sql_file`.
    pub file: PathBuf,
    /// That file's whole text, for snippets.
    pub file_text: String,
    /// Line and column (1-based) in `file` where the SQL's first character is.
    pub origin: (usize, usize),
}

impl SqlText {
    /// A job error at a 1-based line and column of the SQL text.
    pub fn error_at(&self, line: usize, column: usize, width: usize, message: impl Into<String>) -> JobError {
        let (l0, c0) = self.origin;
        let file_line = l0 + line.max(1) - 1;
        let file_col = if line <= 1 { c0 + column.max(1) - 1 } else { column.max(1) };
        JobError::at_line_col(&self.file, &self.file_text, file_line, file_col, width, message)
    }
}

#[derive(Debug, Clone)]
pub struct EventTime {
    pub column: String,
    pub watermark_delay: Millis,
    pub allowed_lateness: Millis,
    pub idle_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WindowConfig {
    Tumbling { size: Millis },
    Hopping { size: Millis, slide: Millis },
    Session { gap: Millis, key: Vec<String> },
    /// Running aggregates per group since the start, evaluated every `size`; groups idle
    /// for `ttl` (event time) are dropped.
    Cumulative { size: Millis, ttl: Option<Millis> },
}

/// How a source's records are written (`[source] format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InputFormat {
    /// One JSON object per message or line (or Parquet rows, for files).
    #[default]
    Json,
    /// One OpenTelemetry export request per message or line, flattened into rows.
    Otlp { encoding: OtlpEncoding, signal: Signal },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpEncoding {
    /// `otlp_proto`: protobuf, the Collector's Kafka exporter's default.
    Proto,
    /// `otlp_json`: the OTLP/JSON encoding.
    Json,
}

/// Which OpenTelemetry signal an OTLP source carries (`[source] signal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Traces,
    Metrics,
    Logs,
}

impl Signal {
    pub const NAMES: [&'static str; 3] = ["traces", "metrics", "logs"];

    pub fn parse(name: &str) -> Option<Signal> {
        match name {
            "traces" => Some(Signal::Traces),
            "metrics" => Some(Signal::Metrics),
            "logs" => Some(Signal::Logs),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        }
    }
}

/// What the engine runs for a job, without what it does with the result: the declared
/// columns, the event time, the window and the SQL. Decoding and planning take this, not the
/// whole job, so they sit below the job kinds.
#[derive(Debug, Clone)]
pub struct Dataflow {
    pub name: String,
    pub sql: SqlText,
    /// Declared columns, in file order. Nested JSON fields keep their dotted name.
    pub columns: Vec<Column>,
    pub event_time: EventTime,
    pub window: WindowConfig,
    /// The columns keying the output records (a Kafka sink's `key`), which the SQL must give.
    pub output_key: Vec<String>,
    /// How the source's records are written.
    pub input: InputFormat,
}

impl Dataflow {
    pub fn event_time_index(&self) -> usize {
        self.columns
            .iter()
            .position(|c| c.name == self.event_time.column)
            .expect("validated: the event-time column is declared")
    }
}

/// Which job a source, sink or route is built for, to name it in errors.
#[derive(Debug, Clone, Copy)]
pub struct JobRef<'a> {
    pub name: &'a str,
    pub file: &'a Path,
}

/// Checks written values against the job file they come from: every error it makes points at
/// the value's place in `text`.
pub struct Checker<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

impl Checker<'_> {
    pub fn err<T>(&self, at: &Spanned<T>, message: impl Into<String>) -> JobError {
        JobError::at_span(self.path, self.text, at.span(), message)
    }

    pub fn err_at(&self, span: Span, message: impl Into<String>) -> JobError {
        JobError::at_span(self.path, self.text, span, message)
    }

    pub fn duration(&self, value: &Spanned<String>, key: &str) -> Result<Millis, JobError> {
        let raw = value.get_ref().trim();
        if raw == "0" {
            return Ok(0);
        }
        let d = humantime::parse_duration(raw).map_err(|e| {
            self.err(value, format!("bad duration for `{key}`: `{raw}` ({e})"))
                .with_help("write a duration such as \"250ms\", \"5s\", \"1m\", \"1h 30m\"")
        })?;
        if d.subsec_nanos() % 1_000_000 != 0 {
            return Err(self
                .err(value, format!("`{key}` = `{raw}` is not a whole number of milliseconds"))
                .with_help("event time has millisecond resolution: write \"1ms\" or more, in whole milliseconds"));
        }
        Ok(d.as_millis() as Millis)
    }

    pub fn positive_duration(&self, value: &Spanned<String>, key: &str) -> Result<Millis, JobError> {
        let d = self.duration(value, key)?;
        if d <= 0 {
            return Err(self.err(value, format!("`{key}` must be longer than zero")));
        }
        Ok(d)
    }

    /// A whole number written as `key`, at least `min`; `default` when absent.
    pub fn at_least(&self, v: &Option<Spanned<i64>>, key: &str, default: usize, min: i64) -> Result<usize, JobError> {
        match v {
            None => Ok(default),
            Some(n) if *n.get_ref() >= min => Ok(*n.get_ref() as usize),
            Some(n) => Err(self.err(n, format!("`{key}` must be at least {min}"))),
        }
    }

    /// A path written in the job file: relative to the job file's folder.
    pub fn relative(&self, p: &str) -> PathBuf {
        relative_to_job(self.path, p)
    }

    /// The job file's text read again as `T`: a job kind reads its own tables this way, with
    /// their spans, while the job file's other keys pass by.
    pub fn tables<T: serde::de::DeserializeOwned>(&self) -> Result<T, JobError> {
        toml::from_str(self.text).map_err(|e| toml_error(self.path, self.text, e))
    }
}

/// A TOML or key error as a job error, with a suggestion where one is near.
pub fn toml_error(path: &Path, text: &str, e: toml::de::Error) -> JobError {
    let message = e.message().trim().to_string();
    let span = e.span().unwrap_or(0..0);
    // serde's wording: "unknown field `x`, expected one of `a`, `b`"
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or("");
        let expected: Vec<&str> = rest.split('`').skip(2).step_by(2).filter(|s| !s.is_empty()).collect();
        let mut err = JobError::at_span(path, text, span, format!("unknown key `{field}`"));
        err = match closest(field, expected.iter().copied()) {
            Some(near) => err.with_help(format!("did you mean `{near}`?")),
            None => err.with_help(format!("the keys here are: {}", expected.join(", "))),
        };
        return err;
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or("");
        return JobError::at_span(path, text, span, format!("missing key `{field}`")).with_help(missing_key_help(field));
    }
    JobError::at_span(path, text, span, message)
}

pub fn missing_key_help(field: &str) -> String {
    match field {
        "name" => "add name = \"my_job\" before the first [table]".into(),
        "source" => "add a [source] table with kind, format and [source.schema]".into(),
        "event_time" => "add [event_time] with column = \"<timestamp column>\"".into(),
        "window" => "add [window] with kind = \"tumbling\" and size = \"1m\"".into(),
        "schema" => "add [source.schema] with one line per column, for example ts = \"timestamp\"".into(),
        other => format!("add `{other} = ...` to this table"),
    }
}

/// Paths in a job file are relative to the job file's folder.
pub fn relative_to_job(job_path: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        return p.to_path_buf();
    }
    job_path.parent().map(|d| d.join(p)).unwrap_or_else(|| p.to_path_buf())
}

/// An RFC 3339 instant as epoch milliseconds.
pub fn parse_instant(text: &str) -> Result<Millis, String> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("bad instant `{text}` ({e}); write RFC 3339, for example 2026-01-05T09:00:00Z"))
}
