//! The landing-protocol conformance suite: every check is a function over a
//! [`Lake`], so each storage backend (local directory, in-memory store,
//! LocalFileSystem, a real S3 server) runs the same checks. Each check uses
//! its own topic (with a random suffix), so checks can share a lake or a
//! bucket. Checks panic on failure, like assertions.
//!
//! ```no_run
//! # async fn s3_lake() -> tributary_lake::Lake { unimplemented!() }
//! # async fn run() {
//! let lake = s3_lake().await;
//! tributary_lake::conformance::run_all(&lake).await;
//! # }
//! ```

use std::collections::BTreeSet;

use bytes::Bytes;
use tributary_core::TopicPartition;

use crate::commit::{now_rfc3339, FileKind, IntentRecord, RECORD_VERSION};
use crate::landing::{Landing, PartitionLog, PendingFile};
use crate::layout::{
    commit_path, data_file_path, dead_letter_path, hint_path, intent_path, new_writer_id,
};
use crate::{Lake, LakeError};

/// Runs every check.
pub async fn run_all(lake: &Lake) {
    lands_and_recovers(lake).await;
    racing_writers(lake, 16).await;
    cleans_orphans_of_crashed_landing(lake).await;
    cleans_leftovers_of_lost_landing(lake).await;
    keeps_files_when_crash_follows_commit(lake).await;
    fences_zombies(lake).await;
    fences_before_first_landing(lake).await;
    reports_intents_past_the_log(lake).await;
    finds_newest_commit_without_good_hint(lake).await;
    reports_gaps_in_the_log(lake).await;
    lands_ranges_without_files(lake).await;
}

/// A topic-partition no other check (or run) uses.
pub fn fresh_partition(name: &str) -> TopicPartition {
    let mut suffix = uuid::Uuid::new_v4().simple().to_string();
    suffix.truncate(8);
    TopicPartition::new(format!("{name}-{suffix}"), 0)
}

/// A landing of offsets `first..=last` with one row per offset, split into
/// two hourly data files and one dead-letter file for the last offset.
pub fn sample_landing(tp: &TopicPartition, writer: &str, first: i64, last: i64) -> Landing {
    assert!(last >= first);
    let n = (last - first + 1) as u64;
    let data_rows = n - 1;
    let half = data_rows / 2;
    let mut files = Vec::new();
    for (hour, rows) in [("hour=00", half), ("hour=01", data_rows - half)] {
        if rows > 0 {
            let path = data_file_path(Some(&format!("dt=2026-11-24/{hour}")), tp, first, writer);
            files.push(PendingFile {
                bytes: Bytes::from(format!("PAR1 {path} {rows} PAR1").repeat(3)),
                path,
                kind: FileKind::Data,
                rows,
            });
        }
    }
    let path = dead_letter_path(tp, first, writer);
    files.push(PendingFile {
        bytes: Bytes::from(format!("{{\"offset\":{last}}}\n")),
        path,
        kind: FileKind::DeadLetter,
        rows: 1,
    });
    Landing {
        first_offset: first,
        last_offset: last,
        rows: data_rows,
        dead_lettered: 1,
        skipped: 0,
        files,
        dead_letter_topic: None,
    }
}

/// Paths of the files of a landing.
pub fn paths_of(landing: &Landing) -> Vec<String> {
    landing.files.iter().map(|f| f.path.clone()).collect()
}

/// Every data and dead-letter file of the partition in the lake.
pub async fn files_of(lake: &Lake, tp: &TopicPartition) -> BTreeSet<String> {
    let data_prefix = format!("{}-{}-", tp.topic, tp.partition);
    let dead_prefix = format!("_dead_letter/{}/{}/", tp.topic, tp.partition);
    lake.list("")
        .await
        .expect("list the lake")
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| {
            !p.starts_with("_tributary/")
                && (p.starts_with(&dead_prefix)
                    || p.rsplit('/')
                        .next()
                        .is_some_and(|n| n.starts_with(&data_prefix)))
        })
        .collect()
}

/// Asserts the partition is sound: `verify` finds no problem, no intent is
/// left, and every file of the partition in the lake is committed.
pub async fn assert_sound(lake: &Lake, tp: &TopicPartition) {
    let report = lake.verify(tp, true).await.expect("verify");
    assert!(report.is_ok(), "{tp}: {:?}", report.problems);
    assert_eq!(
        report.intents,
        0,
        "{tp}: intents left: {:?}",
        lake.intents(tp).await
    );
    let committed: BTreeSet<String> = lake
        .commits(tp)
        .await
        .expect("commits")
        .into_iter()
        .flat_map(|c| c.files.into_iter().map(|f| f.path))
        .collect();
    let present = files_of(lake, tp).await;
    assert_eq!(
        present, committed,
        "{tp}: files in the lake vs committed files"
    );
}

