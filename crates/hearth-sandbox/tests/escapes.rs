//! The escape and abuse suite: one test per attempt. Each script prints what it
//! observed; each test asserts the attempt failed (and that the script got that far),
//! and that the host is unharmed.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use hearth_sandbox::{Feature, LimitKind, Outcome};

/// Asserts the script ran to the end (printed `DONE`) and returns its stdout.
fn completed(o: &hearth_sandbox::Outcome) -> &str {
    assert!(o.stdout.contains("DONE"), "script did not finish: {o:#?}");
    &o.stdout
}

#[test]
fn cannot_connect_to_a_host_loopback_listener() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let o = run_py(
        &sandbox(),
        &format!(
            "import socket\n\
             for host in ['127.0.0.1', 'localhost']:\n\
             \x20   try:\n\
             \x20       socket.create_connection((host, {port}), timeout=3)\n\
             \x20       print('CONNECTED', host)\n\
             \x20   except OSError as e:\n\
             \x20       print('BLOCKED', host, e.errno)\n\
             print('DONE')"
        ),
    );
    let out = completed(&o);
    assert!(!out.contains("CONNECTED"), "{out}");
    assert_eq!(out.matches("BLOCKED").count(), 2, "{out}");
    assert!(listener.accept().is_err(), "the listener saw a connection");
}

#[test]
fn dns_lookup_fails() {
    let o = run_py(
        &sandbox(),
        "import socket\n\
         try:\n\
         \x20   print('RESOLVED', socket.getaddrinfo('example.com', 443))\n\
         except OSError as e:\n\
         \x20   print('BLOCKED', e)\n\
         print('DONE')",
    );
    let out = completed(&o);
    assert!(
        out.contains("BLOCKED") && !out.contains("RESOLVED"),
        "{out}"
    );
}

#[test]
fn cannot_read_etc_shadow() {
    assert!(
        std::path::Path::new("/etc/shadow").exists(),
        "test needs a host /etc/shadow"
    );
    let o = run_py(
        &sandbox(),
        "import os\n\
         try:\n\
         \x20   print('READ', open('/etc/shadow').read()[:20])\n\
         except OSError as e:\n\
         \x20   print('BLOCKED', type(e).__name__)\n\
         print('ETC', sorted(os.listdir('/etc')))\n\
         print('DONE')",
    );
    let out = completed(&o);
    assert!(out.contains("BLOCKED FileNotFoundError"), "{out}");
    assert!(!out.contains("shadow'"), "{out}");
}

#[test]
fn cannot_read_the_data_folder_or_homes() {
    // A stand-in for Hearth's data folder, next to the repository (not under /tmp).
    let data = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
    let secret = data.path().join("hearth.db");
    std::fs::write(&secret, "sk-data-folder-canary").unwrap();
    let o = run_py(
        &sandbox(),
        &format!(
            "import os\n\
             for p in [{secret:?}, {dir:?}, '/root', '/home', '/work', {repo:?}]:\n\
             \x20   try:\n\
             \x20       print('SEEN', p, open(p).read() if os.path.isfile(p) else os.listdir(p))\n\
             \x20   except OSError as e:\n\
             \x20       print('BLOCKED', p, type(e).__name__)\n\
             print('DONE')",
            secret = secret.display().to_string(),
            dir = data.path().display().to_string(),
            repo = env!("CARGO_MANIFEST_DIR"),
        ),
    );
    let out = completed(&o);
    assert!(!out.contains("SEEN") && !out.contains("canary"), "{out}");
    assert_eq!(out.matches("BLOCKED").count(), 6, "{out}");
}

