//! What the broker knows about a pipeline's partitions: how many each topic
//! has, their low and high watermarks, and the consumer group's committed
//! offsets.
//!
//! The client is a plain consumer that never subscribes: fetching a group's
//! committed offsets (OffsetFetch) does not join the group, so verifying a
//! lake never rebalances the pipeline that writes it. (`KafkaSource` has the
//! same two queries, `watermarks()` and `committed_offsets()`, but starting
//! one subscribes, joins the group and takes partitions from the running
//! workers.) Every call blocks for up to the timeout: run them on a blocking
//! thread.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tributary_config::KafkaSourceConfig;
use tributary_core::TopicPartition;

/// A read-only client of the pipeline's cluster and group.
pub struct Broker {
    consumer: BaseConsumer,
    timeout: Duration,
}

/// What the broker said before the lake was read.
#[derive(Debug, Default)]
pub struct GroupSnapshot {
    /// Partitions of the topics asked about.
    pub partitions: BTreeSet<TopicPartition>,
    /// The group's committed offset (next offset to read) of each partition
    /// asked about; `None` where the group has none.
    pub group: BTreeMap<TopicPartition, Option<i64>>,
    /// Topics the broker answered with an error (unknown topic, no access).
    pub topic_errors: Vec<String>,
}

impl Broker {
    /// A client with the source's bootstrap servers, group id and
    /// librdkafka properties (TLS, SASL). Does no network I/O.
    pub fn new(cfg: &KafkaSourceConfig, pipeline: &str, timeout: Duration) -> anyhow::Result<Self> {
        let mut config = ClientConfig::new();
        for (key, value) in &cfg.librdkafka {
            config.set(key, value);
        }
        config
            .set("bootstrap.servers", &cfg.bootstrap_servers)
            .set("group.id", &cfg.group_id)
            .set("client.id", format!("tributary-verify-{pipeline}"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        let consumer: BaseConsumer = config.create().context("cannot create the Kafka client")?;
        Ok(Self { consumer, timeout })
    }

    /// The partitions of `topics` (asked one topic at a time; regex
    /// subscriptions are not expanded) and the group's committed offsets for
    /// them and for `known` (partitions the lake holds). Fails when the
    /// cluster cannot be reached.
    pub fn snapshot(
        &self,
        topics: &BTreeSet<String>,
        known: &[TopicPartition],
    ) -> anyhow::Result<GroupSnapshot> {
        let mut snapshot = GroupSnapshot::default();
        if topics.is_empty() {
            // Only regex subscriptions and nothing landed: nothing to ask
            // about, but an unreachable cluster must still show.
            self.consumer
                .fetch_metadata(None, self.timeout)
                .context("cannot fetch the cluster's metadata")?;
        }
        for topic in topics {
            let metadata = self
                .consumer
                .fetch_metadata(Some(topic), self.timeout)
                .with_context(|| format!("cannot fetch the metadata of topic {topic:?}"))?;
            for t in metadata.topics() {
                if let Some(e) = t.error() {
                    snapshot
                        .topic_errors
                        .push(format!("topic {:?}: {e:?}", t.name()));
                    continue;
                }
                for p in t.partitions() {
                    snapshot
                        .partitions
                        .insert(TopicPartition::new(t.name(), p.id()));
                }
            }
        }
        snapshot.partitions.extend(known.iter().cloned());
        let mut tpl = TopicPartitionList::with_capacity(snapshot.partitions.len());
        for tp in &snapshot.partitions {
            tpl.add_partition(&tp.topic, tp.partition);
        }
        let committed = self
            .consumer
            .committed_offsets(tpl, self.timeout)
            .context("cannot fetch the group's committed offsets")?;
        for e in committed.elements() {
            let offset = match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            };
            snapshot
                .group
                .insert(TopicPartition::new(e.topic(), e.partition()), offset);
        }
        // A list the consumer returned must not outlive it.
        drop(committed);
        Ok(snapshot)
    }

    /// Low and high watermarks of a partition (the high one is the offset
    /// the next produced record gets).
    pub fn watermarks(&self, tp: &TopicPartition) -> Result<(i64, i64), String> {
        self.consumer
            .fetch_watermarks(&tp.topic, tp.partition, self.timeout)
            .map_err(|e| format!("cannot fetch the watermarks: {e}"))
    }
}
