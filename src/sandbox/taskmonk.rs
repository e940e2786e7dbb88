//! The TaskMonk API simulator (what `taskmonk-sdk` 0.29 calls; wire facts: docs/vendors/taskmonk.md).
//!
//! TaskMonk's model against the neutral one: project = a project set up by the annotation partner
//! (seeded: `4519`; `4520` exists but the API client has no access to it), Batch = batch (numeric
//! string ids), record = task (one row of an uploaded CSV/Excel file), Job = an import job (uploads) or
//! an output job (files of results), both polled on `/job/{id}/status` until `completed == total`,
//! result = a row of the output file, fetched from `file_url` without auth.
//!
//! Auth is OAuth2 client credentials: the credentials travel in the token request's query string, the
//! token as `Authorization: Bearer` on every other call.
//!
//! Time is the sandbox clock and everything is computed from it when asked: import job `j` ingests its
//! rows at `rows_per_second` from its creation (`completed` counts them); a task ingested at `t` is
//! `new` until `t + complete_after / 2`, `in_progress` until `t + complete_after`, then `completed`
//! with seeded outputs (as a test project set to "fill output fields with random values and
//! auto-submit" behaves). TaskMonk has no exception state: a seeded `exception_rate` share of tasks is sent back
//! for rework instead, `in_progress` until `t + 2 * complete_after + 1 s`. Test hooks (`/_sim/...`, no auth, no faults):
//!
//! - `POST /_sim/ingestion` `{"rows_per_second": f, "stall": bool}`: later import jobs ingest at that
//!   rate; with `stall` they stop halfway and never move again.
//! - `POST /_sim/auto-complete` `{"enabled": bool}`: tasks of later imports complete by themselves or
//!   never (until `/_sim/batch/{b}/complete`).
//! - `POST /_sim/batch/{b}/complete` `{"outputs": {...}}`: completes every ingested task of the batch now.
//! - `POST /_sim/project/schema` `{"input_fields": [...]}`: uploads with other columns are refused
//!   (a project accepts any columns until a test sets this).
//! - `GET /_sim/state`: batches, jobs and task counts.
//!
//! Records are counted in the statistics per `external_id` column value (else per task id) when an
//! import job is created, i.e. when the rows are stored.

#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, RawPathParams, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put, MethodRouter};
use axum::{Json, Router};
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::clock::seconds_to_ms;
use super::dialect::{Kind, SettingSpec, Value as Changed};
use super::paging::Query;
use super::taskmonk_files::{self as files, FileType, Table};
use super::{Routes, Shared, Simulator};

/// What no source settles about the TaskMonk API, as settings (`dialect.rs`; docs/vendors/taskmonk.md,
/// "Findings" and "Guesses that remain").
pub(super) const DIALECT: &[SettingSpec] = &[
    super::dialect::PAGE_CAP,
    SettingSpec {
        name: "drop_key_column",
        kind: Kind::Switch,
        changed: Changed::Switch(true),
        doc: "the project does not declare `external_id` as an input field: imports drop the column, output \
              files never show it, and asking for it by name is refused (finding 2)",
    },
    SettingSpec {
        name: "date_columns",
        kind: Kind::Word(DATE_COLUMNS),
        changed: Changed::Word("unprefixed"),
        doc: "how the per-level columns of the \"batch and user\" file are spelled: `L1_U1_Completion_Date` \
              (level_user, the one name seen), `L1 U1 Completion Date` (spaced), `l1_u1_completion_date` \
              (lower_snake), or `Start Date` / `Completion Date` without a level (unprefixed) (finding 4)",
    },
    SettingSpec {
        name: "output_job_counts_rows",
        kind: Kind::Switch,
        changed: Changed::Switch(true),
        doc: "an output job counts the rows it writes, so an empty selection reports `completed: 0, total: 0` \
              (by default it counts one file) (finding 5)",
    },
    SettingSpec {
        name: "counts_as_strings",
        kind: Kind::Switch,
        changed: Changed::Switch(true),
        doc: "job and batch status counts are numeric strings (`\"12\"`) (finding 7)",
    },
    SettingSpec {
        name: "batch_status_new",
        kind: Kind::Word(&["new_count", "not_started", "none"]),
        changed: Changed::Word("none"),
        doc: "the batch status names its not-started count `new_count` (the Java SDK's v2 class), \
              `not_started` (the Python SDK's v1 docstring), or not at all (finding 7)",
    },
    SettingSpec {
        name: "refuse_start_time_update",
        kind: Kind::Switch,
        changed: Changed::Switch(true),
        doc: "a batch update carrying `start_time` is refused once the batch is Active (\"cannot be changed if \
              the batch is already Active\") (finding 6)",
    },
    SettingSpec {
        name: "no_batch_import_progress",
        kind: Kind::Switch,
        changed: Changed::Switch(true),
        doc: "`GET /job/{batch_id}/status?input_type=batch` (seen only in the Java SDK) answers 404 (finding 8)",
    },
];

