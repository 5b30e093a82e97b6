//! Fault injection for tests: compiled only with the `fault-injection`
//! feature, which release builds leave off.
//!
//! Two kinds of faults, both switched on by environment variables so that
//! the real `tributary` binary can be driven into them from outside:
//!
//! * **Crash points** ([`CrashPoint`]): places in the landing path where the
//!   process exits at once, with code [`CRASH_EXIT_CODE`], the n-th time the
//!   place is reached: `TRIBUTARY_FAULT_CRASH=after_commit_create:3`.
//!   [`std::process::exit`] runs no destructor and flushes no buffer of
//!   ours: to the lake and to Kafka it is a `kill -9` at that exact point.
//! * **Storage faults** ([`StorageFaults`]): requests that fail like an HTTP
//!   500 or 503, stall until they time out, or take effect and then lose
//!   their response:
//!   `TRIBUTARY_FAULT_STORAGE="error_rate=0.05,latency=5ms,timeout_rate=0.005,timeout=2s,lost_response_rate=0.01,seed=7"`.
//!   [`Lake::open`](crate::Lake::open) applies them to every lake it opens,
//!   local or remote, at the level both backends share; [`FaultyStore`]
//!   wraps any [`ObjectStore`] for tests that build their lake with
//!   [`Lake::open_with_store`](crate::Lake::open_with_store).
//!
//! | crash point | reached |
//! |---|---|
//! | `after_dead_letter_produce` | [`Lake::land`](crate::Lake::land) of a range whose rejects went to the Kafka dead-letter topic: they are acknowledged, nothing of the landing is in the lake yet |
//! | `before_intent` | [`Lake::land`](crate::Lake::land), before the intent is written |
//! | `after_intent` | after the intent is written |
//! | `before_data_write` | before each data or dead-letter file is written |
//! | `after_data_write` | after each file is written |
//! | `before_commit_create` | before the commit record is created |
//! | `after_commit_create` | after the create won: the commit exists, its intent, the hint and the Kafka offset lag |
//! | `before_offset_commit` | in the runtime, before source offsets are committed |
//! | `after_offset_commit` | in the runtime, after the offset commit returned |
//! | `during_orphan_cleanup` | in [`Lake::recover`](crate::Lake::recover), after each file of an abandoned landing is removed, before its intent |
//!
//! Storage faults are deterministic for a seed: every request draws from one
//! splitmix64 sequence, so the same requests in the same order meet the same
//! faults.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};
use tracing::{error, warn};
use tributary_config::HumanDuration;

use crate::error::LakeError;
use crate::storage::{Created, Storage};

/// Environment variable naming the crash point: `point` or `point:n`.
pub const CRASH_ENV: &str = "TRIBUTARY_FAULT_CRASH";
/// Environment variable with the storage faults [`Lake::open`](crate::Lake::open) injects.
pub const STORAGE_ENV: &str = "TRIBUTARY_FAULT_STORAGE";

/// The message of the warning logged for every injected storage fault, so
/// that a test can count them in a worker's log.
pub const INJECTED_STORAGE_FAULT: &str = "Injected storage fault.";
/// Exit code of a process stopped at a crash point.
pub const CRASH_EXIT_CODE: i32 = 86;

/// A fault specification that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{variable}={value:?} is not valid: {message}")]
pub struct FaultSpecError {
    /// The environment variable (or "spec" when parsed directly).
    pub variable: &'static str,
    /// The value given.
    pub value: String,
    /// What is wrong with it.
    pub message: String,
}

impl FaultSpecError {
    fn new(variable: &'static str, value: &str, message: impl Into<String>) -> Self {
        Self {
            variable,
            value: value.to_string(),
            message: message.into(),
        }
    }

    fn for_variable(mut self, variable: &'static str) -> Self {
        self.variable = variable;
        self
    }
}

// ------------------------------------------------------------- crash points

