//! What a `Client` is made of: the vendor, project, base URL, credentials and options, resolved from keyword
//! arguments first, then `LABELPORT_<VENDOR>_<NAME>` environment variables, then a profile (`profile.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::engine::http::{is_loopback, HttpConfig, Limits};
use crate::engine::retry::RetryPolicy;
use crate::engine::{Error, ErrorKind, Result};

use super::profile::{self, Profile, ProfileValue};
pub use super::spec::{spec, VendorSpec, SPECS};
pub use super::values::{
    max_retries, option_seconds, parse_base_url, rate_limit, seconds, Secret, Zero, MAX_RETRIES,
    MAX_SECONDS,
};

pub type Options = BTreeMap<String, serde_json::Value>;

/// Everything a vendor adapter needs, resolved.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub spec: &'static VendorSpec,
    pub project: String,
    pub base_url: url::Url,
    pub credentials: BTreeMap<String, Secret>,
    pub options: Options,
    pub timeout: Duration,
    pub max_retries: u32,
    pub rate_limit: Option<f64>,
    /// Certificate authorities trusted besides the system's (`ca_bundle=`), for TLS-inspecting proxies and
    /// private endpoints.
    pub tls_roots: Vec<reqwest::Certificate>,
    /// The PEM file `tls_roots` came from, so a client rebuilt elsewhere (a pickled spec) reads it again.
    pub ca_bundle: Option<String>,
    /// What a server may send before the client stops with an error (`max_response_size=`, `max_pages=`).
    pub limits: Limits,
    /// The longest `Retry-After` waited out (`max_retry_wait=`); longer asks raise `RateLimited` at once.
    pub max_retry_wait: Duration,
    /// Where each credential came from (an argument, an environment variable, a profile), for the message of
    /// a refusal: a 401 says which to check and where.
    pub credential_sources: BTreeMap<String, String>,
}

impl ClientConfig {
    /// The retry policy every request of this client follows.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_retries: self.max_retries,
            max_retry_after: self.max_retry_wait,
            ..RetryPolicy::default()
        }
    }

    /// Whether the base URL names this machine (a sandbox, a test server): documented vendor limits are not
    /// kept there unless the caller asks (`pacing`, Sama's `status_interval`).
    pub fn on_loopback(&self) -> bool {
        names_this_machine(&self.base_url)
    }

    /// The requests per second this client keeps to (`None`: unpaced): `rate_limit=` when given, 0 meaning
    /// unpaced; else the vendor's documented limit (`VendorSpec::default_rate_limit`) when the base URL is its
    /// real host or any other non-loopback one; a loopback host (a sandbox, a test server) stays unpaced.
    pub fn pacing(&self) -> Option<f64> {
        pacing(
            self.rate_limit,
            self.spec.default_rate_limit,
            &self.base_url,
        )
    }

    /// The transport settings of this client's `HttpClient`: one place for timeouts, retries, the rate limit,
    /// limits, TLS and the origin every request must stay on.
    pub fn http_config(&self) -> HttpConfig {
        HttpConfig {
            vendor: self.spec.name,
            base_url: self.base_url.clone(),
            timeout: self.timeout,
            connect_timeout: CONNECT_TIMEOUT,
            retry: self.retry_policy(),
            rate_limit: self.pacing(),
            limits: self.limits,
            tls_roots: self.tls_roots.clone(),
            auth_hint: self.auth_hint(),
        }
    }

    /// "check api_key (the environment variable LABELPORT_SAMA_API_KEY)": what a refusal of the credentials
    /// should make the user look at.
    pub fn auth_hint(&self) -> Option<String> {
        let sources: Vec<String> = self
            .credentials
            .keys()
            .map(|name| match self.credential_sources.get(name) {
                Some(from) => format!("{name} (from {from})"),
                None => name.clone(),
            })
            .collect();
        (!sources.is_empty()).then(|| format!("check {}", sources.join(" and ")))
    }
}

