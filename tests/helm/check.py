"""The Helm chart's suite (`make helm-test`): real helm, real kubernetes-validate,
real `hearth config check`.

For each values file in tests/helm/values (and the chart's own defaults):
  helm lint --strict, helm template, every manifest validated offline against
  the Kubernetes OpenAPI schemas (two versions), the assertions that matter
  (GPU limits on engine pods only, probes, securityContext, NetworkPolicies, no
  secret outside a Secret), and the ConfigMap's hearth.toml checked by the real
  binary with the environment the gateway pod gets.
Then what must fail does: schema errors, the chart's own checks, a broken
manifest, a config without keys; and the checksum annotation follows the config.

Environment: HELM, KUBE_VALIDATE, YAMLLINT, HEARTH_BIN (paths). Exit 1 on any failure.
"""

import base64
import os
import re
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy/helm/hearth"
VALUES = Path(__file__).resolve().parent / "values"
HELM = os.environ["HELM"]
KUBE_VALIDATE = os.environ["KUBE_VALIDATE"]
YAMLLINT = os.environ["YAMLLINT"]
YAMLLINT_CONFIG = Path(__file__).resolve().parent / "yamllint.yml"
HEARTH = os.environ["HEARTH_BIN"]
# The oldest Kubernetes the chart supports (Chart.yaml's kubeVersion), a current
# one, and the newest kubernetes-validate knows.
KUBE_VERSIONS = ["1.25.0", "1.33.0", "1.37.0"]
GPU = "nvidia.com/gpu"

failures = []


def fail(where, message):
    failures.append(f"{where}: {message}")
    print(f"FAIL {where}: {message}", flush=True)


def expect(cond, where, message):
    if not cond:
        fail(where, message)
    return cond


def helm(*args):
    return subprocess.run([HELM, *args], capture_output=True, text=True)


def render(values=None, sets=()):
    args = ["template", "hearth", str(CHART), "--namespace", "ai"]
    if values:
        args += ["-f", str(values)]
    for s in sets:
        args += ["--set", s]
    return helm(*args)


def validate(text, where=None):
    """kubernetes-validate exits 0 on unknown kinds and removed APIs (WARN): any
    WARN or ERROR line fails too (../shared/TOOLS.md). The problems, reported as
    failures of `where` when given."""
    problems = []
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(text)
        f.flush()
        for version in KUBE_VERSIONS:
            r = subprocess.run(
                [KUBE_VALIDATE, "--strict", "-k", version, "--quiet", f.name],
                capture_output=True,
                text=True,
            )
            bad = [
                line
                for line in (r.stdout + r.stderr).splitlines()
                if re.match(r"^(WARN|ERROR)", line)
            ]
            if r.returncode != 0 or bad:
                problems.append(f"kubernetes-validate -k {version}: rc {r.returncode}: {r.stdout}{r.stderr}")
        # Duplicate keys: PyYAML (and so kubernetes-validate) keeps the last silently.
        r = subprocess.run(
            [YAMLLINT, "-s", "-f", "parsable", "-c", str(YAMLLINT_CONFIG), f.name],
            capture_output=True,
            text=True,
        )
        if r.returncode != 0 or r.stdout.strip():
            problems.append(f"yamllint: rc {r.returncode}: {r.stdout}{r.stderr}")
    for p in problems if where else []:
        fail(where, p)
    return problems


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def component(d):
    return d["metadata"]["labels"].get("app.kubernetes.io/component")


def containers(deploy):
    spec = deploy["spec"]["template"]["spec"]
    return spec.get("initContainers", []) + spec["containers"]


