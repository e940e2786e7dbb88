//! Redaction by allowlist: only query parameters known to be harmless are shown in logs, errors and reprs.
//! Signed URLs, Sama's `access_key` and TaskMonk's token query never appear.

use url::Url;

/// Query parameters that carry no secret (pagination, filters, ids).
const SAFE_QUERY_PARAMS: &[&str] = &[
    "page",
    "pageSize",
    "page_size",
    "page_token",
    "pageToken",
    "per_page",
    "limit",
    "offset",
    "cursor",
    "sort",
    "status",
    "state",
    "minCreatedAt",
    "maxCreatedAt",
    "from",
    "to",
    "since",
    "batch_id",
    "project_id",
    "client_batch_id",
    "client_batch_id_match_type",
    "omit_answers",
    "omit_failed_task_data",
    "fileType",
    "output_format",
    "input_type",
    "grant_type",
];

pub const REDACTED: &str = "REDACTED";

/// The URL as it may be shown: every query value not on the allowlist, and any userinfo, replaced.
pub fn redact_url(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_password(None);
    let _ = shown.set_username("");
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if SAFE_QUERY_PARAMS.contains(&k.as_ref()) {
                    v.into_owned()
                } else {
                    REDACTED.to_string()
                };
                (k.into_owned(), v)
            })
            .collect();
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    shown.to_string()
}

/// Secrets shorter than this are not searched for: a 3-character "password" would redact half a message,
/// and no vendor issues keys that short.
const MIN_SECRET_LEN: usize = 4;

/// `text` with every occurrence of each secret (as sent: raw, or percent-encoded in a query) replaced by
/// `REDACTED`: a vendor's error body may quote the request it refused.
pub fn redact_secrets(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= MIN_SECRET_LEN) {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), REDACTED);
        }
        let encoded: String = url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
        if encoded != *s && out.contains(encoded.as_str()) {
            out = out.replace(encoded.as_str(), REDACTED);
        }
    }
    out
}

/// Headers whose values are never shown.
pub fn is_secret_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "authorization" | "proxy-authorization" | "x-api-key" | "cookie" | "set-cookie"
    ) || n.contains("token")
        || n.contains("secret")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_query_values_are_redacted() {
        let u =
            Url::parse("https://api.sama.com/v2/tasks?access_key=s3cr3t&page=2&sort=%2BcreatedAt")
                .unwrap();
        let shown = redact_url(&u);
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("access_key=REDACTED"), "{shown}");
        assert!(shown.contains("page=2"), "{shown}");
    }

    #[test]
    fn userinfo_is_removed() {
        let u = Url::parse("https://user:pw@example.com/x").unwrap();
        assert!(!redact_url(&u).contains("pw"));
    }

    #[test]
    fn secrets_quoted_in_text_are_redacted_raw_and_encoded() {
        let secrets = vec!["s3cr3t/key+1".to_string(), "ab".to_string()];
        let text = "refused access_key=s3cr3t%2Fkey%2B1 and s3cr3t/key+1 (ab stays: too short)";
        let out = redact_secrets(text, &secrets);
        assert!(!out.contains("s3cr3t"), "{out}");
        assert_eq!(out.matches(REDACTED).count(), 2, "{out}");
        assert!(out.contains("ab stays"), "{out}");
    }

    #[test]
    fn secret_headers() {
        assert!(is_secret_header("Authorization"));
        assert!(is_secret_header("X-API-Key"));
        assert!(!is_secret_header("content-type"));
    }
}
