//! Live status of a pipeline, published through a `tokio::sync::watch` channel.

use std::collections::BTreeMap;
use std::time::SystemTime;

use tributary_core::TopicPartition;

/// Lifecycle of a pipeline task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PipelineState {
    /// Started, waiting for partitions.
    #[default]
    Starting,
    /// Consuming and landing.
    Running,
    /// Landing what is buffered before stopping.
    Draining,
    /// Stopped cleanly.
    Stopped,
    /// Stopped on an error.
    Failed,
}

/// Per-partition progress.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionStatus {
    /// Whether this worker currently owns the partition.
    pub assigned: bool,
    /// One past the last landed offset.
    pub landed_offset: Option<i64>,
    /// Last offset committed to the source.
    pub committed_offset: Option<i64>,
    /// When the last landing finished.
    pub last_landing: Option<SystemTime>,
    /// The last landing or commit error, cleared by the next success.
    pub last_error: Option<String>,
}

/// Counters since the pipeline started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Records received from the source.
    pub consumed: u64,
    /// Rows landed in data files.
    pub landed_rows: u64,
    /// Records landed in the dead-letter route.
    pub dead_lettered: u64,
    /// Records skipped under `on_error = "skip"`.
    pub skipped: u64,
    /// Files landed.
    pub files: u64,
    /// Bytes landed.
    pub bytes: u64,
    /// Landings (commits) made.
    pub landings: u64,
    /// Landings that failed or lost a race and were re-read.
    pub failed_landings: u64,
}

/// Snapshot of a pipeline.
#[derive(Clone, Debug, Default)]
pub struct PipelineStatus {
    /// Pipeline name.
    pub name: String,
    /// Lifecycle state.
    pub state: PipelineState,
    /// Partitions this worker has owned.
    pub partitions: BTreeMap<TopicPartition, PartitionStatus>,
    /// Counters.
    pub totals: Totals,
    /// Error that stopped the pipeline.
    pub error: Option<String>,
}
