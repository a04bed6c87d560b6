//! [`JobStore`] for [`PgStore`]: `sqlite_jobs`' queries, with the claim that
//! several replicas make at once (`FOR UPDATE SKIP LOCKED`) and the recovery of
//! expired leases in one statement.

use std::time::Duration;

use async_trait::async_trait;

use crate::error::StoreError;
use crate::jobs::{
    Job, JobEnd, JobFile, JobListQuery, JobPage, JobStatus, JobStep, JobStore, NewFile, NewJob,
    NewStep, StepEnd, StepStatus,
};
use crate::model::Scope;
use crate::now_ms;
use crate::postgres::PgStore;
use crate::sqlite::{MAX_PAGE, decode_cursor, encode_cursor, millis};

const JOB_COLUMNS: &str = "id, owner, status, step, prompt, image_sha256, image_type, error, \
     error_code, cancel_requested, created_at, updated_at, started_at, finished_at";
const STEP_COLUMNS: &str = "id, job_id, seq, kind, attempt, status, input, output, detail, model, \
     prompt_tokens, completion_tokens, started_at, finished_at, duration_ms";
const FILE_COLUMNS: &str = "job_id, role, name, sha256, size, content_type, step_id, created_at";

/// Records content `file` (once per digest) and links it to `job_id` as `role`.
async fn link_file(
    tx: &mut sqlx::PgConnection,
    job_id: &str,
    role: &str,
    file: &NewFile,
    now: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO files (sha256, size, content_type, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (sha256) DO NOTHING",
    )
    .bind(&file.sha256)
    .bind(file.size)
    .bind(&file.content_type)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO job_files (job_id, role, name, sha256, size, content_type, step_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (job_id, role, name) DO UPDATE SET sha256 = excluded.sha256, \
           size = excluded.size, content_type = excluded.content_type, step_id = excluded.step_id",
    )
    .bind(job_id)
    .bind(role)
    .bind(&file.name)
    .bind(&file.sha256)
    .bind(file.size)
    .bind(&file.content_type)
    .bind(&file.step_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The advisory lock key of [`JobStore::files_lock`] ("hearth files", as a number).
const FILES_LOCK_KEY: i64 = 0x6865_6172_7468_6673;

#[async_trait]
impl JobStore for PgStore {
    async fn create_job(&self, owner: &str, new: NewJob) -> Result<Job, StoreError> {
        let now = self.stamp();
        let id = uuid::Uuid::new_v4().to_string();
        let mut tx = self.pool().begin().await?;
        let sql = format!(
            "INSERT INTO jobs (id, owner, status, prompt, image_sha256, image_type, created_at, queued_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $7) RETURNING {JOB_COLUMNS}"
        );
        let job: Job = sqlx::query_as(&sql)
            .bind(&id)
            .bind(owner)
            .bind(JobStatus::Queued.as_str())
            .bind(&new.prompt)
            .bind(&new.image.sha256)
            .bind(&new.image_type)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        link_file(&mut tx, &id, "input", &new.image, now).await?;
        tx.commit().await?;
        Ok(job)
    }

    async fn job(&self, scope: &Scope<'_>, id: &str) -> Result<Option<Job>, StoreError> {
        let (all, owner) = scope.binds();
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 AND ($2 OR owner = $3)");
        Ok(sqlx::query_as(&sql)
            .bind(id)
            .bind(all)
            .bind(owner)
            .fetch_optional(self.pool())
            .await?)
    }

    async fn list_jobs(&self, scope: &Scope<'_>, q: &JobListQuery) -> Result<JobPage, StoreError> {
        let limit = q.limit.clamp(1, MAX_PAGE);
        let (cursor_at, cursor_id) = match &q.cursor {
            Some(c) => decode_cursor(c)?,
            None => (i64::MAX, "\u{10FFFF}".to_owned()),
        };
        let (all, owner) = scope.binds();
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE ($4 OR owner = $5) \
               AND (created_at < $1 OR (created_at = $1 AND id < $2)) \
             ORDER BY created_at DESC, id DESC LIMIT $3"
        );
        let mut data: Vec<Job> = sqlx::query_as(&sql)
            .bind(cursor_at)
            .bind(cursor_id)
            .bind(i64::from(limit) + 1)
            .bind(all)
            .bind(owner)
            .fetch_all(self.pool())
            .await?;
        let next_cursor = if data.len() > limit as usize {
            data.truncate(limit as usize);
            data.last().map(|j| encode_cursor(j.created_at, &j.id))
        } else {
            None
        };
        Ok(JobPage { data, next_cursor })
    }

    async fn claim_next_job(
        &self,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<Job>, StoreError> {
        let now = now_ms();
        let sql = format!(
            "UPDATE jobs SET status = 'running', updated_at = $1, started_at = COALESCE(started_at, $1), \
               lease_owner = $2, lease_until = $3 \
             WHERE id = (SELECT id FROM jobs WHERE status = 'queued' ORDER BY queued_at, id \
                         LIMIT 1 FOR UPDATE SKIP LOCKED) \
               AND status = 'queued' \
             RETURNING {JOB_COLUMNS}"
        );
        Ok(sqlx::query_as(&sql)
            .bind(now)
            .bind(worker)
            .bind(now + millis(lease))
            .fetch_optional(self.pool())
            .await?)
    }

    async fn renew_job_lease(
        &self,
        id: &str,
        worker: &str,
        lease: Duration,
    ) -> Result<Option<bool>, StoreError> {
        Ok(sqlx::query_scalar(
            "UPDATE jobs SET lease_until = $3 \
             WHERE id = $1 AND lease_owner = $2 AND status = 'running' RETURNING cancel_requested",
        )
        .bind(id)
        .bind(worker)
        .bind(now_ms() + millis(lease))
        .fetch_optional(self.pool())
        .await?)
    }

    async fn release_job_leases(&self, worker: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET lease_until = 0 WHERE lease_owner = $1 AND status = 'running'",
        )
        .bind(worker)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    async fn set_job_step(&self, id: &str, step: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE jobs SET step = $2, updated_at = $3 WHERE id = $1")
            .bind(id)
            .bind(step)
            .bind(now_ms())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    async fn finish_job(&self, id: &str, end: &JobEnd) -> Result<Option<Job>, StoreError> {
        let now = now_ms();
        let sql = format!(
            "UPDATE jobs SET status = $2, error = $3, error_code = $4, updated_at = $5, finished_at = $5, \
               lease_owner = NULL, lease_until = NULL \
             WHERE id = $1 AND status IN ('queued', 'running') RETURNING {JOB_COLUMNS}"
        );
        Ok(sqlx::query_as(&sql)
            .bind(id)
            .bind(end.status.as_str())
            .bind(&end.error)
            .bind(&end.error_code)
            .bind(now)
            .fetch_optional(self.pool())
            .await?)
    }

    async fn request_cancel(&self, scope: &Scope<'_>, id: &str) -> Result<Option<Job>, StoreError> {
        let (all, owner) = scope.binds();
        let now = now_ms();
        sqlx::query(
            "UPDATE jobs SET cancel_requested = TRUE, updated_at = $2, \
               status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END, \
               error = CASE WHEN status = 'queued' THEN 'cancelled before it started' ELSE error END, \
               error_code = CASE WHEN status = 'queued' THEN 'cancelled' ELSE error_code END, \
               finished_at = CASE WHEN status = 'queued' THEN $2 ELSE finished_at END \
             WHERE id = $1 AND status IN ('queued', 'running') AND ($3 OR owner = $4)",
        )
        .bind(id)
        .bind(now)
        .bind(all)
        .bind(owner)
        .execute(self.pool())
        .await?;
        self.job(scope, id).await
    }

    async fn requeue_job(&self, scope: &Scope<'_>, id: &str) -> Result<Option<Job>, StoreError> {
        let (all, owner) = scope.binds();
        sqlx::query(
            "UPDATE jobs SET status = 'queued', error = NULL, error_code = NULL, \
               cancel_requested = FALSE, finished_at = NULL, queued_at = $2, updated_at = $2 \
             WHERE id = $1 AND status IN ('succeeded', 'failed', 'cancelled') AND ($3 OR owner = $4)",
        )
        .bind(id)
        .bind(self.stamp())
        .bind(all)
        .bind(owner)
        .execute(self.pool())
        .await?;
        self.job(scope, id).await
    }

    async fn delete_job(&self, scope: &Scope<'_>, id: &str) -> Result<bool, StoreError> {
        let (all, owner) = scope.binds();
        let done = sqlx::query(
            "DELETE FROM jobs WHERE id = $1 AND status <> 'running' AND ($2 OR owner = $3)",
        )
        .bind(id)
        .bind(all)
        .bind(owner)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn begin_step(&self, job_id: &str, new: NewStep) -> Result<JobStep, StoreError> {
        let id = uuid::Uuid::new_v4().to_string();
        let now = now_ms();
        let mut tx = self.pool().begin().await?;
        sqlx::query("UPDATE jobs SET step = $2, updated_at = $3 WHERE id = $1")
            .bind(job_id)
            .bind(&new.kind)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let sql = format!(
            "INSERT INTO job_steps (id, job_id, seq, kind, attempt, status, input, model, started_at) \
             SELECT $1, $2, COALESCE(MAX(seq), -1) + 1, $3, $4, 'running', $5, $6, $7 \
             FROM job_steps WHERE job_id = $2 RETURNING {STEP_COLUMNS}"
        );
        let step = sqlx::query_as(&sql)
            .bind(&id)
            .bind(job_id)
            .bind(&new.kind)
            .bind(new.attempt)
            .bind(&new.input)
            .bind(&new.model)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(step)
    }

    async fn finish_step(&self, step_id: &str, end: &StepEnd) -> Result<(), StoreError> {
        let now = now_ms();
        sqlx::query(
            "UPDATE job_steps SET status = $2, output = $3, detail = $4, model = COALESCE($5, model), \
               prompt_tokens = $6, completion_tokens = $7, finished_at = $8, duration_ms = $8 - started_at \
             WHERE id = $1",
        )
        .bind(step_id)
        .bind(end.status.as_str())
        .bind(&end.output)
        .bind(&end.detail)
        .bind(&end.model)
        .bind(end.prompt_tokens)
        .bind(end.completion_tokens)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn steps(&self, job_id: &str) -> Result<Vec<JobStep>, StoreError> {
        let sql = format!("SELECT {STEP_COLUMNS} FROM job_steps WHERE job_id = $1 ORDER BY seq");
        Ok(sqlx::query_as(&sql)
            .bind(job_id)
            .fetch_all(self.pool())
            .await?)
    }

    async fn add_artifact(&self, job_id: &str, file: NewFile) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        link_file(&mut tx, job_id, "artifact", &file, now_ms()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn job_files(&self, job_id: &str) -> Result<Vec<JobFile>, StoreError> {
        let sql = format!(
            "SELECT {FILE_COLUMNS} FROM job_files WHERE job_id = $1 \
             ORDER BY CASE role WHEN 'input' THEN 0 ELSE 1 END, name"
        );
        Ok(sqlx::query_as(&sql)
            .bind(job_id)
            .fetch_all(self.pool())
            .await?)
    }

    /// A transaction-scoped advisory lock on a transaction held open for the
    /// guard's life: released when it ends (a rollback on drop), also if this
    /// process dies (its connection closes).
    async fn files_lock(&self, exclusive: bool) -> Result<crate::jobs::FilesLock, StoreError> {
        let mut tx = self.pool().begin().await?;
        let sql = if exclusive {
            "SELECT pg_advisory_xact_lock($1)"
        } else {
            "SELECT pg_advisory_xact_lock_shared($1)"
        };
        sqlx::query(sql)
            .bind(FILES_LOCK_KEY)
            .execute(&mut *tx)
            .await?;
        Ok(crate::jobs::FilesLock(Some(Box::new(tx))))
    }

    async fn drop_unreferenced_files(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "DELETE FROM files WHERE NOT EXISTS \
             (SELECT 1 FROM job_files j WHERE j.sha256 = files.sha256) RETURNING sha256",
        )
        .fetch_all(self.pool())
        .await?)
    }

    /// One statement: the expired jobs go back to the queue (or end cancelled) and
    /// their unfinished steps are marked interrupted together, so that replicas
    /// sweeping at once never split a job's recovery, and a job reclaimed meanwhile
    /// (its new lease live) is left alone.
    async fn recover_jobs(&self) -> Result<u64, StoreError> {
        let now = now_ms();
        let queued: i64 = sqlx::query_scalar(
            "WITH expired AS ( \
               UPDATE jobs SET \
                 status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END, \
                 error = CASE WHEN cancel_requested THEN 'cancelled' ELSE error END, \
                 error_code = CASE WHEN cancel_requested THEN 'cancelled' ELSE error_code END, \
                 finished_at = CASE WHEN cancel_requested THEN $1 ELSE finished_at END, \
                 updated_at = $1, lease_owner = NULL, lease_until = NULL \
               WHERE status = 'running' AND (lease_until IS NULL OR lease_until < $1) \
               RETURNING id, status \
             ), steps AS ( \
               UPDATE job_steps SET status = $2, finished_at = $1, duration_ms = $1 - started_at \
               WHERE status = 'running' AND job_id IN (SELECT id FROM expired) \
             ) \
             SELECT COUNT(*) FROM expired WHERE status = 'queued'",
        )
        .bind(now)
        .bind(StepStatus::Interrupted.as_str())
        .fetch_one(self.pool())
        .await?;
        Ok(u64::try_from(queued).unwrap_or(0))
    }
}
