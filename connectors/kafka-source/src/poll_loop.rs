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

use crate::context::{Shared, SourceContext};
use crate::error::PollFailure;

/// How long one seek call waits for librdkafka to carry it out.
const SEEK_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a seek is retried while the partition is not fetching yet
/// (just assigned: its start offset is still being looked up).
const SEEK_RETRY_FOR: Duration = Duration::from_secs(10);
const SEEK_RETRY_PAUSE: Duration = Duration::from_millis(10);
/// Messages taken between looks at commands, the stop flag and the clock.
const CHECK_EVERY: u32 = 64;

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
struct ExitGuard<'a>(&'a Shared);

impl Drop for ExitGuard<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.fail(PollFailure::Panicked);
        }
        self.0.close_channel();
    }
}

/// Runs until closed, failed, or nobody receives events any more.
pub(crate) fn run(
    consumer: &BaseConsumer<SourceContext>,
    shared: &Shared,
    commands: Receiver<Command>,
    limits: Limits,
) {
    let _guard = ExitGuard(shared);
    let max_records = limits.max_records.max(1);
    'outer: loop {
        let deadline = Instant::now() + limits.poll_timeout;
        // Messages usually wait in librdkafka's queue: they are taken
        // without a timeout, and commands, the stop flag and the clock are
        // looked at every `CHECK_EVERY` messages and whenever the queue is
        // empty, rather than for every message.
        let mut since_check = CHECK_EVERY;
        let mut idle = false;
        loop {
            if idle || since_check >= CHECK_EVERY {
                since_check = 0;
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
                if shared.pending().len() >= max_records {
                    break;
                }
            }
            // Waits only when the queue was empty; the clock is read then
            // and right after a check.
            let mut wait = Duration::ZERO;
            if idle || since_check == 0 {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                if idle {
                    wait = deadline - now;
                }
            }
            // Rebalance callbacks run inside this call, on this thread.
            let polled = consumer.poll(wait);
            since_check += 1;
            idle = polled.is_none();
            match polled {
                None => {}
                Some(Ok(msg)) => {
                    let mut pending = shared.pending();
                    pending.push(&msg);
                    if pending.len() >= max_records {
                        break;
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e @ KafkaError::MessageConsumptionFatal(_))) => {
                    shared.fail(PollFailure::Fatal(e));
                    break 'outer;
                }
                Some(Err(e)) => warn!(error = %e, "Consumer error; librdkafka retries."),
            }
        }
        if !shared.flush() {
            debug!("Event receiver gone; stopping the poll thread.");
            break;
        }
    }
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
    done: tokio::sync::oneshot::Sender<()>,
) -> std::io::Result<thread::JoinHandle<()>> {
    thread::Builder::new().name(name).spawn(move || {
        run(&consumer, &shared, commands, limits);
        drop(consumer);
        let _ = done.send(());
    })
}
