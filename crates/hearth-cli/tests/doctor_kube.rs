//! `hearth doctor --kube`, run as the real binary against a fake API server: a
//! local HTTP server answering with recorded API answers (`fixtures/kube/`, see its
//! README), reached through a kubeconfig written to a temp folder. The server
//! checks the bearer token, so a doctor that sent none would see 401s.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stderr
)] // helpers fail the test loudly; a missing openssl says it skipped

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

const TOKEN: &str = "test-token-5f2a9c";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kube")
}

fn values(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/helm/values")
        .join(name)
}

/// A fake API server for one recorded cluster, on a port of its own.
struct FakeApi {
    url: String,
    /// Every request's target (path and query), in order.
    seen: Arc<Mutex<Vec<String>>>,
}

impl FakeApi {
    fn start(cluster: &str) -> FakeApi {
        FakeApi::layered(&[cluster])
    }

    /// A cluster made of fixture folders, each over the next (then `common/`).
    fn layered(clusters: &[&str]) -> FakeApi {
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

    fn seen(&self) -> Vec<String> {
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
    // The query (a field selector) is logged, not obeyed: the recorded answers are
    // what the server would have sent for it.
    let path = target.split('?').next().unwrap().to_owned();
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
struct Kube {
    dir: tempfile::TempDir,
}

impl Kube {
    fn new(server: &str, token: &str) -> Kube {
        Kube::with_user(server, &format!("    token: {token}\n"))
    }

    /// A kubeconfig whose user `admin` is `user` (YAML, indented under `user:`).
    fn with_user(server: &str, user: &str) -> Kube {
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

    fn config(&self) -> PathBuf {
        self.dir.path().join("config")
    }

    /// `hearth doctor --kube ARGS` with KUBECONFIG set to the file: exit code and stdout.
    fn doctor(&self, args: &[&str]) -> (i32, String) {
        self.doctor_env(args, &[])
    }

    /// `doctor` with more environment (the rest is cleared).
    fn doctor_env(&self, args: &[&str], env: &[(&str, &Path)]) -> (i32, String) {
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
fn has(out: &str, line: &str) -> bool {
    let squeeze = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    squeeze(out).contains(&squeeze(line))
}

/// The output with the fake server's port (random) and the tests' folder replaced.
fn clean(out: &str, api: &FakeApi) -> String {
    out.replace(&api.url, "http://[API]")
        .replace(env!("CARGO_MANIFEST_DIR"), "[CRATE]")
}

#[test]
fn gpu_cluster_fits_two_vllm_models_and_three_gateways() {
    let api = FakeApi::start("gpu-cluster");
    let kube = Kube::new(&api.url, TOKEN);
    let v = values("two-gpu-external.yaml");
    let (code, out) = kube.doctor(&["--values", v.to_str().unwrap()]);
    insta::assert_snapshot!(clean(&out, &api), @r"
    ok    kube  api server    http://[API] answers: Kubernetes v1.33.4+k3s1
    ok    kube  nodes         3 node(s), 3 ready and schedulable
    ok    kube  gpu nodes     2 node(s) advertise nvidia.com/gpu: gpu-1 (1), gpu-2 (1); 2 in all
    ok    kube  storage       default StorageClass local-path (rancher.io/local-path)
    ok    kube  ingress       IngressClass nginx
    ok    kube  cert-manager  cert-manager installed, ClusterIssuer letsencrypt-prod exists
    ok    kube  gpu capacity  2 GPU(s) for 2 engine(s); 2 of 2 allocatable free
    ok    kube  memory        the pods ask 43.0 GiB of 134.5 GiB free (140.9 GiB allocatable less 6.4 GiB requested by 9 running pod(s); 1 Hearth pod(s) not counted, as an upgrade replaces them; 1 pod(s) Pending, not counted)
    8 ok, 0 warn, 0 fail
    ");
    assert_eq!(code, 0);
    // Asked through the API, with the token (the server answers 401 without it).
    let seen = api.seen();
    for path in [
        "/version",
        "/api/v1/nodes",
        "/apis/storage.k8s.io/v1/storageclasses",
        "/apis/networking.k8s.io/v1/ingressclasses",
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/certificates.cert-manager.io",
        "/apis/cert-manager.io/v1/clusterissuers/letsencrypt-prod",
    ] {
        assert!(
            seen.iter().any(|p| p.split('?').next() == Some(path)),
            "{path} not asked: {seen:?}"
        );
    }
    // Pods that finished hold nothing: the server leaves them out.
    assert!(
        seen.iter().any(|p| p
            == "/api/v1/pods?fieldSelector=status.phase%21%3DSucceeded%2Cstatus.phase%21%3DFailed"),
        "{seen:?}"
    );
}

/// The same cluster with both GPUs held by pods that run already (one asks it as a
/// limit alone, as GPU pods often do): the engines fit the nodes, not what is free.
#[test]
fn gpus_held_by_running_pods_are_not_free() {
    let api = FakeApi::layered(&["gpus-taken", "gpu-cluster"]);
    let kube = Kube::new(&api.url, TOKEN);
    let v = values("two-gpu-external.yaml");
    let (code, out) = kube.doctor(&["--values", v.to_str().unwrap()]);
    insta::assert_snapshot!(clean(&out, &api), @r"
    ok    kube  api server    http://[API] answers: Kubernetes v1.33.4+k3s1
    ok    kube  nodes         3 node(s), 3 ready and schedulable
    ok    kube  gpu nodes     2 node(s) advertise nvidia.com/gpu: gpu-1 (1), gpu-2 (1); 2 in all
    ok    kube  storage       default StorageClass local-path (rancher.io/local-path)
    ok    kube  ingress       IngressClass nginx
    ok    kube  cert-manager  cert-manager installed, ClusterIssuer letsencrypt-prod exists
    FAIL  kube  gpu capacity  llama-8b needs 1 GPU(s) on one node, and no node has them free; qwen-vl needs 1 GPU(s) on one node, and no node has them free; the engines need 2 GPU(s) in all; 0 of 2 are free: gpu-1 0 of 1 free (ml/trainer-0 holds 1), gpu-2 0 of 1 free (apps/comfyui-6d5b8c7f9-x2kqp holds 1)
          fix: free GPUs (`kubectl get pods -A -o wide` shows who runs where), add GPU nodes, lower models[].gpus, or fix vllm.nodeSelector to the GPU nodes' labels (`kubectl get nodes --show-labels`); pods would stay Pending
    ok    kube  memory        the pods ask 43.0 GiB of 98.5 GiB free (140.9 GiB allocatable less 42.4 GiB requested by 10 running pod(s))
    7 ok, 0 warn, 1 fail: fix the FAIL lines before serving
    ");
    assert_eq!(code, 1);

    // Only gpu-2 held: the first engine takes gpu-1, and the second finds none.
    let api = FakeApi::layered(&["one-gpu-taken", "gpu-cluster"]);
    let kube = Kube::new(&api.url, TOKEN);
    let v = values("two-gpu-external.yaml");
    let (code, out) = kube.doctor(&["--values", v.to_str().unwrap()]);
    assert!(
        has(
            &out,
            "FAIL  kube  gpu capacity  qwen-vl needs 1 GPU(s) on one node, and no node has them free; the engines need 2 GPU(s) in all; 1 of 2 are free: gpu-1 0 of 1 free (llama-8b of these values takes 1), gpu-2 0 of 1 free (apps/comfyui-6d5b8c7f9-x2kqp holds 1)"
        ),
        "{out}"
    );
    assert_eq!(code, 1);
}

#[test]
fn a_model_needing_two_gpus_on_one_node_does_not_fit_one_gpu_nodes() {
    let api = FakeApi::start("gpu-cluster");
    let kube = Kube::new(&api.url, TOKEN);
    let v = values("jobs-gvisor.yaml");
    let (code, out) = kube.doctor(&["--values", v.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        has(
            &out,
            "FAIL  kube  gpu capacity  qwen-vl needs 2 GPU(s) on one node; the most a node has is 1"
        ),
        "{out}"
    ); // The workers' gVisor is there.
    assert!(
        has(
            &out,
            "ok    kube  runtime class  gvisor (handler runsc) for the job workers"
        ),
        "{out}"
    );
}

#[test]
fn without_the_device_plugin_gpu_nodes_fail_with_the_operator_to_install() {
    let api = FakeApi::start("no-device-plugin");
    let kube = Kube::new(&api.url, TOKEN);
    let (code, out) = kube.doctor(&[]);
    insta::assert_snapshot!(clean(&out, &api), @r"
    ok    kube  api server  http://[API] answers: Kubernetes v1.33.4+k3s1
    ok    kube  nodes       3 node(s), 3 ready and schedulable
    FAIL  kube  gpu nodes   no node advertises nvidia.com/gpu; gpu-1, gpu-2 labelled nvidia.com/gpu.present=true: the device plugin is not running there
          fix: install the NVIDIA GPU operator (`helm install gpu-operator nvidia/gpu-operator -n gpu-operator --create-namespace`; MicroK8s: `microk8s enable nvidia`) or the NVIDIA device plugin on the GPU nodes; docs/kubernetes.md
    ok    kube  storage     default StorageClass local-path (rancher.io/local-path)
    ok    kube  ingress     IngressClass(es) nginx, default nginx
    4 ok, 0 warn, 1 fail: fix the FAIL lines before serving
    ");
    assert_eq!(code, 1);

    // A GPU model's values: no room for it either.
    let v = values("one-gpu.yaml");
    let (code, out) = kube.doctor(&["--values", v.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        has(
            &out,
            "FAIL  kube  gpu capacity  qwen-coder needs 1 GPU(s) on one node; the most a node has is 0"
        ),
        "{out}"
    );
    // CPU-only values need no GPU; they ask cert-manager, which this cluster lacks,
    // and the k3s IngressClass `traefik`, which it does not have.
    let v = values("cpu-sqlite.yaml");
    let (code, out) = kube.doctor(&["--values", v.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        has(
            &out,
            "ok    kube  gpu nodes     no node advertises nvidia.com/gpu; gpu-1, gpu-2 labelled nvidia.com/gpu.present=true: the device plugin is not running there; the values need none (CPU-only)"
        ),
        "{out}"
    );
    assert!(
        has(
            &out,
            "FAIL  kube  ingress       the values ask for IngressClass traefik; the cluster has nginx"
        ),
        "{out}"
    );
    assert!(
        has(
            &out,
            "FAIL  kube  cert-manager  the values ask cert-manager for the certificate, and its CRDs are not installed"
        ),
        "{out}"
    );
    // Jobs in the gateway on gVisor, which this cluster does not have.
    assert!(
        has(
            &out,
            "FAIL  kube  runtime class  the values run the gateway (it runs the jobs) on RuntimeClass gvisor, which the cluster does not have"
        ),
        "{out}"
    );
}

#[test]
fn without_a_default_storage_class_claims_would_stay_pending() {
    let api = FakeApi::start("no-default-storageclass");
    let kube = Kube::new(&api.url, TOKEN);
    let (code, out) = kube.doctor(&[]);
    insta::assert_snapshot!(clean(&out, &api), @r#"
    ok    kube  api server  http://[API] answers: Kubernetes v1.33.4+k3s1
    ok    kube  nodes       1 node(s), 1 ready and schedulable
    ok    kube  gpu nodes   1 node(s) advertise nvidia.com/gpu: homelab (1); 1 in all
    FAIL  kube  storage     no default StorageClass (there are: local-path, nfs-client): claims that name none stay Pending
          fix: mark one default (`kubectl patch storageclass NAME -p '{"metadata":{"annotations":{"storageclass.kubernetes.io/is-default-class":"true"}}}'`; MicroK8s: `microk8s enable hostpath-storage`), or set state.persistence.storageClass and vllm.cache.storageClass
    ok    kube  ingress     IngressClass(es) traefik, default traefik
    4 ok, 0 warn, 1 fail: fix the FAIL lines before serving
    "#);
    assert_eq!(code, 1);

    // Values that name their class (and a hostPath cache) need no default one.
    let v = values("one-gpu.yaml");
    let named = kube.dir.path().join("named.yaml");
    std::fs::write(
        &named,
        std::fs::read_to_string(&v).unwrap()
            + "state:\n  persistence:\n    storageClass: local-path\n",
    )
    .unwrap();
    let (code, out) = kube.doctor(&["--values", named.to_str().unwrap()]);
    assert!(
        has(
            &out,
            "ok    kube  storage       no default StorageClass; the values name their classes"
        ),
        "{out}"
    );
    // one-gpu.yaml asks for IngressClass `public` (MicroK8s'); this is k3s.
    assert!(
        has(
            &out,
            "FAIL  kube  ingress       the values ask for IngressClass public; the cluster has traefik"
        ),
        "{out}"
    );
    assert_eq!(code, 1);
}

#[test]
fn json_output_has_every_check_and_the_summary() {
    let api = FakeApi::start("gpu-cluster");
    let kube = Kube::new(&api.url, TOKEN);
    let (code, out) = kube.doctor(&["--json"]);
    assert_eq!(code, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["summary"]["fail"], 0);
    let names: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["api server", "nodes", "gpu nodes", "storage", "ingress"]
    );
    assert!(
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["group"] == "kube" && c["status"] == "ok")
    );
}

#[test]
fn refused_credentials_fail_with_what_to_renew() {
    let api = FakeApi::start("gpu-cluster");
    let kube = Kube::new(&api.url, "an-expired-token");
    let (code, out) = kube.doctor(&[]);
    insta::assert_snapshot!(clean(&out, &api), @r"
    FAIL  kube  api server  cannot reach the API server: 401 Unauthorized
          fix: the credentials were refused: renew the kubeconfig's token or certificate
    0 ok, 0 warn, 1 fail: fix the FAIL lines before serving
    ");
    assert_eq!(code, 1);
}

#[test]
fn an_unreachable_server_or_a_bad_kubeconfig_fails_first() {
    // A port that was free a moment ago: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kube = Kube::new(&format!("http://127.0.0.1:{port}"), TOKEN);
    let (code, out) = kube.doctor(&[]);
    assert_eq!(code, 1);
    assert!(
        out.starts_with("FAIL  kube  api server  cannot reach the API server: "),
        "{out}"
    );
    assert!(out.contains("fix: check that the cluster runs"), "{out}");

    let (code, out) = kube.doctor(&["--context", "broken"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("context broken names cluster \"elsewhere\", which is not there"),
        "{out}"
    );
    let (code, out) = kube.doctor(&["--kubeconfig", "/nonexistent/kubeconfig"]);
    assert_eq!(code, 1);
    assert!(
        has(
            &out,
            "FAIL  kube  kubeconfig  cannot read /nonexistent/kubeconfig"
        ),
        "{out}"
    );
    let (code, out) = kube.doctor(&["--values", "/nonexistent/values.yaml"]);
    assert_eq!(code, 1);
    assert!(
        has(&out, "FAIL  kube  values  /nonexistent/values.yaml: "),
        "{out}"
    );
}

/// An executable shell script at `path` (builtins only: the doctor runs with PATH
/// cleared in these tests).
fn script(path: &Path, body: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

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

#[test]
fn values_flag_needs_kube() {
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["doctor", "--values", "v.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--kube"));
}

/// `openssl` on PATH, or `None` with the reason printed (Debian's `openssl`).
fn openssl() -> Option<PathBuf> {
    let found = ["/usr/bin/openssl", "/bin/openssl"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    if found.is_none() {
        eprintln!("skipped: openssl is not installed (apt-get install openssl)");
    }
    found
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate (X.509 v3, as
/// kubeadm and k3s make them), in `dir`.
fn make_certs(openssl: &Path, dir: &Path, prefix: &str) {
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

/// `python3` on PATH, or `None` with the reason printed.
fn python3() -> Option<PathBuf> {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("python3"))
        .find(|p| p.is_file());
    if found.is_none() {
        eprintln!("skipped: python3 is not installed (apt-get install python3)");
    }
    found
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
