//! TaskMonk's jobs: polling import and output jobs until done (or `Stalled`), output files downloaded from
//! their pre-authorised URL, and the keys a batch holds.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use url::Url;

use super::file::{parse_file, Table};
use super::{
    shown_file_url, FileFormat, TaskMonkAdapter, DOWNLOAD_TRIES, POLL_FIRST, POLL_MAX, SETTLE,
    VENDOR,
};
use crate::engine::http::{bad_response, read_limited, too_large, BodyError, Request};
use crate::engine::retry::{read_retry_after, RequestKind, RetryAfter, RetryPolicy};
use crate::engine::runner::{run, Step};
use crate::engine::{Error, ErrorKind, Result};

/// A count of a status answer: a JSON number or a numeric string (both SDKs only compare the values).
pub(super) fn count(v: &Value, name: &str) -> Option<u64> {
    v.get(name).and_then(|x| {
        x.as_u64()
            .or_else(|| x.as_str().and_then(|s| s.trim().parse().ok()))
    })
}

/// `{"completed", "total"}` of a job-status answer.
pub(super) fn progress(v: &Value) -> Option<(u64, u64)> {
    Some((count(v, "completed")?, count(v, "total")?))
}

/// When a job is done: `completed == total`, as both SDKs test it, including an output job of an empty
/// selection that reports `0` of `0` (docs/vendors/taskmonk.md, finding 5).
pub(super) fn finished(done: u64, total: u64) -> bool {
    done >= total
}

/// When an import has a task to read back: a row ingested, or the job done.
fn has_a_task(done: u64, total: u64) -> bool {
    done >= 1 || finished(done, total)
}

pub(super) fn text_field(v: &Value, names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| match v.get(*n) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(x)) => Some(x.to_string()),
        _ => None,
    })
}

impl TaskMonkAdapter {
    pub(super) async fn job_progress(
        &self,
        job: &str,
        operation: &'static str,
    ) -> Result<(u64, u64)> {
        let v = self
            .get_json(self.url(false, &["job", job, "status"]), operation)
            .await?;
        progress(&v).ok_or_else(|| {
            Error::new(
                ErrorKind::Vendor,
                format!("job {job}: unexpected status answer {v}"),
            )
            .vendor(VENDOR)
            .operation(operation)
            .code("bad_response")
        })
    }

