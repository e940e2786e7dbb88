//! The Alegion API simulator (legacy `app.alegion.com/api/v1`; wire facts: docs/vendors/alegion.md).
//!
//! Alegion's model against the neutral one: project = workflow (seeded, read-only), Batch = batch,
//! record = input record (`data` + optional `metadata`, the record key), Job = the import calls of
//! one upload, result = a finished record's `resultData`, listed per batch with `minCreatedAt` /
//! `maxCreatedAt` on the result's `createdAt`.
//!
//! The backend is Spring: error bodies copy Spring's shapes (epoch-millisecond `timestamp`), a bad
//! token is a 500 AccessDeniedException, path UUIDs go through Java's lenient `UUID.fromString`, and
//! auth is checked before anything else (a security filter runs before the controller).

// Errors here are finished HTTP answers, built at most once per request; boxing them buys nothing.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::alegion_store::{
    password, Batch, NewRecord, Override, Rec, Status, StatusSet, Store, Workflow,
};
use super::clock::{iso_ms, parse_instant_us, seconds_to_ms};
use super::dialect::{Kind, SettingSpec, Value as Setting};
use super::paging::{self, BadParam, PageRequest, Paging, Query};
use super::{multipart, Routes, Shared, Simulator};

/// What no source settles about the Alegion API, as settings (`dialect.rs`; docs/vendors/alegion.md, whose
/// findings the docs name).
pub(super) const DIALECT: &[SettingSpec] = &[
    super::dialect::PAGE_CAP,
    SettingSpec {
        name: "strict_status_filter",
        kind: Kind::Switch,
        changed: Setting::Switch(true),
        doc: "the records list's status filter takes only the states the tutorial shows (queued, in-progress, \
              exception, canceled) and answers any other value (complete, error) with Spring's 422 conversion \
              error, as an enum parameter would (findings 2 and 5)",
    },
    SettingSpec {
        name: "complete_word",
        kind: Kind::Word(&["complete", "completed"]),
        changed: Setting::Word("completed"),
        doc: "the word a finished record's status reads in the records list: complete (a UI's colour map, the \
              default) or completed (finding 4)",
    },
    SettingSpec {
        name: "enum_case_status",
        kind: Kind::Switch,
        changed: Setting::Switch(true),
        doc: "the records list writes each status as a Spring enum constant (COMPLETE, IN_PROGRESS, QUEUED), \
              the form Spring gives an enum nobody mapped to the tutorial's lower-case words",
    },
];
/// The record states the tutorial shows; the only `status` filter values a strict server takes.
const DOCUMENTED_STATES: [&str; 4] = ["queued", "in-progress", "exception", "canceled"];

#[path = "alegion_wire.rs"]
mod wire;

use wire::ResultOut;

const USERNAME: &str = "sandbox";
const DEFAULT_TOKEN_TTL_S: f64 = 3600.0;
/// "The import endpoints currently limit imports to 1,000 records per request."
const IMPORT_LIMIT: usize = 1000;
/// Spring's page parameters: 20 a page unless asked, at most 1,000, oldest first.
const PAGING: Paging = Paging::new("page", "pageSize", 20, 1000);

pub struct AlegionSim {
    shared: Arc<Shared>,
    store: Store,
    password: String,
    token_ttl_ms: i64,
    /// Token -> expiry (sandbox ms).
    tokens: Mutex<HashMap<String, i64>>,
}

/// Handlers answer with an error response or a success response alike; `?` returns early.
type Answer = Result<Response, Response>;

impl AlegionSim {
    pub fn new(shared: Arc<Shared>) -> Self {
        let c = &shared.config;
        let store = Store::new(
            c.seed,
            seconds_to_ms(c.complete_after),
            c.exception_rate,
            shared.clock.origin_ms(),
        );
        AlegionSim {
            password: password(c.seed),
            token_ttl_ms: seconds_to_ms(c.faults.token_ttl.unwrap_or(DEFAULT_TOKEN_TTL_S)),
            store,
            tokens: Mutex::new(HashMap::new()),
            shared,
        }
    }

    fn now(&self) -> i64 {
        self.shared.clock.now_ms()
    }

