//! The bridge between the runtime and asyncio: pyo3-async-runtimes on labelport's runtime, awaitables of
//! Rust futures (a panic inside one is a `LabelportError`), and an awaitable that is already done.

use std::cell::OnceCell;
use std::future::Future;
use std::pin::Pin;

use parking_lot::Mutex;
use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;
use pyo3_async_runtimes::{generic, TaskLocals};

use super::errors::to_py_err;
use super::runtime::{handle, no_panic};
use crate::engine::Error;

/// pyo3-async-runtimes on our runtime, so the async API survives `fork()` like the blocking one.
struct LabelportRuntime;

tokio::task_local! {
    static TASK_LOCALS: OnceCell<TaskLocals>;
}

impl generic::Runtime for LabelportRuntime {
    type JoinError = tokio::task::JoinError;
    type JoinHandle = tokio::task::JoinHandle<()>;

    fn spawn<F>(fut: F) -> Self::JoinHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        handle().spawn(fut)
    }

    fn spawn_blocking<F>(f: F) -> Self::JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        handle().spawn_blocking(f)
    }
}

impl generic::ContextExt for LabelportRuntime {
    fn scope<F, R>(locals: TaskLocals, fut: F) -> Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        let cell = OnceCell::new();
        cell.set(locals).expect("a new cell is empty");
        Box::pin(TASK_LOCALS.scope(cell, fut))
    }

    fn get_task_locals() -> Option<TaskLocals> {
        TASK_LOCALS
            .try_with(|c| c.get().cloned())
            .unwrap_or_default()
    }
}

/// A Python awaitable of `fut` on our runtime. A panic inside `fut` is an internal `LabelportError`, not
/// pyo3-async-runtimes' `RustPanic` (which is no `LabelportError`).
pub(super) fn spawn_py<F>(py: Python<'_>, fut: F) -> PyResult<Bound<'_, PyAny>>
where
    F: Future<Output = PyResult<Py<PyAny>>> + Send + 'static,
{
    generic::future_into_py::<LabelportRuntime, _, Py<PyAny>>(py, async move {
        match futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(fut)).await {
            Ok(out) => out,
            Err(payload) => Err(to_py_err(Error::internal(&*payload))),
        }
    })
}

/// An awaitable that is already done: what `__anext__` returns while a page is still being handed out,
/// so `async for` costs one await per page, not per record.
#[pyclass(module = "labelport")]
pub(super) struct Ready {
    pub(super) value: Mutex<Option<Py<PyAny>>>,
}

#[pymethods]
impl Ready {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<()> {
        no_panic(|| {
            let value = self.value.lock().take().unwrap_or_else(|| py.None());
            Err(PyStopIteration::new_err((value,)))
        })
    }
}
