//! `GET /health` (liveness) and `GET /ready` (at least one model can serve).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use hearth_api::ModelStatus;
use serde_json::{Value, json};

use crate::state::HttpState;

pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub async fn ready(State(state): State<HttpState>) -> (StatusCode, Json<Value>) {
    let router = state.gateway.router();
    let models: Vec<Value> = router
        .iter()
        .map(|m| {
            json!({
                "id": m.config.name,
                "status": m.status(),
                "backend": m.backend.kind(),
                "queue_depth": m.queue_depth(),
                "in_flight": m.in_flight(),
            })
        })
        .collect();
    let ready = router.iter().any(|m| m.status() == ModelStatus::Ready);
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(json!({"status": if ready { "ready" } else { "not_ready" }, "models": models})),
    )
}
