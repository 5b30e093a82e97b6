use std::path::Path;

use arrow::array::AsArray;
use arrow::datatypes::{Float64Type, Int64Type};
use bytes::Bytes;
use tributary_config::ConverterConfig;
use tributary_core::{ConvertError, Converter, RawRecord, SourceBatch, TopicPartition};
use tributary_formats::JsonConverter;

use super::TransformingConverter;
use crate::testutil::config;
use crate::TransformChain;

/// Records at offsets 100, 102, 104, ...: holes, like compacted topics.
fn batch(payloads: &[&str]) -> SourceBatch {
    SourceBatch {
        partition: TopicPartition::new("orders", 0),
        records: payloads
            .iter()
            .enumerate()
            .map(|(i, p)| RawRecord {
                offset: 100 + 2 * i as i64,
                timestamp_ms: Some(1_000 + i as i64),
                key: Some(Bytes::from(format!("key-{i}"))),
                payload: Some(Bytes::from(p.to_string())),
                headers: Vec::new(),
            })
            .collect(),
    }
}

const PAYLOADS: [&str; 5] = [
    r#"{"id": 1, "amount": "12.5", "country": "DE"}"#,
    r#"{"id": 2, "amount": "abc", "country": "FR"}"#,
    "not json",
    r#"{"id": 4, "amount": "-1", "country": "DE"}"#,
    r#"{"id": 5, "amount": "7", "country": "XX"}"#,
];

const CHAIN: &str = r#"
[[pipelines.transforms]]
type = "cast"
fields = { amount = "float64" }
[[pipelines.transforms]]
type = "filter"
expr = "amount > 0 and country != 'XX'"
[[pipelines.transforms]]
type = "insert"
field = "offset"
metadata = "offset"
"#;

fn converter(converter: &str, transforms: &str) -> TransformingConverter {
    let c = config(converter, transforms);
    let p = &c.pipelines[0];
    let chain = TransformChain::new(&p.transforms).unwrap();
    let (cfg, hidden) = TransformingConverter::inner_config(&chain, &p.converter);
    let ConverterConfig::Json(j) = &cfg else {
        panic!("json")
    };
    let inner = JsonConverter::new(j, Path::new(".")).unwrap();
    TransformingConverter::new(Box::new(inner), chain, p.converter.on_error(), hidden)
}

#[test]
fn dead_letters_keep_the_original_bytes_and_every_record_is_counted() {
    let mut c = converter("infer = true\non_error = \"dead_letter\"", CHAIN);
    let out = c.convert(batch(&PAYLOADS)).unwrap();
    // Positions are those of the source batch.
    assert_eq!(
        (out.first_offset, out.last_offset, out.source_records),
        (100, 108, 5)
    );
    // id 1 stays; id 4 and 5 are filtered out (skipped); id 2 (cast) and
    // "not json" (converter) are rejected.
    assert_eq!(out.rows.num_rows(), 1);
    assert_eq!(out.event_time_ms, vec![1_000]);
    assert_eq!(out.skipped, 2);
    assert_eq!(
        out.rows.num_rows() + out.rejects.len() + out.skipped,
        out.source_records
    );
    let offsets: Vec<i64> = out.rejects.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![102, 104]);
    let cast = &out.rejects[0];
    assert_eq!(cast.payload.as_deref(), Some(PAYLOADS[1].as_bytes()));
    assert_eq!(cast.key.as_deref(), Some(&b"key-1"[..]));
    assert_eq!(
        cast.reason,
        "transforms.0 (cast): field \"amount\" value abc cannot be cast to float64"
    );
    // The hidden offset column is gone, the inserted one is right.
    let names: Vec<String> = out
        .rows
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["amount", "country", "id", "offset"]);
    assert_eq!(out.rows.column(3).as_primitive::<Int64Type>().value(0), 100);
    assert_eq!(
        out.rows.column(0).as_primitive::<Float64Type>().value(0),
        12.5
    );
    assert_eq!(c.schema().unwrap(), out.rows.schema());
}

#[test]
fn skip_counts_transform_failures_and_rows_still_find_their_records() {
    let mut c = converter("infer = true\non_error = \"skip\"", CHAIN);
    let out = c.convert(batch(&PAYLOADS)).unwrap();
    // Skipped: "not json" (converter), "abc" (cast), two filtered.
    assert_eq!(out.skipped, 4);
    assert!(out.rejects.is_empty());
    assert_eq!(out.rows.num_rows(), 1);
    // The converter skipped a record, yet the offset is still right.
    let out = c
        .convert(batch(&[
            "nope",
            PAYLOADS[0],
            "nope",
            PAYLOADS[3],
            PAYLOADS[0],
        ]))
        .unwrap();
    assert_eq!(
        out.rows
            .column_by_name("offset")
            .unwrap()
            .as_primitive::<Int64Type>()
            .values()
            .to_vec(),
        vec![102, 108]
    );
    assert_eq!(out.event_time_ms, vec![1_001, 1_004]);
    assert_eq!(out.skipped, 3);
}

#[test]
fn fail_stops_at_the_record_a_transform_cannot_handle() {
    let mut c = converter("infer = true", CHAIN);
    let err = c.convert(batch(&[PAYLOADS[0], PAYLOADS[1]])).unwrap_err();
    match err {
        ConvertError::Record {
            partition,
            offset,
            reason,
        } => {
            assert_eq!(partition, TopicPartition::new("orders", 0));
            assert_eq!(offset, 102);
            assert!(reason.contains("\"amount\" value abc"), "{reason}");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn an_offset_column_the_user_asked_for_is_kept() {
    let mut c = converter(
        "infer = true\nmetadata = [\"offset\"]",
        r#"
[[pipelines.transforms]]
type = "cast"
fields = { id = "string" }
"#,
    );
    let out = c.convert(batch(&[PAYLOADS[0]])).unwrap();
    assert!(out.rows.column_by_name("_offset").is_some());
    assert_eq!(
        out.rows
            .column_by_name("id")
            .unwrap()
            .as_string::<i32>()
            .value(0),
        "1"
    );
}

#[test]
fn a_chain_without_per_record_steps_does_not_add_offsets() {
    let mut c = converter(
        "infer = true",
        r#"
[[pipelines.transforms]]
type = "drop"
fields = ["country"]
"#,
    );
    let out = c.convert(batch(&[PAYLOADS[0]])).unwrap();
    assert_eq!(out.rows.num_columns(), 2);
}
