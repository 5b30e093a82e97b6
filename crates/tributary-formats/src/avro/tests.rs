//! Avro converter tests: records encoded by the Apache Avro reference
//! implementation (`apache-avro`, not our decoder), schemas served by the
//! testkit's Schema Registry over HTTP.

use std::collections::HashMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int32Type, TimeUnit};
use arrow::util::display::array_value_to_string;
use bytes::Bytes;
use serde_json::json;
use tributary_config::AvroConverterConfig;
use tributary_core::{ConvertError, Converter, RawRecord, RowBatch, SourceBatch, TopicPartition};
use tributary_testkit::avro::apache_avro::{self, types::Value as Avro};
use tributary_testkit::avro::{confluent_avro, confluent_avro_with};
use tributary_testkit::schema_registry::SchemaRegistryServer;

use super::AvroConverter;
use crate::wire::frame_confluent;

fn converter(url: &str, extra: serde_json::Value) -> AvroConverter {
    let mut cfg = json!({"schema_registry": {"url": url}});
    for (k, v) in extra.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    let cfg: AvroConverterConfig = serde_json::from_value(cfg).unwrap();
    AvroConverter::new(&cfg, std::path::Path::new(".")).unwrap()
}

/// Encodes `value` with the reference implementation and frames it.
fn framed(id: u32, schema: &str, value: Avro) -> Vec<u8> {
    confluent_avro(id, &apache_avro::Schema::parse_str(schema).unwrap(), value)
}

fn record(offset: i64, payload: Option<Vec<u8>>) -> RawRecord {
    RawRecord {
        offset,
        timestamp_ms: Some(1_000 + offset),
        key: None,
        payload: payload.map(Bytes::from),
        headers: Vec::new(),
    }
}

fn convert(c: &mut AvroConverter, records: Vec<RawRecord>) -> Result<RowBatch, ConvertError> {
    c.convert(SourceBatch {
        partition: TopicPartition::new("orders", 0),
        records,
    })
}

/// Column `name` of `batch`, each row as display text ("" for null).
fn column(batch: &RowBatch, name: &str) -> Vec<String> {
    let (i, _) = batch
        .rows
        .schema()
        .column_with_name(name)
        .unwrap_or_else(|| panic!("no column {name}"));
    let array = batch.rows.column(i);
    (0..array.len())
        .map(|row| {
            if array.is_null(row) {
                String::new()
            } else {
                array_value_to_string(array, row).unwrap()
            }
        })
        .collect()
}

