//! One error type for every layer below Python. `py/errors.rs` maps `ErrorKind` onto the exception classes.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Auth,
    NotFound,
    InvalidInput,
    DuplicateRecord,
    RateLimited,
    /// The vendor answered with an error, or could not be reached.
    Vendor,
    Timeout,
    Stalled,
    Unsupported,
    /// A bug in labelport (a panic caught at the boundary): never the vendor's or the user's fault.
    Internal,
}

/// What went wrong, with the facts a user needs to act. Never holds a secret: URLs are redacted before they
/// get here and bodies of auth calls are never quoted.
#[derive(Debug, Clone)]
pub struct Error {
    pub kind: ErrorKind,
    pub vendor: Option<String>,
    pub operation: Option<String>,
    pub status: Option<u16>,
    pub code: Option<String>,
    pub message: String,
    pub request_id: Option<String>,
    pub key: Option<String>,
    pub field: Option<String>,
    /// Structured extras, e.g. which records an interrupted upload did and did not send.
    pub details: Option<serde_json::Value>,
    /// Seconds the vendor asked us to wait before trying again (`Retry-After`), when it asked for longer
    /// than labelport waits on its own.
    pub retry_after: Option<f64>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            vendor: None,
            operation: None,
            status: None,
            code: None,
            message: message.into(),
            request_id: None,
            key: None,
            field: None,
            details: None,
            retry_after: None,
        }
    }

    /// A panic caught at a boundary, as an error asking for a bug report (code `internal`). `payload` is what
    /// `catch_unwind` or a `JoinError` gave; its text is kept when it is a string.
    pub fn internal(payload: &(dyn std::any::Any + Send)) -> Self {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_string());
        Self::new(
            ErrorKind::Internal,
            format!(
                "internal error in labelport (a bug, not your input or the vendor): {what}; please report \
                 this message to the labelport maintainers"
            ),
        )
        .code("internal")
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    pub fn unsupported(vendor: &str, operation: &str, why: &str) -> Self {
        Self::new(
            ErrorKind::Unsupported,
            format!("{vendor} cannot {operation}: {why}"),
        )
        .vendor(vendor)
        .operation(operation)
    }

    pub fn vendor(mut self, vendor: &str) -> Self {
        self.vendor = Some(vendor.to_string());
        self
    }

    pub fn operation(mut self, operation: &str) -> Self {
        self.operation = Some(operation.to_string());
        self
    }

    /// Sets the operation only where a lower layer did not already name a more precise one.
    pub fn in_operation(mut self, operation: &str) -> Self {
        if self.operation.is_none() {
            self.operation = Some(operation.to_string());
        }
        self
    }

    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    pub fn http_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub fn retry_after(mut self, seconds: f64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.vendor, &self.operation) {
            (Some(v), Some(op)) => write!(f, "{v} {op}: ")?,
            (Some(v), None) => write!(f, "{v}: ")?,
            (None, Some(op)) => write!(f, "{op}: ")?,
            (None, None) => {}
        }
        f.write_str(&self.message)?;
        let mut facts = Vec::new();
        if let Some(s) = self.status {
            facts.push(format!("HTTP {s}"));
        }
        if let Some(c) = &self.code {
            facts.push(format!("code {c}"));
        }
        if let Some(k) = &self.key {
            facts.push(format!("record key {k:?}"));
        }
        if let Some(fl) = &self.field {
            facts.push(format!("field {fl:?}"));
        }
        if let Some(r) = &self.request_id {
            facts.push(format!("request id {r}"));
        }
        if !facts.is_empty() {
            write!(f, " ({})", facts.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}
