//! Client API keys: `Authorization: Bearer KEY`, compared in constant time. Only
//! the key's id ever reaches logs.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hearth_api::{ApiError, ErrorKind};
use hearth_config::ResolvedKey;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::HttpError;
use crate::request_log::RequestLog;
use crate::state::AppState;

/// The caller, as later layers see it.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key's configured name, or `anonymous` when the server needs no key.
    /// Shared, so handing the caller to each layer copies no string.
    pub key_id: Arc<str>,
    pub rpm: u32,
    pub tpm: u64,
}

pub struct Keys {
    // Digests, so comparison time does not depend on the key's length.
    keys: Vec<([u8; 32], Caller)>,
    anonymous: Arc<str>,
}

impl Keys {
    pub fn new(keys: &[ResolvedKey]) -> Self {
        Keys {
            keys: keys
                .iter()
                .map(|k| {
                    (
                        digest(&k.secret),
                        Caller {
                            key_id: Arc::from(k.id.as_str()),
                            rpm: k.rpm,
                            tpm: k.tpm,
                        },
                    )
                })
                .collect(),
            anonymous: Arc::from("anonymous"),
        }
    }

    pub fn required(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The caller owning `presented`, comparing against every key.
    pub fn find(&self, presented: &str) -> Option<Caller> {
        let d = digest(presented);
        let mut found = None;
        for (k, caller) in &self.keys {
            if bool::from(k.ct_eq(&d)) && found.is_none() {
                found = Some(caller.clone());
            }
        }
        found
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Requires a valid key when keys are configured, and records the caller.
pub async fn require_key(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let caller = match authenticate(&state, req.headers()) {
        Ok(c) => c,
        Err(e) => return HttpError(e).into_response(),
    };
    if let Some(log) = req.extensions().get::<RequestLog>() {
        log.set_key(&caller.key_id);
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// The caller presenting `headers`: the owner of their bearer key, or the anonymous
/// caller when the server needs no key. 401 otherwise.
pub(crate) fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    if !state.keys.required() {
        return Ok(Caller {
            key_id: state.keys.anonymous.clone(),
            rpm: state.config.limits.default_rpm,
            tpm: state.config.limits.default_tpm,
        });
    }
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(presented) = presented else {
        return Err(ApiError::new(
            ErrorKind::Authentication,
            "missing API key: send `Authorization: Bearer YOUR_KEY`",
        )
        .with_code("missing_api_key"));
    };
    state.keys.find(presented).ok_or_else(|| {
        ApiError::new(ErrorKind::Authentication, "invalid API key").with_code("invalid_api_key")
    })
}
