//! `Client`, `Batch` and `Job`: the synchronous API. Every blocking call releases the GIL and answers Ctrl-C.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};
use reqwest::Method;
use sha2::{Digest, Sha256};

use super::args;
use super::errors::to_py_err;
use super::json::{decode_json, dict_to_json, json_value_to_py, py_to_json, JsonToPyError};
use super::results::{check_progress, RequestPages, ResultStream};
use super::runtime::{block_on, block_on_ticking, handle, no_panic, sleep};
use crate::engine::http::Request;
use crate::engine::retry::RequestKind;
use crate::engine::runner::with_deadline;
use crate::engine::{Error, ErrorKind, Result};
use crate::vendors::config::{ClientArgs, VendorSpec};
use crate::vendors::wait::{
    job_deadline, job_poll_error, job_timed_out, settle, BatchWait, Next, Settling,
};
use crate::vendors::{
    connect, parse_rfc3339_us, resolve, resolve_reporting, Adapter, BatchCounts, BatchInfo,
    ClientConfig, JobPhase, JobState, Options, RecordQuery, ResultQuery, Status, UploadOptions,
    UploadProgress, UploadRecord,
};

/// What `Client`, `Batch` and `Job` share. The adapter is rebuilt after `fork()`: a child cannot use the
/// parent's connections or runtime.
pub struct ClientInner {
    pub(super) config: ClientConfig,
    adapter: Mutex<(u32, Arc<dyn Adapter>)>,
}

impl ClientInner {
    /// Resolves arguments and environment into a client (shared by `Client` and `AsyncClient`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn build(
        py: Python<'_>,
        vendor: Option<String>,
        profile: Option<String>,
        project: Option<String>,
        base_url: Option<String>,
        timeout: f64,
        max_retries: u32,
        rate_limit: Option<f64>,
        allow_insecure: bool,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Arc<Self>> {
        let args = ClientArgs {
            vendor: vendor.unwrap_or_default(),
            profile,
            project,
            base_url,
            ca_bundle: ca_bundle_arg(kwargs)?,
            keywords: kwargs_to_options(without(kwargs, CA_BUNDLE)?.as_ref())?,
            timeout,
            max_retries,
            rate_limit,
            allow_insecure,
        };
        let (config, warnings) =
            resolve_reporting(args, |name| std::env::var(name).ok()).map_err(to_py_err)?;
        for w in warnings {
            let message = std::ffi::CString::new(w).unwrap_or_default();
            PyErr::warn(
                py,
                &py.get_type::<pyo3::exceptions::PyUserWarning>(),
                &message,
                1,
            )?;
        }
        Self::from_config(config).map_err(to_py_err)
    }

    /// Resolves `args`, then the environment, into a client (also how a `ClientSpec` builds one).
    pub(super) fn from_args(args: ClientArgs) -> Result<Arc<Self>> {
        Self::from_config(resolve(args, |name| std::env::var(name).ok())?)
    }

    fn from_config(config: ClientConfig) -> Result<Arc<Self>> {
        let adapter = connect(config.clone(), handle())?;
        Ok(Arc::new(ClientInner {
            config,
            adapter: Mutex::new((std::process::id(), adapter)),
        }))
    }

    pub(super) fn vendor(&self) -> &'static str {
        self.config.spec.name
    }

    /// Releases connections: a later call opens new ones.
    pub(super) fn reconnect(&self) -> PyResult<()> {
        let fresh = connect(self.config.clone(), handle()).map_err(to_py_err)?;
        *self.adapter.lock() = (std::process::id(), fresh);
        Ok(())
    }

    pub(super) fn adapter(&self) -> PyResult<Arc<dyn Adapter>> {
        let pid = std::process::id();
        let mut slot = self.adapter.lock();
        if slot.0 != pid {
            let fresh = connect(self.config.clone(), handle()).map_err(to_py_err)?;
            *slot = (pid, fresh);
        }
        Ok(slot.1.clone())
    }
}

/// `Client.check` (`run`) and `AsyncClient.check` (`arun`, the same probe on a worker thread):
/// `labelport._check.<runner>(client, ...)`, given the credentials only so the report can redact them.
pub(super) fn check<'py>(
    client: &Bound<'py, Client>,
    runner: &str,
    batch: Option<String>,
    write: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let py = client.py();
    let secrets: Vec<String> = client
        .get()
        .inner
        .config
        .credentials
        .values()
        .map(|s| s.expose().to_string())
        .collect();
    let kwargs = PyDict::new(py);
    kwargs.set_item("batch", batch)?;
    kwargs.set_item("write", write)?;
    kwargs.set_item("secrets", secrets)?;
    py.import("labelport._check")?
        .getattr(runner)?
        .call((client,), Some(&kwargs))
}

pub(super) fn invalid(message: impl Into<String>, field: &str) -> PyErr {
    to_py_err(Error::invalid(message).field(field))
}

/// `ca_bundle=`: a path (str or `os.PathLike`) to a PEM file of extra certificate authorities. It travels in
/// `**kwargs` beside the vendor's credentials and options, as a setting of every client.
fn ca_bundle_arg(kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Option<String>> {
    let Some(value) = kwargs.map(|k| k.get_item(CA_BUNDLE)).transpose()?.flatten() else {
        return Ok(None);
    };
    args::ca_bundle(&value)
}

const CA_BUNDLE: &str = "ca_bundle";

/// A copy of `kwargs` without `name`.
fn without<'py>(
    kwargs: Option<&Bound<'py, PyDict>>,
    name: &str,
) -> PyResult<Option<Bound<'py, PyDict>>> {
    let Some(kw) = kwargs else { return Ok(None) };
    let copy = kw.copy()?;
    if copy.contains(name)? {
        copy.del_item(name)?;
    }
    Ok(Some(copy))
}

