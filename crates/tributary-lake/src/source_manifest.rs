//! Source manifests: what a source records about an input it lands, beside
//! the input's commit log, so that a later run can tell the same input from
//! a changed one (the file source keeps a file's path, size and checksum
//! here). Stored at `_tributary/sources/<topic>/<partition>.json`, written
//! once with create-if-absent, never rewritten.

use bytes::Bytes;
use tributary_core::TopicPartition;

use crate::error::LakeError;
use crate::lake::Lake;
use crate::layout::{validate_partition, CONTROL_DIR};
use crate::storage::Created;

/// Path of a partition's source manifest, relative to the lake root.
pub fn source_manifest_path(tp: &TopicPartition) -> String {
    format!("{CONTROL_DIR}/sources/{}/{}.json", tp.topic, tp.partition)
}

impl Lake {
    /// The manifest stored for `tp`, if any.
    pub async fn source_manifest(&self, tp: &TopicPartition) -> Result<Option<Bytes>, LakeError> {
        validate_partition(tp)?;
        self.storage.get(&source_manifest_path(tp)).await
    }

    /// Stores `manifest` for `tp` unless one exists. `None` when it was
    /// stored; otherwise the manifest already there (which may differ).
    pub async fn put_source_manifest(
        &self,
        tp: &TopicPartition,
        manifest: Bytes,
    ) -> Result<Option<Bytes>, LakeError> {
        validate_partition(tp)?;
        let path = source_manifest_path(tp);
        match self.storage.create(&path, manifest).await? {
            Created::Created => Ok(None),
            Created::Exists => Ok(Some(
                self.storage
                    .get(&path)
                    .await?
                    .ok_or_else(|| LakeError::not_found("get", &path))?,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use object_store::memory::InMemory;

    use super::*;

    #[tokio::test]
    async fn stored_once_then_returned() {
        let lake = Lake::open_with_store(Arc::new(InMemory::new()), "lake").unwrap();
        let tp = TopicPartition::new("files", 7);
        assert_eq!(lake.source_manifest(&tp).await.unwrap(), None);
        let a = Bytes::from_static(b"{\"size\":1}");
        assert_eq!(
            lake.put_source_manifest(&tp, a.clone()).await.unwrap(),
            None
        );
        let b = Bytes::from_static(b"{\"size\":2}");
        assert_eq!(
            lake.put_source_manifest(&tp, b).await.unwrap(),
            Some(a.clone())
        );
        assert_eq!(lake.source_manifest(&tp).await.unwrap(), Some(a));
        assert_eq!(source_manifest_path(&tp), "_tributary/sources/files/7.json");
    }
}
