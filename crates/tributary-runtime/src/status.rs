//! Live status of a pipeline, published through a `tokio::sync::watch` channel.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, SystemTime};

use tributary_core::TopicPartition;

/// Lifecycle of a pipeline task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PipelineState {
    /// Started, waiting for partitions.
    #[default]
    Starting,
    /// Consuming and landing.
    Running,
    /// Paused through the control API: not fetching, still holding its
    /// partitions and landing what it buffered.
    Paused,
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
    /// When an offset was last committed to the source.
    pub last_commit: Option<SystemTime>,
    /// The partition's high watermark (offset of the next record produced),
    /// when the source reports one.
    pub high_watermark: Option<i64>,
    /// High watermark minus the committed offset (or the landed offset
    /// before the first commit).
    pub lag: Option<i64>,
    /// Lag health over the configured window.
    pub lag_status: LagStatus,
}

/// Lag health of a partition, in the manner of Burrow (see [`crate::LagPolicy`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum LagStatus {
    /// Keeping up.
    #[default]
    Ok,
    /// Lag grew over the whole window.
    Warn,
    /// Lag above zero and the committed offset did not move over the window.
    Stall,
    /// Lag above zero and nothing committed for `stop_after`.
    Stop,
}

impl LagStatus {
    /// Upper-case name, as Burrow spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            LagStatus::Ok => "OK",
            LagStatus::Warn => "WARN",
            LagStatus::Stall => "STALL",
            LagStatus::Stop => "STOP",
        }
    }
}

impl PipelineState {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            PipelineState::Starting => "starting",
            PipelineState::Running => "running",
            PipelineState::Paused => "paused",
            PipelineState::Draining => "draining",
            PipelineState::Stopped => "stopped",
            PipelineState::Failed => "failed",
        }
    }
}

/// Upper bounds (seconds) of the duration histogram buckets.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// A cumulative histogram of durations over [`DURATION_BUCKETS`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// Observations at or below each bucket's bound (not cumulative).
    pub buckets: [u64; DURATION_BUCKETS.len()],
    /// Number of observations.
    pub count: u64,
    /// Sum of the observations, in seconds.
    pub sum: f64,
}

impl Histogram {
    /// Adds one observation.
    pub fn observe(&mut self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = DURATION_BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += secs;
    }
}

/// Durations measured by the pipeline.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timings {
    /// One flush: landing the due partitions and committing their offsets.
    pub flush: Histogram,
    /// Landing alone: data files written and the lake commit record created.
    pub landing: Histogram,
    /// Committing offsets to the source (Kafka group).
    pub source_commit: Histogram,
}

/// A file landed recently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecentFile {
    /// Partition it holds records of.
    pub partition: TopicPartition,
    /// Path relative to the sink root.
    pub path: String,
    /// Rows in it.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// When it was landed.
    pub landed_at: SystemTime,
}

/// How many recent files a status keeps.
pub const RECENT_FILES: usize = 20;

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
    /// Rows landed whose record time was outside the sink's late-data
    /// window (late, or too far ahead of the clock).
    pub late: u64,
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
    /// Bytes held in the sink's buffers, last sampled.
    pub buffered_bytes: u64,
    /// Errors seen, by kind (`landing`, `landing_conflict`, `open`,
    /// `offset_commit`, `offset_commit_fenced`).
    pub errors: BTreeMap<&'static str, u64>,
    /// Retries made, by kind (`landing`, `open`, `offset_commit`).
    pub retries: BTreeMap<&'static str, u64>,
    /// Duration histograms.
    pub timings: Timings,
    /// The last [`RECENT_FILES`] files landed, newest last.
    pub recent_files: VecDeque<RecentFile>,
}