pub(super) fn kwargs_to_options(kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Options> {
    let mut out = BTreeMap::new();
    if let Some(kw) = kwargs {
        for (k, v) in kw.iter() {
            let name: String = k.extract()?;
            let value = py_to_json(&v, &name)
                .map_err(|e| invalid(format!("option {}: {}", e.path, e.message), &name))?;
            out.insert(name, value);
        }
    }
    Ok(out)
}

/// One vendor account and project. Thread-safe: share one per process.
#[pyclass(module = "labelport", frozen)]
pub struct Client {
    inner: Arc<ClientInner>,
}

impl Client {
    pub(super) fn from_inner(inner: Arc<ClientInner>) -> Self {
        Client { inner }
    }
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (vendor=None, project=None, *, profile=None, base_url=None, timeout=30.0, max_retries=5, rate_limit=None, allow_insecure=false, **kwargs))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        #[pyo3(from_py_with = args::vendor)] vendor: Option<String>,
        #[pyo3(from_py_with = args::project)] project: Option<String>,
        #[pyo3(from_py_with = args::profile)] profile: Option<String>,
        #[pyo3(from_py_with = args::base_url)] base_url: Option<String>,
        #[pyo3(from_py_with = args::timeout)] timeout: f64,
        #[pyo3(from_py_with = args::max_retries)] max_retries: u32,
        #[pyo3(from_py_with = args::rate_limit)] rate_limit: Option<f64>,
        #[pyo3(from_py_with = args::allow_insecure)] allow_insecure: bool,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        no_panic(|| {
            let inner = ClientInner::build(
                py,
                vendor,
                profile,
                project,
                base_url,
                timeout,
                max_retries,
                rate_limit,
                allow_insecure,
                kwargs,
            )?;
            Ok(Client { inner })
        })
    }

    /// The vendor's name.
    #[getter]
    fn vendor(&self) -> &'static str {
        self.inner.config.spec.name
    }

    /// The project (vendor's workflow, project or client id) the client works in.
    #[getter]
    fn project(&self) -> &str {
        &self.inner.config.project
    }

    /// The vendor's base URL (scheme and host).
    #[getter]
    fn base_url(&self) -> String {
        self.inner
            .config
            .base_url
            .as_str()
            .trim_end_matches('/')
            .to_string()
    }

    /// The vendor's options and optional operations.
    #[getter]
    fn capabilities<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        no_panic(|| json_value_to_py(py, &self.inner.adapter()?.capabilities()))
    }

    /// Creates a batch; with `exist_ok=True` returns the batch of that name if there is one (safe to re-run).
    #[pyo3(signature = (name, *, exist_ok=false, **options))]
    fn create_batch(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = args::name)] name: String,
        #[pyo3(from_py_with = args::exist_ok)] exist_ok: bool,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Batch> {
        no_panic(|| {
            let options = kwargs_to_options(options)?;
            let adapter = self.inner.adapter()?;
            let info = block_on(py, async move {
                adapter.create_batch(&name, exist_ok, &options).await
            })?;
            Ok(Batch {
                client: self.inner.clone(),
                info,
            })
        })
    }

    /// Re-attaches to an existing batch by id.
    fn batch(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = args::batch_id)] id: String,
    ) -> PyResult<Batch> {
        no_panic(|| {
            let adapter = self.inner.adapter()?;
            let info = block_on(py, async move { adapter.get_batch(&id).await })?;
            Ok(Batch {
                client: self.inner.clone(),
                info,
            })
        })
    }

    /// Every batch of the project.
    fn batches(&self, py: Python<'_>) -> PyResult<Vec<Batch>> {
        no_panic(|| {
            let adapter = self.inner.adapter()?;
            let infos = block_on(py, async move { adapter.list_batches().await })?;
            Ok(infos
                .into_iter()
                .map(|info| Batch {
                    client: self.inner.clone(),
                    info,
                })
                .collect())
        })
    }

    /// The tasks assigned to one user of the vendor's tool (Deepen: by email; `{"file_tasks": [...],
    /// "label_tasks": [...]}`).
    fn user_tasks<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::user)] user: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        no_panic(|| {
            let adapter = self.inner.adapter()?;
            let tasks = block_on(py, async move { adapter.user_tasks(&user).await })?;
            json_value_to_py(py, &tasks)
        })
    }

    /// Tasks the vendor reports as delayed, across the project (a list of dicts; Deepen only).
    fn delayed_tasks<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        no_panic(|| {
            let adapter = self.inner.adapter()?;
            let tasks = block_on(py, async move { adapter.delayed_tasks().await })?;
            json_value_to_py(py, &serde_json::Value::Array(tasks))
        })
    }

    /// Authenticated escape hatch: the decoded JSON body, or an iterator of items with `paginate=True`.
    #[pyo3(signature = (method, path, *, params=None, json=None, paginate=false, retry=None, raw=false))]
    #[allow(clippy::too_many_arguments)]
    fn request<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::method)] method: String,
        #[pyo3(from_py_with = args::path)] path: String,
        #[pyo3(from_py_with = args::params)] params: Option<Bound<'py, PyDict>>,
        json: Option<&Bound<'py, PyAny>>,
        #[pyo3(from_py_with = args::paginate)] paginate: bool,
        #[pyo3(from_py_with = args::retry)] retry: Option<bool>,
        #[pyo3(from_py_with = args::raw)] raw: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        no_panic(|| {
            let adapter = self.inner.adapter()?;
            match prepare_request(
                &adapter,
                &method,
                &path,
                params.as_ref(),
                json,
                paginate,
                retry,
            )? {
                Prepared::Pages(url) => {
                    Ok(Bound::new(py, RequestPages::new(adapter.paginate(url)))?.into_any())
                }
                Prepared::Single(req) => {
                    let resp = block_on(py, async move { adapter.http().send(&req).await })?;
                    if raw {
                        return Ok(PyBytes::new(py, &resp.body).into_any());
                    }
                    body_to_py(py, &resp.body)
                }
            }
        })
    }

    /// Releases connections. The client stays usable; a later call opens new ones.
    fn close(&self) -> PyResult<()> {
        no_panic(|| self.inner.reconnect())
    }

    /// What rebuilds this client elsewhere (picklable); credentials only with `include_credentials=True`.
    #[pyo3(signature = (*, include_credentials=false))]
    fn spec(
        &self,
        #[pyo3(from_py_with = args::include_credentials)] include_credentials: bool,
    ) -> super::spec::ClientSpec {
        super::spec::ClientSpec::of(&self.inner, include_credentials)
    }

    /// Pickles as its spec without credentials: the unpickling process resolves them from its environment.
    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<super::spec::Reduced<'py>> {
        no_panic(|| super::spec::reduce_client(py, &self.inner, false))
    }

    /// A read-only probe of the account against the vendor's ledger (python/labelport/_check.py); the
    /// credentials go along only so the report can redact them.
    #[pyo3(signature = (*, batch=None, write=false))]
    fn check<'py>(
        slf: &Bound<'py, Self>,
        batch: Option<String>,
        write: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        no_panic(|| check(slf, "run", batch, write))
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_exc))]
    fn __exit__(&self, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<()> {
        no_panic(|| self.close())
    }

    fn __repr__(&self) -> String {
        format!(
            "<labelport.Client vendor={:?} project={:?} base_url={:?}>",
            self.vendor(),
            self.project(),
            self.base_url()
        )
    }
}

