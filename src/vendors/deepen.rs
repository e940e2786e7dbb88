//! Deepen AI (`tools.deepen.ai/api/v2`). Every wire fact here and its source: docs/vendors/deepen.md.
//!
//! Neutral model onto Deepen: `project` = the workspace's `clientId`; `Batch` = dataset; record = a file
//! (`file`: a path on disk, or `{"base64": ...}` bytes), packed into a zip whose entry name is the record key
//! (a record's `name` when no key was asked for); `Job` = the upload and processing of those zips, running
//! until the dataset leaves `FileUpload`/`Processing`; result = the final labels of a file
//! (`labels?final=true`), its neutral `id` the `file_id`. Auth: a static bearer token. Lists come whole.
//!
//! Lifecycle: Deepen creates a dataset together with its files declared and sized, so `create_batch` only
//! reserves the name (a batch id `reserved:dataset_name=...`, see `wire::Reservation`) and the first upload
//! creates the dataset (`deepen_upload.rs`). A reserved id stays valid: each call looks the dataset up by
//! its name, so `client.batch(id)` and `create_batch(name, exist_ok=True)` re-attach before and after the
//! first upload, from any process. Status comes from the dataset's `current_stage`/`current_stage_status`
//! (tasks only refine a file's progress while people label); results from the final labels.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use reqwest::Method;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use url::Url;

use super::config::ClientConfig;
use super::kit::{self, Kit};
use super::model::*;
use super::upload::{Driver, Plan, Wording};
use super::{Adapter, NewBatch, RecordQuery, ResultQuery, UploadCall};
use crate::engine::auth::{refused_with_401, KeyPlacement, StaticKey};
use crate::engine::http::{request_url, HttpClient, Request, Response};
use crate::engine::retry::{RequestKind, RetryPolicy};
use crate::engine::stream::PageStream;
use crate::engine::{Error, ErrorKind, Result};

#[path = "deepen_upload.rs"]
mod upload_flow;
#[path = "deepen_wire.rs"]
mod wire;

pub use upload_flow::FILES_PER_ZIP;
use upload_flow::{entries_of, Zips};
use wire::{
    completed_ms, file_status, input_tag, millis, tasks_by_file, DatasetView, Phase, Reservation,
    TaskView,
};

const VENDOR: &str = "deepen";
const UPLOAD_CONCURRENCY: usize = 2;
const PAGE: usize = 1000;

pub struct DeepenAdapter {
    cfg: ClientConfig,
    http: Arc<HttpClient>,
    api: Url,
    rt: tokio::runtime::Handle,
}

/// Deepen's errors are Django REST framework's `{"detail": ...}`; the object store's `{"error": {...}}`.
pub fn parse_error(_status: u16, body: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return (None, None);
    };
    if let Some(d) = v.get("detail").and_then(Value::as_str) {
        return (None, Some(d.to_string()));
    }
    if let Some(e) = v.get("error") {
        let code = e.get("code").map(|c| c.to_string());
        let msg = e.get("message").and_then(Value::as_str).map(str::to_string);
        return (code, msg);
    }
    (None, None)
}

impl DeepenAdapter {
    pub fn new(cfg: ClientConfig, rt: tokio::runtime::Handle) -> Result<Self> {
        let api = kit::api_root(&cfg, &["api", "v2"])?;
        let auth = StaticKey::new(
            KeyPlacement::Bearer,
            cfg.credentials["api_token"].expose(),
            refused_with_401,
        );
        let http = kit::http_client(&cfg, auth, parse_error)?;
        Ok(DeepenAdapter {
            cfg,
            http: Arc::new(http),
            api,
            rt,
        })
    }

    fn url(&self, segments: &[&str]) -> Url {
        kit::under(&self.api, segments)
    }

    fn retry(&self) -> RetryPolicy {
        self.cfg.retry_policy()
    }

    async fn get_json(&self, segments: &[&str], operation: &'static str) -> Result<Value> {
        self.http
            .send(&Request::get(self.url(segments), operation))
            .await?
            .json(VENDOR, operation)
    }

    async fn post(
        &self,
        segments: &[&str],
        body: &Value,
        kind: RequestKind,
        operation: &'static str,
    ) -> Result<Response> {
        let req = Request::json(Method::POST, self.url(segments), body, kind, operation)?;
        self.http.send(&req).await
    }

