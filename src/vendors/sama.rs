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
//!
//! Every wire fact here, its source and how sure it is: docs/vendors/sama.md (the ledger). Wire forms live in
//! `sama_wire.rs`, creation jobs and uploads in `sama_jobs.rs`, tasks as records and results in
//! `sama_view.rs`; this file holds the adapter and its reads.

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

use super::config::{option_seconds, ClientConfig, Zero};
use super::kit::{self, Kit};
use super::model::*;
use super::{Adapter, NewBatch, RecordQuery, ResultQuery, UploadCall};
use crate::engine::auth::{refused_with_401, KeyPlacement, StaticKey};
use crate::engine::http::{request_url, HttpClient, Request, Response};
use crate::engine::pagination::with_query_param;
use crate::engine::pagination::PageBudget;
use crate::engine::retry::{is_ambiguous, RequestKind, RetryPolicy};
use crate::engine::stream::{
    page_number_stream, page_number_stream_filtered, Decoder, Keep, PageNumberList, PageStream,
};
use crate::engine::{Error, ErrorKind, Result};

#[path = "sama_jobs.rs"]
mod jobs;
#[path = "sama_view.rs"]
mod view;
#[path = "sama_wire.rs"]
mod wire;

use view::{SamaView, Undated, UndatedReads};

