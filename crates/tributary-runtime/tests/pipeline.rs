//! The runtime's commit rules, checked with a scripted source and an
//! in-memory sink: offsets are committed only after landing, a failed landing
//! re-reads its partition, revokes land before the acknowledgement, lost
//! partitions are not landed, fenced partitions are released.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Int64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};
use tributary_core::*;
use tributary_runtime::{Pipeline, Shutdown};

fn tp(p: i32) -> TopicPartition {
    TopicPartition::new("t", p)
}

fn batch(p: i32, offsets: std::ops::Range<i64>) -> SourceBatch {
    SourceBatch {
        partition: tp(p),
        records: offsets
            .map(|o| RawRecord {
                offset: o,
                timestamp_ms: Some(0),
                key: None,
                payload: Some(bytes::Bytes::from(o.to_string())),
                headers: Vec::new(),
            })
            .collect(),
    }
}

/// What the fake source saw, in order.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Commit(Vec<(TopicPartition, i64)>),
    Seek(TopicPartition, i64),
    Closed,
}

struct ScriptedSource {
    events: mpsc::UnboundedReceiver<SourceEvent>,
    seen: Arc<Mutex<Vec<Seen>>>,
    fence: Arc<Mutex<Option<TopicPartition>>>,
}

#[async_trait]
impl Source for ScriptedSource {
    async fn next(&mut self) -> Result<SourceEvent, SourceError> {
        self.events.recv().await.ok_or(SourceError::Closed)
    }
    async fn commit(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<(), SourceError> {
        if let Some(f) = self.fence.lock().unwrap().take() {
            return Err(SourceError::Fenced {
                partitions: vec![f],
                reason: "ILLEGAL_GENERATION".into(),
            });
        }
        self.seen
            .lock()
            .unwrap()
            .push(Seen::Commit(offsets.to_vec()));
        Ok(())
    }
    async fn seek(&mut self, partition: &TopicPartition, offset: i64) -> Result<(), SourceError> {
        self.seen
            .lock()
            .unwrap()
            .push(Seen::Seek(partition.clone(), offset));
        Ok(())
    }
    async fn close(self: Box<Self>) {
        self.seen.lock().unwrap().push(Seen::Closed);
    }
}

/// One Int64 column holding each record's offset.
struct OffsetConverter;

impl Converter for OffsetConverter {
    fn schema(&self) -> Option<arrow::datatypes::SchemaRef> {
        None
    }
    fn convert(&mut self, batch: SourceBatch) -> Result<RowBatch, ConvertError> {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "offset",
            DataType::Int64,
            false,
        )]));
        let offsets: Vec<i64> = batch.records.iter().map(|r| r.offset).collect();
        let col: ArrayRef = Arc::new(Int64Array::from(offsets.clone()));
        Ok(RowBatch {
            partition: batch.partition.clone(),
            first_offset: offsets[0],
            last_offset: *offsets.last().unwrap(),
            source_records: offsets.len(),
            rows: RecordBatch::try_new(schema, vec![col]).unwrap(),
            event_time_ms: vec![0; offsets.len()],
            rejects: vec![],
            skipped: 0,
        })
    }
}

/// Lands into a shared map; can be told to fail the next landing of a
/// partition, or the next recoveries of assigned partitions.
#[derive(Default)]
struct Lake {
    landed: BTreeMap<TopicPartition, Vec<i64>>,
    fail_next: Option<TopicPartition>,
    /// Each `open` takes the first entry, if any, and fails with that class.
    fail_opens: Vec<ErrorClass>,
    opens: u32,
}

struct MemorySink {
    lake: Arc<Mutex<Lake>>,
    buffers: HashMap<TopicPartition, Vec<i64>>,
    max_records: usize,
}

impl MemorySink {
    fn next_of(&self, t: &TopicPartition) -> Option<i64> {
        self.lake
            .lock()
            .unwrap()
            .landed
            .get(t)
            .and_then(|v| v.last())
            .map(|o| o + 1)
    }
}

