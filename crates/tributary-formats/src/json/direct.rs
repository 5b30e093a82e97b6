//! A one-pass JSON decoder for the common case: each payload is read once,
//! and its values go straight into the Arrow buffers of their columns.
//!
//! `arrow_json`'s decoder first writes every payload onto a tape (copying
//! each string), then walks the tape once per column; on 250-byte records
//! that is about 850 ns a record, half of Tributary's CPU. This decoder does
//! the same work in one pass and copies each string once.
//!
//! It is an accelerator, not a second definition of JSON decoding: it takes
//! only records it is sure `arrow_json` reads to the same row, and gives up
//! at the first other one — a syntax error, a value of another type than its
//! column (a string in a number column, a fraction in an integer column), a
//! missing required field, a key written twice, an escaped key, a lone
//! surrogate. [`DirectDecoder::decode`] returns the rows before it; the
//! converter has `arrow_json` decide whether that record is a row or a
//! reject, with its own messages. Schemas with a column type it does not
//! handle (binary, maps, large or fixed-size lists, unions, ...) get no
//! direct decoder at all (see [`DirectDecoder::new`]).
//!
//! Values are read as `arrow_json` reads them: numbers with `lexical_core`
//! (integers only from integer literals, within the column's range),
//! timestamps from strings with `arrow`'s `string_to_datetime` in the
//! column's time zone and from integer literals in the column's unit,
//! decimals from strings and numbers with `arrow`'s `parse_decimal`, dates
//! from strings with `arrow`'s date parser and from integer literals (days),
//! booleans from `true` and `false`, lists from arrays, structs from objects,
//! and, when `coerce_primitive` is set (inferred schemas), numbers and
//! booleans into string columns as their JSON text. Fields the schema does
//! not list are skipped (but must be valid JSON); missing and `null` fields
//! are nulls.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::timezone::Tz;
use arrow::array::{
    ArrayRef, BooleanArray, BooleanBufferBuilder, ListArray, NullBufferBuilder, PrimitiveArray,
    StringArray, StructArray,
};
use arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow::compute::kernels::cast_utils::{parse_decimal, string_to_datetime, Parser};
use arrow::datatypes::{
    ArrowNativeType, ArrowPrimitiveType, DataType, Date32Type, Decimal128Type, Field, FieldRef,
    Fields, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, SchemaRef,
    TimeUnit, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow::record_batch::RecordBatch;

/// Deepest nesting of a skipped value before the decoder gives up.
const MAX_DEPTH: usize = 64;

/// Structs with more fields than this look keys up in a hash map.
const LINEAR_LOOKUP: usize = 16;

/// Decodes batches of JSON objects straight into Arrow columns, or gives up.
#[derive(Debug)]
pub(super) struct DirectDecoder {
    schema: SchemaRef,
    root: StructShape,
    coerce_primitive: bool,
}

/// The part of a struct column that does not change from batch to batch.
#[derive(Debug)]
struct StructShape {
    fields: Fields,
    /// Field index by name, for wide structs.
    index: Option<HashMap<Box<[u8]>, usize>>,
    /// Each field's key as it appears in a record, closing quote included
    /// (`None` for a name with `"` or `\\`, which a record must escape).
    quoted: Vec<Option<Box<[u8]>>>,
    /// Each key with its closing quote and a colon (`id":`), when that is
    /// at most 16 bytes, as one word for a compare without slicing: the
    /// bytes, a mask of them, and their length. Compact JSON (no space
    /// before the colon) then needs one compare per key.
    words: Vec<Option<(u128, u128, usize)>>,
    /// Whether each field is nullable.
    nullable: Vec<bool>,
    children: Vec<Shape>,
}

#[derive(Debug)]
enum Shape {
    Utf8,
    /// An integer column: its type, and the range of values it takes.
    Int(IntType, i64, i64),
    Float32,
    Float64,
    Bool,
    Timestamp(TimeUnit, Tz),
    /// Precision and scale.
    Decimal128(u8, i8),
    Date32,
    Struct(StructShape),
    /// The item field, and its shape.
    List(FieldRef, Box<Shape>),
}

#[derive(Clone, Copy, Debug)]
enum IntType {
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
}

impl DirectDecoder {
    /// A decoder for rows of `schema`, or `None` when a column has a type
    /// this decoder leaves to `arrow_json`.
    pub(super) fn new(schema: SchemaRef, coerce_primitive: bool) -> Option<Self> {
        let root = StructShape::new(schema.fields())?;
        Some(Self {
            schema,
            root,
            coerce_primitive,
        })
    }

    /// Decodes one row from each payload, in order, up to the first payload
    /// it is not sure to read as `arrow_json` does. Returns the rows of the
    /// payloads before that one (`None` when there are none) and how many
    /// they are: `payloads.len()` when every payload was decoded.
    pub(super) fn decode(&self, payloads: &[&[u8]]) -> (Option<RecordBatch>, usize) {
        let mut root = StructColumn::new(&self.root, payloads.len());
        let mut scratch = Vec::new();
        let mut decoded = 0;
        for payload in payloads {
            if self.row(&mut root, payload, &mut scratch).is_none() {
                // Drop what the payload had written so far.
                root.truncate(decoded);
                break;
            }
            decoded += 1;
        }
        if decoded == 0 {
            return (None, 0);
        }
        let rows = root.finish(&self.root).and_then(|root| {
            let (_, columns, _) = root.into_parts();
            RecordBatch::try_new(self.schema.clone(), columns).ok()
        });
        match rows {
            Some(rows) => (Some(rows), decoded),
            // Cannot happen with the checks above; arrow_json takes over.
            None => (None, 0),
        }
    }

    /// Decodes one payload into a row of `root`.
    fn row(&self, root: &mut StructColumn, payload: &[u8], scratch: &mut Vec<u8>) -> Option<()> {
        // Invalid UTF-8 anywhere (even in a skipped field) fails in
        // arrow_json. Outside strings only ASCII gets past the grammar, so
        // each string and key is validated (when it has a non-ASCII byte).
        let mut input = Input {
            bytes: payload,
            at: 0,
            coerce_primitive: self.coerce_primitive,
            scratch,
        };
        input.whitespace();
        if input.next()? != b'{' {
            return None;
        }
        root.object(&self.root, &mut input)?;
        input.whitespace();
        (input.at == payload.len()).then_some(())
    }
}

impl StructShape {
    fn new(fields: &Fields) -> Option<Self> {
        let children = fields
            .iter()
            .map(|f| Shape::new(f))
            .collect::<Option<Vec<_>>>()?;
        let index = (fields.len() > LINEAR_LOOKUP).then(|| {
            fields
                .iter()
                .enumerate()
                .map(|(i, f)| (f.name().as_bytes().into(), i))
                .collect()
        });
        let quoted = fields
            .iter()
            .map(|f| {
                let name = f.name().as_bytes();
                (!name.iter().any(|&c| c == b'"' || c == b'\\'))
                    .then(|| [name, b"\""].concat().into_boxed_slice())
            })
            .collect::<Vec<Option<Box<[u8]>>>>();
        let words = quoted
            .iter()
            .map(|q| {
                let q = q.as_deref().filter(|q| q.len() < 16)?;
                let mut word = [0u8; 16];
                word[..q.len()].copy_from_slice(q);
                word[q.len()] = b':';
                let len = q.len() + 1;
                let mask = u128::MAX >> (8 * (16 - len));
                Some((u128::from_le_bytes(word), mask, len))
            })
            .collect();
        Some(Self {
            nullable: fields.iter().map(|f| f.is_nullable()).collect(),
            fields: fields.clone(),
            index,
            quoted,
            words,
            children,
        })
    }

    /// Whether `rest` (what follows a key's opening quote) starts with the
    /// key of field `f`, its closing quote and a colon; then that many bytes.
    fn key_colon_at(&self, f: usize, rest: &[u8]) -> Option<usize> {
        let (word, mask, len) = self.words.get(f)?.as_ref()?;
        let head = rest.first_chunk::<16>()?;
        (u128::from_le_bytes(*head) & mask == *word).then_some(*len)
    }

    /// Whether `rest` (what follows a key's opening quote) starts with the
    /// key of field `f` and its closing quote; then that many bytes.
    fn key_at(&self, f: usize, rest: &[u8]) -> Option<usize> {
        let quoted = self.quoted.get(f)?.as_deref()?;
        starts_with(rest, quoted).then_some(quoted.len())
    }

    /// Index of the field named `key`; `guess` is tried first (keys usually
    /// come in the order of the previous record).
    fn find(&self, key: &[u8], guess: usize) -> Option<usize> {
        if let Some(f) = self.fields.get(guess) {
            if f.name().as_bytes() == key {
                return Some(guess);
            }
        }
        match &self.index {
            Some(index) => index.get(key).copied(),
            None => self.fields.iter().position(|f| f.name().as_bytes() == key),
        }
    }
}

impl Shape {
    fn new(field: &Field) -> Option<Self> {
        let int = |t, min: i64, max: i64| Some(Shape::Int(t, min, max));
        match field.data_type() {
            DataType::Utf8 => Some(Shape::Utf8),
            DataType::Int8 => int(IntType::I8, i8::MIN.into(), i8::MAX.into()),
            DataType::Int16 => int(IntType::I16, i16::MIN.into(), i16::MAX.into()),
            DataType::Int32 => int(IntType::I32, i32::MIN.into(), i32::MAX.into()),
            DataType::Int64 => int(IntType::I64, i64::MIN, i64::MAX),
            DataType::UInt8 => int(IntType::U8, 0, u8::MAX.into()),
            DataType::UInt16 => int(IntType::U16, 0, u16::MAX.into()),
            DataType::UInt32 => int(IntType::U32, 0, u32::MAX.into()),
            // Values above i64::MAX are left to arrow_json.
            DataType::UInt64 => int(IntType::U64, 0, i64::MAX),
            DataType::Float32 => Some(Shape::Float32),
            DataType::Float64 => Some(Shape::Float64),
            DataType::Boolean => Some(Shape::Bool),
            DataType::Timestamp(unit, tz) => {
                let tz: Tz = match tz {
                    Some(tz) => tz.parse().ok()?,
                    None => "+00:00".parse().ok()?,
                };
                Some(Shape::Timestamp(*unit, tz))
            }
            DataType::Decimal128(precision, scale) => Some(Shape::Decimal128(*precision, *scale)),
            DataType::Date32 => Some(Shape::Date32),
            DataType::Struct(fields) => Some(Shape::Struct(StructShape::new(fields)?)),
            DataType::List(item) => Some(Shape::List(item.clone(), Box::new(Shape::new(item)?))),
            _ => None,
        }
    }
}

/// The values of one column of the batch being decoded.
enum Column {
    Utf8(Strings),
    Int(Values<i64>),
    Float32(Values<f32>),
    Float64(Values<f64>),
    Bool(BooleanBufferBuilder, NullBufferBuilder),
    Timestamp(Values<i64>),
    Decimal128(Values<i128>),
    Date32(Values<i32>),
    Struct(StructColumn),
    List {
        offsets: Vec<i32>,
        items: Box<Column>,
        nulls: NullBufferBuilder,
    },
}

/// The values of a string column: their bytes end to end, where each ends,
/// and their nulls.
struct Strings {
    offsets: Vec<i32>,
    values: Vec<u8>,
    nulls: NullBufferBuilder,
}

impl Strings {
    fn new(rows: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        Self {
            offsets,
            values: Vec::with_capacity(rows * 8),
            nulls: NullBufferBuilder::new(rows),
        }
    }

    /// Ends the value whose bytes were appended to `values`; `None` past
    /// 2 GiB of values (i32 offsets).
    fn end_value(&mut self) -> Option<()> {
        self.offsets.push(i32::try_from(self.values.len()).ok()?);
        self.nulls.append_non_null();
        Some(())
    }

    fn null(&mut self) {
        self.offsets.push(self.offsets[self.offsets.len() - 1]);
        self.nulls.append_null();
    }

    fn truncate(&mut self, rows: usize) {
        self.offsets.truncate(rows + 1);
        self.values.truncate(self.offsets[rows] as usize);
        self.nulls.truncate(rows);
    }

    fn array(mut self) -> Option<StringArray> {
        // Checks that the offsets only grow (they do: each is the length of
        // `values` when a value ended).
        let offsets = OffsetBuffer::new(ScalarBuffer::from(self.offsets));
        let values = Buffer::from_vec(self.values);
        debug_assert!(std::str::from_utf8(&values).is_ok());
        // SAFETY: `values` is valid UTF-8 and every offset is at a character
        // boundary: each value is text `text_end` checked (the bytes between
        // a string's quotes and escapes), characters of escapes written by
        // `char::encode_utf8`, or the ASCII text of a number or a boolean;
        // and a row that fails is truncated away to the end of the row
        // before it. Checking it again was 1 % of the pipeline's CPU.
        Some(unsafe { StringArray::new_unchecked(offsets, values, self.nulls.finish()) })
    }
}

/// The values of a primitive column, with their nulls.
struct Values<T> {
    values: Vec<T>,
    nulls: NullBufferBuilder,
}

impl<T: ArrowNativeType> Values<T> {
    fn new(rows: usize) -> Self {
        Self {
            values: Vec::with_capacity(rows),
            nulls: NullBufferBuilder::new(rows),
        }
    }

    fn push(&mut self, value: T) {
        self.values.push(value);
        self.nulls.append_non_null();
    }

    fn null(&mut self) {
        self.values.push(T::default());
        self.nulls.append_null();
    }

    fn truncate(&mut self, rows: usize) {
        self.values.truncate(rows);
        self.nulls.truncate(rows);
    }

    fn array<P: ArrowPrimitiveType<Native = T>>(mut self) -> PrimitiveArray<P> {
        PrimitiveArray::new(self.values.into(), self.nulls.finish())
    }
}

struct StructColumn {
    children: Vec<Column>,
    /// Per field, the row that last set it (`usize::MAX`: none yet).
    set_in: Vec<usize>,
    nulls: NullBufferBuilder,
    len: usize,
}

impl StructColumn {
    fn new(shape: &StructShape, rows: usize) -> Self {
        Self {
            children: shape
                .children
                .iter()
                .map(|c| Column::new(c, rows))
                .collect(),
            set_in: vec![usize::MAX; shape.children.len()],
            nulls: NullBufferBuilder::new(rows),
            len: 0,
        }
    }

    /// Reads the members of an object whose `{` was just read, and the `}`.
    fn object(&mut self, shape: &StructShape, input: &mut Input<'_>) -> Option<()> {
        let row = self.len;
        let mut guess = 0;
        // Fields this object set (each at most once).
        let mut set = 0;
        input.whitespace();
        if !input.eat(b'}') {
            if input.next()? != b'"' {
                return None;
            }
            loop {
                // Just after a key's opening quote. Keys usually come in
                // the order of the schema (or of the previous record): the
                // expected one is tried first.
                let field = match shape.key_colon_at(guess, input.rest()) {
                    Some(len) => {
                        input.at += len;
                        Some(guess)
                    }
                    None => {
                        let field = match shape.key_at(guess, input.rest()) {
                            Some(len) => {
                                input.at += len;
                                Some(guess)
                            }
                            None => shape.find(input.key()?, guess),
                        };
                        input.whitespace();
                        if input.next()? != b':' {
                            return None;
                        }
                        field
                    }
                };
                input.whitespace();
                match field {
                    Some(f) => {
                        // A key written twice: arrow_json keeps the last value.
                        if std::mem::replace(&mut self.set_in[f], row) == row {
                            return None;
                        }
                        let nullable = shape.nullable[f];
                        self.children[f].value(&shape.children[f], nullable, input)?;
                        guess = f + 1;
                        set += 1;
                    }
                    None => input.skip_value(0)?,
                }
                // Compact JSON: a comma and the next key's quote.
                if let Some(b",\"") = input.rest().first_chunk::<2>() {
                    input.at += 2;
                    continue;
                }
                input.whitespace();
                match input.next()? {
                    b',' => input.whitespace(),
                    b'}' => break,
                    _ => return None,
                }
                if input.next()? != b'"' {
                    return None;
                }
            }
        }
        if set < self.children.len() {
            for (f, child) in self.children.iter_mut().enumerate() {
                if self.set_in[f] != row {
                    if !shape.nullable[f] {
                        return None;
                    }
                    child.null(&shape.children[f]);
                }
            }
        }
        self.nulls.append_non_null();
        self.len += 1;
        Some(())
    }

    /// A null struct: its fields are null too (masked by the struct's null).
    fn null(&mut self, shape: &StructShape) {
        for (child, s) in self.children.iter_mut().zip(&shape.children) {
            child.null(s);
        }
        self.nulls.append_null();
        self.len += 1;
    }

    /// Keeps the first `rows` rows.
    fn truncate(&mut self, rows: usize) {
        for child in &mut self.children {
            child.truncate(rows);
        }
        for set_in in &mut self.set_in {
            if *set_in != usize::MAX && *set_in >= rows {
                *set_in = usize::MAX;
            }
        }
        self.nulls.truncate(rows);
        self.len = rows;
    }

    fn finish(mut self, shape: &StructShape) -> Option<StructArray> {
        let columns = self
            .children
            .into_iter()
            .zip(&shape.children)
            .zip(shape.fields.iter())
            .map(|((c, s), f)| c.finish(s, f))
            .collect::<Option<Vec<_>>>()?;
        StructArray::try_new(shape.fields.clone(), columns, self.nulls.finish()).ok()
    }
}

impl Column {
    fn new(shape: &Shape, rows: usize) -> Self {
        let nulls = NullBufferBuilder::new(rows);
        match shape {
            Shape::Utf8 => Column::Utf8(Strings::new(rows)),
            Shape::Int(..) => Column::Int(Values::new(rows)),
            Shape::Float32 => Column::Float32(Values::new(rows)),
            Shape::Float64 => Column::Float64(Values::new(rows)),
            Shape::Bool => Column::Bool(BooleanBufferBuilder::new(rows), nulls),
            Shape::Timestamp(..) => Column::Timestamp(Values::new(rows)),
            Shape::Decimal128(..) => Column::Decimal128(Values::new(rows)),
            Shape::Date32 => Column::Date32(Values::new(rows)),
            Shape::Struct(s) => Column::Struct(StructColumn::new(s, rows)),
            Shape::List(_, item) => {
                let mut offsets = Vec::with_capacity(rows + 1);
                offsets.push(0);
                Column::List {
                    offsets,
                    items: Box::new(Column::new(item, rows)),
                    nulls,
                }
            }
        }
    }

    fn null(&mut self, shape: &Shape) {
        match (self, shape) {
            (Column::Utf8(v), _) => v.null(),
            (Column::Int(v), _) | (Column::Timestamp(v), _) => v.null(),
            (Column::Float32(v), _) => v.null(),
            (Column::Float64(v), _) => v.null(),
            (Column::Decimal128(v), _) => v.null(),
            (Column::Date32(v), _) => v.null(),
            (Column::Bool(v, nulls), _) => {
                v.append(false);
                nulls.append_null();
            }
            (Column::List { offsets, nulls, .. }, _) => {
                offsets.push(offsets[offsets.len() - 1]);
                nulls.append_null();
            }
            (Column::Struct(c), Shape::Struct(s)) => c.null(s),
            (Column::Struct(_), _) => unreachable!("a struct column has a struct shape"),
        }
    }

    /// Keeps the first `rows` values.
    fn truncate(&mut self, rows: usize) {
        match self {
            Column::Utf8(v) => v.truncate(rows),
            Column::Int(v) | Column::Timestamp(v) => v.truncate(rows),
            Column::Float32(v) => v.truncate(rows),
            Column::Float64(v) => v.truncate(rows),
            Column::Decimal128(v) => v.truncate(rows),
            Column::Date32(v) => v.truncate(rows),
            Column::Bool(v, nulls) => {
                v.truncate(rows);
                nulls.truncate(rows);
            }
            Column::List {
                offsets,
                items,
                nulls,
            } => {
                offsets.truncate(rows + 1);
                items.truncate(offsets[rows] as usize);
                nulls.truncate(rows);
            }
            Column::Struct(c) => c.truncate(rows),
        }
    }

    /// Reads one value (the input is at its first byte) into this column.
    fn value(&mut self, shape: &Shape, nullable: bool, input: &mut Input<'_>) -> Option<()> {
        let first = input.peek()?;
        if first == b'n' {
            input.literal(b"null")?;
            // A null in a required field fails in arrow_json.
            if !nullable {
                return None;
            }
            self.null(shape);
            return Some(());
        }
        match (self, shape) {
            (Column::Utf8(v), _) => {
                match first {
                    b'"' => {
                        input.at += 1;
                        input.string(&mut v.values)?;
                    }
                    b't' | b'f' if input.coerce_primitive => {
                        let text: &[u8] = if first == b't' { b"true" } else { b"false" };
                        input.literal(text)?;
                        v.values.extend_from_slice(text);
                    }
                    b'-' | b'0'..=b'9' if input.coerce_primitive => {
                        let (number, _) = input.number()?;
                        v.values.extend_from_slice(number);
                    }
                    _ => return None,
                }
                v.end_value()?;
            }
            (Column::Int(v), Shape::Int(_, min, max)) => {
                let (number, integer) = input.number()?;
                if !integer {
                    return None;
                }
                let n = match short_integer(number) {
                    Some(n) => n,
                    None => lexical_core::parse::<i64>(number).ok()?,
                };
                if n < *min || n > *max {
                    return None;
                }
                v.push(n);
            }
            (Column::Float32(v), _) => {
                let (number, _) = input.number()?;
                v.push(lexical_core::parse::<f32>(number).ok()?);
            }
            (Column::Float64(v), _) => {
                let (number, _) = input.number()?;
                v.push(match short_decimal(number) {
                    Some(x) => x,
                    None => lexical_core::parse::<f64>(number).ok()?,
                });
            }
            (Column::Bool(v, nulls), _) => {
                match first {
                    b't' => {
                        input.literal(b"true")?;
                        v.append(true);
                    }
                    b'f' => {
                        input.literal(b"false")?;
                        v.append(false);
                    }
                    _ => return None,
                }
                nulls.append_non_null();
            }
            (Column::Timestamp(v), Shape::Timestamp(unit, tz)) => {
                let value = match first {
                    b'"' => input.with_string(|text| {
                        let (secs, nanos) = match utc_rfc3339(text) {
                            Some(instant) => instant,
                            None => {
                                let text = std::str::from_utf8(text).ok()?;
                                let date = string_to_datetime(tz, text).ok()?;
                                (date.timestamp(), date.timestamp_subsec_nanos())
                            }
                        };
                        in_unit(secs, nanos, *unit)
                    })?,
                    _ => {
                        let (number, integer) = input.number()?;
                        if !integer {
                            return None;
                        }
                        lexical_core::parse::<i64>(number).ok()?
                    }
                };
                v.push(value);
            }
            (Column::Decimal128(v), Shape::Decimal128(precision, scale)) => {
                // arrow_json parses a JSON string or number's text alike.
                let value = match first {
                    b'"' => input.with_string(|text| {
                        let text = std::str::from_utf8(text).ok()?;
                        parse_decimal::<Decimal128Type>(text, *precision, *scale).ok()
                    })?,
                    _ => {
                        let (number, _) = input.number()?;
                        let text = std::str::from_utf8(number).ok()?;
                        parse_decimal::<Decimal128Type>(text, *precision, *scale).ok()?
                    }
                };
                v.push(value);
            }
            (Column::Date32(v), _) => {
                let value = match first {
                    b'"' => input
                        .with_string(|text| Date32Type::parse(std::str::from_utf8(text).ok()?))?,
                    _ => {
                        let (number, integer) = input.number()?;
                        if !integer {
                            return None;
                        }
                        lexical_core::parse::<i32>(number).ok()?
                    }
                };
                v.push(value);
            }
            (Column::Struct(c), Shape::Struct(s)) => {
                if input.next()? != b'{' {
                    return None;
                }
                c.object(s, input)?;
            }
            (
                Column::List {
                    offsets,
                    items,
                    nulls,
                },
                Shape::List(item_field, item),
            ) => {
                if input.next()? != b'[' {
                    return None;
                }
                let mut len = offsets[offsets.len() - 1];
                input.whitespace();
                if !input.eat(b']') {
                    loop {
                        items.value(item, item_field.is_nullable(), input)?;
                        len = len.checked_add(1)?;
                        input.whitespace();
                        match input.next()? {
                            b',' => input.whitespace(),
                            b']' => break,
                            _ => return None,
                        }
                    }
                }
                offsets.push(len);
                nulls.append_non_null();
            }
            _ => return None,
        }
        Some(())
    }

    fn finish(self, shape: &Shape, field: &Field) -> Option<ArrayRef> {
        Some(match (self, shape) {
            (Column::Utf8(v), _) => Arc::new(v.array()?),
            (Column::Int(v), Shape::Int(t, ..)) => match t {
                IntType::I8 => narrow::<Int8Type>(v),
                IntType::I16 => narrow::<Int16Type>(v),
                IntType::I32 => narrow::<Int32Type>(v),
                IntType::I64 => Arc::new(v.array::<Int64Type>()),
                IntType::U8 => narrow::<UInt8Type>(v),
                IntType::U16 => narrow::<UInt16Type>(v),
                IntType::U32 => narrow::<UInt32Type>(v),
                IntType::U64 => narrow::<UInt64Type>(v),
            },
            (Column::Float32(v), _) => Arc::new(v.array::<Float32Type>()),
            (Column::Float64(v), _) => Arc::new(v.array::<Float64Type>()),
            (Column::Bool(mut v, mut nulls), _) => {
                Arc::new(BooleanArray::new(v.finish(), nulls.finish()))
            }
            (Column::Timestamp(v), Shape::Timestamp(unit, _)) => {
                // `with_data_type` carries the column's time zone.
                let data_type = field.data_type().clone();
                match unit {
                    TimeUnit::Second => {
                        Arc::new(v.array::<TimestampSecondType>().with_data_type(data_type))
                    }
                    TimeUnit::Millisecond => Arc::new(
                        v.array::<TimestampMillisecondType>()
                            .with_data_type(data_type),
                    ),
                    TimeUnit::Microsecond => Arc::new(
                        v.array::<TimestampMicrosecondType>()
                            .with_data_type(data_type),
                    ),
                    TimeUnit::Nanosecond => Arc::new(
                        v.array::<TimestampNanosecondType>()
                            .with_data_type(data_type),
                    ),
                }
            }
            (Column::Decimal128(v), Shape::Decimal128(precision, scale)) => Arc::new(
                v.array::<Decimal128Type>()
                    .with_precision_and_scale(*precision, *scale)
                    .ok()?,
            ),
            (Column::Date32(v), _) => Arc::new(v.array::<Date32Type>()),
            (Column::Struct(c), Shape::Struct(s)) => Arc::new(c.finish(s)?),
            (
                Column::List {
                    offsets,
                    items,
                    mut nulls,
                },
                Shape::List(item_field, item),
            ) => {
                let values = items.finish(item, item_field)?;
                let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
                Arc::new(
                    ListArray::try_new(item_field.clone(), offsets, values, nulls.finish()).ok()?,
                )
            }
            _ => return None,
        })
    }
}

/// The instant of `YYYY-MM-DDTHH:MM:SS[.fraction]Z` (1 to 9 fraction
/// digits, a valid date and time of day) as seconds since the epoch and
/// nanoseconds; `None` for any other text, which `string_to_datetime` then
/// reads. The common case of `string_to_datetime`, without its general parser.
fn utc_rfc3339(text: &[u8]) -> Option<(i64, u32)> {
    let (head, fraction) = text.split_first_chunk::<19>()?;
    let (b'Z', fraction) = fraction.split_last()? else {
        return None;
    };
    // The fixed layout at once: its punctuation, then its 14 digits, each
    // checked without a branch (a byte that is not a digit is over 9 after
    // the subtraction).
    let d = |i: usize| head[i].wrapping_sub(b'0');
    let digit = |i: usize| d(i) < 10;
    let layout = (head[4] == b'-')
        & (head[7] == b'-')
        & (head[10] == b'T')
        & (head[13] == b':')
        & (head[16] == b':')
        & digit(0)
        & digit(1)
        & digit(2)
        & digit(3)
        & digit(5)
        & digit(6)
        & digit(8)
        & digit(9)
        & digit(11)
        & digit(12)
        & digit(14)
        & digit(15)
        & digit(17)
        & digit(18);
    if !layout {
        return None;
    }
    let two = |i: usize| u32::from(d(i)) * 10 + u32::from(d(i + 1));
    let year = two(0) * 100 + two(2);
    let (month, day, hour, minute, second) = (two(5), two(8), two(11), two(14), two(17));
    let nanos = match fraction {
        [] => 0,
        [b'.', f @ ..] if (1..=9).contains(&f.len()) => {
            let n = f.iter().try_fold(0u32, |n, &b| {
                b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
            })?;
            n * 10u32.pow(9 - f.len() as u32)
        }
        _ => return None,
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    if year == 0 || day == 0 || day > month_days || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant).
    let (y, m) = (i64::from(year) - i64::from(month <= 2), i64::from(month));
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Some((secs, nanos))
}

/// Whether a number's text starts with a minus, and the rest of it.
fn split_sign(text: &[u8]) -> (bool, &[u8]) {
    match text {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, text),
    }
}

