//! Sama batch creation jobs: the three steps of one job (create, PUT the tasks file, continue), a job's
//! progress read from whatever its answer holds, the upload that sends jobs and checks, after the first, that
//! Sama kept the key and client-batch inputs (docs/vendors/sama.md, findings 1, 5, 6), and `cancel`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use url::Url;

use super::wire::{
    bad, check_schema, decode_tasks, job_id_text, page_ends, raw_text_of, task_creation_over,
    text_of, JobView,
};
use super::{
    paced_status_get, SamaAdapter, BIG_PAGE, SHOWN_PROBLEMS, TASKS_FILE_NAME, TASKS_PER_JOB,
    UPLOAD_CONCURRENCY, VENDOR,
};
use crate::engine::http::{Request, Response};
use crate::engine::pagination::with_query_param;
use crate::engine::redact::redact_url;
use crate::engine::retry::RequestKind;
use crate::engine::{Error, ErrorKind, Result};
use crate::vendors::config::Options;
use crate::vendors::model::*;
use crate::vendors::resend;
use crate::vendors::upload::{in_chunks, Chunk, Driver, Keyed, Pieces, Plan, Sent, Wording};
use crate::vendors::UploadCall;

/// How often a first creation job is asked whether it created a task yet, for the key check.
const CHECK_POLL: Duration = Duration::from_secs(1);

/// A creation job's progress, from its state and counts where its answer has them, else from its tasks'
/// creation statuses.
#[derive(Debug, Clone, Default)]
pub(super) struct JobProgress {
    pub finished: bool,
    /// `continue` was applied: a state other than `waiting`, or (without a state word we know) any task.
    pub started: bool,
    pub total: u64,
    pub created: u64,
    pub failed: u64,
    pub canceled: u64,
    /// The job's tasks with their creation status, when they were read.
    pub tasks: Option<Vec<Value>>,
}

impl SamaAdapter {
    fn job_url(&self, job: &str) -> Url {
        let mut url = self.url(&["batches", &format!("{job}.json")]);
        url.query_pairs_mut()
            .append_pair("batch_id", job)
            .append_pair("omit_failed_task_data", "false");
        url
    }

    /// Every task of a creation job with its creation status (`tasks`, 1,000 a page, until a page ends the
    /// list: a server may serve fewer a page than asked).
    async fn job_tasks(&self, job: &str, operation: &'static str) -> Result<(JobView, Vec<Value>)> {
        let first = with_query_param(&self.job_url(job), "page_size", &BIG_PAGE.to_string());
        let mut tasks = Vec::new();
        let mut largest = 0;
        let mut view = JobView::default();
        for page in 1.. {
            let url = with_query_param(&first, "page", &page.to_string());
            let resp = self.http.send(&Request::get(url, operation)).await?;
            view = JobView::parse(&resp.json::<Value>(VENDOR, operation)?);
            let items = std::mem::take(&mut view.tasks);
            let n = items.len();
            largest = largest.max(n);
            tasks.extend(items);
            if page_ends(n, largest) {
                break;
            }
        }
        Ok((view, tasks))
    }

