//! Checks of request fields against `[limits]`.

use hearth_api::ApiError;
use hearth_http::HttpState;

/// `max_tokens`-like fields: at least 1, at most `limits.max_tokens`.
pub fn max_tokens(state: &HttpState, value: Option<u32>, param: &str) -> Result<(), ApiError> {
    let limit = state.config.limits.max_tokens;
    match value {
        Some(0) => Err(ApiError::invalid_param(
            param,
            format!("`{param}` must be at least 1"),
        )),
        Some(v) if v > limit => Err(ApiError::invalid_param(
            param,
            format!("`{param}` = {v} is more than the limit of {limit} (limits.max_tokens)"),
        )),
        _ => Ok(()),
    }
}
