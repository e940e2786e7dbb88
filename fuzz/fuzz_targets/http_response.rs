//! The whole response path of the engine against a hostile server: arbitrary bytes decode to what a server
//! on 127.0.0.1 does (status lines, headers, bodies, encodings, framings, cut or stalled connections, several
//! answers in a row; `labelport::engine::hostile`), and `HttpClient::send` or a page-number stream runs
//! against it. The harness asserts no panic, an end within its bound, no request to another origin, no body
//! past the response-size limit, and heap growth bounded by what was served; this target's allocator counts
//! the heap for it.
#![no_main]

use labelport::engine::hostile::{run, CountingAlloc, Scenario};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fuzz_target!(|data: &[u8]| {
    run(&Scenario::decode(data));
});
