//! `ClientSpec`: a small picklable description of a client (vendor, project, base URL, limits, options, and
//! credentials only when the user asks), and the pickling of `Client`, `Batch`, `AsyncClient` and `AsyncBatch`
//! through it. A worker (a Spark executor, a Dask worker, a `multiprocessing` child) rebuilds a client from
//! the spec; no connection, token or runtime ever travels. Credentials left out of a spec are resolved on
//! the worker from its environment (`LABELPORT_<VENDOR>_<NAME>`), like any client's.

use std::collections::BTreeMap;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use super::args;
use super::core::{kwargs_to_options, ClientInner};
use super::errors::{invalid, to_py_err};
use super::json::{json_value_to_py, py_to_json};
use super::runtime::no_panic;
use crate::engine::{Error, ErrorKind};
use crate::vendors::config::spec as vendor_spec;
use crate::vendors::config::LIMIT_OPTIONS;
use crate::vendors::{BatchInfo, ClientArgs, Options, Secret};

/// How to build a client, without its connections: picklable. Credentials are in it only when given to it
/// (`ClientSpec(..., password=...)`) or asked for (`client.spec(include_credentials=True)`); the others
/// come from the environment of the process that builds the client.
#[pyclass(module = "labelport", frozen, skip_from_py_object)]
#[derive(Clone)]
pub struct ClientSpec {
    vendor: &'static str,
    project: Option<String>,
    base_url: Option<String>,
    timeout: f64,
    max_retries: u32,
    rate_limit: Option<f64>,
    allow_insecure: bool,
    /// A PEM file of extra certificate authorities: a path, read again wherever the client is built.
    ca_bundle: Option<String>,
    options: Options,
    credentials: BTreeMap<String, Secret>,
}

impl ClientSpec {
    /// The spec of a built client: what it resolved, with its credentials only if `include_credentials`.
    pub(super) fn of(inner: &ClientInner, include_credentials: bool) -> Self {
        let c = &inner.config;
        ClientSpec {
            vendor: c.spec.name,
            project: Some(c.project.clone()),
            base_url: Some(c.base_url.as_str().trim_end_matches('/').to_string()),
            timeout: c.timeout.as_secs_f64(),
            max_retries: c.max_retries,
            rate_limit: c.rate_limit,
            // Plain http to anything but loopback only resolves with allow_insecure=True.
            allow_insecure: c.base_url.scheme() == "http",
            ca_bundle: c.ca_bundle.clone(),
            options: c.options.clone(),
            credentials: if include_credentials {
                c.credentials.clone()
            } else {
                BTreeMap::new()
            },
        }
    }

    /// Resolves the spec (then the environment) into a client; a missing credential says where it can come from.
    pub(super) fn build(&self) -> PyResult<Arc<ClientInner>> {
        let mut keywords = self.options.clone();
        for (name, secret) in &self.credentials {
            keywords.insert(name.clone(), secret.expose().into());
        }
        let args = ClientArgs {
            vendor: self.vendor.to_string(),
            project: self.project.clone(),
            base_url: self.base_url.clone(),
            keywords,
            timeout: self.timeout,
            max_retries: self.max_retries,
            rate_limit: self.rate_limit,
            allow_insecure: self.allow_insecure,
            ca_bundle: self.ca_bundle.clone(),
            ..Default::default()
        };
        ClientInner::from_args(args).map_err(|e| {
            let e = if e.kind == ErrorKind::Auth && self.credentials.is_empty() {
                let mut e = e;
                e.message = format!(
                    "{}. This client was built from a ClientSpec without credentials (a pickled Client or Batch \
                     carries none): set them in this process's environment, or pickle \
                     client.spec(include_credentials=True)",
                    e.message
                );
                e
            } else {
                e
            };
            to_py_err(e)
        })
    }

