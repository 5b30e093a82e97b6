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
//! - [`ProtobufConverter`]: Protocol Buffers, Confluent-framed with schemas
//!   from a Schema Registry (compiled from `.proto` text at run time) or bare
//!   messages of one type from a local `.proto` file, decoded straight into
//!   Arrow columns (structs, lists, maps, timestamps), with rejects that name
//!   the field and the byte offset.
//! - [`AvroConverter`]: Confluent-framed Avro, each record decoded with its
//!   own writer schema from a Schema Registry (records, nullable unions,
//!   enums, arrays, maps, logical types), with rejects that name the field
//!   and the byte offset; schema changes go through [`evolution`].
//! - [`evolution`]: the merged table schema every converter passes its
//!   batches through (`schema_evolution`): new fields become nullable
//!   columns, types widen, old-shape batches are cast up, anything else is a
//!   [`evolution::SchemaChange`] naming the field. The JSON converter also
//!   grows its inferred schema when records carry new fields or fractions in
//!   integer columns.
//! - [`registry`]: the Schema Registry client (schemas cached by id, basic
//!   auth, private CA, documented error bodies); [`wire`]: the Confluent
//!   framing (magic byte, schema id).
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

mod avro;
mod error;
pub mod evolution;
mod json;
mod protobuf;
pub mod registry;
mod rejects;
mod schema;
mod size_guard;
pub mod wire;
mod writer;

pub use avro::AvroConverter;
pub use error::FormatError;
pub use json::JsonConverter;
pub use protobuf::{encode_message_indexes, ProtobufConverter};
pub use schema::{load_schema, parse_schema};
pub use size_guard::{oversize_reason, SizeGuard};
pub use writer::{writer_properties, CREATED_BY};
