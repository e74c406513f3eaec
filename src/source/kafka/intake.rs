//! What a Kafka source has read and not yet handed out: per partition, the messages in
//! chunk-sized buffers and where the partition stands (at its end, caught up, to be moved to a
//! checkpoint's position). Both reading paths (`poll` and the batch queue) feed it through
//! [`Intake::accept`].

use std::collections::VecDeque;
use std::time::Instant;

use rdkafka::message::{BorrowedMessage, Headers, Message};

use super::RANGE_CHUNK;
use crate::source::RawRecord;

/// A message as the intake needs it, whichever call read it.
pub trait Incoming {
    fn partition(&self) -> i32;
    fn offset(&self) -> i64;
    fn payload(&self) -> &[u8];
    /// Milliseconds since the epoch; `None` when the message has no timestamp.
    fn timestamp(&self) -> Option<i64>;
    /// The value of the first header called `name` (ASCII case ignored).
    fn header(&self, name: &str) -> Option<&[u8]>;
}

impl Incoming for BorrowedMessage<'_> {
    fn partition(&self) -> i32 {
        Message::partition(self)
    }
    fn offset(&self) -> i64 {
        Message::offset(self)
    }
    fn payload(&self) -> &[u8] {
        Message::payload(self).unwrap_or(&[])
    }
    fn timestamp(&self) -> Option<i64> {
        Message::timestamp(self).to_millis()
    }
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers()?.iter().find(|h| h.key.eq_ignore_ascii_case(name))?.value
    }
}

/// What [`Intake::accept`] did with a message.
pub enum Accepted {
    /// Buffered; its payload's size in bytes.
    Buffered(usize),
    /// Past its partition's range end, or of a partition the source does not know.
    Skipped,
    /// The partition must first seek to this offset (a restored job's position); the message
    /// and any others of the partition read with it are stale.
    Seek(usize, i64),
}

/// Per partition: the messages read, and where reading stands.
pub struct Intake {
    /// Range mode: the offset each partition stops before; `None` in a group.
    pub ends: Option<Vec<i64>>,
    /// Range mode: the partition's last message was read (or it has none).
    pub done: Vec<bool>,
    /// Group mode: the partition's last fetch reached its end (cleared by its next message).
    pub caught_up: Vec<bool>,
    /// Group mode: the offset its end was at then, when the broker said.
    pub end_at: Vec<Option<i64>>,
    /// The offset after the last message taken since the partition was (re)assigned or sought:
    /// a message before it is one librdkafka delivered again, and is dropped (counted in
    /// `redelivered`), so nothing is handed out twice.
    pub taken_to: Vec<Option<i64>>,
    pub redelivered: u64,
    /// Group mode: when the oldest message in the partition's buffer arrived.
    pub first_at: Vec<Option<Instant>>,
    /// A restored job's positions: an assigned partition seeks there (its group commit may
    /// be ahead of them when the newest checkpoint was unusable).
    pub resume: Vec<Option<i64>>,
    /// Messages read from librdkafka and not yet handed out.
    pub buffers: Vec<Buffer>,
    /// Whether anything reads each message's timestamp and `traceparent` header (the SQL's
    /// `_timestamp` and `_trace_id`, a first stage forwarding them): librdkafka parses a
    /// message's headers on first use, an allocation per message nobody may read.
    pub want_timestamps: bool,
    pub want_trace_ids: bool,
}

impl Intake {
    pub fn new(partitions: usize) -> Intake {
        Intake {
            ends: None,
            done: vec![false; partitions],
            caught_up: vec![false; partitions],
            end_at: vec![None; partitions],
            taken_to: vec![None; partitions],
            redelivered: 0,
            first_at: vec![None; partitions],
            resume: vec![None; partitions],
            buffers: (0..partitions).map(|_| Buffer::default()).collect(),
            want_timestamps: true,
            want_trace_ids: true,
        }
    }

    /// The broker said partition `p` has nothing more for now (past `offset`, when it said).
    pub fn reached_end(&mut self, p: i32, offset: Option<i64>) {
        let Some(p) = usize::try_from(p).ok().filter(|&p| p < self.done.len()) else { return };
        match self.ends {
            Some(_) => self.done[p] = true,
            None => {
                self.caught_up[p] = true;
                self.end_at[p] = offset.filter(|&o| o >= 0);
            }
        }
    }