const DATE_COLUMNS: &[&str] = &["level_user", "spaced", "lower_snake", "unprefixed"];

#[path = "taskmonk_hooks.rs"]
mod hooks;
#[path = "taskmonk_output.rs"]
mod output;
#[path = "taskmonk_store.rs"]
mod store;

use hooks::{sim_auto_complete, sim_complete, sim_ingestion, sim_schema, sim_state};
use output::{download, output_dictionary, output_route, OutputKind};
#[cfg(test)]
use store::ingest_offset_ms;
use store::{progress_json, Batch, Reply, SimState, TaskStatus};

pub const PROJECT: &str = "4519";
/// A project of the same organization the sandbox client was not added to.
pub const OTHER_PROJECT: &str = "4520";
const CLIENT_ID: &str = "sandbox-client";
/// The documented example's lifetime.
const DEFAULT_TOKEN_TTL_S: f64 = 3500.0;
const DEFAULT_ROWS_PER_SECOND: f64 = 5000.0;
/// Sandbox milliseconds an output job takes to write its file.
const OUTPUT_LATENCY_MS: i64 = 150;
/// How long an output file stays at its URL, in sandbox ms.
const FILE_TTL_MS: i64 = 3_600_000;
/// Decoded upload size and row limits: the vendor publishes none, so these are the sandbox's own.
const FILE_LIMIT: usize = 100 << 20;
const ROW_LIMIT: usize = 100_000;
/// The project's output fields: (name, choices); no choices = a confidence number.
const OUTPUT_FIELDS: &[(&str, &[&str])] = &[
    ("label", &["car", "truck", "bus", "bicycle"]),
    ("confidence", &[]),
    ("is_occluded", &["true", "false"]),
];
const LEVELS: u32 = 1;
/// Sandbox ms a reworked task (`exception_rate`) takes beyond twice `complete_after`.
const REWORK_MS: i64 = 1000;
const KEY_COLUMN: &str = "external_id";

pub struct TaskMonkSim {
    shared: Arc<Shared>,
    secret: String,
    token_ttl_ms: i64,
    /// access token -> expiry (sandbox ms); refresh tokens have no expiry.
    tokens: Mutex<HashMap<String, i64>>,
    refresh_tokens: Mutex<HashMap<String, ()>>,
    state: Mutex<SimState>,
}

type Answer = Result<Response, Response>;

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": code, "message": message}))).into_response()
}

fn bad_request(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "bad_request", message)
}

fn json_body(body: &[u8]) -> Result<Value, Response> {
    serde_json::from_slice(body).map_err(|e| bad_request(&format!("Invalid JSON: {e}")))
}

/// A body of white space reads as `{}` (endpoints whose every field is optional).
fn json_or_empty(body: &[u8]) -> Result<Value, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(json!({}))
    } else {
        json_body(body)
    }
}

/// A JSON scalar as the string a CSV cell holds.
fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

