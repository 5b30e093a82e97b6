//! End-to-end tests: the real `tributary` binary against a real Kafka protocol
//! (librdkafka's mock cluster in its own process) and a real S3 server
//! (SeaweedFS), read back by independent readers (pyarrow and DuckDB).

use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tributary_e2e::{wait_landed, write_config, LakeCounter, Progress, Target, Worker};
use tributary_testkit::{
    bin_path, read_lake, wait_for, workspace_root, MockKafka, RecordKind, SeaweedFs,
};

const TOTAL: u64 = 100_000;
const PARTITIONS: i32 = 3;

/// 100,000 records over 3 partitions, produced while the pipeline runs:
/// run → SIGTERM mid-way → restart → kill -9 mid-way → restart → finish.
/// Then pyarrow and DuckDB must count exactly 100,000 rows and 100,000
/// distinct ids.
fn exactly_once_through_sigterm_and_kill9(target: Target<'_>) {
    let kafka = MockKafka::start(&[("orders", PARTITIONS)]);
    // 5,000 records/s by default: production (20 s) overlaps all three runs,
    // and the topic stays far under the mock broker's 5 MiB-per-partition cap
    // (~80-byte records). E2E_PRODUCE_RATE changes it, for stress runs.
    let rate = std::env::var("E2E_PRODUCE_RATE")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5_000);
    let producer = kafka.produce_in_background("orders", TOTAL, RecordKind::Small, Some(rate));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        kafka.bootstrap(),
        "orders",
        "e2e-group",
        &target,
    );
    let env = target.env();
    let progress = Arc::new(Progress::default());
    let lake = LakeCounter::new(&target);

    // Run 1: graceful stop mid-way.
    let mut w = Worker::start(&config, &env, progress.clone());
    wait_landed(&mut w, &lake, &progress, 15_000, Duration::from_secs(120));
    w.signal(libc::SIGTERM);
    let status = w.wait(Duration::from_secs(60));
    assert!(
        status.success(),
        "SIGTERM must exit 0, got {status}; log:\n{}",
        progress.tail()
    );
    let after_term = lake.rows().unwrap();

    // Run 2: kill -9 mid-way.
    let mut w = Worker::start(&config, &env, progress.clone());
    wait_landed(
        &mut w,
        &lake,
        &progress,
        after_term + 20_000,
        Duration::from_secs(120),
    );
    w.kill9();
    let after_kill = lake.rows().unwrap();
    if rate <= 5_000 {
        assert!(
            after_kill < TOTAL,
            "run 2 should be killed mid-way, landed {after_kill}"
        );
    }

    // Run 3: finish.
    let assigned = progress.assigned.load(Ordering::SeqCst);
    let mut w = Worker::start(&config, &env, progress.clone());
    let ids = producer.join();
    assert_eq!(ids, 0..TOTAL);
    wait_landed(&mut w, &lake, &progress, TOTAL, Duration::from_secs(180));
    wait_for(Duration::from_secs(60), "run 3 to be assigned", || {
        (progress.assigned.load(Ordering::SeqCst) > assigned).then_some(())
    });
    w.signal(libc::SIGTERM);
    let status = w.wait(Duration::from_secs(60));
    assert!(
        status.success(),
        "SIGTERM must exit 0, got {status}; log:\n{}",
        progress.tail()
    );

    // The commit log covers every record once...
    assert_eq!(lake.rows(), Some(TOTAL), "rows in committed ranges");
    // ...and no worker ever logged landing more than there is (a range landed
    // twice would exceed it; a worker killed between commit and log line
    // makes this an undercount, never an overcount).
    assert!(
        progress.rows() <= TOTAL,
        "logged landed rows {}",
        progress.rows()
    );

    // The verdict: independent readers.
    let (location, s3) = match &target {
        Target::Local(d) => (d.display().to_string(), None),
        Target::S3 { server, .. } => (target.url(), Some(*server)),
    };
    let read = read_lake(&location, "id", s3);
    eprintln!(
        "e2e {}: produced {TOTAL}; landed after SIGTERM {after_term}, after kill -9 {after_kill}; \
         {} landings logged, {} failed; readers: {read}",
        target.url(),
        progress.landings.load(Ordering::SeqCst),
        progress.failed.load(Ordering::SeqCst),
    );
    assert_eq!(read["rows"], TOTAL, "pyarrow rows");
    assert_eq!(read["distinct_ids"], TOTAL, "pyarrow distinct ids");
    assert_eq!(read["min_id"], 0);
    assert_eq!(read["max_id"], TOTAL - 1);
    assert_eq!(read["duckdb"]["rows"], TOTAL, "duckdb rows");
    assert_eq!(read["duckdb"]["distinct_ids"], TOTAL, "duckdb distinct ids");
    assert_eq!(
        read["schema"]["ts"], "timestamp[ms, tz=UTC]",
        "timestamps are UTC TIMESTAMPs: {read}"
    );
    assert_eq!(read["schema"]["user"], "string");
}

