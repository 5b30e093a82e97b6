use std::path::{Path, PathBuf};
use std::time::Instant;

use arrow::array::{
    Array, AsArray, Decimal128Array, Int32Array, ListArray, StringArray, StructArray,
    TimestampMicrosecondArray, TimestampMillisecondArray,
};
use arrow::datatypes::{Float64Type, Int32Type, Int64Type};
use bytes::Bytes;
use serde_json::json;
use tributary_core::METADATA_COLUMNS;

use super::*;
use crate::schema::parse_schema;

// ---------------------------------------------------------------- helpers

fn orders_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/schemas/orders.json")
}

fn orders_schema() -> SchemaRef {
    load_schema(orders_path()).unwrap()
}

fn cfg(v: serde_json::Value) -> JsonConverterConfig {
    serde_json::from_value(v).unwrap()
}

fn orders(on_error: &str, metadata: &[&str]) -> JsonConverter {
    let c =
        cfg(json!({"timestamp_field": "event_time", "on_error": on_error, "metadata": metadata}));
    JsonConverter::with_schema(orders_schema(), &c).unwrap()
}

fn rec(offset: i64, payload: impl Into<Option<Vec<u8>>>) -> RawRecord {
    RawRecord {
        offset,
        timestamp_ms: Some(1_000_000 + offset),
        key: Some(Bytes::from(format!("k{offset}"))),
        payload: payload.into().map(Bytes::from),
        headers: Vec::new(),
    }
}

fn text(offset: i64, s: &str) -> RawRecord {
    rec(offset, s.as_bytes().to_vec())
}

fn batch(records: Vec<RawRecord>) -> SourceBatch {
    SourceBatch {
        partition: TopicPartition::new("orders", 3),
        records,
    }
}

fn order(id: i64) -> String {
    format!(
        r#"{{"order_id": {id}, "customer_id": "c-{c}", "amount": "{a}.{b:02}", "currency": "EUR",
            "status": "paid", "event_time": "2026-11-24T06:30:00Z",
            "shipping": {{"city": "Lyon", "country": "FR", "express": {e}}},
            "items": [{{"sku": "sku-{id}", "qty": {q}}}, {{"sku": "extra", "qty": 1}}],
            "ignored_extra_field": {{"deep": [1, 2, 3]}}}}"#,
        c = id % 97,
        a = id % 1000,
        b = id % 100,
        e = id % 2 == 0,
        q = id % 5 + 1,
    )
}

/// The accounting invariant every converted batch must keep.
fn check(rows: &RowBatch, source: usize) {
    assert_eq!(rows.source_records, source);
    assert_eq!(
        rows.rows.num_rows() + rows.rejects.len() + rows.skipped,
        source,
        "rows + rejects + skipped == source records"
    );
    assert_eq!(rows.event_time_ms.len(), rows.rows.num_rows());
}

fn convert(c: &mut JsonConverter, records: Vec<RawRecord>) -> RowBatch {
    let n = records.len();
    let (first, last) = (records[0].offset, records[n - 1].offset);
    let out = c.convert(batch(records)).unwrap();
    check(&out, n);
    assert_eq!((out.first_offset, out.last_offset), (first, last));
    assert_eq!(out.partition, TopicPartition::new("orders", 3));
    out
}

fn offsets(rows: &RowBatch) -> Vec<i64> {
    let col = rows.rows.column_by_name("_offset").expect("_offset column");
    col.as_primitive::<Int64Type>().values().to_vec()
}

/// Converts `bad` alone between two good orders, dead-letter mode, and
/// returns its reason.
fn reject_reason(bad: RawRecord) -> String {
    let mut c = orders("dead_letter", &["offset"]);
    let out = convert(
        &mut c,
        vec![text(10, &order(10)), bad, text(12, &order(12))],
    );
    assert_eq!(offsets(&out), [10, 12], "the good records around it stay");
    assert_eq!(out.rejects.len(), 1);
    assert_eq!(out.rejects[0].offset, 11);
    out.rejects[0].reason.clone()
}

// ---------------------------------------------------------------- fast path

#[test]
fn bulk_decodes_every_column_of_orders() {
    let mut c = orders("fail", &[]);
    let out = convert(&mut c, (1..=3).map(|i| text(i, &order(i))).collect());
    assert!(out.rejects.is_empty());
    assert_eq!(out.skipped, 0);
    let rows = &out.rows;
    assert_eq!(rows.num_rows(), 3);
    assert_eq!(rows.schema(), orders_schema());

    let ids = rows.column(0).as_primitive::<Int64Type>();
    assert_eq!(ids.values(), &[1, 2, 3]);
    let amount = rows
        .column(2)
        .as_any()
        .downcast_ref::<Decimal128Array>()
        .unwrap();
    assert_eq!(amount.value_as_string(1), "2.02");
    let status = rows.column(4).as_string::<i32>();
    assert_eq!(status.value(0), "paid");
    let at = rows
        .column(5)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .unwrap();
    assert_eq!(at.value(0), 1_795_501_800_000_000);
    assert_eq!(out.event_time_ms, [1_795_501_800_000; 3]);

    let shipping = rows
        .column(6)
        .as_any()
        .downcast_ref::<StructArray>()
        .unwrap();
    assert_eq!(
        shipping
            .column_by_name("city")
            .unwrap()
            .as_string::<i32>()
            .value(2),
        "Lyon"
    );
    assert!(shipping
        .column_by_name("express")
        .unwrap()
        .as_boolean()
        .value(1));
    let items = rows.column(7).as_any().downcast_ref::<ListArray>().unwrap();
    assert_eq!(items.value_length(0), 2);
    let first_items = items.value(0);
    let item = first_items.as_struct();
    assert_eq!(item.column(0).as_string::<i32>().value(0), "sku-1");
    assert_eq!(item.column(1).as_primitive::<Int32Type>().value(0), 2);
}

