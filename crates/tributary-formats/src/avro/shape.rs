//! An Avro writer schema as a walkable shape: parsed from the schema JSON
//! (with named types, namespaces and references to types defined in other
//! registered schemas), used to check a record body byte by byte before it
//! reaches the Arrow decoder. The check finds the exact end of the record,
//! so a truncated body, trailing bytes, a union or enum index out of range,
//! a bad length or invalid UTF-8 become a reject whose reason names the
//! field and the byte offset, and the decoder only ever sees whole, valid
//! records.

use std::collections::HashMap;

use serde_json::{Map, Value};

/// Deepest nesting a body may reach (guards recursive schemas against
/// hostile input).
const MAX_DEPTH: usize = 256;

/// One node of the schema graph; children are indexes into [`Shape::nodes`].
#[derive(Clone, Debug)]
enum Node {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    /// `string` with `logicalType: uuid`.
    Uuid,
    Record(Vec<(String, usize)>),
    Enum(usize),
    Array(usize),
    Map(usize),
    Fixed(usize),
    Union(Vec<usize>),
    /// Placeholder while a named type is being parsed (recursive reference).
    Pending,
}

/// A parsed writer schema.
#[derive(Clone, Debug)]
pub(crate) struct Shape {
    nodes: Vec<Node>,
    root: usize,
}

/// Why a body does not match its writer schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BodyError {
    /// The body ran out before the record was complete.
    pub truncated: bool,
    /// Field path (`items[2].price`), empty at the top level.
    pub path: String,
    /// Byte offset inside the Avro body (after the 5-byte Confluent header).
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.truncated {
            "truncated Avro body"
        } else {
            "invalid Avro body"
        };
        write!(f, "{kind}: ")?;
        if !self.path.is_empty() {
            write!(f, "field \"{}\": ", self.path)?;
        }
        write!(f, "{} at body byte {}", self.message, self.offset)
    }
}

impl Shape {
    /// Parses `schema` (Avro JSON). `named` holds the JSON of referenced
    /// schemas whose named types `schema` may use by name.
    pub(crate) fn parse(schema: &Value, named: &[Value]) -> Result<Self, String> {
        let mut p = Parser::default();
        for r in named {
            p.parse(r, "")?;
        }
        let root = p.parse(schema, "")?;
        if let Some(i) = p.nodes.iter().position(|n| matches!(n, Node::Pending)) {
            return Err(format!("named type #{i} is never completed"));
        }
        Ok(Self {
            nodes: p.nodes,
            root,
        })
    }

    /// Checks that `body` holds exactly one record of this schema.
    pub(crate) fn check(&self, body: &[u8]) -> Result<(), BodyError> {
        let mut c = Cursor {
            buf: body,
            pos: 0,
            path: Vec::new(),
        };
        self.skip(self.root, &mut c, 0)?;
        if c.pos != body.len() {
            return Err(BodyError {
                truncated: false,
                path: String::new(),
                offset: c.pos,
                message: format!(
                    "{} unexpected byte(s) after the end of the record ({} bytes)",
                    body.len() - c.pos,
                    c.pos
                ),
            });
        }
        Ok(())
    }

