//! The worker-wide memory budget (`worker.memory_budget`).
//!
//! The budget is split four ways:
//!
//! * **sink buffers** — a quarter of it: the memory held by open Parquet files
//!   (encoded pages plus the in-progress row group) across every pipeline of
//!   the worker. A pipeline that finds the total over this limit lands its
//!   largest buffers early, down to three quarters of the limit (so it does
//!   not land a sliver after every batch), and stops reading its source while
//!   the total stays over the limit (other pipelines hold it, or its own
//!   buffers are cooling down after a failed landing);
//! * **landings** — another quarter: files encoded whole and being written
//!   and committed in the background. A buffer that is landed leaves the
//!   first part for this one. Reading pauses while landings hold more than
//!   their part, until some end; they are never picked to land early — they
//!   are landing already. With one part for both, partitions that filled
//!   their files together paused reading for every landing: `tributary
//!   bench` (W1 over 3 partitions, 512 MiB) paused 8 or 9 times per 10 M
//!   records, 0.3–0.4 s in all, the cores mostly idle while the files were
//!   written;
//! * **source queues** — an eighth, shared by the Kafka sources: each one's
//!   librdkafka prefetch queue (`queued.max.messages.kbytes`) gets half of its
//!   part (librdkafka counts payload bytes only; its per-message overhead and
//!   decompression buffers take about as much again), the other half covers
//!   the fetch in flight and the batches between the poll thread and the
//!   pipeline;
//! * **headroom** — the remaining three eighths: the process itself, decoded
//!   batches between converter and sink, and the allocator's fragmentation.
//!
//! A pipeline that stops reading pauses its source by backpressure: the
//! source's bounded event channel fills, its poll thread blocks, and
//! librdkafka stops fetching once its queue is full.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tributary_core::TopicPartition;

/// librdkafka's own default for `queued.max.messages.kbytes` (64 MiB): a
/// budget never raises the queue above it.
const LIBRDKAFKA_DEFAULT_QUEUE_KBYTES: u64 = 65_536;
/// Smallest queue a budget sets (1 MiB), so a tiny budget still fetches.
const MIN_QUEUE_KBYTES: u64 = 1_024;

/// A budget shared by every pipeline of a worker. Cheap to clone.
#[derive(Clone, Debug)]
pub struct MemoryBudget {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    total: u64,
    /// What each registered pipeline reported it holds.
    shares: Mutex<Vec<Arc<Held>>>,
}

/// What one pipeline holds, as last reported.
#[derive(Debug, Default)]
struct Held {
    /// In open sink buffers.
    buffers: AtomicUsize,
    /// In landings under way.
    landing: AtomicUsize,
}

