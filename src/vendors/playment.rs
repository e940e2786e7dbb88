//! Playment (`api.playment.io`; seed document 001, vendors/playment.md).
//!
//! Neutral model onto Playment: `project` = project_id; `Batch` = batch (created through
//! `/v1/project/{p}/batch`, found by name in the project details); record = job, its fields sent as the
//! job's `data` (so a record carries one of Playment's data shapes: `image_url`, `video_data` or
//! `sensor_data`), its key as `reference_id`; `Job` = the create-job calls of one upload (one request
//! per record, under adaptive concurrency and the client's `rate_limit=`); result = the job's result
//! file, fetched from its `result` URL through `/v1/attachments` (a redirect to a signed URL that never
//! sees the key); result `id` = job_id. Auth: the `x-api-key` header.
//!
//! Idempotency: Playment refuses a second job with the same `reference_id` in a project (400
//! `FS_0001`), so a create can be resent after any failure: a duplicate means "already created", and
//! its job is recovered from the batch's job list (`page_token` paging). An upload first lists the
//! batch and sends only keys it does not hold.
//!
//! Playment gives no timestamps on jobs: `created_at` is unknown, `completed_at` is the result file's
//! `Last-Modified` (second precision), and `results(since)` filters on it here.

// The engine's `Error` is large by design (every fact a user needs); boxing it here alone buys nothing.
#![allow(clippy::result_large_err)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{HeaderValue, LOCATION};
use reqwest::Method;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use url::Url;

use super::config::{check_options, ClientConfig, Options};
use super::kit::{self, Kit};
use super::model::*;
use super::upload::{in_chunks, Driver, Pieces, Plan, Wording};
use super::{Adapter, UploadOptions, UploadProgress};
use crate::engine::auth::{refused_with_401, KeyPlacement, StaticKey};
use crate::engine::concurrency::{AdaptiveLimit, LimitConfig};
use crate::engine::http::{
    bad_response, read_limited, request_url, too_large, BodyError, HttpClient, Request, Response,
};
use crate::engine::pagination::PageBudget;
use crate::engine::redact::redact_url;
use crate::engine::retry::{
    is_ambiguous, is_retryable, read_retry_after, Outcome, RequestKind, RetryAfter, RetryPolicy,
};
use crate::engine::runner::{run, Step};
use crate::engine::stream::PageStream;
use crate::engine::{Error, ErrorKind, Result};

const VENDOR: &str = "playment";
/// Result files fetched at once while streaming results.
const RESULT_FETCHES: usize = 8;
const DATA_SHAPES: [&str; 3] = ["image_url", "video_data", "sensor_data"];

/// Playment's envelope: `{"success": false, "error": {"code", "message"}}`.
fn parse_error(_status: u16, body: &[u8]) -> (Option<String>, Option<String>) {
    #[derive(Deserialize)]
    struct E {
        code: Option<String>,
        message: Option<String>,
    }
    #[derive(Deserialize)]
    struct Env {
        error: Option<E>,
    }
    match serde_json::from_slice::<Env>(body) {
        Ok(Env { error: Some(e) }) => (e.code, e.message),
        _ => (None, None),
    }
}

/// Playment answers most failures with 400; its code says what kind of failure it is.
fn by_code(mut e: Error) -> Error {
    e.kind = match e.code.as_deref() {
        Some(
            "auth-failure" | "unauthorized" | "core.webutil.token_auth" | "core.webutil.auther",
        ) => ErrorKind::Auth,
        Some("resource_error" | "FS_0006") => ErrorKind::NotFound,
        Some("FS_0001" | "BATCH_CREATION") => ErrorKind::DuplicateRecord,
        Some("rate_limited") => ErrorKind::RateLimited,
        _ => e.kind,
    };
    e
}

/// The `data` of a success envelope.
fn data<T: for<'de> Deserialize<'de>>(resp: &Response, operation: &str) -> Result<T> {
    #[derive(Deserialize)]
    struct Env<T> {
        success: bool,
        data: Option<T>,
    }
    let env: Env<T> = resp.json(VENDOR, operation)?;
    match (env.success, env.data) {
        (true, Some(d)) => Ok(d),
        _ => Err(Error::new(
            ErrorKind::Vendor,
            "Playment answered without success and data",
        )
        .vendor(VENDOR)
        .operation(operation)
        .code("bad_response")),
    }
}

/// A job's status onto the neutral ones (the pull API's vocabulary is open: playment.md 7.6).
fn neutral_status(s: &str) -> Status {
    match s.to_ascii_lowercase().as_str() {
        "completed" | "complete" => Status::Completed,
        "failed" => Status::Failed,
        "in_progress" | "in-progress" | "inprogress" => Status::InProgress,
        _ => Status::Pending,
    }
}

#[derive(Deserialize)]
struct JobItem {
    id: String,
    reference_id: String,
    status: String,
}

#[derive(Deserialize)]
struct BatchPage {
    #[serde(default)]
    jobs: Vec<Box<RawValue>>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize, Clone)]
struct BatchDetail {
    id: String,
    name: Option<String>,
    created_at: Option<String>,
}

#[derive(Deserialize)]
struct Details {
    #[serde(default)]
    batches: Vec<Box<RawValue>>,
}

