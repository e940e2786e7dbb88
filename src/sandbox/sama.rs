//! The Sama Platform API simulator (`api.sama.com/v2`; vendors/sama.md section 6).
//!
//! Sama's model against the neutral one: project = project (seeded: 117 and 118 for the sandbox key,
//! 999 for another customer), Batch = the tasks sharing one `client_batch_id` input value, record = a
//! task's `data`, Job = a batch creation job (create, PUT the tasks file to the upload URL, continue),
//! result = a delivered task with its `answers`.
//!
//! Every `/v2` call needs the `access_key` query parameter; the upload URL (served here at
//! `/_uploads/{token}`, pre-signed S3 style) needs none. Errors are `{"errors":[{"type","message"}]}`.
//! The multi-task status endpoint allows one request per second per key (429 after that). Creation and
//! delivery callbacks are posted to URLs a test configures, with one of the four auth methods and five
//! attempts. Hooks: `POST /_sim/projects/{id}/schema`, `POST /_sim/projects/{id}/callbacks`,
//! `GET /_sim/callbacks`, `POST /_sim/config`.

#![allow(clippy::result_large_err)]

#[cfg(test)]
#[path = "sama_tests.rs"]
mod tests;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put, MethodRouter};
use axum::{Json, Router};
use parking_lot::Mutex;
use serde_json::{json, Map, Value};

use super::clock::{iso_ms, parse_instant_us, seconds_to_ms};
use super::paging::Query;
use super::sama_store::{
    base64, creation_status, hmac_sha256, seeded_hex, validate, Callback, CallbackAuth,
    DeliveredCache, SimBatch, Store, Task, CLIENT_BATCH_INPUT, STATS_KEY_INPUT,
};
use super::{Routes, Shared, Simulator};

/// Inline batch creation takes at most 1,000 tasks.
const INLINE_LIMIT: usize = 1000;
const BATCH_PAGE_MAX: u64 = 1000;
const STATUS_PAGE_MAX: u64 = 100;
const DELIVERED_PAGE_MAX: u64 = 1000;
const TICK: Duration = Duration::from_millis(50);

pub struct SamaSim {
    shared: Arc<Shared>,
    key: String,
    store: Mutex<Store>,
    /// Every callback attempt, and payloads given up on.
    callback_log: Mutex<(Vec<Value>, Vec<Value>)>,
    ticker: AtomicBool,
    http: reqwest::Client,
}

type Answer = Result<Response, Response>;
type S = State<Arc<SamaSim>>;

fn errors(status: StatusCode, kind: Value, message: &str) -> Response {
    (
        status,
        Json(json!({"errors": [{"type": kind, "message": message}]})),
    )
        .into_response()
}

fn bad_request(message: &str) -> Response {
    errors(StatusCode::BAD_REQUEST, json!(400), message)
}

fn not_found() -> Response {
    errors(StatusCode::NOT_FOUND, json!(404), "Not found.")
}

/// A path segment `<id>.json` as its id.
fn strip_json(seg: &str) -> Result<&str, Response> {
    seg.strip_suffix(".json").ok_or_else(not_found)
}

fn parse_id(seg: &str) -> Result<u64, Response> {
    seg.parse().map_err(|_| not_found())
}

fn bool_param(q: &Query, name: &str, default: bool) -> bool {
    match q.get(name).map(|v| v.trim().to_ascii_lowercase()) {
        Some(v) if v == "true" || v == "1" => true,
        Some(v) if v == "false" || v == "0" => false,
        _ => default,
    }
}

/// `page` (1-based) and `page_size` (clamped to `max`; `Some(0)` only where allowed).
fn page_params(q: &Query, default: u64, max: u64) -> (u64, u64) {
    let page = q
        .get("page")
        .and_then(|p| p.trim().parse::<u64>().ok())
        .unwrap_or(1)
        .max(1);
    let size = q
        .get("page_size")
        .and_then(|p| p.trim().parse::<u64>().ok())
        .map(|s| s.min(max))
        .unwrap_or(default);
    (page, size)
}

fn window<T: Clone>(items: &[T], page: u64, size: u64) -> Vec<T> {
    let skip = ((page - 1) * size) as usize;
    items
        .iter()
        .skip(skip)
        .take(size as usize)
        .cloned()
        .collect()
}

/// Comma lists allowed.
fn list_param(q: &Query, name: &str) -> Option<Vec<String>> {
    q.get(name)
        .filter(|v| !v.trim().is_empty())
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
}

fn match_cbid(task_value: Option<&str>, wanted: &[String], match_type: Option<&str>) -> bool {
    let Some(v) = task_value else { return false };
    match match_type.unwrap_or("exact") {
        "contains" => wanted.iter().any(|w| v.contains(w.as_str())),
        _ => wanted.iter().any(|w| w == v),
    }
}

impl SamaSim {
    pub fn new(shared: Arc<Shared>) -> Self {
        let c = &shared.config;
        SamaSim {
            key: format!("sama-sbx-{}", seeded_hex(c.seed, "sama-key", 16)),
            store: Mutex::new(Store::new(c.seed, seconds_to_ms(c.complete_after))),
            callback_log: Mutex::new((Vec::new(), Vec::new())),
            ticker: AtomicBool::new(false),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            shared,
        }
    }

    fn now(&self) -> i64 {
        self.shared.clock.now_ms()
    }

    /// Checks the key and the project; starts the ticker on the first call. Settles first, so the request
    /// sees every creation and delivery that is due.
    fn enter(self: &Arc<Self>, uri: &Uri, project: &str) -> Result<u64, Response> {
        self.start_ticker();
        let q = Query::parse(uri.query());
        if q.get("access_key") != Some(self.key.as_str()) {
            return Err(errors(
                StatusCode::UNAUTHORIZED,
                json!(401),
                "Not authorized.",
            ));
        }
        let pid = parse_id(project)?;
        let accessible = self.store.lock().project(pid).is_some_and(|p| p.accessible);
        if !accessible {
            return Err(not_found());
        }
        self.settle();
        Ok(pid)
    }

