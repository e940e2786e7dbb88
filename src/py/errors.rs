//! The exception hierarchy, built once per interpreter. Classes are made with `type()` so that
//! `InvalidInput` can also be a `ValueError` and `Timeout` a `TimeoutError`, as users expect to catch them.

use pyo3::exceptions::{PyException, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

use crate::engine::{Error, ErrorKind};

pub struct ErrorTypes {
    pub base: Py<PyType>,
    pub auth: Py<PyType>,
    pub not_found: Py<PyType>,
    pub invalid_input: Py<PyType>,
    pub duplicate_record: Py<PyType>,
    pub rate_limited: Py<PyType>,
    pub vendor: Py<PyType>,
    pub timeout: Py<PyType>,
    pub stalled: Py<PyType>,
    pub unsupported: Py<PyType>,
}

static TYPES: PyOnceLock<ErrorTypes> = PyOnceLock::new();

const FIELDS: [&str; 10] = [
    "vendor",
    "operation",
    "status",
    "code",
    "message",
    "request_id",
    "key",
    "field",
    "details",
    "retry_after",
];

fn make(
    py: Python<'_>,
    name: &str,
    bases: Vec<Bound<'_, PyAny>>,
    doc: &str,
) -> PyResult<Py<PyType>> {
    let ns = PyDict::new(py);
    ns.set_item("__module__", "labelport")?;
    ns.set_item("__doc__", doc)?;
    if name == "LabelportError" {
        for f in FIELDS {
            ns.set_item(f, py.None())?;
        }
    }
    let ty = py
        .get_type::<PyType>()
        .call1((name, PyTuple::new(py, bases)?, ns))?;
    Ok(ty.cast_into::<PyType>()?.unbind())
}

pub fn types(py: Python<'_>) -> PyResult<&ErrorTypes> {
    TYPES.get_or_try_init(py, || {
        let base = make(py, "LabelportError", vec![py.get_type::<PyException>().into_any()], "Base of every labelport error: carries vendor, operation, status, code, message, request_id, key, field, details, retry_after.")?;
        let b = || base.bind(py).clone().into_any();
        Ok(ErrorTypes {
            auth: make(py, "AuthError", vec![b()], "Credentials missing, refused or expired beyond renewal.")?,
            not_found: make(py, "NotFound", vec![b()], "The vendor does not know this project, batch, record or path.")?,
            invalid_input: make(py, "InvalidInput", vec![b(), py.get_type::<PyValueError>().into_any()], "Bad input: names the record key or field at fault. Nothing was sent for it.")?,
            duplicate_record: make(py, "DuplicateRecord", vec![b()], "A key (or batch name) that must be unique is not.")?,
            rate_limited: make(py, "RateLimited", vec![b()], "The vendor kept refusing for rate limits after every retry.")?,
            vendor: make(py, "VendorError", vec![b()], "The vendor failed, or could not be reached, after every safe retry.")?,
            timeout: make(py, "Timeout", vec![b(), py.get_type::<PyTimeoutError>().into_any()], "Time ran out waiting.")?,
            stalled: make(py, "Stalled", vec![b()], "A vendor job stopped moving for longer than the stall window.")?,
            unsupported: make(py, "UnsupportedOperation", vec![b()], "The vendor's API cannot do this.")?,
            base,
        })
    })
}

/// An `Error` as the matching Python exception, with every fact as an attribute.
pub fn to_py_err(e: Error) -> PyErr {
    Python::attach(|py| match build(py, &e) {
        Ok(err) => err,
        Err(err) => err,
    })
}

fn build(py: Python<'_>, e: &Error) -> PyResult<PyErr> {
    let t = types(py)?;
    let ty = match e.kind {
        ErrorKind::Auth => &t.auth,
        ErrorKind::NotFound => &t.not_found,
        ErrorKind::InvalidInput => &t.invalid_input,
        ErrorKind::DuplicateRecord => &t.duplicate_record,
        ErrorKind::RateLimited => &t.rate_limited,
        ErrorKind::Vendor => &t.vendor,
        ErrorKind::Timeout => &t.timeout,
        ErrorKind::Stalled => &t.stalled,
        ErrorKind::Unsupported => &t.unsupported,
        // A caught panic: the base class itself, with code "internal".
        ErrorKind::Internal => &t.base,
    };
    let value = ty.bind(py).call1((e.to_string(),))?;
    value.setattr("vendor", &e.vendor)?;
    value.setattr("operation", &e.operation)?;
    value.setattr("status", e.status)?;
    value.setattr("code", &e.code)?;
    value.setattr("message", &e.message)?;
    value.setattr("request_id", &e.request_id)?;
    value.setattr("key", &e.key)?;
    value.setattr("field", &e.field)?;
    value.setattr("retry_after", e.retry_after)?;
    let details = match &e.details {
        Some(d) => pythonize::pythonize(py, d)?,
        None => py.None().into_bound(py),
    };
    value.setattr("details", details)?;
    Ok(PyErr::from_value(value))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let t = types(py)?;
    for (name, ty) in [
        ("LabelportError", &t.base),
        ("AuthError", &t.auth),
        ("NotFound", &t.not_found),
        ("InvalidInput", &t.invalid_input),
        ("DuplicateRecord", &t.duplicate_record),
        ("RateLimited", &t.rate_limited),
        ("VendorError", &t.vendor),
        ("Timeout", &t.timeout),
        ("Stalled", &t.stalled),
        ("UnsupportedOperation", &t.unsupported),
    ] {
        m.add(name, ty.clone_ref(py))?;
    }
    Ok(())
}

/// An `InvalidInput` naming the argument (`field`) that is wrong.
pub(super) fn invalid(message: impl Into<String>, field: &str) -> PyErr {
    to_py_err(Error::invalid(message).field(field))
}