    /// A dataset id holds no `/` (it becomes a path segment): anything else is no dataset's id, so NotFound,
    /// answered before anything is sent.
    fn check_id(id: &str) -> Result<()> {
        if id.trim().is_empty() || id.contains('/') {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("no dataset has the id {id:?}: a Deepen dataset id holds no '/' and is not empty"),
            )
            .vendor(VENDOR)
            .field("id"));
        }
        Ok(())
    }

    /// The dataset's files, each with its `file_id` (required: it is the record key).
    async fn file_list(
        &self,
        dataset_id: &str,
        operation: &'static str,
    ) -> Result<Vec<(String, Value)>> {
        let v = self
            .get_json(&["datasets", dataset_id, "files"], operation)
            .await?;
        let files = v.get("files").and_then(Value::as_array).ok_or_else(|| {
            Error::new(
                ErrorKind::Vendor,
                "the dataset's files answer has no `files` list",
            )
            .vendor(VENDOR)
            .operation(operation)
            .code("bad_response")
        })?;
        files
            .iter()
            .map(|f| match f.get("file_id").and_then(Value::as_str) {
                Some(id) => Ok((id.to_string(), f.clone())),
                None => Err(
                    Error::new(ErrorKind::Vendor, format!("a file without file_id: {f}"))
                        .vendor(VENDOR)
                        .operation(operation)
                        .code("bad_response"),
                ),
            })
            .collect()
    }

    pub(crate) async fn file_ids(
        &self,
        dataset_id: &str,
        operation: &'static str,
    ) -> Result<HashSet<String>> {
        Ok(self
            .file_list(dataset_id, operation)
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect())
    }

    /// The dataset's tasks, every field optional (`wire::TaskView`).
    async fn task_list(&self, dataset_id: &str, operation: &'static str) -> Result<Vec<TaskView>> {
        let v = self
            .get_json(&["datasets", dataset_id, "tasks"], operation)
            .await?;
        Ok(v.get("tasks")
            .and_then(Value::as_array)
            .map(|ts| ts.iter().map(TaskView::of).collect())
            .unwrap_or_default())
    }

    /// The dataset a batch id stands for: itself, or for a reserved id the dataset of that name if the
    /// first upload created it.
    pub(crate) async fn dataset_of(
        &self,
        batch_id: &str,
        operation: &'static str,
    ) -> Result<Option<String>> {
        match Reservation::parse(batch_id) {
            Some(r) => self.find_by_name(&r.name, operation).await,
            None => {
                Self::check_id(batch_id)?;
                Ok(Some(batch_id.to_string()))
            }
        }
    }

    /// The dataset id that `dataset_of` found, or a NotFound error saying the first upload creates it.
    async fn existing_dataset(&self, batch_id: &str, operation: &'static str) -> Result<String> {
        self.dataset_of(batch_id, operation)
            .await?
            .ok_or_else(|| not_yet(batch_id, operation))
    }

    /// The batch a dataset is: under the batch id `create_batch` handed out for it when labelport created it
    /// (its `labelport:batch` tag), else under its own id.
    async fn dataset_batch(&self, dataset_id: &str, operation: &'static str) -> Result<BatchInfo> {
        let raw = self
            .get_json(&["datasets", dataset_id], operation)
            .await
            .map_err(|e| match e.kind {
                ErrorKind::NotFound => Error {
                    message: format!("no dataset {dataset_id:?} in this workspace"),
                    ..e
                },
                _ => e,
            })?;
        canonical(raw, Some(dataset_id))
    }

    /// The id of the one dataset named `name`; several of that name are an error (Deepen does not say
    /// names are unique), naming their ids.
    async fn find_by_name(&self, name: &str, operation: &'static str) -> Result<Option<String>> {
        let ids = self
            .get_json(&["clients", &self.cfg.project, "datasets_ids"], operation)
            .await?;
        let mut found: Vec<String> = ids
            .get("datasets")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter(|d| d.get("dataset_name").and_then(Value::as_str) == Some(name))
                    .filter_map(|d| d.get("dataset_id").and_then(Value::as_str))
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        found.dedup();
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.pop()),
            _ => Err(Error::invalid(format!(
                "{} datasets are named {name:?} (ids {}): pass the one you mean to client.batch(id)",
                found.len(),
                found.join(", ")
            ))
            .vendor(VENDOR)
            .operation(operation)
            .key(name.to_string())),
        }
    }

    /// Every file of a dataset with its neutral status and completion time (ms): the dataset's phase first,
    /// the file's tasks while people label, the final labels' times when `labels` are given.
    async fn file_states(
        &self,
        dataset_id: &str,
        labels: Option<&Value>,
        operation: &'static str,
    ) -> Result<Vec<FileState>> {
        let path = ["datasets", dataset_id];
        let (dataset, files, tasks) = futures::try_join!(
            self.get_json(&path, operation),
            self.file_list(dataset_id, operation),
            self.task_list(dataset_id, operation)
        )?;
        let view = DatasetView::of(&dataset);
        let phase = view.phase();
        let mut inputs = view.inputs();
        let by_file = tasks_by_file(&tasks);
        let dataset_level = by_file.get(&None).cloned().unwrap_or_default();
        Ok(files
            .into_iter()
            .map(|(file_id, raw)| {
                let mut ts = by_file
                    .get(&Some(file_id.as_str()))
                    .cloned()
                    .unwrap_or_default();
                // Sequence datasets: tasks are per object across frames, so a frame is as far as all of them.
                ts.extend(dataset_level.iter().copied());
                let status = file_status(&phase, &ts);
                let done = (status == Status::Completed)
                    .then(|| completed_ms(labels.and_then(|l| l.get(&file_id)), &ts))
                    .flatten();
                FileState {
                    created: millis(raw.get("create_time_millis")),
                    // Kept by labelport in the dataset's tags; a file uploaded otherwise has none.
                    input: inputs.remove(&file_id).unwrap_or_else(|| json!({})),
                    file_id,
                    raw,
                    status,
                    done,
                }
            })
            .collect())
    }
    /// Acts on the submitted task behind each id (a file id, a label id of a sequence, or a task id).
    async fn review(
        &self,
        batch_id: &str,
        ids: Vec<String>,
        action: &'static str,
        reason: Option<String>,
    ) -> Result<()> {
        let dataset_id = self.existing_dataset(batch_id, action).await?;
        let tasks = self.task_list(&dataset_id, action).await?;
        let mut targets = Vec::new();
        for id in &ids {
            let mine: Vec<&TaskView> = tasks
                .iter()
                .filter(|t| {
                    [&t.file_id, &t.label_id, &t.task_id]
                        .iter()
                        .any(|f| f.as_deref() == Some(id.as_str()))
                })
                .collect();
            if mine.is_empty() {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("no task of dataset {dataset_id} belongs to {id:?}"),
                )
                .vendor(VENDOR)
                .operation(action)
                .key(id.clone()));
            }
            let submitted: Vec<&&TaskView> = mine.iter().filter(|t| t.submitted()).collect();
            if submitted.is_empty() {
                let states: Vec<String> = mine
                    .iter()
                    .map(|t| {
                        format!(
                            "{}: {}",
                            t.stage_id.as_deref().unwrap_or("?"),
                            t.status.as_deref().unwrap_or("?")
                        )
                    })
                    .collect();
                return Err(Error::invalid(format!(
                    "{id:?} has no submitted task to {action} ({})",
                    states.join(", ")
                ))
                .vendor(VENDOR)
                .operation(action)
                .key(id.clone()));
            }
            for t in submitted {
                let task_id = t.task_id.clone().ok_or_else(|| {
                    Error::new(
                        ErrorKind::Vendor,
                        format!("the submitted task of {id:?} has no task_id to {action} it by"),
                    )
                    .vendor(VENDOR)
                    .operation(action)
                    .code("bad_response")
                    .key(id.clone())
                })?;
                targets.push(task_id);
            }
        }
        // Deepen documents no body for these calls; the reason is sent in case it is kept (ledger, finding 13).
        let body = match &reason {
            Some(r) => json!({ "reason": r }),
            None => json!({}),
        };
        for t in targets {
            self.post(&["tasks", &t, action], &body, RequestKind::Create, action)
                .await?;
        }
        Ok(())
    }

    /// The dataset's final labels by file id (`labels?final=true&labels_with_file_ids_order=true`).
    async fn final_labels(&self, dataset_id: &str, operation: &'static str) -> Result<Value> {
        let mut url = self.url(&["datasets", dataset_id, "labels"]);
        url.query_pairs_mut()
            .append_pair("labels_with_file_ids_order", "true")
            .append_pair("final", "true");
        let labels: Value = self
            .http
            .send(&Request::get(url, operation))
            .await?
            .json(VENDOR, operation)?;
        Ok(labels.get("labels").cloned().unwrap_or(Value::Null))
    }

    /// A copy sharing this adapter's client, for streams that outlive the call.
    fn handle(&self) -> DeepenAdapter {
        DeepenAdapter {
            cfg: self.cfg.clone(),
            http: self.http.clone(),
            api: self.api.clone(),
            rt: self.rt.clone(),
        }
    }
}

