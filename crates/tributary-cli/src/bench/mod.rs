//! `tributary bench`: throughput, CPU and memory of Tributary against its
//! ceilings and against what a user would otherwise write, in one run, on the
//! same data and machine.
//!
//! Per workload and partition count it measures:
//!
//! * **B0** — consume-only drain with Tributary's client settings;
//! * **B1** — JSON → Arrow → Parquet in memory, no Kafka;
//! * **E2E** — the real pipeline (`tributary run`'s code): Kafka → Arrow →
//!   Parquet on local disk → landed → offsets committed;
//! * **B2** — `b2_confluent_pyarrow.py`: confluent-kafka + `json.loads` +
//!   pyarrow + `pq.write_table`.
//!
//! The broker (`--broker`) is a fresh one per measurement:
//!
//! * `mock` (the default): librdkafka's mock cluster, in this process. It
//!   keeps at most 5 MiB per partition, so nothing is preloaded: a producer
//!   here writes the records into a fresh topic while the measured child
//!   consumes it, staying a bounded window ahead of the child's progress
//!   (`progress` lines).
//! * `tansu`: a [Tansu](https://github.com/tansu-io/tansu) broker process
//!   with in-memory storage. Drain-mode topics are preloaded before the
//!   measured child starts, so the producer does not share the machine with
//!   the measurement; only the broker serving fetches does.
//!
//! Each measurement runs in its own child process (`tributary bench-run`,
//! see [`measure`]), so its CPU time and peak RSS exclude the broker and the
//! producer. The broker shares the machine: when it is the bottleneck, the
//! ratios flatter every contender alike, while CPU seconds per GB do not
//! depend on it.
//!
//! Steady mode (`--steady-secs`) produces at half E2E's drain rate and reports
//! the latency from a record's produce time to the moment its range landed.

pub mod measure;
mod workload;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use serde::Serialize;
use tributary_config::ByteSize;

use measure::{Kind, Outcome};
pub use workload::Workload;

/// The Python baseline, shipped next to this module.
const B2_SCRIPT: &str = include_str!("b2_confluent_pyarrow.py");
/// Payload bytes per partition the producer may run ahead of the consumer.
/// The mock broker deletes the oldest records of a partition past 5 MiB of
/// stored (compressed) message sets; the producer compresses with lz4, which
/// shrinks these JSON records well over 1.2 times, so 6 MiB of payload stays
/// under the cap. It must exceed what the pipeline holds in flight (up to 5
/// batches of 10,000 records between the poll thread and the converter), or
/// the producer waits for progress that waits for records.
const WINDOW_PER_PARTITION: u64 = 6 << 20;
/// The most payload bytes the producer may run ahead in all, whatever the
/// partition count.
const WINDOW_MAX: u64 = 18 << 20;

/// Arguments of `tributary bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Workloads to run (w1: ~250 B records with 12 fields; w3: ~100 B; w4: ~1 KB).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "w1,w3,w4")]
    pub workloads: Vec<Workload>,
    /// Records per measurement.
    #[arg(long, default_value_t = 10_000_000)]
    pub records: u64,
    /// Records per measurement for W3 and W4 (default: --records).
    #[arg(long)]
    pub records_small_large: Option<u64>,
    /// Partition counts for W1; W3 and W4 use the first one.
    #[arg(long, value_delimiter = ',', default_value = "3,12")]
    pub partitions: Vec<i32>,
    /// `worker.memory_budget` of the E2E runs.
    #[arg(long, default_value = "512MiB")]
    pub memory_budget: ByteSize,
    /// Also run W1 (first partition count) in steady mode for this many
    /// seconds, at half E2E's drain rate; 0 skips it.
    #[arg(long, default_value_t = 30)]
    pub steady_secs: u64,
    /// Python with confluent-kafka and pyarrow, for B2 (default: .venv/bin/python if present).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// Skip B2.
    #[arg(long)]
    pub no_b2: bool,
    /// The broker: `mock` (librdkafka's mock cluster in this process; records
    /// are produced while the measured process consumes) or `tansu` (a Tansu
    /// broker process with in-memory storage; drain-mode topics are preloaded
    /// before the measured process starts).
    #[arg(long, value_enum, default_value = "mock")]
    pub broker: BrokerKind,
    /// The Tansu binary, for `--broker tansu`.
    #[arg(long, default_value = "tansu")]
    pub tansu: PathBuf,
    /// Scratch directory for the lakes (emptied per measurement).
    #[arg(long, default_value = "target/bench")]
    pub work_dir: PathBuf,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the report as a Markdown table here (it is printed either way).
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Rounds of B1, B0 and E2E per workload and partition count. Each row
    /// reports the medians of its rounds (peak RSS: the largest), and the
    /// ratios are those of the medians; one round on a shared machine can
    /// be 20 % off. B2 and steady mode run once.
    #[arg(long, default_value_t = 3)]
    pub repeat: u32,
    /// Log filter of the measured processes (tracing env-filter syntax);
    /// their log goes to stderr.
    #[arg(long, default_value = "warn")]
    pub child_log: String,
}

