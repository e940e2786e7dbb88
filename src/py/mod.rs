//! The Python bindings: the only code that touches pyo3.

mod client;
mod errors;
mod json;
mod results;
mod runtime;
mod sandbox;

use pyo3::prelude::*;

#[pymodule]
fn _labelport(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Rust log records go to Python's `logging` under `labelport.*` (targets are set explicitly).
    let _ = pyo3_log::try_init();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    errors::register(m)?;
    m.add_class::<client::Client>()?;
    m.add_class::<client::Batch>()?;
    m.add_class::<client::Job>()?;
    m.add_class::<results::ResultStream>()?;
    m.add_class::<results::RequestPages>()?;
    m.add_class::<sandbox::SandboxServer>()?;
    Ok(())
}