/// A place in the landing path where a process can be made to crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CrashPoint {
    /// After a range's rejects were acknowledged by the Kafka dead-letter
    /// topic, before anything of its landing is written to the lake.
    AfterDeadLetterProduce,
    /// Before the intent is written.
    BeforeIntent,
    /// After the intent is written.
    AfterIntent,
    /// Before each data or dead-letter file is written.
    BeforeDataWrite,
    /// After each data or dead-letter file is written.
    AfterDataWrite,
    /// Before the commit record is created.
    BeforeCommitCreate,
    /// After the commit record was created (won).
    AfterCommitCreate,
    /// Before source offsets are committed (runtime).
    BeforeOffsetCommit,
    /// After the source offset commit returned (runtime).
    AfterOffsetCommit,
    /// During recovery, after each file of an abandoned landing is removed.
    DuringOrphanCleanup,
}

impl CrashPoint {
    /// Every crash point, in landing order.
    pub const ALL: [CrashPoint; 10] = [
        CrashPoint::AfterDeadLetterProduce,
        CrashPoint::BeforeIntent,
        CrashPoint::AfterIntent,
        CrashPoint::BeforeDataWrite,
        CrashPoint::AfterDataWrite,
        CrashPoint::BeforeCommitCreate,
        CrashPoint::AfterCommitCreate,
        CrashPoint::BeforeOffsetCommit,
        CrashPoint::AfterOffsetCommit,
        CrashPoint::DuringOrphanCleanup,
    ];

    /// The name used in [`CRASH_ENV`].
    pub fn name(self) -> &'static str {
        match self {
            CrashPoint::AfterDeadLetterProduce => "after_dead_letter_produce",
            CrashPoint::BeforeIntent => "before_intent",
            CrashPoint::AfterIntent => "after_intent",
            CrashPoint::BeforeDataWrite => "before_data_write",
            CrashPoint::AfterDataWrite => "after_data_write",
            CrashPoint::BeforeCommitCreate => "before_commit_create",
            CrashPoint::AfterCommitCreate => "after_commit_create",
            CrashPoint::BeforeOffsetCommit => "before_offset_commit",
            CrashPoint::AfterOffsetCommit => "after_offset_commit",
            CrashPoint::DuringOrphanCleanup => "during_orphan_cleanup",
        }
    }
}

impl fmt::Display for CrashPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CrashPoint {
    type Err = FaultSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CrashPoint::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = CrashPoint::ALL.iter().map(|p| p.name()).collect();
                FaultSpecError::new(
                    "spec",
                    s,
                    format!("unknown crash point; use one of {}", names.join(", ")),
                )
            })
    }
}

/// Where and when to crash: at the `hit`-th time `point` is reached in this
/// process (counting every partition).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrashSpec {
    /// The crash point.
    pub point: CrashPoint,
    /// Which time reaching it crashes (1 = the first).
    pub hit: u64,
}

impl fmt::Display for CrashSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.point, self.hit)
    }
}

impl FromStr for CrashSpec {
    type Err = FaultSpecError;

    /// `point` (the first time) or `point:n` (the n-th time, n ≥ 1).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (name, hit) = match s.split_once(':') {
            Some((name, n)) => {
                let hit = n
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| {
                        FaultSpecError::new("spec", s, format!("{n:?} is not a count of 1 or more"))
                    })?;
                (name.trim(), hit)
            }
            None => (s, 1),
        };
        let point = name
            .parse::<CrashPoint>()
            .map_err(|e| FaultSpecError::new("spec", s, e.message))?;
        Ok(CrashSpec { point, hit })
    }
}

static CRASH: OnceLock<Result<Option<CrashSpec>, FaultSpecError>> = OnceLock::new();
static CRASH_HITS: AtomicU64 = AtomicU64::new(0);

/// The crash spec of [`CRASH_ENV`], read once per process: `None` when the
/// variable is unset or empty.
pub fn crash_from_env() -> Result<Option<CrashSpec>, FaultSpecError> {
    CRASH
        .get_or_init(|| match std::env::var(CRASH_ENV) {
            Ok(v) if !v.trim().is_empty() => v
                .parse::<CrashSpec>()
                .map(Some)
                .map_err(|e| e.for_variable(CRASH_ENV)),
            Ok(_) => Ok(None),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(v)) => Err(FaultSpecError::new(
                CRASH_ENV,
                &v.to_string_lossy(),
                "not UTF-8",
            )),
        })
        .clone()
}

