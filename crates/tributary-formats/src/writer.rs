//! Parquet writer settings from the sink configuration.

use parquet::basic::{Compression as Codec, GzipLevel, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use tributary_config::{Compression, ParquetSinkConfig};

use crate::error::FormatError;

/// The `created_by` string of every file Tributary writes.
pub const CREATED_BY: &str = concat!("tributary ", env!("CARGO_PKG_VERSION"));

/// zstd level when none is configured: 1, pyarrow's (Arrow C++'s) default
/// for Parquet. zstd's own default, 3, is slower to write for files only a
/// little smaller (2.5 % on the benchmark's W1 records).
const DEFAULT_ZSTD_LEVEL: i32 = 1;
/// gzip's (zlib's) own default level.
const DEFAULT_GZIP_LEVEL: i32 = 6;

/// Writer properties for a Parquet sink: codec and level, row-group size,
/// statistics, `created_by` and a widely readable format version.
///
/// Files are written as Parquet format 1.0 data pages (PLAIN and dictionary
/// encodings only), which every reader handles (pyarrow, DuckDB, Spark, Trino),
/// with page-level statistics and `created_by = "tributary <version>"`. Arrow
/// timestamps with a zone land as `TIMESTAMP(isAdjustedToUTC = true)`, naive
/// ones as `isAdjustedToUTC = false`. `lz4` means Parquet's `LZ4_RAW`; levels
/// default to zstd 1 (as pyarrow writes Parquet) and gzip 6 (zlib's default).
///
/// Fails when `compression_level` is out of the codec's range (zstd 1–22,
/// gzip 0–9), is set for a codec without levels (snappy, lz4, none), or when
/// `row_group_size` is 0.
pub fn writer_properties(cfg: &ParquetSinkConfig) -> Result<WriterProperties, FormatError> {
    let level = cfg.compression_level;
    let codec = match cfg.compression {
        Compression::Zstd => {
            let level = level.unwrap_or(DEFAULT_ZSTD_LEVEL);
            Codec::ZSTD(ZstdLevel::try_new(level).map_err(|_| bad_level("zstd", level, "1–22"))?)
        }
        Compression::Gzip => {
            let level = level.unwrap_or(DEFAULT_GZIP_LEVEL);
            let checked = u32::try_from(level)
                .ok()
                .and_then(|l| GzipLevel::try_new(l).ok())
                .ok_or_else(|| bad_level("gzip", level, "0–9"))?;
            Codec::GZIP(checked)
        }
        Compression::Snappy => no_level(level, "snappy", Codec::SNAPPY)?,
        Compression::Lz4 => no_level(level, "lz4", Codec::LZ4_RAW)?,
        Compression::None => no_level(level, "none", Codec::UNCOMPRESSED)?,
    };
    if cfg.row_group_size == 0 {
        return Err(FormatError::Parquet {
            key: "row_group_size",
            message: "must be at least 1".into(),
        });
    }
    let row_group_bytes = usize::try_from(cfg.row_group_bytes.0)
        .ok()
        .filter(|b| *b > 0)
        .ok_or_else(|| FormatError::Parquet {
            key: "row_group_bytes",
            message: "must be at least 1 byte".into(),
        })?;
    Ok(WriterProperties::builder()
        .set_writer_version(WriterVersion::PARQUET_1_0)
        .set_compression(codec)
        .set_max_row_group_row_count(Some(cfg.row_group_size))
        .set_max_row_group_bytes(Some(row_group_bytes))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_created_by(CREATED_BY.to_string())
        .build())
}

fn bad_level(codec: &str, level: i32, range: &str) -> FormatError {
    FormatError::Parquet {
        key: "compression_level",
        message: format!("{level} is not a {codec} level (expected {range})"),
    }
}

fn no_level(level: Option<i32>, codec: &str, value: Codec) -> Result<Codec, FormatError> {
    match level {
        None => Ok(value),
        Some(_) => Err(FormatError::Parquet {
            key: "compression_level",
            message: format!("compression {codec:?} has no levels; remove compression_level"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, Int64Array, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use arrow::record_batch::RecordBatch;
    use bytes::Bytes;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ArrowWriter;
    use parquet::basic::{LogicalType, TimeUnit as ParquetTimeUnit};
    use parquet::file::reader::{FileReader, SerializedFileReader};

    use super::*;

    fn sink(extra: serde_json::Value) -> ParquetSinkConfig {
        let mut v = serde_json::json!({"url": "file:///tmp/lake"});
        if let (Some(v), serde_json::Value::Object(extra)) = (v.as_object_mut(), extra) {
            v.extend(extra);
        }
        serde_json::from_value(v).unwrap()
    }

    fn write(batch: &RecordBatch, props: WriterProperties) -> Bytes {
        let mut buf = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).unwrap();
        writer.write(batch).unwrap();
        writer.close().unwrap();
        Bytes::from(buf)
    }

    fn sample_batch(rows: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new(
                "at_utc",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new(
                "at_naive",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                true,
            ),
        ]));
        let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..rows));
        let utc: ArrayRef = Arc::new(
            TimestampMicrosecondArray::from_iter_values(
                (0..rows).map(|i| 1_795_000_000_000_000 + i),
            )
            .with_timezone("UTC"),
        );
        let naive: ArrayRef = Arc::new(TimestampMicrosecondArray::from_iter_values(
            (0..rows).map(|i| 1_795_000_000_000_000 + i),
        ));
        RecordBatch::try_new(schema, vec![ids, utc, naive]).unwrap()
    }

    #[test]
    fn codecs_map_to_parquet_codecs() {
        let cases = [
            (
                serde_json::json!({}),
                Codec::ZSTD(ZstdLevel::try_new(1).unwrap()),
            ),
            (
                serde_json::json!({"compression": "zstd", "compression_level": 9}),
                Codec::ZSTD(ZstdLevel::try_new(9).unwrap()),
            ),
            (serde_json::json!({"compression": "snappy"}), Codec::SNAPPY),
            (serde_json::json!({"compression": "lz4"}), Codec::LZ4_RAW),
            (
                serde_json::json!({"compression": "gzip"}),
                Codec::GZIP(GzipLevel::try_new(6).unwrap()),
            ),
            (
                serde_json::json!({"compression": "gzip", "compression_level": 9}),
                Codec::GZIP(GzipLevel::try_new(9).unwrap()),
            ),
            (
                serde_json::json!({"compression": "none"}),
                Codec::UNCOMPRESSED,
            ),
        ];
        for (cfg, expected) in cases {
            let props = writer_properties(&sink(cfg.clone())).unwrap();
            let col = parquet::schema::types::ColumnPath::from("x");
            assert_eq!(props.compression(&col), expected, "{cfg}");
            assert_eq!(props.writer_version(), WriterVersion::PARQUET_1_0);
            assert_eq!(props.created_by(), CREATED_BY);
            assert_eq!(props.statistics_enabled(&col), EnabledStatistics::Page);
        }
    }

    #[test]
    fn bad_settings_name_the_key() {
        let cases = [
            (
                serde_json::json!({"compression": "zstd", "compression_level": 30}),
                "sink.compression_level: 30 is not a zstd level",
            ),
            (
                serde_json::json!({"compression": "gzip", "compression_level": 10}),
                "sink.compression_level: 10 is not a gzip level",
            ),
            (
                serde_json::json!({"compression": "gzip", "compression_level": -1}),
                "sink.compression_level: -1 is not a gzip level",
            ),
            (
                serde_json::json!({"compression": "snappy", "compression_level": 1}),
                "sink.compression_level: compression \"snappy\" has no levels",
            ),
            (
                serde_json::json!({"row_group_size": 0}),
                "sink.row_group_size: must be at least 1",
            ),
            (
                serde_json::json!({"row_group_bytes": 0}),
                "sink.row_group_bytes: must be at least 1 byte",
            ),
        ];
        for (cfg, expected) in cases {
            let e = writer_properties(&sink(cfg.clone()))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(expected), "{cfg}: {e}");
        }
    }

    #[test]
    fn row_groups_end_at_row_group_bytes() {
        let batch = sample_batch(1_000);
        let rows_only = write(
            &batch,
            writer_properties(&sink(serde_json::json!({}))).unwrap(),
        );
        let meta = SerializedFileReader::new(rows_only)
            .unwrap()
            .metadata()
            .clone();
        assert_eq!(meta.num_row_groups(), 1, "1,000 rows, far below 32 MiB");
        let capped =
            writer_properties(&sink(serde_json::json!({"row_group_bytes": "4KiB"}))).unwrap();
        // The writer ends a row group once what it holds reaches the limit,
        // looking when rows arrive: write them in slices, as the sink does.
        let mut buf = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut buf, batch.schema(), Some(capped)).unwrap();
        for start in (0..1_000).step_by(100) {
            writer.write(&batch.slice(start, 100)).unwrap();
        }
        writer.close().unwrap();
        let meta = SerializedFileReader::new(Bytes::from(buf))
            .unwrap()
            .metadata()
            .clone();
        assert!(
            meta.num_row_groups() > 1,
            "{} row group(s)",
            meta.num_row_groups()
        );
        assert_eq!(meta.file_metadata().num_rows(), 1_000);
    }

    #[test]
    fn written_file_has_utc_timestamps_codec_row_groups_and_stats() {
        let props = writer_properties(&sink(serde_json::json!({"row_group_size": 4}))).unwrap();
        let batch = sample_batch(10);
        let file = write(&batch, props);

        let reader = SerializedFileReader::new(file.clone()).unwrap();
        let meta = reader.metadata();
        assert_eq!(meta.file_metadata().created_by(), Some(CREATED_BY));
        assert_eq!(meta.file_metadata().num_rows(), 10);
        assert_eq!(meta.num_row_groups(), 3, "10 rows at 4 per row group");

        let schema = meta.file_metadata().schema_descr();
        let utc = LogicalType::timestamp(true, ParquetTimeUnit::MICROS);
        let naive = LogicalType::timestamp(false, ParquetTimeUnit::MICROS);
        assert_eq!(schema.column(1).logical_type_ref(), Some(&utc));
        assert_eq!(schema.column(2).logical_type_ref(), Some(&naive));

        for rg in meta.row_groups() {
            for col in rg.columns() {
                assert!(
                    matches!(col.compression(), Codec::ZSTD(_)),
                    "{:?}",
                    col.compression()
                );
                assert!(
                    col.statistics().is_some(),
                    "statistics for {}",
                    col.column_path()
                );
            }
        }

        // And the rows come back as they went in, zone included.
        let rows: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let back = arrow::compute::concat_batches(&rows[0].schema(), &rows).unwrap();
        assert_eq!(back, batch);
    }
}