#[test]
fn cannot_read_another_process_environ() {
    let mut victim = Command::new("sleep")
        .arg("60")
        .env("VICTIM_SECRET", "sk-victim-canary")
        .spawn()
        .unwrap();
    let pid = victim.id();
    let o = run_py(
        &sandbox(),
        &format!(
            "import os\n\
             pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n\
             print('PIDS', pids)\n\
             try:\n\
             \x20   print('READ', open('/proc/{pid}/environ').read())\n\
             except OSError as e:\n\
             \x20   print('BLOCKED', type(e).__name__)\n\
             for p in pids:\n\
             \x20   try:\n\
             \x20       print('ENV', p, open(f'/proc/{{p}}/environ').read())\n\
             \x20   except OSError:\n\
             \x20       pass\n\
             print('DONE')"
        ),
    );
    victim.kill().unwrap();
    victim.wait().unwrap();
    let out = completed(&o);
    assert!(
        out.contains("PIDS [1]"),
        "only the program itself is visible: {out}"
    );
    assert!(out.contains("BLOCKED FileNotFoundError"), "{out}");
    assert!(!out.contains("canary"), "{out}");
}

#[test]
fn cannot_write_outside_tmp_and_output() {
    let input = tempfile::tempdir().unwrap();
    let mut spec = py("import os\n\
         bad = ['/x', '/usr/x', '/usr/lib/x', '/etc/x', '/etc/passwd', '/sandbox/x', '/opt/venv/x', '/input/x', '/dev/x', '/proc/sys/kernel/hostname']\n\
         for p in bad:\n\
         \x20   try:\n\
         \x20       open(p, 'w').write('x')\n\
         \x20       print('WROTE', p)\n\
         \x20   except OSError as e:\n\
         \x20       print('BLOCKED', p, e.errno)\n\
         for p in ['/tmp/ok', '/output/ok']:\n\
         \x20   open(p, 'w').write('fine')\n\
         \x20   print('OK', p)\n\
         print('DONE')");
    spec.input = Some(input.path().to_owned());
    let o = run(&sandbox(), &spec);
    let out = completed(&o);
    assert!(!out.contains("WROTE"), "{out}");
    assert_eq!(out.matches("BLOCKED").count(), 10, "{out}");
    assert_eq!(out.matches("OK").count(), 2, "{out}");
    assert_eq!(
        std::fs::read_dir(input.path()).unwrap().count(),
        0,
        "host input folder untouched"
    );
}

const FORK_BOMB: &str = "import os\nwhile True:\n    os.fork()\n";

#[test]
fn fork_bomb_is_stopped_by_the_pids_limit() {
    let mut spec = py(FORK_BOMB);
    spec.limits.pids = 32;
    spec.limits.wall_time = Duration::from_secs(10);
    let start = Instant::now();
    let o = run(&sandbox(), &spec);
    assert!(start.elapsed() < Duration::from_secs(15));
    assert_limit(&o, Feature::Pids, LimitKind::Pids);
    assert_ne!(o.exit_code, Some(0));
    host_still_spawns();
}

#[test]
fn fork_bomb_after_unshare_newuser_is_still_stopped() {
    let mut spec = py(&format!(
        "import ctypes, os\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         r = libc.unshare(0x10000000)\n\
         print('UNSHARE', r, ctypes.get_errno(), flush=True)\n\
         {FORK_BOMB}"
    ));
    spec.limits.pids = 32;
    spec.limits.wall_time = Duration::from_secs(10);
    let o = run(&sandbox(), &spec);
    assert!(
        o.stdout.contains("UNSHARE -1 1"),
        "unshare must fail with EPERM: {o:#?}"
    );
    assert_limit(&o, Feature::Pids, LimitKind::Pids);
    host_still_spawns();
}

#[test]
fn clone_newuser_is_denied_too() {
    // Python's os.fork uses clone without namespace flags; call clone with CLONE_NEWUSER
    // directly (syscall 56 on x86-64, 220 on aarch64).
    let o = run_py(
        &sandbox(),
        "import ctypes, platform, signal\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         nr = 56 if platform.machine() == 'x86_64' else 220\n\
         r = libc.syscall(nr, 0x10000000 | signal.SIGCHLD, 0, 0, 0, 0)\n\
         if r == 0:\n\
         \x20   libc._exit(0)\n\
         print('CLONE', r, ctypes.get_errno())\n\
         print('DONE')",
    );
    assert!(completed(&o).contains("CLONE -1 1"), "{o:#?}");
}

