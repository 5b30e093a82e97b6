//! [`DatagenSource`]: the payload generator behind the [`Source`] trait.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tributary_config::DatagenSourceConfig;
use tributary_core::{
    ErrorClass, RawRecord, ResumeAt, Source, SourceBatch, SourceError, SourceEvent, TopicPartition,
};

use crate::payload::{order_event_time_ms, order_id, order_json, push_u64};

/// Global sequence number of the record at `offset` in partition `partition`
/// of a topic with `partitions` partitions: `offset * partitions + partition`.
///
/// Partition `p` holds exactly the sequence numbers `≡ p (mod partitions)`,
/// so ids are unique across partitions and the same after a restart.
pub fn seq_of(offset: i64, partitions: i32, partition: i32) -> u64 {
    offset as u64 * partitions as u64 + partition as u64
}

/// How many of the first `records` sequence numbers fall in `partition`
/// (those `< records` with `seq % partitions == partition`): the partition's
/// share of a bounded run, and so its end offset.
pub fn partition_share(records: u64, partitions: i32, partition: i32) -> u64 {
    let (n, p) = (partitions as u64, partition as u64);
    if records <= p {
        0
    } else {
        (records - p - 1) / n + 1
    }
}

/// Paces batches to at most `rate` records per second.
///
/// A token bucket written as a virtual schedule (GCRA): each batch of `n`
/// records moves `next_at` forward by `n / rate` seconds; idle time earns at
/// most [`Pacer::BURST`] of credit.
#[derive(Debug)]
struct Pacer {
    rate: f64,
    next_at: Instant,
}

impl Pacer {
    const BURST: Duration = Duration::from_millis(100);

    fn new(rate: u64) -> Self {
        Self {
            rate: rate as f64,
            next_at: Instant::now(),
        }
    }

    /// Books `n` records sent at `now`.
    fn consume(&mut self, n: usize, now: Instant) {
        let earliest = now.checked_sub(Self::BURST).unwrap_or(now);
        let base = self.next_at.max(earliest);
        self.next_at = base + Duration::from_secs_f64(n as f64 / self.rate);
    }
}

enum Phase {
    /// `Assigned` not yet emitted.
    Unassigned,
    /// `Assigned` emitted; waiting for resume positions.
    AwaitingAck(oneshot::Receiver<Vec<(TopicPartition, ResumeAt)>>),
    /// Generating.
    Running,
    /// The runtime dropped the assignment without answering.
    Closed,
}

/// A [`Source`] of synthetic orders ([`crate::order_json`]) built from a
/// [`DatagenSourceConfig`].
///
/// * The first [`Source::next`] emits [`SourceEvent::Assigned`] for partitions
///   `0..partitions` of `topic` and nothing is generated before the answer.
///   [`ResumeAt::Default`] starts a partition at offset 0.
/// * Then every `next` emits `Records` with one [`SourceBatch`] of up to
///   `batch_size` records, visiting partitions round-robin. Offsets of a
///   partition are consecutive from its resume point. The record at `offset`
///   of partition `p` is order [`seq_of`]`(offset, partitions, p)`: its key is
///   the decimal order id, its timestamp the order's event time.
/// * With `rate`, at most `rate` records per second leave the source (summed
///   over partitions), and a batch holds at most `max(1, rate / 10)` records
///   so that batches flow at least ten times a second. Waiting uses tokio
///   timers, never a busy loop.
/// * With `records`, partition `p` stops at offset
///   [`partition_share`]`(records, partitions, p)` and [`SourceEvent::End`]
///   follows once every partition has reached its share. After `End`, `next`
///   waits forever unless a [`Source::seek`] gives it more to do (it then emits
///   `Seeked`, the records, and `End` again).
/// * [`Source::commit`] only records the offsets ([`DatagenSource::committed`]).
/// * [`Source::seek`] repositions a partition; the next event is
///   [`SourceEvent::Seeked`].
///
/// `next` is cancel-safe: state changes only after its last await point.
pub struct DatagenSource {
    topic: Arc<str>,
    partitions: i32,
    seed: u64,
    batch_size: usize,
    /// End offset (exclusive) per partition, for bounded runs.
    ends: Option<Vec<i64>>,
    pacer: Option<Pacer>,
    phase: Phase,
    /// Next offset per partition.
    positions: Vec<i64>,
    committed: Vec<Option<i64>>,
    /// Partition to try first on the next batch.
    cursor: usize,
    pending: VecDeque<SourceEvent>,
    ended: bool,
}

