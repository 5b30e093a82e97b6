//! `tributary backfill`: a one-shot, bounded run of one pipeline.
//!
//! The range is resolved once, at start-up: per partition a start (from
//! `--from`, or the lake's resume point when the lake already holds the
//! partition) and a fixed end (from `--until`), so the run terminates even
//! while producers keep writing. Partitions are assigned directly (no
//! consumer group, no rebalances), records land through the same landing
//! protocol as `tributary run`, and the group's offsets are never touched.
//!
//! Beside a live daemon the backfill is simply another writer of the same
//! per-partition commit logs (docs/LANDING.md, "Backfill"): each sequence
//! number has exactly one winner; a loser re-reads from the winner's end.
//! A pass that ends with partitions short of their end (a landing lost
//! during the final drain) is followed by another pass that resumes from the
//! lake, until every partition reached its end or a pass makes no progress.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use tokio::sync::watch;
use tracing::{info, warn};
use tributary_config::{Config, PipelineConfig, SinkConfig, SourceConfig};
use tributary_core::TopicPartition;
use tributary_lake::Lake;
use tributary_runtime::{MemoryBudget, Pipeline, PipelineStatus, Shutdown};

use crate::{registry, run};

/// Arguments of `tributary backfill`.
#[derive(clap::Args, Debug)]
pub struct BackfillArgs {
    /// Config file (.toml, .yaml, .yml); `TRIBUTARY_*` variables override it.
    #[arg(long, short, env = "TRIBUTARY_CONFIG")]
    pub config: PathBuf,
    /// Name of the pipeline to backfill (its source, converter and sink).
    #[arg(long)]
    pub pipeline: String,
    /// Where to start: `earliest`, an RFC 3339 time (the first record at or
    /// after it, per partition), or `p:offset,...` (only those partitions).
    #[arg(long, default_value = "earliest")]
    pub from: String,
    /// Where to stop (exclusive), fixed at start-up: `latest` (the high
    /// watermarks now), an RFC 3339 time, or `p:offset,...`.
    #[arg(long, default_value = "latest")]
    pub until: String,
    /// Print the resolved ranges and the projected record counts; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// How often a progress line is printed when stdout is not a terminal.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub progress_interval: Duration,
    /// Most passes before giving up on partitions that keep falling short
    /// (a landing lost to a concurrent writer in a pass's final drain; each
    /// pass resumes from the lake, and a pass without progress ends the run).
    #[arg(long, default_value_t = 10)]
    pub max_passes: u32,
}

/// One partition of the plan.
#[derive(Clone, Debug)]
struct Planned {
    partition: TopicPartition,
    /// Topic watermarks at resolution.
    low: i64,
    high: i64,
    /// What the bounds asked for.
    asked_start: i64,
    end: i64,
    /// One past the lake's last landed offset, if the lake holds the partition.
    lake_next: Option<i64>,
    /// Where this backfill starts reading.
    start: i64,
}

impl Planned {
    fn to_read(&self) -> i64 {
        (self.end - self.start).max(0)
    }
}

/// What the lake holds for a partition: the first landed offset and one
/// past the last, when anything was landed. Read-only.
async fn lake_extent(lake: &Lake, tp: &TopicPartition) -> anyhow::Result<Option<(i64, i64)>> {
    let commits = lake
        .commits(tp)
        .await
        .with_context(|| format!("reading the commit log of {tp}"))?;
    let first = commits
        .iter()
        .find(|c| !c.is_fence())
        .map(|c| c.first_offset);
    let next = commits.last().and_then(|c| c.next_offset());
    Ok(match (first, next) {
        (Some(f), Some(n)) => Some((f, n)),
        _ => None,
    })
}

/// A run lands partitions concurrently, so a crashed one may have left the
/// intent of a landing it committed in a partition now landed to its end,
/// which no pass reads (and recovers) again: removes such leftovers. Fences
/// nothing, so a daemon landing beside the backfill is not disturbed.
async fn tidy_landed(
    lake: &Lake,
    partitions: impl Iterator<Item = &TopicPartition>,
) -> anyhow::Result<()> {
    for tp in partitions {
        let removed = lake
            .tidy(tp)
            .await
            .with_context(|| format!("removing leftovers of finished landings of {tp}"))?;
        if removed > 0 {
            info!(partition = %tp, intents = removed, "Removed what finished landings left behind.");
        }
    }
    Ok(())
}

