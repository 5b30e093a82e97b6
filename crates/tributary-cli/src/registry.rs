//! The connector registry: the one place that maps config `type`s to
//! connector implementations. Connectors are compiled in by cargo feature.

use std::path::Path;

use anyhow::{bail, Context};
use tributary_config::{ConverterConfig, PipelineConfig, SinkConfig, SourceConfig};
use tributary_core::{Converter, Sink, Source};

/// Pure checks of one pipeline beyond what the config crate validates:
/// schema files parse, the partition template and timezone are valid, the
/// storage URL and options are understood. No network.
pub fn check(index: usize, p: &PipelineConfig, base_dir: &Path) -> anyhow::Result<()> {
    let key = format!("pipelines.{index}");
    match &p.source {
        SourceConfig::Kafka(_) => {
            if !cfg!(feature = "kafka-source") {
                bail!("{key}.source.type: the kafka source is not compiled into this binary (feature kafka-source)");
            }
        }
        SourceConfig::Datagen(_) => {
            if !cfg!(feature = "datagen-source") {
                bail!("{key}.source.type: the datagen source is not compiled into this binary (feature datagen-source)");
            }
        }
        SourceConfig::File(f) => {
            if !cfg!(feature = "file-source") {
                bail!("{key}.source.type: the file source is not compiled into this binary (feature file-source)");
            }
            tributary_lake::Lake::open(&f.url, &f.storage)
                .with_context(|| format!("{key}.source.url"))?;
        }
    }
    match &p.converter {
        ConverterConfig::Json(j) => {
            if let Some(schema) = &j.schema {
                let path = resolve(base_dir, schema);
                tributary_formats::load_schema(&path)
                    .with_context(|| format!("{key}.converter.schema"))?;
            }
            tributary_formats::JsonConverter::new(j, base_dir)
                .with_context(|| format!("{key}.converter"))?;
        }
    }
    match &p.sink {
        SinkConfig::Parquet(s) => {
            if !cfg!(feature = "parquet-sink") {
                bail!("{key}.sink.type: the parquet sink is not compiled into this binary (feature parquet-sink)");
            }
            if let Some(t) = &s.partition_by {
                tributary_lake::PartitionTemplate::new(t, &s.timezone)
                    .with_context(|| format!("{key}.sink.partition_by"))?;
            }
            tributary_lake::Lake::open(&s.url, &s.storage)
                .with_context(|| format!("{key}.sink.url"))?;
            tributary_formats::writer_properties(s)
                .with_context(|| format!("{key}.sink.compression"))?;
        }
    }
    Ok(())
}

fn resolve(base_dir: &Path, p: &Path) -> std::path::PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base_dir.join(p)
    }
}

/// The librdkafka property that bounds a consumer's prefetch queue.
const QUEUE_KBYTES: &str = "queued.max.messages.kbytes";

/// The pipeline with its source sized to the worker's memory budget: a Kafka
/// source's prefetch queue gets its part of the budget
/// ([`tributary_runtime::MemoryBudget::kafka_queue_kbytes`]) unless the passthrough map sets
/// `queued.max.messages.kbytes` itself.
pub fn within_budget(
    p: &PipelineConfig,
    budget: &tributary_runtime::MemoryBudget,
    kafka_sources: usize,
) -> PipelineConfig {
    let mut p = p.clone();
    if let SourceConfig::Kafka(k) = &mut p.source {
        k.librdkafka
            .entry(QUEUE_KBYTES.to_string())
            .or_insert_with(|| budget.kafka_queue_kbytes(kafka_sources).to_string());
    }
    p
}