    fn start_ticker(self: &Arc<Self>) {
        if self.ticker.swap(true, Ordering::SeqCst) {
            return;
        }
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(TICK).await;
                match me.upgrade() {
                    Some(s) => s.settle(),
                    None => return,
                }
            }
        });
    }

    /// Counts newly created tasks, and sends the creation and delivery callbacks that are due.
    fn settle(self: &Arc<Self>) {
        let now = self.now();
        let mut sends = Vec::new();
        let mut created_keys = Vec::new();
        {
            let mut st = self.store.lock();
            // Tasks before `settled_upto` are settled for good; without a delivery callback anywhere, they need
            // no look (this runs on every request: a scan of 100,000 tasks each time would dominate).
            let deliveries = st.projects.iter().any(|p| p.delivery_callback.is_some());
            let from = if deliveries { 0 } else { st.settled_upto };
            for i in from..st.tasks.len() {
                let t = &st.tasks[i];
                if !t.settled && !t.canceled && now >= t.scheduled_ms {
                    let project = st.project(t.project);
                    let cb = project.and_then(|p| p.creation_callback.clone());
                    let (attempts, backoff) = project
                        .map(|p| (p.callback_attempts, p.callback_backoff_ms))
                        .unwrap_or((5, 1000));
                    if let Some(errs) = &t.errors {
                        if let Some(cb) = cb {
                            let defaults = Store::default_answers(t);
                            let questions: Map<String, Value> = t
                                .data
                                .iter()
                                .filter(|(k, _)| !k.starts_with("output_"))
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect();
                            let message = errs
                                .first()
                                .and_then(|e| e.get("message"))
                                .cloned()
                                .unwrap_or(json!("Task creation failed"));
                            let payload = json!({"success": false, "errors": [{
                                "task_id": t.id, "type": 400, "message": message,
                                "request_data": {"project_id": t.project, "questions": questions,
                                                 "default_answers": defaults, "priority": t.priority}}]});
                            sends.push((cb, "creation", t.id.clone(), payload, attempts, backoff));
                        }
                    } else {
                        created_keys.push(match t.data.get(STATS_KEY_INPUT) {
                            Some(Value::String(s)) => s.clone(),
                            Some(v @ Value::Number(_)) => v.to_string(),
                            _ => t.id.clone(),
                        });
                        if let Some(cb) = cb {
                            let mut task = json!({
                                "id": t.id, "project_id": t.project, "created_at": iso_ms(t.scheduled_ms),
                                "state": st.state(t, now), "data": t.data, "answers": {},
                            });
                            if let Some(o) = task.as_object_mut() {
                                o.insert("batch_id".into(), json!(t.batch));
                            }
                            sends.push((
                                cb,
                                "creation",
                                t.id.clone(),
                                json!({ "task": task }),
                                attempts,
                                backoff,
                            ));
                        }
                    }
                    st.tasks[i].settled = true;
                }
                let t = &st.tasks[i];
                if deliveries && st.visible(t, now) {
                    let deliver = st.deliver_ms(t);
                    if now >= deliver && t.delivery_notified != Some(deliver) {
                        let project = st.project(t.project);
                        if let Some(cb) = project.and_then(|p| p.delivery_callback.clone()) {
                            let p = project.expect("checked");
                            let payload = json!({"task": st.task_json(t, now, true)});
                            sends.push((
                                cb,
                                "delivery",
                                t.id.clone(),
                                payload,
                                p.callback_attempts,
                                p.callback_backoff_ms,
                            ));
                        }
                        st.tasks[i].delivery_notified = Some(deliver);
                    }
                }
            }
            while st
                .tasks
                .get(st.settled_upto)
                .is_some_and(|t| t.settled || t.canceled)
            {
                st.settled_upto += 1;
            }
        }
        if !created_keys.is_empty() {
            self.shared
                .stats
                .created(created_keys.iter().map(String::as_str));
        }
        for (cb, kind, task_id, payload, attempts, backoff) in sends {
            let me = self.clone();
            tokio::spawn(async move {
                me.post_callback(cb, kind, task_id, payload, attempts, backoff)
                    .await
            });
        }
    }

    /// Posts one payload: up to `attempts` tries, waiting `backoff * 2^n` between them.
    async fn post_callback(
        self: Arc<Self>,
        cb: Callback,
        kind: &'static str,
        task_id: String,
        payload: Value,
        attempts: u32,
        backoff_ms: u64,
    ) {
        let body = serde_json::to_vec(&payload).unwrap_or_default();
        let mut url = match url::Url::parse(&cb.url) {
            Ok(u) => u,
            Err(_) => return,
        };
        if let CallbackAuth::AccessKey(k) = &cb.auth {
            url.query_pairs_mut().append_pair("access_key", k);
        }
        for attempt in 1..=attempts.max(1) {
            let mut rb = self
                .http
                .post(url.clone())
                .header("content-type", "application/json")
                .body(body.clone());
            match &cb.auth {
                CallbackAuth::Basic { username, password } => {
                    rb = rb.header(
                        "authorization",
                        format!(
                            "Basic {}",
                            base64(format!("{username}:{password}").as_bytes())
                        ),
                    );
                }
                CallbackAuth::Token(t) => rb = rb.header("x-auth-token", t),
                CallbackAuth::Hmac { key_id, secret } => {
                    let date = chrono::Utc::now()
                        .format("%a, %d %b %Y %H:%M:%S GMT")
                        .to_string();
                    let target = match url.query() {
                        Some(q) => format!("{}?{q}", url.path()),
                        None => url.path().to_string(),
                    };
                    let mut to_sign = format!("POST\n{target}\n{date}\n").into_bytes();
                    to_sign.extend_from_slice(&body);
                    let sig = base64(&hmac_sha256(secret.as_bytes(), &to_sign));
                    rb = rb
                        .header("x-wsm-date", date)
                        .header("authorization", format!("HMAC-SHA256 {key_id}:{sig}"));
                }
                CallbackAuth::AccessKey(_) | CallbackAuth::None => {}
            }
            let (status, reply, error) = match rb.send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let text = r.bytes().await.unwrap_or_default();
                    (Some(status), text, None)
                }
                Err(e) => (None, Bytes::new(), Some(e.to_string())),
            };
            let ok = status.is_some_and(|s| (200..300).contains(&s));
            self.callback_log.lock().0.push(json!({
                "kind": kind, "task_id": task_id, "attempt": attempt, "status": status,
                "ok": ok, "error": error,
            }));
            if ok {
                if kind == "delivery" {
                    self.after_delivery_callback(&task_id, &reply);
                }
                return;
            }
            if attempt < attempts {
                let wait = backoff_ms.saturating_mul(1 << (attempt - 1).min(20));
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
        }
        self.callback_log.lock().1.push(json!({
            "kind": kind, "task_id": task_id, "payload": payload,
        }));
    }

    /// A 2xx acknowledges the delivery; `{"reject": true, "reasons": [...]}` in it rejects the task instead
    /// (the rejection format is ours: Sama's is not public).
    fn after_delivery_callback(&self, task_id: &str, reply: &[u8]) {
        let now = self.now();
        let mut st = self.store.lock();
        let Some(&i) = st.by_id.get(task_id) else {
            return;
        };
        let reply: Value = serde_json::from_slice(reply).unwrap_or(Value::Null);
        if reply.get("reject").and_then(Value::as_bool) == Some(true) {
            let reasons = reply
                .get("reasons")
                .and_then(Value::as_array)
                .map(|rs| {
                    rs.iter()
                        .filter_map(|r| r.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            st.task_mut(i).rejected = Some((now, reasons));
        } else {
            let deliver = st.deliver_ms(&st.tasks[i]);
            st.task_mut(i).acknowledged = Some(deliver);
        }
    }

    fn project_schema(st: &Store, pid: u64) -> Value {
        if let Some(s) = st.project(pid).and_then(|p| p.schema.clone()) {
            return s;
        }
        let p = st.project(pid).expect("checked project");
        let mut props = Map::new();
        for (name, values) in &p.outputs {
            props.insert(
                format!("output_{name}"),
                json!({"type": "string", "enum": values}),
            );
        }
        props.insert(
            CLIENT_BATCH_INPUT.into(),
            json!({"type": "string", "description": "the client batch id"}),
        );
        json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "title": format!("{} task creation", p.name),
            "type": "object",
            "properties": props,
            "additionalProperties": {"type": ["string", "number"]},
        })
    }

    /// Per-task creation errors, or `None` when the task can be created.
    fn creation_errors(st: &Store, pid: u64, data: &Value) -> Option<Vec<Value>> {
        let p = st.project(pid)?;
        let Some(obj) = data.as_object() else {
            return Some(vec![
                json!({"type": "InvalidInputSchema", "message": "The task input does not match the project schema: data must be an object"}),
            ]);
        };
        let bad_outputs: Vec<&str> = obj
            .keys()
            .filter_map(|k| k.strip_prefix("output_"))
            .filter(|n| !p.outputs.iter().any(|(o, _)| o == n))
            .collect();
        if !bad_outputs.is_empty() {
            return Some(vec![
                json!({"type": 400, "message": format!("Invalid seeded output name(s): {}", bad_outputs.join(", "))}),
            ]);
        }
        let mut problems = Vec::new();
        validate(&Self::project_schema(st, pid), data, "", &mut problems);
        if problems.is_empty() {
            return None;
        }
        Some(
            problems
                .into_iter()
                .map(|(field, m)| json!({"type": "InvalidInputSchema", "field": field,
                    "message": format!("The task input does not match the project schema: {field} {m}")}))
                .collect(),
        )
    }

    /// Turns the tasks of a batch into scheduled tasks, spread over the creation time.
    fn start_creation(st: &mut Store, bid: u64, items: Vec<Value>, now: i64) -> Vec<String> {
        let n = items.len() as i64;
        let span = st.config.creation_ms;
        let pid = st.batches[&bid].project;
        let mut ids = Vec::new();
        for (k, item) in items.into_iter().enumerate() {
            let data = item.get("data").cloned().unwrap_or(Value::Null);
            let errors = Self::creation_errors(st, pid, &data);
            let id = st.new_task_id();
            let priority = item.get("priority").and_then(Value::as_i64).unwrap_or(0);
            let submit = item.get("submit").and_then(Value::as_bool).unwrap_or(false);
            let task = Task {
                id: id.clone(),
                project: pid,
                batch: bid,
                data: data.as_object().cloned().unwrap_or_default(),
                priority,
                submit,
                scheduled_ms: now + span * (k as i64 + 1) / n.max(1),
                errors,
                canceled: false,
                deleted: false,
                rejected: None,
                acknowledged: None,
                settled: false,
                delivery_notified: None,
            };
            let i = st.tasks.len();
            st.by_id.insert(id.clone(), i);
            st.tasks.push(task);
            st.batches.get_mut(&bid).expect("batch").entries.push(i);
            ids.push(id);
        }
        let b = st.batches.get_mut(&bid).expect("batch");
        b.continued_ms = Some(now);
        b.messages
            .push(format!("Creating {n} tasks from {}", b.tasks_file_name));
        ids
    }

    fn upload_url(&self, headers: &HeaderMap, b: &SimBatch) -> String {
        let host = headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .unwrap_or_else(|| format!("127.0.0.1:{}", self.shared.port));
        format!(
            "http://{host}/_uploads/{}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires={}&X-Amz-Signature={}",
            b.token,
            (b.upload_expires_ms - b.created_ms) / 1000,
            b.signature
        )
    }

    fn tasks_page(&self, st: &Store, matching: Vec<usize>, now: i64, answers: bool) -> Vec<Value> {
        matching
            .into_iter()
            .map(|i| st.task_json(&st.tasks[i], now, answers))
            .collect()
    }

    /// Delivered tasks of a project matching the filters, ordered by (delivery time, id). The answer is
    /// kept and reused while nothing it depends on changes (no task changed, none added, and the clock has
    /// not reached the next task's delivery): paging through 100,000 delivered tasks would otherwise
    /// filter and sort the whole project once per page.
    #[allow(clippy::too_many_arguments)]
    fn delivered(
        st: &mut Store,
        pid: u64,
        now: i64,
        batch_ids: Option<&[String]>,
        cbids: Option<&[String]>,
        match_type: Option<&str>,
        task_ids: Option<&[String]>,
        from_us: Option<i64>,
    ) -> Arc<Vec<(i64, usize)>> {
        let key = format!("{pid}|{batch_ids:?}|{cbids:?}|{match_type:?}|{task_ids:?}|{from_us:?}");
        if let Some(list) = st.delivered_cache.as_ref().and_then(|c| {
            (c.key == key
                && c.generation == st.generation
                && c.tasks_len == st.tasks.len()
                && (c.computed_at..c.valid_until).contains(&now))
            .then(|| c.list.clone())
        }) {
            return list;
        }
        let mut valid_until = i64::MAX;
        let mut out: Vec<(i64, usize)> = Vec::new();
        for (i, t) in st.tasks.iter().enumerate() {
            if t.project != pid
                || t.canceled
                || t.deleted
                || t.errors.is_some()
                || batch_ids.is_some_and(|b| !b.contains(&t.batch.to_string()))
                || task_ids.is_some_and(|ids| !ids.contains(&t.id))
                || cbids.is_some_and(|c| {
                    !match_cbid(Store::client_batch_id_ref(t).as_deref(), c, match_type)
                })
            {
                continue;
            }
            let deliver = st.deliver_ms(t);
            if from_us.is_some_and(|f| deliver * 1000 < f) {
                continue;
            }
            // Delivered (or acknowledged) once the clock has passed both its scheduling and its delivery.
            let delivered_from = deliver.max(t.scheduled_ms);
            if now >= delivered_from {
                out.push((deliver, i));
            } else {
                valid_until = valid_until.min(delivered_from);
            }
        }
        // (delivery time, id) is unique per task: an unstable sort gives the same order, faster.
        out.sort_unstable_by(|a, b| (a.0, &st.tasks[a.1].id).cmp(&(b.0, &st.tasks[b.1].id)));
        let list = Arc::new(out);
        st.delivered_cache = Some(DeliveredCache {
            key,
            generation: st.generation,
            tasks_len: st.tasks.len(),
            computed_at: now,
            valid_until,
            list: list.clone(),
        });
        list
    }
}

