//! Pure validation: no I/O beyond nothing at all, so it runs in CI and
//! pre-deploy hooks. Connector crates add their own pure checks (schema
//! files, partition templates) on top; `tributary validate` runs them all.

use std::collections::HashSet;

use crate::model::*;
use crate::ConfigError;

/// librdkafka properties that Tributary owns and that the passthrough map must not set.
const OWNED_KAFKA_PROPS: [(&str, &str); 5] = [
    ("bootstrap.servers", "set `bootstrap_servers` instead"),
    ("group.id", "set `group_id` instead"),
    (
        "enable.auto.commit",
        "offsets are committed only after landing; Tributary sets it to false",
    ),
    (
        "enable.auto.offset.store",
        "Tributary manages offsets itself",
    ),
    ("auto.offset.reset", "set `start` instead"),
];

/// Checks a loaded config, returning the first problem with its key path.
pub fn validate(config: &Config) -> Result<(), ConfigError> {
    let w = &config.worker;
    if w.id.trim().is_empty() {
        return Err(ConfigError::invalid("worker.id", "must not be empty"));
    }
    if w.http_addr.parse::<std::net::SocketAddr>().is_err() {
        return Err(ConfigError::invalid(
            "worker.http_addr",
            format!("{:?} is not an address like 127.0.0.1:8083", w.http_addr),
        ));
    }
    if w.http_token.is_some() && w.http_token_file.is_some() {
        return Err(ConfigError::invalid(
            "worker.http_token_file",
            "set either worker.http_token or worker.http_token_file, not both",
        ));
    }
    if w.lag_window.0.is_zero() || w.lag_stop_after.0.is_zero() {
        return Err(ConfigError::invalid(
            if w.lag_window.0.is_zero() {
                "worker.lag_window"
            } else {
                "worker.lag_stop_after"
            },
            "must be greater than zero",
        ));
    }
    if w.shutdown_timeout.0.is_zero() {
        return Err(ConfigError::invalid(
            "worker.shutdown_timeout",
            "must be greater than zero",
        ));
    }
    if config.pipelines.is_empty() {
        return Err(ConfigError::invalid(
            "pipelines",
            "at least one [[pipelines]] entry is needed",
        ));
    }
    let mut names = HashSet::new();
    for (i, p) in config.pipelines.iter().enumerate() {
        let key = format!("pipelines.{i}");
        validate_name(&format!("{key}.name"), &p.name)?;
        if !names.insert(p.name.as_str()) {
            return Err(ConfigError::invalid(
                format!("{key}.name"),
                format!("pipeline name {:?} is used twice", p.name),
            ));
        }
        validate_source(&format!("{key}.source"), &p.source)?;
        validate_converter(&format!("{key}.converter"), &p.converter)?;
        validate_sink(&format!("{key}.sink"), &p.sink)?;
        validate_dead_letter(&format!("{key}.dead_letter"), &p.dead_letter, &p.source)?;
    }
    Ok(())
}

fn validate_name(key: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ConfigError::invalid(
            key,
            format!("{name:?} must be non-empty and use only letters, digits, '-' and '_'"),
        ));
    }
    Ok(())
}