#[derive(Deserialize)]
struct JobDto {
    #[serde(default)]
    result: Option<String>,
}

/// What one record's create came to.
enum Created {
    Job,
    /// `FS_0001`: the project already holds this reference_id.
    Duplicate,
    Refused(Failure),
    Error(Error),
}

struct Inner {
    cfg: ClientConfig,
    http: Arc<HttpClient>,
    /// No redirects, no credentials of its own: the attachments call (key added by hand) and the signed
    /// storage URL (never the key).
    files: reqwest::Client,
    limit: Arc<AdaptiveLimit>,
    retry: RetryPolicy,
    rt: tokio::runtime::Handle,
}

pub struct PlaymentAdapter(Arc<Inner>);

impl PlaymentAdapter {
    pub fn new(cfg: ClientConfig, rt: tokio::runtime::Handle) -> Result<Self> {
        if cfg.base_url.cannot_be_a_base() {
            return Err(Error::invalid("base_url cannot be a base").field("base_url"));
        }
        check_job_options(&cfg.options)?;
        let limits = limit_config(&cfg.options)?;
        let retry = cfg.retry_policy();
        let limit = AdaptiveLimit::new(limits);
        let key = StaticKey::new(
            KeyPlacement::Header("x-api-key"),
            cfg.credentials["api_key"].expose(),
            refused_with_401,
        );
        let http = kit::http_client(&cfg, key, parse_error)?.with_congestion(limit.clone());
        let files = reqwest::Client::builder()
            .user_agent(crate::engine::http::USER_AGENT)
            .timeout(cfg.timeout)
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .tls_certs_merge(cfg.tls_roots.iter().cloned())
            .build()
            .map_err(|e| {
                Error::new(
                    ErrorKind::Vendor,
                    format!("could not build the HTTP client: {e}"),
                )
            })?;
        Ok(PlaymentAdapter(Arc::new(Inner {
            cfg,
            http: Arc::new(http),
            files,
            limit,
            retry,
            rt,
        })))
    }
}

/// The job settings a client or an upload may carry: `tag` or `work_flow_id`, `priority_weight`.
fn check_job_options(o: &Options) -> Result<()> {
    for name in ["tag", "work_flow_id"] {
        if let Some(v) = o.get(name) {
            if v.as_str().is_none_or(|s| s.trim().is_empty()) {
                return Err(Error::invalid(format!("{name} must be a non-empty string"))
                    .vendor(VENDOR)
                    .field(name));
            }
        }
    }
    if let Some(v) = o.get("priority_weight") {
        if !v.as_i64().is_some_and(|w| (1..=10).contains(&w)) || v.is_f64() {
            return Err(Error::invalid(format!(
                "priority_weight must be an integer from 1 (lowest) to 10 (highest), not {v}"
            ))
            .vendor(VENDOR)
            .field("priority_weight"));
        }
    }
    Ok(())
}

/// The bounds of the adaptive upload concurrency: `max_concurrency` (client option, default 64, at most
/// 1,024) raises or lowers the ceiling; the limit starts at 4 (or the ceiling, if lower) and halves on 429/503.
fn limit_config(o: &Options) -> Result<LimitConfig> {
    let mut limits = LimitConfig::default();
    if let Some(v) = o.get("max_concurrency") {
        let n = v
            .as_u64()
            .filter(|n| (1..=MAX_CONCURRENCY).contains(n) && !v.is_f64())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "max_concurrency must be an integer from 1 to {MAX_CONCURRENCY}, not {v}"
                ))
                .vendor(VENDOR)
                .field("max_concurrency")
            })?;
        limits.max = n as usize;
        limits.initial = limits.initial.min(limits.max);
    }
    Ok(limits)
}

/// More requests in flight than this is a denial of service, not an upload.
const MAX_CONCURRENCY: u64 = 1024;

/// A record must hold one of Playment's data shapes; the other fields travel along in `data`.
fn check_record(r: &UploadRecord) -> Option<Failure> {
    if DATA_SHAPES.iter().any(|k| r.data.contains_key(*k)) {
        return None;
    }
    Some(Failure {
        key: r.key.clone(),
        field: Some("image_url".into()),
        code: Some("FS_0003".into()),
        message: "a Playment record needs the data to annotate: an image_url, video_data or sensor_data field".into(),
    })
}

/// The records holding data to annotate, and (with `collect`) a failure for each of the others; without
/// `collect`, the first record without data refuses the upload before anything is sent.
fn with_data(
    records: Vec<UploadRecord>,
    collect: bool,
) -> Result<(Vec<UploadRecord>, Vec<Failure>)> {
    let mut failures: Vec<Failure> = Vec::new();
    let mut good = Vec::with_capacity(records.len());
    for r in records {
        match check_record(&r) {
            None => good.push(r),
            Some(f) if collect => failures.push(f),
            Some(f) => {
                return Err(Error::invalid(format!("{}; nothing was sent", f.message))
                    .vendor(VENDOR)
                    .operation("upload")
                    .key(f.key)
                    .field("image_url")
                    .code("FS_0003"))
            }
        }
    }
    Ok((good, failures))
}

