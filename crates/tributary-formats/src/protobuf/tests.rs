//! Unit tests of the Protobuf converter. Messages are built with
//! prost-reflect's text format and encoded with its encoder; decoding them
//! into Arrow is this module's code.

use std::collections::HashMap;

use arrow::array::{
    Array, AsArray, BinaryArray, BooleanArray, Float32Array, Float64Array, Int32Array, Int64Array,
    ListArray, MapArray, StringArray, StructArray, TimestampMicrosecondArray, UInt32Array,
    UInt64Array,
};
use arrow::datatypes::{DataType, TimeUnit};
use bytes::Bytes;
use prost_reflect::prost::Message;
use prost_reflect::{DynamicMessage, MessageDescriptor, Value};
use tributary_config::{OnError, ProtobufConverterConfig};
use tributary_core::{ConvertError, Converter, RawRecord, RowBatch, SourceBatch, TopicPartition};

use super::*;

const SHOP: &str = r#"
syntax = "proto3";
package shop.v1;

import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";
import "google/protobuf/empty.proto";

enum Status {
  STATUS_UNSPECIFIED = 0;
  PAID = 1;
  SHIPPED = 2;
}

message Scalars {
  int32 i32 = 1;
  int64 i64 = 2;
  uint32 u32 = 3;
  uint64 u64 = 4;
  sint32 s32 = 5;
  sint64 s64 = 6;
  fixed32 f32 = 7;
  fixed64 f64 = 8;
  sfixed32 sf32 = 9;
  sfixed64 sf64 = 10;
  float fl = 11;
  double db = 12;
  bool b = 13;
  string s = 14;
  bytes by = 15;
}

message Order {
  message Address {
    string city = 1;
    string zip = 2;
  }
  message Item {
    string sku = 1;
    int32 qty = 2;
    double price = 3;
  }
  int64 id = 1;
  string customer = 2;
  Status status = 3;
  Address address = 4;
  repeated Item items = 5;
  map<string, int64> tags = 6;
  oneof payment {
    string card = 7;
    string iban = 8;
  }
  optional int32 priority = 9;
  google.protobuf.Timestamp created_at = 10;
  google.protobuf.StringValue note = 11;
  repeated string labels = 12;
  google.protobuf.Empty marker = 13;
  map<int32, Address> depots = 14;
}

message Node {
  string name = 1;
  repeated Node children = 2;
}

message Schedule {
  map<string, google.protobuf.Timestamp> at = 1;
  repeated google.protobuf.Timestamp times = 2;
  google.protobuf.Int64Value count = 3;
}
"#;

fn shop_file() -> FileDescriptor {
    let mut sources = HashMap::new();
    sources.insert("shop.proto".to_string(), SHOP.to_string());
    compile::compile_sources("shop.proto", sources).unwrap()
}

fn descriptor(name: &str) -> MessageDescriptor {
    compile::message_by_name(&shop_file(), name).unwrap()
}

fn encode(message: &str, text: &str) -> Vec<u8> {
    DynamicMessage::parse_text_format(descriptor(message), text)
        .unwrap()
        .encode_to_vec()
}

/// A converter over `shop.proto` written into a temporary directory.
fn converter(message: &str, extra: &str) -> (ProtobufConverter, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("shop.proto"), SHOP).unwrap();
    let cfg = config(&format!(
        r#"{{"schema_file": "shop.proto", "message": "{message}" {extra}}}"#
    ));
    (ProtobufConverter::new(&cfg, dir.path()).unwrap(), dir)
}

