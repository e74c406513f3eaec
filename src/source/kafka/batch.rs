//! librdkafka's batch consume (`rd_kafka_consume_batch_queue`): one call takes every message
//! waiting on the consumer queue, up to a limit. rust-rdkafka's `poll` takes one message per
//! call, each with its own event, `Arc` and clock reads; on a fast broker that per-message
//! toll, not decoding, capped a Kafka replay at half of what the broker serves.
//!
//! Only for consumers with an explicit assignment (range replays). The batch call serves any
//! rebalance op itself, and with rust-rdkafka's event API there is no rebalance callback, so
//! librdkafka would answer a group's rebalance by dropping the whole assignment: a group
//! member keeps using `poll`.

use std::ffi::CStr;
use std::ptr::NonNull;
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::types::RDKafkaErrorCode;

use super::intake::Incoming;

/// The consumer queue of one consumer, read in batches.
pub struct BatchQueue {
    queue: NonNull<rd::rd_kafka_queue_t>,
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
        // SAFETY: the client pointer is valid for the consumer's life; the queue handle keeps a
        // reference of its own, released in `drop`.
        let queue = unsafe { rd::rd_kafka_queue_get_consumer(consumer.client().native_ptr()) };
        Some(BatchQueue { queue: NonNull::new(queue)?, taken: Vec::new() })
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

impl Drop for BatchQueue {
    fn drop(&mut self) {
        self.release();
        // SAFETY: the handle came from `rd_kafka_queue_get_consumer` and is destroyed once.
        unsafe { rd::rd_kafka_queue_destroy(self.queue.as_ptr()) };
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
