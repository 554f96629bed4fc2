#!/usr/bin/env bash
# Validates the deployment files under deploy/ without Docker or a cluster:
#   1. promtool check config deploy/prometheus.yml, and the relabelling of
#      deploy/prometheus-k8s-pods.yml (with a static stand-in for k8s discovery)
#   2. every YAML file under deploy/ parses, and compose.yaml, k8s/*.yaml,
#      grafana/provisioning/, the Dockerfile and grafana/convene.json have the
#      structure the split layout (`convene control`, `convene signaling`,
#      `convene sfu` as separate processes) relies on: services, host
#      networking, health checks, probes, ports, mounts, panels; and the
#      subcommands, flags, env vars and metric names they use exist in the
#      Rust sources (read only; skipped if deploy/ is used without them)
#   3. every PromQL expression in the dashboard parses (promtool check rules)
#   4. if kubectl is present: the kustomization builds
#   5. if `docker compose` is present: compose.yaml passes `compose config`
# Run from anywhere: bash deploy/check.sh. Exits non-zero on the first failing
# step, after listing every problem that step found.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

fail() {
  echo "check.sh: FAIL: $*" >&2
  exit 1
}

command -v promtool >/dev/null 2>&1 \
  || fail "promtool not found (Debian: apt-get update && apt-get install -y prometheus)"
command -v python3 >/dev/null 2>&1 || fail "python3 not found"
python3 -c 'import yaml' 2>/dev/null \
  || fail "PyYAML not found (Debian: apt-get install -y python3-yaml, or pip install pyyaml)"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "== promtool check config deploy/prometheus.yml"
promtool check config deploy/prometheus.yml || fail "deploy/prometheus.yml is not a valid Prometheus config"

# Debian's promtool is built without Kubernetes service discovery, so the
# annotation-based jobs are checked with kubernetes_sd_configs replaced by a
# static target: that still checks every relabelling rule and regex.
echo "== promtool check config deploy/prometheus-k8s-pods.yml (static stand-in for kubernetes_sd)"
python3 - deploy/prometheus-k8s-pods.yml "$tmp/k8s-pods-static.yml" <<'PY' || fail "cannot read deploy/prometheus-k8s-pods.yml"
import sys, yaml
cfg = yaml.safe_load(open(sys.argv[1]))
for job in cfg.get("scrape_configs") or []:
    if job.pop("kubernetes_sd_configs", None) is None:
        sys.exit(f"job {job.get('job_name')} has no kubernetes_sd_configs")
    job["static_configs"] = [{"targets": ["127.0.0.1:8080"]}]
yaml.safe_dump(cfg, open(sys.argv[2], "w"))
PY
promtool check config "$tmp/k8s-pods-static.yml" >/dev/null 2>&1 \
  || { promtool check config "$tmp/k8s-pods-static.yml" || true; fail "deploy/prometheus-k8s-pods.yml has invalid scrape jobs"; }
echo "  SUCCESS"

echo "== structure of compose, k8s, provisioning, Dockerfile and dashboard files"
python3 - "$tmp/dashboard-rules.yml" <<'PY' || fail "structure check failed (problems listed above)"
import json
import pathlib
import re
import sys

import yaml

DEPLOY = pathlib.Path("deploy")
rules_out = pathlib.Path(sys.argv[1])
errors = []


def err(where, msg):
    errors.append(f"{where}: {msg}")


def load_yaml(path):
    try:
        with open(path) as f:
            return [d for d in yaml.safe_load_all(f) if d is not None]
    except yaml.YAMLError as e:
        err(path, f"invalid YAML: {e}")
        return []


# --- every YAML file parses ---------------------------------------------------
docs = {}
yaml_files = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))
for p in yaml_files:
    docs[p] = load_yaml(p)
    if not docs[p]:
        err(p, "no YAML documents")
print(f"  parsed {len(yaml_files)} YAML files")

# --- what the binary really accepts (read from the Rust sources) -------------
# Subcommands, long flags, env vars and metric names, so that the deployment
# files cannot drift from the code (e.g. run a subcommand that does not exist).
# The binary's src/ and the workspace crates' */src/ (not target*/ or .*/).
src_dirs = [pathlib.Path("src")] + [d / "src" for d in sorted(pathlib.Path(".").iterdir())
                                    if d.is_dir() and not d.name.startswith(("target", "."))]
