//! When a wait on a batch is over: the decision shared by the blocking and the async `wait`.

use std::time::{Duration, Instant};

use super::config::{seconds, Zero};
use super::model::{BatchCounts, JobPhase, JobState};
use super::Adapter;
use crate::engine::runner::PAST_DEADLINE;
use crate::engine::{Error, ErrorKind, Result};

/// After one poll: stop with the counts, sleep and poll again, or give up.
#[derive(Debug, PartialEq)]
pub enum Next {
    Finished,
    Sleep(Duration),
}

/// Waits for every record of a batch to be final, confirmed on two consecutive polls: the counts come from
/// separate calls, so one "done" can be a race between them.
#[derive(Debug, Clone)]
pub struct BatchWait {
    started: Instant,
    deadline: Option<Instant>,
    poll: Duration,
    done_before: bool,
}

/// The pause before the poll that confirms a first "done".
const CONFIRM_PAUSE: Duration = Duration::from_millis(200);

impl BatchWait {
    pub fn new(timeout: Option<f64>, poll_interval: f64) -> Result<Self> {
        let poll = seconds("poll_interval", poll_interval, Zero::Refused)?;
        let timeout = timeout
            .map(|t| seconds("timeout", t, Zero::Allowed))
            .transpose()?;
        let started = Instant::now();
        Ok(BatchWait {
            started,
            deadline: timeout.map(|t| started + t),
            poll,
            done_before: false,
        })
    }

    /// What to do after a poll that saw `counts`.
    pub fn after(&mut self, counts: &BatchCounts, batch_id: &str, vendor: &str) -> Result<Next> {
        let done = counts.done();
        if done && self.done_before {
            return Ok(Next::Finished);
        }
        self.done_before = done;
        let pause = if done {
            self.poll.min(CONFIRM_PAUSE)
        } else {
            self.poll
        };
        if let Some(deadline) = self.deadline {
            if !done && Instant::now() + pause > deadline {
                return Err(self.timed_out(batch_id, vendor, Some(counts)));
            }
        }
        Ok(Next::Sleep(pause))
    }

    /// When the wait runs out. Each status poll runs within it (`engine::runner::with_deadline`), so a
    /// vendor's `Retry-After` cannot hold the wait past its timeout.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// A failed poll as the wait reports it: one that reached the deadline is the wait's own `Timeout`, with
    /// the counts of the last poll that answered (`last`).
    pub fn poll_error(
        &self,
        err: Error,
        batch_id: &str,
        vendor: &str,
        last: Option<&BatchCounts>,
    ) -> Error {
        if err.code.as_deref() == Some(PAST_DEADLINE) {
            return self.timed_out(batch_id, vendor, last);
        }
        err
    }

    fn timed_out(&self, batch_id: &str, vendor: &str, counts: Option<&BatchCounts>) -> Error {
        let seen = match counts {
            Some(c) => format!("{} of {} records finished", c.finished(), c.total),
            None => "the vendor answered no status poll in time".to_string(),
        };
        Error::new(
            ErrorKind::Timeout,
            format!(
                "batch {batch_id} not finished after {:.1} s: {seen}",
                self.started.elapsed().as_secs_f64(),
            ),
        )
        .vendor(vendor)
        .operation("wait")
    }
}

/// The deadline of a job's `wait(timeout=)` begun at `started`: each of its polls runs within it
/// (`engine::runner::with_deadline`).
pub fn job_deadline(started: Instant, timeout: Option<f64>) -> Option<Instant> {
    let timeout = Duration::try_from_secs_f64(timeout?).ok()?;
    started.checked_add(timeout)
}

/// A failed poll of a job's wait: one that reached the deadline is the wait's own `Timeout` (`timed_out`).
pub fn job_poll_error(err: Error, timed_out: impl FnOnce() -> Error) -> Error {
    if err.code.as_deref() == Some(PAST_DEADLINE) {
        return timed_out();
    }
    err
}

/// The `Timeout` a job's `wait(timeout=)` ends with, `job` as last seen.
pub fn job_timed_out(job: &JobState, vendor: &str, after: Option<f64>) -> Error {
    let after = after.map(|t| format!(" after {t} s")).unwrap_or_default();
    Error::new(
        ErrorKind::Timeout,
        format!(
            "job {} still running{after}: {} of {} records",
            job.id, job.done, job.total
        ),
    )
    .vendor(vendor)
    .operation("wait")
}

/// How long an upload's job may show no progress before the wait for it stops, unless the client's
/// `stall_timeout=` (where its vendor takes one) says otherwise.
const STALL_S: f64 = 600.0;

