//! Bounded reading for `tributary backfill`: partitions assigned directly
//! (no consumer group, no rebalances), each read from a start offset up to a
//! fixed end offset, then [`SourceEvent::End`].
//!
//! Two halves:
//!
//! * [`resolve_ranges`] turns `--from`/`--until` bounds ([`Bound`]) into one
//!   [`PartitionRange`] per partition: `earliest` is the low watermark,
//!   `latest` the high watermark, a time is resolved with the broker's
//!   offsets-for-times lookup, explicit offsets are taken as they are. The
//!   end is fixed here, once, so a backfill terminates while producers keep
//!   writing.
//! * [`BoundedKafkaSource`] reads those ranges. Its first event is
//!   [`SourceEvent::Assigned`] for every partition, so the runtime answers
//!   with the lake's resume positions exactly as for a group assignment; a
//!   partition resumes at the lake's position when the lake holds anything
//!   for it (the commit log is one contiguous chain), else at the range's
//!   start. [`Source::commit`] records progress only: the source is not a
//!   group member and commits no group offset.
//!
//! Brokers without a time index (librdkafka's mock cluster answers every
//! timestamp lookup with "no such offset") are detected: when the lookup says
//! "after the last record" but the partition's last record is at or after
//! the time, the offset is found by a binary search over record timestamps
//! (assuming they grow with the offset, as the broker's own time index does).

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};
use tributary_config::KafkaSourceConfig;
use tributary_core::{
    ErrorClass, RawRecord, ResumeAt, Source, SourceBatch, SourceError, SourceEvent, TopicPartition,
};

use crate::client_config;
use crate::error::io_error;

/// How long one broker request of the range resolution may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a timestamp probe waits for a record to arrive.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a seek is retried while librdkafka is not ready for it.
const SEEK_RETRY_FOR: Duration = Duration::from_secs(10);

/// One end of a backfill range, as given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bound {
    /// The oldest retained record (`--from earliest`).
    Earliest,
    /// The high watermark at start-up (`--until latest`).
    Latest,
    /// The first offset whose record timestamp is at or after this time
    /// (milliseconds since the Unix epoch).
    Time(i64),
    /// Explicit offsets per partition number (of every topic of the
    /// pipeline). Partitions not listed are left out of the backfill.
    Offsets(BTreeMap<i32, i64>),
}

impl Bound {
    /// Parses `earliest`, `latest`, an RFC 3339 time, or `p:offset,...`.
    pub fn parse(text: &str) -> Result<Bound, String> {
        let t = text.trim();
        match t {
            "earliest" => return Ok(Bound::Earliest),
            "latest" => return Ok(Bound::Latest),
            _ => {}
        }
        if t.contains(':') && !t.contains(['T', 't']) {
            let mut offsets = BTreeMap::new();
            for part in t.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let (p, o) = part
                    .split_once(':')
                    .ok_or_else(|| format!("{part:?} is not partition:offset"))?;
                let p: i32 = p
                    .trim()
                    .parse()
                    .map_err(|_| format!("{part:?}: partition {p:?} is not a number"))?;
                let o: i64 = o
                    .trim()
                    .parse()
                    .map_err(|_| format!("{part:?}: offset {o:?} is not a number"))?;
                if p < 0 || o < 0 {
                    return Err(format!("{part:?}: partition and offset must be >= 0"));
                }
                if offsets.insert(p, o).is_some() {
                    return Err(format!("partition {p} is listed twice"));
                }
            }
            if offsets.is_empty() {
                return Err(format!("{text:?} lists no partition:offset"));
            }
            return Ok(Bound::Offsets(offsets));
        }
        chrono::DateTime::parse_from_rfc3339(t)
            .map(|d| Bound::Time(d.timestamp_millis()))
            .map_err(|e| {
                format!(
                    "{text:?} is neither earliest, latest, an RFC 3339 time \
                     (2024-05-01T00:00:00Z) nor partition:offset,...: {e}"
                )
            })
    }
}

