//! Job files: parsing (v1 format), the checks that need no engine, and the validated [`Job`].
//!
//! A job file is read in parts: the generic keys here, `[source]` in `source/`, `[sink]` and
//! the routes in `sink/`, `[alerts]` in `alert/`, and each kind's own table in the kind's
//! folder, through the list in [`kinds`]. Planning the SQL needs the engine and happens above
//! this module, in [`crate::plan`].

pub mod kinds;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use toml::Spanned;

use crate::alert::AlertsConfig;
use crate::kind::Kind;
use crate::jobfile::file::{self as spec, JobFile};
use crate::jobfile::{missing_key_help, toml_error, Checker, JobRef, Span};

pub use crate::sink::config::{Delivery, RouteConfig, SinkConfig, StdoutFormat};
pub use crate::source::config::{FileFormat, KafkaSourceConfig, SourceConfig};
pub use crate::jobfile::{
    closest, error, parse_instant, relative_to_job, timestamp_type, types, Column, ColumnType, Dataflow, EventTime, InputFormat, JobError,
    OtlpEncoding, Signal, SqlText, WindowConfig, WINDOW_END, WINDOW_START,
};

/// A validated job.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    /// What the job does with its SQL result: its kind's validated table and behaviour.
    pub kind: Arc<dyn Kind>,
    pub description: Option<String>,
    pub sql: SqlText,
    pub source: SourceConfig,
    /// How the source's records are written (JSON, or OpenTelemetry export requests).
    pub input: InputFormat,
    /// What the source's topic is keyed by (`[source] key`): columns; empty when unknown.
    pub source_key: Vec<String>,
    /// `[source] shuffle = "partials"`: scaled out through the shuffle, its first stage sends
    /// pane partials where its aggregates merge (`crate::shuffle::partials`), not records.
    pub pane_partials: bool,
    /// Declared columns, in file order. Nested JSON fields keep their dotted name.
    pub columns: Vec<Column>,
    pub event_time: EventTime,
    pub window: WindowConfig,
    pub sink: SinkConfig,
    pub dead_letter: RouteConfig,
    pub late: RouteConfig,
    /// Alerting jobs (slo, invariant, anomaly): where alerts go and how they behave.
    pub alerts: Option<AlertsConfig>,
    /// The job file, for error messages.
    pub path: PathBuf,
    /// The job file's text, and where some keys sit in it, for errors found after parsing.
    pub file_text: String,
    pub spans: crate::jobfile::Spans,
}

impl Job {
    /// The job's sink delivers exactly once: Kafka transactions commit its outputs with the
    /// offsets they reflect (see `crate::pipeline` and `crate::shuffle`).
    pub fn exactly_once(&self) -> bool {
        matches!(self.sink, SinkConfig::Kafka { delivery: Delivery::ExactlyOnce, .. })
    }

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

    /// A kind's problem with a key of its table, at that key's line.
    pub fn kind_error(&self, e: crate::kind::KindError) -> JobError {
        let err = self.error_at_key(&e.key, e.message);
        match e.help {
            Some(h) => err.with_help(h),
            None => err,
        }
    }

    pub fn event_time_index(&self) -> usize {
        self.columns
            .iter()
            .position(|c| c.name == self.event_time.column)
            .expect("validated: the event-time column is declared")
    }

    /// The kind's configuration as `T` (`job.config::<SloConfig>()`), if the job is of that kind.
    pub fn config<T: Kind>(&self) -> Option<&T> {
        let any: &dyn std::any::Any = self.kind.as_ref();
        any.downcast_ref::<T>()
    }

    /// What the engine runs for this job: columns, event time, window and SQL.
    pub fn dataflow(&self) -> Dataflow {
        Dataflow {
            name: self.name.clone(),
            sql: self.sql.clone(),
            columns: self.columns.clone(),
            event_time: self.event_time.clone(),
            window: self.window.clone(),
            output_key: match &self.sink {
                SinkConfig::Kafka { key, .. } => key.clone(),
                _ => Vec::new(),
            },
            input: self.input,
        }
    }
}

impl Job {
    pub fn job_ref(&self) -> JobRef<'_> {
        JobRef { name: &self.name, file: &self.path }
    }
}

impl crate::sink::SinkSpec for Job {
    fn sink_config(&self) -> &SinkConfig {
        &self.sink
    }

    fn raises_alerts(&self) -> bool {
        self.alerts.is_some()
    }

    fn job_ref(&self) -> JobRef<'_> {
        Job::job_ref(self)
    }
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
    job(&Checker { path, text }, file)
}

