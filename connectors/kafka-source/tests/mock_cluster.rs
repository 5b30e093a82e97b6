//! The Kafka source against librdkafka's in-process mock cluster.
//!
//! Each test starts its own mock cluster and uses its own topic and group.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use tributary_core::{ResumeAt, Source, SourceError, SourceEvent, TopicPartition};
use tributary_kafka_source::SourceTuning;

use support::*;

/// (a) 3 partitions × N records, answered with `Default`: every offset is
/// delivered once, in order, with its key, payload and timestamp.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumes_every_offset_once_in_order() {
    const N: i64 = 400;
    let kafka = Kafka::new();
    let topic = "consume-all";
    kafka.topic(topic, 3);
    for p in 0..3 {
        kafka.produce(topic, p, 0..N);
    }
    let mut source = kafka.start(&[topic], "g-consume-all");
    let assigned = expect_assigned(&mut source, all_default).await;
    assert_eq!(assigned, vec![tp(topic, 0), tp(topic, 1), tp(topic, 2)]);

    let mut delivered: BTreeMap<TopicPartition, Vec<i64>> = BTreeMap::new();
    let mut batches = 0;
    while delivered.values().map(Vec::len).sum::<usize>() < 3 * N as usize {
        match next_event(&mut source).await {
            SourceEvent::Records(bs) => {
                batches += 1;
                assert!(bs.iter().map(|b| b.records.len()).sum::<usize>() <= 500);
                for b in bs {
                    let seen = delivered.entry(b.partition.clone()).or_default();
                    for r in &b.records {
                        assert_eq!(r.key.as_deref(), Some(format!("k{}", r.offset).as_bytes()));
                        assert_eq!(
                            r.payload.as_deref(),
                            Some(payload(topic, b.partition.partition, r.offset).as_bytes())
                        );
                        assert_eq!(r.timestamp_ms, Some(TS0 + r.offset));
                        seen.push(r.offset);
                    }
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    for p in 0..3 {
        assert_eq!(
            delivered[&tp(topic, p)],
            (0..N).collect::<Vec<_>>(),
            "partition {p}"
        );
    }
    assert!(batches >= 3, "max_poll_records bounds batches");
    source.close_boxed().await;
}

/// (b) Answering `Offset(k)` starts the partition at `k`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_offset_from_the_answer_is_honoured() {
    let kafka = Kafka::new();
    let topic = "resume-at";
    kafka.topic(topic, 2);
    kafka.produce(topic, 0, 0..50);
    kafka.produce(topic, 1, 0..50);
    let mut source = kafka.start(&[topic], "g-resume-at");
    expect_assigned(&mut source, |ps| {
        vec![
            (ps[0].clone(), ResumeAt::Offset(20)),
            (ps[1].clone(), ResumeAt::Offset(45)),
        ]
    })
    .await;
    let mut delivered: BTreeMap<TopicPartition, Vec<i64>> = BTreeMap::new();
    while delivered.values().map(Vec::len).sum::<usize>() < 30 + 5 {
        if let SourceEvent::Records(bs) = next_event(&mut source).await {
            for b in bs {
                delivered
                    .entry(b.partition)
                    .or_default()
                    .extend(b.records.iter().map(|r| r.offset));
            }
        }
    }
    assert_eq!(delivered[&tp(topic, 0)], (20..50).collect::<Vec<_>>());
    assert_eq!(delivered[&tp(topic, 1)], (45..50).collect::<Vec<_>>());
    source.close_boxed().await;
}

/// (c) Committed offsets survive a close; a new member answering `Default`
/// starts at them. Also exercises `committed_offsets` and `watermarks`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_resumes_at_committed_offsets() {
    let kafka = Kafka::new();
    let topic = "committed";
    let group = "g-committed";
    kafka.topic(topic, 2);
    kafka.produce(topic, 0, 0..100);
    kafka.produce(topic, 1, 0..100);

    let mut first = kafka.start(&[topic], group);
    expect_assigned(&mut first, all_default).await;
    let mut count = 0;
    while count < 200 {
        if let SourceEvent::Records(bs) = next_event(&mut first).await {
            count += bs.iter().map(|b| b.records.len()).sum::<usize>();
        }
    }
    first
        .commit(&[(tp(topic, 0), 40), (tp(topic, 1), 73)])
        .await
        .expect("commit");
    let parts = [tp(topic, 0), tp(topic, 1)];
    let committed =
        tokio::task::block_in_place(|| first.committed_offsets(&parts, Duration::from_secs(10)))
            .expect("committed offsets");
    assert_eq!(
        committed,
        vec![(tp(topic, 0), Some(40)), (tp(topic, 1), Some(73))]
    );
    let marks =
        tokio::task::block_in_place(|| first.watermarks(&tp(topic, 1), Duration::from_secs(10)))
            .expect("watermarks");
    assert_eq!(marks, (0, 100));
    let started = Instant::now();
    first.close_boxed().await;
    let close_took = started.elapsed();
    assert!(
        close_took < Duration::from_secs(10),
        "close took {close_took:?}"
    );

    let mut second = kafka.start(&[topic], group);
    expect_assigned(&mut second, all_default).await;
    let mut firsts: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    while firsts.len() < 2 {
        if let SourceEvent::Records(bs) = next_event(&mut second).await {
            for b in bs {
                firsts
                    .entry(b.partition.clone())
                    .or_insert(b.records[0].offset);
            }
        }
    }
    assert_eq!(firsts[&tp(topic, 0)], 40);
    assert_eq!(firsts[&tp(topic, 1)], 73);
    second.close_boxed().await;
}

/// (d) A second member joins: the first gets `Revoked`, commits while the
/// poll thread waits in the callback (the commit returns promptly), then
/// the partitions are split and, with resume positions taken from the
/// "lake", every offset is delivered exactly once across both members.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handover_to_a_second_member_loses_and_duplicates_nothing() {
    const FIRST: i64 = 60;
    const TOTAL: i64 = 120;
    let kafka = Kafka::new();
    let topic = "handover";
    let group = "g-handover";
    kafka.topic(topic, 4);
    for p in 0..4 {
        kafka.produce(topic, p, 0..FIRST);
    }
    let lake: Lake = Arc::new(Mutex::new(BTreeMap::new()));
    let a = Driven::spawn("a", kafka.start(&[topic], group), lake.clone());
    wait_until("a to consume the first records", || {
        a.delivered().values().map(Vec::len).sum::<usize>() == 4 * FIRST as usize
    })
    .await;

    let b = Driven::spawn("b", kafka.start(&[topic], group), lake.clone());
    wait_until("both members to hold partitions", || {
        let (ha, hb) = (a.holds(), b.holds());
        !ha.is_empty() && !hb.is_empty() && ha.len() + hb.len() == 4
    })
    .await;
    assert!(a.holds().is_disjoint(&b.holds()));

    for p in 0..4 {
        kafka.produce(topic, p, FIRST..TOTAL);
    }
    wait_until("all records to be delivered", || {
        let (da, db) = (a.delivered(), b.delivered());
        (0..4).all(|p| {
            let n =
                |d: &BTreeMap<TopicPartition, Vec<i64>>| d.get(&tp(topic, p)).map_or(0, Vec::len);
            n(&da) + n(&db) >= TOTAL as usize
        })
    })
    .await;

    // The revocation(s) on `a` (the mock sometimes needs a second round), and
    // the commit made while the poll thread waited in the callback.
    let revocations: Vec<Seen> = a
        .seen()
        .into_iter()
        .filter(|s| matches!(s, Seen::Revoked { .. }))
        .collect();
    assert!(!revocations.is_empty());
    for r in &revocations {
        let Seen::Revoked {
            commit,
            commit_took,
            ..
        } = r
        else {
            unreachable!()
        };
        assert!(
            *commit_took < Duration::from_secs(5),
            "commit took {commit_took:?}"
        );
        // The mock broker refuses OffsetCommit while its group is in its
        // JOINING state (a real broker accepts commits from current-generation
        // members during PreparingRebalance), so here the commit is refused as
        // fenced with REBALANCE_IN_PROGRESS. What this test checks is that it
        // returns while the poll thread is blocked in the callback;
        // `revoke_commit_succeeds_when_the_broker_group_is_stable` shows a
        // revoke-time commit succeeding.
        match commit {
            Ok(()) => {}
            Err(e) => assert!(
                e.contains("Fenced") && e.contains("RebalanceInProgress"),
                "{e}"
            ),
        }
        eprintln!("commit during a handover revocation: {commit:?} in {commit_took:?}");
    }

    // Each member delivers records of a partition only while it holds it.
    for member in [&a, &b] {
        let mut held = std::collections::BTreeSet::new();
        for s in member.seen() {
            match s {
                Seen::Assigned(p) => held.extend(p),
                Seen::Revoked { partitions, .. } | Seen::Lost(partitions) => {
                    for p in partitions {
                        held.remove(&p);
                    }
                }
                Seen::Records(p, offsets) => assert!(
                    held.contains(&p),
                    "{} delivered {p} {offsets:?} while not holding it",
                    member.name
                ),
                Seen::Seeked(..) => {}
            }
        }
    }

    // Exactly once across both members, in order per member.
    let (da, db) = (a.delivered(), b.delivered());
    for p in 0..4 {
        let part = tp(topic, p);
        let mut all: Vec<i64> = da.get(&part).cloned().unwrap_or_default();
        all.extend(db.get(&part).cloned().unwrap_or_default());
        all.sort_unstable();
        assert_eq!(all, (0..TOTAL).collect::<Vec<_>>(), "partition {p}");
    }
    let (sa, sb) = (a.stop().await, b.stop().await);
    tokio::join!(sa.close_boxed(), sb.close_boxed());
}

