//! The transforms, each one step on a [`RecordBatch`].

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int32Array, Int64Array, StringArray,
    TimestampMicrosecondArray, TimestampMillisecondArray,
};
use arrow::buffer::NullBuffer;
use arrow::compute::{can_cast_types, cast, cast_with_options, CastOptions};
use arrow::datatypes::{
    DataType, Date32Type, Field, FieldRef, Fields, Float64Type, Int64Type, Schema, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};
use chrono_tz::Tz;
use tributary_config::{
    MetadataField, StaticValue, TimestampTarget, TimestampTransform, TransformConfig,
};
use tributary_core::{RawRecord, TopicPartition};

use crate::error::StepError;
use crate::expr::{self, Expr};
use crate::path::{self, EditError};

/// Longest value quoted in a reject reason.
const MAX_VALUE_CHARS: usize = 80;

/// The rows a step works on, with what is known about where they came from.
pub(crate) struct Rows<'a> {
    pub batch: RecordBatch,
    pub partition: &'a TopicPartition,
    pub records: &'a [RawRecord],
    /// Per row: the index in `records` of its source record (when needed).
    pub origin: Option<Vec<usize>>,
}

/// What a step did.
pub(crate) enum Outcome {
    /// The transformed rows.
    Done(RecordBatch),
    /// Keep only the rows where this is true (null counts as false).
    Keep(BooleanArray),
    /// These rows (with reasons) cannot be transformed: they are taken out
    /// and the step runs again on the rest.
    Failed(Vec<(usize, String)>),
}

/// A value inserted by [`Step::Insert`].
#[derive(Debug)]
pub(crate) enum InsertValue {
    Static(StaticValue),
    Metadata(MetadataField),
}

/// How a [`Step::Timestamp`] reads its input.
#[derive(Debug, Clone)]
pub(crate) enum TsFormat {
    Rfc3339,
    UnixS,
    UnixMs,
    UnixUs,
    /// A strftime pattern; `offset` when it parses a UTC offset (`%z`).
    Pattern {
        pattern: String,
        offset: bool,
    },
}

impl TsFormat {
    fn name(&self) -> String {
        match self {
            TsFormat::Rfc3339 => "rfc3339".into(),
            TsFormat::UnixS => "unix_s".into(),
            TsFormat::UnixMs => "unix_ms".into(),
            TsFormat::UnixUs => "unix_us".into(),
            TsFormat::Pattern { pattern, .. } => format!("{pattern:?}"),
        }
    }

    /// Microseconds per unit of a `unix_*` format.
    fn unix_scale(&self) -> Option<i64> {
        match self {
            TsFormat::UnixS => Some(1_000_000),
            TsFormat::UnixMs => Some(1_000),
            TsFormat::UnixUs => Some(1),
            _ => None,
        }
    }
}

/// [`Step::Timestamp`] settings.
#[derive(Debug)]
pub(crate) struct TimestampStep {
    field: String,
    format: Option<TsFormat>,
    tz: Tz,
    unit: TimeUnit,
    pub(crate) event_time: bool,
}

impl TimestampStep {
    pub(crate) fn field(&self) -> &str {
        &self.field
    }
}

/// One configured transform.
#[derive(Debug)]
pub(crate) enum Step {
    Rename(Vec<(String, String)>),
    Drop(Vec<String>),
    Insert { field: String, value: InsertValue },
    Cast(Vec<(String, String, DataType)>),
    Filter(Expr),
    Flatten(String),
    Timestamp(TimestampStep),
}

