//! Job files across replicas: two real `hearth serve` processes, each with its own
//! data folder, sharing one private PostgreSQL (the jobs) and one private S3 bucket
//! (moto_server: the job files). A job submitted through the first (which runs it,
//! the second running none) has its upload and its artifacts downloadable through
//! the second's `/api/jobs/{id}/files/{name}`, byte for byte, from the bucket;
//! neither data folder holds a job file. Deleting the job through the second
//! removes the objects from the bucket.
//!
//! Needs PostgreSQL (Debian), moto_server (PyPI, mk/objects.mk) and the sandbox's
//! venv; without the servers it says SKIPPED unless make's `HEARTH_TEST_*_REQUIRED`
//! are set.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hearth_testkit::s3::{ACCESS_KEY, BUCKET, PrivateS3, SECRET_KEY};
use hearth_testkit::{Behaviour, FakeUpstream};
use serde_json::Value;

mod common;
use common::{PNG, Served, hearth, submit_job, venv};

const KEY: &str = "sk-objects-replicas-1";

/// Every model's answer: a description, a plan and a script at once, the script
/// writing a CSV.
const ANSWER: &str = "A table of two rows.\n\n```python\nwith open(\"/output/table.csv\", \"w\") as f:\n    f.write(\"x,y\\n1,3\\n\")\nprint(\"done\")\n```";

/// One replica's config: its own data folder, `concurrency` job workers, files in
/// the bucket under `prefix`.
fn config(dir: &Path, name: &str, up: &str, s3: &PrivateS3, concurrency: usize) -> PathBuf {
    let mut toml = format!(
        "default_model = \"coder\"\n\
         [server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace_secs = 1\n\
         [storage]\ndata_dir = {:?}\nobjects = \"s3\"\n\
         [storage.s3]\nbucket = \"{BUCKET}\"\nprefix = \"replicas\"\nendpoint = \"{}\"\npath_style = true\n\
         [sandbox]\nvenv = {:?}\n\
         [jobs]\nvision_model = \"eyes\"\nreasoning_model = \"coder\"\ncode_model = \"coder\"\n\
         concurrency = {concurrency}\n\
         [[keys]]\nname = \"admin\"\nkey = \"{KEY}\"\nadmin = true\n",
        dir.join(name).display().to_string(),
        s3.endpoint(),
        venv().display().to_string(),
    );
    for (model, vision) in [("eyes", true), ("coder", false)] {
        toml.push_str(&format!(
            "[[models]]\nname = \"{model}\"\nbackend = \"upstream\"\nbase_url = \"{up}\"\nretries = 0\nvision = {vision}\n"
        ));
    }
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, toml).unwrap();
    path
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn get(base: &str, path: &str) -> reqwest::Response {
    client()
        .get(format!("{base}{path}"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
}

/// Waits for the job to end (as the second replica sees it); its final state.
async fn ended(base: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let job: Value = get(base, &format!("/api/jobs/{id}"))
            .await
            .json()
            .await
            .unwrap();
        if !["queued", "running"].contains(&job["status"].as_str().unwrap_or("queued")) {
            return job;
        }
        assert!(Instant::now() < deadline, "job {id} not ended: {job:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every file under `dir`, recursively (a data folder must hold no job file).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_files_stored_through_one_replica_are_served_by_the_other() {
    let Some(s3) = PrivateS3::start() else {
        return;
    };
    let Some(pg) = hearth_testkit::postgres::shared_for("objects_replicas") else {
        return;
    };
    let db = pg.database();
    let up = FakeUpstream::start().await.unwrap();
    up.set_default(Behaviour::ok(ANSWER));
    let dir = tempfile::tempdir().unwrap();
    let start = |name: &str, concurrency: usize| {
        let config = config(dir.path(), name, &up.base_url(), &s3, concurrency);
        Served::start(
            hearth()
                .args(["serve", "--config", config.to_str().unwrap()])
                .env("HEARTH_DATABASE_URL", db.url())
                .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
                .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
        )
    };
    // A runs the jobs; B serves the API only.
    let a = start("a", 1);
    let b = start("b", 0);

    let id = submit_job(&a.base, KEY).await;
    let job = ended(&b.base, &id).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let files = job["files"].as_array().unwrap();
    let names: Vec<&str> = files.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert!(
        names.contains(&"input.png") && names.contains(&"table.csv"),
        "{job:#}"
    );

    // Through B, which neither received the upload nor ran the script.
    let r = get(&b.base, &format!("/api/jobs/{id}/files/input.png")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-length"],
        PNG.len().to_string().as_str()
    );
    assert_eq!(&r.bytes().await.unwrap()[..], &PNG[..]);
    let r = get(&b.base, &format!("/api/jobs/{id}/files/table.csv")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"table.csv\""
    );
    assert_eq!(&r.bytes().await.unwrap()[..], b"x,y\n1,3\n");

    // The bytes are in the bucket, named by digest under the prefix, and in neither
    // replica's folder.
    let keys = s3.keys(BUCKET);
    for f in files {
        let sha = f["sha256"].as_str().unwrap();
        let key = format!("replicas/{}/{sha}", &sha[..2]);
        assert!(keys.contains(&key), "{key} not in {keys:?}");
    }
    for name in ["a", "b"] {
        let held: Vec<_> = files_under(&dir.path().join(name).join("files"));
        assert!(held.is_empty(), "{name} keeps job files locally: {held:?}");
    }

    // Deleting the job through B removes its objects from the bucket.
    let r = client()
        .delete(format!("{}/api/jobs/{id}", b.base))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let left = s3.keys(BUCKET);
    assert!(
        left.iter()
            .all(|k| !k.starts_with("replicas/") || k.starts_with("replicas/staging/")),
        "objects left after the delete: {left:?}"
    );

    let (code, log) = a.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("job files are kept in s3"), "{log}");
    assert!(
        !log.contains(SECRET_KEY),
        "the secret key was logged:\n{log}"
    );
    let (code, log) = b.stop();
    assert_eq!(code, Some(0), "{log}");
    assert!(
        !log.contains(SECRET_KEY),
        "the secret key was logged:\n{log}"
    );
}