/// A `client.request` call, checked and ready to send.
pub(super) enum Prepared {
    Single(Request),
    Pages(url::Url),
}

pub(super) fn prepare_request(
    adapter: &Arc<dyn Adapter>,
    method: &str,
    path: &str,
    params: Option<&Bound<'_, PyDict>>,
    json: Option<&Bound<'_, PyAny>>,
    paginate: bool,
    retry: Option<bool>,
) -> PyResult<Prepared> {
    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| invalid(format!("{method:?} is not an HTTP method"), "method"))?;
    let mut url = adapter.api_url(path).map_err(to_py_err)?;
    if let Some(params) = params {
        let mut q = url.query_pairs_mut();
        for (k, v) in params.iter() {
            let k = args::string(&k, "params")?;
            let v = match py_to_json(&v, &k).map_err(|e| invalid(e.message, &e.path))? {
                serde_json::Value::String(s) => s,
                serde_json::Value::Null => continue,
                other => other.to_string(),
            };
            q.append_pair(&k, &v);
        }
    }
    if paginate {
        if method != Method::GET {
            return Err(invalid("paginate=True works with GET only", "paginate"));
        }
        return Ok(Prepared::Pages(url));
    }
    let is_read = matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    // Only reads are retried unless the caller says the call is safe to repeat.
    let kind = match (retry, is_read) {
        (Some(true), _) | (None, true) => RequestKind::Read,
        _ => RequestKind::Create,
    };
    let req = match json {
        Some(body) if !body.is_none() => {
            let value = py_to_json(body, "json").map_err(|e| invalid(e.message, &e.path))?;
            Request::json(method, url, &value, kind, "request").map_err(to_py_err)?
        }
        _ => {
            let mut r = Request::get(url, "request");
            r.method = method;
            r.kind = kind;
            r
        }
    };
    Ok(Prepared::Single(req))
}

/// A response body as Python: decoded JSON, else text, else bytes; `None` when empty.
pub(super) fn body_to_py<'py>(py: Python<'py>, body: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    if body.is_empty() {
        return Ok(py.None().into_bound(py));
    }
    match std::str::from_utf8(body) {
        Ok(text) => match decode_json(py, text) {
            Ok(v) => Ok(v),
            // Not JSON: the text itself. JSON nested too deep is the vendor's fault, not a text answer.
            Err(JsonToPyError::Invalid(_)) => Ok(PyString::new(py, text).into_any()),
            Err(e) => Err(e.into()),
        },
        Err(_) => Ok(PyBytes::new(py, body).into_any()),
    }
}

/// Records sent per `adapter.upload` call when they come from a stream (a DataFrame, Arrow data, a file or an
/// iterator): each chunk is converted and checked before it is sent, and never more than one is held.
pub(super) const UPLOAD_CHUNK: usize = 50_000;

/// What `upload` was given, ready to send.
pub(super) enum UploadSource {
    /// A list or tuple of dicts: every record converted and checked before anything is sent.
    Whole(Vec<UploadRecord>),
    /// Anything else: chunks from `labelport._records`, converted and sent one after the other.
    Chunks(ChunkReader),
}

impl UploadSource {
    /// How many records there are, where known before reading them.
    pub(super) fn total(&self) -> Option<u64> {
        match self {
            UploadSource::Whole(r) => Some(r.len() as u64),
            UploadSource::Chunks(c) => c.total,
        }
    }
}

/// Pulls chunks of plain dicts from `labelport._records.chunks(...)` and converts each like a list upload,
/// with record numbers and the duplicate-key check running across chunks.
pub(super) struct ChunkReader {
    chunks: Py<PyAny>,
    rules: RecordRules,
    pub(super) total: Option<u64>,
    next_index: usize,
    seen: KeysSeen,
}

impl ChunkReader {
    /// The next chunk of converted records; `None` at the end.
    pub(super) fn next_chunk(&mut self, py: Python<'_>) -> PyResult<Option<Vec<UploadRecord>>> {
        let chunks = self.chunks.bind(py);
        let Some(chunk) = chunks.try_iter()?.next() else {
            return Ok(None);
        };
        let chunk = chunk?;
        let records = convert_records(
            &chunk.try_iter()?,
            &self.rules,
            self.next_index,
            &mut self.seen,
        )?;
        self.next_index += records.len();
        Ok(Some(records))
    }
}

/// How one vendor's records are keyed and carried.
pub(super) struct RecordRules {
    /// The field named by `key=`.
    pub key: Option<String>,
    /// Without `key=`, this field keys a record that has it (Deepen: `name`), before the content hash.
    pub default_key: Option<&'static str>,
    /// A field holding a file (Deepen: `file`): bytes travel as `{"base64": ...}`, paths as strings.
    pub file_field: Option<&'static str>,
}

