//! TaskMonk (`api.taskmonk.io`, the REST API `taskmonk-sdk` 0.29 calls).
//!
//! Neutral model onto TaskMonk: `project` = project id (set up by the annotation partner); `Batch` =
//! batch (numeric string ids); record = task, one row of an uploaded CSV file; the record key travels
//! as an input column (`key_column=`, default `external_id`); `Job` = the import jobs of one upload
//! (polled until `completed == total`, `Stalled` when they stop moving for `stall_timeout=` seconds);
//! result = a row of the batch's output file (an output job, then a plain GET of its `file_url` with no
//! credentials), CSV or Excel (`export_format=`). TaskMonk files hold strings: `input` and `output`
//! values come back as strings. Output columns are `output_fields=` where given, else the columns after
//! the key column (labelport writes the key column last). The result `id` is the key (the output file
//! has no task id). Auth: OAuth2 client credentials in the token request's query string, then a bearer
//! token, renewed before expiry and on refusal.
//!
//! Uploads are idempotent by key: TaskMonk does not deduplicate, so before sending (and after any
//! ambiguous failure) the adapter waits until the batch's imports are ingested and asks for the keys the
//! batch holds (an output file of the key column), then sends only the missing rows. No source says the
//! key column survives import, so the first import of an upload is read back before any other is sent
//! (`key_column_dropped` if it did not).
//!
//! Every wire fact here, its source and how sure it is: docs/vendors/taskmonk.md (the ledger).

// Errors carry the facts a user needs; boxing them buys nothing at these call rates.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use parking_lot::Mutex;
use reqwest::Method;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use url::Url;

#[path = "taskmonk_coerce.rs"]
mod coerce;
#[path = "taskmonk_file.rs"]
mod file;
#[path = "taskmonk_import.rs"]
mod import;
#[path = "taskmonk_jobs.rs"]
mod jobs;

use coerce::Coerce;
pub use file::{envelopes, parse_file, parse_timestamp_us, Table};
use import::Imports;
pub use import::{cell, encode_upload, prepare_rows, prune_columns, write_csv, Row};
use jobs::text_field;

use super::config::{option_seconds, ClientConfig, Options, Zero};
use super::kit::{self, Kit};
use super::model::*;
use super::upload::{Driver, Plan, Sent, Wording};
use super::{Adapter, NewBatch, RecordQuery, ResultQuery, UploadCall};
use crate::engine::auth::OAuth2ClientCredentials;
use crate::engine::http::{request_url, HttpClient, Request};
use crate::engine::retry::{is_ambiguous, RequestKind, RetryPolicy};
use crate::engine::runner::{run, Step};
use crate::engine::stream::PageStream;
use crate::engine::{Error, ErrorKind, Result};

const VENDOR: &str = "taskmonk";
/// Rows per import job: TaskMonk documents no limit; a thousand rows keeps each job (and each
/// reconciliation after a failure) small.
pub const IMPORT_ROWS: usize = 1000;
/// CSV bytes per import job, before gzip.
const IMPORT_BYTES: usize = 8 << 20;
const UPLOAD_CONCURRENCY: usize = 4;
/// Envelopes per page handed to Python.
const PAGE: usize = 1000;
const DEFAULT_KEY_COLUMN: &str = "external_id";
const DEFAULT_STALL: Duration = Duration::from_secs(600);
const POLL_FIRST: Duration = Duration::from_millis(100);
const POLL_MAX: Duration = Duration::from_secs(2);
/// Without the batch's import progress, the batch's task count is read again after this long: the same
/// count twice means its imports are ingested.
const SETTLE: Duration = Duration::from_secs(1);
/// Tries of a download whose file is not there yet (404) or failed transiently.
const DOWNLOAD_TRIES: u32 = 8;
/// How many times `batch_status` reads again while rows are ingested between its reads.
const STATUS_SNAPSHOT_TRIES: u32 = 5;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FileFormat {
    Csv,
    Excel,
}

impl FileFormat {
    fn query_value(self) -> &'static str {
        match self {
            FileFormat::Csv => "CSV",
            FileFormat::Excel => "Excel",
        }
    }
}