/// Marks that `point` is reached: exits the process with
/// [`CRASH_EXIT_CODE`] if [`CRASH_ENV`] names it and this is the hit it
/// names. Panics if [`CRASH_ENV`] is not valid (the binary checks it at
/// start-up with [`from_env`]).
pub fn crash_point(point: CrashPoint) {
    let spec = match crash_from_env() {
        Ok(Some(spec)) => spec,
        Ok(None) => return,
        Err(e) => panic!("{e}"),
    };
    if spec.point != point {
        return;
    }
    let hit = CRASH_HITS.fetch_add(1, Ordering::SeqCst) + 1;
    if hit == spec.hit {
        error!(point = %point, hit, exit_code = CRASH_EXIT_CODE, "Fault injection: crashing the process.");
        std::process::exit(CRASH_EXIT_CODE);
    }
}

/// Both fault variables, checked: what a binary calls at start-up so that a
/// wrong spec fails the start rather than a landing.
pub fn from_env() -> Result<(Option<CrashSpec>, Option<StorageFaults>), FaultSpecError> {
    Ok((crash_from_env()?, storage_faults_from_env()?))
}

// ----------------------------------------------------------- storage faults

/// What a faulty store does to requests. Rates are fractions of requests,
/// drawn independently per request; they must add up to at most 1.
#[derive(Clone, Debug, PartialEq)]
pub struct StorageFaults {
    /// Requests that fail at once, without effect, like an HTTP 500 or 503.
    pub error_rate: f64,
    /// Every request is delayed by up to this much (uniformly drawn).
    pub latency: Duration,
    /// Requests that stall for `timeout`, then fail without effect.
    pub timeout_rate: f64,
    /// How long a timed-out request stalls.
    pub timeout: Duration,
    /// Writes (put, create, multipart completion) that take effect and then
    /// fail: the request succeeded but its response was lost.
    pub lost_response_rate: f64,
    /// Seed of the draws.
    pub seed: u64,
}

impl Default for StorageFaults {
    /// No faults; a 2 s timeout once `timeout_rate` is set.
    fn default() -> Self {
        Self {
            error_rate: 0.0,
            latency: Duration::ZERO,
            timeout_rate: 0.0,
            timeout: Duration::from_secs(2),
            lost_response_rate: 0.0,
            seed: 0,
        }
    }
}

impl fmt::Display for StorageFaults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "error_rate={},latency={},timeout_rate={},timeout={},lost_response_rate={},seed={}",
            self.error_rate,
            HumanDuration(self.latency),
            self.timeout_rate,
            HumanDuration(self.timeout),
            self.lost_response_rate,
            self.seed
        )
    }
}

impl FromStr for StorageFaults {
    type Err = FaultSpecError;

    /// Comma-separated `key=value` pairs, all optional: `error_rate`,
    /// `timeout_rate`, `lost_response_rate` (0 to 1), `latency`, `timeout`
    /// (durations such as `5ms`, `2s`), `seed` (an integer).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut faults = StorageFaults::default();
        for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad =
                |message: String| FaultSpecError::new("spec", s, format!("{pair}: {message}"));
            let (key, value) = pair
                .split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .ok_or_else(|| bad("expected key=value".into()))?;
            let rate = || {
                value
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| bad("a rate is a number from 0 to 1".into()))
            };
            let duration = || {
                value
                    .parse::<HumanDuration>()
                    .map(|d| d.0)
                    .map_err(|e| bad(format!("not a duration such as 5ms or 2s ({e})")))
            };
            match key {
                "error_rate" => faults.error_rate = rate()?,
                "timeout_rate" => faults.timeout_rate = rate()?,
                "lost_response_rate" => faults.lost_response_rate = rate()?,
                "latency" => faults.latency = duration()?,
                "timeout" => faults.timeout = duration()?,
                "seed" => {
                    faults.seed = value
                        .parse()
                        .map_err(|_| bad("the seed is an unsigned integer".into()))?
                }
                _ => {
                    return Err(bad(
                        "unknown key; use error_rate, latency, timeout_rate, timeout, lost_response_rate, seed"
                            .into(),
                    ))
                }
            }
        }
        let total = faults.error_rate + faults.timeout_rate + faults.lost_response_rate;
        if total > 1.0 {
            return Err(FaultSpecError::new(
                "spec",
                s,
                format!("the rates add up to {total}, more than 1"),
            ));
        }
        Ok(faults)
    }
}

