//! # tributary-parquet-sink
//!
//! The Parquet sink: it buffers Arrow rows per source partition, split by
//! time partition (`partition_by`), encoding them into in-memory Parquet
//! writers as they arrive — on an encoder thread per source partition, so
//! encoding runs beside the pipeline's conversion and partitions encode in
//! parallel — and lands a source partition's buffers together —
//! one Parquet file per time partition plus a dead-letter file when records
//! were rejected — through the landing protocol of [`tributary_lake`].
//!
//! A source partition is landed when its buffers reach `flush.max_records`
//! source records, `flush.max_bytes` bytes, or when its oldest buffered record
//! is `flush.max_age` old. All thresholds are per source partition.
//!
//! A due partition lands in the background ([`Sink::land_in_background`]):
//! its buffer is finished and written on a task of its own while the
//! pipeline reads on into a new buffer, whose range starts one past the
//! landing one. A partition has at most one landing under way (when its
//! next buffer comes due first, that waits), and results are given in the
//! order ranges were started, so a partition's ranges commit in order; when
//! a landing fails, what was buffered after it is dropped with it and the
//! partition is re-read from before both.
//!
//! With a dead-letter route outside the lake
//! ([`ParquetSink::with_dead_letter_route`], e.g. a Kafka topic), a source
//! partition's rejects are kept whole instead of written to the dead-letter
//! file; landing hands them to the route, waits until they are durable, and
//! only then lands the range, whose commit lists where they went.

#![warn(missing_docs)]

mod buffer;
mod encoder;
mod encoding;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use parquet::file::properties::WriterProperties;
use tokio::sync::mpsc;
use tracing::debug;
use tributary_config::ParquetSinkConfig;
use tributary_core::{DeadLetterPositions, DeadLetterRequest, DeadLetterRoute, Reject};
use tributary_core::{Landed, ResumeAt, RowBatch, Sink, SinkError, TopicPartition};
use tributary_lake::{CommitRecord, Lake, Landing, LateData, PartitionLog, PartitionTemplate};

use crate::buffer::PartitionBuffer;
pub use crate::encoding::sampled_properties;
use crate::encoding::DictionaryAdvisor;

