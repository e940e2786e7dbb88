//! The Python bindings: the only code that touches pyo3.

mod args;
mod async_bridge;
mod async_stream;
mod batch;
mod client;
mod core;
mod debug;
mod envelope_pages;
mod errors;
mod faces;
mod job;
mod json;
mod logging;
mod op;
mod pages;
mod records;
mod results;
mod runtime;
mod sandbox;
mod spec;
mod upload;

use pyo3::prelude::*;

use runtime::no_panic;

#[pymodule]
fn _labelport(m: &Bound<'_, PyModule>) -> PyResult<()> {
    logging::install(m.py());
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("MAX_JSON_DEPTH", json::MAX_JSON_DEPTH)?;
    errors::register(m)?;
    m.add_class::<client::Client>()?;
    m.add_class::<batch::Batch>()?;
    m.add_class::<job::Job>()?;
    m.add_class::<results::ResultStream>()?;
    m.add_class::<results::RequestPages>()?;
    m.add_class::<client::AsyncClient>()?;
    m.add_class::<batch::AsyncBatch>()?;
    m.add_class::<job::AsyncJob>()?;
    m.add_class::<async_stream::AsyncStream>()?;
    m.add_class::<async_bridge::Ready>()?;
    m.add_class::<sandbox::SandboxServer>()?;
    spec::register(m)?;
    m.add_function(wrap_pyfunction!(client::_rebuild_client, m)?)?;
    m.add_function(wrap_pyfunction!(batch::_rebuild_batch, m)?)?;
    m.add_function(wrap_pyfunction!(debug::_debug_panic_async, m)?)?;
    m.add_function(wrap_pyfunction!(logging::reset_log_cache, m)?)?;
    m.add_function(wrap_pyfunction!(debug::_debug_panic, m)?)?;
    let stop = wrap_pyfunction!(runtime::_stop_runtime_at_exit, m)?;
    m.add_function(stop.clone())?;
    m.py().import("atexit")?.call_method1("register", (stop,))?;
    m.add_function(wrap_pyfunction!(_ledger, m)?)?;
    m.add_function(wrap_pyfunction!(envelope_pages::_set_fast_pages, m)?)?;
    m.add_function(wrap_pyfunction!(envelope_pages::_fast_pages_available, m)?)?;
    m.add_function(wrap_pyfunction!(envelope_pages::_fast_pages_counts, m)?)?;
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
