//! One Python-facing operation, written once as async Rust: the sync face blocks on it (GIL released, Ctrl-C
//! answered), the async face awaits it. Both faces' methods are generated from one definition by
//! `two_faces!` (faces.rs), which also puts every body under the panic guard.
//!
//! An operation's Python steps (reading the next chunk of records, moving a progress bar, calling a user's
//! callback) go through `OnPython`: on the sync face they run on the thread that called, between its waits,
//! as the user's own code does (a `sqlite3` cursor, for one, refuses any other thread); on the async face they
//! run where the future is polled, with the GIL taken for the step.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use parking_lot::Mutex;
use pyo3::prelude::*;

use super::async_bridge::spawn_py;
use super::errors::to_py_err;
use super::runtime::{handle, stopped_at_exit, SIGNAL_POLL};
use crate::engine::stream::AbortOnDrop;
use crate::engine::{Error, ErrorKind};

/// Which face called: what the operation's value becomes (`Batch` or `AsyncBatch`, a `ResultStream` or an
/// `AsyncStream`) depends on it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Face {
    Sync,
    Async,
}

impl Face {
    pub(super) fn of(asynchronous: bool) -> Self {
        if asynchronous {
            Face::Async
        } else {
            Face::Sync
        }
    }
}

/// A step that needs the GIL, sent to the thread that blocks on a sync operation.
type PyStep = Box<dyn FnOnce(Python<'_>) + Send>;

enum Msg {
    Step(PyStep),
    /// The operation ended: its outcome is in the slot.
    Done,
}

/// Where an operation's Python steps run (see the module's comment).
#[derive(Clone)]
pub(super) struct OnPython(Option<mpsc::Sender<Msg>>);

impl OnPython {
    /// Runs `step` with the GIL: on the calling thread of a sync operation, else here.
    pub(super) async fn run<R: Send + 'static>(
        &self,
        step: impl FnOnce(Python<'_>) -> PyResult<R> + Send + 'static,
    ) -> PyResult<R> {
        let Some(tx) = &self.0 else {
            return Python::attach(step);
        };
        let (answer, answered) = tokio::sync::oneshot::channel();
        let step: PyStep = Box::new(move |py| {
            let _ = answer.send(step(py));
        });
        if tx.send(Msg::Step(step)).is_err() {
            return Err(gone());
        }
        answered.await.map_err(|_| gone())?
    }
}

/// The caller stopped waiting (Ctrl-C): the operation is being dropped anyway.
fn gone() -> PyErr {
    to_py_err(
        Error::new(ErrorKind::Internal, "the calling thread stopped waiting").code("internal"),
    )
}

type Work<T> = Box<dyn FnOnce(OnPython) -> BoxFuture<'static, PyResult<T>> + Send>;
type IntoPy<T> =
    Box<dyn for<'py> FnOnce(Python<'py>, T, Face) -> PyResult<Bound<'py, PyAny>> + Send>;

/// The work of an operation and how its value becomes a Python object.
pub(super) struct Op<T> {
    work: Work<T>,
    into_py: IntoPy<T>,
}

impl<T: Send + 'static> Op<T> {
    /// An operation whose work needs no Python: an adapter call.
    pub(super) fn new<F, C>(work: F, into_py: C) -> Self
    where
        F: Future<Output = crate::engine::Result<T>> + Send + 'static,
        C: for<'py> FnOnce(Python<'py>, T, Face) -> PyResult<Bound<'py, PyAny>> + Send + 'static,
    {
        Op {
            work: Box::new(move |_| async move { work.await.map_err(to_py_err) }.boxed()),
            into_py: Box::new(into_py),
        }
    }

    /// An operation with Python steps in its work (through the `OnPython` it is given).
    pub(super) fn with_python<W, F, C>(work: W, into_py: C) -> Self
    where
        W: FnOnce(OnPython) -> F + Send + 'static,
        F: Future<Output = PyResult<T>> + Send + 'static,
        C: for<'py> FnOnce(Python<'py>, T, Face) -> PyResult<Bound<'py, PyAny>> + Send + 'static,
    {
        Op {
            work: Box::new(move |python| work(python).boxed()),
            into_py: Box::new(into_py),
        }
    }
}

