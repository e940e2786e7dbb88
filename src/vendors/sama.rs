//! Sama (Sama Platform, `api.sama.com/v2`).
//!
//! Neutral model onto Sama: `project` = project id (an integer); `Batch` = the tasks sharing one value of the
//! project's designated client-batch-id input (`client_batch_field`, default `client_batch_id`), so
//! `create_batch(name)` creates nothing at Sama: the batch id is the name, written into every record; record =
//! a task's `data`, its key sent as an input too (`key_field`, default `labelport_key`); `Job` = the Sama
//! batch creation jobs of one upload (create, PUT the tasks file to the returned pre-signed URL without our
//! key, continue), with per-task creation failures in `JobState::failures`; result = a delivered task
//! (`answers`), its neutral `id` the task id. The key travels as the `access_key` query parameter, which
//! `redact.rs` hides everywhere. The multi-task status endpoint (counts, records, existing keys) allows one
//! request per second: this client paces itself.

// `engine::Error` is large by design (it carries every fact of a failure); boxing it here buys nothing.
#![allow(clippy::result_large_err)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use parking_lot::Mutex;
use reqwest::Method;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use url::Url;

use super::config::{check_options, ClientConfig, Options};
use super::kit::{self, Kit};
use super::model::*;
use super::upload::{in_chunks, Chunk, Driver, Keyed, Pieces, Plan, Wording};
use super::{Adapter, UploadOptions, UploadProgress};
use crate::engine::auth::{refused_with_401, KeyPlacement, StaticKey};
use crate::engine::http::{request_url, HttpClient, Request, Response};
use crate::engine::pagination::with_query_param;
use crate::engine::pagination::PageBudget;
use crate::engine::redact::redact_url;
use crate::engine::retry::{is_ambiguous, is_retryable, Outcome, RequestKind, RetryPolicy};
use crate::engine::stream::{
    page_number_stream, page_number_stream_filtered, Decoder, Keep, PageNumberList, PageStream,
};
use crate::engine::{Error, ErrorKind, Result};

const VENDOR: &str = "sama";
pub const DEFAULT_CLIENT_BATCH_FIELD: &str = "client_batch_id";
pub const DEFAULT_KEY_FIELD: &str = "labelport_key";
/// Tasks per batch creation job (the tasks-file path has no documented limit; this bounds one PUT).
pub const TASKS_PER_JOB: usize = 5000;
const UPLOAD_CONCURRENCY: usize = 4;
/// The multi-task status endpoint's page maximum, and its one request per second (with a margin).
const STATUS_PAGE: usize = 100;
const STATUS_INTERVAL: Duration = Duration::from_millis(1050);
/// Delivered tasks and batch status pages go up to 1,000.
const BIG_PAGE: usize = 1000;
const READ_AHEAD: usize = 2;
/// What the file upload is named at Sama (`tasks_file_name`).
const TASKS_FILE_NAME: &str = "labelport";
/// Failures shown in an error message; all of them are in `details`.
const SHOWN_PROBLEMS: usize = 10;

pub struct SamaAdapter {
    cfg: ClientConfig,
    http: Arc<HttpClient>,
    /// `<base>/v2/`
    root: Url,
    project_id: u64,
    rt: tokio::runtime::Handle,
    client_batch_field: String,
    key_field: String,
    retry: RetryPolicy,
    /// The creation schema, fetched once.
    schema: tokio::sync::OnceCell<Value>,
    /// When the last multi-task status answer arrived (one call a second); held during a call.
    status_gate: Arc<tokio::sync::Mutex<Option<Instant>>>,
    /// Sama batch creation jobs this client started and has not seen finish, per neutral batch.
    inflight: Mutex<HashMap<String, Vec<u64>>>,
    /// The record keys each of those jobs carries: its tasks are not listed until created.
    inflight_keys: Mutex<HashMap<u64, Arc<Vec<String>>>>,
    view: SamaView,
}

/// `{"errors": [{"type": 401 | "InvalidInputSchema", "message": "..."}]}`.
fn parse_error(_status: u16, body: &[u8]) -> (Option<String>, Option<String>) {
    #[derive(Deserialize)]
    struct Body {
        errors: Vec<Item>,
    }
    #[derive(Deserialize)]
    struct Item {
        #[serde(rename = "type")]
        kind: Option<Value>,
        message: Option<String>,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(b) if !b.errors.is_empty() => {
            let code = b.errors[0].kind.as_ref().map(|k| match k {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
            let messages: Vec<String> = b.errors.into_iter().filter_map(|e| e.message).collect();
            (code, (!messages.is_empty()).then(|| messages.join("; ")))
        }
        _ => (None, None),
    }
}

/// Sama's task states onto the neutral ones. A rejected task goes back to work and is delivered again.
pub fn neutral_status(state: &str) -> Status {
    match state {
        "new" => Status::Pending,
        "delivered" | "acknowledged" => Status::Completed,
        // "in progress", "completed" (awaiting review), "approved" (awaiting delivery), "rejected" (rework)
        _ => Status::InProgress,
    }
}

#[derive(Deserialize)]
struct TaskDto {
    id: String,
    state: Option<String>,
    #[serde(default)]
    data: RawObject,
    created_at: Option<String>,
    answers: Option<Box<RawValue>>,
    delivered_at: Option<String>,
    batch_id: Option<Value>,
}

#[derive(Deserialize)]
struct TasksPage {
    #[serde(default)]
    tasks: Vec<Box<RawValue>>,
}

#[derive(Deserialize, Debug, Clone, Default)]
struct JobDto {
    state: Option<String>,
    #[serde(default)]
    tasks_count: u64,
    #[serde(default)]
    created_count: u64,
    #[serde(default)]
    failed_count: u64,
    #[serde(default)]
    canceled_count: u64,
    tasks: Option<Vec<Value>>,
}

impl JobDto {
    fn finished(&self) -> bool {
        matches!(
            self.state.as_deref(),
            Some("completed" | "failed" | "canceled")
        )
    }
}

fn bad(operation: &str, e: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Vendor,
        format!("unexpected {operation} answer: {e}"),
    )
    .vendor(VENDOR)
    .operation(operation)
    .code("bad_response")
}

/// A JSON object kept as its members' text, in order: a task's data goes on to Python without a tree being
/// built, cloned and written out again for each of 100,000 results.
#[derive(Default)]
struct RawObject(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for RawObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = RawObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<RawObject, A::Error> {
                let mut out = Vec::with_capacity(m.size_hint().unwrap_or(8));
                while let Some(member) = m.next_entry::<String, Box<RawValue>>()? {
                    out.push(member);
                }
                Ok(RawObject(out))
            }
        }
        d.deserialize_map(Members)
    }
}

impl RawObject {
    /// The last member named `name` (as a JSON parser keeps it).
    fn get(&self, name: &str) -> Option<&RawValue> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| &**v)
    }

    /// The object's text without the members named in `dropped`.
    fn without(&self, dropped: &[&str]) -> Result<Box<RawValue>> {
        let mut text = String::with_capacity(
            2 + self
                .0
                .iter()
                .map(|(k, v)| k.len() + v.get().len() + 4)
                .sum::<usize>(),
        );
        text.push('{');
        for (k, v) in self
            .0
            .iter()
            .filter(|(k, _)| !dropped.contains(&k.as_str()))
        {
            if text.len() > 1 {
                text.push(',');
            }
            text.push_str(&serde_json::to_string(k).map_err(|e| bad("results", e))?);
            text.push(':');
            text.push_str(v.get());
        }
        text.push('}');
        RawValue::from_string(text).map_err(|e| bad("results", e))
    }
}

