//! Records, positions and batches.

use std::fmt;
use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// One partition of one source topic: the unit of ordering, assignment and landing.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TopicPartition {
    /// Topic (or, for non-Kafka sources, stream) name.
    pub topic: Arc<str>,
    /// Partition number within the topic.
    pub partition: i32,
}

impl TopicPartition {
    /// Builds a topic-partition.
    pub fn new(topic: impl Into<Arc<str>>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// A record as the source delivered it, before decoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawRecord {
    /// Offset of the record in its partition.
    pub offset: i64,
    /// Source timestamp in milliseconds since the Unix epoch, if the source has one.
    pub timestamp_ms: Option<i64>,
    /// Record key.
    pub key: Option<Bytes>,
    /// Record value. `None` is a tombstone.
    pub payload: Option<Bytes>,
    /// Record headers in the order the source delivered them (Kafka
    /// headers); empty for sources without headers. No allocation when empty.
    pub headers: Vec<Header>,
}

/// One record header: a key and an optional value (Kafka allows null values
/// and repeated keys).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Header key.
    pub key: String,
    /// Header value; `None` is a null value.
    pub value: Option<Bytes>,
}

/// Records of one partition in increasing offset order.
///
/// Offsets need not be consecutive (transaction markers and compacted-away
/// records leave holes), but they always increase.
#[derive(Clone, Debug)]
pub struct SourceBatch {
    /// Where the records come from.
    pub partition: TopicPartition,
    /// The records, offsets strictly increasing.
    pub records: Vec<RawRecord>,
}

impl SourceBatch {
    /// Offset of the first record, if any.
    pub fn first_offset(&self) -> Option<i64> {
        self.records.first().map(|r| r.offset)
    }

    /// Offset of the last record, if any.
    pub fn last_offset(&self) -> Option<i64> {
        self.records.last().map(|r| r.offset)
    }

    /// Sum of key and payload sizes, for flush and memory accounting.
    pub fn payload_bytes(&self) -> usize {
        self.records
            .iter()
            .map(|r| {
                r.key.as_ref().map_or(0, |k| k.len()) + r.payload.as_ref().map_or(0, |p| p.len())
            })
            .sum()
    }
}

/// A record the converter (or a transform) could not turn into a row.
///
/// It keeps the raw bytes so that the dead-letter route can store it whole.
#[derive(Clone, Debug)]
pub struct Reject {
    /// Source partition of the record.
    pub partition: TopicPartition,
    /// Offset of the record.
    pub offset: i64,
    /// Source timestamp of the record.
    pub timestamp_ms: Option<i64>,
    /// Record key.
    pub key: Option<Bytes>,
    /// Record value.
    pub payload: Option<Bytes>,
    /// Record headers, as the source delivered them.
    pub headers: Vec<Header>,
    /// Why the record was rejected, naming the field where one is known.
    pub reason: String,
}

impl Reject {
    /// Builds a reject from the raw record and a reason.
    ///
    /// The key and payload are copied: a source's records are usually
    /// slices of one buffer per batch, which a kept reject would otherwise
    /// hold whole until its range lands.
    pub fn new(partition: &TopicPartition, record: &RawRecord, reason: impl Into<String>) -> Self {
        let copy = |b: &Option<Bytes>| b.as_deref().map(Bytes::copy_from_slice);
        Self {
            partition: partition.clone(),
            offset: record.offset,
            timestamp_ms: record.timestamp_ms,
            key: copy(&record.key),
            payload: copy(&record.payload),
            headers: record.headers.clone(),
            reason: reason.into(),
        }
    }
}

/// Names of the opt-in metadata columns a converter may append.
pub const METADATA_COLUMNS: [&str; 5] = ["_topic", "_partition", "_offset", "_timestamp", "_key"];

/// Decoded rows of one source batch, with the positions they cover.
#[derive(Clone, Debug)]
pub struct RowBatch {
    /// Source partition.
    pub partition: TopicPartition,
    /// First offset covered by this batch (first record of the source batch).
    pub first_offset: i64,
    /// Last offset covered (last record of the source batch, whether it
    /// became a row, a reject or was skipped).
    pub last_offset: i64,
    /// Number of source records the batch covers (rows + rejects + skipped).
    pub source_records: usize,
    /// The rows.
    pub rows: RecordBatch,
    /// Record time of every row, in milliseconds since the Unix epoch (from
    /// the converter's `timestamp_field`, else the source timestamp). Drives
    /// time-partitioned paths. Same length as `rows`.
    pub event_time_ms: Vec<i64>,
    /// Records that could not be converted and are routed to the dead-letter route.
    pub rejects: Vec<Reject>,
    /// Records dropped under `on_error = "skip"`, or removed by a filter
    /// transform (counted, never silent).
    pub skipped: usize,
}

/// One file a landing made durable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LandedFile {
    /// Path relative to the sink root.
    pub path: String,
    /// Rows (or dead-letter lines) in the file.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
}

/// A contiguous offset range of one partition that is now durable in the sink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Landed {
    /// The partition.
    pub partition: TopicPartition,
    /// Sequence number of the commit record in the partition's commit log.
    pub seq: u64,
    /// First offset of the range (inclusive).
    pub first_offset: i64,
    /// Last offset of the range (inclusive).
    pub last_offset: i64,
    /// Rows written to data files.
    pub rows: u64,
    /// Records written to the dead-letter route.
    pub dead_lettered: u64,
    /// Records skipped under `on_error = "skip"`.
    pub skipped: u64,
    /// Rows of the range whose record time was outside the sink's late-data
    /// window (late, or too far ahead of the clock). Counted by the sink as
    /// it buffered them; not part of the commit record.
    pub late: u64,
    /// Files the commit lists.
    pub files: Vec<LandedFile>,
}

impl Landed {
    /// The offset the source should commit: one past the range.
    pub fn next_offset(&self) -> i64 {
        self.last_offset + 1
    }
}
