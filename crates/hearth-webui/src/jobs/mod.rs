//! `/api/jobs`: agent jobs (an image in; analysed, coded, criticised and safely run
//! Python out), over [`hearth_jobs::Jobs`].
//!
//! Jobs are owned by the key that submitted them and seen only by it (an admin key
//! sees all; another owner's job is "not found"). Every error has the OpenAI shape.
//! The upload is checked by its bytes in `hearth-jobs`; this module maps the
//! refusals to 413, 415 and 400.
//!
//! | route | what |
//! | --- | --- |
//! | `POST /api/jobs` | multipart: `image`, optional `prompt` → 201 with the job |
//! | `GET /api/jobs?limit=&cursor=` | newest first, paged |
//! | `GET /api/jobs/{id}` | the job, its steps and its files (each with its `url`) |
//! | `POST /api/jobs/{id}/cancel` | stops it at any step |
//! | `POST /api/jobs/{id}/retry` | a failed or cancelled job, from the step that failed |
//! | `PUT /api/jobs/{id}/code` | `{"code": ...}`: the user's script, then critic and run |
//! | `DELETE /api/jobs/{id}` | an ended or queued job (cancel a running one first) |
//! | `GET /api/jobs/{id}/events` | server-sent events: step changes and log lines |
//! | `GET /api/jobs/{id}/files/{name}` | the input image or an artifact |
//!
//! The jobs' API sits at `/api/jobs` rather than under the chat UI's `/api/hearth`:
//! it is the API the CLI and scripts call too (and Ollama's API has no `jobs`).
//!
//! # Layout
//! - `submit`: the multipart upload, with its own body limit.
//! - `events`: the event stream.
//! - `files`: downloads, with the headers that keep an artifact out of our origin.

mod events;
mod files;
mod submit;

use std::collections::HashMap;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use hearth_api::{ApiError, ErrorKind};
use hearth_config::Config;
use hearth_gateway::Principal;
use hearth_http::HttpError;
use hearth_jobs::{Job, JobListQuery, JobStatus, JobView, Jobs, JobsError, Scope};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::conversations::{check_id, only, page_query, scope};

/// Where the jobs' API lives.
pub const JOBS_ROOT: &str = "/api/jobs";

/// What the jobs' API accepts.
#[derive(Debug, Clone, Copy)]
pub struct JobsApiLimits {
    /// The largest image (`[jobs] max_upload_bytes`); the upload's body may be this
    /// plus the instruction and the multipart framing, above `limits.max_body_bytes`.
    pub max_upload_bytes: u64,
    /// The longest instruction, and the largest edited script
    /// (`limits.max_message_bytes`).
    pub max_text_bytes: usize,
}

impl From<&Config> for JobsApiLimits {
    fn from(c: &Config) -> Self {
        JobsApiLimits {
            max_upload_bytes: c.jobs.max_upload_bytes,
            max_text_bytes: c.limits.max_message_bytes,
        }
    }
}

impl JobsApiLimits {
    /// The most a `POST /api/jobs` body may be: the image, the instruction, and room
    /// for the multipart framing.
    pub fn upload_body_limit(&self) -> usize {
        usize::try_from(self.max_upload_bytes)
            .unwrap_or(usize::MAX)
            .saturating_add(self.max_text_bytes)
            .saturating_add(64 * 1024)
    }
}

#[derive(Clone)]
pub(crate) struct JobsApi {
    jobs: Jobs,
    limits: JobsApiLimits,
    /// Cancelled when the server begins to stop: event streams end.
    closing: CancellationToken,
}

type ApiResult<T = Response> = Result<T, HttpError>;

