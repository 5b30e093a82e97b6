//! Running Tributary as a service: the control API, lag health, `/metrics`,
//! the status page in headless Chromium, drain on SIGTERM during a rolling
//! restart of three workers, and scaling a group 3 → 2 → 3 while records
//! flow. Every run ends with `tributary verify` and the independent readers
//! (pyarrow, DuckDB) counting each record exactly once.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tributary_e2e::{http, write_config, LakeCounter, Progress, Target, Worker};
use tributary_testkit::{bin_path, read_lake, wait_for, workspace_root, MockKafka, RecordKind};

const TOKEN: &str = "op-test-token";
const WAIT: Duration = Duration::from_secs(120);

/// Runs `tributary verify --require-broker --json`; returns exit code and document.
fn verify(config: &Path) -> (Option<i32>, Value) {
    let out = Command::new(bin_path("tributary"))
        .args(["verify", "--require-broker", "--json", "--config"])
        .arg(config)
        .current_dir(workspace_root())
        .output()
        .expect("running tributary verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let doc = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "verify --json printed no JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), doc)
}

/// Checks the lake holds ids `0..total` exactly once; returns a summary line.
fn check_lake(config: &Path, lake_dir: &Path, total: u64) -> String {
    let (code, doc) = verify(config);
    let read = read_lake(lake_dir, "id", None);
    let summary = format!(
        "verify {} (exit {code:?}); pyarrow rows {} distinct {} min {} max {}; duckdb rows {} distinct {}",
        doc["status"],
        read["rows"],
        read["distinct_ids"],
        read["min_id"],
        read["max_id"],
        read["duckdb"]["rows"],
        read["duckdb"]["distinct_ids"]
    );
    assert_eq!(code, Some(0), "{summary}\n{doc:#}");
    assert_eq!(read["rows"], total, "{summary}");
    assert_eq!(read["distinct_ids"], total, "{summary}");
    assert_eq!(read["min_id"], 0, "{summary}");
    assert_eq!(read["max_id"], total - 1, "{summary}");
    assert_eq!(read["duckdb"]["rows"], total, "{summary}");
    assert_eq!(read["duckdb"]["distinct_ids"], total, "{summary}");
    summary
}

fn get(addr: &str, path: &str) -> Value {
    let r = http("GET", addr, path, Some(TOKEN));
    assert_eq!(r.status, 200, "GET {path}: {}", r.body);
    r.json()
}

fn status(addr: &str) -> Value {
    get(addr, "/pipelines/e2e/status")
}

fn partitions(status: &Value) -> &Vec<Value> {
    status["partitions"].as_array().expect("partitions")
}

fn sum(status: &Value, field: &str) -> i64 {
    partitions(status)
        .iter()
        .map(|p| p[field].as_i64().unwrap_or(0))
        .sum()
}

/// Waits until `cond` holds for the pipeline's status; returns that status.
fn wait_status(addr: &str, what: &str, mut cond: impl FnMut(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let found = tributary_testkit::try_wait_for(WAIT, || {
        last = status(addr);
        cond(&last).then(|| last.clone())
    });
    found.unwrap_or_else(|| panic!("timed out waiting for {what}; last status:\n{last:#}"))
}

/// Metric names a Prometheus exposition declares (`# TYPE name kind`).
fn exported_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// `tributary_*` names used in a text (dashboard JSON, rule file), with
/// histogram suffixes stripped.
fn used_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("tributary_") {
        let start = i + at;
        let preceded =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        if !preceded {
            let name = &text[start..end];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|b| b.ends_with("_seconds")))
                .unwrap_or(name);
            out.insert(base.to_string());
        }
        i = end;
    }
    out
}

fn chromium_dom(url: &str) -> String {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("Chromium is missing: run ./scripts/setup-chromium.sh (./scripts/test.sh does)")
        });
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("running chromium");
    let dom = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && !dom.is_empty(),
        "chromium failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

