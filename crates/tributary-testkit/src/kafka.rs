//! [`MockKafka`]: a mock Kafka cluster in a child process.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::ops::Range;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::process::{kill_group, spawn_tied};
use crate::produce::{produce, ProduceProgress, ProduceSpec, RecordKind};

/// How long the child may take to print its `BOOTSTRAP=` line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A mock Kafka cluster (librdkafka's `MockCluster`) running in a
/// `tributary-mock-kafka` child process, reachable on 127.0.0.1.
///
/// The process is killed when this value drops, and also when the test
/// process dies (it is started with [`spawn_tied`] and
/// `--exit-on-stdin-eof`). Records are produced *in-process* by an rdkafka
/// producer ([`MockKafka::produce`]), with the same code and the same record
/// layout as the binary's `--produce`.
///
/// Remember the mock's cap: each partition keeps at most 5 MiB or 100,000
/// message sets; produce while consuming ([`MockKafka::produce_in_background`])
/// when a test needs more. Note also that the mock creates unknown topics on
/// first use (metadata request or produce), with librdkafka's default
/// partition count: create every topic a test needs at start.
///
/// ```no_run
/// use tributary_testkit::{MockKafka, RecordKind};
///
/// let kafka = MockKafka::start(&[("orders", 3)]);
/// let ids = kafka.produce("orders", 1_000, RecordKind::Orders); // ids 0..1000
/// assert_eq!(ids, 0..1_000);
/// println!("bootstrap.servers = {}", kafka.bootstrap());
/// ```
#[derive(Debug)]
pub struct MockKafka {
    child: Child,
    /// Held open: the child exits when it closes.
    stdin: Mutex<Option<ChildStdin>>,
    bootstrap: String,
    topics: Vec<(String, i32)>,
    next_seq: Mutex<HashMap<String, u64>>,
}

impl MockKafka {
    /// Starts a one-broker cluster with these `(topic, partitions)`.
    ///
    /// Panics if the `tributary-mock-kafka` binary is not built (see
    /// [`crate::bin_path`]) or does not come up within 30 s.
    pub fn start(topics: &[(&str, i32)]) -> MockKafka {
        Self::start_with_brokers(1, topics)
    }

    /// Starts a cluster of `brokers` brokers with these `(topic, partitions)`.
    pub fn start_with_brokers(brokers: i32, topics: &[(&str, i32)]) -> MockKafka {
        let binary = crate::bin_path("tributary-mock-kafka");
        let mut command = Command::new(&binary);
        command
            .arg("--brokers")
            .arg(brokers.to_string())
            .arg("--exit-on-stdin-eof")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (name, partitions) in topics {
            command.arg("--topic").arg(format!("{name}:{partitions}"));
        }
        let mut child = spawn_tied(command)
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");

        // Read the first line on a helper thread so that we can time out.
        let (line_tx, line_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = line_tx.send(lines.next());
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let bootstrap = match line_rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(Some(Ok(line))) if line.starts_with("BOOTSTRAP=") => {
                line["BOOTSTRAP=".len()..].to_string()
            }
            outcome => {
                kill_group(&mut child);
                panic!(
                    "tributary-mock-kafka did not announce BOOTSTRAP=... within {STARTUP_TIMEOUT:?} \
                     (got {outcome:?}, exit status {:?}); its stderr is above",
                    child.try_wait()
                );
            }
        };
        MockKafka {
            child,
            stdin: Mutex::new(stdin),
            bootstrap,
            topics: topics.iter().map(|(t, p)| (t.to_string(), *p)).collect(),
            next_seq: Mutex::new(HashMap::new()),
        }
    }

    /// `bootstrap.servers` of the cluster (`127.0.0.1:PORT[,...]`).
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// The topics created at start, with their partition counts.
    pub fn topics(&self) -> &[(String, i32)] {
        &self.topics
    }

