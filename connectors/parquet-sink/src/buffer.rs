//! The buffer of one source partition: one in-memory Parquet writer per time
//! partition, plus the dead-letter lines.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use arrow::array::{RecordBatch, UInt32Array};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use tracing::debug;
use tributary_core::{Reject, RowBatch, SinkError, TopicPartition};
use tributary_formats::evolution::{EvolutionPolicy, TableSchema};
use tributary_lake::{FileKind, Image, Landing, LateData, PartitionTemplate, PendingFile};

use crate::encoder::{Encoder, Failure};
use crate::encoding::{sampled_properties, DictionaryAdvisor};

/// Rows of one time partition being encoded (its writer is on the
/// buffer's encoder thread, at the same position).
struct OpenFile {
    partition_path: Option<String>,
    schema: arrow::datatypes::SchemaRef,
    rows: u64,
}

/// Everything buffered for one source partition since its last landing.
pub(crate) struct PartitionBuffer {
    /// First offset of the range the next landing commits.
    pub range_start: i64,
    /// Last offset covered so far.
    pub last_offset: Option<i64>,
    /// Source records covered (rows + rejects + skipped).
    pub records: u64,
    rows: u64,
    skipped: u64,
    dead_lettered: u64,
    /// Rows outside the late-data window (late or too far ahead).
    late: u64,
    /// When the first record arrived (drives `max_age`).
    pub opened_at: Instant,
    files: Vec<OpenFile>,
    /// Encodes the files' rows off the pipeline's thread; started with the
    /// first file.
    encoder: Option<Encoder>,
    by_path: HashMap<String, usize>,
    dead_letter: Vec<u8>,
    /// Rejects kept whole for a dead-letter route outside the lake (a Kafka
    /// topic); `None` writes them as lines of the lake's dead-letter file.
    kept_rejects: Option<Vec<Reject>>,
    kept_reject_bytes: usize,
    /// Bytes reserved for each new file image up front.
    image_capacity: usize,
}

/// Largest file image reserved up front.
const MAX_IMAGE_RESERVE: usize = 64 << 20;

impl PartitionBuffer {
    pub fn new(range_start: i64, opened_at: Instant) -> Self {
        Self {
            range_start,
            last_offset: None,
            records: 0,
            rows: 0,
            skipped: 0,
            dead_lettered: 0,
            late: 0,
            opened_at,
            files: Vec::new(),
            encoder: None,
            by_path: HashMap::new(),
            dead_letter: Vec::new(),
            kept_rejects: None,
            kept_reject_bytes: 0,
            image_capacity: 0,
        }
    }

    /// Reserves `bytes` (up to 64 MiB) for each file image up front: an
    /// image grown by doubling is copied and faulted in again at each step.
    /// The sink passes a quarter more than its latest file.
    pub fn with_image_capacity(mut self, bytes: usize) -> Self {
        self.image_capacity = bytes.min(MAX_IMAGE_RESERVE);
        self
    }

    /// Keeps rejects whole for [`PartitionBuffer::take_rejects`] instead of
    /// writing them into the lake's dead-letter file.
    pub fn keeping_rejects(mut self) -> Self {
        self.kept_rejects = Some(Vec::new());
        self
    }