/// A revocation that is not caused by another member (the regex
/// subscription picks up a new topic): the broker's group stays stable, so
/// the commit made while the poll thread waits in the revoke callback
/// succeeds, and after reassignment `Default` resumes at it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_commit_succeeds_when_the_broker_group_is_stable() {
    let kafka = Kafka::new();
    let (t1, t2) = ("rx-stable-a", "rx-stable-b");
    kafka.topic(t1, 2);
    kafka.produce(t1, 0, 0..30);
    kafka.produce(t1, 1, 0..30);
    let lake: Lake = Arc::new(Mutex::new(BTreeMap::new()));
    let a = Driven::spawn(
        "a",
        kafka.start(&["^rx-stable-.*"], "g-rx-stable"),
        lake.clone(),
    );
    wait_until("the first records", || {
        a.delivered().values().map(Vec::len).sum::<usize>() == 60
    })
    .await;

    kafka.topic(t2, 1);
    kafka.produce(t2, 0, 0..10);
    wait_until("the new topic to be assigned", || {
        a.holds().contains(&tp(t2, 0))
    })
    .await;

    let seen = a.seen();
    let revoked: Vec<&Seen> = seen
        .iter()
        .filter(|s| matches!(s, Seen::Revoked { .. }))
        .collect();
    assert_eq!(revoked.len(), 1, "{seen:?}");
    let Seen::Revoked {
        partitions, commit, ..
    } = revoked[0]
    else {
        unreachable!()
    };
    assert_eq!(partitions, &vec![tp(t1, 0), tp(t1, 1)]);
    assert_eq!(commit, &Ok(()), "commit during revoke");
    let source = a.stop().await;
    let committed = tokio::task::block_in_place(|| {
        source.committed_offsets(&[tp(t1, 0), tp(t1, 1)], Duration::from_secs(10))
    })
    .unwrap();
    assert_eq!(
        committed,
        vec![(tp(t1, 0), Some(30)), (tp(t1, 1), Some(30))]
    );
    source.close_boxed().await;
}

