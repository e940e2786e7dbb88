//! Adaptive concurrency (AIMD): start with a few requests in flight, grow by one per window of fast,
//! clean answers, halve on overload (429/503). Vendor-independent; the decisions live in `Window`, a
//! plain state machine tested without a clock or a network.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;

#[derive(Debug, Clone, Copy)]
pub struct LimitConfig {
    pub initial: usize,
    pub min: usize,
    pub max: usize,
}

impl Default for LimitConfig {
    fn default() -> Self {
        LimitConfig {
            initial: 4,
            min: 1,
            max: 64,
        }
    }
}

/// How an answer went, for the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Answered without trouble in this time.
    Clean(Duration),
    /// The vendor said "too much" (429, 503).
    Overloaded,
    /// Anything else: no information about load.
    Other,
}

/// The congestion window: the limit, and what counts as a fast answer.
#[derive(Debug, Clone)]
pub struct Window {
    cfg: LimitConfig,
    limit: f64,
    /// The fastest answer seen: the baseline for "fast".
    min_latency: Option<Duration>,
    last_decrease: Option<Instant>,
    /// Until the first sign of load (a refusal, or an answer slower than "fast"), the limit grows by one per
    /// fast answer, doubling each round trip (TCP's slow start): a vendor one WAN round trip away reaches
    /// full speed in a few round trips, not after thousands of answers.
    slow_start: bool,
}

impl Window {
    pub fn new(cfg: LimitConfig) -> Self {
        Window {
            cfg,
            limit: cfg.initial.clamp(cfg.min, cfg.max) as f64,
            min_latency: None,
            last_decrease: None,
            slow_start: true,
        }
    }

    pub fn limit(&self) -> usize {
        self.limit as usize
    }

    /// An answer is fast when it took at most twice the fastest seen plus 20 ms.
    fn is_fast(&self, latency: Duration) -> bool {
        self.min_latency
            .is_none_or(|m| latency <= m * 2 + Duration::from_millis(20))
    }

    pub fn on(&mut self, signal: Signal, now: Instant) {
        match signal {
            Signal::Clean(latency) => {
                let fast = self.is_fast(latency);
                self.min_latency = Some(self.min_latency.map_or(latency, |m| m.min(latency)));
                if !fast {
                    self.slow_start = false;
                } else if self.slow_start {
                    self.limit = (self.limit + 1.0).min(self.cfg.max as f64);
                } else {
                    // One more per window's worth of fast answers.
                    self.limit = (self.limit + 1.0 / self.limit).min(self.cfg.max as f64);
                }
            }
            Signal::Overloaded => {
                self.slow_start = false;
                // One halving per burst of refusals: answers to requests sent before the last halving
                // say nothing new.
                let cool = self
                    .min_latency
                    .unwrap_or(Duration::ZERO)
                    .max(Duration::from_millis(100));
                if self
                    .last_decrease
                    .is_none_or(|t| now.duration_since(t) >= cool)
                {
                    self.limit = (self.limit / 2.0).max(self.cfg.min as f64);
                    self.last_decrease = Some(now);
                }
            }
            Signal::Other => {}
        }
    }
}

/// Permits for requests in flight, as many as the window allows.
#[derive(Debug)]
pub struct AdaptiveLimit {
    state: Mutex<(Window, usize)>,
    notify: Notify,
}

pub struct Permit {
    limit: Arc<AdaptiveLimit>,
    started: Instant,
    signal: Option<Signal>,
}

impl AdaptiveLimit {
    pub fn new(cfg: LimitConfig) -> Arc<Self> {
        Arc::new(AdaptiveLimit {
            state: Mutex::new((Window::new(cfg), 0)),
            notify: Notify::new(),
        })
    }

    pub fn limit(&self) -> usize {
        self.state.lock().0.limit()
    }

    /// The bounds this limit moves within.
    pub fn config(&self) -> LimitConfig {
        self.state.lock().0.cfg
    }

    pub fn in_flight(&self) -> usize {
        self.state.lock().1
    }

