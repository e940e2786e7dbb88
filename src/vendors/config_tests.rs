//! Unit tests of `config.rs`.

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
    let dup = check_options("sama", "create_batch", &opts("exsit_ok"), &[]).expect_err("refused");
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