/// The value of an integer literal of at most 18 digits, which cannot
/// overflow; `None` for a longer one, which `lexical_core` then reads, and
/// for anything else.
fn short_integer(text: &[u8]) -> Option<i64> {
    let (negative, digits) = split_sign(text);
    if digits.len() > 18 {
        return None;
    }
    let n = digits.iter().try_fold(0i64, |n, &d| {
        d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
    })?;
    Some(if negative { -n } else { n })
}

/// Powers of ten that are exact in an `f64`.
const EXACT_POWERS_OF_TEN: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// The value of a number (`number` checked its grammar) without an
/// exponent and with at most 15 digits: its digits as an integer, exact in
/// an `f64` (under 2^53), divided by an exact power of ten. Both operands
/// being exact, the one rounding of the division gives the correctly
/// rounded value, as `lexical_core` gives it (Clinger's fast path). `None`
/// for any other number, which `lexical_core` then reads.
fn short_decimal(text: &[u8]) -> Option<f64> {
    let (negative, body) = split_sign(text);
    if body.len() > 16 {
        return None;
    }
    let mut mantissa = 0u64;
    let mut fraction = None;
    for (i, &b) in body.iter().enumerate() {
        match b {
            b'0'..=b'9' => mantissa = mantissa * 10 + u64::from(b - b'0'),
            b'.' => fraction = Some(body.len() - i - 1),
            _ => return None,
        }
    }
    let digits = body.len() - usize::from(fraction.is_some());
    if digits > 15 {
        return None;
    }
    let x = mantissa as f64 / EXACT_POWERS_OF_TEN[fraction.unwrap_or(0)];
    Some(if negative { -x } else { x })
}

