//! Chaos: exactly-once landing while workers of one consumer group are
//! killed, restarted and paused into zombies, with records arriving all the
//! time.
//!
//! Three `tributary run` workers share a 6-partition topic of a mock Kafka
//! while a background producer writes `cycles × 1,500` small records with
//! unique ids (`TRIBUTARY_CHAOS_RATE` records/s, default 200, so production
//! spans the chaos and every partition stays far under the mock's 5 MiB cap).
//! Each cycle:
//!
//! * `kill -9` a worker chosen at random, start a new one in its place;
//! * every 4th cycle, first `SIGSTOP` a worker for 8 s — past the 6 s
//!   session timeout, so the group expires it and hands its partitions to the
//!   others — and until the others have been assigned and landed (up to 12 s
//!   more), then `SIGCONT` it: a zombie that wakes up holding buffers of
//!   partitions that moved, maybe in the middle of a landing, which the
//!   landing protocol must fence. Then `kill -9` another worker, as above;
//! * every 5th cycle, take one of the three brokers down for 2–6 s (the
//!   mock's `broker-down`; its partitions and maybe the group coordinator
//!   become unreachable), and in every 3rd cycle make the next few requests
//!   of one kind fail (offset commits, fetches, heartbeats, metadata, with
//!   retriable errors or `UNKNOWN_MEMBER_ID`);
//! * wait until the lake (its commit log) has grown by a random amount, or a
//!   time slice has passed (the group may be rebalancing; killing then is
//!   part of the chaos).
//!
//! Then the killing stops, the producer finishes, the workers land
//! everything and stop on SIGTERM with exit code 0 (a former zombie too);
//! `tributary verify --require-broker` must find the lake consistent with the
//! broker, and pyarrow and DuckDB must read every produced id exactly once.
//!
//! The workers' storage requests are slowed (`TRIBUTARY_FAULT_STORAGE=latency=100ms`
//! unless `TRIBUTARY_CHAOS_STORAGE` says otherwise; it needs the
//! `fault-injection` build that `./scripts/test.sh` makes) so that a landing
//! lasts long enough for a SIGSTOP or a `kill -9` to catch it half done. The
//! soak adds storage errors, timeouts and lost responses:
//! `TRIBUTARY_CHAOS_STORAGE="error_rate=0.05,latency=100ms,timeout_rate=0.005,timeout=2s,lost_response_rate=0.01"`.
//!
//! `TRIBUTARY_CHAOS_CYCLES` sets the number of cycles (default 30, what CI
//! runs; `TRIBUTARY_CHAOS_CYCLES=200 ./scripts/test.sh chaos` is a soak) and
//! `TRIBUTARY_CHAOS_SEED` replays a run's choices (the seed is printed). On
//! failure the lake and every worker's log are kept under
//! `target/tmp/chaos-*` (the path is printed).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tributary_core::SplitMix64;
use tributary_e2e::{write_config, LakeCounter, Progress, Target, Worker};
use tributary_testkit::{bin_path, read_lake, try_wait_for, workspace_root, MockKafka, RecordKind};

const TOPIC: &str = "orders";
const GROUP: &str = "chaos-group";
const PARTITIONS: i32 = 6;
const WORKERS: usize = 3;
/// Brokers of the mock cluster; one at a time is taken down.
const BROKERS: u64 = 3;
/// Every this many cycles (from the 2nd) a broker goes down for a while.
const OUTAGE_EVERY: u64 = 5;
/// Every this many cycles (from the 1st) requests of one kind fail.
const REQUEST_ERRORS_EVERY: u64 = 3;
/// Request faults to choose from: (API, error) for the mock's `request-errors`.
const REQUEST_FAULTS: &[(&str, &str)] = &[
    ("offset-commit", "request-timed-out"),
    ("offset-commit", "coordinator-not-available"),
    ("offset-commit", "not-coordinator"),
    ("fetch", "not-leader"),
    ("fetch", "request-timed-out"),
    ("heartbeat", "rebalance-in-progress"),
    ("heartbeat", "unknown-member-id"),
    ("metadata", "request-timed-out"),
];
const RECORDS_PER_CYCLE: u64 = 1_500;
/// Every this many cycles a worker is paused into a zombie first.
const ZOMBIE_EVERY: u64 = 4;
/// How long a zombie is stopped: past `session.timeout.ms` (6 s, see
/// `write_config`), so that the group expires it.
const ZOMBIE_PAUSE: Duration = Duration::from_secs(8);
/// How much longer a zombie may stay stopped while the others take its
/// partitions over.
const ZOMBIE_TAKEOVER: Duration = Duration::from_secs(12);
/// The longest a cycle waits for the lake to grow before the next kill.
const CYCLE_SLICE: Duration = Duration::from_secs(10);
/// Time for everything produced to land once the chaos stops.
const FINISH_TIMEOUT: Duration = Duration::from_secs(300);

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|e| panic!("{name}={v:?} is not a number: {e}"))
    })
}

