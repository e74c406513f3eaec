//! Messages on stderr: plain text for people, or one JSON object per line for log pipelines
//! (`--log-format json`), filtered by `--log-level`. Results, alerts and tables go to their
//! destinations, never here.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// The last lines a job logged, kept for `GET /v1/jobs/{name}/logs` (`osprey logs`).
pub type JobLog = Arc<Mutex<VecDeque<String>>>;

/// Lines a job's log keeps.
pub const JOB_LOG_LINES: usize = 1000;

thread_local! {
    /// The job this thread runs (a server's job thread): its name goes on every line, and
    /// the lines into its log.
    static JOB: RefCell<Option<(String, JobLog)>> = const { RefCell::new(None) };
}

/// Until the guard drops, messages of this thread belong to job `name` and are kept in `log`.
pub fn for_job(name: &str, log: JobLog) -> JobGuard {
    JOB.with(|j| *j.borrow_mut() = Some((name.to_string(), log)));
    JobGuard
}

pub struct JobGuard;

impl Drop for JobGuard {
    fn drop(&mut self) {
        JOB.with(|j| *j.borrow_mut() = None);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Level {
    Error = 0,
    Warn = 1,
    Info = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);
static FORMAT: AtomicU8 = AtomicU8::new(0);

pub fn init(format: Format, level: Level) {
    FORMAT.store(format as u8, Relaxed);
    LEVEL.store(level as u8, Relaxed);
}

pub fn json() -> bool {
    FORMAT.load(Relaxed) == Format::Json as u8
}

pub fn enabled(level: Level) -> bool {
    level as u8 <= LEVEL.load(Relaxed)
}

pub fn emit(level: Level, message: &str) {
    if !enabled(level) {
        return;
    }
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let level_name = format!("{level:?}").to_lowercase();
    JOB.with(|j| {
        let job = j.borrow();
        let name = job.as_ref().map(|(n, _)| n.as_str());
        let mut err = std::io::stderr().lock();
        if json() {
            let mut line = serde_json::json!({ "time": time, "level": level_name, "message": message });
            if let Some(n) = name {
                line["job"] = n.into();
            }
            let _ = writeln!(err, "{line}");
        } else {
            let _ = writeln!(err, "{message}");
        }
        if let Some((n, log)) = job.as_ref() {
            let mut log = log.lock().expect("not poisoned");
            if log.len() == JOB_LOG_LINES {
                log.pop_front();
            }
            log.push_back(serde_json::json!({ "time": time, "level": level_name, "job": n, "message": message }).to_string());
        }
    });
}

/// A message for people following a run (progress, what went where).
#[macro_export]
macro_rules! log_info { ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Info, &format!($($arg)*)) } }
/// Something was set aside or is about to go wrong: dead letters, retries, lost deliveries.
#[macro_export]
macro_rules! log_warn { ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Warn, &format!($($arg)*)) } }
/// The run failed, or its result should not be trusted.
#[macro_export]
macro_rules! log_error { ($($arg:tt)*) => { $crate::log::emit($crate::log::Level::Error, &format!($($arg)*)) } }