/// A string or number member as text (keys and client batch ids may be either).
fn raw_text_of(v: &RawValue) -> Option<String> {
    text_of(&serde_json::from_str::<Value>(v.get()).ok()?)
}

fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// One violation of the creation schema: (field path, message).
type Problem = (String, String);

/// Checks `data` against the parts of JSON Schema Sama's creation schemas use (`type`, `properties`,
/// `required`, `additionalProperties`, `enum`, lengths, bounds, `format: date`); anything else is left to Sama.
pub fn check_schema(schema: &Value, data: &Value, path: &str, out: &mut Vec<Problem>) {
    let Some(s) = schema.as_object() else {
        if schema == &Value::Bool(false) {
            out.push((path.to_string(), "is not allowed".into()));
        }
        return;
    };
    let at = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    if let Some(t) = s.get("type") {
        let types: Vec<&str> = match t {
            Value::String(x) => vec![x.as_str()],
            Value::Array(xs) => xs.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let fits = |ty: &str| match ty {
            "string" => data.is_string(),
            // Sama's integers are 32-bit.
            "integer" => data.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
            "number" => data.is_number(),
            "boolean" => data.is_boolean(),
            "object" => data.is_object(),
            "array" => data.is_array(),
            "null" => data.is_null(),
            _ => true,
        };
        if !types.is_empty() && !types.iter().any(|ty| fits(ty)) {
            out.push((
                path.to_string(),
                format!("must be {} (got {})", types.join(" or "), json_kind(data)),
            ));
            return;
        }
    }
    if let Some(Value::Array(options)) = s.get("enum") {
        if !options.contains(data) {
            out.push((
                path.to_string(),
                format!("must be one of {}", Value::Array(options.clone())),
            ));
        }
    }
    if let Value::String(text) = data {
        let n = text.chars().count() as u64;
        if let Some(max) = s
            .get("maxLength")
            .and_then(Value::as_u64)
            .filter(|m| n > *m)
        {
            out.push((
                path.to_string(),
                format!("must be at most {max} characters"),
            ));
        }
        if let Some(min) = s
            .get("minLength")
            .and_then(Value::as_u64)
            .filter(|m| n < *m)
        {
            out.push((
                path.to_string(),
                format!("must be at least {min} characters"),
            ));
        }
        if s.get("format").and_then(Value::as_str) == Some("date")
            && chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_err()
        {
            out.push((path.to_string(), "must be a date YYYY-mm-dd".into()));
        }
    }
    if let Some(x) = data.as_f64() {
        if let Some(min) = s.get("minimum").and_then(Value::as_f64).filter(|m| x < *m) {
            out.push((path.to_string(), format!("must be >= {min}")));
        }
        if let Some(max) = s.get("maximum").and_then(Value::as_f64).filter(|m| x > *m) {
            out.push((path.to_string(), format!("must be <= {max}")));
        }
    }
    if let Value::Object(obj) = data {
        let props = s.get("properties").and_then(Value::as_object);
        if let Some(Value::Array(req)) = s.get("required") {
            for r in req.iter().filter_map(Value::as_str) {
                if !obj.contains_key(r) {
                    out.push((at(r), "is required".into()));
                }
            }
        }
        for (k, v) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(ps) => check_schema(ps, v, &at(k), out),
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        out.push((at(k), "is not an input of this project".into()))
                    }
                    Some(extra @ Value::Object(_)) => check_schema(extra, v, &at(k), out),
                    _ => {}
                },
            }
        }
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(n) if n.is_f64() => "a float",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a dict",
    }
}

/// The answer of one batch creation job once it is over.
struct Created {
    sama_batch: u64,
}

impl SamaAdapter {
    pub fn new(cfg: ClientConfig, rt: tokio::runtime::Handle) -> Result<Self> {
        let project_id: u64 = cfg.project.trim().parse().map_err(|_| {
            Error::invalid(format!(
                "a Sama project id is an integer, not {:?}",
                cfg.project
            ))
            .vendor(VENDOR)
            .field("project")
        })?;
        let option_text = |name: &str, default: &str| -> Result<String> {
            match cfg.options.get(name) {
                None => Ok(default.to_string()),
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
                Some(_) => Err(Error::invalid(format!("{name} must be a non-empty string"))
                    .vendor(VENDOR)
                    .field(name)),
            }
        };
        let client_batch_field = option_text("client_batch_field", DEFAULT_CLIENT_BATCH_FIELD)?;
        let key_field = option_text("key_field", DEFAULT_KEY_FIELD)?;
        if key_field == client_batch_field {
            return Err(Error::invalid(
                "key_field and client_batch_field must name different inputs",
            )
            .vendor(VENDOR)
            .field("key_field"));
        }
        let root = kit::api_root(&cfg, &["v2", ""])?;
        let retry = cfg.retry_policy();
        let auth = StaticKey::new(
            KeyPlacement::Query("access_key"),
            cfg.credentials["api_key"].expose(),
            refused_with_401,
        );
        let http = kit::http_client(&cfg, auth, parse_error)?;
        Ok(SamaAdapter {
            cfg,
            http: Arc::new(http),
            root,
            project_id,
            rt,
            client_batch_field: client_batch_field.clone(),
            key_field: key_field.clone(),
            retry,
            schema: tokio::sync::OnceCell::new(),
            status_gate: Arc::new(tokio::sync::Mutex::new(None)),
            inflight: Mutex::new(HashMap::new()),
            inflight_keys: Mutex::new(HashMap::new()),
            view: SamaView {
                client_batch_field: client_batch_field.clone(),
                key_field: key_field.clone(),
            },
        })
    }

    /// `<root>projects/<pid><last>` where the last segment carries `.json`, e.g. `url(&["batches.json"])`.
    fn url(&self, rest: &[&str]) -> Url {
        let mut u = self.root.clone();
        {
            let mut segs = u.path_segments_mut().expect("root is a base");
            segs.pop_if_empty().push("projects");
            if rest.is_empty() {
                segs.push(&format!("{}.json", self.project_id));
            } else {
                segs.push(&self.project_id.to_string()).extend(rest);
            }
        }
        u
    }

    fn check_batch_id(&self, id: &str) -> Result<()> {
        if id.trim().is_empty() {
            return Err(Error::invalid("a batch id cannot be empty")
                .vendor(VENDOR)
                .field("id"));
        }
        Ok(())
    }

    fn batch_info(&self, id: &str) -> BatchInfo {
        BatchInfo {
            id: id.to_string(),
            name: Some(id.to_string()),
            created_at: None,
            raw: json!({
                "project_id": self.project_id,
                "client_batch_field": self.client_batch_field,
                self.client_batch_field.clone(): id,
            }),
        }
    }

    async fn creation_schema(&self) -> Result<&Value> {
        self.schema
            .get_or_try_init(|| async {
                let resp = self
                    .http
                    .send(&Request::get(
                        self.url(&["schemas", "create_task.json"]),
                        "upload",
                    ))
                    .await?;
                resp.json::<Value>(VENDOR, "upload")
            })
            .await
    }

    fn status_url(&self, batch_id: &str, page: usize) -> Url {
        self.state_url(batch_id, None, page)
    }

    /// The multi-task status list of a neutral batch, of one task state only with `state`.
    fn state_url(&self, batch_id: &str, state: Option<&str>, page: usize) -> Url {
        let mut u = self.url(&["tasks.json"]);
        {
            let mut q = u.query_pairs_mut();
            q.append_pair("client_batch_id", batch_id)
                .append_pair("client_batch_id_match_type", "exact");
            if let Some(s) = state {
                q.append_pair("state", s);
            }
            q.append_pair("omit_answers", "true")
                .append_pair("page", &page.to_string())
                .append_pair("page_size", &STATUS_PAGE.to_string());
        }
        u
    }

