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
    let ConverterConfig::Json(j) = &p.converter else {
        panic!("expected the JSON converter, got {:?}", p.converter);
    };
    assert_eq!(j.on_error, OnError::DeadLetter);
}

#[test]
fn max_record_bytes_defaults_to_8_mib_and_zero_is_refused() {
    let c = parse(EXAMPLE, &[]).unwrap();
    assert_eq!(c.pipelines[0].converter.max_record_bytes(), 8 << 20);
    let text = EXAMPLE.replace(
        "on_error = \"dead_letter\"",
        "on_error = \"dead_letter\"\nmax_record_bytes = \"0B\"",
    );
    let err = validate(&parse(&text, &[]).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("pipelines.0.converter.max_record_bytes"),
        "{err}"
    );
    let text = EXAMPLE.replace(
        "on_error = \"dead_letter\"",
        "on_error = \"dead_letter\"\nmax_record_bytes = \"1MiB\"",
    );
    let c = parse(&text, &[]).unwrap();
    assert_eq!(c.pipelines[0].converter.max_record_bytes(), 1 << 20);
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

const KAFKA_DEAD_LETTER: &str = r#"
[pipelines.dead_letter]
type = "kafka"
topic = "orders-dlq"
librdkafka = { "sasl.password" = "hunter2", "linger.ms" = "10" }
"#;

#[test]
fn dead_letter_defaults_to_the_lake() {
    let c = parse(EXAMPLE, &[]).unwrap();
    assert!(matches!(
        c.pipelines[0].dead_letter,
        DeadLetterConfig::Lake {}
    ));
    let text = format!("{EXAMPLE}\n[pipelines.dead_letter]\ntype = \"lake\"\n");
    let c = parse(&text, &[]).unwrap();
    assert!(matches!(
        c.pipelines[0].dead_letter,
        DeadLetterConfig::Lake {}
    ));
    let text = format!("{EXAMPLE}\n[pipelines.dead_letter]\ntype = \"lake\"\ntopic = \"x\"\n");
    let err = parse(&text, &[]).unwrap_err().to_string();
    assert!(err.contains("topic"), "{err}");
}

#[test]
fn kafka_dead_letter_parses_validates_and_masks_secrets() {
    let c = parse(&format!("{EXAMPLE}{KAFKA_DEAD_LETTER}"), &[]).unwrap();
    validate(&c).unwrap();
    let DeadLetterConfig::Kafka(k) = &c.pipelines[0].dead_letter else {
        panic!("expected the Kafka route");
    };
    assert_eq!(k.topic, "orders-dlq");
    assert_eq!(k.bootstrap_servers, None);
    assert_eq!(k.partitioner, DeadLetterPartitioner::SourcePartition);
    assert_eq!(k.timeout.0.as_secs(), 60);
    let debug = format!("{k:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(debug.contains("linger.ms"), "{debug}");

    let text = format!(
        "{EXAMPLE}{}",
        KAFKA_DEAD_LETTER.replace("topic = \"orders-dlq\"", "topic = \"orders-dlq\"\ntopc = 1")
    );
    let err = parse(&text, &[]).unwrap_err().to_string();
    assert!(err.contains("pipelines.0.dead_letter"), "{err}");
    assert!(err.contains("topc"), "{err}");
}

#[test]
fn kafka_dead_letter_validation_names_the_key() {
    let cases = [
        (
            "topic = \"orders-dlq\"",
            "topic = \"bad topic\"",
            "pipelines.0.dead_letter.topic",
        ),
        (
            "topic = \"orders-dlq\"",
            "topic = \"orders\"",
            "also a source topic",
        ),
        (
            "topic = \"orders-dlq\"",
            "topic = \"orders-dlq\"\nbootstrap_servers = \"nohost\"",
            "pipelines.0.dead_letter.bootstrap_servers",
        ),
        (
            "topic = \"orders-dlq\"",
            "topic = \"orders-dlq\"\ntimeout = \"0s\"",
            "pipelines.0.dead_letter.timeout",
        ),
        (
            "\"linger.ms\" = \"10\"",
            "\"enable.idempotence\" = \"false\"",
            "pipelines.0.dead_letter.librdkafka.\"enable.idempotence\"",
        ),
        (
            "\"linger.ms\" = \"10\"",
            "\"transactional.id\" = \"t\"",
            "transactions",
        ),
    ];
    for (from, to, key) in cases {
        let text = format!("{EXAMPLE}{}", KAFKA_DEAD_LETTER.replace(from, to));
        let msg = match parse(&text, &[]) {
            Ok(c) => validate(&c).unwrap_err().to_string(),
            Err(e) => e.to_string(),
        };
        assert!(msg.contains(key), "{to}: {msg}");
    }
}

#[test]
fn kafka_dead_letter_needs_servers_without_a_kafka_source() {
    let text = r#"
[[pipelines]]
name = "gen"
[pipelines.source]
type = "datagen"
[pipelines.converter]
type = "json"
infer = true
[pipelines.sink]
type = "parquet"
url = "file:///tmp/lake"
[pipelines.dead_letter]
type = "kafka"
topic = "gen-dlq"
"#;
    let err = validate(&parse(text, &[]).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("pipelines.0.dead_letter.bootstrap_servers"),
        "{err}"
    );
    let text = text.replace(
        "topic = \"gen-dlq\"",
        "topic = \"gen-dlq\"\nbootstrap_servers = \"127.0.0.1:9092\"",
    );
    validate(&parse(&text, &[]).unwrap()).unwrap();
}

#[test]
fn protobuf_converter_parses_and_validation_names_the_key() {
    let with = |converter: &str| {
        EXAMPLE.replace(
            "type = \"json\"\nschema = \"config/schemas/orders.json\"\ntimestamp_field = \"event_time\"\non_error = \"dead_letter\"\n",
            converter,
        )
    };
    let registry = with(
        "type = \"protobuf\"\nschema_registry = { url = \"http://127.0.0.1:8081\" }\non_error = \"dead_letter\"\n",
    );
    let c = parse(&registry, &[]).unwrap();
    validate(&c).unwrap();
    let ConverterConfig::Protobuf(p) = &c.pipelines[0].converter else {
        panic!("expected the protobuf converter");
    };
    assert_eq!(p.on_error, OnError::DeadLetter);
    assert_eq!(p.schema_evolution, SchemaEvolution::Merge);
    let file =
        with("type = \"protobuf\"\nschema_file = \"orders.proto\"\nmessage = \"shop.Order\"\n");
    validate(&parse(&file, &[]).unwrap()).unwrap();

    let cases = [
        ("type = \"protobuf\"\n", "pipelines.0.converter.schema_registry"),
        ("type = \"protobuf\"\nschema_file = \"o.proto\"\n", "pipelines.0.converter.message"),
        (
            "type = \"protobuf\"\nschema_file = \"o.proto\"\nmessage = \"M\"\nschema_registry = { url = \"http://127.0.0.1:8081\" }\n",
            "pipelines.0.converter.schema_file",
        ),
        (
            "type = \"protobuf\"\nschema_registry = { url = \"http://127.0.0.1:8081\" }\nmessage = \"M\"\n",
            "pipelines.0.converter.message",
        ),
        (
            "type = \"protobuf\"\nschema_registry = { url = \"ftp://x\" }\n",
            "pipelines.0.converter.schema_registry.url",
        ),
        (
            "type = \"protobuf\"\nschema_file = \"o.proto\"\nmessage = \"M\"\nmetadata = [\"key\", \"key\"]\n",
            "pipelines.0.converter.metadata.1",
        ),
    ];
    for (converter, key) in cases {
        let err = validate(&parse(&with(converter), &[]).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{converter}: {err}");
    }
    let err = parse(
        &with("type = \"protobuf\"\nschema_fille = \"o.proto\"\n"),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("pipelines.0.converter") && err.contains("schema_fille"),
        "{err}"
    );
}

#[test]
fn late_data_parses_and_needs_partition_by() {
    let with = |late: &str| {
        EXAMPLE.replace(
            "flush = { max_records",
            &format!("late_data = {late}\nflush = {{ max_records"),
        )
    };
    let c = parse(
        &with(r#"{ policy = "processing_time", allowed_lateness = "1h" }"#),
        &[],
    )
    .unwrap();
    validate(&c).unwrap();
    let SinkConfig::Parquet(s) = &c.pipelines[0].sink;
    let late = s.late_data.unwrap();
    assert_eq!(late.policy, LatePolicy::ProcessingTime);
    assert_eq!(late.allowed_lateness.0.as_secs(), 3600);
    assert_eq!(late.allowed_future.0.as_secs(), 300);
    let c = parse(&with(r#"{ allowed_lateness = "10m" }"#), &[]).unwrap();
    let SinkConfig::Parquet(s) = &c.pipelines[0].sink;
    assert_eq!(s.late_data.unwrap().policy, LatePolicy::EventTime);

    let e = parse(
        &with(r#"{ policy = "wall_clock", allowed_lateness = "1h" }"#),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("wall_clock"), "{e}");
    let e = parse(&with(r#"{ policy = "event_time" }"#), &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("allowed_lateness"), "{e}");
    let zero = parse(&with(r#"{ allowed_lateness = "0s" }"#), &[]).unwrap();
    let e = validate(&zero).unwrap_err().to_string();
    assert!(
        e.contains("pipelines.0.sink.late_data.allowed_lateness"),
        "{e}"
    );
    let no_template = with(r#"{ allowed_lateness = "1h" }"#)
        .replace("partition_by = \"dt=%Y-%m-%d/hour=%H\"\n", "");
    let e = validate(&parse(&no_template, &[]).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("pipelines.0.sink.late_data"), "{e}");
    assert!(e.contains("partition_by"), "{e}");
}

#[test]
fn avro_converter_parses_validates_offline_and_masks_the_password() {
    let with = |converter: &str| {
        EXAMPLE.replace(
            "type = \"json\"\nschema = \"config/schemas/orders.json\"\ntimestamp_field = \"event_time\"\non_error = \"dead_letter\"\n",
            converter,
        )
    };
    let text = with(
        "type = \"avro\"\nschema_registry = { url = \"https://registry.internal:8081/\", username = \"reader\", ca_file = \"ca.pem\" }\ntimestamp_field = \"at\"\non_error = \"dead_letter\"\nmetadata = [\"offset\"]\n",
    );
    let c = parse(
        &text,
        &[(
            "TRIBUTARY_PIPELINES__0__CONVERTER__SCHEMA_REGISTRY__PASSWORD",
            "hunter2",
        )],
    )
    .unwrap();
    validate(&c).unwrap();
    let ConverterConfig::Avro(a) = &c.pipelines[0].converter else {
        panic!(
            "expected the avro converter, got {:?}",
            c.pipelines[0].converter
        );
    };
    assert_eq!(
        a.schema_registry.password.as_ref().map(Secret::expose),
        Some("hunter2")
    );
    assert_eq!(a.schema_registry.timeout.0.as_secs(), 10);
    assert_eq!(a.schema_evolution, SchemaEvolution::Merge);
    assert!(!format!("{c:?}").contains("hunter2"));
    assert!(!serde_json::to_string(&c).unwrap().contains("hunter2"));

    let cases = [
        (
            "schema_registry = { url = \"ftp://x\" }",
            "pipelines.0.converter.schema_registry.url",
        ),
        (
            "schema_registry = { url = \"http://\" }",
            "pipelines.0.converter.schema_registry.url",
        ),
        (
            "schema_registry = { url = \"http://u:p@host:8081\" }",
            "pipelines.0.converter.schema_registry.url",
        ),
        (
            "schema_registry = { url = \"http://host:99999\" }",
            "pipelines.0.converter.schema_registry.url",
        ),
        (
            "schema_registry = { url = \"http://host\", username = \"u\" }",
            "pipelines.0.converter.schema_registry.password",
        ),
        (
            "schema_registry = { url = \"http://host\", password = \"p\" }",
            "pipelines.0.converter.schema_registry.username",
        ),
        (
            "schema_registry = { url = \"http://host\", ca_file = \"ca.pem\" }",
            "pipelines.0.converter.schema_registry.ca_file",
        ),
        (
            "schema_registry = { url = \"http://host\", timeout = \"0s\" }",
            "pipelines.0.converter.schema_registry.timeout",
        ),
        (
            "schema_registry = { url = \"http://host\" }\nmetadata = [\"key\", \"key\"]",
            "pipelines.0.converter.metadata.1",
        ),
        (
            "schema_registry = { url = \"http://host\" }\ntimestamp_field = \" \"",
            "pipelines.0.converter.timestamp_field",
        ),
    ];
    for (converter, key) in cases {
        let text = with(&format!("type = \"avro\"\n{converter}\n"));
        let msg = match parse(&text, &[]) {
            Ok(c) => validate(&c).unwrap_err().to_string(),
            Err(e) => e.to_string(),
        };
        assert!(msg.contains(key), "{converter}: {msg}");
    }
    let err = parse(
        &with("type = \"avro\"\nschema_registry = { url = \"http://h\", user = \"u\" }\n"),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("pipelines.0.converter") && err.contains("user"),
        "{err}"
    );
    let err = parse(&with("type = \"avro\"\n"), &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("schema_registry"), "{err}");
}

#[test]
fn kafka_dead_letter_secrets_can_come_from_the_environment() {
    let c = parse(
        &format!("{EXAMPLE}{KAFKA_DEAD_LETTER}"),
        &[(
            "TRIBUTARY_PIPELINES__ORDERS_TO_LAKE__DEAD_LETTER__LIBRDKAFKA__SASL_PASSWORD",
            "from-env",
        )],
    )
    .unwrap();
    let DeadLetterConfig::Kafka(k) = &c.pipelines[0].dead_letter else {
        panic!("expected the Kafka route");
    };
    assert_eq!(k.librdkafka["sasl.password"], "from-env");
    assert!(!format!("{k:?}").contains("from-env"));
}
