//! Jobs' live events across replicas. Without a relay, a job's events reach only the
//! listeners of the process that runs it; with several replicas behind a load
//! balancer the browser watching a job is often connected to another one. An
//! [`EventRelay`] (Postgres `NOTIFY`/`LISTEN` on the shared database:
//! [`hearth_store::PgChannel`]) carries each event to every replica, which hands it
//! to its own listeners as if it had run the job.
//!
//! Each process sends its events in order through one publisher task, tagged with
//! its name so that it skips its own when they come back. A log line is cut to fit
//! the relay's message size (the whole log is in the store).

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::events::JobEvent;

/// Carries short messages to every replica.
#[async_trait]
pub trait EventRelay: Send + Sync + std::fmt::Debug + 'static {
    /// Sends one message to every replica's [`EventRelay::listen`] (this one's too).
    async fn publish(&self, payload: &str) -> Result<(), String>;
    /// Every message from now on; listening has begun when this returns.
    async fn listen(&self) -> Result<BoxStream<'static, String>, String>;
    /// The largest message it carries, in bytes.
    fn max_payload(&self) -> usize;
}

#[async_trait]
impl EventRelay for hearth_store::PgChannel {
    async fn publish(&self, payload: &str) -> Result<(), String> {
        hearth_store::PgChannel::publish(self, payload)
            .await
            .map_err(|e| e.to_string())
    }

    async fn listen(&self) -> Result<BoxStream<'static, String>, String> {
        hearth_store::PgChannel::listen(self)
            .await
            .map_err(|e| e.to_string())
    }

    fn max_payload(&self) -> usize {
        hearth_store::MAX_PAYLOAD
    }
}

/// What travels: the event and the process it came from.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    from: String,
    event: JobEvent,
}

/// Starts relaying: this process's events (sent on `events` by its workers) go out
/// through `relay`, in order; other processes' events come in and are sent on
/// `events` to this process's listeners. Returns once listening has begun, so no
/// event sent after it is missed. Ends when `stop` is cancelled.
pub(crate) async fn start(
    relay: Arc<dyn EventRelay>,
    me: String,
    events: broadcast::Sender<JobEvent>,
    outgoing: mpsc::UnboundedReceiver<JobEvent>,
    stop: CancellationToken,
) -> Result<(), String> {
    let mut incoming = relay.listen().await?;
    let (tx, from) = (events, me.clone());
    let until = stop.clone();
    tokio::spawn(async move {
        loop {
            let payload = tokio::select! {
                p = incoming.next() => match p { Some(p) => p, None => return },
                () = until.cancelled() => return,
            };
            match serde_json::from_str::<Envelope>(&payload) {
                Ok(e) if e.from != from => {
                    let _ = tx.send(e.event);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "a relayed job event this version does not read")
                }
            }
        }
    });
    tokio::spawn(publish(relay, me, outgoing, stop));
    Ok(())
}

async fn publish(
    relay: Arc<dyn EventRelay>,
    me: String,
    mut outgoing: mpsc::UnboundedReceiver<JobEvent>,
    stop: CancellationToken,
) {
    let max = relay.max_payload();
    loop {
        let event = tokio::select! {
            e = outgoing.recv() => match e { Some(e) => e, None => return },
            () = stop.cancelled() => return,
        };
        let Some(payload) = envelope(&me, event, max) else {
            continue;
        };
        if let Err(e) = relay.publish(&payload).await {
            tracing::warn!(error = %e, "a job event did not reach the other replicas");
        }
    }
}

/// The event as one message of at most `max` bytes: a log line is cut (on a
/// character boundary, marked with `…`) until it fits; `None` if even that fails.
fn envelope(me: &str, mut event: JobEvent, max: usize) -> Option<String> {
    loop {
        let payload = serde_json::to_string(&Envelope {
            from: me.to_owned(),
            event: event.clone(),
        })
        .ok()?;
        if payload.len() <= max {
            return Some(payload);
        }
        let JobEvent::Log { line, .. } = &mut event else {
            return None;
        };
        // JSON escaping makes a line up to six times longer than it is: cut it in
        // proportion to the overshoot (and by a few bytes more, for the `…`), so
        // this ends within a few rounds.
        let keep = (line.len() as u128 * max as u128 / payload.len() as u128) as usize;
        let mut cut = keep.saturating_sub(3).min(line.len().saturating_sub(1));
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        if cut == 0 {
            return None;
        }
        line.truncate(cut);
        line.push('…');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_log_line_is_cut_to_fit_and_other_events_pass_whole() {
        let long = JobEvent::Log {
            job_id: "j".into(),
            step: "run".into(),
            line: "é\"\n".repeat(5000),
        };
        let p = envelope("me", long, 7999).unwrap();
        assert!(p.len() <= 7999, "{}", p.len());
        let back: Envelope = serde_json::from_str(&p).unwrap();
        let JobEvent::Log { line, .. } = back.event else {
            panic!()
        };
        assert!(line.ends_with('…') && line.starts_with("é\"\n"), "{line}");
        let status = JobEvent::Status {
            job_id: "j".into(),
            status: "running".into(),
            step: Some("code".into()),
            error: None,
        };
        let p = envelope("me", status.clone(), 7999).unwrap();
        assert_eq!(serde_json::from_str::<Envelope>(&p).unwrap().event, status);
        assert!(envelope("me", status, 10).is_none());
    }
}