/// The jobs' routes, state applied, to merge behind the server's key check
/// (handlers read the caller's `Principal`). `closing` ends the event streams
/// when the server begins to stop.
pub fn routes(jobs: Jobs, limits: JobsApiLimits, closing: CancellationToken) -> Router {
    let api = JobsApi {
        jobs,
        limits,
        closing,
    };
    let at = |path: &str| format!("{JOBS_ROOT}{path}");
    // The upload's own body limit, larger than the rest of the API's.
    let upload = post(submit::submit).layer(DefaultBodyLimit::max(limits.upload_body_limit()));
    Router::new()
        .route(JOBS_ROOT, get(list).merge(upload))
        .route(&at("/{id}"), get(show).delete(remove))
        .route(&at("/{id}/cancel"), post(cancel))
        .route(&at("/{id}/retry"), post(retry))
        .route(&at("/{id}/code"), axum::routing::put(edit_code))
        .route(&at("/{id}/events"), get(events::events))
        .route(&at("/{id}/files/{*name}"), get(files::file))
        .with_state(api)
        .method_not_allowed_fallback(crate::assets::method_not_allowed)
        .layer(axum::middleware::map_response(
            crate::assets::security_headers,
        ))
}

// ---- helpers shared by the handlers -----------------------------------------

/// Logs a failure of the service once and answers 500 without its detail; a
/// conflict (retrying a running job...) is a 409 that says why; a store error is
/// answered as the conversations' are (a bad cursor is a 400).
pub(crate) fn jobs_error(e: JobsError) -> HttpError {
    match e {
        JobsError::Conflict(why) => {
            HttpError(ApiError::new(ErrorKind::Conflict, why).with_code("job_conflict"))
        }
        JobsError::Store(e) => crate::conversations::store_error(e),
        e => {
            tracing::error!(error = %e, "jobs service failed");
            HttpError(ApiError::internal())
        }
    }
}

pub(crate) fn not_found(id: &str) -> HttpError {
    HttpError(
        ApiError::new(ErrorKind::NotFound, format!("no job `{id}`"))
            .with_param("id")
            .with_code("job_not_found"),
    )
}

/// The URL of a job's file (`name` may hold folders: an artifact's path).
pub(crate) fn file_url(job_id: &str, name: &str) -> String {
    let name: Vec<String> = name.split('/').map(percent_encode).collect();
    format!("{JOBS_ROOT}/{job_id}/files/{}", name.join("/"))
}

/// Percent-encodes all but unreserved characters (RFC 3986).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A job as the API shows it.
pub(crate) fn job_json(job: &Job) -> Value {
    let mut v = serde_json::to_value(job).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("object".into(), json!("job"));
    }
    v
}

/// A job with its steps and its files, each file with the URL it is served at.
pub(crate) fn view_json(view: &JobView) -> Value {
    let mut v = serde_json::to_value(view).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("object".into(), json!("job"));
        if let Some(Value::Array(files)) = m.get_mut("files") {
            for (f, file) in files.iter_mut().zip(&view.files) {
                if let Value::Object(f) = f {
                    f.insert("url".into(), json!(file_url(&view.job.id, &file.name)));
                }
            }
        }
    }
    v
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    (status, Json(v)).into_response()
}

impl JobsApi {
    /// Admits a request that starts model work (a job submitted, retried or given
    /// new code) against the caller's requests per minute: 429 past it.
    async fn admit(&self, principal: &Principal) -> ApiResult<()> {
        self.jobs
            .gateway()
            .admit(principal)
            .await
            .map(drop)
            .map_err(HttpError)
    }

    /// A job the caller may see, with its steps and files.
    async fn view(&self, scope: &Scope<'_>, id: &str) -> ApiResult<JobView> {
        check_id(id, "id")?;
        self.jobs
            .job(scope, id)
            .await
            .map_err(jobs_error)?
            .ok_or_else(|| not_found(id))
    }
}

// ---- handlers -----------------------------------------------------------------

async fn list(
    State(api): State<JobsApi>,
    Extension(principal): Extension<Principal>,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let (q, limit) = page_query(query)?;
    let page = api
        .jobs
        .list(
            &scope(&principal),
            &JobListQuery {
                limit,
                cursor: q.get("cursor").cloned(),
            },
        )
        .await
        .map_err(jobs_error)?;
    let data: Vec<Value> = page.data.iter().map(job_json).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"object": "list", "data": data, "next_cursor": page.next_cursor}),
    ))
}

