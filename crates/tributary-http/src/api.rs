//! JSON handlers of the control API.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use tracing::info;
use tributary_runtime::{PartitionStatus, PipelineStatus};

use crate::{rfc3339, Registry};

type Shared = State<Arc<Registry>>;

/// A JSON error, Kafka Connect style.
pub(crate) fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (
        code,
        Json(json!({ "error_code": code.as_u16(), "message": message.into() })),
    )
        .into_response()
}

fn unknown(name: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("pipeline {name:?} is not configured on this worker"),
    )
}

pub(crate) async fn not_found(req: Request) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("no route for {} {}", req.method(), req.uri().path()),
    )
}

pub(crate) async fn method_not_allowed(req: Request) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

/// Checks `Authorization: Bearer <token>` when a token is configured.
pub(crate) async fn require_token(
    State(token): State<Arc<Option<String>>>,
    req: Request,
    next: Next,
) -> Response {
    if let Some(token) = token.as_deref() {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
            let mut r = error(
                StatusCode::UNAUTHORIZED,
                "a bearer token is required (Authorization: Bearer <token>)",
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return r;
        }
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) async fn healthz() -> Response {
    Json(json!({ "status": "alive" })).into_response()
}

pub(crate) async fn readyz(State(reg): Shared) -> Response {
    match reg.readiness() {
        Ok(()) => Json(json!({ "status": "ready" })).into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not ready", "message": why })),
        )
            .into_response(),
    }
}

pub(crate) async fn list(State(reg): Shared) -> Response {
    Json(json!(reg.names())).into_response()
}

pub(crate) async fn info(State(reg): Shared, Path(name): Path<String>) -> Response {
    let Some(config) = reg.config(&name) else {
        return unknown(&name);
    };
    let state = reg
        .status(&name)
        .flatten()
        .map_or("starting", |s| s.state.as_str());
    Json(json!({ "name": name, "worker_id": reg.worker_id, "state": state, "config": config }))
        .into_response()
}

fn partition_json(tp: &tributary_core::TopicPartition, p: &PartitionStatus) -> Value {
    json!({
        "topic": tp.topic,
        "partition": tp.partition,
        "assigned": p.assigned,
        "landed_offset": p.landed_offset,
        "committed_offset": p.committed_offset,
        "high_watermark": p.high_watermark,
        "lag": p.lag,
        "lag_status": p.lag_status.as_str(),
        "last_landing": p.last_landing.map(rfc3339),
        "last_commit": p.last_commit.map(rfc3339),
        "last_error": p.last_error,
    })
}

/// The status document of one pipeline.
pub(crate) fn status_json(worker_id: &str, s: &PipelineStatus) -> Value {
    let t = &s.totals;
    json!({
        "name": s.name,
        "worker_id": worker_id,
        "state": s.state.as_str(),
        "error": s.error,
        "totals": {
            "consumed": t.consumed,
            "landed_rows": t.landed_rows,
            "dead_lettered": t.dead_lettered,
            "skipped": t.skipped,
            "late": t.late,
            "files": t.files,
            "bytes": t.bytes,
            "landings": t.landings,
            "failed_landings": t.failed_landings,
        },
        "buffered_bytes": s.buffered_bytes,
        "partitions": s
            .partitions
            .iter()
            .filter(|(_, p)| p.assigned)
            .map(|(tp, p)| partition_json(tp, p))
            .collect::<Vec<_>>(),
        "recent_files": s.recent_files.iter().map(|f| json!({
            "topic": f.partition.topic,
            "partition": f.partition.partition,
            "path": f.path,
            "rows": f.rows,
            "bytes": f.bytes,
            "landed_at": rfc3339(f.landed_at),
        })).collect::<Vec<_>>(),
    })
}

pub(crate) async fn status(State(reg): Shared, Path(name): Path<String>) -> Response {
    match reg.status(&name) {
        None => unknown(&name),
        Some(None) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("pipeline {name:?} has not started yet"),
        ),
        Some(Some(s)) => Json(status_json(&reg.worker_id, &s)).into_response(),
    }
}

pub(crate) async fn offsets(State(reg): Shared, Path(name): Path<String>) -> Response {
    match reg.status(&name) {
        None => unknown(&name),
        Some(None) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("pipeline {name:?} has not started yet"),
        ),
        Some(Some(s)) => {
            let offsets: Vec<Value> = s
                .partitions
                .iter()
                .filter(|(_, p)| p.assigned)
                .map(|(tp, p)| {
                    json!({
                        "partition": { "topic": tp.topic, "partition": tp.partition },
                        "offset": { "landed": p.landed_offset, "committed": p.committed_offset },
                    })
                })
                .collect();
            Json(json!({ "name": name, "offsets": offsets })).into_response()
        }
    }
}

async fn set_paused(reg: &Registry, name: &str, paused: bool) -> Response {
    let control = match reg.control(name) {
        None => return unknown(name),
        Some(None) => {
            return error(
                StatusCode::CONFLICT,
                format!("pipeline {name:?} has not started yet"),
            )
        }
        Some(Some(c)) => c,
    };
    let result = if paused {
        control.pause().await
    } else {
        control.resume().await
    };
    match result {
        Ok(()) => {
            info!(pipeline = %name, paused, "Pause or resume requested through the API.");
            (
                StatusCode::ACCEPTED,
                Json(json!({ "name": name, "state": if paused { "paused" } else { "running" } })),
            )
                .into_response()
        }
        Err(e) => error(StatusCode::CONFLICT, e.to_string()),
    }
}

pub(crate) async fn pause(State(reg): Shared, Path(name): Path<String>) -> Response {
    set_paused(&reg, &name, true).await
}

pub(crate) async fn resume(State(reg): Shared, Path(name): Path<String>) -> Response {
    set_paused(&reg, &name, false).await
}

pub(crate) async fn restart(State(reg): Shared, Path(name): Path<String>) -> Response {
    let Some(notify) = reg.restart(&name) else {
        return unknown(&name);
    };
    notify.notify_one();
    info!(pipeline = %name, "Restart requested through the API.");
    (
        StatusCode::ACCEPTED,
        Json(json!({ "name": name, "restarting": true })),
    )
        .into_response()
}
