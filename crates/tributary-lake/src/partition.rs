//! Hive-style partition paths from record times and field values
//! (`country={country}/dt=%Y-%m-%d/hour=%H`), and the late-data policy that
//! decides which time a late record is partitioned by.
//!
//! ## Field placeholders and escaping
//!
//! `{field}` (or `{parent.child}` inside structs) is replaced by the row's
//! value of that column: strings as they are, integers, floats, decimals and
//! booleans (`true`/`false`) in their usual decimal form, dates as
//! `2026-11-24`, timestamps as `2026-11-24T06:30:00` (with the column's
//! offset when it has a timezone), all through Arrow's cast to UTF-8. Lists,
//! structs, maps and binary columns cannot be placeholders.
//!
//! Values are escaped the way Hive's `FileUtils.escapePathName` does, so
//! that Hive-style readers (pyarrow datasets, DuckDB `hive_partitioning`,
//! Spark, Trino) decode them back to the original string ([`escape_value`]):
//! `/ \ = % # ? : * " ' < > | { } [ ] ^`, control characters and invisible
//! format characters (zero-width, bidirectional controls) become `%XX` per
//! UTF-8 byte; other characters (letters of any script, spaces, `.`, `-`,
//! `_`) stay. A null or empty value becomes [`DEFAULT_PARTITION`], which those
//! readers read as null (a string equal to it reads as null too, as in Hive).
//! A value whose escaped form is longer than [`MAX_SEGMENT_VALUE_BYTES`]
//! (shared evenly among the placeholders of one path segment) is cut and
//! suffixed with `~` and 16 hex digits of a hash of the full value, so
//! distinct values stay in distinct directories; the Parquet files keep every
//! column, so the full value is always in the data.
//!
//! A placeholder must follow literal text in its segment (`country={country}`,
//! not `{country}`), so a value can never form a `.`/`..` segment or a hidden
//! (`_`/`.`-prefixed) directory.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StructArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Schema};
use chrono::format::{Fixed, Item, Numeric, StrftimeItems};
use chrono::{DateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use tributary_config::{LateDataConfig, LatePolicy};

use crate::error::LakeError;
use crate::layout::validate_path;

/// Earliest time a path is computed for (0001-01-01T00:00:00Z); earlier
/// times are clamped to it.
const MIN_MS: i64 = -62_135_596_800_000;
/// Latest time a path is computed for (9999-12-31T23:59:59.999Z); later
/// times are clamped to it.
const MAX_MS: i64 = 253_402_300_799_999;
const MINUTE_MS: i64 = 60_000;

/// Stands for a field placeholder in the strftime items: a control
/// character, which neither strftime output nor a valid template contains.
const MARKER: char = '\u{1}';

/// The directory value of a null or empty field, as Hive writes it.
pub const DEFAULT_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// Longest escaped field value, in bytes, in one path segment (shared among
/// the placeholders of the segment). Longer values are cut and suffixed with
/// a hash, keeping segments well under the 255-byte file-name limit.
pub const MAX_SEGMENT_VALUE_BYTES: usize = 128;

/// `~` plus 16 hex digits.
const HASH_SUFFIX_BYTES: usize = 17;

/// A `{field}` placeholder.
#[derive(Clone, Debug)]
struct Field {
    /// As written between the braces (`a.b`).
    name: String,
    /// The column, then struct children.
    path: Vec<String>,
    /// Most bytes of its escaped value.
    max_bytes: usize,
}

/// A validated `partition_by` template in a timezone.
///
/// ```
/// use tributary_lake::PartitionTemplate;
///
/// let t = PartitionTemplate::new("dt=%Y-%m-%d/hour=%H", "Europe/Berlin").unwrap();
/// // 2026-11-24T06:30:00Z is 07:30 in Berlin.
/// assert_eq!(t.path_for(1_795_501_800_000), "dt=2026-11-24/hour=07");
///
/// let t = PartitionTemplate::new("country={country}/dt=%Y-%m-%d", "UTC").unwrap();
/// assert_eq!(t.fields().collect::<Vec<_>>(), ["country"]);
/// ```
#[derive(Clone)]
pub struct PartitionTemplate {
    template: String,
    tz: Tz,
    /// The strftime items, with each field placeholder as [`MARKER`].
    items: Vec<Item<'static>>,
    /// The template shows nothing finer than a minute, so every instant of
    /// a minute (where the zone's offset is whole minutes) has the same path.
    per_minute: bool,
    /// Field placeholders in order of appearance.
    fields: Vec<Field>,
}

impl fmt::Debug for PartitionTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartitionTemplate")
            .field("template", &self.template)
            .field("timezone", &self.tz.name())
            .finish()
    }
}

impl PartitionTemplate {
    /// Parses and checks a template (strftime syntax plus `{field}`
    /// placeholders) and an IANA timezone. Pure: no I/O.
    ///
    /// Rejected: unknown `%` items, a leading `/`, empty segments, `.`/`..`
    /// segments, segments starting with `_` or `.` (Hive-style readers hide
    /// those, and `_tributary`/`_dead_letter` are the lake's own), a
    /// placeholder at the start of a segment, empty or unclosed braces, and
    /// templates whose output is not a valid object path.
    pub fn new(template: &str, timezone: &str) -> Result<Self, LakeError> {
        let err = |message: String| LakeError::Template {
            template: template.to_string(),
            timezone: timezone.to_string(),
            message,
        };
        let tz: Tz = timezone
            .parse()
            .map_err(|_| err(format!("unknown timezone {timezone:?} (use an IANA name such as \"UTC\" or \"Europe/Berlin\")")))?;
        if template.is_empty() {
            return Err(err("the template is empty".into()));
        }
        if template.starts_with('/') {
            return Err(err("the template must not start with '/'".into()));
        }
        for segment in template.split('/') {
            if segment.is_empty() {
                return Err(err(
                    "the template has an empty segment ('//' or a trailing '/')".into(),
                ));
            }
            if segment == "." || segment == ".." {
                return Err(err(format!("segment {segment:?} is not allowed")));
            }
            if segment.starts_with('_') || segment.starts_with('.') {
                return Err(err(format!(
                    "segment {segment:?} starts with '_' or '.', which readers treat as hidden"
                )));
            }
            if segment.starts_with('{') {
                return Err(err(format!(
                    "segment {segment:?} starts with a field placeholder; put the key first, as in \"country={{country}}\""
                )));
            }
        }
        let (marked, fields) = parse_fields(template).map_err(err)?;
        let mut items = Vec::new();
        for item in StrftimeItems::new(&marked) {
            if matches!(item, Item::Error) {
                return Err(err(
                    "invalid strftime item (see chrono's strftime documentation; write '%%' for a literal '%')".into(),
                ));
            }
            items.push(own(item));
        }
        let per_minute = items.iter().all(|i| !is_sub_minute(i));
        let t = Self {
            template: template.to_string(),
            tz,
            items,
            per_minute,
            fields,
        };
        for sample in [0, 1_795_501_800_123, MIN_MS, MAX_MS] {
            let marked = t.render(sample);
            if marked.matches(MARKER).count() != t.fields.len() {
                return Err(err(
                    "a field placeholder is inside a strftime item (e.g. \"%{x}\")".into(),
                ));
            }
            let path = marked.replace(MARKER, "x");
            validate_path(&path).map_err(|e| err(format!("it produces {path:?}: {e}")))?;
        }
        Ok(t)
    }

