//! Internal, for tests only (tests/test_panics.py): panics set off on purpose inside each bridge between
//! Python and the runtime, each of which must reach Python as a `LabelportError` (code `internal`).

use pyo3::prelude::*;

use super::errors::to_py_err;
use super::op::{Face, Op, Operation};
use super::runtime::{block_on_borrowed, handle, no_panic};
use crate::engine::stream::PageStream;
use crate::engine::Error;

pub const DEBUG_PANIC: &str = "deliberate panic from _labelport._debug_panic";

/// An operation that panics in its work.
fn panicking_op() -> Op<()> {
    Op::new(async { panic!("{DEBUG_PANIC}") }, |py, (), _| {
        Ok(py.None().into_bound(py))
    })
}

/// Panics in its own body (`"body"`), inside a sync operation (`"sync"`), the results stream's bridge
/// (`"stream"`) or a page producer (`"producer"`).
#[pyfunction]
pub fn _debug_panic(py: Python<'_>, place: &str) -> PyResult<()> {
    no_panic(|| match place {
        "body" => panic!("{DEBUG_PANIC}"),
        "sync" => panicking_op().run(py, Face::Sync).map(|_| ()),
        "stream" => block_on_borrowed(py, async { panic!("{DEBUG_PANIC}") }),
        "producer" => {
            let mut pages =
                PageStream::<()>::spawn(&handle(), |_tx| async { panic!("{DEBUG_PANIC}") });
            match block_on_borrowed(py, pages.next_page())? {
                Some(Err(e)) => Err(to_py_err(e)),
                _ => Ok(()),
            }
        }
        other => Err(to_py_err(Error::invalid(format!(
            "unknown place {other:?}: body, sync, stream, producer"
        )))),
    })
}

/// An awaitable of an operation that panics; awaiting it must raise a `LabelportError`.
#[pyfunction]
pub fn _debug_panic_async(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    no_panic(|| panicking_op().run(py, Face::Async))
}