    /// The rejects kept for a dead-letter route outside the lake, in offset order.
    pub fn take_rejects(&mut self) -> Vec<Reject> {
        self.kept_reject_bytes = 0;
        self.kept_rejects
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Encoded bytes plus the estimated size of rows not yet flushed to a row group.
    pub fn size_bytes(&self) -> usize {
        self.encoder.as_ref().map_or(0, Encoder::encoded_bytes)
            + self.dead_letter.len()
            + self.kept_reject_bytes
    }

    /// Memory the buffer holds, for the worker's memory budget: the
    /// allocation of each file encoded so far, the in-progress row group's
    /// buffers (values not yet paged, dictionaries, encoded pages), the rows
    /// waiting for the encoder thread and the dead-letter lines. Larger than
    /// [`PartitionBuffer::size_bytes`], which estimates the encoded size.
    pub fn memory_bytes(&self) -> usize {
        self.encoder.as_ref().map_or(0, Encoder::memory_bytes)
            + self.dead_letter.capacity()
            + self.kept_reject_bytes
    }

    /// Resolves once every row appended so far is encoded.
    pub async fn settled(&self) {
        if let Some(encoder) = &self.encoder {
            encoder.settled().await;
        }
    }

    /// Rows buffered that were outside the late-data window.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Buffers a batch, its rows split by partition path. With a late-data
    /// policy, `late` also gives the current time (ms since the epoch).
    pub async fn append(
        &mut self,
        batch: RowBatch,
        template: Option<&PartitionTemplate>,
        late: Option<(&LateData, i64)>,
        props: &WriterProperties,
    ) -> Result<(), SinkError> {
        let encode_err = |message: String| encode_error(&batch, message);
        if let Some(failure) = self.encoder.as_ref().and_then(Encoder::failure) {
            return Err(encoder_failed(&batch.partition, failure));
        }
        if let Some(last) = self.last_offset {
            if batch.first_offset <= last {
                return Err(encode_err(format!(
                    "offsets go backwards: the buffer ends at {last}, the batch starts at {}",
                    batch.first_offset
                )));
            }
        }
        let rows = &batch.rows;
        if rows.num_rows() > 0 {
            match template {
                None => self.write_rows(None, rows, &batch, props).await?,
                Some(t) => {
                    if batch.event_time_ms.len() != rows.num_rows() {
                        return Err(encode_err(format!(
                            "{} rows but {} record times",
                            rows.num_rows(),
                            batch.event_time_ms.len()
                        )));
                    }
                    let (times, late_rows) = match late {
                        Some((policy, now_ms)) => policy.apply(&batch.event_time_ms, now_ms),
                        None => (Cow::Borrowed(batch.event_time_ms.as_slice()), 0),
                    };
                    let groups = t
                        .group_rows(rows, &times)
                        .map_err(|e| encode_err(e.to_string()))?;
                    self.late += late_rows;
                    if groups.len() == 1 {
                        let (path, _) = &groups[0];
                        self.write_rows(Some(path), rows, &batch, props).await?;
                    } else {
                        for (path, indices) in groups {
                            let indices = UInt32Array::from(indices);
                            let part = take_rows(rows, &indices).map_err(encode_err)?;
                            self.write_rows(Some(&path), &part, &batch, props).await?;
                        }
                    }
                }
            }
        }
        self.records += batch.source_records as u64;
        self.rows += rows.num_rows() as u64;
        self.skipped += batch.skipped as u64;
        self.dead_lettered += batch.rejects.len() as u64;
        self.last_offset = Some(batch.last_offset);
        match &mut self.kept_rejects {
            Some(kept) => {
                self.kept_reject_bytes += batch.rejects.iter().map(reject_bytes).sum::<usize>();
                kept.extend(batch.rejects);
            }
            None => {
                for reject in &batch.rejects {
                    write_dead_letter(&mut self.dead_letter, reject);
                }
            }
        }
        Ok(())
    }

    /// Queues rows of `batch` (all of them, or those of one time partition)
    /// for the file of `path` with the rows' schema, opening one if needed.
    async fn write_rows(
        &mut self,
        path: Option<&str>,
        rows: &RecordBatch,
        batch: &RowBatch,
        props: &WriterProperties,
    ) -> Result<(), SinkError> {
        let encode_err = |message: String| encode_error(batch, message);
        let failed = |failure: Failure| encoder_failed(&batch.partition, failure);
        let key = path.unwrap_or("");
        let schema = rows.schema();
        // One file holds one schema. When the rows' schema changed (the
        // converter's table schema grew), the time partition gets another
        // file in the same landing; an older file with exactly this schema
        // is reused, so rows alternating between schemas cost no new file.
        let open = match self.by_path.get(key) {
            Some(&i) if self.files[i].schema == schema => Some(i),
            Some(_) => self
                .files
                .iter()
                .rposition(|f| f.partition_path.as_deref() == path && f.schema == schema),
            None => None,
        };
        let index = match open {
            Some(i) => i,
            None => {
                let props = sampled_properties(props, rows).unwrap_or_else(|| props.clone());
                let image = Image::with_capacity(self.image_capacity);
                let writer = ArrowWriter::try_new(image, schema.clone(), Some(props))
                    .map_err(|e| encode_err(format!("cannot start a Parquet file: {e}")))?;
                // Against the newest file of the time partition: the widest schema.
                let newest = self
                    .files
                    .iter()
                    .rev()
                    .find(|f| f.partition_path.as_deref() == path);
                if let Some(newest) = newest {
                    check_growth(&newest.schema, &schema).map_err(encode_err)?;
                    debug!(
                        partition_path = key,
                        fields = schema.fields().len(),
                        "Row schema changed: starting another file for this time partition."
                    );
                }
                self.encoder(batch)?.open(writer).await.map_err(failed)?;
                self.files.push(OpenFile {
                    partition_path: path.map(str::to_string),
                    schema,
                    rows: 0,
                });
                self.files.len() - 1
            }
        };
        if self.by_path.get(key) != Some(&index) {
            self.by_path.insert(key.to_string(), index);
        }
        self.encoder(batch)?
            .write(index, rows.clone(), batch.first_offset, batch.last_offset)
            .await
            .map_err(failed)?;
        self.files[index].rows += rows.num_rows() as u64;
        Ok(())
    }

    /// The buffer's encoder thread, started by the first file.
    fn encoder(&mut self, batch: &RowBatch) -> Result<&Encoder, SinkError> {
        match &mut self.encoder {
            Some(encoder) => Ok(encoder),
            slot @ None => {
                let started = Encoder::spawn().map_err(|e| {
                    encode_error(batch, format!("cannot start an encoder thread: {e}"))
                })?;
                Ok(slot.insert(started))
            }
        }
    }

    /// Closes the writers and describes the landing.
    /// The advisor learns from each file which columns a dictionary suits.
    /// Blocks until the encoder thread has encoded every row.
    pub fn finish(
        mut self,
        tp: &TopicPartition,
        writer_id: &str,
        advisor: &DictionaryAdvisor,
        file_bytes: &AtomicUsize,
    ) -> Result<Landing, SinkError> {
        let last_offset = self.last_offset.unwrap_or(self.range_start - 1);
        let writers = match self.encoder.take() {
            Some(encoder) => encoder.join().map_err(|f| encoder_failed(tp, f))?,
            None => Vec::new(),
        };
        if writers.len() != self.files.len() {
            return Err(SinkError::Encode {
                partition: tp.clone(),
                first_offset: self.range_start,
                last_offset,
                message: format!(
                    "{} files buffered but the encoder holds {} writers",
                    self.files.len(),
                    writers.len()
                ),
            });
        }
        let mut files = Vec::with_capacity(self.files.len() + 1);
        let mut largest = 0;
        for (f, mut writer) in self.files.into_iter().zip(writers) {
            let bytes = writer
                .finish()
                .map(|metadata| {
                    advisor.learn(&metadata);
                    let mut image = std::mem::take(writer.inner_mut());
                    largest = largest.max(image.len());
                    // Give the slack back before the image waits for its
                    // upload.
                    image.shrink_to_fit();
                    image
                })
                .map_err(|e| SinkError::Encode {
                    partition: tp.clone(),
                    first_offset: self.range_start,
                    last_offset,
                    message: format!("cannot finish Parquet file: {e}"),
                })?;
            files.push(PendingFile {
                path: tributary_lake::data_file_path(
                    f.partition_path.as_deref(),
                    tp,
                    self.range_start,
                    writer_id,
                ),
                kind: FileKind::Data,
                rows: f.rows,
                bytes: bytes.into_bytes(),
            });
        }
        if largest > 0 {
            // The largest of the landing: a buffer that crossed into a new
            // time partition also wrote a small file, and the next buffer's
            // files would otherwise reserve by that one and grow.
            file_bytes.store(largest, Ordering::Relaxed);
        }
        if self.dead_lettered > 0 && self.kept_rejects.is_none() {
            files.push(PendingFile {
                path: tributary_lake::dead_letter_path(tp, self.range_start, writer_id),
                kind: FileKind::DeadLetter,
                rows: self.dead_lettered,
                bytes: Bytes::from(self.dead_letter),
            });
        }
        Ok(Landing {
            first_offset: self.range_start,
            last_offset,
            rows: self.rows,
            dead_lettered: self.dead_lettered,
            skipped: self.skipped,
            files,
            dead_letter_topic: None,
        })
    }
}

/// A new file of a time partition must hold the rows' schema grown from the
/// previous file's (new nullable fields, wider types), as the converters'
/// `TableSchema` makes it; anything else would leave readers files of one
/// table that cannot be read together.
fn check_growth(
    previous: &arrow::datatypes::SchemaRef,
    next: &arrow::datatypes::SchemaRef,
) -> Result<(), String> {
    let merged = TableSchema::with_schema(previous.clone(), EvolutionPolicy::Merge)
        .merged(next)
        .map_err(|change| format!("row schema changed incompatibly: {change}"))?;
    if merged.fields() != next.fields() {
        return Err(format!(
            "row schema changed but does not extend the previous one ({} fields became {}; \
             rows must carry the converter's merged table schema)",
            previous.fields().len(),
            next.fields().len()
        ));
    }
    Ok(())
}

/// An encoding error naming the batch's offsets.
fn encode_error(batch: &RowBatch, message: String) -> SinkError {
    SinkError::Encode {
        partition: batch.partition.clone(),
        first_offset: batch.first_offset,
        last_offset: batch.last_offset,
        message,
    }
}

/// The error of a batch the encoder thread could not encode.
fn encoder_failed(partition: &TopicPartition, failure: Failure) -> SinkError {
    SinkError::Encode {
        partition: partition.clone(),
        first_offset: failure.first_offset,
        last_offset: failure.last_offset,
        message: failure.message,
    }
}

fn take_rows(rows: &RecordBatch, indices: &UInt32Array) -> Result<RecordBatch, String> {
    let columns = rows
        .columns()
        .iter()
        .map(|c| arrow::compute::take(c.as_ref(), indices, None))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("cannot split rows by partition path: {e}"))?;
    RecordBatch::try_new(rows.schema(), columns)
        .map_err(|e| format!("cannot split rows by partition path: {e}"))
}