/// The storage faults of [`STORAGE_ENV`]: `None` when it is unset or empty.
pub fn storage_faults_from_env() -> Result<Option<StorageFaults>, FaultSpecError> {
    match std::env::var(STORAGE_ENV) {
        Ok(v) if !v.trim().is_empty() => v
            .parse::<StorageFaults>()
            .map(Some)
            .map_err(|e| e.for_variable(STORAGE_ENV)),
        Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(v)) => Err(FaultSpecError::new(
            STORAGE_ENV,
            &v.to_string_lossy(),
            "not UTF-8",
        )),
    }
}

/// Wraps a lake's backend in the faults of [`STORAGE_ENV`], if set.
pub(crate) fn storage_from_env(
    url: &str,
    storage: Arc<dyn Storage>,
) -> Result<Arc<dyn Storage>, LakeError> {
    match storage_faults_from_env() {
        Ok(None) => Ok(storage),
        Ok(Some(faults)) => {
            warn!(url, faults = %faults, "Storage fault injection is on: requests will fail, stall and lose responses.");
            Ok(Arc::new(FaultyStorage {
                inner: storage,
                injector: Arc::new(Injector::new(faults)),
            }))
        }
        Err(e) => Err(LakeError::Config {
            key: STORAGE_ENV.to_string(),
            scheme: url.split("://").next().unwrap_or(url).to_string(),
            message: e.message,
        }),
    }
}

/// Counts of what a faulty store did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Requests seen.
    pub requests: u64,
    /// Requests failed at once.
    pub errors: u64,
    /// Requests stalled, then failed.
    pub timeouts: u64,
    /// Writes that took effect but reported a failure.
    pub lost_responses: u64,
}

/// An error injected by a faulty store; the `source` of an
/// `object_store::Error::Generic`, so it is retried like a real 5xx.
#[derive(Debug, thiserror::Error)]
#[error("{message} on {operation} {path} (injected fault)")]
pub struct InjectedFault {
    /// The request (`put`, `create`, `multipart`, `get`, `head`, `list`, `delete`).
    pub operation: &'static str,
    /// Its path.
    pub path: String,
    /// What went wrong, worded like the real thing.
    pub message: String,
    /// Whether the request took effect before it failed.
    pub took_effect: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Put,
    Create,
    Multipart,
    Get,
    Head,
    List,
    Delete,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Put => "put",
            Op::Create => "create",
            Op::Multipart => "multipart",
            Op::Get => "get",
            Op::Head => "head",
            Op::List => "list",
            Op::Delete => "delete",
        }
    }

    /// Whether the request writes an object, so that its response can be
    /// lost after it took effect.
    fn writes(self) -> bool {
        matches!(self, Op::Put | Op::Create | Op::Multipart)
    }
}

/// What to do with a request that was let through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Proceed,
    LoseResponse,
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The fault decisions shared by both wrappers.
#[derive(Debug)]
struct Injector {
    faults: StorageFaults,
    /// splitmix64 state.
    state: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    lost_responses: AtomicU64,
}

impl Injector {
    fn new(faults: StorageFaults) -> Self {
        Self {
            state: AtomicU64::new(faults.seed),
            faults,
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            lost_responses: AtomicU64::new(0),
        }
    }

    fn draw(&self) -> u64 {
        let state = self
            .state
            .fetch_add(GOLDEN_GAMMA, Ordering::Relaxed)
            .wrapping_add(GOLDEN_GAMMA);
        mix(state)
    }

