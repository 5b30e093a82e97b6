//! Schema files: a small JSON document that names the Arrow type of every field.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use arrow::array::timezone::Tz;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use serde_json::{Map, Value};

use crate::error::FormatError;

/// Type names accepted in a schema file, for error messages.
const KNOWN_TYPES: &str = "bool, int8, int16, int32, int64, uint8, uint16, uint32, uint64, \
float32, float64, string, binary, date, decimal(p,s), timestamp, timestamp[unit], \
timestamp[unit, zone], struct, list";

/// Keys a field object may carry.
const FIELD_KEYS: [&str; 6] = ["name", "type", "nullable", "doc", "fields", "items"];

/// Reads and parses a schema file (format: see [`parse_schema`]). Errors
/// name the file and the field path.
pub fn load_schema(path: impl AsRef<Path>) -> Result<SchemaRef, FormatError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| FormatError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_schema(&text, &path.display().to_string())
}

/// Parses the text of a schema file. `origin` names the text in errors
/// (usually the file path). Pure: no I/O.
///
/// # Format
///
/// ```json
/// {"fields": [
///   {"name": "order_id", "type": "int64", "nullable": false},
///   {"name": "amount", "type": "decimal(12,2)"},
///   {"name": "event_time", "type": "timestamp[us, UTC]", "nullable": false},
///   {"name": "shipping", "type": "struct", "fields": [{"name": "city", "type": "string"}]},
///   {"name": "items", "type": "list", "items": {"type": "struct", "fields": [
///     {"name": "sku", "type": "string"}, {"name": "qty", "type": "int32"}]}}
/// ]}
/// ```
///
/// A field object has the keys `name` (required except for list items),
/// `type` (required), `nullable` (default `true`), `doc` (free text, ignored),
/// `fields` (only with `"struct"`) and `items` (only with `"list"`; a type name
/// or a field object without a name). Unknown keys are an error, so a typo
/// such as `nulable` does not pass silently.
///
/// Type names: `bool`, `int8`, `int16`, `int32`, `int64`, `uint8`, `uint16`,
/// `uint32`, `uint64`, `float32`, `float64`, `string` (UTF-8), `binary`
/// (hex-encoded strings), `date` (days), `decimal(p,s)` (128-bit, `1 ≤ p ≤ 38`, `0 ≤ s ≤ p`),
/// `timestamp` (microseconds, UTC), `timestamp[unit]` with unit `s`, `ms`, `us`
/// or `ns` (UTC), and `timestamp[unit, zone]` where zone is an IANA name
/// (`Europe/Paris`), a fixed offset (`+01:00`) or `none` for a naive
/// (zone-less) timestamp.
pub fn parse_schema(text: &str, origin: &str) -> Result<SchemaRef, FormatError> {
    let parser = Parser { origin };
    let root: Value = serde_json::from_str(text).map_err(|e| {
        parser.error(
            &format!("line {} column {}", e.line(), e.column()),
            format!("invalid JSON: {e}"),
        )
    })?;
    let Value::Object(root) = root else {
        return Err(parser.error("top level", "expected an object like {\"fields\": [...]}"));
    };
    if let Some(key) = root.keys().find(|k| k.as_str() != "fields") {
        return Err(parser.error(
            key,
            format!("unknown key {key:?} (expected only \"fields\")"),
        ));
    }
    let fields = root
        .get("fields")
        .ok_or_else(|| parser.error("fields", "missing: the schema must list its fields"))?;
    let fields = parser.fields(fields, "fields")?;
    Ok(Arc::new(Schema::new(fields)))
}

struct Parser<'a> {
    origin: &'a str,
}