// ---- handlers ----------------------------------------------------------------------------------

async fn project_info(State(a): S, Path(p): Path<String>, uri: Uri) -> Answer {
    let pid = a.enter(&uri, strip_json(&p)?)?;
    let st = a.store.lock();
    let p = st.project(pid).expect("checked");
    Ok(Json(json!({
        "id": p.id, "name": p.name, "state": "active", "type": "image",
        "asset_country_code": "US", "project_group": "labelport sandbox",
        "description": "Classify the vehicle in each image", "client": "labelport sandbox",
        "asset_s3_url": format!("s3://sama-client-assets/{}/", p.id),
    }))
    .into_response())
}

async fn create_schema(State(a): S, Path(p): Path<String>, uri: Uri) -> Answer {
    let pid = a.enter(&uri, &p)?;
    let st = a.store.lock();
    Ok(Json(SamaSim::project_schema(&st, pid)).into_response())
}

async fn deliver_schema(State(a): S, Path(p): Path<String>, uri: Uri) -> Answer {
    let pid = a.enter(&uri, &p)?;
    let st = a.store.lock();
    let inputs = SamaSim::project_schema(&st, pid);
    let project = st.project(pid).expect("checked");
    let mut outputs = Map::new();
    for (name, values) in &project.outputs {
        outputs.insert(
            name.to_string(),
            json!({"type": "string", "enum": values, "examples": [values[0]]}),
        );
    }
    Ok(Json(json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": {
            "id": {"type": "string"}, "project_id": {"type": "integer"}, "batch_id": {"type": "integer"},
            "client_batch_id": {"type": ["string", "null"]}, "created_at": {"type": "string"},
            "state": {"type": "string"}, "data": inputs,
            "answers": {"type": "object", "properties": outputs},
        },
    }))
    .into_response())
}

