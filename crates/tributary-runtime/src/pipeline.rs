//! The pipeline task.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};
use tributary_core::{
    ConvertError, ErrorClass, Landed, ResumeAt, Sink, SinkError, Source, SourceError, SourceEvent,
    TopicPartition,
};

use crate::control::{Command, PipelineControl};
use crate::health::{LagPolicy, LagTracker};
use crate::memory::{self, BudgetShare, MemoryBudget};
use crate::status::{PipelineState, PipelineStatus, RecentFile, RECENT_FILES};

/// How often lag and buffered bytes are sampled (control API).
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

/// Marks a crash point (`tributary_lake::faults::CrashPoint::$point`);
/// compiles to nothing without the `fault-injection` feature.
macro_rules! crash_point {
    ($point:ident) => {{
        #[cfg(feature = "fault-injection")]
        tributary_lake::faults::crash_point(tributary_lake::faults::CrashPoint::$point);
    }};
}

/// How long recovering newly assigned partitions is retried after transient
/// storage failures before the pipeline gives up. Well inside the time the
/// Kafka source waits for the answer (`rebalance_ack_timeout`, 5 min).
const OPEN_RETRY_FOR: Duration = Duration::from_secs(60);

/// How often a pipeline paused by the memory budget looks again.
const MEMORY_RECHECK: Duration = Duration::from_millis(50);

/// Why a pipeline stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The source failed.
    #[error("pipeline {pipeline}: {source}")]
    Source {
        /// Pipeline name.
        pipeline: String,
        /// The error.
        #[source]
        source: SourceError,
    },
    /// A record could not be converted under `on_error = "fail"`, or the converter failed.
    #[error("pipeline {pipeline}: {source}")]
    Convert {
        /// Pipeline name.
        pipeline: String,
        /// The error.
        #[source]
        source: ConvertError,
    },
    /// The sink failed in a way retrying cannot fix.
    #[error("pipeline {pipeline}: {source}")]
    Sink {
        /// Pipeline name.
        pipeline: String,
        /// The error.
        #[source]
        source: SinkError,
    },
}

/// A shutdown signal shared by every pipeline of a worker.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Receiver<bool>);

impl Shutdown {
    /// A signal and the sender that raises it.
    pub fn new() -> (watch::Sender<bool>, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (tx, Shutdown(rx))
    }

    /// Whether shutdown was requested.
    pub fn is_requested(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown is requested (or the sender is gone).
    pub async fn requested(&mut self) {
        let _ = self.0.wait_for(|v| *v).await;
    }
}

/// How long a partition waits before landing again after a transient failure.
fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(500).saturating_mul(1 << attempt.min(7));
    let capped = base.min(Duration::from_secs(60));
    // Jitter of up to 25 %, from the clock: no RNG needed for spreading retries.
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    capped + capped.mul_f64(f64::from(nanos % 1000) / 4000.0)
}

/// One source → converter → sink pipeline.
pub struct Pipeline {
    name: String,
    source: Box<dyn Source>,
    converter: Box<dyn tributary_core::Converter>,
    sink: Box<dyn Sink>,
    shutdown_timeout: Duration,
    status: watch::Sender<PipelineStatus>,
    /// Partitions this worker owns now.
    owned: HashSet<TopicPartition>,
    /// Partitions re-positioned by a seek whose `Seeked` has not arrived:
    /// their records in flight are stale.
    seeking: HashSet<TopicPartition>,
    /// Partitions cooling down after a transient landing failure.
    retry: HashMap<TopicPartition, (Instant, u32)>,
    // --- control API (pause/resume, lag health) ---
    /// Commands from [`PipelineControl`] handles.
    commands: mpsc::Receiver<Command>,
    /// Kept so that [`Pipeline::control`] can hand out senders.
    command_tx: mpsc::Sender<Command>,
    /// Paused through the control API.
    paused: bool,
    /// Paused, and the source cannot pause itself: `next()` is not called.
    hold_source: bool,
    lag: LagTracker,
    // --- end control API ---
    /// This pipeline's part of the worker's memory budget, if it has one.
    memory: Option<BudgetShare>,
    /// Reading from the source is paused: the budget is exhausted.
    memory_paused: bool,
    /// When each background landing under way started.
    landing_since: HashMap<TopicPartition, Instant>,
}

