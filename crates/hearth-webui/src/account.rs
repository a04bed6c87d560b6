//! `GET /api/hearth/me`: who the caller is to this server (its key's name), its
//! limits, and where its token budget stands this period: what a key holder (the
//! UI, `hearth chat`, a script) asks to know what it has left, without spending a
//! request of its limits on it.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Extension, Json, Router};
use hearth_gateway::{Gateway, Principal};
use serde_json::{Value, json};

/// The route, state applied, behind the server's key check.
pub fn routes(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route(&format!("{}/me", crate::API_ROOT), get(me))
        .with_state(gateway)
}

async fn me(
    State(gateway): State<Arc<Gateway>>,
    Extension(who): Extension<Principal>,
) -> Json<Value> {
    let budget = gateway.budget(&who).await.map(|b| {
        json!({
            "tokens": b.budget.tokens,
            "period": b.budget.period.as_str(),
            "used": b.used,
            "remaining": b.remaining(),
            "period_start": b.started_at(),
            "renews_at": b.renews_at(),
        })
    });
    Json(json!({
        "object": "hearth.key",
        "key": &*who.id,
        "admin": who.admin,
        "rpm": who.rpm,
        "tpm": who.tpm,
        "budget": budget,
    }))
}
