//! What a job does with its windowed SQL result: the [`Kind`] trait, which each job kind
//! (`query/`, `slo/`, `invariant/`, `anomaly/`) implements in its own folder.
//!
//! A kind reads its own tables from the job file ([`KindEntry::parse`]), may choose the job's
//! default SQL and window, wraps the SQL per pane where it aggregates for itself, and builds the
//! evaluator that turns result rows into alerts. `job/kinds.rs` is the one list that names
//! them; nothing else matches on a kind.
//!
//! Adding a kind: a folder with a config type that implements [`Kind`] and a `KIND` entry,
//! one line in that list and, for a table of its own, one field in the job file's keys
//! ([`crate::jobfile::file::JobFile`]) so that a misspelt table name is refused.

use std::any::Any;
use std::fmt::Debug;

use datafusion::arrow::datatypes::SchemaRef;
use toml::Spanned;

use crate::alert::{AlertsConfig, Evaluator};
use crate::jobfile::file::WindowFile;
use crate::jobfile::{Checker, JobError, Span, Spans, WindowConfig};

/// The SQL of a kind that reads every event unless the job says which.
pub const EVERY_EVENT_SQL: &str = "SELECT * FROM events";

/// A job kind's validated configuration and behaviour.
pub trait Kind: Debug + Send + Sync + Any {
    /// As written in a job file's `kind`.
    fn name(&self) -> &'static str;

    /// The SQL when the job writes none; `None`: the job must write its SQL.
    fn default_sql(&self) -> Option<&'static str> {
        None
    }

    /// The kind's own window (an SLO's is its pane), from `[window]` if written; `None`: the
    /// job's `[window]` as written, which is then required.
    fn window(&mut self, _cx: &Checker, _written: Option<&Spanned<WindowFile>>, _spans: &Spans) -> Option<Result<WindowConfig, JobError>> {
        None
    }

    /// Whether the kind raises alerts (and so takes `[alerts]`) instead of emitting rows.
    fn raises_alerts(&self) -> bool {
        true
    }

    /// The kind's changes to the alert stage's defaults, before `[alerts]` is applied.
    fn alert_defaults(&self, _alerts: &mut AlertsConfig) {}

    /// Checks of `[alerts]` (written at `at`) that depend on the kind.
    fn check_alerts(&self, _cx: &Checker, _alerts: &AlertsConfig, _at: Span) -> Result<(), JobError> {
        Ok(())
    }

    /// The SQL the engine runs per pane in place of the job's, and the key an error in it is
    /// blamed on; `None`: the job's SQL as written.
    fn pane_sql(&self, _sql: &str) -> Option<(String, &'static str)> {
        None
    }

    /// Checks that need the SQL's result columns, beyond those building the evaluator makes.
    fn check(&self, _planned: &Planned) -> Result<(), KindError> {
        Ok(())
    }

    /// The evaluator that turns result rows into alerts; `None` for a kind that emits rows.
    fn evaluator(&self, job: &str, planned: &Planned) -> Result<Option<Box<dyn Evaluator>>, KindError>;

    /// What in the kind's configuration decides whether a saved state fits it. The bundled
    /// kinds keep the text the version before kinds were a trait wrote, so that its
    /// checkpoints still restore.
    fn shape(&self) -> String;

    /// Result columns the evaluator keeps state by (an invariant's key, an SLO's labels, an
    /// anomaly job's series): records that share them must meet in one process when a job is
    /// scaled out. Each is taken to be the input column of the same name, where there is one.
    fn state_key(&self) -> Option<Vec<String>> {
        None
    }

    /// Lines for `osprey describe`.
    fn describe(&self) -> Vec<String> {
        Vec::new()
    }
}

/// What planning knows when a kind builds its evaluator.
pub struct Planned {
    /// The SQL's result columns.
    pub output: SchemaRef,
    /// The decoded events' columns (declared and metadata).
    pub decoded: SchemaRef,
    /// The event-time column's index in `decoded`.
    pub event_time_index: usize,
}

/// A problem with a key of a kind's table found once the SQL's result is known; the job
/// names the line of `key` (`"slo.labels"`).
#[derive(Debug)]
pub struct KindError {
    pub key: String,
    pub message: String,
    pub help: Option<String>,
}

impl KindError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        KindError { key: key.into(), message: message.into(), help: None }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// How a kind reads its tables: `selected` when the job's `kind` names it (`kind_key` is where
/// that is written, absent for the default). A kind that is not selected refuses its tables.
pub type ParseFn = fn(cx: &Checker, selected: bool, kind_key: Option<&Spanned<String>>, spans: &mut Spans) -> Result<Option<Box<dyn Kind>>, JobError>;

/// One job kind, as the list of kinds names it.
pub struct KindEntry {
    pub name: &'static str,
    pub parse: ParseFn,
}

/// A kind's own table, when the job is of that kind (`selected`): refused in a job of another
/// kind, required in a job of this one (`help` says what to write).
pub fn own_table<'t, T>(
    cx: &Checker,
    kind: &str,
    table: Option<&'t Spanned<T>>,
    selected: bool,
    kind_key: Option<&Spanned<String>>,
    help: &str,
) -> Result<Option<&'t Spanned<T>>, JobError> {
    match (selected, table) {
        (true, Some(t)) => Ok(Some(t)),
        (true, None) => Err(missing_table(cx, kind, kind_key, help)),
        (false, Some(t)) => Err(table_of_other_kind(cx, kind, t.span())),
        (false, None) => Ok(None),
    }
}

/// The error for a kind's table in a job of another kind.
fn table_of_other_kind(cx: &Checker, table: &str, at: Span) -> JobError {
    cx.err_at(at, format!("[{table}] belongs to kind = \"{table}\" jobs")).with_help(format!("set kind = \"{table}\" before the first [table]"))
}

/// The error for a kind selected without its table.
fn missing_table(cx: &Checker, kind: &str, kind_key: Option<&Spanned<String>>, help: &str) -> JobError {
    let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
    let message = if kind == "slo" { "an SLO job needs an [slo] table".to_string() } else { format!("{article} {kind} job needs an [{kind}] table") };
    let at = kind_key.map(|k| k.span()).unwrap_or(0..0);
    cx.err_at(at, message).with_help(help)
}
