//! Schema evolution: one merged table schema per converter, which every
//! batch is cast to. See [`TableSchema`].
//!
//! # Policy
//!
//! A converter keeps a [`TableSchema`] and passes every batch it produces
//! through [`TableSchema::admit`]. With [`EvolutionPolicy::Merge`]:
//!
//! - a field the table does not have yet is added at the end, nullable
//!   (rows written before have no value for it, even when the producer
//!   declares it required);
//! - a field the batch lacks is filled with nulls (the table field becomes
//!   nullable if it was not);
//! - a type may widen: signed integers to wider signed integers, unsigned
//!   integers to wider unsigned or signed integers, integers and `float32`
//!   to `float64`, `float16` to `float32`, `utf8` to `large_utf8`, `binary`
//!   to `large_binary`, `date32` to `date64` or a timestamp, a timestamp to
//!   a finer unit (same time zone), decimals to more integer or fraction
//!   digits (`decimal128` to `decimal256` past 38 digits), `list` to
//!   `large_list`; struct fields, list items and map entries evolve by the
//!   same rules, recursively;
//! - a batch with a narrower type than the table's (an old producer after a
//!   widening) is cast up and does not change the table.
//!
//! Anything else (`utf8` where there was `int64`, a struct where there was a
//! scalar, `uint64` with signed integers, another time zone) is a
//! [`SchemaChange`] naming the field path with the old and the new type; the
//! converter rejects the batch's records with it as the reason, or stops, by
//! its `on_error`. With [`EvolutionPolicy::Strict`] the table schema never
//! changes: only batches that fit it (by name, with narrower types and
//! missing nullable fields) are admitted.
//!
//! The table schema only grows, and every admitted batch has exactly the
//! table schema (the same [`SchemaRef`] until the next change). The Parquet
//! sink starts a new file when the schema of its rows changes, so producers
//! that alternate between an old and a new shape cost one new file per
//! change of the table schema, not one per alternation.
//!
//! ```
//! use std::sync::Arc;
//! use arrow::array::{Float64Array, Int64Array, RecordBatch};
//! use arrow::datatypes::{DataType, Field, Schema};
//! use tributary_formats::evolution::{EvolutionPolicy, TableSchema};
//!
//! let batch = |field: Field, column: arrow::array::ArrayRef| {
//!     RecordBatch::try_new(Arc::new(Schema::new(vec![field])), vec![column]).unwrap()
//! };
//! let mut table = TableSchema::new(EvolutionPolicy::Merge);
//! table.admit(batch(Field::new("n", DataType::Int64, true), Arc::new(Int64Array::from(vec![1]))))?;
//! let wide = table.admit(batch(
//!     Field::new("n", DataType::Float64, true),
//!     Arc::new(Float64Array::from(vec![1.5])),
//! ))?;
//! assert_eq!(wide.schema().field(0).data_type(), &DataType::Float64);
//! // An old-shape batch is cast up; the table does not change again.
//! let old = table.admit(batch(Field::new("n", DataType::Int64, true), Arc::new(Int64Array::from(vec![2]))))?;
//! assert_eq!(old.schema(), wide.schema());
//! assert_eq!(table.changes(), 1);
//! // A string where a number was is not a widening.
//! let err = table
//!     .admit(batch(Field::new("n", DataType::Utf8, true), Arc::new(arrow::array::StringArray::from(vec!["x"]))))
//!     .unwrap_err();
//! assert_eq!(err.to_string(), r#"field "n": type Float64 cannot change to Utf8 (not a widening)"#);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::sync::Arc;

use arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, GenericListArray, OffsetSizeTrait, RecordBatch,
    StructArray,
};
use arrow::compute::{cast_with_options, CastOptions};
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, SchemaRef, TimeUnit};

pub use tributary_config::SchemaEvolution as EvolutionPolicy;

/// The most digits a `decimal128` holds.
const DECIMAL128_MAX_PRECISION: u8 = 38;
/// The most digits a `decimal256` holds.
const DECIMAL256_MAX_PRECISION: u8 = 76;

/// A change of schema the policy does not admit: the field path (`a.b`,
/// list items as `a[]`), the table's type and the batch's type.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("field \"{path}\": {detail}")]
pub struct SchemaChange {
    /// Dotted path of the field; `[]` stands for a list item.
    pub path: String,
    /// The field's type in the table, `None` for a field the table lacks.
    pub old: Option<DataType>,
    /// The field's type in the batch, `None` for a field the batch lacks.
    pub new: Option<DataType>,
    /// What is wrong, in words.
    pub detail: String,
}

impl SchemaChange {
    fn incompatible(path: &str, old: &DataType, new: &DataType) -> Self {
        Self {
            path: path.to_string(),
            old: Some(old.clone()),
            new: Some(new.clone()),
            detail: format!("type {old} cannot change to {new} (not a widening)"),
        }
    }
}

