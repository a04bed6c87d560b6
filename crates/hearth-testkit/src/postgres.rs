//! A private PostgreSQL server for tests: Debian's `postgresql` binaries, run on a
//! free loopback port from a temporary folder, no system service.
//!
//! One server is shared by every test process of a user (nextest runs each test in
//! its own process, so a server per process would cost an `initdb` per test); each
//! test gets its own fresh database ([`PrivateServer::database`], dropped with it).
//! The first process to need the server makes it (`initdb`, `pg_ctl start`, fsync
//! off) under `$TMPDIR/hearth-test-postgres-<uid>/` and leaves a watchdog behind;
//! every process that uses it holds a shared lock on `server/users.lock` until it
//! exits, and the watchdog stops the server and removes the folder once no process
//! holds that lock. A setup lock orders the two, so a process never finds a server
//! being stopped.
//!
//! It speaks TLS too (`ssl = on`), with a certificate for `127.0.0.1` signed by a
//! CA of its own ([`PrivateServer::ca_cert`]), so `sslmode=verify-full` can be
//! tested; plain connections work as well.
//!
//! Postgres refuses to run as root: as root, its programs run as the `postgres`
//! user (or `nobody`), which owns the server's folder.
//!
//! Without the binaries, [`shared`] says SKIPPED and returns `None` (the test
//! passes), unless `HEARTH_TEST_POSTGRES_REQUIRED=1` (`make test`), where it fails.
// Test support: a server that cannot start fails the test that needs it, loudly,
// and a skip says so on stderr.
#![allow(clippy::panic, clippy::print_stderr)]

use std::fs::{File, OpenOptions};
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The superuser the server is made with.
pub const USER: &str = "hearth";
/// Its password (the server checks it: `scram-sha-256` on TCP).
pub const PASSWORD: &str = "hearth-test-secret";

/// Set to `1` to fail, not skip, when PostgreSQL is not installed.
pub const REQUIRED_ENV: &str = "HEARTH_TEST_POSTGRES_REQUIRED";

/// A running private server (see the module's header).
#[derive(Debug)]
pub struct PrivateServer {
    bin: PathBuf,
    /// `$TMPDIR/hearth-test-postgres-<uid>/server`.
    dir: PathBuf,
    port: u16,
    /// Held shared for as long as this process runs: the server stays up.
    _users: File,
}

/// A fresh database of the shared server; dropped (with its connections) on drop.
#[derive(Debug)]
pub struct Database {
    server: &'static PrivateServer,
    name: String,
}

impl Database {
    /// `postgres://hearth:PASSWORD@127.0.0.1:PORT/NAME`.
    pub fn url(&self) -> String {
        self.server.url(&self.name)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn server(&self) -> &'static PrivateServer {
        self.server
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = self.server.psql(
            "postgres",
            &format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name),
        );
    }
}

impl PrivateServer {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The CA that signed the server's certificate (for `sslrootcert`).
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("tls/ca.crt")
    }

    /// The URL of database `db` with the right password.
    pub fn url(&self, db: &str) -> String {
        self.url_as(USER, PASSWORD, db)
    }

    /// The URL of database `db` as `user` with `password` (a wrong one, in tests
    /// of what a refused login says).
    pub fn url_as(&self, user: &str, password: &str, db: &str) -> String {
        format!("postgres://{user}:{password}@127.0.0.1:{}/{db}", self.port)
    }

    /// A new empty database, its own to this test.
    pub fn database(&'static self) -> Database {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "hearth_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let out = self.psql("postgres", &format!("CREATE DATABASE \"{name}\""));
        assert!(
            out.status.success(),
            "CREATE DATABASE {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Database { server: self, name }
    }

    /// Runs `sql` with `psql` on database `db` (as the superuser, over TCP).
    pub fn psql(&self, db: &str, sql: &str) -> Output {
        Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
            .arg(self.url(db))
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run psql: {e}"))
    }
}

/// Whether the tests must fail, not skip, without PostgreSQL.
pub fn required() -> bool {
    std::env::var(REQUIRED_ENV).as_deref() == Ok("1")
}

