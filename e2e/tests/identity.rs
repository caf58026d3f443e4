//! The identity endpoint against the real test API server (issue 14 item 6): the
//! controller's endpoint runs in-process, tokens come from the real TokenRequest API
//! and are checked with the real TokenReview API, and the sidecar's own CSR client
//! (`weft_proxy::tls::csr`) obtains the certificates. A token of one ServiceAccount only
//! ever yields that ServiceAccount's SPIFFE ID; tokens for another audience, forged or
//! expired tokens are refused; the sidecar refuses an endpoint the mesh CA did not sign;
//! a running proxy gets its identity at startup and renews it at 2/3 of its life.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fixtures;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fixtures::*;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use weft_controller::certs::store::{CA_SECRET, ca_from_secret};
use weft_controller::identity::AUDIENCE;
use weft_controller::identity::run::{IdentityOptions, run};
use weft_e2e::{TestNamespace, shared};
use weft_proxy::tls::csr::{CsrClient, CsrError};

static LOCK: LazyLock<tokio::sync::Mutex<()>> = LazyLock::new(|| tokio::sync::Mutex::new(()));

const SERVER_NAME: &str = "weft-identity.weft-system.svc";

/// The controller's identity endpoint, in-process on a loopback port.
struct Endpoint {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Endpoint {
    async fn start(client: &Client) -> Self {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let opts = IdentityOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            namespace: SYSTEM_NS.into(),
            service: "weft-identity".into(),
        };
        let client = client.clone();
        let task = tokio::spawn(async move {
            run(
                client,
                opts,
                async move {
                    let _ = stopped.await;
                },
                Some(tx),
            )
            .await
            .unwrap();
        });
        let addr = rx.await.unwrap();
        Self {
            addr,
            stop: Some(stop),
            task,
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.abort();
    }
}

async fn setup(
    prefix: &str,
) -> (
    tokio::sync::MutexGuard<'static, ()>,
    TestNamespace<'static>,
    Client,
    tempfile::TempDir,
) {
    let guard = LOCK.lock().await;
    let cp = shared::control_plane().unwrap();
    let client = cp.client().unwrap();
    crds_and_system_namespace(&client).await;
    let ns = TestNamespace::create(cp, prefix).await.unwrap();
    for sa in ["web", "db"] {
        create::<ServiceAccount>(&client, ns.name(), json!({"metadata": {"name": sa}})).await;
    }
    (guard, ns, client, tempfile::tempdir().unwrap())
}

/// A token of `sa` from the TokenRequest API (what the kubelet projects into the pod).
async fn token(client: &Client, ns: &str, sa: &str, audience: Option<&str>) -> String {
    let tr = TokenRequest {
        spec: TokenRequestSpec {
            audiences: audience.map(|a| vec![a.to_string()]).unwrap_or_default(),
            expiration_seconds: Some(3600),
            bound_object_ref: None,
        },
        ..TokenRequest::default()
    };
    Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create_token_request(sa, &PostParams::default(), &tr)
        .await
        .unwrap()
        .status
        .unwrap()
        .token
}

/// The mesh trust bundle, once the endpoint has the CA (it creates `weft-ca` if absent).
async fn bundle(client: &Client) -> String {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), SYSTEM_NS);
    let began = Instant::now();
    loop {
        if let Some(s) = secrets.get_opt(CA_SECRET).await.unwrap() {
            return ca_from_secret(&s).unwrap().bundle;
        }
        assert!(began.elapsed() < Duration::from_secs(30), "no mesh CA");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

async fn client_for(ep: &Endpoint, token_file: PathBuf, bundle: &str) -> CsrClient {
    CsrClient::new(&ep.addr.to_string(), token_file, None)
        .with_server_name(SERVER_NAME)
        .with_bundle(bundle.as_bytes())
}

/// Waits until the endpoint serves (its serving certificate comes from the CA watch).
async fn until_serving(c: &CsrClient) {
    let began = Instant::now();
    loop {
        match c.obtain().await {
            Ok(_) => return,
            Err(e) if began.elapsed() > Duration::from_secs(30) => panic!("endpoint never served: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

fn status_of(r: Result<impl std::fmt::Debug, CsrError>) -> u16 {
    match r {
        Err(CsrError::Status(s, _)) => s.as_u16(),
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
}

/// A CSR asking for `san` (what a compromised sidecar could send).
fn csr_for(san: &str) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::default();
    p.subject_alt_names = vec![rcgen::SanType::URI(san.try_into().unwrap())];
    p.serialize_request(&key).unwrap().pem().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_obtains_exactly_its_own_service_account_identity() {
    let (_g, ns, client, dir) = setup("id-own").await;
    let ns_name = ns.name().to_string();
    let ep = Endpoint::start(&client).await;
    let bundle = bundle(&client).await;
    let web = write(
        dir.path(),
        "web",
        &token(&client, &ns_name, "web", Some(AUDIENCE)).await,
    );
    let db = write(
        dir.path(),
        "db",
        &token(&client, &ns_name, "db", Some(AUDIENCE)).await,
    );
    let web_client = client_for(&ep, web, &bundle).await;
    until_serving(&web_client).await;
    let got = web_client.obtain().await.unwrap();
    let web_id = format!("spiffe://cluster.local/ns/{ns_name}/sa/web");
    assert_eq!(got.material.spiffe_id, web_id);
    assert!(got.not_after > got.not_before);
    // db's token asking for web's identity (and a cluster admin's) gets db's only.
    let db_client = client_for(&ep, db, &bundle).await;
    for foreign in [web_id.as_str(), "spiffe://cluster.local/ns/kube-system/sa/admin"] {
        let answer = db_client.request(&csr_for(foreign)).await.unwrap();
        let db_id = format!("spiffe://cluster.local/ns/{ns_name}/sa/db");
        assert_eq!(answer.spiffe_id, db_id);
        assert_eq!(
            weft_controller::certs::ca::uri_sans(&answer.certificate_chain).unwrap(),
            [db_id]
        );
    }
    drop(ep);
    drop(ns);
}

/// `token` with its claims changed by `edit`, re-signed with the API server's real
/// ServiceAccount signing key (ES256).
fn resign(cp_pki: &Path, token: &str, edit: impl FnOnce(&mut Value)) -> String {
    let mut parts = token.split('.');
    let (h, p) = (parts.next().unwrap(), parts.next().unwrap());
    let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap();
    edit(&mut claims);
    let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    let pem = std::fs::read_to_string(cp_pki.join("sa.key")).unwrap();
    let der = rustls_pem_der(&pem);
    let rng = ring::rand::SystemRandom::new();
    let key = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &der,
        &rng,
    )
    .unwrap();
    let signing_input = format!("{h}.{p}");
    let sig = key.sign(&rng, signing_input.as_bytes()).unwrap();
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

fn rustls_pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_audience_forged_and_expired_tokens_are_refused() {
    let (_g, ns, client, dir) = setup("id-refuse").await;
    let ns_name = ns.name().to_string();
    let ep = Endpoint::start(&client).await;
    let bundle = bundle(&client).await;
    let good = token(&client, &ns_name, "web", Some(AUDIENCE)).await;
    let good_client = client_for(&ep, write(dir.path(), "good", &good), &bundle).await;
    until_serving(&good_client).await;
    let pki = shared::control_plane().unwrap().layout().pki.clone();
    // Control: the same claims re-signed with the real key are accepted, so the refusals
    // below are for the changed claim, not for the re-signing.
    let same = resign(&pki, &good, |_| {});
    let ok = client_for(&ep, write(dir.path(), "same", &same), &bundle).await;
    assert!(ok.obtain().await.is_ok(), "a faithfully re-signed token works");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let expired = resign(&pki, &good, |c| {
        c["iat"] = json!(now - 7200);
        c["nbf"] = json!(now - 7200);
        c["exp"] = json!(now - 3600);
    });
    // Forged: db's claims with web's signature.
    let db = token(&client, &ns_name, "db", Some(AUDIENCE)).await;
    let forged = {
        let g: Vec<&str> = good.split('.').collect();
        let d: Vec<&str> = db.split('.').collect();
        format!("{}.{}.{}", g[0], d[1], g[2])
    };
    let api_audience = token(&client, &ns_name, "web", None).await;
    let other_audience = token(&client, &ns_name, "web", Some("vault")).await;
    for (name, tok, want) in [
        ("api-server audience", api_audience, 401),
        ("another audience", other_audience, 401),
        ("forged", forged, 401),
        ("expired", expired, 401),
        ("garbage", "not-a-jwt".to_string(), 401),
    ] {
        let c = client_for(&ep, write(dir.path(), "t", &tok), &bundle).await;
        assert_eq!(status_of(c.obtain().await), want, "{name}");
    }
    // A deleted ServiceAccount's token stops working.
    Api::<ServiceAccount>::namespaced(client.clone(), &ns_name)
        .delete("web", &Default::default())
        .await
        .unwrap();
    let began = Instant::now();
    loop {
        match good_client.obtain().await {
            Err(CsrError::Status(s, _)) => {
                assert_eq!(s.as_u16(), 401);
                break;
            }
            _ if began.elapsed() < Duration::from_secs(20) => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            other => panic!("deleted ServiceAccount still gets certificates: {other:?}"),
        }
    }
    drop(ep);
    drop(ns);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_refuses_an_endpoint_the_mesh_ca_did_not_sign() {
    let (_g, ns, client, dir) = setup("id-verify").await;
    let ns_name = ns.name().to_string();
    let ep = Endpoint::start(&client).await;
    let bundle = bundle(&client).await;
    let web = write(
        dir.path(),
        "web",
        &token(&client, &ns_name, "web", Some(AUDIENCE)).await,
    );
    until_serving(&client_for(&ep, web.clone(), &bundle).await).await;
    let other = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string()]).unwrap();
    let c = client_for(&ep, web.clone(), &other.cert.pem()).await;
    assert!(
        matches!(c.obtain().await, Err(CsrError::Connect(..))),
        "unknown CA"
    );
    let c = CsrClient::new(&ep.addr.to_string(), web, None)
        .with_server_name("evil.example")
        .with_bundle(bundle.as_bytes());
    assert!(
        matches!(c.obtain().await, Err(CsrError::Connect(..))),
        "wrong name"
    );
    drop(ep);
    drop(ns);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_gets_its_identity_at_startup_and_renews_it() {
    let (_g, ns, client, dir) = setup("id-proxy").await;
    let ns_name = ns.name().to_string();
    let _mesh = MeshConfigGuard(client.clone());
    // 6 s certificates: renewal due ~4 s after each issue.
    let mc = json!({"apiVersion": "policy.weft.dev/v1alpha1", "kind": "MeshConfig",
        "metadata": {"name": "default"}, "spec": {"certificateValidity": "6s"}});
    let ar = kube::core::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
        "policy.weft.dev",
        "v1alpha1",
        "MeshConfig",
    ));
    Api::<kube::api::DynamicObject>::all_with(client.clone(), &ar)
        .patch(
            "default",
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&serde_json::from_value::<kube::api::DynamicObject>(mc).unwrap()),
        )
        .await
        .unwrap();
    let ep = Endpoint::start(&client).await;
    let bundle = bundle(&client).await;
    let web = write(
        dir.path(),
        "web",
        &token(&client, &ns_name, "web", Some(AUDIENCE)).await,
    );
    // The endpoint follows the MeshConfig: wait until it issues 6 s certificates.
    let probe = client_for(&ep, web.clone(), &bundle).await;
    until_serving(&probe).await;
    let began = Instant::now();
    while {
        let got = probe.obtain().await.unwrap();
        got.not_after - got.not_before > 7
    } {
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "MeshConfig validity not followed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let bundle_file = write(dir.path(), "ca.crt", &bundle);
    let csr = CsrClient::new(&ep.addr.to_string(), web, Some(bundle_file)).with_server_name(SERVER_NAME);
    let opts = weft_proxy::run::Options {
        admin: Some("127.0.0.1:0".parse().unwrap()),
        initial: Some(weft_proxy::run::cli::explicit_config(
            "127.0.0.1:9".parse().unwrap(),
        )),
        identity_csr: Some((csr, Duration::from_millis(100))),
        ..Default::default()
    };
    let running = weft_proxy::run::start(opts).await.unwrap();
    let id = running.identity.clone().unwrap();
    let began = Instant::now();
    let first = loop {
        if let Some(m) = id.current() {
            break m;
        }
        assert!(
            running.readiness.check().is_err(),
            "/ready waits for the first certificate"
        );
        assert!(began.elapsed() < Duration::from_secs(30), "no certificate by CSR");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        first.spiffe_id,
        format!("spiffe://cluster.local/ns/{ns_name}/sa/web")
    );
    let began = Instant::now();
    while running.readiness.check().is_err() {
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "not ready with a certificate"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let life = first.not_after;
    let began = Instant::now();
    loop {
        let now = id.current().unwrap();
        if now.not_after != life {
            assert!(now.not_after > life, "renewed certificate lives longer");
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(15),
            "certificate not renewed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.shutdown(Duration::from_millis(100)).await;
    drop(ep);
    drop(ns);
}