    /// The template as given.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// The timezone the template is evaluated in.
    pub fn timezone(&self) -> &str {
        self.tz.name()
    }

    /// The field placeholders, as written (`country`, `address.city`), in
    /// order of appearance.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|f| f.name.as_str())
    }

    /// Whether the template has field placeholders.
    pub fn has_fields(&self) -> bool {
        !self.fields.is_empty()
    }

    /// The partition path of a record time (milliseconds since the Unix
    /// epoch). Times before year 1 or after year 9999 are clamped. Field
    /// placeholders are left as written (`{country}`): see
    /// [`PartitionTemplate::group_rows`] for their values.
    pub fn path_for(&self, event_time_ms: i64) -> String {
        self.unmark(self.render(event_time_ms))
    }

    /// The time parts of the path, each field placeholder as [`MARKER`].
    fn render(&self, event_time_ms: i64) -> String {
        let ms = event_time_ms.clamp(MIN_MS, MAX_MS);
        let utc = DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
        utc.with_timezone(&self.tz)
            .format_with_items(self.items.iter())
            .to_string()
    }

    fn unmark(&self, marked: String) -> String {
        if self.fields.is_empty() {
            return marked;
        }
        let mut out = String::with_capacity(marked.len() + 16);
        for (i, piece) in marked.split(MARKER).enumerate() {
            if i > 0 {
                out.push('{');
                out.push_str(self.fields.get(i - 1).map_or("", |f| f.name.as_str()));
                out.push('}');
            }
            out.push_str(piece);
        }
        out
    }

    /// Checks that every field placeholder names a column (or struct child)
    /// of `schema` whose type can be a path value. For `tributary validate`
    /// when the schema is known up front, and for every batch.
    pub fn check_schema(&self, schema: &Schema) -> Result<(), LakeError> {
        for field in &self.fields {
            let mut data_type = match schema.field_with_name(&field.path[0]) {
                Ok(f) => f.data_type(),
                Err(_) => {
                    return Err(self.field_error(
                        field,
                        format!(
                            "is not a column of the rows (columns: {})",
                            column_list(schema.fields().iter().map(|f| f.name()))
                        ),
                    ))
                }
            };
            for (depth, part) in field.path.iter().enumerate().skip(1) {
                let DataType::Struct(children) = data_type else {
                    return Err(self.field_error(
                        field,
                        format!(
                            "cannot be reached: {} is {data_type}, not a struct",
                            field.path[..depth].join(".")
                        ),
                    ));
                };
                match children.iter().find(|c| c.name() == part) {
                    Some(c) => data_type = c.data_type(),
                    None => {
                        return Err(self.field_error(
                            field,
                            format!(
                                "cannot be reached: struct {} has no field {part:?} (fields: {})",
                                field.path[..depth].join("."),
                                column_list(children.iter().map(|c| c.name()))
                            ),
                        ))
                    }
                }
            }
            if !is_path_type(data_type) {
                return Err(self.field_error(
                    field,
                    format!("is {data_type}, which cannot be a partition value (use a string, number, boolean, date or timestamp)"),
                ));
            }
        }
        Ok(())
    }

    fn field_error(&self, field: &Field, message: String) -> LakeError {
        LakeError::PartitionField {
            template: self.template.clone(),
            field: field.name.clone(),
            message,
        }
    }

    /// Groups rows by partition path: for each distinct path, in the order
    /// first seen, the indices of the rows that belong to it. Field
    /// placeholders are left as written; use
    /// [`PartitionTemplate::group_rows`] for templates with fields.
    ///
    /// Computed once per minute of record time when the template shows
    /// nothing finer than minutes, so this is cheap to call for every row.
    pub fn group(&self, event_time_ms: &[i64]) -> Vec<(String, Vec<u32>)> {
        let mut groups = self.group_marked(event_time_ms);
        if !self.fields.is_empty() {
            for g in &mut groups {
                g.0 = self.unmark(std::mem::take(&mut g.0));
            }
        }
        groups
    }

    /// Groups rows by their full partition path: time parts from
    /// `event_time_ms` (one per row), field placeholders from the rows'
    /// columns, escaped (see the module documentation). For each distinct
    /// path, in the order first seen, the indices of its rows.
    ///
    /// Templates without fields take the per-minute path of
    /// [`PartitionTemplate::group`]; with fields, the time parts are still
    /// computed per minute and each distinct field value is escaped once.
    ///
    /// Fails when a placeholder names no column of `rows` or a column of a
    /// type that cannot be a path value ([`LakeError::PartitionField`]).
    pub fn group_rows(
        &self,
        rows: &RecordBatch,
        event_time_ms: &[i64],
    ) -> Result<Vec<(String, Vec<u32>)>, LakeError> {
        if self.fields.is_empty() {
            return Ok(self.group(event_time_ms));
        }
        self.check_schema(&rows.schema())?;
        let n = event_time_ms.len();
        // The time parts, and each row's index into them.
        let times = self.group_marked(event_time_ms);
        let mut time_of_row = vec![0u32; n];
        for (g, (_, indices)) in times.iter().enumerate() {
            for &r in indices {
                time_of_row[r as usize] = g as u32;
            }
        }
        let times: Vec<Vec<&str>> = times
            .iter()
            .map(|(marked, _)| marked.split(MARKER).collect())
            .collect();
        // Each field's escaped distinct values, and each row's index into them.
        let mut values: Vec<Vec<String>> = Vec::with_capacity(self.fields.len());
        let mut value_of_row: Vec<Vec<u32>> = Vec::with_capacity(self.fields.len());
        for field in &self.fields {
            let (array, nulls) = self.field_strings(field, rows)?;
            let strings = array.as_string::<i32>();
            let mut distinct: Vec<String> = Vec::new();
            let mut seen: HashMap<&str, u32> = HashMap::new();
            let mut ids = Vec::with_capacity(n);
            for row in 0..n {
                let value = match &nulls {
                    Some(nulls) if nulls.is_null(row) => "",
                    _ => strings.value(row),
                };
                let id = *seen.entry(value).or_insert_with(|| {
                    distinct.push(escape_capped(value, field.max_bytes).into_owned());
                    (distinct.len() - 1) as u32
                });
                ids.push(id);
            }
            values.push(distinct);
            value_of_row.push(ids);
        }
        // Rows by (time part, value of each field).
        let mut groups: Vec<(String, Vec<u32>)> = Vec::new();
        let mut by_key: HashMap<Box<[u32]>, usize> = HashMap::new();
        let mut by_path: HashMap<String, usize> = HashMap::new();
        let mut key = vec![0u32; 1 + self.fields.len()];
        for row in 0..n {
            key[0] = time_of_row[row];
            for (k, ids) in value_of_row.iter().enumerate() {
                key[k + 1] = ids[row];
            }
            let index = match by_key.get(key.as_slice()) {
                Some(i) => *i,
                None => {
                    let pieces = &times[key[0] as usize];
                    let mut path = String::new();
                    for (i, piece) in pieces.iter().enumerate() {
                        if i > 0 {
                            path.push_str(&values[i - 1][key[i] as usize]);
                        }
                        path.push_str(piece);
                    }
                    // Distinct keys give distinct paths unless two cut values
                    // share a hash: then they share a directory.
                    let i = *by_path.entry(path).or_insert_with_key(|path| {
                        groups.push((path.clone(), Vec::new()));
                        groups.len() - 1
                    });
                    by_key.insert(key.clone().into_boxed_slice(), i);
                    i
                }
            };
            groups[index].1.push(row as u32);
        }
        Ok(groups)
    }

    /// A field's values cast to UTF-8, and which rows are null (the value or
    /// any struct around it).
    fn field_strings(
        &self,
        field: &Field,
        rows: &RecordBatch,
    ) -> Result<(ArrayRef, Option<NullBuffer>), LakeError> {
        let missing = || self.field_error(field, "is not a column of the rows".into());
        let mut array: ArrayRef = rows
            .column_by_name(&field.path[0])
            .ok_or_else(missing)?
            .clone();
        let mut nulls = array.logical_nulls();
        for part in &field.path[1..] {
            let child = array
                .as_any()
                .downcast_ref::<StructArray>()
                .and_then(|s| s.column_by_name(part))
                .ok_or_else(missing)?
                .clone();
            nulls = NullBuffer::union(nulls.as_ref(), child.logical_nulls().as_ref());
            array = child;
        }
        let strings = arrow::compute::cast(&array, &DataType::Utf8)
            .map_err(|e| self.field_error(field, format!("cannot be formatted as text: {e}")))?;
        let nulls = NullBuffer::union(nulls.as_ref(), strings.logical_nulls().as_ref());
        Ok((strings, nulls))
    }

    /// [`PartitionTemplate::group`] with field placeholders as [`MARKER`].
    fn group_marked(&self, event_time_ms: &[i64]) -> Vec<(String, Vec<u32>)> {
        let mut groups: Vec<(String, Vec<u32>)> = Vec::new();
        let mut by_path: HashMap<String, usize> = HashMap::new();
        let mut slot = |path: String, groups: &mut Vec<(String, Vec<u32>)>| -> usize {
            *by_path.entry(path).or_insert_with_key(|path| {
                groups.push((path.clone(), Vec::new()));
                groups.len() - 1
            })
        };
        // Per minute: the group index, or None where the minute is not
        // uniform (zone offset with seconds, or a transition inside it).
        let mut by_minute: HashMap<i64, Option<usize>> = HashMap::new();
        let mut last: Option<(i64, Option<usize>)> = None;
        for (row, &ms) in event_time_ms.iter().enumerate() {
            let row = u32::try_from(row).unwrap_or(u32::MAX);
            let ms = ms.clamp(MIN_MS, MAX_MS);
            let index = if self.per_minute {
                let minute = ms.div_euclid(MINUTE_MS);
                let cached = match last {
                    Some((m, g)) if m == minute => g,
                    _ => {
                        let g = match by_minute.get(&minute) {
                            Some(g) => *g,
                            None => {
                                let g = if self.minute_is_uniform(minute) {
                                    Some(slot(self.render(minute * MINUTE_MS), &mut groups))
                                } else {
                                    None
                                };
                                by_minute.insert(minute, g);
                                g
                            }
                        };
                        last = Some((minute, g));
                        g
                    }
                };
                match cached {
                    Some(g) => g,
                    None => slot(self.render(ms), &mut groups),
                }
            } else {
                slot(self.render(ms), &mut groups)
            };
            groups[index].1.push(row);
        }
        groups
    }

    fn minute_is_uniform(&self, minute: i64) -> bool {
        let offset = |ms: i64| {
            DateTime::<Utc>::from_timestamp_millis(ms.clamp(MIN_MS, MAX_MS))
                .map(|t| {
                    self.tz
                        .offset_from_utc_datetime(&t.naive_utc())
                        .fix()
                        .local_minus_utc()
                })
                .unwrap_or(1)
        };
        let start = minute * MINUTE_MS;
        let a = offset(start);
        let b = offset(start + MINUTE_MS - 1);
        a == b && a % 60 == 0
    }
}

