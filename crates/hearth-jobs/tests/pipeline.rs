//! Jobs end to end: scripted models on the fake upstream, the real store, the real
//! sandbox (ruff, bandit and the script itself).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use hearth_jobs::{JobEvent, JobStatus};
use hearth_store::{ConversationStore, Scope};
use serde_json::json;

fn models(codes: &[&str]) -> serde_json::Value {
    json!({
        VISION: ["A line chart with three points: (1, 3), (2, 1), (3, 2)."],
        PLANNER: ["1. Hard-code the points. 2. Plot them. 3. Save /output/chart.png."],
        CODER: codes.iter().map(|c| script(c)).collect::<Vec<_>>(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_becomes_a_chart_through_every_step() {
    let fake = Fake::start(models(&[GOOD])).await;
    let data = tempfile::tempdir().unwrap();
    let config = config(&fake.base_url, true);
    let (jobs, _) = service(data.path(), &config, settings(&config)).await;
    let mut events = jobs.subscribe();
    let job = jobs
        .submit("alice", &png(), "plot these numbers")
        .await
        .unwrap();
    assert_eq!(job.status(), JobStatus::Queued);
    let view = finished(&jobs, &job.id).await;
    assert_status(&view, JobStatus::Succeeded);
    assert_eq!(
        steps(&view),
        [
            "vision:1:succeeded",
            "plan:1:succeeded",
            "code:1:succeeded",
            "critic:1:succeeded",
            "run:1:succeeded"
        ]
    );
    // Every step keeps its model, tokens and timing.
    let vision = &view.steps[0];
    assert_eq!(vision.model.as_deref(), Some(VISION));
    assert!(vision.completion_tokens.is_some() && vision.duration_ms.is_some());
    assert!(
        vision.input.contains("[image: png, sha256 "),
        "{}",
        vision.input
    );
    assert_eq!(
        view.steps[2].output.as_deref(),
        Some(format!("{GOOD}\n").as_str())
    );
    assert_eq!(view.steps[4].output.as_deref(), Some("chart written\n"));
    // The image went to the vision model as an image_url content part (a data: URL).
    let sent = fake.received_by(VISION);
    let parts = sent[0]["messages"][0]["content"].as_array().unwrap();
    assert_eq!(parts[1]["type"], "image_url");
    assert!(
        parts[1]["image_url"]["url"]
            .as_str()
            .unwrap()
            .starts_with("data:image/png;base64,iVBOR")
    );
    // The code prompt states the sandbox's rules.
    let code_prompt = fake.received_by(CODER)[0]["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        code_prompt.contains("no network") && code_prompt.contains("/input/input.png"),
        "{code_prompt}"
    );
    // The chart is a real PNG, stored by its digest.
    let files: Vec<_> = view
        .files
        .iter()
        .map(|f| (f.role.as_str(), f.name.as_str(), f.content_type.as_str()))
        .collect();
    assert_eq!(
        files,
        [
            ("input", "input.png", "image/png"),
            ("artifact", "chart.png", "image/png")
        ]
    );
    let (file, object) = jobs
        .file(&Scope::Owner("alice"), &job.id, "chart.png")
        .await
        .unwrap()
        .unwrap();
    let bytes = futures::TryStreamExt::try_fold(object.stream, Vec::new(), |mut v, c| async move {
        v.extend_from_slice(&c);
        Ok(v)
    })
    .await
    .unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 1000);
    assert_eq!(object.size, bytes.len() as u64);
    let on_disk = data
        .path()
        .join("files")
        .join(&file.sha256[..2])
        .join(&file.sha256);
    assert_eq!(std::fs::read(on_disk).unwrap(), bytes);
    assert!(
        jobs.file(&Scope::Owner("bob"), &job.id, "chart.png")
            .await
            .unwrap()
            .is_none()
    );
    // Listeners saw the steps and the end.
    let (mut seen, mut logs) = (Vec::new(), Vec::new());
    while let Ok(e) = events.try_recv() {
        match e {
            JobEvent::Step { kind, status, .. } => seen.push(format!("{kind}:{status}")),
            JobEvent::Log { step, line, .. } => logs.push(format!("{step}: {line}")),
            JobEvent::Status { .. } => {}
        }
    }
    assert!(seen.contains(&"run:succeeded".to_owned()), "{seen:?}");
    assert!(
        logs.contains(&"run: stdout: chart written".to_owned()),
        "{logs:?}"
    );
    assert!(
        logs.iter().any(|l| l.starts_with("run: wrote chart.png (")),
        "{logs:?}"
    );
    jobs.shutdown().await;
}

/// A data folder below one only its owner can pass (a `0700` home, `mktemp -d`): the
/// sandboxed program's user could not reach an input folder there, so runs get theirs
/// from the temp folder, and the work folder goes when the job ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_below_a_private_folder_runs_jobs() {
    use std::os::unix::fs::PermissionsExt;
    let fake = Fake::start(models(&[GOOD])).await;
    let private = tempfile::tempdir().unwrap();
    std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let data = private.path().join("data");
    let config = config(&fake.base_url, true);
    let (jobs, _) = service(&data, &config, settings(&config)).await;
    let job = jobs.submit("alice", &png(), "").await.unwrap();
    let view = finished(&jobs, &job.id).await;
    assert_status(&view, JobStatus::Succeeded);
    let work = std::env::temp_dir().join(format!(
        "hearth-jobs-{}",
        rustix::process::getuid().as_raw()
    ));
    let mode = std::fs::metadata(&work).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o711, "the shared work folder cannot be listed");
    assert!(
        !work.join(&job.id).exists(),
        "the job's work folder is removed"
    );
    jobs.shutdown().await;
}

/// Deleting a job removes its image and artifacts from `data_dir/files`, except
/// content another job still has (files are shared by digest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_job_removes_its_files_unless_another_job_has_them() {
    let fake = Fake::start(models(&[GOOD, GOOD])).await;
    let data = tempfile::tempdir().unwrap();
    let config = config(&fake.base_url, true);
    let (jobs, _) = service(data.path(), &config, settings(&config)).await;
    let alice = Scope::Owner("alice");
    let mut ids = Vec::new();
    for _ in 0..2 {
        let job = jobs.submit("alice", &png(), "").await.unwrap();
        let view = finished(&jobs, &job.id).await;
        assert_status(&view, JobStatus::Succeeded);
        ids.push(job.id);
    }
    let files = data.path().join("files");
    let path = |id: &str, name: &'static str| {
        let jobs = jobs.clone();
        let id = id.to_owned();
        let files = files.clone();
        async move {
            let sha = jobs
                .file(&alice, &id, name)
                .await
                .unwrap()
                .unwrap()
                .0
                .sha256;
            files.join(&sha[..2]).join(sha)
        }
    };
    let image = path(&ids[0], "input.png").await;
    let chart = path(&ids[0], "chart.png").await;
    assert_eq!(
        image,
        path(&ids[1], "input.png").await,
        "one copy per content"
    );
    assert!(jobs.delete(&alice, &ids[0]).await.unwrap());
    assert!(
        image.exists() && chart.exists(),
        "the other job still has them"
    );
    assert!(jobs.delete(&alice, &ids[1]).await.unwrap());
    assert!(
        !image.exists() && !chart.exists(),
        "no job has them any more"
    );
    jobs.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_blocked_by_bandit_goes_back_to_the_model_and_is_repaired() {
    let shell =
        "import os\nimport subprocess\n\nsubprocess.call(\"ls \" + os.getcwd(), shell=True)";
    let fake = Fake::start(models(&[shell, GOOD])).await;
    let data = tempfile::tempdir().unwrap();
    let config = config(&fake.base_url, true);
    let (jobs, _) = service(data.path(), &config, settings(&config)).await;
    let job = jobs.submit("anonymous", &png(), "").await.unwrap();
    let view = finished(&jobs, &job.id).await;
    assert_status(&view, JobStatus::Succeeded);
    assert_eq!(
        steps(&view),
        [
            "vision:1:succeeded",
            "plan:1:succeeded",
            "code:1:succeeded",
            "critic:1:failed",
            "code:2:succeeded",
            "critic:2:succeeded",
            "run:2:succeeded"
        ]
    );
    let detail = view.steps[3].detail.as_deref().unwrap();
    let review: hearth_jobs::Review = serde_json::from_str(detail).unwrap();
    // What the check used is kept beside the findings (the UI shows it).
    let usage = &serde_json::from_str::<serde_json::Value>(detail).unwrap()["usage"];
    assert!(usage["wall_ms"].as_u64().unwrap() > 0, "{usage}");
    let b602 = review
        .findings
        .iter()
        .find(|f| f.rule == "B602")
        .expect("bandit's B602");
    assert_eq!(
        (
            b602.tool.as_str(),
            b602.line,
            b602.severity.as_str(),
            b602.blocking
        ),
        ("bandit", 4, "high", true)
    );
    // The repair request carried the finding and the blocked script.
    let repair = fake.received_by(CODER)[1]["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        repair.contains("B602") && repair.contains("shell=True"),
        "{repair}"
    );
    jobs.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_syntax_error_is_caught_by_ruff_before_running() {
    let fake = Fake::start(models(&["def plot(:\n    pass", GOOD])).await;
    let data = tempfile::tempdir().unwrap();
    let config = config(&fake.base_url, true);
    let (jobs, _) = service(data.path(), &config, settings(&config)).await;
    let job = jobs.submit("anonymous", &png(), "").await.unwrap();
    let view = finished(&jobs, &job.id).await;
    assert_status(&view, JobStatus::Succeeded);
    let review: hearth_jobs::Review =
        serde_json::from_str(view.steps[3].detail.as_deref().unwrap()).unwrap();
    let syntax = &review.findings[0];
    assert_eq!(
        (
            syntax.tool.as_str(),
            syntax.rule.as_str(),
            syntax.line,
            syntax.blocking
        ),
        ("ruff", "invalid-syntax", 1, true)
    );
    // The script never ran before it was repaired.
    assert!(
        !steps(&view).contains(&"run:1:failed".to_owned()),
        "{:?}",
        steps(&view)
    );
    jobs.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_that_raises_gets_its_traceback_back_and_is_repaired() {
    let raises = "import pandas as pd\n\ndf = pd.DataFrame({\"a\": [1]})\nprint(df[\"missing\"])";
    let fake = Fake::start(models(&[raises, GOOD])).await;
    let data = tempfile::tempdir().unwrap();
    let config = config(&fake.base_url, true);
    let (jobs, _) = service(data.path(), &config, settings(&config)).await;
    let job = jobs.submit("anonymous", &png(), "").await.unwrap();
    let view = finished(&jobs, &job.id).await;
    assert_status(&view, JobStatus::Succeeded);
    assert_eq!(
        steps(&view)[2..],
        [
            "code:1:succeeded",
            "critic:1:succeeded",
            "run:1:failed",
            "code:2:succeeded",
            "critic:2:succeeded",
            "run:2:succeeded"
        ]
    );
    let repair = fake.received_by(CODER)[1]["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        repair.contains("Traceback") && repair.contains("KeyError: 'missing'"),
        "{repair}"
    );
    jobs.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repairs_stop_at_max_repairs() {
    let fake = Fake::start(models(&["raise SystemExit(3)", "raise SystemExit(3)"])).await;
    let data = tempfile::tempdir().unwrap();
    let mut config = config(&fake.base_url, true);
    config.jobs.max_repairs = 1;
    let (jobs, _) = service(data.path(), &config, settings(&config)).await;
    let job = jobs.submit("anonymous", &png(), "").await.unwrap();
    let view = finished(&jobs, &job.id).await;
    assert_eq!(view.job.status(), JobStatus::Failed);
    assert_eq!(view.job.error_code.as_deref(), Some("script"));
    assert!(
        view.job
            .error
            .as_deref()
            .unwrap()
            .contains("after 2 attempt(s)"),
        "{:?}",
        view.job.error
    );
    assert_eq!(fake.received_by(CODER).len(), 2);
    jobs.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_past_its_time_limit_ends_timeout_explained() {
    let fake = Fake::start(models(&["while True:\n    pass"])).await;
    let data = tempfile::tempdir().unwrap();
    let config = config(&fake.base_url, true);
    let mut s = settings(&config);
    s.limits.wall_time = Duration::from_secs(3);
    let (jobs, _) = service(data.path(), &config, s).await;
    let job = jobs.submit("anonymous", &png(), "").await.unwrap();
    let view = finished(&jobs, &job.id).await;
    assert_eq!(view.job.status(), JobStatus::Failed);
    assert_eq!(view.job.error_code.as_deref(), Some("timeout"));
    assert_eq!(
        view.job.error.as_deref(),
        Some("the script stopped after its 3 s time limit")
    );
    assert_eq!(view.job.step.as_deref(), Some("run"));
    jobs.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_hog_ends_memory_explained() {
    let fake = Fake::start(models(&["hog = b\"x\" * (1 << 30)\nprint(len(hog))"])).await;
    let data = tempfile::tempdir().unwrap();
    let config = config(&fake.base_url, true);
    let mut s = settings(&config);
    s.limits.memory_bytes = 256 << 20;
    let (jobs, _) = service(data.path(), &config, s).await;
    let job = jobs.submit("anonymous", &png(), "").await.unwrap();
    let view = finished(&jobs, &job.id).await;
    assert_eq!(view.job.status(), JobStatus::Failed, "{:?}", steps(&view));
    assert_eq!(
        view.job.error_code.as_deref(),
        Some("memory"),
        "{:?}",
        view.job.error
    );
    assert_eq!(
        view.job.error.as_deref(),
        Some("the script used more than its 256 MiB of memory")
    );
    jobs.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_mid_run_kills_the_sandbox() {
    let fake = Fake::start(models(&["import time\n\ntime.sleep(60)"])).await;
    let data = tempfile::tempdir().unwrap();
    let config = config(&fake.base_url, true);
    let (jobs, _) = service(data.path(), &config, settings(&config)).await;
    let mut events = jobs.subscribe();
    let job = jobs.submit("alice", &png(), "").await.unwrap();
    event(&mut events, &job.id, |e| matches!(e, JobEvent::Step { kind, status, .. } if kind == "run" && status == "running")).await;
    // Let the program start.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = Instant::now();
    assert!(
        jobs.cancel(&Scope::Owner("bob"), &job.id)
            .await
            .unwrap()
            .is_none()
    );
    jobs.cancel(&Scope::Owner("alice"), &job.id)
        .await
        .unwrap()
        .unwrap();
    let view = finished(&jobs, &job.id).await;
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(view.job.status(), JobStatus::Cancelled);
    assert_eq!(steps(&view).last().unwrap(), "run:1:cancelled");
    jobs.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_mid_model_call_aborts_it() {
    let fake = Fake::start(json!({VISION: [{"stall": true}]})).await;
    let data = tempfile::tempdir().unwrap();
    let config = config(&fake.base_url, true);
    let (jobs, _) = service(data.path(), &config, settings(&config)).await;
    let mut events = jobs.subscribe();
    let job = jobs.submit("anonymous", &png(), "").await.unwrap();
    event(
        &mut events,
        &job.id,
        |e| matches!(e, JobEvent::Step { kind, .. } if kind == "vision"),
    )
    .await;
    jobs.cancel(&Scope::All, &job.id).await.unwrap().unwrap();
    let view = finished(&jobs, &job.id).await;
    assert_eq!(view.job.status(), JobStatus::Cancelled);
    assert_eq!(steps(&view), ["vision:1:cancelled"]);
    jobs.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_job_resumes_at_the_step_it_was_in() {
    // The first code request never gets an answer; the second (after the restart)
    // gets the script.
    let fake = Fake::start(json!({
        VISION: ["three points"],
        PLANNER: ["plot them"],
        CODER: [{"stall": true}, script(GOOD)],
    }))
    .await;
    let data = tempfile::tempdir().unwrap();
    let config = config(&fake.base_url, true);
    let (jobs, store) = service(data.path(), &config, settings(&config)).await;
    let mut events = jobs.subscribe();
    let job = jobs.submit("anonymous", &png(), "").await.unwrap();
    event(
        &mut events,
        &job.id,
        |e| matches!(e, JobEvent::Step { kind, .. } if kind == "code"),
    )
    .await;
    // Stop once the code model holds the request.
    while fake.received_by(CODER).is_empty() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    jobs.shutdown().await;
    drop(jobs);
    store.close().await;

    let (jobs, _) = service(data.path(), &config, settings(&config)).await;
    let view = finished(&jobs, &job.id).await;
    assert_status(&view, JobStatus::Succeeded);
    assert_eq!(
        steps(&view),
        [
            "vision:1:succeeded",
            "plan:1:succeeded",
            "code:1:interrupted",
            "code:1:succeeded",
            "critic:1:succeeded",
            "run:1:succeeded"
        ]
    );
    // Nothing done before the restart was asked again.
    assert_eq!(
        (
            fake.received_by(VISION).len(),
            fake.received_by(PLANNER).len()
        ),
        (1, 1)
    );
    jobs.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_jobs_with_concurrency_one_run_in_arrival_order() {
    let fake = Fake::start(json!({
        VISION: ["first", "second"],
        PLANNER: ["plan", "plan"],
        CODER: [script("print('one')"), script("print('two')")],
    }))
    .await;
    let data = tempfile::tempdir().unwrap();
    let config = config(&fake.base_url, true);
    let (jobs, _) = service(data.path(), &config, settings(&config)).await;
    let a = jobs.submit("anonymous", &png(), "a").await.unwrap();
    let b = jobs.submit("anonymous", &png(), "b").await.unwrap();
    let (a, b) = (finished(&jobs, &a.id).await, finished(&jobs, &b.id).await);
    assert_eq!(
        (a.job.status(), b.job.status()),
        (JobStatus::Succeeded, JobStatus::Succeeded)
    );
    assert!(
        a.job.finished_at.unwrap() <= b.job.started_at.unwrap(),
        "{:?} {:?}",
        a.job,
        b.job
    );
    assert_eq!(a.steps.last().unwrap().output.as_deref(), Some("one\n"));
    assert_eq!(b.steps.last().unwrap().output.as_deref(), Some("two\n"));
    jobs.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vision_model_that_cannot_see_fails_the_job_at_once() {
    let fake = Fake::start(models(&[GOOD])).await;
    let data = tempfile::tempdir().unwrap();
    let config = config(&fake.base_url, false);
    let (jobs, _) = service(data.path(), &config, settings(&config)).await;
    let start = Instant::now();
    let job = jobs.submit("anonymous", &png(), "").await.unwrap();
    let view = finished(&jobs, &job.id).await;
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(view.job.status(), JobStatus::Failed);
    assert_eq!(view.job.error_code.as_deref(), Some("vision_unsupported"));
    let error = view.job.error.clone().unwrap();
    assert!(
        error.contains(&format!("`{VISION}`")) && error.contains("vision = true"),
        "{error}"
    );
    assert_eq!(steps(&view), ["vision:1:failed"]);
    assert!(fake.received().is_empty());
    jobs.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_checked_by_their_bytes() {
    let fake = Fake::start(json!({})).await;
    let data = tempfile::tempdir().unwrap();
    let config = config(&fake.base_url, true);
    let mut s = settings(&config);
    s.max_upload_bytes = 1000;
    let (jobs, _) = service(data.path(), &config, s).await;
    let pdf = jobs
        .submit("anonymous", b"%PDF-1.4\n...", "")
        .await
        .unwrap_err();
    assert_eq!(pdf.status(), 415);
    assert!(pdf.to_string().contains("a PDF document"), "{pdf}");
    let big = jobs
        .submit("anonymous", &vec![0u8; 2000], "")
        .await
        .unwrap_err();
    assert_eq!(big.status(), 413);
    assert!(
        jobs.list(
            &Scope::All,
            &hearth_jobs::JobListQuery {
                limit: 10,
                cursor: None
            }
        )
        .await
        .unwrap()
        .data
        .is_empty()
    );
    jobs.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_is_retried_from_its_failed_step_and_edited_code_runs() {
    let fake = Fake::start(models(&["raise SystemExit(3)", GOOD])).await;
    let data = tempfile::tempdir().unwrap();
    let mut config = config(&fake.base_url, true);
    config.jobs.max_repairs = 0;
    let (jobs, _) = service(data.path(), &config, settings(&config)).await;
    let job = jobs.submit("alice", &png(), "").await.unwrap();
    let view = finished(&jobs, &job.id).await;
    assert_eq!(view.job.error_code.as_deref(), Some("script"));
    // Retried: the failed run's traceback goes back to the code model; vision and
    // plan are not asked again.
    let again = jobs
        .retry(&Scope::Owner("alice"), &job.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.status(), JobStatus::Queued);
    let view = finished(&jobs, &job.id).await;
    assert_status(&view, JobStatus::Succeeded);
    assert_eq!(
        steps(&view)[2..],
        [
            "code:1:succeeded",
            "critic:1:succeeded",
            "run:1:failed",
            "code:2:succeeded",
            "critic:2:succeeded",
            "run:2:succeeded"
        ]
    );
    assert_eq!(
        (
            fake.received_by(VISION).len(),
            fake.received_by(CODER).len()
        ),
        (1, 2)
    );
    let e = jobs.retry(&Scope::All, &job.id).await.unwrap_err();
    assert_eq!(e.status(), 409);
    // Code the user edited goes through the critic and the run.
    jobs.edit_code(&Scope::Owner("alice"), &job.id, "print('edited')\n")
        .await
        .unwrap()
        .unwrap();
    let view = finished(&jobs, &job.id).await;
    assert_status(&view, JobStatus::Succeeded);
    assert_eq!(
        steps(&view)[8..],
        ["code:3:succeeded", "critic:3:succeeded", "run:3:succeeded"]
    );
    assert_eq!(view.steps[8].input, "edited by the user");
    assert_eq!(
        view.steps.last().unwrap().output.as_deref(),
        Some("edited\n")
    );
    assert!(
        jobs.retry(&Scope::Owner("bob"), &job.id)
            .await
            .unwrap()
            .is_none()
    );
    jobs.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_made_by_another_process_stops_the_run() {
    let fake = Fake::start(models(&["import time\n\ntime.sleep(60)"])).await;
    let data = tempfile::tempdir().unwrap();
    let config = config(&fake.base_url, true);
    let (runner, _) = service(data.path(), &config, settings(&config)).await;
    let (api, _) = unstarted(data.path(), &config, settings(&config)).await;
    let mut events = runner.subscribe();
    let job = api.submit("anonymous", &png(), "").await.unwrap();
    event(&mut events, &job.id, |e| matches!(e, JobEvent::Step { kind, status, .. } if kind == "run" && status == "running")).await;
    let start = Instant::now();
    api.cancel(&Scope::All, &job.id).await.unwrap().unwrap();
    let view = finished(&api, &job.id).await;
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(view.job.status(), JobStatus::Cancelled);
    runner.shutdown().await;
}
