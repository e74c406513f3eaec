//! Checkpoints on disk: a job's whole state and the source positions it reflects, written
//! atomically (temporary file, fsync, rename, fsync of the folder) into `<state-dir>/<job>/`.
//!
//! A file is `OSPREYCK`, a format version, the payload's length and its FNV-1a 64 checksum,
//! then the payload. Reading tries the newest file first; a torn or corrupt one (short, bad
//! checksum, undecodable) is skipped with a log line and the one before it used, so the last
//! two are kept.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 8] = b"OSPREYCK";
const VERSION: u32 = 1;
const HEADER: usize = 8 + 4 + 8 + 8;
/// Checkpoints kept: the newest and the one a corrupt newest falls back to.
const KEEP: usize = 2;

/// Everything a job needs to continue as if it had never stopped.
#[derive(Debug, Serialize, Deserialize)]
pub struct JobState {
    pub job: String,
    /// [`shape`] of the job that wrote it: a job whose state no longer fits refuses it.
    pub shape: u64,
    /// Per partition, the next record to read (everything before it is in the state).
    pub positions: Vec<Option<i64>>,
    /// The window operator (open windows and panes, watermarks).
    #[serde(with = "crate::state::bytes")]
    pub operator: Vec<u8>,
    /// The SQL's own state (a cumulative window's running aggregates).
    #[serde(with = "crate::state::bytes")]
    pub query: Vec<u8>,
    /// The job kind's evaluator (SLO rings, timers, detector models).
    #[serde(with = "crate::state::bytes")]
    pub evaluator: Vec<u8>,
    /// The alert stage (lifecycle, dedup, sequence numbers, storms, groups).
    #[serde(with = "crate::state::bytes")]
    pub stage: Vec<u8>,
    /// Exactly-once through the shuffle: this checkpoint's token, which the transaction
    /// committed with it notes per partition (`crate::pipeline::handover`). Older checkpoints
    /// have none.
    #[serde(default)]
    pub token: Option<u64>,
}

/// What in a job decides whether a state fits it: the columns, the event time, the window,
/// the SQL and the job kind's tables. Sinks, descriptions and routes may change freely.
pub fn shape(job: &crate::job::Job) -> u64 {
    let text = format!(
        "{:?}|{:?}|{:?}|{}|{}",
        job.columns.iter().map(|c| (&c.name, c.ty)).collect::<Vec<_>>(),
        job.event_time,
        job.window,
        job.sql.text,
        job.kind.shape(),
    );
    fnv(text.as_bytes())
}

pub(crate) fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// A job's checkpoint folder.
pub struct Store {
    dir: PathBuf,
}

/// A checkpoint read back.
pub struct Loaded {
    pub sequence: u64,
    pub path: PathBuf,
    pub state: JobState,
}

impl Store {
    pub fn open(state_dir: &Path, job: &str) -> anyhow::Result<Store> {
        let dir = state_dir.join(job);
        fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the state folder {} (check --state-dir and its permissions)", dir.display()))?;
        Ok(Store { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Checkpoint files, newest first.
    fn files(&self) -> anyhow::Result<Vec<(u64, PathBuf)>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).with_context(|| format!("cannot read {}", self.dir.display()))? {
            let path = entry?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if let Some(seq) = name.strip_prefix("checkpoint-").and_then(|n| n.strip_suffix(".bin")).and_then(|n| n.parse::<u64>().ok()) {
                out.push((seq, path));
            }
        }
        out.sort_by(|a, b| b.0.cmp(&a.0));
        Ok(out)
    }

    /// The highest sequence number on disk, whole or not (0: none), so new checkpoints sort after.
    pub fn last_sequence(&self) -> anyhow::Result<u64> {
        Ok(self.files()?.first().map(|(s, _)| *s).unwrap_or(0))
    }

    /// The newest checkpoint that reads back whole, if any.
    pub fn latest(&self) -> anyhow::Result<Option<Loaded>> {
        self.find(|_| true)
    }

    /// The newest whole checkpoint whose state satisfies `wanted` (exactly-once: the one whose
    /// positions are the offsets committed with the last transaction).
    pub fn find(&self, wanted: impl Fn(&JobState) -> bool) -> anyhow::Result<Option<Loaded>> {
        for (sequence, path) in self.files()? {
            match read(&path) {
                Ok(state) if wanted(&state) => return Ok(Some(Loaded { sequence, path, state })),
                Ok(_) => {}
                Err(e) => crate::log_warn!("checkpoint {} is unusable ({e:#}); trying the one before it", path.display()),
            }
        }
        Ok(None)
    }

    /// Remove the checkpoints after `sequence` (written, but their transaction never committed).
    pub fn remove_after(&self, sequence: u64) -> anyhow::Result<()> {
        for (s, path) in self.files()? {
            if s > sequence {
                fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
            }
        }
        Ok(())
    }

    /// Write checkpoint `sequence` durably, then drop all but the newest [`KEEP`].
    /// Returns its size in bytes.
    pub fn write(&self, sequence: u64, payload: &[u8]) -> anyhow::Result<u64> {
        let path = self.dir.join(format!("checkpoint-{sequence:012}.bin"));
        let temp = self.dir.join(format!(".checkpoint-{sequence:012}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&temp)?;
            f.write_all(MAGIC)?;
            f.write_all(&VERSION.to_le_bytes())?;
            f.write_all(&(payload.len() as u64).to_le_bytes())?;
            f.write_all(&fnv(payload).to_le_bytes())?;
            f.write_all(payload)?;
            f.sync_all()?;
            fs::rename(&temp, &path)?;
            File::open(&self.dir)?.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&temp);
            bail!("cannot write the checkpoint {}: {e} (is the state folder writable, the disk full?)", path.display());
        }
        for (_, old) in self.files()?.into_iter().skip(KEEP) {
            let _ = fs::remove_file(old);
        }
        Ok((HEADER + payload.len()) as u64)
    }
}

/// Writes checkpoints on a thread of its own, so the pipeline only pauses to copy its state:
/// the write and the fsyncs happen while it processes on.
pub struct Writer {
    tasks: Option<std::sync::mpsc::Sender<Task>>,
    done: std::sync::mpsc::Receiver<Written>,
    thread: Option<std::thread::JoinHandle<()>>,
    in_flight: usize,
}

struct Task {
    sequence: u64,
    payload: Vec<u8>,
    commit: Vec<(usize, i64, crate::Millis)>,
    started: std::time::Instant,
}

/// A checkpoint write that finished, well or not.
pub struct Written {
    pub sequence: u64,
    /// Its size in bytes, or why it could not be written.
    pub result: anyhow::Result<u64>,
    /// The source positions that may be committed now that it is durable, each with the
    /// watermark its windows were emitted up to (the commit's note).
    pub commit: Vec<(usize, i64, crate::Millis)>,
    /// From the pipeline's pause to the rename on disk.
    pub took: std::time::Duration,
}

impl Writer {
    pub fn new(store: Store) -> Writer {
        let (tasks, rx) = std::sync::mpsc::channel::<Task>();
        let (tx, done) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("checkpoint".into())
            .spawn(move || {
                for t in rx {
                    let result = store.write(t.sequence, &t.payload);
                    let written = Written { sequence: t.sequence, result, commit: t.commit, took: t.started.elapsed() };
                    if tx.send(written).is_err() {
                        break;
                    }
                }
            })
            .expect("a thread starts");
        Writer { tasks: Some(tasks), done, thread: Some(thread), in_flight: 0 }
    }

