//! RFC 8288 `Link` header parsing: `<url>; rel="next", <url>; rel="last"` in any order, spacing and quoting,
//! with relative URLs resolved against the request URL and space-separated relation lists.

use url::Url;

/// The targets of a `Link` header by relation name (lower-cased), in header order.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Links {
    entries: Vec<(String, Url)>,
}

impl Links {
    pub fn get(&self, rel: &str) -> Option<&Url> {
        self.entries.iter().find(|(r, _)| r == rel).map(|(_, u)| u)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Parses one or more `Link` header values. Malformed entries are skipped rather than failing the page: the
/// header is a hint and pagination also has the total count to go by.
pub fn parse_link_header<'a>(values: impl IntoIterator<Item = &'a str>, base: &Url) -> Links {
    let mut links = Links::default();
    for value in values {
        for entry in split_entries(value) {
            if let Some((target, rels)) = parse_entry(entry) {
                let Ok(url) = base.join(target) else { continue };
                for rel in rels {
                    links.entries.push((rel, url.clone()));
                }
            }
        }
    }
    links
}

/// Splits on commas that are outside `<...>` and outside quoted strings.
fn split_entries(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut in_angle, mut in_quote, mut start) = (false, false, 0);
    for (i, c) in value.char_indices() {
        match c {
            '<' if !in_quote => in_angle = true,
            '>' if !in_quote => in_angle = false,
            '"' if !in_angle => in_quote = !in_quote,
            ',' if !in_angle && !in_quote => {
                out.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&value[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect()
}

fn parse_entry(entry: &str) -> Option<(&str, Vec<String>)> {
    let entry = entry.trim();
    let rest = entry.strip_prefix('<')?;
    let close = rest.find('>')?;
    let target = rest[..close].trim();
    let mut rels = Vec::new();
    for param in rest[close + 1..].split(';') {
        let Some((name, value)) = param.split_once('=') else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("rel") {
            continue;
        }
        let value = value.trim().trim_matches('"').trim();
        rels.extend(
            value
                .split_ascii_whitespace()
                .map(|r| r.to_ascii_lowercase()),
        );
    }
    (!rels.is_empty()).then_some((target, rels))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("https://app.alegion.com/api/v1/batches/b/records?page=2&pageSize=20").unwrap()
    }

    #[test]
    fn the_documented_example() {
        let h = r#"<https://app.alegion.com/api/v1/batches/{batchId}/records?page=1&pageSize=20&sort=-createdAt>;rel="first", <https://app.alegion.com/api/v1/batches/{batchId}/records?page=1&pageSize=20&sort=-createdAt>;rel="prev", <https://app.alegion.com/api/v1/batches/{batchId}/records?page=3&pageSize=20&sort=-createdAt>;rel="next", <https://app.alegion.com/api/v1/batches/{batchId}/records?page=3&pageSize=20&sort=-createdAt>;rel="last""#;
        let links = parse_link_header([h], &base());
        assert!(links.get("next").unwrap().as_str().contains("page=3"));
        assert!(links.get("prev").unwrap().as_str().contains("page=1"));
        assert!(links.get("first").unwrap().as_str().contains("page=1"));
        assert!(links.get("last").unwrap().as_str().contains("page=3"));
    }

    #[test]
    fn any_order_spacing_quoting_and_relative_urls() {
        let h = r#"  </api/v1/x?page=9> ;  REL=last ,<?page=3>; title="a, b; c"; rel = "next""#;
        let links = parse_link_header([h], &base());
        assert_eq!(
            links.get("last").unwrap().as_str(),
            "https://app.alegion.com/api/v1/x?page=9"
        );
        assert_eq!(
            links.get("next").unwrap().as_str(),
            "https://app.alegion.com/api/v1/batches/b/records?page=3"
        );
        assert!(links.get("prev").is_none());
    }

    #[test]
    fn multiple_relations_and_header_lines() {
        let links = parse_link_header(
            ["<a?page=2>; rel=\"next last\"", "<a?page=1>; rel=first"],
            &base(),
        );
        assert_eq!(links.get("next"), links.get("last"));
        assert!(links.get("first").unwrap().as_str().ends_with("a?page=1"));
    }

    #[test]
    fn garbage_is_skipped() {
        let links = parse_link_header(["nonsense, <x>; norel, <y>; rel=next"], &base());
        assert!(links.get("next").unwrap().as_str().ends_with("/y"));
        assert!(parse_link_header([""], &base()).is_empty());
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a vendor sends, parsing never panics.
        #[test]
        fn never_panics(header in ".{0,300}") {
            let base = Url::parse("https://h/x?page=1").unwrap();
            let _ = parse_link_header([header.as_str()], &base);
        }

        /// Entries in any order, with any spacing and quoting, parse back to their targets.
        #[test]
        fn any_order_spacing_quoting(
            pages in proptest::collection::vec(1u32..10_000, 1..5),
            spaces in proptest::collection::vec(0usize..3, 8),
            quoted in any::<bool>(),
        ) {
            let rels = ["first", "prev", "next", "last"];
            let base = Url::parse("https://h/api/v1/list?page=1").unwrap();
            let sp = |i: usize| " ".repeat(spaces[i % spaces.len()]);
            let entries: Vec<String> = pages.iter().enumerate().map(|(i, p)| {
                let rel = if quoted { format!("\"{}\"", rels[i]) } else { rels[i].to_string() };
                format!("{}<https://h/api/v1/list?page={p}>{};{}rel={rel}", sp(i), sp(i + 1), sp(i + 2))
            }).collect();
            let header = entries.iter().rev().cloned().collect::<Vec<_>>().join(",");
            let links = parse_link_header([header.as_str()], &base);
            for (i, p) in pages.iter().enumerate() {
                let want = format!("https://h/api/v1/list?page={p}");
                prop_assert_eq!(links.get(rels[i]).map(|u| u.to_string()), Some(want));
            }
        }
    }
}
