//! Retries of single storage requests.
//!
//! Object stores fail a small share of requests with 500/503 or time out.
//! One landing or one recovery makes tens of requests (lists, reads, puts,
//! deletes), so a whole-operation retry would rarely get through when a few
//! per cent of requests fail. [`RetryingStorage`] retries each idempotent
//! request by itself, with exponential backoff and jitter, before the error
//! reaches the landing protocol (and from there the runtime, which retries
//! the whole operation with its own, longer backoff).
//!
//! Not retried here: `create` (create-if-absent). Whether a failed create
//! took effect decides who won a race, so the landing protocol settles it by
//! reading the log back (see `landing.rs`), never by a blind second attempt.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tracing::debug;

use tributary_core::ErrorClass;

use crate::error::LakeError;
use crate::storage::{Created, Storage};

/// Attempts of one request, the first included.
const ATTEMPTS: u32 = 5;
/// Backoff before the first retry; doubles for each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// A [`Storage`] that retries its inner storage's idempotent requests on
/// retryable errors (see [`LakeError::class`]).
pub(crate) struct RetryingStorage {
    inner: Arc<dyn Storage>,
    attempts: u32,
    first_backoff: Duration,
    /// splitmix64 state for jitter.
    jitter: AtomicU64,
}

impl fmt::Debug for RetryingStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryingStorage")
            .field("inner", &self.inner)
            .field("attempts", &self.attempts)
            .finish()
    }
}

impl RetryingStorage {
    pub(crate) fn new(inner: Arc<dyn Storage>) -> Self {
        Self::with_policy(inner, ATTEMPTS, FIRST_BACKOFF)
    }