    /// `(rebuild function, args)` for `__reduce__`.
    fn reduce_with<'py>(
        &self,
        py: Python<'py>,
        function: &str,
        rest: Vec<Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
        let f = py.import("labelport._labelport")?.getattr(function)?;
        let mut args = vec![Bound::new(py, self.clone())?.into_any()];
        args.extend(rest);
        Ok((f, PyTuple::new(py, args)?))
    }

    fn apply(&self, changes: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let mut out = self.clone();
        let Some(changes) = changes else {
            return Ok(out);
        };
        for (k, v) in changes.iter() {
            let name = args::string(&k, "changes")?;
            match name.as_str() {
                "project" => out.project = args::project(&v)?,
                "base_url" => out.base_url = args::base_url(&v)?,
                "timeout" => out.timeout = args::timeout(&v)?,
                "max_retries" => out.max_retries = args::max_retries(&v)?,
                "rate_limit" => out.rate_limit = args::rate_limit(&v)?,
                "allow_insecure" => out.allow_insecure = args::allow_insecure(&v)?,
                "ca_bundle" => out.ca_bundle = args::ca_bundle(&v)?,
                _ => {
                    let value = py_to_json(&v, &name)
                        .map_err(|e| invalid(format!("{}: {}", e.path, e.message), &name))?;
                    out.set_keyword(name, value)?;
                }
            }
        }
        Ok(out)
    }

    fn set_keyword(&mut self, name: String, value: serde_json::Value) -> PyResult<()> {
        let spec = vendor_spec(self.vendor).map_err(to_py_err)?;
        if spec.credentials.contains(&name.as_str()) {
            let s = match value {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                _ => {
                    return Err(invalid(
                        format!("credential {name} must be a string"),
                        &name,
                    ))
                }
            };
            self.credentials.insert(name, Secret::new(s));
        } else if spec.client_options.contains(&name.as_str())
            || LIMIT_OPTIONS.contains(&name.as_str())
        {
            self.options.insert(name, value);
        } else {
            let mut allowed: Vec<&str> = spec.credentials.to_vec();
            allowed.extend(spec.client_options);
            allowed.extend(LIMIT_OPTIONS);
            allowed.extend([
                "project",
                "base_url",
                "timeout",
                "max_retries",
                "rate_limit",
                "allow_insecure",
                "ca_bundle",
            ]);
            return Err(to_py_err(
                Error::invalid(format!(
                    "{} does not take the argument {name:?}; it takes {}",
                    spec.name,
                    allowed.join(", ")
                ))
                .vendor(spec.name)
                .field(name),
            ));
        }
        Ok(())
    }
}