/// The requests per second a client built here from `vendor`'s settings would keep to (`ClientConfig::pacing`)
/// without building it: `base_url` when given, else `LABELPORT_<VENDOR>_BASE_URL`, else the vendor's own
/// host. A base URL that does not parse is taken as a real host (paced): the safe side for a shared limit.
pub fn planned_pacing(
    spec: &VendorSpec,
    rate_limit: Option<f64>,
    base_url: Option<&str>,
) -> Option<f64> {
    let base = base_url
        .filter(|b| !b.is_empty())
        .map(str::to_string)
        .or_else(|| std::env::var(env_name(spec.name, "base_url")).ok())
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| spec.default_base_url.to_string());
    let url = parse_base_url(&base)
        .or_else(|_| parse_base_url(spec.default_base_url))
        .ok()?;
    pacing(rate_limit, spec.default_rate_limit, &url)
}

/// `ClientConfig::pacing`, from its parts.
fn pacing(given: Option<f64>, default: Option<f64>, base_url: &url::Url) -> Option<f64> {
    match given {
        Some(r) if r > 0.0 => Some(r),
        Some(_) => None,
        None => default.filter(|_| !names_this_machine(base_url)),
    }
}

/// Whether `url` names this machine, for pacing: `is_loopback`, or a name under `.localhost` (RFC 6761), how a
/// sandbox may be reached too. Looser than the plain-HTTP check, as a wrong answer here only paces or unpaces.
fn names_this_machine(url: &url::Url) -> bool {
    is_loopback(url)
        || url.host_str().is_some_and(|d| {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        })
}

/// How long a connection may take to open: a vendor that does not accept within this is down or unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default `max_retry_wait`: two minutes, as `RetryPolicy` waits by default.
pub const DEFAULT_MAX_RETRY_WAIT: Duration = Duration::from_secs(120);

/// What the caller gave, before the environment fills the gaps.
#[derive(Debug, Default)]
pub struct ClientArgs {
    /// Empty: the vendor comes from the profile.
    pub vendor: String,
    /// A `[profiles.NAME]` of the profile file; `None`: `LABELPORT_PROFILE`, if set.
    pub profile: Option<String>,
    pub project: Option<String>,
    pub base_url: Option<String>,
    /// Credentials and options by keyword; credentials are told apart by the vendor's credential names.
    pub keywords: BTreeMap<String, serde_json::Value>,
    pub timeout: f64,
    pub max_retries: u32,
    pub rate_limit: Option<f64>,
    pub allow_insecure: bool,
    /// A PEM file of extra certificate authorities (or `LABELPORT_<VENDOR>_CA_BUNDLE`, or the profile's).
    pub ca_bundle: Option<String>,
}

fn env_name(vendor: &str, name: &str) -> String {
    format!(
        "LABELPORT_{}_{}",
        vendor.to_ascii_uppercase(),
        name.to_ascii_uppercase()
    )
}

fn credential_string(name: &str, value: serde_json::Value) -> Result<String> {
    match value {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        _ => Err(Error::invalid(format!("credential {name} must be a string")).field(name)),
    }
}

/// The vendor: the explicit one, else the profile's; both given must agree.
fn choose_vendor(explicit: &str, profile: Option<&Profile>) -> Result<&'static VendorSpec> {
    let from_profile = profile.and_then(|p| p.vendor.as_deref().map(|v| (p, v)));
    match (explicit.trim(), from_profile) {
        ("", None) => Err(Error::invalid(match profile {
            Some(p) => format!(
                "no vendor: {} names none; pass the vendor or add vendor = \"...\" to it",
                p.describe()
            ),
            None => {
                "no vendor: pass the vendor (Client(\"sama\", ...)) or a profile that names one"
                    .to_string()
            }
        })
        .field("vendor")),
        ("", Some((p, v))) => spec(v).map_err(|e| {
            Error::invalid(format!("{}: {}", p.describe(), e.message)).field("vendor")
        }),
        (name, Some((p, v))) => {
            let chosen = spec(name)?;
            if !v.trim().eq_ignore_ascii_case(chosen.name) {
                return Err(Error::invalid(format!(
                    "{} is for vendor {v:?}, not {:?}: drop the vendor argument or choose another profile",
                    p.describe(),
                    chosen.name
                ))
                .vendor(chosen.name)
                .field("vendor"));
            }
            Ok(chosen)
        }
        (name, None) => spec(name),
    }
}

