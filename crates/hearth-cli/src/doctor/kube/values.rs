//! What a Helm values file asks of the cluster: the chart's defaults
//! (`deploy/helm/hearth/values.yaml`, built in) with the file merged over them, as
//! `helm install -f` merges, read into the engines' GPUs, memory and node selectors,
//! the claims' StorageClasses, and the Ingress's class and issuer. YAML is read with
//! yaml-rust2 into `serde_json` values.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};
use yaml_rust2::{Yaml, YamlLoader};

/// The chart's defaults: a values file is merged over them, as `helm install -f` does.
const CHART_VALUES: &str = include_str!("../../../../../deploy/helm/hearth/values.yaml");

/// What a values file asks of the cluster.
#[derive(Debug, Default)]
pub(super) struct Needs {
    pub(super) engines: Vec<Engine>,
    /// Requests of the gateway (and the worker) pods, in bytes.
    pub(super) other_memory: f64,
    /// A claim names no class (it needs the default one).
    pub(super) default_class: bool,
    /// StorageClasses the values name.
    pub(super) classes: Vec<String>,
    pub(super) ingress: Option<IngressNeeds>,
    /// RuntimeClasses the pods name: (class, what for).
    pub(super) runtime_classes: Vec<(String, &'static str)>,
}

#[derive(Debug)]
pub(super) struct Engine {
    pub(super) model: String,
    pub(super) gpus: u64,
    pub(super) memory: f64,
    pub(super) node_selector: BTreeMap<String, String>,
}

#[derive(Debug)]
pub(super) struct IngressNeeds {
    pub(super) class: Option<String>,
    pub(super) issuer: Option<Issuer>,
}

#[derive(Debug)]
pub(super) enum Issuer {
    Cluster(String),
    Namespaced(String),
}

impl Issuer {
    pub(super) fn name(&self) -> &str {
        match self {
            Issuer::Cluster(n) | Issuer::Namespaced(n) => n,
        }
    }
}

impl Needs {
    /// From the chart's defaults with the file merged over them.
    pub(super) fn from_values(v: &Value) -> Needs {
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
        if v["jobs"]["enabled"] == true
            && let Some(rc) = str_of(&v["jobs"]["runtimeClassName"])
        {
            let pod = if worker["enabled"] == true {
                "the job workers"
            } else {
                "the gateway (it runs the jobs)"
            };
            needs.runtime_classes.push((rc, pod));
        }
        if !needs.engines.is_empty()
            && let Some(rc) = str_of(&vllm["runtimeClassName"])
        {
            needs.runtime_classes.push((rc, "the vLLM engines"));
        }
        needs
    }

    pub(super) fn gpus(&self) -> u64 {
        self.engines.iter().map(|e| e.gpus).sum()
    }
}

pub(super) fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A Kubernetes quantity (`16Gi`, `32803932Ki`, `1.5G`, `500m`, `2`) as a number.
pub(super) fn quantity(v: &Value) -> Option<f64> {
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
pub(super) fn load_values(path: &Path) -> Result<Value, String> {
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
pub(super) fn parse_yaml(text: &str) -> Result<Value, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: f64 = (1u64 << 30) as f64;

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
