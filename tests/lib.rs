//! Helpers for the end-to-end tests: a `tributary run` worker process whose
//! JSON logs are followed, and config files for it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tributary_testkit::{bin_path, kill_group, spawn_tied, try_wait_for, wait_for, SeaweedFs};

/// What all workers of a test have reported, from their logs.
#[derive(Debug, Default)]
pub struct Progress {
    /// Rows reported by "Landed range." events (each logged after its commit record exists).
    pub landed_rows: AtomicU64,
    /// Landings reported.
    pub landings: AtomicU64,
    /// Landings that failed or lost a race.
    pub failed: AtomicU64,
    /// "Partition assigned." events.
    pub assigned: AtomicU64,
    /// The last lines of stderr, for failure messages.
    pub tail: Mutex<Vec<String>>,
    /// How often each log message was seen.
    pub messages: Mutex<HashMap<String, u64>>,
    /// Where every line is also written, when set ([`Progress::logging_to`]).
    log: Mutex<Option<std::fs::File>>,
}

impl Progress {
    /// A `Progress` that also appends every line the workers log to `path`
    /// (kept as evidence when a test fails).
    pub fn logging_to(path: &Path) -> Progress {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
        Progress {
            log: Mutex::new(Some(file)),
            ..Progress::default()
        }
    }

    /// Rows landed so far.
    pub fn rows(&self) -> u64 {
        self.landed_rows.load(Ordering::SeqCst)
    }

    /// How many log events had exactly this message.
    pub fn count(&self, message: &str) -> u64 {
        self.messages
            .lock()
            .unwrap()
            .get(message)
            .copied()
            .unwrap_or(0)
    }

    fn observe(&self, line: &str) {
        if let Some(file) = self.log.lock().unwrap().as_mut() {
            use std::io::Write as _;
            let _ = writeln!(file, "{line}");
        }
        {
            let mut tail = self.tail.lock().unwrap();
            tail.push(line.to_string());
            if tail.len() > 60 {
                tail.remove(0);
            }
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            return;
        };
        if let Some(m) = v.get("message").and_then(|m| m.as_str()) {
            *self
                .messages
                .lock()
                .unwrap()
                .entry(m.to_string())
                .or_insert(0) += 1;
        }
        match v.get("message").and_then(|m| m.as_str()) {
            Some("Landed range.") => {
                let rows = v.get("rows").and_then(|r| r.as_u64()).unwrap_or(0);
                self.landed_rows.fetch_add(rows, Ordering::SeqCst);
                self.landings.fetch_add(1, Ordering::SeqCst);
            }
            Some("Partition assigned.") => {
                self.assigned.fetch_add(1, Ordering::SeqCst);
            }
            Some(m) if m.starts_with("Landing failed") => {
                self.failed.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
    }

    /// Whether a worker logged a warning or error about the broker connection
    /// (from librdkafka, through the Kafka source).
    pub fn broker_trouble(&self) -> Option<String> {
        self.tail
            .lock()
            .unwrap()
            .iter()
            .find(|line| {
                (line.contains("\"WARN\"") || line.contains("\"ERROR\""))
                    && ["rdkafka", "kafka"].iter().any(|t| line.contains(t))
            })
            .cloned()
    }

    /// The last lines the workers logged.
    pub fn tail(&self) -> String {
        self.tail.lock().unwrap().join("\n")
    }
}

/// A `tributary run` process.
pub struct Worker {
    child: Child,
    reader: Option<std::thread::JoinHandle<()>>,
    /// The address its HTTP API reported ("HTTP API listening.").
    http: Arc<Mutex<Option<String>>>,
}

impl Worker {
    /// Starts `tributary run --config <config> --log-format json` with extra environment.
    pub fn start(config: &Path, env: &[(String, String)], progress: Arc<Progress>) -> Worker {
        let mut cmd = Command::new(bin_path("tributary"));
        cmd.arg("run")
            .arg("--config")
            .arg(config)
            .arg("--log-format")
            .arg("json")
            .arg("--log")
            .arg(std::env::var("E2E_WORKER_LOG").unwrap_or_else(|_| "info".into()))
            .current_dir(tributary_testkit::workspace_root())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = spawn_tied(cmd).expect("starting tributary run");
        let stderr = child.stderr.take().expect("piped stderr");
        let http: Arc<Mutex<Option<String>>> = Arc::default();
        let http_seen = http.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("HTTP API listening.") {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                        if let Some(addr) = v.get("addr").and_then(|a| a.as_str()) {
                            *http_seen.lock().unwrap() = Some(addr.to_string());
                        }
                    }
                }
                progress.observe(&line);
            }
        });
        Worker {
            child,
            reader: Some(reader),
            http,
        }
    }

    /// The address of the worker's HTTP API, once it has logged it.
    pub fn http_addr(&mut self, timeout: Duration) -> String {
        let http = self.http.clone();
        wait_for(timeout, "the worker's HTTP API address", || {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("tributary exited with {status} before serving HTTP");
            }
            http.lock().unwrap().clone()
        })
    }

    /// Sends a signal to the worker process.
    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: plain syscall on our own child.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, sig);
        }
    }

    /// Whether the process has exited (without waiting).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits for the process to exit.
    pub fn wait(mut self, timeout: Duration) -> ExitStatus {
        let status = wait_for(timeout, "tributary to exit", || {
            self.child.try_wait().expect("try_wait")
        });
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        status
    }

    /// SIGKILL, then reap.
    pub fn kill9(mut self) {
        kill_group(&mut self.child);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if self.reader.is_some() {
            kill_group(&mut self.child);
        }
    }
}

