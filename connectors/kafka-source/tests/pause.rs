//! Pausing keeps the assignment and stops fetching; resuming delivers every
//! waiting record once, in order. High watermarks are refreshed in the
//! background for lag.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use tributary_core::{Source, SourceEvent, TopicPartition};

use support::*;

fn marks(source: &tributary_kafka_source::KafkaSource) -> BTreeMap<TopicPartition, i64> {
    source.high_watermarks().into_iter().collect()
}

/// Drains records until `want` offsets per partition have arrived.
async fn take(
    source: &mut tributary_kafka_source::KafkaSource,
    delivered: &mut BTreeMap<TopicPartition, Vec<i64>>,
    want: usize,
) {
    while delivered.values().map(Vec::len).sum::<usize>() < want {
        match next_event(source).await {
            SourceEvent::Records(bs) => {
                for b in bs {
                    let seen = delivered.entry(b.partition.clone()).or_default();
                    seen.extend(b.records.iter().map(|r| r.offset));
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_keeps_the_assignment_and_resume_delivers_the_rest_once() {
    let kafka = Kafka::new();
    let topic = "pause";
    kafka.topic(topic, 2);
    for p in 0..2 {
        kafka.produce(topic, p, 0..100);
    }
    let mut source = kafka.start(&[topic], "g-pause");
    expect_assigned(&mut source, all_default).await;
    let mut delivered = BTreeMap::new();
    take(&mut source, &mut delivered, 200).await;
    wait_until("high watermarks at 100", || {
        marks(&source).values().copied().collect::<Vec<_>>() == [100, 100]
    })
    .await;

    assert!(
        source.set_paused(true).await.unwrap(),
        "the source pauses itself"
    );
    for p in 0..2 {
        kafka.produce(topic, p, 100..150);
    }
    // The watermark thread sees the new records while nothing is fetched.
    wait_until("high watermarks at 150", || {
        marks(&source).values().copied().collect::<Vec<_>>() == [150, 150]
    })
    .await;
    assert_eq!(source.assignment(), vec![tp(topic, 0), tp(topic, 1)]);
    match tokio::time::timeout(Duration::from_secs(2), source.next()).await {
        Err(_) => {}
        Ok(Ok(SourceEvent::Records(bs))) if bs.iter().all(|b| b.records.is_empty()) => {}
        Ok(other) => panic!("delivered while paused: {other:?}"),
    }

    assert!(source.set_paused(false).await.unwrap());
    take(&mut source, &mut delivered, 300).await;
    for p in 0..2 {
        assert_eq!(
            delivered[&tp(topic, p)],
            (0..150).collect::<Vec<_>>(),
            "partition {p}: every offset once, in order"
        );
    }
    Box::new(source).close().await;
}

/// Partitions assigned while paused (a rebalance after a second member
/// joins) stay paused; the other member consumes its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_assigned_while_paused_stay_paused() {
    let kafka = Kafka::new();
    let topic = "pause-rebalance";
    kafka.topic(topic, 2);
    for p in 0..2 {
        kafka.produce(topic, p, 0..80);
    }
    let mut a = kafka.start(&[topic], "g-pause-rebalance");
    expect_assigned(&mut a, all_default).await;
    assert!(a.set_paused(true).await.unwrap());

    // B joins; A answers its revoke and new assignment while paused.
    let mut b = kafka.start(&[topic], "g-pause-rebalance");
    let mut a_holds: Vec<TopicPartition> = Vec::new();
    let mut a_records = 0;
    let mut b_holds: Vec<TopicPartition> = Vec::new();
    let mut b_delivered: BTreeMap<TopicPartition, Vec<i64>> = BTreeMap::new();
    within("B to consume all 80 records of its partition", async {
        loop {
            tokio::select! {
                event = a.next() => match event.expect("A failed") {
                    SourceEvent::Revoked { ack, .. } => {
                        // Records gathered before the pause took effect
                        // may precede this; count only those after it.
                        a_records = 0;
                        a_holds.clear();
                        let _ = ack.send(());
                    }
                    SourceEvent::Assigned { partitions, ack } => {
                        a_holds = partitions.clone();
                        ack.send(all_default(&partitions)).expect("ack");
                    }
                    SourceEvent::Records(bs) => {
                        a_records += bs.iter().map(|b| b.records.len()).sum::<usize>();
                    }
                    other => panic!("A: unexpected {other:?}"),
                },
                event = b.next() => match event.expect("B failed") {
                    SourceEvent::Assigned { partitions, ack } => {
                        b_holds = partitions.clone();
                        ack.send(all_default(&partitions)).expect("ack");
                    }
                    SourceEvent::Records(bs) => {
                        for batch in bs {
                            b_delivered
                                .entry(batch.partition.clone())
                                .or_default()
                                .extend(batch.records.iter().map(|r| r.offset));
                        }
                    }
                    SourceEvent::Revoked { ack, .. } => {
                        b_holds.clear();
                        let _ = ack.send(());
                    }
                    other => panic!("B: unexpected {other:?}"),
                },
            }
            let b_done =
                b_holds.len() == 1 && b_delivered.get(&b_holds[0]).map_or(0, Vec::len) == 80;
            if b_done && a_holds.len() == 1 {
                break;
            }
        }
    })
    .await;
    assert_eq!(
        a_records, 0,
        "A delivered records after the rebalance while paused"
    );
    assert_ne!(a_holds, b_holds);

    // Resumed, A reads its newly assigned partition from the start.
    assert!(a.set_paused(false).await.unwrap());
    let mut delivered = BTreeMap::new();
    take(&mut a, &mut delivered, 80).await;
    assert_eq!(delivered[&a_holds[0]], (0..80).collect::<Vec<_>>());
    Box::new(a).close().await;
    Box::new(b).close().await;
}
