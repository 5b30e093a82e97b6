//! Configuration of per-pipeline transforms (`[[pipelines.transforms]]`),
//! applied in order to the converter's rows before they reach the sink.
//! The `tributary-transforms` crate checks the values (expressions, type
//! names, formats, timezones) and applies them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{ConverterConfig, MetadataField, OnError};

/// One transform step. `type` selects the kind.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum TransformConfig {
    /// Renames fields (`a.b` renames a nested field in place).
    Rename(RenameTransform),
    /// Removes fields.
    Drop(DropTransform),
    /// Adds a top-level field holding a static value or Kafka metadata.
    Insert(InsertTransform),
    /// Changes field types; a value that does not fit follows the converter's `on_error`.
    Cast(CastTransform),
    /// Keeps only the rows for which an expression is true.
    Filter(FilterTransform),
    /// Replaces struct fields by top-level fields named `parent<sep>child`.
    Flatten(FlattenTransform),
    /// Parses strings or numbers into timestamps, or converts timestamps.
    Timestamp(TimestampTransform),
}

impl TransformConfig {
    /// The `type` name of the transform.
    pub fn kind(&self) -> &'static str {
        match self {
            TransformConfig::Rename(_) => "rename",
            TransformConfig::Drop(_) => "drop",
            TransformConfig::Insert(_) => "insert",
            TransformConfig::Cast(_) => "cast",
            TransformConfig::Filter(_) => "filter",
            TransformConfig::Flatten(_) => "flatten",
            TransformConfig::Timestamp(_) => "timestamp",
        }
    }
}

/// `type = "rename"`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RenameTransform {
    /// Old name (or path `a.b`) → new name (a plain name: the field stays
    /// where it is).
    pub fields: BTreeMap<String, String>,
}

/// `type = "drop"`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DropTransform {
    /// Fields (or paths `a.b`) to remove.
    pub fields: Vec<String>,
}

/// A static value for [`InsertTransform`].
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum StaticValue {
    /// A boolean column.
    Bool(bool),
    /// An int64 column.
    Int(i64),
    /// A float64 column.
    Float(f64),
    /// A string column.
    String(String),
}

/// `type = "insert"`: set exactly one of `value` and `metadata`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InsertTransform {
    /// Name of the new top-level field.
    pub field: String,
    /// A static string, number or boolean.
    #[serde(default)]
    pub value: Option<StaticValue>,
    /// Kafka metadata of the record: `topic`, `partition`, `offset`,
    /// `timestamp` or `key`.
    #[serde(default)]
    pub metadata: Option<MetadataField>,
}

/// `type = "cast"`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CastTransform {
    /// Field (or path `a.b`) → type name (`int64`, `float64`, `string`,
    /// `bool`, `date`, `decimal(12,2)`, `timestamp`, `timestamp_ms`, ...).
    pub fields: BTreeMap<String, String>,
}

/// `type = "filter"`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilterTransform {
    /// Rows for which this is true are kept, e.g. `amount > 0 and country != 'XX'`.
    pub expr: String,
}

/// `type = "flatten"`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FlattenTransform {
    /// Joins parent and child names.
    #[serde(default = "default_separator")]
    pub separator: String,
}

fn default_separator() -> String {
    "_".into()
}

/// Unit of the timestamps a [`TimestampTransform`] produces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimestampTarget {
    /// `Timestamp(Millisecond, "UTC")`.
    TimestampMs,
    /// `Timestamp(Microsecond, "UTC")`.
    #[default]
    TimestampUs,
}

/// `type = "timestamp"`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampTransform {
    /// The field (or path `a.b`) to convert in place.
    pub field: String,
    /// `rfc3339`, `unix_s`, `unix_ms`, `unix_us`, or a strftime pattern
    /// such as `%Y-%m-%d %H:%M:%S`. Ignored for timestamp fields.
    #[serde(default)]
    pub format: Option<String>,
    /// IANA timezone of values without an offset (strftime patterns
    /// without `%z`, naive timestamp fields); UTC when absent.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Unit of the result; always UTC.
    #[serde(default)]
    pub target: TimestampTarget,
    /// Also make the result the record time (it then drives `partition_by`)
    /// where it is not null; the field must be top-level.
    #[serde(default)]
    pub event_time: bool,
}

impl ConverterConfig {
    /// What the converter does with a record it cannot convert (transforms
    /// follow the same policy for records they cannot transform).
    pub fn on_error(&self) -> OnError {
        match self {
            ConverterConfig::Json(c) => c.on_error,
            ConverterConfig::Avro(c) => c.on_error,
            ConverterConfig::Protobuf(c) => c.on_error,
        }
    }

    /// The largest record (key plus value) the converter decodes.
    pub fn max_record_bytes(&self) -> u64 {
        match self {
            ConverterConfig::Json(c) => c.max_record_bytes.0,
            ConverterConfig::Avro(c) => c.max_record_bytes.0,
            ConverterConfig::Protobuf(c) => c.max_record_bytes.0,
        }
    }

    /// The Kafka metadata columns the converter appends.
    pub fn metadata_mut(&mut self) -> &mut Vec<MetadataField> {
        match self {
            ConverterConfig::Json(c) => &mut c.metadata,
            ConverterConfig::Avro(c) => &mut c.metadata,
            ConverterConfig::Protobuf(c) => &mut c.metadata,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{from_str, FileFormat};

    fn parse(transforms: &str) -> Result<crate::Config, crate::ConfigError> {
        let text = format!(
            r#"
[[pipelines]]
name = "p"
[pipelines.source]
type = "kafka"
bootstrap_servers = "127.0.0.1:9092"
topics = ["t"]
group_id = "g"
[pipelines.converter]
type = "json"
infer = true
[pipelines.sink]
type = "parquet"
url = "file:///tmp/lake"
{transforms}
"#
        );
        from_str(&text, FileFormat::Toml, "test.toml", Vec::new())
    }

    #[test]
    fn errors_name_the_transform_and_key() {
        let e = parse(
            r#"
[[pipelines.transforms]]
type = "drop"
fields = ["a"]
[[pipelines.transforms]]
type = "filter"
exp = "a > 1"
"#,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "test.toml: pipelines.0.transforms.1: unknown field: found `exp`, expected ``expr``"
        );
        let e = parse(
            r#"
[[pipelines.transforms]]
type = "explode"
"#,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("test.toml: pipelines.0.transforms.0.type: unknown variant"),
            "{e}"
        );
        let c = parse(
            r#"
[[pipelines.transforms]]
type = "insert"
field = "n"
value = 1.5
[[pipelines.transforms]]
type = "timestamp"
field = "t"
target = "timestamp_ms"
"#,
        )
        .unwrap();
        let t = &c.pipelines[0].transforms;
        assert!(matches!(
            &t[0],
            crate::TransformConfig::Insert(i) if i.value == Some(crate::StaticValue::Float(1.5))
        ));
        assert!(matches!(
            &t[1],
            crate::TransformConfig::Timestamp(ts)
                if ts.target == crate::TimestampTarget::TimestampMs && !ts.event_time
        ));
    }
}