    /// PID of the broker process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a fault command to the broker process (see `tributary-mock-kafka
    /// --help`): `broker-down 1`, `broker-up 1`,
    /// `request-errors offset-commit request-timed-out 3`. The broker applies
    /// it at once and logs `applied "..."` to stderr.
    pub fn fault(&self, command: &str) {
        use std::io::Write as _;
        let mut stdin = self.stdin.lock().unwrap_or_else(|e| e.into_inner());
        let stdin = stdin.as_mut().expect("the broker's stdin is piped");
        writeln!(stdin, "{command}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("sending {command:?} to the mock broker: {e}"));
    }

    /// Reserves the next `count` sequence numbers (= ids) of `topic`.
    fn reserve(&self, topic: &str, count: u64) -> u64 {
        let mut next = self.next_seq.lock().unwrap_or_else(|e| e.into_inner());
        let first = next.entry(topic.to_string()).or_insert(0);
        let start = *first;
        *first += count;
        start
    }

    /// Produces `count` records of `kind` into `topic` and waits until all
    /// are acknowledged. Returns their ids: successive calls for a topic
    /// continue where the previous one stopped (the first call gives
    /// `0..count`). Record `seq` goes to partition `seq % partitions`, keyed
    /// by its id; see [`crate::produce::produce`].
    ///
    /// Panics if production fails.
    pub fn produce(&self, topic: &str, count: u64, kind: RecordKind) -> Range<u64> {
        let first_seq = self.reserve(topic, count);
        let spec = ProduceSpec {
            first_seq,
            ..ProduceSpec::new(topic, count, kind)
        };
        let acked = produce(&self.bootstrap, &spec, Arc::default())
            .unwrap_or_else(|e| panic!("producing {count} records into {topic}: {e:#}"));
        assert_eq!(acked, count, "acknowledged records");
        first_seq..first_seq + count
    }

    /// Starts producing `count` records of `kind` into `topic` on a
    /// background thread, at `rate` records per second when given. Use it to
    /// produce while a consumer drains, beyond the mock's per-partition cap.
    pub fn produce_in_background(
        &self,
        topic: &str,
        count: u64,
        kind: RecordKind,
        rate: Option<u64>,
    ) -> BackgroundProducer {
        let first_seq = self.reserve(topic, count);
        let spec = ProduceSpec {
            first_seq,
            rate,
            ..ProduceSpec::new(topic, count, kind)
        };
        let progress = Arc::new(ProduceProgress::default());
        let bootstrap = self.bootstrap.clone();
        let shared = progress.clone();
        let handle = std::thread::Builder::new()
            .name(format!("produce-{topic}"))
            .spawn(move || produce(&bootstrap, &spec, shared))
            .expect("starting a producer thread");
        BackgroundProducer {
            handle: Some(handle),
            progress,
            ids: first_seq..first_seq + count,
        }
    }
}

impl Drop for MockKafka {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// A production run on a background thread ([`MockKafka::produce_in_background`]).
/// Dropping it stops production and waits for the thread.
#[derive(Debug)]
pub struct BackgroundProducer {
    handle: Option<JoinHandle<anyhow::Result<u64>>>,
    progress: Arc<ProduceProgress>,
    ids: Range<u64>,
}

impl BackgroundProducer {
    /// Ids this run produces (once complete).
    pub fn ids(&self) -> Range<u64> {
        self.ids.clone()
    }

    /// Records acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.progress.acked.load(Ordering::Relaxed)
    }

    /// Waits until every record is acknowledged; returns the ids. Panics if
    /// production failed.
    pub fn join(mut self) -> Range<u64> {
        let handle = self.handle.take().expect("joined once");
        let acked = handle
            .join()
            .expect("producer thread panicked")
            .unwrap_or_else(|e| panic!("background production failed: {e:#}"));
        assert_eq!(acked, self.ids.end - self.ids.start, "acknowledged records");
        self.ids.clone()
    }
}

impl Drop for BackgroundProducer {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            self.progress.stop.store(true, Ordering::Relaxed);
            let _ = handle.join();
        }
    }
}
