//! The HTTP client of one `Client`: one reqwest pool, timeouts, auth, retries, error mapping, redacted logs.
//!
//! Nothing a server sends is trusted: bodies are read up to `Limits::max_response_bytes` (counted after
//! decompression, never reserved from `Content-Length`), a `Retry-After` beyond `max_retry_after` is reported
//! rather than waited out, and no request leaves the client's origin (scheme, host, port), so credentials
//! never travel to a host a server or a caller named.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::Method;
use url::Url;

use super::auth::Auth;
use super::concurrency::AdaptiveLimit;
use super::error::{Error, ErrorKind, Result};
use super::metrics::{self, Metrics};
use super::rate_limit::RateLimiter;
use super::redact::{redact_secrets, redact_url};
use super::retry::{
    is_retryable, parse_retry_after, read_retry_after, Outcome, RequestKind, RetryAfter,
    RetryPolicy, IMPLAUSIBLE_RETRY_AFTER_SECS,
};
use super::runner::{run, Step, Tries};

pub const USER_AGENT: &str = concat!("labelport/", env!("CARGO_PKG_VERSION"));

/// The vendor's error body turned into (vendor code, message).
pub type ErrorParser = fn(status: u16, body: &[u8]) -> (Option<String>, Option<String>);

/// What one client accepts from a server before it stops with an error instead of using more memory or time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest response body read (after decompression): `max_response_size=`.
    pub max_response_bytes: u64,
    /// The most pages one listing reads: `max_pages=`.
    pub max_pages: u64,
}

/// 512 MiB: far above any page or file the vendors send, far below what would take a notebook down.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 512 * 1024 * 1024;
/// 100,000 pages: 100 million results at Alegion's 1,000 a page.
pub const DEFAULT_MAX_PAGES: u64 = 100_000;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_pages: DEFAULT_MAX_PAGES,
        }
    }
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub vendor: &'static str,
    /// The vendor's base URL: every request must stay on its origin.
    pub base_url: Url,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: RetryPolicy,
    /// Requests per second at most (`rate_limit=`), every attempt counted: first tries, retries, raw reads.
    pub rate_limit: Option<f64>,
    pub limits: Limits,
    /// Certificate authorities trusted besides the system's.
    pub tls_roots: Vec<reqwest::Certificate>,
    /// Added to every refusal of the credentials (`Auth`): which to check and where each came from. Never
    /// holds a secret.
    pub auth_hint: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Body {
    Empty,
    Json(Bytes),
    /// Plain text (`text/plain`): a body that is not JSON, such as TaskMonk's base64 upload.
    Text(Bytes),
    /// One file part of a multipart form, rebuilt for every attempt (reqwest forms cannot be cloned).
    Multipart {
        part: &'static str,
        file_name: String,
        mime: &'static str,
        data: Bytes,
    },
}

#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    pub url: Url,
    pub body: Body,
    pub kind: RequestKind,
    /// The neutral operation this request serves, for errors and logs ("upload", "results", ...).
    pub operation: &'static str,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Request {
    pub fn get(url: Url, operation: &'static str) -> Self {
        Request {
            method: Method::GET,
            url,
            body: Body::Empty,
            kind: RequestKind::Read,
            operation,
            headers: vec![],
        }
    }

    pub fn json<T: serde::Serialize + ?Sized>(
        method: Method,
        url: Url,
        body: &T,
        kind: RequestKind,
        operation: &'static str,
    ) -> Result<Self> {
        let bytes = serde_json::to_vec(body).map_err(|e| {
            Error::invalid(format!("could not encode the request body as JSON: {e}"))
        })?;
        Ok(Request {
            method,
            url,
            body: Body::Json(bytes.into()),
            kind,
            operation,
            headers: vec![],
        })
    }
}

/// `serde_json::from_slice`, faster: a body that is valid UTF-8 (checked once, whole) is read as text, so serde
/// does not check each string again; one that is not gets `from_slice`'s own error, as before.
pub fn json_from_slice<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> serde_json::Result<T> {
    match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str(text),
        Err(_) => serde_json::from_slice(body),
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub url: Url,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self, vendor: &str, operation: &str) -> Result<T> {
        json_from_slice(&self.body).map_err(|e| bad_response(vendor, operation, &self.url, &e))
    }
}