#[pymethods]
impl ClientSpec {
    #[new]
    #[pyo3(signature = (vendor, project=None, *, base_url=None, timeout=30.0, max_retries=5, rate_limit=None, allow_insecure=false, ca_bundle=None, **kwargs))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        #[pyo3(from_py_with = args::required_vendor)] vendor: String,
        #[pyo3(from_py_with = args::project)] project: Option<String>,
        #[pyo3(from_py_with = args::base_url)] base_url: Option<String>,
        #[pyo3(from_py_with = args::timeout)] timeout: f64,
        #[pyo3(from_py_with = args::max_retries)] max_retries: u32,
        #[pyo3(from_py_with = args::rate_limit)] rate_limit: Option<f64>,
        #[pyo3(from_py_with = args::allow_insecure)] allow_insecure: bool,
        #[pyo3(from_py_with = args::ca_bundle)] ca_bundle: Option<String>,
        kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        no_panic(|| {
            let spec = vendor_spec(&vendor).map_err(to_py_err)?;
            let mut out = ClientSpec {
                vendor: spec.name,
                project,
                base_url,
                timeout,
                max_retries,
                rate_limit,
                allow_insecure,
                ca_bundle,
                options: Options::new(),
                credentials: BTreeMap::new(),
            };
            for (name, value) in kwargs_to_options(kwargs)? {
                out.set_keyword(name, value)?;
            }
            Ok(out)
        })
    }

    /// The vendor's name.
    #[getter]
    fn vendor(&self) -> &'static str {
        self.vendor
    }

    /// The project; `None` means `LABELPORT_<VENDOR>_PROJECT` where the client is built.
    #[getter]
    fn project(&self) -> Option<&str> {
        self.project.as_deref()
    }

    /// The base URL; `None` means `LABELPORT_<VENDOR>_BASE_URL`, else the vendor's, where the client is built.
    #[getter]
    fn base_url(&self) -> Option<&str> {
        self.base_url.as_deref()
    }

    /// Seconds a request may take.
    #[getter]
    fn timeout(&self) -> f64 {
        self.timeout
    }

    /// Retries of a failed request.
    #[getter]
    fn max_retries(&self) -> u32 {
        self.max_retries
    }

    /// Requests per second for each client built from this spec.
    #[getter]
    fn rate_limit(&self) -> Option<f64> {
        self.rate_limit
    }

    /// The requests per second each client built from this spec keeps to: `rate_limit` when given (0: none),
    /// else the vendor's documented limit unless the base URL (the spec's, else `LABELPORT_<VENDOR>_BASE_URL`
    /// here, else the vendor's) is on this machine. `None`: unpaced.
    #[getter]
    fn pacing(&self) -> Option<f64> {
        let spec = vendor_spec(self.vendor).ok()?;
        crate::vendors::config::planned_pacing(spec, self.rate_limit, self.base_url.as_deref())
    }

    /// Plain `http://` allowed beyond loopback.
    #[getter]
    fn allow_insecure(&self) -> bool {
        self.allow_insecure
    }

    /// The PEM file of extra certificate authorities (`ca_bundle=`): read again where the client is built,
    /// so it must exist there too.
    #[getter]
    fn ca_bundle(&self) -> Option<&str> {
        self.ca_bundle.as_deref()
    }

    /// The vendor's client options (not credentials).
    #[getter]
    fn options<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        no_panic(|| {
            // Value by value: an option may use every level of MAX_JSON_DEPTH, with no room for a wrapper.
            let out = PyDict::new(py);
            for (k, v) in &self.options {
                out.set_item(k, json_value_to_py(py, v)?)?;
            }
            Ok(out)
        })
    }

    /// The names of the credentials the spec carries (never their values); the rest come from the environment.
    #[getter]
    fn credential_names(&self) -> Vec<String> {
        self.credentials.keys().cloned().collect()
    }

    /// A copy with some fields changed: `project`, `base_url`, `timeout`, `max_retries`, `rate_limit`,
    /// `allow_insecure`, `ca_bundle`, credentials or client options.
    #[pyo3(signature = (**changes))]
    fn replace(&self, changes: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        no_panic(|| self.apply(changes))
    }

    /// Builds a `Client` here: credentials the spec lacks come from this process's environment. (By name, as
    /// unpickling does, so the spec does not depend on the faces built from it.)
    fn client<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        no_panic(|| rebuild(slf, false))
    }

    /// Builds an `AsyncClient` here, like `client()`.
    fn async_client<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        no_panic(|| rebuild(slf, true))
    }

    fn __reduce__<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyTuple>)> {
        no_panic(|| {
            let state = PyDict::new(py);
            state.set_item("vendor", self.vendor)?;
            state.set_item("project", &self.project)?;
            state.set_item("base_url", &self.base_url)?;
            state.set_item("timeout", self.timeout)?;
            state.set_item("max_retries", self.max_retries)?;
            state.set_item("rate_limit", self.rate_limit)?;
            state.set_item("allow_insecure", self.allow_insecure)?;
            state.set_item("ca_bundle", &self.ca_bundle)?;
            for (k, v) in &self.options {
                state.set_item(k, json_value_to_py(py, v)?)?;
            }
            // Only credentials the user put in the spec: the pickle then holds them, as asked.
            for (k, v) in &self.credentials {
                state.set_item(k, v.expose())?;
            }
            let f = py
                .import("labelport._labelport")?
                .getattr("_spec_from_state")?;
            Ok((f, PyTuple::new(py, [state])?))
        })
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        let Ok(o) = other.cast::<ClientSpec>() else {
            return false;
        };
        let o = o.get();
        let creds = |s: &ClientSpec| -> Vec<(String, String)> {
            s.credentials
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().to_string()))
                .collect()
        };
        self.vendor == o.vendor
            && self.project == o.project
            && self.base_url == o.base_url
            && self.timeout == o.timeout
            && self.max_retries == o.max_retries
            && self.rate_limit == o.rate_limit
            && self.allow_insecure == o.allow_insecure
            && self.ca_bundle == o.ca_bundle
            && self.options == o.options
            && creds(self) == creds(o)
    }

    fn __repr__(&self) -> String {
        format!(
            "<labelport.ClientSpec vendor={:?} project={:?} base_url={:?} rate_limit={:?} credentials={:?}>",
            self.vendor,
            self.project.as_deref().unwrap_or("<from environment>"),
            self.base_url.as_deref().unwrap_or("<from environment>"),
            self.rate_limit,
            self.credentials.keys().collect::<Vec<_>>(),
        )
    }
}

