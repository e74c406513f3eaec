//! Job files: parsing (v1 format), validation, and the validated [`Job`].
//!
//! Loading a job checks everything that needs no engine: TOML syntax, known keys, the schema,
//! the event time and the window. [`validate`] also plans the SQL with DataFusion against the
//! declared schema, so a job that validates will plan when it runs.

mod alerting;
pub mod error;
mod spec;
pub mod types;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use toml::Spanned;

pub use error::JobError;
use error::closest;
use spec::JobFile;
pub use types::{timestamp_type, ColumnType};

use crate::source::generator::{GeneratorConfig, Incident, Stream};
use crate::Millis;

/// Columns the engine adds to every window's `events` table.
pub const WINDOW_START: &str = "window_start";
pub const WINDOW_END: &str = "window_end";

/// What a job does with its windowed SQL result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Emit the result rows.
    Query,
    Slo,
    Invariant,
    Anomaly,
}

impl JobKind {
    /// As written in a job file's `kind`.
    pub fn name(self) -> &'static str {
        match self {
            JobKind::Query => "query",
            JobKind::Slo => "slo",
            JobKind::Invariant => "invariant",
            JobKind::Anomaly => "anomaly",
        }
    }
}

/// A validated job.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub kind: JobKind,
    pub description: Option<String>,
    pub sql: SqlText,
    pub source: SourceConfig,
    /// Declared columns, in file order. Nested JSON fields keep their dotted name.
    pub columns: Vec<Column>,
    pub event_time: EventTime,
    pub window: WindowConfig,
    pub sink: SinkConfig,
    pub dead_letter: RouteConfig,
    pub late: RouteConfig,
    /// Alerting jobs (slo, invariant, anomaly): where alerts go and how they behave.
    pub alerts: Option<crate::alert::AlertsConfig>,
    /// `kind = "invariant"`
    pub invariant: Option<crate::invariant::InvariantConfig>,
    /// `kind = "slo"`
    pub slo: Option<crate::slo::SloConfig>,
    /// `kind = "anomaly"`
    pub anomaly: Option<crate::anomaly::AnomalyConfig>,
    /// The job file, for error messages.
    pub path: PathBuf,
    /// The job file's text, and where some keys sit in it, for errors found after parsing.
    pub file_text: String,
    pub spans: std::collections::BTreeMap<&'static str, std::ops::Range<usize>>,
}

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

impl Job {
    /// The declared columns as an Arrow schema (nullable; the event time is checked by decode).
    pub fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns
                .iter()
                .map(|c| Field::new(&c.name, c.ty.arrow_type(), true))
                .collect::<Vec<_>>(),
        ))
    }

    /// An error at a key of the job file (`"invariant.violation"`), or its start.
    pub fn error_at_key(&self, key: &str, message: impl Into<String>) -> JobError {
        let span = self.spans.get(key).cloned().unwrap_or(0..0);
        JobError::at_span(&self.path, &self.file_text, span, message)
    }

    pub fn event_time_index(&self) -> usize {
        self.columns
            .iter()
            .position(|c| c.name == self.event_time.column)
            .expect("validated: the event-time column is declared")
    }
}

/// Load and check a job file, then plan its SQL: what `osprey validate` runs.
pub fn validate(path: &Path) -> Result<Job, JobError> {
    let job = load(path)?;
    plan(&job)?;
    Ok(job)
}

/// Plan the SQL a job runs per window, checking what needs its result columns. An SLO job
/// runs its SQL inside the pane aggregation ([`crate::slo::pane_sql`]); its own SQL is
/// planned alone first, so that an error points into the text the user wrote.
pub fn plan(job: &Job) -> Result<crate::exec::JobQuery, JobError> {
    use crate::exec::JobQuery;
    if let WindowConfig::Cumulative { size, .. } = job.window {
        // The SQL as the user wrote it plans over one window first: its errors point into it.
        let mut windowed = job.clone();
        windowed.window = WindowConfig::Tumbling { size };
        crate::exec::WindowQuery::plan(&windowed)?;
        let query = crate::exec::cumulative::CumulativeQuery::plan(job)?;
        check_against_result(job, &query.output_schema())?;
        return Ok(JobQuery::Cumulative(Box::new(query)));
    }
    let query = crate::exec::WindowQuery::plan(job)?;
    check_against_result(job, &query.output_schema())?;
    let Some(slo) = &job.slo else { return Ok(JobQuery::Windowed(query)) };
    let mut pane_job = job.clone();
    pane_job.sql.text = crate::slo::pane_sql(&job.sql.text, slo);
    crate::exec::WindowQuery::plan(&pane_job)
        .map(JobQuery::Windowed)
        .map_err(|e| job.error_at_key("slo.labels", format!("[slo]: the pane aggregation does not plan: {}", e.message)))
}

