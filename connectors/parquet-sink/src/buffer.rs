//! The buffer of one source partition: one in-memory Parquet writer per time
//! partition, plus the dead-letter lines.

use std::collections::HashMap;
use std::time::Instant;

use arrow::array::{RecordBatch, UInt32Array};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use tributary_core::{Reject, RowBatch, SinkError, TopicPartition};
use tributary_lake::{FileKind, Landing, PartitionTemplate, PendingFile};

use crate::encoding::DictionaryAdvisor;

/// Rows of one time partition being encoded.
struct OpenFile {
    partition_path: Option<String>,
    schema: arrow::datatypes::SchemaRef,
    writer: ArrowWriter<Vec<u8>>,
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
    /// When the first record arrived (drives `max_age`).
    pub opened_at: Instant,
    files: Vec<OpenFile>,
    by_path: HashMap<String, usize>,
    dead_letter: Vec<u8>,
}

impl PartitionBuffer {
    pub fn new(range_start: i64, opened_at: Instant) -> Self {
        Self {
            range_start,
            last_offset: None,
            records: 0,
            rows: 0,
            skipped: 0,
            dead_lettered: 0,
            opened_at,
            files: Vec::new(),
            by_path: HashMap::new(),
            dead_letter: Vec::new(),
        }
    }

    /// Encoded bytes plus the estimated size of rows not yet flushed to a row group.
    pub fn size_bytes(&self) -> usize {
        self.files
            .iter()
            .map(|f| f.writer.bytes_written() + f.writer.in_progress_size())
            .sum::<usize>()
            + self.dead_letter.len()
    }

    /// Memory the buffer holds, for the worker's memory budget: the
    /// allocation of each file encoded so far, the in-progress row group's
    /// buffers (values not yet paged, dictionaries, encoded pages) and the
    /// dead-letter lines. Larger than [`PartitionBuffer::size_bytes`], which
    /// estimates the encoded size.
    pub fn memory_bytes(&self) -> usize {
        self.files
            .iter()
            .map(|f| f.writer.inner().capacity() + f.writer.memory_size())
            .sum::<usize>()
            + self.dead_letter.capacity()
    }

    pub fn append(
        &mut self,
        batch: RowBatch,
        template: Option<&PartitionTemplate>,
        props: &WriterProperties,
    ) -> Result<(), SinkError> {
        let encode_err = |message: String| SinkError::Encode {
            partition: batch.partition.clone(),
            first_offset: batch.first_offset,
            last_offset: batch.last_offset,
            message,
        };
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
                None => self.write_rows(None, rows, props).map_err(encode_err)?,
                Some(t) => {
                    if batch.event_time_ms.len() != rows.num_rows() {
                        return Err(encode_err(format!(
                            "{} rows but {} record times",
                            rows.num_rows(),
                            batch.event_time_ms.len()
                        )));
                    }
                    let groups = t.group(&batch.event_time_ms);
                    if groups.len() == 1 {
                        let (path, _) = &groups[0];
                        self.write_rows(Some(path), rows, props)
                            .map_err(encode_err)?;
                    } else {
                        for (path, indices) in groups {
                            let indices = UInt32Array::from(indices);
                            let part = take_rows(rows, &indices).map_err(encode_err)?;
                            self.write_rows(Some(&path), &part, props)
                                .map_err(encode_err)?;
                        }
                    }
                }
            }
        }
        for reject in &batch.rejects {
            write_dead_letter(&mut self.dead_letter, reject);
        }
        self.records += batch.source_records as u64;
        self.rows += rows.num_rows() as u64;
        self.skipped += batch.skipped as u64;
        self.dead_lettered += batch.rejects.len() as u64;
        self.last_offset = Some(batch.last_offset);
        Ok(())
    }

    fn write_rows(
        &mut self,
        path: Option<&str>,
        rows: &RecordBatch,
        props: &WriterProperties,
    ) -> Result<(), String> {
        let key = path.unwrap_or("");
        let index = match self.by_path.get(key) {
            Some(i) => *i,
            None => {
                let writer = ArrowWriter::try_new(Vec::new(), rows.schema(), Some(props.clone()))
                    .map_err(|e| format!("cannot start a Parquet file: {e}"))?;
                self.files.push(OpenFile {
                    partition_path: path.map(str::to_string),
                    schema: rows.schema(),
                    writer,
                    rows: 0,
                });
                self.by_path.insert(key.to_string(), self.files.len() - 1);
                self.files.len() - 1
            }
        };
        let file = &mut self.files[index];
        if file.schema != rows.schema() {
            return Err(format!(
                "row schema changed within one file: {:?} became {:?}",
                file.schema,
                rows.schema()
            ));
        }
        file.writer
            .write(rows)
            .map_err(|e| format!("cannot encode rows: {e}"))?;
        file.rows += rows.num_rows() as u64;
        Ok(())
    }

    /// Closes the writers and describes the landing.
    /// The advisor learns from each file which columns a dictionary suits.
    pub fn finish(
        self,
        tp: &TopicPartition,
        writer_id: &str,
        advisor: &DictionaryAdvisor,
    ) -> Result<Landing, SinkError> {
        let last_offset = self.last_offset.unwrap_or(self.range_start - 1);
        let mut files = Vec::with_capacity(self.files.len() + 1);
        for f in self.files {
            let mut writer = f.writer;
            let bytes = writer
                .finish()
                .map(|metadata| {
                    advisor.learn(&metadata);
                    std::mem::take(writer.inner_mut())
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
                bytes: Bytes::from(bytes),
            });
        }
        if self.dead_lettered > 0 {
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
        })
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
