//! Alert records as JSON lines: a file (locked, never truncated; see `sink::file`), or stdout.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::AlertDestination;
use crate::alert::Alert;

pub struct JsonLines {
    path: Option<PathBuf>,
    out: Box<dyn Write + Send>,
}

impl JsonLines {
    pub fn file(path: &Path) -> anyhow::Result<Self> {
        let f = crate::sink::file::open_fresh(path, "alert file")?;
        Ok(JsonLines { path: Some(path.to_path_buf()), out: Box::new(BufWriter::new(f)) })
    }

    pub fn stdout() -> Self {
        JsonLines { path: None, out: Box::new(std::io::stdout()) }
    }

    /// One line that is not an alert record (a notification).
    pub fn send_raw(&mut self, line: &[u8]) -> anyhow::Result<()> {
        self.out.write_all(line).and_then(|_| self.out.write_all(b"\n")).with_context(|| format!("cannot write {}", self.describe()))
    }
}

impl AlertDestination for JsonLines {
    fn send(&mut self, _: &Alert, line: &[u8]) -> anyhow::Result<()> {
        self.out.write_all(line).and_then(|_| self.out.write_all(b"\n")).with_context(|| format!("cannot write {}", self.describe()))
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.out.flush().with_context(|| format!("cannot write {}", self.describe()))
    }

    fn describe(&self) -> String {
        match &self.path {
            Some(p) => p.display().to_string(),
            None => "stdout".into(),
        }
    }
}
