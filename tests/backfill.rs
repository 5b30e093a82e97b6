//! `tributary backfill` end to end: bounded runs by offsets and by time,
//! a crash and resume, a double run, and a backfill beside a live daemon.
//!
//! Every test reads the lake back with pyarrow and DuckDB (not our code) and
//! runs `tributary verify`. Record `seq` goes to partition `seq % 3` at offset
//! `seq / 3` (the testkit's producer), so the expected ids of an offset range
//! are known exactly. Crash tests need a binary built with the
//! `fault-injection` feature (`./scripts/test.sh` builds one).

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tributary_e2e::{
    assert_each_once, wait_landed, write_config_with, LakeCounter, Progress, Target, Tuning, Worker,
};
use tributary_testkit::{
    bin_path, read_lake, spawn_tied, wait_for, workspace_root, MockKafka, RecordKind,
};

const TOPIC: &str = "orders";
const PARTITIONS: i32 = 3;
const TIMEOUT: Duration = Duration::from_secs(180);

/// Small landings, so that a run makes several commits per partition.
fn tuning() -> Tuning {
    Tuning {
        max_poll_records: 200,
        max_records: 500,
        max_age: "300ms",
    }
}

struct Setup {
    kafka: MockKafka,
    _dir: tempfile::TempDir,
    lake_dir: PathBuf,
    config: PathBuf,
    lake: LakeCounter,
}