/// Which broker the measurements consume from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerKind {
    /// librdkafka's mock cluster, in the bench process; produced while consumed.
    Mock,
    /// A Tansu broker process with in-memory storage; preloaded.
    Tansu,
}

/// One measured row of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Workload name.
    pub workload: String,
    /// Topic partitions.
    pub partitions: i32,
    /// B0, B1, E2E or B2.
    pub measurement: String,
    /// Records.
    pub records: u64,
    /// Mean payload size.
    pub record_bytes: f64,
    /// Records per second.
    pub records_per_s: f64,
    /// Payload megabytes (10^6) per second.
    pub mb_per_s: f64,
    /// CPU seconds of the measured process per payload gigabyte (10^9).
    pub cpu_s_per_gb: f64,
    /// Peak RSS of the measured process, MiB.
    pub peak_rss_mib: f64,
    /// Wall seconds.
    pub seconds: f64,
    /// Rounds measured; the figures above are their medians, except peak RSS
    /// (the largest).
    pub runs: u32,
    /// Slowest round, records per second.
    pub records_per_s_min: f64,
    /// Fastest round, records per second.
    pub records_per_s_max: f64,
}

/// Ratios of one workload and partition count.
#[derive(Clone, Debug, Serialize)]
pub struct Ratios {
    /// Workload name.
    pub workload: String,
    /// Topic partitions.
    pub partitions: i32,
    /// E2E records/s ÷ B0 records/s (medians of the rounds).
    pub e2e_over_b0: Option<f64>,
    /// E2E ÷ B0 of each round, in order.
    pub e2e_over_b0_rounds: Vec<f64>,
    /// E2E ÷ B1.
    pub e2e_over_b1: Option<f64>,
    /// E2E ÷ B2.
    pub e2e_over_b2: Option<f64>,
    /// B2 CPU-s/GB ÷ E2E CPU-s/GB.
    pub b2_cpu_over_e2e_cpu: Option<f64>,
}

/// Steady-mode result.
#[derive(Clone, Debug, Serialize)]
pub struct Steady {
    /// Workload name.
    pub workload: String,
    /// Topic partitions.
    pub partitions: i32,
    /// Target produce rate, records/s.
    pub rate: f64,
    /// Records produced and landed.
    pub records: u64,
    /// Median produce-to-landed latency, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// The sink's flush age in steady mode, ms.
    pub flush_max_age_ms: u64,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Machine description.
    pub machine: String,
    /// The broker the measurements consumed from.
    pub broker: BrokerKind,
    /// `worker.memory_budget` of the E2E runs, MiB.
    pub memory_budget_mib: f64,
    /// Measurements.
    pub rows: Vec<Row>,
    /// Ratios.
    pub ratios: Vec<Ratios>,
    /// Steady-mode latency.
    pub steady: Vec<Steady>,
}