async fn show(
    State(api): State<JobsApi>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult {
    let view = api.view(&scope(&principal), &id).await?;
    Ok(json_response(StatusCode::OK, &view_json(&view)))
}

async fn cancel(
    State(api): State<JobsApi>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult {
    check_id(&id, "id")?;
    let job = api
        .jobs
        .cancel(&scope(&principal), &id)
        .await
        .map_err(jobs_error)?
        .ok_or_else(|| not_found(&id))?;
    Ok(json_response(StatusCode::OK, &job_json(&job)))
}

async fn retry(
    State(api): State<JobsApi>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult {
    check_id(&id, "id")?;
    api.admit(&principal).await?;
    let job = api
        .jobs
        .retry(&scope(&principal), &id)
        .await
        .map_err(jobs_error)?
        .ok_or_else(|| not_found(&id))?;
    Ok(json_response(StatusCode::OK, &job_json(&job)))
}

async fn edit_code(
    State(api): State<JobsApi>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    check_id(&id, "id")?;
    api.admit(&principal).await?;
    let max = api.limits.max_text_bytes;
    let body = hearth_http::body::json(&headers, body, max.saturating_add(64 * 1024)).await?;
    let Value::Object(map) = body else {
        return Err(HttpError(ApiError::invalid_param(
            "",
            "the request body must be a JSON object: {\"code\": \"...\"}",
        )));
    };
    only(&map, &["code"])?;
    let Some(Value::String(code)) = map.get("code") else {
        return Err(HttpError(ApiError::invalid_param(
            "code",
            "`code` must be the script, as a string",
        )));
    };
    if code.len() > max {
        return Err(HttpError(
            ApiError::new(
                ErrorKind::PayloadTooLarge,
                format!(
                    "`code` is {} bytes; the limit is {max} (limits.max_message_bytes)",
                    code.len()
                ),
            )
            .with_param("code")
            .with_code("code_too_large"),
        ));
    }
    if code.trim().is_empty() {
        return Err(HttpError(ApiError::invalid_param(
            "code",
            "`code` is empty; send the script to run",
        )));
    }
    let job = api
        .jobs
        .edit_code(&scope(&principal), &id, code)
        .await
        .map_err(jobs_error)?
        .ok_or_else(|| not_found(&id))?;
    Ok(json_response(StatusCode::OK, &job_json(&job)))
}

async fn remove(
    State(api): State<JobsApi>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult {
    let scope = scope(&principal);
    let view = api.view(&scope, &id).await?;
    if view.job.status() == JobStatus::Running {
        return Err(HttpError(
            ApiError::new(
                ErrorKind::Conflict,
                "the job is running; cancel it (POST /api/jobs/{id}/cancel), then delete it",
            )
            .with_code("job_conflict"),
        ));
    }
    if !api.jobs.delete(&scope, &id).await.map_err(jobs_error)? {
        // It started running, or went, between the two calls.
        return Err(HttpError(
            ApiError::new(
                ErrorKind::Conflict,
                "the job cannot be deleted now (it started running); cancel it first",
            )
            .with_code("job_conflict"),
        ));
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"id": id, "object": "job.deleted", "deleted": true}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_urls_encode_each_segment() {
        assert_eq!(
            file_url("j", "plots/a b&c.png"),
            "/api/jobs/j/files/plots/a%20b%26c.png"
        );
        assert_eq!(file_url("j", "input.png"), "/api/jobs/j/files/input.png");
    }

    #[test]
    fn the_upload_limit_leaves_room_for_the_prompt_and_framing() {
        let l = JobsApiLimits {
            max_upload_bytes: 1000,
            max_text_bytes: 100,
        };
        assert_eq!(l.upload_body_limit(), 1000 + 100 + 64 * 1024);
    }
}