/// Errors building the sink from its configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The storage URL or options are wrong.
    #[error("sink storage: {0}")]
    Lake(#[from] tributary_lake::LakeError),
    /// Writer settings are wrong.
    #[error("sink format: {0}")]
    Format(#[from] tributary_formats::FormatError),
}

/// Parquet files on object storage or local disk, landed exactly once.
pub struct ParquetSink {
    lake: Lake,
    writer_id: String,
    cfg: ParquetSinkConfig,
    props: WriterProperties,
    /// Which columns get a dictionary, learned from the files written.
    advisor: Arc<DictionaryAdvisor>,
    /// One buffer is finished (its Parquet footers written and its pages
    /// copied into one file image) at a time: finishing holds a buffer's
    /// pages and its file image, up to three times the file's size, and
    /// several partitions landed early together under memory pressure would
    /// otherwise all hold that at once. Uploads still run concurrently.
    finishing: Arc<tokio::sync::Semaphore>,
    /// Size of the largest file image of the latest landing: new files
    /// reserve a quarter more.
    file_bytes: Arc<AtomicUsize>,
    template: Option<Arc<PartitionTemplate>>,
    /// Which time late records are partitioned by (`late_data`).
    late_data: Option<LateData>,
    logs: HashMap<TopicPartition, PartitionLog>,
    buffers: HashMap<TopicPartition, PartitionBuffer>,
    /// Where to re-read a partition whose unlanded buffer was dropped before
    /// anything of it was ever landed.
    restart_at: HashMap<TopicPartition, i64>,
    /// Where rejects go when not to the lake's dead-letter files.
    dead_letter: Option<Arc<dyn DeadLetterRoute>>,
    /// Landings under way, by partition: at most one each.
    in_flight: HashMap<TopicPartition, InFlight>,
    /// Landings of closed partitions still under way, by partition: their
    /// outcomes are dropped, and opening the partition again waits for them.
    abandoned: HashMap<TopicPartition, usize>,
    /// Landing tasks report here when they end.
    outcomes_tx: mpsc::UnboundedSender<Outcome>,
    outcomes: mpsc::UnboundedReceiver<Outcome>,
    /// Results of background landings not taken yet, oldest first.
    results: VecDeque<(TopicPartition, Result<Option<Landed>, SinkError>)>,
    /// Partitions for which the dead-letter route's last answer was
    /// "settled" (it knows of no record of a later range) and every landing
    /// since succeeded: no record of their next range can be in the
    /// dead-letter topic yet, so the route need not look for one. Cleared
    /// by `open` (a previous owner may have crashed mid-landing) and by a
    /// failed landing.
    dead_letter_settled: HashSet<TopicPartition>,
}

/// What [`ParquetSink::start_landing`] did.
enum Started {
    /// A landing task runs.
    Running,
    /// No buffer.
    Nothing,
    /// The partition is not open (its buffer is dropped).
    NotOpen,
}

/// A landing under way.
struct InFlight {
    /// One past the last offset it covers: where the partition's next buffer
    /// starts.
    next: i64,
    /// Encoded bytes it held when it started.
    size: usize,
    /// Memory it holds: its buffer's (encoders, file images, rejects) until
    /// the files are finished, then their images', then none once written.
    memory: Arc<AtomicUsize>,
    /// Rows outside the late-data window in it.
    late: u64,
}

/// How a landing task ended: the partition, its log back, and the commit
/// with whether the dead-letter route is settled, or the error; `Err` when
/// the task itself panicked (the log is lost with it).
type Outcome = (
    TopicPartition,
    Result<(PartitionLog, Result<(CommitRecord, bool), SinkError>), String>,
);

impl ParquetSink {
    /// Builds the sink. Opens no connection: storage is first touched when
    /// partitions are opened.
    pub fn new(cfg: &ParquetSinkConfig, worker_id: &str) -> Result<Self, BuildError> {
        let lake = Lake::open(&cfg.url, &cfg.storage)?;
        Self::with_lake(lake, cfg, worker_id)
    }

    /// Builds the sink over an already opened lake (tests, fault injection).
    pub fn with_lake(
        lake: Lake,
        cfg: &ParquetSinkConfig,
        worker_id: &str,
    ) -> Result<Self, BuildError> {
        let props = tributary_formats::writer_properties(cfg)?;
        let template = match &cfg.partition_by {
            Some(t) => Some(Arc::new(PartitionTemplate::new(t, &cfg.timezone)?)),
            None => None,
        };
        let (outcomes_tx, outcomes) = mpsc::unbounded_channel();
        Ok(Self {
            lake,
            writer_id: tributary_lake::new_writer_id(worker_id),
            cfg: cfg.clone(),
            props,
            advisor: Arc::default(),
            finishing: Arc::new(tokio::sync::Semaphore::new(1)),
            file_bytes: Arc::default(),
            template,
            late_data: cfg.late_data.as_ref().map(LateData::new),
            logs: HashMap::new(),
            buffers: HashMap::new(),
            restart_at: HashMap::new(),
            dead_letter: None,
            in_flight: HashMap::new(),
            abandoned: HashMap::new(),
            outcomes_tx,
            outcomes,
            results: VecDeque::new(),
            dead_letter_settled: HashSet::new(),
        })
    }

    /// Sends rejects to `route` (a Kafka dead-letter topic) instead of the
    /// lake's `_dead_letter/` files. A range's rejects are delivered, and
    /// durable, before its commit is created; the commit lists their
    /// positions.
    pub fn with_dead_letter_route(mut self, route: Arc<dyn DeadLetterRoute>) -> Self {
        self.dead_letter = Some(route);
        self
    }

    /// The id this sink's files and commits carry.
    pub fn writer_id(&self) -> &str {
        &self.writer_id
    }

    /// Resolves once every row written so far is encoded, so that
    /// [`Sink::buffered_bytes`] and the `flush.max_bytes` threshold see
    /// encoded sizes rather than estimates for rows still on their way to
    /// the encoder threads.
    pub async fn settled(&self) {
        for buffer in self.buffers.values() {
            buffer.settled().await;
        }
    }

    /// Starts landing the partition's buffer on its own task, which reports
    /// to `outcomes`.
    fn start_landing(&mut self, tp: &TopicPartition) -> Started {
        let Some(mut buffer) = self.buffers.remove(tp) else {
            return Started::Nothing;
        };
        let Some(mut log) = self.logs.remove(tp) else {
            return Started::NotOpen;
        };
        if log.next_offset().is_none() {
            self.restart_at.insert(tp.clone(), buffer.range_start);
        }
        let memory = Arc::new(AtomicUsize::new(buffer.memory_bytes()));
        self.in_flight.insert(
            tp.clone(),
            InFlight {
                next: buffer.last_offset.unwrap_or(buffer.range_start - 1) + 1,
                size: buffer.size_bytes(),
                memory: memory.clone(),
                late: buffer.late(),
            },
        );
        let lake = self.lake.clone();
        let writer = self.writer_id.clone();
        let advisor = self.advisor.clone();
        let file_bytes = self.file_bytes.clone();
        let route = self.dead_letter.clone();
        let rejects = buffer.take_rejects();
        let may_exist = !self.dead_letter_settled.remove(tp);
        let finishing = self.finishing.clone();
        let task = tokio::spawn({
            let tp = tp.clone();
            async move {
                // The semaphore is never closed.
                let permit = finishing.acquire_owned().await;
                let encoded = tokio::task::spawn_blocking({
                    let tp = tp.clone();
                    let writer = writer.clone();
                    move || buffer.finish(&tp, &writer, &advisor, &file_bytes)
                })
                .await;
                drop(permit);
                let result = match encoded {
                    Ok(Ok(mut landing)) => {
                        let images = landing.files.iter().map(|f| f.bytes.len()).sum();
                        memory.store(images, Ordering::Relaxed);
                        match route_rejects(
                            route.as_deref(),
                            &log,
                            &writer,
                            rejects,
                            may_exist,
                            &mut landing,
                        )
                        .await
                        {
                            Ok(settles) => {
                                let landed = lake.land(&mut log, &writer, landing).await;
                                memory.store(0, Ordering::Relaxed);
                                landed
                                    .map(|record| (record, settles))
                                    .map_err(SinkError::from)
                            }
                            Err(e) => Err(e),
                        }
                    }
                    Ok(Err(e)) => Err(e),
                    Err(join) => Err(SinkError::Encode {
                        partition: tp.clone(),
                        first_offset: -1,
                        last_offset: -1,
                        message: format!("encoding task failed: {join}"),
                    }),
                };
                (log, result)
            }
        });
        // Reports even a panicked task, so that nothing waits for it forever.
        let outcomes = self.outcomes_tx.clone();
        let tp = tp.clone();
        tokio::spawn(async move {
            let outcome = task.await.map_err(|e| e.to_string());
            // The receiver lives as long as the sink; a dropped sink needs no answer.
            let _ = outcomes.send((tp, outcome));
        });
        Started::Running
    }

    /// Takes in one ended landing. `None` for a closed partition's.
    fn settle(
        &mut self,
        (tp, outcome): Outcome,
    ) -> Option<(TopicPartition, Result<Option<Landed>, SinkError>)> {
        if let Some(n) = self.abandoned.get_mut(&tp) {
            *n -= 1;
            if *n == 0 {
                self.abandoned.remove(&tp);
            }
            debug!(partition = %tp, "A closed partition's landing ended; its outcome is dropped.");
            return None;
        }
        let flight = self.in_flight.remove(&tp);
        let (log, result) = match outcome {
            Ok(o) => o,
            Err(panic) => panic!("landing task of {tp} panicked: {panic}"),
        };
        self.logs.insert(tp.clone(), log);
        let result = match result {
            Ok((record, settles)) => {
                self.restart_at.remove(&tp);
                if settles {
                    self.dead_letter_settled.insert(tp.clone());
                }
                let mut landed = record.to_landed();
                landed.late = flight.map_or(0, |f| f.late);
                Ok(Some(landed))
            }
            Err(e) => {
                // Rows buffered after the failed range cannot land before
                // it: the partition is re-read from its resume point.
                if let Some(b) = self.buffers.remove(&tp) {
                    debug!(partition = %tp, records = b.records, "Dropped the buffer after a failed landing.");
                }
                Err(e)
            }
        };
        Some((tp, result))
    }

    /// Takes in ended landings until none of `partitions` has one under way.
    async fn wait_for(&mut self, partitions: &[TopicPartition]) {
        while partitions
            .iter()
            .any(|tp| self.in_flight.contains_key(tp) || self.abandoned.contains_key(tp))
        {
            let Some(outcome) = self.outcomes.recv().await else {
                unreachable!("the sink holds a sender");
            };
            if let Some(result) = self.settle(outcome) {
                self.results.push_back(result);
            }
        }
    }

    /// Removes and returns the results not taken yet of these partitions.
    fn take_results(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Vec<(TopicPartition, Result<Option<Landed>, SinkError>)> {
        let (mine, others): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut self.results)
            .into_iter()
            .partition(|(tp, _)| partitions.contains(tp));
        self.results = others;
        Vec::from(mine)
    }

    fn is_due(&self, buffer: &PartitionBuffer, now: Instant) -> bool {
        let f = &self.cfg.flush;
        buffer.records >= f.max_records
            || buffer.size_bytes() as u64 >= f.max_bytes.0
            || now.duration_since(buffer.opened_at) >= f.max_age.0
    }
}

#[async_trait]
impl Sink for ParquetSink {
    async fn open(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, ResumeAt)>, SinkError> {
        // A landing of an earlier ownership may still be writing.
        self.wait_for(partitions).await;
        let recoveries = partitions.iter().map(|tp| {
            let lake = self.lake.clone();
            let writer = self.writer_id.clone();
            let tp = tp.clone();
            async move { lake.recover(&tp, &writer).await.map_err(SinkError::from) }
        });
        let logs = futures::future::try_join_all(recoveries).await?;
        let mut resume = Vec::with_capacity(logs.len());
        for log in logs {
            let tp = log.partition.clone();
            let at = match log.next_offset() {
                Some(o) => ResumeAt::Offset(o),
                None => ResumeAt::Default,
            };
            debug!(partition = %tp, next_seq = log.next_seq, resume = ?at, "Recovered partition.");
            self.buffers.remove(&tp);
            self.restart_at.remove(&tp);
            self.dead_letter_settled.remove(&tp);
            self.logs.insert(tp.clone(), log);
            resume.push((tp, at));
        }
        Ok(resume)
    }

    async fn write(&mut self, batch: RowBatch) -> Result<(), SinkError> {
        let tp = batch.partition.clone();
        if self.results.iter().any(|(t, r)| t == &tp && r.is_err()) {
            // A landing of it failed: it is about to be re-read from before
            // this batch.
            debug!(partition = %tp, first_offset = batch.first_offset, "Dropped a batch after a failed landing.");
            return Ok(());
        }
        let next = match (self.in_flight.get(&tp), self.logs.get(&tp)) {
            (Some(flight), _) => Some(flight.next),
            (None, Some(log)) => log.next_offset(),
            (None, None) => return Err(SinkError::NotOpen { partition: tp }),
        };
        if let Some(next) = next {
            if batch.last_offset < next {
                debug!(partition = %tp, last_offset = batch.last_offset, next, "Dropped a batch that is already landed.");
                return Ok(());
            }
            if batch.first_offset < next {
                // Its records before `next` are in a committed file already:
                // buffering them would land them twice.
                return Err(SinkError::Encode {
                    partition: tp,
                    first_offset: batch.first_offset,
                    last_offset: batch.last_offset,
                    message: format!(
                        "the batch reaches back into the landed range, which ends at {}",
                        next - 1
                    ),
                });
            }
        }
        let created = !self.buffers.contains_key(&tp);
        let keep_rejects = self.dead_letter.is_some();
        let start = next.unwrap_or(batch.first_offset);
        let image = self.file_bytes.load(Ordering::Relaxed);
        let buffer = self.buffers.entry(tp.clone()).or_insert_with(|| {
            let buffer =
                PartitionBuffer::new(start, Instant::now()).with_image_capacity(image + image / 4);
            if keep_rejects {
                buffer.keeping_rejects()
            } else {
                buffer
            }
        });
        let props = self.advisor.properties(&self.props);
        let late = self.late_data.as_ref().map(|l| (l, now_ms()));
        let result = buffer
            .append(batch, self.template.as_deref(), late, &props)
            .await;
        if result.is_err() && created {
            // Leave no empty buffer behind: it would come due and fail to land.
            self.buffers.remove(&tp);
        }
        result
    }

    fn due(&self, now: Instant) -> Vec<TopicPartition> {
        self.buffers
            .iter()
            .filter(|(_, b)| self.is_due(b, now))
            .map(|(tp, _)| tp.clone())
            .collect()
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.buffers
            .values()
            .map(|b| b.opened_at + self.cfg.flush.max_age.0)
            .min()
    }

    async fn land(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Vec<(TopicPartition, Result<Option<Landed>, SinkError>)> {
        // Background landings of these partitions first: their ranges come
        // before the buffers'.
        self.wait_for(partitions).await;
        let mut out = self.take_results(partitions);
        let mut started = Vec::with_capacity(partitions.len());
        for tp in partitions {
            match self.start_landing(tp) {
                Started::Running => started.push(tp.clone()),
                Started::Nothing if out.iter().any(|(t, _)| t == tp) => {}
                Started::Nothing => out.push((tp.clone(), Ok(None))),
                Started::NotOpen => out.push((
                    tp.clone(),
                    Err(SinkError::NotOpen {
                        partition: tp.clone(),
                    }),
                )),
            }
        }
        self.wait_for(&started).await;
        out.extend(self.take_results(&started));
        out
    }

    async fn land_in_background(&mut self, partitions: &[TopicPartition]) -> Vec<TopicPartition> {
        // The previous landings of these partitions end first: their buffers
        // were not meant to grow past the thresholds meanwhile. Their results
        // stay queued, ahead of the new ones.
        self.wait_for(partitions).await;
        let mut started = Vec::with_capacity(partitions.len());
        for tp in partitions {
            if self.logs.contains_key(tp) && matches!(self.start_landing(tp), Started::Running) {
                started.push(tp.clone());
            }
        }
        started
    }

    fn landing_in_background(&self) -> bool {
        !self.in_flight.is_empty() || !self.results.is_empty()
    }

    async fn background_landed(&mut self) -> (TopicPartition, Result<Option<Landed>, SinkError>) {
        loop {
            if let Some(result) = self.results.pop_front() {
                return result;
            }
            // Cancel-safe: an outcome received is settled before any await.
            let Some(outcome) = self.outcomes.recv().await else {
                unreachable!("the sink holds a sender");
            };
            if let Some(result) = self.settle(outcome) {
                return result;
            }
        }
    }

    fn resume_point(&self, partition: &TopicPartition) -> ResumeAt {
        match self.logs.get(partition).and_then(PartitionLog::next_offset) {
            Some(o) => ResumeAt::Offset(o),
            None => match self.restart_at.get(partition) {
                Some(o) => ResumeAt::Offset(*o),
                None => ResumeAt::Default,
            },
        }
    }

    fn close_partitions(&mut self, partitions: &[TopicPartition]) {
        for tp in partitions {
            if let Some(b) = self.buffers.remove(tp) {
                debug!(partition = %tp, records = b.records, "Dropped unlanded buffer.");
            }
            if self.in_flight.remove(tp).is_some() {
                *self.abandoned.entry(tp.clone()).or_default() += 1;
            }
            self.results.retain(|(t, _)| t != tp);
            self.logs.remove(tp);
            self.restart_at.remove(tp);
            self.dead_letter_settled.remove(tp);
        }
    }

    fn buffered(&self) -> Vec<TopicPartition> {
        let mut partitions: Vec<TopicPartition> = self
            .buffers
            .keys()
            .chain(self.in_flight.keys())
            .chain(self.results.iter().map(|(tp, _)| tp))
            .cloned()
            .collect();
        partitions.sort();
        partitions.dedup();
        partitions
    }

    fn buffered_bytes(&self) -> usize {
        self.buffers
            .values()
            .map(PartitionBuffer::size_bytes)
            .chain(self.in_flight.values().map(|f| f.size))
            .sum()
    }

    fn landing_bytes(&self) -> usize {
        self.in_flight
            .values()
            .map(|f| f.memory.load(Ordering::Relaxed))
            .sum()
    }

    fn buffered_bytes_by_partition(&self) -> Vec<(TopicPartition, usize)> {
        self.buffers
            .iter()
            .map(|(tp, b)| (tp.clone(), b.memory_bytes()))
            .collect()
    }
}

/// Hands a range's rejects to the dead-letter route (when there is one) and
/// records in `landing` where they are, before the landing's commit is
/// created. A range without rejects carries the previous commit's scan
/// start forward. Returns whether the partition is settled once the landing
/// succeeds (see `ParquetSink::dead_letter_settled`): a range without
/// rejects leaves it as it was.
async fn route_rejects(
    route: Option<&dyn DeadLetterRoute>,
    log: &PartitionLog,
    writer: &str,
    rejects: Vec<Reject>,
    may_exist: bool,
    landing: &mut Landing,
) -> Result<bool, SinkError> {
    let Some(route) = route else {
        return Ok(false);
    };
    let previous = log.last.as_ref().and_then(|c| c.dead_letter_topic.clone());
    if rejects.is_empty() {
        landing.dead_letter_topic = previous.as_ref().map(DeadLetterPositions::carried_forward);
        return Ok(!may_exist);
    }
    let count = rejects.len();
    let delivery = route
        .deliver(DeadLetterRequest {
            partition: log.partition.clone(),
            first_offset: landing.first_offset,
            last_offset: landing.last_offset,
            writer: writer.to_string(),
            rejects,
            previous,
            may_exist,
        })
        .await?;
    let positions = delivery.positions;
    if positions.offsets.len() != count {
        return Err(SinkError::DeadLetter {
            partition: log.partition.clone(),
            topic: positions.topic,
            first_offset: landing.first_offset,
            last_offset: landing.last_offset,
            message: format!(
                "the route returned {} positions for {count} rejects",
                positions.offsets.len()
            ),
            class: tributary_core::ErrorClass::Permanent,
        });
    }
    landing.dead_letter_topic = Some(positions);
    Ok(delivery.settled)
}

/// The worker's clock in milliseconds since the Unix epoch (the late-data
/// policy's "now").
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