/// One upload's import jobs, and when their progress last moved (for `Stalled`).
struct Track {
    batch: String,
    ids: Vec<String>,
    /// Records done without a job of ours: already in the batch, or found there after a failure.
    base: u64,
    last_done: u64,
    last_change: Instant,
}

pub struct TaskMonkAdapter {
    cfg: ClientConfig,
    http: Arc<HttpClient>,
    rt: tokio::runtime::Handle,
    /// `{base}/api/project/{p}`
    project_url: Url,
    /// `{base}/api/project/v2/{p}`
    v2_url: Url,
    key_column: String,
    output_fields: Option<Vec<String>>,
    export_format: FileFormat,
    /// `coerce=`: the fields whose text is converted, in `input` and `output` (`taskmonk_coerce.rs`).
    coerce: Coerce,
    stall: Duration,
    retry: RetryPolicy,
    jobs: Mutex<HashMap<String, Track>>,
}

/// Error bodies, in every shape a source or the stack suggests (no source documents TaskMonk's; finding
/// 10): `{"error": code, "message"}`, `{"code", "message" | "error_description" | "detail" | "msg"}`,
/// Play's `{"error": {"message", ...}}`, `{"errors": [{"message"}]}`, or a short plain-text body.
/// Anything else falls back to the status line.
pub fn parse_error(_status: u16, body: &[u8]) -> (Option<String>, Option<String>) {
    fn text(o: &Map<String, Value>, names: &[&str]) -> Option<String> {
        names.iter().find_map(|k| match o.get(*k) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
            _ => None,
        })
    }
    const MESSAGE: &[&str] = &["message", "error_description", "detail", "msg"];
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => {
            let nested = match (o.get("error"), o.get("errors")) {
                (Some(Value::Object(e)), _) => Some(e),
                (_, Some(Value::Array(list))) => list.first().and_then(Value::as_object),
                _ => None,
            };
            let code =
                text(&o, &["error", "code"]).or_else(|| nested.and_then(|e| text(e, &["code"])));
            let message = text(&o, MESSAGE).or_else(|| nested.and_then(|e| text(e, MESSAGE)));
            (code, message)
        }
        Ok(_) => (None, None),
        Err(_) => {
            let plain = std::str::from_utf8(body).map(str::trim).unwrap_or("");
            let is_text = !plain.is_empty() && plain.len() <= 500 && !plain.starts_with('<');
            (None, is_text.then(|| plain.to_string()))
        }
    }
}

/// A bad or expired token: 401, or 403 (what the Java SDK maps as "Unauthorised Access").
fn is_token_refused(status: u16, _body: &[u8]) -> bool {
    matches!(status, 401 | 403)
}

fn option_error(name: &str, message: impl Into<String>) -> Error {
    Error::invalid(message).vendor(VENDOR).field(name)
}

fn parse_client_options(
    options: &Options,
) -> Result<(String, Option<Vec<String>>, FileFormat, Duration)> {
    let key_column = match options.get("key_column") {
        None | Some(Value::Null) => DEFAULT_KEY_COLUMN.to_string(),
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(_) => {
            return Err(option_error(
                "key_column",
                "key_column must be a non-empty column name",
            ))
        }
    };
    let output_fields = match options.get("output_fields") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            s.split(',')
                .map(|f| f.trim().to_string())
                .filter(|f| !f.is_empty())
                .collect(),
        ),
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|v| {
                    v.as_str().map(str::to_string).ok_or_else(|| {
                        option_error("output_fields", "output_fields must be a list of names")
                    })
                })
                .collect::<Result<Vec<_>>>()?,
        ),
        Some(_) => {
            return Err(option_error(
                "output_fields",
                "output_fields must be a list of names",
            ))
        }
    };
    let format = match options.get("export_format") {
        None | Some(Value::Null) => FileFormat::Csv,
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "csv" => FileFormat::Csv,
            "excel" | "xlsx" => FileFormat::Excel,
            _ => {
                return Err(option_error(
                    "export_format",
                    format!("export_format must be \"csv\" or \"excel\", not {s:?}"),
                ))
            }
        },
        Some(_) => {
            return Err(option_error(
                "export_format",
                "export_format must be \"csv\" or \"excel\"",
            ))
        }
    };
    let stall = option_seconds(options, "stall_timeout", Zero::Refused)
        .map_err(|e| e.vendor(VENDOR))?
        .unwrap_or(DEFAULT_STALL);
    Ok((key_column, output_fields, format, stall))
}

