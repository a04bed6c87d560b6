//! Per-model metric handles.
//!
//! Each handle is registered once, on first use (so after the HTTP layer installed
//! the recorder): recording a request is then a few atomic operations, with no
//! label strings built, hashed or looked up per request (the `metrics::counter!`
//! macro with labels did all three every time, and showed in the gateway's profile).
//! Labels come only from configured model names, so their number is bounded.

use std::sync::OnceLock;
use std::time::Duration;

use hearth_api::Usage;
use metrics::{Counter, Gauge, Histogram};

/// The statuses whose request counters are kept as handles; others (rare) go
/// through the registry each time.
const STATUSES: [u16; 14] = [
    200, 400, 401, 403, 404, 408, 413, 422, 429, 499, 500, 502, 503, 504,
];

pub struct ModelMetrics {
    model: String,
    backend: &'static str,
    requests: [OnceLock<Counter>; STATUSES.len()],
    duration: OnceLock<Histogram>,
    ttft: OnceLock<Histogram>,
    tokens_in: OnceLock<Counter>,
    tokens_out: OnceLock<Counter>,
    in_flight: OnceLock<Gauge>,
    queue_depth: OnceLock<Gauge>,
    retries: OnceLock<Counter>,
}

impl std::fmt::Debug for ModelMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelMetrics")
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

impl ModelMetrics {
    /// `backend` is the model's backend kind, the `backend` label of its
    /// time-to-first-token histogram.
    pub fn new(model: &str, backend: &'static str) -> Self {
        ModelMetrics {
            model: model.to_owned(),
            backend,
            requests: Default::default(),
            duration: OnceLock::new(),
            ttft: OnceLock::new(),
            tokens_in: OnceLock::new(),
            tokens_out: OnceLock::new(),
            in_flight: OnceLock::new(),
            queue_depth: OnceLock::new(),
            retries: OnceLock::new(),
        }
    }

    /// The model's configured name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// One answered request: its HTTP status, latency until the response ended,
    /// time to first token, and tokens when the backend reported them.
    /// A stream the client left before its end (`hearth_requests_cancelled_total`).
    pub fn cancelled(&self) {
        metrics::counter!("hearth_requests_cancelled_total", "model" => self.model.clone())
            .increment(1);
    }

    pub fn request(
        &self,
        status: u16,
        latency: Duration,
        ttft: Option<Duration>,
        usage: Option<Usage>,
    ) {
        match STATUSES.iter().position(|&s| s == status) {
            Some(i) => self.requests[i]
                .get_or_init(|| self.requests_counter(status))
                .increment(1),
            None => self.requests_counter(status).increment(1),
        }
        self.duration
            .get_or_init(|| {
                metrics::histogram!("hearth_request_duration_seconds", "model" => self.model.clone())
            })
            .record(latency.as_secs_f64());
        if let Some(t) = ttft {
            self.ttft
                .get_or_init(|| {
                    metrics::histogram!(
                        "hearth_time_to_first_token_seconds",
                        "model" => self.model.clone(),
                        "backend" => self.backend
                    )
                })
                .record(t.as_secs_f64());
        }
        if let Some(u) = usage {
            self.tokens_in
                .get_or_init(|| self.tokens_counter("in"))
                .increment(u.prompt_tokens);
            self.tokens_out
                .get_or_init(|| self.tokens_counter("out"))
                .increment(u.completion_tokens);
        }
    }

    pub(crate) fn set_in_flight(&self, n: usize) {
        self.in_flight
            .get_or_init(|| metrics::gauge!("hearth_in_flight", "model" => self.model.clone()))
            .set(n as f64);
    }

    pub(crate) fn set_queue_depth(&self, n: usize) {
        self.queue_depth
            .get_or_init(|| metrics::gauge!("hearth_queue_depth", "model" => self.model.clone()))
            .set(n as f64);
    }

    pub(crate) fn retry(&self) {
        self.retries
            .get_or_init(
                || metrics::counter!("hearth_retries_total", "model" => self.model.clone()),
            )
            .increment(1);
    }

    fn requests_counter(&self, status: u16) -> Counter {
        metrics::counter!(
            "hearth_requests_total",
            "model" => self.model.clone(),
            "status" => status.to_string()
        )
    }

    fn tokens_counter(&self, direction: &'static str) -> Counter {
        metrics::counter!(
            "hearth_tokens_total",
            "model" => self.model.clone(),
            "direction" => direction
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_exporter_prometheus::PrometheusBuilder;

    #[test]
    fn records_through_cached_handles_with_the_right_labels() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let m = ModelMetrics::new("m", "upstream");
            let usage = Usage {
                prompt_tokens: 3,
                completion_tokens: 4,
                total_tokens: 7,
            };
            let ms = Duration::from_millis;
            m.request(200, ms(5), Some(ms(2)), Some(usage));
            m.request(200, ms(5), None, Some(usage));
            m.request(418, ms(1), None, None);
            m.set_in_flight(2);
            m.set_queue_depth(1);
            m.retry();
        });
        let text = handle.render();
        for line in [
            r#"hearth_requests_total{model="m",status="200"} 2"#,
            r#"hearth_requests_total{model="m",status="418"} 1"#,
            r#"hearth_request_duration_seconds_count{model="m"} 3"#,
            r#"hearth_time_to_first_token_seconds_count{model="m",backend="upstream"} 1"#,
            r#"hearth_tokens_total{model="m",direction="in"} 6"#,
            r#"hearth_tokens_total{model="m",direction="out"} 8"#,
            r#"hearth_in_flight{model="m"} 2"#,
            r#"hearth_queue_depth{model="m"} 1"#,
            r#"hearth_retries_total{model="m"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
    }
}
