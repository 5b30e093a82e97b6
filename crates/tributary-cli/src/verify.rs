//! `tributary verify`: audits a sink's lake against the landing invariant
//! (`docs/LANDING.md`) and, for a Kafka source, against the topic and the
//! consumer group.
//!
//! The lake-side checks are `Lake::verify_lake` (tributary-lake); the broker
//! is asked by [`broker`] (feature `kafka-source`); this module compares the
//! two, sorts findings into violations and warnings, and prints a table or,
//! with `--json`, one JSON document with stable field names (README,
//! "Verifying a lake").
//!
//! On a lake that is being written, the group's committed offsets are read
//! *before* the lake and the watermarks *after* it. A worker commits a group
//! offset only once its landing is in the lake, and watermarks only grow, so
//! landings made while `verify` runs can only put the group behind the lake
//! and the lake behind the high watermark — never raise a false violation.

#[cfg(feature = "kafka-source")]
mod broker;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};
use tracing::info;
use tributary_config::{
    HumanDuration, KafkaSourceConfig, PipelineConfig, Secret, SinkConfig, SourceConfig,
    StorageConfig,
};
use tributary_core::TopicPartition;
use tributary_lake::{
    FileKind, Lake, LakeReport, OrphanFile, PartitionReport, Problem, VerifyOptions,
};

/// Version of the `--json` document: raised when a field changes meaning or
/// goes away (new fields may appear without it).
const JSON_VERSION: u32 = 1;

/// `tributary verify` options.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("lake").required(true).args(["config", "url"])))]
pub struct VerifyArgs {
    /// Config file: verifies the sink of every pipeline (or of --pipeline)
    /// and compares Kafka sources with their topic and consumer group.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Verify only this pipeline of the config.
    #[arg(long, conflicts_with = "url", value_name = "NAME")]
    pub pipeline: Option<String>,
    /// A sink URL instead of a config (`file:///abs/path`, `s3://bucket/prefix`,
    /// `gs://…`, `az://…`): lake checks only, storage settings below.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Print one JSON document (fields in the README) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Do not read file contents: skip CRC-32C checksums and row counts.
    /// Files are still checked for existence and size (faster).
    #[arg(long)]
    pub no_checksums: bool,
    /// Exit 2 when the broker cannot be asked, instead of warning and
    /// checking the lake only.
    #[arg(long)]
    pub require_broker: bool,
    /// Longest wait for each request to the broker.
    #[arg(long, default_value = "10s", value_name = "DURATION")]
    pub broker_timeout: HumanDuration,
    #[command(flatten)]
    pub storage: StorageArgs,
}

/// Storage settings of `--url` (with `--config` they come from the sink's
/// `storage` table). The provider's own variables (`AWS_*`, `GOOGLE_*`,
/// `AZURE_*`) are read as well.
#[derive(clap::Args, Debug, Default)]
#[command(next_help_heading = "Storage of --url")]
pub struct StorageArgs {
    /// S3-compatible endpoint, e.g. `http://127.0.0.1:8333`.
    #[arg(long, env = "TRIBUTARY_STORAGE_ENDPOINT", value_name = "URL")]
    pub endpoint: Option<String>,
    /// Region.
    #[arg(long, env = "TRIBUTARY_STORAGE_REGION")]
    pub region: Option<String>,
    /// Static access key id.
    #[arg(long, env = "TRIBUTARY_STORAGE_ACCESS_KEY_ID", value_name = "ID")]
    pub access_key_id: Option<String>,
    /// Static secret access key. Prefer the variable: command lines are
    /// visible to other users.
    #[arg(
        long,
        env = "TRIBUTARY_STORAGE_SECRET_ACCESS_KEY",
        hide_env_values = true,
        value_name = "KEY",
        value_parser = secret
    )]
    pub secret_access_key: Option<Secret>,
    /// Session token of temporary credentials. Prefer the variable.
    #[arg(
        long,
        env = "TRIBUTARY_STORAGE_SESSION_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        value_parser = secret
    )]
    pub session_token: Option<Secret>,
    /// Path-style requests (`endpoint/bucket/key`).
    #[arg(long, env = "TRIBUTARY_STORAGE_PATH_STYLE")]
    pub path_style: bool,
    /// Allow a plain-http endpoint.
    #[arg(long, env = "TRIBUTARY_STORAGE_ALLOW_HTTP")]
    pub allow_http: bool,
    /// A further object_store option by name (`aws_sse_kms_key_id=…`,
    /// `google_service_account=…`); repeatable.
    #[arg(long = "storage-option", value_name = "KEY=VALUE", value_parser = key_value)]
    pub options: Vec<(String, String)>,
}

fn secret(s: &str) -> Result<Secret, String> {
    Ok(Secret::new(s))
}

fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

impl StorageArgs {
    fn is_set(&self) -> bool {
        self.endpoint.is_some()
            || self.region.is_some()
            || self.access_key_id.is_some()
            || self.secret_access_key.is_some()
            || self.session_token.is_some()
            || self.path_style
            || self.allow_http
            || !self.options.is_empty()
    }

    fn to_config(&self) -> StorageConfig {
        StorageConfig {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            session_token: self.session_token.clone(),
            path_style: self.path_style.then_some(true),
            allow_http: self.allow_http.then_some(true),
            options: self.options.iter().cloned().collect(),
        }
    }
}