/// One file of a dataset as labelport sees it.
struct FileState {
    file_id: String,
    raw: Value,
    /// The record as uploaded, without its `file` (`wire::input_tag`).
    input: Value,
    status: Status,
    created: Option<i64>,
    /// When its work finished (ms).
    done: Option<i64>,
}

impl FileState {
    fn envelope(
        self,
        batch_id: &str,
        output: Option<Box<RawValue>>,
        raw: Option<Box<RawValue>>,
    ) -> Envelope {
        Envelope {
            id: self.file_id.clone(),
            batch_id: batch_id.to_string(),
            key: self.file_id,
            status: self.status,
            input: raw_json(&self.input),
            output,
            created_at: self.created.map(ms_to_rfc3339),
            completed_at: self.done.map(ms_to_rfc3339),
            vendor: VENDOR,
            raw,
            completed_us: self.done.map(|ms| ms * 1000),
        }
    }
}

fn ms_to_rfc3339(ms: i64) -> String {
    format_rfc3339_us(ms * 1000)
}

/// A batch from a DatasetResource; `key` is the id it is listed under (the datasets map), used when the
/// resource itself does not carry `dataset_id`.
fn batch_info(raw: Value, key: Option<&str>) -> Result<BatchInfo> {
    let id = raw
        .get("dataset_id")
        .and_then(Value::as_str)
        .or(key)
        .ok_or_else(|| {
            Error::new(ErrorKind::Vendor, "a dataset without dataset_id")
                .vendor(VENDOR)
                .code("bad_response")
        })?
        .to_string();
    Ok(BatchInfo {
        id,
        name: raw
            .get("dataset_name")
            .and_then(Value::as_str)
            .map(str::to_string),
        created_at: millis(raw.get("create_timestamp_millis")).map(ms_to_rfc3339),
        raw,
    })
}

