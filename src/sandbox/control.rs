//! `/_sim/...`: test hooks over HTTP, outside every vendor's API path, with no auth and no faults,
//! so a test in another process (or an official SDK's test) can drive the sandbox:
//!
//! - `POST /_sim/advance` `{"seconds": f}`: move the clock.
//! - `POST /_sim/expire-tokens`: every token issued so far answers as expired.
//! - `GET /_sim/stats`: what `Sandbox::stats()` returns.
//! - `POST /_sim/faults` (see `faults::Scripted`) / `DELETE /_sim/faults`: a fault on the next
//!   matching request(s), or forget the scripted ones.
//! - vendor hooks, e.g. Alegion's `POST /_sim/records/{recordId}/status` and
//!   `POST /_sim/batches/{batchId}/status`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::faults::{FaultState, Scripted};
use super::{Routes, Shared, Simulator};

pub fn router(routes: &Routes, shared: Arc<Shared>, sim: Arc<dyn Simulator>) -> Router {
    let s1 = shared.clone();
    let s2 = shared.clone();
    let (f1, f2) = (routes.faults.clone(), routes.faults.clone());
    Router::new()
        .route(
            "/_sim/faults",
            routes.control(
                "/_sim/faults",
                post(move |body: Bytes| async move { script_fault(&f1, &body) }).delete(
                    move || async move {
                        f2.clear_scripted();
                        Json(json!({"cleared": true}))
                    },
                ),
            ),
        )
        .route(
            "/_sim/advance",
            routes.control(
                "/_sim/advance",
                post(move |body: Bytes| async move { advance(&s1, &body) }),
            ),
        )
        .route(
            "/_sim/expire-tokens",
            routes.control(
                "/_sim/expire-tokens",
                post(move || async move {
                    sim.expire_tokens();
                    Json(json!({"expired": true}))
                }),
            ),
        )
        .route(
            "/_sim/stats",
            routes.control(
                "/_sim/stats",
                get(move || async move { Json(s2.stats.snapshot()) }),
            ),
        )
}

fn script_fault(faults: &FaultState, body: &[u8]) -> Response {
    let parsed = serde_json::from_slice::<Value>(body)
        .map_err(|e| e.to_string())
        .and_then(|v| Scripted::from_json(&v));
    match parsed {
        Ok(f) => {
            faults.script(f);
            Json(json!({"scripted": true})).into_response()
        }
        Err(m) => (StatusCode::BAD_REQUEST, Json(json!({ "message": m }))).into_response(),
    }
}

fn advance(shared: &Shared, body: &[u8]) -> Response {
    let seconds = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("seconds").and_then(Value::as_f64));
    match seconds {
        Some(s) if s.is_finite() && s >= 0.0 => {
            shared.clock.advance(s);
            Json(json!({"now": super::clock::iso_ms(shared.clock.now_ms())})).into_response()
        }
        _ => (
            StatusCode::BAD_REQUEST,
            Json(json!({"message": "expected {\"seconds\": <number >= 0>}"})),
        )
            .into_response(),
    }
}
