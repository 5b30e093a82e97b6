//! `ParquetSink` driven through the `Sink` trait on a `file://` lake in a
//! temporary directory (and, for storage failures, on an in-memory store
//! that fails puts on demand), with hand-built `RowBatch`es of
//! `id: Int64` (= the record's offset) and `ts: Timestamp(ms, UTC)`.
//!
//! Every test ends by checking the lake the way a reader would: the
//! partition is sound (`conformance::assert_sound`), every committed file
//! holds the rows its commit says (Parquet footer, JSON lines), and no
//! offset is in two files.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{AsArray, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{
    DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit, TimestampMillisecondType,
};
use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tempfile::TempDir;
use tributary_config::{
    ByteSize, Compression, FlushConfig, HumanDuration, ParquetSinkConfig, StorageConfig,
};
use tributary_core::{
    ErrorClass, Landed, Reject, ResumeAt, RowBatch, Sink, SinkError, TopicPartition,
};
use tributary_lake::{conformance, FileKind, Lake};
use tributary_parquet_sink::ParquetSink;

/// 2026-11-24T00:00:00Z.
const H0: i64 = 1_795_478_400_000;
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const PARTITION_BY: &str = "dt=%Y-%m-%d/hour=%H";

// ---------------------------------------------------------------- fixtures

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
    ]))
}

/// What one source record became.
#[derive(Clone, Copy, Debug)]
enum Rec {
    /// A row with this record time (ms since the epoch).
    Row(i64),
    /// A reject with this reason.
    Reject(&'static str),
    /// Skipped under `on_error = "skip"`.
    Skip,
}

/// A batch of consecutive offsets from `first`, one record per `recs`
/// entry; a row's `id` is its offset.
fn batch(tp: &TopicPartition, first: i64, recs: &[Rec]) -> RowBatch {
    assert!(!recs.is_empty());
    let (mut ids, mut times, mut rejects, mut skipped) = (Vec::new(), Vec::new(), Vec::new(), 0);
    for (i, rec) in recs.iter().enumerate() {
        let offset = first + i as i64;
        match *rec {
            Rec::Row(ts) => {
                ids.push(offset);
                times.push(ts);
            }
            Rec::Reject(reason) => rejects.push(Reject {
                partition: tp.clone(),
                offset,
                timestamp_ms: Some(H0 + offset),
                key: Some(Bytes::from(format!("key-{offset}"))),
                payload: Some(Bytes::from(format!(
                    "{{\"id\": \"not a number {offset}\"}}"
                ))),
                headers: Vec::new(),
                reason: reason.to_string(),
            }),
            Rec::Skip => skipped += 1,
        }
    }
    let rows = RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(TimestampMillisecondArray::from(times.clone()).with_timezone("UTC")),
        ],
    )
    .expect("record batch");
    RowBatch {
        partition: tp.clone(),
        first_offset: first,
        last_offset: first + recs.len() as i64 - 1,
        source_records: recs.len(),
        rows,
        event_time_ms: times,
        rejects,
        skipped,
    }
}

/// `n` rows at offsets `first..first + n`, all with record time `ts`.
fn rows(tp: &TopicPartition, first: i64, n: usize, ts: i64) -> RowBatch {
    batch(tp, first, &vec![Rec::Row(ts); n])
}

/// A temporary `file://` lake and a sink configuration for it: hourly
/// partitions, flush thresholds out of reach unless a test lowers them.
struct TestLake {
    _dir: TempDir,
    root: PathBuf,
    cfg: ParquetSinkConfig,
}

impl TestLake {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("lake");
        let cfg = ParquetSinkConfig {
            url: format!("file://{}", root.display()),
            compression: Compression::default(),
            compression_level: None,
            row_group_size: 1024,
            row_group_bytes: tributary_config::default_row_group_bytes(),
            partition_by: Some(PARTITION_BY.into()),
            timezone: "UTC".into(),
            late_data: None,
            flush: FlushConfig {
                max_records: 1_000_000,
                max_bytes: ByteSize(1 << 30),
                max_age: HumanDuration::from_secs(3600),
            },
            storage: StorageConfig::default(),
        };
        Self {
            _dir: dir,
            root,
            cfg,
        }
    }

    fn with_flush(mut self, f: impl FnOnce(&mut FlushConfig)) -> Self {
        f(&mut self.cfg.flush);
        self
    }

    /// A new sink instance: a new process, as far as the lake can tell.
    fn sink(&self, worker: &str) -> ParquetSink {
        ParquetSink::new(&self.cfg, worker).expect("build the sink")
    }

    fn lake(&self) -> Lake {
        Lake::open(&self.cfg.url, &StorageConfig::default()).expect("open the lake")
    }
}

/// A store that fails every put whose path contains a pattern, while one is set.
#[derive(Debug, Default)]
struct FailingPuts {
    inner: InMemory,
    pattern: Mutex<Option<String>>,
}

impl FailingPuts {
    fn fail_puts_containing(&self, pattern: Option<&str>) {
        *self.pattern.lock().expect("lock") = pattern.map(str::to_string);
    }
}

