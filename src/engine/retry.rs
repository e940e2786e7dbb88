//! When to try a request again, and how long to wait first.
//!
//! Reads retry on connect errors, timeouts, 429, 500, 502, 503, 504 (500 too: a read has no side effect, and
//! vendors answer transient failures with it). Creates (imports, uploads, batch creation)
//! retry only where a retry cannot create twice: a connect error (nothing was sent), a 429 (the vendor
//! refused before doing anything), or a vendor that deduplicates by key. Every other failure of a create
//! goes back to the adapter, which reconciles against the vendor's own records before sending again.

use std::time::Duration;

use rand::Rng;

/// What a request does, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// Safe to repeat: GET and friends.
    Read,
    /// May create something; repeating it after an ambiguous failure may create it twice.
    Create,
    /// Creates, but the vendor deduplicates by a key we send, so a repeat is harmless.
    IdempotentCreate,
}

/// How a single attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The connection could not be made: nothing reached the vendor.
    ConnectFailed,
    /// The request may have reached the vendor (timeout, reset, broken body).
    TransportFailed,
    /// The vendor answered with this status.
    Status(u16),
}

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub base: Duration,
    pub cap: Duration,
    /// The longest `Retry-After` we wait out (`max_retry_wait=`); a vendor asking for more gets a
    /// `RateLimited` error at once, carrying its `retry_after`, instead of a hang.
    pub max_retry_after: Duration,
    /// How many 429s with `Retry-After` one request waits out before they count as failures: pacing by a
    /// rate-limited vendor is normal operation, not a fault.
    pub max_rate_limited: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            base: Duration::from_millis(200),
            cap: Duration::from_secs(20),
            max_retry_after: Duration::from_secs(120),
            max_rate_limited: 30,
        }
    }
}

/// Whether this outcome may be retried for this kind of request (the decision table).
pub fn is_retryable(kind: RequestKind, outcome: Outcome) -> bool {
    match (kind, outcome) {
        (_, Outcome::ConnectFailed) => true,
        (_, Outcome::Status(429)) => true,
        (RequestKind::Read | RequestKind::IdempotentCreate, Outcome::TransportFailed) => true,
        (RequestKind::Read, Outcome::Status(s)) => matches!(s, 500 | 502..=504),
        (RequestKind::IdempotentCreate, Outcome::Status(s)) => matches!(s, 502..=504),
        (RequestKind::Create, _) => false,
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0 for the first retry): exponential backoff with full jitter,
    /// or the vendor's `Retry-After` when it gave one (plus a little jitter so clients do not stampede).
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let mut rng = rand::rng();
        if let Some(after) = retry_after {
            let jitter = rng.random_range(0..=100u64);
            return after.min(self.max_retry_after) + Duration::from_millis(jitter);
        }
        let ceiling = self.ceiling(retry);
        Duration::from_micros(rng.random_range(0..=ceiling.as_micros() as u64))
    }

    /// The upper bound of the jittered wait before retry number `retry`: base * 2^retry, capped.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u64.checked_shl(retry.min(30)).unwrap_or(u64::MAX);
        let raw = self.base.as_micros().saturating_mul(factor as u128);
        Duration::from_micros(raw.min(self.cap.as_micros()) as u64)
    }
}

/// Whether a failed create may or may not have been applied by the vendor (a 5xx, a dropped connection, a
/// timeout): the adapter must ask the vendor before sending it again.
pub fn is_ambiguous(e: &super::error::Error) -> bool {
    use super::error::ErrorKind;
    match e.kind {
        ErrorKind::Timeout => e.code.as_deref() == Some("request_timeout"),
        ErrorKind::Vendor => {
            e.status.is_none_or(|s| s >= 500)
                && !matches!(e.code.as_deref(), Some("connect_failed" | "bad_response"))
        }
        _ => false,
    }
}

/// A `Retry-After` longer than this (about 31 years) is not a wait but a broken or hostile server.
pub const IMPLAUSIBLE_RETRY_AFTER_SECS: f64 = 1e9;

/// A server's `Retry-After`, read without trusting it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RetryAfter {
    /// No header, or one that is not a number of seconds (the HTTP-date form is rare in APIs).
    Absent,
    /// A wait of at most the policy's `max_retry_after`.
    Wait(Duration),
    /// Longer than the policy waits: report it (`RateLimited`, `retry_after` set) instead of hanging.
    TooLong(f64),
    /// A number no server means (negative, not finite, beyond `IMPLAUSIBLE_RETRY_AFTER_SECS`).
    Implausible(f64),
}