/// A running worker of the group.
struct Member {
    /// Number in start order (its log is `worker-<n>.log`).
    number: usize,
    worker: Worker,
    progress: Arc<Progress>,
    /// Whether it was paused past its session and resumed.
    zombie: bool,
}

/// Everything the test started, and the counts of what it did.
struct Chaos {
    config: PathBuf,
    env: Vec<(String, String)>,
    logs: PathBuf,
    lake: LakeCounter,
    members: Vec<Member>,
    /// The progress of every worker ever started (dead ones too).
    all: Vec<Arc<Progress>>,
    started: usize,
}

impl Chaos {
    fn start_member(&mut self) {
        self.started += 1;
        let number = self.started;
        let progress = Arc::new(Progress::logging_to(
            &self.logs.join(format!("worker-{number}.log")),
        ));
        let worker = Worker::start(&self.config, &self.env, progress.clone());
        self.all.push(progress.clone());
        self.members.push(Member {
            number,
            worker,
            progress,
            zombie: false,
        });
    }

    /// Panics, with the log tail of the dead worker, if any has exited.
    fn check_alive(&mut self) {
        for m in &mut self.members {
            if let Some(status) = m.worker.exited() {
                panic!(
                    "worker {} (zombie: {}) exited with {status}; logs in {}; its log tail:\n{}",
                    m.number,
                    m.zombie,
                    self.logs.display(),
                    m.progress.tail()
                );
            }
        }
    }

    /// Waits until the lake holds `rows` rows or `timeout` passes; returns
    /// whether it got there. Panics if a worker exits meanwhile.
    fn wait_rows(&mut self, rows: u64, timeout: Duration) -> bool {
        try_wait_for(timeout, || {
            self.check_alive();
            self.lake.rows().filter(|n| *n >= rows).map(|_| ())
        })
        .is_some()
    }

    fn total(&self, f: impl Fn(&Progress) -> u64) -> u64 {
        self.all.iter().map(|p| f(p)).sum()
    }

    /// "Partition assigned." events of every member but the one at `index`.
    fn assigned_except(&self, index: usize) -> u64 {
        self.members
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != index)
            .map(|(_, m)| m.progress.assigned.load(Ordering::SeqCst))
            .sum()
    }

    fn count(&self, message: &str) -> u64 {
        self.total(|p| p.count(message))
    }
}

/// `tributary_lake::faults::INJECTED_STORAGE_FAULT` (that module exists only
/// in the `fault-injection` build).
const INJECTED_STORAGE_FAULT: &str = "Injected storage fault.";
const FENCED: &str = "Offset commit fenced; no longer writing these partitions.";
const LOST: &str = "Partitions lost; dropping their buffers unlanded.";

/// A zombie's counts of events, when it woke up or later.
struct ZombieMark {
    failed: u64,
    landings: u64,
    fenced: u64,
    lost: u64,
}

impl ZombieMark {
    fn of(p: &Progress) -> ZombieMark {
        ZombieMark {
            failed: p.failed.load(Ordering::SeqCst),
            landings: p.landings.load(Ordering::SeqCst),
            fenced: p.count(FENCED),
            lost: p.count(LOST),
        }
    }
}

