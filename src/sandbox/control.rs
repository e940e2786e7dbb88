//! `/_sim/...`: test hooks over HTTP, outside every vendor's API path, with no auth and no faults,
//! so a test in another process (or an official SDK's test) can drive the sandbox.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{Routes, Shared, Simulator};

pub fn router(routes: &Routes, shared: Arc<Shared>, sim: Arc<dyn Simulator>) -> Router {
    let s1 = shared.clone();
    let s2 = shared.clone();
    Router::new()
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
