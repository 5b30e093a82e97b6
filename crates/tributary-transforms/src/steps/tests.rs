use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, StringArray, StructArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{
    DataType, Field, Fields, Int32Type, Int64Type, Schema, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType,
};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use tributary_core::{RawRecord, TopicPartition};

use crate::testutil::transforms;
use crate::{Applied, TransformChain, TransformError};

/// Four records at offsets 10..=13 with keys k10.. and timestamps 1000.. ms.
fn records() -> Vec<RawRecord> {
    (10..14)
        .map(|o| RawRecord {
            offset: o,
            timestamp_ms: Some(o * 100),
            key: Some(Bytes::from(format!("k{o}"))),
            payload: Some(Bytes::from(format!("payload {o}"))),
            headers: Vec::new(),
        })
        .collect()
}

/// id: int64, amount: string, customer: struct{name, address: struct{city}}
/// (customer null in row 3), ts: string.
fn batch() -> RecordBatch {
    let city: ArrayRef = Arc::new(StringArray::from(vec!["Paris", "Lyon", "Nice", "Lille"]));
    let address = StructArray::new(
        Fields::from(vec![Field::new("city", DataType::Utf8, false)]),
        vec![city],
        None,
    );
    let name: ArrayRef = Arc::new(StringArray::from(vec![
        Some("ann"),
        None,
        Some("cy"),
        Some("dee"),
    ]));
    let customer = StructArray::new(
        Fields::from(vec![
            Field::new("name", DataType::Utf8, true),
            Field::new("address", address.data_type().clone(), false),
        ]),
        vec![name, Arc::new(address)],
        Some(NullBuffer::from(vec![true, true, true, false])),
    );
    let schema = Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("amount", DataType::Utf8, true),
        Field::new("customer", customer.data_type().clone(), true),
        Field::new("ts", DataType::Utf8, true),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
            Arc::new(StringArray::from(vec![
                Some("12.50"),
                Some("abc"),
                None,
                Some("-3"),
            ])),
            Arc::new(customer),
            Arc::new(StringArray::from(vec![
                Some("2026-11-24 06:30:00"),
                Some("2026-11-24 07:00:00"),
                None,
                Some("2026-03-29 02:30:00"),
            ])),
        ],
    )
    .unwrap()
}

fn run(toml: &str) -> Result<Applied, TransformError> {
    let chain = TransformChain::new(&transforms(toml)).unwrap();
    let records = records();
    let partition = TopicPartition::new("orders", 2);
    chain.run(
        batch(),
        vec![1, 2, 3, 4],
        &partition,
        &records,
        Some(vec![0, 1, 2, 3]),
    )
}

