//! The CLI as a client of a running Hearth (`hearth chat`, `hearth jobs submit`):
//! where the server is, the key it is sent, errors in words, and event streams.

use std::time::Duration;

use hearth_config::env::{API_KEY, SERVER_URL};
use serde_json::Value;

/// Where `hearth serve` listens by default.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// The server a client command talks to, and its key (`--server`, `--api-key`).
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// The Hearth to talk to.
    #[arg(long, env = SERVER_URL, default_value = DEFAULT_SERVER, value_name = "URL")]
    pub server: String,
    /// API key, when the server asks for one (sent as `Authorization: Bearer`).
    #[arg(long, env = API_KEY, value_name = "KEY", hide_env_values = true)]
    pub api_key: Option<String>,
}

/// A client of one server.
pub struct Client {
    http: reqwest::Client,
    /// The server's URL, without a trailing `/`.
    pub base: String,
    key: Option<String>,
}

impl Client {
    pub fn new(args: &ServerArgs) -> Result<Client, String> {
        Ok(Client {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| format!("cannot start an HTTP client: {e}"))?,
            base: args.server.trim_end_matches('/').to_owned(),
            key: args.api_key.clone().filter(|k| !k.is_empty()),
        })
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match &self.key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }

    /// Sends `r`: the response when it succeeded, else what went wrong in words.
    pub async fn send(&self, r: reqwest::RequestBuilder) -> Result<reqwest::Response, String> {
        self.try_send(r).await.map_err(|f| f.message)
    }

    /// Sends `r` and reads its JSON answer; what went wrong, in words.
    pub async fn send_json(&self, r: reqwest::RequestBuilder) -> Result<Value, String> {
        self.send(r)
            .await?
            .json()
            .await
            .map_err(|e| format!("the server's answer cannot be read: {}", root_cause(&e)))
    }

    /// `GET path`, read as JSON.
    pub async fn get_json(&self, path: &str) -> Result<Value, String> {
        self.send_json(self.request(reqwest::Method::GET, path))
            .await
    }

    /// Sends the request `make` builds, again while the server says to come back
    /// later (429 or 503 with `Retry-After`: a model still loading, a full queue, a
    /// rate limit) and `patience` allows; the first such answer is said on stderr.
    /// `make` is asked again for each try (it may look at the server first: what
    /// the refused try left behind). The response, and when the request it
    /// answers was sent.
    pub async fn send_patiently(
        &self,
        mut make: impl AsyncFnMut() -> Result<reqwest::RequestBuilder, String>,
        patience: Duration,
    ) -> Result<(reqwest::Response, std::time::Instant), String> {
        let deadline = tokio::time::Instant::now() + patience;
        let mut said = false;
        loop {
            let request = make().await?;
            let sent = std::time::Instant::now();
            let failure = match self.try_send(request).await {
                Ok(resp) => return Ok((resp, sent)),
                Err(f) => f,
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            // No waiting past the patience (a budget that renews tomorrow): the
            // server's words at once.
            let Some(after) = failure.retry_after.filter(|a| *a <= left) else {
                return Err(failure.message);
            };
            if !said {
                crate::output::err(format!(
                    "({}; waiting up to {} s)",
                    failure.message.trim_end_matches('.'),
                    patience.as_secs()
                ));
                said = true;
            }
            tokio::time::sleep(after).await;
        }
    }

    async fn try_send(&self, r: reqwest::RequestBuilder) -> Result<reqwest::Response, Failure> {
        let resp = r.send().await.map_err(|e| {
            Failure::said(if e.is_connect() {
                format!(
                    "cannot reach Hearth at {} ({}); is `hearth serve` running? Pass --server URL or set {SERVER_URL}",
                    self.base,
                    root_cause(&e)
                )
            } else {
                format!("request to {} failed: {}", self.base, root_cause(&e))
            })
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        // Only where waiting helps: the server is busy or not ready, not wrong.
        let retry_after = matches!(status.as_u16(), 429 | 503)
            .then(|| resp.headers().get(reqwest::header::RETRY_AFTER))
            .flatten()
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s.max(1)));
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let message = error_message(&body)
            .map_or_else(|| format!("the server answered {status}"), str::to_owned);
        let hint = if status == reqwest::StatusCode::UNAUTHORIZED {
            format!(" (pass --api-key KEY or set {API_KEY})")
        } else {
            String::new()
        };
        Err(Failure {
            message: format!("{message}{hint}"),
            retry_after,
        })
    }
}

/// Why a request did not succeed, and when to ask again when the server said.
struct Failure {
    message: String,
    retry_after: Option<Duration>,
}

impl Failure {
    fn said(message: String) -> Self {
        Failure {
            message,
            retry_after: None,
        }
    }
}

/// The message of an OpenAI-style error body (`{"error": {"message": …}}`).
pub fn error_message(body: &Value) -> Option<&str> {
    body["error"]["message"].as_str()
}

/// The innermost error's words (reqwest's own say only "error sending request").
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut e = e;
    while let Some(source) = e.source() {
        e = source;
    }
    e.to_string()
}

/// The `data:` events of a `text/event-stream` answer, each parsed as JSON.
pub struct Events {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

/// One event of a stream.
pub enum Event {
    /// A `data:` line that is JSON.
    Json(Value),
    /// `data: [DONE]`: the stream's own end.
    Done,
}

impl Events {
    pub fn new(resp: reqwest::Response) -> Events {
        Events {
            resp,
            buf: Vec::new(),
        }
    }

    /// The next event; `None` when the connection ended. Comments (keep-alives),
    /// other fields and `data:` that is not JSON are skipped.
    pub async fn next(&mut self) -> Result<Option<Event>, String> {
        loop {
            while let Some(end) = find(&self.buf, b"\n\n") {
                let event: Vec<u8> = self.buf.drain(..end + 2).collect();
                if let Some(e) = parse(&event) {
                    return Ok(Some(e));
                }
            }
            match self.resp.chunk().await {
                Ok(Some(chunk)) => {
                    // `\r\n` line ends (allowed by the format) read as `\n`.
                    self.buf.extend(chunk.iter().filter(|b| **b != b'\r'));
                }
                Ok(None) => return Ok(None),
                Err(e) => return Err(format!("the event stream broke: {}", root_cause(&e))),
            }
        }
    }
}

/// An event's `data:` (its lines joined, as the format says), when it is JSON or
/// `[DONE]`.
fn parse(event: &[u8]) -> Option<Event> {
    let text = std::str::from_utf8(event).ok()?;
    let data: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect();
    if data.is_empty() {
        return None;
    }
    let data = data.join("\n");
    if data.trim() == "[DONE]" {
        return Some(Event::Done);
    }
    serde_json::from_str(&data).ok().map(Event::Json)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_their_data_lines() {
        assert!(parse(b": keep-alive\n\n").is_none());
        assert!(matches!(parse(b"data: [DONE]\n\n"), Some(Event::Done)));
        assert!(parse(b"data: {not json\n\n").is_none());
        let Some(Event::Json(v)) = parse(b"event: x\ndata: {\"a\":\ndata: 1}\n\n") else {
            panic!("not parsed");
        };
        assert_eq!(v["a"], 1);
        let Some(Event::Json(v)) = parse(b"data:{\"b\":2}\n\n") else {
            panic!("not parsed");
        };
        assert_eq!(v["b"], 2);
    }
}
