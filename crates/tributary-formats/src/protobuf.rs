//! The Protobuf converter: Confluent-framed messages with schemas from a
//! Schema Registry, or bare messages of one type from a local `.proto`
//! file. See [`ProtobufConverter`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, FieldRef, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use prost_reflect::{DynamicMessage, FileDescriptor};
use tracing::info;
use tributary_config::{MetadataField, OnError, ProtobufConverterConfig};
use tributary_core::{ConvertError, Converter, RawRecord, RowBatch, SourceBatch};

use crate::error::FormatError;
use crate::evolution::TableSchema;
use crate::json::{cap, event_times_from, internal, metadata_column, metadata_field, TOMBSTONE};
use crate::registry::{RegistryError, SchemaRegistry, SchemaType};
use crate::rejects::{route, Routed};
use crate::wire::split_confluent;

mod columns;
mod compile;
mod wire;

pub use wire::encode_message_indexes;

use columns::MessageColumns;

#[cfg(test)]
mod tests;

/// Decodes Protocol Buffers records into Arrow rows.
///
/// # Where schemas come from
///
/// - `schema_registry`: every record is Confluent-framed: magic byte `0`, the
///   schema id (4 bytes, big-endian), the message-index array (a zig-zag
///   varint count and that many zig-zag varint indexes; the single byte `0`
///   stands for `[0]`, the first message of the schema), then the message.
///   Schemas are fetched by id (`GET /schemas/ids/{id}`), their references
///   (imports) by subject and version, compiled once, and cached by id.
///   `google/protobuf/*.proto` imports that the registry does not list are
///   built in.
/// - `schema_file` + `message`: every record is a bare message of that type.
///
/// # Columns
///
/// One column per field, as in the table of the `columns` module (README,
/// "Protobuf"): scalars map to their Arrow types, enums to their value names,
/// messages to structs, repeated fields to lists, maps to maps, and
/// `google.protobuf.Timestamp` to `Timestamp(Microsecond, "UTC")`. Fields that
/// track presence (messages, `optional`, oneof members) are null when unset;
/// proto3 scalars without presence hold their default. Each oneof member is
/// its own nullable column. Unknown fields (written by a newer schema) are
/// ignored, as protobuf readers do.
///
/// # Bad records
///
/// A record that is not framed, names a schema id the registry does not
/// know, or does not decode against its schema is a reject with a reason such
/// as `protobuf decode failed for message shop.Order (schema id 3): field
/// "qty" (number 3) at byte 9: wire type LEN, but the schema declares int64
/// (VARINT)`, handled by `on_error`. A registry that cannot be reached (or
/// refuses the credentials) fails the batch instead: the records are fine.
///
/// # Schema changes
///
/// Batches pass through a [`TableSchema`] (`schema_evolution`): a new schema
/// version that adds fields or widens types grows the table schema; one that
/// is not compatible has its records rejected with the field named.
#[derive(Debug)]
pub struct ProtobufConverter {
    timestamp_field: Option<String>,
    on_error: OnError,
    metadata: Vec<MetadataField>,
    schemas: Schemas,
    /// Message types seen, with their builders.
    targets: Vec<Target>,
    table: TableSchema,
}

/// Where message types come from.
#[derive(Debug)]
enum Schemas {
    /// One message type, `targets[0]`; payloads are bare messages.
    File,
    /// Confluent-framed payloads.
    Registry {
        registry: Box<SchemaRegistry>,
        /// Compiled schemas by id, or why the id cannot be used.
        files: HashMap<u32, Result<FileDescriptor, String>>,
        /// Index in `targets` by schema id and message indexes, or why none.
        by_key: HashMap<(u32, Vec<usize>), Result<usize, String>>,
    },
}

/// One message type and its column builders.
#[derive(Debug)]
struct Target {
    columns: MessageColumns,
    /// `message shop.Order` or `message shop.Order (schema id 3)`.
    label: String,
}