/// `tributary verify`: prints the result and returns the exit status
/// (0 consistent, 1 violation, 2 could not check).
pub async fn verify(args: VerifyArgs) -> ExitCode {
    match check(&args).await {
        Ok(v) => {
            if args.json {
                println!("{:#}", v.to_json());
            } else {
                print!("{}", v.to_text());
            }
            if v.consistent() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            if args.json {
                let doc = json!({
                    "version": JSON_VERSION,
                    "status": "error",
                    "consistent": false,
                    "error": format!("{e:#}"),
                });
                println!("{doc:#}");
            }
            eprintln!("error: could not verify: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// How the check runs.
#[derive(Clone, Copy, Debug)]
struct Options {
    files: VerifyOptions,
    require_broker: bool,
    broker_timeout: Duration,
}

/// One lake to check.
struct Target {
    pipeline: Option<String>,
    url: String,
    lake: Lake,
    /// The Kafka source the lake is compared with.
    kafka: Option<KafkaSourceConfig>,
    /// Why the broker is not asked, without a Kafka source.
    no_broker: Option<&'static str>,
}

async fn check(args: &VerifyArgs) -> anyhow::Result<Verification> {
    let options = Options {
        files: if args.no_checksums {
            VerifyOptions::sizes_only()
        } else {
            VerifyOptions::contents()
        },
        require_broker: args.require_broker,
        broker_timeout: args.broker_timeout.0,
    };
    let mut lakes = Vec::new();
    for target in targets(args)? {
        lakes.push(check_target(target, &options).await?);
    }
    Ok(Verification {
        lakes,
        files: options.files,
    })
}

fn targets(args: &VerifyArgs) -> anyhow::Result<Vec<Target>> {
    if let Some(url) = &args.url {
        let lake = Lake::open(url, &args.storage.to_config())
            .with_context(|| format!("cannot open {url}"))?;
        return Ok(vec![Target {
            pipeline: None,
            url: url.clone(),
            lake,
            kafka: None,
            no_broker: Some("no source: --url"),
        }]);
    }
    let Some(path) = &args.config else {
        bail!("give --config or --url");
    };
    if args.storage.is_set() {
        bail!(
            "storage flags and TRIBUTARY_STORAGE_* variables apply to --url; with --config the \
             sink's `storage` settings (and TRIBUTARY_PIPELINES__…__SINK__STORAGE__…) are used"
        );
    }
    let config = tributary_config::load(path)
        .with_context(|| format!("{} cannot be loaded", path.display()))?;
    tributary_config::validate(&config)
        .with_context(|| format!("{} is not valid", path.display()))?;
    let selected: Vec<(usize, &PipelineConfig)> = match &args.pipeline {
        Some(name) => {
            let found = config
                .pipelines
                .iter()
                .enumerate()
                .find(|(_, p)| &p.name == name);
            let names: Vec<&str> = config.pipelines.iter().map(|p| p.name.as_str()).collect();
            vec![found.ok_or_else(|| {
                anyhow!(
                    "{} has no pipeline {name:?} (it has: {})",
                    path.display(),
                    names.join(", ")
                )
            })?]
        }
        None => config.pipelines.iter().enumerate().collect(),
    };
    if selected.is_empty() {
        bail!("{} has no pipelines", path.display());
    }
    selected
        .into_iter()
        .map(|(i, p)| {
            let SinkConfig::Parquet(sink) = &p.sink;
            let lake = Lake::open(&sink.url, &sink.storage)
                .with_context(|| format!("pipelines.{i}.sink.url"))?;
            let (kafka, no_broker) = match &p.source {
                SourceConfig::Kafka(k) => (Some(k.clone()), None),
                SourceConfig::Datagen(_) => (None, Some("datagen source")),
                SourceConfig::File(_) => (None, Some("file source")),
            };
            Ok(Target {
                pipeline: Some(p.name.clone()),
                url: sink.url.clone(),
                lake,
                kafka,
                no_broker,
            })
        })
        .collect()
}

/// A local lake whose directory does not exist is a wrong URL, not an empty
/// lake.
fn ensure_local_root(url: &str) -> anyhow::Result<()> {
    let Some(rest) = url.strip_prefix("file://") else {
        return Ok(());
    };
    let path = rest.strip_prefix("localhost").unwrap_or(rest);
    if !path.contains('%') && !Path::new(path).is_dir() {
        bail!("{url}: {path} is not a directory");
    }
    Ok(())
}

async fn check_target(target: Target, options: &Options) -> anyhow::Result<LakeCheck> {
    ensure_local_root(&target.url)?;
    let pipeline = target.pipeline.clone();
    info!(url = %target.url, pipeline = pipeline.as_deref().unwrap_or("-"), "Verifying lake.");
    let lake_error = || format!("cannot read the lake at {}", target.url);
    let mut broker = match target.no_broker {
        Some(reason) => BrokerStatus::NotApplicable(reason.to_string()),
        None => BrokerStatus::Skipped("not asked".into()),
    };
    #[cfg(feature = "kafka-source")]
    let mut session = None;
    if let Some(kafka) = &target.kafka {
        // The group's offsets before the lake (see the module docs).
        let known = target.lake.partitions().await.with_context(lake_error)?;
        #[cfg(feature = "kafka-source")]
        match group_snapshot(kafka, pipeline.as_deref(), known, options).await {
            Ok(s) => {
                broker = BrokerStatus::Checked {
                    group_id: kafka.group_id.clone(),
                };
                session = Some(s);
            }
            Err(e) if options.require_broker => {
                return Err(e.context("the broker is required (--require-broker)"));
            }
            Err(e) => {
                let error = format!("{e:#}");
                tracing::warn!(
                    url = %target.url,
                    %error,
                    "Broker not reachable; checking the lake only."
                );
                broker = BrokerStatus::Skipped(error);
            }
        }
        #[cfg(not(feature = "kafka-source"))]
        {
            let _ = (kafka, known);
            let reason = "this binary was built without the kafka-source feature";
            if options.require_broker {
                bail!("the broker is required (--require-broker) but {reason}");
            }
            broker = BrokerStatus::Skipped(reason.into());
        }
    }

    let report = target
        .lake
        .verify_lake(&options.files)
        .await
        .with_context(lake_error)?;

    #[allow(unused_mut)]
    let mut view = BrokerView::default();
    #[cfg(feature = "kafka-source")]
    if let Some((client, snapshot)) = session {
        // Watermarks after the lake (see the module docs).
        let mut partitions = snapshot.partitions.clone();
        partitions.extend(report.partitions.iter().map(|p| p.partition.clone()));
        let marks = tokio::task::spawn_blocking(move || {
            partitions
                .into_iter()
                .map(|tp| {
                    let w = client.watermarks(&tp);
                    (tp, w)
                })
                .collect::<Vec<_>>()
        })
        .await
        .context("the broker task failed")?;
        for (tp, marks) in marks {
            let offsets = match marks {
                Ok((low, high)) => Ok(BrokerOffsets {
                    low,
                    high,
                    group: snapshot.group.get(&tp).copied().flatten(),
                }),
                Err(e) if options.require_broker => {
                    bail!("{tp}: {e} (the broker is required: --require-broker)")
                }
                Err(e) => Err(e),
            };
            view.offsets.insert(tp, offsets);
        }
        if options.require_broker && !snapshot.topic_errors.is_empty() {
            bail!(
                "{} (the broker is required: --require-broker)",
                snapshot.topic_errors.join("; ")
            );
        }
        view.errors = snapshot.topic_errors;
    }
    Ok(assemble(pipeline, target.url, report, broker, view))
}

#[cfg(feature = "kafka-source")]
async fn group_snapshot(
    kafka: &KafkaSourceConfig,
    pipeline: Option<&str>,
    known: Vec<TopicPartition>,
    options: &Options,
) -> anyhow::Result<(std::sync::Arc<broker::Broker>, broker::GroupSnapshot)> {
    let mut topics: std::collections::BTreeSet<String> = kafka
        .topics
        .iter()
        .filter(|t| !t.starts_with('^'))
        .cloned()
        .collect();
    topics.extend(known.iter().map(|tp| tp.topic.to_string()));
    let client = std::sync::Arc::new(broker::Broker::new(
        kafka,
        pipeline.unwrap_or("url"),
        options.broker_timeout,
    )?);
    let asking = client.clone();
    let snapshot = tokio::task::spawn_blocking(move || asking.snapshot(&topics, &known))
        .await
        .context("the broker task failed")??;
    Ok((client, snapshot))
}

/// What the broker said about one partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct BrokerOffsets {
    /// Low watermark: the oldest offset still in the topic.
    low: i64,
    /// High watermark: the offset the next produced record gets.
    high: i64,
    /// The group's committed offset (next offset to read), if it has one.
    group: Option<i64>,
}

/// Everything the broker said, by partition.
#[derive(Debug, Default)]
struct BrokerView {
    offsets: BTreeMap<TopicPartition, Result<BrokerOffsets, String>>,
    /// Errors not about one partition (a topic the broker does not know).
    errors: Vec<String>,
}

/// Whether the lake was compared with the broker.
#[derive(Clone, Debug, PartialEq, Eq)]
enum BrokerStatus {
    /// Compared with the topic's watermarks and this group's offsets.
    Checked { group_id: String },
    /// The source is a Kafka source, but the broker could not be asked.
    Skipped(String),
    /// There is no broker to ask (no Kafka source, or `--url`).
    NotApplicable(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Severity {
    Warning,
    Violation,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Violation => "violation",
        }
    }
}

/// One thing `verify` reports.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Finding {
    severity: Severity,
    /// Stable snake_case name.
    kind: &'static str,
    partition: Option<TopicPartition>,
    /// The commit concerned.
    seq: Option<u64>,
    /// The offsets concerned (inclusive).
    first_offset: Option<i64>,
    last_offset: Option<i64>,
    /// The file or commit record concerned.
    path: Option<String>,
    message: String,
}

impl Finding {
    fn new(severity: Severity, kind: &'static str, message: String) -> Self {
        Self {
            severity,
            kind,
            partition: None,
            seq: None,
            first_offset: None,
            last_offset: None,
            path: None,
            message,
        }
    }

    fn on(mut self, tp: &TopicPartition) -> Self {
        self.partition = Some(tp.clone());
        self
    }

    fn offsets(mut self, first: i64, last: i64) -> Self {
        self.first_offset = Some(first);
        self.last_offset = Some(last);
        self
    }

    fn from_problem(tp: &TopicPartition, p: &Problem) -> Self {
        Self {
            severity: Severity::Violation,
            kind: p.kind.as_str(),
            partition: Some(tp.clone()),
            seq: p.seq,
            first_offset: p.first_offset,
            last_offset: p.last_offset,
            path: Some(p.path.clone()),
            message: p.message.clone(),
        }
    }

    fn from_orphan(o: &OrphanFile) -> Self {
        let what = match o.kind {
            Some(FileKind::Data) => "data file",
            Some(FileKind::DeadLetter) => "dead-letter file",
            None => "file",
        };
        let mut f = match &o.intent {
            Some(intent) => Finding::new(
                Severity::Warning,
                "pending_file",
                format!(
                    "{what} not committed yet, named by intent {intent}: a landing in flight, \
                     or left by a crash for the partition's next recovery to delete"
                ),
            ),
            None => Finding::new(
                Severity::Violation,
                "orphan_file",
                format!(
                    "{what} of {} bytes that no commit lists{}",
                    o.bytes,
                    if o.kind == Some(FileKind::Data) {
                        ": readers that glob *.parquet read it"
                    } else {
                        ""
                    }
                ),
            ),
        };
        f.partition = o.partition.clone();
        f.first_offset = o.first_offset;
        f.path = Some(o.path.clone());
        f
    }

    /// `orders/1 commit 3 offsets 100..=199 <path>: <message> [<kind>]`.
    fn to_line(&self) -> String {
        let mut line = String::new();
        if let Some(tp) = &self.partition {
            let _ = write!(line, "{tp} ");
        }
        if let Some(seq) = self.seq {
            let _ = write!(line, "commit {seq} ");
        }
        match (self.first_offset, self.last_offset) {
            (Some(first), Some(last)) => {
                let _ = write!(line, "offsets {first}..={last} ");
            }
            (Some(first), None) => {
                let _ = write!(line, "from offset {first} ");
            }
            _ => {}
        }
        if let Some(path) = &self.path {
            let _ = write!(line, "{path}: ");
        } else if !line.is_empty() {
            line.pop();
            line.push_str(": ");
        }
        let _ = write!(line, "{} [{}]", self.message, self.kind);
        line
    }

    fn to_json(&self) -> Value {
        json!({
            "severity": self.severity.as_str(),
            "kind": self.kind,
            "topic": self.partition.as_ref().map(|tp| tp.topic.to_string()),
            "partition": self.partition.as_ref().map(|tp| tp.partition),
            "seq": self.seq,
            "first_offset": self.first_offset,
            "last_offset": self.last_offset,
            "path": self.path,
            "message": self.message,
        })
    }
}

/// Compares a partition's landed range (`first..next`) with what the broker
/// says. Lag (the group behind the lake, the lake behind the topic) is not a
/// finding.
fn compare_with_broker(
    tp: &TopicPartition,
    first: Option<i64>,
    next: Option<i64>,
    b: &BrokerOffsets,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let (Some(first), Some(next)) = (first, next) else {
        if b.high > b.low {
            out.push(
                Finding::new(
                    Severity::Warning,
                    "nothing_landed",
                    format!(
                        "the topic holds offsets {}..={} and nothing of this partition has landed",
                        b.low,
                        b.high - 1
                    ),
                )
                .on(tp)
                .offsets(b.low, b.high - 1),
            );
        }
        if let Some(group) = b.group {
            out.push(
                Finding::new(
                    Severity::Warning,
                    "group_offset_without_landing",
                    format!(
                        "the group committed offset {group} but nothing of this partition has \
                         landed: offsets before {group} are not in this lake (a new sink URL \
                         for an existing group?)"
                    ),
                )
                .on(tp),
            );
        }
        return out;
    };
    if next > b.high {
        out.push(
            Finding::new(
                Severity::Violation,
                "beyond_high_watermark",
                format!(
                    "the lake holds offsets up to {} but the topic's high watermark is {}: \
                     offsets {}..={} do not exist in this topic (recreated topic, other cluster?)",
                    next - 1,
                    b.high,
                    b.high.max(first),
                    next - 1
                ),
            )
            .on(tp)
            .offsets(b.high.max(first), next - 1),
        );
    }
    if let Some(group) = b.group {
        if group > next {
            out.push(
                Finding::new(
                    Severity::Violation,
                    "group_offset_beyond_landed",
                    format!(
                        "the group committed offset {group} but the lake ends at {}: offsets \
                         {next}..={} were committed to Kafka and never landed",
                        next - 1,
                        group - 1
                    ),
                )
                .on(tp)
                .offsets(next, group - 1),
            );
        }
    }
    if first > b.low {
        out.push(
            Finding::new(
                Severity::Warning,
                "unlanded_before_first",
                format!(
                    "offsets {}..={} are in the topic but were never landed: the lake starts at \
                     {first} (start = \"latest\", or the lake began after them)",
                    b.low,
                    first - 1
                ),
            )
            .on(tp)
            .offsets(b.low, first - 1),
        );
    }
    if next < b.low {
        out.push(
            Finding::new(
                Severity::Warning,
                "lost_to_retention",
                format!(
                    "the lake ends at {} but the topic now starts at {}: offsets {next}..={} \
                     were deleted by retention before they landed",
                    next - 1,
                    b.low,
                    b.low - 1
                ),
            )
            .on(tp)
            .offsets(next, b.low - 1),
        );
    }
    out
}

/// One partition's row.
#[derive(Debug)]
struct PartitionCheck {
    lake: PartitionReport,
    broker: Option<BrokerOffsets>,
    findings: Vec<Finding>,
}

impl PartitionCheck {
    fn status(&self) -> &'static str {
        match self.findings.iter().map(|f| f.severity).max() {
            None => "ok",
            Some(s) => s.as_str(),
        }
    }
}

/// One lake's result.
#[derive(Debug)]
struct LakeCheck {
    pipeline: Option<String>,
    url: String,
    broker: BrokerStatus,
    partitions: Vec<PartitionCheck>,
    orphans: Vec<OrphanFile>,
    /// Findings not tied to a partition of the table.
    findings: Vec<Finding>,
}

impl LakeCheck {
    fn all_findings(&self) -> impl Iterator<Item = &Finding> {
        self.partitions
            .iter()
            .flat_map(|p| p.findings.iter())
            .chain(self.findings.iter())
    }

    fn count(&self, severity: Severity) -> usize {
        self.all_findings()
            .filter(|f| f.severity == severity)
            .count()
    }

    fn status(&self) -> &'static str {
        match self.all_findings().map(|f| f.severity).max() {
            None => "ok",
            Some(s) => s.as_str(),
        }
    }
}