fn validate_source(key: &str, source: &SourceConfig) -> Result<(), ConfigError> {
    match source {
        SourceConfig::Kafka(k) => {
            if k.bootstrap_servers.trim().is_empty() {
                return Err(ConfigError::invalid(
                    format!("{key}.bootstrap_servers"),
                    "must not be empty",
                ));
            }
            for (j, server) in k.bootstrap_servers.split(',').enumerate() {
                let server = server.trim();
                let ok = server
                    .rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
                if !ok {
                    return Err(ConfigError::invalid(
                        format!("{key}.bootstrap_servers"),
                        format!("entry {j} ({server:?}) is not host:port"),
                    ));
                }
            }
            if k.topics.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{key}.topics"),
                    "name at least one topic",
                ));
            }
            for (j, t) in k.topics.iter().enumerate() {
                let valid = !t.is_empty()
                    && (t.starts_with('^')
                        || (t.len() <= 249
                            && t.chars()
                                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))));
                if !valid {
                    return Err(ConfigError::invalid(
                        format!("{key}.topics.{j}"),
                        format!("{t:?} is not a topic name (letters, digits, '.', '_', '-') nor a '^' regex"),
                    ));
                }
            }
            if k.group_id.trim().is_empty() {
                return Err(ConfigError::invalid(
                    format!("{key}.group_id"),
                    "must not be empty",
                ));
            }
            if k.max_poll_records == 0 {
                return Err(ConfigError::invalid(
                    format!("{key}.max_poll_records"),
                    "must be at least 1",
                ));
            }
            refuse_owned_props(key, &k.librdkafka, &OWNED_KAFKA_PROPS)?;
        }
        SourceConfig::Datagen(d) => {
            if d.topic.is_empty() {
                return Err(ConfigError::invalid(
                    format!("{key}.topic"),
                    "must not be empty",
                ));
            }
            if d.partitions < 1 {
                return Err(ConfigError::invalid(
                    format!("{key}.partitions"),
                    "must be at least 1",
                ));
            }
            if d.batch_size == 0 {
                return Err(ConfigError::invalid(
                    format!("{key}.batch_size"),
                    "must be at least 1",
                ));
            }
            if d.rate == Some(0) {
                return Err(ConfigError::invalid(
                    format!("{key}.rate"),
                    "must be at least 1 (or absent)",
                ));
            }
        }
        SourceConfig::File(f) => validate_file_source(key, f)?,
    }
    Ok(())
}

fn validate_file_source(key: &str, f: &crate::FileSourceConfig) -> Result<(), ConfigError> {
    let scheme = f.url.split_once("://").map(|(s, _)| s);
    if !scheme.is_some_and(|s| SINK_SCHEMES.contains(&s)) {
        return Err(ConfigError::invalid(
            format!("{key}.url"),
            format!(
                "{:?} must start with one of {}",
                f.url,
                SINK_SCHEMES.map(|s| format!("{s}://")).join(", ")
            ),
        ));
    }
    let rest = &f.url[f.url.find("://").map_or(0, |i| i + 3)..];
    if scheme == Some("file") && !rest.starts_with('/') {
        return Err(ConfigError::invalid(
            format!("{key}.url"),
            "file URLs need an absolute path: file:///data/dumps",
        ));
    }
    if f.topic.is_empty()
        || !f
            .topic
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(ConfigError::invalid(
            format!("{key}.topic"),
            format!(
                "{:?} must be non-empty and use only letters, digits, '.', '_' and '-'",
                f.topic
            ),
        ));
    }
    if f.batch_size == 0 {
        return Err(ConfigError::invalid(
            format!("{key}.batch_size"),
            "must be at least 1",
        ));
    }
    if f.csv_delimiter.len() != 1 || !f.csv_delimiter.is_ascii() {
        return Err(ConfigError::invalid(
            format!("{key}.csv_delimiter"),
            format!("{:?} must be exactly one ASCII character", f.csv_delimiter),
        ));
    }
    if f.suffix.as_deref() == Some("") {
        return Err(ConfigError::invalid(
            format!("{key}.suffix"),
            "must not be empty (leave it out to select by format)",
        ));
    }
    Ok(())
}

fn validate_converter(key: &str, converter: &ConverterConfig) -> Result<(), ConfigError> {
    if converter.max_record_bytes() == 0 {
        return Err(ConfigError::invalid(
            format!("{key}.max_record_bytes"),
            "must be at least 1 byte",
        ));
    }
    match converter {
        ConverterConfig::Json(j) => {
            match (&j.schema, j.infer) {
                (Some(_), true) => {
                    return Err(ConfigError::invalid(
                        format!("{key}.infer"),
                        "set either `schema` or `infer = true`, not both",
                    ))
                }
                (None, false) => {
                    return Err(ConfigError::invalid(
                        format!("{key}.schema"),
                        "a schema file is required unless `infer = true`",
                    ))
                }
                _ => {}
            }
            if j.infer && j.infer_records == 0 {
                return Err(ConfigError::invalid(
                    format!("{key}.infer_records"),
                    "must be at least 1",
                ));
            }
            validate_time_and_metadata(key, &j.timestamp_field, &j.metadata)?;
        }
        ConverterConfig::Avro(a) => {
            validate_schema_registry(&format!("{key}.schema_registry"), &a.schema_registry)?;
            validate_time_and_metadata(key, &a.timestamp_field, &a.metadata)?;
        }
        ConverterConfig::Protobuf(p) => validate_protobuf(key, p)?,
    }
    Ok(())
}

