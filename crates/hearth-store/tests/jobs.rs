//! The job store: queue order, steps, files, cancel, restart, claims across
//! processes (replicas), and the migration from the previous release's schema.
//! Each on SQLite and on Postgres (`common::both!`).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use common::{Db, both};
use hearth_store::{
    JobEnd, JobListQuery, JobStatus, NewFile, NewJob, NewStep, Scope, StepEnd, StepStatus,
};

mod common;

both!(
    jobs_are_claimed_in_arrival_order_once_each,
    steps_files_and_the_end_are_recorded,
    cancel_ends_a_queued_job_and_flags_a_running_one,
    a_restart_requeues_running_jobs_and_interrupts_their_step,
    the_previous_releases_database_gets_the_job_tables,
    the_jobs_releases_database_keeps_its_jobs_and_finds_unreferenced_files,
    a_lease_shows_a_cancel_and_an_expired_one_is_taken_back,
    workers_of_two_processes_claiming_at_once_take_each_job_once,
    a_dead_processs_job_is_taken_by_another_after_its_lease_and_reruns_its_step,
);

const LEASE: Duration = Duration::from_secs(30);

fn image(sha: &str) -> NewJob {
    NewJob {
        prompt: "plot it".into(),
        image_type: "png".into(),
        image: NewFile {
            name: "input.png".into(),
            sha256: sha.into(),
            size: 10,
            content_type: "image/png".into(),
            step_id: None,
        },
    }
}

fn step(kind: &str) -> NewStep {
    NewStep {
        kind: kind.into(),
        attempt: 1,
        input: "in".into(),
        model: Some("m".into()),
    }
}

fn ended(status: StepStatus, output: &str) -> StepEnd {
    StepEnd {
        status,
        output: Some(output.into()),
        detail: None,
        model: None,
        prompt_tokens: Some(5),
        completion_tokens: Some(7),
    }
}

