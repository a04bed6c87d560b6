//! `GET /v1/models` and `GET /v1/models/{id}`: served from the registry and cached
//! health, never by asking every backend.

use axum::Json;
use axum::extract::{Path, State};
use hearth_api::{ApiError, ModelEntry, ModelList};
use hearth_http::{HttpError, HttpState};

pub async fn list(State(state): State<HttpState>) -> Json<ModelList> {
    Json(ModelList {
        object: "list".to_owned(),
        data: state.gateway.router().models(),
    })
}

pub async fn get(
    State(state): State<HttpState>,
    Path(id): Path<String>,
) -> Result<Json<ModelEntry>, HttpError> {
    state
        .gateway
        .router()
        .model_entry(&id)
        .map(Json)
        .ok_or_else(|| HttpError(ApiError::model_not_found(&id)))
}