/// The merged schema of one table (one converter's output), and the policy
/// by which batches may change it. See the [module docs](self).
#[derive(Clone, Debug)]
pub struct TableSchema {
    policy: EvolutionPolicy,
    schema: Option<SchemaRef>,
    changes: u64,
}

impl TableSchema {
    /// A table whose schema is set by the first admitted batch.
    pub fn new(policy: EvolutionPolicy) -> Self {
        Self {
            policy,
            schema: None,
            changes: 0,
        }
    }

    /// A table that starts with `schema`.
    pub fn with_schema(schema: SchemaRef, policy: EvolutionPolicy) -> Self {
        Self {
            policy,
            schema: Some(schema),
            changes: 0,
        }
    }

    /// The current table schema; `None` before the first batch.
    pub fn schema(&self) -> Option<&SchemaRef> {
        self.schema.as_ref()
    }

    /// The policy.
    pub fn policy(&self) -> EvolutionPolicy {
        self.policy
    }

    /// How often the schema changed since this table was made.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// The schema the table would have after admitting rows of `incoming`
    /// (the current one when it does not change), without changing it.
    pub fn merged(&self, incoming: &Schema) -> Result<SchemaRef, SchemaChange> {
        let Some(current) = &self.schema else {
            return Ok(Arc::new(incoming.clone()));
        };
        if current.fields() == incoming.fields() {
            return Ok(current.clone());
        }
        let fields = merge_fields(current.fields(), incoming.fields(), "")?;
        if &fields == current.fields() {
            return Ok(current.clone());
        }
        if self.policy == EvolutionPolicy::Strict {
            return Err(strict_change(current.fields(), &fields, ""));
        }
        Ok(Arc::new(Schema::new_with_metadata(
            fields,
            current.metadata().clone(),
        )))
    }

    /// Merges the batch's schema into the table schema (by the policy) and
    /// returns the batch cast to the resulting table schema: columns the
    /// batch lacks are null, narrower types are cast up, columns are in table
    /// order. On `Err` the table is unchanged.
    pub fn admit(&mut self, rows: RecordBatch) -> Result<RecordBatch, SchemaChange> {
        if self.schema.is_none() {
            self.schema = Some(rows.schema());
            return Ok(rows);
        }
        let merged = self.merged(&rows.schema())?;
        let changed = self
            .schema
            .as_ref()
            .is_some_and(|s| !Arc::ptr_eq(s, &merged));
        let out = conform_batch(&rows, &merged)?;
        if changed {
            self.changes += 1;
        }
        self.schema = Some(merged);
        Ok(out)
    }
}