impl MemoryBudget {
    /// A budget of `total` bytes.
    pub fn new(total: u64) -> Self {
        Self {
            inner: Arc::new(Inner {
                total,
                shares: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The whole budget, in bytes.
    pub fn total(&self) -> u64 {
        self.inner.total
    }

    /// Bytes all sink buffers together may hold: a quarter of the budget.
    /// Landings under way may hold as much again.
    pub fn sink_limit(&self) -> usize {
        usize::try_from(self.inner.total / 4).unwrap_or(usize::MAX)
    }

    /// The `queued.max.messages.kbytes` of each of `sources` Kafka sources:
    /// half of an equal part of an eighth of the budget, between 1 MiB and
    /// librdkafka's default of 64 MiB.
    pub fn kafka_queue_kbytes(&self, sources: usize) -> u64 {
        let part = self.inner.total / 8 / sources.max(1) as u64;
        (part / 2 / 1024).clamp(MIN_QUEUE_KBYTES, LIBRDKAFKA_DEFAULT_QUEUE_KBYTES)
    }

    /// Registers one pipeline; it reports its sink buffers and landings
    /// through the share.
    pub fn share(&self) -> BudgetShare {
        let held = Arc::new(Held::default());
        self.inner
            .shares
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(held.clone());
        BudgetShare {
            budget: self.clone(),
            held,
        }
    }

    /// Bytes held in sink buffers and in landings by every pipeline, as last
    /// reported.
    pub fn used(&self) -> usize {
        let (buffers, landing) = self.held();
        buffers + landing
    }

    /// Bytes held in sink buffers, and in landings, by every pipeline.
    fn held(&self) -> (usize, usize) {
        self.inner
            .shares
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .fold((0, 0), |(b, l), h| {
                (
                    b + h.buffers.load(Ordering::Relaxed),
                    l + h.landing.load(Ordering::Relaxed),
                )
            })
    }
}

/// One pipeline's part in a [`MemoryBudget`].
#[derive(Debug)]
pub struct BudgetShare {
    budget: MemoryBudget,
    held: Arc<Held>,
}

impl BudgetShare {
    /// Records what this pipeline's sink holds now: in open buffers, and in
    /// landings under way.
    pub fn report(&self, buffers: usize, landing: usize) {
        self.held.buffers.store(buffers, Ordering::Relaxed);
        self.held.landing.store(landing, Ordering::Relaxed);
    }

    /// Bytes the other pipelines hold in sink buffers.
    pub fn others(&self) -> usize {
        self.budget
            .held()
            .0
            .saturating_sub(self.held.buffers.load(Ordering::Relaxed))
    }

    /// Whether all pipelines together hold more than the sink limit in
    /// buffers, or in landings.
    pub fn over(&self) -> bool {
        let (buffers, landing) = self.budget.held();
        let limit = self.budget.sink_limit();
        buffers > limit || landing > limit
    }

    /// The budget this share belongs to.
    pub fn budget(&self) -> &MemoryBudget {
        &self.budget
    }
}

impl Drop for BudgetShare {
    fn drop(&mut self) {
        // A stopped pipeline holds nothing any more.
        self.report(0, 0);
    }
}

/// Which buffers to land early: when `own` (this pipeline's landable buffers,
/// with their sizes) plus `others` exceeds `limit`, the largest of `own`
/// until the total is at most three quarters of `limit`. Empty when under
/// the limit.
pub fn early_flush(
    own: &[(TopicPartition, usize)],
    others: usize,
    limit: usize,
) -> Vec<TopicPartition> {
    let mut total = others + own.iter().map(|(_, b)| b).sum::<usize>();
    if total <= limit {
        return Vec::new();
    }
    let low_water = limit / 4 * 3;
    let mut by_size: Vec<&(TopicPartition, usize)> = own.iter().filter(|(_, b)| *b > 0).collect();
    // Largest first; ties in partition order, so the choice is deterministic.
    by_size.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut pick = Vec::new();
    for (tp, bytes) in by_size {
        if total <= low_water {
            break;
        }
        pick.push(tp.clone());
        total -= bytes;
    }
    pick
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("t", p)
    }

    #[test]
    fn nothing_is_flushed_under_the_limit() {
        let own = [(tp(0), 40), (tp(1), 50)];
        assert!(early_flush(&own, 10, 100).is_empty());
    }

    #[test]
    fn largest_buffers_go_first_down_to_the_low_water_mark() {
        // 30 + 50 + 25 + 5 = 110 > 100; low water is 75.
        let own = [(tp(0), 30), (tp(1), 50), (tp(2), 25), (tp(3), 5)];
        assert_eq!(early_flush(&own, 0, 100), vec![tp(1)]);
        // With 40 held elsewhere: 150 → without 50 → 100 → without 30 → 70.
        assert_eq!(early_flush(&own, 40, 100), vec![tp(1), tp(0)]);
    }

    #[test]
    fn everything_own_is_flushed_when_others_hold_the_budget() {
        let own = [(tp(0), 10), (tp(1), 0), (tp(2), 20)];
        // Empty buffers are never landed.
        assert_eq!(early_flush(&own, 200, 100), vec![tp(2), tp(0)]);
    }

    #[test]
    fn ties_are_broken_by_partition() {
        let own = [(tp(2), 60), (tp(1), 60)];
        assert_eq!(early_flush(&own, 0, 100), vec![tp(1)]);
    }

    #[test]
    fn shares_add_up_and_clear_when_dropped() {
        let budget = MemoryBudget::new(600);
        assert_eq!(budget.sink_limit(), 150);
        let a = budget.share();
        let b = budget.share();
        a.report(110, 0);
        b.report(30, 0);
        assert_eq!(budget.used(), 140);
        assert_eq!(a.others(), 30);
        assert!(!a.over());
        b.report(60, 0);
        assert!(a.over() && b.over());
        drop(a);
        assert_eq!(budget.used(), 60);
        assert!(!b.over());
    }

    #[test]
    fn landings_have_a_limit_of_their_own() {
        let budget = MemoryBudget::new(600);
        let a = budget.share();
        let b = budget.share();
        // Buffers and landings each under 150: 280 held, reading goes on.
        a.report(100, 90);
        b.report(40, 50);
        assert_eq!(budget.used(), 280);
        assert!(!a.over());
        // Landings are not buffers: they are never landed early.
        assert_eq!(a.others(), 40);
        // Landings over their limit pause reading, as buffers over theirs do.
        b.report(40, 61);
        assert!(a.over() && b.over());
        b.report(51, 0);
        assert!(a.over());
        b.report(50, 0);
        assert!(!a.over());
    }

    #[test]
    fn kafka_queues_take_half_of_their_eighth() {
        let gib = MemoryBudget::new(2 << 30);
        // 2 GiB / 8 / 2 = 128 MiB, capped at librdkafka's 64 MiB default.
        assert_eq!(gib.kafka_queue_kbytes(1), 65_536);
        let small = MemoryBudget::new(512 << 20);
        // 512 MiB / 8 / 2 sources / 2 = 16 MiB.
        assert_eq!(small.kafka_queue_kbytes(2), 16_384);
        assert_eq!(MemoryBudget::new(1 << 20).kafka_queue_kbytes(1), 1_024);
    }
}
