//! The benchmark workloads: deterministic JSON records and their schemas.
//!
//! * **W1** — about 250 bytes, 12 fields: strings, integers, floats, a
//!   boolean, an RFC 3339 timestamp and one nested object.
//! * **W3** — about 100 bytes, 6 fields.
//! * **W4** — about 1 KB: the W1 fields plus a 750-byte text field.
//!
//! Record `seq` is a pure function of `seq`: every measurement of a run sees
//! the same bytes. `b2_confluent_pyarrow.py` declares the same field names.

use std::io::Write;

use clap::ValueEnum;
use tributary_core::SplitMix64;

/// Event time of record 0 (2026-01-01T00:00:00Z), in milliseconds; record
/// `seq` happens `seq` milliseconds later.
const BASE_TIME_MS: i64 = 1_767_225_600_000;

const COUNTRIES: [&str; 8] = ["PT", "ES", "FR", "DE", "IT", "NL", "GB", "US"];
const EVENTS: [&str; 6] = [
    "page_view",
    "click",
    "add_to_cart",
    "checkout",
    "purchase",
    "search",
];
const OS: [&str; 4] = ["android", "ios", "linux", "windows"];
const WORDS: [&str; 16] = [
    "river", "delta", "stream", "lake", "basin", "current", "estuary", "brook", "spring", "canal",
    "harbour", "tide", "flow", "channel", "creek", "marsh",
];

/// A benchmark workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// ~250-byte records with 12 fields, one of them a nested object.
    W1,
    /// ~100-byte records.
    W3,
    /// ~1 KB records.
    W4,
}

impl Workload {
    /// Short name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Workload::W1 => "w1",
            Workload::W3 => "w3",
            Workload::W4 => "w4",
        }
    }

    /// The schema, in Tributary's schema file format.
    pub fn schema_json(self) -> String {
        match self {
            Workload::W1 => format!(r#"{{"fields": [{W1_FIELDS}]}}"#),
            Workload::W3 => W3_SCHEMA.to_string(),
            Workload::W4 => format!(
                r#"{{"fields": [{W1_FIELDS},
    {{"name": "text", "type": "string"}}]}}"#
            ),
        }
    }

    /// Appends record `seq` to `out` (one JSON object, no newline).
    pub fn record(self, seq: u64, out: &mut Vec<u8>) {
        let mut rng = SplitMix64::new(seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5EED);
        let ts = BASE_TIME_MS + seq as i64;
        // Writing into a Vec cannot fail.
        let _ = match self {
            Workload::W3 => write!(
                out,
                r#"{{"id":{seq},"user":"u{:07}","value":{}.{:02},"ok":{},"kind":"{}","ts":"{}"}}"#,
                rng.below(10_000_000),
                rng.below(100_000),
                rng.below(100),
                rng.below(2) == 0,
                EVENTS[rng.below(EVENTS.len() as u64) as usize],
                Rfc3339(ts),
            ),
            Workload::W1 | Workload::W4 => {
                let r = write!(
                    out,
                    r#"{{"id":{seq},"user_id":"u{:07}","session":"s{:012x}","event":"{}","amount":{}.{:02},"quantity":{},"score":0.{:06},"active":{},"country":"{}","ts":"{}","device":{{"os":"{}","version":"{}.{}","model":"m{:04}"}},"url":"/p/{:06}""#,
                    rng.below(10_000_000),
                    rng.next_u64() >> 16,
                    EVENTS[rng.below(EVENTS.len() as u64) as usize],
                    rng.below(100_000),
                    rng.below(100),
                    1 + rng.below(20),
                    rng.below(1_000_000),
                    rng.below(2) == 0,
                    COUNTRIES[rng.below(COUNTRIES.len() as u64) as usize],
                    Rfc3339(ts),
                    OS[rng.below(OS.len() as u64) as usize],
                    10 + rng.below(8),
                    rng.below(10),
                    rng.below(10_000),
                    rng.below(1_000_000),
                );
                if self == Workload::W4 {
                    out.extend_from_slice(br#","text":""#);
                    let end = out.len() + 750;
                    while out.len() < end {
                        out.extend_from_slice(
                            WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes(),
                        );
                        out.push(b' ');
                    }
                    out.push(b'"');
                }
                out.push(b'}');
                r
            }
        };
    }
}

const W1_FIELDS: &str = r#"
    {"name": "id", "type": "int64", "nullable": false},
    {"name": "user_id", "type": "string"},
    {"name": "session", "type": "string"},
    {"name": "event", "type": "string"},
    {"name": "amount", "type": "float64"},
    {"name": "quantity", "type": "int32"},
    {"name": "score", "type": "float64"},
    {"name": "active", "type": "bool"},
    {"name": "country", "type": "string"},
    {"name": "ts", "type": "timestamp[us, UTC]", "nullable": false},
    {"name": "device", "type": "struct", "fields": [
      {"name": "os", "type": "string"},
      {"name": "version", "type": "string"},
      {"name": "model", "type": "string"}
    ]},
    {"name": "url", "type": "string"}"#;

const W3_SCHEMA: &str = r#"{"fields": [
    {"name": "id", "type": "int64", "nullable": false},
    {"name": "user", "type": "string"},
    {"name": "value", "type": "float64"},
    {"name": "ok", "type": "bool"},
    {"name": "kind", "type": "string"},
    {"name": "ts", "type": "timestamp[us, UTC]", "nullable": false}
]}"#;

/// Milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
struct Rfc3339(i64);

impl std::fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.0.rem_euclid(1000);
        let secs = self.0.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
            rem / 3600,
            rem / 60 % 60,
            rem % 60
        )
    }
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_have_the_promised_sizes_and_parse() {
        for (w, lo, hi) in [
            (Workload::W1, 220, 290),
            (Workload::W3, 80, 120),
            (Workload::W4, 950, 1100),
        ] {
            let schema = tributary_formats::parse_schema(&w.schema_json(), w.name()).unwrap();
            let mut total = 0;
            for seq in 0..1000 {
                let mut buf = Vec::new();
                w.record(seq, &mut buf);
                let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
                let obj = v.as_object().unwrap();
                assert_eq!(obj.len(), schema.fields().len(), "{}", w.name());
                total += buf.len();
            }
            let avg = total / 1000;
            assert!((lo..=hi).contains(&avg), "{}: {avg} bytes", w.name());
        }
    }

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(
            Rfc3339(BASE_TIME_MS + 3_723_004).to_string(),
            "2026-01-01T01:02:03.004Z"
        );
    }
}
