//! Local simulators of the vendors' APIs: what tests, benchmarks and users' own pipeline tests run
//! against.
//!
//! Each simulator speaks its vendor's real HTTP API on 127.0.0.1 and meets the client over sockets
//! only: nothing here imports `crate::vendors` or `crate::py`, and nothing here touches Python (no
//! pyo3, no `log` macros, which pyo3-log would route through the GIL from our threads). A sandbox owns
//! its thread and tokio runtime, so a caller holding the GIL can never stall it.

mod alegion;
mod alegion_store;
mod clock;
mod conn;
mod control;
mod deepen;
mod dialect;
mod faults;
mod multipart;
mod paging;
mod peers;
mod playment;
#[cfg(test)]
mod playment_tests;
mod sama;
mod sama_store;
mod seeded;
mod stats;
mod taskmonk;
mod taskmonk_files;
#[cfg(test)]
mod test_http;
#[cfg(test)]
mod tests;
mod truth;
mod wire;

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::routing::MethodRouter;
use axum::Router;
use parking_lot::Mutex;
use tokio::sync::watch;

use clock::Clock;
pub use dialect::{describe as describe_dialect, Dialect, Setting};
use faults::FaultState;
use stats::Stats;

/// How a sandbox behaves; `Default` is a well-behaved Alegion on any free port.
#[derive(Clone, Debug)]
pub struct SandboxConfig {
    pub vendor: String,
    pub seed: u64,
    /// Seconds of sandbox clock after import until a record is finished.
    pub complete_after: f64,
    /// Probability (fixed per seed and record id) that a record ends as `exception`.
    pub exception_rate: f64,
    /// Fixed delay in seconds added to every answer.
    pub latency: Option<f64>,
    /// 0 = any free port.
    pub port: u16,
    pub faults: Faults,
    /// Count requests per client process id (`requests_by_pid`): off by default, since telling the process
    /// behind a connection costs a few milliseconds per new connection (`/proc`), which would slow down
    /// clients that open one per request, such as the vendors' SDKs in the benchmarks.
    pub track_pids: bool,
    /// Record the names of the query parameters and body fields each route receives (`stats()["wire"]`):
    /// off by default, since it buffers and parses every body once more.
    pub record_wire: bool,
    /// What no source settles, varied (see `dialect`).
    pub dialect: Dialect,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            vendor: "alegion".to_string(),
            seed: 0,
            complete_after: 0.0,
            exception_rate: 0.0,
            latency: None,
            port: 0,
            faults: Faults::default(),
            track_pids: false,
            record_wire: false,
            dialect: Dialect::default(),
        }
    }
}

/// Per-request fault probabilities (0.0 to 1.0), plus the token lifetime.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// 429 with `Retry-After: 1`, nothing stored.
    pub rate_limit: f64,
    /// 503 before anything is stored.
    pub server_error: f64,
    /// The write is stored, then a 500 is answered.
    pub commit_then_fail: f64,
    /// The connection is dropped without an answer (nothing stored).
    pub reset: f64,
    /// The answer is delayed by `slow_s` seconds.
    pub slow: f64,
    pub slow_s: f64,
    /// Token lifetime in seconds (vendor default when `None`).
    pub token_ttl: Option<f64>,
}

/// What every simulator shares: its configuration, clock and request statistics.
pub(crate) struct Shared {
    pub config: SandboxConfig,
    pub port: u16,
    pub clock: Clock,
    pub stats: Stats,
    /// Labels of known quality (`truth`), once `POST /_sim/quality` set them; `None`: the seeded labels.
    pub quality: truth::Setting,
}

impl Shared {
    pub fn new(config: SandboxConfig, port: u16) -> Shared {
        Shared {
            clock: Clock::new(),
            stats: Stats::new(),
            config,
            port,
            quality: truth::Setting::default(),
        }
    }

    /// The labelling quality set through `/_sim/quality`, if any.
    pub fn quality(&self) -> Option<truth::Quality> {
        self.quality.get()
    }
}

