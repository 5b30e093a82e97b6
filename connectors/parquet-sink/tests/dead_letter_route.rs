//! `ParquetSink` with a dead-letter route outside the lake (as the Kafka
//! topic route is plugged in), driven through the `Sink` trait on a
//! `file://` lake with a recording route: rejects go to the route before
//! the commit, the commit lists their positions, no dead-letter file is
//! written, a failed delivery commits nothing, and the route is told when
//! records of a range may already exist (first landing after `open`, or
//! after a failed attempt).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{Int64Array, RecordBatch, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use async_trait::async_trait;
use bytes::Bytes;
use tributary_config::{ParquetSinkConfig, StorageConfig};
use tributary_core::{
    DeadLetterDelivery, DeadLetterPositions, DeadLetterRequest, DeadLetterRoute, ErrorClass,
    Header, Reject, ResumeAt, RowBatch, Sink, SinkError, TopicPartition,
};
use tributary_lake::{conformance, Lake};
use tributary_parquet_sink::ParquetSink;

const TS: i64 = 1_795_478_400_000;

/// Records every request; hands out consecutive offsets; fails on demand;
/// answers "not settled" (records of a later range seen) on demand.
#[derive(Default)]
struct Recorder {
    requests: Mutex<Vec<DeadLetterRequest>>,
    next: AtomicI64,
    fail: AtomicBool,
    unsettled: AtomicBool,
}

#[async_trait]
impl DeadLetterRoute for Recorder {
    async fn deliver(&self, request: DeadLetterRequest) -> Result<DeadLetterDelivery, SinkError> {
        self.requests.lock().unwrap().push(request.clone());
        if self.fail.load(Ordering::SeqCst) {
            return Err(SinkError::DeadLetter {
                partition: request.partition,
                topic: "dlq".into(),
                first_offset: request.first_offset,
                last_offset: request.last_offset,
                message: "injected delivery failure".into(),
                class: ErrorClass::Retryable,
            });
        }
        let n = request.rejects.len() as i64;
        let first = self.next.fetch_add(n, Ordering::SeqCst);
        Ok(DeadLetterDelivery {
            positions: DeadLetterPositions {
                topic: "dlq".into(),
                partition: request.partition.partition,
                offsets: (first..first + n).collect(),
                scan_from: first + n,
            },
            settled: !self.unsettled.load(Ordering::SeqCst),
        })
    }
}

fn config(root: &std::path::Path) -> ParquetSinkConfig {
    serde_json::from_value(serde_json::json!({
        "url": format!("file://{}", root.display()),
        "flush": {"max_records": 1_000_000, "max_age": "1h"},
    }))
    .expect("sink config")
}

/// Offsets `first..first + n`; those in `bad` are rejects (with headers).
fn batch(tp: &TopicPartition, first: i64, n: i64, bad: &[i64]) -> RowBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
    ]));
    let (mut ids, mut rejects) = (Vec::new(), Vec::new());
    for offset in first..first + n {
        if bad.contains(&offset) {
            rejects.push(Reject {
                partition: tp.clone(),
                offset,
                timestamp_ms: Some(TS),
                key: Some(Bytes::from(format!("k{offset}"))),
                payload: Some(Bytes::from_static(b"{broken")),
                headers: vec![Header {
                    key: "trace".into(),
                    value: Some(Bytes::from(format!("t{offset}"))),
                }],
                reason: "not JSON".into(),
            });
        } else {
            ids.push(offset);
        }
    }
    let times = vec![TS; ids.len()];
    let rows = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(TimestampMillisecondArray::from(times.clone()).with_timezone("UTC")),
        ],
    )
    .unwrap();
    RowBatch {
        partition: tp.clone(),
        first_offset: first,
        last_offset: first + n - 1,
        source_records: n as usize,
        rows,
        event_time_ms: times,
        rejects,
        skipped: 0,
    }
}

async fn land(
    sink: &mut ParquetSink,
    tp: &TopicPartition,
) -> Result<Option<tributary_core::Landed>, SinkError> {
    sink.land(std::slice::from_ref(tp)).await.pop().unwrap().1
}

