//! Paging, written once for every simulator: reading the page and size a client asks for, slicing a
//! listing, and writing what a page says about the rest (a total, `Link` headers, a next token).
//!
//! A vendor's paging is data: a `Paging` (parameter names, default size, the page-size cap, how odd
//! numbers are read) and an `Envelope` (where the items and counts go in a JSON body, `None` for a field
//! the vendor leaves out). A stricter or differently spelled variant of a vendor is another value.
//! Error wording is left to each vendor.

use std::ops::Range;

use axum::http::{HeaderMap, HeaderValue};
use serde_json::{Map, Value};

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

/// How page numbers and sizes that are not plain whole numbers are read.
#[derive(Clone, Copy, Debug)]
pub enum Numbers {
    /// As a Java `int` (Spring): anything else is refused with `BadParam`.
    JavaInt,
    /// As an unsigned whole number; anything else counts as absent.
    Lenient,
}

/// How a vendor reads the page a client asks for.
#[derive(Clone, Copy, Debug)]
pub struct Paging {
    pub page_param: &'static str,
    pub size_param: &'static str,
    pub default_size: u64,
    /// The page-size cap: a client asking for more gets this many.
    pub max_size: u64,
    /// Sizes below this are raised to it; `None`: sizes below 1 take the default.
    pub min_size: Option<u64>,
    pub numbers: Numbers,
}

/// A 1-based page number and a page size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Page {
    pub number: u64,
    pub size: u64,
}

impl Paging {
    /// Parameters read as a Java `int` would be, sizes below 1 taking the default.
    pub const fn new(page: &'static str, size: &'static str, default: u64, max: u64) -> Paging {
        Paging {
            page_param: page,
            size_param: size,
            default_size: default,
            max_size: max,
            min_size: None,
            numbers: Numbers::JavaInt,
        }
    }

    /// The same, but numbers read leniently and sizes below `min` raised to it.
    pub const fn lenient(self, min: u64) -> Paging {
        Paging {
            min_size: Some(min),
            numbers: Numbers::Lenient,
            ..self
        }
    }

    /// The page asked for in the query string.
    pub fn read(&self, q: &Query) -> Result<Page, BadParam> {
        let number = self.number(q.get(self.page_param))?;
        let size = self.number(q.get(self.size_param))?;
        Ok(self.page(number, size))
    }

    /// The page asked for in a JSON body (only unsigned whole numbers count).
    pub fn read_json(&self, v: &Value) -> Page {
        let field = |name: &str| v.get(name).and_then(Value::as_u64);
        self.page(field(self.page_param), field(self.size_param))
    }

    fn number(&self, v: Option<&str>) -> Result<Option<u64>, BadParam> {
        match (self.numbers, v) {
            (_, None) | (Numbers::JavaInt, Some("")) => Ok(None),
            (Numbers::JavaInt, Some(s)) => {
                s.parse::<i32>()
                    .map(|n| Some(n.max(0) as u64))
                    .map_err(|_| BadParam {
                        value: s.to_string(),
                        expected: "int",
                    })
            }
            (Numbers::Lenient, Some(s)) => Ok(s.trim().parse::<u64>().ok()),
        }
    }

    fn page(&self, number: Option<u64>, size: Option<u64>) -> Page {
        let size = match (size, self.min_size) {
            (None, _) => self.default_size,
            (Some(n), None) if n < 1 => self.default_size,
            (Some(n), min) => n.max(min.unwrap_or(1)),
        };
        Page {
            number: number.unwrap_or(1).max(1),
            size: size.min(self.max_size),
        }
    }
}

impl Page {
    /// This page's positions in a listing of `total` items, first to last; past the end, empty.
    pub fn range(&self, total: u64) -> Range<u64> {
        let skip = (self.number - 1).saturating_mul(self.size);
        if skip >= total {
            return 0..0;
        }
        skip..skip + self.size.min(total - skip)
    }

    /// This page's items of a listing.
    pub fn slice<'a, T>(&self, items: &'a [T]) -> &'a [T] {
        let r = self.range(items.len() as u64);
        &items[r.start as usize..r.end as usize]
    }
}

/// Token paging: the page that starts at the item `token` names (the first item without one) and
/// holds at most `size` items. `find` maps a token to its item's position; an unknown token is `Err`.
pub fn token_range(
    token: Option<&str>,
    size: usize,
    len: usize,
    find: impl FnOnce(&str) -> Option<usize>,
) -> Result<Range<usize>, ()> {
    let start = match token.filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => find(t).ok_or(())?,
    };
    Ok(start..(start + size).min(len))
}