/// The keys every converter shares: a `timestamp_field` that names
/// something, and no metadata column listed twice.
fn validate_time_and_metadata(
    key: &str,
    timestamp_field: &Option<String>,
    metadata: &[MetadataField],
) -> Result<(), ConfigError> {
    if timestamp_field
        .as_ref()
        .is_some_and(|f| f.trim().is_empty())
    {
        return Err(ConfigError::invalid(
            format!("{key}.timestamp_field"),
            "must not be empty",
        ));
    }
    let mut seen = HashSet::new();
    for (i, m) in metadata.iter().enumerate() {
        if !seen.insert(*m) {
            return Err(ConfigError::invalid(
                format!("{key}.metadata.{i}"),
                format!("{m:?} is listed twice"),
            ));
        }
    }
    Ok(())
}

/// Checks a protobuf converter table: a registry or a schema file with a
/// message name, never both; no metadata column listed twice.
fn validate_protobuf(key: &str, p: &ProtobufConverterConfig) -> Result<(), ConfigError> {
    match (&p.schema_registry, &p.schema_file) {
        (Some(r), None) => {
            validate_schema_registry(&format!("{key}.schema_registry"), r)?;
            if p.message.is_some() {
                return Err(ConfigError::invalid(
                    format!("{key}.message"),
                    "only with `schema_file`: with `schema_registry` each record names its \
                     message type",
                ));
            }
        }
        (None, Some(_)) => match &p.message {
            Some(m) if !m.trim().is_empty() => {}
            _ => {
                return Err(ConfigError::invalid(
                    format!("{key}.message"),
                    "required with `schema_file`: the full name of the message type, \
                     e.g. \"shop.v1.Order\"",
                ))
            }
        },
        (Some(_), Some(_)) => {
            return Err(ConfigError::invalid(
                format!("{key}.schema_file"),
                "set either `schema_registry` or `schema_file`, not both",
            ))
        }
        (None, None) => {
            return Err(ConfigError::invalid(
                format!("{key}.schema_registry"),
                "a `schema_registry` table or a `schema_file` with a `message` is required",
            ))
        }
    }
    validate_time_and_metadata(key, &p.timestamp_field, &p.metadata)?;
    Ok(())
}

/// Checks a `schema_registry` table without contacting the registry: the URL
/// is `http://` or `https://` with a host, user name and password come
/// together, `ca_file` only with `https://`, and the timeout is not zero.
/// `key` is the table's key path, e.g. `pipelines.0.converter.schema_registry`.
pub fn validate_schema_registry(key: &str, r: &SchemaRegistryConfig) -> Result<(), ConfigError> {
    let url = r.url.trim();
    let (scheme, rest) = match url.split_once("://") {
        Some((s, rest)) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https") => {
            (s.to_ascii_lowercase(), rest)
        }
        _ => {
            return Err(ConfigError::invalid(
                format!("{key}.url"),
                format!("{:?} is not an http:// or https:// URL", r.url),
            ))
        }
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(ConfigError::invalid(
            format!("{key}.url"),
            format!("{:?} has no host", r.url),
        ));
    }
    if authority.contains('@') {
        return Err(ConfigError::invalid(
            format!("{key}.url"),
            "put credentials in `username` and `password`, not in the URL",
        ));
    }
    if let Some((_, port)) = authority
        .rsplit_once(':')
        .filter(|_| !authority.ends_with(']'))
    {
        if port.parse::<u16>().is_err() {
            return Err(ConfigError::invalid(
                format!("{key}.url"),
                format!("{:?} has an invalid port {port:?}", r.url),
            ));
        }
    }
    match (&r.username, &r.password) {
        (Some(_), None) => {
            return Err(ConfigError::invalid(
                format!("{key}.password"),
                "`username` is set, so `password` is needed too",
            ))
        }
        (None, Some(_)) => {
            return Err(ConfigError::invalid(
                format!("{key}.username"),
                "`password` is set, so `username` is needed too",
            ))
        }
        _ => {}
    }
    if r.ca_file.is_some() && scheme != "https" {
        return Err(ConfigError::invalid(
            format!("{key}.ca_file"),
            "a CA file only applies to an https:// URL",
        ));
    }
    if r.timeout.0.is_zero() {
        return Err(ConfigError::invalid(
            format!("{key}.timeout"),
            "must be greater than zero",
        ));
    }
    Ok(())
}

