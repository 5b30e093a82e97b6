//! The Avro converter: Confluent-framed Avro records (magic byte, schema id,
//! Avro binary body) with writer schemas from a Schema Registry. See
//! [`AvroConverter`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::compute::concat_batches;
use arrow::datatypes::{FieldRef, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow_avro::codec::Tz;
use arrow_avro::reader::{Decoder, ReaderBuilder};
use arrow_avro::schema::{AvroSchema, Fingerprint, FingerprintAlgorithm, SchemaStore};
use serde_json::Value;
use tracing::{debug, info};
use tributary_config::{AvroConverterConfig, MetadataField, OnError};
use tributary_core::{ConvertError, Converter, RawRecord, RowBatch, SourceBatch, TopicPartition};

use crate::error::FormatError;
use crate::evolution::TableSchema;
use crate::json::{cap, event_times_from, internal, metadata_column, metadata_field, TOMBSTONE};
use crate::registry::{RegisteredSchema, RegistryError, SchemaRegistry, SchemaType};
use crate::rejects::route;
use crate::wire::split_confluent;

mod shape;
#[cfg(test)]
mod tests;

use shape::{inline_references, Shape};

/// Rows a decoder takes before it is flushed.
const DECODER_ROWS: usize = 8192;

/// Decodes Confluent-framed Avro records into Arrow rows, each with its own
/// writer schema fetched (once per id) from the Schema Registry.
///
/// # Types
///
/// | Avro | Arrow |
/// |---|---|
/// | `null`, `boolean`, `int`, `long`, `float`, `double` | `Null`, `Boolean`, `Int32`, `Int64`, `Float32`, `Float64` |
/// | `bytes`, `string`, `fixed` | `Binary`, `Utf8`, `FixedSizeBinary` |
/// | `record` (nested too) | `Struct` |
/// | `["null", T]`, `[T, "null"]` | `T`, nullable |
/// | `enum` | `Dictionary(Int32, Utf8)` |
/// | `array`, `map` | `List`, `Map(Utf8 → value)` |
/// | `date` | `Date32` |
/// | `time-millis`, `time-micros` | `Time32(ms)`, `Time64(µs)` |
/// | `timestamp-millis`, `timestamp-micros` | `Timestamp(ms, "UTC")`, `Timestamp(µs, "UTC")` |
/// | `local-timestamp-millis`, `local-timestamp-micros` | `Timestamp(ms)`, `Timestamp(µs)` (no zone) |
/// | `decimal` (`bytes` or `fixed`) | `Decimal128(p, s)` (`Decimal256` past 38 digits) |
/// | `uuid` | `FixedSizeBinary(16)` |
///
/// Decoding is done by `arrow-avro`. Other unions (`["int", "string"]`)
/// become Arrow `Union` columns, which Parquet cannot store: such schemas
/// fail at the sink.
///
/// # Bad records
///
/// Each body is first walked against its writer schema, so a record that
/// is not Confluent-framed (no magic byte, shorter than the 5-byte header),
/// names a schema id the registry does not have (`schema id 9999 not found
/// in the schema registry (40403: Schema 9999 not found)`), names a schema
/// that is not Avro, or whose body is truncated, too long or invalid
/// (`truncated Avro body: field "amount": double needs 8 byte(s), 3 left of
/// 20 at body byte 17`) is rejected with that reason and handled by
/// `on_error`. A registry that cannot be reached (or answers 5xx) is an
/// error of the batch, not of its records: the pipeline stops without
/// committing, and nothing is dropped.
///
/// # Schema changes
///
/// Records may change writer schema at any point. Each run of records with
/// one schema id is decoded with that schema, then passed through the
/// converter's [`TableSchema`] (`schema_evolution`): a new nullable field or
/// a widened type grows the merged table schema, and every returned batch
/// has the merged schema. A run whose schema cannot be merged is rejected
/// with the incompatible field as the reason.
///
/// # Event time
///
/// As for the JSON converter: `timestamp_field` (an Avro `timestamp-*`
/// field at the top level) when set and not null, else the record's source
/// timestamp, else the time of the conversion.
pub struct AvroConverter {
    registry: Arc<SchemaRegistry>,
    timestamp_field: Option<String>,
    on_error: OnError,
    metadata: Vec<MetadataField>,
    /// Writer schemas by id; `Err` holds why an id cannot be used (not
    /// Avro, invalid), which never changes for a registered id.
    writers: HashMap<u32, Result<Writer, String>>,
    table: TableSchema,
}

impl std::fmt::Debug for AvroConverter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvroConverter")
            .field("registry", &self.registry)
            .field("writer_schemas", &self.writers.len())
            .field("table", &self.table.schema())
            .finish_non_exhaustive()
    }
}

