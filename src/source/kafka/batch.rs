//! librdkafka's batch consume (`rd_kafka_consume_batch_queue`): one call takes every message
//! waiting on the consumer queue, up to a limit. rust-rdkafka's `poll` takes one message per
//! call, each with its own event, `Arc` and clock reads; on a fast broker that per-message
//! toll, not decoding, capped a Kafka replay at half of what the broker serves.
//!
//! A consumer with an explicit assignment (range replays) reads its consumer queue this way.
//! A group member cannot: the batch call serves any rebalance op itself, and with
//! rust-rdkafka's event API there is no rebalance callback, so librdkafka would answer a
//! rebalance by dropping the whole assignment. So a group member ([`BatchQueue::of_partitions`])
//! sends every partition's messages to a queue of their own, read in batches, and its consumer
//! queue, left with rebalances and errors, is still served by `poll`. A partition's fetch stop
//! (its revocation) clears the forwarding, and the next fetch start leaves it cleared (it was
//! the application's), so the source forwards its assigned partitions again before each read
//! ([`BatchQueue::forward`]): messages that waited on a partition queue move over in order.
//!
//! The batch call also serves librdkafka's log lines, which rust-rdkafka routes to the same
//! queue, by printing them to stderr; and it turns a global error (all brokers down) into such
//! a line instead of returning it. So the batch queue moves the client's logs to a queue of
//! their own and reads the errors off it.

use std::ffi::CStr;
use std::ptr::NonNull;
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::types::RDKafkaErrorCode;

use super::intake::Incoming;

/// The consumer queue of one consumer, read in batches.
pub struct BatchQueue {
    client: NonNull<rd::rd_kafka_t>,
    queue: NonNull<rd::rd_kafka_queue_t>,
    /// The client's log lines (range mode); a group member leaves them on the main queue.
    logs: Option<NonNull<rd::rd_kafka_queue_t>>,
    /// A group member's partition queues, each forwarded to `queue`.
    partitions: Vec<NonNull<rd::rd_kafka_queue_t>>,
    /// Messages of the last batch, destroyed when the next one is taken (or on drop).
    taken: Vec<*mut rd::rd_kafka_message_t>,
}

// SAFETY: librdkafka queues and messages may be used from any thread (one at a time here:
// `&mut self` for every call).
unsafe impl Send for BatchQueue {}

impl BatchQueue {
    /// The consumer's queue; `None` when the consumer has none (no `group.id`). The queue must
    /// be dropped before the consumer: keep it in a field declared before it.
    pub fn of<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> Option<BatchQueue> {
        let client = NonNull::new(consumer.client().native_ptr())?;
        // SAFETY: the client pointer is valid for the consumer's life; each queue handle keeps
        // a reference of its own, released in `drop`.
        let queue = NonNull::new(unsafe { rd::rd_kafka_queue_get_consumer(client.as_ptr()) })?;
        let logs = unsafe { rd::rd_kafka_queue_new(client.as_ptr()) };
        let Some(logs) = NonNull::new(logs) else {
            unsafe { rd::rd_kafka_queue_destroy(queue.as_ptr()) };
            return None;
        };
        // SAFETY: both pointers are live; librdkafka enqueues log lines there from now on.
        unsafe { rd::rd_kafka_set_log_queue(client.as_ptr(), logs.as_ptr()) };
        Some(BatchQueue { client, queue, logs: Some(logs), partitions: Vec::new(), taken: Vec::new() })
    }

    /// A queue of its own for the messages of `topic`'s partitions `0..partitions`, for a
    /// consumer in a group; `None` when librdkafka refuses one. Its rebalances stay on the
    /// consumer queue. Drop it before the consumer.
    pub fn of_partitions<C: ConsumerContext>(consumer: &BaseConsumer<C>, topic: &str, partitions: usize) -> Option<BatchQueue> {
        let client = NonNull::new(consumer.client().native_ptr())?;
        let name = std::ffi::CString::new(topic).ok()?;
        // SAFETY: a live client; the new queue is owned by this handle, destroyed in `drop`.
        let queue = NonNull::new(unsafe { rd::rd_kafka_queue_new(client.as_ptr()) })?;
        let mut out = BatchQueue { client, queue, logs: None, partitions: Vec::with_capacity(partitions), taken: Vec::new() };
        for p in 0..partitions {
            // SAFETY: a live client and topic name; the handle is kept, destroyed in `drop`.
            let part = NonNull::new(unsafe { rd::rd_kafka_queue_get_partition(client.as_ptr(), name.as_ptr(), p as i32) })?;
            // SAFETY: both queues are live; the forwarding is the application's, so fetch
            // starts at each assignment keep it.
            unsafe { rd::rd_kafka_queue_forward(part.as_ptr(), queue.as_ptr()) };
            out.partitions.push(part);
        }
        Some(out)
    }

