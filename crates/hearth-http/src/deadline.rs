//! A deadline on a request's body (`server.body_timeout_secs`): the head has its
//! own (hyper's header timeout); this bounds what comes after it, so a client that
//! sends a body one byte a minute cannot hold a handler, and its buffer, for ever.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// A request body that fails with [`TooSlow`] if it has not all arrived within
/// its limit. The clock starts when the handler first waits for bytes that are not
/// there yet: a body that came with its head (most do) never arms a timer.
pub struct Deadline {
    inner: Incoming,
    limit: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Deadline {
    pub fn new(inner: Incoming, limit: Duration) -> Self {
        Deadline {
            inner,
            limit,
            timer: None,
        }
    }
}

/// Why a body under a [`Deadline`] could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("{0}")]
    Body(#[from] hyper::Error),
    // Not `transparent`: the `TooSlow` itself must be in the source chain, where
    // `is_too_slow` looks for it.
    #[error("{0}")]
    TooSlow(#[from] TooSlow),
}

/// The body did not arrive in time.
#[derive(Debug, thiserror::Error)]
#[error(
    "the request body did not arrive within {} s (server.body_timeout_secs)",
    .0.as_secs()
)]
pub struct TooSlow(pub Duration);

impl Body for Deadline {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(BodyError::Body)));
        }
        let limit = this.limit;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if timer.as_mut().poll(cx).is_ready() {
            ::metrics::counter!("hearth_request_bodies_timed_out_total").increment(1);
            return Poll::Ready(Some(Err(BodyError::TooSlow(TooSlow(limit)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether `e` (or an error it wraps) is a body that did not arrive in time.
pub fn is_too_slow(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<TooSlow>() {
            return true;
        }
        cur = err.source();
    }
    false
}
