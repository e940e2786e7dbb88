//! `SandboxServer`: a vendor simulator running in this process on its own threads (see `sandbox/`).
//! `labelport.sandbox.start()` wraps it in the documented `Sandbox` object.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::args;
use super::errors::to_py_err;
use super::json::json_value_to_py;
use super::runtime::no_panic;
use crate::engine::Error;
use crate::sandbox::{describe_dialect, Dialect, Faults, Sandbox, SandboxConfig, Setting};
use crate::vendors::config::Zero;

#[pyclass(module = "labelport", frozen)]
pub struct SandboxServer {
    inner: Sandbox,
}

fn faults_from(d: Option<&Bound<'_, PyAny>>) -> PyResult<Faults> {
    let mut f = Faults::default();
    let Some(d) = d.filter(|d| !d.is_none()) else {
        return Ok(f);
    };
    let d = d.cast::<PyDict>().map_err(|_| {
        to_py_err(
            Error::invalid("faults must be a dict of fault names and numbers").field("faults"),
        )
    })?;
    for (k, v) in d.iter() {
        let name = args::string(&k, "faults")?;
        let probability = || args::probability(&v, &name);
        match name.as_str() {
            "rate_limit" => f.rate_limit = probability()?,
            "server_error" => f.server_error = probability()?,
            "commit_then_fail" => f.commit_then_fail = probability()?,
            "reset" => f.reset = probability()?,
            "slow" => f.slow = probability()?,
            "slow_s" => f.slow_s = args::seconds(&v, &name, Zero::Allowed)?,
            "token_ttl" => f.token_ttl = Some(args::seconds(&v, &name, Zero::Allowed)?),
            _ => {
                return Err(to_py_err(
                    Error::invalid(format!(
                        "unknown fault {name:?}; faults are rate_limit, server_error, commit_then_fail, reset, slow, slow_s, token_ttl"
                    ))
                    .field(name),
                ))
            }
        }
    }
    Ok(f)
}

/// A dict of dialect settings; whether each exists for the vendor is the sandbox's to say.
fn dialect_from(d: Option<&Bound<'_, PyAny>>) -> PyResult<Dialect> {
    let mut dialect = Dialect::default();
    let Some(d) = d.filter(|d| !d.is_none()) else {
        return Ok(dialect);
    };
    let d = d.cast::<PyDict>().map_err(|_| {
        to_py_err(
            Error::invalid("dialect must be a dict of setting names and values").field("dialect"),
        )
    })?;
    for (k, v) in d.iter() {
        let name = args::string(&k, "dialect")?;
        let setting = if let Ok(b) = v.extract::<bool>() {
            Setting::Switch(b)
        } else if let Ok(n) = v.extract::<u64>() {
            Setting::Number(n)
        } else if let Ok(w) = v.extract::<String>() {
            Setting::Word(w)
        } else {
            return Err(to_py_err(
                Error::invalid(format!(
                    "dialect setting {name:?} must be a bool, a whole number or a string"
                ))
                .field(name),
            ));
        };
        dialect = dialect.set(&name, setting);
    }
    Ok(dialect)
}

#[pymethods]
impl SandboxServer {
    #[new]
    #[pyo3(signature = (vendor, *, seed=0, complete_after=0.0, exception_rate=0.0, faults=None, latency=None, port=0, track_pids=false, record_wire=false, dialect=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        #[pyo3(from_py_with = args::required_vendor)] vendor: String,
        #[pyo3(from_py_with = args::seed)] seed: u64,
        #[pyo3(from_py_with = args::complete_after)] complete_after: f64,
        #[pyo3(from_py_with = args::exception_rate)] exception_rate: f64,
        faults: Option<&Bound<'_, PyAny>>,
        #[pyo3(from_py_with = args::latency)] latency: Option<f64>,
        #[pyo3(from_py_with = args::port)] port: u16,
        #[pyo3(from_py_with = args::track_pids)] track_pids: bool,
        #[pyo3(from_py_with = args::record_wire)] record_wire: bool,
        dialect: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        no_panic(|| {
            let config = SandboxConfig {
                vendor: vendor.to_ascii_lowercase(),
                seed,
                complete_after,
                exception_rate,
                latency,
                port,
                faults: faults_from(faults)?,
                track_pids,
                record_wire,
                dialect: dialect_from(dialect)?,
            };
            let inner = py
                .detach(|| Sandbox::start(config))
                .map_err(|e| to_py_err(Error::invalid(format!("sandbox did not start: {e}"))))?;
            Ok(SandboxServer { inner })
        })
    }

    #[getter]
    fn url(&self) -> String {
        self.inner.url()
    }

    #[getter]
    fn vendor(&self) -> String {
        self.inner.vendor().to_string()
    }

    #[getter]
    fn project(&self) -> String {
        self.inner.project()
    }

    #[getter]
    fn credentials(&self) -> std::collections::BTreeMap<String, String> {
        self.inner.credentials().into_iter().collect()
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        no_panic(|| {
            let stats = py.detach(|| self.inner.stats());
            json_value_to_py(py, &stats)
        })
    }

    fn advance(&self, #[pyo3(from_py_with = args::advance_by)] seconds: f64) -> PyResult<()> {
        no_panic(|| {
            self.inner.advance(seconds);
            Ok(())
        })
    }

    /// The dialect settings a vendor's simulator understands (`lp.sandbox.dialect_settings`).
    #[staticmethod]
    fn dialect_settings<'py>(
        py: Python<'py>,
        #[pyo3(from_py_with = args::required_vendor)] vendor: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        no_panic(|| json_value_to_py(py, &describe_dialect(&vendor.to_ascii_lowercase())))
    }

    fn expire_tokens(&self) {
        self.inner.expire_tokens()
    }

    fn stop(&self, py: Python<'_>) {
        py.detach(|| self.inner.stop())
    }

    fn __repr__(&self) -> String {
        format!(
            "<labelport.SandboxServer vendor={:?} url={:?}>",
            self.inner.vendor(),
            self.inner.url()
        )
    }
}
