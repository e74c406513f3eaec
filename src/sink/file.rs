//! A JSON-lines file: windows in the order they fire, rows in the SQL's order.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{Sink, WindowResult};
use crate::output;

pub struct FileSink {
    path: PathBuf,
    out: BufWriter<File>,
    buf: Vec<u8>,
}

impl FileSink {
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create the folder {}", dir.display()))?;
        }
        let file = File::create(path).with_context(|| format!("cannot create the output file {}", path.display()))?;
        Ok(FileSink { path: path.to_path_buf(), out: BufWriter::with_capacity(1 << 20, file), buf: Vec::new() })
    }
}

impl Sink for FileSink {
    fn write(&mut self, result: &WindowResult) -> anyhow::Result<()> {
        self.buf.clear();
        for b in result.batches {
            output::json::write_rows(b, &mut self.buf);
        }
        self.out.write_all(&self.buf).with_context(|| format!("cannot write {}", self.path.display()))
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.out.flush().with_context(|| format!("cannot write {}", self.path.display()))
    }
}
