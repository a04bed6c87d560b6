//! `hearth doctor --kube`: the cluster the Helm chart (`deploy/helm/hearth`) installs
//! into, asked through its API server with the current kubeconfig (or the pod's
//! service account): the server reachable and its version, nodes that advertise
//! `nvidia.com/gpu`, a default StorageClass, an IngressClass, cert-manager when the
//! values ask for its certificates, and enough free GPUs and memory for the models
//! of a values file (the nodes' allocatable less what running pods request).
//!
//! A handful of read-only GETs over reqwest (the client Hearth already has), not
//! kube-rs: they do not earn a Kubernetes client and its dependency tree.
//!
//! # Layout
//! - `client`: the kubeconfig or service account, and the GETs.
//! - `exec`: a kubeconfig's `exec` credential plugin, run for a token or certificate.
//! - `values`: what a values file asks (GPUs, memory, classes, issuer).
//! - `pods`: what the pods already running request of each node.
//! - `capacity`: the values' engines and pods against what is free.

mod capacity;
mod client;
mod exec;
mod pods;
mod values;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

use super::report::{Check, Report};
use client::{Api, Target, TargetError};
use values::{Issuer, Needs, load_values, quantity};

const GROUP: &str = "kube";
const GPU: &str = "nvidia.com/gpu";
const GIB: f64 = (1u64 << 30) as f64;
/// The oldest Kubernetes the chart supports (its Chart.yaml's `kubeVersion`).
const MIN_MINOR: u64 = 25;
const GPU_OPERATOR_FIX: &str = "install the NVIDIA GPU operator (`helm install gpu-operator \
     nvidia/gpu-operator -n gpu-operator --create-namespace`; MicroK8s: `microk8s enable nvidia`) \
     or the NVIDIA device plugin on the GPU nodes; docs/kubernetes.md";

/// What `--kube` was given.
#[derive(Debug, Default)]
pub struct KubeOptions {
    /// A kubeconfig file; default `$KUBECONFIG`, else `~/.kube/config`, else in-cluster.
    pub kubeconfig: Option<PathBuf>,
    /// A context of the kubeconfig; default its `current-context`.
    pub context: Option<String>,
    /// The chart's values file whose models must fit.
    pub values: Option<PathBuf>,
}

/// Runs the cluster checks.
pub fn run(opts: &KubeOptions) -> Report {
    let mut checks = Vec::new();
    let needs = match &opts.values {
        Some(path) => match load_values(path) {
            Ok(v) => Some(Needs::from_values(&v)),
            Err(e) => {
                checks.push(Check::fail(
                    GROUP,
                    "values",
                    format!("{}: {e}", path.display()),
                    "give the values file you pass to `helm install -f`",
                ));
                return Report::new(checks);
            }
        },
        None => None,
    };
    let target = match Target::load(opts) {
        Ok(t) => t,
        Err(TargetError::Plugin(e)) => {
            checks.push(Check::fail(
                GROUP,
                "credentials",
                e,
                "the kubeconfig's exec plugin must give a credential (`kubectl get nodes` runs the same one): install it, or log in as its message says",
            ));
            return Report::new(checks);
        }
        Err(TargetError::Config(e)) => {
            checks.push(Check::fail(
                GROUP,
                "kubeconfig",
                e,
                "point KUBECONFIG (or --kubeconfig) at the cluster's config: MicroK8s `microk8s config > ~/.kube/config`, k3s `/etc/rancher/k3s/k3s.yaml`",
            ));
            return Report::new(checks);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            checks.push(Check::fail(
                GROUP,
                "api server",
                format!("cannot start the async runtime: {e}"),
                "",
            ));
            return Report::new(checks);
        }
    };
    runtime.block_on(cluster_checks(&target, needs.as_ref(), &mut checks));
    Report::new(checks)
}

