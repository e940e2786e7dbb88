//! A fixed credential: an API key header (Playment's `x-api-key`), an API key query parameter (Sama's
//! `access_key`), or a bearer token (Deepen). Nothing to renew: a refusal is final.

use async_trait::async_trait;
use reqwest::RequestBuilder;

use super::{Auth, RejectionTest};
use crate::engine::error::Result;

/// Where the key goes on every request.
#[derive(Debug, Clone)]
pub enum KeyPlacement {
    Header(&'static str),
    Query(&'static str),
    Bearer,
}

pub struct StaticKey {
    placement: KeyPlacement,
    /// Never logged: `redact.rs` hides the header and query names that carry it.
    key: String,
    rejection: RejectionTest,
}

impl StaticKey {
    pub fn new(placement: KeyPlacement, key: impl Into<String>, rejection: RejectionTest) -> Self {
        StaticKey {
            placement,
            key: key.into(),
            rejection,
        }
    }
}

#[async_trait]
impl Auth for StaticKey {
    async fn authorize(
        &self,
        _http: &reqwest::Client,
        req: RequestBuilder,
    ) -> Result<(RequestBuilder, u64)> {
        let req = match &self.placement {
            KeyPlacement::Header(name) => req.header(*name, &self.key),
            KeyPlacement::Query(name) => req.query(&[(*name, self.key.as_str())]),
            KeyPlacement::Bearer => req.bearer_auth(&self.key),
        };
        Ok((req, 0))
    }

    fn is_rejection(&self, status: u16, body: &[u8]) -> bool {
        (self.rejection)(status, body)
    }

    fn invalidate(&self, _generation: u64) {}

    fn secrets(&self) -> Vec<String> {
        vec![self.key.clone()]
    }

    /// A fixed key cannot be renewed: a refusal is reported at once.
    fn renewable(&self) -> bool {
        false
    }
}

impl std::fmt::Debug for StaticKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StaticKey({:?}, ***)", self.placement)
    }
}

/// A refusal test for vendors whose refusals are plain 401s.
pub fn refused_with_401(status: u16, _body: &[u8]) -> bool {
    status == 401
}
