//! The JSON converter: each record holds exactly one JSON object, which
//! becomes one Arrow row. See [`JsonConverter`].

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arrow::array::{
    Array, ArrayRef, AsArray, Int32Array, Int64Array, StringArray, TimestampMillisecondArray,
};
use arrow::compute::concat_batches;
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Field, FieldRef, Fields, Schema, SchemaRef, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use arrow::error::ArrowError;
use arrow::json::reader::{infer_json_schema_from_iterator, Decoder, ReaderBuilder};
use arrow::record_batch::RecordBatch;
use serde::de::IgnoredAny;
use serde_json::Value;
use tracing::{debug, info, warn};
use tributary_config::{JsonConverterConfig, MetadataField, OnError, SchemaEvolution};
use tributary_core::{
    ConvertError, Converter, RawRecord, Reject, RowBatch, SourceBatch, TopicPartition,
};

use crate::error::FormatError;
use crate::evolution::TableSchema;
use crate::schema::load_schema;

mod direct;
mod evolve;
#[cfg(test)]
mod tests;

/// Reason given for a record without a payload.
pub(crate) const TOMBSTONE: &str = "tombstone: the record has no payload (null value)";

/// Longest reject reason kept; longer ones (arrow quotes offending values) are cut.
const MAX_REASON_BYTES: usize = 512;

/// Into how many parts a span whose flush failed is split (then each part is
/// decoded again, until the failing records stand alone). Wider than halving:
/// a batch with a few bad records is re-decoded about twice instead of
/// log2(n) times.
const SPLIT_WAYS: usize = 16;

/// How many records of a batch the direct decoder may give up on (each is
/// then decoded alone by arrow-json) before the rest of the batch goes to
/// arrow-json in one piece: a topic whose records all need arrow-json (numbers
/// written as strings) must not be decoded one record at a time.
const DIRECT_GIVE_UPS: usize = 8;

/// Smallest row capacity a decoder is built with.
const MIN_DECODER_ROWS: usize = 64;

/// Arrow's message for a missing non-nullable field, up to the field name.
const UNMASKED_NULLS: &str =
    "Encountered unmasked nulls in non-nullable StructArray child: Field { \"";

/// Decodes records holding one JSON object each into Arrow rows.
///
/// Build it from configuration with [`JsonConverter::new`], or around a known
/// schema with [`JsonConverter::with_schema`].
///
///
/// # How a batch is decoded
///
/// First by a one-pass decoder that writes each value straight into its
/// column's Arrow buffers (`json/direct.rs`). It takes only records it is
/// sure `arrow_json` reads to the same row, and gives up on any other: a
/// syntax error, a value of another type than its column (a number written
/// as a string), a missing required field, a repeated or escaped key. Each
/// record it gives up on is decoded alone by `arrow_json`, as below, which
/// makes it a row or a reject, and the direct decoder goes on after it; after
/// 8 such records in a batch, the rest of the batch goes to `arrow_json`.
/// Schemas with a binary column are decoded by `arrow_json` only.
///
/// With `arrow_json`, all payloads are fed, one `decode` call each, into a
/// single `arrow_json` [`Decoder`] that is kept across batches (its tape
/// buffers keep their capacity), and the rows are built by one `flush`. After
/// every payload the decoder must hold exactly one more complete value; a
/// payload that leaves none, two, or half a value is known bad at once. When
/// `flush` fails (a value that does not fit its column, a missing required
/// field), the records are split into 16 parts and each part is decoded again,
/// recursively, until the failing records stand alone, so a batch with a few
/// bad records costs two to three decodes instead of one decode per record.
/// Rows keep the order of their records.
///
/// # Values
///
/// Fields the schema does not list are ignored. With an explicit schema a
/// `string` column accepts only JSON strings; with an inferred schema numbers
/// and booleans are also accepted in string columns (inference widens mixed
/// fields to strings). Timestamp columns take RFC 3339 strings
/// (`2026-11-24T06:30:00Z`, `2026-11-24T06:30:00.123+01:00`) and integers
/// counted in the column's unit.
///
/// # Inference
///
/// With `infer = true` the schema comes from the first `infer_records` records
/// of the first batch that holds at least one JSON object; records that are
/// not JSON objects are left out of the sample (and then rejected by the error
/// policy). All inferred fields are nullable and sorted by name at every depth,
/// so the schema does not depend on the order of keys in the producer's JSON.
/// Fields seen only as `null` become strings. When `timestamp_field` is
/// inferred as a string it becomes
/// `Timestamp(Microsecond, "UTC")` (RFC 3339 text); when it is inferred as an
/// integer it becomes `Timestamp(Millisecond, "UTC")`, i.e. the integers are
/// read as **epoch milliseconds**.
///
/// # Schema evolution
///
/// With `schema_evolution = "merge"` (the default with `infer = true`) the
/// schema grows when records need it. Before a batch is decoded, each record
/// is checked against the schema (one pass of a JSON parser that allocates
/// nothing); the records that carry a field the schema lacks (holding a
/// value: fields seen only as `null`, `[]` or `{}` are not added), a fraction
/// where the column holds integers, or an object or array where the column
/// holds scalars have their own schema inferred and merged into the current
/// one by the rules of [`crate::evolution`]: new fields are appended,
/// nullable; integer columns widen to `float64`; structs and lists evolve
/// recursively. A column's own number type otherwise stays (an `int32` of a
/// schema file is not widened because inference reads every integer as
/// `int64`). The schema grows to at most 1,000 fields (counted at every
/// depth); records that would grow it further are rejected. Records the
/// decoder then still refuses are merged the same way, once.
///
/// A record whose shape cannot be merged (an object where a number was) is
/// rejected by `on_error` with the [`crate::evolution::SchemaChange`] as its
/// reason; a string that does not parse as the column's number or time, or a
/// number out of its column's range, is rejected with the decoder's reason,
/// as before. Every batch is then cast to the converter's merged table schema
/// (metadata columns keep their place; later fields come after them), so
/// old-shape records after a change get nulls and wider types and the schema
/// only ever grows.
///
/// With `schema_evolution = "strict"` (the default with a `schema` file) the
/// schema never changes: fields it does not list are ignored and values that
/// do not fit their column are rejected. A schema file can opt into `merge`:
/// it is then the starting schema.
///
/// # Event time
///
/// `RowBatch::event_time_ms` is, per row, the value of `timestamp_field`
/// converted to milliseconds when it is set and not null, else the record's
/// source timestamp, else the time of the conversion.
#[derive(Debug)]
pub struct JsonConverter {
    settings: Settings,
    /// `None` while the schema is still to be inferred.
    plan: Option<Plan>,
    /// The merged schema of every batch returned so far.
    table: TableSchema,
}