async fn create_batch(
    State(a): S,
    Path(p): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let pid = a.enter(&uri, &p)?;
    let req: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| bad_request(&format!("Invalid JSON body: {e}")))?
    };
    let now = a.now();
    let mut st = a.store.lock();
    let inline = match req.get("tasks") {
        None | Some(Value::Null) => None,
        Some(Value::Array(ts)) => {
            if ts.len() > INLINE_LIMIT {
                return Err(bad_request(&format!(
                    "A batch can have at most {INLINE_LIMIT} tasks; use the tasks file upload for more"
                )));
            }
            for (i, t) in ts.iter().enumerate() {
                let data = t.get("data").cloned().unwrap_or(Value::Null);
                if let Some(errs) = SamaSim::creation_errors(&st, pid, &data) {
                    let first = errs[0]["message"].as_str().unwrap_or("").to_string();
                    return Err(errors(
                        StatusCode::BAD_REQUEST,
                        json!("InvalidInputSchema"),
                        &format!("Task {i}: {first}"),
                    ));
                }
            }
            Some(ts.clone())
        }
        Some(_) => return Err(bad_request("tasks must be an array")),
    };
    let bid = st.next_batch;
    st.next_batch += 1;
    let token = seeded_hex(st.seed ^ bid, "sama-upload-token", 16);
    let signature = seeded_hex(st.seed ^ bid, "sama-upload-signature", 32);
    let b = SimBatch {
        id: bid,
        project: pid,
        created_ms: now,
        token: token.clone(),
        signature,
        upload_expires_ms: now + st.config.upload_ttl_ms,
        uploaded: None,
        tasks_file_name: req
            .get("tasks_file_name")
            .and_then(Value::as_str)
            .unwrap_or("from_api")
            .to_string(),
        notification_email: req
            .get("notification_email")
            .and_then(Value::as_str)
            .map(str::to_string),
        continued_ms: None,
        canceled_ms: None,
        entries: vec![],
        messages: vec![],
    };
    st.uploads.insert(token, bid);
    st.batches.insert(bid, b);
    match inline {
        Some(tasks) => {
            let ids = SamaSim::start_creation(&mut st, bid, tasks, now);
            drop(st);
            a.settle();
            Ok(Json(json!({"batch_id": bid, "task_ids": ids})).into_response())
        }
        None => {
            let url = a.upload_url(&headers, &st.batches[&bid]);
            Ok(Json(json!({"batch_id": bid, "tasks_put_url": url})).into_response())
        }
    }
}