def secret_values(docs, values):
    """Every secret the values file gave or the chart's Secret holds."""
    found = set()
    for s in by_kind(docs, "Secret"):
        for v in (s.get("data") or {}).values():
            found.add(base64.b64decode(v).decode())
        found.update((s.get("stringData") or {}).values())
    sec = values.get("secrets", {})
    found.update(sec.get("apiKeys", []))
    if sec.get("hfToken"):
        found.add(sec["hfToken"])
    ext = values.get("state", {}).get("external", {})
    for k in ("databaseUrl", "redisUrl"):
        if ext.get(k):
            found.add(ext[k])
    for k in ("accessKeyId", "secretAccessKey"):
        if ext.get("s3", {}).get(k):
            found.add(ext["s3"][k])
    # The passwords inside URLs too.
    for v in list(found):
        m = re.match(r"^\w+://[^:/@]*:([^@]+)@", v)
        if m:
            found.add(m.group(1))
    return {v for v in found if len(v) >= 6}


def pod_env(container, docs, where):
    """The variables a container gets, the Secret's resolved as the kubelet would;
    an `existingSecret` (not rendered) gives placeholders of the right shape."""
    secrets = {}
    for s in by_kind(docs, "Secret"):
        secrets[s["metadata"]["name"]] = {
            k: base64.b64decode(v).decode() for k, v in (s.get("data") or {}).items()
        }
    placeholder = {
        "api-keys": "sk-existing-secret-0001",
        "database-url": "postgres://hearth:pw@db:5432/hearth",
        "redis-url": "redis://:pw@redis:6379/0",
        "s3-access-key-id": "AKIAEXISTINGSECRET",
        "s3-secret-access-key": "existing-secret-s3-key",
    }
    env = {}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = str(e["value"])
            continue
        ref = e["valueFrom"]["secretKeyRef"]
        if ref["name"] in secrets:
            data = secrets[ref["name"]]
            if ref["key"] in data:
                env[e["name"]] = data[ref["key"]]
            elif not ref.get("optional"):
                fail(where, f"env {e['name']}: key {ref['key']} is not in Secret {ref['name']}")
        else:
            env[e["name"]] = placeholder.get(ref["key"], f"existing-{ref['key']}-value")
    return env


