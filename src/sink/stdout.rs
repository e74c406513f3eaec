//! Standard output: JSON lines for programs, tables for people.

use std::io::Write;

use super::{Sink, WindowResult};
use crate::output;
use crate::source::generator::format_ts;

/// One JSON object per result row.
pub struct JsonLines {
    buf: Vec<u8>,
}

impl JsonLines {
    pub fn stdout() -> Self {
        JsonLines { buf: Vec::new() }
    }
}

impl Sink for JsonLines {
    fn write(&mut self, result: &WindowResult) -> anyhow::Result<()> {
        output::json::write_window(result, &mut self.buf);
        if self.buf.len() > 1 << 16 {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(&self.buf)?;
        out.flush()?;
        self.buf.clear();
        Ok(())
    }
}

/// A titled table per window.
pub struct Table {
    /// Windows with no rows print only a title line when true.
    pub show_empty: bool,
}

impl Table {
    pub fn stdout() -> Self {
        Table { show_empty: true }
    }
}

/// The table of one window, with a title naming the job and the window.
pub fn render(result: &WindowResult) -> String {
    let title = format!(
        "── {}  {} → {}{}",
        result.job,
        format_ts(result.start).replace('T', " ").trim_end_matches(".000Z"),
        format_ts(result.end).split('T').nth(1).unwrap_or("").trim_end_matches(".000Z"),
        if result.update { "  (update: late records arrived)" } else { "" }
    );
    if result.rows() == 0 {
        return format!("{title}  (no rows)\n");
    }
    format!("{title}\n{}\n", output::table::format(result.schema, result.batches))
}

impl Sink for Table {
    fn write(&mut self, result: &WindowResult) -> anyhow::Result<()> {
        if result.rows() == 0 && !self.show_empty {
            return Ok(());
        }
        let text = render(result);
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.write_all(b"\n")?;
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        std::io::stdout().flush()?;
        Ok(())
    }
}
