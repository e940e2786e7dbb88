//! Deepen AI (`tools.deepen.ai/api/v2`).
//!
//! Neutral model onto Deepen: `project` = the workspace's `clientId`; `Batch` = dataset; record = a file
//! (`file`: a path on disk, or `{"base64": ...}` bytes), packed into a zip whose entry name is the record key
//! (a record's `name` when no key was asked for); `Job` = the upload and processing of those zips, running
//! until the dataset leaves `FileUpload`/`Processing`; result = the final-stage labels of a file, its neutral
//! `id` the `file_id`. Auth: a static bearer token. Lists come whole (no pagination).
//!
//! Upload: the records are written into zips on disk (1,000 files each), file by file, and each zip is PUT,
//! streamed, to its `resumable_upload_url` without the bearer token, then `process_uploaded_data` unpacks it.
//! Deepen only documents declaring archives when a dataset is created; further archives are declared with
//! `POST /datasets/{id}/files` (inferred, vendors/deepen.md: to confirm with Deepen). Idempotent by key: the
//! dataset's `file_id`s are read first and only missing files are packed; an ambiguous failure of processing
//! is reconciled against the dataset's `uploaded_files`.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use reqwest::Method;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use url::Url;

use super::config::{check_options, ClientConfig, Options};
use super::kit::{self, Kit};
use super::model::*;
use super::upload::{in_chunks, Driver, Keyed, Pieces, Plan, Wording};
use super::{Adapter, UploadOptions, UploadProgress};
use crate::engine::auth::{refused_with_401, KeyPlacement, StaticKey};
use crate::engine::http::{read_limited, request_url, HttpClient, Request, Response};
use crate::engine::redact::redact_url;
use crate::engine::retry::{is_ambiguous, RequestKind, RetryPolicy};
use crate::engine::stream::PageStream;
use crate::engine::{Error, ErrorKind, Result};

const VENDOR: &str = "deepen";
/// Files per zip: small enough that an interrupted upload loses little, large enough to be few calls.
pub const FILES_PER_ZIP: usize = 1000;
const UPLOAD_CONCURRENCY: usize = 2;
const PAGE: usize = 1000;
const READ_CHUNK: usize = 64 * 1024;

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

#[derive(Deserialize)]
struct FileDto {
    file_id: String,
    create_time_millis: Option<i64>,
}

#[derive(Deserialize, Clone)]
struct TaskDto {
    task_id: String,
    stage_id: Option<String>,
    file_id: Option<String>,
    label_id: Option<String>,
    status: Option<String>,
    update_time_millis: Option<i64>,
}

/// A file's neutral status from its tasks (one per stage, in stage order).
fn file_status(tasks: &[&TaskDto]) -> Status {
    if tasks.is_empty() {
        return Status::Pending;
    }
    let st = |t: &TaskDto| t.status.clone().unwrap_or_default();
    if tasks.iter().all(|t| st(t) == "accepted") {
        return Status::Completed;
    }
    let untouched = tasks.iter().enumerate().all(|(i, t)| match st(t).as_str() {
        "waiting" => true,
        "ready" => i == 0,
        _ => false,
    });
    if untouched {
        Status::Pending
    } else {
        Status::InProgress
    }
}

fn ms_to_rfc3339(ms: i64) -> String {
    format_rfc3339_us(ms * 1000)
}

