//! A bearer token obtained by logging in (Alegion), renewed before expiry and on refusal, single-flight.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use url::Url;

use super::token_cache::{
    request_token, token_lifetime, Fresh, TokenAnswer, TokenCache, TokenEndpoint, TokenGrant,
};
use super::RejectionTest;
use crate::engine::error::{Error, ErrorKind, Result};
use crate::engine::redact::redact_url;
use crate::engine::retry::RetryPolicy;

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
        let shown = redact_url(&self.login_url);
        let endpoint = TokenEndpoint {
            vendor: self.vendor,
            operation: "login",
            shown: &shown,
            retry: &self.retry,
        };
        let answer = request_token(&endpoint, || {
            http.post(self.login_url.clone()).json(&self.body)
        })
        .await?;
        match answer {
            TokenAnswer::Granted(body) => self.parse_token(&body, &endpoint),
            TokenAnswer::Refused { status, .. } => {
                let kind = if matches!(status, 400 | 401 | 403) {
                    ErrorKind::Auth
                } else {
                    ErrorKind::Vendor
                };
                Err(Error::new(
                    kind,
                    format!("login refused at {shown}: check the credentials"),
                )
                .vendor(self.vendor)
                .operation("login")
                .http_status(status))
            }
        }
    }

    fn parse_token(&self, body: &[u8], endpoint: &TokenEndpoint<'_>) -> Result<Fresh> {
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
        let ttl = token_lifetime(&v, self.expires_field, 3600.0, endpoint)?;
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
impl TokenGrant for LoginToken {
    async fn fetch(&self, http: &reqwest::Client) -> Result<Fresh> {
        self.login(http).await
    }

    fn tokens(&self) -> &TokenCache {
        &self.tokens
    }

    fn rejection(&self) -> RejectionTest {
        self.rejection
    }

    /// The password and any other string of the login body.
    fn given_secrets(&self) -> Vec<String> {
        match &self.body {
            serde_json::Value::Object(m) => m
                .iter()
                .filter(|(k, _)| !k.to_ascii_lowercase().contains("user"))
                .filter_map(|(_, v)| v.as_str().map(str::to_string))
                .collect(),
            _ => vec![],
        }
    }
}

impl std::fmt::Debug for LoginToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LoginToken({})", redact_url(&self.login_url))
    }
}
