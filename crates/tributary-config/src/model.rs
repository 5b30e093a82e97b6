//! Typed configuration. Every struct rejects unknown keys.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::units::{is_secret_key, ByteSize, HumanDuration, Secret};

/// A whole worker: its own settings and the pipelines it runs.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Settings of this worker process.
    #[serde(default)]
    pub worker: WorkerConfig,
    /// Pipelines, each source → converter → sink.
    #[serde(default)]
    pub pipelines: Vec<PipelineConfig>,
}

/// Settings of the worker process.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Name of this worker, used in logs and in the writer id of files it lands.
    #[serde(default = "default_worker_id")]
    pub id: String,
    /// Address of the HTTP control API, `/metrics`, `/healthz`, `/readyz`
    /// and the status page (port 0: any free port, logged at start).
    #[serde(default = "default_http_addr")]
    pub http_addr: String,
    /// Bearer token the control API requires (all routes but `/healthz`
    /// and `/readyz`); best set through `TRIBUTARY_WORKER__HTTP_TOKEN`.
    #[serde(default)]
    pub http_token: Option<Secret>,
    /// File holding the bearer token (a mounted Kubernetes Secret), read at start.
    #[serde(default)]
    pub http_token_file: Option<PathBuf>,
    /// Window over which partition lag health (WARN, STALL) is judged.
    #[serde(default = "default_lag_window")]
    pub lag_window: HumanDuration,
    /// A partition with lag and no offset commit for this long is STOP.
    #[serde(default = "default_lag_stop_after")]
    pub lag_stop_after: HumanDuration,
    /// How long a graceful stop (SIGINT/SIGTERM) may take to land and commit
    /// what is buffered before the worker exits anyway.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout: HumanDuration,
    /// Bytes this worker may hold in buffered records across all pipelines:
    /// open Parquet files and the Kafka clients' prefetch queues. Over it the
    /// largest buffers are landed early and consumption pauses.
    #[serde(default = "default_memory_budget")]
    pub memory_budget: ByteSize,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            id: default_worker_id(),
            http_addr: default_http_addr(),
            http_token: None,
            http_token_file: None,
            lag_window: default_lag_window(),
            lag_stop_after: default_lag_stop_after(),
            shutdown_timeout: default_shutdown_timeout(),
            memory_budget: default_memory_budget(),
        }
    }
}

fn default_worker_id() -> String {
    "worker-1".into()
}
fn default_http_addr() -> String {
    "127.0.0.1:8083".into()
}
fn default_lag_window() -> HumanDuration {
    HumanDuration::from_secs(300)
}
fn default_lag_stop_after() -> HumanDuration {
    HumanDuration::from_secs(900)
}
fn default_shutdown_timeout() -> HumanDuration {
    HumanDuration::from_secs(30)
}
fn default_memory_budget() -> ByteSize {
    ByteSize(1 << 30)
}

/// One pipeline: where records come from, how they are decoded, where they land.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Unique name (letters, digits, `-`, `_`).
    pub name: String,
    /// Where records come from.
    pub source: SourceConfig,
    /// How raw bytes become rows.
    pub converter: ConverterConfig,
    /// Where rows land.
    pub sink: SinkConfig,
    /// Transforms applied in order to the converter's rows before the sink
    /// (README "Transforms").
    #[serde(default)]
    pub transforms: Vec<crate::transform::TransformConfig>,
    /// Where rejected records go (`on_error = "dead_letter"`): the lake's
    /// `_dead_letter/` files (default) or a Kafka topic.
    #[serde(default)]
    pub dead_letter: DeadLetterConfig,
}

/// Source connectors.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SourceConfig {
    /// A Kafka consumer group.
    Kafka(KafkaSourceConfig),
    /// Synthetic records, for demos and benchmarks.
    Datagen(DatagenSourceConfig),
    /// Existing JSON-lines, CSV or Parquet files (issue 6: backfill of dumps).
    File(FileSourceConfig),
}

/// Where a Kafka partition with no landed data and no committed group offset starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StartPosition {
    /// The oldest retained record.
    #[default]
    Earliest,
    /// Only records produced after the pipeline starts.
    Latest,
}