/// Standard base64 (with or without padding), for `{"base64": ...}` file contents.
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let clean: Vec<u8> = s
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    if clean.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= val(*c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

/// Where a record's file comes from.
#[derive(Debug, Clone)]
enum Source {
    Path(PathBuf),
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    source: Source,
}

/// Checks a record and says what goes into the zip: the entry name (the key, or `name` when the key is the
/// content hash of a record without one) and where the bytes come from.
fn entry_of(r: &UploadRecord, index: usize) -> Result<Entry> {
    let fail = |m: String, field: &str| {
        Error::invalid(format!("record #{index}: {m}"))
            .vendor(VENDOR)
            .operation("upload")
            .key(r.key.clone())
            .field(field)
    };
    let name = match r.data.get("name") {
        Some(Value::String(n)) if r.key.starts_with("sha256-") && !n.is_empty() => n.clone(),
        _ => r.key.clone(),
    };
    if name.starts_with('/')
        || name.contains('\\')
        || name
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(fail(
            format!("{name:?} cannot be a file name inside a zip (no leading '/', '..', empty or '\\' parts)"),
            "name",
        ));
    }
    let source = match r.data.get("file") {
        Some(Value::String(p)) => {
            let path = PathBuf::from(p);
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => Source::Path(path),
                Ok(_) => return Err(fail(format!("file {p:?} is not a regular file"), "file")),
                Err(e) => return Err(fail(format!("file {p:?} cannot be read: {e}"), "file")),
            }
        }
        Some(Value::Object(o)) => match o
            .get("base64")
            .and_then(Value::as_str)
            .and_then(decode_base64)
        {
            Some(b) => Source::Bytes(b),
            None => {
                return Err(fail(
                    "file must be a path, or {\"base64\": <standard base64 text>}".into(),
                    "file",
                ))
            }
        },
        Some(_) => {
            return Err(fail(
                "file must be a path to the file (a string)".into(),
                "file",
            ))
        }
        None => {
            return Err(fail(
                "every Deepen record needs a `file` (a path to the file)".into(),
                "file",
            ))
        }
    };
    Ok(Entry { name, source })
}

/// Every record's entry, checked before anything is sent; file names must be unique.
fn entries_of(records: &[UploadRecord]) -> Result<Vec<Arc<Entry>>> {
    let mut entries = Vec::with_capacity(records.len());
    let mut seen = HashSet::new();
    for (i, r) in records.iter().enumerate() {
        let e = entry_of(r, i)?;
        if !seen.insert(e.name.clone()) {
            return Err(Error::new(
                ErrorKind::DuplicateRecord,
                format!(
                    "two records have the file name {:?}: a key must be unique within an upload",
                    e.name
                ),
            )
            .vendor(VENDOR)
            .operation("upload")
            .key(e.name));
        }
        entries.push(Arc::new(e));
    }
    Ok(entries)
}

impl Keyed for Entry {
    fn key(&self) -> &str {
        &self.name
    }
}

/// Writes entries into a zip at `path`, streaming each file from disk; the zip's size.
fn write_zip(path: &std::path::Path, entries: &[Arc<Entry>]) -> std::io::Result<u64> {
    let file = std::fs::File::create(path)?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(false);
    for e in entries {
        zip.start_file(e.name.as_str(), opts)
            .map_err(std::io::Error::other)?;
        match &e.source {
            Source::Path(p) => {
                let mut f = std::fs::File::open(p)?;
                std::io::copy(&mut f, &mut zip)?;
            }
            Source::Bytes(b) => zip.write_all(b)?,
        }
    }
    let mut w = zip.finish().map_err(std::io::Error::other)?;
    w.flush()?;
    drop(w);
    Ok(std::fs::metadata(path)?.len())
}

