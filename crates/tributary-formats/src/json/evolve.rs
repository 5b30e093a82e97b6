//! Schema evolution for the JSON converter: which records do not fit the
//! current schema ([`fits`]), and what the schema grows to so they do
//! ([`grow`]).

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, FieldRef, Fields};
use arrow::error::ArrowError;
use arrow::json::reader::infer_json_schema_from_iterator;
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::evolution::merge_fields;

/// Most fields (counted at every depth) records may grow the schema to: keys
/// that are data (ids, dates) would otherwise grow it, and the files, without bound.
pub(super) const MAX_FIELDS: usize = 1_000;

/// Fields at every depth (struct children, list items of structs included).
fn count_fields(fields: &Fields) -> usize {
    fn of_type(t: &DataType) -> usize {
        match t {
            DataType::Struct(f) => count_fields(f),
            DataType::List(i) | DataType::LargeList(i) | DataType::FixedSizeList(i, _) => {
                of_type(i.data_type())
            }
            DataType::Map(e, _) => of_type(e.data_type()),
            _ => 0,
        }
    }
    fields.iter().map(|f| 1 + of_type(f.data_type())).sum()
}

/// Whether the JSON object in `payload` fits `fields` without losing
/// anything: every key holding a value is a field (at every depth; keys
/// holding only `null`, `[]` or `{}` do not count), no fractional number
/// sits in an integer column, no object or array sits in a scalar column.
/// Values the decoder judges itself (strings parsed as numbers or times,
/// numbers out of range) count as fitting. A payload that is not one JSON
/// object also counts as fitting: the decoder rejects it with its own reason.
pub(super) fn fits(payload: &[u8], fields: &Fields, coerce: bool) -> bool {
    if payload.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return true;
    }
    let mut de = serde_json::Deserializer::from_slice(payload);
    let seed = Fits {
        data_type: None,
        fields: Some(fields),
        coerce,
    };
    seed.deserialize(&mut de).unwrap_or(true)
}

/// The payload fields grown so that every record of `records` fits, in
/// order; a record whose fields cannot be merged (not a widening) is
/// returned with the reason instead and does not change the schema.
/// `reserved` names top-level fields a record may not add (metadata columns).
pub(super) fn grow<'a>(
    current: &Fields,
    records: impl IntoIterator<Item = (usize, &'a [u8])>,
    coerce: bool,
    reserved: &[&str],
) -> (Fields, Vec<(usize, String)>) {
    let mut fields = current.clone();
    let mut rejects = Vec::new();
    for (i, payload) in records {
        let Ok(value @ Value::Object(_)) = serde_json::from_slice::<Value>(payload) else {
            continue;
        };
        let Ok(inferred) =
            infer_json_schema_from_iterator(std::iter::once(Ok::<_, ArrowError>(value)))
        else {
            continue;
        };
        let wanted = adapt_fields(&fields, inferred.fields(), coerce);
        if let Some(name) = wanted
            .iter()
            .map(|f| f.name().as_str())
            .find(|n| fields.find(n).is_none() && reserved.contains(n))
        {
            rejects.push((
                i,
                format!("field \"{name}\": clashes with the metadata column of the same name"),
            ));
            continue;
        }
        match merge_fields(&fields, &wanted, "") {
            Ok(merged) if count_fields(&merged) > MAX_FIELDS => {
                let name = merged
                    .iter()
                    .find(|f| fields.find(f.name()).map(|(_, old)| old) != Some(*f))
                    .map_or("", |f| f.name().as_str());
                rejects.push((
                    i,
                    format!(
                        "field \"{name}\": the schema would grow past {MAX_FIELDS} fields \
                         (objects with ever-new keys need schema_evolution = \"strict\")"
                    ),
                ));
            }
            Ok(merged) => fields = merged,
            Err(change) => rejects.push((i, change.to_string())),
        }
    }
    (fields, rejects)
}

/// The fields a record's inferred fields ask for, given the current ones:
/// where the decoder reads the record's value into the current type anyway
/// (numbers into strings when `coerce`, strings into numbers or times), the
/// current type; fields seen only as `null` (or empty arrays) are left out,
/// since they say nothing about their type.
fn adapt_fields(current: &Fields, inferred: &Fields, coerce: bool) -> Fields {
    inferred
        .iter()
        .filter_map(|f| {
            let data_type = match current.find(f.name()) {
                Some((_, c)) => adapt_type(c.data_type(), f.data_type(), coerce),
                None => without_nulls(f.data_type())?,
            };
            Some(Arc::new(Field::new(f.name(), data_type, true)))
        })
        .collect()
}

fn adapt_type(current: &DataType, inferred: &DataType, coerce: bool) -> DataType {
    use DataType as D;
    let numeric = |t: &DataType| t.is_numeric();
    match (current, inferred) {
        (_, D::Null) => current.clone(),
        (D::Utf8 | D::LargeUtf8 | D::Utf8View, D::Int64 | D::Float64 | D::Boolean) if coerce => {
            current.clone()
        }
        (D::Timestamp(..) | D::Date32 | D::Date64, D::Utf8 | D::Int64) => current.clone(),
        // Inference sees every JSON integer as int64 and every string as
        // utf8: the column's own number type stays (values out of its range
        // are the decoder's to reject); only a fraction widens an integer.
        (c, D::Utf8 | D::Int64) if numeric(c) => current.clone(),
        (c, D::Float64) if c.is_floating() => current.clone(),
        (D::Decimal128(..) | D::Decimal256(..), D::Int64 | D::Float64) => current.clone(),
        (D::Struct(c), D::Struct(i)) => D::Struct(adapt_fields(c, i, coerce)),
        (D::List(c), D::List(i)) => D::List(adapt_item(c, i, coerce)),
        (D::LargeList(c), D::List(i)) => D::LargeList(adapt_item(c, i, coerce)),
        (D::Map(..), D::Struct(_)) => current.clone(),
        _ => without_nulls(inferred).unwrap_or_else(|| current.clone()),
    }
}

