use super::*;
use crate::certs::MeshCa;
use crate::certs::store::{ca_from_secret, ca_secret};
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use k8s_openapi::api::authentication::v1::{TokenReviewStatus, UserInfo};
use rcgen::{CertificateParams, KeyPair, SanType};
use std::collections::HashMap;
use tower::ServiceExt;

/// The API server's verdicts, by token (what a real TokenReview answers for each).
#[derive(Debug, Default)]
struct FakeApiServer(HashMap<&'static str, TokenReviewStatus>);

impl TokenReviewer for FakeApiServer {
    fn review<'a>(
        &'a self,
        token: &'a str,
        audience: &'a str,
    ) -> BoxFuture<'a, Result<TokenReviewStatus, ReviewError>> {
        assert_eq!(audience, AUDIENCE, "reviews always name the weft audience");
        let s = self.0.get(token).cloned().unwrap_or(TokenReviewStatus {
            authenticated: Some(false),
            error: Some("invalid bearer token".into()),
            ..TokenReviewStatus::default()
        });
        Box::pin(async move { Ok(s) })
    }
}

fn ok(user: &str, audiences: &[&str]) -> TokenReviewStatus {
    TokenReviewStatus {
        authenticated: Some(true),
        audiences: Some(audiences.iter().map(|a| a.to_string()).collect()),
        user: Some(UserInfo {
            username: Some(user.into()),
            ..UserInfo::default()
        }),
        error: None,
    }
}

fn refused(why: &str) -> TokenReviewStatus {
    TokenReviewStatus {
        authenticated: Some(false),
        error: Some(why.into()),
        ..TokenReviewStatus::default()
    }
}

fn service() -> IdentityService {
    let api = FakeApiServer(HashMap::from([
        ("web-token", ok("system:serviceaccount:shop:web", &[AUDIENCE])),
        // The API server only authenticates a token for an audience it was minted for.
        (
            "api-audience-token",
            refused(
                "token audiences [\"https://kubernetes.default.svc\"] is invalid for the target audiences [\"weft.dev/identity\"]",
            ),
        ),
        // An authenticator that does not check audiences: refused by us.
        (
            "audience-agnostic",
            ok("system:serviceaccount:shop:web", &["other"]),
        ),
        (
            "expired-token",
            refused("[invalid bearer token, square/go-jose/jwt: validation failed, token is expired (exp)]"),
        ),
        ("user-token", ok("alice@example.com", &[AUDIENCE])),
    ]));
    let svc = IdentityService::new(Arc::new(api));
    let now = OffsetDateTime::now_utc();
    let ca = ca_from_secret(&ca_secret(
        "weft-system",
        &MeshCa::generate("cluster.local", now).unwrap(),
    ))
    .unwrap();
    svc.set_ca(Arc::new(ca));
    svc
}

/// A CSR asking for `sans` (what a malicious sidecar would send).
fn csr(sans: &[&str]) -> (KeyPair, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = sans
        .iter()
        .map(|s| SanType::URI((*s).try_into().unwrap()))
        .chain([SanType::DnsName("kubernetes.default.svc".try_into().unwrap())])
        .collect();
    let pem = params.serialize_request(&key).unwrap().pem().unwrap();
    (key, pem)
}

async fn call(svc: IdentityService, token: Option<&str>, body: String) -> (StatusCode, Vec<u8>) {
    let mut req = axum::http::Request::post(CERTIFICATE_PATH).header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = router(svc)
        .oneshot(req.body(axum::body::Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    (
        status,
        resp.into_body().collect().await.unwrap().to_bytes().to_vec(),
    )
}

fn body(csr: &str) -> String {
    serde_json::to_string(&CertificateRequest { csr: csr.into() }).unwrap()
}

#[tokio::test]
async fn a_csr_with_a_foreign_san_gets_the_token_identity_only() {
    let svc = service();
    let (key, pem) = csr(&["spiffe://cluster.local/ns/kube-system/sa/admin"]);
    let (status, bytes) = call(svc.clone(), Some("web-token"), body(&pem)).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&bytes));
    let resp: CertificateResponse = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(resp.spiffe_id, "spiffe://cluster.local/ns/shop/sa/web");
    assert_eq!(
        crate::certs::ca::uri_sans(&resp.certificate_chain).unwrap(),
        ["spiffe://cluster.local/ns/shop/sa/web"],
        "only the token's identity, no SAN from the CSR"
    );
    let (_, p) = x509_parser::pem::parse_x509_pem(resp.certificate_chain.as_bytes()).unwrap();
    let cert = p.parse_x509().unwrap();
    let dns = cert
        .subject_alternative_name()
        .unwrap()
        .map(|s| s.value.general_names.len())
        .unwrap_or(0);
    assert_eq!(dns, 1, "exactly one SAN");
    assert_eq!(
        &cert.public_key().subject_public_key.data[..],
        key.public_key_raw(),
        "signed over the CSR's key"
    );
    assert!(!cert.is_ca());
    assert_eq!(resp.trust_bundle, svc.ca().unwrap().bundle);
    assert_eq!(resp.not_after - resp.not_before, 24 * 3600 + 60);
    // The trust domain and lifetime follow the mesh settings.
    svc.set_settings(SignerSettings {
        trust_domain: "prod.example".into(),
        validity: Duration::from_secs(600),
    });
    let (_, bytes) = call(svc, Some("web-token"), body(&pem)).await;
    let resp: CertificateResponse = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(resp.spiffe_id, "spiffe://prod.example/ns/shop/sa/web");
    assert_eq!(resp.not_after - resp.not_before, 600 + 60);
}

#[tokio::test]
async fn wrong_audience_expired_forged_and_missing_tokens_are_refused() {
    let (_, pem) = csr(&[]);
    for (token, want) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some("api-audience-token"), StatusCode::UNAUTHORIZED),
        (Some("expired-token"), StatusCode::UNAUTHORIZED),
        (Some("forged.jwt.token"), StatusCode::UNAUTHORIZED),
        (Some("audience-agnostic"), StatusCode::FORBIDDEN),
        (Some("user-token"), StatusCode::FORBIDDEN),
    ] {
        let (status, bytes) = call(service(), token, body(&pem)).await;
        assert_eq!(status, want, "{token:?}: {}", String::from_utf8_lossy(&bytes));
        assert!(!String::from_utf8_lossy(&bytes).contains("CERTIFICATE"));
    }
}

#[tokio::test]
async fn bad_csrs_and_a_missing_ca_are_errors_not_certificates() {
    let (status, _) = call(service(), Some("web-token"), body("not a csr")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = call(service(), Some("web-token"), "{".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // A CSR whose signature does not match its key (one signature byte changed).
    let (_, pem) = csr(&[]);
    let mut lines: Vec<String> = pem.lines().map(String::from).collect();
    let last = lines.len() - 2;
    let mut chars: Vec<char> = lines[last].chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    lines[last] = chars.into_iter().collect();
    let (status, _) = call(service(), Some("web-token"), body(&lines.join("\n"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let svc = IdentityService::new(Arc::new(FakeApiServer(HashMap::from([(
        "web-token",
        ok("system:serviceaccount:shop:web", &[AUDIENCE]),
    )]))));
    let (_, pem) = csr(&[]);
    let (status, _) = call(svc, Some("web-token"), body(&pem)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}