/// Turns the lake's report and the broker's answers into findings.
fn assemble(
    pipeline: Option<String>,
    url: String,
    report: LakeReport,
    broker: BrokerStatus,
    view: BrokerView,
) -> LakeCheck {
    let mut findings = Vec::new();
    if report.partitions.is_empty() && report.orphans.is_empty() {
        findings.push(Finding::new(
            Severity::Warning,
            "empty_lake",
            "no commit log and no files: nothing has landed here (is the URL right?)".into(),
        ));
    }
    if let BrokerStatus::Skipped(reason) = &broker {
        findings.push(Finding::new(
            Severity::Warning,
            "broker_unreachable",
            format!("not compared with the broker: {reason}"),
        ));
    }
    for e in &view.errors {
        findings.push(Finding::new(Severity::Warning, "broker_error", e.clone()));
    }

    let mut rows: BTreeMap<TopicPartition, PartitionCheck> = report
        .partitions
        .into_iter()
        .map(|lake| {
            let tp = lake.partition.clone();
            let mut findings: Vec<Finding> = lake
                .problems
                .iter()
                .map(|p| Finding::from_problem(&tp, p))
                .collect();
            if lake.intents > 0 {
                findings.push(
                    Finding::new(
                        Severity::Warning,
                        "intents_pending",
                        format!(
                            "{} landing intent(s) stored: a landing in flight, or one a crash \
                             left for the partition's next recovery",
                            lake.intents
                        ),
                    )
                    .on(&tp),
                );
            }
            let row = PartitionCheck {
                lake,
                broker: None,
                findings,
            };
            (tp, row)
        })
        .collect();
    for (tp, offsets) in view.offsets {
        let row = rows.entry(tp.clone()).or_insert_with(|| PartitionCheck {
            lake: PartitionReport::empty(tp.clone()),
            broker: None,
            findings: Vec::new(),
        });
        match offsets {
            Ok(b) => {
                let found =
                    compare_with_broker(&tp, row.lake.first_offset, row.lake.next_offset(), &b);
                row.findings.extend(found);
                row.broker = Some(b);
            }
            Err(e) => row
                .findings
                .push(Finding::new(Severity::Warning, "broker_error", e).on(&tp)),
        }
    }
    for o in &report.orphans {
        let f = Finding::from_orphan(o);
        match o.partition.as_ref().and_then(|tp| rows.get_mut(tp)) {
            Some(row) => row.findings.push(f),
            None => findings.push(f),
        }
    }
    LakeCheck {
        pipeline,
        url,
        broker,
        partitions: rows.into_values().collect(),
        orphans: report.orphans,
        findings,
    }
}

