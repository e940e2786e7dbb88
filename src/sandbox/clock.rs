//! The sandbox clock: real time since start plus everything tests advanced.
//!
//! It starts at the real UTC now, so timestamps look like the vendor's and a user's
//! `results(since=datetime.now(...))` means what it says; it is monotonic (an `Instant` underneath),
//! so completion times computed from it never go backwards. Milliseconds throughout: vendors print
//! `createdAt` with three digits.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Instant;

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Utc};

pub struct Clock {
    origin_ms: i64,
    start: Instant,
    offset_ms: AtomicI64,
}

impl Clock {
    pub fn new() -> Self {
        Clock {
            origin_ms: Utc::now().timestamp_millis(),
            start: Instant::now(),
            offset_ms: AtomicI64::new(0),
        }
    }

    /// Sandbox time, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        self.origin_ms
            + self.start.elapsed().as_millis() as i64
            + self.offset_ms.load(Ordering::SeqCst)
    }

    /// The instant the sandbox started, in sandbox time (seeded fixtures are dated before it).
    pub fn origin_ms(&self) -> i64 {
        self.origin_ms
    }

    pub fn advance(&self, seconds: f64) {
        if seconds.is_finite() && seconds > 0.0 {
            self.offset_ms
                .fetch_add(seconds_to_ms(seconds), Ordering::SeqCst);
        }
    }
}

pub fn seconds_to_ms(seconds: f64) -> i64 {
    (seconds * 1000.0).round() as i64
}

/// `2026-11-24T05:54:58.123Z`: ISO-8601 UTC, three fraction digits, `Z`.
pub fn iso_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses a timestamp given in a query string, to microseconds since the epoch.
///
/// Accepts RFC 3339 (an offset's `+` may have arrived decoded as a space), a date-time without
/// offset (taken as UTC) and a bare date (midnight UTC).
pub fn parse_instant_us(value: &str) -> Option<i64> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    let repaired = repair_plus(v);
    if let Ok(t) = DateTime::parse_from_rfc3339(&repaired) {
        return Some(t.timestamp_micros());
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, fmt) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        return Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros());
    }
    None
}

/// `2020-01-01T10:00:00.000 01:00` (an unencoded `+` decoded as a space) back to `+01:00`.
fn repair_plus(v: &str) -> String {
    match v.rfind(' ') {
        Some(i) if i > 10 && v[i + 1..].contains(':') => format!("{}+{}", &v[..i], &v[i + 1..]),
        _ => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses() {
        assert_eq!(iso_ms(1_512_567_181_019), "2017-12-06T13:33:01.019Z");
        let us = parse_instant_us("2017-12-06T13:33:01.019Z").unwrap();
        assert_eq!(us, 1_512_567_181_019_000);
        assert_eq!(parse_instant_us("2017-12-06T14:33:01.019 01:00"), Some(us));
        assert_eq!(parse_instant_us("2017-12-06T13:33:01.019"), Some(us));
        assert!(parse_instant_us("2017-12-06").is_some());
        assert!(parse_instant_us("yesterday").is_none());
    }

    #[test]
    fn advance_moves_forward() {
        let c = Clock::new();
        let a = c.now_ms();
        c.advance(10.0);
        assert!(c.now_ms() >= a + 10_000);
    }
}
