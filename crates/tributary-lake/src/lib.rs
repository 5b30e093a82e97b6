//! # tributary-lake
//!
//! Everything Tributary knows about the storage a sink lands files in:
//!
//! - **Opening storage** from a URL ([`Lake::open`]): `file:///path` (a local
//!   directory with fsync-durable writes), `s3://`, `gs://`, `az://`,
//!   `abfs://`, `abfss://` through object_store, configured by
//!   [`tributary_config::StorageConfig`]. Each idempotent request is retried
//!   on its own with backoff. Any object store can be plugged in for tests
//!   with [`Lake::open_with_store`] (without those retries, unless
//!   [`Lake::with_retries`] adds them).
//! - **Partition paths** ([`PartitionTemplate`]): Hive-style directories such
//!   as `country={country}/dt=%Y-%m-%d/hour=%H` from record times, in a
//!   declared timezone, and field values, escaped ([`escape_value`]); the
//!   late-data policy ([`LateData`]) that picks the time of late records.
//! - **File naming** ([`data_file_path`], [`dead_letter_path`],
//!   [`new_writer_id`]): names that carry topic, partition, first offset and
//!   writer, and never collide.
//! - **The landing protocol** ([`Lake::recover`], [`Lake::land`]): a commit
//!   log per source partition under `_tributary/` that makes every offset
//!   range land exactly once, even with crashed writers and zombies. The
//!   [`landing`] module documents the protocol and its invariant.
//! - **Reading it back** ([`Lake::commits`], [`Lake::partitions`],
//!   [`Lake::intents`]) and **auditing** it against the invariant
//!   ([`Lake::verify`] for one partition, [`Lake::verify_lake`] for every
//!   partition and the files no commit lists, [`Lake::orphans`]).
//!
//! ```
//! # async fn demo() -> Result<(), tributary_lake::LakeError> {
//! use bytes::Bytes;
//! use tributary_core::TopicPartition;
//! use tributary_lake::{data_file_path, new_writer_id, FileKind, Lake, Landing, PendingFile};
//!
//! let store = std::sync::Arc::new(object_store::memory::InMemory::new());
//! let lake = Lake::open_with_store(store, "orders")?;
//! let tp = TopicPartition::new("orders", 0);
//! let writer = new_writer_id("worker-1");
//!
//! let mut log = lake.recover(&tp, &writer).await?;
//! assert_eq!(log.next_offset(), None); // nothing landed yet
//! let landing = Landing {
//!     first_offset: 0,
//!     last_offset: 99,
//!     rows: 100,
//!     dead_lettered: 0,
//!     skipped: 0,
//!     files: vec![PendingFile {
//!         path: data_file_path(Some("dt=2026-11-24"), &tp, 0, &writer),
//!         kind: FileKind::Data,
//!         rows: 100,
//!         bytes: Bytes::from_static(b"PAR1...PAR1"),
//!     }],
//!     dead_letter_topic: None, // rejects in a Kafka topic: where they are
//! };
//! let commit = lake.land(&mut log, &writer, landing).await?;
//! assert_eq!(commit.seq, 0);
//! assert_eq!(log.next_offset(), Some(100));
//! # Ok(())
//! # }
//! # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
//! ```
//!
//! ## Features
//!
//! - `conformance`: the `conformance` module, a suite of protocol tests as
//!   functions over a [`Lake`], so every storage backend can run the same
//!   checks.
//! - `fault-injection` (tests only): the `faults` module — crash points in
//!   the landing path (`TRIBUTARY_FAULT_CRASH`), storage faults applied by
//!   [`Lake::open`] (`TRIBUTARY_FAULT_STORAGE`) and `FaultyStore`, an
//!   object-store wrapper that fails, stalls and loses responses.

#![warn(missing_docs)]

/// Marks a crash point (`faults::CrashPoint::$point`); compiles to nothing
/// without the `fault-injection` feature.
macro_rules! crash_point {
    ($point:ident) => {{
        #[cfg(feature = "fault-injection")]
        $crate::faults::crash_point($crate::faults::CrashPoint::$point);
    }};
}

mod commit;
mod error;
mod image;
mod lake;
pub mod landing;
mod layout;
mod local;
mod partition;
mod retry;
mod source_manifest;
mod storage;
mod verify;

#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "fault-injection")]
pub mod faults;

pub use commit::{CommitRecord, CommittedFile, FileKind, IntentRecord, RECORD_VERSION};
pub use error::LakeError;
pub use image::{Image, PAGE};
pub use lake::Lake;
pub use landing::{Landing, PartitionLog, PendingFile};
pub use layout::{
    commit_dir, commit_path, data_file_path, dead_letter_path, hint_path, intent_dir, intent_path,
    new_writer_id, CONTROL_DIR, DEAD_LETTER_DIR, HINT_FILE,
};
pub use partition::{
    escape_value, LateData, PartitionTemplate, DEFAULT_PARTITION, MAX_SEGMENT_VALUE_BYTES,
};
pub use source_manifest::source_manifest_path;
pub use verify::{LakeReport, OrphanFile, PartitionReport, Problem, ProblemKind, VerifyOptions};
