//! The measured side of `tributary bench`: each measurement runs alone in a
//! child process (`tributary bench-run ...`), so that its CPU time and peak
//! RSS are its own, not the broker's or the producer's.
//!
//! A child speaks a line protocol on stdout:
//!
//! * `ready` — E2E has its partitions (steady mode starts producing then);
//! * `progress <records consumed>` — lets the producer pace itself;
//! * `landed <partition> <next offset> <unix ms>` — E2E in steady mode, when
//!   a partition's landed range grows (for produce-to-landed latency);
//! * `result <json>` — [`Outcome`], once at the end.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use parquet::arrow::ArrowWriter;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;
use serde::{Deserialize, Serialize};
use tributary_config::{
    ByteSize, Compression, Config, ConverterConfig, FlushConfig, HumanDuration,
    JsonConverterConfig, KafkaSourceConfig, OnError, ParquetSinkConfig, PipelineConfig, SinkConfig,
    SourceConfig, StartPosition, StorageConfig, WorkerConfig,
};
use tributary_core::{Converter, RawRecord, SourceBatch, TopicPartition};
use tributary_kafka_source::fetch::{self, FetchQueue, Polled};

use super::workload::Workload;
use crate::{registry, run};

/// `fetch.wait.max.ms` of every consumer in the bench (B0, E2E, B2). The
/// mock broker answers a fetch that finds no data only after this long,
/// even when records arrive meanwhile (a real broker answers as soon as
/// they do); librdkafka's default of 500 ms would stall a consumer that
/// catches up with the producer for half a second each time.
pub const FETCH_WAIT_MAX_MS: u32 = 10;

/// The sink's `flush.max_age` in steady mode.
pub const STEADY_MAX_AGE: Duration = Duration::from_secs(1);

/// What a child measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// Consume-only drain with Tributary's client settings.
    B0,
    /// JSON → Arrow → Parquet in memory, no Kafka.
    B1,
    /// The real pipeline: Kafka → Arrow → Parquet on disk → landed → committed.
    E2e,
}

/// Arguments of the hidden `bench-run` subcommand.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// What to measure.
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// Which records.
    #[arg(long, value_enum)]
    pub workload: Workload,
    /// How many records to consume (or encode).
    #[arg(long)]
    pub records: u64,
    /// Broker (B0, E2E).
    #[arg(long, default_value = "")]
    pub bootstrap: String,
    /// Topic (B0, E2E).
    #[arg(long, default_value = "")]
    pub topic: String,
    /// Consumer group (B0, E2E).
    #[arg(long, default_value = "bench")]
    pub group: String,
    /// Lake directory (E2E) or scratch directory (B1 schema file).
    #[arg(long)]
    pub out: PathBuf,
    /// `worker.memory_budget`.
    #[arg(long, default_value = "1GiB")]
    pub memory_budget: ByteSize,
    /// Print `progress` after this many more records.
    #[arg(long, default_value_t = 10_000)]
    pub report_every: u64,
    /// Steady mode: short flush age, and `landed` lines.
    #[arg(long)]
    pub steady: bool,
}

/// What a measurement reports.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Outcome {
    /// Records consumed (or encoded).
    pub records: u64,
    /// Payload bytes of those records.
    pub bytes: u64,
    /// Wall time from the first record to the last landed (or consumed) one.
    pub seconds: f64,
    /// CPU time (user + system) of the measured process.
    pub cpu_s: f64,
    /// Peak resident set size of the measured process, in bytes.
    pub peak_rss: u64,
}

/// CPU seconds and peak RSS of this process so far.
pub fn usage() -> (f64, u64) {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage struct.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return (0.0, 0);
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (
        tv(ru.ru_utime) + tv(ru.ru_stime),
        // Linux reports kilobytes.
        peak_rss().unwrap_or(ru.ru_maxrss.max(0) as u64 * 1024),
    )
}