async fn upload_file(State(a): S, Path(token): Path<String>, uri: Uri, body: Bytes) -> Response {
    let q = Query::parse(uri.query());
    let now = a.now();
    let mut st = a.store.lock();
    let denied = || {
        (
            StatusCode::FORBIDDEN,
            [("content-type", "application/xml")],
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code><Message>Request has expired or the signature does not match</Message></Error>",
        )
            .into_response()
    };
    let Some(&bid) = st.uploads.get(&token) else {
        return denied();
    };
    let b = st.batches.get_mut(&bid).expect("batch of upload");
    if now > b.upload_expires_ms || q.get("X-Amz-Signature") != Some(b.signature.as_str()) {
        return denied();
    }
    if b.continued_ms.is_none() {
        b.uploaded = Some(body.clone());
    }
    let etag = format!(
        "\"{}\"",
        hex::encode(&<sha2::Sha256 as sha2::Digest>::digest(&body)[..16])
    );
    let mut res = StatusCode::OK.into_response();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        res.headers_mut().insert("etag", v);
    }
    res
}

async fn continue_batch(State(a): S, Path((p, b)): Path<(String, String)>, uri: Uri) -> Answer {
    let pid = a.enter(&uri, &p)?;
    let bid = parse_id(&b)?;
    let now = a.now();
    let mut st = a.store.lock();
    let batch = st
        .batches
        .get(&bid)
        .filter(|x| x.project == pid)
        .ok_or_else(not_found)?;
    if batch.continued_ms.is_some() || batch.canceled_ms.is_some() {
        return Err(bad_request(&format!(
            "Batch {bid} is not waiting for a tasks file"
        )));
    }
    let Some(file) = batch.uploaded.clone() else {
        return Err(bad_request(&format!(
            "No tasks file was uploaded for batch {bid}"
        )));
    };
    let items: Vec<Value> = match serde_json::from_slice::<Value>(&file) {
        Ok(Value::Array(items)) => items,
        _ => {
            return Err(bad_request(
                "The tasks file must be a JSON array of tasks ({\"data\": {...}})",
            ))
        }
    };
    SamaSim::start_creation(&mut st, bid, items, now);
    drop(st);
    a.settle();
    Ok(Json(json!({"batch_id": bid})).into_response())
}

async fn cancel_batch(State(a): S, Path((p, b)): Path<(String, String)>, uri: Uri) -> Answer {
    let pid = a.enter(&uri, &p)?;
    let bid = parse_id(&b)?;
    let now = a.now();
    let mut st = a.store.lock();
    let batch = st
        .batches
        .get(&bid)
        .filter(|x| x.project == pid)
        .ok_or_else(not_found)?;
    let (state, _) = st.batch_summary(batch, now);
    if !matches!(state, "waiting" | "processing") {
        return Err(bad_request(&format!(
            "Batch {bid} creation is already {state}"
        )));
    }
    let entries = batch.entries.clone();
    let mut canceled = 0u64;
    for i in entries {
        if now < st.tasks[i].scheduled_ms {
            st.task_mut(i).canceled = true;
            canceled += 1;
        }
    }
    let b = st.batches.get_mut(&bid).expect("batch");
    b.canceled_ms = Some(now);
    b.messages
        .push(format!("Canceled: {canceled} tasks were not created"));
    Ok(
        Json(json!({"batch_id": bid, "state": "canceled", "canceled_count": canceled}))
            .into_response(),
    )
}

