//! What every adapter is built from: the one `HttpClient` of a `Client`, built here from its resolved config
//! (timeouts, TLS roots, retry policy, `rate_limit=`, response limits), so no adapter can leave a setting out;
//! the API root under the base URL; and the trait accessors and capabilities, read from the config and the
//! vendor's spec.

use std::sync::Arc;

use serde_json::{json, Map, Value};
use url::Url;

use super::config::ClientConfig;
use crate::engine::auth::Auth;
use crate::engine::http::{ErrorParser, HttpClient};
use crate::engine::{Error, Result};

/// The HTTP client every request of an adapter goes through, `auth` attached.
pub fn http_client(
    cfg: &ClientConfig,
    auth: impl Auth + 'static,
    parse_error: ErrorParser,
) -> Result<HttpClient> {
    HttpClient::new(cfg.http_config(), Arc::new(auth), parse_error)
}

/// `segments` under the base URL (the vendor's API root); a base URL that cannot hold a path is refused.
pub fn api_root(cfg: &ClientConfig, segments: &[&str]) -> Result<Url> {
    let mut url = cfg.base_url.clone();
    url.path_segments_mut()
        .map_err(|_| Error::invalid("base_url cannot be a base").field("base_url"))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// `segments` under `root` (after its trailing slash), a URL made by [`api_root`] (which refuses a base URL that
/// cannot hold a path).
pub fn under(root: &Url, segments: &[&str]) -> Url {
    let mut url = root.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}

/// A batch id is never empty: an empty one would name the collection, not a batch.
pub fn check_batch_id(vendor: &'static str, id: &str) -> Result<()> {
    if id.trim().is_empty() {
        return Err(Error::invalid("a batch id cannot be empty")
            .vendor(vendor)
            .field("id"));
    }
    Ok(())
}

/// `create_batch(name)` without `exist_ok` where the vendor holds a batch of that name already (`id`).
pub fn batch_name_taken(vendor: &'static str, name: &str, id: &str) -> Error {
    Error::new(
        crate::engine::ErrorKind::DuplicateRecord,
        format!("a batch named {name:?} already exists (id {id}); pass exist_ok=True to use it"),
    )
    .vendor(vendor)
    .operation("create_batch")
    .key(name)
}

/// An adapter's config and HTTP client, seen by the `Adapter` trait's accessors.
pub struct Kit<'a> {
    pub cfg: &'a ClientConfig,
    pub http: &'a Arc<HttpClient>,
}

impl<'a> Kit<'a> {
    pub fn new(cfg: &'a ClientConfig, http: &'a Arc<HttpClient>) -> Self {
        Kit { cfg, http }
    }

    /// What the vendor's spec says it takes and does, with `extra` (settings of this client) added.
    pub fn capabilities(&self, extra: Map<String, Value>) -> Value {
        let spec = self.cfg.spec;
        let operations: Map<String, Value> = spec
            .operations
            .iter()
            .map(|(name, can)| (name.to_string(), json!(can)))
            .collect();
        let mut caps = json!({
            "vendor": spec.name,
            "credentials": spec.credentials,
            "client_options": spec.client_options,
            "batch_options": spec.batch_options,
            "upload_options": spec.upload_options,
            "max_records_per_request": spec.max_records_per_request,
            "operations": operations,
            "batch_created_by_first_upload": spec.batch_created_by_first_upload,
        });
        if let Value::Object(map) = &mut caps {
            map.extend(extra);
        }
        caps
    }
}
