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
        is_loopback(&self.base_url)
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
        None => default.filter(|_| !is_loopback(base_url)),
    }
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
mod tests {

    #[test]
    fn a_misspelt_argument_is_suggested() {
        let opts = |name: &str| Options::from([(name.to_string(), serde_json::json!(1))]);
        let message = |name: &str, allowed: &[&str]| {
            check_options("alegion", "upload", &opts(name), allowed)
                .expect_err("not an option")
                .message
        };
        assert!(
            message("keys", &[]).contains("did you mean key=?"),
            "{}",
            message("keys", &[])
        );
        assert!(message("on-eror", &[]).contains("did you mean on_error=?"));
        assert!(message("priorty", &["priority", "submit"]).contains("did you mean priority=?"));
        assert!(!message("colour", &["priority"]).contains("did you mean"));
        let dup =
            check_options("sama", "create_batch", &opts("exsit_ok"), &[]).expect_err("refused");
        assert!(
            dup.message.contains("did you mean exist_ok=?"),
            "{}",
            dup.message
        );
        assert_eq!(edit_distance("keys", "key"), 1);
        assert_eq!(edit_distance("ab", "ba"), 1);
    }
    use super::*;

    fn args() -> ClientArgs {
        ClientArgs {
            vendor: "Alegion".into(),
            timeout: 30.0,
            max_retries: 3,
            ..Default::default()
        }
    }

    #[test]
    fn a_documented_rate_limit_paces_real_hosts_only_unless_the_caller_says() {
        let url = |u: &str| url::Url::parse(u).unwrap();
        let real = url("https://api.playment.io");
        // The vendor's figure on its host, or on any other non-loopback one (a proxy, a private endpoint).
        assert_eq!(pacing(None, Some(5.0), &real), Some(5.0));
        assert_eq!(
            pacing(None, Some(5.0), &url("http://10.1.2.3:8080")),
            Some(5.0)
        );
        assert_eq!(
            pacing(None, Some(5.0), &url("http://[2001:db8::1]")),
            Some(5.0)
        );
        // A sandbox or a test server on this machine stays unpaced.
        for local in [
            "http://127.0.0.1:4010",
            "http://127.9.9.9",
            "http://localhost:1",
            "http://LOCALHOST.",
            "http://sim.localhost",
            "http://[::1]:80",
        ] {
            assert_eq!(pacing(None, Some(5.0), &url(local)), None, "{local}");
        }
        // The caller's rate wins either way; 0 is unpaced, the vendor's default included.
        assert_eq!(pacing(Some(20.0), Some(5.0), &real), Some(20.0));
        assert_eq!(
            pacing(Some(2.0), Some(5.0), &url("http://127.0.0.1:1")),
            Some(2.0)
        );
        assert_eq!(pacing(Some(0.0), Some(5.0), &real), None);
        // A vendor documenting no limit is unpaced by default.
        assert_eq!(pacing(None, None, &real), None);
        // Through a resolved config: Playment's spec carries its limit, the config applies it.
        let mut a = ClientArgs {
            vendor: "playment".into(),
            project: Some("p".into()),
            timeout: 30.0,
            ..Default::default()
        };
        a.keywords.insert("api_key".into(), "k".into());
        let c = resolve(a, |_| None).unwrap();
        assert_eq!(
            (c.pacing(), c.http_config().rate_limit),
            (Some(5.0), Some(5.0))
        );
        let sandbox = ClientConfig {
            base_url: url("http://127.0.0.1:4010"),
            ..c.clone()
        };
        assert_eq!(sandbox.http_config().rate_limit, None);
        // Planned from a spec's parts, as a distributed write shares the limit out before any client exists.
        let playment = spec("playment").unwrap();
        let planned = |r, b| planned_pacing(playment, r, b);
        assert_eq!(planned(None, Some("https://api.playment.io")), Some(5.0));
        assert_eq!(planned(None, Some("http://127.0.0.1:4010")), None);
        assert_eq!(planned(Some(0.0), Some("https://api.playment.io")), None);
        assert_eq!(planned(Some(8.0), Some("http://127.0.0.1:4010")), Some(8.0));
        assert_eq!(planned(None, Some("not a url")), Some(5.0));
        assert_eq!(planned_pacing(spec("alegion").unwrap(), None, None), None);
        let unpaced = ClientConfig {
            rate_limit: Some(0.0),
            ..c
        };
        assert_eq!(unpaced.http_config().rate_limit, None);
    }