/// The generic keys checked in file order, with the job's kind reading its own table.
fn job(cx: &Checker, f: JobFile) -> Result<Job, JobError> {
    let name = f.name.get_ref().clone();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-') {
        return Err(cx.err(&f.name, format!("bad job name `{name}`")).with_help("a job name uses only a-z, 0-9, `_` and `-`"));
    }
    let mut spans = crate::jobfile::Spans::new();
    let mut kind = kinds::parse(cx, f.kind.as_ref(), &mut spans)?;

    let columns = cx.columns(&f.source.get_ref().schema)?;
    let sql = match (kind.default_sql(), &f.sql, &f.sql_file) {
        (Some(default), None, None) => SqlText { text: default.into(), file: cx.path.to_path_buf(), file_text: cx.text.to_string(), origin: (1, 1) },
        _ => cx.sql(&f)?,
    };
    let source = cx.source(f.source.get_ref())?;
    let input = cx.input_format(f.source.get_ref())?;
    if let InputFormat::Otlp { signal, .. } = input {
        cx.otlp_columns(&f.source.get_ref().schema, signal)?;
    }
    let source_key = cx.source_key(f.source.get_ref(), &columns)?;
    let pane_partials = match &f.source.get_ref().shuffle {
        None => false,
        Some(v) => match v.get_ref().as_str() {
            "records" => false,
            "partials" => true,
            other => {
                return Err(cx
                    .err(v, format!("[source] shuffle = \"{other}\" is not a way to shuffle"))
                    .with_help("\"records\" (the default: each record, lateness judged by every partition's clock) or \"partials\" (one row per pane and group, lateness judged in the first stage)"));
            }
        },
    };
    let event_time = cx.event_time(f.event_time.get_ref(), &columns)?;
    let window = match kind.window(cx, f.window.as_ref(), &spans) {
        Some(w) => w?,
        None => match &f.window {
            Some(w) => cx.window(w.get_ref(), &columns)?,
            None => {
                return Err(JobError::at_line_col(cx.path, cx.text, 1, 1, 1, "missing key `window`").with_help(missing_key_help("window")));
            }
        },
    };
    if matches!(window, WindowConfig::Cumulative { .. }) && event_time.allowed_lateness > 0 {
        let at = f.window.as_ref().expect("a cumulative window is written");
        return Err(cx
            .err(&at.get_ref().kind, "a cumulative window takes no allowed_lateness: its panes fold into running totals once")
            .with_help("remove allowed_lateness (late records go to [late]), or raise watermark_delay"));
    }
    let kafka_source = matches!(source, SourceConfig::Kafka(_));
    let sink = match &f.sink {
        None => SinkConfig::Stdout { format: StdoutFormat::Json },
        Some(s) => cx.sink(s.get_ref(), kafka_source)?,
    };
    let dead_letter = cx.route(f.dead_letter.as_ref(), &name, "dlq", kafka_source)?;
    let late = cx.route(f.late.as_ref(), &name, "late", kafka_source)?;
    let alerts = if kind.raises_alerts() {
        let mut defaults = AlertsConfig::defaults(kafka_source);
        kind.alert_defaults(&mut defaults);
        let alerts = cx.alerts(f.alerts.as_ref(), defaults)?;
        if let Some(at) = &f.alerts {
            kind.check_alerts(cx, &alerts, at.span())?;
        }
        Some(alerts)
    } else {
        if let Some(a) = &f.alerts {
            return Err(cx
                .err(a, format!("[alerts] is for alerting jobs; this is a {} job", kind.name()))
                .with_help("set kind = \"invariant\" (or remove [alerts]); a query job's rows go to [sink]"));
        }
        None
    };
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
        kind: Arc::from(kind),
        description: f.description,
        sql,
        source,
        input,
        source_key,
        pane_partials,
        columns,
        event_time,
        window,
        sink,
        dead_letter,
        late,
        alerts,
        path: cx.path.to_path_buf(),
        file_text: cx.text.to_string(),
        spans,
    })
}

/// The generic tables: the schema, the SQL, the event time and the window.
impl Checker<'_> {
    /// An OpenTelemetry source's columns are fields of its signal, by the names the contract fixes.
    fn otlp_columns(&self, schema: &Spanned<spec::Schema>, signal: Signal) -> Result<(), JobError> {
        use crate::decode::otlp::Field;
        for (key, _) in &schema.get_ref().0 {
            let name = key.get_ref();
            if Field::parse(signal, name).is_none() {
                let names = Field::names(signal);
                let e = self.err(key, format!("`{name}` is not a column of OpenTelemetry {}", signal.name()));
                return Err(match closest(name, names.iter().copied()) {
                    Some(near) => e.with_help(format!("did you mean `{near}`?")),
                    None => e.with_help(format!("the columns of {} are {}", signal.name(), names.join(", "))),
                });
            }
        }
        Ok(())
    }

    /// `[source] key`: declared columns naming what the topic is keyed by.
    fn source_key(&self, s: &spec::SourceFile, columns: &[Column]) -> Result<Vec<String>, JobError> {
        let Some(key) = &s.key else { return Ok(Vec::new()) };
        let names = key.get_ref().clone().into_vec();
        for n in &names {
            if !columns.iter().any(|c| &c.name == n) {
                let e = self.err(key, format!("source key column `{n}` is not in [source.schema]"));
                return Err(match closest(n, columns.iter().map(|c| c.name.as_str())) {
                    Some(near) => e.with_help(format!("did you mean `{near}`?")),
                    None => e.with_help("declare the column in [source.schema], or remove it from [source] key"),
                });
            }
        }
        Ok(names)
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
                let sql_path = self.relative(file.get_ref());
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
