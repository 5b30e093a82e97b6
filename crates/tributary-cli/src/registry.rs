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
        ConverterConfig::Avro(c) => {
            // Checks the registry URL, credentials and CA file; no network.
            tributary_formats::AvroConverter::new(c, base_dir)
                .with_context(|| format!("{key}.converter"))?;
        }
        ConverterConfig::Protobuf(c) => {
            // Compiles a schema_file and finds the message; no network.
            tributary_formats::ProtobufConverter::new(c, base_dir)
                .with_context(|| format!("{key}.converter"))?;
        }
    }
    check_transforms(&key, p, base_dir)?;
    if matches!(p.dead_letter, tributary_config::DeadLetterConfig::Kafka(_))
        && !cfg!(feature = "kafka-dead-letter")
    {
        bail!("{key}.dead_letter.type: the Kafka dead-letter route is not compiled into this binary (feature kafka-dead-letter)");
    }
    match &p.sink {
        SinkConfig::Parquet(s) => {
            if !cfg!(feature = "parquet-sink") {
                bail!("{key}.sink.type: the parquet sink is not compiled into this binary (feature parquet-sink)");
            }
            if let Some(t) = &s.partition_by {
                let template = tributary_lake::PartitionTemplate::new(t, &s.timezone)
                    .with_context(|| format!("{key}.sink.partition_by"))?;
                if template.has_fields() {
                    if let Some(schema) = known_row_schema(p, base_dir) {
                        template
                            .check_schema(&schema)
                            .with_context(|| format!("{key}.sink.partition_by"))?;
                    }
                }
            }
            tributary_lake::Lake::open(&s.url, &s.storage)
                .with_context(|| format!("{key}.sink.url"))?;
            tributary_formats::writer_properties(s)
                .with_context(|| format!("{key}.sink.compression"))?;
        }
    }
    Ok(())
}

