//! The Protobuf converter against the test kit's Schema Registry over real
//! HTTP: Confluent framing, message indexes, references (imports) resolved
//! through the registry, well-known imports built in, a new schema version
//! growing the table, unknown ids and non-protobuf schemas rejected.

use std::collections::HashMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Int64Type};
use bytes::Bytes;
use prost_reflect::prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage};
use serde_json::json;
use tributary_config::ProtobufConverterConfig;
use tributary_core::{ConvertError, Converter, RawRecord, SourceBatch, TopicPartition};
use tributary_formats::wire::frame_confluent;
use tributary_formats::{encode_message_indexes, ProtobufConverter};
use tributary_testkit::schema_registry::SchemaRegistryServer;

const MONEY: &str = r#"syntax = "proto3";
package common;
message Money {
  string currency = 1;
  int64 units = 2;
}
"#;

const ORDERS_V1: &str = r#"syntax = "proto3";
package shop;
import "common/money.proto";
import "google/protobuf/timestamp.proto";
message Refund {
  int64 order_id = 1;
}
message Order {
  int64 id = 1;
  common.Money total = 2;
  google.protobuf.Timestamp at = 3;
}
"#;

/// v2 adds a field.
const ORDERS_V2: &str = r#"syntax = "proto3";
package shop;
import "common/money.proto";
import "google/protobuf/timestamp.proto";
message Refund {
  int64 order_id = 1;
}
message Order {
  int64 id = 1;
  common.Money total = 2;
  google.protobuf.Timestamp at = 3;
  string channel = 4;
}
"#;