/// (e) After `Seeked`, records of the partition restart at the seek offset
/// and nothing stale of that partition arrives; records already in flight
/// (a full channel, a half-gathered batch) are from before the event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_restarts_the_partition_without_stale_records() {
    const N: i64 = 3000;
    let kafka = Kafka::new();
    let topic = "seek";
    kafka.topic(topic, 2);
    kafka.produce(topic, 0, 0..N);
    kafka.produce(topic, 1, 0..N);
    let mut cfg = kafka.config(&[topic], "g-seek");
    cfg.max_poll_records = 100;
    let tuning = SourceTuning {
        channel_capacity: 1,
        ..SourceTuning::default()
    };
    let mut source = kafka.start_with(&cfg, tuning);
    expect_assigned(&mut source, all_default).await;
    let p0 = tp(topic, 0);

    // Forward seek while the channel is full of earlier records.
    let mut next_expected: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    let mut seeks = vec![(2500, 2600), (10, 2000), (1999, N)].into_iter();
    let mut pending_seek = None;
    let mut current = seeks.next();
    let mut issued = false;
    let mut after_seeked: Vec<i64> = Vec::new();
    let mut p1_done = false;
    loop {
        if !issued {
            if let Some((to, _)) = current {
                source.seek(&p0, to).await.unwrap();
                pending_seek = Some(to);
                issued = true;
            }
        }
        match next_event(&mut source).await {
            SourceEvent::Records(bs) => {
                for b in bs {
                    let offsets: Vec<i64> = b.records.iter().map(|r| r.offset).collect();
                    if b.partition == p0 {
                        if pending_seek.is_none() {
                            // After Seeked: contiguous from the seek offset.
                            let want = next_expected[&p0];
                            assert_eq!(offsets[0], want, "first record after the seek");
                            after_seeked.extend(&offsets);
                        }
                        // Before Seeked anything goes (stale), but in order.
                        assert!(offsets.windows(2).all(|w| w[0] + 1 == w[1]));
                        next_expected.insert(p0.clone(), offsets[offsets.len() - 1] + 1);
                    } else {
                        let want = next_expected.get(&b.partition).copied().unwrap_or(0);
                        assert_eq!(offsets[0], want, "partition 1 is not disturbed");
                        next_expected.insert(b.partition.clone(), offsets[offsets.len() - 1] + 1);
                        p1_done = next_expected[&b.partition] == N;
                    }
                }
            }
            SourceEvent::Seeked { partition, offset } => {
                assert_eq!(partition, p0);
                assert_eq!(Some(offset), pending_seek.take());
                next_expected.insert(p0.clone(), offset);
                after_seeked.clear();
            }
            other => panic!("unexpected {other:?}"),
        }
        if let Some((to, until)) = current {
            if pending_seek.is_none() && next_expected.get(&p0).is_some_and(|n| *n >= until) {
                assert_eq!(after_seeked.first().copied(), Some(to));
                current = seeks.next();
                issued = false;
            }
        }
        if current.is_none() && p1_done {
            break;
        }
    }
    // A seek of a partition that is not assigned is ignored (no Seeked).
    source.seek(&tp(topic, 7), 0).await.unwrap();
    source.close_boxed().await;
}

