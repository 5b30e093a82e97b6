//! # tributary-core
//!
//! The vocabulary every other Tributary crate speaks: the record and position
//! model ([`TopicPartition`], [`RawRecord`], [`SourceBatch`], [`RowBatch`]), the
//! connector traits ([`Source`], [`Converter`], [`Sink`]) and their errors.
//!
//! This crate does no I/O. Data flows one way:
//!
//! ```text
//! Source::next ──SourceBatch──▶ Converter::convert ──RowBatch──▶ Sink::write
//!                                      │ rejects                      │ Sink::land
//!                                      ▼                              ▼
//!                              dead-letter route               landed range ──▶ Source::commit
//! ```
//!
//! Positions travel with the data: a [`SourceBatch`] names the partition and
//! the offset of every record, the [`RowBatch`] keeps the offset range it
//! covers, and the sink reports back a [`Landed`] range whose `next_offset` is
//! what the source commits. Nothing downstream guesses a position.

#![warn(missing_docs)]

mod dead_letter;
mod error;
mod model;
mod rng;
mod traits;

pub use dead_letter::{
    DeadLetterDelivery, DeadLetterPositions, DeadLetterRequest, DeadLetterRoute,
};
pub use error::{ConvertError, ErrorClass, SinkError, SourceError};
pub use model::{
    Header, Landed, LandedFile, RawRecord, Reject, RowBatch, SourceBatch, TopicPartition,
    METADATA_COLUMNS,
};
pub use rng::SplitMix64;
pub use traits::{AssignAck, Converter, ResumeAt, RevokeAck, Sink, Source, SourceEvent};