#[async_trait]
impl Sink for MemorySink {
    async fn open(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, ResumeAt)>, SinkError> {
        {
            let mut lake = self.lake.lock().unwrap();
            lake.opens += 1;
            if !lake.fail_opens.is_empty() {
                let class = lake.fail_opens.remove(0);
                return Err(SinkError::Storage {
                    operation: "list",
                    path: "_tributary/commits/t".into(),
                    source: "injected HTTP 503".into(),
                    class,
                });
            }
        }
        Ok(partitions
            .iter()
            .map(|t| {
                (
                    t.clone(),
                    self.next_of(t).map_or(ResumeAt::Default, ResumeAt::Offset),
                )
            })
            .collect())
    }
    async fn write(&mut self, batch: RowBatch) -> Result<(), SinkError> {
        let col = batch
            .rows
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        self.buffers
            .entry(batch.partition)
            .or_default()
            .extend(col.values().iter());
        Ok(())
    }
    fn due(&self, _now: Instant) -> Vec<TopicPartition> {
        self.buffers
            .iter()
            .filter(|(_, b)| b.len() >= self.max_records)
            .map(|(t, _)| t.clone())
            .collect()
    }
    fn next_deadline(&self) -> Option<Instant> {
        None
    }
    async fn land(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Vec<(TopicPartition, Result<Option<Landed>, SinkError>)> {
        let mut out = vec![];
        for t in partitions {
            let Some(buf) = self.buffers.remove(t) else {
                out.push((t.clone(), Ok(None)));
                continue;
            };
            let mut lake = self.lake.lock().unwrap();
            if lake.fail_next.as_ref() == Some(t) {
                lake.fail_next = None;
                out.push((
                    t.clone(),
                    Err(SinkError::Storage {
                        operation: "put",
                        path: "x".into(),
                        source: "injected 503".into(),
                        class: ErrorClass::Retryable,
                    }),
                ));
                continue;
            }
            let landed = Landed {
                partition: t.clone(),
                seq: 0,
                first_offset: buf[0],
                last_offset: *buf.last().unwrap(),
                rows: buf.len() as u64,
                dead_lettered: 0,
                skipped: 0,
                late: 0,
                files: vec![],
            };
            lake.landed.entry(t.clone()).or_default().extend(buf);
            out.push((t.clone(), Ok(Some(landed))));
        }
        out
    }
    fn resume_point(&self, partition: &TopicPartition) -> ResumeAt {
        self.next_of(partition)
            .map_or(ResumeAt::Offset(0), ResumeAt::Offset)
    }
    fn close_partitions(&mut self, partitions: &[TopicPartition]) {
        for t in partitions {
            self.buffers.remove(t);
        }
    }
    fn buffered(&self) -> Vec<TopicPartition> {
        self.buffers.keys().cloned().collect()
    }
    fn buffered_bytes(&self) -> usize {
        0
    }
}

struct Harness {
    events: mpsc::UnboundedSender<SourceEvent>,
    seen: Arc<Mutex<Vec<Seen>>>,
    fence: Arc<Mutex<Option<TopicPartition>>>,
    lake: Arc<Mutex<Lake>>,
    stop: tokio::sync::watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<Result<(), tributary_runtime::RuntimeError>>>,
    control: tributary_runtime::PipelineControl,
    status: tokio::sync::watch::Receiver<tributary_runtime::PipelineStatus>,
}

fn start(max_records: usize) -> Harness {
    let (events, rx) = mpsc::unbounded_channel();
    let seen = Arc::new(Mutex::new(vec![]));
    let fence = Arc::new(Mutex::new(None));
    let lake = Arc::new(Mutex::new(Lake::default()));
    let source = ScriptedSource {
        events: rx,
        seen: seen.clone(),
        fence: fence.clone(),
    };
    let sink = MemorySink {
        lake: lake.clone(),
        buffers: HashMap::new(),
        max_records,
    };
    let pipeline = Pipeline::new(
        "test",
        Box::new(source),
        Box::new(OffsetConverter),
        Box::new(sink),
        Duration::from_secs(5),
    );
    let (stop, shutdown) = Shutdown::new();
    let control = pipeline.control();
    let status = pipeline.status();
    let task = tokio::spawn(pipeline.run(shutdown));
    Harness {
        events,
        seen,
        fence,
        lake,
        stop,
        task: Some(task),
        control,
        status,
    }
}

impl Harness {
    async fn finish(&mut self) {
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
    async fn assign(&self, parts: &[i32]) -> Vec<(TopicPartition, ResumeAt)> {
        let (ack, rx) = oneshot::channel();
        self.events
            .send(SourceEvent::Assigned {
                partitions: parts.iter().map(|p| tp(*p)).collect(),
                ack,
            })
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx)
            .await
            .unwrap()
            .unwrap()
    }
    fn send(&self, b: SourceBatch) {
        self.events.send(SourceEvent::Records(vec![b])).unwrap();
    }
    fn landed(&self, p: i32) -> Vec<i64> {
        self.lake
            .lock()
            .unwrap()
            .landed
            .get(&tp(p))
            .cloned()
            .unwrap_or_default()
    }
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
    /// Waits until `cond` holds on what the source saw.
    async fn until(&self, what: &str, cond: impl Fn(&[Seen]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if cond(&self.seen()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; saw {:?}",
                self.seen()
            );
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

#[tokio::test]
async fn commits_only_what_landed_and_drains_on_end() {
    let mut h = start(10);
    assert_eq!(h.assign(&[0, 1]).await.len(), 2);
    h.send(batch(0, 0..10)); // due: lands and commits 10
    h.send(batch(1, 0..3)); // not due until the end
    h.until("commit of p0", |s| {
        s.contains(&Seen::Commit(vec![(tp(0), 10)]))
    })
    .await;
    assert_eq!(h.landed(1), Vec::<i64>::new(), "p1 is below the threshold");
    h.events.send(SourceEvent::End).unwrap();
    h.finish().await;
    assert_eq!(h.landed(0), (0..10).collect::<Vec<_>>());
    assert_eq!(h.landed(1), vec![0, 1, 2]);
    let seen = h.seen();
    assert!(seen.contains(&Seen::Commit(vec![(tp(1), 3)])), "{seen:?}");
    assert_eq!(seen.last(), Some(&Seen::Closed));
}

#[tokio::test]
async fn failed_landing_rereads_and_never_commits_the_failed_range() {
    let mut h = start(5);
    h.assign(&[0]).await;
    h.send(batch(0, 0..5));
    h.until("first commit", |s| {
        s.contains(&Seen::Commit(vec![(tp(0), 5)]))
    })
    .await;
    h.lake.lock().unwrap().fail_next = Some(tp(0));
    h.send(batch(0, 5..10)); // landing fails → seek to 5
    h.until("seek back", |s| s.contains(&Seen::Seek(tp(0), 5)))
        .await;
    // Stale records still in flight before the seek takes effect are dropped.
    h.send(batch(0, 10..12));
    h.events
        .send(SourceEvent::Seeked {
            partition: tp(0),
            offset: 5,
        })
        .unwrap();
    h.send(batch(0, 5..10));
    h.until("commit after re-read", |s| {
        s.contains(&Seen::Commit(vec![(tp(0), 10)]))
    })
    .await;
    let _ = h.stop.send(true);
    h.finish().await;
    assert_eq!(
        h.landed(0),
        (0..10).collect::<Vec<_>>(),
        "every offset exactly once"
    );
    let commits: Vec<_> = h
        .seen()
        .into_iter()
        .filter(|s| matches!(s, Seen::Commit(_)))
        .collect();
    assert_eq!(
        commits,
        vec![
            Seen::Commit(vec![(tp(0), 5)]),
            Seen::Commit(vec![(tp(0), 10)])
        ]
    );
}

#[tokio::test]
async fn revoke_lands_and_commits_before_the_ack_and_lost_does_not_land() {
    let mut h = start(1_000);
    h.assign(&[0, 1]).await;
    h.send(batch(0, 0..4));
    h.send(batch(1, 0..4));
    let (ack, rx) = oneshot::channel();
    h.events
        .send(SourceEvent::Revoked {
            partitions: vec![tp(0)],
            ack,
        })
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), rx)
        .await
        .unwrap()
        .unwrap();
    // By the time the ack arrives, the range is landed and committed.
    assert_eq!(h.landed(0), vec![0, 1, 2, 3]);
    assert!(h.seen().contains(&Seen::Commit(vec![(tp(0), 4)])));
    // Records of a revoked partition that are still in flight are ignored.
    h.send(batch(0, 4..6));
    h.events.send(SourceEvent::Lost(vec![tp(1)])).unwrap();
    h.events.send(SourceEvent::End).unwrap();
    h.finish().await;
    assert_eq!(h.landed(0), vec![0, 1, 2, 3]);
    assert_eq!(
        h.landed(1),
        Vec::<i64>::new(),
        "a lost partition is never landed"
    );
    assert!(!h
        .seen()
        .iter()
        .any(|s| matches!(s, Seen::Commit(c) if c.iter().any(|(t, _)| *t == tp(1)))));
}

#[tokio::test]
async fn fenced_commit_releases_the_partition() {
    let mut h = start(3);
    h.assign(&[0]).await;
    *h.fence.lock().unwrap() = Some(tp(0));
    h.send(batch(0, 0..3)); // lands; the offset commit is fenced
                            // After fencing the worker drops the partition's records until reassigned.
    h.send(batch(0, 3..6));
    h.events.send(SourceEvent::End).unwrap();
    h.finish().await;
    assert_eq!(
        h.landed(0),
        vec![0, 1, 2],
        "nothing written after the fence"
    );
    assert!(!h.seen().iter().any(|s| matches!(s, Seen::Commit(_))));
}

#[tokio::test]
async fn reassignment_resumes_from_the_lake() {
    let mut h = start(2);
    h.assign(&[0]).await;
    h.send(batch(0, 0..2));
    h.until("commit", |s| s.contains(&Seen::Commit(vec![(tp(0), 2)])))
        .await;
    let (ack, rx) = oneshot::channel();
    h.events
        .send(SourceEvent::Revoked {
            partitions: vec![tp(0)],
            ack,
        })
        .unwrap();
    rx.await.unwrap();
    assert_eq!(h.assign(&[0]).await, vec![(tp(0), ResumeAt::Offset(2))]);
    let _ = h.stop.send(true);
    h.finish().await;
}

#[tokio::test]
async fn assignment_retries_transient_recovery_failures() {
    let mut h = start(2);
    h.lake.lock().unwrap().fail_opens = vec![ErrorClass::Retryable, ErrorClass::Retryable];
    // Two failures, then the answer: after backoffs of about 0.5 s and 1 s.
    assert_eq!(h.assign(&[0]).await, vec![(tp(0), ResumeAt::Default)]);
    assert_eq!(h.lake.lock().unwrap().opens, 3);
    h.send(batch(0, 0..2));
    h.until("commit", |s| s.contains(&Seen::Commit(vec![(tp(0), 2)])))
        .await;
    let _ = h.stop.send(true);
    h.finish().await;
}

#[tokio::test]
async fn assignment_fails_the_pipeline_on_a_permanent_recovery_error() {
    let mut h = start(2);
    h.lake.lock().unwrap().fail_opens = vec![ErrorClass::Permanent];
    let (ack, rx) = oneshot::channel();
    h.events
        .send(SourceEvent::Assigned {
            partitions: vec![tp(0)],
            ack,
        })
        .unwrap();
    let task = h.task.take().unwrap();
    let result = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    let e = result.expect_err("a permanent recovery error stops the pipeline");
    assert!(e.to_string().contains("injected HTTP 503"), "{e}");
    assert!(
        rx.await.is_err(),
        "no resume positions for a failed recovery"
    );
    assert_eq!(h.lake.lock().unwrap().opens, 1);
}

#[tokio::test]
async fn shutdown_interrupts_recovery_retries() {
    let mut h = start(2);
    h.lake.lock().unwrap().fail_opens = vec![ErrorClass::Retryable; 100];
    let (ack, rx) = oneshot::channel();
    h.events
        .send(SourceEvent::Assigned {
            partitions: vec![tp(0)],
            ack,
        })
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.lake.lock().unwrap().opens == 0 {
        assert!(Instant::now() < deadline, "open was never called");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let _ = h.stop.send(true);
    h.finish().await;
    assert!(rx.await.is_err(), "the partitions were left unanswered");
    assert!(h.lake.lock().unwrap().opens < 5);
}

/// A source that cannot pause itself is not polled while paused: records
/// wait in it, the assignment stays, and they land after resume.
#[tokio::test]
async fn pause_stops_consuming_and_resume_lands_what_waited() {
    use tributary_runtime::PipelineState;
    let mut h = start(10);
    h.assign(&[0]).await;
    h.send(batch(0, 0..10));
    h.until("first commit", |s| {
        s.contains(&Seen::Commit(vec![(tp(0), 10)]))
    })
    .await;
    h.control.pause().await.unwrap();
    assert_eq!(h.status.borrow().state, PipelineState::Paused);
    h.send(batch(0, 10..20));
    // Commands are handled in order with events: once a second pause is
    // answered the loop has turned, and it has not taken the records.
    h.control.pause().await.unwrap();
    {
        let s = h.status.borrow();
        assert_eq!(s.totals.consumed, 10, "nothing consumed while paused");
        assert!(s.partitions[&tp(0)].assigned, "still assigned while paused");
    }
    h.control.resume().await.unwrap();
    h.until("commit after resume", |s| {
        s.contains(&Seen::Commit(vec![(tp(0), 20)]))
    })
    .await;
    assert_eq!(h.status.borrow().state, PipelineState::Running);
    h.events.send(SourceEvent::End).unwrap();
    h.finish().await;
    assert_eq!(h.landed(0), (0..20).collect::<Vec<_>>());
}