pub use wire::{check_schema, neutral_status};
use wire::{decode_tasks, job_id_text, page_ends, parse_error, single_task, text_of, TaskDto};

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
/// Results reads per batch whose undated tasks are remembered (`SamaAdapter::undated`): a watermark a read
/// hands out stays good for this many later reads of the batch.
const UNDATED_READS: usize = 8;
/// How long a creation job may create nothing before the wait for it stops (`stall_timeout=`).
const DEFAULT_STALL: Duration = Duration::from_secs(600);

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
    /// When the last multi-task status answer arrived, and the gap kept after it; held during a call.
    status_gate: Arc<StatusGate>,
    /// Sama batch creation jobs this client started and has not seen finish, per neutral batch.
    inflight: Mutex<HashMap<String, Vec<String>>>,
    /// The record keys each of those jobs carries: its tasks are not listed until created.
    inflight_keys: Mutex<HashMap<String, Arc<Vec<String>>>>,
    /// Neutral batches whose tasks were seen to keep the key and client-batch inputs.
    verified: Mutex<HashSet<String>>,
    /// First creation jobs of a batch not yet read back, with the keys they carry: checked once over.
    unchecked: Mutex<HashMap<String, Arc<Vec<String>>>>,
    /// For each neutral batch, the starts (the server's `Date`) of its last few results reads and the ids
    /// each returned without a delivery time: a read since one of those instants skips them (`results`).
    undated: Arc<Mutex<UndatedReads>>,
    /// How long a creation job may show no progress before a wait on it stops (`stall_timeout=`).
    stall: Duration,
    view: SamaView,
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
        let option =
            |name, zero| option_seconds(&cfg.options, name, zero).map_err(|e| e.vendor(VENDOR));
        let stall = option("stall_timeout", Zero::Refused)?.unwrap_or(DEFAULT_STALL);
        // Sama's documented one call a second to its real host (or any other); a sandbox or a test server on
        // this machine stays unpaced unless the caller asks, as `rate_limit=` (docs/vendors/sama.md).
        let status_interval =
            option("status_interval", Zero::Allowed)?.unwrap_or(if cfg.on_loopback() {
                Duration::ZERO
            } else {
                STATUS_INTERVAL
            });
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
            status_gate: Arc::new(StatusGate {
                last: tokio::sync::Mutex::new(None),
                interval: status_interval,
            }),
            inflight: Mutex::new(HashMap::new()),
            inflight_keys: Mutex::new(HashMap::new()),
            verified: Mutex::new(HashSet::new()),
            unchecked: Mutex::new(HashMap::new()),
            undated: Arc::new(Mutex::new(HashMap::new())),
            stall,
            view: SamaView {
                client_batch_field: client_batch_field.clone(),
                key_field: key_field.clone(),
                sent_back: Default::default(),
            },
        })
    }

    /// `<root>projects/<pid><last>` where the last segment carries `.json`, e.g. `url(&["batches.json"])`.
    fn url(&self, rest: &[&str]) -> Url {
        let project = self.project_id.to_string();
        if rest.is_empty() {
            kit::under(&self.root, &["projects", &format!("{project}.json")])
        } else {
            let mut path = vec!["projects", project.as_str()];
            path.extend_from_slice(rest);
            kit::under(&self.root, &path)
        }
    }

    fn check_batch_id(&self, id: &str) -> Result<()> {
        kit::check_batch_id(VENDOR, id)
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

    /// The multi-task status list of a neutral batch, of one task state only with `state`.
    fn state_url(&self, batch_id: &str, state: Option<&str>, page: usize) -> Url {
        self.list_url(batch_id, state, true, page, STATUS_PAGE)
    }

    /// The multi-task status list of a neutral batch: `omit_answers=false` lists each task with its latest
    /// answers (a delivered task's are the delivered ones: `[KB-multi]`).
    fn list_url(
        &self,
        batch_id: &str,
        state: Option<&str>,
        omit_answers: bool,
        page: usize,
        page_size: usize,
    ) -> Url {
        let mut u = self.url(&["tasks.json"]);
        {
            let mut q = u.query_pairs_mut();
            q.append_pair("client_batch_id", batch_id)
                .append_pair("client_batch_id_match_type", "exact");
            if let Some(s) = state {
                q.append_pair("state", s);
            }
            q.append_pair("omit_answers", if omit_answers { "true" } else { "false" })
                .append_pair("page", &page.to_string())
                .append_pair("page_size", &page_size.to_string());
        }
        u
    }

    /// Whether a neutral batch exists: a task carries its client batch id, or this client is having tasks
    /// created for it. One paced call of one task.
    async fn batch_exists(&self, batch_id: &str, operation: &'static str) -> Result<bool> {
        if !self.inflight_jobs(batch_id).is_empty() {
            return Ok(true);
        }
        let url = self.list_url(batch_id, None, true, 1, 1);
        let resp = paced_status_get(&self.status_gate, &self.http, url, operation).await?;
        Ok(!decode_tasks(&resp, operation)?.is_empty())
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
        // Delivered and acknowledged tasks (the delivered list holds both [I]). Every task of that list counts as
        // delivered, whatever its own `state` says: Sama's delivered examples read "completed" (ledger finding 3).
        let delivered = self.results_url(batch_id, None);
        let mut largest = 0;
        for page in 1.. {
            let url = with_query_param(&delivered, "page", &page.to_string());
            let resp = self.http.send(&Request::get(url, "status")).await?;
            let items = decode_tasks(&resp, "status")?;
            let n = items.len();
            largest = largest.max(n);
            for (mut t, _) in items {
                if seen.insert(t.id.clone()) {
                    t.state = Some("delivered".to_string());
                    out.push(t);
                }
            }
            if page_ends(n, largest) {
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
            let mut largest = 0;
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
                        .envelopes(&resp, &batch, include_raw, None)
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
                largest = largest.max(n);
                // A server may hand a consumer fewer than `limit` a call: only an empty call, or one shorter than
                // an earlier one, is the end.
                if tx.send(page).await.is_err() || failed || page_ends(n, largest) {
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
}

/// The `NotFound` of a client batch id no task carries: Sama has no batch object.
fn unknown_batch(field: &str, batch_id: &str, operation: &'static str) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!(
            "no Sama task carries the client batch id {batch_id:?} (input {field:?}): a Sama batch exists \
             once a task carries its client batch id. To upload into a new batch, use \
             client.create_batch({batch_id:?}, exist_ok=True)"
        ),
    )
    .vendor(VENDOR)
    .operation(operation)
}

/// The multi-task status endpoint's pacing: one call at a time, the next sent `interval` after the last answer
/// arrived (Sama's one call a second, `status_interval=`; none on loopback unless asked).
struct StatusGate {
    last: tokio::sync::Mutex<Option<Instant>>,
    interval: Duration,
}

/// A GET of the multi-task status endpoint through its gate. The vendor counts from when a request reaches it,
/// which is before its answer reaches us; a gap measured between sends could shrink below a second on the way
/// (network jitter, a busy machine) and draw a 429.
async fn paced_status_get(
    gate: &StatusGate,
    http: &HttpClient,
    url: Url,
    operation: &'static str,
) -> Result<Response> {
    let mut last = gate.last.lock().await;
    if let Some(t) = *last {
        tokio::time::sleep_until((t + gate.interval).into()).await;
    }
    let answer = http.send(&Request::get(url, operation)).await;
    *last = Some(Instant::now());
    answer
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
    async fn create_named_batch(&self, new: NewBatch<'_>) -> Result<BatchInfo> {
        let name = new.name;
        if !new.exist_ok {
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

    /// A batch exists once a task carries its client batch id (or this client is creating its tasks): any
    /// other name, malformed or not, is `NotFound`.
    async fn get_batch(&self, id: &str) -> Result<BatchInfo> {
        self.check_batch_id(id)?;
        if !self.batch_exists(id, "get_batch").await? {
            return Err(unknown_batch(&self.client_batch_field, id, "get_batch"));
        }
        Ok(self.batch_info(id))
    }

    async fn list_batches(&self) -> Result<Vec<BatchInfo>> {
        Err(Error::unsupported(
            VENDOR,
            "list batches",
            "Sama keeps no list of client batch ids; re-attach with client.batch(name)",
        ))
    }

    async fn send_records(&self, call: UploadCall<'_>) -> Result<JobState> {
        self.upload_tasks(call).await
    }

    /// The batch creation jobs' progress; once they are over, the tasks Sama could not create.
    async fn job_status(&self, job: &JobState) -> Result<JobState> {
        self.job_progress_of(job).await
    }

    async fn batch_status(&self, batch_id: &str) -> Result<BatchCounts> {
        self.check_batch_id(batch_id)?;
        let mut counts = BatchCounts::default();
        // Tasks this client is still having created count as pending: a running creation job's tasks less
        // those it failed, canceled or that are listed already. The job is asked first, so a task created
        // in between is listed and subtracted, never lost.
        let inflight = self.inflight_jobs(batch_id);
        let mut running = Vec::new();
        let mut finished = Vec::new();
        for id in inflight {
            let p = self.job_progress(&id, false, "status").await?;
            if p.finished {
                finished.push(id);
            } else {
                running.push((id, p));
            }
        }
        if !finished.is_empty() {
            self.forget(batch_id, &finished);
        }
        let mut listed: HashMap<String, u64> = HashMap::new();
        for t in self.tasks_for_counts(batch_id).await? {
            if let Some(b) = t.batch_id.as_ref().and_then(job_id_text) {
                *listed.entry(b).or_default() += 1;
            }
            counts.count(self.view.status_of(batch_id, &t.id, t.state.as_deref()));
        }
        if counts.total == 0 && running.is_empty() {
            return Err(unknown_batch(&self.client_batch_field, batch_id, "status"));
        }
        for (id, p) in running {
            let waiting = p
                .total
                .saturating_sub(p.failed + p.canceled + listed.get(&id).copied().unwrap_or(0));
            counts.pending += waiting;
            counts.total += waiting;
        }
        Ok(counts)
    }

    /// Delivered tasks of the batch (`GET tasks/delivered.json?client_batch_id=...&from=...`), oldest delivery
    /// first. Sama's `from` is taken as inclusive: the bound is made exclusive here. A task's delivery time is
    /// read under each plausible name (ledger finding 2); a task without one is dated by the read's start, the
    /// server's `Date` on its first page, and a later read since that instant skips the tasks this one
    /// returned undated (`undated`).
    fn results(&self, q: ResultQuery<'_>) -> PageStream<Envelope> {
        let first = self.results_url(q.batch_id, q.since_us);
        let list = PageNumberList {
            first,
            page_param: "page",
            page_size: BIG_PAGE,
            total_header: "x-total-count",
            operation: "results",
            read_ahead: READ_AHEAD,
        };
        let me = self.view.clone();
        let batch = q.batch_id.to_string();
        let undated = Undated {
            memo: self.undated.clone(),
            batch: batch.clone(),
            start: Arc::new(Mutex::new(None)),
        };
        let decode: Decoder<Envelope> = Arc::new(move |resp: &Response| {
            me.envelopes(resp, &batch, q.include_raw, Some(&undated))
        });
        // The bound is made exclusive after the page is counted, so a page thinned by it is not taken for the
        // short last page (which lost every later page of a large read).
        let keep: Option<Keep<Envelope>> = q.since_us.map(|since| {
            let seen = self
                .undated
                .lock()
                .get(q.batch_id)
                .and_then(|reads| reads.iter().find(|(at, _)| *at == since))
                .map(|(_, ids)| ids.clone())
                .unwrap_or_default();
            Arc::new(move |e: &Envelope| match e.completed_at {
                Some(_) => e.completed_us.is_none_or(|done| done > since),
                None => !seen.contains(&e.id),
            }) as Keep<Envelope>
        });
        let mut inner =
            page_number_stream_filtered(&self.rt, self.http.clone(), list, decode, keep);
        // An empty read of a batch no task carries is `NotFound`, never an empty list: the existence check
        // (one paced call) runs only when the read returned nothing.
        let inflight = !self.inflight_jobs(q.batch_id).is_empty();
        let exists = (
            self.list_url(q.batch_id, None, true, 1, 1),
            self.status_gate.clone(),
            self.http.clone(),
            self.client_batch_field.clone(),
            q.batch_id.to_string(),
        );
        PageStream::spawn(&self.rt, move |tx| async move {
            let mut any = inflight;
            while let Some(page) = inner.next_page().await {
                let failed = page.is_err();
                any |= page.as_ref().is_ok_and(|p| !p.is_empty());
                if tx.send(page).await.is_err() || failed {
                    return;
                }
            }
            if any {
                return;
            }
            let (url, gate, http, field, batch) = exists;
            let found = match paced_status_get(&gate, &http, url, "results").await {
                Ok(resp) => decode_tasks(&resp, "results").map(|t| !t.is_empty()),
                Err(e) => Err(e),
            };
            match found {
                Ok(true) => {}
                Ok(false) => {
                    let _ = tx.send(Err(unknown_batch(&field, &batch, "results"))).await;
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                }
            }
        })
    }

    /// Every created task of the batch with its neutral status (multi-task status, paced to one page a
    /// second). Tasks Sama failed to create, or did not create because the creation was canceled, are not
    /// tasks: they are in the upload's `job.failures()`.
    fn records(&self, q: RecordQuery<'_>) -> Result<PageStream<Envelope>> {
        self.check_batch_id(q.batch_id)?;
        let view = self.view.clone();
        let http = self.http.clone();
        let gate = self.status_gate.clone();
        let batch = q.batch_id.to_string();
        let first = self.list_url(q.batch_id, None, false, 1, STATUS_PAGE);
        let inflight = !self.inflight_jobs(q.batch_id).is_empty();
        let field = self.client_batch_field.clone();
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
                if page == 1 && n == 0 && !inflight {
                    let _ = tx.send(Err(unknown_batch(&field, &batch, "records"))).await;
                    return;
                }
                let page: Result<Vec<Envelope>> = items
                    .into_iter()
                    .filter_map(|(t, raw)| {
                        let status = view.status_of(&batch, &t.id, t.state.as_deref());
                        if q.statuses.as_ref().is_some_and(|ss| !ss.contains(&status)) {
                            return None;
                        }
                        Some(view.record(t, raw, &batch, status, q.include_raw))
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
        let canceled = self.cancel_jobs(batch_id).await?;
        log::info!(
            target: "labelport::vendors::sama",
            "batch {batch_id:?}: canceled the creation jobs {canceled:?}; created tasks keep being worked"
        );
        Ok(())
    }

    /// Sends delivered tasks back for rework (`PUT tasks/{id}/reject.json`); Sama delivers them again later.
    /// `ids` are result ids (task ids) or record keys: an id is first read as a task of this batch
    /// (`GET tasks/{id}.json`, not rate limited), else looked up as a key among the batch's tasks (listed once
    /// per call, paced). A task Sama refuses to reject (nothing delivered to review) is Sama's `InvalidInput`.
    async fn reject(&self, batch_id: &str, ids: Vec<String>, reason: Option<String>) -> Result<()> {
        self.check_batch_id(batch_id)?;
        let reasons = vec![reason.unwrap_or_else(|| "Rejected through labelport".to_string())];
        // The batch's tasks by key, read only when an id is not a task of the batch.
        let by_key: tokio::sync::OnceCell<HashMap<String, String>> = tokio::sync::OnceCell::new();
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
            Ok::<Value, Error>(single_task(&v))
        };
        let results: Vec<Result<String>> = futures::stream::iter(ids)
            .map(|given| {
                let reasons = reasons.clone();
                let by_key = &by_key;
                async move {
                    // A task of this batch by its id; a task of another batch, or none, may still be a key.
                    let owned = match task(given.clone()).await {
                        Ok(current) => current
                            .get("data")
                            .and_then(|d| d.get(&self.client_batch_field))
                            .and_then(text_of)
                            .is_some_and(|owner| owner == batch_id),
                        Err(e) if matches!(e.kind, ErrorKind::NotFound | ErrorKind::InvalidInput) => {
                            false
                        }
                        Err(e) => return Err(e),
                    };
                    let id = if owned {
                        given.clone()
                    } else {
                        let keys = by_key
                            .get_or_try_init(|| async {
                                let tasks = self.all_tasks(batch_id, "reject").await?;
                                Ok::<_, Error>(
                                    tasks
                                        .into_iter()
                                        .map(|t| (self.view.key_of(&t.id, &t.data), t.id))
                                        .collect(),
                                )
                            })
                            .await?;
                        match keys.get(&given) {
                            Some(id) => id.clone(),
                            None => {
                                return Err(Error::new(
                                    ErrorKind::NotFound,
                                    format!(
                                        "batch {batch_id:?} holds no record with the key or result id {given:?}"
                                    ),
                                )
                                .vendor(VENDOR)
                                .operation("reject")
                                .key(given))
                            }
                        }
                    };
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
                        .map(|_| id.clone())
                        .map_err(|e| e.key(given.clone()))
                }
            })
            .buffer_unordered(UPLOAD_CONCURRENCY)
            .collect()
            .await;
        let mut sent = Vec::new();
        let mut first_error = None;
        for r in results {
            match r {
                Ok(id) => sent.push(id),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        self.view.sent_back(batch_id, sent);
        first_error.map_or(Ok(()), Err)
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

#[cfg(test)]
#[path = "sama_tests.rs"]
mod tests;
