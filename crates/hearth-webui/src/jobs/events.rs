//! `GET /api/jobs/{id}/events`: server-sent events of one job.
//!
//! The stream subscribes to the service's events *before* it reads the job, so no
//! change falls between the two. It opens with the job as it is (`{"type": "job",
//! ...}`: its steps and files), then relays the job's own events (`status`, `step`,
//! `log`, as `hearth_jobs::JobEvent` serialises them) and, once the job has ended,
//! the job as it ended (`{"type": "job", ...}` again), and closes. A listener that
//! fell behind gets the job as it is now instead of the events it missed. A comment
//! line every 15 s keeps idle connections open through proxies; the stream also ends
//! when the server begins to stop (the client reconnects, or polls `GET`).

use std::time::Duration;

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use hearth_gateway::Principal;
use hearth_jobs::{JobEvent, JobStatus, JobView, Jobs, Scope};
use serde_json::Value;
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{ApiResult, JobsApi, view_json};
use crate::conversations::scope;

/// How long a stream may stay silent before a keep-alive comment.
const KEEPALIVE: Duration = Duration::from_secs(15);

pub(crate) async fn events(
    State(api): State<JobsApi>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult {
    // Before the read: whatever happens after it is in `rx`.
    let rx = api.jobs.subscribe();
    let view = api.view(&scope(&principal), &id).await?;
    let mut first = BytesMut::new();
    put_snapshot(&mut first, &view);
    let ended = view.job.status().is_final();
    let owner = (!principal.admin).then(|| principal.id.to_string());
    let state = Stream {
        rx,
        jobs: api.jobs.clone(),
        owner,
        id,
        closing: api.closing.clone(),
        first: Some(first.freeze()),
        ended,
        ping_at: Instant::now() + KEEPALIVE,
    };
    let stream = futures::stream::unfold(state, |mut s| async move {
        let chunk = s.next().await?;
        Some((Ok::<_, std::convert::Infallible>(chunk), s))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    hearth_http::sse::headers(&mut resp);
    Ok(resp)
}

struct Stream {
    rx: Receiver<JobEvent>,
    jobs: Jobs,
    /// Whose jobs the caller sees (`None`: an admin, all).
    owner: Option<String>,
    id: String,
    closing: CancellationToken,
    /// The opening snapshot, until sent.
    first: Option<Bytes>,
    /// The job has ended: nothing follows what is being sent.
    ended: bool,
    ping_at: Instant,
}

impl Stream {
    /// The next piece of the stream; `None` at its end.
    async fn next(&mut self) -> Option<Bytes> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        if self.ended {
            return None;
        }
        loop {
            let received = tokio::select! {
                () = self.closing.cancelled() => return None,
                () = tokio::time::sleep_until(self.ping_at) => {
                    self.ping_at = Instant::now() + KEEPALIVE;
                    return Some(Bytes::from_static(b": keep-alive\n\n"));
                }
                r = self.rx.recv() => r,
            };
            self.ping_at = Instant::now() + KEEPALIVE;
            let mut out = BytesMut::new();
            match received {
                Ok(event) if event.job_id() == self.id => {
                    let payload = serde_json::to_vec(&event).unwrap_or_default();
                    hearth_http::sse::put_data(&mut out, &payload);
                    if let JobEvent::Status { status, .. } = &event
                        && JobStatus::parse(status).is_some_and(JobStatus::is_final)
                    {
                        // The job as it ended: its last steps and its files.
                        self.snapshot(&mut out).await;
                        self.ended = true;
                    }
                    return Some(out.freeze());
                }
                Ok(_) => {}
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(job = %self.id, missed, "a job's event stream fell behind");
                    let view = self.snapshot(&mut out).await;
                    self.ended = view.is_none_or(|v| v.job.status().is_final());
                    return Some(out.freeze());
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// Appends the job as it is now; `None` when it is gone (deleted) or unreadable.
    async fn snapshot(&self, out: &mut BytesMut) -> Option<JobView> {
        let scope = match &self.owner {
            Some(o) => Scope::Owner(o),
            None => Scope::All,
        };
        match self.jobs.job(&scope, &self.id).await {
            Ok(Some(view)) => {
                put_snapshot(out, &view);
                Some(view)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(job = %self.id, error = %e, "cannot read a job for its event stream");
                None
            }
        }
    }
}

/// `data: {"type": "job", ...the view}`.
fn put_snapshot(out: &mut BytesMut, view: &JobView) {
    let mut v = view_json(view);
    if let Value::Object(m) = &mut v {
        m.insert("type".into(), Value::String("job".into()));
    }
    let payload = serde_json::to_vec(&v).unwrap_or_default();
    hearth_http::sse::put_data(out, &payload);
}