impl Step {
    /// Checks one transform's configuration.
    pub(crate) fn new(cfg: &TransformConfig) -> Result<Step, StepError> {
        Ok(match cfg {
            TransformConfig::Rename(r) => {
                if r.fields.is_empty() {
                    return Err(StepError::new(
                        "fields",
                        "name at least one field to rename",
                    ));
                }
                let mut pairs = Vec::new();
                for (old, new) in &r.fields {
                    let key = format!("fields.{old}");
                    if old.is_empty() || new.is_empty() {
                        return Err(StepError::new(key, "field names must not be empty"));
                    }
                    pairs.push((old.clone(), new.clone()));
                }
                Step::Rename(pairs)
            }
            TransformConfig::Drop(d) => {
                if d.fields.is_empty() {
                    return Err(StepError::new("fields", "name at least one field to drop"));
                }
                if let Some(k) = d.fields.iter().position(String::is_empty) {
                    return Err(StepError::new(format!("fields.{k}"), "must not be empty"));
                }
                Step::Drop(d.fields.clone())
            }
            TransformConfig::Insert(i) => {
                if i.field.is_empty() {
                    return Err(StepError::new("field", "must not be empty"));
                }
                let value = match (&i.value, i.metadata) {
                    (Some(v), None) => InsertValue::Static(v.clone()),
                    (None, Some(m)) => InsertValue::Metadata(m),
                    _ => {
                        return Err(StepError::new(
                            "value",
                            "set exactly one of `value` (a string, number or boolean) and \
                             `metadata` (topic, partition, offset, timestamp or key)",
                        ))
                    }
                };
                Step::Insert {
                    field: i.field.clone(),
                    value,
                }
            }
            TransformConfig::Cast(c) => {
                if c.fields.is_empty() {
                    return Err(StepError::new("fields", "name at least one field to cast"));
                }
                let mut out = Vec::new();
                for (field, name) in &c.fields {
                    let dt = parse_type(name)
                        .map_err(|m| StepError::new(format!("fields.{field}"), m))?;
                    out.push((field.clone(), name.clone(), dt));
                }
                Step::Cast(out)
            }
            TransformConfig::Filter(f) => Step::Filter(
                expr::parse(&f.expr).map_err(|e| StepError::new("expr", e.to_string()))?,
            ),
            TransformConfig::Flatten(f) => {
                if f.separator.is_empty() {
                    return Err(StepError::new("separator", "must not be empty"));
                }
                Step::Flatten(f.separator.clone())
            }
            TransformConfig::Timestamp(t) => Step::Timestamp(timestamp_step(t)?),
        })
    }

    /// Whether the step needs to know each row's source record.
    pub(crate) fn needs_origin(&self) -> bool {
        match self {
            Step::Cast(_) | Step::Timestamp(_) => true,
            Step::Insert {
                value: InsertValue::Metadata(m),
                ..
            } => matches!(
                m,
                MetadataField::Offset | MetadataField::Timestamp | MetadataField::Key
            ),
            _ => false,
        }
    }

    /// Runs the step.
    pub(crate) fn apply(&self, rows: &Rows<'_>) -> Result<Outcome, StepError> {
        let batch = &rows.batch;
        match self {
            Step::Rename(pairs) => rename(batch, pairs).map(Outcome::Done),
            Step::Drop(fields) => drop_fields(batch, fields).map(Outcome::Done),
            Step::Insert { field, value } => insert(rows, field, value).map(Outcome::Done),
            Step::Cast(fields) => cast_fields(batch, fields),
            Step::Filter(e) => e
                .evaluate(batch)
                .map(Outcome::Keep)
                .map_err(|m| StepError::new("expr", m)),
            Step::Flatten(sep) => flatten(batch, sep).map(Outcome::Done),
            Step::Timestamp(t) => timestamp(batch, t),
        }
    }
}

fn timestamp_step(t: &TimestampTransform) -> Result<TimestampStep, StepError> {
    if t.field.is_empty() {
        return Err(StepError::new("field", "must not be empty"));
    }
    let format = match t.format.as_deref() {
        None => None,
        Some("rfc3339") => Some(TsFormat::Rfc3339),
        Some("unix_s") => Some(TsFormat::UnixS),
        Some("unix_ms") => Some(TsFormat::UnixMs),
        Some("unix_us") => Some(TsFormat::UnixUs),
        Some(p) if p.contains('%') => {
            if StrftimeItems::new(p).any(|i| matches!(i, Item::Error)) {
                return Err(StepError::new(
                    "format",
                    format!("{p:?} is not a valid strftime pattern"),
                ));
            }
            let offset = p.contains("%z") || p.contains(":z") || p.contains("%#z");
            Some(TsFormat::Pattern {
                pattern: p.to_string(),
                offset,
            })
        }
        Some(other) => {
            return Err(StepError::new(
                "format",
                format!(
                    "{other:?} is not a format: use rfc3339, unix_s, unix_ms, unix_us or a \
                     strftime pattern such as \"%Y-%m-%d %H:%M:%S\""
                ),
            ))
        }
    };
    let tz = match &t.timezone {
        None => Tz::UTC,
        Some(z) => z
            .parse::<Tz>()
            .map_err(|_| StepError::new("timezone", format!("{z:?} is not an IANA timezone")))?,
    };
    Ok(TimestampStep {
        field: t.field.clone(),
        format,
        tz,
        unit: match t.target {
            TimestampTarget::TimestampMs => TimeUnit::Millisecond,
            TimestampTarget::TimestampUs => TimeUnit::Microsecond,
        },
        event_time: t.event_time,
    })
}

