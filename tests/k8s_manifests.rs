//! The Kubernetes manifests in `deploy/k8s/` parse, and their names, ports, probes and settings
//! agree with each other and with Kai's configuration keys (no cluster is available to apply
//! them here).

use kai_actors::NodeConfig;
use std::collections::BTreeMap;
use yaml_rust2::{Yaml, YamlLoader};

fn manifests() -> Vec<Yaml> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/k8s/kai.yaml");
    let text = std::fs::read_to_string(path).expect("read manifests");
    YamlLoader::load_from_str(&text).expect("valid YAML")
}

fn kind<'a>(docs: &'a [Yaml], kind: &str, name: &str) -> &'a Yaml {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} named {name}"))
}

fn str_of(y: &Yaml) -> &str {
    y.as_str().unwrap_or_else(|| panic!("expected a string, got {y:?}"))
}

fn container(docs: &[Yaml]) -> &Yaml {
    &kind(docs, "StatefulSet", "kai")["spec"]["template"]["spec"]["containers"][0]
}

/// Stands for a value the container reads from a Secret.
const FROM_SECRET: &str = "<from secret>";

/// `KAI_*` environment variables of the container (those read from a Secret as
/// [`FROM_SECRET`]).
fn kai_env(docs: &[Yaml]) -> BTreeMap<String, String> {
    container(docs)["env"]
        .as_vec()
        .expect("env list")
        .iter()
        .filter_map(|e| {
            let value = match e["value"].as_str() {
                Some(v) => v.to_owned(),
                None => {
                    e["valueFrom"]["secretKeyRef"]["name"].as_str()?;
                    FROM_SECRET.to_owned()
                }
            };
            Some((e["name"].as_str()?.to_owned(), value))
        })
        .filter(|(k, _)| k.starts_with("KAI_"))
        .collect()
}

fn container_port(docs: &[Yaml], name: &str) -> i64 {
    container(docs)["ports"]
        .as_vec()
        .expect("ports")
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .and_then(|p| p["containerPort"].as_i64())
        .unwrap_or_else(|| panic!("no container port {name}"))
}

#[test]
fn every_kai_variable_is_a_config_key_with_a_valid_value() {
    let docs = manifests();
    let keys = serde_json::to_value(NodeConfig::default()).expect("config serialises");
    let known = keys.as_object().expect("config is an object");
    let mut config = serde_json::Map::new();
    for (var, value) in kai_env(&docs) {
        let key = var.trim_start_matches("KAI_").to_lowercase();
        assert!(known.contains_key(&key), "{var} is not a Kai configuration key");
        let value = match key.as_str() {
            "seeds" => serde_json::json!(value.split(',').collect::<Vec<_>>()),
            "n" | "r" | "w" => serde_json::json!(value.parse::<u64>().expect("number")),
            _ => serde_json::json!(value.replace("$(POD_NAME)", "kai-0")),
        };
        config.insert(key, value);
    }
    let parsed: NodeConfig = serde_json::from_value(serde_json::Value::Object(config)).expect("settings parse");
    parsed.validate().expect("settings are valid");
}

#[test]
fn ports_agree_between_settings_container_and_services() {
    let docs = manifests();
    let env = kai_env(&docs);
    let port_of = |addr: &str| {
        addr.rsplit(':')
            .next()
            .and_then(|p| p.parse::<i64>().ok())
            .expect("port")
    };
    assert_eq!(port_of(&env["KAI_LISTEN"]), container_port(&docs, "memcache"));
    assert_eq!(port_of(&env["KAI_PEER_LISTEN"]), container_port(&docs, "peer"));
    assert_eq!(port_of(&env["KAI_ADVERTISE"]), container_port(&docs, "peer"));
    assert_eq!(port_of(&env["KAI_ADMIN_LISTEN"]), container_port(&docs, "admin"));
    let client = &kind(&docs, "Service", "kai")["spec"]["ports"][0];
    assert_eq!(str_of(&client["targetPort"]), "memcache");
    let peers = kind(&docs, "Service", "kai-peers");
    assert_eq!(
        str_of(&peers["spec"]["clusterIP"]),
        "None",
        "peer discovery needs a headless service"
    );
    assert_eq!(str_of(&peers["spec"]["ports"][0]["targetPort"]), "peer");
}