/// A file's bytes as a request body, read by one thread into a small bounded channel: never whole in memory,
/// and the reads happen off the runtime's threads.
fn file_body(path: PathBuf) -> reqwest::Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    std::thread::spawn(move || {
        let mut f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        loop {
            let mut buf = vec![0u8; READ_CHUNK];
            match f.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.blocking_send(Ok(bytes::Bytes::from(buf))).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    reqwest::Body::wrap_stream(stream)
}

struct TempZip(PathBuf);

impl Drop for TempZip {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
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
        let mut u = self.api.clone();
        u.path_segments_mut()
            .expect("api root is a base")
            .extend(segments);
        u
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

    fn check_id(id: &str) -> Result<()> {
        if id.trim().is_empty() || id.contains('/') {
            return Err(Error::invalid(format!("{id:?} is not a dataset id"))
                .vendor(VENDOR)
                .field("id"));
        }
        Ok(())
    }

    async fn files(
        &self,
        batch_id: &str,
        operation: &'static str,
    ) -> Result<Vec<(FileDto, Box<RawValue>)>> {
        let resp = self
            .http
            .send(&Request::get(
                self.url(&["datasets", batch_id, "files"]),
                operation,
            ))
            .await?;
        #[derive(Deserialize)]
        struct Files {
            files: Vec<Box<RawValue>>,
        }
        let files: Files = resp.json(VENDOR, operation)?;
        files
            .files
            .into_iter()
            .map(|raw| {
                let dto: FileDto = serde_json::from_str(raw.get()).map_err(|e| {
                    Error::new(ErrorKind::Vendor, format!("unexpected file object: {e}"))
                        .vendor(VENDOR)
                        .operation(operation)
                        .code("bad_response")
                })?;
                Ok((dto, raw))
            })
            .collect()
    }

    async fn task_list(&self, batch_id: &str, operation: &'static str) -> Result<Vec<TaskDto>> {
        #[derive(Deserialize)]
        struct Tasks {
            tasks: Vec<TaskDto>,
        }
        let t: Tasks = self
            .http
            .send(&Request::get(
                self.url(&["datasets", batch_id, "tasks"]),
                operation,
            ))
            .await?
            .json(VENDOR, operation)?;
        Ok(t.tasks)
    }

    /// Every file with its neutral status and completion time (ms), from the files and the tasks.
    async fn file_states(
        &self,
        batch_id: &str,
        operation: &'static str,
    ) -> Result<Vec<(FileDto, Box<RawValue>, Status, Option<i64>)>> {
        Self::check_id(batch_id)?;
        let (files, tasks) = futures::try_join!(
            self.files(batch_id, operation),
            self.task_list(batch_id, operation)
        )?;
        let mut per_file: HashMap<&str, Vec<&TaskDto>> = HashMap::new();
        let mut dataset_level = Vec::new();
        for t in &tasks {
            match &t.file_id {
                Some(f) => per_file.entry(f.as_str()).or_default().push(t),
                None => dataset_level.push(t),
            }
        }
        Ok(files
            .into_iter()
            .map(|(f, raw)| {
                let mut ts = per_file
                    .get(f.file_id.as_str())
                    .cloned()
                    .unwrap_or_default();
                // Sequence datasets: tasks are per object across frames, so a frame is as far as all of them.
                ts.extend(dataset_level.iter().copied());
                let status = file_status(&ts);
                let done = (status == Status::Completed)
                    .then(|| ts.iter().filter_map(|t| t.update_time_millis).max())
                    .flatten();
                (f, raw, status, done)
            })
            .collect())
    }

    /// Declares one more archive on the dataset; its upload URL. A failure that may have declared it is simply
    /// retried: an archive declared and never uploaded holds nothing.
    async fn declare_archive(&self, batch_id: &str, size: u64) -> Result<Url> {
        let body = json!({"files": [{"file_size": size, "file_type": "application/zip"}]});
        let retry = self.retry();
        let mut round = 0;
        let v: Value = loop {
            match self
                .post(
                    &["datasets", batch_id, "files"],
                    &body,
                    RequestKind::Create,
                    "upload",
                )
                .await
            {
                Ok(resp) => break resp.json(VENDOR, "upload")?,
                Err(e) if is_ambiguous(&e) && round < retry.max_retries => {
                    tokio::time::sleep(retry.delay(round, None)).await;
                    round += 1;
                }
                Err(e) => return Err(e),
            }
        };
        let url = v
            .get("files")
            .and_then(|f| f.get(0))
            .and_then(|f| f.get("resumable_upload_url"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Vendor,
                    "the dataset answered no resumable_upload_url",
                )
                .vendor(VENDOR)
                .operation("upload")
                .code("bad_response")
            })?;
        Url::parse(url).map_err(|e| {
            Error::new(ErrorKind::Vendor, format!("bad resumable_upload_url: {e}"))
                .vendor(VENDOR)
                .operation("upload")
        })
    }

    /// PUTs the zip to the upload URL: no bearer token, the body streamed from disk. Retried: a PUT of the same
    /// object replaces it.
    async fn put_zip(&self, url: &Url, path: &std::path::Path, size: u64) -> Result<()> {
        let retry = self.retry();
        let mut round = 0;
        loop {
            let sent = self
                .http
                .raw()
                .put(url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/zip")
                .header(reqwest::header::CONTENT_LENGTH, size)
                .body(file_body(path.to_path_buf()))
                .send()
                .await;
            let failure = match sent {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => {
                    let status = r.status().as_u16();
                    // An error body: read within the limit, and only to find the vendor's message.
                    let body = read_limited(r, self.http.limits().max_response_bytes)
                        .await
                        .unwrap_or_default();
                    let (code, msg) = parse_error(status, &body);
                    let mut e = Error::new(
                        if status == 400 {
                            ErrorKind::InvalidInput
                        } else {
                            ErrorKind::Vendor
                        },
                        msg.unwrap_or_else(|| {
                            format!("PUT {} answered HTTP {status}", redact_url(url))
                        }),
                    )
                    .vendor(VENDOR)
                    .operation("upload");
                    e.status = Some(status);
                    e.code = code;
                    if !(status == 429 || status >= 500) {
                        return Err(e);
                    }
                    e
                }
                Err(e) => Error::new(
                    ErrorKind::Vendor,
                    format!("PUT {} failed: the connection broke", redact_url(url)),
                )
                .vendor(VENDOR)
                .operation("upload")
                .code(if e.is_connect() {
                    "connect_failed"
                } else {
                    "connection_lost"
                }),
            };
            if round >= retry.max_retries {
                return Err(failure);
            }
            tokio::time::sleep(retry.delay(round, None)).await;
            round += 1;
        }
    }

    /// Asks Deepen to unpack the archive. After an ambiguous failure, the dataset's `uploaded_files` says
    /// whether it was processed; only if not is the call sent again.
    async fn process(&self, batch_id: &str, file_name: &str) -> Result<()> {
        let body = json!({ "file_name": file_name });
        let retry = self.retry();
        let mut round = 0;
        loop {
            match self
                .post(
                    &["datasets", batch_id, "process_uploaded_data"],
                    &body,
                    RequestKind::Create,
                    "upload",
                )
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if is_ambiguous(&e) && round < retry.max_retries => {
                    tokio::time::sleep(retry.delay(round, None)).await;
                    round += 1;
                    let d = self.get_json(&["datasets", batch_id], "upload").await?;
                    let done = d
                        .get("uploaded_files")
                        .and_then(Value::as_array)
                        .is_some_and(|u| u.iter().any(|x| x.as_str() == Some(file_name)));
                    if done {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Packs, uploads and processes one zip of entries.
    async fn send_zip(&self, batch_id: &str, entries: Vec<Arc<Entry>>) -> Result<()> {
        let path =
            std::env::temp_dir().join(format!("labelport-deepen-{}.zip", uuid::Uuid::new_v4()));
        let temp = TempZip(path.clone());
        let p = path.clone();
        let size = tokio::task::spawn_blocking(move || write_zip(&p, &entries))
            .await
            .map_err(|e| Error::new(ErrorKind::Vendor, format!("packing the zip failed: {e}")))?
            .map_err(|e| {
                Error::invalid(format!("could not pack the files into a zip: {e}"))
                    .vendor(VENDOR)
                    .operation("upload")
            })?;
        let url = self.declare_archive(batch_id, size).await?;
        self.put_zip(&url, &temp.0, size).await?;
        let name = url
            .query_pairs()
            .find(|(k, _)| k == "name")
            .map(|(_, v)| v.rsplit('/').next().unwrap_or_default().to_string())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Vendor,
                    "the upload URL carries no name= parameter",
                )
                .vendor(VENDOR)
                .operation("upload")
            })?;
        self.process(batch_id, &name).await
    }

    /// Acts on the submitted task behind each id (a file id, a label id of a sequence, or a task id).
    async fn review(
        &self,
        batch_id: &str,
        ids: Vec<String>,
        action: &'static str,
        reason: Option<String>,
    ) -> Result<()> {
        Self::check_id(batch_id)?;
        let tasks = self.task_list(batch_id, action).await?;
        let mut targets = Vec::new();
        for id in &ids {
            let mine: Vec<&TaskDto> = tasks
                .iter()
                .filter(|t| {
                    t.file_id.as_deref() == Some(id.as_str())
                        || t.label_id.as_deref() == Some(id.as_str())
                        || t.task_id == *id
                })
                .collect();
            if mine.is_empty() {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("no task of dataset {batch_id} belongs to {id:?}"),
                )
                .vendor(VENDOR)
                .operation(action)
                .key(id.clone()));
            }
            let submitted: Vec<&&TaskDto> = mine
                .iter()
                .filter(|t| t.status.as_deref() == Some("submitted"))
                .collect();
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
            targets.extend(submitted.into_iter().map(|t| t.task_id.clone()));
        }
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
}

fn batch_info(raw: Value) -> Result<BatchInfo> {
    let id = raw
        .get("dataset_id")
        .and_then(Value::as_str)
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
        created_at: raw
            .get("create_timestamp_millis")
            .and_then(Value::as_i64)
            .map(ms_to_rfc3339),
        raw,
    })
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

/// One upload's pieces for the driver: the dataset's file ids, zips of at most `FILES_PER_ZIP` files.
struct Zips<'a> {
    adapter: &'a DeepenAdapter,
    batch_id: &'a str,
}