async fn cluster_checks(target: &Target, needs: Option<&Needs>, checks: &mut Vec<Check>) {
    let api = match Api::new(target) {
        Ok(api) => api,
        Err(e) => {
            checks.push(Check::fail(
                GROUP,
                "kubeconfig",
                format!("{}: {e}", target.source),
                "check the cluster's certificate-authority data and the user's client certificate and key",
            ));
            return;
        }
    };
    if !version(&api, checks).await {
        return;
    }
    let nodes = match api.list("/api/v1/nodes").await {
        Ok(items) => items.iter().map(Node::from_json).collect::<Vec<_>>(),
        Err(e) => {
            checks.push(e.check("nodes", "list nodes"));
            Vec::new()
        }
    };
    node_checks(&nodes, needs, checks);
    storage(&api, needs, checks).await;
    ingress(&api, needs, checks).await;
    if let Some(needs) = needs {
        runtime_classes(&api, needs, checks).await;
        let usage = match api.list_paged(pods::PATH).await {
            Ok(items) => Some(pods::Usage::from_pods(&items)),
            Err(e) => {
                checks.push(Check::warn(
                    GROUP,
                    "pods",
                    format!("cannot list pods ({}): the capacity below does not count what runs already", e.message()),
                    "give the user a role that can list pods in all namespaces",
                ));
                None
            }
        };
        capacity::check(&nodes, usage.as_ref(), needs, checks);
    }
}

/// The RuntimeClasses the values name (gVisor or Kata for the jobs, `nvidia` for the
/// engines): a pod naming one that does not exist is refused.
async fn runtime_classes(api: &Api, needs: &Needs, checks: &mut Vec<Check>) {
    for (class, pods) in &needs.runtime_classes {
        match api
            .get(&format!("/apis/node.k8s.io/v1/runtimeclasses/{class}"))
            .await
        {
            Ok(Some(rc)) => checks.push(Check::ok(
                GROUP,
                "runtime class",
                format!(
                    "{class} (handler {}) for {pods}",
                    rc["handler"].as_str().unwrap_or("?")
                ),
            )),
            Ok(None) => checks.push(Check::fail(
                GROUP,
                "runtime class",
                format!("the values run {pods} on RuntimeClass {class}, which the cluster does not have: their pods would be refused"),
                "install the runtime on the nodes and its RuntimeClass (gVisor: runsc and `handler: runsc`; Kata: kata-deploy), or clear the value (docs/kubernetes.md)",
            )),
            Err(e) => checks.push(e.check("runtime class", "read the RuntimeClass")),
        }
    }
}

/// `GET /version`: reachable, allowed, and new enough. False when nothing more can be asked.
async fn version(api: &Api, checks: &mut Vec<Check>) -> bool {
    match api.get("/version").await {
        Ok(Some(v)) => {
            let git = v["gitVersion"].as_str().unwrap_or("unknown").to_owned();
            let minor: Option<u64> = v["minor"]
                .as_str()
                .and_then(|m| m.trim_end_matches('+').parse().ok());
            match minor {
                Some(m) if v["major"].as_str() == Some("1") && m < MIN_MINOR => {
                    checks.push(Check::fail(
                        GROUP,
                        "api server",
                        format!("{} answers: Kubernetes {git}", api.server),
                        format!(
                            "the chart needs Kubernetes 1.{MIN_MINOR} or later: upgrade the cluster"
                        ),
                    ));
                }
                _ => checks.push(Check::ok(
                    GROUP,
                    "api server",
                    format!("{} answers: Kubernetes {git}", api.server),
                )),
            }
            true
        }
        Ok(None) => {
            checks.push(Check::fail(
                GROUP,
                "api server",
                format!(
                    "{} has no /version: not a Kubernetes API server",
                    api.server
                ),
                "check the cluster's `server` in the kubeconfig",
            ));
            false
        }
        Err(e) => {
            checks.push(e.check("api server", "reach the API server"));
            false
        }
    }
}

/// A node as the checks need it.
#[derive(Debug)]
struct Node {
    name: String,
    labels: BTreeMap<String, String>,
    ready: bool,
    schedulable: bool,
    gpus: u64,
    memory: f64,
}

impl Node {
    fn from_json(n: &Value) -> Node {
        let alloc = &n["status"]["allocatable"];
        let labels = n["metadata"]["labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Node {
            name: n["metadata"]["name"].as_str().unwrap_or("?").to_owned(),
            labels,
            ready: n["status"]["conditions"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            }),
            schedulable: n["spec"]["unschedulable"] != true,
            gpus: quantity(&alloc[GPU]).map_or(0, |q| q as u64),
            memory: quantity(&alloc["memory"]).unwrap_or(0.0),
        }
    }

    fn usable(&self) -> bool {
        self.ready && self.schedulable
    }

    fn matches(&self, selector: &BTreeMap<String, String>) -> bool {
        selector.iter().all(|(k, v)| self.labels.get(k) == Some(v))
    }
}