/// Exit code of a worker stopped at an injected crash point
/// (`tributary_lake::faults::CRASH_EXIT_CODE`).
pub const CRASH_EXIT_CODE: i32 = 86;
/// Logged by `tributary run` built with the `fault-injection` feature when a
/// fault variable is set.
pub const FAULTS_ARMED: &str = "Fault injection armed.";
/// Logged by `tributary run` built without the feature when a fault variable is set.
pub const FAULTS_IGNORED: &str =
    "Set, but this binary was built without the fault-injection feature; ignored.";

fn no_fault_injection() -> ! {
    panic!(
        "{} was built without fault injection: build it with \
         `cargo build -p tributary-cli --features fault-injection` \
         (./scripts/test.sh builds the workspace binaries with --features tributary-cli/fault-injection)",
        bin_path("tributary").display()
    )
}

/// Waits until the worker logs that its fault injection is armed; panics
/// (saying how to build the binary) if it was built without it.
pub fn wait_armed(worker: &mut Worker, progress: &Progress) {
    wait_for(
        Duration::from_secs(30),
        "the worker to arm fault injection",
        || {
            if progress.count(FAULTS_ARMED) > 0 {
                return Some(());
            }
            if progress.count(FAULTS_IGNORED) > 0 {
                no_fault_injection();
            }
            if let Some(status) = worker.exited() {
                panic!(
                    "tributary exited with {status} before arming fault injection; log tail:\n{}",
                    progress.tail()
                );
            }
            None
        },
    );
}

/// Waits for a worker started with `TRIBUTARY_FAULT_CRASH=spec` to exit
/// with [`CRASH_EXIT_CODE`]; panics if it exits otherwise, does not exit
/// within `timeout`, or has no fault injection.
pub fn wait_crashed(mut worker: Worker, progress: &Progress, spec: &str, timeout: Duration) {
    let exited = try_wait_for(timeout, || {
        if progress.count(FAULTS_IGNORED) > 0 {
            no_fault_injection();
        }
        worker.exited()
    });
    let Some(status) = exited else {
        panic!(
            "the worker with TRIBUTARY_FAULT_CRASH={spec} did not crash within {timeout:?}; log tail:\n{}",
            progress.tail()
        );
    };
    let _ = worker.wait(Duration::from_secs(5));
    assert_eq!(
        status.code(),
        Some(CRASH_EXIT_CODE),
        "the worker with TRIBUTARY_FAULT_CRASH={spec} exited with {status}; log tail:\n{}",
        progress.tail()
    );
}

