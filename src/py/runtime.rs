//! The one tokio runtime of the process, rebuilt after `fork()`, and blocking calls that release the GIL and
//! answer Ctrl-C.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pyo3::prelude::*;
use tokio::runtime::Handle;

use super::errors::to_py_err;
use crate::engine::Error;

/// How often a blocking call wakes up to let Python run signal handlers (Ctrl-C).
pub const SIGNAL_POLL: Duration = Duration::from_millis(100);

/// The runtime and the process that built it. Only this slot holds it: everything else takes a `Handle`
/// (`handle()`), so the runtime can be shut down at exit.
static RUNTIME: Mutex<Option<(u32, Arc<tokio::runtime::Runtime>)>> = Mutex::new(None);
/// The handle of the runtime stopped at interpreter exit (`_stop_runtime_at_exit`), and its process: from
/// then on `handle()` gives it, so a task spawned while or after it stops is dropped, never run on a new
/// runtime whose threads would enter a finalizing interpreter.
static STOPPED: Mutex<Option<(u32, Handle)>> = Mutex::new(None);

/// The shared runtime's handle: spawn on it, or block on it from a thread outside the runtime.
pub fn handle() -> Handle {
    let pid = std::process::id();
    if let Some((owner, stopped)) = STOPPED.lock().as_ref() {
        if *owner == pid {
            return stopped.clone();
        }
    }
    runtime().handle().clone()
}

/// Whether the runtime was stopped because the interpreter is exiting.
pub(super) fn stopped_at_exit() -> bool {
    matches!(STOPPED.lock().as_ref(), Some((owner, _)) if *owner == std::process::id())
}

/// How long the runtime's threads get, at interpreter exit, to finish what they are doing.
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// Stops the runtime when the interpreter exits (registered with `atexit` by the module, so it runs before
/// Python finalizes). A worker thread still finishing an async call then, such as handing its error to an
/// event loop that `asyncio.run` already closed, would enter Python while it finalizes and abort the process
/// ("PyGILState_Release: thread state ... must be current"; tests/test_runtime.py). Work not done within
/// `EXIT_GRACE` is dropped. A runtime still held by a call on another thread is left running.
#[pyfunction]
pub fn _stop_runtime_at_exit(py: Python<'_>) {
    let pid = std::process::id();
    let rt = match RUNTIME.lock().as_ref() {
        Some((owner, rt)) if *owner == pid => rt.clone(),
        _ => return,
    };
    *STOPPED.lock() = Some((pid, rt.handle().clone()));
    RUNTIME.lock().take();
    // A thread that looked before STOPPED was set may hold the runtime for a moment (inside `runtime()`).
    let mut rt = rt;
    for _ in 0..50 {
        match Arc::try_unwrap(rt) {
            Ok(owned) => {
                // Without the GIL, so a worker waiting for it can finish its step and stop.
                py.detach(|| owned.shutdown_timeout(EXIT_GRACE));
                return;
            }
            Err(shared) => {
                rt = shared;
                py.detach(|| std::thread::sleep(Duration::from_millis(1)));
            }
        }
    }
    *RUNTIME.lock() = Some((pid, rt));
    *STOPPED.lock() = None;
}

/// The shared runtime. An inherited runtime after `fork()` has no worker threads, so a child builds its own
/// (the parent's is leaked, not dropped: dropping would wait for threads that do not exist here).
fn runtime() -> Arc<tokio::runtime::Runtime> {
    let pid = std::process::id();
    let mut slot = RUNTIME.lock();
    if let Some((owner, rt)) = slot.as_ref() {
        if *owner == pid {
            return rt.clone();
        }
    }
    if let Some((_, stale)) = slot.take() {
        std::mem::forget(stale);
    }
    let rt = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(
                std::thread::available_parallelism()
                    .map(|n| n.get().clamp(2, 8))
                    .unwrap_or(2),
            )
            .thread_name("labelport-worker")
            .enable_all()
            .build()
            .expect("the tokio runtime could not start"),
    );
    *slot = Some((pid, rt.clone()));
    rt
}

/// Polls a borrowed future to completion on the shared runtime, GIL released, answering Ctrl-C. A panic while
/// polling is an internal `LabelportError` (the future is then dropped by the caller's error path).
pub fn block_on_borrowed<F: Future + Send>(py: Python<'_>, fut: F) -> PyResult<F::Output>
where
    F::Output: Send,
{
    let rt = handle();
    let mut fut = std::pin::pin!(fut);
    loop {
        let step = py.detach(|| {
            std::panic::catch_unwind(AssertUnwindSafe(|| {
                rt.block_on(async { tokio::time::timeout(SIGNAL_POLL, &mut fut).await })
            }))
        });
        match step {
            Ok(Ok(out)) => return Ok(out),
            Ok(Err(_)) => py.check_signals()?,
            Err(payload) => return Err(to_py_err(Error::internal(&*payload))),
        }
    }
}

/// Runs the body of a Python-facing function or method: a panic in it is an internal `LabelportError` (code
/// `internal`, asking for a bug report), not pyo3's `PanicException`, a BaseException that `except Exception`
/// in a user's pipeline would miss. Every `#[pymethods]` and `#[pyfunction]` returning `PyResult` runs its
/// body through this (tests/test_panics.py checks the sources); the others are plain field getters.
#[inline]
pub fn no_panic<T>(body: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    match std::panic::catch_unwind(AssertUnwindSafe(body)) {
        Ok(out) => out,
        Err(payload) => Err(to_py_err(Error::internal(&*payload))),
    }
}
