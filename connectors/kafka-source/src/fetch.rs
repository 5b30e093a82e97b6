//! Batch consumption through a queue of our own.
//!
//! Each assigned partition's fetch queue is forwarded to one [`FetchQueue`],
//! and the poll thread takes up to thousands of messages from it in one
//! `rd_kafka_consume_batch_queue` call, instead of one message per
//! `poll` with its clock reads, event wrapper and locking.
//!
//! The consumer queue keeps everything else: rebalances, errors, and
//! messages of partitions that were not split. It has to: a batch call that
//! met a rebalance op would make librdkafka unassign by itself, behind the
//! rebalance callback's back. So the consumer is still polled between
//! batches, and a message arriving on the consumer queue wakes a batch call
//! that is waiting (see [`wake_on`]).
//!
//! A partition's queue is split before the partition is assigned, so none
//! of its messages goes to the consumer queue; librdkafka keeps a queue
//! forwarded by the application when it (re)starts fetching.

use std::collections::HashMap;
use std::ffi::{c_void, CStr, CString};
use std::ptr::{self, NonNull};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rdkafka::bindings as rdsys;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::Message;
use tributary_core::{Header, TopicPartition};

use crate::context::lock;

/// Most messages one batch call takes.
const BATCH_MAX: usize = 4096;

/// An owned librdkafka queue handle, destroyed on drop.
struct QueueHandle(NonNull<rdsys::rd_kafka_queue_t>);

// SAFETY: librdkafka queue handles may be used and destroyed from any thread.
unsafe impl Send for QueueHandle {}
// SAFETY: as above; every operation on a handle locks the queue inside librdkafka.
unsafe impl Sync for QueueHandle {}

impl QueueHandle {
    fn ptr(&self) -> *mut rdsys::rd_kafka_queue_t {
        self.0.as_ptr()
    }
}

impl Drop for QueueHandle {
    fn drop(&mut self) {
        // SAFETY: the handle is ours and destroyed once.
        unsafe { rdsys::rd_kafka_queue_destroy(self.0.as_ptr()) }
    }
}

/// Where the consumer queue's "became non-empty" callback sends its wake-up:
/// the fetch queue while it exists.
#[derive(Default)]
pub struct Waker(Mutex<Option<Arc<QueueHandle>>>);

impl Waker {
    fn wake(&self) {
        if let Some(q) = lock(&self.0).as_ref() {
            // SAFETY: the handle is alive while it is in the slot; the lock
            // keeps it from being destroyed during the call.
            unsafe { rdsys::rd_kafka_queue_yield(q.ptr()) }
        }
    }
}

/// Installs the wake-up on the consumer queue: a batch call waiting on the
/// fetch queue returns as soon as the consumer queue has something (a
/// rebalance, an error), so the poll thread serves it at once. Call before
/// the consumer is shared.
pub fn wake_on<C: ConsumerContext>(consumer: &mut BaseConsumer<C>) -> Arc<Waker> {
    let waker = Arc::new(Waker::default());
    let w = waker.clone();
    consumer.set_nonempty_callback(move || w.wake());
    waker
}

/// The queue all split partitions deliver to, and the handles of their own
/// queues. Holds the consumer, so it cannot outlive it.
pub struct FetchQueue<C: ConsumerContext + 'static> {
    queue: Arc<QueueHandle>,
    split: HashMap<TopicPartition, QueueHandle>,
    waker: Arc<Waker>,
    buf: Vec<*mut rdsys::rd_kafka_message_t>,
    consumer: Arc<BaseConsumer<C>>,
}

// SAFETY: the message pointers in `buf` are only set and destroyed inside
// `take`; between calls the buffer is empty.
unsafe impl<C: ConsumerContext + 'static> Send for FetchQueue<C> {}

