//! Protobuf wire-format helpers: the message-index array of the Confluent
//! framing, and a walk over an encoded message that says precisely where
//! and why it does not fit its schema.

use prost_reflect::{Kind, MessageDescriptor};

/// Most message indexes accepted in a Confluent header (nesting depth).
const MAX_INDEXES: i64 = 64;

/// Reads the Confluent message-index array at the start of `body` (what
/// follows the magic byte and the schema id): a zig-zag varint count, then
/// that many zig-zag varint indexes; a count of 0 (the single byte `0`)
/// means `[0]`, the first message of the schema. Returns the indexes and the
/// encoded message after them.
pub(crate) fn message_indexes(body: &[u8]) -> Result<(Vec<usize>, &[u8]), String> {
    let mut pos = 0;
    let count = zigzag(varint(body, &mut pos).ok_or_else(|| {
        "Confluent protobuf header: truncated message-index count after the schema id".to_string()
    })?);
    if count == 0 {
        return Ok((vec![0], &body[pos..]));
    }
    if !(1..=MAX_INDEXES).contains(&count) {
        return Err(format!(
            "Confluent protobuf header: invalid message-index count {count} (expected 0 to {MAX_INDEXES})"
        ));
    }
    let mut indexes = Vec::with_capacity(count as usize);
    for k in 0..count {
        let at = pos;
        let index = varint(body, &mut pos).map(zigzag).ok_or_else(|| {
            format!("Confluent protobuf header: truncated message index {k} at byte {at}")
        })?;
        let index = usize::try_from(index).map_err(|_| {
            format!("Confluent protobuf header: negative message index {index} at position {k}")
        })?;
        indexes.push(index);
    }
    Ok((indexes, &body[pos..]))
}