/// An instant in a timestamp column's unit, as chrono's `timestamp_*`
/// methods give it (`None` when nanoseconds overflow 64 bits).
fn in_unit(secs: i64, nanos: u32, unit: TimeUnit) -> Option<i64> {
    let nanos = i64::from(nanos);
    match unit {
        TimeUnit::Second => Some(secs),
        TimeUnit::Millisecond => Some(secs * 1_000 + nanos / 1_000_000),
        TimeUnit::Microsecond => Some(secs * 1_000_000 + nanos / 1_000),
        TimeUnit::Nanosecond => secs.checked_mul(1_000_000_000)?.checked_add(nanos),
    }
}

/// An integer column from values already checked to be in its range.
fn narrow<T: ArrowPrimitiveType>(values: Values<i64>) -> ArrayRef
where
    T::Native: TryFrom<i64>,
{
    let Values { values, mut nulls } = values;
    let values: Vec<T::Native> = values
        .into_iter()
        .map(|v| T::Native::try_from(v).unwrap_or_default())
        .collect();
    Arc::new(PrimitiveArray::<T>::new(values.into(), nulls.finish()))
}

/// A payload being read.
struct Input<'a> {
    bytes: &'a [u8],
    at: usize,
    coerce_primitive: bool,
    /// Reused buffer for timestamp text and skipped strings.
    scratch: &'a mut Vec<u8>,
}

