//! `AsyncStream`: the async face of a results stream, read page by page from the same page stream as the
//! sync `ResultStream`, with the same exports.

use super::async_bridge::{spawn_py, Ready};
use super::envelope_pages::EnvelopePage;
use super::errors::to_py_err;
use super::faces::stream_exports;
use super::json::{json_to_py, GcPause};
use super::results::{call_frames, check_progress, StreamProgress};
use super::runtime::no_panic;
use crate::engine::stream::PageStream;
use crate::vendors::{format_rfc3339_us, Envelope};
use parking_lot::Mutex;
use pyo3::exceptions::PyStopAsyncIteration;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use serde_json::value::RawValue;
use std::collections::VecDeque;
use std::sync::Arc;

pub(super) enum Pages {
    Envelopes(PageStream<Envelope>),
    Raw(PageStream<Box<RawValue>>),
}

impl Pages {
    /// The next page as Python objects, each with its completion time (for the watermark).
    async fn next_py_page(&mut self) -> Option<PyResult<Vec<(Py<PyAny>, Option<i64>)>>> {
        let converted = match self {
            Pages::Envelopes(s) => s.next_page().await?.and_then(|items| {
                // Written as JSON here, on the runtime thread, then read as the sync stream reads a page.
                let mut page = EnvelopePage::write(items)?;
                Ok(Python::attach(|py| {
                    let _pause = GcPause::new(py);
                    let fast = page.fast(py);
                    (0..page.len())
                        .map(|i| {
                            let item = match &fast {
                                Some(list) => list.get_item(i)?,
                                None => page.envelope(py, i)?.into_any(),
                            };
                            Ok((item.unbind(), page.completed_us[i]))
                        })
                        .collect::<PyResult<Vec<_>>>()
                }))
            }),
            Pages::Raw(s) => s.next_page().await?.map(|items| {
                Python::attach(|py| {
                    items
                        .iter()
                        .map(|r| json_to_py(py, r.get()).map(|o| (o.unbind(), None)))
                        .collect::<PyResult<Vec<_>>>()
                })
            }),
        };
        // A page that does not convert keeps its own error (a VendorError for JSON nested too deep).
        Some(converted.unwrap_or_else(|e| Err(to_py_err(e))))
    }
}

struct StreamState {
    buffer: VecDeque<(Py<PyAny>, Option<i64>)>,
    watermark_us: Option<i64>,
    /// Results and records streams only (`None` for request pages).
    progress: Option<StreamProgress>,
}

impl StreamState {
    fn take(&mut self) -> Option<Py<PyAny>> {
        let (obj, us) = self.buffer.pop_front()?;
        if let Some(us) = us {
            self.watermark_us = Some(self.watermark_us.map_or(us, |w| w.max(us)));
        }
        Some(obj)
    }
}

/// `async for` over results, records or request pages: one await per page.
#[pyclass(module = "labelport")]
pub struct AsyncStream {
    pages: Arc<tokio::sync::Mutex<Option<Pages>>>,
    state: Arc<Mutex<StreamState>>,
}

impl AsyncStream {
    pub(super) fn new(pages: Pages, since_us: Option<i64>) -> Self {
        AsyncStream {
            pages: Arc::new(tokio::sync::Mutex::new(Some(pages))),
            state: Arc::new(Mutex::new(StreamState {
                buffer: VecDeque::new(),
                watermark_us: since_us,
                progress: None,
            })),
        }
    }

    pub(super) fn with_progress(self, setting: Option<Py<PyAny>>) -> Self {
        self.state.lock().progress = Some(StreamProgress::new(setting));
        self
    }

    /// Moves or closes the progress display (the GIL taken briefly, on a runtime thread).
    fn show(state: &Mutex<StreamState>, arrived: Option<u64>, ok: bool) -> PyResult<()> {
        Python::attach(|py| {
            let mut st = state.lock();
            match (st.progress.as_mut(), arrived) {
                (Some(p), Some(n)) => p.advance(py, n),
                (Some(p), None) => p.close(py, ok),
                (None, _) => Ok(()),
            }
        })
    }

