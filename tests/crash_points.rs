//! Exactly-once under crashes at every step of the landing protocol.
//!
//! Needs a `tributary` binary built with the `fault-injection` feature
//! (`./scripts/test.sh` builds one): a worker started with
//! `TRIBUTARY_FAULT_CRASH=<point>:<n>` exits with code 86 the n-th time it
//! reaches the crash point — no destructor, no flush, no offset commit: a
//! `kill -9` at that exact step.
//!
//! For each crash point: 6,000 small records in a 3-partition topic of a
//! mock Kafka; a worker crashes at the point; a second worker of the same
//! group takes every partition, lands the rest and stops on SIGTERM with exit
//! code 0; pyarrow and DuckDB then count exactly 6,000 rows and 6,000
//! distinct ids (a left-over uncommitted file would be counted too: they read
//! every Parquet file, not the commit log). The takeover variants run both
//! workers side by side, so that the survivor takes the dead worker's
//! partitions over through a rebalance.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tributary_e2e::{
    wait_crashed, wait_landed, write_config_with, LakeCounter, Progress, Target, Tuning, Worker,
};
use tributary_testkit::{read_lake, wait_for, MockKafka, RecordKind};

const RECORDS: u64 = 6_000;
const PARTITIONS: i32 = 3;
const TOPIC: &str = "orders";
const GROUP: &str = "crash-group";
/// Long enough for a group join (about 3 s on the mock), the session
/// timeout of a crashed member (6 s) and the landings.
const PHASE_TIMEOUT: Duration = Duration::from_secs(120);

/// Small landings (about 500 records each, 4 or more per partition), so that
/// every crash point is reached several times.
fn tuning() -> Tuning {
    Tuning {
        max_poll_records: 100,
        max_records: 500,
        max_age: "300ms",
    }
}

/// A mock Kafka, a local lake and a worker config for both.
struct Setup {
    kafka: MockKafka,
    _dir: tempfile::TempDir,
    lake_dir: PathBuf,
    config: PathBuf,
    lake: LakeCounter,
}

impl Setup {
    fn new() -> Setup {
        let kafka = MockKafka::start(&[(TOPIC, PARTITIONS)]);
        let dir = tempfile::tempdir().expect("tempdir");
        let lake_dir = dir.path().join("lake");
        let target = Target::Local(lake_dir.clone());
        let config = write_config_with(
            dir.path(),
            kafka.bootstrap(),
            TOPIC,
            GROUP,
            &target,
            &tuning(),
        );
        let lake = LakeCounter::new(&target);
        Setup {
            kafka,
            _dir: dir,
            lake_dir,
            config,
            lake,
        }
    }

    fn produce(&self) {
        assert_eq!(
            self.kafka.produce(TOPIC, RECORDS, RecordKind::Small),
            0..RECORDS
        );
    }

    fn start(&self, crash: Option<&str>, progress: &Arc<Progress>) -> Worker {
        let env: Vec<(String, String)> = crash
            .map(|spec| vec![("TRIBUTARY_FAULT_CRASH".to_string(), spec.to_string())])
            .unwrap_or_default();
        Worker::start(&self.config, &env, progress.clone())
    }

    /// Runs a worker that must crash at `spec`; returns the intents it left.
    fn crash(&self, spec: &str) -> usize {
        let progress = Arc::new(Progress::default());
        let worker = self.start(Some(spec), &progress);
        wait_crashed(worker, &progress, spec, PHASE_TIMEOUT);
        self.lake.intents().expect("reading the intents")
    }

    /// Lets `worker` land every record, then stops it with SIGTERM.
    fn finish(&self, mut worker: Worker, progress: &Progress) {
        wait_landed(&mut worker, &self.lake, progress, RECORDS, PHASE_TIMEOUT);
        worker.signal(libc::SIGTERM);
        let status = worker.wait(Duration::from_secs(60));
        assert!(
            status.success(),
            "SIGTERM must exit 0, got {status}; log tail:\n{}",
            progress.tail()
        );
    }

    /// The verdict: the commit log, then independent readers of the files.
    fn check(&self, what: &str) {
        assert_eq!(self.lake.rows(), Some(RECORDS), "{what}: committed rows");
        assert_eq!(self.lake.intents(), Some(0), "{what}: intents left");
        let read = read_lake(Path::new(&self.lake_dir), "id", None);
        assert_eq!(read["rows"], RECORDS, "{what}: pyarrow rows: {read}");
        assert_eq!(
            read["distinct_ids"], RECORDS,
            "{what}: pyarrow distinct ids"
        );
        assert_eq!(read["min_id"], 0, "{what}");
        assert_eq!(read["max_id"], RECORDS - 1, "{what}");
        assert_eq!(read["duckdb"]["rows"], RECORDS, "{what}: duckdb rows");
        assert_eq!(
            read["duckdb"]["distinct_ids"], RECORDS,
            "{what}: duckdb distinct ids"
        );
    }
}