/// Where a page goes in a JSON object body. `None` leaves that field out.
pub struct Envelope {
    /// The items' key.
    pub items: &'static str,
    pub total: Option<&'static str>,
    pub page: Option<&'static str>,
    pub size: Option<&'static str>,
    /// The token of the next page (`""` on the last).
    pub next_token: Option<&'static str>,
}

/// What a page says about the rest of the listing.
pub struct Facts {
    pub page: Page,
    pub total: u64,
    pub next_token: String,
}

impl Envelope {
    /// Just the items, nothing about the rest.
    pub const fn items(key: &'static str) -> Envelope {
        Envelope {
            items: key,
            total: None,
            page: None,
            size: None,
            next_token: None,
        }
    }

    /// Adds the page to `body`, after what it already holds.
    pub fn write(&self, body: &mut Map<String, Value>, items: Vec<Value>, facts: &Facts) {
        body.insert(self.items.to_string(), Value::Array(items));
        for (key, value) in self.facts(facts) {
            body.insert(key.to_string(), value);
        }
    }

    /// The page as a body of its own.
    pub fn body(&self, items: Vec<Value>, facts: &Facts) -> Value {
        let mut body = Map::new();
        self.write(&mut body, items, facts);
        Value::Object(body)
    }

    /// A listing answered whole, as one page (a vendor that pages nothing).
    pub fn whole(&self, items: Vec<Value>) -> Value {
        let n = items.len() as u64;
        let facts = Facts {
            page: Page { number: 1, size: n },
            total: n,
            next_token: String::new(),
        };
        self.body(items, &facts)
    }

    /// The same body written straight as bytes, each item by `item` (for pages too large to build
    /// as a tree first).
    pub fn bytes<T>(
        &self,
        items: impl ExactSizeIterator<Item = T>,
        facts: &Facts,
        mut item: impl FnMut(&mut Vec<u8>, T),
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + items.len() * 512);
        out.push(b'{');
        out.extend_from_slice(Value::from(self.items).to_string().as_bytes());
        out.extend_from_slice(b":[");
        for (n, x) in items.enumerate() {
            if n > 0 {
                out.push(b',');
            }
            item(&mut out, x);
        }
        out.push(b']');
        for (key, value) in self.facts(facts) {
            out.push(b',');
            out.extend_from_slice(Value::from(key).to_string().as_bytes());
            out.push(b':');
            out.extend_from_slice(value.to_string().as_bytes());
        }
        out.push(b'}');
        out
    }

    fn facts(&self, f: &Facts) -> impl Iterator<Item = (&'static str, Value)> {
        [
            self.total.map(|k| (k, Value::from(f.total))),
            self.page.map(|k| (k, Value::from(f.page.number))),
            self.size.map(|k| (k, Value::from(f.page.size))),
            self.next_token
                .map(|k| (k, Value::from(f.next_token.clone()))),
        ]
        .into_iter()
        .flatten()
    }
}

/// A Spring page request: a page plus `sort=±field`, answered with `X-Total-Count` and an RFC 8288
/// `Link` header of absolute URLs.
#[derive(Clone, Debug, PartialEq)]
pub struct PageRequest {
    pub page: Page,
    pub descending: bool,
    /// The sort field (`createdAt` when absent or unrecognised).
    pub sort_key: String,
}

impl PageRequest {
    pub fn parse(q: &Query, paging: &Paging, descending: bool) -> Result<PageRequest, BadParam> {
        let page = paging.read(q)?;
        let (sort_key, descending) = match q.get("sort").map(parse_sort) {
            Some(Some((key, desc))) => (key, desc),
            _ => ("createdAt".to_string(), descending),
        };
        Ok(PageRequest {
            page,
            descending,
            sort_key,
        })
    }

    /// The items of this page as a range of positions in *ascending* order (reverse them when
    /// descending). Past the end: an empty range.
    pub fn window(&self, total: u64) -> (u64, u64) {
        let r = self.page.range(total);
        if r.is_empty() {
            (0, 0)
        } else if self.descending {
            (total - r.end, total - r.start)
        } else {
            (r.start, r.end)
        }
    }

