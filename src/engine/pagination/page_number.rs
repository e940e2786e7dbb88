//! Page-number pagination guided by `Link` and `X-Total-Count` (Alegion, and any API of that style).
//!
//! A small state machine: given what the last page said, the next page to fetch or the end. The total, when
//! known, also lets the streamer fetch later pages concurrently (`plan`).

use std::collections::HashSet;

use url::Url;

use super::link::Links;
use crate::engine::error::{Error, ErrorKind, Result};
use crate::engine::http::{origin_of, same_origin};
use crate::engine::redact::redact_url;

/// What one page said about where the list goes on.
#[derive(Debug, Clone, Default)]
pub struct PageInfo {
    pub items: usize,
    pub total: Option<u64>,
    pub links: Links,
}

#[derive(Debug, PartialEq)]
pub enum Step {
    Next(Url),
    Done,
}

/// Walks pages `page=1,2,...` of one list.
#[derive(Debug)]
pub struct PageNumberPaging {
    page_param: &'static str,
    page_size: usize,
    page: u64,
    seen_items: u64,
    /// Whether `seen_items` counts every item from page 1. A reader that starts at a later page cannot know
    /// how many items the pages before it held (the server may cap its pages below the size asked), so it
    /// reads on to an empty page instead of ending at the total.
    counted_from_start: bool,
    /// Whether an earlier page named its `next`: a server that pages by links ends its list with a page that
    /// names none, whether or not that page has a `Link` header at all.
    followed_links: bool,
    seen_urls: HashSet<String>,
    /// Pages `.1..=.2` of the list whose page 1 is `.0` (without its page parameter) count as fetched: a
    /// planned range, marked without a URL per page, as a total from the server may plan billions.
    visited_range: Option<(Url, u64, u64)>,
}

impl PageNumberPaging {
    pub fn new(page_param: &'static str, page_size: usize) -> Self {
        PageNumberPaging {
            page_param,
            page_size,
            page: 1,
            seen_items: 0,
            counted_from_start: true,
            followed_links: false,
            seen_urls: HashSet::new(),
            visited_range: None,
        }
    }

    /// A walk that has already handed out pages `1..page` holding `seen_items` items in all, and is about to
    /// fetch page `page`: how the streamer carries on one page at a time after fetching a planned range
    /// concurrently. Every page up to `page` counts as visited.
    pub fn resuming_at(
        page_param: &'static str,
        page_size: usize,
        first: &Url,
        page: u64,
        seen_items: u64,
    ) -> Self {
        let mut paging = Self::new(page_param, page_size);
        paging.mark_visited(first, 1, page);
        paging.page = page.max(1);
        paging.seen_items = seen_items;
        paging
    }

    /// Walks from page `page` (1-based) on: how a reader of a range of pages starts. Past page 1 it ends on
    /// an empty page, not at the total (see `counted_from_start`).
    pub fn starting_at(page_param: &'static str, page_size: usize, page: u64) -> Self {
        let page = page.max(1);
        PageNumberPaging {
            page,
            counted_from_start: page == 1,
            ..Self::new(page_param, page_size)
        }
    }

    /// The number of the page last fetched (before `next` moves on).
    pub fn page(&self) -> u64 {
        self.page
    }

    /// The URL of page `n` of the list whose page 1 is `first`.
    pub fn url_for_page(&self, first: &Url, n: u64) -> Url {
        with_query_param(first, self.page_param, &n.to_string())
    }

    /// Pages `from..=to` of the list whose page 1 is `first` count as fetched (replacing an earlier range).
    pub fn mark_visited(&mut self, first: &Url, from: u64, to: u64) {
        self.visited_range = Some((self.without_page(first), from, to));
    }