impl RecordRules {
    pub(super) fn new(key: Option<&str>, spec: &VendorSpec) -> Self {
        RecordRules {
            key: key.map(str::to_string),
            default_key: spec.default_key,
            file_field: spec.file_field,
        }
    }
}

/// The record with its file field made JSON: bytes as base64, a path (`os.PathLike`) as its string.
fn with_file_field<'py>(dict: &Bound<'py, PyDict>, field: &str) -> PyResult<Bound<'py, PyDict>> {
    let Some(value) = dict.get_item(field)? else {
        return Ok(dict.clone());
    };
    let binary = value.cast::<PyBytes>().is_ok()
        || value.cast::<pyo3::types::PyByteArray>().is_ok()
        || value.cast::<pyo3::types::PyMemoryView>().is_ok();
    let converted = if binary {
        use base64::Engine as _;
        let bytes = dict.py().get_type::<PyBytes>().call1((&value,))?;
        let bytes = bytes.cast::<PyBytes>()?;
        let marker = PyDict::new(dict.py());
        marker.set_item(
            "base64",
            base64::engine::general_purpose::STANDARD.encode(bytes.as_bytes()),
        )?;
        marker.into_any()
    } else if value.hasattr("__fspath__")? {
        dict.py().import("os")?.call_method1("fspath", (&value,))?
    } else {
        return Ok(dict.clone());
    };
    let copy = dict.copy()?;
    copy.set_item(field, converted)?;
    Ok(copy)
}

/// Keys already seen in one upload (as 64-bit hashes, so a 10-million-record stream stays small), with the
/// number of the record that had each.
pub(super) struct KeysSeen {
    hasher: RandomState,
    first: HashMap<u64, usize>,
}

impl Default for KeysSeen {
    fn default() -> Self {
        KeysSeen {
            hasher: RandomState::new(),
            first: HashMap::new(),
        }
    }
}

/// One job state out of the parts of a chunked upload.
pub(super) fn merge_parts(parts: Vec<JobState>) -> JobState {
    let mut parts = parts.into_iter();
    let mut merged = parts.next().expect("an upload has at least one part");
    for p in parts {
        merged.total += p.total;
        merged.done += p.done;
        merged.failed += p.failed;
        merged.skipped += p.skipped;
        merged.failures.extend(p.failures);
        if p.state != JobPhase::Completed {
            merged.state = p.state;
        }
        merged.vendor_job = None;
    }
    merged
}

/// `Some(bar)` when `progress` asks for a progress display (`labelport._progress.upload_bar`).
pub(super) fn upload_bar<'py>(
    py: Python<'py>,
    progress: Option<&Bound<'py, PyAny>>,
    total: Option<u64>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let bar = py
        .import("labelport._progress")?
        .call_method1("upload_bar", (progress, total))?;
    Ok((!bar.is_none()).then_some(bar))
}

/// `progress` of `wait` as a callable (a user's callable as given), or `None` for no progress at all.
pub(super) fn wait_progress<'py>(
    py: Python<'py>,
    progress: Option<&Bound<'py, PyAny>>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let cb = py
        .import("labelport._progress")?
        .call_method1("wait_progress", (progress,))?;
    Ok((!cb.is_none()).then_some(cb))
}

/// Closes a progress display made by `labelport._progress` (a user's own callable has no `close`).
pub(super) fn close_progress(bar: Option<&Bound<'_, PyAny>>, ok: bool) -> PyResult<()> {
    match bar {
        Some(b) if b.hasattr("close")? => b.call_method1("close", (ok,)).map(|_| ()),
        _ => Ok(()),
    }
}

/// Checks the arguments of `upload`; a list or tuple is converted whole before anything is sent, anything else
/// is read in chunks.
pub(super) fn prepare_upload(
    records: &Bound<'_, PyAny>,
    spec: &VendorSpec,
    key: Option<&str>,
    on_error: &str,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<(UploadSource, UploadOptions)> {
    // `args::on_error` let only "raise" and "collect" through.
    let collect_errors = on_error == "collect";
    let options = kwargs_to_options(options)?;
    let source = if records.cast::<PyList>().is_ok()
        || records.cast::<pyo3::types::PyTuple>().is_ok()
        || records.cast::<PyDict>().is_ok()
    {
        UploadSource::Whole(collect_records(records, &RecordRules::new(key, spec))?)
    } else {
        let py = records.py();
        let chunks = py
            .import("labelport._records")?
            .call_method1("chunks", (records, UPLOAD_CHUNK))?;
        let total = chunks.getattr("total")?.extract::<Option<u64>>()?;
        UploadSource::Chunks(ChunkReader {
            chunks: chunks.unbind(),
            rules: RecordRules::new(key, spec),
            total,
            next_index: 0,
            seen: KeysSeen::default(),
        })
    };
    if source.total() == Some(0) {
        return Err(invalid("nothing to upload: records is empty", "records"));
    }
    Ok((
        source,
        UploadOptions {
            collect_errors,
            options,
        },
    ))
}

/// The page stream behind `results()` (sync and async), with the watermark it starts from: a range of pages
/// (`pages=`), by completion time, or by a vendor-kept consumer cursor.
pub(super) fn results_stream(
    client: &ClientInner,
    batch_id: &str,
    since: Option<&Bound<'_, PyAny>>,
    include_raw: bool,
    consumer: Option<&str>,
    pages: Option<&Bound<'_, PyAny>>,
) -> PyResult<(
    crate::engine::stream::PageStream<crate::vendors::Envelope>,
    Option<i64>,
)> {
    if let Some(pages) = pages.filter(|p| !p.is_none()) {
        let stream =
            super::pages::results_range(client, batch_id, pages, since, consumer, include_raw)?;
        return Ok((stream, None));
    }
    let since_us = parse_since(since)?;
    let adapter = client.adapter()?;
    match consumer {
        Some(_) if since_us.is_some() => Err(invalid(
            "pass since= or consumer=, not both: a consumer's cursor already says where to start",
            "consumer",
        )),
        Some(c) => Ok((
            adapter
                .consumer_results(batch_id, c, include_raw)
                .map_err(to_py_err)?,
            None,
        )),
        None => {
            let query = ResultQuery {
                batch_id,
                since_us,
                include_raw,
            };
            Ok((adapter.results(query), since_us))
        }
    }
}

/// A batch of records at the vendor.
#[pyclass(module = "labelport", frozen)]
pub struct Batch {
    pub(super) client: Arc<ClientInner>,
    pub(super) info: BatchInfo,
}

/// The record key: the `key` field's value, or a stable hash of the record's content.
fn record_key(
    index: usize,
    data: &serde_json::Map<String, serde_json::Value>,
    key: Option<&str>,
    default_key: Option<&str>,
) -> Result<String> {
    if key.is_none() {
        if let Some(serde_json::Value::String(s)) = default_key.and_then(|f| data.get(f)) {
            if !s.is_empty() {
                return Ok(s.clone());
            }
        }
    }
    match key {
        Some(field) => match data.get(field) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(serde_json::Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
            Some(serde_json::Value::String(_)) => {
                Err(Error::invalid(format!("record #{index} has an empty key")).field(field))
            }
            Some(other) => Err(Error::invalid(format!(
                "record #{index}: key field {field:?} must be a string or an integer, not {}",
                json_type(other)
            ))
            .field(field)),
            None => Err(Error::invalid(format!(
                "record #{index} has no key field {field:?}; its fields are {}",
                fields_of(data)
            ))
            .field(field)),
        },
        None => Ok(content_key(data)),
    }
}

/// A record's field names for a message: the first few, quoted, and how many more.
fn fields_of(data: &serde_json::Map<String, serde_json::Value>) -> String {
    const SHOWN: usize = 12;
    if data.is_empty() {
        return "none (an empty record)".to_string();
    }
    let mut names: Vec<String> = data.keys().take(SHOWN).map(|k| format!("{k:?}")).collect();
    if data.len() > SHOWN {
        names.push(format!("and {} more", data.len() - SHOWN));
    }
    names.join(", ")
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a bool",
        serde_json::Value::Number(_) => "a float",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a dict",
    }
}

