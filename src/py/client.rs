//! `Client` and `AsyncClient`: one vendor account and project, on the sync face (every call blocks with the GIL
//! released and answers Ctrl-C) and the async face (every call a coroutine on the shared runtime), both made
//! from one list of operations (faces.rs).

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use super::args;
use super::async_stream::{AsyncStream, Pages};
use super::batch::Batch;
use super::core::{body_to_py, kwargs_to_options, prepare_request, ClientInner, Prepared};
use super::faces::two_faces;
use super::json::json_value_to_py;
use super::op::{Face, Now, Op};
use super::results::RequestPages;
use super::runtime::no_panic;
use super::spec::{reduce_client, ClientSpec};

/// `labelport._check.run(client, ...)` (`arun` on the async face: the same probe on a worker thread, a
/// coroutine), given the credentials only so the report can redact them.
fn check<'py>(
    py: Python<'py>,
    inner: &Arc<ClientInner>,
    face: Face,
    batch: Option<String>,
    write: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let secrets: Vec<String> = inner
        .config
        .credentials
        .values()
        .map(|s| s.expose().to_string())
        .collect();
    let kwargs = PyDict::new(py);
    kwargs.set_item("batch", batch)?;
    kwargs.set_item("write", write)?;
    kwargs.set_item("secrets", secrets)?;
    let client = Bound::new(
        py,
        Client {
            inner: inner.clone(),
        },
    )?;
    let runner = match face {
        Face::Sync => "run",
        Face::Async => "arun",
    };
    py.import("labelport._check")?
        .getattr(runner)?
        .call((client,), Some(&kwargs))
}

/// Unpickles a `Client` (an `AsyncClient` when `asynchronous`): built from its spec in this process.
#[pyfunction]
#[pyo3(signature = (spec, asynchronous=false))]
pub(super) fn _rebuild_client<'py>(
    spec: &Bound<'py, ClientSpec>,
    asynchronous: bool,
) -> PyResult<Bound<'py, PyAny>> {
    no_panic(|| Client::on_face(spec.py(), Face::of(asynchronous), spec.get().build()?))
}

/// A client's `__repr__` on either face.
fn repr(class: &str, inner: &ClientInner) -> String {
    format!(
        "<labelport.{class} vendor={:?} project={:?} base_url={:?}>",
        inner.vendor(),
        inner.config.project,
        inner.base_url()
    )
}