/// Type names a `cast` accepts.
const TYPES: &str = "bool, int8, int16, int32, int64, uint8, uint16, uint32, uint64, float32, \
                     float64, string, date, timestamp (= timestamp_us), timestamp_s, timestamp_ms, \
                     timestamp_ns, decimal(precision,scale)";

/// Parses a `cast` type name.
pub(crate) fn parse_type(name: &str) -> Result<DataType, String> {
    let n = name.trim().to_ascii_lowercase();
    let ts = |u| DataType::Timestamp(u, Some("UTC".into()));
    Ok(match n.as_str() {
        "bool" | "boolean" => DataType::Boolean,
        "int8" => DataType::Int8,
        "int16" => DataType::Int16,
        "int32" => DataType::Int32,
        "int64" => DataType::Int64,
        "uint8" => DataType::UInt8,
        "uint16" => DataType::UInt16,
        "uint32" => DataType::UInt32,
        "uint64" => DataType::UInt64,
        "float32" | "float" => DataType::Float32,
        "float64" | "double" => DataType::Float64,
        "string" | "utf8" => DataType::Utf8,
        "date" => DataType::Date32,
        "timestamp" | "timestamp_us" => ts(TimeUnit::Microsecond),
        "timestamp_s" => ts(TimeUnit::Second),
        "timestamp_ms" => ts(TimeUnit::Millisecond),
        "timestamp_ns" => ts(TimeUnit::Nanosecond),
        _ => {
            let usage = "expected decimal(precision,scale) with 1 ≤ precision ≤ 38 and 0 ≤ scale ≤ precision";
            if let Some(args) = n.strip_prefix("decimal(").and_then(|a| a.strip_suffix(')')) {
                let parts: Vec<&str> = args.split(',').map(str::trim).collect();
                let [p, s] = parts[..] else {
                    return Err(format!("{name:?}: {usage}"));
                };
                let (Ok(p), Ok(s)) = (p.parse::<u8>(), s.parse::<i8>()) else {
                    return Err(format!("{name:?}: {usage}"));
                };
                if !(1..=38).contains(&p) || s < 0 || s as u8 > p {
                    return Err(format!("{name:?}: {usage}"));
                }
                DataType::Decimal128(p, s)
            } else {
                return Err(format!("unknown type {name:?} (known: {TYPES})"));
            }
        }
    })
}

/// A batch from fields and columns, keeping the schema metadata and the row count.
pub(crate) fn rebuild(
    like: &RecordBatch,
    fields: Vec<FieldRef>,
    columns: Vec<ArrayRef>,
    key: &str,
) -> Result<RecordBatch, StepError> {
    if fields.is_empty() {
        return Err(StepError::new(key, "no fields would be left"));
    }
    let schema = Schema::new_with_metadata(fields, like.schema().metadata().clone());
    RecordBatch::try_new_with_options(
        Arc::new(schema),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(like.num_rows())),
    )
    .map_err(|e| StepError::arrow(key, e))
}

/// Fails when two fields at one level share a name.
fn check_unique(fields: &Fields, at: &str, key: &str, hint: &str) -> Result<(), StepError> {
    let mut seen = HashSet::new();
    for f in fields {
        if !seen.insert(f.name().as_str()) {
            let name = if at.is_empty() {
                f.name().clone()
            } else {
                format!("{at}.{}", f.name())
            };
            return Err(StepError::new(
                key,
                format!("two fields would be named {name:?}{hint}"),
            ));
        }
        if let DataType::Struct(children) = f.data_type() {
            let below = if at.is_empty() {
                f.name().clone()
            } else {
                format!("{at}.{}", f.name())
            };
            check_unique(children, &below, key, hint)?;
        }
    }
    Ok(())
}

fn edit_error(key: &str, e: EditError<StepError>) -> StepError {
    match e {
        EditError::Inner(e) => e,
        EditError::Rebuild(m) => StepError::new(key, m),
    }
}

