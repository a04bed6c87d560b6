//! Closing a connection gently: the lingering close of nginx and Apache.
//!
//! When the server answers before it has read the whole request (a body over its
//! limit, an endless upload), closing the socket with unread bytes in its receive
//! buffer makes the kernel send a reset, and the reset makes the client's kernel
//! throw away the answer it has not read yet: the client sees "connection reset"
//! instead of the 413 that says what was wrong. So a connection that hyper is done
//! with is half-closed first (our FIN after the answer), and what the client
//! still sends is read and dropped until it closes its side or [`LINGER`] passes.
//!
//! [`Returned`] wraps the socket that hyper owns and hands it back when hyper
//! drops it; it costs nothing per read or write.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The longest a closed connection is read and dropped (nginx: `lingering_time`).
pub const LINGER: Duration = Duration::from_secs(2);

/// Where a [`Returned`] socket goes back to.
pub struct Back<I>(Arc<Mutex<Option<I>>>);

impl<I> Back<I> {
    /// Wraps `io`; the socket comes back through [`Back::take`] once the wrapper is
    /// dropped.
    pub fn wrap(io: I) -> (Returned<I>, Back<I>) {
        let slot = Arc::new(Mutex::new(None));
        (
            Returned {
                io: Some(io),
                back: slot.clone(),
            },
            Back(slot),
        )
    }

    /// The socket, once its wrapper has been dropped.
    pub fn take(&self) -> Option<I> {
        self.0.lock().ok()?.take()
    }
}

/// A socket that goes back to its [`Back`] when dropped.
pub struct Returned<I> {
    io: Option<I>,
    back: Arc<Mutex<Option<I>>>,
}

impl<I> Returned<I> {
    /// The socket; it is only taken at the drop, so this never fails in use.
    fn io(&mut self) -> io::Result<Pin<&mut I>>
    where
        I: Unpin,
    {
        self.io
            .as_mut()
            .map(Pin::new)
            .ok_or_else(|| io::ErrorKind::NotConnected.into())
    }
}

impl<I> Drop for Returned<I> {
    fn drop(&mut self) {
        if let (Some(io), Ok(mut back)) = (self.io.take(), self.back.lock()) {
            *back = Some(io);
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Returned<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut().io() {
            Ok(io) => io.poll_read(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Returned<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().io() {
            Ok(io) => io.poll_write(cx, buf),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut().io() {
            Ok(io) => io.poll_write_vectored(cx, bufs),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.as_ref().is_some_and(AsyncWrite::is_write_vectored)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().io() {
            Ok(io) => io.poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut().io() {
            Ok(io) => io.poll_shutdown(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

/// Half-closes `io` and reads what the client still sends until it closes its
/// side or [`LINGER`] passes; then the socket is dropped (closed).
pub async fn linger<I: AsyncRead + AsyncWrite + Unpin>(mut io: I) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tokio::time::timeout(LINGER, async {
        if io.shutdown().await.is_err() {
            return;
        }
        // On the heap: a connection's task does not carry it while it serves.
        let mut sink = vec![0u8; 16 * 1024];
        while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_dropped_wrapper_gives_its_socket_back_and_linger_drains_it() {
        let (near, mut far) = tokio::io::duplex(64);
        let (wrapped, back) = Back::wrap(near);
        assert!(back.take().is_none(), "not back while the wrapper lives");
        drop(wrapped);
        let near = back.take().expect("back after the drop");
        let drained = tokio::spawn(linger(near));
        // The client still sends after the server is done, then reads the EOF.
        far.write_all(&[b'x'; 1000]).await.unwrap();
        let mut rest = Vec::new();
        far.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
        drop(far);
        tokio::time::timeout(Duration::from_secs(1), drained)
            .await
            .expect("linger ends when the client closes")
            .unwrap();
    }
}
