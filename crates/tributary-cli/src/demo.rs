//! `tributary demo`: an in-process Kafka, synthetic orders, a pipeline to
//! Parquet on local disk.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use tributary_config::{
    Compression, ConverterConfig, FlushConfig, HumanDuration, JsonConverterConfig,
    KafkaSourceConfig, OnError, ParquetSinkConfig, PipelineConfig, SinkConfig, SourceConfig,
    StartPosition, StorageConfig,
};
use tributary_runtime::Pipeline;

use crate::{registry, run};

/// The orders schema, also shipped as `config/schemas/orders.json`.
const ORDERS_SCHEMA: &str = include_str!("../../../config/schemas/orders.json");
/// Marks a directory as written by the demo, so a later demo may replace it.
const MARKER: &str = "_tributary/DEMO";
const TOPIC: &str = "orders";

pub async fn demo(out: &Path, records: u64) -> anyhow::Result<()> {
    if records == 0 {
        bail!("--records must be at least 1");
    }
    let interrupted = run::signal();
    let out = prepare_dir(out)?;
    // The mock broker keeps at most 5 MiB per partition: spread large demos wider.
    let partitions = (records.div_ceil(40_000)).clamp(3, 64) as i32;

    let started = Instant::now();
    let cluster = MockCluster::new(1)
        .context("cannot start the in-process Kafka (librdkafka mock cluster)")?;
    cluster
        .create_topic(TOPIC, partitions, 1)
        .context("cannot create the demo topic")?;
    let bootstrap = cluster.bootstrap_servers();
    println!("Started an in-process Kafka at {bootstrap} with topic {TOPIC:?} ({partitions} partitions).");

    let produced = {
        let bootstrap = bootstrap.clone();
        tokio::task::spawn_blocking(move || produce(&bootstrap, partitions, records))
            .await
            .context("producer task failed")??
    };
    println!("Produced {produced} synthetic orders.");

    let pipeline_cfg = PipelineConfig {
        name: "demo-orders".into(),
        source: SourceConfig::Kafka(KafkaSourceConfig {
            bootstrap_servers: bootstrap.clone(),
            topics: vec![TOPIC.into()],
            group_id: "tributary-demo".into(),
            start: StartPosition::Earliest,
            max_poll_records: 10_000,
            poll_timeout: HumanDuration(Duration::from_millis(100)),
            librdkafka: Default::default(),
        }),
        converter: ConverterConfig::Json(JsonConverterConfig {
            schema: None,
            infer: false,
            infer_records: 1_000,
            timestamp_field: Some("event_time".into()),
            on_error: OnError::DeadLetter,
            max_record_bytes: tributary_config::ByteSize(8 << 20),
            metadata: vec![],
            schema_evolution: None,
        }),
        sink: SinkConfig::Parquet(ParquetSinkConfig {
            url: format!("file://{}", out.display()),
            compression: Compression::Zstd,
            compression_level: None,
            row_group_size: 1_048_576,
            row_group_bytes: tributary_config::default_row_group_bytes(),
            partition_by: Some("dt=%Y-%m-%d/hour=%H".into()),
            timezone: "UTC".into(),
            late_data: None,
            flush: FlushConfig {
                max_records: 20_000,
                max_bytes: tributary_config::ByteSize(64 << 20),
                max_age: HumanDuration(Duration::from_secs(2)),
            },
            storage: StorageConfig::default(),
        }),
        dead_letter: Default::default(),
        transforms: Vec::new(),
    };
    let ConverterConfig::Json(json_cfg) = &pipeline_cfg.converter else {
        unreachable!("the demo pipeline is built with a JSON converter above");
    };
    let schema = tributary_formats::parse_schema(ORDERS_SCHEMA, "config/schemas/orders.json")?;
    let converter = tributary_formats::JsonConverter::with_schema(schema, json_cfg)?;
    let pipeline = Pipeline::new(
        pipeline_cfg.name.clone(),
        registry::source(&pipeline_cfg)?,
        Box::new(converter),
        registry::sink(&pipeline_cfg, "demo")?,
        Duration::from_secs(30),
    );
    let mut status = pipeline.status();
    let all_landed = async move {
        let done = status.wait_for(|s| {
            let t = &s.totals;
            t.landed_rows + t.dead_lettered + t.skipped >= produced
        });
        // Generous: the demo should finish in seconds; never hang forever.
        let limit = Duration::from_secs(120) + Duration::from_millis(produced / 5);
        tokio::select! {
            _ = done => {}
            _ = interrupted => {}
            _ = tokio::time::sleep(limit) => tracing::error!(limit = ?limit, "Demo did not land every record in time."),
        }
    };
    let statuses = run::run_pipelines(vec![pipeline], Duration::from_secs(30), all_landed).await?;
    drop(cluster);
    let totals = statuses[0].totals;
    if totals.landed_rows + totals.dead_lettered + totals.skipped < produced {
        bail!(
            "stopped before every record landed: {} of {produced}",
            totals.landed_rows + totals.dead_lettered
        );
    }

    let files = parquet_files(&out)?;
    println!(
        "Landed {} rows ({} dead-lettered) in {} Parquet files ({} commits) in {:.1}s.",
        totals.landed_rows,
        totals.dead_lettered,
        files.len(),
        totals.landings,
        started.elapsed().as_secs_f64()
    );
    println!("Lake: {}", out.display());
    for f in files.iter().take(5) {
        println!("  {}", f.strip_prefix(&out).unwrap_or(f).display());
    }
    if files.len() > 5 {
        println!("  ... and {} more", files.len() - 5);
    }
    println!("Commit log: {}", out.join("_tributary/commits").display());
    println!("Read it with DuckDB:");
    println!(
        "  duckdb -c \"SELECT count(*) AS orders, sum(amount) AS revenue, min(event_time), max(event_time) FROM read_parquet('{}/**/*.parquet', hive_partitioning = true)\"",
        out.display()
    );
    println!("or with pyarrow:");
    println!(
        "  python3 -c \"import pyarrow.dataset as ds; print(ds.dataset('{}', format='parquet', partitioning='hive').to_table().num_rows)\"",
        out.display()
    );
    Ok(())
}