    fn with_policy(inner: Arc<dyn Storage>, attempts: u32, first_backoff: Duration) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Self {
            inner,
            attempts: attempts.max(1),
            first_backoff,
            jitter: AtomicU64::new(seed),
        }
    }

    /// The pause before retry number `retry` (0-based): the doubling
    /// backoff times a factor in [0.5, 1.5).
    fn pause(&self, retry: u32) -> Duration {
        let mut z = self
            .jitter
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let unit = (z >> 11) as f64 / (1u64 << 53) as f64;
        self.first_backoff
            .saturating_mul(1 << retry.min(10))
            .mul_f64(0.5 + unit)
    }

    async fn retrying<T, F, Fut>(
        &self,
        operation: &str,
        path: &str,
        mut f: F,
    ) -> Result<T, LakeError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, LakeError>>,
    {
        let mut retry = 0;
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) if e.class() == ErrorClass::Retryable && retry + 1 < self.attempts => {
                    let pause = self.pause(retry);
                    debug!(operation, path, retry, retry_in = ?pause, error = %e, "Storage request failed; retrying.");
                    tokio::time::sleep(pause).await;
                    retry += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[async_trait]
impl Storage for RetryingStorage {
    async fn put(&self, path: &str, data: Bytes) -> Result<(), LakeError> {
        // Replacing an object with the same bytes is idempotent, also after
        // a lost response.
        self.retrying("put", path, || self.inner.put(path, data.clone()))
            .await
    }

    async fn create(&self, path: &str, data: Bytes) -> Result<Created, LakeError> {
        self.inner.create(path, data).await
    }

    async fn get(&self, path: &str) -> Result<Option<Bytes>, LakeError> {
        self.retrying("get", path, || self.inner.get(path)).await
    }

    async fn size(&self, path: &str) -> Result<Option<u64>, LakeError> {
        self.retrying("head", path, || self.inner.size(path)).await
    }

    async fn list(
        &self,
        prefix: &str,
        offset: Option<&str>,
    ) -> Result<Vec<(String, u64)>, LakeError> {
        self.retrying("list", prefix, || self.inner.list(prefix, offset))
            .await
    }

    async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, LakeError> {
        self.retrying("list", prefix, || self.inner.list_dirs(prefix))
            .await
    }

    async fn delete(&self, path: &str) -> Result<(), LakeError> {
        // Deleting a missing object succeeds, so a repeat is harmless.
        self.retrying("delete", path, || self.inner.delete(path))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;
    use std::sync::Mutex;

    /// Fails the first `fail` calls of every operation with `error`, then
    /// succeeds; counts calls.
    #[derive(Debug)]
    struct Flaky {
        fail: u32,
        retryable: bool,
        calls: AtomicU32,
        creates: AtomicU32,
        puts: Mutex<Vec<Bytes>>,
    }

    impl Flaky {
        fn new(fail: u32, retryable: bool) -> Self {
            Self {
                fail,
                retryable,
                calls: AtomicU32::new(0),
                creates: AtomicU32::new(0),
                puts: Mutex::new(Vec::new()),
            }
        }

        fn outcome(&self, path: &str) -> Result<(), LakeError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if n >= self.fail {
                return Ok(());
            }
            Err(LakeError::Storage {
                operation: "test",
                path: path.to_string(),
                source: if self.retryable {
                    "HTTP 503 Slow Down".into()
                } else {
                    "HTTP 403 Forbidden".into()
                },
                class: if self.retryable {
                    ErrorClass::Retryable
                } else {
                    ErrorClass::Permanent
                },
            })
        }
    }

    #[async_trait]
    impl Storage for Flaky {
        async fn put(&self, path: &str, data: Bytes) -> Result<(), LakeError> {
            self.outcome(path)?;
            self.puts.lock().unwrap().push(data);
            Ok(())
        }
        async fn create(&self, path: &str, _data: Bytes) -> Result<Created, LakeError> {
            self.creates.fetch_add(1, Ordering::SeqCst);
            self.outcome(path).map(|()| Created::Created)
        }
        async fn get(&self, path: &str) -> Result<Option<Bytes>, LakeError> {
            self.outcome(path).map(|()| Some(Bytes::from_static(b"x")))
        }
        async fn size(&self, path: &str) -> Result<Option<u64>, LakeError> {
            self.outcome(path).map(|()| Some(1))
        }
        async fn list(
            &self,
            prefix: &str,
            _offset: Option<&str>,
        ) -> Result<Vec<(String, u64)>, LakeError> {
            self.outcome(prefix).map(|()| vec![("a".into(), 1)])
        }
        async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, LakeError> {
            self.outcome(prefix).map(|()| vec!["d".into()])
        }
        async fn delete(&self, path: &str) -> Result<(), LakeError> {
            self.outcome(path)
        }
    }

    fn retrying(inner: Arc<Flaky>) -> RetryingStorage {
        RetryingStorage::with_policy(inner, 3, Duration::from_millis(1))
    }

    #[tokio::test]
    async fn transient_failures_are_retried_until_success() {
        let inner = Arc::new(Flaky::new(2, true));
        let s = retrying(inner.clone());
        assert_eq!(s.get("a").await.unwrap().unwrap(), "x");
        assert_eq!(inner.calls.load(Ordering::SeqCst), 3);
        s.put("b", Bytes::from_static(b"data")).await.unwrap();
        s.delete("c").await.unwrap();
        assert_eq!(s.list("p", None).await.unwrap().len(), 1);
        assert_eq!(
            inner.puts.lock().unwrap().as_slice(),
            [Bytes::from_static(b"data")]
        );
    }

    #[tokio::test]
    async fn gives_up_after_the_last_attempt_with_the_error() {
        let inner = Arc::new(Flaky::new(10, true));
        let s = retrying(inner.clone());
        let e = s.list_dirs("p").await.unwrap_err();
        assert_eq!(e.class(), ErrorClass::Retryable);
        assert!(e.to_string().contains("503"), "{e}");
        assert_eq!(inner.calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried() {
        let inner = Arc::new(Flaky::new(10, false));
        let s = retrying(inner.clone());
        let e = s.size("a").await.unwrap_err();
        assert_ne!(e.class(), ErrorClass::Retryable);
        assert_eq!(inner.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn create_is_never_retried() {
        let inner = Arc::new(Flaky::new(1, true));
        let s = retrying(inner.clone());
        assert!(s.create("c", Bytes::new()).await.is_err());
        assert_eq!(inner.creates.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn pauses_double_with_jitter() {
        let s = RetryingStorage::with_policy(
            Arc::new(Flaky::new(0, true)),
            5,
            Duration::from_millis(100),
        );
        for retry in 0..4 {
            let base = 100u64 << retry;
            for _ in 0..50 {
                let p = s.pause(retry).as_millis() as u64;
                assert!(p >= base / 2 && p < base * 3 / 2, "retry {retry}: {p} ms");
            }
        }
    }
}
