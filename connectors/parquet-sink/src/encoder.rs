//! Parquet encoding off the pipeline's thread.
//!
//! Each source partition's buffer hands its rows to an encoder thread of its
//! own, which owns the buffer's `ArrowWriter`s and encodes (dictionary,
//! pages, compression) while the pipeline converts the next records. On a
//! machine with more than one core, converting and encoding — the two
//! largest costs of the pipeline — then run side by side, and several
//! source partitions encode in parallel.
//!
//! Rows reach the thread in order through a bounded channel, so a pipeline
//! that converts faster than the thread encodes waits for it (backpressure)
//! rather than piling up rows. The thread publishes the writers' sizes after
//! every batch for the flush thresholds and the memory budget; rows waiting
//! in the channel count towards the memory budget too. A batch the writer
//! refuses is remembered with its offsets: the next append of the partition
//! and its landing fail with it, so nothing after it is landed.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

use arrow::array::RecordBatch;
use parquet::arrow::ArrowWriter;
use tokio::sync::{mpsc, watch};
use tributary_lake::Image;

/// Batches that may wait for one encoder thread.
const QUEUE: usize = 4;

/// A batch the encoder could not encode: its offsets and the reason.
#[derive(Clone, Debug)]
pub(crate) struct Failure {
    pub first_offset: i64,
    pub last_offset: i64,
    pub message: String,
}

enum Job {
    /// A new file; the thread keeps writers in the order they were opened.
    Open(Box<ArrowWriter<Image>>),
    /// Rows for the file at this index.
    Write {
        file: usize,
        rows: RecordBatch,
        first_offset: i64,
        last_offset: i64,
        /// Memory the rows hold, counted in [`Shared::queued`] until encoded.
        bytes: usize,
    },
}

struct Shared {
    /// Encoded bytes plus the estimated size of rows not yet in a row group.
    encoded: AtomicUsize,
    /// Memory the writers hold: file images and in-progress row groups.
    memory: AtomicUsize,
    /// Memory of rows sent but not yet encoded.
    queued: AtomicUsize,
    /// The buffer was dropped: remaining rows need no encoding.
    cancelled: AtomicBool,
    failure: Mutex<Option<Failure>>,
    /// Jobs the thread has handled; `u64::MAX` once it ended.
    done: watch::Sender<u64>,
}

impl Shared {
    fn failure(&self) -> Option<Failure> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The handle of one buffer's encoder thread.
pub(crate) struct Encoder {
    jobs: Option<mpsc::Sender<Job>>,
    /// Jobs sent to the thread.
    sent: AtomicU64,
    thread: Option<thread::JoinHandle<Vec<ArrowWriter<Image>>>>,
    shared: Arc<Shared>,
}

impl Encoder {
    /// Starts the thread.
    pub fn spawn() -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let shared = Arc::new(Shared {
            encoded: AtomicUsize::new(0),
            memory: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            cancelled: AtomicBool::new(false),
            failure: Mutex::new(None),
            done: watch::Sender::new(0),
        });
        let thread = thread::Builder::new()
            .name("tributary-encode".into())
            .spawn({
                let shared = shared.clone();
                move || {
                    let writers = encode(rx, &shared);
                    shared.done.send_replace(u64::MAX);
                    writers
                }
            })?;
        Ok(Self {
            jobs: Some(tx),
            sent: AtomicU64::new(0),
            thread: Some(thread),
            shared,
        })
    }

    /// Adds a file; later [`Encoder::write`]s name it by its position.
    pub async fn open(&self, writer: ArrowWriter<Image>) -> Result<(), Failure> {
        self.send(Job::Open(Box::new(writer)), -1, -1).await
    }

    /// Queues rows of offsets `first_offset..=last_offset` for a file,
    /// waiting while the thread is [`QUEUE`] batches behind.
    pub async fn write(
        &self,
        file: usize,
        rows: RecordBatch,
        first_offset: i64,
        last_offset: i64,
    ) -> Result<(), Failure> {
        if let Some(failure) = self.shared.failure() {
            return Err(failure);
        }
        let bytes = rows.get_array_memory_size();
        self.shared.queued.fetch_add(bytes, Ordering::Relaxed);
        let job = Job::Write {
            file,
            rows,
            first_offset,
            last_offset,
            bytes,
        };
        self.send(job, first_offset, last_offset).await
    }

