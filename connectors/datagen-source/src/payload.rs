//! Deterministic synthetic JSON payloads.
//!
//! Every function here is a pure function of its arguments: the same
//! `(seq, seed)` always gives the same bytes, on every platform and in every
//! process, so a test can regenerate what a producer sent and a reader can
//! check ids without keeping a copy.

use tributary_core::SplitMix64;

/// Event time of sequence number 0: `2026-01-01T00:00:00Z`, in milliseconds
/// since the Unix epoch. Record `seq` is stamped close to `BASE_TIME_MS + seq`.
pub const BASE_TIME_MS: i64 = 1_767_225_600_000;

/// Largest jitter (exclusive, in milliseconds) added to an order's event time.
pub const EVENT_TIME_JITTER_MS: i64 = 1_000;

/// `(city, country, currency)` of the shipping addresses.
const PLACES: [(&str, &str, &str); 16] = [
    ("Lisbon", "PT", "EUR"),
    ("Porto", "PT", "EUR"),
    ("Madrid", "ES", "EUR"),
    ("Paris", "FR", "EUR"),
    ("Lyon", "FR", "EUR"),
    ("Berlin", "DE", "EUR"),
    ("Hamburg", "DE", "EUR"),
    ("Milan", "IT", "EUR"),
    ("Amsterdam", "NL", "EUR"),
    ("Dublin", "IE", "EUR"),
    ("Warsaw", "PL", "PLN"),
    ("London", "GB", "GBP"),
    ("Zurich", "CH", "CHF"),
    ("New York", "US", "USD"),
    ("Toronto", "CA", "CAD"),
    ("Tokyo", "JP", "JPY"),
];

/// Order statuses (those `config/schemas/orders.json` documents), repeated
/// to weight them.
const STATUSES: [&str; 10] = [
    "created",
    "created",
    "paid",
    "paid",
    "paid",
    "shipped",
    "shipped",
    "shipped",
    "shipped",
    "cancelled",
];

/// The generator for one record: distinct `seq` give distinct streams for a seed.
fn record_rng(seq: u64, seed: u64) -> SplitMix64 {
    SplitMix64::new(seed.wrapping_mul(0xD1B5_4A32_D192_ED03) ^ seq)
}

/// The `order_id` of sequence number `seq`: the sequence number itself.
///
/// Ids are therefore unique, dense (`0..n` for `n` records) and easy to check
/// with `min`/`max`/`count(distinct)`.
pub const fn order_id(seq: u64) -> i64 {
    seq as i64
}

/// Event time of order `seq` in milliseconds since the Unix epoch:
/// `BASE_TIME_MS + seq` plus a jitter below [`EVENT_TIME_JITTER_MS`].
///
/// One million orders span about 17 minutes, ten million about 2.8 hours.
pub fn order_event_time_ms(seq: u64, seed: u64) -> i64 {
    let mut rng = record_rng(seq, seed);
    event_time(seq, &mut rng)
}

fn event_time(seq: u64, rng: &mut SplitMix64) -> i64 {
    BASE_TIME_MS
        .saturating_add(seq.min(i64::MAX as u64) as i64)
        .saturating_add(rng.below(EVENT_TIME_JITTER_MS as u64) as i64)
}

/// Appends one synthetic order to `out` as a single JSON object (about
/// 200–280 bytes, no trailing newline). Allocates nothing besides growing `out`.
///
/// ```json
/// {"order_id":42,"customer_id":"c004217","amount":1234.56,"currency":"EUR",
///  "status":"paid","event_time":"2026-01-01T00:00:00.519Z",
///  "shipping":{"city":"Lisbon","country":"PT","express":false},
///  "items":[{"sku":"S01234","qty":2}]}
/// ```
///
/// It matches `config/schemas/orders.json`: `order_id` int64 (= [`order_id`]`(seq)`),
/// `customer_id` string, `amount` decimal(12,2) (always two decimals),
/// `currency` string, `status` string, `event_time` RFC 3339 UTC with
/// milliseconds (= [`order_event_time_ms`]), `shipping` struct
/// `{city, country, express: bool}`, `items` list of 1–3 `{sku: string, qty: int32}`.
pub fn order_json(seq: u64, seed: u64, out: &mut Vec<u8>) {
    let mut rng = record_rng(seq, seed);
    // Draw order is part of the format: event time first (see order_event_time_ms).
    let event_ms = event_time(seq, &mut rng);
    let customer = rng.below(1_000_000);
    let cents = 199 + rng.below(250_000);
    let (city, country, currency) = PLACES[rng.below(PLACES.len() as u64) as usize];
    let status = STATUSES[rng.below(STATUSES.len() as u64) as usize];
    let express = rng.below(4) == 0;
    let items = match rng.below(20) {
        0..=9 => 1,
        10..=16 => 2,
        _ => 3,
    };

    out.extend_from_slice(b"{\"order_id\":");
    push_i64(out, order_id(seq));
    out.extend_from_slice(b",\"customer_id\":\"c");
    push_padded(out, customer, 6);
    out.extend_from_slice(b"\",\"amount\":");
    push_cents(out, cents);
    out.extend_from_slice(b",\"currency\":\"");
    out.extend_from_slice(currency.as_bytes());
    out.extend_from_slice(b"\",\"status\":\"");
    out.extend_from_slice(status.as_bytes());
    out.extend_from_slice(b"\",\"event_time\":\"");
    push_rfc3339_millis(out, event_ms);
    out.extend_from_slice(b"\",\"shipping\":{\"city\":\"");
    out.extend_from_slice(city.as_bytes());
    out.extend_from_slice(b"\",\"country\":\"");
    out.extend_from_slice(country.as_bytes());
    out.extend_from_slice(b"\",\"express\":");
    out.extend_from_slice(if express { b"true" } else { b"false" });
    out.extend_from_slice(b"},\"items\":[");
    for i in 0..items {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"sku\":\"S");
        push_padded(out, rng.below(100_000), 5);
        out.extend_from_slice(b"\",\"qty\":");
        push_u64(out, 1 + rng.below(5));
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
}

