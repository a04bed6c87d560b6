//! Caps on open client connections (`server.max_connections`, overall across the
//! event loops, and `server.max_connections_per_address`), so that one client, or
//! a flood of them, cannot take every file descriptor and task Hearth has.
//!
//! A connection past a cap is answered at once with a 503 (`Retry-After: 1`) and
//! closed, without reading its request: a client sees why, and a load balancer
//! tries another replica. Over TLS it is closed unanswered (a handshake is the
//! very cost being refused).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The open connections, shared by every event loop.
#[derive(Debug)]
pub struct Connections {
    max_total: usize,
    max_per_address: usize,
    open: AtomicUsize,
    /// Open connections per non-loopback address (only when that cap is on).
    by_address: Mutex<HashMap<IpAddr, usize>>,
}

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Total,
    PerAddress,
}

impl Refused {
    fn as_str(self) -> &'static str {
        match self {
            Refused::Total => "max_connections",
            Refused::PerAddress => "max_connections_per_address",
        }
    }
}

/// One admitted connection; it counts as open until dropped.
#[derive(Debug)]
pub struct Slot {
    connections: Arc<Connections>,
    address: Option<IpAddr>,
}

impl Connections {
    /// Caps of 0 mean none.
    pub fn new(max_total: usize, max_per_address: usize) -> Arc<Self> {
        Arc::new(Connections {
            max_total: if max_total == 0 {
                usize::MAX
            } else {
                max_total
            },
            max_per_address,
            open: AtomicUsize::new(0),
            by_address: Mutex::new(HashMap::new()),
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Admits a connection from `peer`, or says which cap refuses it.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, Refused> {
        let before = self.open.fetch_add(1, Ordering::AcqRel);
        if before >= self.max_total {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::Total);
        }
        let counted = self.max_per_address > 0 && !peer.to_canonical().is_loopback();
        if counted {
            let mut by = self
                .by_address
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let n = by.entry(peer).or_insert(0);
            if *n >= self.max_per_address {
                drop(by);
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err(Refused::PerAddress);
            }
            *n += 1;
        }
        ::metrics::gauge!("hearth_connections_open").set((before + 1) as f64);
        Ok(Slot {
            connections: self.clone(),
            address: counted.then_some(peer),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let c = &self.connections;
        if let Some(peer) = self.address {
            let mut by = c.by_address.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(n) = by.get_mut(&peer) {
                *n -= 1;
                if *n == 0 {
                    by.remove(&peer);
                }
            }
        }
        let now = c.open.fetch_sub(1, Ordering::AcqRel) - 1;
        ::metrics::gauge!("hearth_connections_open").set(now as f64);
    }
}

/// How long a refused connection is kept to read what its client sent (so closing
/// does not reset the answer away before the client reads it).
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// Answers a refused plain-HTTP connection with a 503 and closes it; a TLS one is
/// closed unanswered. Counted in `hearth_connections_refused_total`.
pub(crate) fn refuse(stream: TcpStream, why: Refused, tls: bool) {
    ::metrics::counter!("hearth_connections_refused_total", "cap" => why.as_str()).increment(1);
    tracing::debug!(cap = why.as_str(), "connection refused: too many open");
    if tls {
        return;
    }
    tokio::spawn(async move {
        let mut stream = stream;
        let body = format!(
            "{{\"error\":{{\"message\":\"too many open connections (server.{}); try again shortly\",\"type\":\"service_unavailable_error\",\"param\":null,\"code\":\"too_many_connections\"}}}}",
            why.as_str()
        );
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
        let _ = stream.shutdown().await;
        // Read (and drop) what the client sent until it closes, briefly.
        let _ = tokio::time::timeout(REFUSAL_LINGER, async {
            let mut sink = [0u8; 4096];
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_count_overall_and_per_address_and_free_on_drop() {
        let c = Connections::new(3, 2);
        let far: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        let a = c.admit(far).unwrap();
        let b = c.admit(far).unwrap();
        assert_eq!(c.admit(far).unwrap_err(), Refused::PerAddress);
        let d = c.admit(other).unwrap();
        assert_eq!(c.admit(other).unwrap_err(), Refused::Total);
        assert_eq!(c.open(), 3);
        drop(a);
        assert_eq!(c.open(), 2);
        let _e = c.admit(far).unwrap();
        drop((b, d));
        assert_eq!(c.open(), 1);
        // Loopback peers (also as IPv4-mapped IPv6) count toward the total only.
        let c = Connections::new(0, 1);
        let held: Vec<Slot> = ["127.0.0.1", "127.0.0.1", "::1", "::ffff:127.0.0.1"]
            .iter()
            .map(|a| c.admit(a.parse().unwrap()).unwrap())
            .collect();
        assert_eq!(c.open(), 4);
        assert!(c.by_address.lock().unwrap().is_empty());
        drop(held);
        assert_eq!(c.open(), 0);
    }
}