    async fn send(&self, job: Job, first_offset: i64, last_offset: i64) -> Result<(), Failure> {
        let sent = match &self.jobs {
            Some(jobs) => jobs.send(job).await.is_ok(),
            None => false,
        };
        if sent {
            self.sent.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        Err(self.shared.failure().unwrap_or(Failure {
            first_offset,
            last_offset,
            message: "the encoder thread stopped".into(),
        }))
    }

    /// The first batch the thread failed to encode, if any.
    pub fn failure(&self) -> Option<Failure> {
        self.shared.failure()
    }

    /// Encoded bytes so far, the estimate for rows not yet in a row group,
    /// and the in-memory size of rows still waiting for the thread (more
    /// than they will take encoded: a buffer is due early rather than late).
    pub fn encoded_bytes(&self) -> usize {
        self.shared.encoded.load(Ordering::Relaxed) + self.shared.queued.load(Ordering::Relaxed)
    }

    /// Resolves once the thread has encoded every batch sent so far (or ended).
    pub async fn settled(&self) {
        let target = self.sent.load(Ordering::Relaxed);
        let mut done = self.shared.done.subscribe();
        // The sender lives in `shared`, which this handle holds: never closed.
        let _ = done.wait_for(|d| *d >= target).await;
    }

    /// Memory held by the writers and by rows waiting to be encoded.
    pub fn memory_bytes(&self) -> usize {
        self.shared.memory.load(Ordering::Relaxed) + self.shared.queued.load(Ordering::Relaxed)
    }

    /// Waits until every queued batch is encoded and returns the writers,
    /// in the order they were opened. Blocks: call it off the async runtime.
    pub fn join(mut self) -> Result<Vec<ArrowWriter<Image>>, Failure> {
        self.jobs = None;
        let thread = self.thread.take();
        let writers = match thread.map(thread::JoinHandle::join) {
            Some(Ok(writers)) => writers,
            Some(Err(_)) | None => {
                return Err(self.shared.failure().unwrap_or(Failure {
                    first_offset: -1,
                    last_offset: -1,
                    message: "the encoder thread panicked".into(),
                }))
            }
        };
        match self.shared.failure() {
            Some(failure) => Err(failure),
            None => Ok(writers),
        }
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        if self.thread.is_some() {
            // Dropped unlanded: the thread skips what is queued and ends.
            self.shared.cancelled.store(true, Ordering::Relaxed);
        }
    }
}

/// The thread: encodes jobs in order until the handle closes the channel.
fn encode(mut jobs: mpsc::Receiver<Job>, shared: &Shared) -> Vec<ArrowWriter<Image>> {
    let mut writers: Vec<ArrowWriter<Image>> = Vec::new();
    let mut failed = false;
    while let Some(job) = jobs.blocking_recv() {
        match job {
            Job::Open(writer) => {
                writers.push(*writer);
                publish(&writers, shared);
            }
            Job::Write {
                file,
                rows,
                first_offset,
                last_offset,
                bytes,
            } => {
                if !failed && !shared.cancelled.load(Ordering::Relaxed) {
                    let result = match writers.get_mut(file) {
                        Some(w) => w
                            .write(&rows)
                            .map_err(|e| format!("cannot encode rows: {e}")),
                        None => Err(format!("no file {file} to encode rows into")),
                    };
                    if let Err(message) = result {
                        failed = true;
                        *shared
                            .failure
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner) = Some(Failure {
                            first_offset,
                            last_offset,
                            message,
                        });
                    }
                }
                drop(rows);
                // Sizes first: until then the rows still count as queued.
                publish(&writers, shared);
                shared.queued.fetch_sub(bytes, Ordering::Relaxed);
            }
        }
        shared.done.send_modify(|d| *d += 1);
    }
    writers
}

