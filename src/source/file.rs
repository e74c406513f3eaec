//! Files: JSON lines or Parquet, one partition per file, read in path order.
//!
//! Each file is its own partition with its own watermark. The source reads the file whose
//! watermark is furthest behind, so files that cover the same hours (one per Kafka partition)
//! advance together, and files that follow each other in time (one per day) are read one after
//! the other. A file not started yet is read with a small first chunk, so a glob of a thousand
//! daily files costs a thousand first lines, not a thousand chunks, before the first closes.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::{Chunk, PartitionInfo, Payload, Poll, RawRecord, Source};
use crate::source::config::FileFormat;
use crate::Millis;

/// Bytes read per chunk of a started JSON-lines file.
pub const CHUNK_BYTES: usize = 4 << 20;
/// Bytes read the first time from a file, enough for its first records' times.
const FIRST_CHUNK_BYTES: usize = 16 << 10;

pub struct FileSource {
    files: Vec<FileState>,
    infos: Vec<PartitionInfo>,
    chunk_bytes: usize,
    total_bytes: u64,
}

struct FileState {
    path: PathBuf,
    parquet: bool,
    /// JSON lines: next byte to read; Parquet: next row group.
    next: u64,
    /// JSON lines: 1-based number of the next line; Parquet: next row number.
    next_offset: i64,
    len: u64,
    started: bool,
    ended: bool,
    end_reported: bool,
}

impl FileSource {
    /// Every file matching `pattern` (a path or a glob), sorted by path.
    pub fn open(pattern: &str, format: FileFormat) -> anyhow::Result<FileSource> {
        let paths = expand(pattern)?;
        let mut files = Vec::with_capacity(paths.len());
        let mut total = 0;
        for path in paths {
            let parquet = match format {
                FileFormat::Parquet => true,
                FileFormat::JsonLines => false,
                FileFormat::Auto => path.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet")),
            };
            let len = std::fs::metadata(&path).with_context(|| format!("cannot read {}", path.display()))?.len();
            total += len;
            files.push(FileState {
                path,
                parquet,
                next: 0,
                next_offset: if parquet { 0 } else { 1 },
                len,
                started: false,
                ended: false,
                end_reported: false,
            });
        }
        let infos = files.iter().map(|f| PartitionInfo { name: f.path.display().to_string() }).collect();
        Ok(FileSource { files, infos, chunk_bytes: CHUNK_BYTES, total_bytes: total })
    }

    /// Smaller chunks, to exercise chunk boundaries in tests.
    pub fn with_chunk_bytes(mut self, bytes: usize) -> Self {
        self.chunk_bytes = bytes.max(1);
        self
    }

    fn read_json(&mut self, p: usize) -> anyhow::Result<Chunk> {
        let limit = if self.files[p].started { self.chunk_bytes } else { FIRST_CHUNK_BYTES.min(self.chunk_bytes) };
        let f = &mut self.files[p];
        f.started = true;
        let mut file = File::open(&f.path).with_context(|| format!("cannot open {}", f.path.display()))?;
        file.seek(SeekFrom::Start(f.next))?;
        let mut data = Vec::with_capacity(limit.min((f.len - f.next) as usize) + 1);
        (&mut file).take(limit as u64).read_to_end(&mut data)?;
        let at_eof = f.next + data.len() as u64 >= f.len;
        let first = f.next == 0;
        // Keep whole lines; a line longer than the chunk is read on until its end.
        if !at_eof {
            match data.iter().rposition(|&b| b == b'\n') {
                Some(nl) => data.truncate(nl + 1),
                None => {
                    let mut rest = Vec::new();
                    let mut byte = [0u8; 1 << 16];
                    loop {
                        let n = file.read(&mut byte)?;
                        if n == 0 {
                            break;
                        }
                        if let Some(nl) = byte[..n].iter().position(|&b| b == b'\n') {
                            rest.extend_from_slice(&byte[..=nl]);
                            break;
                        }
                        rest.extend_from_slice(&byte[..n]);
                    }
                    data.extend_from_slice(&rest);
                }
            }
        }
        f.next += data.len() as u64;
        if f.next >= f.len {
            f.ended = true;
        }
        // A UTF-8 byte-order mark (from Windows tools) is not part of the first record.
        if first && data.starts_with(&[0xEF, 0xBB, 0xBF]) {
            data.drain(..3);
        }
        let records = split_lines(&data, &mut f.next_offset);
        Ok(Chunk { partition: p, bytes: data.len() as u64, payload: Payload::Json { data, records, meta: None }, behind: false })
    }

