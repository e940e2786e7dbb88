//! The Sama Platform API simulator (`api.sama.com/v2`; wire facts: docs/vendors/sama.md).
//!
//! Sama's model against the neutral one: project = project (seeded: 117 and 118 for the sandbox key,
//! 999 for another customer), Batch = the tasks sharing one `client_batch_id` input value, record = a
//! task's `data`, Job = a batch creation job (create, PUT the tasks file to the upload URL, continue),
//! result = a delivered task with its `answers`.
//!
//! Every `/v2` call needs the `access_key` query parameter; the upload URL (served here at
//! `/_uploads/{token}`, pre-signed S3 style) needs none. Errors are `{"errors":[{"type","message"}]}`.
//! The multi-task status endpoint allows one request per second per key (429 after that) once a test turns
//! that on (`status_rate_limit`, `POST /_sim/config`): off by default, as a loopback client keeps no vendor
//! limit unless asked. Creation and
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
use axum::extract::{FromRequestParts, Path, RawPathParams, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put, MethodRouter};
use axum::{Json, Router};
use parking_lot::Mutex;
use serde_json::{json, Map, Value};

use super::clock::{iso_ms, parse_instant_us, seconds_to_ms};
use super::dialect::{Kind, SettingSpec, Value as DialectValue};
use super::paging::{Envelope, Facts, Page, Paging, Query};
use super::sama_store::{
    base64, creation_status, hmac_sha256, seeded_hex, validate, Callback, CallbackAuth,
    DeliveredCache, SimBatch, Store, Task, TaskForm, CLIENT_BATCH_INPUT, STATS_KEY_INPUT,
};
use super::{Routes, Shared, Simulator};

/// What no source settles about the Sama API, as settings (`dialect.rs`; docs/vendors/sama.md, "Guesses
/// that remain").
pub(super) const DIALECT: &[super::dialect::SettingSpec] = &[
    super::dialect::PAGE_CAP,
    SettingSpec {
        name: "job_state_field",
        kind: Kind::Word(&["state", "status", "none"]),
        changed: DialectValue::Word("none"),
        doc: "the name of a creation job's state (GET batches/{id}.json), or none at all: the answer's field \
              names are not documented (ledger finding 1)",
    },
    SettingSpec {
        name: "job_counts",
        kind: Kind::Word(&["named", "missing"]),
        changed: DialectValue::Word("missing"),
        doc: "whether a creation job's answer carries tasks_count/created_count/failed_count/canceled_count \
              (missing: progress only from tasks[].status; ledger finding 1)",
    },
    SettingSpec {
        name: "delivery_time_field",
        kind: Kind::Word(&["delivered_at", "completion_date", "none"]),
        changed: DialectValue::Word("none"),
        doc: "the name of a delivered task's delivery time, or none at all: no Sama example shows one \
              (ledger finding 2)",
    },
    SettingSpec {
        name: "delivered_reads_completed",
        kind: Kind::Switch,
        changed: DialectValue::Switch(true),
        doc: "delivered listings and delivery callbacks show delivered tasks with state \"completed\", as \
              Sama's own delivery examples do (ledger finding 3)",
    },
    SettingSpec {
        name: "single_task_under",
        kind: Kind::Word(&["task", "tasks"]),
        changed: DialectValue::Word("tasks"),
        doc: "GET tasks/{id}.json answers {\"task\": {...}} (SDK 0.5.12) or {\"tasks\": [{...}]} (the SDK's \
              earlier version; ledger finding 7)",
    },
    SettingSpec {
        name: "ids_as_strings",
        kind: Kind::Switch,
        changed: DialectValue::Switch(true),
        doc: "creation job ids (batch_id) written as strings, as the SDK's own test mock does (ledger finding 8)",
    },
    SettingSpec {
        name: "created_at_zoneless",
        kind: Kind::Switch,
        changed: DialectValue::Switch(true),
        doc: "tasks' created_at in Sama's example form 20130715T04:45:57 (no zone; ledger finding 11)",
    },
    SettingSpec {
        name: "drop_key_input",
        kind: Kind::Switch,
        changed: DialectValue::Switch(true),
        doc: "the project keeps no labelport_key input: task creation drops it, so no key comes back \
              (ledger finding 5)",
    },
];

#[path = "sama_delivery.rs"]
mod delivery;
#[path = "sama_hooks.rs"]
mod hooks;
#[path = "sama_reads.rs"]
mod reads;

use hooks::{sim_callback_log, sim_callbacks, sim_config, sim_schema};
use reads::{batch_status, delivered_get, delivered_post, multi_status, task_status};

/// Inline batch creation takes at most 1,000 tasks.
const INLINE_LIMIT: usize = 1000;
const DELIVERED_PAGE_MAX: u64 = 1000;
/// A batch's status lists up to 1,000 of its tasks a page; `page_size=0` lists none.
const BATCH_PAGING: Paging = paging(1000, 0);
const STATUS_PAGING: Paging = paging(100, 1);
const DELIVERED_PAGING: Paging = paging(DELIVERED_PAGE_MAX, 1);
/// Task listings carry the tasks only: no total, no next page.
const TASKS: Envelope = Envelope::items("tasks");
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

/// An authorised call to a project's endpoint: the `access_key` is the sandbox's and the project
/// `{p}` one it may use; `pid` is its id. Extracted before anything else of the request is looked at.
struct Project(Arc<SamaSim>, u64);

impl FromRequestParts<Arc<SamaSim>> for Project {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, a: &Arc<SamaSim>) -> Result<Self, Response> {
        let params = RawPathParams::from_request_parts(parts, a)
            .await
            .map_err(IntoResponse::into_response)?;
        let p = params
            .iter()
            .find(|(k, _)| *k == "p")
            .map_or("", |(_, v)| v);
        let pid = a.enter(&parts.uri, p)?;
        Ok(Project(Arc::clone(a), pid))
    }
}

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