impl fmt::Debug for DatagenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagenSource")
            .field("topic", &self.topic)
            .field("partitions", &self.partitions)
            .field("seed", &self.seed)
            .field("batch_size", &self.batch_size)
            .field("ends", &self.ends)
            .field("positions", &self.positions)
            .field("committed", &self.committed)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl DatagenSource {
    /// Builds the source. Fails with [`SourceError::Setup`] when `partitions`
    /// or `batch_size` is below 1 or `rate` is 0.
    pub fn new(config: &DatagenSourceConfig) -> Result<Self, SourceError> {
        let setup = |message: &str| SourceError::Setup {
            message: format!("datagen source {:?}: {message}", config.topic),
        };
        if config.partitions < 1 {
            return Err(setup("`partitions` must be at least 1"));
        }
        if config.batch_size < 1 {
            return Err(setup("`batch_size` must be at least 1"));
        }
        if config.rate == Some(0) {
            return Err(setup("`rate` must be at least 1 record per second"));
        }
        let n = config.partitions;
        let ends = config.records.map(|records| {
            (0..n)
                .map(|p| partition_share(records, n, p).min(i64::MAX as u64) as i64)
                .collect()
        });
        Ok(Self {
            topic: Arc::from(config.topic.as_str()),
            partitions: n,
            seed: config.seed,
            batch_size: config.batch_size,
            ends,
            pacer: config.rate.map(Pacer::new),
            phase: Phase::Unassigned,
            positions: vec![0; n as usize],
            committed: vec![None; n as usize],
            cursor: 0,
            pending: VecDeque::new(),
            ended: false,
        })
    }

    /// The topic-partitions this source serves.
    pub fn partitions(&self) -> Vec<TopicPartition> {
        (0..self.partitions)
            .map(|p| TopicPartition::new(self.topic.clone(), p))
            .collect()
    }

    /// Last offset recorded by [`Source::commit`] for `partition`.
    pub fn committed(&self, partition: i32) -> Option<i64> {
        self.committed.get(partition as usize).copied().flatten()
    }

    /// Next offset `partition` will deliver.
    pub fn position(&self, partition: i32) -> Option<i64> {
        self.positions.get(partition as usize).copied()
    }

    fn index_of(&self, tp: &TopicPartition) -> Option<usize> {
        (tp.topic == self.topic && (0..self.partitions).contains(&tp.partition))
            .then_some(tp.partition as usize)
    }

    fn remaining(&self, p: usize) -> i64 {
        match &self.ends {
            Some(ends) => (ends[p] - self.positions[p]).max(0),
            None => i64::MAX,
        }
    }

    /// The next partition, round-robin from the cursor, with records left.
    fn next_partition(&self) -> Option<usize> {
        let n = self.positions.len();
        (0..n)
            .map(|i| (self.cursor + i) % n)
            .find(|&p| self.remaining(p) > 0)
    }

    fn batch_len(&self, p: usize) -> usize {
        let mut len = self.batch_size;
        if let Some(pacer) = &self.pacer {
            len = len.min(((pacer.rate / 10.0) as usize).max(1));
        }
        len.min(usize::try_from(self.remaining(p)).unwrap_or(usize::MAX))
    }

    fn generate(&self, p: usize, len: usize) -> SourceBatch {
        let first = self.positions[p];
        let mut payloads = Vec::with_capacity(len * 256);
        let mut keys = Vec::with_capacity(len * 12);
        let mut ends = Vec::with_capacity(len);
        for i in 0..len {
            let seq = seq_of(first + i as i64, self.partitions, p as i32);
            order_json(seq, self.seed, &mut payloads);
            push_u64(&mut keys, order_id(seq) as u64);
            ends.push((keys.len(), payloads.len()));
        }
        let (payloads, keys) = (Bytes::from(payloads), Bytes::from(keys));
        let mut starts = (0, 0);
        let records = ends
            .into_iter()
            .enumerate()
            .map(|(i, (key_end, payload_end))| {
                let offset = first + i as i64;
                let seq = seq_of(offset, self.partitions, p as i32);
                let record = RawRecord {
                    offset,
                    timestamp_ms: Some(order_event_time_ms(seq, self.seed)),
                    key: Some(keys.slice(starts.0..key_end)),
                    payload: Some(payloads.slice(starts.1..payload_end)),
                    headers: Vec::new(),
                };
                starts = (key_end, payload_end);
                record
            })
            .collect();
        SourceBatch {
            partition: TopicPartition::new(self.topic.clone(), p as i32),
            records,
        }
    }
}

