//! The Python bindings: the only code that touches pyo3.

mod args;
mod async_bridge;
mod async_stream;
mod asyncio;
mod client;
mod core;
mod errors;
mod json;
mod logging;
mod pages;
mod records;
mod results;
mod runtime;
mod sandbox;
mod spec;

use pyo3::prelude::*;

use runtime::no_panic;

#[pymodule]
fn _labelport(m: &Bound<'_, PyModule>) -> PyResult<()> {
    logging::install(m.py());
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MAX_JSON_DEPTH", json::MAX_JSON_DEPTH)?;
    errors::register(m)?;
    m.add_class::<client::Client>()?;
    m.add_class::<client::Batch>()?;
    m.add_class::<client::Job>()?;
    m.add_class::<results::ResultStream>()?;
    m.add_class::<results::RequestPages>()?;
    m.add_class::<sandbox::SandboxServer>()?;
    asyncio::register(m)?;
    spec::register(m)?;
    m.add_function(wrap_pyfunction!(logging::reset_log_cache, m)?)?;
    m.add_function(wrap_pyfunction!(runtime::_debug_panic, m)?)?;
    let stop = wrap_pyfunction!(runtime::_stop_runtime_at_exit, m)?;
    m.add_function(stop.clone())?;
    m.py().import("atexit")?.call_method1("register", (stop,))?;
    m.add_function(wrap_pyfunction!(_ledger, m)?)?;
    m.add_function(wrap_pyfunction!(vendors, m)?)?;
    Ok(())
}

/// The vendors labelport has an adapter and a sandbox for, by name: the one list (`vendors::spec::SPECS`)
/// every other list in the package, its tests and its benchmarks is derived from.
#[pyfunction]
fn vendors() -> Vec<&'static str> {
    crate::vendors::spec::SPECS.iter().map(|s| s.name).collect()
}

/// A vendor's ledger (docs/vendors/<vendor>.md), for `labelport check`.
#[pyfunction]
fn _ledger(vendor: &str) -> PyResult<&'static str> {
    no_panic(|| {
        crate::vendors::ledgers::ledger(&vendor.to_ascii_lowercase()).ok_or_else(|| {
            errors::to_py_err(crate::engine::Error::invalid(format!(
                "no ledger for vendor {vendor:?}"
            )))
        })
    })
}
