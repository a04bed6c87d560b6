//! `hearth doctor --kube`: the cluster the Helm chart (`deploy/helm/hearth`) installs
//! into, asked through its API server with the current kubeconfig (or the pod's
//! service account): the server reachable and its version, nodes that advertise
//! `nvidia.com/gpu`, a default StorageClass, an IngressClass, cert-manager when the
//! values ask for its certificates, and enough allocatable GPUs and memory for the
//! models of a values file.
//!
//! A handful of read-only GETs over reqwest (the client Hearth already has), not
//! kube-rs: they do not earn a Kubernetes client and its dependency tree. The
//! kubeconfig and the values are YAML, read with yaml-rust2 into `serde_json` values.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};
use yaml_rust2::{Yaml, YamlLoader};

use super::report::{Check, Report};

const GROUP: &str = "kube";
const GPU: &str = "nvidia.com/gpu";
const GIB: f64 = (1u64 << 30) as f64;
/// The oldest Kubernetes the chart supports (its Chart.yaml's `kubeVersion`).
const MIN_MINOR: u64 = 25;
/// Each request's own deadline: a dead API server fails the check, not the shell.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The chart's defaults: a values file is merged over them, as `helm install -f` does.
const CHART_VALUES: &str = include_str!("../../../../deploy/helm/hearth/values.yaml");
/// Where a pod finds its service account (in-cluster use, as client-go).
const SERVICE_ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
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
        Err(e) => {
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
        capacity(&nodes, needs, checks);
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

/// The values' models against what the nodes can give.
fn capacity(nodes: &[Node], needs: &Needs, checks: &mut Vec<Check>) {
    let usable: Vec<&Node> = nodes.iter().filter(|n| n.usable()).collect();
    if needs.engines.is_empty() {
        checks.push(Check::ok(
            GROUP,
            "gpu capacity",
            "the values run no vLLM engine",
        ));
    } else {
        let mut problems = Vec::new();
        for e in &needs.engines {
            let fits: Vec<&&Node> = usable
                .iter()
                .filter(|n| n.matches(&e.node_selector) && n.gpus >= e.gpus)
                .collect();
            if !fits.is_empty() {
                continue;
            }
            let gpu_nodes: Vec<&&Node> = usable.iter().filter(|n| n.gpus > 0).collect();
            let most = gpu_nodes.iter().map(|n| n.gpus).max().unwrap_or(0);
            problems.push(if gpu_nodes.iter().any(|n| n.gpus >= e.gpus) {
                let sel: Vec<String> = e
                    .node_selector
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                format!(
                    "{} selects nodes labelled {}, and no GPU node with {} free has that label",
                    e.model,
                    sel.join(","),
                    e.gpus
                )
            } else {
                format!(
                    "{} needs {} GPU(s) on one node; the most a node has is {most}",
                    e.model, e.gpus
                )
            });
        }
        let want = needs.gpus();
        let have: u64 = usable.iter().map(|n| n.gpus).sum();
        if want > have {
            problems.push(format!(
                "the engines need {want} GPU(s) in all; the nodes have {have}"
            ));
        }
        if problems.is_empty() {
            checks.push(Check::ok(
                GROUP,
                "gpu capacity",
                format!(
                    "{want} GPU(s) for {} engine(s) of {have} allocatable",
                    needs.engines.len()
                ),
            ));
        } else {
            checks.push(Check::fail(
                GROUP,
                "gpu capacity",
                problems.join("; "),
                "add GPU nodes, lower models[].gpus, or fix vllm.nodeSelector to the GPU nodes' labels (`kubectl get nodes --show-labels`); pods would stay Pending",
            ));
        }
    }
    let have: f64 = usable.iter().map(|n| n.memory).sum();
    let engines: f64 = needs.engines.iter().map(|e| e.memory).sum();
    let want = needs.other_memory + engines;
    let mut problems = Vec::new();
    for e in &needs.engines {
        let most = usable
            .iter()
            .filter(|n| n.gpus > 0)
            .map(|n| n.memory)
            .fold(0.0, f64::max);
        if e.memory > most && most > 0.0 {
            problems.push(format!(
                "{} asks {:.1} GiB; the largest GPU node has {:.1} GiB",
                e.model,
                e.memory / GIB,
                most / GIB
            ));
        }
    }
    if want > have {
        problems.push(format!(
            "the pods ask {:.1} GiB in all; the nodes have {:.1} GiB allocatable",
            want / GIB,
            have / GIB
        ));
    }
    if problems.is_empty() {
        checks.push(Check::ok(
            GROUP,
            "memory",
            format!(
                "the pods ask {:.1} GiB of {:.1} GiB allocatable (before other workloads)",
                want / GIB,
                have / GIB
            ),
        ));
    } else {
        checks.push(Check::fail(
            GROUP,
            "memory",
            problems.join("; "),
            "lower the memory requests (gateway.resources, vllm.resources, models[].resources) or add nodes",
        ));
    }
}

/// What a values file asks of the cluster.
#[derive(Debug, Default)]
struct Needs {
    engines: Vec<Engine>,
    /// Requests of the gateway (and the worker) pods, in bytes.
    other_memory: f64,
    /// A claim names no class (it needs the default one).
    default_class: bool,
    /// StorageClasses the values name.
    classes: Vec<String>,
    ingress: Option<IngressNeeds>,
}

#[derive(Debug)]
struct Engine {
    model: String,
    gpus: u64,
    memory: f64,
    node_selector: BTreeMap<String, String>,
}

#[derive(Debug)]
struct IngressNeeds {
    class: Option<String>,
    issuer: Option<Issuer>,
}

#[derive(Debug)]
enum Issuer {
    Cluster(String),
    Namespaced(String),
}

impl Issuer {
    fn name(&self) -> &str {
        match self {
            Issuer::Cluster(n) | Issuer::Namespaced(n) => n,
        }
    }
}

impl Needs {
    /// From the chart's defaults with the file merged over them.
    fn from_values(v: &Value) -> Needs {
        let mut needs = Needs::default();
        let str_of = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
        let memory = |v: &Value| quantity(&v["requests"]["memory"]).unwrap_or(0.0);
        let vllm = &v["vllm"];
        for m in v["models"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            if m["engine"] != "vllm" {
                continue;
            }
            let resources = if m["resources"].is_object() {
                &m["resources"]
            } else {
                &vllm["resources"]
            };
            let selector = if m["nodeSelector"].is_object() {
                &m["nodeSelector"]
            } else {
                &vllm["nodeSelector"]
            };
            needs.engines.push(Engine {
                model: m["name"].as_str().unwrap_or("?").to_owned(),
                gpus: m["gpus"].as_u64().unwrap_or(1),
                memory: memory(resources),
                node_selector: selector
                    .as_object()
                    .map(|s| s.iter().map(|(k, v)| (k.clone(), scalar(v))).collect())
                    .unwrap_or_default(),
            });
            let cache_class = str_of(&m["cache"]["storageClass"])
                .or_else(|| str_of(&vllm["cache"]["storageClass"]));
            let host_path =
                str_of(&m["cache"]["hostPath"]).or_else(|| str_of(&vllm["cache"]["hostPath"]));
            match (host_path, cache_class) {
                (Some(_), _) => {}
                (None, Some(c)) => needs.classes.push(c),
                (None, None) => needs.default_class = true,
            }
        }
        let gw = &v["gateway"];
        let replicas = if gw["autoscaling"]["enabled"] == true {
            gw["autoscaling"]["minReplicas"].as_u64().unwrap_or(1)
        } else {
            gw["replicas"].as_u64().unwrap_or(1)
        };
        needs.other_memory = memory(&gw["resources"]) * replicas as f64;
        let worker = &v["jobs"]["worker"];
        if v["jobs"]["enabled"] == true && worker["enabled"] == true {
            needs.other_memory +=
                memory(&worker["resources"]) * worker["replicas"].as_u64().unwrap_or(1) as f64;
        }
        let state = &v["state"];
        if state["mode"] != "external" && str_of(&state["persistence"]["existingClaim"]).is_none() {
            match str_of(&state["persistence"]["storageClass"]) {
                Some(c) => needs.classes.push(c),
                None => needs.default_class = true,
            }
        }
        needs.classes.sort();
        needs.classes.dedup();
        let ing = &v["ingress"];
        if ing["enabled"] == true {
            let tls = &ing["tls"];
            let issuer = if tls["enabled"] == false {
                None
            } else if let Some(c) = str_of(&tls["clusterIssuer"]) {
                Some(Issuer::Cluster(c))
            } else {
                str_of(&tls["issuer"]).map(Issuer::Namespaced)
            };
            needs.ingress = Some(IngressNeeds {
                class: str_of(&ing["className"]),
                issuer,
            });
        }
        needs
    }

    fn gpus(&self) -> u64 {
        self.engines.iter().map(|e| e.gpus).sum()
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A Kubernetes quantity (`16Gi`, `32803932Ki`, `1.5G`, `500m`, `2`) as a number.
fn quantity(v: &Value) -> Option<f64> {
    if let Some(n) = v.as_f64() {
        return Some(n);
    }
    let s = v.as_str()?.trim();
    let split = s
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let factor = match suffix {
        "" => 1.0,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        _ => return None,
    };
    num.parse::<f64>().ok().map(|n| n * factor)
}

/// The chart's default values with the file's merged over them.
fn load_values(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let mut merged = parse_yaml(CHART_VALUES)?;
    let given = parse_yaml(&text)?;
    if !given.is_object() && !given.is_null() {
        return Err("not a YAML mapping of values".to_owned());
    }
    merge(&mut merged, given);
    Ok(merged)
}

/// Maps merge key by key; anything else (lists too) replaces, as Helm merges values.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (_, Value::Null) => {}
        (b, o) => *b = o,
    }
}

/// The first document of a YAML text, as JSON values.
fn parse_yaml(text: &str) -> Result<Value, String> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
    Ok(docs.first().map(yaml_to_json).unwrap_or(Value::Null))
}

