//! The e2e node agent against the real control plane: a Deployment of the demo app becomes
//! Ready pods in network namespaces, EndpointSlices come from the real controller, pods
//! reach each other by IP and by Service name, a failing init container and a failing
//! readiness probe behave like on a kubelet, and deleting a pod or stopping the agent
//! leaves no namespace, veth, mount, process or directory behind. Needs root (skips
//! otherwise, saying so).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use weft_e2e::node::{Agent, AgentConfig, names, net};
use weft_e2e::{ControlPlane, TestNamespace, shared};

/// One agent per host at a time: tests of this binary take turns.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn demo_bin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_weft-demo-app"))
        .parent()
        .unwrap()
        .to_path_buf()
}

async fn start_agent(cp: &ControlPlane) -> Agent {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "weft_e2e=info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
    let mut config = AgentConfig::new("weft-node-0");
    config.bin_dir = demo_bin_dir();
    config.api_server = Some(format!("127.0.0.1:{}", cp.ports().apiserver).parse().unwrap());
    config.state_dir = std::env::temp_dir().join(format!("weft-node-test-{}", std::process::id()));
    Agent::start(cp.client().unwrap(), config).await.unwrap()
}

async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn ready(p: &Pod) -> bool {
    let conds = p.status.as_ref().and_then(|s| s.conditions.as_ref());
    conds
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn pod_ip(p: &Pod) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .unwrap_or_default()
}

/// GET `http://addr/path` from the host (root namespace); returns (status, body).
async fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.ok()?;
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Some((status, body))
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .ok()
        .flatten()
}

/// Processes whose network namespace is the one with inode `ino`.
fn processes_in_netns(ino: u64) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if std::fs::metadata(format!("/proc/{pid}/ns/net"))
            .map(|m| m.ino() == ino)
            .unwrap_or(false)
        {
            out.push(pid);
        }
    }
    out
}

fn mountinfo_mentions(needle: &str) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(needle)
}

fn demo_processes() -> Vec<u32> {
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_weft-demo-app"));
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if std::fs::read_link(format!("/proc/{pid}/exe"))
            .map(|p| p == bin)
            .unwrap_or(false)
        {
            out.push(pid);
        }
    }
    out
}

/// Nothing the agent creates on the host is left.
fn assert_host_clean(state_dir: &std::path::Path) {
    assert_eq!(
        net::agent_netns_names(),
        Vec::<String>::new(),
        "pod network namespaces left"
    );
    assert_eq!(net::agent_veth_names(), Vec::<String>::new(), "veths left");
    assert!(
        !std::path::Path::new("/sys/class/net/weft0").exists(),
        "bridge left"
    );
    let nat = std::process::Command::new("iptables-save").output().unwrap();
    let rules = String::from_utf8_lossy(&nat.stdout);
    assert!(
        !rules.contains("WEFT-SERVICES") && !rules.contains("WEFT-FORWARD"),
        "iptables chains left:\n{rules}"
    );
    assert!(!mountinfo_mentions(names::NETNS_PREFIX), "netns mounts left");
    assert_eq!(demo_processes(), Vec::<u32>::new(), "demo app processes left");
    assert!(!state_dir.exists(), "state dir left: {}", state_dir.display());
    assert!(!weft_e2e::node::owner_file("weft0").exists(), "owner file left");
}

fn demo_container(name: &str, port: u16, readiness_path: &str) -> serde_json::Value {
    json!({
        "name": name, "image": "weft/demo-app:test",
        "env": [
            {"name": "SERVICE", "value": "web"},
            {"name": "HTTP_PORT", "value": port.to_string()},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "demo", "key": "greeting"}}}
        ],
        "ports": [{"name": "http", "containerPort": port}],
        "readinessProbe": {"httpGet": {"path": readiness_path, "port": "http"}, "periodSeconds": 1},
        "volumeMounts": [{"name": "demo", "mountPath": "/etc/weft-demo", "readOnly": true}]
    })
}

async fn create_config_map(ns: &str, client: &kube::Client) {
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "demo"}, "data": {"greeting": "hello"}})).unwrap();
    Api::<ConfigMap>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
}

async fn create_service(ns: &str, name: &str, app: &str, client: &kube::Client) {
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    }))
    .unwrap();
    Api::<Service>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &svc)
        .await
        .unwrap();
}

async fn slice_endpoints(client: &kube::Client, ns: &str, svc: &str) -> Vec<(String, bool)> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={svc}"));
    let slices = api.list(&lp).await.unwrap();
    let mut out: Vec<(String, bool)> = slices
        .items
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .flat_map(|e| {
            let ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            e.addresses.iter().map(move |a| (a.clone(), ready))
        })
        .collect();
    out.sort();
    out
}