/// `page` (1-based) and `page_size`, both read leniently, the size at most `max` (also the default)
/// and at least `min`.
const fn paging(max: u64, min: u64) -> Paging {
    Paging::new("page", "page_size", max, max).lenient(min)
}

/// What a Sama listing says about the rest: nothing (`TASKS` writes no counts).
fn no_facts(page: Page) -> Facts {
    Facts {
        page,
        total: 0,
        next_token: String::new(),
    }
}

/// The batch `bid` of project `pid`, or 404.
fn batch_in(st: &Store, pid: u64, bid: u64) -> Result<&SimBatch, Response> {
    st.batches
        .get(&bid)
        .filter(|x| x.project == pid)
        .ok_or_else(not_found)
}

/// An empty body reads as `{}`.
fn json_or_empty(body: &[u8]) -> Result<Value, Response> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| bad_request(&format!("Invalid JSON body: {e}")))
}

/// An optional instant parameter (`from`, `to`), in microseconds.
fn instant_param(q: &Query, name: &str) -> Result<Option<i64>, Response> {
    match q.get(name) {
        Some(v) if !v.is_empty() => parse_instant_us(v)
            .map(Some)
            .ok_or_else(|| bad_request(&format!("Invalid {name}: {v}"))),
        _ => Ok(None),
    }
}

/// The strings of an array field (`reasons`), none when absent.
fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
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
        let d = &c.dialect;
        let mut store = Store::new(c.seed, seconds_to_ms(c.complete_after));
        store.quality = shared.quality.clone();
        let named = |setting: &str, default: &'static str, words: &[&'static str]| {
            let chosen = d.word(setting).unwrap_or(default);
            words.iter().copied().find(|w| *w == chosen && *w != "none")
        };
        store.form = TaskForm {
            delivery_field: named(
                "delivery_time_field",
                "delivered_at",
                &["delivered_at", "completion_date"],
            ),
            delivered_reads_completed: d.switch("delivered_reads_completed"),
            created_zoneless: d.switch("created_at_zoneless"),
            ids_as_strings: d.switch("ids_as_strings"),
            job_state_field: named("job_state_field", "state", &["state", "status"]),
            job_counts_missing: d.word("job_counts") == Some("missing"),
            drop_key_input: d.switch("drop_key_input"),
        };
        SamaSim {
            key: format!("sama-sbx-{}", seeded_hex(c.seed, "sama-key", 16)),
            store: Mutex::new(store),
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

    /// A listing's page size, at most `max` lowered by the dialect's `page_cap`.
    fn capped(&self, max: u64) -> u64 {
        self.shared
            .config
            .dialect
            .page_cap()
            .map_or(max, |c| c.min(max))
    }

    /// The page a listing asks for (`page`, `page_size`), its size within the dialect's `page_cap`.
    fn page_of(&self, q: &Query, paging: &Paging) -> Page {
        let paging = Paging {
            max_size: self.capped(paging.max_size),
            default_size: self.capped(paging.default_size),
            ..*paging
        };
        paging.read(q).expect("lenient numbers are never refused")
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
            let mut data = data.as_object().cloned().unwrap_or_default();
            if st.form.drop_key_input {
                data.remove(STATS_KEY_INPUT);
            }
            let at = now + span * (k as i64 + 1) / n.max(1);
            let task = Task {
                priority,
                submit,
                errors,
                ..Task::scheduled(id.clone(), pid, bid, data, at)
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

async fn create_schema(Project(a, pid): Project) -> Answer {
    let st = a.store.lock();
    Ok(Json(SamaSim::project_schema(&st, pid)).into_response())
}

async fn deliver_schema(Project(a, pid): Project) -> Answer {
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

async fn create_batch(Project(a, pid): Project, headers: HeaderMap, body: Bytes) -> Answer {
    let req = json_or_empty(&body)?;
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
            let id = a.store.lock().form.batch_id(bid);
            Ok(Json(json!({"batch_id": id, "task_ids": ids})).into_response())
        }
        None => {
            let url = a.upload_url(&headers, &st.batches[&bid]);
            let id = st.form.batch_id(bid);
            Ok(Json(json!({"batch_id": id, "tasks_put_url": url})).into_response())
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

async fn continue_batch(Project(a, pid): Project, Path((_, b)): Path<(String, String)>) -> Answer {
    let bid = parse_id(&b)?;
    let now = a.now();
    let mut st = a.store.lock();
    let batch = batch_in(&st, pid, bid)?;
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
    let id = a.store.lock().form.batch_id(bid);
    Ok(Json(json!({ "batch_id": id })).into_response())
}

async fn cancel_batch(Project(a, pid): Project, Path((_, b)): Path<(String, String)>) -> Answer {
    let bid = parse_id(&b)?;
    let now = a.now();
    let mut st = a.store.lock();
    let batch = batch_in(&st, pid, bid)?;
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
    let id = st.form.batch_id(bid);
    let b = st.batches.get_mut(&bid).expect("batch");
    b.canceled_ms = Some(now);
    b.messages
        .push(format!("Canceled: {canceled} tasks were not created"));
    Ok(
        Json(json!({"batch_id": id, "state": "canceled", "canceled_count": canceled}))
            .into_response(),
    )
}

async fn reject_task(
    Project(a, pid): Project,
    Path((_, t)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let reasons = strings(&req, "reasons");
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

async fn bulk_update(Project(a, pid): Project, body: Bytes) -> Answer {
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

async fn delete_tasks(Project(a, pid): Project, body: Bytes) -> Answer {
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

async fn project_stats(Project(a, pid): Project, uri: Uri) -> Answer {
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