fn lake_of(p: &PipelineConfig) -> anyhow::Result<Lake> {
    match &p.sink {
        SinkConfig::Parquet(s) => Lake::open(&s.url, &s.storage)
            .with_context(|| format!("pipeline {}: opening the sink's lake {}", p.name, s.url)),
    }
}

/// `tributary backfill`. Prints its own plan, progress and summary on stdout.
pub async fn backfill(args: BackfillArgs) -> anyhow::Result<ExitCode> {
    run::fault_injection()?;
    let config = run::load_checked(&args.config, Path::new("."))
        .with_context(|| format!("{} is not valid", args.config.display()))?;
    let Some(p) = config.pipelines.iter().find(|p| p.name == args.pipeline) else {
        let names: Vec<&str> = config.pipelines.iter().map(|p| p.name.as_str()).collect();
        bail!(
            "--pipeline {:?}: {} has no such pipeline (it has: {})",
            args.pipeline,
            args.config.display(),
            names.join(", ")
        );
    };
    match &p.source {
        #[cfg(feature = "kafka-source")]
        SourceConfig::Kafka(k) => kafka::backfill(&args, &config, p, k).await,
        #[cfg(feature = "file-source")]
        SourceConfig::File(f) => files::backfill(&args, &config, p, f).await,
        #[allow(unreachable_patterns)]
        other => bail!(
            "pipeline {}: backfill reads Kafka and file sources; this pipeline's source is {}",
            p.name,
            source_kind(other)
        ),
    }
}

fn source_kind(s: &SourceConfig) -> &'static str {
    match s {
        SourceConfig::Kafka(_) => "kafka (not compiled into this binary)",
        SourceConfig::Datagen(_) => "datagen",
        SourceConfig::File(_) => "file (not compiled into this binary)",
        #[allow(unreachable_patterns)]
        _ => "another type",
    }
}

/// Turns the resolved ranges into the plan, against what the lake holds.
async fn plan(
    lake: &Lake,
    ranges: &[(TopicPartition, i64, i64, i64, i64)],
) -> anyhow::Result<Vec<Planned>> {
    let mut out = Vec::with_capacity(ranges.len());
    for (tp, low, high, asked_start, end) in ranges.iter().cloned() {
        let extent = lake_extent(lake, &tp).await?;
        out.push(plan_one(tp, low, high, asked_start, end, extent)?);
    }
    Ok(out)
}

/// Where one partition starts, given what the lake holds (`first..next`).
fn plan_one(
    tp: TopicPartition,
    low: i64,
    high: i64,
    asked_start: i64,
    end: i64,
    extent: Option<(i64, i64)>,
) -> anyhow::Result<Planned> {
    let start = match extent {
        None => asked_start,
        Some((first, next)) => {
            if asked_start < first && asked_start < end {
                bail!(
                    "{tp}: the lake's commit log for this partition begins at offset {first}; \
                     offsets {asked_start}..{} cannot be added in front of it (the log is one \
                     contiguous range). Backfill them into another table (another sink url).",
                    first.min(end)
                );
            }
            if next >= end {
                end
            } else if next < low {
                bail!(
                    "{tp}: the lake has landed up to offset {next}, but the topic keeps offsets \
                     from {low} on; offsets {next}..{low} are gone"
                );
            } else {
                // Continue the chain where the lake ends (landed offsets are
                // skipped; a later --from cannot leave a gap).
                next
            }
        }
    };
    Ok(Planned {
        partition: tp,
        low,
        high,
        asked_start,
        end,
        lake_next: extent.map(|(_, n)| n),
        start,
    })
}