    // ---- errors ----------------------------------------------------------------------------

    /// Spring Boot's error attributes.
    fn spring(
        &self,
        status: StatusCode,
        exception: Option<&str>,
        message: &str,
        path: &str,
    ) -> Response {
        let mut body = Map::new();
        body.insert("timestamp".into(), json!(self.now()));
        body.insert("status".into(), json!(status.as_u16()));
        body.insert(
            "error".into(),
            json!(status.canonical_reason().unwrap_or("Error")),
        );
        if let Some(e) = exception {
            body.insert("exception".into(), json!(e));
        }
        body.insert("message".into(), json!(message));
        body.insert("path".into(), json!(path));
        (status, Json(Value::Object(body))).into_response()
    }

    fn bad_request(&self, message: &str, path: &str) -> Response {
        self.spring(StatusCode::BAD_REQUEST, None, message, path)
    }

    fn not_found(&self, what: &str, id: Uuid, path: &str) -> Response {
        self.spring(
            StatusCode::NOT_FOUND,
            None,
            &format!("{what} not found: {id}"),
            path,
        )
    }

    // ---- auth ------------------------------------------------------------------------------

    fn login(&self, body: &[u8], path: &str) -> Answer {
        let creds: Value = serde_json::from_slice(body)
            .map_err(|e| self.bad_request(&format!("JSON parse error: {e}"), path))?;
        let user = creds.get("username").and_then(Value::as_str);
        let pass = creds.get("password").and_then(Value::as_str);
        if user != Some(USERNAME) || pass != Some(self.password.as_str()) {
            return Err(self.spring(StatusCode::UNAUTHORIZED, None, "Bad credentials", path));
        }
        let token = hex::encode(rand::random::<[u8; 24]>());
        self.tokens
            .lock()
            .insert(token.clone(), self.now() + self.token_ttl_ms);
        Ok(Json(json!({
            "access_token": token,
            "expires_in": self.token_ttl_ms / 1000,
            "token_type": "bearer",
        }))
        .into_response())
    }

