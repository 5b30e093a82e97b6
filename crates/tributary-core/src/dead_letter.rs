//! The dead-letter route beside the lake: records a converter or transform
//! rejected, written to an external system (a Kafka topic) before the lake
//! commit of their range, which then records where they went.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::SinkError;
use crate::model::{Reject, TopicPartition};

/// Where the rejects of one landed range are in a Kafka dead-letter topic.
/// The lake's commit record of the range stores it, so that the commit, not
/// the topic, says which dead-letter records are authoritative.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterPositions {
    /// Dead-letter topic.
    pub topic: String,
    /// Partition of the dead-letter topic this source partition writes to
    /// (chosen deterministically from the source partition).
    pub partition: i32,
    /// Offset in that partition of each dead-lettered record of the range,
    /// in source-offset order: one per dead-lettered record.
    pub offsets: Vec<i64>,
    /// Where the duplicate scan of this source partition's next landing
    /// starts: no record of a later range of this source partition lies
    /// before it in the dead-letter partition.
    pub scan_from: i64,
}

impl DeadLetterPositions {
    /// The same positions for a range without rejects: nothing listed, the
    /// scan start carried forward.
    pub fn carried_forward(&self) -> Self {
        Self {
            topic: self.topic.clone(),
            partition: self.partition,
            offsets: Vec::new(),
            scan_from: self.scan_from,
        }
    }
}

/// The rejects of one range, to be made durable in a dead-letter route.
#[derive(Clone, Debug)]
pub struct DeadLetterRequest {
    /// Source partition.
    pub partition: TopicPartition,
    /// First offset of the range being landed.
    pub first_offset: i64,
    /// Last offset of the range being landed.
    pub last_offset: i64,
    /// Writer id of the landing (goes into a header).
    pub writer: String,
    /// The rejects of the range, in offset order.
    pub rejects: Vec<Reject>,
    /// What the newest commit of this source partition recorded, if any.
    pub previous: Option<DeadLetterPositions>,
    /// Records of this range may already be in the route: a previous
    /// attempt at the range (of this writer, or of a crashed previous owner
    /// of the partition) may have written them before failing. The route
    /// must find them and reuse them rather than write them again. The sink
    /// passes `false` only while the route's last answer for this partition
    /// was [`DeadLetterDelivery::settled`] and every landing since succeeded.
    pub may_exist: bool,
}

/// What [`DeadLetterRoute::deliver`] answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetterDelivery {
    /// Where the range's rejects are, for the commit record.
    pub positions: DeadLetterPositions,
    /// No record of a later range of this source partition is known to be
    /// in the route (none was found past the range): as long as this
    /// writer's landings succeed, its next ranges cannot have records there.
    /// `false` makes the sink pass `may_exist` for the next range again.
    pub settled: bool,
}

/// A dead-letter route that writes rejects outside the lake (a Kafka topic).
///
/// [`DeadLetterRoute::deliver`] returns only once every reject is durable
/// (acknowledged by all in-sync replicas); the sink then lists the returned
/// positions in the commit record of the range. An error fails the landing:
/// nothing is committed and the range is read again.
#[async_trait]
pub trait DeadLetterRoute: Send + Sync {
    /// Writes the rejects of one range (those not already present) and
    /// returns where every one of them is.
    async fn deliver(&self, request: DeadLetterRequest) -> Result<DeadLetterDelivery, SinkError>;
}
