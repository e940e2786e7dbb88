//! The `Link` header parser on arbitrary text: never panics, and every link it returns resolves to a URL
//! that parses again (what the page streamer will fetch next).
#![no_main]

use labelport::engine::pagination::parse_link_header;
use libfuzzer_sys::fuzz_target;
use url::Url;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let base = Url::parse("https://api.example.com/api/v1/batches/b1/results?page=1&pageSize=100")
        .unwrap();
    // Several header lines, as a response with repeated Link headers gives them.
    let links = parse_link_header(text.split('\n'), &base);
    for rel in ["next", "prev", "first", "last"] {
        if let Some(u) = links.get(rel) {
            assert!(Url::parse(u.as_str()).is_ok(), "{u} does not parse again");
        }
    }
});