#[test]
fn exactly_once_on_local_disk() {
    let dir = tempfile::tempdir().unwrap();
    exactly_once_through_sigterm_and_kill9(Target::Local(dir.path().join("lake")));
}

#[test]
fn exactly_once_on_s3() {
    let Some(server) = SeaweedFs::start_or_skip() else {
        return;
    };
    let bucket = server.fresh_bucket();
    exactly_once_through_sigterm_and_kill9(Target::S3 {
        server: &server,
        bucket,
    });
}

#[test]
fn demo_lands_every_record_and_pyarrow_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let output = Command::new(bin_path("tributary"))
        .args(["demo", "--records", "5000", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("Landed 5000 rows"), "{stdout}");
    assert!(stdout.contains("duckdb -c"), "{stdout}");
    let read = read_lake(&out, "order_id", None);
    assert_eq!(read["rows"], 5000);
    assert_eq!(read["distinct_ids"], 5000);
    // Running it again replaces its own earlier output.
    let again = Command::new(bin_path("tributary"))
        .args(["demo", "--records", "100", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(read_lake(&out, "order_id", None)["rows"], 100);
}

#[test]
fn validate_accepts_shipped_configs_and_names_the_wrong_key() {
    let root = workspace_root();
    let ok = Command::new(bin_path("tributary"))
        .args(["validate", "--config", "config/worker.toml"])
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("valid (1 pipeline: orders-to-lake)"));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    let text = std::fs::read_to_string(root.join("config/worker.toml"))
        .unwrap()
        .replace("compression = \"zstd\"", "compression = \"brotli\"");
    std::fs::write(&bad, text).unwrap();
    let out = Command::new(bin_path("tributary"))
        .args(["validate", "--config"])
        .arg(&bad)
        .current_dir(&root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("pipelines.0.sink.compression"), "{stderr}");
    assert!(stderr.contains("brotli"), "{stderr}");

    // Environment overrides are validated too.
    let out = Command::new(bin_path("tributary"))
        .args(["validate", "--config", "config/worker.toml"])
        .env(
            "TRIBUTARY_PIPELINES__ORDERS_TO_LAKE__SINK__URL",
            "ftp://nope",
        )
        .current_dir(&root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pipelines.0.sink.url"));
}

/// Runs `tributary verify` with `args` in the workspace root; returns the
/// exit code and, with `--json`, the parsed document (else stdout as a string).
fn verify(args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let out = Command::new(bin_path("tributary"))
        .arg("verify")
        .args(args)
        .current_dir(workspace_root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let doc = if args.contains(&"--json") {
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("verify --json printed no JSON ({e}): {stdout}\n{stderr}"))
    } else {
        serde_json::Value::Null
    };
    (out.status.code(), doc, format!("{stdout}\n{stderr}"))
}

#[test]
fn verify_finds_a_demo_lake_consistent_and_names_a_corrupt_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let demo = Command::new(bin_path("tributary"))
        .args(["demo", "--records", "2000", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        demo.status.success(),
        "{}",
        String::from_utf8_lossy(&demo.stderr)
    );
    let url = format!("file://{}", out.display());

    let (code, doc, output) = verify(&["--url", &url, "--json"]);
    assert_eq!(code, Some(0), "{output}");
    assert_eq!(doc["status"], "consistent", "{doc:#}");
    assert_eq!(doc["consistent"], true);
    assert_eq!(doc["violations"], 0);
    assert_eq!(doc["checked"]["checksums"], true);
    let lake = &doc["lakes"][0];
    assert_eq!(lake["url"], url.as_str());
    let totals = &lake["totals"];
    assert_eq!(
        totals["rows"].as_u64().unwrap() + totals["dead_lettered"].as_u64().unwrap(),
        2000,
        "{totals}"
    );
    assert_eq!(totals["orphans"], 0);
    let (code, _, output) = verify(&["--url", &url]);
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("CONSISTENT: 0 violations"), "{output}");

    // Corrupt one committed file in place (same size).
    let victim = first_parquet_file(&out);
    let relative = victim
        .strip_prefix(&out)
        .unwrap()
        .to_string_lossy()
        .to_string();
    let mut bytes = std::fs::read(&victim).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&victim, &bytes).unwrap();

    let (code, doc, output) = verify(&["--url", &url, "--json"]);
    assert_eq!(code, Some(1), "{output}");
    assert_eq!(doc["status"], "inconsistent");
    assert_eq!(doc["violations"], 1, "{doc:#}");
    let findings: Vec<&serde_json::Value> = doc["lakes"][0]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["findings"].as_array().unwrap())
        .collect();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0]["kind"], "checksum_mismatch");
    assert_eq!(findings[0]["path"], relative.as_str());
    assert_eq!(findings[0]["topic"], "orders");
    let (code, _, output) = verify(&["--url", &url]);
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains(&relative), "{output}");
    // Without reading contents only sizes are compared: this corruption passes.
    let (code, _, output) = verify(&["--url", &url, "--no-checksums"]);
    assert_eq!(code, Some(0), "{output}");
    // A lake that does not exist cannot be checked.
    let missing = format!("file://{}/nope", dir.path().display());
    let (code, doc, output) = verify(&["--url", &missing, "--json"]);
    assert_eq!(code, Some(2), "{output}");
    assert_eq!(doc["status"], "error");
}

