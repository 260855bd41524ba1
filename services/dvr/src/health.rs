//! Every process's own routes: `/healthz` (the process is alive),
//! `/readyz` (connected to its bus, first reconcile done: Kubernetes sends
//! it traffic), `/status` (which services, which node, what it owns).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::supervisor::Supervisor;

/// The health routes of a process.
pub fn router(supervisor: Arc<Supervisor>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .with_state(supervisor)
}

async fn readyz(State(supervisor): State<Arc<Supervisor>>) -> Response {
    if !supervisor.node().is_connected() {
        return (StatusCode::SERVICE_UNAVAILABLE, "not connected to NATS\n").into_response();
    }
    if !supervisor.is_ready() {
        return (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response();
    }
    (StatusCode::OK, "ready\n").into_response()
}

async fn status(State(supervisor): State<Arc<Supervisor>>) -> Json<serde_json::Value> {
    let status = supervisor.status();
    Json(json!({
        "services": supervisor.roles().names(),
        "node": supervisor.node().id,
        "distributed": supervisor.node().is_distributed(),
        "connected": supervisor.node().is_connected(),
        "streams": status.streams,
        "owns": { "ingest": status.ingest, "recorder": status.recorder },
        "members": { "ingest": status.ingest_members, "recorder": status.recorder_members },
        "failing": status.failing,
    }))
}