    fn read_parquet(&mut self, p: usize) -> anyhow::Result<Chunk> {
        let f = &mut self.files[p];
        f.started = true;
        let file = File::open(&f.path).with_context(|| format!("cannot open {}", f.path.display()))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .with_context(|| format!("{} is not a readable Parquet file", f.path.display()))?;
        let groups = builder.metadata().num_row_groups() as u64;
        if f.next >= groups {
            f.ended = true;
            let schema = builder.schema().clone();
            return Ok(Chunk {
                partition: p,
                bytes: 0,
                behind: false,
                payload: Payload::Arrow {
                    batch: datafusion::arrow::record_batch::RecordBatch::new_empty(schema),
                    first_offset: f.next_offset,
                },
            });
        }
        let group_bytes = builder.metadata().row_group(f.next as usize).compressed_size().max(0) as u64;
        let schema = builder.schema().clone();
        let reader = builder.with_row_groups(vec![f.next as usize]).with_batch_size(64 * 1024).build()?;
        let batches = reader.collect::<Result<Vec<_>, _>>()?;
        let batch = datafusion::arrow::compute::concat_batches(&schema, &batches)?;
        let first_offset = f.next_offset;
        f.next_offset += batch.num_rows() as i64;
        f.next += 1;
        if f.next >= groups {
            f.ended = true;
        }
        Ok(Chunk { partition: p, bytes: group_bytes, payload: Payload::Arrow { batch, first_offset }, behind: false })
    }
}

/// Ranges of the non-blank lines of `data`, numbered from `*line`.
fn split_lines(data: &[u8], line: &mut i64) -> Vec<RawRecord> {
    let mut records = Vec::with_capacity(data.len() / 128);
    let mut start = 0usize;
    while start < data.len() {
        let end = memchr_newline(&data[start..]).map(|i| start + i).unwrap_or(data.len());
        let mut stop = end;
        if stop > start && data[stop - 1] == b'\r' {
            stop -= 1;
        }
        // A record starts with `{` almost always: skip the blank-line scan then.
        if data.get(start) == Some(&b'{') || data[start..stop].iter().any(|b| !b.is_ascii_whitespace()) {
            records.push(RawRecord { start: start as u32, end: stop as u32, offset: *line });
        }
        *line += 1;
        start = end + 1;
    }
    records
}

fn memchr_newline(data: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', data)
}

impl Source for FileSource {
    fn partitions(&self) -> &[PartitionInfo] {
        &self.infos
    }

    fn poll(&mut self, watermarks: &[Millis]) -> anyhow::Result<Poll> {
        if let Some(p) = self.files.iter().position(|f| f.ended && !f.end_reported) {
            self.files[p].end_reported = true;
            return Ok(Poll::PartitionEnd(p));
        }
        // Unstarted files first (their watermark is unknown), then the one furthest behind.
        let next = (0..self.files.len())
            .filter(|&p| !self.files[p].ended)
            .min_by_key(|&p| (self.files[p].started, watermarks.get(p).copied().unwrap_or(Millis::MIN), p));
        let Some(p) = next else { return Ok(Poll::End) };
        if self.files[p].parquet { self.read_parquet(p) } else { self.read_json(p) }.map(Poll::Chunk)
    }

    fn total_bytes(&self) -> Option<u64> {
        Some(self.total_bytes)
    }

    fn is_bounded(&self) -> bool {
        true
    }
}

/// The files a path or glob names, sorted. No match is an error that says what was tried.
pub fn expand(pattern: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = if glob_chars(pattern) {
        glob::glob(pattern)
            .with_context(|| format!("bad glob pattern `{pattern}`"))?
            .filter_map(Result::ok)
            .filter(|p| p.is_file())
            .collect()
    } else {
        let p = Path::new(pattern);
        if p.is_dir() {
            bail!("`{pattern}` is a folder; name its files, for example '{}/*.jsonl'", pattern.trim_end_matches('/'));
        }
        if !p.is_file() {
            bail!("no file `{pattern}`");
        }
        vec![p.to_path_buf()]
    };
    if paths.is_empty() {
        bail!("no file matches `{pattern}`; check the path (quote a glob so the shell leaves it to osprey)");
    }
    paths.sort();
    Ok(paths)
}

fn glob_chars(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_their_numbers_and_skip_blanks() {
        let mut line = 1;
        let data = b"{\"a\":1}\n\n  \r\n{\"a\":2}\r\n{\"a\":3}";
        let records = split_lines(data, &mut line);
        let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![1, 4, 5]);
        assert_eq!(&data[records[1].start as usize..records[1].end as usize], b"{\"a\":2}");
        assert_eq!(line, 6);
    }

    #[test]
    fn reads_every_line_across_small_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let text: String = (0..100).map(|i| format!("{{\"i\":{i}}}\n")).collect();
        std::fs::write(&path, text).unwrap();
        let mut src = FileSource::open(path.to_str().unwrap(), FileFormat::Auto).unwrap().with_chunk_bytes(37);
        let mut seen = Vec::new();
        loop {
            match src.poll(&[Millis::MIN]).unwrap() {
                Poll::Chunk(c) => {
                    if let Payload::Json { data, records, .. } = c.payload {
                        for r in records {
                            seen.push((r.offset, String::from_utf8(data[r.start as usize..r.end as usize].to_vec()).unwrap()));
                        }
                    }
                }
                Poll::End => break,
                Poll::PartitionEnd(_) => {}
                other => panic!("a file source does not {other:?}"),
            }
        }
        assert_eq!(seen.len(), 100);
        assert_eq!(seen[99], (100, "{\"i\":99}".to_string()));
    }
}
