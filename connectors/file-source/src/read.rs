//! Parsing one input file into raw records (JSON payloads, offset = line or row number).

use std::io::Cursor;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema};
use arrow::error::ArrowError;
use arrow::json::writer::LineDelimited;
use arrow::json::WriterBuilder;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tributary_config::InputFormat;
use tributary_core::RawRecord;

const BATCH_ROWS: usize = 8192;

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The CSV could not be parsed.
    #[error("not readable as CSV: {0}")]
    Csv(#[source] ArrowError),
    /// The Parquet file could not be read.
    #[error("not readable as Parquet: {0}")]
    Parquet(String),
    /// Rows could not be encoded as JSON.
    #[error("row {row}: cannot be encoded as JSON: {source}")]
    Json {
        /// First row of the batch.
        row: i64,
        /// The error.
        #[source]
        source: ArrowError,
    },
}

/// Parses a whole file. JSON lines: one record per non-blank line, offset =
/// line number (0-based), payload = the line as it is (the converter
/// rejects a bad one under the pipeline's error policy). CSV and Parquet:
/// one record per row, offset = row number, payload = the row as a JSON
/// object (nulls left out).
pub fn parse(
    format: InputFormat,
    delimiter: u8,
    bytes: Bytes,
) -> Result<Vec<RawRecord>, ReadError> {
    match format {
        InputFormat::Jsonl => Ok(jsonl(&bytes)),
        InputFormat::Csv => {
            let csv = arrow::csv::reader::Format::default()
                .with_header(true)
                .with_delimiter(delimiter);
            let (schema, _) = csv
                .infer_schema(Cursor::new(&bytes[..]), None)
                .map_err(ReadError::Csv)?;
            // Dates and times stay the text they are in the file (an
            // inferred timestamp would lose its offset); the converter
            // parses them against the pipeline's schema.
            let schema = Schema::new(
                schema
                    .fields()
                    .iter()
                    .map(|f| match f.data_type() {
                        DataType::Timestamp(..)
                        | DataType::Date32
                        | DataType::Date64
                        | DataType::Time32(_)
                        | DataType::Time64(_) => {
                            Arc::new(Field::new(f.name(), DataType::Utf8, f.is_nullable()))
                        }
                        _ => f.clone(),
                    })
                    .collect::<Vec<_>>(),
            );
            let reader = arrow::csv::ReaderBuilder::new(Arc::new(schema))
                .with_format(csv)
                .with_batch_size(BATCH_ROWS)
                .build(Cursor::new(&bytes[..]))
                .map_err(ReadError::Csv)?;
            as_json(reader.map(|b| b.map_err(ReadError::Csv)))
        }
        InputFormat::Parquet => {
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
                .and_then(|b| b.with_batch_size(BATCH_ROWS).build())
                .map_err(|e| ReadError::Parquet(e.to_string()))?;
            as_json(reader.map(|b| b.map_err(|e| ReadError::Parquet(e.to_string()))))
        }
    }
}

fn jsonl(bytes: &Bytes) -> Vec<RawRecord> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut line_no = 0i64;
    while start < bytes.len() {
        let end = bytes[start..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(bytes.len(), |p| start + p);
        let mut line = bytes.slice(start..end);
        if line.last() == Some(&b'\r') {
            line = line.slice(..line.len() - 1);
        }
        if !line.iter().all(u8::is_ascii_whitespace) {
            out.push(RawRecord {
                offset: line_no,
                timestamp_ms: None,
                key: None,
                payload: Some(line),
                headers: Vec::new(),
            });
        }
        line_no += 1;
        start = end + 1;
    }
    out
}

fn as_json(
    batches: impl Iterator<Item = Result<RecordBatch, ReadError>>,
) -> Result<Vec<RawRecord>, ReadError> {
    let mut out = Vec::new();
    let mut row = 0i64;
    for batch in batches {
        let batch = batch?;
        let mut writer = WriterBuilder::new()
            .with_explicit_nulls(false)
            .build::<_, LineDelimited>(Vec::new());
        writer
            .write(&batch)
            .and_then(|()| writer.finish())
            .map_err(|source| ReadError::Json { row, source })?;
        let text = Bytes::from(writer.into_inner());
        for record in jsonl(&text) {
            out.push(RawRecord {
                offset: row,
                ..record
            });
            row += 1;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int64Array, StringArray};
    use parquet::arrow::ArrowWriter;

    use super::*;

    fn payloads(records: &[RawRecord]) -> Vec<(i64, String)> {
        records
            .iter()
            .map(|r| {
                (
                    r.offset,
                    String::from_utf8(r.payload.clone().unwrap().to_vec()).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn jsonl_offsets_are_line_numbers() {
        let r = parse(
            InputFormat::Jsonl,
            b',',
            Bytes::from_static(b"{\"id\":1}\r\n\n{\"id\":2}\nnot json\n"),
        )
        .unwrap();
        assert_eq!(
            payloads(&r),
            vec![
                (0, "{\"id\":1}".into()),
                (2, "{\"id\":2}".into()),
                (3, "not json".into())
            ]
        );
    }

    #[test]
    fn csv_rows_become_typed_json() {
        let r = parse(
            InputFormat::Csv,
            b';',
            Bytes::from_static(
                b"id;name;price;ts\n1;a;1.5;2024-05-01T00:00:00.123Z\n2;;2;2024-05-01T01:00:00Z\n",
            ),
        )
        .unwrap();
        assert_eq!(
            payloads(&r),
            vec![
                (
                    0,
                    "{\"id\":1,\"name\":\"a\",\"price\":1.5,\"ts\":\"2024-05-01T00:00:00.123Z\"}"
                        .into()
                ),
                (
                    1,
                    "{\"id\":2,\"price\":2.0,\"ts\":\"2024-05-01T01:00:00Z\"}".into()
                )
            ]
        );
    }

    #[test]
    fn parquet_rows_become_json() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![7, 8])),
                Arc::new(StringArray::from(vec![Some("x"), None])),
            ],
        )
        .unwrap();
        let mut buf = Vec::new();
        let mut w = ArrowWriter::try_new(&mut buf, schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let r = parse(InputFormat::Parquet, b',', Bytes::from(buf)).unwrap();
        assert_eq!(
            payloads(&r),
            vec![
                (0, "{\"id\":7,\"name\":\"x\"}".into()),
                (1, "{\"id\":8}".into())
            ]
        );
    }

    #[test]
    fn bad_parquet_is_named() {
        let err = parse(InputFormat::Parquet, b',', Bytes::from_static(b"nope")).unwrap_err();
        assert!(err.to_string().contains("Parquet"), "{err}");
    }
}
