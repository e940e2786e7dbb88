//! The async mirror: `AsyncClient`, `AsyncBatch`, `AsyncJob` and `async for` over results, as native
//! coroutines on the shared tokio runtime (pyo3-async-runtimes with our fork-aware runtime), not threads.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use super::args;
use super::async_bridge::{_debug_panic_async, awaitable, spawn_py, Ready};
use super::async_stream::{AsyncStream, Pages};
use super::core::{
    body_to_py, close_progress, counts_to_py, job_to_py, parse_statuses, prepare_request,
    upload_bar, wait_progress, ClientInner, Prepared, MIN_POLL_S,
};
use super::errors::to_py_err;
use super::json::json_value_to_py;
use super::pages::results_stream;
use super::records::{merge_parts, prepare_upload, UploadSource};
use super::results::check_progress;
use super::runtime::no_panic;
use crate::engine::runner::with_deadline;
use crate::engine::Error;
use crate::vendors::wait::{
    job_deadline, job_poll_error, job_timed_out, settle, BatchWait, Next, Settling,
};
use crate::vendors::{
    Adapter, BatchCounts, BatchInfo, JobPhase, JobState, RecordQuery, UploadOptions,
    UploadProgress, UploadRecord,
};

/// Sends an upload's records (whole, or chunk by chunk with the GIL taken to read each) and merges the parts.
async fn send_source(
    adapter: &Arc<dyn Adapter>,
    batch: &BatchInfo,
    source: UploadSource,
    options: UploadOptions,
    bar: Option<&Py<PyAny>>,
) -> PyResult<JobState> {
    let mut reader = match source {
        UploadSource::Whole(records) => {
            return ticking_upload(adapter, batch, records, options, bar, 0).await;
        }
        UploadSource::Chunks(reader) => reader,
    };
    let mut parts: Vec<JobState> = Vec::new();
    let mut before = 0u64;
    while let Some(records) = Python::attach(|py| reader.next_chunk(py))? {
        if let Some(last) = parts.pop() {
            let number = parts.len() + 1;
            parts.push(
                settle(adapter.as_ref(), last, Settling::Part(number))
                    .await
                    .map_err(to_py_err)?,
            );
        }
        let n = records.len() as u64;
        parts.push(ticking_upload(adapter, batch, records, options.clone(), bar, before).await?);
        before += n;
    }
    if parts.len() > 1 {
        let last = parts.pop().expect("parts");
        let number = parts.len() + 1;
        parts.push(
            settle(adapter.as_ref(), last, Settling::Part(number))
                .await
                .map_err(to_py_err)?,
        );
    }
    if parts.is_empty() {
        return Err(to_py_err(
            Error::invalid("nothing to upload: records is empty").field("records"),
        ));
    }
    Ok(merge_parts(parts))
}

/// One adapter upload, moving `bar` to `before` + records handled every 100 ms and once at the end.
async fn ticking_upload(
    adapter: &Arc<dyn Adapter>,
    batch: &BatchInfo,
    records: Vec<UploadRecord>,
    options: UploadOptions,
    bar: Option<&Py<PyAny>>,
    before: u64,
) -> PyResult<JobState> {
    let counters = Arc::new(UploadProgress::default());
    let upload = adapter.upload(batch, records, options, counters.clone());
    let Some(bar) = bar else {
        return upload.await.map_err(to_py_err);
    };
    let show = || {
        let handled =
            counters.sent.load(Ordering::Relaxed) + counters.skipped.load(Ordering::Relaxed);
        Python::attach(|py| {
            bar.bind(py)
                .call_method1("update", (before + handled,))
                .map(|_| ())
        })
    };
    tokio::pin!(upload);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            out = &mut upload => {
                show()?;
                return out.map_err(to_py_err);
            }
            _ = tick.tick() => show()?,
        }
    }
}

/// An async client: the same arguments and methods as `Client`, as coroutines.
#[pyclass(module = "labelport", frozen)]
pub struct AsyncClient {
    inner: Arc<ClientInner>,
}

