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
use reqwest::RequestBuilder;
use url::Url;

use super::token_cache::{Fresh, TokenCache};
use super::{Auth, RejectionTest};
use crate::engine::error::{Error, ErrorKind, Result};
use crate::engine::redact::redact_url;
use crate::engine::retry::{is_retryable, parse_retry_after, Outcome, RequestKind, RetryPolicy};

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
        ttl_s.max(0.0)
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
        let mut retry = 0;
        loop {
            let sent = http
                .post(self.token_url.clone())
                .query(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", self.client_id.as_str()),
                    ("client_secret", self.client_secret.as_str()),
                ])
                .header(reqwest::header::ACCEPT, "application/json")
                .header(reqwest::header::CONTENT_LENGTH, "0")
                .send()
                .await;
            let outcome = match sent {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_retry_after);
                    let body = resp.bytes().await.unwrap_or_default();
                    if status == 200 {
                        return self.parse_token(&body);
                    }
                    // A new grant is harmless to repeat, so it retries like a read.
                    if is_retryable(RequestKind::Read, Outcome::Status(status))
                        && retry < self.retry.max_retries
                    {
                        tokio::time::sleep(self.retry.delay(retry, retry_after)).await;
                        retry += 1;
                        continue;
                    }
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
                            "the token request to {} was refused: check client_id and client_secret",
                            self.shown_url()
                        ),
                    )
                    .vendor(self.vendor)
                    .operation("token");
                    err.status = Some(status);
                    err.code = code;
                    return Err(err);
                }
                Err(e) if e.is_connect() => Outcome::ConnectFailed,
                Err(_) => Outcome::TransportFailed,
            };
            if is_retryable(RequestKind::Read, outcome) && retry < self.retry.max_retries {
                tokio::time::sleep(self.retry.delay(retry, None)).await;
                retry += 1;
                continue;
            }
            return Err(Error::new(
                ErrorKind::Vendor,
                format!("could not reach {} for a token", self.shown_url()),
            )
            .vendor(self.vendor)
            .operation("token")
            .code("connection"));
        }
    }

    fn parse_token(&self, body: &[u8]) -> Result<Fresh> {
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
        let ttl = v
            .get("expires_in")
            .and_then(|e| {
                e.as_f64()
                    .or_else(|| e.as_str().and_then(|s| s.parse().ok()))
            })
            .unwrap_or(3500.0);
        log::info!(target: "labelport::engine::auth", "{} token granted, valid for {ttl} s", self.vendor);
        Ok(Fresh {
            value: Arc::from(value),
            use_for: renew_after(ttl),
        })
    }
}

#[async_trait]
impl Auth for OAuth2ClientCredentials {
    async fn authorize(
        &self,
        http: &reqwest::Client,
        req: RequestBuilder,
    ) -> Result<(RequestBuilder, u64)> {
        let token = self.tokens.get(|| self.grant(http)).await?;
        Ok((req.bearer_auth(&*token.value), token.generation))
    }

    fn is_rejection(&self, status: u16, body: &[u8]) -> bool {
        (self.rejection)(status, body)
    }

    fn invalidate(&self, generation: u64) {
        self.tokens.invalidate(generation)
    }

    fn renewals(&self) -> u64 {
        self.tokens.issued()
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