impl TaskMonkSim {
    pub fn new(shared: Arc<Shared>) -> Self {
        let c = &shared.config;
        let secret = hex::encode(&Sha256::digest(format!("taskmonk-secret-{}", c.seed))[..16]);
        TaskMonkSim {
            secret,
            token_ttl_ms: seconds_to_ms(c.faults.token_ttl.unwrap_or(DEFAULT_TOKEN_TTL_S)),
            tokens: Mutex::new(HashMap::new()),
            refresh_tokens: Mutex::new(HashMap::new()),
            state: Mutex::new(SimState {
                next_batch: 331,
                next_task: 100_001,
                batches: BTreeMap::new(),
                jobs: HashMap::new(),
                files: HashMap::new(),
                rows_per_second: DEFAULT_ROWS_PER_SECOND,
                stall: false,
                auto_complete: true,
                schema: None,
                next_taxonomy: 1,
            }),
            shared,
        }
    }

    fn now(&self) -> i64 {
        self.shared.clock.now_ms()
    }

    fn dialect(&self) -> &super::Dialect {
        &self.shared.config.dialect
    }

    /// A status answer's counts as the dialect writes them: numbers, or numeric strings.
    fn counts(&self, mut v: Value) -> Value {
        if self.dialect().switch("counts_as_strings") {
            if let Value::Object(o) = &mut v {
                for x in o.values_mut() {
                    if let Some(n) = x.as_u64() {
                        *x = Value::String(n.to_string());
                    }
                }
            }
        }
        v
    }

    fn complete_after_ms(&self) -> i64 {
        seconds_to_ms(self.shared.config.complete_after)
    }

    fn issue(&self) -> Response {
        let access = hex::encode(rand::random::<[u8; 24]>());
        let refresh = hex::encode(rand::random::<[u8; 24]>());
        self.tokens
            .lock()
            .insert(access.clone(), self.now() + self.token_ttl_ms);
        self.refresh_tokens.lock().insert(refresh.clone(), ());
        // Exactly these four keys: the Java SDK parses strictly.
        Json(json!({
            "token_type": "Bearer",
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": self.token_ttl_ms / 1000,
        }))
        .into_response()
    }

    fn token(&self, uri: &Uri, body: &[u8]) -> Response {
        let q = Query::parse(uri.query());
        let form = Query::parse(std::str::from_utf8(body).ok());
        let param = |k: &str| q.get(k).or_else(|| form.get(k)).map(str::to_string);
        let client_ok = param("client_id").as_deref() == Some(CLIENT_ID)
            && param("client_secret").as_deref() == Some(self.secret.as_str());
        match param("grant_type").as_deref() {
            Some("client_credentials") if client_ok => self.issue(),
            Some("refresh_token") if client_ok => {
                let known = param("refresh_token")
                    .is_some_and(|r| self.refresh_tokens.lock().remove(&r).is_some());
                if known {
                    self.issue()
                } else {
                    error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "Invalid refresh token",
                    )
                }
            }
            Some("client_credentials" | "refresh_token") => error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "Bad client credentials",
            ),
            _ => error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "grant_type must be client_credentials or refresh_token",
            ),
        }
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<(), Response> {
        let unauthorized = |m: &str| error(StatusCode::UNAUTHORIZED, "unauthorized", m);
        let value = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| unauthorized("Full authentication is required"))?;
        let token = match value.trim().split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim(),
            _ => return Err(unauthorized("Bearer token required")),
        };
        match self.tokens.lock().get(token).copied() {
            None => Err(unauthorized("Invalid access token")),
            Some(exp) if self.now() >= exp => Err(unauthorized("Access token expired")),
            Some(_) => Ok(()),
        }
    }

    /// Auth first, then access to the project.
    fn access(&self, headers: &HeaderMap, project: &str) -> Result<(), Response> {
        self.authorize(headers)?;
        match project {
            PROJECT => Ok(()),
            OTHER_PROJECT => Err(error(
                StatusCode::FORBIDDEN,
                "forbidden",
                "Unauthorised Access",
            )),
            _ => Err(error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("Project {project} not found"),
            )),
        }
    }
}

