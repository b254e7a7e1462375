//! The deployment files: `Dockerfile`, `deploy/compose.yaml` and the Kubernetes manifests of
//! `deploy/k8s/`. Every YAML file parses, and each carries what running WorkUp-RS needs: the
//! services of the project with their binaries, ports, probes, resources, non-root security
//! context, disruption budgets and autoscalers bounded by the Kafka partitions, the secrets
//! they need and no secret value. Reads files only: no stack, no network.

use serde::Deserialize;
use serde_norway::Value;
use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

/// An engine a service connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Engine {
    Postgres,
    Kafka,
    Scylla,
    Mongo,
    Redis,
}

impl Engine {
    const ALL: [Engine; 5] = [
        Self::Postgres,
        Self::Kafka,
        Self::Scylla,
        Self::Mongo,
        Self::Redis,
    ];

    /// The image (without its tag) compose runs it from.
    fn image(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Kafka => "apache/kafka",
            Self::Scylla => "scylladb/scylla",
            Self::Mongo => "mongo",
            Self::Redis => "redis",
        }
    }
}

/// How a service scales.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scaling {
    /// HTTP API behind a Service: autoscaled on CPU.
    Api,
    /// Kafka consumer groups: autoscaled, at most one instance per partition.
    Consumer,
    /// One instance (the relay: one holder of the outbox at a time).
    Single,
}

/// A process of the project as the code defines it (its `main.rs`, `infra/src/config.rs`).
struct Service {
    name: &'static str,
    /// The binary (`[[bin]]` or `src/main.rs` / `src/bin/*.rs`).
    binary: &'static str,
    /// The variable that sets its port (the relay's holds `host:port`).
    port_variable: &'static str,
    default_port: u16,
    engines: &'static [Engine],
    /// Secrets it refuses to start without, or uses: the control key (every service), the
    /// ledger's password and master keys (ledger users), the token secret (token checkers).
    secrets: &'static [&'static str],
    scaling: Scaling,
}

const CONTROL_KEY: &str = "WORKUP_CONTROL_KEY";
const JWT_SECRET: &str = "WORKUP_JWT_SECRET";
const MASTER_KEYS: &str = "WORKUP_MASTER_KEYS";
const PG_PASSWORD: &str = "WORKUP_PG_PASSWORD";

const SERVICES: &[Service] = &[
    Service {
        name: "command-api",
        binary: "command-api",
        port_variable: "WORKUP_COMMAND_API_PORT",
        default_port: 8080,
        engines: &[Engine::Postgres, Engine::Kafka],
        secrets: &[CONTROL_KEY, JWT_SECRET, MASTER_KEYS, PG_PASSWORD],
        scaling: Scaling::Api,
    },
    Service {
        name: "query-api",
        binary: "query-api",
        port_variable: "WORKUP_QUERY_API_PORT",
        default_port: 8081,
        // Postgres: the operations page's withdrawal tasks and commands per second.
        engines: &[
            Engine::Postgres,
            Engine::Kafka,
            Engine::Scylla,
            Engine::Mongo,
            Engine::Redis,
        ],
        secrets: &[CONTROL_KEY, JWT_SECRET, PG_PASSWORD],
        scaling: Scaling::Api,
    },
    Service {
        name: "projectors",
        binary: "projectors",
        port_variable: "WORKUP_PROJECTORS_PORT",
        default_port: 8082,
        engines: &[
            Engine::Postgres,
            Engine::Kafka,
            Engine::Scylla,
            Engine::Mongo,
            Engine::Redis,
        ],
        secrets: &[CONTROL_KEY, MASTER_KEYS, PG_PASSWORD],
        scaling: Scaling::Consumer,
    },
    Service {
        name: "relay",
        binary: "relay",
        port_variable: "WORKUP_RELAY_LISTEN",
        default_port: 8083,
        engines: &[Engine::Postgres, Engine::Kafka],
        secrets: &[CONTROL_KEY, MASTER_KEYS, PG_PASSWORD],
        scaling: Scaling::Single,
    },
    Service {
        name: "sagas",
        binary: "sagas",
        port_variable: "WORKUP_SAGAS_PORT",
        default_port: 8084,
        engines: &[Engine::Postgres, Engine::Kafka],
        secrets: &[CONTROL_KEY, JWT_SECRET, MASTER_KEYS, PG_PASSWORD],
        scaling: Scaling::Consumer,
    },
    Service {
        name: "withdrawal-worker",
        binary: "withdrawal-worker",
        port_variable: "WORKUP_WITHDRAWAL_WORKER_PORT",
        default_port: 8085,
        engines: &[Engine::Postgres, Engine::Kafka],
        secrets: &[CONTROL_KEY, MASTER_KEYS, PG_PASSWORD],
        scaling: Scaling::Consumer,
    },
];

