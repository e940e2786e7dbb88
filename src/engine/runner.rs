//! The one retry loop: every request that may be tried again (`HttpClient::send`, the adapters' reads that
//! bypass it) runs its attempts through `run`, which counts them against the `RetryPolicy`, sleeps between
//! them, and never sleeps past the caller's deadline. What may be retried is decided by `retry.rs`'s table;
//! the attempt says what it came to, the runner only decides whether and when to try again.

use std::future::Future;
use std::time::{Duration, Instant};

use super::error::{Error, ErrorKind, Result};
use super::retry::RetryPolicy;

tokio::task_local! {
    /// When the caller's `wait(timeout=)` runs out: no retry wait of a request made for it runs past this.
    static DEADLINE: Instant;
}

/// Runs `fut` with `deadline` (if any) as the limit of every retry wait inside it.
pub async fn with_deadline<F: Future>(deadline: Option<Instant>, fut: F) -> F::Output {
    match deadline {
        Some(d) => DEADLINE.scope(d, fut).await,
        None => fut.await,
    }
}

/// The deadline of the `with_deadline` scope this task runs in, if any.
pub fn deadline() -> Option<Instant> {
    DEADLINE.try_with(|d| *d).ok()
}

/// The code of the `Timeout` a retry wait ends with when it reaches the caller's deadline.
pub const PAST_DEADLINE: &str = "past_deadline";

/// What one attempt came to.
pub enum Step<T> {
    Done(T),
    /// Not to be tried again.
    Fail(Error),
    /// Try again at once, without counting it (a renewed credential).
    Replay,
    /// The decision table allows another try: after the policy's backoff (or the vendor's `Retry-After`,
    /// `after`), while the budget lasts; otherwise the request fails with `error`. `paced` (a 429 with
    /// `Retry-After`) draws on the larger budget of waits the vendor asked for.
    Retry {
        error: Error,
        after: Option<Duration>,
        paced: bool,
    },
    /// The vendor asked for a wait longer than the client waits (`max_retry_wait`): fails with `error`
    /// (carrying `retry_after`) at once.
    TooLong {
        error: Error,
        wait: Duration,
    },
}

impl<T> Step<T> {
    /// `error` tried again after the policy's backoff where `retryable` (the decision table's answer for
    /// it), else final.
    pub fn retry_if(retryable: bool, error: Error) -> Self {
        if retryable {
            Step::Retry {
                error,
                after: None,
                paced: false,
            }
        } else {
            Step::Fail(error)
        }
    }
}

/// How many tries one request has used.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tries {
    pub retry: u32,
    /// A 429 is the vendor pacing us, not failing: its waits have their own, larger budget.
    pub paced: u32,
    pub renewed: bool,
}

impl Tries {
    /// The number of the attempt about to run, from 1.
    pub fn attempt(&self) -> u32 {
        self.retry + self.paced + 1
    }
}

