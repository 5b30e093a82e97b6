//! # tributary-http
//!
//! The HTTP side of a `tributary run` worker, served on `worker.http_addr`:
//!
//! | route | what |
//! | --- | --- |
//! | `GET /pipelines` | names of the pipelines this worker runs |
//! | `GET /pipelines/{name}` | its config (secrets redacted) and state |
//! | `GET /pipelines/{name}/status` | state, totals, and per partition: landed and committed offset, high watermark, lag, lag health, last landing, last error |
//! | `GET /pipelines/{name}/offsets` | landed and committed offset per partition |
//! | `PUT /pipelines/{name}/pause`, `/resume` | stop or restart consuming, keeping the assignment |
//! | `POST /pipelines/{name}/restart` | drain the pipeline, then build and start it afresh |
//! | `GET /metrics` | Prometheus text exposition ([`metrics`]) |
//! | `GET /healthz` | 200 while the process serves |
//! | `GET /readyz` | 200 when every pipeline runs (or waits for partitions, or is paused) and none is failing |
//! | `GET /` | a read-only status page (HTML, no scripts) |
//!
//! Errors are JSON, Kafka Connect style: `{"error_code": 404, "message": "..."}`.
//! With a bearer token configured every route except `/healthz`, `/readyz`,
//! `/metrics` and the status page (read-only, no config) requires
//! `Authorization: Bearer <token>`. The routes are
//! described in `docs/openapi.json`; a test checks that the two agree.
//!
//! The worker keeps a [`Registry`]: one entry per configured pipeline, to
//! which each (re)built pipeline task attaches its status channel and
//! control handle.

#![warn(missing_docs)]

mod api;
pub mod metrics;
mod page;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::routing::{get, post, put};
use axum::Router;
use tokio::sync::{watch, Notify};
use tributary_config::PipelineConfig;
use tributary_runtime::{PipelineControl, PipelineState, PipelineStatus};

/// Why the HTTP server could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// One configured pipeline as the API sees it.
struct Entry {
    /// Config as JSON, secrets redacted.
    config: serde_json::Value,
    /// Status of the current task, once one is running.
    status: Option<watch::Receiver<PipelineStatus>>,
    /// Control handle of the current task.
    control: Option<PipelineControl>,
    /// Wakes the supervisor to restart the pipeline.
    restart: Arc<Notify>,
}

/// The pipelines of a worker, shared between their supervisors and the API.
pub struct Registry {
    worker_id: String,
    memory_budget: Option<u64>,
    entries: RwLock<BTreeMap<String, Entry>>,
}

impl Registry {
    /// An empty registry of worker `worker_id`; `memory_budget` is exported
    /// as a metric when set.
    pub fn new(worker_id: impl Into<String>, memory_budget: Option<u64>) -> Arc<Registry> {
        Arc::new(Registry {
            worker_id: worker_id.into(),
            memory_budget,
            entries: RwLock::new(BTreeMap::new()),
        })
    }