/// Splits `{field}` placeholders out of a template: the template with each
/// replaced by [`MARKER`], and the fields.
fn parse_fields(template: &str) -> Result<(String, Vec<Field>), String> {
    let mut marked = String::with_capacity(template.len());
    let mut fields: Vec<Field> = Vec::new();
    // Placeholders per segment, to share the value budget.
    let mut segment_of_field: Vec<usize> = Vec::new();
    let mut segment = 0;
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        match c {
            MARKER => return Err("the template contains a control character".into()),
            '/' => {
                segment += 1;
                marked.push(c);
            }
            '}' => {
                return Err(
                    "unmatched '}' (braces only enclose field placeholders such as {country})"
                        .into(),
                )
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some('{') | Some('/') | None => {
                            return Err(format!(
                                "unclosed field placeholder {{{name} (write {{field}} or {{parent.child}})"
                            ))
                        }
                        Some(ch) => name.push(ch),
                    }
                }
                let path: Vec<String> = name.split('.').map(str::to_string).collect();
                if name.trim().is_empty() || path.iter().any(|p| p.is_empty()) {
                    return Err(format!(
                        "field placeholder {{{name}}} names no field (write {{field}} or {{parent.child}})"
                    ));
                }
                if name.chars().any(char::is_control) {
                    return Err(format!(
                        "field placeholder {name:?} contains a control character"
                    ));
                }
                fields.push(Field {
                    name,
                    path,
                    max_bytes: 0,
                });
                segment_of_field.push(segment);
                marked.push(MARKER);
            }
            _ => marked.push(c),
        }
    }
    for (field, segment) in fields.iter_mut().zip(&segment_of_field) {
        let shared = segment_of_field.iter().filter(|s| *s == segment).count();
        field.max_bytes = (MAX_SEGMENT_VALUE_BYTES / shared).max(HASH_SUFFIX_BYTES + 8);
    }
    Ok((marked, fields))
}