impl Pipeline {
    /// Assembles a pipeline. Nothing runs until [`Pipeline::run`].
    pub fn new(
        name: impl Into<String>,
        source: Box<dyn Source>,
        converter: Box<dyn tributary_core::Converter>,
        sink: Box<dyn Sink>,
        shutdown_timeout: Duration,
    ) -> Self {
        let name = name.into();
        let (status, _) = watch::channel(PipelineStatus {
            name: name.clone(),
            ..Default::default()
        });
        let (command_tx, commands) = mpsc::channel(8);
        Self {
            name,
            source,
            converter,
            sink,
            shutdown_timeout,
            status,
            owned: HashSet::new(),
            seeking: HashSet::new(),
            retry: HashMap::new(),
            commands,
            command_tx,
            paused: false,
            hold_source: false,
            lag: LagTracker::new(LagPolicy::default()),
            memory: None,
            memory_paused: false,
            landing_since: HashMap::new(),
        }
    }

    /// Makes the pipeline keep its sink buffers within `budget`, shared with
    /// the other pipelines given the same budget (see [`crate::memory`]).
    pub fn with_memory_budget(mut self, budget: &MemoryBudget) -> Self {
        self.memory = Some(budget.share());
        self
    }

    /// Judges lag health with this policy instead of the default.
    pub fn with_lag_policy(mut self, policy: LagPolicy) -> Self {
        self.lag = LagTracker::new(policy);
        self
    }

    /// A handle to pause and resume this pipeline while it runs.
    pub fn control(&self) -> PipelineControl {
        PipelineControl {
            name: self.name.clone(),
            tx: self.command_tx.clone(),
        }
    }

    /// A receiver of live status snapshots.
    pub fn status(&self) -> watch::Receiver<PipelineStatus> {
        self.status.subscribe()
    }

    /// Runs until the source ends, shutdown is requested, or an error stops it.
    pub async fn run(mut self, mut shutdown: Shutdown) -> Result<(), RuntimeError> {
        info!(pipeline = %self.name, "Pipeline started.");
        let result = self.run_loop(&mut shutdown).await;
        let result = match result {
            Ok(()) => self.drain().await,
            Err(e) => Err(e),
        };
        let Pipeline {
            source,
            status,
            name,
            ..
        } = self;
        // Everything that could be landed is; the source must not wait on us while closing.
        if tokio::time::timeout(Duration::from_secs(30), source.close())
            .await
            .is_err()
        {
            warn!(pipeline = %name, "Source did not close within 30s; abandoning it.");
        }
        status.send_modify(|s| match &result {
            Ok(()) => s.state = PipelineState::Stopped,
            Err(e) => {
                s.state = PipelineState::Failed;
                s.error = Some(e.to_string());
            }
        });
        match &result {
            Ok(()) => info!(pipeline = %name, "Pipeline stopped."),
            Err(e) => error!(pipeline = %name, error = %e, "Pipeline failed."),
        }
        result
    }