/// URL schemes the Parquet sink understands.
pub const SINK_SCHEMES: [&str; 6] = ["file", "s3", "gs", "az", "abfs", "abfss"];

fn validate_sink(key: &str, sink: &SinkConfig) -> Result<(), ConfigError> {
    match sink {
        SinkConfig::Parquet(p) => {
            let scheme = p.url.split_once("://").map(|(s, _)| s);
            match scheme {
                Some(s) if SINK_SCHEMES.contains(&s) => {}
                _ => {
                    return Err(ConfigError::invalid(
                        format!("{key}.url"),
                        format!(
                            "{:?} must start with one of {}",
                            p.url,
                            SINK_SCHEMES.map(|s| format!("{s}://")).join(", ")
                        ),
                    ))
                }
            }
            let rest = &p.url[p.url.find("://").unwrap() + 3..];
            if scheme == Some("file") && !rest.starts_with('/') {
                return Err(ConfigError::invalid(
                    format!("{key}.url"),
                    "file URLs need an absolute path: file:///var/lib/lake/orders",
                ));
            }
            if scheme != Some("file") && rest.split('/').next().unwrap_or("").is_empty() {
                return Err(ConfigError::invalid(
                    format!("{key}.url"),
                    "the URL names no bucket or container",
                ));
            }
            if p.row_group_size == 0 {
                return Err(ConfigError::invalid(
                    format!("{key}.row_group_size"),
                    "must be at least 1",
                ));
            }
            if p.row_group_bytes.0 == 0 {
                return Err(ConfigError::invalid(
                    format!("{key}.row_group_bytes"),
                    "must be at least 1 byte",
                ));
            }
            if let Some(level) = p.compression_level {
                let range = match p.compression {
                    Compression::Zstd => Some(1..=22),
                    Compression::Gzip => Some(0..=9),
                    _ => None,
                };
                match range {
                    Some(r) if !r.contains(&level) => {
                        return Err(ConfigError::invalid(
                            format!("{key}.compression_level"),
                            format!(
                                "{level} is outside {}..={} for {:?}",
                                r.start(),
                                r.end(),
                                p.compression
                            ),
                        ))
                    }
                    None => {
                        return Err(ConfigError::invalid(
                            format!("{key}.compression_level"),
                            format!("{:?} takes no level", p.compression),
                        ))
                    }
                    _ => {}
                }
            }
            if p.timezone.parse::<chrono_tz::Tz>().is_err() {
                return Err(ConfigError::invalid(
                    format!("{key}.timezone"),
                    format!(
                        "{:?} is not an IANA timezone such as \"UTC\" or \"Europe/Berlin\"",
                        p.timezone
                    ),
                ));
            }
            if let Some(late) = &p.late_data {
                if p.partition_by.is_none() {
                    return Err(ConfigError::invalid(
                        format!("{key}.late_data"),
                        "needs partition_by: it chooses the time partition of late records",
                    ));
                }
                if late.allowed_lateness.0.is_zero() {
                    return Err(ConfigError::invalid(
                        format!("{key}.late_data.allowed_lateness"),
                        "must be more than 0 (every record would be late)",
                    ));
                }
            }
            let f = &p.flush;
            if f.max_records == 0 {
                return Err(ConfigError::invalid(
                    format!("{key}.flush.max_records"),
                    "must be at least 1",
                ));
            }
            if f.max_bytes.0 == 0 {
                return Err(ConfigError::invalid(
                    format!("{key}.flush.max_bytes"),
                    "must be greater than zero",
                ));
            }
            if f.max_age.0.is_zero() {
                return Err(ConfigError::invalid(
                    format!("{key}.flush.max_age"),
                    "must be greater than zero",
                ));
            }
            if let Some(e) = &p.storage.endpoint {
                if !(e.starts_with("http://") || e.starts_with("https://")) {
                    return Err(ConfigError::invalid(
                        format!("{key}.storage.endpoint"),
                        format!("{e:?} must start with http:// or https://"),
                    ));
                }
                if e.starts_with("http://") && p.storage.allow_http != Some(true) {
                    return Err(ConfigError::invalid(
                        format!("{key}.storage.allow_http"),
                        "the endpoint is plain http://; set allow_http = true to accept that",
                    ));
                }
            }
        }
    }
    Ok(())
}