fn print_plan(pipeline: &str, from: &str, until: &str, plan: &[Planned], dry_run: bool) {
    let total: i64 = plan.iter().map(Planned::to_read).sum();
    println!(
        "backfill plan: pipeline={pipeline} from={from} until={until} partitions={} records={total}{}",
        plan.len(),
        if dry_run { " (dry run: nothing is written)" } else { "" }
    );
    for p in plan {
        let lake = match p.lake_next {
            Some(n) => format!("landed_to={n}"),
            None => "empty".into(),
        };
        let note = if p.start != p.asked_start {
            if p.start >= p.end {
                " (already landed)"
            } else if p.start > p.asked_start {
                " (resumes after what the lake holds)"
            } else {
                " (starts where the lake ends: the commit log is contiguous)"
            }
        } else {
            ""
        };
        println!(
            "  partition={} start={} end={} records={} topic={}..{} lake={lake}{note}",
            p.partition,
            p.start,
            p.end,
            p.to_read(),
            p.low,
            p.high
        );
    }
}

/// Totals over every pass.
#[derive(Debug, Default, Clone)]
struct Totals {
    consumed: u64,
    landed_rows: u64,
    dead_lettered: u64,
    skipped: u64,
    files: u64,
    bytes: u64,
    landings: u64,
    lost_landings: u64,
}

impl Totals {
    fn add(&mut self, s: &PipelineStatus) {
        let t = &s.totals;
        self.consumed += t.consumed;
        self.landed_rows += t.landed_rows;
        self.dead_lettered += t.dead_lettered;
        self.skipped += t.skipped;
        self.files += t.files;
        self.bytes += t.bytes;
        self.landings += t.landings;
        self.lost_landings += t.failed_landings;
    }
}

/// Progress display: a bar on a terminal, periodic lines otherwise.
struct Reporter {
    bar: Option<indicatif::ProgressBar>,
    interval: Duration,
    last_line: Instant,
    started: Instant,
    total: u64,
    unit: &'static str,
}

impl Reporter {
    fn new(total: u64, interval: Duration, unit: &'static str) -> Reporter {
        let bar = std::io::stdout().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(total),
                indicatif::ProgressDrawTarget::stdout(),
            );
            if let Ok(style) = indicatif::ProgressStyle::with_template(&format!(
                "{{spinner}} [{{elapsed_precise}}] {{bar:30}} {{human_pos}}/{{human_len}} {unit} \
                     {{msg}} ETA {{eta}}"
            )) {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Reporter {
            bar,
            interval,
            last_line: Instant::now(),
            started: Instant::now(),
            total,
            unit,
        }
    }

    fn update(&mut self, done: u64, totals: &Totals, force: bool) {
        let done = done.min(self.total);
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = done as f64 / secs;
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            bar.set_message(format!(
                "{rate:.0}/s, landed {} rows in {} files",
                totals.landed_rows, totals.files
            ));
            if !force {
                return;
            }
            // The last state stays as a plain line, before the summary.
            bar.finish_and_clear();
        } else if !force && self.last_line.elapsed() < self.interval {
            return;
        }
        self.last_line = Instant::now();
        let eta = if done >= self.total {
            "0s".to_string()
        } else if rate > 0.0 {
            format!("{:.0}s", (self.total - done) as f64 / rate)
        } else {
            "unknown".to_string()
        };
        println!(
            "backfill progress: {}={done}/{} percent={:.1} rate={rate:.0}/s eta={eta} landed_rows={} files={} bytes={}",
            self.unit,
            self.total,
            if self.total == 0 { 100.0 } else { done as f64 * 100.0 / self.total as f64 },
            totals.landed_rows,
            totals.files,
            totals.bytes,
        );
    }
}

#[cfg(feature = "kafka-source")]
mod kafka {
    use super::*;
    use tributary_config::KafkaSourceConfig;
    use tributary_kafka_source::bounded::{
        resolve_ranges, Bound, BoundedKafkaSource, BoundedProgress, PartitionRange,
    };

