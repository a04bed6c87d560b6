//! Agent jobs: the rows ([`Job`], [`JobStep`], [`JobFile`]), the inputs that make
//! and change them, and the [`JobStore`] trait `hearth-jobs` runs on.
//!
//! The job row is the single source of truth: a worker claims a queued job with
//! one statement (arrival order) and a lease it renews while it runs the job,
//! records every step it runs as it starts and ends, and sets the job's end. A job
//! whose lease ran out (its process died) or was released (its process stopped) is
//! put back in the queue by [`JobStore::recover_jobs`], its unfinished step marked
//! `interrupted`; the next worker resumes it from the steps that ended. Several
//! processes may share one database: a live worker's jobs are never taken.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::model::Scope;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<JobStatus> {
        Some(match s {
            "queued" => JobStatus::Queued,
            "running" => JobStatus::Running,
            "succeeded" => JobStatus::Succeeded,
            "failed" => JobStatus::Failed,
            "cancelled" => JobStatus::Cancelled,
            _ => return None,
        })
    }

    /// It will not change again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

/// How a step ended (or that it has not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    Running,
    /// Done, and the job goes on with its output.
    Succeeded,
    /// Done, and its output says what went wrong (a blocked critic, a script that
    /// raised, a model that failed): a repair follows, or the job fails.
    Failed,
    Cancelled,
    /// The process running it stopped; the step runs again.
    Interrupted,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Running => "running",
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Cancelled => "cancelled",
            StepStatus::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<StepStatus> {
        Some(match s {
            "running" => StepStatus::Running,
            "succeeded" => StepStatus::Succeeded,
            "failed" => StepStatus::Failed,
            "cancelled" => StepStatus::Cancelled,
            "interrupted" => StepStatus::Interrupted,
            _ => return None,
        })
    }
}

/// A job as the list and the job view show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Job {
    pub id: String,
    /// The principal that submitted it (a key's name, or `anonymous`).
    pub owner: String,
    /// A [`JobStatus`] name.
    pub status: String,
    /// The step it is at, or ended at.
    pub step: Option<String>,
    pub prompt: String,
    pub image_sha256: String,
    /// `png`, `jpeg`, `webp` or `gif`.
    pub image_type: String,
    /// Why it failed, in plain words.
    pub error: Option<String>,
    /// A short code for the failure (`timeout`, `memory`, `vision_unsupported`...).
    pub error_code: Option<String>,
    pub cancel_requested: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

impl Job {
    pub fn status(&self) -> JobStatus {
        JobStatus::parse(&self.status).unwrap_or(JobStatus::Failed)
    }
}

/// One step a job ran: its input, output, model, tokens and timing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct JobStep {
    pub id: String,
    pub job_id: String,
    pub seq: i64,
    /// `vision`, `plan`, `code`, `critic` or `run`.
    pub kind: String,
    /// 1, then +1 for each repair (code, critic and run steps).
    pub attempt: i64,
    /// A [`StepStatus`] name.
    pub status: String,
    pub input: String,
    pub output: Option<String>,
    /// JSON: the critic's findings, the sandbox's outcome...
    pub detail: Option<String>,
    pub model: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub duration_ms: Option<i64>,
}

impl JobStep {
    pub fn status(&self) -> StepStatus {
        StepStatus::parse(&self.status).unwrap_or(StepStatus::Failed)
    }
}

/// A file of a job: its input image, or an artifact its run wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct JobFile {
    pub job_id: String,
    /// `input` or `artifact`.
    pub role: String,
    /// An artifact's path under the run's output folder; `input.<ext>` for the image.
    pub name: String,
    pub sha256: String,
    pub size: i64,
    pub content_type: String,
    pub step_id: Option<String>,
    pub created_at: i64,
}

/// A content-addressed file to record (its bytes are already stored by digest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFile {
    pub name: String,
    pub sha256: String,
    pub size: i64,
    pub content_type: String,
    pub step_id: Option<String>,
}

/// A job to queue: the checked upload (already stored) and the user's instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub prompt: String,
    /// `png`, `jpeg`, `webp` or `gif`.
    pub image_type: String,
    pub image: NewFile,
}

/// A step that starts now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStep {
    pub kind: String,
    pub attempt: i64,
    pub input: String,
    pub model: Option<String>,
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepEnd {
    pub status: StepStatus,
    pub output: Option<String>,
    pub detail: Option<String>,
    /// The model that answered (a fallback may have).
    pub model: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEnd {
    pub status: JobStatus,
    pub error: Option<String>,
    pub error_code: Option<String>,
}

/// Jobs newest first, `limit` at a time, after `cursor`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobListQuery {
    pub limit: u32,
    pub cursor: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobPage {
    pub data: Vec<Job>,
    /// Pass as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// A held [`JobStore::files_lock`]; released when dropped.
pub struct FilesLock(pub(crate) Option<Box<dyn Send + Sync>>);

impl std::fmt::Debug for FilesLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "FilesLock(held)"
        } else {
            "FilesLock(local)"
        })
    }
}

