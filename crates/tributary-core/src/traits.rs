//! Connector traits.

use std::time::Instant;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use tokio::sync::oneshot;

use crate::error::{ConvertError, SinkError, SourceError};
use crate::model::{Landed, RowBatch, SourceBatch, TopicPartition};

/// Where a newly assigned partition should start reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResumeAt {
    /// At this offset: the sink has landed everything before it.
    Offset(i64),
    /// The sink holds nothing for the partition: use the source's own default
    /// (for Kafka: the group's committed offset, else the `start` policy).
    Default,
}

/// Answer to [`SourceEvent::Assigned`]: where each partition resumes.
pub type AssignAck = oneshot::Sender<Vec<(TopicPartition, ResumeAt)>>;

/// Answer to [`SourceEvent::Revoked`]: the runtime has landed-and-committed or
/// aborted the partitions and will not commit them again.
pub type RevokeAck = oneshot::Sender<()>;

/// What a source hands the runtime.
#[derive(Debug)]
pub enum SourceEvent {
    /// Records from one poll, one batch per partition, in offset order.
    Records(Vec<SourceBatch>),
    /// The source was given these partitions. The runtime recovers their
    /// landing state and answers with resume positions; the source reads
    /// nothing from them before the answer.
    Assigned {
        /// New partitions.
        partitions: Vec<TopicPartition>,
        /// Where to send resume positions.
        ack: AssignAck,
    },
    /// These partitions are about to be taken away. The runtime lands and
    /// commits (or aborts) them, then answers; it never commits them afterwards.
    Revoked {
        /// Partitions being revoked.
        partitions: Vec<TopicPartition>,
        /// Where to acknowledge.
        ack: RevokeAck,
    },
    /// These partitions were taken away without a chance to commit (the
    /// session expired). Buffers must be dropped, not landed.
    Lost(Vec<TopicPartition>),
    /// A [`Source::seek`] took effect: records of the partition delivered after
    /// this event start at `offset`; any delivered before it are stale.
    Seeked {
        /// The partition.
        partition: TopicPartition,
        /// The new position.
        offset: i64,
    },
    /// A bounded source has delivered everything it will deliver.
    End,
}

/// A source of raw records with positions (Kafka, files, synthetic data).
#[async_trait]
pub trait Source: Send {
    /// Waits for the next event. Must be cancel-safe: dropping the future
    /// loses no event.
    async fn next(&mut self) -> Result<SourceEvent, SourceError>;

    /// Records, per partition, the offset from which the source would resume
    /// (one past the last landed record). Called only after the records are
    /// durable in the sink.
    async fn commit(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<(), SourceError>;

    /// Repositions a partition, after a failed or lost landing. The source
    /// answers with [`SourceEvent::Seeked`] once the new position is in effect.
    async fn seek(&mut self, partition: &TopicPartition, offset: i64) -> Result<(), SourceError>;

    /// Stops (`true`) or restarts (`false`) fetching from every partition this
    /// source holds or is assigned later, keeping group membership and the
    /// assignment; rebalance events keep flowing while paused. Returns
    /// `Ok(true)` when the source did it itself; `Ok(false)` (the default)
    /// when it has no such control, and the runtime must instead stop
    /// calling [`Source::next`] while paused (right for sources without a
    /// group to stay alive in).
    async fn set_paused(&mut self, paused: bool) -> Result<bool, SourceError> {
        let _ = paused;
        Ok(false)
    }

    /// The latest known high watermark (offset the next record will get) of
    /// each partition this source holds, for lag. Must not block: a source
    /// refreshes them in the background. Empty (the default) for sources
    /// without watermarks.
    fn high_watermarks(&self) -> Vec<(TopicPartition, i64)> {
        Vec::new()
    }

    /// Leaves the group and releases resources, within a bounded time. The
    /// runtime has landed and committed what it holds before calling this,
    /// so the source must not wait for acknowledgements while closing.
    async fn close(self: Box<Self>);
}

/// Turns raw records into Arrow rows.
pub trait Converter: Send {
    /// Schema of the rows this converter produces, once known (an inferring
    /// converter knows it after its first batch).
    fn schema(&self) -> Option<SchemaRef>;

