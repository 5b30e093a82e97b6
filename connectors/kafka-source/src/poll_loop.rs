//! The poll thread: gathers messages into batches, runs rebalance callbacks
//! (inside `poll`), and carries out seeks between polls.

use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{debug, info, warn};
use tributary_core::{SourceEvent, TopicPartition};

use crate::context::{Gather, Shared, SourceContext};
use crate::error::PollFailure;
use crate::fetch::{FetchQueue, Polled, Waker};

/// How long one seek call waits for librdkafka to carry it out.
const SEEK_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a seek is retried while the partition is not fetching yet
/// (just assigned: its start offset is still being looked up).
const SEEK_RETRY_FOR: Duration = Duration::from_secs(10);
const SEEK_RETRY_PAUSE: Duration = Duration::from_millis(10);

/// What the async side asks the poll thread to do.
#[derive(Debug)]
pub(crate) enum Command {
    /// Reposition a partition and answer with [`SourceEvent::Seeked`].
    Seek {
        partition: TopicPartition,
        offset: i64,
        /// Rebalance epoch when the runtime asked.
        epoch: u64,
    },
    /// Leave the loop.
    Stop,
}

/// Batch limits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_records: usize,
    pub(crate) poll_timeout: Duration,
}

/// Takes the event sender away when the thread ends, however it ends, so
/// that `next()` sees the channel close and reports the failure, if any.
/// Also drops the fetch queue, which holds the consumer.
struct ExitGuard<'a>(&'a Shared);

impl Drop for ExitGuard<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.fail(PollFailure::Panicked);
        }
        drop(self.0.fetch().take());
        self.0.close_channel();
    }
}

/// Runs until closed, failed, or nobody receives events any more.
///
/// Each round serves the consumer queue first (rebalances, errors, and
/// messages of partitions not routed to the fetch queue), taking one
/// message at a time until it is empty, then takes a batch from the fetch
/// queue. The fetch queue is waited on only when both were empty; a
/// rebalance or error arriving meanwhile ends the wait.
pub(crate) fn run(
    consumer: &Arc<BaseConsumer<SourceContext>>,
    shared: &Shared,
    commands: Receiver<Command>,
    limits: Limits,
    waker: Arc<Waker>,
) {
    let _guard = ExitGuard(shared);
    *shared.fetch() = Some(FetchQueue::new(consumer.clone(), waker));
    let max_records = limits.max_records.max(1);
    'outer: loop {
        let deadline = Instant::now() + limits.poll_timeout;
        let mut idle = false;
        loop {
            loop {
                match commands.try_recv() {
                    Ok(Command::Seek {
                        partition,
                        offset,
                        epoch,
                    }) => {
                        if let Err(failure) = seek(consumer, shared, partition, offset, epoch) {
                            shared.fail(failure);
                        }
                    }
                    Ok(Command::Stop) | Err(TryRecvError::Disconnected) => break 'outer,
                    Err(TryRecvError::Empty) => break,
                }
            }
            if shared.stopped() {
                break 'outer;
            }
            let room = max_records.saturating_sub(shared.pending().len());
            if room == 0 {
                break;
            }
            // Rebalance callbacks run inside this call, on this thread.
            match consumer.poll(Duration::ZERO) {
                None => {}
                Some(polled) => {
                    if !take(shared, &mut shared.pending(), polled) {
                        break 'outer;
                    }
                    // Empty the consumer queue before the fetch queue: a
                    // partition's messages from before it was routed to the
                    // fetch queue come first. A partition that could not be
                    // routed sends its batches on time all the same.
                    idle = false;
                    if Instant::now() >= deadline {
                        break;
                    }
                    continue;
                }
            }
            let wait = if idle {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                deadline - now
            } else {
                Duration::ZERO
            };
            let mut ok = true;
            let taken = match shared.fetch().as_mut() {
                Some(fetch) => {
                    // Locked once for the whole take: only this thread
                    // gathers, and nothing in a take locks it again.
                    let mut pending = shared.pending();
                    fetch.take(wait, room, |m| {
                        ok &= take(shared, &mut pending, m);
                    })
                }
                None => 0,
            };
            if !ok {
                break 'outer;
            }
            if Instant::now() >= deadline {
                break;
            }
            idle = taken == 0;
        }
        if !shared.flush() {
            debug!("Event receiver gone; stopping the poll thread.");
            break;
        }
    }
}