/// A profile's value for `name`: written in the file, or read from the variable it names.
fn from_profile(
    profile: Option<&Profile>,
    name: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<serde_json::Value>> {
    let Some(p) = profile else { return Ok(None) };
    match p.values.get(name) {
        None => Ok(None),
        Some(ProfileValue::Literal(v)) => Ok(Some(v.clone())),
        Some(ProfileValue::FromEnv(var)) => match env(var).filter(|v| !v.is_empty()) {
            Some(v) => Ok(Some(serde_json::Value::String(v))),
            None => Err(Error::new(
                ErrorKind::Auth,
                format!(
                    "{} takes {name} from the environment variable {var} ({name}_env), which is not set",
                    p.describe()
                ),
            )
            .field(name)),
        },
    }
}

/// Resolves keyword arguments, then the environment, then a profile, into a `ClientConfig`, or says exactly
/// what is missing. Warnings for the user (a profile file others can read) are logged.
pub fn resolve(args: ClientArgs, env: impl Fn(&str) -> Option<String>) -> Result<ClientConfig> {
    let (config, warnings) = resolve_reporting(args, env)?;
    for w in warnings {
        log::warn!(target: "labelport::config", "{w}");
    }
    Ok(config)
}

/// `resolve`, handing warnings for the user back instead of logging them.
pub fn resolve_reporting(
    args: ClientArgs,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(ClientConfig, Vec<String>)> {
    let profile_name = args
        .profile
        .clone()
        .or_else(|| env("LABELPORT_PROFILE"))
        .filter(|p| !p.is_empty());
    let (profile, warnings) = match profile_name {
        Some(name) => {
            let (p, w) = profile::load(&name, &env)?;
            (Some(p), w)
        }
        None => (None, Vec::new()),
    };
    let config = resolve_with(args, &env, profile.as_ref())?;
    Ok((config, warnings))
}

fn resolve_with(
    args: ClientArgs,
    env: &impl Fn(&str) -> Option<String>,
    profile: Option<&Profile>,
) -> Result<ClientConfig> {
    let spec = choose_vendor(&args.vendor, profile)?;
    let mut credentials = BTreeMap::new();
    let mut sources = BTreeMap::new();
    let mut options = Options::new();
    let mut args = args;
    let (limits, max_retry_wait, limit_options) =
        take_limits(spec, &mut args.keywords, env, profile)?;
    let takes = || {
        let mut allowed: Vec<&str> = spec.credentials.to_vec();
        allowed.extend(spec.client_options);
        allowed.join(", ")
    };
    for (name, value) in args.keywords {
        if spec.credentials.contains(&name.as_str()) {
            let s = credential_string(&name, value)?;
            sources.insert(name.clone(), format!("the {name}= argument"));
            credentials.insert(name, Secret::new(s));
        } else if spec.client_options.contains(&name.as_str()) {
            options.insert(name, value);
        } else {
            return Err(Error::invalid(format!(
                "{} does not take the argument {name:?}; it takes {}, {}",
                spec.name,
                takes(),
                LIMIT_OPTIONS.join(", ")
            ))
            .vendor(spec.name)
            .field(name));
        }
    }
    if let Some(p) = profile {
        for name in p.values.keys() {
            let known = ["project", "base_url", "ca_bundle"].contains(&name.as_str())
                || LIMIT_OPTIONS.contains(&name.as_str())
                || spec.credentials.contains(&name.as_str())
                || spec.client_options.contains(&name.as_str());
            if !known {
                return Err(Error::invalid(format!(
                    "{}: {} does not take {name:?}; it takes project, base_url, ca_bundle, {}",
                    p.describe(),
                    spec.name,
                    takes()
                ))
                .vendor(spec.name)
                .field(name.clone()));
            }
        }
    }
    // Client options not given by keyword: `LABELPORT_<VENDOR>_<OPTION>` (a string), then the profile.
    for name in spec.client_options {
        if options.contains_key(*name) {
            continue;
        }
        let value = match env(&env_name(spec.name, name)).filter(|v| !v.is_empty()) {
            Some(v) => Some(serde_json::Value::String(v)),
            None => from_profile(profile, name, env)?,
        };
        if let Some(v) = value {
            options.insert(name.to_string(), v);
        }
    }
    let text = |v: serde_json::Value, name: &str| -> Result<String> {
        credential_string(name, v).map_err(|e| e.vendor(spec.name))
    };
    for name in spec.credentials {
        if credentials.contains_key(*name) {
            continue;
        }
        let var = env_name(spec.name, name);
        let value = match env(&var).filter(|v| !v.is_empty()) {
            Some(v) => {
                sources.insert(name.to_string(), format!("the environment variable {var}"));
                Some(v)
            }
            None => {
                if let Some(p) = profile {
                    sources.insert(name.to_string(), p.describe());
                }
                from_profile(profile, name, env)
                    .map_err(|e| e.vendor(spec.name))?
                    .map(|v| text(v, name))
                    .transpose()?
            }
        };
        match value.filter(|v| !v.is_empty()) {
            Some(v) => {
                credentials.insert(name.to_string(), Secret::new(v));
            }
            None => {
                return Err(Error::new(
                    ErrorKind::Auth,
                    format!(
                        "no {name} for {}: pass {name}=..., set {var}, or use a profile",
                        spec.name
                    ),
                )
                .vendor(spec.name)
                .field(*name))
            }
        }
    }
    let layered = |given: Option<String>, name: &str| -> Result<Option<String>> {
        if let Some(v) = given.filter(|v| !v.is_empty()) {
            return Ok(Some(v));
        }
        if let Some(v) = env(&env_name(spec.name, name)).filter(|v| !v.is_empty()) {
            return Ok(Some(v));
        }
        match from_profile(profile, name, env).map_err(|e| e.vendor(spec.name))? {
            None => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s).filter(|s| !s.is_empty())),
            Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(Error::invalid(format!(
                "{}: {name} must be a string",
                profile.map(Profile::describe).unwrap_or_default()
            ))
            .field(name)),
        }
    };
    let project = match layered(args.project, "project")? {
        Some(p) => p,
        None => {
            return Err(Error::invalid(format!(
                "no project for {}: pass project=..., set {}, or use a profile",
                spec.name,
                env_name(spec.name, "project")
            ))
            .vendor(spec.name)
            .field("project"))
        }
    };
    let base =
        layered(args.base_url, "base_url")?.unwrap_or_else(|| spec.default_base_url.to_string());
    let base_url = parse_base_url(&base)?;
    crate::engine::http::check_scheme(&base_url, args.allow_insecure)?;
    let ca_bundle = layered(args.ca_bundle, "ca_bundle")?;
    let tls_roots = match &ca_bundle {
        Some(path) => load_ca_bundle(path)?,
        None => Vec::new(),
    };
    // Absolute, so a spec built from this client finds the same file from another working directory.
    let ca_bundle = ca_bundle.map(|p| match std::path::absolute(&p) {
        Ok(abs) => abs.to_string_lossy().into_owned(),
        Err(_) => p,
    });
    let timeout = seconds("timeout", args.timeout, Zero::Refused)?;
    let max_retries = max_retries(args.max_retries.into())?;
    let rate_limit = args.rate_limit.map(rate_limit).transpose()?;
    options.extend(limit_options);
    Ok(ClientConfig {
        spec,
        project,
        base_url,
        credentials,
        options,
        timeout,
        max_retries,
        rate_limit,
        tls_roots,
        ca_bundle,
        limits,
        max_retry_wait,
        credential_sources: sources,
    })
}

