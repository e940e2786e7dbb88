//! The HTTP client of one `Client`: one reqwest pool, timeouts, auth, retries, error mapping, redacted logs.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::Method;
use url::Url;

use super::auth::Auth;
use super::error::{Error, ErrorKind, Result};
use super::redact::redact_url;
use super::retry::{is_retryable, parse_retry_after, Outcome, RequestKind, RetryPolicy};

pub const USER_AGENT: &str = concat!("labelport/", env!("CARGO_PKG_VERSION"));

/// The vendor's error body turned into (vendor code, message).
pub type ErrorParser = fn(status: u16, body: &[u8]) -> (Option<String>, Option<String>);

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub vendor: &'static str,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: RetryPolicy,
    /// Certificate authorities trusted besides the system's.
    pub tls_roots: Vec<reqwest::Certificate>,
}

#[derive(Debug, Clone)]
pub enum Body {
    Empty,
    Json(Bytes),
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
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::new(
                ErrorKind::Vendor,
                format!("unexpected answer from {}: {e}", redact_url(&self.url)),
            )
            .vendor(vendor)
            .operation(operation)
            .code("bad_response")
        })
    }
}

pub struct HttpClient {
    inner: reqwest::Client,
    config: HttpConfig,
    auth: Arc<dyn Auth>,
    parse_error: ErrorParser,
}

/// Plain HTTP is refused except to loopback (the sandbox) unless the user says otherwise.
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

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// Redirects are followed only within the origin (scheme, host, port) they started from: a credential in a
/// custom header (`x-api-key`) would otherwise travel to whatever host a redirect names (reqwest strips only
/// `Authorization` and cookies). A cross-origin redirect comes back as the 3xx answer, refused in `send`.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first().map(Url::origin);
        if attempt.previous().len() > 10 {
            attempt.error("more than 10 redirects")
        } else if first.is_some_and(|o| o != attempt.url().origin()) {
            attempt.stop()
        } else {
            attempt.follow()
        }
    })
}

impl HttpClient {
    pub fn new(config: HttpConfig, auth: Arc<dyn Auth>, parse_error: ErrorParser) -> Result<Self> {
        let inner = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .gzip(true)
            .redirect(same_origin_redirects())
            .tls_certs_merge(config.tls_roots.iter().cloned())
            .build()
            .map_err(|e| {
                Error::new(
                    ErrorKind::Vendor,
                    format!("could not build the HTTP client: {e}"),
                )
            })?;
        Ok(HttpClient {
            inner,
            config,
            auth,
            parse_error,
        })
    }