/// Runs `attempt` until it is done or may not be retried; `label` names the request in logs.
pub async fn run<T, F, Fut>(policy: &RetryPolicy, label: &str, mut attempt: F) -> Result<T>
where
    F: FnMut(Tries) -> Fut,
    Fut: Future<Output = Step<T>>,
{
    let mut tries = Tries::default();
    loop {
        match attempt(tries).await {
            Step::Done(value) => return Ok(value),
            Step::Fail(error) => return Err(error),
            Step::Replay => tries.renewed = true,
            Step::TooLong { error, .. } => return Err(error),
            Step::Retry {
                error,
                after,
                paced,
            } => {
                let wait = if paced && tries.paced < policy.max_rate_limited {
                    tries.paced += 1;
                    policy.delay(tries.paced - 1, after)
                } else if tries.retry < policy.max_retries {
                    tries.retry += 1;
                    policy.delay(tries.retry - 1, after)
                } else {
                    return Err(error);
                };
                if let Some(until) = past_deadline(wait) {
                    // A wait the vendor asked for that outlasts the caller's timeout: say so at once (the
                    // error carries `retry_after`); our own backoff instead ends at the deadline.
                    if let Some(asked) = after {
                        return Err(error.retry_after(asked.as_secs_f64()));
                    }
                    return Err(reach_deadline(until, error).await);
                }
                let why = match (error.status, &error.code) {
                    (Some(status), _) => format!("answered {status}"),
                    (None, Some(code)) => format!("failed ({code})"),
                    (None, None) => format!("failed ({})", error.message),
                };
                log::info!(
                    target: "labelport::engine::retry",
                    "{label} {why}; retry {} in {:.2} s",
                    tries.attempt() - 1, wait.as_secs_f64()
                );
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// The caller's deadline, if a wait of `wait` from now would pass it.
pub(crate) fn past_deadline(wait: Duration) -> Option<Instant> {
    deadline().filter(|d| Instant::now().checked_add(wait).is_none_or(|end| end > *d))
}

/// Sleeps until `until`, then the `Timeout` the caller's wait ends with; `error` is why it could not go on.
pub(crate) async fn reach_deadline(until: Instant, error: Error) -> Error {
    tokio::time::sleep_until(until.into()).await;
    let mut timeout = Error::new(
        ErrorKind::Timeout,
        format!(
            "the caller's timeout came first: {} (waiting longer would pass it)",
            error.message
        ),
    )
    .code(PAST_DEADLINE);
    timeout.vendor = error.vendor;
    timeout.operation = error.operation;
    timeout.status = error.status;
    timeout
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry<T>(after: Option<Duration>, paced: bool) -> Step<T> {
        Step::Retry {
            error: Error::new(ErrorKind::Vendor, "HTTP 503"),
            after,
            paced,
        }
    }

    fn quick() -> RetryPolicy {
        RetryPolicy {
            max_retries: 2,
            max_rate_limited: 3,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
            ..RetryPolicy::default()
        }
    }

    #[tokio::test]
    async fn retries_within_the_budgets_then_fails_with_the_last_error() {
        let mut n = 0;
        let err = run(&quick(), "t", |_| {
            n += 1;
            async { retry::<()>(None, false) }
        })
        .await
        .unwrap_err();
        assert_eq!(n, 3); // the first try and two retries
        assert_eq!(err.message, "HTTP 503");

        let mut seen = vec![];
        let out = run(&quick(), "t", |t| {
            seen.push(t.attempt());
            let step = if t.paced < 3 {
                retry(Some(Duration::ZERO), true)
            } else {
                Step::Done(7)
            };
            async move { step }
        })
        .await
        .unwrap();
        assert_eq!(out, 7);
        assert_eq!(seen, [1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn a_backoff_past_the_deadline_ends_at_it_with_a_timeout() {
        let started = Instant::now();
        let deadline = started + Duration::from_millis(300);
        let slow = RetryPolicy {
            base: Duration::from_secs(60),
            cap: Duration::from_secs(60),
            ..quick()
        };
        let err = with_deadline(Some(deadline), async {
            run(&slow, "t", |_| async { retry::<()>(None, false) }).await
        })
        .await
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Timeout);
        assert_eq!(err.code.as_deref(), Some(PAST_DEADLINE));
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(290) && took < Duration::from_secs(5),
            "{took:?}"
        );

        let long = || Step::<()>::TooLong {
            error: Error::new(ErrorKind::RateLimited, "slow down"),
            wait: Duration::from_secs(300),
        };
        let err = run(&quick(), "t", |_| async { long() }).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::RateLimited);
        let started = Instant::now();
        let deadline = started + Duration::from_secs(5);
        let err = with_deadline(Some(deadline), run(&quick(), "t", |_| async { long() }))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::RateLimited, "at once, deadline or not");
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_retry_after_past_the_deadline_fails_at_once_carrying_it() {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(5);
        let err = with_deadline(Some(deadline), async {
            run(&quick(), "t", |_| async {
                Step::<()>::Retry {
                    error: Error::new(ErrorKind::RateLimited, "HTTP 429"),
                    after: Some(Duration::from_secs(60)),
                    paced: true,
                }
            })
            .await
        })
        .await
        .unwrap_err();
        assert_eq!(err.kind, ErrorKind::RateLimited);
        assert_eq!(err.retry_after, Some(60.0));
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
}