/// A stable hash of a record's content, independent of key order: re-running the same upload gives the same
/// keys, so nothing is sent twice.
fn content_key(data: &serde_json::Map<String, serde_json::Value>) -> String {
    fn canonical(v: &serde_json::Value, out: &mut Vec<u8>) {
        match v {
            serde_json::Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push(b'{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend(serde_json::to_vec(k).unwrap_or_default());
                    out.push(b':');
                    canonical(&m[k], out);
                }
                out.push(b'}');
            }
            serde_json::Value::Array(a) => {
                out.push(b'[');
                for (i, item) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    canonical(item, out);
                }
                out.push(b']');
            }
            other => out.extend(serde_json::to_vec(other).unwrap_or_default()),
        }
    }
    let mut bytes = Vec::new();
    canonical(&serde_json::Value::Object(data.clone()), &mut bytes);
    let digest = Sha256::digest(&bytes);
    format!("sha256-{}", hex::encode(&digest[..16]))
}

/// Converts and checks every record before anything is sent.
pub(super) fn collect_records(
    records: &Bound<'_, PyAny>,
    rules: &RecordRules,
) -> PyResult<Vec<UploadRecord>> {
    if records.cast::<PyDict>().is_ok() {
        return Err(invalid(
            "records must be an iterable of dicts; got a single dict (wrap it in a list)",
            "records",
        ));
    }
    if records.cast::<PyString>().is_ok() || records.cast::<PyBytes>().is_ok() {
        return Err(invalid(
            "records must be an iterable of dicts, not a string",
            "records",
        ));
    }
    let iter = records.try_iter().map_err(|_| {
        let t = records
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default();
        invalid(
            format!("records must be an iterable of dicts, not {t}"),
            "records",
        )
    })?;
    convert_records(&iter, rules, 0, &mut KeysSeen::default())
}

/// Converts and checks records, numbering them from `first`.
fn convert_records(
    iter: &Bound<'_, pyo3::types::PyIterator>,
    rules: &RecordRules,
    first: usize,
    seen: &mut KeysSeen,
) -> PyResult<Vec<UploadRecord>> {
    let mut out = Vec::new();
    for (index, item) in iter.clone().enumerate() {
        let index = first + index;
        let item = item?;
        let dict = item.cast::<PyDict>().map_err(|_| {
            let t = item
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default();
            invalid(format!("record #{index} is a {t}, not a dict"), "records")
        })?;
        let key = rules.key.as_deref();
        let converted;
        let dict = match rules.file_field {
            Some(field) => {
                converted = with_file_field(dict, field)?;
                &converted
            }
            None => dict,
        };
        let data = dict_to_json(dict, "").map_err(|e| {
            let mut err = Error::invalid(format!(
                "record #{index}: field {:?}: {}",
                e.path, e.message
            ))
            .field(e.path);
            if let Some(k) = key
                .and_then(|k| dict.get_item(k).ok().flatten())
                .and_then(|v| v.str().ok())
            {
                err = err.key(k.to_string());
            }
            to_py_err(err)
        })?;
        let k = record_key(index, &data, key, rules.default_key).map_err(to_py_err)?;
        if let Some(first) = seen.first.insert(seen.hasher.hash_one(&k), index) {
            let what = if key.is_some() {
                "the same key"
            } else {
                "the same content"
            };
            return Err(to_py_err(
                Error::new(ErrorKind::DuplicateRecord, format!("records #{first} and #{index} have {what}: a key must be unique within an upload"))
                    .key(k),
            ));
        }
        out.push(UploadRecord { key: k, data });
    }
    Ok(out)
}

pub(super) fn counts_to_py<'py>(py: Python<'py>, c: &BatchCounts) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    for (name, v) in [
        ("total", c.total),
        ("pending", c.pending),
        ("in_progress", c.in_progress),
        ("completed", c.completed),
        ("exception", c.exception),
        ("canceled", c.canceled),
        ("rejected", c.rejected),
        ("failed", c.failed),
    ] {
        d.set_item(name, v)?;
    }
    d.set_item("done", c.done())?;
    Ok(d)
}

