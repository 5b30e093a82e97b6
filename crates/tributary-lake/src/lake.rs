//! The [`Lake`] handle: an opened storage location and read access to what
//! it holds.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use tributary_config::StorageConfig;
use tributary_core::TopicPartition;

use crate::commit::{CommitRecord, IntentRecord};
use crate::error::LakeError;
use crate::layout::{
    self, commit_dir, commit_path, file_name, intent_dir, validate_partition, validate_path,
    validate_prefix, CONTROL_DIR,
};
use crate::storage::{self, ObjectStorage, Storage};

/// Reads run at most this many at once.
pub(crate) const IO_CONCURRENCY: usize = 8;

/// An opened lake: a storage location (local directory or bucket prefix)
/// holding data files and, under `_tributary/`, one commit log per source
/// partition. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Lake {
    pub(crate) storage: Arc<dyn Storage>,
    location: Arc<str>,
}

impl fmt::Debug for Lake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lake")
            .field("location", &self.location)
            .finish()
    }
}

/// An intent as found in storage: its path, the sequence number and writer
/// its name carries, and its content when it could be read and parsed.
#[derive(Debug)]
pub(crate) struct IntentEntry {
    pub(crate) path: String,
    pub(crate) seq: u64,
    pub(crate) writer: String,
    pub(crate) record: Result<IntentRecord, String>,
}

impl Lake {
    /// Opens a lake URL: `file:///abs/path` (a local directory, fsync-durable
    /// writes), `s3://bucket/prefix`, `gs://bucket/prefix`,
    /// `az://container/prefix`, `abfs://…` or `abfss://…`. The prefix inside
    /// the bucket is the lake root. Cloud settings come from `storage` on top
    /// of the provider's usual environment variables.
    ///
    /// Does no network I/O: a wrong endpoint or credential shows up on the
    /// first read or write.
    pub fn open(url: &str, storage: &StorageConfig) -> Result<Lake, LakeError> {
        Ok(Lake {
            storage: storage::open(url, storage)?,
            location: url.into(),
        })
    }

    /// A lake on an existing object store, rooted at `root` (a path inside
    /// the store; `""` for its top). For tests and fault injection: wrap a
    /// store to delay or fail operations.
    pub fn open_with_store(store: Arc<dyn ObjectStore>, root: &str) -> Result<Lake, LakeError> {
        let root = root.trim_matches('/');
        validate_prefix(root)?;
        let root_path =
            ObjectPath::parse(root).map_err(|e| LakeError::path(root, e.to_string()))?;
        let location = format!("{store}/{root}");
        Ok(Lake {
            storage: Arc::new(ObjectStorage::new(store, root_path)),
            location: location.into(),
        })
    }

    /// This lake with each idempotent request retried on retryable errors,
    /// as [`Lake::open`] does (see the `retry` module): for a lake built by
    /// [`Lake::open_with_store`] that should behave like a configured one,
    /// with a store's faults beneath the retries.
    pub fn with_retries(self) -> Lake {
        Lake {
            storage: Arc::new(crate::retry::RetryingStorage::new(self.storage)),
            location: self.location,
        }
    }

    /// The URL (or store description) the lake was opened with.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Reads a whole object (path relative to the lake root).
    pub async fn read(&self, path: &str) -> Result<Bytes, LakeError> {
        validate_path(path)?;
        self.storage
            .get(path)
            .await?
            .ok_or_else(|| LakeError::not_found("get", path))
    }