fn node_checks(nodes: &[Node], needs: Option<&Needs>, checks: &mut Vec<Check>) {
    if nodes.is_empty() {
        return;
    }
    let ready = nodes.iter().filter(|n| n.usable()).count();
    let line = format!("{} node(s), {ready} ready and schedulable", nodes.len());
    checks.push(if ready == 0 {
        Check::fail(
            GROUP,
            "nodes",
            line,
            "`kubectl describe node` says why no node is Ready",
        )
    } else {
        Check::ok(GROUP, "nodes", line)
    });
    let gpu_nodes: Vec<&Node> = nodes.iter().filter(|n| n.gpus > 0).collect();
    let gpus_needed = needs.map(Needs::gpus);
    if gpu_nodes.is_empty() {
        // Labelled by the GPU operator's feature discovery, yet advertising nothing.
        let labelled: Vec<&str> = nodes
            .iter()
            .filter(|n| n.labels.get("nvidia.com/gpu.present").map(String::as_str) == Some("true"))
            .map(|n| n.name.as_str())
            .collect();
        let reason = if labelled.is_empty() {
            format!("no node advertises {GPU}")
        } else {
            format!(
                "no node advertises {GPU}; {} labelled nvidia.com/gpu.present=true: the device plugin is not running there",
                labelled.join(", ")
            )
        };
        checks.push(match gpus_needed {
            Some(0) => Check::ok(
                GROUP,
                "gpu nodes",
                format!("{reason}; the values need none (CPU-only)"),
            ),
            _ => Check::fail(GROUP, "gpu nodes", reason, GPU_OPERATOR_FIX),
        });
        return;
    }
    let total: u64 = gpu_nodes.iter().map(|n| n.gpus).sum();
    let list: Vec<String> = gpu_nodes
        .iter()
        .map(|n| format!("{} ({})", n.name, n.gpus))
        .collect();
    checks.push(Check::ok(
        GROUP,
        "gpu nodes",
        format!(
            "{} node(s) advertise {GPU}: {}; {total} in all",
            gpu_nodes.len(),
            list.join(", ")
        ),
    ));
}

/// A default StorageClass for the chart's claims, and the classes the values name.
async fn storage(api: &Api, needs: Option<&Needs>, checks: &mut Vec<Check>) {
    let classes = match api.list("/apis/storage.k8s.io/v1/storageclasses").await {
        Ok(items) => items,
        Err(e) => {
            checks.push(e.check("storage", "list StorageClasses"));
            return;
        }
    };
    let names: Vec<&str> = classes
        .iter()
        .filter_map(|c| c["metadata"]["name"].as_str())
        .collect();
    let default = classes.iter().find(|c| {
        let a = &c["metadata"]["annotations"];
        a["storageclass.kubernetes.io/is-default-class"] == "true"
            || a["storageclass.beta.kubernetes.io/is-default-class"] == "true"
    });
    let wants_default = needs.is_none_or(|n| n.default_class);
    match default {
        Some(c) => checks.push(Check::ok(
            GROUP,
            "storage",
            format!(
                "default StorageClass {} ({})",
                c["metadata"]["name"].as_str().unwrap_or("?"),
                c["provisioner"].as_str().unwrap_or("?")
            ),
        )),
        None if wants_default => checks.push(Check::fail(
            GROUP,
            "storage",
            if names.is_empty() {
                "no StorageClass: the chart's PersistentVolumeClaims would stay Pending".to_owned()
            } else {
                format!(
                    "no default StorageClass (there are: {}): claims that name none stay Pending",
                    names.join(", ")
                )
            },
            "mark one default (`kubectl patch storageclass NAME -p '{\"metadata\":{\"annotations\":{\"storageclass.kubernetes.io/is-default-class\":\"true\"}}}'`; MicroK8s: `microk8s enable hostpath-storage`), or set state.persistence.storageClass and vllm.cache.storageClass",
        )),
        None => checks.push(Check::ok(
            GROUP,
            "storage",
            "no default StorageClass; the values name their classes",
        )),
    }
    for class in needs.map(|n| n.classes.as_slice()).unwrap_or_default() {
        if !names.contains(&class.as_str()) {
            checks.push(Check::fail(
                GROUP,
                "storage",
                format!("the values name StorageClass {class}, which the cluster does not have"),
                format!(
                    "use one of: {} (`kubectl get storageclass`)",
                    names.join(", ")
                ),
            ));
        }
    }
}

