//! What the sync and async faces share: the client behind both, the checks of their arguments, and the
//! conversions of what they return.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use reqwest::Method;

use super::args;
use super::errors::{invalid, to_py_err};
use super::json::{decode_json, py_to_json, JsonToPyError};
use super::runtime::handle;
use crate::engine::http::Request;
use crate::engine::retry::RequestKind;
use crate::engine::Result;
use crate::vendors::config::ClientArgs;
use crate::vendors::{
    connect, parse_rfc3339_us, resolve, resolve_reporting, Adapter, BatchCounts, ClientConfig,
    JobPhase, JobState, Options, Status,
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

    /// The vendor's base URL (scheme and host), without a trailing slash.
    pub(super) fn base_url(&self) -> String {
        self.config
            .base_url
            .as_str()
            .trim_end_matches('/')
            .to_string()
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

/// The shortest pause between two polls of a job, whatever `poll_interval` says: the vendor is not a busy loop.
pub(super) const MIN_POLL_S: f64 = 0.05;

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