    /// Forward these partitions' queues to the batch queue (again): a group member calls it
    /// before each read, for its assigned partitions. Cheap: a lock and a reference each.
    pub fn forward(&self, partitions: impl Iterator<Item = usize>) {
        for p in partitions {
            if let Some(part) = self.partitions.get(p) {
                // SAFETY: both queues are live for this handle's life.
                unsafe { rd::rd_kafka_queue_forward(part.as_ptr(), self.queue.as_ptr()) };
            }
        }
    }

    /// The latest global error librdkafka reported since the last call (its log lines of
    /// facility `ERROR`, such as "1/1 brokers are down"); other log lines are dropped, as they
    /// are on the `poll` path.
    pub fn alarm(&mut self) -> Option<String> {
        let logs = self.logs?;
        let mut latest = None;
        loop {
            // SAFETY: a live queue; a zero timeout never blocks.
            let event = unsafe { rd::rd_kafka_queue_poll(logs.as_ptr(), 0) };
            if event.is_null() {
                return latest;
            }
            // SAFETY: a live event, destroyed once below; the strings it hands out live as long.
            unsafe {
                if rd::rd_kafka_event_type(event) == rd::RD_KAFKA_EVENT_LOG {
                    let (mut fac, mut text, mut level) = (std::ptr::null(), std::ptr::null(), 0);
                    if rd::rd_kafka_event_log(event, &mut fac, &mut text, &mut level) == 0
                        && level <= 3 // syslog's LOG_ERR
                        && CStr::from_ptr(fac).to_bytes() == b"ERROR"
                    {
                        latest = Some(without_prefixes(&CStr::from_ptr(text).to_string_lossy()).to_string());
                    }
                }
                rd::rd_kafka_event_destroy(event);
            }
        }
    }

    /// Up to `max` messages: those waiting now, or when none is, the first to come within
    /// `wait` and whatever came with it. (The batch call itself waits until `max` messages
    /// or the whole timeout, which would hold back a trickle.)
    pub fn take(&mut self, wait: Duration, max: usize) -> Batch<'_> {
        self.release();
        self.taken.reserve(max);
        let mut got = self.consume(0, max);
        if got == 0 && !wait.is_zero() {
            got = self.consume(wait.as_millis().min(i32::MAX as u128) as i32, 1);
            if got == 1 {
                got += self.consume(0, max - 1);
            }
        }
        debug_assert_eq!(got, self.taken.len());
        Batch { messages: &self.taken }
    }

    /// Appends up to `max` messages to `taken`; their number.
    fn consume(&mut self, timeout_ms: i32, max: usize) -> usize {
        let have = self.taken.len();
        // SAFETY: `taken` has room for `max` more pointers; librdkafka writes at most `max` and
        // returns how many (or -1 on an error, which leaves nothing written).
        let n = unsafe {
            rd::rd_kafka_consume_batch_queue(self.queue.as_ptr(), timeout_ms, self.taken.as_mut_ptr().add(have), max)
        };
        let n = n.max(0) as usize;
        assert!(n <= max, "librdkafka returned more messages than asked for");
        // SAFETY: the first `n` slots after `have` were just written with valid pointers.
        unsafe { self.taken.set_len(have + n) };
        n
    }

    fn release(&mut self) {
        for m in self.taken.drain(..) {
            // SAFETY: each pointer came from the batch call and is destroyed exactly once.
            unsafe { rd::rd_kafka_message_destroy(m) };
        }
    }
}

/// "[thrd:app]: rdkafka#consumer-1: 1/1 brokers are down" → "1/1 brokers are down".
fn without_prefixes(line: &str) -> &str {
    let line = match line.strip_prefix("[thrd:").and_then(|rest| rest.split_once("]: ")) {
        Some((_, rest)) => rest,
        None => line,
    };
    match line.strip_prefix("rdkafka#").and_then(|rest| rest.split_once(": ")) {
        Some((_, rest)) => rest,
        None => line,
    }
}

