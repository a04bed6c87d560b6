//! The one error type every client sees, and its status code.

use serde::Serialize;

/// What went wrong, from the client's point of view. Each kind has exactly one
/// HTTP status (see [`ErrorKind::status`]) and one OpenAI `type` string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400: malformed JSON or an invalid field.
    InvalidRequest,
    /// 401: missing or wrong API key.
    Authentication,
    /// 403: the key is valid but may not do this.
    Permission,
    /// 404: unknown model, conversation or route.
    NotFound,
    /// 405: wrong method on a known route.
    MethodNotAllowed,
    /// 408: the client did not send its request's body in time.
    RequestTimeout,
    /// 409: the resource is not in a state that allows this (retrying a running job).
    Conflict,
    /// 413: the body is larger than the configured limit.
    PayloadTooLarge,
    /// 415: the body is not JSON.
    UnsupportedMediaType,
    /// 429: rate limited or queue full.
    RateLimited,
    /// 500: a bug or an unexpected failure; the detail goes to the log, not the client.
    Internal,
    /// 502: the upstream answered with something we could not use.
    BadGateway,
    /// 503: no backend could serve the request now.
    Unavailable,
    /// 504: the upstream did not answer in time.
    Timeout,
}

impl ErrorKind {
    /// The HTTP status code of this kind.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest => 400,
            ErrorKind::Authentication => 401,
            ErrorKind::Permission => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::RequestTimeout => 408,
            ErrorKind::Conflict => 409,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::UnsupportedMediaType => 415,
            ErrorKind::RateLimited => 429,
            ErrorKind::Internal => 500,
            ErrorKind::BadGateway => 502,
            ErrorKind::Unavailable => 503,
            ErrorKind::Timeout => 504,
        }
    }

    /// OpenAI's `error.type` string for this kind.
    pub fn type_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest
            | ErrorKind::NotFound
            | ErrorKind::MethodNotAllowed
            | ErrorKind::RequestTimeout
            | ErrorKind::Conflict
            | ErrorKind::PayloadTooLarge
            | ErrorKind::UnsupportedMediaType => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::Permission => "permission_error",
            ErrorKind::RateLimited => "rate_limit_error",
            ErrorKind::Internal => "server_error",
            ErrorKind::BadGateway | ErrorKind::Unavailable | ErrorKind::Timeout => {
                "service_unavailable_error"
            }
        }
    }
}

/// An error as the client sees it. `retry_after` (seconds) becomes a `Retry-After`
/// header on 429 and 503 answers.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
    pub param: Option<String>,
    pub code: Option<String>,
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
            param: None,
            code: None,
            retry_after: None,
        }
    }

    /// 400 naming the offending field.
    pub fn invalid_param(param: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::new(ErrorKind::InvalidRequest, message).with_param(param)
    }

    /// 404 `model_not_found`.
    pub fn model_not_found(model: &str) -> Self {
        ApiError::new(
            ErrorKind::NotFound,
            format!("The model `{model}` does not exist. GET /v1/models lists the models this server serves."),
        )
        .with_param("model")
        .with_code("model_not_found")
    }

    /// 400 `invalid_json`: the body is not valid JSON (`e` says where).
    pub fn invalid_json(e: &serde_json::Error) -> Self {
        ApiError::new(
            ErrorKind::InvalidRequest,
            format!("malformed JSON in the request body: {e}"),
        )
        .with_code("invalid_json")
    }

    /// 500 whose message hides the detail (the caller logs it).
    pub fn internal() -> Self {
        ApiError::new(
            ErrorKind::Internal,
            "internal error; the server log has the detail",
        )
        .with_code("internal_error")
    }

    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn status(&self) -> u16 {
        self.kind.status()
    }

    /// The JSON body `{"error":{"message","type","param","code"}}`.
    pub fn to_json(&self) -> Vec<u8> {
        let body = Body {
            error: Inner {
                message: &self.message,
                kind: self.kind.type_str(),
                param: self.param.as_deref(),
                code: self.code.as_deref(),
            },
        };
        // Serializing plain strings and options cannot fail.
        serde_json::to_vec(&body).unwrap_or_else(|_| b"{\"error\":{}}".to_vec())
    }

    /// The same body as a `serde_json::Value`, for SSE error events.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::from_slice(&self.to_json()).unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_openai_shape() {
        let e = ApiError::model_not_found("gpt-9");
        let v: serde_json::Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["param"], "model");
        assert!(v["error"]["message"].as_str().unwrap().contains("gpt-9"));
        assert_eq!(e.status(), 404);
    }

    #[test]
    fn null_param_and_code_are_present() {
        let v: serde_json::Value =
            serde_json::from_slice(&ApiError::new(ErrorKind::Unavailable, "down").to_json())
                .unwrap();
        assert!(v["error"].as_object().unwrap().contains_key("param"));
        assert!(v["error"]["code"].is_null());
    }
}
