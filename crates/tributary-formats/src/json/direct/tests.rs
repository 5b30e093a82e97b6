//! The direct decoder against arrow-json: whenever it decodes a batch, the
//! rows must be arrow-json's rows; and it must decode the common cases.

use arrow::json::reader::ReaderBuilder;
use arrow::record_batch::RecordBatch;

use tributary_core::SplitMix64;

use super::*;
use crate::schema::parse_schema;

/// What arrow-json makes of the payloads, fed one at a time as the converter
/// feeds them; `None` when it refuses any of them.
fn arrow_rows(schema: &SchemaRef, coerce: bool, payloads: &[&[u8]]) -> Option<RecordBatch> {
    let mut decoder = ReaderBuilder::new(schema.clone())
        .with_batch_size(payloads.len().max(1))
        .with_coerce_primitive(coerce)
        .build_decoder()
        .unwrap();
    for p in payloads {
        let before = decoder.len();
        let read = decoder.decode(p).ok()?;
        if read != p.len() || decoder.has_partial_record() || decoder.len() != before + 1 {
            return None;
        }
    }
    decoder.flush().ok()?
}

/// Decodes `payloads` directly; arrow-json must read the payloads decoded
/// (those before the first one given up on) to the same rows. How many were
/// decoded.
fn decoded(schema: &SchemaRef, coerce: bool, payloads: &[&[u8]]) -> usize {
    let direct = DirectDecoder::new(schema.clone(), coerce).expect("a supported schema");
    let (rows, decoded) = direct.decode(payloads);
    let Some(rows) = rows else {
        assert_eq!(decoded, 0);
        return 0;
    };
    let lossy = |p: &[&[u8]]| {
        p.iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect::<Vec<_>>()
    };
    let prefix = &payloads[..decoded];
    let expected = arrow_rows(schema, coerce, prefix).unwrap_or_else(|| {
        panic!(
            "decoded directly but arrow-json refuses: {:?}",
            lossy(prefix)
        )
    });
    assert_eq!(rows, expected, "rows differ for {:?}", lossy(prefix));
    decoded
}

/// Whether the direct decoder took every payload (and arrow-json agrees).
fn agrees(schema: &SchemaRef, coerce: bool, payloads: &[&[u8]]) -> bool {
    decoded(schema, coerce, payloads) == payloads.len()
}

fn schema() -> SchemaRef {
    parse_schema(
        r#"{"fields": [
        {"name": "id", "type": "int64", "nullable": false},
        {"name": "name", "type": "string"},
        {"name": "small", "type": "int8"},
        {"name": "count", "type": "int32"},
        {"name": "big", "type": "uint64"},
        {"name": "ratio", "type": "float32"},
        {"name": "amount", "type": "float64"},
        {"name": "ok", "type": "bool"},
        {"name": "at", "type": "timestamp[us, UTC]"},
        {"name": "local", "type": "timestamp[ms]"},
        {"name": "paris", "type": "timestamp[ns, Europe/Paris]"},
        {"name": "device", "type": "struct", "fields": [
          {"name": "os", "type": "string"},
          {"name": "build", "type": "int64", "nullable": false},
          {"name": "inner", "type": "struct", "fields": [{"name": "x", "type": "float64"}]}
        ]}
    ]}"#,
        "test",
    )
    .unwrap()
}

/// Records the direct decoder must take, each alone and all together.
const TAKEN: &[&str] = &[
    r#"{"id":1,"name":"a","small":-128,"count":2147483647,"big":9223372036854775807,"ratio":0.1,"amount":-0.0,"ok":true,"at":"2026-11-24T06:30:00Z","local":"2026-11-24T06:30:00.123","paris":"2026-11-24T06:30:00.123456789+01:00","device":{"os":"linux","build":7,"inner":{"x":1e3}}}"#,
    r#"{"id":-9223372036854775808}"#,
    r#"  {"id" : 2 , "name" : null , "ok" : false , "device" : null }  "#,
    "{\"id\":3,\"name\":\"tab\there\",\"device\":{\"build\":1}}\n",
    r#"{"device":{"inner":null,"build":0,"os":"x"},"id":4,"amount":12,"ratio":3.4028235e38}"#,
    r#"{"id":5,"name":"esc \" \\ \/ \b \f \n \r \t \u00e9 \u20AC \ud83d\ude00 \u0000"}"#,
    r#"{"id":6,"name":"é ünïcödé 😀","at":1700000000000000,"local":-5,"paris":0}"#,
    r#"{"id":7,"extra":{"a":[1,2.5e-3,{"b":"\u00e9\n"},[],{}],"c":null},"more":[true,false,null,"x"],"name":"n"}"#,
    r#"{"id":8,"at":"2026-02-28 23:59:59.999","amount":1.7976931348623157e308,"ratio":-1E-7}"#,
    r#"{"id":9,"at":"2026-11-24T06:30:00-05:30","count":-0,"small":127,"big":0}"#,
    r#"{"id":10,"at":"2026-11-24","local":"2026-11-24T06:30:00Z"}"#,
    r#"{"id":11,"amount":0.30000000000000004,"ratio":16777217,"device":{"build":-1,"inner":{}}}"#,
];