/// (f) A partition lost to another member cannot be committed: the source
/// refuses it as fenced without asking the broker (a broker accepts a commit
/// for any partition from any current-generation member). A broker-side
/// ILLEGAL_GENERATION maps to `Fenced` as well, and librdkafka then treats
/// the assignment as lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_of_a_partition_not_held_is_fenced() {
    let kafka = Kafka::new();
    let topic = "fenced";
    let group = "g-fenced";
    kafka.topic(topic, 2);
    kafka.produce(topic, 0, 0..10);
    kafka.produce(topic, 1, 0..10);
    let lake: Lake = Arc::new(Mutex::new(BTreeMap::new()));
    let a = Driven::spawn("a", kafka.start(&[topic], group), lake.clone());
    wait_until("a to hold both partitions", || a.holds().len() == 2).await;
    let b = Driven::spawn("b", kafka.start(&[topic], group), lake.clone());
    wait_until("the partitions to be split", || {
        a.holds().len() == 1 && b.holds().len() == 1
    })
    .await;
    let mut a_src = a.stop().await;
    let mine = a_src.assignment();
    assert_eq!(mine.len(), 1);
    let theirs: Vec<TopicPartition> = b.holds().into_iter().collect();

    // Not held: refused locally.
    match a_src.commit(&[(theirs[0].clone(), 5)]).await {
        Err(SourceError::Fenced { partitions, .. }) => assert_eq!(partitions, theirs),
        other => panic!("expected Fenced, got {other:?}"),
    }
    // Held and group stable: accepted. Mixed: the held one is committed and
    // the other reported.
    a_src
        .commit(&[(mine[0].clone(), 3)])
        .await
        .expect("commit of a held partition");
    match a_src
        .commit(&[(mine[0].clone(), 4), (theirs[0].clone(), 5)])
        .await
    {
        Err(SourceError::Fenced { partitions, .. }) => assert_eq!(partitions, theirs),
        other => panic!("expected Fenced, got {other:?}"),
    }
    let committed = tokio::task::block_in_place(|| {
        a_src.committed_offsets(
            &[mine[0].clone(), theirs[0].clone()],
            Duration::from_secs(10),
        )
    })
    .unwrap();
    assert_eq!(committed[0], (mine[0].clone(), Some(4)));

    // The broker says the generation is stale.
    kafka.mock.request_errors(
        RDKafkaApiKey::OffsetCommit,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION],
    );
    match a_src.commit(&[(mine[0].clone(), 6)]).await {
        Err(SourceError::Fenced { partitions, reason }) => {
            assert_eq!(partitions, mine);
            assert!(reason.contains("IllegalGeneration"), "{reason}");
        }
        other => panic!("expected Fenced, got {other:?}"),
    }
    // librdkafka rejoins, treating the assignment as lost.
    let lost = within("Lost after ILLEGAL_GENERATION", async {
        loop {
            match a_src.next().await.expect("event") {
                SourceEvent::Lost(p) => return p,
                SourceEvent::Records(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    assert_eq!(lost, mine);
    let b_src = b.stop().await;
    tokio::join!(a_src.close_boxed(), b_src.close_boxed());
}

/// A source whose runtime never answers an assignment fails instead of
/// hanging, and `next()` reports it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_assignment_fails_the_source() {
    let kafka = Kafka::new();
    let topic = "no-answer";
    kafka.topic(topic, 1);
    let cfg = kafka.config(&[topic], "g-no-answer");
    let tuning = SourceTuning {
        rebalance_ack_timeout: Duration::from_millis(300),
        ..SourceTuning::default()
    };
    let mut source = kafka.start_with(&cfg, tuning);
    let held_ack = match next_event(&mut source).await {
        SourceEvent::Assigned { ack, .. } => ack,
        other => panic!("unexpected {other:?}"),
    };
    let err = within("the failure", source.next()).await.unwrap_err();
    assert!(err.to_string().contains("poll"), "{err}");
    assert!(format!("{err:?}").contains("AssignAckTimeout"), "{err:?}");
    drop(held_ack);
    // Later calls keep reporting it.
    assert!(source.next().await.is_err());
    source.close_boxed().await;
}

/// Close is bounded even while the poll thread waits for an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_while_an_assignment_is_unanswered() {
    let kafka = Kafka::new();
    let topic = "close-waiting";
    kafka.topic(topic, 1);
    let mut source = kafka.start(&[topic], "g-close-waiting");
    let held_ack = match next_event(&mut source).await {
        SourceEvent::Assigned { ack, .. } => ack,
        other => panic!("unexpected {other:?}"),
    };
    let started = Instant::now();
    source.close_boxed().await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    drop(held_ack);
}

trait CloseBoxed {
    async fn close_boxed(self);
}

impl CloseBoxed for tributary_kafka_source::KafkaSource {
    async fn close_boxed(self) {
        within("close", Box::new(self).close()).await;
    }
}
