//! A JSON-lines file: windows in the order they fire, rows in the SQL's order.
//!
//! Every file destination (results, dead letters, late records) is opened with [`open_fresh`]:
//! a run never truncates what an earlier run wrote, and two runs never write one file.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::{Sink, WindowResult};
use crate::output;

pub struct FileSink {
    path: PathBuf,
    out: BufWriter<File>,
    buf: Vec<u8>,
}

impl FileSink {
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        let file = open_fresh(path, "output file")?;
        Ok(FileSink { path: path.to_path_buf(), out: BufWriter::with_capacity(1 << 20, file), buf: Vec::new() })
    }
}

impl Sink for FileSink {
    fn write(&mut self, result: &WindowResult) -> anyhow::Result<()> {
        self.buf.clear();
        output::json::write_window(result, &mut self.buf);
        self.out.write_all(&self.buf).with_context(|| format!("cannot write {}", self.path.display()))
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.out.flush().with_context(|| format!("cannot write {}", self.path.display()))
    }
}

/// Opens `path` for this run alone: locked against a second writer (another run of the job,
/// or two destinations of one run naming the same file), and empty. A non-empty file an
/// earlier run left is kept, renamed to `<path>.<UTC time of this run>` (said on stderr), so
/// what is at `path` is always this run's output and nothing is ever truncated.
pub fn open_fresh(path: &Path, what: &str) -> anyhow::Result<File> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create the folder {}", dir.display()))?;
    }
    let open = || {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot create the {what} {}", path.display()))
    };
    let file = open()?;
    lock(&file, path, what)?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len == 0 {
        return Ok(file);
    }
    let kept = kept_name(path);
    std::fs::rename(path, &kept)
        .with_context(|| format!("cannot move the earlier {what} {} aside to {}", path.display(), kept.display()))?;
    crate::log_info!("the earlier {what} {} ({len} bytes) is kept as {}", path.display(), kept.display());
    let fresh = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(path)
        .with_context(|| format!("another process created {} while this run started; is the job running twice?", path.display()))?;
    lock(&fresh, path, what)?;
    drop(file);
    Ok(fresh)
}

fn lock(file: &File, path: &Path, what: &str) -> anyhow::Result<()> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "the {what} {} is being written by another run (of this job, or another destination of this run); \
             stop that run or choose another path",
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock the {what} {}", path.display())),
    }
}

/// `<path>.<YYYYMMDDTHHMMSS.mmmZ>`, unused.
fn kept_name(path: &Path) -> PathBuf {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ").to_string();
    let mut name = path.as_os_str().to_os_string();
    name.push(format!(".{stamp}"));
    let mut candidate = PathBuf::from(&name);
    let mut n = 1;
    while candidate.exists() {
        let mut numbered = name.clone();
        numbered.push(format!(".{n}"));
        candidate = PathBuf::from(numbered);
        n += 1;
    }
    candidate
}