/// An IngressClass (the one the values name), and cert-manager when it is to make
/// the certificate.
async fn ingress(api: &Api, needs: Option<&Needs>, checks: &mut Vec<Check>) {
    let wanted = needs.and_then(|n| n.ingress.as_ref());
    let classes = match api.list("/apis/networking.k8s.io/v1/ingressclasses").await {
        Ok(items) => items,
        Err(e) => {
            checks.push(e.check("ingress", "list IngressClasses"));
            return;
        }
    };
    let names: Vec<&str> = classes
        .iter()
        .filter_map(|c| c["metadata"]["name"].as_str())
        .collect();
    let default = classes
        .iter()
        .find(|c| {
            c["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"] == "true"
        })
        .and_then(|c| c["metadata"]["name"].as_str());
    let enable = "install an ingress controller (k3s ships traefik; MicroK8s: `microk8s enable ingress`; else ingress-nginx)";
    match (wanted.and_then(|w| w.class.as_deref()), names.is_empty()) {
        (Some(class), _) if names.contains(&class) => {
            checks.push(Check::ok(GROUP, "ingress", format!("IngressClass {class}")));
        }
        (Some(class), _) => checks.push(Check::fail(
            GROUP,
            "ingress",
            format!(
                "the values ask for IngressClass {class}; the cluster has {}",
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            ),
            format!("set ingress.className to one of those, or {enable}"),
        )),
        (None, true) if wanted.is_some() => checks.push(Check::fail(
            GROUP,
            "ingress",
            "no IngressClass: the chart's Ingress would serve nothing",
            enable,
        )),
        (None, true) => checks.push(Check::warn(
            GROUP,
            "ingress",
            "no IngressClass: Hearth is reachable only by port-forward or a LoadBalancer Service",
            enable,
        )),
        (None, false) if wanted.is_some() && default.is_none() => checks.push(Check::fail(
            GROUP,
            "ingress",
            format!(
                "IngressClass(es) {}, none the default, and the values name none",
                names.join(", ")
            ),
            "set ingress.className",
        )),
        (None, false) => checks.push(Check::ok(
            GROUP,
            "ingress",
            format!(
                "IngressClass(es) {}{}",
                names.join(", "),
                default
                    .map(|d| format!(", default {d}"))
                    .unwrap_or_default()
            ),
        )),
    }
    let Some(issuer) = wanted.and_then(|w| w.issuer.as_ref()) else {
        return;
    };
    match api
        .get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/certificates.cert-manager.io")
        .await
    {
        Ok(Some(_)) => {}
        Ok(None) => {
            checks.push(Check::fail(
                GROUP,
                "cert-manager",
                "the values ask cert-manager for the certificate, and its CRDs are not installed",
                "install cert-manager (`helm install cert-manager jetstack/cert-manager -n cert-manager --create-namespace --set crds.enabled=true`; MicroK8s: `microk8s enable cert-manager`), or give ingress.tls.secretName without an issuer",
            ));
            return;
        }
        Err(e) => {
            checks.push(e.check("cert-manager", "read cert-manager's CRD"));
            return;
        }
    }
    let (kind, path) = match issuer {
        Issuer::Cluster(name) => (
            "ClusterIssuer",
            format!("/apis/cert-manager.io/v1/clusterissuers/{name}"),
        ),
        // The chart installs into the namespace helm is given; that is not known here.
        Issuer::Namespaced(name) => {
            checks.push(Check::ok(
                GROUP,
                "cert-manager",
                format!("cert-manager installed; Issuer {name} must be in Hearth's namespace"),
            ));
            return;
        }
    };
    let name = issuer.name();
    match api.get(&path).await {
        Ok(Some(_)) => checks.push(Check::ok(
            GROUP,
            "cert-manager",
            format!("cert-manager installed, {kind} {name} exists"),
        )),
        Ok(None) => checks.push(Check::fail(
            GROUP,
            "cert-manager",
            format!("cert-manager is installed but has no {kind} {name}"),
            "create it (docs/kubernetes.md shows a Let's Encrypt ClusterIssuer) or set ingress.tls.clusterIssuer to one that exists (`kubectl get clusterissuer`)",
        )),
        Err(e) => checks.push(e.check("cert-manager", "read the ClusterIssuer")),
    }
}