/// The offsets one partition is backfilled over: `start..end` (end exclusive).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionRange {
    /// The partition.
    pub partition: TopicPartition,
    /// Low watermark at resolution time (oldest retained offset).
    pub low: i64,
    /// High watermark at resolution time (offset of the next record).
    pub high: i64,
    /// First offset to read.
    pub start: i64,
    /// One past the last offset to read; reading stops here.
    pub end: i64,
}

impl PartitionRange {
    /// Offsets in the range (an upper bound of its records: transaction
    /// markers and compacted-away keys take offsets without records).
    pub fn offsets(&self) -> i64 {
        (self.end - self.start).max(0)
    }
}

fn resolve_error(message: String) -> SourceError {
    SourceError::Setup { message }
}

/// Resolves the bounds into one range per partition of the configured
/// topics. Blocking: call it off the async runtime (`spawn_blocking`).
pub fn resolve_ranges(
    cfg: &KafkaSourceConfig,
    pipeline: &str,
    from: &Bound,
    until: &Bound,
) -> Result<Vec<PartitionRange>, SourceError> {
    if let Some(pattern) = cfg.topics.iter().find(|t| t.starts_with('^')) {
        return Err(resolve_error(format!(
            "backfill needs topic names, not patterns: `topics` holds {pattern:?}"
        )));
    }
    if matches!(from, Bound::Latest) {
        return Err(resolve_error(
            "--from latest would read nothing; use earliest, a time or offsets".into(),
        ));
    }
    if matches!(until, Bound::Earliest) {
        return Err(resolve_error(
            "--until earliest would read nothing; use latest, a time or offsets".into(),
        ));
    }
    let consumer: BaseConsumer = client_config::client_config(cfg, pipeline)?
        .create()
        .map_err(|e| resolve_error(format!("creating the Kafka consumer failed: {e}")))?;
    let mut out = Vec::new();
    let mut probe: Option<Probe> = None;
    for topic in &cfg.topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
            .map_err(|e| io_error(&format!("fetching metadata of topic {topic}"), e))?;
        let Some(t) = metadata.topics().first() else {
            return Err(resolve_error(format!("topic {topic:?} does not exist")));
        };
        if let Some(e) = t.error() {
            return Err(resolve_error(format!(
                "topic {topic:?}: {:?}",
                RDKafkaErrorCode::from(e)
            )));
        }
        let mut partitions: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        partitions.sort_unstable();
        if partitions.is_empty() {
            return Err(resolve_error(format!("topic {topic:?} has no partitions")));
        }
        for bound in [from, until] {
            if let Bound::Offsets(o) = bound {
                if let Some(p) = o.keys().find(|p| !partitions.contains(p)) {
                    return Err(resolve_error(format!(
                        "topic {topic:?} has no partition {p} (it has {})",
                        partitions.len()
                    )));
                }
            }
        }
        let selected: Vec<i32> = partitions
            .into_iter()
            .filter(|p| {
                [from, until].iter().all(|b| match b {
                    Bound::Offsets(o) => o.contains_key(p),
                    _ => true,
                })
            })
            .collect();
        for p in selected {
            let tp = TopicPartition::new(topic.as_str(), p);
            let (low, high) = consumer
                .fetch_watermarks(topic, p, REQUEST_TIMEOUT)
                .map_err(|e| io_error(&format!("fetching the watermarks of {tp}"), e))?;
            let start = match from {
                Bound::Earliest => low,
                Bound::Time(ms) => {
                    offset_for_time(&consumer, &mut probe, cfg, pipeline, &tp, *ms, low, high)?
                }
                Bound::Offsets(o) => o[&p],
                Bound::Latest => high,
            };
            let end = match until {
                Bound::Latest => high,
                Bound::Time(ms) => {
                    offset_for_time(&consumer, &mut probe, cfg, pipeline, &tp, *ms, low, high)?
                }
                Bound::Offsets(o) => o[&p],
                Bound::Earliest => low,
            };
            if start < low {
                return Err(resolve_error(format!(
                    "{tp}: --from offset {start} is no longer in the topic (oldest retained offset: {low})"
                )));
            }
            let end = end.min(high);
            if start > end {
                return Err(resolve_error(format!(
                    "{tp}: --from resolves to offset {start}, after --until's {end}"
                )));
            }
            out.push(PartitionRange {
                partition: tp,
                low,
                high,
                start,
                end,
            });
        }
    }
    Ok(out)
}

