//! deploy/ checked offline: the Kubernetes manifests against the bundled
//! Kubernetes schemas (`kubernetes-validate --strict`, from the test venv),
//! the CRD-based and kustomize files structurally, the pipeline config in the
//! ConfigMap through `tributary validate`, the probes and grace period
//! against the config, the alert rules and the dashboard parsed, and the
//! Dockerfile's shape. (Metric names used by the dashboard and the rules are
//! checked against a live worker's `/metrics` in tests/operate.rs.) The
//! Docker image itself is not built here: there is no registry to pull base
//! images from.

use std::path::{Path, PathBuf};
use std::process::Command;

use tributary_testkit::{bin_path, python, workspace_root};

fn deploy(path: &str) -> PathBuf {
    workspace_root().join("deploy").join(path)
}

/// Parses YAML documents with PyYAML (installed with kubernetes-validate)
/// into JSON values.
fn yaml(path: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(python())
        .args([
            "-c",
            "import json,sys,yaml; print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]))",
        ])
        .arg(path)
        .output()
        .expect("running python");
    assert!(
        out.status.success(),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    docs.as_array().unwrap().clone()
}

const SCHEMA_CHECKED: &[&str] = &[
    "configmap.yaml",
    "deployment.yaml",
    "service.yaml",
    "pdb.yaml",
    "backfill-job.yaml",
    "secret.example.yaml",
];

#[test]
fn kubernetes_manifests_validate_against_the_schemas() {
    let validator = python().with_file_name("kubernetes-validate");
    assert!(
        validator.is_file(),
        "{} is missing: ./scripts/setup-python.sh installs it",
        validator.display()
    );
    for file in SCHEMA_CHECKED {
        let out = Command::new(&validator)
            .arg("--strict")
            .arg(deploy(&format!("kubernetes/{file}")))
            .output()
            .expect("running kubernetes-validate");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{file}: {text}");
        assert!(text.contains("passed"), "{file}: {text}");
        assert!(
            !text.contains("WARN") && !text.contains("ERROR"),
            "{file}: {text}"
        );
    }
    // Kinds without a bundled schema: checked for what Tributary relies on.
    let monitor = &yaml(&deploy("kubernetes/servicemonitor.yaml"))[0];
    assert_eq!(monitor["kind"], "ServiceMonitor");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http");
    let kustomization = &yaml(&deploy("kubernetes/kustomization.yaml"))[0];
    for r in kustomization["resources"].as_array().unwrap() {
        let f = deploy(&format!("kubernetes/{}", r.as_str().unwrap()));
        assert!(f.is_file(), "kustomization lists {}", f.display());
    }
}

fn duration_secs(text: &str) -> u64 {
    let secs: u64 = text
        .trim_end_matches('s')
        .parse()
        .expect("a duration in seconds");
    secs
}

#[test]
fn deployment_matches_the_config_it_mounts() {
    let cm = &yaml(&deploy("kubernetes/configmap.yaml"))[0];
    let toml = cm["data"]["worker.toml"].as_str().unwrap();
    // The config validates (schema path pointed at the mounted file's copy).
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("orders.json");
    std::fs::write(&schema, cm["data"]["orders.json"].as_str().unwrap()).unwrap();
    let config = dir.path().join("worker.toml");
    std::fs::write(
        &config,
        toml.replace("/etc/tributary/orders.json", schema.to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new(bin_path("tributary"))
        .args(["validate", "--config"])
        .arg(&config)
        // As deployment.yaml sets it, from a Secret.
        .env(
            "TRIBUTARY_PIPELINES__0__SINK__STORAGE__SECRET_ACCESS_KEY",
            "from-a-secret",
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ConfigMap worker.toml: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shutdown = toml
        .lines()
        .find_map(|l| l.strip_prefix("shutdown_timeout = "))
        .map(|v| duration_secs(v.trim_matches('"')))
        .expect("shutdown_timeout in the ConfigMap");

    let dep = &yaml(&deploy("kubernetes/deployment.yaml"))[0];
    let pod = &dep["spec"]["template"]["spec"];
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        grace > shutdown,
        "terminationGracePeriodSeconds {grace} must exceed shutdown_timeout {shutdown}s"
    );
    let c = &pod["containers"][0];
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(pod["securityContext"]["runAsNonRoot"].as_bool().unwrap());
    let env = c["env"].as_array().unwrap();
    let secret_refs = env
        .iter()
        .filter(|e| e["valueFrom"]["secretKeyRef"].is_object())
        .count();
    assert!(
        secret_refs >= 2,
        "Kafka and S3 credentials come from Secrets"
    );
    assert!(
        !toml.contains("password =") && !toml.contains("secret_access_key"),
        "no secret in the ConfigMap"
    );
    let pdb = &yaml(&deploy("kubernetes/pdb.yaml"))[0];
    assert_eq!(pdb["spec"]["selector"], dep["spec"]["selector"]);
}

#[test]
fn alert_rules_and_dashboard_parse() {
    let rules = &yaml(&deploy("prometheus/tributary-rules.yaml"))[0];
    let rules = rules["groups"][0]["rules"].as_array().unwrap();
    let names: Vec<&str> = rules.iter().map(|r| r["alert"].as_str().unwrap()).collect();
    for want in [
        "TributaryLagGrowing",
        "TributaryNoLanding",
        "TributaryDeadLetterRate",
    ] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    for r in rules {
        assert!(
            r["expr"].as_str().is_some_and(|e| e.contains("tributary_")),
            "{r}"
        );
    }
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(deploy("grafana/tributary-dashboard.json")).unwrap(),
    )
    .unwrap();
    let panels = dash["panels"].as_array().unwrap();
    assert!(panels.len() >= 8);
    for p in panels {
        assert!(
            !p["targets"].as_array().unwrap().is_empty(),
            "{}",
            p["title"]
        );
    }
}

#[test]
fn dockerfile_is_multi_stage_non_root_and_ships_the_binary_only() {
    let text = std::fs::read_to_string(deploy("Dockerfile")).unwrap();
    let stages: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(stages.len(), 2, "{stages:?}");
    let runtime = text.split(stages[1]).nth(1).unwrap();
    let copies: Vec<&str> = runtime.lines().filter(|l| l.starts_with("COPY")).collect();
    assert_eq!(
        copies,
        ["COPY --from=build /usr/local/bin/tributary /usr/local/bin/tributary"]
    );
    let user = runtime
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER in the runtime stage");
    assert!(
        !user.starts_with('0') && !user.starts_with("root"),
        "{user}"
    );
    assert!(runtime.contains("EXPOSE 8083"));
}