/// The vendor-specific part of a sandbox.
pub(crate) trait Simulator: Send + Sync + 'static {
    /// The vendor's API routes and its own `/_sim/...` hooks, each built through `routes`.
    fn router(self: Arc<Self>, routes: &Routes) -> Router;
    fn project(&self) -> String;
    fn credentials(&self) -> Vec<(String, String)>;
    fn expire_tokens(&self);
    /// The vendor's error body for a status (faults answer with it).
    fn error_body(
        &self,
        status: axum::http::StatusCode,
        message: &str,
        path: &str,
    ) -> serde_json::Value;
}

/// Wraps each route in the shared per-route layers. Per route rather than on the whole router, so the
/// statistics tag sits outside the fault layer and faulted answers are counted under their route.
pub(crate) struct Routes {
    shared: Arc<Shared>,
    faults: Arc<FaultState>,
}

impl Routes {
    /// A vendor API route: latency, faults, statistics.
    pub fn api<S>(&self, template: &'static str, route: MethodRouter<S>) -> MethodRouter<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        stats::tag(
            template,
            route.layer(axum::middleware::from_fn_with_state(
                self.faults.clone(),
                faults::layer,
            )),
        )
    }

    /// A vendor route faults never hit (login): latency and statistics only.
    pub fn exempt<S>(&self, template: &'static str, route: MethodRouter<S>) -> MethodRouter<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        stats::tag(
            template,
            route.layer(axum::middleware::from_fn_with_state(
                self.shared.clone(),
                faults::latency_layer,
            )),
        )
    }

    /// A `/_sim/` control route: statistics only.
    pub fn control<S>(&self, template: &'static str, route: MethodRouter<S>) -> MethodRouter<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        stats::tag(template, route)
    }
}

/// A running simulator. Dropping it stops the server.
pub struct Sandbox {
    port: u16,
    vendor: String,
    shared: Arc<Shared>,
    sim: Arc<dyn Simulator>,
    shutdown: Mutex<Option<watch::Sender<bool>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Far above any real import (1,000 records); axum's 2 MB default is not.
const BODY_LIMIT: usize = 256 << 20;

/// The vendors with a simulator so far.
pub const VENDORS: &[&str] = &["alegion", "taskmonk", "playment", "deepen", "sama"];

/// How long `stop` lets in-flight answers finish before the runtime is dropped.
const STOP_GRACE: Duration = Duration::from_millis(500);

impl Sandbox {
    /// Binds 127.0.0.1:`port` before returning, then serves on its own thread and runtime.
    pub fn start(config: SandboxConfig) -> Result<Sandbox, String> {
        validate(&config)?;
        if !VENDORS.contains(&config.vendor.as_str()) {
            return Err(format!(
                "unknown vendor {:?} (sandboxes exist for: {})",
                config.vendor,
                VENDORS.join(", ")
            ));
        }
        config.dialect.validate(&config.vendor)?;
        let listener = std::net::TcpListener::bind(("127.0.0.1", config.port))
            .map_err(|e| format!("sandbox: cannot bind 127.0.0.1:{}: {e}", config.port))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("sandbox: {e}"))?;
        let port = listener
            .local_addr()
            .map_err(|e| format!("sandbox: {e}"))?
            .port();

        let shared = Arc::new(Shared::new(config.clone(), port));
        let sim: Arc<dyn Simulator> = match config.vendor.as_str() {
            "alegion" => Arc::new(alegion::AlegionSim::new(shared.clone())),
            "taskmonk" => Arc::new(taskmonk::TaskMonkSim::new(shared.clone())),
            "sama" => Arc::new(sama::SamaSim::new(shared.clone())),
            "deepen" => Arc::new(deepen::DeepenSim::new(shared.clone())),
            "playment" => Arc::new(playment::PlaymentSim::new(shared.clone())),
            other => return Err(format!("unknown vendor {other:?}")),
        };

