//! What a job makes durable, and when: checkpoints of its state (written on a thread of
//! their own, committed once durable), the exactly-once transaction committed with each one,
//! and, without checkpoints, the source positions committed after the outputs that depend on
//! them. Restoring is here too: the checkpoint a restart continues from.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::{Mode, Pipeline, FIRING_SHOWN};
use crate::metrics::JobCounters;

/// A checkpointing job's side: the writer thread and what was last written.
pub(super) struct Checkpoints {
    pub(super) writer: crate::checkpoint::Writer,
    pub(super) dir: std::path::PathBuf,
    pub(super) interval: Duration,
    pub(super) last: Instant,
    pub(super) sequence: u64,
    pub(super) shape: u64,
    /// The last write failed (logged once until one succeeds again).
    pub(super) failing: bool,
}

/// The shortest time between two offset commits of a job without checkpoints.
const MIN_COMMIT_GAP: Duration = Duration::from_millis(200);

/// How often a live job asks its source for its consumer lag.
const LAG_EVERY: Duration = Duration::from_secs(2);

impl Pipeline {
    /// Continue from the newest whole checkpoint in `store`, if there is one; its sequence
    /// number (0: none).
    pub(super) fn restore(&mut self, store: &crate::checkpoint::Store) -> anyhow::Result<u64> {
        // A second stage's partitions whose last commit names the checkpoint (see `handover`).
        let mut kept = None;
        let loaded = if self.handover.is_some() {
            let Some((loaded, commits)) = self.handover_restore(store)? else { return Ok(0) };
            kept = Some(commits);
            Some(loaded)
        } else if self.transaction.is_some() {
            // Exactly-once: the state that goes with the last committed transaction is the
            // checkpoint whose positions are the committed offsets; newer ones never committed.
            let committed: Vec<Option<i64>> = self.source.committed()?.unwrap_or_default().into_iter().map(|c| c.map(|(o, _)| o)).collect();
            if committed.iter().all(Option::is_none) {
                store.remove_after(0)?;
                return Ok(0);
            }
            let Some(loaded) = store.find(|s| s.positions == committed)? else {
                anyhow::bail!(
                    "job `{}`: no checkpoint in {} goes with the offsets its last transaction committed ({committed:?}), so its state is gone\n  \
                     run with --fresh to start from the committed offsets without it",
                    self.job.name,
                    store.dir().display()
                );
            };
            store.remove_after(loaded.sequence)?;
            Some(loaded)
        } else {
            store.latest()?
        };
        let Some(loaded) = loaded else { return Ok(0) };
        let state = loaded.state;
        let name = &self.job.name;
        if state.job != *name || state.shape != crate::checkpoint::shape(&self.job) || state.positions.len() != self.processed.len() {
            anyhow::bail!(
                "job `{name}` ({}): the checkpoint {} was written by a different version of this job (its columns, event time, window, SQL, \
                 [slo], [invariant] or [anomaly], or the source's partitions changed), so its state does not fit\n  \
                 run with --fresh to start without it (Kafka resumes at the group's committed offsets, files at their start), \
                 or move the state folder {} away",
                self.job.path.display(),
                loaded.path.display(),
                store.dir().display()
            );
        }
        let context = || format!("job `{name}`: restoring {}", loaded.path.display());
        self.operator = crate::state::from_bytes(&state.operator).with_context(context)?;
        if self.options.shuffled {
            self.operator.set_external_clock();
        }
        self.query.load_state(&state.query).with_context(context)?;
        if let Some(a) = &mut self.alerting {
            a.evaluator.load_state(&state.evaluator).with_context(context)?;
            a.stage.restore(crate::state::from_bytes(&state.stage).with_context(context)?);
            *self.counters.firing.lock().expect("not poisoned") = a.stage.state().lifecycle.firing_list(FIRING_SHOWN);
        }
        let mut positions = state.positions.clone();
        if let Some(kept) = kept {
            // The others were committed since without this state: read from their commits.
            let gone: Vec<usize> = (0..positions.len()).filter(|&p| kept[p].is_none()).collect();
            self.operator.drop_partitions(&gone, self.partition_column);
            for &p in &gone {
                positions[p] = None;
            }
            self.committed = kept;
        }
        self.resume = positions.clone();
        // The skipped records were decoded by the run that wrote the checkpoint.
        self.columns_seen.iter_mut().for_each(|seen| *seen = true);
        self.processed = positions.iter().map(|p| p.map(|o| o - 1)).collect();
        self.source.resume_at(&positions);
        self.restored_unassigned = true;
        let at: Vec<String> = positions
            .iter()
            .enumerate()
            .filter_map(|(p, o)| o.map(|o| format!("{} at {o}", self.source.partitions()[p].name)))
            .collect();
        crate::log_info!(
            "{name}: restored checkpoint {} ({} open windows, {} rows); resuming {}",
            loaded.path.display(),
            self.operator.open_windows(),
            self.operator.buffered_rows(),
            if at.is_empty() { "from the start".to_string() } else { at.join(", ") }
        );
        Ok(loaded.sequence)
    }

