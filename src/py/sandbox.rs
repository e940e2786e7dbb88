//! `SandboxServer`: a vendor simulator running in this process on its own threads (see `sandbox/`).
//! `labelport.sandbox.start()` wraps it in the documented `Sandbox` object.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::errors::to_py_err;
use super::json::json_value_to_py;
use super::runtime::no_panic;
use crate::engine::Error;
use crate::sandbox::{Faults, Sandbox, SandboxConfig};

#[pyclass(module = "labelport", frozen)]
pub struct SandboxServer {
    inner: Sandbox,
}

fn faults_from(d: Option<&Bound<'_, PyDict>>) -> PyResult<Faults> {
    let mut f = Faults::default();
    let Some(d) = d else { return Ok(f) };
    for (k, v) in d.iter() {
        let name: String = k.extract()?;
        let value: f64 = v.extract().map_err(|_| {
            to_py_err(Error::invalid(format!("fault {name} must be a number")).field(name.clone()))
        })?;
        let probability = |v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(v)
            } else {
                Err(to_py_err(
                    Error::invalid(format!(
                        "fault {name} is a probability between 0 and 1, not {v}"
                    ))
                    .field(name.clone()),
                ))
            }
        };
        match name.as_str() {
            "rate_limit" => f.rate_limit = probability(value)?,
            "server_error" => f.server_error = probability(value)?,
            "commit_then_fail" => f.commit_then_fail = probability(value)?,
            "reset" => f.reset = probability(value)?,
            "slow" => f.slow = probability(value)?,
            "slow_s" => f.slow_s = value.max(0.0),
            "token_ttl" => f.token_ttl = Some(value.max(0.0)),
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

#[pymethods]
impl SandboxServer {
    #[new]
    #[pyo3(signature = (vendor, *, seed=0, complete_after=0.0, exception_rate=0.0, faults=None, latency=None, port=0, track_pids=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        vendor: String,
        seed: u64,
        complete_after: f64,
        exception_rate: f64,
        faults: Option<&Bound<'_, PyDict>>,
        latency: Option<f64>,
        port: u16,
        track_pids: bool,
    ) -> PyResult<Self> {
        no_panic(|| {
            if !(complete_after.is_finite() && complete_after >= 0.0) {
                return Err(to_py_err(
                    Error::invalid("complete_after must be a number of seconds >= 0")
                        .field("complete_after"),
                ));
            }
            if !(0.0..=1.0).contains(&exception_rate) {
                return Err(to_py_err(
                    Error::invalid("exception_rate is a probability between 0 and 1")
                        .field("exception_rate"),
                ));
            }
            let config = SandboxConfig {
                vendor: vendor.to_ascii_lowercase(),
                seed,
                complete_after,
                exception_rate,
                latency,
                port,
                faults: faults_from(faults)?,
                track_pids,
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

    fn advance(&self, seconds: f64) {
        self.inner.advance(seconds)
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
