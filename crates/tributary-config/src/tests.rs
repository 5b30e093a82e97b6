use super::*;

const EXAMPLE: &str = r#"
[worker]
id = "worker-1"
http_addr = "127.0.0.1:8083"
shutdown_timeout = "30s"

[[pipelines]]
name = "orders-to-lake"

[pipelines.source]
type = "kafka"
bootstrap_servers = "localhost:9092"
topics = ["orders"]
group_id = "tributary-orders"
start = "earliest"
librdkafka = { "security.protocol" = "PLAINTEXT" }

[pipelines.converter]
type = "json"
schema = "config/schemas/orders.json"
timestamp_field = "event_time"
on_error = "dead_letter"

[pipelines.sink]
type = "parquet"
url = "s3://lake/raw/orders"
compression = "zstd"
partition_by = "dt=%Y-%m-%d/hour=%H"
flush = { max_records = 1_000_000, max_bytes = "128MiB", max_age = "5m" }
"#;

fn parse(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    from_str(
        text,
        FileFormat::Toml,
        "test.toml",
        env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
    )
}

#[test]
fn parses_the_design_example() {
    let c = parse(EXAMPLE, &[]).unwrap();
    validate(&c).unwrap();
    let p = &c.pipelines[0];
    let SourceConfig::Kafka(k) = &p.source else {
        panic!("kafka")
    };
    assert_eq!(k.topics, vec!["orders"]);
    assert_eq!(k.librdkafka["security.protocol"], "PLAINTEXT");
    let SinkConfig::Parquet(s) = &p.sink;
    assert_eq!(s.flush.max_bytes.0, 128 << 20);
    assert_eq!(s.flush.max_age.0.as_secs(), 300);
    assert_eq!(s.timezone, "UTC");
    let ConverterConfig::Json(j) = &p.converter;
    assert_eq!(j.on_error, OnError::DeadLetter);
}

#[test]
fn unknown_key_is_named() {
    let text = EXAMPLE.replace("compression = \"zstd\"", "compresion = \"zstd\"");
    let err = parse(&text, &[]).unwrap_err().to_string();
    assert!(err.contains("compresion"), "{err}");
    assert!(err.contains("pipelines.0.sink"), "{err}");
}

#[test]
fn bad_size_is_named() {
    let text = EXAMPLE.replace("\"128MiB\"", "\"12XB\"");
    let err = parse(&text, &[]).unwrap_err().to_string();
    assert!(err.contains("pipelines.0.sink.flush.max_bytes"), "{err}");
    assert!(err.contains("unknown unit"), "{err}");
}

#[test]
fn env_overrides_by_index_and_name() {
    let c = parse(
        EXAMPLE,
        &[
            ("TRIBUTARY_WORKER__ID", "w-9"),
            (
                "TRIBUTARY_PIPELINES__0__SOURCE__BOOTSTRAP_SERVERS",
                "k1:9092,k2:9092",
            ),
            (
                "TRIBUTARY_PIPELINES__ORDERS_TO_LAKE__SINK__FLUSH__MAX_RECORDS",
                "500",
            ),
            (
                "TRIBUTARY_PIPELINES__0__SOURCE__LIBRDKAFKA__SASL_PASSWORD",
                "hunter2",
            ),
            (
                "TRIBUTARY_PIPELINES__0__SINK__STORAGE__SECRET_ACCESS_KEY",
                "s3cr3t",
            ),
            ("OTHER_VAR", "ignored"),
            ("TRIBUTARY_LOG", "debug"),
            ("TRIBUTARY_REQUIRE_S3", "1"),
        ],
    )
    .unwrap();
    validate(&c).unwrap();
    assert_eq!(c.worker.id, "w-9");
    let SourceConfig::Kafka(k) = &c.pipelines[0].source else {
        panic!()
    };
    assert_eq!(k.bootstrap_servers, "k1:9092,k2:9092");
    assert_eq!(k.librdkafka["sasl.password"], "hunter2");
    let debug = format!("{c:?}");
    assert!(
        !debug.contains("hunter2") && !debug.contains("s3cr3t"),
        "{debug}"
    );
    let SinkConfig::Parquet(s) = &c.pipelines[0].sink;
    assert_eq!(s.flush.max_records, 500);
    assert_eq!(
        s.storage.secret_access_key.as_ref().unwrap().expose(),
        "s3cr3t"
    );
}