    /// Every object under a prefix (`""` for the whole lake) with its size in
    /// bytes, sorted by path. Temporary files of unfinished local writes are
    /// never listed.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, LakeError> {
        validate_prefix(prefix)?;
        let mut entries = self.storage.list(prefix, None).await?;
        entries.sort();
        Ok(entries)
    }

    /// Every source partition that has a commit log (or intents) in this lake.
    pub async fn partitions(&self) -> Result<Vec<TopicPartition>, LakeError> {
        let mut out = Vec::new();
        for kind in ["commits", "intents"] {
            let base = format!("{CONTROL_DIR}/{kind}");
            for topic in self.storage.list_dirs(&base).await? {
                for partition in self.storage.list_dirs(&format!("{base}/{topic}")).await? {
                    if let Ok(p) = partition.parse::<i32>() {
                        if p >= 0 && p.to_string() == partition {
                            out.push(TopicPartition::new(topic.as_str(), p));
                        }
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The whole commit log of a partition, in sequence order. Fails when a
    /// sequence number is missing or a record cannot be read.
    pub async fn commits(&self, tp: &TopicPartition) -> Result<Vec<CommitRecord>, LakeError> {
        validate_partition(tp)?;
        let seqs = self.commit_seqs(tp, 0).await?;
        check_contiguous(tp, &seqs, 0)?;
        // Owned captures: futures that borrow through a closure argument
        // trip rustc's higher-ranked `Send` check in callers that spawn.
        futures::stream::iter(seqs)
            .map(|seq| {
                let lake = self.clone();
                let tp = tp.clone();
                async move {
                    lake.read_commit(&tp, seq)
                        .await?
                        .ok_or_else(|| vanished(&tp, seq))
                }
            })
            .buffered(IO_CONCURRENCY)
            .try_collect()
            .await
    }

    /// The landing intents of a partition that are still stored, by sequence
    /// number: landings in progress, or left behind by a crash.
    pub async fn intents(
        &self,
        tp: &TopicPartition,
    ) -> Result<Vec<(String, IntentRecord)>, LakeError> {
        validate_partition(tp)?;
        self.intent_entries(tp)
            .await?
            .into_iter()
            .map(|e| match e.record {
                Ok(r) => Ok((e.path, r)),
                Err(message) => Err(LakeError::CommitLog {
                    partition: tp.clone(),
                    path: e.path,
                    message,
                }),
            })
            .collect()
    }

    /// Reads and checks commit record `seq`; `None` when it does not exist.
    pub(crate) async fn read_commit(
        &self,
        tp: &TopicPartition,
        seq: u64,
    ) -> Result<Option<CommitRecord>, LakeError> {
        let path = commit_path(tp, seq);
        let Some(bytes) = self.storage.get(&path).await? else {
            return Ok(None);
        };
        let bad = |message: String| LakeError::CommitLog {
            partition: tp.clone(),
            path: path.clone(),
            message,
        };
        let record: CommitRecord =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a commit record: {e}")))?;
        if record.version != crate::commit::RECORD_VERSION {
            return Err(bad(format!(
                "record version {} is not supported (this build reads version {})",
                record.version,
                crate::commit::RECORD_VERSION
            )));
        }
        if record.seq != seq || *record.topic != *tp.topic || record.partition != tp.partition {
            return Err(bad(format!(
                "record names {}/{} seq {}, expected {tp} seq {seq}",
                record.topic, record.partition, record.seq
            )));
        }
        Ok(Some(record))
    }

    /// Sequence numbers of the stored commits of a partition that are
    /// `>= from`, sorted. Lists only past `from - 1`, so the cost does not
    /// grow with the length of the log on stores that list from an offset.
    pub(crate) async fn commit_seqs(
        &self,
        tp: &TopicPartition,
        from: u64,
    ) -> Result<Vec<u64>, LakeError> {
        let dir = commit_dir(tp);
        let offset = from.checked_sub(1).map(|s| commit_path(tp, s));
        let entries = self.storage.list(&dir, offset.as_deref()).await?;
        let mut seqs: Vec<u64> = entries
            .iter()
            .filter_map(|(path, _)| {
                let name = path.strip_prefix(&dir)?.strip_prefix('/')?;
                layout::parse_commit_name(name)
            })
            .filter(|&s| s >= from)
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        Ok(seqs)
    }

    /// Intents of a partition, sorted by sequence number then writer.
    pub(crate) async fn intent_entries(
        &self,
        tp: &TopicPartition,
    ) -> Result<Vec<IntentEntry>, LakeError> {
        let dir = intent_dir(tp);
        let listed = self.storage.list(&dir, None).await?;
        let mut named: Vec<(String, u64, String)> = listed
            .into_iter()
            .filter_map(|(path, _)| {
                let name = path.strip_prefix(&dir)?.strip_prefix('/')?;
                let (seq, writer) = layout::parse_intent_name(name)?;
                Some((path, seq, writer))
            })
            .collect();
        named.sort_by(|a, b| (a.1, &a.2).cmp(&(b.1, &b.2)));
        let entries: Vec<Option<IntentEntry>> = futures::stream::iter(named)
            .map(|(path, seq, writer)| {
                let storage = self.storage.clone();
                async move {
                    let Some(bytes) = storage.get(&path).await? else {
                        // Deleted by its writer after we listed it.
                        return Ok(None);
                    };
                    let record = serde_json::from_slice::<IntentRecord>(&bytes)
                        .map_err(|e| format!("not an intent record: {e}"))
                        .and_then(|r| {
                            if r.seq == seq && r.writer == writer {
                                Ok(r)
                            } else {
                                Err(format!(
                                    "{} names seq {} writer {}",
                                    file_name(&path),
                                    r.seq,
                                    r.writer
                                ))
                            }
                        });
                    Ok::<_, LakeError>(Some(IntentEntry {
                        path,
                        seq,
                        writer,
                        record,
                    }))
                }
            })
            .buffered(IO_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(entries.into_iter().flatten().collect())
    }
}

/// Checks that `seqs` (sorted) is exactly `from, from + 1, ...`.
pub(crate) fn check_contiguous(
    tp: &TopicPartition,
    seqs: &[u64],
    from: u64,
) -> Result<(), LakeError> {
    for (i, &seq) in seqs.iter().enumerate() {
        let expected = from + i as u64;
        if seq != expected {
            return Err(LakeError::CommitLog {
                partition: tp.clone(),
                path: commit_path(tp, expected),
                message: format!("commit {expected} is missing although commit {seq} exists"),
            });
        }
    }
    Ok(())
}

pub(crate) fn vanished(tp: &TopicPartition, seq: u64) -> LakeError {
    LakeError::CommitLog {
        partition: tp.clone(),
        path: commit_path(tp, seq),
        message: "commit was listed but cannot be read back".into(),
    }
}