impl Parser<'_> {
    fn error(&self, location: &str, message: impl Into<String>) -> FormatError {
        FormatError::Schema {
            origin: self.origin.to_string(),
            location: location.to_string(),
            message: message.into(),
        }
    }

    /// A non-empty array of named field objects with distinct names.
    fn fields(&self, value: &Value, at: &str) -> Result<Fields, FormatError> {
        let Value::Array(items) = value else {
            return Err(self.error(at, "expected an array of field objects"));
        };
        if items.is_empty() {
            return Err(self.error(at, "must list at least one field"));
        }
        let mut fields: Vec<Field> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let here = format!("{at}[{i}]");
            let field = self.field(item, &here, None)?;
            if let Some(j) = fields.iter().position(|f| f.name() == field.name()) {
                return Err(self.error(
                    &format!("{here}.name"),
                    format!("duplicate field name {:?} (also {at}[{j}])", field.name()),
                ));
            }
            fields.push(field);
        }
        Ok(Fields::from(fields))
    }

    /// One field object. `default_name` is `Some` for list items, whose name
    /// is optional.
    fn field(
        &self,
        value: &Value,
        at: &str,
        default_name: Option<&str>,
    ) -> Result<Field, FormatError> {
        let Value::Object(obj) = value else {
            return Err(self.error(
                at,
                "expected a field object like {\"name\": \"id\", \"type\": \"int64\"}",
            ));
        };
        if let Some(key) = obj.keys().find(|k| !FIELD_KEYS.contains(&k.as_str())) {
            return Err(self.error(
                &format!("{at}.{key}"),
                format!("unknown key {key:?} (expected name, type, nullable, doc, fields, items)"),
            ));
        }
        let name = match (obj.get("name"), default_name) {
            (Some(Value::String(s)), _) if !s.is_empty() => s.as_str(),
            (Some(Value::String(_)), _) => {
                return Err(self.error(&format!("{at}.name"), "must not be empty"))
            }
            (Some(_), _) => return Err(self.error(&format!("{at}.name"), "expected a string")),
            (None, Some(default)) => default,
            (None, None) => return Err(self.error(&format!("{at}.name"), "missing")),
        };
        let nullable = match obj.get("nullable") {
            None => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(self.error(&format!("{at}.nullable"), "expected true or false")),
        };
        if let Some(doc) = obj.get("doc") {
            if !doc.is_string() {
                return Err(self.error(&format!("{at}.doc"), "expected a string"));
            }
        }
        let type_at = format!("{at}.type");
        let type_name = match obj.get("type") {
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(self.error(&type_at, "expected a type name string")),
            None => return Err(self.error(&type_at, "missing")),
        };
        let data_type = self.data_type(type_name, obj, at)?;
        Ok(Field::new(name, data_type, nullable))
    }

    /// The type of a field object, with its `fields`/`items` for nested types.
    fn data_type(
        &self,
        type_name: &str,
        obj: &Map<String, Value>,
        at: &str,
    ) -> Result<DataType, FormatError> {
        let name = type_name.trim();
        if name != "struct" && obj.contains_key("fields") {
            return Err(self.error(
                &format!("{at}.fields"),
                format!("only allowed with type \"struct\", not {type_name:?}"),
            ));
        }
        if name != "list" && obj.contains_key("items") {
            return Err(self.error(
                &format!("{at}.items"),
                format!("only allowed with type \"list\", not {type_name:?}"),
            ));
        }
        match name {
            "struct" => {
                let fields_at = format!("{at}.fields");
                let fields = obj.get("fields").ok_or_else(|| {
                    self.error(&fields_at, "missing: a struct must list its fields")
                })?;
                Ok(DataType::Struct(self.fields(fields, &fields_at)?))
            }
            "list" => {
                let items_at = format!("{at}.items");
                let item = match obj.get("items") {
                    None => {
                        return Err(self
                            .error(&items_at, "missing: a list must name the type of its items"))
                    }
                    Some(Value::String(s)) => {
                        let dt = self.data_type(s, &Map::new(), &items_at)?;
                        Field::new_list_field(dt, true)
                    }
                    Some(v @ Value::Object(_)) => self.field(v, &items_at, Some("item"))?,
                    Some(_) => {
                        return Err(self.error(&items_at, "expected a type name or a field object"))
                    }
                };
                Ok(DataType::List(Arc::new(item)))
            }
            _ => scalar_type(name).map_err(|msg| self.error(&format!("{at}.type"), msg)),
        }
    }
}

/// Parses a scalar type name.
fn scalar_type(name: &str) -> Result<DataType, String> {
    let dt = match name {
        "bool" => DataType::Boolean,
        "int8" => DataType::Int8,
        "int16" => DataType::Int16,
        "int32" => DataType::Int32,
        "int64" => DataType::Int64,
        "uint8" => DataType::UInt8,
        "uint16" => DataType::UInt16,
        "uint32" => DataType::UInt32,
        "uint64" => DataType::UInt64,
        "float32" => DataType::Float32,
        "float64" => DataType::Float64,
        "string" => DataType::Utf8,
        "binary" => DataType::Binary,
        "date" => DataType::Date32,
        "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        _ => {
            if let Some(args) = strip_call(name, "timestamp[", ']') {
                return timestamp_type(args);
            }
            if let Some(args) = strip_call(name, "decimal(", ')') {
                return decimal_type(args);
            }
            return Err(format!(
                "unknown type {name:?} (known types: {KNOWN_TYPES})"
            ));
        }
    };
    Ok(dt)
}