impl<C: ConsumerContext + 'static> FetchQueue<C> {
    /// A new, empty fetch queue of `consumer`, woken through `waker` (from
    /// [`wake_on`]).
    pub fn new(consumer: Arc<BaseConsumer<C>>, waker: Arc<Waker>) -> Self {
        // SAFETY: the client pointer is valid while `consumer` lives.
        let raw = unsafe { rdsys::rd_kafka_queue_new(consumer.client().native_ptr()) };
        let queue = Arc::new(QueueHandle(
            NonNull::new(raw).expect("rd_kafka_queue_new returns a queue"),
        ));
        *lock(&waker.0) = Some(queue.clone());
        Self {
            queue,
            split: HashMap::new(),
            waker,
            buf: Vec::with_capacity(BATCH_MAX),
            consumer,
        }
    }

    /// Routes `partition`'s fetched messages to this queue. Returns false
    /// when librdkafka has no such partition (its messages then keep coming
    /// through the consumer queue).
    pub fn split(&mut self, partition: &TopicPartition) -> bool {
        if self.split.contains_key(partition) {
            return true;
        }
        let Ok(topic) = CString::new(partition.topic.as_bytes()) else {
            return false;
        };
        let rk = self.consumer.client().native_ptr();
        // SAFETY: valid client and NUL-terminated topic; the returned handle
        // is ours to destroy.
        let raw =
            unsafe { rdsys::rd_kafka_queue_get_partition(rk, topic.as_ptr(), partition.partition) };
        let Some(handle) = NonNull::new(raw).map(QueueHandle) else {
            return false;
        };
        // SAFETY: both handles are valid. Forwarding set by the application
        // survives librdkafka's own forwarding when fetching starts.
        unsafe { rdsys::rd_kafka_queue_forward(handle.ptr(), self.queue.ptr()) };
        self.split.insert(partition.clone(), handle);
        true
    }

    /// Whether `partition` delivers to this queue.
    pub fn is_split(&self, partition: &TopicPartition) -> bool {
        self.split.contains_key(partition)
    }

    /// Forgets the handles of partitions no longer assigned. Their queues
    /// stay forwarded here; whatever they still deliver is outdated and
    /// librdkafka discards it.
    pub fn forget(&mut self, partitions: &[TopicPartition]) {
        for p in partitions {
            self.split.remove(p);
        }
    }

    /// Takes up to `max` messages and hands each to `each`. librdkafka's
    /// batch call waits until it has all `max` (not just the first) or
    /// `wait` is over, or the consumer queue gets something meanwhile; with
    /// a zero `wait` it takes what is there. Returns how many were taken,
    /// errors included.
    pub fn take(
        &mut self,
        wait: Duration,
        max: usize,
        mut each: impl FnMut(Result<Fetched<'_>, KafkaError>),
    ) -> usize {
        let max = max.clamp(1, BATCH_MAX);
        let timeout_ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
        self.buf.clear();
        // SAFETY: `buf` has room for `max` pointers; librdkafka writes `n` of them.
        let n = unsafe {
            let n = rdsys::rd_kafka_consume_batch_queue(
                self.queue.ptr(),
                timeout_ms,
                self.buf.as_mut_ptr(),
                max,
            );
            let n = usize::try_from(n).unwrap_or(0).min(max);
            self.buf.set_len(n);
            n
        };
        let rk = self.consumer.client().native_ptr();
        // Every message lives until all are handed on (the guard destroys
        // them), and each holds its topic: a name read for one message stays
        // valid for the later ones of the same topic handle, so it is read
        // (and its UTF-8 checked) once per run of a topic, not per message.
        let taken = Taken(&mut self.buf);
        let mut topic: (*mut rdsys::rd_kafka_topic_t, &str) = (ptr::null_mut(), "");
        for &m in taken.0.iter() {
            // SAFETY: librdkafka returned a valid message, destroyed by `taken`.
            let msg = unsafe { &*m };
            if msg.err == RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
                if msg.rkt != topic.0 {
                    topic = (msg.rkt, topic_name(msg.rkt));
                }
                each(Ok(Fetched {
                    msg,
                    topic: topic.1,
                }));
            } else {
                each(Err(message_error(rk, msg)));
            }
        }
        n
    }
}

/// Messages taken by one [`FetchQueue::take`]; destroyed, and the buffer
/// emptied, when dropped.
struct Taken<'a>(&'a mut Vec<*mut rdsys::rd_kafka_message_t>);

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        for m in self.0.drain(..) {
            // SAFETY: each message is destroyed once, after its last use.
            unsafe { rdsys::rd_kafka_message_destroy(m) };
        }
    }
}

/// The name of a message's topic. The caller keeps a message of the topic
/// alive while it uses the name (the message holds the topic handle).
fn topic_name<'a>(rkt: *mut rdsys::rd_kafka_topic_t) -> &'a str {
    // SAFETY: a fetched message's topic handle is valid and its name is
    // NUL-terminated; it lives as long as the handle (see above).
    let name = unsafe { CStr::from_ptr(rdsys::rd_kafka_topic_name(rkt)) };
    name.to_str().unwrap_or("")
}

impl<C: ConsumerContext + 'static> Drop for FetchQueue<C> {
    fn drop(&mut self) {
        // No wake-up may reach the queue once it is gone.
        lock(&self.waker.0).take();
        self.split.clear();
    }
}