    fn skip(&self, node: usize, c: &mut Cursor<'_>, depth: usize) -> Result<(), BodyError> {
        if depth > MAX_DEPTH {
            return Err(c.invalid(format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        match &self.nodes[node] {
            Node::Null => Ok(()),
            Node::Boolean => match c.take(1, "boolean")?[0] {
                0 | 1 => Ok(()),
                b => Err(c.invalid_at(c.pos - 1, format!("boolean byte is 0x{b:02x}, not 0 or 1"))),
            },
            Node::Int => {
                let start = c.pos;
                let v = c.long("int")?;
                if i32::try_from(v).is_err() {
                    return Err(c.invalid_at(start, format!("int value {v} does not fit 32 bits")));
                }
                Ok(())
            }
            Node::Long => c.long("long").map(drop),
            Node::Float => c.take(4, "float").map(drop),
            Node::Double => c.take(8, "double").map(drop),
            Node::Bytes => c.sized("bytes").map(drop),
            Node::String => {
                let start = c.pos;
                let s = c.sized("string")?;
                utf8(c, start, s).map(drop)
            }
            Node::Uuid => {
                let start = c.pos;
                let s = c.sized("uuid string")?;
                let s = utf8(c, start, s)?;
                uuid::Uuid::try_parse(s).map(drop).map_err(|e| {
                    c.invalid_at(start, format!("uuid {:?} does not parse: {e}", cut(s)))
                })
            }
            Node::Record(fields) => {
                for (name, child) in fields {
                    c.path.push(Seg::Field(name.clone()));
                    self.skip(*child, c, depth + 1)?;
                    c.path.pop();
                }
                Ok(())
            }
            Node::Enum(symbols) => {
                let start = c.pos;
                let v = c.long("enum index")?;
                if v < 0 || v >= *symbols as i64 {
                    return Err(c.invalid_at(
                        start,
                        format!("enum index {v} is out of range ({symbols} symbols)"),
                    ));
                }
                Ok(())
            }
            Node::Array(items) => {
                let mut index = 0usize;
                self.blocks(c, "array", |shape, c| {
                    c.path.push(Seg::Item(index));
                    index += 1;
                    shape.skip(*items, c, depth + 1)?;
                    c.path.pop();
                    Ok(())
                })
            }
            Node::Map(values) => self.blocks(c, "map", |shape, c| {
                let start = c.pos;
                let key = c.sized("map key")?;
                let key = utf8(c, start, key)?.to_string();
                c.path.push(Seg::Key(key));
                shape.skip(*values, c, depth + 1)?;
                c.path.pop();
                Ok(())
            }),
            Node::Fixed(size) => c.take(*size, "fixed").map(drop),
            Node::Union(branches) => {
                let start = c.pos;
                let v = c.long("union branch index")?;
                let Some(branch) = usize::try_from(v).ok().and_then(|i| branches.get(i)) else {
                    return Err(c.invalid_at(
                        start,
                        format!(
                            "union branch index {v} is out of range ({} branches)",
                            branches.len()
                        ),
                    ));
                };
                self.skip(*branch, c, depth + 1)
            }
            Node::Pending => Err(c.invalid("schema refers to an unfinished named type".into())),
        }
    }

    /// Array and map encoding: blocks of `count` items, a negative count
    /// followed by the block's byte size, ended by a zero count.
    fn blocks<'a>(
        &self,
        c: &mut Cursor<'a>,
        what: &str,
        mut item: impl FnMut(&Self, &mut Cursor<'a>) -> Result<(), BodyError>,
    ) -> Result<(), BodyError> {
        loop {
            let start = c.pos;
            let mut count = c.long(what)?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                count = count.checked_neg().ok_or_else(|| {
                    c.invalid_at(start, format!("{what} block count {count} is invalid"))
                })?;
                let size_at = c.pos;
                let size = c.long(what)?;
                if size < 0 {
                    return Err(
                        c.invalid_at(size_at, format!("{what} block size {size} is negative"))
                    );
                }
            }
            // Each item takes at least one byte unless the items are empty
            // (nulls, zero-field records); bound the count by the bytes left
            // only to reject absurd counts early.
            if count as u64 > (c.buf.len() - c.pos) as u64 * 8 + 1_000_000 {
                return Err(c.truncated(format!(
                    "{what} block announces {count} items, more than the body can hold"
                )));
            }
            for _ in 0..count {
                item(self, c)?;
            }
        }
    }
}

fn utf8<'a>(c: &Cursor<'_>, start: usize, bytes: &'a [u8]) -> Result<&'a str, BodyError> {
    std::str::from_utf8(bytes).map_err(|e| {
        c.invalid_at(
            start,
            format!(
                "string is not valid UTF-8 (invalid byte at position {})",
                e.valid_up_to()
            ),
        )
    })
}

fn cut(s: &str) -> String {
    s.chars().take(40).collect()
}

enum Seg {
    Field(String),
    Item(usize),
    Key(String),
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    path: Vec<Seg>,
}

impl<'a> Cursor<'a> {
    fn path(&self) -> String {
        let mut out = String::new();
        for seg in &self.path {
            match seg {
                Seg::Field(name) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(name);
                }
                Seg::Item(i) => out.push_str(&format!("[{i}]")),
                Seg::Key(k) => out.push_str(&format!("[{:?}]", cut(k))),
            }
        }
        out
    }

    fn truncated(&self, message: String) -> BodyError {
        BodyError {
            truncated: true,
            path: self.path(),
            offset: self.pos,
            message,
        }
    }

    fn invalid(&self, message: String) -> BodyError {
        self.invalid_at(self.pos, message)
    }

    fn invalid_at(&self, offset: usize, message: String) -> BodyError {
        BodyError {
            truncated: false,
            path: self.path(),
            offset,
            message,
        }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], BodyError> {
        let left = self.buf.len() - self.pos;
        if n > left {
            return Err(self.truncated(format!(
                "{what} needs {n} byte(s), {left} left of {}",
                self.buf.len()
            )));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// A zig-zag varint long.
    fn long(&mut self, what: &str) -> Result<i64, BodyError> {
        let start = self.pos;
        let mut value: u64 = 0;
        for shift in (0..70).step_by(7) {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(BodyError {
                    truncated: true,
                    path: self.path(),
                    offset: start,
                    message: format!(
                        "{what} (a varint) is cut off: {} byte(s) left of {}",
                        self.buf.len() - start,
                        self.buf.len()
                    ),
                });
            };
            self.pos += 1;
            if shift == 63 && b > 1 {
                break;
            }
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err(self.invalid_at(start, format!("{what} is a varint longer than 64 bits")))
    }

    /// A long length followed by that many bytes.
    fn sized(&mut self, what: &str) -> Result<&'a [u8], BodyError> {
        let start = self.pos;
        let len = self.long(what)?;
        let Ok(len) = usize::try_from(len) else {
            return Err(self.invalid_at(start, format!("{what} length {len} is negative")));
        };
        self.take(len, what)
    }
}

/// Builds the node graph, resolving names the way the Avro specification
/// says (a dotted name is full; otherwise the enclosing namespace applies).
#[derive(Default)]
struct Parser {
    nodes: Vec<Node>,
    names: HashMap<String, usize>,
}

impl Parser {
    fn push(&mut self, node: Node) -> usize {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    fn parse(&mut self, v: &Value, namespace: &str) -> Result<usize, String> {
        match v {
            Value::String(name) => self.named_or_primitive(name, namespace),
            Value::Array(branches) => {
                let mut out = Vec::with_capacity(branches.len());
                for b in branches {
                    out.push(self.parse(b, namespace)?);
                }
                Ok(self.push(Node::Union(out)))
            }
            Value::Object(o) => self.complex(o, namespace),
            other => Err(format!("{other} is not an Avro type")),
        }
    }

    fn named_or_primitive(&mut self, name: &str, namespace: &str) -> Result<usize, String> {
        let node = match name {
            "null" => Node::Null,
            "boolean" => Node::Boolean,
            "int" => Node::Int,
            "long" => Node::Long,
            "float" => Node::Float,
            "double" => Node::Double,
            "bytes" => Node::Bytes,
            "string" => Node::String,
            _ => {
                let full = full_name(name, namespace);
                return self
                    .names
                    .get(&full)
                    .or_else(|| self.names.get(name))
                    .copied()
                    .ok_or_else(|| format!("unknown type {name:?} (not defined before its use, nor in a referenced schema)"));
            }
        };
        Ok(self.push(node))
    }

    fn complex(&mut self, o: &Map<String, Value>, namespace: &str) -> Result<usize, String> {
        let Some(t) = o.get("type") else {
            return Err("a type object has no \"type\"".into());
        };
        let logical = o.get("logicalType").and_then(Value::as_str);
        let kind = match t {
            Value::String(s) => s.as_str(),
            // {"type": {...}} or {"type": [...]}: a wrapped type.
            nested => return self.parse(nested, namespace),
        };
        match kind {
            "record" | "error" | "enum" | "fixed" => {
                let name = o
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("a {kind} has no \"name\""))?;
                let ns = o.get("namespace").and_then(Value::as_str);
                let full = match ns {
                    Some(ns) if !name.contains('.') && !ns.is_empty() => format!("{ns}.{name}"),
                    _ => full_name(name, namespace),
                };
                let inner_ns = full.rsplit_once('.').map_or("", |(ns, _)| ns).to_string();
                let index = self.push(Node::Pending);
                self.names.insert(full.clone(), index);
                let node = match kind {
                    "enum" => {
                        let symbols = o
                            .get("symbols")
                            .and_then(Value::as_array)
                            .ok_or_else(|| format!("enum {full} has no \"symbols\""))?;
                        Node::Enum(symbols.len())
                    }
                    "fixed" => {
                        let size = o
                            .get("size")
                            .and_then(Value::as_u64)
                            .ok_or_else(|| format!("fixed {full} has no \"size\""))?;
                        Node::Fixed(size as usize)
                    }
                    _ => {
                        let fields = o
                            .get("fields")
                            .and_then(Value::as_array)
                            .ok_or_else(|| format!("record {full} has no \"fields\""))?;
                        let mut out = Vec::with_capacity(fields.len());
                        for f in fields {
                            let fname = f.get("name").and_then(Value::as_str).ok_or_else(|| {
                                format!("a field of record {full} has no \"name\"")
                            })?;
                            let ftype = f.get("type").ok_or_else(|| {
                                format!("field {fname:?} of record {full} has no \"type\"")
                            })?;
                            let child = self
                                .parse(ftype, &inner_ns)
                                .map_err(|e| format!("field {fname:?} of record {full}: {e}"))?;
                            out.push((fname.to_string(), child));
                        }
                        Node::Record(out)
                    }
                };
                self.nodes[index] = node;
                Ok(index)
            }
            "array" => {
                let items = o.get("items").ok_or("an array has no \"items\"")?;
                let child = self.parse(items, namespace)?;
                Ok(self.push(Node::Array(child)))
            }
            "map" => {
                let values = o.get("values").ok_or("a map has no \"values\"")?;
                let child = self.parse(values, namespace)?;
                Ok(self.push(Node::Map(child)))
            }
            "string" if logical == Some("uuid") => Ok(self.push(Node::Uuid)),
            primitive => self.named_or_primitive(primitive, namespace),
        }
    }
}

fn full_name(name: &str, namespace: &str) -> String {
    if name.contains('.') || namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}.{name}")
    }
}

