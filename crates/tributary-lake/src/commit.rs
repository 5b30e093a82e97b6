//! Commit records and landing intents, as stored (JSON).

use serde::{Deserialize, Serialize};
use tributary_core::{DeadLetterPositions, Landed, LandedFile, TopicPartition};

/// Version of the record formats written by this crate.
pub const RECORD_VERSION: u32 = 1;

/// What a committed file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// Rows (Parquet).
    Data,
    /// Rejected records with their position and reason (JSON lines).
    DeadLetter,
}

/// One file listed by a commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedFile {
    /// Path relative to the lake root.
    pub path: String,
    /// What the file holds.
    pub kind: FileKind,
    /// Rows (data) or lines (dead letter) in the file.
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// CRC-32C (Castagnoli) of the whole file.
    pub crc32c: u32,
}

/// One entry of a partition's commit log: `_tributary/commits/<topic>/<partition>/<seq:020>.json`.
///
/// Sequence numbers start at 0 and have no gaps. Each commit covers the
/// offsets `first_offset..=last_offset`, which start right after the
/// previous commit's range; the first commit that covers offsets may start
/// anywhere. A *fence* covers no offsets (`last_offset == first_offset - 1`)
/// and lists no files: it is written by a worker taking a partition over, to
/// stop a previous owner's landing in flight. A fence written before any
/// offsets were landed has `first_offset = -1, last_offset = -2`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRecord {
    /// Record format version.
    pub version: u32,
    /// Position in the partition's commit log.
    pub seq: u64,
    /// Source topic.
    pub topic: String,
    /// Source partition.
    pub partition: i32,
    /// First offset covered (inclusive).
    pub first_offset: i64,
    /// Last offset covered (inclusive).
    pub last_offset: i64,
    /// Rows in data files.
    pub rows: u64,
    /// Records in dead-letter files.
    pub dead_lettered: u64,
    /// Records dropped under `on_error = "skip"`.
    pub skipped: u64,
    /// Writer id of the worker that created the record.
    pub writer: String,
    /// When the record was created (RFC 3339, UTC).
    pub created_at: String,
    /// Files, each written before the record.
    pub files: Vec<CommittedFile>,
    /// Where this range's rejects are in the Kafka dead-letter topic, when
    /// the pipeline routes rejects there: one offset per dead-lettered
    /// record not in a dead-letter file. Absent for the lake route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_topic: Option<DeadLetterPositions>,
}

impl CommitRecord {
    /// The partition the record belongs to.
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition::new(self.topic.as_str(), self.partition)
    }

    /// Whether the record covers no offsets (a fence).
    pub fn is_fence(&self) -> bool {
        self.last_offset < self.first_offset
    }

    /// Where the next range starts, if any range has been landed up to and
    /// including this record.
    pub fn next_offset(&self) -> Option<i64> {
        let next = self.last_offset + 1;
        (next >= 0).then_some(next)
    }

    /// The record as the `Sink` trait reports it.
    pub fn to_landed(&self) -> Landed {
        Landed {
            partition: self.topic_partition(),
            seq: self.seq,
            first_offset: self.first_offset,
            last_offset: self.last_offset,
            rows: self.rows,
            dead_lettered: self.dead_lettered,
            skipped: self.skipped,
            late: 0,
            files: self
                .files
                .iter()
                .map(|f| LandedFile {
                    path: f.path.clone(),
                    rows: f.rows,
                    bytes: f.bytes,
                })
                .collect(),
        }
    }
}

/// What a writer is about to land: `_tributary/intents/<topic>/<partition>/<seq:020>-<writer>.json`.
///
/// Written before any data file of a landing and deleted once the commit
/// exists (or the landing was abandoned and its files removed). An intent
/// left behind tells recovery which files may be orphans.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentRecord {
    /// Record format version.
    pub version: u32,
    /// Commit sequence number the writer is trying to create.
    pub seq: u64,
    /// Writer id.
    pub writer: String,
    /// When the intent was written (RFC 3339, UTC).
    pub created_at: String,
    /// Paths of the files the landing writes.
    pub files: Vec<String>,
}

pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape() {
        let r = CommitRecord {
            version: 1,
            seq: 3,
            topic: "orders".into(),
            partition: 2,
            first_offset: 10,
            last_offset: 19,
            rows: 9,
            dead_lettered: 1,
            skipped: 0,
            writer: "w_1".into(),
            created_at: now_rfc3339(),
            files: vec![CommittedFile {
                path: "_dead_letter/orders/2/x.jsonl".into(),
                kind: FileKind::DeadLetter,
                rows: 1,
                bytes: 10,
                crc32c: 7,
            }],
            dead_letter_topic: None,
        };
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["files"][0]["kind"], "dead_letter");
        assert_eq!(json["seq"], 3);
        assert!(json.get("dead_letter_topic").is_none());
        let back: CommitRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, r);
        assert!(!r.is_fence());
        assert_eq!(r.next_offset(), Some(20));
        let landed = r.to_landed();
        assert_eq!(landed.next_offset(), 20);
        assert_eq!(landed.files[0].rows, 1);
        assert_eq!(landed.partition, TopicPartition::new("orders", 2));
        assert!(r.created_at.ends_with('Z'));
    }

    #[test]
    fn dead_letter_topic_positions_round_trip() {
        let json = serde_json::json!({
            "version": 1, "seq": 4, "topic": "orders", "partition": 1,
            "first_offset": 0, "last_offset": 9, "rows": 8, "dead_lettered": 2,
            "skipped": 0, "writer": "w", "created_at": "2026-11-24T00:00:00.000Z",
            "files": [],
            "dead_letter_topic": {"topic": "orders-dlq", "partition": 1, "offsets": [5, 6], "scan_from": 7}
        });
        let r: CommitRecord = serde_json::from_value(json.clone()).unwrap();
        let p = r.dead_letter_topic.as_ref().unwrap();
        assert_eq!(
            (p.partition, p.offsets.as_slice(), p.scan_from),
            (1, &[5, 6][..], 7)
        );
        assert_eq!(serde_json::to_value(&r).unwrap(), json);
    }

    #[test]
    fn fences() {
        let mut r = CommitRecord {
            version: 1,
            seq: 0,
            topic: "t".into(),
            partition: 0,
            first_offset: -1,
            last_offset: -2,
            rows: 0,
            dead_lettered: 0,
            skipped: 0,
            writer: "w".into(),
            created_at: now_rfc3339(),
            files: vec![],
            dead_letter_topic: None,
        };
        assert!(r.is_fence());
        assert_eq!(r.next_offset(), None);
        r.first_offset = 50;
        r.last_offset = 49;
        assert!(r.is_fence());
        assert_eq!(r.next_offset(), Some(50));
    }
}