/// `batch_info`, under the batch id labelport handed out for the dataset when its tags name one.
fn canonical(raw: Value, key: Option<&str>) -> Result<BatchInfo> {
    let handed_out = DatasetView::of(&raw).batch_id();
    let mut info = batch_info(raw, key)?;
    if let Some(id) = handed_out {
        info.id = id;
    }
    Ok(info)
}

/// NotFound for a reserved batch id whose dataset the first upload has not created yet.
fn not_yet(batch_id: &str, operation: &'static str) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!(
            "no Deepen dataset carries batch {batch_id:?} yet: Deepen creates a batch's dataset with its \
             first upload (upload through the Batch create_batch returned, or create_batch(name, \
             exist_ok=True))"
        ),
    )
    .vendor(VENDOR)
    .operation(operation)
}

/// A reserved batch whose dataset does not exist yet.
fn reserved_batch(r: &Reservation) -> BatchInfo {
    BatchInfo {
        id: r.id(),
        name: Some(r.name.clone()),
        created_at: None,
        raw: r.raw(),
    }
}

/// A completed file's `output`: its final labels.
fn output_of(file_labels: &Value) -> Option<Box<RawValue>> {
    raw_json(&json!({ "labels": file_labels }))
}

fn raw_json(v: &Value) -> Option<Box<RawValue>> {
    RawValue::from_string(v.to_string()).ok()
}

/// Hands `items` on in pages.
fn pages<T: Send + 'static>(
    rt: &tokio::runtime::Handle,
    fut: impl std::future::Future<Output = Result<Vec<T>>> + Send + 'static,
) -> PageStream<T> {
    PageStream::spawn(rt, move |tx| async move {
        match fut.await {
            Err(e) => {
                let _ = tx.send(Err(e)).await;
            }
            Ok(items) => {
                let mut it = items.into_iter().peekable();
                while it.peek().is_some() {
                    let page: Vec<T> = it.by_ref().take(PAGE).collect();
                    if tx.send(Ok(page)).await.is_err() {
                        return;
                    }
                }
            }
        }
    })
}