impl<'a> Input<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn rest(&self) -> &'a [u8] {
        &self.bytes[self.at..]
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        self.at += usize::from(hit);
        hit
    }

    fn whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.at += 1;
        }
    }

    fn literal(&mut self, text: &[u8]) -> Option<()> {
        starts_with(self.rest(), text).then(|| self.at += text.len())
    }

    /// A key whose opening quote was just read, without escapes (an escaped
    /// key is left to arrow_json).
    fn key(&mut self) -> Option<&'a [u8]> {
        let bytes = self.bytes;
        let rest = &bytes[self.at..];
        let end = text_end(rest)?;
        if rest[end] != b'"' {
            return None;
        }
        self.at += end + 1;
        Some(&rest[..end])
    }

    /// A string whose opening quote was just read, unescaped into `out`.
    /// Control characters are kept as they are, as arrow_json keeps them.
    fn string(&mut self, out: &mut Vec<u8>) -> Option<()> {
        loop {
            let rest = &self.bytes[self.at..];
            let end = text_end(rest)?;
            match rest.first_chunk::<16>() {
                // Most values are short: copy 16 bytes (no call to memcpy)
                // and keep the text's.
                Some(chunk) if end <= 16 => {
                    let at = out.len();
                    out.extend_from_slice(chunk);
                    out.truncate(at + end);
                }
                _ => out.extend_from_slice(&rest[..end]),
            }
            self.at += end + 1;
            if rest[end] == b'"' {
                return Some(());
            }
            let c = match self.next()? {
                b'"' => b'"',
                b'\\' => b'\\',
                b'/' => b'/',
                b'b' => 8,
                b'f' => 12,
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'u' => {
                    let c = self.unicode_escape()?;
                    out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                    continue;
                }
                _ => return None,
            };
            out.push(c);
        }
    }

    /// The character of a `\u` escape whose `\u` was just read; a surrogate
    /// pair counts as one escape.
    fn unicode_escape(&mut self) -> Option<char> {
        let high = self.hex4()?;
        if let Some(c) = char::from_u32(high.into()) {
            return Some(c);
        }
        if !(0xD800..=0xDBFF).contains(&high) || self.next()? != b'\\' || self.next()? != b'u' {
            return None;
        }
        let low = self.hex4()?;
        if !(0xDC00..=0xDFFF).contains(&low) {
            return None;
        }
        char::from_u32(((u32::from(high) - 0xD800) << 10) + (u32::from(low) - 0xDC00) + 0x1_0000)
    }

    fn hex4(&mut self) -> Option<u16> {
        let digits = self.bytes.get(self.at..self.at + 4)?;
        self.at += 4;
        digits.iter().try_fold(0u16, |acc, &d| {
            Some(acc << 4 | char::from(d).to_digit(16)? as u16)
        })
    }

    /// A number by the JSON grammar: its text, and whether it is an integer
    /// literal (no fraction, no exponent).
    fn number(&mut self) -> Option<(&'a [u8], bool)> {
        let bytes = self.bytes;
        let start = self.at;
        self.eat(b'-');
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        let mut integer = true;
        if self.eat(b'.') {
            integer = false;
            if !self.next()?.is_ascii_digit() {
                return None;
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            integer = false;
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if !self.next()?.is_ascii_digit() {
                return None;
            }
            self.digits();
        }
        // What follows (`1.5.5`, `1-2`) is checked by the caller, which
        // wants a `,` or a closing bracket.
        Some((&bytes[start..self.at], integer))
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
    }

    /// Skips the value of a field the schema does not list, checking that
    /// it is valid JSON as arrow_json does.
    fn skip_value(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => {
                self.at += 1;
                self.skip_string()
            }
            b'n' => self.literal(b"null"),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'-' | b'0'..=b'9' => self.number().map(|_| ()),
            open @ (b'{' | b'[') => {
                self.at += 1;
                let close = if open == b'{' { b'}' } else { b']' };
                self.whitespace();
                if self.eat(close) {
                    return Some(());
                }
                loop {
                    if open == b'{' {
                        if self.next()? != b'"' {
                            return None;
                        }
                        self.skip_string()?;
                        self.whitespace();
                        if self.next()? != b':' {
                            return None;
                        }
                        self.whitespace();
                    }
                    self.skip_value(depth + 1)?;
                    self.whitespace();
                    match self.next()? {
                        b',' => self.whitespace(),
                        b if b == close => return Some(()),
                        _ => return None,
                    }
                }
            }
            _ => None,
        }
    }

    /// Reads a string (the input is at its opening quote) and gives its
    /// unescaped text to `parse`. The text is valid UTF-8 (`text_end`
    /// checked it); parsers that only accept ASCII need not check it again.
    fn with_string<T>(&mut self, parse: impl FnOnce(&[u8]) -> Option<T>) -> Option<T> {
        self.at += 1;
        let rest = self.rest();
        let end = text_end(rest)?;
        if rest[end] == b'"' {
            // No escape: the text is the input's own bytes.
            self.at += end + 1;
            return parse(&rest[..end]);
        }
        let mut text = std::mem::take(self.scratch);
        text.clear();
        let parsed = self.string(&mut text).and_then(|()| parse(&text));
        *self.scratch = text;
        parsed
    }

    /// Skips a string whose quote was just read, checking its escapes.
    fn skip_string(&mut self) -> Option<()> {
        let mut text = std::mem::take(self.scratch);
        text.clear();
        let done = self.string(&mut text);
        *self.scratch = text;
        done
    }
}

