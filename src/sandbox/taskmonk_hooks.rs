//! The TaskMonk simulator's `/_sim` test hooks (listed in `taskmonk.rs`): ingestion speed and stalls,
//! auto-completion, a project schema, completing a batch, and the state.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::store::{JobKind, TaskStatus};
use super::{bad_request, cell, error, parse_batch_id, OUTPUT_FIELDS, S};

pub(super) async fn sim_ingestion(State(t): S, body: Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut st = t.state.lock();
    if let Some(r) = v.get("rows_per_second").and_then(Value::as_f64) {
        if !(r.is_finite() && r > 0.0) {
            return bad_request("rows_per_second must be > 0");
        }
        st.rows_per_second = r;
    }
    if let Some(s) = v.get("stall").and_then(Value::as_bool) {
        st.stall = s;
    }
    Json(json!({"rows_per_second": st.rows_per_second, "stall": st.stall})).into_response()
}

pub(super) async fn sim_auto_complete(State(t): S, body: Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let Some(enabled) = v.get("enabled").and_then(Value::as_bool) else {
        return bad_request("expected {\"enabled\": bool}");
    };
    t.state.lock().auto_complete = enabled;
    Json(json!({"enabled": enabled})).into_response()
}

pub(super) async fn sim_schema(State(t): S, body: Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let schema = v.get("input_fields").and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect::<Vec<_>>()
    });
    t.state.lock().schema = schema.clone();
    Json(json!({"input_fields": schema})).into_response()
}

pub(super) async fn sim_complete(State(t): S, Path(b): Path<String>, body: Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let outputs = v.get("outputs").and_then(Value::as_object).cloned();
    let now = t.now();
    let Ok(id) = parse_batch_id(&b) else {
        return bad_request("invalid batch id");
    };
    let mut st = t.state.lock();
    let Some(batch) = st.batches.get(&id) else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such batch");
    };
    let open: Vec<u64> = t
        .tasks(&st, batch, now)
        .into_iter()
        .filter(|x| !matches!(x.status, TaskStatus::Completed { .. }))
        .map(|x| x.id)
        .collect();
    let done: Vec<(u64, Map<String, Value>)> = open
        .iter()
        .map(|&task| {
            let mut o = t.seeded_outputs(task);
            if let Some(given) = &outputs {
                o.extend(
                    given
                        .iter()
                        .map(|(k, v)| (k.clone(), Value::String(cell(v)))),
                );
            }
            (task, o)
        })
        .collect();
    let batch = st.batches.get_mut(&id).expect("checked");
    for (task, o) in done {
        batch.manual.insert(task, (now, o));
    }
    Json(json!({"completed": open.len()})).into_response()
}

pub(super) async fn sim_state(State(t): S) -> Response {
    let now = t.now();
    let st = t.state.lock();
    let batches: Vec<Value> = st
        .batches
        .values()
        .map(|b| {
            let tasks = t.tasks(&st, b, now);
            json!({
                "id": b.id.to_string(),
                "name": b.name,
                "state": b.state,
                "input_fields": b.input_fields,
                "imports": b.imports,
                "tasks": tasks.len(),
            })
        })
        .collect();
    let jobs: Vec<Value> = st
        .jobs
        .iter()
        .map(|(id, j)| {
            let (c, total) = t.job_progress(j, now);
            let batch = match &j.kind {
                JobKind::Import { batch, .. } => Some(batch.to_string()),
                JobKind::Output { .. } => None,
            };
            json!({"id": id, "batch": batch, "completed": c, "total": total})
        })
        .collect();
    Json(json!({"batches": batches, "jobs": jobs, "output_fields": OUTPUT_FIELDS.iter().map(|f| f.0).collect::<Vec<_>>()}))
        .into_response()
}
