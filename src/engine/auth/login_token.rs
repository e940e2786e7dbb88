//! A bearer token obtained by logging in (Alegion), renewed before expiry and on refusal, single-flight.

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

/// A bearer token obtained by logging in with a JSON body (Alegion's `POST /api/v1/login`), renewed shortly
/// before it expires and whenever the vendor refuses it.
pub struct LoginToken {
    vendor: &'static str,
    login_url: Url,
    /// The login body; holds the password, so it is never logged or quoted in an error.
    body: serde_json::Value,
    token_field: &'static str,
    expires_field: &'static str,
    rejection: RejectionTest,
    retry: RetryPolicy,
    tokens: TokenCache,
}

impl LoginToken {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        vendor: &'static str,
        login_url: Url,
        body: serde_json::Value,
        token_field: &'static str,
        expires_field: &'static str,
        rejection: RejectionTest,
        retry: RetryPolicy,
    ) -> Self {
        LoginToken {
            vendor,
            login_url,
            body,
            token_field,
            expires_field,
            rejection,
            retry,
            tokens: TokenCache::new(),
        }
    }

    async fn login(&self, http: &reqwest::Client) -> Result<Fresh> {
        let mut retry = 0;
        loop {
            let sent = http
                .post(self.login_url.clone())
                .json(&self.body)
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
                    if (200..300).contains(&status) {
                        return self.parse_token(&body);
                    }
                    // Logging in twice is harmless, so it retries like a read.
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
                    let mut err = Error::new(
                        kind,
                        format!(
                            "login refused at {}: check the credentials",
                            redact_url(&self.login_url)
                        ),
                    )
                    .vendor(self.vendor)
                    .operation("login");
                    err.status = Some(status);
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
                format!("could not reach {} to log in", redact_url(&self.login_url)),
            )
            .vendor(self.vendor)
            .operation("login")
            .code("connection"));
        }
    }

    fn parse_token(&self, body: &[u8]) -> Result<Fresh> {
        let bad = || {
            Error::new(ErrorKind::Auth, "login answered without an access token")
                .vendor(self.vendor)
                .operation("login")
        };
        let v: serde_json::Value = serde_json::from_slice(body).map_err(|_| bad())?;
        let value = v
            .get(self.token_field)
            .and_then(|t| t.as_str())
            .ok_or_else(bad)?;
        let ttl = v
            .get(self.expires_field)
            .and_then(|e| e.as_f64())
            .unwrap_or(3600.0)
            .max(0.0);
        // Renew a little before expiry: 10 % of the lifetime, at most a minute.
        let margin = (ttl * 0.1).min(60.0);
        log::info!(target: "labelport::engine::auth", "{} login ok, token valid for {ttl} s", self.vendor);
        Ok(Fresh {
            value: Arc::from(value),
            use_for: Duration::from_secs_f64(ttl - margin),
        })
    }
}

#[async_trait]
impl Auth for LoginToken {
    async fn authorize(
        &self,
        http: &reqwest::Client,
        req: RequestBuilder,
    ) -> Result<(RequestBuilder, u64)> {
        let token = self.tokens.get(|| self.login(http)).await?;
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

impl std::fmt::Debug for LoginToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LoginToken({})", redact_url(&self.login_url))
    }
}