    /// Checkpointing: a checkpoint when the interval passed and none is being written, and the
    /// commits of those that became durable. Otherwise: commit a live source's positions
    /// when windows fired or the commit interval passed.
    pub(super) fn maybe_checkpoint(&mut self) -> anyhow::Result<()> {
        if self.options.mode == Mode::Live && self.lag_asked.is_none_or(|t| t.elapsed() >= LAG_EVERY) {
            self.lag_asked = Some(Instant::now());
            self.count_upstream_late();
            if let Some(upstream) = &self.options.source_lag {
                *self.counters.lag.lock().expect("not poisoned") = upstream.lock().expect("not poisoned").clone();
            } else if let Some(lag) = self.source.named_lag() {
                *self.counters.lag.lock().expect("not poisoned") = lag;
            }
        }
        if self.checkpoints.is_some() {
            self.collect_checkpoints(false)?;
            let c = self.checkpoints.as_ref().expect("checked");
            if c.last.elapsed() >= c.interval && !c.writer.busy() {
                self.save_checkpoint()?;
            }
            return Ok(());
        }
        // Fired windows move the offsets soon, but not at every window: each commit waits for
        // every output to be acknowledged, and a backlog fires windows every few milliseconds
        // (committing at each made a catch-up 5x slower).
        let since = self.last_commit.elapsed();
        let due = (self.fired_since_commit > 0 && since >= MIN_COMMIT_GAP) || since >= self.options.commit_interval;
        if due && !self.source.is_bounded() {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// The checkpoint at a stop or the end of input (waited for), or the last commit.
    pub(super) fn final_checkpoint(&mut self) -> anyhow::Result<()> {
        if self.checkpoints.is_none() {
            return self.checkpoint();
        }
        self.collect_checkpoints(true)?;
        self.save_checkpoint()?;
        self.collect_checkpoints(true)
    }

    /// Copy the whole state into a checkpoint for the writer thread. Outputs so far are
    /// flushed first: a restore continues after them and does not produce them again.
    fn save_checkpoint(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        self.flush_outputs()?;
        let positions: Vec<Option<i64>> = self.processed.iter().map(|p| p.map(|o| o + 1)).collect();
        // A partition still reading up to its restored position is at that position already:
        // the state holds the records before it, and a restart from a checkpoint set back
        // would count them twice.
        for (p, first) in self.resume.iter().enumerate() {
            if let Some(first) = *first {
                assert!(positions[p].is_some_and(|o| o >= first), "job `{}`: a checkpoint at {:?} of partition {p}, before its restored {first}", self.job.name, positions[p]);
            }
        }
        // What the group may commit once this is durable (a process that takes a partition
        // over has no checkpoint of ours).
        let commit = self.committable();
        let c = self.checkpoints.as_mut().expect("checkpointing");
        let (evaluator, stage) = match &self.alerting {
            Some(a) => (a.evaluator.save_state()?, crate::state::to_bytes(a.stage.state())?),
            None => (Vec::new(), Vec::new()),
        };
        let state = crate::checkpoint::JobState {
            job: self.job.name.clone(),
            shape: c.shape,
            positions: positions.clone(),
            operator: crate::state::to_bytes(&self.operator)?,
            query: self.query.save_state()?,
            evaluator,
            stage,
            token: self.handover.is_some().then(|| super::handover::token(c.sequence + 1)),
        };
        c.sequence += 1;
        c.writer.submit(c.sequence, crate::state::to_bytes(&state)?, commit, started);
        c.last = Instant::now();
        if self.handover.is_some() {
            self.wait_durable()?;
            self.commit_handover(state.token)?;
        } else if self.transaction.is_some() {
            self.commit_transaction(&state.positions)?;
        }
        Ok(())
    }

    /// Exactly-once: wait for the checkpoints being written; each must be durable before the
    /// transaction that goes with it commits.
    fn wait_durable(&mut self) -> anyhow::Result<()> {
        let c = self.checkpoints.as_mut().expect("checkpointing");
        for w in c.writer.finished(true) {
            let bytes = w.result.with_context(|| format!("job `{}`: exactly-once needs every checkpoint", self.job.name))?;
            count_written(&self.counters, bytes, w.took);
        }
        Ok(())
    }

    /// Exactly-once: once the checkpoint is durable, commit the open transaction (everything
    /// written since the last one) with the offsets it reflects, and begin the next. A
    /// checkpoint that cannot be written fails the job: its restart continues from the last
    /// committed one, and the open transaction is aborted.
    fn commit_transaction(&mut self, positions: &[Option<i64>]) -> anyhow::Result<()> {
        self.wait_durable()?;
        let producer = self.transaction.clone().expect("exactly-once");
        let offsets: Vec<(usize, i64, String)> = positions.iter().enumerate().filter_map(|(p, o)| o.map(|o| (p, o, String::new()))).collect();
        self.source.commit_transaction(&producer, &offsets).with_context(|| format!("job `{}`", self.job.name))
    }

    /// Commit the positions of checkpoints that became durable; count and report failures
    /// (the job runs on, its offsets stay at the last good checkpoint).
    fn collect_checkpoints(&mut self, wait: bool) -> anyhow::Result<()> {
        let Some(c) = &mut self.checkpoints else { return Ok(()) };
        for w in c.writer.finished(wait) {
            match w.result {
                Ok(bytes) => {
                    count_written(&self.counters, bytes, w.took);
                    if std::mem::take(&mut c.failing) {
                        crate::log_info!("{}: checkpoints are written again ({})", self.job.name, c.dir.display());
                    }
                    let changed: Vec<(usize, i64, crate::Millis)> =
                        w.commit.into_iter().filter(|&(p, o, _)| self.committed[p] != Some(o)).collect();
                    if !changed.is_empty() {
                        self.source.commit_noting(&changed).with_context(|| format!("job `{}`", self.job.name))?;
                        for (p, o, _) in changed {
                            self.committed[p] = Some(o);
                        }
                    }
                }
                Err(e) => {
                    JobCounters::add(&self.counters.checkpoint_failures, 1);
                    if !c.failing {
                        crate::log_error!(
                            "{}: checkpoint {} failed: {e:#}; the job runs on and commits no offset past its last good checkpoint",
                            self.job.name,
                            w.sequence
                        );
                    }
                    c.failing = true;
                }
            }
        }
        Ok(())
    }

    /// Wait for every output to be acknowledged, then tell the source how far it may commit:
    /// per partition, the first row still held in a window, or past the last processed record.
    fn checkpoint(&mut self) -> anyhow::Result<()> {
        self.flush_outputs()?;
        if self.handover.is_some() {
            self.commit_handover(None)?;
            self.fired_since_commit = 0;
            self.last_commit = Instant::now();
            return Ok(());
        }
        // Every position again when the watermark moved: each commit notes it (see
        // `Source::commit_noting`), and a note must not lag behind the windows emitted.
        let watermark = self.operator.watermark();
        let moved = std::mem::replace(&mut self.noted_watermark, watermark) != watermark;
        let positions: Vec<(usize, i64, crate::Millis)> = self
            .committable()
            .into_iter()
            .filter(|&(p, o, _)| moved || self.committed[p] != Some(o))
            .collect();
        if !positions.is_empty() {
            if self.fired_since_commit > 0 {
                if let Some(n) = self.exit_before_commit.as_mut() {
                    *n -= 1;
                    if *n == 0 {
                        crate::log_warn!("{}: OSPREY_FAULT_EXIT_BEFORE_COMMIT: exiting after the output, before the commit", self.job.name);
                        std::process::exit(137);
                    }
                }
            }
            self.source.commit_noting(&positions).with_context(|| format!("job `{}`", self.job.name))?;
            for (p, position, _) in positions {
                self.committed[p] = Some(position);
            }
        }
        self.fired_since_commit = 0;
        self.last_commit = Instant::now();
        Ok(())
    }

    /// Every output so far, acknowledged: no offset or checkpoint passes an output (or an
    /// alert) the destination has not taken.
    fn flush_outputs(&mut self) -> anyhow::Result<()> {
        self.sink.flush()?;
        if let Some(a) = &mut self.alerting {
            a.stage.flush()?;
        }
        self.dead_letters.flush()?;
        self.late.flush()
    }

    /// How far each processed partition may be committed: to its first row still held in a
    /// window, else past its last processed record; with the watermark its windows were
    /// emitted up to, which the commit notes (whoever reads from there skips those windows).
    pub(super) fn committable(&self) -> Vec<(usize, i64, crate::Millis)> {
        let held = self.operator.held_offsets(self.partition_column, self.offset_column);
        self.processed
            .iter()
            .enumerate()
            .filter_map(|(p, last)| last.map(|l| (p, held.get(&p).copied().unwrap_or(l + 1).min(l + 1), self.operator.watermark_for(p))))
            .collect()
    }
}

/// A checkpoint became durable: its count, size and write time.
fn count_written(counters: &JobCounters, bytes: u64, took: Duration) {
    JobCounters::add(&counters.checkpoints, 1);
    counters.checkpoint_bytes.store(bytes, Ordering::Relaxed);
    counters.checkpoint_micros.store(took.as_micros() as u64, Ordering::Relaxed);
}
