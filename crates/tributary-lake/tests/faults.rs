//! Landing under injected storage faults: commits whose outcome is unknown,
//! failed file writes, failed cleanups, and how recovery lists the log.

use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use tributary_core::{ErrorClass, SinkError};
use tributary_lake::conformance::{assert_sound, fresh_partition, paths_of, sample_landing};
use tributary_lake::{commit_path, new_writer_id, Lake, LakeError};

/// What the wrapped store does wrong. Each rule fires once, then clears.
#[derive(Default, Debug)]
struct Rules {
    /// Perform the next create-if-absent, then report a timeout.
    create_applied_then_fail: bool,
    /// Report a timeout for the next create-if-absent without performing it.
    create_lost: bool,
    /// Report a timeout for the next create-if-absent and keep it, to be
    /// performed later by `apply_deferred` (a request stuck in a proxy).
    create_deferred: bool,
    /// Fail the next put whose path contains this.
    fail_put: Option<String>,
    /// Fail deletes of paths containing this (until cleared).
    fail_delete: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    rules: Rules,
    deferred: Vec<(Path, PutPayload)>,
    /// Offsets passed to list_with_offset, and None for plain lists.
    list_offsets: Vec<(Option<String>, Option<String>)>,
}

#[derive(Debug)]
struct Faulty {
    inner: InMemory,
    state: Mutex<State>,
}

impl fmt::Display for Faulty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

fn timeout() -> object_store::Error {
    object_store::Error::Generic {
        store: "Faulty",
        source: "injected timeout".into(),
    }
}

impl Faulty {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: InMemory::new(),
            state: Mutex::new(State::default()),
        })
    }

    fn rules(&self, f: impl FnOnce(&mut Rules)) {
        f(&mut self.state.lock().unwrap().rules);
    }

    async fn apply_deferred(&self) {
        let deferred = std::mem::take(&mut self.state.lock().unwrap().deferred);
        for (path, payload) in deferred {
            let opts = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            self.inner.put_opts(&path, payload, opts).await.unwrap();
        }
    }
}