impl fmt::Display for FailingPuts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FailingPuts({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FailingPuts {
    async fn put_opts(
        &self,
        location: &ObjectPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let fail = self
            .pattern
            .lock()
            .expect("lock")
            .as_deref()
            .is_some_and(|p| location.as_ref().contains(p));
        if fail {
            return Err(object_store::Error::Generic {
                store: "FailingPuts",
                source: format!("injected failure putting {location}").into(),
            });
        }
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjectPath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &ObjectPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjectPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjectPath>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&ObjectPath>,
        offset: &ObjectPath,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &ObjectPath,
        to: &ObjectPath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

// ----------------------------------------------------------------- helpers

async fn open_one(sink: &mut ParquetSink, tp: &TopicPartition) -> ResumeAt {
    let resume = sink.open(std::slice::from_ref(tp)).await.expect("open");
    assert_eq!(resume.len(), 1, "{resume:?}");
    assert_eq!(&resume[0].0, tp);
    resume[0].1
}

async fn write(sink: &mut ParquetSink, batch: RowBatch) {
    let (tp, first, last) = (
        batch.partition.clone(),
        batch.first_offset,
        batch.last_offset,
    );
    sink.write(batch)
        .await
        .unwrap_or_else(|e| panic!("write {tp} {first}..={last}: {e}"));
}

async fn land_one(
    sink: &mut ParquetSink,
    tp: &TopicPartition,
) -> Result<Option<Landed>, SinkError> {
    let mut results = sink.land(std::slice::from_ref(tp)).await;
    assert_eq!(results.len(), 1);
    let (landed_tp, result) = results.pop().expect("one result");
    assert_eq!(&landed_tp, tp);
    result
}

fn landed(result: Result<Option<Landed>, SinkError>) -> Landed {
    match result {
        Ok(Some(l)) => l,
        other => panic!("expected a landing, got {other:?}"),
    }
}

/// The footer's row count and the `(id, ts)` of every row of a Parquet file.
fn read_parquet(bytes: Bytes) -> (i64, Vec<(i64, i64)>) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).expect("a Parquet file");
    let footer_rows = builder.metadata().file_metadata().num_rows();
    assert_eq!(builder.schema().fields(), schema().fields());
    let mut out = Vec::new();
    for batch in builder.build().expect("reader") {
        let batch = batch.expect("row group");
        let ids = batch.column(0).as_primitive::<Int64Type>();
        let ts = batch.column(1).as_primitive::<TimestampMillisecondType>();
        out.extend(
            ids.values()
                .iter()
                .copied()
                .zip(ts.values().iter().copied()),
        );
    }
    (footer_rows, out)
}

/// Checks the partition as a reader would and returns the rows of every
/// committed data file by path:
/// * the partition is sound: no gap, no intent, no uncommitted file;
/// * each file has the size its commit says, each data file the rows (in
///   its footer and when read) and each dead-letter file the lines;
/// * a commit's counts are the sums of its files';
/// * every row lies in its commit's range and no offset is in two files.
async fn check_lake(lake: &Lake, tp: &TopicPartition) -> BTreeMap<String, Vec<(i64, i64)>> {
    conformance::assert_sound(lake, tp).await;
    let mut out = BTreeMap::new();
    let mut seen = BTreeMap::new();
    for commit in lake.commits(tp).await.expect("commits") {
        let (mut data_rows, mut dead_lettered) = (0, 0);
        for f in &commit.files {
            let bytes = lake.read(&f.path).await.expect("read a committed file");
            assert_eq!(bytes.len() as u64, f.bytes, "{}", f.path);
            match f.kind {
                FileKind::Data => {
                    let (footer_rows, rows) = read_parquet(bytes);
                    assert_eq!(footer_rows as u64, f.rows, "{}: footer", f.path);
                    assert_eq!(rows.len() as u64, f.rows, "{}: rows read", f.path);
                    for (id, _) in &rows {
                        assert!(
                            (commit.first_offset..=commit.last_offset).contains(id),
                            "{}: offset {id} outside commit {}",
                            f.path,
                            commit.seq
                        );
                        if let Some(other) = seen.insert(*id, f.path.clone()) {
                            panic!("offset {id} is in {other} and in {}", f.path);
                        }
                    }
                    data_rows += f.rows;
                    out.insert(f.path.clone(), rows);
                }
                FileKind::DeadLetter => {
                    let text = String::from_utf8(bytes.to_vec()).expect("UTF-8 JSON lines");
                    assert_eq!(text.lines().count() as u64, f.rows, "{}: lines", f.path);
                    dead_lettered += f.rows;
                }
            }
        }
        assert_eq!(data_rows, commit.rows, "commit {}: rows", commit.seq);
        assert_eq!(dead_lettered, commit.dead_lettered, "commit {}", commit.seq);
    }
    out
}

fn expect_encode(result: Result<(), SinkError>, first: i64, last: i64, message: &str) {
    match result {
        Err(SinkError::Encode {
            first_offset,
            last_offset,
            message: m,
            ..
        }) => {
            assert_eq!((first_offset, last_offset), (first, last));
            assert!(m.contains(message), "{m:?} should mention {message:?}");
        }
        other => panic!("expected an encode error, got {other:?}"),
    }
}

// ------------------------------------------------------------------- tests

#[tokio::test]
async fn open_on_an_empty_lake_resumes_at_the_source_default() {
    let t = TestLake::new();
    let mut sink = t.sink("worker-1");
    let (p0, p1) = (
        TopicPartition::new("orders", 0),
        TopicPartition::new("orders", 1),
    );
    let resume = sink.open(&[p0.clone(), p1.clone()]).await.expect("open");
    assert_eq!(
        resume,
        vec![
            (p0.clone(), ResumeAt::Default),
            (p1.clone(), ResumeAt::Default)
        ]
    );
    assert_eq!(sink.resume_point(&p0), ResumeAt::Default);
    assert!(sink.buffered().is_empty());
    assert_eq!(sink.buffered_bytes(), 0);
    assert_eq!(sink.next_deadline(), None);
    assert!(sink
        .due(Instant::now() + Duration::from_secs(86_400))
        .is_empty());

    // Nothing buffered: nothing to land, nothing written.
    let results = sink.land(&[p0.clone(), p1.clone()]).await;
    assert!(
        results.iter().all(|(_, r)| matches!(r, Ok(None))),
        "{results:?}"
    );
    assert!(t.lake().commits(&p0).await.expect("commits").is_empty());
    assert!(t.lake().list("").await.expect("list").is_empty());
}

#[tokio::test]
async fn lands_rows_spanning_two_hours_as_two_files_in_one_commit() {
    let t = TestLake::new();
    let mut sink = t.sink("worker-1");
    let tp = TopicPartition::new("orders", 3);
    assert_eq!(open_one(&mut sink, &tp).await, ResumeAt::Default);

    // Offsets 100..=105 alternate between 00:xx and 01:xx (so the batch is
    // split row by row), 106..=109 are all in 01:xx and go to the same file.
    let times = [
        H0,
        H0 + HOUR,
        H0 + 30 * MINUTE,
        H0 + HOUR + 1,
        H0 + HOUR - 1,
        H0 + 2 * HOUR - 1,
    ];
    let recs: Vec<Rec> = times.iter().map(|&ts| Rec::Row(ts)).collect();
    write(&mut sink, batch(&tp, 100, &recs)).await;
    write(&mut sink, rows(&tp, 106, 4, H0 + HOUR + 5 * MINUTE)).await;
    assert_eq!(sink.buffered(), vec![tp.clone()]);
    assert!(sink.buffered_bytes() > 0);

    let landed = landed(land_one(&mut sink, &tp).await);
    assert_eq!(landed.partition, tp);
    assert_eq!(
        (landed.seq, landed.first_offset, landed.last_offset),
        (0, 100, 109)
    );
    assert_eq!(
        (landed.rows, landed.dead_lettered, landed.skipped),
        (10, 0, 0)
    );
    assert_eq!(landed.next_offset(), 110);
    assert_eq!(landed.files.len(), 2, "{:?}", landed.files);

    // Where `partition_by` says, named `<topic>-<partition>-<first offset>-<writer>-<nonce>`.
    let name_prefix = format!("orders-3-00000000000000000100-{}-", sink.writer_id());
    let mut by_dir = BTreeMap::new();
    for f in &landed.files {
        let (dir, name) = f.path.rsplit_once('/').expect("a partition directory");
        assert!(name.starts_with(&name_prefix), "{name}");
        assert!(name.ends_with(".parquet"), "{name}");
        let on_disk = t.root.join(&f.path);
        assert!(on_disk.is_file(), "{} on disk", on_disk.display());
        assert_eq!(std::fs::metadata(&on_disk).expect("stat").len(), f.bytes);
        by_dir.insert(dir.to_string(), f);
    }
    let dirs: Vec<&str> = by_dir.keys().map(String::as_str).collect();
    assert_eq!(dirs, ["dt=2026-11-24/hour=00", "dt=2026-11-24/hour=01"]);
    assert_eq!(by_dir["dt=2026-11-24/hour=00"].rows, 3);
    assert_eq!(by_dir["dt=2026-11-24/hour=01"].rows, 7);

    // The rows were split by hour, each with its own time, in offset order.
    let files = check_lake(&t.lake(), &tp).await;
    let hour = |h: &str| files[&by_dir[&format!("dt=2026-11-24/hour={h}")].path].clone();
    assert_eq!(
        hour("00"),
        vec![(100, H0), (102, H0 + 30 * MINUTE), (104, H0 + HOUR - 1)]
    );
    let ids_01: Vec<i64> = hour("01").iter().map(|(id, _)| *id).collect();
    assert_eq!(ids_01, [101, 103, 105, 106, 107, 108, 109]);
    assert!(hour("01")
        .iter()
        .all(|(_, ts)| (H0 + HOUR..H0 + 2 * HOUR).contains(ts)));

    // The commit record says what `land` returned.
    let commits = t.lake().commits(&tp).await.expect("commits");
    assert_eq!(commits.len(), 1);
    assert_eq!(commits[0].to_landed(), landed);
    assert_eq!(commits[0].writer, sink.writer_id());

    // The buffer is gone; the sink continues after the range.
    assert!(sink.buffered().is_empty());
    assert_eq!(sink.buffered_bytes(), 0);
    assert_eq!(sink.next_deadline(), None);
    assert_eq!(sink.resume_point(&tp), ResumeAt::Offset(110));
    assert!(matches!(land_one(&mut sink, &tp).await, Ok(None)));
}

#[tokio::test]
async fn without_partition_by_files_go_to_the_root() {
    let mut t = TestLake::new();
    t.cfg.partition_by = None;
    let mut sink = t.sink("worker-1");
    let tp = TopicPartition::new("flat", 0);
    open_one(&mut sink, &tp).await;
    // Record times in two hours, one file all the same.
    write(&mut sink, rows(&tp, 0, 3, H0)).await;
    write(&mut sink, rows(&tp, 3, 3, H0 + 5 * HOUR)).await;
    let landed = landed(land_one(&mut sink, &tp).await);
    assert_eq!(landed.files.len(), 1);
    assert!(
        !landed.files[0].path.contains('/'),
        "{}",
        landed.files[0].path
    );
    assert!(t.root.join(&landed.files[0].path).is_file());
    let files = check_lake(&t.lake(), &tp).await;
    assert_eq!(files[&landed.files[0].path].len(), 6);
}

#[tokio::test]
async fn a_restarted_sink_resumes_after_the_last_landing() {
    let t = TestLake::new();
    let tp = TopicPartition::new("orders", 0);
    {
        let mut first = t.sink("worker-1");
        assert_eq!(open_one(&mut first, &tp).await, ResumeAt::Default);
        write(&mut first, rows(&tp, 0, 10, H0)).await;
        assert_eq!(landed(land_one(&mut first, &tp).await).seq, 0);
        write(&mut first, rows(&tp, 10, 5, H0 + HOUR)).await;
        let l = landed(land_one(&mut first, &tp).await);
        assert_eq!((l.seq, l.first_offset, l.last_offset), (1, 10, 14));
        // Buffered but never landed: lost with the process.
        write(&mut first, rows(&tp, 15, 5, H0 + HOUR)).await;
    }

    let mut second = t.sink("worker-1");
    assert_eq!(open_one(&mut second, &tp).await, ResumeAt::Offset(15));
    assert_eq!(second.resume_point(&tp), ResumeAt::Offset(15));
    // A batch that is already landed is dropped, not buffered.
    write(&mut second, rows(&tp, 10, 5, H0 + HOUR)).await;
    assert!(second.buffered().is_empty());
    write(&mut second, rows(&tp, 15, 7, H0 + HOUR)).await;
    let l = landed(land_one(&mut second, &tp).await);
    assert_eq!((l.seq, l.first_offset, l.last_offset), (2, 15, 21));

    // A third instance, and the same instance opening the partition again
    // (a new assignment), agree.
    let mut third = t.sink("worker-2");
    assert_eq!(open_one(&mut third, &tp).await, ResumeAt::Offset(22));
    write(&mut second, rows(&tp, 22, 3, H0 + HOUR)).await;
    assert_eq!(open_one(&mut second, &tp).await, ResumeAt::Offset(22));
    assert!(
        second.buffered().is_empty(),
        "opening again drops the buffer"
    );

    let commits = t.lake().commits(&tp).await.expect("commits");
    let ranges: Vec<(i64, i64)> = commits
        .iter()
        .map(|c| (c.first_offset, c.last_offset))
        .collect();
    assert_eq!(ranges, [(0, 9), (10, 14), (15, 21)]);
    let files = check_lake(&t.lake(), &tp).await;
    assert_eq!(files.values().map(Vec::len).sum::<usize>(), 22);
}

#[tokio::test]
async fn due_after_max_records_source_records() {
    let t = TestLake::new().with_flush(|f| f.max_records = 10);
    let mut sink = t.sink("worker-1");
    let (p0, p1) = (
        TopicPartition::new("orders", 0),
        TopicPartition::new("orders", 1),
    );
    sink.open(&[p0.clone(), p1.clone()]).await.expect("open");

    write(&mut sink, rows(&p0, 0, 6, H0)).await;
    write(&mut sink, rows(&p1, 0, 9, H0)).await;
    assert!(sink.due(Instant::now()).is_empty());
    // Rejects and skipped records count as records: 2 rows + 1 + 1 = 4.
    let recs = [Rec::Row(H0), Rec::Reject("bad"), Rec::Skip, Rec::Row(H0)];
    write(&mut sink, batch(&p0, 6, &recs)).await;
    assert_eq!(sink.due(Instant::now()), vec![p0.clone()]);
    write(&mut sink, rows(&p1, 9, 1, H0)).await;
    let mut due = sink.due(Instant::now());
    due.sort();
    assert_eq!(due, vec![p0.clone(), p1.clone()]);

    // Both land in one call; each starts over.
    let results = sink.land(&due).await;
    for (tp, r) in results {
        let l = landed(r);
        assert_eq!((l.first_offset, l.last_offset), (0, 9), "{tp}");
    }
    assert!(sink.due(Instant::now()).is_empty());
    write(&mut sink, rows(&p0, 10, 9, H0)).await;
    assert!(sink.due(Instant::now()).is_empty());
    write(&mut sink, rows(&p0, 19, 1, H0)).await;
    assert_eq!(sink.due(Instant::now()), vec![p0.clone()]);
    check_lake(&t.lake(), &p0).await;
    check_lake(&t.lake(), &p1).await;
}

#[tokio::test]
async fn due_after_max_bytes_encoded_or_buffered() {
    let tp = TopicPartition::new("orders", 0);
    // How many bytes one batch occupies in a buffer once encoded (encoding
    // is deterministic; rows still on their way to the encoder thread count
    // at their in-memory size until then).
    let probe = TestLake::new();
    let mut sink = probe.sink("probe");
    open_one(&mut sink, &tp).await;
    write(&mut sink, rows(&tp, 0, 1_000, H0)).await;
    sink.settled().await;
    let one_batch = sink.buffered_bytes();
    assert!(one_batch > 0);

    let t = TestLake::new().with_flush(|f| f.max_bytes = ByteSize(one_batch as u64 + 1));
    let mut sink = t.sink("worker-1");
    open_one(&mut sink, &tp).await;
    write(&mut sink, rows(&tp, 0, 1_000, H0)).await;
    sink.settled().await;
    assert_eq!(sink.buffered_bytes(), one_batch);
    assert!(sink.due(Instant::now()).is_empty(), "one byte short");
    write(&mut sink, rows(&tp, 1_000, 1_000, H0)).await;
    sink.settled().await;
    assert!(sink.buffered_bytes() > one_batch);
    assert_eq!(sink.due(Instant::now()), vec![tp.clone()]);
    let l = landed(land_one(&mut sink, &tp).await);
    assert_eq!((l.first_offset, l.last_offset, l.rows), (0, 1_999, 2_000));
    assert_eq!(sink.buffered_bytes(), 0);
    check_lake(&t.lake(), &tp).await;

    // Dead-letter lines count too: a batch of rejects only is due at one byte.
    let t = TestLake::new().with_flush(|f| f.max_bytes = ByteSize(1));
    let mut sink = t.sink("worker-1");
    open_one(&mut sink, &tp).await;
    write(
        &mut sink,
        batch(&tp, 0, &[Rec::Reject("bad"), Rec::Reject("bad")]),
    )
    .await;
    assert!(sink.buffered_bytes() > 0);
    assert_eq!(sink.due(Instant::now()), vec![tp.clone()]);
    let l = landed(land_one(&mut sink, &tp).await);
    assert_eq!((l.rows, l.dead_lettered, l.files.len()), (0, 2, 1));
    check_lake(&t.lake(), &tp).await;
}

#[tokio::test]
async fn due_after_max_age_of_the_first_buffered_record() {
    let max_age = Duration::from_millis(50);
    let t = TestLake::new().with_flush(|f| f.max_age = HumanDuration(max_age));
    let mut sink = t.sink("worker-1");
    let (p0, p1) = (
        TopicPartition::new("orders", 0),
        TopicPartition::new("orders", 1),
    );
    sink.open(&[p0.clone(), p1.clone()]).await.expect("open");
    assert_eq!(sink.next_deadline(), None);

    let before = Instant::now();
    write(&mut sink, rows(&p0, 0, 3, H0)).await;
    let after = Instant::now();
    let deadline = sink.next_deadline().expect("a deadline");
    assert!(
        before + max_age <= deadline && deadline <= after + max_age,
        "the deadline is max_age after the first write"
    );
    assert!(sink.due(deadline - Duration::from_millis(1)).is_empty());
    assert_eq!(sink.due(deadline), vec![p0.clone()]);
    assert_eq!(
        sink.due(deadline + Duration::from_secs(60)),
        vec![p0.clone()]
    );

    // The age runs from the first record, not the latest.
    write(&mut sink, rows(&p0, 3, 3, H0)).await;
    assert_eq!(sink.next_deadline(), Some(deadline));
    // The earliest deadline of all buffers counts.
    write(&mut sink, rows(&p1, 0, 3, H0)).await;
    assert_eq!(sink.next_deadline(), Some(deadline));
    let mut due = sink.due(Instant::now() + max_age);
    due.sort();
    assert_eq!(due, vec![p0.clone(), p1.clone()]);

    // Landing p0 leaves p1's deadline, which is no earlier.
    landed(land_one(&mut sink, &p0).await);
    let p1_deadline = sink.next_deadline().expect("p1's deadline");
    assert!(p1_deadline >= deadline);
    assert!(sink.due(p1_deadline - Duration::from_millis(1)).is_empty());
    assert_eq!(sink.due(p1_deadline), vec![p1.clone()]);
    landed(land_one(&mut sink, &p1).await);
    assert_eq!(sink.next_deadline(), None);

    // A new buffer of p0 starts a new age.
    let before = Instant::now();
    write(&mut sink, rows(&p0, 6, 1, H0)).await;
    let renewed = sink.next_deadline().expect("a new deadline");
    assert!(renewed >= before + max_age && renewed > p1_deadline);
    assert!(sink.due(renewed - Duration::from_millis(1)).is_empty());
    assert_eq!(sink.due(renewed), vec![p0.clone()]);
    check_lake(&t.lake(), &p0).await;
    check_lake(&t.lake(), &p1).await;
}

#[tokio::test]
async fn rejects_land_in_a_dead_letter_file_of_the_same_commit() {
    let t = TestLake::new();
    let mut sink = t.sink("worker-1");
    let tp = TopicPartition::new("payments", 2);
    open_one(&mut sink, &tp).await;
    let recs = [
        Rec::Row(H0),
        Rec::Reject("field id: expected an integer"),
        Rec::Row(H0 + HOUR),
        Rec::Skip,
        Rec::Reject("not JSON"),
        Rec::Row(H0),
    ];
    let mut b = batch(&tp, 40, &recs);
    // A payload that is not UTF-8 is kept as hex; a missing key is null.
    b.rejects[1].payload = Some(Bytes::from_static(&[0xff, 0x00, 0x7b]));
    b.rejects[1].key = None;
    write(&mut sink, b).await;
    write(&mut sink, batch(&tp, 46, &[Rec::Reject("schema mismatch")])).await;

    let l = landed(land_one(&mut sink, &tp).await);
    assert_eq!((l.first_offset, l.last_offset), (40, 46));
    assert_eq!((l.rows, l.dead_lettered, l.skipped), (3, 3, 1));
    assert_eq!(
        l.files.len(),
        3,
        "two hourly files and one dead-letter file"
    );
    let dead: Vec<_> = l
        .files
        .iter()
        .filter(|f| f.path.ends_with(".jsonl"))
        .collect();
    assert_eq!(dead.len(), 1);
    let dead = dead[0];
    let prefix = format!(
        "_dead_letter/payments/2/00000000000000000040-{}-",
        sink.writer_id()
    );
    assert!(dead.path.starts_with(&prefix), "{}", dead.path);
    assert_eq!(dead.rows, 3);

    // Listed in the same commit, as a dead-letter file.
    let commits = t.lake().commits(&tp).await.expect("commits");
    assert_eq!(commits.len(), 1);
    let listed = commits[0]
        .files
        .iter()
        .find(|f| f.path == dead.path)
        .expect("the commit lists the dead-letter file");
    assert_eq!(listed.kind, FileKind::DeadLetter);

    let text = std::fs::read_to_string(t.root.join(&dead.path)).expect("dead-letter file on disk");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 3);
    let expected = [
        (41, "field id: expected an integer"),
        (44, "not JSON"),
        (46, "schema mismatch"),
    ];
    for (line, (offset, reason)) in lines.iter().zip(expected) {
        assert_eq!(line["topic"], "payments", "{line}");
        assert_eq!(line["partition"], 2, "{line}");
        assert_eq!(line["offset"], offset, "{line}");
        assert_eq!(line["reason"], reason, "{line}");
        assert_eq!(line["timestamp_ms"], H0 + offset, "{line}");
    }
    assert_eq!(lines[0]["key"], "key-41");
    assert_eq!(lines[0]["payload"], "{\"id\": \"not a number 41\"}");
    assert_eq!(lines[1]["key"], serde_json::Value::Null);
    assert_eq!(lines[1]["payload_hex"], "ff007b");
    assert!(lines[1].get("payload").is_none(), "{}", lines[1]);

    let files = check_lake(&t.lake(), &tp).await;
    let mut ids: Vec<i64> = files.values().flatten().map(|(id, _)| *id).collect();
    ids.sort();
    assert_eq!(ids, [40, 42, 45]);
}

#[tokio::test]
async fn batches_that_do_not_continue_the_buffer_are_encode_errors() {
    let t = TestLake::new();
    let mut sink = t.sink("worker-1");
    let tp = TopicPartition::new("orders", 0);
    open_one(&mut sink, &tp).await;
    write(&mut sink, rows(&tp, 10, 10, H0)).await;
    sink.settled().await;
    let bytes = sink.buffered_bytes();

    // Offsets going backwards, or repeating the last one.
    expect_encode(sink.write(rows(&tp, 15, 6, H0)).await, 15, 20, "backwards");
    expect_encode(sink.write(rows(&tp, 19, 1, H0)).await, 19, 19, "backwards");
    // Rows without a record time each.
    let mut short = rows(&tp, 20, 3, H0);
    short.event_time_ms.pop();
    expect_encode(sink.write(short).await, 20, 22, "record times");
    // Another schema in the same file.
    let other = Arc::new(Schema::new(vec![Field::new("name", DataType::Utf8, false)]));
    let mut renamed = rows(&tp, 20, 1, H0);
    renamed.rows = RecordBatch::try_new(other, vec![Arc::new(StringArray::from(vec!["x"]))])
        .expect("record batch");
    expect_encode(sink.write(renamed).await, 20, 20, "schema");

    // The buffer is as it was and lands.
    sink.settled().await;
    assert_eq!(sink.buffered_bytes(), bytes);
    write(&mut sink, rows(&tp, 20, 2, H0)).await;
    let l = landed(land_one(&mut sink, &tp).await);
    assert_eq!((l.first_offset, l.last_offset, l.rows), (10, 21, 12));
    check_lake(&t.lake(), &tp).await;
}

#[tokio::test]
async fn a_batch_reaching_back_into_the_landed_range_is_an_encode_error() {
    let t = TestLake::new();
    let mut sink = t.sink("worker-1");
    let tp = TopicPartition::new("orders", 0);
    open_one(&mut sink, &tp).await;
    write(&mut sink, rows(&tp, 0, 10, H0)).await;
    landed(land_one(&mut sink, &tp).await);

    // Offsets 5..=9 are landed already: buffering the records at 5, 6 and
    // 7 again would land them twice (the batch then runs to 14 with no
    // records, as after compaction).
    let mut straddling = rows(&tp, 5, 3, H0);
    straddling.last_offset = 14;
    expect_encode(sink.write(straddling).await, 5, 14, "landed");
    assert!(sink.buffered().is_empty());
    // Fully landed: dropped. Continuing: buffered.
    write(&mut sink, rows(&tp, 0, 10, H0)).await;
    assert!(sink.buffered().is_empty());
    write(&mut sink, rows(&tp, 10, 5, H0)).await;
    let l = landed(land_one(&mut sink, &tp).await);
    assert_eq!((l.first_offset, l.last_offset, l.rows), (10, 14, 5));
    check_lake(&t.lake(), &tp).await;
}

#[tokio::test]
async fn a_failed_first_batch_leaves_nothing_buffered() {
    let t = TestLake::new();
    let mut sink = t.sink("worker-1");
    let tp = TopicPartition::new("orders", 0);
    open_one(&mut sink, &tp).await;
    let mut short = rows(&tp, 0, 3, H0);
    short.event_time_ms.pop();
    expect_encode(sink.write(short).await, 0, 2, "record times");
    assert!(sink.buffered().is_empty(), "{:?}", sink.buffered());
    assert_eq!(sink.next_deadline(), None);
    assert!(matches!(land_one(&mut sink, &tp).await, Ok(None)));
    assert!(t.lake().commits(&tp).await.expect("commits").is_empty());
}

#[tokio::test]
async fn writing_a_partition_not_opened_is_not_open() {
    let t = TestLake::new();
    let mut sink = t.sink("worker-1");
    let (p0, p1) = (
        TopicPartition::new("orders", 0),
        TopicPartition::new("orders", 1),
    );
    open_one(&mut sink, &p0).await;
    match sink.write(rows(&p1, 0, 1, H0)).await {
        Err(SinkError::NotOpen { partition }) => assert_eq!(partition, p1),
        other => panic!("expected NotOpen, got {other:?}"),
    }
    assert!(sink.buffered().is_empty());
    // Closed is not open either.
    sink.close_partitions(std::slice::from_ref(&p0));
    assert!(matches!(
        sink.write(rows(&p0, 0, 1, H0)).await,
        Err(SinkError::NotOpen { .. })
    ));
    assert!(t.lake().list("").await.expect("list").is_empty());
}

#[tokio::test]
async fn close_partitions_drops_buffers_unlanded() {
    let t = TestLake::new();
    let mut sink = t.sink("worker-1");
    let (p0, p1) = (
        TopicPartition::new("orders", 0),
        TopicPartition::new("orders", 1),
    );
    sink.open(&[p0.clone(), p1.clone()]).await.expect("open");
    write(&mut sink, rows(&p0, 0, 10, H0)).await;
    write(&mut sink, rows(&p1, 0, 10, H0)).await;
    sink.settled().await;
    let p1_bytes = {
        let all = sink.buffered_bytes();
        sink.close_partitions(std::slice::from_ref(&p0));
        all - sink.buffered_bytes()
    };
    assert!(p1_bytes > 0);
    assert_eq!(sink.buffered(), vec![p1.clone()]);
    assert_eq!(sink.resume_point(&p0), ResumeAt::Default);
    let far = Instant::now() + Duration::from_secs(86_400);
    assert_eq!(sink.due(far), vec![p1.clone()]);

    let results: BTreeMap<_, _> = sink
        .land(&[p0.clone(), p1.clone()])
        .await
        .into_iter()
        .collect();
    assert!(matches!(results[&p0], Ok(None)), "{results:?}");
    assert!(matches!(results[&p1], Ok(Some(_))), "{results:?}");
    assert!(t.lake().commits(&p0).await.expect("commits").is_empty());
    assert!(conformance::files_of(&t.lake(), &p0).await.is_empty());
    check_lake(&t.lake(), &p1).await;

    // Re-opened, p0 starts from the source default again.
    assert_eq!(open_one(&mut sink, &p0).await, ResumeAt::Default);
}

#[tokio::test]
async fn a_failed_landing_resumes_where_the_buffer_began() {
    let store = Arc::new(FailingPuts::default());
    let lake = Lake::open_with_store(store.clone(), "lake").expect("open the lake");
    let t = TestLake::new();
    let mut sink = ParquetSink::with_lake(lake.clone(), &t.cfg, "worker-1").expect("sink");
    let tp = TopicPartition::new("orders", 0);
    assert_eq!(open_one(&mut sink, &tp).await, ResumeAt::Default);

    // Nothing landed yet: re-read from the buffer's first offset.
    write(&mut sink, rows(&tp, 50, 10, H0)).await;
    store.fail_puts_containing(Some(".parquet"));
    match land_one(&mut sink, &tp).await {
        Err(
            e @ SinkError::Storage {
                operation: "put", ..
            },
        ) => {
            assert_eq!(e.class(), ErrorClass::Retryable)
        }
        other => panic!("expected a storage error, got {other:?}"),
    }
    assert!(sink.buffered().is_empty(), "the buffer is gone");
    assert_eq!(sink.resume_point(&tp), ResumeAt::Offset(50));
    conformance::assert_sound(&lake, &tp).await;
    assert!(lake.commits(&tp).await.expect("commits").is_empty());

    // Re-read, land.
    store.fail_puts_containing(None);
    write(&mut sink, rows(&tp, 50, 10, H0)).await;
    let l = landed(land_one(&mut sink, &tp).await);
    assert_eq!((l.seq, l.first_offset, l.last_offset), (0, 50, 59));
    assert_eq!(sink.resume_point(&tp), ResumeAt::Offset(60));

    // After a landing: re-read from one past it. The dead-letter file fails this time.
    write(
        &mut sink,
        batch(&tp, 60, &[Rec::Row(H0), Rec::Reject("bad")]),
    )
    .await;
    write(&mut sink, rows(&tp, 62, 8, H0 + HOUR)).await;
    store.fail_puts_containing(Some("_dead_letter/"));
    assert!(matches!(
        land_one(&mut sink, &tp).await,
        Err(SinkError::Storage { .. })
    ));
    assert_eq!(sink.resume_point(&tp), ResumeAt::Offset(60));
    store.fail_puts_containing(None);
    write(
        &mut sink,
        batch(&tp, 60, &[Rec::Row(H0), Rec::Reject("bad")]),
    )
    .await;
    write(&mut sink, rows(&tp, 62, 8, H0 + HOUR)).await;
    let l = landed(land_one(&mut sink, &tp).await);
    assert_eq!((l.seq, l.first_offset, l.last_offset), (1, 60, 69));
    assert_eq!((l.rows, l.dead_lettered), (9, 1));

    // A new instance agrees, and the lake holds each offset once.
    let mut restarted = ParquetSink::with_lake(lake.clone(), &t.cfg, "worker-1").expect("sink");
    assert_eq!(open_one(&mut restarted, &tp).await, ResumeAt::Offset(70));
    let files = check_lake(&lake, &tp).await;
    assert_eq!(files.values().map(Vec::len).sum::<usize>(), 19);
}

#[tokio::test]
async fn the_second_of_two_writers_loses_with_a_conflict() {
    let t = TestLake::new();
    let tp = TopicPartition::new("orders", 0);
    let mut a = t.sink("worker-a");
    let mut b = t.sink("worker-b");
    assert_eq!(open_one(&mut a, &tp).await, ResumeAt::Default);
    assert_eq!(open_one(&mut b, &tp).await, ResumeAt::Default);

    write(&mut a, rows(&tp, 0, 10, H0)).await;
    write(&mut b, rows(&tp, 0, 15, H0 + HOUR)).await;
    let won = landed(land_one(&mut a, &tp).await);
    assert_eq!((won.seq, won.first_offset, won.last_offset), (0, 0, 9));
    match land_one(&mut b, &tp).await {
        Err(SinkError::Conflict {
            partition,
            seq,
            resume_at,
        }) => assert_eq!((partition, seq, resume_at), (tp.clone(), 0, 10)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(b.buffered().is_empty());
    assert_eq!(b.resume_point(&tp), ResumeAt::Offset(10));
    // The loser's files are gone: only the winner's are in the lake.
    conformance::assert_sound(&t.lake(), &tp).await;

    // The loser re-reads from there and lands the next range; now `a` is
    // the one behind.
    write(&mut b, rows(&tp, 10, 5, H0 + HOUR)).await;
    let l = landed(land_one(&mut b, &tp).await);
    assert_eq!((l.seq, l.first_offset, l.last_offset), (1, 10, 14));
    write(&mut a, rows(&tp, 10, 10, H0)).await;
    match land_one(&mut a, &tp).await {
        Err(SinkError::Conflict { seq, resume_at, .. }) => assert_eq!((seq, resume_at), (1, 15)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(a.resume_point(&tp), ResumeAt::Offset(15));

    let commits = t.lake().commits(&tp).await.expect("commits");
    assert_eq!(commits[0].writer, a.writer_id());
    assert_eq!(commits[1].writer, b.writer_id());
    let files = check_lake(&t.lake(), &tp).await;
    assert_eq!(files.values().map(Vec::len).sum::<usize>(), 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_landing_at_once_one_wins() {
    let t = TestLake::new();
    let tp = TopicPartition::new("orders", 0);
    let mut a = t.sink("worker-a");
    let mut b = t.sink("worker-b");
    open_one(&mut a, &tp).await;
    open_one(&mut b, &tp).await;
    write(&mut a, rows(&tp, 0, 10, H0)).await;
    landed(land_one(&mut a, &tp).await);
    // Both know commit 0 and land commit 1 at the same time.
    open_one(&mut b, &tp).await;
    write(&mut a, rows(&tp, 10, 20, H0)).await;
    write(&mut b, rows(&tp, 10, 30, H0 + HOUR)).await;
    let (ra, rb) = tokio::join!(land_one(&mut a, &tp), land_one(&mut b, &tp));

    let (winner, loser, won, lost) = match (ra, rb) {
        (Ok(Some(w)), Err(e)) => (&a, &b, w, e),
        (Err(e), Ok(Some(w))) => (&b, &a, w, e),
        other => panic!("expected one winner and one loser, got {other:?}"),
    };
    assert_eq!((won.seq, won.first_offset), (1, 10));
    match lost {
        SinkError::Conflict { seq, resume_at, .. } => {
            assert_eq!((seq, resume_at), (1, won.last_offset + 1))
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let next = ResumeAt::Offset(won.last_offset + 1);
    assert_eq!(winner.resume_point(&tp), next);
    assert_eq!(loser.resume_point(&tp), next);
    let files = check_lake(&t.lake(), &tp).await;
    assert_eq!(
        files.values().map(Vec::len).sum::<usize>() as i64,
        won.last_offset + 1
    );
}

#[tokio::test]
async fn a_background_landing_lets_the_next_range_buffer_and_results_come_in_order() {
    let t = TestLake::new().with_flush(|f| f.max_records = 10);
    let mut sink = t.sink("worker-1");
    let tp = TopicPartition::new("orders", 0);
    let one = std::slice::from_ref(&tp);
    assert_eq!(open_one(&mut sink, &tp).await, ResumeAt::Default);
    assert!(!sink.landing_in_background());
    write(&mut sink, rows(&tp, 0, 10, H0)).await;
    let now = Instant::now();
    assert_eq!(sink.due(now), vec![tp.clone()]);
    assert_eq!(sink.land_in_background(one).await, vec![tp.clone()]);
    assert!(sink.landing_in_background());
    assert_eq!(sink.buffered(), vec![tp.clone()], "landing is not landed");
    assert!(
        sink.buffered_bytes_by_partition().is_empty(),
        "a landing is not a buffer to land early"
    );
    assert!(sink.due(now).is_empty());

    // The next range buffers meanwhile, from one past the landing one.
    expect_encode(
        sink.write(rows(&tp, 5, 10, H0)).await,
        5,
        14,
        "reaches back into the landed range",
    );
    write(&mut sink, rows(&tp, 10, 10, H0 + HOUR)).await;
    assert_eq!(sink.due(now), vec![tp.clone()]);
    // Starting it waits for the first landing; results come in order.
    assert_eq!(sink.land_in_background(one).await, vec![tp.clone()]);
    let mut ranges = Vec::new();
    for _ in 0..2 {
        let (landed_tp, result) = sink.background_landed().await;
        assert_eq!(landed_tp, tp);
        let l = landed(result);
        ranges.push((l.seq, l.first_offset, l.last_offset));
    }
    assert_eq!(ranges, vec![(0, 0, 9), (1, 10, 19)]);
    assert!(!sink.landing_in_background());
    assert_eq!(sink.landing_bytes(), 0);

    // `land` of a partition landing in the background gives that result
    // first, then its buffer's.
    write(&mut sink, rows(&tp, 20, 10, H0)).await;
    assert_eq!(sink.land_in_background(one).await, vec![tp.clone()]);
    write(&mut sink, rows(&tp, 30, 5, H0)).await;
    let ranges: Vec<_> = sink
        .land(one)
        .await
        .into_iter()
        .map(|(t, r)| {
            assert_eq!(t, tp);
            let l = landed(r);
            (l.seq, l.first_offset, l.last_offset)
        })
        .collect();
    assert_eq!(ranges, vec![(2, 20, 29), (3, 30, 34)]);
    assert!(sink.buffered().is_empty());
    assert!(!sink.landing_in_background());
    assert_eq!(sink.resume_point(&tp), ResumeAt::Offset(35));
    let files = check_lake(&t.lake(), &tp).await;
    assert_eq!(files.values().map(Vec::len).sum::<usize>(), 35);
}

#[tokio::test]
async fn a_failed_background_landing_drops_the_rows_buffered_after_it() {
    let store = Arc::new(FailingPuts::default());
    let lake = Lake::open_with_store(store.clone(), "lake").expect("open the lake");
    let t = TestLake::new();
    let mut sink = ParquetSink::with_lake(lake.clone(), &t.cfg, "worker-1").expect("sink");
    let tp = TopicPartition::new("orders", 0);
    let one = std::slice::from_ref(&tp);
    open_one(&mut sink, &tp).await;

    store.fail_puts_containing(Some(".parquet"));
    write(&mut sink, rows(&tp, 0, 10, H0)).await;
    assert_eq!(sink.land_in_background(one).await, vec![tp.clone()]);
    write(&mut sink, rows(&tp, 10, 10, H0)).await;
    let (_, result) = sink.background_landed().await;
    assert!(
        matches!(result, Err(SinkError::Storage { .. })),
        "{result:?}"
    );
    assert!(
        sink.buffered().is_empty(),
        "the rows after the failed range are gone with it"
    );
    assert_eq!(sink.resume_point(&tp), ResumeAt::Offset(0));

    // Through `land`: only the background landing's error.
    write(&mut sink, rows(&tp, 0, 10, H0)).await;
    assert_eq!(sink.land_in_background(one).await, vec![tp.clone()]);
    write(&mut sink, rows(&tp, 10, 5, H0)).await;
    let results = sink.land(one).await;
    assert_eq!(results.len(), 1, "{results:?}");
    assert!(matches!(results[0].1, Err(SinkError::Storage { .. })));
    assert!(sink.buffered().is_empty());
    assert!(lake.commits(&tp).await.expect("commits").is_empty());

    // Re-read, land.
    store.fail_puts_containing(None);
    write(&mut sink, rows(&tp, 0, 20, H0)).await;
    let l = landed(land_one(&mut sink, &tp).await);
    assert_eq!((l.seq, l.first_offset, l.last_offset), (0, 0, 19));
    let files = check_lake(&lake, &tp).await;
    assert_eq!(files.values().map(Vec::len).sum::<usize>(), 20);
}

#[tokio::test]
async fn a_partition_closed_while_landing_reopens_after_that_landing() {
    let t = TestLake::new();
    let mut sink = t.sink("worker-1");
    let tp = TopicPartition::new("orders", 0);
    open_one(&mut sink, &tp).await;
    write(&mut sink, rows(&tp, 0, 10, H0)).await;
    assert_eq!(
        sink.land_in_background(std::slice::from_ref(&tp)).await,
        vec![tp.clone()]
    );
    sink.close_partitions(std::slice::from_ref(&tp));
    assert!(sink.buffered().is_empty());
    assert!(!sink.landing_in_background(), "its result is not for us");

    // Opening it again waits for the landing, which ran to its end.
    assert_eq!(open_one(&mut sink, &tp).await, ResumeAt::Offset(10));
    let files = check_lake(&t.lake(), &tp).await;
    assert_eq!(files.values().map(Vec::len).sum::<usize>(), 10);
}