fn column_list<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// Types whose values can be path segments (through a cast to UTF-8).
fn is_path_type(t: &DataType) -> bool {
    match t {
        DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Boolean
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal128(_, _)
        | DataType::Decimal256(_, _)
        | DataType::Date32
        | DataType::Date64
        | DataType::Time32(_)
        | DataType::Time64(_)
        | DataType::Timestamp(_, _) => true,
        DataType::Dictionary(_, values) => is_path_type(values),
        _ => false,
    }
}

/// Whether a character is escaped in a path value: Hive's list
/// (`FileUtils.escapePathName`, including its Windows additions), `}`,
/// control characters and invisible format characters.
fn needs_escape(c: char) -> bool {
    matches!(
        c,
        '/' | '\\'
            | '='
            | '%'
            | '#'
            | '?'
            | ':'
            | '*'
            | '"'
            | '\''
            | '<'
            | '>'
            | '|'
            | '{'
            | '}'
            | '['
            | ']'
            | '^'
    ) || c.is_control()
        || matches!(c,
            '\u{00AD}' // soft hyphen
            | '\u{061C}' // Arabic letter mark
            | '\u{180E}' // Mongolian vowel separator
            | '\u{200B}'..='\u{200F}' // zero-width, LRM, RLM
            | '\u{2028}'..='\u{202E}' // line/paragraph separators, bidi embeddings
            | '\u{2060}'..='\u{206F}' // word joiner, invisible operators, bidi isolates
            | '\u{FEFF}' // byte order mark
            | '\u{FFF9}'..='\u{FFFB}' // interlinear annotation
            | '\u{FDD0}'..='\u{FDEF}' // noncharacters
            | '\u{E0000}'..='\u{E007F}' // tags
        )
        || ((c as u32) & 0xFFFE) == 0xFFFE // noncharacters U+xxFFFE, U+xxFFFF
}

/// Escapes a field value for a path segment, Hive-style (see the module
/// documentation): escaped characters become `%XX` per UTF-8 byte, a null
/// or empty value becomes [`DEFAULT_PARTITION`], and a result longer than
/// [`MAX_SEGMENT_VALUE_BYTES`] is cut and suffixed with `~` and a hash.
///
/// ```
/// use tributary_lake::escape_value;
///
/// assert_eq!(escape_value(Some("a/b")), "a%2Fb");
/// assert_eq!(escape_value(Some("x=y")), "x%3Dy");
/// assert_eq!(escape_value(Some("Zürich")), "Zürich");
/// assert_eq!(escape_value(Some("")), "__HIVE_DEFAULT_PARTITION__");
/// assert_eq!(escape_value(None), "__HIVE_DEFAULT_PARTITION__");
/// ```
pub fn escape_value(value: Option<&str>) -> Cow<'_, str> {
    escape_capped(value.unwrap_or(""), MAX_SEGMENT_VALUE_BYTES)
}

fn escape_capped(value: &str, max_bytes: usize) -> Cow<'_, str> {
    if value.is_empty() {
        return Cow::Borrowed(DEFAULT_PARTITION);
    }
    let escaped = if value.chars().any(needs_escape) {
        let mut out = String::with_capacity(value.len() + 8);
        let mut buf = [0u8; 4];
        for c in value.chars() {
            if needs_escape(c) {
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push('%');
                    out.push(char::from(HEX[usize::from(b >> 4)]));
                    out.push(char::from(HEX[usize::from(b & 0xF)]));
                }
            } else {
                out.push(c);
            }
        }
        Cow::Owned(out)
    } else {
        Cow::Borrowed(value)
    };
    if escaped.len() <= max_bytes {
        return escaped;
    }
    // Cut at a character boundary outside any %XX, then add the hash.
    let limit = max_bytes.saturating_sub(HASH_SUFFIX_BYTES);
    let mut end = 0;
    let mut rest = escaped.char_indices().peekable();
    while let Some((i, c)) = rest.next() {
        let unit = if c == '%' { 3 } else { c.len_utf8() };
        if i + unit > limit {
            break;
        }
        end = i + unit;
        if c == '%' {
            rest.next();
            rest.next();
        }
    }
    Cow::Owned(format!(
        "{}~{:016x}",
        &escaped[..end],
        fnv1a(value.as_bytes())
    ))
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// FNV-1a, 64 bits: stable across builds and platforms.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The late-data policy ([`LateDataConfig`]) of a sink: which time each row
/// is partitioned by.
///
/// A row is *late* when its record time is before `now - allowed_lateness`
/// and *early* when it is after `now + allowed_future`; both count as late.
/// Under [`LatePolicy::EventTime`] they keep their own time (late rows land
/// in old partitions, which readers may have considered complete); under
/// [`LatePolicy::ProcessingTime`] they are partitioned by `now`, the time
/// the sink buffers them.
///
/// ```
/// use std::time::Duration;
/// use tributary_config::{HumanDuration, LateDataConfig, LatePolicy};
/// use tributary_lake::LateData;
///
/// let late = LateData::new(&LateDataConfig {
///     policy: LatePolicy::ProcessingTime,
///     allowed_lateness: HumanDuration(Duration::from_secs(3600)),
///     allowed_future: HumanDuration(Duration::from_secs(300)),
/// });
/// let now = 10_000_000;
/// let times = [now - 1_000, now - 4_000_000, now + 600_000];
/// let (times, late_rows) = late.apply(&times, now);
/// assert_eq!(&*times, &[now - 1_000, now, now]);
/// assert_eq!(late_rows, 2);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct LateData {
    policy: LatePolicy,
    lateness_ms: i64,
    future_ms: i64,
}

