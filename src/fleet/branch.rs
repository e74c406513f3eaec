//! A job's side of a share: a [`Source`] whose chunks come decoded from the shared reader, and
//! whose commits, notes and resume positions go back to it.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use super::Shared;
use crate::source::{PartitionInfo, Poll, Source};
use crate::Millis;

/// How long a poll waits for the reader before saying Idle (the pipeline then looks at its
/// stop flag and idle partitions, and asks again).
const WAIT: Duration = Duration::from_millis(20);

pub struct Branch {
    member: usize,
    partitions: Vec<PartitionInfo>,
    events: Receiver<Poll>,
    shared: Arc<Shared>,
    bounded: bool,
    ended: bool,
}

impl Branch {
    pub(super) fn new(member: usize, partitions: Vec<PartitionInfo>, events: Receiver<Poll>, shared: Arc<Shared>, bounded: bool) -> Self {
        Branch { member, partitions, events, shared, bounded, ended: false }
    }
}

impl Source for Branch {
    fn partitions(&self) -> &[PartitionInfo] {
        &self.partitions
    }

    fn poll(&mut self, _watermarks: &[Millis]) -> anyhow::Result<Poll> {
        if self.ended {
            return Ok(Poll::End);
        }
        match self.events.recv_timeout(WAIT) {
            Ok(Poll::Revoked(ps)) => {
                // The pipeline forgets these partitions' positions before it commits again
                // (it polls with an empty queue), so what it commits for them from now on is new.
                let mut fenced = self.shared.fenced.lock().expect("not poisoned");
                ps.iter().for_each(|&p| fenced[self.member][p] = false);
                Ok(Poll::Revoked(ps))
            }
            Ok(Poll::End) => {
                self.ended = true;
                Ok(Poll::End)
            }
            Ok(event) => Ok(event),
            Err(RecvTimeoutError::Timeout) => Ok(Poll::Idle),
            // The reader waits for every job before it goes, unless its source failed.
            Err(RecvTimeoutError::Disconnected) => anyhow::bail!("the source this job shares with others failed (its error follows)"),
        }
    }

    fn commit(&mut self, positions: &[(usize, i64)]) -> anyhow::Result<()> {
        let noted: Vec<(usize, i64, Millis)> = positions.iter().map(|&(p, o)| (p, o, Millis::MIN)).collect();
        self.commit_noting(&noted)
    }

    /// The reader commits, per partition, the least position of all jobs of the share.
    fn commit_noting(&mut self, positions: &[(usize, i64, Millis)]) -> anyhow::Result<()> {
        let fenced = self.shared.fenced.lock().expect("not poisoned");
        let mut commits = self.shared.commits.lock().expect("not poisoned");
        for &(p, offset, watermark) in positions {
            if !fenced[self.member][p] {
                commits[self.member][p] = Some((offset, watermark));
            }
        }
        Ok(())
    }

    fn emitted_up_to(&mut self, p: usize) -> Option<Millis> {
        self.shared.notes.lock().expect("not poisoned")[self.member][p]
    }

    fn lag(&mut self) -> Option<Vec<(usize, i64)>> {
        self.shared.lag.lock().expect("not poisoned").clone()
    }

    fn resume_at(&mut self, positions: &[Option<i64>]) {
        self.shared.resume.lock().expect("not poisoned")[self.member] = Some(positions.to_vec());
    }

    fn is_bounded(&self) -> bool {
        self.bounded
    }
}
