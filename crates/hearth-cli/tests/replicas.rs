//! Several Hearth replicas as one: three real `hearth serve` processes behind a real
//! nginx load balancer, sharing one private PostgreSQL (history, job queue, job
//! events), one private Redis (rate limits) and one private S3-compatible server
//! (job files), with `hearth worker` processes running the jobs.
//!
//! - History written through one replica is read through the others; a key's limit
//!   of N allows N of 3 × N requests through the balancer; two workers share 20
//!   jobs, each run once; a job's live events reach a replica that does not run it.
//! - A replica killed with SIGKILL mid-job and mid-traffic: its job is finished by a
//!   worker once its lease runs out, every message a client saw acknowledged is kept
//!   (once), and clients see at most a failed request they retry.
//!
//! Needs PostgreSQL, Redis, nginx and moto (what `make test` installs); without
//! them the tests say SKIPPED unless `make test`'s `HEARTH_TEST_*_REQUIRED` are set.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)]

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hearth_testkit::redis::PrivateRedis;
use hearth_testkit::s3::{self, PrivateS3};
use hearth_testkit::{Behaviour, FakeUpstream};
use serde_json::{Value, json};

mod common;
use common::{Served, hearth, submit_job, venv};

const ADMIN: &str = "sk-replicas-admin-key-0001";
const TEAM: &str = "sk-replicas-team-key-0002";
const N: usize = 9;

/// Every model's answer: a description, a plan and a script at once (the steps of
/// concurrent jobs ask in any order), the script writing a small CSV.
const ANSWER: &str = "A table of two rows.\n\n```python\nwith open(\"/output/table.csv\", \"w\") as f:\n    f.write(\"x,y\\n1,3\\n\")\nprint(\"done\")\n```";

fn nginx_bin() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| {
            assert!(
                std::env::var("HEARTH_TEST_NGINX_REQUIRED").as_deref() != Ok("1"),
                "nginx is not installed (Debian: nginx-light; make test installs it)"
            );
            eprintln!("SKIPPED: nginx is not installed (Debian: nginx-light)");
            None
        })
}

/// The servers every replica shares, and the models' fake.
struct Shared {
    db: hearth_testkit::postgres::Database,
    redis: PrivateRedis,
    objects: PrivateS3,
    up: FakeUpstream,
    nginx: PathBuf,
}

impl Shared {
    async fn start() -> Option<Shared> {
        let nginx = nginx_bin()?;
        let db = hearth_testkit::postgres::shared_for("replicas")?.database();
        let redis = PrivateRedis::start()?;
        let objects = PrivateS3::start()?;
        let up = FakeUpstream::start().await.unwrap();
        up.set_default(Behaviour::ok(ANSWER));
        Some(Shared {
            db,
            redis,
            objects,
            up,
            nginx,
        })
    }

    /// A config for one process (`concurrency` job workers) with its own data
    /// folder under `dir`; the database and Redis come from the environment.
    fn config(&self, dir: &Path, concurrency: usize) -> PathBuf {
        let mut toml = format!(
            "default_model = \"coder\"\n\
             [server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace_secs = 1\n\
             [storage]\ndata_dir = {:?}\nobjects = \"s3\"\n\
             [storage.s3]\nbucket = \"{}\"\nendpoint = \"{}\"\npath_style = true\n\
             [limits]\nbackend = \"redis\"\non_redis_error = \"closed\"\n\
             [sandbox]\nvenv = {:?}\n\
             [jobs]\nvision_model = \"eyes\"\nreasoning_model = \"coder\"\ncode_model = \"coder\"\n\
             concurrency = {concurrency}\nlease_secs = 3\n\
             [[keys]]\nname = \"admin\"\nkey_env = \"ADMIN_KEY\"\nadmin = true\n\
             [[keys]]\nname = \"team\"\nkey_env = \"TEAM_KEY\"\nrpm = {N}\n",
            dir.join("data").display().to_string(),
            s3::BUCKET,
            self.objects.endpoint(),
            venv().display().to_string(),
        );
        for (name, vision) in [("eyes", true), ("coder", false)] {
            toml.push_str(&format!(
                "[[models]]\nname = \"{name}\"\nbackend = \"upstream\"\nbase_url = \"{}\"\nretries = 0\nvision = {vision}\n",
                self.up.base_url()
            ));
        }
        let path = dir.join("hearth.toml");
        std::fs::write(&path, toml).unwrap();
        path
    }

