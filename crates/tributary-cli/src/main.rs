//! # tributary
//!
//! The `tributary` binary: runs pipelines as a daemon (`run`), checks a
//! configuration offline (`validate`), audits a sink's lake (`verify`), and
//! shows the whole path end to end on an in-process Kafka and local disk
//! (`demo`), and measures throughput, CPU and memory against baselines
//! (`bench`).

mod backfill;
mod bench;
mod demo;
mod registry;
mod run;
mod serve;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Kafka → Parquet ingestion with exactly-once landing.
#[derive(Parser, Debug)]
#[command(name = "tributary", version, about, long_about = None)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "TRIBUTARY_LOG_FORMAT")]
    log_format: LogFormat,
    /// Log filter (tracing env-filter syntax), e.g. `info` or `info,tributary_lake=debug`.
    /// Defaults to `info` (`warn` for `demo` and `verify`, which print their own summary).
    #[arg(long, global = true, env = "TRIBUTARY_LOG")]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the pipelines of a config until SIGINT/SIGTERM.
    ///
    /// On a signal the worker stops polling, lands what is buffered, commits
    /// offsets and exits 0 within `worker.shutdown_timeout`. Exits non-zero
    /// when a pipeline fails (the others are drained first).
    #[command(
        after_help = "Examples:\n  tributary run --config config/worker.toml\n  TRIBUTARY_PIPELINES__0__SINK__URL=s3://lake/orders tributary run --config config/worker.toml --log-format json"
    )]
    Run {
        /// Config file (.toml, .yaml, .yml); `TRIBUTARY_*` variables override it.
        #[arg(long, short, env = "TRIBUTARY_CONFIG")]
        config: PathBuf,
    },
    /// Check a config without touching the network.
    ///
    /// Exits 0 when the config is valid; otherwise prints the exact key and
    /// what is wrong with it, and exits 1.
    #[command(
        after_help = "Examples:\n  tributary validate --config config/worker.toml\n  tributary validate -c examples/local-datagen.yaml"
    )]
    Validate {
        /// Config file (.toml, .yaml, .yml).
        #[arg(long, short, env = "TRIBUTARY_CONFIG")]
        config: PathBuf,
    },
    /// Check a sink's lake against the exactly-once invariant (and the broker, for Kafka sources).
    ///
    /// Reads the commit log and the files of every partition: committed
    /// ranges must be contiguous and never overlap, row counts and CRC-32C
    /// checksums must match the files, and every file under the lake root
    /// (outside `_tributary/`) must be listed by a commit. With a Kafka
    /// source, also compares the landed ranges with the topic's watermarks
    /// and the consumer group's committed offsets (a group offset beyond the
    /// landed range is a violation; lag is not). Read-only: it never joins
    /// the group or writes to the lake.
    ///
    /// Exits 0 when consistent (warnings allowed), 1 when a violation was
    /// found, 2 when the check could not be made (invalid config, storage not
    /// reachable, broker not reachable with --require-broker).
    #[command(
        after_help = "Examples:\n  tributary verify --config config/worker.toml\n  tributary verify --config config/worker.toml --pipeline orders-to-lake --json\n  tributary verify --url file:///var/lib/lake/orders --no-checksums\n  tributary verify --url s3://lake/raw/orders   (credentials: AWS_* variables)\n\nExit status: 0 consistent, 1 violation found, 2 could not check."
    )]
    Verify(Box<verify::VerifyArgs>),
    /// Land a bounded range of a pipeline's topics (by time or offsets), then exit.
    ///
    /// The start is resolved per partition (offsets-for-times for a time);
    /// the end is fixed at start-up (the high watermarks, or the offsets of
    /// the --until time), so the run ends while producers keep writing.
    /// Partitions are assigned directly (no consumer group; group offsets
    /// are never committed) and land through the same commit logs as
    /// `tributary run`: running it twice, after a crash, or beside a live
    /// daemon lands every record once. Prints a progress bar on a terminal
    /// (periodic lines otherwise) and a summary.
    ///
    /// Exits 0 when every partition reached its end, 1 otherwise.
    #[command(
        after_help = "Examples:\n  tributary backfill --config config/worker.toml --pipeline orders-to-lake --dry-run\n  tributary backfill -c config/worker.toml --pipeline orders-to-lake --from 2024-05-01T00:00:00Z --until 2024-05-02T00:00:00Z\n  tributary backfill -c config/worker.toml --pipeline orders-to-lake --from 0:1000,1:1000 --until latest"
    )]
    Backfill(Box<backfill::BackfillArgs>),
    /// Run the whole path on an embedded Kafka and local disk, then say how to read the result.
    ///
    /// Starts an in-process Kafka broker (librdkafka's mock cluster), produces
    /// synthetic orders, runs a Kafka → JSON → Parquet pipeline with
    /// exactly-once landing into DIR, waits until every record has landed, and
    /// prints where the files are.
    #[command(
        after_help = "Examples:\n  tributary demo\n  tributary demo --out /tmp/lake --records 50000"
    )]
    Demo {
        /// Where to write the lake.
        #[arg(long, default_value = "tributary-demo")]
        out: PathBuf,
        /// How many records to produce.
        #[arg(long, default_value_t = 30_000)]
        records: u64,
    },
    /// Measure throughput, CPU and memory against a consume-only client, the codec alone and a Python script.
    ///
    /// On librdkafka's mock cluster in this process (or, with `--broker
    /// tansu`, a preloaded Tansu broker), per workload and
    /// partition count: B0 drains the topic with Tributary's client settings
    /// doing nothing else, B1 runs JSON → Arrow → Parquet in memory, E2E runs
    /// the real pipeline to Parquet on local disk with offsets committed, and
    /// B2 runs a confluent-kafka + pyarrow script. Each runs in its own
    /// process; prints records/s, MB/s, CPU-seconds per GB, peak RSS and the
    /// ratios as a Markdown table (and JSON with --json).
    #[command(
        after_help = "Examples:\n  cargo build --release -p tributary-cli && target/release/tributary bench --json bench.json\n  tributary bench --workloads w1 --partitions 3 --records 100000 --steady-secs 0"
    )]
    Bench(Box<bench::BenchArgs>),
    /// One measurement of `tributary bench` (internal).
    #[command(hide = true)]
    BenchRun(Box<bench::measure::RunArgs>),
}

