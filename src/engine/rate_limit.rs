//! A hard ceiling on requests per second for one client (`rate_limit=`), and `Paced`, the auth wrapper
//! that applies it (with the adaptive concurrency's congestion signal) to every attempt `HttpClient`
//! makes, retries included: `authorize` runs before every attempt and `is_rejection` sees every answer.
//!
//! Pacing is a GCRA with a burst of one: request n may start no earlier than n / rate seconds after the
//! first, so any one-second window holds at most `rate + BURST` request starts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use reqwest::RequestBuilder;

use super::auth::Auth;
use super::concurrency::AdaptiveLimit;
use super::error::Result;

/// Requests beyond `rate` that a one-second window may hold.
pub const BURST: u32 = 1;

#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    /// The earliest start of the next request.
    next: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// `per_second` must be positive and finite (checked where the client is configured).
    pub fn new(per_second: f64) -> Self {
        RateLimiter {
            interval: Duration::from_secs_f64(1.0 / per_second.max(1e-6)),
            next: Mutex::new(None),
        }
    }

    /// Books the next slot at or after `now`; the instant the request may start.
    pub fn reserve(&self, now: Instant) -> Instant {
        let mut next = self.next.lock();
        let at = next.map_or(now, |n| n.max(now));
        *next = Some(at + self.interval);
        at
    }

    pub async fn acquire(&self) {
        let at = self.reserve(Instant::now());
        tokio::time::sleep_until(at.into()).await;
    }
}

/// Wraps an `Auth`: every attempt waits for the rate limiter, and every 429/503 answer tells the
/// adaptive concurrency to back off.
pub struct Paced {
    inner: Arc<dyn Auth>,
    rate: Option<Arc<RateLimiter>>,
    congestion: Option<Arc<AdaptiveLimit>>,
}

impl Paced {
    pub fn new(
        inner: Arc<dyn Auth>,
        rate: Option<Arc<RateLimiter>>,
        congestion: Option<Arc<AdaptiveLimit>>,
    ) -> Self {
        Paced {
            inner,
            rate,
            congestion,
        }
    }
}

#[async_trait]
impl Auth for Paced {
    async fn authorize(
        &self,
        http: &reqwest::Client,
        req: RequestBuilder,
    ) -> Result<(RequestBuilder, u64)> {
        if let Some(rate) = &self.rate {
            rate.acquire().await;
        }
        self.inner.authorize(http, req).await
    }

    fn is_rejection(&self, status: u16, body: &[u8]) -> bool {
        if matches!(status, 429 | 503) {
            if let Some(c) = &self.congestion {
                c.overloaded();
            }
        }
        self.inner.is_rejection(status, body)
    }

    fn invalidate(&self, generation: u64) {
        self.inner.invalidate(generation)
    }

    fn renewable(&self) -> bool {
        self.inner.renewable()
    }

    fn renewals(&self) -> u64 {
        self.inner.renewals()
    }

    fn secrets(&self) -> Vec<String> {
        self.inner.secrets()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_spaced_by_the_interval() {
        let r = RateLimiter::new(20.0);
        let t0 = Instant::now();
        let slots: Vec<Instant> = (0..60).map(|_| r.reserve(t0)).collect();
        for w in slots.windows(2) {
            assert_eq!(w[1] - w[0], Duration::from_millis(50));
        }
        // Any one-second window holds at most rate + BURST starts.
        for (i, s) in slots.iter().enumerate() {
            let n = slots[i..]
                .iter()
                .take_while(|t| **t - *s < Duration::from_secs(1))
                .count();
            assert!(n <= 20 + BURST as usize, "{n}");
        }
    }

    #[test]
    fn an_idle_limiter_does_not_bank_slots() {
        let r = RateLimiter::new(10.0);
        let t0 = Instant::now();
        assert_eq!(r.reserve(t0), t0);
        let later = t0 + Duration::from_secs(5);
        assert_eq!(r.reserve(later), later);
        assert_eq!(r.reserve(later), later + Duration::from_millis(100));
    }
}
