//! The work of `upload` on both faces: the records sent whole, or chunk by chunk (each chunk read from Python
//! through `OnPython`, and the part before it settled first), with the progress display moved as they go.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pyo3::prelude::*;

use super::core::close_progress;
use super::errors::to_py_err;
use super::op::OnPython;
use super::records::{merge_parts, UploadSource};
use crate::engine::Error;
use crate::vendors::wait::{settle, Settling};
use crate::vendors::{Adapter, BatchInfo, JobState, UploadOptions, UploadProgress, UploadRecord};

/// How often the progress display moves while records are sent.
const TICK: Duration = Duration::from_millis(100);

/// What an upload needs besides its records.
pub(super) struct Upload {
    pub adapter: Arc<dyn Adapter>,
    pub batch: BatchInfo,
    pub options: UploadOptions,
    /// The progress display (`labelport._progress.upload_bar`), if any.
    pub bar: Option<Arc<Py<PyAny>>>,
    /// `wait=True`: return once the vendor holds every record.
    pub wait: bool,
}

impl Upload {
    /// Sends `source`, closes the display, and settles the job when asked to.
    pub(super) async fn run(self, source: UploadSource, python: OnPython) -> PyResult<JobState> {
        let sent = self.send(source, &python).await;
        if let Some(bar) = self.bar.clone() {
            let ok = sent.is_ok();
            python
                .run(move |py| close_progress(Some(bar.bind(py)), ok))
                .await?;
        }
        let state = sent?;
        if !self.wait {
            return Ok(state);
        }
        settle(self.adapter.as_ref(), state, Settling::Upload)
            .await
            .map_err(to_py_err)
    }

    async fn send(&self, source: UploadSource, python: &OnPython) -> PyResult<JobState> {
        let reader = match source {
            UploadSource::Whole(records) => return self.send_part(records, 0, python).await,
            UploadSource::Chunks(reader) => Arc::new(Mutex::new(reader)),
        };
        let mut parts: Vec<JobState> = Vec::new();
        let mut before = 0u64;
        loop {
            let reader = reader.clone();
            let Some(records) = python.run(move |py| reader.lock().next_chunk(py)).await? else {
                break;
            };
            // A part is settled before the next is sent, so a re-run after a failure resends only what is missing.
            self.settle_last(&mut parts).await?;
            let n = records.len() as u64;
            parts.push(self.send_part(records, before, python).await?);
            before += n;
        }
        if parts.len() > 1 {
            self.settle_last(&mut parts).await?;
        }
        if parts.is_empty() {
            return Err(to_py_err(
                Error::invalid("nothing to upload: records is empty").field("records"),
            ));
        }
        Ok(merge_parts(parts))
    }

    async fn settle_last(&self, parts: &mut Vec<JobState>) -> PyResult<()> {
        if let Some(last) = parts.pop() {
            let number = parts.len() + 1;
            let settled = settle(self.adapter.as_ref(), last, Settling::Part(number))
                .await
                .map_err(to_py_err)?;
            parts.push(settled);
        }
        Ok(())
    }

    /// One adapter upload, moving the display to `before` + records handled every `TICK` and once at the end.
    async fn send_part(
        &self,
        records: Vec<UploadRecord>,
        before: u64,
        python: &OnPython,
    ) -> PyResult<JobState> {
        let counters = Arc::new(UploadProgress::default());
        let upload =
            self.adapter
                .upload(&self.batch, records, self.options.clone(), counters.clone());
        let Some(bar) = &self.bar else {
            return upload.await.map_err(to_py_err);
        };
        let show = || {
            let handled =
                counters.sent.load(Ordering::Relaxed) + counters.skipped.load(Ordering::Relaxed);
            let bar = bar.clone();
            python.run(move |py| {
                bar.bind(py)
                    .call_method1("update", (before + handled,))
                    .map(|_| ())
            })
        };
        tokio::pin!(upload);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                out = &mut upload => {
                    show().await?;
                    return out.map_err(to_py_err);
                }
                _ = tick.tick() => show().await?,
            }
        }
    }
}
