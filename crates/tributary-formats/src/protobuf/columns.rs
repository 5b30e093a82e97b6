//! The Arrow columns of a protobuf message: the schema a message descriptor
//! maps to, and builders that take decoded messages row by row.
//!
//! | protobuf                                   | Arrow                                   |
//! |--------------------------------------------|-----------------------------------------|
//! | `int32`, `sint32`, `sfixed32`              | `Int32`                                 |
//! | `int64`, `sint64`, `sfixed64`              | `Int64`                                 |
//! | `uint32`, `fixed32`                        | `UInt32`                                |
//! | `uint64`, `fixed64`                        | `UInt64`                                |
//! | `float` / `double`                         | `Float32` / `Float64`                   |
//! | `bool`, `string`, `bytes`                  | `Boolean`, `Utf8`, `Binary`             |
//! | enum                                       | `Utf8`: the value's name (the number as text when the schema does not know it) |
//! | message                                    | `Struct` (null when unset)              |
//! | `repeated T`                               | `List<T>` (empty, never null)           |
//! | `map<K, V>`                                | `Map<K, V>` (entries sorted by key)     |
//! | `google.protobuf.Timestamp`                | `Timestamp(Microsecond, "UTC")`         |
//! | `google.protobuf.*Value` wrappers          | the wrapped type, null when unset       |
//!
//! Presence: a field that tracks presence (a message, a proto3 `optional`
//! field, a oneof member, any proto2 scalar) is a nullable column, null when
//! the message does not set it. A proto3 scalar without presence is a
//! non-nullable column holding the proto3 default (0, "", false, the first
//! enum value) when unset. Each member of a `oneof` is its own nullable
//! column; at most one of them is set in a row.
//!
//! Fields whose type is a message without fields (`google.protobuf.Empty`)
//! carry no data and are left out (Parquet has no empty groups). Recursive
//! messages (`google.protobuf.Struct`, a tree node holding its children)
//! cannot be mapped to a fixed set of columns and are refused.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::NullBufferBuilder;
use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Float32Builder, Float64Builder, Int32Builder,
    Int64Builder, ListArray, MapArray, StringBuilder, StructArray, TimestampMicrosecondBuilder,
    UInt32Builder, UInt64Builder,
};
use arrow::buffer::{OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use prost_reflect::{
    DynamicMessage, EnumDescriptor, FieldDescriptor, Kind, MapKey, MessageDescriptor, Value,
};

/// Full name of the well-known timestamp message.
const TIMESTAMP: &str = "google.protobuf.Timestamp";

/// Smallest and largest `google.protobuf.Timestamp.seconds` the spec allows
/// (0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z).
const MIN_SECONDS: i64 = -62_135_596_800;
const MAX_SECONDS: i64 = 253_402_300_799;

/// Why a message cannot be mapped to columns (recursion, no columns at all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SchemaProblem(pub(crate) String);

/// The columns of one message type, filled row by row.
#[derive(Debug)]
pub(crate) struct MessageColumns {
    descriptor: MessageDescriptor,
    schema: SchemaRef,
    children: Vec<(FieldDescriptor, Column)>,
    /// Whether some column needs [`MessageColumns::check`] (timestamps).
    fallible: bool,
}

impl MessageColumns {
    /// Maps a message type to columns, one per (non-empty) field, in field
    /// declaration order.
    pub(crate) fn new(descriptor: &MessageDescriptor) -> Result<Self, SchemaProblem> {
        let mut stack = vec![descriptor.full_name().to_string()];
        let (fields, children) = struct_children(descriptor, "", &mut stack)?;
        if children.is_empty() {
            return Err(SchemaProblem(format!(
                "message {} has no field that maps to a column",
                descriptor.full_name()
            )));
        }
        let fallible = children.iter().any(|(_, c)| c.fallible());
        Ok(Self {
            descriptor: descriptor.clone(),
            schema: Arc::new(Schema::new(fields)),
            children,
            fallible,
        })
    }

    /// The message type.
    pub(crate) fn descriptor(&self) -> &MessageDescriptor {
        &self.descriptor
    }

    /// The Arrow schema of the rows.
    pub(crate) fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Checks the values that can be valid protobuf but cannot be stored
    /// (a timestamp outside years 1–9999). `Err` names the field path.
    pub(crate) fn check(&self, message: &DynamicMessage) -> Result<(), String> {
        if !self.fallible {
            return Ok(());
        }
        for (field, column) in &self.children {
            if let Some(value) = field_value(message, field) {
                column.check(&value, field.name())?;
            }
        }
        Ok(())
    }

    /// Appends one decoded message (of this type, already [checked](Self::check)).
    /// An `Err` means the message does not match the descriptor: a bug, after
    /// which the builders are out of step and must be dropped.
    pub(crate) fn append(&mut self, message: &DynamicMessage) -> Result<(), String> {
        for (field, column) in &mut self.children {
            let value = field_value(message, field);
            column.append(value.as_deref(), field.name())?;
        }
        Ok(())
    }

    /// The rows appended so far; the builders start over empty.
    pub(crate) fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let columns = self
            .children
            .iter_mut()
            .map(|(_, c)| c.finish())
            .collect::<Result<Vec<_>, _>>()?;
        RecordBatch::try_new(self.schema.clone(), columns)
    }
}