/// Each of `records`, and all of them in one batch, are decoded directly
/// (and as arrow-json decodes them).
fn assert_taken(schema: &SchemaRef, records: &[&str]) {
    for record in records {
        assert!(
            agrees(schema, false, &[record.as_bytes()]),
            "not decoded directly: {record}"
        );
    }
    let all: Vec<&[u8]> = records.iter().map(|r| r.as_bytes()).collect();
    assert!(agrees(schema, false, &all));
}

#[test]
fn common_records_are_decoded_directly_as_arrow_json_decodes_them() {
    assert_taken(&schema(), TAKEN);
}

/// Records arrow-json refuses (or that the direct decoder leaves to it).
const LEFT: &[&str] = &[
    r#"{"name":"no id"}"#,
    r#"{"id":null}"#,
    r#"{"id":1.5}"#,
    r#"{"id":1.0}"#,
    r#"{"id":"1"}"#,
    r#"{"id":9223372036854775808}"#,
    r#"{"id":1,"small":128}"#,
    r#"{"id":1,"big":-1}"#,
    r#"{"id":1,"big":18446744073709551615}"#,
    r#"{"id":01}"#,
    r#"{"id":1.}"#,
    r#"{"id":-}"#,
    r#"{"id":1e}"#,
    r#"{"id":1,"amount":.5}"#,
    r#"{"id":1,"amount":1.5.5}"#,
    r#"{"id":1,"amount":"1.5"}"#,
    r#"{"id":1,"name":5}"#,
    r#"{"id":1,"name":true}"#,
    r#"{"id":1,"ok":"true"}"#,
    r#"{"id":1,"ok":1}"#,
    r#"{"id":1,"at":"yesterday"}"#,
    r#"{"id":1,"at":1.5}"#,
    r#"{"id":1,"name":"bad \x escape"}"#,
    r#"{"id":1,"name":"lone \ud800 surrogate"}"#,
    r#"{"id":1,"name":"lone \udc00 low"}"#,
    r#"{"id":1,"name":"\ud800\u0041"}"#,
    r#"{"id":1,"name":"short \u12"}"#,
    r#"{"id":1,"name":"unterminated}"#,
    r#"{"id":1,"device":{"os":"x"}}"#,
    r#"{"id":1,"device":{"build":null}}"#,
    r#"{"id":1,"device":"linux"}"#,
    r#"{"id":1,"device":{"build":1,"inner":5}}"#,
    r#"{"id":1,"id":2}"#,
    r#"{"id":1,}"#,
    r#"{"id":1 "name":"x"}"#,
    r#"{"i\u0064":1}"#,
    r#"{"id":1,"extra":[1,]}"#,
    r#"{"id":1,"extra":{"a" 1}}"#,
    r#"{"id":1,"extra":"\q"}"#,
    r#"{"id":1,"extra":nul}"#,
    r#"{"id":1,"extra":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"#,
    r#"{"id":1}{"id":2}"#,
    r#"{"id":1} x"#,
    r#"[{"id":1}]"#,
    r#""id""#,
    r#"5"#,
    r#"null"#,
    "",
    "   ",
    r#"{"id":1"#,
    r#"{"id":1,"name":"x"#,
];

#[test]
fn records_arrow_json_refuses_or_reads_loosely_are_left_to_it() {
    let schema = schema();
    for record in LEFT {
        // Alone, and after a good record in the same batch.
        assert!(
            !agrees(&schema, false, &[record.as_bytes()]),
            "decoded directly: {record}"
        );
        // The rows before it are kept.
        let batch = [TAKEN[0].as_bytes(), record.as_bytes(), TAKEN[1].as_bytes()];
        assert_eq!(decoded(&schema, false, &batch), 1, "{record}");
    }
    let invalid_utf8: &[u8] = b"{\"id\":1,\"extra\":\"\xff\"}";
    assert!(!agrees(&schema, false, &[invalid_utf8]));
}

