//! Lazy iterators over pages: results and records as envelope dicts, and raw items for `client.request`.

use std::collections::VecDeque;
use std::io::Write;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyList, PyTuple};
use serde_json::value::RawValue;

use super::args;
use super::envelope_pages::EnvelopePage;
use super::errors::to_py_err;
use super::faces::stream_exports;
use super::json::{json_to_py, GcPause};
use super::runtime::{self, block_on_borrowed, no_panic};
use crate::engine::stream::{MappedPages, PageStream};
use crate::engine::{Error, ErrorKind};
use crate::vendors::{format_rfc3339_us, Envelope};

/// Waits for the next page with the GIL released; `None` at the end.
fn next_page<T: Send + 'static>(
    py: Python<'_>,
    stream: &mut Option<PageStream<T>>,
) -> PyResult<Option<Vec<T>>> {
    let Some(s) = stream.as_mut() else {
        return Ok(None);
    };
    match block_on_borrowed(py, s.next_page())? {
        Some(Ok(items)) => Ok(Some(items)),
        Some(Err(e)) => {
            *stream = None;
            Err(to_py_err(e))
        }
        None => {
            *stream = None;
            Ok(None)
        }
    }
}

/// Calls `labelport._frames.<name>(stream, *args, **kwargs)`: DataFrames and files are built in Python.
pub(super) fn call_frames<'py>(
    stream: Bound<'py, PyAny>,
    name: &str,
    args: &Bound<'py, PyTuple>,
    kwargs: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = stream.py();
    let mut all = vec![stream];
    all.extend(args.iter());
    py.import("labelport._frames")?
        .getattr(name)?
        .call(PyTuple::new(py, all)?, kwargs)
}