/// The simulated payout provider: in compose (the worker pays out through it), external in k8s.
const PAYOUT_PROVIDER: &str = "payout-provider";

/// The consumer groups of the code, each with a dead-letter topic `<prefix>.dlq.<name>`:
/// projectors (one per context), sagas, the withdrawal worker's intake.
const CONSUMER_GROUPS: &[&str] = &[
    "users",
    "jobs",
    "contracts",
    "payments",
    "contract-initiation",
    "payment-requests",
    "completion",
    "withdrawal-worker",
];

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("scenarios/ is inside the repository")
        .to_path_buf()
}

fn deploy() -> PathBuf {
    repository().join("deploy")
}

fn k8s() -> PathBuf {
    deploy().join("k8s")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every document of a YAML file (empty ones left out), with `<<` merge keys applied.
fn documents(path: &Path) -> Vec<Value> {
    let text = read(path);
    let mut documents = Vec::new();
    for document in serde_norway::Deserializer::from_str(&text) {
        let mut value =
            Value::deserialize(document).unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
        value
            .apply_merge()
            .unwrap_or_else(|e| panic!("{}: bad merge key: {e}", path.display()));
        if !value.is_null() {
            documents.push(value);
        }
    }
    assert!(!documents.is_empty(), "{} holds no document", path.display());
    documents
}

/// The YAML files under `dir`, recursively, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("")
}

/// A scalar as text (compose and ConfigMaps hold numbers both quoted and not).
fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `KEY=value` lines of an env file (comments and blank lines left out).
fn env_file(path: &Path) -> BTreeMap<String, String> {
    read(path)
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{}: `{line}` is not KEY=value", path.display()));
            (key.trim().to_owned(), value.trim().to_owned())
        })
        .collect()
}

/// The manifests of deploy/k8s that kustomize applies, by kind.
struct Manifests {
    all: Vec<(PathBuf, Value)>,
}

impl Manifests {
    fn load() -> Self {
        let all = yaml_files(&k8s())
            .into_iter()
            .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
            .flat_map(|path| documents(&path).into_iter().map(move |d| (path.clone(), d)))
            .collect();
        Self { all }
    }

    fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.all
            .iter()
            .map(|(_, d)| d)
            .filter(move |d| text(&d["kind"]) == kind)
    }

    fn named(&self, kind: &str, name: &str) -> Vec<&Value> {
        self.all
            .iter()
            .map(|(_, d)| d)
            .filter(|d| text(&d["kind"]) == kind && text(&d["metadata"]["name"]) == name)
            .collect()
    }

    fn config(&self) -> BTreeMap<String, String> {
        let maps: Vec<&Value> = self.of_kind("ConfigMap").collect();
        assert_eq!(maps.len(), 1, "one ConfigMap of settings");
        maps[0]["data"]
            .as_mapping()
            .expect("the ConfigMap has data")
            .iter()
            .map(|(k, v)| {
                (
                    text(k).to_owned(),
                    scalar(v).expect("ConfigMap values are scalars"),
                )
            })
            .collect()
    }

    fn config_name(&self) -> String {
        let maps: Vec<&Value> = self.of_kind("ConfigMap").collect();
        text(&maps[0]["metadata"]["name"]).to_owned()
    }

    fn partitions(&self) -> i64 {
        let config = self.config();
        let raw = config
            .get("WORKUP_KAFKA_PARTITIONS")
            .expect("the ConfigMap sets WORKUP_KAFKA_PARTITIONS");
        raw.parse()
            .unwrap_or_else(|_| panic!("WORKUP_KAFKA_PARTITIONS={raw} is not a number"))
    }

    fn deployment(&self, name: &str) -> &Value {
        let found = self.named("Deployment", name);
        assert_eq!(
            found.len(),
            1,
            "exactly one Deployment {name}, found {}",
            found.len()
        );
        found[0]
    }
}

