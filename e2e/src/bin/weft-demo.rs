//! `weft-demo`: installs weft on the cluster of the current kubeconfig and narrates a
//! Bookinfo-like demo with measured numbers (`make demo`).
//!
//! - `weft-demo install`: what `make install` runs — `crds/` (awaited Established), then
//!   `manifests/`, then the controller Deployment awaited Available.
//! - `weft-demo run`: install, deploy `examples/bookinfo/` in the labelled namespace
//!   `bookinfo` (recreated fresh), then traffic splitting, a header route, default deny
//!   and a TrafficTarget, a Retry over a flaky `ratings`, sticky sessions (LoadBalancing),
//!   faults on `details` (FaultInjection), a mirror of `details` to `ratings`
//!   (TrafficMirror), a CircuitBreaker on a failing `reviews-v3`; requests are sent from
//!   inside the productpage pod's network namespace (needs root, as the dev cluster does);
//!   finally an ingress Gateway (class `weft`) reached from the host. Prints a summary
//!   table; leaves the cluster up.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use weft_e2e::apply;
use weft_e2e::mesh::image_refs::ImageOverride;
use weft_e2e::mesh::policy::{self, HttpMatch};
use weft_e2e::mesh::traffic::{Batch, Reply, format_tally, success_ratio, tally};
use weft_e2e::mesh::{install, sync, wait_for, workload};
use weft_e2e::worker::{binaries, pods};

const NS: &str = "bookinfo";
const REVIEWS: &str = "http://reviews.bookinfo:9080/";

#[derive(Debug, Parser)]
#[command(name = "weft-demo", about = "Install weft and run the Bookinfo demo")]
struct Args {
    /// Kubeconfig (default: $KUBECONFIG, else .weft/kubeconfig).
    #[arg(long, global = true)]
    kubeconfig: Option<PathBuf>,
    /// Repository root holding crds/, manifests/ and examples/.
    #[arg(long, global = true, default_value_os_t = apply::repo_root())]
    root: PathBuf,
    /// Registry for weft's images (`<registry>/weft/controller:<tag>`, …); default: the
    /// references in manifests/ (`weft/…:<version>`).
    #[arg(long, global = true, env = "IMAGE_REGISTRY")]
    image_registry: Option<String>,
    /// Tag for weft's images; default: the manifests' tag (the release version).
    #[arg(long, global = true, env = "IMAGE_TAG")]
    image_tag: Option<String>,
    /// The dev cluster node's state dir (the demo reaches productpage's network namespace
    /// through its CRI).
    #[arg(long, global = true, default_value = ".weft/node")]
    node_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply crds/ and manifests/ and wait for the controller (make install).
    Install,
    /// Install, deploy Bookinfo and narrate the demo (make demo).
    Run,
}

/// One line of the summary table.
#[derive(Debug)]
struct Outcome {
    step: String,
    measured: String,
    ok: bool,
}

/// The demo's state: client, productpage netns, summary lines.
struct Demo {
    client: kube::Client,
    cri: pods::Cri,
    netns: String,
    summary: Vec<Outcome>,
}

fn say(line: &str) {
    println!("    {line}");
}

