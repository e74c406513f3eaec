//! Errors in job files that point at the line and column, rustc-style.

use std::fmt;
use std::path::{Path, PathBuf};

/// A problem in a job file (or the SQL file it names), with its position.
#[derive(Debug, Clone)]
pub struct JobError {
    pub file: PathBuf,
    /// 1-based; 0 when the error has no position in the file.
    pub line: usize,
    /// 1-based; 0 when unknown.
    pub column: usize,
    /// How many characters to underline.
    pub width: usize,
    pub message: String,
    pub help: Option<String>,
    /// The text of `line`, shown under the message.
    pub source_line: Option<String>,
}

impl JobError {
    /// An error without a position (the file is missing, for example).
    pub fn whole_file(file: &Path, message: impl Into<String>) -> Self {
        JobError {
            file: file.to_path_buf(),
            line: 0,
            column: 0,
            width: 0,
            message: message.into(),
            help: None,
            source_line: None,
        }
    }

    /// An error at a byte range of `text`, the content of `file`.
    pub fn at_span(file: &Path, text: &str, span: std::ops::Range<usize>, message: impl Into<String>) -> Self {
        let (line, column) = line_col(text, span.start);
        let width = text
            .get(span.clone())
            .map(|s| s.lines().next().unwrap_or("").chars().count())
            .unwrap_or(1)
            .max(1);
        Self::at_line_col(file, text, line, column, width, message)
    }

    /// An error at a 1-based line and column of `text`.
    pub fn at_line_col(
        file: &Path,
        text: &str,
        line: usize,
        column: usize,
        width: usize,
        message: impl Into<String>,
    ) -> Self {
        JobError {
            file: file.to_path_buf(),
            line,
            column,
            width: width.max(1),
            message: message.into(),
            help: None,
            source_line: text.lines().nth(line.saturating_sub(1)).map(str::to_string),
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, before[line_start..].chars().count() + 1)
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "error: {}", self.message)?;
        if self.line == 0 {
            write!(f, "  --> {}", self.file.display())?;
        } else {
            write!(f, "  --> {}:{}:{}", self.file.display(), self.line, self.column)?;
            if let Some(text) = &self.source_line {
                let gutter = self.line.to_string().len();
                let pad = " ".repeat(gutter);
                write!(
                    f,
                    "\n{pad} |\n{} | {}\n{pad} | {}{}",
                    self.line,
                    text,
                    " ".repeat(self.column.saturating_sub(1)),
                    "^".repeat(self.width)
                )?;
            }
        }
        if let Some(help) = &self.help {
            write!(f, "\n  = help: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for JobError {}

/// The candidate closest to `word` by edit distance, if it is close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word.to_lowercase(), &c.to_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance where swapping two neighbours is one edit (`hots` is one from `host`, two
/// from `ts`): optimal string alignment.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for j in 0..=b.len() {
        d[0][j] = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j - 1] + cost).min(d[i - 1][j] + 1).min(d[i][j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_nearest_key() {
        assert_eq!(closest("sizee", ["size", "slide", "gap"]), Some("size"));
        assert_eq!(closest("watermark_dealy", ["watermark_delay", "column"]), Some("watermark_delay"));
        assert_eq!(closest("zzzz", ["size", "slide"]), None);
        assert_eq!(closest("hots", ["ts", "service", "host"]), Some("host"), "a swap is one edit");
    }

    #[test]
    fn positions_are_one_based() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }
}