pub(super) fn parse_since(since: Option<&Bound<'_, PyAny>>) -> PyResult<Option<i64>> {
    let Some(since) = since.filter(|s| !s.is_none()) else {
        return Ok(None);
    };
    let text = if let Ok(s) = since.extract::<String>() {
        s
    } else if since.hasattr("isoformat")? && since.hasattr("tzinfo")? {
        // A naive datetime is taken as UTC.
        let aware = if since.getattr("tzinfo")?.is_none() {
            let utc = since
                .py()
                .import("datetime")?
                .getattr("timezone")?
                .getattr("utc")?;
            let kw = PyDict::new(since.py());
            kw.set_item("tzinfo", utc)?;
            since.call_method("replace", (), Some(&kw))?
        } else {
            since.clone()
        };
        aware.call_method0("isoformat")?.extract()?
    } else {
        return Err(invalid(
            "since must be a datetime or an RFC 3339 string",
            "since",
        ));
    };
    parse_rfc3339_us(&text).map(Some).ok_or_else(|| {
        invalid(
            format!("since={text:?} is not an RFC 3339 timestamp (e.g. 2026-11-24T08:00:00Z)"),
            "since",
        )
    })
}

pub(super) fn parse_statuses(status: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Vec<Status>>> {
    let Some(status) = status.filter(|s| !s.is_none()) else {
        return Ok(None);
    };
    let names: Vec<String> = match status.extract::<String>() {
        Ok(s) => s
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect(),
        Err(_) => status
            .extract()
            .map_err(|_| invalid("status must be a string or a list of strings", "status"))?,
    };
    names
        .iter()
        .map(|n| {
            Status::parse(n).ok_or_else(|| {
                let known: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
                invalid(
                    format!("unknown status {n:?}; statuses are {}", known.join(", ")),
                    "status",
                )
            })
        })
        .collect::<PyResult<Vec<_>>>()
        .map(Some)
}

impl Batch {
    /// Polls the batch status until `waiting` says it is finished, handing each status to `progress`.
    fn wait_loop<'py>(
        &self,
        py: Python<'py>,
        waiting: &mut BatchWait,
        progress: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let mut last: Option<BatchCounts> = None;
        loop {
            let adapter = self.client.adapter()?;
            let id = self.info.id.clone();
            let (wait, seen, vendor) = (waiting.clone(), last.clone(), self.client.vendor());
            let counts = block_on(py, async move {
                with_deadline(wait.deadline(), adapter.batch_status(&id))
                    .await
                    .map_err(|e| wait.poll_error(e, &id, vendor, seen.as_ref()))
            })?;
            last = Some(counts.clone());
            let dict = counts_to_py(py, &counts)?;
            if let Some(cb) = progress {
                cb.call1((dict.copy()?,))?;
            }
            match waiting
                .after(&counts, &self.info.id, self.client.vendor())
                .map_err(to_py_err)?
            {
                Next::Finished => return Ok(dict),
                Next::Sleep(pause) => sleep(py, pause)?,
            }
        }
    }

    /// Sends every chunk of `source`, ticking `bar` with the records handled so far.
    fn send(
        &self,
        py: Python<'_>,
        source: UploadSource,
        options: UploadOptions,
        bar: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<JobState> {
        let adapter = self.client.adapter()?;
        let mut parts: Vec<JobState> = Vec::new();
        let mut before = 0u64;
        let send_one = |py: Python<'_>, records: Vec<UploadRecord>, before: u64| {
            let (adapter, batch, options) = (adapter.clone(), self.info.clone(), options.clone());
            let counters = Arc::new(UploadProgress::default());
            let progress = counters.clone();
            block_on_ticking(
                py,
                async move { adapter.upload(&batch, records, options, progress).await },
                |_| match bar {
                    Some(b) => {
                        let handled = counters.sent.load(Ordering::Relaxed)
                            + counters.skipped.load(Ordering::Relaxed);
                        b.call_method1("update", (before + handled,)).map(|_| ())
                    }
                    None => Ok(()),
                },
            )
        };
        match source {
            UploadSource::Whole(records) => return send_one(py, records, 0),
            UploadSource::Chunks(mut reader) => {
                while let Some(records) = reader.next_chunk(py)? {
                    if let Some(last) = parts.pop() {
                        let (adapter, number) = (adapter.clone(), parts.len() + 1);
                        parts.push(block_on(py, async move {
                            settle(adapter.as_ref(), last, Settling::Part(number)).await
                        })?);
                    }
                    let n = records.len() as u64;
                    parts.push(send_one(py, records, before)?);
                    before += n;
                }
            }
        }
        match parts.len() {
            0 => Err(invalid("nothing to upload: records is empty", "records")),
            1 => Ok(parts.pop().expect("one part")),
            _ => {
                let last = parts.pop().expect("parts");
                let (adapter, number) = (adapter.clone(), parts.len() + 1);
                parts.push(block_on(py, async move {
                    settle(adapter.as_ref(), last, Settling::Part(number)).await
                })?);
                Ok(merge_parts(parts))
            }
        }
    }
}

impl Batch {
    pub(super) fn from_parts(client: Arc<ClientInner>, info: BatchInfo) -> Self {
        Batch { client, info }
    }
}