impl LateData {
    /// The policy of a sink's `late_data` settings.
    pub fn new(cfg: &LateDataConfig) -> Self {
        let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Self {
            policy: cfg.policy,
            lateness_ms: ms(cfg.allowed_lateness.0),
            future_ms: ms(cfg.allowed_future.0),
        }
    }

    /// Whether a record time is outside the window around `now_ms`.
    pub fn is_late(&self, event_time_ms: i64, now_ms: i64) -> bool {
        event_time_ms < now_ms.saturating_sub(self.lateness_ms)
            || event_time_ms > now_ms.saturating_add(self.future_ms)
    }

    /// The times to partition rows by, and how many rows are late (or
    /// early), given the rows' record times and the current time `now_ms`
    /// (milliseconds since the Unix epoch). Borrows `event_time_ms` when no
    /// time changes.
    pub fn apply<'a>(&self, event_time_ms: &'a [i64], now_ms: i64) -> (Cow<'a, [i64]>, u64) {
        let late = event_time_ms
            .iter()
            .filter(|&&t| self.is_late(t, now_ms))
            .count() as u64;
        if late == 0 || self.policy == LatePolicy::EventTime {
            return (Cow::Borrowed(event_time_ms), late);
        }
        let times = event_time_ms
            .iter()
            .map(|&t| if self.is_late(t, now_ms) { now_ms } else { t })
            .collect();
        (Cow::Owned(times), late)
    }
}