    /// Converts one batch. Records that cannot be converted become rejects
    /// (or skips) according to the error policy; under `on_error = "fail"`
    /// the first such record is returned as [`ConvertError::Record`].
    fn convert(&mut self, batch: SourceBatch) -> Result<RowBatch, ConvertError>;
}

/// Buffers rows and lands them durably, per source partition.
#[async_trait]
pub trait Sink: Send {
    /// Takes partitions over: recovers their landing state (cleans up what a
    /// crashed writer left) and says where each should resume.
    async fn open(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, ResumeAt)>, SinkError>;

    /// Buffers rows (and rejects) of one partition.
    async fn write(&mut self, batch: RowBatch) -> Result<(), SinkError>;

    /// Partitions whose buffers have reached a flush threshold by `now`.
    fn due(&self, now: Instant) -> Vec<TopicPartition>;

    /// The earliest instant at which a buffer reaches its age limit.
    fn next_deadline(&self) -> Option<Instant>;

    /// Lands the buffers of these partitions, concurrently. For each:
    /// `Ok(Some(range))` once durable and committed to the lake, `Ok(None)`
    /// when nothing was buffered, or an error, after which the buffer is gone
    /// and the partition must be re-read from [`Sink::resume_point`].
    ///
    /// A partition with a background landing (see
    /// [`Sink::land_in_background`]) whose result was not taken yet gets
    /// that result first, then its buffer's. When the background landing
    /// failed, the rows buffered after it were dropped with it: only its
    /// error is given.
    async fn land(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Vec<(TopicPartition, Result<Option<Landed>, SinkError>)>;

    /// Starts landing the buffers of these partitions without waiting for
    /// them, so that reading and converting go on while files are encoded
    /// and written; their results come from [`Sink::background_landed`], a
    /// partition's in the order its ranges were started. A partition whose
    /// previous landing is still under way waits for it to end first: a
    /// partition has one landing under way at most, and its buffers stay
    /// within the flush thresholds. Returns the partitions it started; the
    /// runtime lands the others with [`Sink::land`]. The default starts
    /// none.
    async fn land_in_background(&mut self, partitions: &[TopicPartition]) -> Vec<TopicPartition> {
        let _ = partitions;
        Vec::new()
    }

    /// Whether a landing started by [`Sink::land_in_background`] has a
    /// result not taken yet.
    fn landing_in_background(&self) -> bool {
        false
    }

    /// The result of the next background landing to finish, as
    /// [`Sink::land`] would have given it. Pending while none is under way;
    /// cancel-safe.
    async fn background_landed(&mut self) -> (TopicPartition, Result<Option<Landed>, SinkError>) {
        std::future::pending().await
    }

    /// Where the partition must be re-read from after an aborted or failed
    /// landing: one past the last landed offset, or where buffering began.
    fn resume_point(&self, partition: &TopicPartition) -> ResumeAt;

    /// Drops partitions (revoked, lost or fenced): buffers are discarded,
    /// nothing landed is touched. Their background landings run to their
    /// end, but their results are dropped; opening the partitions again
    /// waits for them.
    fn close_partitions(&mut self, partitions: &[TopicPartition]);

    /// Partitions with rows not landed yet: buffered, or landing in the
    /// background with a result not taken yet.
    fn buffered(&self) -> Vec<TopicPartition>;

    /// Bytes held in buffers (encoded and in-progress), background landings
    /// included.
    fn buffered_bytes(&self) -> usize;

    /// Memory held by background landings under way (see
    /// [`Sink::land_in_background`]). It counts against the worker's memory
    /// budget, but landing early is no remedy for it: it is landing already.
    /// The default: none.
    fn landing_bytes(&self) -> usize {
        0
    }

    /// Memory held per buffered partition, background landings not included,
    /// for the worker's memory budget and for choosing which buffers to land
    /// early. The default spreads
    /// [`Sink::buffered_bytes`] evenly; sinks that know better (allocations,
    /// not encoded sizes) say so.
    fn buffered_bytes_by_partition(&self) -> Vec<(TopicPartition, usize)> {
        let partitions = self.buffered();
        let each = self.buffered_bytes() / partitions.len().max(1);
        partitions.into_iter().map(|tp| (tp, each)).collect()
    }
}