/// Publishes the writers' sizes for the flush thresholds and the budget.
fn publish(writers: &[ArrowWriter<Image>], shared: &Shared) {
    let (encoded, memory) = writers.iter().fold((0, 0), |(e, m), w| {
        (
            e + w.bytes_written() + w.in_progress_size(),
            m + w.inner().capacity() + w.memory_size(),
        )
    });
    shared.encoded.store(encoded, Ordering::Relaxed);
    shared.memory.store(memory, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::Int64Array;
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn batch(values: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))]).unwrap()
    }

    fn writer() -> ArrowWriter<Image> {
        ArrowWriter::try_new(Image::default(), batch(&[]).schema(), None).unwrap()
    }

    #[tokio::test]
    async fn encodes_in_order_and_returns_the_writers() {
        let encoder = Encoder::spawn().unwrap();
        encoder.open(writer()).await.unwrap();
        encoder.open(writer()).await.unwrap();
        for i in 0..20 {
            encoder
                .write(i % 2, batch(&[i as i64]), i as i64, i as i64)
                .await
                .unwrap();
        }
        let writers = tokio::task::spawn_blocking(move || encoder.join())
            .await
            .unwrap()
            .unwrap();
        let rows: Vec<Vec<i64>> = writers
            .into_iter()
            .map(|w| {
                let bytes = w.into_inner().unwrap().into_bytes();
                let reader =
                    parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(bytes, 1024)
                        .unwrap();
                reader
                    .flat_map(|b| {
                        let b = b.unwrap();
                        let ids = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                        ids.values().to_vec()
                    })
                    .collect()
            })
            .collect();
        assert_eq!(rows[0], (0..20).step_by(2).collect::<Vec<i64>>());
        assert_eq!(rows[1], (1..20).step_by(2).collect::<Vec<i64>>());
    }

    #[tokio::test]
    async fn a_refused_batch_fails_the_next_write_and_the_join_with_its_offsets() {
        let encoder = Encoder::spawn().unwrap();
        encoder.open(writer()).await.unwrap();
        // Another schema than the file's: the writer refuses it.
        let other = Arc::new(Schema::new(vec![Field::new("name", DataType::Utf8, false)]));
        let wrong = RecordBatch::try_new(
            other,
            vec![Arc::new(arrow::array::StringArray::from(vec!["x"]))],
        )
        .unwrap();
        encoder.write(0, wrong, 7, 9).await.unwrap();
        // The thread reports the failure once it reached the batch.
        tokio::time::timeout(std::time::Duration::from_secs(10), encoder.settled())
            .await
            .expect("the thread reaches the batch");
        assert!(encoder.failure().is_some());
        let next = encoder.write(0, batch(&[10]), 10, 10).await.unwrap_err();
        assert_eq!((next.first_offset, next.last_offset), (7, 9));
        assert!(
            next.message.contains("cannot encode rows"),
            "{}",
            next.message
        );
        let joined = tokio::task::spawn_blocking(move || encoder.join())
            .await
            .unwrap();
        let Err(failure) = joined else {
            panic!("the join succeeded")
        };
        assert_eq!((failure.first_offset, failure.last_offset), (7, 9));
    }

    #[tokio::test]
    async fn sizes_are_published_and_queued_rows_are_released() {
        let encoder = Encoder::spawn().unwrap();
        encoder.open(writer()).await.unwrap();
        encoder
            .write(0, batch(&(0..10_000).collect::<Vec<_>>()), 0, 9_999)
            .await
            .unwrap();
        assert!(encoder.memory_bytes() > 0, "the queued rows count");
        assert!(encoder.encoded_bytes() > 0, "the queued rows count");
        tokio::time::timeout(std::time::Duration::from_secs(10), encoder.settled())
            .await
            .expect("the thread encodes the batch");
        assert_eq!(encoder.shared.queued.load(Ordering::Relaxed), 0);
        // 10,000 values buffered in the row group: far more than the magic bytes.
        assert!(
            encoder.encoded_bytes() > 1_000,
            "{}",
            encoder.encoded_bytes()
        );
        assert!(encoder.memory_bytes() > 1_000);
        let writers = tokio::task::spawn_blocking(move || encoder.join())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(writers.len(), 1);
    }
}
