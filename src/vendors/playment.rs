//! Playment (`api.playment.io`; seed document 001, vendors/playment.md).
//!
//! Wire facts and their sources: docs/vendors/playment.md (the ledger).
//!
//! Neutral model onto Playment: `project` = project_id; `Batch` = batch (created through
//! `/v1/project/{p}/batch`, known by the `batch_id` it answers; listed in the project details); record =
//! job, its fields sent as the job's `data` (so a record carries one of Playment's data shapes:
//! `image_url`, `video_data` or `sensor_data`), its key as `reference_id`; `Job` = the create-job calls of
//! one upload (one request per record, under adaptive concurrency and the client's pacing: 5 requests per
//! second by default off loopback, `VendorSpec::default_rate_limit`); result = the job's result file,
//! fetched from its `result` URL through `/v1/attachments` (a redirect to a signed URL that never sees the
//! key, or a 200 naming that URL or holding the file); result `id` = job_id. Auth: the `x-api-key` header.
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
use std::sync::{Arc, OnceLock};

use futures::StreamExt;
use reqwest::Method;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use url::Url;

use super::config::ClientConfig;
use super::kit::{self, Kit};
use super::model::*;
use super::resend;
use super::{Adapter, NewBatch, RecordQuery, ResultQuery, UploadCall};
use crate::engine::auth::{refused_with_401, KeyPlacement, StaticKey};
use crate::engine::concurrency::AdaptiveLimit;
use crate::engine::http::{request_url, HttpClient, Request, Response};
use crate::engine::pagination::PageBudget;
use crate::engine::retry::{RequestKind, RetryPolicy};
use crate::engine::stream::PageStream;
use crate::engine::{Error, ErrorKind, Result};

#[path = "playment_results.rs"]
mod results;
#[path = "playment_upload.rs"]
mod upload;

use upload::{check_job_options, limit_config};

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