/// Counts the rows the lake's commit log says are landed. Used only to know
/// when to act (a worker can be killed between its commit and its log line, so
/// logs undercount); the verdict comes from pyarrow and DuckDB.
pub struct LakeCounter {
    lake: tributary_lake::Lake,
    runtime: tokio::runtime::Runtime,
}

impl LakeCounter {
    /// Opens the lake of `target`.
    pub fn new(target: &Target<'_>) -> LakeCounter {
        let storage = match target {
            Target::Local(_) => tributary_config::StorageConfig::default(),
            Target::S3 { server, .. } => tributary_config::StorageConfig {
                endpoint: Some(server.endpoint()),
                region: Some(server.region().into()),
                access_key_id: Some(server.access_key().into()),
                secret_access_key: Some(tributary_config::Secret::new(server.secret_key())),
                path_style: Some(true),
                allow_http: Some(true),
                ..Default::default()
            },
        };
        LakeCounter {
            lake: tributary_lake::Lake::open(&target.url(), &storage).expect("opening the lake"),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
        }
    }

    /// Data files (`.parquet`) that no commit lists, and which of them no
    /// intent names either (those no recovery would remove).
    pub fn uncommitted_files(&self) -> (Vec<String>, Vec<String>) {
        self.runtime.block_on(async {
            let mut committed = std::collections::HashSet::new();
            let mut intended = std::collections::HashSet::new();
            for tp in self.lake.partitions().await.expect("partitions") {
                for c in self.lake.commits(&tp).await.expect("commits") {
                    committed.extend(c.files.into_iter().map(|f| f.path));
                }
                for (_, intent) in self.lake.intents(&tp).await.expect("intents") {
                    intended.extend(intent.files);
                }
            }
            let uncommitted: Vec<String> = self
                .lake
                .list("")
                .await
                .expect("list")
                .into_iter()
                .map(|(p, _)| p)
                .filter(|p| p.ends_with(".parquet") && !committed.contains(p))
                .collect();
            let unnamed = uncommitted
                .iter()
                .filter(|p| !intended.contains(*p))
                .cloned()
                .collect();
            (uncommitted, unnamed)
        })
    }

    /// Recovers every partition as its next owner would, removing what
    /// unfinished landings left behind.
    pub fn recover_all(&self) {
        let writer = tributary_lake::new_writer_id("e2e-auditor");
        self.runtime.block_on(async {
            for tp in self.lake.partitions().await.expect("partitions") {
                self.lake.recover(&tp, &writer).await.expect("recover");
            }
        })
    }

    /// Intents left in the lake (landings in flight, or left by a crash),
    /// or `None` if the lake could not be read just now.
    pub fn intents(&self) -> Option<usize> {
        self.runtime.block_on(async {
            let mut intents = 0;
            for tp in self.lake.partitions().await.ok()? {
                intents += self.lake.intents(&tp).await.ok()?.len();
            }
            Some(intents)
        })
    }

    /// The commit log of every partition, one line per commit record
    /// (sequence number, offset range, rows, writer, files), for failure reports.
    pub fn commit_table(&self) -> String {
        self.runtime.block_on(async {
            let mut out = String::new();
            let Ok(partitions) = self.lake.partitions().await else {
                return "(cannot list the partitions)".into();
            };
            for tp in partitions {
                match self.lake.commits(&tp).await {
                    Ok(commits) => {
                        for c in commits {
                            out.push_str(&format!(
                                "{}/{} seq {} offsets {}..={} rows {} writer {} files {:?}\n",
                                c.topic,
                                c.partition,
                                c.seq,
                                c.first_offset,
                                c.last_offset,
                                c.rows,
                                c.writer,
                                c.files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>()
                            ));
                        }
                    }
                    Err(e) => out.push_str(&format!("{tp}: cannot read the commits: {e}\n")),
                }
            }
            out
        })
    }