async fn client(kubeconfig: Option<PathBuf>) -> anyhow::Result<kube::Client> {
    let path = kubeconfig
        .or_else(|| std::env::var_os("KUBECONFIG").map(PathBuf::from))
        .unwrap_or_else(|| apply::repo_root().join(".weft/kubeconfig"));
    let kc = kube::config::Kubeconfig::read_from(&path).with_context(|| {
        format!(
            "reading kubeconfig {} (is the cluster up? make dev-cluster)",
            path.display()
        )
    })?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

async fn install_weft(client: &kube::Client, args: &Args) -> anyhow::Result<()> {
    let images = ImageOverride {
        registry: args.image_registry.clone(),
        tag: args.image_tag.clone(),
    };
    let r = install::install_with(client, &args.root, &images, Duration::from_secs(180), &|s| say(s))
        .await
        .context("installing weft")?;
    say(&format!(
        "{} CRDs Established, {} objects applied in {:.1}s; weft-controller Available after {:.1}s",
        r.crds.len(),
        r.objects,
        r.apply.as_secs_f64(),
        r.available.as_secs_f64()
    ));
    Ok(())
}

#[path = "weft-demo/checks.rs"]
mod checks;
#[path = "weft-demo/gamma.rs"]
mod gamma;
#[path = "weft-demo/gateway.rs"]
mod gateway;
#[path = "weft-demo/traffic.rs"]
mod traffic;

fn step(n: usize, title: &str) {
    println!("\n[{n}/14] {title}");
}

async fn run(args: &Args) -> anyhow::Result<bool> {
    let client = client(args.kubeconfig.clone()).await?;
    step(1, "Install weft from crds/ and manifests/");
    for node in Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items
    {
        let info = node.status.and_then(|s| s.node_info).unwrap_or_default();
        say(&format!(
            "node {}: kubelet {}, {}",
            node.metadata.name.unwrap_or_default(),
            info.kubelet_version,
            info.container_runtime_version
        ));
    }
    install_weft(&client, args).await?;
    install::set_mesh_modes(&client, "permissive", "permissive").await?;
    say("MeshConfig default: accessMode permissive, mtlsMode permissive (policies come later)");

    step(
        2,
        "Deploy Bookinfo (examples/bookinfo) in the labelled namespace bookinfo",
    );
    let nss: Api<Namespace> = Api::all(client.clone());
    if nss.get_opt(NS).await?.is_some() {
        say("removing the bookinfo namespace of an earlier run");
        let _ = nss.delete(NS, &DeleteParams::default()).await;
        wait_for(
            "namespace bookinfo to be deleted",
            Duration::from_secs(120),
            || {
                let nss = nss.clone();
                async move {
                    Ok(nss
                        .get_opt(NS)
                        .await
                        .map_err(|e| e.to_string())?
                        .is_none()
                        .then_some(()))
                }
            },
        )
        .await?;
    }
    let manifests = apply::load_dir(&args.root.join("examples/bookinfo"))?;
    apply::apply_all(&client, &manifests, Duration::from_secs(30)).await?;
    let began = Instant::now();
    let pods = workload::wait_pods_ready(&client, NS, "app", 6, Duration::from_secs(180)).await?;
    let injected = pods.iter().filter(|p| workload::injected(p)).count();
    say(&format!(
        "6 pods Ready after {:.1}s, {injected}/6 injected with weft-init + weft-proxy",
        began.elapsed().as_secs_f64()
    ));
    if injected != 6 {
        bail!("only {injected} of 6 pods were injected");
    }
    let productpage = pods
        .iter()
        .find(|p| {
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("app"))
                .map(String::as_str)
                == Some("productpage")
        })
        .context("no productpage pod")?;
    let uid = productpage
        .metadata
        .uid
        .as_deref()
        .context("productpage has no uid")?;
    let node_dir = args.root.join(&args.node_dir);
    let cri = pods::Cri::new(
        &binaries::node_tools_dir().join("crictl"),
        &node_dir.join("crictl.yaml"),
    );
    let netns = cri
        .pod_network(uid)
        .map_err(anyhow::Error::msg)
        .context("finding productpage's network namespace on the dev cluster node")?
        .netns;
    say(&format!(
        "requests are sent from productpage's network namespace {netns}, through its sidecar"
    ));
    let mut demo = Demo {
        client: client.clone(),
        cri,
        netns,
        summary: Vec::new(),
    };
    let began = Instant::now();
    wait_for(
        "productpage -> reviews to answer",
        Duration::from_secs(60),
        || async {
            let r = demo.requests(REVIEWS, 1, &[]).await.map_err(|e| e.to_string())?;
            Ok((r[0].status == 200).then_some(()))
        },
    )
    .await?;
    let first = began.elapsed();
    // The first answer shows some reviews endpoints reached productpage's config; the
    // other versions may join a moment later, so look at batches of 60 for up to 30 s.
    let mut r = demo.requests(REVIEWS, 60, &[]).await?;
    let mut batches = 1;
    while tally(&r).len() < 3 && began.elapsed() < Duration::from_secs(30) {
        r = demo.requests(REVIEWS, 60, &[]).await?;
        batches += 1;
    }
    let t = tally(&r);
    demo.record(
        "No TrafficSplit: reviews (root service)",
        format!(
            "60 requests: {} (first answer after {:.1}s; batch {batches} of 60, {:.1}s in)",
            format_tally(&t),
            first.as_secs_f64(),
            began.elapsed().as_secs_f64()
        ),
        t.len() >= 2 && success_ratio(&r) == 1.0,
    );
    say("(the peak-EWMA balancer favours the endpoints it measured fastest, so shares are uneven)");

    step(3, "Canary: a TrafficSplit moves reviews from v1 to v2");
    for (v1, v2) in [(90, 10), (50, 50), (0, 100)] {
        demo.split(v1, v2).await?;
    }

    step(
        4,
        "Canary with a Gateway API HTTPRoute on reviews (GAMMA), over the TrafficSplit",
    );
    demo.http_route_canary().await?;

    step(5, "Header route: end-user: jason -> reviews-v2");
    workload::delete(
        &client,
        "split.smi-spec.io/v1alpha4",
        "TrafficSplit",
        NS,
        "reviews",
    )
    .await?;
    let jason = [HttpMatch {
        name: "jason",
        headers: &[("end-user", "jason")],
        ..HttpMatch::default()
    }];
    let objects = vec![
        policy::http_route_group(NS, "reviews-jason", &jason),
        policy::header_split(NS, "reviews-jason", "reviews", "reviews-jason", "reviews-v2"),
    ];
    let took = demo.change("productpage", objects).await?;
    let hdr = ["end-user: jason"];
    let with = tally(&demo.requests(REVIEWS, 50, &hdr).await?);
    let without = tally(&demo.requests(REVIEWS, 50, &[]).await?);
    demo.record(
        "Header route end-user: jason -> v2",
        format!(
            "jason: {} | others: {} (in force after {:.2}s)",
            format_tally(&with),
            format_tally(&without),
            took.as_secs_f64()
        ),
        with.get("v2") == Some(&50) && without.len() >= 2,
    );

    step(
        6,
        "Default deny (accessMode smi, mTLS strict), then TrafficTargets",
    );
    let modes = install::mesh_config("smi", "strict");
    let took = demo.change("productpage,reviews", vec![modes]).await?;
    let took = took + demo.until(REVIEWS, |r| r.iter().all(|r| r.status != 200)).await?;
    let r = demo.requests(REVIEWS, 20, &[]).await?;
    demo.record(
        "Default deny productpage -> reviews",
        format!(
            "20 requests: {} (in force after {:.2}s)",
            format_tally(&tally(&r)),
            took.as_secs_f64()
        ),
        success_ratio(&r) == 0.0,
    );
    let rules: [policy::Rule<'_>; 1] = [("TCPRoute", "all-ports", &[])];
    let mut objects = vec![policy::tcp_route(NS, "all-ports")];
    for (dest, src) in [
        ("reviews", "productpage"),
        ("details", "productpage"),
        ("ratings", "reviews"),
    ] {
        objects.push(policy::traffic_target(NS, dest, dest, &[src], &rules));
    }
    let took = demo
        .change("productpage,reviews,details,ratings", objects)
        .await?;
    say("TrafficTargets: productpage -> reviews, productpage -> details, reviews -> ratings");
    let took = took + demo.until(REVIEWS, |r| r.iter().all(|r| r.status == 200)).await?;
    let r = demo.requests(REVIEWS, 50, &[]).await?;
    demo.record(
        "TrafficTarget productpage -> reviews",
        format!(
            "50 requests: {:.0}% OK: {} (in force after {:.2}s)",
            success_ratio(&r) * 100.0,
            format_tally(&tally(&r)),
            took.as_secs_f64()
        ),
        success_ratio(&r) == 1.0,
    );

    step(
        7,
        "Retry: reviews -> ratings, where ratings fails 30% of requests",
    );
    let via_v2 = "http://reviews-v2.bookinfo:9080/call?url=http%3A%2F%2Fratings.bookinfo%3A9080%2F";
    demo.until(via_v2, |r| r.iter().any(|r| r.status == 200)).await?;
    let before = success_ratio(&demo.requests(via_v2, 100, &[]).await?);
    let took = demo
        .change(
            "reviews",
            vec![policy::retry(NS, "ratings", "reviews", "ratings", 3)],
        )
        .await?;
    let after = success_ratio(&demo.requests(via_v2, 100, &[]).await?);
    demo.record(
        "Retry (3 retries) masks flaky ratings",
        format!(
            "productpage -> reviews-v2 -> ratings: {:.0}% OK -> {:.0}% OK (in force after {:.2}s)",
            before * 100.0,
            after * 100.0,
            took.as_secs_f64()
        ),
        after >= 0.95 && after > before,
    );

    step(
        8,
        "LoadBalancing: sticky sessions on reviews with a cookie the sidecar sets",
    );
    demo.sticky_sessions().await?;
    step(
        9,
        "FaultInjection: productpage's calls to details get aborts and delays",
    );
    demo.faults().await?;
    step(
        10,
        "TrafficMirror: productpage's calls to details are copied to ratings",
    );
    demo.mirror().await?;

    step(
        11,
        "CircuitBreaker: reviews-v3 starts failing; the breaker opens and the fallback answers",
    );
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [
        {"name": "reviews", "env": [{"name": "FAIL_RATE", "value": "1.0"}]}]}}}});
    deploys
        .patch("reviews-v3", &PatchParams::default(), &Patch::Strategic(&patch))
        .await?;
    install::wait_available(&client, NS, "reviews-v3", Duration::from_secs(120)).await?;
    workload::wait_pods_ready(&client, NS, "app=reviews,version=v3", 1, Duration::from_secs(120)).await?;
    say("reviews-v3 rolled out with FAIL_RATE=1.0 (every request answers 500)");
    let cb = policy::circuit_breaker(NS, "reviews-v3", "reviews-v3", 10);
    let took = demo.change("productpage", vec![cb]).await?;
    let r = demo.requests("http://reviews-v3.bookinfo:9080/", 60, &[]).await?;
    let failed = r.iter().filter(|r| r.status == 500).count();
    let fallback = r
        .iter()
        .filter(|r| r.status == 503 && r.body.contains("fallback"))
        .count();
    demo.record(
        "CircuitBreaker on failing reviews-v3",
        format!(
            "60 requests: {failed} reached v3 (500), then the breaker opened: {fallback} fallback answers (503) \
             (in force after {:.2}s)",
            took.as_secs_f64()
        ),
        fallback >= 30 && failed <= 30,
    );

    step(
        12,
        "Ingress gateway: Bookinfo's productpage from the host through a weft Gateway",
    );
    demo.ingress_gateway().await?;

    step(13, "Summary");
    let width = demo.summary.iter().map(|o| o.step.len()).max().unwrap_or(10);
    println!("    {:<width$}  result  measured", "step");
    for o in &demo.summary {
        println!(
            "    {:<width$}  {:<6}  {}",
            o.step,
            if o.ok { "ok" } else { "FAILED" },
            o.measured
        );
    }
    step(14, "The cluster stays up");
    say(
        "kubectl: ~/.cache/weft/kube/v1.34.4/kubectl --kubeconfig .weft/kubeconfig -n bookinfo get pods,ts,tt,gateway,httproute,wretry,wcb,wlb,wfault,wmirror",
    );
    say("stop it with: make dev-cluster-down");
    Ok(demo.summary.iter().all(|o| o.ok))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.command {
        Command::Install => {
            let client = client(args.kubeconfig.clone()).await?;
            println!("Installing weft");
            install_weft(&client, &args).await?;
        }
        Command::Run => {
            if !run(&args).await.context("the demo stopped")? {
                bail!("some demo steps did not behave as expected (see the summary)");
            }
        }
    }
    Ok(())
}