    pub(super) async fn backfill(
        args: &BackfillArgs,
        config: &Config,
        p: &PipelineConfig,
        k: &KafkaSourceConfig,
    ) -> anyhow::Result<ExitCode> {
        let from = Bound::parse(&args.from).map_err(|e| anyhow!("--from: {e}"))?;
        let until = Bound::parse(&args.until).map_err(|e| anyhow!("--until: {e}"))?;
        let lake = lake_of(p)?;
        let started = Instant::now();
        let ranges = {
            let (k, name) = (k.clone(), p.name.clone());
            tokio::task::spawn_blocking(move || resolve_ranges(&k, &name, &from, &until))
                .await
                .context("resolving the ranges")?
                .with_context(|| format!("pipeline {}: resolving the backfill range", p.name))?
        };
        let flat: Vec<(TopicPartition, i64, i64, i64, i64)> = ranges
            .iter()
            .map(|r| (r.partition.clone(), r.low, r.high, r.start, r.end))
            .collect();
        let first_plan = plan(&lake, &flat).await?;
        print_plan(&p.name, &args.from, &args.until, &first_plan, args.dry_run);
        if args.dry_run {
            return Ok(ExitCode::SUCCESS);
        }
        let ends: BTreeMap<TopicPartition, i64> = first_plan
            .iter()
            .map(|x| (x.partition.clone(), x.end))
            .collect();
        let first_start: BTreeMap<TopicPartition, i64> = first_plan
            .iter()
            .map(|x| (x.partition.clone(), x.start))
            .collect();
        let total: u64 = first_plan.iter().map(|x| x.to_read() as u64).sum();

        // A signal stops the current pass (it lands what it holds) and the run.
        let (stop_tx, stop_rx) = watch::channel(false);
        let signals = tokio::spawn(async move {
            run::signal().await;
            let _ = stop_tx.send(true);
        });

        let mut reporter = Reporter::new(total, args.progress_interval, "records");
        let mut totals = Totals::default();
        let mut current = first_plan;
        let mut passes = 0;
        let writer = format!("backfill-{}", config.worker.id);
        let landed = current
            .iter()
            .filter(|x| x.start >= x.end && x.lake_next.is_some());
        tidy_landed(&lake, landed.map(|x| &x.partition)).await?;
        // The worker's memory budget bounds this run's buffers and prefetch too.
        let budget = MemoryBudget::new(config.worker.memory_budget.0);
        let outcome: anyhow::Result<()> = loop {
            let todo: Vec<PartitionRange> = current
                .iter()
                .filter(|x| x.start < x.end)
                .map(|x| PartitionRange {
                    partition: x.partition.clone(),
                    low: x.low,
                    high: x.high,
                    start: x.start,
                    end: x.end,
                })
                .collect();
            if todo.is_empty() {
                break Ok(());
            }
            if *stop_rx.borrow() {
                break Err(anyhow!("interrupted"));
            }
            if passes >= args.max_passes {
                break Err(anyhow!(
                    "{} partition(s) still short of their end after {passes} passes",
                    todo.len()
                ));
            }
            passes += 1;
            if passes > 1 {
                info!(
                    pass = passes,
                    partitions = todo.len(),
                    "Another pass: partitions fell short of their end."
                );
            }
            let before: i64 = current.iter().map(|x| x.start).sum();
            let sized = registry::within_budget(p, &budget, 1);
            let k = match &sized.source {
                SourceConfig::Kafka(sized) => sized,
                _ => k,
            };
            let source = BoundedKafkaSource::start(k, &p.name, todo).with_context(|| {
                format!("pipeline {}: starting the bounded Kafka source", p.name)
            })?;
            let positions = source.progress();
            let pipeline = pass_pipeline(config, p, Box::new(source), &writer, &budget)?;
            let (last, result) = run_pass(pipeline, &stop_rx, |status| {
                let mut shown = totals.clone();
                shown.add(status);
                reporter.update(
                    progress_done(&positions, &first_start, &ends),
                    &shown,
                    false,
                );
            })
            .await;
            totals.add(&last);
            if let Err(e) = result {
                break Err(e);
            }
            if *stop_rx.borrow() {
                break Err(anyhow!("interrupted"));
            }
            current = plan(&lake, &flat_from(&current)).await?;
            let after: i64 = current.iter().map(|x| x.start).sum();
            if after <= before && current.iter().any(|x| x.start < x.end) {
                break Err(anyhow!(
                    "a pass made no progress; partitions short of their end: {}",
                    short(&current)
                ));
            }
        };
        signals.abort();
        let landed = plan(&lake, &flat_from(&current)).await;
        let done: u64 = match &landed {
            Ok(now) => now
                .iter()
                .map(|x| (x.start - first_start[&x.partition]).max(0) as u64)
                .sum(),
            Err(_) => 0,
        };
        reporter.update(done, &totals, true);
        print_summary(
            &p.name,
            started,
            passes,
            &totals,
            &first_start,
            landed.as_deref().ok(),
        );
        match outcome {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(e) => Err(e.context(format!(
                "backfill of pipeline {} did not reach its end; run the same command again to continue \
                 (it resumes from the lake and lands nothing twice)",
                p.name
            ))),
        }
    }