/// Runs the benchmark and prints the Markdown table.
pub async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let args = Arc::new(args);
    let a = args.clone();
    let report = tokio::task::spawn_blocking(move || run_all(&a))
        .await
        .context("the benchmark task failed")??;
    let markdown = markdown(&report);
    println!("{markdown}");
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.markdown {
        std::fs::write(path, &markdown)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn run_all(args: &BenchArgs) -> anyhow::Result<Report> {
    if args.records == 0 {
        bail!("--records must be at least 1");
    }
    if args.repeat == 0 {
        bail!("--repeat must be at least 1");
    }
    if args.partitions.is_empty() || args.partitions.iter().any(|p| *p < 1) {
        bail!("--partitions needs positive partition counts");
    }
    let exe = std::env::current_exe().context("cannot find the tributary binary")?;
    std::fs::create_dir_all(&args.work_dir)
        .with_context(|| format!("cannot create {}", args.work_dir.display()))?;
    let work = args
        .work_dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", args.work_dir.display()))?;
    let python = if args.no_b2 {
        None
    } else {
        let python = args.python.clone().unwrap_or_else(|| {
            let venv = PathBuf::from(".venv/bin/python");
            if venv.exists() {
                venv
            } else {
                PathBuf::from("python3")
            }
        });
        let script = work.join("b2_confluent_pyarrow.py");
        std::fs::write(&script, B2_SCRIPT)
            .with_context(|| format!("cannot write {}", script.display()))?;
        Some((python, script))
    };

    let mut report = Report {
        machine: machine(),
        broker: args.broker,
        memory_budget_mib: args.memory_budget.0 as f64 / f64::from(1 << 20),
        rows: Vec::new(),
        ratios: Vec::new(),
        steady: Vec::new(),
    };
    let mut topic_seq = 0;
    for &w in &args.workloads {
        let counts: Vec<i32> = if w == Workload::W1 {
            args.partitions.clone()
        } else {
            vec![args.partitions[0]]
        };
        let records = match w {
            Workload::W1 => args.records,
            _ => args.records_small_large.unwrap_or(args.records),
        };
        let record_bytes =
            measure::records_bytes(w, records.min(100_000)) as f64 / records.min(100_000) as f64;
        for partitions in counts {
            let ctx = Ctx {
                exe: &exe,
                work: &work,
                workload: w,
                partitions,
                records,
                record_bytes,
                budget: args.memory_budget,
                broker: args.broker,
                tansu: &args.tansu,
                child_log: &args.child_log,
            };
            // Rounds of B1, B0 and E2E, interleaved so that a slow spell of
            // the machine touches every measurement alike; B2 once at the end.
            let mut runs: HashMap<&'static str, Vec<Row>> = HashMap::new();
            let mut plan: Vec<(&'static str, u32)> = (1..=args.repeat)
                .flat_map(|round| ["B1", "B0", "E2E"].map(|m| (m, round)))
                .collect();
            if python.is_some() {
                plan.push(("B2", 1));
            }
            for (m, round) in plan {
                topic_seq += 1;
                let topic = format!(
                    "bench-{}-p{partitions}-{}-{topic_seq}",
                    w.name(),
                    m.to_lowercase()
                );
                let of = if m == "B2" { 1 } else { args.repeat };
                eprintln!(
                    "bench: {} {partitions} partitions {m} (round {round} of {of}): {records} records",
                    w.name()
                );
                let outcome = match m {
                    "B1" => ctx.child(Kind::B1, &topic, None)?.outcome,
                    "B0" => ctx.child(Kind::B0, &topic, None)?.outcome,
                    "E2E" => ctx.child(Kind::E2e, &topic, None)?.outcome,
                    _ => {
                        let (python, script) =
                            python.as_ref().expect("B2 is only listed with python");
                        ctx.python(python, script, &topic)?
                    }
                };
                let row = ctx.row(m, &outcome);
                eprintln!(
                    "bench:   {:.0} records/s, {:.1} MB/s, {:.1} CPU-s/GB, {:.0} MiB peak RSS",
                    row.records_per_s, row.mb_per_s, row.cpu_s_per_gb, row.peak_rss_mib
                );
                runs.entry(m).or_default().push(row);
            }
            let e2e_over_b0_rounds = match (runs.get("E2E"), runs.get("B0")) {
                (Some(e), Some(b)) => e
                    .iter()
                    .zip(b)
                    .map(|(e, b)| e.records_per_s / b.records_per_s)
                    .collect(),
                _ => Vec::new(),
            };
            let mut rows: HashMap<&'static str, Row> = runs
                .into_iter()
                .filter_map(|(m, r)| Some((m, summarise(r)?)))
                .collect();
            let ratio = |a: &str, b: &str| -> Option<f64> {
                Some(rows.get(a)?.records_per_s / rows.get(b)?.records_per_s)
            };
            report.ratios.push(Ratios {
                workload: w.name().into(),
                partitions,
                e2e_over_b0: ratio("E2E", "B0"),
                e2e_over_b0_rounds,
                e2e_over_b1: ratio("E2E", "B1"),
                e2e_over_b2: ratio("E2E", "B2"),
                b2_cpu_over_e2e_cpu: rows
                    .get("B2")
                    .zip(rows.get("E2E"))
                    .map(|(b2, e2e)| b2.cpu_s_per_gb / e2e.cpu_s_per_gb),
            });
            let e2e_rate = rows.get("E2E").map(|r| r.records_per_s);
            for m in ["B0", "B1", "E2E", "B2"] {
                if let Some(r) = rows.remove(m) {
                    report.rows.push(r);
                }
            }
            if w == Workload::W1 && partitions == args.partitions[0] && args.steady_secs > 0 {
                if let Some(rate) = e2e_rate {
                    topic_seq += 1;
                    let topic = format!("bench-{}-p{partitions}-steady-{topic_seq}", w.name());
                    let rate = rate / 2.0;
                    eprintln!(
                        "bench: {} {partitions} partitions steady at {rate:.0} records/s for {}s",
                        w.name(),
                        args.steady_secs
                    );
                    report
                        .steady
                        .push(ctx.steady(&topic, rate, args.steady_secs)?);
                }
            }
        }
    }
    Ok(report)
}

/// One row for the rounds of a measurement: the median of each figure
/// (records/s, MB/s, CPU-s/GB and seconds each on their own), the largest
/// peak RSS, and the slowest and fastest rounds. `None` for no rounds.
fn summarise(rounds: Vec<Row>) -> Option<Row> {
    let median = |f: fn(&Row) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    let rate = |r: &Row| r.records_per_s;
    let first = rounds.first()?;
    Some(Row {
        workload: first.workload.clone(),
        partitions: first.partitions,
        measurement: first.measurement.clone(),
        records: first.records,
        record_bytes: first.record_bytes,
        records_per_s: median(rate),
        mb_per_s: median(|r| r.mb_per_s),
        cpu_s_per_gb: median(|r| r.cpu_s_per_gb),
        peak_rss_mib: rounds.iter().map(|r| r.peak_rss_mib).fold(0.0, f64::max),
        seconds: median(|r| r.seconds),
        runs: rounds.len() as u32,
        records_per_s_min: rounds.iter().map(rate).fold(f64::INFINITY, f64::min),
        records_per_s_max: rounds.iter().map(rate).fold(0.0, f64::max),
    })
}

/// What every measurement of one workload and partition count shares.
struct Ctx<'a> {
    exe: &'a Path,
    work: &'a Path,
    workload: Workload,
    partitions: i32,
    records: u64,
    record_bytes: f64,
    budget: ByteSize,
    broker: BrokerKind,
    tansu: &'a Path,
    /// Log filter of the measured processes.
    child_log: &'a str,
}

/// Longest the producer waits for the consumer's progress before giving up.
const STALL: Duration = Duration::from_secs(120);

/// A broker, alive while held (and stopped when dropped).
enum Broker {
    Mock {
        _cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    },
    Tansu {
        _process: Tansu,
    },
}

/// A Tansu broker process, stopped when dropped.
struct Tansu {
    child: std::process::Child,
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Tansu {
    /// Starts `exe` with in-memory storage on a free port of 127.0.0.1 and
    /// waits until it accepts connections. Its output goes to `log`.
    fn start(exe: &Path, dir: &Path, log: &Path) -> anyhow::Result<(Self, String)> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .context("cannot find a free port for tansu")?
            .port();
        let url = format!("tcp://127.0.0.1:{port}");
        let out = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let child = Command::new(exe)
            .args(["broker", "--storage-engine", "memory://tansu/"])
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (install it with `cargo install tansu --locked \
                     --features dynostore,libsql`, or name it with --tansu)",
                    exe.display()
                )
            })?;
        let mut tansu = Tansu { child };
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        while std::net::TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            if let Some(status) = tansu.child.try_wait()? {
                bail!(
                    "tansu exited ({status}) before accepting connections; see {}",
                    log.display()
                );
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!(
                    "tansu did not accept connections within 30 s; see {}",
                    log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok((tansu, format!("127.0.0.1:{port}")))
    }
}

