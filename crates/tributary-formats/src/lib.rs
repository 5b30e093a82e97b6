//! # tributary-formats
//!
//! Turns the raw bytes a source delivers into Arrow rows, and says how rows
//! are written as Parquet.
//!
//! - [`JsonConverter`]: a [`tributary_core::Converter`] for records that hold
//!   one JSON object each, with a schema from a schema file or inferred from
//!   the first batch. Records that cannot be converted are failed, skipped or
//!   dead-lettered by the `on_error` policy, each with a reason that names the
//!   field; Kafka metadata can be appended as `_topic`, `_partition`,
//!   `_offset`, `_timestamp` and `_key` columns; every row gets an event time.
//! - [`load_schema`] / [`parse_schema`]: the schema file format
//!   (`config/schemas/README.md` describes it), with errors that name the file
//!   and the field path: `orders.json: fields[3].type: unknown type "int65"`.
//! - [`writer_properties`]: Parquet writer settings (codec and level, row-group
//!   size, statistics, a format version every reader handles).
//!
//! No I/O happens here except reading a schema file.
//!
//! ```
//! use std::sync::Arc;
//! use arrow::datatypes::{DataType, Field, Schema};
//! use bytes::Bytes;
//! use tributary_config::JsonConverterConfig;
//! use tributary_core::{Converter, RawRecord, SourceBatch, TopicPartition};
//! use tributary_formats::{parse_schema, JsonConverter};
//!
//! let schema = parse_schema(
//!     r#"{"fields": [{"name": "id", "type": "int64", "nullable": false},
//!                    {"name": "at", "type": "timestamp"}]}"#,
//!     "inline",
//! )?;
//! let cfg: JsonConverterConfig = serde_json::from_str(
//!     r#"{"timestamp_field": "at", "on_error": "dead_letter", "metadata": ["offset"]}"#,
//! )?;
//! let mut converter = JsonConverter::with_schema(schema, &cfg)?;
//!
//! let record = |offset: i64, json: &'static str| RawRecord {
//!     offset,
//!     timestamp_ms: None,
//!     key: None,
//!     payload: Some(Bytes::from_static(json.as_bytes())),
//!     headers: Vec::new(),
//! };
//! let batch = SourceBatch {
//!     partition: TopicPartition::new("orders", 0),
//!     records: vec![
//!         record(7, r#"{"id": 1, "at": "2026-11-24T06:30:00Z"}"#),
//!         record(8, r#"{"id": "one"}"#),
//!     ],
//! };
//! let rows = converter.convert(batch)?;
//! assert_eq!(rows.rows.num_rows(), 1);
//! assert_eq!(rows.event_time_ms, [1_795_501_800_000]);
//! assert_eq!(rows.rejects[0].offset, 8);
//! assert!(rows.rejects[0].reason.starts_with(r#"field "id": "#));
//! assert_eq!(rows.rows.schema().field(2).name(), "_offset");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod error;
mod json;
mod schema;
mod writer;

pub use error::FormatError;
pub use json::JsonConverter;
pub use schema::{load_schema, parse_schema};
pub use writer::{writer_properties, CREATED_BY};