#[test]
fn inferred_schemas_take_numbers_and_booleans_as_text_in_string_columns() {
    let schema = parse_schema(
        r#"{"fields": [{"name": "v", "type": "string"}, {"name": "n", "type": "int64"}]}"#,
        "test",
    )
    .unwrap();
    let records: [&[u8]; 5] = [
        br#"{"v":"text","n":1}"#,
        br#"{"v":12}"#,
        br#"{"v":-1.50e+3}"#,
        br#"{"v":true}"#,
        br#"{"v":false,"n":null}"#,
    ];
    assert!(agrees(&schema, true, &records));
    // Without coercion a number in a string column is left to arrow-json.
    assert!(!agrees(&schema, false, &records[1..2]));
}

#[test]
fn wide_structs_find_fields_in_any_order() {
    let fields: Vec<String> = (0..40)
        .map(|i| format!(r#"{{"name": "f{i}", "type": "int32"}}"#))
        .collect();
    let schema = parse_schema(&format!(r#"{{"fields": [{}]}}"#, fields.join(",")), "t").unwrap();
    let forward: Vec<String> = (0..40).map(|i| format!(r#""f{i}":{i}"#)).collect();
    let backward: Vec<String> = (0..40).rev().map(|i| format!(r#""f{i}":{i}"#)).collect();
    let sparse: Vec<String> = (0..40)
        .step_by(7)
        .map(|i| format!(r#""f{i}":{i}"#))
        .collect();
    let records: Vec<String> = [forward, backward, sparse]
        .iter()
        .map(|r| format!("{{{}}}", r.join(",")))
        .collect();
    let payloads: Vec<&[u8]> = records.iter().map(|r| r.as_bytes()).collect();
    assert!(agrees(&schema, false, &payloads));
}

#[test]
fn keys_of_every_length_are_found_compact_or_spaced() {
    // Keys of 1 to 20 bytes: with their quote and colon, up to 16 bytes are
    // compared as one word (when 16 bytes of the record follow), longer
    // ones byte by byte; `k` is a prefix of `kk`, which is one of `kkk`...
    let names: Vec<String> = (1..=20).map(|n| "k".repeat(n)).collect();
    let fields: Vec<String> = names
        .iter()
        .map(|n| format!(r#"{{"name": "{n}", "type": "int32"}}"#))
        .collect();
    let schema = parse_schema(&format!(r#"{{"fields": [{}]}}"#, fields.join(",")), "t").unwrap();
    let members = |order: &mut dyn Iterator<Item = usize>, colon: &str, comma: &str| {
        let m: Vec<String> = order
            .map(|i| format!(r#""{}"{colon}{i}"#, names[i]))
            .collect();
        format!("{{{}}}", m.join(comma))
    };
    let mut records = Vec::new();
    for (colon, comma) in [(":", ","), (" : ", " , "), (":", ", "), (" :", ",")] {
        records.push(members(&mut (0..20), colon, comma));
        records.push(members(&mut (0..20).rev(), colon, comma));
        records.push(members(&mut (0..20).step_by(3), colon, comma));
        // One member: the record ends within 16 bytes of every key.
        for i in [0, 5, 13, 14, 15, 19] {
            records.push(members(&mut std::iter::once(i), colon, comma));
        }
    }
    for r in &records {
        assert!(agrees(&schema, false, &[r.as_bytes()]), "{r}");
    }
    let payloads: Vec<&[u8]> = records.iter().map(|r| r.as_bytes()).collect();
    assert!(agrees(&schema, false, &payloads));
    // A key written twice is still left to arrow-json, compact or not.
    for r in [r#"{"k":1,"k":2}"#, r#"{"kk" : 1 , "kk" : 2}"#] {
        assert_eq!(decoded(&schema, false, &[r.as_bytes()]), 0, "{r}");
    }
}

#[test]
fn binary_columns_get_no_direct_decoder() {
    for t in [
        r#"{"name": "b", "type": "binary"}"#,
        r#"{"name": "l", "type": "list", "items": {"type": "binary"}}"#,
        r#"{"name": "s", "type": "struct", "fields": [{"name": "b", "type": "binary"}]}"#,
    ] {
        let schema = parse_schema(&format!(r#"{{"fields": [{t}]}}"#), "t").unwrap();
        assert!(DirectDecoder::new(schema, false).is_none(), "{t}");
    }
}

/// Decimals, dates and lists (of strings, of structs, of lists, of required items).
fn nested_schema() -> SchemaRef {
    parse_schema(
        r#"{"fields": [
        {"name": "amount", "type": "decimal(12,2)"},
        {"name": "day", "type": "date"},
        {"name": "tags", "type": "list", "items": {"type": "string"}},
        {"name": "items", "type": "list", "items": {"type": "struct", "fields": [
          {"name": "sku", "type": "string", "nullable": false},
          {"name": "qty", "type": "int32"}
        ]}},
        {"name": "matrix", "type": "list", "items": {"type": "list", "items": {"type": "int64"}}},
        {"name": "strict", "type": "list", "nullable": false,
         "items": {"type": "float64", "nullable": false}}
    ]}"#,
        "test",
    )
    .unwrap()
}

const NESTED_TAKEN: &[&str] = &[
    r#"{"amount":"12.34","day":"2026-11-24","tags":["a","b"],"items":[{"sku":"x","qty":1},{"sku":"y"}],"matrix":[[1,2],[],[3]],"strict":[1.5,2]}"#,
    r#"{"amount":12.3,"day":20000,"tags":[],"items":null,"matrix":null,"strict":[]}"#,
    r#"{"amount":"-0.01","tags":[null,"c\u00e9"],"items":[],"strict":[0]}"#,
    r#"{"amount":null,"day":null,"tags":null,"strict":[ 1 , 2 ],"matrix":[[null],null,[]]}"#,
    r#"{"strict":[],"items":[{"qty":null,"sku":"z","extra":[1,{"a":[]}]}],"day":-1,"amount":7}"#,
];

/// Records arrow-json refuses (or that the direct decoder leaves to it).
const NESTED_LEFT: &[&str] = &[
    r#"{"strict":[],"amount":"abc"}"#,
    r#"{"strict":[],"amount":true}"#,
    r#"{"strict":[],"amount":"12345678901.5"}"#,
    r#"{"strict":[],"day":"2026-13-01"}"#,
    r#"{"strict":[],"day":1.5}"#,
    r#"{"strict":[],"tags":"a"}"#,
    r#"{"strict":[],"tags":[1]}"#,
    r#"{"strict":[],"tags":["a",]}"#,
    r#"{"strict":[],"tags":["a" "b"]}"#,
    r#"{"strict":[],"items":[{"qty":1}]}"#,
    r#"{"strict":[],"items":[{"sku":"x","qty":"1"}]}"#,
    r#"{"strict":[],"items":[5]}"#,
    r#"{"strict":[],"matrix":[[1],2]}"#,
    r#"{"strict":[null]}"#,
    r#"{"strict":null}"#,
    r#"{"tags":[]}"#,
];

#[test]
fn decimals_dates_and_lists_are_decoded_directly_as_arrow_json_decodes_them() {
    let schema = nested_schema();
    assert_taken(&schema, NESTED_TAKEN);
    for record in NESTED_LEFT {
        let batch = [
            NESTED_TAKEN[0].as_bytes(),
            record.as_bytes(),
            NESTED_TAKEN[1].as_bytes(),
        ];
        assert_eq!(decoded(&schema, false, &batch), 1, "{record}");
    }
    // Whichever way these go, arrow-json must agree with what was decoded.
    for record in [
        r#"{"strict":[],"amount":"12.345"}"#,
        r#"{"strict":[],"amount":1e2}"#,
        r#"{"strict":[],"amount":" 1.5"}"#,
        r#"{"strict":[],"day":"2026-11-24T10:00:00"}"#,
        r#"{"strict":[],"day":"20261124"}"#,
    ] {
        decoded(&schema, false, &[record.as_bytes()]);
    }
}

#[test]
fn timestamp_strings_are_read_as_string_to_datetime_reads_them() {
    let units = ["s", "ms", "us, UTC", "ns, Europe/Paris", "us, +05:30"];
    let schemas: Vec<SchemaRef> = units
        .iter()
        .map(|u| {
            let field = format!(r#"{{"name": "t", "type": "timestamp[{u}]"}}"#);
            parse_schema(&format!(r#"{{"fields": [{field}]}}"#), "t").unwrap()
        })
        .collect();
    let taken = [
        "2026-11-24T06:30:00Z",
        "2026-11-24T06:30:00.1Z",
        "2026-11-24T06:30:00.123456789Z",
        "1970-01-01T00:00:00Z",
        "1969-12-31T23:59:59.999999999Z",
        "1900-03-01T00:00:00.5Z",
        "2000-02-29T12:00:00Z",
        "2024-02-29T23:59:59.000001Z",
        "2026-11-24T06:30:00+01:00",
        "2026-11-24 06:30:00",
        "2026-11-24",
    ];
    for text in taken {
        let record = format!(r#"{{"t":"{text}"}}"#);
        for schema in &schemas {
            assert!(agrees(schema, false, &[record.as_bytes()]), "{text}");
        }
    }
    // Whichever way these go, arrow-json agrees with what is decoded.
    let others = [
        "0001-01-01T00:00:00Z",
        "9999-12-31T23:59:59.999999999Z",
        "2023-02-29T00:00:00Z",
        "1900-02-29T00:00:00Z",
        "2026-11-31T00:00:00Z",
        "2026-00-10T00:00:00Z",
        "2026-11-24T24:00:00Z",
        "2026-11-24T23:60:00Z",
        "2026-11-24T23:59:60Z",
        "2026-11-24T23:59:59.Z",
        "2026-11-24T23:59:59.1234567891Z",
        "2026-11-24t06:30:00z",
        "2026-11-24T06:30Z",
        "+2026-11-24T06:30:00Z",
        "2026-1-24T06:30:00Z",
    ];
    let mut rng = Rng(SplitMix64::new(7));
    let mut mutated = Vec::new();
    for _ in 0..3_000 {
        let mut text = taken[rng.below(3)].as_bytes().to_vec();
        let at = rng.below(text.len());
        text[at] = b"0123456789-:.TZ "[rng.below(16)];
        mutated.push(String::from_utf8(text).unwrap());
    }
    for text in others
        .iter()
        .copied()
        .chain(mutated.iter().map(String::as_str))
    {
        let record = format!(r#"{{"t":"{text}"}}"#);
        for schema in &schemas {
            decoded(schema, false, &[record.as_bytes()]);
        }
    }
}

/// Repeatable random choices.
struct Rng(SplitMix64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0.below(n as u64) as usize
    }
}

/// Bytes a mutation inserts: JSON's own, and some that break it.
const NOISE: &[&[u8]] = &[
    b"\"", b"\\", b"{", b"}", b"[", b"]", b":", b",", b" ", b"0", b"1", b"-", b".", b"e", b"+",
    b"null", b"true", b"u", b"\\u", b"d8", b"\xc3", b"\xff", b"\t", b"a",
];

/// Mutates records of `taken` at random: whenever the direct decoder takes
/// one, arrow-json must read it to the same row; whenever it gives up, it
/// keeps the rows before it. Returns how many were taken and left.
fn mutate(schema: &SchemaRef, taken: &[&str], rounds: usize) -> (usize, usize) {
    let mut rng = Rng(SplitMix64::new(0x5EED));
    let (mut direct, mut left) = (0, 0);
    for round in 0..rounds {
        let mut record = taken[rng.below(taken.len())].as_bytes().to_vec();
        for _ in 0..1 + rng.below(3) {
            let at = rng.below(record.len() + 1);
            match rng.below(3) {
                0 if at < record.len() => {
                    record.remove(at);
                }
                1 => {
                    let noise = NOISE[rng.below(NOISE.len())];
                    record.splice(at..at, noise.iter().copied());
                }
                _ => {
                    let end = (at + 1 + rng.below(8)).min(record.len());
                    let copy = record[at..end].to_vec();
                    record.splice(at..at, copy);
                }
            }
        }
        let batch = [
            taken[round % taken.len()].as_bytes(),
            &record,
            taken[0].as_bytes(),
        ];
        if agrees(schema, false, &[&record]) {
            direct += 1;
            assert!(agrees(schema, false, &batch));
        } else {
            left += 1;
            assert_eq!(decoded(schema, false, &batch), 1);
        }
    }
    (direct, left)
}

#[test]
fn mutated_records_are_decoded_as_arrow_json_decodes_them_or_left_to_it() {
    let (direct, left) = mutate(&schema(), TAKEN, 20_000);
    // Both outcomes are exercised.
    assert!(
        direct > 2_000 && left > 2_000,
        "direct {direct}, left {left}"
    );
    let (direct, left) = mutate(&nested_schema(), NESTED_TAKEN, 10_000);
    assert!(
        direct > 1_000 && left > 1_000,
        "direct {direct}, left {left}"
    );
}

#[test]
fn the_string_scanner_finds_the_first_quote_or_backslash_as_a_plain_search_does() {
    let mut rng = Rng(SplitMix64::new(11));
    for _ in 0..20_000 {
        let len = rng.below(80);
        // ASCII text, or any bytes, without either byte; then one or two of
        // them anywhere.
        let top = if rng.below(2) == 0 { 128 } else { 256 };
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.below(top) as u8).collect();
        for b in &mut bytes {
            if *b == b'"' || *b == b'\\' {
                *b = b'a';
            }
        }
        for _ in 0..rng.below(3) {
            if len > 0 {
                bytes[rng.below(len)] = if rng.below(2) == 0 { b'"' } else { b'\\' };
            }
        }
        let plain = bytes.iter().position(|&c| c == b'"' || c == b'\\');
        let found = quote_or_backslash(&bytes);
        assert_eq!(found.map(|(end, _)| end), plain, "{bytes:?}");
        if let Some((end, true)) = found {
            assert!(bytes[..end].is_ascii(), "{bytes:?}");
        }
        // Texts that end within 32 bytes are always told apart: ASCII or not.
        if let Some((end, ascii)) = found.filter(|(end, _)| *end < 32) {
            assert_eq!(ascii, bytes[..end].is_ascii(), "{bytes:?}");
        }
    }
}

#[test]
fn keys_are_compared_as_a_plain_comparison_does() {
    let mut rng = Rng(SplitMix64::new(12));
    for _ in 0..20_000 {
        let needle: Vec<u8> = (0..rng.below(24)).map(|_| b"ab\""[rng.below(3)]).collect();
        let mut hay = needle.clone();
        if !hay.is_empty() && rng.below(2) == 0 {
            let at = rng.below(hay.len());
            hay[at] = b"ab\""[rng.below(3)];
        }
        hay.truncate(hay.len().saturating_sub(rng.below(2)));
        hay.extend((0..rng.below(4)).map(|_| b'x'));
        assert_eq!(
            starts_with(&hay, &needle),
            hay.starts_with(&needle),
            "{hay:?} {needle:?}"
        );
    }
}

/// Numbers by the JSON grammar, of every length up to 20 characters, with
/// and without sign, fraction and exponent.
fn random_number(rng: &mut Rng) -> String {
    let mut s = String::new();
    if rng.below(3) == 0 {
        s.push('-');
    }
    let int_digits = 1 + rng.below(17);
    for i in 0..int_digits {
        let d = if i == 0 && int_digits > 1 {
            1 + rng.below(9)
        } else {
            rng.below(10)
        };
        s.push(char::from(b'0' + d as u8));
    }
    if rng.below(2) == 0 {
        s.push('.');
        for _ in 0..1 + rng.below(17) {
            s.push(char::from(b'0' + rng.below(10) as u8));
        }
    }
    if rng.below(8) == 0 {
        s.push_str(["e", "E", "e-", "e+"][rng.below(4)]);
        s.push(char::from(b'0' + rng.below(10) as u8));
    }
    s
}

#[test]
fn short_numbers_are_read_as_lexical_core_reads_them() {
    let mut rng = Rng(SplitMix64::new(11));
    let (mut fast_floats, mut fast_ints) = (0, 0);
    let edges = [
        "0",
        "-0",
        "-0.0",
        "0.1",
        "0.000000000000001",
        "999999999999999",
        "99999999999999.9",
        "123456789012345678",
        "-123456789012345678",
        "9007199254740993",
    ];
    let randoms: Vec<String> = (0..200_000).map(|_| random_number(&mut rng)).collect();
    for text in edges.iter().map(|e| e.to_string()).chain(randoms) {
        let bytes = text.as_bytes();
        if let Some(x) = short_decimal(bytes) {
            let want = lexical_core::parse::<f64>(bytes).unwrap();
            assert_eq!(x.to_bits(), want.to_bits(), "{text}: {x} against {want}");
            fast_floats += 1;
        }
        if let Some(n) = short_integer(bytes) {
            assert_eq!(n, lexical_core::parse::<i64>(bytes).unwrap(), "{text}");
            fast_ints += 1;
        }
    }
    // Both fast paths took a good share, and left the rest.
    assert!(
        fast_floats > 50_000 && fast_floats < 190_000,
        "{fast_floats}"
    );
    assert!(fast_ints > 20_000 && fast_ints < 100_000, "{fast_ints}");
}