    /// Calls the async export `labelport._frames.ato_<kind>` (the exports written by `stream_exports!`). Its
    /// `progress=` (checked here) becomes this stream's, which moves as pages arrive: the same display a sync
    /// export shows.
    fn export<'py>(
        slf: Bound<'py, Self>,
        kind: &str,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let kwargs = kwargs.map(|k| k.copy()).transpose()?;
        if let Some(k) = &kwargs {
            if let Some(p) = k.get_item("progress")? {
                k.del_item("progress")?;
                let setting = check_progress(Some(&p))?;
                let me = slf.borrow();
                let mut state = me.state.lock();
                match state.progress.as_mut() {
                    Some(progress) => progress.retarget(setting),
                    None => state.progress = Some(StreamProgress::new(setting)),
                }
            }
        }
        call_frames(
            slf.into_any(),
            &format!("ato_{kind}"),
            args,
            kwargs.as_ref(),
        )
    }

    /// An awaitable of the items left: every one (`all`), or those of the next page that has any (`None` at
    /// the end).
    fn drain<'py>(&self, py: Python<'py>, all: bool) -> PyResult<Bound<'py, PyAny>> {
        let (pages, state) = (self.pages.clone(), self.state.clone());
        spawn_py(py, async move {
            let mut out = Vec::new();
            loop {
                while let Some(obj) = state.lock().take() {
                    out.push(obj);
                }
                let enough = !all && !out.is_empty();
                if enough || !AsyncStream::fill(pages.clone(), state.clone()).await? {
                    break;
                }
            }
            Python::attach(|py| match out.is_empty() && !all {
                true => Ok(py.None()),
                false => Ok(PyList::new(py, out)?.into_any().unbind()),
            })
        })
    }

    /// Fetches pages until one has items; `None` at the end.
    async fn fill(
        pages: Arc<tokio::sync::Mutex<Option<Pages>>>,
        state: Arc<Mutex<StreamState>>,
    ) -> PyResult<bool> {
        let mut guard = pages.lock().await;
        loop {
            let Some(p) = guard.as_mut() else {
                return Ok(false);
            };
            match p.next_py_page().await {
                None => {
                    *guard = None;
                    AsyncStream::show(&state, None, true)?;
                    return Ok(false);
                }
                Some(Err(e)) => {
                    *guard = None;
                    AsyncStream::show(&state, None, false)?;
                    return Err(e);
                }
                Some(Ok(items)) if items.is_empty() => continue,
                Some(Ok(items)) => {
                    let n = items.len() as u64;
                    state.lock().buffer.extend(items);
                    AsyncStream::show(&state, Some(n), true)?;
                    return Ok(true);
                }
            }
        }
    }
}

stream_exports! {
AsyncStream {
    fn __aiter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        no_panic(|| {
            if let Some(obj) = self.state.lock().take() {
                return Ok(Bound::new(
                    py,
                    Ready {
                        value: Mutex::new(Some(obj)),
                    },
                )?
                .into_any());
            }
            let (pages, state) = (self.pages.clone(), self.state.clone());
            spawn_py(py, async move {
                if !AsyncStream::fill(pages, state.clone()).await? {
                    return Err(PyStopAsyncIteration::new_err(()));
                }
                let obj = state.lock().take();
                obj.ok_or_else(|| PyStopAsyncIteration::new_err(()))
            })
        })
    }

    /// The greatest completion time handed out so far (RFC 3339): pass it as `since=` next time.
    #[getter]
    fn watermark(&self) -> Option<String> {
        self.state.lock().watermark_us.map(format_rfc3339_us)
    }

    /// Every remaining item, as a list (a coroutine).
    fn to_list<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        no_panic(|| self.drain(py, true))
    }

    /// The remaining items of the next page that has any, as a list; `None` at the end (a coroutine). What the
    /// async exports in `labelport._frames` read, so a file is written page by page.
    fn _next_page<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        no_panic(|| self.drain(py, false))
    }

    /// Writes the remaining items as JSON lines to `path` page by page (a coroutine); returns the count.
    #[pyo3(signature = (*args, **kwargs), text_signature = "($self, path)")]
    fn to_jsonl<'py>(
        slf: Bound<'py, Self>,
        args: &Bound<'py, PyTuple>,
        kwargs: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        no_panic(|| AsyncStream::export(slf, "jsonl", args, kwargs))
    }

    /// Stops fetching.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        no_panic(|| {
            if let Ok(mut guard) = self.pages.try_lock() {
                *guard = None;
            }
            let mut st = self.state.lock();
            st.buffer.clear();
            match st.progress.as_mut() {
                Some(p) => p.close(py, false),
                None => Ok(()),
            }
        })
    }
}
}