fn parse_batch_id(raw: &str) -> Result<u64, Response> {
    raw.parse::<u64>().map_err(|_| {
        error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("Batch {raw} not found"),
        )
    })
}

// ---- handlers ------------------------------------------------------------------------------------

type S = State<Arc<TaskMonkSim>>;

/// An authorised call to a project's endpoint: the bearer token is valid and the client may use the
/// project `{projectId}`. Extracted before anything else of the request is looked at.
struct Project(Arc<TaskMonkSim>, String);

impl FromRequestParts<Arc<TaskMonkSim>> for Project {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, t: &Arc<TaskMonkSim>) -> Result<Self, Response> {
        let params = RawPathParams::from_request_parts(parts, t)
            .await
            .map_err(IntoResponse::into_response)?;
        let p = params
            .iter()
            .find(|(k, _)| *k == "projectId")
            .map_or_else(String::new, |(_, v)| v.to_string());
        t.access(&parts.headers, &p)?;
        Ok(Project(Arc::clone(t), p))
    }
}

async fn token(State(t): S, uri: Uri, body: Bytes) -> Response {
    t.token(&uri, &body)
}

fn batch_fields(
    v: &Value,
    current: Option<&Batch>,
) -> Result<(String, i64, String, Value, Option<String>), Response> {
    let name = match v.get("batch_name") {
        Some(Value::String(n)) if !n.trim().is_empty() => n.clone(),
        None if current.is_some() => current.map(|b| b.name.clone()).unwrap_or_default(),
        _ => return Err(bad_request("batch_name is required")),
    };
    let priority = match v.get("priority") {
        None | Some(Value::Null) => current.map_or(0, |b| b.priority),
        Some(p) => p
            .as_i64()
            .or_else(|| p.as_str().and_then(|s| s.trim().parse().ok()))
            .ok_or_else(|| bad_request("priority must be an integer"))?,
    };
    let comments = match v.get("comments") {
        None | Some(Value::Null) => current.map(|b| b.comments.clone()).unwrap_or_default(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(bad_request("comments must be a string")),
    };
    let notifications = match v.get("notifications") {
        None | Some(Value::Null) => current.map_or(json!([]), |b| b.notifications.clone()),
        Some(n @ Value::Array(_)) => n.clone(),
        Some(_) => return Err(bad_request("notifications must be an array")),
    };
    let start_time = match v.get("start_time") {
        None | Some(Value::Null) => current.and_then(|b| b.start_time.clone()),
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(bad_request("start_time must be a date string")),
    };
    Ok((name, priority, comments, notifications, start_time))
}

async fn create_batch(Project(t, p): Project, body: Bytes) -> Answer {
    let v = json_body(&body)?;
    let (name, priority, comments, notifications, start_time) = batch_fields(&v, None)?;
    let mut st = t.state.lock();
    let id = st.next_batch;
    st.next_batch += 1;
    st.batches.insert(
        id,
        Batch {
            id,
            project: p,
            name,
            priority,
            comments,
            notifications,
            start_time,
            state: "Active".into(),
            input_fields: vec![],
            imports: vec![],
            manual: HashMap::new(),
        },
    );
    Ok(Json(json!({"id": id.to_string()})).into_response())
}

async fn list_batches(Project(t, p): Project) -> Answer {
    let now = t.now();
    let st = t.state.lock();
    let items: Vec<Value> = st
        .batches
        .values()
        .filter(|b| b.project == p)
        .map(|b| TaskMonkSim::batch_json(b, now))
        .collect();
    Ok(Json(Value::Array(items)).into_response())
}

/// The batch `raw` of project `p`, locked.
fn with_batch<R>(
    t: &TaskMonkSim,
    p: &str,
    raw: &str,
    f: impl FnOnce(&mut SimState, u64) -> Result<R, Response>,
) -> Result<R, Response> {
    let id = parse_batch_id(raw)?;
    let mut st = t.state.lock();
    match st.batches.get(&id) {
        Some(b) if b.project == p => f(&mut st, id),
        _ => Err(error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("Batch {raw} not found"),
        )),
    }
}

