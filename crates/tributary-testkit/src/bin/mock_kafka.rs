//! `tributary-mock-kafka`: librdkafka's mock Kafka cluster as a standalone
//! process, so that other processes (the `tributary` binary, kcat, Python
//! clients) can talk to it. See `--help`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use clap::Parser;
use rdkafka::mocking::MockCluster;
use tokio::signal::unix::{signal, SignalKind};
use tributary_testkit::produce::{produce, ProduceSpec, RecordKind};

const LONG_ABOUT: &str = "\
Runs librdkafka's built-in mock Kafka cluster (rdkafka::mocking::MockCluster) on 127.0.0.1 \
and keeps it alive until SIGTERM, SIGINT or (with --exit-on-stdin-eof) the end of stdin, then \
exits 0.

With --exit-on-stdin-eof, each line on stdin is a fault command: `broker-down ID`, \
`broker-up ID`, `request-errors API ERROR COUNT` (API: fetch, offset-commit, offset-fetch, \
heartbeat, join-group, metadata; ERROR: not-coordinator, coordinator-not-available, \
request-timed-out, not-leader, rebalance-in-progress, unknown-member-id).

Once the topics exist it prints exactly one line `BOOTSTRAP=<host:port,...>` to stdout (and \
to --ready-file if given). With --produce N it then produces N records and prints \
`PRODUCED=<n>` once the broker has acknowledged all of them.

Produced records: record `seq` (from --first-seq) goes to partition `seq % partitions`, keyed \
by its decimal id (= seq), with an `orders` payload (tributary_datagen_source::order_json, \
~230 bytes) or a `small` one (~78 bytes); producer settings compression.type=lz4, linger.ms=5, \
acks=all, enable.idempotence=true (no duplicates after retries).

With --bootstrap no mock is started: the records are produced into that existing cluster and \
the program exits after printing PRODUCED=<n>.";

const CAP_NOTE: &str = "\
CAPACITY: the mock broker keeps at most 5 MiB or 100,000 message sets per partition \
(librdkafka rdkafka_mock.c); older records are deleted as if by retention. A test that \
produces more than that per partition before consuming loses data on the broker side. \
The cap counts stored batch bytes after compression; uncompressed it is about 20,000 \
orders or 65,000 small records per partition (lz4 stretches that, do not rely on how far). \
Keep per-partition data under the cap, or produce while consuming (--produce-rate). The mock does not implement \
transactions faithfully, and cooperative-sticky rebalances are unreliable on it: use eager \
assignors.";

#[derive(Debug, Parser)]
#[command(name = "tributary-mock-kafka", version, about = "librdkafka's mock Kafka cluster as a process", long_about = LONG_ABOUT, after_help = CAP_NOTE)]
struct Args {
    /// Number of mock brokers.
    #[arg(long, default_value_t = 1)]
    brokers: i32,

    /// Topic to create, as NAME or NAME:PARTITIONS. Repeatable, or comma-separated.
    #[arg(
        long = "topic",
        value_name = "NAME[:PARTITIONS]",
        value_delimiter = ','
    )]
    topics: Vec<String>,

    /// Partitions of each topic given without `:PARTITIONS`.
    #[arg(long, default_value_t = 1)]
    partitions: i32,

    /// Also write the `BOOTSTRAP=...` line to this file (atomically, by rename).
    #[arg(long, value_name = "PATH")]
    ready_file: Option<PathBuf>,

    /// Produce this many records (see --produce-topic, --kind, --produce-rate).
    #[arg(long, value_name = "N")]
    produce: Option<u64>,

    /// Topic to produce into [default: the first --topic].
    #[arg(long, value_name = "NAME")]
    produce_topic: Option<String>,

    /// Payload of produced records.
    #[arg(long, value_enum, default_value_t = RecordKind::Orders)]
    kind: RecordKind,

    /// Spread production over time at this many records per second.
    #[arg(long, value_name = "RECORDS_PER_SEC")]
    produce_rate: Option<u64>,

    /// Sequence number (= id) of the first produced record.
    #[arg(long, default_value_t = 0)]
    first_seq: u64,

    /// Seed of `orders` payloads.
    #[arg(long, default_value_t = 0)]
    seed: u64,

    /// Start no mock: produce into this existing cluster, print `PRODUCED=<n>` and exit.
    #[arg(long, value_name = "SERVERS", requires = "produce")]
    bootstrap: Option<String>,

    /// Exit (0) when stdin reaches end of file, e.g. when the parent process dies.
    #[arg(long)]
    exit_on_stdin_eof: bool,
}

