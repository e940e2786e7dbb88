//! Pages of envelopes on their way to Python as dicts, at the speed of `orjson.loads`.
//!
//! On the runtime's threads, while later pages download, each page of envelopes is written as one JSON array
//! (`EnvelopePage`): `input`, `output` and `raw` are the vendor's own text, copied. On the Python thread the
//! page becomes a list of dicts by one `orjson.loads` (a declared dependency): one C-level decode per page.
//! orjson builds the objects with CPython internals the stable ABI does not offer (`PyUnicode_New` to skip
//! UTF-8 decoding, presized dicts, known-hash inserts); measured against labelport's own builder in
//! BENCHMARKS.md (issue 23). What comes out is what labelport always gave: plain `dict`, `list`, `str`, `int`,
//! `float`, `bool` and `None`, equal to what its own decoder makes.
//!
//! labelport's own decoder (`json::decode_envelope`, one envelope at a time) stays the reference and takes
//! every page orjson would read differently or not at all:
//! - a page with a value nested deeper than `MAX_JSON_DEPTH` (told on the runtime's threads): labelport
//!   refuses it at that envelope (orjson would read it up to its own limit of 1024);
//! - a page orjson refuses: integers wider than 64 bits come out as floats in both, but a number beyond the
//!   double range, or a lone surrogate in a string, is an error that labelport words and places itself;
//! - orjson missing (installed without its dependencies), or turned off (`_set_fast_pages(False)`, for the
//!   tests that compare both roads).
//!
//! Errors stay per envelope, as before: the envelopes before a bad one are delivered first.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList};

use super::json::{decode_envelope, nesting_at_most, MAX_JSON_DEPTH};
use crate::engine::Error;
use crate::vendors::Envelope;

/// A page of envelopes as one JSON array, written on a runtime thread.
pub struct EnvelopePage {
    /// `[{...},{...}]`: every envelope of the page, as `to_jsonl` writes one.
    json: Vec<u8>,
    /// Where each envelope's object starts and ends in `json`.
    spans: Vec<(usize, usize)>,
    /// Each envelope's completion time, for the stream's watermark.
    pub completed_us: Vec<Option<i64>>,
    /// No `input`, `output` or `raw` nests deeper than `MAX_JSON_DEPTH`: orjson may read the page.
    within_depth: bool,
}

impl EnvelopePage {
    /// Writes a page of envelopes as JSON text (on a runtime thread, without the GIL).
    pub fn write(items: Vec<Envelope>) -> Result<Self, Error> {
        Ok(Self::from_envelopes(&items))
    }