#[test]
fn memory_hog_ends_with_memory() {
    let mut spec = py("chunks = []\nwhile True:\n    chunks.append(b'x' * (16 << 20))\n");
    spec.limits.memory_bytes = 256 << 20;
    let o = run(&sandbox(), &spec);
    assert_limit(&o, Feature::Memory, LimitKind::Memory);
    assert!(o.usage.peak_memory_bytes <= 520 << 20, "{o:#?}");
    host_still_spawns();
}

#[test]
fn busy_loop_ends_with_timeout() {
    let mut spec = py("while True:\n    pass\n");
    spec.limits.wall_time = Duration::from_secs(2);
    let start = Instant::now();
    let o = run(&sandbox(), &spec);
    assert_eq!(o.limit, Some(LimitKind::Timeout), "{o:#?}");
    assert_eq!(o.signal, Some(libc_sigkill()));
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(o.usage.wall_ms >= 2000, "{o:#?}");
}

#[test]
fn cpu_time_limit_ends_with_cpu() {
    let mut spec = py("while True:\n    pass\n");
    spec.limits.cpu_time = Some(Duration::from_secs(1));
    spec.limits.wall_time = Duration::from_secs(20);
    let o = run(&sandbox(), &spec);
    assert_eq!(o.limit, Some(LimitKind::Cpu), "{o:#?}");
}

#[test]
fn stdout_flood_is_capped() {
    let mut spec = py(
        "import sys\nfor _ in range(5000):\n    sys.stdout.write('y' * 1000 + '\\n')\nprint('DONE', file=sys.stderr)",
    );
    spec.limits.stdout_bytes = 64 * 1024;
    let o = run(&sandbox(), &spec);
    assert_eq!(o.exit_code, Some(0));
    assert!(o.stdout_truncated);
    assert_eq!(o.stdout.len(), 64 * 1024);
    assert!(o.stderr.contains("DONE") && !o.stderr_truncated);
}

#[test]
fn huge_file_is_capped() {
    let mut spec = py(
        "with open('/output/big.bin', 'wb') as f:\n    for _ in range(100):\n        f.write(b'z' * (1 << 20))\n",
    );
    spec.limits.output_bytes = 4 << 20;
    let o = run(&sandbox(), &spec);
    assert_eq!(o.limit, Some(LimitKind::OutputSize), "{o:#?}");
    let f = o.file("big.bin").unwrap();
    assert!(f.size <= 4 << 20 && f.size > 0, "{f:?}");
    assert!(o.stderr.contains("No space left"), "{}", o.stderr);

    // The same against the per-file limit (RLIMIT_FSIZE), with room in the folder.
    spec.limits.output_bytes = 64 << 20;
    spec.limits.file_size_bytes = 2 << 20;
    let o = run(&sandbox(), &spec);
    assert_eq!(o.limit, Some(LimitKind::OutputSize), "{o:#?}");
    let f = o.file("big.bin").unwrap();
    assert!(f.truncated && f.size == 2 << 20, "{f:?}");
}

#[test]
fn program_gets_default_signal_dispositions() {
    let o = run(
        &sandbox(),
        &hearth_sandbox::Spec {
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                "grep -E '^Sig(Blk|Ign)' /proc/self/status".into(),
            ],
            ..Default::default()
        },
    );
    let mask = |name: &str| {
        let line = o.stdout.lines().find(|l| l.starts_with(name)).unwrap();
        u64::from_str_radix(line.split('\t').nth(1).unwrap(), 16).unwrap()
    };
    assert_eq!(mask("SigBlk:"), 0, "{o:#?}");
    // glibc reserves signals 32/33 (their dispositions cannot be reset); SIGPIPE (13)
    // and every other classic signal must be back to default.
    assert_eq!(mask("SigIgn:") & 0x7fff_ffff, 0, "signals 1-31: {o:#?}");
}