#[pymethods]
impl Batch {
    /// Pickles as its client's spec (without credentials) and the batch's description.
    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<super::spec::Reduced<'py>> {
        no_panic(|| super::spec::reduce_batch(py, &self.client, &self.info, false))
    }

    /// The vendor's batch id.
    #[getter]
    fn id(&self) -> &str {
        &self.info.id
    }

    /// The batch name, where the vendor has one.
    #[getter]
    fn name(&self) -> Option<&str> {
        self.info.name.as_deref()
    }

    /// The vendor's name.
    #[getter]
    fn vendor(&self) -> &'static str {
        self.client.config.spec.name
    }

    /// When the vendor created the batch (RFC 3339), where known.
    #[getter]
    fn created_at(&self) -> Option<&str> {
        self.info.created_at.as_deref()
    }

    /// The vendor's own batch object.
    #[getter]
    fn raw<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        no_panic(|| json_value_to_py(py, &self.info.raw))
    }

    /// Sends records; returns once the vendor has accepted every one. Idempotent by key: records whose key
    /// the batch already holds are skipped, so re-running an upload sends nothing twice.
    ///
    /// `records` is a list or iterable of dicts, a pandas or polars DataFrame, a pyarrow Table, RecordBatch or
    /// RecordBatchReader, or a path to a `.jsonl`, `.csv` or `.parquet` file. A list or tuple is checked whole
    /// before anything is sent. Anything else is read, checked and sent in chunks of
    /// `labelport.config.upload_chunk` records (50,000; a parquet file in record batches, never whole): a bad
    /// record stops the upload at its chunk, after the earlier chunks were sent; running the same upload again
    /// sends only what is missing. Values of DataFrames, Arrow data and files that JSON has no word for are
    /// converted (datetimes to RFC 3339, numpy scalars to numbers, Decimal to str, NaN/NaT/None to null);
    /// plain dicts are sent as they are, and a NaN there is an `InvalidInput`. `progress` (default
    /// `labelport.config.progress`) shows a progress bar. `wait` (default True): return once the vendor holds every
    /// record (the job reads `completed`); `wait=False` returns once the records are sent.
    // One parameter per Python argument of `upload`.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (records, key=None, *, on_error="raise", progress=None, wait=true, **options))]
    fn upload(
        &self,
        py: Python<'_>,
        records: &Bound<'_, PyAny>,
        #[pyo3(from_py_with = args::key)] key: Option<String>,
        #[pyo3(from_py_with = args::on_error)] on_error: &str,
        progress: Option<&Bound<'_, PyAny>>,
        #[pyo3(from_py_with = args::upload_wait)] wait: bool,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Job> {
        no_panic(|| {
            let (source, upload_options) = prepare_upload(
                records,
                self.client.config.spec,
                key.as_deref(),
                on_error,
                options,
            )?;
            let bar = upload_bar(py, progress, source.total())?;
            let sent = self.send(py, source, upload_options, bar.as_ref());
            close_progress(bar.as_ref(), sent.is_ok())?;
            let mut state = sent?;
            if wait {
                let adapter = self.client.adapter()?;
                state = block_on(py, async move {
                    settle(adapter.as_ref(), state, Settling::Upload).await
                })?;
            }
            Ok(Job {
                client: self.client.clone(),
                state: Mutex::new(state),
            })
        })
    }

    /// Record counts from the vendor, and `done` (every record is in a final state).
    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        no_panic(|| {
            let adapter = self.client.adapter()?;
            let id = self.info.id.clone();
            let counts = block_on(py, async move { adapter.batch_status(&id).await })?;
            counts_to_py(py, &counts)
        })
    }

    /// Blocks until every record is finished (done on two consecutive polls); raises `Timeout`. `progress`:
    /// `True`/`False` for a progress bar (default `labelport.config.progress`), or a callable given the
    /// status dict after every poll.
    #[pyo3(signature = (timeout=None, *, poll_interval=2.0, progress=None))]
    fn wait<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::wait_timeout)] timeout: Option<f64>,
        #[pyo3(from_py_with = args::poll_interval)] poll_interval: f64,
        progress: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        no_panic(|| {
            let mut waiting = BatchWait::new(timeout, poll_interval).map_err(to_py_err)?;
            let progress = wait_progress(py, progress.as_ref())?;
            let outcome = self.wait_loop(py, &mut waiting, progress.as_ref());
            close_progress(progress.as_ref(), outcome.is_ok())?;
            outcome
        })
    }

    /// Finished records as envelope dicts, page by page. `since` is an exclusive lower bound on completion time.
    /// The stream also turns into a DataFrame or a file: `.to_pandas()`, `.to_polars()`, `.to_arrow()`,
    /// `.to_parquet(path)`, `.to_csv(path)`, `.to_jsonl(path)`.
    /// With `consumer="name"` (Sama), the results delivered to that consumer since its last read instead.
    /// With `pages=(start, stop)` (0-based page indexes, stop exclusive or `None`), only the results on those
    /// pages, in the same order: see `result_pages()`.
    /// `progress` (default `labelport.config.progress`) shows how many have arrived, moved once per page, while
    /// the stream is consumed (iteration, `to_list`, `to_jsonl`); an export shows its own.
    #[pyo3(signature = (since=None, include_raw=false, consumer=None, *, pages=None, progress=None))]
    fn results(
        &self,
        since: Option<&Bound<'_, PyAny>>,
        #[pyo3(from_py_with = args::include_raw)] include_raw: bool,
        #[pyo3(from_py_with = args::consumer)] consumer: Option<String>,
        pages: Option<&Bound<'_, PyAny>>,
        progress: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<ResultStream> {
        no_panic(|| {
            let consumer = consumer.as_deref();
            let progress = check_progress(progress)?;
            let (stream, since_us) = results_stream(
                &self.client,
                &self.info.id,
                since,
                include_raw,
                consumer,
                pages,
            )?;
            Ok(ResultStream::new(stream, since_us, progress))
        })
    }

    /// How the results split into pages, for readers that each take a range (Spark, Dask):
    /// `{"total", "page_size", "pages"}` counted now, or `None` where the vendor cannot fetch results by page.
    fn result_pages<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        no_panic(|| {
            let (adapter, id) = (self.client.adapter()?, self.info.id.clone());
            let plan = block_on(py, async move { adapter.result_pages(&id).await })?;
            super::pages::plan_to_py(py, plan)
        })
    }

    /// Every record with its neutral status; `progress` as for `results`.
    #[pyo3(signature = (status=None, include_raw=false, *, progress=None))]
    fn records(
        &self,
        status: Option<&Bound<'_, PyAny>>,
        #[pyo3(from_py_with = args::include_raw)] include_raw: bool,
        progress: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<ResultStream> {
        no_panic(|| {
            let progress = check_progress(progress)?;
            let statuses = parse_statuses(status)?;
            let adapter = self.client.adapter()?;
            let stream = adapter
                .records(RecordQuery {
                    batch_id: &self.info.id,
                    statuses,
                    include_raw,
                })
                .map_err(to_py_err)?;
            Ok(ResultStream::new(stream, None, progress))
        })
    }

    /// Stops work not yet started; never deletes labels.
    fn cancel(&self, py: Python<'_>) -> PyResult<()> {
        no_panic(|| {
            let adapter = self.client.adapter()?;
            let id = self.info.id.clone();
            block_on(py, async move { adapter.cancel(&id).await })
        })
    }

    /// Accepts results by their result `id`.
    fn accept(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = args::ids)] ids: Vec<String>,
    ) -> PyResult<()> {
        no_panic(|| {
            let adapter = self.client.adapter()?;
            let id = self.info.id.clone();
            block_on(py, async move { adapter.accept(&id, ids).await })
        })
    }

    /// Rejects results by their result `id`, with an optional reason.
    #[pyo3(signature = (ids, reason=None))]
    fn reject(
        &self,
        py: Python<'_>,
        #[pyo3(from_py_with = args::ids)] ids: Vec<String>,
        #[pyo3(from_py_with = args::reason)] reason: Option<String>,
    ) -> PyResult<()> {
        no_panic(|| {
            let adapter = self.client.adapter()?;
            let id = self.info.id.clone();
            block_on(py, async move { adapter.reject(&id, ids, reason).await })
        })
    }

    /// The vendor's tasks behind this batch, as the vendor describes them (a list of dicts; Deepen only).
    fn tasks<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        no_panic(|| {
            let adapter = self.client.adapter()?;
            let id = self.info.id.clone();
            let tasks = block_on(py, async move { adapter.tasks(&id).await })?;
            json_value_to_py(py, &serde_json::Value::Array(tasks))
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "<labelport.Batch vendor={:?} id={:?} name={:?}>",
            self.vendor(),
            self.info.id,
            self.info.name.as_deref().unwrap_or("")
        )
    }
}