/// Converter settings that do not depend on the schema.
#[derive(Debug)]
struct Settings {
    timestamp_field: Option<String>,
    on_error: OnError,
    metadata: Vec<MetadataField>,
    infer_records: usize,
    evolution: SchemaEvolution,
}

impl Settings {
    /// `evolution` is the policy when the configuration sets none.
    fn from_config(
        cfg: &JsonConverterConfig,
        evolution: SchemaEvolution,
    ) -> Result<Self, FormatError> {
        for (k, m) in cfg.metadata.iter().enumerate() {
            if cfg.metadata[..k].contains(m) {
                return Err(FormatError::Converter {
                    key: "metadata",
                    message: format!("{} is listed twice", metadata_field(*m).name()),
                });
            }
        }
        Ok(Self {
            timestamp_field: cfg.timestamp_field.clone(),
            on_error: cfg.on_error,
            metadata: cfg.metadata.clone(),
            infer_records: cfg.infer_records,
            evolution: cfg.schema_evolution.unwrap_or(evolution),
        })
    }
}

impl JsonConverter {
    /// Builds a converter from its configuration. A relative `schema` path is
    /// resolved against `base_dir`; an absolute one is used as it is.
    ///
    /// Fails when neither or both of `schema` and `infer` are set, when the
    /// schema file is unreadable or invalid, when `timestamp_field` is not a
    /// top-level timestamp field of the schema, or when a metadata column
    /// clashes with a payload field.
    pub fn new(cfg: &JsonConverterConfig, base_dir: &Path) -> Result<Self, FormatError> {
        match (&cfg.schema, cfg.infer) {
            (Some(_), true) => Err(FormatError::Converter {
                key: "schema",
                message: "set either `schema` or `infer = true`, not both".into(),
            }),
            (None, false) => Err(FormatError::Converter {
                key: "schema",
                message: "a schema file is required unless `infer = true`".into(),
            }),
            (Some(path), false) => {
                let schema = load_schema(base_dir.join(path))?;
                Self::with_schema(schema, cfg)
            }
            (None, true) => {
                if cfg.infer_records == 0 {
                    return Err(FormatError::Converter {
                        key: "infer_records",
                        message: "must be at least 1".into(),
                    });
                }
                let settings = Settings::from_config(cfg, SchemaEvolution::Merge)?;
                Ok(Self {
                    table: TableSchema::new(settings.evolution),
                    settings,
                    plan: None,
                })
            }
        }
    }

    /// Builds a converter for a known payload schema. `schema` and `infer` of
    /// `cfg` are ignored; its other settings apply (`schema_evolution`
    /// defaults to `strict`).
    pub fn with_schema(schema: SchemaRef, cfg: &JsonConverterConfig) -> Result<Self, FormatError> {
        let settings = Settings::from_config(cfg, SchemaEvolution::Strict)?;
        let plan = Plan::new(schema, &settings, false)?;
        Ok(Self {
            table: TableSchema::new(settings.evolution),
            settings,
            plan: Some(plan),
        })
    }

