//! A schema that grows while a source partition is buffered: the sink starts
//! another file for the time partition instead of failing, reuses a file
//! when rows come back with a schema it already holds, and lands all of them
//! in one commit that verifies.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, AsArray, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tributary_config::{ParquetSinkConfig, StorageConfig};
use tributary_core::{RowBatch, Sink, TopicPartition};
use tributary_lake::{conformance, FileKind, Lake, VerifyOptions};
use tributary_parquet_sink::ParquetSink;

/// 2026-11-24T00:00:00Z.
const H0: i64 = 1_795_478_400_000;
const HOUR: i64 = 3_600_000;

fn ts_field() -> Field {
    Field::new(
        "ts",
        DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        false,
    )
}

fn narrow() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        ts_field(),
    ]))
}

fn wide() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        ts_field(),
        Field::new("note", DataType::Utf8, true),
    ]))
}

/// `n` rows at offsets `first..`, record time `ts`, in `schema` (a `note`
/// column, when there is one, holds `n<offset>`).
fn rows(tp: &TopicPartition, schema: &SchemaRef, first: i64, n: usize, ts: i64) -> RowBatch {
    let ids: Vec<i64> = (first..first + n as i64).collect();
    let mut columns: Vec<Arc<dyn Array>> = vec![
        Arc::new(Int64Array::from(ids.clone())),
        Arc::new(TimestampMillisecondArray::from(vec![ts; n]).with_timezone("UTC")),
    ];
    if schema.fields().len() == 3 {
        columns.push(Arc::new(StringArray::from_iter_values(
            ids.iter().map(|i| format!("n{i}")),
        )));
    }
    RowBatch {
        partition: tp.clone(),
        first_offset: first,
        last_offset: first + n as i64 - 1,
        source_records: n,
        rows: RecordBatch::try_new(schema.clone(), columns).expect("batch"),
        event_time_ms: vec![ts; n],
        rejects: Vec::new(),
        skipped: 0,
    }
}

#[tokio::test]
async fn a_growing_schema_rolls_the_file_within_one_landing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg: ParquetSinkConfig = serde_json::from_value(serde_json::json!({
        "url": format!("file://{}", dir.path().join("lake").display()),
        "partition_by": "dt=%Y-%m-%d/hour=%H",
        "row_group_size": 1024,
    }))
    .expect("sink config");
    let mut sink = ParquetSink::new(&cfg, "worker-1").expect("sink");
    let tp = TopicPartition::new("orders", 0);
    sink.open(std::slice::from_ref(&tp)).await.expect("open");

    sink.write(rows(&tp, &narrow(), 0, 3, H0))
        .await
        .expect("narrow rows");
    let one_file = sink.buffered_bytes_by_partition()[0].1;
    // The schema grows: hour 00 gets a second file.
    sink.write(rows(&tp, &wide(), 3, 3, H0))
        .await
        .expect("wide rows");
    let two_files = sink.buffered_bytes_by_partition()[0].1;
    assert!(
        two_files > one_file,
        "memory counts both files: {one_file} then {two_files}"
    );
    // Rows with a schema already held go to that file: no file per alternation.
    for k in 0..4 {
        let schema = if k % 2 == 0 { narrow() } else { wide() };
        sink.write(rows(&tp, &schema, 6 + 2 * k, 2, H0))
            .await
            .expect("alternating rows");
    }
    // Another hour starts with the wide schema: one file there.
    sink.write(rows(&tp, &wide(), 14, 2, H0 + HOUR))
        .await
        .expect("next hour");

    // A schema that is not a growth of the file's (id turned string) is refused.
    let bad_schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        ts_field(),
        Field::new("note", DataType::Utf8, true),
    ]));
    let mut bad = rows(&tp, &wide(), 16, 1, H0);
    bad.rows = RecordBatch::try_new(
        bad_schema,
        vec![
            Arc::new(StringArray::from(vec!["16"])),
            Arc::new(TimestampMillisecondArray::from(vec![H0]).with_timezone("UTC")),
            Arc::new(StringArray::from(vec![None::<&str>])),
        ],
    )
    .expect("batch");
    let err = sink.write(bad).await.expect_err("an incompatible schema");
    assert!(
        err.to_string().contains(
            r#"row schema changed incompatibly: field "id": type Int64 cannot change to Utf8"#
        ),
        "{err}"
    );

    let mut results = sink.land(std::slice::from_ref(&tp)).await;
    let (_, landed) = results.pop().expect("one result");
    let landed = landed.expect("landed").expect("a landing");
    assert_eq!(
        (landed.first_offset, landed.last_offset, landed.rows),
        (0, 15, 16)
    );
    assert_eq!(landed.files.len(), 3, "{:?}", landed.files);

    let lake = Lake::open(&cfg.url, &StorageConfig::default()).expect("lake");
    conformance::assert_sound(&lake, &tp).await;
    let report = lake
        .verify_with(&tp, &VerifyOptions::contents())
        .await
        .expect("verify");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.rows, 16);

    // Each file: one schema, the rows its commit says; every offset once.
    let commits = lake.commits(&tp).await.expect("commits");
    assert_eq!(commits.len(), 1);
    let mut ids_by_file = BTreeMap::new();
    let mut names = std::collections::BTreeSet::new();
    for f in &commits[0].files {
        assert_eq!(f.kind, FileKind::Data);
        assert!(
            names.insert(f.path.clone()),
            "file names are unique: {}",
            f.path
        );
        let bytes = lake.read(&f.path).await.expect("read");
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).expect("parquet");
        let fields = reader.schema().fields().len();
        let mut ids = Vec::new();
        for batch in reader.build().expect("reader") {
            let batch = batch.expect("row group");
            ids.extend(
                batch
                    .column(0)
                    .as_primitive::<Int64Type>()
                    .values()
                    .iter()
                    .copied(),
            );
            if fields == 3 {
                let notes = batch.column(2).as_string::<i32>();
                assert!((0..notes.len()).all(|i| notes.is_valid(i)));
            }
        }
        assert_eq!(ids.len() as u64, f.rows, "{}", f.path);
        let (dir, _) = f.path.rsplit_once('/').expect("partition dir");
        ids_by_file.insert((dir.to_string(), fields), ids);
    }
    let expected = BTreeMap::from([
        (
            ("dt=2026-11-24/hour=00".to_string(), 2),
            vec![0, 1, 2, 6, 7, 10, 11],
        ),
        (
            ("dt=2026-11-24/hour=00".to_string(), 3),
            vec![3, 4, 5, 8, 9, 12, 13],
        ),
        (("dt=2026-11-24/hour=01".to_string(), 3), vec![14, 15]),
    ]);
    assert_eq!(ids_by_file, expected);
}