fn rename(batch: &RecordBatch, pairs: &[(String, String)]) -> Result<RecordBatch, StepError> {
    let mut fields = batch.schema().fields().clone();
    let mut columns = batch.columns().to_vec();
    let mut targets = Vec::new();
    for (old, new) in pairs {
        let key = format!("fields.{old}");
        let index = path::resolve(&fields, old).map_err(|m| StepError::new(&key, m))?;
        // A nested field keeps its parent: `a.b = "c"` or `a.b = "a.c"`.
        let leaf = match new.rsplit_once('.') {
            None => new.clone(),
            Some((parent, leaf))
                if index.len() > 1 && old.rsplit_once('.').map(|p| p.0) == Some(parent) =>
            {
                leaf.to_string()
            }
            Some(_) if index.len() == 1 => new.clone(),
            Some(_) => {
                return Err(StepError::new(
                    key,
                    format!(
                        "{new:?}: a nested field can only be renamed within its struct \
                         (give the new name alone)"
                    ),
                ))
            }
        };
        targets.push((key, index, leaf));
    }
    for (key, index, leaf) in targets {
        let (f, c) = path::edit(&fields, &columns, &index, &mut |field, column, _| {
            Ok::<_, StepError>(Some((
                Arc::new(field.as_ref().clone().with_name(leaf.clone())),
                column.clone(),
            )))
        })
        .map_err(|e| edit_error(&key, e))?;
        fields = Fields::from(f);
        columns = c;
    }
    check_unique(&fields, "", "fields", "")?;
    rebuild(batch, fields.iter().cloned().collect(), columns, "fields")
}

fn drop_fields(batch: &RecordBatch, names: &[String]) -> Result<RecordBatch, StepError> {
    let mut fields = batch.schema().fields().clone();
    let mut columns = batch.columns().to_vec();
    for (k, name) in names.iter().enumerate() {
        let key = format!("fields.{k}");
        let index = path::resolve(&fields, name).map_err(|m| StepError::new(&key, m))?;
        let (f, c) = path::edit(&fields, &columns, &index, &mut |_, _, _| {
            Ok::<_, StepError>(None)
        })
        .map_err(|e| edit_error(&key, e))?;
        if f.is_empty() {
            return Err(StepError::new(key, "dropping it would leave no fields"));
        }
        fields = Fields::from(f);
        columns = c;
    }
    rebuild(batch, fields.iter().cloned().collect(), columns, "fields")
}

fn insert(rows: &Rows<'_>, name: &str, value: &InsertValue) -> Result<RecordBatch, StepError> {
    let batch = &rows.batch;
    let n = batch.num_rows();
    if batch.schema().field_with_name(name).is_ok() {
        return Err(StepError::new(
            "field",
            format!("field {name:?} already exists (rename or drop it first)"),
        ));
    }
    let records = || -> Result<Vec<&RawRecord>, StepError> {
        match &rows.origin {
            Some(origin) => Ok(origin.iter().map(|&i| &rows.records[i]).collect()),
            None if n == 0 => Ok(Vec::new()),
            None => Err(StepError::arrow(
                "metadata",
                "the source record of each row is not known",
            )),
        }
    };
    let (dt, nullable, array): (DataType, bool, ArrayRef) = match value {
        InsertValue::Static(StaticValue::Bool(b)) => (
            DataType::Boolean,
            false,
            Arc::new(BooleanArray::from(vec![*b; n])),
        ),
        InsertValue::Static(StaticValue::Int(i)) => (
            DataType::Int64,
            false,
            Arc::new(Int64Array::from_value(*i, n)),
        ),
        InsertValue::Static(StaticValue::Float(x)) => (
            DataType::Float64,
            false,
            Arc::new(Float64Array::from_value(*x, n)),
        ),
        InsertValue::Static(StaticValue::String(s)) => (
            DataType::Utf8,
            false,
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n(s, n))),
        ),
        InsertValue::Metadata(MetadataField::Topic) => (
            DataType::Utf8,
            false,
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                &*rows.partition.topic,
                n,
            ))),
        ),
        InsertValue::Metadata(MetadataField::Partition) => (
            DataType::Int32,
            false,
            Arc::new(Int32Array::from_value(rows.partition.partition, n)),
        ),
        InsertValue::Metadata(MetadataField::Offset) => (
            DataType::Int64,
            false,
            Arc::new(Int64Array::from_iter_values(
                records()?.iter().map(|r| r.offset),
            )),
        ),
        InsertValue::Metadata(MetadataField::Timestamp) => (
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
            Arc::new(
                TimestampMillisecondArray::from_iter(records()?.iter().map(|r| r.timestamp_ms))
                    .with_timezone("UTC"),
            ),
        ),
        InsertValue::Metadata(MetadataField::Key) => (
            DataType::Utf8,
            true,
            Arc::new(StringArray::from_iter(
                records()?
                    .iter()
                    .map(|r| r.key.as_deref().map(String::from_utf8_lossy)),
            )),
        ),
    };
    let mut fields: Vec<FieldRef> = batch.schema().fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(name, dt, nullable)));
    let mut columns = batch.columns().to_vec();
    columns.push(array);
    rebuild(batch, fields, columns, "field")
}