/// Checks a `progress=` argument where it is given, so a typo fails at the call, not at the first page.
pub(super) fn check_progress(progress: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Py<PyAny>>> {
    match progress {
        None => Ok(None),
        Some(p) if p.is_none() => Ok(None),
        Some(p) if p.is_instance_of::<PyBool>() || p.is_callable() => Ok(Some(p.clone().unbind())),
        Some(p) => Err(to_py_err(
            Error::invalid(format!(
                "progress must be True, False, None or a callable, not {}",
                p.get_type().name()?
            ))
            .field("progress"),
        )),
    }
}

/// The progress display of a stream consumed item by item: made on the first page (by
/// `labelport._progress.counter`), moved once per page, closed at the end. Costs nothing per item.
pub(super) struct StreamProgress {
    /// `progress=` as given (`None`: `labelport.config.progress`).
    setting: Option<Py<PyAny>>,
    display: Option<Py<PyAny>>,
    /// False once the display was made (or found unwanted), or an export took the progress over.
    pending: bool,
    delivered: u64,
}

impl StreamProgress {
    pub(super) fn new(setting: Option<Py<PyAny>>) -> Self {
        StreamProgress {
            setting,
            display: None,
            pending: true,
            delivered: 0,
        }
    }

    fn tick(&mut self, py: Python<'_>) -> PyResult<()> {
        if self.pending {
            self.pending = false;
            let display = py.import("labelport._progress")?.call_method1(
                "counter",
                (self.setting.as_ref().map(|s| s.bind(py)), "results"),
            )?;
            self.display = (!display.is_none()).then(|| display.unbind());
        }
        if let Some(d) = &self.display {
            d.bind(py).call_method1("update", (self.delivered,))?;
        }
        Ok(())
    }

    /// An export's own `progress=` replaces the stream's, unless the stream's display is already showing.
    pub(super) fn retarget(&mut self, setting: Option<Py<PyAny>>) {
        if self.pending {
            self.setting = setting;
        }
    }

    /// `n` more items arrived (an async stream counts whole pages as they come).
    pub(super) fn advance(&mut self, py: Python<'_>, n: u64) -> PyResult<()> {
        self.tick(py)?;
        self.delivered += n;
        self.tick(py)
    }

    pub(super) fn close(&mut self, py: Python<'_>, ok: bool) -> PyResult<()> {
        self.pending = false;
        match self.display.take() {
            Some(d) => {
                let d = d.bind(py);
                d.call_method1("update", (self.delivered,))?;
                close_display(d, ok)
            }
            None => Ok(()),
        }
    }
}

fn close_display(d: &Bound<'_, PyAny>, ok: bool) -> PyResult<()> {
    if d.hasattr("close")? {
        d.call_method1("close", (ok,))?;
    }
    Ok(())
}

/// Results (or records) of a batch, fetched page by page as you iterate. Dropping it stops the fetching.
#[pyclass(module = "labelport")]
pub struct ResultStream {
    /// Pages written as JSON on the runtime's threads (`EnvelopePage`), in order.
    stream: Option<MappedPages<EnvelopePage>>,
    /// The page being handed out: the page, its dicts when orjson read it whole, the next envelope's index.
    page: Option<(EnvelopePage, Option<Py<PyList>>, usize)>,
    watermark_us: Option<i64>,
    progress: StreamProgress,
}

impl ResultStream {
    pub fn new(
        stream: PageStream<Envelope>,
        since_us: Option<i64>,
        progress: Option<Py<PyAny>>,
    ) -> Self {
        ResultStream {
            stream: Some(stream.map_pages(&runtime::handle(), EnvelopePage::write)),
            page: None,
            watermark_us: since_us,
            progress: StreamProgress::new(progress),
        }
    }

    /// Makes the next page the current one (`false` at the end of the stream). `decode`: read it whole with
    /// orjson now (when iterating or listing; `to_jsonl` only wants the text).
    fn next_page(&mut self, py: Python<'_>, decode: bool) -> PyResult<bool> {
        self.page = None;
        let Some(s) = self.stream.as_mut() else {
            return Ok(false);
        };
        self.progress.tick(py)?;
        let page = match block_on_borrowed(py, s.next_page()) {
            Ok(Some(Ok(page))) => Ok(page),
            // The vendor's error ends the stream; an interrupt (Ctrl-C while waiting) leaves it to resume.
            Ok(Some(Err(e))) => {
                self.stream = None;
                Err(to_py_err(e))
            }
            Ok(None) => {
                self.stream = None;
                self.progress.close(py, true)?;
                return Ok(false);
            }
            Err(e) => Err(e),
        };
        let mut page = match page {
            Ok(page) => page,
            Err(e) => {
                self.progress.close(py, false)?;
                return Err(e);
            }
        };
        let fast = if decode {
            // The page's dicts hold no cycles: no collection while orjson builds them.
            let _pause = GcPause::new(py);
            page.fast(py).map(Bound::unbind)
        } else {
            None
        };
        self.page = Some((page, fast, 0));
        Ok(true)
    }

    /// The index of the next envelope of the current page, counted as delivered (watermark and progress), or
    /// `None` when the page is used up.
    fn take_index(&mut self) -> Option<usize> {
        let (page, _, next) = self.page.as_mut()?;
        if *next >= page.len() {
            return None;
        }
        let i = *next;
        *next += 1;
        if let Some(us) = page.completed_us[i] {
            self.watermark_us = Some(self.watermark_us.map_or(us, |w| w.max(us)));
        }
        self.progress.delivered += 1;
        Some(i)
    }

    /// Envelope `i` of the current page as a dict: from orjson's list, or by labelport's own decoder.
    fn item<'py>(&self, py: Python<'py>, i: usize) -> PyResult<Bound<'py, PyAny>> {
        let (page, fast, _) = self.page.as_ref().expect("a current page");
        match fast {
            Some(list) => list.bind(py).get_item(i),
            None => page.envelope(py, i).map(Bound::into_any),
        }
    }

    /// The next result, `None` at the end.
    fn next_item<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        loop {
            if let Some(i) = self.take_index() {
                return self.item(py, i).map(Some);
            }
            if !self.next_page(py, true)? {
                return Ok(None);
            }
        }
    }

    /// Appends every remaining result to `list`: whole pages in one slice assignment where orjson read them.
    fn drain_into(&mut self, py: Python<'_>, list: &Bound<'_, PyList>) -> PyResult<()> {
        loop {
            if let Some((page, Some(fast), 0)) = self.page.as_ref() {
                let n = page.len();
                let end = list.len();
                // SAFETY: both are lists and the GIL is held; PyList_SetSlice is in the stable ABI.
                let rc = unsafe {
                    pyo3::ffi::PyList_SetSlice(
                        list.as_ptr(),
                        end as pyo3::ffi::Py_ssize_t,
                        end as pyo3::ffi::Py_ssize_t,
                        fast.as_ptr(),
                    )
                };
                if rc != 0 {
                    return Err(PyErr::fetch(py));
                }
                for _ in 0..n {
                    self.take_index();
                }
            }
            while let Some(i) = self.take_index() {
                list.append(self.item(py, i)?)?;
            }
            if !self.next_page(py, true)? {
                return Ok(());
            }
        }
    }

    /// An export shows its own progress: it gets this stream's `progress=` unless given one, and the stream
    /// shows none of its own.
    fn export_kwargs<'py>(
        slf: &Bound<'py, Self>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        let py = slf.py();
        let mut me = slf.borrow_mut();
        me.progress.pending = false;
        let Some(setting) = me.progress.setting.as_ref() else {
            return Ok(kwargs.cloned());
        };
        let out = match kwargs {
            Some(k) => k.copy()?,
            None => PyDict::new(py),
        };
        if !out.contains(intern!(py, "progress"))? {
            out.set_item(intern!(py, "progress"), setting.bind(py))?;
        }
        Ok(Some(out))
    }

    /// `labelport._frames.to_<kind>(stream, ...)`: the exports written by `stream_exports!`.
    fn export<'py>(
        slf: Bound<'py, Self>,
        kind: &str,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let kwargs = Self::export_kwargs(&slf, kwargs)?;
        call_frames(slf.into_any(), &format!("to_{kind}"), args, kwargs.as_ref())
    }
}