#[async_trait::async_trait]
impl Adapter for DeepenAdapter {
    fn kit(&self) -> Kit<'_> {
        Kit::new(&self.cfg, &self.http)
    }

    /// Reserves the name: the dataset is created by the first upload (see the module comment). A dataset of
    /// that name already there is a duplicate, or with `exist_ok` the batch.
    async fn create_named_batch(&self, new: NewBatch<'_>) -> Result<BatchInfo> {
        let name = new.name;
        let text = |k: &str| -> Result<Option<String>> {
            match new.options.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(Error::invalid(format!("{k} must be a string"))
                    .vendor(VENDOR)
                    .field(k)),
            }
        };
        let dataset_type = text("dataset_type")?.unwrap_or_else(|| "images".into());
        if dataset_type == "video" {
            return Err(Error::unsupported(
                VENDOR,
                "create a video batch",
                "a Deepen video dataset takes one mp4 file, and labelport uploads records as a zip of files \
                 (dataset_type \"images\" or \"3d\")",
            )
            .field("dataset_type"));
        }
        if !["images", "3d"].contains(&dataset_type.as_str()) {
            return Err(Error::invalid(format!(
                "dataset_type must be \"images\" or \"3d\", not {dataset_type:?}"
            ))
            .vendor(VENDOR)
            .operation("create_batch")
            .field("dataset_type"));
        }
        let reservation = Reservation {
            name: name.to_string(),
            dataset_type,
            labelling_profile_id: text("labelling_profile_id")?,
        };
        // The profile is checked now, not at the first upload: Tier IV reads it by this path too.
        if let Some(p) = &reservation.labelling_profile_id {
            self.get_json(&["labelling_profiles", p], "create_batch")
                .await
                .map_err(|e| match e.kind {
                    ErrorKind::NotFound => Error {
                        message: format!("no labelling profile {p:?} in this workspace"),
                        ..e
                    }
                    .field("labelling_profile_id"),
                    _ => e,
                })?;
        }
        let Some(dataset_id) = self.find_by_name(name, "create_batch").await? else {
            return Ok(reserved_batch(&reservation));
        };
        // The batch under the id the first create_batch handed out: one id from create_batch on.
        let existing = self.dataset_batch(&dataset_id, "create_batch").await?;
        if new.exist_ok {
            return Ok(existing);
        }
        Err(Error::new(
            ErrorKind::DuplicateRecord,
            format!(
                "a dataset named {name:?} already exists (batch id {}); pass exist_ok=True to use it",
                existing.id
            ),
        )
        .vendor(VENDOR)
        .operation("create_batch")
        .key(name))
    }

    /// A reserved id is found once the first upload created its dataset, and keeps its id; before, it is
    /// NotFound. A dataset id is the dataset's batch under that id.
    async fn get_batch(&self, id: &str) -> Result<BatchInfo> {
        let dataset_id = self.existing_dataset(id, "batch").await?;
        let mut info = self.dataset_batch(&dataset_id, "batch").await?;
        info.id = id.to_string();
        Ok(info)
    }

    async fn list_batches(&self) -> Result<Vec<BatchInfo>> {
        let v = self
            .get_json(&["clients", &self.cfg.project, "datasets"], "batches")
            .await?;
        let mut out: Vec<BatchInfo> = match v {
            Value::Object(m) => m
                .into_iter()
                .map(|(id, d)| canonical(d, Some(&id)))
                .collect::<Result<_>>()?,
            _ => vec![],
        };
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    async fn send_records(&self, call: UploadCall<'_>) -> Result<JobState> {
        let total = call.records.len() as u64;
        let entries = entries_of(&call.records)?;
        // What Deepen does not keep, the dataset's tags do: each record without its file (`wire::input_tag`).
        let inputs: HashMap<String, String> = entries
            .iter()
            .zip(&call.records)
            .map(|(e, r)| {
                let mut fields = r.data.clone();
                fields.remove("file");
                (e.name.clone(), input_tag(&e.name, &fields))
            })
            .collect();
        drop(call.records);
        let zips = Zips::prepare(self, &call.batch.id, &entries, &inputs).await?;
        // Neither reconciled here (`process` checks by archive name: files are listed only once Deepen has
        // unpacked them) nor bisected (files are checked before anything is sent).
        let plan = Plan::new(VENDOR, UPLOAD_CONCURRENCY);
        let driver = Driver::new(&zips, plan, &call.options, &call.progress);
        let wording = Wording {
            noun: "files",
            container: "dataset",
            landed: "are in the dataset".into(),
            details: None,
        };
        let sent = driver
            .run(entries)
            .await?
            .finish(total, &call.progress, wording)?;
        let id = format!("deepen-upload-{}", uuid::Uuid::new_v4());
        let mut job = sent.stored_job(id, &call.batch.id, total, &call.progress);
        // Deepen unpacks the archives after they are sent: the job runs until the dataset is processed.
        job.state = JobPhase::Running;
        job.vendor_job = Some(zips.dataset_id.clone());
        self.job_status(&job).await
    }

    /// Running while the dataset is in `FileUpload` or `Processing`; failed on `preprocessing_error`.
    async fn job_status(&self, job: &JobState) -> Result<JobState> {
        if job.state != JobPhase::Running {
            return Ok(job.clone());
        }
        let dataset_id = match &job.vendor_job {
            Some(d) => d.clone(),
            None => self.existing_dataset(&job.batch_id, "job_status").await?,
        };
        let d = self
            .get_json(&["datasets", &dataset_id], "job_status")
            .await?;
        let mut out = job.clone();
        match DatasetView::of(&d).phase() {
            Phase::Receiving => {}
            Phase::Failed(message) => {
                out.state = JobPhase::Failed;
                out.failed = job.total - job.skipped;
                out.done = job.skipped;
                out.failures = vec![Failure {
                    key: dataset_id,
                    field: None,
                    code: Some("preprocessing_error".into()),
                    message,
                }];
            }
            Phase::Labelling { .. } | Phase::Finished => out.state = JobPhase::Completed,
        }
        Ok(out)
    }

    async fn batch_status(&self, batch_id: &str) -> Result<BatchCounts> {
        let dataset_id = self.existing_dataset(batch_id, "status").await?;
        let states = self.file_states(&dataset_id, None, "status").await?;
        let mut c = BatchCounts::default();
        for f in states {
            c.count(f.status);
        }
        Ok(c)
    }

    /// Every completed file with its final labels (`labels?final=true`, `[D-labels]`, `[T4]`), oldest
    /// completion first.
    fn results(&self, q: ResultQuery<'_>) -> PageStream<Envelope> {
        let me = self.handle();
        let batch = q.batch_id.to_string();
        pages(&self.rt, async move {
            let dataset_id = me.existing_dataset(&batch, "results").await?;
            let by_file = me.final_labels(&dataset_id, "results").await?;
            let states = me
                .file_states(&dataset_id, Some(&by_file), "results")
                .await?;
            let mut out: Vec<Envelope> = states
                .into_iter()
                .filter(|f| f.status == Status::Completed)
                .filter(|f| match (q.since_us, f.done) {
                    (Some(since), Some(done)) => done * 1000 > since,
                    _ => true,
                })
                .map(|f| {
                    let file_labels = by_file.get(&f.file_id).cloned().unwrap_or(json!([]));
                    let output = output_of(&file_labels);
                    let raw = q
                        .include_raw
                        .then(|| raw_json(&json!({"file": f.raw, "labels": file_labels})))
                        .flatten();
                    f.envelope(&batch, output, raw)
                })
                .collect();
            out.sort_by(|a, b| a.completed_us.cmp(&b.completed_us).then(a.id.cmp(&b.id)));
            Ok(out)
        })
    }

    fn records(&self, q: RecordQuery<'_>) -> Result<PageStream<Envelope>> {
        let me = self.handle();
        let batch = q.batch_id.to_string();
        Ok(pages(&self.rt, async move {
            let dataset_id = me.existing_dataset(&batch, "records").await?;
            // Completed records carry their labels and completion time, as in results().
            let wants_completed = q
                .statuses
                .as_ref()
                .is_none_or(|w| w.contains(&Status::Completed));
            let by_file = match wants_completed {
                true => Some(me.final_labels(&dataset_id, "records").await?),
                false => None,
            };
            let states = me
                .file_states(&dataset_id, by_file.as_ref(), "records")
                .await?;
            Ok(states
                .into_iter()
                .filter(|f| q.statuses.as_ref().is_none_or(|w| w.contains(&f.status)))
                .map(|f| {
                    let output = match (&by_file, f.status) {
                        (Some(l), Status::Completed) => {
                            output_of(&l.get(&f.file_id).cloned().unwrap_or(json!([])))
                        }
                        _ => None,
                    };
                    let raw = q.include_raw.then(|| raw_json(&f.raw)).flatten();
                    f.envelope(&batch, output, raw)
                })
                .collect())
        }))
    }

    async fn accept(&self, batch_id: &str, ids: Vec<String>) -> Result<()> {
        self.review(batch_id, ids, "accept", None).await
    }

    async fn reject(&self, batch_id: &str, ids: Vec<String>, reason: Option<String>) -> Result<()> {
        self.review(batch_id, ids, "reject", reason).await
    }

    /// Every task of a dataset, as Deepen describes them (`batch.tasks()`).
    async fn tasks(&self, batch_id: &str) -> Result<Vec<Value>> {
        let dataset_id = self.existing_dataset(batch_id, "tasks").await?;
        let v = self
            .get_json(&["datasets", &dataset_id, "tasks"], "tasks")
            .await?;
        Ok(v.get("tasks")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default())
    }

    /// The tasks assigned to a user: `{"file_tasks": [...], "label_tasks": [...]}` (`client.user_tasks(email)`).
    async fn user_tasks(&self, email: &str) -> Result<Value> {
        let mut url = self.url(&["clients", &self.cfg.project, "user_tasks"]);
        url.query_pairs_mut().append_pair("email", email);
        self.http
            .send(&Request::get(url, "user_tasks"))
            .await?
            .json(VENDOR, "user_tasks")
    }

    /// The client's delayed tasks (`client.delayed_tasks()`): the document writes the key "delayed tasks".
    async fn delayed_tasks(&self) -> Result<Vec<Value>> {
        let v = self
            .get_json(
                &["clients", &self.cfg.project, "delayed_tasks"],
                "delayed_tasks",
            )
            .await?;
        let list = v
            .get("delayed_tasks")
            .or_else(|| v.get("delayed tasks"))
            .or_else(|| {
                v.as_object()
                    .and_then(|o| o.values().find(|x| x.is_array()))
            })
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(list)
    }

    fn api_url(&self, path: &str) -> Result<Url> {
        request_url(&self.cfg.base_url, &self.api, Some("/api/"), path)
    }

    /// Deepen's lists come whole: one GET; the items are the body's list (or its one list-valued field).
    fn paginate(&self, url: Url) -> PageStream<Box<RawValue>> {
        let http = self.http.clone();
        pages(&self.rt, async move {
            let v: Value = http
                .send(&Request::get(url, "request"))
                .await?
                .json(VENDOR, "request")?;
            let items = match v {
                Value::Array(a) => a,
                Value::Object(o) => {
                    let lists: Vec<&Value> = o.values().filter(|x| x.is_array()).collect();
                    if lists.len() == 1 {
                        lists[0].as_array().cloned().unwrap_or_default()
                    } else {
                        o.into_iter().map(|(_, x)| x).collect()
                    }
                }
                other => vec![other],
            };
            Ok(items.iter().filter_map(raw_json).collect())
        })
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
                br#"{"detail": "dataset_name: This field is required."}"#
            ),
            (None, Some("dataset_name: This field is required.".into()))
        );
        assert_eq!(
            parse_error(400, br#"{"error": {"code": 400, "message": "size"}}"#),
            (Some("400".into()), Some("size".into()))
        );
        assert_eq!(parse_error(502, b"<html>"), (None, None));
    }

    #[test]
    fn a_dataset_listed_without_its_id_takes_the_map_key() {
        let b = batch_info(
            json!({"dataset_name": "n", "create_timestamp_millis": 1.5e12}),
            Some("k1"),
        )
        .unwrap();
        assert_eq!(b.id, "k1");
        assert!(b.created_at.is_some());
        assert!(batch_info(json!({"dataset_name": "n"}), None).is_err());
    }
}
