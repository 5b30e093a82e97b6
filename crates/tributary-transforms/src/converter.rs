//! [`TransformingConverter`]: a converter followed by a transform chain.

use std::collections::HashSet;

use arrow::array::AsArray;
use arrow::datatypes::{DataType, Int64Type, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use tracing::{debug, warn};
use tributary_config::{ConverterConfig, MetadataField, OnError};
use tributary_core::{ConvertError, Converter, RawRecord, Reject, RowBatch, SourceBatch};

use crate::{TransformChain, TransformError};

/// Name of the converter's offset metadata column.
const OFFSET_COLUMN: &str = "_offset";

/// A converter whose rows go through a [`TransformChain`] before the sink.
///
/// It covers the same positions as the inner converter (first and last
/// offset, source records). Rows a filter removes are added to `skipped`;
/// records a transform cannot handle follow `on_error`: `fail` stops with
/// the record's position and the reason, `skip` counts them as skipped,
/// `dead_letter` makes them rejects with their original key, value and
/// headers.
pub struct TransformingConverter {
    inner: Box<dyn Converter>,
    chain: TransformChain,
    on_error: OnError,
    /// The inner converter appends `_offset` only for the chain: remove it.
    hidden_offset: bool,
}

impl TransformingConverter {
    /// The configuration the inner converter must be built from, and whether
    /// it asks for an `_offset` column the user did not (the chain uses it to
    /// find each row's source record).
    pub fn inner_config(chain: &TransformChain, cfg: &ConverterConfig) -> (ConverterConfig, bool) {
        let mut cfg = cfg.clone();
        let metadata = cfg.metadata_mut();
        let hidden = chain.needs_origin() && !metadata.contains(&MetadataField::Offset);
        if hidden {
            metadata.push(MetadataField::Offset);
        }
        (cfg, hidden)
    }

    /// Wraps `inner` (built from [`Self::inner_config`]).
    pub fn new(
        inner: Box<dyn Converter>,
        chain: TransformChain,
        on_error: OnError,
        hidden_offset: bool,
    ) -> Self {
        Self {
            inner,
            chain,
            on_error,
            hidden_offset,
        }
    }

    /// The output schema, when the inner converter knows its schema, or the
    /// transform that cannot run on it.
    pub fn checked_schema(&self) -> Result<Option<SchemaRef>, TransformError> {
        let Some(schema) = self.inner.schema() else {
            return Ok(None);
        };
        let schema = if self.hidden_offset {
            let fields: Vec<_> = schema
                .fields()
                .iter()
                .filter(|f| f.name() != OFFSET_COLUMN)
                .cloned()
                .collect();
            std::sync::Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
        } else {
            schema
        };
        self.chain.output_schema(&schema).map(Some)
    }

    /// Per row, the index of its source record; drops a hidden `_offset`.
    fn origin(
        &self,
        rows: RecordBatch,
        records: &[RawRecord],
        out: &RowBatch,
    ) -> Result<(RecordBatch, Option<Vec<usize>>), ConvertError> {
        if !self.chain.needs_origin() {
            return Ok((rows, None));
        }
        let partition = &out.partition;
        if let Some((i, field)) = rows.schema().column_with_name(OFFSET_COLUMN) {
            if field.data_type() == &DataType::Int64 {
                let offsets = rows.column(i).as_primitive::<Int64Type>();
                let mut origin = Vec::with_capacity(offsets.len());
                for (row, offset) in offsets.iter().enumerate() {
                    let found =
                        offset.and_then(|o| records.binary_search_by_key(&o, |r| r.offset).ok());
                    match found {
                        Some(idx) => origin.push(idx),
                        None => {
                            return Err(internal(format!(
                                "{partition}: row {row} has offset {offset:?}, which is not in the batch"
                            )))
                        }
                    }
                }
                let mut rows = rows;
                if self.hidden_offset {
                    rows.remove_column(i);
                }
                return Ok((rows, Some(origin)));
            }
        }
        // Without offsets: the rows are the records that were not rejected,
        // in order, as long as none was skipped.
        if out.skipped == 0 && rows.num_rows() + out.rejects.len() == records.len() {
            let rejected: HashSet<i64> = out.rejects.iter().map(|r| r.offset).collect();
            let origin = (0..records.len())
                .filter(|&i| !rejected.contains(&records[i].offset))
                .collect();
            return Ok((rows, Some(origin)));
        }
        Err(internal(format!(
            "{partition}: cannot tell which source record each row came from; the converter \
             must add the offset metadata column (metadata = [\"offset\"])"
        )))
    }
}

fn internal(message: String) -> ConvertError {
    ConvertError::Internal { message }
}

impl Converter for TransformingConverter {
    fn schema(&self) -> Option<SchemaRef> {
        match self.checked_schema() {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "The transforms cannot run on the converter's schema.");
                None
            }
        }
    }

    fn convert(&mut self, batch: SourceBatch) -> Result<RowBatch, ConvertError> {
        let records = if self.chain.needs_origin() {
            batch.records.clone()
        } else {
            Vec::new()
        };
        let mut out = self.inner.convert(batch)?;
        if out.rows.num_columns() == 0 && out.rows.num_rows() == 0 {
            // No rows and no schema yet: nothing to transform.
            return Ok(out);
        }
        let rows = std::mem::replace(
            &mut out.rows,
            RecordBatch::new_empty(std::sync::Arc::new(Schema::empty())),
        );
        let (rows, origin) = self.origin(rows, &records, &out)?;
        let event_time_ms = std::mem::take(&mut out.event_time_ms);
        let partition = out.partition.clone();
        let applied = self
            .chain
            .run(rows, event_time_ms, &partition, &records, origin)
            .map_err(|e| internal(format!("{partition}: {e}")))?;
        out.rows = applied.batch;
        out.event_time_ms = applied.event_time_ms;
        if applied.filtered > 0 {
            debug!(partition = %partition, filtered = applied.filtered, "Filtered out rows (counted as skipped).");
            out.skipped += applied.filtered;
        }
        if let Some((first, reason)) = applied.failures.first() {
            let offset = records[*first].offset;
            match self.on_error {
                OnError::Fail => {
                    return Err(ConvertError::Record {
                        partition,
                        offset,
                        reason: reason.clone(),
                    })
                }
                OnError::Skip => {
                    warn!(
                        partition = %partition,
                        skipped = applied.failures.len(),
                        first_offset = offset,
                        first_reason = %reason,
                        "Skipped records a transform cannot handle."
                    );
                    out.skipped += applied.failures.len();
                }
                OnError::DeadLetter => {
                    debug!(
                        partition = %partition,
                        rejected = applied.failures.len(),
                        first_offset = offset,
                        first_reason = %reason,
                        "Routing records a transform cannot handle to the dead-letter route."
                    );
                    out.rejects.extend(
                        applied.failures.iter().map(|(i, reason)| {
                            Reject::new(&partition, &records[*i], reason.clone())
                        }),
                    );
                    out.rejects.sort_by_key(|r| r.offset);
                }
            }
        }
        debug_assert_eq!(out.rows.num_rows(), out.event_time_ms.len());
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