/// The value of a field: `None` when the field tracks presence and is unset.
fn field_value<'a>(message: &'a DynamicMessage, field: &FieldDescriptor) -> Option<Cow<'a, Value>> {
    if field.supports_presence() && !message.has_field(field) {
        None
    } else {
        Some(message.get_field(field))
    }
}

/// The columns of a message's fields, each with its field.
type Children = Vec<(FieldDescriptor, Column)>;

/// Arrow fields and columns for the fields of a message. `path` is the
/// field path of the message (empty at the top), `stack` the message types
/// being expanded (to refuse recursion).
fn struct_children(
    descriptor: &MessageDescriptor,
    path: &str,
    stack: &mut Vec<String>,
) -> Result<(Vec<Field>, Children), SchemaProblem> {
    let mut fields = Vec::new();
    let mut children = Vec::new();
    for field in descriptor.fields() {
        let field_path = if path.is_empty() {
            field.name().to_string()
        } else {
            format!("{path}.{}", field.name())
        };
        let Some((data_type, column)) = field_column(&field, &field_path, stack)? else {
            continue;
        };
        let nullable = !field.is_list() && !field.is_map() && field.supports_presence();
        fields.push(Field::new(field.name(), data_type, nullable));
        children.push((field, column));
    }
    Ok((fields, children))
}

/// The type and column of one field (a list or map when the field is one),
/// `None` when it has no data (an empty message).
fn field_column(
    field: &FieldDescriptor,
    path: &str,
    stack: &mut Vec<String>,
) -> Result<Option<(DataType, Column)>, SchemaProblem> {
    if field.is_map() {
        let Kind::Message(entry) = field.kind() else {
            return Err(SchemaProblem(format!(
                "field {path}: a map field without an entry message"
            )));
        };
        let (key_field, value_field) = (entry.map_entry_key_field(), entry.map_entry_value_field());
        let Some((key_type, keys)) = kind_column(&key_field.kind(), path, stack)? else {
            return Ok(None);
        };
        let Some((value_type, values)) =
            kind_column(&value_field.kind(), &format!("{path}.value"), stack)?
        else {
            return Ok(None);
        };
        let entry_fields = Fields::from(vec![
            Field::new("key", key_type, false),
            Field::new("value", value_type, false),
        ]);
        let entries = Arc::new(Field::new(
            "entries",
            DataType::Struct(entry_fields.clone()),
            false,
        ));
        let data_type = DataType::Map(entries.clone(), false);
        let column = Column::Map(MapColumn {
            entries,
            entry_fields,
            offsets: vec![0],
            nulls: NullBufferBuilder::new(0),
            keys: Box::new(keys),
            values: Box::new(values),
        });
        return Ok(Some((data_type, column)));
    }
    let Some((item_type, item)) = kind_column(&field.kind(), path, stack)? else {
        return Ok(None);
    };
    if field.is_list() {
        let item_field = Arc::new(Field::new_list_field(item_type, false));
        let data_type = DataType::List(item_field.clone());
        let column = Column::List(ListColumn {
            item: item_field,
            offsets: vec![0],
            nulls: NullBufferBuilder::new(0),
            child: Box::new(item),
        });
        return Ok(Some((data_type, column)));
    }
    Ok(Some((item_type, item)))
}

