//! `hearth doctor --kube`, run as the real binary against a fake API server: a
//! local HTTP server answering with recorded API answers (`fixtures/kube/`, see its
//! README), reached through a kubeconfig written to a temp folder. The server
//! checks the bearer token, so a doctor that sent none would see 401s. How the
//! doctor logs in (TLS, exec plugins, in a pod) is in `doctor_kube_auth.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly

#[path = "doctor_kube/support.rs"]
mod support;

use std::process::Command;

use support::{FakeApi, Kube, TOKEN, clean, has, values};

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
            == "/api/v1/pods?fieldSelector=status.phase%21%3DSucceeded%2Cstatus.phase%21%3DFailed&limit=500"),
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

    // The same pods listed in two pages (past the server's `limit`): both read.
    let whole = clean(&out, &api);
    let api = FakeApi::layered(&["gpus-taken-paged", "gpu-cluster"]);
    let kube = Kube::new(&api.url, TOKEN);
    let (paged_code, paged) = kube.doctor(&["--values", v.to_str().unwrap()]);
    assert_eq!((paged_code, clean(&paged, &api)), (code, whole));
    assert!(
        api.seen().iter().any(|p| p.starts_with("/api/v1/pods?")
            && p.ends_with("&limit=500&continue=eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6MTgzMDIsInN0YXJ0IjoiZ3B1LWZlYXR1cmUifQ")),
        "{:?}",
        api.seen()
    );

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
    // This recorded cluster has no pods answer (a 404, as for a user who may not
    // list pods): the capacity is the nodes' allocatable, and a WARN says so.
    assert!(
        has(
            &out,
            "WARN  kube  pods          cannot list pods (/api/v1/pods?fieldSelector=status.phase%21%3DSucceeded%2Cstatus.phase%21%3DFailed: 404 (an API this cluster does not serve)): the capacity below does not count what runs already"
        ) && has(
            &out,
            "gpu capacity  1 GPU(s) for 1 engine(s); 1 allocatable (running pods not counted)"
        ) && out.contains("allocatable (before other workloads)"),
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
    // A port held closed: nothing listens there.
    let closed = hearth_testkit::ClosedPort::new();
    let port = closed.port();
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

#[test]
fn values_flag_needs_kube() {
    let out = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["doctor", "--values", "v.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--kube"));
}