impl AsyncClient {
    pub(super) fn from_inner(inner: Arc<ClientInner>) -> Self {
        AsyncClient { inner }
    }
}

#[pymethods]
impl AsyncClient {
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
        no_panic(|| super::spec::reduce_client(py, &self.inner, true))
    }

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
            Ok(AsyncClient { inner })
        })
    }

    /// The vendor's name.
    #[getter]
    fn vendor(&self) -> &'static str {
        self.inner.vendor()
    }

    /// The project the client works in.
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

    /// Creates a batch (a coroutine); with `exist_ok=True` returns the batch of that name if there is one.
    #[pyo3(signature = (name, *, exist_ok=false, **options))]
    fn create_batch<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::name)] name: String,
        #[pyo3(from_py_with = args::exist_ok)] exist_ok: bool,
        options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        no_panic(|| {
            let options = super::core::kwargs_to_options(options)?;
            let adapter = self.inner.adapter()?;
            let client = self.inner.clone();
            awaitable(
                py,
                async move { adapter.create_batch(&name, exist_ok, &options).await },
                move |py, info| Ok(Bound::new(py, AsyncBatch { client, info })?.into_any()),
            )
        })
    }

    /// Re-attaches to an existing batch by id (a coroutine).
    fn batch<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::batch_id)] id: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        no_panic(|| {
            let adapter = self.inner.adapter()?;
            let client = self.inner.clone();
            awaitable(
                py,
                async move { adapter.get_batch(&id).await },
                move |py, info| Ok(Bound::new(py, AsyncBatch { client, info })?.into_any()),
            )
        })
    }

    /// Every batch of the project (a coroutine).
    fn batches<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        no_panic(|| {
            let adapter = self.inner.adapter()?;
            let client = self.inner.clone();
            awaitable(
                py,
                async move { adapter.list_batches().await },
                move |py, infos| {
                    let list = PyList::empty(py);
                    for info in infos {
                        list.append(Bound::new(
                            py,
                            AsyncBatch {
                                client: client.clone(),
                                info,
                            },
                        )?)?;
                    }
                    Ok(list.into_any())
                },
            )
        })
    }

    /// The tasks assigned to one user of the vendor's tool (a coroutine; Deepen: by email).
    fn user_tasks<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::user)] user: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        no_panic(|| {
            let adapter = self.inner.adapter()?;
            awaitable(
                py,
                async move { adapter.user_tasks(&user).await },
                |py, v| json_value_to_py(py, &v),
            )
        })
    }

    /// Tasks the vendor reports as delayed, across the project (a coroutine; Deepen only).
    fn delayed_tasks<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        no_panic(|| {
            let adapter = self.inner.adapter()?;
            awaitable(
                py,
                async move { adapter.delayed_tasks().await },
                |py, tasks| json_value_to_py(py, &serde_json::Value::Array(tasks)),
            )
        })
    }

    /// Authenticated escape hatch (a coroutine): the decoded JSON body; with `paginate=True` an `AsyncStream` of items.
    /// With `raw=True`, the body's bytes as received (not decoded), as `Client.request`.
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
                Prepared::Pages(url) => Ok(Bound::new(
                    py,
                    AsyncStream::new(Pages::Raw(adapter.paginate(url)), None),
                )?
                .into_any()),
                Prepared::Single(req) => awaitable(
                    py,
                    async move { adapter.http().send(&req).await },
                    move |py, resp| match raw {
                        true => Ok(PyBytes::new(py, &resp.body).into_any()),
                        false => body_to_py(py, &resp.body),
                    },
                ),
            }
        })
    }

    /// As `Client.check` (a coroutine): the same read-only probe, run on a worker thread so the event loop
    /// stays free.
    #[pyo3(signature = (*, batch=None, write=false))]
    fn check<'py>(
        &self,
        py: Python<'py>,
        batch: Option<String>,
        write: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        no_panic(|| {
            let client = Bound::new(py, super::client::Client::from_inner(self.inner.clone()))?;
            super::client::check(&client, "arun", batch, write)
        })
    }

    /// Releases connections (a coroutine); the client stays usable.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        no_panic(|| {
            self.inner.reconnect()?;
            awaitable(py, async { Ok(()) }, |py, ()| Ok(py.None().into_bound(py)))
        })
    }

    fn __aenter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        no_panic(|| {
            let me = slf.clone().unbind();
            awaitable(slf.py(), async { Ok(()) }, move |py, ()| {
                Ok(me.into_bound(py).into_any())
            })
        })
    }

    #[pyo3(signature = (*_exc))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _exc: &Bound<'_, pyo3::types::PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        no_panic(|| self.close(py))
    }

    fn __repr__(&self) -> String {
        format!(
            "<labelport.AsyncClient vendor={:?} project={:?} base_url={:?}>",
            self.vendor(),
            self.project(),
            self.base_url()
        )
    }
}