rust_files = [p for d in src_dirs if d.is_dir() for p in sorted(d.rglob("*.rs"))]
rust = "\n".join(p.read_text(errors="replace") for p in rust_files)
have_rust = bool(rust_files) and pathlib.Path("src/cli.rs").exists()
if have_rust:
    cli = pathlib.Path("src/cli.rs").read_text()
    enum = re.search(r"pub enum Command \{(.*?)\n\}", cli, re.S)
    subcommands = {re.sub(r"(?<!^)(?=[A-Z])", "-", v).lower()
                   for v in re.findall(r"^\s{4}([A-Z]\w*)\s*[({,]", enum.group(1) if enum else "", re.M)}
    flags = set(re.findall(r'long\s*=\s*"([a-z0-9-]+)"', rust))
    flags |= {f.replace("_", "-") for f in
              re.findall(r"#\[arg\(\s*long\s*[,)](?:[^\]]|\n)*?\]\s*(?:///[^\n]*\n\s*)*pub\s+(\w+)\s*:", rust)}
    env_vars = set(re.findall(r'env\s*=\s*"([A-Z0-9_]+)"', rust))
    metric_names = set(re.findall(r'"(convene_[a-z0-9_]+)"', rust))
    print(f"  from the Rust sources: subcommands {sorted(subcommands)}, {len(flags)} flags, "
          f"{len(env_vars)} env vars, {len(metric_names)} metric names")
else:
    print("  Rust sources not found: skipping the CLI/env/metric cross-checks")


def check_command(where, argv):
    """argv without the program name, e.g. ['up', '--http-addr', ...]."""
    if not have_rust:
        return
    if not argv or argv[0] not in subcommands:
        err(where, f"runs subcommand {argv[:1]}, the binary has {sorted(subcommands)}")
    for a in argv[1:]:
        if a.startswith("--") and a[2:].split("=")[0] not in flags:
            err(where, f"flag {a} is not a convene flag")


def check_env_keys(where, keys):
    if not have_rust:
        return
    for k in keys:
        if (k.startswith("CONVENE_") or k in ("DATABASE_URL", "REDIS_URL")) and k not in env_vars:
            err(where, f"environment {k} is not read by convene")


def flag_value(argv, flag):
    return argv[argv.index(flag) + 1] if flag in argv[:-1] else None


# --- prometheus.yml: one job per convene service -------------------------------
prom = (docs.get(DEPLOY / "prometheus.yml") or [{}])[0]
jobs = {j.get("job_name"): j for j in prom.get("scrape_configs") or []}
# Each service's /metrics on its own loopback port (compose.yaml).
SERVICE_PORTS = {"control": 8081, "signaling": 8082, "sfu": 8083}
for job, port in SERVICE_PORTS.items():
    j = jobs.get(job)
    if j is None:
        err("deploy/prometheus.yml", f"no scrape job '{job}'")
        continue
    if j.get("metrics_path", "/metrics") != "/metrics":
        err("deploy/prometheus.yml", f"job '{job}' should scrape /metrics")
    targets = [t for sc in j.get("static_configs") or [] for t in sc.get("targets") or []]
    if targets != [f"127.0.0.1:{port}"]:
        err("deploy/prometheus.yml", f"job '{job}' should target 127.0.0.1:{port}, targets {targets}")
for stale in ("convene", "convene-media"):
    if stale in jobs:
        err("deploy/prometheus.yml", f"job '{stale}': the services are scraped one by one now")

pods_cfg = (docs.get(DEPLOY / "prometheus-k8s-pods.yml") or [{}])[0]
pod_jobs = {j.get("job_name"): j for j in pods_cfg.get("scrape_configs") or []}
if set(pod_jobs) != set(SERVICE_PORTS):
    err("deploy/prometheus-k8s-pods.yml", f"jobs should be {sorted(SERVICE_PORTS)}, are {sorted(pod_jobs)}")
for name, j in pod_jobs.items():
    keeps = [r for r in j.get("relabel_configs") or []
             if r.get("action") == "keep"
             and r.get("source_labels") == ["__meta_kubernetes_pod_label_app_kubernetes_io_name"]]
    if not keeps or keeps[0].get("regex") != name:
        err("deploy/prometheus-k8s-pods.yml", f"job '{name}' should keep only pods labelled "
                                              f"app.kubernetes.io/name={name}")

# --- compose.yaml -------------------------------------------------------------
compose_path = DEPLOY / "compose.yaml"
compose = (docs.get(compose_path) or [{}])[0]
services = compose.get("services") or {}
for name in ("control", "signaling", "sfu", "gateway", "postgres", "redis", "coturn", "prometheus", "grafana"):
    if name not in services:
        err(compose_path, f"service '{name}' missing")
if "convene" in services:
    err(compose_path, "service 'convene': the services run as separate processes (control, signaling, sfu)")


def healthcheck_text(svc):
    test = ((services.get(svc) or {}).get("healthcheck") or {}).get("test")
    if test is None:
        return None
    return " ".join(test) if isinstance(test, list) else str(test)


def env_of(svc):
    env = (services.get(svc) or {}).get("environment") or {}
    if not isinstance(env, dict):
        err(compose_path, f"service '{svc}' environment should be a mapping")
        return {}
    return env


