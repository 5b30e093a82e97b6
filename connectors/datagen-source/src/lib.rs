//! # tributary-datagen-source
//!
//! Synthetic, deterministic JSON records for demos, tests and benchmarks, in
//! two forms:
//!
//! * **Payload generators** — [`order_json`] appends one order (about 200–280
//!   bytes) matching `config/schemas/orders.json`; [`small_json`] appends an
//!   ~80-byte record for tests that must stay small (the mock Kafka broker
//!   keeps at most 5 MiB per partition). They are pure functions of
//!   `(seq, seed)`: anyone can regenerate a record from its sequence number,
//!   and the id of record `seq` is `seq` ([`order_id`]).
//! * **A [`Source`](tributary_core::Source)** — [`DatagenSource`] serves those
//!   orders from `partitions` partitions of a named topic, with offsets,
//!   resume positions, seeks, an optional rate limit and an optional total.
//!   Record `offset` of partition `p` is order [`seq_of`]`(offset, partitions, p)`
//!   `= offset * partitions + p`, so a restarted pipeline regenerates exactly
//!   the records it had not landed.
//!
//! ```
//! use tributary_datagen_source::{order_json, small_json};
//!
//! let mut buf = Vec::new();
//! order_json(7, 42, &mut buf);
//! assert!(buf.starts_with(br#"{"order_id":7,"#));
//!
//! buf.clear();
//! small_json(7, &mut buf);
//! assert!(buf.starts_with(br#"{"id":7,"user":"u"#));
//! ```
//!
//! No randomness crate is involved: a splitmix64 generator seeded from
//! `(seq, seed)` picks every field.

#![warn(missing_docs)]

mod payload;
mod source;

pub use payload::{
    order_event_time_ms, order_id, order_json, small_event_time_ms, small_json, BASE_TIME_MS,
    EVENT_TIME_JITTER_MS,
};
pub use source::{partition_share, seq_of, DatagenSource};