const ALL_TYPES: &str = r#"{
  "type": "record", "name": "Order", "namespace": "shop",
  "fields": [
    {"name": "id", "type": "long"},
    {"name": "qty", "type": "int"},
    {"name": "name", "type": "string"},
    {"name": "paid", "type": "boolean"},
    {"name": "ratio", "type": "float"},
    {"name": "price", "type": "double"},
    {"name": "raw", "type": "bytes"},
    {"name": "code", "type": {"type": "fixed", "name": "Code", "size": 2}},
    {"name": "address", "type": {"type": "record", "name": "Address", "fields": [
      {"name": "street", "type": "string"},
      {"name": "zip", "type": ["null", "int"]}]}},
    {"name": "note", "type": ["null", "string"]},
    {"name": "coupon", "type": ["string", "null"]},
    {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID", "SHIPPED"]}},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "attrs", "type": {"type": "map", "values": "long"}},
    {"name": "day", "type": {"type": "int", "logicalType": "date"}},
    {"name": "t_ms", "type": {"type": "int", "logicalType": "time-millis"}},
    {"name": "t_us", "type": {"type": "long", "logicalType": "time-micros"}},
    {"name": "at_ms", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "at_us", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "amount", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
    {"name": "big", "type": {"type": "fixed", "name": "Big", "size": 8, "logicalType": "decimal", "precision": 18, "scale": 4}},
    {"name": "uid", "type": {"type": "string", "logicalType": "uuid"}}
  ]
}"#;

fn all_types_value(n: i64, nulls: bool) -> Avro {
    let opt = |present: bool, branch_null: u32, v: Avro| {
        if present {
            Avro::Union(1 - branch_null, Box::new(v))
        } else {
            Avro::Union(branch_null, Box::new(Avro::Null))
        }
    };
    Avro::Record(vec![
        ("id".into(), Avro::Long(n)),
        ("qty".into(), Avro::Int(-3)),
        ("name".into(), Avro::String(format!("order-{n}"))),
        ("paid".into(), Avro::Boolean(true)),
        ("ratio".into(), Avro::Float(0.5)),
        ("price".into(), Avro::Double(12.25)),
        ("raw".into(), Avro::Bytes(vec![1, 2, 255])),
        ("code".into(), Avro::Fixed(2, vec![0xab, 0xcd])),
        (
            "address".into(),
            Avro::Record(vec![
                ("street".into(), Avro::String("Main St".into())),
                ("zip".into(), opt(!nulls, 0, Avro::Int(12345))),
            ]),
        ),
        (
            "note".into(),
            opt(!nulls, 0, Avro::String("fragile".into())),
        ),
        ("coupon".into(), opt(!nulls, 1, Avro::String("XMAS".into()))),
        ("status".into(), Avro::Enum(2, "SHIPPED".into())),
        (
            "tags".into(),
            Avro::Array(vec![Avro::String("a".into()), Avro::String("b".into())]),
        ),
        (
            "attrs".into(),
            Avro::Map(HashMap::from([("k".to_string(), Avro::Long(7))])),
        ),
        ("day".into(), Avro::Date(20_781)),
        ("t_ms".into(), Avro::TimeMillis(23_400_123)),
        ("t_us".into(), Avro::TimeMicros(23_400_123_456)),
        ("at_ms".into(), Avro::TimestampMillis(1_795_501_800_123)),
        ("at_us".into(), Avro::TimestampMicros(1_795_501_800_123_456)),
        // 12345.67 and -1.2345 as two's-complement big-endian unscaled values.
        (
            "amount".into(),
            Avro::Decimal(apache_avro::Decimal::from(
                1_234_567i64.to_be_bytes().to_vec(),
            )),
        ),
        (
            "big".into(),
            Avro::Decimal(apache_avro::Decimal::from(
                (-12_345i64).to_be_bytes().to_vec(),
            )),
        ),
        (
            "uid".into(),
            Avro::Uuid("0193a3f2-7c1e-7b4a-9f00-0123456789ab".parse().unwrap()),
        ),
    ])
}

#[test]
fn decodes_every_avro_type() {
    let server = SchemaRegistryServer::start();
    let id = server.register("orders-value", ALL_TYPES, None);
    let mut c = converter(
        &server.url(),
        json!({"timestamp_field": "at_ms", "metadata": ["offset"]}),
    );
    let out = convert(
        &mut c,
        vec![
            record(10, Some(framed(id, ALL_TYPES, all_types_value(1, false)))),
            record(11, Some(framed(id, ALL_TYPES, all_types_value(2, true)))),
        ],
    )
    .unwrap();
    assert!(out.rejects.is_empty(), "{:?}", out.rejects);
    assert_eq!(out.rows.num_rows(), 2);
    assert_eq!(out.event_time_ms, [1_795_501_800_123, 1_795_501_800_123]);

    let schema = out.rows.schema();
    let ty = |name: &str| schema.field_with_name(name).unwrap().data_type().clone();
    let nullable = |name: &str| schema.field_with_name(name).unwrap().is_nullable();
    assert_eq!(ty("id"), DataType::Int64);
    assert_eq!(ty("qty"), DataType::Int32);
    assert_eq!(ty("ratio"), DataType::Float32);
    assert_eq!(ty("raw"), DataType::Binary);
    assert_eq!(ty("code"), DataType::FixedSizeBinary(2));
    assert!(matches!(ty("address"), DataType::Struct(f) if f.len() == 2 && f[1].is_nullable()));
    assert!(!nullable("name") && nullable("note") && nullable("coupon"));
    assert_eq!(ty("note"), DataType::Utf8);
    assert_eq!(ty("coupon"), DataType::Utf8);
    assert_eq!(
        ty("status"),
        DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
    );
    assert!(matches!(ty("tags"), DataType::List(_)));
    assert!(matches!(ty("attrs"), DataType::Map(_, _)));
    assert_eq!(ty("day"), DataType::Date32);
    assert_eq!(ty("t_ms"), DataType::Time32(TimeUnit::Millisecond));
    assert_eq!(ty("t_us"), DataType::Time64(TimeUnit::Microsecond));
    assert_eq!(
        ty("at_ms"),
        DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
    );
    assert_eq!(
        ty("at_us"),
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
    assert_eq!(ty("amount"), DataType::Decimal128(10, 2));
    assert_eq!(ty("big"), DataType::Decimal128(18, 4));
    assert_eq!(ty("uid"), DataType::FixedSizeBinary(16));
    assert_eq!(schema.field(schema.fields().len() - 1).name(), "_offset");

    assert_eq!(column(&out, "id"), ["1", "2"]);
    assert_eq!(column(&out, "qty"), ["-3", "-3"]);
    assert_eq!(column(&out, "name"), ["order-1", "order-2"]);
    assert_eq!(column(&out, "paid"), ["true", "true"]);
    assert_eq!(column(&out, "ratio"), ["0.5", "0.5"]);
    assert_eq!(column(&out, "price"), ["12.25", "12.25"]);
    assert_eq!(column(&out, "raw")[0], "0102ff");
    assert_eq!(column(&out, "code")[0], "abcd");
    assert_eq!(
        column(&out, "address"),
        ["{street: Main St, zip: 12345}", "{street: Main St, zip: }"]
    );
    assert_eq!(column(&out, "note"), ["fragile", ""]);
    assert_eq!(column(&out, "coupon"), ["XMAS", ""]);
    assert_eq!(column(&out, "status"), ["SHIPPED", "SHIPPED"]);
    let status = out.rows.column_by_name("status").unwrap();
    let dict = status.as_dictionary::<Int32Type>();
    assert_eq!(dict.values().len(), 3, "every symbol is in the dictionary");
    assert_eq!(column(&out, "tags")[0], "[a, b]");
    assert_eq!(column(&out, "attrs")[0], "{k: 7}");
    assert_eq!(column(&out, "day")[0], "2026-11-24");
    assert_eq!(column(&out, "t_ms")[0], "06:30:00.123");
    assert_eq!(column(&out, "t_us")[0], "06:30:00.123456");
    assert_eq!(column(&out, "at_ms")[0], "2026-11-24T06:30:00.123Z");
    assert_eq!(column(&out, "at_us")[0], "2026-11-24T06:30:00.123456Z");
    assert_eq!(column(&out, "amount")[0], "12345.67");
    assert_eq!(column(&out, "big")[0], "-1.2345");
    assert_eq!(column(&out, "uid")[0], "0193a3f27c1e7b4a9f000123456789ab");
    assert_eq!(column(&out, "_offset"), ["10", "11"]);
}

const V1: &str = r#"{"type": "record", "name": "User", "fields": [
  {"name": "id", "type": "long"}, {"name": "name", "type": "string"}]}"#;
