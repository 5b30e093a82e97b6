//! The row count of a Parquet file, read from its footer.
//!
//! A Parquet file ends with its metadata (`FileMetaData`, Thrift compact
//! protocol), the metadata's length and the magic `PAR1`. Only field 3 of
//! `FileMetaData`, `num_rows`, is needed to check a data file against its
//! commit record, so this reads just enough of the compact protocol to skip
//! the fields before it: no Parquet implementation is needed in the lake.

const MAGIC: &[u8] = b"PAR1";
const ENCRYPTED_MAGIC: &[u8] = b"PARE";
/// `FileMetaData.num_rows`.
const NUM_ROWS_FIELD: i16 = 3;
/// Deepest nesting of structs and collections followed before giving up.
const MAX_DEPTH: u32 = 64;

// Thrift compact protocol type ids.
const BOOL_TRUE: u8 = 1;
const BOOL_FALSE: u8 = 2;
const BYTE: u8 = 3;
const I16: u8 = 4;
const I32: u8 = 5;
const I64: u8 = 6;
const DOUBLE: u8 = 7;
const BINARY: u8 = 8;
const LIST: u8 = 9;
const SET: u8 = 10;
const MAP: u8 = 11;
const STRUCT: u8 = 12;

/// The number of rows a Parquet file's footer declares, or why it cannot be
/// read.
pub(crate) fn num_rows(file: &[u8]) -> Result<u64, String> {
    if file.len() < 12 {
        return Err(format!(
            "{} bytes is too short for a Parquet file",
            file.len()
        ));
    }
    if &file[..4] != MAGIC {
        return Err("does not start with the Parquet magic PAR1".into());
    }
    let end = file.len() - 8;
    let tail = &file[end..];
    if &tail[4..] == ENCRYPTED_MAGIC {
        return Err("the Parquet footer is encrypted".into());
    }
    if &tail[4..] != MAGIC {
        return Err("does not end with the Parquet magic PAR1".into());
    }
    let len = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]) as usize;
    if len > end - 4 {
        return Err(format!(
            "footer length {len} exceeds the file ({} bytes)",
            file.len()
        ));
    }
    let mut reader = Reader {
        buf: &file[end - len..end],
        pos: 0,
    };
    reader
        .num_rows()
        .map_err(|e| format!("cannot read the Parquet footer: {e}"))
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn byte(&mut self) -> Result<u8, String> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| format!("truncated at byte {}", self.pos))?;
        self.pos += 1;
        Ok(b)
    }

    fn skip(&mut self, n: u64) -> Result<(), String> {
        if n > self.remaining() as u64 {
            return Err(format!(
                "a value of {n} bytes at byte {} runs past the footer",
                self.pos
            ));
        }
        self.pos += n as usize;
        Ok(())
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(format!("varint longer than 10 bytes at byte {}", self.pos))
    }

    /// The next field's id and type, `None` at the end of the struct.
    fn field_header(&mut self, last_id: &mut i16) -> Result<Option<(i16, u8)>, String> {
        let b = self.byte()?;
        if b == 0 {
            return Ok(None);
        }
        let delta = i16::from(b >> 4);
        let id = if delta == 0 {
            i16::try_from(zigzag(self.varint()?))
                .map_err(|_| format!("field id out of range at byte {}", self.pos))?
        } else {
            last_id.wrapping_add(delta)
        };
        *last_id = id;
        Ok(Some((id, b & 0x0f)))
    }

    fn num_rows(&mut self) -> Result<u64, String> {
        let mut last = 0;
        while let Some((id, ty)) = self.field_header(&mut last)? {
            if id == NUM_ROWS_FIELD {
                if ty != I64 {
                    return Err(format!("num_rows has Thrift type {ty}, not i64"));
                }
                let rows = zigzag(self.varint()?);
                return u64::try_from(rows).map_err(|_| format!("num_rows is negative ({rows})"));
            }
            self.skip_field(ty, 1)?;
        }
        Err("FileMetaData has no num_rows".into())
    }

    /// Skips a struct field's value (a boolean field's value is in its header).
    fn skip_field(&mut self, ty: u8, depth: u32) -> Result<(), String> {
        match ty {
            BOOL_TRUE | BOOL_FALSE => Ok(()),
            _ => self.skip_value(ty, depth),
        }
    }

    /// Skips a value of type `ty` (inside a collection a boolean takes a byte).
    fn skip_value(&mut self, ty: u8, depth: u32) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        match ty {
            BOOL_TRUE | BOOL_FALSE | BYTE => self.skip(1),
            I16 | I32 | I64 => self.varint().map(drop),
            DOUBLE => self.skip(8),
            BINARY => {
                let n = self.varint()?;
                self.skip(n)
            }
            LIST | SET => {
                let header = self.byte()?;
                let mut n = u64::from(header >> 4);
                if n == 15 {
                    n = self.varint()?;
                }
                // Every element takes at least one byte.
                if n > self.remaining() as u64 {
                    return Err(format!("a list of {n} elements runs past the footer"));
                }
                for _ in 0..n {
                    self.skip_value(header & 0x0f, depth + 1)?;
                }
                Ok(())
            }
            MAP => {
                let n = self.varint()?;
                if n == 0 {
                    return Ok(());
                }
                let types = self.byte()?;
                if n > self.remaining() as u64 {
                    return Err(format!("a map of {n} entries runs past the footer"));
                }
                for _ in 0..n {
                    self.skip_value(types >> 4, depth + 1)?;
                    self.skip_value(types & 0x0f, depth + 1)?;
                }
                Ok(())
            }
            STRUCT => {
                let mut last = 0;
                while let Some((_, ty)) = self.field_header(&mut last)? {
                    self.skip_field(ty, depth + 1)?;
                }
                Ok(())
            }
            other => Err(format!("unknown Thrift type {other} at byte {}", self.pos)),
        }
    }
}