    /// The first page of the delivered tasks of a neutral batch (`from`: delivered at or after).
    fn results_url(&self, batch_id: &str, since_us: Option<i64>) -> Url {
        let mut first = self.url(&["tasks", "delivered.json"]);
        {
            let mut q = first.query_pairs_mut();
            q.append_pair("client_batch_id", batch_id)
                .append_pair("client_batch_id_match_type", "exact");
            if let Some(us) = since_us {
                q.append_pair("from", &format_rfc3339_us(us));
            }
            q.append_pair("page", "1")
                .append_pair("page_size", &BIG_PAGE.to_string());
        }
        first
    }

    /// One page of the multi-task status list of a neutral batch, paced.
    async fn status_page(
        &self,
        batch_id: &str,
        page: usize,
        operation: &'static str,
    ) -> Result<Vec<(TaskDto, Box<RawValue>)>> {
        self.state_page(batch_id, None, page, operation).await
    }

    async fn state_page(
        &self,
        batch_id: &str,
        state: Option<&str>,
        page: usize,
        operation: &'static str,
    ) -> Result<Vec<(TaskDto, Box<RawValue>)>> {
        let url = self.state_url(batch_id, state, page);
        let resp = paced_status_get(&self.status_gate, &self.http, url, operation).await?;
        decode_tasks(&resp, operation)
    }

    /// The tasks of a neutral batch with their states, for counting: what is not delivered yet comes from the
    /// multi-task status list one state at a time (paced, 100 a second), what is delivered from the delivered
    /// list (1,000 a page, not rate limited). On a batch mostly delivered, which is where `wait()` spends its
    /// polls, that is a few seconds where the full list would take one second per 100 tasks. States are read
    /// in the order tasks move through them, so a task that moves on during the count is met again (and
    /// counted once, by id), not lost; a task rejected after delivery during the count can be missed by
    /// this one count. Only for counts: keys for idempotency come from the full list.
    async fn tasks_for_counts(&self, batch_id: &str) -> Result<Vec<TaskDto>> {
        let first = self.status_page(batch_id, 1, "status").await?;
        if first.len() < STATUS_PAGE {
            return Ok(first.into_iter().map(|(t, _)| t).collect());
        }
        let mut seen: HashSet<String> = HashSet::new();
        let mut out = Vec::new();
        for state in ["new", "rejected", "in progress", "completed", "approved"] {
            for page in 1.. {
                let items = self
                    .state_page(batch_id, Some(state), page, "status")
                    .await?;
                let n = items.len();
                for (t, _) in items {
                    if seen.insert(t.id.clone()) {
                        out.push(t);
                    }
                }
                if n < STATUS_PAGE {
                    break;
                }
            }
        }
        // Delivered and acknowledged tasks (the delivered list holds both [I]).
        let delivered = self.results_url(batch_id, None);
        for page in 1.. {
            let url = with_query_param(&delivered, "page", &page.to_string());
            let resp = self.http.send(&Request::get(url, "status")).await?;
            let items = decode_tasks(&resp, "status")?;
            let n = items.len();
            for (mut t, _) in items {
                if seen.insert(t.id.clone()) {
                    t.state.get_or_insert_with(|| "delivered".to_string());
                    out.push(t);
                }
            }
            if n < BIG_PAGE {
                break;
            }
        }
        Ok(out)
    }

    /// Every task of a neutral batch (multi-task status, 100 per second).
    async fn all_tasks(&self, batch_id: &str, operation: &'static str) -> Result<Vec<TaskDto>> {
        let mut out = Vec::new();
        for page in 1.. {
            let items = self.status_page(batch_id, page, operation).await?;
            let n = items.len();
            out.extend(items.into_iter().map(|(t, _)| t));
            if n < STATUS_PAGE {
                break;
            }
        }
        Ok(out)
    }

    async fn job_summary(
        &self,
        sama_batch: u64,
        with_tasks: bool,
        operation: &'static str,
    ) -> Result<JobDto> {
        let mut first = self.url(&["batches", &format!("{sama_batch}.json")]);
        first
            .query_pairs_mut()
            .append_pair("batch_id", &sama_batch.to_string())
            .append_pair("omit_failed_task_data", "false");
        if !with_tasks {
            let url = with_query_param(&first, "page_size", "0");
            let resp = self.http.send(&Request::get(url, operation)).await?;
            return resp.json(VENDOR, operation);
        }
        let mut all = JobDto::default();
        let mut tasks = Vec::new();
        for page in 1.. {
            let url = with_query_param(
                &with_query_param(&first, "page", &page.to_string()),
                "page_size",
                &BIG_PAGE.to_string(),
            );
            let resp = self.http.send(&Request::get(url, operation)).await?;
            let dto: JobDto = resp.json(VENDOR, operation)?;
            let items = dto.tasks.clone().unwrap_or_default();
            let n = items.len();
            tasks.extend(items);
            all = dto;
            if n < BIG_PAGE {
                break;
            }
        }
        all.tasks = Some(tasks);
        Ok(all)
    }