fn names(b: &RecordBatch) -> Vec<String> {
    b.schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

fn config_error(toml: &str) -> String {
    TransformChain::new(&transforms(toml))
        .unwrap_err()
        .to_string()
}

fn run_error(toml: &str) -> String {
    run(toml).unwrap_err().to_string()
}

#[test]
fn rename_top_level_and_nested_fields_at_once() {
    let out = run(r#"
[[pipelines.transforms]]
type = "rename"
fields = { id = "amount", amount = "id", "customer.address.city" = "town" }
"#)
    .unwrap();
    assert_eq!(names(&out.batch), ["amount", "id", "customer", "ts"]);
    assert_eq!(out.batch.column(0).data_type(), &DataType::Int64);
    let DataType::Struct(c) = out.batch.schema().field(2).data_type().clone() else {
        panic!()
    };
    let DataType::Struct(a) = c[1].data_type().clone() else {
        panic!()
    };
    assert_eq!(a[0].name(), "town");
    assert_eq!(
        run_error(
            r#"
[[pipelines.transforms]]
type = "rename"
fields = { amount = "ts" }
"#
        ),
        "transforms.0.fields: two fields would be named \"ts\""
    );
    assert_eq!(
        run_error(
            r#"
[[pipelines.transforms]]
type = "rename"
fields = { "customer.nmae" = "n" }
"#
        ),
        "transforms.0.fields.customer.nmae: field \"customer.nmae\" not found: \"customer\" has \
         fields \"name\", \"address\""
    );
}

#[test]
fn drop_removes_fields_and_refuses_to_empty_a_struct() {
    let out = run(r#"
[[pipelines.transforms]]
type = "drop"
fields = ["amount", "customer.address"]
"#)
    .unwrap();
    assert_eq!(names(&out.batch), ["id", "customer", "ts"]);
    assert_eq!(
        run_error(
            r#"
[[pipelines.transforms]]
type = "drop"
fields = ["customer.address.city"]
"#
        ),
        "transforms.0.fields.0: struct \"address\" would have no fields left; drop it instead"
    );
    assert!(run_error(
        r#"
[[pipelines.transforms]]
type = "drop"
fields = ["nope"]
"#
    )
    .starts_with("transforms.0.fields.0: field \"nope\" not found"));
}

#[test]
fn insert_static_values_and_kafka_metadata() {
    let out = run(r#"
[[pipelines.transforms]]
type = "insert"
field = "source"
value = "shop"
[[pipelines.transforms]]
type = "insert"
field = "version"
value = 3
[[pipelines.transforms]]
type = "insert"
field = "topic"
metadata = "topic"
[[pipelines.transforms]]
type = "insert"
field = "partition"
metadata = "partition"
[[pipelines.transforms]]
type = "insert"
field = "offset"
metadata = "offset"
[[pipelines.transforms]]
type = "insert"
field = "kafka_ts"
metadata = "timestamp"
[[pipelines.transforms]]
type = "insert"
field = "key"
metadata = "key"
"#)
    .unwrap();
    let b = &out.batch;
    let col = |name: &str| b.column_by_name(name).unwrap().clone();
    assert_eq!(col("source").as_string::<i32>().value(3), "shop");
    assert_eq!(col("version").as_primitive::<Int64Type>().value(0), 3);
    assert_eq!(col("topic").as_string::<i32>().value(1), "orders");
    assert_eq!(col("partition").as_primitive::<Int32Type>().value(1), 2);
    assert_eq!(
        col("offset").as_primitive::<Int64Type>().values().to_vec(),
        vec![10, 11, 12, 13]
    );
    assert_eq!(
        col("kafka_ts")
            .as_primitive::<TimestampMillisecondType>()
            .value(2),
        1200
    );
    assert_eq!(col("key").as_string::<i32>().value(3), "k13");
    assert_eq!(
        run_error(
            r#"
[[pipelines.transforms]]
type = "insert"
field = "id"
value = true
"#
        ),
        "transforms.0.field: field \"id\" already exists (rename or drop it first)"
    );
    assert_eq!(
        config_error(
            r#"
[[pipelines.transforms]]
type = "insert"
field = "x"
"#
        ),
        "transforms.0.value: set exactly one of `value` (a string, number or boolean) and \
         `metadata` (topic, partition, offset, timestamp or key)"
    );
}

#[test]
fn a_value_that_does_not_cast_fails_its_record_only() {
    let out = run(r#"
[[pipelines.transforms]]
type = "cast"
fields = { amount = "decimal(12,2)", "customer.address.city" = "string" }
"#)
    .unwrap();
    // Row 1 ("abc") failed: the others are cast, null stays null.
    assert_eq!(out.batch.num_rows(), 3);
    assert_eq!(out.event_time_ms, vec![1, 3, 4]);
    assert_eq!(
        out.failures,
        vec![(
            1,
            "transforms.0 (cast): field \"amount\" value abc cannot be cast to decimal(12,2)"
                .to_string()
        )]
    );
    let amount = out.batch.column_by_name("amount").unwrap();
    assert_eq!(amount.data_type(), &DataType::Decimal128(12, 2));
    assert_eq!(
        amount
            .as_primitive::<arrow::datatypes::Decimal128Type>()
            .value(0),
        1250
    );
    assert!(amount.is_null(1));
    // The schema does not depend on whether a batch had failures.
    assert!(out
        .batch
        .schema()
        .field_with_name("amount")
        .unwrap()
        .is_nullable());
    assert_eq!(
        config_error(
            r#"
[[pipelines.transforms]]
type = "cast"
fields = { amount = "money" }
"#
        ),
        format!(
            "transforms.0.fields.amount: unknown type \"money\" (known: {})",
            super::TYPES
        )
    );
    assert_eq!(
        run_error(
            r#"
[[pipelines.transforms]]
type = "cast"
fields = { customer = "int64" }
"#
        ),
        "transforms.0.fields.customer: field \"customer\" is Struct(\"name\": Utf8, \
         \"address\": non-null Struct(\"city\": non-null Utf8)), which cannot be cast to int64"
    );
}

#[test]
fn filter_counts_what_it_removes_and_keeps_times_aligned() {
    let out = run(r#"
[[pipelines.transforms]]
type = "filter"
expr = "id != 2 and (customer.name is not null or id = 4)"
"#)
    .unwrap();
    assert_eq!(
        out.batch
            .column(0)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec(),
        vec![1, 3, 4]
    );
    assert_eq!(out.event_time_ms, vec![1, 3, 4]);
    assert_eq!(out.filtered, 1);
    assert!(out.failures.is_empty());
    assert_eq!(
        config_error(
            r#"
[[pipelines.transforms]]
type = "filter"
expr = "id >"
"#
        ),
        "transforms.0.expr: expected a value after '>', found end of expression at column 5"
    );
    assert!(run_error(
        r#"
[[pipelines.transforms]]
type = "filter"
expr = "idd = 1"
"#
    )
    .starts_with("transforms.0.expr: field \"idd\" not found"));
}

#[test]
fn flatten_moves_struct_children_up_and_keeps_parent_nulls() {
    let out = run(r#"
[[pipelines.transforms]]
type = "flatten"
"#)
    .unwrap();
    assert_eq!(
        names(&out.batch),
        [
            "id",
            "amount",
            "customer_name",
            "customer_address_city",
            "ts"
        ]
    );
    let city = out.batch.column(3).as_string::<i32>();
    assert_eq!(city.value(0), "Paris");
    // Row 3's customer is null, so is its city.
    assert!(city.is_null(3));
    assert!(out.batch.schema().field(3).is_nullable());
    let out = run(r#"
[[pipelines.transforms]]
type = "flatten"
separator = "."
"#)
    .unwrap();
    assert_eq!(names(&out.batch)[3], "customer.address.city");
    assert_eq!(
        run_error(
            r#"
[[pipelines.transforms]]
type = "insert"
field = "customer_name"
value = "x"
[[pipelines.transforms]]
type = "flatten"
"#
        ),
        "transforms.1.separator: two fields would be named \"customer_name\" after flattening; \
         choose another separator or rename first"
    );
}

#[test]
fn timestamps_parse_in_a_timezone_and_feed_the_event_time() {
    let out = run(r#"
[[pipelines.transforms]]
type = "timestamp"
field = "ts"
format = "%Y-%m-%d %H:%M:%S"
timezone = "Europe/Paris"
target = "timestamp_ms"
event_time = true
"#);
    // 2026-03-29 02:30 does not exist in Paris (clocks jump 02:00 → 03:00).
    let out = out.unwrap();
    assert_eq!(
        out.failures,
        vec![(
            3,
            "transforms.0 (timestamp): field \"ts\" value \"2026-03-29 02:30:00\" does not \
             match format \"%Y-%m-%d %H:%M:%S\""
                .to_string()
        )]
    );
    let ts = out.batch.column_by_name("ts").unwrap();
    assert_eq!(
        ts.data_type(),
        &DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
    );
    let ts = ts.as_primitive::<TimestampMillisecondType>();
    // 06:30 in Paris (UTC+1 in November) is 05:30 UTC.
    assert_eq!(ts.value(0), 1_795_498_200_000);
    assert!(ts.is_null(2));
    // Event times: parsed where not null, the converter's otherwise.
    assert_eq!(
        out.event_time_ms,
        vec![1_795_498_200_000, 1_795_500_000_000, 3]
    );
}

#[test]
fn timestamps_from_numbers_and_rfc3339() {
    let out = run(r#"
[[pipelines.transforms]]
type = "timestamp"
field = "id"
format = "unix_s"
"#)
    .unwrap();
    let ts = out
        .batch
        .column(0)
        .as_primitive::<TimestampMicrosecondType>();
    assert_eq!(ts.value(1), 2_000_000);
    assert_eq!(
        run_error(
            r#"
[[pipelines.transforms]]
type = "timestamp"
field = "id"
"#
        ),
        "transforms.0.format: field \"id\" is Int64: set format to unix_s, unix_ms or unix_us"
    );
    let out = run(r#"
[[pipelines.transforms]]
type = "timestamp"
field = "ts"
"#)
    .unwrap();
    // Default format rfc3339: all three non-null values fail.
    assert_eq!(out.failures.len(), 3);
    assert_eq!(out.batch.num_rows(), 1);
    assert_eq!(
        config_error(
            r#"
[[pipelines.transforms]]
type = "timestamp"
field = "ts"
format = "iso"
"#
        ),
        "transforms.0.format: \"iso\" is not a format: use rfc3339, unix_s, unix_ms, unix_us or \
         a strftime pattern such as \"%Y-%m-%d %H:%M:%S\""
    );
    assert_eq!(
        config_error(
            r#"
[[pipelines.transforms]]
type = "timestamp"
field = "ts"
timezone = "Mars/Olympus"
"#
        ),
        "transforms.0.timezone: \"Mars/Olympus\" is not an IANA timezone"
    );
}

#[test]
fn the_output_schema_of_an_empty_batch_checks_every_step() {
    let chain = TransformChain::new(&transforms(
        r#"
[[pipelines.transforms]]
type = "flatten"
[[pipelines.transforms]]
type = "cast"
fields = { amount = "float64" }
[[pipelines.transforms]]
type = "filter"
expr = "amount > 0 and customer_address_city != 'Paris'"
"#,
    ))
    .unwrap();
    let schema = chain.output_schema(&batch().schema()).unwrap();
    assert_eq!(
        schema.field_with_name("amount").unwrap().data_type(),
        &DataType::Float64
    );
    let chain = TransformChain::new(&transforms(
        r#"
[[pipelines.transforms]]
type = "filter"
expr = "customer.address.city > 3"
"#,
    ))
    .unwrap();
    assert_eq!(
        chain
            .output_schema(&batch().schema())
            .unwrap_err()
            .to_string(),
        "transforms.0.expr: cannot compare field \"customer.address.city\" (Utf8) with 3 (Int64)"
    );
    // Float column for the unused imports.
    let _ = Float64Array::from(vec![1.0]);
}