async fn update_batch(
    Project(t, p): Project,
    Path((_, b)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    let v = json_body(&body)?;
    let refuse_start_time = t.dialect().switch("refuse_start_time_update")
        && v.get("start_time").is_some_and(|s| !s.is_null());
    let now = t.now();
    with_batch(&t, &p, &b, |st, id| {
        let batch = st.batches.get_mut(&id).expect("checked");
        if refuse_start_time && TaskMonkSim::batch_json(batch, now)["status"] == "Active" {
            return Err(bad_request(
                "start_time cannot be changed if the batch is already Active",
            ));
        }
        let (name, priority, comments, notifications, start_time) = batch_fields(&v, Some(batch))?;
        batch.name = name;
        batch.priority = priority;
        batch.comments = comments;
        batch.notifications = notifications;
        batch.start_time = start_time;
        Ok(Json(json!({"id": id.to_string()})).into_response())
    })
}

async fn update_state(
    Project(t, p): Project,
    Path((_, b)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    let v = json_body(&body)?;
    let Some(state) = v.get("state").and_then(Value::as_str).map(str::to_string) else {
        return Err(bad_request("state is required"));
    };
    with_batch(&t, &p, &b, |st, id| {
        st.batches.get_mut(&id).expect("checked").state = state.clone();
        Ok(Json(json!({"id": id.to_string(), "state": state})).into_response())
    })
}

/// A file import is base64 text: both SDKs send it as `text/plain` (the Java SDK's `StringEntity` as
/// `text/plain; charset=ISO-8859-1`), never as JSON; a body parser chosen by Content-Type refuses JSON
/// over text that is not JSON.
fn refuse_json(headers: &HeaderMap) -> Result<(), Response> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Expecting text/plain body: the file is sent as base64 text",
        ));
    }
    Ok(())
}

impl TaskMonkSim {
    fn import_file(
        &self,
        p: &str,
        b: &str,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
        reply: Reply,
    ) -> Answer {
        refuse_json(headers)?;
        let q = Query::parse(uri.query());
        let named = q
            .get("fileType")
            .or_else(|| q.get("file_type"))
            .filter(|s| !s.trim().is_empty());
        let bytes = files::decode_upload(body, FILE_LIMIT).map_err(|m| {
            if m.contains("larger") {
                error(StatusCode::PAYLOAD_TOO_LARGE, "too_large", &m)
            } else {
                bad_request(&m)
            }
        })?;
        let kind = match named {
            Some(n) => FileType::parse(n).unwrap_or_else(|| files::sniff(&bytes)),
            None => files::sniff(&bytes),
        };
        let table = files::parse(&bytes, kind).map_err(|m| bad_request(&m))?;
        with_batch(self, p, b, |st, id| {
            self.create_import(st, id, p, table, reply)
        })
    }
}

/// The route of a file import: the same upload, answered in the endpoint's reply shape.
fn import_route(reply: Reply) -> MethodRouter<Arc<TaskMonkSim>> {
    post(
        move |Project(t, p): Project,
              Path((_, b)): Path<(String, String)>,
              uri: Uri,
              headers: HeaderMap,
              body: Bytes| async move { t.import_file(&p, &b, &uri, &headers, &body, reply) },
    )
}

/// The 2025 Postman path, without the project.
async fn import_no_project(
    State(t): S,
    Path(b): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    t.authorize(&headers)?;
    let project = parse_batch_id(&b)
        .ok()
        .and_then(|id| t.state.lock().batches.get(&id).map(|x| x.project.clone()))
        .unwrap_or_else(|| PROJECT.to_string());
    t.access(&headers, &project)?;
    t.import_file(&project, &b, &uri, &headers, &body, Reply::Snake)
}