#[test]
fn open_files_are_capped() {
    let mut spec = py("import os\n\
         fds = []\n\
         try:\n\
         \x20   while True:\n\
         \x20       fds.append(os.open('/dev/null', os.O_RDONLY))\n\
         except OSError as e:\n\
         \x20   print('CAPPED', len(fds), e.errno)\n\
         print('DONE')");
    spec.limits.open_files = 64;
    let o = run(&sandbox(), &spec);
    let out = completed(&o);
    assert!(out.contains("CAPPED 61 24"), "{out}");
}

#[test]
fn setuid_root_fails_and_no_capabilities() {
    let o = run_py(
        &sandbox(),
        "import os\n\
         for f in (os.setuid, os.setgid):\n\
         \x20   try:\n\
         \x20       f(0)\n\
         \x20       print('BECAME ROOT')\n\
         \x20   except OSError as e:\n\
         \x20       print('BLOCKED', e.errno)\n\
         st = dict(l.split(':\\t') for l in open('/proc/self/status').read().splitlines() if ':\\t' in l)\n\
         print('CAPS', st['CapEff'], st['CapPrm'], st['CapBnd'], 'NNP', st['NoNewPrivs'], 'SECCOMP', st['Seccomp'])\n\
         print('DONE')",
    );
    let out = completed(&o);
    assert!(!out.contains("BECAME ROOT"), "{out}");
    assert_eq!(out.matches("BLOCKED").count(), 2, "{out}");
    assert!(
        out.contains("CAPS 0000000000000000 0000000000000000 0000000000000000 NNP 1 SECCOMP 2"),
        "{out}"
    );
}

#[test]
fn ptrace_mount_and_unshare_fail() {
    let o = run_py(
        &sandbox(),
        "import ctypes, os\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         def attempt(name, r):\n\
         \x20   print(name, r, ctypes.get_errno())\n\
         attempt('PTRACE_TRACEME', libc.ptrace(0, 0, 0, 0))\n\
         child = os.fork()\n\
         if child == 0:\n\
         \x20   import time; time.sleep(5); os._exit(0)\n\
         attempt('PTRACE_ATTACH', libc.ptrace(16, child, 0, 0))\n\
         os.kill(child, 9)\n\
         attempt('MOUNT', libc.mount(b'tmpfs', b'/tmp', b'tmpfs', 0, None))\n\
         attempt('UMOUNT', libc.umount2(b'/usr', 2))\n\
         attempt('UNSHARE_NS', libc.unshare(0x00020000))\n\
         attempt('UNSHARE_NET', libc.unshare(0x40000000))\n\
         attempt('CHROOT', libc.chroot(b'/tmp'))\n\
         attempt('BPF', libc.syscall(321, 0, 0, 0))\n\
         attempt('KEYCTL', libc.syscall(250, 0, 0, 0))\n\
         print('DONE')",
    );
    let out = completed(&o);
    for name in [
        "PTRACE_TRACEME",
        "PTRACE_ATTACH",
        "MOUNT",
        "UMOUNT",
        "UNSHARE_NS",
        "UNSHARE_NET",
        "CHROOT",
        "BPF",
        "KEYCTL",
    ] {
        assert!(
            out.contains(&format!("{name} -1 1\n")),
            "{name} must fail with EPERM: {out}"
        );
    }
}

