//! OAuth2 client credentials (TaskMonk): the client id and secret go in the token request's query
//! string, as the vendor's own clients send them, with an empty body; the access token then travels as
//! `Authorization: Bearer`. The token is renewed shortly before it expires (as the vendor's SDK does,
//! 120 s early, less for short lifetimes) and whenever the vendor refuses it; single-flight.
//!
//! The token URL with its query is never shown: logs and errors name the endpoint without the query,
//! and `redact.rs` would hide `client_secret` anyway (it is not on the allowlist).

#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use url::Url;

use super::token_cache::{
    request_token, token_lifetime, Fresh, TokenAnswer, TokenCache, TokenEndpoint,
    MAX_TOKEN_LIFETIME_S,
};
use super::{RejectionTest, TokenGrant};
use crate::engine::error::{Error, ErrorKind, Result};
use crate::engine::redact::redact_url;
use crate::engine::retry::RetryPolicy;

/// The longest head start a renewal takes before expiry (the SDK's buffer).
const MAX_RENEW_MARGIN_S: f64 = 120.0;

pub struct OAuth2ClientCredentials {
    vendor: &'static str,
    /// The token endpoint, without the credentials.
    token_url: Url,
    client_id: String,
    /// Never logged, never in an error.
    client_secret: String,
    rejection: RejectionTest,
    retry: RetryPolicy,
    tokens: TokenCache,
}

/// When to renew a token that lives `ttl_s` seconds: 10 % early, at most 120 s.
pub fn renew_after(ttl_s: f64) -> Duration {
    let ttl = if ttl_s.is_finite() {
        ttl_s.clamp(0.0, MAX_TOKEN_LIFETIME_S)
    } else {
        0.0
    };
    Duration::from_secs_f64(ttl - (ttl * 0.1).min(MAX_RENEW_MARGIN_S))
}

impl OAuth2ClientCredentials {
    pub fn new(
        vendor: &'static str,
        token_url: Url,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        rejection: RejectionTest,
        retry: RetryPolicy,
    ) -> Self {
        let mut token_url = token_url;
        token_url.set_query(None);
        OAuth2ClientCredentials {
            vendor,
            token_url,
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            rejection,
            retry,
            tokens: TokenCache::new(),
        }
    }

    fn shown_url(&self) -> String {
        redact_url(&self.token_url)
    }

    async fn grant(&self, http: &reqwest::Client) -> Result<Fresh> {
        let shown = self.shown_url();
        let endpoint = TokenEndpoint {
            vendor: self.vendor,
            operation: "token",
            shown: &shown,
            retry: &self.retry,
        };
        let answer = request_token(&endpoint, || {
            http.post(self.token_url.clone())
                .query(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", self.client_id.as_str()),
                    ("client_secret", self.client_secret.as_str()),
                ])
                .header(reqwest::header::ACCEPT, "application/json")
                .header(reqwest::header::CONTENT_LENGTH, "0")
        })
        .await?;
        match answer {
            TokenAnswer::Granted(body) => self.parse_token(&body, &endpoint),
            TokenAnswer::Refused { status, body } => {
                let kind = if matches!(status, 400 | 401 | 403) {
                    ErrorKind::Auth
                } else {
                    ErrorKind::Vendor
                };
                // The vendor's error code is safe to show; its body is not quoted whole.
                let code = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from));
                let mut err = Error::new(
                    kind,
                    format!(
                        "the token request to {shown} was refused: check client_id and client_secret"
                    ),
                )
                .vendor(self.vendor)
                .operation("token")
                .http_status(status);
                err.code = code;
                Err(err)
            }
        }
    }

    fn parse_token(&self, body: &[u8], endpoint: &TokenEndpoint<'_>) -> Result<Fresh> {
        let bad = || {
            Error::new(
                ErrorKind::Auth,
                "the token endpoint answered without an access_token",
            )
            .vendor(self.vendor)
            .operation("token")
        };
        let v: serde_json::Value = serde_json::from_slice(body).map_err(|_| bad())?;
        let value = v
            .get("access_token")
            .and_then(|t| t.as_str())
            .ok_or_else(bad)?;
        let ttl = token_lifetime(&v, "expires_in", 3500.0, endpoint)?;
        log::info!(target: "labelport::engine::auth", "{} token granted, valid for {ttl} s", self.vendor);
        Ok(Fresh {
            value: Arc::from(value),
            use_for: renew_after(ttl),
        })
    }
}

#[async_trait]
impl TokenGrant for OAuth2ClientCredentials {
    async fn fetch(&self, http: &reqwest::Client) -> Result<Fresh> {
        self.grant(http).await
    }

    fn tokens(&self) -> &TokenCache {
        &self.tokens
    }

    fn rejection(&self) -> RejectionTest {
        self.rejection
    }

    fn given_secrets(&self) -> Vec<String> {
        vec![self.client_secret.clone()]
    }
}

impl std::fmt::Debug for OAuth2ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "OAuth2ClientCredentials({}, client_secret=***)",
            self.shown_url()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_early_by_a_tenth_at_most_two_minutes() {
        assert_eq!(renew_after(3500.0), Duration::from_secs(3380));
        assert_eq!(renew_after(100.0), Duration::from_secs(90));
        assert_eq!(renew_after(2.0), Duration::from_millis(1800));
        assert_eq!(renew_after(-5.0), Duration::ZERO);
        assert_eq!(renew_after(f64::NAN), Duration::ZERO);
    }

    #[test]
    fn the_secret_is_never_shown() {
        let url =
            Url::parse("https://api.taskmonk.io/api/oauth2/token?client_secret=s3cr3t").unwrap();
        let a = OAuth2ClientCredentials::new(
            "taskmonk",
            url,
            "id",
            "s3cr3t",
            |s, _| s == 401,
            RetryPolicy::default(),
        );
        let shown = format!("{a:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("/api/oauth2/token"), "{shown}");
    }
}