    /// Waits until fewer than `limit` requests are in flight.
    pub async fn acquire(self: &Arc<Self>) -> Permit {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.state.lock();
                if s.1 < s.0.limit().max(1) {
                    s.1 += 1;
                    return Permit {
                        limit: self.clone(),
                        started: Instant::now(),
                        signal: None,
                    };
                }
            }
            notified.await;
        }
    }

    /// An overload seen anywhere (e.g. a 429 a retry absorbed).
    pub fn overloaded(&self) {
        self.state.lock().0.on(Signal::Overloaded, Instant::now());
    }
}

impl Permit {
    /// The request ended cleanly; its latency counts toward growth.
    pub fn clean(mut self) {
        self.signal = Some(Signal::Clean(self.started.elapsed()));
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        {
            let mut s = self.limit.state.lock();
            s.1 -= 1;
            if let Some(sig) = self.signal {
                s.0.on(sig, Instant::now());
            }
        }
        self.limit.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn grows_on_fast_clean_answers_and_halves_on_overload() {
        let mut w = Window::new(LimitConfig::default());
        let t = Instant::now();
        assert_eq!(w.limit(), 4);
        for _ in 0..200 {
            w.on(Signal::Clean(10 * MS), t);
        }
        let grown = w.limit();
        assert!(grown >= 15, "{grown}");
        w.on(Signal::Overloaded, t);
        assert_eq!(w.limit(), grown / 2);
        // A burst of refusals at once halves once.
        w.on(Signal::Overloaded, t + 10 * MS);
        assert_eq!(w.limit(), grown / 2);
        w.on(Signal::Overloaded, t + 200 * MS);
        assert_eq!(w.limit(), grown / 4);
    }

    #[test]
    fn slow_start_doubles_per_round_trip_until_the_first_sign_of_load() {
        let mut w = Window::new(LimitConfig::default());
        let t = Instant::now();
        for _ in 0..60 {
            w.on(Signal::Clean(20 * MS), t);
        }
        assert_eq!(w.limit(), 64); // 4 + 60: full speed after about four round trips
        w.on(Signal::Overloaded, t);
        assert_eq!(w.limit(), 32);
        for _ in 0..32 {
            w.on(Signal::Clean(20 * MS), t);
        }
        assert_eq!(w.limit(), 32); // after a refusal: additive, one per window of answers
        w.on(Signal::Clean(20 * MS), t);
        assert_eq!(w.limit(), 33);

        let mut w = Window::new(LimitConfig::default());
        w.on(Signal::Clean(20 * MS), t);
        w.on(Signal::Clean(500 * MS), t); // queueing: slow start ends
        for _ in 0..10 {
            w.on(Signal::Clean(20 * MS), t);
        }
        assert_eq!(w.limit(), 6, "{}", w.limit); // additive (slow start would be at 15)
    }

    #[test]
    fn slow_answers_do_not_grow_and_bounds_hold() {
        let mut w = Window::new(LimitConfig::default());
        let t = Instant::now();
        w.on(Signal::Clean(10 * MS), t);
        let before = w.limit;
        for _ in 0..100 {
            w.on(Signal::Clean(500 * MS), t);
            w.on(Signal::Other, t);
        }
        assert_eq!(w.limit, before);
        for i in 0..20 {
            w.on(Signal::Overloaded, t + i * 1000 * MS);
        }
        assert_eq!(w.limit(), 1);
        for _ in 0..100_000 {
            w.on(Signal::Clean(10 * MS), t);
        }
        assert_eq!(w.limit(), 64);
    }

    #[tokio::test]
    async fn permits_never_exceed_the_limit() {
        let l = AdaptiveLimit::new(LimitConfig {
            initial: 3,
            min: 1,
            max: 3,
        });
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks: Vec<_> = (0..30)
            .map(|_| {
                let (l, peak) = (l.clone(), peak.clone());
                tokio::spawn(async move {
                    let p = l.acquire().await;
                    peak.fetch_max(l.in_flight(), std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    p.clean();
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(peak.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert_eq!(l.in_flight(), 0);
    }
}