/// A refused record as the error that stops an upload.
fn refusal(f: Failure) -> Error {
    let kind = if f.code.as_deref() == Some("FS_0001") {
        ErrorKind::DuplicateRecord
    } else {
        ErrorKind::InvalidInput
    };
    let mut e = Error::new(kind, f.message).vendor(VENDOR).key(f.key);
    e.code = f.code;
    e.field = f.field;
    e
}

/// What a create the vendor took came to.
enum Landed {
    Job,
    /// `FS_0001` for this key: the project holds a job with it already.
    Duplicate(String),
}

/// One upload's pieces for the driver: the batch's reference_ids, one create-job call per record.
struct Jobs<'a> {
    inner: &'a Arc<Inner>,
    batch_id: &'a str,
    url: Url,
    settings: Map<String, Value>,
}

#[async_trait::async_trait]
impl Pieces for Jobs<'_> {
    type Item = UploadRecord;
    type Chunk = Vec<UploadRecord>;
    type Receipt = Landed;

    async fn existing_keys(&self) -> Result<HashSet<String>> {
        Ok(self
            .inner
            .keys_in(self.batch_id)
            .await?
            .into_keys()
            .collect())
    }
    fn chunks(&self, records: Vec<UploadRecord>) -> Vec<Vec<UploadRecord>> {
        in_chunks(records, 1)
    }
    async fn send(&self, job: &Vec<UploadRecord>) -> Result<Landed> {
        let r = &job[0];
        match self
            .inner
            .create(&self.url, self.batch_id, &self.settings, r)
            .await
        {
            Created::Job => Ok(Landed::Job),
            Created::Duplicate => Ok(Landed::Duplicate(r.key.clone())),
            Created::Refused(f) => Err(refusal(f)),
            Created::Error(e) => Err(e),
        }
    }
    /// A duplicate counts once the batch is seen to hold it (`place_duplicates`).
    fn landed(&self, receipt: &Landed, _len: usize) -> u64 {
        matches!(receipt, Landed::Job) as u64
    }
}

impl Inner {
    /// FS_0001: created by an earlier attempt whose answer was lost, or by a run that was cut short. The
    /// batch's job list says which job holds it; a key held elsewhere in the project is refused.
    async fn place_duplicates(
        self: &Arc<Self>,
        batch_id: &str,
        keys: Vec<String>,
        progress: &UploadProgress,
        failures: &mut Vec<Failure>,
    ) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let now_present = self.keys_in(batch_id).await?;
        for key in keys {
            if now_present.contains_key(&key) {
                progress.sent.fetch_add(1, Ordering::Relaxed);
            } else {
                failures.push(Failure {
                    key,
                    field: Some("reference_id".into()),
                    code: Some("FS_0001".into()),
                    message: "this key (reference_id) is already used by a job in another batch of the project".into(),
                });
            }
        }
        Ok(())
    }
}

impl Inner {
    fn url(&self, path: &str) -> Url {
        let mut u = self.cfg.base_url.clone();
        u.set_path(path);
        u
    }

    fn project_path(&self, version: &str, rest: &str) -> Url {
        self.url(&format!("/{version}/projects/{}/{rest}", self.cfg.project))
    }

    async fn get(&self, url: Url, operation: &'static str) -> Result<Response> {
        self.http
            .send(&Request::get(url, operation))
            .await
            .map_err(by_code)
    }

    async fn batches(&self) -> Result<Vec<(BatchDetail, Box<RawValue>)>> {
        let resp = self
            .get(self.project_path("v0", "details"), "batches")
            .await?;
        let d: Details = data(&resp, "batches")?;
        d.batches
            .into_iter()
            .map(|raw| {
                let b: BatchDetail = serde_json::from_str(raw.get()).map_err(|e| {
                    Error::new(ErrorKind::Vendor, format!("unexpected batch object: {e}"))
                        .vendor(VENDOR)
                })?;
                Ok((b, raw))
            })
            .collect()
    }

    fn info(b: BatchDetail, raw: &RawValue) -> BatchInfo {
        BatchInfo {
            id: b.id,
            name: b.name,
            created_at: b.created_at,
            raw: serde_json::from_str(raw.get()).unwrap_or(Value::Null),
        }
    }

    /// One page of a batch's jobs and the next token (`None` at the end).
    async fn jobs_page(
        &self,
        batch_id: &str,
        token: Option<&str>,
        operation: &'static str,
    ) -> Result<(Vec<Box<RawValue>>, Option<String>)> {
        let mut url = self.project_path("v0", &format!("batch/{batch_id}"));
        if let Some(t) = token {
            url.query_pairs_mut().append_pair("page_token", t);
        }
        let resp = self.get(url, operation).await.map_err(|e| match e.kind {
            ErrorKind::NotFound => Error {
                message: format!("no batch {batch_id:?} in project {}", self.cfg.project),
                ..e
            },
            _ => e,
        })?;
        let page: BatchPage = data(&resp, operation)?;
        let next = page
            .next_page_token
            .filter(|t| !t.is_empty() && Some(t.as_str()) != token);
        let next = if page.jobs.is_empty() { None } else { next };
        Ok((page.jobs, next))
    }