# Health checks the stack and the docs promise, and what each must probe.
for svc, needle in (
    *((s, f"http://127.0.0.1:{p}/healthz") for s, p in SERVICE_PORTS.items()),
    ("gateway", "http://127.0.0.1:8080/healthz"),
    ("postgres", "pg_isready"),
    ("redis", "ping"),
    ("prometheus", "127.0.0.1:9090/-/ready"),
):
    text = healthcheck_text(svc)
    if text is None:
        err(compose_path, f"service '{svc}' has no healthcheck")
    elif needle not in text:
        err(compose_path, f"service '{svc}' healthcheck should contain '{needle}', is: {text}")

# depends_on with condition service_healthy needs a healthcheck on the target.
for name, svc in services.items():
    deps = svc.get("depends_on") or {}
    if isinstance(deps, dict):
        for dep, cond in deps.items():
            if dep not in services:
                err(compose_path, f"'{name}' depends on unknown service '{dep}'")
            elif (cond or {}).get("condition") == "service_healthy" and healthcheck_text(dep) is None:
                err(compose_path, f"'{name}' waits for '{dep}' to be healthy, but '{dep}' has no healthcheck")
    else:
        for dep in deps:
            if dep not in services:
                err(compose_path, f"'{name}' depends on unknown service '{dep}'")

# The SFU and coturn need the host stack for UDP/ICE; everything else that
# talks to them or to each other on 127.0.0.1 does too.
for svc in ("control", "signaling", "sfu", "gateway", "coturn", "prometheus", "grafana"):
    if (services.get(svc) or {}).get("network_mode") != "host":
        err(compose_path, f"service '{svc}' must use network_mode: host")
for name, svc in services.items():
    if svc.get("network_mode") == "host" and svc.get("ports"):
        err(compose_path, f"service '{name}' is on the host network; its 'ports' would be ignored")

commands = {}
for name in SERVICE_PORTS:
    svc = services.get(name) or {}
    if str(svc.get("image", "")) != "${CONVENE_IMAGE:-convene:dev}":
        err(compose_path, f"service '{name}' should run image ${{CONVENE_IMAGE:-convene:dev}}")
    cmd = [str(a) for a in svc.get("command") or []]
    commands[name] = cmd
    if cmd[:1] != [name]:
        err(compose_path, f"service '{name}' should run 'convene {name}', command is {cmd}")
    check_command(f"{compose_path} service {name}", cmd)
    check_env_keys(f"{compose_path} service {name}", env_of(name))
    addr_flag = "--sfu-http-addr" if name == "sfu" else "--http-addr"
    if flag_value(cmd, addr_flag) != f"127.0.0.1:{SERVICE_PORTS[name]}":
        err(compose_path, f"'{name}' should pass {addr_flag} 127.0.0.1:{SERVICE_PORTS[name]} "
                          f"(prometheus.yml scrapes it there), command is {cmd}")
for flag, want in (("--udp-port", "7882"), ("--sfu-public-ip", "${CONVENE_PUBLIC_IP:-127.0.0.1}")):
    if flag_value(commands["sfu"], flag) != want:
        err(compose_path, f"sfu should pass {flag} {want}, command is {commands['sfu']}")
for flag, want in (("--control-url", f"http://127.0.0.1:{SERVICE_PORTS['control']}"),
                   ("--sfu-url", f"http://127.0.0.1:{SERVICE_PORTS['sfu']}")):
    if flag_value(commands["signaling"], flag) != want:
        err(compose_path, f"signaling should pass {flag} {want}, command is {commands['signaling']}")

env = env_of("control")
for key in ("DATABASE_URL", "REDIS_URL", "CONVENE_JWT_SECRET", "CONVENE_INTERNAL_SECRET",
            "CONVENE_PUBLIC_URL", "CONVENE_TURN_SECRET", "CONVENE_TURN_URLS", "CONVENE_STUN_URLS"):
    if key not in env:
        err(compose_path, f"service 'control' lacks environment {key}")
sig_env, sfu_env = env_of("signaling"), env_of("sfu")
for key in ("REDIS_URL", "CONVENE_INTERNAL_SECRET", "CONVENE_SFU_HTTP_SECRET"):
    if key not in sig_env:
        err(compose_path, f"service 'signaling' lacks environment {key}")
# Shared secrets and the event bus must be the same on both ends.
for key, other, other_env in (("CONVENE_INTERNAL_SECRET", "control", env),
                              ("REDIS_URL", "control", env),
                              ("CONVENE_SFU_HTTP_SECRET", "sfu", sfu_env)):
    if key in sig_env and sig_env.get(key) != other_env.get(key):
        err(compose_path, f"signaling's {key} differs from {other}'s")