fn zigzag(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by pyarrow 26 (`parquet-cpp-arrow`): 3 rows in 2 row groups,
    /// columns `id: int64` and `name: string`, uncompressed.
    const PYARROW_THREE_ROWS: &[&str] = &[
        "504152311504152015204c15041500120000010000000000000002000000000000001500151215122c15041510150615",
        "061c18080200000000000000180801000000000000001600280802000000000000001808010000000000000011110000",
        "000200000004010103021504151415144c15041500120000010000006101000000621500151215122c15041510150615",
        "061c360028016218016111110000000200000004010103021504151015104c1502150012000003000000000000001500",
        "151215122c15021510150615061c18080300000000000000180803000000000000001600280803000000000000001808",
        "030000000000000011110000000200000002010102001504150015004c150015001200001500150e150e2c1502151015",
        "0615061c3602000000020000000200001504193c35001806736368656d61150400150425021802696400150c25021804",
        "6e616d6525004c1c0000001606192c192c26001c1504193500061019180269641500160416cc0116cc01264426081c18",
        "0802000000000000001808010000000000000016002808020000000000000018080100000000000000111100192c1504",
        "1500150200150015101502003c29061926000400000026001c150c19350006101918046e616d6515001604167c167c26",
        "840226d4011c3600280162180161111100192c15041500150200150015101502003c160419061926000400000016c802",
        "1604260816c80200192c26001c1504193500061019180269641500160216bc0116bc0126fc0226d0021c180803000000",
        "000000001808030000000000000016002808030000000000000018080300000000000000111100192c15041500150200",
        "150015101502003c29061926000200000026001c150c19350006101918046e616d65150016021654165426a804268c04",
        "1c360200192c15041500150200150015101502003c1600190619260200000000169002160226d0021690020028207061",
        "72717565742d6370702d6172726f772076657273696f6e2032362e302e31192c1c00001c000000c701000050415231",
    ];

    fn unhex(parts: &[&str]) -> Vec<u8> {
        let hex: String = parts.concat();
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    /// A Parquet file around a hand-written footer.
    fn file_with_footer(footer: &[u8]) -> Vec<u8> {
        let mut f = b"PAR1 column chunks ".to_vec();
        f.extend_from_slice(footer);
        f.extend_from_slice(&(footer.len() as u32).to_le_bytes());
        f.extend_from_slice(MAGIC);
        f
    }

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn zz(v: i64) -> u64 {
        ((v << 1) ^ (v >> 63)) as u64
    }

    #[test]
    fn reads_a_pyarrow_file() {
        let file = unhex(PYARROW_THREE_ROWS);
        assert_eq!(num_rows(&file), Ok(3));
    }

    #[test]
    fn skips_every_type_before_num_rows() {
        // Fields in an unusual order so every kind of value is skipped
        // before num_rows (field 3) comes last.
        let mut m = Vec::new();
        m.push(0x15); // field 1, i32
        varint(zz(2), &mut m);
        m.push(0x41); // field 5 (delta 4), bool true
        m.push(0x1b); // field 6, map<string, double>
        varint(2, &mut m);
        m.push(0x87);
        for key in ["a", "bc"] {
            varint(key.len() as u64, &mut m);
            m.extend_from_slice(key.as_bytes());
            m.extend_from_slice(&1.5f64.to_le_bytes());
        }
        m.push(0x19); // field 7, list<struct>
        m.push(0x2c); // 2 elements
        for i in 0..2 {
            m.push(0x13); // field 1, byte
            m.push(i);
            m.push(0x19); // field 2, list<bool>
            m.push(0x31); // 3 elements
            m.extend_from_slice(&[1, 0, 1]);
            m.push(0x18); // field 3, binary
            varint(3, &mut m);
            m.extend_from_slice(b"xyz");
            m.push(0x00);
        }
        m.push(0x1a); // field 8, set<i16> with a long-form size
        m.push(0xf4);
        varint(16, &mut m);
        for i in 0..16 {
            varint(zz(i), &mut m);
        }
        m.push(0x06); // long-form header: i64, field id 3 as a zigzag varint
        varint(zz(3), &mut m);
        varint(zz(1_234_567_890_123), &mut m);
        m.push(0x00);
        assert_eq!(num_rows(&file_with_footer(&m)), Ok(1_234_567_890_123));
    }

    #[test]
    fn rejects_what_is_not_a_parquet_footer() {
        let good = unhex(PYARROW_THREE_ROWS);
        assert!(num_rows(b"PAR1").unwrap_err().contains("too short"));
        assert!(num_rows(&good[1..]).unwrap_err().contains("start"));
        assert!(num_rows(&good[..good.len() - 1])
            .unwrap_err()
            .contains("end"));
        let mut encrypted = good.clone();
        let n = encrypted.len();
        encrypted[n - 4..].copy_from_slice(ENCRYPTED_MAGIC);
        assert!(num_rows(&encrypted).unwrap_err().contains("encrypted"));
        let mut long = good.clone();
        long[n - 8..n - 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(num_rows(&long).unwrap_err().contains("exceeds"));
        // A footer cut short, an absurd list size, a missing num_rows.
        assert!(num_rows(&file_with_footer(&[0x15])).is_err());
        assert!(num_rows(&file_with_footer(&[0x29, 0xfc, 0xff, 0xff, 0x7f])).is_err());
        assert!(num_rows(&file_with_footer(&[0x15, 0x02, 0x00]))
            .unwrap_err()
            .contains("no num_rows"));
        let negative = [0x36, 0x01, 0x00];
        assert!(num_rows(&file_with_footer(&negative))
            .unwrap_err()
            .contains("negative"));
        // Nesting deeper than the limit.
        let mut deep = vec![0x1c; 100];
        deep.extend(vec![0x00; 101]);
        assert!(num_rows(&file_with_footer(&deep))
            .unwrap_err()
            .contains("nested"));
    }
}