#[test]
fn background_child_is_killed_at_the_end() {
    let marker = format!("987.{}", std::process::id());
    let o = run_py(
        &sandbox(),
        &format!(
            "import subprocess, os\n\
             subprocess.Popen(['/bin/sleep', '{marker}'], start_new_session=True)\n\
             if os.fork() == 0:\n\
             \x20   os.setsid()\n\
             \x20   os.execv('/bin/sleep', ['sleep', '{marker}'])\n\
             print('DONE')"
        ),
    );
    completed(&o);
    assert!(o.usage.wall_ms < 10_000);
    // Nothing with the marker may survive on the host.
    std::thread::sleep(Duration::from_millis(200));
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains(&marker),
            "survivor: pid {:?}",
            entry.file_name()
        );
    }
}

#[test]
fn symlink_in_output_does_not_leak_host_files() {
    let host_secret = tempfile::NamedTempFile::new_in(env!("CARGO_MANIFEST_DIR")).unwrap();
    host_secret
        .as_file()
        .write_all(b"host-file-canary")
        .unwrap();
    let o = run_py(
        &sandbox(),
        &format!(
            "import os\n\
             os.symlink('/etc/shadow', '/output/shadow')\n\
             os.symlink({p:?}, '/output/secret')\n\
             os.symlink('/etc', '/output/etcdir')\n\
             os.symlink('/', '/output/root')\n\
             os.mkdir('/output/sub')\n\
             os.symlink('../../../../../../etc/passwd', '/output/sub/up')\n\
             open('/output/real.txt', 'w').write('ok')\n\
             print('DONE')",
            p = host_secret.path().display().to_string()
        ),
    );
    completed(&o);
    let names: Vec<&str> = o.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(names, ["real.txt"], "{o:#?}");
    assert!(o.files_truncated);
    for f in &o.files {
        let text = String::from_utf8_lossy(&f.data);
        assert!(!text.contains("canary") && !text.contains("root:"), "{f:?}");
    }
}

#[test]
fn two_sandboxes_cannot_see_each_other() {
    let sb = std::sync::Arc::new(sandbox());
    let writer = {
        let sb = sb.clone();
        std::thread::spawn(move || {
            run_py(
                &sb,
                "import time\n\
                 open('/tmp/secret-a', 'w').write('canary-a')\n\
                 open('/output/secret-a', 'w').write('canary-a')\n\
                 time.sleep(3)\n\
                 print('DONE')",
            )
        })
    };
    std::thread::sleep(Duration::from_millis(800));
    let reader = run_py(
        &sb,
        "import os\n\
         print('TMP', os.listdir('/tmp'), 'OUT', os.listdir('/output'))\n\
         print('PIDS', [p for p in os.listdir('/proc') if p.isdigit()])\n\
         print('DONE')",
    );
    let a = writer.join().unwrap();
    completed(&a);
    let out = completed(&reader);
    assert!(out.contains("TMP [] OUT []"), "{out}");
    assert!(out.contains("PIDS ['1']"), "{out}");
    assert!(reader.files.is_empty());
    assert_eq!(a.file("secret-a").unwrap().data, b"canary-a");
}

/// Hearth is multi-threaded (tokio spawns and retires threads all the time); the child
/// after `clone` must not call anything that synchronises with the parent's other threads.
/// glibc's set*id wrappers did: cloning while another thread was inside `pthread_create`
/// left the child waiting for that thread forever.
#[test]
fn runs_while_other_threads_come_and_go() {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::spawn(|| {}).join().unwrap();
            }
        })
    };
    let sb = sandbox();
    let mut spec = hearth_sandbox::Spec {
        argv: vec!["/bin/true".into()],
        ..Default::default()
    };
    spec.limits.wall_time = Duration::from_secs(10);
    let results: Vec<_> = (0..40)
        .map(|_| sb.run(&spec).map(|o| o.success()))
        .collect();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    churn.join().unwrap();
    for r in results {
        assert!(matches!(r, Ok(true)), "{r:?}");
    }
}