    /// Decodes the records at `candidates` with schema evolution (see
    /// "Schema evolution" on [`JsonConverter`]).
    fn decode_evolving(
        &mut self,
        records: &[RawRecord],
        candidates: &[usize],
        out: &mut Decoded,
    ) -> Result<(), ConvertError> {
        let Some(plan) = &self.plan else {
            return Ok(());
        };
        let flagged: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&i| {
                !evolve::fits(
                    payload(&records[i]),
                    plan.payload.fields(),
                    plan.coerce_primitive,
                )
            })
            .collect();
        let mut refused = Vec::new();
        if !flagged.is_empty() {
            self.grow(records, &flagged, &mut refused)?;
        }
        let mut skip = vec![false; records.len()];
        for (i, _) in &refused {
            skip[*i] = true;
        }
        let mut todo: Vec<usize> = candidates.iter().copied().filter(|&i| !skip[i]).collect();
        let mut attempt = Decoded::default();
        self.plan_mut()?.decode(records, &todo, &mut attempt)?;
        if !attempt.rejects.is_empty() {
            // Records the decoder refused: merge them once more, so a shape
            // that is not a widening gets the schema change as its reason.
            let failed: Vec<usize> = attempt.rejects.iter().map(|(i, _)| *i).collect();
            let before = refused.len();
            if self.grow(records, &failed, &mut refused)? {
                for (i, _) in &refused[before..] {
                    skip[*i] = true;
                }
                todo.retain(|&i| !skip[i]);
                attempt = Decoded::default();
                self.plan_mut()?.decode(records, &todo, &mut attempt)?;
            } else {
                // Not mergeable: the schema change is the better reason.
                for (i, reason) in refused.drain(before..) {
                    if let Some(r) = attempt.rejects.iter_mut().find(|(r, _)| *r == i) {
                        r.1 = reason;
                    }
                }
            }
        }
        out.batches = attempt.batches;
        out.rows = attempt.rows;
        out.rejects.extend(attempt.rejects);
        out.rejects.extend(refused);
        Ok(())
    }

    fn plan_mut(&mut self) -> Result<&mut Plan, ConvertError> {
        self.plan
            .as_mut()
            .ok_or_else(|| internal("no schema to decode with"))
    }

    /// Grows the payload schema so that the records at `idx` fit; records
    /// that cannot be merged are added to `refused` with the reason. Whether
    /// the schema grew.
    fn grow(
        &mut self,
        records: &[RawRecord],
        idx: &[usize],
        refused: &mut Vec<(usize, String)>,
    ) -> Result<bool, ConvertError> {
        let Some(plan) = &self.plan else {
            return Ok(false);
        };
        let reserved: Vec<Field> = self
            .settings
            .metadata
            .iter()
            .map(|m| metadata_field(*m))
            .collect();
        let reserved: Vec<&str> = reserved.iter().map(|f| f.name().as_str()).collect();
        let current = plan.payload.clone();
        let (fields, rejects) = evolve::grow(
            current.fields(),
            idx.iter().map(|&i| (i, payload(&records[i]))),
            plan.coerce_primitive,
            &reserved,
        );
        refused.extend(rejects);
        if &fields == current.fields() {
            return Ok(false);
        }
        let changed: Vec<&str> = fields
            .iter()
            .filter(|f| current.field_with_name(f.name()).ok() != Some(f.as_ref()))
            .map(|f| f.name().as_str())
            .collect();
        info!(
            fields_before = current.fields().len(),
            fields_after = fields.len(),
            changed = ?changed,
            "The JSON schema grew: records carry new fields or wider types."
        );
        let schema = Arc::new(Schema::new_with_metadata(
            fields,
            current.metadata().clone(),
        ));
        let coerce = plan.coerce_primitive;
        let plan = Plan::new(schema, &self.settings, coerce)
            .map_err(|e| internal(format!("cannot decode the grown schema: {e}")))?;
        self.plan = Some(plan);
        Ok(true)
    }

    /// Infers the payload schema from the JSON objects among `records`.
    /// `Ok(None)` when there is none.
    fn infer(&self, records: &[RawRecord]) -> Result<Option<Plan>, ConvertError> {
        let wanted = self.settings.infer_records;
        let mut sample = Vec::with_capacity(wanted.min(records.len()));
        for record in records {
            if sample.len() >= wanted {
                break;
            }
            let Some(payload) = &record.payload else {
                continue;
            };
            if let Ok(value @ Value::Object(_)) = serde_json::from_slice::<Value>(payload) {
                sample.push(value);
            }
        }
        if sample.is_empty() {
            debug!(
                records = records.len(),
                "No JSON object to infer a schema from yet."
            );
            return Ok(None);
        }
        let inferred = infer_json_schema_from_iterator(sample.iter().map(Ok::<_, ArrowError>))
            .map_err(|e| internal(format!("schema inference failed: {}", arrow_message(&e))))?;
        let mut fields = normalize_inferred(inferred.fields());
        if let Some(name) = &self.settings.timestamp_field {
            let Some(field) = fields.iter_mut().find(|f| f.name() == name) else {
                return Err(FormatError::Converter {
                    key: "timestamp_field",
                    message: format!(
                        "field {name:?} occurs in none of the {} records the schema was inferred from",
                        sample.len()
                    ),
                }
                .into());
            };
            let data_type = match field.data_type() {
                DataType::Utf8 => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                DataType::Int64 => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                other => {
                    return Err(FormatError::Converter {
                        key: "timestamp_field",
                        message: format!(
                            "field {name:?} was inferred as {other}; it must hold RFC 3339 \
                             strings or integer epoch milliseconds"
                        ),
                    }
                    .into())
                }
            };
            *field = field.clone().with_data_type(data_type);
        }
        let schema = Arc::new(Schema::new(fields));
        info!(
            fields = schema.fields().len(),
            sampled = sample.len(),
            schema_evolution = ?self.settings.evolution,
            "Inferred the JSON schema."
        );
        Ok(Some(Plan::new(schema, &self.settings, true)?))
    }
}