    fn authorize(&self, headers: &HeaderMap, path: &str) -> Result<(), Response> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(self.spring(
                StatusCode::UNAUTHORIZED,
                None,
                "Full authentication is required to access this resource",
                path,
            ));
        };
        let incorrect = || {
            self.spring(
                StatusCode::INTERNAL_SERVER_ERROR,
                Some("org.springframework.security.access.AccessDeniedException"),
                "Incorrect token provided",
                path,
            )
        };
        let value = value.to_str().map_err(|_| incorrect())?.trim();
        let token = match value.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
            _ => return Err(incorrect()),
        };
        let expiry = self.tokens.lock().get(token).copied();
        match expiry {
            None => Err(incorrect()),
            Some(exp) if self.now() >= exp => Err(self.spring(
                StatusCode::UNAUTHORIZED,
                None,
                "Unable to authenticate using the Authorization header",
                path,
            )),
            Some(_) => Ok(()),
        }
    }

    // ---- shapes ----------------------------------------------------------------------------

    // ---- helpers ---------------------------------------------------------------------------

    fn batch_for(
        &self,
        raw_id: &str,
        path: &str,
    ) -> Result<Arc<parking_lot::RwLock<Batch>>, Response> {
        let id = java_uuid(raw_id).map_err(conversion_error)?;
        self.store
            .batch(id)
            .ok_or_else(|| self.not_found("Batch", id, path))
    }

    fn workflow_for(&self, raw_id: &str, path: &str) -> Result<&Workflow, Response> {
        let id = java_uuid(raw_id).map_err(conversion_error)?;
        self.store
            .workflow(id)
            .ok_or_else(|| self.not_found("Workflow", id, path))
    }

    /// The vendor's paging, its cap lowered by the dialect's `page_cap`.
    fn paging(&self) -> Paging {
        let cap = self.shared.config.dialect.page_cap();
        Paging {
            max_size: cap.map_or(PAGING.max_size, |c| c.min(PAGING.max_size)),
            ..PAGING
        }
    }

    fn page_request(&self, q: &Query) -> Result<PageRequest, Response> {
        PageRequest::parse(q, &self.paging(), false).map_err(|e| param_error(&e))
    }

    /// A JSON body, or Spring's 400.
    fn json(&self, body: &[u8], path: &str) -> Result<Value, Response> {
        serde_json::from_slice(body)
            .map_err(|e| self.bad_request(&format!("JSON parse error: {e}"), path))
    }

    fn instant(q: &Query, name: &str) -> Result<Option<i64>, Response> {
        match q.get(name).filter(|v| !v.trim().is_empty()) {
            None => Ok(None),
            Some(v) => parse_instant_us(v).map(Some).ok_or_else(|| {
                param_error(&BadParam {
                    value: v.to_string(),
                    expected: "java.util.Date",
                })
            }),
        }
    }

    /// A page of a listing: `body` with the totals and links of `page`.
    fn list(
        &self,
        uri: &Uri,
        headers: &HeaderMap,
        mut body: Response,
        page: &PageRequest,
        total: u64,
        filters: &[(&str, &str)],
    ) -> Response {
        let base = paging::base_url(headers, uri.path(), &self.fallback_host());
        body.headers_mut()
            .extend(page.headers(&self.paging(), &base, total, filters));
        body
    }

    /// For the odd client that sends no `Host` header.
    fn fallback_host(&self) -> String {
        format!("127.0.0.1:{}", self.shared.port)
    }

    /// Parses and validates records; all or nothing.
    fn parse_import(&self, body: &[u8], path: &str) -> Result<Vec<NewRecord>, Response> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| self.bad_request(&format!("JSON parse error: {e}"), path))?;
        let Value::Array(items) = v else {
            return Err(self.bad_request(
                "JSON parse error: Cannot deserialize instance of `java.util.ArrayList` out of non-array value",
                path,
            ));
        };
        if items.len() > IMPORT_LIMIT {
            return Err(too_many(items.len()));
        }
        items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                Self::parse_record(item)
                    .map_err(|m| self.bad_request(&format!("records[{i}]: {m}"), path))
            })
            .collect()
    }

    fn parse_record(item: Value) -> Result<NewRecord, String> {
        let Value::Object(mut obj) = item else {
            return Err("an input record must be an object".into());
        };
        let data = match obj.remove("data") {
            Some(Value::Object(d)) => d,
            Some(_) => return Err("`data` must be an object".into()),
            None => return Err("`data` is required".into()),
        };
        // Jackson coerces scalars into a String field; objects and arrays it refuses.
        let metadata = match obj.remove("metadata") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => Some(v.to_string()),
            Some(_) => return Err("`metadata` must be a string".into()),
        };
        Ok(NewRecord { data, metadata })
    }

    /// Stores records and answers them as created (`queued`, as the import documents).
    fn store_records(
        &self,
        batch: &parking_lot::RwLock<Batch>,
        items: Vec<NewRecord>,
    ) -> Vec<Value> {
        let mut b = batch.write();
        let now = self.now();
        let range = self.store.append(&mut b, now, items);
        let created = &b.records[range];
        let keys: Vec<String> = created
            .iter()
            .map(|r| r.metadata.clone().unwrap_or_else(|| r.id.to_string()))
            .collect();
        self.shared.stats.created(keys.iter().map(String::as_str));
        created
            .iter()
            .map(|r| Self::record_json(&b, r, Status::Queued))
            .collect()
    }

    fn parse_csv(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        path: &str,
    ) -> Result<Vec<NewRecord>, Response> {
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let file =
            multipart::part(content_type, body, "file").map_err(|m| self.bad_request(&m, path))?;
        let file = file.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(file);
        if std::str::from_utf8(file).is_err() {
            return Err(self.bad_request("The CSV file must be UTF-8 encoded", path));
        }
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(file);
        let names = reader
            .headers()
            .map_err(|e| self.bad_request(&format!("Invalid CSV: {e}"), path))?
            .clone();
        let mut out = Vec::new();
        for row in reader.records() {
            let row = row.map_err(|e| self.bad_request(&format!("Invalid CSV: {e}"), path))?;
            if out.len() == IMPORT_LIMIT {
                return Err(too_many(IMPORT_LIMIT + 1 + reader.records().count()));
            }
            let mut data = Map::new();
            let mut metadata = None;
            for (name, value) in names.iter().zip(row.iter()) {
                if name == "metadata" {
                    metadata = (!value.is_empty()).then(|| value.to_string());
                } else {
                    data.insert(name.to_string(), Value::String(value.to_string()));
                }
            }
            out.push(NewRecord { data, metadata });
        }
        Ok(out)
    }
}

