//! The cache every renewable bearer token shares (login tokens, OAuth2 grants): the current token, renewed
//! when due by a single fetch however many requests ask at once, and forgotten when the vendor refuses it.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use bytes::Bytes;
use reqwest::RequestBuilder;

use crate::engine::error::{Error, ErrorKind, Result};
use crate::engine::http::{bad_response, read_limited, too_large, BodyError};
use crate::engine::retry::{
    is_retryable, read_retry_after, Outcome, RequestKind, RetryAfter, RetryPolicy,
};
use crate::engine::runner::{past_deadline, reach_deadline};

/// The largest token answer read: a token and a few fields, never megabytes.
const MAX_TOKEN_BODY: u64 = 1024 * 1024;

/// The longest token lifetime believed (about 31 years): beyond it a server is broken or hostile.
pub(super) const MAX_TOKEN_LIFETIME_S: f64 = 1e9;

/// A token just obtained, and how long to use it before renewing.
pub struct Fresh {
    pub value: Arc<str>,
    pub use_for: Duration,
}

#[derive(Clone)]
pub struct Token {
    pub value: Arc<str>,
    pub generation: u64,
    renew_at: Instant,
}

pub struct TokenCache {
    current: RwLock<Option<Token>>,
    fetch_lock: tokio::sync::Mutex<()>,
    generation: AtomicU64,
}

/// A way to obtain a bearer token; `Auth` follows for it (auth/mod.rs).
#[async_trait::async_trait]
pub trait TokenGrant: Send + Sync {
    /// Obtains a fresh token from the vendor.
    async fn fetch(&self, http: &reqwest::Client) -> Result<Fresh>;
    /// The cache that holds the token, single-flight.
    fn tokens(&self) -> &TokenCache;
    /// Whether an answer refuses the token.
    fn rejection(&self) -> super::RejectionTest;
    /// The secrets the provider was given (a password, a client secret), besides the token.
    fn given_secrets(&self) -> Vec<String>;
}

impl TokenCache {
    pub fn new() -> Self {
        TokenCache {
            current: RwLock::new(None),
            fetch_lock: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
        }
    }

    fn valid(&self) -> Option<Token> {
        self.current
            .read()
            .as_ref()
            .filter(|t| Instant::now() < t.renew_at)
            .cloned()
    }

    /// The current token, or a new one from `fetch` (one fetch at a time; others wait and reuse it).
    pub async fn get<F, Fut>(&self, fetch: F) -> Result<Token>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Fresh>>,
    {
        if let Some(t) = self.valid() {
            return Ok(t);
        }
        let _single_flight = self.fetch_lock.lock().await;
        if let Some(t) = self.valid() {
            return Ok(t);
        }
        let fresh = fetch().await?;
        let token = Token {
            value: fresh.value,
            generation: self.generation.fetch_add(1, Ordering::Relaxed) + 1,
            // `use_for` is bounded by `token_lifetime`; checked anyway, as an overflow here would panic.
            renew_at: Instant::now()
                .checked_add(fresh.use_for)
                .unwrap_or_else(|| {
                    Instant::now() + Duration::from_secs(MAX_TOKEN_LIFETIME_S as u64)
                }),
        };
        *self.current.write() = Some(token.clone());
        Ok(token)
    }

    /// The token of `generation` was refused: forget it (unless a newer one replaced it already).
    pub fn invalidate(&self, generation: u64) {
        let mut current = self.current.write();
        if current.as_ref().is_some_and(|t| t.generation == generation) {
            *current = None;
        }
    }

    /// The current token's value, if any: a secret to scrub from vendor text.
    pub fn current_value(&self) -> Option<String> {
        self.current.read().as_ref().map(|t| t.value.to_string())
    }

    /// How many tokens were obtained.
    pub fn issued(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }
}

/// Where a token comes from, for requests and errors.
pub(super) struct TokenEndpoint<'a> {
    pub vendor: &'static str,
    /// "login" or "token".
    pub operation: &'static str,
    /// The endpoint as it may be shown (no credentials).
    pub shown: &'a str,
    pub retry: &'a RetryPolicy,
}

/// How a token request ended, short of a transport failure.
pub(super) enum TokenAnswer {
    Granted(Bytes),
    Refused { status: u16, body: Bytes },
}

