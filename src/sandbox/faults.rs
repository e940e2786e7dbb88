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
use sha2::{Digest, Sha256};

use super::conn::ConnInfo;
use super::stats::DroppedConnection;
use super::{Shared, Simulator};

pub struct FaultState {
    shared: Arc<Shared>,
    sim: Arc<dyn Simulator>,
    attempts: Mutex<HashMap<[u8; 32], u32>>,
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
        }
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
        let draw = Sha256::new()
            .chain_update(self.shared.config.seed.to_le_bytes())
            .chain_update(request)
            .chain_update(attempt.to_le_bytes())
            .finalize();
        let u = |i: usize| {
            let word = u64::from_le_bytes(draw[i * 8..i * 8 + 8].try_into().unwrap());
            (word >> 11) as f64 / (1u64 << 53) as f64
        };
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
        let slow_draw = u64::from_le_bytes(Sha256::digest(draw)[..8].try_into().unwrap());
        let slow = ((slow_draw >> 11) as f64 / (1u64 << 53) as f64) < f.slow;
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
    let fate = state.fate(parts.method.as_str(), &target, &bytes);
    let conn = parts.extensions.get::<ConnectInfo<ConnInfo>>().cloned();
    let req = Request::from_parts(parts, Body::from(bytes));

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
        Some(Fault::Reset) => {
            if let Some(ConnectInfo(conn)) = conn {
                conn.kill();
            }
            let mut res = StatusCode::INTERNAL_SERVER_ERROR.into_response();
            res.extensions_mut().insert(DroppedConnection);
            res
        }
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
    use crate::sandbox::{clock::Clock, stats::Stats, Faults, Routes, SandboxConfig};

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
        let shared = Arc::new(Shared {
            config: SandboxConfig {
                seed: 7,
                faults,
                ..Default::default()
            },
            port: 0,
            clock: Clock::new(),
            stats: Stats::new(),
        });
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