/// Writes an intent and its files without committing: a landing that
/// crashed (or stalled) between steps 3 and 4.
pub async fn write_unfinished_landing(
    lake: &Lake,
    tp: &TopicPartition,
    seq: u64,
    writer: &str,
    landing: &Landing,
) {
    let intent = IntentRecord {
        version: RECORD_VERSION,
        seq,
        writer: writer.to_string(),
        created_at: now_rfc3339(),
        files: paths_of(landing),
    };
    let json = Bytes::from(serde_json::to_vec(&intent).expect("intent json"));
    lake.storage
        .put(&intent_path(tp, seq, writer), json)
        .await
        .expect("put intent");
    for f in &landing.files {
        lake.storage
            .put(&f.path, f.bytes.clone())
            .await
            .expect("put file");
    }
}

fn expect_conflict(r: Result<crate::CommitRecord, LakeError>) -> (u64, i64) {
    match r {
        Err(LakeError::Conflict { seq, resume_at, .. }) => (seq, resume_at),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// Lands several ranges, then a new writer recovers the right position.
pub async fn lands_and_recovers(lake: &Lake) {
    let tp = fresh_partition("lands");
    let writer = new_writer_id("worker-a");
    let mut log = lake.recover(&tp, &writer).await.expect("recover empty");
    assert_eq!((log.next_seq, log.next_offset()), (0, None));
    assert!(lake.commits(&tp).await.expect("commits").is_empty());

    let mut first = 1_000;
    for (i, len) in [10, 1, 250, 7].into_iter().enumerate() {
        let landing = sample_landing(&tp, &writer, first, first + len - 1);
        let record = lake.land(&mut log, &writer, landing).await.expect("land");
        assert_eq!(record.seq, i as u64);
        assert_eq!(record.first_offset, first);
        first += len;
        assert_eq!(log.next_offset(), Some(first));
        assert_eq!(log.next_seq, i as u64 + 1);
    }
    // Not continuing the log is a caller bug.
    let gap = sample_landing(&tp, &writer, first + 1, first + 5);
    assert!(matches!(
        lake.land(&mut log, &writer, gap).await,
        Err(LakeError::Invalid { .. })
    ));

    let other = new_writer_id("worker-b");
    let recovered = lake.recover(&tp, &other).await.expect("recover");
    assert_eq!(recovered.next_seq, 4);
    assert_eq!(recovered.next_offset(), Some(first));
    assert_eq!(
        recovered.last.as_ref().map(|c| c.writer.as_str()),
        Some(writer.as_str())
    );

    let commits = lake.commits(&tp).await.expect("commits");
    assert_eq!(commits.len(), 4);
    assert_eq!(commits[0].first_offset, 1_000);
    assert_eq!(commits[3].last_offset, first - 1);
    let report = lake.verify(&tp, true).await.expect("verify");
    assert_eq!(report.first_offset, Some(1_000));
    assert_eq!(report.last_offset, Some(first - 1));
    assert_eq!(report.rows + report.dead_lettered, (first - 1_000) as u64);
    assert!(lake.partitions().await.expect("partitions").contains(&tp));
    let data = lake
        .read(&commits[0].files[0].path)
        .await
        .expect("read a file");
    assert_eq!(data.len() as u64, commits[0].files[0].bytes);
    assert_sound(lake, &tp).await;
}

/// `writers` writers land the same sequence number from the same log state
/// at once: exactly one wins, every loser gets a conflict pointing past the
/// winner's range, and no loser's file or intent is left.
pub async fn racing_writers(lake: &Lake, writers: usize) {
    let tp = fresh_partition("race");
    let first_writer = new_writer_id("first");
    let mut log = lake.recover(&tp, &first_writer).await.expect("recover");
    lake.land(
        &mut log,
        &first_writer,
        sample_landing(&tp, &first_writer, 0, 99),
    )
    .await
    .expect("first landing");

    let attempts: Vec<(String, PartitionLog, Landing)> = (0..writers)
        .map(|i| {
            let w = new_writer_id(&format!("racer-{i}"));
            let landing = sample_landing(&tp, &w, 100, 100 + 10 + i as i64);
            (w, log.clone(), landing)
        })
        .collect();
    let results = futures::future::join_all(attempts.into_iter().map(
        |(w, mut log, landing)| async move {
            let r = lake.land(&mut log, &w, landing).await;
            (log, r)
        },
    ))
    .await;

    let winners: Vec<_> = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .collect();
    assert_eq!(winners.len(), 1, "exactly one writer wins: {results:?}");
    let winner = winners[0].clone();
    assert_eq!(winner.seq, 1);
    for (log, r) in &results {
        match r {
            Ok(_) => assert_eq!(log.next_seq, 2),
            Err(LakeError::Conflict { seq, resume_at, .. }) => {
                assert_eq!(*seq, 1);
                assert_eq!(*resume_at, winner.last_offset + 1);
                assert_eq!(log.next_seq, 2, "the loser's log moves to the winner");
                assert_eq!(log.next_offset(), Some(winner.last_offset + 1));
                assert!(!log.is_unsettled());
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    let recovered = lake
        .recover(&tp, &new_writer_id("after"))
        .await
        .expect("recover");
    assert_eq!(recovered.next_offset(), Some(winner.last_offset + 1));
    assert_sound(lake, &tp).await;
}

/// A writer crashed after writing its intent and files: the next recovery
/// fences the sequence number and removes the files.
pub async fn cleans_orphans_of_crashed_landing(lake: &Lake) {
    let tp = fresh_partition("crash");
    let a = new_writer_id("a");
    let mut log = lake.recover(&tp, &a).await.expect("recover");
    lake.land(&mut log, &a, sample_landing(&tp, &a, 0, 9))
        .await
        .expect("land");

    let dead = new_writer_id("dead");
    let unfinished = sample_landing(&tp, &dead, 10, 19);
    write_unfinished_landing(lake, &tp, 1, &dead, &unfinished).await;
    assert_eq!(lake.intents(&tp).await.expect("intents").len(), 1);
    for p in paths_of(&unfinished) {
        assert!(files_of(lake, &tp).await.contains(&p));
    }

    let b = new_writer_id("b");
    let mut log = lake.recover(&tp, &b).await.expect("recover");
    assert_eq!(log.next_offset(), Some(10));
    assert_eq!(log.next_seq, 2, "seq 1 was fenced");
    let fence = log.last.clone().expect("fence");
    assert!(fence.is_fence());
    assert_eq!(fence.writer, b);
    for p in paths_of(&unfinished) {
        assert!(!files_of(lake, &tp).await.contains(&p), "{p} removed");
    }
    lake.land(&mut log, &b, sample_landing(&tp, &b, 10, 19))
        .await
        .expect("land after recovery");
    assert_sound(lake, &tp).await;
}

/// An intent whose sequence number someone else committed: its files are
/// removed, the committed ones stay.
pub async fn cleans_leftovers_of_lost_landing(lake: &Lake) {
    let tp = fresh_partition("leftover");
    let a = new_writer_id("a");
    let mut log = lake.recover(&tp, &a).await.expect("recover");
    lake.land(&mut log, &a, sample_landing(&tp, &a, 0, 9))
        .await
        .expect("land");
    // A slow writer starts landing seq 1 ...
    let slow = new_writer_id("slow");
    let lost = sample_landing(&tp, &slow, 10, 29);
    write_unfinished_landing(lake, &tp, 1, &slow, &lost).await;
    // ... but `a` commits seq 1 first, then the slow writer dies.
    lake.land(&mut log, &a, sample_landing(&tp, &a, 10, 19))
        .await
        .expect("land");

    let log = lake
        .recover(&tp, &new_writer_id("c"))
        .await
        .expect("recover");
    assert_eq!(log.next_seq, 2, "no fence needed");
    assert_eq!(log.next_offset(), Some(20));
    let present = files_of(lake, &tp).await;
    for p in paths_of(&lost) {
        assert!(!present.contains(&p), "{p} removed");
    }
    assert_sound(lake, &tp).await;
}

/// A writer crashed after creating its commit but before removing its
/// intent: recovery removes the intent and keeps every committed file.
pub async fn keeps_files_when_crash_follows_commit(lake: &Lake) {
    let tp = fresh_partition("late-crash");
    let a = new_writer_id("a");
    let mut log = lake.recover(&tp, &a).await.expect("recover");
    let landing = sample_landing(&tp, &a, 5, 14);
    let record = lake
        .land(&mut log, &a, landing.clone())
        .await
        .expect("land");
    // Put the intent back as if the delete never happened.
    let intent = IntentRecord {
        version: RECORD_VERSION,
        seq: 0,
        writer: a.clone(),
        created_at: now_rfc3339(),
        files: paths_of(&landing),
    };
    lake.storage
        .put(
            &intent_path(&tp, 0, &a),
            Bytes::from(serde_json::to_vec(&intent).expect("json")),
        )
        .await
        .expect("put intent");

    let log = lake
        .recover(&tp, &new_writer_id("b"))
        .await
        .expect("recover");
    assert_eq!(log.next_seq, 1);
    assert_eq!(log.next_offset(), Some(15));
    let present = files_of(lake, &tp).await;
    for f in &record.files {
        assert!(present.contains(&f.path), "{} kept", f.path);
    }
    assert_sound(lake, &tp).await;
}

/// A zombie (an owner that lost the partition but does not know it yet) is
/// mid-landing when a new owner recovers: the new owner fences the zombie's
/// sequence number and removes its files; the zombie's commit then fails
/// with a conflict and its files are gone.
pub async fn fences_zombies(lake: &Lake) {
    let tp = fresh_partition("zombie");
    let zombie = new_writer_id("zombie");
    let mut zombie_log = lake.recover(&tp, &zombie).await.expect("recover");
    lake.land(&mut zombie_log, &zombie, sample_landing(&tp, &zombie, 0, 9))
        .await
        .expect("land");

    // The zombie has written its intent and first files for seq 1 ...
    let in_flight = sample_landing(&tp, &zombie, 10, 24);
    write_unfinished_landing(lake, &tp, 1, &zombie, &in_flight).await;

    // ... when the new owner takes over.
    let owner = new_writer_id("owner");
    let mut owner_log = lake.recover(&tp, &owner).await.expect("recover");
    assert_eq!(owner_log.next_seq, 2);
    assert_eq!(owner_log.next_offset(), Some(10));
    let fence = lake
        .commits(&tp)
        .await
        .expect("commits")
        .pop()
        .expect("fence");
    assert!(fence.is_fence() && fence.seq == 1 && fence.writer == owner);
    let present = files_of(lake, &tp).await;
    for p in paths_of(&in_flight) {
        assert!(!present.contains(&p), "zombie file {p} removed");
    }

    // The zombie carries on with seq 1 (fresh file names, as every attempt).
    let retry = sample_landing(&tp, &zombie, 10, 24);
    let (seq, resume_at) =
        expect_conflict(lake.land(&mut zombie_log, &zombie, retry.clone()).await);
    assert_eq!((seq, resume_at), (1, 10));
    let present = files_of(lake, &tp).await;
    for p in paths_of(&retry) {
        assert!(
            !present.contains(&p),
            "zombie file {p} removed after conflict"
        );
    }

    lake.land(&mut owner_log, &owner, sample_landing(&tp, &owner, 10, 30))
        .await
        .expect("owner lands");
    // The zombie, having re-read the log, is still behind.
    let (seq, resume_at) = expect_conflict(
        lake.land(
            &mut zombie_log,
            &zombie,
            sample_landing(&tp, &zombie, 10, 12),
        )
        .await,
    );
    assert_eq!((seq, resume_at), (2, 31));
    assert_sound(lake, &tp).await;
    let report = lake.verify(&tp, true).await.expect("verify");
    assert_eq!((report.commits, report.fences), (3, 1));
}

/// An intent for a sequence number past the end of the log cannot come from
/// a writer that read the log: recovery reports it instead of fencing up to it.
pub async fn reports_intents_past_the_log(lake: &Lake) {
    let tp = fresh_partition("ahead");
    let w = new_writer_id("w");
    let mut log = lake.recover(&tp, &w).await.expect("recover");
    lake.land(&mut log, &w, sample_landing(&tp, &w, 0, 9))
        .await
        .expect("land");
    let bogus = new_writer_id("bogus");
    write_unfinished_landing(
        lake,
        &tp,
        1_000_000,
        &bogus,
        &sample_landing(&tp, &bogus, 10, 19),
    )
    .await;
    match lake.recover(&tp, &w).await {
        Err(LakeError::CommitLog { path, .. }) => {
            assert_eq!(path, intent_path(&tp, 1_000_000, &bogus))
        }
        other => panic!("expected a commit-log error, got {other:?}"),
    }
    assert_eq!(
        lake.commits(&tp).await.expect("commits").len(),
        1,
        "no fences were written"
    );
}

/// A crash before anything was landed: the fence covers no offsets
/// (`-1..=-2`) and the first real landing may start anywhere.
pub async fn fences_before_first_landing(lake: &Lake) {
    let tp = fresh_partition("first-fence");
    let dead = new_writer_id("dead");
    let unfinished = sample_landing(&tp, &dead, 500, 509);
    write_unfinished_landing(lake, &tp, 0, &dead, &unfinished).await;

    let w = new_writer_id("w");
    let mut log = lake.recover(&tp, &w).await.expect("recover");
    assert_eq!(log.next_seq, 1);
    assert_eq!(log.next_offset(), None, "a fence anchors no offset");
    let fence = log.last.clone().expect("fence");
    assert_eq!((fence.first_offset, fence.last_offset), (-1, -2));
    lake.land(&mut log, &w, sample_landing(&tp, &w, 42, 50))
        .await
        .expect("land");
    assert_eq!(log.next_offset(), Some(51));
    assert_sound(lake, &tp).await;
}

/// The hint is missing, stale, past the end or garbage: recovery still
/// finds the newest commit.
pub async fn finds_newest_commit_without_good_hint(lake: &Lake) {
    let tp = fresh_partition("hint");
    let w = new_writer_id("w");
    let mut log = lake.recover(&tp, &w).await.expect("recover");
    for i in 0..6 {
        lake.land(&mut log, &w, sample_landing(&tp, &w, i * 10, i * 10 + 9))
            .await
            .expect("land");
    }
    let hint = hint_path(&tp);
    assert!(lake.read(&hint).await.is_ok(), "the hint is written");
    let tp = &tp;
    let check = |label: &'static str| async move {
        let log = lake
            .recover(tp, &new_writer_id("r"))
            .await
            .unwrap_or_else(|e| panic!("recover with {label} hint: {e}"));
        assert_eq!(log.next_seq, 6, "{label} hint");
        assert_eq!(log.next_offset(), Some(60), "{label} hint");
    };
    check("current").await;
    lake.storage
        .put(&hint, Bytes::from_static(b"{\"seq\": 2}"))
        .await
        .expect("put");
    check("stale").await;
    lake.storage
        .put(&hint, Bytes::from_static(b"{\"seq\": 0}"))
        .await
        .expect("put");
    check("zero").await;
    lake.storage
        .put(&hint, Bytes::from_static(b"{\"seq\": 99}"))
        .await
        .expect("put");
    check("future").await;
    lake.storage
        .put(&hint, Bytes::from_static(b"not json"))
        .await
        .expect("put");
    check("garbage").await;
    lake.storage.delete(&hint).await.expect("delete");
    check("missing").await;
}

/// A missing commit in the listed part of the log is reported, naming it.
pub async fn reports_gaps_in_the_log(lake: &Lake) {
    let tp = fresh_partition("gap");
    let w = new_writer_id("w");
    let mut log = lake.recover(&tp, &w).await.expect("recover");
    for i in 0..4 {
        lake.land(&mut log, &w, sample_landing(&tp, &w, i * 10, i * 10 + 9))
            .await
            .expect("land");
    }
    lake.storage
        .delete(&hint_path(&tp))
        .await
        .expect("delete hint");
    lake.storage
        .delete(&commit_path(&tp, 1))
        .await
        .expect("delete commit");
    match lake.recover(&tp, &w).await {
        Err(LakeError::CommitLog { path, .. }) => assert_eq!(path, commit_path(&tp, 1)),
        other => panic!("expected a commit-log error, got {other:?}"),
    }
    assert!(matches!(
        lake.commits(&tp).await,
        Err(LakeError::CommitLog { .. })
    ));
    let report = lake.verify(&tp, false).await.expect("verify");
    assert!(report
        .problems
        .iter()
        .any(|p| p.path == commit_path(&tp, 1)));
}

/// A range whose records were all skipped lands as a commit without files.
pub async fn lands_ranges_without_files(lake: &Lake) {
    let tp = fresh_partition("skipped");
    let w = new_writer_id("w");
    let mut log = lake.recover(&tp, &w).await.expect("recover");
    let skipped = Landing {
        first_offset: 0,
        last_offset: 9,
        rows: 0,
        dead_lettered: 0,
        skipped: 10,
        files: Vec::new(),
        dead_letter_topic: None,
    };
    let record = lake.land(&mut log, &w, skipped).await.expect("land");
    assert!(record.files.is_empty() && !record.is_fence());
    lake.land(&mut log, &w, sample_landing(&tp, &w, 10, 19))
        .await
        .expect("land");
    let log = lake.recover(&tp, &w).await.expect("recover");
    assert_eq!(log.next_offset(), Some(20));
    assert_sound(lake, &tp).await;
}