    /// The plan's ranges as `plan` takes them, keeping the asked start.
    fn flat_from(current: &[Planned]) -> Vec<(TopicPartition, i64, i64, i64, i64)> {
        current
            .iter()
            .map(|x| (x.partition.clone(), x.low, x.high, x.asked_start, x.end))
            .collect()
    }

    fn short(plan: &[Planned]) -> String {
        plan.iter()
            .filter(|x| x.start < x.end)
            .map(|x| format!("{} at {} of {}", x.partition, x.start, x.end))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Offsets read so far, over the whole run (not only this pass).
    fn progress_done(
        positions: &BoundedProgress,
        first_start: &BTreeMap<TopicPartition, i64>,
        ends: &BTreeMap<TopicPartition, i64>,
    ) -> u64 {
        let positions = positions.lock().unwrap_or_else(|e| e.into_inner());
        first_start
            .iter()
            .map(|(tp, start)| {
                let end = ends.get(tp).copied().unwrap_or(*start);
                let at = positions
                    .get(tp)
                    .and_then(|p| p.delivered_to.or(p.started_at))
                    .unwrap_or(*start)
                    .clamp(*start, end.max(*start));
                (at - start) as u64
            })
            .sum()
    }
}

/// The pipeline of one backfill pass: `source` through the pipeline's
/// converter into its sink, as writer `writer`, within the memory budget.
fn pass_pipeline(
    config: &Config,
    p: &PipelineConfig,
    source: Box<dyn tributary_core::Source>,
    writer: &str,
    budget: &MemoryBudget,
) -> anyhow::Result<Pipeline> {
    Ok(Pipeline::new(
        p.name.clone(),
        source,
        registry::converter(p, Path::new("."))?,
        registry::sink(p, writer)?,
        config.worker.shutdown_timeout.0,
    )
    .with_memory_budget(budget))
}

/// Runs one pass of a backfill pipeline until it ends, or until a stop is
/// requested (then it lands what it holds first), calling `tick` with its
/// live status every 200 ms. Returns its last status and how it ended.
async fn run_pass(
    pipeline: Pipeline,
    stop_rx: &watch::Receiver<bool>,
    mut tick: impl FnMut(&PipelineStatus),
) -> (PipelineStatus, anyhow::Result<()>) {
    let status = pipeline.status();
    let (trigger, shutdown) = Shutdown::new();
    let mut task = tokio::spawn(pipeline.run(shutdown));
    let mut stop = stop_rx.clone();
    let mut ticks = tokio::time::interval(Duration::from_millis(200));
    let result = loop {
        tokio::select! {
            done = &mut task => break done,
            _ = stop.wait_for(|v| *v) => {
                warn!("Stop requested; landing what this pass holds.");
                let _ = trigger.send(true);
                break (&mut task).await;
            }
            _ = ticks.tick() => tick(&status.borrow()),
        }
    };
    let last = status.borrow().clone();
    let result = match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(anyhow!(e)),
        Err(join) => Err(anyhow!("the backfill pipeline panicked: {join}")),
    };
    (last, result)
}

/// The `backfill summary:` line (parsed by tests and scripts: keep its keys).
fn summary_line(
    pipeline: &str,
    complete: bool,
    totals: &Totals,
    passes: u32,
    started: Instant,
) -> String {
    format!(
        "backfill summary: pipeline={pipeline} status={} records={} rows={} dead_lettered={} skipped={} files={} bytes={} landings={} lost_landings={} passes={passes} duration={:.1}s",
        if complete { "complete" } else { "incomplete" },
        totals.landed_rows + totals.dead_lettered + totals.skipped,
        totals.landed_rows,
        totals.dead_lettered,
        totals.skipped,
        totals.files,
        totals.bytes,
        totals.landings,
        totals.lost_landings,
        started.elapsed().as_secs_f64(),
    )
}

