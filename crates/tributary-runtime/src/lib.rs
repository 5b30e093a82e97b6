//! # tributary-runtime
//!
//! Runs pipelines: one task per pipeline drives its [`Source`], [`Converter`]
//! and [`Sink`] and owns the one rule that makes landing exactly-once from the
//! runtime's side: **a source offset is committed only after the sink reports
//! the range landed**, and never for a partition the worker no longer owns.
//!
//! The loop, per pipeline:
//!
//! * `Records` → convert → sink buffers (per source partition);
//! * a partition whose buffer reaches `max_records`, `max_bytes` or `max_age`
//!   (idle partitions too, through a timer) is landed, then its offset committed;
//! * `Assigned` → the sink recovers the partitions from the lake (transient
//!   storage failures are retried with backoff for up to a minute) and the
//!   source resumes each at its last landed offset + 1;
//! * `Revoked` → buffered rows of those partitions are landed and committed
//!   before the acknowledgement; `Lost` → they are dropped unlanded;
//! * a failed or lost landing drops the buffer and re-reads the partition from
//!   the sink's resume point (with backoff for transient storage errors);
//! * a fenced offset commit (stale generation) makes the worker stop writing
//!   the partition until it is assigned again;
//! * shutdown stops polling, lands what is buffered, commits, and closes the
//!   source within the shutdown timeout;
//! * a [`PipelineControl`] pauses and resumes consumption (the partitions
//!   stay assigned); once a second the pipeline samples the source's high
//!   watermarks and judges each partition's lag ([`LagPolicy`], [`LagStatus`]).
//!
//! ## Features
//!
//! - `fault-injection` (tests only): crash points around the source offset
//!   commit (`before_offset_commit`, `after_offset_commit`), armed by
//!   `TRIBUTARY_FAULT_CRASH`; see `tributary_lake::faults`.
//!
//! [`Source`]: tributary_core::Source
//! [`Converter`]: tributary_core::Converter
//! [`Sink`]: tributary_core::Sink

#![warn(missing_docs)]

mod control;
mod health;
pub mod memory;
mod pipeline;
mod status;

pub use control::{ControlError, PipelineControl};
pub use health::LagPolicy;
pub use memory::MemoryBudget;
pub use pipeline::{Pipeline, RuntimeError, Shutdown};
pub use status::{
    Histogram, LagStatus, PartitionStatus, PipelineState, PipelineStatus, RecentFile, Timings,
    Totals, DURATION_BUCKETS, RECENT_FILES,
};