/// Java's lenient `UUID.fromString` (JDK 9+): five dash-separated hex groups of any length, each
/// masked to its field; longer than 36 characters is refused first.
pub fn java_uuid(s: &str) -> Result<Uuid, String> {
    if s.len() > 36 {
        return Err("UUID string too large".into());
    }
    let invalid = || format!("Invalid UUID string: {s}");
    let groups: Vec<&str> = s.split('-').collect();
    if groups.len() != 5 {
        return Err(invalid());
    }
    let mut v = [0u64; 5];
    for (slot, g) in v.iter_mut().zip(&groups) {
        if g.is_empty() || !g.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(invalid());
        }
        *slot = u64::from_str_radix(g, 16).map_err(|_| invalid())?;
    }
    let msb = (v[0] & 0xffff_ffff) << 32 | (v[1] & 0xffff) << 16 | (v[2] & 0xffff);
    let lsb = (v[3] & 0xffff) << 48 | (v[4] & 0xffff_ffff_ffff);
    Ok(Uuid::from_u64_pair(msb, lsb))
}

fn conversion_error(detail: String) -> Response {
    unprocessable(format!(
        "Failed to convert value of type 'java.lang.String' to required type 'java.util.UUID'; \
         nested exception is java.lang.IllegalArgumentException: {detail}"
    ))
}

fn param_error(e: &BadParam) -> Response {
    let nested = if e.expected == "int" {
        format!(
            "java.lang.NumberFormatException: For input string: \"{}\"",
            e.value
        )
    } else {
        format!(
            "org.springframework.core.convert.ConversionFailedException: Failed to convert from type \
             [java.lang.String] to type [@org.springframework.web.bind.annotation.RequestParam {}] \
             for value '{}'",
            e.expected, e.value
        )
    };
    unprocessable(format!(
        "Failed to convert value of type 'java.lang.String' to required type '{}'; nested exception is {nested}",
        e.expected
    ))
}

fn too_many(n: usize) -> Response {
    unprocessable(format!(
        "Imports are limited to {IMPORT_LIMIT} records per request; this request has {n}"
    ))
}

fn unprocessable(message: String) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({ "message": message })),
    )
        .into_response()
}

// ---- handlers ----------------------------------------------------------------------------------

type S = State<Arc<AlegionSim>>;

/// An authorised call: the bearer token is valid. Extracted before anything else of the request is
/// looked at.
struct Authed(Arc<AlegionSim>);

impl FromRequestParts<Arc<AlegionSim>> for Authed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, a: &Arc<AlegionSim>) -> Result<Self, Response> {
        a.authorize(&parts.headers, parts.uri.path())?;
        Ok(Authed(Arc::clone(a)))
    }
}

async fn login(State(a): S, uri: Uri, body: Bytes) -> Answer {
    a.login(&body, uri.path())
}

async fn list_workflows(Authed(a): Authed, uri: Uri, headers: HeaderMap) -> Answer {
    let page = a.page_request(&Query::parse(uri.query()))?;
    let mut all: Vec<&Workflow> = a.store.workflows.iter().collect();
    all.sort_by_key(|w| (w.created_ms, w.id));
    let items: Vec<Value> = shown(&page, &all, |w| AlegionSim::workflow_json(w));
    Ok(a.list(
        &uri,
        &headers,
        Json(items).into_response(),
        &page,
        all.len() as u64,
        &[],
    ))
}