const V2: &str = r#"{"type": "record", "name": "User", "fields": [
  {"name": "id", "type": "long"}, {"name": "name", "type": "string"},
  {"name": "email", "type": ["null", "string"], "default": null}]}"#;

fn v1(id: i64) -> Avro {
    Avro::Record(vec![
        ("id".into(), Avro::Long(id)),
        ("name".into(), Avro::String(format!("u{id}"))),
    ])
}

fn v2(id: i64) -> Avro {
    Avro::Record(vec![
        ("id".into(), Avro::Long(id)),
        ("name".into(), Avro::String(format!("u{id}"))),
        (
            "email".into(),
            Avro::Union(1, Box::new(Avro::String(format!("u{id}@example.invalid")))),
        ),
    ])
}

#[test]
fn rejects_bad_records_with_precise_reasons() {
    let server = SchemaRegistryServer::start();
    let id = server.register("users-value", V1, None);
    let proto = server.register("p-value", "syntax = \"proto3\";", Some("PROTOBUF"));
    let good = framed(id, V1, v1(1));
    let mut truncated = good.clone();
    truncated.truncate(good.len() - 1);
    let mut trailing = good.clone();
    trailing.extend_from_slice(&[2, 4]);
    let mut bad_magic = good.clone();
    bad_magic[0] = 1;
    let records = vec![
        record(0, Some(good.clone())),
        record(1, Some(frame_confluent(9999, &good[5..]))),
        record(2, Some(truncated)),
        record(3, Some(bad_magic)),
        record(4, Some(vec![0, 0, 0])),
        record(5, None),
        record(6, Some(trailing)),
        record(7, Some(frame_confluent(proto, &[0]))),
        record(8, Some(good)),
    ];
    let mut c = converter(&server.url(), json!({"on_error": "dead_letter"}));
    let out = convert(&mut c, records.clone()).unwrap();
    assert_eq!(column(&out, "id"), ["1", "1"]);
    let reasons: Vec<(i64, &str)> = out
        .rejects
        .iter()
        .map(|r| (r.offset, r.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            (1, "schema id 9999 not found in the schema registry (40403: Schema 9999 not found)"),
            (2, "truncated Avro body: field \"name\": string needs 2 byte(s), 1 left of 3 at body byte 2 (schema id 1)"),
            (3, "no Confluent magic byte: first byte is 0x01, expected 0x00 (was the record written by a Schema Registry serializer?)"),
            (4, "too short for the Confluent wire format: 3 byte(s), the header alone is 5 (magic byte + 4-byte schema id)"),
            (5, "tombstone: the record has no payload (null value)"),
            (6, "invalid Avro body: 2 unexpected byte(s) after the end of the record (4 bytes) at body byte 4 (schema id 1)"),
            (7, "schema id 2 is a PROTOBUF schema, not Avro"),
        ]
    );
    // The raw record travels with its reject.
    assert_eq!(
        out.rejects[0].payload.as_deref(),
        records[1].payload.as_deref()
    );
    assert_eq!(
        (out.first_offset, out.last_offset, out.source_records),
        (0, 8, 9)
    );

    let mut c = converter(&server.url(), json!({"on_error": "skip"}));
    let out = convert(&mut c, records.clone()).unwrap();
    assert_eq!(
        (out.rows.num_rows(), out.skipped, out.rejects.len()),
        (2, 7, 0)
    );

    let mut c = converter(&server.url(), json!({}));
    match convert(&mut c, records) {
        Err(ConvertError::Record { offset, reason, .. }) => {
            assert_eq!(offset, 1);
            assert!(reason.contains("40403"), "{reason}");
        }
        other => panic!("expected the first bad record to fail the batch, got {other:?}"),
    }
}