/// How many zombies did what in the cycle they woke up in.
#[derive(Default)]
struct ZombieOutcomes {
    /// The others took the zombie's partitions over and landed while it slept.
    taken_over: u64,
    /// Dropped its buffers unlanded (the client noticed the lost session first).
    dropped: u64,
    /// Had a landing fail: lost the conditional create to the new owner's fence or commit.
    lake_fenced: u64,
    /// Landed (its commit won the race) and then had its offset commit refused.
    landed_then_fenced: u64,
}

impl ZombieOutcomes {
    fn add(&mut self, at_wake: &ZombieMark, now: &ZombieMark) {
        self.dropped += u64::from(now.lost > at_wake.lost);
        self.lake_fenced += u64::from(now.failed > at_wake.failed);
        self.landed_then_fenced +=
            u64::from(now.landings > at_wake.landings && now.fenced > at_wake.fenced);
    }
}

impl std::fmt::Display for ZombieOutcomes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} taken over while asleep; on waking {} dropped their buffers, {} lost a landing \
             to the lake's fence, {} landed and were refused the offset commit",
            self.taken_over, self.dropped, self.lake_fenced, self.landed_then_fenced
        )
    }
}

/// Runs `tributary verify --config <config> --require-broker --json` in the
/// workspace root; returns the exit code, the document and the raw output.
fn verify(config: &Path) -> (Option<i32>, serde_json::Value, String) {
    let out = Command::new(bin_path("tributary"))
        .arg("verify")
        .arg("--config")
        .arg(config)
        .args(["--require-broker", "--json"])
        .current_dir(workspace_root())
        .output()
        .expect("running tributary verify");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let doc = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("verify --json printed no JSON ({e}): {stdout}\n{stderr}"));
    (out.status.code(), doc, format!("{stdout}\n{stderr}"))
}