#[test]
fn seeds_are_the_stable_names_the_pods_advertise() {
    let docs = manifests();
    let env = kai_env(&docs);
    let set = kind(&docs, "StatefulSet", "kai");
    let replicas = set["spec"]["replicas"].as_i64().expect("replicas");
    let service = str_of(&set["spec"]["serviceName"]);
    assert_eq!(service, "kai-peers");
    let advertised: Vec<String> = (0..replicas)
        .map(|i| env["KAI_ADVERTISE"].replace("$(POD_NAME)", &format!("kai-{i}")))
        .collect();
    let seeds: Vec<String> = env["KAI_SEEDS"].split(',').map(String::from).collect();
    assert_eq!(seeds, advertised, "a seed's name must be the name its pod advertises");
    assert!(advertised.iter().all(|a| a.contains(&format!(".{service}:"))));
    assert!(replicas >= env["KAI_N"].parse::<i64>().expect("n"));
}

#[test]
fn probes_storage_and_disruption_budget_fit_the_cluster() {
    let docs = manifests();
    let c = container(&docs);
    let probe = |p: &str| (str_of(&c[p]["httpGet"]["path"]), str_of(&c[p]["httpGet"]["port"]));
    assert_eq!(probe("livenessProbe"), ("/health", "admin"));
    assert_eq!(probe("readinessProbe"), ("/ready", "admin"));
    assert!(!c["resources"]["requests"]["cpu"].is_badvalue() && !c["resources"]["requests"]["memory"].is_badvalue());

    let set = kind(&docs, "StatefulSet", "kai");
    let claim = str_of(&set["spec"]["volumeClaimTemplates"][0]["metadata"]["name"]);
    let mount = &c["volumeMounts"][0];
    assert_eq!(str_of(&mount["name"]), claim);
    assert_eq!(str_of(&mount["mountPath"]), kai_env(&docs)["KAI_DATA_DIR"]);

    let pdb = kind(&docs, "PodDisruptionBudget", "kai");
    let labels = &set["spec"]["template"]["metadata"]["labels"];
    assert_eq!(pdb["spec"]["selector"]["matchLabels"], *labels);
    assert_eq!(set["spec"]["selector"]["matchLabels"], *labels);
    let replicas = set["spec"]["replicas"].as_i64().expect("replicas");
    let min_available = pdb["spec"]["minAvailable"].as_i64().expect("minAvailable");
    let w = kai_env(&docs)["KAI_W"].parse::<i64>().expect("w");
    assert!(
        min_available >= w && min_available < replicas,
        "keep a write quorum, allow one disruption"
    );
}

#[test]
fn prometheus_finds_the_metrics_and_the_admin_token_comes_from_a_secret() {
    let docs = manifests();
    let set = kind(&docs, "StatefulSet", "kai");
    let annotations = &set["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(str_of(&annotations["prometheus.io/scrape"]), "true");
    assert_eq!(str_of(&annotations["prometheus.io/path"]), "/metrics");
    let port: i64 = str_of(&annotations["prometheus.io/port"]).parse().expect("port");
    assert_eq!(port, container_port(&docs, "admin"));
    let env = kai_env(&docs);
    assert!(
        !env["KAI_ADMIN_LISTEN"].starts_with("127."),
        "probes and Prometheus reach the admin port from outside the pod"
    );
    assert_eq!(
        env["KAI_ADMIN_TOKEN"], FROM_SECRET,
        "the admin token must not be written in the manifest"
    );
}