/// The shortest pause between two polls of a job, whatever `poll_interval` says: the vendor is not a busy loop.
pub(super) const MIN_POLL_S: f64 = 0.05;

/// One upload, and what the vendor did with it.
#[pyclass(module = "labelport", frozen)]
pub struct Job {
    pub(super) client: Arc<ClientInner>,
    pub(super) state: Mutex<JobState>,
}

pub(super) fn job_to_py<'py>(py: Python<'py>, s: &JobState) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let state = match s.state {
        JobPhase::Running => "running",
        JobPhase::Completed => "completed",
        JobPhase::Failed => "failed",
    };
    d.set_item("state", state)?;
    d.set_item("done", s.done)?;
    d.set_item("total", s.total)?;
    d.set_item("failed", s.failed)?;
    d.set_item("skipped", s.skipped)?;
    Ok(d)
}

impl Job {
    /// The job's state, asked of the vendor while it runs; a poll's retry waits end at `deadline`, where the
    /// wait that polls times out (`timeout`).
    fn refresh(
        &self,
        py: Python<'_>,
        deadline: Option<Instant>,
        timeout: Option<f64>,
    ) -> PyResult<JobState> {
        let current = self.state.lock().clone();
        if current.state != JobPhase::Running {
            return Ok(current);
        }
        let adapter = self.client.adapter()?;
        let vendor = self.client.config.spec.name;
        let fresh = block_on(py, async move {
            with_deadline(deadline, adapter.job_status(&current))
                .await
                .map_err(|e| job_poll_error(e, || job_timed_out(&current, vendor, timeout)))
        })?;
        *self.state.lock() = fresh.clone();
        Ok(fresh)
    }
}

#[pymethods]
impl Job {
    /// The job id (the vendor's where it has one).
    #[getter]
    fn id(&self) -> String {
        self.state.lock().id.clone()
    }

    /// The id of the batch the job uploads into.
    #[getter]
    fn batch_id(&self) -> String {
        self.state.lock().batch_id.clone()
    }

    /// `{"state": "running" | "completed" | "failed", "done", "total", "failed", "skipped"}`.
    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        no_panic(|| {
            let s = self.refresh(py, None, None)?;
            job_to_py(py, &s)
        })
    }

    /// Blocks until the vendor has ingested every record; raises `Timeout`.
    #[pyo3(signature = (timeout=None, *, poll_interval=1.0))]
    fn wait<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::wait_timeout)] timeout: Option<f64>,
        #[pyo3(from_py_with = args::poll_interval)] poll_interval: f64,
    ) -> PyResult<Bound<'py, PyDict>> {
        no_panic(|| {
            let started = Instant::now();
            let deadline = job_deadline(started, timeout);
            loop {
                let s = self.refresh(py, deadline, timeout)?;
                if s.state != JobPhase::Running {
                    return job_to_py(py, &s);
                }
                if let Some(t) = timeout {
                    if started.elapsed().as_secs_f64() >= t {
                        let vendor = self.client.config.spec.name;
                        return Err(to_py_err(job_timed_out(&s, vendor, timeout)));
                    }
                }
                sleep(py, Duration::from_secs_f64(poll_interval.max(MIN_POLL_S)))?;
            }
        })
    }

    /// Records the vendor refused (with `on_error="collect"`): key, field, code, message.
    fn failures<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        no_panic(|| {
            let s = self.state.lock().clone();
            let list = PyList::empty(py);
            for f in &s.failures {
                let d = PyDict::new(py);
                d.set_item("key", &f.key)?;
                d.set_item("field", &f.field)?;
                d.set_item("code", &f.code)?;
                d.set_item("message", &f.message)?;
                list.append(d)?;
            }
            Ok(list)
        })
    }

    fn __repr__(&self) -> String {
        let s = self.state.lock();
        format!(
            "<labelport.Job id={:?} batch_id={:?} total={} done={}>",
            s.id, s.batch_id, s.total, s.done
        )
    }
}