/// The result of one `tributary verify`.
#[derive(Debug)]
struct Verification {
    lakes: Vec<LakeCheck>,
    files: VerifyOptions,
}

impl Verification {
    fn violations(&self) -> usize {
        self.lakes
            .iter()
            .map(|l| l.count(Severity::Violation))
            .sum()
    }

    fn warnings(&self) -> usize {
        self.lakes.iter().map(|l| l.count(Severity::Warning)).sum()
    }

    fn consistent(&self) -> bool {
        self.violations() == 0
    }

    fn to_json(&self) -> Value {
        let status = if self.consistent() {
            "consistent"
        } else {
            "inconsistent"
        };
        json!({
            "version": JSON_VERSION,
            "status": status,
            "consistent": self.consistent(),
            "violations": self.violations(),
            "warnings": self.warnings(),
            "checked": {
                "checksums": self.files.checksums,
                "row_counts": self.files.row_counts,
            },
            "lakes": self.lakes.iter().map(lake_json).collect::<Vec<_>>(),
        })
    }

    fn to_text(&self) -> String {
        let mut out = String::new();
        for lake in &self.lakes {
            lake_text(lake, &mut out);
        }
        let violations = self.violations();
        let warnings = self.warnings();
        let checked = if self.files.checksums {
            "checksums and row counts verified"
        } else {
            "sizes only (--no-checksums)"
        };
        let _ = writeln!(
            out,
            "{}: {violations} violation{}, {warnings} warning{}; {checked}.",
            if violations == 0 {
                "CONSISTENT"
            } else {
                "INCONSISTENT"
            },
            plural(violations),
            plural(warnings),
        );
        out
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn lake_json(l: &LakeCheck) -> Value {
    let totals =
        |f: fn(&PartitionReport) -> u64| -> u64 { l.partitions.iter().map(|p| f(&p.lake)).sum() };
    let (broker_status, group_id, reason) = match &l.broker {
        BrokerStatus::Checked { group_id } => ("checked", Some(group_id.as_str()), None),
        BrokerStatus::Skipped(r) => ("skipped", None, Some(r.as_str())),
        BrokerStatus::NotApplicable(r) => ("not_applicable", None, Some(r.as_str())),
    };
    json!({
        "pipeline": l.pipeline,
        "url": l.url,
        "status": l.status(),
        "broker": {
            "status": broker_status,
            "group_id": group_id,
            "reason": reason,
        },
        "totals": {
            "partitions": l.partitions.len(),
            "commits": totals(|p| p.commits),
            "rows": totals(|p| p.rows),
            "dead_lettered": totals(|p| p.dead_lettered),
            "skipped": totals(|p| p.skipped),
            "files": totals(|p| p.files),
            "bytes": totals(|p| p.bytes),
            "orphans": l.orphans.len(),
        },
        "partitions": l.partitions.iter().map(partition_json).collect::<Vec<_>>(),
        "orphans": l.orphans.iter().map(orphan_json).collect::<Vec<_>>(),
        "findings": l.findings.iter().map(Finding::to_json).collect::<Vec<_>>(),
    })
}

fn partition_json(p: &PartitionCheck) -> Value {
    let r = &p.lake;
    let next = r.next_offset();
    let broker = p.broker.map(|b| {
        json!({
            "low_watermark": b.low,
            "high_watermark": b.high,
            "group_offset": b.group,
            "landing_lag": b.high - next.unwrap_or(b.low).max(b.low),
            "group_lag": next.zip(b.group).map(|(n, g)| n - g),
        })
    });
    json!({
        "topic": r.partition.topic.to_string(),
        "partition": r.partition.partition,
        "status": p.status(),
        "commits": r.commits,
        "fences": r.fences,
        "first_offset": r.first_offset,
        "last_offset": r.last_offset,
        "next_offset": next,
        "rows": r.rows,
        "dead_lettered": r.dead_lettered,
        "skipped": r.skipped,
        "files": r.files,
        "bytes": r.bytes,
        "intents": r.intents,
        "broker": broker,
        "findings": p.findings.iter().map(Finding::to_json).collect::<Vec<_>>(),
    })
}

fn orphan_json(o: &OrphanFile) -> Value {
    let kind = o.kind.map(|k| match k {
        FileKind::Data => "data",
        FileKind::DeadLetter => "dead_letter",
    });
    json!({
        "path": o.path,
        "bytes": o.bytes,
        "kind": kind,
        "topic": o.partition.as_ref().map(|tp| tp.topic.to_string()),
        "partition": o.partition.as_ref().map(|tp| tp.partition),
        "first_offset": o.first_offset,
        "intent": o.intent,
    })
}

fn lake_text(l: &LakeCheck, out: &mut String) {
    let _ = write!(out, "Lake {}", l.url);
    if let Some(p) = &l.pipeline {
        let _ = write!(out, " (pipeline {p})");
    }
    let _ = writeln!(
        out,
        "\n  broker: {}",
        match &l.broker {
            BrokerStatus::Checked { group_id } =>
                format!("compared with the topic's watermarks and group {group_id:?}"),
            BrokerStatus::Skipped(r) => format!("skipped ({r})"),
            BrokerStatus::NotApplicable(r) => format!("not applicable ({r})"),
        }
    );
    let with_broker = l.partitions.iter().any(|p| p.broker.is_some());
    let mut header = vec![
        "PARTITION",
        "COMMITS",
        "FIRST..LAST",
        "ROWS",
        "DEAD-LETTERED",
        "FILES",
    ];
    if with_broker {
        header.extend(["KAFKA LOW..HIGH", "GROUP"]);
    }
    header.push("STATUS");
    let mut rows: Vec<Vec<String>> = vec![header.into_iter().map(String::from).collect()];
    for p in &l.partitions {
        let r = &p.lake;
        let mut row = vec![
            r.partition.to_string(),
            r.commits.to_string(),
            match (r.first_offset, r.last_offset) {
                (Some(first), Some(last)) => format!("{first}..{last}"),
                _ => "-".into(),
            },
            r.rows.to_string(),
            r.dead_lettered.to_string(),
            r.files.to_string(),
        ];
        if with_broker {
            match &p.broker {
                Some(b) => {
                    row.push(format!("{}..{}", b.low, b.high));
                    row.push(b.group.map_or("-".into(), |g| g.to_string()));
                }
                None => row.extend(["-".to_string(), "-".to_string()]),
            }
        }
        row.push(p.status().to_uppercase());
        rows.push(row);
    }
    if l.partitions.is_empty() {
        let _ = writeln!(out, "  no partitions");
    } else {
        table(&rows, out);
    }
    for (severity, title) in [
        (Severity::Violation, "Violations"),
        (Severity::Warning, "Warnings"),
    ] {
        let listed: Vec<&Finding> = l
            .all_findings()
            .filter(|f| f.severity == severity)
            .collect();
        if listed.is_empty() {
            continue;
        }
        let _ = writeln!(out, "  {title} ({}):", listed.len());
        for f in listed {
            let _ = writeln!(out, "    {}", f.to_line());
        }
    }
    let _ = writeln!(out);
}

/// Left-aligned columns two spaces apart, indented by two.
fn table(rows: &[Vec<String>], out: &mut String) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let mut line = String::from(" ");
        for (cell, width) in row.iter().zip(&widths) {
            let _ = write!(line, " {cell:<width$} ");
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

#[cfg(test)]
mod tests {
    use bytes_free_landing::*;

    use super::*;

    /// Lakes for the tests, landed through the real protocol with fake file
    /// contents (not Parquet: the tests check sizes and checksums).
    mod bytes_free_landing {
        use tributary_config::StorageConfig;
        use tributary_core::TopicPartition;
        use tributary_lake::{
            data_file_path, new_writer_id, CommitRecord, FileKind, Lake, Landing, PendingFile,
        };

        pub fn local_lake() -> (tempfile::TempDir, Lake, String) {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("file://{}", dir.path().display());
            let lake = Lake::open(&url, &StorageConfig::default()).unwrap();
            (dir, lake, url)
        }

        /// Lands `ranges` (inclusive) into `tp`, one data file each.
        pub async fn land(
            lake: &Lake,
            tp: &TopicPartition,
            ranges: &[(i64, i64)],
        ) -> Vec<CommitRecord> {
            let w = new_writer_id("test");
            let mut log = lake.recover(tp, &w).await.unwrap();
            let mut out = Vec::new();
            for &(first, last) in ranges {
                let rows = (last - first + 1) as u64;
                let landing = Landing {
                    first_offset: first,
                    last_offset: last,
                    rows,
                    dead_lettered: 0,
                    skipped: 0,
                    files: vec![PendingFile {
                        path: data_file_path(None, tp, first, &w),
                        kind: FileKind::Data,
                        rows,
                        bytes: format!("rows {first}..={last}").into_bytes().into(),
                    }],
                    dead_letter_topic: None,
                };
                out.push(lake.land(&mut log, &w, landing).await.unwrap());
            }
            out
        }
    }

    fn tp(p: i32) -> TopicPartition {
        TopicPartition::new("orders", p)
    }

    fn kinds(findings: &[Finding]) -> Vec<(&'static str, Severity)> {
        findings.iter().map(|f| (f.kind, f.severity)).collect()
    }

    fn offsets(low: i64, high: i64, group: Option<i64>) -> BrokerOffsets {
        BrokerOffsets { low, high, group }
    }

    #[test]
    fn group_offsets_beyond_the_lake_are_violations_and_lag_is_not() {
        let t = tp(0);
        // Landed 0..=99 (next 100); topic 0..200.
        assert!(
            compare_with_broker(&t, Some(0), Some(100), &offsets(0, 200, Some(100))).is_empty()
        );
        assert!(compare_with_broker(&t, Some(0), Some(100), &offsets(0, 200, Some(40))).is_empty());
        assert!(compare_with_broker(&t, Some(0), Some(100), &offsets(0, 100, None)).is_empty());
        let f = compare_with_broker(&t, Some(0), Some(100), &offsets(0, 200, Some(150)));
        assert_eq!(
            kinds(&f),
            vec![("group_offset_beyond_landed", Severity::Violation)]
        );
        assert_eq!(
            (f[0].first_offset, f[0].last_offset),
            (Some(100), Some(149))
        );
        assert_eq!(f[0].partition, Some(t.clone()));
        assert!(f[0].message.contains("100..=149"), "{}", f[0].message);
    }

    #[test]
    fn a_lake_ahead_of_the_topic_is_a_violation() {
        let t = tp(1);
        let f = compare_with_broker(&t, Some(0), Some(120), &offsets(0, 100, Some(120)));
        assert_eq!(
            kinds(&f),
            vec![("beyond_high_watermark", Severity::Violation)]
        );
        assert_eq!(
            (f[0].first_offset, f[0].last_offset),
            (Some(100), Some(119))
        );
    }

    #[test]
    fn records_before_the_lake_or_lost_to_retention_are_warnings() {
        let t = tp(2);
        // start = latest: the lake begins at 500 although the topic holds 0..
        let f = compare_with_broker(&t, Some(500), Some(600), &offsets(0, 700, Some(600)));
        assert_eq!(
            kinds(&f),
            vec![("unlanded_before_first", Severity::Warning)]
        );
        assert_eq!((f[0].first_offset, f[0].last_offset), (Some(0), Some(499)));
        // Retention deleted what the lake already holds: nothing to say.
        assert!(compare_with_broker(&t, Some(0), Some(600), &offsets(300, 700, None)).is_empty());
        // Retention deleted offsets the lake never got.
        let f = compare_with_broker(&t, Some(0), Some(600), &offsets(650, 700, Some(600)));
        assert_eq!(kinds(&f), vec![("lost_to_retention", Severity::Warning)]);
        assert_eq!(
            (f[0].first_offset, f[0].last_offset),
            (Some(600), Some(649))
        );
        // Nothing landed.
        let f = compare_with_broker(&t, None, None, &offsets(0, 10, Some(4)));
        assert_eq!(
            kinds(&f),
            vec![
                ("nothing_landed", Severity::Warning),
                ("group_offset_without_landing", Severity::Warning)
            ]
        );
        assert!(compare_with_broker(&t, None, None, &offsets(7, 7, None)).is_empty());
    }

    #[tokio::test]
    async fn lake_problems_and_orphans_become_findings() {
        let (dir, lake, url) = local_lake();
        let commits = land(&lake, &tp(0), &[(0, 9), (10, 19)]).await;
        land(&lake, &tp(1), &[(0, 4)]).await;
        // A corrupt file, and a stray file of partition 1.
        let victim = &commits[1].files[0].path;
        let mut bytes = std::fs::read(dir.path().join(victim)).unwrap();
        bytes[0] ^= 1;
        std::fs::write(dir.path().join(victim), bytes).unwrap();
        let stray = tributary_lake::data_file_path(None, &tp(1), 5, "w_1_abcdef12");
        std::fs::write(dir.path().join(&stray), b"stray").unwrap();

        let opts = VerifyOptions {
            checksums: true,
            row_counts: false,
        };
        let report = lake.verify_lake(&opts).await.unwrap();
        let view = BrokerView {
            offsets: BTreeMap::from([
                (tp(0), Ok(offsets(0, 20, Some(20)))),
                (tp(2), Ok(offsets(0, 3, None))),
            ]),
            errors: vec![],
        };
        let group = BrokerStatus::Checked {
            group_id: "g".into(),
        };
        let check = assemble(Some("p".into()), url.clone(), report, group, view);
        let v = Verification {
            lakes: vec![check],
            files: opts,
        };
        assert!(!v.consistent());
        assert_eq!((v.violations(), v.warnings()), (2, 1));
        let l = &v.lakes[0];
        let statuses: Vec<&str> = l.partitions.iter().map(PartitionCheck::status).collect();
        assert_eq!(statuses, vec!["violation", "violation", "warning"]);
        assert_eq!(
            kinds(&l.partitions[0].findings),
            vec![("checksum_mismatch", Severity::Violation)]
        );
        assert_eq!(
            l.partitions[0].findings[0].path.as_deref(),
            Some(victim.as_str())
        );
        assert_eq!(
            kinds(&l.partitions[1].findings),
            vec![("orphan_file", Severity::Violation)]
        );
        assert_eq!(
            kinds(&l.partitions[2].findings),
            vec![("nothing_landed", Severity::Warning)]
        );

        let text = v.to_text();
        assert!(text.contains(victim), "{text}");
        assert!(text.contains(&stray), "{text}");
        assert!(
            text.contains("INCONSISTENT: 2 violations, 1 warning"),
            "{text}"
        );
        assert!(text.contains("KAFKA LOW..HIGH"), "{text}");

        let doc = v.to_json();
        assert_eq!(doc["status"], "inconsistent");
        assert_eq!(doc["consistent"], false);
        let lake0 = &doc["lakes"][0];
        assert_eq!(lake0["url"], url.as_str());
        assert_eq!(lake0["broker"]["status"], "checked");
        assert_eq!(lake0["totals"]["partitions"], 3);
        assert_eq!(lake0["orphans"][0]["path"], stray.as_str());
        assert_eq!(lake0["orphans"][0]["kind"], "data");
        assert_eq!(lake0["orphans"][0]["first_offset"], 5);
        let p0 = &lake0["partitions"][0];
        assert_eq!(p0["topic"], "orders");
        assert_eq!(p0["next_offset"], 20);
        assert_eq!(p0["broker"]["group_lag"], 0);
        assert_eq!(p0["broker"]["landing_lag"], 0);
        let f = &p0["findings"][0];
        assert_eq!(f["kind"], "checksum_mismatch");
        assert_eq!(f["severity"], "violation");
        assert_eq!(f["path"], victim.as_str());
        assert_eq!(
            (f["seq"].as_u64(), f["first_offset"].as_i64()),
            (Some(1), Some(10))
        );
    }

    #[tokio::test]
    async fn a_clean_lake_is_consistent_and_an_empty_one_warns() {
        let (_dir, lake, url) = local_lake();
        let empty = lake.verify_lake(&VerifyOptions::contents()).await.unwrap();
        let na = BrokerStatus::NotApplicable("no source: --url".into());
        let check = assemble(None, url.clone(), empty, na.clone(), BrokerView::default());
        assert_eq!(
            kinds(&check.findings),
            vec![("empty_lake", Severity::Warning)]
        );

        land(&lake, &tp(0), &[(0, 9)]).await;
        let report = lake
            .verify_lake(&VerifyOptions::sizes_only())
            .await
            .unwrap();
        let v = Verification {
            lakes: vec![assemble(None, url, report, na, BrokerView::default())],
            files: VerifyOptions::sizes_only(),
        };
        assert!(v.consistent());
        assert_eq!(v.warnings(), 0);
        assert_eq!(v.to_json()["status"], "consistent");
        assert_eq!(
            v.to_json()["lakes"][0]["partitions"][0]["broker"],
            Value::Null
        );
        let text = v.to_text();
        assert!(
            text.contains("CONSISTENT: 0 violations, 0 warnings"),
            "{text}"
        );
        assert!(!text.contains("KAFKA"), "{text}");
    }

    #[tokio::test]
    async fn a_missing_local_directory_cannot_be_checked() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/nope", dir.path().display());
        let args = VerifyArgs {
            config: None,
            pipeline: None,
            url: Some(url),
            json: false,
            no_checksums: false,
            require_broker: false,
            broker_timeout: HumanDuration(Duration::from_secs(1)),
            storage: StorageArgs::default(),
        };
        let e = check(&args).await.unwrap_err();
        assert!(format!("{e:#}").contains("is not a directory"), "{e:#}");
    }

    #[test]
    fn findings_read_as_one_line() {
        let f = Finding::new(
            Severity::Violation,
            "offset_gap",
            "offsets 5..=9 are in no commit".into(),
        )
        .on(&tp(3))
        .offsets(10, 19);
        let f = Finding {
            seq: Some(2),
            path: Some("_tributary/commits/orders/3/00000000000000000002.json".into()),
            ..f
        };
        assert_eq!(
            f.to_line(),
            "orders/3 commit 2 offsets 10..=19 _tributary/commits/orders/3/00000000000000000002.json: \
             offsets 5..=9 are in no commit [offset_gap]"
        );
        let g = Finding::new(Severity::Warning, "broker_error", "boom".into()).on(&tp(0));
        assert_eq!(g.to_line(), "orders/0: boom [broker_error]");
        assert_eq!(key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(key_value("=x").is_err());
    }

    /// The broker side against librdkafka's mock cluster: the group's offsets
    /// and the watermarks are read without joining the group.
    #[cfg(feature = "kafka-source")]
    #[tokio::test(flavor = "multi_thread")]
    async fn compares_with_a_mock_broker() {
        use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
        use rdkafka::mocking::MockCluster;
        use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
        use rdkafka::{ClientConfig, Offset, TopicPartitionList};

        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("orders", 2, 1).unwrap();
        let bootstrap = cluster.bootstrap_servers();
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .unwrap();
        for i in 0..30 {
            let key = i.to_string();
            producer
                .send(
                    BaseRecord::to("orders")
                        .partition(i % 2)
                        .key(&key)
                        .payload("x"),
                )
                .unwrap();
        }
        producer.flush(Duration::from_secs(10)).unwrap();
        // The group: partition 0 committed beyond what will land, 1 behind.
        let committer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "verify-test")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("orders", 0, Offset::Offset(12))
            .unwrap();
        tpl.add_partition_offset("orders", 1, Offset::Offset(5))
            .unwrap();
        committer.commit(&tpl, CommitMode::Sync).unwrap();

        // Landed: partition 0 offsets 0..=9, partition 1 offsets 0..=14.
        let (_dir, lake, url) = local_lake();
        land(&lake, &tp(0), &[(0, 9)]).await;
        land(&lake, &tp(1), &[(0, 4), (5, 14)]).await;

        let kafka = KafkaSourceConfig {
            bootstrap_servers: bootstrap.clone(),
            topics: vec!["orders".into()],
            group_id: "verify-test".into(),
            start: Default::default(),
            max_poll_records: 100,
            poll_timeout: HumanDuration(Duration::from_millis(100)),
            librdkafka: Default::default(),
        };
        let options = Options {
            files: VerifyOptions::sizes_only(),
            require_broker: true,
            broker_timeout: Duration::from_secs(10),
        };
        let target = Target {
            pipeline: Some("p".into()),
            url: url.clone(),
            lake: lake.clone(),
            kafka: Some(kafka.clone()),
            no_broker: None,
        };
        let check = check_target(target, &options).await.unwrap();
        assert_eq!(
            check.broker,
            BrokerStatus::Checked {
                group_id: "verify-test".into()
            }
        );
        assert_eq!(check.partitions.len(), 2);
        let p0 = &check.partitions[0];
        assert_eq!(p0.broker, Some(offsets(0, 15, Some(12))));
        assert_eq!(
            kinds(&p0.findings),
            vec![("group_offset_beyond_landed", Severity::Violation)]
        );
        assert_eq!(
            (p0.findings[0].first_offset, p0.findings[0].last_offset),
            (Some(10), Some(11))
        );
        let p1 = &check.partitions[1];
        assert_eq!(p1.broker, Some(offsets(0, 15, Some(5))));
        assert!(p1.findings.is_empty(), "{:?}", p1.findings);

        // An unreachable broker: skipped with a warning, or exit 2 when required.
        let mut dead = kafka;
        dead.bootstrap_servers = "127.0.0.1:1".into();
        let options = Options {
            broker_timeout: Duration::from_secs(2),
            ..options
        };
        let target = |kafka: &KafkaSourceConfig| Target {
            pipeline: Some("p".into()),
            url: url.clone(),
            lake: lake.clone(),
            kafka: Some(kafka.clone()),
            no_broker: None,
        };
        assert!(check_target(target(&dead), &options).await.is_err());
        let lenient = Options {
            require_broker: false,
            ..options
        };
        let check = check_target(target(&dead), &lenient).await.unwrap();
        assert!(matches!(check.broker, BrokerStatus::Skipped(_)));
        assert_eq!(
            kinds(&check.findings),
            vec![("broker_unreachable", Severity::Warning)]
        );
        assert_eq!(check.count(Severity::Violation), 0);
    }
}