fn kustomization() -> Value {
    documents(&k8s().join("kustomization.yaml")).remove(0)
}

/// The Secret the kustomization generates and the env file it reads.
fn secret_generator() -> (String, PathBuf) {
    let kustomization = kustomization();
    let generators = kustomization["secretGenerator"]
        .as_sequence()
        .expect("the kustomization generates the Secret (no Secret values in the repository)");
    assert_eq!(generators.len(), 1, "one generated Secret");
    let envs = generators[0]["envs"]
        .as_sequence()
        .expect("the Secret is read from an env file");
    assert_eq!(envs.len(), 1);
    (
        text(&generators[0]["name"]).to_owned(),
        k8s().join(text(&envs[0])),
    )
}

/// The port a service listens on, from the ConfigMap.
fn configured_port(config: &BTreeMap<String, String>, service: &Service) -> u16 {
    let raw = config
        .get(service.port_variable)
        .unwrap_or_else(|| panic!("the ConfigMap sets {} ({})", service.port_variable, service.name));
    let port = raw.rsplit(':').next().unwrap_or(raw);
    port.parse()
        .unwrap_or_else(|_| panic!("{}={raw} holds no port", service.port_variable))
}

/// The numeric port of a probe (`port: http` names a container port).
fn probe_port(container: &Value, probe: &Value) -> Option<u64> {
    let port = &probe["httpGet"]["port"];
    if let Some(number) = port.as_u64() {
        return Some(number);
    }
    container["ports"]
        .as_sequence()?
        .iter()
        .find(|p| text(&p["name"]) == text(port))
        .and_then(|p| p["containerPort"].as_u64())
}

fn only_container(deployment: &Value) -> &Value {
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_sequence()
        .expect("a pod template with containers");
    assert_eq!(containers.len(), 1, "one container per pod");
    &containers[0]
}

/// `name -> secret key` of the container's variables taken from a Secret, and the Secret names.
fn secret_refs(container: &Value) -> (BTreeMap<String, String>, BTreeSet<String>) {
    let mut keys = BTreeMap::new();
    let mut secrets = BTreeSet::new();
    for variable in container["env"].as_sequence().into_iter().flatten() {
        let reference = &variable["valueFrom"]["secretKeyRef"];
        if !reference.is_null() {
            keys.insert(
                text(&variable["name"]).to_owned(),
                text(&reference["key"]).to_owned(),
            );
            secrets.insert(text(&reference["name"]).to_owned());
        }
    }
    for source in container["envFrom"].as_sequence().into_iter().flatten() {
        if !source["secretRef"].is_null() {
            secrets.insert(text(&source["secretRef"]["name"]).to_owned());
        }
    }
    (keys, secrets)
}

// ---------------------------------------------------------------------------------------------

#[test]
fn every_deployment_file_parses() {
    let files = yaml_files(&deploy());
    let names: BTreeSet<String> = files
        .iter()
        .map(|p| p.strip_prefix(deploy()).unwrap().display().to_string())
        .collect();
    for expected in ["compose.yaml", "k8s/kustomization.yaml", "k8s/configmap.yaml"] {
        assert!(
            names.contains(expected),
            "deploy/{expected} is missing: {names:?}"
        );
    }
    for path in &files {
        for document in documents(path) {
            if path.starts_with(k8s()) && !path.ends_with("kustomization.yaml") {
                assert!(
                    !text(&document["apiVersion"]).is_empty() && !text(&document["kind"]).is_empty(),
                    "{}: a document without apiVersion or kind",
                    path.display()
                );
                assert!(
                    !text(&document["metadata"]["name"]).is_empty(),
                    "{}: a {} without a name",
                    path.display(),
                    text(&document["kind"])
                );
            }
        }
    }
}

