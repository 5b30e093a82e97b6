//! The bounded source (`tributary backfill`) against librdkafka's in-process
//! mock cluster: range resolution by offsets, watermarks and time, exact
//! delivery of a range, resume positions from the runtime, seeks, and the
//! end of the run.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::{payload, tp, Kafka, TS0, WAIT};
use tributary_core::{ResumeAt, Source, SourceEvent, TopicPartition};
use tributary_kafka_source::bounded::{resolve_ranges, Bound, BoundedKafkaSource, PartitionRange};

async fn next(source: &mut BoundedKafkaSource) -> SourceEvent {
    match tokio::time::timeout(WAIT, source.next()).await {
        Ok(Ok(event)) => event,
        Ok(Err(e)) => panic!("source failed: {e}"),
        Err(_) => panic!("no event within {WAIT:?}"),
    }
}

/// Drains records until `End`, checking payloads; returns the offsets seen per partition.
async fn until_end(source: &mut BoundedKafkaSource) -> BTreeMap<TopicPartition, Vec<i64>> {
    let mut seen: BTreeMap<TopicPartition, Vec<i64>> = BTreeMap::new();
    loop {
        match next(source).await {
            SourceEvent::Records(batches) => {
                for b in batches {
                    for r in &b.records {
                        let expected = payload(&b.partition.topic, b.partition.partition, r.offset);
                        assert_eq!(r.payload.as_deref(), Some(expected.as_bytes()));
                    }
                    seen.entry(b.partition.clone())
                        .or_default()
                        .extend(b.records.iter().map(|r| r.offset));
                }
            }
            SourceEvent::End => return seen,
            SourceEvent::Seeked { .. } => {}
            other => panic!("unexpected event {other:?}"),
        }
    }
}

fn setup() -> Kafka {
    let kafka = Kafka::new();
    kafka.topic("t", 2);
    kafka.produce("t", 0, 0..100);
    kafka.produce("t", 1, 0..50);
    kafka
}

async fn resolve(kafka: &Kafka, from: Bound, until: Bound) -> Vec<PartitionRange> {
    let cfg = kafka.config(&["t"], "backfill-test");
    tokio::task::spawn_blocking(move || resolve_ranges(&cfg, "test", &from, &until))
        .await
        .unwrap()
        .expect("resolve")
}

fn spans(ranges: &[PartitionRange]) -> Vec<(i32, i64, i64)> {
    ranges
        .iter()
        .map(|r| (r.partition.partition, r.start, r.end))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_resolve_from_watermarks_offsets_and_times() {
    let kafka = setup();
    let all = resolve(&kafka, Bound::Earliest, Bound::Latest).await;
    assert_eq!(spans(&all), vec![(0, 0, 100), (1, 0, 50)]);
    assert_eq!((all[0].low, all[0].high), (0, 100));

    let some = resolve(
        &kafka,
        Bound::Offsets(BTreeMap::from([(0, 10)])),
        Bound::Offsets(BTreeMap::from([(0, 20)])),
    )
    .await;
    assert_eq!(spans(&some), vec![(0, 10, 20)], "only the listed partition");

    // Record i has timestamp TS0 + i (the mock has no time index: the
    // timestamp search finds it).
    let timed = resolve(&kafka, Bound::Time(TS0 + 40), Bound::Time(TS0 + 70)).await;
    assert_eq!(spans(&timed), vec![(0, 40, 70), (1, 40, 50)]);
    let after_all = resolve(&kafka, Bound::Time(TS0 + 1_000), Bound::Latest).await;
    assert_eq!(spans(&after_all), vec![(0, 100, 100), (1, 50, 50)]);

    let cfg = kafka.config(&["t"], "g");
    let err = tokio::task::spawn_blocking(move || {
        resolve_ranges(
            &cfg,
            "test",
            &Bound::Offsets(BTreeMap::from([(5, 0)])),
            &Bound::Latest,
        )
    })
    .await
    .unwrap()
    .unwrap_err();
    assert!(err.to_string().contains("no partition 5"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_exactly_the_range_from_the_resume_points_then_ends() {
    let kafka = setup();
    let ranges = resolve(
        &kafka,
        Bound::Offsets(BTreeMap::from([(0, 20), (1, 0)])),
        Bound::Offsets(BTreeMap::from([(0, 60), (1, 30)])),
    )
    .await;
    let cfg = kafka.config(&["t"], "g");
    let mut source = BoundedKafkaSource::start(&cfg, "test", ranges).expect("start");
    let progress = source.progress();
    match next(&mut source).await {
        SourceEvent::Assigned { partitions, ack } => {
            assert_eq!(partitions, vec![tp("t", 0), tp("t", 1)]);
            // The lake holds partition 1 up to offset 25.
            ack.send(vec![
                (tp("t", 0), ResumeAt::Default),
                (tp("t", 1), ResumeAt::Offset(25)),
            ])
            .unwrap();
        }
        other => panic!("expected Assigned, got {other:?}"),
    }
    let seen = until_end(&mut source).await;
    assert_eq!(seen[&tp("t", 0)], (20..60).collect::<Vec<_>>());
    assert_eq!(seen[&tp("t", 1)], (25..30).collect::<Vec<_>>());
    source.commit(&[(tp("t", 0), 60)]).await.unwrap();
    {
        let p = progress.lock().unwrap();
        assert_eq!(p[&tp("t", 0)].delivered_to, Some(60));
        assert_eq!(p[&tp("t", 0)].landed_to, Some(60));
        assert!(p[&tp("t", 1)].done);
    }
    tokio::time::timeout(Duration::from_secs(30), Box::new(source).close())
        .await
        .expect("close in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seek_rereads_and_a_seek_past_the_end_finishes() {
    let kafka = setup();
    let ranges = resolve(&kafka, Bound::Earliest, Bound::Latest).await;
    let cfg = kafka.config(&["t"], "g");
    let mut source = BoundedKafkaSource::start(&cfg, "test", ranges).expect("start");
    match next(&mut source).await {
        SourceEvent::Assigned { partitions, ack } => {
            ack.send(
                partitions
                    .into_iter()
                    .map(|p| (p, ResumeAt::Default))
                    .collect(),
            )
            .unwrap();
        }
        other => panic!("expected Assigned, got {other:?}"),
    }
    // A lost landing on partition 0: re-read from 90; partition 1 already
    // landed past its end by someone else.
    source.seek(&tp("t", 0), 90).await.unwrap();
    source.seek(&tp("t", 1), 50).await.unwrap();
    let mut seeked = Vec::new();
    let mut after_seek: Vec<i64> = Vec::new();
    loop {
        match next(&mut source).await {
            SourceEvent::Records(batches) => {
                for b in batches {
                    if b.partition == tp("t", 0) && seeked.contains(&tp("t", 0)) {
                        after_seek.extend(b.records.iter().map(|r| r.offset));
                    }
                }
            }
            SourceEvent::Seeked { partition, offset } => {
                assert_eq!(offset, if partition == tp("t", 0) { 90 } else { 50 });
                seeked.push(partition);
            }
            SourceEvent::End => break,
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(seeked, vec![tp("t", 0), tp("t", 1)]);
    assert_eq!(after_seek, (90..100).collect::<Vec<_>>());
    Box::new(source).close().await;
}