#[test]
fn env_naming_a_missing_pipeline_is_an_error() {
    let err = parse(
        EXAMPLE,
        &[("TRIBUTARY_PIPELINES__NOPE__SINK__URL", "file:///x")],
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("TRIBUTARY_PIPELINES__NOPE__SINK__URL"),
        "{err}"
    );
    let err = parse(
        EXAMPLE,
        &[("TRIBUTARY_PIPELINES__3__SINK__URL", "file:///x")],
    )
    .unwrap_err();
    assert!(err.to_string().contains("out of range"), "{err}");
}

#[test]
fn validation_names_the_key() {
    let cases = [
        (
            "url = \"s3://lake/raw/orders\"",
            "url = \"ftp://x\"",
            "pipelines.0.sink.url",
        ),
        (
            "start = \"earliest\"",
            "start = \"earliest\"\nlibrdkafka.\"enable.auto.commit\" = \"true\"",
            "duplicate",
        ),
        (
            "max_age = \"5m\"",
            "max_age = \"0s\"",
            "pipelines.0.sink.flush.max_age",
        ),
        (
            "topics = [\"orders\"]",
            "topics = []",
            "pipelines.0.source.topics",
        ),
        (
            "compression = \"zstd\"",
            "compression = \"zstd\"\ntimezone = \"Mars/Base\"",
            "pipelines.0.sink.timezone",
        ),
        (
            "schema = \"config/schemas/orders.json\"",
            "infer = false",
            "pipelines.0.converter.schema",
        ),
    ];
    for (from, to, key) in cases {
        let text = EXAMPLE.replace(from, to);
        let msg = match parse(&text, &[]) {
            Ok(c) => validate(&c).unwrap_err().to_string(),
            Err(e) => e.to_string(),
        };
        assert!(msg.contains(key), "{to}: {msg}");
    }
}

#[test]
fn owned_librdkafka_properties_are_rejected() {
    let text = EXAMPLE.replace(
        "librdkafka = { \"security.protocol\" = \"PLAINTEXT\" }",
        "librdkafka = { \"enable.auto.commit\" = \"true\" }",
    );
    let err = validate(&parse(&text, &[]).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("pipelines.0.source.librdkafka.\"enable.auto.commit\""),
        "{err}"
    );
}

#[test]
fn yaml_works() {
    let yaml = r#"
pipelines:
  - name: demo
    source: { type: datagen, records: 10 }
    converter: { type: json, infer: true }
    sink: { type: parquet, url: "file:///tmp/lake" }
"#;
    let c = from_str(yaml, FileFormat::Yaml, "t.yaml", Vec::new()).unwrap();
    validate(&c).unwrap();
    assert_eq!(c.worker.shutdown_timeout.0.as_secs(), 30);
}

/// The file source (issue 6): parses with defaults; bad keys are named.
#[test]
fn file_source_parses_and_bad_keys_are_named() {
    let file = |source: &str| {
        EXAMPLE.replace(
            "type = \"kafka\"\nbootstrap_servers = \"localhost:9092\"\ntopics = [\"orders\"]\ngroup_id = \"tributary-orders\"\nstart = \"earliest\"\nlibrdkafka = { \"security.protocol\" = \"PLAINTEXT\" }",
            source,
        )
    };
    let c = parse(
        &file("type = \"file\"\nurl = \"file:///data/dumps\"\nformat = \"csv\""),
        &[],
    )
    .unwrap();
    validate(&c).unwrap();
    let SourceConfig::File(f) = &c.pipelines[0].source else {
        panic!("file source expected")
    };
    assert_eq!(f.format, crate::InputFormat::Csv);
    assert_eq!(f.topic, "files");
    assert_eq!(f.csv_delimiter, ",");
    for (source, key) in [
        (
            "type = \"file\"\nurl = \"dumps\"\nformat = \"csv\"",
            "pipelines.0.source.url",
        ),
        (
            "type = \"file\"\nurl = \"file://dumps\"\nformat = \"csv\"",
            "pipelines.0.source.url",
        ),
        (
            "type = \"file\"\nurl = \"file:///d\"\nformat = \"csv\"\ncsv_delimiter = \";;\"",
            "pipelines.0.source.csv_delimiter",
        ),
        (
            "type = \"file\"\nurl = \"file:///d\"\nformat = \"jsonl\"\nbatch_size = 0",
            "pipelines.0.source.batch_size",
        ),
        (
            "type = \"file\"\nurl = \"file:///d\"\nformat = \"jsonl\"\ntopic = \"a/b\"",
            "pipelines.0.source.topic",
        ),
    ] {
        let err = validate(&parse(&file(source), &[]).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{source}: {err}");
    }
    let err = parse(
        &file("type = \"file\"\nurl = \"file:///d\"\nformat = \"xml\""),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("xml"), "{err}");
}
