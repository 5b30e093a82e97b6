//! The file source end to end: JSON lines, CSV and Parquet dumps landed by
//! `tributary backfill` into one table, each file exactly once — a second
//! run lands nothing, and a run that crashes in the middle of a file is
//! finished by the next one. Read back with pyarrow and DuckDB, and checked
//! with `tributary verify`. The crash needs a binary built with the
//! `fault-injection` feature (`./scripts/test.sh` builds one).

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use std::sync::Arc;

use tributary_e2e::{wait_landed, LakeCounter, Progress, Target, Worker};
use tributary_testkit::{bin_path, python, read_lake, spawn_tied, wait_for, workspace_root};

const TIMEOUT: Duration = Duration::from_secs(120);

fn small_json(id: u64) -> String {
    format!(
        "{{\"id\":{id},\"user\":\"u{:03}\",\"amount\":{}.{:02},\"ts\":\"{}\"}}",
        id % 1000,
        id / 100,
        id % 100,
        ts(id)
    )
}

/// 2024-05-01T00:00:00Z plus `id` seconds, within one day for small ids.
fn ts(id: u64) -> String {
    format!(
        "2024-05-01T{:02}:{:02}:{:02}Z",
        id / 3600 % 24,
        id / 60 % 60,
        id % 60
    )
}

struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    lake_dir: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let lake_dir = dir.path().join("lake");
        let schema = workspace_root().join("tests/fixtures/small.json");
        let mut text = String::from(
            "[worker]\nid = \"e2e\"\nhttp_addr = \"127.0.0.1:0\"\nshutdown_timeout = \"30s\"\n",
        );
        for format in ["jsonl", "csv", "parquet"] {
            let input = dir.path().join(format!("in-{format}"));
            std::fs::create_dir_all(&input).unwrap();
            text.push_str(&format!(
                r#"
[[pipelines]]
name = "{format}"

[pipelines.source]
type = "file"
url = "file://{input}"
format = "{format}"
topic = "dump-{format}"
batch_size = 100

[pipelines.converter]
type = "json"
schema = "{schema}"
timestamp_field = "ts"
on_error = "fail"

[pipelines.sink]
type = "parquet"
url = "file://{lake}"
compression = "zstd"
partition_by = "dt=%Y-%m-%d/hour=%H"
flush = {{ max_records = 300, max_age = "300ms" }}
"#,
                input = input.display(),
                schema = schema.display(),
                lake = lake_dir.display(),
            ));
        }
        let config = dir.path().join("worker.toml");
        std::fs::write(&config, text).unwrap();
        Setup {
            dir,
            config,
            lake_dir,
        }
    }

    fn input(&self, format: &str) -> PathBuf {
        self.dir.path().join(format!("in-{format}"))
    }

    fn backfill(
        &self,
        pipeline: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> (ExitStatus, String, String) {
        let mut cmd = Command::new(bin_path("tributary"));
        cmd.arg("backfill")
            .arg("--config")
            .arg(&self.config)
            .args(["--pipeline", pipeline, "--progress-interval", "1s"])
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
        let mut out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
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
        (status, out.join().unwrap(), err.join().unwrap())
    }

    /// Runs a backfill that must succeed; returns the summary's fields.
    fn landed(&self, pipeline: &str) -> std::collections::BTreeMap<String, String> {
        let (status, out, err) = self.backfill(pipeline, &[], &[]);
        let tail: Vec<&str> = err.lines().collect();
        assert!(
            status.success(),
            "{pipeline}: exit {status}\n{out}\n{}",
            tail[tail.len().saturating_sub(30)..].join("\n")
        );
        eprintln!("{pipeline}:\n{out}");
        summary(&out)
    }

    fn verify(&self) {
        let out = Command::new(bin_path("tributary"))
            .arg("verify")
            .arg("--config")
            .arg(&self.config)
            .current_dir(workspace_root())
            .output()
            .expect("running tributary verify");
        assert!(
            out.status.success(),
            "verify exit {}:\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("verify: exit {}", out.status.code().unwrap_or(-1));
    }

    fn read(&self, expected: u64) -> serde_json::Value {
        let read = read_lake(Path::new(&self.lake_dir), "id", None);
        assert_eq!(read["rows"], expected, "pyarrow rows: {read}");
        assert_eq!(read["distinct_ids"], expected, "distinct ids: {read}");
        assert_eq!(read["duckdb"]["rows"], expected, "duckdb rows: {read}");
        assert_eq!(read["min_id"], 0, "{read}");
        assert_eq!(read["max_id"], expected - 1, "{read}");
        eprintln!(
            "read back: pyarrow rows {} distinct {} files {}, duckdb rows {} distinct {}",
            read["rows"],
            read["distinct_ids"],
            read["files"],
            read["duckdb"]["rows"],
            read["duckdb"]["distinct_ids"]
        );
        read
    }
}

fn summary(out: &str) -> std::collections::BTreeMap<String, String> {
    let line = out
        .lines()
        .find(|l| l.starts_with("backfill summary:"))
        .unwrap_or_else(|| panic!("no summary in:\n{out}"));
    line.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// JSON lines ids 0..1500 in two files (one nested), CSV 1500..2500 in one
/// file, Parquet 2500..3500 in one file (written by pyarrow).
fn write_inputs(s: &Setup) {
    let jsonl = |ids: std::ops::Range<u64>| {
        let mut text = String::new();
        for id in ids {
            text.push_str(&small_json(id));
            text.push('\n');
            if id % 97 == 0 {
                text.push('\n'); // blank lines take a line number, not a record
            }
        }
        text
    };
    std::fs::write(s.input("jsonl").join("a.jsonl"), jsonl(0..1000)).unwrap();
    std::fs::create_dir_all(s.input("jsonl").join("2024/05")).unwrap();
    std::fs::write(s.input("jsonl").join("2024/05/b.jsonl"), jsonl(1000..1500)).unwrap();
    std::fs::write(s.input("jsonl").join("ignored.txt"), "not an input").unwrap();

    let mut csv = String::from("id,user,amount,ts\n");
    for id in 1500..2500u64 {
        csv.push_str(&format!(
            "{id},u{:03},{}.{:02},{}\n",
            id % 1000,
            id / 100,
            id % 100,
            ts(id)
        ));
    }
    std::fs::write(s.input("csv").join("dump.csv"), csv).unwrap();

    let script = r#"
import sys, pyarrow as pa, pyarrow.parquet as pq
path, lo, hi = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ids = list(range(lo, hi))
pq.write_table(pa.table({
    "id": pa.array(ids, pa.int64()),
    "user": ["u%03d" % (i % 1000) for i in ids],
    "amount": [i / 100 for i in ids],
    "ts": pa.array([1714521600000 + i * 1000 for i in ids], pa.timestamp("ms", tz="UTC")),
}), path, row_group_size=300)
"#;
    let status = Command::new(python())
        .arg("-c")
        .arg(script)
        .arg(s.input("parquet").join("dump.parquet"))
        .args(["2500", "3500"])
        .status()
        .expect("running pyarrow");
    assert!(status.success(), "writing the Parquet fixture failed");
}

#[test]
fn jsonl_csv_parquet_once_each() {
    let s = Setup::new();
    write_inputs(&s);

    let (status, out, _) = s.backfill("jsonl", &["--dry-run"], &[]);
    assert!(status.success(), "{out}");
    assert!(out.contains("files=2 to_read=2"), "{out}");
    eprintln!("dry run:\n{out}");

    // CSV first, crashing right after its second commit (mid-file: 1000
    // rows land 300 at a time), then finished by a second run.
    let (status, out, err) = s.backfill(
        "csv",
        &[],
        &[("TRIBUTARY_FAULT_CRASH", "after_commit_create:2")],
    );
    assert_eq!(status.code(), Some(86), "{out}\n{err}");
    let lake = LakeCounter::new(&Target::Local(s.lake_dir.clone()));
    let before = lake.rows().expect("lake rows");
    assert!(before > 0 && before < 1000, "crashed after {before} rows");
    let resumed = s.landed("csv");
    assert_eq!(resumed["status"], "complete");
    assert_eq!(
        resumed["records"].parse::<u64>().unwrap(),
        1000 - before,
        "the rest of the file"
    );
    eprintln!(
        "csv: crashed after {before} rows; the second run landed the other {}",
        1000 - before
    );

    assert_eq!(s.landed("jsonl")["records"], "1500");
    assert_eq!(s.landed("parquet")["records"], "1000");
    let read = s.read(3_500);
    s.verify();

    // Everything again: nothing lands twice.
    for pipeline in ["jsonl", "csv", "parquet"] {
        let again = s.landed(pipeline);
        assert_eq!(again["status"], "complete", "{pipeline}");
        assert_eq!(again["records"], "0", "{pipeline}: second run");
        assert_eq!(again["files"], "0", "{pipeline}: second run");
    }
    let again = s.read(3_500);
    assert_eq!(again["files"], read["files"]);
    s.verify();

    // A landed file that changed is refused, naming it.
    let path = s.input("csv").join("dump.csv");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("9999,u999,1.00,2024-05-01T00:00:00Z\n");
    std::fs::write(&path, text).unwrap();
    let (status, out, err) = s.backfill("csv", &[], &[]);
    assert!(!status.success(), "a changed file must be refused:\n{out}");
    assert!(err.contains("dump.csv") && err.contains("changed"), "{err}");
}

/// `tributary run` lands the same files (every pipeline of the config, all
/// three formats); a backfill afterwards finds every file landed.
#[test]
fn run_lands_files_and_backfill_finds_them_landed() {
    let s = Setup::new();
    write_inputs(&s);
    let lake = LakeCounter::new(&Target::Local(s.lake_dir.clone()));
    let progress = Arc::new(Progress::default());
    let mut worker = Worker::start(&s.config, &[], progress.clone());
    wait_landed(&mut worker, &lake, &progress, 3_500, TIMEOUT);
    // The pipelines end after their last file; the worker may stay up
    // (control API) or exit by itself: either way it ends with exit 0.
    if worker.exited().is_none() {
        worker.signal(libc::SIGTERM);
    }
    let status = worker.wait(Duration::from_secs(60));
    assert!(status.success(), "run exit {status}:\n{}", progress.tail());
    s.read(3_500);
    s.verify();
    for pipeline in ["jsonl", "csv", "parquet"] {
        let again = s.landed(pipeline);
        assert_eq!(again["status"], "complete", "{pipeline}");
        assert_eq!(again["records"], "0", "{pipeline}: landed by run already");
    }
}

/// Input files in a bucket prefix (SeaweedFS S3; skipped when no `weed`
/// binary is installed, unless TRIBUTARY_REQUIRE_S3=1): listed, landed once,
/// nothing outside the prefix or under `_`-directories read.
#[test]
fn files_in_a_bucket_prefix() {
    use object_store::ObjectStoreExt as _;

    let Some(server) = tributary_testkit::SeaweedFs::start_or_skip() else {
        return;
    };
    let bucket = server.fresh_bucket();
    let store = server.store(&bucket);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let put = |path: &str, text: String| {
        runtime
            .block_on(store.put(
                &object_store::path::Path::from(path),
                text.into_bytes().into(),
            ))
            .unwrap_or_else(|e| panic!("putting {path}: {e}"));
    };
    let lines = |ids: std::ops::Range<u64>| ids.map(|i| small_json(i) + "\n").collect::<String>();
    put("dumps/orders/part-0.jsonl", lines(0..600));
    put("dumps/orders/2024/part-1.jsonl", lines(600..1000));
    put("dumps/orders/_tmp/part-2.jsonl", lines(5000..5100));
    put("dumps/other/part-3.jsonl", lines(6000..6100));

    let dir = tempfile::tempdir().unwrap();
    let lake_dir = dir.path().join("lake");
    let schema = workspace_root().join("tests/fixtures/small.json");
    let config = dir.path().join("worker.toml");
    std::fs::write(
        &config,
        format!(
            r#"[worker]
id = "e2e"
http_addr = "127.0.0.1:0"

[[pipelines]]
name = "s3"

[pipelines.source]
type = "file"
url = "s3://{bucket}/dumps/orders"
format = "jsonl"

[pipelines.source.storage]
endpoint = "{endpoint}"
region = "{region}"
access_key_id = "{key}"
path_style = true
allow_http = true

[pipelines.converter]
type = "json"
schema = "{schema}"
timestamp_field = "ts"
on_error = "fail"

[pipelines.sink]
type = "parquet"
url = "file://{lake}"
flush = {{ max_records = 300, max_age = "300ms" }}
"#,
            endpoint = server.endpoint(),
            region = server.region(),
            key = server.access_key(),
            schema = schema.display(),
            lake = lake_dir.display(),
        ),
    )
    .unwrap();
    let s = Setup {
        dir,
        config,
        lake_dir,
    };
    let secret = server.secret_key().to_string();
    let env = [(
        "TRIBUTARY_PIPELINES__0__SOURCE__STORAGE__SECRET_ACCESS_KEY",
        secret.as_str(),
    )];
    let run = |what: &str| {
        let (status, out, err) = s.backfill("s3", &[], &env);
        let tail: Vec<&str> = err.lines().collect();
        assert!(
            status.success(),
            "{what}: exit {status}\n{out}\n{}",
            tail[tail.len().saturating_sub(30)..].join("\n")
        );
        eprintln!("{what}:\n{out}");
        summary(&out)
    };
    let first = run("first run");
    assert_eq!(first["records"], "1000");
    s.read(1_000);
    let second = run("second run");
    assert_eq!(second["records"], "0");
    s.read(1_000);
}
