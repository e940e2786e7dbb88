//! `Client`, `Batch` and `Job`: the synchronous API. Every blocking call releases the GIL and answers Ctrl-C.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use super::args;
use super::core::{
    body_to_py, close_progress, counts_to_py, job_to_py, kwargs_to_options, parse_statuses,
    prepare_request, upload_bar, wait_progress, ClientInner, Prepared, MIN_POLL_S,
};
use super::errors::{invalid, to_py_err};
use super::json::json_value_to_py;
use super::pages::results_stream;
use super::records::{merge_parts, prepare_upload, UploadSource};
use super::results::{check_progress, RequestPages, ResultStream};
use super::runtime::{block_on, block_on_ticking, no_panic, sleep};
use crate::engine::runner::with_deadline;
use crate::vendors::wait::{
    job_deadline, job_poll_error, job_timed_out, settle, BatchWait, Next, Settling,
};
use crate::vendors::{
    BatchCounts, BatchInfo, JobPhase, JobState, RecordQuery, UploadOptions, UploadProgress,
    UploadRecord,
};

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

/// A batch of records at the vendor.
#[pyclass(module = "labelport", frozen)]
pub struct Batch {
    pub(super) client: Arc<ClientInner>,
    pub(super) info: BatchInfo,
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

/// One upload, and what the vendor did with it.
#[pyclass(module = "labelport", frozen)]
pub struct Job {
    pub(super) client: Arc<ClientInner>,
    pub(super) state: Mutex<JobState>,
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
