//! `GET /v1/models` and `GET /v1/models/{id}`: served from the registry and cached
//! health, never by asking every backend.

use axum::Json;
use axum::extract::{Path, State};
use hearth_api::{ApiError, ModelEntry, ModelList};

use crate::error::HttpError;
use crate::state::AppState;

pub async fn list(State(state): State<AppState>) -> Json<ModelList> {
    Json(ModelList {
        object: "list".to_owned(),
        data: state.router.models(),
    })
}

pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ModelEntry>, HttpError> {
    state
        .router
        .model_entry(&id)
        .map(Json)
        .ok_or_else(|| HttpError(ApiError::model_not_found(&id)))
}
