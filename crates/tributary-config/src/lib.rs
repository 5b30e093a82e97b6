//! # tributary-config
//!
//! Loads a worker configuration in three layers, later ones winning:
//!
//! 1. built-in defaults (the `#[serde(default)]` of each field);
//! 2. a TOML (`.toml`) or YAML (`.yaml`/`.yml`) file;
//! 3. environment variables prefixed `TRIBUTARY_`.
//!
//! ## Environment scheme
//!
//! A variable names a key path with `__` between segments, case-insensitive:
//! `TRIBUTARY_WORKER__ID=worker-7`,
//! `TRIBUTARY_PIPELINES__0__SOURCE__BOOTSTRAP_SERVERS=broker:9092`.
//! A pipeline may be addressed by index or by its name, upper-cased with `-`
//! written `_`: `TRIBUTARY_PIPELINES__ORDERS_TO_LAKE__SINK__URL=s3://...`.
//! Under a `librdkafka` map, `_` in the last segment becomes `.`:
//! `TRIBUTARY_PIPELINES__0__SOURCE__LIBRDKAFKA__SASL_PASSWORD` sets
//! `sasl.password`. Only variables whose first segment is `WORKER` or
//! `PIPELINES` are config overrides; others (`TRIBUTARY_LOG`,
//! `TRIBUTARY_CONFIG`, ...) belong to the CLI. Values are parsed like TOML scalars (`true`, `42`,
//! `"text"`), so secrets can live in the environment rather than the file.
//!
//! Then [`validate`] checks the typed result without touching the network,
//! naming the exact key that is wrong.

#![warn(missing_docs)]

mod env;
mod model;
mod transform;
mod units;
mod validate;

use std::path::{Path, PathBuf};

use figment::providers::{Format, Toml, Yaml};
use figment::value::Value;
use figment::Figment;

pub use model::*;
pub use transform::*;
pub use units::{is_secret_key, ByteSize, HumanDuration, Secret};
pub use validate::{validate, validate_schema_registry};

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "TRIBUTARY_";

/// A configuration problem, naming the key and the file it came from.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file's extension is not one we read.
    #[error("config file {path}: unknown format (use .toml, .yaml or .yml)")]
    Format {
        /// The file.
        path: PathBuf,
    },
    /// The file does not parse, or a value has the wrong type or an unknown key.
    #[error("{origin}: {key}: {message}")]
    Parse {
        /// File or `environment`.
        origin: String,
        /// Dotted key path (`pipelines.0.sink.flush.max_bytes`), or `(root)`.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A `TRIBUTARY_` variable names no key that exists.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong.
        message: String,
    },
    /// The values parse but do not make sense together.
    #[error("{key}: {message}")]
    Invalid {
        /// Dotted key path.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// Shortcut for [`ConfigError::Invalid`].
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Loads a config file with environment overrides from the process
/// environment, without validating it.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with_env(path, std::env::vars())
}

/// Loads a config file with the given environment overrides (for tests).
pub fn load_with_env(
    path: &Path,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let format = match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => FileFormat::Toml,
        Some("yaml" | "yml") => FileFormat::Yaml,
        _ => {
            return Err(ConfigError::Format {
                path: path.to_path_buf(),
            })
        }
    };
    from_str(&text, format, &path.display().to_string(), vars)
}

/// Format of a config text.
#[derive(Clone, Copy, Debug)]
pub enum FileFormat {
    /// TOML.
    Toml,
    /// YAML.
    Yaml,
}

/// Parses a config text (named `origin` in errors) with environment overrides.
pub fn from_str(
    text: &str,
    format: FileFormat,
    origin: &str,
    vars: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let file = match format {
        FileFormat::Toml => Figment::from(Toml::string(text)),
        FileFormat::Yaml => Figment::from(Yaml::string(text)),
    };
    let mut tree: Value = file.extract().map_err(|e| figment_error(origin, e))?;
    env::apply(&mut tree, vars)?;
    Figment::from(figment::providers::Serialized::defaults(&tree))
        .extract::<Config>()
        .map_err(|e| refine_error(&tree, origin, e))
}

/// Serde sees a tagged section (`source`, `converter`, `sink`) as one value, so
/// an error inside it carries only the section's path. Re-extract the section
/// as its concrete type to name the exact key.
fn refine_error(tree: &Value, origin: &str, e: figment::Error) -> ConfigError {
    let coarse = figment_error(origin, e);
    let ConfigError::Parse { key, .. } = &coarse else {
        return coarse;
    };
    let parts: Vec<&str> = key.split('.').collect();
    let ["pipelines", index, section] = parts.as_slice() else {
        return coarse;
    };
    let Some(Value::Dict(_, dict)) = tree
        .find_ref("pipelines")
        .and_then(|p| p.as_array())
        .and_then(|a| index.parse::<usize>().ok().and_then(|i| a.get(i)))
        .and_then(|p| p.find_ref(section))
    else {
        return coarse;
    };
    let kind = dict
        .get("type")
        .and_then(|t| t.as_str())
        .unwrap_or_default()
        .to_string();
    let mut body = dict.clone();
    body.remove("type");
    let fig = Figment::from(figment::providers::Serialized::defaults(body));
    let err = match (*section, kind.as_str()) {
        ("source", "kafka") => fig.extract::<KafkaSourceConfig>().err(),
        ("source", "datagen") => fig.extract::<DatagenSourceConfig>().err(),
        ("converter", "json") => fig.extract::<JsonConverterConfig>().err(),
        ("converter", "avro") => fig.extract::<AvroConverterConfig>().err(),
        ("converter", "protobuf") => fig.extract::<ProtobufConverterConfig>().err(),
        ("sink", "parquet") => fig.extract::<ParquetSinkConfig>().err(),
        ("dead_letter", "kafka") => fig.extract::<KafkaDeadLetterConfig>().err(),
        _ => None,
    };
    match err.map(|e| figment_error(origin, e)) {
        Some(ConfigError::Parse {
            key: inner,
            message,
            ..
        }) => ConfigError::Parse {
            origin: origin.to_string(),
            key: if inner == "(root)" {
                key.clone()
            } else {
                format!("{key}.{inner}")
            },
            message,
        },
        _ => coarse,
    }
}

fn figment_error(origin: &str, e: figment::Error) -> ConfigError {
    let e = e
        .into_iter()
        .next()
        .expect("figment error has at least one entry");
    let key = if e.path.is_empty() {
        "(root)".to_string()
    } else {
        e.path.join(".")
    };
    ConfigError::Parse {
        origin: origin.to_string(),
        key,
        message: e.kind.to_string(),
    }
}

#[cfg(test)]
mod tests;
