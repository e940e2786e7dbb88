//! Page-number pagination as REST backends of the Spring kind do it: `page` (1-based), `pageSize`,
//! `sort=±field`, answered with `X-Total-Count` and an RFC 8288 `Link` header of absolute URLs.
//! Shared by the simulators; error wording is left to each vendor.

use axum::http::{HeaderMap, HeaderValue};

/// The decoded query string. `+` decodes to a space, as on a Java server, and unknown parameters
/// are simply never asked for.
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
            .into_owned()
            .collect();
        Query { pairs }
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A parameter that could not be converted (the vendor words the error).
#[derive(Debug)]
pub struct BadParam {
    pub value: String,
    /// The Java type it should have converted to, e.g. `int`.
    pub expected: &'static str,
}

pub struct Defaults {
    pub page_size: u64,
    pub max_page_size: u64,
    pub descending: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PageRequest {
    pub page: u64,
    pub page_size: u64,
    pub descending: bool,
    /// The sort field (`createdAt` when absent or unrecognised).
    pub sort_key: String,
}

impl PageRequest {
    pub fn parse(q: &Query, d: &Defaults) -> Result<PageRequest, BadParam> {
        let page = int_param(q.get("page"))?.unwrap_or(1).max(1) as u64;
        let page_size = match int_param(q.get("pageSize"))? {
            Some(n) if n >= 1 => (n as u64).min(d.max_page_size),
            _ => d.page_size,
        };
        let (sort_key, descending) = match q.get("sort").map(parse_sort) {
            Some(Some((key, desc))) => (key, desc),
            _ => ("createdAt".to_string(), d.descending),
        };
        Ok(PageRequest {
            page,
            page_size,
            descending,
            sort_key,
        })
    }

    /// The items of this page as a range of positions in *ascending* order (reverse them when
    /// descending). Past the end: an empty range.
    pub fn window(&self, total: u64) -> (u64, u64) {
        let skip = (self.page - 1).saturating_mul(self.page_size);
        if skip >= total {
            return (0, 0);
        }
        let take = self.page_size.min(total - skip);
        if self.descending {
            (total - skip - take, total - skip)
        } else {
            (skip, skip + take)
        }
    }

    pub fn last_page(&self, total: u64) -> u64 {
        total.div_ceil(self.page_size).max(1)
    }

    /// The `sort` value to put in links (encoded by the URL serializer, so `+` becomes `%2B`).
    fn sort_value(&self) -> String {
        format!(
            "{}{}",
            if self.descending { "-" } else { "+" },
            self.sort_key
        )
    }

