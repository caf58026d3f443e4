//! Who is asking: the bearer token of a signing request is reviewed by the API
//! server (TokenReview with `spec.audiences = [weft.dev/identity]`, so a token minted
//! for the API server or any other audience is refused), and only a ServiceAccount
//! (`system:serviceaccount:<ns>:<sa>`) whose token names our audience is accepted.

use futures::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, TokenReviewStatus};
use kube::api::PostParams;
use kube::{Api, Client};

/// The authenticated caller of a signing request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Namespace of the ServiceAccount.
    pub namespace: String,
    /// Name of the ServiceAccount.
    pub service_account: String,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReviewError {
    /// No usable token, or the API server did not authenticate it (forged, expired,
    /// wrong audience, deleted ServiceAccount or pod): HTTP 401.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// Authenticated, but not a ServiceAccount token for our audience: HTTP 403.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The TokenReview could not be made: HTTP 503.
    #[error("token review unavailable: {0}")]
    Unavailable(String),
}

/// Something that reviews tokens (the API server, or a fake in tests).
pub trait TokenReviewer: Send + Sync + std::fmt::Debug {
    /// The API server's verdict on `token` for `audience`.
    fn review<'a>(
        &'a self,
        token: &'a str,
        audience: &'a str,
    ) -> BoxFuture<'a, Result<TokenReviewStatus, ReviewError>>;
}

/// Reviews tokens with the TokenReview API.
#[derive(Clone)]
pub struct KubeReviewer {
    client: Client,
}

impl std::fmt::Debug for KubeReviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeReviewer").finish_non_exhaustive()
    }
}

impl KubeReviewer {
    /// A reviewer using `client` (needs `create` on `tokenreviews`).
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

impl TokenReviewer for KubeReviewer {
    fn review<'a>(
        &'a self,
        token: &'a str,
        audience: &'a str,
    ) -> BoxFuture<'a, Result<TokenReviewStatus, ReviewError>> {
        Box::pin(async move {
            let api: Api<TokenReview> = Api::all(self.client.clone());
            let tr = TokenReview {
                spec: TokenReviewSpec {
                    token: Some(token.to_string()),
                    audiences: Some(vec![audience.to_string()]),
                },
                ..TokenReview::default()
            };
            let reviewed = api
                .create(&PostParams::default(), &tr)
                .await
                .map_err(|e| ReviewError::Unavailable(e.to_string()))?;
            Ok(reviewed.status.unwrap_or_default())
        })
    }
}

/// The caller a review names, if it may get an identity: authenticated, our
/// audience among the token's audiences, and a ServiceAccount user.
pub fn caller(status: &TokenReviewStatus, audience: &str) -> Result<Caller, ReviewError> {
    if status.authenticated != Some(true) {
        let why = status
            .error
            .clone()
            .unwrap_or_else(|| "token not authenticated".into());
        return Err(ReviewError::Unauthenticated(why));
    }
    if !status.audiences.iter().flatten().any(|a| a == audience) {
        return Err(ReviewError::Forbidden(format!(
            "token is not for audience {audience}"
        )));
    }
    let username = status
        .user
        .as_ref()
        .and_then(|u| u.username.clone())
        .unwrap_or_default();
    let mut parts = username.splitn(4, ':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some("system"), Some("serviceaccount"), Some(ns), Some(sa)) if !ns.is_empty() && !sa.is_empty() => {
            Ok(Caller {
                namespace: ns.to_string(),
                service_account: sa.to_string(),
            })
        }
        _ => Err(ReviewError::Forbidden(format!(
            "{username:?} is not a ServiceAccount"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::authentication::v1::UserInfo;

    fn status(authenticated: bool, user: &str, audiences: &[&str]) -> TokenReviewStatus {
        TokenReviewStatus {
            authenticated: Some(authenticated),
            audiences: Some(audiences.iter().map(|s| s.to_string()).collect()),
            user: Some(UserInfo {
                username: Some(user.into()),
                ..UserInfo::default()
            }),
            error: (!authenticated).then(|| "token is expired".into()),
        }
    }

    #[test]
    fn only_service_accounts_with_our_audience_pass() {
        let aud = "weft.dev/identity";
        assert_eq!(
            caller(&status(true, "system:serviceaccount:shop:web", &[aud]), aud),
            Ok(Caller {
                namespace: "shop".into(),
                service_account: "web".into()
            })
        );
        assert!(matches!(
            caller(&status(false, "", &[]), aud),
            Err(ReviewError::Unauthenticated(e)) if e.contains("expired")
        ));
        assert!(matches!(
            caller(
                &status(
                    true,
                    "system:serviceaccount:shop:web",
                    &["https://kubernetes.default.svc"]
                ),
                aud
            ),
            Err(ReviewError::Forbidden(_))
        ));
        for user in [
            "alice",
            "system:node:n1",
            "system:serviceaccount:shop:",
            "system:serviceaccount::web",
        ] {
            assert!(
                matches!(
                    caller(&status(true, user, &[aud]), aud),
                    Err(ReviewError::Forbidden(_))
                ),
                "{user}"
            );
        }
    }
}