#[async_trait]
impl Source for DatagenSource {
    async fn next(&mut self) -> Result<SourceEvent, SourceError> {
        match &mut self.phase {
            Phase::Unassigned => {
                let (ack, rx) = oneshot::channel();
                self.phase = Phase::AwaitingAck(rx);
                return Ok(SourceEvent::Assigned {
                    partitions: self.partitions(),
                    ack,
                });
            }
            Phase::AwaitingAck(rx) => {
                // Cancel-safe: the receiver stays in `self` until it yields.
                let Ok(resume) = rx.await else {
                    self.phase = Phase::Closed;
                    return Err(SourceError::Closed);
                };
                for (tp, at) in resume {
                    if let Some(p) = self.index_of(&tp) {
                        self.positions[p] = match at {
                            ResumeAt::Offset(offset) => offset.max(0),
                            ResumeAt::Default => 0,
                        };
                    }
                }
                self.phase = Phase::Running;
            }
            Phase::Running => {}
            Phase::Closed => return Err(SourceError::Closed),
        }

        if let Some(event) = self.pending.pop_front() {
            return Ok(event);
        }
        let Some(p) = self.next_partition() else {
            if !self.ended {
                self.ended = true;
                return Ok(SourceEvent::End);
            }
            return std::future::pending().await;
        };
        let len = self.batch_len(p);
        if let Some(pacer) = &self.pacer {
            tokio::time::sleep_until(pacer.next_at).await;
        }
        // No await below: the batch is either fully emitted or not at all.
        if let Some(pacer) = &mut self.pacer {
            pacer.consume(len, Instant::now());
        }
        let batch = self.generate(p, len);
        self.positions[p] += len as i64;
        self.cursor = (p + 1) % self.positions.len();
        Ok(SourceEvent::Records(vec![batch]))
    }

    async fn commit(&mut self, offsets: &[(TopicPartition, i64)]) -> Result<(), SourceError> {
        for (tp, offset) in offsets {
            if let Some(p) = self.index_of(tp) {
                self.committed[p] = Some(*offset);
            }
        }
        Ok(())
    }

    async fn seek(&mut self, partition: &TopicPartition, offset: i64) -> Result<(), SourceError> {
        let Some(p) = self.index_of(partition) else {
            return Err(SourceError::Io {
                operation: format!("seek {partition} to {offset}"),
                source: "the datagen source does not serve this partition".into(),
                class: ErrorClass::Permanent,
            });
        };
        if !matches!(self.phase, Phase::Running) {
            return Err(SourceError::Io {
                operation: format!("seek {partition} to {offset}"),
                source: "the assignment has not been acknowledged yet".into(),
                class: ErrorClass::Permanent,
            });
        }
        let offset = offset.max(0);
        self.positions[p] = offset;
        self.ended = false;
        self.pending.push_back(SourceEvent::Seeked {
            partition: partition.clone(),
            offset,
        });
        Ok(())
    }

    async fn close(self: Box<Self>) {}
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use super::*;

    fn config(partitions: i32, records: Option<u64>, batch_size: usize) -> DatagenSourceConfig {
        DatagenSourceConfig {
            topic: "orders".into(),
            partitions,
            records,
            rate: None,
            batch_size,
            seed: 42,
        }
    }

    /// Answers the assignment with `resume` (missing partitions: `Default`).
    async fn assign(source: &mut DatagenSource, resume: &[(i32, i64)]) -> Vec<TopicPartition> {
        let SourceEvent::Assigned { partitions, ack } = source.next().await.unwrap() else {
            panic!("first event must be Assigned");
        };
        let answer = partitions
            .iter()
            .map(|tp| {
                let at = resume
                    .iter()
                    .find(|(p, _)| *p == tp.partition)
                    .map_or(ResumeAt::Default, |(_, o)| ResumeAt::Offset(*o));
                (tp.clone(), at)
            })
            .collect();
        ack.send(answer).unwrap();
        partitions
    }

    /// Drains a bounded source until `End`: records per partition, in order.
    async fn drain(source: &mut DatagenSource) -> BTreeMap<i32, Vec<RawRecord>> {
        let mut out: BTreeMap<i32, Vec<RawRecord>> = BTreeMap::new();
        loop {
            match source.next().await.unwrap() {
                SourceEvent::Records(batches) => {
                    for batch in batches {
                        assert!(!batch.records.is_empty());
                        out.entry(batch.partition.partition)
                            .or_default()
                            .extend(batch.records);
                    }
                }
                SourceEvent::End => return out,
                other => panic!("unexpected event {other:?}"),
            }
        }
    }