/// A batch of records at the vendor, with coroutine methods.
#[pyclass(module = "labelport", frozen)]
pub struct AsyncBatch {
    client: Arc<ClientInner>,
    info: BatchInfo,
}

impl AsyncBatch {
    pub(super) fn from_parts(client: Arc<ClientInner>, info: BatchInfo) -> Self {
        AsyncBatch { client, info }
    }
}

#[pymethods]
impl AsyncBatch {
    /// Pickles as its client's spec (without credentials) and the batch's description.
    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<super::spec::Reduced<'py>> {
        no_panic(|| super::spec::reduce_batch(py, &self.client, &self.info, true))
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
        self.client.vendor()
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

    /// Sends records (a coroutine): the same inputs, chunking and `progress` as `Batch.upload` (the display is
    /// moved from the runtime every 100 ms while the event loop runs on).
    // One parameter per Python argument of `upload`.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (records, key=None, *, on_error="raise", progress=None, wait=true, **options))]
    fn upload<'py>(
        &self,
        py: Python<'py>,
        records: &Bound<'py, PyAny>,
        #[pyo3(from_py_with = args::key)] key: Option<String>,
        #[pyo3(from_py_with = args::on_error)] on_error: &str,
        progress: Option<&Bound<'py, PyAny>>,
        #[pyo3(from_py_with = args::upload_wait)] wait: bool,
        options: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        no_panic(|| {
            let (source, upload_options) = prepare_upload(
                records,
                self.client.config.spec,
                key.as_deref(),
                on_error,
                options,
            )?;
            let bar = upload_bar(py, progress, source.total())?.map(Bound::unbind);
            let adapter = self.client.adapter()?;
            let batch = self.info.clone();
            let client = self.client.clone();
            spawn_py(py, async move {
                let sent =
                    send_source(&adapter, &batch, source, upload_options, bar.as_ref()).await;
                if let Some(b) = &bar {
                    Python::attach(|py| close_progress(Some(b.bind(py)), sent.is_ok()))?;
                }
                let mut state = sent?;
                if wait {
                    state = settle(adapter.as_ref(), state, Settling::Upload)
                        .await
                        .map_err(to_py_err)?;
                }
                Python::attach(|py| {
                    Ok(Bound::new(
                        py,
                        AsyncJob {
                            client,
                            state: Arc::new(Mutex::new(state)),
                        },
                    )?
                    .into_any()
                    .unbind())
                })
            })
        })
    }

    /// Record counts from the vendor, and `done` (a coroutine).
    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        no_panic(|| {
            let adapter = self.client.adapter()?;
            let id = self.info.id.clone();
            awaitable(
                py,
                async move { adapter.batch_status(&id).await },
                |py, counts| Ok(counts_to_py(py, &counts)?.into_any()),
            )
        })
    }

    /// Waits until every record is finished (a coroutine); `progress` as in `Batch.wait`.
    #[pyo3(signature = (timeout=None, *, poll_interval=2.0, progress=None))]
    fn wait<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::wait_timeout)] timeout: Option<f64>,
        #[pyo3(from_py_with = args::poll_interval)] poll_interval: f64,
        progress: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        no_panic(|| {
            let mut waiting = BatchWait::new(timeout, poll_interval).map_err(to_py_err)?;
            let progress = wait_progress(py, progress.as_ref())?.map(Bound::unbind);
            let bar = progress.as_ref().map(|p| p.clone_ref(py));
            let adapter = self.client.adapter()?;
            let id = self.info.id.clone();
            let vendor = self.client.vendor();
            let fut = async move {
                let mut last: Option<BatchCounts> = None;
                loop {
                    let counts = with_deadline(waiting.deadline(), adapter.batch_status(&id))
                        .await
                        .map_err(|e| waiting.poll_error(e, &id, vendor, last.as_ref()))?;
                    last = Some(counts.clone());
                    if let Some(cb) = &progress {
                        Python::attach(|py| -> PyResult<()> {
                            cb.call1(py, (counts_to_py(py, &counts)?,))?;
                            Ok(())
                        })
                        .map_err(|e| {
                            Error::invalid(format!("the progress callback failed: {e}"))
                                .field("progress")
                        })?;
                    }
                    match waiting.after(&counts, &id, vendor)? {
                        Next::Finished => return Ok(counts),
                        Next::Sleep(pause) => tokio::time::sleep(pause).await,
                    }
                }
            };
            let fut = async move {
                let outcome = fut.await;
                Python::attach(|py| {
                    close_progress(bar.as_ref().map(|b| b.bind(py)), outcome.is_ok())
                })
                .map_err(|e| {
                    Error::invalid(format!("the progress display failed: {e}")).field("progress")
                })?;
                outcome
            };
            awaitable(py, fut, |py, counts| {
                Ok(counts_to_py(py, &counts)?.into_any())
            })
        })
    }

    /// An async iterator of finished records (`async for r in batch.results(): ...`); `since`, `consumer`,
    /// `pages` and `progress` as in `Batch.results` (progress moved as each page arrives).
    #[pyo3(signature = (since=None, include_raw=false, consumer=None, *, pages=None, progress=None))]
    fn results(
        &self,
        since: Option<&Bound<'_, PyAny>>,
        #[pyo3(from_py_with = args::include_raw)] include_raw: bool,
        #[pyo3(from_py_with = args::consumer)] consumer: Option<String>,
        pages: Option<&Bound<'_, PyAny>>,
        progress: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<AsyncStream> {
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
            Ok(AsyncStream::new(Pages::Envelopes(stream), since_us).with_progress(progress))
        })
    }

    /// How the results split into pages (a coroutine): as `Batch.result_pages`.
    fn result_pages<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        no_panic(|| {
            let (adapter, id) = (self.client.adapter()?, self.info.id.clone());
            awaitable(
                py,
                async move { adapter.result_pages(&id).await },
                super::pages::plan_to_py,
            )
        })
    }

    /// An async iterator of every record with its neutral status; `progress` as for `results`.
    #[pyo3(signature = (status=None, include_raw=false, *, progress=None))]
    fn records(
        &self,
        status: Option<&Bound<'_, PyAny>>,
        #[pyo3(from_py_with = args::include_raw)] include_raw: bool,
        progress: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<AsyncStream> {
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
            Ok(AsyncStream::new(Pages::Envelopes(stream), None).with_progress(progress))
        })
    }

    /// Stops work not yet started; never deletes labels (a coroutine).
    fn cancel<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        no_panic(|| {
            let adapter = self.client.adapter()?;
            let id = self.info.id.clone();
            awaitable(py, async move { adapter.cancel(&id).await }, |py, ()| {
                Ok(py.None().into_bound(py))
            })
        })
    }

    /// Accepts results by their result `id` (a coroutine).
    fn accept<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::ids)] ids: Vec<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        no_panic(|| {
            let adapter = self.client.adapter()?;
            let id = self.info.id.clone();
            awaitable(
                py,
                async move { adapter.accept(&id, ids).await },
                |py, ()| Ok(py.None().into_bound(py)),
            )
        })
    }

    /// Rejects results by their result `id` (a coroutine).
    #[pyo3(signature = (ids, reason=None))]
    fn reject<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::ids)] ids: Vec<String>,
        #[pyo3(from_py_with = args::reason)] reason: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        no_panic(|| {
            let adapter = self.client.adapter()?;
            let id = self.info.id.clone();
            awaitable(
                py,
                async move { adapter.reject(&id, ids, reason).await },
                |py, ()| Ok(py.None().into_bound(py)),
            )
        })
    }

    /// The vendor's tasks behind this batch (a coroutine; a list of dicts; Deepen only).
    fn tasks<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        no_panic(|| {
            let adapter = self.client.adapter()?;
            let id = self.info.id.clone();
            awaitable(py, async move { adapter.tasks(&id).await }, |py, tasks| {
                json_value_to_py(py, &serde_json::Value::Array(tasks))
            })
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "<labelport.AsyncBatch vendor={:?} id={:?} name={:?}>",
            self.vendor(),
            self.info.id,
            self.info.name.as_deref().unwrap_or("")
        )
    }
}