/// The neutral counts of a batch from TaskMonk's task counts `(new, in_progress, completed, total)` and the
/// imported rows not yet ingested, which count as pending.
fn ingesting_counts(
    (new, in_progress, completed, total): (u64, u64, u64, u64),
    waiting: u64,
) -> BatchCounts {
    BatchCounts {
        total: total + waiting,
        pending: new + waiting,
        in_progress,
        completed,
        ..Default::default()
    }
}

/// A file URL as it may be shown: scheme, host and file name only.
fn shown_file_url(url: &Url) -> String {
    let name = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or("");
    format!(
        "{}://{}/.../{name}",
        url.scheme(),
        url.host_str().unwrap_or("?")
    )
}

impl TaskMonkAdapter {
    pub fn new(cfg: ClientConfig, rt: tokio::runtime::Handle) -> Result<Self> {
        let (key_column, output_fields, export_format, stall) = parse_client_options(&cfg.options)?;
        let root = kit::api_root(&cfg, &["api"])?;
        let project_url = kit::under(&root, &["project", &cfg.project]);
        let v2_url = kit::under(&root, &["project", "v2", &cfg.project]);
        let token_url = kit::under(&root, &["oauth2", "token"]);
        let retry = cfg.retry_policy();
        let auth = OAuth2ClientCredentials::new(
            VENDOR,
            token_url,
            cfg.credentials["client_id"].expose(),
            cfg.credentials["client_secret"].expose(),
            is_token_refused,
            retry,
        );
        let http = kit::http_client(&cfg, auth, parse_error)?;
        let coerce = Coerce::from_option(cfg.options.get("coerce"))?;
        Ok(TaskMonkAdapter {
            cfg,
            http: Arc::new(http),
            rt,
            project_url,
            v2_url,
            key_column,
            output_fields,
            export_format,
            coerce,
            stall,
            retry,
            jobs: Mutex::new(HashMap::new()),
        })
    }

    fn url(&self, v2: bool, segments: &[&str]) -> Url {
        kit::under(if v2 { &self.v2_url } else { &self.project_url }, segments)
    }

    fn check_batch_id(&self, id: &str) -> Result<()> {
        if id.trim().is_empty() {
            return Err(Error::invalid("a batch id cannot be empty")
                .vendor(VENDOR)
                .field("id"));
        }
        // A malformed id names no batch (docs/contract.md, `client.batch`): NotFound, without sending it.
        if id.contains(['/', '?', '#', '\\']) || id.trim() != id {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!(
                    "no batch {id:?} in project {}: not a TaskMonk batch id",
                    self.cfg.project
                ),
            )
            .vendor(VENDOR)
            .operation("batch")
            .field("id"));
        }
        Ok(())
    }

    async fn get_json(&self, url: Url, operation: &'static str) -> Result<Value> {
        self.http
            .send(&Request::get(url, operation))
            .await?
            .json(VENDOR, operation)
    }

    /// Sets the batch's priority for `upload(priority=...)`, keeping its other settings.
    async fn set_priority(&self, batch: &BatchInfo, priority: &Value) -> Result<()> {
        let name = match &batch.name {
            Some(n) => n.clone(),
            None => self.get_batch(&batch.id).await?.name.unwrap_or_default(),
        };
        let mut opts = Options::new();
        opts.insert("priority".into(), priority.clone());
        let mut body = Self::batch_body(&name, &opts)?;
        if let Some(raw) = batch.raw.as_object() {
            // Not `start_time`: the Java SDK's `updateBatch` never sends it, and it "cannot be changed if the
            // batch is already Active" (docs/vendors/taskmonk.md, finding 6).
            for k in ["comments", "notifications"] {
                if let Some(v) = raw.get(k).filter(|v| !v.is_null()) {
                    body[k] = v.clone();
                }
            }
        }
        let req = Request::json(
            Method::PUT,
            self.url(false, &["batch", &batch.id]),
            &body,
            RequestKind::Read,
            "upload",
        )?;
        self.http.send(&req).await?;
        Ok(())
    }

    fn batch_body(name: &str, options: &Options) -> Result<Value> {
        let mut body =
            json!({"batch_name": name, "priority": 0, "comments": "", "notifications": []});
        if let Some(p) = options.get("priority") {
            let p = p.as_i64().ok_or_else(|| {
                option_error(
                    "priority",
                    "priority must be an integer (higher runs first)",
                )
            })?;
            body["priority"] = json!(p);
        }
        if let Some(c) = options.get("comments") {
            let c = c
                .as_str()
                .ok_or_else(|| option_error("comments", "comments must be a string"))?;
            body["comments"] = json!(c);
        }
        if let Some(s) = options.get("start_time") {
            let s = s.as_str().ok_or_else(|| {
                option_error(
                    "start_time",
                    "start_time must be a date string (YYYY-MM-DD)",
                )
            })?;
            body["start_time"] = json!(s);
        }
        Ok(body)
    }

    fn batch_info(raw: Value) -> Result<BatchInfo> {
        let id = text_field(&raw, &["id"]).ok_or_else(|| {
            Error::new(ErrorKind::Vendor, format!("unexpected batch object: {raw}"))
                .vendor(VENDOR)
                .code("bad_response")
        })?;
        Ok(BatchInfo {
            id,
            name: text_field(&raw, &["name", "batch_name"]),
            created_at: None,
            raw,
        })
    }
}

