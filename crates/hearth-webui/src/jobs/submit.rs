//! `POST /api/jobs`: a multipart upload (`image`, optional `prompt`) becomes a queued
//! job.
//!
//! The body may be as large as `[jobs] max_upload_bytes` plus the instruction (its own
//! limit, set on this route; the rest of the API keeps `limits.max_body_bytes`). The
//! client's file name and `Content-Type` are ignored: `hearth-jobs` tells what the
//! upload is from its bytes.

use axum::Extension;
use axum::extract::multipart::MultipartError;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use bytes::Bytes;
use hearth_api::{ApiError, ErrorKind};
use hearth_gateway::Principal;
use hearth_http::HttpError;
use hearth_jobs::{SubmitError, UploadError};

use super::{ApiResult, JobsApi, job_json, jobs_error};

const FIELDS: &str = "`image` (the picture) and optionally `prompt` (the instruction)";

pub(crate) async fn submit(
    State(api): State<JobsApi>,
    Extension(principal): Extension<Principal>,
    req: Request,
) -> ApiResult {
    // Before the body is read: a caller past its limit does not upload 20 MB first.
    api.admit(&principal).await?;
    let limit = api.limits.upload_body_limit();
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(&api, declared));
    }
    let is_multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("multipart/form-data"));
    if !is_multipart {
        return Err(HttpError(
            ApiError::new(
                ErrorKind::UnsupportedMediaType,
                format!("send the job as multipart/form-data with {FIELDS}"),
            )
            .with_code("multipart_required"),
        ));
    }
    let mut form = Multipart::from_request(req, &())
        .await
        .map_err(|e| malformed(&e.body_text()))?;
    let mut image: Option<Bytes> = None;
    let mut prompt = String::new();
    while let Some(field) = form.next_field().await.map_err(|e| multipart(&api, e))? {
        match field.name() {
            Some("image") => {
                if image.is_some() {
                    return Err(HttpError(ApiError::invalid_param(
                        "image",
                        "send one `image` per job",
                    )));
                }
                image = Some(field.bytes().await.map_err(|e| multipart(&api, e))?);
            }
            Some("prompt") => {
                prompt = field.text().await.map_err(|e| multipart(&api, e))?;
                let max = api.limits.max_text_bytes;
                if prompt.len() > max {
                    return Err(HttpError(
                        ApiError::new(
                            ErrorKind::PayloadTooLarge,
                            format!(
                                "`prompt` is {} bytes; the limit is {max} (limits.max_message_bytes)",
                                prompt.len()
                            ),
                        )
                        .with_param("prompt")
                        .with_code("message_too_large"),
                    ));
                }
            }
            Some(other) => {
                let shown: String = other.chars().take(64).collect();
                return Err(HttpError(ApiError::invalid_param(
                    shown.clone(),
                    format!("unknown field `{shown}`; a job takes {FIELDS}"),
                )));
            }
            None => return Err(malformed("a part has no name")),
        }
    }
    let Some(image) = image else {
        return Err(HttpError(
            ApiError::invalid_param("image", format!("no `image` part; a job takes {FIELDS}"))
                .with_code("missing_image"),
        ));
    };
    let job = api
        .jobs
        .submit(&principal.id, &image, prompt.trim())
        .await
        .map_err(|e| match e {
            SubmitError::Upload(e) => upload_error(&e),
            SubmitError::Jobs(e) => jobs_error(e),
        })?;
    let mut resp = (StatusCode::CREATED, axum::Json(job_json(&job))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("{}/{}", super::JOBS_ROOT, job.id)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// A refused upload: 413, 415 or 400, saying what it is and what is accepted.
fn upload_error(e: &UploadError) -> HttpError {
    let code = match e {
        UploadError::TooLarge { .. } => "upload_too_large",
        UploadError::Unsupported { .. } => "unsupported_image_type",
        UploadError::TooManyPixels { .. } => "image_too_large",
        UploadError::Empty | UploadError::Malformed { .. } => "invalid_image",
    };
    let kind = match e.status() {
        413 => ErrorKind::PayloadTooLarge,
        415 => ErrorKind::UnsupportedMediaType,
        _ => ErrorKind::InvalidRequest,
    };
    HttpError(
        ApiError::new(kind, e.to_string())
            .with_param("image")
            .with_code(code),
    )
}

fn too_large(api: &JobsApi, declared: Option<u64>) -> HttpError {
    let max = api.limits.max_upload_bytes;
    let size = declared.map_or_else(String::new, |n| format!(" ({n} bytes)"));
    HttpError(
        ApiError::new(
            ErrorKind::PayloadTooLarge,
            format!(
                "the upload{size} is larger than the most accepted, {max} bytes ([jobs] max_upload_bytes)"
            ),
        )
        .with_param("image")
        .with_code("upload_too_large"),
    )
}

fn malformed(why: &str) -> HttpError {
    HttpError(
        ApiError::new(
            ErrorKind::InvalidRequest,
            format!("the multipart body cannot be read: {why}; a job takes {FIELDS}"),
        )
        .with_code("invalid_multipart"),
    )
}

/// A multipart failure: past the body limit (413), not in time (408), or a
/// malformed body (400).
fn multipart(api: &JobsApi, e: MultipartError) -> HttpError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large(api, None)
    } else if hearth_http::deadline::is_too_slow(&e) {
        HttpError(hearth_http::body::read_error(&e))
    } else {
        malformed(&e.body_text())
    }
}