/// A Kafka consumer group source.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Comma-separated `host:port` list.
    pub bootstrap_servers: String,
    /// Topic names; an entry starting with `^` is a regular expression.
    pub topics: Vec<String>,
    /// Consumer group id. Workers with the same id share the partitions.
    pub group_id: String,
    /// Start position when the lake holds nothing and the group has no offset.
    #[serde(default)]
    pub start: StartPosition,
    /// Most records handed to the converter in one batch.
    #[serde(default = "default_max_poll_records")]
    pub max_poll_records: usize,
    /// Longest a poll waits to fill a batch.
    #[serde(default = "default_poll_timeout")]
    pub poll_timeout: HumanDuration,
    /// librdkafka properties passed through as they are (TLS, SASL, fetch sizes).
    /// Values of keys that look secret are never printed.
    #[serde(default)]
    pub librdkafka: BTreeMap<String, String>,
}

impl fmt::Debug for KafkaSourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSourceConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("topics", &self.topics)
            .field("group_id", &self.group_id)
            .field("start", &self.start)
            .field("max_poll_records", &self.max_poll_records)
            .field("poll_timeout", &self.poll_timeout)
            .field("librdkafka", &redacted(&self.librdkafka))
            .finish()
    }
}

/// A copy of a passthrough map with secret-looking values replaced by `***`.
pub fn redacted(map: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    map.iter()
        .map(|(k, v)| {
            let v = if is_secret_key(k) {
                "***".to_string()
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

fn default_max_poll_records() -> usize {
    10_000
}
fn default_poll_timeout() -> HumanDuration {
    HumanDuration(std::time::Duration::from_millis(100))
}

/// Synthetic order-like JSON records.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatagenSourceConfig {
    /// Name the records carry as their topic.
    #[serde(default = "default_datagen_topic")]
    pub topic: String,
    /// Number of partitions to spread records over.
    #[serde(default = "default_one")]
    pub partitions: i32,
    /// Total records to generate; unbounded when absent.
    #[serde(default)]
    pub records: Option<u64>,
    /// Records per second across partitions; as fast as possible when absent.
    #[serde(default)]
    pub rate: Option<u64>,
    /// Records per batch.
    #[serde(default = "default_datagen_batch")]
    pub batch_size: usize,
    /// Seed: the same seed gives the same records.
    #[serde(default)]
    pub seed: u64,
}

/// Format of the files a [`FileSourceConfig`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    /// One JSON document per line (blank lines are skipped).
    Jsonl,
    /// Comma-separated values with a header row; column types are inferred.
    Csv,
    /// Apache Parquet.
    Parquet,
}

impl InputFormat {
    /// The file-name suffix selected when `suffix` is not set.
    pub fn default_suffix(self) -> &'static str {
        match self {
            InputFormat::Jsonl => ".jsonl",
            InputFormat::Csv => ".csv",
            InputFormat::Parquet => ".parquet",
        }
    }
}

/// Existing files in a local directory or a bucket prefix, each landed
/// exactly once (its own commit log lane, keyed by its path).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// `file:///abs/dir`, or `s3://bucket/prefix` (any URL a sink takes).
    pub url: String,
    /// `jsonl`, `csv` or `parquet`.
    pub format: InputFormat,
    /// Name the records carry as their topic; the lake's commit logs of the
    /// files live under it.
    #[serde(default = "default_file_topic")]
    pub topic: String,
    /// Only files whose name ends with this (default by format: `.jsonl`,
    /// `.csv`, `.parquet`).
    #[serde(default)]
    pub suffix: Option<String>,
    /// Records per batch handed to the converter.
    #[serde(default = "default_datagen_batch")]
    pub batch_size: usize,
    /// CSV field delimiter: one ASCII character.
    #[serde(default = "default_csv_delimiter")]
    pub csv_delimiter: String,
    /// Cloud storage settings for `url` (as for a sink).
    #[serde(default)]
    pub storage: StorageConfig,
}

fn default_file_topic() -> String {
    "files".into()
}
fn default_csv_delimiter() -> String {
    ",".into()
}

fn default_datagen_topic() -> String {
    "datagen".into()
}
fn default_one() -> i32 {
    1
}
fn default_datagen_batch() -> usize {
    1_000
}

/// Converters.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ConverterConfig {
    /// One JSON object per record.
    Json(JsonConverterConfig),
    /// Confluent-framed Avro (magic byte, schema id, Avro body), writer
    /// schemas fetched from a Schema Registry.
    Avro(AvroConverterConfig),
    /// Protocol Buffers: Confluent-framed with schemas from a Schema
    /// Registry, or bare messages of one type from a local `.proto` file.
    Protobuf(ProtobufConverterConfig),
}