#[test]
fn the_kustomization_lists_every_manifest_and_generates_the_secret_from_an_ignored_file() {
    let kustomization = kustomization();
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_sequence()
        .expect("the kustomization lists resources")
        .iter()
        .map(|r| text(r).to_owned())
        .collect();
    let present: BTreeSet<String> = yaml_files(&k8s())
        .iter()
        .filter(|p| p.parent() == Some(k8s().as_path()))
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|name| name != "kustomization.yaml")
        .collect();
    assert_eq!(
        listed, present,
        "kustomization.yaml resources vs the files of deploy/k8s"
    );
    assert_eq!(text(&kustomization["namespace"]), "workup");
    let manifests = Manifests::load();
    let namespaces: Vec<&Value> = manifests.of_kind("Namespace").collect();
    assert_eq!(namespaces.len(), 1);
    assert_eq!(text(&namespaces[0]["metadata"]["name"]), "workup");

    // The Secret's values live in a file git ignores; its committed example has every key the
    // workloads read, each empty.
    let (_, env) = secret_generator();
    let name = env.file_name().unwrap().to_string_lossy().into_owned();
    let ignored = read(&deploy().join(".gitignore"));
    assert!(
        ignored.lines().any(|l| l.trim() == format!("k8s/{name}")),
        "deploy/.gitignore must ignore k8s/{name}"
    );
    let example = env_file(&k8s().join(format!("{name}.example")));
    for secret in [CONTROL_KEY, JWT_SECRET, MASTER_KEYS, PG_PASSWORD] {
        assert!(example.contains_key(secret), "{name}.example lacks {secret}");
    }
    for (key, value) in &example {
        assert!(value.is_empty(), "{name}.example commits a value for {key}");
    }
}

#[test]
fn no_secret_value_is_committed() {
    // Every YAML file of the repository (deploy/ holds them today; none may hold a Secret with
    // a value anywhere else either).
    let mut files = Vec::new();
    let mut pending = vec![repository()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if !matches!(name.as_str(), "target" | ".git" | ".state" | "node_modules") {
                    pending.push(path);
                }
            } else if name.ends_with(".yaml") || name.ends_with(".yml") {
                files.push(path);
            }
        }
    }
    let mut secrets = 0;
    for path in &files {
        for document in documents(path) {
            if text(&document["kind"]) != "Secret" {
                continue;
            }
            secrets += 1;
            for field in ["data", "stringData"] {
                for (key, value) in document[field].as_mapping().into_iter().flatten() {
                    assert!(
                        scalar(value).unwrap_or_default().is_empty(),
                        "{}: Secret {} commits a value for {}",
                        path.display(),
                        text(&document["metadata"]["name"]),
                        text(key)
                    );
                }
            }
        }
    }
    // The one Secret is generated (above), so no manifest holds one at all today.
    assert_eq!(
        secrets, 0,
        "a Secret manifest is committed; generate it from secret.env"
    );

    // compose: secrets only by interpolation, never a literal, and its env file is ignored.
    let compose = documents(&deploy().join("compose.yaml")).remove(0);
    let services = compose["services"].as_mapping().expect("compose has services");
    let secret_variables = [CONTROL_KEY, JWT_SECRET, MASTER_KEYS, "POSTGRES_PASSWORD"];
    let mut interpolated = 0;
    for (name, service) in services {
        for (key, value) in service["environment"].as_mapping().into_iter().flatten() {
            let value = scalar(value).unwrap_or_default();
            let key = text(key);
            if secret_variables.contains(&key) {
                assert!(
                    value.starts_with("${") && value.contains(":?") && value.ends_with('}'),
                    "compose service {}: {key} must be `${{VAR:?message}}`, not a literal",
                    text(name)
                );
                interpolated += 1;
            }
            if key == "WORKUP_PG_URL" {
                assert!(
                    value.contains("${WORKUP_PG_PASSWORD:?"),
                    "compose service {}: the ledger URL's password must be interpolated",
                    text(name)
                );
            }
        }
    }
    assert!(
        interpolated >= SERVICES.len(),
        "compose passes its secrets to the services"
    );
    assert!(
        read(&deploy().join(".gitignore"))
            .lines()
            .any(|l| l.trim() == ".env"),
        "deploy/.gitignore must ignore .env"
    );
    let example = env_file(&deploy().join(".env.example"));
    for secret in [CONTROL_KEY, JWT_SECRET, MASTER_KEYS, PG_PASSWORD] {
        assert_eq!(
            example.get(secret).map(String::as_str),
            Some(""),
            "deploy/.env.example names {secret} without a value"
        );
    }
}

