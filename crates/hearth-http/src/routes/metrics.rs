//! `GET /metrics`: Prometheus text format.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::state::HttpState;

pub async fn handler(State(state): State<HttpState>) -> impl IntoResponse {
    crate::metrics::sample();
    crate::metrics::sample_models(&state.gateway.router().models());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