/// How the producer is paced.
enum Pace {
    /// All records, before the measured process starts.
    Preload,
    /// Stay at most this many records ahead of the consumer's progress.
    Window(u64),
    /// This many records per second, recording each record's produce time.
    Rate(f64),
}

/// A finished measurement.
struct Finished {
    outcome: Outcome,
    /// Produce time (unix ms) of each record, by sequence number (rate pacing only).
    produced: Vec<i64>,
    /// `(partition, next offset, unix ms)` of each landing the child saw (steady mode).
    landed: Vec<(i32, i64, i64)>,
}

/// What a child printed.
#[derive(Default)]
struct Heard {
    progress: AtomicU64,
    ready: AtomicBool,
    exited: AtomicBool,
    landed: Mutex<Vec<(i32, i64, i64)>>,
    result: Mutex<Option<Outcome>>,
}

impl Ctx<'_> {
    fn dir(&self, topic: &str) -> anyhow::Result<PathBuf> {
        let dir = self.work.join(topic);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot clear {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    fn window(&self) -> u64 {
        // Capped: the backlog is not spread evenly (librdkafka stops
        // fetching some partitions while its queue is full), and all of it
        // could sit in one partition.
        let bytes = (WINDOW_PER_PARTITION * self.partitions as u64).min(WINDOW_MAX);
        (bytes / self.record_bytes.max(1.0) as u64).max(1)
    }

    fn report_every(&self) -> u64 {
        (self.window() / 8).clamp(1, 10_000)
    }

    /// A fresh broker with `topic`: a mock cluster keeps every earlier
    /// topic's retained records, and its fetches slow down as they pile up.
    fn broker(&self, topic: &str) -> anyhow::Result<(Broker, String)> {
        if self.broker == BrokerKind::Tansu {
            let dir = self.work.join(format!("{topic}.tansu"));
            std::fs::create_dir_all(&dir)?;
            let (tansu, bootstrap) = Tansu::start(
                self.tansu,
                &dir,
                &self.work.join(format!("{topic}.tansu.log")),
            )?;
            create_topic(&bootstrap, topic, self.partitions)?;
            return Ok((Broker::Tansu { _process: tansu }, bootstrap));
        }
        let cluster = MockCluster::new(1).context("cannot start the mock Kafka cluster")?;
        cluster
            .create_topic(topic, self.partitions, 1)
            .with_context(|| format!("cannot create topic {topic}"))?;
        let bootstrap = cluster.bootstrap_servers();
        Ok((Broker::Mock { _cluster: cluster }, bootstrap))
    }

    /// How drain-mode records are produced: ahead of the consumer by a
    /// window on the mock broker, all of them beforehand on Tansu.
    fn drain_pace(&self) -> Pace {
        match self.broker {
            BrokerKind::Mock => Pace::Window(self.window()),
            BrokerKind::Tansu => Pace::Preload,
        }
    }

    fn child(
        &self,
        kind: Kind,
        topic: &str,
        steady: Option<(f64, u64)>,
    ) -> anyhow::Result<Finished> {
        let dir = self.dir(topic)?;
        let broker = match kind {
            Kind::B1 => None,
            _ => Some(self.broker(topic)?),
        };
        let bootstrap = broker.as_ref().map_or("", |(_, b)| b.as_str());
        let records = steady.map_or(self.records, |(_, n)| n);
        let mut cmd = Command::new(self.exe);
        cmd.arg("--log")
            .arg(self.child_log)
            .arg("bench-run")
            .arg("--kind")
            .arg(match kind {
                Kind::B0 => "b0",
                Kind::B1 => "b1",
                Kind::E2e => "e2e",
            })
            .arg("--workload")
            .arg(self.workload.name())
            .arg("--records")
            .arg(records.to_string())
            .arg("--bootstrap")
            .arg(bootstrap)
            .arg("--topic")
            .arg(topic)
            .arg("--group")
            .arg(format!("{topic}-group"))
            .arg("--out")
            .arg(&dir)
            .arg("--memory-budget")
            .arg(self.budget.0.to_string())
            .arg("--report-every")
            .arg(self.report_every().to_string());
        if steady.is_some() {
            cmd.arg("--steady");
        }
        let pace = match (kind, steady) {
            (Kind::B1, _) => None,
            (_, Some((rate, _))) => Some(Pace::Rate(rate)),
            _ => Some(self.drain_pace()),
        };
        self.drive(cmd, topic, bootstrap, records, pace)
    }

    fn python(&self, python: &Path, script: &Path, topic: &str) -> anyhow::Result<Outcome> {
        let dir = self.dir(topic)?;
        let (_broker, bootstrap) = self.broker(topic)?;
        let mut cmd = Command::new(python);
        cmd.arg(script)
            .arg("--bootstrap")
            .arg(&bootstrap)
            .arg("--topic")
            .arg(topic)
            .arg("--group")
            .arg(format!("{topic}-group"))
            .arg("--records")
            .arg(self.records.to_string())
            .arg("--out")
            .arg(&dir)
            .arg("--report-every")
            .arg(self.report_every().to_string())
            .arg("--flush-records")
            .arg("100000")
            .arg("--fetch-wait-max-ms")
            .arg(measure::FETCH_WAIT_MAX_MS.to_string());
        self.drive(
            cmd,
            topic,
            &bootstrap,
            self.records,
            Some(self.drain_pace()),
        )
        .map(|f| f.outcome)
    }

    /// Creates the topic, starts the child, produces (paced), and waits for
    /// the child's result. Returns the produce times (unix ms, by sequence
    /// number) when pacing by rate.
    fn drive(
        &self,
        mut cmd: Command,
        topic: &str,
        bootstrap: &str,
        records: u64,
        pace: Option<Pace>,
    ) -> anyhow::Result<Finished> {
        let heard = Arc::new(Heard::default());
        if let Some(Pace::Preload) = pace {
            let started = Instant::now();
            self.produce(topic, bootstrap, records, Pace::Preload, &heard)?;
            eprintln!(
                "bench:   preloaded {records} records in {:.1}s",
                started.elapsed().as_secs_f64()
            );
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {cmd:?}"))?;
        let stdout = child.stdout.take().context("child has no stdout")?;
        let reader = {
            let heard = heard.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let mut words = line.splitn(2, ' ');
                    match (words.next(), words.next()) {
                        (Some("ready"), None) => heard.ready.store(true, Ordering::Release),
                        (Some("progress"), Some(n)) => {
                            if let Ok(n) = n.trim().parse() {
                                heard.progress.store(n, Ordering::Release);
                            }
                        }
                        (Some("landed"), Some(rest)) => {
                            let v: Vec<i64> =
                                rest.split(' ').filter_map(|x| x.parse().ok()).collect();
                            if let [p, o, t] = v[..] {
                                heard
                                    .landed
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .push((p as i32, o, t));
                            }
                        }
                        (Some("result"), Some(json)) => {
                            if let Ok(o) = serde_json::from_str(json) {
                                *heard.result.lock().unwrap_or_else(|e| e.into_inner()) = Some(o);
                            }
                        }
                        _ => {}
                    }
                }
                heard.exited.store(true, Ordering::Release);
            })
        };
        let produced = match pace {
            None | Some(Pace::Preload) => Vec::new(),
            Some(pace) => match self.produce(topic, bootstrap, records, pace, &heard) {
                Ok(times) => times,
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(e);
                }
            },
        };
        // Generous: a child that cannot finish must not hang the run forever.
        let limit = Duration::from_secs(600) + Duration::from_micros(records * 200);
        let started = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait()? {
                break s;
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{topic}: the measured process did not finish within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = reader.join();
        if !status.success() {
            bail!("{topic}: the measured process failed ({status})");
        }
        let outcome = heard
            .result
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .with_context(|| format!("{topic}: the measured process reported no result"))?;
        if outcome.records < records {
            bail!(
                "{topic}: only {} of {records} records measured",
                outcome.records
            );
        }
        let landed = std::mem::take(&mut *heard.landed.lock().unwrap_or_else(|e| e.into_inner()));
        Ok(Finished {
            outcome,
            produced,
            landed,
        })
    }

    /// Produces records `0..records` round-robin over the partitions.
    fn produce(
        &self,
        topic: &str,
        bootstrap: &str,
        records: u64,
        pace: Pace,
        heard: &Heard,
    ) -> anyhow::Result<Vec<i64>> {
        // Drain mode lingers for large message sets: the mock broker finds
        // a fetch's offset by walking the partition's message sets, and the
        // small sets of a 5 ms linger made a fast consumer over 12
        // partitions crawl (B0 at 30,000 records/s). Steady mode keeps a
        // short linger, which counts in its latency.
        let linger_ms = match pace {
            Pace::Window(_) | Pace::Preload => "50",
            Pace::Rate(_) => "5",
        };
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("linger.ms", linger_ms)
            .set("compression.type", "lz4")
            .set("queue.buffering.max.messages", "500000")
            .set("queue.buffering.max.kbytes", "262144")
            .create()
            .context("cannot create the bench producer")?;
        let mut times = Vec::new();
        if let Pace::Rate(_) = pace {
            // Produce only once the consumer reads: a backlog would not be steady.
            while !heard.ready.load(Ordering::Acquire) {
                if heard.exited.load(Ordering::Acquire) {
                    bail!("{topic}: the measured process stopped before reading");
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        let started = Instant::now();
        let mut payload = Vec::with_capacity(2048);
        let parts = self.partitions as u64;
        // Never further ahead than the window, at a rate too: a consumer that
        // falls behind must not lose records to the broker's retention.
        let window = match pace {
            Pace::Window(w) => w,
            Pace::Rate(_) => self.window(),
            Pace::Preload => u64::MAX,
        };
        for seq in 0..records {
            match pace {
                Pace::Preload => {}
                Pace::Window(_) => {
                    let waiting = Instant::now();
                    while seq.saturating_sub(heard.progress.load(Ordering::Acquire)) > window {
                        if heard.exited.load(Ordering::Acquire) {
                            bail!(
                                "{topic}: the measured process stopped after {} records",
                                heard.progress.load(Ordering::Acquire)
                            );
                        }
                        if waiting.elapsed() > STALL {
                            bail!(
                                "{topic}: no progress for {STALL:?} at {} records (the mock \
                                 broker slows down badly at times; run again)",
                                heard.progress.load(Ordering::Acquire)
                            );
                        }
                        // Sleep, not poll(timeout): rdkafka's timed poll spins on the clock.
                        producer.poll(Duration::ZERO);
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                Pace::Rate(rate) => {
                    let due = started + Duration::from_secs_f64(seq as f64 / rate);
                    let now = Instant::now();
                    if due > now {
                        producer.poll(Duration::ZERO);
                        std::thread::sleep(due - now);
                    }
                    while seq.saturating_sub(heard.progress.load(Ordering::Acquire)) > window {
                        if heard.exited.load(Ordering::Acquire) {
                            bail!(
                                "{topic}: the measured process stopped after {} records",
                                heard.progress.load(Ordering::Acquire)
                            );
                        }
                        producer.poll(Duration::ZERO);
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    times.push(unix_ms());
                }
            }
            payload.clear();
            self.workload.record(seq, &mut payload);
            let partition = (seq % parts) as i32;
            loop {
                match producer.send(
                    BaseRecord::<(), _>::to(topic)
                        .partition(partition)
                        .payload(&payload),
                ) {
                    Ok(()) => break,
                    Err((e, _))
                        if e.rdkafka_error_code()
                            == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                    {
                        if heard.exited.load(Ordering::Acquire) {
                            bail!(
                                "{topic}: the measured process stopped after {} records",
                                heard.progress.load(Ordering::Acquire)
                            );
                        }
                        producer.poll(Duration::ZERO);
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err((e, _)) => bail!("{topic}: cannot produce record {seq}: {e}"),
                }
            }
            if seq % 1_000 == 0 {
                producer.poll(Duration::ZERO);
            }
        }
        producer
            .flush(Duration::from_secs(120))
            .with_context(|| format!("{topic}: the producer could not deliver every record"))?;
        Ok(times)
    }

    fn row(&self, measurement: &str, o: &Outcome) -> Row {
        let secs = o.seconds.max(1e-9);
        Row {
            workload: self.workload.name().into(),
            partitions: self.partitions,
            measurement: measurement.into(),
            records: o.records,
            record_bytes: o.bytes as f64 / o.records.max(1) as f64,
            records_per_s: o.records as f64 / secs,
            mb_per_s: o.bytes as f64 / 1e6 / secs,
            cpu_s_per_gb: o.cpu_s / (o.bytes as f64 / 1e9).max(1e-12),
            peak_rss_mib: o.peak_rss as f64 / f64::from(1 << 20),
            seconds: o.seconds,
            runs: 1,
            records_per_s_min: o.records as f64 / secs,
            records_per_s_max: o.records as f64 / secs,
        }
    }

    /// Steady mode: E2E fed at `rate` records/s for `secs` seconds.
    fn steady(&self, topic: &str, rate: f64, secs: u64) -> anyhow::Result<Steady> {
        let records = ((rate * secs as f64) as u64).max(self.partitions as u64);
        let run = self.child(Kind::E2e, topic, Some((rate, records)))?;
        let mut lat = latencies(&run.produced, &run.landed, self.partitions);
        lat.sort_unstable();
        if lat.len() as u64 != records {
            bail!(
                "{topic}: saw the landing of {} of {records} records",
                lat.len()
            );
        }
        Ok(Steady {
            workload: self.workload.name().into(),
            partitions: self.partitions,
            rate,
            records,
            p50_ms: percentile(&lat, 0.50),
            p99_ms: percentile(&lat, 0.99),
            flush_max_age_ms: measure::STEADY_MAX_AGE.as_millis() as u64,
        })
    }
}

/// Creates `topic` with `partitions` partitions (one replica) on the broker at
/// `bootstrap`.
fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .context("cannot create the bench admin client")?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = tokio::runtime::Handle::current()
        .block_on(admin.create_topics([&new], &options))
        .with_context(|| format!("cannot create topic {topic}"))?;
    for result in results {
        if let Err((name, code)) = result {
            bail!("cannot create topic {name}: {code}");
        }
    }
    Ok(())
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Produce-to-landed latencies: record `seq` went to partition `seq % parts`
/// at offset `seq / parts` and landed at the first `landed` event of its
/// partition whose next offset is past it.
fn latencies(produced: &[i64], landed: &[(i32, i64, i64)], parts: i32) -> Vec<i64> {
    let mut by_partition: HashMap<i32, Vec<(i64, i64)>> = HashMap::new();
    for &(p, next, at) in landed {
        by_partition.entry(p).or_default().push((next, at));
    }
    for v in by_partition.values_mut() {
        v.sort();
    }
    let mut out = Vec::with_capacity(produced.len());
    for (seq, &t) in produced.iter().enumerate() {
        let p = (seq as i64 % i64::from(parts)) as i32;
        let offset = seq as i64 / i64::from(parts);
        if let Some(v) = by_partition.get(&p) {
            let i = v.partition_point(|(next, _)| *next <= offset);
            if let Some((_, at)) = v.get(i) {
                out.push((at - t).max(0));
            }
        }
    }
    out
}

fn percentile(sorted: &[i64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i] as f64
}

/// CPU model, cores and memory of this machine, from /proc.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    format!("{cores} cores ({cpu}), {mem_gib:.0} GiB RAM")
}

/// The report as Markdown.
pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let broker = match r.broker {
        BrokerKind::Mock => "librdkafka's mock cluster (produced while consumed)",
        BrokerKind::Tansu => "Tansu, in-memory (drain topics preloaded)",
    };
    s.push_str(&format!(
        "Machine: {}. Broker: {broker}. E2E memory budget: {:.0} MiB.\n\n",
        r.machine, r.memory_budget_mib
    ));
    s.push_str("| workload | partitions | measurement | records | B/record | records/s | MB/s | CPU-s/GB | peak RSS MiB | runs | records/s min–max |\n");
    s.push_str("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for row in &r.rows {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {:.0} | {:.0} | {:.1} | {:.1} | {:.0} | {} | {:.0}–{:.0} |\n",
            row.workload,
            row.partitions,
            row.measurement,
            row.records,
            row.record_bytes,
            row.records_per_s,
            row.mb_per_s,
            row.cpu_s_per_gb,
            row.peak_rss_mib,
            row.runs,
            row.records_per_s_min,
            row.records_per_s_max
        ));
    }
    let f = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{v:.2}"));
    s.push_str("\n| workload | partitions | E2E/B0 | E2E/B0 by round | E2E/B1 | E2E/B2 | B2 CPU ÷ E2E CPU |\n");
    s.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
    for q in &r.ratios {
        let rounds: Vec<String> = q
            .e2e_over_b0_rounds
            .iter()
            .map(|v| format!("{v:.2}"))
            .collect();
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            q.workload,
            q.partitions,
            f(q.e2e_over_b0),
            if rounds.is_empty() {
                "–".to_string()
            } else {
                rounds.join(" ")
            },
            f(q.e2e_over_b1),
            f(q.e2e_over_b2),
            f(q.b2_cpu_over_e2e_cpu)
        ));
    }
    if !r.steady.is_empty() {
        s.push_str("\n| steady | partitions | rate records/s | records | p50 ms | p99 ms | flush.max_age ms |\n");
        s.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
        for st in &r.steady {
            s.push_str(&format!(
                "| {} | {} | {:.0} | {} | {:.0} | {:.0} | {} |\n",
                st.workload,
                st.partitions,
                st.rate,
                st.records,
                st.p50_ms,
                st.p99_ms,
                st.flush_max_age_ms
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(rate: f64, cpu: f64, rss: f64) -> Row {
        Row {
            workload: "w1".into(),
            partitions: 3,
            measurement: "E2E".into(),
            records: 1000,
            record_bytes: 250.0,
            records_per_s: rate,
            mb_per_s: rate * 250.0 / 1e6,
            cpu_s_per_gb: cpu,
            peak_rss_mib: rss,
            seconds: 1000.0 / rate,
            runs: 1,
            records_per_s_min: rate,
            records_per_s_max: rate,
        }
    }

    #[test]
    fn rounds_are_summarised_by_their_medians_and_largest_rss() {
        let row = summarise(vec![
            round(300.0, 5.0, 100.0),
            round(100.0, 4.0, 300.0),
            round(200.0, 6.0, 200.0),
        ])
        .unwrap();
        assert_eq!(row.runs, 3);
        assert_eq!(row.records_per_s, 200.0);
        assert_eq!(row.mb_per_s, 200.0 * 250.0 / 1e6);
        assert_eq!(row.cpu_s_per_gb, 5.0, "each figure's own median");
        assert_eq!(row.seconds, 5.0);
        assert_eq!(row.peak_rss_mib, 300.0, "the largest peak, not the median");
        assert_eq!(
            (row.records_per_s_min, row.records_per_s_max),
            (100.0, 300.0)
        );
        // An even count: the mean of the middle two.
        let row = summarise(vec![round(100.0, 4.0, 1.0), round(300.0, 6.0, 1.0)]).unwrap();
        assert_eq!((row.records_per_s, row.cpu_s_per_gb), (200.0, 5.0));
        assert!(summarise(Vec::new()).is_none());
    }

    #[test]
    fn latency_is_measured_to_the_first_landing_past_the_record() {
        // Two partitions: seq 0, 2, 4 → partition 0 offsets 0, 1, 2;
        // seq 1, 3 → partition 1 offsets 0, 1.
        let produced = [1_000, 1_010, 1_020, 1_030, 1_040];
        let landed = [(0, 2, 1_500), (1, 2, 1_600), (0, 3, 2_000)];
        assert_eq!(
            latencies(&produced, &landed, 2),
            vec![500, 590, 480, 570, 960]
        );
        // A record whose landing was not seen has no latency.
        assert_eq!(latencies(&produced, &landed[..1], 2), vec![500, 480]);
    }

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let sorted: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&sorted, 0.5), 51.0);
        assert_eq!(percentile(&sorted, 0.99), 99.0);
        assert!(percentile(&[], 0.5).is_nan());
    }
}
