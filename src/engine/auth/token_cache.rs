//! The cache every renewable bearer token shares (login tokens, OAuth2 grants): the current token, renewed
//! when due by a single fetch however many requests ask at once, and forgotten when the vendor refuses it.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use crate::engine::error::Result;

/// A token just obtained, and how long to use it before renewing.
pub(super) struct Fresh {
    pub value: Arc<str>,
    pub use_for: Duration,
}

#[derive(Clone)]
pub(super) struct Token {
    pub value: Arc<str>,
    pub generation: u64,
    renew_at: Instant,
}

pub(super) struct TokenCache {
    current: RwLock<Option<Token>>,
    fetch_lock: tokio::sync::Mutex<()>,
    generation: AtomicU64,
}

impl TokenCache {
    pub fn new() -> Self {
        TokenCache {
            current: RwLock::new(None),
            fetch_lock: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
        }
    }

    fn valid(&self) -> Option<Token> {
        self.current
            .read()
            .as_ref()
            .filter(|t| Instant::now() < t.renew_at)
            .cloned()
    }

    /// The current token, or a new one from `fetch` (one fetch at a time; others wait and reuse it).
    pub async fn get<F, Fut>(&self, fetch: F) -> Result<Token>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Fresh>>,
    {
        if let Some(t) = self.valid() {
            return Ok(t);
        }
        let _single_flight = self.fetch_lock.lock().await;
        if let Some(t) = self.valid() {
            return Ok(t);
        }
        let fresh = fetch().await?;
        let token = Token {
            value: fresh.value,
            generation: self.generation.fetch_add(1, Ordering::Relaxed) + 1,
            renew_at: Instant::now() + fresh.use_for,
        };
        *self.current.write() = Some(token.clone());
        Ok(token)
    }

    /// The token of `generation` was refused: forget it (unless a newer one replaced it already).
    pub fn invalidate(&self, generation: u64) {
        let mut current = self.current.write();
        if current.as_ref().is_some_and(|t| t.generation == generation) {
            *current = None;
        }
    }

    /// How many tokens were obtained.
    pub fn issued(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }
}