async fn batch_status(State(a): S, Path((p, b)): Path<(String, String)>, uri: Uri) -> Answer {
    let pid = a.enter(&uri, &p)?;
    let bid = parse_id(strip_json(&b)?)?;
    let q = Query::parse(uri.query());
    let omit_failed = bool_param(&q, "omit_failed_task_data", false);
    let (page, size) = page_params(&q, BATCH_PAGE_MAX, BATCH_PAGE_MAX);
    let now = a.now();
    let st = a.store.lock();
    let batch = st
        .batches
        .get(&bid)
        .filter(|x| x.project == pid)
        .ok_or_else(not_found)?;
    let (state, [n, created, failed, canceled]) = st.batch_summary(batch, now);
    let mut out = json!({
        "batch_id": batch.id, "project_id": pid, "state": state,
        "tasks_file_name": batch.tasks_file_name, "notification_email": batch.notification_email,
        "created_at": iso_ms(batch.created_ms),
        "tasks_count": n, "created_count": created, "failed_count": failed, "canceled_count": canceled,
        "messages": batch.messages,
    });
    if size > 0 {
        let tasks: Vec<Value> = window(&batch.entries, page, size)
            .into_iter()
            .map(|i| {
                let t = &st.tasks[i];
                let status = creation_status(batch, t, now);
                let mut e = json!({"id": t.id, "status": status});
                if matches!(status, "failed" | "canceled") && !omit_failed {
                    e["data"] = Value::Object(t.data.clone());
                }
                if status == "failed" {
                    e["errors"] = json!(t.errors);
                }
                e
            })
            .collect();
        out["tasks"] = json!(tasks);
    }
    Ok(Json(out).into_response())
}

async fn task_status(State(a): S, Path((p, t)): Path<(String, String)>, uri: Uri) -> Answer {
    let pid = a.enter(&uri, &p)?;
    let tid = strip_json(&t)?;
    let now = a.now();
    let st = a.store.lock();
    let &i = st.by_id.get(tid).ok_or_else(not_found)?;
    let task = &st.tasks[i];
    if task.project != pid || !st.visible(task, now) {
        return Err(not_found());
    }
    Ok(Json(json!({"task": st.task_json(task, now, true)})).into_response())
}

async fn multi_status(State(a): S, Path(p): Path<String>, uri: Uri) -> Answer {
    let pid = a.enter(&uri, &p)?;
    let q = Query::parse(uri.query());
    let now = a.now();
    let mut st = a.store.lock();
    if st.config.status_rate_limit {
        let at = std::time::Instant::now();
        if st
            .last_status_call
            .is_some_and(|last| at.duration_since(last) < Duration::from_secs(1))
        {
            let mut res = errors(
                StatusCode::TOO_MANY_REQUESTS,
                json!(429),
                "Rate limit exceeded: 1 request per second",
            );
            res.headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
            return Err(res);
        }
        st.last_status_call = Some(at);
    }
    let (page, size) = page_params(&q, STATUS_PAGE_MAX, STATUS_PAGE_MAX);
    let size = size.max(1);
    let omit_answers = bool_param(&q, "omit_answers", true);
    let batch_ids = list_param(&q, "batch_id");
    let cbids = list_param(&q, "client_batch_id");
    let match_type = q.get("client_batch_id_match_type");
    let task_ids = list_param(&q, "task_id").or_else(|| list_param(&q, "task_ids"));
    let state = q.get("state").map(|s| s.trim().to_ascii_lowercase());
    let date_type = q.get("date_type").unwrap_or("created_at");
    let from = match q.get("from") {
        Some(v) if !v.is_empty() => {
            Some(parse_instant_us(v).ok_or_else(|| bad_request(&format!("Invalid from: {v}")))?)
        }
        _ => None,
    };
    let to = match q.get("to") {
        Some(v) if !v.is_empty() => {
            Some(parse_instant_us(v).ok_or_else(|| bad_request(&format!("Invalid to: {v}")))?)
        }
        _ => None,
    };
    let matching: Vec<usize> = (0..st.tasks.len())
        .filter(|&i| {
            let t = &st.tasks[i];
            if t.project != pid || !st.visible(t, now) {
                return false;
            }
            if batch_ids
                .as_ref()
                .is_some_and(|b| !b.contains(&t.batch.to_string()))
            {
                return false;
            }
            if cbids
                .as_ref()
                .is_some_and(|c| !match_cbid(Store::client_batch_id(t).as_deref(), c, match_type))
            {
                return false;
            }
            if task_ids.as_ref().is_some_and(|ids| !ids.contains(&t.id)) {
                return false;
            }
            if state.as_deref().is_some_and(|s| s != st.state(t, now)) {
                return false;
            }
            let when_ms = match date_type {
                "delivered_at" | "completion_date" => st.deliver_ms(t),
                "updated_at" => t.rejected.as_ref().map(|r| r.0).unwrap_or(t.scheduled_ms),
                _ => t.scheduled_ms,
            } * 1000;
            from.is_none_or(|f| when_ms >= f) && to.is_none_or(|x| when_ms <= x)
        })
        .collect();
    let tasks = a.tasks_page(&st, window(&matching, page, size), now, !omit_answers);
    st.last_status_call = Some(std::time::Instant::now());
    Ok(Json(json!({ "tasks": tasks })).into_response())
}

async fn delivered_get(State(a): S, Path(p): Path<String>, uri: Uri) -> Answer {
    let pid = a.enter(&uri, &p)?;
    let q = Query::parse(uri.query());
    let from = match q.get("from") {
        Some(v) if !v.is_empty() => {
            Some(parse_instant_us(v).ok_or_else(|| bad_request(&format!("Invalid from: {v}")))?)
        }
        _ => None,
    };
    let (page, size) = page_params(&q, DELIVERED_PAGE_MAX, DELIVERED_PAGE_MAX);
    let size = size.max(1);
    let now = a.now();
    let mut st = a.store.lock();
    let (b, c, t) = (
        list_param(&q, "batch_id"),
        list_param(&q, "client_batch_id"),
        list_param(&q, "task_id"),
    );
    let all = SamaSim::delivered(
        &mut st,
        pid,
        now,
        b.as_deref(),
        c.as_deref(),
        q.get("client_batch_id_match_type"),
        t.as_deref(),
        from,
    );
    let page = window(&all, page, size);
    let mut body = Vec::with_capacity(16 + page.len() * 512);
    body.extend_from_slice(b"{\"tasks\":[");
    for (n, (_, i)) in page.into_iter().enumerate() {
        if n > 0 {
            body.push(b',');
        }
        st.write_task_json(&mut body, &st.tasks[i], now, true);
    }
    body.extend_from_slice(b"]}");
    Ok(([(CONTENT_TYPE, "application/json")], body).into_response())
}