/// Applies one fault command read from stdin:
/// `broker-down ID`, `broker-up ID`, `request-errors API ERROR COUNT`
/// (API: fetch, offset-commit, offset-fetch, heartbeat, join-group, metadata;
/// ERROR: not-coordinator, coordinator-not-available, request-timed-out,
/// not-leader, rebalance-in-progress, unknown-member-id).
fn apply_fault<C: rdkafka::ClientContext>(
    cluster: &MockCluster<'_, C>,
    command: &str,
) -> anyhow::Result<()> {
    use rdkafka::types::RDKafkaApiKey as Api;
    use rdkafka::types::RDKafkaRespErr as Err;
    let words: Vec<&str> = command.split_whitespace().collect();
    match words.as_slice() {
        ["broker-down", id] => Ok(cluster.broker_down(id.parse()?)?),
        ["broker-up", id] => Ok(cluster.broker_up(id.parse()?)?),
        ["request-errors", api, error, count] => {
            let api = match *api {
                "fetch" => Api::Fetch,
                "offset-commit" => Api::OffsetCommit,
                "offset-fetch" => Api::OffsetFetch,
                "heartbeat" => Api::Heartbeat,
                "join-group" => Api::JoinGroup,
                "metadata" => Api::Metadata,
                other => bail!("unknown API {other:?}"),
            };
            let error = match *error {
                "not-coordinator" => Err::RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
                "coordinator-not-available" => Err::RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
                "request-timed-out" => Err::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                "not-leader" => Err::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                "rebalance-in-progress" => Err::RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS,
                "unknown-member-id" => Err::RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID,
                other => bail!("unknown error {other:?}"),
            };
            let count: usize = count.parse()?;
            cluster.request_errors(api, &vec![error; count]);
            Ok(())
        }
        _ => bail!(
            "unknown command (broker-down ID | broker-up ID | request-errors API ERROR COUNT)"
        ),
    }
}

/// Unique member ids for the mock's classic consumer groups.
///
/// librdkafka's mock coordinator names a new member after the address of its
/// struct (`"%p"`, `rd_kafka_mock_cgrp_classic_member_add` in
/// `rdkafka_mock_cgrp.c`). Once a member has expired and been freed, the next
/// new member often gets the same address and so the same id. A paused client
/// (a chaos-test zombie) that wakes up and rejoins under its old id is then
/// taken for that new member; two clients answer for one member and the
/// second `SyncGroup` aborts the broker process on
/// `rdkafka_mock_cgrp.c:243 Assertion '!member->resp'`. A real broker hands
/// out unique ids (`client.id-<uuid>`), so the chaos suite would test the mock's
/// bug, not Tributary.
///
/// The build script links this binary with
/// `-Wl,--wrap=rd_kafka_mock_cgrp_classic_member_add`, so the JoinGroup handler
/// calls the wrapper below. For a join without a member id, the wrapper passes
/// a fresh one (`mock-member-<n>`); the original then creates the member under
/// that id, exactly as for a client rejoining with a known id.
#[cfg(mock_member_ids)]
mod member_ids {
    use std::ffi::{c_char, c_int, c_void};
    use std::sync::atomic::{AtomicU64, Ordering};

    /// `rd_kafkap_str_t` (rdkafka_proto.h): length (-1 = null) and bytes.
    #[repr(C)]
    pub struct KafkapStr {
        len: c_int,
        str: *const c_char,
    }

    extern "C" {
        fn __real_rd_kafka_mock_cgrp_classic_member_add(
            mcgrp: *mut c_void,
            mconn: *mut c_void,
            resp: *mut c_void,
            member_id: *const KafkapStr,
            group_instance_id: *const KafkapStr,
            protocol_type: *const KafkapStr,
            protos: *mut c_void,
            proto_cnt: c_int,
            session_timeout_ms: c_int,
        ) -> c_int;
    }

    static NEXT: AtomicU64 = AtomicU64::new(1);

