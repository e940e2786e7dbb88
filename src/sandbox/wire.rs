//! What a client put on the wire, by name: the query parameters and body fields of each request, per
//! route (`stats()["wire"]`, when started with `record_wire`). tests/test_ledgers.py checks every name
//! against the vendor's ledger (docs/vendors/<vendor>.md), so nothing is sent that no source lists.

use std::collections::BTreeSet;

use serde_json::Value;

/// Deep enough for every body labelport sends; deeper levels are user data.
const MAX_DEPTH: usize = 6;

/// The query parameters' names, decoded.
pub fn query_names(query: Option<&str>) -> BTreeSet<String> {
    query
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, _)| k.into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The body's field names: JSON paths (`a.b`, `a[].b`), form fields, multipart part names; nothing for
/// other bodies (text, archives), which have no fields.
pub fn body_fields(content_type: &str, body: &[u8]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if body.is_empty() {
        return out;
    }
    if mime == "application/json" || mime.ends_with("+json") {
        if let Ok(v) = serde_json::from_slice::<Value>(body) {
            paths(&v, "", 0, &mut out);
        }
    } else if mime == "application/x-www-form-urlencoded" {
        out.extend(url::form_urlencoded::parse(body).map(|(k, _)| k.into_owned()));
    } else if mime == "multipart/form-data" {
        if let Ok(parts) = super::multipart::parts(content_type, body) {
            out.extend(parts.into_iter().filter_map(|(name, _)| name));
        }
    }
    out
}

fn paths(v: &Value, prefix: &str, depth: usize, out: &mut BTreeSet<String>) {
    if depth >= MAX_DEPTH {
        return;
    }
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(path.clone());
                paths(child, &path, depth + 1, out);
            }
        }
        Value::Array(items) => {
            let path = format!("{prefix}[]");
            for item in items {
                paths(item, &path, depth + 1, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_json_paths_forms_and_queries() {
        let got = body_fields(
            "application/json; charset=utf-8",
            br#"{"name":"b","files":[{"file_size":3},{"file_type":"z"}],"data":{"k":[1]}}"#,
        );
        let want = [
            "name",
            "files",
            "files[].file_size",
            "files[].file_type",
            "data",
            "data.k",
        ];
        assert_eq!(got, want.iter().map(|s| s.to_string()).collect());
        // A top-level list: its items' fields under `[]`.
        let got = body_fields("application/json", br#"[{"a":1}]"#);
        assert_eq!(got, ["[].a".to_string()].into_iter().collect());
        let got = body_fields(
            "application/x-www-form-urlencoded",
            b"grant_type=x&client%5Fid=y",
        );
        assert_eq!(got, ["client_id", "grant_type"].map(String::from).into());
        assert!(body_fields("text/plain", b"a,b\n1,2").is_empty());
        let q = query_names(Some("page=1&page%53ize=2&page=3"));
        assert_eq!(q, ["page", "pageSize"].map(String::from).into());
    }
}