fn print_summary(
    pipeline: &str,
    started: Instant,
    passes: u32,
    totals: &Totals,
    first_start: &BTreeMap<TopicPartition, i64>,
    now: Option<&[Planned]>,
) {
    let complete = now.is_some_and(|n| n.iter().all(|x| x.start >= x.end));
    println!(
        "{}",
        summary_line(pipeline, complete, totals, passes, started)
    );
    if let Some(now) = now {
        for x in now {
            let from = first_start.get(&x.partition).copied().unwrap_or(x.start);
            println!(
                "  partition={} range={from}..{} landed_to={} status={}",
                x.partition,
                x.end,
                x.lake_next.map_or_else(|| "none".into(), |n| n.to_string()),
                if x.start >= x.end {
                    "complete"
                } else {
                    "short"
                }
            );
        }
    }
}

/// Backfill of a file source: every input file not yet landed, once.
#[cfg(feature = "file-source")]
mod files {
    use super::*;
    use tributary_config::FileSourceConfig;
    use tributary_file_source::{list_inputs, FileManifest, FileSource, InputFile};

    /// Where one input file stands in the lake.
    struct FileState {
        file: InputFile,
        /// One past the last landed offset.
        landed_to: Option<i64>,
        manifest: Option<FileManifest>,
    }

    impl FileState {
        fn complete(&self) -> bool {
            match (&self.manifest, self.landed_to) {
                (Some(m), Some(n)) => n > m.last_offset,
                (Some(m), None) => m.records == 0,
                _ => false,
            }
        }