    fn from_envelopes(items: &[Envelope]) -> Self {
        let size: usize = items
            .iter()
            .map(|e| {
                160 + [&e.input, &e.output, &e.raw]
                    .iter()
                    .map(|r| r.as_ref().map_or(4, |r| r.get().len()))
                    .sum::<usize>()
            })
            .sum();
        let mut json = Vec::with_capacity(size + 2);
        let mut spans = Vec::with_capacity(items.len());
        let mut completed_us = Vec::with_capacity(items.len());
        let mut within_depth = true;
        json.push(b'[');
        for (i, e) in items.iter().enumerate() {
            if i > 0 {
                json.push(b',');
            }
            let start = json.len();
            e.write_json(&mut json);
            spans.push((start, json.len()));
            completed_us.push(e.completed_us);
            within_depth = within_depth
                && [&e.input, &e.output, &e.raw].iter().all(|r| {
                    r.as_ref()
                        .is_none_or(|r| nesting_at_most(r.get(), MAX_JSON_DEPTH))
                });
        }
        json.push(b']');
        EnvelopePage {
            json,
            spans,
            completed_us,
            within_depth,
        }
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Envelope `i` as JSON text (one line of `to_jsonl`).
    pub fn text(&self, i: usize) -> &[u8] {
        let (start, end) = self.spans[i];
        &self.json[start..end]
    }

    /// The page as a list of dicts by one `orjson.loads`, when orjson may read it and does; `None` sends the
    /// page to labelport's own decoder, envelope by envelope (`envelope`).
    pub fn fast<'py>(&mut self, py: Python<'py>) -> Option<Bound<'py, PyList>> {
        let list = self.orjson(py);
        ROADS[usize::from(list.is_none())].fetch_add(1, Ordering::Relaxed);
        list
    }

    fn orjson<'py>(&mut self, py: Python<'py>) -> Option<Bound<'py, PyList>> {
        if !self.within_depth || !FAST_PAGES.load(Ordering::Relaxed) {
            return None;
        }
        let loads = orjson_loads(py)?;
        // A read-only memoryview of the page's own buffer, not a copy: orjson reads it during the call and
        // keeps nothing of it (its strings are its own), and the view is released before the page can drop.
        // SAFETY: the pointer and length are `self.json`'s, which outlives the view (released below, under
        // the GIL, before this borrow of `self` ends); PyMemoryView_FromMemory is in the stable ABI.
        let view = unsafe {
            Bound::from_owned_ptr_or_opt(
                py,
                pyo3::ffi::PyMemoryView_FromMemory(
                    self.json.as_ptr() as *mut std::os::raw::c_char,
                    self.json.len() as pyo3::ffi::Py_ssize_t,
                    PYBUF_READ,
                ),
            )
        };
        let Some(view) = view else {
            PyErr::take(py);
            return None;
        };
        let decoded = loads.call1((&view,));
        // A view still referenced elsewhere refuses to release: then the buffer must not go. Never so with
        // orjson, which keeps no reference; were it so, that buffer is leaked (the page goes on with a copy) rather
        // than freed under a live view.
        if view.call_method0("release").is_err() {
            PyErr::take(py);
            let copy = self.json.clone();
            std::mem::forget(std::mem::replace(&mut self.json, copy));
            return None;
        }
        let list = decoded.ok()?.cast_into::<PyList>().ok()?;
        (list.len() == self.spans.len()).then_some(list)
    }

    /// Envelope `i` by labelport's own decoder: a `VendorError` (`bad_response`) for a value it does not read.
    pub fn envelope<'py>(&self, py: Python<'py>, i: usize) -> PyResult<Bound<'py, PyDict>> {
        // The text was written by serde_json from Rust strings: UTF-8 by construction.
        let text = std::str::from_utf8(self.text(i))
            .map_err(|e| super::errors::to_py_err(Error::internal(&e.to_string())))?;
        Ok(decode_envelope(py, text)?)
    }
}

/// `PyBUF_READ` (Python's `memoryobject.h`): a read-only view.
const PYBUF_READ: std::os::raw::c_int = 0x100;

/// Whether pages may go through orjson (`_set_fast_pages`): on, unless a test compares both roads.
static FAST_PAGES: AtomicBool = AtomicBool::new(true);

/// Pages read by orjson (0) and by labelport's own decoder (1), since the process started.
static ROADS: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// `orjson.loads`, imported once; `None` when orjson is not installed.
fn orjson_loads(py: Python<'_>) -> Option<&Bound<'_, PyAny>> {
    static LOADS: PyOnceLock<Option<Py<PyAny>>> = PyOnceLock::new();
    LOADS
        .get_or_init(py, || {
            py.import("orjson")
                .and_then(|m| m.getattr("loads"))
                .ok()
                .map(Bound::unbind)
        })
        .as_ref()
        .map(|f| f.bind(py))
}

/// Turns the orjson road off (`False`) or on again, and says whether it was on: for tests that check both
/// roads give the same objects. Private (`labelport._labelport._set_fast_pages`).
#[pyfunction]
pub fn _set_fast_pages(on: bool) -> bool {
    FAST_PAGES.swap(on, Ordering::Relaxed)
}

/// `(pages read by orjson, pages read by labelport's own decoder)` so far: for tests that check which road a
/// page took. Private (`labelport._labelport._fast_pages_counts`).
#[pyfunction]
pub fn _fast_pages_counts() -> (u64, u64) {
    (
        ROADS[0].load(Ordering::Relaxed),
        ROADS[1].load(Ordering::Relaxed),
    )
}

/// Whether `orjson` is importable here (the road results take when it is).
#[pyfunction]
pub fn _fast_pages_available(py: Python<'_>) -> bool {
    orjson_loads(py).is_some()
}