    /// # Safety
    /// Called by librdkafka's mock JoinGroup handler with its own arguments.
    #[no_mangle]
    #[allow(clippy::too_many_arguments)]
    pub unsafe extern "C" fn __wrap_rd_kafka_mock_cgrp_classic_member_add(
        mcgrp: *mut c_void,
        mconn: *mut c_void,
        resp: *mut c_void,
        member_id: *const KafkapStr,
        group_instance_id: *const KafkapStr,
        protocol_type: *const KafkapStr,
        protos: *mut c_void,
        proto_cnt: c_int,
        session_timeout_ms: c_int,
    ) -> c_int {
        // SAFETY: librdkafka passes a valid rd_kafkap_str_t.
        let empty = member_id.is_null() || unsafe { (*member_id).len } <= 0;
        let id = format!("mock-member-{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let fresh = KafkapStr {
            len: id.len() as c_int,
            str: id.as_ptr().cast(),
        };
        let member_id = if empty { &fresh } else { member_id };
        // SAFETY: the caller's arguments, with a fresh id where it had none;
        // `fresh` and `id` outlive the call, and the original copies the id
        // (RD_KAFKAP_STR_DUP) before returning.
        unsafe {
            __real_rd_kafka_mock_cgrp_classic_member_add(
                mcgrp,
                mconn,
                resp,
                member_id,
                group_instance_id,
                protocol_type,
                protos,
                proto_cnt,
                session_timeout_ms,
            )
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tributary-mock-kafka: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints one line to stdout and flushes it (ignoring a closed pipe).
fn announce(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

fn parse_topics(args: &Args) -> anyhow::Result<Vec<(String, i32)>> {
    args.topics
        .iter()
        .filter(|t| !t.trim().is_empty())
        .map(|t| {
            let (name, partitions) = match t.trim().rsplit_once(':') {
                Some((name, n)) => (
                    name,
                    n.parse::<i32>()
                        .with_context(|| format!("bad partition count in --topic {t:?}"))?,
                ),
                None => (t.trim(), args.partitions),
            };
            if name.is_empty() || partitions < 1 {
                bail!("--topic {t:?}: need a name and at least one partition");
            }
            Ok((name.to_string(), partitions))
        })
        .collect()
}

fn write_ready_file(path: &Path, line: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{line}\n"))
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

fn run(args: Args) -> anyhow::Result<()> {
    let topics = parse_topics(&args)?;
    let spec = args.produce.map(|count| {
        let topic = args
            .produce_topic
            .clone()
            .or_else(|| topics.first().map(|(name, _)| name.clone()))
            .unwrap_or_default();
        ProduceSpec {
            topic,
            count,
            kind: args.kind,
            first_seq: args.first_seq,
            seed: args.seed,
            rate: args.produce_rate,
        }
    });
    if let Some(spec) = &spec {
        if spec.topic.is_empty() {
            bail!("--produce needs --produce-topic or a --topic");
        }
    }

    // Producer-only mode.
    if let Some(bootstrap) = &args.bootstrap {
        let spec = spec.expect("clap requires --produce with --bootstrap");
        let n = produce(bootstrap, &spec, Arc::default())?;
        announce(&format!("PRODUCED={n}"));
        return Ok(());
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    // Signal handlers go in before anyone can learn our address.
    let (mut sigterm, mut sigint) = {
        let _guard = runtime.enter();
        (
            signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        )
    };

    if args.brokers < 1 {
        bail!("--brokers must be at least 1");
    }
    let cluster = MockCluster::new(args.brokers).context("starting the mock cluster")?;
    for (name, partitions) in &topics {
        cluster
            .create_topic(name, *partitions, 1)
            .with_context(|| format!("creating topic {name}"))?;
    }
    let bootstrap = cluster.bootstrap_servers();
    let line = format!("BOOTSTRAP={bootstrap}");
    if let Some(path) = &args.ready_file {
        write_ready_file(path, &line)?;
    }
    announce(&line);

    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    if let Some(spec) = spec {
        let bootstrap = bootstrap.clone();
        std::thread::Builder::new()
            .name("producer".into())
            .spawn(move || {
                let _ = done_tx.send(produce(&bootstrap, &spec, Arc::default()));
            })
            .context("starting the producer thread")?;
    }

    // stdin is read on a plain thread (tokio's stdin needs a feature the
    // workspace does not enable); its end resolves `stdin_eof`. Without the
    // flag the sender drops at once and `stdin_eof` never resolves.
    let (eof_tx, eof_rx) = tokio::sync::oneshot::channel::<()>();
    let (cmd_tx, mut cmd_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    if args.exit_on_stdin_eof {
        std::thread::Builder::new()
            .name("stdin".into())
            .spawn(move || {
                // Each line is a fault command (see --help); the end of stdin stops the broker.
                for line in std::io::stdin().lines() {
                    let Ok(line) = line else { break };
                    if !line.trim().is_empty() && cmd_tx.send(line.trim().to_string()).is_err() {
                        break;
                    }
                }
                let _ = eof_tx.send(());
            })
            .context("starting the stdin thread")?;
    }
    let outcome = runtime.block_on(async move {
        let stdin_eof = async {
            if eof_rx.await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        let production = async {
            match done_rx.await {
                Ok(Ok(n)) => {
                    announce(&format!("PRODUCED={n}"));
                    std::future::pending().await
                }
                Ok(Err(error)) => Err(error.context("producing")),
                // No production requested.
                Err(_) => std::future::pending().await,
            }
        };
        tokio::pin!(stdin_eof, production);
        loop {
            tokio::select! {
                _ = sigterm.recv() => return Ok(()),
                _ = sigint.recv() => return Ok(()),
                () = &mut stdin_eof => return Ok(()),
                result = &mut production => return result,
                Some(command) = cmd_rx.recv() => match apply_fault(&cluster, &command) {
                    Ok(()) => eprintln!("tributary-mock-kafka: applied {command:?}"),
                    Err(e) => eprintln!("tributary-mock-kafka: cannot apply {command:?}: {e:#}"),
                },
            }
        }
    });
    // Exit without tearing the cluster down: nothing outlives the process,
    // and librdkafka's teardown can wait on in-flight client connections.
    if let Err(error) = outcome {
        eprintln!("tributary-mock-kafka: {error:#}");
        std::process::exit(1);
    }
    std::process::exit(0);
}
