//! What the pods already on the cluster take of each node: their memory and
//! `nvidia.com/gpu` requests, summed per node the way the scheduler sums them, so
//! that the capacity checks compare the values with what is free rather than with
//! what the nodes have.
//!
//! Hearth's own pods (labelled `app.kubernetes.io/name=hearth` by the chart) are
//! left out: `helm install` of a release that runs already is an upgrade, which
//! replaces them, and counting them would make an upgrade look as if it did not
//! fit beside itself. The report says how many were left out.

use std::collections::BTreeMap;

use serde_json::Value;

use super::GPU;
use super::values::quantity;

/// The pods that hold resources: Succeeded and Failed ones hold none (the field
/// selector keeps them out of the answer; they are skipped here too, as a recorded
/// answer or an old server may still carry them).
pub(super) const PATH: &str =
    "/api/v1/pods?fieldSelector=status.phase%21%3DSucceeded%2Cstatus.phase%21%3DFailed";

/// The label the chart puts on every pod it makes.
const HEARTH_LABEL: (&str, &str) = ("app.kubernetes.io/name", "hearth");

/// What the running pods request, per node.
#[derive(Debug, Default)]
pub(super) struct Usage {
    pub(super) nodes: BTreeMap<String, NodeUsage>,
    /// Pods counted (bound to a node).
    pub(super) counted: usize,
    /// Hearth's own pods, not counted.
    pub(super) hearth: usize,
    /// Pods not yet bound to a node (Pending): they hold nothing yet, but compete.
    pub(super) pending: usize,
}

#[derive(Debug, Default)]
pub(super) struct NodeUsage {
    pub(super) memory: f64,
    pub(super) gpus: u64,
    /// `namespace/name` of each pod holding GPUs here, with how many.
    pub(super) gpu_pods: Vec<(String, u64)>,
}

impl Usage {
    /// From the `items` of a PodList.
    pub(super) fn from_pods(pods: &[Value]) -> Usage {
        let mut usage = Usage::default();
        for pod in pods {
            let phase = pod["status"]["phase"].as_str().unwrap_or_default();
            if phase == "Succeeded" || phase == "Failed" {
                continue;
            }
            if pod["metadata"]["labels"][HEARTH_LABEL.0] == HEARTH_LABEL.1 {
                usage.hearth += 1;
                continue;
            }
            let Some(node) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) else {
                usage.pending += 1;
                continue;
            };
            usage.counted += 1;
            let memory = effective_request(pod, "memory");
            let gpus = effective_request(pod, GPU).round() as u64;
            let entry = usage.nodes.entry(node.to_owned()).or_default();
            entry.memory += memory;
            entry.gpus += gpus;
            if gpus > 0 {
                let name = format!(
                    "{}/{}",
                    pod["metadata"]["namespace"].as_str().unwrap_or("?"),
                    pod["metadata"]["name"].as_str().unwrap_or("?")
                );
                entry.gpu_pods.push((name, gpus));
            }
        }
        usage
    }

    pub(super) fn on(&self, node: &str) -> Option<&NodeUsage> {
        self.nodes.get(node)
    }

    pub(super) fn memory(&self) -> f64 {
        self.nodes.values().map(|n| n.memory).sum()
    }
}

/// A pod's request of `resource` as the scheduler counts it: the larger of its
/// containers' sum (with the sidecars, init containers that keep running) and the
/// peak of its init containers (each with the sidecars started before it), plus
/// the pod's overhead; a pod-level request (`spec.resources`, Kubernetes 1.34)
/// stands for the containers'.
fn effective_request(pod: &Value, resource: &str) -> f64 {
    let spec = &pod["spec"];
    let overhead = quantity(&spec["overhead"][resource]).unwrap_or(0.0);
    if let Some(whole) = quantity(&spec["resources"]["requests"][resource]) {
        return whole + overhead;
    }
    let list = |field: &str| spec[field].as_array().cloned().unwrap_or_default();
    let containers: f64 = list("containers")
        .iter()
        .map(|c| request(c, resource))
        .sum();
    let mut sidecars = 0.0;
    let mut init_peak: f64 = 0.0;
    for c in list("initContainers") {
        let r = request(&c, resource);
        if c["restartPolicy"] == "Always" {
            sidecars += r;
            init_peak = init_peak.max(sidecars);
        } else {
            init_peak = init_peak.max(sidecars + r);
        }
    }
    (containers + sidecars).max(init_peak) + overhead
}