    /// Rows in committed ranges, or `None` if the lake could not be read just now.
    pub fn rows(&self) -> Option<u64> {
        self.runtime.block_on(async {
            let mut rows = 0;
            for tp in self.lake.partitions().await.ok()? {
                rows += self
                    .lake
                    .commits(&tp)
                    .await
                    .ok()?
                    .iter()
                    .map(|c| c.rows)
                    .sum::<u64>();
            }
            Some(rows)
        })
    }
}

/// Waits until the lake holds at least `rows` landed rows, failing early if
/// the worker exits.
pub fn wait_landed(
    worker: &mut Worker,
    lake: &LakeCounter,
    progress: &Progress,
    rows: u64,
    timeout: Duration,
) -> u64 {
    let reached = try_wait_for(timeout, || {
        if let Some(n) = lake.rows().filter(|n| *n >= rows) {
            return Some(n);
        }
        if let Some(status) = worker.exited() {
            panic!(
                "tributary exited with {status} after {:?} of {rows} rows; log tail:\n{}",
                lake.rows(),
                progress.tail()
            );
        }
        None
    });
    match reached {
        Some(n) => n,
        None => panic!(
            "timed out after {timeout:?}: {:?} of {rows} rows landed; log tail:\n{}",
            lake.rows(),
            progress.tail()
        ),
    }
}

/// Where a test lands its files.
pub enum Target<'a> {
    /// A local directory (`file://`).
    Local(PathBuf),
    /// A bucket on a SeaweedFS server.
    S3 {
        /// The server.
        server: &'a SeaweedFs,
        /// Bucket name.
        bucket: String,
    },
}

impl Target<'_> {
    /// The sink URL.
    pub fn url(&self) -> String {
        match self {
            Target::Local(dir) => format!("file://{}", dir.display()),
            Target::S3 { bucket, .. } => format!("s3://{bucket}/lake/orders"),
        }
    }

    /// The `[pipelines.sink.storage]` table; the secret key is not in it.
    fn storage_toml(&self) -> String {
        match self {
            Target::Local(_) => String::new(),
            Target::S3 { server, .. } => format!(
                "\n[pipelines.sink.storage]\nendpoint = \"{}\"\nregion = \"{}\"\naccess_key_id = \"{}\"\npath_style = true\nallow_http = true\n",
                server.endpoint(),
                server.region(),
                server.access_key()
            ),
        }
    }

    /// Environment for the worker: the secret key, by the documented override.
    pub fn env(&self) -> Vec<(String, String)> {
        match self {
            Target::Local(_) => vec![],
            Target::S3 { server, .. } => vec![(
                "TRIBUTARY_PIPELINES__0__SINK__STORAGE__SECRET_ACCESS_KEY".into(),
                server.secret_key().into(),
            )],
        }
    }
}

/// Batch and flush sizes of a test worker.
#[derive(Clone, Debug)]
pub struct Tuning {
    /// `source.max_poll_records`.
    pub max_poll_records: usize,
    /// `sink.flush.max_records`.
    pub max_records: u64,
    /// `sink.flush.max_age`.
    pub max_age: &'static str,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            max_poll_records: 2000,
            max_records: 3000,
            max_age: "700ms",
        }
    }
}

/// Writes a worker config reading `topic` from `bootstrap` into `target`.
pub fn write_config(
    dir: &Path,
    bootstrap: &str,
    topic: &str,
    group: &str,
    target: &Target<'_>,
) -> PathBuf {
    write_config_with(dir, bootstrap, topic, group, target, &Tuning::default())
}

