//! The deployment files parse and have the structure the split layout needs:
//! separate control, signaling and sfu services with health checks on
//! `/healthz`, probes, scrape settings, and one Prometheus job per service.
//! (`deploy/check.sh` checks much more, with promtool and kubectl.)

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml::Value;

const SERVICES: [&str; 3] = ["control", "signaling", "sfu"];

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// Every document of a YAML file.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// A compose `command:` or container `args:` as strings.
fn argv(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .map(|a| match a {
                    Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other).unwrap().trim().to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn compose_runs_the_services_separately_with_health_checks() {
    let docs = documents(&deploy().join("compose.yaml"));
    assert_eq!(docs.len(), 1);
    let services = &docs[0]["services"];
    for name in [
        "control",
        "signaling",
        "sfu",
        "postgres",
        "redis",
        "coturn",
        "prometheus",
        "grafana",
    ] {
        assert!(
            services.get(name).is_some(),
            "compose.yaml lacks service {name}"
        );
    }
    assert!(
        services.get("convene").is_none(),
        "the one-process service is gone"
    );
    for name in SERVICES {
        let svc = &services[name];
        let cmd = argv(&svc["command"]);
        assert_eq!(
            cmd.first().map(String::as_str),
            Some(name),
            "{name} runs `convene {name}`"
        );
        let test = argv(&svc["healthcheck"]["test"]).join(" ");
        assert!(
            test.contains("/healthz"),
            "{name}'s healthcheck probes /healthz: {test}"
        );
    }
    // The SFU's UDP port needs the host's network stack (no NAT for ICE).
    assert_eq!(str_of(&services["sfu"]["network_mode"]), "host");
    let sfu = argv(&services["sfu"]["command"]);
    assert!(sfu.iter().any(|a| a == "--udp-port"), "{sfu:?}");
    assert!(sfu.iter().any(|a| a == "--sfu-http-addr"), "{sfu:?}");
    // Signaling finds the others and needs Redis.
    let sig = argv(&services["signaling"]["command"]);
    for flag in ["--control-url", "--sfu-url"] {
        assert!(
            sig.iter().any(|a| a == flag),
            "signaling lacks {flag}: {sig:?}"
        );
    }
    assert!(services["signaling"]["environment"]
        .get("REDIS_URL")
        .is_some());
}

#[test]
fn prometheus_scrapes_each_service() {
    let docs = documents(&deploy().join("prometheus.yml"));
    let jobs: Vec<&str> = docs[0]["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs")
        .iter()
        .map(|j| str_of(&j["job_name"]))
        .collect();
    for name in SERVICES {
        assert!(jobs.contains(&name), "no job {name} in {jobs:?}");
    }
}

#[test]
fn kubernetes_manifests_have_workloads_probes_and_scrape_annotations() {
    let dir = deploy().join("k8s");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());

    let kustomization = documents(&dir.join("kustomization.yaml"));
    let resources: Vec<&str> = kustomization[0]["resources"]
        .as_sequence()
        .expect("resources")
        .iter()
        .map(str_of)
        .collect();

    let mut objects = Vec::new();
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap();
        if name == "kustomization.yaml" {
            continue;
        }
        assert!(
            resources.contains(&name),
            "{name} is not in kustomization.yaml"
        );
        for d in documents(f) {
            for field in ["apiVersion", "kind"] {
                assert!(d.get(field).is_some(), "{name}: a document lacks {field}");
            }
            assert!(
                d["metadata"].get("name").is_some(),
                "{name}: a document lacks metadata.name"
            );
            objects.push(d);
        }
    }
    let find = |kind: &str, name: &str| {
        objects
            .iter()
            .find(|o| str_of(&o["kind"]) == kind && str_of(&o["metadata"]["name"]) == name)
            .unwrap_or_else(|| panic!("no {kind}/{name}"))
    };
    for kind in ["Namespace", "ConfigMap", "Secret"] {
        assert!(
            objects.iter().any(|o| str_of(&o["kind"]) == kind),
            "no {kind}"
        );
    }

    for (kind, name) in [
        ("Deployment", "control"),
        ("Deployment", "signaling"),
        ("DaemonSet", "sfu"),
    ] {
        let w = find(kind, name);
        let pod = &w["spec"]["template"];
        let ann = &pod["metadata"]["annotations"];
        assert_eq!(str_of(&ann["prometheus.io/scrape"]), "true", "{name}");
        assert_eq!(str_of(&ann["prometheus.io/path"]), "/metrics", "{name}");
        let containers = pod["spec"]["containers"].as_sequence().expect("containers");
        assert_eq!(containers.len(), 1, "{name}");
        let c = &containers[0];
        assert_eq!(argv(&c["args"]).first().map(String::as_str), Some(name));
        assert_eq!(
            str_of(&c["livenessProbe"]["httpGet"]["path"]),
            "/healthz",
            "{name}'s liveness probe"
        );
        let ready = str_of(&c["readinessProbe"]["httpGet"]["path"]);
        assert!(
            ready == "/healthz" || ready == "/readyz",
            "{name}'s readiness probe: {ready:?}"
        );
        // Kubernetes routes to the Service of the same name.
        let svc = find("Service", name);
        let selector = svc["spec"]["selector"].as_mapping().expect("selector");
        let labels = &pod["metadata"]["labels"];
        for (k, v) in selector {
            assert_eq!(&labels[str_of(k)], v, "Service {name} selects its pods");
        }
    }
    let sfu = &find("DaemonSet", "sfu")["spec"]["template"]["spec"];
    assert_eq!(sfu["hostNetwork"], Value::Bool(true));
    let ports = sfu["containers"][0]["ports"].as_sequence().unwrap();
    assert!(ports
        .iter()
        .any(|p| p["protocol"] == "UDP" && p["containerPort"] == 7882));
}