/// A job's status onto the neutral ones. The pull API documents only `completed`; callbacks say `PENDING`,
/// `COMPLETED`, `FAILED` (docs/vendors/playment.md, finding 4), so every reasonable word of each kind is read,
/// in any case, and an unknown one is still waiting (Pending): `wait()` ends only on Completed or Failed.
fn neutral_status(s: &str) -> Status {
    match s
        .trim()
        .to_ascii_lowercase()
        .replace(['-', ' '], "_")
        .as_str()
    {
        "completed" | "complete" | "done" | "finished" => Status::Completed,
        "failed" | "error" | "errored" | "rejected" => Status::Failed,
        "in_progress" | "inprogress" | "processing" | "active" | "started" | "working"
        | "ongoing" => Status::InProgress,
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
    /// The batch's job counts in the project details ([V1D]); optional, read only when both are there.
    #[serde(default)]
    total_jobs: Option<u64>,
    #[serde(default)]
    completed_jobs: Option<u64>,
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

struct Inner {
    cfg: ClientConfig,
    http: Arc<HttpClient>,
    /// No redirects, no credentials of its own: the attachments call (key added by hand) and the signed
    /// storage URL (never the key).
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
        Ok(PlaymentAdapter(Arc::new(Inner {
            cfg,
            http: Arc::new(http),
            limit,
            retry,
            rt,
        })))
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

    /// The batch `create` just made, by the `batch_id` it answered; the project details only add what they
    /// know of it (`created_at`), and a details listing that does not show it yet (or fails) changes nothing.
    async fn created_batch(&self, id: String, name: &str) -> BatchInfo {
        let listed = self.batches().await.ok().and_then(|bs| {
            bs.into_iter()
                .find(|(b, _)| b.id == id)
                .map(|(b, raw)| Inner::info(b, &raw))
        });
        listed.unwrap_or_else(|| BatchInfo {
            id: id.clone(),
            name: Some(name.to_string()),
            created_at: None,
            raw: json!({"id": id, "name": name}),
        })
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
    ) -> Result<(Vec<Box<RawValue>>, Option<String>, Option<i64>)> {
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
        let dated_us = resp
            .header("date")
            .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
            .map(|d| d.timestamp_micros());
        Ok((page.jobs, next, dated_us))
    }

    /// Streams a batch's jobs page by page; a token seen twice ends with an error. `listed_at` (when given)
    /// gets the server's `Date` of the first page: when the listing was read.
    fn walk_jobs(
        self: &Arc<Self>,
        batch_id: &str,
        operation: &'static str,
        listed_at: Option<Arc<OnceLock<i64>>>,
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
                    .and_then(|(items, next, dated_us)| {
                        budget
                            .count_items(&items)
                            .map_err(|e| e.vendor(VENDOR).operation(operation))?;
                        if let (Some(cell), Some(us)) = (&listed_at, dated_us) {
                            let _ = cell.set(us);
                        }
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
        let mut s = self.walk_jobs(batch_id, "upload", None);
        while let Some(page) = s.next_page().await {
            for raw in page? {
                let j: JobItem = parse_item(&raw, "upload")?;
                out.insert(j.reference_id, j.id);
            }
        }
        Ok(out)
    }
}

/// A completion second that may still get company: `completed_at` is the result file's `Last-Modified`, whole
/// seconds, so a job finishing later in the same second as one already read would fall at or below the
/// watermark and never be read (`since` is exclusive). A completion at or after the listing's second (less one
/// second for the clocks of Playment's API and its file storage) is unsettled: its envelope keeps
/// `completed_at`, but its watermark time is one microsecond earlier, so the next `since=watermark` read gives
/// that second again (a result read twice rather than one lost; docs/contract.md, `since_second_repeats`).
/// Without a `Date` on the listing every completion counts as unsettled.
fn unsettled_before_watermark(mut e: Envelope, listed_at_us: Option<i64>) -> Envelope {
    const CLOCKS_US: i64 = 1_000_000;
    if let Some(d) = e.completed_us {
        if listed_at_us.is_none_or(|at| d >= at - at.rem_euclid(1_000_000) - CLOCKS_US) {
            e.completed_us = Some(d - 1);
        }
    }
    e
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
        settings.insert("rate_limit".into(), json!(self.0.cfg.pacing()));
        settings
    }

    async fn create_named_batch(&self, new: NewBatch<'_>) -> Result<BatchInfo> {
        let name = new.name;
        let me = &self.0;
        let description = match new.options.get("description") {
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
            if new.exist_ok {
                return Ok(Inner::info(b, &raw));
            }
            return Err(kit::batch_name_taken(VENDOR, name, &b.id));
        }
        // The fields both code samples send (seed 001's `create_batch`, the SDK's `Batch`): `label` beside `name`,
        // and the project again in the body (docs/vendors/playment.md, finding 3).
        let req = Request::json(
            Method::POST,
            me.url(&format!("/v1/project/{}/batch", me.cfg.project)),
            &json!({"project_id": me.cfg.project, "label": name, "name": name, "description": description}),
            RequestKind::Create,
            "create_batch",
        )?;
        // What a create came to: the new batch's id, or a batch to find by its name (an answer without an id,
        // or the name taken, by our own earlier attempt or a racing creator: names are unique per project).
        enum Made {
            Id(String),
            ByName,
        }
        let attempts = std::sync::atomic::AtomicU32::new(0);
        let send = || async {
            let earlier = attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            match me.http.send(&req).await.map_err(by_code) {
                Ok(resp) => {
                    #[derive(Deserialize)]
                    struct Created {
                        batch_id: Option<String>,
                    }
                    let id = data::<Created>(&resp, "create_batch")?
                        .batch_id
                        .filter(|id| !id.is_empty());
                    Ok(id.map_or(Made::ByName, Made::Id))
                }
                Err(e)
                    if e.code.as_deref() == Some("BATCH_CREATION")
                        && (new.exist_ok || earlier > 0) =>
                {
                    Ok(Made::ByName)
                }
                Err(e) => Err(e),
            }
        };
        let found = || async { Ok(find().await?.map(|_| Made::ByName)) };
        if let Made::Id(id) = resend::create_once(&me.retry, "create_batch", send, found).await? {
            return Ok(me.created_batch(id, name).await);
        }
        // No batch_id to go by (a duplicate, an answer without it): the batch is found by its name.
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

    async fn send_records(&self, call: UploadCall<'_>) -> Result<JobState> {
        self.0.upload(call).await
    }

    async fn batch_status(&self, batch_id: &str) -> Result<BatchCounts> {
        // The project details count each batch's jobs ([V1D]): a finished batch costs one request. The job
        // list (a request per 100 jobs) is walked only while jobs are unfinished or the details lack counts.
        let counted = self
            .0
            .batches()
            .await?
            .into_iter()
            .find(|(b, _)| b.id == batch_id)
            .and_then(|(b, _)| b.total_jobs.zip(b.completed_jobs));
        if let Some((total, completed)) = counted.filter(|(t, c)| t == c) {
            return Ok(BatchCounts {
                total,
                completed,
                ..BatchCounts::default()
            });
        }
        let mut c = BatchCounts::default();
        let mut s = self.0.walk_jobs(batch_id, "status", None);
        while let Some(page) = s.next_page().await {
            for raw in page? {
                let j: JobItem = parse_item(&raw, "status")?;
                c.count(neutral_status(&j.status));
            }
        }
        Ok(c)
    }

    fn results(&self, q: ResultQuery<'_>) -> PageStream<Envelope> {
        let me = self.0.clone();
        let batch = q.batch_id.to_string();
        PageStream::spawn(
            &self.0.rt,
            move |tx: mpsc::Sender<Result<Vec<Envelope>>>| async move {
                let listed_at = Arc::new(OnceLock::new());
                let mut jobs = me.walk_jobs(&batch, "results", Some(listed_at.clone()));
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
                        .map(|j| me.result_of(&batch, j, q.include_raw))
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
                        .filter(|e| {
                            q.since_us
                                .is_none_or(|s| e.completed_us.is_none_or(|d| d > s))
                        })
                        .map(|e| unsettled_before_watermark(e, listed_at.get().copied()))
                        .collect();
                    if tx.send(Ok(kept)).await.is_err() {
                        return;
                    }
                }
            },
        )
    }

    fn records(&self, q: RecordQuery<'_>) -> Result<PageStream<Envelope>> {
        if q.batch_id.trim().is_empty() {
            return Err(Error::invalid("a batch id cannot be empty")
                .vendor(VENDOR)
                .field("id"));
        }
        let me = self.0.clone();
        let batch = q.batch_id.to_string();
        Ok(PageStream::spawn(
            &self.0.rt,
            move |tx: mpsc::Sender<Result<Vec<Envelope>>>| async move {
                let mut jobs = me.walk_jobs(&batch, "records", None);
                while let Some(page) = jobs.next_page().await {
                    let items = page.and_then(|p| {
                        p.into_iter()
                            .map(|raw| Ok((parse_item::<JobItem>(&raw, "records")?, raw)))
                            .collect::<Result<Vec<_>>>()
                    });
                    let items = match items {
                        Ok(items) => items,
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    };
                    // A job's list item carries no data and no labels: a completed job's envelope is its
                    // result's (the result file holds the record as sent, the labels and, by its
                    // Last-Modified, the completion time), the same one `results()` yields.
                    let wanted = items.into_iter().filter(|(j, _)| {
                        let status = neutral_status(&j.status);
                        q.statuses.as_ref().is_none_or(|ss| ss.contains(&status))
                    });
                    let out: Vec<Result<Envelope>> = futures::stream::iter(wanted)
                        .map(|(j, raw)| {
                            let (me, batch) = (&me, &batch);
                            async move {
                                let status = neutral_status(&j.status);
                                if status == Status::Completed {
                                    let mut e = me.result_of(batch, j, false).await?;
                                    e.raw = q.include_raw.then_some(raw);
                                    return Ok(e);
                                }
                                Ok(Envelope {
                                    id: j.id,
                                    batch_id: batch.clone(),
                                    key: j.reference_id,
                                    status,
                                    input: None,
                                    output: None,
                                    created_at: None,
                                    completed_at: None,
                                    vendor: VENDOR,
                                    raw: q.include_raw.then_some(raw),
                                    completed_us: None,
                                })
                            }
                        })
                        .buffered(RESULT_FETCHES)
                        .collect()
                        .await;
                    let out = out.into_iter().collect::<Result<Vec<_>>>();
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
    use super::upload::check_record;
    use super::*;
    use crate::vendors::Options;

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