    fn id_of(record: &RawRecord) -> i64 {
        let payload: serde_json::Value =
            serde_json::from_slice(record.payload.as_ref().unwrap()).unwrap();
        payload["order_id"].as_i64().unwrap()
    }

    #[test]
    fn shares_cover_every_seq_once() {
        for partitions in 1..6 {
            for records in 0..40u64 {
                let total: u64 = (0..partitions)
                    .map(|p| partition_share(records, partitions, p))
                    .sum();
                assert_eq!(total, records, "{records} over {partitions}");
                for p in 0..partitions {
                    let share = partition_share(records, partitions, p);
                    let expected = (0..records)
                        .filter(|s| s % partitions as u64 == p as u64)
                        .count() as u64;
                    assert_eq!(share, expected);
                }
            }
        }
    }

    #[tokio::test]
    async fn bounded_run_assigns_then_delivers_every_id_once_then_ends() {
        let mut source = DatagenSource::new(&config(3, Some(1_000), 64)).unwrap();
        let assigned = assign(&mut source, &[]).await;
        assert_eq!(assigned, source.partitions());
        assert_eq!(assigned.len(), 3);

        let by_partition = drain(&mut source).await;
        let mut ids = HashSet::new();
        for (p, records) in &by_partition {
            assert_eq!(
                records.len() as u64,
                partition_share(1_000, 3, *p),
                "partition {p}"
            );
            for (i, record) in records.iter().enumerate() {
                assert_eq!(record.offset, i as i64, "offsets are consecutive from 0");
                let seq = seq_of(record.offset, 3, *p);
                let id = id_of(record);
                assert_eq!(id, order_id(seq));
                assert_eq!(
                    record.key.as_deref(),
                    Some(id.to_string().as_bytes()),
                    "keyed by id"
                );
                assert_eq!(record.timestamp_ms, Some(order_event_time_ms(seq, 42)));
                assert!(ids.insert(id));
            }
        }
        assert_eq!(ids.len(), 1_000);
        assert_eq!(ids.iter().copied().min(), Some(0));
        assert_eq!(ids.iter().copied().max(), Some(999));
    }

    #[tokio::test]
    async fn batches_go_round_robin_and_respect_batch_size() {
        let mut source = DatagenSource::new(&config(2, None, 10)).unwrap();
        assign(&mut source, &[]).await;
        let mut seen = Vec::new();
        for _ in 0..6 {
            let SourceEvent::Records(batches) = source.next().await.unwrap() else {
                panic!("expected records");
            };
            assert_eq!(batches.len(), 1);
            assert_eq!(batches[0].records.len(), 10);
            seen.push((batches[0].partition.partition, batches[0].first_offset()));
        }
        assert_eq!(
            seen,
            [
                (0, Some(0)),
                (1, Some(0)),
                (0, Some(10)),
                (1, Some(10)),
                (0, Some(20)),
                (1, Some(20))
            ]
        );
    }

    #[tokio::test]
    async fn resume_offsets_and_restarts_reproduce_the_same_records() {
        let mut first = DatagenSource::new(&config(2, Some(100), 7)).unwrap();
        assign(&mut first, &[]).await;
        let full = drain(&mut first).await;

        let mut second = DatagenSource::new(&config(2, Some(100), 7)).unwrap();
        assign(&mut second, &[(0, 30), (1, 50)]).await;
        let resumed = drain(&mut second).await;
        assert_eq!(resumed[&0], full[&0][30..]);
        assert!(
            !resumed.contains_key(&1),
            "partition 1 was already complete"
        );
        assert_eq!(second.position(1), Some(50));
    }

    #[tokio::test]
    async fn fewer_records_than_partitions() {
        let mut source = DatagenSource::new(&config(4, Some(2), 10)).unwrap();
        assign(&mut source, &[]).await;
        let out = drain(&mut source).await;
        assert_eq!(out.keys().copied().collect::<Vec<_>>(), [0, 1]);

        let mut empty = DatagenSource::new(&config(2, Some(0), 10)).unwrap();
        assign(&mut empty, &[]).await;
        assert!(matches!(empty.next().await.unwrap(), SourceEvent::End));
    }