#[test]
fn converter_is_reusable_across_batches_of_any_size() {
    let mut c = orders("fail", &["offset"]);
    for size in [1usize, 3, 500, 2, 3000, 64, 65] {
        let records = (0..size as i64).map(|i| text(i * 2, &order(i))).collect();
        let out = convert(&mut c, records);
        assert_eq!(out.rows.num_rows(), size);
        assert_eq!(
            offsets(&out),
            (0..size as i64).map(|i| i * 2).collect::<Vec<_>>()
        );
    }
}

#[test]
fn extra_fields_are_ignored_and_whitespace_is_fine() {
    let mut c = orders("fail", &[]);
    let payload = format!("\n  {}  \r\n", order(5));
    let out = convert(&mut c, vec![text(0, &payload)]);
    assert_eq!(out.rows.num_rows(), 1);
}

#[test]
fn timestamps_from_rfc3339_with_offsets_and_epoch_integers() {
    let schema = parse_schema(
        r#"{"fields": [{"name": "t", "type": "timestamp[us, UTC]"},
                       {"name": "ms", "type": "timestamp[ms]"},
                       {"name": "naive", "type": "timestamp[us, none]"}]}"#,
        "inline",
    )
    .unwrap();
    let mut c = JsonConverter::with_schema(schema, &cfg(json!({"timestamp_field": "t"}))).unwrap();
    let out = convert(
        &mut c,
        vec![
            text(
                0,
                r#"{"t": "2026-11-24T06:30:00Z", "ms": 1795501800000, "naive": "2026-11-24T06:30:00"}"#,
            ),
            text(
                1,
                r#"{"t": "2026-11-24T06:30:00.123+01:00", "ms": "2026-11-24T06:30:00Z"}"#,
            ),
            text(2, r#"{"t": 1795501800000000}"#),
            text(3, r#"{"t": "2026-11-24 06:30:00.5"}"#),
        ],
    );
    assert!(out.rejects.is_empty(), "{:?}", out.rejects);
    let t = out
        .rows
        .column(0)
        .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
    assert_eq!(
        t.values(),
        &[
            1_795_501_800_000_000,
            1_795_498_200_123_000,
            1_795_501_800_000_000,
            1_795_501_800_500_000
        ]
    );
    let ms = out
        .rows
        .column(1)
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .unwrap();
    assert_eq!(ms.value(0), 1_795_501_800_000);
    assert_eq!(ms.value(1), 1_795_501_800_000);
    let naive = out
        .rows
        .column(2)
        .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
    assert_eq!(naive.value(0), 1_795_501_800_000_000);
    assert_eq!(
        out.event_time_ms,
        [
            1_795_501_800_000,
            1_795_498_200_123,
            1_795_501_800_000,
            1_795_501_800_500
        ]
    );
}

// ---------------------------------------------------------------- rejects

#[test]
fn tombstone_is_rejected() {
    assert_eq!(reject_reason(rec(11, None)), TOMBSTONE);
}

#[test]
fn empty_payload_is_rejected() {
    let r = reject_reason(text(11, ""));
    assert_eq!(r, "payload is empty: expected one JSON object");
    let r = reject_reason(text(11, "  \n "));
    assert_eq!(r, "payload is empty: expected one JSON object");
}

#[test]
fn two_objects_in_one_payload_are_rejected() {
    let two = format!("{}\n{}", order(11), order(111));
    let r = reject_reason(text(11, &two));
    assert_eq!(
        r,
        "payload holds more than one JSON value: expected exactly one object"
    );
}

#[test]
fn non_object_payloads_are_rejected() {
    for (payload, kind) in [
        ("[1, 2]", "array"),
        ("42", "number"),
        ("\"text\"", "string"),
        ("true", "boolean"),
        ("null", "null"),
    ] {
        let r = reject_reason(text(11, payload));
        assert_eq!(
            r,
            format!("payload is a JSON {kind}, expected an object"),
            "{payload}"
        );
    }
}

#[test]
fn truncated_and_invalid_json_are_rejected() {
    let full = order(11);
    let r = reject_reason(text(11, &full[..full.len() / 2]));
    assert!(
        r.starts_with("payload is not valid JSON: EOF while parsing"),
        "{r}"
    );
    let r = reject_reason(text(11, r#"{"order_id": 1, oops}"#));
    assert!(
        r.starts_with("payload is not valid JSON: key must be a string"),
        "{r}"
    );
    let r = reject_reason(text(11, &format!("{full} trailing")));
    assert!(
        r.starts_with("payload has invalid data after the JSON object"),
        "{r}"
    );
}

#[test]
fn non_utf8_is_rejected() {
    let mut payload = order(11).into_bytes();
    let at = payload.iter().position(|&b| b == b'L').unwrap(); // inside "Lyon"
    payload[at] = 0xff;
    let r = reject_reason(rec(11, payload));
    assert_eq!(
        r,
        format!("payload is not valid UTF-8 (invalid byte at position {at})")
    );
}

#[test]
fn missing_required_field_names_the_field() {
    let r = reject_reason(text(11, &order(11).replace(r#""order_id": 11,"#, "")));
    assert_eq!(
        r,
        r#"field "order_id": is missing or null, but the schema does not allow null"#
    );
    let r = reject_reason(text(
        11,
        &order(11).replace(r#""order_id": 11"#, r#""order_id": null"#),
    ));
    assert!(
        r.starts_with(r#"field "order_id": is missing or null"#),
        "{r}"
    );
}

#[test]
fn wrong_type_names_the_field_and_keeps_arrows_message() {
    let r = reject_reason(text(
        11,
        &order(11).replace(r#""order_id": 11"#, r#""order_id": "eleven""#),
    ));
    assert!(r.starts_with(r#"field "order_id": "#), "{r}");
    assert!(r.contains("eleven") && r.contains("Int64"), "{r}");

    let r = reject_reason(text(
        11,
        &order(11).replace(r#""amount": "11.11""#, r#""amount": "lots""#),
    ));
    assert!(r.starts_with(r#"field "amount": "#), "{r}");
    assert!(r.contains("lots"), "{r}");

    let r = reject_reason(text(
        11,
        &order(11).replace(r#""amount": "11.11""#, r#""amount": 12345678901234.5"#),
    ));
    assert!(
        r.starts_with(r#"field "amount": "#),
        "decimal overflow: {r}"
    );

    let r = reject_reason(text(
        11,
        &order(11).replace(r#""status": "paid""#, r#""status": 7"#),
    ));
    assert!(r.starts_with(r#"field "status": expected string"#), "{r}");

    let r = reject_reason(text(
        11,
        &order(11).replace(r#""express": false"#, r#""express": "yes""#),
    ));
    assert!(r.starts_with(r#"field "shipping.express": "#), "{r}");

    let r = reject_reason(text(
        11,
        &order(11).replace(r#""qty": 2"#, r#""qty": "two""#),
    ));
    assert!(r.starts_with(r#"field "items.qty": "#), "{r}");
}

#[test]
fn unparseable_timestamp_names_the_field() {
    let r = reject_reason(text(
        11,
        &order(11).replace("2026-11-24T06:30:00Z", "yesterday at noon"),
    ));
    assert!(
        r.starts_with(r#"field "event_time": failed to parse "yesterday at noon""#),
        "{r}"
    );
}

#[test]
fn long_reasons_are_cut() {
    let long = "x".repeat(5_000);
    let r = reject_reason(text(
        11,
        &order(11).replace(r#""order_id": 11"#, &format!(r#""order_id": "{long}""#)),
    ));
    assert!(r.len() <= MAX_REASON_BYTES + '…'.len_utf8(), "{}", r.len());
    assert!(r.ends_with('…'));
}

// ---------------------------------------------------------------- policies

fn mixed() -> Vec<RawRecord> {
    vec![
        text(100, &order(1)),
        text(101, "not json"),
        rec(103, None),
        text(104, &order(4)),
        text(105, &order(5).replace("2026-11-24T06:30:00Z", "nope")),
        text(107, &order(7)),
    ]
}

#[test]
fn fail_policy_returns_the_first_bad_record() {
    let mut c = orders("fail", &[]);
    match c.convert(batch(mixed())) {
        Err(ConvertError::Record {
            partition,
            offset,
            reason,
        }) => {
            assert_eq!(partition, TopicPartition::new("orders", 3));
            assert_eq!(offset, 101);
            assert!(reason.starts_with("payload is not valid JSON"), "{reason}");
        }
        other => panic!("expected a record error, got {other:?}"),
    }
    // A tombstone alone fails too.
    match c.convert(batch(vec![text(1, &order(1)), rec(2, None)])) {
        Err(ConvertError::Record {
            offset: 2, reason, ..
        }) => assert_eq!(reason, TOMBSTONE),
        other => panic!("expected a record error, got {other:?}"),
    }
    // And the converter still works afterwards.
    let out = convert(&mut c, vec![text(3, &order(3))]);
    assert_eq!(out.rows.num_rows(), 1);
}

#[test]
fn skip_policy_counts_and_drops() {
    let mut c = orders("skip", &["offset"]);
    let out = convert(&mut c, mixed());
    assert_eq!(out.skipped, 3);
    assert!(out.rejects.is_empty());
    assert_eq!(offsets(&out), [100, 104, 107]);
}

#[test]
fn dead_letter_policy_keeps_good_rows_in_order_with_their_offsets() {
    let mut c = orders("dead_letter", &["offset", "key"]);
    let out = convert(&mut c, mixed());
    assert_eq!(out.skipped, 0);
    assert_eq!(offsets(&out), [100, 104, 107]);
    let ids = out.rows.column(0).as_primitive::<Int64Type>();
    assert_eq!(ids.values(), &[1, 4, 7]);
    let keys = out.rows.column_by_name("_key").unwrap().as_string::<i32>();
    assert_eq!(
        keys.iter().collect::<Vec<_>>(),
        [Some("k100"), Some("k104"), Some("k107")]
    );

    let rejected: Vec<i64> = out.rejects.iter().map(|r| r.offset).collect();
    assert_eq!(rejected, [101, 103, 105]);
    let r = &out.rejects[0];
    assert_eq!(r.partition, TopicPartition::new("orders", 3));
    assert_eq!(r.payload.as_deref(), Some(&b"not json"[..]));
    assert_eq!(r.key.as_deref(), Some(&b"k101"[..]));
    assert_eq!(r.timestamp_ms, Some(1_000_101));
    assert_eq!(out.rejects[1].reason, TOMBSTONE);
    assert!(out.rejects[2].reason.starts_with(r#"field "event_time": "#));
}

#[test]
fn many_bad_records_in_a_large_batch_are_all_found() {
    let mut c = orders("dead_letter", &["offset"]);
    let n = 5_000i64;
    let is_bad = |i: i64| i == 0 || i == n - 1 || i % 97 == 0 || (2000..2010).contains(&i);
    let records: Vec<RawRecord> = (0..n)
        .map(|i| {
            let offset = 10 * i;
            match (is_bad(i), i % 3) {
                (false, _) => text(offset, &order(i)),
                (true, 0) => text(offset, &order(i).replace(r#""qty": "#, r#""qty": "x"#)),
                (true, 1) => text(offset, &order(i)[..40]),
                (true, _) => text(offset, &format!("{} {}", order(i), order(i))),
            }
        })
        .collect();
    let out = convert(&mut c, records);
    let good: Vec<i64> = (0..n).filter(|&i| !is_bad(i)).map(|i| 10 * i).collect();
    let bad: Vec<i64> = (0..n).filter(|&i| is_bad(i)).map(|i| 10 * i).collect();
    assert_eq!(offsets(&out), good);
    assert_eq!(
        out.rejects.iter().map(|r| r.offset).collect::<Vec<_>>(),
        bad
    );
    let ids = out.rows.column(0).as_primitive::<Int64Type>();
    assert_eq!(
        ids.values().to_vec(),
        good.iter().map(|o| o / 10).collect::<Vec<_>>()
    );

    // The next, clean batch goes through the fast path again.
    let out = convert(&mut c, (0..100).map(|i| text(i, &order(i))).collect());
    assert_eq!(out.rows.num_rows(), 100);
}

/// The values of the first column, an int64 one.
fn first_column(rows: &RowBatch) -> Vec<i64> {
    rows.rows
        .column(0)
        .as_primitive::<Int64Type>()
        .values()
        .to_vec()
}

/// A converter with a small schema of ints, a timestamp and a struct.
fn events(on_error: &str) -> JsonConverter {
    let schema = parse_schema(
        r#"{"fields": [
            {"name": "id", "type": "int64", "nullable": false},
            {"name": "n", "type": "int32"},
            {"name": "at", "type": "timestamp[us, UTC]"},
            {"name": "tags", "type": "struct", "fields": [{"name": "k", "type": "string"}]}
        ]}"#,
        "test",
    )
    .unwrap();
    let c = cfg(json!({"timestamp_field": "at", "on_error": on_error, "metadata": ["offset"]}));
    JsonConverter::with_schema(schema, &c).unwrap()
}

#[test]
fn records_the_direct_decoder_gives_up_on_are_decoded_or_rejected_by_arrow_json_in_place() {
    let mut c = events("dead_letter");
    let n = 3_000i64;
    let event = |i: i64| {
        format!(
            r#"{{"id":{i},"n":{},"at":"2026-11-24T06:30:00Z","tags":{{"k":"t{i}"}}}}"#,
            i % 7
        )
    };
    // Bad: rejected by arrow-json too. Loose: arrow-json reads them (a number
    // written as a string, a trailing comma), the direct decoder does not.
    let kind = |i: i64| match i {
        _ if i % 101 == 0 => "bad",
        _ if i % 211 == 5 => "loose",
        _ => "good",
    };
    let records: Vec<RawRecord> = (0..n)
        .map(|i| match (kind(i), i % 2) {
            ("good", _) => text(i, &event(i)),
            ("loose", 0) => text(i, &event(i).replace(r#""n":"#, r#""n":"7","x":"#)),
            ("loose", _) => text(i, &event(i).replace("}}", "},}")),
            (_, 0) => text(i, &event(i).replace(r#""id":"#, r#""id":"x"#)),
            _ => text(i, &event(i)[..30]),
        })
        .collect();
    let out = convert(&mut c, records);
    let rows: Vec<i64> = (0..n).filter(|&i| kind(i) != "bad").collect();
    assert_eq!(offsets(&out), rows);
    let bad: Vec<i64> = (0..n).filter(|&i| kind(i) == "bad").collect();
    let rejected: Vec<i64> = out.rejects.iter().map(|r| r.offset).collect();
    assert_eq!(rejected, bad);
    assert_eq!(first_column(&out), rows);
    let ns = out.rows.column(1).as_primitive::<Int32Type>();
    for (row, &i) in rows.iter().enumerate() {
        let expected = if kind(i) == "loose" && i % 2 == 0 {
            7
        } else {
            (i % 7) as i32
        };
        assert_eq!(ns.value(row), expected, "record {i}");
    }
    let tags = out.rows.column(3).as_struct().column(0).as_string::<i32>();
    assert_eq!(
        tags.value(rows.len() - 1),
        format!("t{}", rows[rows.len() - 1])
    );

    // A batch the direct decoder gives up on entirely (every number a string).
    let loose: Vec<RawRecord> = (0..500)
        .map(|i| {
            text(
                i,
                &event(i).replace(&format!(r#""id":{i}"#), &format!(r#""id":"{i}""#)),
            )
        })
        .collect();
    let out = convert(&mut c, loose);
    assert_eq!(first_column(&out), (0..500).collect::<Vec<i64>>());
    assert!(out.rejects.is_empty());
}

#[test]
fn a_batch_of_only_bad_records_yields_no_rows() {
    let mut c = orders("dead_letter", &["offset"]);
    let out = convert(&mut c, vec![text(1, "{"), rec(2, None)]);
    assert_eq!(out.rows.num_rows(), 0);
    assert_eq!(out.rows.schema(), c.schema().unwrap());
    assert_eq!(out.rejects.len(), 2);
}

#[test]
fn empty_source_batch_is_an_error() {
    let mut c = orders("fail", &[]);
    assert!(matches!(
        c.convert(batch(vec![])),
        Err(ConvertError::Internal { .. })
    ));
}

// ---------------------------------------------------------------- metadata

#[test]
fn metadata_columns_follow_the_payload_in_the_order_given() {
    let mut c = orders(
        "dead_letter",
        &["key", "timestamp", "offset", "partition", "topic"],
    );
    let schema = c.schema().unwrap();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        &names[8..],
        ["_key", "_timestamp", "_offset", "_partition", "_topic"]
    );
    for name in &names[8..] {
        assert!(METADATA_COLUMNS.contains(name));
    }
    assert_eq!(
        schema.field(9).data_type(),
        &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
    );

    let mut no_ts = text(6, &order(6));
    no_ts.timestamp_ms = None;
    no_ts.key = Some(Bytes::from_static(b"k\xff6"));
    let mut no_key = text(7, &order(7));
    no_key.key = None;
    let out = convert(&mut c, vec![text(5, &order(5)), no_ts, no_key]);
    let rows = &out.rows;
    assert_eq!(rows.schema(), schema);

    let key = rows
        .column(8)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert_eq!(key.value(0), "k5");
    assert_eq!(key.value(1), "k\u{fffd}6");
    assert!(key.is_null(2));
    let ts = rows
        .column(9)
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .unwrap();
    assert_eq!(ts.value(0), 1_000_005);
    assert!(ts.is_null(1));
    assert_eq!(ts.timezone(), Some("UTC"));
    assert_eq!(
        rows.column(10).as_primitive::<Int64Type>().values(),
        &[5, 6, 7]
    );
    let part = rows
        .column(11)
        .as_any()
        .downcast_ref::<Int32Array>()
        .unwrap();
    assert_eq!(part.values(), &[3, 3, 3]);
    let topic = rows.column(12).as_string::<i32>();
    assert_eq!(topic.iter().collect::<Vec<_>>(), [Some("orders"); 3]);
}

#[test]
fn metadata_clash_or_duplicate_is_a_construction_error() {
    let schema = parse_schema(
        r#"{"fields": [{"name": "_offset", "type": "int64"}]}"#,
        "inline",
    )
    .unwrap();
    let e = JsonConverter::with_schema(schema, &cfg(json!({"metadata": ["offset"]}))).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"converter.metadata: column "_offset" clashes with a payload field of the same name"#
    );
    let e = JsonConverter::with_schema(orders_schema(), &cfg(json!({"metadata": ["key", "key"]})))
        .unwrap_err();
    assert_eq!(e.to_string(), "converter.metadata: _key is listed twice");
}

// ---------------------------------------------------------------- event time

#[test]
fn event_time_from_field_then_source_timestamp_then_now() {
    let schema = parse_schema(
        r#"{"fields": [{"name": "id", "type": "int64"},
                       {"name": "t", "type": "timestamp[ns, UTC]"}]}"#,
        "inline",
    )
    .unwrap();
    let mut c = JsonConverter::with_schema(schema, &cfg(json!({"timestamp_field": "t"}))).unwrap();
    let mut no_source_ts = text(3, r#"{"id": 3}"#);
    no_source_ts.timestamp_ms = None;
    let before = now_ms();
    let out = convert(
        &mut c,
        vec![
            text(1, r#"{"id": 1, "t": "2026-11-24T06:30:00.123456789Z"}"#),
            text(2, r#"{"id": 2, "t": null}"#),
            no_source_ts,
            text(4, r#"{"id": 4, "t": -1}"#),
        ],
    );
    let after = now_ms();
    assert_eq!(out.event_time_ms[0], 1_795_501_800_123);
    assert_eq!(
        out.event_time_ms[1], 1_000_002,
        "source timestamp when the field is null"
    );
    assert!(
        (before..=after).contains(&out.event_time_ms[2]),
        "conversion time when neither is there"
    );
    assert_eq!(out.event_time_ms[3], -1, "floor division before the epoch");
}

#[test]
fn event_time_without_timestamp_field_is_the_source_timestamp() {
    let c = cfg(json!({}));
    let mut c = JsonConverter::with_schema(orders_schema(), &c).unwrap();
    let out = convert(&mut c, vec![text(1, &order(1)), text(2, &order(2))]);
    assert_eq!(out.event_time_ms, [1_000_001, 1_000_002]);
}

#[test]
fn event_time_in_seconds_and_millis_columns() {
    let schema = parse_schema(
        r#"{"fields": [{"name": "s", "type": "timestamp[s]"}, {"name": "ms", "type": "timestamp[ms]"}]}"#,
        "inline",
    )
    .unwrap();
    for (field, payload, expected) in [
        ("s", r#"{"s": 1795501800}"#, 1_795_501_800_000),
        ("ms", r#"{"ms": 1795501800123}"#, 1_795_501_800_123),
    ] {
        let mut c =
            JsonConverter::with_schema(schema.clone(), &cfg(json!({"timestamp_field": field})))
                .unwrap();
        let out = convert(&mut c, vec![text(0, payload)]);
        assert_eq!(out.event_time_ms, [expected]);
    }
}

#[test]
fn timestamp_field_must_exist_and_be_a_timestamp() {
    let e = JsonConverter::with_schema(orders_schema(), &cfg(json!({"timestamp_field": "when"})))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"converter.timestamp_field: field "when" is not a top-level field of the schema"#
    );
    let e = JsonConverter::with_schema(orders_schema(), &cfg(json!({"timestamp_field": "status"})))
        .unwrap_err();
    assert!(
        e.to_string().starts_with(
            r#"converter.timestamp_field: field "status" has type Utf8; it must be a timestamp"#
        ),
        "{e}"
    );
}

// ---------------------------------------------------------------- construction

#[test]
fn new_resolves_the_schema_path_against_base_dir() {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let c = JsonConverter::new(
        &cfg(json!({"schema": "config/schemas/orders.json", "timestamp_field": "event_time"})),
        &base,
    )
    .unwrap();
    assert_eq!(c.schema().unwrap(), orders_schema());

    let absolute = orders_path().canonicalize().unwrap();
    let c =
        JsonConverter::new(&cfg(json!({"schema": absolute})), Path::new("/nonexistent")).unwrap();
    assert_eq!(c.schema().unwrap(), orders_schema());

    let e = JsonConverter::new(&cfg(json!({"schema": "nope.json"})), &base).unwrap_err();
    assert!(matches!(e, FormatError::Read { .. }), "{e}");
    assert!(e.to_string().contains("nope.json"), "{e}");
}

#[test]
fn new_needs_exactly_one_of_schema_and_infer() {
    let e = JsonConverter::new(&cfg(json!({})), Path::new(".")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("converter.schema: a schema file is required"),
        "{e}"
    );
    let e = JsonConverter::new(
        &cfg(json!({"schema": "x.json", "infer": true})),
        Path::new("."),
    )
    .unwrap_err();
    assert!(
        e.to_string().starts_with("converter.schema: set either"),
        "{e}"
    );
    let e = JsonConverter::new(
        &cfg(json!({"infer": true, "infer_records": 0})),
        Path::new("."),
    )
    .unwrap_err();
    assert!(e.to_string().starts_with("converter.infer_records"), "{e}");
}

// ---------------------------------------------------------------- inference

fn inferring(extra: serde_json::Value) -> JsonConverter {
    let mut v = json!({"infer": true, "on_error": "dead_letter"});
    if let (Some(v), serde_json::Value::Object(extra)) = (v.as_object_mut(), extra) {
        v.extend(extra);
    }
    JsonConverter::new(&cfg(v), Path::new(".")).unwrap()
}

#[test]
fn inference_fixes_the_schema_after_the_first_batch_when_strict() {
    let mut c = inferring(
        json!({"timestamp_field": "at", "metadata": ["offset"], "schema_evolution": "strict"}),
    );
    assert!(c.schema().is_none(), "no schema before the first batch");
    let out = convert(
        &mut c,
        vec![
            text(0, "garbage"),
            text(
                1,
                r#"{"id": 1, "name": "a", "at": "2026-11-24T06:30:00Z", "tags": ["x"], "nothing": null}"#,
            ),
            text(
                2,
                r#"{"id": 2, "name": 5, "at": "2026-11-24T06:30:01Z", "price": 1.5, "ship": {"zip": 69001, "city": "Lyon"}}"#,
            ),
            text(3, r#"{"id": 3, "at": "not a time"}"#),
        ],
    );
    let schema = c.schema().unwrap();
    let expected = Schema::new(vec![
        Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("id", DataType::Int64, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("nothing", DataType::Utf8, true),
        Field::new("price", DataType::Float64, true),
        Field::new(
            "ship",
            DataType::Struct(
                vec![
                    Field::new("city", DataType::Utf8, true),
                    Field::new("zip", DataType::Int64, true),
                ]
                .into(),
            ),
            true,
        ),
        Field::new(
            "tags",
            DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
            true,
        ),
        Field::new("_offset", DataType::Int64, false),
    ]);
    assert_eq!(schema.as_ref(), &expected, "sorted by name at every depth");
    assert_eq!(offsets(&out), [1, 2]);
    // Numbers are accepted in inferred string columns.
    assert_eq!(out.rows.column(2).as_string::<i32>().value(1), "5");
    assert_eq!(out.event_time_ms, [1_795_501_800_000, 1_795_501_801_000]);
    let rejected: Vec<i64> = out.rejects.iter().map(|r| r.offset).collect();
    assert_eq!(rejected, [0, 3]);
    assert!(out.rejects[0]
        .reason
        .starts_with("payload is not valid JSON"));
    assert!(
        out.rejects[1].reason.starts_with(r#"field "at": "#),
        "{}",
        out.rejects[1].reason
    );

    // A later batch with new fields keeps the schema: extra fields are ignored.
    let out = convert(&mut c, vec![text(9, r#"{"id": 9, "brand_new": true}"#)]);
    assert_eq!(c.schema().unwrap(), schema);
    assert_eq!(out.rows.schema(), schema);
    assert_eq!(offsets(&out), [9]);
}

#[test]
fn inference_reads_integer_timestamps_as_epoch_millis() {
    let mut c = inferring(json!({"timestamp_field": "ts"}));
    let out = convert(&mut c, vec![text(0, r#"{"ts": 1795501800123, "v": 1}"#)]);
    assert_eq!(
        c.schema().unwrap().field(0).data_type(),
        &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
    );
    assert_eq!(out.event_time_ms, [1_795_501_800_123]);
}

#[test]
fn inference_looks_at_infer_records_records_only() {
    let mut c = inferring(json!({"infer_records": 1, "schema_evolution": "strict"}));
    let out = convert(
        &mut c,
        vec![text(0, r#"{"a": 1}"#), text(1, r#"{"a": 2, "b": "x"}"#)],
    );
    assert_eq!(c.schema().unwrap().fields().len(), 1);
    assert_eq!(out.rows.num_rows(), 2);
}

#[test]
fn inference_waits_for_a_batch_with_a_json_object() {
    let mut c = inferring(json!({}));
    let out = convert(&mut c, vec![text(0, "nope"), rec(1, None)]);
    assert!(c.schema().is_none());
    assert_eq!(out.rows.num_rows(), 0);
    assert_eq!(out.rejects.len(), 2);
    let out = convert(&mut c, vec![text(2, r#"{"a": 1}"#)]);
    assert_eq!(out.rows.num_rows(), 1);
    assert!(c.schema().is_some());
}

#[test]
fn inference_checks_the_timestamp_field() {
    let mut c = inferring(json!({"timestamp_field": "ts"}));
    let e = c
        .convert(batch(vec![text(0, r#"{"ts": true}"#)]))
        .unwrap_err();
    assert!(
        e.to_string()
            .contains(r#"converter.timestamp_field: field "ts" was inferred as Boolean"#),
        "{e}"
    );
    let mut c = inferring(json!({"timestamp_field": "ts"}));
    let e = c
        .convert(batch(vec![text(0, r#"{"other": 1}"#)]))
        .unwrap_err();
    assert!(
        e.to_string().contains(r#"field "ts" occurs in none"#),
        "{e}"
    );

    let mut c = inferring(json!({"metadata": ["topic"]}));
    let e = c
        .convert(batch(vec![text(0, r#"{"_topic": "x"}"#)]))
        .unwrap_err();
    assert!(e.to_string().contains("clashes"), "{e}");
}

// ---------------------------------------------------------------- evolution

fn column<'a>(out: &'a RowBatch, name: &str) -> &'a ArrayRef {
    out.rows
        .column_by_name(name)
        .unwrap_or_else(|| panic!("column {name}"))
}

#[test]
fn merge_adds_new_fields_widens_types_and_rejects_incompatible_records() {
    let mut c = inferring(json!({"metadata": ["offset"]}));
    let out = convert(
        &mut c,
        vec![
            text(0, r#"{"id": 0, "qty": 2}"#),
            text(1, r#"{"id": 1, "qty": 3}"#),
        ],
    );
    let names = |out: &RowBatch| -> Vec<String> {
        out.rows
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    };
    assert_eq!(names(&out), ["id", "qty", "_offset"]);

    // A new field: appended after the metadata columns, null where absent.
    let out = convert(
        &mut c,
        vec![
            text(2, r#"{"id": 2, "qty": 4, "note": "hi"}"#),
            text(3, r#"{"id": 3, "qty": 5}"#),
        ],
    );
    assert_eq!(names(&out), ["id", "qty", "_offset", "note"]);
    let note = column(&out, "note").as_string::<i32>();
    assert_eq!((note.value(0), note.is_null(1)), ("hi", true));

    // A fraction in an integer column widens it to float64 (not truncated).
    let out = convert(&mut c, vec![text(4, r#"{"id": 4, "qty": 2.5}"#)]);
    assert_eq!(
        out.rows
            .schema()
            .field_with_name("qty")
            .unwrap()
            .data_type(),
        &DataType::Float64
    );
    assert_eq!(
        column(&out, "qty").as_primitive::<Float64Type>().value(0),
        2.5
    );
    let grown = c.schema().unwrap();
    assert_eq!(out.rows.schema(), grown);

    // Old and new shapes alternating: cast to the same schema, no change.
    let out = convert(
        &mut c,
        vec![
            text(5, r#"{"id": 5, "qty": 7}"#),
            text(6, r#"{"id": 6, "qty": 1.5, "note": "x"}"#),
            text(7, r#"{"id": 7}"#),
        ],
    );
    assert_eq!(out.rows.schema(), grown);
    let qty = column(&out, "qty").as_primitive::<Float64Type>();
    assert_eq!(
        (qty.value(0), qty.value(1), qty.is_null(2)),
        (7.0, 1.5, true)
    );
    assert_eq!(c.table.changes(), 2);

    // Not widenings: the records are rejected, naming the field.
    let out = convert(
        &mut c,
        vec![
            text(8, r#"{"id": 8, "qty": "lots"}"#),
            text(9, r#"{"id": 9, "qty": {"a": 1}}"#),
            text(10, r#"{"id": 10, "qty": 1}"#),
        ],
    );
    assert_eq!(offsets(&out), [10]);
    assert_eq!(out.rows.schema(), grown);
    let reasons: Vec<(i64, &str)> = out
        .rejects
        .iter()
        .map(|r| (r.offset, r.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert_eq!(reasons[0].0, 8);
    assert!(reasons[0].1.starts_with(r#"field "qty": "#), "{reasons:?}");
    assert_eq!(reasons[1].0, 9);
    assert!(
        reasons[1]
            .1
            .starts_with(r#"field "qty": type Float64 cannot change to Struct"#),
        "{reasons:?}"
    );
    assert_eq!(c.table.changes(), 2);
}

#[test]
fn the_fit_check_flags_only_records_that_need_a_wider_schema() {
    let fields: Fields = vec![
        Field::new("n", DataType::Int64, true),
        Field::new("s", DataType::Utf8, true),
        Field::new(
            "p",
            DataType::Struct(vec![Field::new("x", DataType::Float64, true)].into()),
            true,
        ),
        Field::new(
            "l",
            DataType::List(Arc::new(Field::new_list_field(DataType::Int64, true))),
            true,
        ),
    ]
    .into();
    let fits = |json: &str, coerce| evolve::fits(json.as_bytes(), &fields, coerce);
    for ok in [
        r#"{"n": 1, "s": "a", "p": {"x": 1.5}, "l": [1, 2]}"#,
        r#"{"n": null, "p": {"x": 2}, "l": []}"#,
        r#"{"n": "12"}"#,
        r#"{"gone": null, "empty": [], "nothing": {"deep": [null]}}"#,
        "not json",
        "[1, 2]",
    ] {
        assert!(fits(ok, false), "{ok} fits");
    }
    for bad in [
        r#"{"n": 1.5}"#,
        r#"{"new": 1}"#,
        r#"{"p": {"x": 1, "y": "z"}}"#,
        r#"{"l": [1, 2.5]}"#,
        r#"{"n": {"a": 1}}"#,
        r#"{"s": [1]}"#,
        r#"{"n": true}"#,
    ] {
        assert!(!fits(bad, false), "{bad} does not fit");
    }
    assert!(!fits(r#"{"s": 5}"#, false), "a number in a string column");
    assert!(
        fits(r#"{"s": 5}"#, true),
        "unless inferred columns coerce it"
    );
}

#[test]
fn merge_grows_within_the_first_batch_and_waits_for_a_value() {
    let mut c = inferring(json!({"infer_records": 1}));
    let out = convert(
        &mut c,
        vec![
            text(0, r#"{"a": 1}"#),
            text(1, r#"{"a": 2, "b": "x", "c": null, "d": []}"#),
        ],
    );
    let fields: Vec<&str> = out
        .rows
        .schema_ref()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(
        fields,
        ["a", "b"],
        "fields seen only as null wait for a value"
    );
    let b = column(&out, "b").as_string::<i32>();
    assert_eq!((b.is_null(0), b.value(1)), (true, "x"));
    let out = convert(&mut c, vec![text(2, r#"{"a": 3, "c": {"deep": 1.5}}"#)]);
    assert_eq!(
        out.rows.schema().field(2),
        &Field::new(
            "c",
            DataType::Struct(vec![Field::new("deep", DataType::Float64, true)].into()),
            true
        )
    );
}

#[test]
fn a_schema_file_is_strict_by_default_and_can_start_a_merge() {
    let schema = parse_schema(r#"{"fields": [{"name": "n", "type": "int32"}]}"#, "inline").unwrap();
    let records = || {
        vec![
            text(0, r#"{"n": 5, "extra": 1.5}"#),
            text(1, r#"{"n": 3000000000}"#),
            text(2, r#"{"n": 1}"#),
        ]
    };
    let mut strict =
        JsonConverter::with_schema(schema.clone(), &cfg(json!({"on_error": "dead_letter"})))
            .unwrap();
    let out = convert(&mut strict, records());
    assert_eq!(out.rows.num_columns(), 1, "unknown fields are ignored");
    assert_eq!(out.rejects.len(), 1, "out of the int32 range");

    let mut merging = JsonConverter::with_schema(
        schema,
        &cfg(json!({"on_error": "dead_letter", "schema_evolution": "merge"})),
    )
    .unwrap();
    let out = convert(&mut merging, records());
    assert_eq!(out.rejects.len(), 1, "{:?}", out.rejects);
    assert!(
        out.rejects[0].reason.starts_with(r#"field "n": "#),
        "{}",
        out.rejects[0].reason
    );
    let n = column(&out, "n").as_primitive::<Int32Type>();
    assert_eq!(
        (n.value(0), n.value(1)),
        (5, 1),
        "n keeps its declared type"
    );
    let extra = column(&out, "extra").as_primitive::<Float64Type>();
    assert_eq!((extra.value(0), extra.is_null(1)), (1.5, true));
}

#[test]
fn merge_stops_growing_at_the_field_limit() {
    let mut c = inferring(json!({}));
    convert(&mut c, vec![text(0, r#"{"a": 1}"#)]);
    // Keys that are data: every record brings new ones.
    let records = (1..=(evolve::MAX_FIELDS as i64 + 5))
        .map(|i| text(i, &format!(r#"{{"a": 1, "k{i}": {i}}}"#)))
        .collect();
    let out = convert(&mut c, records);
    assert_eq!(c.schema().unwrap().fields().len(), evolve::MAX_FIELDS);
    assert_eq!(out.rejects.len(), 6, "k1000 to k1005");
    assert!(
        out.rejects[0]
            .reason
            .starts_with(r#"field "k1000": the schema would grow past 1000 fields"#),
        "{}",
        out.rejects[0].reason
    );
}

#[test]
fn merge_refuses_a_field_named_like_a_metadata_column() {
    let mut c = inferring(json!({"metadata": ["offset"]}));
    convert(&mut c, vec![text(0, r#"{"a": 1}"#)]);
    let out = convert(&mut c, vec![text(1, r#"{"a": 2, "_offset": 5}"#)]);
    assert_eq!(out.rejects.len(), 1);
    assert!(
        out.rejects[0].reason.contains("metadata column"),
        "{}",
        out.rejects[0].reason
    );
}

// ---------------------------------------------------------------- speed

/// Prints conversion speed, for clean batches and for batches where one
/// record in a thousand does not fit the schema; asserts nothing about time.
/// Run with `cargo test --release -p tributary-formats --lib throughput -- --nocapture`.
#[test]
fn throughput() {
    let total: i64 = if cfg!(debug_assertions) {
        20_000
    } else {
        1_000_000
    };
    let batch_size = 10_000i64;
    // `merge` adds the check of every record against the schema (nothing
    // evolves here: the records fit the schema file).
    for (bad_every, evolution) in [
        (None, "strict"),
        (Some(1_000), "strict"),
        (None, "merge"),
        (Some(1_000), "merge"),
    ] {
        let mut c = JsonConverter::with_schema(
            orders_schema(),
            &cfg(json!({
                "timestamp_field": "event_time",
                "on_error": "dead_letter",
                "metadata": ["offset", "timestamp"],
                "schema_evolution": evolution,
            })),
        )
        .unwrap();
        let payloads: Vec<Bytes> = (0..batch_size)
            .map(|i| {
                let qty = match bad_every {
                    Some(n) if i % n == n / 2 => "\"many\"".to_string(),
                    _ => (i % 5 + 1).to_string(),
                };
                Bytes::from(format!(
                    r#"{{"order_id":{i},"customer_id":"c-{c}","amount":{a}.{b:02},"currency":"EUR","status":"paid","event_time":"2026-11-24T06:30:{s:02}.{i:06}Z","shipping":{{"city":"Lyon","country":"FR","express":{e}}},"items":[{{"sku":"sku-{i}","qty":{qty}}},{{"sku":"sku-x","qty":1}}]}}"#,
                    c = i % 997,
                    a = i % 1000,
                    b = i % 100,
                    s = i % 60,
                    e = i % 2 == 0,
                ))
            })
            .collect();
        let bytes_per_record =
            payloads.iter().map(Bytes::len).sum::<usize>() as f64 / payloads.len() as f64;
        let (mut rows, mut rejects) = (0, 0);
        let started = Instant::now();
        for start in (0..total).step_by(batch_size as usize) {
            let records = payloads
                .iter()
                .enumerate()
                .map(|(i, p)| RawRecord {
                    offset: start + i as i64,
                    timestamp_ms: Some(0),
                    key: None,
                    payload: Some(p.clone()),
                    headers: Vec::new(),
                })
                .collect();
            let out = c.convert(batch(records)).unwrap();
            check(&out, batch_size as usize);
            rows += out.rows.num_rows();
            rejects += out.rejects.len();
        }
        let secs = started.elapsed().as_secs_f64();
        assert_eq!((rows + rejects) as i64, total);
        println!(
            "throughput ({} build, {evolution}, {}): {total} records of {bytes_per_record:.0} bytes \
             in {secs:.3} s = {:.0} records/s, {:.1} MB/s, {rejects} rejects",
            if cfg!(debug_assertions) { "debug" } else { "release" },
            match bad_every {
                None => "all good".to_string(),
                Some(n) => format!("1 bad in {n}"),
            },
            total as f64 / secs,
            total as f64 * bytes_per_record / secs / 1e6,
        );
    }
}
