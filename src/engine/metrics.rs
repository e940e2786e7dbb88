//! What a client's requests came to: counted on the engine's own threads as each attempt of `HttpClient::send`
//! ends (one short lock, never the GIL), read by `client.metrics()`. Requests an adapter makes through the raw
//! clients (pre-signed upload and download URLs) and the logins themselves are not requests here; logins are
//! counted by the auth provider (`Auth::renewals`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Map, Value};

/// The latencies kept for the percentiles: the most recent this many attempts.
pub const LATENCY_SAMPLES: usize = 100_000;

/// How one attempt ended, as the metrics count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// The vendor answered with this HTTP status.
    Status(u16),
    /// No answer: the connection failed, broke, or timed out.
    Transport,
}

#[derive(Default)]
pub struct Metrics {
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    /// Attempts by operation and outcome (shown as "200", "429", ... or "error": no answer).
    requests: BTreeMap<(&'static str, Outcome), u64>,
    retries: u64,
    rate_limited: u64,
    retry_after_seconds: f64,
    bytes_sent: u64,
    bytes_received: u64,
    latencies_ms: VecDeque<f64>,
}

impl Metrics {
    /// One attempt of `operation` ended with `outcome` after `latency`, having sent `sent` body bytes and read
    /// `received`; `retry`: it was a retry of the same request. A 429's `Retry-After` (seconds), if it gave one.
    #[allow(clippy::too_many_arguments)]
    pub fn attempt(
        &self,
        operation: &'static str,
        outcome: Outcome,
        latency: Duration,
        sent: u64,
        received: u64,
        retry: bool,
        retry_after: Option<f64>,
    ) {
        let mut c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        *c.requests.entry((operation, outcome)).or_default() += 1;
        c.retries += u64::from(retry);
        if outcome == Outcome::Status(429) {
            c.rate_limited += 1;
            c.retry_after_seconds += retry_after.unwrap_or(0.0);
        }
        c.bytes_sent += sent;
        c.bytes_received += received;
        if c.latencies_ms.len() == LATENCY_SAMPLES {
            c.latencies_ms.pop_front();
        }
        c.latencies_ms.push_back(latency.as_secs_f64() * 1000.0);
    }

    /// The figures as `client.metrics()` returns them; `logins` from the auth provider.
    pub fn snapshot(&self, logins: u64) -> Value {
        let c = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mut requests = Map::new();
        for ((operation, outcome), n) in &c.requests {
            let status = match outcome {
                Outcome::Status(code) => code.to_string(),
                Outcome::Transport => "error".to_string(),
            };
            let by_status = requests
                .entry((*operation).to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(m) = by_status {
                m.insert(status, json!(n));
            }
        }
        let total: u64 = c.requests.values().sum();
        let mut sorted: Vec<f64> = c.latencies_ms.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let latency = if sorted.is_empty() {
            json!({"count": 0, "p50": null, "p90": null, "p99": null, "max": null})
        } else {
            json!({
                "count": sorted.len(),
                "p50": round(percentile(&sorted, 0.50)),
                "p90": round(percentile(&sorted, 0.90)),
                "p99": round(percentile(&sorted, 0.99)),
                "max": round(sorted[sorted.len() - 1]),
            })
        };
        json!({
            "requests": requests,
            "requests_total": total,
            "retries": c.retries,
            "rate_limited": c.rate_limited,
            "retry_after_seconds": c.retry_after_seconds,
            "logins": logins,
            "bytes_sent": c.bytes_sent,
            "bytes_received": c.bytes_received,
            "latency_ms": latency,
        })
    }
}

/// The nearest-rank percentile `q` (0 to 1) of `sorted` (ascending, not empty).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn round(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_operation_and_status_with_retries_429s_bytes_and_percentiles() {
        let m = Metrics::default();
        for i in 1..=100u64 {
            m.attempt(
                "results",
                Outcome::Status(200),
                Duration::from_millis(i),
                0,
                10,
                false,
                None,
            );
        }
        m.attempt(
            "upload",
            Outcome::Status(429),
            Duration::from_millis(5),
            300,
            2,
            false,
            Some(1.5),
        );
        m.attempt(
            "upload",
            Outcome::Status(200),
            Duration::from_millis(5),
            300,
            2,
            true,
            None,
        );
        m.attempt(
            "upload",
            Outcome::Transport,
            Duration::from_millis(5),
            300,
            0,
            true,
            None,
        );
        let s = m.snapshot(2);
        assert_eq!(s["requests"]["results"]["200"], 100);
        assert_eq!(s["requests"]["upload"]["429"], 1);
        assert_eq!(s["requests"]["upload"]["error"], 1);
        assert_eq!(s["requests_total"], 103);
        assert_eq!(s["retries"], 2);
        assert_eq!(s["rate_limited"], 1);
        assert_eq!(s["retry_after_seconds"], 1.5);
        assert_eq!(s["logins"], 2);
        assert_eq!(s["bytes_sent"], 900);
        assert_eq!(s["bytes_received"], 1004);
        assert_eq!(s["latency_ms"]["count"], 103);
        assert_eq!(s["latency_ms"]["max"], 100.0);
        assert_eq!(s["latency_ms"]["p50"], 49.0); // 3 of 5 ms below 1..=100
        assert_eq!(s["latency_ms"]["p99"], 99.0);
    }

    #[test]
    fn empty_and_bounded() {
        let m = Metrics::default();
        assert_eq!(m.snapshot(0)["latency_ms"]["p50"], Value::Null);
        for _ in 0..LATENCY_SAMPLES + 10 {
            m.attempt("x", Outcome::Status(200), Duration::ZERO, 0, 0, false, None);
        }
        let s = m.snapshot(0);
        assert_eq!(s["latency_ms"]["count"], LATENCY_SAMPLES);
        assert_eq!(s["requests_total"], LATENCY_SAMPLES as u64 + 10);
    }
}
