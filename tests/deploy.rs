//! The container image and the Kubernetes manifests, checked against the binary's own
//! configuration (Docker and a cluster are not available where tests run).

use std::collections::BTreeSet;

use clap::CommandFactory;
use killkrill::config::Cli;
use yaml_rust2::{Yaml, YamlLoader};

fn manifest(name: &str) -> Yaml {
    let path = format!("{}/deploy/kubernetes/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    YamlLoader::load_from_str(&text).unwrap().remove(0)
}

/// Every environment variable the binary reads.
fn known_variables() -> BTreeSet<String> {
    Cli::command().get_arguments().filter_map(|a| a.get_env()).map(|e| e.to_string_lossy().into_owned()).collect()
}

fn container(deployment: &Yaml) -> &Yaml {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

#[test]
fn deployment_runs_three_replicas_with_the_right_probes_and_ports() {
    let deployment = manifest("deployment.yaml");
    assert_eq!(deployment["kind"].as_str(), Some("Deployment"));
    assert_eq!(deployment["spec"]["replicas"].as_i64(), Some(3));
    let c = container(&deployment);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"].as_str(), Some("/livez"));
    assert_eq!(c["readinessProbe"]["httpGet"]["path"].as_str(), Some("/readyz"));
    let ports: Vec<(i64, &str)> = c["ports"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|p| (p["containerPort"].as_i64().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    assert_eq!(ports, [(5000, "http"), (50051, "grpc")]);
    assert_eq!(c["livenessProbe"]["httpGet"]["port"].as_str(), Some("http"));
    assert!(c["resources"]["requests"]["memory"].as_str().is_some());
    assert!(c["resources"]["limits"]["memory"].as_str().is_some());
}

#[test]
fn deployment_env_names_are_variables_the_binary_reads() {
    let deployment = manifest("deployment.yaml");
    let known = known_variables();
    let env = container(&deployment)["env"].as_vec().unwrap();
    let names: Vec<&str> = env.iter().map(|e| e["name"].as_str().unwrap()).collect();
    for name in &names {
        assert!(known.contains(*name), "{name} is not a variable killkrill reads");
    }
    for required in ["DATABASE_URL", "JWT_SECRET", "FLASK_ENV"] {
        assert!(names.contains(&required), "{required} is not set");
    }
    // Secrets come from the Secret, as in the seed's manifest.
    for secret in ["DATABASE_URL", "JWT_SECRET"] {
        let var = env.iter().find(|e| e["name"].as_str() == Some(secret)).unwrap();
        assert_eq!(var["valueFrom"]["secretKeyRef"]["name"].as_str(), Some("killkrill-secrets"), "{secret}");
    }
}

#[test]
fn termination_grace_covers_the_prestop_pause_and_the_drain() {
    let deployment = manifest("deployment.yaml");
    let pod = &deployment["spec"]["template"]["spec"];
    let grace = pod["terminationGracePeriodSeconds"].as_i64().unwrap();
    let c = container(&deployment);
    let pause = c["lifecycle"]["preStop"]["sleep"]["seconds"].as_i64().unwrap();
    let env = c["env"].as_vec().unwrap();
    let drain: i64 = env
        .iter()
        .find(|e| e["name"].as_str() == Some("SHUTDOWN_GRACE_SECONDS"))
        .and_then(|e| e["value"].as_str())
        .unwrap()
        .parse()
        .unwrap();
    assert!(grace > pause + drain, "terminationGracePeriodSeconds {grace} <= preStop {pause} + drain {drain}");
}

#[test]
fn service_and_budget_match_the_deployment() {
    let service = manifest("service.yaml");
    let ports: Vec<(i64, &str)> = service["spec"]["ports"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|p| (p["port"].as_i64().unwrap(), p["targetPort"].as_str().unwrap()))
        .collect();
    assert_eq!(ports, [(5000, "http"), (50051, "grpc")]);
    let app = manifest("deployment.yaml")["spec"]["selector"]["matchLabels"]["app"].as_str().unwrap().to_owned();
    assert_eq!(service["spec"]["selector"]["app"].as_str(), Some(app.as_str()));
    let pdb = manifest("pdb.yaml");
    assert_eq!(pdb["kind"].as_str(), Some("PodDisruptionBudget"));
    assert_eq!(pdb["spec"]["selector"]["matchLabels"]["app"].as_str(), Some(app.as_str()));
    assert!(pdb["spec"]["minAvailable"].as_i64().unwrap() < 3);
}

#[test]
fn dockerfile_builds_locked_runs_non_root_and_probes_livez() {
    let dockerfile = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    let lines: Vec<&str> = dockerfile.lines().map(str::trim).collect();
    assert!(dockerfile.contains("cargo build --release --locked"));
    assert!(lines.iter().filter(|l| l.starts_with("FROM ")).count() >= 2, "multi-stage");
    let user = lines.iter().rev().find(|l| l.starts_with("USER ")).expect("USER");
    assert!(!user.contains("root") && !user.ends_with(" 0") && !user.contains(" 0:"), "{user}");
    assert!(lines.contains(&"EXPOSE 5000 50051"));
    assert!(lines.contains(&"STOPSIGNAL SIGTERM"));
    assert!(dockerfile.contains(r#"CMD ["/usr/local/bin/killkrill", "healthcheck", "--path", "/livez"]"#));
    // The image's environment is valid configuration for the binary.
    let known = known_variables();
    let env_block = dockerfile.split("ENV ").nth(1).unwrap().split("\nEXPOSE").next().unwrap();
    for assignment in env_block.split_whitespace().filter(|t| t.contains('=')) {
        let name = assignment.split('=').next().unwrap();
        assert!(known.contains(name), "Dockerfile sets {name}, which killkrill does not read");
    }
}