fn yaml_to_json(y: &Yaml) -> Value {
    match y {
        Yaml::Real(s) => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| Value::String(s.clone()), Value::Number),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(a) => Value::Array(a.iter().map(yaml_to_json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) | Yaml::Real(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Boolean(b) => b.to_string(),
                        _ => String::new(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect::<Map<_, _>>(),
        ),
        Yaml::Alias(_) | Yaml::Null | Yaml::BadValue => Value::Null,
    }
}

/// Where the API server is and how to prove who we are.
#[derive(Debug)]
struct Target {
    server: String,
    ca_pem: Option<Vec<u8>>,
    insecure: bool,
    token: Option<String>,
    /// A client certificate and its key, PEM, one after the other.
    identity_pem: Option<Vec<u8>>,
    /// Where this came from, for messages.
    source: String,
}

impl Target {
    fn load(opts: &KubeOptions) -> Result<Target, String> {
        let path = opts.kubeconfig.clone().or_else(|| {
            match std::env::var_os("KUBECONFIG") {
                // kubectl merges a list; the first file that exists is read here.
                Some(list) => std::env::split_paths(&list).find(|p| p.is_file()),
                None => std::env::var_os("HOME")
                    .map(|h| Path::new(&h).join(".kube/config"))
                    .filter(|p| p.is_file()),
            }
        });
        match path {
            Some(p) => Target::from_kubeconfig(&p, opts.context.as_deref()),
            None => Target::in_cluster(),
        }
    }

    fn from_kubeconfig(path: &Path, context: Option<&str>) -> Result<Target, String> {
        let source = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {source}: {e}"))?;
        let cfg = parse_yaml(&text).map_err(|e| format!("{source}: {e}"))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let named = |list: &str, name: &str, field: &str| -> Option<Value> {
            cfg[list]
                .as_array()?
                .iter()
                .find(|e| e["name"] == name)
                .map(|e| e[field].clone())
        };
        let context_name = context
            .map(str::to_owned)
            .or_else(|| cfg["current-context"].as_str().map(str::to_owned))
            .filter(|c| !c.is_empty())
            .ok_or_else(|| format!("{source} has no current-context; pass --context"))?;
        let ctx = named("contexts", &context_name, "context")
            .ok_or_else(|| format!("{source} has no context {context_name}"))?;
        let cluster_name = ctx["cluster"].as_str().unwrap_or_default();
        let cluster = named("clusters", cluster_name, "cluster")
            .ok_or_else(|| format!("{source}: context {context_name} names cluster {cluster_name:?}, which is not there"))?;
        let user = ctx["user"]
            .as_str()
            .and_then(|u| named("users", u, "user"))
            .unwrap_or(Value::Null);
        let server = cluster["server"]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| format!("{source}: cluster {cluster_name} has no server"))?
            .trim_end_matches('/')
            .to_owned();
        let ca_pem = data_or_file(&cluster, "certificate-authority", dir)?;
        let mut token = user["token"].as_str().map(str::to_owned);
        if token.is_none()
            && let Some(file) = user["tokenFile"].as_str()
        {
            token = Some(read_trimmed(&dir.join(file))?);
        }
        let cert = data_or_file(&user, "client-certificate", dir)?;
        let key = data_or_file(&user, "client-key", dir)?;
        let identity_pem = match (cert, key) {
            (Some(mut c), Some(k)) => {
                c.push(b'\n');
                c.extend(k);
                Some(c)
            }
            _ => None,
        };
        if token.is_none() && identity_pem.is_none() {
            if user["exec"].is_object() || user["auth-provider"].is_object() {
                return Err(format!(
                    "{source}: user of context {context_name} logs in through an exec or auth-provider plugin, which hearth doctor does not run; use a kubeconfig with a token or client certificate (e.g. a service account's token)"
                ));
            }
            if user["username"].is_string() {
                return Err(format!(
                    "{source}: basic auth (username/password) is not supported; use a token or client certificate"
                ));
            }
        }
        Ok(Target {
            server,
            ca_pem,
            insecure: cluster["insecure-skip-tls-verify"] == true,
            token,
            identity_pem,
            source: format!("{source} (context {context_name})"),
        })
    }

    /// Inside a pod: the service account's token and CA, the API server from env.
    fn in_cluster() -> Result<Target, String> {
        let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| {
            "no kubeconfig ($KUBECONFIG, ~/.kube/config) and not in a pod (no KUBERNETES_SERVICE_HOST)".to_owned()
        })?;
        let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".to_owned());
        let dir = Path::new(SERVICE_ACCOUNT);
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        Ok(Target {
            server: format!("https://{host}:{port}"),
            ca_pem: Some(
                std::fs::read(dir.join("ca.crt"))
                    .map_err(|e| format!("{SERVICE_ACCOUNT}/ca.crt: {e}"))?,
            ),
            insecure: false,
            token: Some(read_trimmed(&dir.join("token"))?),
            identity_pem: None,
            source: "the pod's service account".to_owned(),
        })
    }
}