    /// Streams a batch's jobs page by page; a token seen twice ends with an error.
    fn walk_jobs(
        self: &Arc<Self>,
        batch_id: &str,
        operation: &'static str,
    ) -> PageStream<Box<RawValue>> {
        let (me, batch) = (self.clone(), batch_id.to_string());
        PageStream::spawn(&self.rt, move |tx| async move {
            let mut token: Option<String> = None;
            let mut seen = HashSet::new();
            let mut budget = PageBudget::new(me.http.limits().max_pages);
            loop {
                let page = me
                    .jobs_page(&batch, token.as_deref(), operation)
                    .await
                    .and_then(|(items, next)| {
                        budget
                            .count_items(&items)
                            .map_err(|e| e.vendor(VENDOR).operation(operation))?;
                        Ok((items, next))
                    });
                match page {
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                    Ok((items, next)) => {
                        if tx.send(Ok(items)).await.is_err() {
                            return;
                        }
                        match next {
                            None => return,
                            Some(t) if !seen.insert(t.clone()) => {
                                let _ = tx
                                    .send(Err(Error::new(
                                        ErrorKind::Vendor,
                                        format!("page_token {t} came back twice"),
                                    )
                                    .vendor(VENDOR)
                                    .operation(operation)))
                                    .await;
                                return;
                            }
                            Some(t) => token = Some(t),
                        }
                    }
                }
            }
        })
    }

    /// reference_id -> job id of every job in the batch.
    async fn keys_in(self: &Arc<Self>, batch_id: &str) -> Result<HashMap<String, String>> {
        let mut out = HashMap::new();
        let mut s = self.walk_jobs(batch_id, "upload");
        while let Some(page) = s.next_page().await {
            for raw in page? {
                let j: JobItem = parse_item(&raw, "upload")?;
                out.insert(j.reference_id, j.id);
            }
        }
        Ok(out)
    }

    fn job_settings(&self, upload: &Options) -> Result<(Url, Map<String, Value>)> {
        check_job_options(upload)?;
        let get = |k: &str| upload.get(k).or_else(|| self.cfg.options.get(k)).cloned();
        let mut fields = Map::new();
        let url = match (get("work_flow_id"), get("tag")) {
            (Some(wf), _) => {
                fields.insert("work_flow_id".into(), wf);
                self.project_path("v1", "jobs")
            }
            (None, Some(tag)) => {
                fields.insert("tag".into(), tag);
                self.project_path("v0", "jobs")
            }
            (None, None) => {
                return Err(Error::invalid(
                    "Playment needs the tag (or work_flow_id) it gave you at integration: pass tag=... to Client or upload",
                )
                .vendor(VENDOR)
                .operation("upload")
                .field("tag"))
            }
        };
        if let Some(w) = get("priority_weight") {
            fields.insert("priority_weight".into(), w);
        }
        Ok((url, fields))
    }

    /// Creates one job. The vendor deduplicates by reference_id, so an ambiguous failure is simply sent
    /// again: the repeat either creates it or answers FS_0001.
    async fn create(
        &self,
        url: &Url,
        batch_id: &str,
        settings: &Map<String, Value>,
        r: &UploadRecord,
    ) -> Created {
        let mut body = settings.clone();
        body.insert("reference_id".into(), json!(r.key));
        body.insert("data".into(), Value::Object(r.data.clone()));
        body.insert("batch_id".into(), json!(batch_id));
        let req = match Request::json(
            Method::POST,
            url.clone(),
            &body,
            RequestKind::IdempotentCreate,
            "upload",
        ) {
            Ok(req) => req,
            Err(e) => return Created::Error(e.key(r.key.clone())),
        };
        // A create the vendor may or may not have applied is sent again: Playment refuses a second job
        // with the same reference_id (FS_0001), which counts as created.
        let sent = run(&self.retry, "upload", |_| async {
            let permit = self.limit.acquire().await;
            match self.http.send(&req).await.map_err(by_code) {
                Ok(resp) => {
                    permit.clean();
                    Step::Done(resp)
                }
                Err(e) => {
                    let again = is_ambiguous(&e) && e.code.as_deref() != Some("FS_0001");
                    Step::retry_if(again, e)
                }
            }
        })
        .await;
        match sent {
            Ok(resp) => match data::<Value>(&resp, "upload") {
                Ok(d) if d.get("job_id").and_then(Value::as_str).is_some() => Created::Job,
                Ok(_) => Created::Error(
                    Error::new(ErrorKind::Vendor, "the create-job answer has no job_id")
                        .vendor(VENDOR)
                        .operation("upload")
                        .key(r.key.clone()),
                ),
                Err(e) => Created::Error(e.key(r.key.clone())),
            },
            Err(e) if e.code.as_deref() == Some("FS_0001") => Created::Duplicate,
            Err(e) if e.kind == ErrorKind::InvalidInput => Created::Refused(Failure {
                key: r.key.clone(),
                field: e.field.clone(),
                code: e.code.clone(),
                message: e.message,
            }),
            Err(e) => Created::Error(e.key(r.key.clone())),
        }
    }

    /// One attempt without following redirects, paced like every request of the client; `with_key` adds
    /// the API key.
    async fn raw_get(
        &self,
        url: &Url,
        with_key: bool,
    ) -> std::result::Result<reqwest::Response, reqwest::Error> {
        self.http.pace().await;
        let rb = self.files.get(url.clone());
        let rb = if with_key {
            match self.http.auth().authorize(&self.files, rb).await {
                Ok((rb, _)) => rb,
                Err(_) => self.files.get(url.clone()),
            }
        } else {
            rb
        };
        rb.send().await
    }

