//! [`Jobs`]: the service the HTTP layer, the CLI and tests call: submit, read, list,
//! cancel, delete, files, events; and its worker pool.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hearth_gateway::Gateway;
use hearth_sandbox::Sandbox;
use hearth_store::{
    Job, JobFile, JobListQuery, JobPage, JobStatus, JobStep, JobStore, NewFile, NewJob, NewStep,
    Scope, StepEnd, StepStatus, StoreError,
};
use serde::Serialize;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use crate::blobs::{Blobs, Object, ObjectsError};
use crate::events::JobEvent;
use crate::relay::EventRelay;
use crate::settings::Settings;
use crate::upload::{self, UploadError};

/// How many events a slow listener may fall behind before it misses some.
const EVENT_BUFFER: usize = 1024;
/// Workers look for queued jobs this often even when nothing woke them (a job
/// queued by another process).
const POLL: Duration = Duration::from_secs(1);

/// A failure of the service (not of a job: a job's failure is its state).
#[derive(Debug, thiserror::Error)]
pub enum JobsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("job files: {0}")]
    Io(#[from] std::io::Error),
    /// The store of job files (a folder or an S3 bucket).
    #[error("job files: {0}")]
    Objects(#[from] ObjectsError),
    /// The job is not in a state that allows this (retrying a running job...).
    #[error("{0}")]
    Conflict(String),
}

impl JobsError {
    /// The HTTP status to answer with (500: the detail belongs in the log).
    pub fn status(&self) -> u16 {
        match self {
            JobsError::Conflict(_) => 409,
            _ => 500,
        }
    }
}

/// Why a submission was refused.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The upload itself: 413, 415 or 400 ([`UploadError::status`]).
    #[error(transparent)]
    Upload(#[from] UploadError),
    #[error(transparent)]
    Jobs(#[from] JobsError),
}

impl SubmitError {
    /// The HTTP status to answer with (500: the detail belongs in the log).
    pub fn status(&self) -> u16 {
        match self {
            SubmitError::Upload(e) => e.status(),
            SubmitError::Jobs(e) => e.status(),
        }
    }
}

impl From<StoreError> for SubmitError {
    fn from(e: StoreError) -> Self {
        SubmitError::Jobs(e.into())
    }
}

/// A job with everything it did: for the job view and `GET /api/jobs/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobView {
    #[serde(flatten)]
    pub job: Job,
    pub steps: Vec<JobStep>,
    pub files: Vec<JobFile>,
}

/// The jobs service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Jobs {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub gateway: Arc<Gateway>,
    pub store: Arc<dyn JobStore>,
    pub sandbox: Arc<Sandbox>,
    pub blobs: Blobs,
    /// Held while bytes are stored and recorded, and while unreferenced ones are
    /// removed: a removal never takes bytes a job is about to record. Across
    /// replicas the store's own lock does the same ([`JobStore::files_lock`]).
    pub files_lock: tokio::sync::Mutex<()>,
    /// Where runs get their input folders: `$TMPDIR/hearth-jobs-<uid>`, not under
    /// `data_dir`, which may sit below a folder the sandboxed program's unprivileged
    /// user cannot pass (a `0700` home, as the sandbox's own root does not either).
    pub work_dir: PathBuf,
    pub settings: Settings,
    pub events: broadcast::Sender<JobEvent>,
    /// This process's events on their way to the other replicas, once
    /// [`Jobs::relay`] started relaying.
    relay_out: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<JobEvent>>,
    wake: Notify,
    /// The cancel token of each job this process is running.
    running: Mutex<HashMap<String, CancellationToken>>,
    /// Stops the workers (a shutdown, not a cancel: their jobs resume at the next start).
    pub stop: CancellationToken,
    /// This service's name on the leases of the jobs it runs.
    worker_id: String,
    workers: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Inner {
    pub fn emit(&self, event: JobEvent) {
        if let Some(out) = self.relay_out.get() {
            let _ = out.send(event.clone());
        }
        // No listener is not an error.
        let _ = self.events.send(event);
    }
}

impl Jobs {
    /// The service over `store`, keeping job files in `blobs` (`data_dir/files` or
    /// an S3 bucket: [`Blobs::from_config`]). No job runs until [`Jobs::start`].
    pub fn new(
        gateway: Arc<Gateway>,
        store: Arc<dyn JobStore>,
        sandbox: Arc<Sandbox>,
        blobs: Blobs,
        settings: Settings,
    ) -> Jobs {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        Jobs {
            inner: Arc::new(Inner {
                gateway,
                store,
                sandbox,
                blobs,
                files_lock: tokio::sync::Mutex::new(()),
                work_dir: std::env::temp_dir().join(format!(
                    "hearth-jobs-{}",
                    rustix::process::getuid().as_raw()
                )),
                settings,
                events,
                relay_out: std::sync::OnceLock::new(),
                wake: Notify::new(),
                running: Mutex::new(HashMap::new()),
                stop: CancellationToken::new(),
                worker_id: uuid::Uuid::new_v4().simple().to_string(),
                workers: Mutex::new(Vec::new()),
            }),
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Puts back in the queue the jobs a stopped process left running (their
    /// unfinished step runs again), then starts `concurrency` workers, which take
    /// queued jobs in arrival order, and a sweeper that does the same for the jobs
    /// of any process that dies while this one runs (their leases run out).
    pub async fn start(&self) -> Result<(), JobsError> {
        self.sweep().await?;
        // What a process that stopped mid-delete (or a rerun) left behind.
        self.remove_unreferenced_files().await?;
        let mut workers = lock(&self.inner.workers);
        for n in 0..self.inner.settings.concurrency {
            let jobs = self.clone();
            workers.push(tokio::spawn(async move { jobs.work(n).await }));
        }
        let jobs = self.clone();
        workers.push(tokio::spawn(async move {
            let every = jobs.inner.settings.job_lease / 3;
            loop {
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = jobs.inner.stop.cancelled() => return,
                }
                if let Err(e) = jobs.sweep().await {
                    tracing::warn!(error = %e, "cannot sweep abandoned jobs");
                }
            }
        }));
        Ok(())
    }

    async fn sweep(&self) -> Result<(), JobsError> {
        let requeued = self.inner.store.recover_jobs().await?;
        if requeued > 0 {
            tracing::warn!(requeued, "jobs left running by a stopped process resume");
            for _ in 0..requeued {
                self.inner.wake.notify_one();
            }
        }
        Ok(())
    }

    /// Stops the workers and waits for them. Jobs they were running stay `running`
    /// in the store, with their step unfinished: the next [`Jobs::start`] (of this
    /// or another process) resumes them from that step.
    pub async fn shutdown(&self) {
        self.inner.stop.cancel();
        let workers: Vec<_> = lock(&self.inner.workers).drain(..).collect();
        for w in workers {
            let _ = w.await;
        }
        if let Err(e) = self
            .inner
            .store
            .release_job_leases(&self.inner.worker_id)
            .await
        {
            tracing::warn!(error = %e, "cannot release the leases of this server's running jobs");
        }
    }

    /// Relays job events through `relay` (the shared database): this process's go
    /// to the other replicas, theirs come to this process's listeners, so a job's
    /// live view works whichever replica runs it. Call once, before serving; ends
    /// with [`Jobs::shutdown`].
    pub async fn relay(&self, relay: Arc<dyn EventRelay>) -> Result<(), String> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        if self.inner.relay_out.set(tx).is_err() {
            return Err("job events are already relayed".into());
        }
        crate::relay::start(
            relay,
            self.inner.worker_id.clone(),
            self.inner.events.clone(),
            rx,
            self.inner.stop.clone(),
        )
        .await
    }

    /// Events of every job, from now on. Subscribe before reading a job's state, so
    /// that no change falls between the two; a listener that falls more than 1024
    /// events behind is told it lagged (read the job again).
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.inner.events.subscribe()
    }

    /// Checks the upload (by its bytes, its size, its declared pixels), stores it by
    /// digest and queues a job for `owner`.
    pub async fn submit(
        &self,
        owner: &str,
        image: &[u8],
        prompt: &str,
    ) -> Result<Job, SubmitError> {
        let s = &self.inner.settings;
        let checked = upload::check(image, s.max_upload_bytes, s.max_image_pixels)?;
        let files = self.inner.files_lock.lock().await;
        let shared = self
            .inner
            .store
            .files_lock(false)
            .await
            .map_err(JobsError::Store)?;
        let sha = self
            .inner
            .blobs
            .put(image.to_vec())
            .await
            .map_err(JobsError::Objects)?;
        let job = self
            .inner
            .store
            .create_job(
                owner,
                NewJob {
                    prompt: prompt.to_owned(),
                    image_type: checked.kind.name().to_owned(),
                    image: NewFile {
                        name: format!("input.{}", checked.kind.extension()),
                        sha256: sha,
                        size: i64::try_from(image.len()).unwrap_or(i64::MAX),
                        content_type: checked.kind.mime().to_owned(),
                        step_id: None,
                    },
                },
            )
            .await?;
        drop(shared);
        drop(files);
        self.inner.emit(JobEvent::Status {
            job_id: job.id.clone(),
            status: job.status.clone(),
            step: None,
            error: None,
        });
        self.inner.wake.notify_one();
        Ok(job)
    }

    /// A job with its steps and files.
    pub async fn job(&self, scope: &Scope<'_>, id: &str) -> Result<Option<JobView>, JobsError> {
        let store = &self.inner.store;
        let Some(job) = store.job(scope, id).await? else {
            return Ok(None);
        };
        Ok(Some(JobView {
            steps: store.steps(id).await?,
            files: store.job_files(id).await?,
            job,
        }))
    }

    /// Newest first.
    pub async fn list(&self, scope: &Scope<'_>, q: &JobListQuery) -> Result<JobPage, JobsError> {
        Ok(self.inner.store.list_jobs(scope, q).await?)
    }

    /// Cancels a job at any step: a queued one at once; a running one's model call
    /// is dropped or its sandbox run killed, and it ends `cancelled`. `None` when
    /// there is no such job in scope; an ended job is returned as it is.
    pub async fn cancel(&self, scope: &Scope<'_>, id: &str) -> Result<Option<Job>, JobsError> {
        let job = self.inner.store.request_cancel(scope, id).await?;
        if let Some(j) = &job {
            if let Some(token) = lock(&self.inner.running).get(id) {
                token.cancel();
            } else if j.status() == JobStatus::Cancelled {
                self.inner.emit(JobEvent::Status {
                    job_id: j.id.clone(),
                    status: j.status.clone(),
                    step: j.step.clone(),
                    error: j.error.clone(),
                });
            }
        }
        Ok(job)
    }

    /// Runs a failed or cancelled job again from the step that failed (the steps
    /// that ended well are kept; a script that was blocked or raised gets one more
    /// repair). `None` when there is no such job in scope.
    pub async fn retry(&self, scope: &Scope<'_>, id: &str) -> Result<Option<Job>, JobsError> {
        let Some(job) = self.inner.store.job(scope, id).await? else {
            return Ok(None);
        };
        if !matches!(job.status(), JobStatus::Failed | JobStatus::Cancelled) {
            return Err(JobsError::Conflict(format!(
                "the job is {}; only a failed or cancelled job can be retried",
                job.status
            )));
        }
        self.requeue(scope, id).await
    }

    /// Runs code the user edited: it becomes the job's next code attempt, then goes
    /// through the critic and the run (and repairs) as the model's would. The job
    /// must have ended. `None` when there is no such job in scope.
    pub async fn edit_code(
        &self,
        scope: &Scope<'_>,
        id: &str,
        code: &str,
    ) -> Result<Option<Job>, JobsError> {
        let store = &self.inner.store;
        let Some(job) = store.job(scope, id).await? else {
            return Ok(None);
        };
        if !job.status().is_final() {
            return Err(JobsError::Conflict(format!(
                "the job is {}; cancel it, or wait for it to end, before running edited code",
                job.status
            )));
        }
        if code.trim().is_empty() {
            return Err(JobsError::Conflict("the edited code is empty".into()));
        }
        let attempt = store
            .steps(id)
            .await?
            .iter()
            .filter(|s| s.kind == "code")
            .map(|s| s.attempt)
            .max()
            .unwrap_or(0)
            + 1;
        let step = store
            .begin_step(
                id,
                NewStep {
                    kind: "code".into(),
                    attempt,
                    input: "edited by the user".into(),
                    model: None,
                },
            )
            .await?;
        store
            .finish_step(
                &step.id,
                &StepEnd {
                    status: StepStatus::Succeeded,
                    output: Some(code.to_owned()),
                    detail: Some(serde_json::json!({"edited": true}).to_string()),
                    model: None,
                    prompt_tokens: None,
                    completion_tokens: None,
                },
            )
            .await?;
        self.requeue(scope, id).await
    }

    async fn requeue(&self, scope: &Scope<'_>, id: &str) -> Result<Option<Job>, JobsError> {
        let job = self.inner.store.requeue_job(scope, id).await?;
        if let Some(j) = &job {
            self.inner.emit(JobEvent::Status {
                job_id: j.id.clone(),
                status: j.status.clone(),
                step: j.step.clone(),
                error: None,
            });
            self.inner.wake.notify_one();
        }
        Ok(job)
    }

    /// The gateway the jobs' model calls go through (and their submissions are
    /// admitted by).
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.inner.gateway
    }

    /// Deletes an ended (or queued) job; a running one must be cancelled first.
    /// Its image and artifacts go too, unless another job has the same content.
    pub async fn delete(&self, scope: &Scope<'_>, id: &str) -> Result<bool, JobsError> {
        let deleted = self.inner.store.delete_job(scope, id).await?;
        if deleted {
            self.remove_unreferenced_files().await?;
        }
        Ok(deleted)
    }

    /// Removes the bytes of the files no job refers to any more.
    async fn remove_unreferenced_files(&self) -> Result<(), JobsError> {
        let _files = self.inner.files_lock.lock().await;
        // Every replica's: none records a file while its bytes may be going.
        let _alone = self.inner.store.files_lock(true).await?;
        let gone = self.inner.store.drop_unreferenced_files().await?;
        if gone.is_empty() {
            return Ok(());
        }
        let n = gone.len();
        for sha in &gone {
            self.inner.blobs.remove(sha).await?;
        }
        tracing::debug!(removed = n, "files no job refers to were removed");
        Ok(())
    }

    /// A job's file by its name (`input.png`, or an artifact's path): its record and
    /// its bytes, streamed from the object store. `None` when the job (in scope) or
    /// the file is not there; a file recorded whose bytes are gone is
    /// [`ObjectsError::NotFound`].
    pub async fn file(
        &self,
        scope: &Scope<'_>,
        id: &str,
        name: &str,
    ) -> Result<Option<(JobFile, Object)>, JobsError> {
        if self.inner.store.job(scope, id).await?.is_none() {
            return Ok(None);
        }
        let files = self.inner.store.job_files(id).await?;
        let Some(file) = files.into_iter().find(|f| f.name == name) else {
            return Ok(None);
        };
        let object = self.inner.blobs.open(&file.sha256).await?;
        Ok(Some((file, object)))
    }

    /// The store of job files.
    pub fn blobs(&self) -> &Blobs {
        &self.inner.blobs
    }

    /// One worker: claim the oldest queued job, run it, repeat until stopped.
    async fn work(&self, n: usize) {
        let inner = &self.inner;
        loop {
            if inner.stop.is_cancelled() {
                return;
            }
            let claimed = inner
                .store
                .claim_next_job(&inner.worker_id, inner.settings.job_lease)
                .await;
            match claimed {
                Ok(Some(job)) => self.run(job).await,
                Ok(None) => {
                    tokio::select! {
                        () = inner.wake.notified() => {}
                        () = tokio::time::sleep(POLL) => {}
                        () = inner.stop.cancelled() => return,
                    }
                }
                Err(e) => {
                    tracing::warn!(worker = n, error = %e, "cannot take a job from the queue");
                    tokio::select! {
                        () = tokio::time::sleep(POLL) => {}
                        () = inner.stop.cancelled() => return,
                    }
                }
            }
        }
    }

    async fn run(&self, job: Job) {
        let inner = &self.inner;
        let token = inner.stop.child_token();
        lock(&inner.running).insert(job.id.clone(), token.clone());
        // A cancel that came between the claim and the line above.
        if let Ok(Some(j)) = inner.store.job(&Scope::All, &job.id).await
            && j.cancel_requested
        {
            token.cancel();
        }
        let keeper = tokio::spawn(keep_lease(self.clone(), job.id.clone(), token.clone()));
        tracing::info!(job = %job.id, worker = %inner.worker_id, step = ?job.step, "running a job");
        let span = tracing::info_span!("job", id = %job.id);
        let id = job.id.clone();
        tracing::Instrument::instrument(crate::pipeline::run(inner, job, &token), span).await;
        keeper.abort();
        lock(&inner.running).remove(&id);
    }
}

/// Renews the lease on a job while it runs, and stops it when a cancel was asked
/// for in another process (this one's cancels reach the token directly).
async fn keep_lease(jobs: Jobs, id: String, token: CancellationToken) {
    let inner = &jobs.inner;
    let lease = inner.settings.job_lease;
    loop {
        tokio::time::sleep(lease / 3).await;
        match inner
            .store
            .renew_job_lease(&id, &inner.worker_id, lease)
            .await
        {
            Ok(Some(true)) => token.cancel(),
            Ok(Some(false)) => {}
            Ok(None) => {
                tracing::warn!(job = %id, "this worker's lease on the job was lost");
                return;
            }
            Err(e) => tracing::warn!(job = %id, error = %e, "cannot renew the lease on a job"),
        }
    }
}