/// Consumer mode: deliveries this consumer has not been given yet; `page`/`page_size` are ignored.
async fn delivered_post(State(a): S, Path(p): Path<String>, uri: Uri, body: Bytes) -> Answer {
    let pid = a.enter(&uri, &p)?;
    let req: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| bad_request(&format!("Invalid JSON body: {e}")))?
    };
    let text_list = |k: &str| -> Option<Vec<String>> {
        match req.get(k) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.split(',').map(|x| x.trim().to_string()).collect()),
            Some(v) => Some(vec![v.to_string()]),
        }
    };
    let consumer = req
        .get("consumer")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let limit = req
        .get("limit")
        .and_then(Value::as_u64)
        .unwrap_or(DELIVERED_PAGE_MAX)
        .clamp(1, DELIVERED_PAGE_MAX) as usize;
    let now = a.now();
    let mut st = a.store.lock();
    let (b, c) = (text_list("batch_id"), text_list("client_batch_id"));
    let all = SamaSim::delivered(
        &mut st,
        pid,
        now,
        b.as_deref(),
        c.as_deref(),
        req.get("client_batch_id_match_type")
            .and_then(Value::as_str),
        None,
        None,
    );
    let seen = st
        .consumers
        .remove(&(pid, consumer.clone()))
        .unwrap_or_default();
    let fresh: Vec<(i64, usize)> = all
        .iter()
        .copied()
        .filter(|(d, i)| !seen.contains(&(*i, *d)))
        .take(limit)
        .collect();
    let mut seen: HashSet<(usize, i64)> = seen;
    let tasks: Vec<Value> = fresh
        .iter()
        .map(|&(d, i)| {
            seen.insert((i, d));
            st.task_json(&st.tasks[i], now, true)
        })
        .collect();
    st.consumers.insert((pid, consumer), seen);
    Ok(Json(json!({ "tasks": tasks })).into_response())
}

async fn reject_task(
    State(a): S,
    Path((p, t)): Path<(String, String)>,
    uri: Uri,
    body: Bytes,
) -> Answer {
    let pid = a.enter(&uri, &p)?;
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let reasons: Vec<String> = req
        .get("reasons")
        .and_then(Value::as_array)
        .map(|rs| {
            rs.iter()
                .filter_map(|r| r.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let now = a.now();
    let mut st = a.store.lock();
    let &i = st.by_id.get(&t).ok_or_else(not_found)?;
    let task = &st.tasks[i];
    if task.project != pid || !st.visible(task, now) {
        return Err(not_found());
    }
    let state = st.state(task, now);
    if !matches!(state, "delivered" | "acknowledged") {
        return Err(bad_request(&format!(
            "Task {t} cannot be rejected in state {state}; only delivered tasks can"
        )));
    }
    st.task_mut(i).rejected = Some((now, reasons));
    st.task_mut(i).acknowledged = None;
    Ok(Json(json!({"id": t, "state": "rejected"})).into_response())
}

fn task_ids_body(body: &[u8]) -> Result<(Value, Vec<String>), Response> {
    let req: Value = serde_json::from_slice(body)
        .map_err(|e| bad_request(&format!("Invalid JSON body: {e}")))?;
    let ids = req
        .get("task_ids")
        .and_then(Value::as_array)
        .ok_or_else(|| bad_request("task_ids is required"))?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    Ok((req, ids))
}

async fn bulk_update(State(a): S, Path(p): Path<String>, uri: Uri, body: Bytes) -> Answer {
    let pid = a.enter(&uri, &p)?;
    let (req, ids) = task_ids_body(&body)?;
    let priority = req
        .get("priority")
        .and_then(Value::as_i64)
        .filter(|p| i32::try_from(*p).is_ok())
        .ok_or_else(|| bad_request("priority must be a 32-bit integer"))?;
    let mut st = a.store.lock();
    let mut updated = 0;
    for id in &ids {
        if let Some(&i) = st.by_id.get(id) {
            if st.tasks[i].project == pid {
                st.task_mut(i).priority = priority;
                updated += 1;
            }
        }
    }
    Ok(Json(json!({"updated_count": updated})).into_response())
}

async fn delete_tasks(State(a): S, Path(p): Path<String>, uri: Uri, body: Bytes) -> Answer {
    let pid = a.enter(&uri, &p)?;
    let (_, ids) = task_ids_body(&body)?;
    let mut st = a.store.lock();
    let mut deleted = 0;
    for id in &ids {
        if let Some(&i) = st.by_id.get(id) {
            if st.tasks[i].project == pid && !st.tasks[i].deleted {
                st.task_mut(i).deleted = true;
                deleted += 1;
            }
        }
    }
    Ok(Json(json!({"deleted_count": deleted})).into_response())
}

async fn project_stats(State(a): S, Path(p): Path<String>, uri: Uri) -> Answer {
    let pid = a.enter(&uri, &p)?;
    let q = Query::parse(uri.query());
    let from = q.get("from").and_then(parse_instant_us);
    let to = q.get("to").and_then(parse_instant_us);
    let now = a.now();
    let st = a.store.lock();
    let mut states = Map::new();
    for s in [
        "new",
        "in progress",
        "completed",
        "approved",
        "delivered",
        "acknowledged",
        "rejected",
    ] {
        states.insert(s.into(), json!(0));
    }
    let mut total = 0u64;
    for t in st
        .tasks
        .iter()
        .filter(|t| t.project == pid && st.visible(t, now))
    {
        let us = t.scheduled_ms * 1000;
        if from.is_some_and(|f| us < f) || to.is_some_and(|x| us > x) {
            continue;
        }
        total += 1;
        let v = states.entry(st.state(t, now)).or_insert(json!(0));
        *v = json!(v.as_u64().unwrap_or(0) + 1);
    }
    Ok(Json(json!({
        "project_id": pid, "from": q.get("from"), "to": q.get("to"),
        "total": total, "states": states,
    }))
    .into_response())
}

// ---- /_sim hooks --------------------------------------------------------------------------------

fn sim_error(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "message": message }))).into_response()
}