    #[test]
    fn keywords_win_over_the_environment() {
        let mut a = args();
        a.project = Some("wf".into());
        a.keywords.insert("username".into(), "kw-user".into());
        let env = |k: &str| match k {
            "LABELPORT_ALEGION_USERNAME" => Some("env-user".to_string()),
            "LABELPORT_ALEGION_PASSWORD" => Some("env-pw".to_string()),
            _ => None,
        };
        let c = resolve(a, env).unwrap();
        assert_eq!(c.credentials["username"].expose(), "kw-user");
        assert_eq!(c.credentials["password"].expose(), "env-pw");
        assert_eq!(c.base_url.as_str(), "https://app.alegion.com/");
        assert!(!format!("{c:?}").contains("env-pw"));
    }

    #[test]
    fn missing_and_unknown_arguments_are_named() {
        let mut a = args();
        a.project = Some("wf".into());
        a.keywords.insert("username".into(), "u".into());
        let e = resolve(a, |_| None).unwrap_err();
        assert_eq!(e.kind, ErrorKind::Auth);
        assert!(e.message.contains("LABELPORT_ALEGION_PASSWORD"), "{e}");

        let mut a = args();
        a.keywords.insert("api_key".into(), "k".into());
        let e = resolve(a, |_| None).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("api_key"));