# On the host network the services reach postgres/redis through the ports
# they publish on the host's loopback; the URLs and the ports must agree.
for svc, key, scheme, port in (("postgres", "DATABASE_URL", "postgres", 5432), ("redis", "REDIS_URL", "redis", 6379)):
    published = [str(x) for x in (services.get(svc) or {}).get("ports") or []]
    if f"127.0.0.1:{port}:{port}" not in published:
        err(compose_path, f"'{svc}' should publish 127.0.0.1:{port}:{port} (loopback only), publishes {published}")
    url = str(env.get(key, ""))
    if not re.match(rf"{scheme}://([^@/]*@)?127\.0\.0\.1:{port}(/|$)", url):
        err(compose_path, f"control's {key} should point at 127.0.0.1:{port}, is {url}")

# The gateway gives browsers one origin: WebSocket and web client from
# signaling, the REST API from control.
caddyfile = DEPLOY / "Caddyfile"
caddy = caddyfile.read_text() if caddyfile.exists() else ""
if not caddy:
    err(caddyfile, "missing")
for path, svc in (("/v1/ws", "signaling"), ("/v1/*", "control")):
    m = re.search(rf"handle\s+{re.escape(path)}\s*\{{\s*reverse_proxy\s+127\.0\.0\.1:(\d+)", caddy)
    if not m or int(m.group(1)) != SERVICE_PORTS[svc]:
        err(caddyfile, f"{path} should be proxied to {svc} (127.0.0.1:{SERVICE_PORTS[svc]})")
if not re.search(r"^:8080\s*\{", caddy, re.M):
    err(caddyfile, "the gateway should listen on :8080")

# Prometheus listens on loopback; the Grafana datasource must use that address.
prom_cmd = [str(a) for a in (services.get("prometheus") or {}).get("command") or []]
listen = next((a.split("=", 1)[1] for a in prom_cmd if a.startswith("--web.listen-address=")), None)
if listen != "127.0.0.1:9090":
    err(compose_path, f"prometheus should pass --web.listen-address=127.0.0.1:9090, command is {prom_cmd}")
for required in ("--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"):
    if required not in prom_cmd:
        err(compose_path, f"prometheus command replaces the image's defaults and lacks {required}")

# Bind mounts must point at files that exist (paths are relative to deploy/).
mounts = {}
for name, svc in services.items():
    for vol in svc.get("volumes") or []:
        src, _, rest = str(vol).partition(":")
        target = rest.split(":")[0]
        if src.startswith((".", "/")):
            mounts[(name, target)] = src
            if not (DEPLOY / src).resolve().exists():
                err(compose_path, f"service '{name}' mounts {src}, which does not exist")
for svc, target, src in (
    ("coturn", "/etc/coturn/turnserver.conf", "./coturn.conf"),
    ("prometheus", "/etc/prometheus/prometheus.yml", "./prometheus.yml"),
    ("grafana", "/etc/grafana/provisioning", "./grafana/provisioning"),
    ("gateway", "/etc/caddy/Caddyfile", "./Caddyfile"),
):
    if mounts.get((svc, target)) != src:
        err(compose_path, f"service '{svc}' should mount {src} at {target}")
dashboard_mount = next((t for (s, t), src in mounts.items()
                        if s == "grafana" and src.endswith("convene.json")), None)
if dashboard_mount is None:
    err(compose_path, "grafana does not mount grafana/convene.json")

# The dev default of CONVENE_TURN_SECRET must be coturn.conf's secret, or TURN
# credentials from `docker compose up` are rejected.
coturn_conf = (DEPLOY / "coturn.conf").read_text()
m = re.search(r"^static-auth-secret=(.+)$", coturn_conf, re.M)
turn_env = str(env.get("CONVENE_TURN_SECRET", ""))
d = re.fullmatch(r"\$\{CONVENE_TURN_SECRET:-(.*)\}", turn_env)
if not m:
    err("deploy/coturn.conf", "no static-auth-secret line")
elif not d or d.group(1) != m.group(1).strip():
    err(compose_path, "CONVENE_TURN_SECRET's default differs from static-auth-secret in coturn.conf")

# --- Dockerfile -----------------------------------------------------------------
dockerfile = (DEPLOY / "Dockerfile").read_text()
cmd_line = re.findall(r"^CMD\s+(\[.*\])\s*$", dockerfile, re.M)
if not cmd_line or json.loads(cmd_line[-1]) != ["up", "--http-addr", "0.0.0.0:8080"]:
    err("deploy/Dockerfile", f'CMD should be ["up", "--http-addr", "0.0.0.0:8080"], is {cmd_line[-1:] }')
else:
    check_command("deploy/Dockerfile CMD", json.loads(cmd_line[-1]))
if not re.search(r'^ENTRYPOINT\s+\["convene"\]\s*$', dockerfile, re.M):
    err("deploy/Dockerfile", 'ENTRYPOINT should be ["convene"]')