/// Event time of small record `seq`: exactly `BASE_TIME_MS + seq`.
pub fn small_event_time_ms(seq: u64) -> i64 {
    BASE_TIME_MS.saturating_add(seq.min(i64::MAX as u64) as i64)
}

/// Appends one small record (about 75–80 bytes) to `out`:
/// `{"id":N,"user":"u123","amount":12.34,"ts":"2026-01-01T00:00:00.000Z"}`.
///
/// `id` is `seq`, `ts` is [`small_event_time_ms`]`(seq)`. Meant for tests that
/// must stay under the mock broker's per-partition cap (5 MiB).
pub fn small_json(seq: u64, out: &mut Vec<u8>) {
    let mut rng = record_rng(seq, 0x5EED_5A11);
    out.extend_from_slice(b"{\"id\":");
    push_u64(out, seq);
    out.extend_from_slice(b",\"user\":\"u");
    push_padded(out, rng.below(1_000), 3);
    out.extend_from_slice(b"\",\"amount\":");
    push_cents(out, rng.below(100_000));
    out.extend_from_slice(b",\"ts\":\"");
    push_rfc3339_millis(out, small_event_time_ms(seq));
    out.extend_from_slice(b"\"}");
}

/// Appends the decimal digits of `v`.
pub(crate) fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn push_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    push_u64(out, v.unsigned_abs());
}

/// Appends `v` zero-padded to at least `width` digits.
fn push_padded(out: &mut Vec<u8>, v: u64, width: usize) {
    let mut digits = 1;
    let mut rest = v / 10;
    while rest > 0 {
        digits += 1;
        rest /= 10;
    }
    for _ in digits..width {
        out.push(b'0');
    }
    push_u64(out, v);
}

/// Appends `cents / 100` with exactly two decimals.
fn push_cents(out: &mut Vec<u8>, cents: u64) {
    push_u64(out, cents / 100);
    out.push(b'.');
    push_padded(out, cents % 100, 2);
}

/// Appends `ms` (milliseconds since the epoch) as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn push_rfc3339_millis(out: &mut Vec<u8>, ms: i64) {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000) as u64;
    let (year, month, day) = civil_from_days(days);
    push_padded(out, year.clamp(0, 9999) as u64, 4);
    out.push(b'-');
    push_padded(out, u64::from(month), 2);
    out.push(b'-');
    push_padded(out, u64::from(day), 2);
    out.push(b'T');
    push_padded(out, in_day / 3_600_000, 2);
    out.push(b':');
    push_padded(out, in_day / 60_000 % 60, 2);
    out.push(b':');
    push_padded(out, in_day / 1_000 % 60, 2);
    out.push(b'.');
    push_padded(out, in_day % 1_000, 3);
    out.push(b'Z');
}