def config_check(toml_text, env, where, expect_models, expect_keys):
    """`hearth config check` on the ConfigMap's hearth.toml, with the pod's env."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "hearth.toml"
        path.write_text(toml_text)
        run_env = {"PATH": os.environ["PATH"], "HOME": tmp, **env}
        run_env["HEARTH_CONFIG"] = str(path)  # mounted at /etc/hearth in the pod
        r = subprocess.run(
            [HEARTH, "config", "check", str(path)], capture_output=True, text=True, env=run_env
        )
    out = r.stdout + r.stderr
    expect(r.returncode == 0, where, f"hearth config check failed (rc {r.returncode}):\n{out}")
    expect("warning:" not in out, where, f"hearth config check warned:\n{out}")
    expect(
        f"ok: {expect_models} model(s)" in out and f"{expect_keys} API key(s)" in out,
        where,
        f"expected {expect_models} model(s) and {expect_keys} key(s):\n{out}",
    )
    return r


def check_security(deploy, where):
    pod = deploy["spec"]["template"]["spec"]
    psc = pod.get("securityContext", {})
    expect(psc.get("runAsNonRoot") is True, where, "pod securityContext.runAsNonRoot is not true")
    expect(
        psc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
        where,
        "pod seccompProfile is not RuntimeDefault",
    )
    expect(pod.get("automountServiceAccountToken") is False, where, "service account token mounted")
    for c in containers(deploy):
        sc = c.get("securityContext", {})
        w = f"{where} container {c['name']}"
        expect(sc.get("readOnlyRootFilesystem") is True, w, "root filesystem is writable")
        expect(sc.get("allowPrivilegeEscalation") is False, w, "privilege escalation allowed")
        expect(sc.get("capabilities", {}).get("drop") == ["ALL"], w, "capabilities not all dropped")
        expect(not sc.get("privileged"), w, "privileged")
        mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
        expect("/tmp" in mounts, w, "no writable /tmp (the root filesystem is read-only)")


def check_notes(values_path, docs, values, name):
    """NOTES.txt (rendered by a client-side dry run, no cluster): the URL, the
    command that reads the key from the Secret the pods use, and a log command for
    each engine that exists."""
    args = ["install", "hearth", str(CHART), "--namespace", "ai", "--dry-run=client"]
    if values_path:
        args += ["-f", str(values_path)]
    r = helm(*args)
    if not expect(r.returncode == 0, name, f"helm install --dry-run=client:\n{r.stderr}"):
        return
    notes = r.stdout.split("NOTES:", 1)[-1]
    ing = values.get("ingress", {})
    url = f"https://{ing['host']}/" if ing.get("enabled") else "http://127.0.0.1:8080/"
    expect(url in notes, name, f"NOTES does not give the URL {url}:\n{notes}")
    gw = next(d for d in by_kind(docs, "Deployment") if component(d) == "gateway")
    hearth = gw["spec"]["template"]["spec"]["containers"][0]
    ref = next(e for e in hearth["env"] if e["name"] == "HEARTH_API_KEYS")["valueFrom"]["secretKeyRef"]
    expect(
        f"get secret {ref['name']} -o jsonpath='{{.data.{ref['key']}}}'" in notes,
        name,
        f"NOTES does not read the key from {ref['name']}/{ref['key']}:\n{notes}",
    )
    for d in by_kind(docs, "Deployment"):
        expect(f"logs -f deploy/{d['metadata']['name']}" in notes, name, f"NOTES: no logs of {d['metadata']['name']}")


def probe_secs(p):
    return p.get("periodSeconds", 10) * p.get("failureThreshold", 3)


def check_file(values_path):
    name = values_path.name if values_path else "chart defaults"
    values = yaml.safe_load(values_path.read_text()) if values_path else {}
    lint = helm("lint", "--strict", str(CHART), *(["-f", str(values_path)] if values_path else []))
    expect(lint.returncode == 0, name, f"helm lint --strict:\n{lint.stdout}{lint.stderr}")
    r = render(values_path)
    if not expect(r.returncode == 0, name, f"helm template:\n{r.stderr}"):
        return
    validate(r.stdout, name)
    docs = [d for d in yaml.safe_load_all(r.stdout) if d]
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    models = values.get("models", defaults["models"])
    vllm_models = {m["name"]: m for m in models if m["engine"] == "vllm"}

    deploys = by_kind(docs, "Deployment")
    gateway = [d for d in deploys if component(d) == "gateway"]
    engines = [d for d in deploys if component(d) == "engine"]
    workers = [d for d in deploys if component(d) == "worker"]
    if not expect(len(gateway) == 1, name, f"{len(gateway)} gateway Deployments"):
        return
    gateway = gateway[0]
    expect(len(engines) == len(vllm_models), name, f"{len(engines)} engines for {len(vllm_models)} vllm models")
    for d in deploys:
        check_security(d, f"{name} {d['metadata']['name']}")
    for sts in by_kind(docs, "StatefulSet"):
        check_security(sts, f"{name} {sts['metadata']['name']}")

    # GPUs: on engine pods only, as many as the model asks, on GPU nodes.
    for d in deploys:
        for c in containers(d):
            res = c.get("resources", {})
            gpus = res.get("limits", {}).get(GPU)
            where = f"{name} {d['metadata']['name']}/{c['name']}"
            if component(d) == "engine":
                model = vllm_models[d["metadata"]["labels"]["hearth.dev/model"]]
                expect(gpus == model.get("gpus", 1), where, f"{GPU} limit {gpus}, model asks {model.get('gpus', 1)}")
                pod = d["spec"]["template"]["spec"]
                expect(pod.get("nodeSelector"), where, "engine pod without a nodeSelector for GPU nodes")
                expect(
                    any(t.get("key") == GPU for t in pod.get("tolerations", [])),
                    where,
                    "engine pod does not tolerate the GPU taint",
                )
                expect(probe_secs(c["startupProbe"]) >= 1800, where, "engine startup probe under 30 minutes")
                expect(c["livenessProbe"]["httpGet"]["path"] == "/health", where, "engine liveness")
                env = {e["name"]: e for e in c["env"]}
                expect(
                    "secretKeyRef" in env.get("HF_TOKEN", {}).get("valueFrom", {}),
                    where,
                    "HF_TOKEN not from a Secret",
                )
                args = c["args"]
                served = args[args.index("--served-model-name") + 1]
                expect(served == model["name"], where, f"served as {served}")
                expect(args[0] == model["hfModel"], where, f"serves {args[0]}")
            else:
                expect(gpus is None and GPU not in res.get("requests", {}), where, "GPU asked outside an engine")

    # The gateway: probes, data volume, keys and config from Secret and ConfigMap.
    g = gateway["spec"]["template"]
    hearth = next(c for c in g["spec"]["containers"] if c["name"] == "hearth")
    gw = f"{name} gateway"
    expect(hearth["livenessProbe"]["httpGet"]["path"] == "/health", gw, "liveness is not /health")
    expect(hearth["readinessProbe"]["httpGet"]["path"] == "/ready", gw, "readiness is not /ready")
    expect(probe_secs(hearth["startupProbe"]) >= 600, gw, "startup probe under 10 minutes")
    mounts = {m["mountPath"]: m for m in hearth["volumeMounts"]}
    expect("/var/lib/hearth" in mounts and not mounts["/var/lib/hearth"].get("readOnly"), gw, "no writable data dir")
    expect(mounts.get("/etc/hearth", {}).get("readOnly"), gw, "config not mounted read-only")
    envs = {e["name"]: e for e in hearth["env"]}
    expect("secretKeyRef" in envs.get("HEARTH_API_KEYS", {}).get("valueFrom", {}), gw, "HEARTH_API_KEYS not from a Secret")

    cms = by_kind(docs, "ConfigMap")
    toml_text = cms[0]["data"]["hearth.toml"] if cms else ""
    cfg = tomllib.loads(toml_text)
    checksum = g["metadata"]["annotations"].get("checksum/config", "")
    expect(re.fullmatch(r"[0-9a-f]{64}", checksum), gw, "no checksum/config annotation")

    # Nothing secret outside a Secret (ConfigMaps, env literals, annotations).
    secrets = secret_values(docs, values)
    for d in docs:
        if d["kind"] == "Secret":
            continue
        text = yaml.safe_dump(d)
        for s in secrets:
            expect(s not in text, f"{name} {d['kind']}/{d['metadata']['name']}", "holds a secret value")

    # Each engine model points at its engine's Service.
    services = {s["metadata"]["name"]: s for s in by_kind(docs, "Service")}
    for m in cfg.get("models", []):
        if m["name"] in vllm_models:
            host, port = re.match(r"^http://([^:/]+):(\d+)/v1$", m["base_url"]).groups()
            svc = services.get(host)
            if expect(svc, gw, f"{m['name']}: base_url names no Service ({host})"):
                expect(svc["spec"]["ports"][0]["port"] == int(port), gw, f"{m['name']}: port {port}")
                expect(svc["spec"]["selector"].get("app.kubernetes.io/component") == "engine", gw, "not an engine")
            expect(m.get("upstream_model") == m["name"], gw, f"{m['name']}: upstream_model")

    # NetworkPolicies: engines answer the gateway only; the worker is walled in.
    nps = by_kind(docs, "NetworkPolicy")
    eng_np = [n for n in nps if n["spec"]["podSelector"]["matchLabels"].get("app.kubernetes.io/component") == "engine"]
    if vllm_models:
        if expect(len(eng_np) == 1, name, "no NetworkPolicy for the engines"):
            spec = eng_np[0]["spec"]
            expect("Ingress" in spec["policyTypes"], name, "engine policy does not govern ingress")
            froms = [f for rule in spec["ingress"] for f in rule.get("from", [])]
            expect(
                len(spec["ingress"]) == 1
                and froms
                and all(
                    set(f) == {"podSelector"}
                    and f["podSelector"]["matchLabels"].get("app.kubernetes.io/component") in ("gateway", "worker")
                    for f in froms
                ),
                name,
                f"engines reachable from more than the gateway and the worker: {spec['ingress']}",
            )
            ports = {p["port"] for rule in spec["ingress"] for p in rule.get("ports", [])}
            served = {
                p["containerPort"] for d in engines for c in d["spec"]["template"]["spec"]["containers"]
                for p in c.get("ports", [])
            }
            expect(ports == served, name, f"engine policy opens ports {ports}, engines listen on {served}")
    if workers:
        w = workers[0]
        wn = [n for n in nps if n["spec"]["podSelector"]["matchLabels"].get("app.kubernetes.io/component") == "worker"]
        if expect(len(wn) == 1, name, "no NetworkPolicy for the worker"):
            spec = wn[0]["spec"]
            expect(set(spec["policyTypes"]) == {"Ingress", "Egress"}, name, "worker policy types")
            expect(not spec.get("ingress"), name, "worker accepts ingress")
            expect(all(rule.get("to") for rule in spec["egress"]), name, "an egress rule to anywhere")
            reach = {
                t.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
                for rule in spec["egress"] for t in rule["to"]
            }
            expect("gateway" in reach, name, "worker cannot reach the gateway")
            expect(("engine" in reach) == bool(vllm_models), name, "worker and the engines")
            expected_rules = 2 + bool(vllm_models) + len(values.get("jobs", {}).get("worker", {}).get("egress", []))
            expect(len(spec["egress"]) == expected_rules, name, f"{len(spec['egress'])} egress rules, not {expected_rules}")
            if eng_np:
                froms = [f["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
                         for rule in eng_np[0]["spec"]["ingress"] for f in rule["from"]]
                expect(sorted(froms) == ["gateway", "worker"], name, f"engines answer {froms}")
        wc = w["spec"]["template"]["spec"]["containers"][0]
        expect(wc["args"][:1] == ["worker"], name, "worker does not run `hearth worker`")
        genv = {e["name"]: e.get("value") for e in hearth["env"]}
        expect(genv.get("HEARTH_JOBS_CONCURRENCY") == "0", name, "the gateway still runs jobs beside the worker")
        # `hearth worker` loads the same hearth.toml with its own environment.
        wenv = pod_env(wc, docs, f"{name} worker")
        expect("HEARTH_JOBS_CONCURRENCY" not in wenv, name, "the worker runs no jobs")
        wkeys = len([k for k in wenv.get("HEARTH_API_KEYS", "").split(",") if k])
        config_check(toml_text, wenv, f"{name} worker", len(models), wkeys)
    elif eng_np:
        froms = [f["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
                 for rule in eng_np[0]["spec"]["ingress"] for f in rule["from"]]
        expect(froms == ["gateway"], name, f"engines answer {froms}")

    # The real binary accepts the config with what the gateway pod gets.
    env = pod_env(hearth, docs, gw)
    keys = len([k for k in env.get("HEARTH_API_KEYS", "").split(",") if k])
    config_check(toml_text, env, gw, len(models), keys)
    for init in g["spec"].get("initContainers", []):
        expect(init["args"][:2] == ["models", "pull"], gw, f"init container {init['name']}")
    check_notes(values_path, docs, values, name)
    return docs, values, gateway, cfg


def specific(name, docs, values, gateway, cfg):
    """What each values file is there to show."""
    kinds = lambda k: by_kind(docs, k)  # noqa: E731
    pod = gateway["spec"]["template"]["spec"]
    if name == "cpu-sqlite.yaml":
        expect(gateway["spec"]["replicas"] == 1 and gateway["spec"]["strategy"]["type"] == "Recreate", name, "one replica, Recreate")
        pvcs = kinds("PersistentVolumeClaim")
        expect(len(pvcs) == 1 and pvcs[0]["spec"].get("storageClassName") == "local-path", name, "data PVC")
        expect(pvcs[0]["metadata"]["annotations"].get("helm.sh/resource-policy") == "keep", name, "PVC not kept")
        expect(pod.get("runtimeClassName") == "gvisor", name, "jobs in serve: the gateway's runtimeClassName")
        init = pod.get("initContainers", [])
        expect(len(init) == 1 and "--sha256" in init[0]["args"], name, "the model's pull init container")
        ing = kinds("Ingress")[0]
        expect(ing["metadata"]["annotations"].get("cert-manager.io/cluster-issuer") == "letsencrypt", name, "cert-manager")
        expect(not kinds("PodDisruptionBudget") and not kinds("NetworkPolicy"), name, "PDB/NetworkPolicy on one CPU pod")
        expect("limits" not in cfg, name, "rate limits in Redis without Redis")
        expect("objects" not in cfg["storage"], name, "job files in S3 in SQLite mode")
    elif name == "one-gpu.yaml":
        eng = [d for d in kinds("Deployment") if component(d) == "engine"][0]
        vols = {v["name"]: v for v in eng["spec"]["template"]["spec"]["volumes"]}
        expect(vols["cache"].get("hostPath", {}).get("path") == "/var/lib/hearth-models", name, "hostPath cache")
        expect(len(kinds("PersistentVolumeClaim")) == 1, name, "only the data PVC (the cache is a hostPath)")
        ing = kinds("Ingress")[0]
        expect(ing["spec"]["tls"][0]["secretName"] == "llm-lab-tls", name, "existing TLS secret")
        expect(not any(k.startswith("cert-manager.io") for k in ing["metadata"]["annotations"]), name, "cert-manager asked")
        expect("hf-token" in kinds("Secret")[0]["data"], name, "hf-token in the Secret")
        expect(eng["spec"]["template"]["spec"].get("runtimeClassName") == "nvidia", name, "engine runtime")
        expect("runtimeClassName" not in pod, name, "the gateway asks a GPU runtime")
    elif name == "two-gpu-external.yaml":
        expect(gateway["spec"]["replicas"] == 3 and gateway["spec"]["strategy"]["type"] == "RollingUpdate", name, "3 replicas, rolling")
        expect(len(kinds("PodDisruptionBudget")) == 1, name, "a PDB")
        hearth = pod["containers"][0]
        env = {e["name"]: e for e in hearth["env"]}
        for var, key in (("HEARTH_DATABASE_URL", "database-url"), ("HEARTH_REDIS_URL", "redis-url")):
            ref = env.get(var, {}).get("valueFrom", {}).get("secretKeyRef", {})
            expect(ref.get("key") == key, name, f"{var} not from the Secret's {key}")
        data = kinds("Secret")[0]["data"]
        expect({"redis-url", "s3-access-key-id", "s3-secret-access-key"} <= set(data), name, "Redis and S3 in the Secret")
        pvcs = {p["metadata"]["name"] for p in kinds("PersistentVolumeClaim")}
        expect(pvcs == {"hearth-engine-llama-8b-cache", "hearth-engine-qwen-vl-cache"}, name, f"claims {pvcs}")
        expect(cfg.get("limits", {}).get("backend") == "redis", name, "rate limits not in Redis")
        st = cfg["storage"]
        expect(st.get("objects") == "s3" and st["s3"]["bucket"] == "hearth-artifacts", name, f"objects: {st}")
        expect(st["s3"].get("endpoint") == "https://s3.eu-west-1.amazonaws.com", name, "s3 endpoint")
        for var, key in (("AWS_ACCESS_KEY_ID", "s3-access-key-id"), ("AWS_SECRET_ACCESS_KEY", "s3-secret-access-key")):
            ref = env.get(var, {}).get("valueFrom", {}).get("secretKeyRef", {})
            expect(ref.get("key") == key, name, f"{var} not from the Secret's {key}")
    elif name == "jobs-gvisor.yaml":
        expect("replicas" not in gateway["spec"], name, "replicas set beside the HPA")
        expect(len(kinds("HorizontalPodAutoscaler")) == 1, name, "an HPA")
        expect(not kinds("Secret"), name, "a Secret rendered beside existingSecret")
        worker = [d for d in kinds("Deployment") if component(d) == "worker"]
        if expect(len(worker) == 1, name, "a worker Deployment"):
            expect(worker[0]["spec"]["template"]["spec"].get("runtimeClassName") == "gvisor", name, "worker runtime")
        expect("runtimeClassName" not in pod, name, "the gateway runs no jobs here")
        expect(cfg.get("limits", {}).get("backend") == "redis", name, "existingSecret's Redis not used")
        s3 = cfg["storage"].get("s3", {})
        expect(cfg["storage"].get("objects") == "s3" and s3.get("path_style") and s3.get("allow_http"), name, f"MinIO: {s3}")
        eng = [d for d in kinds("Deployment") if component(d) == "engine"][0]
        args = eng["spec"]["template"]["spec"]["containers"][0]["args"]
        expect(args[args.index("--tensor-parallel-size") + 1] == "2", name, "tensor parallel over 2 GPUs")


def must_fail(where, result, pattern):
    out = result.stdout + result.stderr
    expect(result.returncode != 0 and re.search(pattern, out), where, f"expected a failure matching {pattern!r}, got rc {result.returncode}:\n{out}")


def negatives():
    must_fail("schema: replicas: two", render(sets=["gateway.replicas=two"]), r"replicas")
    must_fail("schema: engine typo", render(sets=["models[0].engine=vlm"]), r"engine")
    must_fail("schema: unknown key", render(sets=["gatway.replicas=2"]), r"gatway")
    must_fail("schema: vllm without hfModel", render(sets=["models[0].engine=vllm"]), r"hfModel")
    must_fail("chart: sqlite with 3 replicas", render(sets=["gateway.replicas=3"]), r"state.mode=sqlite")
    must_fail(
        "chart: two engines with one name",
        render(sets=["models[0].name=a.b", "models[0].engine=vllm", "models[0].hfModel=x/y",
                     "models[1].name=a-b", "models[1].engine=vllm", "models[1].hfModel=x/z"]),
        r"same engine name",
    )
    must_fail(
        "chart: a worker without shared job files",
        render(VALUES / "jobs-gvisor.yaml", ["state.external.s3.bucket="]),
        r"state.external.s3.bucket",
    )
    must_fail(
        "chart: a bucket without keys",
        render(VALUES / "two-gpu-external.yaml", ["state.external.s3.secretAccessKey="]),
        r"secretAccessKey",
    )
    must_fail(
        "chart: external without a database",
        render(sets=["state.mode=external"]),
        r"databaseUrl",
    )
    # The validator catches a broken manifest and our WARN rule an unknown kind.
    good = render(VALUES / "one-gpu.yaml").stdout
    broken = good.replace("containerPort: 8000", "containerPort: eight-thousand", 1)
    expect(broken != good and validate(broken), "kubernetes-validate", "accepted containerPort: eight-thousand")
    dup = good.replace("kind: Service\n", "kind: Service\nkind: Service\n", 1)
    expect(dup != good and validate(dup), "yamllint", "a duplicate key passed")
    gizmo = "apiVersion: example.com/v1\nkind: Gizmo\nmetadata: {name: x}\n"
    expect(validate(gizmo), "kubernetes-validate", "an unknown kind passed (its WARN not caught)")
    # The config check fails without the keys the Secret provides.
    cm = next(d for d in yaml.safe_load_all(good) if d and d["kind"] == "ConfigMap")
    with tempfile.TemporaryDirectory() as tmp:
        p = Path(tmp) / "hearth.toml"
        p.write_text(cm["data"]["hearth.toml"])
        r = subprocess.run([HEARTH, "config", "check", str(p)], capture_output=True, text=True,
                           env={"PATH": os.environ["PATH"], "HOME": tmp})
    must_fail("config check without keys", r, r"requires at least one API key")


def models_claim():
    """An embedded model's file from a claim: mounted read-only, nothing pulled."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        yaml.safe_dump({
            "secrets": {"apiKeys": ["sk-test-claim-0001"]},
            "gateway": {"modelsClaim": "gguf-models"},
            "models": [{"name": "qwen-0.5b", "engine": "embedded", "file": "qwen2.5-0.5b-instruct-q4_k_m.gguf"}],
        }, f)
        f.flush()
        r = render(f.name)
    if not expect(r.returncode == 0, "modelsClaim", r.stderr):
        return
    validate(r.stdout, "modelsClaim")
    docs = [d for d in yaml.safe_load_all(r.stdout) if d]
    gw = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m for m in gw["containers"][0]["volumeMounts"]}
    expect(mounts.get("/var/lib/hearth/models", {}).get("readOnly"), "modelsClaim", "models not mounted read-only")
    expect(not gw.get("initContainers"), "modelsClaim", "a pull beside the claim")
    claim = next(v for v in gw["volumes"] if v["name"] == "models")
    expect(claim["persistentVolumeClaim"]["claimName"] == "gguf-models", "modelsClaim", "claim")
    toml_text = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["hearth.toml"]
    path = tomllib.loads(toml_text)["models"][0]["path"]
    expect(path == "/var/lib/hearth/models/qwen2.5-0.5b-instruct-q4_k_m.gguf", "modelsClaim", path)
    config_check(toml_text, {"HEARTH_API_KEYS": "sk-test-claim-0001"}, "modelsClaim", 1, 1)
    must_fail(
        "chart: a file without a claim",
        render(sets=["gateway.modelsClaim=", "models[0].name=m", "models[0].engine=embedded", "models[0].file=m.gguf"]),
        r"gateway.modelsClaim",
    )