exposed = {p for line in re.findall(r"^EXPOSE\s+(.+)$", dockerfile, re.M) for p in line.split()}
for port in ("8080", "7882-7885/udp"):
    if port not in exposed and not (port == "8080" and "8080/tcp" in exposed):
        err("deploy/Dockerfile", f"should EXPOSE {port}, exposes {sorted(exposed)}")
if "http://127.0.0.1:8080/healthz" not in dockerfile:
    err("deploy/Dockerfile", "HEALTHCHECK should probe http://127.0.0.1:8080/healthz")

# --- Grafana provisioning -----------------------------------------------------
prov = DEPLOY / "grafana" / "provisioning"
ds_docs = [d for p, ds in docs.items() if prov / "datasources" in p.parents for d in ds]
datasources = [x for d in ds_docs for x in d.get("datasources") or []]
prom_ds = [x for x in datasources if x.get("type") == "prometheus"]
if not prom_ds:
    err(prov / "datasources", "no prometheus datasource")
elif listen and prom_ds[0].get("url") != f"http://{listen}":
    err(prov / "datasources", f"datasource url should be http://{listen} (Prometheus' listen address "
                              f"on the host network), is {prom_ds[0].get('url')}")
dash_docs = [d for p, ds in docs.items() if prov / "dashboards" in p.parents for d in ds]
provider_paths = [((x.get("options") or {}).get("path")) for d in dash_docs for x in d.get("providers") or []]
if not provider_paths:
    err(prov / "dashboards", "no dashboard provider")
elif dashboard_mount and str(pathlib.PurePosixPath(dashboard_mount).parent) not in provider_paths:
    err(prov / "dashboards", f"no provider reads {pathlib.PurePosixPath(dashboard_mount).parent}, "
                             f"where compose mounts the dashboard (providers read {provider_paths})")
for d in ds_docs + dash_docs:
    if d.get("apiVersion") != 1:
        err(prov, "provisioning files need apiVersion: 1")

# --- Kubernetes manifests -----------------------------------------------------
k8s = DEPLOY / "k8s"
kust = (docs.get(k8s / "kustomization.yaml") or [{}])[0]
resources = kust.get("resources") or []
for r in resources:
    if not (k8s / r).exists():
        err(k8s / "kustomization.yaml", f"resource {r} does not exist")
for p in sorted(k8s.glob("*.y*ml")):
    if p.name != "kustomization.yaml" and p.name not in resources:
        err(k8s / "kustomization.yaml", f"{p.name} is not listed in resources")
if kust.get("namespace") != "convene":
    err(k8s / "kustomization.yaml", "namespace should be convene")
if "convene" not in [i.get("name") for i in kust.get("images") or []]:
    err(k8s / "kustomization.yaml", "no images: entry for 'convene' (the manifests say image: convene)")

objects = {}
for p in sorted(k8s.glob("*.y*ml")):
    if p.name == "kustomization.yaml":
        continue
    for i, d in enumerate(docs.get(p) or []):
        name = (d.get("metadata") or {}).get("name")
        for field, value in (("apiVersion", d.get("apiVersion")), ("kind", d.get("kind")), ("metadata.name", name)):
            if not value:
                err(f"{p} document {i + 1}", f"missing {field}")
        if (d.get("kind"), name) in objects:
            err(p, f"duplicate {d.get('kind')}/{name}")
        objects[(d.get("kind"), name)] = (p, d)

if ("Namespace", "convene") not in objects:
    err(k8s, "no Namespace 'convene'")
configmaps = {n: d for (k, n), (_, d) in objects.items() if k == "ConfigMap"}
secrets = {n: d for (k, n), (_, d) in objects.items() if k == "Secret"}
if not configmaps or not secrets:
    err(k8s, "need a ConfigMap and a Secret")
for kind, objs in (("ConfigMap", configmaps), ("Secret", secrets)):
    for n, d in objs.items():
        check_env_keys(f"{k8s} {kind}/{n}", list((d.get("data") or {}).keys()) + list((d.get("stringData") or {}).keys()))

# One workload per service: the control plane and signaling as Deployments,
# the SFU as a DaemonSet on the media nodes (hostNetwork for UDP and ICE).
WORKLOADS = {"control": "Deployment", "signaling": "Deployment", "sfu": "DaemonSet"}
# The HTTP port each serves /healthz and /metrics on, and its readiness path.
K8S_PORTS = {"control": 8080, "signaling": 8080, "sfu": 7883}
READY_PATHS = {"control": "/readyz", "signaling": "/readyz", "sfu": "/healthz"}
workloads = {(k, n): v for (k, n), v in objects.items()
             if k in ("Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Pod")}