    /// Sends `req` (a create) and, after a failure that may or may not have been applied, asks `applied`
    /// before trying again: never a blind retry.
    async fn create_once<F, Fut>(&self, req: &Request, applied: F) -> Result<Option<Response>>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<bool>>,
    {
        let mut round = 0;
        loop {
            match self.http.send(req).await {
                Ok(resp) => return Ok(Some(resp)),
                Err(e) if is_ambiguous(&e) && round < self.retry.max_retries => {
                    tokio::time::sleep(self.retry.delay(round, None)).await;
                    round += 1;
                    if applied().await? {
                        log::info!(
                            target: "labelport::vendors::sama",
                            "{} failed ambiguously ({e}) but was applied",
                            req.operation
                        );
                        return Ok(None);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// PUTs the tasks file to the pre-signed URL: no key, the URL is the credential. A PUT overwrites, so
    /// every failure may be retried.
    async fn put_tasks_file(&self, url: &Url, body: bytes::Bytes) -> Result<()> {
        let mut retry = 0;
        loop {
            let sent = self
                .http
                .raw()
                .put(url.clone())
                .header("content-type", "application/json")
                .header("accept", "application/json")
                .body(body.clone())
                .send()
                .await;
            let outcome = match sent {
                Ok(resp) if resp.status().is_success() => return Ok(()),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if !(status >= 500 || status == 429) || retry >= self.retry.max_retries {
                        let mut e = Error::new(
                            ErrorKind::Vendor,
                            format!(
                                "the tasks file upload to {} answered HTTP {status}",
                                redact_url(url)
                            ),
                        )
                        .vendor(VENDOR)
                        .operation("upload");
                        e.status = Some(status);
                        if status == 403 {
                            e.kind = ErrorKind::Auth;
                            e.message
                                .push_str(" (the upload URL expired or its signature was refused)");
                        }
                        return Err(e);
                    }
                    Outcome::Status(status)
                }
                Err(e) if e.is_connect() => Outcome::ConnectFailed,
                Err(_) => Outcome::TransportFailed,
            };
            if retry >= self.retry.max_retries
                || !is_retryable(RequestKind::IdempotentCreate, outcome)
                    && !matches!(outcome, Outcome::Status(500))
            {
                return Err(Error::new(
                    ErrorKind::Vendor,
                    format!(
                        "the tasks file upload to {} failed ({outcome:?})",
                        redact_url(url)
                    ),
                )
                .vendor(VENDOR)
                .operation("upload")
                .code("connection_lost"));
            }
            tokio::time::sleep(self.retry.delay(retry, None)).await;
            retry += 1;
        }
    }

    /// One Sama batch creation job: create, PUT the file, continue. Returns once Sama is creating the tasks.
    async fn run_creation(&self, tasks: &[(String, Value)]) -> Result<Created> {
        // 1. A waiting batch with an upload URL. A lost answer leaves an orphan batch that never creates a
        //    task, so this create may be repeated.
        let req = Request::json(
            Method::POST,
            self.url(&["batches.json"]),
            &json!({"notification_email": null, "tasks_file_name": TASKS_FILE_NAME}),
            RequestKind::IdempotentCreate,
            "upload",
        )?;
        let mut round = 0;
        let created: Value = loop {
            match self.http.send(&req).await {
                Ok(resp) => break resp.json(VENDOR, "upload")?,
                Err(e) if is_ambiguous(&e) && round < self.retry.max_retries => {
                    tokio::time::sleep(self.retry.delay(round, None)).await;
                    round += 1;
                }
                Err(e) => return Err(e),
            }
        };
        let sama_batch = created
            .get("batch_id")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad("upload", "batch creation answered without batch_id"))?;
        let put_url = created
            .get("tasks_put_url")
            .and_then(Value::as_str)
            .and_then(|u| Url::parse(u).ok())
            .ok_or_else(|| bad("upload", "batch creation answered without tasks_put_url"))?;

        // 2. The tasks file.
        let tasks: Vec<&Value> = tasks.iter().map(|(_, t)| t).collect();
        let body = serde_json::to_vec(&tasks).map_err(|e| Error::invalid(e.to_string()))?;
        self.put_tasks_file(&put_url, body.into()).await?;

        // 3. Start creating. After an ambiguous failure, the batch's state says whether it started.
        let cont = Request {
            method: Method::POST,
            url: self.url(&["batches", &sama_batch.to_string(), "continue.json"]),
            body: crate::engine::http::Body::Json(bytes::Bytes::new()),
            kind: RequestKind::Create,
            operation: "upload",
            headers: vec![],
        };
        let started = || async {
            let job = self.job_summary(sama_batch, false, "upload").await?;
            Ok(job.state.as_deref() != Some("waiting"))
        };
        match self.create_once(&cont, started).await {
            Ok(_) => Ok(Created { sama_batch }),
            // A continue refused because the batch is no longer waiting: an earlier attempt got through.
            Err(e) if e.kind == ErrorKind::InvalidInput && started().await.unwrap_or(false) => {
                Ok(Created { sama_batch })
            }
            Err(e) => Err(e),
        }
    }

    /// The keys the neutral batch holds already (created tasks).
    /// Also the keys of creation jobs this client started that are still running: their tasks are not
    /// listed until created. Those jobs are asked first, so a task created in between is listed.
    async fn existing_keys(&self, batch_id: &str) -> Result<HashSet<String>> {
        let mut keys = HashSet::new();
        let inflight: Vec<u64> = self
            .inflight
            .lock()
            .get(batch_id)
            .cloned()
            .unwrap_or_default();
        for id in inflight {
            if !self.job_summary(id, false, "upload").await?.finished() {
                if let Some(k) = self.inflight_keys.lock().get(&id).cloned() {
                    keys.extend(k.iter().cloned());
                }
            }
        }
        keys.extend(
            self.all_tasks(batch_id, "upload")
                .await?
                .into_iter()
                .map(|t| self.view.key_of(&t.id, &t.data)),
        );
        Ok(keys)
    }

    /// Forgets creation jobs seen finished.
    fn forget(&self, batch_id: &str, finished: &[u64]) {
        if let Some(list) = self.inflight.lock().get_mut(batch_id) {
            list.retain(|b| !finished.contains(b));
        }
        let mut keys = self.inflight_keys.lock();
        for id in finished {
            keys.remove(id);
        }
    }

    /// Builds each record's task data and checks it against the creation schema. Returns the tasks to send
    /// and the records refused (row, key, field, message).
    async fn prepare(
        &self,
        batch_id: &str,
        records: Vec<UploadRecord>,
        priority: i64,
        submit: bool,
    ) -> Result<(Vec<(String, Value)>, Refused)> {
        let schema = self.creation_schema().await?.clone();
        let mut ok = Vec::new();
        let mut refused = Vec::new();
        for (row, r) in records.into_iter().enumerate() {
            let mut data = r.data;
            match data.get(&self.client_batch_field) {
                Some(v) if text_of(v).as_deref() != Some(batch_id) => {
                    refused.push((
                        row,
                        r.key,
                        self.client_batch_field.clone(),
                        format!("holds {v} but the record goes to batch {batch_id:?}"),
                    ));
                    continue;
                }
                _ => {
                    data.insert(self.client_batch_field.clone(), json!(batch_id));
                }
            }
            match data.get(&self.key_field) {
                Some(v) if text_of(v).as_deref() != Some(r.key.as_str()) => {
                    let message = format!("holds {v} but the record key is {:?}", r.key);
                    refused.push((row, r.key, self.key_field.clone(), message));
                    continue;
                }
                Some(_) => {}
                None => {
                    data.insert(self.key_field.clone(), json!(r.key));
                }
            }
            let data = Value::Object(data);
            let mut problems = Vec::new();
            check_schema(&schema, &data, "", &mut problems);
            if problems.is_empty() {
                ok.push((
                    r.key,
                    json!({"data": data, "priority": priority, "submit": submit}),
                ));
            } else {
                for (field, message) in problems {
                    refused.push((row, r.key.clone(), field, message));
                }
            }
        }
        Ok((ok, refused))
    }

    /// Deliveries for one consumer since its previous call (Sama's per-consumer cursor), for
    /// `batch.results(consumer="...")`. Each call moves the cursor; a page lost in transit is not sent
    /// again, so an ambiguous failure ends the stream with an error instead of a retry.
    pub fn results_for_consumer(
        &self,
        batch_id: &str,
        consumer: &str,
        include_raw: bool,
    ) -> Result<PageStream<Envelope>> {
        self.check_batch_id(batch_id)?;
        if consumer.trim().is_empty() {
            return Err(Error::invalid("consumer cannot be empty")
                .vendor(VENDOR)
                .field("consumer"));
        }
        let (http, view, url) = (
            self.http.clone(),
            self.view.clone(),
            self.url(&["tasks", "delivered.json"]),
        );
        let batch = batch_id.to_string();
        let body = json!({
            "batch_id": null,
            "client_batch_id": batch_id,
            "client_batch_id_match_type": "exact",
            "consumer": consumer,
            "limit": BIG_PAGE,
        });
        Ok(PageStream::spawn(&self.rt, move |tx| async move {
            let mut budget = PageBudget::new(http.limits().max_pages);
            loop {
                let req = match Request::json(
                    Method::POST,
                    url.clone(),
                    &body,
                    RequestKind::Create,
                    "results",
                ) {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let page = match http.send(&req).await {
                    Ok(resp) => view
                        .envelopes(&resp, &batch, include_raw)
                        .and_then(|items| {
                            budget
                                .count(&resp.body, items.len())
                                .map_err(|e| e.vendor(VENDOR).operation("results"))?;
                            Ok(items)
                        }),
                    Err(e) if is_ambiguous(&e) => Err(Error {
                        message: format!("{}; the deliveries of that answer may be lost to this consumer: read them with results(since=...)", e.message),
                        ..e
                    }),
                    Err(e) => Err(e),
                };
                let n = match &page {
                    Ok(items) => items.len(),
                    Err(_) => 0,
                };
                let failed = page.is_err();
                if tx.send(page).await.is_err() || failed || n < BIG_PAGE {
                    return;
                }
            }
        }))
    }

    /// Project-wide counts per state (`stats.json`): the project's, not a batch's, since Sama cannot filter
    /// them by client batch id.
    pub async fn project_stats(&self, from: Option<&str>, to: Option<&str>) -> Result<Value> {
        let mut url = self.url(&["stats.json"]);
        {
            let mut q = url.query_pairs_mut();
            if let Some(f) = from {
                q.append_pair("from", f);
            }
            if let Some(t) = to {
                q.append_pair("to", t);
            }
        }
        self.http
            .send(&Request::get(url, "stats"))
            .await?
            .json(VENDOR, "stats")
    }

    fn failures_of(&self, job: &JobDto) -> Vec<Failure> {
        job.tasks
            .iter()
            .flatten()
            .filter_map(|t| {
                let status = t.get("status").and_then(Value::as_str)?;
                if !matches!(status, "failed" | "canceled") {
                    return None;
                }
                let id = t.get("id").and_then(Value::as_str).unwrap_or("");
                let data = t
                    .get("data")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                let first = t
                    .get("errors")
                    .and_then(Value::as_array)
                    .and_then(|e| e.first())
                    .cloned();
                let (code, message, field) = match (status, first) {
                    ("canceled", _) => (
                        Some("canceled".to_string()),
                        "the batch creation was canceled before this task was created".to_string(),
                        None,
                    ),
                    (_, Some(e)) => (
                        e.get("type").and_then(text_of),
                        e.get("message")
                            .and_then(Value::as_str)
                            .unwrap_or("task creation failed")
                            .to_string(),
                        e.get("field").and_then(Value::as_str).map(str::to_string),
                    ),
                    _ => (None, "task creation failed".to_string(), None),
                };
                Some(Failure {
                    key: data
                        .get(&self.view.key_field)
                        .and_then(text_of)
                        .unwrap_or_else(|| id.to_string()),
                    field,
                    code,
                    message,
                })
            })
            .collect()
    }
}

/// A task's `batch_id` (a number, or a number in a string).
fn sama_batch_id(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str()?.parse().ok())
}

fn to_raw(v: &Value) -> Result<Box<RawValue>> {
    serde_json::value::to_raw_value(v).map_err(|e| bad("results", e))
}

/// `{"tasks": [...]}` (or `{"task": {...}}`) as typed tasks with their JSON text.
/// A GET of the multi-task status endpoint (one call a second): one call at a time, the next sent a second
/// after the last answer arrived. The vendor counts from when a request reaches it, which is before its
/// answer reaches us; a gap measured between sends could shrink below a second on the way (network jitter,
/// a busy machine) and draw a 429.
async fn paced_status_get(
    gate: &tokio::sync::Mutex<Option<Instant>>,
    http: &HttpClient,
    url: Url,
    operation: &'static str,
) -> Result<Response> {
    let mut last = gate.lock().await;
    if let Some(t) = *last {
        tokio::time::sleep_until((t + STATUS_INTERVAL).into()).await;
    }
    let answer = http.send(&Request::get(url, operation)).await;
    *last = Some(Instant::now());
    answer
}

fn decode_tasks(resp: &Response, operation: &str) -> Result<Vec<(TaskDto, Box<RawValue>)>> {
    let raws: Vec<Box<RawValue>> = match serde_json::from_slice::<TasksPage>(&resp.body) {
        Ok(p) => p.tasks,
        Err(e) => return Err(bad(operation, e)),
    };
    raws.into_iter()
        .map(|r| {
            Ok((
                serde_json::from_str(r.get()).map_err(|e| bad(operation, e))?,
                r,
            ))
        })
        .collect()
}

/// `priority` and `submit` of `upload(...)`: the settings of every task it creates.
fn task_settings(options: &Options) -> Result<(i64, bool)> {
    let priority = match options.get("priority") {
        None => 0,
        Some(v) => v
            .as_i64()
            .filter(|p| i32::try_from(*p).is_ok())
            .ok_or_else(|| {
                Error::invalid("priority must be a 32-bit integer (lower is worked first)")
                    .vendor(VENDOR)
                    .field("priority")
            })?,
    };
    let submit = match options.get("submit") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(Error::invalid("submit must be True or False")
                .vendor(VENDOR)
                .field("submit"))
        }
    };
    Ok((priority, submit))
}

/// Records refused by `prepare`: (row, key, field, message), a record once per problem.
type Refused = Vec<(usize, String, String, String)>;

/// The error of an upload whose records do not all match the creation schema: nothing is sent.
fn schema_error(refused: &Refused, total: u64) -> Error {
    let rows: HashSet<usize> = refused.iter().map(|r| r.0).collect();
    let shown: Vec<String> = refused
        .iter()
        .take(SHOWN_PROBLEMS)
        .map(|(row, key, field, m)| format!("record #{row} (key {key:?}) field {field:?} {m}"))
        .collect();
    let more = refused.len().saturating_sub(SHOWN_PROBLEMS);
    let (_, key, field, _) = &refused[0];
    let details = json!({"problems": refused.iter().map(|(row, key, field, m)| json!({"row": row, "key": key, "field": field, "message": m})).collect::<Vec<_>>(), "sent": 0});
    Error::invalid(format!(
        "{} of {total} records do not match the project's creation schema; nothing was sent: {}{}",
        rows.len(),
        shown.join("; "),
        if more > 0 {
            format!("; and {more} more")
        } else {
            String::new()
        }
    ))
    .vendor(VENDOR)
    .operation("upload")
    .key(key.clone())
    .field(field.clone())
    .details(details)
}

/// One failure per refused record: its first field, every problem in the message.
fn schema_failures(refused: Refused) -> Vec<Failure> {
    let mut failures: Vec<Failure> = Vec::new();
    let mut refused_keys = HashSet::new();
    for (_, key, field, message) in refused {
        let problem = format!("field {field:?} {message}");
        if refused_keys.insert(key.clone()) {
            failures.push(Failure {
                key,
                field: Some(field),
                code: Some("InvalidInputSchema".into()),
                message: problem,
            });
        } else if let Some(f) = failures.iter_mut().find(|f| f.key == key) {
            f.message = format!("{}; {problem}", f.message);
        }
    }
    failures
}

impl Keyed for (String, Value) {
    fn key(&self) -> &str {
        &self.0
    }
}

/// One upload's pieces for the driver: the batch's keys, Sama batch creation jobs of at most
/// `TASKS_PER_JOB` tasks.
struct Creations<'a> {
    adapter: &'a SamaAdapter,
    batch_id: &'a str,
}

