//! Results by page range: how readers on several machines (Spark tasks, Dask partitions) share one batch's
//! results. `batch.result_pages()` says how the results split; `batch.results(pages=(start, stop))` reads one
//! range.

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyRange, PyRangeMethods};

use super::core::{parse_since, ClientInner};
use super::errors::{invalid, to_py_err};
use crate::engine::stream::PageStream;
use crate::vendors::{Envelope, PagePlan, PageRange, ResultQuery};

/// `pages=`: a `(start, stop)` tuple of 0-based page indexes (`stop` exclusive, `None` for "to the end"), or a
/// `range` with step 1.
pub(super) fn parse_pages(pages: &Bound<'_, PyAny>) -> PyResult<PageRange> {
    let bad = || {
        invalid(
            "pages must be (start, stop) page indexes (0-based, stop exclusive or None) or a range",
            "pages",
        )
    };
    let (start, stop): (i64, Option<i64>) = if let Ok(r) = pages.cast::<PyRange>() {
        if r.step()? != 1 {
            return Err(bad());
        }
        (r.start()? as i64, Some(r.stop()? as i64))
    } else {
        pages.extract().map_err(|_| bad())?
    };
    if start < 0 || stop.is_some_and(|s| s < start) {
        return Err(bad());
    }
    Ok(PageRange {
        start: start as u64,
        stop: stop.map(|s| s as u64),
    })
}

/// `batch.results(pages=...)`: the results on those pages only, in the order of `batch.results()`.
pub(super) fn results_range(
    client: &ClientInner,
    batch_id: &str,
    pages: &Bound<'_, PyAny>,
    since: Option<&Bound<'_, PyAny>>,
    consumer: Option<&str>,
    include_raw: bool,
) -> PyResult<PageStream<Envelope>> {
    if since.is_some_and(|s| !s.is_none()) || consumer.is_some() {
        return Err(invalid(
            "pages= reads a range of every finished result: it does not combine with since= or consumer=",
            "pages",
        ));
    }
    let range = parse_pages(pages)?;
    client
        .adapter()?
        .results_range(batch_id, range, include_raw)
        .map_err(to_py_err)
}

/// `batch.result_pages()` (sync and async) as Python sees it: `{"total", "page_size", "pages"}`, or `None`
/// where the vendor cannot fetch results by page.
pub(super) fn plan_to_py(py: Python<'_>, plan: Option<PagePlan>) -> PyResult<Bound<'_, PyAny>> {
    let Some(plan) = plan else {
        return Ok(py.None().into_bound(py));
    };
    let d = PyDict::new(py);
    d.set_item("total", plan.total)?;
    d.set_item("page_size", plan.page_size)?;
    d.set_item("pages", plan.pages())?;
    Ok(d.into_any())
}

/// The page stream behind `results()` (sync and async), with the watermark it starts from: a range of pages
/// (`pages=`), by completion time, or by a vendor-kept consumer cursor.
pub(super) fn results_stream(
    client: &ClientInner,
    batch_id: &str,
    since: Option<&Bound<'_, PyAny>>,
    include_raw: bool,
    consumer: Option<&str>,
    pages: Option<&Bound<'_, PyAny>>,
) -> PyResult<(
    crate::engine::stream::PageStream<crate::vendors::Envelope>,
    Option<i64>,
)> {
    if let Some(pages) = pages.filter(|p| !p.is_none()) {
        let stream =
            super::pages::results_range(client, batch_id, pages, since, consumer, include_raw)?;
        return Ok((stream, None));
    }
    let since_us = parse_since(since)?;
    let adapter = client.adapter()?;
    match consumer {
        Some(_) if since_us.is_some() => Err(invalid(
            "pass since= or consumer=, not both: a consumer's cursor already says where to start",
            "consumer",
        )),
        Some(c) => Ok((
            adapter
                .consumer_results(batch_id, c, include_raw)
                .map_err(to_py_err)?,
            None,
        )),
        None => {
            let query = ResultQuery {
                batch_id,
                since_us,
                include_raw,
            };
            Ok((adapter.results(query), since_us))
        }
    }
}