/// Text a person would see: the DOM without tags.
fn visible_text(dom: &str) -> String {
    let body = dom.split("<body").nth(1).unwrap_or(dom);
    let mut out = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One worker, four partitions: the token, config redaction, status and
/// offsets, pause (nothing consumed, lag health goes STALL then STOP),
/// resume, restart, `/metrics` (with the dashboard's and alert rules'
/// metric names checked against it), `/readyz`, the status page in
/// headless Chromium, and a drain on SIGTERM.
#[test]
fn control_api_lag_health_metrics_and_status_page() {
    const TOPIC: &str = "op-api";
    const N1: u64 = 2_000;
    const N2: u64 = 1_000;
    const N3: u64 = 1_000;
    let kafka = MockKafka::start(&[(TOPIC, 4)]);
    let dir = tempfile::tempdir().unwrap();
    let lake_dir = dir.path().join("lake");
    let target = Target::Local(lake_dir.clone());
    let config = write_config(dir.path(), kafka.bootstrap(), TOPIC, "op-api", &target);
    // Short lag windows so that health changes within the test; a secret
    // in the passthrough map to see it redacted.
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace(
            "http_addr = \"127.0.0.1:0\"\n",
            "http_addr = \"127.0.0.1:0\"\nlag_window = \"1s\"\nlag_stop_after = \"6s\"\n",
        )
        .replace(
            "\"heartbeat.interval.ms\" = \"500\"",
            "\"heartbeat.interval.ms\" = \"500\", \"ssl.key.password\" = \"hunter2\"",
        );
    std::fs::write(&config, text).unwrap();
    kafka.produce(TOPIC, N1, RecordKind::Small);

    let progress = Arc::new(Progress::default());
    let env = vec![(
        "TRIBUTARY_WORKER__HTTP_TOKEN".to_string(),
        TOKEN.to_string(),
    )];
    let mut worker = Worker::start(&config, &env, progress.clone());
    let addr = worker.http_addr(Duration::from_secs(30));
    eprintln!("worker HTTP API on {addr}");

    // Liveness needs no token; the API does, and says so in JSON.
    let r = http("GET", &addr, "/healthz", None);
    assert_eq!(
        (r.status, r.json()["status"].clone()),
        (200, "alive".into())
    );
    let r = http("GET", &addr, "/pipelines", None);
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["error_code"], 401);
    let r = http("GET", &addr, "/pipelines", Some("wrong"));
    assert_eq!(r.status, 401);
    assert_eq!(get(&addr, "/pipelines"), serde_json::json!(["e2e"]));
    let r = http("GET", &addr, "/pipelines/nope/status", Some(TOKEN));
    assert_eq!(r.status, 404);
    assert!(
        r.json()["message"].as_str().unwrap().contains("nope"),
        "{}",
        r.body
    );

    let info = get(&addr, "/pipelines/e2e");
    assert_eq!(
        info["config"]["source"]["librdkafka"]["ssl.key.password"],
        "***"
    );
    assert!(!info.to_string().contains("hunter2"), "{info}");
    eprintln!("GET /pipelines/e2e:\n{info:#}");

    // Everything lands and is committed; lag drops to zero, health OK.
    let s = wait_status(&addr, "all of N1 committed with no lag", |s| {
        partitions(s).len() == 4
            && sum(s, "committed_offset") == N1 as i64
            && partitions(s)
                .iter()
                .all(|p| p["lag"] == 0 && p["lag_status"] == "OK")
    });
    assert_eq!(s["state"], "running");
    assert_eq!(s["totals"]["landed_rows"], N1);
    eprintln!("GET /pipelines/e2e/status:\n{s:#}");
    let r = http("GET", &addr, "/readyz", None);
    assert_eq!(r.status, 200, "{}", r.body);

    // Pause: the partitions stay assigned, nothing more is consumed, and
    // with records waiting the lag health goes to STALL, then STOP.
    let r = http("PUT", &addr, "/pipelines/e2e/pause", Some(TOKEN));
    assert_eq!(r.status, 202, "{}", r.body);
    eprintln!("PUT /pipelines/e2e/pause: {} {}", r.status, r.body);
    kafka.produce(TOPIC, N2, RecordKind::Small);
    let stalled = wait_status(&addr, "STALL (or already STOP) while paused", |s| {
        sum(s, "high_watermark") == (N1 + N2) as i64
            && partitions(s)
                .iter()
                .all(|p| p["lag_status"] == "STALL" || p["lag_status"] == "STOP")
    });
    let stopped = wait_status(&addr, "STOP on every partition while paused", |s| {
        partitions(s).iter().all(|p| p["lag_status"] == "STOP")
    });
    assert_eq!(stopped["state"], "paused");
    assert_eq!(partitions(&stopped).len(), 4, "still assigned while paused");
    assert_eq!(
        stopped["totals"]["consumed"], N1,
        "nothing consumed while paused"
    );
    assert_eq!(sum(&stopped, "lag"), N2 as i64);
    eprintln!(
        "while paused: lag {} over 4 partitions; statuses {:?} then {:?}",
        sum(&stopped, "lag"),
        partitions(&stalled)
            .iter()
            .map(|p| p["lag_status"].clone())
            .collect::<Vec<_>>(),
        partitions(&stopped)
            .iter()
            .map(|p| p["lag_status"].clone())
            .collect::<Vec<_>>()
    );
    let metrics = http("GET", &addr, "/metrics", None);
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .body
            .lines()
            .filter(|l| l.starts_with("tributary_lag_status{"))
            .all(|l| l.ends_with(" 3")),
        "{}",
        metrics.body
    );
    let r = http("GET", &addr, "/readyz", None);
    assert_eq!(r.status, 200, "paused is ready by design: {}", r.body);

    // The status page, as a person sees it in a browser.
    let dom = chromium_dom(&format!("http://{addr}/"));
    let seen = visible_text(&dom);
    assert!(seen.contains("Tributary worker e2e"), "{seen}");
    assert!(seen.contains("Pipeline e2e: paused"), "{seen}");
    assert!(seen.contains(&format!("{TOPIC}/0")), "{seen}");
    assert!(seen.contains("STOP"), "{seen}");
    assert!(seen.contains("Readiness: ready"), "{seen}");
    let recent = stopped["recent_files"][0]["path"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        seen.contains(&recent),
        "recent file {recent} not shown: {seen}"
    );
    eprintln!("status page text (Chromium): {seen}");

    // Resume: the waiting records land; health returns to OK.
    let r = http("PUT", &addr, "/pipelines/e2e/resume", Some(TOKEN));
    assert_eq!(r.status, 202, "{}", r.body);
    let s = wait_status(&addr, "N1 + N2 committed after resume", |s| {
        sum(s, "committed_offset") == (N1 + N2) as i64
            && partitions(s)
                .iter()
                .all(|p| p["lag"] == 0 && p["lag_status"] == "OK")
    });
    assert_eq!(s["state"], "running");
    let offsets = get(&addr, "/pipelines/e2e/offsets");
    let committed: i64 = offsets["offsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["offset"]["committed"].as_i64().unwrap())
        .sum();
    assert_eq!(committed, (N1 + N2) as i64, "{offsets:#}");
    eprintln!("GET /pipelines/e2e/offsets:\n{offsets:#}");

    // Restart: drained, rebuilt, consuming again.
    let r = http("POST", &addr, "/pipelines/e2e/restart", Some(TOKEN));
    assert_eq!(r.status, 202, "{}", r.body);
    eprintln!("POST /pipelines/e2e/restart: {} {}", r.status, r.body);
    wait_for(WAIT, "the restart to finish draining", || {
        (progress.count("Pipeline drained; starting it again.") == 1).then_some(())
    });
    kafka.produce(TOPIC, N3, RecordKind::Small);
    let s = wait_status(&addr, "everything committed after restart", |s| {
        partitions(s).len() == 4 && sum(s, "committed_offset") == (N1 + N2 + N3) as i64
    });
    // Counters restart with the pipeline: only the new records.
    assert_eq!(s["totals"]["landed_rows"], N3, "{s:#}");

    // /metrics: every documented name, and the dashboard's and alert
    // rules' names all exist in what a real worker exports.
    let metrics = http("GET", &addr, "/metrics", None);
    let exported = exported_names(&metrics.body);
    for name in tributary_http::metrics::NAMES {
        assert!(
            exported.contains(*name),
            "{name} not exported:\n{}",
            metrics.body
        );
    }
    assert!(
        metrics.body.contains(&format!(
            "tributary_records_landed_total{{pipeline=\"e2e\"}} {N3}"
        )),
        "{}",
        metrics.body
    );
    for file in [
        "deploy/grafana/tributary-dashboard.json",
        "deploy/prometheus/tributary-rules.yaml",
    ] {
        let text = std::fs::read_to_string(workspace_root().join(file)).unwrap();
        if file.ends_with(".json") {
            let _: Value = serde_json::from_str(&text).expect("dashboard JSON parses");
        }
        let used = used_names(&text);
        assert!(used.len() >= 5, "{file}: only {used:?}");
        let missing: Vec<_> = used.difference(&exported).collect();
        assert!(
            missing.is_empty(),
            "{file} uses metrics the worker does not export: {missing:?}"
        );
    }
    eprintln!(
        "GET /metrics (excerpt):\n{}",
        metrics
            .body
            .lines()
            .filter(|l| !l.starts_with('#') && !l.contains("_bucket"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Drain on SIGTERM: lands, commits, exits 0.
    worker.signal(libc::SIGTERM);
    let exit = worker.wait(Duration::from_secs(60));
    assert!(
        exit.success(),
        "SIGTERM must exit 0: {exit}\n{}",
        progress.tail()
    );
    let total = N1 + N2 + N3;
    eprintln!(
        "control API run: {total} records; {}",
        check_lake(&config, &lake_dir, total)
    );
}

/// Workers of one group, each with its own log.
struct Group {
    config: PathBuf,
    progress: Vec<Arc<Progress>>,
    workers: Vec<(Worker, String, Arc<Progress>)>,
}

impl Group {
    fn start(&mut self) {
        let progress = Arc::new(Progress::default());
        let mut w = Worker::start(&self.config, &[], progress.clone());
        let addr = w.http_addr(Duration::from_secs(30));
        self.progress.push(progress.clone());
        self.workers.push((w, addr, progress));
    }

    /// SIGTERM to worker `i`: it must drain and exit 0.
    fn stop(&mut self, i: usize) {
        let (w, _, progress) = self.workers.remove(i);
        w.signal(libc::SIGTERM);
        let exit = w.wait(Duration::from_secs(90));
        assert!(
            exit.success(),
            "SIGTERM must exit 0: {exit}\n{}",
            progress.tail()
        );
        assert_eq!(
            progress.count("Pipeline summary."),
            1,
            "{}",
            progress.tail()
        );
    }

    /// Waits until the live workers together hold all `n` partitions, each
    /// at least one.
    fn wait_balanced(&self, n: usize) -> Vec<usize> {
        wait_for(
            WAIT,
            format!("{} workers to share {n} partitions", self.workers.len()),
            || {
                let held: Vec<usize> = self
                    .workers
                    .iter()
                    .map(|(_, addr, _)| {
                        let r = http("GET", addr, "/pipelines/e2e/status", None);
                        if r.status != 200 {
                            return 0;
                        }
                        partitions(&r.json()).len()
                    })
                    .collect();
                (held.iter().sum::<usize>() == n && held.iter().all(|h| *h > 0)).then_some(held)
            },
        )
    }

    fn landed(&self) -> u64 {
        self.progress.iter().map(|p| p.rows()).sum()
    }
}

/// Three workers on a six-partition topic while records flow; `change`
/// stops and starts workers; then everything must land exactly once.
fn group_run(
    name: &str,
    total: u64,
    rate: u64,
    change: impl FnOnce(&mut Group, &tributary_testkit::BackgroundProducer),
) -> String {
    const PARTITIONS: usize = 6;
    let topic = format!("op-{name}");
    let kafka = MockKafka::start(&[(topic.as_str(), PARTITIONS as i32)]);
    let dir = tempfile::tempdir().unwrap();
    let lake_dir = dir.path().join("lake");
    let target = Target::Local(lake_dir.clone());
    let config = write_config(
        dir.path(),
        kafka.bootstrap(),
        &topic,
        &format!("op-{name}"),
        &target,
    );
    let mut group = Group {
        config: config.clone(),
        progress: Vec::new(),
        workers: Vec::new(),
    };
    for _ in 0..3 {
        group.start();
    }
    let held = group.wait_balanced(PARTITIONS);
    eprintln!("{name}: 3 workers hold {held:?}");
    let producer = kafka.produce_in_background(&topic, total, RecordKind::Small, Some(rate));
    change(&mut group, &producer);
    producer.join();
    let lake = LakeCounter::new(&target);
    wait_for(WAIT, "every record to land", || {
        lake.rows().filter(|n| *n >= total).map(|_| ())
    });
    while !group.workers.is_empty() {
        group.stop(0);
    }
    let landed = group.landed();
    let summary = format!(
        "{name}: {total} records produced at {rate}/s, {landed} rows landed (per logs), {}",
        check_lake(&config, &lake_dir, total)
    );
    eprintln!("{summary}");
    summary
}

/// A rolling restart of three workers (each drained by SIGTERM, then
/// replaced) while records flow loses and doubles nothing.
#[test]
fn rolling_restart_of_three_workers_loses_and_doubles_nothing() {
    group_run("rolling", 24_000, 600, |g, producer| {
        for round in 0..3 {
            let before = g.landed();
            wait_for(WAIT, "records to land before the next restart", || {
                (g.landed() > before).then_some(())
            });
            g.stop(0);
            g.start();
            let held = g.wait_balanced(6);
            eprintln!(
                "rolling: round {round}: restarted a worker; now {held:?}; {} records produced so far",
                producer.acked()
            );
        }
    });
}

/// Scaling 3 → 2 → 3 workers while records flow loses and doubles nothing.
#[test]
fn scale_three_two_three_loses_and_doubles_nothing() {
    group_run("scale", 24_000, 600, |g, producer| {
        let before = g.landed();
        wait_for(WAIT, "records to land before scaling in", || {
            (g.landed() > before).then_some(())
        });
        g.stop(1);
        let held = g.wait_balanced(6);
        eprintln!(
            "scale: 3 → 2 workers: {held:?}; {} records produced so far",
            producer.acked()
        );
        let before = g.landed();
        wait_for(WAIT, "records to land on two workers", || {
            (g.landed() > before).then_some(())
        });
        g.start();
        let held = g.wait_balanced(6);
        eprintln!(
            "scale: 2 → 3 workers: {held:?}; {} records produced so far",
            producer.acked()
        );
    });
}