    pub fn last_page(&self, total: u64) -> u64 {
        total.div_ceil(self.page.size).max(1)
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
    pub fn headers(
        &self,
        paging: &Paging,
        base: &str,
        total: u64,
        filters: &[(&str, &str)],
    ) -> HeaderMap {
        let last = self.last_page(total);
        let number = self.page.number;
        let mut rels = vec![("first", 1)];
        if number > 1 {
            rels.push(("prev", number - 1));
        }
        if number < last {
            rels.push(("next", number + 1));
        }
        rels.push(("last", last));
        let sort = self.sort_value();
        let link = rels
            .iter()
            .map(|(rel, page)| {
                let mut q = url::form_urlencoded::Serializer::new(String::new());
                q.append_pair(paging.page_param, &page.to_string())
                    .append_pair(paging.size_param, &self.page.size.to_string())
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

    const D: Paging = Paging::new("page", "pageSize", 20, 1000);

    fn req(raw: &str) -> PageRequest {
        PageRequest::parse(&Query::parse(Some(raw)), &D, false).unwrap()
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
        assert_eq!((r.page.number, r.page.size), (1, 1000));
        assert_eq!(req("pageSize=0").page.size, 20);
        assert!(PageRequest::parse(&Query::parse(Some("page=abc")), &D, false).is_err());
        assert!(PageRequest::parse(&Query::parse(Some("pageSize=1.5")), &D, false).is_err());
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
        let h = r.headers(&D, "https://h/api/v1/batches/b/records", 42, &[]);
        assert_eq!(h["x-total-count"], "42");
        assert_eq!(
            h["link"],
            "<https://h/api/v1/batches/b/records?page=1&pageSize=20&sort=-createdAt>;rel=\"first\", \
             <https://h/api/v1/batches/b/records?page=1&pageSize=20&sort=-createdAt>;rel=\"prev\", \
             <https://h/api/v1/batches/b/records?page=3&pageSize=20&sort=-createdAt>;rel=\"next\", \
             <https://h/api/v1/batches/b/records?page=3&pageSize=20&sort=-createdAt>;rel=\"last\""
        );
        let h = req("").headers(&D, "http://h/x", 0, &[("status", "exception,canceled")]);
        assert_eq!(h["x-total-count"], "0");
        assert_eq!(
            h["link"],
            "<http://h/x?page=1&pageSize=20&sort=%2BcreatedAt&status=exception%2Ccanceled>;rel=\"first\", \
             <http://h/x?page=1&pageSize=20&sort=%2BcreatedAt&status=exception%2Ccanceled>;rel=\"last\""
        );
    }

    #[test]
    fn lenient_numbers_and_raised_sizes() {
        let p = Paging::new("page", "page_size", 100, 1000).lenient(1);
        let read = |raw: &str| p.read(&Query::parse(Some(raw))).unwrap();
        assert_eq!(
            read("page=x&page_size=-3"),
            Page {
                number: 1,
                size: 100
            }
        );
        assert_eq!(read("page=0&page_size=0"), Page { number: 1, size: 1 });
        assert_eq!(
            read("page= 3 &page_size=5000"),
            Page {
                number: 3,
                size: 1000
            }
        );
        let zero = Paging {
            min_size: Some(0),
            ..p
        };
        assert_eq!(
            zero.read(&Query::parse(Some("page_size=0"))).unwrap().size,
            0
        );
        let v = serde_json::json!({"page": 2, "page_size": "7"});
        assert_eq!(
            p.read_json(&v),
            Page {
                number: 2,
                size: 100
            }
        );
    }

    #[test]
    fn slices_tokens_and_envelopes() {
        let page = Page { number: 2, size: 3 };
        assert_eq!(page.slice(&[1, 2, 3, 4, 5]), &[4, 5]);
        assert!(Page { number: 3, size: 3 }.slice(&[1, 2, 3]).is_empty());
        let find = |t: &str| t.parse::<usize>().ok().filter(|&i| i < 5);
        assert_eq!(token_range(None, 2, 5, find), Ok(0..2));
        assert_eq!(token_range(Some("4"), 2, 5, find), Ok(4..5));
        assert_eq!(token_range(Some("9"), 2, 5, find), Err(()));
        let env = Envelope {
            items: "items",
            total: Some("total"),
            page: None,
            size: Some("page_size"),
            next_token: None,
        };
        let facts = Facts {
            page,
            total: 5,
            next_token: String::new(),
        };
        let items = vec![serde_json::json!(4), serde_json::json!(5)];
        let body = env.body(items.clone(), &facts);
        assert_eq!(
            body.to_string(),
            r#"{"items":[4,5],"total":5,"page_size":3}"#
        );
        let raw = env.bytes(items.into_iter(), &facts, |out, v| {
            out.extend_from_slice(v.to_string().as_bytes())
        });
        assert_eq!(raw, body.to_string().into_bytes());
    }
}