/// One writer schema, ready to decode.
struct Writer {
    shape: Shape,
    store: SchemaStore,
    id: u32,
    /// A clean decoder kept between batches.
    spare: Option<Decoder>,
}

impl Writer {
    fn new(schema: &RegisteredSchema, references: &[(String, String)]) -> Result<Self, String> {
        let id = schema.id;
        if schema.schema_type != SchemaType::Avro {
            return Err(format!(
                "schema id {id} is a {} schema, not Avro",
                schema.schema_type
            ));
        }
        let parse = |text: &str, what: &str| {
            serde_json::from_str::<Value>(text)
                .map_err(|e| format!("schema id {id}: {what} is not valid JSON: {e}"))
        };
        let root = parse(&schema.schema, "the schema")?;
        let mut refs = Vec::with_capacity(references.len());
        for (name, text) in references {
            refs.push((name.clone(), parse(text, &format!("reference {name:?}"))?));
        }
        let full = if refs.is_empty() {
            root
        } else {
            inline_references(&root, &refs)
        };
        let shape = Shape::parse(&full, &[])
            .map_err(|e| format!("schema id {id}: invalid Avro schema: {e}"))?;
        let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
        store
            .set(Fingerprint::Id(id), AvroSchema::new(full.to_string()))
            .map_err(|e| format!("schema id {id}: {e}"))?;
        let mut writer = Self {
            shape,
            store,
            id,
            spare: None,
        };
        // Build one decoder now, so a schema arrow-avro cannot decode is
        // known before any record is.
        let decoder = writer.build()?;
        writer.spare = Some(decoder);
        Ok(writer)
    }

    fn build(&self) -> Result<Decoder, String> {
        ReaderBuilder::new()
            .with_writer_schema_store(self.store.clone())
            .with_active_fingerprint(Fingerprint::Id(self.id))
            .with_batch_size(DECODER_ROWS)
            .with_tz(Tz::Utc)
            .build_decoder()
            .map_err(|e| {
                format!(
                    "schema id {}: cannot decode this schema into Arrow: {e}",
                    self.id
                )
            })
    }

    fn decoder(&mut self) -> Result<Decoder, ConvertError> {
        match self.spare.take() {
            Some(d) => Ok(d),
            None => self.build().map_err(internal),
        }
    }
}

/// Decoded rows: batches whose rows, in order, are the records at `rows`.
#[derive(Default)]
struct Part {
    batch: Option<RecordBatch>,
    rows: Vec<usize>,
    id: u32,
}

impl AvroConverter {
    /// Builds a converter from its configuration; a relative
    /// `schema_registry.ca_file` is resolved against `base_dir` (as the JSON
    /// converter's schema file is). Makes no request: schemas are fetched
    /// when records name them.
    pub fn new(cfg: &AvroConverterConfig, base_dir: &Path) -> Result<Self, FormatError> {
        let mut registry_cfg = cfg.schema_registry.clone();
        if let Some(ca) = &mut registry_cfg.ca_file {
            if ca.is_relative() {
                *ca = base_dir.join(&*ca);
            }
        }
        let registry = SchemaRegistry::new(&registry_cfg).map_err(|e| FormatError::Converter {
            key: "schema_registry",
            message: match e {
                RegistryError::Config { key, message } => format!("{key}: {message}"),
                other => other.to_string(),
            },
        })?;
        Self::with_registry(Arc::new(registry), cfg)
    }

    /// Builds a converter around an existing registry client (shared, with
    /// its cache, by several converters); `cfg.schema_registry` is ignored.
    pub fn with_registry(
        registry: Arc<SchemaRegistry>,
        cfg: &AvroConverterConfig,
    ) -> Result<Self, FormatError> {
        for (k, m) in cfg.metadata.iter().enumerate() {
            if cfg.metadata[..k].contains(m) {
                return Err(FormatError::Converter {
                    key: "metadata",
                    message: format!("{} is listed twice", metadata_field(*m).name()),
                });
            }
        }
        if cfg
            .timestamp_field
            .as_deref()
            .is_some_and(|f| f.trim().is_empty())
        {
            return Err(FormatError::Converter {
                key: "timestamp_field",
                message: "must not be empty".into(),
            });
        }
        Ok(Self {
            registry,
            timestamp_field: cfg.timestamp_field.clone(),
            on_error: cfg.on_error,
            metadata: cfg.metadata.clone(),
            writers: HashMap::new(),
            table: TableSchema::new(cfg.schema_evolution),
        })
    }