/// Options every vendor takes: what a server may send before the client stops (`http.rs` `Limits`), and the
/// longest `Retry-After` waited out. Kept among the options too, so a `ClientSpec` carries them.
pub const LIMIT_OPTIONS: [&str; 3] = ["max_response_size", "max_pages", "max_retry_wait"];

/// The limit options from keywords, then `LABELPORT_<VENDOR>_<NAME>`, then the profile; each checked.
fn take_limits(
    spec: &VendorSpec,
    keywords: &mut BTreeMap<String, serde_json::Value>,
    env: &impl Fn(&str) -> Option<String>,
    profile: Option<&Profile>,
) -> Result<(Limits, Duration, Options)> {
    let mut limits = Limits::default();
    let mut wait = DEFAULT_MAX_RETRY_WAIT;
    let mut given = Options::new();
    for name in LIMIT_OPTIONS {
        let value = match keywords.remove(name) {
            Some(v) if !v.is_null() => Some(v),
            _ => match env(&env_name(spec.name, name)).filter(|v| !v.is_empty()) {
                Some(v) => Some(serde_json::Value::String(v)),
                None => from_profile(profile, name, env)?,
            },
        };
        let Some(value) = value else { continue };
        let number = match &value {
            serde_json::Value::Number(n) => n.as_f64(),
            serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        };
        let bad = |what: &str| {
            Error::invalid(format!("{name} must be {what}"))
                .vendor(spec.name)
                .field(name)
        };
        match name {
            "max_retry_wait" => {
                let secs = number.ok_or_else(|| bad("a number of seconds"))?;
                wait = seconds(name, secs, Zero::Allowed).map_err(|e| e.vendor(spec.name))?;
            }
            _ => {
                let n = number
                    .filter(|n| n.is_finite() && *n >= 1.0 && n.fract() == 0.0 && *n <= 9e15)
                    .ok_or_else(|| bad("a positive whole number"))? as u64;
                if name == "max_pages" {
                    limits.max_pages = n;
                } else {
                    limits.max_response_bytes = n;
                }
            }
        }
        given.insert(name.to_string(), value);
    }
    Ok((limits, wait, given))
}