async fn sim_schema(State(a): S, Path(p): Path<String>, body: Bytes) -> Response {
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
async fn sim_callbacks(State(a): S, Path(p): Path<String>, body: Bytes) -> Response {
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

async fn sim_callback_log(State(a): S) -> Response {
    a.settle();
    let log = a.callback_log.lock();
    Json(json!({"attempts": log.0, "unreachable": log.1})).into_response()
}

/// `{"creation_s": f, "upload_ttl_s": f, "status_rate_limit": bool}`.
async fn sim_config(State(a): S, body: Bytes) -> Response {
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

async fn method_not_allowed() -> Response {
    errors(
        StatusCode::METHOD_NOT_ALLOWED,
        json!(405),
        "Method not allowed.",
    )
}

async fn fallback() -> Response {
    not_found()
}

impl Simulator for SamaSim {
    fn router(self: Arc<Self>, routes: &Routes) -> Router {
        type Route = MethodRouter<Arc<SamaSim>>;
        // (axum path, statistics template, route). Paths whose last segment is `<id>.json` take the whole
        // segment as the parameter and strip the suffix in the handler.
        let table: Vec<(&'static str, &'static str, Route)> = vec![
            (
                "/v2/projects/{p}",
                "/v2/projects/{projectId}.json",
                get(project_info),
            ),
            (
                "/v2/projects/{p}/schemas/create_task.json",
                "/v2/projects/{projectId}/schemas/create_task.json",
                get(create_schema),
            ),
            (
                "/v2/projects/{p}/schemas/deliver_task.json",
                "/v2/projects/{projectId}/schemas/deliver_task.json",
                get(deliver_schema),
            ),
            (
                "/v2/projects/{p}/batches.json",
                "/v2/projects/{projectId}/batches.json",
                post(create_batch),
            ),
            (
                "/v2/projects/{p}/batches/{b}",
                "/v2/projects/{projectId}/batches/{batchId}.json",
                get(batch_status),
            ),
            (
                "/v2/projects/{p}/batches/{b}/continue.json",
                "/v2/projects/{projectId}/batches/{batchId}/continue.json",
                post(continue_batch),
            ),
            (
                "/v2/projects/{p}/batches/{b}/cancel.json",
                "/v2/projects/{projectId}/batches/{batchId}/cancel.json",
                post(cancel_batch),
            ),
            (
                "/v2/projects/{p}/tasks.json",
                "/v2/projects/{projectId}/tasks.json",
                get(multi_status),
            ),
            (
                "/v2/projects/{p}/tasks/{t}",
                "/v2/projects/{projectId}/tasks/{taskId}.json",
                get(task_status),
            ),
            (
                "/v2/projects/{p}/tasks/delivered.json",
                "/v2/projects/{projectId}/tasks/delivered.json",
                get(delivered_get).post(delivered_post),
            ),
            (
                "/v2/projects/{p}/tasks/{t}/reject.json",
                "/v2/projects/{projectId}/tasks/{taskId}/reject.json",
                put(reject_task),
            ),
            (
                "/v2/projects/{p}/tasks/bulk_update.json",
                "/v2/projects/{projectId}/tasks/bulk_update.json",
                post(bulk_update),
            ),
            (
                "/v2/projects/{p}/tasks/delete_tasks.json",
                "/v2/projects/{projectId}/tasks/delete_tasks.json",
                post(delete_tasks),
            ),
            (
                "/v2/projects/{p}/stats.json",
                "/v2/projects/{projectId}/stats.json",
                get(project_stats),
            ),
            ("/_uploads/{token}", "/_uploads/{token}", put(upload_file)),
        ];
        let mut r: Router<Arc<SamaSim>> = Router::new();
        for (path, template, route) in table {
            r = r.route(
                path,
                routes.api(template, route.fallback(method_not_allowed)),
            );
        }
        let hooks: Vec<(&'static str, Route)> = vec![
            ("/_sim/projects/{p}/schema", post(sim_schema)),
            ("/_sim/projects/{p}/callbacks", post(sim_callbacks)),
            ("/_sim/callbacks", get(sim_callback_log)),
            ("/_sim/config", post(sim_config)),
        ];
        for (path, route) in hooks {
            r = r.route(path, routes.control(path, route));
        }
        r.fallback(fallback).with_state(self)
    }

    fn project(&self) -> String {
        "117".to_string()
    }

    fn credentials(&self) -> Vec<(String, String)> {
        vec![("api_key".to_string(), self.key.clone())]
    }

    /// Sama keys do not expire.
    fn expire_tokens(&self) {}

    fn error_body(&self, status: StatusCode, message: &str, _path: &str) -> Value {
        json!({"errors": [{"type": status.as_u16(), "message": message}]})
    }
}