#[async_trait]
impl ObjectStore for Faulty {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let create = matches!(opts.mode, PutMode::Create);
        enum Action {
            Pass,
            ApplyThenFail,
            Fail,
            Defer,
        }
        let action = {
            let mut s = self.state.lock().unwrap();
            let r = &mut s.rules;
            if create && std::mem::take(&mut r.create_applied_then_fail) {
                Action::ApplyThenFail
            } else if create && std::mem::take(&mut r.create_lost) {
                Action::Fail
            } else if create && std::mem::take(&mut r.create_deferred) {
                Action::Defer
            } else if r
                .fail_put
                .as_deref()
                .is_some_and(|p| location.as_ref().contains(p))
            {
                r.fail_put = None;
                Action::Fail
            } else {
                Action::Pass
            }
        };
        match action {
            Action::Pass => self.inner.put_opts(location, payload, opts).await,
            Action::ApplyThenFail => {
                self.inner.put_opts(location, payload, opts).await?;
                Err(timeout())
            }
            Action::Fail => Err(timeout()),
            Action::Defer => {
                self.state
                    .lock()
                    .unwrap()
                    .deferred
                    .push((location.clone(), payload));
                Err(timeout())
            }
        }
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let fail = self.state.lock().unwrap().rules.fail_delete.clone();
        let checked = locations
            .map(move |r| {
                let p = r?;
                match &fail {
                    Some(f) if p.as_ref().contains(f.as_str()) => Err(timeout()),
                    _ => Ok(p),
                }
            })
            .boxed();
        self.inner.delete_stream(checked)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.state
            .lock()
            .unwrap()
            .list_offsets
            .push((prefix.map(|p| p.to_string()), None));
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.state
            .lock()
            .unwrap()
            .list_offsets
            .push((prefix.map(|p| p.to_string()), Some(offset.to_string())));
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

fn lake_on(store: &Arc<Faulty>) -> Lake {
    Lake::open_with_store(store.clone(), "lake").expect("open")
}

async fn exists(store: &Faulty, path: &str) -> bool {
    store
        .inner
        .head(&Path::from(format!("lake/{path}")))
        .await
        .is_ok()
}

#[tokio::test]
async fn commit_applied_but_reported_failed_is_confirmed_by_reading_back() {
    let store = Faulty::new();
    let lake = lake_on(&store);
    let tp = fresh_partition("confirmed");
    let w = new_writer_id("w");
    let mut log = lake.recover(&tp, &w).await.unwrap();
    store.rules(|r| r.create_applied_then_fail = true);
    let record = lake
        .land(&mut log, &w, sample_landing(&tp, &w, 0, 9))
        .await
        .expect("the read-back confirms the commit");
    assert_eq!(record.seq, 0);
    assert_eq!(log.next_offset(), Some(10));
    assert!(!log.is_unsettled());
    assert_sound(&lake, &tp).await;
}

#[tokio::test]
async fn lost_commit_leaves_the_log_unsettled_and_the_next_landing_fences_it() {
    let store = Faulty::new();
    let lake = lake_on(&store);
    let tp = fresh_partition("lost");
    let w = new_writer_id("w");
    let mut log = lake.recover(&tp, &w).await.unwrap();
    lake.land(&mut log, &w, sample_landing(&tp, &w, 0, 9))
        .await
        .unwrap();

    store.rules(|r| r.create_lost = true);
    let first_try = sample_landing(&tp, &w, 10, 19);
    let e = lake
        .land(&mut log, &w, first_try.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            LakeError::Storage {
                operation: "create",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(e.class(), ErrorClass::Retryable);
    assert!(log.is_unsettled());
    assert_eq!(log.next_seq, 1, "log unchanged");
    // Outcome unknown: files and intent stay until the log is settled.
    for p in paths_of(&first_try) {
        assert!(exists(&store, &p).await, "{p}");
    }
    assert_eq!(lake.intents(&tp).await.unwrap().len(), 1);

    // The sink re-reads from 10 and lands again with fresh names.
    let second_try = sample_landing(&tp, &w, 10, 21);
    let record = lake.land(&mut log, &w, second_try).await.unwrap();
    assert_eq!(record.seq, 2, "seq 1 was fenced");
    assert!(!log.is_unsettled());
    let commits = lake.commits(&tp).await.unwrap();
    assert!(commits[1].is_fence());
    for p in paths_of(&first_try) {
        assert!(!exists(&store, &p).await, "{p} removed");
    }
    assert_sound(&lake, &tp).await;
}

#[tokio::test]
async fn commit_that_lands_late_is_adopted_and_the_retry_conflicts() {
    let store = Faulty::new();
    let lake = lake_on(&store);
    let tp = fresh_partition("late");
    let w = new_writer_id("w");
    let mut log = lake.recover(&tp, &w).await.unwrap();

    store.rules(|r| r.create_deferred = true);
    let first_try = sample_landing(&tp, &w, 0, 9);
    assert!(lake.land(&mut log, &w, first_try.clone()).await.is_err());
    assert!(log.is_unsettled());
    // The stuck create reaches the store after all.
    store.apply_deferred().await;

    let retry = sample_landing(&tp, &w, 0, 14);
    match lake.land(&mut log, &w, retry.clone()).await {
        Err(LakeError::Conflict { seq, resume_at, .. }) => assert_eq!((seq, resume_at), (0, 10)),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(log.next_offset(), Some(10));
    for p in paths_of(&first_try) {
        assert!(exists(&store, &p).await, "committed file {p} kept");
    }
    for p in paths_of(&retry) {
        assert!(!exists(&store, &p).await, "retry file {p} never written");
    }
    lake.land(&mut log, &w, sample_landing(&tp, &w, 10, 14))
        .await
        .unwrap();
    assert_sound(&lake, &tp).await;
}

#[tokio::test]
async fn failed_file_write_removes_the_attempt() {
    let store = Faulty::new();
    let lake = lake_on(&store);
    let tp = fresh_partition("put-fails");
    let w = new_writer_id("w");
    let mut log = lake.recover(&tp, &w).await.unwrap();
    store.rules(|r| r.fail_put = Some("hour=01".into()));
    let attempt = sample_landing(&tp, &w, 0, 9);
    let e = lake.land(&mut log, &w, attempt.clone()).await.unwrap_err();
    assert!(
        matches!(
            e,
            LakeError::Storage {
                operation: "put",
                ..
            }
        ),
        "{e}"
    );
    let sink: SinkError = e.into();
    assert_eq!(sink.class(), ErrorClass::Retryable);
    assert!(!log.is_unsettled());
    assert_eq!((log.next_seq, log.next_offset()), (0, None));
    for p in paths_of(&attempt) {
        assert!(!exists(&store, &p).await, "{p} removed");
    }
    assert!(lake.intents(&tp).await.unwrap().is_empty());
    // Reusing the failed attempt's names is refused.
    assert!(matches!(
        lake.land(&mut log, &w, attempt).await,
        Err(LakeError::Invalid { .. })
    ));
    lake.land(&mut log, &w, sample_landing(&tp, &w, 0, 9))
        .await
        .unwrap();
    assert_sound(&lake, &tp).await;
}

#[tokio::test]
async fn failed_cleanup_is_settled_by_the_next_landing() {
    let store = Faulty::new();
    let lake = lake_on(&store);
    let tp = fresh_partition("cleanup-fails");
    let w = new_writer_id("w");
    let mut log = lake.recover(&tp, &w).await.unwrap();
    store.rules(|r| {
        r.fail_put = Some("hour=01".into());
        r.fail_delete = Some("hour=00".into());
    });
    let attempt = sample_landing(&tp, &w, 0, 9);
    assert!(lake.land(&mut log, &w, attempt.clone()).await.is_err());
    assert!(log.is_unsettled());
    let stuck = attempt
        .files
        .iter()
        .find(|f| f.path.contains("hour=00"))
        .unwrap()
        .path
        .clone();
    assert!(exists(&store, &stuck).await);
    assert_eq!(
        lake.intents(&tp).await.unwrap().len(),
        1,
        "intent kept for recovery"
    );

    store.rules(|r| r.fail_delete = None);
    let record = lake
        .land(&mut log, &w, sample_landing(&tp, &w, 0, 9))
        .await
        .unwrap();
    assert_eq!(record.seq, 1, "seq 0 fenced");
    assert!(!exists(&store, &stuck).await);
    assert_sound(&lake, &tp).await;
}

#[tokio::test]
async fn recovery_lists_only_past_the_hint() {
    let store = Faulty::new();
    let lake = lake_on(&store);
    let tp = fresh_partition("hinted");
    let w = new_writer_id("w");
    let mut log = lake.recover(&tp, &w).await.unwrap();
    for i in 0..20 {
        lake.land(&mut log, &w, sample_landing(&tp, &w, i * 5, i * 5 + 4))
            .await
            .unwrap();
    }
    store.state.lock().unwrap().list_offsets.clear();
    let log = lake.recover(&tp, &new_writer_id("r")).await.unwrap();
    assert_eq!(log.next_seq, 20);
    let lists = std::mem::take(&mut store.state.lock().unwrap().list_offsets);
    let commit_dir = format!("lake/{}", tributary_lake::commit_dir(&tp));
    let commit_lists: Vec<_> = lists
        .iter()
        .filter(|(prefix, _)| prefix.as_deref() == Some(commit_dir.as_str()))
        .collect();
    assert_eq!(
        commit_lists,
        vec![&(
            Some(commit_dir.clone()),
            Some(format!("lake/{}", commit_path(&tp, 18)))
        )],
        "one listing of the commit log, starting after hint - 1"
    );
}