impl Converter for JsonConverter {
    fn schema(&self) -> Option<SchemaRef> {
        match self.table.schema() {
            Some(s) => Some(s.clone()),
            None => self.plan.as_ref().map(|p| p.output.clone()),
        }
    }

    fn convert(&mut self, batch: SourceBatch) -> Result<RowBatch, ConvertError> {
        let SourceBatch { partition, records } = batch;
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Err(internal(format!(
                "{partition}: empty source batch (it covers no offset)"
            )));
        };
        let (first_offset, last_offset) = (first.offset, last.offset);
        if self.plan.is_none() {
            self.plan = self.infer(&records)?;
        }

        let mut decoded = Decoded::default();
        let mut candidates = Vec::with_capacity(records.len());
        for (i, record) in records.iter().enumerate() {
            match record.payload {
                Some(_) => candidates.push(i),
                None => decoded.rejects.push((i, TOMBSTONE.to_string())),
            }
        }
        match &mut self.plan {
            Some(_) if self.settings.evolution == SchemaEvolution::Merge => {
                self.decode_evolving(&records, &candidates, &mut decoded)?
            }
            Some(plan) => plan.decode(&records, &candidates, &mut decoded)?,
            // Inference found no JSON object: none of these is one.
            None => decoded.rejects.extend(
                candidates
                    .into_iter()
                    .map(|i| (i, structural_reason(payload(&records[i]), None))),
            ),
        }
        // Tombstones were listed first; everything else is in record order.
        decoded.rejects.sort_by_key(|(i, _)| *i);

        let mut rejects = Vec::new();
        let mut skipped = 0;
        if let Some((i, reason)) = decoded.rejects.first() {
            let offset = records[*i].offset;
            match self.settings.on_error {
                OnError::Fail => {
                    return Err(ConvertError::Record {
                        partition,
                        offset,
                        reason: reason.clone(),
                    })
                }
                OnError::Skip => {
                    skipped = decoded.rejects.len();
                    warn!(
                        partition = %partition,
                        skipped,
                        first_offset = offset,
                        first_reason = %reason,
                        "Skipped records that cannot be converted."
                    );
                    for (i, reason) in &decoded.rejects {
                        debug!(partition = %partition, offset = records[*i].offset, reason = %reason, "Skipped record.");
                    }
                }
                OnError::DeadLetter => {
                    debug!(
                        partition = %partition,
                        rejected = decoded.rejects.len(),
                        first_offset = offset,
                        first_reason = %reason,
                        "Routing records that cannot be converted to the dead-letter route."
                    );
                    rejects = decoded
                        .rejects
                        .into_iter()
                        .map(|(i, reason)| Reject::new(&partition, &records[i], reason))
                        .collect();
                }
            }
        }

        let (rows, event_time_ms) = match &self.plan {
            Some(plan) => {
                let (rows, times) =
                    plan.assemble(&partition, &records, decoded.batches, &decoded.rows)?;
                // The plan only grows by merging, so its rows always fit the table.
                let rows = self.table.admit(rows).map_err(|change| {
                    internal(format!(
                        "decoded rows do not fit the table schema: {change}"
                    ))
                })?;
                (rows, times)
            }
            None => (
                RecordBatch::new_empty(Arc::new(Schema::empty())),
                Vec::new(),
            ),
        };
        Ok(RowBatch {
            partition,
            first_offset,
            last_offset,
            source_records: records.len(),
            rows,
            event_time_ms,
            rejects,
            skipped,
        })
    }
}

/// What decoding a batch produced, in record order.
#[derive(Default)]
struct Decoded {
    /// Decoded segments; their rows, in order, are the records in `rows`.
    batches: Vec<RecordBatch>,
    /// Index (in the source batch) of the record behind each row.
    rows: Vec<usize>,
    /// Index of each record that failed, with the reason.
    rejects: Vec<(usize, String)>,
}

/// An arrow-json decoder with the number of rows it can take before a flush.
#[derive(Debug)]
struct SizedDecoder {
    decoder: Decoder,
    capacity: usize,
}