#[async_trait::async_trait]
impl Pieces for Creations<'_> {
    type Item = (String, Value);
    type Chunk = Vec<(String, Value)>;
    /// The creation job (its Sama batch id) and the keys it carries.
    type Receipt = (u64, Vec<String>);

    async fn existing_keys(&self) -> Result<HashSet<String>> {
        self.adapter.existing_keys(self.batch_id).await
    }
    fn chunks(&self, tasks: Vec<(String, Value)>) -> Vec<Vec<(String, Value)>> {
        in_chunks(tasks, TASKS_PER_JOB)
    }
    async fn send(&self, tasks: &Vec<(String, Value)>) -> Result<(u64, Vec<String>)> {
        let created = self.adapter.run_creation(tasks).await?;
        Ok((created.sama_batch, tasks.keys()))
    }
}

#[async_trait::async_trait]
impl Adapter for SamaAdapter {
    fn consumer_results(
        &self,
        batch_id: &str,
        consumer: &str,
        include_raw: bool,
    ) -> Result<PageStream<Envelope>> {
        self.results_for_consumer(batch_id, consumer, include_raw)
    }

    fn kit(&self) -> Kit<'_> {
        Kit::new(&self.cfg, &self.http)
    }

    fn capability_settings(&self) -> Map<String, Value> {
        let mut settings = Map::new();
        settings.insert("client_batch_field".into(), json!(self.client_batch_field));
        settings.insert("key_field".into(), json!(self.key_field));
        settings
    }

    /// Nothing is created at Sama: a batch is the tasks carrying its name as their client batch id. Without
    /// `exist_ok`, a name that tasks already carry is refused.
    async fn create_batch(
        &self,
        name: &str,
        exist_ok: bool,
        options: &Options,
    ) -> Result<BatchInfo> {
        check_options(VENDOR, "create_batch", options, self.cfg.spec.batch_options)?;
        if name.trim().is_empty() {
            return Err(Error::invalid("a batch name cannot be empty")
                .vendor(VENDOR)
                .operation("create_batch")
                .field("name"));
        }
        if !exist_ok {
            let first = self.status_page(name, 1, "create_batch").await?;
            if !first.is_empty() {
                return Err(Error::new(
                    ErrorKind::DuplicateRecord,
                    format!("tasks with {} {name:?} exist already; pass exist_ok=True to add to that batch", self.client_batch_field),
                )
                .vendor(VENDOR)
                .operation("create_batch")
                .key(name));
            }
        }
        Ok(self.batch_info(name))
    }

    async fn get_batch(&self, id: &str) -> Result<BatchInfo> {
        self.check_batch_id(id)?;
        Ok(self.batch_info(id))
    }

    async fn list_batches(&self) -> Result<Vec<BatchInfo>> {
        Err(Error::unsupported(
            VENDOR,
            "list batches",
            "Sama keeps no list of client batch ids; re-attach with client.batch(name)",
        ))
    }

    async fn upload(
        &self,
        batch: &BatchInfo,
        records: Vec<UploadRecord>,
        options: UploadOptions,
        progress: Arc<UploadProgress>,
    ) -> Result<JobState> {
        check_options(
            VENDOR,
            "upload",
            &options.options,
            self.cfg.spec.upload_options,
        )?;
        let (priority, submit) = task_settings(&options.options)?;
        let total = records.len() as u64;
        let (tasks, refused) = self.prepare(&batch.id, records, priority, submit).await?;
        if !refused.is_empty() && !options.collect_errors {
            return Err(schema_error(&refused, total));
        }
        let failures = schema_failures(refused);
        let creations = Creations {
            adapter: self,
            batch_id: &batch.id,
        };
        // Neither reconciled here (`run_creation` makes each of its steps safe to repeat, as tasks are listed
        // only once created) nor bisected (records are checked against the schema first, Sama reports the rest
        // with the job).
        let plan = Plan::new(VENDOR, UPLOAD_CONCURRENCY);
        let driver = Driver::new(&creations, plan, &options, &progress);
        let mut sent = driver.run(tasks).await?;
        let mut started = Vec::new();
        for (id, keys) in sent.receipts.drain(..) {
            self.inflight_keys.lock().insert(id, Arc::new(keys));
            started.push(id);
        }
        started.sort_unstable();
        if !started.is_empty() {
            self.inflight
                .lock()
                .entry(batch.id.clone())
                .or_default()
                .extend(started.iter().copied());
        }
        let wording = Wording {
            landed: format!("were handed to Sama in batch creation jobs {started:?}"),
            details: Some(("sama_batches", json!(started))),
            ..Wording::stored()
        };
        let skipped = sent.finish(total, &progress, wording)?.skipped;
        let ids: Vec<String> = started.iter().map(u64::to_string).collect();
        let running = !started.is_empty();
        let failed = failures.len() as u64;
        Ok(JobState {
            id: if running {
                ids.join(",")
            } else {
                format!("sama-nothing-to-send-{}", uuid::Uuid::new_v4())
            },
            batch_id: batch.id.clone(),
            state: if running {
                JobPhase::Running
            } else if failed > 0 {
                JobPhase::Failed
            } else {
                JobPhase::Completed
            },
            total,
            done: skipped,
            failed,
            skipped,
            failures,
            vendor_job: running.then(|| ids.join(",")),
        })
    }

    /// The batch creation jobs' progress; once they are over, the tasks Sama could not create.
    async fn job_status(&self, job: &JobState) -> Result<JobState> {
        let Some(ids) = job.vendor_job.as_deref() else {
            return Ok(job.clone());
        };
        let ids: Vec<u64> = ids.split(',').filter_map(|s| s.parse().ok()).collect();
        let summaries = futures::future::try_join_all(
            ids.iter()
                .map(|&id| self.job_summary(id, false, "job_status")),
        )
        .await?;
        let created: u64 = summaries.iter().map(|s| s.created_count).sum();
        let mut next = job.clone();
        next.done = job.skipped + created;
        if !summaries.iter().all(JobDto::finished) {
            return Ok(next);
        }
        let mut failures = job.failures.clone();
        for (&id, s) in ids.iter().zip(&summaries) {
            if s.failed_count + s.canceled_count > 0 || s.tasks_count > s.created_count {
                let full = self.job_summary(id, true, "job_status").await?;
                failures.extend(self.failures_of(&full));
            }
        }
        self.forget(&job.batch_id, &ids);
        next.failed = failures.len() as u64;
        next.state = if failures.is_empty() {
            JobPhase::Completed
        } else {
            JobPhase::Failed
        };
        next.failures = failures;
        Ok(next)
    }

    async fn batch_status(&self, batch_id: &str) -> Result<BatchCounts> {
        self.check_batch_id(batch_id)?;
        let mut counts = BatchCounts::default();
        // Tasks this client is still having created count as pending: a running creation job's tasks less
        // those it failed, canceled or that are listed already. The job is asked first, so a task created
        // in between is listed and subtracted, never lost.
        let inflight: Vec<u64> = self
            .inflight
            .lock()
            .get(batch_id)
            .cloned()
            .unwrap_or_default();
        let mut running = Vec::new();
        let mut finished = Vec::new();
        for id in inflight {
            let s = self.job_summary(id, false, "status").await?;
            if s.finished() {
                finished.push(id);
            } else {
                running.push((id, s));
            }
        }
        if !finished.is_empty() {
            self.forget(batch_id, &finished);
        }
        let mut listed: HashMap<u64, u64> = HashMap::new();
        for t in self.tasks_for_counts(batch_id).await? {
            counts.total += 1;
            if let Some(b) = t.batch_id.as_ref().and_then(sama_batch_id) {
                *listed.entry(b).or_default() += 1;
            }
            match neutral_status(t.state.as_deref().unwrap_or("new")) {
                Status::Pending => counts.pending += 1,
                Status::Completed => counts.completed += 1,
                _ => counts.in_progress += 1,
            }
        }
        for (id, s) in running {
            let waiting = s.tasks_count.saturating_sub(
                s.failed_count + s.canceled_count + listed.get(&id).copied().unwrap_or(0),
            );
            counts.pending += waiting;
            counts.total += waiting;
        }
        Ok(counts)
    }

    /// Delivered tasks of the batch (`GET tasks/delivered.json?client_batch_id=...&from=...`), oldest delivery
    /// first. Sama's `from` is inclusive: the bound is made exclusive here.
    fn results(
        &self,
        batch_id: &str,
        since_us: Option<i64>,
        include_raw: bool,
    ) -> PageStream<Envelope> {
        let first = self.results_url(batch_id, since_us);
        let list = PageNumberList {
            first,
            page_param: "page",
            page_size: BIG_PAGE,
            total_header: "x-total-count",
            operation: "results",
            read_ahead: READ_AHEAD,
        };
        let me = self.view.clone();
        let batch = batch_id.to_string();
        let decode: Decoder<Envelope> =
            Arc::new(move |resp: &Response| me.envelopes(resp, &batch, include_raw));
        // Sama's `from` is inclusive: the bound is made exclusive after the page is counted, so a page thinned
        // by it is not taken for the short last page (which lost every later page of a large read).
        let keep: Option<Keep<Envelope>> = since_us.map(|since| {
            Arc::new(move |e: &Envelope| e.completed_us.is_none_or(|done| done > since))
                as Keep<Envelope>
        });
        page_number_stream_filtered(&self.rt, self.http.clone(), list, decode, keep)
    }

    /// Every created task of the batch with its neutral status (multi-task status, paced to one page a
    /// second). Tasks Sama failed to create, or did not create because the creation was canceled, are not
    /// tasks: they are in the upload's `job.failures()`.
    fn records(
        &self,
        batch_id: &str,
        statuses: Option<Vec<Status>>,
        include_raw: bool,
    ) -> Result<PageStream<Envelope>> {
        self.check_batch_id(batch_id)?;
        let view = self.view.clone();
        let http = self.http.clone();
        let gate = self.status_gate.clone();
        let batch = batch_id.to_string();
        let first = self.status_url(batch_id, 1);
        Ok(PageStream::spawn(&self.rt, move |tx| async move {
            let mut budget = PageBudget::new(http.limits().max_pages);
            for page in 1.. {
                let url = with_query_param(&first, "page", &page.to_string());
                let items = match paced_status_get(&gate, &http, url, "records").await {
                    Ok(resp) => decode_tasks(&resp, "records").and_then(|items| {
                        budget
                            .count(&resp.body, items.len())
                            .map_err(|e| e.vendor(VENDOR).operation("records"))?;
                        Ok(items)
                    }),
                    Err(e) => Err(e),
                };
                let items = match items {
                    Ok(i) => i,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let n = items.len();
                let page: Result<Vec<Envelope>> = items
                    .into_iter()
                    .filter_map(|(t, raw)| {
                        let status = neutral_status(t.state.as_deref().unwrap_or("new"));
                        if statuses.as_ref().is_some_and(|ss| !ss.contains(&status)) {
                            return None;
                        }
                        Some(view.record(t, raw, &batch, status, include_raw))
                    })
                    .collect();
                if tx.send(page).await.is_err() || n < STATUS_PAGE {
                    return;
                }
            }
        }))
    }

    /// Cancels the batch creation jobs still running for this batch (those this client started, and those
    /// its created tasks name). Tasks already created keep being worked: Sama has no way to stop them short
    /// of deleting them, and cancel never deletes labels.
    async fn cancel(&self, batch_id: &str) -> Result<()> {
        self.check_batch_id(batch_id)?;
        let mut ids: HashSet<u64> = self
            .inflight
            .lock()
            .get(batch_id)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .collect();
        for t in self.all_tasks(batch_id, "cancel").await? {
            if let Some(b) = t.batch_id.as_ref().and_then(sama_batch_id) {
                ids.insert(b);
            }
        }
        for id in ids {
            let s = self.job_summary(id, false, "cancel").await?;
            if !matches!(
                s.state.as_deref(),
                Some("waiting" | "processing" | "queued")
            ) {
                continue;
            }
            let req = Request {
                method: Method::POST,
                url: self.url(&["batches", &id.to_string(), "cancel.json"]),
                body: crate::engine::http::Body::Json(bytes::Bytes::new()),
                kind: RequestKind::Create,
                operation: "cancel",
                headers: vec![],
            };
            let stopped = || async {
                let s = self.job_summary(id, false, "cancel").await?;
                Ok(s.finished())
            };
            match self.create_once(&req, stopped).await {
                Ok(_) => {}
                // Finished between our look and the cancel: nothing left to stop.
                Err(e) if e.kind == ErrorKind::InvalidInput && stopped().await.unwrap_or(false) => {
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Sends delivered tasks back for rework (`PUT tasks/{id}/reject.json`); Sama delivers them again later.
    async fn reject(&self, batch_id: &str, ids: Vec<String>, reason: Option<String>) -> Result<()> {
        self.check_batch_id(batch_id)?;
        let reasons = vec![reason.unwrap_or_else(|| "Rejected through labelport".to_string())];
        let results: Vec<Result<()>> = futures::stream::iter(ids)
            .map(|id| {
                let reasons = reasons.clone();
                async move {
                    // The task must belong to this batch: a result id of another batch is refused.
                    let task = |id: String| async move {
                        let resp = self
                            .http
                            .send(&Request::get(
                                self.url(&["tasks", &format!("{id}.json")]),
                                "reject",
                            ))
                            .await
                            .map_err(|e| e.key(id.clone()))?;
                        let v: Value = resp.json(VENDOR, "reject")?;
                        Ok::<Value, Error>(v["task"].clone())
                    };
                    let current = task(id.clone()).await?;
                    let owner = current
                        .get("data")
                        .and_then(|d| d.get(&self.client_batch_field))
                        .and_then(text_of);
                    if owner.as_deref() != Some(batch_id) {
                        return Err(Error::new(
                            ErrorKind::NotFound,
                            format!("task {id} is not in batch {batch_id:?}"),
                        )
                        .vendor(VENDOR)
                        .operation("reject")
                        .key(id));
                    }
                    let req = Request::json(
                        Method::PUT,
                        self.url(&["tasks", &id, "reject.json"]),
                        &json!({ "reasons": reasons }),
                        RequestKind::Create,
                        "reject",
                    )?;
                    let rejected = || async {
                        let t = task(id.clone()).await?;
                        let state = t["state"].as_str().unwrap_or("");
                        Ok(!matches!(state, "delivered" | "acknowledged"))
                    };
                    self.create_once(&req, rejected)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.key(id.clone()))
                }
            })
            .buffer_unordered(UPLOAD_CONCURRENCY)
            .collect()
            .await;
        results.into_iter().collect()
    }

    fn api_url(&self, path: &str) -> Result<Url> {
        request_url(&self.cfg.base_url, &self.root, Some("/v2/"), path)
    }

    fn paginate(&self, url: Url) -> PageStream<Box<RawValue>> {
        let page_size = url
            .query_pairs()
            .find(|(q, _)| q == "page_size")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(BIG_PAGE);
        let mut first = with_query_param(&url, "page", "1");
        if !url.query_pairs().any(|(q, _)| q == "page_size") {
            first = with_query_param(&first, "page_size", &page_size.to_string());
        }
        let list = PageNumberList {
            first,
            page_param: "page",
            page_size,
            total_header: "x-total-count",
            operation: "request",
            read_ahead: 1,
        };
        let decode: Decoder<Box<RawValue>> = Arc::new(|resp: &Response| {
            #[derive(Deserialize)]
            struct Page {
                tasks: Option<Vec<Box<RawValue>>>,
                task: Option<Box<RawValue>>,
            }
            if let Ok(items) = serde_json::from_slice::<Vec<Box<RawValue>>>(&resp.body) {
                return Ok(items);
            }
            let p: Page = resp.json(VENDOR, "request")?;
            Ok(p.tasks
                .or_else(|| p.task.map(|t| vec![t]))
                .unwrap_or_default())
        });
        page_number_stream(&self.rt, self.http.clone(), list, decode)
    }
}

/// What decoders running off the adapter need to turn tasks into envelopes.
#[derive(Clone)]
struct SamaView {
    client_batch_field: String,
    key_field: String,
}

impl SamaView {
    /// The record key of a task: its key input, else the task id.
    fn key_of(&self, id: &str, data: &RawObject) -> String {
        data.get(&self.key_field)
            .and_then(raw_text_of)
            .unwrap_or_else(|| id.to_string())
    }

    /// The record as uploaded: the inputs the client added (client batch id, default key input) removed.
    fn input_of(&self, data: &RawObject) -> Result<Box<RawValue>> {
        if self.key_field == DEFAULT_KEY_FIELD {
            data.without(&[&self.client_batch_field, DEFAULT_KEY_FIELD])
        } else {
            data.without(&[&self.client_batch_field])
        }
    }

    fn envelopes(
        &self,
        resp: &Response,
        batch_id: &str,
        include_raw: bool,
    ) -> Result<Vec<Envelope>> {
        let items = decode_tasks(resp, "results")?;
        let mut out = Vec::with_capacity(items.len());
        for (t, raw) in items {
            let completed_us = t.delivered_at.as_deref().and_then(parse_rfc3339_us);
            out.push(Envelope {
                key: self.key_of(&t.id, &t.data),
                input: Some(self.input_of(&t.data)?),
                output: Some(match t.answers {
                    Some(a) => a,
                    None => to_raw(&json!({}))?,
                }),
                id: t.id,
                batch_id: batch_id.to_string(),
                status: Status::Completed,
                created_at: t.created_at,
                completed_at: t.delivered_at,
                vendor: VENDOR,
                raw: include_raw.then_some(raw),
                completed_us,
            });
        }
        Ok(out)
    }

    fn record(
        &self,
        t: TaskDto,
        raw: Box<RawValue>,
        batch_id: &str,
        status: Status,
        include_raw: bool,
    ) -> Result<Envelope> {
        Ok(Envelope {
            key: self.key_of(&t.id, &t.data),
            input: Some(self.input_of(&t.data)?),
            output: None,
            id: t.id,
            batch_id: batch_id.to_string(),
            status,
            created_at: t.created_at,
            completed_at: t.delivered_at,
            vendor: VENDOR,
            raw: include_raw.then_some(raw),
            completed_us: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_parsed() {
        let (code, msg) = parse_error(
            401,
            br#"{"errors":[{"type":401,"message":"Not authorized."}]}"#,
        );
        assert_eq!(
            (code.as_deref(), msg.as_deref()),
            (Some("401"), Some("Not authorized."))
        );
        let (code, msg) = parse_error(
            400,
            br#"{"errors":[{"type":"InvalidInputSchema","message":"The task input does not match the project schema"}]}"#,
        );
        assert_eq!(code.as_deref(), Some("InvalidInputSchema"));
        assert!(msg.unwrap().contains("project schema"));
        assert_eq!(parse_error(500, b"<html>"), (None, None));
        assert_eq!(parse_error(500, br#"{"errors":[]}"#), (None, None));
    }

    #[test]
    fn statuses() {
        assert_eq!(neutral_status("new"), Status::Pending);
        for s in [
            "in progress",
            "completed",
            "approved",
            "rejected",
            "something new",
        ] {
            assert_eq!(neutral_status(s), Status::InProgress, "{s}");
        }
        assert_eq!(neutral_status("delivered"), Status::Completed);
        assert_eq!(neutral_status("acknowledged"), Status::Completed);
    }

    #[test]
    fn schema_check_names_fields() {
        let schema = json!({
            "type": "object",
            "required": ["url"],
            "properties": {"url": {"type": "string"}, "n": {"type": "integer", "maximum": 10}, "day": {"type": "string", "format": "date"}},
            "additionalProperties": {"type": ["string", "number"]},
        });
        let mut out = vec![];
        check_schema(
            &schema,
            &json!({"url": "u", "n": 3, "day": "2024-01-31", "extra": 1.5}),
            "",
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
        check_schema(
            &schema,
            &json!({"n": 11, "day": "31/01/2024", "extra": {"a": 1}, "big": 3_000_000_000i64}),
            "",
            &mut out,
        );
        let fields: Vec<&str> = out.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(fields, vec!["url", "n", "day", "extra"], "{out:?}");
        // 3e9 is a number, so additionalProperties lets it through; as an integer property it would not.
        let mut out = vec![];
        check_schema(
            &schema,
            &json!({"url": "u", "n": 3_000_000_000i64}),
            "",
            &mut out,
        );
        assert_eq!(out[0].0, "n");
        assert!(out[0].1.contains("integer"), "{out:?}");
    }

    #[test]
    fn urls_keep_the_key_out() {
        let cfg = crate::vendors::resolve(
            crate::vendors::ClientArgs {
                vendor: "sama".into(),
                project: Some("117".into()),
                keywords: [("api_key".to_string(), json!("s3cr3t-key"))]
                    .into_iter()
                    .collect(),
                timeout: 30.0,
                max_retries: 2,
                ..Default::default()
            },
            |_| None,
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let s = SamaAdapter::new(cfg, rt.handle().clone()).unwrap();
        assert_eq!(
            s.url(&[]).as_str(),
            "https://api.sama.com/v2/projects/117.json"
        );
        assert_eq!(
            s.url(&["batches", "55", "continue.json"]).as_str(),
            "https://api.sama.com/v2/projects/117/batches/55/continue.json"
        );
        assert_eq!(
            s.api_url("projects/117/tasks.json").unwrap().as_str(),
            "https://api.sama.com/v2/projects/117/tasks.json"
        );
        assert_eq!(
            s.api_url("/v2/projects/117.json").unwrap().as_str(),
            "https://api.sama.com/v2/projects/117.json"
        );
        assert!(!format!("{:?}", s.http.auth().renewable()).is_empty());
        let shown = redact_url(
            &Url::parse("https://api.sama.com/v2/projects/117.json?access_key=s3cr3t-key&page=2")
                .unwrap(),
        );
        assert!(!shown.contains("s3cr3t-key"), "{shown}");
        let bad_project = crate::vendors::resolve(
            crate::vendors::ClientArgs {
                vendor: "sama".into(),
                project: Some("abc".into()),
                keywords: [("api_key".to_string(), json!("k"))].into_iter().collect(),
                timeout: 30.0,
                ..Default::default()
            },
            |_| None,
        )
        .unwrap();
        let e = SamaAdapter::new(bad_project, rt.handle().clone())
            .err()
            .unwrap();
        assert_eq!(e.field.as_deref(), Some("project"));
    }

    #[test]
    fn inputs_added_by_the_client_are_removed() {
        let v = SamaView {
            client_batch_field: "client_batch_id".into(),
            key_field: DEFAULT_KEY_FIELD.into(),
        };
        // Member order is kept, and a repeated member counts once, as the last one (as JSON parsers keep it).
        let data: RawObject = serde_json::from_str(
            r#"{"url": "x", "client_batch_id": "b", "labelport_key": "k1", "url": "u", "n": [1, {"a": null}]}"#,
        )
        .unwrap();
        let text =
            |r: Result<Box<RawValue>>| -> Value { serde_json::from_str(r.unwrap().get()).unwrap() };
        assert_eq!(
            text(v.input_of(&data)),
            json!({"url": "u", "n": [1, {"a": null}]})
        );
        assert_eq!(v.key_of("t", &data), "k1");
        let mine = SamaView {
            key_field: "url".into(),
            ..v
        };
        assert_eq!(
            text(mine.input_of(&data)),
            json!({"url": "u", "labelport_key": "k1", "n": [1, {"a": null}]})
        );
        assert_eq!(mine.key_of("t", &data), "u");
    }
}