want_workloads = sorted(f"{k}/{n}" for n, k in WORKLOADS.items())
if sorted(f"{k}/{n}" for k, n in workloads) != want_workloads:
    err(k8s, f"workloads should be {want_workloads}; have {sorted(f'{k}/{n}' for k, n in workloads)}")

pod_labels = {}
container_ports = {}
for name, kind in WORKLOADS.items():
    if (kind, name) not in objects:
        continue
    p, d = objects[(kind, name)]
    where = f"{p} {kind}/{name}"
    spec = d.get("spec") or {}
    tmpl = spec.get("template") or {}
    labels = (tmpl.get("metadata") or {}).get("labels") or {}
    pod_labels[name] = labels
    if labels.get("app.kubernetes.io/name") != name:
        err(where, f"pod label app.kubernetes.io/name should be {name} (the pod scrape jobs select on it)")
    sel = (spec.get("selector") or {}).get("matchLabels") or {}
    if not sel or any(labels.get(k) != v for k, v in sel.items()):
        err(where, f"selector {sel} does not match the pod template labels {labels}")
    port = K8S_PORTS[name]
    ann = (tmpl.get("metadata") or {}).get("annotations") or {}
    for key, want in (("prometheus.io/scrape", "true"), ("prometheus.io/port", str(port)),
                      ("prometheus.io/path", "/metrics")):
        if ann.get(key) != want:
            err(where, f"pod annotation {key} should be {want!r}, is {ann.get(key)!r}")
    pod = tmpl.get("spec") or {}
    if name == "sfu":
        if pod.get("hostNetwork") is not True:
            err(where, "needs hostNetwork: true (UDP media and ICE on the node's address)")
        if pod.get("dnsPolicy") != "ClusterFirstWithHostNet":
            err(where, "needs dnsPolicy: ClusterFirstWithHostNet (cluster DNS with hostNetwork)")
        if not pod.get("nodeSelector"):
            err(where, "needs a nodeSelector: signaling talks to one SFU, on the labelled media node")
    elif pod.get("hostNetwork"):
        err(where, "needs no hostNetwork (only the SFU does)")
    if name == "signaling":
        if spec.get("replicas") != 1:
            err(where, "replicas must be 1 (a conference's room lives in one signaling process)")
        if (spec.get("strategy") or {}).get("type") != "Recreate":
            err(where, "strategy must be Recreate (a surge pod would split rooms)")
    sc = pod.get("securityContext") or {}
    if sc.get("runAsNonRoot") is not True or sc.get("runAsUser") != 10001:
        err(where, "should run as non-root UID 10001 (the image's user)")
    containers = pod.get("containers") or []
    if len(containers) != 1:
        err(where, f"expected one container, have {len(containers)}")
    for c in containers:
        cw = f"{where} container {c.get('name')}"
        ports = c.get("ports") or []
        cports = {pt.get("name"): pt for pt in ports}
        container_ports[name] = cports
        if not any(pt.get("containerPort") == port and pt.get("protocol", "TCP") == "TCP" and pt.get("name") == "http"
                   for pt in ports):
            err(cw, f"needs containerPort {port}/TCP named http")
        for probe, path in (("readinessProbe", READY_PATHS[name]), ("livenessProbe", "/healthz")):
            get = (c.get(probe) or {}).get("httpGet") or {}
            pport = get.get("port")
            if get.get("path") != path:
                err(cw, f"{probe} should be an httpGet on {path}")
            elif not (pport == port or (pport in cports and cports[pport].get("containerPort") == port)):
                err(cw, f"{probe} should use port {port} (or its name 'http'), uses {pport!r}")
        res = c.get("resources") or {}
        if not res.get("requests") or not res.get("limits"):
            err(cw, "needs resources.requests and resources.limits")
        args = [str(a) for a in c.get("args") or []]
        if args[:1] != [name]:
            err(cw, f"should run 'convene {name}', args are {args}")
        check_command(cw, args)
        addr_flag = "--sfu-http-addr" if name == "sfu" else "--http-addr"
        if flag_value(args, addr_flag) != f"0.0.0.0:{port}":
            err(cw, f"should pass {addr_flag} 0.0.0.0:{port}, args are {args}")
        if name == "sfu":
            if flag_value(args, "--udp-port") != "7882":
                err(cw, f"should pass --udp-port 7882, args are {args}")
            if not any(pt.get("containerPort") == 7882 and pt.get("protocol") == "UDP" for pt in ports):
                err(cw, "needs containerPort 7882/UDP")
            host_ip_env = [e.get("name") for e in c.get("env") or []
                           if ((e.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath") == "status.hostIP"]
            if "NODE_IP" not in host_ip_env:
                err(cw, "needs env NODE_IP from the downward API status.hostIP")
            elif flag_value(args, "--sfu-public-ip") != "$(NODE_IP)":
                err(cw, f"--sfu-public-ip should be passed $(NODE_IP), args are {args}")
        check_env_keys(cw, [e.get("name") for e in c.get("env") or []])
        provided = set()
        for ref in c.get("envFrom") or []:
            if "configMapRef" in ref and ref["configMapRef"].get("name") not in configmaps:
                err(cw, f"envFrom ConfigMap {ref['configMapRef'].get('name')} does not exist")
            if "secretRef" in ref and ref["secretRef"].get("name") not in secrets:
                err(cw, f"envFrom Secret {ref['secretRef'].get('name')} does not exist")
            src = configmaps.get((ref.get("configMapRef") or {}).get("name")) \
                or secrets.get((ref.get("secretRef") or {}).get("name")) or {}
            provided |= set((src.get("data") or {})) | set((src.get("stringData") or {}))
        needs = {
            "control": ["DATABASE_URL", "CONVENE_INTERNAL_SECRET"],
            "signaling": ["CONVENE_CONTROL_URL", "CONVENE_INTERNAL_SECRET", "CONVENE_SFU_URL",
                          "CONVENE_SFU_HTTP_SECRET", "REDIS_URL"],
            "sfu": ["CONVENE_SFU_HTTP_SECRET"],
        }[name]
        for key in needs:
            if key not in provided:
                err(cw, f"gets no {key} from its envFrom ConfigMap/Secret")

# Every Service must select exactly one workload's pods (a typo leaves it
# empty) and target a port its container declares.
services_k8s = {n: d for (k, n), (_, d) in objects.items() if k == "Service"}
for name in WORKLOADS:
    if name not in services_k8s:
        err(k8s, f"no Service '{name}'")
for name, d in services_k8s.items():
    spec = d.get("spec") or {}
    sel = spec.get("selector") or {}
    matched = [w for w, labels in pod_labels.items() if sel and all(labels.get(k) == v for k, v in sel.items())]
    if len(matched) != 1:
        err(f"{k8s} Service/{name}", f"selector {sel} should match one workload, matches {matched}")
        continue
    cports = container_ports.get(matched[0]) or {}
    for pt in spec.get("ports") or []:
        tp = pt.get("targetPort", pt.get("port"))
        if isinstance(tp, str) and tp not in cports:
            err(f"{k8s} Service/{name}", f"targetPort '{tp}' is not a container port name of {matched[0]}")
    if name in K8S_PORTS:
        http = next((pt for pt in spec.get("ports") or [] if pt.get("name") == "http"), None)
        if not http or http.get("port") != K8S_PORTS[name]:
            err(f"{k8s} Service/{name}", f"needs a port named http on {K8S_PORTS[name]}")

# Signaling finds the control plane and the SFU through their Services.
cfg = {}
for d in configmaps.values():
    cfg.update(d.get("data") or {})
for key, svc in (("CONVENE_CONTROL_URL", "control"), ("CONVENE_SFU_URL", "sfu")):
    want = f"http://{svc}:{K8S_PORTS[svc]}"
    if cfg.get(key) != want:
        err(f"{k8s} ConfigMap", f"{key} should be {want} (Service {svc}), is {cfg.get(key)!r}")

# The Ingress gives browsers one origin: /v1/ws and the web client from
# signaling, the REST API from the control plane.
ingresses = [d for (k, _), (_, d) in objects.items() if k == "Ingress"]
routes = {}
for d in ingresses:
    for rule in (d.get("spec") or {}).get("rules") or []:
        for path in ((rule.get("http") or {}).get("paths") or []):
            svc = ((path.get("backend") or {}).get("service") or {}).get("name")
            routes[path.get("path")] = svc
            if svc not in services_k8s:
                err(f"{k8s} Ingress", f"path {path.get('path')} goes to unknown Service {svc}")
for path, svc in (("/v1/ws", "signaling"), ("/v1", "control"), ("/", "signaling")):
    if routes.get(path) != svc:
        err(f"{k8s} Ingress", f"path {path} should go to Service {svc}, goes to {routes.get(path)!r}")

# ServiceMonitor: /metrics of every service on its http port; the job label
# is the Service name, as the job names in prometheus.yml.
sms = [(n, d) for (k, n), (_, d) in objects.items() if k == "ServiceMonitor"]
if len(sms) != 1 or sms[0][1].get("apiVersion") != "monitoring.coreos.com/v1":
    err(k8s, "need one ServiceMonitor (monitoring.coreos.com/v1)")
for name, d in sms:
    where = f"{k8s} ServiceMonitor/{name}"
    spec = d.get("spec") or {}
    selector = spec.get("selector") or {}

    def selects(labels):
        if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
            return False
        for e in selector.get("matchExpressions") or []:
            if e.get("operator") == "In" and labels.get(e.get("key")) not in (e.get("values") or []):
                return False
        return bool(selector)

    matched = sorted(n for n, s in services_k8s.items() if selects((s.get("metadata") or {}).get("labels") or {}))
    if matched != sorted(WORKLOADS):
        err(where, f"should select Services {sorted(WORKLOADS)}, selects {matched}")
    eps = spec.get("endpoints") or []
    if [(e.get("port"), e.get("path", "/metrics")) for e in eps] != [("http", "/metrics")]:
        err(where, "needs one endpoint: port http, path /metrics")

# --- dashboard ----------------------------------------------------------------
dash_path = DEPLOY / "grafana" / "convene.json"
try:
    dash = json.loads(dash_path.read_text())
except (OSError, ValueError) as e:
    err(dash_path, f"not valid JSON: {e}")
    dash = {}
if not isinstance(dash.get("schemaVersion"), int) or dash["schemaVersion"] < 36:
    err(dash_path, f"schemaVersion should be >= 36, is {dash.get('schemaVersion')}")
variables = (dash.get("templating") or {}).get("list") or []
if not any(v.get("type") == "datasource" and v.get("query") == "prometheus" for v in variables):
    err(dash_path, "no Prometheus datasource template variable")

panels = []
for p in dash.get("panels") or []:
    panels.append(p)
    panels.extend(p.get("panels") or [])  # panels inside collapsed rows
if not panels:
    err(dash_path, "no panels")
ids = [p.get("id") for p in panels]
if len(ids) != len(set(ids)):
    err(dash_path, "panel ids are not unique")

rules = []
all_exprs = ""
for p in panels:
    if p.get("type") == "row":
        continue
    title = p.get("title") or f"panel {p.get('id')}"
    exprs = [(t.get("refId", "?"), (t.get("expr") or "").strip()) for t in p.get("targets") or []]
    exprs = [(r, e) for r, e in exprs if e]
    if not exprs:
        err(dash_path, f"panel '{title}' has no target with an expr")
    for ref, e in exprs:
        all_exprs += e + "\n"
        # Grafana's range variables are not PromQL; substitute a duration.
        promql = re.sub(r"\$__(rate_interval|interval|range)|\$\{__(rate_interval|interval|range)\}", "5m", e)
        rules.append({"record": f"dashboard:panel_{p.get('id')}:{ref}", "expr": promql})

for metric in (
    "convene_sfu_rooms", "convene_sfu_participants",
    "convene_sfu_packets_received_total", "convene_sfu_packets_forwarded_total",
    "convene_sfu_bytes_forwarded_total", "convene_sfu_packets_dropped_total",
    "convene_sfu_nacks_total", "convene_sfu_forwarding_latency_seconds_bucket",
    "convene_signaling_join_latency_seconds_bucket", "convene_signaling_waiting_entries",
    "convene_http_requests_total", "convene_http_request_duration_seconds_bucket",
):
    if not re.search(rf"\b{metric}\b", all_exprs):
        err(dash_path, f"no panel queries {metric}")

# Every metric the dashboard queries must exist in the code (histograms are
# registered without their _bucket/_sum/_count suffix); a query for a name
# convene does not export is an empty panel.
if have_rust:
    for metric in sorted(set(re.findall(r"\bconvene_[a-z0-9_]+", all_exprs))):
        base = re.sub(r"_(bucket|sum|count)$", "", metric)
        if metric not in metric_names and base not in metric_names:
            err(dash_path, f"queries {metric}, which convene does not export")
# job matchers must name a job that exists (convene, convene-media, ...).
for job in re.findall(r'\bjob\s*=~?\s*"([^"]*)"', all_exprs):
    if job not in jobs:
        err(dash_path, f'matches job="{job}", prometheus.yml has {sorted(jobs)}')
print(f"  compose: {len(services)} services; k8s: {len(objects)} objects; "
      f"dashboard: {len(panels)} panels, {len(rules)} queries")

rules_out.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))

if errors:
    for e in errors:
        print(f"  - {e}", file=sys.stderr)
    sys.exit(1)
PY

echo "== dashboard PromQL (promtool check rules)"
promtool check rules "$tmp/dashboard-rules.yml" || fail "a dashboard expression is not valid PromQL"

echo "== kustomize build deploy/k8s"
if command -v kubectl >/dev/null 2>&1; then
  kubectl kustomize deploy/k8s >"$tmp/k8s.yaml" || fail "kubectl kustomize deploy/k8s failed"
  echo "  $(grep -c '^kind:' "$tmp/k8s.yaml") objects rendered"
else
  echo "  skipped: kubectl not installed"
fi

echo "== docker compose config"
if docker compose version >/dev/null 2>&1; then
  docker compose -f deploy/compose.yaml config -q || fail "docker compose config rejected deploy/compose.yaml"
  echo "  ok"
else
  echo "  skipped: docker compose not installed"
fi

echo "check.sh: all deployment checks passed"