/// librdkafka properties the Kafka dead-letter route sets itself: they are
/// what makes a delivered record durable and never doubled by a retry.
/// Refuses librdkafka properties Tributary sets itself, naming the key and
/// what to do instead.
fn refuse_owned_props(
    key: &str,
    librdkafka: &std::collections::BTreeMap<String, String>,
    owned: &[(&str, &str)],
) -> Result<(), ConfigError> {
    for prop in librdkafka.keys() {
        if let Some((_, why)) = owned.iter().find(|(p, _)| p == prop) {
            return Err(ConfigError::invalid(
                format!("{key}.librdkafka.\"{prop}\""),
                format!("may not be set here: {why}"),
            ));
        }
    }
    Ok(())
}

const OWNED_DEAD_LETTER_PROPS: [(&str, &str); 6] = [
    ("bootstrap.servers", "set `bootstrap_servers` instead"),
    (
        "enable.idempotence",
        "the dead-letter producer is always idempotent",
    ),
    (
        "acks",
        "the dead-letter producer always waits for all in-sync replicas",
    ),
    ("message.timeout.ms", "set `timeout` instead"),
    (
        "transactional.id",
        "the dead-letter route does not use transactions (see docs/LANDING.md)",
    ),
    ("group.id", "the dead-letter scan joins no group"),
];

fn validate_dead_letter(
    key: &str,
    dead_letter: &DeadLetterConfig,
    source: &SourceConfig,
) -> Result<(), ConfigError> {
    let DeadLetterConfig::Kafka(k) = dead_letter else {
        return Ok(());
    };
    let t = &k.topic;
    if t.is_empty()
        || t.len() > 249
        || t == "."
        || t == ".."
        || !t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(ConfigError::invalid(
            format!("{key}.topic"),
            format!("{t:?} is not a topic name (letters, digits, '.', '_', '-')"),
        ));
    }
    match (&k.bootstrap_servers, source) {
        (Some(servers), _) => {
            for (j, server) in servers.split(',').enumerate() {
                let server = server.trim();
                let ok = server
                    .rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
                if !ok {
                    return Err(ConfigError::invalid(
                        format!("{key}.bootstrap_servers"),
                        format!("entry {j} ({server:?}) is not host:port"),
                    ));
                }
            }
        }
        (None, SourceConfig::Kafka(_)) => {}
        (None, _) => {
            return Err(ConfigError::invalid(
                format!("{key}.bootstrap_servers"),
                "required: the source is not Kafka, so there are no servers to default to",
            ))
        }
    }
    if let SourceConfig::Kafka(s) = source {
        if s.topics.iter().any(|topic| topic == t) {
            return Err(ConfigError::invalid(
                format!("{key}.topic"),
                format!("{t:?} is also a source topic: rejects would be read back"),
            ));
        }
    }
    if k.timeout.0.is_zero() {
        return Err(ConfigError::invalid(
            format!("{key}.timeout"),
            "must be greater than zero",
        ));
    }
    refuse_owned_props(key, &k.librdkafka, &OWNED_DEAD_LETTER_PROPS)?;
    Ok(())
}