/// Compiles `main` with its imports (the same text the registry holds) to
/// encode test messages. prost-reflect encodes; the converter decodes.
fn pool(main: &str) -> DescriptorPool {
    let mut files = HashMap::new();
    files.insert("common/money.proto", MONEY);
    files.insert("orders.proto", main);
    struct Files(HashMap<&'static str, String>);
    impl protox::file::FileResolver for Files {
        fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
            match self.0.get(name) {
                Some(s) => protox::file::File::from_source(name, s),
                None => Err(protox::Error::file_not_found(name)),
            }
        }
    }
    let files = Files(files.into_iter().map(|(k, v)| (k, v.to_string())).collect());
    let mut chain = protox::file::ChainFileResolver::new();
    chain.add(files);
    chain.add(protox::file::GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(chain);
    compiler.include_imports(true);
    compiler.open_file("orders.proto").unwrap();
    compiler.descriptor_pool()
}

fn framed(pool: &DescriptorPool, id: u32, indexes: &[usize], message: &str, text: &str) -> Vec<u8> {
    let desc = pool.get_message_by_name(message).unwrap();
    let body = DynamicMessage::parse_text_format(desc, text)
        .unwrap()
        .encode_to_vec();
    let mut framed_body = encode_message_indexes(indexes);
    framed_body.extend_from_slice(&body);
    frame_confluent(id, &framed_body)
}

fn batch(first: i64, payloads: Vec<Vec<u8>>) -> SourceBatch {
    SourceBatch {
        partition: TopicPartition::new("orders", 0),
        records: payloads
            .into_iter()
            .enumerate()
            .map(|(k, p)| RawRecord {
                offset: first + k as i64,
                timestamp_ms: Some(0),
                key: None,
                payload: Some(Bytes::from(p)),
                headers: Vec::new(),
            })
            .collect(),
    }
}

fn converter(url: &str, extra: serde_json::Value) -> ProtobufConverter {
    let mut cfg = json!({
        "schema_registry": {"url": url, "timeout": "5s"},
        "on_error": "dead_letter",
        "metadata": ["offset"],
    });
    for (k, v) in extra.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    let cfg: ProtobufConverterConfig = serde_json::from_value(cfg).unwrap();
    ProtobufConverter::new(&cfg, std::path::Path::new(".")).unwrap()
}

#[test]
fn registry_schemas_with_references_and_a_new_version() {
    let registry = SchemaRegistryServer::start();
    let money = registry.register("common/money.proto", MONEY, Some("PROTOBUF"));
    let reference =
        json!({"name": "common/money.proto", "subject": "common/money.proto", "version": 1});
    let v1 = registry.register_with_references(
        "orders-value",
        ORDERS_V1,
        Some("PROTOBUF"),
        vec![reference.clone()],
    );
    let v2 = registry.register_with_references(
        "orders-value",
        ORDERS_V2,
        Some("PROTOBUF"),
        vec![reference],
    );
    let avro = registry.register("other-value", r#"{"type": "string"}"#, None);
    assert!(money != v1 && v1 != v2 && v2 != avro);
    let (p1, p2) = (pool(ORDERS_V1), pool(ORDERS_V2));

    let mut c = converter(&registry.url(), json!({"timestamp_field": "at"}));
    let rows = c
        .convert(batch(
            0,
            vec![
                framed(
                    &p1,
                    v1,
                    &[1],
                    "shop.Order",
                    r#"id: 1 total { currency: "EUR" units: 5 } at { seconds: 1795501800 }"#,
                ),
                framed(&p1, v1, &[1], "shop.Order", "id: 2"),
                // Unknown schema id.
                framed(&p1, 999, &[1], "shop.Order", "id: 3"),
                // An Avro schema id.
                framed(&p1, avro, &[0], "shop.Refund", "order_id: 4"),
                // Not framed at all.
                b"{\"id\": 5}".to_vec(),
                // Index [7]: no such message.
                framed(&p1, v1, &[7], "shop.Order", "id: 6"),
            ],
        ))
        .unwrap();
    assert_eq!(rows.rows.num_rows(), 2);
    let ids = rows.rows.column_by_name("id").unwrap();
    assert_eq!(ids.as_primitive::<Int64Type>().values(), &[1, 2]);
    assert_eq!(rows.event_time_ms[0], 1_795_501_800_000);
    let total = rows.rows.column_by_name("total").unwrap();
    assert!(matches!(total.data_type(), DataType::Struct(f) if f.len() == 2));
    assert!(total.is_valid(0) && total.is_null(1));
    let reasons: Vec<(i64, String)> = rows
        .rejects
        .iter()
        .map(|r| (r.offset, r.reason.clone()))
        .collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert_eq!(reasons[0].0, 2);
    assert!(
        reasons[0]
            .1
            .starts_with("schema id 999 not found in the schema registry"),
        "{reasons:?}"
    );
    assert_eq!(
        reasons[1],
        (
            3,
            format!("schema id {avro} is a AVRO schema, not PROTOBUF")
        )
    );
    assert_eq!(reasons[2].0, 4);
    assert!(
        reasons[2].1.starts_with("no Confluent magic byte"),
        "{reasons:?}"
    );
    assert_eq!(
        reasons[3],
        (
            5,
            format!(
                "schema id {v1}: message indexes [7] point at no message of schema-id-{v1}.proto \
                 (it has 2 top-level messages)"
            )
        )
    );

    // v2 adds `channel`: the table grows by a nullable column; v1 rows in
    // the same batch get nulls; the index [0] message of v1 is a Refund.
    let rows = c
        .convert(batch(
            6,
            vec![
                framed(&p2, v2, &[1], "shop.Order", r#"id: 7 channel: "web""#),
                framed(&p1, v1, &[1], "shop.Order", "id: 8"),
            ],
        ))
        .unwrap();
    assert!(rows.rejects.is_empty(), "{:?}", rows.rejects);
    let channel = rows.rows.column_by_name("channel").unwrap();
    assert!(rows
        .rows
        .schema()
        .field_with_name("channel")
        .unwrap()
        .is_nullable());
    assert_eq!(channel.as_string::<i32>().value(0), "web");
    assert!(channel.is_null(1));
    let names: Vec<String> = rows
        .rows
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["id", "total", "at", "channel", "_offset"]);

    // v3 turns `id` into a string: not a widening, so its records are
    // rejected with the field named, and the table keeps its schema.
    let v3 = registry.register_with_references(
        "orders-value",
        &ORDERS_V2.replace("int64 id = 1;", "string id = 1;"),
        Some("PROTOBUF"),
        vec![json!({"name": "common/money.proto", "subject": "common/money.proto", "version": 1})],
    );
    let p3 = pool(&ORDERS_V2.replace("int64 id = 1;", "string id = 1;"));
    let rows = c
        .convert(batch(
            8,
            vec![
                framed(&p3, v3, &[1], "shop.Order", r#"id: "nine""#),
                framed(&p2, v2, &[1], "shop.Order", "id: 10"),
            ],
        ))
        .unwrap();
    assert_eq!(rows.rows.num_rows(), 1);
    assert_eq!(
        rows.rejects[0].reason,
        format!(
            "message shop.Order (schema id {v3}): the table schema does not admit this message \
             type: field \"id\": type Int64 cannot change to Utf8 (not a widening)"
        )
    );
    assert_eq!(rows.rejects[0].offset, 8);

    // Each schema id was fetched once; the reference once.
    assert_eq!(registry.requests(&format!("GET /schemas/ids/{v1}")), 1);
    assert_eq!(registry.requests(&format!("GET /schemas/ids/{v2}")), 1);
    assert_eq!(
        registry.requests("GET /subjects/common%2Fmoney.proto/versions/1")
            + registry.requests("GET /subjects/common/money.proto/versions/1"),
        1
    );
}

#[test]
fn a_message_that_does_not_fit_its_registered_schema_is_rejected() {
    let registry = SchemaRegistryServer::start();
    registry.register("common/money.proto", MONEY, Some("PROTOBUF"));
    let v1 = registry.register_with_references(
        "orders-value",
        ORDERS_V1,
        Some("PROTOBUF"),
        vec![json!({"name": "common/money.proto", "subject": "common/money.proto", "version": 1})],
    );
    let mut c = converter(&registry.url(), json!({}));
    // Field 1 (id, int64) as a string: encoded against another schema.
    let mut body = encode_message_indexes(&[1]);
    body.extend_from_slice(&[0x0a, 0x02, b'i', b'd']);
    let rows = c
        .convert(batch(0, vec![frame_confluent(v1, &body)]))
        .unwrap();
    assert_eq!(rows.rows.num_rows(), 0);
    assert_eq!(
        rows.rejects[0].reason,
        format!(
            "protobuf decode failed for message shop.Order (schema id {v1}): field \"id\" \
             (number 1) at byte 0: wire type LEN, but the schema declares int64 (VARINT)"
        )
    );
}

#[test]
fn an_unreachable_registry_fails_the_batch() {
    // A port nothing listens on: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c = converter(&format!("http://127.0.0.1:{port}"), json!({}));
    let err = c
        .convert(batch(0, vec![frame_confluent(1, &[0, 0x08, 0x01])]))
        .unwrap_err();
    assert!(matches!(err, ConvertError::Internal { .. }), "{err}");
    assert!(err.to_string().contains("schema id 1"), "{err}");
}