    pub fn vendor(&self) -> &'static str {
        self.config.vendor
    }

    pub fn auth(&self) -> &Arc<dyn Auth> {
        &self.auth
    }

    /// A client without credentials for URLs that must not see them (pre-signed upload and download URLs).
    pub fn raw(&self) -> &reqwest::Client {
        &self.inner
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
        let vendor = self.config.vendor;
        let mut retry = 0u32;
        // A 429 is the vendor pacing us, not failing: its waits have their own, larger budget.
        let mut paced = 0u32;
        let mut renewed = false;
        loop {
            let (rb, generation) = self
                .auth
                .authorize(&self.inner, self.build(req))
                .await
                .map_err(|e| e.in_operation(req.operation))?;
            let started = Instant::now();
            let outcome = match rb.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let headers = resp.headers().clone();
                    match read_body(resp).await {
                        Ok(body) => {
                            log::debug!(
                                target: "labelport::engine::http",
                                "{} {} -> {} ({} bytes, {} ms, attempt {})",
                                req.method,
                                redact_url(&req.url),
                                status,
                                body.len(),
                                started.elapsed().as_millis(),
                                retry + paced + 1
                            );
                            if self.auth.is_rejection(status, &body) {
                                if !renewed && self.auth.renewable() {
                                    // Auth is checked before the vendor does anything, so replaying even a
                                    // create after a refusal cannot create twice.
                                    renewed = true;
                                    self.auth.invalidate(generation);
                                    continue;
                                }
                                let mut err = self.status_error(req, status, &headers, &body);
                                err.kind = ErrorKind::Auth;
                                return Err(err);
                            }
                            if (200..300).contains(&status) {
                                return Ok(Response {
                                    status,
                                    headers,
                                    body,
                                    url: req.url.clone(),
                                });
                            }
                            if (300..400).contains(&status) {
                                return Err(self.redirect_error(req, status, &headers));
                            }
                            let after = headers
                                .get(RETRY_AFTER)
                                .and_then(|v| v.to_str().ok())
                                .and_then(parse_retry_after);
                            if status == 429
                                && after.is_some()
                                && paced < self.config.retry.max_rate_limited
                            {
                                let wait = self.config.retry.delay(paced, after);
                                log::info!(
                                    target: "labelport::engine::retry",
                                    "{} {} rate limited; waiting {:.2} s as asked",
                                    req.method, redact_url(&req.url), wait.as_secs_f64()
                                );
                                tokio::time::sleep(wait).await;
                                paced += 1;
                                continue;
                            }
                            if is_retryable(req.kind, Outcome::Status(status))
                                && retry < self.config.retry.max_retries
                            {
                                let wait = self.config.retry.delay(retry, after);
                                log::info!(
                                    target: "labelport::engine::retry",
                                    "{} {} answered {status}; retry {} in {:.2} s",
                                    req.method, redact_url(&req.url), retry + 1, wait.as_secs_f64()
                                );
                                tokio::time::sleep(wait).await;
                                retry += 1;
                                continue;
                            }
                            return Err(self.status_error(req, status, &headers, &body));
                        }
                        Err(_) => Outcome::TransportFailed,
                    }
                }
                Err(e) if e.is_connect() => Outcome::ConnectFailed,
                Err(e) if e.is_timeout() => {
                    if is_retryable(req.kind, Outcome::TransportFailed)
                        && retry < self.config.retry.max_retries
                    {
                        Outcome::TransportFailed
                    } else {
                        return Err(Error::new(
                            ErrorKind::Timeout,
                            format!(
                                "{} {} got no answer within {:?}",
                                req.method,
                                redact_url(&req.url),
                                self.config.timeout
                            ),
                        )
                        .vendor(vendor)
                        .operation(req.operation)
                        .code("request_timeout"));
                    }
                }
                Err(_) => Outcome::TransportFailed,
            };
            if is_retryable(req.kind, outcome) && retry < self.config.retry.max_retries {
                let wait = self.config.retry.delay(retry, None);
                log::info!(
                    target: "labelport::engine::retry",
                    "{} {} failed ({outcome:?}); retry {} in {:.2} s",
                    req.method, redact_url(&req.url), retry + 1, wait.as_secs_f64()
                );
                tokio::time::sleep(wait).await;
                retry += 1;
                continue;
            }
            let what = match outcome {
                Outcome::ConnectFailed => "could not connect",
                _ => "the connection failed before an answer arrived (the request may or may not have been applied)",
            };
            return Err(Error::new(
                ErrorKind::Vendor,
                format!("{} {}: {what}", req.method, redact_url(&req.url)),
            )
            .vendor(vendor)
            .operation(req.operation)
            .code(if outcome == Outcome::ConnectFailed {
                "connect_failed"
            } else {
                "connection_lost"
            }));
        }
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
        let mut err = Error::new(
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
        .code("cross_origin_redirect");
        err.status = Some(status);
        err
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
            .operation(req.operation);
        err.status = Some(status);
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

/// Reads a body into one buffer sized from `Content-Length` when given: growing a buffer page after page
/// leaves the allocator fragmented on long streams.
async fn read_body(mut resp: reqwest::Response) -> reqwest::Result<Bytes> {
    let Some(len) = resp.content_length() else {
        return resp.bytes().await;
    };
    let mut buf = Vec::with_capacity(len as usize);
    while let Some(chunk) = resp.chunk().await? {
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
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

    fn client() -> HttpClient {
        let auth = StaticKey::new(KeyPlacement::Header("x-api-key"), "s3cret-key", |s, _| {
            s == 401
        });
        let config = HttpConfig {
            vendor: "test",
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            tls_roots: vec![],
        };
        HttpClient::new(config, Arc::new(auth), |_, _| (None, None)).unwrap()
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
        let http = client();

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