fn first_parquet_file(dir: &std::path::Path) -> std::path::PathBuf {
    let mut stack = vec![dir.to_path_buf()];
    let mut found = Vec::new();
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name.starts_with('_') {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if name.ends_with(".parquet") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
        .into_iter()
        .next()
        .expect("a Parquet file in the demo lake")
}

/// A worker lands a topic and stops; `verify --config` then compares the
/// lake with the topic's watermarks and the group's committed offsets.
#[test]
fn verify_compares_a_landed_lake_with_the_broker() {
    let kafka = MockKafka::start(&[("orders", 2)]);
    kafka.produce("orders", 2_000, RecordKind::Small);
    let dir = tempfile::tempdir().unwrap();
    let target = Target::Local(dir.path().join("lake"));
    let config = write_config(
        dir.path(),
        kafka.bootstrap(),
        "orders",
        "verify-group",
        &target,
    );
    let progress = Arc::new(Progress::default());
    let lake = LakeCounter::new(&target);
    let mut w = Worker::start(&config, &target.env(), progress.clone());
    wait_landed(&mut w, &lake, &progress, 2_000, Duration::from_secs(120));
    w.signal(libc::SIGTERM);
    let status = w.wait(Duration::from_secs(60));
    assert!(status.success(), "{status}; log:\n{}", progress.tail());

    let config = config.display().to_string();
    let (code, doc, output) = verify(&["--config", &config, "--json", "--require-broker"]);
    assert_eq!(code, Some(0), "{output}");
    let lake = &doc["lakes"][0];
    assert_eq!(lake["pipeline"], "e2e");
    assert_eq!(lake["broker"]["status"], "checked", "{lake:#}");
    assert_eq!(lake["broker"]["group_id"], "verify-group");
    let partitions = lake["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 2, "{lake:#}");
    for p in partitions {
        let broker = &p["broker"];
        assert_eq!(p["status"], "ok", "{p:#}");
        assert_eq!(p["next_offset"], broker["high_watermark"], "{p:#}");
        assert_eq!(p["next_offset"], broker["group_offset"], "{p:#}");
        assert_eq!(broker["landing_lag"], 0);
    }
    let (code, _, output) = verify(&["--config", &config]);
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("KAFKA LOW..HIGH"), "{output}");

    // The same lake against a broker that is gone: lake checks only, or exit 2.
    drop(kafka);
    let args = ["--config", &config, "--broker-timeout", "2s"];
    let (code, _, output) = verify(&args);
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("broker_unreachable"), "{output}");
    let (code, _, output) = verify(&[&args[..], &["--require-broker"]].concat());
    assert_eq!(code, Some(2), "{output}");
}