/// The first offset of `tp` whose record timestamp is `>= ms` (`high` when none).
#[allow(clippy::too_many_arguments)]
fn offset_for_time(
    consumer: &BaseConsumer,
    probe: &mut Option<Probe>,
    cfg: &KafkaSourceConfig,
    pipeline: &str,
    tp: &TopicPartition,
    ms: i64,
    low: i64,
    high: i64,
) -> Result<i64, SourceError> {
    if low >= high {
        return Ok(high);
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(ms))
        .map_err(|e| io_error("building an offsets-for-times request", e))?;
    let answer = consumer
        .offsets_for_times(tpl, REQUEST_TIMEOUT)
        .map_err(|e| io_error(&format!("looking up the offset of {tp} at {ms} ms"), e))?;
    let elem = answer.elements().into_iter().next().map(|e| e.offset());
    match elem {
        Some(Offset::Offset(o)) => return Ok(o.clamp(low, high)),
        Some(Offset::End) | None => {}
        Some(other) => {
            return Err(resolve_error(format!(
                "{tp}: the broker answered the time lookup with {other:?}"
            )))
        }
    }
    // "No record at or after the time": check with the last record, since
    // brokers without a time index give the same answer.
    if probe.is_none() {
        *probe = Some(Probe::new(cfg, pipeline)?);
    }
    let Some(probe) = probe.as_mut() else {
        return Err(resolve_error("no probe consumer".into()));
    };
    let (_, last_ts) = probe.at(tp, high - 1)?;
    if last_ts < ms {
        return Ok(high);
    }
    warn!(partition = %tp, time_ms = ms, "The broker cannot look offsets up by time; searching record timestamps.");
    // First offset whose record has ts >= ms, in [low, high].
    let (mut lo, mut hi) = (low, high);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let (found, ts) = probe.at(tp, mid)?;
        if found >= hi || ts >= ms {
            hi = mid;
        } else {
            lo = found + 1;
        }
    }
    Ok(lo)
}

/// Reads single records to learn their timestamps.
struct Probe {
    consumer: BaseConsumer,
}

impl Probe {
    fn new(cfg: &KafkaSourceConfig, pipeline: &str) -> Result<Probe, SourceError> {
        let mut config = client_config::client_config(cfg, pipeline)?;
        config
            .set("enable.partition.eof", "false")
            // One record is wanted: answer fetches at once.
            .set("fetch.wait.max.ms", "10");
        let consumer = config
            .create()
            .map_err(|e| resolve_error(format!("creating the Kafka consumer failed: {e}")))?;
        Ok(Probe { consumer })
    }

    /// Offset and timestamp of the first record of `tp` at or after `offset`.
    fn at(&mut self, tp: &TopicPartition, offset: i64) -> Result<(i64, i64), SourceError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(offset))
            .map_err(|e| io_error("building an assignment", e))?;
        self.consumer
            .assign(&tpl)
            .map_err(|e| io_error(&format!("assigning {tp}"), e))?;
        let deadline = Instant::now() + PROBE_TIMEOUT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.consumer.poll(left.min(Duration::from_millis(200))) {
                Some(Ok(m))
                    if m.topic() == &*tp.topic
                        && m.partition() == tp.partition
                        && m.offset() >= offset =>
                {
                    let ts = m.timestamp().to_millis().ok_or_else(|| {
                        resolve_error(format!(
                            "{tp} offset {}: the record has no timestamp",
                            m.offset()
                        ))
                    })?;
                    return Ok((m.offset(), ts));
                }
                Some(Ok(_)) | None => {}
                Some(Err(e)) => debug!(error = %e, "Consumer error while probing; retrying."),
            }
        }
        Err(resolve_error(format!(
            "{tp}: no record at or after offset {offset} arrived within {PROBE_TIMEOUT:?}"
        )))
    }
}