/// What can be checked only once the SQL's result columns are known.
pub fn check_against_result(job: &Job, output: &SchemaRef) -> Result<(), JobError> {
    if let Some(inv) = job.invariant.as_ref().filter(|i| i.deadline.is_some()) {
        let decoded = crate::decode::Decoder::new(job).schema();
        crate::invariant::DeadlineEvaluator::new(&job.name, inv.clone(), &decoded, job.event_time_index())
            .map_err(|e| job.error_at_key(&format!("invariant.{}", e.key), format!("[invariant.{}]: {}", e.key.replace('.', "] "), e.message)))?;
    } else if let Some(inv) = &job.invariant {
        crate::invariant::InvariantEvaluator::new(&job.name, inv.clone(), output)
            .map_err(|e| job.error_at_key(&format!("invariant.{}", e.key), format!("[invariant] {}: {}", e.key, e.message)))?;
    }
    if let Some(a) = &job.anomaly {
        crate::anomaly::AnomalyEvaluator::new(&job.name, a.clone(), output)
            .map_err(|e| job.error_at_key(&format!("anomaly.{}", e.key), format!("[anomaly] {}: {}", e.key, e.message)))?;
    }
    if let Some(slo) = &job.slo {
        let columns = || output.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ");
        for l in &slo.labels {
            if output.index_of(l).is_err() {
                let mut e = job.error_at_key("slo.labels", format!("[slo] label `{l}` is not a column of the SQL result (its columns: {})", columns()));
                if let Some(near) = closest(l, output.fields().iter().map(|f| f.name().as_str())) {
                    e = e.with_help(format!("did you mean `{near}`?"));
                }
                return Err(e);
            }
            if crate::slo::evaluator::ROW_COLUMNS.contains(&l.as_str()) || l.starts_with("burn_rate_") {
                return Err(job.error_at_key("slo.labels", format!("[slo] label `{l}` has the name of a column of the SLO's rows"))
                    .with_help("rename it in the SQL (SELECT *, x AS my_label FROM events)"));
            }
        }
        let (key, text) = match &slo.condition {
            crate::slo::Condition::Good(g) => ("slo.good", g),
            crate::slo::Condition::Bad(b) => ("slo.bad", b),
        };
        crate::exec::predicate::RowPredicate::compile(text, output).map_err(|e| {
            job.error_at_key(key, format!("[slo] {}: {}", &key[4..], first_line(&e.to_string())))
                .with_help(format!("an SQL boolean over one event; the columns are: {}", columns()))
        })?;
    }
    Ok(())
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

/// Load and check a job file without planning the SQL.
pub fn load(path: &Path) -> Result<Job, JobError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        JobError::whole_file(path, format!("cannot read the job file: {e}"))
            .with_help("pass the path of a job file, for example jobs/http_red.toml")
    })?;
    parse(path, &text)
}

/// Parse and check job text; `path` names it in errors and anchors relative paths.
pub fn parse(path: &Path, text: &str) -> Result<Job, JobError> {
    let file: JobFile = toml::from_str(text).map_err(|e| toml_error(path, text, e))?;
    Checker { path, text }.job(file)
}

fn toml_error(path: &Path, text: &str, e: toml::de::Error) -> JobError {
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
        return JobError::at_span(path, text, span, format!("missing key `{field}`"))
            .with_help(missing_key_help(field));
    }
    JobError::at_span(path, text, span, message)
}

fn missing_key_help(field: &str) -> String {
    match field {
        "name" => "add name = \"my_job\" before the first [table]".into(),
        "source" => "add a [source] table with kind, format and [source.schema]".into(),
        "event_time" => "add [event_time] with column = \"<timestamp column>\"".into(),
        "window" => "add [window] with kind = \"tumbling\" and size = \"1m\"".into(),
        "schema" => "add [source.schema] with one line per column, for example ts = \"timestamp\"".into(),
        other => format!("add `{other} = ...` to this table"),
    }
}