async fn list_batches(
    Path(wf): Path<String>,
    Authed(a): Authed,
    uri: Uri,
    headers: HeaderMap,
) -> Answer {
    let w = a.workflow_for(&wf, uri.path())?;
    let page = a.page_request(&Query::parse(uri.query()))?;
    let batches = a.store.batches_of(w.id);
    let mut keys: Vec<(i64, Uuid, usize)> = Vec::new();
    for (k, b) in batches.iter().enumerate() {
        let b = b.read();
        keys.push((b.created_ms, b.id, k));
    }
    keys.sort_unstable();
    let items: Vec<Value> = shown(&page, &keys, |&(_, _, k)| {
        AlegionSim::batch_json(&batches[k].read())
    });
    Ok(a.list(
        &uri,
        &headers,
        Json(items).into_response(),
        &page,
        keys.len() as u64,
        &[],
    ))
}

/// The page of an ascending listing, in the order asked for.
fn shown<T, U>(page: &PageRequest, sorted: &[T], f: impl Fn(&T) -> U) -> Vec<U> {
    let (s, e) = page.window(sorted.len() as u64);
    let mut items: Vec<U> = sorted[s as usize..e as usize].iter().map(f).collect();
    if page.descending {
        items.reverse();
    }
    items
}

async fn create_batch(Path(wf): Path<String>, Authed(a): Authed, uri: Uri, body: Bytes) -> Answer {
    let path = uri.path();
    let w = a.workflow_for(&wf, path)?;
    let v = a.json(&body, path)?;
    let name = match v.get("name") {
        Some(Value::String(n)) => n.clone(),
        _ => {
            return Err(a.bad_request(
                "Validation failed: 'name' is required and must be a string",
                path,
            ))
        }
    };
    let enabled = match v.get("isEnabled") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(a.bad_request("JSON parse error: 'isEnabled' must be a boolean", path))
        }
    };
    let batch = a.store.create_batch(w, name, enabled, a.now());
    let json = AlegionSim::batch_json(&batch.read());
    Ok(Json(json).into_response())
}

async fn get_batch(Path(id): Path<String>, Authed(a): Authed, uri: Uri) -> Answer {
    let b = a.batch_for(&id, uri.path())?;
    let json = AlegionSim::batch_json(&b.read());
    Ok(Json(json).into_response())
}

const PUT_FIELDS: [&str; 7] = [
    "id",
    "name",
    "workflowId",
    "createdAt",
    "isEnabled",
    "priority",
    "isActive",
];

async fn put_batch(Path(id): Path<String>, Authed(a): Authed, uri: Uri, body: Bytes) -> Answer {
    let path = uri.path();
    let batch = a.batch_for(&id, path)?;
    let v = a.json(&body, path)?;
    let Value::Object(obj) = v else {
        return Err(a.bad_request("JSON parse error: a batch object is required", path));
    };
    let missing: Vec<&str> = PUT_FIELDS
        .iter()
        .copied()
        .filter(|f| matches!(obj.get(*f), None | Some(Value::Null)))
        .collect();
    if !missing.is_empty() {
        return Err(a.bad_request(
            &format!(
                "Validation failed: required fields missing: {}",
                missing.join(", ")
            ),
            path,
        ));
    }
    let (Some(name), Some(enabled)) = (obj["name"].as_str(), obj["isEnabled"].as_bool()) else {
        return Err(a.bad_request(
            "JSON parse error: 'name' must be a string and 'isEnabled' a boolean",
            path,
        ));
    };
    // id, workflowId and createdAt cannot change; priority and isActive are deprecated.
    let mut b = batch.write();
    b.name = name.to_string();
    let now = a.now();
    b.set_enabled(enabled, now);
    Ok(Json(AlegionSim::batch_json(&b)).into_response())
}

/// What an import endpoint takes: one record, a JSON array of them, or a CSV file.
#[derive(Clone, Copy)]
enum Import {
    One,
    Json,
    Csv,
}

