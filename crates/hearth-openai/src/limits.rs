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

/// A request's text (`what`, at field `param`): at most `limits.max_message_bytes`.
pub fn text_bytes(state: &HttpState, len: usize, param: &str, what: &str) -> Result<(), ApiError> {
    let limit = state.config.limits.max_message_bytes;
    if len > limit {
        return Err(ApiError::invalid_param(
            param,
            format!(
                "{what} is {len} bytes, more than the limit of {limit} (limits.max_message_bytes)"
            ),
        ));
    }
    Ok(())
}