async fn finish(ns: TestNamespace<'_>, agent: Agent) {
    let state_dir = std::env::temp_dir().join(format!("weft-node-test-{}", std::process::id()));
    ns.delete_and_wait(Duration::from_secs(120), |_| async {})
        .await
        .unwrap();
    agent.shutdown().await;
    assert_host_clean(&state_dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_pods_serve_traffic_and_leave_nothing_behind() {
    if !root() {
        eprintln!("skipping: the node agent needs root (network namespaces, iptables)");
        return;
    }
    let _serial = SERIAL.lock().await;
    let cp = shared::control_plane().unwrap();
    let ns = TestNamespace::create(cp, "node-agent").await.unwrap();
    let client = ns.client().unwrap();
    let agent = start_agent(cp).await;
    create_config_map(ns.name(), &client).await;
    create_service(ns.name(), "web", "web", &client).await;
    let mut container = demo_container("app", 8080, "/healthz");
    // Liveness through an exec probe proves the volume and the SA token are mounted where
    // the container looks (its own mount namespace).
    container["livenessProbe"] = json!({"exec": {"command": ["sh", "-c",
        "grep -q hello /etc/weft-demo/greeting && test -s /var/run/secrets/kubernetes.io/serviceaccount/token"]},
        "periodSeconds": 1, "failureThreshold": 1});
    let deploy: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                "terminationGracePeriodSeconds": 5,
                "containers": [container],
                "volumes": [{"name": "demo", "configMap": {"name": "demo"}}]}}}
    }))
    .unwrap();
    Api::<Deployment>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &deploy)
        .await
        .unwrap();

    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let lp = ListParams::default().labels("app=web");
    let running = wait_for("2 ready pods", Duration::from_secs(90), || async {
        let list = pods.list(&lp).await.ok()?;
        let ready: Vec<Pod> = list.items.into_iter().filter(ready).collect();
        (ready.len() == 2).then_some(ready)
    })
    .await;
    let ips: Vec<String> = running.iter().map(pod_ip).collect();
    for ip in &ips {
        assert!(ip.starts_with("198.18."), "pod IP {ip}");
    }
    assert_ne!(ips[0], ips[1]);
    let expected: Vec<(String, bool)> = {
        let mut v: Vec<_> = ips.iter().map(|ip| (ip.clone(), true)).collect();
        v.sort();
        v
    };
    wait_for(
        "EndpointSlice with both pods ready",
        Duration::from_secs(60),
        || async { (slice_endpoints(&client, ns.name(), "web").await == expected).then_some(()) },
    )
    .await;
    // From pod A's namespace: to pod B by IP, and to the Service by name (hosts + DNAT).
    let a = format!("{}:8080", ips[0]);
    let (status, body) = http_get(&a, &format!("/call?url=http://{}:8080/who", ips[1]))
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["pod"], running[1].metadata.name.clone().unwrap());
    assert_eq!(answer["service"], "web");
    let url = format!("/call?url=http://web.{}:80/via-service", ns.name());
    let (status, body) = wait_for("call through the Service", Duration::from_secs(20), || async {
        http_get(&a, &url).await.filter(|(s, _)| *s == 200)
    })
    .await;
    assert_eq!(status, 200);
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["path"], "/via-service");
    let restarts = |p: &Pod| p.status.as_ref().unwrap().container_statuses.as_ref().unwrap()[0].restart_count;
    for p in pods
        .list(&lp)
        .await
        .unwrap()
        .items
        .iter()
        .filter(|p| ips.contains(&pod_ip(p)))
    {
        assert_eq!(restarts(p), 0, "exec liveness probe saw the mounts");
    }

    // Delete pod A: its namespace, veth, processes, mounts and directory go away.
    let victim = &running[0];
    let uid = victim.metadata.uid.clone().unwrap();
    let netns = names::netns_name(&uid);
    let ino = std::fs::metadata(format!("/run/netns/{netns}")).unwrap().ino();
    assert!(
        !processes_in_netns(ino).is_empty(),
        "the pod runs processes in its namespace"
    );
    let name = victim.metadata.name.clone().unwrap();
    pods.delete(&name, &DeleteParams::default()).await.unwrap();
    wait_for("pod object released", Duration::from_secs(60), || async {
        match pods.get_opt(&name).await.unwrap() {
            Some(p) if p.metadata.uid.as_deref() == Some(uid.as_str()) => None,
            _ => Some(()),
        }
    })
    .await;
    assert!(
        !std::path::Path::new(&format!("/run/netns/{netns}")).exists(),
        "netns left"
    );
    assert!(
        !std::path::Path::new(&format!("/sys/class/net/{}", names::veth_name(&uid))).exists(),
        "veth left"
    );
    assert_eq!(processes_in_netns(ino), Vec::<u32>::new(), "processes left");
    assert!(!mountinfo_mentions(&netns), "mount left");
    assert!(!mountinfo_mentions(&uid), "volume mount left");
    finish(ns, agent).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_init_and_failing_readiness_are_reported() {
    if !root() {
        eprintln!("skipping: the node agent needs root (network namespaces, iptables)");
        return;
    }
    let _serial = SERIAL.lock().await;
    let cp = shared::control_plane().unwrap();
    let ns = TestNamespace::create(cp, "node-agent-fail").await.unwrap();
    let client = ns.client().unwrap();
    let agent = start_agent(cp).await;
    create_config_map(ns.name(), &client).await;
    create_service(ns.name(), "web", "web", &client).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let pod = |name: &str, spec: serde_json::Value| -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": {"app": "web"}}, "spec": spec}))
            .unwrap()
    };
    let volumes = json!([{"name": "demo", "configMap": {"name": "demo"}}]);
    let bad_init = pod(
        "bad-init",
        json!({
            "restartPolicy": "Never",
            "initContainers": [{"name": "setup", "image": "weft/demo-app:test",
                "args": ["--exit-code", "3", "--message", "init exploded"]}],
            "containers": [demo_container("app", 8080, "/healthz")], "volumes": volumes
        }),
    );
    // A native sidecar (started before the app, kept running) plus a ready app.
    let mut sidecar = demo_container("sidecar", 9090, "/healthz");
    sidecar["restartPolicy"] = json!("Always");
    sidecar["startupProbe"] =
        json!({"tcpSocket": {"port": 9090}, "periodSeconds": 1, "failureThreshold": 30});
    let good = pod(
        "good",
        json!({"initContainers": [sidecar], "containers": [demo_container("app", 8080, "/healthz")],
        "volumes": volumes}),
    );
    let unready = pod(
        "unready",
        json!({"containers": [demo_container("app", 8080, "/status/503")], "volumes": volumes}),
    );
    for p in [bad_init, good, unready] {
        pods.create(&PostParams::default(), &p).await.unwrap();
    }

    let failed = wait_for("bad-init Failed", Duration::from_secs(60), || async {
        let p = pods.get("bad-init").await.ok()?;
        (p.status.as_ref()?.phase.as_deref() == Some("Failed")).then_some(p)
    })
    .await;
    let status = failed.status.unwrap();
    let init = &status.init_container_statuses.as_ref().unwrap()[0];
    let term = init.state.as_ref().unwrap().terminated.as_ref().unwrap();
    assert_eq!(term.exit_code, 3);
    assert!(
        term.message.as_deref().unwrap_or("").contains("init exploded"),
        "{term:?}"
    );
    let app = &status.container_statuses.as_ref().unwrap()[0];
    assert!(
        app.state.as_ref().unwrap().waiting.is_some(),
        "app never started: {app:?}"
    );
    assert!(app.container_id.is_none());
    let initialized = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Initialized")
        .unwrap();
    assert_eq!(initialized.status, "False");

    let good = wait_for("good Ready", Duration::from_secs(60), || async {
        pods.get("good").await.ok().filter(ready)
    })
    .await;
    let sidecar_status = &good
        .status
        .as_ref()
        .unwrap()
        .init_container_statuses
        .as_ref()
        .unwrap()[0];
    assert!(
        sidecar_status.state.as_ref().unwrap().running.is_some() && sidecar_status.ready,
        "{sidecar_status:?}"
    );
    let unready = wait_for("unready running with an IP", Duration::from_secs(60), || async {
        let p = pods.get("unready").await.ok()?;
        let running = p
            .status
            .as_ref()?
            .container_statuses
            .as_ref()?
            .first()?
            .state
            .as_ref()?
            .running
            .is_some();
        (running && !pod_ip(&p).is_empty()).then_some(p)
    })
    .await;
    let (good_ip, unready_ip) = (pod_ip(&good), pod_ip(&unready));
    wait_for(
        "EndpointSlice: good ready, unready not",
        Duration::from_secs(60),
        || async {
            let eps = slice_endpoints(&client, ns.name(), "web").await;
            let good_ready = eps.contains(&(good_ip.clone(), true));
            let unready_listed_ready = eps.iter().any(|(ip, r)| *ip == unready_ip && *r);
            (good_ready && !unready_listed_ready).then_some(())
        },
    )
    .await;
    // Several probe periods later it is still out.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let eps = slice_endpoints(&client, ns.name(), "web").await;
    assert!(!eps.iter().any(|(ip, r)| *ip == unready_ip && *r), "{eps:?}");
    assert!(!ready(&pods.get("unready").await.unwrap()));
    finish(ns, agent).await;
}