#[test]
fn hostname_and_network_interfaces_are_private() {
    let o = run_py(
        &sandbox(),
        "import socket, os\n\
         print('HOST', socket.gethostname())\n\
         print('IF', sorted(os.listdir('/sys/class/net')) if os.path.exists('/sys/class/net') else 'none')\n\
         print('NET', open('/proc/net/dev').read().count(':'))\n\
         print('DONE')",
    );
    let out = completed(&o);
    assert!(out.contains("HOST sandbox"), "{out}");
    assert!(out.contains("NET 1\n"), "only lo: {out}");
}

/// Hearth's own environment (API keys) must not reach the program, nor be readable via
/// `/proc/1/environ`. The test re-runs this binary with a canary in its environment so
/// that no test mutates its own process environment.
#[test]
fn hearth_environment_never_reaches_the_program() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "environment_probe",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HEARTH_API_KEYS", "sk-env-canary-123")
        .env("OPENAI_API_KEY", "sk-env-canary-456")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("PROBE RAN"),
        "the probe did not run: {stdout}\n{stderr}"
    );
}

#[test]
#[ignore = "helper for hearth_environment_never_reaches_the_program"]
fn environment_probe() {
    assert_eq!(
        std::env::var("HEARTH_API_KEYS").unwrap(),
        "sk-env-canary-123"
    );
    for isolation in [
        hearth_sandbox::Isolation::Namespaces,
        hearth_sandbox::Isolation::Landlock,
    ] {
        let o = run_py(
            &sandbox_with(isolation),
            "import os\n\
             print('ENV', dict(os.environ))\n\
             for p in ['/proc/1/environ', '/proc/self/environ', f'/proc/{os.getppid()}/environ']:\n\
             \x20   try:\n\
             \x20       print('FILE', p, open(p, 'rb').read())\n\
             \x20   except OSError as e:\n\
             \x20       print('DENIED', p, e)\n\
             print('DONE')",
        );
        let out = completed(&o);
        assert!(!out.contains("canary"), "{out}");
        assert!(out.contains("ENV {'PATH'"), "{out}");
    }
    println!("PROBE RAN");
}

/// With a cgroup controller the run names the limit; without one (an ordinary user, no
/// delegation) the rlimit fallback still stops the program, but cannot name the reason.
#[track_caller]
fn assert_limit(o: &Outcome, feature: Feature, limit: LimitKind) {
    let report = sandbox().check();
    let by_cgroup = report
        .features
        .iter()
        .any(|f| f.feature == feature && f.enforced && f.how.starts_with("cgroup v"));
    if by_cgroup {
        assert_eq!(o.limit, Some(limit), "{o:#?}");
    } else {
        assert!(!o.success(), "{o:#?}");
    }
}

#[track_caller]
fn host_still_spawns() {
    assert!(Command::new("true").status().is_ok_and(|s| s.success()));
}

const fn libc_sigkill() -> i32 {
    9
}

/// If Hearth itself dies mid-run, the whole sandbox dies with it (parent-death signal to
/// PID 1, and the kernel kills the rest of its PID namespace).
#[test]
fn sandbox_dies_with_hearth() {
    let marker = format!("985.{}", std::process::id());
    let mut hearth = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "long_running_probe",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PROBE_MARKER", &marker)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let survivors = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
                String::from_utf8_lossy(&cmdline).contains(&marker)
            })
            .count()
    };
    let start = Instant::now();
    while survivors() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the probe never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    hearth.kill().unwrap();
    hearth.wait().unwrap();
    let start = Instant::now();
    while survivors() > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "sandbox outlived Hearth"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
#[ignore = "helper for sandbox_dies_with_hearth"]
fn long_running_probe() {
    let marker = std::env::var("PROBE_MARKER").unwrap();
    let mut spec = hearth_sandbox::Spec {
        argv: vec![
            "/bin/sh".into(),
            "-c".into(),
            format!("/bin/sleep {marker} & /bin/sleep {marker}"),
        ],
        ..Default::default()
    };
    spec.limits.wall_time = Duration::from_secs(60);
    let _ = sandbox().run(&spec);
}