/// Proleptic Gregorian date of a day number (days since 1970-01-01), after
/// Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde_json::Value;

    fn order(seq: u64, seed: u64) -> Value {
        let mut out = Vec::new();
        order_json(seq, seed, &mut out);
        serde_json::from_slice(&out).unwrap_or_else(|e| {
            panic!(
                "order {seq} is not JSON ({e}): {}",
                String::from_utf8_lossy(&out)
            )
        })
    }

    #[test]
    fn timestamps_match_chrono() {
        let mut rng = SplitMix64::new(7);
        let mut cases: Vec<i64> = vec![0, BASE_TIME_MS, 951_782_400_000, 4_102_444_799_999];
        cases.extend((0..10_000).map(|_| rng.below(253_402_300_799_999) as i64));
        for ms in cases {
            let mut out = Vec::new();
            push_rfc3339_millis(&mut out, ms);
            let expected = DateTime::<Utc>::from_timestamp_millis(ms)
                .unwrap()
                .to_rfc3339_opts(SecondsFormat::Millis, true);
            assert_eq!(String::from_utf8(out).unwrap(), expected, "ms = {ms}");
        }
    }

    #[test]
    fn numbers_format() {
        let mut out = Vec::new();
        push_u64(&mut out, 0);
        out.push(b' ');
        push_u64(&mut out, u64::MAX);
        out.push(b' ');
        push_i64(&mut out, i64::MIN);
        out.push(b' ');
        push_padded(&mut out, 7, 3);
        out.push(b' ');
        push_padded(&mut out, 12345, 3);
        out.push(b' ');
        push_cents(&mut out, 5);
        out.push(b' ');
        push_cents(&mut out, 123_456);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "0 18446744073709551615 -9223372036854775808 007 12345 0.05 1234.56"
        );
    }

    #[test]
    fn orders_match_the_schema() {
        let mut sizes = Vec::new();
        let mut item_counts = [0usize; 4];
        for seq in (0..2_000u64).chain([1 << 40, 1 << 42]) {
            let mut raw = Vec::new();
            order_json(seq, 3, &mut raw);
            sizes.push(raw.len());
            let v = order(seq, 3);
            let obj = v.as_object().unwrap();
            let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
            assert_eq!(keys.len(), 8, "{v}");
            assert_eq!(v["order_id"].as_i64(), Some(order_id(seq)));
            assert!(v["customer_id"].as_str().unwrap().starts_with('c'));
            let amount = v["amount"].as_f64().unwrap();
            assert!((1.99..=2501.98).contains(&amount), "{amount}");
            let raw_text = String::from_utf8(raw).unwrap();
            let amount_text = raw_text.split("\"amount\":").nth(1).unwrap();
            let amount_text = amount_text.split(',').next().unwrap();
            assert_eq!(
                amount_text.split('.').nth(1).map(str::len),
                Some(2),
                "{raw_text}"
            );
            assert_eq!(v["currency"].as_str().unwrap().len(), 3);
            assert!(STATUSES.contains(&v["status"].as_str().unwrap()));
            let event_time = v["event_time"].as_str().unwrap();
            let parsed = DateTime::parse_from_rfc3339(event_time).unwrap();
            assert_eq!(parsed.timestamp_millis(), order_event_time_ms(seq, 3));
            assert!(event_time.ends_with('Z') && event_time.len() == 24);
            let shipping = v["shipping"].as_object().unwrap();
            assert!(shipping["city"].is_string() && shipping["country"].is_string());
            assert!(shipping["express"].is_boolean());
            let items = v["items"].as_array().unwrap();
            assert!((1..=3).contains(&items.len()));
            item_counts[items.len()] += 1;
            for item in items {
                assert!(item["sku"].as_str().unwrap().starts_with('S'));
                let qty = item["qty"].as_i64().unwrap();
                assert!((1..=5).contains(&qty));
            }
        }
        let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
        assert!((200.0..=260.0).contains(&mean), "mean size {mean}");
        assert!(*sizes.iter().min().unwrap() >= 180, "{sizes:?}");
        assert!(*sizes.iter().max().unwrap() <= 320, "{sizes:?}");
        assert!(item_counts[1] > 0 && item_counts[2] > 0 && item_counts[3] > 0);
    }

    #[test]
    fn orders_are_deterministic_and_seeded() {
        let gen = |seq, seed| {
            let mut out = Vec::new();
            order_json(seq, seed, &mut out);
            out
        };
        assert_eq!(gen(17, 1), gen(17, 1));
        assert_ne!(gen(17, 1), gen(17, 2));
        assert_ne!(gen(17, 1), gen(18, 1));
        // Appends, never clears.
        let mut out = b"prefix".to_vec();
        order_json(17, 1, &mut out);
        assert_eq!(&out[..6], b"prefix");
        assert_eq!(&out[6..], &gen(17, 1)[..]);
    }

    #[test]
    fn event_times_follow_seq() {
        for seq in [0u64, 1, 1_000, 3_600_000, 10_000_000] {
            let t = order_event_time_ms(seq, 9);
            let base = BASE_TIME_MS + seq as i64;
            assert!((base..base + EVENT_TIME_JITTER_MS).contains(&t));
        }
        // Ten million orders span more than two hours.
        assert!(order_event_time_ms(10_000_000, 0) - order_event_time_ms(0, 0) > 2 * 3_600_000);
    }

    #[test]
    fn small_records() {
        for seq in [0u64, 1, 99_999, 1 << 33] {
            let mut out = Vec::new();
            small_json(seq, &mut out);
            assert!((65..=90).contains(&out.len()), "{}", out.len());
            let v: Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(v["id"].as_u64(), Some(seq));
            assert_eq!(v["user"].as_str().unwrap().len(), 4);
            assert!(v["amount"].is_f64());
            let ts = DateTime::parse_from_rfc3339(v["ts"].as_str().unwrap()).unwrap();
            assert_eq!(ts.timestamp_millis(), small_event_time_ms(seq));
        }
        let mut first = Vec::new();
        small_json(5, &mut first);
        assert_eq!(String::from_utf8(first).unwrap(), {
            let mut again = Vec::new();
            small_json(5, &mut again);
            String::from_utf8(again).unwrap()
        });
    }
}
