//! `GET /health` (liveness) and `GET /ready` (at least one model can serve, and
//! every model server Hearth starts with itself is up). Both say which process
//! answered in `X-Hearth-Instance` (random, one per process): a deploy that
//! upgrades by handover waits for a new one's 200.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use hearth_api::ModelStatus;
use serde_json::{Value, json};

use crate::state::HttpState;

/// This process's `X-Hearth-Instance`.
fn instance() -> [(&'static str, &'static str); 1] {
    static INSTANCE: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| uuid::Uuid::new_v4().simple().to_string());
    [("x-hearth-instance", INSTANCE.as_str())]
}

pub async fn health() -> ([(&'static str, &'static str); 1], Json<Value>) {
    (instance(), Json(json!({"status": "ok"})))
}

pub async fn ready(
    State(state): State<HttpState>,
) -> (StatusCode, [(&'static str, &'static str); 1], Json<Value>) {
    let router = state.gateway.router();
    let models: Vec<Value> = router
        .iter()
        .map(|m| {
            let mut entry = json!({
                "id": m.config.name,
                "status": m.status(),
                "backend": m.backend.kind(),
                "queue_depth": m.queue_depth(),
                "in_flight": m.in_flight(),
            });
            // Public (health checks call it without a key): the state only. The
            // reason and the stderr lines are in `/v1/models`, behind the key.
            if let Some(engine) = m.backend.engine() {
                entry["engine"] = json!({
                    "state": engine.state,
                    "start": engine.start,
                    "restarts": engine.restarts,
                });
            }
            entry
        })
        .collect();
    // An on-demand server is not expected up; an eager one is part of being ready
    // (a deploy's health check waits for it).
    let eager_up = router.iter().all(|m| {
        m.backend
            .engine()
            .is_none_or(|e| e.start != "eager" || m.status() == ModelStatus::Ready)
    });
    let ready = eager_up && router.iter().any(|m| m.status() == ModelStatus::Ready);
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        instance(),
        Json(json!({"status": if ready { "ready" } else { "not_ready" }, "models": models})),
    )
}