/// Why a strict table does not admit `merged`: the first field that differs.
fn strict_change(old: &Fields, merged: &Fields, prefix: &str) -> SchemaChange {
    for field in merged {
        let path = join(prefix, field.name());
        let Some((_, before)) = old.find(field.name()) else {
            return SchemaChange {
                path,
                old: None,
                new: Some(field.data_type().clone()),
                detail: format!(
                    "new field of type {} (schema_evolution = \"strict\" admits no new field)",
                    field.data_type()
                ),
            };
        };
        if before.data_type() != field.data_type() {
            if let (DataType::Struct(a), DataType::Struct(b)) =
                (before.data_type(), field.data_type())
            {
                return strict_change(a, b, &path);
            }
            return SchemaChange {
                path,
                old: Some(before.data_type().clone()),
                new: Some(field.data_type().clone()),
                detail: format!(
                    "type {} would widen to {} (schema_evolution = \"strict\" admits no change)",
                    before.data_type(),
                    field.data_type()
                ),
            };
        }
        if before.is_nullable() != field.is_nullable() {
            return SchemaChange {
                path,
                old: Some(before.data_type().clone()),
                new: None,
                detail: "is missing or null, but the schema does not allow null".into(),
            };
        }
    }
    SchemaChange {
        path: prefix.to_string(),
        old: None,
        new: None,
        detail: "schema changed (schema_evolution = \"strict\" admits no change)".into(),
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// The table's fields merged with a batch's: table fields first, in their
/// order, then the batch's new fields (nullable) in the batch's order.
pub(crate) fn merge_fields(
    table: &Fields,
    batch: &Fields,
    prefix: &str,
) -> Result<Fields, SchemaChange> {
    let mut out: Vec<FieldRef> = Vec::with_capacity(table.len().max(batch.len()));
    for old in table {
        match batch.find(old.name()) {
            Some((_, new)) => out.push(merge_field(old, new, &join(prefix, old.name()))?),
            None if old.is_nullable() => out.push(old.clone()),
            None => out.push(Arc::new(old.as_ref().clone().with_nullable(true))),
        }
    }
    for new in batch {
        if table.find(new.name()).is_none() {
            let field = new.as_ref().clone().with_nullable(true);
            out.push(Arc::new(field));
        }
    }
    Ok(out.into())
}

fn merge_field(old: &FieldRef, new: &FieldRef, path: &str) -> Result<FieldRef, SchemaChange> {
    let data_type = merge_types(old.data_type(), new.data_type(), path)?;
    let nullable = old.is_nullable() || new.is_nullable();
    if &data_type == old.data_type() && nullable == old.is_nullable() {
        return Ok(old.clone());
    }
    Ok(Arc::new(
        old.as_ref()
            .clone()
            .with_data_type(data_type)
            .with_nullable(nullable),
    ))
}

/// Rank of a signed integer type (wider is larger).
fn signed_rank(t: &DataType) -> Option<u8> {
    Some(match t {
        DataType::Int8 => 1,
        DataType::Int16 => 2,
        DataType::Int32 => 3,
        DataType::Int64 => 4,
        _ => return None,
    })
}

fn unsigned_rank(t: &DataType) -> Option<u8> {
    Some(match t {
        DataType::UInt8 => 1,
        DataType::UInt16 => 2,
        DataType::UInt32 => 3,
        DataType::UInt64 => 4,
        _ => return None,
    })
}

fn signed_of_rank(rank: u8) -> Option<DataType> {
    Some(match rank {
        1 => DataType::Int8,
        2 => DataType::Int16,
        3 => DataType::Int32,
        4 => DataType::Int64,
        _ => return None,
    })
}

fn float_rank(t: &DataType) -> Option<u8> {
    Some(match t {
        DataType::Float16 => 1,
        DataType::Float32 => 2,
        DataType::Float64 => 3,
        _ => return None,
    })
}

fn unit_rank(u: TimeUnit) -> u8 {
    match u {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => 1,
        TimeUnit::Microsecond => 2,
        TimeUnit::Nanosecond => 3,
    }
}

fn is_integer(t: &DataType) -> bool {
    signed_rank(t).is_some() || unsigned_rank(t).is_some()
}

/// The narrowest type both `old` and `new` values fit in without loss
/// (integers to `float64` excepted), or the incompatibility.
fn merge_types(old: &DataType, new: &DataType, path: &str) -> Result<DataType, SchemaChange> {
    use DataType as D;
    if old == new {
        return Ok(old.clone());
    }
    let fail = || Err(SchemaChange::incompatible(path, old, new));
    let pick = |wider_is_new: bool| Ok(if wider_is_new { new } else { old }.clone());
    match (old, new) {
        (D::Null, t) | (t, D::Null) => Ok(t.clone()),
        _ if signed_rank(old).is_some() && signed_rank(new).is_some() => {
            pick(signed_rank(new) > signed_rank(old))
        }
        _ if unsigned_rank(old).is_some() && unsigned_rank(new).is_some() => {
            pick(unsigned_rank(new) > unsigned_rank(old))
        }
        _ if is_integer(old) && is_integer(new) => {
            // One signed, one unsigned: a signed type one step wider than the unsigned one.
            let (s, u) = match signed_rank(old) {
                Some(s) => (s, unsigned_rank(new).unwrap_or(0)),
                None => (
                    signed_rank(new).unwrap_or(0),
                    unsigned_rank(old).unwrap_or(0),
                ),
            };
            match signed_of_rank(s.max(u + 1)) {
                Some(t) => Ok(t),
                None => fail(),
            }
        }
        _ if float_rank(old).is_some() && float_rank(new).is_some() => {
            pick(float_rank(new) > float_rank(old))
        }
        _ if (is_integer(old) || float_rank(old).is_some())
            && (is_integer(new) || float_rank(new).is_some()) =>
        {
            Ok(D::Float64)
        }
        (D::Utf8, D::LargeUtf8) | (D::LargeUtf8, D::Utf8) => Ok(D::LargeUtf8),
        (D::Binary, D::LargeBinary) | (D::LargeBinary, D::Binary) => Ok(D::LargeBinary),
        (D::Date32, D::Date64) | (D::Date64, D::Date32) => Ok(D::Date64),
        (D::Date32 | D::Date64, D::Timestamp(..)) => Ok(new.clone()),
        (D::Timestamp(..), D::Date32 | D::Date64) => Ok(old.clone()),
        (D::Timestamp(u1, tz1), D::Timestamp(u2, tz2)) if tz1 == tz2 => {
            pick(unit_rank(*u2) > unit_rank(*u1))
        }
        (
            D::Decimal128(p1, s1) | D::Decimal256(p1, s1),
            D::Decimal128(p2, s2) | D::Decimal256(p2, s2),
        ) if *s1 >= 0 && *s2 >= 0 => {
            let scale = (*s1).max(*s2);
            let digits = (i16::from(*p1) - i16::from(*s1)).max(i16::from(*p2) - i16::from(*s2));
            let precision = u8::try_from(digits + i16::from(scale)).unwrap_or(u8::MAX);
            let wide = matches!(old, D::Decimal256(..)) || matches!(new, D::Decimal256(..));
            if precision <= DECIMAL128_MAX_PRECISION && !wide {
                Ok(D::Decimal128(precision, scale))
            } else if precision <= DECIMAL256_MAX_PRECISION {
                Ok(D::Decimal256(precision, scale))
            } else {
                fail()
            }
        }
        (D::Struct(a), D::Struct(b)) => Ok(D::Struct(merge_fields(a, b, path)?)),
        (D::List(a), D::List(b)) => Ok(D::List(merge_item(a, b, path)?)),
        (D::LargeList(a), D::LargeList(b) | D::List(b)) | (D::List(a), D::LargeList(b)) => {
            Ok(D::LargeList(merge_item(a, b, path)?))
        }
        (D::Map(a, sorted_a), D::Map(b, sorted_b)) if sorted_a == sorted_b => {
            let entries = merge_field(a, b, path)?;
            match entries.data_type() {
                D::Struct(f) if f.len() == 2 => Ok(D::Map(entries, *sorted_a)),
                _ => fail(),
            }
        }
        _ => fail(),
    }
}

fn merge_item(old: &FieldRef, new: &FieldRef, path: &str) -> Result<FieldRef, SchemaChange> {
    merge_field(old, new, &format!("{path}[]"))
}

/// `rows` with exactly the fields of `schema` (by name), cast where needed.
fn conform_batch(rows: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, SchemaChange> {
    if rows.schema_ref() == schema {
        return Ok(rows.clone());
    }
    let source = rows.schema();
    let columns = schema
        .fields()
        .iter()
        .map(|target| match source.column_with_name(target.name()) {
            Some((i, _)) => conform(rows.column(i), target, target.name()),
            None => Ok(new_null_array(target.data_type(), rows.num_rows())),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows.num_rows()));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options).map_err(|e| SchemaChange {
        path: String::new(),
        old: None,
        new: None,
        detail: format!("rows do not fit the merged schema: {e}"),
    })
}

/// One column cast to `target`'s type; struct children matched by name.
/// A list whose items are conformed to `item`, offsets and nulls kept.
fn conform_items<O: OffsetSizeTrait>(
    array: &ArrayRef,
    item: &FieldRef,
    path: &str,
    failed: &dyn Fn(String) -> SchemaChange,
) -> Result<GenericListArray<O>, SchemaChange> {
    let l = array.as_list::<O>();
    let values = conform(l.values(), item, &format!("{path}[]"))?;
    GenericListArray::<O>::try_new(
        item.clone(),
        l.offsets().clone(),
        values,
        l.nulls().cloned(),
    )
    .map_err(|e| failed(e.to_string()))
}

fn conform(array: &ArrayRef, target: &Field, path: &str) -> Result<ArrayRef, SchemaChange> {
    let from = array.data_type();
    let to = target.data_type();
    if from == to {
        return Ok(array.clone());
    }
    let failed = |e: String| SchemaChange {
        path: path.to_string(),
        old: Some(to.clone()),
        new: Some(from.clone()),
        detail: format!("cannot cast {from} to {to}: {e}"),
    };
    match (from, to) {
        (DataType::Struct(_), DataType::Struct(fields)) => {
            let s = array.as_struct();
            let children = fields
                .iter()
                .map(|f| match s.column_by_name(f.name()) {
                    Some(c) => conform(c, f, &join(path, f.name())),
                    None => Ok(new_null_array(f.data_type(), s.len())),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = StructArray::try_new(fields.clone(), children, s.nulls().cloned())
                .map_err(|e| failed(e.to_string()))?;
            Ok(Arc::new(out))
        }
        (DataType::List(_), DataType::List(item)) => {
            Ok(Arc::new(conform_items::<i32>(array, item, path, &failed)?))
        }
        (DataType::LargeList(_), DataType::LargeList(item)) => {
            Ok(Arc::new(conform_items::<i64>(array, item, path, &failed)?))
        }
        (DataType::List(_), DataType::LargeList(item)) => {
            // Conform the items first, then let arrow widen the offsets.
            let list: ArrayRef = Arc::new(conform_items::<i32>(array, item, path, &failed)?);
            cast_safe(&list, to).map_err(failed)
        }
        _ => cast_safe(array, to).map_err(failed),
    }
}

/// Arrow's cast that fails instead of turning an out-of-range value into null.
fn cast_safe(array: &ArrayRef, to: &DataType) -> Result<ArrayRef, String> {
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    cast_with_options(array, to, &options).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
