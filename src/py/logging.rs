//! Rust log records into Python's `logging`. Our targets are `labelport::…`, which pyo3-log names
//! `labelport.…` in Python; other crates' records (reqwest, hyper, rustls) pass only at WARNING and above.

use parking_lot::Mutex;
use pyo3::prelude::*;

static RESET: Mutex<Option<pyo3_log::ResetHandle>> = Mutex::new(None);

pub fn install(py: Python<'_>) {
    let Ok(logger) = pyo3_log::Logger::new(py, pyo3_log::Caching::LoggersAndLevels) else {
        return;
    };
    let logger = logger
        .filter(log::LevelFilter::Warn)
        .filter_target("labelport".to_string(), log::LevelFilter::Trace);
    let handle = logger.reset_handle();
    if logger.install().is_ok() {
        *RESET.lock() = Some(handle);
    }
}

/// Python logging levels are cached on the Rust side: call this after changing the level of a `labelport`
/// logger (e.g. `logging.getLogger("labelport").setLevel(logging.DEBUG)`).
#[pyfunction]
pub fn reset_log_cache() {
    if let Some(h) = RESET.lock().as_ref() {
        h.reset();
    }
}