impl Setup {
    fn new(group: &str) -> Setup {
        let kafka = MockKafka::start(&[(TOPIC, PARTITIONS)]);
        let dir = tempfile::tempdir().expect("tempdir");
        let lake_dir = dir.path().join("lake");
        let target = Target::Local(lake_dir.clone());
        let config = write_config_with(
            dir.path(),
            kafka.bootstrap(),
            TOPIC,
            group,
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

    fn backfill(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = Command::new(bin_path("tributary"));
        cmd.arg("backfill")
            .arg("--config")
            .arg(&self.config)
            .args(["--pipeline", "e2e", "--progress-interval", "1s"])
            .args(["--log-format", "json", "--log", "info"])
            .args(args)
            .current_dir(workspace_root())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = spawn_tied(cmd).expect("starting tributary backfill");
        let mut out = child.stdout.take().expect("stdout");
        let mut err = child.stderr.take().expect("stderr");
        let out = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let err = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let status = wait_for(TIMEOUT, "tributary backfill to exit", || {
            child.try_wait().expect("waiting")
        });
        Run {
            status,
            stdout: out.join().expect("stdout reader"),
            stderr: err.join().expect("stderr reader"),
        }
    }

    fn verify(&self) -> (ExitStatus, String) {
        let out = Command::new(bin_path("tributary"))
            .arg("verify")
            .arg("--config")
            .arg(&self.config)
            .args(["--pipeline", "e2e", "--require-broker"])
            .current_dir(workspace_root())
            .output()
            .expect("running tributary verify");
        (
            out.status,
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// pyarrow/DuckDB figures, checked against the expected ids; verify exit 0.
    fn check(&self, what: &str, expected: &[u64]) -> serde_json::Value {
        let n = expected.len() as u64;
        assert_eq!(self.lake.rows(), Some(n), "{what}: committed rows");
        assert_eq!(self.lake.intents(), Some(0), "{what}: intents left");
        let read = read_lake(Path::new(&self.lake_dir), "id", None);
        assert_each_once(&read, n, what);
        assert_eq!(read["min_id"], expected[0], "{what}: min id: {read}");
        assert_eq!(
            read["max_id"],
            *expected.last().unwrap(),
            "{what}: max id: {read}"
        );
        let (status, report) = self.verify();
        assert!(
            status.success(),
            "{what}: verify failed ({status}):\n{report}"
        );
        eprintln!(
            "{what}: expected {n}, committed {:?}, pyarrow rows {} distinct {} files {}, duckdb rows {} distinct {}, verify exit {}",
            self.lake.rows(),
            read["rows"],
            read["distinct_ids"],
            read["files"],
            read["duckdb"]["rows"],
            read["duckdb"]["distinct_ids"],
            status.code().unwrap_or(-1)
        );
        read
    }
}

struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The `key=value` pairs of the first stdout line starting with `prefix`.
    fn line(&self, prefix: &str) -> BTreeMap<String, String> {
        let line = self
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{}", self.stdout));
        fields(line)
    }

    fn summary(&self) -> BTreeMap<String, String> {
        self.line("backfill summary:")
    }

    fn expect_success(&self, what: &str) {
        assert!(
            self.status.success(),
            "{what}: backfill exited {}\nstdout:\n{}\nstderr tail:\n{}",
            self.status,
            self.stdout,
            tail(&self.stderr)
        );
        eprintln!("{what}: backfill output:\n{}", self.stdout);
    }
}

fn fields(line: &str) -> BTreeMap<String, String> {
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Ids of the records at offsets `start..end` of each partition.
fn ids(ranges: &[(i32, u64, u64)]) -> Vec<u64> {
    let mut out: Vec<u64> = ranges
        .iter()
        .flat_map(|&(p, s, e)| (s..e).map(move |o| o * PARTITIONS as u64 + p as u64))
        .collect();
    out.sort_unstable();
    out
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// An RFC 3339 time strictly after every record produced so far: waits
/// (on the clock, not a fixed sleep) until the clock has passed it.
fn boundary() -> String {
    let at = now_ms() + 2;
    wait_for(
        Duration::from_secs(5),
        "the clock to pass the boundary",
        || (now_ms() > at).then_some(()),
    );
    let secs = at.div_euclid(1000);
    let millis = at.rem_euclid(1000);
    // Format by hand: the e2e package has no date crate.
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[test]
fn civil_dates() {
    assert_eq!(civil_from_days(0), (1970, 1, 1));
    assert_eq!(civil_from_days(19_844), (2024, 5, 1));
}

/// Offset bounds: exactly the asked ranges land; a second identical run
/// lands nothing; `--dry-run` writes nothing.
#[test]
fn offset_bounded_then_run_again() {
    let s = Setup::new("backfill-offsets");
    assert_eq!(s.kafka.produce(TOPIC, 6_000, RecordKind::Small), 0..6_000);
    let args = [
        "--from",
        "0:100,1:200,2:0",
        "--until",
        "0:1100,1:1700,2:2000",
    ];

    let dry = s.backfill(&[&args[..], &["--dry-run"]].concat(), &[]);
    dry.expect_success("dry run");
    assert_eq!(dry.line("backfill plan:")["records"], "4500");
    assert_eq!(s.lake.rows(), Some(0), "a dry run writes nothing");

    let first = s.backfill(&args, &[]);
    first.expect_success("first run");
    let summary = first.summary();
    assert_eq!(summary["status"], "complete");
    assert_eq!(summary["records"], "4500");
    // Not a terminal: plain progress lines, the last one at the end.
    let progress: Vec<BTreeMap<String, String>> = first
        .stdout
        .lines()
        .filter(|l| l.starts_with("backfill progress:"))
        .map(fields)
        .collect();
    assert_eq!(
        progress.last().map(|p| p["records"].as_str()),
        Some("4500/4500"),
        "{}",
        first.stdout
    );
    let expected = ids(&[(0, 100, 1100), (1, 200, 1700), (2, 0, 2000)]);
    let read = s.check("offset-bounded", &expected);

    let second = s.backfill(&args, &[]);
    second.expect_success("second run");
    let summary = second.summary();
    assert_eq!(summary["status"], "complete");
    assert_eq!(summary["records"], "0", "the second run lands nothing");
    assert_eq!(summary["files"], "0");
    let again = s.check("offset-bounded, run twice", &expected);
    assert_eq!(
        again["files"], read["files"],
        "no file added by the second run"
    );

    // Offsets before a partition's first landed offset cannot join its log:
    // refused, non-zero, saying why; nothing written.
    let before = s.backfill(&["--from", "0:0", "--until", "0:50"], &[]);
    assert!(!before.status.success(), "{}", before.stdout);
    assert!(
        before.stderr.contains("begins at offset 100"),
        "{}",
        tail(&before.stderr)
    );
    assert_eq!(s.lake.rows(), Some(4_500));
}

/// Time bounds: three production phases separated by two times; the
/// backfill between them lands exactly the middle phase.
#[test]
fn time_bounded() {
    let s = Setup::new("backfill-time");
    assert_eq!(s.kafka.produce(TOPIC, 3_000, RecordKind::Small), 0..3_000);
    let from = boundary();
    let second = s.kafka.produce(TOPIC, 3_000, RecordKind::Small);
    let until = boundary();
    let third = s.kafka.produce(TOPIC, 3_000, RecordKind::Small);
    // Phase 2 holds ids 3000..6000, offsets 1000..2000 of every partition.
    assert_eq!((second.clone(), third), (3_000..6_000, 6_000..9_000));

    let run = s.backfill(&["--from", &from, "--until", &until], &[]);
    run.expect_success("time-bounded");
    let plan = run.line("backfill plan:");
    assert_eq!(plan["records"], "3000", "planned: {}", run.stdout);
    for p in 0..PARTITIONS {
        let line = run.line(&format!("partition={TOPIC}/{p} start="));
        assert_eq!(line["start"], "1000", "{}", run.stdout);
        assert_eq!(line["end"], "2000", "{}", run.stdout);
    }
    assert_eq!(run.summary()["records"], "3000");
    s.check("time-bounded", &second.collect::<Vec<_>>());
}

/// A backfill that crashes mid-way (an injected crash right after a commit
/// record is created, exit 86) is finished by a second run.
#[test]
fn crash_then_resume() {
    let s = Setup::new("backfill-crash");
    assert_eq!(s.kafka.produce(TOPIC, 6_000, RecordKind::Small), 0..6_000);
    let crashed = s.backfill(&[], &[("TRIBUTARY_FAULT_CRASH", "after_commit_create:4")]);
    assert_eq!(
        crashed.status.code(),
        Some(86),
        "the first run must crash at the injected point; stdout:\n{}\nstderr:\n{}",
        crashed.stdout,
        tail(&crashed.stderr)
    );
    let landed = s.lake.rows().expect("lake rows");
    assert!(landed > 0 && landed < 6_000, "crashed after {landed} rows");
    eprintln!("crash: the first run crashed after {landed} committed rows");

    let resumed = s.backfill(&[], &[]);
    resumed.expect_success("resumed run");
    let summary = resumed.summary();
    assert_eq!(summary["status"], "complete");
    assert_eq!(
        summary["records"].parse::<u64>().unwrap(),
        6_000 - landed,
        "the second run lands exactly the rest"
    );
    s.check("crash and resume", &(0..6_000).collect::<Vec<_>>());
}

/// A daemon (`tributary run`) and a backfill write the same partitions at
/// the same time, over overlapping ranges, while records keep arriving.
#[test]
fn beside_a_live_daemon() {
    const TOTAL: u64 = 12_000;
    let s = Setup::new("backfill-daemon");
    assert_eq!(s.kafka.produce(TOPIC, 3_000, RecordKind::Small), 0..3_000);
    let producer =
        s.kafka
            .produce_in_background(TOPIC, TOTAL - 3_000, RecordKind::Small, Some(1_500));
    let progress = Arc::new(Progress::default());
    let mut daemon = Worker::start(&s.config, &[], progress.clone());
    wait_landed(&mut daemon, &s.lake, &progress, 500, TIMEOUT);

    // The backfill starts where the lake ends and races the daemon to the
    // high watermark of now.
    let run = s.backfill(&[], &[]);
    run.expect_success("backfill beside the daemon");
    assert_eq!(run.summary()["status"], "complete");

    assert_eq!(producer.join(), 3_000..TOTAL);
    wait_landed(&mut daemon, &s.lake, &progress, TOTAL, TIMEOUT);
    daemon.signal(libc::SIGTERM);
    let status = daemon.wait(Duration::from_secs(60));
    assert!(
        status.success(),
        "daemon exit {status}; log:\n{}",
        progress.tail()
    );
    eprintln!(
        "daemon: landings {}, lost or failed landings {}; backfill: {:?}",
        progress.landings.load(std::sync::atomic::Ordering::SeqCst),
        progress.failed.load(std::sync::atomic::Ordering::SeqCst),
        run.summary()
    );
    s.check("beside a live daemon", &(0..TOTAL).collect::<Vec<_>>());
}