struct Checker<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Checker<'_> {
    fn err<T>(&self, at: &Spanned<T>, message: impl Into<String>) -> JobError {
        JobError::at_span(self.path, self.text, at.span(), message)
    }

    fn duration(&self, value: &Spanned<String>, key: &str) -> Result<Millis, JobError> {
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

    fn positive_duration(&self, value: &Spanned<String>, key: &str) -> Result<Millis, JobError> {
        let d = self.duration(value, key)?;
        if d <= 0 {
            return Err(self.err(value, format!("`{key}` must be longer than zero")));
        }
        Ok(d)
    }

    fn job(&self, f: JobFile) -> Result<Job, JobError> {
        let name = f.name.get_ref().clone();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-') {
            return Err(self
                .err(&f.name, format!("bad job name `{name}`"))
                .with_help("a job name uses only a-z, 0-9, `_` and `-`"));
        }
        let kind = match &f.kind {
            None => JobKind::Query,
            Some(k) => match k.get_ref().as_str() {
                "query" => JobKind::Query,
                "slo" => JobKind::Slo,
                "invariant" => JobKind::Invariant,
                "anomaly" => JobKind::Anomaly,
                other => {
                    let mut e = self.err(k, format!("unknown job kind `{other}`"));
                    if let Some(near) = closest(other, ["query", "slo", "invariant", "anomaly"]) {
                        e = e.with_help(format!("did you mean `{near}`?"));
                    }
                    return Err(e);
                }
            },
        };
        let mut spans = std::collections::BTreeMap::new();
        let invariant = self.invariant(kind, &f, &mut spans)?;
        let slo = self.slo(kind, &f, &mut spans)?;
        let anomaly = self.anomaly(kind, &f, &mut spans)?;

        let columns = self.columns(&f.source.get_ref().schema)?;
        let events_only = slo.is_some() || invariant.as_ref().is_some_and(|i| i.deadline.is_some());
        let sql = match (events_only, &f.sql, &f.sql_file) {
            // An SLO counts, and a deadline watches, every event unless its SQL says which.
            (true, None, None) => SqlText {
                text: crate::slo::DEFAULT_SQL.into(),
                file: self.path.to_path_buf(),
                file_text: self.text.to_string(),
                origin: (1, 1),
            },
            _ => self.sql(&f)?,
        };
        let source = self.source(f.source.get_ref())?;
        let event_time = self.event_time(f.event_time.get_ref(), &columns)?;
        let window = match (&f.window, &slo) {
            (Some(w), None) => self.window(w.get_ref(), &columns)?,
            (Some(w), Some(slo)) => self.slo_window(w, slo, spans.contains_key("slo.pane"))?,
            (None, Some(slo)) => WindowConfig::Tumbling { size: slo.pane },
            (None, None) => {
                return Err(JobError::at_line_col(self.path, self.text, 1, 1, 1, "missing key `window`")
                    .with_help(missing_key_help("window")));
            }
        };
        if matches!(window, WindowConfig::Cumulative { .. }) && event_time.allowed_lateness > 0 {
            let at = f.window.as_ref().expect("a cumulative window is written");
            return Err(self
                .err(&at.get_ref().kind, "a cumulative window takes no allowed_lateness: its panes fold into running totals once")
                .with_help("remove allowed_lateness (late records go to [late]), or raise watermark_delay"));
        }
        let slo = match (slo, &window) {
            (Some(mut s), WindowConfig::Tumbling { size }) => {
                s.pane = *size;
                Some(s)
            }
            (s, _) => s,
        };
        let sink = match &f.sink {
            None => SinkConfig::Stdout { format: StdoutFormat::Json },
            Some(s) => self.sink(s.get_ref(), matches!(source, SourceConfig::Kafka(_)))?,
        };
        let kafka_source = matches!(source, SourceConfig::Kafka(_));
        let dead_letter = self.route(f.dead_letter.as_ref(), &name, "dlq", kafka_source)?;
        let late = self.route(f.late.as_ref(), &name, "late", kafka_source)?;
        let alerts = self.alerts(kind, &f, kafka_source)?;
        if let (Some(inv), Some(a)) = (&invariant, &alerts) {
            if inv.deadline.is_some() && (a.timing.for_ > 0 || a.timing.keep_firing_for > 0) {
                let at = f.alerts.as_ref().expect("timing is written in [alerts]");
                return Err(JobError::at_span(self.path, self.text, at.span(), "a deadline job takes no `for` or `keep_firing_for`")
                    .with_help("the deadline is the wait: lengthen [invariant.deadline] within instead"));
            }
        }
        let source = match source {
            SourceConfig::Kafka(mut k) => {
                if k.group.is_empty() {
                    k.group = format!("osprey-{name}");
                }
                SourceConfig::Kafka(k)
            }
            other => other,
        };
        Ok(Job {
            name,
            kind,
            description: f.description,
            sql,
            source,
            columns,
            event_time,
            window,
            sink,
            dead_letter,
            late,
            alerts,
            invariant,
            slo,
            anomaly,
            path: self.path.to_path_buf(),
            file_text: self.text.to_string(),
            spans,
        })
    }

    fn columns(&self, schema: &Spanned<spec::Schema>) -> Result<Vec<Column>, JobError> {
        let mut columns: Vec<Column> = Vec::new();
        for (key, ty) in &schema.get_ref().0 {
            let name = key.get_ref().clone();
            if name.is_empty() || name.split('.').any(str::is_empty) {
                return Err(self.err(key, format!("bad column name `{name}`")));
            }
            if name == WINDOW_START || name == WINDOW_END || crate::source::metadata::is_metadata_column(&name) {
                return Err(self
                    .err(key, format!("column name `{name}` is reserved: the engine adds it"))
                    .with_help("rename the column; SQL can select window_start, window_end, _partition and _offset on every job"));
            }
            if columns.iter().any(|c| c.name == name) {
                return Err(self.err(key, format!("column `{name}` is declared twice")));
            }
            let ty = ColumnType::parse(ty.get_ref()).map_err(|m| self.err(ty, m))?;
            columns.push(Column { name, ty });
        }
        if columns.is_empty() {
            return Err(self
                .err(schema, "the schema declares no columns")
                .with_help("list the columns under [source.schema], for example ts = \"timestamp\""));
        }
        // A nested leaf ("http.status") cannot share its parent's name with a plain column ("http").
        for c in &columns {
            if let Some(parent) = columns.iter().find(|p| c.name.starts_with(&format!("{}.", p.name))) {
                let key = &schema.get_ref().0.iter().find(|(k, _)| *k.get_ref() == c.name).unwrap().0;
                return Err(self.err(
                    key,
                    format!("column `{}` is nested under `{}`, which is declared as a plain column", c.name, parent.name),
                ));
            }
        }
        Ok(columns)
    }

    fn sql(&self, f: &JobFile) -> Result<SqlText, JobError> {
        match (&f.sql, &f.sql_file) {
            (Some(sql), None) => {
                let span = sql.span();
                let literal = &self.text[span.clone()];
                let mut start = span.start;
                if literal.starts_with("\"\"\"") || literal.starts_with("'''") {
                    start += 3;
                    if self.text[start..].starts_with("\r\n") {
                        start += 2;
                    } else if self.text[start..].starts_with('\n') {
                        start += 1;
                    }
                } else if literal.starts_with('"') || literal.starts_with('\'') {
                    start += 1;
                }
                if sql.get_ref().trim().is_empty() {
                    return Err(self.err(sql, "the SQL is empty"));
                }
                Ok(SqlText {
                    text: sql.get_ref().clone(),
                    file: self.path.to_path_buf(),
                    file_text: self.text.to_string(),
                    origin: error::line_col(self.text, start),
                })
            }
            (None, Some(file)) => {
                let sql_path = relative_to_job(self.path, file.get_ref());
                let text = std::fs::read_to_string(&sql_path).map_err(|e| {
                    self.err(file, format!("cannot read sql_file `{}`: {e}", sql_path.display()))
                        .with_help("sql_file is relative to the job file")
                })?;
                if text.trim().is_empty() {
                    return Err(JobError::whole_file(&sql_path, "the SQL file is empty"));
                }
                Ok(SqlText { text: text.clone(), file: sql_path, file_text: text, origin: (1, 1) })
            }
            (Some(sql), Some(_)) => Err(self
                .err(sql, "the job has both `sql` and `sql_file`")
                .with_help("keep one of them")),
            (None, None) => Err(JobError::at_line_col(self.path, self.text, 1, 1, 1, "the job has no SQL")
                .with_help("add sql = \"\"\"SELECT ... FROM events ...\"\"\" or sql_file = \"sql/<job>.sql\" before the first [table]")),
        }
    }

    fn source(&self, s: &spec::SourceFile) -> Result<SourceConfig, JobError> {
        let kind = s.kind.get_ref().as_str();
        if let Some(format) = &s.format {
            if !["json", "parquet"].contains(&format.get_ref().as_str()) {
                return Err(self
                    .err(format, format!("unknown source format `{}`", format.get_ref()))
                    .with_help("the formats are json (one JSON object per message or line) and parquet (files only)"));
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
                    Some(_) => FileFormat::JsonLines,
                    None => FileFormat::Auto,
                };
                let pattern = relative_to_job(self.path, path.get_ref()).to_string_lossy().into_owned();
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

    fn generator(&self, s: &spec::SourceFile) -> Result<GeneratorConfig, JobError> {
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

    fn event_time(&self, e: &spec::EventTimeFile, columns: &[Column]) -> Result<EventTime, JobError> {
        let column = e.column.get_ref();
        match columns.iter().find(|c| &c.name == column) {
            None => {
                let mut err = self.err(&e.column, format!("event-time column `{column}` is not in [source.schema]"));
                if let Some(near) = closest(column, columns.iter().map(|c| c.name.as_str())) {
                    err = err.with_help(format!("did you mean `{near}`?"));
                }
                return Err(err);
            }
            Some(c) if c.ty != ColumnType::Timestamp => {
                return Err(self
                    .err(&e.column, format!("event-time column `{column}` must be declared as \"timestamp\""))
                    .with_help(format!("in [source.schema], write {column} = \"timestamp\" (RFC 3339 strings or epoch milliseconds)")));
            }
            Some(_) => {}
        }
        let d = |v: &Option<Spanned<String>>, key, default| v.as_ref().map(|v| self.duration(v, key)).unwrap_or(Ok(default));
        Ok(EventTime {
            column: column.clone(),
            watermark_delay: d(&e.watermark_delay, "watermark_delay", 0)?,
            allowed_lateness: d(&e.allowed_lateness, "allowed_lateness", 0)?,
            idle_timeout: Duration::from_millis(d(&e.idle_timeout, "idle_timeout", 30_000)? as u64),
        })
    }

    fn window(&self, w: &spec::WindowFile, columns: &[Column]) -> Result<WindowConfig, JobError> {
        let kind = w.kind.get_ref().as_str();
        fn require_fn<'v>(c: &Checker, w: &spec::WindowFile, kind: &str, v: &'v Option<Spanned<String>>, key: &str, example: &str) -> Result<&'v Spanned<String>, JobError> {
            v.as_ref().ok_or_else(|| {
                c.err(&w.kind, format!("a {kind} window needs `{key}`"))
                    .with_help(format!("add {key} = \"{example}\" to [window]"))
            })
        }
        let require = |v, key, example| require_fn(self, w, kind, v, key, example);
        let forbid = |v: Option<Span>, key: &str| match v {
            Some(span) => Err(JobError::at_span(self.path, self.text, span, format!("`{key}` does not apply to a {kind} window"))
                .with_help("tumbling takes size; hopping takes size and slide; session takes gap and key")),
            None => Ok(()),
        };
        let span_of = |v: &Option<Spanned<String>>| v.as_ref().map(|s| s.span());
        match kind {
            _ if kind != "cumulative" && w.ttl.is_some() => {
                let t = w.ttl.as_ref().expect("checked");
                Err(self.err(t, format!("`ttl` does not apply to a {kind} window")).with_help("ttl drops idle groups of a cumulative window"))
            }
            "tumbling" => {
                forbid(span_of(&w.slide), "slide")?;
                forbid(span_of(&w.gap), "gap")?;
                forbid(w.key.as_ref().map(|k| k.span()), "key")?;
                let size = self.positive_duration(require(&w.size, "size", "1m")?, "size")?;
                Ok(WindowConfig::Tumbling { size })
            }
            "hopping" | "sliding" => {
                forbid(span_of(&w.gap), "gap")?;
                forbid(w.key.as_ref().map(|k| k.span()), "key")?;
                let size_v = require(&w.size, "size", "5m")?;
                let size = self.positive_duration(size_v, "size")?;
                let slide_v = require(&w.slide, "slide", "1m")?;
                let slide = self.positive_duration(slide_v, "slide")?;
                if slide > size {
                    return Err(self
                        .err(slide_v, "`slide` is longer than `size`: some events would fall in no window")
                        .with_help("use a slide no longer than the size"));
                }
                Ok(WindowConfig::Hopping { size, slide })
            }
            "cumulative" => {
                forbid(span_of(&w.slide), "slide")?;
                forbid(span_of(&w.gap), "gap")?;
                forbid(w.key.as_ref().map(|k| k.span()), "key")?;
                let size = self.positive_duration(require(&w.size, "size", "1m")?, "size")?;
                let ttl = w.ttl.as_ref().map(|t| self.positive_duration(t, "ttl")).transpose()?;
                Ok(WindowConfig::Cumulative { size, ttl })
            }
            "session" => {
                forbid(span_of(&w.size), "size")?;
                forbid(span_of(&w.slide), "slide")?;
                let gap = self.positive_duration(require(&w.gap, "gap", "30s")?, "gap")?;
                let key = match &w.key {
                    None => Vec::new(),
                    Some(k) => {
                        let names = k.get_ref().clone().into_vec();
                        for n in &names {
                            if !columns.iter().any(|c| &c.name == n) {
                                let mut e = self.err(k, format!("session key column `{n}` is not in [source.schema]"));
                                if let Some(near) = closest(n, columns.iter().map(|c| c.name.as_str())) {
                                    e = e.with_help(format!("did you mean `{near}`?"));
                                }
                                return Err(e);
                            }
                        }
                        names
                    }
                };
                Ok(WindowConfig::Session { gap, key })
            }
            other => {
                let e = self.err(&w.kind, format!("unknown window kind `{other}`"));
                Err(match closest(other, ["tumbling", "hopping", "session", "cumulative"]) {
                    Some(near) => e.with_help(format!("did you mean `{near}`?")),
                    None => e.with_help("the window kinds are tumbling, hopping, session and cumulative"),
                })
            }
        }
    }

    fn sink(&self, s: &spec::SinkFile, kafka_source: bool) -> Result<SinkConfig, JobError> {
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
                Ok(SinkConfig::File { path: relative_to_job(self.path, path.get_ref()) })
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
    fn route(&self, r: Option<&Spanned<spec::RouteFile>>, job: &str, suffix: &str, kafka: bool) -> Result<RouteConfig, JobError> {
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
                Some(p) => relative_to_job(self.path, p.get_ref()),
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

type Span = std::ops::Range<usize>;

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

#[cfg(test)]
mod delivery_tests {
    use super::*;

    fn job(source: &str, delivery: &str) -> Result<Job, JobError> {
        let text = format!(
            "name = \"t\"\nsql = \"SELECT * FROM events\"\n[source]\n{source}\n[source.schema]\nts = \"timestamp\"\n[event_time]\ncolumn = \"ts\"\n[window]\nkind = \"tumbling\"\nsize = \"1m\"\n[sink]\nkind = \"kafka\"\ntopic = \"out\"\ndelivery = \"{delivery}\"\n"
        );
        parse(Path::new("t.toml"), &text)
    }

    #[test]
    fn exactly_once_needs_a_kafka_source_and_a_known_mode() {
        let kafka = "kind = \"kafka\"\ntopic = \"in\"";
        let Ok(j) = job(kafka, "exactly-once") else { panic!("a Kafka job may be exactly-once") };
        assert!(matches!(j.sink, SinkConfig::Kafka { delivery: Delivery::ExactlyOnce, .. }));
        let e = job("kind = \"file\"\npath = \"x.jsonl\"", "exactly-once").unwrap_err();
        assert!(e.message.contains("needs a Kafka source") && e.line == 16, "{e}");
        let e = job(kafka, "twice").unwrap_err();
        assert!(e.message.contains("unknown delivery `twice`") && e.help.as_deref().unwrap_or("").contains("exactly-once"), "{e}");
    }
}