/// Memory a kept reject holds (key, value, headers, reason).
fn reject_bytes(r: &Reject) -> usize {
    r.key.as_ref().map_or(0, |k| k.len())
        + r.payload.as_ref().map_or(0, |p| p.len())
        + r.headers
            .iter()
            .map(|h| h.key.len() + h.value.as_ref().map_or(0, |v| v.len()))
            .sum::<usize>()
        + r.reason.len()
}

/// One JSON line per rejected record: its position, the reason, and the raw
/// bytes (as text when they are UTF-8, else as hex).
fn write_dead_letter(out: &mut Vec<u8>, r: &Reject) {
    fn bytes_fields(
        name: &str,
        value: &Option<Bytes>,
        line: &mut serde_json::Map<String, serde_json::Value>,
    ) {
        match value {
            None => {
                line.insert(name.to_string(), serde_json::Value::Null);
            }
            Some(b) => match std::str::from_utf8(b) {
                Ok(s) => {
                    line.insert(name.to_string(), serde_json::Value::String(s.to_string()));
                }
                Err(_) => {
                    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
                    line.insert(format!("{name}_hex"), serde_json::Value::String(hex));
                }
            },
        }
    }
    let mut line = serde_json::Map::new();
    line.insert("topic".into(), r.partition.topic.as_ref().into());
    line.insert("partition".into(), r.partition.partition.into());
    line.insert("offset".into(), r.offset.into());
    line.insert("timestamp_ms".into(), r.timestamp_ms.into());
    line.insert("reason".into(), r.reason.clone().into());
    bytes_fields("key", &r.key, &mut line);
    bytes_fields("payload", &r.payload, &mut line);
    // Serializing a map of plain values cannot fail.
    if serde_json::to_writer(&mut *out, &serde_json::Value::Object(line)).is_ok() {
        out.push(b'\n');
    }
}