/// Where one partition of a running backfill stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BoundedPosition {
    /// Where reading started (the lake's resume point or the range start);
    /// `None` until the runtime answered the assignment.
    pub started_at: Option<i64>,
    /// One past the last offset delivered to the runtime.
    pub delivered_to: Option<i64>,
    /// One past the last offset the runtime reported landed.
    pub landed_to: Option<i64>,
    /// End of the range (exclusive).
    pub end: i64,
    /// Everything up to `end` has been delivered.
    pub done: bool,
}

/// Shared view of a [`BoundedKafkaSource`]'s partitions, for progress displays.
pub type BoundedProgress = Arc<Mutex<BTreeMap<TopicPartition, BoundedPosition>>>;

enum Command {
    Seek(TopicPartition, i64),
}

/// A [`Source`] reading fixed offset ranges of assigned partitions. See the
/// [module docs](self).
pub struct BoundedKafkaSource {
    events: mpsc::Receiver<SourceEvent>,
    commands: Option<std_mpsc::Sender<Command>>,
    failure: Arc<Mutex<Option<String>>>,
    progress: BoundedProgress,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for BoundedKafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundedKafkaSource").finish_non_exhaustive()
    }
}

impl BoundedKafkaSource {
    /// Creates the consumer and starts the poll thread; the first event is
    /// [`SourceEvent::Assigned`] for every range (empty ranges included, so
    /// the runtime recovers their logs too).
    pub fn start(
        cfg: &KafkaSourceConfig,
        pipeline: &str,
        ranges: Vec<PartitionRange>,
    ) -> Result<Self, SourceError> {
        let mut config = client_config::client_config(cfg, pipeline)?;
        // Reading below the retained range must fail, not jump silently.
        config.set("auto.offset.reset", "error");
        let consumer: BaseConsumer = config
            .create()
            .map_err(|e| resolve_error(format!("creating the Kafka consumer failed: {e}")))?;
        let progress: BoundedProgress = Arc::new(Mutex::new(
            ranges
                .iter()
                .map(|r| {
                    (
                        r.partition.clone(),
                        BoundedPosition {
                            end: r.end,
                            ..Default::default()
                        },
                    )
                })
                .collect(),
        ));
        let (tx, events) = mpsc::channel(4);
        let (commands, command_rx) = std_mpsc::channel();
        let failure = Arc::new(Mutex::new(None));
        let mut poller = Poller {
            consumer,
            ranges: ranges
                .into_iter()
                .map(|r| (r.partition.clone(), r))
                .collect(),
            tx,
            commands: command_rx,
            progress: progress.clone(),
            failure: failure.clone(),
            max_records: cfg.max_poll_records.max(1),
            poll_timeout: cfg.poll_timeout.0,
            pending: BTreeMap::new(),
            done: HashMap::new(),
        };
        let thread = thread::Builder::new()
            .name(format!("backfill-{pipeline}"))
            .spawn(move || poller.run())
            .map_err(|e| resolve_error(format!("starting the poll thread failed: {e}")))?;
        info!(pipeline, "Bounded Kafka source started.");
        Ok(Self {
            events,
            commands: Some(commands),
            failure,
            progress,
            thread: Some(thread),
        })
    }

    /// Per-partition positions, updated as records are delivered and landed.
    pub fn progress(&self) -> BoundedProgress {
        self.progress.clone()
    }
}

