//! Chaos: exactly-once landing while workers of one consumer group are
//! killed, restarted and paused into zombies, with records arriving all the
//! time.
//!
//! Three `tributary run` workers share a 6-partition topic of a mock Kafka
//! while a background producer writes `cycles × 1,500` small records with
//! unique ids (`TRIBUTARY_CHAOS_RATE` records/s, default 300, so production
//! spans the chaos and every partition stays far under the mock's 5 MiB cap).
//! Each cycle:
//!
//! * `kill -9` a worker chosen at random, start a new one in its place;
//! * every 4th cycle, first `SIGSTOP` a worker for 8 s — past the 6 s
//!   session timeout, so the group expires it and hands its partitions to the
//!   others — then `SIGCONT` it: a zombie that wakes up holding buffers of
//!   partitions that moved, which the landing protocol must fence. Then
//!   `kill -9` another worker, as above;
//! * wait until the lake (its commit log) has grown by a random amount, or a
//!   time slice has passed (the group may be rebalancing; killing then is
//!   part of the chaos).
//!
//! Then the killing stops, the producer finishes, the workers land
//! everything and stop on SIGTERM with exit code 0 (a former zombie too);
//! `tributary verify --require-broker` must find the lake consistent with the
//! broker, and pyarrow and DuckDB must read every produced id exactly once.
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

use tributary_e2e::{write_config, LakeCounter, Progress, Target, Worker};
use tributary_testkit::{bin_path, read_lake, try_wait_for, workspace_root, MockKafka, RecordKind};

const TOPIC: &str = "orders";
const GROUP: &str = "chaos-group";
const PARTITIONS: i32 = 6;
const WORKERS: usize = 3;
const RECORDS_PER_CYCLE: u64 = 1_500;
/// Every this many cycles a worker is paused into a zombie first.
const ZOMBIE_EVERY: u64 = 4;
/// How long a zombie is stopped: past `session.timeout.ms` (6 s, see
/// `write_config`), so that the group expires it.
const ZOMBIE_PAUSE: Duration = Duration::from_secs(8);
/// The longest a cycle waits for the lake to grow before the next kill.
const CYCLE_SLICE: Duration = Duration::from_secs(10);
/// Time for everything produced to land once the chaos stops.
const FINISH_TIMEOUT: Duration = Duration::from_secs(300);

/// splitmix64: a seeded sequence, so a run's choices can be replayed.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

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
struct Chaos<'a> {
    config: PathBuf,
    env: Vec<(String, String)>,
    logs: PathBuf,
    lake: LakeCounter,
    members: Vec<Member>,
    /// The progress of every worker ever started (dead ones too).
    all: Vec<Arc<Progress>>,
    started: usize,
    _target: &'a Target<'a>,
}

impl Chaos<'_> {
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

    fn count(&self, message: &str) -> u64 {
        self.total(|p| p.count(message))
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
    let rate = env_u64("TRIBUTARY_CHAOS_RATE").unwrap_or(300);
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
    let mut rng = SplitMix64(seed);

    let kafka = MockKafka::start(&[(TOPIC, PARTITIONS)]);
    let config = write_config(dir, kafka.bootstrap(), TOPIC, GROUP, &target);
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let mut chaos = Chaos {
        config: config.clone(),
        env: target.env(),
        logs,
        lake: LakeCounter::new(&target),
        members: Vec::new(),
        all: Vec::new(),
        started: 0,
        _target: &target,
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
    // For each zombie: its worker number and its failed landings, fenced
    // offset commits and lost partitions when it was resumed.
    let mut zombie_marks: Vec<(usize, Arc<Progress>, u64)> = Vec::new();
    for cycle in 1..=cycles {
        chaos.check_alive();
        let mut spare = None;
        if cycle % ZOMBIE_EVERY == 0 {
            let z = rng.below(WORKERS as u64) as usize;
            let member = &mut chaos.members[z];
            member.worker.signal(libc::SIGSTOP);
            // The deliberate pause: the group must expire the member.
            std::thread::sleep(ZOMBIE_PAUSE);
            let p = &member.progress;
            let before = p.failed.load(Ordering::SeqCst)
                + p.count("Offset commit fenced; no longer writing these partitions.")
                + p.count("Partitions lost; dropping their buffers unlanded.");
            member.worker.signal(libc::SIGCONT);
            member.zombie = true;
            zombies += 1;
            zombie_marks.push((member.number, p.clone(), before));
            spare = Some(z);
        }
        let mut victim = rng.below(WORKERS as u64) as usize;
        if spare == Some(victim) {
            victim = (victim + 1 + rng.below(WORKERS as u64 - 1) as usize) % WORKERS;
        }
        let rows_before = chaos.lake.rows().unwrap_or(0);
        let dead = chaos.members.remove(victim);
        dead.worker.kill9();
        kills += 1;
        chaos.start_member();
        let grow = 1 + rng.below(RECORDS_PER_CYCLE);
        let reached = chaos.wait_rows((rows_before + grow).min(total), CYCLE_SLICE);
        if !reached {
            slices += 1;
        }
        eprintln!(
            "chaos cycle {cycle}/{cycles}: killed worker {}{}, started worker {}; lake {:?} rows \
             (+{grow} {}), produced {}, {:.0?} in",
            dead.number,
            spare.map_or(String::new(), |z| format!(
                " after pausing worker {} for {ZOMBIE_PAUSE:?}",
                chaos.members[if z > victim { z - 1 } else { z }].number
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
    let fenced = chaos.count("Offset commit fenced; no longer writing these partitions.");
    let lost = chaos.count("Partitions lost; dropping their buffers unlanded.");
    let zombies_fenced = zombie_marks
        .iter()
        .filter(|(_, p, before)| {
            p.failed.load(Ordering::SeqCst)
                + p.count("Offset commit fenced; no longer writing these partitions.")
                + p.count("Partitions lost; dropping their buffers unlanded.")
                > *before
        })
        .count();
    let (uncommitted, unnamed) = chaos.lake.uncommitted_files();

    let (code, doc, output) = verify(&config);
    let read = read_lake(Path::new(&lake_location(&target)), "id", s3_of(&target));
    let summary = format!(
        "chaos summary: {cycles} cycles, {total} records produced, {kills} kills, {zombies} zombies \
         ({zombies_fenced} lost their partitions or were fenced), {slices} cycles ended by the time \
         slice; {landings} landings, {failed} failed landings, {fenced} fenced offset commits, \
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

    assert_eq!(committed, Some(total), "rows in committed ranges; {}", evidence());
    assert_eq!(code, Some(0), "verify: {output}\n{}", evidence());
    assert_eq!(doc["status"], "consistent", "verify: {output}");
    assert_eq!(read["rows"], total, "pyarrow rows; {}", evidence());
    assert_eq!(read["distinct_ids"], total, "pyarrow distinct ids; {}", evidence());
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