/// A body that is not what the vendor's API sends (not JSON, the wrong shape, nested past serde's limit).
pub fn bad_response(
    vendor: &str,
    operation: &str,
    url: &Url,
    why: &dyn std::fmt::Display,
) -> Error {
    Error::new(
        ErrorKind::Vendor,
        format!("unexpected answer from {}: {why}", redact_url(url)),
    )
    .vendor(vendor)
    .operation(operation)
    .code("bad_response")
}

pub struct HttpClient {
    inner: reqwest::Client,
    /// `inner`'s settings, but no redirect is followed (`raw_unredirected`).
    unredirected: reqwest::Client,
    config: HttpConfig,
    auth: Arc<dyn Auth>,
    parse_error: ErrorParser,
    rate: Option<RateLimiter>,
    /// Told of every 429 and 503, where the adapter adapts its concurrency to them.
    congestion: Option<Arc<AdaptiveLimit>>,
    /// Every attempt of `send`, counted as it ends (`client.metrics()`).
    metrics: Metrics,
}

/// Plain HTTP is refused except to loopback (the sandbox) unless the user says otherwise. (A base URL holding
/// a user name or password never gets here: `vendors/config.rs` `parse_base_url` refuses it.)
pub fn check_scheme(url: &Url, allow_insecure: bool) -> Result<()> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_insecure || is_loopback(url) => Ok(()),
        "http" => Err(Error::invalid(format!(
            "refusing plain http to {}: credentials would travel unencrypted; use https or pass allow_insecure=True",
            url.host_str().unwrap_or("?")
        ))
        .field("base_url")),
        other => Err(Error::invalid(format!("unsupported URL scheme {other:?} in base_url")).field("base_url")),
    }
}

/// Whether `url` is this machine by address (127.0.0.0/8, `::1`) or by the name `localhost` itself: where plain
/// HTTP may carry credentials. Strict on purpose: another name under `.localhost` is resolved by whatever
/// resolver the machine has.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// Whether `url` is on `base`'s origin: the same scheme, host and port. The one test every URL labelport
/// sends credentials to passes (paths given to `request()`, `Link` and `next` URLs, redirects).
pub fn same_origin(url: &Url, base: &Url) -> bool {
    url.origin() == base.origin() && url.origin().is_tuple()
}

/// The URL a caller's `request(method, path)` goes to: `path` under `root` (the vendor's API root, taken as
/// a directory), or under `base` when it starts with `absolute` (a path from the host's root, such as
/// `/api/`). Refused unless it stays on `base`'s origin: `//other-host/x`, `\\other-host\x` and full URLs
/// all name another host, and the credential would go with them.
pub fn request_url(base: &Url, root: &Url, absolute: Option<&str>, path: &str) -> Result<Url> {
    let bad = |why: &str| {
        Error::invalid(format!(
            "request() takes a path on the client's own host ({}), not a full URL or another host: {why}",
            redact_url(&origin_of(base))
        ))
        .field("path")
    };
    if path.contains("://") {
        return Err(bad(
            "a full URL was given; credentials only go to the client's own host",
        ));
    }
    let joined = match absolute {
        Some(prefix) if path.starts_with(prefix) => base.join(path),
        _ => {
            let mut dir = root.clone();
            dir.set_path(&format!("{}/", root.path().trim_end_matches('/')));
            dir.join(path.trim_start_matches('/'))
        }
    };
    let mut url = joined.map_err(|e| bad(&format!("{path:?} is not a valid path ({e})")))?;
    if !same_origin(&url, base) {
        return Err(bad("this path leaves it"));
    }
    url.set_fragment(None);
    Ok(url)
}

/// `url`'s scheme, host and port alone, as it may be shown in an error.
pub fn origin_of(url: &Url) -> Url {
    let mut o = url.clone();
    o.set_path("/");
    o.set_query(None);
    o.set_fragment(None);
    o
}

/// Redirects are followed only within the origin (scheme, host, port) they started from: a credential in a
/// custom header (`x-api-key`) would otherwise travel to whatever host a redirect names (reqwest strips only
/// `Authorization` and cookies). A cross-origin redirect comes back as the 3xx answer, refused in `send`.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first().map(Url::origin);
        if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error(RedirectLoop)
        } else if first.is_some_and(|o| o != attempt.url().origin()) {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

const MAX_REDIRECTS: usize = 10;

#[derive(Debug)]
struct RedirectLoop;

impl std::fmt::Display for RedirectLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "more than {MAX_REDIRECTS} redirects")
    }
}