#[test]
fn a_registry_that_cannot_be_reached_fails_the_batch_without_rejects() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c = converter(
        &format!("http://127.0.0.1:{port}"),
        json!({"on_error": "dead_letter"}),
    );
    let e = convert(&mut c, vec![record(0, Some(framed(1, V1, v1(1))))]).unwrap_err();
    assert!(matches!(e, ConvertError::Internal { .. }), "{e}");
    assert!(e.to_string().contains("GET /schemas/ids/1 failed"), "{e}");
}

#[test]
fn writer_schemas_change_mid_stream() {
    let server = SchemaRegistryServer::start();
    let id1 = server.register("users-value", V1, None);
    let id2 = server.register("users-value", V2, None);
    let mut c = converter(&server.url(), json!({"on_error": "dead_letter"}));

    let out = convert(
        &mut c,
        vec![
            record(0, Some(framed(id1, V1, v1(0)))),
            record(1, Some(framed(id2, V2, v2(1)))),
            record(2, Some(framed(id2, V2, v2(2)))),
            record(3, Some(framed(id1, V1, v1(3)))),
        ],
    )
    .unwrap();
    assert!(out.rejects.is_empty(), "{:?}", out.rejects);
    assert_eq!(column(&out, "id"), ["0", "1", "2", "3"]);
    assert_eq!(
        column(&out, "email"),
        ["", "u1@example.invalid", "u2@example.invalid", ""]
    );
    let merged = out.rows.schema();
    assert_eq!(c.schema().unwrap(), merged);

    // An old-shape batch later still gets the merged schema.
    let out = convert(&mut c, vec![record(4, Some(framed(id1, V1, v1(4))))]).unwrap();
    assert_eq!(out.rows.schema(), merged);
    assert_eq!(column(&out, "email"), [""]);

    // A schema whose field changes type incompatibly: its records are rejected.
    let v3 = r#"{"type": "record", "name": "User", "fields": [
      {"name": "id", "type": "string"}, {"name": "name", "type": "string"}]}"#;
    let id3 = server.register("users-value", v3, None);
    let bad = Avro::Record(vec![
        ("id".into(), Avro::String("x".into())),
        ("name".into(), Avro::String("y".into())),
    ]);
    let out = convert(
        &mut c,
        vec![
            record(5, Some(framed(id3, v3, bad))),
            record(6, Some(framed(id2, V2, v2(6)))),
        ],
    )
    .unwrap();
    assert_eq!(column(&out, "id"), ["6"]);
    assert_eq!(out.rejects.len(), 1);
    assert!(
        out.rejects[0].reason.starts_with(&format!(
            "schema id {id3} does not fit the table schema: field \"id\""
        )),
        "{}",
        out.rejects[0].reason
    );
}

