//! The vendor-independent engine: HTTP, retries, auth providers, pagination strategies, page streaming.
//! Never imports pyo3, `vendors/` or `sandbox/`.

pub mod auth;
pub mod concurrency;
pub mod error;
/// A byte-described hostile HTTP server driving the engine: the `http_response` fuzz target and its property
/// test (issue 18). Never in a release build.
#[cfg(any(test, feature = "fuzzing"))]
pub mod hostile;
pub mod http;
pub mod metrics;
pub mod pagination;
pub mod rate_limit;
pub mod redact;
pub mod retry;
pub mod runner;
pub mod stream;

pub use error::{Error, ErrorKind, Result};