/// The value of row `i` as text for a reason, cut to a readable length.
fn show(array: &dyn Array, i: usize) -> String {
    let text = ArrayFormatter::try_new(array, &FormatOptions::default())
        .map(|f| f.value(i).to_string())
        .unwrap_or_else(|_| "?".into());
    if text.chars().count() > MAX_VALUE_CHARS {
        let cut: String = text.chars().take(MAX_VALUE_CHARS).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// Records each failing row once (the first reason wins).
fn note(
    failures: &mut Vec<(usize, String)>,
    seen: &mut HashSet<usize>,
    row: usize,
    reason: String,
) {
    if seen.insert(row) {
        failures.push((row, reason));
    }
}

fn cast_fields(
    batch: &RecordBatch,
    casts: &[(String, String, DataType)],
) -> Result<Outcome, StepError> {
    let schema = batch.schema();
    let fields = schema.fields();
    let safe = CastOptions::default();
    // First pass: which rows have a value that does not fit.
    let mut failures = Vec::new();
    let mut seen = HashSet::new();
    let mut plans = Vec::new();
    for (name, type_name, to) in casts {
        let key = format!("fields.{name}");
        let index = path::resolve(fields, name).map_err(|m| StepError::new(&key, m))?;
        let (field, column) =
            path::get(fields, batch.columns(), &index).map_err(|m| StepError::arrow(&key, m))?;
        if !can_cast_types(field.data_type(), to) {
            return Err(StepError::new(
                key,
                format!(
                    "field {name:?} is {}, which cannot be cast to {type_name}",
                    field.data_type()
                ),
            ));
        }
        let out = cast_with_options(&column, to, &safe).map_err(|e| StepError::arrow(&key, e))?;
        for i in 0..column.len() {
            if column.is_valid(i) && out.is_null(i) {
                note(
                    &mut failures,
                    &mut seen,
                    i,
                    format!(
                        "field {name:?} value {} cannot be cast to {type_name}",
                        show(&column, i)
                    ),
                );
            }
        }
        plans.push((key, index, to));
    }
    if !failures.is_empty() {
        return Ok(Outcome::Failed(failures));
    }
    let mut fields = fields.clone();
    let mut columns = batch.columns().to_vec();
    for (key, index, to) in plans {
        let (f, c) = path::edit(&fields, &columns, &index, &mut |field, column, _| {
            let out =
                cast_with_options(column, to, &safe).map_err(|e| StepError::arrow(&key, e))?;
            Ok(Some((
                Arc::new(field.as_ref().clone().with_data_type(to.clone())),
                out,
            )))
        })
        .map_err(|e| edit_error(&key, e))?;
        fields = Fields::from(f);
        columns = c;
    }
    rebuild(batch, fields.iter().cloned().collect(), columns, "fields").map(Outcome::Done)
}

fn flatten(batch: &RecordBatch, sep: &str) -> Result<RecordBatch, StepError> {
    fn walk(
        prefix: Option<&str>,
        field: &FieldRef,
        column: &ArrayRef,
        parent: Option<&NullBuffer>,
        parent_nullable: bool,
        sep: &str,
        out: &mut (Vec<FieldRef>, Vec<ArrayRef>),
    ) -> Result<(), StepError> {
        let name = match prefix {
            None => field.name().clone(),
            Some(p) => format!("{p}{sep}{}", field.name()),
        };
        let nullable = field.is_nullable() || parent_nullable;
        match column.data_type() {
            DataType::Struct(_) => {
                let s = column.as_struct();
                let below = NullBuffer::union(parent, s.nulls());
                for (f, c) in s.fields().iter().zip(s.columns()) {
                    walk(Some(&name), f, c, below.as_ref(), nullable, sep, out)?;
                }
            }
            _ => {
                let column = path::with_parent_nulls(column, parent)
                    .map_err(|m| StepError::arrow("separator", m))?;
                out.0.push(Arc::new(
                    field
                        .as_ref()
                        .clone()
                        .with_name(name)
                        .with_nullable(nullable),
                ));
                out.1.push(column);
            }
        }
        Ok(())
    }
    let schema = batch.schema();
    let mut out = (Vec::new(), Vec::new());
    for (f, c) in schema.fields().iter().zip(batch.columns()) {
        walk(None, f, c, None, false, sep, &mut out)?;
    }
    check_unique(
        &Fields::from(out.0.clone()),
        "",
        "separator",
        " after flattening; choose another separator or rename first",
    )?;
    rebuild(batch, out.0, out.1, "separator")
}

/// Microseconds since the epoch of a text value, or `None` if it does not parse.
fn parse_text(s: &str, format: &TsFormat, tz: &Tz) -> Option<i64> {
    match format {
        TsFormat::Rfc3339 => DateTime::parse_from_rfc3339(s.trim())
            .ok()
            .map(|d| d.timestamp_micros()),
        TsFormat::Pattern {
            pattern,
            offset: true,
        } => DateTime::parse_from_str(s, pattern)
            .ok()
            .map(|d| d.timestamp_micros()),
        TsFormat::Pattern {
            pattern,
            offset: false,
        } => {
            let naive = NaiveDateTime::parse_from_str(s, pattern)
                .or_else(|_| {
                    NaiveDate::parse_from_str(s, pattern).map(|d| d.and_time(NaiveTime::MIN))
                })
                .ok()?;
            local_micros(naive, tz)
        }
        f => {
            let scale = f.unix_scale()?;
            let s = s.trim();
            match s.parse::<i64>() {
                Ok(v) => v.checked_mul(scale),
                Err(_) => float_micros(s.parse::<f64>().ok()?, scale),
            }
        }
    }
}

fn float_micros(v: f64, scale: i64) -> Option<i64> {
    let micros = (v * scale as f64).round();
    (micros.is_finite() && micros.abs() < 9.2e18).then_some(micros as i64)
}

/// A wall-clock time in `tz` as microseconds since the epoch (the earlier
/// instant when the clock is set back; `None` in a gap).
fn local_micros(naive: NaiveDateTime, tz: &Tz) -> Option<i64> {
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|d| d.timestamp_micros())
}

fn timestamp(batch: &RecordBatch, t: &TimestampStep) -> Result<Outcome, StepError> {
    let schema = batch.schema();
    let key = "field";
    let index = path::resolve(schema.fields(), &t.field).map_err(|m| StepError::new(key, m))?;
    let (field, column) = path::get(schema.fields(), batch.columns(), &index)
        .map_err(|m| StepError::arrow(key, m))?;
    let n = column.len();
    let name = &t.field;
    let mut micros: Vec<Option<i64>> = Vec::with_capacity(n);
    let mut failures = Vec::new();
    let from = column.data_type().clone();
    let need_unix = |what: &str| {
        StepError::new(
            "format",
            format!("field {name:?} is {what}: set format to unix_s, unix_ms or unix_us"),
        )
    };
    match &from {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let format = t.format.clone().unwrap_or(TsFormat::Rfc3339);
            let text = cast(&column, &DataType::Utf8).map_err(|e| StepError::arrow(key, e))?;
            let text = text.as_string::<i32>();
            for i in 0..n {
                if text.is_null(i) {
                    micros.push(None);
                    continue;
                }
                let v = parse_text(text.value(i), &format, &t.tz);
                if v.is_none() {
                    failures.push((
                        i,
                        format!(
                            "field {name:?} value {:?} does not match format {}",
                            text.value(i),
                            format.name()
                        ),
                    ));
                }
                micros.push(v);
            }
        }
        dt if dt.is_integer() || dt.is_floating() => {
            let Some(scale) = t.format.as_ref().and_then(TsFormat::unix_scale) else {
                return Err(need_unix(&dt.to_string()));
            };
            if dt.is_integer() {
                let v = cast(&column, &DataType::Int64).map_err(|e| StepError::arrow(key, e))?;
                let v = v.as_primitive::<Int64Type>();
                for i in 0..n {
                    let m = v.is_valid(i).then(|| v.value(i).checked_mul(scale));
                    if m == Some(None) {
                        failures.push((
                            i,
                            format!("field {name:?} value {} is out of range", v.value(i)),
                        ));
                    }
                    micros.push(m.flatten());
                }
            } else {
                let v = cast(&column, &DataType::Float64).map_err(|e| StepError::arrow(key, e))?;
                let v = v.as_primitive::<Float64Type>();
                for i in 0..n {
                    let m = v.is_valid(i).then(|| float_micros(v.value(i), scale));
                    if m == Some(None) {
                        failures.push((
                            i,
                            format!("field {name:?} value {} is out of range", v.value(i)),
                        ));
                    }
                    micros.push(m.flatten());
                }
            }
        }
        DataType::Timestamp(unit, zone) => {
            let to_micros = |v: i64| -> Option<i64> {
                match unit {
                    TimeUnit::Second => v.checked_mul(1_000_000),
                    TimeUnit::Millisecond => v.checked_mul(1_000),
                    TimeUnit::Microsecond => Some(v),
                    TimeUnit::Nanosecond => Some(v.div_euclid(1_000)),
                }
            };
            let raw: Vec<Option<i64>> = match unit {
                TimeUnit::Second => column
                    .as_primitive::<TimestampSecondType>()
                    .iter()
                    .collect(),
                TimeUnit::Millisecond => column
                    .as_primitive::<TimestampMillisecondType>()
                    .iter()
                    .collect(),
                TimeUnit::Microsecond => column
                    .as_primitive::<TimestampMicrosecondType>()
                    .iter()
                    .collect(),
                TimeUnit::Nanosecond => column
                    .as_primitive::<TimestampNanosecondType>()
                    .iter()
                    .collect(),
            };
            for (i, v) in raw.into_iter().enumerate() {
                let Some(v) = v else {
                    micros.push(None);
                    continue;
                };
                let m = to_micros(v).and_then(|m| match zone {
                    // An instant already.
                    Some(_) => Some(m),
                    // Wall-clock time in `timezone`.
                    None => DateTime::from_timestamp_micros(m)
                        .and_then(|d| local_micros(d.naive_utc(), &t.tz)),
                });
                if m.is_none() {
                    failures.push((
                        i,
                        format!(
                            "field {name:?} value {} is out of range or not a valid time in {}",
                            show(&column, i),
                            t.tz
                        ),
                    ));
                }
                micros.push(m);
            }
        }
        DataType::Date32 => {
            let d = column.as_primitive::<Date32Type>();
            for i in 0..n {
                if d.is_null(i) {
                    micros.push(None);
                    continue;
                }
                let m = NaiveDate::from_num_days_from_ce_opt(d.value(i).saturating_add(719_163))
                    .and_then(|day| local_micros(day.and_time(NaiveTime::MIN), &t.tz));
                if m.is_none() {
                    failures.push((
                        i,
                        format!("field {name:?} value {} is out of range", show(&column, i)),
                    ));
                }
                micros.push(m);
            }
        }
        other => {
            return Err(StepError::new(
                key,
                format!(
                    "field {name:?} is {other}; a timestamp transform reads strings, integers, \
                     floats, dates and timestamps"
                ),
            ))
        }
    }
    if !failures.is_empty() {
        return Ok(Outcome::Failed(failures));
    }
    let array: ArrayRef = match t.unit {
        TimeUnit::Millisecond => Arc::new(
            TimestampMillisecondArray::from_iter(
                micros.iter().map(|m| m.map(|m| m.div_euclid(1_000))),
            )
            .with_timezone("UTC"),
        ),
        _ => Arc::new(TimestampMicrosecondArray::from_iter(micros).with_timezone("UTC")),
    };
    let to = DataType::Timestamp(t.unit, Some("UTC".into()));
    let nullable = field.is_nullable();
    let (f, c) = path::edit(
        schema.fields(),
        batch.columns(),
        &index,
        &mut |old, _, _| {
            Ok::<_, StepError>(Some((
                Arc::new(
                    old.as_ref()
                        .clone()
                        .with_data_type(to.clone())
                        .with_nullable(nullable),
                ),
                array.clone(),
            )))
        },
    )
    .map_err(|e| edit_error(key, e))?;
    rebuild(batch, f, c, key).map(Outcome::Done)
}

#[cfg(test)]
mod tests;