#[test]
fn resolves_named_types_from_referenced_subjects() {
    let server = SchemaRegistryServer::start();
    let money = r#"{"type": "record", "name": "Money", "namespace": "common",
      "fields": [{"name": "cents", "type": "long"}, {"name": "currency", "type": "string"}]}"#;
    server.register("common.Money", money, None);
    let order = r#"{"type": "record", "name": "Order", "fields": [
      {"name": "total", "type": "common.Money"}, {"name": "fee", "type": ["null", "common.Money"]}]}"#;
    let id = server.register_with_references(
        "orders-value",
        order,
        None,
        vec![json!({"name": "common.Money", "subject": "common.Money", "version": 1})],
    );
    // The reference implementation needs the referenced schema to encode.
    let schemata = apache_avro::Schema::parse_list([money, order]).unwrap();
    let m = |cents| {
        Avro::Record(vec![
            ("cents".into(), Avro::Long(cents)),
            ("currency".into(), Avro::String("EUR".into())),
        ])
    };
    let value = Avro::Record(vec![
        ("total".into(), m(1250)),
        ("fee".into(), Avro::Union(1, Box::new(m(50)))),
    ]);
    let framed = confluent_avro_with(id, &schemata[1], schemata.iter().collect(), value);
    let mut c = converter(&server.url(), json!({}));
    let out = convert(&mut c, vec![record(0, Some(framed))]).unwrap();
    assert_eq!(column(&out, "total"), ["{cents: 1250, currency: EUR}"]);
    assert_eq!(column(&out, "fee"), ["{cents: 50, currency: EUR}"]);
}

#[test]
fn a_relative_ca_file_is_resolved_against_the_config_directory() {
    let cfg: AvroConverterConfig = serde_json::from_value(json!({
        "schema_registry": {"url": "https://127.0.0.1:8081", "ca_file": "certs/ca.pem"}
    }))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let e = AvroConverter::new(&cfg, dir.path())
        .unwrap_err()
        .to_string();
    let expected = format!(
        "converter.schema_registry: ca_file: cannot read {}",
        dir.path().join("certs/ca.pem").display()
    );
    assert!(e.starts_with(&expected), "{e}");
}
