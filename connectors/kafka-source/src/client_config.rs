//! The librdkafka properties of the consumer, built from [`KafkaSourceConfig`].

use rdkafka::ClientConfig;
use tributary_config::{KafkaSourceConfig, StartPosition};
use tributary_core::SourceError;

/// Properties Tributary sets itself; the passthrough map must not set them
/// (the config crate rejects them already; this is the last line of defence
/// for configs built in code).
const OWNED: [&str; 5] = [
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
];

/// Defaults that the passthrough map may override.
const OVERRIDABLE_DEFAULTS: [(&str, &str); 4] = [
    // End-of-partition events carry no information the runtime uses (the
    // poll thread ignores them if a user turns them on).
    ("enable.partition.eof", "false"),
    // Eager assignors: the runtime answers every assignment and revocation
    // as a whole, and the mock cluster is unreliable with cooperative-sticky.
    // The source handles the cooperative protocol too if a user sets it.
    ("partition.assignment.strategy", "range,roundrobin"),
    // The poll thread stops polling while the pipeline applies backpressure
    // or while a rebalance waits for the runtime's answer; be generous.
    ("max.poll.interval.ms", "300000"),
    // librdkafka stops fetching a partition whose prefetch queue is over
    // `queued.min.messages` / `queued.max.messages.kbytes` and, by default,
    // looks again only after 1 s. A pipeline catching up on a backlog fills
    // the queue whenever it pauses briefly (landing a file), then drains it
    // in far less than a second and waits: with a Tansu broker and a
    // preloaded backlog, W1 over 12 partitions spent half its poll thread
    // waiting on an empty queue. The queue bounds still hold; only the
    // re-check is sooner.
    ("fetch.queue.backoff.ms", "10"),
];

/// Builds the consumer properties: owned keys, overridable defaults, then
/// the passthrough map (TLS, SASL, fetch sizes, ...). Public so that a
/// benchmark's consume-only baseline uses exactly the source's settings.
pub fn client_config(cfg: &KafkaSourceConfig, pipeline: &str) -> Result<ClientConfig, SourceError> {
    if cfg.topics.is_empty() {
        return Err(SourceError::Setup {
            message: "`topics` must name at least one topic or pattern".into(),
        });
    }
    if cfg.group_id.trim().is_empty() {
        return Err(SourceError::Setup {
            message: "`group_id` must not be empty".into(),
        });
    }
    if let Some(key) = cfg.librdkafka.keys().find(|k| OWNED.contains(&k.as_str())) {
        return Err(SourceError::Setup {
            message: format!(
                "librdkafka property `{key}` is set by Tributary and cannot be passed through"
            ),
        });
    }

    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &cfg.bootstrap_servers)
        .set("group.id", &cfg.group_id)
        .set("client.id", format!("tributary-{pipeline}"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set(
            "auto.offset.reset",
            match cfg.start {
                StartPosition::Earliest => "earliest",
                StartPosition::Latest => "latest",
            },
        );
    for (key, value) in OVERRIDABLE_DEFAULTS {
        config.set(key, value);
    }
    for (key, value) in &cfg.librdkafka {
        config.set(key, value);
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use tributary_config::HumanDuration;

    use super::*;

    fn cfg(passthrough: &[(&str, &str)]) -> KafkaSourceConfig {
        KafkaSourceConfig {
            bootstrap_servers: "k1:9092,k2:9092".into(),
            topics: vec!["orders".into(), "^audit-.*".into()],
            group_id: "g".into(),
            start: StartPosition::Latest,
            max_poll_records: 10,
            poll_timeout: HumanDuration::from_secs(1),
            librdkafka: passthrough
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn owned_properties_are_set() {
        let c = client_config(&cfg(&[]), "orders-to-lake").unwrap();
        assert_eq!(c.get("bootstrap.servers"), Some("k1:9092,k2:9092"));
        assert_eq!(c.get("group.id"), Some("g"));
        assert_eq!(c.get("client.id"), Some("tributary-orders-to-lake"));
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("enable.partition.eof"), Some("false"));
        assert_eq!(c.get("auto.offset.reset"), Some("latest"));
        assert_eq!(
            c.get("partition.assignment.strategy"),
            Some("range,roundrobin")
        );
        assert_eq!(c.get("max.poll.interval.ms"), Some("300000"));
        assert_eq!(c.get("fetch.queue.backoff.ms"), Some("10"));
    }

    #[test]
    fn passthrough_overrides_defaults_and_adds_keys() {
        let c = client_config(
            &cfg(&[
                ("partition.assignment.strategy", "cooperative-sticky"),
                ("security.protocol", "SASL_SSL"),
                ("client.id", "custom"),
            ]),
            "p",
        )
        .unwrap();
        assert_eq!(
            c.get("partition.assignment.strategy"),
            Some("cooperative-sticky")
        );
        assert_eq!(c.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(c.get("client.id"), Some("custom"));
    }

    #[test]
    fn owned_properties_cannot_be_passed_through() {
        for key in OWNED {
            let err = client_config(&cfg(&[(key, "x")]), "p").unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[test]
    fn empty_topics_are_rejected() {
        let mut c = cfg(&[]);
        c.topics.clear();
        assert!(matches!(
            client_config(&c, "p"),
            Err(SourceError::Setup { .. })
        ));
    }
}
