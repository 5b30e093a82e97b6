//! The record-size limit every converter sits behind (`max_record_bytes`).
//!
//! A record whose key and value together are larger than the limit is not
//! handed to the decoder: it becomes a reject (or a skip, or a failure, by
//! `on_error`) with a reason that gives its size and the limit. Without it a
//! single oversized record — a 10 MiB blob on a topic of 300-byte events —
//! would be decoded into one row and held in a Parquet page like any other,
//! dwarfing the flush and memory limits the pipeline is sized by.

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use std::sync::Arc;
use tributary_config::OnError;
use tributary_core::{ConvertError, Converter, RawRecord, Reject, RowBatch, SourceBatch};

/// A converter behind a record-size limit.
pub struct SizeGuard {
    inner: Box<dyn Converter>,
    limit: u64,
    on_error: OnError,
}

impl SizeGuard {
    /// Wraps `inner`: records over `limit` bytes (key plus value) are
    /// routed by `on_error` instead of being decoded.
    pub fn new(inner: Box<dyn Converter>, limit: u64, on_error: OnError) -> Self {
        Self {
            inner,
            limit,
            on_error,
        }
    }
}

fn record_bytes(r: &RawRecord) -> u64 {
    (r.key.as_ref().map_or(0, |k| k.len()) + r.payload.as_ref().map_or(0, |p| p.len())) as u64
}

/// The reason given for an oversized record.
pub fn oversize_reason(size: u64, limit: u64) -> String {
    format!(
        "record is {size} bytes (key and value), over the converter's max_record_bytes of {limit}"
    )
}

impl Converter for SizeGuard {
    fn schema(&self) -> Option<arrow::datatypes::SchemaRef> {
        self.inner.schema()
    }

    fn convert(&mut self, batch: SourceBatch) -> Result<RowBatch, ConvertError> {
        let limit = self.limit;
        if batch.records.iter().all(|r| record_bytes(r) <= limit) {
            return self.inner.convert(batch);
        }
        let (Some(first_offset), Some(last_offset)) = (batch.first_offset(), batch.last_offset())
        else {
            return self.inner.convert(batch);
        };
        let total = batch.records.len();
        let SourceBatch { partition, records } = batch;
        let mut kept = Vec::with_capacity(records.len());
        let mut rejects = Vec::new();
        let mut skipped = 0;
        for r in records {
            let size = record_bytes(&r);
            if size <= limit {
                kept.push(r);
                continue;
            }
            let reason = oversize_reason(size, limit);
            match self.on_error {
                OnError::Fail => {
                    return Err(ConvertError::Record {
                        partition,
                        offset: r.offset,
                        reason,
                    })
                }
                OnError::Skip => {
                    tracing::warn!(partition = %partition, offset = r.offset, bytes = size, limit, "Skipped an oversized record.");
                    skipped += 1;
                }
                OnError::DeadLetter => rejects.push(Reject::new(&partition, &r, reason)),
            }
        }
        let mut rows = if kept.is_empty() {
            let schema = self
                .inner
                .schema()
                .unwrap_or_else(|| Arc::new(Schema::empty()));
            RowBatch {
                partition: partition.clone(),
                first_offset,
                last_offset,
                source_records: 0,
                rows: RecordBatch::new_empty(schema),
                event_time_ms: Vec::new(),
                rejects: Vec::new(),
                skipped: 0,
            }
        } else {
            self.inner.convert(SourceBatch {
                partition: partition.clone(),
                records: kept,
            })?
        };
        // The batch covers every record it was given, oversized ones included.
        rows.first_offset = first_offset;
        rows.last_offset = last_offset;
        rows.source_records = total;
        rows.skipped += skipped;
        rows.rejects.extend(rejects);
        rows.rejects.sort_by_key(|r| r.offset);
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tributary_config::JsonConverterConfig;
    use tributary_core::TopicPartition;

    use super::*;
    use crate::{parse_schema, JsonConverter};

    fn json(on_error: &str) -> Box<dyn Converter> {
        let schema = parse_schema(
            r#"{"fields": [{"name": "id", "type": "int64"}, {"name": "blob", "type": "string"}]}"#,
            "inline",
        )
        .unwrap();
        let cfg: JsonConverterConfig =
            serde_json::from_value(serde_json::json!({ "on_error": on_error })).unwrap();
        Box::new(JsonConverter::with_schema(schema, &cfg).unwrap())
    }

    fn batch(sizes: &[usize]) -> SourceBatch {
        SourceBatch {
            partition: TopicPartition::new("t", 0),
            records: sizes
                .iter()
                .enumerate()
                .map(|(i, n)| RawRecord {
                    offset: 10 + i as i64,
                    timestamp_ms: Some(0),
                    key: None,
                    payload: Some(Bytes::from(format!(
                        r#"{{"id": {i}, "blob": "{}"}}"#,
                        "x".repeat(*n)
                    ))),
                    headers: Vec::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn oversized_records_are_dead_lettered_with_size_and_limit() {
        let mut g = SizeGuard::new(json("dead_letter"), 100, OnError::DeadLetter);
        let rows = g.convert(batch(&[10, 500, 20, 1_000])).unwrap();
        assert_eq!(rows.rows.num_rows(), 2);
        assert_eq!((rows.first_offset, rows.last_offset), (10, 13));
        assert_eq!(rows.source_records, 4);
        let offsets: Vec<i64> = rows.rejects.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, [11, 13]);
        assert_eq!(
            rows.rejects[0].reason,
            "record is 521 bytes (key and value), over the converter's max_record_bytes of 100"
        );
        assert_eq!(rows.rejects[0].payload.as_ref().unwrap().len(), 521);
    }

    #[test]
    fn a_batch_of_only_oversized_records_still_covers_its_offsets() {
        let mut g = SizeGuard::new(json("dead_letter"), 100, OnError::DeadLetter);
        let rows = g.convert(batch(&[500, 600])).unwrap();
        assert_eq!(rows.rows.num_rows(), 0);
        assert_eq!((rows.first_offset, rows.last_offset), (10, 11));
        assert_eq!(rows.rejects.len(), 2);
    }

    #[test]
    fn fail_names_the_record_and_skip_counts_it() {
        let mut g = SizeGuard::new(json("fail"), 100, OnError::Fail);
        match g.convert(batch(&[10, 500])) {
            Err(ConvertError::Record { offset, reason, .. }) => {
                assert_eq!(offset, 11);
                assert!(reason.contains("max_record_bytes of 100"), "{reason}");
            }
            other => panic!("expected a record error, got {other:?}"),
        }
        let mut g = SizeGuard::new(json("skip"), 100, OnError::Skip);
        let rows = g.convert(batch(&[10, 500, 20])).unwrap();
        assert_eq!((rows.rows.num_rows(), rows.skipped), (2, 1));
        assert_eq!(rows.source_records, 3);
    }
}