        fn status(&self) -> &'static str {
            if self.complete() {
                "landed"
            } else if self.landed_to.is_some() {
                "partial"
            } else {
                "new"
            }
        }
    }

    async fn states(f: &FileSourceConfig, sink: &Lake) -> anyhow::Result<Vec<FileState>> {
        let input = Lake::open(&f.url, &f.storage)
            .with_context(|| format!("opening the file source url {}", f.url))?;
        let files = list_inputs(f, &input).await?;
        let mut out = Vec::with_capacity(files.len());
        for file in files {
            let landed_to = lake_extent(sink, &file.partition).await?.map(|(_, n)| n);
            let manifest: Option<FileManifest> = match sink.source_manifest(&file.partition).await?
            {
                Some(bytes) => Some(serde_json::from_slice(&bytes).with_context(|| {
                    format!("the manifest of {} is not readable", file.partition)
                })?),
                None => None,
            };
            if let Some(m) = &manifest {
                if m.size != file.size {
                    bail!(
                        "input file {:?} ({}) changed since it was first landed: it was {} bytes, \
                         it is {} bytes now; rename it to land it as a new file",
                        file.path,
                        file.partition,
                        m.size,
                        file.size
                    );
                }
            }
            out.push(FileState {
                file,
                landed_to,
                manifest,
            });
        }
        Ok(out)
    }

    pub(super) async fn backfill(
        args: &BackfillArgs,
        config: &Config,
        p: &PipelineConfig,
        f: &FileSourceConfig,
    ) -> anyhow::Result<ExitCode> {
        if args.from != "earliest" || args.until != "latest" {
            bail!(
                "--from/--until select offsets of Kafka topics; pipeline {} reads files, each \
                 landed once (files already landed are skipped)",
                p.name
            );
        }
        let lake = lake_of(p)?;
        let started = Instant::now();
        let before = states(f, &lake).await?;
        let todo = before.iter().filter(|s| !s.complete()).count();
        println!(
            "backfill plan: pipeline={} source=file url={} files={} to_read={todo}{}",
            p.name,
            f.url,
            before.len(),
            if args.dry_run {
                " (dry run: nothing is written)"
            } else {
                ""
            }
        );
        for s in &before {
            println!(
                "  file={} partition={} bytes={} lake={} status={}",
                s.file.path,
                s.file.partition,
                s.file.size,
                s.landed_to
                    .map_or_else(|| "empty".into(), |n| format!("landed_to={n}")),
                s.status()
            );
        }
        if args.dry_run {
            return Ok(ExitCode::SUCCESS);
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let signals = tokio::spawn(async move {
            run::signal().await;
            let _ = stop_tx.send(true);
        });
        let mut reporter = Reporter::new(todo as u64, args.progress_interval, "input_files");
        let mut totals = Totals::default();
        let writer = format!("backfill-{}", config.worker.id);
        let landed = before.iter().filter(|s| s.complete());
        tidy_landed(&lake, landed.map(|s| &s.file.partition)).await?;
        // The worker's memory budget bounds this run's buffers and prefetch too.
        let budget = MemoryBudget::new(config.worker.memory_budget.0);
        let mut passes = 0;
        let mut done_before = 0u64;
        let outcome: anyhow::Result<()> = loop {
            let now = states(f, &lake).await?;
            let left = now.iter().filter(|s| !s.complete()).count();
            if left == 0 {
                break Ok(());
            }
            if *stop_rx.borrow() {
                break Err(anyhow!("interrupted"));
            }
            if passes >= args.max_passes {
                break Err(anyhow!("{left} file(s) not landed after {passes} passes"));
            }
            passes += 1;
            let source = FileSource::new(f, Some(lake.clone()))
                .with_context(|| format!("pipeline {}: starting the file source", p.name))?;
            let counters = source.progress();
            let pipeline = pass_pipeline(config, p, Box::new(source), &writer, &budget)?;
            let files_done = || {
                let c = counters.lock().unwrap_or_else(|e| e.into_inner()).clone();
                c.files_done.saturating_sub(c.files_skipped)
            };
            let (last, result) = run_pass(pipeline, &stop_rx, |status| {
                let mut shown = totals.clone();
                shown.add(status);
                reporter.update(done_before + files_done(), &shown, false);
            })
            .await;
            totals.add(&last);
            done_before += files_done();
            if let Err(e) = result {
                break Err(e);
            }
        };
        signals.abort();
        let after = states(f, &lake).await;
        reporter.update(done_before, &totals, true);
        let complete = after
            .as_ref()
            .is_ok_and(|a| a.iter().all(FileState::complete));
        println!(
            "{}",
            summary_line(&p.name, complete, &totals, passes, started)
        );
        if let Ok(after) = &after {
            for s in after {
                println!(
                    "  file={} partition={} records={} landed_to={} status={}",
                    s.file.path,
                    s.file.partition,
                    s.manifest.as_ref().map_or(0, |m| m.records),
                    s.landed_to.map_or_else(|| "none".into(), |n| n.to_string()),
                    s.status()
                );
            }
        }
        match outcome {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(e) => Err(e.context(format!(
                "backfill of pipeline {} did not land every file; run the same command again to \
                 continue (landed files are skipped)",
                p.name
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(asked: i64, end: i64, extent: Option<(i64, i64)>) -> anyhow::Result<i64> {
        plan_one(TopicPartition::new("t", 0), 10, 1000, asked, end, extent).map(|p| p.start)
    }

    #[test]
    fn the_start_follows_the_lake() {
        // Nothing landed: the asked start.
        assert_eq!(start(100, 500, None).unwrap(), 100);
        // Landed inside the range: resume after it.
        assert_eq!(start(100, 500, Some((100, 300))).unwrap(), 300);
        // Landed past the end: nothing to do.
        assert_eq!(start(100, 500, Some((0, 700))).unwrap(), 500);
        // The lake ends before the asked start: continue the chain there.
        assert_eq!(start(400, 500, Some((0, 200))).unwrap(), 200);
    }

    #[test]
    fn impossible_ranges_are_refused_with_the_reason() {
        let before = start(10, 500, Some((300, 600))).unwrap_err().to_string();
        assert!(before.contains("begins at offset 300"), "{before}");
        assert!(before.contains("10..300"), "{before}");
        let gone = start(20, 500, Some((0, 5))).unwrap_err().to_string();
        assert!(gone.contains("offsets 5..10 are gone"), "{gone}");
    }
}
