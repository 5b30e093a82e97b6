//! The Confluent wire format: a record value is a magic byte `0`, the
//! schema id as a 4-byte big-endian integer, then the serialized body
//! (Avro binary; for Protobuf, message indexes and then the message).

/// The magic byte every Confluent-framed payload starts with.
pub const MAGIC_BYTE: u8 = 0;

/// Length of the frame before the body: magic byte + schema id.
pub const HEADER_LEN: usize = 5;

/// A payload is not Confluent-framed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The record has no value (a tombstone or an empty payload).
    #[error(
        "empty payload: a Confluent-framed record needs a magic byte 0 and a 4-byte schema id"
    )]
    Empty,
    /// The first byte is not the magic byte `0`.
    #[error("no Confluent magic byte: first byte is 0x{found:02x}, expected 0x00 (was the record written by a Schema Registry serializer?)")]
    MagicByte {
        /// The byte found instead.
        found: u8,
    },
    /// Fewer than the 5 header bytes.
    #[error("too short for the Confluent wire format: {len} byte(s), the header alone is 5 (magic byte + 4-byte schema id)")]
    TooShort {
        /// Length of the payload.
        len: usize,
    },
}

/// Splits a Confluent-framed payload into its schema id and body.
///
/// ```
/// use tributary_formats::wire::{split_confluent, WireError};
///
/// assert_eq!(split_confluent(&[0, 0, 0, 1, 2, 42]), Ok((258, &[42][..])));
/// assert_eq!(split_confluent(&[0, 0, 1]), Err(WireError::TooShort { len: 3 }));
/// assert_eq!(split_confluent(b"{}"), Err(WireError::MagicByte { found: b'{' }));
/// ```
pub fn split_confluent(payload: &[u8]) -> Result<(u32, &[u8]), WireError> {
    match payload.first() {
        None => Err(WireError::Empty),
        Some(&b) if b != MAGIC_BYTE => Err(WireError::MagicByte { found: b }),
        Some(_) if payload.len() < HEADER_LEN => Err(WireError::TooShort { len: payload.len() }),
        Some(_) => {
            let id = u32::from_be_bytes([payload[1], payload[2], payload[3], payload[4]]);
            Ok((id, &payload[HEADER_LEN..]))
        }
    }
}

/// Frames `body` under schema `id` (the inverse of [`split_confluent`]).
pub fn frame_confluent(id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.push(MAGIC_BYTE);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_id_and_body() {
        let framed = frame_confluent(0x0102_0304, b"body");
        assert_eq!(framed[..5], [0, 1, 2, 3, 4]);
        assert_eq!(split_confluent(&framed), Ok((0x0102_0304, &b"body"[..])));
        // An empty body is framed correctly; whether it decodes is the format's business.
        assert_eq!(split_confluent(&[0, 0, 0, 0, 7]), Ok((7, &[][..])));
        assert_eq!(
            split_confluent(&frame_confluent(u32::MAX, &[])),
            Ok((u32::MAX, &[][..]))
        );
    }

    #[test]
    fn names_what_is_wrong() {
        assert_eq!(split_confluent(&[]), Err(WireError::Empty));
        for len in 1..5 {
            let short = vec![0u8; len];
            assert_eq!(split_confluent(&short), Err(WireError::TooShort { len }));
        }
        let e = split_confluent(&[1, 0, 0, 0, 7, 9]).unwrap_err();
        assert_eq!(e, WireError::MagicByte { found: 1 });
        assert!(
            e.to_string().contains("first byte is 0x01, expected 0x00"),
            "{e}"
        );
        assert!(WireError::TooShort { len: 3 }
            .to_string()
            .contains("3 byte(s)"));
    }
}