/// `FIELD-data` (base64) or `FIELD` (a file, relative to the kubeconfig's folder).
fn data_or_file(v: &Value, field: &str, dir: &Path) -> Result<Option<Vec<u8>>, String> {
    use base64::Engine as _;
    if let Some(data) = v[format!("{field}-data")].as_str() {
        let clean: String = data.split_whitespace().collect();
        return base64::engine::general_purpose::STANDARD
            .decode(clean)
            .map(Some)
            .map_err(|e| format!("{field}-data is not base64: {e}"));
    }
    match v[field].as_str() {
        Some(file) => std::fs::read(dir.join(file))
            .map(Some)
            .map_err(|e| format!("{field} {file}: {e}")),
        None => Ok(None),
    }
}

fn read_trimmed(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Why a request did not give an answer.
enum ApiError {
    Unreachable(String),
    Denied(u16, String),
    Other(String),
}

impl ApiError {
    fn check(&self, name: &'static str, what: &str) -> Check {
        match self {
            ApiError::Unreachable(e) => Check::fail(
                GROUP,
                name,
                format!("cannot {what}: {e}"),
                "check that the cluster runs and the kubeconfig's server is reachable from here (`kubectl cluster-info`)",
            ),
            ApiError::Denied(status, e) => Check::fail(
                GROUP,
                name,
                format!("cannot {what}: {status} {e}"),
                if *status == 401 {
                    "the credentials were refused: renew the kubeconfig's token or certificate"
                } else {
                    "the user may not read this: give it a role that can get and list nodes, storageclasses, ingressclasses and customresourcedefinitions"
                },
            ),
            ApiError::Other(e) => Check::fail(GROUP, name, format!("cannot {what}: {e}"), ""),
        }
    }
}

struct Api {
    server: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Api {
    fn new(target: &Target) -> Result<Api, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT)
            .use_rustls_tls();
        if let Some(pem) = &target.ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| format!("certificate-authority: {e}"))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        if target.insecure {
            builder = builder.danger_accept_invalid_certs(true);
        }
        if let Some(pem) = &target.identity_pem {
            builder = builder.identity(
                reqwest::Identity::from_pem(pem)
                    .map_err(|e| format!("client certificate and key: {e}"))?,
            );
        }
        Ok(Api {
            server: target.server.clone(),
            http: builder.build().map_err(|e| e.to_string())?,
            token: target.token.clone(),
        })
    }

    /// The object at `path`, or `None` on 404.
    async fn get(&self, path: &str) -> Result<Option<Value>, ApiError> {
        let mut req = self
            .http
            .get(format!("{}{path}", self.server))
            .header("accept", "application/json");
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.map_err(|e| {
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg = format!("{msg}: {s}");
                source = s.source();
            }
            ApiError::Unreachable(msg)
        })?;
        let status = resp.status().as_u16();
        let body: Value = resp
            .json()
            .await
            .unwrap_or_else(|e| Value::String(format!("unreadable answer: {e}")));
        let message = body["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| scalar(&body));
        match status {
            200..=299 => Ok(Some(body)),
            404 => Ok(None),
            401 | 403 => Err(ApiError::Denied(status, message)),
            _ => Err(ApiError::Other(format!("{status} {message}"))),
        }
    }

    /// The `items` of a list.
    async fn list(&self, path: &str) -> Result<Vec<Value>, ApiError> {
        match self.get(path).await? {
            Some(Value::Object(mut list)) => match list.remove("items") {
                Some(Value::Array(items)) => Ok(items),
                Some(Value::Null) | None => Ok(Vec::new()),
                Some(_) => Err(ApiError::Other(format!("{path}: items is not a list"))),
            },
            Some(_) => Err(ApiError::Other(format!("{path}: not a list"))),
            None => Err(ApiError::Other(format!(
                "{path}: 404 (an API this cluster does not serve)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        let q = |s: &str| quantity(&Value::String(s.to_owned()));
        assert_eq!(q("16Gi"), Some(16.0 * GIB));
        assert_eq!(q("32803932Ki"), Some(32_803_932.0 * 1024.0));
        assert_eq!(q("1.5G"), Some(1.5e9));
        assert_eq!(q("500m"), Some(0.5));
        assert_eq!(q("2"), Some(2.0));
        assert_eq!(q("1e3"), Some(1000.0));
        assert_eq!(q("12Qi"), None);
        assert_eq!(quantity(&Value::from(4)), Some(4.0));
    }

    #[test]
    fn values_merge_over_the_chart_defaults() {
        let mut base = parse_yaml(CHART_VALUES).unwrap();
        let over = parse_yaml(
            "gateway: { replicas: 3 }\nmodels:\n  - { name: a, engine: vllm, hfModel: x/y, gpus: 2 }\n",
        )
        .unwrap();
        merge(&mut base, over);
        assert_eq!(base["gateway"]["replicas"], 3);
        // Merged key by key: the chart's other gateway values stay.
        assert_eq!(base["gateway"]["port"], 8080);
        let needs = Needs::from_values(&base);
        assert_eq!(needs.gpus(), 2);
        assert_eq!(needs.engines[0].memory, 16.0 * GIB);
        assert_eq!(
            needs.engines[0].node_selector.get("nvidia.com/gpu.present"),
            Some(&"true".to_owned())
        );
        assert_eq!(needs.other_memory, 3.0 * 512.0 * 1024.0 * 1024.0);
        assert!(needs.default_class);
    }
}
