//! What the `hearth doctor --kube` tests share: a fake API server answering with
//! recorded API answers (`fixtures/kube/`, see its README), a kubeconfig in a temp
//! folder, certificates made by openssl, and the ways to read the output.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)] // each test file uses some of it; helpers fail the test loudly; a missing tool says it skipped

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

pub const TOKEN: &str = "test-token-5f2a9c";

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kube")
}

pub fn values(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/helm/values")
        .join(name)
}

/// A fake API server for one recorded cluster, on a port of its own.
pub struct FakeApi {
    pub url: String,
    /// Every request's target (path and query), in order.
    seen: Arc<Mutex<Vec<String>>>,
}

impl FakeApi {
    pub fn start(cluster: &str) -> FakeApi {
        FakeApi::layered(&[cluster])
    }

    /// A cluster made of fixture folders, each over the next (then `common/`).
    pub fn layered(clusters: &[&str]) -> FakeApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mut dirs: Vec<PathBuf> = clusters.iter().map(|c| fixtures().join(c)).collect();
        dirs.push(fixtures().join("common"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                answer(stream, &dirs, &log);
            }
        });
        FakeApi { url, seen }
    }

    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// One request: its path's file from the first folder that has it; 401 without the
/// token; 404 (a `Status`, as the API server sends) for the rest.
fn answer(stream: TcpStream, dirs: &[PathBuf], log: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let target = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
    // The query (a field selector, a page size) is logged, not obeyed: the recorded
    // answers are what the server would have sent for it. A `continue` token asks
    // for the next page of a list: `PATH.continue.json`.
    let mut path = target.split('?').next().unwrap().to_owned();
    if target.contains("&continue=") || target.contains("?continue=") {
        path.push_str(".continue");
    }
    let mut authorized = false;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("authorization")
        {
            authorized = value.trim() == format!("Bearer {TOKEN}");
        }
    }
    log.lock().unwrap().push(target);
    let status = |code: u16, reason: &str, message: &str| {
        (
            format!("{code} {reason}"),
            format!(
                r#"{{"kind":"Status","apiVersion":"v1","metadata":{{}},"status":"Failure","message":"{message}","reason":"{reason}","code":{code}}}"#
            ),
        )
    };
    let (head, body) = if !authorized {
        status(401, "Unauthorized", "Unauthorized")
    } else if let Some(text) = dirs
        .iter()
        .map(|d| d.join(format!("{}.json", path.trim_start_matches('/'))))
        .find(|p| p.is_file() && !path.contains(".."))
        .map(|p| std::fs::read_to_string(p).unwrap())
    {
        ("200 OK".to_owned(), text)
    } else {
        status(
            404,
            "NotFound",
            &format!("the server could not find {path}"),
        )
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {head}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// A temp folder with a kubeconfig whose current context is the fake server.
pub struct Kube {
    pub dir: tempfile::TempDir,
}

impl Kube {
    pub fn new(server: &str, token: &str) -> Kube {
        Kube::with_user(server, &format!("    token: {token}\n"))
    }

    /// A kubeconfig whose user `admin` is `user` (YAML, indented under `user:`).
    pub fn with_user(server: &str, user: &str) -> Kube {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config"),
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: {server}\n  name: lab\ncontexts:\n- context:\n    cluster: lab\n    user: admin\n  name: lab\n- context:\n    cluster: elsewhere\n    user: admin\n  name: broken\ncurrent-context: lab\npreferences: {{}}\nusers:\n- name: admin\n  user:\n{user}"
            ),
        )
        .unwrap();
        Kube { dir }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    /// `hearth doctor --kube ARGS` with KUBECONFIG set to the file: exit code and stdout.
    pub fn doctor(&self, args: &[&str]) -> (i32, String) {
        self.doctor_env(args, &[])
    }

    /// `doctor` with more environment (the rest is cleared).
    pub fn doctor_env(&self, args: &[&str], env: &[(&str, &Path)]) -> (i32, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
            .args(["doctor", "--kube"])
            .args(args)
            .current_dir(self.dir.path())
            .env_clear()
            .env("HOME", self.dir.path())
            .env("KUBECONFIG", self.config())
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.is_empty(), "stderr: {stderr}");
        (out.status.code().unwrap_or(-1), stdout)
    }
}

/// Whether `out` has `line`, the columns' padding aside (it depends on the longest
/// check name in the report).
pub fn has(out: &str, line: &str) -> bool {
    let squeeze = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    squeeze(out).contains(&squeeze(line))
}

/// The output with the fake server's port (random) and the tests' folder replaced.
pub fn clean(out: &str, api: &FakeApi) -> String {
    out.replace(&api.url, "http://[API]")
        .replace(env!("CARGO_MANIFEST_DIR"), "[CRATE]")
}

/// `openssl` on PATH, or `None` with the reason printed (Debian's `openssl`).
pub fn openssl() -> Option<PathBuf> {
    let found = ["/usr/bin/openssl", "/bin/openssl"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    if found.is_none() {
        eprintln!("skipped: openssl is not installed (apt-get install openssl)");
    }
    found
}

pub fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate (X.509 v3, as
/// kubeadm and k3s make them), in `dir`.
pub fn make_certs(openssl: &Path, dir: &Path, prefix: &str) {
    let p = |name: &str| dir.join(format!("{prefix}{name}"));
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run_ok(
        Command::new(openssl)
            .args(["req", "-x509"])
            .args(ec)
            .args(["-days", "2", "-subj", "/CN=test-ca", "-keyout"])
            .arg(p("ca.key"))
            .arg("-out")
            .arg(p("ca.pem")),
    );
    for (who, subj, ext) in [
        (
            "srv",
            "/CN=kube-apiserver",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        ),
        (
            "cli",
            "/O=system:masters/CN=admin",
            "extendedKeyUsage=clientAuth\n",
        ),
    ] {
        std::fs::write(p(&format!("{who}.ext")), ext).unwrap();
        run_ok(
            Command::new(openssl)
                .arg("req")
                .args(ec)
                .args(["-subj", subj, "-keyout"])
                .arg(p(&format!("{who}.key")))
                .arg("-out")
                .arg(p(&format!("{who}.csr"))),
        );
        run_ok(
            Command::new(openssl)
                .args(["x509", "-req", "-days", "2", "-in"])
                .arg(p(&format!("{who}.csr")))
                .arg("-CA")
                .arg(p("ca.pem"))
                .arg("-CAkey")
                .arg(p("ca.key"))
                .arg("-CAcreateserial")
                .arg("-extfile")
                .arg(p(&format!("{who}.ext")))
                .arg("-out")
                .arg(p(&format!("{who}.pem"))),
        );
    }
}

/// `python3` on PATH, or `None` with the reason printed.
pub fn python3() -> Option<PathBuf> {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("python3"))
        .find(|p| p.is_file());
    if found.is_none() {
        eprintln!("skipped: python3 is not installed (apt-get install python3)");
    }
    found
}

/// An executable shell script at `path` (builtins only: the doctor runs with PATH
/// cleared in these tests).
pub fn script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}
