//! Arguments from Python, checked: a value of the wrong type or out of range is an `InvalidInput` naming the
//! argument (`.field`), never pyo3's own TypeError or OverflowError, which a pipeline's
//! `except lp.LabelportError` misses, and never a panic further in.
//!
//! Every argument of the Python-facing API is read by one of the extractors at the bottom, through
//! `#[pyo3(from_py_with = args::NAME)]`: pyo3 hands an extractor the object but not the argument's name, so
//! each argument has its own, one line each. Values that arrive in `**kwargs` (`ClientSpec.replace`) are read
//! by the same functions.

use std::fmt::Display;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyInt, PyString};

use super::errors::{invalid, to_py_err};
use crate::vendors::config::{self, Zero, MAX_RETRIES};

/// The Python type of `obj`, for messages.
fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// `obj` as a message shows a wrong number: its repr, cut short (numbers and flags only, never a credential).
fn shown(obj: &Bound<'_, PyAny>) -> String {
    let text = obj.repr().map(|r| r.to_string()).unwrap_or_default();
    match text.char_indices().nth(40) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

/// A `str`.
pub(super) fn string(obj: &Bound<'_, PyAny>, field: &str) -> PyResult<String> {
    let s = obj.cast::<PyString>().map_err(|_| {
        invalid(
            format!("{field} must be a string, not {}", type_name(obj)),
            field,
        )
    })?;
    s.to_str().map(str::to_string).map_err(|_| {
        invalid(
            format!("{field} is not valid UTF-8 (lone surrogates)"),
            field,
        )
    })
}

/// `None` or a `str`.
pub(super) fn optional_string(obj: &Bound<'_, PyAny>, field: &str) -> PyResult<Option<String>> {
    if obj.is_none() {
        return Ok(None);
    }
    string(obj, field).map(Some)
}

/// A `str`, or an `int` taken as its digits (a project id); not a bool or a float.
fn id_string(obj: &Bound<'_, PyAny>, field: &str) -> PyResult<String> {
    if obj.is_instance_of::<PyInt>() && !obj.is_instance_of::<PyBool>() {
        if let Ok(n) = obj.extract::<i128>() {
            return Ok(n.to_string());
        }
    }
    if obj.is_instance_of::<PyString>() {
        return string(obj, field);
    }
    Err(invalid(
        format!(
            "{field} must be a string or an integer, not {}",
            type_name(obj)
        ),
        field,
    ))
}

/// `None`, or `id_string`.
fn optional_id_string(obj: &Bound<'_, PyAny>, field: &str) -> PyResult<Option<String>> {
    if obj.is_none() {
        return Ok(None);
    }
    id_string(obj, field).map(Some)
}

/// `True` or `False` (numpy's bools too); not 1, `"yes"` or `None`.
pub(super) fn boolean(obj: &Bound<'_, PyAny>, field: &str) -> PyResult<bool> {
    obj.extract::<bool>().map_err(|_| {
        invalid(
            format!("{field} must be True or False, not {}", shown(obj)),
            field,
        )
    })
}

/// `None`, `True` or `False`.
fn optional_boolean(obj: &Bound<'_, PyAny>, field: &str) -> PyResult<Option<bool>> {
    if obj.is_none() {
        return Ok(None);
    }
    boolean(obj, field).map(Some)
}

/// A whole number from 0 to `max`: a Python int or anything with `__index__` (numpy's integers); not a bool,
/// a float or a string of digits.
pub(super) fn whole_number<T>(obj: &Bound<'_, PyAny>, field: &str, max: T) -> PyResult<T>
where
    T: Copy + Display + Into<u64> + TryFrom<u64>,
{
    let bad = || {
        invalid(
            format!(
                "{field} must be a whole number from 0 to {max}, not {}",
                shown(obj)
            ),
            field,
        )
    };
    if obj.is_instance_of::<PyBool>() {
        return Err(bad());
    }
    let n = obj.extract::<u64>().map_err(|_| bad())?;
    if n > max.into() {
        return Err(bad());
    }
    T::try_from(n).map_err(|_| bad())
}

/// A number: an int or a float (numpy's too); not a bool or a string of digits.
fn number(obj: &Bound<'_, PyAny>, field: &str, what: &str) -> PyResult<f64> {
    let bad = || invalid(format!("{field} must be {what}, not {}", shown(obj)), field);
    if obj.is_instance_of::<PyBool>() || obj.is_instance_of::<PyString>() {
        return Err(bad());
    }
    obj.extract::<f64>().map_err(|_| bad())
}

/// A number of seconds, checked by `config::seconds` (finite, at most a year, 0 only where `zero` allows).
pub(super) fn seconds(obj: &Bound<'_, PyAny>, field: &str, zero: Zero) -> PyResult<f64> {
    let value = number(obj, field, "a number of seconds")?;
    config::seconds(field, value, zero).map_err(to_py_err)?;
    Ok(value)
}

/// `None`, or `seconds`.
fn optional_seconds(obj: &Bound<'_, PyAny>, field: &str, zero: Zero) -> PyResult<Option<f64>> {
    if obj.is_none() {
        return Ok(None);
    }
    seconds(obj, field, zero).map(Some)
}

/// `None`, or requests per second (`config::rate_limit`).
fn optional_rate_limit(obj: &Bound<'_, PyAny>, field: &str) -> PyResult<Option<f64>> {
    if obj.is_none() {
        return Ok(None);
    }
    let value = number(obj, field, "a number of requests per second")?;
    config::rate_limit(value).map(Some).map_err(to_py_err)
}

/// A probability, from 0 to 1.
pub(super) fn probability(obj: &Bound<'_, PyAny>, field: &str) -> PyResult<f64> {
    let value = number(obj, field, "a probability from 0 to 1")?;
    if (0.0..=1.0).contains(&value) {
        return Ok(value);
    }
    Err(invalid(
        format!("{field} must be a probability from 0 to 1, not {value}"),
        field,
    ))
}

/// An iterable of `str`; not one `str` (a string is an iterable of its letters).
fn strings(obj: &Bound<'_, PyAny>, field: &str) -> PyResult<Vec<String>> {
    if obj.is_instance_of::<PyString>() {
        return Err(invalid(
            format!("{field} must be a list of strings, not one string"),
            field,
        ));
    }
    let items = obj.try_iter().map_err(|_| {
        invalid(
            format!("{field} must be a list of strings, not {}", type_name(obj)),
            field,
        )
    })?;
    items
        .map(|item| {
            let item = item?;
            string(&item, field).map_err(|_| {
                invalid(
                    format!(
                        "{field} must be a list of strings; it holds a {}",
                        type_name(&item)
                    ),
                    field,
                )
            })
        })
        .collect()
}

/// A path: a `str` or an `os.PathLike` of one.
fn fs_path(obj: &Bound<'_, PyAny>, field: &str) -> PyResult<String> {
    let bad = || {
        invalid(
            format!(
                "{field} must be a path (str or os.PathLike), not {}",
                type_name(obj)
            ),
            field,
        )
    };
    let fspath = obj
        .py()
        .import("os")?
        .call_method1("fspath", (obj,))
        .map_err(|_| bad())?;
    string(&fspath, field).map_err(|_| bad())
}

/// `None`, or `fs_path`.
pub(super) fn optional_fs_path(obj: &Bound<'_, PyAny>, field: &str) -> PyResult<Option<String>> {
    if obj.is_none() {
        return Ok(None);
    }
    fs_path(obj, field).map(Some)
}

/// `None`, or a base URL: refused here already when it does not parse or holds credentials
/// (`config::parse_base_url`), so no `Client`, `ClientSpec` or pickle ever holds one. Empty means "not given"
/// (the environment's or profile's then), as in `config::resolve`.
fn optional_base_url(obj: &Bound<'_, PyAny>, field: &str) -> PyResult<Option<String>> {
    let url = optional_string(obj, field)?;
    if let Some(u) = url.as_deref().filter(|u| !u.is_empty()) {
        config::parse_base_url(u).map_err(to_py_err)?;
    }
    Ok(url)
}

/// Declares `pub(super) fn NAME(obj) -> PyResult<TYPE>`, reading one argument with one of the functions above.
macro_rules! extractors {
    ($($name:ident: $ty:ty = $read:ident($field:literal $(, $extra:expr)*);)*) => {
        $(
            #[doc = concat!("The argument `", $field, "`, for `#[pyo3(from_py_with = ...)]`.")]
            pub(super) fn $name(obj: &Bound<'_, PyAny>) -> PyResult<$ty> {
                $read(obj, $field $(, $extra)*)
            }
        )*
    };
}

// Clients and specs.
extractors! {
    vendor: Option<String> = optional_string("vendor");
    required_vendor: String = string("vendor");
    project: Option<String> = optional_id_string("project");
    profile: Option<String> = optional_string("profile");
    base_url: Option<String> = optional_base_url("base_url");
    timeout: f64 = seconds("timeout", Zero::Refused);
    max_retries: u32 = whole_number("max_retries", MAX_RETRIES);
    rate_limit: Option<f64> = optional_rate_limit("rate_limit");
    allow_insecure: bool = boolean("allow_insecure");
    ca_bundle: Option<String> = optional_fs_path("ca_bundle");
    include_credentials: bool = boolean("include_credentials");
}

// Batches, jobs, requests.
extractors! {
    name: String = string("name");
    exist_ok: bool = boolean("exist_ok");
    batch_id: String = string("id");
    user: String = string("user");
    method: String = string("method");
    path: String = string("path");
    paginate: bool = boolean("paginate");
    retry: Option<bool> = optional_boolean("retry");
    raw: bool = boolean("raw");
    key: Option<String> = optional_string("key");
    wait_timeout: Option<f64> = optional_seconds("timeout", Zero::Allowed);
    poll_interval: f64 = seconds("poll_interval", Zero::Refused);
    include_raw: bool = boolean("include_raw");
    upload_wait: bool = boolean("wait");
    consumer: Option<String> = optional_string("consumer");
    ids: Vec<String> = strings("ids");
    reason: Option<String> = optional_string("reason");
    file_path: String = fs_path("path");
}

// The sandbox.
extractors! {
    seed: u64 = whole_number("seed", u64::MAX);
    port: u16 = whole_number("port", u16::MAX);
    complete_after: f64 = seconds("complete_after", Zero::Allowed);
    exception_rate: f64 = probability("exception_rate");
    latency: Option<f64> = optional_seconds("latency", Zero::Allowed);
    track_pids: bool = boolean("track_pids");
    record_wire: bool = boolean("record_wire");
    advance_by: f64 = seconds("seconds", Zero::Allowed);
}

/// `on_error`: `"raise"` or `"collect"`.
pub(super) fn on_error(obj: &Bound<'_, PyAny>) -> PyResult<&'static str> {
    match string(obj, "on_error")?.as_str() {
        "raise" => Ok("raise"),
        "collect" => Ok("collect"),
        other => Err(invalid(
            format!("on_error must be \"raise\" or \"collect\", not {other:?}"),
            "on_error",
        )),
    }
}

/// `params` of `request`: `None` or a dict.
pub(super) fn params<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyDict>>> {
    if obj.is_none() {
        return Ok(None);
    }
    obj.cast::<PyDict>().map(|d| Some(d.clone())).map_err(|_| {
        invalid(
            format!("params must be a dict, not {}", type_name(obj)),
            "params",
        )
    })
}