        // The runtime is built, run and dropped on the server thread only: dropping a runtime
        // inside a caller's async context would panic.
        let app = build_app(shared.clone(), sim.clone());
        let (tx, rx) = watch::channel(false);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("labelport-sandbox-{port}"))
            .spawn(move || serve(listener, app, rx, ready_tx))
            .map_err(|e| format!("sandbox: cannot start thread: {e}"))?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err("sandbox: server thread ended during start".to_string());
            }
        }

        Ok(Sandbox {
            port,
            vendor: config.vendor,
            shared,
            sim,
            shutdown: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Scheme and host only; the client adds the API path.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn vendor(&self) -> &str {
        &self.vendor
    }

    /// The seeded default project (for Alegion: the first workflow's id).
    pub fn project(&self) -> String {
        self.sim.project()
    }

    /// The seeded user's credentials, named as `Client` takes them as keyword arguments (the
    /// vendor's own names, e.g. Alegion's `username` and `password`).
    pub fn credentials(&self) -> Vec<(String, String)> {
        self.sim.credentials()
    }

    /// Requests per endpoint and status, records created per key, peak request rate.
    pub fn stats(&self) -> serde_json::Value {
        self.shared.stats.snapshot()
    }

    /// Moves the sandbox clock forward (token expiry, completion).
    pub fn advance(&self, seconds: f64) {
        self.shared.clock.advance(seconds);
    }

    /// Every token issued so far now answers 401 as expired.
    pub fn expire_tokens(&self) {
        self.sim.expire_tokens();
    }

    /// Idempotent; joins the server thread.
    pub fn stop(&self) {
        if let Some(tx) = self.shutdown.lock().take() {
            let _ = tx.send(true);
        }
        let thread = self.thread.lock().take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop();
    }
}

fn validate(config: &SandboxConfig) -> Result<(), String> {
    let f = &config.faults;
    let probabilities = [
        ("exception_rate", config.exception_rate),
        ("rate_limit", f.rate_limit),
        ("server_error", f.server_error),
        ("commit_then_fail", f.commit_then_fail),
        ("reset", f.reset),
        ("slow", f.slow),
    ];
    for (name, p) in probabilities {
        if !(0.0..=1.0).contains(&p) {
            return Err(format!("{name} must be between 0 and 1, got {p}"));
        }
    }
    let seconds = [
        ("complete_after", Some(config.complete_after)),
        ("latency", config.latency),
        ("slow_s", Some(f.slow_s)),
        ("token_ttl", f.token_ttl),
    ];
    for (name, s) in seconds {
        if let Some(s) = s {
            if !s.is_finite() || s < 0.0 {
                return Err(format!("{name} must be a number of seconds >= 0, got {s}"));
            }
        }
    }
    Ok(())
}

/// Every answer's `Date` (RFC 7231, whole seconds) on the sandbox clock, as a real server's is on its own
/// clock: adapters date a read by it where the vendor's records carry no finer time (Sama's delivery time,
/// Playment's settled completions).
async fn dated(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    mut res: axum::response::Response,
) -> axum::response::Response {
    let text = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(shared.clock.now_ms())
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    if let Ok(v) = axum::http::HeaderValue::from_str(&text) {
        res.headers_mut().insert(axum::http::header::DATE, v);
    }
    res
}

/// The vendor router and the shared control routes, under the statistics layer (outermost, so it
/// sees every request).
fn build_app(shared: Arc<Shared>, sim: Arc<dyn Simulator>) -> Router {
    let routes = Routes {
        shared: shared.clone(),
        faults: Arc::new(FaultState::new(shared.clone(), sim.clone())),
    };
    sim.clone()
        .router(&routes)
        .merge(control::router(&routes, shared.clone(), sim))
        // Imports of 1,000 records with rich `data` exceed axum's 2 MB default.
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::map_response_with_state(
            shared.clone(),
            dated,
        ))
        .layer(axum::middleware::from_fn_with_state(shared, stats::layer))
}

fn serve(
    listener: std::net::TcpListener,
    app: Router,
    mut stop: watch::Receiver<bool>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("labelport-sandbox")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(format!("sandbox: cannot build runtime: {e}")));
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => conn::KillableListener::new(l),
            Err(e) => {
                let _ = ready.send(Err(format!("sandbox: {e}")));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        let mut stop_graceful = stop.clone();
        let server = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<conn::ConnInfo>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stop_graceful.wait_for(|s| *s).await;
        });
        // Graceful shutdown waits for every open connection; a slow answer in flight must not hold
        // `stop()` for long, so the grace is bounded.
        let deadline = async move {
            let _ = stop.wait_for(|s| *s).await;
            tokio::time::sleep(STOP_GRACE).await;
        };
        tokio::select! {
            _ = server => {}
            _ = deadline => {}
        }
    });
    runtime.shutdown_timeout(STOP_GRACE);
}