    /// GET with the engine's retry rules for reads, for the two calls that must not follow redirects
    /// automatically. Returns the first answer that may not be retried, with its body; an answer still
    /// retryable when the retries run out is the error it stands for.
    async fn get_manual(
        &self,
        url: &Url,
        with_key: bool,
    ) -> Result<(u16, reqwest::header::HeaderMap, bytes::Bytes)> {
        let label = format!("GET {}", redact_url(url));
        run(&self.retry, &label, |_| self.get_once(url, with_key)).await
    }

    /// One try of `get_manual`.
    async fn get_once(
        &self,
        url: &Url,
        with_key: bool,
    ) -> Step<(u16, reqwest::header::HeaderMap, bytes::Bytes)> {
        let resp = match self.raw_get(url, with_key).await {
            Ok(resp) => resp,
            Err(_) => {
                return self.connection_lost(url);
            }
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = match read_limited(resp, self.http.limits().max_response_bytes).await {
            Ok(body) => body,
            Err(BodyError::TooLarge { limit }) => {
                return Step::Fail(too_large(
                    VENDOR,
                    "results",
                    &reqwest::Method::GET,
                    url,
                    limit,
                ))
            }
            Err(BodyError::Transport(_)) => {
                return self.connection_lost(url);
            }
        };
        if !is_retryable(RequestKind::Read, Outcome::Status(status)) {
            return Step::Done((status, headers, body));
        }
        if matches!(status, 429 | 503) {
            self.limit.overloaded();
        }
        let error = self.status_error(url, status, &body);
        match read_retry_after(&headers, &self.retry) {
            RetryAfter::TooLong(secs) => Step::TooLong {
                error: error.retry_after(secs),
                wait: Duration::from_secs_f64(secs),
            },
            RetryAfter::Implausible(secs) => Step::Fail(
                bad_response(
                    VENDOR,
                    "results",
                    url,
                    &format!("HTTP {status} with Retry-After {secs}"),
                )
                .http_status(status),
            ),
            after => Step::Retry {
                error,
                after: after.wait(),
                paced: status == 429 && after.wait().is_some(),
            },
        }
    }

    /// A read whose connection broke: tried again as the decision table allows.
    fn connection_lost<T>(&self, url: &Url) -> Step<T> {
        let retryable = is_retryable(RequestKind::Read, Outcome::TransportFailed);
        let error = Error::new(
            ErrorKind::Vendor,
            format!(
                "GET {}: the connection failed before an answer arrived",
                redact_url(url)
            ),
        )
        .vendor(VENDOR)
        .operation("results")
        .code("connection_lost");
        Step::retry_if(retryable, error)
    }

    fn status_error(&self, url: &Url, status: u16, body: &[u8]) -> Error {
        let (code, message) = parse_error(status, body);
        let kind = match status {
            401 | 403 => ErrorKind::Auth,
            404 => ErrorKind::NotFound,
            429 => ErrorKind::RateLimited,
            400 => ErrorKind::InvalidInput,
            _ => ErrorKind::Vendor,
        };
        let mut e = Error::new(
            kind,
            message.unwrap_or_else(|| format!("GET {} answered HTTP {status}", redact_url(url))),
        )
        .vendor(VENDOR)
        .operation("results");
        e.status = Some(status);
        e.code = code;
        by_code(e)
    }

    /// A finished job's result file: job -> result URL -> attachments redirect -> signed URL.
    async fn result_of(&self, batch_id: &str, job: JobItem, include_raw: bool) -> Result<Envelope> {
        let resp = self
            .get(
                self.project_path("v0", &format!("jobs/{}", job.id)),
                "results",
            )
            .await?;
        let job_raw: Box<RawValue> = data(&resp, "results")?;
        let dto: JobDto = parse_item(&job_raw, "results")?;
        let result_url = dto.result.filter(|r| !r.is_empty()).ok_or_else(|| {
            Error::new(
                ErrorKind::Vendor,
                format!("job {} is completed but has no result URL", job.id),
            )
            .vendor(VENDOR)
            .operation("results")
            .key(job.reference_id.clone())
        })?;
        let mut attach = self.url("/v1/attachments");
        attach.query_pairs_mut().append_pair("url", &result_url);
        // An answer the vendor kept refusing names the record, as any other refusal of its result does.
        let with_key = |e: Error| match e.status {
            Some(_) => e.key(job.reference_id.clone()),
            None => e,
        };
        let (status, headers, body) = self.get_manual(&attach, true).await.map_err(with_key)?;
        let signed = match status {
            300..=399 => headers
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| attach.join(l).ok())
                .ok_or_else(|| self.status_error(&attach, status, &body))?,
            _ => {
                return Err(self
                    .status_error(&attach, status, &body)
                    .key(job.reference_id))
            }
        };
        let (status, headers, body) = self.get_manual(&signed, false).await.map_err(with_key)?;
        if status != 200 {
            return Err(self
                .status_error(&signed, status, &body)
                .key(job.reference_id));
        }
        let completed_us = headers
            .get(reqwest::header::LAST_MODIFIED)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
            .map(|d| d.timestamp_micros());
        let file: Value = serde_json::from_slice(&body).map_err(|e| {
            Error::new(
                ErrorKind::Vendor,
                format!("the result file of job {} is not JSON: {e}", job.id),
            )
            .vendor(VENDOR)
            .operation("results")
            .code("bad_response")
        })?;
        let (input, output) = split_result(&file);
        let raw = if include_raw {
            let job_v: Value = serde_json::from_str(job_raw.get()).unwrap_or(Value::Null);
            Some(to_raw(&json!({"job": job_v, "result": file}))?)
        } else {
            None
        };
        Ok(Envelope {
            id: job.id,
            batch_id: batch_id.to_string(),
            key: job.reference_id,
            status: Status::Completed,
            input: Some(to_raw(&input)?),
            output: Some(to_raw(&output)?),
            created_at: None,
            completed_at: completed_us.map(format_rfc3339_us),
            vendor: VENDOR,
            raw,
            completed_us,
        })
    }
}