/// Everything that depends on the payload schema.
#[derive(Debug)]
struct Plan {
    payload: SchemaRef,
    output: SchemaRef,
    coerce_primitive: bool,
    /// Column of `timestamp_field` in the payload, with its unit.
    time_column: Option<(usize, TimeUnit)>,
    metadata: Vec<MetadataField>,
    /// A clean decoder kept for the next batch (the largest one seen).
    spare: Option<SizedDecoder>,
    /// Decodes batches of well-formed records in one pass; `None` when the
    /// schema has types only arrow-json decodes.
    direct: Option<Arc<direct::DirectDecoder>>,
}

impl Plan {
    fn new(
        payload: SchemaRef,
        settings: &Settings,
        coerce_primitive: bool,
    ) -> Result<Self, FormatError> {
        let time_column = match &settings.timestamp_field {
            None => None,
            Some(name) => {
                let Some((index, field)) = payload.column_with_name(name) else {
                    return Err(FormatError::Converter {
                        key: "timestamp_field",
                        message: format!("field {name:?} is not a top-level field of the schema"),
                    });
                };
                match field.data_type() {
                    DataType::Timestamp(unit, _) => Some((index, *unit)),
                    other => {
                        return Err(FormatError::Converter {
                            key: "timestamp_field",
                            message: format!(
                                "field {name:?} has type {other}; it must be a timestamp \
                                 (e.g. \"timestamp[us, UTC]\")"
                            ),
                        })
                    }
                }
            }
        };
        let mut fields: Vec<FieldRef> = payload.fields().iter().cloned().collect();
        for m in &settings.metadata {
            let field = metadata_field(*m);
            if payload.column_with_name(field.name()).is_some() {
                return Err(FormatError::Converter {
                    key: "metadata",
                    message: format!(
                        "column {:?} clashes with a payload field of the same name",
                        field.name()
                    ),
                });
            }
            fields.push(Arc::new(field));
        }
        let output = Arc::new(Schema::new_with_metadata(
            fields,
            payload.metadata().clone(),
        ));
        let mut plan = Self {
            payload,
            output,
            coerce_primitive,
            time_column,
            metadata: settings.metadata.clone(),
            spare: None,
            direct: None,
        };
        // Build one decoder now, so a schema arrow-json cannot decode fails here.
        let decoder = plan
            .build_decoder(MIN_DECODER_ROWS)
            .map_err(|e| FormatError::Converter {
                key: "schema",
                message: format!("arrow-json cannot decode this schema: {e}"),
            })?;
        plan.spare = Some(decoder);
        plan.direct =
            direct::DirectDecoder::new(plan.payload.clone(), coerce_primitive).map(Arc::new);
        Ok(plan)
    }

    fn build_decoder(&self, rows: usize) -> Result<SizedDecoder, ArrowError> {
        let capacity = rows.max(MIN_DECODER_ROWS).next_power_of_two();
        let decoder = ReaderBuilder::new(self.payload.clone())
            .with_batch_size(capacity)
            .with_coerce_primitive(self.coerce_primitive)
            .build_decoder()?;
        Ok(SizedDecoder { decoder, capacity })
    }

    /// A clean decoder that can take `rows` rows: the spare one when it is
    /// large enough, else a new one.
    fn acquire(&mut self, rows: usize) -> Result<SizedDecoder, ConvertError> {
        if let Some(spare) = self.spare.take() {
            if spare.capacity >= rows {
                return Ok(spare);
            }
        }
        self.build_decoder(rows)
            .map_err(|e| internal(format!("cannot build the JSON decoder: {e}")))
    }

    /// Keeps a clean decoder for later, preferring the larger one.
    fn release(&mut self, decoder: SizedDecoder) {
        if self
            .spare
            .as_ref()
            .is_none_or(|s| s.capacity <= decoder.capacity)
        {
            self.spare = Some(decoder);
        }
    }

    /// Decodes the records at `idx` (all with a payload, in order): with the
    /// direct decoder, and with arrow-json each record it gives up on; after
    /// [`DIRECT_GIVE_UPS`] of those, the rest of the batch with arrow-json.
    fn decode(
        &mut self,
        records: &[RawRecord],
        idx: &[usize],
        out: &mut Decoded,
    ) -> Result<(), ConvertError> {
        let mut start = 0;
        if let Some(direct) = self.direct.clone() {
            let payloads: Vec<&[u8]> = idx.iter().map(|&i| payload(&records[i])).collect();
            let mut give_ups = 0;
            while start < idx.len() && give_ups < DIRECT_GIVE_UPS {
                let (rows, decoded) = direct.decode(&payloads[start..]);
                if let Some(rows) = rows {
                    out.batches.push(rows);
                    out.rows.extend_from_slice(&idx[start..start + decoded]);
                }
                start += decoded;
                if start < idx.len() {
                    give_ups += 1;
                    self.decode_arrow(records, &idx[start..=start], out)?;
                    start += 1;
                }
            }
        }
        if start < idx.len() {
            self.decode_arrow(records, &idx[start..], out)?;
        }
        Ok(())
    }