impl ProtobufConverter {
    /// Builds a converter from its configuration. A relative `schema_file`
    /// is resolved against `base_dir`.
    ///
    /// Fails when neither or both of `schema_registry` and `schema_file` are
    /// set, when the `.proto` file does not compile or lacks `message`, when
    /// the message cannot be mapped to columns, when `timestamp_field` is not
    /// a top-level `google.protobuf.Timestamp` of it, or when a metadata
    /// column clashes with a field.
    pub fn new(cfg: &ProtobufConverterConfig, base_dir: &Path) -> Result<Self, FormatError> {
        let mut converter = Self {
            timestamp_field: cfg.timestamp_field.clone(),
            on_error: cfg.on_error,
            metadata: cfg.metadata.clone(),
            schemas: Schemas::File,
            targets: Vec::new(),
            table: TableSchema::new(cfg.schema_evolution),
        };
        for (k, m) in cfg.metadata.iter().enumerate() {
            if cfg.metadata[..k].contains(m) {
                return Err(FormatError::Converter {
                    key: "metadata",
                    message: format!("{} is listed twice", metadata_field(*m).name()),
                });
            }
        }
        match (&cfg.schema_registry, &cfg.schema_file) {
            (Some(_), Some(_)) => Err(FormatError::Converter {
                key: "schema_file",
                message: "set either `schema_registry` or `schema_file`, not both".into(),
            }),
            (None, None) => Err(FormatError::Converter {
                key: "schema_registry",
                message: "a `schema_registry` table or a `schema_file` with a `message` is \
                          required"
                    .into(),
            }),
            (Some(r), None) => {
                if cfg.message.is_some() {
                    return Err(FormatError::Converter {
                        key: "message",
                        message: "only with `schema_file`: with `schema_registry` each record \
                                  names its message type"
                            .into(),
                    });
                }
                let registry = SchemaRegistry::new(r).map_err(|e| FormatError::Converter {
                    key: "schema_registry",
                    message: e.to_string(),
                })?;
                converter.schemas = Schemas::Registry {
                    registry: Box::new(registry),
                    files: HashMap::new(),
                    by_key: HashMap::new(),
                };
                Ok(converter)
            }
            (None, Some(file)) => {
                let path = base_dir.join(file);
                let Some(name) = cfg.message.as_deref() else {
                    return Err(FormatError::Converter {
                        key: "message",
                        message: "required with `schema_file`: the full name of the message \
                                  type, e.g. \"shop.v1.Order\""
                            .into(),
                    });
                };
                let fd = compile::compile_file(&path).map_err(|e| FormatError::Converter {
                    key: "schema_file",
                    message: format!("{}: {e}", path.display()),
                })?;
                let descriptor = compile::message_by_name(&fd, name).map_err(|message| {
                    FormatError::Converter {
                        key: "message",
                        message,
                    }
                })?;
                let columns =
                    MessageColumns::new(&descriptor).map_err(|e| FormatError::Converter {
                        key: "message",
                        message: e.0,
                    })?;
                converter
                    .check_timestamp_field(columns.schema(), descriptor.full_name())
                    .map_err(|message| FormatError::Converter {
                        key: "timestamp_field",
                        message,
                    })?;
                if let Some(field) = &converter.timestamp_field {
                    if columns.schema().column_with_name(field).is_none() {
                        return Err(FormatError::Converter {
                            key: "timestamp_field",
                            message: format!(
                                "field {field:?} is not a top-level field of message {}",
                                descriptor.full_name()
                            ),
                        });
                    }
                }
                converter.check_metadata(columns.schema())?;
                converter.table =
                    TableSchema::with_schema(columns.schema().clone(), converter.table.policy());
                converter.targets.push(Target {
                    label: format!("message {}", descriptor.full_name()),
                    columns,
                });
                Ok(converter)
            }
        }
    }

    /// `Err` when `timestamp_field` is a top-level column of `schema` that is
    /// not a timestamp.
    fn check_timestamp_field(&self, schema: &Schema, message: &str) -> Result<(), String> {
        let Some(name) = &self.timestamp_field else {
            return Ok(());
        };
        match schema.column_with_name(name) {
            Some((_, f)) if !matches!(f.data_type(), DataType::Timestamp(_, _)) => Err(format!(
                "field {name:?} of message {message} has type {}; it must be a \
                 google.protobuf.Timestamp",
                f.data_type()
            )),
            _ => Ok(()),
        }
    }

    fn check_metadata(&self, schema: &Schema) -> Result<(), FormatError> {
        for m in &self.metadata {
            let field = metadata_field(*m);
            if schema.column_with_name(field.name()).is_some() {
                return Err(FormatError::Converter {
                    key: "metadata",
                    message: format!(
                        "column {:?} clashes with a message field of the same name",
                        field.name()
                    ),
                });
            }
        }
        Ok(())
    }