    pub fn accept(&mut self, m: &impl Incoming) -> Accepted {
        let p = m.partition() as usize;
        if p >= self.buffers.len() {
            return Accepted::Skipped;
        }
        let offset = m.offset();
        if let Some(ends) = &self.ends {
            if self.done[p] || offset >= ends[p] {
                self.done[p] = true;
                return Accepted::Skipped;
            }
            if offset + 1 >= ends[p] {
                self.done[p] = true;
            }
        }
        if let Some(position) = self.resume[p].take() {
            // A restored job's first message of the partition: go to the checkpoint's
            // position (the group's commit is behind it, or ahead when the newest
            // checkpoint was unusable), or to where `--from` starts. The pipeline skips
            // anything before it that still comes. Seeking works only once the partition
            // is fetching, hence here and not at the assignment.
            self.taken_to[p] = None;
            if offset != position {
                return Accepted::Seek(p, position);
            }
        }
        if self.taken_to[p].is_some_and(|to| offset < to) {
            self.redelivered += 1;
            return Accepted::Skipped;
        }
        self.taken_to[p] = Some(offset + 1);
        self.caught_up[p] = false;
        if self.buffers[p].is_empty() {
            self.first_at[p] = Some(Instant::now());
        }
        let g = self.buffers[p].back();
        let payload = m.payload();
        let start = g.data.len() as u32;
        g.data.extend_from_slice(payload);
        g.records.push(RawRecord { start, end: g.data.len() as u32, offset });
        g.timestamps.push(if self.want_timestamps { m.timestamp() } else { None });
        g.trace_ids.push(if self.want_trace_ids { m.header("traceparent").and_then(crate::kafka::trace_id) } else { None });
        Accepted::Buffered(payload.len())
    }
}

/// Messages of one partition being gathered into a chunk.
#[derive(Default)]
pub struct Gather {
    pub data: Vec<u8>,
    pub records: Vec<RawRecord>,
    pub timestamps: Vec<Option<i64>>,
    pub trace_ids: Vec<Option<String>>,
}

/// A partition's messages waiting to be handed out, as chunks of at most [`RANGE_CHUNK`]
/// records filled one after another: handing one out moves it, never copies or shifts bytes.
#[derive(Default)]
pub struct Buffer {
    chunks: VecDeque<Gather>,
    len: usize,
    /// Bytes of the last full chunk: a new chunk's reserve, so it does not grow by copies.
    chunk_bytes: usize,
}

impl Buffer {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The chunk the next message goes into (a new one when the last is full).
    pub fn back(&mut self) -> &mut Gather {
        if self.chunks.back().is_none_or(|g| g.records.len() >= RANGE_CHUNK) {
            if let Some(full) = self.chunks.back() {
                self.chunk_bytes = full.data.len();
            }
            let mut g = Gather::default();
            g.data.reserve(self.chunk_bytes + self.chunk_bytes / 8);
            g.records.reserve(RANGE_CHUNK);
            self.chunks.push_back(g);
        }
        self.len += 1;
        self.chunks.back_mut().expect("pushed")
    }

    /// The oldest record alone: a partition's first chunk, so that every partition has an
    /// event time before any partition's first full chunk is judged (see `KafkaSource`).
    pub fn pop_first(&mut self) -> Gather {
        let Some(front) = self.chunks.front_mut().filter(|g| g.records.len() > 1) else { return self.pop_front() };
        let first = front.records.remove(0);
        let cut = first.end;
        let mut one = Gather::default();
        one.data.extend_from_slice(&front.data[first.start as usize..cut as usize]);
        one.records.push(crate::source::RawRecord { start: 0, end: cut - first.start, offset: first.offset });
        one.timestamps.push(front.timestamps.remove(0));
        one.trace_ids.push(front.trace_ids.remove(0));
        // Records are stored back to back: the rest move down by the first one's end.
        front.data.drain(..cut as usize);
        for r in &mut front.records {
            debug_assert!(r.start >= cut);
            r.start -= cut;
            r.end -= cut;
        }
        self.len -= 1;
        one
    }

    /// The oldest chunk: [`RANGE_CHUNK`] records, or all there are.
    pub fn pop_front(&mut self) -> Gather {
        let g = self.chunks.pop_front().unwrap_or_default();
        self.len -= g.records.len();
        g
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Msg(i32, i64);
    impl Incoming for Msg {
        fn partition(&self) -> i32 {
            self.0
        }
        fn offset(&self) -> i64 {
            self.1
        }
        fn payload(&self) -> &[u8] {
            b"{}"
        }
        fn timestamp(&self) -> Option<i64> {
            None
        }
        fn header(&self, _: &str) -> Option<&[u8]> {
            None
        }
    }

    /// A partition read again from an older position (librdkafka going back to a committed
    /// offset) hands out nothing twice; a seek to a restored position is not such a read.
    #[test]
    fn messages_delivered_again_are_skipped_once_taken() {
        let mut intake = Intake::new(2);
        for o in 0..5 {
            assert!(matches!(intake.accept(&Msg(0, o)), Accepted::Buffered(_)));
        }
        for o in 2..5 {
            assert!(matches!(intake.accept(&Msg(0, o)), Accepted::Skipped), "offset {o} again");
        }
        assert!(matches!(intake.accept(&Msg(0, 5)), Accepted::Buffered(_)));
        assert_eq!((intake.redelivered, intake.buffers[0].len()), (3, 6));
        // Partition 1, read to 20, is sent back to a restored position: taken again from there.
        for o in 12..20 {
            intake.accept(&Msg(1, o));
        }
        intake.resume[1] = Some(10);
        assert!(matches!(intake.accept(&Msg(1, 20)), Accepted::Seek(1, 10)));
        assert!(matches!(intake.accept(&Msg(1, 10)), Accepted::Buffered(_)), "the restored position is taken");
        assert!(matches!(intake.accept(&Msg(1, 11)), Accepted::Buffered(_)));
    }
}
