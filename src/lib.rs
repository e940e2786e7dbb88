//! labelport's Rust core. A table of contents: the engine (vendor-independent HTTP, retries, auth,
//! pagination), one adapter per vendor, the local vendor simulators, and the Python bindings.

// `Error` carries what a user needs to act (vendor, operation, status, code, request id, key, field): it is
// large, and only built on the failure path, where its size costs nothing measurable.
#![allow(clippy::result_large_err)]

pub mod engine;
pub mod sandbox;
pub mod vendors;

#[cfg(feature = "python")]
mod py;
