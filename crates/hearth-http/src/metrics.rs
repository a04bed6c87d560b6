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
    metrics::describe_gauge!("hearth_connections_open", "Client connections open now");
    metrics::describe_counter!(
        "hearth_connections_refused_total",
        "Client connections refused at once, by the cap they hit (server.max_connections*)"
    );
    metrics::describe_counter!(
        "hearth_connections_timed_out_total",
        "Client connections closed because a request's head did not arrive in time"
    );
    metrics::describe_counter!(
        "hearth_request_bodies_timed_out_total",
        "Requests answered 408 because their body did not arrive in time"
    );
    metrics::describe_counter!(
        "hearth_ratelimit_redis_errors_total",
        "Rate-limit checks Redis did not answer, by what happened: policy open (admitted), closed (refused, 503), settle (a usage correction lost)"
    );
    metrics::describe_gauge!(
        "hearth_model_device_info",
        "1 for each embedded model, labelled with the device it runs on (cpu, cuda:0)"
    );
    metrics::describe_gauge!(
        "hearth_model_gpu_memory_bytes",
        metrics::Unit::Bytes,
        "GPU memory an embedded model took while it loaded (weights, KV cache, buffers)"
    );
    metrics::describe_gauge!(
        "hearth_tasks_alive",
        "Tasks alive on the serving event loops (connections, streams, background work)"
    );
}

/// The event loops serving HTTP, for `hearth_tasks_alive`.
static RUNTIMES: std::sync::Mutex<Vec<(u64, tokio::runtime::Handle)>> =
    std::sync::Mutex::new(Vec::new());

/// An event loop counted in `hearth_tasks_alive` until this is dropped.
pub(crate) struct Watched(u64);

/// Counts the calling event loop's tasks in `hearth_tasks_alive` (read at each
/// scrape) while the returned guard lives.
pub(crate) fn watch_this_runtime() -> Option<Watched> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let handle = tokio::runtime::Handle::try_current().ok()?;
    let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    RUNTIMES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push((id, handle));
    Some(Watched(id))
}

impl Drop for Watched {
    fn drop(&mut self) {
        RUNTIMES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|(id, _)| *id != self.0);
    }
}

/// Sets the gauges read from the process rather than counted as things happen:
/// `hearth_tasks_alive` (every task of the serving event loops: connections,
/// streams, probes, jobs), which a leak makes grow without bound.
pub(crate) fn sample() {
    let tasks: usize = RUNTIMES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .map(|(_, h)| h.metrics().num_alive_tasks())
        .sum();
    metrics::gauge!("hearth_tasks_alive").set(tasks as f64);
}

/// Sets each embedded model's device gauges from its placement (read at each
/// scrape; a model still loading has none yet).
pub(crate) fn sample_models(models: &[hearth_api::ModelEntry]) {
    for m in models {
        let Some(p) = &m.placement else { continue };
        let labels = [("model", m.id.clone()), ("device", p.device.clone())];
        metrics::gauge!("hearth_model_device_info", &labels).set(1.0);
        if let Some(bytes) = p.gpu_memory_bytes {
            metrics::gauge!("hearth_model_gpu_memory_bytes", &labels).set(bytes as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, placement: Option<hearth_api::Placement>) -> hearth_api::ModelEntry {
        serde_json::from_value(serde_json::json!({
            "id": id, "object": "model", "created": 0, "owned_by": "hearth",
            "status": "ready", "tags": [], "context_length": null, "backend": "embedded",
            "placement": placement,
        }))
        .unwrap()
    }

    #[test]
    fn each_embedded_model_shows_its_device_and_gpu_memory() {
        let h = handle();
        sample_models(&[
            entry(
                "metrics-test-gpu",
                Some(hearth_api::Placement {
                    device: "cuda:0".into(),
                    gpu_layers: Some(31),
                    gpu_memory_bytes: Some(1_500_000_000),
                }),
            ),
            entry(
                "metrics-test-cpu",
                Some(hearth_api::Placement {
                    device: "cpu".into(),
                    gpu_layers: None,
                    gpu_memory_bytes: None,
                }),
            ),
            entry("metrics-test-upstream", None),
        ]);
        let text = h.render();
        assert!(
            text.contains(
                r#"hearth_model_device_info{model="metrics-test-gpu",device="cuda:0"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"hearth_model_gpu_memory_bytes{model="metrics-test-gpu",device="cuda:0"} 1500000000"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"hearth_model_device_info{model="metrics-test-cpu",device="cpu"} 1"#),
            "{text}"
        );
        assert!(!text.contains(r#"hearth_model_gpu_memory_bytes{model="metrics-test-cpu""#));
        assert!(!text.contains("metrics-test-upstream"));
    }
}