/// Encodes a message-index array the way Confluent serializers do (`[0]`
/// as the single byte `0`). Used by tests and the test kit.
pub fn encode_message_indexes(indexes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    if indexes == [0] {
        out.push(0);
        return out;
    }
    put_varint(&mut out, zigzag_encode(indexes.len() as i64));
    for &i in indexes {
        put_varint(&mut out, zigzag_encode(i as i64));
    }
    out
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag_encode(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn zigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Reads a base-128 varint at `*pos`, advancing it. `None` when truncated
/// or longer than 10 bytes.
fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in 0..10 {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << (7 * shift);
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}

/// Wire type names as the protobuf encoding guide writes them.
fn wire_name(wire_type: u64) -> &'static str {
    match wire_type {
        0 => "VARINT",
        1 => "I64",
        2 => "LEN",
        3 => "SGROUP",
        4 => "EGROUP",
        5 => "I32",
        _ => "invalid",
    }
}

/// The wire type a field of this kind is written with (not packed).
fn expected_wire(kind: &Kind, is_group: bool) -> u64 {
    match kind {
        Kind::Double | Kind::Fixed64 | Kind::Sfixed64 => 1,
        Kind::Float | Kind::Fixed32 | Kind::Sfixed32 => 5,
        Kind::String | Kind::Bytes => 2,
        Kind::Message(_) if is_group => 3,
        Kind::Message(_) => 2,
        _ => 0,
    }
}

fn kind_name(kind: &Kind) -> String {
    match kind {
        Kind::Double => "double".into(),
        Kind::Float => "float".into(),
        Kind::Int32 => "int32".into(),
        Kind::Int64 => "int64".into(),
        Kind::Uint32 => "uint32".into(),
        Kind::Uint64 => "uint64".into(),
        Kind::Sint32 => "sint32".into(),
        Kind::Sint64 => "sint64".into(),
        Kind::Fixed32 => "fixed32".into(),
        Kind::Fixed64 => "fixed64".into(),
        Kind::Sfixed32 => "sfixed32".into(),
        Kind::Sfixed64 => "sfixed64".into(),
        Kind::Bool => "bool".into(),
        Kind::String => "string".into(),
        Kind::Bytes => "bytes".into(),
        Kind::Message(m) => format!("message {}", m.full_name()),
        Kind::Enum(e) => format!("enum {}", e.full_name()),
    }
}

/// Walks an encoded message that failed to decode and says where it goes
/// wrong: `field "customer.id" (number 3) at byte 12: wire type LEN, but the
/// schema declares int64 (VARINT)`. Offsets count from the first byte of the
/// encoded message. `None` when the walk finds nothing wrong (then the
/// decoder's own message is all there is).
pub(crate) fn diagnose(descriptor: &MessageDescriptor, buf: &[u8]) -> Option<String> {
    walk(descriptor, buf, 0, "", 0)
}

fn walk(
    descriptor: &MessageDescriptor,
    buf: &[u8],
    base: usize,
    path: &str,
    depth: usize,
) -> Option<String> {
    if depth > 100 {
        return None;
    }
    let mut pos = 0;
    while pos < buf.len() {
        let start = base + pos;
        let Some(key) = varint(buf, &mut pos) else {
            return Some(format!("truncated or invalid field key at byte {start}"));
        };
        let (number, wire_type) = (key >> 3, key & 7);
        if number == 0 || number > u64::from(u32::MAX >> 3) {
            return Some(format!("invalid field number {number} at byte {start}"));
        }
        if wire_type > 5 {
            return Some(format!(
                "invalid wire type value {wire_type} (field number {number}) at byte {start}"
            ));
        }
        let field = u32::try_from(number)
            .ok()
            .and_then(|n| descriptor.get_field(n));
        let label = match &field {
            Some(f) => format!("field \"{path}{}\" (number {number})", f.name()),
            None => format!("unknown field number {number}"),
        };
        if let Some(f) = &field {
            let kind = f.kind();
            let expected = expected_wire(&kind, f.is_group());
            let packed = f.is_list() && wire_type == 2 && expected != 2 && expected != 3;
            if wire_type != expected && !packed {
                return Some(format!(
                    "{label} at byte {start}: wire type {}, but the schema declares {} ({})",
                    wire_name(wire_type),
                    kind_name(&kind),
                    wire_name(expected)
                ));
            }
        }
        let left = buf.len() - pos;
        match wire_type {
            0 => {
                if varint(buf, &mut pos).is_none() {
                    return Some(format!("{label} at byte {start}: truncated varint"));
                }
            }
            1 | 5 => {
                let width = if wire_type == 1 { 8 } else { 4 };
                if left < width {
                    return Some(format!(
                        "{label} at byte {start}: truncated {}-bit value ({left} of {width} bytes)",
                        width * 8
                    ));
                }
                pos += width;
            }
            2 => {
                let Some(len) = varint(buf, &mut pos) else {
                    return Some(format!("{label} at byte {start}: truncated length"));
                };
                let left = buf.len() - pos;
                let Some(len) = usize::try_from(len).ok().filter(|&l| l <= left) else {
                    return Some(format!(
                        "{label} at byte {start}: length {len} runs past the end of the \
                         message ({left} bytes left)"
                    ));
                };
                let value = &buf[pos..pos + len];
                if let Some(f) = &field {
                    match f.kind() {
                        Kind::Message(m) if !f.is_group() => {
                            let inner = format!("{path}{}.", f.name());
                            if let Some(reason) = walk(&m, value, base + pos, &inner, depth + 1) {
                                return Some(reason);
                            }
                        }
                        Kind::String if std::str::from_utf8(value).is_err() => {
                            return Some(format!(
                                "{label} at byte {start}: invalid UTF-8 in a string"
                            ));
                        }
                        _ => {}
                    }
                }
                pos += len;
            }
            // Groups (proto2, deprecated): leave them to the decoder.
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_indexes_round_trip() {
        for indexes in [vec![0], vec![1], vec![0, 2], vec![3, 1, 4]] {
            let mut framed = encode_message_indexes(&indexes);
            framed.extend_from_slice(b"rest");
            let (read, rest) = message_indexes(&framed).unwrap();
            assert_eq!(read, indexes);
            assert_eq!(rest, b"rest");
        }
        // The shortened form of [0] is one zero byte.
        assert_eq!(encode_message_indexes(&[0]), [0]);
        // [1] is count 1 (zig-zag 2), index 1 (zig-zag 2).
        assert_eq!(encode_message_indexes(&[1]), [2, 2]);
    }

    #[test]
    fn bad_message_indexes_are_named() {
        assert!(message_indexes(&[])
            .unwrap_err()
            .contains("truncated message-index count"));
        // Count 2, one index only.
        assert!(message_indexes(&[4, 2])
            .unwrap_err()
            .contains("truncated message index 1"));
        // Count -1.
        assert!(message_indexes(&[1])
            .unwrap_err()
            .contains("invalid message-index count -1"));
        // Count 1, index -1.
        assert!(message_indexes(&[2, 1])
            .unwrap_err()
            .contains("negative message index -1"));
    }

    #[test]
    fn varints_and_zigzag() {
        let mut pos = 0;
        assert_eq!(varint(&[0x96, 0x01], &mut pos), Some(150));
        assert_eq!(pos, 2);
        assert_eq!(varint(&[0x96], &mut 0), None);
        assert_eq!(varint(&[0xff; 11], &mut 0), None);
        for v in [0i64, -1, 1, -64, 63, i64::MIN, i64::MAX] {
            assert_eq!(zigzag(zigzag_encode(v)), v);
        }
    }
}
