//! A hard ceiling on requests per second for one client (`rate_limit=`). `HttpClient` owns it and waits for
//! a slot before every attempt it makes, retries included, and before every raw read an adapter makes.
//!
//! Pacing is a GCRA with a burst of one: request n may start no earlier than n / rate seconds after the
//! first, so any one-second window holds at most `rate + BURST` request starts.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

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