    /// A creation job's progress. The summary (`page_size=0`) is enough when it has a state word we know and
    /// the counts; else, or `with_tasks`, the job's tasks are read and counted by creation status.
    pub(super) async fn job_progress(
        &self,
        job: &str,
        with_tasks: bool,
        operation: &'static str,
    ) -> Result<JobProgress> {
        let url = with_query_param(&self.job_url(job), "page_size", "0");
        let resp = self.http.send(&Request::get(url, operation)).await?;
        let summary = JobView::parse(&resp.json::<Value>(VENDOR, operation)?);
        let by_state = summary.finished_by_state();
        let started_by_state = summary
            .state
            .as_deref()
            .filter(|_| by_state.is_some())
            .map(|s| !s.eq_ignore_ascii_case("waiting"));
        if let (Some(finished), Some(created), false) = (by_state, summary.created, with_tasks) {
            let failed = summary.failed.unwrap_or(0);
            let canceled = summary.canceled.unwrap_or(0);
            return Ok(JobProgress {
                finished,
                started: started_by_state.unwrap_or(true),
                total: summary.total.unwrap_or(created + failed + canceled),
                created,
                failed,
                canceled,
                tasks: None,
            });
        }
        let (_, tasks) = self.job_tasks(job, operation).await?;
        let status = |t: &Value| {
            t.get("status")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase)
        };
        let count = |word: &str| {
            tasks
                .iter()
                .filter(|t| status(t).as_deref() == Some(word))
                .count() as u64
        };
        let over = tasks
            .iter()
            .filter(|t| task_creation_over(status(t).as_deref()))
            .count();
        Ok(JobProgress {
            finished: by_state.unwrap_or(!tasks.is_empty() && over == tasks.len()),
            started: started_by_state.unwrap_or(!tasks.is_empty()),
            total: summary.total.unwrap_or(tasks.len() as u64),
            created: summary.created.unwrap_or_else(|| count("created")),
            failed: summary.failed.unwrap_or_else(|| count("failed")),
            canceled: summary
                .canceled
                .unwrap_or_else(|| count("canceled") + count("cancelled")),
            tasks: Some(tasks),
        })
    }

    /// Sends `req` (a create) and, after a failure that may or may not have been applied, asks `applied`
    /// before trying again: never a blind retry.
    pub(super) async fn create_once<F, Fut>(
        &self,
        req: &Request,
        applied: F,
    ) -> Result<Option<Response>>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<bool>>,
    {
        let send = || async { self.http.send(req).await.map(Some) };
        let found = || async { Ok(applied().await?.then_some(None)) };
        resend::create_once(&self.retry, req.operation, send, found).await
    }

    /// PUTs the tasks file to the pre-signed URL: no key, the URL is the credential. A PUT overwrites, so
    /// every failure may be retried.
    async fn put_tasks_file(&self, url: &Url, body: bytes::Bytes) -> Result<()> {
        let request = || {
            self.http
                .raw()
                .put(url.clone())
                .header("content-type", "application/json")
                .header("accept", "application/json")
                .body(body.clone())
        };
        let refused = |status: u16, _: &[u8]| {
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
            e
        };
        resend::put_signed(&self.http, &self.retry, VENDOR, url, request, refused).await
    }

    /// One Sama batch creation job: create, PUT the file, continue. Returns the job's id once Sama is creating
    /// the tasks.
    async fn run_creation(&self, tasks: &[(String, Value)]) -> Result<String> {
        // 1. A waiting batch with an upload URL. A lost answer leaves an orphan batch that never creates a
        //    task, so this create may be repeated.
        let req = Request::json(
            Method::POST,
            self.url(&["batches.json"]),
            &json!({"notification_email": null, "tasks_file_name": TASKS_FILE_NAME}),
            RequestKind::IdempotentCreate,
            "upload",
        )?;
        let send = || async { self.http.send(&req).await?.json::<Value>(VENDOR, "upload") };
        // Nothing to look up: an orphan from a lost answer is harmless, so the create is simply sent again.
        let none = || async { Ok(None) };
        let created: Value = resend::create_once(&self.retry, "upload", send, none).await?;
        let job = created
            .get("batch_id")
            .and_then(job_id_text)
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

        // 3. Start creating. After an ambiguous failure, the job says whether it started; a job that does not
        //    say (no state word we know, no task listed) has not, and is continued again.
        let cont = Request {
            method: Method::POST,
            url: self.url(&["batches", &job, "continue.json"]),
            body: crate::engine::http::Body::Json(bytes::Bytes::new()),
            kind: RequestKind::Create,
            operation: "upload",
            headers: vec![],
        };
        let started = || async { Ok(self.job_progress(&job, false, "upload").await?.started) };
        match self.create_once(&cont, started).await {
            Ok(_) => Ok(job),
            // A continue refused because the batch is no longer waiting: an earlier attempt got through.
            Err(e) if e.kind == ErrorKind::InvalidInput && started().await.unwrap_or(false) => {
                Ok(job)
            }
            Err(e) => Err(e),
        }
    }

    /// The creation jobs this client started for the batch and has not seen finish.
    pub(super) fn inflight_jobs(&self, batch_id: &str) -> Vec<String> {
        self.inflight
            .lock()
            .get(batch_id)
            .cloned()
            .unwrap_or_default()
    }

    /// The keys the neutral batch holds already (created tasks), and whether any of its tasks carried the
    /// key input. Also the keys of creation jobs this client started that are still running: their tasks are
    /// not listed until created. Those jobs are asked first, so a task created in between is listed.
    /// A batch whose tasks all lack the key input is refused (`key_not_kept`): Sama did not keep it, and
    /// sending more would create every task again.
    pub(super) async fn existing_keys(&self, batch_id: &str) -> Result<(HashSet<String>, bool)> {
        let mut keys = HashSet::new();
        let inflight = self.inflight_jobs(batch_id);
        for id in inflight {
            if !self.job_progress(&id, false, "upload").await?.finished {
                if let Some(k) = self.inflight_keys.lock().get(&id).cloned() {
                    keys.extend(k.iter().cloned());
                }
            }
        }
        let tasks = self.all_tasks(batch_id, "upload").await?;
        let keyed = tasks.iter().any(|t| t.data.get(&self.key_field).is_some());
        if let (Some(t), false) = (tasks.first(), keyed) {
            return Err(self.key_not_kept(batch_id, &t.id, None, tasks.len()));
        }
        keys.extend(tasks.into_iter().map(|t| self.view.key_of(&t.id, &t.data)));
        Ok((keys, keyed))
    }

    fn key_not_kept(&self, batch_id: &str, task: &str, job: Option<&str>, listed: usize) -> Error {
        let which = match job {
            Some(job) => format!("task {task} of creation job {job} has no input {:?}", self.key_field),
            None => format!(
                "none of the {listed} tasks of batch {batch_id:?} has an input {:?} (task {task} for one)",
                self.key_field
            ),
        };
        Error::invalid(format!(
            "Sama did not keep the key input: {which}, so labelport cannot tell which records the batch holds \
             and a re-run would create every task again. Nothing more was sent: add an input named {:?} to \
             the project, or pass key_field= the name of an input the project keeps that holds the key",
            self.key_field
        ))
        .vendor(VENDOR)
        .operation("upload")
        .field("key_field")
        .code("key_not_kept")
    }

    /// Reads one task of the batch's first creation job back: it must carry its key in the key input and be
    /// listed under the batch's client batch id. `Ok(false)` when the job created no task to look at (it is
    /// over with none, or `wait` is off and none is created yet). With `wait`, waits for the first task for at
    /// most `stall_timeout`.
    async fn check_kept(
        &self,
        batch_id: &str,
        job: &str,
        keys: &[String],
        wait: bool,
    ) -> Result<bool> {
        let since = Instant::now();
        loop {
            let one = self.job_task_url(job, None);
            let resp = paced_status_get(&self.status_gate, &self.http, one, "upload").await?;
            if let Some((t, _)) = decode_tasks(&resp, "upload")?.into_iter().next() {
                let key = t.data.get(&self.key_field).and_then(raw_text_of);
                if !key.is_some_and(|k| keys.contains(&k)) {
                    return Err(self.key_not_kept(batch_id, &t.id, Some(job), 1));
                }
                let mine = self.job_task_url(job, Some(batch_id));
                let resp = paced_status_get(&self.status_gate, &self.http, mine, "upload").await?;
                if decode_tasks(&resp, "upload")?.is_empty() {
                    return Err(Error::invalid(format!(
                        "Sama does not list task {} of creation job {job} under client batch id {batch_id:?}: \
                         the project's client batch input is not {:?}, so every read of this batch would be \
                         empty and a re-run would create every task again. Nothing more was sent: pass \
                         client_batch_field= the input the project designates as its client batch id",
                        t.id, self.client_batch_field
                    ))
                    .vendor(VENDOR)
                    .operation("upload")
                    .field("client_batch_field")
                    .code("client_batch_not_kept"));
                }
                self.verified.lock().insert(batch_id.to_string());
                return Ok(true);
            }
            if self.job_progress(job, false, "upload").await?.finished || !wait {
                return Ok(false);
            }
            if since.elapsed() >= self.stall {
                return Err(Error::new(
                    ErrorKind::Stalled,
                    format!(
                        "creation job {job} created no task in {:.0} s, so labelport could not check that Sama keeps \
                         the key input {:?}; nothing more was sent: run the same upload again later, or raise \
                         stall_timeout=",
                        self.stall.as_secs_f64(),
                        self.key_field
                    ),
                )
                .vendor(VENDOR)
                .operation("upload")
                .field("key_field")
                .code("stalled"));
            }
            tokio::time::sleep(CHECK_POLL).await;
        }
    }

    /// One task of creation job `job` (multi-task status, `batch_id=`), under client batch id `batch` if
    /// given.
    fn job_task_url(&self, job: &str, batch: Option<&str>) -> Url {
        let mut u = self.url(&["tasks.json"]);
        {
            let mut q = u.query_pairs_mut();
            q.append_pair("batch_id", job);
            if let Some(b) = batch {
                q.append_pair("client_batch_id", b)
                    .append_pair("client_batch_id_match_type", "exact");
            }
            q.append_pair("omit_answers", "true")
                .append_pair("page", "1")
                .append_pair("page_size", "1");
        }
        u
    }

    /// Forgets creation jobs seen finished.
    pub(super) fn forget(&self, batch_id: &str, finished: &[String]) {
        if let Some(list) = self.inflight.lock().get_mut(batch_id) {
            list.retain(|b| !finished.contains(b));
        }
        let mut keys = self.inflight_keys.lock();
        for id in finished {
            keys.remove(id);
        }
    }

    /// Sends the records as creation jobs of at most `TASKS_PER_JOB` tasks. The keys the batch holds are
    /// skipped. Until this client has seen Sama keep the key and client-batch inputs for the batch, the first
    /// job goes alone and one of its tasks is read back before anything else is sent (`check_kept`); an
    /// upload of one job is checked when the job is over (`job_status`).
    pub(super) async fn upload_tasks(&self, call: UploadCall<'_>) -> Result<JobState> {
        let (priority, submit) = task_settings(&call.options.options)?;
        let total = call.records.len() as u64;
        let (tasks, refused) = self
            .prepare(&call.batch.id, call.records, priority, submit)
            .await?;
        if !refused.is_empty() && !call.options.collect_errors {
            return Err(schema_error(&refused, total));
        }
        let failures = schema_failures(refused);
        let (present, keyed) = self.existing_keys(&call.batch.id).await?;
        if keyed {
            self.verified.lock().insert(call.batch.id.clone());
        }
        let (mut to_send, held): (Vec<_>, Vec<_>) =
            tasks.into_iter().partition(|t| !present.contains(&t.0));
        let skipped = held.len() as u64;
        let unchecked = !self.verified.lock().contains(&call.batch.id);
        // Neither reconciled here (`run_creation` makes each of its steps safe to repeat, as tasks are listed
        // only once created) nor bisected (call.records are checked against the schema first, Sama reports the rest
        // with the job).
        let creations = Creations { adapter: self };
        let plan = Plan::new(VENDOR, UPLOAD_CONCURRENCY);
        let driver = Driver::new(&creations, plan, &call.options, &call.progress);
        let rest = if unchecked && to_send.len() > TASKS_PER_JOB {
            to_send.split_off(TASKS_PER_JOB)
        } else {
            Vec::new()
        };
        let mut sent = driver.run(to_send).await?;
        if !rest.is_empty() {
            let first = sent.receipts.first().cloned();
            let checked = match (&sent.error, first) {
                (None, Some((job, keys))) => self
                    .check_kept(&call.batch.id, &job, &keys, true)
                    .await
                    .map(Some),
                _ => Ok(None),
            };
            match checked {
                Err(e) => {
                    self.remember(&call.batch.id, &mut sent);
                    let jobs: Vec<String> = self.jobs_of(&sent);
                    return Err(e.details(json!({"sama_batches": jobs, "sent": call.progress.sent.load(std::sync::atomic::Ordering::Relaxed), "not_sent": rest.len()})));
                }
                Ok(Some(_)) if sent.error.is_none() => {
                    let more = driver.run(rest).await?;
                    sent.receipts.extend(more.receipts);
                    sent.unsent.extend(more.unsent);
                    sent.error = more.error;
                }
                _ => sent.unsent.extend(rest.keys()),
            }
        }
        call.progress
            .skipped
            .store(skipped, std::sync::atomic::Ordering::Relaxed);
        sent.skipped = skipped;
        if unchecked && !self.verified.lock().contains(&call.batch.id) {
            if let Some((job, keys)) = sent.receipts.first() {
                let keys = Arc::new(keys.clone());
                self.unchecked.lock().insert(job.clone(), keys);
            }
        }
        let started = self.remember(&call.batch.id, &mut sent);
        let wording = Wording {
            landed: format!("were handed to Sama in batch creation jobs {started:?}"),
            details: Some(("sama_batches", json!(started))),
            ..Wording::stored()
        };
        let skipped = sent.finish(total, &call.progress, wording)?.skipped;
        let running = !started.is_empty();
        let failed = failures.len() as u64;
        Ok(JobState {
            id: if running {
                started.join(",")
            } else {
                format!("sama-nothing-to-send-{}", uuid::Uuid::new_v4())
            },
            batch_id: call.batch.id.clone(),
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
            vendor_job: running.then(|| started.join(",")),
        })
    }

    fn jobs_of(&self, sent: &Sent<(String, Vec<String>)>) -> Vec<String> {
        sent.receipts.iter().map(|(j, _)| j.clone()).collect()
    }

    /// Notes the creation jobs an upload started as running for `batch_id` (with their keys, until they are
    /// seen over); returns their ids.
    fn remember(&self, batch_id: &str, sent: &mut Sent<(String, Vec<String>)>) -> Vec<String> {
        let mut started = Vec::new();
        for (id, keys) in sent.receipts.drain(..) {
            self.inflight_keys.lock().insert(id.clone(), Arc::new(keys));
            started.push(id);
        }
        if !started.is_empty() {
            self.inflight
                .lock()
                .entry(batch_id.to_string())
                .or_default()
                .extend(started.iter().cloned());
        }
        started
    }

    /// The creation jobs' progress; once they are over, the tasks Sama could not create. An upload whose
    /// first job was not checked yet (`upload_tasks`) is checked here once its jobs are over.
    pub(super) async fn job_progress_of(&self, job: &JobState) -> Result<JobState> {
        let Some(ids) = job.vendor_job.as_deref() else {
            return Ok(job.clone());
        };
        let ids: Vec<String> = ids.split(',').map(str::to_string).collect();
        let progress = futures::future::try_join_all(
            ids.iter()
                .map(|id| self.job_progress(id, false, "job_status")),
        )
        .await?;
        let created: u64 = progress.iter().map(|p| p.created).sum();
        let mut next = job.clone();
        next.done = job.skipped + created;
        if !progress.iter().all(|p| p.finished) {
            return Ok(next);
        }
        let to_check: Vec<(String, Arc<Vec<String>>)> = ids
            .iter()
            .filter_map(|id| Some((id.clone(), self.unchecked.lock().get(id)?.clone())))
            .collect();
        for (id, keys) in to_check {
            self.check_kept(&job.batch_id, &id, &keys, false).await?;
            self.unchecked.lock().remove(&id);
        }
        let mut failures = job.failures.clone();
        for (id, p) in ids.iter().zip(progress) {
            if p.failed + p.canceled > 0 || p.total > p.created {
                let tasks = match p.tasks {
                    Some(t) => t,
                    None => self.job_tasks(id, "job_status").await?.1,
                };
                failures.extend(self.failures_of(&tasks));
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

    /// Cancels every creation job of the batch not known to be over (those this client started, and those its
    /// created tasks name); returns the ones it canceled.
    pub(super) async fn cancel_jobs(&self, batch_id: &str) -> Result<Vec<String>> {
        let mut ids: HashSet<String> = self
            .inflight
            .lock()
            .get(batch_id)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .collect();
        for t in self.all_tasks(batch_id, "cancel").await? {
            if let Some(b) = t.batch_id.as_ref().and_then(job_id_text) {
                ids.insert(b);
            }
        }
        let mut ids: Vec<String> = ids.into_iter().collect();
        ids.sort();
        let mut canceled = Vec::new();
        for id in ids {
            if self.job_progress(&id, false, "cancel").await?.finished {
                continue;
            }
            let req = Request {
                method: Method::POST,
                url: self.url(&["batches", &id, "cancel.json"]),
                body: crate::engine::http::Body::Json(bytes::Bytes::new()),
                kind: RequestKind::Create,
                operation: "cancel",
                headers: vec![],
            };
            let stopped = || async { Ok(self.job_progress(&id, false, "cancel").await?.finished) };
            match self.create_once(&req, stopped).await {
                Ok(_) => canceled.push(id),
                // Finished between our look and the cancel: nothing left to stop.
                Err(e) if e.kind == ErrorKind::InvalidInput && stopped().await.unwrap_or(false) => {
                }
                Err(e) => return Err(e),
            }
        }
        Ok(canceled)
    }

    /// The tasks of a creation job that failed or were canceled, as failures keyed by their key input.
    fn failures_of(&self, tasks: &[Value]) -> Vec<Failure> {
        tasks
            .iter()
            .filter_map(|t| {
                let status = t
                    .get("status")
                    .and_then(Value::as_str)?
                    .to_ascii_lowercase();
                if !matches!(status.as_str(), "failed" | "canceled" | "cancelled") {
                    return None;
                }
                let id = t.get("id").and_then(text_of).unwrap_or_default();
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
                let (code, message, field) = match (status.as_str(), first) {
                    ("canceled" | "cancelled", _) => (
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
                    key: data.get(&self.key_field).and_then(text_of).unwrap_or(id),
                    field,
                    code,
                    message,
                })
            })
            .collect()
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
}

/// `priority` and `submit` of `upload(...)`: the settings of every task it creates.
pub(super) fn task_settings(options: &Options) -> Result<(i64, bool)> {
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

/// One upload's pieces for the driver: Sama batch creation jobs of at most `TASKS_PER_JOB` tasks.
struct Creations<'a> {
    adapter: &'a SamaAdapter,
}

#[async_trait::async_trait]
impl Pieces for Creations<'_> {
    type Item = (String, Value);
    type Chunk = Vec<(String, Value)>;
    /// The creation job (its Sama batch id) and the keys it carries.
    type Receipt = (String, Vec<String>);

    /// None: `upload_tasks` removed the keys the batch holds before the driver runs (it runs the driver
    /// twice, the first job alone, and lists the batch once).
    async fn existing_keys(&self) -> Result<HashSet<String>> {
        Ok(HashSet::new())
    }
    fn chunks(&self, tasks: Vec<(String, Value)>) -> Vec<Vec<(String, Value)>> {
        in_chunks(tasks, TASKS_PER_JOB)
    }
    async fn send(&self, tasks: &Vec<(String, Value)>) -> Result<(String, Vec<String>)> {
        let job = self.adapter.run_creation(tasks).await?;
        Ok((job, tasks.keys()))
    }
}