/// What happens to a record that cannot be converted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Stop the pipeline without committing the record's offset.
    #[default]
    Fail,
    /// Drop the record, count it and log it.
    Skip,
    /// Write the record with its position and the reason to the dead-letter route.
    DeadLetter,
}

/// How a converter's table schema may change while a pipeline runs
/// (`schema_evolution`). README "Schema evolution" describes the policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SchemaEvolution {
    /// New fields are added as nullable columns and types may widen
    /// (int8 → int64, int → float64, float32 → float64, string → large
    /// string, ...); the sink starts a new file when the schema grows.
    /// Changes that are not widenings are incompatible and follow `on_error`.
    #[default]
    Merge,
    /// The table schema never changes: rows that do not fit it are
    /// incompatible and follow `on_error`.
    Strict,
}

/// Kafka metadata a converter can add as columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MetadataField {
    /// `_topic` (string).
    Topic,
    /// `_partition` (int32).
    Partition,
    /// `_offset` (int64).
    Offset,
    /// `_timestamp` (timestamp ms, UTC).
    Timestamp,
    /// `_key` (string, UTF-8 lossy).
    Key,
}

/// JSON converter.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JsonConverterConfig {
    /// Schema file (see `config/schemas/`). Either this or `infer = true`.
    #[serde(default)]
    pub schema: Option<PathBuf>,
    /// Infer the schema from the first `infer_records` records.
    #[serde(default)]
    pub infer: bool,
    /// How many records inference looks at.
    #[serde(default = "default_infer_records")]
    pub infer_records: usize,
    /// Field holding the record time (drives `partition_by`); the Kafka
    /// timestamp is used when absent or null.
    #[serde(default)]
    pub timestamp_field: Option<String>,
    /// What to do with a record that does not parse or does not fit the schema.
    #[serde(default)]
    pub on_error: OnError,
    /// Records whose key and value together are larger than this are not
    /// decoded: they follow `on_error` with a reason giving both sizes.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: ByteSize,
    /// Kafka metadata columns to append.
    #[serde(default)]
    pub metadata: Vec<MetadataField>,
    /// Whether records may grow the schema: `merge` (the default with
    /// `infer = true`) or `strict` (the default with a `schema` file, whose
    /// unknown fields are then ignored).
    #[serde(default)]
    pub schema_evolution: Option<SchemaEvolution>,
}

/// 8 MiB: far above a normal event, far below what the flush and memory
/// limits are sized for.
fn default_max_record_bytes() -> ByteSize {
    ByteSize(8 << 20)
}

fn default_infer_records() -> usize {
    1_000
}

/// A Confluent Schema Registry (shared by the Avro and Protobuf converters).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaRegistryConfig {
    /// Base URL, `http://` or `https://`, e.g. `http://127.0.0.1:8081`.
    pub url: String,
    /// Basic-auth user name (needs `password`).
    #[serde(default)]
    pub username: Option<String>,
    /// Basic-auth password (needs `username`); never logged.
    #[serde(default)]
    pub password: Option<Secret>,
    /// PEM file with the CA certificate(s) of a private CA, trusted in
    /// addition to the system roots for `https://` URLs.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Timeout of one registry request (connect + response).
    #[serde(default = "default_registry_timeout")]
    pub timeout: HumanDuration,
}

fn default_registry_timeout() -> HumanDuration {
    HumanDuration::from_secs(10)
}

/// Avro converter: Confluent wire format, schemas from a Schema Registry.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AvroConverterConfig {
    /// Where writer schemas are fetched from, by the id in each record.
    pub schema_registry: SchemaRegistryConfig,
    /// Field holding the record time (drives `partition_by`); the Kafka
    /// timestamp is used when absent or null.
    #[serde(default)]
    pub timestamp_field: Option<String>,
    /// What to do with a record that cannot be decoded.
    #[serde(default)]
    pub on_error: OnError,
    /// Records whose key and value together are larger than this are not
    /// decoded: they follow `on_error` with a reason giving both sizes.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: ByteSize,
    /// Kafka metadata columns to append.
    #[serde(default)]
    pub metadata: Vec<MetadataField>,
    /// Whether new writer schemas may grow the table schema (`merge`, the
    /// default) or must fit it (`strict`).
    #[serde(default)]
    pub schema_evolution: SchemaEvolution,
}