#[async_trait::async_trait]
impl Pieces for Zips<'_> {
    type Item = Arc<Entry>;
    type Chunk = Vec<Arc<Entry>>;
    type Receipt = ();

    async fn existing_keys(&self) -> Result<HashSet<String>> {
        let files = self.adapter.files(self.batch_id, "upload").await?;
        Ok(files.into_iter().map(|(f, _)| f.file_id).collect())
    }
    fn chunks(&self, entries: Vec<Arc<Entry>>) -> Vec<Vec<Arc<Entry>>> {
        in_chunks(entries, FILES_PER_ZIP)
    }
    async fn send(&self, zip: &Vec<Arc<Entry>>) -> Result<()> {
        self.adapter.send_zip(self.batch_id, zip.clone()).await
    }
}

#[async_trait::async_trait]
impl Adapter for DeepenAdapter {
    fn kit(&self) -> Kit<'_> {
        Kit::new(&self.cfg, &self.http)
    }

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
        let text = |k: &str| -> Result<Option<String>> {
            match options.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(Error::invalid(format!("{k} must be a string"))
                    .vendor(VENDOR)
                    .field(k)),
            }
        };
        let dataset_type = text("dataset_type")?.unwrap_or_else(|| "images".into());
        if !["images", "video", "3d"].contains(&dataset_type.as_str()) {
            return Err(Error::invalid(format!(
                "dataset_type must be \"images\", \"video\" or \"3d\", not {dataset_type:?}"
            ))
            .vendor(VENDOR)
            .operation("create_batch")
            .field("dataset_type"));
        }
        let mut body = json!({
            "dataset_name": name,
            "dataset_type": dataset_type,
            "labelling_mode": "frame_by_frame",
            "files": [],
        });
        if dataset_type == "3d" {
            body["dataset_format"] = json!("default");
        }
        if let Some(p) = text("labelling_profile_id")? {
            body["labelling_profile_id"] = json!(p);
        }
        let retry = self.retry();
        let mut round = 0;
        loop {
            // Before every attempt, look for the dataset by name: after an ambiguous failure it may exist.
            let ids = self
                .get_json(
                    &["clients", &self.cfg.project, "datasets_ids"],
                    "create_batch",
                )
                .await?;
            let found = ids.get("datasets").and_then(Value::as_array).and_then(|l| {
                l.iter()
                    .find(|d| d.get("dataset_name").and_then(Value::as_str) == Some(name))
                    .and_then(|d| d.get("dataset_id").and_then(Value::as_str))
                    .map(str::to_string)
            });
            if let Some(id) = found {
                if exist_ok || round > 0 {
                    return self.get_batch(&id).await;
                }
                return Err(Error::new(
                    ErrorKind::DuplicateRecord,
                    format!("a dataset named {name:?} already exists (id {id}); pass exist_ok=True to use it"),
                )
                .vendor(VENDOR)
                .operation("create_batch")
                .key(name));
            }
            match self
                .post(
                    &["clients", &self.cfg.project, "datasets"],
                    &body,
                    RequestKind::Create,
                    "create_batch",
                )
                .await
            {
                Ok(resp) => return batch_info(resp.json(VENDOR, "create_batch")?),
                Err(e) if is_ambiguous(&e) && round < retry.max_retries => {
                    tokio::time::sleep(retry.delay(round, None)).await;
                    round += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn get_batch(&self, id: &str) -> Result<BatchInfo> {
        Self::check_id(id)?;
        let raw = self
            .get_json(&["datasets", id], "batch")
            .await
            .map_err(|e| match e.kind {
                ErrorKind::NotFound => Error {
                    message: format!("no dataset {id:?} in this workspace"),
                    ..e
                },
                _ => e,
            })?;
        batch_info(raw)
    }

    async fn list_batches(&self) -> Result<Vec<BatchInfo>> {
        let v = self
            .get_json(&["clients", &self.cfg.project, "datasets"], "batches")
            .await?;
        let mut out: Vec<BatchInfo> = match v {
            Value::Object(m) => m
                .into_iter()
                .map(|(_, d)| batch_info(d))
                .collect::<Result<_>>()?,
            _ => vec![],
        };
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(out)
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
        Self::check_id(&batch.id)?;
        let total = records.len() as u64;
        let entries = entries_of(&records)?;
        drop(records);
        let zips = Zips {
            adapter: self,
            batch_id: &batch.id,
        };
        // Neither reconciled here (`send_zip` checks by archive name: files are listed only once Deepen has
        // unpacked them) nor bisected (files are checked before anything is sent).
        let plan = Plan::new(VENDOR, UPLOAD_CONCURRENCY);
        let driver = Driver::new(&zips, plan, &options, &progress);
        let wording = Wording {
            noun: "files",
            container: "dataset",
            landed: "are in the dataset".into(),
            details: None,
        };
        let sent = driver
            .run(entries)
            .await?
            .finish(total, &progress, wording)?;
        let id = format!("deepen-upload-{}", uuid::Uuid::new_v4());
        let mut job = sent.stored_job(id, &batch.id, total, &progress);
        // Deepen unpacks the archives after they are sent: the job runs until the dataset is processed.
        job.state = JobPhase::Running;
        job.vendor_job = Some(batch.id.clone());
        self.job_status(&job).await
    }

    /// Running while the dataset is still in `FileUpload` or `Processing`.
    async fn job_status(&self, job: &JobState) -> Result<JobState> {
        if job.state != JobPhase::Running {
            return Ok(job.clone());
        }
        let d = self
            .get_json(&["datasets", &job.batch_id], "job_status")
            .await?;
        let stage = d.get("current_stage").and_then(Value::as_str).unwrap_or("");
        let mut out = job.clone();
        if !matches!(stage, "FileUpload" | "Processing") {
            out.state = JobPhase::Completed;
        }
        Ok(out)
    }

    async fn batch_status(&self, batch_id: &str) -> Result<BatchCounts> {
        let states = self.file_states(batch_id, "status").await?;
        let mut c = BatchCounts {
            total: states.len() as u64,
            ..Default::default()
        };
        for (_, _, s, _) in states {
            match s {
                Status::Pending => c.pending += 1,
                Status::InProgress => c.in_progress += 1,
                Status::Completed => c.completed += 1,
                Status::Exception => c.exception += 1,
                Status::Canceled => c.canceled += 1,
                Status::Rejected => c.rejected += 1,
                Status::Failed => c.failed += 1,
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
        let me = DeepenAdapter {
            cfg: self.cfg.clone(),
            http: self.http.clone(),
            api: self.api.clone(),
            rt: self.rt.clone(),
        };
        let batch = batch_id.to_string();
        pages(&self.rt, async move {
            let mut labels_url = me.url(&["datasets", &batch, "labels"]);
            labels_url
                .query_pairs_mut()
                .append_pair("labels_with_file_ids_order", "true")
                .append_pair("final", "true");
            let (states, labels) = futures::try_join!(me.file_states(&batch, "results"), async {
                me.http
                    .send(&Request::get(labels_url.clone(), "results"))
                    .await?
                    .json::<Value>(VENDOR, "results")
            })?;
            let by_file = labels.get("labels").and_then(Value::as_object);
            let mut out: Vec<Envelope> = states
                .into_iter()
                .filter(|(_, _, s, _)| *s == Status::Completed)
                .filter_map(|(f, raw, _, done)| {
                    let done_us = done.map(|ms| ms * 1000);
                    if let (Some(since), Some(d)) = (since_us, done_us) {
                        if d <= since {
                            return None;
                        }
                    }
                    let file_labels = by_file
                        .and_then(|m| m.get(&f.file_id))
                        .cloned()
                        .unwrap_or(json!([]));
                    let output = json!({ "labels": file_labels });
                    let raw_obj = include_raw.then(|| {
                        let file: Value = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
                        raw_json(&json!({"file": file, "labels": file_labels}))
                    });
                    Some(Envelope {
                        id: f.file_id.clone(),
                        batch_id: batch.clone(),
                        key: f.file_id,
                        status: Status::Completed,
                        input: Some(raw),
                        output: raw_json(&output),
                        created_at: f.create_time_millis.map(ms_to_rfc3339),
                        completed_at: done.map(ms_to_rfc3339),
                        vendor: VENDOR,
                        raw: raw_obj.flatten(),
                        completed_us: done_us,
                    })
                })
                .collect();
            out.sort_by(|a, b| a.completed_us.cmp(&b.completed_us).then(a.id.cmp(&b.id)));
            Ok(out)
        })
    }

    fn records(
        &self,
        batch_id: &str,
        statuses: Option<Vec<Status>>,
        include_raw: bool,
    ) -> Result<PageStream<Envelope>> {
        Self::check_id(batch_id)?;
        let me = DeepenAdapter {
            cfg: self.cfg.clone(),
            http: self.http.clone(),
            api: self.api.clone(),
            rt: self.rt.clone(),
        };
        let batch = batch_id.to_string();
        Ok(pages(&self.rt, async move {
            let states = me.file_states(&batch, "records").await?;
            Ok(states
                .into_iter()
                .filter(|(_, _, s, _)| statuses.as_ref().is_none_or(|w| w.contains(s)))
                .map(|(f, raw, s, done)| Envelope {
                    id: f.file_id.clone(),
                    batch_id: batch.clone(),
                    key: f.file_id,
                    status: s,
                    raw: include_raw.then(|| raw.clone()),
                    input: Some(raw),
                    output: None,
                    created_at: f.create_time_millis.map(ms_to_rfc3339),
                    completed_at: done.map(ms_to_rfc3339),
                    vendor: VENDOR,
                    completed_us: done.map(|ms| ms * 1000),
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
        Self::check_id(batch_id)?;
        let v = self
            .get_json(&["datasets", batch_id, "tasks"], "tasks")
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

    fn task(stage: &str, status: &str) -> TaskDto {
        TaskDto {
            task_id: "t".into(),
            stage_id: Some(stage.into()),
            file_id: Some("a.png".into()),
            label_id: None,
            status: Some(status.into()),
            update_time_millis: Some(1),
        }
    }

    #[test]
    fn statuses_from_tasks() {
        let s = |a: &str, b: &str| {
            let (x, y) = (task("Labelling", a), task("QA", b));
            file_status(&[&x, &y])
        };
        assert_eq!(file_status(&[]), Status::Pending);
        assert_eq!(s("waiting", "waiting"), Status::Pending);
        assert_eq!(s("ready", "waiting"), Status::Pending);
        assert_eq!(s("in_progress", "waiting"), Status::InProgress);
        assert_eq!(s("rejected", "waiting"), Status::InProgress);
        assert_eq!(s("submitted", "ready"), Status::InProgress);
        assert_eq!(s("accepted", "in_progress"), Status::InProgress);
        assert_eq!(s("accepted", "accepted"), Status::Completed);
    }

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
    fn base64() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8").unwrap(), b"hello");
        assert_eq!(decode_base64("/9j/").unwrap(), vec![0xff, 0xd8, 0xff]);
        assert!(decode_base64("a").is_none());
        assert!(decode_base64("a*bc").is_none());
    }

    #[test]
    fn entries_need_a_file_and_a_safe_name() {
        let rec = |key: &str, data: Value| UploadRecord {
            key: key.into(),
            data: data.as_object().unwrap().clone(),
        };
        let e = entry_of(
            &rec(
                "sha256-abc",
                json!({"name": "x.png", "file": {"base64": "AAEC"}}),
            ),
            0,
        )
        .unwrap();
        assert_eq!(e.name, "x.png");
        let e = entry_of(
            &rec(
                "k1.png",
                json!({"name": "x.png", "file": {"base64": "AAEC"}}),
            ),
            0,
        )
        .unwrap();
        assert_eq!(e.name, "k1.png");
        for (key, data) in [
            ("a.png", json!({})),
            ("a.png", json!({"file": 3})),
            ("a.png", json!({"file": "/definitely/not/here.png"})),
            ("../a.png", json!({"file": {"base64": "AA=="}})),
            ("/a.png", json!({"file": {"base64": "AA=="}})),
        ] {
            let err = entry_of(&rec(key, data), 4).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
            assert!(err.message.starts_with("record #4"), "{err}");
        }
    }
}