fn chaos(target: Target<'_>, dir: &Path) {
    let began = Instant::now();
    let cycles = env_u64("TRIBUTARY_CHAOS_CYCLES").unwrap_or(30);
    let rate = env_u64("TRIBUTARY_CHAOS_RATE").unwrap_or(200);
    let seed = env_u64("TRIBUTARY_CHAOS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    let total = cycles * RECORDS_PER_CYCLE;
    eprintln!(
        "chaos {}: seed {seed} (TRIBUTARY_CHAOS_SEED={seed} replays it), {cycles} cycles, \
         {total} records at {rate}/s; lake and worker logs in {}",
        target.url(),
        dir.display()
    );
    // A seeded sequence, so a run's choices can be replayed.
    let mut rng = SplitMix64::new(seed);

    let kafka = MockKafka::start_with_brokers(BROKERS as i32, &[(TOPIC, PARTITIONS)]);
    let config = write_config(dir, kafka.bootstrap(), TOPIC, GROUP, &target);
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut chaos = Chaos {
        config: config.clone(),
        env: worker_env(&target),
        logs,
        lake: LakeCounter::new(&target),
        members: Vec::new(),
        all: Vec::new(),
        started: 0,
    };
    for _ in 0..WORKERS {
        chaos.start_member();
    }
    let producer = kafka.produce_in_background(TOPIC, total, RecordKind::Small, Some(rate));
    assert!(
        chaos.wait_rows(1, Duration::from_secs(120)),
        "nothing landed within 120 s of the start"
    );

    let (mut kills, mut zombies, mut slices) = (0u64, 0u64, 0u64);
    let (mut outages, mut outage_time, mut request_errors) = (0u64, Duration::ZERO, 0u64);
    // What the zombies did in the cycle they woke up in.
    let mut zombie_outcomes = ZombieOutcomes::default();
    for cycle in 1..=cycles {
        chaos.check_alive();
        let mut spare = None;
        if cycle % ZOMBIE_EVERY == 0 {
            let z = rng.below(WORKERS as u64) as usize;
            let assigned_before = chaos.assigned_except(z);
            let rows_before = chaos.lake.rows().unwrap_or(0);
            chaos.members[z].worker.signal(libc::SIGSTOP);
            // The deliberate pause: the group must expire the member...
            std::thread::sleep(ZOMBIE_PAUSE);
            // ...and, preferably, the others take its partitions over and
            // land, so that its buffers are stale when it wakes up.
            let taken_over = try_wait_for(ZOMBIE_TAKEOVER, || {
                (chaos.assigned_except(z) > assigned_before
                    && chaos.lake.rows().unwrap_or(0) > rows_before)
                    .then_some(())
            })
            .is_some();
            let member = &mut chaos.members[z];
            member.worker.signal(libc::SIGCONT);
            member.zombie = true;
            zombies += 1;
            zombie_outcomes.taken_over += u64::from(taken_over);
            spare = Some((z, member.number, ZombieMark::of(&member.progress)));
        }
        let mut victim = rng.below(WORKERS as u64) as usize;
        if spare.as_ref().map(|(z, _, _)| *z) == Some(victim) {
            victim = (victim + 1 + rng.below(WORKERS as u64 - 1) as usize) % WORKERS;
        }
        let rows_before = chaos.lake.rows().unwrap_or(0);
        let dead = chaos.members.remove(victim);
        dead.worker.kill9();
        kills += 1;
        chaos.start_member();
        let mut broker_fault = String::new();
        if cycle % REQUEST_ERRORS_EVERY == 1 {
            let (api, error) = REQUEST_FAULTS[rng.below(REQUEST_FAULTS.len() as u64) as usize];
            let count = 1 + rng.below(4);
            kafka.fault(&format!("request-errors {api} {error} {count}"));
            request_errors += count;
            broker_fault += &format!(", {count} {api} requests fail with {error}");
        }
        if cycle % OUTAGE_EVERY == 2 {
            let broker = 1 + rng.below(BROKERS);
            let outage = Duration::from_millis(2_000 + rng.below(4_000));
            kafka.fault(&format!("broker-down {broker}"));
            // The outage itself: its length is the fault, not a wait for a condition.
            std::thread::sleep(outage);
            kafka.fault(&format!("broker-up {broker}"));
            outages += 1;
            outage_time += outage;
            broker_fault += &format!(", broker {broker} down for {outage:.1?}");
        }
        let grow = 1 + rng.below(RECORDS_PER_CYCLE);
        let reached = chaos.wait_rows((rows_before + grow).min(total), CYCLE_SLICE);
        if !reached {
            slices += 1;
        }
        if let Some((_, number, mark)) = &spare {
            let member = chaos.members.iter().find(|m| m.number == *number).unwrap();
            zombie_outcomes.add(mark, &ZombieMark::of(&member.progress));
        }
        eprintln!(
            "chaos cycle {cycle}/{cycles}: killed worker {}{}, started worker {}{broker_fault}; lake \
             {:?} rows (+{grow} {}), produced {}, {:.0?} in",
            dead.number,
            spare
                .as_ref()
                .map_or(String::new(), |(_, number, _)| format!(
                    " after pausing worker {number} for {ZOMBIE_PAUSE:?}"
                )),
            chaos.started,
            chaos.lake.rows(),
            if reached {
                "reached"
            } else {
                "not reached: time slice"
            },
            producer.acked(),
            began.elapsed(),
        );
    }

    // The end: no more chaos; everything produced must land.
    let ids = producer.join();
    assert_eq!(ids, 0..total);
    if !chaos.wait_rows(total, FINISH_TIMEOUT) {
        panic!(
            "after the chaos, {:?} of {total} rows landed within {FINISH_TIMEOUT:?}; logs in {}; \
             commit log:\n{}",
            chaos.lake.rows(),
            chaos.logs.display(),
            chaos.lake.commit_table()
        );
    }
    for m in std::mem::take(&mut chaos.members) {
        m.worker.signal(libc::SIGTERM);
        let status = m.worker.wait(Duration::from_secs(60));
        assert!(
            status.success(),
            "worker {} (zombie: {}) must exit 0 on SIGTERM, got {status}; log tail:\n{}",
            m.number,
            m.zombie,
            m.progress.tail()
        );
    }
    let committed = chaos.lake.rows();
    let landings = chaos.total(|p| p.landings.load(Ordering::SeqCst));
    let failed = chaos.total(|p| p.failed.load(Ordering::SeqCst));
    let fenced = chaos.count(FENCED);
    let lost = chaos.count(LOST);
    let (uncommitted, unnamed) = chaos.lake.uncommitted_files();
    let storage_faults = chaos.count(INJECTED_STORAGE_FAULT);

    let (code, doc, output) = verify(&config);
    let read = read_lake(lake_location(&target), "id", s3_of(&target));
    let summary = format!(
        "chaos summary: {cycles} cycles, {total} records produced, {kills} kills, {zombies} zombies \
         ({zombie_outcomes}), {slices} cycles ended by the time \
         slice; injected: {storage_faults} storage faults, {outages} broker outages \
         ({outage_time:.0?} in all), {request_errors} failed broker requests; {landings} landings, {failed} failed landings, {fenced} fenced offset commits, \
         {lost} lost assignments; committed rows {committed:?}; verify {} (exit {code:?}, {} \
         warnings); readers: rows {} distinct {} min {} max {} (duckdb rows {} distinct {}); \
         {:.0?}; seed {seed}",
        doc["status"],
        doc["warnings"],
        read["rows"],
        read["distinct_ids"],
        read["min_id"],
        read["max_id"],
        read["duckdb"]["rows"],
        read["duckdb"]["distinct_ids"],
        began.elapsed(),
    );
    eprintln!("{summary}");
    let evidence = || {
        format!(
            "{summary}\nlogs and lake in {}\nuncommitted files {uncommitted:?} (named by no \
             intent: {unnamed:?})\ncommit log:\n{}",
            dir.display(),
            chaos.lake.commit_table()
        )
    };

    assert_eq!(
        committed,
        Some(total),
        "rows in committed ranges; {}",
        evidence()
    );
    assert_eq!(code, Some(0), "verify: {output}\n{}", evidence());
    assert_eq!(doc["status"], "consistent", "verify: {output}");
    assert_eq!(read["rows"], total, "pyarrow rows; {}", evidence());
    assert_eq!(
        read["distinct_ids"],
        total,
        "pyarrow distinct ids; {}",
        evidence()
    );
    assert_eq!(read["min_id"], 0, "{}", evidence());
    assert_eq!(read["max_id"], total - 1, "{}", evidence());
    assert_eq!(read["duckdb"]["rows"], total, "duckdb rows; {}", evidence());
    assert_eq!(
        read["duckdb"]["distinct_ids"],
        total,
        "duckdb distinct ids; {}",
        evidence()
    );
}

/// The workers' environment: the target's, and storage latency
/// (`TRIBUTARY_FAULT_STORAGE`, default `latency=100ms`; set
/// `TRIBUTARY_CHAOS_STORAGE=` to none) so that a landing takes long enough for
/// a SIGSTOP to catch a worker in the middle of one.
fn worker_env(target: &Target<'_>) -> Vec<(String, String)> {
    let mut env = target.env();
    let faults =
        std::env::var("TRIBUTARY_CHAOS_STORAGE").unwrap_or_else(|_| "latency=100ms".into());
    if !faults.is_empty() {
        env.push(("TRIBUTARY_FAULT_STORAGE".into(), faults));
    }
    env
}

fn lake_location(target: &Target<'_>) -> String {
    match target {
        Target::Local(d) => d.display().to_string(),
        Target::S3 { .. } => target.url(),
    }
}

fn s3_of<'a>(target: &Target<'a>) -> Option<&'a tributary_testkit::SeaweedFs> {
    match target {
        Target::Local(_) => None,
        Target::S3 { server, .. } => Some(*server),
    }
}

/// A directory for the lake and the logs, under the target directory; kept
/// when the test fails, removed when it passes.
fn evidence_dir() -> PathBuf {
    tempfile::Builder::new()
        .prefix("chaos-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("creating the test directory")
        .keep()
}

#[test]
fn chaos_kill9_and_zombies_on_local_disk() {
    let dir = evidence_dir();
    chaos(Target::Local(dir.join("lake")), &dir);
    let _ = std::fs::remove_dir_all(&dir);
}
