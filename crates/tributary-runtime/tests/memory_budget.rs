//! The memory budget on a real pipeline (datagen → JSON → Parquet on an
//! in-memory store): with flush thresholds no buffer ever reaches, a budget
//! far below what the records take makes the pipeline land its largest
//! buffers early, many times, and every record still lands exactly once.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use object_store::memory::InMemory;
use tributary_config::{
    ByteSize, Compression, DatagenSourceConfig, FlushConfig, HumanDuration, JsonConverterConfig,
    OnError, ParquetSinkConfig, StorageConfig,
};
use tributary_core::TopicPartition;
use tributary_datagen_source::DatagenSource;
use tributary_formats::JsonConverter;
use tributary_lake::Lake;
use tributary_parquet_sink::ParquetSink;
use tributary_runtime::{MemoryBudget, Pipeline, Shutdown};

const RECORDS: u64 = 60_000;
const PARTITIONS: i32 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_budget_lands_largest_buffers_early_and_loses_nothing() {
    let lake = Lake::open_with_store(Arc::new(InMemory::new()), "lake").expect("lake");
    let sink_cfg = ParquetSinkConfig {
        url: "memory:///".into(),
        compression: Compression::default(),
        compression_level: None,
        // Small row groups: the buffers' encoded size grows as records arrive.
        row_group_size: 1_000,
        row_group_bytes: tributary_config::default_row_group_bytes(),
        partition_by: None,
        timezone: "UTC".into(),
        late_data: None,
        flush: FlushConfig {
            max_records: u64::MAX,
            max_bytes: ByteSize(1 << 40),
            max_age: HumanDuration(Duration::from_secs(3600)),
        },
        storage: StorageConfig::default(),
    };
    let source = DatagenSource::new(&DatagenSourceConfig {
        topic: "orders".into(),
        partitions: PARTITIONS,
        records: Some(RECORDS),
        rate: None,
        batch_size: 500,
        seed: 3,
    })
    .expect("datagen source");
    let converter = JsonConverter::new(
        &JsonConverterConfig {
            schema: Some("config/schemas/orders.json".into()),
            infer: false,
            infer_records: 1_000,
            timestamp_field: Some("event_time".into()),
            on_error: OnError::Fail,
            max_record_bytes: tributary_config::ByteSize(8 << 20),
            metadata: Vec::new(),
            schema_evolution: None,
        },
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")),
    )
    .expect("JSON converter");
    let sink = ParquetSink::with_lake(lake.clone(), &sink_cfg, "budget").expect("sink");
    // 60,000 orders encode to a few MiB; the sink may hold 512 KiB of it.
    let budget = MemoryBudget::new(2 << 20);
    let pipeline = Pipeline::new(
        "budget",
        Box::new(source),
        Box::new(converter),
        Box::new(sink),
        Duration::from_secs(60),
    )
    .with_memory_budget(&budget);
    let status = pipeline.status();
    let (_trigger, shutdown) = Shutdown::new();
    tokio::time::timeout(Duration::from_secs(120), pipeline.run(shutdown))
        .await
        .expect("the pipeline finishes")
        .expect("the pipeline succeeds");

    let totals = status.borrow().totals;
    assert_eq!(totals.landed_rows, RECORDS);
    // Without the budget each partition would land once, when the source ends.
    assert!(
        totals.landings >= 2 * PARTITIONS as u64,
        "only {} landings: the budget did not make buffers land early",
        totals.landings
    );
    // Exactly once: the committed ranges of each partition are contiguous
    // and add up to every record.
    let mut rows = 0;
    for p in 0..PARTITIONS {
        let commits = lake
            .commits(&TopicPartition::new("orders", p))
            .await
            .expect("commits");
        for pair in commits.windows(2) {
            assert_eq!(pair[0].last_offset + 1, pair[1].first_offset);
        }
        rows += commits.iter().map(|c| c.rows).sum::<u64>();
    }
    assert_eq!(rows, RECORDS);
    // The pipeline is gone: its share of the budget is released.
    assert_eq!(budget.used(), 0);
}