/// [`write_config`] with other batch and flush sizes.
pub fn write_config_with(
    dir: &Path,
    bootstrap: &str,
    topic: &str,
    group: &str,
    target: &Target<'_>,
    tuning: &Tuning,
) -> PathBuf {
    let schema = tributary_testkit::workspace_root().join("tests/fixtures/small.json");
    let text = format!(
        r#"[worker]
id = "e2e"
shutdown_timeout = "30s"
# Many workers per test: any free port (the worker logs the one it got).
http_addr = "127.0.0.1:0"

[[pipelines]]
name = "e2e"

[pipelines.source]
type = "kafka"
bootstrap_servers = "{bootstrap}"
topics = ["{topic}"]
group_id = "{group}"
start = "earliest"
max_poll_records = {max_poll_records}
# A killed worker's membership must expire quickly for the restart to get its partitions.
librdkafka = {{ "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "500" }}

[pipelines.converter]
type = "json"
schema = "{schema}"
timestamp_field = "ts"
on_error = "fail"

[pipelines.sink]
type = "parquet"
url = "{url}"
compression = "zstd"
partition_by = "dt=%Y-%m-%d/hour=%H"
flush = {{ max_records = {max_records}, max_age = "{max_age}" }}
{storage}"#,
        schema = schema.display(),
        max_poll_records = tuning.max_poll_records,
        max_records = tuning.max_records,
        max_age = tuning.max_age,
        url = target.url(),
        storage = target.storage_toml(),
    );
    let path = dir.join("worker.toml");
    std::fs::write(&path, text).expect("writing the config");
    path
}

/// A response of [`http`].
#[derive(Debug)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Body, as text.
    pub body: String,
}

impl HttpResponse {
    /// The body as JSON; panics if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One HTTP/1.1 request to `addr` (a `host:port` on 127.0.0.1), with a
/// bearer token when given; the connection is closed after the response.
pub fn http(method: &str, addr: &str, path: &str, token: Option<&str>) -> HttpResponse {
    use std::io::{Read as _, Write as _};
    let mut stream =
        std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{method} {path}: no HTTP response: {text}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: bad status line: {head}"));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    HttpResponse { status, body }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].strip_prefix("\r\n").unwrap_or(&rest[n..]);
    }
    out
}

/// Every line of every dead-letter file of a local lake
/// (`_dead_letter/**/*.jsonl`), as JSON: `topic`, `partition`, `offset`,
/// `timestamp_ms`, `reason`, and the raw `key` / `payload` (text) or
/// `key_hex` / `payload_hex`.
pub fn dead_letter_lines(lake: &Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut dirs = vec![lake.join("_dead_letter")];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "jsonl") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.extend(text.lines().map(|l| serde_json::from_str(l).unwrap()));
            }
        }
    }
    out
}

/// The raw value of a dead-letter line: `payload` (UTF-8 text) or
/// `payload_hex`; `None` for a null value (a tombstone).
pub fn dead_letter_payload(line: &serde_json::Value) -> Option<Vec<u8>> {
    if let Some(text) = line["payload"].as_str() {
        return Some(text.as_bytes().to_vec());
    }
    let hex = line["payload_hex"].as_str()?;
    Some(
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect(),
    )
}

/// Every dead-letter record of a local lake as `(partition, offset, reason,
/// payload)`; for lakes where no dead-lettered record has a null value.
pub fn dead_letter_records(lake: &Path) -> Vec<(i64, i64, String, Vec<u8>)> {
    dead_letter_lines(lake)
        .iter()
        .map(|v| {
            (
                v["partition"].as_i64().unwrap(),
                v["offset"].as_i64().unwrap(),
                v["reason"].as_str().unwrap().to_string(),
                dead_letter_payload(v).expect("a payload"),
            )
        })
        .collect()
}

/// Asserts that both independent readers (the `read_lake` result: pyarrow,
/// and DuckDB under `duckdb`) found `n` rows with `n` distinct ids: every
/// record exactly once.
pub fn assert_each_once(read: &serde_json::Value, n: u64, what: &str) {
    for (reader, r) in [("pyarrow", read), ("duckdb", &read["duckdb"])] {
        assert_eq!(r["rows"], n, "{what}: {reader} rows: {read}");
        assert_eq!(
            r["distinct_ids"], n,
            "{what}: {reader} distinct ids: {read}"
        );
    }
}