/// Peak RSS of this process image (`VmHWM`), in bytes. It belongs to the
/// address space, which exec replaces, whereas `ru_maxrss` is carried over
/// from the process that forked this one: a bench process grown large would
/// set the floor of every later measurement.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Runs one measurement and prints its outcome.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    if args.records == 0 {
        bail!("--records must be at least 1");
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let outcome = match args.kind {
        Kind::B0 => {
            let a = args.clone();
            tokio::task::spawn_blocking(move || drain_b0(&a)).await??
        }
        Kind::B1 => {
            let a = args.clone();
            tokio::task::spawn_blocking(move || codec_b1(&a)).await??
        }
        Kind::E2e => end_to_end(&args).await?,
    };
    say(&format!("result {}", serde_json::to_string(&outcome)?));
    Ok(())
}

/// The pipeline E2E runs; B0 uses its source settings too.
pub fn pipeline_config(args: &RunArgs, schema_path: &Path) -> PipelineConfig {
    PipelineConfig {
        name: "bench".into(),
        source: SourceConfig::Kafka(KafkaSourceConfig {
            bootstrap_servers: args.bootstrap.clone(),
            topics: vec![args.topic.clone()],
            group_id: args.group.clone(),
            start: StartPosition::Earliest,
            max_poll_records: 10_000,
            poll_timeout: HumanDuration(Duration::from_millis(100)),
            librdkafka: [(
                "fetch.wait.max.ms".to_string(),
                FETCH_WAIT_MAX_MS.to_string(),
            )]
            .into(),
        }),
        converter: ConverterConfig::Json(JsonConverterConfig {
            schema: Some(schema_path.to_path_buf()),
            infer: false,
            infer_records: 1_000,
            timestamp_field: Some("ts".into()),
            on_error: OnError::DeadLetter,
            max_record_bytes: tributary_config::ByteSize(8 << 20),
            metadata: vec![],
            schema_evolution: None,
        }),
        sink: SinkConfig::Parquet(ParquetSinkConfig {
            url: format!("file://{}", args.out.join("lake").display()),
            compression: Compression::Zstd,
            compression_level: None,
            row_group_size: 1_048_576,
            row_group_bytes: tributary_config::default_row_group_bytes(),
            partition_by: Some("dt=%Y-%m-%d/hour=%H".into()),
            timezone: "UTC".into(),
            late_data: None,
            flush: FlushConfig {
                max_age: if args.steady {
                    HumanDuration(STEADY_MAX_AGE)
                } else {
                    FlushConfig::default().max_age
                },
                ..FlushConfig::default()
            },
            storage: StorageConfig::default(),
        }),
        dead_letter: Default::default(),
        transforms: Vec::new(),
    }
}

