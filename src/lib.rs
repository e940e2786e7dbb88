//! labelport's Rust core. A table of contents: the engine (vendor-independent HTTP, retries, auth,
//! pagination), one adapter per vendor, the local vendor simulators, and the Python bindings.

pub mod engine;
pub mod sandbox;
pub mod vendors;

#[cfg(feature = "python")]
mod py;
