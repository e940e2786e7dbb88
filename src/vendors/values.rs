//! The checks every value a caller gives passes before it reaches the engine: durations, rates, retry
//! counts, base URLs; and `Secret`, a credential that never shows.

use std::time::Duration;

use crate::engine::{Error, Result};

/// The longest time a caller can give in seconds (a timeout, a poll interval, a stall window): a year. Longer
/// is a mistake (`1e300`, `inf`), and would overflow `Duration` and `Instant` arithmetic.
pub const MAX_SECONDS: f64 = 365.0 * 24.0 * 3600.0;

/// The most retries of one request a caller can ask for: beyond this, retrying is a hang, not resilience.
pub const MAX_RETRIES: u32 = 100;

/// Whether an argument in seconds may be 0: a wait with `timeout=0` checks once, while a request or a poll
/// interval of 0 means nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zero {
    Allowed,
    Refused,
}

/// A caller's number of seconds as a `Duration`: finite, at most `MAX_SECONDS`, and above 0 (or at 0 where
/// `zero` allows it); otherwise an `InvalidInput` naming `field`. Every duration a caller gives passes here, so
/// no `Duration::from_secs_f64` downstream can panic.
pub fn seconds(field: &str, value: f64, zero: Zero) -> Result<Duration> {
    let low_ok = match zero {
        Zero::Allowed => value >= 0.0,
        Zero::Refused => value > 0.0,
    };
    // Written so that NaN fails both comparisons.
    if low_ok && value <= MAX_SECONDS {
        return Ok(Duration::from_secs_f64(value));
    }
    let low = match zero {
        Zero::Allowed => "at least 0",
        Zero::Refused => "more than 0",
    };
    Err(Error::invalid(format!(
        "{field} must be a number of seconds, {low} and at most {MAX_SECONDS:.0} (a year), not {value}"
    ))
    .field(field))
}

/// A vendor option in seconds (`stall_timeout=`, `status_interval=`): `None` when not given (or `None` from
/// Python), else `seconds`' checks, a non-number refused the same way.
pub fn option_seconds(
    options: &std::collections::BTreeMap<String, serde_json::Value>,
    field: &str,
    zero: Zero,
) -> Result<Option<Duration>> {
    match options.get(field) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => match v.as_f64() {
            Some(s) => seconds(field, s, zero).map(Some),
            None => Err(
                Error::invalid(format!("{field} must be a number of seconds, not {v}"))
                    .field(field),
            ),
        },
    }
}

/// `rate_limit=`: requests per second, a positive finite number, or 0 for unpaced (no vendor default either,
/// `ClientConfig::pacing`).
pub fn rate_limit(value: f64) -> Result<f64> {
    if value.is_finite() && value >= 0.0 {
        return Ok(value);
    }
    Err(Error::invalid(format!(
        "rate_limit must be a positive number of requests per second (or 0: unpaced), not {value}"
    ))
    .field("rate_limit"))
}

/// `max_retries=`: from 0 to `MAX_RETRIES`.
pub fn max_retries(value: u64) -> Result<u32> {
    match u32::try_from(value) {
        Ok(n) if n <= MAX_RETRIES => Ok(n),
        _ => Err(Error::invalid(format!(
            "max_retries must be a whole number from 0 to {MAX_RETRIES}, not {value}"
        ))
        .field("max_retries")),
    }
}

/// A base URL, parsed. One holding a user name or password is refused: it would show in every `repr`, log
/// line and pickled spec, where credentials never go (they are keyword arguments, variables or a profile's).
/// Neither the message of a refusal nor that of a URL that does not parse repeats them.
pub fn parse_base_url(text: &str) -> Result<url::Url> {
    let url = url::Url::parse(text.trim_end_matches('/')).map_err(|e| {
        Error::invalid(format!(
            "base_url {:?} is not a URL: {e}",
            without_userinfo(text)
        ))
        .field("base_url")
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::invalid(format!(
            "base_url {:?} holds a user name or password: pass credentials as keyword arguments, \
             LABELPORT_<VENDOR>_<NAME> variables or a profile, never in the URL",
            without_userinfo(text)
        ))
        .field("base_url"));
    }
    Ok(url)
}

/// `text` with whatever precedes an `@` in its authority (`scheme://user:password@host`) replaced by `***`:
/// how a URL that may hold credentials is shown, whether or not it parses.
fn without_userinfo(text: &str) -> String {
    let Some(start) = text.find("://").map(|i| i + 3) else {
        return text.to_string();
    };
    let rest = &text[start..];
    let authority = rest.find(['/', '?', '#']).map_or(rest, |end| &rest[..end]);
    match authority.rfind('@') {
        Some(at) => format!("{}***{}", &text[..start], &rest[at..]),
        None => text.to_string(),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::ErrorKind;

    #[test]
    fn userinfo_is_hidden_from_shown_urls() {
        assert_eq!(
            without_userinfo("https://u:p@h:1/a@b"),
            "https://***@h:1/a@b"
        );
        assert_eq!(without_userinfo("https://h/a@b"), "https://h/a@b");
        assert_eq!(without_userinfo("http://a@b@h?x"), "http://***@h?x");
        assert_eq!(without_userinfo("not a url"), "not a url");
    }

    #[test]
    fn seconds_are_finite_and_at_most_a_year() {
        for bad in [
            1e300,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            -1.0,
            MAX_SECONDS + 1.0,
        ] {
            for zero in [Zero::Allowed, Zero::Refused] {
                let e = seconds("timeout", bad, zero).unwrap_err();
                assert_eq!(
                    (e.kind, e.field.as_deref()),
                    (ErrorKind::InvalidInput, Some("timeout"))
                );
            }
        }
        assert!(seconds("t", 0.0, Zero::Refused).is_err());
        assert_eq!(seconds("t", 0.0, Zero::Allowed).unwrap(), Duration::ZERO);
        assert_eq!(
            seconds("t", MAX_SECONDS, Zero::Refused).unwrap(),
            Duration::from_secs(365 * 24 * 3600)
        );
    }
}
