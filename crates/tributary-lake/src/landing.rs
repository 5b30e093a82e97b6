//! The landing protocol: how a writer makes a range of source offsets
//! durable exactly once, using nothing but put, create-if-absent, get, list
//! and delete.
//!
//! # Invariant
//!
//! For every (sink, topic, partition) the committed files cover one
//! contiguous offset range without overlap; every record with an offset in
//! that range is in exactly one committed file (or the dead-letter route, or
//! counted as skipped); no committed file is rewritten. Offsets that hold no
//! record (transaction markers, compacted keys) are inside the range, not
//! gaps in it.
//!
//! # Layout (relative to the lake root)
//!
//! ```text
//! _tributary/commits/<topic>/<partition>/<seq:020>.json        CommitRecord, create-if-absent
//! _tributary/commits/<topic>/<partition>/_latest.json          {"seq": n}, best-effort hint
//! _tributary/intents/<topic>/<partition>/<seq:020>-<writer>.json  IntentRecord
//! ```
//!
//! Commit records are named by **sequence number**, not by first offset (as
//! the design brief first proposed). Keyed by first offset, two writers that
//! started at different positions could both create a "first" commit with
//! different names and overlapping ranges. Keyed by sequence number, the log
//! is a single chain: exactly one record can exist for each `seq`, and each
//! record's range starts at the previous record's `last_offset + 1` (the
//! first range-bearing record starts wherever its writer started).
//!
//! # Landing ([`Lake::land`])
//!
//! With the partition's log at `next_seq = s` and `next_offset = n`:
//!
//! 1. Check the landing starts at `n` (any offset if nothing has been landed).
//! 2. Put the intent `s-<writer>` naming every file about to be written.
//! 3. Put the files (local: temp file, fsync, rename, fsync dir; object
//!    stores: one put, or a completed multipart upload). File names carry a
//!    random nonce, so no two attempts ever write the same name.
//! 4. Create commit `s` if absent. This is the commit point.
//!    - Created: delete the intent, write the hint, the log moves to `s + 1`.
//!    - Already exists: another writer landed `s`. Delete our files and
//!      intent, read the log forward, return [`LakeError::Conflict`] with the
//!      offset to resume at.
//!    - Failed otherwise (timeout): the outcome is unknown. Read commit `s`
//!      back: ours → success; someone else's → conflict as above; absent or
//!      unreadable → return the error, leave files and intent in place and
//!      mark the log unsettled, so the next `land` first settles it (below).
//!
//! A failure before step 4 removes what was written (best-effort; anything
//! that could not be removed is left to recovery, and the log is marked
//! unsettled).
//!
//! # Recovery ([`Lake::recover`])
//!
//! 1. Find the newest commit: read the hint `h`, list commits after `h - 1`
//!    (so the cost does not grow with history) and check the listed tail has
//!    no gaps; fall back to a full listing when the hint is missing,
//!    unreadable or points past the log. The hint is never trusted alone.
//! 2. List the partition's intents.
//!    - Intent with `seq < next_seq`: its landing either committed (commit
//!      `seq` lists its files) or lost. Delete every file it names that
//!      commit `seq` does not list, then the intent.
//!    - Intent with `seq >= next_seq`: a landing that has not committed; its
//!      writer may be dead or may be a zombie still writing. **Fence**:
//!      create an empty commit at `next_seq` (range
//!      `next_offset..=next_offset - 1`, or `-1..=-2` if nothing has been
//!      landed yet). If the fence is created, the zombie's commit can no
//!      longer succeed and its intent is now a leftover (previous case). If
//!      it already exists, someone committed `next_seq`: read forward. Repeat
//!      until no intent is at or past `next_seq`. (An intent past `next_seq`
//!      means the log moved on since it was read: read forward first; if the
//!      log does not reach it, the log is inconsistent and recovery fails
//!      rather than fence its way up to it.)
//! 3. The writer resumes at `next_offset`.
//!
//! # Why this holds the invariant
//!
//! - Exactly one record exists per `seq` (create-if-absent), and `land`
//!   only creates `seq` for a range starting at the end of record `seq - 1`
//!   as that writer read it; if record `seq` exists, `seq - 1` was final when
//!   it was read. So ranges chain without gaps or overlaps.
//! - Files are written before the record that lists them, so a committed
//!   file is always complete; names are unique per attempt, so nothing ever
//!   overwrites a committed file, and deleting an abandoned attempt's files
//!   never touches a committed one.
//! - Cleanup deletes only files named by an intent whose `seq` is decided
//!   (a commit exists for it) and which that commit does not list.
//!
//! # Limits
//!
//! A zombie that is still writing files after a new owner fenced and
//! cleaned its attempt may leave files that no commit and no intent names,
//! if it then crashes before its own conflict handling removes them. They
//! are never part of the committed data and readers that follow the commit
//! log never see them; comparing a listing with the commit log finds them
//! (as `conformance::assert_sound` does).

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};
use tributary_core::{DeadLetterPositions, TopicPartition};