    #[tokio::test]
    async fn seek_emits_seeked_then_rereads() {
        let mut source = DatagenSource::new(&config(1, Some(20), 5)).unwrap();
        let tp = assign(&mut source, &[]).await.remove(0);
        let all = drain(&mut source).await.remove(&0).unwrap();
        assert_eq!(all.len(), 20);

        source.seek(&tp, 12).await.unwrap();
        match source.next().await.unwrap() {
            SourceEvent::Seeked { partition, offset } => {
                assert_eq!((partition, offset), (tp.clone(), 12));
            }
            other => panic!("expected Seeked, got {other:?}"),
        }
        let again = drain(&mut source).await.remove(&0).unwrap();
        assert_eq!(again, all[12..]);

        let unknown = TopicPartition::new("orders", 7);
        assert!(source.seek(&unknown, 0).await.is_err());
    }

    #[tokio::test]
    async fn after_end_next_waits() {
        let mut source = DatagenSource::new(&config(1, Some(3), 5)).unwrap();
        assign(&mut source, &[]).await;
        drain(&mut source).await;
        let waited = tokio::time::timeout(Duration::from_millis(50), source.next()).await;
        assert!(waited.is_err(), "no event after End");
    }

    #[tokio::test]
    async fn commit_records_offsets() {
        let mut source = DatagenSource::new(&config(2, None, 5)).unwrap();
        let tps = assign(&mut source, &[]).await;
        source.commit(&[(tps[1].clone(), 17)]).await.unwrap();
        assert_eq!(source.committed(0), None);
        assert_eq!(source.committed(1), Some(17));
    }

    #[tokio::test]
    async fn dropped_assignment_closes_the_source() {
        let mut source = DatagenSource::new(&config(1, None, 5)).unwrap();
        let SourceEvent::Assigned { ack, .. } = source.next().await.unwrap() else {
            panic!("expected Assigned");
        };
        drop(ack);
        assert!(matches!(source.next().await, Err(SourceError::Closed)));
        assert!(matches!(source.next().await, Err(SourceError::Closed)));
    }

    #[tokio::test]
    async fn cancelled_next_loses_nothing() {
        let mut cfg = config(1, Some(60), 100);
        cfg.rate = Some(200); // batches of 20, one every 100 ms
        let mut source = DatagenSource::new(&cfg).unwrap();

        // Cancel while waiting for the assignment answer.
        let SourceEvent::Assigned { partitions, ack } = source.next().await.unwrap() else {
            panic!("expected Assigned");
        };
        assert!(
            tokio::time::timeout(Duration::from_millis(20), source.next())
                .await
                .is_err()
        );
        ack.send(vec![(partitions[0].clone(), ResumeAt::Default)])
            .unwrap();

        // Cancel repeatedly while the pacer holds batches back.
        let mut offsets = Vec::new();
        loop {
            match tokio::time::timeout(Duration::from_millis(15), source.next()).await {
                Err(_) => continue,
                Ok(event) => match event.unwrap() {
                    SourceEvent::Records(batches) => {
                        offsets.extend(batches[0].records.iter().map(|r| r.offset));
                    }
                    SourceEvent::End => break,
                    other => panic!("unexpected {other:?}"),
                },
            }
        }
        assert_eq!(offsets, (0..60).collect::<Vec<i64>>());
    }

    #[tokio::test]
    async fn rate_limits_records_per_second() {
        let mut cfg = config(2, Some(500), 1_000);
        cfg.rate = Some(1_000); // batches of 100, one every 100 ms
        let mut source = DatagenSource::new(&cfg).unwrap();
        assign(&mut source, &[]).await;
        let started = std::time::Instant::now();
        let mut sizes = Vec::new();
        loop {
            match source.next().await.unwrap() {
                SourceEvent::Records(batches) => sizes.push(batches[0].records.len()),
                SourceEvent::End => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        let elapsed = started.elapsed();
        // 250 records per partition, batches capped at rate / 10.
        assert_eq!(sizes, [100, 100, 100, 100, 50, 50]);
        // 500 records at 1000/s: the last batch leaves 450 ms after the first.
        assert!(elapsed >= Duration::from_millis(350), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    }

    #[test]
    fn rejects_bad_configs() {
        assert!(DatagenSource::new(&config(0, None, 10)).is_err());
        assert!(DatagenSource::new(&config(1, None, 0)).is_err());
        let mut cfg = config(1, None, 10);
        cfg.rate = Some(0);
        assert!(matches!(
            DatagenSource::new(&cfg),
            Err(SourceError::Setup { .. })
        ));
    }
}