    /// A uniform draw in `[0, 1)`.
    fn unit(&self) -> f64 {
        (self.draw() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn stats(&self) -> FaultStats {
        FaultStats {
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            lost_responses: self.lost_responses.load(Ordering::Relaxed),
        }
    }

    fn fault(op: Op, path: &str, message: String, took_effect: bool) -> object_store::Error {
        warn!(
            operation = op.name(),
            path,
            took_effect,
            fault = %message,
            "{INJECTED_STORAGE_FAULT}"
        );
        object_store::Error::Generic {
            store: "FaultyStore",
            source: Box::new(InjectedFault {
                operation: op.name(),
                path: path.to_string(),
                message,
                took_effect,
            }),
        }
    }

    /// Delays the request, then fails it or lets it through.
    async fn admit(&self, op: Op, path: &str) -> Result<Verdict, object_store::Error> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let f = &self.faults;
        if !f.latency.is_zero() {
            tokio::time::sleep(f.latency.mul_f64(self.unit())).await;
        }
        let roll = self.unit();
        if roll < f.timeout_rate {
            self.timeouts.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(f.timeout).await;
            let message = format!("request timed out after {}", HumanDuration(f.timeout));
            return Err(Self::fault(op, path, message, false));
        }
        let roll = roll - f.timeout_rate;
        if roll < f.error_rate {
            self.errors.fetch_add(1, Ordering::Relaxed);
            let message = if self.draw() & 1 == 0 {
                "HTTP 500 Internal Server Error: We encountered an internal error. Please try again."
            } else {
                "HTTP 503 Service Unavailable: Slow Down. Please reduce your request rate."
            };
            return Err(Self::fault(op, path, message.into(), false));
        }
        let roll = roll - f.error_rate;
        if op.writes() && roll < f.lost_response_rate {
            return Ok(Verdict::LoseResponse);
        }
        Ok(Verdict::Proceed)
    }

    /// Turns the outcome of a request that was let through into what the
    /// caller sees: the outcome, or a failure if its response is lost.
    fn respond<T>(
        &self,
        verdict: Verdict,
        op: Op,
        path: &str,
        outcome: T,
    ) -> Result<T, object_store::Error> {
        match verdict {
            Verdict::Proceed => Ok(outcome),
            Verdict::LoseResponse => {
                self.lost_responses.fetch_add(1, Ordering::Relaxed);
                Err(Self::fault(
                    op,
                    path,
                    "HTTP 500 Internal Server Error after the request took effect: the response was lost".into(),
                    true,
                ))
            }
        }
    }
}

/// An [`ObjectStore`] that injects [`StorageFaults`] into the requests it
/// passes to another store: put, put_opts (create), multipart uploads, get
/// and head, list and delete. Injected errors are
/// `object_store::Error::Generic` with an [`InjectedFault`] source, which the
/// lake classifies as retryable, like the 5xx answers they imitate.
///
/// ```
/// # async fn demo() -> Result<(), tributary_lake::LakeError> {
/// use std::sync::Arc;
/// use tributary_lake::faults::{FaultyStore, StorageFaults};
/// use tributary_lake::Lake;
///
/// let faults: StorageFaults = "error_rate=0.05,lost_response_rate=0.01,seed=7".parse().unwrap();
/// let store = Arc::new(FaultyStore::new(Arc::new(object_store::memory::InMemory::new()), faults));
/// let lake = Lake::open_with_store(store.clone(), "orders")?;
/// let _ = lake.list("").await; // may fail: retry, as the runtime does
/// assert_eq!(store.stats().requests, 1);
/// # Ok(())
/// # }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    injector: Arc<Injector>,
}