two_faces! {
    /// One vendor account and project. Thread-safe: share one per process.
    struct Client;
    /// An async client: the same arguments and methods as `Client`, as coroutines.
    struct AsyncClient;
    { inner: Arc<ClientInner> }

    getters {
        /// The vendor's name.
        #[getter]
        fn vendor(&self) -> &'static str {
            self.inner.vendor()
        }

        /// The project (vendor's workflow, project or client id) the client works in.
        #[getter]
        fn project(&self) -> &str {
            &self.inner.config.project
        }

        /// The vendor's base URL (scheme and host).
        #[getter]
        fn base_url(&self) -> String {
            self.inner.base_url()
        }

        /// What rebuilds this client elsewhere (picklable); credentials only with `include_credentials=True`.
        #[pyo3(signature = (*, include_credentials=false))]
        fn spec(
            &self,
            #[pyo3(from_py_with = args::include_credentials)] include_credentials: bool,
        ) -> ClientSpec {
            ClientSpec::of(&self.inner, include_credentials)
        }
    }

    shared {
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
            let inner = ClientInner::build(
                py, vendor, profile, project, base_url, timeout, max_retries, rate_limit,
                allow_insecure, kwargs,
            )?;
            Ok(Self { inner })
        }

        /// The vendor's options and optional operations.
        #[getter]
        fn capabilities<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
            json_value_to_py(py, &self.inner.adapter()?.capabilities())
        }

        /// What this client's requests came to so far, counted by the engine as each attempt ends: `requests`
        /// by operation and HTTP status (`"error"`: no answer), `requests_total`, `retries`, `rate_limited`
        /// (429 answers) and the `retry_after_seconds` they asked for, `logins` (credentials obtained),
        /// `bytes_sent` and `bytes_received` (bodies), and `latency_ms` (`count`, `p50`, `p90`, `p99`, `max` of
        /// the latest 100,000 attempts). Requests to pre-signed file URLs are not counted.
        fn metrics<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
            json_value_to_py(py, &self.inner.adapter()?.http().metrics())
        }
    }

    ops {
        /// Creates a batch; with `exist_ok=True` returns the batch of that name if there is one (safe to re-run).
        #[pyo3(signature = (name, *, exist_ok=false, **options))]
        fn create_batch(
            &self,
            py,
            #[pyo3(from_py_with = args::name)] name: String,
            #[pyo3(from_py_with = args::exist_ok)] exist_ok: bool,
            options: Option<&Bound<'py, PyDict>>,
        ) {
            let options = kwargs_to_options(options)?;
            let adapter = self.inner.adapter()?;
            let client = self.inner.clone();
            Ok(Op::new(
                async move { adapter.create_batch(&name, exist_ok, &options).await },
                move |py, info, face| Batch::on_face(py, face, client, info),
            ))
        }

        /// Re-attaches to an existing batch by id.
        fn batch(&self, py, #[pyo3(from_py_with = args::batch_id)] id: String) {
            let adapter = self.inner.adapter()?;
            let client = self.inner.clone();
            Ok(Op::new(
                async move { adapter.get_batch(&id).await },
                move |py, info, face| Batch::on_face(py, face, client, info),
            ))
        }

        /// Every batch of the project.
        fn batches(&self, py) {
            let adapter = self.inner.adapter()?;
            let client = self.inner.clone();
            Ok(Op::new(async move { adapter.list_batches().await }, move |py, infos, face| {
                let list = PyList::empty(py);
                for info in infos {
                    list.append(Batch::on_face(py, face, client.clone(), info)?)?;
                }
                Ok(list.into_any())
            }))
        }

        /// The tasks assigned to one user of the vendor's tool (Deepen: by email; `{"file_tasks": [...],
        /// "label_tasks": [...]}`).
        fn user_tasks(&self, py, #[pyo3(from_py_with = args::user)] user: String) {
            let adapter = self.inner.adapter()?;
            Ok(Op::new(async move { adapter.user_tasks(&user).await }, |py, tasks, _| {
                json_value_to_py(py, &tasks)
            }))
        }

        /// Tasks the vendor reports as delayed, across the project (a list of dicts; Deepen only).
        fn delayed_tasks(&self, py) {
            let adapter = self.inner.adapter()?;
            Ok(Op::new(async move { adapter.delayed_tasks().await }, |py, tasks, _| {
                json_value_to_py(py, &serde_json::Value::Array(tasks))
            }))
        }

        /// Authenticated escape hatch: the decoded JSON body (with `raw=True`, the body's bytes as received), or
        /// with `paginate=True` the items of every page (an iterator; on the async face an `AsyncStream`).
        #[pyo3(signature = (method, path, *, params=None, json=None, paginate=false, retry=None, raw=false))]
        fn request(
            &self,
            py,
            #[pyo3(from_py_with = args::method)] method: String,
            #[pyo3(from_py_with = args::path)] path: String,
            #[pyo3(from_py_with = args::params)] params: Option<Bound<'py, PyDict>>,
            json: Option<&Bound<'py, PyAny>>,
            #[pyo3(from_py_with = args::paginate)] paginate: bool,
            #[pyo3(from_py_with = args::retry)] retry: Option<bool>,
            #[pyo3(from_py_with = args::raw)] raw: bool,
        ) {
            let adapter = self.inner.adapter()?;
            let prepared =
                prepare_request(&adapter, &method, &path, params.as_ref(), json, paginate, retry)?;
            Ok(match prepared {
                Prepared::Pages(url) => {
                    let pages = adapter.paginate(url);
                    Now::new(move |py, face| match face {
                        Face::Sync => Ok(Bound::new(py, RequestPages::new(pages))?.into_any()),
                        Face::Async => {
                            Ok(Bound::new(py, AsyncStream::new(Pages::Raw(pages), None))?.into_any())
                        }
                    })
                }
                Prepared::Single(req) => Op::new(
                    async move { adapter.http().send(&req).await },
                    move |py, resp, _| match raw {
                        true => Ok(PyBytes::new(py, &resp.body).into_any()),
                        false => body_to_py(py, &resp.body),
                    },
                )
                .into(),
            })
        }

        /// Releases connections. The client stays usable; a later call opens new ones.
        fn close(&self, py) {
            self.inner.reconnect()?;
            Ok(Op::new(async { Ok(()) }, |py, (), _| Ok(py.None().into_bound(py))))
        }

        /// A read-only probe of the account against the vendor's ledger (python/labelport/_check.py), run on a
        /// worker thread on the async face so the event loop stays free; the credentials go along only so the
        /// report can redact them.
        #[pyo3(signature = (*, batch=None, write=false))]
        fn check(&self, py, batch: Option<String>, write: bool) {
            let inner = self.inner.clone();
            Ok(Now::new(move |py, face| check(py, &inner, face, batch, write)))
        }

        /// Pickles as its spec without credentials: the unpickling process resolves them from its environment.
        fn __reduce__(&self, py) {
            let inner = self.inner.clone();
            Ok(Now::new(move |py, face| reduce_client(py, &inner, face == Face::Async)))
        }
    }

    sync_only {
        fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
            slf
        }

        #[pyo3(signature = (*_exc))]
        fn __exit__(&self, _exc: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<()> {
            no_panic(|| self.inner.reconnect())
        }

        fn __repr__(&self) -> String {
            repr("Client", &self.inner)
        }
    }

    async_only {
        fn __aenter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
            no_panic(|| {
                let me = slf.clone().unbind();
                let op = Op::new(async { Ok(()) }, move |py, (), _| Ok(me.into_bound(py).into_any()));
                super::op::Operation::run(op, slf.py(), Face::Async)
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
            repr("AsyncClient", &self.inner)
        }
    }
}