    /// A checkpoint is being written.
    pub fn busy(&self) -> bool {
        self.in_flight > 0
    }

    pub fn submit(&mut self, sequence: u64, payload: Vec<u8>, commit: Vec<(usize, i64, crate::Millis)>, started: std::time::Instant) {
        self.in_flight += 1;
        self.tasks.as_ref().expect("open until dropped").send(Task { sequence, payload, commit, started }).expect("the writer thread runs");
    }

    /// Writes that finished; with `wait`, every one submitted.
    pub fn finished(&mut self, wait: bool) -> Vec<Written> {
        let mut out = Vec::new();
        while self.in_flight > 0 {
            let next = if wait { self.done.recv().ok() } else { self.done.try_recv().ok() };
            let Some(w) = next else { break };
            self.in_flight -= 1;
            out.push(w);
        }
        out
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.tasks.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read(path: &Path) -> anyhow::Result<JobState> {
    let bytes = fs::read(path)?;
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        bail!("not a whole checkpoint file");
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        bail!("format version {version}, this Osprey reads {VERSION}");
    }
    let len = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes")) as usize;
    let sum = u64::from_le_bytes(bytes[20..28].try_into().expect("8 bytes"));
    let payload = &bytes[HEADER..];
    if payload.len() != len {
        bail!("torn: {} of {len} payload bytes", payload.len());
    }
    if fnv(payload) != sum {
        bail!("checksum mismatch");
    }
    crate::state::from_bytes(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(n: i64) -> Vec<u8> {
        let s = JobState { job: "j".into(), shape: 1, positions: vec![Some(n)], operator: vec![1, 2, 3], query: vec![], evaluator: vec![], stage: vec![], token: None };
        crate::state::to_bytes(&s).unwrap()
    }

    #[test]
    fn the_newest_whole_checkpoint_is_read_and_a_corrupt_one_falls_back_to_the_previous() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), "j").unwrap();
        assert!(store.latest().unwrap().is_none());
        for n in 1..=3 {
            store.write(n as u64, &state(n)).unwrap();
        }
        assert_eq!(store.files().unwrap().len(), KEEP, "older checkpoints are dropped");
        let latest = store.latest().unwrap().unwrap();
        assert_eq!((latest.sequence, latest.state.positions.clone()), (3, vec![Some(3)]));
        // Flip one payload byte of the newest: the checksum catches it.
        let mut bytes = fs::read(&latest.path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&latest.path, &bytes).unwrap();
        let fallback = store.latest().unwrap().unwrap();
        assert_eq!((fallback.sequence, fallback.state.positions), (2, vec![Some(2)]));
        // A torn newest (cut short) too.
        fs::write(&latest.path, &bytes[..HEADER + 1]).unwrap();
        assert_eq!(store.latest().unwrap().unwrap().sequence, 2);
    }

    #[test]
    fn an_unwritable_state_folder_is_an_error_that_says_so_and_keeps_the_last_good_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), "j").unwrap();
        store.write(1, &state(1)).unwrap();
        // The folder goes away and a plain file takes its name: nothing can be written there
        // (file modes would not stop root, who runs CI).
        let aside = dir.path().join("aside");
        fs::rename(store.dir(), &aside).unwrap();
        fs::write(store.dir(), b"not a folder").unwrap();
        let e = store.write(2, &state(2)).unwrap_err().to_string();
        assert!(e.contains("cannot write the checkpoint") && e.contains("writable"), "{e}");
        fs::remove_file(store.dir()).unwrap();
        fs::rename(&aside, store.dir()).unwrap();
        assert_eq!(store.latest().unwrap().unwrap().sequence, 1, "the last good checkpoint is kept");
    }
}
