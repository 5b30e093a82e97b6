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
