//! The Python bindings: the only code that touches pyo3.

mod args;
mod asyncio;
mod client;
mod errors;
mod json;
mod logging;
mod pages;
mod results;
mod runtime;
mod sandbox;
mod spec;

use pyo3::prelude::*;

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
    Ok(())
}
