//! When a wait on a batch is over: the decision shared by the blocking and the async `wait`.

use std::time::{Duration, Instant};

use super::config::{seconds, Zero};
use super::model::BatchCounts;
use crate::engine::{Error, ErrorKind, Result};

/// After one poll: stop with the counts, sleep and poll again, or give up.
#[derive(Debug, PartialEq)]
pub enum Next {
    Finished,
    Sleep(Duration),
}

/// Waits for every record of a batch to be final, confirmed on two consecutive polls: the counts come from
/// separate calls, so one "done" can be a race between them.
#[derive(Debug)]
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
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!(
                        "batch {batch_id} not finished after {:.1} s: {} of {} records finished",
                        self.started.elapsed().as_secs_f64(),
                        counts.finished(),
                        counts.total
                    ),
                )
                .vendor(vendor)
                .operation("wait"));
            }
        }
        Ok(Next::Sleep(pause))
    }
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