    /// The writer for `id`, fetched on first use. `Ok(Err(reason))` when the
    /// id cannot be used for this record (unknown, not Avro, invalid);
    /// `Err` when the registry cannot be asked.
    fn writer(&mut self, id: u32) -> Result<Result<&mut Writer, String>, ConvertError> {
        if !self.writers.contains_key(&id) {
            match self.fetch(id) {
                Ok(w) => {
                    self.writers.insert(id, w);
                }
                Err(e) if e.is_not_found() => return Ok(Err(e.to_string())),
                Err(e) => return Err(internal(format!("cannot fetch Avro writer schema: {e}"))),
            }
        }
        Ok(self
            .writers
            .get_mut(&id)
            .expect("inserted above")
            .as_mut()
            .map_err(|reason| reason.clone()))
    }

    /// `Ok(Err(reason))` for a schema that exists but cannot be used.
    fn fetch(&self, id: u32) -> Result<Result<Writer, String>, RegistryError> {
        let schema = self.registry.schema_by_id(id)?;
        let references = match self.registry.references_of(&schema) {
            Ok(r) => r,
            Err(e) if e.is_not_found() => {
                return Ok(Err(format!(
                    "schema id {id}: a reference cannot be resolved: {e}"
                )))
            }
            Err(e @ RegistryError::References { .. }) => return Ok(Err(e.to_string())),
            Err(e) => return Err(e),
        };
        let references: Vec<(String, String)> = references
            .iter()
            .map(|(r, s)| (r.name.clone(), s.schema.clone()))
            .collect();
        let writer = Writer::new(&schema, &references);
        match &writer {
            Ok(_) => info!(id, url = %self.registry.url(), "Fetched an Avro writer schema."),
            Err(reason) => debug!(id, reason = %reason, "Unusable writer schema."),
        }
        Ok(writer)
    }

    /// Decodes the records at `idx` (all framed, valid for writer `id`).
    fn decode_run(
        &mut self,
        id: u32,
        records: &[RawRecord],
        idx: &[usize],
        parts: &mut Vec<Part>,
        failed: &mut Vec<(usize, String)>,
    ) -> Result<(), ConvertError> {
        let writer = match self.writers.get_mut(&id) {
            Some(Ok(w)) => w,
            _ => return Err(internal(format!("schema id {id}: writer missing"))),
        };
        let mut decoder = writer.decoder()?;
        let mut pending: Vec<usize> = Vec::new();
        for &i in idx {
            let frame = payload(&records[i]);
            let before = decoder.capacity();
            let result = decoder.decode(frame);
            if matches!(result, Ok(n) if n == frame.len()) && decoder.capacity() + 1 == before {
                pending.push(i);
                if decoder.batch_is_full() {
                    flush(&mut decoder, id, &mut pending, parts)?;
                }
                continue;
            }
            // The walk found the body whole, the decoder did not (a value
            // arrow-avro refuses). Its state is unknown: start a new one and
            // decode the good records since the last flush again.
            failed.push((
                i,
                cap(match result {
                    Err(e) => format!("Avro body of schema id {id} cannot be decoded: {e}"),
                    Ok(n) => format!(
                        "Avro body of schema id {id} cannot be decoded: the decoder took {n} of {} bytes",
                        frame.len()
                    ),
                }),
            ));
            decoder = writer.build().map_err(internal)?;
            for &j in &pending {
                let frame = payload(&records[j]);
                match decoder.decode(frame) {
                    Ok(n) if n == frame.len() => {}
                    other => {
                        return Err(internal(format!(
                            "offset {}: Avro record of schema id {id} decoded alone but not after others ({other:?})",
                            records[j].offset
                        )))
                    }
                }
            }
            flush(&mut decoder, id, &mut pending, parts)?;
        }
        flush(&mut decoder, id, &mut pending, parts)?;
        writer.spare = Some(decoder);
        Ok(())
    }

    fn output_schema(&self, payload: &SchemaRef) -> SchemaRef {
        if self.metadata.is_empty() {
            return payload.clone();
        }
        let mut fields: Vec<FieldRef> = payload.fields().iter().cloned().collect();
        fields.extend(self.metadata.iter().map(|m| Arc::new(metadata_field(*m))));
        Arc::new(Schema::new_with_metadata(
            fields,
            payload.metadata().clone(),
        ))
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
            "an Avro timestamp-millis or timestamp-micros field",
            records,
            rows,
        )
    }
}