        assert!(resolve(
            ClientArgs {
                vendor: "nope".into(),
                ..args()
            },
            |_| None
        )
        .is_err());
    }

    #[test]
    fn plain_http_only_to_loopback() {
        let base = |url: &str, insecure: bool| {
            let mut a = args();
            a.project = Some("wf".into());
            a.keywords.insert("username".into(), "u".into());
            a.keywords.insert("password".into(), "p".into());
            a.base_url = Some(url.into());
            a.allow_insecure = insecure;
            resolve(a, |_| None)
        };
        assert!(base("http://127.0.0.1:8080", false).is_ok());
        assert!(base("http://localhost:8080", false).is_ok());
        assert_eq!(
            base("http://example.com", false).unwrap_err().kind,
            ErrorKind::InvalidInput
        );
        assert!(base("http://example.com", true).is_ok());
    }

    #[test]
    fn credentials_in_the_base_url_are_refused_without_repeating_them() {
        let with_base = |url: &str| {
            let mut a = args();
            a.project = Some("wf".into());
            a.keywords.insert("username".into(), "u".into());
            a.keywords.insert("password".into(), "p".into());
            a.base_url = Some(url.into());
            a
        };
        for url in [
            "http://alice-in-url:s3cret-in-url@127.0.0.1:9",
            "https://alice-in-url@example.com/api",
            "https://:s3cret-in-url@example.com",
            // Does not parse at all: still not repeated.
            "http://alice-in-url:s3cret-in-url@127.0.0.1:999999",
            "http://alice-in-url:s3cret-in-url@[::1",
        ] {
            let e = resolve(with_base(url), |_| None).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidInput, "{url}: {e}");
            assert_eq!(e.field.as_deref(), Some("base_url"));
            let shown = format!("{e} {e:?}");
            assert!(
                !shown.contains("alice-in-url") && !shown.contains("s3cret-in-url"),
                "{shown}"
            );
        }
        // From the environment, and from a profile.
        let env = |k: &str| {
            (k == "LABELPORT_ALEGION_BASE_URL")
                .then(|| "http://alice-in-url:s3cret-in-url@127.0.0.1:9".to_string())
        };
        let mut a = with_base("");
        a.base_url = None;
        let e = resolve(a, env).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("base_url"));
        assert!(!e.message.contains("s3cret-in-url"), "{e}");
        let file = profile_file(
            "url-credentials",
            "[profiles.p]\nvendor = \"alegion\"\nproject = \"wf\"\nbase_url = \"https://alice-in-url:s3cret-in-url@example.com\"\n",
            0o600,
        );
        let mut a = with_base("");
        a.base_url = None;
        a.profile = Some("p".into());
        let e = resolve(a, with_profile(&file, &[])).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("base_url"));
        assert!(
            !e.message.contains("s3cret-in-url") && !e.message.contains("alice-in-url"),
            "{e}"
        );
        // An `@` in the path is no credential.
        assert!(resolve(with_base("https://example.com/team@x/api"), |_| None).is_ok());
    }

    #[test]
    fn client_limits_out_of_range_are_invalid_input_not_a_panic() {
        let base = || {
            let mut a = args();
            a.project = Some("wf".into());
            a.keywords.insert("username".into(), "u".into());
            a.keywords.insert("password".into(), "p".into());
            a
        };
        for t in [1e300, f64::NAN, f64::INFINITY, 0.0, -1.0] {
            let e = resolve(
                ClientArgs {
                    timeout: t,
                    ..base()
                },
                |_| None,
            )
            .unwrap_err();
            assert_eq!(e.field.as_deref(), Some("timeout"), "{t}");
        }
        for r in [f64::NAN, f64::INFINITY, -0.5, -1.0] {
            let e = resolve(
                ClientArgs {
                    rate_limit: Some(r),
                    ..base()
                },
                |_| None,
            )
            .unwrap_err();
            assert_eq!(e.field.as_deref(), Some("rate_limit"), "{r}");
        }
        let e = resolve(
            ClientArgs {
                max_retries: MAX_RETRIES + 1,
                ..base()
            },
            |_| None,
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("max_retries"));
        assert!(e.message.contains("100"), "{e}");
        assert_eq!(
            max_retries(u64::MAX).unwrap_err().field.as_deref(),
            Some("max_retries")
        );
        let c = resolve(
            ClientArgs {
                timeout: MAX_SECONDS,
                max_retries: MAX_RETRIES,
                rate_limit: Some(1e-300),
                ..base()
            },
            |_| None,
        )
        .unwrap();
        assert_eq!(c.max_retries, MAX_RETRIES);
    }

    /// A profile file of its own for one test, and an environment that points at it.
    fn profile_file(test: &str, text: &str, mode: u32) -> String {
        let path = std::env::temp_dir().join(format!(
            "labelport-profile-{}-{test}.toml",
            std::process::id()
        ));
        std::fs::write(&path, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        #[cfg(not(unix))]
        let _ = mode;
        path.display().to_string()
    }

    const PROFILES: &str = r#"
[profiles.prod]
vendor = "alegion"
project = "wf-profile"
base_url = "http://127.0.0.1:9"
username = "profile-user"
password_env = "MY_ALEGION_PW"

[profiles.sama]
vendor = "sama"
project = 117
api_key_env = "SAMA_KEY_VAR"
key_field = "image_id"
"#;

    fn with_profile(
        file: &str,
        vars: &'static [(&'static str, &'static str)],
    ) -> impl Fn(&str) -> Option<String> {
        let file = file.to_string();
        move |k: &str| {
            if k == "LABELPORT_CONFIG" {
                return Some(file.clone());
            }
            vars.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn keyword_wins_over_environment_over_profile() {
        let file = profile_file("precedence", PROFILES, 0o600);
        let named = |kw: &[(&str, &str)]| {
            let mut a = args();
            a.vendor = String::new();
            a.profile = Some("prod".into());
            for (k, v) in kw {
                a.keywords.insert(k.to_string(), (*v).into());
            }
            a
        };
        // Profile only (the password through the variable it names).
        let env = with_profile(&file, &[("MY_ALEGION_PW", "pw-from-named-var")]);
        let (c, warnings) = resolve_reporting(named(&[]), &env).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(c.spec.name, "alegion");
        assert_eq!(c.project, "wf-profile");
        assert_eq!(c.base_url.as_str(), "http://127.0.0.1:9/");
        assert_eq!(c.credentials["username"].expose(), "profile-user");
        assert_eq!(c.credentials["password"].expose(), "pw-from-named-var");
        // The environment wins over the profile.
        let env = with_profile(
            &file,
            &[
                ("MY_ALEGION_PW", "pw-from-named-var"),
                ("LABELPORT_ALEGION_USERNAME", "env-user"),
                ("LABELPORT_ALEGION_PROJECT", "wf-env"),
                ("LABELPORT_ALEGION_PASSWORD", "env-pw"),
            ],
        );
        let c = resolve(named(&[]), &env).unwrap();
        assert_eq!(c.credentials["username"].expose(), "env-user");
        assert_eq!(c.credentials["password"].expose(), "env-pw");
        assert_eq!(c.project, "wf-env");
        // A keyword wins over both.
        let mut a = named(&[("username", "kw-user")]);
        a.project = Some("wf-kw".into());
        let c = resolve(a, &env).unwrap();
        assert_eq!(c.credentials["username"].expose(), "kw-user");
        assert_eq!(c.project, "wf-kw");
        assert!(!format!("{c:?}").contains("env-pw"));
    }

    #[test]
    fn profile_chosen_by_labelport_profile_gives_options_and_numbers() {
        let file = profile_file("env-chosen", PROFILES, 0o600);
        let env = with_profile(
            &file,
            &[("LABELPORT_PROFILE", "sama"), ("SAMA_KEY_VAR", "k-123")],
        );
        let mut a = args();
        a.vendor = "sama".into();
        let c = resolve(a, &env).unwrap();
        assert_eq!(c.project, "117");
        assert_eq!(c.credentials["api_key"].expose(), "k-123");
        assert_eq!(c.options["key_field"], serde_json::json!("image_id"));
        // An option from the environment wins over the profile's.
        let env = with_profile(
            &file,
            &[
                ("LABELPORT_PROFILE", "sama"),
                ("SAMA_KEY_VAR", "k-123"),
                ("LABELPORT_SAMA_KEY_FIELD", "env_key"),
            ],
        );
        let c = resolve(
            ClientArgs {
                vendor: "sama".into(),
                ..args()
            },
            &env,
        )
        .unwrap();
        assert_eq!(c.options["key_field"], serde_json::json!("env_key"));
        // The variable a profile names must be set.
        let env = with_profile(&file, &[("LABELPORT_PROFILE", "sama")]);
        let e = resolve(
            ClientArgs {
                vendor: "sama".into(),
                ..args()
            },
            &env,
        )
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Auth);
        assert!(e.message.contains("SAMA_KEY_VAR"), "{e}");
    }

    #[test]
    fn profile_errors_are_named() {
        let file = profile_file("errors", PROFILES, 0o600);
        let env = with_profile(&file, &[]);
        // A vendor that disagrees with the profile's.
        let mut a = args();
        a.profile = Some("prod".into());
        a.vendor = "sama".into();
        let e = resolve(a, &env).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidInput);
        assert!(
            e.message.contains("\"alegion\"") && e.message.contains(&file),
            "{e}"
        );
        // An unknown profile: the file and the names it has.
        let mut a = args();
        a.profile = Some("staging".into());
        let e = resolve(a, &env).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("profile"));
        assert!(
            e.message.contains("staging") && e.message.contains("prod, sama"),
            "{e}"
        );
        // Neither a vendor nor a profile.
        let mut a = args();
        a.vendor = String::new();
        let e = resolve(a, |_| None).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("vendor"));
        // Malformed TOML: the file and the line.
        let bad = profile_file(
            "malformed",
            "[profiles.prod]\nvendor = \"sama\"\nproject = \n",
            0o600,
        );
        let mut a = args();
        a.profile = Some("prod".into());
        let e = resolve(a, with_profile(&bad, &[])).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidInput);
        assert!(
            e.message.contains(&bad) && e.message.contains("line 3"),
            "{e}"
        );
        // A key the vendor does not take.
        let odd = profile_file(
            "odd",
            "[profiles.p]\nvendor = \"sama\"\nusername = \"x\"\n",
            0o600,
        );
        let mut a = args();
        a.vendor = String::new();
        a.profile = Some("p".into());
        let e = resolve(a, with_profile(&odd, &[])).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("username"));
    }

    #[cfg(unix)]
    #[test]
    fn a_readable_file_holding_a_secret_warns() {
        let text = "[profiles.p]\nvendor = \"sama\"\nproject = \"1\"\napi_key = \"in-the-file\"\n";
        let open = profile_file("open", text, 0o644);
        let mut a = args();
        a.vendor = String::new();
        a.profile = Some("p".into());
        let (c, warnings) = resolve_reporting(a, with_profile(&open, &[])).unwrap();
        assert_eq!(c.credentials["api_key"].expose(), "in-the-file");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("chmod 600") && warnings[0].contains(&open));
        assert!(!warnings[0].contains("in-the-file"));
        // Owner only, or no secret in the file: no warning.
        let closed = profile_file("closed", text, 0o600);
        let mut a = args();
        a.vendor = String::new();
        a.profile = Some("p".into());
        assert!(resolve_reporting(a, with_profile(&closed, &[]))
            .unwrap()
            .1
            .is_empty());
        let named = profile_file(
            "named-only",
            "[profiles.p]\nvendor = \"sama\"\nproject = \"1\"\napi_key_env = \"K\"\n",
            0o644,
        );
        let mut a = args();
        a.vendor = String::new();
        a.profile = Some("p".into());
        let env = with_profile(&named, &[("K", "v")]);
        assert!(resolve_reporting(a, env).unwrap().1.is_empty());
    }
}