/// Protobuf converter. Exactly one of `schema_registry` (records are
/// Confluent-framed: magic byte, schema id, message indexes, message) and
/// `schema_file` + `message` (records are bare messages of that type).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProtobufConverterConfig {
    /// Where schemas are fetched from, by the id in each record.
    #[serde(default)]
    pub schema_registry: Option<SchemaRegistryConfig>,
    /// A local `.proto` file (its imports are looked up next to it; the
    /// `google/protobuf/*.proto` well-known types are built in).
    #[serde(default)]
    pub schema_file: Option<PathBuf>,
    /// Full name of the message type in `schema_file`, e.g. `shop.v1.Order`.
    #[serde(default)]
    pub message: Option<String>,
    /// Field holding the record time (a top-level `google.protobuf.Timestamp`);
    /// the Kafka timestamp is used when absent or unset.
    #[serde(default)]
    pub timestamp_field: Option<String>,
    /// What to do with a record that cannot be decoded.
    #[serde(default)]
    pub on_error: OnError,
    /// Records whose key and value together are larger than this are not
    /// decoded: they follow `on_error` with a reason giving both sizes.
    #[serde(default = "default_max_record_bytes")]
    pub max_record_bytes: ByteSize,
    /// Kafka metadata columns to append.
    #[serde(default)]
    pub metadata: Vec<MetadataField>,
    /// Whether new schema versions may grow the table schema (`merge`, the
    /// default) or must fit it (`strict`).
    #[serde(default)]
    pub schema_evolution: SchemaEvolution,
}

/// Sinks.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SinkConfig {
    /// Parquet files on object storage or local disk.
    Parquet(ParquetSinkConfig),
}

/// Parquet compression codecs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Zstandard (default).
    #[default]
    Zstd,
    /// Snappy.
    Snappy,
    /// LZ4 (raw, Parquet's LZ4_RAW).
    Lz4,
    /// Gzip.
    Gzip,
    /// No compression.
    None,
}

/// When buffered rows of a source partition are landed. Whichever comes first.
#[derive(Clone, Copy, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FlushConfig {
    /// Records buffered for one source partition.
    #[serde(default = "default_max_records")]
    pub max_records: u64,
    /// Bytes buffered for one source partition (encoded plus in progress).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: ByteSize,
    /// Age of the oldest buffered record; idle partitions flush too.
    #[serde(default = "default_max_age")]
    pub max_age: HumanDuration,
}

impl Default for FlushConfig {
    fn default() -> Self {
        Self {
            max_records: default_max_records(),
            max_bytes: default_max_bytes(),
            max_age: default_max_age(),
        }
    }
}

fn default_max_records() -> u64 {
    1_000_000
}
fn default_max_bytes() -> ByteSize {
    ByteSize(128 << 20)
}
fn default_max_age() -> HumanDuration {
    HumanDuration::from_secs(300)
}

/// Parquet sink.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetSinkConfig {
    /// Root of the table: `file:///path`, `s3://bucket/prefix`, `gs://bucket/prefix`,
    /// `az://container/prefix` (also `abfs://`, `abfss://`).
    pub url: String,
    /// Column compression.
    #[serde(default)]
    pub compression: Compression,
    /// Codec level (zstd 1–22, gzip 0–9); zstd 1 (pyarrow's default) and gzip 6 when absent.
    #[serde(default)]
    pub compression_level: Option<i32>,
    /// Most rows in one row group.
    #[serde(default = "default_row_group_size")]
    pub row_group_size: usize,
    /// Most bytes in one row group (estimated encoded size). A row group's
    /// pages are held in memory until it ends, so this bounds what a file
    /// being written holds beyond its encoded bytes.
    #[serde(default = "default_row_group_bytes")]
    pub row_group_bytes: ByteSize,
    /// Hive-style partition path from the record time, strftime syntax,
    /// e.g. `dt=%Y-%m-%d/hour=%H`, and from field values, `{field}` or
    /// `{parent.child}`, escaped as Hive does (`country={country}/dt=%Y-%m-%d`).
    /// Files go to the root when absent.
    #[serde(default)]
    pub partition_by: Option<String>,
    /// IANA timezone `partition_by` is evaluated in.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Where records with a time far from the clock go (needs
    /// `partition_by`). Absent: every record goes to its own time partition
    /// and none is counted late.
    #[serde(default)]
    pub late_data: Option<LateDataConfig>,
    /// Flush thresholds.
    #[serde(default)]
    pub flush: FlushConfig,
    /// Object-store connection settings.
    #[serde(default)]
    pub storage: StorageConfig,
}