#[async_trait::async_trait]
impl Adapter for TaskMonkAdapter {
    fn kit(&self) -> Kit<'_> {
        Kit::new(&self.cfg, &self.http)
    }

    fn capability_settings(&self) -> Map<String, Value> {
        let mut settings = Map::new();
        settings.insert("key_column".into(), json!(self.key_column));
        settings.insert("coerce".into(), self.coerce.to_value());
        let format = match self.export_format {
            FileFormat::Csv => "csv",
            FileFormat::Excel => "excel",
        };
        settings.insert("export_format".into(), json!(format));
        settings
    }

    async fn create_named_batch(&self, new: NewBatch<'_>) -> Result<BatchInfo> {
        let name = new.name;
        let body = Self::batch_body(name, new.options)?;
        let req = Request::json(
            Method::POST,
            self.url(false, &["batch"]),
            &body,
            RequestKind::Create,
            "create_batch",
        )?;
        // Before every attempt, look for the batch by name: after an ambiguous failure it may exist.
        let (req, body) = (&req, &body);
        run(&self.retry, "create_batch", |tries| async move {
            let existing = match self.list_batches().await {
                Ok(batches) => batches
                    .into_iter()
                    .find(|b| b.name.as_deref() == Some(name)),
                Err(e) => return Step::Fail(e),
            };
            if let Some(existing) = existing {
                if new.exist_ok || tries.retry > 0 {
                    return Step::Done(existing);
                }
                return Step::Fail(kit::batch_name_taken(VENDOR, name, &existing.id));
            }
            match self.http.send(req).await {
                Ok(resp) => {
                    let created = resp.json::<Value>(VENDOR, "create_batch").and_then(|v| {
                        let mut raw = body.clone();
                        raw["id"] = v.get("id").cloned().unwrap_or(Value::Null);
                        raw["name"] = json!(name);
                        raw["project_id"] = json!(self.cfg.project);
                        Self::batch_info(raw)
                    });
                    match created {
                        Ok(info) => Step::Done(info),
                        Err(e) => Step::Fail(e),
                    }
                }
                Err(e) => Step::retry_if(is_ambiguous(&e), e),
            }
        })
        .await
    }

    async fn get_batch(&self, id: &str) -> Result<BatchInfo> {
        self.check_batch_id(id)?;
        self.list_batches()
            .await?
            .into_iter()
            .find(|b| b.id == id)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    format!("no batch {id:?} in project {}", self.cfg.project),
                )
                .vendor(VENDOR)
                .operation("batch")
            })
    }

    async fn list_batches(&self) -> Result<Vec<BatchInfo>> {
        let v = self
            .get_json(self.url(false, &["batch"]), "batches")
            .await?;
        let Value::Array(items) = v else {
            return Err(
                Error::new(ErrorKind::Vendor, "the batch list is not a JSON array")
                    .vendor(VENDOR)
                    .operation("batches")
                    .code("bad_response"),
            );
        };
        items.into_iter().map(Self::batch_info).collect()
    }

    async fn send_records(&self, call: UploadCall<'_>) -> Result<JobState> {
        self.check_batch_id(&call.batch.id)?;
        let (columns, rows) = prepare_rows(&call.records, &self.key_column)?;
        if let Some(p) = call.options.options.get("priority") {
            self.set_priority(call.batch, p).await?;
        }
        let total = rows.len() as u64;
        let imports = Imports::new(self, &call.batch.id, columns);
        // TaskMonk does not deduplicate: an import that may have been stored is reconciled first.
        let plan = Plan::new(VENDOR, UPLOAD_CONCURRENCY)
            .reconciling(self.retry)
            .bisecting();
        let driver = Driver::new(&imports, plan, &call.options, &call.progress);
        let mut sent = driver.run(rows).await?;
        // The call.batch lost the key column: what was sent is not "stored" in any sense a re-run could use.
        if let Some(e) = sent
            .error
            .take_if(|e| e.code.as_deref() == Some("key_column_dropped"))
        {
            return Err(e);
        }
        let jobs = std::mem::take(&mut sent.receipts);
        let wording = Wording {
            landed: "were accepted".into(),
            details: Some(("import_jobs", json!(jobs))),
            ..Wording::stored()
        };
        let Sent {
            skipped,
            reconciled,
            failures,
            ..
        } = sent.finish(total, &call.progress, wording)?;
        let base = skipped + reconciled;
        let id = if jobs.len() == 1 {
            jobs[0].clone()
        } else {
            format!("taskmonk-import-{}", uuid::Uuid::new_v4())
        };
        let state = if !jobs.is_empty() {
            JobPhase::Running
        } else if failures.is_empty() {
            JobPhase::Completed
        } else {
            JobPhase::Failed
        };
        self.jobs.lock().insert(
            id.clone(),
            Track {
                batch: call.batch.id.clone(),
                ids: jobs.clone(),
                base,
                last_done: base,
                last_change: Instant::now(),
            },
        );
        Ok(JobState {
            id,
            batch_id: call.batch.id.clone(),
            state,
            total,
            done: base,
            failed: failures.len() as u64,
            skipped,
            failures,
            vendor_job: Some(jobs.join(",")),
        })
    }

    async fn job_status(&self, job: &JobState) -> Result<JobState> {
        if job.state != JobPhase::Running {
            return Ok(job.clone());
        }
        let (ids, base) = {
            let tracks = self.jobs.lock();
            match tracks.get(&job.id) {
                Some(t) => (t.ids.clone(), t.base),
                None => (
                    job.vendor_job
                        .as_deref()
                        .unwrap_or("")
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect(),
                    job.skipped,
                ),
            }
        };
        let progress: Vec<(u64, u64)> = futures::stream::iter(ids.clone())
            .map(|id| async move { self.job_progress(&id, "job_status").await })
            .buffered(8)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_>>()?;
        let ingested: u64 = progress.iter().map(|p| p.0.min(p.1)).sum();
        let finished = progress.iter().all(|&(c, t)| t > 0 && c >= t);
        let done = base + ingested;
        let mut next = job.clone();
        next.done = done.min(job.total);
        if finished {
            next.state = if job.failed > 0 {
                JobPhase::Failed
            } else {
                JobPhase::Completed
            };
            self.jobs.lock().remove(&job.id);
            return Ok(next);
        }
        let mut tracks = self.jobs.lock();
        let track = tracks.entry(job.id.clone()).or_insert_with(|| Track {
            batch: job.batch_id.clone(),
            ids: ids.clone(),
            base,
            last_done: done,
            last_change: Instant::now(),
        });
        if done != track.last_done {
            track.last_done = done;
            track.last_change = Instant::now();
        } else if track.last_change.elapsed() >= self.stall {
            return Err(self
                .stalled(&format!("import job {}", job.id), done, job.total)
                .operation("wait"));
        }
        Ok(next)
    }

    async fn batch_status(&self, batch_id: &str) -> Result<BatchCounts> {
        self.check_batch_id(batch_id)?;
        // Rows imported but not yet ingested are not tasks yet: they count as pending, so an upload
        // followed at once by batch.wait() does not see an empty, "done" batch. The task counts and the
        // import progress are two reads. When nothing is being ingested, they are read together (one
        // round trip). While rows are ingested, a row ingested between the reads would be counted twice
        // (or not at all): the progress is then read before and after the counts, and a reading is taken
        // only when ingestion did not move in between, so the waiting rows are exact.
        let waiting = |p: Option<(u64, u64)>| p.map_or(0, |(c, t)| t.saturating_sub(c));
        let (progress, counts) = futures::join!(
            self.import_progress(batch_id),
            self.vendor_counts(batch_id, "status")
        );
        let (mut progress, mut counts) = (progress?, counts?);
        if waiting(progress) == 0 {
            return Ok(ingesting_counts(counts, 0));
        }
        for _ in 0..STATUS_SNAPSHOT_TRIES {
            let before = self.import_progress(batch_id).await?;
            counts = self.vendor_counts(batch_id, "status").await?;
            progress = self.import_progress(batch_id).await?;
            if before == progress {
                break;
            }
        }
        // Exact when ingestion did not move between the reads; else the last reading, whose progress, read
        // after the counts, saw at least the rows they saw ingested: short by the rows ingested in between,
        // never over.
        Ok(ingesting_counts(counts, waiting(progress)))
    }

    fn results(&self, q: ResultQuery<'_>) -> PageStream<Envelope> {
        self.export_stream(q.batch_id, true, q.include_raw, move |items| {
            // `since` is exclusive; results without a completion time cannot be filtered and stay.
            if let Some(since) = q.since_us {
                items.retain(|e| e.completed_us.is_none_or(|t| t > since));
            }
            items.sort_by(|a, b| (a.completed_us, &a.key).cmp(&(b.completed_us, &b.key)));
        })
    }

    fn records(&self, q: RecordQuery<'_>) -> Result<PageStream<Envelope>> {
        self.check_batch_id(q.batch_id)?;
        let statuses = q.statuses;
        Ok(
            self.export_stream(q.batch_id, false, q.include_raw, move |items| {
                if let Some(wanted) = &statuses {
                    items.retain(|e| wanted.contains(&e.status));
                }
            }),
        )
    }
    fn api_url(&self, path: &str) -> Result<Url> {
        request_url(&self.cfg.base_url, &self.project_url, Some("/api/"), path)
    }

    /// TaskMonk's lists come whole (a JSON array), or as `{"items": [...]}`.
    fn paginate(&self, url: Url) -> PageStream<Box<RawValue>> {
        let http = self.http.clone();
        PageStream::spawn(&self.rt, move |tx| async move {
            let page = async {
                let resp = http.send(&Request::get(url, "request")).await?;
                #[derive(serde::Deserialize)]
                struct Items {
                    items: Vec<Box<RawValue>>,
                }
                // Untagged enums cannot hold raw values: look at the first byte instead.
                let is_list = resp
                    .body
                    .iter()
                    .find(|b| !b.is_ascii_whitespace())
                    .is_some_and(|&b| b == b'[');
                if is_list {
                    resp.json::<Vec<Box<RawValue>>>(VENDOR, "request")
                } else {
                    resp.json::<Items>(VENDOR, "request").map(|p| p.items)
                }
            };
            let _ = tx.send(page.await).await;
        })
    }
}

