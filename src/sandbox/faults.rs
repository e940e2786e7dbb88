//! Fault injection and fixed latency.
//!
//! Each request's fate is a hash of (seed, method, path and query, body digest, attempt), where
//! `attempt` counts how often that same request was seen before. One shared random stream would make
//! faults depend on the interleaving of concurrent clients; this way a run repeats, and a retry of a
//! faulted request draws anew.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use parking_lot::Mutex;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::conn::ConnInfo;
use super::stats::DroppedConnection;
use super::{Shared, Simulator};

pub struct FaultState {
    shared: Arc<Shared>,
    sim: Arc<dyn Simulator>,
    attempts: Mutex<HashMap<[u8; 32], u32>>,
    scripted: Mutex<Vec<Scripted>>,
}

/// A fault a test asked for on the next matching request(s) (`POST /_sim/faults`), e.g. the
/// AccessDeniedException 500 on the next import, to test a client's re-login and replay.
#[derive(Clone, Debug, PartialEq)]
pub struct Scripted {
    /// Matches any method when `None`.
    method: Option<String>,
    /// A substring of the request path; any path when `None`.
    path: Option<String>,
    /// A substring of the request body; any body when `None` (a vendor refusing one poisoned record).
    body_contains: Option<String>,
    status: StatusCode,
    /// The vendor's error body for `status` when `None`.
    body: Option<Value>,
    retry_after: Option<u64>,
    /// Run the handler first (the write is stored), then answer the fault.
    commit: bool,
    /// Drop the connection instead of answering.
    reset: bool,
    times: u32,
}

impl Scripted {
    /// From `{"status": 500, "body": {...}, "method": "POST", "path": "/records/import",
    /// "body_contains": "poison", "retry_after": 1, "commit": false, "reset": false, "times": 1}`.
    pub fn from_json(v: &Value) -> Result<Scripted, String> {
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let flag = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
        let reset = flag("reset");
        let status = match v.get("status").and_then(Value::as_u64) {
            Some(code) => StatusCode::from_u16(code as u16).map_err(|e| e.to_string())?,
            None if reset => StatusCode::INTERNAL_SERVER_ERROR,
            None => {
                return Err("`status` (an HTTP status code) or `reset: true` is required".into())
            }
        };
        Ok(Scripted {
            method: text("method").map(|m| m.to_ascii_uppercase()),
            path: text("path"),
            body_contains: text("body_contains"),
            status,
            body: v.get("body").cloned(),
            retry_after: v.get("retry_after").and_then(Value::as_u64),
            commit: flag("commit"),
            reset,
            times: v.get("times").and_then(Value::as_u64).unwrap_or(1).max(1) as u32,
        })
    }

    fn matches(&self, method: &str, path: &str, body: &[u8]) -> bool {
        self.method.as_deref().is_none_or(|m| m == method)
            && self.path.as_deref().is_none_or(|p| path.contains(p))
            && self.body_contains.as_deref().is_none_or(|needle| {
                body.windows(needle.len().max(1))
                    .any(|w| w == needle.as_bytes())
            })
    }
}

/// What happens to one request.
#[derive(Debug, Default, PartialEq)]
struct Fate {
    fault: Option<Fault>,
    slow: bool,
}

#[derive(Debug, PartialEq)]
enum Fault {
    RateLimit,
    ServerError,
    Reset,
    CommitThenFail,
}

impl FaultState {
    pub fn new(shared: Arc<Shared>, sim: Arc<dyn Simulator>) -> Self {
        FaultState {
            shared,
            sim,
            attempts: Mutex::new(HashMap::new()),
            scripted: Mutex::new(Vec::new()),
        }
    }

    pub fn script(&self, fault: Scripted) {
        self.scripted.lock().push(fault);
    }

    pub fn clear_scripted(&self) {
        self.scripted.lock().clear();
    }

    /// The first scripted fault matching this request, used up by one.
    fn take_scripted(&self, method: &str, path: &str, body: &[u8]) -> Option<Scripted> {
        let mut list = self.scripted.lock();
        let k = list.iter().position(|f| f.matches(method, path, body))?;
        list[k].times -= 1;
        let fault = list[k].clone();
        if list[k].times == 0 {
            list.remove(k);
        }
        Some(fault)
    }

    fn fate(&self, method: &str, target: &str, body: &[u8]) -> Fate {
        let f = &self.shared.config.faults;
        if f.rate_limit + f.server_error + f.reset + f.commit_then_fail + f.slow <= 0.0 {
            return Fate::default();
        }
        let body_digest = Sha256::digest(body);
        let request: [u8; 32] = Sha256::new()
            .chain_update(method.as_bytes())
            .chain_update([0])
            .chain_update(target.as_bytes())
            .chain_update([0])
            .chain_update(body_digest)
            .finalize()
            .into();
        let attempt = {
            let mut seen = self.attempts.lock();
            let n = seen.entry(request).or_insert(0);
            *n += 1;
            *n - 1
        };
        let draw =
            super::seeded::digest(self.shared.config.seed, &[&request, &attempt.to_le_bytes()]);
        let u = |i: usize| super::seeded::unit(&draw[i * 8..]);
        // Independent draws per kind; when several fire, the earliest in this list wins.
        let fault = [
            (f.rate_limit, Fault::RateLimit),
            (f.server_error, Fault::ServerError),
            (f.reset, Fault::Reset),
            (f.commit_then_fail, Fault::CommitThenFail),
        ]
        .into_iter()
        .enumerate()
        .find(|(i, (p, _))| u(*i) < *p)
        .map(|(_, (_, kind))| kind);
        let slow = super::seeded::unit(&Sha256::digest(draw)) < f.slow;
        Fate { fault, slow }
    }

