//! What bounds any listing, whatever its paging style: at most `max_pages` pages, and an end at the first
//! page that repeats an earlier one (a server looping us through distinct URLs that bring nothing new).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hasher};

use crate::engine::error::{Error, ErrorKind, Result};

/// Bodies up to this size are hashed whole; longer ones by their length, head and tail (a page that differs
/// only in its middle is not a repeat anyone sends, and `max_pages` still bounds it).
const HASHED_WHOLE: usize = 256 * 1024;
const HASHED_ENDS: usize = 128 * 1024;

/// Counts the pages of one listing as they arrive.
#[derive(Debug)]
pub struct PageBudget {
    max_pages: u64,
    pages: u64,
    /// Fingerprint of each non-empty page's body -> the page it was first seen on.
    seen: HashMap<u64, u64>,
}

impl PageBudget {
    pub fn new(max_pages: u64) -> Self {
        PageBudget {
            max_pages,
            pages: 0,
            seen: HashMap::new(),
        }
    }

    /// Pages counted so far.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// Counts one page of raw JSON items (for listings decoded before they reach the budget).
    pub fn count_items(&mut self, items: &[Box<serde_json::value::RawValue>]) -> Result<()> {
        let mut h = DefaultHasher::new();
        for item in items {
            h.write(item.get().as_bytes());
            h.write_u8(0);
        }
        self.count_fingerprint(h.finish(), items.len())
    }

    /// Counts one page with `items` items and this `body`: an error past `max_pages`, or when a non-empty
    /// page has the same content as an earlier one.
    pub fn count(&mut self, body: &[u8], items: usize) -> Result<()> {
        self.count_fingerprint(fingerprint(body), items)
    }

    fn count_fingerprint(&mut self, print: u64, items: usize) -> Result<()> {
        self.pages += 1;
        if self.pages > self.max_pages {
            return Err(Error::new(
                ErrorKind::Vendor,
                format!(
                    "the listing went on past {} pages, the client's max_pages: stopped rather than read \
                     without end (raise max_pages if the list really is that long)",
                    self.max_pages
                ),
            )
            .code("too_many_pages"));
        }
        if items == 0 {
            return Ok(());
        }
        if let Some(first) = self.seen.insert(print, self.pages) {
            return Err(Error::new(
                ErrorKind::Vendor,
                format!(
                    "page {} of the listing repeats page {first} item for item: the server is looping, and \
                     reading on would bring nothing new",
                    self.pages
                ),
            )
            .code("pagination_loop"));
        }
        Ok(())
    }
}

fn fingerprint(body: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    h.write_usize(body.len());
    if body.len() <= HASHED_WHOLE {
        h.write(body);
    } else {
        h.write(&body[..HASHED_ENDS]);
        h.write(&body[body.len() - HASHED_ENDS..]);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_after_max_pages() {
        let mut b = PageBudget::new(3);
        for i in 0..3 {
            b.count(format!("[{i}]").as_bytes(), 1).unwrap();
        }
        let e = b.count(b"[4]", 1).unwrap_err();
        assert_eq!(e.code.as_deref(), Some("too_many_pages"));
        assert!(e.message.contains("past 3 pages"), "{}", e.message);
    }

    #[test]
    fn a_repeated_page_is_a_loop_but_repeated_empty_pages_are_not() {
        let mut b = PageBudget::new(100);
        b.count(b"[]", 0).unwrap();
        b.count(b"[]", 0).unwrap();
        b.count(b"[1,2]", 2).unwrap();
        b.count(b"[3,4]", 2).unwrap();
        let e = b.count(b"[1,2]", 2).unwrap_err();
        assert_eq!(e.code.as_deref(), Some("pagination_loop"));
        assert!(
            e.message.contains("page 5") && e.message.contains("page 3"),
            "{}",
            e.message
        );
    }

    #[test]
    fn long_pages_are_told_apart_by_their_ends() {
        let mut b = PageBudget::new(100);
        let mut page = vec![b'x'; 1 << 20];
        b.count(&page, 1).unwrap();
        page[10] = b'y';
        b.count(&page, 1).unwrap();
        let last = page.len() - 1;
        page[last] = b'z';
        b.count(&page, 1).unwrap();
        assert!(b.count(&page, 1).is_err());
    }
}
