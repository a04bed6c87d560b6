//! [`Worker`]: the job workers without the HTTP API (`hearth worker`), for
//! separate worker processes or pods beside API-only replicas (`[jobs] concurrency
//! = 0`). It builds what a server builds for jobs (the models behind the gateway,
//! with their limits; the store; the sandbox; the object store; the event relay) and
//! runs jobs from the shared queue until told to stop.

use std::future::Future;
use std::sync::Arc;

use hearth_config::Config;
use hearth_gateway::Gateway;
use hearth_jobs::Jobs;
use hearth_launch::Engines;
use hearth_store::ConversationStore;

use crate::{BuildError, Builder, Parts};

/// A built worker, its jobs already being taken from the queue.
pub struct Worker {
    config: Arc<Config>,
    gateway: Arc<Gateway>,
    store: Arc<dyn ConversationStore>,
    jobs: Jobs,
    engines: Engines,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").finish_non_exhaustive()
    }
}

impl Builder {
    /// A [`Worker`]: everything but the HTTP app. Its workers start here (as
    /// many as `[jobs] concurrency`, which must be at least 1).
    pub async fn build_worker(mut self) -> Result<Worker, BuildError> {
        if self.config.jobs.concurrency == 0 {
            return Err(BuildError::Worker(
                "[jobs] concurrency is 0: a worker runs at least one job at a time (set it, or HEARTH_JOBS_CONCURRENCY)".into(),
            ));
        }
        let _ = hearth_http::metrics::handle();
        let config = Arc::new(self.config.clone());
        let Parts {
            gateway,
            store,
            jobs,
            engines,
        } = self.parts(&config).await?;
        Ok(Worker {
            config,
            gateway,
            store,
            jobs,
            engines,
        })
    }
}

impl Worker {
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    pub fn jobs(&self) -> &Jobs {
        &self.jobs
    }

    /// Runs jobs until `shutdown` resolves (with the models' health probes, as a
    /// server does), then stops the workers: a job mid-step stays `running` in the
    /// store, and another worker takes it when its lease runs out (at once, if
    /// this one is restarted on the same SQLite file).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let probes = tokio::spawn(self.gateway.router().clone().run_health_probes(async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        }));
        tracing::info!(
            concurrency = self.config.jobs.concurrency,
            "hearth worker is taking jobs from the queue"
        );
        shutdown.await;
        tracing::info!(
            "hearth worker is stopping: jobs mid-step resume elsewhere or at the next start"
        );
        let _ = stop_tx.send(true);
        let _ = probes.await;
        self.jobs.shutdown().await;
        // The keys' token counts still on their way to the store land first.
        self.gateway.flush(std::time::Duration::from_secs(5)).await;
        self.store.close().await;
        self.engines.stop().await;
    }
}
