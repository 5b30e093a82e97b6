//! `ParquetSink` with field placeholders in `partition_by` and a late-data
//! policy, on a `file://` lake: rows land under escaped Hive paths, late rows
//! follow the policy and are counted in `Landed::late`, and a batch without
//! a placeholder's column is refused naming the field and the offsets.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arrow::array::{Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use tributary_config::ParquetSinkConfig;
use tributary_core::{Landed, RowBatch, Sink, TopicPartition};
use tributary_parquet_sink::ParquetSink;

const DAY: i64 = 86_400_000;
/// 2020-01-15T12:00:00Z.
const LATE: i64 = 1_579_089_600_000;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn config(root: &std::path::Path, late_data: serde_json::Value) -> ParquetSinkConfig {
    serde_json::from_value(serde_json::json!({
        "url": format!("file://{}", root.display()),
        "partition_by": "country={country}/dt=%Y-%m-%d",
        "late_data": late_data,
    }))
    .expect("sink config")
}

/// Rows at offsets `0..`, with these countries and record times.
fn batch(tp: &TopicPartition, countries: &[Option<&str>], times: &[i64]) -> RowBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("country", DataType::Utf8, true),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
    ]));
    let n = countries.len();
    let rows = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(0..n as i64)),
            Arc::new(StringArray::from(countries.to_vec())),
            Arc::new(TimestampMillisecondArray::from(times.to_vec()).with_timezone("UTC")),
        ],
    )
    .unwrap();
    RowBatch {
        partition: tp.clone(),
        first_offset: 0,
        last_offset: n as i64 - 1,
        source_records: n,
        rows,
        event_time_ms: times.to_vec(),
        rejects: Vec::new(),
        skipped: 0,
    }
}

async fn land(sink: &mut ParquetSink, tp: &TopicPartition, batch: RowBatch) -> Landed {
    sink.open(std::slice::from_ref(tp)).await.unwrap();
    sink.write(batch).await.unwrap();
    let mut out = sink.land(std::slice::from_ref(tp)).await;
    out.pop().unwrap().1.unwrap().expect("a landing")
}

/// The directories of the landed data files, sorted.
fn directories(landed: &Landed) -> Vec<String> {
    let mut dirs: Vec<String> = landed
        .files
        .iter()
        .map(|f| f.path.rsplit_once('/').unwrap().0.to_string())
        .collect();
    dirs.sort();
    dirs
}

/// `YYYY-MM-DD` of a UTC time (days from civil, proleptic Gregorian).
fn utc_date(ms: i64) -> String {
    let z = ms.div_euclid(DAY) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[tokio::test]
async fn late_rows_follow_the_policy_under_escaped_field_paths() {
    let tp = TopicPartition::new("places", 0);
    let countries = [
        Some("DE"),
        Some("a/b"),
        None,
        Some("DE"),
        Some("x=y"),
        Some(""),
    ];
    for policy in ["event_time", "processing_time"] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(
            dir.path(),
            serde_json::json!({ "policy": policy, "allowed_lateness": "1h" }),
        );
        let mut sink = ParquetSink::new(&cfg, "w").unwrap();
        let before = now_ms();
        let times = [before, before, before, LATE, before, before + 2 * DAY];
        let landed = land(&mut sink, &tp, batch(&tp, &countries, &times)).await;
        let after = now_ms();
        assert_eq!(landed.rows, 6);
        assert_eq!(landed.late, 2, "{policy}: one late, one too far ahead");
        // On-time rows carry `before`; late ones, under processing_time, the
        // time of the write, which is `before`'s day or (past midnight) `after`'s.
        let today = utc_date(before);
        let on_time = |day: &str| {
            vec![
                format!("country=DE/dt={day}"),
                format!("country=a%2Fb/dt={day}"),
                format!("country=__HIVE_DEFAULT_PARTITION__/dt={day}"),
                format!("country=x%3Dy/dt={day}"),
            ]
        };
        let late_in = |day: String| {
            vec![
                format!("country=DE/dt={day}"),
                format!("country=__HIVE_DEFAULT_PARTITION__/dt={day}"),
            ]
        };
        let candidates: Vec<Vec<String>> = if policy == "event_time" {
            vec![[
                on_time(&today),
                late_in("2020-01-15".into())[..1].to_vec(),
                late_in(utc_date(before + 2 * DAY))[1..].to_vec(),
            ]
            .concat()]
        } else {
            vec![
                on_time(&today),
                [on_time(&today), late_in(utc_date(after))].concat(),
            ]
        };
        let dirs = directories(&landed);
        let matches = candidates.into_iter().any(|mut c| {
            c.sort();
            c.dedup();
            c == dirs
        });
        assert!(matches, "{policy}: {dirs:?}");
        for f in &landed.files {
            assert!(dir.path().join(&f.path).is_file(), "{}", f.path);
        }
    }
}

#[tokio::test]
async fn without_late_data_nothing_is_counted() {
    let tp = TopicPartition::new("places", 0);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), serde_json::Value::Null);
    let mut sink = ParquetSink::new(&cfg, "w").unwrap();
    let landed = land(&mut sink, &tp, batch(&tp, &[Some("DE")], &[LATE])).await;
    assert_eq!(landed.late, 0);
    assert_eq!(directories(&landed), ["country=DE/dt=2020-01-15"]);
}

#[tokio::test]
async fn a_batch_without_the_field_is_refused_naming_it() {
    let tp = TopicPartition::new("places", 3);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), serde_json::Value::Null);
    cfg.partition_by = Some("region={region}/dt=%Y".into());
    let mut sink = ParquetSink::new(&cfg, "w").unwrap();
    sink.open(std::slice::from_ref(&tp)).await.unwrap();
    let e = sink
        .write(batch(&tp, &[Some("DE"), None], &[LATE, LATE]))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("places"), "{e}");
    assert!(e.contains("0..=1"), "{e}");
    assert!(
        e.contains("field \"region\" is not a column of the rows (columns: id, country, ts)"),
        "{e}"
    );
    // Nothing was buffered.
    assert!(sink.buffered().is_empty());
}
