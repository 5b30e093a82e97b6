//! # tributary-parquet-sink
//!
//! The Parquet sink: it buffers Arrow rows per source partition, split by
//! time partition (`partition_by`), encoding them into in-memory Parquet
//! writers as they arrive, and lands a source partition's buffers together —
//! one Parquet file per time partition plus a dead-letter file when records
//! were rejected — through the landing protocol of [`tributary_lake`].
//!
//! A source partition is landed when its buffers reach `flush.max_records`
//! source records, `flush.max_bytes` bytes, or when its oldest buffered record
//! is `flush.max_age` old. All thresholds are per source partition.

#![warn(missing_docs)]

mod buffer;
mod encoding;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use parquet::file::properties::WriterProperties;
use tracing::debug;
use tributary_config::ParquetSinkConfig;
use tributary_core::{Landed, ResumeAt, RowBatch, Sink, SinkError, TopicPartition};
use tributary_lake::{Lake, PartitionLog, PartitionTemplate};

use crate::buffer::PartitionBuffer;
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
    template: Option<Arc<PartitionTemplate>>,
    logs: HashMap<TopicPartition, PartitionLog>,
    buffers: HashMap<TopicPartition, PartitionBuffer>,
    /// Where to re-read a partition whose unlanded buffer was dropped before
    /// anything of it was ever landed.
    restart_at: HashMap<TopicPartition, i64>,
}

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
        Ok(Self {
            lake,
            writer_id: tributary_lake::new_writer_id(worker_id),
            cfg: cfg.clone(),
            props,
            advisor: Arc::default(),
            template,
            logs: HashMap::new(),
            buffers: HashMap::new(),
            restart_at: HashMap::new(),
        })
    }

    /// The id this sink's files and commits carry.
    pub fn writer_id(&self) -> &str {
        &self.writer_id
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
            self.logs.insert(tp.clone(), log);
            resume.push((tp, at));
        }
        Ok(resume)
    }

    async fn write(&mut self, batch: RowBatch) -> Result<(), SinkError> {
        let tp = batch.partition.clone();
        let Some(log) = self.logs.get(&tp) else {
            return Err(SinkError::NotOpen { partition: tp });
        };
        let next = log.next_offset();
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
        let start = next.unwrap_or(batch.first_offset);
        let buffer = self
            .buffers
            .entry(tp.clone())
            .or_insert_with(|| PartitionBuffer::new(start, Instant::now()));
        let props = self.advisor.properties(&self.props);
        let result = buffer.append(batch, self.template.as_deref(), &props);
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
        let mut out = Vec::with_capacity(partitions.len());
        let mut tasks = Vec::new();
        for tp in partitions {
            let Some(buffer) = self.buffers.remove(tp) else {
                out.push((tp.clone(), Ok(None)));
                continue;
            };
            let Some(mut log) = self.logs.remove(tp) else {
                out.push((
                    tp.clone(),
                    Err(SinkError::NotOpen {
                        partition: tp.clone(),
                    }),
                ));
                continue;
            };
            if log.next_offset().is_none() {
                self.restart_at.insert(tp.clone(), buffer.range_start);
            }
            let lake = self.lake.clone();
            let writer = self.writer_id.clone();
            let advisor = self.advisor.clone();
            let tp = tp.clone();
            tasks.push(tokio::spawn(async move {
                let encoded = tokio::task::spawn_blocking({
                    let tp = tp.clone();
                    let writer = writer.clone();
                    move || buffer.finish(&tp, &writer, &advisor)
                })
                .await;
                let result = match encoded {
                    Ok(Ok(landing)) => lake
                        .land(&mut log, &writer, landing)
                        .await
                        .map_err(SinkError::from),
                    Ok(Err(e)) => Err(e),
                    Err(join) => Err(SinkError::Encode {
                        partition: tp.clone(),
                        first_offset: -1,
                        last_offset: -1,
                        message: format!("encoding task failed: {join}"),
                    }),
                };
                (tp, log, result)
            }));
        }
        for task in tasks {
            let (tp, log, result) = match task.await {
                Ok(r) => r,
                Err(e) => panic!("landing task panicked: {e}"),
            };
            let result = result.map(|record| {
                self.restart_at.remove(&tp);
                Some(record.to_landed())
            });
            self.logs.insert(tp.clone(), log);
            out.push((tp, result));
        }
        out
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
            self.logs.remove(tp);
            self.restart_at.remove(tp);
        }
    }

    fn buffered(&self) -> Vec<TopicPartition> {
        self.buffers.keys().cloned().collect()
    }

    fn buffered_bytes(&self) -> usize {
        self.buffers.values().map(PartitionBuffer::size_bytes).sum()
    }

    fn buffered_bytes_by_partition(&self) -> Vec<(TopicPartition, usize)> {
        self.buffers
            .iter()
            .map(|(tp, b)| (tp.clone(), b.memory_bytes()))
            .collect()
    }
}