async fn send_pages(tx: &tokio::sync::mpsc::Sender<Result<Vec<Envelope>>>, items: Vec<Envelope>) {
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        let page: Vec<Envelope> = items.by_ref().take(PAGE).collect();
        if tx.send(Ok(page)).await.is_err() {
            return;
        }
    }
}

impl TaskMonkAdapter {
    /// What a streaming task needs, owned (the adapter itself is behind an `Arc` we do not hold).
    /// The batch's export as envelopes (`results`: the finished records only), `shape`d, sent in pages.
    fn export_stream(
        &self,
        batch_id: &str,
        results: bool,
        include_raw: bool,
        shape: impl FnOnce(&mut Vec<Envelope>) + Send + 'static,
    ) -> PageStream<Envelope> {
        let this = self.clone_parts();
        let batch = batch_id.to_string();
        let operation = if results { "results" } else { "records" };
        PageStream::spawn(&self.rt, move |tx| async move {
            let run = async {
                let table = this
                    .export(&batch, true, this.export_format, &[], results, operation)
                    .await?;
                let mut items = envelopes(
                    &table,
                    &batch,
                    &this.key_column,
                    this.output_fields.as_deref(),
                    results,
                    include_raw,
                );
                for e in &mut items {
                    this.coerce.apply(e)?;
                }
                shape(&mut items);
                Ok::<_, Error>(items)
            };
            match run.await {
                Ok(items) => send_pages(&tx, items).await,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                }
            }
        })
    }

    fn clone_parts(&self) -> Arc<TaskMonkAdapter> {
        Arc::new(TaskMonkAdapter {
            cfg: self.cfg.clone(),
            http: self.http.clone(),
            rt: self.rt.clone(),
            project_url: self.project_url.clone(),
            v2_url: self.v2_url.clone(),
            key_column: self.key_column.clone(),
            output_fields: self.output_fields.clone(),
            export_format: self.export_format,
            coerce: self.coerce.clone(),
            stall: self.stall,
            retry: self.retry,
            jobs: Mutex::new(HashMap::new()),
        })
    }

    /// Downloads the batch's output file in `format` and returns its rows as they are (for comparing
    /// formats, and for users who want the vendor's file).
    pub async fn output_table(&self, batch_id: &str, format: FileFormat) -> Result<Table> {
        self.export(batch_id, true, format, &[], false, "results")
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_parsed() {
        assert_eq!(
            parse_error(
                400,
                br#"{"error":"invalid_field","message":"Unknown input field"}"#
            ),
            (
                Some("invalid_field".into()),
                Some("Unknown input field".into())
            )
        );
        assert_eq!(parse_error(500, b"<html>"), (None, None));
        let message = |body: &[u8]| parse_error(400, body).1;
        let want = Some("Invalid Json".to_string());
        assert_eq!(
            message(br#"{"error":{"requestId":1,"message":"Invalid Json"}}"#),
            want
        );
        assert_eq!(message(br#"{"errors":[{"message":"Invalid Json"}]}"#), want);
        assert_eq!(message(br#"{"detail":"Invalid Json"}"#), want);
        assert_eq!(message(b"Invalid Json\n"), want);
        assert_eq!(
            parse_error(400, br#"{"code":"bad","msg":"Invalid Json"}"#),
            (Some("bad".into()), want)
        );
        assert!(is_token_refused(401, b"") && is_token_refused(403, b""));
        assert!(!is_token_refused(404, b""));
    }

    #[test]
    fn file_urls_are_shown_without_their_token() {
        let u = Url::parse("https://blob.example.net/out/s3cr3t-token/331_j.csv?sig=abc").unwrap();
        let shown = shown_file_url(&u);
        assert_eq!(shown, "https://blob.example.net/.../331_j.csv");
    }

    #[test]
    fn client_options() {
        let mut o = Options::new();
        o.insert("export_format".into(), json!("Excel"));
        o.insert("output_fields".into(), json!("label, confidence"));
        o.insert("stall_timeout".into(), json!(2.5));
        let (k, f, fmt, stall) = parse_client_options(&o).unwrap();
        assert_eq!(k, "external_id");
        assert_eq!(f.unwrap(), ["label", "confidence"]);
        assert_eq!(fmt, FileFormat::Excel);
        assert_eq!(stall, Duration::from_millis(2500));
        o.insert("stall_timeout".into(), json!(0));
        assert_eq!(
            parse_client_options(&o).unwrap_err().field.as_deref(),
            Some("stall_timeout")
        );
        // Beyond any clock: an error, not a panic.
        o.insert("stall_timeout".into(), json!(1e300));
        assert_eq!(
            parse_client_options(&o).unwrap_err().field.as_deref(),
            Some("stall_timeout")
        );
    }
}
