//! How `hearth doctor --kube` logs in, run as the real binary: a kubeconfig's
//! exec credential plugin (shell scripts written by the tests) against the plain
//! fake API server; TLS with the kubeconfig's CA and a client certificate
//! (`openssl s_server`); in a pod, the service account's token and CA against a TLS
//! fake server that checks the token (`fixtures/kube/tls_api_server.py`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

#[path = "doctor_kube/support.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;

use support::{
    FakeApi, Kube, TOKEN, clean, fixtures, has, make_certs, openssl, python3, script, values,
};

/// A user logging in through an exec plugin (as EKS', GKE's and AKS' kubeconfigs
/// do): a script beside the kubeconfig (a relative command is relative to it), given
/// its args, env and KUBERNETES_EXEC_INFO, whose token the fake server requires.
#[test]
fn an_exec_plugin_gives_the_token() {
    let api = FakeApi::start("gpu-cluster");
    let out_dir = tempfile::tempdir().unwrap();
    let kube = Kube::with_user(
        &api.url,
        &format!(
            "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: ./bin/login.sh\n      args: [get-token, --cluster, lab]\n      env:\n      - name: PLUGIN_OUT\n        value: {}\n      - name: TOKEN_TO_GIVE\n        value: {TOKEN}\n      interactiveMode: Never\n      provideClusterInfo: true\n",
            out_dir.path().display()
        ),
    );
    script(
        &kube.dir.path().join("bin/login.sh"),
        r#"printf '%s' "$KUBERNETES_EXEC_INFO" > "$PLUGIN_OUT/info.json"
printf '%s\n' "$@" > "$PLUGIN_OUT/args"
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s","expirationTimestamp":"2030-01-01T00:00:00Z"}}\n' "$TOKEN_TO_GIVE"
"#,
    );
    let (code, out) = kube.doctor(&[]);
    assert_eq!(code, 0, "{out}");
    // The server answers 401 to a request without the plugin's token.
    assert!(
        has(
            &clean(&out, &api),
            "ok    kube  api server  http://[API] answers: Kubernetes v1.33.4+k3s1"
        ),
        "{out}"
    );
    assert!(api.seen().iter().any(|p| p == "/api/v1/nodes"));
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.path().join("info.json")).unwrap()).unwrap();
    assert_eq!(
        info,
        serde_json::json!({
            "apiVersion": "client.authentication.k8s.io/v1",
            "kind": "ExecCredential",
            "spec": {"interactive": false, "cluster": {"server": api.url}}
        })
    );
    assert_eq!(
        std::fs::read_to_string(out_dir.path().join("args")).unwrap(),
        "get-token\n--cluster\nlab\n"
    );
}

/// v1beta1, a command found on PATH, a client certificate answered instead of a
/// token: this plain-HTTP server cannot check a certificate, so the certificate
/// data must at least be read (a broken one fails as the kubeconfig's would).
#[test]
fn an_exec_plugin_on_path_and_its_certificate() {
    let api = FakeApi::start("gpu-cluster");
    let kube = Kube::with_user(
        &api.url,
        "    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: hearth-test-login\n",
    );
    let bin = kube.dir.path().join("path");
    script(
        &bin.join("hearth-test-login"),
        r#"printf '{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{"clientCertificateData":"not a certificate","clientKeyData":"nor a key"}}'
"#,
    );
    let (code, out) = kube.doctor_env(&[], &[("PATH", &bin)]);
    assert_eq!(code, 1, "{out}");
    assert!(
        has(&out, "FAIL  kube  kubeconfig") && out.contains("client certificate and key"),
        "{out}"
    );
}