/// The result file's `data` split into the record as sent and the labels (`annotations` for images,
/// `annotation_data` for video and sensor jobs).
fn split_result(file: &Value) -> (Value, Value) {
    let mut data = file
        .get("data")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut output = Map::new();
    for k in ["annotations", "annotation_data"] {
        if let Some(v) = data.remove(k) {
            output.insert(k.to_string(), v);
        }
    }
    (Value::Object(data), Value::Object(output))
}

fn to_raw(v: &Value) -> Result<Box<RawValue>> {
    serde_json::value::to_raw_value(v)
        .map_err(|e| Error::new(ErrorKind::Vendor, format!("could not encode JSON: {e}")))
}

fn parse_item<T: for<'de> Deserialize<'de>>(raw: &RawValue, operation: &str) -> Result<T> {
    serde_json::from_str(raw.get()).map_err(|e| {
        Error::new(ErrorKind::Vendor, format!("unexpected job object: {e}"))
            .vendor(VENDOR)
            .operation(operation)
            .code("bad_response")
    })
}

#[async_trait::async_trait]
impl Adapter for PlaymentAdapter {
    fn kit(&self) -> Kit<'_> {
        Kit::new(&self.0.cfg, &self.0.http)
    }

    fn capability_settings(&self) -> Map<String, Value> {
        let mut settings = Map::new();
        settings.insert("rate_limit".into(), json!(self.0.cfg.rate_limit));
        settings
    }

    async fn create_batch(
        &self,
        name: &str,
        exist_ok: bool,
        options: &Options,
    ) -> Result<BatchInfo> {
        let me = &self.0;
        check_options(VENDOR, "create_batch", options, me.cfg.spec.batch_options)?;
        if name.trim().is_empty() {
            return Err(Error::invalid("a batch name cannot be empty")
                .vendor(VENDOR)
                .operation("create_batch")
                .field("name"));
        }
        let description = match options.get("description") {
            None => "",
            Some(Value::String(s)) => s.as_str(),
            Some(_) => {
                return Err(Error::invalid("description must be a string")
                    .vendor(VENDOR)
                    .field("description"))
            }
        };
        let find = || async {
            Ok::<_, Error>(
                me.batches()
                    .await?
                    .into_iter()
                    .find(|(b, _)| b.name.as_deref() == Some(name)),
            )
        };
        if let Some((b, raw)) = find().await? {
            if exist_ok {
                return Ok(Inner::info(b, &raw));
            }
            return Err(Error::new(
                ErrorKind::DuplicateRecord,
                format!(
                    "a batch named {name:?} already exists (id {}); pass exist_ok=True to use it",
                    b.id
                ),
            )
            .vendor(VENDOR)
            .operation("create_batch")
            .key(name));
        }
        let req = Request::json(
            Method::POST,
            me.url(&format!("/v1/project/{}/batch", me.cfg.project)),
            &json!({"name": name, "description": description}),
            RequestKind::Create,
            "create_batch",
        )?;
        let mut round = 0;
        loop {
            match me.http.send(&req).await.map_err(by_code) {
                Ok(_) => break,
                // Names are unique per project: a duplicate after an ambiguous failure (or a racing
                // creator) is the batch we want.
                Err(e)
                    if e.code.as_deref() == Some("BATCH_CREATION") && (exist_ok || round > 0) =>
                {
                    break
                }
                Err(e) if is_ambiguous(&e) && round < me.retry.max_retries => {
                    tokio::time::sleep(me.retry.delay(round, None)).await;
                    round += 1;
                    if find().await?.is_some() {
                        break;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        match find().await? {
            Some((b, raw)) => Ok(Inner::info(b, &raw)),
            None => Err(Error::new(
                ErrorKind::Vendor,
                format!("batch {name:?} was created but is not in the project details"),
            )
            .vendor(VENDOR)
            .operation("create_batch")),
        }
    }

    async fn get_batch(&self, id: &str) -> Result<BatchInfo> {
        if id.trim().is_empty() {
            return Err(Error::invalid("a batch id cannot be empty")
                .vendor(VENDOR)
                .field("id"));
        }
        self.0
            .batches()
            .await?
            .into_iter()
            .find(|(b, _)| b.id == id)
            .map(|(b, raw)| Inner::info(b, &raw))
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    format!("no batch {id:?} in project {}", self.0.cfg.project),
                )
                .vendor(VENDOR)
                .operation("batch")
            })
    }

    async fn list_batches(&self) -> Result<Vec<BatchInfo>> {
        Ok(self
            .0
            .batches()
            .await?
            .into_iter()
            .map(|(b, raw)| Inner::info(b, &raw))
            .collect())
    }

    async fn upload(
        &self,
        batch: &BatchInfo,
        records: Vec<UploadRecord>,
        options: UploadOptions,
        progress: Arc<UploadProgress>,
    ) -> Result<JobState> {
        let me = &self.0;
        check_options(
            VENDOR,
            "upload",
            &options.options,
            me.cfg.spec.upload_options,
        )?;
        let (url, settings) = me.job_settings(&options.options)?;
        let total = records.len() as u64;
        // Records without data to annotate are refused here, before anything is sent.
        let (good, mut failures) = with_data(records, options.collect_errors)?;
        let jobs = Jobs {
            inner: me,
            batch_id: &batch.id,
            url,
            settings,
        };
        // The adaptive limit inside `create` decides how many are in flight; this only bounds it.
        // Not reconciled here: Playment deduplicates by reference_id, so `create` resends after an ambiguous
        // failure itself. A chunk is one record: bisecting it names it.
        let plan = Plan::new(VENDOR, me.limit.config().max).bisecting();
        let driver = Driver::new(&jobs, plan, &options, &progress);
        let mut sent = driver.run(good).await?;
        failures.append(&mut sent.failures);
        let duplicates = sent.receipts.drain(..).filter_map(|l| match l {
            Landed::Duplicate(key) => Some(key),
            Landed::Job => None,
        });
        me.place_duplicates(&batch.id, duplicates.collect(), &progress, &mut failures)
            .await?;
        if sent.error.is_none() && !options.collect_errors {
            sent.error = failures.first().cloned().map(refusal);
        }
        sent.failures = failures;
        let sent = sent.finish(total, &progress, Wording::stored())?;
        let id = format!("playment-upload-{}", uuid::Uuid::new_v4());
        Ok(sent.stored_job(id, &batch.id, total, &progress))
    }

    async fn batch_status(&self, batch_id: &str) -> Result<BatchCounts> {
        let mut c = BatchCounts::default();
        let mut s = self.0.walk_jobs(batch_id, "status");
        while let Some(page) = s.next_page().await {
            for raw in page? {
                let j: JobItem = parse_item(&raw, "status")?;
                c.total += 1;
                match neutral_status(&j.status) {
                    Status::Pending => c.pending += 1,
                    Status::InProgress => c.in_progress += 1,
                    Status::Completed => c.completed += 1,
                    Status::Exception => c.exception += 1,
                    Status::Canceled => c.canceled += 1,
                    Status::Rejected => c.rejected += 1,
                    Status::Failed => c.failed += 1,
                }
            }
        }
        Ok(c)
    }

    fn results(
        &self,
        batch_id: &str,
        since_us: Option<i64>,
        include_raw: bool,
    ) -> PageStream<Envelope> {
        let me = self.0.clone();
        let batch = batch_id.to_string();
        PageStream::spawn(
            &self.0.rt,
            move |tx: mpsc::Sender<Result<Vec<Envelope>>>| async move {
                let mut jobs = me.walk_jobs(&batch, "results");
                while let Some(page) = jobs.next_page().await {
                    let items = match page.and_then(|p| {
                        p.iter()
                            .map(|raw| parse_item::<JobItem>(raw, "results"))
                            .collect::<Result<Vec<_>>>()
                    }) {
                        Ok(items) => items,
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    };
                    let done: Vec<JobItem> = items
                        .into_iter()
                        .filter(|j| neutral_status(&j.status) == Status::Completed)
                        .collect();
                    let fetched: Vec<Result<Envelope>> = futures::stream::iter(done)
                        .map(|j| me.result_of(&batch, j, include_raw))
                        .buffered(RESULT_FETCHES)
                        .collect()
                        .await;
                    let envelopes = match fetched.into_iter().collect::<Result<Vec<_>>>() {
                        Ok(es) => es,
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    };
                    let kept: Vec<Envelope> = envelopes
                        .into_iter()
                        .filter(|e| since_us.is_none_or(|s| e.completed_us.is_none_or(|d| d > s)))
                        .collect();
                    if tx.send(Ok(kept)).await.is_err() {
                        return;
                    }
                }
            },
        )
    }

    fn records(
        &self,
        batch_id: &str,
        statuses: Option<Vec<Status>>,
        include_raw: bool,
    ) -> Result<PageStream<Envelope>> {
        if batch_id.trim().is_empty() {
            return Err(Error::invalid("a batch id cannot be empty")
                .vendor(VENDOR)
                .field("id"));
        }
        let me = self.0.clone();
        let batch = batch_id.to_string();
        Ok(PageStream::spawn(
            &self.0.rt,
            move |tx: mpsc::Sender<Result<Vec<Envelope>>>| async move {
                let mut jobs = me.walk_jobs(&batch, "records");
                while let Some(page) = jobs.next_page().await {
                    let out = page.and_then(|p| {
                        let mut es = Vec::new();
                        for raw in p {
                            let j: JobItem = parse_item(&raw, "records")?;
                            let status = neutral_status(&j.status);
                            if statuses.as_ref().is_some_and(|ss| !ss.contains(&status)) {
                                continue;
                            }
                            es.push(Envelope {
                                id: j.id,
                                batch_id: batch.clone(),
                                key: j.reference_id,
                                status,
                                input: None,
                                output: None,
                                created_at: None,
                                completed_at: None,
                                vendor: VENDOR,
                                raw: include_raw.then_some(raw),
                                completed_us: None,
                            });
                        }
                        Ok(es)
                    });
                    let stop = out.is_err();
                    if tx.send(out).await.is_err() || stop {
                        return;
                    }
                }
            },
        ))
    }

    fn api_url(&self, path: &str) -> Result<Url> {
        let base = &self.0.cfg.base_url;
        request_url(base, base, None, path)
    }

    /// A batch's job list (`data.jobs`, `page_token` paging) item by item.
    fn paginate(&self, url: Url) -> PageStream<Box<RawValue>> {
        let me = self.0.clone();
        PageStream::spawn(&self.0.rt, move |tx| async move {
            let mut next = url.clone();
            let mut seen = HashSet::new();
            let mut budget = PageBudget::new(me.http.limits().max_pages);
            loop {
                let page = match me
                    .get(next.clone(), "request")
                    .await
                    .and_then(|r| data::<BatchPage>(&r, "request"))
                    .and_then(|p| {
                        budget
                            .count_items(&p.jobs)
                            .map_err(|e| e.vendor(VENDOR).operation("request"))?;
                        Ok(p)
                    }) {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let empty = page.jobs.is_empty();
                if tx.send(Ok(page.jobs)).await.is_err() || empty {
                    return;
                }
                match page.next_page_token.filter(|t| !t.is_empty()) {
                    Some(t) if seen.insert(t.clone()) => {
                        next = crate::engine::pagination::with_query_param(&url, "page_token", &t);
                    }
                    _ => return,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_errors_are_parsed() {
        let (code, msg) = parse_error(
            400,
            br#"{"error":{"code":"FS_0001","message":"Duplicate Reference Id"},"success":false}"#,
        );
        assert_eq!(
            (code.as_deref(), msg.as_deref()),
            (Some("FS_0001"), Some("Duplicate Reference Id"))
        );
        assert_eq!(parse_error(502, b"<html>"), (None, None));
        let mut e = Error::invalid("x");
        e.code = Some("resource_error".into());
        assert_eq!(by_code(e).kind, ErrorKind::NotFound);
        let mut e = Error::invalid("x");
        e.code = Some("unauthorized".into());
        assert_eq!(by_code(e).kind, ErrorKind::Auth);
        let mut e = Error::invalid("x");
        e.code = Some("FS_0003".into());
        assert_eq!(by_code(e).kind, ErrorKind::InvalidInput);
    }

    #[test]
    fn statuses() {
        assert_eq!(neutral_status("completed"), Status::Completed);
        assert_eq!(neutral_status("COMPLETED"), Status::Completed);
        assert_eq!(neutral_status("failed"), Status::Failed);
        assert_eq!(neutral_status("in_progress"), Status::InProgress);
        assert_eq!(neutral_status("created"), Status::Pending);
        assert_eq!(neutral_status("something-new"), Status::Pending);
    }

    #[test]
    fn result_files_split_into_input_and_labels() {
        let file = json!({"data": {"image_url": "https://e/x.jpg", "image_id": "k1",
            "annotations": {"rectangles": [{"_id": "a", "label": "Car"}]}}});
        let (input, output) = split_result(&file);
        assert_eq!(
            input,
            json!({"image_url": "https://e/x.jpg", "image_id": "k1"})
        );
        assert_eq!(
            output["annotations"]["rectangles"][0]["label"],
            json!("Car")
        );
    }

    #[test]
    fn options_are_checked() {
        let mut o = Options::new();
        o.insert("priority_weight".into(), json!(11));
        assert!(check_job_options(&o).is_err());
        o.insert("priority_weight".into(), json!(2.0));
        assert!(check_job_options(&o).is_err());
        o.insert("priority_weight".into(), json!(10));
        assert!(check_job_options(&o).is_ok());
        o.insert("tag".into(), json!(""));
        assert!(check_job_options(&o).is_err());
        let conc = |v: Value| limit_config(&Options::from([("max_concurrency".to_string(), v)]));
        assert_eq!(conc(json!(256)).unwrap().max, 256);
        assert_eq!(conc(json!(2)).unwrap().initial, 2);
        for bad in [json!(0), json!(1025), json!(8.0), json!("8"), json!(-1)] {
            let err = conc(bad).unwrap_err();
            assert_eq!(err.field.as_deref(), Some("max_concurrency"));
        }
        let rec = |d: Value| UploadRecord {
            key: "k".into(),
            data: d.as_object().unwrap().clone(),
        };
        assert!(check_record(&rec(json!({"image_url": "https://e/x"}))).is_none());
        assert!(check_record(&rec(json!({"url": "https://e/x"}))).is_some());
    }
}