    fn error(&self, status: StatusCode, message: &str, path: &str) -> Response {
        let body = self.sim.error_body(status, message, path);
        (status, Json(body)).into_response()
    }
}

/// Fixed `latency` plus the faults, for one vendor API route.
pub async fn layer(State(state): State<Arc<FaultState>>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    // Buffered once here for the digest, then handed on.
    let Ok(bytes) = axum::body::to_bytes(body, super::BODY_LIMIT).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let conn = parts.extensions.get::<ConnectInfo<ConnInfo>>().cloned();
    let scripted = state.take_scripted(parts.method.as_str(), &path, &bytes);
    let fate = match scripted {
        Some(_) => Fate::default(),
        None => state.fate(parts.method.as_str(), &target, &bytes),
    };
    let req = Request::from_parts(parts, Body::from(bytes));
    if let Some(f) = scripted {
        delay(&state.shared, false).await;
        return state.scripted_answer(f, req, next, conn).await;
    }

    delay(&state.shared, fate.slow).await;
    match fate.fault {
        None => next.run(req).await,
        Some(Fault::RateLimit) => {
            let mut res = state.error(StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded", &path);
            res.headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
            res
        }
        Some(Fault::ServerError) => state.error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service temporarily unavailable",
            &path,
        ),
        Some(Fault::Reset) => dropped(conn),
        Some(Fault::CommitThenFail) => {
            // The handler runs and stores; its answer is lost.
            let _ = next.run(req).await;
            state.error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal server error",
                &path,
            )
        }
    }
}

/// Drops the connection: the answer returned here is never written (statistics still see it).
fn dropped(conn: Option<ConnectInfo<ConnInfo>>) -> Response {
    if let Some(ConnectInfo(conn)) = conn {
        conn.kill();
    }
    let mut res = StatusCode::INTERNAL_SERVER_ERROR.into_response();
    res.extensions_mut().insert(DroppedConnection);
    res
}

impl FaultState {
    async fn scripted_answer(
        &self,
        f: Scripted,
        req: Request,
        next: Next,
        conn: Option<ConnectInfo<ConnInfo>>,
    ) -> Response {
        let path = req.uri().path().to_string();
        if f.commit {
            let _ = next.run(req).await;
        }
        if f.reset {
            return dropped(conn);
        }
        let body = f.body.unwrap_or_else(|| {
            self.sim.error_body(
                f.status,
                f.status.canonical_reason().unwrap_or("Error"),
                &path,
            )
        });
        let mut res = (f.status, Json(body)).into_response();
        if let Some(s) = f.retry_after {
            res.headers_mut()
                .insert("retry-after", HeaderValue::from(s));
        }
        res
    }
}

/// Fixed `latency` only, for routes exempt from faults (the login endpoint).
pub async fn latency_layer(
    State(shared): State<Arc<Shared>>,
    req: Request,
    next: Next,
) -> Response {
    delay(&shared, false).await;
    next.run(req).await
}

async fn delay(shared: &Shared, slow: bool) {
    let mut seconds = shared.config.latency.unwrap_or(0.0);
    if slow {
        seconds += shared.config.faults.slow_s;
    }
    if seconds > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::{Faults, Routes, SandboxConfig};

    struct Dummy;
    impl Simulator for Dummy {
        fn router(self: Arc<Self>, _: &Routes) -> axum::Router {
            axum::Router::new()
        }
        fn project(&self) -> String {
            String::new()
        }
        fn credentials(&self) -> Vec<(String, String)> {
            vec![]
        }
        fn expire_tokens(&self) {}
        fn error_body(&self, _: StatusCode, _: &str, _: &str) -> serde_json::Value {
            serde_json::Value::Null
        }
    }

    fn state(faults: Faults) -> FaultState {
        let shared = Arc::new(Shared::new(
            SandboxConfig {
                seed: 7,
                faults,
                ..Default::default()
            },
            0,
        ));
        FaultState::new(shared, Arc::new(Dummy))
    }

    #[test]
    fn fates_repeat_across_runs_and_vary_by_attempt() {
        let faults = Faults {
            server_error: 0.5,
            ..Default::default()
        };
        let a = state(faults.clone());
        let b = state(faults);
        let run = |s: &FaultState| {
            (0..40)
                .map(|i| s.fate("POST", "/x", &[i % 4]).fault.is_some())
                .collect::<Vec<_>>()
        };
        let ra = run(&a);
        assert_eq!(ra, run(&b));
        assert!(ra.iter().any(|x| *x) && ra.iter().any(|x| !*x));
    }

    #[test]
    fn probability_one_always_fires() {
        let s = state(Faults {
            reset: 1.0,
            ..Default::default()
        });
        for i in 0..10 {
            assert_eq!(s.fate("GET", "/y", &[i]).fault, Some(Fault::Reset));
        }
    }
}
