//! Sama's test hooks (`/_sim/...`): project schemas, callback targets, the callback log, and the
//! sandbox's own settings.

use super::*;

fn sim_error(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "message": message }))).into_response()
}

pub(super) async fn sim_schema(State(a): S, Path(p): Path<String>, body: Bytes) -> Response {
    let Ok(pid) = p.parse::<u64>() else {
        return sim_error("project id must be an integer");
    };
    let schema: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return sim_error(&format!("expected a JSON Schema or null: {e}")),
    };
    let mut st = a.store.lock();
    match st.project_mut(pid) {
        Some(project) => {
            project.schema = (!schema.is_null()).then_some(schema);
            Json(json!({"project_id": pid, "schema_set": project.schema.is_some()})).into_response()
        }
        None => sim_error("no such project"),
    }
}

fn parse_callback(v: &Value) -> Result<Option<Callback>, String> {
    if v.is_null() {
        return Ok(None);
    }
    let text = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("callback {k} is required"))
    };
    let url = text("url")?;
    url::Url::parse(&url).map_err(|e| format!("bad callback url: {e}"))?;
    let auth = match v.get("auth").and_then(Value::as_str).unwrap_or("none") {
        "none" => CallbackAuth::None,
        "basic" => CallbackAuth::Basic {
            username: text("username")?,
            password: text("password")?,
        },
        "access_key" => CallbackAuth::AccessKey(text("access_key")?),
        "token" => CallbackAuth::Token(text("token")?),
        "hmac" => CallbackAuth::Hmac {
            key_id: text("key_id")?,
            secret: text("secret")?,
        },
        other => {
            return Err(format!(
                "unknown auth {other:?}: basic, access_key, token, hmac or none"
            ))
        }
    };
    Ok(Some(Callback { url, auth }))
}

/// `{"creation": {"url", "auth": "basic"|"access_key"|"token"|"hmac"|"none", ...}|null, "delivery": ...,
/// "attempts": 5, "backoff_s": 1.0}`.
pub(super) async fn sim_callbacks(State(a): S, Path(p): Path<String>, body: Bytes) -> Response {
    let Ok(pid) = p.parse::<u64>() else {
        return sim_error("project id must be an integer");
    };
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return sim_error(&format!("expected JSON: {e}")),
    };
    let creation = match v.get("creation").map(parse_callback).transpose() {
        Ok(c) => c,
        Err(m) => return sim_error(&m),
    };
    let delivery = match v.get("delivery").map(parse_callback).transpose() {
        Ok(c) => c,
        Err(m) => return sim_error(&m),
    };
    let now = a.now();
    let mut st = a.store.lock();
    let Some(had_delivery) = st.project(pid).map(|p| p.delivery_callback.is_some()) else {
        return sim_error("no such project");
    };
    if matches!(&delivery, Some(Some(_))) && !had_delivery {
        // A delivery callback covers deliveries from now on: those made before it are not sent (without a
        // delivery callback, `settle` no longer looks at delivered tasks, so it cannot tell them apart).
        for i in 0..st.tasks.len() {
            let t = &st.tasks[i];
            if t.project == pid && st.visible(t, now) && now >= st.deliver_ms(t) {
                let deliver = st.deliver_ms(t);
                st.tasks[i].delivery_notified = Some(deliver);
            }
        }
    }
    let project = st.project_mut(pid).expect("checked above");
    if let Some(c) = creation {
        project.creation_callback = c;
    }
    if let Some(d) = delivery {
        project.delivery_callback = d;
    }
    if let Some(n) = v.get("attempts").and_then(Value::as_u64) {
        project.callback_attempts = n.clamp(1, 100) as u32;
    }
    if let Some(s) = v.get("backoff_s").and_then(Value::as_f64) {
        project.callback_backoff_ms = seconds_to_ms(s.max(0.0)) as u64;
    }
    Json(json!({"project_id": pid, "configured": true})).into_response()
}

pub(super) async fn sim_callback_log(State(a): S) -> Response {
    a.settle();
    let log = a.callback_log.lock();
    Json(json!({"attempts": log.0, "unreachable": log.1})).into_response()
}

/// `{"creation_s": f, "upload_ttl_s": f, "status_rate_limit": bool}`.
pub(super) async fn sim_config(State(a): S, body: Bytes) -> Response {
    let v: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return sim_error(&format!("expected JSON: {e}")),
    };
    let mut st = a.store.lock();
    if let Some(s) = v.get("creation_s").and_then(Value::as_f64) {
        st.config.creation_ms = seconds_to_ms(s.max(0.0));
    }
    if let Some(s) = v.get("upload_ttl_s").and_then(Value::as_f64) {
        st.config.upload_ttl_ms = seconds_to_ms(s.max(0.0));
    }
    if let Some(b) = v.get("status_rate_limit").and_then(Value::as_bool) {
        st.config.status_rate_limit = b;
    }
    Json(json!({
        "creation_s": st.config.creation_ms as f64 / 1000.0,
        "upload_ttl_s": st.config.upload_ttl_ms as f64 / 1000.0,
        "status_rate_limit": st.config.status_rate_limit,
    }))
    .into_response()
}