/// A container's request; without one, its limit (Kubernetes defaults a missing
/// request to the limit, and extended resources such as GPUs are often given as
/// limits alone).
fn request(container: &Value, resource: &str) -> f64 {
    let r = &container["resources"];
    quantity(&r["requests"][resource])
        .or_else(|| quantity(&r["limits"][resource]))
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MI: f64 = 1024.0 * 1024.0;

    #[test]
    fn init_containers_count_at_their_peak_and_sidecars_stay() {
        let pod = json!({"spec": {
            "initContainers": [
                {"name": "migrate", "resources": {"requests": {"memory": "1Gi"}}},
                {"name": "proxy", "restartPolicy": "Always", "resources": {"requests": {"memory": "100Mi"}}},
                {"name": "warm", "resources": {"requests": {"memory": "300Mi"}}}
            ],
            "containers": [
                {"name": "app", "resources": {"requests": {"memory": "200Mi"}}},
                {"name": "log", "resources": {"limits": {"memory": "50Mi"}}}
            ],
            "overhead": {"memory": "10Mi"}
        }});
        // Containers 250Mi + the sidecar 100Mi = 350Mi; init peak: migrate's 1Gi.
        assert_eq!(effective_request(&pod, "memory"), 1034.0 * MI);
        let pod = json!({"spec": {
            "initContainers": [
                {"name": "proxy", "restartPolicy": "Always", "resources": {"requests": {"memory": "100Mi"}}},
                {"name": "warm", "resources": {"requests": {"memory": "300Mi"}}}
            ],
            "containers": [{"name": "app", "resources": {"requests": {"memory": "200Mi"}}}]
        }});
        // The init peak 100Mi + 300Mi beats the running 300Mi.
        assert_eq!(effective_request(&pod, "memory"), 400.0 * MI);
        let pod = json!({"spec": {
            "resources": {"requests": {"memory": "1Gi"}},
            "containers": [{"name": "app", "resources": {"requests": {"memory": "200Mi"}}}]
        }});
        // A pod-level request is the pod's.
        assert_eq!(effective_request(&pod, "memory"), 1024.0 * MI);
    }

    #[test]
    fn gpus_given_as_limits_count_and_finished_or_hearth_pods_do_not() {
        let pods = [
            json!({"metadata": {"namespace": "ml", "name": "train"}, "status": {"phase": "Running"},
                   "spec": {"nodeName": "gpu-1", "containers": [{"resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}),
            json!({"metadata": {"namespace": "ml", "name": "done"}, "status": {"phase": "Succeeded"},
                   "spec": {"nodeName": "gpu-1", "containers": [{"resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}),
            json!({"metadata": {"namespace": "ai", "name": "hearth-engine-x", "labels": {"app.kubernetes.io/name": "hearth"}},
                   "status": {"phase": "Running"},
                   "spec": {"nodeName": "gpu-2", "containers": [{"resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}),
            json!({"metadata": {"namespace": "ml", "name": "queued"}, "status": {"phase": "Pending"},
                   "spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}),
        ];
        let usage = Usage::from_pods(&pods);
        assert_eq!(usage.counted, 1);
        assert_eq!(usage.hearth, 1);
        assert_eq!(usage.pending, 1);
        let gpu1 = usage.on("gpu-1").unwrap();
        assert_eq!(gpu1.gpus, 1);
        assert_eq!(gpu1.gpu_pods, [("ml/train".to_owned(), 1)]);
        assert!(usage.on("gpu-2").is_none());
    }
}
