//! The page-number pagination state machine fed arbitrary page answers (item counts, totals, `next` links
//! that may point anywhere, including back): never panics, and always ends. Each step either ends, errors
//! (a loop) or moves to a URL never fetched before, so the walk is bounded by the distinct URLs it can see.
#![no_main]

use labelport::engine::pagination::{parse_link_header, PageInfo, PageNumberPaging, Step};
use libfuzzer_sys::fuzz_target;
use url::Url;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let page_size = (data[0] as usize % 8) + 1;
    let first = Url::parse("https://api.example.com/items?pageSize=8").unwrap();
    let mut paging = PageNumberPaging::new("page", page_size);
    let mut url = paging.url_for_page(&first, 1);
    paging.visit(&url).unwrap();
    // Each page's answer takes 4 bytes: items, total (or none), and which next link (or none).
    let mut steps = 0usize;
    for chunk in data[1..].chunks(4) {
        let b = |i: usize| chunk.get(i).copied().unwrap_or(0) as u64;
        let items = (b(0) % (page_size as u64 + 2)) as usize;
        let total = (b(1) % 3 != 0).then(|| b(1) * 2 + b(2));
        let link = match b(3) % 5 {
            0 => String::new(),
            1 => format!("<?page={}&pageSize=8>; rel=\"next\"", b(2) % 6 + 1),
            2 => format!("<{}>; rel=\"next\"", url),
            3 => "<https://api.example.com/items?page=2&pageSize=8>; rel=\"last\"".to_string(),
            _ => format!(
                "<https://api.example.com/items?page={}>; rel=\"next\"",
                b(2)
            ),
        };
        let info = PageInfo {
            items,
            total,
            links: parse_link_header([link.as_str()], &url),
        };
        match paging.next(&url, &info) {
            Ok(Step::Done) | Err(_) => return,
            Ok(Step::Next(next)) => {
                assert_ne!(next, url, "the machine asked for the page it just had");
                url = next;
            }
        }
        steps += 1;
        assert!(steps <= data.len(), "more steps than answers");
    }
});