fn own(item: Item<'_>) -> Item<'static> {
    match item {
        Item::Literal(s) => Item::OwnedLiteral(s.into()),
        Item::Space(s) => Item::OwnedSpace(s.into()),
        Item::OwnedLiteral(s) => Item::OwnedLiteral(s),
        Item::OwnedSpace(s) => Item::OwnedSpace(s),
        Item::Numeric(n, p) => Item::Numeric(n, p),
        Item::Fixed(f) => Item::Fixed(f),
        Item::Error => Item::Error,
    }
}

/// Whether an item shows seconds or finer (`%S %s %f %T %X %+ %r %c ...`).
/// Unknown items count as finer, which only costs speed.
fn is_sub_minute(item: &Item<'_>) -> bool {
    match item {
        Item::Literal(_) | Item::OwnedLiteral(_) | Item::Space(_) | Item::OwnedSpace(_) => false,
        Item::Numeric(n, _) => !matches!(
            n,
            Numeric::Year
                | Numeric::YearDiv100
                | Numeric::YearMod100
                | Numeric::IsoYear
                | Numeric::IsoYearDiv100
                | Numeric::IsoYearMod100
                | Numeric::Quarter
                | Numeric::Month
                | Numeric::Day
                | Numeric::WeekFromSun
                | Numeric::WeekFromMon
                | Numeric::IsoWeek
                | Numeric::NumDaysFromSun
                | Numeric::WeekdayFromMon
                | Numeric::Ordinal
                | Numeric::Hour
                | Numeric::Hour12
                | Numeric::Minute
        ),
        Item::Fixed(f) => !matches!(
            f,
            Fixed::ShortMonthName
                | Fixed::LongMonthName
                | Fixed::ShortWeekdayName
                | Fixed::LongWeekdayName
                | Fixed::LowerAmPm
                | Fixed::UpperAmPm
                | Fixed::TimezoneName
                | Fixed::TimezoneOffsetColon
                | Fixed::TimezoneOffsetDoubleColon
                | Fixed::TimezoneOffsetTripleColon
                | Fixed::TimezoneOffsetColonZ
                | Fixed::TimezoneOffset
                | Fixed::TimezoneOffsetZ
        ),
        Item::Error => true,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        BooleanArray, Date32Array, Decimal128Array, DictionaryArray, Float64Array, Int32Array,
        Int64Array, StringArray, TimestampMillisecondArray, UInt8Array,
    };
    use arrow::datatypes::{Field as ArrowField, Int32Type};

    use super::*;

    /// 2026-11-24T06:30:00Z
    const T: i64 = 1_795_501_800_000;

    fn ms(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn formats_in_timezone() {
        assert_eq!(ms("2026-11-24T06:30:00Z"), T);
        let utc = PartitionTemplate::new("dt=%Y-%m-%d/hour=%H", "UTC").unwrap();
        assert_eq!(utc.path_for(T), "dt=2026-11-24/hour=06");
        let berlin = PartitionTemplate::new("dt=%Y-%m-%d/hour=%H", "Europe/Berlin").unwrap();
        assert_eq!(berlin.path_for(T), "dt=2026-11-24/hour=07");
        assert_eq!(berlin.timezone(), "Europe/Berlin");
        assert_eq!(berlin.template(), "dt=%Y-%m-%d/hour=%H");
        // Summer time.
        assert_eq!(
            berlin.path_for(ms("2026-07-01T23:30:00Z")),
            "dt=2026-07-02/hour=01"
        );
        let kolkata = PartitionTemplate::new("%Y%m%d-%H%M", "Asia/Kolkata").unwrap();
        assert_eq!(kolkata.path_for(T), "20261124-1200");
    }

    #[test]
    fn rejects_bad_templates() {
        for bad in [
            "",
            "/dt=%Y",
            "dt=%Y//h=%H",
            "dt=%Y/",
            "../%Y",
            "dt=%Y/./x",
            "_tributary/%Y",
            ".hidden/%Y",
            "dt=%Q",
            "dt=%",
            "dt=%Y\\x",
        ] {
            let e = PartitionTemplate::new(bad, "UTC").unwrap_err();
            assert!(matches!(e, LakeError::Template { .. }), "{bad:?}: {e}");
        }
        let e = PartitionTemplate::new("dt=%Y", "Mars/Olympus").unwrap_err();
        assert!(e.to_string().contains("unknown timezone"), "{e}");
        // %D contains '/', which only adds segments.
        assert_eq!(
            PartitionTemplate::new("d=%D", "UTC").unwrap().path_for(T),
            "d=11/24/26"
        );
        PartitionTemplate::new("pct=%%", "UTC").unwrap();
    }

    #[test]
    fn sub_minute_detection() {
        for (t, per_minute) in [
            ("dt=%Y-%m-%d/hour=%H", true),
            ("m=%M/%Z/%z/%b/%a/%p", true),
            ("s=%S", false),
            ("ts=%s", false),
            ("f=%f", false),
            ("t=%T", false),
            ("x=%X", false),
            ("r=%r", false),
            ("p=%+", false),
            ("static", true),
        ] {
            let tpl = PartitionTemplate::new(t, "UTC").unwrap();
            assert_eq!(tpl.per_minute, per_minute, "{t}");
        }
    }

    #[test]
    fn groups_rows_in_first_seen_order() {
        let t = PartitionTemplate::new("dt=%Y-%m-%d/hour=%H", "UTC").unwrap();
        let h = 3_600_000;
        let times = [T, T + h, T + 1, T - h, T + h + 5, T + 59_999, T + 60_000];
        let groups = t.group(&times);
        assert_eq!(
            groups,
            vec![
                ("dt=2026-11-24/hour=06".to_string(), vec![0, 2, 5, 6]),
                ("dt=2026-11-24/hour=07".to_string(), vec![1, 4]),
                ("dt=2026-11-24/hour=05".to_string(), vec![3]),
            ]
        );
        assert!(t.group(&[]).is_empty());
    }

    #[test]
    fn group_matches_path_for() {
        // A spread of times, including negative ones, DST transitions in
        // Berlin and a local-mean-time offset with seconds (Amsterdam 1900).
        let mut times = Vec::new();
        let mut x: i64 = 12345;
        for _ in 0..5_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            times.push(T + (x >> 20) % (400 * 86_400_000));
        }
        times.push(ms("2026-03-29T00:59:59.999Z"));
        times.push(ms("2026-03-29T01:00:00Z"));
        times.push(ms("2026-10-25T00:59:59.999Z"));
        times.push(ms("2026-10-25T01:00:00.000Z"));
        times.push(ms("1900-01-01T12:00:10Z"));
        times.push(ms("1900-01-01T12:00:50Z"));
        times.push(-1);
        times.push(i64::MIN);
        times.push(i64::MAX);
        for (tpl, tz) in [
            ("dt=%Y-%m-%d/hour=%H", "UTC"),
            ("dt=%Y-%m-%d/hour=%H/min=%M", "Europe/Berlin"),
            ("min=%H%M", "Europe/Amsterdam"),
            ("sec=%H%M%S", "Europe/Amsterdam"),
            ("z=%Y%m%d%H%z", "America/St_Johns"),
        ] {
            let t = PartitionTemplate::new(tpl, tz).unwrap();
            let groups = t.group(&times);
            let mut seen = 0;
            for (path, rows) in &groups {
                for &r in rows {
                    assert_eq!(&t.path_for(times[r as usize]), path, "{tpl} {tz} row {r}");
                }
                seen += rows.len();
            }
            assert_eq!(seen, times.len());
            let mut paths: Vec<_> = groups.iter().map(|g| &g.0).collect();
            paths.sort();
            paths.dedup();
            assert_eq!(paths.len(), groups.len(), "paths are distinct");
        }
    }

    #[test]
    fn clamps_extreme_times() {
        let t = PartitionTemplate::new("y=%Y", "Asia/Tokyo").unwrap();
        assert_eq!(t.path_for(i64::MIN), "y=0001");
        assert!(t.path_for(i64::MAX).contains("10000"));
        let t = PartitionTemplate::new("y=%Y", "America/New_York").unwrap();
        assert_eq!(t.path_for(i64::MIN), "y=0000");
        assert_eq!(t.path_for(i64::MAX), "y=9999");
    }

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        RecordBatch::try_from_iter(columns).unwrap()
    }

    fn strings(values: &[Option<&str>]) -> ArrayRef {
        Arc::new(StringArray::from(values.to_vec()))
    }

    #[test]
    fn escaping_table() {
        let long = "x".repeat(300);
        for (value, expected) in [
            (Some("plain"), "plain".to_string()),
            (Some("a/b"), "a%2Fb".into()),
            (Some(".."), "..".into()),
            (Some("."), ".".into()),
            (Some("x=y"), "x%3Dy".into()),
            (Some("100%"), "100%25".into()),
            (Some("a\\b"), "a%5Cb".into()),
            (Some("#?:*\"<>|"), "%23%3F%3A%2A%22%3C%3E%7C".into()),
            (Some("'{}[]^"), "%27%7B%7D%5B%5D%5E".into()),
            (
                Some("tab\there\nnl\u{7f}\u{0}"),
                "tab%09here%0Anl%7F%00".into(),
            ),
            (Some("Zürich"), "Zürich".into()),
            (Some("東京 都"), "東京 都".into()),
            (Some("zero\u{200B}width"), "zero%E2%80%8Bwidth".into()),
            (Some("rtl\u{202E}x"), "rtl%E2%80%AEx".into()),
            (Some("\u{85}"), "%C2%85".into()),
            (Some("a.b-c_d~e f"), "a.b-c_d~e f".into()),
            (Some(""), DEFAULT_PARTITION.into()),
            (None, DEFAULT_PARTITION.into()),
        ] {
            assert_eq!(escape_value(value), expected, "{value:?}");
        }
        // Long values are cut, with a hash of the full value.
        let cut = escape_value(Some(&long));
        assert_eq!(cut.len(), MAX_SEGMENT_VALUE_BYTES, "{cut}");
        let (head, hash) = cut.rsplit_once('~').unwrap();
        assert!(long.starts_with(head));
        assert_eq!(hash.len(), 16);
        let other = format!("{long}y");
        assert_ne!(
            escape_value(Some(&other)),
            cut,
            "distinct values stay distinct"
        );
        // A cut never splits a %XX escape or a character.
        let slashes = "/".repeat(200);
        let cut = escape_value(Some(&slashes));
        assert!(cut.len() <= MAX_SEGMENT_VALUE_BYTES);
        let head = cut.rsplit_once('~').unwrap().0;
        assert!(
            head.len().is_multiple_of(3) && head.starts_with("%2F") && head.ends_with("%2F"),
            "{cut}"
        );
        let umlauts = "ü".repeat(100);
        let cut = escape_value(Some(&umlauts));
        assert!(cut.rsplit_once('~').unwrap().0.chars().all(|c| c == 'ü'));
        // Every result is one valid, visible segment.
        for v in ["a/b", "..", ".", "x=y", "\u{0}", &long, &slashes] {
            let segment = format!("k={}", escape_value(Some(v)));
            validate_path(&segment).unwrap();
            assert!(!segment.contains('/'));
        }
    }

    #[test]
    fn field_templates_parse() {
        let t = PartitionTemplate::new("country={country}/city={address.city}/dt=%Y-%m-%d", "UTC")
            .unwrap();
        assert!(t.has_fields());
        assert_eq!(t.fields().collect::<Vec<_>>(), ["country", "address.city"]);
        assert_eq!(
            t.path_for(T),
            "country={country}/city={address.city}/dt=2026-11-24"
        );
        assert_eq!(
            t.group(&[T, T]),
            vec![(
                "country={country}/city={address.city}/dt=2026-11-24".to_string(),
                vec![0, 1]
            )]
        );
        // Two placeholders in a segment share the value budget.
        let t = PartitionTemplate::new("k={a}-{b}/j={c}", "UTC").unwrap();
        let budgets: Vec<usize> = t.fields.iter().map(|f| f.max_bytes).collect();
        assert_eq!(budgets, [64, 64, 128]);
        for bad in [
            "{country}/dt=%Y",
            "dt=%Y/{country}",
            "c={}",
            "c={ }",
            "c={a..b}",
            "c={.a}",
            "c={country",
            "c={a/b}",
            "c=country}",
            "c={a{b}}",
            "c=%{a}",
        ] {
            let e = PartitionTemplate::new(bad, "UTC").unwrap_err();
            assert!(matches!(e, LakeError::Template { .. }), "{bad:?}: {e}");
        }
        let e = PartitionTemplate::new("{country}", "UTC").unwrap_err();
        assert!(e.to_string().contains("country={country}"), "{e}");
        assert!(!PartitionTemplate::new("dt=%Y", "UTC").unwrap().has_fields());
    }

    #[test]
    fn groups_by_field_and_time() {
        let t = PartitionTemplate::new("country={country}/dt=%Y-%m-%d", "UTC").unwrap();
        let day = 86_400_000;
        let rows = batch(vec![(
            "country",
            strings(&[
                Some("DE"),
                Some("a/b"),
                None,
                Some("DE"),
                Some(""),
                Some(".."),
                Some("x=y"),
                Some("Zürich"),
                Some("DE"),
            ]),
        )]);
        let times = [T, T, T, T + day, T, T, T, T, T + 1];
        let groups = t.group_rows(&rows, &times).unwrap();
        assert_eq!(
            groups,
            vec![
                ("country=DE/dt=2026-11-24".to_string(), vec![0, 8]),
                ("country=a%2Fb/dt=2026-11-24".to_string(), vec![1]),
                (
                    "country=__HIVE_DEFAULT_PARTITION__/dt=2026-11-24".to_string(),
                    vec![2, 4]
                ),
                ("country=DE/dt=2026-11-25".to_string(), vec![3]),
                ("country=../dt=2026-11-24".to_string(), vec![5]),
                ("country=x%3Dy/dt=2026-11-24".to_string(), vec![6]),
                ("country=Zürich/dt=2026-11-24".to_string(), vec![7]),
            ]
        );
        for (path, _) in &groups {
            validate_path(path).unwrap();
        }
        // A template without fields groups by time only.
        let time_only = PartitionTemplate::new("dt=%Y-%m-%d", "UTC").unwrap();
        assert_eq!(
            time_only.group_rows(&rows, &times).unwrap(),
            time_only.group(&times)
        );
    }

    #[test]
    fn typed_and_nested_placeholders() {
        let address = StructArray::from(vec![
            (
                Arc::new(ArrowField::new("city", DataType::Utf8, true)),
                strings(&[Some("Köln"), Some("x"), None]),
            ),
            (
                Arc::new(ArrowField::new("zip", DataType::Int32, true)),
                Arc::new(Int32Array::from(vec![Some(50667), Some(1), Some(2)])) as ArrayRef,
            ),
        ]);
        // Row 1's struct is null: its children count as null.
        let address = StructArray::new(
            address.fields().clone(),
            address.columns().to_vec(),
            Some(NullBuffer::from(vec![true, false, true])),
        );
        let rows = batch(vec![
            ("n", Arc::new(Int64Array::from(vec![-5, 0, 42])) as ArrayRef),
            ("u", Arc::new(UInt8Array::from(vec![1, 2, 3])) as ArrayRef),
            (
                "f",
                Arc::new(Float64Array::from(vec![1.5, -0.25, 3.0])) as ArrayRef,
            ),
            (
                "b",
                Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])) as ArrayRef,
            ),
            (
                "d",
                Arc::new(Date32Array::from(vec![20416, 0, -1])) as ArrayRef,
            ),
            (
                "ts",
                Arc::new(TimestampMillisecondArray::from(vec![T, 0, T + 1])) as ArrayRef,
            ),
            (
                "tz",
                Arc::new(TimestampMillisecondArray::from(vec![T, 0, T]).with_timezone("UTC"))
                    as ArrayRef,
            ),
            (
                "dec",
                Arc::new(
                    Decimal128Array::from(vec![1234, -5, 0])
                        .with_precision_and_scale(10, 2)
                        .unwrap(),
                ) as ArrayRef,
            ),
            (
                "dict",
                Arc::new(
                    vec![Some("a/b"), None, Some("a/b")]
                        .into_iter()
                        .collect::<DictionaryArray<Int32Type>>(),
                ) as ArrayRef,
            ),
            ("address", Arc::new(address) as ArrayRef),
        ]);
        let times = [T, T, T];
        let cases: [(&str, [&str; 3]); 11] = [
            ("n={n}", ["n=-5", "n=0", "n=42"]),
            ("u={u}", ["u=1", "u=2", "u=3"]),
            ("f={f}", ["f=1.5", "f=-0.25", "f=3.0"]),
            (
                "b={b}",
                ["b=true", "b=false", "b=__HIVE_DEFAULT_PARTITION__"],
            ),
            ("d={d}", ["d=2025-11-24", "d=1970-01-01", "d=1969-12-31"]),
            (
                "ts={ts}",
                [
                    "ts=2026-11-24T06%3A30%3A00",
                    "ts=1970-01-01T00%3A00%3A00",
                    "ts=2026-11-24T06%3A30%3A00.001",
                ],
            ),
            (
                "tz={tz}",
                [
                    "tz=2026-11-24T06%3A30%3A00Z",
                    "tz=1970-01-01T00%3A00%3A00Z",
                    "tz=2026-11-24T06%3A30%3A00Z",
                ],
            ),
            ("dec={dec}", ["dec=12.34", "dec=-0.05", "dec=0.00"]),
            (
                "k={dict}",
                ["k=a%2Fb", "k=__HIVE_DEFAULT_PARTITION__", "k=a%2Fb"],
            ),
            (
                "city={address.city}",
                [
                    "city=Köln",
                    "city=__HIVE_DEFAULT_PARTITION__",
                    "city=__HIVE_DEFAULT_PARTITION__",
                ],
            ),
            (
                "zip={address.zip}/n={n}",
                [
                    "zip=50667/n=-5",
                    "zip=__HIVE_DEFAULT_PARTITION__/n=0",
                    "zip=2/n=42",
                ],
            ),
        ];
        for (template, expected) in cases {
            let t = PartitionTemplate::new(template, "UTC").unwrap();
            t.check_schema(&rows.schema()).unwrap();
            let mut by_row = vec![String::new(); 3];
            for (path, indices) in t.group_rows(&rows, &times).unwrap() {
                for r in indices {
                    by_row[r as usize] = path.clone();
                }
            }
            assert_eq!(by_row, expected, "{template}");
        }
    }

    #[test]
    fn unknown_and_unsupported_fields() {
        let schema = Schema::new(vec![
            ArrowField::new("country", DataType::Utf8, true),
            ArrowField::new("tags", DataType::new_list(DataType::Utf8, true), true),
            ArrowField::new("blob", DataType::Binary, true),
            ArrowField::new(
                "address",
                DataType::Struct(vec![ArrowField::new("city", DataType::Utf8, true)].into()),
                true,
            ),
        ]);
        for (template, field, says) in [
            (
                "c={countyr}",
                "countyr",
                "is not a column of the rows (columns: country, tags, blob, address)",
            ),
            ("c={tags}", "tags", "cannot be a partition value"),
            ("c={blob}", "blob", "cannot be a partition value"),
            ("c={address}", "address", "cannot be a partition value"),
            (
                "c={address.town}",
                "address.town",
                "struct address has no field \"town\" (fields: city)",
            ),
            (
                "c={country.x}",
                "country.x",
                "country is Utf8, not a struct",
            ),
        ] {
            let t = PartitionTemplate::new(template, "UTC").unwrap();
            let e = t.check_schema(&schema).unwrap_err();
            match &e {
                LakeError::PartitionField { field: f, .. } => assert_eq!(f, field),
                other => panic!("{template}: {other}"),
            }
            assert!(e.to_string().contains(says), "{template}: {e}");
        }
        PartitionTemplate::new("c={address.city}/k={country}", "UTC")
            .unwrap()
            .check_schema(&schema)
            .unwrap();
        // At run time, a batch without the column is an error naming the field.
        let t = PartitionTemplate::new("c={country}", "UTC").unwrap();
        let rows = batch(vec![("other", strings(&[Some("x")]))]);
        let e = t.group_rows(&rows, &[T]).unwrap_err();
        assert!(e.to_string().contains("\"country\""), "{e}");
    }

    #[test]
    fn late_data_policies() {
        let hour = 3_600_000;
        let now = T;
        let cfg = |policy| LateDataConfig {
            policy,
            allowed_lateness: tributary_config::HumanDuration::from_secs(3600),
            allowed_future: tributary_config::HumanDuration::from_secs(300),
        };
        let times = [
            now,
            now - hour,           // exactly at the bound: on time
            now - hour - 1,       // late
            now - 30 * 24 * hour, // very late
            now + 300_000,        // at the future bound: on time
            now + 300_001,        // too far ahead
            i64::MIN,
            i64::MAX,
        ];
        let event = LateData::new(&cfg(LatePolicy::EventTime));
        let (kept, late) = event.apply(&times, now);
        assert!(matches!(kept, Cow::Borrowed(_)));
        assert_eq!(&*kept, &times);
        assert_eq!(late, 5);
        let processing = LateData::new(&cfg(LatePolicy::ProcessingTime));
        let (moved, late) = processing.apply(&times, now);
        assert_eq!(late, 5);
        assert_eq!(
            &*moved,
            &[now, now - hour, now, now, now + 300_000, now, now, now]
        );
        let (none_late, late) = processing.apply(&times[..2], now);
        assert!(matches!(none_late, Cow::Borrowed(_)));
        assert_eq!(late, 0);
        // With a template: late rows go to the current day's partition.
        let t = PartitionTemplate::new("dt=%Y-%m-%d", "UTC").unwrap();
        let paths: Vec<String> = t.group(&moved).into_iter().map(|g| g.0).collect();
        assert_eq!(paths, ["dt=2026-11-24"]);
        let paths: Vec<String> = t.group(&kept).into_iter().map(|g| g.0).collect();
        assert_eq!(
            paths,
            [
                "dt=2026-11-24",
                "dt=2026-10-25",
                "dt=0001-01-01",
                "dt=9999-12-31"
            ]
        );
    }
}