    fn without_page(&self, url: &Url) -> Url {
        let mut out = url.clone();
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != self.page_param)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        out.query_pairs_mut().clear().extend_pairs(pairs);
        out
    }

    fn in_visited_range(&self, url: &Url) -> bool {
        let Some((list, from, to)) = &self.visited_range else {
            return false;
        };
        let page = url
            .query_pairs()
            .find(|(k, _)| k == self.page_param)
            .and_then(|(_, v)| v.parse::<u64>().ok());
        page.is_some_and(|n| (*from..=*to).contains(&n)) && self.without_page(url) == *list
    }

    /// Records that `url` is being fetched; a URL fetched twice is an error (a vendor looping us).
    pub fn visit(&mut self, url: &Url) -> Result<()> {
        if self.in_visited_range(url) || !self.seen_urls.insert(url.to_string()) {
            return Err(Error::new(
                ErrorKind::Vendor,
                "pagination returned a page URL that was already fetched",
            )
            .code("pagination_loop"));
        }
        Ok(())
    }

    /// Given the page just fetched (`current`), the next step. A page shorter than asked is not the end (a
    /// server may cap its page size below the one asked): the walk ends on reaching the total, on an empty
    /// page, or when the server's links go on without a `next` and there is no total to go by. An empty page
    /// before the total, counted from page 1, is `incomplete_listing`: items were lost, not listed.
    pub fn next(&mut self, current: &Url, info: &PageInfo) -> Result<Step> {
        self.seen_items += info.items as u64;
        if info.items == 0 {
            return match info.total {
                Some(total) if self.counted_from_start && self.seen_items < total => {
                    Err(incomplete_listing(self.seen_items, total))
                }
                _ => Ok(Step::Done),
            };
        }
        if let Some(total) = info.total {
            if self.counted_from_start && self.seen_items >= total {
                return Ok(Step::Done);
            }
        }
        self.page += 1;
        self.followed_links |= info.links.get("next").is_some();
        let next = match info.links.get("next") {
            // The credential goes with every page: a `next` link elsewhere is never followed. A server behind
            // a proxy may build its links from the inside (`http://`, an inner port): a link to exactly the
            // page this list comes to next is a hint, and that page is read on the client's own origin.
            Some(url) if !same_origin(url, current) && self.is_next_page_of(url, current) => {
                self.url_for_page(current, self.page)
            }
            Some(url) if !same_origin(url, current) => {
                return Err(Error::new(
                    ErrorKind::Vendor,
                    format!(
                        "the listing's next page is on another host ({}): labelport follows pages only on \
                         the vendor's own host, so credentials never leave it",
                        redact_url(&origin_of(url))
                    ),
                )
                .code("cross_origin_link"))
            }
            Some(url) => url.clone(),
            None if info.total.is_some() || (info.links.is_empty() && !self.followed_links) => {
                self.url_for_page(current, self.page)
            }
            None => return Ok(Step::Done),
        };
        self.visit(&next)?;
        Ok(Step::Next(next))
    }

    /// Whether `link` names the page this walk comes to next (`self.page`) of the list `current` belongs to:
    /// the same path, the same query but for the page number.
    fn is_next_page_of(&self, link: &Url, current: &Url) -> bool {
        let page = link
            .query_pairs()
            .filter(|(k, _)| k == self.page_param)
            .map(|(_, v)| v.parse::<u64>().ok())
            .collect::<Vec<_>>();
        page == [Some(self.page)]
            && link.path() == current.path()
            && self.without_page(link).query() == self.without_page(current).query()
    }

    /// How many pages a list of `total` items has.
    pub fn page_count(&self, total: u64) -> u64 {
        total.div_ceil(self.page_size as u64)
    }
}

/// A listing that ended (an empty page) with fewer items than the server's own total: a server that pages
/// differently from what the client asked, or a list that shrank while it was read. Never a silent short read.
pub fn incomplete_listing(seen: u64, total: u64) -> Error {
    Error::new(
        ErrorKind::Vendor,
        format!(
            "the listing ended after {seen} items, but the server's total says {total}: labelport stops rather \
             than return a list with items missing (the server may page differently from what was asked, or \
             the list shrank while it was read)"
        ),
    )
    .code("incomplete_listing")
}