/// The type and column of a single value of a kind.
fn kind_column(
    kind: &Kind,
    path: &str,
    stack: &mut Vec<String>,
) -> Result<Option<(DataType, Column)>, SchemaProblem> {
    let pair = match kind {
        Kind::Double => (DataType::Float64, Column::Float64(Float64Builder::new())),
        Kind::Float => (DataType::Float32, Column::Float32(Float32Builder::new())),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            (DataType::Int32, Column::Int32(Int32Builder::new()))
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            (DataType::Int64, Column::Int64(Int64Builder::new()))
        }
        Kind::Uint32 | Kind::Fixed32 => (DataType::UInt32, Column::UInt32(UInt32Builder::new())),
        Kind::Uint64 | Kind::Fixed64 => (DataType::UInt64, Column::UInt64(UInt64Builder::new())),
        Kind::Bool => (DataType::Boolean, Column::Bool(BooleanBuilder::new())),
        Kind::String => (DataType::Utf8, Column::Utf8(StringBuilder::new())),
        Kind::Bytes => (DataType::Binary, Column::Binary(BinaryBuilder::new())),
        Kind::Enum(e) => (
            DataType::Utf8,
            Column::Enum(e.clone(), StringBuilder::new()),
        ),
        Kind::Message(m) => return message_column(m, path, stack),
    };
    Ok(Some(pair))
}

fn message_column(
    m: &MessageDescriptor,
    path: &str,
    stack: &mut Vec<String>,
) -> Result<Option<(DataType, Column)>, SchemaProblem> {
    let name = m.full_name();
    if name == TIMESTAMP {
        let data_type = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let builder = TimestampMicrosecondBuilder::new().with_data_type(data_type.clone());
        return Ok(Some((data_type, Column::Timestamp(builder))));
    }
    if is_wrapper(name) {
        let value = m
            .get_field(1)
            .ok_or_else(|| SchemaProblem(format!("field {path}: {name} has no field number 1")))?;
        let Some((data_type, inner)) = kind_column(&value.kind(), path, stack)? else {
            return Ok(None);
        };
        return Ok(Some((data_type, Column::Wrapper(Box::new(inner)))));
    }
    if stack.iter().any(|s| s == name) {
        return Err(SchemaProblem(format!(
            "field {path}: message {name} contains itself ({} → {name}); recursive messages \
             cannot be mapped to columns",
            stack.join(" → ")
        )));
    }
    stack.push(name.to_string());
    let result = struct_children(m, path, stack);
    stack.pop();
    let (fields, children) = result?;
    if children.is_empty() {
        return Ok(None);
    }
    let fields = Fields::from(fields);
    let column = Column::Struct(StructColumn {
        fields: fields.clone(),
        children,
        nulls: NullBufferBuilder::new(0),
    });
    Ok(Some((DataType::Struct(fields), column)))
}

/// `google.protobuf.DoubleValue` and the other wrappers of one scalar.
fn is_wrapper(full_name: &str) -> bool {
    matches!(
        full_name,
        "google.protobuf.DoubleValue"
            | "google.protobuf.FloatValue"
            | "google.protobuf.Int64Value"
            | "google.protobuf.UInt64Value"
            | "google.protobuf.Int32Value"
            | "google.protobuf.UInt32Value"
            | "google.protobuf.BoolValue"
            | "google.protobuf.StringValue"
            | "google.protobuf.BytesValue"
    )
}