/// One upload, and what the vendor did with it (coroutine methods).
#[pyclass(module = "labelport", frozen)]
pub struct AsyncJob {
    client: Arc<ClientInner>,
    state: Arc<Mutex<JobState>>,
}

#[pymethods]
impl AsyncJob {
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

    /// `{"state", "done", "total", "failed", "skipped"}` (a coroutine).
    fn status<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        no_panic(|| self.wait_until(py, Some(0.0), 0.05, false))
    }

    /// Waits until the vendor has ingested every record (a coroutine); raises `Timeout`.
    #[pyo3(signature = (timeout=None, *, poll_interval=1.0))]
    fn wait<'py>(
        &self,
        py: Python<'py>,
        #[pyo3(from_py_with = args::wait_timeout)] timeout: Option<f64>,
        #[pyo3(from_py_with = args::poll_interval)] poll_interval: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        no_panic(|| self.wait_until(py, timeout, poll_interval, true))
    }

    /// Records the vendor refused (with `on_error="collect"`): key, field, code, message.
    fn failures<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        no_panic(|| {
            let s = self.state.lock().clone();
            let list = PyList::empty(py);
            for f in &s.failures {
                list.append(json_value_to_py(
                    py,
                    &serde_json::to_value(f).unwrap_or_default(),
                )?)?;
            }
            Ok(list)
        })
    }

    fn __repr__(&self) -> String {
        let s = self.state.lock();
        format!(
            "<labelport.AsyncJob id={:?} batch_id={:?} total={} done={}>",
            s.id, s.batch_id, s.total, s.done
        )
    }
}