impl FaultyStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn ObjectStore>, faults: StorageFaults) -> Self {
        Self {
            inner,
            injector: Arc::new(Injector::new(faults)),
        }
    }

    /// What was injected so far.
    pub fn stats(&self) -> FaultStats {
        self.injector.stats()
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &ObjectPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let op = match opts.mode {
            PutMode::Create => Op::Create,
            _ => Op::Put,
        };
        let verdict = self.injector.admit(op, location.as_ref()).await?;
        let result = self.inner.put_opts(location, payload, opts).await?;
        self.injector
            .respond(verdict, op, location.as_ref(), result)
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjectPath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        // Starting the upload can fail; completing it can fail or lose its
        // response (it is the write that takes effect).
        self.injector
            .admit(Op::Multipart, location.as_ref())
            .await?;
        let upload = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FaultyUpload {
            inner: upload,
            path: location.to_string(),
            injector: self.injector.clone(),
        }))
    }

    async fn get_opts(
        &self,
        location: &ObjectPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let op = if options.head { Op::Head } else { Op::Get };
        self.injector.admit(op, location.as_ref()).await?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &ObjectPath,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.injector.admit(Op::Get, location.as_ref()).await?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjectPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjectPath>> {
        let inner = self.inner.clone();
        let injector = self.injector.clone();
        locations
            .then(move |location| {
                let inner = inner.clone();
                let injector = injector.clone();
                async move {
                    let location = location?;
                    injector.admit(Op::Delete, location.as_ref()).await?;
                    let one = futures::stream::once(futures::future::ready(Ok(location))).boxed();
                    let mut deleted = inner.delete_stream(one);
                    match deleted.next().await {
                        Some(result) => result,
                        None => Err(object_store::Error::Generic {
                            store: "FaultyStore",
                            source: "the wrapped store answered nothing to a delete".into(),
                        }),
                    }
                }
            })
            .boxed()
    }

    fn list(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let listing = self.inner.list(prefix);
        self.faulty_listing(prefix, listing)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&ObjectPath>,
        offset: &ObjectPath,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let listing = self.inner.list_with_offset(prefix, offset);
        self.faulty_listing(prefix, listing)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> object_store::Result<ListResult> {
        let path = prefix.map(|p| p.to_string()).unwrap_or_default();
        self.injector.admit(Op::List, &path).await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &ObjectPath,
        to: &ObjectPath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

impl FaultyStore {
    /// A listing that may fail (or stall) before its first entry.
    fn faulty_listing(
        &self,
        prefix: Option<&ObjectPath>,
        listing: BoxStream<'static, object_store::Result<ObjectMeta>>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let injector = self.injector.clone();
        let path = prefix.map(|p| p.to_string()).unwrap_or_default();
        async move {
            match injector.admit(Op::List, &path).await {
                Ok(_) => listing,
                Err(e) => futures::stream::once(futures::future::ready(Err(e))).boxed(),
            }
        }
        .flatten_stream()
        .boxed()
    }
}

/// A multipart upload whose parts can fail and whose completion can fail or
/// lose its response.
#[derive(Debug)]
struct FaultyUpload {
    inner: Box<dyn MultipartUpload>,
    path: String,
    injector: Arc<Injector>,
}

#[async_trait]
impl MultipartUpload for FaultyUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let part = self.inner.put_part(data);
        let injector = self.injector.clone();
        let path = self.path.clone();
        async move {
            injector.admit(Op::Put, &path).await?;
            part.await
        }
        .boxed()
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let verdict = self.injector.admit(Op::Multipart, &self.path).await?;
        let result = self.inner.complete().await?;
        self.injector
            .respond(verdict, Op::Multipart, &self.path, result)
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

/// The same faults at the level of the lake's own storage primitives, where
/// the local-disk backend and the object-store backends meet: what
/// [`Lake::open`](crate::Lake::open) uses for [`STORAGE_ENV`].
#[derive(Debug)]
struct FaultyStorage {
    inner: Arc<dyn Storage>,
    injector: Arc<Injector>,
}

impl FaultyStorage {
    async fn admit(&self, op: Op, path: &str) -> Result<Verdict, LakeError> {
        self.injector
            .admit(op, path)
            .await
            .map_err(|e| LakeError::object_store(op.name(), path, e))
    }

    fn respond<T>(&self, verdict: Verdict, op: Op, path: &str, outcome: T) -> Result<T, LakeError> {
        self.injector
            .respond(verdict, op, path, outcome)
            .map_err(|e| LakeError::object_store(op.name(), path, e))
    }
}

#[async_trait]
impl Storage for FaultyStorage {
    async fn put(&self, path: &str, data: Bytes) -> Result<(), LakeError> {
        let verdict = self.admit(Op::Put, path).await?;
        self.inner.put(path, data).await?;
        self.respond(verdict, Op::Put, path, ())
    }

    async fn create(&self, path: &str, data: Bytes) -> Result<Created, LakeError> {
        let verdict = self.admit(Op::Create, path).await?;
        let created = self.inner.create(path, data).await?;
        self.respond(verdict, Op::Create, path, created)
    }

    async fn get(&self, path: &str) -> Result<Option<Bytes>, LakeError> {
        self.admit(Op::Get, path).await?;
        self.inner.get(path).await
    }

    async fn size(&self, path: &str) -> Result<Option<u64>, LakeError> {
        self.admit(Op::Head, path).await?;
        self.inner.size(path).await
    }

    async fn list(
        &self,
        prefix: &str,
        offset: Option<&str>,
    ) -> Result<Vec<(String, u64)>, LakeError> {
        self.admit(Op::List, prefix).await?;
        self.inner.list(prefix, offset).await
    }

    async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, LakeError> {
        self.admit(Op::List, prefix).await?;
        self.inner.list_dirs(prefix).await
    }

    async fn delete(&self, path: &str) -> Result<(), LakeError> {
        self.admit(Op::Delete, path).await?;
        self.inner.delete(path).await
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;
    use object_store::ObjectStoreExt;
    use tributary_core::ErrorClass;

    use super::*;

    #[test]
    fn parses_crash_specs() {
        assert_eq!(
            "after_commit_create:3".parse::<CrashSpec>().unwrap(),
            CrashSpec {
                point: CrashPoint::AfterCommitCreate,
                hit: 3
            }
        );
        assert_eq!(
            " before_intent ".parse::<CrashSpec>().unwrap(),
            CrashSpec {
                point: CrashPoint::BeforeIntent,
                hit: 1
            }
        );
        for p in CrashPoint::ALL {
            assert_eq!(p.name().parse::<CrashPoint>().unwrap(), p);
            let spec = CrashSpec { point: p, hit: 2 };
            assert_eq!(spec.to_string().parse::<CrashSpec>().unwrap(), spec);
        }
        let e = "after_commit:3".parse::<CrashSpec>().unwrap_err();
        assert!(e.message.contains("unknown crash point"), "{e}");
        assert!(e.message.contains("during_orphan_cleanup"), "{e}");
        let e = "after_intent:0".parse::<CrashSpec>().unwrap_err();
        assert!(e.message.contains("count of 1 or more"), "{e}");
        assert!("after_intent:x".parse::<CrashSpec>().is_err());
    }

    #[test]
    fn parses_storage_faults() {
        let f: StorageFaults =
            "error_rate=0.05,latency=5ms,timeout_rate=0.005,timeout=2s,lost_response_rate=0.01,seed=7"
                .parse()
                .unwrap();
        assert_eq!(
            f,
            StorageFaults {
                error_rate: 0.05,
                latency: Duration::from_millis(5),
                timeout_rate: 0.005,
                timeout: Duration::from_secs(2),
                lost_response_rate: 0.01,
                seed: 7,
            }
        );
        assert_eq!(f.to_string().parse::<StorageFaults>().unwrap(), f);
        assert_eq!(
            "".parse::<StorageFaults>().unwrap(),
            StorageFaults::default()
        );
        for (bad, says) in [
            ("error_rate=1.5", "from 0 to 1"),
            ("error_rate=x", "from 0 to 1"),
            ("latency=fast", "not a duration"),
            ("seed=-1", "unsigned integer"),
            ("error_rate", "key=value"),
            ("errors=0.1", "unknown key"),
            ("error_rate=0.6,lost_response_rate=0.6", "more than 1"),
        ] {
            let e = bad.parse::<StorageFaults>().unwrap_err();
            assert!(e.to_string().contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn draws_are_deterministic_and_uniform() {
        let a = Injector::new(StorageFaults {
            seed: 7,
            ..Default::default()
        });
        let b = Injector::new(StorageFaults {
            seed: 7,
            ..Default::default()
        });
        let xs: Vec<f64> = (0..10_000).map(|_| a.unit()).collect();
        let ys: Vec<f64> = (0..10_000).map(|_| b.unit()).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let below = xs.iter().filter(|x| **x < 0.05).count();
        assert!((350..650).contains(&below), "{below} of 10000 below 0.05");
    }

    fn store(faults: &str) -> (Arc<InMemory>, FaultyStore) {
        let mem = Arc::new(InMemory::new());
        let store = FaultyStore::new(mem.clone(), faults.parse().unwrap());
        (mem, store)
    }

    #[tokio::test]
    async fn errors_fail_without_effect_and_are_retryable() {
        let (mem, store) = store("error_rate=1,seed=1");
        let path = ObjectPath::from("a/b");
        let e = store
            .put(&path, PutPayload::from_static(b"x"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("HTTP 50"), "{e}");
        assert!(mem.head(&path).await.is_err(), "an error has no effect");
        let lake_error = LakeError::object_store("put", "a/b", e);
        assert_eq!(lake_error.class(), ErrorClass::Retryable);
        assert!(store.get(&path).await.is_err());
        assert!(store.delete(&path).await.is_err());
        let listed: Vec<_> = store.list(None).collect().await;
        assert!(matches!(listed.as_slice(), [Err(_)]), "{listed:?}");
        assert!(store.list_with_delimiter(None).await.is_err());
        assert_eq!(
            store.stats(),
            FaultStats {
                requests: 5,
                errors: 5,
                timeouts: 0,
                lost_responses: 0
            }
        );
    }

    #[tokio::test]
    async fn a_lake_with_retries_gets_through_errors_beneath_it() {
        let (_mem, store) = store("error_rate=0.2,seed=3");
        let store = Arc::new(store);
        let lake = crate::Lake::open_with_store(store.clone(), "orders")
            .unwrap()
            .with_retries();
        for i in 0..20 {
            lake.storage
                .put(&format!("f{i}"), Bytes::from_static(b"x"))
                .await
                .expect("put retried");
        }
        assert_eq!(lake.list("").await.expect("list retried").len(), 20);
        let stats = store.stats();
        assert!(stats.errors > 0, "{stats:?}");
        assert_eq!(stats.requests, 21 + stats.errors, "{stats:?}");
    }

    #[tokio::test]
    async fn lost_responses_take_effect() {
        let (mem, store) = store("lost_response_rate=1");
        let path = ObjectPath::from("c/commit.json");
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let e = store
            .put_opts(&path, PutPayload::from_static(b"1"), opts.clone())
            .await
            .unwrap_err();
        let object_store::Error::Generic { source, .. } = &e else {
            panic!("{e:?}")
        };
        let injected = source.downcast_ref::<InjectedFault>().expect("injected");
        assert!(injected.took_effect);
        assert_eq!(injected.operation, "create");
        // It did take effect: a second create finds it.
        assert!(mem.head(&path).await.is_ok());
        let again = store
            .put_opts(&path, PutPayload::from_static(b"2"), opts)
            .await
            .unwrap_err();
        assert!(
            matches!(again, object_store::Error::AlreadyExists { .. }),
            "{again}"
        );
        // Reads never lose responses.
        let got = store.get(&path).await.unwrap().bytes().await.unwrap();
        assert_eq!(got.as_ref(), b"1");
        assert_eq!(store.stats().lost_responses, 1);
    }

    #[tokio::test]
    async fn timeouts_stall_then_fail() {
        let (_, store) = store("timeout_rate=1,timeout=50ms");
        let started = std::time::Instant::now();
        let e = store.get(&ObjectPath::from("x")).await.unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(e.to_string().contains("timed out after 50ms"), "{e}");
        assert_eq!(store.stats().timeouts, 1);
    }

    #[tokio::test]
    async fn storage_level_faults() {
        let inner: Arc<dyn Storage> = Arc::new(crate::storage::ObjectStorage::new(
            Arc::new(InMemory::new()),
            ObjectPath::from(""),
        ));
        let failing = FaultyStorage {
            inner: inner.clone(),
            injector: Arc::new(Injector::new("error_rate=1".parse().unwrap())),
        };
        let e = failing
            .put("a", Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        assert_eq!(e.class(), ErrorClass::Retryable);
        assert!(inner.get("a").await.unwrap().is_none());
        let losing = FaultyStorage {
            inner: inner.clone(),
            injector: Arc::new(Injector::new("lost_response_rate=1".parse().unwrap())),
        };
        let e = losing
            .create("c", Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        assert_eq!(e.class(), ErrorClass::Retryable);
        assert!(inner.get("c").await.unwrap().is_some());
        assert!(losing.get("c").await.unwrap().is_some());
    }
}