    /// Decodes the records at `idx` (all with a payload, in order) with arrow-json.
    fn decode_arrow(
        &mut self,
        records: &[RawRecord],
        idx: &[usize],
        out: &mut Decoded,
    ) -> Result<(), ConvertError> {
        let mut start = 0;
        while start < idx.len() {
            let span = &idx[start..];
            let mut d = self.acquire(span.len())?;
            let failed = span.iter().enumerate().find_map(|(k, &i)| {
                feed(&mut d.decoder, payload(&records[i]))
                    .err()
                    .map(|e| (k, e))
            });
            let Some((k, error)) = failed else {
                return self.flush(records, d, span, out);
            };
            // The decoder holds part of a bad payload: drop it, decode the
            // good records before it again, and go on after it.
            drop(d);
            if k > 0 {
                self.decode_valid(records, &span[..k], out)?;
            }
            let bad = span[k];
            out.rejects.push((
                bad,
                structural_reason(payload(&records[bad]), error.as_ref()),
            ));
            start += k + 1;
        }
        Ok(())
    }

    /// Decodes records each known to hold exactly one complete JSON value.
    fn decode_valid(
        &mut self,
        records: &[RawRecord],
        idx: &[usize],
        out: &mut Decoded,
    ) -> Result<(), ConvertError> {
        let mut d = self.acquire(idx.len())?;
        for &i in idx {
            if let Err(e) = feed(&mut d.decoder, payload(&records[i])) {
                return Err(internal(format!(
                    "offset {}: record decoded alone but not after others ({})",
                    records[i].offset,
                    e.map_or_else(|| "incomplete value".to_string(), |e| arrow_message(&e))
                )));
            }
        }
        self.flush(records, d, idx, out)
    }

    /// Flushes a decoder holding the records at `idx`. When that fails, finds
    /// the failing records by splitting `idx` into [`SPLIT_WAYS`] parts, recursively.
    fn flush(
        &mut self,
        records: &[RawRecord],
        mut d: SizedDecoder,
        idx: &[usize],
        out: &mut Decoded,
    ) -> Result<(), ConvertError> {
        match d.decoder.flush() {
            Ok(batch) => {
                self.release(d);
                let rows = batch.as_ref().map_or(0, RecordBatch::num_rows);
                if rows != idx.len() {
                    return Err(internal(format!(
                        "decoded {rows} rows from {} records",
                        idx.len()
                    )));
                }
                if let Some(batch) = batch {
                    out.batches.push(batch);
                    out.rows.extend_from_slice(idx);
                }
                Ok(())
            }
            Err(error) => {
                // A failed flush leaves the decoder's tape behind: drop it.
                drop(d);
                if let [i] = idx {
                    let reason = self.row_reason(payload(&records[*i]), &error);
                    out.rejects.push((*i, reason));
                    return Ok(());
                }
                for part in idx.chunks(idx.len().div_ceil(SPLIT_WAYS)) {
                    self.decode_valid(records, part, out)?;
                }
                Ok(())
            }
        }
    }

    /// Why a payload holding one complete JSON value did not decode into a row.
    fn row_reason(&self, payload: &[u8], error: &ArrowError) -> String {
        if let Some(kind) = non_object_kind(payload) {
            return format!("payload is a JSON {kind}, expected an object");
        }
        if let Some(reason) = utf8_reason(payload) {
            return reason;
        }
        let (mut path, message) = describe(error);
        if path.is_empty() {
            // Some arrow-json errors (decimals) do not say which field failed.
            path.extend(self.failing_field(payload));
        }
        if path.is_empty() {
            cap(message)
        } else {
            cap(format!("field \"{}\": {message}", path.join(".")))
        }
    }

    /// The first top-level field whose value alone fails to decode. Only used
    /// to explain a reject, so it builds its decoders on the spot.
    fn failing_field(&self, payload: &[u8]) -> Option<String> {
        self.payload.fields().iter().find_map(|field| {
            let schema = Arc::new(Schema::new(vec![field.clone()]));
            let mut decoder = ReaderBuilder::new(schema)
                .with_batch_size(1)
                .with_coerce_primitive(self.coerce_primitive)
                .build_decoder()
                .ok()?;
            decoder.decode(payload).ok()?;
            decoder.flush().is_err().then(|| field.name().clone())
        })
    }

    /// Joins the decoded segments, appends metadata columns and computes event times.
    fn assemble(
        &self,
        partition: &TopicPartition,
        records: &[RawRecord],
        mut batches: Vec<RecordBatch>,
        rows: &[usize],
    ) -> Result<(RecordBatch, Vec<i64>), ConvertError> {
        let payload = if batches.len() > 1 {
            concat_batches(&self.payload, &batches)
                .map_err(|e| internal(format!("cannot join decoded rows: {e}")))?
        } else {
            batches
                .pop()
                .unwrap_or_else(|| RecordBatch::new_empty(self.payload.clone()))
        };
        let event_time = self.event_times(&payload, records, rows)?;
        if self.metadata.is_empty() {
            return Ok((payload, event_time));
        }
        let mut columns = payload.columns().to_vec();
        columns.extend(
            self.metadata
                .iter()
                .map(|m| metadata_column(*m, partition, records, rows)),
        );
        let batch = RecordBatch::try_new(self.output.clone(), columns)
            .map_err(|e| internal(format!("cannot add metadata columns: {e}")))?;
        Ok((batch, event_time))
    }