/// Inlines referenced named types into `schema`: the first use of each
/// referenced full name (by its reference `name`) is replaced by the
/// referenced schema's JSON, so the result stands alone (later uses stay
/// names, defined by then). `references` are (name, schema JSON) in an order
/// where a schema comes after the ones it uses.
pub(crate) fn inline_references(schema: &Value, references: &[(String, Value)]) -> Value {
    // Resolve the references among themselves first.
    let mut resolved: Vec<(String, Value)> = Vec::with_capacity(references.len());
    for (name, json) in references {
        let mut defined = Vec::new();
        let v = inline(json, &resolved, &mut defined);
        resolved.push((name.clone(), v));
    }
    let mut defined = Vec::new();
    inline(schema, &resolved, &mut defined)
}

fn inline(v: &Value, refs: &[(String, Value)], defined: &mut Vec<String>) -> Value {
    match v {
        Value::String(s) => {
            if !defined.contains(s) {
                if let Some((_, json)) = refs.iter().find(|(n, _)| n == s) {
                    defined.push(s.clone());
                    return inline(json, refs, defined);
                }
            }
            v.clone()
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|i| inline(i, refs, defined)).collect())
        }
        Value::Object(o) => {
            let mut out = Map::new();
            for (k, val) in o {
                let val = match k.as_str() {
                    "type" | "items" | "values" => inline(val, refs, defined),
                    "fields" => match val {
                        Value::Array(fields) => Value::Array(
                            fields
                                .iter()
                                .map(|f| match f {
                                    Value::Object(fo) => {
                                        let mut fo = fo.clone();
                                        if let Some(t) = fo.get("type").cloned() {
                                            fo.insert("type".into(), inline(&t, refs, defined));
                                        }
                                        Value::Object(fo)
                                    }
                                    other => other.clone(),
                                })
                                .collect(),
                        ),
                        other => other.clone(),
                    },
                    _ => val.clone(),
                };
                out.insert(k.clone(), val);
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn zz(v: i64) -> Vec<u8> {
        let mut n = ((v << 1) ^ (v >> 63)) as u64;
        let mut out = Vec::new();
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    }

    #[test]
    fn finds_the_end_and_names_the_failing_field() {
        let schema = json!({"type": "record", "name": "r", "namespace": "shop", "fields": [
            {"name": "id", "type": "long"},
            {"name": "tags", "type": {"type": "array", "items": "string"}},
            {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]}},
            {"name": "again", "type": ["null", "shop.Kind"]},
            {"name": "price", "type": "double"}
        ]});
        let shape = Shape::parse(&schema, &[]).unwrap();
        let mut body = zz(7);
        body.extend(zz(1));
        body.extend(zz(2));
        body.extend(b"hi");
        body.extend(zz(0));
        body.extend(zz(1));
        body.extend(zz(1));
        body.extend(zz(0));
        body.extend(1.5f64.to_le_bytes());
        shape.check(&body).unwrap();

        let e = shape.check(&body[..body.len() - 3]).unwrap_err();
        assert!(e.truncated);
        assert_eq!(e.path, "price");
        assert_eq!(
            e.to_string(),
            format!("truncated Avro body: field \"price\": double needs 8 byte(s), 5 left of {} at body byte {}", body.len() - 3, body.len() - 8)
        );
        let mut extra = body.clone();
        extra.push(0);
        let e = shape.check(&extra).unwrap_err();
        assert!(
            e.to_string()
                .contains("1 unexpected byte(s) after the end of the record"),
            "{e}"
        );

        let mut bad_enum = zz(7);
        bad_enum.extend(zz(0));
        bad_enum.extend(zz(5));
        let e = shape.check(&bad_enum).unwrap_err();
        assert_eq!(e.path, "kind");
        assert!(
            e.message
                .contains("enum index 5 is out of range (2 symbols)"),
            "{e}"
        );

        let mut bad_utf8 = zz(7);
        bad_utf8.extend(zz(1));
        bad_utf8.extend(zz(1));
        bad_utf8.push(0xff);
        let e = shape.check(&bad_utf8).unwrap_err();
        assert_eq!(e.path, "tags[0]");
        assert!(e.message.contains("not valid UTF-8"), "{e}");
    }

    #[test]
    fn resolves_references_and_recursion() {
        let money = json!({"type": "record", "name": "Money", "namespace": "common",
            "fields": [{"name": "cents", "type": "long"}]});
        let order = json!({"type": "record", "name": "Order", "fields": [
            {"name": "total", "type": "common.Money"},
            {"name": "fee", "type": "common.Money"}
        ]});
        assert!(Shape::parse(&order, &[])
            .unwrap_err()
            .contains("unknown type \"common.Money\""));
        let inlined = inline_references(&order, &[("common.Money".into(), money.clone())]);
        assert_eq!(inlined["fields"][0]["type"], money);
        assert_eq!(inlined["fields"][1]["type"], "common.Money");
        let shape = Shape::parse(&inlined, &[]).unwrap();
        shape.check(&[2, 4]).unwrap();

        let list = json!({"type": "record", "name": "Node", "fields": [
            {"name": "v", "type": "int"}, {"name": "next", "type": ["null", "Node"]}]});
        let shape = Shape::parse(&list, &[]).unwrap();
        shape.check(&[2, 2, 4, 0]).unwrap();
        let e = shape.check(&[2, 2, 4, 4]).unwrap_err();
        assert_eq!(e.path, "next.next");
        assert!(
            e.message.contains("union branch index 2 is out of range"),
            "{e}"
        );
    }

    #[test]
    fn rejects_bad_varints_and_lengths() {
        let shape = Shape::parse(&json!("string"), &[]).unwrap();
        let e = shape.check(&[0x80, 0x80]).unwrap_err();
        assert!(e.truncated && e.message.contains("cut off"), "{e}");
        let e = shape.check(&zz(-3)).unwrap_err();
        assert!(e.message.contains("length -3 is negative"), "{e}");
        let shape = Shape::parse(&json!("int"), &[]).unwrap();
        let e = shape.check(&zz(1 << 40)).unwrap_err();
        assert!(e.message.contains("does not fit 32 bits"), "{e}");
        let e = shape.check(&[0xff; 11]).unwrap_err();
        assert!(e.message.contains("longer than 64 bits"), "{e}");
    }
}