async fn import_dictionary(
    Project(t, p): Project,
    Path((_, b)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    let v = json_body(&body)?;
    let Value::Array(items) = v else {
        return Err(bad_request("A JSON array of tasks is required"));
    };
    let mut header: Vec<String> = Vec::new();
    let mut maps = Vec::new();
    for item in items {
        let Value::Object(mut obj) = item else {
            return Err(bad_request("Each task must be a JSON object"));
        };
        let mut row = Map::new();
        if let Some(Value::Object(data)) = obj.remove("data") {
            if let Some(ext) = obj.remove("external_id") {
                row.insert(KEY_COLUMN.to_string(), Value::String(cell(&ext)));
            }
            row.extend(data);
        } else {
            row = obj;
        }
        for k in row.keys() {
            if !header.contains(k) {
                header.push(k.clone());
            }
        }
        maps.push(row);
    }
    let rows = maps
        .iter()
        .map(|m| {
            header
                .iter()
                .map(|h| m.get(h).map(cell).unwrap_or_default())
                .collect()
        })
        .collect();
    let table = Table { header, rows };
    with_batch(&t, &p, &b, |st, id| {
        t.create_import(st, id, &p, table, Reply::Snake)
    })
}

/// Import by URL: the file at `file_url`; the sandbox fetches only `file://` paths and loopback URLs.
async fn import_url(
    Project(t, p): Project,
    Path((_, b)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    let v = json_body(&body)?;
    let Some(raw_url) = text_of(&v, &["file_url", "fileUrl"]) else {
        return Err(bad_request("file_url is required"));
    };
    let url =
        url::Url::parse(&raw_url).map_err(|e| bad_request(&format!("Invalid file_url: {e}")))?;
    let fetch_error = |m: String| error(StatusCode::BAD_REQUEST, "fetch_failed", &m);
    let bytes: Vec<u8> = match url.scheme() {
        "file" => {
            let path = url
                .to_file_path()
                .map_err(|_| bad_request("Invalid file path"))?;
            std::fs::read(&path).map_err(|e| fetch_error(format!("Cannot read {raw_url}: {e}")))?
        }
        "http" | "https" if is_loopback(&url) => {
            let resp = reqwest::get(url.clone())
                .await
                .map_err(|_| fetch_error(format!("Cannot fetch {raw_url}")))?;
            if !resp.status().is_success() {
                return Err(fetch_error(format!(
                    "Fetching {raw_url} answered {}",
                    resp.status()
                )));
            }
            resp.bytes()
                .await
                .map_err(|_| fetch_error(format!("Cannot fetch {raw_url}")))?
                .to_vec()
        }
        _ => {
            return Err(fetch_error(
                "The sandbox fetches only file:// and loopback URLs".to_string(),
            ))
        }
    };
    let bytes = files::decode_upload(&bytes, FILE_LIMIT).map_err(|m| bad_request(&m))?;
    let kind = text_of(&v, &["file_type", "fileType"])
        .and_then(|f| FileType::parse(&f))
        .unwrap_or_else(|| files::sniff(&bytes));
    let table = files::parse(&bytes, kind).map_err(|m| bad_request(&m))?;
    with_batch(&t, &p, &b, |st, id| {
        t.create_import(st, id, &p, table, Reply::Camel)
    })
}

fn text_of(v: &Value, names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| v.get(*n).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// The Java SDK's `addTask`: one task with an external id.
async fn add_task(Project(t, p): Project, body: Bytes) -> Answer {
    let v = json_body(&body)?;
    let Some(batch) = text_of(&v, &["batch_id", "batchId"]) else {
        return Err(bad_request("batch_id is required"));
    };
    let mut header = Vec::new();
    let mut row = Vec::new();
    if let Some(ext) = text_of(&v, &["externalId", "external_id"]) {
        header.push(KEY_COLUMN.to_string());
        row.push(ext);
    }
    if let Some(Value::Object(input)) = v.get("input") {
        for (k, x) in input {
            header.push(k.clone());
            row.push(cell(x));
        }
    }
    let table = Table {
        header,
        rows: vec![row],
    };
    with_batch(&t, &p, &batch, |st, id| {
        t.create_import(st, id, &p, table, Reply::Task)
    })
}

/// Creates a taxonomy of the project.
async fn create_taxonomy(Project(t, _): Project, body: Bytes) -> Answer {
    let v = json_body(&body)?;
    if text_of(&v, &["name"]).is_none() {
        return Err(bad_request("name is required"));
    }
    let mut st = t.state.lock();
    let id = st.next_taxonomy;
    st.next_taxonomy += 1;
    Ok(Json(json!({"id": id.to_string()})).into_response())
}

/// Taxonomy import: categories from an Excel (or CSV) file in the multipart part `file`; answers
/// their count.
async fn import_taxonomy(_: Project, uri: Uri, headers: HeaderMap, body: Bytes) -> Answer {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let file = super::multipart::part(content_type, &body, "file").map_err(|m| bad_request(&m))?;
    let q = Query::parse(uri.query());
    let kind = q
        .get("file_type")
        .or_else(|| q.get("fileType"))
        .and_then(FileType::parse)
        .unwrap_or_else(|| files::sniff(file));
    let table = files::parse(file, kind).map_err(|m| bad_request(&m))?;
    Ok(Json(json!({"count": table.rows.len()})).into_response())
}

async fn job_status(
    Project(t, p): Project,
    Path((_, j)): Path<(String, String)>,
    uri: Uri,
) -> Answer {
    let now = t.now();
    let q = Query::parse(uri.query());
    let st = t.state.lock();
    if q.get("input_type") == Some("batch") && !t.dialect().switch("no_batch_import_progress") {
        // `{j}` is a batch id: the upload progress of the whole batch.
        let id = parse_batch_id(&j)?;
        let Some(b) = st.batches.get(&id).filter(|b| b.project == p) else {
            return Err(error(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("Batch {j} not found"),
            ));
        };
        let (mut c, mut total) = (0, 0);
        for jid in &b.imports {
            if let Some(job) = st.jobs.get(jid) {
                let (jc, jt) = t.job_progress(job, now);
                c += jc;
                total += jt;
            }
        }
        return Ok(Json(t.counts(progress_json(c, total))).into_response());
    }
    match st.jobs.get(&j).filter(|job| job.project == p) {
        Some(job) => {
            let (c, total) = t.job_progress(job, now);
            Ok(Json(t.counts(progress_json(c, total))).into_response())
        }
        None => Err(error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("Job {j} not found"),
        )),
    }
}

async fn batch_status(Project(t, p): Project, Path((_, b)): Path<(String, String)>) -> Answer {
    let now = t.now();
    with_batch(&t, &p, &b, |st, id| {
        let batch = &st.batches[&id];
        let (mut new, mut prog, mut done) = (0u64, 0u64, 0u64);
        for task in t.tasks(st, batch, now) {
            match task.status {
                TaskStatus::New => new += 1,
                TaskStatus::InProgress { .. } => prog += 1,
                TaskStatus::Completed { .. } => done += 1,
            }
        }
        let mut counts = json!({
            "in_progress": prog,
            "completed": done,
            "total": new + prog + done,
        });
        match t.dialect().word("batch_status_new").unwrap_or("new_count") {
            "none" => {}
            name => counts[name] = json!(new),
        }
        Ok(Json(t.counts(counts)).into_response())
    })
}

async fn not_found(uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        &format!("No route for {}", uri.path()),
    )
}

impl Simulator for TaskMonkSim {
    fn router(self: Arc<Self>, routes: &Routes) -> Router {
        type Route = MethodRouter<Arc<TaskMonkSim>>;
        let table: Vec<(&'static str, Route)> = vec![
            (
                "/api/project/{projectId}/batch",
                get(list_batches).post(create_batch),
            ),
            (
                "/api/project/{projectId}/batch/{batchId}",
                put(update_batch),
            ),
            (
                "/api/project/{projectId}/batch/{batchId}/state",
                put(update_state),
            ),
            (
                "/api/project/v2/{projectId}/batch/{batchId}/tasks/import",
                import_route(Reply::Snake),
            ),
            (
                "/api/project/{projectId}/batch/{batchId}/tasks/import",
                import_route(Reply::Camel),
            ),
            ("/api/batch/{batchId}/tasks/import", post(import_no_project)),
            (
                "/api/project/{projectId}/batch/{batchId}/tasks/import/dictionary",
                post(import_dictionary),
            ),
            (
                "/api/project/{projectId}/job/{jobId}/status",
                get(job_status),
            ),
            (
                "/api/project/{projectId}/batch/{batchId}/status",
                get(batch_status),
            ),
            (
                "/api/project/v2/{projectId}/batch/{batchId}/status",
                get(batch_status),
            ),
            (
                "/api/project/v2/{projectId}/batch/{batchId}/output",
                output_route(OutputKind::Batch, false),
            ),
            (
                "/api/project/{projectId}/batch/{batchId}/output",
                output_route(OutputKind::Batch, true),
            ),
            (
                "/api/project/{projectId}/batch/{batchId}/output/file",
                output_route(OutputKind::BatchAndUser, false),
            ),
            (
                "/api/project/v2/{projectId}/batch/{batchId}/levels/output",
                output_route(OutputKind::Levels, false),
            ),
            (
                "/api/project/{projectId}/batch/{batchId}/output/dictionary",
                post(output_dictionary),
            ),
            (
                "/api/project/{projectId}/batch/{batchId}/tasks/import/url",
                post(import_url),
            ),
            ("/api/project/{projectId}/task/external", post(add_task)),
            ("/api/project/{projectId}/taxonomy", post(create_taxonomy)),
            (
                "/api/project/v2/{projectId}/taxonomy/import",
                post(import_taxonomy),
            ),
            (
                "/api/project/v2/{projectId}/taxonomy/{taxonomyId}/import",
                post(import_taxonomy),
            ),
            ("/_files/{token}/{name}", get(download)),
        ];
        let mut r: Router<Arc<TaskMonkSim>> = Router::new().route(
            "/api/oauth2/token",
            routes.exempt("/api/oauth2/token", post(token)),
        );
        for (template, route) in table {
            r = r.route(template, routes.api(template, route));
        }
        let hooks: Vec<(&'static str, Route)> = vec![
            ("/_sim/ingestion", post(sim_ingestion)),
            ("/_sim/auto-complete", post(sim_auto_complete)),
            ("/_sim/project/schema", post(sim_schema)),
            ("/_sim/batch/{batchId}/complete", post(sim_complete)),
            ("/_sim/state", get(sim_state)),
        ];
        for (template, route) in hooks {
            r = r.route(template, routes.control(template, route));
        }
        r.fallback(not_found).with_state(self)
    }

    fn project(&self) -> String {
        PROJECT.to_string()
    }

    fn credentials(&self) -> Vec<(String, String)> {
        vec![
            ("client_id".to_string(), CLIENT_ID.to_string()),
            ("client_secret".to_string(), self.secret.clone()),
        ]
    }

    fn expire_tokens(&self) {
        for expiry in self.tokens.lock().values_mut() {
            *expiry = i64::MIN;
        }
    }

    fn error_body(&self, status: StatusCode, message: &str, _path: &str) -> Value {
        let code = match status.as_u16() {
            429 => "rate_limited",
            500..=599 => "server_error",
            _ => "error",
        };
        json!({"error": code, "message": message})
    }
}

#[cfg(test)]
#[path = "taskmonk_tests.rs"]
mod tests;