    /// The target of a payload and the encoded message in it. The outer
    /// `Err` fails the batch (registry unreachable); the inner one rejects
    /// the record.
    fn locate<'p>(
        &mut self,
        payload: &'p [u8],
    ) -> Result<Result<(usize, &'p [u8]), String>, ConvertError> {
        let Schemas::Registry {
            registry,
            files,
            by_key,
        } = &mut self.schemas
        else {
            return Ok(Ok((0, payload)));
        };
        let (id, body) = match split_confluent(payload) {
            Ok(split) => split,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let (indexes, message) = match wire::message_indexes(body) {
            Ok(x) => x,
            Err(e) => return Ok(Err(format!("schema id {id}: {e}"))),
        };
        let key = (id, indexes);
        if let Some(known) = by_key.get(&key) {
            return Ok(known.clone().map(|t| (t, message)));
        }
        if let std::collections::hash_map::Entry::Vacant(entry) = files.entry(id) {
            entry.insert(fetch_and_compile(registry, id)?);
        }
        let file = files
            .get(&id)
            .cloned()
            .unwrap_or_else(|| Err("not compiled".into()));
        let target = file
            .and_then(|fd| {
                compile::message_at(&fd, &key.1)
                    .and_then(|d| MessageColumns::new(&d).map_err(|e| e.0))
                    .and_then(|columns| {
                        let name = columns.descriptor().full_name().to_string();
                        self.check_timestamp_field(columns.schema(), &name)?;
                        self.check_metadata(columns.schema())
                            .map_err(|e| e.to_string())?;
                        Ok((name, columns))
                    })
                    .map_err(|e| format!("schema id {id}: {e}"))
            })
            .map(|(name, columns)| {
                info!(
                    schema_id = id,
                    message = %name,
                    indexes = ?key.1,
                    columns = columns.schema().fields().len(),
                    "Compiled a protobuf message type."
                );
                self.targets.push(Target {
                    columns,
                    label: format!("message {name} (schema id {id})"),
                });
                self.targets.len() - 1
            });
        if let Schemas::Registry { by_key, .. } = &mut self.schemas {
            by_key.insert(key, target.clone());
        }
        Ok(target.map(|t| (t, message)))
    }

    /// Finishes the rows of `target` and admits them to the table schema;
    /// when the table does not admit them, their records become rejects.
    fn flush(
        &mut self,
        target: usize,
        rows: Vec<usize>,
        segments: &mut Vec<(RecordBatch, Vec<usize>)>,
        rejects: &mut Vec<(usize, String)>,
    ) -> Result<(), ConvertError> {
        let t = &mut self.targets[target];
        let batch = t
            .columns
            .finish()
            .map_err(|e| internal(format!("{}: cannot build the rows: {e}", t.label)))?;
        if rows.is_empty() {
            return Ok(());
        }
        match self.table.admit(batch) {
            Ok(batch) => segments.push((batch, rows)),
            Err(change) => {
                let reason = cap(format!(
                    "{}: the table schema does not admit this message type: {change}",
                    t.label
                ));
                rejects.extend(rows.into_iter().map(|i| (i, reason.clone())));
            }
        }
        Ok(())
    }

    /// Output schema for a table schema: its fields plus the metadata columns.
    fn output_schema(&self, table: &SchemaRef) -> SchemaRef {
        let mut fields: Vec<FieldRef> = table.fields().iter().cloned().collect();
        fields.extend(self.metadata.iter().map(|m| Arc::new(metadata_field(*m))));
        Arc::new(Schema::new_with_metadata(fields, table.metadata().clone()))
    }

    fn event_times(
        &self,
        payload: &RecordBatch,
        records: &[RawRecord],
        rows: &[usize],
    ) -> Result<Vec<i64>, ConvertError> {
        event_times_from(
            payload,
            self.timestamp_field.as_deref(),
            "a google.protobuf.Timestamp field",
            records,
            rows,
        )
    }
}

/// Fetches schema `id` and everything it imports, and compiles it. The outer
/// `Err` is a registry that cannot be used (unreachable, credentials); the
/// inner one a schema that does not exist or does not compile.
fn fetch_and_compile(
    registry: &SchemaRegistry,
    id: u32,
) -> Result<Result<FileDescriptor, String>, ConvertError> {
    let usable = |e: RegistryError| -> Result<String, ConvertError> {
        match e {
            RegistryError::Status { status: 404, .. }
            | RegistryError::Body { .. }
            | RegistryError::References { .. } => Ok(e.to_string()),
            other => Err(internal(other.to_string())),
        }
    };
    let schema = match registry.schema_by_id(id) {
        Ok(s) => s,
        Err(e) => return usable(e).map(Err),
    };
    if schema.schema_type != SchemaType::Protobuf {
        return Ok(Err(format!(
            "schema id {id} is a {} schema, not PROTOBUF",
            schema.schema_type
        )));
    }
    let references = match registry.references_of(&schema) {
        Ok(r) => r,
        Err(e) => return usable(e).map(Err),
    };
    let main = format!("schema-id-{id}.proto");
    let mut sources: HashMap<String, String> = references
        .into_iter()
        .map(|(r, s)| (r.name, s.schema.clone()))
        .collect();
    sources.insert(main.clone(), schema.schema.clone());
    Ok(compile::compile_sources(&main, sources)
        .map_err(|e| format!("schema id {id} does not compile: {e}")))
}

