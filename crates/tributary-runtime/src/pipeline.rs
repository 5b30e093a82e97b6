//! The pipeline task.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use tracing::{debug, error, info, warn};
use tributary_core::{
    ConvertError, ErrorClass, Landed, ResumeAt, Sink, SinkError, Source, SourceError, SourceEvent,
    TopicPartition,
};

use crate::status::{PipelineState, PipelineStatus};

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
        loop {
            let deadline = self.next_deadline();
            tokio::select! {
                biased;
                _ = shutdown.requested() => {
                    info!(pipeline = %self.name, "Shutdown requested; landing buffered records.");
                    return Ok(());
                }
                event = self.source.next() => {
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
                self.land_and_commit(&due).await?;
            }
        }
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
                    self.status.send_modify(|s| {
                        s.state = PipelineState::Running;
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
            self.owned.remove(tp);
            self.seeking.remove(tp);
            self.retry.remove(tp);
        }
        self.status.send_modify(|s| {
            for tp in partitions {
                if let Some(p) = s.partitions.get_mut(tp) {
                    p.assigned = false;
                }
            }
        });
    }

    /// Lands the partitions, then commits the source offsets of those that landed.
    async fn land_and_commit(&mut self, partitions: &[TopicPartition]) -> Result<(), RuntimeError> {
        if partitions.is_empty() {
            return Ok(());
        }
        let results = self.sink.land(partitions).await;
        let mut commits = Vec::new();
        let mut fatal = None;
        for (tp, result) in results {
            match result {
                Ok(Some(landed)) => {
                    self.retry.remove(&tp);
                    commits.push((tp.clone(), landed.next_offset()));
                    self.record_landing(&landed);
                }
                Ok(None) => {}
                Err(e) => {
                    self.status.send_modify(|s| {
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
            files = landed.files.len(),
            "Landed range."
        );
        self.status.send_modify(|s| {
            let t = &mut s.totals;
            t.landings += 1;
            t.landed_rows += landed.rows;
            t.dead_lettered += landed.dead_lettered;
            t.skipped += landed.skipped;
            t.files += landed.files.len() as u64;
            t.bytes += landed.files.iter().map(|f| f.bytes).sum::<u64>();
            let p = s.partitions.entry(landed.partition.clone()).or_default();
            p.landed_offset = Some(landed.next_offset());
            p.last_landing = Some(SystemTime::now());
            p.last_error = None;
        });
    }

    async fn commit(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<(), RuntimeError> {
        crash_point!(BeforeOffsetCommit);
        let committed = self.source.commit(offsets).await;
        crash_point!(AfterOffsetCommit);
        match committed {
            Ok(()) => {
                self.status.send_modify(|s| {
                    for (tp, o) in offsets {
                        s.partitions.entry(tp.clone()).or_default().committed_offset = Some(*o);
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

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
