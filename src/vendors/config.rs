//! What a `Client` is made of: the vendor, project, base URL, credentials and options, resolved from keyword
//! arguments first, then `LABELPORT_<VENDOR>_<NAME>` environment variables.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::engine::{Error, ErrorKind, Result};

pub type Options = BTreeMap<String, serde_json::Value>;

/// A credential value: never shown by `Debug`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The fixed facts of a vendor: its credential names, the options it takes, its default host.
#[derive(Debug)]
pub struct VendorSpec {
    pub name: &'static str,
    pub credentials: &'static [&'static str],
    pub default_base_url: &'static str,
    pub client_options: &'static [&'static str],
    pub batch_options: &'static [&'static str],
    pub upload_options: &'static [&'static str],
    /// Without `key=`, the field that keys a record that has it (before the content hash).
    pub default_key: Option<&'static str>,
    /// A field that holds a file: bytes travel as `{"base64": ...}`, paths as strings.
    pub file_field: Option<&'static str>,
}

pub const SPECS: &[VendorSpec] = &[
    VendorSpec {
        name: "alegion",
        credentials: &["username", "password"],
        default_base_url: "https://app.alegion.com",
        client_options: &[],
        batch_options: &["is_enabled"],
        default_key: None,
        file_field: None,
        upload_options: &[],
    },
    VendorSpec {
        name: "taskmonk",
        credentials: &["client_id", "client_secret"],
        default_base_url: "https://api.taskmonk.io",
        client_options: &[
            "key_column",
            "output_fields",
            "export_format",
            "stall_timeout",
        ],
        batch_options: &["priority", "comments", "start_time"],
        default_key: None,
        file_field: None,
        upload_options: &["priority"],
    },
    VendorSpec {
        name: "playment",
        credentials: &["api_key"],
        default_base_url: "https://api.playment.io",
        // A job needs the tag (or v1 work_flow_id) Playment hands out at integration: a client setting,
        // overridable per upload. Batches take only a name and a description.
        client_options: &["tag", "work_flow_id", "priority_weight", "max_concurrency"],
        batch_options: &["description"],
        default_key: None,
        file_field: None,
        upload_options: &["priority_weight", "tag", "work_flow_id"],
    },
    VendorSpec {
        name: "deepen",
        credentials: &["api_token"],
        default_base_url: "https://tools.deepen.ai",
        client_options: &[],
        batch_options: &["dataset_type", "labelling_profile_id"],
        default_key: Some("name"),
        file_field: Some("file"),
        upload_options: &[],
    },
    VendorSpec {
        name: "sama",
        credentials: &["api_key"],
        default_base_url: "https://api.sama.com",
        client_options: &["client_batch_field", "key_field"],
        batch_options: &[],
        default_key: None,
        file_field: None,
        upload_options: &["priority", "submit"],
    },
];

pub fn spec(vendor: &str) -> Result<&'static VendorSpec> {
    let wanted = vendor.trim().to_ascii_lowercase();
    SPECS.iter().find(|s| s.name == wanted).ok_or_else(|| {
        let known: Vec<&str> = SPECS.iter().map(|s| s.name).collect();
        Error::invalid(format!(
            "unknown vendor {vendor:?}; labelport knows {}",
            known.join(", ")
        ))
        .field("vendor")
    })
}

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
}

/// What the caller gave, before the environment fills the gaps.
#[derive(Debug, Default)]
pub struct ClientArgs {
    pub vendor: String,
    pub project: Option<String>,
    pub base_url: Option<String>,
    /// Credentials and options by keyword; credentials are told apart by the vendor's credential names.
    pub keywords: BTreeMap<String, serde_json::Value>,
    pub timeout: f64,
    pub max_retries: u32,
    pub rate_limit: Option<f64>,
    pub allow_insecure: bool,
}

fn env_name(vendor: &str, name: &str) -> String {
    format!(
        "LABELPORT_{}_{}",
        vendor.to_ascii_uppercase(),
        name.to_ascii_uppercase()
    )
}

/// Resolves keyword arguments, then the environment, into a `ClientConfig`, or says exactly what is missing.
pub fn resolve(args: ClientArgs, env: impl Fn(&str) -> Option<String>) -> Result<ClientConfig> {
    let spec = spec(&args.vendor)?;
    let mut credentials = BTreeMap::new();
    let mut options = Options::new();
    for (name, value) in args.keywords {
        if spec.credentials.contains(&name.as_str()) {
            let s = match value {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                _ => {
                    return Err(
                        Error::invalid(format!("credential {name} must be a string")).field(name),
                    )
                }
            };
            credentials.insert(name, Secret::new(s));
        } else if spec.client_options.contains(&name.as_str()) {
            options.insert(name, value);
        } else {
            let mut allowed: Vec<&str> = spec.credentials.to_vec();
            allowed.extend(spec.client_options);
            return Err(Error::invalid(format!(
                "{} does not take the argument {name:?}; it takes {}",
                spec.name,
                allowed.join(", ")
            ))
            .vendor(spec.name)
            .field(name));
        }
    }
    for name in spec.credentials {
        if credentials.contains_key(*name) {
            continue;
        }
        let var = env_name(spec.name, name);
        match env(&var).filter(|v| !v.is_empty()) {
            Some(v) => {
                credentials.insert(name.to_string(), Secret::new(v));
            }
            None => {
                return Err(Error::new(
                    ErrorKind::Auth,
                    format!("no {name} for {}: pass {name}=... or set {var}", spec.name),
                )
                .vendor(spec.name)
                .field(*name))
            }
        }
    }
    let project = match args
        .project
        .or_else(|| env(&env_name(spec.name, "project")))
        .filter(|p| !p.is_empty())
    {
        Some(p) => p,
        None => {
            return Err(Error::invalid(format!(
                "no project for {}: pass project=... or set {}",
                spec.name,
                env_name(spec.name, "project")
            ))
            .vendor(spec.name)
            .field("project"))
        }
    };
    let base = args
        .base_url
        .or_else(|| env(&env_name(spec.name, "base_url")))
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| spec.default_base_url.to_string());
    let base_url = url::Url::parse(base.trim_end_matches('/')).map_err(|e| {
        Error::invalid(format!("base_url {base:?} is not a URL: {e}")).field("base_url")
    })?;
    crate::engine::http::check_scheme(&base_url, args.allow_insecure)?;
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        return Err(
            Error::invalid("timeout must be a positive number of seconds").field("timeout"),
        );
    }
    if let Some(r) = args.rate_limit {
        if !(r.is_finite() && r > 0.0) {
            return Err(Error::invalid(
                "rate_limit must be a positive number of requests per second",
            )
            .field("rate_limit"));
        }
    }
    Ok(ClientConfig {
        spec,
        project,
        base_url,
        credentials,
        options,
        timeout: Duration::from_secs_f64(args.timeout),
        max_retries: args.max_retries,
        rate_limit: args.rate_limit,
    })
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
            return Err(Error::invalid(format!(
                "{vendor} {operation} does not take the option {name:?}; it takes {takes}"
            ))
            .vendor(vendor)
            .operation(operation)
            .field(name.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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
}