async fn import(
    Path(id): Path<String>,
    Authed(a): Authed,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
    kind: Import,
) -> Answer {
    let path = uri.path();
    let batch = a.batch_for(&id, path)?;
    let records = match kind {
        Import::One => {
            let v = a.json(&body, path)?;
            vec![AlegionSim::parse_record(v).map_err(|m| a.bad_request(&m, path))?]
        }
        Import::Json => a.parse_import(&body, path)?,
        Import::Csv => a.parse_csv(&headers, &body, path)?,
    };
    let mut created = a.store_records(&batch, records);
    Ok(match kind {
        Import::One => Json(created.pop().unwrap_or(Value::Null)),
        Import::Json | Import::Csv => Json(Value::Array(created)),
    }
    .into_response())
}

/// The route of an import endpoint.
fn import_route(kind: Import) -> MethodRouter<Arc<AlegionSim>> {
    post(
        move |id: Path<String>, a: Authed, uri: Uri, headers: HeaderMap, body: Bytes| {
            import(id, a, uri, headers, body, kind)
        },
    )
}

async fn list_records(l: Listing) -> Answer {
    let status = l.q.get("status").filter(|s| !s.trim().is_empty());
    let dialect = &l.a.shared.config.dialect;
    if let Some(list) = status.filter(|_| dialect.switch("strict_status_filter")) {
        if let Some(bad) = list
            .split(',')
            .find(|w| !DOCUMENTED_STATES.contains(&w.trim()))
        {
            return Err(unprocessable(format!(
                "Failed to convert value of type 'java.lang.String' to required type 'RecordStatus'; nested \
                 exception is java.lang.IllegalArgumentException: No enum constant RecordStatus.{}",
                bad.trim()
            )));
        }
    }
    let set = status.map_or(StatusSet::all(), StatusSet::parse);

    let b = l.batch.read();
    let p = b.progress(l.a.now(), l.a.store.complete_after_ms);
    let range = b.created_range(l.min, l.max);
    let total = b.count(&p, set, range.0, range.1);
    let window = l.page.window(total);
    let mut items: Vec<Value> = b
        .select_records(&p, set, range, window, total)
        .into_iter()
        .map(|i| AlegionSim::record_json(&b, &b.records[i], b.status(&p, i)))
        .collect();
    drop(b);
    if l.page.descending {
        items.reverse();
    }
    if let Some(word) = dialect.word("complete_word").filter(|w| *w != "complete") {
        for item in items.iter_mut().filter(|i| i["status"] == "complete") {
            item["status"] = json!(word);
        }
    }
    if dialect.switch("enum_case_status") {
        for item in items.iter_mut() {
            if let Some(word) = item["status"].as_str() {
                item["status"] = json!(word.to_ascii_uppercase().replace('-', "_"));
            }
        }
    }
    let filters = carried_filters(&l.q, &["status", "minCreatedAt", "maxCreatedAt"]);
    l.answer(Json(items).into_response(), total, &filters)
}

async fn list_results(l: Listing) -> Answer {
    let (a, b) = (&l.a, l.batch.read());
    let p = b.progress(a.now(), a.store.complete_after_ms);
    let (total, refs) = b.results(&p, l.min, l.max, |total| l.page.window(total));
    let mut results: Vec<(&Rec, i64)> = refs
        .iter()
        .map(|r| (&b.records[r.index], r.created_ms))
        .collect();
    if l.page.descending {
        results.reverse();
    }
    let filters = carried_filters(&l.q, &["minCreatedAt", "maxCreatedAt"]);
    let body = if wants_csv(&l.headers) {
        let csv = a
            .results_csv(&b, &results)
            .map_err(|e| a.spring(StatusCode::INTERNAL_SERVER_ERROR, None, &e, l.uri.path()))?;
        let mut res = csv.into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv;charset=UTF-8"),
        );
        res
    } else {
        let items: Vec<ResultOut> = results
            .iter()
            .map(|(r, t)| a.result_out(&b, r, *t))
            .collect();
        Json(items).into_response()
    };
    l.answer(body, total, &filters)
}

/// An authorised listing of a batch's records or results: the batch, the page, and the
/// `minCreatedAt` / `maxCreatedAt` bounds (µs), read in the order the server validates them.
struct Listing {
    a: Arc<AlegionSim>,
    batch: Arc<parking_lot::RwLock<Batch>>,
    q: Query,
    page: PageRequest,
    min: Option<i64>,
    max: Option<i64>,
    uri: Uri,
    headers: HeaderMap,
}