    /// Polls until `ready(completed, total)`, raising `Stalled` when the count does not move for the
    /// stall window.
    pub(super) async fn wait_progress<F, Fut>(
        &self,
        what: &str,
        operation: &'static str,
        ready: fn(u64, u64) -> bool,
        mut probe: F,
    ) -> Result<(u64, u64)>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(u64, u64)>>,
    {
        let mut last: Option<u64> = None;
        let mut since = Instant::now();
        let mut pause = POLL_FIRST;
        loop {
            let (done, total) = probe().await?;
            if ready(done, total) {
                return Ok((done, total));
            }
            if last != Some(done) {
                last = Some(done);
                since = Instant::now();
            } else if since.elapsed() >= self.stall {
                return Err(self.stalled(what, done, total).operation(operation));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(POLL_MAX);
        }
    }

    pub(super) fn stalled(&self, what: &str, done: u64, total: u64) -> Error {
        Error::new(
            ErrorKind::Stalled,
            format!(
                "{what} has not moved for {:.0} s ({done} of {total} done); TaskMonk reports no failure state, so it may never finish: ask the annotation partner, or raise stall_timeout=",
                self.stall.as_secs_f64()
            ),
        )
        .vendor(VENDOR)
        .code("stalled")
    }

    /// Waits until every import of the batch is ingested (the batch form of the job status) and returns
    /// `(ingested, imported)`. Where that form is unknown (404), falls back to the batch status.
    pub(super) async fn wait_ingested(
        &self,
        batch_id: &str,
        operation: &'static str,
    ) -> Result<(u64, u64)> {
        let url = self.batch_imports_url(batch_id);
        let what = format!("the imports of batch {batch_id}");
        let result = self
            .wait_progress(&what, operation, finished, || {
                let url = url.clone();
                async move {
                    let v = self.get_json(url, operation).await?;
                    progress(&v).ok_or_else(|| {
                        Error::new(ErrorKind::Vendor, "unexpected import progress answer")
                            .vendor(VENDOR)
                            .operation(operation)
                    })
                }
            })
            .await;
        match result {
            Err(e) if e.kind == ErrorKind::NotFound => {
                self.settle_without_batch_progress(batch_id, operation)
                    .await
            }
            other => other,
        }
    }

    /// Without the batch's import progress (finding 8), waits for this client's own import jobs of the
    /// batch, then until the batch's task count stops moving (`SETTLE`); returns it as `(n, n)`.
    async fn settle_without_batch_progress(
        &self,
        batch_id: &str,
        operation: &'static str,
    ) -> Result<(u64, u64)> {
        let own: Vec<String> = self
            .jobs
            .lock()
            .values()
            .filter(|t| t.batch == batch_id)
            .flat_map(|t| t.ids.clone())
            .collect();
        for job in &own {
            let what = format!("import job {job} of batch {batch_id}");
            self.wait_progress(&what, operation, finished, || {
                self.job_progress(job, operation)
            })
            .await?;
        }
        let mut total = self.vendor_counts(batch_id, operation).await?.3;
        let started = Instant::now();
        loop {
            tokio::time::sleep(SETTLE).await;
            let now = self.vendor_counts(batch_id, operation).await?.3;
            if now == total {
                return Ok((total, total));
            }
            total = now;
            // Still moving after the stall window: rows are still being ingested; go on with what is there.
            if started.elapsed() >= self.stall {
                return Ok((total, total));
            }
        }
    }

    /// Starts an output job, waits for it, downloads and parses its file.
    pub(super) async fn export(
        &self,
        batch_id: &str,
        per_user: bool,
        format: FileFormat,
        fields: &[&str],
        completed_only: bool,
        operation: &'static str,
    ) -> Result<Table> {
        let mut url = if per_user {
            self.url(false, &["batch", batch_id, "output", "file"])
        } else {
            self.url(true, &["batch", batch_id, "output"])
        };
        url.query_pairs_mut()
            .append_pair("output_format", format.query_value());
        // Starting another output job is harmless, so it retries like a read.
        let req = Request::json(
            Method::POST,
            url,
            &json!({"field_names": fields, "completedOnly": completed_only}),
            RequestKind::Read,
            operation,
        )?;
        let v: Value = self.http.send(&req).await?.json(VENDOR, operation)?;
        let (Some(file_url), Some(job)) = (
            text_field(&v, &["file_url", "fileUrl"]),
            text_field(&v, &["job_id", "jobId"]),
        ) else {
            return Err(Error::new(
                ErrorKind::Vendor,
                "the output request answered without file_url and job_id",
            )
            .vendor(VENDOR)
            .operation(operation)
            .code("bad_response"));
        };
        let what = format!("output job {job} of batch {batch_id}");
        self.wait_progress(&what, operation, finished, || {
            self.job_progress(&job, operation)
        })
        .await?;
        let file_url = Url::parse(&file_url)
            .or_else(|_| self.cfg.base_url.join(&file_url))
            .map_err(|e| {
                Error::new(ErrorKind::Vendor, format!("file_url is not a URL: {e}"))
                    .vendor(VENDOR)
                    .operation(operation)
            })?;
        let bytes = self.download(&file_url, operation).await?;
        parse_file(&bytes).map_err(|e| e.operation(operation))
    }

    /// A plain GET of a pre-authorised file URL: no credentials go with it.
    pub(super) async fn download(
        &self,
        url: &Url,
        operation: &'static str,
    ) -> Result<bytes::Bytes> {
        // A pre-authorised URL: its query (a signature) is redacted, and its path may be a token too.
        let shown = shown_file_url(url);
        let failed = |why: &str| {
            Error::new(
                ErrorKind::Vendor,
                format!("could not download the output file {shown}: {why}"),
            )
            .vendor(VENDOR)
            .operation(operation)
            .code("download_failed")
        };
        let again = |why: &str, after: Option<Duration>| Step::Retry {
            error: failed(why),
            after,
            paced: false,
        };
        // Its own budget of tries: a file not written yet answers 404 for a while.
        let policy = RetryPolicy {
            max_retries: DOWNLOAD_TRIES - 1,
            ..self.retry
        };
        run(&policy, &format!("GET {shown}"), |_| async {
            self.http.pace().await;
            let resp = match self.http.raw().get(url.clone()).send().await {
                Ok(resp) => resp,
                Err(e) if e.is_timeout() => return again("timed out", None),
                Err(_) => return again("the connection failed", None),
            };
            let status = resp.status().as_u16();
            if status != 200 {
                let why = format!("HTTP {status}");
                if !matches!(status, 404 | 429 | 500 | 502 | 503 | 504) {
                    return Step::Fail(failed(&why));
                }
                return match read_retry_after(resp.headers(), &policy) {
                    RetryAfter::TooLong(secs) => Step::TooLong {
                        error: Error::new(
                            if status == 429 {
                                ErrorKind::RateLimited
                            } else {
                                ErrorKind::Vendor
                            },
                            format!(
                                "could not download the output file {shown}: {why}, and the server asked to \
                                 wait {secs} s, more than the client's max_retry_wait of {} s",
                                policy.max_retry_after.as_secs_f64()
                            ),
                        )
                        .vendor(VENDOR)
                        .operation(operation)
                        .http_status(status)
                        .retry_after(secs),
                        wait: Duration::from_secs_f64(secs),
                    },
                    RetryAfter::Implausible(secs) => Step::Fail(
                        bad_response(
                            VENDOR,
                            operation,
                            url,
                            &format!("HTTP {status} with Retry-After {secs}"),
                        )
                        .http_status(status),
                    ),
                    after => again(&why, after.wait()),
                };
            }
            match read_limited(resp, self.http.limits().max_response_bytes).await {
                Ok(b) => Step::Done(b),
                Err(BodyError::TooLarge { limit }) => Step::Fail(too_large(
                    VENDOR,
                    operation,
                    &reqwest::Method::GET,
                    url,
                    limit,
                )),
                Err(_) => again("the download broke off", None),
            }
        })
        .await
    }

    /// The keys the batch holds, once its imports are ingested: how uploads stay idempotent and how
    /// they reconcile after an ambiguous failure. A batch with tasks that does not return the key column
    /// is a `key_column_dropped` error: sending would import every record again.
    pub(super) async fn existing_keys(&self, batch_id: &str) -> Result<HashSet<String>> {
        let (_, imported) = self.wait_ingested(batch_id, "upload").await?;
        if imported == 0 && self.vendor_counts(batch_id, "upload").await?.3 == 0 {
            return Ok(HashSet::new());
        }
        self.key_export(batch_id)
            .await?
            .ok_or_else(|| self.key_column_dropped(batch_id, None))
    }

    /// The non-empty values of the key column in the batch's output file, or `None` when the batch does
    /// not return the column (refused by name, or absent from the file).
    pub(super) async fn key_export(&self, batch_id: &str) -> Result<Option<HashSet<String>>> {
        let table = match self
            .export(
                batch_id,
                false,
                FileFormat::Csv,
                &[self.key_column.as_str()],
                false,
                "upload",
            )
            .await
        {
            Ok(t) => t,
            Err(e) if e.kind == ErrorKind::InvalidInput => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(k) = table.header.iter().position(|h| *h == self.key_column) else {
            return Ok(None);
        };
        Ok(Some(
            table
                .rows
                .into_iter()
                .filter_map(|mut r| (k < r.len()).then(|| std::mem::take(&mut r[k])))
                .filter(|k| !k.is_empty())
                .collect(),
        ))
    }

    /// After the first import of an upload (`job`, holding `keys`), reads the keys back: the column must
    /// come back holding them, or nothing else is sent (finding 2). Waits for one ingested row first, and
    /// for the whole job before it concludes that the keys are missing.
    pub(super) async fn verify_key_column(
        &self,
        batch_id: &str,
        job: &str,
        keys: &[&str],
    ) -> Result<()> {
        let what = format!("import job {job} of batch {batch_id}");
        let probe = || self.job_progress(job, "upload");
        let (done, total) = self
            .wait_progress(&what, "upload", has_a_task, probe)
            .await?;
        let holds = |found: &HashSet<String>| keys.iter().any(|k| found.contains(*k));
        match self.key_export(batch_id).await? {
            None => return Err(self.key_column_dropped(batch_id, Some((job, keys.len())))),
            Some(found) if holds(&found) => return Ok(()),
            Some(_) if finished(done, total) => {}
            Some(_) => {
                self.wait_progress(&what, "upload", finished, probe).await?;
            }
        }
        match self.key_export(batch_id).await? {
            Some(found) if holds(&found) => Ok(()),
            _ => Err(self.key_column_dropped(batch_id, Some((job, keys.len())))),
        }
    }

    /// The batch does not return the key column: labelport cannot tell which records it holds.
    /// `first`: the import job that was sent, and its record count.
    pub(super) fn key_column_dropped(&self, batch_id: &str, first: Option<(&str, usize)>) -> Error {
        let column = &self.key_column;
        let (what, details) = match first {
            Some((job, n)) => (
                format!(
                    "the {n} records of the first import (job {job}) are in the batch without their keys, and nothing else was sent"
                ),
                json!({"key_column": column, "import_job": job, "imported": n}),
            ),
            None => (
                "the batch holds tasks but no key column, and nothing was sent".to_string(),
                json!({"key_column": column}),
            ),
        };
        Error::new(
            ErrorKind::Unsupported,
            format!(
                "TaskMonk batch {batch_id} does not return the key column {column:?}, so labelport cannot tell which records it holds and a re-run would import them again: {what}. Declare {column:?} as an input field of the project (the annotation partner sets the project's input fields), or pass key_column= naming an input field the project has"
            ),
        )
        .vendor(VENDOR)
        .operation("upload")
        .code("key_column_dropped")
        .field(column.clone())
        .details(details)
    }

    /// `(new_count, in_progress, completed, total)` of the batch status.
    pub(super) async fn vendor_counts(
        &self,
        batch_id: &str,
        operation: &'static str,
    ) -> Result<(u64, u64, u64, u64)> {
        let v = self
            .get_json(self.url(false, &["batch", batch_id, "status"]), operation)
            .await?;
        let n = |k: &str| count(&v, k);
        let completed = n("completed").unwrap_or(0);
        let in_progress = n("in_progress").unwrap_or(0);
        let total = n("total").unwrap_or(0);
        let new = n("new_count")
            .or_else(|| n("not_started"))
            .unwrap_or_else(|| total.saturating_sub(completed + in_progress));
        Ok((new, in_progress, completed, total))
    }

    /// The batch form of the job status: the progress of every import of the batch.
    fn batch_imports_url(&self, batch_id: &str) -> Url {
        let mut url = self.url(false, &["job", batch_id, "status"]);
        url.query_pairs_mut().append_pair("input_type", "batch");
        url
    }

    /// `(ingested, imported)` over every import of the batch; `None` where that form is unknown.
    pub(super) async fn import_progress(&self, batch_id: &str) -> Result<Option<(u64, u64)>> {
        match self
            .get_json(self.batch_imports_url(batch_id), "status")
            .await
        {
            Ok(v) => Ok(progress(&v)),
            Err(e) if matches!(e.kind, ErrorKind::NotFound | ErrorKind::InvalidInput) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
