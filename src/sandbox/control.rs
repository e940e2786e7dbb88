//! `/_sim/...`: test hooks over HTTP, outside every vendor's API path, with no auth and no faults,
//! so a test in another process (or an official SDK's test) can drive the sandbox:
//!
//! - `POST /_sim/advance` `{"seconds": f}`: move the clock.
//! - `POST /_sim/expire-tokens`: every token issued so far answers as expired.
//! - `GET /_sim/stats`: what `Sandbox::stats()` returns.
//! - `POST /_sim/faults` (see `faults::Scripted`) / `DELETE /_sim/faults`: a fault on the next
//!   matching request(s), or forget the scripted ones.
//! - `POST /_sim/quality` `{"accuracy": a, "box_jitter": j}`: labels drawn from a known truth at that
//!   accuracy from now on (see `truth`); `GET` answers the setting (`null`: the seeded labels).
//! - `POST /_sim/truth` `[record, ...]`: each record's true `label` and `box` (`[x1, y1, x2, y2]`).
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
use super::truth::Quality;
use super::{Routes, Shared, Simulator};

pub fn router(routes: &Routes, shared: Arc<Shared>, sim: Arc<dyn Simulator>) -> Router {
    let s1 = shared.clone();
    let s2 = shared.clone();
    let (q1, q2) = (shared.clone(), shared.clone());
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
            "/_sim/quality",
            routes.control(
                "/_sim/quality",
                post(move |body: Bytes| async move { set_quality(&q1, &body) }).get(move || async move {
                    Json(q2.quality.get().map_or(Value::Null, |q| q.to_json()))
                }),
            ),
        )
        .route(
            "/_sim/truth",
            routes.control("/_sim/truth", post(|body: Bytes| async move { truth_of(&body) })),
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

fn set_quality(shared: &Shared, body: &[u8]) -> Response {
    let parsed = serde_json::from_slice::<Value>(body)
        .map_err(|e| e.to_string())
        .and_then(|v| Quality::from_json(&v));
    match parsed {
        Ok(q) => {
            shared.quality.set(q);
            Json(q.to_json()).into_response()
        }
        Err(m) => (StatusCode::BAD_REQUEST, Json(json!({ "message": m }))).into_response(),
    }
}

fn truth_of(body: &[u8]) -> Response {
    use super::truth;
    let records = serde_json::from_slice::<Vec<serde_json::Map<String, Value>>>(body);
    match records {
        Ok(rs) => Json(
            rs.iter()
                .map(|r| {
                    let id = truth::identity(r);
                    json!({"label": truth::CLASSES[truth::true_class(&id)], "box": truth::true_box(&id)})
                })
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"message": format!("expected a list of record objects: {e}")})),
        )
            .into_response(),
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
