//! `Batch` and `AsyncBatch`: a batch of records at the vendor, on both faces from one list of operations.

use std::sync::Arc;

use parking_lot::Mutex;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::args;
use super::async_stream::{AsyncStream, Pages};
use super::core::{
    close_progress, counts_to_py, parse_statuses, upload_bar, wait_progress, ClientInner,
};
use super::errors::to_py_err;
use super::faces::two_faces;
use super::job::Job;
use super::json::json_value_to_py;
use super::op::{Face, Now, OnPython, Op};
use super::pages::{plan_to_py, results_stream};
use super::records::prepare_upload;
use super::results::{check_progress, ResultStream};
use super::runtime::no_panic;
use super::spec::{batch_info, reduce_batch, ClientSpec};
use super::upload::Upload;
use crate::engine::runner::with_deadline;
use crate::engine::stream::PageStream;
use crate::vendors::wait::{BatchWait, Next};
use crate::vendors::{Adapter, BatchCounts, BatchInfo, Envelope, RecordQuery};

/// A results or records stream as the face that asked for it sees it: an iterator or an async iterator.
fn stream_to_py(
    py: Python<'_>,
    stream: PageStream<Envelope>,
    since_us: Option<i64>,
    progress: Option<Py<PyAny>>,
    face: Face,
) -> PyResult<Bound<'_, PyAny>> {
    Ok(match face {
        Face::Sync => Bound::new(py, ResultStream::new(stream, since_us, progress))?.into_any(),
        Face::Async => Bound::new(
            py,
            AsyncStream::new(Pages::Envelopes(stream), since_us).with_progress(progress),
        )?
        .into_any(),
    })
}

/// Polls the batch status until `waiting` says it is finished, handing each status to `progress`, then
/// closes `progress` (when it is a display).
async fn wait_for(
    adapter: Arc<dyn Adapter>,
    id: String,
    vendor: &'static str,
    mut waiting: BatchWait,
    progress: Option<Arc<Py<PyAny>>>,
    python: OnPython,
) -> PyResult<BatchCounts> {
    let polled = async {
        let mut last: Option<BatchCounts> = None;
        loop {
            let counts = with_deadline(waiting.deadline(), adapter.batch_status(&id))
                .await
                .map_err(|e| to_py_err(waiting.poll_error(e, &id, vendor, last.as_ref())))?;
            last = Some(counts.clone());
            if let Some(cb) = progress.clone() {
                let seen = counts.clone();
                python
                    .run(move |py| cb.call1(py, (counts_to_py(py, &seen)?,)).map(|_| ()))
                    .await?;
            }
            match waiting.after(&counts, &id, vendor).map_err(to_py_err)? {
                Next::Finished => return Ok(counts),
                Next::Sleep(pause) => tokio::time::sleep(pause).await,
            }
        }
    };
    let outcome = polled.await;
    if let Some(cb) = progress {
        let ok = outcome.is_ok();
        python
            .run(move |py| close_progress(Some(cb.bind(py)), ok))
            .await?;
    }
    outcome
}