/// Whether a crash at this point leaves at least one intent behind for
/// recovery (it happens after the intent was written and before it was
/// removed).
fn leaves_an_intent(spec: &str) -> bool {
    [
        "after_intent",
        "before_data_write",
        "after_data_write",
        "before_commit_create",
        "after_commit_create",
        "during_orphan_cleanup",
    ]
    .iter()
    .any(|p| spec.split(':').next() == Some(*p))
}

/// Every record produced up front; one worker per crash spec, in turn, each
/// crashing; then a clean worker lands the rest.
fn crash_then_recover(specs: &[&str]) {
    let started = Instant::now();
    let s = Setup::new();
    s.produce();
    let mut after_crash = Vec::new();
    for spec in specs {
        let intents = s.crash(spec);
        if leaves_an_intent(spec) {
            assert!(intents > 0, "a crash at {spec} must leave an intent");
        }
        after_crash.push((spec, s.lake.rows().unwrap_or(0), intents));
    }
    let progress = Arc::new(Progress::default());
    let worker = s.start(None, &progress);
    s.finish(worker, &progress);
    let what = specs.join(" then ");
    s.check(&what);
    eprintln!(
        "crash at {what}: committed rows and intents after each crash {after_crash:?}; \
         recovered and verified in {:?}",
        started.elapsed()
    );
}

/// Both workers in the group from the start; the first crashes at `spec`
/// while the second keeps running and takes its partitions over.
fn crash_and_take_over(spec: &str) {
    let started = Instant::now();
    let s = Setup::new();
    let (doomed, survivor) = (Arc::new(Progress::default()), Arc::new(Progress::default()));
    let crashing = s.start(Some(spec), &doomed);
    let mut worker = s.start(None, &survivor);
    // Records only once both hold partitions, so that the doomed worker
    // lands (and crashes) with its share.
    wait_for(PHASE_TIMEOUT, "both workers to be assigned", || {
        if let Some(status) = worker.exited() {
            panic!(
                "the surviving worker exited with {status}:\n{}",
                survivor.tail()
            );
        }
        (doomed.assigned.load(Ordering::SeqCst) > 0 && survivor.assigned.load(Ordering::SeqCst) > 0)
            .then_some(())
    });
    s.produce();
    wait_crashed(crashing, &doomed, spec, PHASE_TIMEOUT);
    let at_crash = (s.lake.rows(), s.lake.intents());
    let before = survivor.assigned.load(Ordering::SeqCst);
    s.finish(worker, &survivor);
    assert!(
        survivor.assigned.load(Ordering::SeqCst) > before,
        "the survivor must have taken partitions over"
    );
    s.check(&format!("{spec} with takeover"));
    eprintln!(
        "crash at {spec} with takeover: (committed rows, intents) at the crash {at_crash:?}; \
         survivor landed {} rows in {} landings; verified in {:?}",
        survivor.rows(),
        survivor.landings.load(Ordering::SeqCst),
        started.elapsed()
    );
}

#[test]
fn crash_before_intent() {
    crash_then_recover(&["before_intent:3"]);
}

#[test]
fn crash_after_intent() {
    crash_then_recover(&["after_intent:3"]);
}

#[test]
fn crash_before_data_write() {
    crash_then_recover(&["before_data_write:3"]);
}

#[test]
fn crash_after_data_write() {
    crash_then_recover(&["after_data_write:3"]);
}

#[test]
fn crash_before_commit_create() {
    crash_then_recover(&["before_commit_create:3"]);
}

#[test]
fn crash_after_commit_create() {
    crash_then_recover(&["after_commit_create:3"]);
}

#[test]
fn crash_before_offset_commit() {
    crash_then_recover(&["before_offset_commit:3"]);
}

#[test]
fn crash_after_offset_commit() {
    crash_then_recover(&["after_offset_commit:3"]);
}

/// A crash that leaves files to clean up, then a crash in the middle of
/// cleaning them up.
#[test]
fn crash_during_orphan_cleanup() {
    crash_then_recover(&["after_data_write:2", "during_orphan_cleanup:1"]);
}

#[test]
fn takeover_after_commit_create() {
    crash_and_take_over("after_commit_create:2");
}

#[test]
fn takeover_after_data_write() {
    crash_and_take_over("after_data_write:2");
}

#[test]
fn takeover_before_offset_commit() {
    crash_and_take_over("before_offset_commit:2");
}