async fn jobs_are_claimed_in_arrival_order_once_each(db: Db) {
    let store = db.open().await;
    let a = store.create_job("alice", image("aa")).await.unwrap();
    let b = store.create_job("bob", image("aa")).await.unwrap();
    assert_eq!(a.status(), JobStatus::Queued);
    let first = store.claim_next_job("w1", LEASE).await.unwrap().unwrap();
    assert_eq!(
        (first.id.as_str(), first.status()),
        (a.id.as_str(), JobStatus::Running)
    );
    assert!(first.started_at.is_some());
    let second = store.claim_next_job("w1", LEASE).await.unwrap().unwrap();
    assert_eq!(second.id, b.id);
    assert!(store.claim_next_job("w1", LEASE).await.unwrap().is_none());
    // Owners see their own; the list is newest first and pages.
    let mine = store
        .list_jobs(
            &Scope::Owner("alice"),
            &JobListQuery {
                limit: 10,
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(mine.data.len(), 1);
    assert!(
        store
            .job(&Scope::Owner("alice"), &b.id)
            .await
            .unwrap()
            .is_none()
    );
    let page = store
        .list_jobs(
            &Scope::All,
            &JobListQuery {
                limit: 1,
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.data[0].id, b.id);
    let rest = store
        .list_jobs(
            &Scope::All,
            &JobListQuery {
                limit: 1,
                cursor: page.next_cursor,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (rest.data[0].id.as_str(), rest.next_cursor),
        (a.id.as_str(), None)
    );
}

async fn steps_files_and_the_end_are_recorded(db: Db) {
    let store = db.open().await;
    let job = store.create_job("anonymous", image("aa")).await.unwrap();
    store.claim_next_job("w1", LEASE).await.unwrap().unwrap();
    let s0 = store.begin_step(&job.id, step("vision")).await.unwrap();
    assert_eq!((s0.seq, s0.status()), (0, StepStatus::Running));
    store
        .finish_step(&s0.id, &ended(StepStatus::Succeeded, "a chart"))
        .await
        .unwrap();
    let s1 = store.begin_step(&job.id, step("run")).await.unwrap();
    assert_eq!(s1.seq, 1);
    store
        .add_artifact(
            &job.id,
            NewFile {
                name: "chart.png".into(),
                sha256: "bb".into(),
                size: 3,
                content_type: "image/png".into(),
                step_id: Some(s1.id.clone()),
            },
        )
        .await
        .unwrap();
    store
        .finish_step(&s1.id, &ended(StepStatus::Succeeded, ""))
        .await
        .unwrap();
    let done = store
        .finish_job(
            &job.id,
            &JobEnd {
                status: JobStatus::Succeeded,
                error: None,
                error_code: None,
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status(), JobStatus::Succeeded);
    assert_eq!(done.step.as_deref(), Some("run"));
    // An ended job does not end again.
    let again = JobEnd {
        status: JobStatus::Failed,
        error: None,
        error_code: None,
    };
    assert!(store.finish_job(&job.id, &again).await.unwrap().is_none());
    let steps = store.steps(&job.id).await.unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0].output.as_deref(), Some("a chart"));
    assert_eq!(
        (steps[0].prompt_tokens, steps[0].completion_tokens),
        (Some(5), Some(7))
    );
    assert!(steps[0].duration_ms.is_some());
    let files = store.job_files(&job.id).await.unwrap();
    let names: Vec<_> = files
        .iter()
        .map(|f| (f.role.as_str(), f.name.as_str()))
        .collect();
    assert_eq!(names, [("input", "input.png"), ("artifact", "chart.png")]);
    // A finished job can be deleted, with its steps.
    assert!(
        !store
            .delete_job(&Scope::Owner("someone"), &job.id)
            .await
            .unwrap()
    );
    assert!(store.delete_job(&Scope::All, &job.id).await.unwrap());
    assert!(store.steps(&job.id).await.unwrap().is_empty());
}

async fn cancel_ends_a_queued_job_and_flags_a_running_one(db: Db) {
    let store = db.open().await;
    let running = store.create_job("anonymous", image("aa")).await.unwrap();
    let queued = store.create_job("anonymous", image("aa")).await.unwrap();
    store.claim_next_job("w1", LEASE).await.unwrap().unwrap();
    let q = store
        .request_cancel(&Scope::All, &queued.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(q.status(), JobStatus::Cancelled);
    let r = store
        .request_cancel(&Scope::All, &running.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.status(), JobStatus::Running);
    assert!(r.cancel_requested);
    assert!(store.claim_next_job("w1", LEASE).await.unwrap().is_none());
    assert!(
        store
            .request_cancel(&Scope::Owner("x"), &running.id)
            .await
            .unwrap()
            .is_none()
    );
}

async fn a_restart_requeues_running_jobs_and_interrupts_their_step(db: Db) {
    let store = db.open().await;
    let job = store.create_job("anonymous", image("aa")).await.unwrap();
    store.claim_next_job("w1", LEASE).await.unwrap().unwrap();
    let s = store.begin_step(&job.id, step("vision")).await.unwrap();
    store.close().await;

    let store = db.open().await;
    // Its worker's lease still runs: nothing is taken from it.
    assert_eq!(store.recover_jobs().await.unwrap(), 0);
    assert_eq!(store.release_job_leases("w1").await.unwrap(), 1);
    assert_eq!(store.recover_jobs().await.unwrap(), 1);
    let steps = store.steps(&job.id).await.unwrap();
    assert_eq!(
        (steps[0].id.as_str(), steps[0].status()),
        (s.id.as_str(), StepStatus::Interrupted)
    );
    let again = store.claim_next_job("w1", LEASE).await.unwrap().unwrap();
    assert_eq!(again.id, job.id);
    assert_eq!(
        again.started_at,
        store
            .job(&Scope::All, &job.id)
            .await
            .unwrap()
            .unwrap()
            .started_at
    );
}

async fn the_previous_releases_database_gets_the_job_tables(db: Db) {
    let raw = db.at_version(2).await;
    raw.exec(
        "INSERT INTO conversations (id, title, created_at, updated_at, owner) VALUES ('c1', 'old', 1, 1, 'k')",
        &[],
    )
    .await;
    raw.close().await;

    let store = db.open().await;
    assert_eq!(store.schema_version().await.unwrap(), db.current());
    assert!(
        store
            .conversation(&Scope::Owner("k"), "c1")
            .await
            .unwrap()
            .is_some()
    );
    let job = store.create_job("k", image("aa")).await.unwrap();
    assert_eq!(
        store
            .job(&Scope::Owner("k"), &job.id)
            .await
            .unwrap()
            .unwrap()
            .prompt,
        "plot it"
    );
}

async fn the_jobs_releases_database_keeps_its_jobs_and_finds_unreferenced_files(db: Db) {
    let raw = db.at_version(3).await;
    for (sha, job) in [("aa", Some("j1")), ("bb", None)] {
        raw.exec(
            "INSERT INTO files (sha256, size, content_type, created_at) VALUES ($1, 1, 'image/png', 1)",
            &[sha],
        )
        .await;
        if let Some(job) = job {
            raw.exec(
                "INSERT INTO jobs (id, owner, status, prompt, image_sha256, image_type, created_at, updated_at, queued_at) \
                 VALUES ($1, 'k', 'succeeded', 'p', $2, 'png', 1, 1, 1)",
                &[job, sha],
            )
            .await;
            raw.exec(
                "INSERT INTO job_files (job_id, role, name, sha256, size, content_type, created_at) \
                 VALUES ($1, 'input', 'input.png', $2, 1, 'image/png', 1)",
                &[job, sha],
            )
            .await;
        }
    }
    raw.close().await;

    let store = db.open().await;
    assert_eq!(store.schema_version().await.unwrap(), db.current());
    assert!(store.job(&Scope::Owner("k"), "j1").await.unwrap().is_some());
    assert_eq!(store.drop_unreferenced_files().await.unwrap(), ["bb"]);
}

async fn a_lease_shows_a_cancel_and_an_expired_one_is_taken_back(db: Db) {
    let store = db.open().await;
    let job = store.create_job("anonymous", image("aa")).await.unwrap();
    store
        .claim_next_job("w1", Duration::from_millis(200))
        .await
        .unwrap()
        .unwrap();
    let lease = Duration::from_millis(200);
    assert_eq!(
        store.renew_job_lease(&job.id, "w1", lease).await.unwrap(),
        Some(false)
    );
    assert_eq!(
        store.renew_job_lease(&job.id, "w2", lease).await.unwrap(),
        None
    );
    store.request_cancel(&Scope::All, &job.id).await.unwrap();
    assert_eq!(
        store.renew_job_lease(&job.id, "w1", lease).await.unwrap(),
        Some(true)
    );
    assert_eq!(store.recover_jobs().await.unwrap(), 0);
    // Its worker died: once the lease ran out, the cancel it never saw is applied.
    tokio::time::sleep(Duration::from_millis(300)).await;
    store.recover_jobs().await.unwrap();
    let j = store.job(&Scope::All, &job.id).await.unwrap().unwrap();
    assert_eq!(j.status(), JobStatus::Cancelled);
    assert_eq!(
        store.renew_job_lease(&job.id, "w1", lease).await.unwrap(),
        None
    );
}

/// Workers of two processes (replicas) claim at once, over several connections:
/// every job is taken exactly once, and none is left queued.
async fn workers_of_two_processes_claiming_at_once_take_each_job_once(db: Db) {
    let one = db.open().await;
    let two = db.open().await;
    let mut made = Vec::new();
    for _ in 0..30 {
        made.push(one.create_job("anonymous", image("aa")).await.unwrap().id);
    }
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let store = if w % 2 == 0 { one.clone() } else { two.clone() };
            tokio::spawn(async move {
                let mut took = Vec::new();
                while let Some(job) = store.claim_next_job(&format!("w{w}"), LEASE).await.unwrap() {
                    took.push(job.id);
                }
                took
            })
        })
        .collect();
    let mut taken = Vec::new();
    for w in workers {
        taken.extend(w.await.unwrap());
    }
    taken.sort();
    made.sort();
    assert_eq!(taken, made, "each job claimed once");
}

/// A replica dies mid-step (its leases are no longer renewed): another takes the
/// job once the lease ran out (not before), and the step it was at runs again.
async fn a_dead_processs_job_is_taken_by_another_after_its_lease_and_reruns_its_step(db: Db) {
    let lease = Duration::from_millis(700);
    let dying = db.open_with(lease, false).await;
    let other = db.open_with(lease, false).await;
    let job = dying.create_job("anonymous", image("aa")).await.unwrap();
    dying
        .claim_next_job("w-dying", lease)
        .await
        .unwrap()
        .unwrap();
    let vision = dying.begin_step(&job.id, step("vision")).await.unwrap();
    dying
        .finish_step(&vision.id, &ended(StepStatus::Succeeded, "a chart"))
        .await
        .unwrap();
    let code = dying.begin_step(&job.id, step("code")).await.unwrap();
    assert_eq!(
        dying
            .renew_job_lease(&job.id, "w-dying", lease)
            .await
            .unwrap(),
        Some(false)
    );
    // A live lease is left alone...
    assert_eq!(other.recover_jobs().await.unwrap(), 0);
    assert!(
        other
            .claim_next_job("w-other", lease)
            .await
            .unwrap()
            .is_none()
    );
    drop(dying);
    // ...an expired one is not.
    tokio::time::sleep(lease + Duration::from_millis(300)).await;
    assert_eq!(other.recover_jobs().await.unwrap(), 1);
    let again = other
        .claim_next_job("w-other", lease)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.id, job.id);
    let steps = other.steps(&job.id).await.unwrap();
    let states: Vec<_> = steps
        .iter()
        .map(|s| (s.kind.as_str(), s.status()))
        .collect();
    assert_eq!(
        states,
        [
            ("vision", StepStatus::Succeeded),
            ("code", StepStatus::Interrupted)
        ]
    );
    assert_eq!(steps[1].id, code.id);
    // The step it was at starts again, after the ones that ended.
    let rerun = other.begin_step(&job.id, step("code")).await.unwrap();
    assert_eq!(rerun.seq, 2);
    // The dead worker's lease is gone for good.
    assert_eq!(
        other
            .renew_job_lease(&job.id, "w-dying", lease)
            .await
            .unwrap(),
        None
    );
}