impl std::error::Error for RedirectLoop {}

/// Why a body could not be read whole.
#[derive(Debug)]
pub enum BodyError {
    /// Longer than the limit (declared by `Content-Length`, or counted while reading, after decompression).
    TooLarge { limit: u64 },
    /// The connection broke, timed out or sent a body that does not decode.
    Transport(reqwest::Error),
}

/// Most of a declared length reserved up front: one buffer instead of one grown page after page, without
/// letting a `Content-Length` alone claim memory.
const MAX_RESERVE: u64 = 64 * 1024 * 1024;

/// Reads a body, stopping as soon as it exceeds `limit` bytes.
pub async fn read_limited(
    mut resp: reqwest::Response,
    limit: u64,
) -> std::result::Result<Bytes, BodyError> {
    let declared = resp.content_length();
    if declared.is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge { limit });
    }
    let reserve = declared.unwrap_or(0).min(limit).min(MAX_RESERVE);
    let mut buf = Vec::with_capacity(reserve as usize);
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if (buf.len() + chunk.len()) as u64 > limit {
            return Err(BodyError::TooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

/// The error for a body over the limit.
pub fn too_large(vendor: &str, operation: &str, method: &Method, url: &Url, limit: u64) -> Error {
    Error::new(
        ErrorKind::Vendor,
        format!(
            "{method} {} answered more than {limit} bytes, the client's max_response_size: labelport stopped \
             reading rather than hold it in memory",
            redact_url(url)
        ),
    )
    .vendor(vendor)
    .operation(operation)
    .code("response_too_large")
}

impl HttpClient {
    pub fn new(config: HttpConfig, auth: Arc<dyn Auth>, parse_error: ErrorParser) -> Result<Self> {
        // Two reqwest clients from one set of transport settings: one follows redirects on the client's
        // origin, the other follows none (a redirect to a signed URL is read, not followed).
        let build = |redirect: reqwest::redirect::Policy| {
            reqwest::Client::builder()
                .user_agent(USER_AGENT)
                .timeout(config.timeout)
                .connect_timeout(config.connect_timeout)
                .pool_idle_timeout(Duration::from_secs(60))
                .gzip(true)
                .redirect(redirect)
                .tls_certs_merge(config.tls_roots.iter().cloned())
                .build()
                .map_err(|e| {
                    Error::new(
                        ErrorKind::Vendor,
                        format!("could not build the HTTP client: {e}"),
                    )
                })
        };
        let inner = build(same_origin_redirects())?;
        let unredirected = build(reqwest::redirect::Policy::none())?;
        Ok(HttpClient {
            inner,
            unredirected,
            rate: config.rate_limit.map(RateLimiter::new),
            config,
            auth,
            parse_error,
            congestion: None,
            metrics: Metrics::default(),
        })
    }

    /// What this client's requests came to so far (`client.metrics()`), with the logins of its auth provider.
    pub fn metrics(&self) -> serde_json::Value {
        self.metrics.snapshot(self.auth.renewals())
    }

    /// Tells `limit` of every 429 and 503 answer `send` reads (the adaptive concurrency's backoff signal).
    pub fn with_congestion(mut self, limit: Arc<AdaptiveLimit>) -> Self {
        self.congestion = Some(limit);
        self
    }

    /// Waits for the rate limit's next slot: before every attempt of `send`, and before every request an
    /// adapter makes through `raw()`.
    pub async fn pace(&self) {
        if let Some(rate) = &self.rate {
            rate.acquire().await;
        }
    }

    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.config.retry
    }

    pub fn vendor(&self) -> &'static str {
        self.config.vendor
    }

    pub fn auth(&self) -> &Arc<dyn Auth> {
        &self.auth
    }

    pub fn limits(&self) -> Limits {
        self.config.limits
    }

    pub fn base_url(&self) -> &Url {
        &self.config.base_url
    }

    /// A client without credentials for URLs that must not see them (pre-signed upload and download URLs).
    /// Read its bodies with `read_limited(resp, self.limits().max_response_bytes)`.
    pub fn raw(&self) -> &reqwest::Client {
        &self.inner
    }

    /// `raw()`, but a redirect is answered, not followed: for a URL whose redirect names a signed URL that
    /// must be fetched without the credentials (Playment's attachments).
    pub fn raw_unredirected(&self) -> &reqwest::Client {
        &self.unredirected
    }

    /// `err` with every secret this client holds (keys, passwords, tokens) replaced by a redaction mark: text
    /// from a vendor may quote the request it refused.
    pub fn scrub(&self, mut err: Error) -> Error {
        let secrets = self.auth.secrets();
        if secrets.is_empty() {
            return err;
        }
        err.message = redact_secrets(&err.message, &secrets);
        for s in [
            &mut err.code,
            &mut err.request_id,
            &mut err.key,
            &mut err.field,
        ]
        .into_iter()
        .flatten()
        {
            *s = redact_secrets(s, &secrets);
        }
        if let Some(d) = &err.details {
            let text = d.to_string();
            let clean = redact_secrets(&text, &secrets);
            if clean != text {
                err.details = serde_json::from_str(&clean).ok();
            }
        }
        err
    }

    fn build(&self, req: &Request) -> reqwest::RequestBuilder {
        let mut rb = self.inner.request(req.method.clone(), req.url.clone());
        for (name, value) in &req.headers {
            rb = rb.header(name, value);
        }
        match &req.body {
            Body::Empty => rb,
            Body::Json(bytes) => rb
                .header(CONTENT_TYPE, "application/json")
                .body(bytes.clone()),
            Body::Text(bytes) => rb.header(CONTENT_TYPE, "text/plain").body(bytes.clone()),
            Body::Multipart {
                part,
                file_name,
                mime,
                data,
            } => {
                let file = reqwest::multipart::Part::stream(data.clone())
                    .file_name(file_name.clone())
                    .mime_str(mime)
                    .expect("static mime types are valid");
                rb.multipart(reqwest::multipart::Form::new().part(*part, file))
            }
        }
    }

    /// Sends `req` with credentials, renewing them once on a refusal and retrying as `retry.rs` allows.
    /// Returns the 2xx answer, or an error naming the operation, the status and the vendor's message.
    pub async fn send(&self, req: &Request) -> Result<Response> {
        self.send_unscrubbed(req)
            .await
            .map_err(|e| self.scrub(self.explain(e)))
    }

    /// A refusal of the credentials says which to check and where they came from (`HttpConfig::auth_hint`).
    pub fn explain(&self, mut err: Error) -> Error {
        if let (ErrorKind::Auth, Some(hint)) = (err.kind, &self.config.auth_hint) {
            // The auth providers' own advice is generic: the hint replaces it.
            let generic = ["check the credentials", "check client_id and client_secret"];
            if let Some(advice) = generic.iter().find(|a| err.message.contains(*a)) {
                err.message = err.message.replacen(advice, hint, 1);
            } else if !err.message.contains(hint.as_str()) {
                // The vendor's own words stay as they were sent.
                err.message = match err.message.trim_end().chars().last() {
                    Some('.' | '!' | '?') => format!("{} ({hint})", err.message.trim_end()),
                    _ => format!("{}; {hint}", err.message),
                };
            }
        }
        err
    }

    async fn send_unscrubbed(&self, req: &Request) -> Result<Response> {
        if !same_origin(&req.url, &self.config.base_url) {
            return Err(Error::new(
                ErrorKind::Vendor,
                format!(
                    "refusing to send credentials to {}: it is not on the vendor's host {}",
                    redact_url(&origin_of(&req.url)),
                    redact_url(&origin_of(&self.config.base_url))
                ),
            )
            .vendor(self.config.vendor)
            .operation(req.operation)
            .code("cross_origin_url"));
        }
        let label = format!("{} {}", req.method, redact_url(&req.url));
        run(&self.config.retry, &label, |tries| self.attempt(req, tries)).await
    }

    /// One try of `req`: waits for the rate limit, authorizes, sends, reads the answer and judges it.
    async fn attempt(&self, req: &Request, tries: Tries) -> Step<Response> {
        self.pace().await;
        let (rb, generation) = match self.auth.authorize(&self.inner, self.build(req)).await {
            Ok(authorized) => authorized,
            Err(e) => return Step::Fail(e.in_operation(req.operation)),
        };
        let started = Instant::now();
        let outcome = match rb.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                match read_limited(resp, self.config.limits.max_response_bytes).await {
                    Ok(body) => {
                        self.count(
                            req,
                            tries,
                            started,
                            metrics::Outcome::Status(status),
                            &headers,
                            body.len(),
                        );
                        log::debug!(
                            target: "labelport::engine::http",
                            "{} {} -> {} ({} bytes, {} ms, attempt {})",
                            req.method,
                            redact_url(&req.url),
                            status,
                            body.len(),
                            started.elapsed().as_millis(),
                            tries.attempt()
                        );
                        let step = self.judge(req, status, headers, body, tries);
                        if matches!(step, Step::Replay) {
                            // Auth is checked before the vendor does anything, so replaying even a create
                            // after a refusal cannot create twice.
                            self.auth.invalidate(generation);
                        }
                        return step;
                    }
                    Err(BodyError::TooLarge { limit }) => {
                        self.count(
                            req,
                            tries,
                            started,
                            metrics::Outcome::Status(status),
                            &headers,
                            0,
                        );
                        return Step::Fail(too_large(
                            self.config.vendor,
                            req.operation,
                            &req.method,
                            &req.url,
                            limit,
                        ));
                    }
                    Err(BodyError::Transport(_)) => {
                        self.count(
                            req,
                            tries,
                            started,
                            metrics::Outcome::Transport,
                            &headers,
                            0,
                        );
                        Outcome::TransportFailed
                    }
                }
            }
            Err(e) => {
                // No answer: counted once, whatever became of the request.
                self.count(
                    req,
                    tries,
                    started,
                    metrics::Outcome::Transport,
                    &HeaderMap::new(),
                    0,
                );
                if e.is_redirect() {
                    return Step::Fail(
                        Error::new(
                            ErrorKind::Vendor,
                            format!(
                                "{} {} redirected more than {MAX_REDIRECTS} times: a redirect loop",
                                req.method,
                                redact_url(&req.url)
                            ),
                        )
                        .vendor(self.config.vendor)
                        .operation(req.operation)
                        .code("redirect_loop"),
                    );
                }
                if e.is_connect() {
                    Outcome::ConnectFailed
                } else if e.is_timeout() {
                    let retryable = is_retryable(req.kind, Outcome::TransportFailed);
                    return Step::retry_if(retryable, self.timeout_error(req));
                } else {
                    Outcome::TransportFailed
                }
            }
        };
        Step::retry_if(
            is_retryable(req.kind, outcome),
            self.transport_error(req, outcome),
        )
    }

    /// Counts one attempt of `req` that ended with `outcome`, `received` body bytes read.
    fn count(
        &self,
        req: &Request,
        tries: Tries,
        started: Instant,
        outcome: metrics::Outcome,
        headers: &HeaderMap,
        received: usize,
    ) {
        let sent = match &req.body {
            Body::Empty => 0,
            Body::Json(b) | Body::Text(b) => b.len(),
            Body::Multipart { data, .. } => data.len(),
        };
        let retry_after = headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after)
            .map(|d| d.as_secs_f64());
        self.metrics.attempt(
            req.operation,
            outcome,
            started.elapsed(),
            sent as u64,
            received as u64,
            tries.attempt() > 1,
            retry_after,
        );
    }

    /// What a whole answer calls for: done, a renewal, a retry after a wait, or an error.
    fn judge(
        &self,
        req: &Request,
        status: u16,
        headers: HeaderMap,
        body: Bytes,
        tries: Tries,
    ) -> Step<Response> {
        if matches!(status, 429 | 503) {
            if let Some(c) = &self.congestion {
                c.overloaded();
            }
        }
        if self.auth.is_rejection(status, &body) {
            if !tries.renewed && self.auth.renewable() {
                return Step::Replay;
            }
            let mut err = self.status_error(req, status, &headers, &body);
            err.kind = ErrorKind::Auth;
            return Step::Fail(err);
        }
        if (200..300).contains(&status) {
            return Step::Done(Response {
                status,
                headers,
                body,
                url: req.url.clone(),
            });
        }
        if (300..400).contains(&status) {
            return Step::Fail(self.redirect_error(req, status, &headers));
        }
        let policy = &self.config.retry;
        let after = read_retry_after(&headers, policy);
        let retryable = is_retryable(req.kind, Outcome::Status(status));
        match after {
            RetryAfter::Implausible(secs) if retryable => {
                return Step::Fail(
                    bad_response(
                        self.config.vendor,
                        req.operation,
                        &req.url,
                        &format!(
                            "HTTP {status} with Retry-After {secs}, not a wait in seconds between 0 and \
                             {IMPLAUSIBLE_RETRY_AFTER_SECS}"
                        ),
                    )
                    .http_status(status),
                )
            }
            RetryAfter::TooLong(secs) if retryable => {
                let mut err = self.status_error(req, status, &headers, &body);
                err.message = format!(
                    "{} (the vendor asked to wait {secs} s before trying again, more than the client's \
                     max_retry_wait of {} s)",
                    err.message,
                    policy.max_retry_after.as_secs_f64()
                );
                return Step::TooLong {
                    error: err.retry_after(secs),
                    wait: Duration::from_secs_f64(secs),
                };
            }
            _ => {}
        }
        let error = self.status_error(req, status, &headers, &body);
        if retryable {
            Step::Retry {
                error,
                after: after.wait(),
                paced: status == 429 && after.wait().is_some(),
            }
        } else {
            Step::Fail(error)
        }
    }

    fn timeout_error(&self, req: &Request) -> Error {
        Error::new(
            ErrorKind::Timeout,
            format!(
                "{} {} got no answer within {:?}",
                req.method,
                redact_url(&req.url),
                self.config.timeout
            ),
        )
        .vendor(self.config.vendor)
        .operation(req.operation)
        .code("request_timeout")
    }

    fn transport_error(&self, req: &Request, outcome: Outcome) -> Error {
        let what = match outcome {
            Outcome::ConnectFailed => "could not connect",
            _ => "the connection failed before an answer arrived (the request may or may not have been applied)",
        };
        Error::new(
            ErrorKind::Vendor,
            format!("{} {}: {what}", req.method, redact_url(&req.url)),
        )
        .vendor(self.config.vendor)
        .operation(req.operation)
        .code(if outcome == Outcome::ConnectFailed {
            "connect_failed"
        } else {
            "connection_lost"
        })
    }

    /// A redirect left unfollowed: it pointed off the origin the request went to.
    fn redirect_error(&self, req: &Request, status: u16, headers: &HeaderMap) -> Error {
        let target = headers
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| req.url.join(l).ok());
        let to = match &target {
            Some(u) => format!("{}://{}", u.scheme(), u.host_str().unwrap_or("?")),
            None => "an unreadable location".to_string(),
        };
        Error::new(
            ErrorKind::Vendor,
            format!(
                "{} {} answered HTTP {status}, a redirect to {to}: labelport follows redirects only on the \
                 vendor's own host, so credentials never leave it",
                req.method,
                redact_url(&req.url)
            ),
        )
        .vendor(self.config.vendor)
        .operation(req.operation)
        .code("cross_origin_redirect")
        .http_status(status)
    }

    fn status_error(&self, req: &Request, status: u16, headers: &HeaderMap, body: &[u8]) -> Error {
        let (code, message) = (self.parse_error)(status, body);
        let kind = match status {
            400 | 422 => ErrorKind::InvalidInput,
            401 | 403 => ErrorKind::Auth,
            404 | 410 => ErrorKind::NotFound,
            409 => ErrorKind::DuplicateRecord,
            429 => ErrorKind::RateLimited,
            _ => ErrorKind::Vendor,
        };
        let message = message.unwrap_or_else(|| {
            format!(
                "{} {} answered HTTP {status}",
                req.method,
                redact_url(&req.url)
            )
        });
        let mut err = Error::new(kind, message)
            .vendor(self.config.vendor)
            .operation(req.operation)
            .http_status(status);
        err.code = code;
        err.request_id = [
            "x-request-id",
            "x-amzn-requestid",
            "x-amz-request-id",
            "request-id",
            "x-correlation-id",
        ]
        .iter()
        .find_map(|h| {
            headers
                .get(*h)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        });
        err
    }
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HttpClient({})", self.config.vendor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::auth::{KeyPlacement, StaticKey};
    use axum::http::{HeaderMap as AxumHeaders, StatusCode};
    use axum::response::{IntoResponse, Redirect};
    use axum::routing::get;
    use std::sync::atomic::{AtomicUsize, Ordering};

    async fn serve(app: axum::Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    fn client(base: &str) -> HttpClient {
        let auth = StaticKey::new(KeyPlacement::Header("x-api-key"), "s3cret-key", |s, _| {
            s == 401
        });
        let config = HttpConfig {
            vendor: "test",
            base_url: Url::parse(base).unwrap(),
            limits: Limits::default(),
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            rate_limit: None,
            tls_roots: vec![],
            auth_hint: None,
        };
        HttpClient::new(config, Arc::new(auth), |_, _| (None, None)).unwrap()
    }

    #[test]
    fn request_paths_stay_on_the_origin() {
        let base = Url::parse("http://127.0.0.1:8080").unwrap();
        let root = Url::parse("http://127.0.0.1:8080/api/v1").unwrap();
        let ok = |p: &str| {
            request_url(&base, &root, Some("/api/"), p)
                .unwrap()
                .to_string()
        };
        assert_eq!(ok("batches"), "http://127.0.0.1:8080/api/v1/batches");
        assert_eq!(
            ok("/batches?x=1#f"),
            "http://127.0.0.1:8080/api/v1/batches?x=1"
        );
        assert_eq!(ok("/api/v2/x"), "http://127.0.0.1:8080/api/v2/x");
        for p in [
            "\\\\127.0.0.1:9999\\x",
            "//127.0.0.1:9999/x",
            "/\\127.0.0.1:9999/x",
            "http://127.0.0.1:9999/x",
            "https://127.0.0.1:8080/x",
            "/api//evil.example/x",
        ] {
            match request_url(&base, &root, Some("/api/"), p) {
                Err(e) => {
                    assert_eq!(e.kind, ErrorKind::InvalidInput, "{p}");
                    assert_eq!(e.field.as_deref(), Some("path"));
                }
                Ok(u) => assert!(same_origin(&u, &base), "{p} went to {u}"),
            }
        }
    }

    #[tokio::test]
    async fn redirects_are_followed_on_the_same_origin_only() {
        // A second origin that counts the requests reaching it, and whether they carried the key.
        static STOLEN: AtomicUsize = AtomicUsize::new(0);
        static REACHED: AtomicUsize = AtomicUsize::new(0);
        let other = serve(axum::Router::new().route(
            "/steal",
            get(|h: AxumHeaders| async move {
                REACHED.fetch_add(1, Ordering::SeqCst);
                if h.contains_key("x-api-key") {
                    STOLEN.fetch_add(1, Ordering::SeqCst);
                }
                "got it"
            }),
        ))
        .await;
        let away = format!("{other}/steal?sig=abc");
        let vendor = serve(
            axum::Router::new()
                .route("/same", get(|| async { Redirect::temporary("/final") }))
                .route(
                    "/final",
                    get(|h: AxumHeaders| async move {
                        let key = h.get("x-api-key").map(|v| v.to_str().unwrap().to_string());
                        (StatusCode::OK, key.unwrap_or_default()).into_response()
                    }),
                )
                .route(
                    "/away",
                    get(move || async move { Redirect::temporary(&away) }),
                ),
        )
        .await;
        let http = client(&vendor);

        let same = Request::get(Url::parse(&format!("{vendor}/same")).unwrap(), "test");
        let resp = http.send(&same).await.unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(&resp.body[..], b"s3cret-key"); // followed, with the key, on the vendor's own host

        let off = Request::get(Url::parse(&format!("{vendor}/away")).unwrap(), "test");
        let err = http.send(&off).await.unwrap_err();
        assert_eq!(err.code.as_deref(), Some("cross_origin_redirect"));
        assert_eq!(err.status, Some(307));
        assert!(
            err.message.contains("a redirect to http://127.0.0.1"),
            "{}",
            err.message
        );
        assert!(
            !err.message.contains("sig=abc") && !err.message.contains("s3cret"),
            "{}",
            err.message
        );
        assert_eq!(
            REACHED.load(Ordering::SeqCst),
            0,
            "the other origin was contacted"
        );
        assert_eq!(STOLEN.load(Ordering::SeqCst), 0);
    }
}
