//! Request statistics: what tests and benchmarks assert on ("each key created exactly once",
//! "no more than N requests per second").
//!
//! Requests are counted per `"<METHOD> <route template> <status>"`. axum's `matched-path` feature is
//! off in this crate, so each route tags its answer with its template ([`tag`]); a dropped
//! connection is counted with the status `reset`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::MethodRouter;
use parking_lot::Mutex;
use serde_json::{json, Map, Value};

use super::conn::ConnInfo;
use super::Shared;

/// The route template that answered, e.g. `/api/v1/batches/{batchId}`.
#[derive(Clone, Copy)]
pub struct RouteTemplate(pub &'static str);

/// Marks an answer that was never written because the connection was dropped on purpose.
#[derive(Clone, Copy)]
pub struct DroppedConnection;

/// A route whose answers carry its template, for the statistics. Apply it outside the fault layer,
/// so faulted answers are tagged too.
pub fn tag<S>(template: &'static str, route: MethodRouter<S>) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    route.layer(axum::middleware::map_response_with_state(
        template,
        |State(t): State<&'static str>, mut res: Response| async move {
            res.extensions_mut().insert(RouteTemplate(t));
            res
        },
    ))
}

pub struct Stats {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    // serde_json's map keeps insertion order (preserve_order) and is what we hand out anyway.
    requests: Map<String, Value>,
    requests_total: u64,
    created: Map<String, Value>,
    records_total: u64,
    /// Requests per client process id (`"unknown"` where `/proc` could not tell).
    by_pid: Map<String, Value>,
    recent: VecDeque<Instant>,
    peak: usize,
    /// Per `"<METHOD> <route template>"`: query parameter and body field names seen (`record_wire`).
    wire: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)>,
}

const WINDOW: Duration = Duration::from_secs(1);

impl Stats {
    pub fn new() -> Self {
        Stats {
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Counts an arriving request toward the peak rate (a sliding one-second window of wall time).
    fn arrived(&self, at: Instant) {
        let mut s = self.inner.lock();
        while let Some(&first) = s.recent.front() {
            if at.duration_since(first) >= WINDOW {
                s.recent.pop_front();
            } else {
                break;
            }
        }
        s.recent.push_back(at);
        s.peak = s.peak.max(s.recent.len());
    }

    /// `pid`: `None` when processes are not tracked, `Some(None)` when the process could not be told.
    fn answered(&self, key: String, pid: Option<Option<u32>>) {
        let mut s = self.inner.lock();
        s.requests_total += 1;
        bump(&mut s.requests, key, 1);
        if let Some(pid) = pid {
            let pid = pid.map_or_else(|| "unknown".to_string(), |p| p.to_string());
            bump(&mut s.by_pid, pid, 1);
        }
    }

    /// Records stored, counted per record key (the client's `metadata`, else the record id).
    pub fn created<'a>(&self, keys: impl IntoIterator<Item = &'a str>) {
        let mut s = self.inner.lock();
        for k in keys {
            s.records_total += 1;
            match s.created.get_mut(k) {
                Some(v) => *v = Value::from(v.as_u64().unwrap_or(0) + 1),
                None => {
                    s.created.insert(k.to_string(), Value::from(1u64));
                }
            }
        }
    }

    fn sent(&self, route: String, query: BTreeSet<String>, body: BTreeSet<String>) {
        let mut s = self.inner.lock();
        let seen = s.wire.entry(route).or_default();
        seen.0.extend(query);
        seen.1.extend(body);
    }

    pub fn snapshot(&self) -> Value {
        let s = self.inner.lock();
        let wire: Map<String, Value> = s
            .wire
            .iter()
            .map(|(route, (query, body))| (route.clone(), json!({"query": query, "body": body})))
            .collect();
        json!({
            "requests": s.requests,
            "requests_total": s.requests_total,
            "records_created": s.created,
            "records_total": s.records_total,
            "requests_by_pid": s.by_pid,
            "peak_rps": s.peak as f64,
            "wire": wire,
        })
    }
}

fn bump(map: &mut Map<String, Value>, key: String, by: u64) {
    let v = map.entry(key).or_insert(Value::from(0u64));
    *v = Value::from(v.as_u64().unwrap_or(0) + by);
}

/// Outermost middleware: sees every request, including faulted ones.
pub async fn layer(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    shared.stats.arrived(Instant::now());
    // Looked up while the client's connection is surely open (once per connection), when asked for.
    let pid = if shared.config.track_pids {
        req.extensions()
            .get::<ConnectInfo<ConnInfo>>()
            .map(|c| c.0.client_pid())
    } else {
        None
    };
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    // The names a client sent, when asked for: the body is buffered here and handed on whole.
    let (req, sent) = if shared.config.record_wire {
        let query = super::wire::query_names(req.uri().query());
        let content_type = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_default();
        let fields = super::wire::body_fields(&content_type, &bytes);
        (
            Request::from_parts(parts, axum::body::Body::from(bytes)),
            Some((query, fields)),
        )
    } else {
        (req, None)
    };
    let res = next.run(req).await;
    let template = res
        .extensions()
        .get::<RouteTemplate>()
        .map(|t| t.0.to_string())
        .unwrap_or(path);
    let status = if res.extensions().get::<DroppedConnection>().is_some() {
        "reset".to_string()
    } else {
        res.status().as_u16().to_string()
    };
    if let Some((query, fields)) = sent {
        shared
            .stats
            .sent(format!("{method} {template}"), query, fields);
    }
    shared
        .stats
        .answered(format!("{method} {template} {status}"), pid);
    res
}