    /// `X-Total-Count` and `Link` for this page. `base` is the absolute URL without query; `filters`
    /// are carried into every link. Links in the order first, prev, next, last; prev omitted on the
    /// first page, next on the last.
    pub fn headers(&self, base: &str, total: u64, filters: &[(&str, &str)]) -> HeaderMap {
        let last = self.last_page(total);
        let mut rels = vec![("first", 1)];
        if self.page > 1 {
            rels.push(("prev", self.page - 1));
        }
        if self.page < last {
            rels.push(("next", self.page + 1));
        }
        rels.push(("last", last));
        let sort = self.sort_value();
        let link = rels
            .iter()
            .map(|(rel, page)| {
                let mut q = url::form_urlencoded::Serializer::new(String::new());
                q.append_pair("page", &page.to_string())
                    .append_pair("pageSize", &self.page_size.to_string())
                    .append_pair("sort", &sort);
                for (k, v) in filters {
                    q.append_pair(k, v);
                }
                format!("<{base}?{}>;rel=\"{rel}\"", q.finish())
            })
            .collect::<Vec<_>>()
            .join(", ");
        let mut h = HeaderMap::new();
        h.insert("x-total-count", HeaderValue::from(total));
        if let Ok(v) = HeaderValue::from_str(&link) {
            h.insert("link", v);
        }
        h
    }
}

fn int_param(v: Option<&str>) -> Result<Option<i64>, BadParam> {
    match v {
        None => Ok(None),
        Some("") => Ok(None),
        Some(s) => s
            .parse::<i32>()
            .map(|n| Some(n as i64))
            .map_err(|_| BadParam {
                value: s.to_string(),
                expected: "int",
            }),
    }
}

/// `-createdAt` descending; `+createdAt`, ` createdAt` (a `+` decoded to space) and `createdAt`
/// ascending; also Spring's `createdAt,desc`.
fn parse_sort(v: &str) -> Option<(String, bool)> {
    let v = v.trim_end();
    let (v, mut desc) = match v.strip_prefix('-') {
        Some(rest) => (rest, true),
        None => (v.trim_start().trim_start_matches('+'), false),
    };
    let (key, dir) = match v.split_once(',') {
        Some((k, d)) => (k, Some(d.trim().to_ascii_lowercase())),
        None => (v, None),
    };
    match dir.as_deref() {
        Some("desc") => desc = true,
        Some("asc") => desc = false,
        _ => {}
    }
    let key = key.trim();
    if key.is_empty() {
        return None;
    }
    Some((key.to_string(), desc))
}

/// `http://<Host header><path>`: links point back where the client actually connected.
pub fn base_url(headers: &HeaderMap, path: &str, fallback_host: &str) -> String {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or(fallback_host);
    format!("http://{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Defaults = Defaults {
        page_size: 20,
        max_page_size: 1000,
        descending: false,
    };

    fn req(raw: &str) -> PageRequest {
        PageRequest::parse(&Query::parse(Some(raw)), &D).unwrap()
    }

    #[test]
    fn sort_forms() {
        assert!(req("sort=-createdAt").descending);
        assert!(!req("sort=%2BcreatedAt").descending);
        assert!(!req("sort=+createdAt").descending);
        assert!(!req("sort=createdAt").descending);
        assert!(req("sort=createdAt,desc").descending);
        assert!(!req("").descending);
    }

    #[test]
    fn sizes_and_errors() {
        let r = req("page=0&pageSize=5000&_=123");
        assert_eq!((r.page, r.page_size), (1, 1000));
        assert_eq!(req("pageSize=0").page_size, 20);
        assert!(PageRequest::parse(&Query::parse(Some("page=abc")), &D).is_err());
        assert!(PageRequest::parse(&Query::parse(Some("pageSize=1.5")), &D).is_err());
    }

    #[test]
    fn windows() {
        assert_eq!(req("page=2&pageSize=20").window(42), (20, 40));
        assert_eq!(req("page=3&pageSize=20").window(42), (40, 42));
        assert_eq!(req("page=4&pageSize=20").window(42), (0, 0));
        assert_eq!(
            req("page=1&pageSize=20&sort=-createdAt").window(42),
            (22, 42)
        );
        assert_eq!(req("page=3&pageSize=20&sort=-createdAt").window(42), (0, 2));
    }

    #[test]
    fn link_header_as_documented() {
        let r = req("page=2&pageSize=20&sort=-createdAt");
        let h = r.headers("https://h/api/v1/batches/b/records", 42, &[]);
        assert_eq!(h["x-total-count"], "42");
        assert_eq!(
            h["link"],
            "<https://h/api/v1/batches/b/records?page=1&pageSize=20&sort=-createdAt>;rel=\"first\", \
             <https://h/api/v1/batches/b/records?page=1&pageSize=20&sort=-createdAt>;rel=\"prev\", \
             <https://h/api/v1/batches/b/records?page=3&pageSize=20&sort=-createdAt>;rel=\"next\", \
             <https://h/api/v1/batches/b/records?page=3&pageSize=20&sort=-createdAt>;rel=\"last\""
        );
        let h = req("").headers("http://h/x", 0, &[("status", "exception,canceled")]);
        assert_eq!(h["x-total-count"], "0");
        assert_eq!(
            h["link"],
            "<http://h/x?page=1&pageSize=20&sort=%2BcreatedAt&status=exception%2Ccanceled>;rel=\"first\", \
             <http://h/x?page=1&pageSize=20&sort=%2BcreatedAt&status=exception%2Ccanceled>;rel=\"last\""
        );
    }
}