/// Requests a token with retries (asking twice is harmless, so it retries like a read): the one loop shared
/// by logins and OAuth2 grants. The answer is read up to `MAX_TOKEN_BODY`; a body that stalls or breaks
/// off is a transport failure (retried, then a `VendorError`), never an empty answer taken for a refusal.
pub(super) async fn request_token(
    endpoint: &TokenEndpoint<'_>,
    send: impl Fn() -> RequestBuilder,
) -> Result<TokenAnswer> {
    let retry = endpoint.retry;
    let mut attempt = 0;
    loop {
        let outcome = match send().send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let after = read_retry_after(resp.headers(), retry);
                let url = resp.url().clone();
                match read_limited(resp, MAX_TOKEN_BODY).await {
                    Ok(body) if (200..300).contains(&status) => {
                        return Ok(TokenAnswer::Granted(body))
                    }
                    Ok(body) => {
                        if !(is_retryable(RequestKind::Read, Outcome::Status(status))
                            && attempt < retry.max_retries)
                        {
                            return Ok(TokenAnswer::Refused { status, body });
                        }
                        match after {
                            RetryAfter::TooLong(secs) => {
                                return Err(Error::new(
                                    if status == 429 { ErrorKind::RateLimited } else { ErrorKind::Vendor },
                                    format!(
                                        "{} answered HTTP {status} and asked to wait {secs} s, more than the \
                                         client's max_retry_wait of {} s",
                                        endpoint.shown,
                                        retry.max_retry_after.as_secs_f64()
                                    ),
                                )
                                .vendor(endpoint.vendor)
                                .operation(endpoint.operation)
                                .http_status(status)
                                .retry_after(secs))
                            }
                            RetryAfter::Implausible(secs) => {
                                return Err(bad_response(
                                    endpoint.vendor,
                                    endpoint.operation,
                                    &url,
                                    &format!("HTTP {status} with Retry-After {secs}"),
                                )
                                .http_status(status))
                            }
                            _ => {}
                        }
                        let wait = retry.delay(attempt, after.wait());
                        if let Some(until) = past_deadline(wait) {
                            let err = Error::new(
                                if status == 429 {
                                    ErrorKind::RateLimited
                                } else {
                                    ErrorKind::Vendor
                                },
                                format!("{} answered HTTP {status}", endpoint.shown),
                            )
                            .vendor(endpoint.vendor)
                            .operation(endpoint.operation)
                            .http_status(status);
                            // As `runner::run`: a wait the vendor asked for is reported at once.
                            return Err(match after.wait() {
                                Some(asked) => err.retry_after(asked.as_secs_f64()),
                                None => reach_deadline(until, err).await,
                            });
                        }
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                        continue;
                    }
                    Err(BodyError::TooLarge { limit }) => {
                        return Err(too_large(
                            endpoint.vendor,
                            endpoint.operation,
                            &reqwest::Method::POST,
                            &url,
                            limit,
                        ))
                    }
                    Err(BodyError::Transport(_)) => Outcome::TransportFailed,
                }
            }
            Err(e) if e.is_connect() => Outcome::ConnectFailed,
            Err(_) => Outcome::TransportFailed,
        };
        let what = if outcome == Outcome::ConnectFailed {
            "could not connect"
        } else {
            "the connection failed or stalled before a whole answer arrived"
        };
        let err = Error::new(
            ErrorKind::Vendor,
            format!(
                "could not reach {} ({}): {what}",
                endpoint.shown, endpoint.operation
            ),
        )
        .vendor(endpoint.vendor)
        .operation(endpoint.operation)
        .code(if outcome == Outcome::ConnectFailed {
            "connect_failed"
        } else {
            "connection_lost"
        });
        if is_retryable(RequestKind::Read, outcome) && attempt < retry.max_retries {
            let wait = retry.delay(attempt, None);
            if let Some(until) = past_deadline(wait) {
                return Err(reach_deadline(until, err).await);
            }
            tokio::time::sleep(wait).await;
            attempt += 1;
            continue;
        }
        return Err(err);
    }
}

/// A token's lifetime in seconds from the answer's `field` (a number, or a number in a string), `default`
/// when absent; a value no server means (negative, not finite, beyond `MAX_TOKEN_LIFETIME_S`) is a
/// `VendorError` (`bad_response`) rather than a panic or a token that never renews.
pub(super) fn token_lifetime(
    answer: &serde_json::Value,
    field: &str,
    default: f64,
    endpoint: &TokenEndpoint<'_>,
) -> Result<f64> {
    let Some(raw) = answer.get(field).filter(|v| !v.is_null()) else {
        return Ok(default);
    };
    let ttl = raw
        .as_f64()
        .or_else(|| raw.as_str().and_then(|s| s.trim().parse().ok()));
    match ttl {
        Some(t) if t.is_finite() && (0.0..=MAX_TOKEN_LIFETIME_S).contains(&t) => Ok(t),
        _ => Err(Error::new(
            ErrorKind::Vendor,
            format!(
                "{} at {} answered {field} = {}, not a lifetime in seconds between 0 and {MAX_TOKEN_LIFETIME_S}",
                endpoint.operation,
                endpoint.shown,
                shorten(&raw.to_string())
            ),
        )
        .vendor(endpoint.vendor)
        .operation(endpoint.operation)
        .code("bad_response")),
    }
}

fn shorten(s: &str) -> String {
    if s.len() <= 40 {
        return s.to_string();
    }
    let mut end = 40;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}