fn config(json: &str) -> ProtobufConverterConfig {
    serde_json::from_str(json).unwrap()
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

fn batch(payloads: Vec<Option<Vec<u8>>>) -> SourceBatch {
    SourceBatch {
        partition: TopicPartition::new("orders", 0),
        records: payloads
            .into_iter()
            .enumerate()
            .map(|(k, p)| record(k as i64, p))
            .collect(),
    }
}

fn convert(c: &mut ProtobufConverter, payloads: Vec<Option<Vec<u8>>>) -> RowBatch {
    c.convert(batch(payloads)).unwrap()
}

#[test]
fn every_scalar_type_maps_to_its_arrow_type() {
    let (mut c, _dir) = converter("shop.v1.Scalars", "");
    let full = encode(
        "shop.v1.Scalars",
        r#"i32: -5 i64: -9000000000 u32: 4000000000 u64: 18000000000000000000
           s32: -7 s64: -8000000000 f32: 3000000000 f64: 17000000000000000000
           sf32: -9 sf64: -10000000000 fl: 1.5 db: -2.25 b: true s: "héllo"
           by: "\x00\xff""#,
    );
    let rows = convert(&mut c, vec![Some(full), Some(Vec::new())]).rows;
    let schema = rows.schema();
    let expected = [
        ("i32", DataType::Int32),
        ("i64", DataType::Int64),
        ("u32", DataType::UInt32),
        ("u64", DataType::UInt64),
        ("s32", DataType::Int32),
        ("s64", DataType::Int64),
        ("f32", DataType::UInt32),
        ("f64", DataType::UInt64),
        ("sf32", DataType::Int32),
        ("sf64", DataType::Int64),
        ("fl", DataType::Float32),
        ("db", DataType::Float64),
        ("b", DataType::Boolean),
        ("s", DataType::Utf8),
        ("by", DataType::Binary),
    ];
    for (k, (name, data_type)) in expected.iter().enumerate() {
        let field = schema.field(k);
        assert_eq!(
            (field.name().as_str(), field.data_type()),
            (*name, data_type)
        );
        // proto3 scalars without presence are never null.
        assert!(!field.is_nullable(), "{name}");
    }
    let col = |name: &str| rows.column_by_name(name).unwrap().clone();
    let i32s = |name: &str| {
        col(name)
            .as_any()
            .downcast_ref::<Int32Array>()
            .unwrap()
            .clone()
    };
    let i64s = |name: &str| {
        col(name)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .clone()
    };
    assert_eq!(i32s("i32").values(), &[-5, 0]);
    assert_eq!(i64s("i64").values(), &[-9_000_000_000, 0]);
    assert_eq!(i32s("s32").value(0), -7);
    assert_eq!(i64s("s64").value(0), -8_000_000_000);
    assert_eq!(i32s("sf32").value(0), -9);
    assert_eq!(i64s("sf64").value(0), -10_000_000_000);
    let u32s = |name: &str| {
        col(name)
            .as_any()
            .downcast_ref::<UInt32Array>()
            .unwrap()
            .value(0)
    };
    let u64s = |name: &str| {
        col(name)
            .as_any()
            .downcast_ref::<UInt64Array>()
            .unwrap()
            .value(0)
    };
    assert_eq!(u32s("u32"), 4_000_000_000);
    assert_eq!(u32s("f32"), 3_000_000_000);
    assert_eq!(u64s("u64"), 18_000_000_000_000_000_000);
    assert_eq!(u64s("f64"), 17_000_000_000_000_000_000);
    let fl = col("fl");
    assert_eq!(
        fl.as_any().downcast_ref::<Float32Array>().unwrap().value(0),
        1.5
    );
    let db = col("db");
    assert_eq!(
        db.as_any().downcast_ref::<Float64Array>().unwrap().value(0),
        -2.25
    );
    let b = col("b");
    let b = b.as_any().downcast_ref::<BooleanArray>().unwrap();
    assert!(b.value(0) && !b.value(1));
    let s = col("s");
    let s = s.as_any().downcast_ref::<StringArray>().unwrap();
    assert_eq!((s.value(0), s.value(1)), ("héllo", ""));
    let by = col("by");
    let by = by.as_any().downcast_ref::<BinaryArray>().unwrap();
    assert_eq!((by.value(0), by.value(1)), (&[0u8, 0xff][..], &[][..]));
    // Defaults of the empty message are values, not nulls.
    assert_eq!(
        rows.columns().iter().map(|c| c.null_count()).sum::<usize>(),
        0
    );
}

const FULL_ORDER: &str = r#"
    id: 42 customer: "ada" status: SHIPPED
    address { city: "Oslo" zip: "0150" }
    items { sku: "a" qty: 2 price: 9.5 } items { sku: "b" qty: 1 price: 0.25 }
    tags { key: "z" value: 26 } tags { key: "a" value: 1 }
    card: "4111"
    priority: 0
    created_at { seconds: 1795501800 nanos: 123456789 }
    note { value: "fragile" }
    labels: "x" labels: "y"
    marker {}
    depots { key: 7 value { city: "Bergen" } }
"#;

#[test]
fn an_order_maps_to_nested_columns() {
    let (mut c, _dir) = converter("shop.v1.Order", "");
    let rows = convert(
        &mut c,
        vec![
            Some(encode("shop.v1.Order", FULL_ORDER)),
            Some(encode("shop.v1.Order", r#"id: 7 iban: "NO93""#)),
        ],
    )
    .rows;
    let schema = rows.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    // `marker` (google.protobuf.Empty) has no data and no column.
    assert_eq!(
        names,
        [
            "id",
            "customer",
            "status",
            "address",
            "items",
            "tags",
            "card",
            "iban",
            "priority",
            "created_at",
            "note",
            "labels",
            "depots"
        ]
    );
    let field = |name: &str| schema.field_with_name(name).unwrap().clone();
    assert_eq!(field("status").data_type(), &DataType::Utf8);
    assert!(!field("status").is_nullable());
    assert!(field("address").is_nullable());
    assert!(matches!(field("address").data_type(), DataType::Struct(f) if f.len() == 2));
    assert!(matches!(field("items").data_type(), DataType::List(_)));
    assert!(!field("items").is_nullable());
    assert!(matches!(field("tags").data_type(), DataType::Map(_, false)));
    assert!(field("card").is_nullable() && field("iban").is_nullable());
    assert!(field("priority").is_nullable());
    assert_eq!(
        field("created_at").data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    );
    assert_eq!(field("note").data_type(), &DataType::Utf8);
    assert!(field("note").is_nullable());

    let col = |name: &str| rows.column_by_name(name).unwrap().clone();
    let status = col("status");
    let status = status.as_string::<i32>();
    // Enums by name; unset is the first value.
    assert_eq!(
        (status.value(0), status.value(1)),
        ("SHIPPED", "STATUS_UNSPECIFIED")
    );
    let address = col("address");
    let address = address.as_any().downcast_ref::<StructArray>().unwrap();
    assert!(address.is_valid(0) && address.is_null(1));
    assert_eq!(address.column(0).as_string::<i32>().value(0), "Oslo");

    let items = col("items");
    let items = items.as_any().downcast_ref::<ListArray>().unwrap();
    assert_eq!(items.value_offsets(), &[0, 2, 2]);
    let item = items
        .values()
        .as_any()
        .downcast_ref::<StructArray>()
        .unwrap();
    assert_eq!(item.column(0).as_string::<i32>().value(1), "b");
    assert_eq!(
        item.column(1)
            .as_primitive::<arrow::datatypes::Int32Type>()
            .values(),
        &[2, 1]
    );

    let tags = col("tags");
    let tags = tags.as_any().downcast_ref::<MapArray>().unwrap();
    assert_eq!(tags.value_offsets(), &[0, 2, 2]);
    // Entries sorted by key.
    assert_eq!(tags.keys().as_string::<i32>().value(0), "a");
    assert_eq!(tags.keys().as_string::<i32>().value(1), "z");
    assert_eq!(
        tags.values()
            .as_primitive::<arrow::datatypes::Int64Type>()
            .values(),
        &[1, 26]
    );

    // Oneof: one member set, the other null.
    let (card, iban) = (col("card"), col("iban"));
    assert_eq!(card.as_string::<i32>().value(0), "4111");
    assert!(iban.is_null(0) && card.is_null(1));
    assert_eq!(iban.as_string::<i32>().value(1), "NO93");

    // proto3 optional: set to 0 is 0, unset is null.
    let priority = col("priority");
    let priority = priority.as_any().downcast_ref::<Int32Array>().unwrap();
    assert!(priority.is_valid(0) && priority.value(0) == 0 && priority.is_null(1));

    let at = col("created_at");
    let at = at
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .unwrap();
    assert_eq!(at.value(0), 1_795_501_800_123_456);
    assert!(at.is_null(1));

    let note = col("note");
    assert_eq!(note.as_string::<i32>().value(0), "fragile");
    assert!(note.is_null(1));

    let labels = col("labels");
    let labels = labels.as_any().downcast_ref::<ListArray>().unwrap();
    assert_eq!(labels.value(0).as_string::<i32>().value(1), "y");
    assert_eq!(labels.value(1).len(), 0);

    let depots = col("depots");
    let depots = depots.as_any().downcast_ref::<MapArray>().unwrap();
    assert_eq!(
        depots
            .keys()
            .as_primitive::<arrow::datatypes::Int32Type>()
            .value(0),
        7
    );
    let depot = depots
        .values()
        .as_any()
        .downcast_ref::<StructArray>()
        .unwrap();
    assert_eq!(depot.column(0).as_string::<i32>().value(0), "Bergen");
}

#[test]
fn the_rows_are_written_as_parquet() {
    let (mut c, _dir) = converter("shop.v1.Order", "");
    let rows = convert(
        &mut c,
        vec![
            Some(encode("shop.v1.Order", FULL_ORDER)),
            Some(encode("shop.v1.Order", "id: 7")),
        ],
    )
    .rows;
    let mut out = Vec::new();
    let mut writer = parquet::arrow::ArrowWriter::try_new(&mut out, rows.schema(), None).unwrap();
    writer.write(&rows).unwrap();
    writer.close().unwrap();
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(Bytes::from(out))
            .unwrap()
            .build()
            .unwrap();
    let back: Vec<_> = reader.map(Result::unwrap).collect();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0], rows);
}

#[test]
fn an_unknown_enum_number_is_kept_as_text() {
    let (mut c, _dir) = converter("shop.v1.Order", "");
    let mut message = DynamicMessage::new(descriptor("shop.v1.Order"));
    message.set_field_by_name("status", Value::EnumNumber(9));
    let rows = convert(&mut c, vec![Some(message.encode_to_vec())]).rows;
    let status = rows.column_by_name("status").unwrap();
    assert_eq!(status.as_string::<i32>().value(0), "9");
}

#[test]
fn recursive_messages_are_refused_with_the_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("shop.proto"), SHOP).unwrap();
    let cfg = config(r#"{"schema_file": "shop.proto", "message": "shop.v1.Node"}"#);
    let err = ProtobufConverter::new(&cfg, dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("converter.message: field children: message shop.v1.Node contains itself"),
        "{err}"
    );
}