fn flush(
    decoder: &mut Decoder,
    id: u32,
    pending: &mut Vec<usize>,
    parts: &mut Vec<Part>,
) -> Result<(), ConvertError> {
    if pending.is_empty() {
        return Ok(());
    }
    let batch = decoder
        .flush()
        .map_err(|e| internal(format!("schema id {id}: cannot build Arrow rows: {e}")))?;
    let rows = batch.as_ref().map_or(0, RecordBatch::num_rows);
    if rows != pending.len() {
        return Err(internal(format!(
            "schema id {id}: decoded {rows} rows from {} records",
            pending.len()
        )));
    }
    parts.push(Part {
        batch,
        rows: std::mem::take(pending),
        id,
    });
    Ok(())
}

impl Converter for AvroConverter {
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

        // Frame and body checks, in record order; good records grouped into
        // runs of one schema id.
        let mut failed: Vec<(usize, String)> = Vec::new();
        let mut runs: Vec<(u32, Vec<usize>)> = Vec::new();
        for (i, record) in records.iter().enumerate() {
            let Some(payload) = &record.payload else {
                failed.push((i, TOMBSTONE.to_string()));
                continue;
            };
            let (id, body) = match split_confluent(payload) {
                Ok(v) => v,
                Err(e) => {
                    failed.push((i, e.to_string()));
                    continue;
                }
            };
            let writer = match self.writer(id)? {
                Ok(w) => w,
                Err(reason) => {
                    failed.push((i, reason));
                    continue;
                }
            };
            if let Err(e) = writer.shape.check(body) {
                failed.push((i, cap(format!("{e} (schema id {id})"))));
                continue;
            }
            match runs.last_mut() {
                Some((run_id, idx)) if *run_id == id => idx.push(i),
                _ => runs.push((id, vec![i])),
            }
        }

        let mut parts = Vec::new();
        for (id, idx) in &runs {
            self.decode_run(*id, &records, idx, &mut parts, &mut failed)?;
        }

        // Schema evolution: every part to the merged table schema.
        let mut admitted: Vec<(RecordBatch, Vec<usize>)> = Vec::with_capacity(parts.len());
        for part in parts {
            let Some(batch) = part.batch else { continue };
            match self.table.admit(batch) {
                Ok(b) => admitted.push((b, part.rows)),
                Err(change) => {
                    let reason = cap(format!(
                        "schema id {} does not fit the table schema: {change}",
                        part.id
                    ));
                    failed.extend(part.rows.into_iter().map(|i| (i, reason.clone())));
                }
            }
        }
        failed.sort_by_key(|(i, _)| *i);
        let routed = route(self.on_error, &partition, &records, failed)?;

        let (rows, event_time_ms) = match self.table.schema().cloned() {
            None => (
                RecordBatch::new_empty(Arc::new(Schema::empty())),
                Vec::new(),
            ),
            Some(table) => {
                let mut batches = Vec::with_capacity(admitted.len());
                let mut row_index = Vec::new();
                for (b, idx) in admitted {
                    let b = if b.schema() == table {
                        b
                    } else {
                        // Admitted before the table grew: cast up again.
                        self.table.admit(b).map_err(|c| {
                            internal(format!("rows admitted earlier no longer fit: {c}"))
                        })?
                    };
                    batches.push(b);
                    row_index.extend(idx);
                }
                let payload = concat_batches(&table, &batches)
                    .map_err(|e| internal(format!("cannot join decoded rows: {e}")))?;
                let times = self.event_times(&payload, &records, &row_index)?;
                let rows = self.with_metadata(&partition, &records, &row_index, payload)?;
                (rows, times)
            }
        };
        Ok(RowBatch {
            partition,
            first_offset,
            last_offset,
            source_records: records.len(),
            rows,
            event_time_ms,
            rejects: routed.rejects,
            skipped: routed.skipped,
        })
    }
}

impl AvroConverter {
    fn with_metadata(
        &self,
        partition: &TopicPartition,
        records: &[RawRecord],
        rows: &[usize],
        payload: RecordBatch,
    ) -> Result<RecordBatch, ConvertError> {
        if self.metadata.is_empty() {
            return Ok(payload);
        }
        for m in &self.metadata {
            let name = metadata_field(*m).name().clone();
            if payload.schema().column_with_name(&name).is_some() {
                return Err(internal(format!(
                    "converter.metadata: column {name:?} clashes with a field of the Avro schema"
                )));
            }
        }
        let mut columns: Vec<ArrayRef> = payload.columns().to_vec();
        columns.extend(
            self.metadata
                .iter()
                .map(|m| metadata_column(*m, partition, records, rows)),
        );
        RecordBatch::try_new(self.output_schema(&payload.schema()), columns)
            .map_err(|e| internal(format!("cannot add metadata columns: {e}")))
    }
}

/// The payload of a record known to have one.
fn payload(record: &RawRecord) -> &[u8] {
    record.payload.as_deref().unwrap_or_default()
}