    fn event_times(
        &self,
        payload: &RecordBatch,
        records: &[RawRecord],
        rows: &[usize],
    ) -> Result<Vec<i64>, ConvertError> {
        let column = self.time_column.map(|(c, unit)| (payload.column(c), unit));
        record_times(column, records, rows)
    }
}

/// Record times of `rows` for the Avro and Protobuf converters: the
/// timestamp column named `field` where it is set, else each record's source
/// timestamp (else now). `what` says which field types are accepted, for the
/// error when the column is not a timestamp.
pub(crate) fn event_times_from(
    payload: &RecordBatch,
    field: Option<&str>,
    what: &str,
    records: &[RawRecord],
    rows: &[usize],
) -> Result<Vec<i64>, ConvertError> {
    let Some((name, column)) = field.and_then(|name| Some((name, payload.column_by_name(name)?)))
    else {
        return record_times(None, records, rows);
    };
    match column.data_type() {
        DataType::Timestamp(unit, _) => record_times(Some((column, *unit)), records, rows),
        other => Err(internal(format!(
            "converter.timestamp_field: field {name:?} has type {other}; it must be {what}"
        ))),
    }
}

/// Record times of `rows`: the timestamp `column` where it is set, else each
/// record's source timestamp, else now.
fn record_times(
    column: Option<(&ArrayRef, TimeUnit)>,
    records: &[RawRecord],
    rows: &[usize],
) -> Result<Vec<i64>, ConvertError> {
    let now_ms = now_ms();
    let fallback = |i: usize| records[i].timestamp_ms.unwrap_or(now_ms);
    match column {
        None => Ok(rows.iter().map(|&i| fallback(i)).collect()),
        Some((column, unit)) => timestamp_millis(column, unit, rows, fallback)
            .ok_or_else(|| internal("timestamp column has an unexpected array type")),
    }
}

/// Per row, the milliseconds of a timestamp column of `unit`, or
/// `fallback(record index)` where it is null; `None` when the array is not
/// of that unit's type.
pub(crate) fn timestamp_millis(
    column: &ArrayRef,
    unit: TimeUnit,
    rows: &[usize],
    fallback: impl Fn(usize) -> i64,
) -> Option<Vec<i64>> {
    match unit {
        TimeUnit::Second => {
            to_millis::<TimestampSecondType>(column, rows, |v| v.saturating_mul(1000), fallback)
        }
        TimeUnit::Millisecond => {
            to_millis::<TimestampMillisecondType>(column, rows, |v| v, fallback)
        }
        TimeUnit::Microsecond => {
            to_millis::<TimestampMicrosecondType>(column, rows, |v| v.div_euclid(1_000), fallback)
        }
        TimeUnit::Nanosecond => to_millis::<TimestampNanosecondType>(
            column,
            rows,
            |v| v.div_euclid(1_000_000),
            fallback,
        ),
    }
}

/// Per row: the timestamp in milliseconds, or `fallback(record index)` when null.
pub(crate) fn to_millis<T: ArrowPrimitiveType<Native = i64>>(
    column: &ArrayRef,
    rows: &[usize],
    to_ms: impl Fn(i64) -> i64,
    fallback: impl Fn(usize) -> i64,
) -> Option<Vec<i64>> {
    let array = column.as_primitive_opt::<T>()?;
    Some(
        rows.iter()
            .enumerate()
            .map(|(row, &i)| {
                if array.is_valid(row) {
                    to_ms(array.value(row))
                } else {
                    fallback(i)
                }
            })
            .collect(),
    )
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Feeds one payload; `Err` unless it added exactly one complete value.
/// After an `Err` the decoder holds a partial or extra value and must be dropped.
fn feed(decoder: &mut Decoder, payload: &[u8]) -> Result<(), Option<ArrowError>> {
    let before = decoder.len();
    match decoder.decode(payload) {
        Ok(read)
            if read == payload.len()
                && !decoder.has_partial_record()
                && decoder.len() == before + 1 =>
        {
            Ok(())
        }
        Ok(_) => Err(None),
        Err(e) => Err(Some(e)),
    }
}

/// The payload of a record known to have one.
fn payload(record: &RawRecord) -> &[u8] {
    record.payload.as_deref().unwrap_or_default()
}

/// Why a payload did not decode to exactly one complete JSON value.
fn structural_reason(payload: &[u8], error: Option<&ArrowError>) -> String {
    if let Some(reason) = utf8_reason(payload) {
        return reason;
    }
    let mut values = serde_json::Deserializer::from_slice(payload).into_iter::<IgnoredAny>();
    match values.next() {
        None => return "payload is empty: expected one JSON object".into(),
        Some(Err(e)) => return cap(format!("payload is not valid JSON: {e}")),
        Some(Ok(_)) => {}
    }
    match values.next() {
        Some(Ok(_)) => {
            return "payload holds more than one JSON value: expected exactly one object".into()
        }
        Some(Err(e)) => {
            return cap(format!(
                "payload has invalid data after the JSON object: {e}"
            ))
        }
        None => {}
    }
    if let Some(kind) = non_object_kind(payload) {
        return format!("payload is a JSON {kind}, expected an object");
    }
    match error {
        Some(e) => cap(format!("payload cannot be decoded: {}", arrow_message(e))),
        None => "payload is not exactly one complete JSON object".into(),
    }
}

fn utf8_reason(payload: &[u8]) -> Option<String> {
    std::str::from_utf8(payload).err().map(|e| {
        format!(
            "payload is not valid UTF-8 (invalid byte at position {})",
            e.valid_up_to()
        )
    })
}

/// The kind of the top-level JSON value when it is not an object.
fn non_object_kind(payload: &[u8]) -> Option<&'static str> {
    match payload.iter().find(|b| !b.is_ascii_whitespace())? {
        b'[' => Some("array"),
        b'"' => Some("string"),
        b'-' | b'0'..=b'9' => Some("number"),
        b't' | b'f' => Some("boolean"),
        b'n' => Some("null"),
        _ => None,
    }
}