#[test]
fn configuration_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("shop.proto"), SHOP).unwrap();
    std::fs::write(
        dir.path().join("bad.proto"),
        "syntax = \"proto3\";\nmessage A {\n  int65 x = 1;\n}\n",
    )
    .unwrap();
    let err = |json: &str| {
        ProtobufConverter::new(&config(json), dir.path())
            .unwrap_err()
            .to_string()
    };
    let e = err(r#"{"schema_file": "bad.proto", "message": "A"}"#);
    assert!(e.starts_with("converter.schema_file: "), "{e}");
    assert!(e.contains("bad.proto:3:3: ") && e.contains("int65"), "{e}");
    let e = err(r#"{"schema_file": "missing.proto", "message": "A"}"#);
    assert!(e.contains("missing.proto: no such file"), "{e}");
    let e = err(r#"{"schema_file": "shop.proto", "message": "shop.v1.Nope"}"#);
    assert!(
        e.starts_with(r#"converter.message: no message "shop.v1.Nope" in shop.proto; it defines shop.v1.Scalars, shop.v1.Order, shop.v1.Order.Address, shop.v1.Order.Item, shop.v1.Node, shop.v1.Schedule"#),
        "{e}"
    );
    let e = err(r#"{"schema_file": "shop.proto"}"#);
    assert!(e.starts_with("converter.message: required"), "{e}");
    let e = err(r#"{}"#);
    assert!(e.starts_with("converter.schema_registry: "), "{e}");
    let e = err(
        r#"{"schema_file": "shop.proto", "message": "shop.v1.Order", "timestamp_field": "id"}"#,
    );
    assert!(
        e.starts_with(
            r#"converter.timestamp_field: field "id" of message shop.v1.Order has type Int64"#
        ),
        "{e}"
    );
    let e = err(
        r#"{"schema_file": "shop.proto", "message": "shop.v1.Order", "timestamp_field": "nope"}"#,
    );
    assert!(e.contains("not a top-level field"), "{e}");
}

#[test]
fn a_message_that_does_not_decode_is_a_precise_reject() {
    let (mut c, _dir) = converter(
        "shop.v1.Order",
        r#", "on_error": "dead_letter", "metadata": ["offset"]"#,
    );
    let good = encode("shop.v1.Order", "id: 1");
    let mut truncated = encode("shop.v1.Order", r#"id: 1 customer: "a long customer name""#);
    truncated.truncate(truncated.len() - 5);
    let batch = convert(
        &mut c,
        vec![
            Some(good.clone()),
            // Field 1 (id, int64) written as a string.
            Some(vec![0x0a, 0x03, b'a', b'b', b'c']),
            Some(truncated),
            // Field 4 (address) holds field 1 (city, string) as a varint.
            Some(vec![0x08, 0x01, 0x22, 0x02, 0x08, 0x05]),
            // Wire type 7 does not exist.
            Some(vec![0x0f]),
            None,
            Some(good),
        ],
    );
    assert_eq!(batch.rows.num_rows(), 2);
    let offsets = batch.rows.column_by_name("_offset").unwrap();
    assert_eq!(
        offsets
            .as_primitive::<arrow::datatypes::Int64Type>()
            .values(),
        &[0, 6]
    );
    let reasons: Vec<(i64, &str)> = batch
        .rejects
        .iter()
        .map(|r| (r.offset, r.reason.as_str()))
        .collect();
    assert_eq!(
        reasons,
        [
            (
                1,
                "protobuf decode failed for message shop.v1.Order: field \"id\" (number 1) at \
                 byte 0: wire type LEN, but the schema declares int64 (VARINT)"
            ),
            (
                2,
                "protobuf decode failed for message shop.v1.Order: field \"customer\" (number 2) \
                 at byte 2: length 20 runs past the end of the message (15 bytes left)"
            ),
            (
                3,
                "protobuf decode failed for message shop.v1.Order: field \"address.city\" \
                 (number 1) at byte 4: wire type VARINT, but the schema declares string (LEN)"
            ),
            (
                4,
                "protobuf decode failed for message shop.v1.Order: invalid wire type value 7 \
                 (field number 1) at byte 0"
            ),
            (5, TOMBSTONE),
        ]
    );
    // The reject keeps the raw bytes.
    assert_eq!(
        batch.rejects[0].payload.as_deref(),
        Some(&[0x0a, 0x03, b'a', b'b', b'c'][..])
    );
}

#[test]
fn on_error_fail_and_skip() {
    let (mut fail, _d1) = converter("shop.v1.Order", "");
    let err = fail
        .convert(batch(vec![
            Some(encode("shop.v1.Order", "id: 1")),
            Some(vec![0x0f]),
        ]))
        .unwrap_err();
    match err {
        ConvertError::Record { offset, reason, .. } => {
            assert_eq!(offset, 1);
            assert!(reason.contains("invalid wire type value 7"), "{reason}");
        }
        other => panic!("{other}"),
    }
    let (mut skip, _d2) = converter("shop.v1.Order", r#", "on_error": "skip""#);
    let rows = convert(
        &mut skip,
        vec![Some(vec![0x0f]), Some(encode("shop.v1.Order", "id: 1"))],
    );
    assert_eq!(
        (rows.rows.num_rows(), rows.skipped, rows.rejects.len()),
        (1, 1, 0)
    );
    assert_eq!(skip.on_error, OnError::Skip);
}

#[test]
fn a_timestamp_out_of_range_is_rejected_with_the_field() {
    let (mut c, _dir) = converter("shop.v1.Order", r#", "on_error": "dead_letter""#);
    let batch = convert(
        &mut c,
        vec![Some(encode(
            "shop.v1.Order",
            "id: 1 created_at { seconds: 253402300800 }",
        ))],
    );
    assert_eq!(batch.rows.num_rows(), 0);
    assert!(
        batch.rejects[0].reason.starts_with(
            "message shop.v1.Order: field created_at: google.protobuf.Timestamp out of range \
             (seconds 253402300800, nanos 0)"
        ),
        "{}",
        batch.rejects[0].reason
    );
}

#[test]
fn event_time_comes_from_the_timestamp_field_else_the_record() {
    let (mut c, _dir) = converter(
        "shop.v1.Order",
        r#", "timestamp_field": "created_at", "metadata": ["topic", "partition"]"#,
    );
    let rows = convert(
        &mut c,
        vec![
            Some(encode(
                "shop.v1.Order",
                "id: 1 created_at { seconds: 1795501800 nanos: 999999 }",
            )),
            Some(encode("shop.v1.Order", "id: 2")),
        ],
    );
    assert_eq!(rows.event_time_ms, [1_795_501_800_000, 1_001]);
    let schema = rows.rows.schema();
    let n = schema.fields().len();
    assert_eq!(schema.field(n - 2).name(), "_topic");
    assert_eq!(schema.field(n - 1).name(), "_partition");
    assert_eq!(c.schema().unwrap(), schema);
}

#[test]
fn metadata_columns_may_not_clash_with_fields() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("m.proto"),
        "syntax = \"proto3\";\nmessage M { string _key = 1; }\n",
    )
    .unwrap();
    let cfg = config(r#"{"schema_file": "m.proto", "message": "M", "metadata": ["key"]}"#);
    let err = ProtobufConverter::new(&cfg, dir.path())
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        r#"converter.metadata: column "_key" clashes with a message field of the same name"#
    );
}

#[test]
fn message_indexes_pick_nested_messages() {
    let file = shop_file();
    let name =
        |indexes: &[usize]| compile::message_at(&file, indexes).map(|m| m.full_name().to_string());
    assert_eq!(name(&[0]).unwrap(), "shop.v1.Scalars");
    assert_eq!(name(&[1]).unwrap(), "shop.v1.Order");
    assert_eq!(name(&[1, 1]).unwrap(), "shop.v1.Order.Item");
    assert_eq!(name(&[2]).unwrap(), "shop.v1.Node");
    assert_eq!(
        name(&[4]).unwrap_err(),
        "message indexes [4] point at no message of shop.proto (it has 4 top-level messages)"
    );
}

#[test]
fn imports_resolve_from_the_given_sources() {
    let mut sources = HashMap::new();
    sources.insert(
        "common/money.proto".to_string(),
        "syntax = \"proto3\";\npackage common;\nmessage Money { string currency = 1; int64 units = 2; }\n"
            .to_string(),
    );
    sources.insert(
        "main.proto".to_string(),
        "syntax = \"proto3\";\nimport \"common/money.proto\";\nimport \"google/protobuf/timestamp.proto\";\nmessage Pay { common.Money amount = 1; google.protobuf.Timestamp at = 2; }\n"
            .to_string(),
    );
    let file = compile::compile_sources("main.proto", sources.clone()).unwrap();
    let pay = compile::message_at(&file, &[0]).unwrap();
    let columns = MessageColumns::new(&pay).unwrap();
    assert!(matches!(columns.schema().field(0).data_type(), DataType::Struct(f) if f.len() == 2));
    sources.remove("common/money.proto");
    let err = compile::compile_sources("main.proto", sources).unwrap_err();
    assert!(err.contains("common/money.proto"), "{err}");
}

#[test]
fn diagnose_finds_nothing_in_a_valid_message() {
    let order = descriptor("shop.v1.Order");
    assert_eq!(
        wire::diagnose(&order, &encode("shop.v1.Order", FULL_ORDER)),
        None
    );
}

#[test]
fn timestamps_in_maps_and_lists_are_checked_with_their_path() {
    let (mut c, _dir) = converter("shop.v1.Schedule", r#", "on_error": "dead_letter""#);
    let batch = convert(
        &mut c,
        vec![
            Some(encode(
                "shop.v1.Schedule",
                r#"at { key: "b" value { seconds: 1 } } at { key: "a" value { nanos: 1000 } }
                   times { seconds: 2 } times { seconds: 3 nanos: 999 } count { value: 0 }"#,
            )),
            Some(encode(
                "shop.v1.Schedule",
                r#"at { key: "x" value { seconds: -62135596801 } }"#,
            )),
            Some(encode("shop.v1.Schedule", "times { nanos: -1 }")),
        ],
    );
    let reasons: Vec<&str> = batch.rejects.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "message shop.v1.Schedule: field at[\"x\"]: google.protobuf.Timestamp out of range \
             (seconds -62135596801, nanos 0): seconds must lie in years 1 to 9999 and nanos in \
             0..999999999",
            "message shop.v1.Schedule: field times[0]: google.protobuf.Timestamp out of range \
             (seconds 0, nanos -1): seconds must lie in years 1 to 9999 and nanos in 0..999999999",
        ]
    );
    let rows = batch.rows;
    assert_eq!(rows.num_rows(), 1);
    let at = rows.column_by_name("at").unwrap();
    let at = at.as_any().downcast_ref::<MapArray>().unwrap();
    assert_eq!(at.keys().as_string::<i32>().value(0), "a");
    let values = at.values();
    let values = values
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .unwrap();
    assert_eq!(values.values(), &[1, 1_000_000]);
    let times = rows.column_by_name("times").unwrap();
    let times = times.as_any().downcast_ref::<ListArray>().unwrap();
    let times = times.values();
    let times = times
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .unwrap();
    assert_eq!(times.values(), &[2_000_000, 3_000_000]);
    // A wrapper set to its default is a value, not a null.
    let count = rows.column_by_name("count").unwrap();
    assert_eq!(count.data_type(), &DataType::Int64);
    assert_eq!(
        count.as_primitive::<arrow::datatypes::Int64Type>().value(0),
        0
    );
    assert!(count.is_valid(0));
}