/// The folder with `initdb`, `pg_ctl`, `postgres` and `psql`: the newest
/// `/usr/lib/postgresql/*/bin` (Debian's layout), else `initdb`'s folder on PATH.
pub fn bin_dir() -> Option<PathBuf> {
    let complete = |d: &Path| {
        ["initdb", "pg_ctl", "postgres", "psql"]
            .iter()
            .all(|b| d.join(b).is_file())
    };
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .filter(|(_, d)| complete(d))
        .collect();
    versions.sort();
    if let Some((_, d)) = versions.pop() {
        return Some(d);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|d| complete(d))
}

/// The shared server, started if needed; `None` (after printing SKIPPED) when
/// PostgreSQL is not installed and not [`required`].
pub fn shared() -> Option<&'static PrivateServer> {
    static SERVER: OnceLock<Option<PrivateServer>> = OnceLock::new();
    SERVER.get_or_init(start_or_join).as_ref()
}

/// As [`shared`], with the SKIPPED line naming `test`.
pub fn shared_for(test: &str) -> Option<&'static PrivateServer> {
    let s = shared();
    if s.is_none() {
        eprintln!(
            "SKIPPED {test}: PostgreSQL is not installed (Debian: apt-get install postgresql)"
        );
    }
    s
}

fn start_or_join() -> Option<PrivateServer> {
    let Some(bin) = bin_dir() else {
        assert!(
            !required(),
            "PostgreSQL is required ({REQUIRED_ENV}=1) but initdb/pg_ctl/postgres/psql were not \
             found under /usr/lib/postgresql/*/bin or on PATH: apt-get install postgresql"
        );
        eprintln!("SKIPPED: PostgreSQL is not installed (Debian: apt-get install postgresql)");
        return None;
    };
    let uid = std::fs::metadata("/proc/self").map_or(0, |m| m.uid());
    let base = std::env::temp_dir().join(format!("hearth-test-postgres-{uid}"));
    std::fs::create_dir_all(&base).unwrap_or_else(|e| panic!("{}: {e}", base.display()));
    let setup = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(base.join("setup.lock"))
        .unwrap_or_else(|e| panic!("{}: {e}", base.display()));
    setup
        .lock()
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", base.display()));
    let server = base.join("server");
    let port = match alive(&bin, &server) {
        Some(port) => port,
        None => make(&bin, &base, &server, uid),
    };
    let users = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(server.join("users.lock"))
        .unwrap_or_else(|e| panic!("{}: {e}", server.display()));
    users
        .lock_shared()
        .unwrap_or_else(|e| panic!("cannot lock {}: {e}", server.display()));
    drop(setup);
    Some(PrivateServer {
        bin,
        dir: server,
        port,
        _users: users,
    })
}