two_faces! {
    /// A batch of records at the vendor.
    struct Batch;
    /// A batch of records at the vendor, with coroutine methods.
    struct AsyncBatch;
    { client: Arc<ClientInner>, info: BatchInfo }

    getters {
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
    }

    shared {
        /// The vendor's own batch object.
        #[getter]
        fn raw<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
            json_value_to_py(py, &self.info.raw)
        }
    }

    ops {
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
        /// `labelport.config.progress`) shows a progress bar. `wait` (default True): return once the vendor holds
        /// every record (the job reads `completed`); `wait=False` returns once the records are sent.
        #[pyo3(signature = (records, key=None, *, on_error="raise", progress=None, wait=true, **options))]
        fn upload(
            &self,
            py,
            records: &Bound<'py, PyAny>,
            #[pyo3(from_py_with = args::key)] key: Option<String>,
            #[pyo3(from_py_with = args::on_error)] on_error: &str,
            progress: Option<&Bound<'py, PyAny>>,
            #[pyo3(from_py_with = args::upload_wait)] wait: bool,
            options: Option<&Bound<'py, PyDict>>,
        ) {
            let (source, options) = prepare_upload(
                records,
                self.client.config.spec,
                key.as_deref(),
                on_error,
                options,
            )?;
            let bar = upload_bar(py, progress, source.total())?.map(|b| Arc::new(b.unbind()));
            let upload = Upload {
                adapter: self.client.adapter()?,
                batch: self.info.clone(),
                options,
                bar,
                wait,
            };
            let client = self.client.clone();
            Ok(Op::with_python(
                move |python| upload.run(source, python),
                move |py, state, face| Job::on_face(py, face, client, Arc::new(Mutex::new(state))),
            ))
        }

        /// Record counts from the vendor, and `done` (every record is in a final state).
        fn status(&self, py) {
            let adapter = self.client.adapter()?;
            let id = self.info.id.clone();
            Ok(Op::new(async move { adapter.batch_status(&id).await }, |py, counts, _| {
                Ok(counts_to_py(py, &counts)?.into_any())
            }))
        }

        /// Waits until every record is finished (done on two consecutive polls); raises `Timeout`. `progress`:
        /// `True`/`False` for a progress bar (default `labelport.config.progress`), or a callable given the
        /// status dict after every poll.
        #[pyo3(signature = (timeout=None, *, poll_interval=2.0, progress=None))]
        fn wait(
            &self,
            py,
            #[pyo3(from_py_with = args::wait_timeout)] timeout: Option<f64>,
            #[pyo3(from_py_with = args::poll_interval)] poll_interval: f64,
            progress: Option<Bound<'py, PyAny>>,
        ) {
            let waiting = BatchWait::new(timeout, poll_interval).map_err(to_py_err)?;
            let progress = wait_progress(py, progress.as_ref())?.map(|p| Arc::new(p.unbind()));
            let (adapter, id) = (self.client.adapter()?, self.info.id.clone());
            let vendor = self.client.vendor();
            Ok(Op::with_python(
                move |python| wait_for(adapter, id, vendor, waiting, progress, python),
                |py, counts, _| Ok(counts_to_py(py, &counts)?.into_any()),
            ))
        }

        /// Finished records as envelope dicts, page by page (on the async face, `async for`). `since` is an
        /// exclusive lower bound on completion time. The stream also turns into a DataFrame or a file:
        /// `.to_pandas()`, `.to_polars()`, `.to_arrow()`, `.to_parquet(path)`, `.to_csv(path)`, `.to_jsonl(path)`.
        /// With `consumer="name"` (Sama), the results delivered to that consumer since its last read instead.
        /// With `pages=(start, stop)` (0-based page indexes, stop exclusive or `None`), only the results on those
        /// pages, in the same order: see `result_pages()`.
        /// `progress` (default `labelport.config.progress`) shows how many have arrived, moved once per page, while
        /// the stream is consumed (iteration, `to_list`, `to_jsonl`); an export shows its own.
        #[pyo3(signature = (since=None, include_raw=false, consumer=None, *, pages=None, progress=None))]
        fn results(
            &self,
            py,
            since: Option<&Bound<'py, PyAny>>,
            #[pyo3(from_py_with = args::include_raw)] include_raw: bool,
            #[pyo3(from_py_with = args::consumer)] consumer: Option<String>,
            pages: Option<&Bound<'py, PyAny>>,
            progress: Option<&Bound<'py, PyAny>>,
        ) {
            let progress = check_progress(progress)?;
            let (stream, since_us) = results_stream(
                &self.client,
                &self.info.id,
                since,
                include_raw,
                consumer.as_deref(),
                pages,
            )?;
            Ok(Now::new(move |py, face| stream_to_py(py, stream, since_us, progress, face)))
        }

        /// How the results split into pages, for readers that each take a range (Spark, Dask):
        /// `{"total", "page_size", "pages"}` counted now, or `None` where the vendor cannot fetch results by page.
        fn result_pages(&self, py) {
            let (adapter, id) = (self.client.adapter()?, self.info.id.clone());
            Ok(Op::new(async move { adapter.result_pages(&id).await }, |py, plan, _| {
                plan_to_py(py, plan)
            }))
        }

        /// Every record with its neutral status; `progress` as for `results`.
        #[pyo3(signature = (status=None, include_raw=false, *, progress=None))]
        fn records(
            &self,
            py,
            status: Option<&Bound<'py, PyAny>>,
            #[pyo3(from_py_with = args::include_raw)] include_raw: bool,
            progress: Option<&Bound<'py, PyAny>>,
        ) {
            let progress = check_progress(progress)?;
            let statuses = parse_statuses(status)?;
            let stream = self
                .client
                .adapter()?
                .records(RecordQuery {
                    batch_id: &self.info.id,
                    statuses,
                    include_raw,
                })
                .map_err(to_py_err)?;
            Ok(Now::new(move |py, face| stream_to_py(py, stream, None, progress, face)))
        }

        /// Stops work not yet started; never deletes labels.
        fn cancel(&self, py) {
            let (adapter, id) = (self.client.adapter()?, self.info.id.clone());
            Ok(Op::new(async move { adapter.cancel(&id).await }, none))
        }

        /// Accepts results by their result `id`.
        fn accept(&self, py, #[pyo3(from_py_with = args::ids)] ids: Vec<String>) {
            let (adapter, id) = (self.client.adapter()?, self.info.id.clone());
            Ok(Op::new(async move { adapter.accept(&id, ids).await }, none))
        }

        /// Rejects results by their result `id`, with an optional reason.
        #[pyo3(signature = (ids, reason=None))]
        fn reject(
            &self,
            py,
            #[pyo3(from_py_with = args::ids)] ids: Vec<String>,
            #[pyo3(from_py_with = args::reason)] reason: Option<String>,
        ) {
            let (adapter, id) = (self.client.adapter()?, self.info.id.clone());
            Ok(Op::new(async move { adapter.reject(&id, ids, reason).await }, none))
        }

        /// The vendor's tasks behind this batch, as the vendor describes them (a list of dicts; Deepen only).
        fn tasks(&self, py) {
            let (adapter, id) = (self.client.adapter()?, self.info.id.clone());
            Ok(Op::new(async move { adapter.tasks(&id).await }, |py, tasks, _| {
                json_value_to_py(py, &serde_json::Value::Array(tasks))
            }))
        }

        /// Pickles as its client's spec (without credentials) and the batch's description.
        fn __reduce__(&self, py) {
            let (client, info) = (self.client.clone(), self.info.clone());
            Ok(Now::new(move |py, face| reduce_batch(py, &client, &info, face == Face::Async)))
        }
    }

    sync_only {
        fn __repr__(&self) -> String {
            repr("Batch", &self.client, &self.info)
        }
    }

    async_only {
        fn __repr__(&self) -> String {
            repr("AsyncBatch", &self.client, &self.info)
        }
    }
}

/// What an operation with no value gives Python: `None`.
fn none(py: Python<'_>, _: (), _: Face) -> PyResult<Bound<'_, PyAny>> {
    Ok(py.None().into_bound(py))
}

fn repr(class: &str, client: &ClientInner, info: &BatchInfo) -> String {
    format!(
        "<labelport.{class} vendor={:?} id={:?} name={:?}>",
        client.vendor(),
        info.id,
        info.name.as_deref().unwrap_or("")
    )
}

/// Unpickles a `Batch` (an `AsyncBatch` when `asynchronous`): its client rebuilt from the spec, the batch as
/// it was described (no request).
#[pyfunction]
#[pyo3(signature = (spec, id, name, created_at, raw, asynchronous=false))]
pub(super) fn _rebuild_batch<'py>(
    spec: &Bound<'py, ClientSpec>,
    id: String,
    name: Option<String>,
    created_at: Option<String>,
    raw: &Bound<'py, PyAny>,
    asynchronous: bool,
) -> PyResult<Bound<'py, PyAny>> {
    no_panic(|| {
        let info = batch_info(id, name, created_at, raw)?;
        Batch::on_face(spec.py(), Face::of(asynchronous), spec.get().build()?, info)
    })
}
