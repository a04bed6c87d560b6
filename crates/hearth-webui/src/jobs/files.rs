//! `GET /api/jobs/{id}/files/{name}`: a job's input image or an artifact its script
//! wrote.
//!
//! The script is untrusted, and so is what it wrote: every file is served with
//! `X-Content-Type-Options: nosniff` and a `Content-Security-Policy` sandbox; only
//! raster images (PNG, JPEG, GIF, WebP) are shown inline; anything else, SVG and
//! HTML included (they can carry script), is an attachment with a file name made
//! safe, so it is never rendered in our origin.

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::Response;
use hearth_api::{ApiError, ErrorKind};
use hearth_gateway::Principal;
use hearth_http::HttpError;

use super::{ApiResult, JobsApi, jobs_error};
use crate::conversations::{check_id, scope};

pub(crate) async fn file(
    State(api): State<JobsApi>,
    Extension(principal): Extension<Principal>,
    Path((id, name)): Path<(String, String)>,
) -> ApiResult {
    check_id(&id, "id")?;
    let not_found = || {
        let shown: String = name.chars().take(200).collect();
        HttpError(
            ApiError::new(
                ErrorKind::NotFound,
                format!("job `{id}` has no file `{shown}`"),
            )
            .with_param("name")
            .with_code("file_not_found"),
        )
    };
    // Streamed from the object store (a folder or an S3 bucket) as it is read:
    // a large artifact is never held whole.
    let (record, object) = match api.jobs.file(&scope(&principal), &id, &name).await {
        Ok(Some(found)) => found,
        Ok(None) => return Err(not_found()),
        Err(hearth_jobs::JobsError::Objects(e)) if e.is_not_found() => {
            tracing::error!(job = %id, file = %name, "a job's file is recorded but its bytes are gone");
            return Err(not_found());
        }
        Err(e) => return Err(jobs_error(e)),
    };
    let len = object.size;
    let mut resp = Response::new(Body::from_stream(object.stream));
    let h = resp.headers_mut();
    for (k, v) in headers(&record.content_type, &name) {
        h.insert(k, v);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    Ok(resp)
}

/// The headers a file of `content_type` named `name` is served with.
fn headers(content_type: &str, name: &str) -> Vec<(HeaderName, HeaderValue)> {
    let inline = hearth_jobs::shown_inline(content_type);
    let ctype = if content_type.starts_with("text/") {
        format!("{content_type}; charset=utf-8")
    } else {
        content_type.to_owned()
    };
    let disposition = format!(
        "{}; filename=\"{}\"",
        if inline { "inline" } else { "attachment" },
        safe_name(name)
    );
    let mut out = vec![
        (
            header::CONTENT_TYPE,
            HeaderValue::from_str(&ctype)
                .unwrap_or(HeaderValue::from_static("application/octet-stream")),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::CONTENT_DISPOSITION,
            HeaderValue::from_str(&disposition).unwrap_or(HeaderValue::from_static("attachment")),
        ),
        // A retried job may write a file of the same name anew.
        (
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-cache"),
        ),
    ];
    // Opened in a tab anyway, a file runs no script and reaches nothing of ours.
    out.push((
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(if inline {
            "sandbox"
        } else {
            "default-src 'none'; sandbox"
        }),
    ));
    out
}

/// The last part of `name`, with letters, digits, `.`, `-` and `_` only (no quotes,
/// no path, no leading dot): safe in a `Content-Disposition` on any browser.
fn safe_name(name: &str) -> String {
    let base = name.rsplit('/').next().unwrap_or(name);
    let s: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(120)
        .collect();
    let s = s.trim_start_matches('.');
    if s.is_empty() {
        "file".to_owned()
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(h: &'a [(HeaderName, HeaderValue)], k: &HeaderName) -> &'a str {
        h.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.to_str().unwrap())
            .unwrap()
    }

    #[test]
    fn only_raster_images_are_inline() {
        let png = headers("image/png", "charts/chart.png");
        assert_eq!(
            get(&png, &header::CONTENT_DISPOSITION),
            "inline; filename=\"chart.png\""
        );
        assert_eq!(get(&png, &header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        let svg = headers("image/svg+xml", "plot.svg");
        assert_eq!(
            get(&svg, &header::CONTENT_DISPOSITION),
            "attachment; filename=\"plot.svg\""
        );
        assert_eq!(
            get(&svg, &header::CONTENT_SECURITY_POLICY),
            "default-src 'none'; sandbox"
        );
        let html = headers("text/html", "x.html");
        assert!(get(&html, &header::CONTENT_DISPOSITION).starts_with("attachment"));
        assert_eq!(
            get(&html, &header::CONTENT_TYPE),
            "text/html; charset=utf-8"
        );
    }

    #[test]
    fn file_names_are_made_safe() {
        assert_eq!(safe_name("a/b/../c\"; x=.png"), "c___x_.png");
        assert_eq!(safe_name(".htaccess"), "htaccess");
        assert_eq!(safe_name("日本.csv"), "__.csv");
        assert_eq!(safe_name("///"), "file");
    }
}