/// Gathers one taken message, or deals with its error. Returns false when
/// the error is fatal (the source has failed).
fn take(shared: &Shared, pending: &mut Gather, msg: Result<impl Polled, KafkaError>) -> bool {
    match msg {
        Ok(msg) => pending.push(&msg),
        Err(KafkaError::PartitionEOF(_)) => {}
        Err(e @ KafkaError::MessageConsumptionFatal(_)) => {
            shared.fail(PollFailure::Fatal(e));
            return false;
        }
        Err(e) => warn!(error = %e, "Consumer error; librdkafka retries."),
    }
    true
}

/// Repositions `partition` at `offset`: drops records of the partition
/// gathered so far, seeks (librdkafka then discards messages fetched before
/// the seek), sends what was gathered for other partitions, then
/// [`SourceEvent::Seeked`].
fn seek(
    consumer: &BaseConsumer<SourceContext>,
    shared: &Shared,
    partition: TopicPartition,
    offset: i64,
    epoch: u64,
) -> Result<(), PollFailure> {
    if epoch != shared.epoch() {
        // A rebalance happened after the runtime asked; the runtime has since
        // been told (Revoked/Lost/Assigned) and chose positions afresh.
        info!(partition = %partition, offset, "Seek dropped: a rebalance happened since it was requested.");
        return Ok(());
    }
    if !shared.is_assigned(&partition) {
        // Revoked or lost since the runtime asked; it has been told so.
        warn!(partition = %partition, offset, "Seek ignored: the partition is not assigned to this consumer.");
        return Ok(());
    }
    shared.discard_pending(&partition);
    let started = Instant::now();
    loop {
        match seek_once(consumer, &partition, offset) {
            Ok(()) => break,
            Err(e) if retry_seek(&e) && started.elapsed() < SEEK_RETRY_FOR => {
                if shared.is_closing() {
                    return Ok(());
                }
                thread::sleep(SEEK_RETRY_PAUSE);
            }
            Err(source) => {
                return Err(PollFailure::Seek {
                    partition,
                    offset,
                    source,
                })
            }
        }
    }
    debug!(partition = %partition, offset, "Seeked.");
    shared.flush();
    shared.send(SourceEvent::Seeked { partition, offset });
    Ok(())
}

fn seek_once(
    consumer: &BaseConsumer<SourceContext>,
    partition: &TopicPartition,
    offset: i64,
) -> Result<(), KafkaError> {
    let mut tpl = TopicPartitionList::with_capacity(1);
    tpl.add_partition_offset(
        &partition.topic,
        partition.partition,
        Offset::Offset(offset),
    )?;
    let result = consumer.seek_partitions(tpl, SEEK_CALL_TIMEOUT)?;
    // Drop the returned list before returning: a list the consumer returned
    // must not outlive it.
    let outcome = result.elements().first().map_or(Ok(()), |e| e.error());
    drop(result);
    outcome
}

/// librdkafka refuses a seek with "Erroneous state" until the partition has
/// started fetching; that, and timeouts, pass.
fn retry_seek(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::State
                | RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::TimedOutQueue
                | RDKafkaErrorCode::PreviousInProgress
        )
    )
}

/// Spawns the poll thread. It owns a clone of the consumer; when it ends it
/// drops it (if it holds the last reference, that leaves the group) and
/// then signals `done`.
pub(crate) fn spawn(
    name: String,
    consumer: Arc<BaseConsumer<SourceContext>>,
    shared: Arc<Shared>,
    commands: Receiver<Command>,
    limits: Limits,
    waker: Arc<Waker>,
    done: tokio::sync::oneshot::Sender<()>,
) -> std::io::Result<thread::JoinHandle<()>> {
    thread::Builder::new().name(name).spawn(move || {
        run(&consumer, &shared, commands, limits, waker);
        drop(consumer);
        let _ = done.send(());
    })
}