/// Whether `hay` starts with `needle`. Keys are short: compared in one or
/// two overlapping words rather than by a call to `memcmp`.
fn starts_with(hay: &[u8], needle: &[u8]) -> bool {
    let n = needle.len();
    let Some(hay) = hay.get(..n) else {
        return false;
    };
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().unwrap_or([0; 8]));
    let half = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().unwrap_or([0; 4]));
    match n {
        8..=16 => word(hay, 0) == word(needle, 0) && word(hay, n - 8) == word(needle, n - 8),
        4..8 => half(hay, 0) == half(needle, 0) && half(hay, n - 4) == half(needle, n - 4),
        0..4 => hay.iter().zip(needle).all(|(a, b)| a == b),
        _ => hay == needle,
    }
}

/// Index of the first `"` or `\\` in `bytes` (where a string or key ends,
/// or has an escape), when the bytes before it are valid UTF-8.
fn text_end(bytes: &[u8]) -> Option<usize> {
    let (end, ascii) = quote_or_backslash(bytes)?;
    if !ascii {
        simdutf8::basic::from_utf8(&bytes[..end]).ok()?;
    }
    Some(end)
}

/// Index of the first `"` or `\\` in `bytes`, and whether the bytes before
/// it are known to be ASCII. Keys and most values are a few bytes long, so
/// the first 32 bytes are looked at eight at a time in a `u64` (memchr's
/// vector setup costs more than that for them); the rest of a longer text
/// goes to memchr, and is not known to be ASCII.
fn quote_or_backslash(bytes: &[u8]) -> Option<(usize, bool)> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const SHORT: usize = 32;
    let mut at = 0;
    let mut seen = 0u64;
    while let Some(word) = bytes.get(at..at + 8) {
        if at == SHORT {
            return memchr::memchr2(b'"', b'\\', &bytes[at..]).map(|i| (at + i, false));
        }
        let w = u64::from_le_bytes(word.try_into().ok()?);
        let quote = w ^ (ONES * u64::from(b'"'));
        let backslash = w ^ (ONES * u64::from(b'\\'));
        // The high bit of each zero byte of `quote` or `backslash` (bytes
        // after the first such byte may be flagged wrongly; the lowest
        // flag, the first byte, is always right).
        let hits = ((quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash))
            & HIGH;
        if hits != 0 {
            // The bytes below the first hit.
            seen |= w & ((hits & hits.wrapping_neg()) - 1);
            return Some((at + (hits.trailing_zeros() / 8) as usize, seen & HIGH == 0));
        }
        seen |= w;
        at += 8;
    }
    let mut ascii = seen & HIGH == 0;
    for (i, &c) in bytes[at..].iter().enumerate() {
        if c == b'"' || c == b'\\' {
            return Some((at + i, ascii));
        }
        ascii &= c.is_ascii();
    }
    None
}

#[cfg(test)]
mod tests;
