//! The vendor-independent engine: HTTP, retries, auth providers, pagination strategies, page streaming.
//! Never imports pyo3, `vendors/` or `sandbox/`.

pub mod auth;
pub mod concurrency;
pub mod error;
pub mod http;
pub mod pagination;
pub mod rate_limit;
pub mod redact;
pub mod retry;
pub mod stream;

pub use error::{Error, ErrorKind, Result};