#[tokio::test]
async fn rejects_go_to_the_route_before_the_commit_that_lists_them() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let cfg = config(&root);
    let route = Arc::new(Recorder::default());
    let mut sink = ParquetSink::new(&cfg, "w")
        .unwrap()
        .with_dead_letter_route(route.clone());
    let tp = TopicPartition::new("orders", 3);
    sink.open(std::slice::from_ref(&tp)).await.unwrap();

    sink.write(batch(&tp, 0, 10, &[2, 7])).await.unwrap();
    let l = land(&mut sink, &tp).await.unwrap().unwrap();
    assert_eq!((l.rows, l.dead_lettered), (8, 2));
    assert!(
        l.files.iter().all(|f| f.path.ends_with(".parquet")),
        "{:?}",
        l.files
    );
    assert!(!root.join("_dead_letter").exists());

    sink.write(batch(&tp, 10, 5, &[12])).await.unwrap();
    land(&mut sink, &tp).await.unwrap().unwrap();
    // A range without rejects does not call the route.
    sink.write(batch(&tp, 15, 5, &[])).await.unwrap();
    land(&mut sink, &tp).await.unwrap().unwrap();

    let requests = route.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2);
    let offsets = |r: &DeadLetterRequest| r.rejects.iter().map(|x| x.offset).collect::<Vec<_>>();
    assert_eq!(offsets(&requests[0]), [2, 7]);
    assert_eq!((requests[0].first_offset, requests[0].last_offset), (0, 9));
    assert!(
        requests[0].may_exist,
        "the first landing after open must look for earlier attempts"
    );
    assert_eq!(requests[0].previous, None);
    assert_eq!(requests[0].rejects[0].headers[0].key, "trace");
    assert_eq!(offsets(&requests[1]), [12]);
    assert!(
        !requests[1].may_exist,
        "after a landing of this sink nothing can exist yet"
    );
    assert_eq!(requests[1].previous.as_ref().unwrap().offsets, [0, 1]);

    let lake = Lake::open(&cfg.url, &StorageConfig::default()).unwrap();
    let commits = lake.commits(&tp).await.unwrap();
    let positions: Vec<_> = commits
        .iter()
        .map(|c| c.dead_letter_topic.clone().unwrap())
        .collect();
    assert_eq!(positions[0].offsets, [0, 1]);
    assert_eq!(positions[1].offsets, [2]);
    assert!(positions[2].offsets.is_empty());
    assert_eq!(positions[2].scan_from, 3, "carried forward");
    assert_eq!(commits[0].dead_lettered, 2);
    conformance::assert_sound(&lake, &tp).await;
    let report = lake.verify(&tp, true).await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[tokio::test]
async fn a_failed_delivery_commits_nothing_and_the_retry_may_find_records() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let cfg = config(&root);
    let route = Arc::new(Recorder::default());
    let mut sink = ParquetSink::new(&cfg, "w")
        .unwrap()
        .with_dead_letter_route(route.clone());
    let tp = TopicPartition::new("orders", 0);
    sink.open(std::slice::from_ref(&tp)).await.unwrap();
    sink.write(batch(&tp, 0, 4, &[])).await.unwrap();
    land(&mut sink, &tp).await.unwrap().unwrap();

    route.fail.store(true, Ordering::SeqCst);
    sink.write(batch(&tp, 4, 6, &[5])).await.unwrap();
    let err = land(&mut sink, &tp).await.unwrap_err();
    assert!(matches!(err, SinkError::DeadLetter { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::Retryable);
    let lake = Lake::open(&cfg.url, &StorageConfig::default()).unwrap();
    assert_eq!(
        lake.commits(&tp).await.unwrap().len(),
        1,
        "nothing committed"
    );
    assert_eq!(sink.resume_point(&tp), ResumeAt::Offset(4));

    route.fail.store(false, Ordering::SeqCst);
    sink.write(batch(&tp, 4, 6, &[5])).await.unwrap();
    let l = land(&mut sink, &tp).await.unwrap().unwrap();
    assert_eq!((l.first_offset, l.dead_lettered), (4, 1));
    let requests = route.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2);
    assert!(
        requests[0].may_exist,
        "a landing without rejects after open settles nothing: a previous owner's \
         attempt may have covered this range too"
    );
    assert!(
        requests[1].may_exist,
        "the failed attempt may have written some"
    );
    conformance::assert_sound(&lake, &tp).await;
}

#[tokio::test]
async fn the_route_keeps_looking_until_it_answers_settled() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir.path().join("lake"));
    let route = Arc::new(Recorder::default());
    let mut sink = ParquetSink::new(&cfg, "w")
        .unwrap()
        .with_dead_letter_route(route.clone());
    let tp = TopicPartition::new("orders", 1);
    sink.open(std::slice::from_ref(&tp)).await.unwrap();
    // The route saw records of a later range (an earlier attempt that
    // covered more than this landing).
    route.unsettled.store(true, Ordering::SeqCst);
    sink.write(batch(&tp, 0, 3, &[1])).await.unwrap();
    land(&mut sink, &tp).await.unwrap().unwrap();
    route.unsettled.store(false, Ordering::SeqCst);
    for first in [3, 6, 9] {
        sink.write(batch(&tp, first, 3, &[first + 1]))
            .await
            .unwrap();
        land(&mut sink, &tp).await.unwrap().unwrap();
    }
    // Reopening (a new assignment) forgets it again.
    sink.open(std::slice::from_ref(&tp)).await.unwrap();
    sink.write(batch(&tp, 12, 3, &[13])).await.unwrap();
    land(&mut sink, &tp).await.unwrap().unwrap();
    let may_exist: Vec<bool> = route
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.may_exist)
        .collect();
    assert_eq!(may_exist, [true, true, false, false, true]);
}