use crate::commit::{
    now_rfc3339, CommitRecord, CommittedFile, FileKind, IntentRecord, RECORD_VERSION,
};
use crate::error::LakeError;
use crate::lake::{check_contiguous, vanished, IntentEntry, Lake};
use crate::layout::{
    commit_path, hint_path, intent_path, validate_partition, validate_path, validate_writer,
    CONTROL_DIR,
};
use crate::storage::Created;

/// Files of one landing written at most this many at once.
const WRITE_CONCURRENCY: usize = 8;
/// Recovery gives up after this many fence/read-forward rounds.
const MAX_SETTLE_ROUNDS: usize = 10_000;

/// What a writer knows about one partition's commit log.
#[derive(Clone, Debug)]
pub struct PartitionLog {
    /// The partition.
    pub partition: TopicPartition,
    /// Sequence number the next landing creates.
    pub next_seq: u64,
    /// The newest commit record, if any.
    pub last: Option<CommitRecord>,
    /// A landing of this writer may have left an intent at `next_seq` or a
    /// commit of unknown outcome: settle before landing again.
    unsettled: bool,
    /// Paths of the last successful landing and of failed attempts since:
    /// landing them again would overwrite a committed file or race a write
    /// of a failed attempt that may still take effect.
    used_paths: HashSet<String>,
}

impl PartitionLog {
    fn new(partition: TopicPartition) -> Self {
        Self {
            partition,
            next_seq: 0,
            last: None,
            unsettled: false,
            used_paths: HashSet::new(),
        }
    }

    /// Where the next landing must start: one past the newest commit's
    /// range, or `None` when nothing has been landed yet (the writer starts
    /// wherever its source starts).
    pub fn next_offset(&self) -> Option<i64> {
        self.last.as_ref().and_then(CommitRecord::next_offset)
    }

    /// Whether an earlier landing failed in a way that left something for
    /// recovery; the next [`Lake::land`] settles the log first.
    pub fn is_unsettled(&self) -> bool {
        self.unsettled
    }

    fn advance(&mut self, record: CommitRecord) {
        self.next_seq = record.seq + 1;
        self.last = Some(record);
    }
}

/// A file ready to be landed.
#[derive(Clone, Debug)]
pub struct PendingFile {
    /// Path relative to the lake root, from [`crate::data_file_path`] or
    /// [`crate::dead_letter_path`] (a fresh name for every attempt).
    pub path: String,
    /// What the file holds.
    pub kind: FileKind,
    /// Rows (data) or lines (dead letter) in the file.
    pub rows: u64,
    /// The encoded file.
    pub bytes: Bytes,
}

/// A contiguous range of one partition's offsets, encoded into files.
#[derive(Clone, Debug)]
pub struct Landing {
    /// First offset covered (inclusive).
    pub first_offset: i64,
    /// Last offset covered (inclusive): the last record seen, whether it
    /// became a row, a dead letter or was skipped.
    pub last_offset: i64,
    /// Rows in the data files (sum of their `rows`).
    pub rows: u64,
    /// Lines in the dead-letter files (sum of their `rows`).
    pub dead_lettered: u64,
    /// Records skipped under `on_error = "skip"`.
    pub skipped: u64,
    /// The files. May be empty when every record was skipped.
    pub files: Vec<PendingFile>,
    /// Where the rejects went in a Kafka dead-letter topic (written and
    /// acknowledged before this landing), when the pipeline routes them
    /// there; the commit record lists it. Its offsets count towards
    /// `dead_lettered` together with the lines of dead-letter files.
    pub dead_letter_topic: Option<DeadLetterPositions>,
}

