//! Confluent-framed Avro records for tests, encoded by the Apache Avro
//! reference implementation (`apache-avro`, re-exported as
//! [`apache_avro`]), so a test's encoder is never the decoder under test,
//! and a plain producer for such raw values.
//!
//! ```
//! use tributary_testkit::avro::{apache_avro::types::Value, confluent_avro};
//!
//! let schema = apache_avro::Schema::parse_str(r#"{"type": "long"}"#).unwrap();
//! let framed = confluent_avro(7, &schema, Value::Long(-1));
//! assert_eq!(framed, [0, 0, 0, 0, 7, 1]);
//! ```

use std::time::Duration;

use anyhow::Context as _;
pub use apache_avro;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// Encodes `value` (checked against `schema` by the encoder) and frames it
/// the Confluent way: magic byte 0, `schema_id` as 4 bytes big-endian, the
/// Avro binary body. Panics if the value does not fit the schema.
pub fn confluent_avro(
    schema_id: u32,
    schema: &apache_avro::Schema,
    value: apache_avro::types::Value,
) -> Vec<u8> {
    let body = apache_avro::to_avro_datum(schema, value)
        .unwrap_or_else(|e| panic!("encoding a test record: {e}"));
    frame(schema_id, &body)
}

/// Like [`confluent_avro`], for a schema that uses named types defined in
/// `schemata` (referenced schemas).
pub fn confluent_avro_with(
    schema_id: u32,
    schema: &apache_avro::Schema,
    schemata: Vec<&apache_avro::Schema>,
    value: apache_avro::types::Value,
) -> Vec<u8> {
    let body = apache_avro::to_avro_datum_schemata(schema, schemata, value)
        .unwrap_or_else(|e| panic!("encoding a test record: {e}"));
    frame(schema_id, &body)
}

fn frame(schema_id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + body.len());
    out.push(0);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Produces `(partition, key, value)` records, as they are, to `topic` and
/// waits until the broker acknowledged all of them (`acks=all`).
pub fn produce_raw(
    bootstrap: &str,
    topic: &str,
    records: &[(i32, String, Vec<u8>)],
) -> anyhow::Result<()> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .create()
        .context("creating the Kafka producer")?;
    for (partition, key, value) in records {
        let mut record = BaseRecord::to(topic)
            .partition(*partition)
            .key(key.as_str())
            .payload(value.as_slice());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    back,
                )) => {
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(e).context("enqueueing a record"),
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(60))
        .context("waiting for the broker to acknowledge every record")?;
    Ok(())
}
