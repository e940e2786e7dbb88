//! Auth providers: how a request gets its credentials, how a refusal is recognised, and how a refused
//! credential is renewed. Renewal is single-flight: many requests refused at once cause one new login.

mod login_token;
mod oauth2;
mod static_key;
mod token_cache;

pub use login_token::LoginToken;
pub use oauth2::OAuth2ClientCredentials;
pub use static_key::{refused_with_401, KeyPlacement, StaticKey};
use token_cache::TokenGrant;

use async_trait::async_trait;
use reqwest::RequestBuilder;

use super::error::Result;

/// Decides whether an answer means "your credential was refused" (vendors differ: Alegion answers a bad token
/// with a 500).
pub type RejectionTest = fn(status: u16, body: &[u8]) -> bool;

#[async_trait]
pub trait Auth: Send + Sync {
    /// Adds the credential to a request; returns the request and the generation of the credential used.
    async fn authorize(
        &self,
        http: &reqwest::Client,
        req: RequestBuilder,
    ) -> Result<(RequestBuilder, u64)>;
    /// Whether this answer is a refusal of the credential (so renewing and replaying once may help).
    fn is_rejection(&self, status: u16, body: &[u8]) -> bool;
    /// The credential of `generation` was refused: forget it, so the next `authorize` gets a fresh one.
    fn invalidate(&self, generation: u64);
    /// Whether a refused credential can be replaced by a fresh one (a login, a token grant).
    fn renewable(&self) -> bool {
        true
    }
    /// How many times a credential was obtained (logins, token grants): for tests and logs.
    fn renewals(&self) -> u64 {
        0
    }
    /// Every secret value this provider holds now (keys, passwords, the current token), so text from a
    /// vendor can be scrubbed of them before it reaches an exception or a log.
    fn secrets(&self) -> Vec<String>;
}

/// Every provider that obtains a bearer token (a login, an OAuth2 grant) authorizes, renews and scrubs the same
/// way: only how it gets a token, and which secrets it was given, differ.
#[async_trait]
impl<G: TokenGrant> Auth for G {
    async fn authorize(
        &self,
        http: &reqwest::Client,
        req: RequestBuilder,
    ) -> Result<(RequestBuilder, u64)> {
        let token = self.tokens().get(|| self.fetch(http)).await?;
        Ok((req.bearer_auth(&*token.value), token.generation))
    }

    fn is_rejection(&self, status: u16, body: &[u8]) -> bool {
        (self.rejection())(status, body)
    }

    fn invalidate(&self, generation: u64) {
        self.tokens().invalidate(generation)
    }

    fn renewals(&self) -> u64 {
        self.tokens().issued()
    }

    fn secrets(&self) -> Vec<String> {
        let mut out = self.given_secrets();
        out.extend(self.tokens().current_value());
        out
    }
}