fn default_row_group_size() -> usize {
    1_048_576
}
/// The default `row_group_bytes`: 32 MiB.
pub fn default_row_group_bytes() -> ByteSize {
    ByteSize(32 << 20)
}
fn default_timezone() -> String {
    "UTC".into()
}

/// Late-data policy of a partitioned sink: a record is *late* when its time
/// is before `now - allowed_lateness`, and is treated the same way when it is
/// after `now + allowed_future` (a producer clock or a field gone wrong).
/// Such records are counted (`tributary_records_late_total`) and placed by
/// `policy`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LateDataConfig {
    /// Where late records go.
    #[serde(default)]
    pub policy: LatePolicy,
    /// How far behind the clock a record time may be before it is late.
    pub allowed_lateness: HumanDuration,
    /// How far ahead of the clock a record time may be.
    #[serde(default = "default_allowed_future")]
    pub allowed_future: HumanDuration,
}

fn default_allowed_future() -> HumanDuration {
    HumanDuration::from_secs(300)
}

/// Which time partition a late record is written to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LatePolicy {
    /// The partition of its own record time (default).
    #[default]
    EventTime,
    /// The partition of the time it is written (processing time).
    ProcessingTime,
}

/// Object-store connection settings. Unset fields fall back to the standard
/// environment and instance-credential chain of each cloud (`AWS_*`, ...).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Endpoint override (S3-compatible servers), e.g. `http://127.0.0.1:8333`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Region.
    #[serde(default)]
    pub region: Option<String>,
    /// Static access key id.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// Static secret access key.
    #[serde(default)]
    pub secret_access_key: Option<Secret>,
    /// Session token for temporary credentials.
    #[serde(default)]
    pub session_token: Option<Secret>,
    /// Path-style requests (`endpoint/bucket/key`) instead of virtual-hosted style.
    #[serde(default)]
    pub path_style: Option<bool>,
    /// Allow plain `http://` endpoints.
    #[serde(default)]
    pub allow_http: Option<bool>,
    /// Further object_store options by their documented names
    /// (e.g. `aws_sse_kms_key_id`, `google_service_account`, `azure_storage_account_name`).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

/// The dead-letter route of a pipeline: where records that cannot be
/// converted go under `on_error = "dead_letter"`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum DeadLetterConfig {
    /// JSON-lines files under `_dead_letter/` in the sink's lake, listed by
    /// the commit of their range (the default).
    Lake {},
    /// A Kafka topic: each reject is produced with its original key, value
    /// and headers plus `tributary.*` error headers, durably, before the
    /// lake commit of its range.
    Kafka(KafkaDeadLetterConfig),
}

/// How a source partition's rejects are spread over the dead-letter
/// topic's partitions. Either way one source partition always writes to one
/// dead-letter partition, which is what makes replays detectable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterPartitioner {
    /// Source partition number modulo the dead-letter topic's partitions.
    #[default]
    SourcePartition,
    /// CRC-32C of `<topic>/<partition>` modulo the dead-letter topic's
    /// partitions (spreads several source topics more evenly).
    Hash,
}

/// The Kafka dead-letter topic route.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaDeadLetterConfig {
    /// The dead-letter topic. It must exist: Tributary does not create it.
    pub topic: String,
    /// Comma-separated `host:port` list; the source's when absent (required
    /// when the source is not Kafka).
    #[serde(default)]
    pub bootstrap_servers: Option<String>,
    /// Which dead-letter partition a source partition writes to.
    #[serde(default)]
    pub partitioner: DeadLetterPartitioner,
    /// How long one landing waits for its dead-letter records to be
    /// acknowledged (librdkafka `message.timeout.ms`) and for the scan of
    /// the dead-letter partition before producing.
    #[serde(default = "default_dead_letter_timeout")]
    pub timeout: HumanDuration,
    /// librdkafka properties of the dead-letter producer (and of its scan
    /// consumer), passed through as they are (TLS, SASL). Values of keys that
    /// look secret are never printed.
    #[serde(default)]
    pub librdkafka: BTreeMap<String, String>,
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        DeadLetterConfig::Lake {}
    }
}

fn default_dead_letter_timeout() -> HumanDuration {
    HumanDuration::from_secs(60)
}

impl fmt::Debug for KafkaDeadLetterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaDeadLetterConfig")
            .field("topic", &self.topic)
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("partitioner", &self.partitioner)
            .field("timeout", &self.timeout)
            .field("librdkafka", &redacted(&self.librdkafka))
            .finish()
    }
}