/// `prefix ARGS close` → `ARGS`.
fn strip_call<'a>(name: &'a str, prefix: &str, close: char) -> Option<&'a str> {
    name.strip_prefix(prefix)?.strip_suffix(close)
}

fn timestamp_type(args: &str) -> Result<DataType, String> {
    let mut parts = args.splitn(2, ',').map(str::trim);
    let unit = match parts.next().unwrap_or_default() {
        "s" => TimeUnit::Second,
        "ms" => TimeUnit::Millisecond,
        "us" => TimeUnit::Microsecond,
        "ns" => TimeUnit::Nanosecond,
        other => {
            return Err(format!(
                "unknown timestamp unit {other:?} (expected s, ms, us or ns)"
            ))
        }
    };
    let zone = match parts.next() {
        None => Some("UTC".to_string()),
        Some(z) if z.eq_ignore_ascii_case("none") => None,
        Some("") => return Err("empty timezone (use \"none\" for a naive timestamp)".into()),
        Some(z) => {
            Tz::from_str(z).map_err(|e| format!("unknown timezone {z:?}: {e}"))?;
            Some(z.to_string())
        }
    };
    Ok(DataType::Timestamp(unit, zone.map(Into::into)))
}

fn decimal_type(args: &str) -> Result<DataType, String> {
    let usage =
        "expected decimal(precision, scale) with 1 ≤ precision ≤ 38 and 0 ≤ scale ≤ precision";
    let mut parts = args.split(',').map(str::trim);
    let (Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(usage.into());
    };
    let (Ok(p), Ok(s)) = (p.parse::<u8>(), s.parse::<i8>()) else {
        return Err(usage.into());
    };
    if !(1..=38).contains(&p) || s < 0 || s as u8 > p {
        return Err(format!("decimal({p},{s}): {usage}"));
    }
    Ok(DataType::Decimal128(p, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SchemaRef, FormatError> {
        parse_schema(text, "test.json")
    }

    fn one_type(ty: &str) -> Result<DataType, String> {
        parse(&format!(
            r#"{{"fields": [{{"name": "x", "type": "{ty}"}}]}}"#
        ))
        .map(|s| s.field(0).data_type().clone())
        .map_err(|e| e.to_string())
    }

    fn err(text: &str) -> String {
        match parse(text) {
            Ok(s) => panic!("expected an error, got {s:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn every_scalar_type() {
        let utc = Some(Arc::from("UTC"));
        let cases = [
            ("bool", DataType::Boolean),
            ("int8", DataType::Int8),
            ("int16", DataType::Int16),
            ("int32", DataType::Int32),
            ("int64", DataType::Int64),
            ("uint8", DataType::UInt8),
            ("uint16", DataType::UInt16),
            ("uint32", DataType::UInt32),
            ("uint64", DataType::UInt64),
            ("float32", DataType::Float32),
            ("float64", DataType::Float64),
            ("string", DataType::Utf8),
            ("binary", DataType::Binary),
            ("date", DataType::Date32),
            (
                "timestamp",
                DataType::Timestamp(TimeUnit::Microsecond, utc.clone()),
            ),
            (
                "timestamp[ms]",
                DataType::Timestamp(TimeUnit::Millisecond, utc.clone()),
            ),
            (
                "timestamp[s]",
                DataType::Timestamp(TimeUnit::Second, utc.clone()),
            ),
            (
                "timestamp[ns]",
                DataType::Timestamp(TimeUnit::Nanosecond, utc.clone()),
            ),
            (
                "timestamp[us, UTC]",
                DataType::Timestamp(TimeUnit::Microsecond, utc.clone()),
            ),
            (
                "timestamp[us,Europe/Paris]",
                DataType::Timestamp(TimeUnit::Microsecond, Some("Europe/Paris".into())),
            ),
            (
                "timestamp[ms, +01:00]",
                DataType::Timestamp(TimeUnit::Millisecond, Some("+01:00".into())),
            ),
            (
                "timestamp[us, none]",
                DataType::Timestamp(TimeUnit::Microsecond, None),
            ),
            ("decimal(12,2)", DataType::Decimal128(12, 2)),
            ("decimal(38, 0)", DataType::Decimal128(38, 0)),
            ("decimal(1,1)", DataType::Decimal128(1, 1)),
        ];
        for (name, expected) in cases {
            assert_eq!(one_type(name), Ok(expected), "type {name}");
        }
    }

    #[test]
    fn nullable_defaults_to_true() {
        let s = parse(
            r#"{"fields": [{"name": "a", "type": "int64"},
                           {"name": "b", "type": "int64", "nullable": false},
                           {"name": "c", "type": "int64", "nullable": true, "doc": "text"}]}"#,
        )
        .unwrap();
        assert!(s.field(0).is_nullable());
        assert!(!s.field(1).is_nullable());
        assert!(s.field(2).is_nullable());
    }

    #[test]
    fn nested_struct_and_list() {
        let s = parse(
            r#"{"fields": [
                {"name": "shipping", "type": "struct", "nullable": false, "fields": [
                    {"name": "city", "type": "string"},
                    {"name": "express", "type": "bool", "nullable": false}]},
                {"name": "tags", "type": "list", "items": "string"},
                {"name": "items", "type": "list", "items": {"type": "struct", "nullable": false,
                    "fields": [{"name": "sku", "type": "string"}, {"name": "qty", "type": "int32"}]}},
                {"name": "matrix", "type": "list", "items": {"type": "list", "items": "float64"}}
            ]}"#,
        )
        .unwrap();
        let shipping = s.field_with_name("shipping").unwrap();
        assert!(!shipping.is_nullable());
        assert_eq!(
            shipping.data_type(),
            &DataType::Struct(Fields::from(vec![
                Field::new("city", DataType::Utf8, true),
                Field::new("express", DataType::Boolean, false),
            ]))
        );
        assert_eq!(
            s.field_with_name("tags").unwrap().data_type(),
            &DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
        );
        let item = Field::new(
            "item",
            DataType::Struct(Fields::from(vec![
                Field::new("sku", DataType::Utf8, true),
                Field::new("qty", DataType::Int32, true),
            ])),
            false,
        );
        assert_eq!(
            s.field_with_name("items").unwrap().data_type(),
            &DataType::List(Arc::new(item))
        );
        let inner = DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true)));
        assert_eq!(
            s.field_with_name("matrix").unwrap().data_type(),
            &DataType::List(Arc::new(Field::new_list_field(inner, true)))
        );
    }

    #[test]
    fn unknown_type_names_the_field_path() {
        let e = err(r#"{"fields": [
            {"name": "a", "type": "int64"}, {"name": "b", "type": "int64"},
            {"name": "c", "type": "int64"}, {"name": "d", "type": "int65"}]}"#);
        assert!(
            e.starts_with(r#"test.json: fields[3].type: unknown type "int65""#),
            "{e}"
        );
    }

    #[test]
    fn nested_errors_name_the_nested_path() {
        let e = err(r#"{"fields": [{"name": "s", "type": "struct", "fields": [
            {"name": "x", "type": "strnig"}]}]}"#);
        assert!(
            e.starts_with("test.json: fields[0].fields[0].type: unknown type"),
            "{e}"
        );

        let e = err(
            r#"{"fields": [{"name": "l", "type": "list", "items": {"type": "struct",
            "fields": [{"name": "q", "type": "decimal(40,2)"}]}}]}"#,
        );
        assert!(
            e.starts_with("test.json: fields[0].items.fields[0].type: decimal(40,2)"),
            "{e}"
        );

        let e = err(r#"{"fields": [{"name": "l", "type": "list", "items": "int99"}]}"#);
        assert!(
            e.starts_with("test.json: fields[0].items.type: unknown type"),
            "{e}"
        );
    }

    #[test]
    fn structural_errors() {
        let cases = [
            ("[1]", "test.json: top level: expected an object"),
            ("{}", "test.json: fields: missing"),
            (
                r#"{"fields": []}"#,
                "test.json: fields: must list at least one field",
            ),
            (r#"{"fields": {}}"#, "test.json: fields: expected an array"),
            (r#"{"fields": [], "x": 1}"#, "test.json: x: unknown key"),
            (
                r#"{"fields": [3]}"#,
                "test.json: fields[0]: expected a field object",
            ),
            (
                r#"{"fields": [{"type": "int64"}]}"#,
                "test.json: fields[0].name: missing",
            ),
            (
                r#"{"fields": [{"name": "", "type": "int64"}]}"#,
                "test.json: fields[0].name: must not be empty",
            ),
            (
                r#"{"fields": [{"name": "a"}]}"#,
                "test.json: fields[0].type: missing",
            ),
            (
                r#"{"fields": [{"name": "a", "type": 5}]}"#,
                "test.json: fields[0].type: expected a type name",
            ),
            (
                r#"{"fields": [{"name": "a", "type": "int64", "nulable": false}]}"#,
                r#"test.json: fields[0].nulable: unknown key "nulable""#,
            ),
            (
                r#"{"fields": [{"name": "a", "type": "int64", "nullable": "no"}]}"#,
                "test.json: fields[0].nullable: expected true or false",
            ),
            (
                r#"{"fields": [{"name": "a", "type": "int64"}, {"name": "a", "type": "string"}]}"#,
                r#"test.json: fields[1].name: duplicate field name "a" (also fields[0])"#,
            ),
            (
                r#"{"fields": [{"name": "s", "type": "struct"}]}"#,
                "test.json: fields[0].fields: missing",
            ),
            (
                r#"{"fields": [{"name": "s", "type": "list"}]}"#,
                "test.json: fields[0].items: missing",
            ),
            (
                r#"{"fields": [{"name": "s", "type": "int64", "fields": []}]}"#,
                r#"test.json: fields[0].fields: only allowed with type "struct""#,
            ),
            (
                r#"{"fields": [{"name": "s", "type": "string", "items": "int8"}]}"#,
                r#"test.json: fields[0].items: only allowed with type "list""#,
            ),
            (
                r#"{"fields": [{"name": "t", "type": "timestamp[min]"}]}"#,
                r#"test.json: fields[0].type: unknown timestamp unit "min""#,
            ),
            (
                r#"{"fields": [{"name": "t", "type": "timestamp[us, Mars/Olympus]"}]}"#,
                r#"test.json: fields[0].type: unknown timezone "Mars/Olympus""#,
            ),
            (
                r#"{"fields": [{"name": "d", "type": "decimal(5,6)"}]}"#,
                "test.json: fields[0].type: decimal(5,6): expected",
            ),
            (
                r#"{"fields": [{"name": "d", "type": "decimal(5)"}]}"#,
                "test.json: fields[0].type: expected decimal(precision, scale)",
            ),
        ];
        for (text, prefix) in cases {
            let e = err(text);
            assert!(
                e.starts_with(prefix),
                "{text}: got {e:?}, expected {prefix:?}"
            );
        }
    }

    #[test]
    fn json_syntax_error_names_line_and_column() {
        let e = err("{\"fields\": [\n  {\"name\": \"a\",}\n]}");
        assert!(e.starts_with("test.json: line 2 column"), "{e}");
        assert!(e.contains("invalid JSON"), "{e}");
    }

    #[test]
    fn load_schema_reads_a_file_and_names_it_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.json");
        std::fs::write(&good, r#"{"fields": [{"name": "a", "type": "int64"}]}"#).unwrap();
        assert_eq!(load_schema(&good).unwrap().fields().len(), 1);

        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, r#"{"fields": [{"name": "a", "type": "int65"}]}"#).unwrap();
        let e = load_schema(&bad).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}: fields[0].type", bad.display())),
            "{e}"
        );

        let missing = dir.path().join("missing.json");
        let e = load_schema(&missing).unwrap_err();
        assert!(matches!(e, FormatError::Read { .. }), "{e}");
        assert!(e.to_string().contains("missing.json"), "{e}");
    }

    #[test]
    fn orders_schema_in_the_repository_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/schemas/orders.json");
        let s = load_schema(&path).unwrap();
        let names: Vec<&str> = s.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(
            names,
            [
                "order_id",
                "customer_id",
                "amount",
                "currency",
                "status",
                "event_time",
                "shipping",
                "items"
            ]
        );
        let order_id = s.field_with_name("order_id").unwrap();
        assert_eq!(order_id.data_type(), &DataType::Int64);
        assert!(!order_id.is_nullable());
        assert_eq!(
            s.field_with_name("amount").unwrap().data_type(),
            &DataType::Decimal128(12, 2)
        );
        let event_time = s.field_with_name("event_time").unwrap();
        assert_eq!(
            event_time.data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        assert!(!event_time.is_nullable());
    }
}