impl FromRequestParts<Arc<AlegionSim>> for Listing {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, a: &Arc<AlegionSim>) -> Result<Self, Response> {
        let Path(id) = Path::<String>::from_request_parts(parts, a)
            .await
            .map_err(IntoResponse::into_response)?;
        let Authed(a) = Authed::from_request_parts(parts, a).await?;
        let batch = a.batch_for(&id, parts.uri.path())?;
        let q = Query::parse(parts.uri.query());
        let page = a.page_request(&q)?;
        let min = AlegionSim::instant(&q, "minCreatedAt")?;
        let max = AlegionSim::instant(&q, "maxCreatedAt")?;
        Ok(Listing {
            a,
            batch,
            q,
            page,
            min,
            max,
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
        })
    }
}

impl Listing {
    /// `body` as this page, with its totals and links.
    fn answer(&self, body: Response, total: u64, filters: &[(&str, &str)]) -> Answer {
        let l = self;
        Ok(l.a.list(&l.uri, &l.headers, body, &l.page, total, filters))
    }
}

/// `/_sim/records/{recordId}/status` `{"status": ...}`: what Alegion staff do by hand (restart or
/// cancel an exception), or forcing a record's fate in a test.
async fn sim_set_status(State(a): S, Path(id): Path<String>, body: Bytes) -> Response {
    let Ok(id) = java_uuid(&id) else {
        return sim_error(StatusCode::BAD_REQUEST, "invalid record id");
    };
    let o = match sim_override(&a, &body) {
        Ok(o) => o,
        Err(res) => return res,
    };
    let Some((batch, i)) = a.store.find_record(id) else {
        return sim_error(StatusCode::NOT_FOUND, &format!("no record {id}"));
    };
    let mut b = batch.write();
    a.store.set_overrides(&mut b, &[i], o);
    let p = b.progress(a.now(), a.store.complete_after_ms);
    Json(AlegionSim::record_json(&b, &b.records[i], b.status(&p, i))).into_response()
}

/// `/_sim/batches/{batchId}/status` `{"status": ..., "from": "exception", "count": n}`: the same
/// for many records of a batch at once (in creation order; `from` and `count` optional), e.g. staff
/// restarting every exception.
async fn sim_set_batch_status(State(a): S, Path(id): Path<String>, body: Bytes) -> Response {
    let Ok(id) = java_uuid(&id) else {
        return sim_error(StatusCode::BAD_REQUEST, "invalid batch id");
    };
    let o = match sim_override(&a, &body) {
        Ok(o) => o,
        Err(res) => return res,
    };
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let from = v.get("from").and_then(Value::as_str).map(StatusSet::parse);
    let count = v
        .get("count")
        .and_then(Value::as_u64)
        .map_or(usize::MAX, |n| n as usize);
    let Some(batch) = a.store.batch(id) else {
        return sim_error(StatusCode::NOT_FOUND, &format!("no batch {id}"));
    };
    let mut b = batch.write();
    let p = b.progress(a.now(), a.store.complete_after_ms);
    let targets: Vec<usize> = (0..b.records.len())
        .filter(|&i| from.is_none_or(|set| set.contains(b.status(&p, i))))
        .take(count)
        .collect();
    a.store.set_overrides(&mut b, &targets, o);
    Json(json!({ "updated": targets.len() })).into_response()
}

/// The override a `/_sim/` body asks for (`in-progress` restarts now, `complete` completes now).
fn sim_override(a: &AlegionSim, body: &[u8]) -> Result<Override, Response> {
    let status = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("status").and_then(Value::as_str).map(str::to_string));
    let now = a.now();
    match status.as_deref() {
        Some("exception") => Ok(Override::Exception),
        Some("canceled") => Ok(Override::Canceled),
        Some("in-progress") => Ok(Override::InProgress(now)),
        Some("complete") => Ok(Override::Complete(now)),
        _ => Err(sim_error(
            StatusCode::BAD_REQUEST,
            "expected {\"status\": \"exception\" | \"canceled\" | \"in-progress\" | \"complete\"}",
        )),
    }
}