/// Which wait `settle` is: for part `n` (from 1) of a chunked upload, before the next part is sent, or for the
/// whole upload, before `upload()` returns.
#[derive(Debug, Clone, Copy)]
pub enum Settling {
    Part(usize),
    Upload,
}

/// Polls an upload's job until the vendor holds (or has refused) every record: `upload()` returns then, and
/// a chunked upload sends its next part only then. A job whose counts do not move for the stall window stops
/// the wait with `Stalled`, naming the job (and the part).
pub async fn settle(adapter: &dyn Adapter, job: JobState, settling: Settling) -> Result<JobState> {
    let (stall, vendor) = {
        let kit = adapter.kit();
        let stall = kit
            .cfg
            .options
            .get("stall_timeout")
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(STALL_S);
        (
            Duration::try_from_secs_f64(stall).unwrap_or(Duration::from_secs_f64(STALL_S)),
            kit.cfg.spec.name,
        )
    };
    let mut job = job;
    let mut seen = (job.done, job.failed);
    let mut moved = Instant::now();
    // Quick first polls: a vendor that ingests in moments should not cost a second per upload.
    let mut pause = Duration::from_millis(100);
    while job.state == JobPhase::Running {
        if moved.elapsed() >= stall {
            let (what, then) = match settling {
                Settling::Part(n) => (
                    format!("part {n} of the upload (job {})", job.id),
                    "the records after it were not sent: run the same upload again later to send them \
                     (records already in the batch are skipped)",
                ),
                Settling::Upload => (
                    format!("the upload's job {}", job.id),
                    "every record was sent: `job.wait()` follows the job on; an upload run again skips the \
                     records already in the batch",
                ),
            };
            let part = match settling {
                Settling::Part(n) => serde_json::json!(n),
                Settling::Upload => serde_json::Value::Null,
            };
            return Err(Error::new(
                ErrorKind::Stalled,
                format!(
                    "{what} has not moved for {:.0} s ({} of {} records done); {then}, or raise stall_timeout=",
                    stall.as_secs_f64(),
                    job.done,
                    job.total
                ),
            )
            .vendor(vendor)
            .operation("upload")
            .code("stalled")
            .details(serde_json::json!({"part": part, "job": job.id})));
        }
        tokio::time::sleep(pause.min(stall)).await;
        pause = (pause * 2).min(Duration::from_secs(1));
        job = adapter.job_status(&job).await?;
        if (job.done, job.failed) != seen {
            seen = (job.done, job.failed);
            moved = Instant::now();
        }
    }
    Ok(job)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(total: u64, completed: u64) -> BatchCounts {
        BatchCounts {
            total,
            completed,
            ..Default::default()
        }
    }

    #[test]
    fn done_must_hold_on_two_polls() {
        let mut w = BatchWait::new(None, 5.0).unwrap();
        assert_eq!(
            w.after(&counts(10, 3), "b", "v").unwrap(),
            Next::Sleep(Duration::from_secs(5))
        );
        assert_eq!(
            w.after(&counts(10, 10), "b", "v").unwrap(),
            Next::Sleep(CONFIRM_PAUSE)
        );
        // A record moved back (e.g. an exception restarted): not done after all.
        assert_eq!(
            w.after(&counts(10, 9), "b", "v").unwrap(),
            Next::Sleep(Duration::from_secs(5))
        );
        assert_eq!(
            w.after(&counts(10, 10), "b", "v").unwrap(),
            Next::Sleep(CONFIRM_PAUSE)
        );
        assert_eq!(w.after(&counts(10, 10), "b", "v").unwrap(), Next::Finished);
    }

    #[test]
    fn times_out_with_the_counts_in_the_message() {
        let mut w = BatchWait::new(Some(0.0), 1.0).unwrap();
        let e = w.after(&counts(10, 4), "b1", "alegion").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Timeout);
        assert!(e.message.contains("4 of 10"), "{e}");
    }

    #[test]
    fn bad_arguments() {
        assert!(BatchWait::new(None, 0.0).is_err());
        assert!(BatchWait::new(Some(-1.0), 1.0).is_err());
        assert!(BatchWait::new(Some(f64::NAN), 1.0).is_err());
        // No clock holds these: an error, not a panic.
        assert!(BatchWait::new(Some(1e300), 1.0).is_err());
        assert!(BatchWait::new(None, 1e300).is_err());
        assert!(BatchWait::new(None, f64::INFINITY).is_err());
    }
}