/// `url` with query parameter `name` set to `value` (replacing any earlier value).
pub fn with_query_param(url: &Url, name: &str, value: &str) -> Url {
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut out = url.clone();
    out.query_pairs_mut()
        .clear()
        .extend_pairs(pairs)
        .append_pair(name, value);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::pagination::link::parse_link_header;

    fn first() -> Url {
        Url::parse("http://h/api/v1/batches/b/results?page=1&pageSize=20&sort=%2BcreatedAt")
            .unwrap()
    }

    fn info(items: usize, total: Option<u64>, link: &str, base: &Url) -> PageInfo {
        PageInfo {
            items,
            total,
            links: parse_link_header([link], base),
        }
    }

    /// Regression (found by the 10 x 5,000 fault matrix, Alegion seed 2): after the planned pages 1..=3 were
    /// fetched concurrently and the list grew, the streamer went on with a fresh machine whose page counter
    /// was 1, so the page after page 4 was computed as page 2, "already fetched", and the upload failed with
    /// `pagination_loop`.
    #[test]
    fn a_resumed_walk_goes_on_after_the_page_it_resumed_at() {
        let u1 = first();
        let mut p = PageNumberPaging::resuming_at("page", 20, &u1, 4, 60);
        let u4 = p.url_for_page(&u1, 4);
        let Step::Next(u5) = p.next(&u4, &info(20, Some(100), "", &u4)).unwrap() else {
            panic!("the list goes on")
        };
        assert_eq!(u5, p.url_for_page(&u1, 5));
        // The items already seen count towards the total: 60 + 20 + 20 = 100 ends the walk.
        assert_eq!(
            p.next(&u5, &info(20, Some(100), "", &u5)).unwrap(),
            Step::Done
        );
        // Pages 1 to 4 count as fetched: a link back to one of them is a loop.
        let mut q = PageNumberPaging::resuming_at("page", 20, &u1, 4, 60);
        let back = format!("<{}>; rel=\"next\"", q.url_for_page(&u1, 2));
        assert!(q.next(&u4, &info(20, None, &back, &u4)).is_err());
    }

    #[test]
    fn follows_next_links_to_the_total() {
        let mut p = PageNumberPaging::new("page", 20);
        let u1 = first();
        p.visit(&u1).unwrap();
        let link = r#"<http://h/api/v1/batches/b/results?page=2&pageSize=20&sort=%2BcreatedAt>;rel="next""#;
        let Step::Next(u2) = p.next(&u1, &info(20, Some(42), link, &u1)).unwrap() else {
            panic!()
        };
        assert!(u2.as_str().contains("page=2"));
        let link = r#"<http://h/api/v1/batches/b/results?page=3&pageSize=20&sort=%2BcreatedAt>;rel="next""#;
        let Step::Next(u3) = p.next(&u2, &info(20, Some(42), link, &u2)).unwrap() else {
            panic!()
        };
        assert!(u3.as_str().contains("page=3"));
        assert_eq!(
            p.next(&u3, &info(2, Some(42), "", &u3)).unwrap(),
            Step::Done
        );
    }

    #[test]
    fn full_last_page_ends_on_the_total() {
        let mut p = PageNumberPaging::new("page", 20);
        let u1 = first();
        assert!(matches!(
            p.next(&u1, &info(20, Some(40), "", &u1)).unwrap(),
            Step::Next(_)
        ));
        assert_eq!(
            p.next(&u1, &info(20, Some(40), "", &u1)).unwrap(),
            Step::Done
        );
    }

    #[test]
    fn empty_page_ends() {
        let mut p = PageNumberPaging::new("page", 20);
        assert_eq!(
            p.next(&first(), &info(0, None, "", &first())).unwrap(),
            Step::Done
        );
    }

    #[test]
    fn without_total_or_links_reads_until_an_empty_page() {
        let mut p = PageNumberPaging::new("page", 20);
        let u1 = first();
        let Step::Next(u2) = p.next(&u1, &info(20, None, "", &u1)).unwrap() else {
            panic!()
        };
        assert!(u2.as_str().contains("page=2"));
        assert!(u2.as_str().contains("sort=%2BcreatedAt"), "{u2}");
        // A short page may be a server's cap, not the end: only an empty page ends a list without a total.
        let Step::Next(u3) = p.next(&u2, &info(5, None, "", &u2)).unwrap() else {
            panic!("a short page without a total is not the end")
        };
        assert_eq!(p.next(&u3, &info(0, None, "", &u3)).unwrap(), Step::Done);
    }

    /// Issue 20: a server that caps its pages below the size asked (here 7 of 20) while its total says more.
    /// The walk used to end on the first short page and lose every later item.
    #[test]
    fn a_page_shorter_than_asked_goes_on_to_the_total() {
        let mut p = PageNumberPaging::new("page", 20);
        let mut url = first();
        let mut seen = 0;
        loop {
            let items = (30 - seen).min(7);
            seen += items;
            match p.next(&url, &info(items, Some(30), "", &url)).unwrap() {
                Step::Next(next) => url = next,
                Step::Done => break,
            }
        }
        assert_eq!(seen, 30);
        assert_eq!(p.page(), 5);
    }

    #[test]
    fn an_empty_page_before_the_total_is_incomplete_listing() {
        let mut p = PageNumberPaging::new("page", 20);
        let u1 = first();
        let Step::Next(u2) = p.next(&u1, &info(20, Some(50), "", &u1)).unwrap() else {
            panic!()
        };
        let err = p.next(&u2, &info(0, Some(50), "", &u2)).unwrap_err();
        assert_eq!(err.code.as_deref(), Some("incomplete_listing"));
        assert!(
            err.message.contains("after 20 items") && err.message.contains("says 50"),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_page_without_a_next_link_ends_a_list_paged_by_links() {
        let mut p = PageNumberPaging::new("page", 20);
        let u1 = first();
        let link = r#"<http://h/api/v1/batches/b/results?page=2&pageSize=20&sort=%2BcreatedAt>; rel="next""#;
        let Step::Next(u2) = p.next(&u1, &info(20, None, link, &u1)).unwrap() else {
            panic!()
        };
        // No `Link` header at all on page 2: the server that named page 2 names no page 3.
        assert_eq!(p.next(&u2, &info(20, None, "", &u2)).unwrap(), Step::Done);
    }

    #[test]
    fn links_without_next_and_no_total_end() {
        let mut p = PageNumberPaging::new("page", 20);
        let u1 = first();
        let i = info(20, None, r#"<http://h/x?page=1>; rel="first""#, &u1);
        assert_eq!(p.next(&u1, &i).unwrap(), Step::Done);
    }

    #[test]
    fn a_next_link_to_the_same_page_elsewhere_is_read_on_our_own_origin() {
        let u1 = first();
        for host in ["http://evil:80", "https://h", "http://h:8080"] {
            let link = format!(
                "<{host}/api/v1/batches/b/results?page=2&pageSize=20&sort=%2BcreatedAt>; rel=\"next\""
            );
            let mut p = PageNumberPaging::new("page", 20);
            let Step::Next(u2) = p.next(&u1, &info(20, Some(100), &link, &u1)).unwrap() else {
                panic!("the list goes on")
            };
            assert_eq!(u2, p.url_for_page(&u1, 2), "{link}");
            assert!(same_origin(&u2, &u1));
        }
    }

    #[test]
    fn a_next_link_to_anything_else_on_another_origin_is_refused() {
        let u1 = first();
        for link in [
            "<http://evil:80/steal?page=2>; rel=\"next\"",
            "<https://h/api/v1/batches/b/results?page=3&pageSize=20&sort=%2BcreatedAt>; rel=\"next\"",
            "<http://h:8080/api/v1/batches/b/results?page=2&pageSize=20&sort=%2BcreatedAt&x=1>; rel=\"next\"",
            "<http://h:8080/api/v1/batches/other/results?page=2&pageSize=20&sort=%2BcreatedAt>; rel=\"next\"",
        ] {
            let mut p = PageNumberPaging::new("page", 20);
            let err = p.next(&u1, &info(20, Some(100), link, &u1)).unwrap_err();
            assert_eq!(err.code.as_deref(), Some("cross_origin_link"), "{link}");
        }
    }

    #[test]
    fn a_planned_range_counts_as_visited_without_a_url_per_page() {
        let u1 = first();
        let mut p = PageNumberPaging::new("page", 20);
        p.mark_visited(&u1, 2, 1_000_000_000_000);
        assert!(p.visit(&p.url_for_page(&u1, 999_999_999)).is_err());
        assert!(p.visit(&p.url_for_page(&u1, 1)).is_ok());
        let other = Url::parse("http://h/api/v1/batches/other/results?page=5&pageSize=20").unwrap();
        assert!(p.visit(&other).is_ok());
    }

    #[test]
    fn a_page_url_seen_twice_is_an_error() {
        let mut p = PageNumberPaging::new("page", 20);
        let u1 = first();
        p.visit(&u1).unwrap();
        let link = format!("<{u1}>; rel=\"next\"");
        let err = p.next(&u1, &info(20, Some(100), &link, &u1)).unwrap_err();
        assert_eq!(err.code.as_deref(), Some("pagination_loop"));
    }

    #[test]
    fn starting_at_a_later_page_reads_on_to_an_empty_page() {
        let mut p = PageNumberPaging::starting_at("page", 20, 3);
        assert_eq!(p.page(), 3);
        let u3 = p.url_for_page(&first(), 3);
        // What pages 1 and 2 held is unknown here (a server may cap its pages): the total cannot end this
        // walk, and an empty page ends it without a complaint.
        let Step::Next(u4) = p.next(&u3, &info(20, Some(60), "", &u3)).unwrap() else {
            panic!("the total cannot end a walk that did not count from page 1")
        };
        assert!(u4.as_str().contains("page=4"), "{u4}");
        assert_eq!(p.page(), 4);
        assert_eq!(
            p.next(&u4, &info(0, Some(60), "", &u4)).unwrap(),
            Step::Done
        );
    }

    #[test]
    fn page_urls_and_counts() {
        let p = PageNumberPaging::new("page", 1000);
        assert_eq!(p.page_count(0), 0);
        assert_eq!(p.page_count(1000), 1);
        assert_eq!(p.page_count(1001), 2);
        let u = p.url_for_page(&first(), 7);
        assert_eq!(u.query_pairs().filter(|(k, _)| k == "page").count(), 1);
        assert!(u.as_str().contains("page=7"));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Walking a list of any size visits each page once, in order, and always ends.
        #[test]
        fn visits_every_page_once_and_ends(total in 0u64..50_000, page_size in 1usize..2_000, with_total in any::<bool>()) {
            let mut paging = PageNumberPaging::new("page", page_size);
            let mut url = Url::parse("http://h/items?page=1&pageSize=7").unwrap();
            paging.visit(&url).unwrap();
            let mut served = 0u64;
            let mut pages = 0u64;
            loop {
                let items = (total - served).min(page_size as u64) as usize;
                served += items as u64;
                pages += 1;
                prop_assert!(pages <= total / page_size as u64 + 2, "paging did not end");
                let info = PageInfo { items, total: with_total.then_some(total), links: Links::default() };
                match paging.next(&url, &info).unwrap() {
                    Step::Done => break,
                    Step::Next(next) => {
                        let n: u64 = next.query_pairs().find(|(k, _)| k == "page").unwrap().1.parse().unwrap();
                        prop_assert_eq!(n, pages + 1);
                        url = next;
                    }
                }
            }
            prop_assert_eq!(served, total);
        }

        /// A server that caps its pages at `cap` items, below the `page_size` asked: every item is read, each
        /// page once, and the walk ends.
        #[test]
        fn a_server_capping_its_pages_loses_nothing(total in 0u64..20_000, page_size in 2usize..2_000, cap_frac in 0.01f64..1.0, with_total in any::<bool>()) {
            let cap = ((page_size as f64 * cap_frac) as usize).clamp(1, page_size);
            let mut paging = PageNumberPaging::new("page", page_size);
            let mut url = Url::parse("http://h/items?page=1&pageSize=7").unwrap();
            paging.visit(&url).unwrap();
            let mut served = 0u64;
            let mut pages = 0u64;
            loop {
                let items = (total - served).min(cap as u64) as usize;
                served += items as u64;
                pages += 1;
                prop_assert!(pages <= total / cap as u64 + 2, "paging did not end");
                let info = PageInfo { items, total: with_total.then_some(total), links: Links::default() };
                match paging.next(&url, &info).unwrap() {
                    Step::Done => break,
                    Step::Next(next) => url = next,
                }
            }
            prop_assert_eq!(served, total);
        }
    }
}