/// Builds the pipeline's source.
pub fn source(p: &PipelineConfig) -> anyhow::Result<Box<dyn Source>> {
    match &p.source {
        #[cfg(feature = "kafka-source")]
        SourceConfig::Kafka(k) => Ok(Box::new(
            tributary_kafka_source::KafkaSource::start(k, &p.name)
                .with_context(|| format!("pipeline {}: starting the Kafka source", p.name))?,
        )),
        #[cfg(feature = "datagen-source")]
        SourceConfig::Datagen(d) => Ok(Box::new(
            tributary_datagen_source::DatagenSource::new(d)
                .with_context(|| format!("pipeline {}: starting the datagen source", p.name))?,
        )),
        // Manifests of landed files are kept in the sink's lake.
        #[cfg(feature = "file-source")]
        SourceConfig::File(f) => {
            let SinkConfig::Parquet(s) = &p.sink;
            let sink_lake = tributary_lake::Lake::open(&s.url, &s.storage)
                .with_context(|| format!("pipeline {}: opening the sink's lake", p.name))?;
            Ok(Box::new(
                tributary_file_source::FileSource::new(f, Some(sink_lake))
                    .with_context(|| format!("pipeline {}: starting the file source", p.name))?,
            ))
        }
        #[allow(unreachable_patterns)]
        _ => bail!(
            "pipeline {}: source type not compiled into this binary",
            p.name
        ),
    }
}

/// Builds the pipeline's converter.
pub fn converter(p: &PipelineConfig, base_dir: &Path) -> anyhow::Result<Box<dyn Converter>> {
    match &p.converter {
        ConverterConfig::Json(j) => Ok(Box::new(
            tributary_formats::JsonConverter::new(j, base_dir)
                .with_context(|| format!("pipeline {}: building the JSON converter", p.name))?,
        )),
    }
}

/// Builds the pipeline's sink.
pub fn sink(p: &PipelineConfig, worker_id: &str) -> anyhow::Result<Box<dyn Sink>> {
    match &p.sink {
        #[cfg(feature = "parquet-sink")]
        SinkConfig::Parquet(s) => Ok(Box::new(
            tributary_parquet_sink::ParquetSink::new(s, worker_id)
                .with_context(|| format!("pipeline {}: building the Parquet sink", p.name))?,
        )),
        #[allow(unreachable_patterns)]
        _ => {
            let _ = worker_id;
            bail!(
                "pipeline {}: sink type not compiled into this binary",
                p.name
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use tributary_config::{FileFormat, SourceConfig};
    use tributary_runtime::MemoryBudget;

    use super::*;

    fn config(passthrough: &str) -> tributary_config::Config {
        let text = format!(
            r#"
[worker]
memory_budget = "256MiB"
[[pipelines]]
name = "p"
[pipelines.source]
type = "kafka"
bootstrap_servers = "127.0.0.1:9092"
topics = ["t"]
group_id = "g"
librdkafka = {{ {passthrough} }}
[pipelines.converter]
type = "json"
infer = true
[pipelines.sink]
type = "parquet"
url = "file:///tmp/lake"
"#
        );
        tributary_config::from_str(&text, FileFormat::Toml, "test", Vec::new()).unwrap()
    }

    fn queue(p: &PipelineConfig) -> Option<&str> {
        match &p.source {
            SourceConfig::Kafka(k) => k.librdkafka.get(QUEUE_KBYTES).map(String::as_str),
            _ => None,
        }
    }

    #[test]
    fn the_kafka_queue_is_sized_from_the_budget() {
        let c = config("");
        let budget = MemoryBudget::new(c.worker.memory_budget.0);
        // 256 MiB / 8 / 2 = 16 MiB.
        assert_eq!(
            queue(&within_budget(&c.pipelines[0], &budget, 1)),
            Some("16384")
        );
    }

    #[test]
    fn a_queue_set_by_the_user_is_kept() {
        let c = config(r#""queued.max.messages.kbytes" = "2048""#);
        let budget = MemoryBudget::new(c.worker.memory_budget.0);
        assert_eq!(
            queue(&within_budget(&c.pipelines[0], &budget, 1)),
            Some("2048")
        );
    }
}