fn write_schema(args: &RunArgs) -> anyhow::Result<PathBuf> {
    let path = args
        .out
        .join(format!("{}.schema.json", args.workload.name()));
    std::fs::write(&path, args.workload.schema_json())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

fn worker_config(args: &RunArgs) -> WorkerConfig {
    WorkerConfig {
        id: "bench".into(),
        memory_budget: args.memory_budget,
        // The drain at the end lands every open buffer: give it time.
        shutdown_timeout: HumanDuration(Duration::from_secs(300)),
        ..WorkerConfig::default()
    }
}

/// B0: drains the topic with a bare `BaseConsumer`, touching nothing but the
/// payload length. It consumes in batches as the Kafka source does: each
/// partition is routed to a fetch queue when its first message shows up on
/// the consumer queue, and taken from there thousands at a time.
fn drain_b0(args: &RunArgs) -> anyhow::Result<Outcome> {
    let schema = write_schema(args)?;
    let budget = tributary_runtime::MemoryBudget::new(args.memory_budget.0);
    let p = registry::within_budget(&pipeline_config(args, &schema), &budget, 1);
    let SourceConfig::Kafka(k) = &p.source else {
        unreachable!("the bench pipeline reads Kafka");
    };
    let mut consumer: BaseConsumer = tributary_kafka_source::client_config(k, "bench-b0")?
        .create()
        .context("cannot create the B0 consumer")?;
    consumer.subscribe(&[args.topic.as_str()])?;
    let waker = fetch::wake_on(&mut consumer);
    let consumer = Arc::new(consumer);
    let mut queue = FetchQueue::new(consumer.clone(), waker);
    let mut t = Tally::default();
    let mut reported = 0u64;
    let mut idle = false;
    while t.consumed < args.records {
        // The consumer queue first: the assignment, errors, and messages
        // fetched before their partition was routed to the fetch queue.
        match consumer.poll(Duration::ZERO) {
            Some(Ok(m)) => {
                t.count(m.payload_len());
                queue.split(&TopicPartition::new(
                    Message::topic(&m),
                    Message::partition(&m),
                ));
                idle = false;
                continue;
            }
            Some(Err(e)) => tracing::warn!(error = %e, "B0 consumer error."),
            None => {}
        }
        let wait = if idle {
            Duration::from_millis(100)
        } else {
            Duration::ZERO
        };
        let taken = queue.take(wait, usize::MAX, |m| match m {
            Ok(m) => t.count(m.payload().map_or(0, <[u8]>::len)),
            Err(e) => tracing::warn!(error = %e, "B0 consumer error."),
        });
        idle = taken == 0;
        if t.consumed - reported >= args.report_every {
            reported = t.consumed;
            say(&format!("progress {}", t.consumed));
        }
    }
    drop(queue);
    let seconds = t.first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    say(&format!("progress {}", t.consumed));
    let (cpu_s, peak_rss) = usage();
    Ok(Outcome {
        records: t.consumed,
        bytes: t.bytes,
        seconds,
        cpu_s,
        peak_rss,
    })
}

/// What B0 has consumed.
#[derive(Default)]
struct Tally {
    consumed: u64,
    bytes: u64,
    first: Option<Instant>,
}

impl Tally {
    fn count(&mut self, payload_len: usize) {
        self.first.get_or_insert_with(Instant::now);
        self.bytes += payload_len as u64;
        self.consumed += 1;
    }
}

/// B1: JSON → Arrow (the pipeline's converter) → Parquet (the sink's writer
/// settings) in memory. Payloads come from a pool generated up front, so
/// only the codec is timed.
fn codec_b1(args: &RunArgs) -> anyhow::Result<Outcome> {
    let schema_path = write_schema(args)?;
    let p = pipeline_config(args, &schema_path);
    let (ConverterConfig::Json(json), SinkConfig::Parquet(sink)) = (&p.converter, &p.sink) else {
        unreachable!("pipeline_config builds a JSON converter");
    };
    let schema = tributary_formats::load_schema(&schema_path)?;
    let mut converter = tributary_formats::JsonConverter::with_schema(schema, json)?;
    let props = tributary_formats::writer_properties(sink)?;

    const POOL: u64 = 50_000;
    const BATCH: u64 = 10_000;
    let pool_len = args.records.min(POOL);
    let mut buf = Vec::new();
    let mut spans = Vec::with_capacity(pool_len as usize);
    for seq in 0..pool_len {
        let start = buf.len();
        args.workload.record(seq, &mut buf);
        spans.push((start, buf.len()));
    }
    let pool = Bytes::from(buf);
    let partition = TopicPartition::new("bench", 0);

    let (cpu_before, _) = usage();
    let started = Instant::now();
    let mut writer: Option<ArrowWriter<Vec<u8>>> = None;
    let mut in_file = 0u64;
    let mut bytes = 0u64;
    let mut seq = 0u64;
    let mut reported = 0u64;
    while seq < args.records {
        let n = BATCH.min(args.records - seq);
        let records = (seq..seq + n)
            .map(|s| {
                let (a, b) = spans[(s % pool_len) as usize];
                bytes += (b - a) as u64;
                RawRecord {
                    offset: s as i64,
                    timestamp_ms: None,
                    key: None,
                    payload: Some(pool.slice(a..b)),
                    headers: Vec::new(),
                }
            })
            .collect();
        let rows = converter.convert(SourceBatch {
            partition: partition.clone(),
            records,
        })?;
        let w = match &mut writer {
            Some(w) => w,
            None => writer.insert(ArrowWriter::try_new(
                Vec::new(),
                rows.rows.schema(),
                // As the sink opens a file.
                Some(
                    tributary_parquet_sink::sampled_properties(&props, &rows.rows)
                        .unwrap_or_else(|| props.clone()),
                ),
            )?),
        };
        w.write(&rows.rows)?;
        in_file += n;
        seq += n;
        let size = w.bytes_written() + w.in_progress_size();
        if in_file >= sink.flush.max_records || size as u64 >= sink.flush.max_bytes.0 {
            if let Some(w) = writer.take() {
                drop(w.into_inner()?);
            }
            in_file = 0;
        }
        if seq - reported >= args.report_every {
            reported = seq;
            say(&format!("progress {seq}"));
        }
    }
    if let Some(w) = writer.take() {
        drop(w.into_inner()?);
    }
    let seconds = started.elapsed().as_secs_f64();
    let (cpu_after, peak_rss) = usage();
    Ok(Outcome {
        records: seq,
        bytes,
        seconds,
        cpu_s: cpu_after - cpu_before,
        peak_rss,
    })
}

/// E2E: the real pipeline, built by `tributary run`'s own code, until every
/// record has landed and its offset is committed.
async fn end_to_end(args: &RunArgs) -> anyhow::Result<Outcome> {
    let schema = write_schema(args)?;
    let config = Config {
        worker: worker_config(args),
        pipelines: vec![pipeline_config(args, &schema)],
    };
    let pipelines = run::build(&config)?;
    let mut status = pipelines[0].status();
    let records = args.records;
    let every = args.report_every;
    let steady = args.steady;
    // Drain mode stops the pipeline once every record is consumed: stopping
    // lands what is buffered and commits (as `tributary run` does on
    // SIGTERM). Steady mode waits for the flush age to land everything.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let watcher = tokio::spawn(async move {
        let mut stop_tx = Some(stop_tx);
        let mut first = None;
        let mut reported = 0u64;
        let mut landed: std::collections::BTreeMap<i32, i64> = Default::default();
        let mut ready = false;
        while status.changed().await.is_ok() {
            let mut committed = 0i64;
            let mut lines = Vec::new();
            let consumed;
            {
                let s = status.borrow_and_update();
                consumed = s.totals.consumed;
                if !ready && s.partitions.values().any(|p| p.assigned) {
                    ready = true;
                    lines.push("ready".to_string());
                }
                for (tp, p) in &s.partitions {
                    committed += p.committed_offset.unwrap_or(0);
                    if let (true, Some(o)) = (steady, p.landed_offset) {
                        if landed.insert(tp.partition, o) != Some(o) {
                            lines.push(format!("landed {} {o} {}", tp.partition, unix_ms()));
                        }
                    }
                }
            }
            if consumed > 0 {
                first.get_or_insert_with(Instant::now);
            }
            for l in lines {
                say(&l);
            }
            if consumed - reported >= every {
                reported = consumed;
                say(&format!("progress {consumed}"));
            }
            if consumed >= records && !steady {
                if let Some(tx) = stop_tx.take() {
                    let _ = tx.send(());
                }
            }
            if committed as u64 >= records {
                return first.map(|f: Instant| f.elapsed().as_secs_f64());
            }
        }
        None
    });
    let stop = async move {
        let _ = stop_rx.await;
    };
    let statuses = run::run_pipelines(pipelines, Duration::from_secs(120), stop).await?;
    let seconds = watcher
        .await?
        .context("the pipeline stopped before every record was landed and committed")?;
    let totals = statuses[0].totals;
    say(&format!("progress {}", totals.consumed));
    if totals.landed_rows < records {
        bail!("only {} of {records} records landed", totals.landed_rows);
    }
    let (cpu_s, peak_rss) = usage();
    Ok(Outcome {
        records: totals.landed_rows,
        bytes: records_bytes(args.workload, totals.landed_rows),
        seconds,
        cpu_s,
        peak_rss,
    })
}

/// Payload bytes of records `0..n` (regenerated: they are deterministic).
pub fn records_bytes(w: Workload, n: u64) -> u64 {
    let mut buf = Vec::with_capacity(2048);
    let mut total = 0;
    for seq in 0..n {
        buf.clear();
        w.record(seq, &mut buf);
        total += buf.len() as u64;
    }
    total
}