/// A plugin that fails says why (its stderr); a missing one prints its installHint;
/// one that would prompt (interactiveMode: Always) is not run.
#[test]
fn a_failing_or_missing_exec_plugin_fails_with_its_message() {
    let api = FakeApi::start("gpu-cluster");
    let exec = |command: &str, more: &str| {
        format!(
            "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: {command}\n      interactiveMode: IfAvailable\n{more}"
        )
    };
    let kube = Kube::with_user(&api.url, &exec("./expired.sh", ""));
    script(
        &kube.dir.path().join("expired.sh"),
        "echo 'some progress' >&2\necho 'error: the refresh token has expired; run: az login' >&2\nexit 3\n",
    );
    let (code, out) = kube.doctor(&[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        has(&out, "FAIL  kube  credentials  ")
            && has(
                &out,
                "the exec plugin ./expired.sh failed (exit status: 3): some progress; error: the refresh token has expired; run: az login"
            )
            && has(
                &out,
                "fix: the kubeconfig's exec plugin must give a credential"
            ),
        "{out}"
    );
    assert!(api.seen().is_empty(), "{:?}", api.seen());

    let kube = Kube::with_user(
        &api.url,
        &exec(
            "hearth-test-no-such-login",
            "      installHint: Install gke-gcloud-auth-plugin for use with kubectl by following https://cloud.google.com/kubernetes-engine/docs/how-to/cluster-access-for-kubectl#install_plugin\n",
        ),
    );
    let (code, out) = kube.doctor(&[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        has(
            &out,
            "FAIL  kube  credentials  [CONFIG] (context lab): the exec plugin's command hearth-test-no-such-login is not installed (or not on PATH): Install gke-gcloud-auth-plugin for use with kubectl by following https://cloud.google.com/kubernetes-engine/docs/how-to/cluster-access-for-kubectl#install_plugin"
                .replace("[CONFIG]", &kube.config().display().to_string())
                .as_str()
        ),
        "{out}"
    );

    let kube = Kube::with_user(
        &api.url,
        "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: kubelogin\n      interactiveMode: Always\n",
    );
    let (code, out) = kube.doctor(&[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("asks for an interactive login (interactiveMode: Always), and hearth doctor does not prompt"), "{out}");

    let kube = Kube::with_user(&api.url, "    auth-provider:\n      name: gcp\n");
    let (code, out) = kube.doctor(&[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("logs in through an auth-provider plugin"),
        "{out}"
    );
}

/// A real TLS API server: `openssl s_server -WWW` serving the GPU cluster's answers
/// as files, requiring a client certificate from the CA. The kubeconfig carries the
/// CA, the client certificate and its key as base64 `-data`, as `kubectl config view
/// --raw` shows them; a kubeconfig with another cluster's CA must fail.
#[test]
fn tls_with_the_kubeconfig_ca_and_a_client_certificate() {
    use base64::Engine as _;
    let Some(openssl) = openssl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_certs(&openssl, d, "");
    make_certs(&openssl, d, "other-");
    // The files s_server -WWW serves: the request's path, relative to its folder.
    let www = d.join("www");
    for (path, from) in [
        ("version", "common/version.json"),
        ("api/v1/nodes", "gpu-cluster/api/v1/nodes.json"),
        (
            "apis/storage.k8s.io/v1/storageclasses",
            "common/apis/storage.k8s.io/v1/storageclasses.json",
        ),
        (
            "apis/networking.k8s.io/v1/ingressclasses",
            "common/apis/networking.k8s.io/v1/ingressclasses.json",
        ),
    ] {
        let to = www.join(path);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(fixtures().join(from), to).unwrap();
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(&openssl)
        .args(["s_server", "-quiet", "-WWW", "-Verify", "1", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(d.join("srv.pem"))
        .arg("-key")
        .arg(d.join("srv.key"))
        .arg("-CAfile")
        .arg(d.join("ca.pem"))
        .current_dir(&www)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "s_server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let b64 = |f: &str| {
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(d.join(f)).unwrap())
    };
    let kubeconfig = |ca: &str| {
        let path = d.join(format!("kubeconfig-{ca}"));
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: https://127.0.0.1:{port}\n  name: k\ncontexts:\n- context:\n    cluster: k\n    user: admin\n  name: k\ncurrent-context: k\nusers:\n- name: admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
                b64(ca),
                b64("cli.pem"),
                b64("cli.key")
            ),
        )
        .unwrap();
        path
    };
    let doctor = |config: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
            .args(["doctor", "--kube", "--kubeconfig"])
            .arg(config)
            .env_clear()
            .env("HOME", d)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = doctor(&kubeconfig("ca.pem"));
    let (bad_code, bad) = doctor(&kubeconfig("other-ca.pem"));
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains(&format!(
            "ok    kube  api server  https://127.0.0.1:{port} answers: Kubernetes v1.33.4+k3s1"
        )),
        "{out}"
    );
    assert!(out.contains("2 node(s) advertise nvidia.com/gpu"), "{out}");
    assert_eq!(bad_code, Some(1), "{bad}");
    assert!(
        bad.starts_with("FAIL  kube  api server  cannot reach the API server: ")
            && bad.contains("certificate"),
        "{bad}"
    );
}

/// In a pod: no kubeconfig, the API server from KUBERNETES_SERVICE_HOST/PORT, the
/// service account's token and CA from its folder (a temp folder here, through
/// HEARTH_DOCTOR_SERVICE_ACCOUNT). The fake server speaks TLS with a certificate
/// for 127.0.0.1 and wants the token, so an ok proves the CA was trusted and the
/// token sent; another cluster's CA, or no token, fails.
#[test]
fn in_a_pod_the_service_account_token_and_ca_over_tls() {
    let Some(openssl) = openssl() else { return };
    let Some(python) = python3() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_certs(&openssl, d, "");
    make_certs(&openssl, d, "other-");
    let mut server = Command::new(python)
        .arg(fixtures().join("tls_api_server.py"))
        .arg(d.join("srv.pem"))
        .arg(d.join("srv.key"))
        .arg(TOKEN)
        .arg(fixtures().join("gpu-cluster"))
        .arg(fixtures().join("common"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let port = port.trim().to_owned();
    let account = |name: &str, ca: Option<&str>, token: Option<&str>| {
        let sa = d.join(name);
        std::fs::create_dir_all(&sa).unwrap();
        if let Some(ca) = ca {
            std::fs::copy(d.join(ca), sa.join("ca.crt")).unwrap();
        }
        if let Some(token) = token {
            std::fs::write(sa.join("token"), token).unwrap();
        }
        sa
    };
    let doctor = |sa: &Path, args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
            .args(["doctor", "--kube"])
            .args(args)
            .env_clear()
            .env("HOME", d)
            .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
            .env("KUBERNETES_SERVICE_PORT", &port)
            .env("HEARTH_DOCTOR_SERVICE_ACCOUNT", sa)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).replace(&port, "PORT"),
        )
    };
    let v = values("two-gpu-external.yaml");
    let good = doctor(
        &account("sa", Some("ca.pem"), Some(&format!("{TOKEN}\n"))),
        &["--values", v.to_str().unwrap()],
    );
    let other_ca = doctor(&account("sa-other", Some("other-ca.pem"), Some(TOKEN)), &[]);
    let no_token = doctor(&account("sa-none", Some("ca.pem"), None), &[]);
    let wrong_token = doctor(&account("sa-wrong", Some("ca.pem"), Some("another")), &[]);
    server.kill().unwrap();
    server.wait().unwrap();

    let (code, out) = good;
    assert_eq!(code, Some(0), "{out}");
    assert!(
        has(
            &out,
            "ok    kube  api server    https://127.0.0.1:PORT answers: Kubernetes v1.33.4+k3s1"
        ) && has(
            &out,
            "ok    kube  gpu capacity  2 GPU(s) for 2 engine(s); 2 of 2 allocatable free"
        ),
        "{out}"
    );
    let (code, out) = other_ca;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.starts_with("FAIL  kube  api server  cannot reach the API server: ")
            && out.contains("certificate"),
        "{out}"
    );
    let (code, out) = no_token;
    assert_eq!(code, Some(1), "{out}");
    assert!(
        has(
            &out,
            "FAIL  kube  kubeconfig  in a pod (KUBERNETES_SERVICE_HOST is set) without a service account token: "
        ) && out.contains("sa-none/token"),
        "{out}"
    );
    // The server does check the token.
    let (code, out) = wrong_token;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("401 Unauthorized"), "{out}");
}