/// The error a message carries, as rdkafka reports it for a polled one.
fn message_error(rk: *mut rdsys::rd_kafka_t, msg: &rdsys::rd_kafka_message_t) -> KafkaError {
    match msg.err {
        RDKafkaRespErr::RD_KAFKA_RESP_ERR__PARTITION_EOF => KafkaError::PartitionEOF(msg.partition),
        RDKafkaRespErr::RD_KAFKA_RESP_ERR__FATAL => {
            // SAFETY: valid client; a null buffer of size 0 asks for the code only.
            let code = unsafe { rdsys::rd_kafka_fatal_error(rk, ptr::null_mut(), 0) };
            KafkaError::MessageConsumptionFatal(RDKafkaErrorCode::from(code))
        }
        e => KafkaError::MessageConsumption(RDKafkaErrorCode::from(e)),
    }
}

/// What the poll thread reads of a message, however it was taken: one by
/// one from the consumer queue ([`BorrowedMessage`]) or in a batch from the
/// fetch queue ([`Fetched`]).
pub trait Polled {
    /// The topic name.
    fn topic(&self) -> &str;
    /// The partition number.
    fn partition(&self) -> i32;
    /// The offset.
    fn offset(&self) -> i64;
    /// The message timestamp in milliseconds, if it has one.
    fn timestamp_ms(&self) -> Option<i64>;
    /// The key, `None` when null.
    fn key(&self) -> Option<&[u8]>;
    /// The payload, `None` when null.
    fn payload(&self) -> Option<&[u8]>;
    /// A copy of the headers (none, for most topics: then no allocation).
    fn headers(&self) -> Vec<Header>;
}

impl Polled for BorrowedMessage<'_> {
    fn topic(&self) -> &str {
        Message::topic(self)
    }
    fn partition(&self) -> i32 {
        Message::partition(self)
    }
    fn offset(&self) -> i64 {
        Message::offset(self)
    }
    fn timestamp_ms(&self) -> Option<i64> {
        Message::timestamp(self).to_millis()
    }
    fn key(&self) -> Option<&[u8]> {
        Message::key(self)
    }
    fn payload(&self) -> Option<&[u8]> {
        Message::payload(self)
    }
    fn headers(&self) -> Vec<Header> {
        Message::headers(self).map_or_else(Vec::new, |headers| {
            headers
                .iter()
                .map(|h| Header {
                    key: h.key.to_owned(),
                    value: h.value.map(Bytes::copy_from_slice),
                })
                .collect()
        })
    }
}

/// A message taken by [`FetchQueue::take`], valid during the callback.
pub struct Fetched<'a> {
    msg: &'a rdsys::rd_kafka_message_t,
    /// Its topic's name.
    topic: &'a str,
}

impl Polled for Fetched<'_> {
    fn topic(&self) -> &str {
        self.topic
    }

    fn partition(&self) -> i32 {
        self.msg.partition
    }

    fn offset(&self) -> i64 {
        self.msg.offset
    }

    fn timestamp_ms(&self) -> Option<i64> {
        let mut kind = rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: valid message and out-pointer.
        let ts = unsafe { rdsys::rd_kafka_message_timestamp(self.msg, &mut kind) };
        (kind != rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE && ts >= 0)
            .then_some(ts)
    }

    fn key(&self) -> Option<&[u8]> {
        bytes_of(self.msg.key, self.msg.key_len)
    }

    fn payload(&self) -> Option<&[u8]> {
        bytes_of(self.msg.payload, self.msg.len)
    }

    fn headers(&self) -> Vec<Header> {
        let mut hdrs = ptr::null_mut();
        // SAFETY: valid message; the headers belong to it.
        let err = unsafe { rdsys::rd_kafka_message_headers(self.msg, &mut hdrs) };
        if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR || hdrs.is_null() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for idx in 0.. {
            let mut name = ptr::null();
            let mut value = ptr::null();
            let mut size = 0usize;
            // SAFETY: valid headers and out-pointers; the name and value
            // live as long as the message.
            let err = unsafe {
                rdsys::rd_kafka_header_get_all(hdrs, idx, &mut name, &mut value, &mut size)
            };
            if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
                break;
            }
            // SAFETY: header names are NUL-terminated.
            let key = unsafe { CStr::from_ptr(name) }
                .to_string_lossy()
                .into_owned();
            out.push(Header {
                key,
                value: bytes_of(value, size).map(Bytes::copy_from_slice),
            });
        }
        out
    }
}

fn bytes_of<'a>(p: *const c_void, len: usize) -> Option<&'a [u8]> {
    if p.is_null() {
        return None;
    }
    // SAFETY: librdkafka guarantees `len` readable bytes at a non-null pointer.
    Some(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) })
}