fn sim_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "message": message }))).into_response()
}

fn wants_csv(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("text/csv"))
}

fn carried_filters<'q>(q: &'q Query, names: &[&'static str]) -> Vec<(&'static str, &'q str)> {
    names
        .iter()
        .filter_map(|&n| q.get(n).filter(|v| !v.is_empty()).map(|v| (n, v)))
        .collect()
}

async fn not_found(State(a): S, uri: Uri) -> Response {
    a.spring(
        StatusCode::NOT_FOUND,
        None,
        "No message available",
        uri.path(),
    )
}

impl Simulator for AlegionSim {
    fn router(self: Arc<Self>, routes: &Routes) -> Router {
        type Route = MethodRouter<Arc<AlegionSim>>;
        let table: Vec<(&'static str, Route, bool)> = vec![
            ("/api/v1/login", post(login), false),
            ("/api/v1/workflows", get(list_workflows), true),
            (
                "/api/v1/workflows/{workflowId}/batches",
                get(list_batches).post(create_batch),
                true,
            ),
            (
                "/api/v1/batches/{batchId}",
                get(get_batch).put(put_batch),
                true,
            ),
            (
                "/api/v1/batches/{batchId}/records",
                get(list_records).merge(import_route(Import::One)),
                true,
            ),
            (
                "/api/v1/batches/{batchId}/records/import",
                import_route(Import::Json),
                true,
            ),
            (
                "/api/v1/batches/{batchId}/records/import-csv",
                import_route(Import::Csv),
                true,
            ),
            ("/api/v1/batches/{batchId}/results", get(list_results), true),
        ];
        let mut r: Router<Arc<AlegionSim>> = Router::new();
        for (template, route, faulty) in table {
            let route = if faulty {
                routes.api(template, route)
            } else {
                routes.exempt(template, route)
            };
            // The real server accepts a trailing slash (`/results/?...`).
            r = r
                .route(template, route.clone())
                .route(&format!("{template}/"), route);
        }
        let record_hook = routes.control("/_sim/records/{recordId}/status", post(sim_set_status));
        let batch_hook =
            routes.control("/_sim/batches/{batchId}/status", post(sim_set_batch_status));
        r.route("/_sim/records/{recordId}/status", record_hook)
            .route("/_sim/batches/{batchId}/status", batch_hook)
            .fallback(not_found)
            .with_state(self)
    }

    fn project(&self) -> String {
        self.store.workflows[0].id.to_string()
    }

    fn credentials(&self) -> Vec<(String, String)> {
        vec![
            ("username".to_string(), USERNAME.to_string()),
            ("password".to_string(), self.password.clone()),
        ]
    }

    fn expire_tokens(&self) {
        for expiry in self.tokens.lock().values_mut() {
            *expiry = i64::MIN;
        }
    }

    fn error_body(&self, status: StatusCode, message: &str, path: &str) -> Value {
        json!({
            "timestamp": self.now(),
            "status": status.as_u16(),
            "error": status.canonical_reason().unwrap_or("Error"),
            "message": message,
            "path": path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_uuid_is_lenient_like_the_jdk() {
        assert_eq!(
            java_uuid("1-1-1-1-1").unwrap().to_string(),
            "00000001-0001-0001-0001-000000000001"
        );
        assert_eq!(
            java_uuid("739B1978-CB5B-4188-9D1D-37A394D67F5A")
                .unwrap()
                .to_string(),
            "739b1978-cb5b-4188-9d1d-37a394d67f5a"
        );
        assert_eq!(
            java_uuid("739b1978cb5b41889d1d37a394d67f5a").unwrap_err(),
            "Invalid UUID string: 739b1978cb5b41889d1d37a394d67f5a"
        );
        assert!(java_uuid("1-1-1-1-1-1")
            .unwrap_err()
            .starts_with("Invalid UUID string"));
        assert!(java_uuid("g-1-1-1-1").is_err());
        assert_eq!(
            java_uuid("739b1978-cb5b-4188-9d1d-37a394d67f5a0").unwrap_err(),
            "UUID string too large"
        );
    }
}
