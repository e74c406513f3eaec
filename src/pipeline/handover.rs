//! Exactly-once through the shuffle's second stage, where several processes share the internal
//! topic's partitions and rebalances move them between processes.
//!
//! A one-stage exactly-once job runs one instance (its transactional id fences any other) and
//! commits, with each checkpoint, the offsets of everything its state holds. A second stage
//! cannot: the process that takes a partition over has no checkpoint of it. So each transaction
//! commits, per partition, the first row still held in a window (as at-least-once commits do),
//! noting the watermark its windows were emitted up to: whoever reads the partition next reads
//! its held rows again and skips the records of windows already emitted
//! (`Pipeline::skip_emitted`). What the transaction wrote and that note commit together, so no
//! window is written twice or lost. Each process has a transactional id of its own; the group's
//! generation fences a member that lost its partitions (KIP-447).
//!
//! - **A revocation** commits the open transaction inside the rebalance, before the partitions
//!   go, with what the pipeline published before it last polled ([`Handover::publish`]): per
//!   partition, an offset no held row is before, and the watermark now. The revoked partitions'
//!   rows and queued chunks are dropped as soon as the poll returns, so nothing of theirs goes
//!   into the next transaction.
//! - **Checkpoints** (`--state-dir`) carry a token, and their transaction notes it on every
//!   partition. A restart restores the newest checkpoint some partition's last commit names,
//!   for those partitions only; the others are read from their commits.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;

use rdkafka::producer::ThreadedProducer;

use super::Pipeline;
use crate::kafka::DeliveryLog;
use crate::source::kafka::watermark_note;
use crate::source::Source;
use crate::Millis;

/// What a revocation may commit, as the pipeline last published it.
#[derive(Default)]
struct Published {
    /// Per partition this process reads: an offset no row held in a window is before, and the
    /// watermark its windows were emitted up to.
    positions: Vec<(usize, i64, Millis)>,
    /// A commit inside a revocation failed: the job stops with it (its restart reads from the
    /// last commit).
    failed: Option<String>,
}

/// The pipeline's side of a second stage's exactly-once delivery.
pub(super) struct Handover {
    published: Arc<Mutex<Published>>,
    /// Per partition, the first offset read since it came to this process: nothing before it
    /// is held here, so a revocation may commit it before this process committed any.
    first_read: Vec<Option<i64>>,
}

impl Handover {
    /// Install the revocation's commit on `source`, in `producer`'s transactions.
    pub(super) fn new(source: &mut dyn Source, producer: Arc<ThreadedProducer<DeliveryLog>>, job: &str) -> anyhow::Result<Handover> {
        let published = Arc::new(Mutex::new(Published::default()));
        let inside = published.clone();
        let installed = source.on_revoke(Box::new(move |consumer, topic| {
            let mut published = inside.lock().expect("not poisoned");
            let positions: Vec<(usize, i64, String)> =
                published.positions.iter().map(|&(p, o, w)| (p, o, watermark_note(w, None))).collect();
            if let Err(e) = crate::source::kafka::commit_with_offsets(consumer, topic, &producer, &positions, Duration::from_secs(30)) {
                published.failed.get_or_insert_with(|| format!("{e:#}"));
            }
        }));
        anyhow::ensure!(installed, "job `{job}`: exactly-once through the shuffle needs its internal Kafka topic as the source");
        Ok(Handover { published, first_read: vec![None; source.partitions().len()] })
    }

    /// A chunk of partition `p` is about to be processed, its first record at `offset`.
    pub(super) fn reading(&mut self, p: usize, offset: i64) {
        self.first_read[p].get_or_insert(offset);
    }

    /// Partitions `ps` left this process.
    pub(super) fn gone(&mut self, ps: &[usize]) {
        for &p in ps {
            self.first_read[p] = None;
        }
    }

    /// Before each poll (a revocation runs inside one): per partition read, the last commit
    /// (else the first offset read here) and the watermark now.
    pub(super) fn publish(&self, committed: &[Option<i64>], watermark: impl Fn(usize) -> Millis) {
        let mut published = self.published.lock().expect("not poisoned");
        published.positions.clear();
        for (p, first) in self.first_read.iter().enumerate() {
            if let Some(offset) = committed[p].or(*first) {
                published.positions.push((p, offset, watermark(p)));
            }
        }
    }

    /// A revocation's commit failed: why.
    pub(super) fn failed(&self) -> Option<String> {
        self.published.lock().expect("not poisoned").failed.clone()
    }
}

/// A checkpoint's token: random, so no two processes' checkpoints share one.
pub(super) fn token(sequence: u64) -> u64 {
    use std::hash::BuildHasher;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    std::collections::hash_map::RandomState::new().hash_one((sequence, nanos, std::process::id()))
}

impl Pipeline {
    /// Exactly-once in a second stage: fail if a revocation's commit failed; publish what the
    /// next one may commit. Called before each poll, and after each commit.
    pub(super) fn publish_handover(&mut self) -> anyhow::Result<()> {
        let Some(h) = &self.handover else { return Ok(()) };
        if let Some(why) = h.failed() {
            anyhow::bail!("job `{}`: committing the transaction as partitions were taken away: {why}", self.job.name);
        }
        h.publish(&self.committed, |p| self.operator.watermark_for(p));
        Ok(())
    }

    /// Exactly-once in a second stage: commit the open transaction (the outputs are flushed)
    /// with, per partition, the first row still held and the watermark, noting checkpoint
    /// `token` when one goes with it; then begin the next.
    pub(super) fn commit_handover(&mut self, token: Option<u64>) -> anyhow::Result<()> {
        let producer = self.transaction.clone().expect("exactly-once");
        let positions: Vec<(usize, i64, String)> = self.committable().into_iter().map(|(p, o, w)| (p, o, watermark_note(w, token))).collect();
        self.source.commit_transaction(&producer, &positions).with_context(|| format!("job `{}`", self.job.name))?;
        for (p, o, _) in positions {
            self.committed[p] = Some(o);
        }
        self.publish_handover()
    }

    /// Exactly-once in a second stage: the checkpoint to restore, with the partitions to keep
    /// of it (those whose last commit names it), each with its committed offset. `None`: no
    /// partition's commit names any checkpoint in `store` (they are removed), and the job
    /// starts from the commits.
    pub(super) fn handover_restore(&mut self, store: &crate::checkpoint::Store) -> anyhow::Result<Option<(crate::checkpoint::Loaded, Vec<Option<i64>>)>> {
        let commits = self.source.committed()?.unwrap_or_default();
        let noted: Vec<Option<u64>> = commits.iter().map(|c| c.as_ref().and_then(|(_, note)| crate::source::kafka::noted_checkpoint(note))).collect();
        let Some(loaded) = store.find(|s| s.token.is_some_and(|t| noted.contains(&Some(t))))? else {
            store.remove_after(0)?;
            return Ok(None);
        };
        // Newer checkpoints went with transactions that never committed.
        store.remove_after(loaded.sequence)?;
        let kept = commits.iter().zip(&noted).map(|(c, &t)| c.as_ref().filter(|_| t.is_some() && t == loaded.state.token).map(|(o, _)| *o)).collect();
        Ok(Some((loaded, kept)))
    }
}