fn adapt_item(current: &FieldRef, inferred: &FieldRef, coerce: bool) -> FieldRef {
    Arc::new(current.as_ref().clone().with_data_type(adapt_type(
        current.data_type(),
        inferred.data_type(),
        coerce,
    )))
}

/// `data_type` without fields seen only as `null`; `None` when nothing is left.
fn without_nulls(data_type: &DataType) -> Option<DataType> {
    match data_type {
        DataType::Null => None,
        DataType::Struct(fields) => {
            let kept: Fields = fields
                .iter()
                .filter_map(|f| {
                    let t = without_nulls(f.data_type())?;
                    Some(Arc::new(Field::new(f.name(), t, true)))
                })
                .collect();
            (!kept.is_empty()).then_some(DataType::Struct(kept))
        }
        DataType::List(item) => {
            let t = without_nulls(item.data_type())?;
            Some(DataType::List(Arc::new(
                item.as_ref().clone().with_data_type(t),
            )))
        }
        other => Some(other.clone()),
    }
}

/// Checks one JSON value against a type (`data_type`), or an object against
/// the fields of a struct (`fields`).
#[derive(Clone, Copy)]
struct Fits<'a> {
    data_type: Option<&'a DataType>,
    fields: Option<&'a Fields>,
    coerce: bool,
}

impl<'a> Fits<'a> {
    fn of(data_type: &'a DataType, coerce: bool) -> Self {
        let fields = match data_type {
            DataType::Struct(f) => Some(f),
            _ => None,
        };
        Self {
            data_type: Some(data_type),
            fields,
            coerce,
        }
    }

    fn is_string(&self) -> bool {
        matches!(
            self.data_type,
            Some(DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
        )
    }

    fn is_nested(&self) -> bool {
        self.fields.is_some()
            || matches!(
                self.data_type,
                Some(
                    DataType::List(_)
                        | DataType::LargeList(_)
                        | DataType::FixedSizeList(..)
                        | DataType::Map(..)
                )
            )
    }

    fn takes_integers(&self) -> bool {
        match self.data_type {
            Some(t) => {
                t.is_numeric()
                    || matches!(
                        t,
                        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64
                    )
                    || (self.coerce && self.is_string())
            }
            None => false,
        }
    }

    fn takes_fractions(&self) -> bool {
        match self.data_type {
            Some(t) => {
                t.is_floating()
                    || matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..))
                    || (self.coerce && self.is_string())
            }
            None => false,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Fits<'_> {
    type Value = bool;

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<bool, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Fits<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(true)
    }

    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(matches!(self.data_type, Some(DataType::Boolean)) || (self.coerce && self.is_string()))
    }

    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(self.takes_integers())
    }

    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(self.takes_integers())
    }

    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(self.takes_fractions())
    }

    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(self.data_type.is_some() && !self.is_nested())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let item = match self.data_type {
            Some(DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _)) => {
                Some(Fits::of(f.data_type(), self.coerce))
            }
            _ => None,
        };
        let mut ok = item.is_some();
        match item {
            Some(item) => {
                while let Some(fit) = seq.next_element_seed(item)? {
                    ok &= fit;
                }
            }
            None => while seq.next_element::<IgnoredAny>()?.is_some() {},
        }
        Ok(ok)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut ok = true;
        match (self.fields, self.data_type) {
            (Some(fields), _) => {
                while let Some(field) = map.next_key_seed(Key(fields))? {
                    match field {
                        Some(f) => {
                            ok &= map.next_value_seed(Fits::of(f.data_type(), self.coerce))?
                        }
                        // A field the schema lacks fits only while it holds no
                        // value (`null`, `[]`, `{}`): such fields are not added.
                        None => ok &= map.next_value_seed(Empty)?,
                    }
                }
            }
            (None, Some(DataType::Map(entries, _))) => {
                let value = match entries.data_type() {
                    DataType::Struct(f) if f.len() == 2 => {
                        Some(Fits::of(f[1].data_type(), self.coerce))
                    }
                    _ => None,
                };
                ok = value.is_some();
                while map.next_key::<IgnoredAny>()?.is_some() {
                    match value {
                        Some(v) => ok &= map.next_value_seed(v)?,
                        None => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
            }
            _ => {
                ok = false;
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            }
        }
        Ok(ok)
    }
}

/// Whether a JSON value holds nothing: `null`, or arrays and objects of
/// nothing (what [`without_nulls`] leaves out).
#[derive(Clone, Copy)]
struct Empty;

impl<'de> DeserializeSeed<'de> for Empty {
    type Value = bool;

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<bool, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Empty {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<bool, E> {
        Ok(true)
    }

    fn visit_bool<E>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_i64<E>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_u64<E>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_f64<E>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_str<E>(self, _: &str) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let mut empty = true;
        while let Some(e) = seq.next_element_seed(Empty)? {
            empty &= e;
        }
        Ok(empty)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut empty = true;
        while map.next_key::<IgnoredAny>()?.is_some() {
            empty &= map.next_value_seed(Empty)?;
        }
        Ok(empty)
    }
}

/// Looks a key up among the fields of a struct.
struct Key<'a>(&'a Fields);

impl<'de, 'a> DeserializeSeed<'de> for Key<'a> {
    type Value = Option<&'a FieldRef>;

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_str(self)
    }
}

impl<'de, 'a> Visitor<'de> for Key<'a> {
    type Value = Option<&'a FieldRef>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.0.find(key).map(|(_, f)| f))
    }
}
