//! Errors that cross connector boundaries.

use crate::model::TopicPartition;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Whether retrying the failed operation can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Transient (network, throttling, 5xx): retry with backoff.
    Retryable,
    /// The input or the configuration is wrong: retrying gives the same answer.
    Permanent,
}

/// Errors raised by a [`crate::Source`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The client could not be created or subscribed (bad config, bad topic pattern).
    #[error("source setup failed: {message}")]
    Setup {
        /// What went wrong.
        message: String,
    },
    /// Talking to the broker failed.
    #[error("source I/O failed ({operation}): {source}")]
    Io {
        /// What was being done.
        operation: String,
        /// Underlying error.
        #[source]
        source: BoxError,
        /// Retry hint.
        class: ErrorClass,
    },
    /// This worker no longer owns the partitions (stale group generation,
    /// unknown member): it must stop writing them and wait for a new assignment.
    #[error("fenced: the group no longer assigns {partitions:?} to this worker ({reason})")]
    Fenced {
        /// Partitions the worker lost.
        partitions: Vec<TopicPartition>,
        /// Broker's reason.
        reason: String,
    },
    /// The source stopped (its channel closed).
    #[error("source closed")]
    Closed,
}

impl SourceError {
    /// Retry hint.
    pub fn class(&self) -> ErrorClass {
        match self {
            SourceError::Io { class, .. } => *class,
            _ => ErrorClass::Permanent,
        }
    }
}

/// Errors raised by a [`crate::Converter`] for a whole batch (per-record
/// problems are [`crate::Reject`]s, not errors).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    /// A record could not be converted and the policy is `on_error = "fail"`.
    #[error("record {partition} offset {offset} cannot be converted: {reason}")]
    Record {
        /// Partition of the record.
        partition: TopicPartition,
        /// Offset of the record.
        offset: i64,
        /// Why, naming the field when known.
        reason: String,
    },
    /// The converter itself failed (schema file unreadable, Arrow error).
    #[error("converter failed: {message}")]
    Internal {
        /// What went wrong.
        message: String,
    },
}

/// Errors raised by a [`crate::Sink`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// Another writer committed this partition's next range first. The caller
    /// must discard its buffer for the partition and resume at `resume_at`.
    #[error(
        "{partition}: commit {seq} was created by another writer; resume at offset {resume_at}"
    )]
    Conflict {
        /// The partition.
        partition: TopicPartition,
        /// Commit sequence number that was lost.
        seq: u64,
        /// Where the winner's ranges end (last landed offset + 1).
        resume_at: i64,
    },
    /// Reading or writing storage failed.
    #[error("storage {operation} {path} failed: {source}")]
    Storage {
        /// What was being done (put, create, list, delete).
        operation: &'static str,
        /// Object path.
        path: String,
        /// Underlying error.
        #[source]
        source: BoxError,
        /// Retry hint.
        class: ErrorClass,
    },
    /// Rows could not be encoded (schema mismatch, Parquet error).
    #[error(
        "{partition}: cannot encode rows at offsets {first_offset}..={last_offset}: {message}"
    )]
    Encode {
        /// The partition.
        partition: TopicPartition,
        /// First offset of the batch.
        first_offset: i64,
        /// Last offset of the batch.
        last_offset: i64,
        /// What went wrong.
        message: String,
    },
    /// The commit log is not in a state this worker can continue from
    /// (unreadable or inconsistent commit record).
    #[error("{partition}: commit log at {path} is inconsistent: {message}")]
    CommitLog {
        /// The partition.
        partition: TopicPartition,
        /// The commit record.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The sink was asked to do something for a partition it does not hold.
    #[error("{partition}: not open in this sink")]
    NotOpen {
        /// The partition.
        partition: TopicPartition,
    },
    /// Writing rejects to the dead-letter topic failed; the range was not
    /// committed and is read again.
    #[error("{partition}: dead-letter topic {topic} at offsets {first_offset}..={last_offset}: {message}")]
    DeadLetter {
        /// Source partition of the rejects.
        partition: TopicPartition,
        /// Dead-letter topic.
        topic: String,
        /// First offset of the range being landed.
        first_offset: i64,
        /// Last offset of the range being landed.
        last_offset: i64,
        /// What went wrong.
        message: String,
        /// Retry hint.
        class: ErrorClass,
    },
}

impl SinkError {
    /// Retry hint.
    pub fn class(&self) -> ErrorClass {
        match self {
            SinkError::Storage { class, .. } | SinkError::DeadLetter { class, .. } => *class,
            _ => ErrorClass::Permanent,
        }
    }
}