/// Builder of one column.
#[derive(Debug)]
enum Column {
    Bool(BooleanBuilder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    UInt32(UInt32Builder),
    UInt64(UInt64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Utf8(StringBuilder),
    Binary(BinaryBuilder),
    Enum(EnumDescriptor, StringBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    /// A wrapper message: the column of its `value` field.
    Wrapper(Box<Column>),
    Struct(StructColumn),
    List(ListColumn),
    Map(MapColumn),
}

#[derive(Debug)]
struct StructColumn {
    fields: Fields,
    children: Vec<(FieldDescriptor, Column)>,
    nulls: NullBufferBuilder,
}

#[derive(Debug)]
struct ListColumn {
    item: FieldRef,
    offsets: Vec<i32>,
    nulls: NullBufferBuilder,
    child: Box<Column>,
}

#[derive(Debug)]
struct MapColumn {
    entries: FieldRef,
    /// The `key` and `value` fields of `entries`.
    entry_fields: Fields,
    offsets: Vec<i32>,
    nulls: NullBufferBuilder,
    keys: Box<Column>,
    values: Box<Column>,
}

/// The `Value` a map key stands for.
fn key_value(key: &MapKey) -> Value {
    match key {
        MapKey::Bool(v) => Value::Bool(*v),
        MapKey::I32(v) => Value::I32(*v),
        MapKey::I64(v) => Value::I64(*v),
        MapKey::U32(v) => Value::U32(*v),
        MapKey::U64(v) => Value::U64(*v),
        MapKey::String(v) => Value::String(v.clone()),
    }
}

/// A map key as it appears in a field path: `tags["a"]`, `depots[7]`.
fn key_text(key: &MapKey) -> String {
    match key {
        MapKey::Bool(v) => v.to_string(),
        MapKey::I32(v) => v.to_string(),
        MapKey::I64(v) => v.to_string(),
        MapKey::U32(v) => v.to_string(),
        MapKey::U64(v) => v.to_string(),
        MapKey::String(v) => format!("{v:?}"),
    }
}

/// Microseconds since the epoch of a `google.protobuf.Timestamp`, `Err`
/// when it is outside the range the spec allows.
fn timestamp_micros(message: &DynamicMessage) -> Result<i64, String> {
    let seconds = message
        .get_field_by_number(1)
        .and_then(|v| v.as_i64())
        .unwrap_or(0);
    let nanos = message
        .get_field_by_number(2)
        .and_then(|v| v.as_i32())
        .unwrap_or(0);
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&seconds) || !(0..1_000_000_000).contains(&nanos) {
        return Err(format!(
            "google.protobuf.Timestamp out of range (seconds {seconds}, nanos {nanos}): \
             seconds must lie in years 1 to 9999 and nanos in 0..999999999"
        ));
    }
    Ok(seconds * 1_000_000 + i64::from(nanos / 1_000))
}

/// A value whose type does not match its column: the message was not
/// decoded with this descriptor.
fn mismatch(path: &str, value: &Value) -> String {
    let kind = match value {
        Value::Bool(_) => "bool",
        Value::I32(_) => "int32",
        Value::I64(_) => "int64",
        Value::U32(_) => "uint32",
        Value::U64(_) => "uint64",
        Value::F32(_) => "float",
        Value::F64(_) => "double",
        Value::String(_) => "string",
        Value::Bytes(_) => "bytes",
        Value::EnumNumber(_) => "enum",
        Value::Message(_) => "message",
        Value::List(_) => "list",
        Value::Map(_) => "map",
    };
    format!("field {path}: a {kind} value does not match its column")
}

macro_rules! primitive {
    ($builder:expr, $value:expr, $path:expr, $variant:ident) => {
        match $value {
            None => $builder.append_null(),
            Some(Value::$variant(v)) => $builder.append_value(v.clone()),
            Some(other) => return Err(mismatch($path, other)),
        }
    };
}

impl Column {
    /// Whether [`Column::check`] can fail for some value of this column.
    fn fallible(&self) -> bool {
        match self {
            Column::Timestamp(_) => true,
            Column::Wrapper(c) => c.fallible(),
            Column::Struct(s) => s.children.iter().any(|(_, c)| c.fallible()),
            Column::List(l) => l.child.fallible(),
            Column::Map(m) => m.values.fallible(),
            _ => false,
        }
    }

    fn check(&self, value: &Value, path: &str) -> Result<(), String> {
        match (self, value) {
            (Column::Timestamp(_), Value::Message(m)) => timestamp_micros(m)
                .map(|_| ())
                .map_err(|e| format!("field {path}: {e}")),
            (Column::Struct(s), Value::Message(m)) => {
                for (field, column) in &s.children {
                    if let Some(v) = field_value(m, field) {
                        column.check(&v, &format!("{path}.{}", field.name()))?;
                    }
                }
                Ok(())
            }
            (Column::List(l), Value::List(items)) if l.child.fallible() => {
                for (k, item) in items.iter().enumerate() {
                    l.child.check(item, &format!("{path}[{k}]"))?;
                }
                Ok(())
            }
            (Column::Map(m), Value::Map(entries)) if m.values.fallible() => {
                for (key, value) in entries {
                    m.values
                        .check(value, &format!("{path}[{}]", key_text(key)))?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Appends a value, or a null (`None`: unset, or the parent is null).
    fn append(&mut self, value: Option<&Value>, path: &str) -> Result<(), String> {
        match self {
            Column::Bool(b) => primitive!(b, value, path, Bool),
            Column::Int32(b) => primitive!(b, value, path, I32),
            Column::Int64(b) => primitive!(b, value, path, I64),
            Column::UInt32(b) => primitive!(b, value, path, U32),
            Column::UInt64(b) => primitive!(b, value, path, U64),
            Column::Float32(b) => primitive!(b, value, path, F32),
            Column::Float64(b) => primitive!(b, value, path, F64),
            Column::Utf8(b) => match value {
                None => b.append_null(),
                Some(Value::String(s)) => b.append_value(s),
                Some(other) => return Err(mismatch(path, other)),
            },
            Column::Binary(b) => match value {
                None => b.append_null(),
                Some(Value::Bytes(s)) => b.append_value(s),
                Some(other) => return Err(mismatch(path, other)),
            },
            Column::Enum(e, b) => match value {
                None => b.append_null(),
                Some(Value::EnumNumber(n)) => match e.get_value(*n) {
                    Some(v) => b.append_value(v.name()),
                    None => b.append_value(n.to_string()),
                },
                Some(other) => return Err(mismatch(path, other)),
            },
            Column::Timestamp(b) => match value {
                None => b.append_null(),
                Some(Value::Message(m)) => b.append_value(timestamp_micros(m)?),
                Some(other) => return Err(mismatch(path, other)),
            },
            Column::Wrapper(inner) => match value {
                None => inner.append(None, path)?,
                Some(Value::Message(m)) => {
                    let v = m.get_field_by_number(1);
                    inner.append(v.as_deref(), path)?;
                }
                Some(other) => return Err(mismatch(path, other)),
            },
            Column::Struct(s) => match value {
                None => {
                    for (field, column) in &mut s.children {
                        column.append(None, field.name())?;
                    }
                    s.nulls.append_null();
                }
                Some(Value::Message(m)) => {
                    for (field, column) in &mut s.children {
                        let v = field_value(m, field);
                        column.append(v.as_deref(), &format!("{path}.{}", field.name()))?;
                    }
                    s.nulls.append_non_null();
                }
                Some(other) => return Err(mismatch(path, other)),
            },
            Column::List(l) => match value {
                None => {
                    l.offsets.push(*l.offsets.last().unwrap_or(&0));
                    l.nulls.append_null();
                }
                Some(Value::List(items)) => {
                    for item in items {
                        l.child.append(Some(item), path)?;
                    }
                    push_offset(&mut l.offsets, items.len(), path)?;
                    l.nulls.append_non_null();
                }
                Some(other) => return Err(mismatch(path, other)),
            },
            Column::Map(m) => match value {
                None => {
                    m.offsets.push(*m.offsets.last().unwrap_or(&0));
                    m.nulls.append_null();
                }
                Some(Value::Map(entries)) => {
                    // Sorted, so equal maps give equal rows.
                    let mut sorted: Vec<_> = entries.iter().collect();
                    sorted.sort_by(|a, b| a.0.cmp(b.0));
                    for (key, value) in sorted {
                        m.keys.append(Some(&key_value(key)), path)?;
                        m.values.append(Some(value), path)?;
                    }
                    push_offset(&mut m.offsets, entries.len(), path)?;
                    m.nulls.append_non_null();
                }
                Some(other) => return Err(mismatch(path, other)),
            },
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<ArrayRef, ArrowError> {
        Ok(match self {
            Column::Bool(b) => Arc::new(b.finish()),
            Column::Int32(b) => Arc::new(b.finish()),
            Column::Int64(b) => Arc::new(b.finish()),
            Column::UInt32(b) => Arc::new(b.finish()),
            Column::UInt64(b) => Arc::new(b.finish()),
            Column::Float32(b) => Arc::new(b.finish()),
            Column::Float64(b) => Arc::new(b.finish()),
            Column::Utf8(b) => Arc::new(b.finish()),
            Column::Binary(b) => Arc::new(b.finish()),
            Column::Enum(_, b) => Arc::new(b.finish()),
            Column::Timestamp(b) => Arc::new(b.finish()),
            Column::Wrapper(inner) => inner.finish()?,
            Column::Struct(s) => {
                let children = s
                    .children
                    .iter_mut()
                    .map(|(_, c)| c.finish())
                    .collect::<Result<_, _>>()?;
                Arc::new(StructArray::try_new(
                    s.fields.clone(),
                    children,
                    s.nulls.finish(),
                )?)
            }
            Column::List(l) => {
                let offsets = std::mem::replace(&mut l.offsets, vec![0]);
                let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
                Arc::new(ListArray::try_new(
                    l.item.clone(),
                    offsets,
                    l.child.finish()?,
                    l.nulls.finish(),
                )?)
            }
            Column::Map(m) => {
                let offsets = std::mem::replace(&mut m.offsets, vec![0]);
                let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
                let entries = StructArray::try_new(
                    m.entry_fields.clone(),
                    vec![m.keys.finish()?, m.values.finish()?],
                    None,
                )?;
                Arc::new(MapArray::try_new(
                    m.entries.clone(),
                    offsets,
                    entries,
                    m.nulls.finish(),
                    false,
                )?)
            }
        })
    }
}

/// Appends the end offset of a list or map that got `len` more items.
fn push_offset(offsets: &mut Vec<i32>, len: usize, path: &str) -> Result<(), String> {
    let last = *offsets.last().unwrap_or(&0);
    let end = i32::try_from(len)
        .ok()
        .and_then(|len| last.checked_add(len))
        .ok_or_else(|| format!("field {path}: more than 2^31 list items in one batch"))?;
    offsets.push(end);
    Ok(())
}