/// Unpickles a `ClientSpec`.
#[pyfunction]
fn _spec_from_state(state: &Bound<'_, PyDict>) -> PyResult<ClientSpec> {
    no_panic(|| {
        let vendor = state
            .get_item("vendor")?
            .ok_or_else(|| invalid("a ClientSpec needs a vendor", "vendor"))?;
        let vendor = args::required_vendor(&vendor)?;
        let rest = state.copy()?;
        rest.del_item("vendor")?;
        let base = ClientSpec::new(vendor, None, None, 30.0, 5, None, false, None, None)?;
        base.apply(Some(&rest))
    })
}

/// Calls `labelport._labelport._rebuild_client(spec, asynchronous)`.
fn rebuild<'py>(spec: &Bound<'py, ClientSpec>, asynchronous: bool) -> PyResult<Bound<'py, PyAny>> {
    spec.py()
        .import("labelport._labelport")?
        .getattr("_rebuild_client")?
        .call1((spec, asynchronous))
}

pub(super) fn batch_info(
    id: String,
    name: Option<String>,
    created_at: Option<String>,
    raw: &Bound<'_, PyAny>,
) -> PyResult<BatchInfo> {
    let raw = py_to_json(raw, "raw").map_err(|e| invalid(e.message, "raw"))?;
    Ok(BatchInfo {
        id,
        name,
        created_at,
        raw,
    })
}

/// `__reduce__` of a client: its spec without credentials.
pub(super) fn reduce_client<'py>(
    py: Python<'py>,
    inner: &ClientInner,
    is_async: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let rest = vec![is_async.into_pyobject(py)?.to_owned().into_any()];
    let reduced = ClientSpec::of(inner, false).reduce_with(py, "_rebuild_client", rest)?;
    Ok(reduced.into_pyobject(py)?.into_any())
}

/// `__reduce__` of a batch: its client's spec without credentials, and the batch's description.
pub(super) fn reduce_batch<'py>(
    py: Python<'py>,
    inner: &ClientInner,
    info: &BatchInfo,
    is_async: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let rest = vec![
        info.id.clone().into_pyobject(py)?.into_any(),
        info.name.clone().into_pyobject(py)?.into_any(),
        info.created_at.clone().into_pyobject(py)?.into_any(),
        json_value_to_py(py, &info.raw)?,
        is_async.into_pyobject(py)?.to_owned().into_any(),
    ];
    let reduced = ClientSpec::of(inner, false).reduce_with(py, "_rebuild_batch", rest)?;
    Ok(reduced.into_pyobject(py)?.into_any())
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ClientSpec>()?;
    m.add_function(wrap_pyfunction!(_spec_from_state, m)?)?;
    Ok(())
}
