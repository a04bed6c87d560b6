//! What the supervisor of one engine publishes (a [`Snapshot`] in a watch channel)
//! and what the backend tells the supervisor ([`Command`]), with the activity the
//! idle stop reads.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Instant, SystemTime};

use hearth_api::{EngineInfo, ModelStatus};

/// The engine's state as the router and `/v1/models` see it.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub state: ModelStatus,
    pub pid: Option<u32>,
    pub port: Option<u16>,
    /// Starts so far; a request remembers the one it was sent to, so that a failure
    /// can tell whether that process has gone since.
    pub attempt: u32,
    pub restarts: u32,
    pub reason: Option<String>,
    /// When the next start comes, while restarting.
    pub retry_at: Option<Instant>,
    pub stderr_tail: Vec<String>,
    pub since: SystemTime,
}

impl Snapshot {
    pub fn new(state: ModelStatus) -> Self {
        Snapshot {
            state,
            pid: None,
            port: None,
            attempt: 0,
            restarts: 0,
            reason: None,
            retry_at: None,
            stderr_tail: Vec::new(),
            since: SystemTime::now(),
        }
    }

    pub fn info(&self, log: &str, start: &str) -> EngineInfo {
        EngineInfo {
            state: self.state,
            pid: self.pid,
            port: self.port,
            attempt: self.attempt,
            restarts: self.restarts,
            reason: self.reason.clone(),
            retry_in_secs: self
                .retry_at
                .map(|t| t.saturating_duration_since(Instant::now()).as_secs()),
            stderr_tail: self.stderr_tail.clone(),
            log: log.to_owned(),
            start: start.to_owned(),
            since: self
                .since
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }
}

/// What the backend asks of the supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// A request wants it: start it if it is stopped.
    Start,
}

/// Requests in flight and the time of the last one, for `idle_stop`.
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicUsize,
    last: Mutex<Instant>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            in_flight: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
        }
    }
}

impl Activity {
    pub fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.touch();
    }

    pub fn end(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.touch();
    }

    pub fn touch(&self) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    /// How long it has been idle: `None` while a request is in flight.
    pub fn idle_for(&self) -> Option<std::time::Duration> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        Some(
            self.last
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .elapsed(),
        )
    }
}