/// The certificates of a PEM bundle; an unreadable file or one without a certificate is an `InvalidInput`.
fn load_ca_bundle(path: &str) -> Result<Vec<reqwest::Certificate>> {
    let bad = |why: String| Error::invalid(format!("ca_bundle {path:?}: {why}")).field("ca_bundle");
    let pem = std::fs::read(path).map_err(|e| bad(format!("cannot be read ({e})")))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| bad(format!("is not a PEM certificate bundle ({e})")))?;
    if certs.is_empty() {
        return Err(bad("holds no PEM certificate".to_string()));
    }
    Ok(certs)
}

/// Checks `options` against the names an operation takes.
pub fn check_options(
    vendor: &str,
    operation: &str,
    options: &Options,
    allowed: &[&str],
) -> Result<()> {
    for name in options.keys() {
        if !allowed.contains(&name.as_str()) {
            let takes = if allowed.is_empty() {
                "no options".to_string()
            } else {
                allowed.join(", ")
            };
            let own = neutral_arguments(operation);
            let hint = closest(name, own.iter().chain(allowed))
                .map(|c| format!("did you mean {c}=? "))
                .unwrap_or_default();
            return Err(Error::invalid(format!(
                "{vendor} {operation} does not take the option {name:?}; {hint}it takes {takes}"
            ))
            .vendor(vendor)
            .operation(operation)
            .field(name.clone()));
        }
    }
    Ok(())
}

/// The arguments of a neutral call besides the vendor's options: a misspelling of one lands among the options.
fn neutral_arguments(operation: &str) -> &'static [&'static str] {
    match operation {
        "upload" => &["key", "on_error", "progress", "wait"],
        "create_batch" => &["exist_ok"],
        _ => &[],
    }
}

/// The candidate `name` most likely meant: one or two edits away (`keys` -> `key`, `exsit_ok` -> `exist_ok`),
/// case and `-`/`_` aside.
fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a &'a str>) -> Option<&'a str> {
    let norm = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let name = norm(name);
    candidates
        .map(|c| (edit_distance(&name, &norm(c)), *c))
        .filter(|(d, c)| *d <= if c.len() > 4 { 2 } else { 1 })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance over characters, with adjacent transpositions counted as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = d;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
