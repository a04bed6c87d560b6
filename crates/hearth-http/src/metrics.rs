//! The Prometheus recorder, installed once per process.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// How often pending histogram samples are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Latency buckets in seconds: from 1 ms (a relay's overhead) to 2 minutes (a long generation).
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// The process's recorder handle; the first call installs it.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // `build_recorder` starts no upkeep: without it every histogram sample
            // waits in memory for the next scrape, and a server nobody scrapes grows
            // by every request it answers.
            let upkeep = handle.clone();
            let _ = std::thread::Builder::new()
                .name("hearth-metrics".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_EVERY);
                        upkeep.run_upkeep();
                    }
                });
            // Fails only if another recorder is installed (an embedder's); ours still renders.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(
        "hearth_requests_total",
        "Requests answered, by model and HTTP status"
    );
    metrics::describe_histogram!(
        "hearth_request_duration_seconds",
        metrics::Unit::Seconds,
        "Request latency until the response ended"
    );
    metrics::describe_histogram!(
        "hearth_time_to_first_token_seconds",
        metrics::Unit::Seconds,
        "Time to the first token (first chunk for streams)"
    );
    metrics::describe_counter!(
        "hearth_tokens_total",
        "Tokens in (prompt) and out (completion), when the backend reports them"
    );
    metrics::describe_gauge!(
        "hearth_queue_depth",
        "Requests waiting for a model's concurrency slot"
    );
    metrics::describe_gauge!("hearth_in_flight", "Requests being served by a model");
    metrics::describe_counter!("hearth_retries_total", "Retries of failed backend calls");
    metrics::describe_counter!(
        "hearth_backend_errors_total",
        "Failed backend calls, by model and kind"
    );
}