impl AsyncJob {
    /// Refreshes the job until it is no longer running (or once, when `until_done` is false).
    fn wait_until<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
        poll_interval: f64,
        until_done: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let adapter = self.client.adapter()?;
        let shared = self.state.clone();
        let vendor = self.client.vendor();
        let fut = async move {
            let started = std::time::Instant::now();
            // `status()` polls once, with retries as any request: only a wait ends at its timeout.
            let deadline = job_deadline(started, timeout.filter(|_| until_done));
            loop {
                let current = shared.lock().clone();
                let fresh = if current.state == JobPhase::Running {
                    with_deadline(deadline, adapter.job_status(&current))
                        .await
                        .map_err(|e| job_poll_error(e, || job_timed_out(&current, vendor, None)))?
                } else {
                    current
                };
                *shared.lock() = fresh.clone();
                if fresh.state != JobPhase::Running || !until_done {
                    return Ok(fresh);
                }
                if timeout.is_some_and(|t| started.elapsed().as_secs_f64() >= t) {
                    return Err(job_timed_out(&fresh, vendor, None));
                }
                tokio::time::sleep(Duration::from_secs_f64(poll_interval.max(MIN_POLL_S))).await;
            }
        };
        awaitable(py, fut, |py, s| Ok(job_to_py(py, &s)?.into_any()))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<AsyncClient>()?;
    m.add_class::<AsyncBatch>()?;
    m.add_class::<AsyncJob>()?;
    m.add_class::<AsyncStream>()?;
    m.add_class::<Ready>()?;
    m.add_function(wrap_pyfunction!(_debug_panic_async, m)?)?;
    Ok(())
}
