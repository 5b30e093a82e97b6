//! Lag health per partition, judged over a sliding window the way Burrow
//! judges consumer groups: from the committed offset and the high watermark,
//! not from anything the worker says about itself.
//!
//! * **STOP**: lag > 0 and no offset committed for `stop_after` (counted from
//!   the assignment when nothing was committed since);
//! * **STALL**: lag > 0 at every sample of a full window while the committed
//!   offset did not move;
//! * **WARN**: over a full window the lag never went down and ended higher
//!   than it started;
//! * **OK** otherwise (also while the window is not yet full).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use tributary_core::TopicPartition;

use crate::status::LagStatus;

/// Window and thresholds of the lag health rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LagPolicy {
    /// Span over which lag growth and stalls are judged.
    pub window: Duration,
    /// A partition with lag that has not committed for this long is STOP.
    pub stop_after: Duration,
}

impl Default for LagPolicy {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(300),
            stop_after: Duration::from_secs(900),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Instant,
    committed: Option<i64>,
    lag: i64,
}

#[derive(Debug)]
struct Track {
    samples: VecDeque<Sample>,
    /// Last commit, or the assignment when nothing was committed since.
    last_progress: Instant,
}

/// Samples of every partition a pipeline holds.
#[derive(Debug, Default)]
pub(crate) struct LagTracker {
    policy: LagPolicy,
    tracks: HashMap<TopicPartition, Track>,
}

impl LagTracker {
    pub(crate) fn new(policy: LagPolicy) -> Self {
        Self {
            policy,
            tracks: HashMap::new(),
        }
    }

    /// The partition was assigned: its clock starts now.
    pub(crate) fn assigned(&mut self, tp: &TopicPartition, now: Instant) {
        self.tracks.insert(
            tp.clone(),
            Track {
                samples: VecDeque::new(),
                last_progress: now,
            },
        );
    }

    /// The partition went away.
    pub(crate) fn released(&mut self, tp: &TopicPartition) {
        self.tracks.remove(tp);
    }

    /// An offset was committed for the partition.
    pub(crate) fn committed(&mut self, tp: &TopicPartition, now: Instant) {
        if let Some(t) = self.tracks.get_mut(tp) {
            t.last_progress = now;
        }
    }

    /// Records a sample and judges the partition.
    pub(crate) fn observe(
        &mut self,
        tp: &TopicPartition,
        committed: Option<i64>,
        lag: i64,
        now: Instant,
    ) -> LagStatus {
        let policy = self.policy;
        let track = self.tracks.entry(tp.clone()).or_insert_with(|| Track {
            samples: VecDeque::new(),
            last_progress: now,
        });
        track.samples.push_back(Sample {
            at: now,
            committed,
            lag,
        });
        // Keep one sample at or before the window's start as its anchor.
        while track.samples.len() > 1 && now.duration_since(track.samples[1].at) >= policy.window {
            track.samples.pop_front();
        }
        judge(track, policy, now)
    }
}

fn judge(track: &Track, policy: LagPolicy, now: Instant) -> LagStatus {
    let Some(last) = track.samples.back() else {
        return LagStatus::Ok;
    };
    if last.lag > 0 && now.duration_since(track.last_progress) >= policy.stop_after {
        return LagStatus::Stop;
    }
    let first = track.samples[0];
    let covered = now.duration_since(first.at) >= policy.window && track.samples.len() > 1;
    if !covered {
        return LagStatus::Ok;
    }
    if track
        .samples
        .iter()
        .all(|s| s.lag > 0 && s.committed == first.committed)
    {
        return LagStatus::Stall;
    }
    let never_down = track
        .samples
        .iter()
        .zip(track.samples.iter().skip(1))
        .all(|(a, b)| b.lag >= a.lag);
    if never_down && last.lag > first.lag {
        return LagStatus::Warn;
    }
    LagStatus::Ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp() -> TopicPartition {
        TopicPartition::new("t", 0)
    }

    fn tracker(window: u64, stop_after: u64) -> LagTracker {
        LagTracker::new(LagPolicy {
            window: Duration::from_secs(window),
            stop_after: Duration::from_secs(stop_after),
        })
    }

    #[test]
    fn no_lag_is_ok() {
        let mut t = tracker(10, 30);
        let start = Instant::now();
        t.assigned(&tp(), start);
        for i in 0..40 {
            let s = t.observe(&tp(), Some(100), 0, start + Duration::from_secs(i));
            assert_eq!(s, LagStatus::Ok, "at {i}s");
        }
    }

    #[test]
    fn growing_lag_while_committing_is_warn() {
        let mut t = tracker(10, 300);
        let start = Instant::now();
        t.assigned(&tp(), start);
        let mut last = LagStatus::Ok;
        for i in 0..15u64 {
            let now = start + Duration::from_secs(i);
            t.committed(&tp(), now);
            last = t.observe(&tp(), Some(i as i64 * 10), 5 + i as i64, now);
            if i < 10 {
                assert_eq!(last, LagStatus::Ok, "window not yet full at {i}s");
            }
        }
        assert_eq!(last, LagStatus::Warn);
        // Lag going down once in the window clears it after the window passes.
        let now = start + Duration::from_secs(15);
        assert_eq!(t.observe(&tp(), Some(300), 1, now), LagStatus::Ok);
    }

    #[test]
    fn committed_offset_not_moving_with_lag_is_stall_then_stop() {
        let mut t = tracker(10, 30);
        let start = Instant::now();
        t.assigned(&tp(), start);
        let at = |s| start + Duration::from_secs(s);
        assert_eq!(t.observe(&tp(), Some(7), 3, at(0)), LagStatus::Ok);
        assert_eq!(t.observe(&tp(), Some(7), 3, at(5)), LagStatus::Ok);
        assert_eq!(t.observe(&tp(), Some(7), 3, at(10)), LagStatus::Stall);
        assert_eq!(t.observe(&tp(), Some(7), 3, at(29)), LagStatus::Stall);
        assert_eq!(t.observe(&tp(), Some(7), 3, at(30)), LagStatus::Stop);
        // A commit brings it back.
        t.committed(&tp(), at(31));
        assert_eq!(t.observe(&tp(), Some(10), 0, at(31)), LagStatus::Ok);
    }

    #[test]
    fn released_partitions_forget_their_samples() {
        let mut t = tracker(1, 2);
        let start = Instant::now();
        t.assigned(&tp(), start);
        t.observe(&tp(), None, 5, start);
        t.released(&tp());
        t.assigned(&tp(), start + Duration::from_secs(10));
        let s = t.observe(&tp(), None, 5, start + Duration::from_secs(10));
        assert_eq!(s, LagStatus::Ok);
    }
}
