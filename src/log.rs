//! Messages on stderr: plain text for people, or one JSON object per line for log pipelines
//! (`--log-format json`), filtered by `--log-level`. Results, alerts and tables go to their
//! destinations, never here.

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

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
    let mut err = std::io::stderr().lock();
    if json() {
        let line = serde_json::json!({
            "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "level": format!("{level:?}").to_lowercase(),
            "message": message,
        });
        let _ = writeln!(err, "{line}");
    } else {
        let _ = writeln!(err, "{message}");
    }
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