/// Jobs, their steps and files. Step and file operations take a job id the caller
/// has already checked against its [`Scope`] (with [`JobStore::job`]), or got from
/// [`JobStore::claim_next_job`].
#[async_trait]
pub trait JobStore: Send + Sync + std::fmt::Debug + 'static {
    /// Queues a job (and records its image) in one transaction.
    async fn create_job(&self, owner: &str, new: NewJob) -> Result<Job, StoreError>;

    async fn job(&self, scope: &Scope<'_>, id: &str) -> Result<Option<Job>, StoreError>;

    /// Newest first, paged by `(created_at, id)`.
    async fn list_jobs(&self, scope: &Scope<'_>, q: &JobListQuery) -> Result<JobPage, StoreError>;

    /// Takes the oldest queued job, marks it running and leases it to `worker` for
    /// `lease`, in one statement (two workers never take the same job).
    async fn claim_next_job(
        &self,
        worker: &str,
        lease: std::time::Duration,
    ) -> Result<Option<Job>, StoreError>;

    /// Extends `worker`'s lease on a running job. `Some(cancel_requested)` while the
    /// lease is held (a cancel made in another process shows here); `None` when the
    /// job is no longer this worker's.
    async fn renew_job_lease(
        &self,
        id: &str,
        worker: &str,
        lease: std::time::Duration,
    ) -> Result<Option<bool>, StoreError>;

    /// Ends `worker`'s leases now (a clean stop), so that its running jobs resume at
    /// once rather than when their leases would have run out.
    async fn release_job_leases(&self, worker: &str) -> Result<u64, StoreError>;

    /// The step a running job is at.
    async fn set_job_step(&self, id: &str, step: &str) -> Result<(), StoreError>;

    /// Ends a job that is queued or running; `None` when it had already ended.
    async fn finish_job(&self, id: &str, end: &JobEnd) -> Result<Option<Job>, StoreError>;

    /// Asks a job to stop: a queued one is cancelled at once, a running one is
    /// flagged (its worker stops it). `None` when there is no such job in scope;
    /// a job that had ended is returned as it is.
    async fn request_cancel(&self, scope: &Scope<'_>, id: &str) -> Result<Option<Job>, StoreError>;

    /// Puts an ended job back in the queue (retry, or run edited code): its error
    /// is cleared, its steps kept. `None` when there is no such job in scope; a job
    /// that had not ended is returned as it is.
    async fn requeue_job(&self, scope: &Scope<'_>, id: &str) -> Result<Option<Job>, StoreError>;

    /// Deletes a job that is not running, with its steps and file records.
    /// False when there was none in scope, or it is running (cancel it first).
    async fn delete_job(&self, scope: &Scope<'_>, id: &str) -> Result<bool, StoreError>;

    async fn begin_step(&self, job_id: &str, new: NewStep) -> Result<JobStep, StoreError>;

    async fn finish_step(&self, step_id: &str, end: &StepEnd) -> Result<(), StoreError>;

    /// A job's steps, in order.
    async fn steps(&self, job_id: &str) -> Result<Vec<JobStep>, StoreError>;

    /// Records an artifact (a file the run wrote).
    async fn add_artifact(&self, job_id: &str, file: NewFile) -> Result<(), StoreError>;

    /// A job's files: its input, then its artifacts by name.
    async fn job_files(&self, job_id: &str) -> Result<Vec<JobFile>, StoreError>;

    /// Holds the store's files lock until the guard is dropped, for every process
    /// using the store: shared while bytes are stored and their record written
    /// ([`JobStore::create_job`], [`JobStore::add_artifact`]), exclusive while the
    /// unreferenced ones are found and their bytes removed. So a replica never
    /// removes bytes another is about to record as a new job's (content is shared
    /// by digest: storing it again is a no-op when it is there). The default holds
    /// nothing: one process's own lock is enough for a store only it uses.
    async fn files_lock(&self, _exclusive: bool) -> Result<FilesLock, StoreError> {
        Ok(FilesLock(None))
    }

    /// Forgets the files no job refers to any more (its jobs deleted, or replaced
    /// by a rerun's) and returns their digests: the caller removes their bytes.
    /// Content is shared by digest, so a file stays while any job still has it.
    async fn drop_unreferenced_files(&self) -> Result<Vec<String>, StoreError>;

    /// Running jobs whose lease ran out go back to the queue (or end cancelled, if
    /// that was asked), their unfinished steps marked interrupted. Returns how many
    /// were queued again.
    async fn recover_jobs(&self) -> Result<u64, StoreError>;
}