def checksums():
    def sum_of(*sets):
        r = render(VALUES / "two-gpu-external.yaml", sets)
        docs = [d for d in yaml.safe_load_all(r.stdout) if d]
        return {
            d["metadata"]["name"]: d["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            for d in docs
            if d["kind"] == "Deployment" and component(d) == "gateway"
        }
    base = sum_of()
    expect(sum_of() == base, "checksum", "not stable across renders")
    expect(sum_of("extraConfig=[limits]\nmax_messages = 100") != base, "checksum", "unchanged by extraConfig")
    expect(sum_of("models[0].maxConcurrency=3") != base, "checksum", "unchanged by a model's setting")
    expect(sum_of("gateway.resources.limits.memory=3Gi") == base, "checksum", "changed by a non-config value")


def main():
    files = [None] + sorted(VALUES.glob("*.yaml"))
    for f in files:
        start = time.monotonic()
        result = check_file(f)
        if result and f:
            specific(f.name, *result)
        print(f"== {f.name if f else 'chart defaults'}: {time.monotonic() - start:.1f} s", flush=True)
    start = time.monotonic()
    negatives()
    models_claim()
    checksums()
    print(f"== failure cases and checksums: {time.monotonic() - start:.1f} s", flush=True)
    if failures:
        print(f"{len(failures)} failure(s)", file=sys.stderr)
        sys.exit(1)
    print(f"helm chart: {len(files)} values files checked, all passed")


if __name__ == "__main__":
    main()