/// Creates `out`, or replaces it if an earlier demo wrote it; refuses to touch
/// any other non-empty directory.
fn prepare_dir(out: &Path) -> anyhow::Result<PathBuf> {
    let out = if out.is_absolute() {
        out.to_path_buf()
    } else {
        std::env::current_dir()?.join(out)
    };
    if out.exists() {
        let empty = std::fs::read_dir(&out)
            .with_context(|| format!("cannot read {}", out.display()))?
            .next()
            .is_none();
        if !empty {
            if !out.join(MARKER).exists() {
                bail!(
                    "{} exists and was not written by `tributary demo`; pick another --out",
                    out.display()
                );
            }
            std::fs::remove_dir_all(&out)
                .with_context(|| format!("cannot clear {}", out.display()))?;
        }
    }
    std::fs::create_dir_all(out.join("_tributary"))
        .with_context(|| format!("cannot create {}", out.display()))?;
    std::fs::write(
        out.join(MARKER),
        "written by `tributary demo`; a later demo may delete this directory\n",
    )?;
    Ok(out)
}

fn produce(bootstrap: &str, partitions: i32, records: u64) -> anyhow::Result<u64> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("compression.type", "lz4")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "200000")
        .create()
        .context("cannot create the demo producer")?;
    let mut payload = Vec::with_capacity(512);
    for seq in 0..records {
        payload.clear();
        tributary_datagen_source::order_json(seq, 7, &mut payload);
        let key = seq.to_string();
        let partition = (seq % partitions as u64) as i32;
        loop {
            let record = BaseRecord::to(TOPIC)
                .partition(partition)
                .key(&key)
                .payload(&payload);
            match producer.send(record) {
                Ok(()) => break,
                Err((e, _))
                    if e.rdkafka_error_code()
                        == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                {
                    producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => bail!("cannot produce demo record {seq}: {e}"),
            }
        }
        if seq % 1_000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer
        .flush(Duration::from_secs(60))
        .context("the demo producer could not deliver every record")?;
    Ok(records)
}

fn parquet_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in
            std::fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))?
        {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('_') || name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                stack.push(path);
            } else if name.ends_with(".parquet") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}
