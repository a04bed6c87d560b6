//! Zero-downtime upgrades with the real binary: `hearth serve` started through a
//! `current` link, the link switched to another release, SIGUSR2; a client under
//! steady load and a stream left open through the change see no failure, the new
//! process is the one the link points at, and systemd hears its pid.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a failed step fails the test

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hearth_testkit::{Behaviour, FakeUpstream, pid_alive};

/// A release folder `dir/releases/NAME/bin/hearth` holding this build's binary
/// (hard-linked where it can be: the same file under another path).
fn release(dir: &Path, name: &str) -> PathBuf {
    let bin = dir.join("releases").join(name).join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let exe = bin.join("hearth");
    if std::fs::hard_link(env!("CARGO_BIN_EXE_hearth"), &exe).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_hearth"), &exe).unwrap();
    }
    exe
}

/// Points `dir/current` at release `name` in one rename, as `hearth deploy` does.
fn switch_current(dir: &Path, name: &str) {
    let tmp = dir.join("current.new");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(dir.join("releases").join(name), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("current")).unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Site {
    dir: tempfile::TempDir,
    port: u16,
    notify: UnixDatagram,
}

impl Site {
    fn new(upstream: &FakeUpstream) -> Site {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        std::fs::write(
            dir.path().join("hearth.toml"),
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\nworkers = 2\nshutdown_grace_secs = 30\n\
                 upgrade_timeout_secs = 60\nstatus_file = \"{status}\"\n\n\
                 [storage]\ndata_dir = \"{data}\"\n\n\
                 [[models]]\nname = \"m\"\nbackend = \"upstream\"\nbase_url = \"{base}\"\n",
                status = dir.path().join("status").display(),
                data = dir.path().join("data").display(),
                base = upstream.base_url(),
            ),
        )
        .unwrap();
        release(dir.path(), "1.0.0");
        release(dir.path(), "1.1.0");
        switch_current(dir.path(), "1.0.0");
        let notify = UnixDatagram::bind(dir.path().join("notify")).unwrap();
        notify
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        Site { dir, port, notify }
    }

    /// `current/bin/hearth serve`, as the unit starts it, with systemd's
    /// `NOTIFY_SOCKET` pointing at the test.
    fn start(&self) -> Child {
        let mut c = Command::new(self.dir.path().join("current/bin/hearth"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("HEARTH_") {
                c.env_remove(name);
            }
        }
        c.arg("serve")
            .arg("--config")
            .arg(self.dir.path().join("hearth.toml"))
            .env("NOTIFY_SOCKET", self.dir.path().join("notify"))
            .env("HEARTH_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        c.spawn().unwrap()
    }

    /// The next message systemd would get.
    fn notified(&self) -> String {
        let mut buf = [0u8; 256];
        let n = self
            .notify
            .recv(&mut buf)
            .expect("no notification within 60 s");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Site {
    /// Every Hearth started from this site's releases, even one a failed test left.
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .arg("-KILL")
            .arg("-f")
            .arg(
                self.dir
                    .path()
                    .join("current/bin/hearth")
                    .display()
                    .to_string(),
            )
            .status();
    }
}

/// The `X-Hearth-Instance` of the process answering `/ready` now.
async fn instance(client: &reqwest::Client, site: &Site) -> String {
    let r = client.get(site.url("/ready")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.headers()["x-hearth-instance"]
        .to_str()
        .unwrap()
        .to_owned()
}

fn sigusr2(pid: u32) {
    let ok = Command::new("kill")
        .arg("-USR2")
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn stop(pid: u32) {
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let until = Instant::now() + Duration::from_secs(20);
    while pid_alive(pid) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn exe_of(pid: u32) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .unwrap()
        .display()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upgrade_drops_no_request_and_finishes_the_open_stream() {
    let upstream = FakeUpstream::start().await.unwrap();
    upstream.set_default(Behaviour::ok("hi"));
    let site = Site::new(&upstream);
    let mut old = site.start();
    assert_eq!(site.notified(), "READY=1");
    // A new connection per request: the socket's accept queue is what changes hands.
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let before = instance(&client, &site).await;

    // A stream that lasts through the upgrade: 40 chunks 100 ms apart.
    let long_answer: String = (0..40).map(|i| format!("t{i} ")).collect();
    upstream.push(Behaviour::slow(
        &long_answer,
        40,
        Duration::from_millis(100),
    ));
    let mut stream = client
        .post(site.url("/v1/chat/completions"))
        .json(&serde_json::json!({"model": "m", "stream": true,
            "messages": [{"role": "user", "content": "count"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let first = stream.chunk().await.unwrap().unwrap();
    assert!(!first.is_empty());

    // Steady load from four clients until told to stop.
    let stop_load = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (client, url, stop_load, done) = (
            client.clone(),
            site.url("/v1/chat/completions"),
            stop_load.clone(),
            done.clone(),
        );
        load.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop_load.load(Ordering::SeqCst) {
                let r = client
                    .post(&url)
                    .json(&serde_json::json!({"model": "m",
                        "messages": [{"role": "user", "content": "hi"}]}))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => {
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(r) => failures.push(format!("HTTP {}", r.status())),
                    Err(e) => failures.push(format!("{e:?}")),
                }
            }
            failures
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    switch_current(site.dir.path(), "1.1.0");
    sigusr2(old.id());
    let main_pid = site.notified();
    let new_pid: u32 = main_pid
        .strip_prefix("MAINPID=")
        .unwrap_or_else(|| panic!("systemd was told {main_pid:?}, not the new main pid"))
        .parse()
        .unwrap();
    assert!(
        exe_of(new_pid).contains("releases/1.1.0/bin/hearth"),
        "the new process runs {}, not the release current points at",
        exe_of(new_pid)
    );

    // The open stream ends whole, from the old process.
    let mut body = String::from_utf8_lossy(&first).into_owned();
    while let Some(chunk) = stream.chunk().await.unwrap() {
        body.push_str(&String::from_utf8_lossy(&chunk));
    }
    let text: String = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: {"))
        .map(|l| serde_json::from_str::<serde_json::Value>(&format!("{{{l}")).unwrap())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(text, long_answer);
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    let status = tokio::task::spawn_blocking(move || old.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "the old process exited {status}");

    // More load on the new process alone, then stop and count.
    let at_switch = done.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_load.store(true, Ordering::SeqCst);
    let mut failures = Vec::new();
    for l in load {
        failures.extend(l.await.unwrap());
    }
    let served = done.load(Ordering::SeqCst);
    assert!(
        failures.is_empty(),
        "{} requests failed: {failures:?}",
        failures.len()
    );
    assert!(
        served > at_switch && at_switch > 0,
        "{at_switch} then {served} requests"
    );

    let after = instance(&client, &site).await;
    assert_ne!(before, after, "the old process still answers");
    // The status file is the new process's: the old one did not write "stopped".
    let status = std::fs::read_to_string(site.dir.path().join("status")).unwrap_or_default();
    assert!(!status.contains("stopped"), "{status}");
    stop(new_pid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_release_that_cannot_start_leaves_the_old_one_serving() {
    let upstream = FakeUpstream::start().await.unwrap();
    let site = Site::new(&upstream);
    let mut old = site.start();
    assert_eq!(site.notified(), "READY=1");
    let client = reqwest::Client::new();
    let before = instance(&client, &site).await;

    // A broken build: it exits at once.
    let broken = site.dir.path().join("releases/2.0.0/bin");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(
        broken.join("hearth"),
        "#!/bin/sh\necho 'broken build' >&2\nexit 3\n",
    )
    .unwrap();
    Command::new("chmod")
        .arg("755")
        .arg(broken.join("hearth"))
        .status()
        .unwrap();
    switch_current(site.dir.path(), "2.0.0");
    sigusr2(old.id());

    // It keeps answering, the same process, and is still the main pid.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert_eq!(instance(&client, &site).await, before);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(old.try_wait().unwrap().is_none(), "the old process exited");
    site.notify.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    assert!(
        site.notify.recv(&mut buf).is_err(),
        "systemd was told of a new main pid"
    );

    // A good release afterwards still takes over.
    site.notify.set_nonblocking(false).unwrap();
    switch_current(site.dir.path(), "1.1.0");
    sigusr2(old.id());
    let main_pid = site.notified();
    let new_pid: u32 = main_pid.trim_start_matches("MAINPID=").parse().unwrap();
    assert!(
        tokio::task::spawn_blocking(move || old.wait())
            .await
            .unwrap()
            .unwrap()
            .success()
    );
    assert_ne!(instance(&client, &site).await, before);
    stop(new_pid);
}