/// The port of the server in `server`, if it answers.
fn alive(bin: &Path, server: &Path) -> Option<u16> {
    let port: u16 = std::fs::read_to_string(server.join("port"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let ok = Command::new(bin.join("psql"))
        .args(["-X", "-At", "-c", "SELECT 1"])
        .arg(format!(
            "postgres://{USER}:{PASSWORD}@127.0.0.1:{port}/postgres"
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(port)
}

/// The user Postgres runs as when we are root, with its uid and gid.
fn server_user() -> (String, u32, u32) {
    for name in ["postgres", "nobody"] {
        let out = Command::new("id").args(["-u", name]).output();
        let gid = Command::new("id").args(["-g", name]).output();
        if let (Ok(u), Ok(g)) = (out, gid)
            && u.status.success()
            && g.status.success()
        {
            let num = |o: &Output| String::from_utf8_lossy(&o.stdout).trim().parse().ok();
            if let (Some(u), Some(g)) = (num(&u), num(&g)) {
                return (name.to_owned(), u, g);
            }
        }
    }
    panic!("running as root, and there is no `postgres` or `nobody` user to run PostgreSQL as");
}

/// `program` run as the server's user: as is, or through `runuser` as root.
fn as_server_user(uid: u32, program: &Path) -> Command {
    if uid == 0 {
        let (user, _, _) = server_user();
        let mut c = Command::new("runuser");
        c.args(["-u", &user, "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut c: Command, what: &str) {
    let out = c
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free loopback port: {e}"))
}

/// A new server in `server` (anything there before is removed), and its watchdog.
fn make(bin: &Path, base: &Path, server: &Path, uid: u32) -> u16 {
    let _ = std::fs::remove_dir_all(server);
    std::fs::create_dir_all(server.join("sock")).unwrap_or_else(|e| panic!("{e}"));
    let pwfile = server.join("pw");
    std::fs::write(&pwfile, PASSWORD).unwrap_or_else(|e| panic!("{e}"));
    certificates(&server.join("tls"));
    if uid == 0 {
        let (user, _, _) = server_user();
        run(
            {
                let mut c = Command::new("chown");
                c.arg("-R").arg(format!("{user}:")).arg(server);
                c
            },
            "chown",
        );
    }
    let data = server.join("data");
    let mut initdb = as_server_user(uid, &bin.join("initdb"));
    initdb
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            USER,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
        ])
        .args(["-E", "UTF8", "--locale=C", "--no-sync"])
        .arg(format!("--pwfile={}", pwfile.display()));
    run(initdb, "initdb");
    let mut last = String::new();
    for _ in 0..3 {
        let port = free_port();
        let mut start = as_server_user(uid, &bin.join("pg_ctl"));
        start
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(server.join("log"))
            .args(["-w", "-t", "60", "-o"])
            .arg(format!(
                "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off -c max_connections=400 \
                 -c shared_buffers=64MB -c ssl=on -c ssl_cert_file={tls}/server.crt \
                 -c ssl_key_file={tls}/server.key",
                server.join("sock").display(),
                tls = server.join("tls").display(),
            ))
            .arg("start")
            .stdin(Stdio::null());
        let out = start.output().unwrap_or_else(|e| panic!("pg_ctl: {e}"));
        if out.status.success() {
            std::fs::write(server.join("port"), port.to_string()).unwrap_or_else(|e| panic!("{e}"));
            watchdog(bin, base, server, uid);
            return port;
        }
        last = format!(
            "{}{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(server.join("log")).unwrap_or_default()
        );
    }
    panic!("pg_ctl start failed three times: {last}");
}

/// A CA, and a certificate for `127.0.0.1` and `localhost` it signed, in `dir`
/// (P-256 keys: quick to make). The key is 0600, as Postgres requires.
fn certificates(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let openssl = |args: &[&str]| {
        let mut c = Command::new("openssl");
        c.args(args).current_dir(dir);
        run(c, "openssl");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509", "-days", "30", "-subj", "/CN=hearth-test-ca"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.crt"],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req", "-subj", "/CN=localhost"][..],
            &ec,
            &["-keyout", "server.key", "-out", "server.csr"],
        ]
        .concat(),
    );
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "30",
        "-extfile",
        "san.ext",
        "-out",
        "server.crt",
    ]);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

/// Leaves a process that stops the server and removes its folder once no test
/// process holds `users.lock` (checked every 2 s, under the setup lock).
fn watchdog(bin: &Path, base: &Path, server: &Path, uid: u32) {
    let stop = if uid == 0 {
        format!("runuser -u {} -- ", server_user().0)
    } else {
        String::new()
    };
    let script = format!(
        r#"sleep 3
while :; do
  sleep 2
  exec 8>"{base}/setup.lock"
  flock -x 8
  [ -d "{server}" ] || exit 0
  if flock -x -n "{server}/users.lock" true; then
    {stop}"{pg_ctl}" -D "{server}/data" -m immediate -w stop >/dev/null 2>&1
    rm -rf "{server}"
    exit 0
  fi
  exec 8>&-
done"#,
        base = base.display(),
        server = server.display(),
        pg_ctl = bin.join("pg_ctl").display(),
    );
    let spawned = Command::new("bash")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
    if let Err(e) = spawned {
        eprintln!("cannot start the private PostgreSQL's watchdog (it stays up): {e}");
    }
}