#[async_trait]
impl Source for BoundedKafkaSource {
    async fn next(&mut self) -> Result<SourceEvent, SourceError> {
        match self.events.recv().await {
            Some(event) => Ok(event),
            None => {
                let failure = self
                    .failure
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                Err(match failure {
                    Some(message) => SourceError::Io {
                        operation: "bounded read".into(),
                        source: message.into(),
                        class: ErrorClass::Permanent,
                    },
                    None => SourceError::Closed,
                })
            }
        }
    }

    async fn commit(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<(), SourceError> {
        // Not a group member: progress only. The lake is where a re-run resumes.
        let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        for (tp, offset) in offsets {
            if let Some(p) = progress.get_mut(tp) {
                p.landed_to = Some(p.landed_to.map_or(*offset, |l| l.max(*offset)));
            }
        }
        Ok(())
    }

    async fn seek(&mut self, partition: &TopicPartition, offset: i64) -> Result<(), SourceError> {
        self.commands
            .as_ref()
            .ok_or(SourceError::Closed)?
            .send(Command::Seek(partition.clone(), offset))
            .map_err(|_| SourceError::Closed)
    }

    async fn close(mut self: Box<Self>) {
        // Dropping the command sender and the receiver stops the thread.
        self.commands.take();
        self.events.close();
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

struct Poller {
    consumer: BaseConsumer,
    ranges: HashMap<TopicPartition, PartitionRange>,
    tx: mpsc::Sender<SourceEvent>,
    commands: std_mpsc::Receiver<Command>,
    progress: BoundedProgress,
    failure: Arc<Mutex<Option<String>>>,
    max_records: usize,
    poll_timeout: Duration,
    pending: BTreeMap<TopicPartition, Vec<RawRecord>>,
    /// Partition → done (everything below its end delivered).
    done: HashMap<TopicPartition, bool>,
}

impl Poller {
    fn fail(&self, message: String) {
        warn!(error = %message, "Bounded Kafka source failed.");
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
    }

    fn run(&mut self) {
        if let Err(message) = self.assign() {
            self.fail(message);
            return;
        }
        let mut ended = false;
        loop {
            match self.commands.try_recv() {
                Ok(Command::Seek(tp, offset)) => {
                    if let Err(message) = self.seek(tp, offset) {
                        self.fail(message);
                        return;
                    }
                    continue;
                }
                Err(std_mpsc::TryRecvError::Disconnected) => return,
                Err(std_mpsc::TryRecvError::Empty) => {}
            }
            if self.tx.is_closed() {
                return;
            }
            if self.done.values().all(|d| *d) {
                if !self.flush() {
                    return;
                }
                if !ended {
                    ended = true;
                    info!("Every partition reached its end offset.");
                    if self.tx.blocking_send(SourceEvent::End).is_err() {
                        return;
                    }
                }
                // Only seeks (after a lost landing race) can come now.
                match self.commands.recv_timeout(Duration::from_millis(200)) {
                    Ok(Command::Seek(tp, offset)) => {
                        if let Err(message) = self.seek(tp, offset) {
                            self.fail(message);
                            return;
                        }
                    }
                    Err(std_mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
                }
                continue;
            }
            // A seek after the end re-opened a partition: end again once it is read.
            ended = false;
            self.poll_batch();
            if !self.flush() {
                return;
            }
        }
    }

    /// Announces the partitions, waits for the runtime's resume positions,
    /// then assigns those with something left to read.
    fn assign(&mut self) -> Result<(), String> {
        let mut partitions: Vec<TopicPartition> = self.ranges.keys().cloned().collect();
        partitions.sort();
        let (ack, answer) = oneshot::channel();
        if self
            .tx
            .blocking_send(SourceEvent::Assigned {
                partitions: partitions.clone(),
                ack,
            })
            .is_err()
        {
            return Err("the runtime stopped before the assignment".into());
        }
        let resume = answer
            .blocking_recv()
            .map_err(|_| "the runtime dropped the assignment without answering".to_string())?;
        let resume: HashMap<TopicPartition, ResumeAt> = resume.into_iter().collect();
        let mut tpl = TopicPartitionList::new();
        for tp in &partitions {
            let range = &self.ranges[tp];
            let start = match resume.get(tp) {
                Some(ResumeAt::Offset(o)) => *o,
                Some(ResumeAt::Default) => range.start,
                None => {
                    // The runtime declined the partition.
                    self.done.insert(tp.clone(), true);
                    continue;
                }
            };
            let done = start >= range.end;
            self.done.insert(tp.clone(), done);
            {
                let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(p) = progress.get_mut(tp) {
                    p.started_at = Some(start);
                    p.delivered_to = Some(start);
                    p.done = done;
                }
            }
            info!(partition = %tp, start, end = range.end, done, "Backfill partition positioned.");
            if done {
                continue;
            }
            if start < range.low {
                return Err(format!(
                    "{tp}: resuming at offset {start} is impossible, the topic keeps offsets from {} on",
                    range.low
                ));
            }
            tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(start))
                .map_err(|e| format!("assigning {tp}: {e}"))?;
        }
        self.consumer
            .assign(&tpl)
            .map_err(|e| format!("assigning {partitions:?}: {e}"))
    }

    fn gathered(&self) -> usize {
        self.pending.values().map(Vec::len).sum()
    }

    fn poll_batch(&mut self) {
        let deadline = Instant::now() + self.poll_timeout;
        while self.gathered() < self.max_records {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            match self.consumer.poll(deadline - now) {
                None => {}
                Some(Ok(msg)) => {
                    let tp = TopicPartition::new(msg.topic(), msg.partition());
                    let Some(range) = self.ranges.get(&tp) else {
                        continue;
                    };
                    let end = range.end;
                    if self.done.get(&tp).copied().unwrap_or(true) {
                        continue;
                    }
                    let offset = msg.offset();
                    if offset < end {
                        self.pending.entry(tp.clone()).or_default().push(RawRecord {
                            offset,
                            timestamp_ms: msg.timestamp().to_millis(),
                            key: msg.key().map(Bytes::copy_from_slice),
                            payload: msg.payload().map(Bytes::copy_from_slice),
                            headers: crate::fetch::Polled::headers(&msg),
                        });
                    }
                    if offset + 1 >= end {
                        self.finish(&tp);
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => {
                    if matches!(e, KafkaError::MessageConsumptionFatal(_))
                        || e.rdkafka_error_code() == Some(RDKafkaErrorCode::OffsetOutOfRange)
                        || e.rdkafka_error_code() == Some(RDKafkaErrorCode::AutoOffsetReset)
                    {
                        self.fail(format!("consuming failed: {e}"));
                        self.done.values_mut().for_each(|d| *d = true);
                        self.pending.clear();
                        return;
                    }
                    warn!(error = %e, "Consumer error; librdkafka retries.");
                }
            }
        }
        self.check_positions();
    }

    /// Marks partitions done whose consumer position passed the end (the
    /// last offsets of the range held no record: transaction markers).
    fn check_positions(&mut self) {
        let Ok(positions) = self.consumer.position() else {
            return;
        };
        let mut reached = Vec::new();
        for e in positions.elements() {
            let tp = TopicPartition::new(e.topic(), e.partition());
            if let (Offset::Offset(pos), Some(range)) = (e.offset(), self.ranges.get(&tp)) {
                if pos >= range.end && !self.done.get(&tp).copied().unwrap_or(true) {
                    reached.push(tp);
                }
            }
        }
        drop(positions);
        for tp in reached {
            self.finish(&tp);
        }
    }

    fn finish(&mut self, tp: &TopicPartition) {
        self.done.insert(tp.clone(), true);
        debug!(partition = %tp, "Partition reached its end offset.");
        let mut tpl = TopicPartitionList::new();
        if tpl
            .add_partition_offset(&tp.topic, tp.partition, Offset::Invalid)
            .is_ok()
        {
            // Stops fetching past the end; a failure only costs bandwidth.
            let _ = self.consumer.pause(&tpl);
        }
    }

    /// Sends what was gathered; `false` when nobody listens any more.
    fn flush(&mut self) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        let batches: Vec<SourceBatch> = std::mem::take(&mut self.pending)
            .into_iter()
            .filter(|(_, r)| !r.is_empty())
            .map(|(partition, records)| SourceBatch { partition, records })
            .collect();
        {
            let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
            for b in &batches {
                if let (Some(p), Some(last)) = (progress.get_mut(&b.partition), b.last_offset()) {
                    p.delivered_to = Some(last + 1);
                    p.done = self.done.get(&b.partition).copied().unwrap_or(false);
                }
            }
        }
        self.tx.blocking_send(SourceEvent::Records(batches)).is_ok()
    }

    /// Re-reads a partition from `offset` after a lost or failed landing.
    fn seek(&mut self, tp: TopicPartition, offset: i64) -> Result<(), String> {
        let Some(range) = self.ranges.get(&tp) else {
            return Ok(());
        };
        let end = range.end;
        self.pending.remove(&tp);
        let was_done = self.done.get(&tp).copied().unwrap_or(true);
        if offset >= end {
            self.done.insert(tp.clone(), true);
            if !was_done {
                self.finish(&tp);
            }
        } else {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(&tp.topic, tp.partition, Offset::Offset(offset))
                .map_err(|e| format!("seeking {tp}: {e}"))?;
            if was_done {
                let _ = self.consumer.resume(&tpl);
            }
            let started = Instant::now();
            loop {
                let result = self
                    .consumer
                    .seek_partitions(tpl.clone(), Duration::from_secs(5))
                    .map(|r| r.elements().first().map_or(Ok(()), |e| e.error()));
                match result {
                    Ok(Ok(())) => break,
                    Ok(Err(e)) | Err(e) if started.elapsed() < SEEK_RETRY_FOR => {
                        debug!(partition = %tp, offset, error = %e, "Seek not possible yet; retrying.");
                        thread::sleep(Duration::from_millis(10));
                    }
                    Ok(Err(e)) | Err(e) => return Err(format!("seeking {tp} to {offset}: {e}")),
                }
            }
            self.done.insert(tp.clone(), false);
        }
        {
            let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(p) = progress.get_mut(&tp) {
                p.delivered_to = Some(offset);
                p.done = offset >= end;
            }
        }
        info!(partition = %tp, offset, "Backfill partition re-read after a lost landing.");
        let _ = self.flush();
        // The runtime may have stopped listening (the run ended); then the
        // seek only matters to a later pass, which starts from the lake.
        let _ = self.tx.blocking_send(SourceEvent::Seeked {
            partition: tp,
            offset,
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_parse() {
        assert_eq!(Bound::parse("earliest"), Ok(Bound::Earliest));
        assert_eq!(Bound::parse("latest"), Ok(Bound::Latest));
        assert_eq!(
            Bound::parse("2024-05-01T00:00:00Z"),
            Ok(Bound::Time(1_714_521_600_000))
        );
        assert_eq!(
            Bound::parse("2024-05-01T02:00:00+02:00"),
            Ok(Bound::Time(1_714_521_600_000))
        );
        assert_eq!(
            Bound::parse("0:10, 2:300"),
            Ok(Bound::Offsets(BTreeMap::from([(0, 10), (2, 300)])))
        );
    }

    #[test]
    fn bad_bounds_are_named() {
        for (text, needle) in [
            ("yesterday", "neither earliest"),
            ("0:x", "offset \"x\""),
            ("a:1", "partition \"a\""),
            ("0:1,0:2", "listed twice"),
            ("0:-1", "must be >= 0"),
        ] {
            let err = Bound::parse(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