#[derive(Serialize, Deserialize)]
struct Hint {
    seq: u64,
}

fn to_json<T: Serialize>(value: &T) -> Bytes {
    // Serialising these plain structs cannot fail.
    Bytes::from(serde_json::to_vec_pretty(value).unwrap_or_default())
}

impl Lake {
    /// Takes a partition over: finds the newest commit, removes what
    /// crashed or lost landings left behind, fences landings that may still
    /// be in flight, and returns the log to land from.
    pub async fn recover(
        &self,
        tp: &TopicPartition,
        writer: &str,
    ) -> Result<PartitionLog, LakeError> {
        validate_partition(tp)?;
        validate_writer(writer)?;
        let mut log = self.scan(tp).await?;
        self.settle(&mut log, writer).await?;
        info!(
            partition = %tp,
            next_seq = log.next_seq,
            next_offset = ?log.next_offset(),
            writer,
            "Recovered partition."
        );
        Ok(log)
    }

    /// Removes what finished landings left behind in a partition (intents
    /// of committed ranges, and files their commits do not list) without
    /// fencing anything, so it is safe beside writers still landing. Returns
    /// how many intents it removed.
    pub async fn tidy(&self, tp: &TopicPartition) -> Result<usize, LakeError> {
        validate_partition(tp)?;
        let log = self.scan(tp).await?;
        let mut removed = 0;
        for entry in self.intent_entries(tp).await? {
            if entry.seq < log.next_seq {
                self.clean_leftover(tp, &entry).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Lands a range: writes the intent, the files and commit record
    /// `log.next_seq`, and advances `log`. See the [module docs](self).
    ///
    /// Errors: [`LakeError::Conflict`] when another writer created the
    /// commit first (this landing's files are removed and `log` moves to the
    /// winner's state); [`LakeError::Invalid`] when the landing does not
    /// continue the log; storage errors otherwise (`log` unchanged, or
    /// marked to be settled by the next call).
    pub async fn land(
        &self,
        log: &mut PartitionLog,
        writer: &str,
        landing: Landing,
    ) -> Result<CommitRecord, LakeError> {
        let tp = log.partition.clone();
        validate_partition(&tp)?;
        validate_writer(writer)?;
        if landing
            .dead_letter_topic
            .as_ref()
            .is_some_and(|d| !d.offsets.is_empty())
        {
            // The range's rejects are durable in the dead-letter topic; the
            // commit that lists them is not written yet.
            crash_point!(AfterDeadLetterProduce);
        }
        if log.unsettled {
            info!(partition = %tp, seq = log.next_seq, "Settling the log after an unfinished landing.");
            let before = log.next_offset();
            self.scan_forward(log).await?;
            self.settle(log, writer).await?;
            if log.next_offset() != before && log.next_offset() != Some(landing.first_offset) {
                // The unfinished landing did commit after all (or someone
                // else landed): this range is no longer the next one.
                return Err(LakeError::Conflict {
                    partition: tp,
                    seq: log.next_seq.saturating_sub(1),
                    resume_at: log.next_offset().unwrap_or(landing.first_offset),
                });
            }
        }
        check_landing(log, &landing)?;

        let seq = log.next_seq;
        let intent_at = intent_path(&tp, seq, writer);
        let paths: Vec<String> = landing.files.iter().map(|f| f.path.clone()).collect();
        log.used_paths.extend(paths.iter().cloned());

        let intent = IntentRecord {
            version: RECORD_VERSION,
            seq,
            writer: writer.to_string(),
            created_at: now_rfc3339(),
            files: paths.clone(),
        };
        crash_point!(BeforeIntent);
        if let Err(e) = self.storage.put(&intent_at, to_json(&intent)).await {
            // The put may have happened anyway; if it cannot be removed,
            // recovery must deal with it before the next landing.
            if self.storage.delete(&intent_at).await.is_err() {
                log.unsettled = true;
            }
            return Err(e);
        }
        crash_point!(AfterIntent);

        let written: Vec<Result<CommittedFile, LakeError>> = futures::stream::iter(landing.files)
            .map(|f| {
                let storage = self.storage.clone();
                async move {
                    let crc32c = crc32c::crc32c(&f.bytes);
                    let bytes = f.bytes.len() as u64;
                    crash_point!(BeforeDataWrite);
                    storage.put(&f.path, f.bytes).await?;
                    crash_point!(AfterDataWrite);
                    Ok(CommittedFile {
                        path: f.path,
                        kind: f.kind,
                        rows: f.rows,
                        bytes,
                        crc32c,
                    })
                }
            })
            .buffered(WRITE_CONCURRENCY)
            .collect()
            .await;
        let mut files = Vec::with_capacity(written.len());
        for result in written {
            match result {
                Ok(f) => files.push(f),
                Err(e) => {
                    warn!(partition = %tp, seq, error = %e, "Writing a file failed; abandoning the landing.");
                    if !self.abandon(&tp, &intent_at, &paths).await {
                        log.unsettled = true;
                    }
                    return Err(e);
                }
            }
        }

        let record = CommitRecord {
            version: RECORD_VERSION,
            seq,
            topic: tp.topic.to_string(),
            partition: tp.partition,
            first_offset: landing.first_offset,
            last_offset: landing.last_offset,
            rows: landing.rows,
            dead_lettered: landing.dead_lettered,
            skipped: landing.skipped,
            writer: writer.to_string(),
            created_at: now_rfc3339(),
            files,
            dead_letter_topic: landing.dead_letter_topic,
        };
        let at = commit_path(&tp, seq);
        crash_point!(BeforeCommitCreate);
        match self.storage.create(&at, to_json(&record)).await {
            Ok(Created::Created) => crash_point!(AfterCommitCreate),
            Ok(Created::Exists) => {
                return Err(self
                    .lost(log, seq, &intent_at, &paths, landing.first_offset)
                    .await)
            }
            Err(e) => {
                warn!(partition = %tp, seq, error = %e, "Commit outcome unknown; reading it back.");
                match self.read_commit(&tp, seq).await {
                    Ok(Some(found)) if found == record => {
                        info!(partition = %tp, seq, "Commit confirmed by reading it back.");
                    }
                    Ok(Some(_)) => {
                        return Err(self
                            .lost(log, seq, &intent_at, &paths, landing.first_offset)
                            .await)
                    }
                    Ok(None) | Err(_) => {
                        // The create may still take effect: leave files and
                        // intent, and settle (fence or adopt) next time.
                        log.unsettled = true;
                        return Err(e);
                    }
                }
            }
        }

        if let Err(e) = self.storage.delete(&intent_at).await {
            warn!(partition = %tp, seq, error = %e, "Could not remove the intent; the next recovery will.");
        }
        self.write_hint(&tp, seq).await;
        log.advance(record.clone());
        log.used_paths = paths.into_iter().collect();
        debug!(
            partition = %tp,
            seq,
            first_offset = record.first_offset,
            last_offset = record.last_offset,
            rows = record.rows,
            files = record.files.len(),
            "Commit record created."
        );
        Ok(record)
    }

    /// Finds the newest commit of a partition: hint first, then a listing
    /// from the hint on, else a full listing.
    pub(crate) async fn scan(&self, tp: &TopicPartition) -> Result<PartitionLog, LakeError> {
        let mut seqs = None;
        if let Some(hint) = self.read_hint(tp).await {
            if hint > 0 {
                let tail = self.commit_seqs(tp, hint).await?;
                if tail.first() == Some(&hint) {
                    check_contiguous(tp, &tail, hint)?;
                    seqs = Some(tail);
                } else {
                    debug!(partition = %tp, hint, "Hint points past the log; listing it all.");
                }
            }
        }
        let seqs = match seqs {
            Some(s) => s,
            None => {
                let all = self.commit_seqs(tp, 0).await?;
                check_contiguous(tp, &all, 0)?;
                all
            }
        };
        let mut log = PartitionLog::new(tp.clone());
        if let Some(&newest) = seqs.last() {
            let record = self
                .read_commit(tp, newest)
                .await?
                .ok_or_else(|| vanished(tp, newest))?;
            log.advance(record);
        }
        Ok(log)
    }

    /// Moves `log` to the newest commit at or after `log.next_seq`.
    async fn scan_forward(&self, log: &mut PartitionLog) -> Result<(), LakeError> {
        let tp = log.partition.clone();
        let from = log.next_seq;
        let mut seqs = self.commit_seqs(&tp, from).await?;
        let mut start = from;
        if seqs.first() != Some(&from) {
            // A listing may lag a create this writer just saw fail: ask for
            // the record directly.
            if let Some(record) = self.read_commit(&tp, from).await? {
                log.advance(record);
                start = from + 1;
                seqs.retain(|&s| s >= start);
            }
        }
        check_contiguous(&tp, &seqs, start)?;
        if let Some(&newest) = seqs.last() {
            let record = self
                .read_commit(&tp, newest)
                .await?
                .ok_or_else(|| vanished(&tp, newest))?;
            log.advance(record);
        }
        Ok(())
    }

    /// Cleans up leftover intents and fences unfinished landings until no
    /// intent remains at or past `log.next_seq`.
    async fn settle(&self, log: &mut PartitionLog, writer: &str) -> Result<(), LakeError> {
        let tp = log.partition.clone();
        for _ in 0..MAX_SETTLE_ROUNDS {
            let mut pending = Vec::new();
            for entry in self.intent_entries(&tp).await? {
                if entry.seq < log.next_seq {
                    self.clean_leftover(&tp, &entry).await?;
                } else {
                    pending.push(entry);
                }
            }
            if pending.is_empty() {
                log.unsettled = false;
                return Ok(());
            }
            if let Some(ahead) = pending.iter().find(|e| e.seq > log.next_seq) {
                // Its writer saw commit `ahead.seq - 1`, so the log has moved
                // on since it was read.
                let before = log.next_seq;
                self.scan_forward(log).await?;
                if log.next_seq == before {
                    return Err(LakeError::CommitLog {
                        partition: tp.clone(),
                        path: ahead.path.clone(),
                        message: format!(
                            "intent for commit {} but the log ends before commit {before}",
                            ahead.seq
                        ),
                    });
                }
                continue;
            }
            let seq = log.next_seq;
            let fence = fence_record(log, writer);
            match self
                .storage
                .create(&commit_path(&tp, seq), to_json(&fence))
                .await?
            {
                Created::Created => {
                    let writers: Vec<&str> = pending.iter().map(|e| e.writer.as_str()).collect();
                    warn!(
                        partition = %tp,
                        seq,
                        writers = ?writers,
                        "Fenced an unfinished landing; its files will be removed."
                    );
                    log.advance(fence);
                    self.write_hint(&tp, seq).await;
                }
                Created::Exists => {
                    debug!(partition = %tp, seq, "Commit appeared while fencing; reading forward.");
                    let before = log.next_seq;
                    self.scan_forward(log).await?;
                    if log.next_seq == before {
                        // Some stores answer "exists" while another
                        // conditional write of the name is in flight.
                        return Err(LakeError::Storage {
                            operation: "create",
                            path: commit_path(&tp, seq),
                            source:
                                "the store reported the commit as existing, but it cannot be read"
                                    .into(),
                            class: tributary_core::ErrorClass::Retryable,
                        });
                    }
                }
            }
        }
        Err(LakeError::CommitLog {
            partition: tp.clone(),
            path: commit_path(&tp, log.next_seq),
            message: format!("recovery did not settle after {MAX_SETTLE_ROUNDS} rounds"),
        })
    }

    /// Removes the files of a decided intent that its commit does not list,
    /// then the intent.
    async fn clean_leftover(
        &self,
        tp: &TopicPartition,
        entry: &IntentEntry,
    ) -> Result<(), LakeError> {
        let commit =
            self.read_commit(tp, entry.seq)
                .await?
                .ok_or_else(|| LakeError::CommitLog {
                    partition: tp.clone(),
                    path: commit_path(tp, entry.seq),
                    message: format!(
                        "commit {} is missing although later commits exist (intent {})",
                        entry.seq, entry.path
                    ),
                })?;
        let orphans: Vec<String> = match &entry.record {
            Ok(intent) => {
                let listed: HashSet<&str> = commit.files.iter().map(|f| f.path.as_str()).collect();
                intent
                    .files
                    .iter()
                    .filter(|p| !listed.contains(p.as_str()) && is_data_path(p))
                    .cloned()
                    .collect()
            }
            Err(message) => {
                warn!(partition = %tp, path = %entry.path, %message, "Unreadable intent; removing it without its files.");
                Vec::new()
            }
        };
        let results: Vec<Result<(), LakeError>> = futures::stream::iter(orphans.iter().cloned())
            .map(|p| {
                let storage = self.storage.clone();
                async move {
                    storage.delete(&p).await?;
                    crash_point!(DuringOrphanCleanup);
                    Ok(())
                }
            })
            .buffer_unordered(WRITE_CONCURRENCY)
            .collect()
            .await;
        for r in results {
            r?;
        }
        self.storage.delete(&entry.path).await?;
        if orphans.is_empty() {
            debug!(partition = %tp, seq = entry.seq, writer = %entry.writer, "Removed a finished intent.");
        } else {
            info!(
                partition = %tp,
                seq = entry.seq,
                writer = %entry.writer,
                files = orphans.len(),
                "Removed the files of an abandoned landing."
            );
        }
        Ok(())
    }

    /// The commit was lost to another writer: remove this attempt, read the
    /// log forward and build the conflict error.
    async fn lost(
        &self,
        log: &mut PartitionLog,
        seq: u64,
        intent_at: &str,
        paths: &[String],
        first_offset: i64,
    ) -> LakeError {
        let tp = log.partition.clone();
        let cleaned = self.abandon(&tp, intent_at, paths).await;
        if let Err(e) = self.scan_forward(log).await {
            log.unsettled = true;
            return e;
        }
        if !cleaned && log.next_seq <= seq {
            log.unsettled = true;
        }
        let resume_at = log.next_offset().unwrap_or(first_offset);
        info!(
            partition = %tp,
            seq,
            resume_at,
            winner = log.last.as_ref().map(|c| c.writer.as_str()).unwrap_or(""),
            "Another writer created the commit first; landing discarded."
        );
        LakeError::Conflict {
            partition: tp,
            seq,
            resume_at,
        }
    }

    /// Deletes an attempt's files, then (if all went) its intent. Returns
    /// whether everything is gone.
    async fn abandon(&self, tp: &TopicPartition, intent_at: &str, paths: &[String]) -> bool {
        let results: Vec<Result<(), LakeError>> = futures::stream::iter(paths.iter().cloned())
            .map(|p| {
                let storage = self.storage.clone();
                async move { storage.delete(&p).await }
            })
            .buffer_unordered(WRITE_CONCURRENCY)
            .collect()
            .await;
        let mut ok = true;
        for r in results {
            if let Err(e) = r {
                warn!(partition = %tp, error = %e, "Could not remove a file of an abandoned landing.");
                ok = false;
            }
        }
        if ok {
            if let Err(e) = self.storage.delete(intent_at).await {
                warn!(partition = %tp, error = %e, "Could not remove the intent of an abandoned landing.");
                ok = false;
            }
        }
        ok
    }

    async fn read_hint(&self, tp: &TopicPartition) -> Option<u64> {
        let path = hint_path(tp);
        match self.storage.get(&path).await {
            Ok(Some(bytes)) => match serde_json::from_slice::<Hint>(&bytes) {
                Ok(h) => Some(h.seq),
                Err(e) => {
                    warn!(partition = %tp, error = %e, "Unreadable commit hint; listing the whole log.");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                warn!(partition = %tp, error = %e, "Cannot read the commit hint; listing the whole log.");
                None
            }
        }
    }

    async fn write_hint(&self, tp: &TopicPartition, seq: u64) {
        if let Err(e) = self
            .storage
            .put(&hint_path(tp), to_json(&Hint { seq }))
            .await
        {
            debug!(partition = %tp, seq, error = %e, "Could not update the commit hint.");
        }
    }
}

/// An empty commit at `log.next_seq` that keeps the offset chain as it is
/// (and the dead-letter topic's scan start, listing nothing).
fn fence_record(log: &PartitionLog, writer: &str) -> CommitRecord {
    let first_offset = log.last.as_ref().map_or(-1, |c| c.last_offset + 1);
    CommitRecord {
        version: RECORD_VERSION,
        seq: log.next_seq,
        topic: log.partition.topic.to_string(),
        partition: log.partition.partition,
        first_offset,
        last_offset: first_offset - 1,
        rows: 0,
        dead_lettered: 0,
        skipped: 0,
        writer: writer.to_string(),
        created_at: now_rfc3339(),
        files: Vec::new(),
        dead_letter_topic: log
            .last
            .as_ref()
            .and_then(|c| c.dead_letter_topic.as_ref())
            .map(DeadLetterPositions::carried_forward),
    }
}

/// Paths recovery may delete: valid, and never the lake's own records.
fn is_data_path(path: &str) -> bool {
    validate_path(path).is_ok() && path.split('/').next() != Some(CONTROL_DIR)
}

fn check_landing(log: &PartitionLog, landing: &Landing) -> Result<(), LakeError> {
    let invalid = |message: String| LakeError::Invalid {
        partition: log.partition.clone(),
        first_offset: landing.first_offset,
        last_offset: landing.last_offset,
        message,
    };
    if landing.first_offset < 0 || landing.last_offset < landing.first_offset {
        return Err(invalid(
            "the range must be non-empty and start at offset 0 or later".into(),
        ));
    }
    if let Some(next) = log.next_offset() {
        if landing.first_offset != next {
            return Err(invalid(format!(
                "the log continues at offset {next} (commit {} ends at {})",
                log.next_seq.saturating_sub(1),
                next - 1
            )));
        }
    }
    let mut sums: HashMap<FileKind, u64> = HashMap::new();
    let mut seen = HashSet::new();
    for f in &landing.files {
        validate_path(&f.path).map_err(|e| invalid(e.to_string()))?;
        if !is_data_path(&f.path) {
            return Err(invalid(format!("{} is inside {CONTROL_DIR}/", f.path)));
        }
        if !seen.insert(f.path.as_str()) {
            return Err(invalid(format!("{} is listed twice", f.path)));
        }
        if log.used_paths.contains(&f.path) {
            return Err(invalid(format!(
                "{} was used by an earlier landing attempt; name every attempt's files afresh",
                f.path
            )));
        }
        *sums.entry(f.kind).or_default() += f.rows;
    }
    let data_rows = sums.get(&FileKind::Data).copied().unwrap_or(0);
    let dead_rows = sums.get(&FileKind::DeadLetter).copied().unwrap_or(0);
    let topic_rows = landing
        .dead_letter_topic
        .as_ref()
        .map_or(0, |d| d.offsets.len() as u64);
    if data_rows != landing.rows || dead_rows + topic_rows != landing.dead_lettered {
        return Err(invalid(format!(
            "counts do not match the files: rows {} vs {data_rows} in data files, dead_lettered {} vs {dead_rows} in dead-letter files and {topic_rows} in the dead-letter topic",
            landing.rows, landing.dead_lettered
        )));
    }
    let span = (landing.last_offset - landing.first_offset) as u128 + 1;
    let records = landing.rows as u128 + landing.dead_lettered as u128 + landing.skipped as u128;
    if records > span {
        return Err(invalid(format!(
            "{records} records cannot fit in {span} offsets"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, kind: FileKind, rows: u64) -> PendingFile {
        PendingFile {
            path: path.into(),
            kind,
            rows,
            bytes: Bytes::from_static(b"x"),
        }
    }

    #[test]
    fn landing_checks() {
        let mut log = PartitionLog::new(TopicPartition::new("t", 0));
        let ok = Landing {
            first_offset: 10,
            last_offset: 19,
            rows: 7,
            dead_lettered: 2,
            skipped: 1,
            files: vec![
                file("a/1.parquet", FileKind::Data, 3),
                file("b/2.parquet", FileKind::Data, 4),
                file("_dead_letter/t/0/x.jsonl", FileKind::DeadLetter, 2),
            ],
            dead_letter_topic: None,
        };
        check_landing(&log, &ok).unwrap();

        let mut bad = ok.clone();
        bad.rows = 8;
        assert!(matches!(
            check_landing(&log, &bad),
            Err(LakeError::Invalid { .. })
        ));
        let mut bad = ok.clone();
        bad.skipped = 2;
        assert!(check_landing(&log, &bad)
            .unwrap_err()
            .to_string()
            .contains("cannot fit"));
        let mut bad = ok.clone();
        bad.files[1].path = "a/1.parquet".into();
        assert!(check_landing(&log, &bad).is_err());
        let mut bad = ok.clone();
        bad.files[0].path = "_tributary/commits/t/0/00000000000000000000.json".into();
        assert!(check_landing(&log, &bad).is_err());
        let mut bad = ok.clone();
        bad.last_offset = 9;
        assert!(check_landing(&log, &bad).is_err());

        log.used_paths.insert("a/1.parquet".into());
        assert!(check_landing(&log, &ok)
            .unwrap_err()
            .to_string()
            .contains("afresh"));
        log.used_paths.clear();

        log.advance(fence_record(&log, "w"));
        assert_eq!(log.next_offset(), None);
        check_landing(&log, &ok).unwrap();
        let mut rec = fence_record(&log, "w");
        rec.first_offset = 0;
        rec.last_offset = 9;
        log.advance(rec);
        assert_eq!(log.next_seq, 2);
        check_landing(&log, &ok).unwrap();
        let mut late = ok.clone();
        late.first_offset = 11;
        let e = check_landing(&log, &late).unwrap_err();
        assert!(e.to_string().contains("continues at offset 10"), "{e}");

        // Rejects in the dead-letter topic count with the dead-letter files.
        let mut topic = ok.clone();
        topic.files.pop();
        topic.dead_letter_topic = Some(DeadLetterPositions {
            topic: "t-dlq".into(),
            partition: 0,
            offsets: vec![3],
            scan_from: 4,
        });
        assert!(check_landing(&log, &topic).is_err());
        topic.dead_letter_topic.as_mut().unwrap().offsets.push(4);
        check_landing(&log, &topic).unwrap();
    }

    #[test]
    fn fences_carry_the_dead_letter_scan_start_forward() {
        let mut log = PartitionLog::new(TopicPartition::new("t", 0));
        assert_eq!(fence_record(&log, "w").dead_letter_topic, None);
        let mut real = fence_record(&log, "w");
        real.first_offset = 0;
        real.last_offset = 9;
        real.dead_letter_topic = Some(DeadLetterPositions {
            topic: "t-dlq".into(),
            partition: 2,
            offsets: vec![40, 41],
            scan_from: 42,
        });
        log.advance(real);
        let fence = fence_record(&log, "w");
        let carried = fence.dead_letter_topic.unwrap();
        assert_eq!((carried.partition, carried.scan_from), (2, 42));
        assert!(carried.offsets.is_empty());
    }

    #[test]
    fn fences_keep_the_chain() {
        let mut log = PartitionLog::new(TopicPartition::new("t", 0));
        let f = fence_record(&log, "w");
        assert_eq!((f.seq, f.first_offset, f.last_offset), (0, -1, -2));
        log.advance(f);
        let f = fence_record(&log, "w");
        assert_eq!((f.seq, f.first_offset, f.last_offset), (1, -1, -2));
        let mut real = f.clone();
        real.first_offset = 100;
        real.last_offset = 199;
        log.advance(real);
        let f = fence_record(&log, "w");
        assert_eq!((f.seq, f.first_offset, f.last_offset), (2, 200, 199));
        assert!(f.is_fence());
        assert_eq!(f.next_offset(), Some(200));
    }
}