    fn command(&self, args: &[&str], config: &Path) -> Command {
        let mut c = hearth();
        c.args(args)
            .arg("--config")
            .arg(config)
            .env("ADMIN_KEY", ADMIN)
            .env("TEAM_KEY", TEAM)
            .env("HEARTH_DATABASE_URL", self.db.url())
            .env("HEARTH_REDIS_URL", self.redis.url())
            .env("AWS_ACCESS_KEY_ID", s3::ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", s3::SECRET_KEY);
        c
    }

    fn replica(&self, dir: &Path, concurrency: usize) -> Served {
        let config = self.config(dir, concurrency);
        Served::start(&mut self.command(&["serve"], &config))
    }

    fn worker(&self, dir: &Path) -> Worker {
        let config = self.config(dir, 1);
        Worker::start(&mut self.command(&["worker"], &config))
    }
}

/// A running `hearth worker`: its log lines as they come.
struct Worker {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Worker {
    fn start(cmd: &mut Command) -> Worker {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let w = Worker { child, lines };
        w.wait_for("hearth worker is taking jobs");
        w
    }

    fn wait_for(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.lines.lock().unwrap().iter().any(|l| l.contains(text)) {
            assert!(
                Instant::now() < deadline,
                "no {text:?} from the worker in 30 s:\n{}",
                self.lines.lock().unwrap().join("\n")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The jobs it started, by id, in order.
    fn jobs_run(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["message"] == "running a job")
            .map(|v| v["job"].as_str().unwrap().to_owned())
            .collect()
    }

    /// SIGTERM, and its whole log.
    fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "hearth worker exited with {status}");
        std::thread::sleep(Duration::from_millis(100));
        self.lines.lock().unwrap().join("\n")
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx in front of `replicas`: round robin; a replica that refuses the connection
/// (it died) is skipped for the next one, transparently.
struct Nginx {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(bin: &Path, replicas: &[&str]) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let servers: String = replicas
            .iter()
            .map(|b| {
                format!(
                    "    server {} max_fails=1 fail_timeout=5s;\n",
                    b.trim_start_matches("http://")
                )
            })
            .collect();
        let d = dir.path().display();
        std::fs::write(
            dir.path().join("nginx.conf"),
            format!(
                "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
                 events {{ worker_connections 1024; }}\n\
                 http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
                 fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
                 upstream hearth {{\n{servers}    keepalive 16;\n  }}\n\
                 server {{\n    listen 127.0.0.1:{port};\n    client_max_body_size 32m;\n\
                 location / {{\n      proxy_pass http://hearth;\n      proxy_http_version 1.1;\n\
                 proxy_set_header Connection \"\";\n      proxy_buffering off;\n\
                 proxy_connect_timeout 2s;\n      proxy_read_timeout 120s;\n\
                 proxy_next_upstream error timeout;\n    }}\n  }}\n}}\n"
            ),
        )
        .unwrap();
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not listen in 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx {
            child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }
}

impl Drop for Nginx {
    /// SIGTERM (nginx's fast shutdown: the master stops its worker, then itself),
    /// SIGKILL only if it is still there after 5 s. A SIGKILL alone killed only the
    /// master and left its worker running, reparented to init, after every run.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

async fn get(base: &str, path: &str) -> (u16, Value) {
    let r = client()
        .get(format!("{base}{path}"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn new_conversation(base: &str) -> Result<String, String> {
    let r = client()
        .post(format!("{base}/api/hearth/conversations"))
        .bearer_auth(ADMIN)
        .json(&json!({}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status() != 200 && r.status() != 201 {
        return Err(format!("status {}", r.status()));
    }
    let c: Value = r.json().await.map_err(|e| e.to_string())?;
    Ok(c["id"].as_str().unwrap().to_owned())
}

/// What sending a chat message gave: the stored user message's id once the
/// server acknowledged it (`start`), and whether the reply ended (`done`).
#[derive(Debug, Default)]
struct Sent {
    acknowledged: Option<String>,
    done: bool,
    error: Option<String>,
}

async fn send(base: &str, conversation: &str, content: &str) -> Sent {
    let mut sent = Sent::default();
    let resp = match client()
        .post(format!(
            "{base}/api/hearth/conversations/{conversation}/messages"
        ))
        .bearer_auth(ADMIN)
        .json(&json!({"content": content}))
        .send()
        .await
    {
        Ok(r) if r.status() == 200 => r,
        Ok(r) => {
            sent.error = Some(format!("status {}", r.status()));
            return sent;
        }
        Err(e) => {
            sent.error = Some(e.to_string());
            return sent;
        }
    };
    let mut resp = resp;
    let mut buf = String::new();
    loop {
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            let Some(data) = event.trim().strip_prefix("data: ") else {
                continue;
            };
            let Ok(e) = serde_json::from_str::<Value>(data) else {
                continue;
            };
            match e["type"].as_str() {
                Some("start") => {
                    sent.acknowledged = e["user_message"]["id"].as_str().map(str::to_owned);
                    assert!(
                        sent.acknowledged.is_some(),
                        "a start without the user message: {e}"
                    );
                }
                Some("done") => {
                    sent.done = true;
                    return sent;
                }
                _ => {}
            }
        }
        match resp.chunk().await {
            Ok(Some(b)) => buf.push_str(&String::from_utf8_lossy(&b)),
            Ok(None) => return sent,
            Err(e) => {
                sent.error = Some(e.to_string());
                return sent;
            }
        }
    }
}

/// Waits (`secs` at most) for the job to end; its final state.
async fn ended(base: &str, id: &str, secs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (_, job) = get(base, &format!("/api/jobs/{id}")).await;
        if !["queued", "running"].contains(&job["status"].as_str().unwrap_or("queued")) {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} not ended in {secs} s: {job:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_behind_nginx_share_history_limits_jobs_and_events() {
    let Some(shared) = Shared::start().await else {
        return;
    };
    let dirs: Vec<_> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    // API-only replicas: the workers below run every job.
    let replicas: Vec<Served> = (0..3).map(|i| shared.replica(dirs[i].path(), 0)).collect();
    let bases: Vec<&str> = replicas.iter().map(|r| r.base.as_str()).collect();
    let nginx = Nginx::start(&shared.nginx, &bases);

    // History: written through one replica, read through the others and the balancer.
    let id = new_conversation(bases[0]).await.unwrap();
    let sent = send(bases[0], &id, "remember the number 7").await;
    assert!(sent.done, "{sent:?}");
    for base in bases.iter().skip(1).chain([&nginx.base.as_str()]) {
        let (status, c) = get(base, &format!("/api/hearth/conversations/{id}")).await;
        assert_eq!(status, 200, "{c}");
        let messages = c["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 2, "{c:#}");
        assert_eq!(messages[0]["content"], "remember the number 7");
        assert_eq!(messages[1]["content"], ANSWER);
    }

    // One key's limit, through the balancer (round robin over the replicas).
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..3 * N {
        let base = nginx.base.clone();
        set.spawn(async move {
            client()
                .post(format!("{base}/v1/chat/completions"))
                .bearer_auth(TEAM)
                .json(&json!({"model": "coder", "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
    }
    let statuses = set.join_all().await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        N,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [200, 429].contains(s)),
        "{statuses:?}"
    );

    // A job's live view on a replica that never runs it: the first job is queued
    // before any worker exists, its events followed on replica 2.
    let first = submit_job(bases[0], ADMIN).await;
    let events = client()
        .get(format!("{}/api/jobs/{first}/events", bases[2]))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let follow = tokio::spawn(async move {
        let mut events = events;
        let mut seen = String::new();
        while let Ok(Some(b)) = events.chunk().await {
            seen.push_str(&String::from_utf8_lossy(&b));
        }
        seen
    });

    // Two workers share the rest of the 20 jobs, submitted through the balancer.
    let workers = [shared.worker(dirs[3].path()), shared.worker(dirs[4].path())];
    let mut ids = vec![first.clone()];
    for _ in 1..20 {
        ids.push(submit_job(&nginx.base, ADMIN).await);
    }
    for id in &ids {
        let job = ended(&nginx.base, id, 240).await;
        assert_eq!(job["status"], "succeeded", "{job:#}");
    }
    let seen = tokio::time::timeout(Duration::from_secs(10), follow)
        .await
        .expect("the relayed events end the stream once the job ended")
        .unwrap();
    for want in ["\"type\":\"step\"", "\"status\":\"succeeded\""] {
        assert!(seen.contains(want), "replica 2 never saw {want}:\n{seen}");
    }

    let runs: Vec<Vec<String>> = workers.iter().map(Worker::jobs_run).collect();
    let all: Vec<&String> = runs.iter().flatten().collect();
    let unique: HashSet<&String> = all.iter().copied().collect();
    assert_eq!(all.len(), 20, "each job started once: {runs:?}");
    assert_eq!(unique, ids.iter().collect(), "{runs:?}");
    assert!(
        runs.iter().all(|r| !r.is_empty()),
        "both workers ran jobs: {runs:?}"
    );
    // Three model calls a job (vision, plan, code), none repeated; plus the two
    // chats and the N admitted requests above.
    assert_eq!(shared.up.hits(), 20 * 3 + 1 + N);

    for w in workers {
        w.stop();
    }
    drop(nginx);
    for r in replicas {
        let (code, log) = r.stop();
        assert_eq!(code, Some(0), "{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_job_and_mid_traffic_loses_nothing() {
    let Some(shared) = Shared::start().await else {
        return;
    };
    // The first vision request (the killed replica's) never answers.
    shared.up.script_model("eyes", [Behaviour::Stall]);
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let doomed = shared.replica(dirs[0].path(), 1);
    let others: Vec<Served> = (1..3).map(|i| shared.replica(dirs[i].path(), 0)).collect();
    let bases: Vec<String> = std::iter::once(doomed.base.clone())
        .chain(others.iter().map(|r| r.base.clone()))
        .collect();
    let nginx = Nginx::start(
        &shared.nginx,
        &bases.iter().map(String::as_str).collect::<Vec<_>>(),
    );

    let job = submit_job(&nginx.base, ADMIN).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while shared.up.hits() == 0 {
        assert!(
            Instant::now() < deadline,
            "the job's vision step never asked"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, running) = get(&bases[1], &format!("/api/jobs/{job}")).await;
    assert_eq!(running["status"], "running", "{running:#}");

    // Traffic through the balancer while the replica dies: conversations, one
    // message at a time; a request that fails before it was acknowledged is
    // retried, as a client would.
    let traffic = {
        let base = nginx.base.clone();
        tokio::spawn(async move {
            let until = Instant::now() + Duration::from_secs(6);
            let mut acknowledged: HashMap<String, Vec<(String, String)>> = HashMap::new();
            let (mut retries, mut cut) = (0, 0);
            let mut n = 0;
            while Instant::now() < until {
                let id = loop {
                    match new_conversation(&base).await {
                        Ok(id) => break id,
                        Err(_) => retries += 1,
                    }
                };
                // A reply the kill cut stays leased by the dead replica until its
                // lease runs out: the user goes on in a new conversation.
                let mut was_cut = false;
                for _ in 0..3 {
                    if was_cut {
                        break;
                    }
                    n += 1;
                    let content = format!("message {n}");
                    loop {
                        let sent = send(&base, &id, &content).await;
                        if let Some(m) = sent.acknowledged {
                            acknowledged
                                .entry(id.clone())
                                .or_default()
                                .push((m, content.clone()));
                            was_cut = !sent.done;
                            cut += usize::from(was_cut);
                            break;
                        }
                        retries += 1;
                        assert!(retries < 100, "the balancer keeps failing: {sent:?}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            (acknowledged, retries, cut)
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let log = doomed.kill();

    // A worker takes the job once the dead replica's lease runs out (3 s), and runs
    // its unfinished step again.
    let worker = shared.worker(dirs[3].path());
    let (acknowledged, retries, cut) = traffic.await.unwrap();
    let done = ended(&bases[1], &job, 60).await;
    assert_eq!(done["status"], "succeeded", "{done:#}\n{log}");
    assert_eq!(worker.jobs_run(), vec![job.clone()]);

    let total: usize = acknowledged.values().map(Vec::len).sum();
    assert!(total >= 3, "too little traffic to tell: {total}");
    for (id, sent) in &acknowledged {
        let (status, c) = get(&bases[2], &format!("/api/hearth/conversations/{id}")).await;
        assert_eq!(status, 200, "{c}");
        let users: Vec<(String, String)> = c["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "user")
            .map(|m| {
                (
                    m["id"].as_str().unwrap().to_owned(),
                    m["content"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        // Every acknowledged message, once, in order. (A request cut after its
        // message was stored but before the client heard so is retried, and may
        // then be stored twice: that one was never acknowledged.)
        let stored: Vec<&(String, String)> = users
            .iter()
            .filter(|u| sent.iter().any(|s| s.0 == u.0))
            .collect();
        assert_eq!(
            stored,
            sent.iter().collect::<Vec<_>>(),
            "conversation {id}: {c:#}"
        );
    }
    eprintln!(
        "{total} messages acknowledged, {cut} replies cut by the kill, {retries} requests retried"
    );

    worker.stop();
    drop(nginx);
    for r in others {
        let (code, log) = r.stop();
        assert_eq!(code, Some(0), "{log}");
    }
}