#[test]
fn every_service_has_a_probed_hardened_deployment() {
    let manifests = Manifests::load();
    let config = manifests.config();
    let config_name = manifests.config_name();
    let (secret_name, secret_env) = secret_generator();
    let secret_keys = env_file(&PathBuf::from(format!("{}.example", secret_env.display())));

    let deployments: BTreeSet<&str> = manifests
        .of_kind("Deployment")
        .map(|d| text(&d["metadata"]["name"]))
        .collect();
    let expected: BTreeSet<&str> = SERVICES.iter().map(|s| s.name).collect();
    assert_eq!(deployments, expected, "one Deployment per service of the project");

    for service in SERVICES {
        let name = service.name;
        let deployment = manifests.deployment(name);
        let pod = &deployment["spec"]["template"]["spec"];
        let container = only_container(deployment);

        // The image and the binary it runs.
        assert!(!text(&container["image"]).is_empty(), "{name}: no image");
        let args: Vec<&str> = container["args"]
            .as_sequence()
            .or_else(|| container["command"].as_sequence())
            .unwrap_or_else(|| panic!("{name}: no args selecting the binary"))
            .iter()
            .map(text)
            .collect();
        assert_eq!(
            args.first().copied(),
            Some(service.binary),
            "{name}: runs the wrong binary"
        );

        // The selector picks the template's pods.
        let selector = &deployment["spec"]["selector"]["matchLabels"];
        for (key, value) in selector.as_mapping().expect("a matchLabels selector") {
            assert_eq!(
                &deployment["spec"]["template"]["metadata"]["labels"][text(key)],
                value,
                "{name}: the selector does not match the pod labels"
            );
        }

        // The port from the ConfigMap, and the probes on it.
        let port = configured_port(&config, service);
        assert_eq!(
            port, service.default_port,
            "{name}: the port differs from the code's default"
        );
        let ports: Vec<u64> = container["ports"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{name}: no container port"))
            .iter()
            .filter_map(|p| p["containerPort"].as_u64())
            .collect();
        assert_eq!(
            ports,
            vec![u64::from(port)],
            "{name}: containerPort vs {}",
            service.port_variable
        );
        for (probe, path) in [("readinessProbe", "/ready"), ("livenessProbe", "/health")] {
            let probe_value = &container[probe];
            assert_eq!(
                text(&probe_value["httpGet"]["path"]),
                path,
                "{name}: {probe} path"
            );
            assert_eq!(
                probe_port(container, probe_value),
                Some(u64::from(port)),
                "{name}: {probe} probes another port"
            );
        }

        // Resources.
        for bound in ["requests", "limits"] {
            for resource in ["cpu", "memory"] {
                assert!(
                    scalar(&container["resources"][bound][resource]).is_some(),
                    "{name}: resources.{bound}.{resource} unset"
                );
            }
        }

        // Not root: runAsNonRoot with a non-zero uid, no privilege escalation.
        let run_as_non_root = container["securityContext"]["runAsNonRoot"]
            .as_bool()
            .or_else(|| pod["securityContext"]["runAsNonRoot"].as_bool());
        assert_eq!(run_as_non_root, Some(true), "{name}: runAsNonRoot");
        let uid = container["securityContext"]["runAsUser"]
            .as_u64()
            .or_else(|| pod["securityContext"]["runAsUser"].as_u64());
        assert!(
            uid.is_some_and(|uid| uid != 0),
            "{name}: runAsUser must be a non-root uid"
        );
        assert_eq!(
            container["securityContext"]["allowPrivilegeEscalation"].as_bool(),
            Some(false),
            "{name}: allowPrivilegeEscalation"
        );

        // Settings from the ConfigMap, secrets from the generated Secret, each it needs.
        let config_refs: Vec<&str> = container["envFrom"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|s| text(&s["configMapRef"]["name"]))
            .collect();
        assert_eq!(
            config_refs,
            vec![config_name.as_str()],
            "{name}: envFrom the ConfigMap"
        );
        let (keys, secrets) = secret_refs(container);
        assert_eq!(
            secrets,
            BTreeSet::from([secret_name.clone()]),
            "{name}: secrets come from {secret_name}"
        );
        for secret in service.secrets {
            assert_eq!(
                keys.get(*secret).map(String::as_str),
                Some(*secret),
                "{name}: needs {secret} from the Secret"
            );
        }
        for key in keys.values() {
            assert!(
                secret_keys.contains_key(key),
                "{name}: reads {key}, which secret.env.example lacks"
            );
        }
        if service.engines.contains(&Engine::Postgres) {
            let url = container["env"]
                .as_sequence()
                .into_iter()
                .flatten()
                .find(|v| text(&v["name"]) == "WORKUP_PG_URL")
                .unwrap_or_else(|| panic!("{name}: no WORKUP_PG_URL"));
            assert!(
                text(&url["value"]).contains("$(WORKUP_PG_PASSWORD)"),
                "{name}: the ledger URL takes the password from the Secret"
            );
        }
    }
}

#[test]
fn every_deployment_has_a_disruption_budget_that_lets_a_node_drain() {
    let manifests = Manifests::load();
    for service in SERVICES {
        let deployment = manifests.deployment(service.name);
        let selector = &deployment["spec"]["selector"]["matchLabels"];
        let budgets: Vec<&Value> = manifests
            .of_kind("PodDisruptionBudget")
            .filter(|p| &p["spec"]["selector"]["matchLabels"] == selector)
            .collect();
        assert_eq!(
            budgets.len(),
            1,
            "{}: one PodDisruptionBudget selecting its pods",
            service.name
        );
        let spec = &budgets[0]["spec"];
        let fewest = match service.scaling {
            Scaling::Single => deployment["spec"]["replicas"].as_u64().unwrap_or(1),
            _ => manifests
                .named("HorizontalPodAutoscaler", service.name)
                .first()
                .and_then(|h| h["spec"]["minReplicas"].as_u64())
                .unwrap_or(1),
        };
        match (spec["minAvailable"].as_u64(), spec["maxUnavailable"].as_u64()) {
            (Some(min), None) => assert!(
                min < fewest,
                "{}: minAvailable {min} with {fewest} replicas blocks every eviction",
                service.name
            ),
            (None, Some(max)) => assert!(
                max >= 1,
                "{}: maxUnavailable 0 blocks every eviction",
                service.name
            ),
            other => panic!(
                "{}: set one of minAvailable or maxUnavailable: {other:?}",
                service.name
            ),
        }
    }
}

#[test]
fn autoscalers_target_deployments_and_consumers_stay_within_the_partitions() {
    let manifests = Manifests::load();
    let partitions = manifests.partitions();
    for autoscaler in manifests.of_kind("HorizontalPodAutoscaler") {
        let target = &autoscaler["spec"]["scaleTargetRef"];
        assert_eq!(text(&target["kind"]), "Deployment");
        let name = text(&target["name"]);
        assert_eq!(
            manifests.named("Deployment", name).len(),
            1,
            "HPA targets a missing Deployment {name}"
        );
        let (min, max) = (
            autoscaler["spec"]["minReplicas"].as_i64().expect("minReplicas"),
            autoscaler["spec"]["maxReplicas"].as_i64().expect("maxReplicas"),
        );
        assert!(
            1 <= min && min <= max,
            "{name}: minReplicas {min}, maxReplicas {max}"
        );
    }
    for service in SERVICES {
        let autoscalers = manifests.named("HorizontalPodAutoscaler", service.name);
        let deployment = manifests.deployment(service.name);
        match service.scaling {
            Scaling::Single => {
                assert!(
                    autoscalers.is_empty(),
                    "{}: runs as one instance, no autoscaler",
                    service.name
                );
                assert_eq!(
                    deployment["spec"]["replicas"].as_u64(),
                    Some(1),
                    "{}: one replica",
                    service.name
                );
            }
            Scaling::Api | Scaling::Consumer => {
                assert_eq!(autoscalers.len(), 1, "{}: one autoscaler", service.name);
                let spec = &autoscalers[0]["spec"];
                assert_eq!(
                    text(&spec["scaleTargetRef"]["name"]),
                    service.name,
                    "the autoscaler {} scales another Deployment",
                    service.name
                );
                let metrics = spec["metrics"].as_sequence().expect("autoscaler metrics");
                assert!(
                    metrics.iter().any(|m| text(&m["resource"]["name"]) == "cpu"),
                    "{}: scales on CPU",
                    service.name
                );
                // The autoscaler owns the replica count: `kubectl apply` must not reset it.
                assert!(
                    deployment["spec"]["replicas"].is_null(),
                    "{}: leave spec.replicas to the autoscaler",
                    service.name
                );
                if service.scaling == Scaling::Consumer {
                    let max = spec["maxReplicas"].as_i64().unwrap();
                    assert!(
                        max <= partitions,
                        "{}: maxReplicas {max} > {partitions} partitions: instances past it stand idle",
                        service.name
                    );
                }
            }
        }
    }
    // Only the HTTP APIs get a Service.
    let services: BTreeSet<&str> = manifests
        .of_kind("Service")
        .map(|s| text(&s["metadata"]["name"]))
        .collect();
    assert_eq!(services, BTreeSet::from(["command-api", "query-api"]));
    for service in manifests.of_kind("Service") {
        let name = text(&service["metadata"]["name"]);
        let deployment = manifests.deployment(name);
        assert_eq!(
            &service["spec"]["selector"], &deployment["spec"]["selector"]["matchLabels"],
            "Service {name} selects its Deployment's pods"
        );
    }
}

#[test]
fn the_migrations_job_runs_before_the_services_on_the_ledger() {
    let manifests = Manifests::load();
    let jobs: Vec<&Value> = manifests.of_kind("Job").collect();
    assert_eq!(jobs.len(), 1, "one migrations Job");
    let pod = &jobs[0]["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .map(text)
        .collect();
    assert_eq!(
        args.first().copied(),
        Some("control"),
        "the migrations run through the control CLI"
    );
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    assert!(!text(&pod["restartPolicy"]).is_empty() && text(&pod["restartPolicy"]) != "Always");
    let (keys, _) = secret_refs(container);
    assert!(keys.contains_key(PG_PASSWORD) && keys.contains_key(MASTER_KEYS));
}

#[test]
fn compose_runs_every_service_on_the_five_engines() {
    let compose = documents(&deploy().join("compose.yaml")).remove(0);
    let services = compose["services"].as_mapping().expect("compose has services");
    let by_name = |name: &str| -> &Value {
        services
            .get(name)
            .unwrap_or_else(|| panic!("compose has no service {name}"))
    };

    // The engines, each once, each with a healthcheck, from the real images.
    let mut engine_service = BTreeMap::new();
    for engine in Engine::ALL {
        let found: Vec<&str> = services
            .iter()
            .filter(|(_, s)| {
                let image = text(&s["image"]);
                image.split(':').next() == Some(engine.image())
            })
            .map(|(n, _)| text(n))
            .filter(|n| !n.ends_with("-init"))
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one {engine:?} service ({}), found {found:?}",
            engine.image()
        );
        let service = by_name(found[0]);
        assert!(
            service["healthcheck"]["test"].as_sequence().is_some(),
            "{engine:?}: a healthcheck, for the services' depends_on"
        );
        engine_service.insert(engine, found[0].to_owned());
    }
    let kafka = by_name(&engine_service[&Engine::Kafka]);
    assert!(
        text(&kafka["environment"]["KAFKA_PROCESS_ROLES"]).contains("controller"),
        "Kafka runs in KRaft mode"
    );
    let scylla_command: Vec<&str> = by_name(&engine_service[&Engine::Scylla])["command"]
        .as_sequence()
        .expect("scylla's command")
        .iter()
        .map(text)
        .collect();
    for flag in ["--smp", "--memory", "--overprovisioned", "--developer-mode"] {
        assert!(scylla_command.contains(&flag), "scylla runs with {flag}");
    }

    // One-shot jobs: the topics, the migrations.
    let topics = by_name("kafka-init");
    let script: String = topics["command"]
        .as_sequence()
        .expect("kafka-init's script")
        .iter()
        .map(text)
        .collect();
    for group in CONSUMER_GROUPS {
        assert!(script.contains(group), "kafka-init creates the topics of {group}");
    }
    assert!(script.contains("cleanup.policy=compact") && script.contains("control.status"));
    let migrate = by_name("migrate");
    assert_eq!(text(&migrate["command"][0]), "control");
    assert_eq!(
        text(&migrate["depends_on"][engine_service[&Engine::Postgres].as_str()]["condition"]),
        "service_healthy"
    );

    // The project's services: built from the repository's Dockerfile.
    let built: BTreeSet<&str> = services
        .iter()
        .filter(|(_, s)| text(&s["build"]["context"]) == ".." && text(&s["command"][0]) != "control")
        .map(|(n, _)| text(n))
        .collect();
    let mut expected: BTreeSet<&str> = SERVICES.iter().map(|s| s.name).collect();
    expected.insert(PAYOUT_PROVIDER);
    assert_eq!(
        built, expected,
        "compose runs every service of the project from ../Dockerfile"
    );

    let partitions = text(&topics["environment"]["WORKUP_KAFKA_PARTITIONS"]).to_owned();
    for service in SERVICES {
        let name = service.name;
        let spec = by_name(name);
        assert_eq!(
            text(&spec["command"][0]),
            service.binary,
            "{name}: runs the wrong binary"
        );
        let depends = &spec["depends_on"];
        let condition = |on: &str| text(&depends[on]["condition"]).to_owned();
        for engine in service.engines {
            assert_eq!(
                condition(&engine_service[engine]),
                "service_healthy",
                "{name} needs {engine:?}: depends_on it, healthy"
            );
        }
        if service.engines.contains(&Engine::Kafka) {
            assert_eq!(
                condition("kafka-init"),
                "service_completed_successfully",
                "{name}: after the topics"
            );
            assert_eq!(text(&spec["environment"]["WORKUP_KAFKA_BROKERS"]), "kafka:9092");
            assert_eq!(
                scalar(&spec["environment"]["WORKUP_KAFKA_PARTITIONS"]).as_deref(),
                Some(partitions.as_str()),
                "{name}: the partitions kafka-init creates"
            );
        }
        if service.engines.contains(&Engine::Postgres) {
            assert_eq!(
                condition("migrate"),
                "service_completed_successfully",
                "{name}: after the migrations"
            );
        }
        if name == "withdrawal-worker" {
            assert_eq!(condition(PAYOUT_PROVIDER), "service_healthy");
            assert!(text(&spec["environment"]["WORKUP_PAYOUT_PROVIDER_URL"]).contains(PAYOUT_PROVIDER));
        }
        // Needs nothing it does not use.
        for engine in Engine::ALL {
            if !service.engines.contains(&engine) {
                assert!(
                    depends[engine_service[&engine].as_str()].is_null(),
                    "{name} does not use {engine:?}"
                );
            }
        }
        for secret in service.secrets.iter().filter(|s| **s != PG_PASSWORD) {
            assert!(
                !text(&spec["environment"][*secret]).is_empty(),
                "{name}: needs {secret}"
            );
        }
        assert_eq!(
            text(&spec["environment"]["WORKUP_ENV"]),
            "production",
            "{name}: production checks"
        );
        let probe: String = spec["healthcheck"]["test"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{name}: a healthcheck"))
            .iter()
            .map(text)
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            probe.contains(&format!(":{}/ready", service.default_port)),
            "{name}: the healthcheck probes /ready on {}: {probe}",
            service.default_port
        );
    }
    for (name, port) in [("command-api", 8080), ("query-api", 8081)] {
        let published: Vec<String> = by_name(name)["ports"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{name}: publishes its port"))
            .iter()
            .filter_map(scalar)
            .collect();
        assert!(
            published.iter().any(|p| p.ends_with(&format!(":{port}"))),
            "{name}: publishes {port}: {published:?}"
        );
    }
}

#[test]
fn the_image_builds_and_runs_every_binary_the_deployments_start() {
    let dockerfile = read(&repository().join("Dockerfile"));
    let entrypoint = read(&deploy().join("docker/entrypoint.sh"));
    for needed in [
        "FROM rust:${RUST_VERSION}-bookworm AS builder",
        "ARG RUST_VERSION=1",
        "FROM debian:bookworm-slim",
        "cargo build --release --locked",
        "USER 10001:10001",
        "HEALTHCHECK",
        "/health",
        "WORKUP_HTTP_HOST=0.0.0.0",
        "COPY deploy/docker/entrypoint.sh",
    ] {
        assert!(dockerfile.contains(needed), "the Dockerfile lacks `{needed}`");
    }
    let copied = dockerfile
        .lines()
        .find(|l| l.contains("for binary in"))
        .expect("the Dockerfile copies the binaries out of the build");
    let mut binaries: Vec<&str> = SERVICES.iter().map(|s| s.binary).collect();
    binaries.extend(["control", PAYOUT_PROVIDER]);
    for binary in binaries {
        assert!(
            copied
                .split_whitespace()
                .any(|w| w.trim_end_matches(';') == binary),
            "the image lacks the {binary} binary"
        );
        assert!(
            entrypoint.contains(binary),
            "the entrypoint does not run {binary}"
        );
    }
    let ignored = read(&repository().join(".dockerignore"));
    for path in ["target", ".git", "deploy/.env"] {
        assert!(
            ignored.lines().any(|l| l.trim() == path),
            ".dockerignore lacks {path}"
        );
    }
}
