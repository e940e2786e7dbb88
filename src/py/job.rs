//! `Job` and `AsyncJob`: one upload, and what the vendor did with it, on both faces from one list of
//! operations.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use super::args;
use super::core::{job_to_py, ClientInner, MIN_POLL_S};
use super::faces::two_faces;
use super::op::Op;
use crate::engine::runner::with_deadline;
use crate::vendors::wait::{job_deadline, job_poll_error, job_timed_out};
use crate::vendors::{Adapter, JobPhase, JobState};

/// Asks the vendor for the job's state while it runs, until it is no longer running (`until_done`) or once.
/// A wait ends at `timeout`, its polls' retry waits included; a single poll retries as any request does.
async fn poll(
    adapter: Arc<dyn Adapter>,
    shared: Arc<Mutex<JobState>>,
    vendor: &'static str,
    timeout: Option<f64>,
    poll_interval: f64,
    until_done: bool,
) -> crate::engine::Result<JobState> {
    let started = Instant::now();
    let deadline = job_deadline(started, timeout.filter(|_| until_done));
    loop {
        let current = shared.lock().clone();
        let fresh = if current.state == JobPhase::Running {
            with_deadline(deadline, adapter.job_status(&current))
                .await
                .map_err(|e| job_poll_error(e, || job_timed_out(&current, vendor, timeout)))?
        } else {
            current
        };
        *shared.lock() = fresh.clone();
        if fresh.state != JobPhase::Running || !until_done {
            return Ok(fresh);
        }
        if timeout.is_some_and(|t| started.elapsed().as_secs_f64() >= t) {
            return Err(job_timed_out(&fresh, vendor, timeout));
        }
        tokio::time::sleep(Duration::from_secs_f64(poll_interval.max(MIN_POLL_S))).await;
    }
}

fn poll_op(
    job: (&ClientInner, &Arc<Mutex<JobState>>),
    timeout: Option<f64>,
    poll_interval: f64,
    until_done: bool,
) -> PyResult<Op<JobState>> {
    let (client, shared) = job;
    let (adapter, shared, vendor) = (client.adapter()?, shared.clone(), client.vendor());
    Ok(Op::new(
        poll(adapter, shared, vendor, timeout, poll_interval, until_done),
        |py, state, _| Ok(job_to_py(py, &state)?.into_any()),
    ))
}

two_faces! {
    /// One upload, and what the vendor did with it.
    struct Job;
    /// One upload, and what the vendor did with it (coroutine methods).
    struct AsyncJob;
    { client: Arc<ClientInner>, state: Arc<Mutex<JobState>> }

    getters {
        /// The job id (the vendor's where it has one).
        #[getter]
        fn id(&self) -> String {
            self.state.lock().id.clone()
        }

        /// The id of the batch the job uploads into.
        #[getter]
        fn batch_id(&self) -> String {
            self.state.lock().batch_id.clone()
        }
    }

    shared {
        /// Records the vendor refused (with `on_error="collect"`): key, field, code, message.
        fn failures<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
            let s = self.state.lock().clone();
            let list = PyList::empty(py);
            for f in &s.failures {
                let d = PyDict::new(py);
                d.set_item("key", &f.key)?;
                d.set_item("field", &f.field)?;
                d.set_item("code", &f.code)?;
                d.set_item("message", &f.message)?;
                list.append(d)?;
            }
            Ok(list)
        }
    }

    ops {
        /// `{"state": "running" | "completed" | "failed", "done", "total", "failed", "skipped"}`, asked of the
        /// vendor while the job runs.
        fn status(&self, py) {
            poll_op((&self.client, &self.state), None, 0.0, false)
        }

        /// Waits until the vendor has ingested every record; raises `Timeout`.
        #[pyo3(signature = (timeout=None, *, poll_interval=1.0))]
        fn wait(
            &self,
            py,
            #[pyo3(from_py_with = args::wait_timeout)] timeout: Option<f64>,
            #[pyo3(from_py_with = args::poll_interval)] poll_interval: f64,
        ) {
            poll_op((&self.client, &self.state), timeout, poll_interval, true)
        }
    }

    sync_only {
        fn __repr__(&self) -> String {
            repr("Job", &self.state.lock())
        }
    }

    async_only {
        fn __repr__(&self) -> String {
            repr("AsyncJob", &self.state.lock())
        }
    }
}

fn repr(class: &str, s: &JobState) -> String {
    format!(
        "<labelport.{class} id={:?} batch_id={:?} total={} done={}>",
        s.id, s.batch_id, s.total, s.done
    )
}