    /// Adds a configured pipeline; the returned [`Notify`] fires when the
    /// API asks for a restart.
    pub fn register(&self, config: &PipelineConfig) -> Arc<Notify> {
        let restart = Arc::new(Notify::new());
        let value = serde_json::to_value(config)
            .map(redact)
            .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }));
        self.write().insert(
            config.name.clone(),
            Entry {
                config: value,
                status: None,
                control: None,
                restart: restart.clone(),
            },
        );
        restart
    }

    /// Attaches the running task of pipeline `name` (after each (re)build).
    pub fn attach(
        &self,
        name: &str,
        status: watch::Receiver<PipelineStatus>,
        control: PipelineControl,
    ) {
        if let Some(e) = self.write().get_mut(name) {
            e.status = Some(status);
            e.control = Some(control);
        }
    }

    /// Names of the pipelines.
    pub fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// The last status of each pipeline that has a task (sorted by name).
    pub fn statuses(&self) -> Vec<PipelineStatus> {
        self.read()
            .values()
            .filter_map(|e| e.status.as_ref().map(|s| s.borrow().clone()))
            .collect()
    }

    fn status(&self, name: &str) -> Option<Option<PipelineStatus>> {
        self.read()
            .get(name)
            .map(|e| e.status.as_ref().map(|s| s.borrow().clone()))
    }

    fn config(&self, name: &str) -> Option<serde_json::Value> {
        self.read().get(name).map(|e| e.config.clone())
    }

    fn control(&self, name: &str) -> Option<Option<PipelineControl>> {
        self.read().get(name).map(|e| e.control.clone())
    }

    fn restart(&self, name: &str) -> Option<Arc<Notify>> {
        self.read().get(name).map(|e| e.restart.clone())
    }

    /// Whether every pipeline is running, waiting for partitions or paused,
    /// with no assigned partition failing; otherwise why not.
    pub fn readiness(&self) -> Result<(), String> {
        let entries = self.read();
        let mut problems = Vec::new();
        for (name, e) in entries.iter() {
            let Some(status) = &e.status else {
                problems.push(format!("{name}: not started"));
                continue;
            };
            let s = status.borrow();
            match s.state {
                PipelineState::Starting | PipelineState::Running | PipelineState::Paused => {}
                other => problems.push(format!("{name}: {}", other.as_str())),
            }
            for (tp, p) in &s.partitions {
                if let (true, Some(err)) = (p.assigned, &p.last_error) {
                    problems.push(format!("{name}: {tp}: {err}"));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Entry>> {
        self.entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Entry>> {
        self.entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Replaces the values of secret-looking keys (passthrough maps such as
/// `librdkafka`) with `***`; typed secrets already serialize as `***`.
fn redact(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = if tributary_config::is_secret_key(&k) && !v.is_null() {
                        Value::String("***".into())
                    } else {
                        redact(v)
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(redact).collect()),
        other => other,
    }
}

/// Every route the server serves, as `(method, path)` in OpenAPI spelling.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/pipelines"),
    ("get", "/pipelines/{name}"),
    ("get", "/pipelines/{name}/status"),
    ("get", "/pipelines/{name}/offsets"),
    ("put", "/pipelines/{name}/pause"),
    ("put", "/pipelines/{name}/resume"),
    ("post", "/pipelines/{name}/restart"),
];

/// The router over a registry; `token` is the bearer token, if required.
pub fn router(registry: Arc<Registry>, token: Option<String>) -> Router {
    let protected = Router::new()
        .route("/pipelines", get(api::list))
        .route("/pipelines/{name}", get(api::info))
        .route("/pipelines/{name}/status", get(api::status))
        .route("/pipelines/{name}/offsets", get(api::offsets))
        .route("/pipelines/{name}/pause", put(api::pause))
        .route("/pipelines/{name}/resume", put(api::resume))
        .route("/pipelines/{name}/restart", post(api::restart))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(token),
            api::require_token,
        ));
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(metrics::handler))
        .route("/", get(page::index))
        .merge(protected)
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .with_state(registry)
}

/// A bound, not yet serving, HTTP listener.
pub struct Server {
    listener: tokio::net::TcpListener,
}

impl Server {
    /// Binds `addr` (port 0 picks a free port).
    pub async fn bind(addr: &str) -> Result<Server, HttpError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| HttpError::Bind {
                addr: addr.to_string(),
                source,
            })?;
        Ok(Server { listener })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `stop` resolves.
    pub async fn serve(
        self,
        registry: Arc<Registry>,
        token: Option<String>,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), HttpError> {
        axum::serve(self.listener, router(registry, token))
            .with_graceful_shutdown(stop)
            .await
            .map_err(HttpError::Serve)
    }
}

/// RFC 3339 (UTC, milliseconds) of a time.
pub(crate) fn rfc3339(t: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