/// Why a message did not decode: where the wire format goes wrong, else
/// what the decoder said.
fn decode_reason(
    label: &str,
    target: &MessageColumns,
    body: &[u8],
    error: &dyn std::fmt::Display,
) -> String {
    let detail = wire::diagnose(target.descriptor(), body).unwrap_or_else(|| {
        let text = error.to_string();
        text.strip_prefix("failed to decode Protobuf message: ")
            .map_or(text.clone(), str::to_string)
    });
    cap(format!("protobuf decode failed for {label}: {detail}"))
}

impl Converter for ProtobufConverter {
    fn schema(&self) -> Option<SchemaRef> {
        self.table.schema().map(|s| self.output_schema(s))
    }

    fn convert(&mut self, batch: SourceBatch) -> Result<RowBatch, ConvertError> {
        let SourceBatch { partition, records } = batch;
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Err(internal(format!(
                "{partition}: empty source batch (it covers no offset)"
            )));
        };
        let (first_offset, last_offset) = (first.offset, last.offset);

        let mut failed: Vec<(usize, String)> = Vec::new();
        let mut segments: Vec<(RecordBatch, Vec<usize>)> = Vec::new();
        let mut current: Option<(usize, Vec<usize>)> = None;
        for (i, record) in records.iter().enumerate() {
            let Some(payload) = record.payload.as_deref() else {
                failed.push((i, TOMBSTONE.to_string()));
                continue;
            };
            let (t, body) = match self.locate(payload)? {
                Ok(x) => x,
                Err(reason) => {
                    failed.push((i, cap(reason)));
                    continue;
                }
            };
            if current.as_ref().is_some_and(|(c, _)| *c != t) {
                if let Some((c, rows)) = current.take() {
                    self.flush(c, rows, &mut segments, &mut failed)?;
                }
            }
            let rows = &mut current.get_or_insert_with(|| (t, Vec::new())).1;
            let target = &mut self.targets[t];
            let message = match DynamicMessage::decode(target.columns.descriptor().clone(), body) {
                Ok(m) => m,
                Err(e) => {
                    failed.push((i, decode_reason(&target.label, &target.columns, body, &e)));
                    continue;
                }
            };
            if let Err(e) = target.columns.check(&message) {
                failed.push((i, cap(format!("{}: {e}", target.label))));
                continue;
            }
            target
                .columns
                .append(&message)
                .map_err(|e| internal(format!("{}: {e}", target.label)))?;
            rows.push(i);
        }
        if let Some((c, rows)) = current.take() {
            self.flush(c, rows, &mut segments, &mut failed)?;
        }
        failed.sort_by_key(|(i, _)| *i);

        let Routed { rejects, skipped } = route(self.on_error, &partition, &records, failed)?;

        let Some(table) = self.table.schema().cloned() else {
            return Ok(RowBatch {
                partition,
                first_offset,
                last_offset,
                source_records: records.len(),
                rows: RecordBatch::new_empty(Arc::new(Schema::empty())),
                event_time_ms: Vec::new(),
                rejects,
                skipped,
            });
        };
        // The table may have grown after earlier segments were admitted.
        let mut batches = Vec::with_capacity(segments.len());
        let mut rows = Vec::new();
        for (batch, segment_rows) in segments {
            let batch = if batch.schema() == table {
                batch
            } else {
                self.table.admit(batch).map_err(|e| {
                    internal(format!(
                        "rows admitted earlier no longer fit the table: {e}"
                    ))
                })?
            };
            batches.push(batch);
            rows.extend(segment_rows);
        }
        let payload = match batches.len() {
            0 => RecordBatch::new_empty(table.clone()),
            1 => batches
                .pop()
                .unwrap_or_else(|| RecordBatch::new_empty(table.clone())),
            _ => concat_batches(&table, &batches)
                .map_err(|e| internal(format!("cannot join decoded rows: {e}")))?,
        };
        let event_time_ms = self.event_times(&payload, &records, &rows)?;
        let output = self.output_schema(&table);
        let mut columns = payload.columns().to_vec();
        columns.extend(
            self.metadata
                .iter()
                .map(|m| metadata_column(*m, &partition, &records, &rows)),
        );
        let rows_batch = RecordBatch::try_new(output, columns)
            .map_err(|e| internal(format!("cannot add metadata columns: {e}")))?;
        Ok(RowBatch {
            partition,
            first_offset,
            last_offset,
            source_records: records.len(),
            rows: rows_batch,
            event_time_ms,
            rejects,
            skipped,
        })
    }
}
