//! `GET /api/hearth/me`: who the caller is to this server (its key's name), its
//! limits, and where its token budget stands this period: what a key holder (the
//! UI, `hearth chat`, a script) asks to know what it has left, without spending a
//! request of its limits on it. `GET /api/hearth/keys`: the same for every
//! configured key, for an admin key only (`hearth keys`): who used how much.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Extension, Json, Router};
use hearth_api::{ApiError, ErrorKind};
use hearth_gateway::{Gateway, Principal};
use hearth_http::HttpError;
use serde_json::{Value, json};

/// The route, state applied, behind the server's key check.
pub fn routes(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route(&format!("{}/me", crate::API_ROOT), get(me))
        .route(&format!("{}/keys", crate::API_ROOT), get(keys))
        .with_state(gateway)
}

async fn me(
    State(gateway): State<Arc<Gateway>>,
    Extension(who): Extension<Principal>,
) -> Json<Value> {
    Json(describe(&gateway, &who).await)
}

/// Every configured key, in the config's order, as `me` describes one: for an
/// admin key; 403 for any other. A server without keys has none to list.
async fn keys(
    State(gateway): State<Arc<Gateway>>,
    Extension(who): Extension<Principal>,
) -> Result<Json<Value>, HttpError> {
    let ring = gateway.keys();
    if ring.required() && !who.admin {
        return Err(HttpError(
            ApiError::new(
                ErrorKind::Permission,
                format!(
                    "key `{}` is not an admin key: listing every key's limits and budget needs one (`admin = true` in its [[keys]] entry)",
                    who.id
                ),
            )
            .with_code("admin_key_required"),
        ));
    }
    let mut data = Vec::new();
    for p in ring.principals() {
        data.push(describe(&gateway, p).await);
    }
    Ok(Json(json!({"object": "list", "data": data})))
}

/// A key as its holder and an admin see it: name, limits, budget this period.
async fn describe(gateway: &Gateway, who: &Principal) -> Value {
    let budget = gateway.budget(who).await.map(|b| {
        json!({
            "tokens": b.budget.tokens,
            "period": b.budget.period.as_str(),
            "used": b.used,
            "remaining": b.remaining(),
            "period_start": b.started_at(),
            "renews_at": b.renews_at(),
        })
    });
    json!({
        "object": "hearth.key",
        "key": &*who.id,
        "admin": who.admin,
        "rpm": who.rpm,
        "tpm": who.tpm,
        "budget": budget,
    })
}