/// The schema of the rows the sink receives, when it is known before any
/// record is read: a JSON converter with a schema file (plus its metadata
/// columns) and `strict` schema evolution, after the pipeline's transforms.
/// Otherwise (inferred, merged or registry schemas) `partition_by` fields are
/// checked on every batch at run time.
fn known_row_schema(p: &PipelineConfig, base_dir: &Path) -> Option<arrow::datatypes::Schema> {
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use tributary_config::MetadataField;
    if let ConverterConfig::Json(j) = &p.converter {
        // With `merge` the schema file is only where the table starts.
        if matches!(
            j.schema_evolution,
            Some(tributary_config::SchemaEvolution::Merge)
        ) {
            return None;
        }
    }
    if !p.transforms.is_empty() {
        return transformed_row_schema(p, base_dir);
    }
    let ConverterConfig::Json(j) = &p.converter else {
        return None;
    };
    let payload = tributary_formats::load_schema(resolve(base_dir, j.schema.as_ref()?)).ok()?;
    let mut fields: Vec<Field> = payload
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    for m in &j.metadata {
        fields.push(match m {
            MetadataField::Topic => Field::new("_topic", DataType::Utf8, false),
            MetadataField::Partition => Field::new("_partition", DataType::Int32, false),
            MetadataField::Offset => Field::new("_offset", DataType::Int64, false),
            MetadataField::Timestamp => Field::new(
                "_timestamp",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                true,
            ),
            MetadataField::Key => Field::new("_key", DataType::Utf8, true),
        });
    }
    Some(Schema::new(fields))
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
        SourceConfig::Kafka(k) => {
            let tuning = tributary_kafka_source::SourceTuning {
                // Records' headers go nowhere but the dead-letter topic.
                headers: matches!(p.dead_letter, tributary_config::DeadLetterConfig::Kafka(_)),
                ..Default::default()
            };
            Ok(Box::new(
                tributary_kafka_source::KafkaSource::start_with(k, &p.name, tuning)
                    .with_context(|| format!("pipeline {}: starting the Kafka source", p.name))?,
            ))
        }
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

/// Builds the pipeline's converter, followed by its transforms when it has
/// any (a [`tributary_transforms::TransformingConverter`] around it).
pub fn converter(p: &PipelineConfig, base_dir: &Path) -> anyhow::Result<Box<dyn Converter>> {
    if p.transforms.is_empty() {
        return inner_converter(p, base_dir);
    }
    let (inner, chain, hidden) = transformed_parts(p, base_dir)?;
    let on_error = p.converter.on_error();
    Ok(Box::new(tributary_transforms::TransformingConverter::new(
        inner, chain, on_error, hidden,
    )))
}

/// The inner converter and the checked transform chain of a pipeline with
/// transforms (the inner converter may be asked for a hidden `_offset`).
fn transformed_parts(
    p: &PipelineConfig,
    base_dir: &Path,
) -> anyhow::Result<(
    Box<dyn Converter>,
    tributary_transforms::TransformChain,
    bool,
)> {
    let chain = tributary_transforms::TransformChain::new(&p.transforms)
        .map_err(|e| anyhow::anyhow!("pipeline {}: {e}", p.name))?;
    let (cfg, hidden) =
        tributary_transforms::TransformingConverter::inner_config(&chain, &p.converter);
    let mut inner_p = p.clone();
    inner_p.converter = cfg;
    Ok((inner_converter(&inner_p, base_dir)?, chain, hidden))
}

/// Transforms of a pipeline, checked offline: their own settings, then,
/// when the converter's schema is known without network (a JSON schema
/// file), the fields and types they use.
fn check_transforms(key: &str, p: &PipelineConfig, base_dir: &Path) -> anyhow::Result<()> {
    if p.transforms.is_empty() {
        return Ok(());
    }
    let chain = tributary_transforms::TransformChain::new(&p.transforms)
        .map_err(|e| anyhow::anyhow!("{key}.{e}"))?;
    let ConverterConfig::Json(j) = &p.converter else {
        return Ok(());
    };
    if j.schema.is_none() {
        return Ok(());
    }
    let (cfg, hidden) =
        tributary_transforms::TransformingConverter::inner_config(&chain, &p.converter);
    let ConverterConfig::Json(inner) = &cfg else {
        return Ok(());
    };
    let inner = tributary_formats::JsonConverter::new(inner, base_dir)
        .with_context(|| format!("{key}.converter"))?;
    tributary_transforms::TransformingConverter::new(Box::new(inner), chain, j.on_error, hidden)
        .checked_schema()
        .map_err(|e| anyhow::anyhow!("{key}.{e}"))?;
    Ok(())
}

/// The rows the sink receives from a pipeline with transforms, when the
/// converter's schema is known offline (see [`check_transforms`], which
/// reports the errors this ignores).
fn transformed_row_schema(p: &PipelineConfig, base_dir: &Path) -> Option<arrow::datatypes::Schema> {
    let ConverterConfig::Json(j) = &p.converter else {
        return None;
    };
    j.schema.as_ref()?;
    let chain = tributary_transforms::TransformChain::new(&p.transforms).ok()?;
    let (cfg, hidden) =
        tributary_transforms::TransformingConverter::inner_config(&chain, &p.converter);
    let ConverterConfig::Json(inner) = &cfg else {
        return None;
    };
    let inner = tributary_formats::JsonConverter::new(inner, base_dir).ok()?;
    let schema = tributary_transforms::TransformingConverter::new(
        Box::new(inner),
        chain,
        j.on_error,
        hidden,
    )
    .checked_schema()
    .ok()??;
    Some(schema.as_ref().clone())
}

/// The configured converter behind its record-size limit.
fn inner_converter(p: &PipelineConfig, base_dir: &Path) -> anyhow::Result<Box<dyn Converter>> {
    Ok(Box::new(tributary_formats::SizeGuard::new(
        decoder(p, base_dir)?,
        p.converter.max_record_bytes(),
        p.converter.on_error(),
    )))
}

/// The configured converter itself.
fn decoder(p: &PipelineConfig, base_dir: &Path) -> anyhow::Result<Box<dyn Converter>> {
    match &p.converter {
        ConverterConfig::Json(j) => Ok(Box::new(
            tributary_formats::JsonConverter::new(j, base_dir)
                .with_context(|| format!("pipeline {}: building the JSON converter", p.name))?,
        )),
        ConverterConfig::Avro(c) => Ok(Box::new(
            tributary_formats::AvroConverter::new(c, base_dir)
                .with_context(|| format!("pipeline {}: building the Avro converter", p.name))?,
        )),
        ConverterConfig::Protobuf(c) => Ok(Box::new(
            tributary_formats::ProtobufConverter::new(c, base_dir)
                .with_context(|| format!("pipeline {}: building the Protobuf converter", p.name))?,
        )),
    }
}

/// Builds the pipeline's sink.
pub fn sink(p: &PipelineConfig, worker_id: &str) -> anyhow::Result<Box<dyn Sink>> {
    match &p.sink {
        #[cfg(feature = "parquet-sink")]
        SinkConfig::Parquet(s) => {
            let sink = tributary_parquet_sink::ParquetSink::new(s, worker_id)
                .with_context(|| format!("pipeline {}: building the Parquet sink", p.name))?;
            Ok(Box::new(with_dead_letter(p, sink)?))
        }
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

/// The sink with the pipeline's dead-letter route: the lake's
/// `_dead_letter/` files (the sink's own) or a Kafka topic.
#[cfg(feature = "parquet-sink")]
fn with_dead_letter(
    p: &PipelineConfig,
    sink: tributary_parquet_sink::ParquetSink,
) -> anyhow::Result<tributary_parquet_sink::ParquetSink> {
    match &p.dead_letter {
        tributary_config::DeadLetterConfig::Lake {} => Ok(sink),
        #[cfg(feature = "kafka-dead-letter")]
        tributary_config::DeadLetterConfig::Kafka(k) => {
            let source_bootstrap = match &p.source {
                SourceConfig::Kafka(s) => Some(s.bootstrap_servers.as_str()),
                _ => None,
            };
            let route =
                tributary_kafka_dead_letter::KafkaDeadLetter::new(k, source_bootstrap, &p.name)
                    .with_context(|| {
                        format!("pipeline {}: building the dead-letter topic route", p.name)
                    })?;
            Ok(sink.with_dead_letter_route(std::sync::Arc::new(route)))
        }
        #[cfg(not(feature = "kafka-dead-letter"))]
        tributary_config::DeadLetterConfig::Kafka(_) => bail!(
            "pipeline {}: the Kafka dead-letter route is not compiled into this binary (feature kafka-dead-letter)",
            p.name
        ),
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

    /// With transforms, `partition_by` is checked against the rows after them.
    #[test]
    fn the_row_schema_known_offline_is_the_one_after_the_transforms() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let text = r#"
[[pipelines]]
name = "p"
[pipelines.source]
type = "datagen"
[pipelines.converter]
type = "json"
schema = "config/schemas/orders.json"
[pipelines.sink]
type = "parquet"
url = "file:///tmp/lake"
[[pipelines.transforms]]
type = "cast"
fields = { amount = "float64" }
[[pipelines.transforms]]
type = "flatten"
[[pipelines.transforms]]
type = "drop"
fields = ["items"]
"#;
        let c = tributary_config::from_str(text, FileFormat::Toml, "test", Vec::new()).unwrap();
        let schema = known_row_schema(&c.pipelines[0], &root).expect("a known schema");
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert!(names.contains(&"shipping_country"), "{names:?}");
        assert!(!names.contains(&"items"), "{names:?}");
        // The offset the cast needs to find each row's record is not a row column.
        assert!(!names.contains(&"_offset"), "{names:?}");
    }
}