impl Drop for ResultStream {
    fn drop(&mut self) {
        if self.progress.display.is_some() {
            // Left before its end (a `break`): the display says so rather than hanging open.
            Python::attach(|py| {
                // Dropped while an exception is on its way out (`batch.results().to_list()` failing): closing
                // the display runs Python code, which would lose it ("error return without exception set").
                let pending = PyErr::take(py);
                let _ = self.progress.close(py, false);
                if let Some(e) = pending {
                    e.restore(py);
                }
            });
        }
    }
}

stream_exports! {
ResultStream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        no_panic(|| self.next_item(py))
    }

    /// The greatest completion time seen so far (RFC 3339): pass it as `since=` next time.
    #[getter]
    fn watermark(&self) -> Option<String> {
        self.watermark_us.map(format_rfc3339_us)
    }

    /// Every remaining item in a list.
    #[allow(clippy::wrong_self_convention)] // Python's naming: it drains the stream, hence `&mut self`
    fn to_list<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        no_panic(|| {
            let _pause = GcPause::new(py);
            let list = PyList::empty(py);
            self.drain_into(py, &list)?;
            Ok(list)
        })
    }

    /// Writes the remaining items as JSON lines to `path`, straight from the vendor's JSON; returns the count.
    #[allow(clippy::wrong_self_convention)] // as `to_list`
    fn to_jsonl(
        &mut self,
        py: Python<'_>,
        #[pyo3(from_py_with = args::file_path)] path: String,
    ) -> PyResult<u64> {
        no_panic(|| {
            let path = std::path::PathBuf::from(path);
            let file = std::fs::File::create(&path).map_err(|e| {
                to_py_err(
                    Error::invalid(format!("cannot write {}: {e}", path.display())).field("path"),
                )
            })?;
            let mut out = std::io::BufWriter::new(file);
            let mut n = 0u64;
            let io_err = |e: std::io::Error| {
                to_py_err(Error::new(
                    ErrorKind::InvalidInput,
                    format!("writing {}: {e}", path.display()),
                ))
            };
            loop {
                while let Some(i) = self.take_index() {
                    let (page, _, _) = self.page.as_ref().expect("a current page");
                    out.write_all(page.text(i)).map_err(io_err)?;
                    out.write_all(b"\n").map_err(io_err)?;
                    n += 1;
                }
                if !self.next_page(py, false)? {
                    break;
                }
            }
            out.flush().map_err(io_err)?;
            Ok(n)
        })
    }

    /// Stops fetching; later iteration ends at once.
    fn close(&mut self, py: Python<'_>) -> PyResult<()> {
        no_panic(|| {
            self.stream = None;
            self.page = None;
            self.progress.close(py, false)
        })
    }

    fn __repr__(&self) -> String {
        let state = if self.stream.is_some() || self.page.is_some() {
            "open"
        } else {
            "finished"
        };
        format!("<labelport.ResultStream {state}>")
    }
}
}

/// Items of a paginated `client.request(..., paginate=True)`.
#[pyclass(module = "labelport")]
pub struct RequestPages {
    stream: Option<PageStream<Box<RawValue>>>,
    buffer: VecDeque<Box<RawValue>>,
}

impl RequestPages {
    pub fn new(stream: PageStream<Box<RawValue>>) -> Self {
        RequestPages {
            stream: Some(stream),
            buffer: VecDeque::new(),
        }
    }
}

#[pymethods]
impl RequestPages {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        no_panic(|| loop {
            if let Some(item) = self.buffer.pop_front() {
                return Ok(Some(json_to_py(py, item.get())?));
            }
            match next_page(py, &mut self.stream)? {
                Some(items) => self.buffer.extend(items),
                None => return Ok(None),
            }
        })
    }
}