impl Drop for BatchQueue {
    fn drop(&mut self) {
        self.release();
        // SAFETY: the client outlives this queue (see `of`); log lines go back to the main
        // queue, where rust-rdkafka had them; each handle is destroyed once. A partition
        // queue's forwarding stays (its handle is only a reference): the consumer is about to
        // close, and nothing reads its messages any more.
        unsafe {
            if let Some(logs) = self.logs {
                let main = rd::rd_kafka_queue_get_main(self.client.as_ptr());
                rd::rd_kafka_set_log_queue(self.client.as_ptr(), main);
                rd::rd_kafka_queue_destroy(main);
                rd::rd_kafka_queue_destroy(logs.as_ptr());
            }
            for part in self.partitions.drain(..) {
                rd::rd_kafka_queue_destroy(part.as_ptr());
            }
            rd::rd_kafka_queue_destroy(self.queue.as_ptr());
        }
    }
}

/// The messages of one [`BatchQueue::take`], valid until the next.
pub struct Batch<'a> {
    messages: &'a [*mut rd::rd_kafka_message_t],
}

impl<'a> Batch<'a> {
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = BatchMessage<'a>> + '_ {
        // SAFETY: every pointer is a live message until the batch is released.
        self.messages.iter().map(|&m| BatchMessage(unsafe { &*m }))
    }
}

/// One message of a batch, or a per-partition event (an error code, such as the end of a
/// partition) in the same shape, as librdkafka returns them.
pub struct BatchMessage<'a>(&'a rd::rd_kafka_message_t);

impl BatchMessage<'_> {
    /// `None` for a message; the code of an event (`PartitionEOF`, a fetch error).
    pub fn error(&self) -> Option<RDKafkaErrorCode> {
        (self.0.err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR).then(|| self.0.err.into())
    }

    /// librdkafka's description of an event.
    pub fn error_text(&self) -> String {
        // SAFETY: the message is live; librdkafka returns a NUL-terminated string it owns.
        unsafe { CStr::from_ptr(rd::rd_kafka_message_errstr(self.0)) }.to_string_lossy().into_owned()
    }
}

impl Incoming for BatchMessage<'_> {
    fn partition(&self) -> i32 {
        self.0.partition
    }

    fn offset(&self) -> i64 {
        self.0.offset
    }

    fn payload(&self) -> &[u8] {
        if self.0.payload.is_null() {
            return &[];
        }
        // SAFETY: librdkafka's payload is `len` bytes, live as long as the message.
        unsafe { std::slice::from_raw_parts(self.0.payload as *const u8, self.0.len) }
    }

    fn timestamp(&self) -> Option<i64> {
        let mut kind = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: a live message and a place for the timestamp's type.
        let t = unsafe { rd::rd_kafka_message_timestamp(self.0, &mut kind) };
        (kind != rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE && t != -1).then_some(t)
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        let mut headers = std::ptr::null_mut();
        // SAFETY: a live message; librdkafka parses its headers on first use and keeps them
        // with the message.
        if unsafe { rd::rd_kafka_message_headers(self.0, &mut headers) } != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return None;
        }
        for idx in 0.. {
            let (mut key, mut value, mut size) = (std::ptr::null(), std::ptr::null(), 0usize);
            // SAFETY: `headers` belongs to the live message; out-pointers are valid.
            let found = unsafe { rd::rd_kafka_header_get_all(headers, idx, &mut key, &mut value, &mut size) };
            if found != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                return None;
            }
            // SAFETY: header names are NUL-terminated strings owned by the headers.
            if unsafe { CStr::from_ptr(key) }.to_bytes().eq_ignore_ascii_case(name.as_bytes()) {
                if value.is_null() {
                    return None;
                }
                // SAFETY: the value is `size` bytes owned by the headers.
                return Some(unsafe { std::slice::from_raw_parts(value as *const u8, size) });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_lines_lose_their_thread_and_client_prefixes() {
        assert_eq!(super::without_prefixes("[thrd:app]: rdkafka#consumer-1: 2/2 brokers are down"), "2/2 brokers are down");
        assert_eq!(super::without_prefixes("rdkafka#consumer-3: boom: x"), "boom: x");
        assert_eq!(super::without_prefixes("plain: text"), "plain: text");
    }
}