/// What a face does with an operation: return its value now, or an awaitable of it.
pub(super) trait Operation {
    fn run(self, py: Python<'_>, face: Face) -> PyResult<Bound<'_, PyAny>>;
}

impl<T: Send + 'static> Operation for Op<T> {
    fn run(self, py: Python<'_>, face: Face) -> PyResult<Bound<'_, PyAny>> {
        let Op { work, into_py } = self;
        match face {
            Face::Sync => {
                let value = block_on_op(py, work)?;
                into_py(py, value, Face::Sync)
            }
            Face::Async => spawn_py(py, async move {
                let value = work(OnPython(None)).await?;
                Python::attach(|py| into_py(py, value, Face::Async).map(Bound::unbind))
            }),
        }
    }
}

type Make = Box<dyn for<'py> FnOnce(Python<'py>, Face) -> PyResult<Bound<'py, PyAny>>>;

/// An operation with nothing to wait for (a results stream, made at once), whose value still depends on the
/// face: the async face returns it as it is, not as an awaitable. Also what an `Op` becomes where an operation
/// waits on one path and not on another (`request` with and without `paginate`).
pub(super) struct Now(Make);

impl Now {
    pub(super) fn new(
        make: impl for<'py> FnOnce(Python<'py>, Face) -> PyResult<Bound<'py, PyAny>> + 'static,
    ) -> Self {
        Now(Box::new(make))
    }
}

impl<T: Send + 'static> From<Op<T>> for Now {
    fn from(op: Op<T>) -> Self {
        Now::new(move |py, face| op.run(py, face))
    }
}

impl Operation for Now {
    fn run(self, py: Python<'_>, face: Face) -> PyResult<Bound<'_, PyAny>> {
        (self.0)(py, face)
    }
}

/// Runs `work` on the shared runtime and waits with the GIL released, running its Python steps here and
/// checking for signals every `SIGNAL_POLL`. On KeyboardInterrupt the work is dropped (aborted) and the
/// interrupt raised; a panic in it is an internal `LabelportError`.
fn block_on_op<T: Send + 'static>(py: Python<'_>, work: Work<T>) -> PyResult<T> {
    let (tx, rx) = mpsc::channel();
    let slot: Arc<Mutex<Option<PyResult<T>>>> = Arc::new(Mutex::new(None));
    let (done, outcome) = (tx.clone(), slot.clone());
    let fut = work(OnPython(Some(tx)));
    let _task = AbortOnDrop(handle().spawn(async move {
        let out = match AssertUnwindSafe(fut).catch_unwind().await {
            Ok(out) => out,
            Err(payload) => Err(to_py_err(Error::internal(&*payload))),
        };
        *outcome.lock() = Some(out);
        let _ = done.send(Msg::Done);
    }));
    // The receiver is only used by this thread; the mutex makes it Sync for `detach`.
    let rx = Mutex::new(rx);
    loop {
        match py.detach(|| rx.lock().recv_timeout(SIGNAL_POLL)) {
            Ok(Msg::Step(step)) => step(py),
            Ok(Msg::Done) => {
                return slot.lock().take().unwrap_or_else(|| Err(no_answer()));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => py.check_signals()?,
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err(no_answer()),
        }
    }
}

fn no_answer() -> PyErr {
    if stopped_at_exit() {
        return to_py_err(
            Error::new(
                ErrorKind::Internal,
                "the interpreter is exiting: labelport's runtime has stopped, so this call cannot run",
            )
            .code("interpreter_exiting"),
        );
    }
    to_py_err(
        Error::new(
            ErrorKind::Internal,
            "internal error in labelport: a background task ended without an answer; please report this \
             message to the labelport maintainers",
        )
        .code("internal"),
    )
}