/// Splits arrow's message for a row that failed to decode into the field path
/// it names (`["shipping", "express"]`) and the rest of the message.
fn describe(error: &ArrowError) -> (Vec<String>, String) {
    let text = arrow_message(error);
    let mut rest = text.as_str();
    let mut path = Vec::new();
    while let Some(after) = rest.strip_prefix("whilst decoding field '") {
        let Some(end) = after.find("': ") else {
            break;
        };
        path.push(after[..end].to_string());
        rest = &after[end + 3..];
    }
    let mut message = rest.to_string();
    if let Some(after) = rest.strip_prefix(UNMASKED_NULLS) {
        if let Some(end) = after.find('"') {
            path.push(after[..end].to_string());
            message = "is missing or null, but the schema does not allow null".into();
        }
    }
    (path, message)
}

/// Arrow's message without the "Json error: " prefix of its `Display`.
fn arrow_message(error: &ArrowError) -> String {
    match error {
        ArrowError::JsonError(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Cuts a reason to [`MAX_REASON_BYTES`].
pub(crate) fn cap(mut reason: String) -> String {
    if reason.len() > MAX_REASON_BYTES {
        let mut end = MAX_REASON_BYTES;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push('…');
    }
    reason
}

pub(crate) fn internal(message: impl Into<String>) -> ConvertError {
    ConvertError::Internal {
        message: message.into(),
    }
}

/// Inferred fields sorted by name, with `DataType::Null` (a field seen only
/// as `null`) turned into `Utf8`, at every depth.
fn normalize_inferred(fields: &Fields) -> Vec<Field> {
    let mut out: Vec<Field> = fields
        .iter()
        .map(|f| {
            let data_type = normalize_inferred_type(f.data_type());
            f.as_ref().clone().with_data_type(data_type)
        })
        .collect();
    out.sort_by(|a, b| a.name().cmp(b.name()));
    out
}

fn normalize_inferred_type(data_type: &DataType) -> DataType {
    match data_type {
        DataType::Null => DataType::Utf8,
        DataType::Struct(fields) => DataType::Struct(normalize_inferred(fields).into()),
        DataType::List(item) => {
            let data_type = normalize_inferred_type(item.data_type());
            DataType::List(Arc::new(item.as_ref().clone().with_data_type(data_type)))
        }
        other => other.clone(),
    }
}

/// The column a metadata field adds.
pub(crate) fn metadata_field(m: MetadataField) -> Field {
    match m {
        MetadataField::Topic => Field::new("_topic", DataType::Utf8, false),
        MetadataField::Partition => Field::new("_partition", DataType::Int32, false),
        MetadataField::Offset => Field::new("_offset", DataType::Int64, false),
        MetadataField::Timestamp => Field::new(
            "_timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
        MetadataField::Key => Field::new("_key", DataType::Utf8, true),
    }
}

pub(crate) fn metadata_column(
    m: MetadataField,
    partition: &TopicPartition,
    records: &[RawRecord],
    rows: &[usize],
) -> ArrayRef {
    match m {
        MetadataField::Topic => Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
            &*partition.topic,
            rows.len(),
        ))),
        MetadataField::Partition => {
            Arc::new(Int32Array::from_value(partition.partition, rows.len()))
        }
        MetadataField::Offset => Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|&i| records[i].offset),
        )),
        MetadataField::Timestamp => Arc::new(
            TimestampMillisecondArray::from_iter(rows.iter().map(|&i| records[i].timestamp_ms))
                .with_timezone("UTC"),
        ),
        MetadataField::Key => {
            Arc::new(StringArray::from_iter(rows.iter().map(|&i| {
                records[i].key.as_deref().map(String::from_utf8_lossy)
            })))
        }
    }
}