    async fn run_loop(&mut self, shutdown: &mut Shutdown) -> Result<(), RuntimeError> {
        let mut sample = tokio::time::interval(SAMPLE_EVERY);
        sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut deadline = self.next_deadline();
            if self.memory_paused {
                // Look again soon: other pipelines may have landed meanwhile.
                let recheck = Instant::now() + MEMORY_RECHECK;
                deadline = Some(deadline.map_or(recheck, |d| d.min(recheck)));
            }
            tokio::select! {
                biased;
                _ = shutdown.requested() => {
                    info!(pipeline = %self.name, "Shutdown requested; landing buffered records.");
                    return Ok(());
                }
                Some(command) = self.commands.recv() => self.command(command).await,
                landed = self.sink.background_landed(), if self.sink.landing_in_background() => {
                    self.landed_in_background(landed).await?;
                }
                _ = sample.tick() => self.sample(),
                event = self.source.next(), if !self.memory_paused && !self.hold_source => {
                    let event = event.map_err(|source| RuntimeError::Source { pipeline: self.name.clone(), source })?;
                    if !self.handle(event, shutdown).await? {
                        info!(pipeline = %self.name, "Source finished; landing buffered records.");
                        return Ok(());
                    }
                }
                _ = sleep_until(deadline) => {}
            }
            let now = Instant::now();
            let due: Vec<TopicPartition> = self
                .sink
                .due(now)
                .into_iter()
                .filter(|tp| !self.cooling(tp, now))
                .collect();
            if !due.is_empty() {
                self.land_due(&due).await?;
            }
            self.relieve_memory().await?;
        }
    }

    /// Under memory pressure, lands the largest buffers early; pauses reading
    /// while the budget stays exhausted (see [`crate::memory`]).
    async fn relieve_memory(&mut self) -> Result<(), RuntimeError> {
        let Some(share) = &self.memory else {
            return Ok(());
        };
        let limit = share.budget().sink_limit();
        // Background landings have a limit of their own; only buffers can be
        // landed early. While landings hold more than theirs, reading pauses
        // until some end.
        let mut own = self.sink.buffered_bytes_by_partition();
        share.report(buffers_memory(&own), self.sink.landing_bytes());
        let now = Instant::now();
        own.retain(|(tp, _)| {
            self.owned.contains(tp) && !self.seeking.contains(tp) && !self.cooling(tp, now)
        });
        let early = memory::early_flush(&own, share.others(), limit);
        if !early.is_empty() {
            debug!(pipeline = %self.name, partitions = ?early, limit, "Over the memory budget; landing the largest buffers early.");
            self.land_due(&early).await?;
        }
        let Some(share) = &self.memory else {
            return Ok(());
        };
        share.report(
            buffers_memory(&self.sink.buffered_bytes_by_partition()),
            self.sink.landing_bytes(),
        );
        let paused = share.over();
        if paused != self.memory_paused {
            info!(pipeline = %self.name, paused, held = share.budget().used(), limit, "Memory budget: reading {}.", if paused { "paused" } else { "resumed" });
            self.memory_paused = paused;
        }
        Ok(())
    }

    /// The next instant the loop must wake up without a source event.
    fn next_deadline(&self) -> Option<Instant> {
        let now = Instant::now();
        let cooled = self
            .retry
            .values()
            .map(|(until, _)| *until)
            .filter(|u| *u > now)
            .min();
        match self.sink.next_deadline() {
            Some(d) if d > now => Some(cooled.map_or(d, |c| c.min(d))),
            // Something is due already: now, unless only cooling partitions are.
            Some(_) if self.sink.due(now).iter().any(|tp| !self.cooling(tp, now)) => Some(now),
            Some(_) => cooled,
            None => cooled,
        }
    }

    /// Whether the partition is waiting out a backoff after a failed landing.
    fn cooling(&self, tp: &TopicPartition, now: Instant) -> bool {
        self.retry.get(tp).is_some_and(|(until, _)| *until > now)
    }

    /// Handles one event; `false` when the source has ended.
    async fn handle(
        &mut self,
        event: SourceEvent,
        shutdown: &mut Shutdown,
    ) -> Result<bool, RuntimeError> {
        match event {
            SourceEvent::Records(batches) => {
                for batch in batches {
                    if !self.owned.contains(&batch.partition)
                        || self.seeking.contains(&batch.partition)
                    {
                        debug!(partition = %batch.partition, records = batch.records.len(), "Dropped records of a partition not owned or being re-read.");
                        continue;
                    }
                    let consumed = batch.records.len() as u64;
                    let rows =
                        self.converter
                            .convert(batch)
                            .map_err(|source| RuntimeError::Convert {
                                pipeline: self.name.clone(),
                                source,
                            })?;
                    self.sink
                        .write(rows)
                        .await
                        .map_err(|source| RuntimeError::Sink {
                            pipeline: self.name.clone(),
                            source,
                        })?;
                    self.status.send_modify(|s| s.totals.consumed += consumed);
                }
            }
            SourceEvent::Assigned { partitions, ack } => {
                let Some(resume) = self.open(&partitions, shutdown).await? else {
                    // Dropping `ack` leaves the partitions unassigned here;
                    // nothing of them was buffered, and the next owner
                    // recovers them from the lake.
                    warn!(pipeline = %self.name, partitions = ?partitions, "Shutdown requested while recovering assigned partitions; leaving them.");
                    return Ok(true);
                };
                for (tp, at) in &resume {
                    info!(pipeline = %self.name, partition = %tp, resume = ?at, "Partition assigned.");
                    self.owned.insert(tp.clone());
                    self.seeking.remove(tp);
                    self.retry.remove(tp);
                    self.lag.assigned(tp, Instant::now());
                    let state = if self.paused {
                        PipelineState::Paused
                    } else {
                        PipelineState::Running
                    };
                    self.status.send_modify(|s| {
                        s.state = state;
                        let p = s.partitions.entry(tp.clone()).or_default();
                        p.assigned = true;
                        if let ResumeAt::Offset(o) = at {
                            p.landed_offset = Some(*o);
                        }
                    });
                }
                if ack.send(resume).is_err() {
                    warn!(pipeline = %self.name, "Source stopped waiting for resume positions.");
                }
            }
            SourceEvent::Revoked { partitions, ack } => {
                let held: Vec<TopicPartition> = partitions
                    .iter()
                    .filter(|tp| self.owned.contains(*tp) && !self.seeking.contains(*tp))
                    .cloned()
                    .collect();
                info!(pipeline = %self.name, partitions = ?partitions, "Partitions revoked; landing their buffers.");
                // A permanent failure here still releases the partitions: the
                // new owner resumes from the lake, so nothing is lost.
                if let Err(e) = self.land_and_commit(&held).await {
                    warn!(pipeline = %self.name, error = %e, "Landing on revoke failed; the new owner re-reads.");
                }
                self.release(&partitions);
                let _ = ack.send(());
            }
            SourceEvent::Lost(partitions) => {
                warn!(pipeline = %self.name, partitions = ?partitions, "Partitions lost; dropping their buffers unlanded.");
                self.release(&partitions);
            }
            SourceEvent::Seeked { partition, offset } => {
                debug!(partition = %partition, offset, "Seek in effect.");
                self.seeking.remove(&partition);
            }
            SourceEvent::End => return Ok(false),
        }
        Ok(true)
    }

    /// Recovers newly assigned partitions in the sink, retrying transient
    /// storage failures with backoff for up to [`OPEN_RETRY_FOR`]. `None`
    /// when shutdown was requested while waiting to retry.
    async fn open(
        &mut self,
        partitions: &[TopicPartition],
        shutdown: &mut Shutdown,
    ) -> Result<Option<Vec<(TopicPartition, ResumeAt)>>, RuntimeError> {
        let give_up_at = Instant::now() + OPEN_RETRY_FOR;
        let mut attempt = 0;
        loop {
            let source = match self.sink.open(partitions).await {
                Ok(resume) => return Ok(Some(resume)),
                Err(e) => e,
            };
            let pause = backoff(attempt);
            self.status.send_modify(|s| {
                *s.errors.entry("open").or_default() += 1;
                *s.retries.entry("open").or_default() += 1;
            });
            if source.class() != ErrorClass::Retryable || Instant::now() + pause > give_up_at {
                return Err(RuntimeError::Sink {
                    pipeline: self.name.clone(),
                    source,
                });
            }
            warn!(
                pipeline = %self.name,
                partitions = ?partitions,
                attempt,
                retry_in = ?pause,
                error = %source,
                "Recovering assigned partitions failed; retrying."
            );
            tokio::select! {
                biased;
                _ = shutdown.requested() => return Ok(None),
                _ = tokio::time::sleep(pause) => {}
            }
            attempt += 1;
        }
    }

    fn release(&mut self, partitions: &[TopicPartition]) {
        self.sink.close_partitions(partitions);
        for tp in partitions {
            self.landing_since.remove(tp);
            self.owned.remove(tp);
            self.seeking.remove(tp);
            self.retry.remove(tp);
            self.lag.released(tp);
        }
        self.status.send_modify(|s| {
            for tp in partitions {
                if let Some(p) = s.partitions.get_mut(tp) {
                    p.assigned = false;
                    p.lag = None;
                    p.high_watermark = None;
                    p.lag_status = Default::default();
                }
            }
        });
    }

    /// Starts landing partitions (due, or picked to relieve memory) in the
    /// background where the sink can, so that reading goes on meanwhile;
    /// lands and commits the others before returning.
    async fn land_due(&mut self, due: &[TopicPartition]) -> Result<(), RuntimeError> {
        let started = self.sink.land_in_background(due).await;
        let now = Instant::now();
        for tp in &started {
            self.landing_since.insert(tp.clone(), now);
        }
        let rest: Vec<TopicPartition> = due
            .iter()
            .filter(|tp| !started.contains(tp))
            .cloned()
            .collect();
        self.land_and_commit(&rest).await
    }

    /// Commits a background landing's range, or handles its failure.
    async fn landed_in_background(
        &mut self,
        (tp, result): (TopicPartition, Result<Option<Landed>, SinkError>),
    ) -> Result<(), RuntimeError> {
        if let Some(since) = self.landing_since.remove(&tp) {
            let took = since.elapsed();
            self.status.send_modify(|s| {
                s.timings.landing.observe(took);
                s.timings.flush.observe(took);
            });
        }
        self.settle(vec![(tp, result)]).await
    }

    /// Lands the partitions, then commits the source offsets of those that landed.
    async fn land_and_commit(&mut self, partitions: &[TopicPartition]) -> Result<(), RuntimeError> {
        if partitions.is_empty() {
            return Ok(());
        }
        let flush_started = Instant::now();
        let result = self.land_and_commit_timed(partitions).await;
        self.status
            .send_modify(|s| s.timings.flush.observe(flush_started.elapsed()));
        result
    }

    async fn land_and_commit_timed(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<(), RuntimeError> {
        let landing_started = Instant::now();
        let results = self.sink.land(partitions).await;
        self.status
            .send_modify(|s| s.timings.landing.observe(landing_started.elapsed()));
        for tp in partitions {
            self.landing_since.remove(tp);
        }
        self.settle(results).await
    }

    /// Records landing results and commits the offsets of the ranges landed;
    /// a failed landing is retried by re-reading its partition, unless its
    /// error is permanent.
    async fn settle(
        &mut self,
        results: Vec<(TopicPartition, Result<Option<Landed>, SinkError>)>,
    ) -> Result<(), RuntimeError> {
        let mut commits: Vec<(TopicPartition, i64)> = Vec::new();
        let mut fatal = None;
        for (tp, result) in results {
            match result {
                Ok(Some(landed)) => {
                    self.retry.remove(&tp);
                    // A partition's ranges come in order: the last is the furthest.
                    commits.retain(|(t, _)| t != &tp);
                    commits.push((tp.clone(), landed.next_offset()));
                    self.record_landing(&landed);
                }
                Ok(None) => {}
                Err(e) => {
                    let kind = if matches!(e, SinkError::Conflict { .. }) {
                        "landing_conflict"
                    } else {
                        "landing"
                    };
                    self.status.send_modify(|s| {
                        *s.errors.entry(kind).or_default() += 1;
                        *s.retries.entry("landing").or_default() += 1;
                        s.totals.failed_landings += 1;
                        s.partitions.entry(tp.clone()).or_default().last_error =
                            Some(e.to_string());
                    });
                    let retryable = matches!(e, SinkError::Conflict { .. })
                        || e.class() == ErrorClass::Retryable;
                    if !retryable {
                        fatal.get_or_insert(e);
                        continue;
                    }
                    let attempt = match &e {
                        SinkError::Conflict { .. } => 0,
                        _ => self.retry.get(&tp).map_or(0, |(_, a)| a + 1),
                    };
                    if !matches!(e, SinkError::Conflict { .. }) {
                        self.retry
                            .insert(tp.clone(), (Instant::now() + backoff(attempt), attempt));
                    }
                    self.reread(&tp, &e).await?;
                }
            }
        }
        if !commits.is_empty() {
            self.commit(&commits).await?;
        }
        match fatal {
            Some(source) => Err(RuntimeError::Sink {
                pipeline: self.name.clone(),
                source,
            }),
            None => Ok(()),
        }
    }

    /// After a failed or lost landing: re-read the partition from the sink's resume point.
    async fn reread(&mut self, tp: &TopicPartition, cause: &SinkError) -> Result<(), RuntimeError> {
        match self.sink.resume_point(tp) {
            ResumeAt::Offset(offset) => {
                warn!(pipeline = %self.name, partition = %tp, offset, error = %cause, "Landing failed; re-reading the partition.");
                self.seeking.insert(tp.clone());
                self.source
                    .seek(tp, offset)
                    .await
                    .map_err(|source| RuntimeError::Source {
                        pipeline: self.name.clone(),
                        source,
                    })
            }
            ResumeAt::Default => {
                // Nothing to seek to: the sink never saw a record of it.
                warn!(pipeline = %self.name, partition = %tp, error = %cause, "Landing failed before any position was known.");
                Ok(())
            }
        }
    }

    fn record_landing(&self, landed: &Landed) {
        info!(
            pipeline = %self.name,
            partition = %landed.partition,
            seq = landed.seq,
            first_offset = landed.first_offset,
            last_offset = landed.last_offset,
            rows = landed.rows,
            dead_lettered = landed.dead_lettered,
            skipped = landed.skipped,
            late = landed.late,
            files = landed.files.len(),
            "Landed range."
        );
        self.status.send_modify(|s| {
            let t = &mut s.totals;
            t.landings += 1;
            t.landed_rows += landed.rows;
            t.dead_lettered += landed.dead_lettered;
            t.skipped += landed.skipped;
            t.late += landed.late;
            t.files += landed.files.len() as u64;
            t.bytes += landed.files.iter().map(|f| f.bytes).sum::<u64>();
            let p = s.partitions.entry(landed.partition.clone()).or_default();
            p.landed_offset = Some(landed.next_offset());
            p.last_landing = Some(SystemTime::now());
            p.last_error = None;
            for f in &landed.files {
                if s.recent_files.len() == RECENT_FILES {
                    s.recent_files.pop_front();
                }
                s.recent_files.push_back(RecentFile {
                    partition: landed.partition.clone(),
                    path: f.path.clone(),
                    rows: f.rows,
                    bytes: f.bytes,
                    landed_at: SystemTime::now(),
                });
            }
        });
    }

    async fn commit(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<(), RuntimeError> {
        crash_point!(BeforeOffsetCommit);
        let commit_started = Instant::now();
        let committed = self.source.commit(offsets).await;
        let took = commit_started.elapsed();
        crash_point!(AfterOffsetCommit);
        let kind = match &committed {
            Ok(()) => None,
            Err(SourceError::Fenced { .. }) => Some("offset_commit_fenced"),
            Err(_) => Some("offset_commit"),
        };
        self.status.send_modify(|s| {
            s.timings.source_commit.observe(took);
            if let Some(kind) = kind {
                *s.errors.entry(kind).or_default() += 1;
            }
        });
        match committed {
            Ok(()) => {
                let now = Instant::now();
                for (tp, _) in offsets {
                    self.lag.committed(tp, now);
                }
                self.status.send_modify(|s| {
                    for (tp, o) in offsets {
                        let p = s.partitions.entry(tp.clone()).or_default();
                        p.committed_offset = Some(*o);
                        p.last_commit = Some(SystemTime::now());
                    }
                });
                Ok(())
            }
            Err(SourceError::Fenced { partitions, reason }) => {
                warn!(pipeline = %self.name, partitions = ?partitions, reason = %reason, "Offset commit fenced; no longer writing these partitions.");
                self.release(&partitions);
                Ok(())
            }
            Err(e) if e.class() == ErrorClass::Retryable => {
                self.status
                    .send_modify(|s| *s.retries.entry("offset_commit").or_default() += 1);
                // The lake already holds the range; the next commit carries the offset forward.
                warn!(pipeline = %self.name, error = %e, "Offset commit failed; will be carried by the next one.");
                Ok(())
            }
            Err(source) => Err(RuntimeError::Source {
                pipeline: self.name.clone(),
                source,
            }),
        }
    }

    /// Lands everything buffered and commits, within the shutdown timeout.
    async fn drain(&mut self) -> Result<(), RuntimeError> {
        self.status
            .send_modify(|s| s.state = PipelineState::Draining);
        let held: Vec<TopicPartition> = self
            .sink
            .buffered()
            .into_iter()
            .filter(|tp| self.owned.contains(tp) && !self.seeking.contains(tp))
            .collect();
        let timeout = self.shutdown_timeout;
        match tokio::time::timeout(timeout, self.land_and_commit(&held)).await {
            Ok(result) => result,
            Err(_) => {
                warn!(pipeline = %self.name, timeout = ?timeout, "Shutdown timeout passed before buffers landed; they will be re-read on restart.");
                Ok(())
            }
        }
    }
}

// --- control API (pause/resume, lag health) ---
impl Pipeline {
    /// Carries out a command from a [`PipelineControl`].
    async fn command(&mut self, command: Command) {
        match command {
            Command::Pause { paused, done } => {
                let result = match self.source.set_paused(paused).await {
                    Ok(by_source) => {
                        self.paused = paused;
                        // A source that cannot pause itself is simply not polled.
                        self.hold_source = paused && !by_source;
                        let running = !self.owned.is_empty();
                        self.status.send_modify(|s| {
                            s.state = match (paused, running) {
                                (true, _) => PipelineState::Paused,
                                (false, true) => PipelineState::Running,
                                (false, false) => PipelineState::Starting,
                            };
                        });
                        info!(pipeline = %self.name, paused, "Pipeline paused or resumed.");
                        Ok(())
                    }
                    Err(e) => Err(e.to_string()),
                };
                let _ = done.send(result);
            }
        }
    }

    /// Samples the high watermarks, judges lag, and records buffered bytes.
    fn sample(&mut self) {
        let marks: HashMap<TopicPartition, i64> =
            self.source.high_watermarks().into_iter().collect();
        let now = Instant::now();
        let buffered = self.sink.buffered_bytes() as u64;
        let mut judged = Vec::new();
        {
            let status = self.status.borrow();
            for tp in &self.owned {
                let Some(high) = marks.get(tp).copied() else {
                    continue;
                };
                let p = status.partitions.get(tp);
                let committed = p.and_then(|p| p.committed_offset);
                let position = committed.or(p.and_then(|p| p.landed_offset));
                let lag = position.map(|pos| (high - pos).max(0));
                // With no known position yet, count the whole partition as lag.
                let health = self
                    .lag
                    .observe(tp, committed, lag.unwrap_or(high.max(0)), now);
                judged.push((tp.clone(), high, lag, health));
            }
        }
        self.status.send_modify(|s| {
            s.buffered_bytes = buffered;
            for (tp, high, lag, health) in judged {
                let p = s.partitions.entry(tp).or_default();
                p.high_watermark = Some(high);
                p.lag = lag;
                p.lag_status = health;
            }
        });
    }
}
// --- end control API ---

/// What a sink's buffers (from `buffered_bytes_by_partition`) hold.
fn buffers_memory(buffers: &[(TopicPartition, usize)]) -> usize {
    buffers.iter().map(|(_, b)| b).sum()
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