impl RetryAfter {
    /// The wait to pass to `RetryPolicy::delay`: `Wait`'s duration, else none.
    pub fn wait(self) -> Option<Duration> {
        match self {
            RetryAfter::Wait(d) => Some(d),
            _ => None,
        }
    }
}

/// Reads the `Retry-After` header of an answer against the policy's longest wait.
pub fn read_retry_after(headers: &reqwest::header::HeaderMap, policy: &RetryPolicy) -> RetryAfter {
    let Some(secs) = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
    else {
        return RetryAfter::Absent;
    };
    if !secs.is_finite() || !(0.0..=IMPLAUSIBLE_RETRY_AFTER_SECS).contains(&secs) {
        return RetryAfter::Implausible(secs);
    }
    if secs > policy.max_retry_after.as_secs_f64() {
        return RetryAfter::TooLong(secs);
    }
    RetryAfter::Wait(Duration::from_secs_f64(secs))
}

/// Parses `Retry-After` given in seconds (the HTTP-date form is rare in APIs and treated as absent). Never
/// panics: a value beyond what a `Duration` holds is the longest `Duration`, which `delay` caps anyway.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs: f64 = value.trim().parse().ok()?;
    if !(secs.is_finite() && secs >= 0.0) {
        return None;
    }
    Some(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Outcome::*;
    use RequestKind::*;

    #[test]
    fn decision_table() {
        let cases = [
            (Read, ConnectFailed, true),
            (Read, TransportFailed, true),
            (Read, Status(429), true),
            (Read, Status(500), true),
            (Read, Status(501), false),
            (Read, Status(502), true),
            (Read, Status(503), true),
            (Read, Status(504), true),
            (Read, Status(404), false),
            (Read, Status(422), false),
            (Create, ConnectFailed, true),
            (Create, Status(429), true),
            (Create, TransportFailed, false),
            (Create, Status(500), false),
            (Create, Status(502), false),
            (Create, Status(503), false),
            (Create, Status(400), false),
            (IdempotentCreate, TransportFailed, true),
            (IdempotentCreate, Status(503), true),
            (IdempotentCreate, Status(400), false),
        ];
        for (kind, outcome, want) in cases {
            assert_eq!(is_retryable(kind, outcome), want, "{kind:?} {outcome:?}");
        }
    }

    #[test]
    fn backoff_grows_then_caps() {
        let p = RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
            ..Default::default()
        };
        assert_eq!(p.ceiling(0), Duration::from_millis(100));
        assert_eq!(p.ceiling(1), Duration::from_millis(200));
        assert_eq!(p.ceiling(3), Duration::from_millis(800));
        assert_eq!(p.ceiling(4), Duration::from_secs(1));
        assert_eq!(p.ceiling(60), Duration::from_secs(1));
        for retry in 0..10 {
            for _ in 0..50 {
                assert!(p.delay(retry, None) <= p.ceiling(retry));
            }
        }
    }

    #[test]
    fn retry_after_is_honoured_and_bounded() {
        let p = RetryPolicy::default();
        let d = p.delay(0, Some(Duration::from_secs(2)));
        assert!(
            d >= Duration::from_secs(2) && d <= Duration::from_millis(2100),
            "{d:?}"
        );
        let d = p.delay(0, Some(Duration::from_secs(100_000)));
        assert!(d <= p.max_retry_after + Duration::from_millis(100));
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after(" 1.5 "),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("1e30"), Some(Duration::MAX));
        assert_eq!(parse_retry_after("nan"), None);
        assert!(
            p.delay(0, parse_retry_after("1e30")) <= p.max_retry_after + Duration::from_millis(100)
        );
    }

    #[test]
    fn retry_after_is_read_against_the_longest_wait() {
        use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
        let p = RetryPolicy::default(); // waits at most 120 s
        let read = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
            read_retry_after(&h, &p)
        };
        assert_eq!(read_retry_after(&HeaderMap::new(), &p), RetryAfter::Absent);
        assert_eq!(read("2"), RetryAfter::Wait(Duration::from_secs(2)));
        assert_eq!(read("120"), RetryAfter::Wait(Duration::from_secs(120)));
        assert_eq!(read("121"), RetryAfter::TooLong(121.0));
        assert_eq!(read("1000000000"), RetryAfter::TooLong(1e9));
        assert_eq!(read("1e30"), RetryAfter::Implausible(1e30));
        assert_eq!(read("-5"), RetryAfter::Implausible(-5.0));
        assert!(matches!(read("NaN"), RetryAfter::Implausible(x) if x.is_nan()));
        assert_eq!(read("inf"), RetryAfter::Implausible(f64::INFINITY));
        assert_eq!(read("Wed, 21 Oct 2015 07:28:00 GMT"), RetryAfter::Absent);
    }
}