fn init_logging(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| anyhow::anyhow!("invalid --log filter {filter:?}: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(())
}

/// glibc malloc tuning for a process that keeps refilling large buffers.
///
/// - Arenas are capped at two (default: 8 per core) unless `MALLOC_ARENA_MAX`
///   is set: buffers filled on one thread and freed on another otherwise
///   leave memory stranded in per-thread arenas. `tributary bench` measured
///   a worker draining 12 partitions at 423 MiB peak RSS with two arenas
///   against 520 MiB with glibc's default, at the same throughput.
/// - Allocations up to 64 MiB come from the heap, and up to 128 MiB of free
///   heap is kept, unless `GLIBC_TUNABLES` or `MALLOC_MMAP_THRESHOLD_` /
///   `MALLOC_TRIM_THRESHOLD_` say otherwise. With glibc's adaptive defaults
///   every poll batch and Parquet buffer of a few MiB went back to the
///   kernel and came back as fresh pages: zeroing them was 9 % of the
///   worker's CPU in the 12-partition benchmark, 0.1 % after.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let set = |name: &str| std::env::var_os(name).is_some();
        let tunables = set("GLIBC_TUNABLES");
        // SAFETY: mallopt only changes allocator tuning; called before any
        // other thread exists.
        unsafe {
            if !set("MALLOC_ARENA_MAX") {
                libc::mallopt(libc::M_ARENA_MAX, 2);
            }
            if !tunables && !set("MALLOC_MMAP_THRESHOLD_") {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
            }
            if !tunables && !set("MALLOC_TRIM_THRESHOLD_") {
                libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 20);
            }
        }
    }
}

fn main() -> ExitCode {
    tune_malloc();
    let cli = Cli::parse();
    let default_filter = match cli.command {
        Command::Demo { .. }
        | Command::Verify(_)
        | Command::Backfill(_)
        | Command::Bench(_)
        | Command::BenchRun(_) => "warn",
        _ => "info",
    };
    if let Err(e) = init_logging(cli.log_format, cli.log.as_deref().unwrap_or(default_filter)) {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run { config } => run::run(&config).await.map(|()| ExitCode::SUCCESS),
            Command::Validate { config } => run::validate(&config).map(|summary| {
                println!("{summary}");
                ExitCode::SUCCESS
            }),
            Command::Demo { out, records } => {
                demo::demo(&out, records).await.map(|()| ExitCode::SUCCESS)
            }
            Command::Bench(args) => bench::bench(*args).await.map(|()| ExitCode::SUCCESS),
            Command::BenchRun(args) => bench::measure::run(*args).await.map(|()| ExitCode::SUCCESS),
            // Prints its own report and errors; exits 0, 1 or 2.
            Command::Verify(args) => Ok(verify::verify(*args).await),
            Command::Backfill(args) => backfill::backfill(*args).await,
        }
    });
    // Do not wait for blocking tasks (e.g. a stuck client thread) forever.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
