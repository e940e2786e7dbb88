//! A hostile HTTP server for the engine, described by bytes: the harness behind the `http_response` fuzz
//! target (`fuzz/`) and the hostile-server property test of `cargo test` (issue 18, item 5).
//!
//! A [`Scenario`] is what a server does: a list of answers, one per request in the order requests arrive
//! (over one connection or several), each a status line, headers, a body, a content encoding, a framing
//! (`Content-Length`, chunked, close-delimited, or a lie about either) and a way of delivering it (whole,
//! in pieces, cut short, stalled, or not at all), then what happens once the list is used up. It is decoded
//! from arbitrary bytes ([`Scenario::decode`]: every byte string is a scenario, and the bytes mostly pick
//! from tables of header values known to hurt) and encodes back ([`Scenario::encode`]) for seeds.
//!
//! [`run`] serves a scenario from a raw TCP listener on 127.0.0.1 and drives one of the engine's public
//! entry points against it, `HttpClient::send` for a GET or a page-number stream read to the end, with short
//! timeouts and a small retry policy, and then asserts (panicking, which is what the fuzzer looks for):
//! - no panic inside the engine (a caught one comes back as an `Internal` error: that fails too);
//! - the call ends within [`BOUND`] (a watchdog thread aborts the process if a synchronous loop keeps the
//!   runtime from even noticing);
//! - no request reaches another origin: a second listener (the "other origin") must see no connection, and
//!   every request the server sees must name it in `Host` and be plain HTTP;
//! - no body handed back is larger than [`RESPONSE_LIMIT`], after decompression;
//! - memory stays bounded: with [`CountingAlloc`] as the global allocator (the fuzz target and this module's
//!   tests install it), the peak of bytes allocated during the case stays within a fixed slack plus a small
//!   multiple of the bytes the server had to serve and of the pages in flight; any single allocation past
//!   [`HARD_CAP`] fails (an abort), so a runaway allocation is caught before it hurts the machine.
//!
//! The engine options these assertions rely on (a response-size limit, `max_pages`, a cap on the
//! `Retry-After` honoured) are set in [`client`], in one place.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use url::Url;

use super::auth::{refused_with_401, KeyPlacement, StaticKey};
use super::error::{Error, ErrorKind};
use super::http::{HttpClient, HttpConfig, Limits, Request, Response};
use super::retry::RetryPolicy;
use super::stream::{page_number_stream, Decoder, PageNumberList, CHANNEL_PAGES};

/// The response-size limit the harness holds the engine to (the engine's own option, once it has one, is
/// set to this in [`client`]).
pub const RESPONSE_LIMIT: usize = 1 << 20;
/// The most pages a listing may fetch (the engine's `max_pages`, once it has one).
pub const MAX_PAGES: u64 = 32;
/// Every case must end within this.
pub const BOUND: Duration = Duration::from_secs(5);
/// One request's timeout (connect and total).
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(100);
/// No single allocation may take the live heap past this while a case runs (with [`CountingAlloc`]).
pub const HARD_CAP: usize = 1 << 30;
/// The credential the client sends; it must never reach another origin.
pub const SECRET: &str = "s3cret-hostile-key";

const SLACK: usize = 24 << 20;
const MAX_BODY_PLAIN: usize = 4 << 20;
const MAX_LITERAL: usize = 8 << 10;
const MAX_ITEMS: u32 = 1 << 20;
const MAX_ANSWERS: usize = 8;
const MAX_HEADERS: usize = 6;

// ------------------------------------------------------------------------------------------------------
// The scenario: what the server does.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// `HttpClient::send` of one GET.
    Send,
    /// `page_number_stream` read to the end.
    Stream,
}

/// What the server does once the scripted answers are used up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    /// Closes every further connection without answering.
    Close,
    /// Gives the last scripted answer again, forever.
    RepeatLast,
    /// A full page with a `Link` to the next page number, forever.
    EndlessPages,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    pub entry: Entry,
    pub after: After,
    /// 1 to 4 items a page.
    pub page_size: usize,
    /// 1 to 4 pages fetched ahead.
    pub read_ahead: usize,
    /// 1 to 8 answers, one per request in order of arrival.
    pub answers: Vec<Answer>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub head: Head,
    pub payload: Payload,
    pub encoding: Encoding,
    pub framing: Framing,
    pub delivery: Delivery,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// A status line (`HTTP/1.1 <status> X`) and up to 6 headers; the framing and encoding headers are added.
    Built { status: u16, headers: Vec<Header> },
    /// The whole answer as literal bytes (status line, headers, body): payload, encoding and framing unused.
    Raw(Vec<u8>),
}

/// A header, mostly chosen from tables of values that matter. In every value `{SELF}` becomes the server's
/// `127.0.0.1:port`, `{OTHER}` the other origin's, `{PORT}` the server's port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Header {
    RetryAfter(u8),
    TotalCount(u8),
    Link(u8),
    Location(u8),
    ContentType(u8),
    /// A header name from a table with literal value bytes (up to 255).
    Named(u8, Vec<u8>),
    /// Literal name and value bytes (up to 255 each), valid or not.
    Literal(Vec<u8>, Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A full page: a JSON array of `page_size` items.
    Page,
    /// A JSON array of this many items (up to 2^20).
    Items(u32),
    Empty,
    /// Literal bytes (up to 8 KiB).
    Literal(Vec<u8>),
    /// A large body, `BIG_SIZES[size]` bytes of a JSON array (or of zero bytes); above 4 MiB only when
    /// compressed (a bomb).
    Big {
        size: u8,
        zeros: bool,
    },
    /// `[[[...]]]`, `DEPTHS[depth]` deep.
    Deep(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
    /// `Content-Encoding: gzip` on a body that is not.
    GzipLabelOnly,
    /// Gzip cut in half.
    GzipTruncated,
    /// Gzip with garbage after the end of the stream.
    GzipTrailing,
    /// Gzipped twice, labelled `gzip, gzip`.
    GzipTwice,
    /// zlib data labelled `deflate` (the client does not ask for deflate).
    Deflate,
    /// `Content-Encoding: br` on a plain body (the client does not ask for br).
    BrLabelOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// The true `Content-Length`.
    Length,
    /// `Content-Length: CONTENT_LENGTHS[i]` whatever the body (then the connection closes).
    LengthValue(u8),
    /// Two `Content-Length` headers that disagree.
    LengthTwice,
    /// Chunked, chunks of this many bytes and more (at most 4096 chunks).
    Chunked(u8),
    /// A broken chunked body, variant `i` of 8 (then the connection closes).
    ChunkedBad(u8),
    /// No length: the body ends when the connection closes.
    Close,
    /// Chunked and a `Content-Length` both.
    ChunkedAndLength,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Full,
    /// The first 4 KiB a few bytes at a time (1 to 16), then the rest.
    Split(u8),
    /// This many bytes (modulo the answer's length), then the connection closes.
    Truncate(u16),
    /// This many bytes (modulo the answer's length + 1), then nothing, with the connection open.
    Stall(u16),
    /// The connection closes without an answer.
    Drop,
    /// The whole answer, then the connection closes.
    FullClose,
}

// ------------------------------------------------------------------------------------------------------
// Tables.

/// A quarter of answers are a plain 200, so random bytes reach the success path often.
const STATUSES: [u16; 32] = [
    200, 201, 204, 206, 301, 302, 303, 307, 200, 308, 304, 400, 401, 403, 404, 410, 200, 422, 429,
    429, 500, 502, 200, 503, 504, 100, 200, 101, 200, 999, 200, 200,
];

const RETRY_AFTER: [&str; 24] = [
    "0",
    "1",
    "0.01",
    "1e30",
    "1000000000",
    "1e9",
    "-1",
    "nan",
    "NaN",
    "inf",
    "-0",
    "1e-9",
    "18446744073709551616",
    "1.7976931348623157e308",
    "4e-320",
    "",
    " 2 ",
    "Wed, 21 Oct 2015 07:28:00 GMT",
    "0x10",
    "1_000",
    "9999999999999999999999",
    "120",
    "121",
    "60.5",
];

/// `{PS}`: the page size; `{PS2}`, `{PS2+1}`, `{PS3}`, `{PS100}`: multiples of it.
const TOTALS: [&str; 16] = [
    "0",
    "1",
    "{PS}",
    "{PS2}",
    "{PS2+1}",
    "{PS3}",
    "1000000000000",
    "10000000000",
    "1000000",
    "18446744073709551615",
    "18446744073709551616",
    "-1",
    "1e12",
    " 4 ",
    "abc",
    "{PS100}",
];

const LINKS: [&str; 16] = [
    "<http://{SELF}/items?page=2&pageSize={PS}>; rel=\"next\"",
    "<?page=2&pageSize={PS}>; rel=\"next\"",
    "<http://{SELF}/items?page=1&pageSize={PS}>; rel=\"next\"",
    "<http://{OTHER}/items?page=2>; rel=\"next\"",
    "<\\\\{OTHER}\\x>; rel=\"next\"",
    "<//{OTHER}/x>; rel=\"next\"",
    "<https://{SELF}/items?page=2>; rel=\"next\"",
    "<http://localhost:{PORT}/items?page=2>; rel=\"next\"",
    "<http://{SELF}/items?page=3>; rel=\"next\", <http://{SELF}/items?page=9>; rel=\"last\"",
    "<>; rel=\"next\"",
    "<http://[::1>; rel=next",
    "{MANY}",
    "<file:///etc/passwd>; rel=\"next\"",
    "<http://{SELF}/items?page=2&pageSize={PS}>; rel=next",
    "<http://user:pw@{SELF}/items?page=2>; rel=\"next\"",
    "<http://{OTHER}/items?page=2>; rel=\"last\"",
];

const LOCATIONS: [&str; 10] = [
    "/items?page=1",
    "http://{SELF}/elsewhere",
    "http://{OTHER}/steal",
    "\\\\{OTHER}\\x",
    "//{OTHER}/x",
    "https://{SELF}/x",
    "",
    "http://localhost:{PORT}/x",
    "ftp://{SELF}/x",
    "/a/../../../b",
];

const CONTENT_TYPES: [&str; 4] = [
    "application/json",
    "text/html",
    "application/json; charset=latin1",
    "",
];

const HEADER_NAMES: [&str; 16] = [
    "Content-Length",
    "Transfer-Encoding",
    "Content-Encoding",
    "Connection",
    "X-Request-Id",
    "Retry-After",
    "X-Total-Count",
    "Link",
    "Location",
    "Set-Cookie",
    "Keep-Alive",
    "Trailer",
    "Content-Type",
    "WWW-Authenticate",
    "Upgrade",
    "Expect",
];

/// `{LEN}`: the body's true length; `{LEN-1}`, `{LEN+1}`.
const CONTENT_LENGTHS: [&str; 14] = [
    "100000000000",
    "18446744073709551615",
    "18446744073709551616",
    "0",
    "{LEN-1}",
    "{LEN+1}",
    "abc",
    "-1",
    "1e3",
    " {LEN}",
    "{LEN}, {LEN}",
    "+{LEN}",
    "0x10",
    "99999999999999999999999",
];

const BIG_SIZES: [usize; 6] = [
    64 << 10,
    RESPONSE_LIMIT,
    RESPONSE_LIMIT + 1,
    4 << 20,
    16 << 20,
    64 << 20,
];

const DEPTHS: [usize; 4] = [64, 200, 10_000, 100_000];

// ------------------------------------------------------------------------------------------------------
// Bytes <-> scenario.

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos = self.pos.saturating_add(1);
        b
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let start = self.pos.min(self.data.len());
        let end = start.saturating_add(n).min(self.data.len());
        self.pos = self.pos.saturating_add(n);
        self.data[start..end].to_vec()
    }
}

impl Scenario {
    /// Every byte string is a scenario; missing bytes read as zero (the plainest choice).
    pub fn decode(data: &[u8]) -> Scenario {
        let mut c = Cursor { data, pos: 0 };
        let b0 = c.byte();
        let entry = if b0 & 1 == 0 {
            Entry::Send
        } else {
            Entry::Stream
        };
        let after = match (b0 >> 1) & 3 {
            0 | 1 => After::Close,
            2 => After::RepeatLast,
            _ => After::EndlessPages,
        };
        let page_size = 1 + ((b0 >> 3) & 3) as usize;
        let read_ahead = 1 + ((b0 >> 5) & 3) as usize;
        let n = 1 + (c.byte() as usize % MAX_ANSWERS);
        let answers = (0..n).map(|_| decode_answer(&mut c)).collect();
        Scenario {
            entry,
            after,
            page_size,
            read_ahead,
            answers,
        }
    }

    /// The bytes [`Scenario::decode`] turns back into this scenario (lengths past the caps are cut).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let entry = match self.entry {
            Entry::Send => 0,
            Entry::Stream => 1,
        };
        let after = match self.after {
            After::Close => 0,
            After::RepeatLast => 2,
            After::EndlessPages => 3,
        };
        let ps = (self.page_size.clamp(1, 4) - 1) as u8;
        let ra = (self.read_ahead.clamp(1, 4) - 1) as u8;
        out.push(entry | (after << 1) | (ps << 3) | (ra << 5));
        let n = self.answers.len().clamp(1, MAX_ANSWERS);
        out.push((n - 1) as u8);
        for a in self.answers.iter().take(n) {
            encode_answer(a, &mut out);
        }
        out
    }
}

fn decode_answer(c: &mut Cursor) -> Answer {
    let tag = c.byte();
    if tag & 7 == 7 {
        let len = c.u16() as usize % (MAX_LITERAL + 1);
        return Answer {
            head: Head::Raw(c.bytes(len)),
            payload: Payload::Empty,
            encoding: Encoding::Identity,
            framing: Framing::Length,
            delivery: decode_delivery(c),
        };
    }
    let status = STATUSES[(tag >> 3) as usize % STATUSES.len()];
    let count = (tag & 7) as usize % (MAX_HEADERS + 1);
    let headers = (0..count).map(|_| decode_header(c)).collect();
    let p = c.byte();
    let payload = match p & 7 {
        0..=2 => Payload::Page,
        3 => Payload::Items(c.u32() % (MAX_ITEMS + 1)),
        4 => Payload::Empty,
        5 => {
            let len = c.u16() as usize % (MAX_LITERAL + 1);
            Payload::Literal(c.bytes(len))
        }
        6 => Payload::Big {
            size: ((p >> 3) & 0xf) % BIG_SIZES.len() as u8,
            zeros: p & 0x80 != 0,
        },
        _ => Payload::Deep((p >> 3) % DEPTHS.len() as u8),
    };
    let encoding = match c.byte() % 16 {
        0..=8 => Encoding::Identity,
        9 | 10 => Encoding::Gzip,
        11 => Encoding::GzipLabelOnly,
        12 => Encoding::GzipTruncated,
        13 => Encoding::GzipTrailing,
        14 => Encoding::GzipTwice,
        _ => match c.byte() & 1 {
            0 => Encoding::Deflate,
            _ => Encoding::BrLabelOnly,
        },
    };
    let framing = match c.byte() % 16 {
        0..=9 => Framing::Length,
        10 => Framing::Chunked(c.byte()),
        11 => Framing::Close,
        12 => Framing::LengthValue(c.byte() % CONTENT_LENGTHS.len() as u8),
        13 => Framing::LengthTwice,
        14 => Framing::ChunkedBad(c.byte() % 8),
        _ => Framing::ChunkedAndLength,
    };
    Answer {
        head: Head::Built { status, headers },
        payload,
        encoding,
        framing,
        delivery: decode_delivery(c),
    }
}

fn decode_header(c: &mut Cursor) -> Header {
    let k = c.byte();
    match k % 8 {
        0 => Header::RetryAfter(c.byte() % RETRY_AFTER.len() as u8),
        1 => Header::TotalCount(c.byte() % TOTALS.len() as u8),
        2 | 7 => Header::Link(c.byte() % LINKS.len() as u8),
        3 => Header::Location(c.byte() % LOCATIONS.len() as u8),
        4 => Header::ContentType(c.byte() % CONTENT_TYPES.len() as u8),
        5 => {
            let name = (k >> 3) % HEADER_NAMES.len() as u8;
            let len = c.byte() as usize;
            Header::Named(name, c.bytes(len))
        }
        _ => {
            let len = c.byte() as usize;
            let name = c.bytes(len);
            let len = c.byte() as usize;
            Header::Literal(name, c.bytes(len))
        }
    }
}

fn decode_delivery(c: &mut Cursor) -> Delivery {
    match c.byte() % 16 {
        0..=10 => Delivery::Full,
        11 => Delivery::Split(c.byte() % 16 + 1),
        12 => Delivery::Truncate(c.u16()),
        13 => Delivery::Stall(c.u16()),
        14 => Delivery::Drop,
        _ => Delivery::FullClose,
    }
}

fn push_len8(out: &mut Vec<u8>, bytes: &[u8]) {
    let n = bytes.len().min(255);
    out.push(n as u8);
    out.extend_from_slice(&bytes[..n]);
}

fn push_len16(out: &mut Vec<u8>, bytes: &[u8]) {
    let n = bytes.len().min(MAX_LITERAL);
    out.extend_from_slice(&(n as u16).to_be_bytes());
    out.extend_from_slice(&bytes[..n]);
}

fn encode_answer(a: &Answer, out: &mut Vec<u8>) {
    match &a.head {
        Head::Raw(bytes) => {
            out.push(7);
            push_len16(out, bytes);
            encode_delivery(a.delivery, out);
            return;
        }
        Head::Built { status, headers } => {
            let idx = STATUSES
                .iter()
                .position(|s| s == status)
                .expect("a status from STATUSES") as u8;
            let count = headers.len().min(MAX_HEADERS);
            out.push((idx << 3) | count as u8);
            for h in headers.iter().take(count) {
                match h {
                    Header::RetryAfter(i) => out.extend([0, *i]),
                    Header::TotalCount(i) => out.extend([1, *i]),
                    Header::Link(i) => out.extend([2, *i]),
                    Header::Location(i) => out.extend([3, *i]),
                    Header::ContentType(i) => out.extend([4, *i]),
                    Header::Named(name, value) => {
                        out.push(5 | ((name % HEADER_NAMES.len() as u8) << 3));
                        push_len8(out, value);
                    }
                    Header::Literal(name, value) => {
                        out.push(6);
                        push_len8(out, name);
                        push_len8(out, value);
                    }
                }
            }
        }
    }
    match &a.payload {
        Payload::Page => out.push(0),
        Payload::Items(n) => {
            out.push(3);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Payload::Empty => out.push(4),
        Payload::Literal(bytes) => {
            out.push(5);
            push_len16(out, bytes);
        }
        Payload::Big { size, zeros } => out.push(6 | (size << 3) | if *zeros { 0x80 } else { 0 }),
        Payload::Deep(d) => out.push(7 | (d << 3)),
    }
    match a.encoding {
        Encoding::Identity => out.push(0),
        Encoding::Gzip => out.push(9),
        Encoding::GzipLabelOnly => out.push(11),
        Encoding::GzipTruncated => out.push(12),
        Encoding::GzipTrailing => out.push(13),
        Encoding::GzipTwice => out.push(14),
        Encoding::Deflate => out.extend([15, 0]),
        Encoding::BrLabelOnly => out.extend([15, 1]),
    }
    match a.framing {
        Framing::Length => out.push(0),
        Framing::Chunked(n) => out.extend([10, n]),
        Framing::Close => out.push(11),
        Framing::LengthValue(i) => out.extend([12, i]),
        Framing::LengthTwice => out.push(13),
        Framing::ChunkedBad(v) => out.extend([14, v]),
        Framing::ChunkedAndLength => out.push(15),
    }
    encode_delivery(a.delivery, out);
}

fn encode_delivery(d: Delivery, out: &mut Vec<u8>) {
    match d {
        Delivery::Full => out.push(0),
        Delivery::Split(n) => out.extend([11, n.saturating_sub(1)]),
        Delivery::Truncate(n) => {
            out.push(12);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Delivery::Stall(n) => {
            out.push(13);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Delivery::Drop => out.push(14),
        Delivery::FullClose => out.push(15),
    }
}

// ------------------------------------------------------------------------------------------------------
// Scenario -> bytes on the wire.

struct Ctx {
    self_addr: String,
    other_addr: String,
    port: u16,
    page_size: usize,
}

impl Ctx {
    fn fill(&self, s: &str) -> String {
        let ps = self.page_size;
        let many = || {
            let one = format!("<http://{}/items?page=2>; rel=\"next\"", self.self_addr);
            vec![one; 500].join(", ")
        };
        let mut s = s
            .replace("{SELF}", &self.self_addr)
            .replace("{OTHER}", &self.other_addr)
            .replace("{PORT}", &self.port.to_string())
            .replace("{PS2+1}", &(2 * ps + 1).to_string())
            .replace("{PS2}", &(2 * ps).to_string())
            .replace("{PS3}", &(3 * ps).to_string())
            .replace("{PS100}", &(100 * ps).to_string())
            .replace("{PS}", &ps.to_string());
        if s.contains("{MANY}") {
            s = s.replace("{MANY}", &many());
        }
        s
    }

    fn fill_bytes(&self, b: &[u8]) -> Vec<u8> {
        if !b.contains(&b'{') {
            return b.to_vec();
        }
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            let rest = &b[i..];
            let token = [("{SELF}", &self.self_addr), ("{OTHER}", &self.other_addr)]
                .into_iter()
                .find(|(t, _)| rest.starts_with(t.as_bytes()));
            match token {
                Some((t, v)) => {
                    out.extend_from_slice(v.as_bytes());
                    i += t.len();
                }
                None => {
                    out.push(b[i]);
                    i += 1;
                }
            }
        }
        out
    }
}

/// An answer as bytes, and whether the connection closes after it.
struct Wire {
    bytes: Vec<u8>,
    close_after: bool,
    delivery: Delivery,
}

/// A JSON array of `n` one-digit items, each `digit` (0 to 9): the answers of one scenario use their index,
/// so an honest list's pages differ as real pages do (the engine ends a listing at a repeated page).
fn json_items(n: usize, digit: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(2 * n + 2);
    v.push(b'[');
    for i in 0..n {
        if i > 0 {
            v.push(b',');
        }
        v.push(b'0' + (digit % 10) as u8);
    }
    v.push(b']');
    v
}

/// A JSON array of zeros padded with spaces to exactly `size` bytes (or `size` zero bytes).
fn big_body(size: usize, zeros: bool) -> Vec<u8> {
    if zeros || size < 2 {
        return vec![0u8; size];
    }
    let n = (size - 1) / 2;
    let mut v = json_items(n, 0);
    v.resize(size, b' ');
    v
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("writing to a Vec");
    e.finish().expect("writing to a Vec")
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("writing to a Vec");
    e.finish().expect("writing to a Vec")
}

/// A big body compressed (gzip or zlib), built once per process from 64 KiB pieces (never whole in memory);
/// the same bytes as `big_body(size, zeros)` compressed.
fn big_compressed(size: usize, zeros: bool, zlib_format: bool) -> Arc<Vec<u8>> {
    type Cache = Mutex<HashMap<(usize, bool, bool), Arc<Vec<u8>>>>;
    static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (size, zeros, zlib_format);
    if let Some(v) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return v.clone();
    }
    let piece: Vec<u8> = if zeros || size < 2 {
        vec![0u8; 64 << 10]
    } else {
        b"0,".repeat(32 << 10)
    };
    let out = if zlib_format {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        write_big(&mut e, size, zeros, &piece);
        e.finish().expect("a Vec")
    } else {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        write_big(&mut e, size, zeros, &piece);
        e.finish().expect("a Vec")
    };
    let out = Arc::new(out);
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, out.clone());
    out
}

/// Writes `units` copies of a unit of `unit_len` bytes, `piece` being such copies back to back.
fn write_units(w: &mut impl Write, piece: &[u8], unit_len: usize, mut units: usize) {
    while units > 0 {
        let n = units.min(piece.len() / unit_len);
        w.write_all(&piece[..n * unit_len]).expect("a Vec");
        units -= n;
    }
}

/// Writes `big_body(size, zeros)` to `w` in pieces (`piece`: zero bytes, or "0," repeated).
fn write_big(w: &mut impl Write, size: usize, zeros: bool, piece: &[u8]) {
    if zeros || size < 2 {
        write_units(w, piece, 1, size);
        return;
    }
    let n = (size - 1) / 2;
    let json_len = if n == 0 {
        w.write_all(b"[]").expect("a Vec");
        2
    } else {
        // "[", n - 1 times "0,", then "0]".
        w.write_all(b"[").expect("a Vec");
        write_units(w, piece, 2, n - 1);
        w.write_all(b"0]").expect("a Vec");
        2 * n + 1
    };
    w.write_all(&vec![b' '; size - json_len]).expect("a Vec");
}

fn header_bytes(h: &Header, ctx: &Ctx) -> (Vec<u8>, Vec<u8>) {
    let pick = |table: &[&str], i: u8| ctx.fill(table[i as usize % table.len()]).into_bytes();
    match h {
        Header::RetryAfter(i) => (b"Retry-After".to_vec(), pick(&RETRY_AFTER, *i)),
        Header::TotalCount(i) => (b"X-Total-Count".to_vec(), pick(&TOTALS, *i)),
        Header::Link(i) => (b"Link".to_vec(), pick(&LINKS, *i)),
        Header::Location(i) => (b"Location".to_vec(), pick(&LOCATIONS, *i)),
        Header::ContentType(i) => (b"Content-Type".to_vec(), pick(&CONTENT_TYPES, *i)),
        Header::Named(n, v) => (
            HEADER_NAMES[*n as usize % HEADER_NAMES.len()]
                .as_bytes()
                .to_vec(),
            ctx.fill_bytes(v),
        ),
        Header::Literal(n, v) => (n.clone(), ctx.fill_bytes(v)),
    }
}

fn chunked(body: &[u8], size: usize) -> Vec<u8> {
    let size = size.max(body.len().div_ceil(4096)).max(1);
    let mut out = Vec::with_capacity(body.len() + body.len() / size * 8 + 8);
    for c in body.chunks(size) {
        out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        out.extend_from_slice(c);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn chunked_bad(body: &[u8], variant: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let n = body.len();
    match variant % 8 {
        0 => out.extend_from_slice(b"zz\r\n"),
        1 => {
            out.extend_from_slice(b"ffffffffffffffff\r\n");
            out.extend_from_slice(body);
        }
        2 => {
            out.extend_from_slice(format!("{:x}\r\n", n + 10).as_bytes());
            out.extend_from_slice(body);
        }
        3 => {
            out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
            out.extend_from_slice(body);
            out.extend_from_slice(b"\r\n");
        }
        4 => {
            out.extend_from_slice(format!("{n:x};ext=\"1\"\r\n").as_bytes());
            out.extend_from_slice(body);
            out.extend_from_slice(b"\r\n0\r\nX-Trailer: a\r\n\r\n");
        }
        5 => {
            out.extend_from_slice(b"-1\r\n");
            out.extend_from_slice(body);
        }
        6 => {
            out.extend_from_slice(format!("  {n:x}  \r\n").as_bytes());
            out.extend_from_slice(body);
            out.extend_from_slice(b"\r\n0\r\n\r\n");
        }
        _ => {
            out.extend_from_slice(format!("{n:020x}\r\n").as_bytes());
            out.extend_from_slice(body);
            out.extend_from_slice(b"\r\n0\r\n\r\n");
        }
    }
    out
}

fn build_wire(a: &Answer, ctx: &Ctx, index: usize) -> Wire {
    let (status, headers) = match &a.head {
        Head::Raw(bytes) => {
            return Wire {
                bytes: ctx.fill_bytes(bytes),
                close_after: true,
                delivery: a.delivery,
            }
        }
        Head::Built { status, headers } => (*status, headers),
    };
    let plain = |cap: usize| -> Vec<u8> {
        match &a.payload {
            Payload::Page => json_items(ctx.page_size, index),
            Payload::Items(n) => json_items(*n as usize, index),
            Payload::Empty => Vec::new(),
            Payload::Literal(b) => ctx.fill_bytes(b),
            Payload::Big { size, zeros } => {
                big_body(BIG_SIZES[*size as usize % BIG_SIZES.len()].min(cap), *zeros)
            }
            Payload::Deep(d) => {
                let d = DEPTHS[*d as usize % DEPTHS.len()];
                let mut v = vec![b'['; d];
                v.resize(2 * d, b']');
                v
            }
        }
    };
    // A big body is built compressed without holding it whole; anything else is compressed as it is.
    let big = match &a.payload {
        Payload::Big { size, zeros } => Some((BIG_SIZES[*size as usize % BIG_SIZES.len()], *zeros)),
        _ => None,
    };
    let compressed_gzip = || match big {
        Some((size, zeros)) => big_compressed(size, zeros, false).to_vec(),
        None => gzip(&plain(usize::MAX)),
    };
    let (body, content_encoding): (Vec<u8>, Option<&str>) = match a.encoding {
        Encoding::Identity => (plain(MAX_BODY_PLAIN), None),
        Encoding::Gzip => (compressed_gzip(), Some("gzip")),
        Encoding::GzipLabelOnly => (plain(MAX_BODY_PLAIN), Some("gzip")),
        Encoding::GzipTruncated => {
            let mut g = compressed_gzip();
            g.truncate(g.len() / 2);
            (g, Some("gzip"))
        }
        Encoding::GzipTrailing => {
            let mut g = compressed_gzip();
            g.extend_from_slice(b"\x00garbage after the gzip trailer");
            (g, Some("gzip"))
        }
        Encoding::GzipTwice => (gzip(&compressed_gzip()), Some("gzip, gzip")),
        Encoding::Deflate => match big {
            Some((size, zeros)) => (big_compressed(size, zeros, true).to_vec(), Some("deflate")),
            None => (zlib(&plain(usize::MAX)), Some("deflate")),
        },
        Encoding::BrLabelOnly => (plain(MAX_BODY_PLAIN), Some("br")),
    };
    let mut out = format!("HTTP/1.1 {status} X\r\n").into_bytes();
    for h in headers {
        let (name, value) = header_bytes(h, ctx);
        out.extend_from_slice(&name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(&value);
        out.extend_from_slice(b"\r\n");
    }
    if let Some(ce) = content_encoding {
        out.extend_from_slice(format!("Content-Encoding: {ce}\r\n").as_bytes());
    }
    let len = body.len();
    let fill_len = |s: &str| {
        s.replace("{LEN-1}", &len.saturating_sub(1).to_string())
            .replace("{LEN+1}", &(len + 1).to_string())
            .replace("{LEN}", &len.to_string())
    };
    let (framed, close_after) = match a.framing {
        Framing::Length => {
            out.extend_from_slice(format!("Content-Length: {len}\r\n").as_bytes());
            (body, false)
        }
        Framing::LengthValue(i) => {
            let v = fill_len(CONTENT_LENGTHS[i as usize % CONTENT_LENGTHS.len()]);
            out.extend_from_slice(format!("Content-Length: {v}\r\n").as_bytes());
            (body, true)
        }
        Framing::LengthTwice => {
            out.extend_from_slice(
                format!("Content-Length: {len}\r\nContent-Length: {}\r\n", len + 1).as_bytes(),
            );
            (body, true)
        }
        Framing::Chunked(size) => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            (chunked(&body, 1 + size as usize), false)
        }
        Framing::ChunkedBad(v) => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            (chunked_bad(&body, v), true)
        }
        Framing::Close => {
            out.extend_from_slice(b"Connection: close\r\n");
            (body, true)
        }
        Framing::ChunkedAndLength => {
            out.extend_from_slice(
                format!("Transfer-Encoding: chunked\r\nContent-Length: {len}\r\n").as_bytes(),
            );
            (chunked(&body, 1024), true)
        }
    };
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&framed);
    Wire {
        bytes: out,
        close_after,
        delivery: a.delivery,
    }
}

/// The answer of [`After::EndlessPages`] to a request for page `n`.
fn endless_page(ctx: &Ctx, n: u64) -> Wire {
    let body = json_items(ctx.page_size, 0);
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLink: <http://{}/items?page={}&pageSize={}>; \
         rel=\"next\"\r\nContent-Length: {}\r\n\r\n",
        ctx.self_addr,
        n.saturating_add(1),
        ctx.page_size,
        body.len()
    );
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&body);
    Wire {
        bytes,
        close_after: false,
        delivery: Delivery::Full,
    }
}

// ------------------------------------------------------------------------------------------------------
// The server.

struct Server {
    ctx: Ctx,
    wires: Vec<Arc<Wire>>,
    after: After,
    requests: AtomicUsize,
    /// Requests that reached this listener for another origin (another `Host`, or TLS).
    strays: Mutex<Vec<String>>,
    /// Connections to the other origin.
    other: AtomicUsize,
}

impl Server {
    fn answer(&self, index: usize, target: &str) -> Option<Arc<Wire>> {
        if let Some(w) = self.wires.get(index) {
            return Some(w.clone());
        }
        match self.after {
            After::Close => None,
            After::RepeatLast => self.wires.last().cloned(),
            After::EndlessPages => {
                let n = Url::parse(&format!("http://h{target}"))
                    .ok()
                    .and_then(|u| {
                        u.query_pairs()
                            .find(|(k, _)| k == "page")
                            .and_then(|(_, v)| v.parse::<u64>().ok())
                    })
                    .unwrap_or(1);
                Some(Arc::new(endless_page(&self.ctx, n)))
            }
        }
    }

    fn stray(&self, what: String) {
        self.strays
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(what);
    }
}

/// Reads one request head (up to the blank line) into `buf`; returns the request target and the `Host`.
async fn read_request(
    sock: &mut TcpStream,
    buf: &mut Vec<u8>,
    server: &Server,
) -> Option<(String, String)> {
    loop {
        if buf.first() == Some(&0x16) {
            server.stray("a TLS handshake (an https URL) reached the plain-http server".into());
            return None;
        }
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            let mut lines = head.split("\r\n");
            let target = lines
                .next()
                .and_then(|l| l.split(' ').nth(1))
                .unwrap_or("/")
                .to_string();
            let host = lines
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("host"))
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default();
            return Some((target, host));
        }
        if buf.len() > 64 << 10 {
            return None;
        }
        let mut chunk = [0u8; 4096];
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn serve_connection(mut sock: TcpStream, server: Arc<Server>) {
    let mut buf = Vec::new();
    while let Some((target, host)) = read_request(&mut sock, &mut buf, &server).await {
        if host != server.ctx.self_addr {
            server.stray(format!("a request for Host {host:?} ({target})"));
        }
        let index = server.requests.fetch_add(1, Ordering::SeqCst);
        let Some(wire) = server.answer(index, &target) else {
            return;
        };
        let bytes = &wire.bytes;
        let close = match wire.delivery {
            Delivery::Full => {
                let _ = sock.write_all(bytes).await;
                wire.close_after
            }
            Delivery::FullClose => {
                let _ = sock.write_all(bytes).await;
                true
            }
            Delivery::Split(n) => {
                let head = bytes.len().min(4096);
                for piece in bytes[..head].chunks(n.max(1) as usize) {
                    if sock.write_all(piece).await.is_err() {
                        return;
                    }
                    let _ = sock.flush().await;
                    tokio::task::yield_now().await;
                }
                let _ = sock.write_all(&bytes[head..]).await;
                wire.close_after
            }
            Delivery::Truncate(n) => {
                let n = n as usize % bytes.len().max(1);
                let _ = sock.write_all(&bytes[..n]).await;
                true
            }
            Delivery::Stall(n) => {
                let n = n as usize % (bytes.len() + 1);
                let _ = sock.write_all(&bytes[..n]).await;
                // Holds the connection open until the case ends (the runtime is dropped).
                std::future::pending::<()>().await;
                true
            }
            Delivery::Drop => true,
        };
        if close {
            let _ = sock.shutdown().await;
            return;
        }
    }
}

// ------------------------------------------------------------------------------------------------------
// Memory accounting and the watchdog.

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static ARMED: AtomicBool = AtomicBool::new(false);
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The system allocator, counting the bytes live and their peak; while a case runs, an allocation that would
/// take the live total past [`HARD_CAP`] fails (Rust then aborts: "memory allocation of N bytes failed").
pub struct CountingAlloc;

impl CountingAlloc {
    fn grow(size: usize) -> bool {
        let live = LIVE.fetch_add(size, Ordering::Relaxed) + size;
        if ARMED.load(Ordering::Relaxed) && live > HARD_CAP {
            LIVE.fetch_sub(size, Ordering::Relaxed);
            return false;
        }
        PEAK.fetch_max(live, Ordering::Relaxed);
        true
    }
}

// SAFETY: every call is forwarded to `System` unchanged; the counters only observe sizes.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        INSTALLED.store(true, Ordering::Relaxed);
        if !Self::grow(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = System.alloc(layout);
        if p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        INSTALLED.store(true, Ordering::Relaxed);
        if !Self::grow(layout.size()) {
            return std::ptr::null_mut();
        }
        let p = System.alloc_zeroed(layout);
        if p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = layout.size();
        if new_size > old && !Self::grow(new_size - old) {
            return std::ptr::null_mut();
        }
        let p = System.realloc(ptr, layout, new_size);
        if p.is_null() {
            if new_size > old {
                LIVE.fetch_sub(new_size - old, Ordering::Relaxed);
            }
        } else if new_size < old {
            LIVE.fetch_sub(old - new_size, Ordering::Relaxed);
        }
        p
    }
}

/// Whether [`CountingAlloc`] is the global allocator of this process.
pub fn counting_installed() -> bool {
    drop(std::hint::black_box(Box::new(0u64)));
    INSTALLED.load(Ordering::Relaxed)
}

static DEADLINE: Mutex<Option<Instant>> = Mutex::new(None);

/// Aborts the process when a case outlives its deadline by a synchronous loop the runtime cannot time out.
fn arm_watchdog(deadline: Option<Instant>) {
    static START: Once = Once::new();
    START.call_once(|| {
        std::thread::Builder::new()
            .name("hostile-watchdog".into())
            .spawn(|| loop {
                std::thread::sleep(Duration::from_millis(50));
                let due = *DEADLINE.lock().unwrap_or_else(|e| e.into_inner());
                if due.is_some_and(|d| Instant::now() > d) {
                    eprintln!(
                        "hostile: the case did not end within {:?} and the runtime could not stop it (a \
                         synchronous loop); aborting",
                        BOUND + Duration::from_secs(5)
                    );
                    std::process::abort();
                }
            })
            .expect("a watchdog thread");
    });
    *DEADLINE.lock().unwrap_or_else(|e| e.into_inner()) = deadline;
}

/// The heap cap and the watchdog, on while a case runs; off when it ends, panicking or not.
struct Armed;

impl Armed {
    fn new(cap: bool, deadline: Instant) -> Self {
        ARMED.store(cap, Ordering::Relaxed);
        arm_watchdog(Some(deadline));
        Armed
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        arm_watchdog(None);
        ARMED.store(false, Ordering::Relaxed);
    }
}

// ------------------------------------------------------------------------------------------------------
// Running a scenario.

/// Client options a case may change.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// The longest `Retry-After` the client honours (today `RetryPolicy::max_retry_after`).
    pub max_retry_wait: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_retry_wait: Duration::from_millis(20),
        }
    }
}

/// How a case ended (after [`run`]'s checks passed).
#[derive(Debug)]
pub struct Report {
    /// Items read (a stream) or body bytes (a send); or the error the call ended with.
    pub outcome: Result<u64, Error>,
    /// Requests the server answered or refused.
    pub requests: usize,
    pub elapsed: Duration,
    /// The largest body the engine handed over.
    pub largest_body: usize,
    /// Pages a stream handed over.
    pub pages: u64,
    /// Peak heap growth during the case, when [`CountingAlloc`] is installed.
    pub peak_bytes: Option<usize>,
}

/// The vendor error parser of the harness: the body as the message (as vendors that quote it do).
fn parse_error(_status: u16, body: &[u8]) -> (Option<String>, Option<String>) {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
    (None, (!text.is_empty()).then_some(text))
}

/// The client every case uses: short timeouts, one retry, and the bounds under test.
fn client(options: Options, self_addr: &str) -> HttpClient {
    let config = HttpConfig {
        vendor: "hostile",
        base_url: Url::parse(&format!("http://{self_addr}/")).expect("a URL"),
        limits: Limits {
            max_response_bytes: RESPONSE_LIMIT as u64,
            max_pages: MAX_PAGES,
        },
        rate_limit: None,
        timeout: REQUEST_TIMEOUT,
        connect_timeout: REQUEST_TIMEOUT,
        retry: RetryPolicy {
            max_retries: 1,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(5),
            max_retry_after: options.max_retry_wait,
            max_rate_limited: 1,
        },
        tls_roots: vec![],
        auth_hint: None,
    };
    let auth = StaticKey::new(KeyPlacement::Header("x-api-key"), SECRET, refused_with_401);
    HttpClient::new(config, Arc::new(auth), parse_error).expect("the harness's client builds")
}

/// Serves `scenario` and drives the engine against it with the default [`Options`]; panics on a violated
/// bound (see the module documentation).
pub fn run(scenario: &Scenario) -> Report {
    run_with(scenario, Options::default())
}

pub fn run_with(scenario: &Scenario, options: Options) -> Report {
    let counting = counting_installed();
    // Compressed big bodies are built once per process, before the clock and the heap count start.
    for a in &scenario.answers {
        if let Payload::Big { size, zeros } = a.payload {
            let size = BIG_SIZES[size as usize % BIG_SIZES.len()];
            big_compressed(size, zeros, false);
            big_compressed(size, zeros, true);
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let started = Instant::now();
    let guard = Armed::new(counting, started + BOUND + Duration::from_secs(5));

    let largest = Arc::new(AtomicUsize::new(0));
    let (outcome, pages, served, wire_bytes, timed_out) =
        rt.block_on(drive(scenario, options, &largest));
    let elapsed = started.elapsed();
    drop(rt);

    drop(guard);
    let peak = PEAK.load(Ordering::Relaxed).saturating_sub(base);

    assert!(
        !timed_out,
        "the engine did not end within {BOUND:?} ({} requests served)",
        served.requests.load(Ordering::SeqCst)
    );
    if let Err(e) = &outcome {
        assert_ne!(
            e.kind,
            ErrorKind::Internal,
            "a panic inside the engine, caught and reported as an internal error: {e}"
        );
        assert!(
            !e.to_string().contains(SECRET),
            "an error quotes the credential: {e}"
        );
    }
    let other = served.other.load(Ordering::SeqCst);
    assert_eq!(
        other, 0,
        "{other} connection(s) reached the other origin (a credentialed request left the client's origin)"
    );
    let strays = served
        .strays
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    assert!(
        strays.is_empty(),
        "requests for another origin reached the server: {strays:?}"
    );
    let largest_body = largest.load(Ordering::SeqCst);
    assert!(
        largest_body <= RESPONSE_LIMIT,
        "the engine handed over a body of {largest_body} bytes, over the response-size limit of \
         {RESPONSE_LIMIT} (the server sent {wire_bytes} bytes in all)"
    );
    let in_flight = CHANNEL_PAGES + scenario.read_ahead + 2;
    let allowed = SLACK + 3 * wire_bytes + 3 * in_flight * RESPONSE_LIMIT;
    if counting {
        assert!(
            peak <= allowed,
            "the heap grew by {peak} bytes during the case, more than the {allowed} allowed for {wire_bytes} \
             bytes served and {in_flight} pages in flight"
        );
    }
    Report {
        outcome,
        requests: served.requests.load(Ordering::SeqCst),
        elapsed,
        largest_body,
        pages,
        peak_bytes: counting.then_some(peak),
    }
}

type Driven = (Result<u64, Error>, u64, Arc<Server>, usize, bool);

async fn drive(scenario: &Scenario, options: Options, largest: &Arc<AtomicUsize>) -> Driven {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let other = TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let addr = listener.local_addr().expect("an address");
    let ctx = Ctx {
        self_addr: addr.to_string(),
        other_addr: other.local_addr().expect("an address").to_string(),
        port: addr.port(),
        page_size: scenario.page_size.clamp(1, 4),
    };
    let wires: Vec<Arc<Wire>> = scenario
        .answers
        .iter()
        .take(MAX_ANSWERS)
        .enumerate()
        .map(|(i, a)| Arc::new(build_wire(a, &ctx, i)))
        .collect();
    let wire_bytes = wires.iter().map(|w| w.bytes.len()).sum::<usize>() + 4096;
    let server = Arc::new(Server {
        ctx,
        wires,
        after: scenario.after,
        requests: AtomicUsize::new(0),
        strays: Mutex::new(Vec::new()),
        other: AtomicUsize::new(0),
    });
    let s = server.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(serve_connection(sock, s.clone()));
        }
    });
    let s = server.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = other.accept().await {
            s.other.fetch_add(1, Ordering::SeqCst);
            drop(sock);
        }
    });

    let page_size = server.ctx.page_size;
    let first = Url::parse(&format!(
        "http://{}/items?page=1&pageSize={page_size}",
        server.ctx.self_addr
    ))
    .expect("a URL");
    let http = Arc::new(client(options, &server.ctx.self_addr));
    let deadline = tokio::time::Instant::now() + BOUND;
    let mut pages = 0u64;
    let outcome = match scenario.entry {
        Entry::Send => {
            let req = Request::get(first, "hostile");
            match tokio::time::timeout_at(deadline, http.send(&req)).await {
                Err(_) => return (Err(timeout_error()), 0, server, wire_bytes, true),
                Ok(Ok(resp)) => {
                    largest.fetch_max(resp.body.len(), Ordering::SeqCst);
                    Ok(resp.body.len() as u64)
                }
                Ok(Err(e)) => Err(e),
            }
        }
        Entry::Stream => {
            let seen = largest.clone();
            let decode: Decoder<serde::de::IgnoredAny> = Arc::new(move |r: &Response| {
                seen.fetch_max(r.body.len(), Ordering::SeqCst);
                r.json::<Vec<serde::de::IgnoredAny>>("hostile", "hostile")
            });
            let list = PageNumberList {
                first,
                page_param: "page",
                page_size,
                total_header: "x-total-count",
                operation: "hostile",
                read_ahead: scenario.read_ahead.clamp(1, 4),
            };
            let mut stream =
                page_number_stream(&tokio::runtime::Handle::current(), http, list, decode);
            let mut items = 0u64;
            let mut result = Ok(0);
            loop {
                match tokio::time::timeout_at(deadline, stream.next_page()).await {
                    Err(_) => return (Err(timeout_error()), pages, server, wire_bytes, true),
                    Ok(None) => break,
                    Ok(Some(Ok(page))) => {
                        assert!(
                            page.len() <= RESPONSE_LIMIT,
                            "a page of {} items, more than a body within the limit can hold",
                            page.len()
                        );
                        pages += 1;
                        items += page.len() as u64;
                        result = Ok(items);
                    }
                    Ok(Some(Err(e))) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            result
        }
    };
    (outcome, pages, server, wire_bytes, false)
}

fn timeout_error() -> Error {
    Error::new(ErrorKind::Timeout, "the harness's bound passed")
}

// ------------------------------------------------------------------------------------------------------
// Tests: the property test, the rows of issue 18, and honest servers (which must pass today). Every case
// runs in a child process (this test binary again, filtered to the one test), so an abort or a runaway
// allocation fails that test alone; the child has `CountingAlloc` as its allocator.

#[cfg(test)]
#[global_allocator]
static COUNTING: CountingAlloc = CountingAlloc;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    use std::process::{Command, Stdio};

    const CHILD: &str = "LABELPORT_HOSTILE_CHILD";

    /// Runs `body` in a child process running only test `name`, and fails with how the child ended.
    fn isolated(name: &str, limit: Duration, body: impl FnOnce()) {
        if std::env::var(CHILD).as_deref() == Ok(name) {
            body();
            return;
        }
        let full = format!("engine::hostile::tests::{name}");
        let dir = std::env::temp_dir();
        let out_path = dir.join(format!(
            "labelport-hostile-{}-{name}.out",
            std::process::id()
        ));
        let out = std::fs::File::create(&out_path).expect("a temporary file");
        let mut child = Command::new(std::env::current_exe().expect("this test binary"))
            .args([full.as_str(), "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, name)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("a file handle"))
            .stderr(out)
            .spawn()
            .expect("a child process");
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("the child's status") {
                break Some(status);
            }
            if started.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let output = std::fs::read(&out_path).unwrap_or_default();
        let _ = std::fs::remove_file(&out_path);
        let text = String::from_utf8_lossy(&output);
        let tail: String = {
            let chars: Vec<char> = text.chars().collect();
            chars[chars.len().saturating_sub(4000)..].iter().collect()
        };
        let how = match status {
            None => format!("did not end within {limit:?} (killed)"),
            Some(s) if s.success() => {
                assert!(
                    text.contains("1 passed"),
                    "the child ran no test named {full}: {tail}"
                );
                return;
            }
            Some(s) => describe(s),
        };
        panic!(
            "{name} failed in its child process, which {how} after {:.1} s\n--- child output (tail) ---\n{tail}",
            started.elapsed().as_secs_f64()
        );
    }

    #[cfg(unix)]
    fn describe(s: std::process::ExitStatus) -> String {
        use std::os::unix::process::ExitStatusExt;
        match (s.code(), s.signal()) {
            (Some(101), _) => "panicked (exit 101)".to_string(),
            (Some(c), _) => format!("exited with {c}"),
            (_, Some(6)) => "aborted (SIGABRT)".to_string(),
            (_, Some(sig)) => format!("was killed by signal {sig}"),
            _ => format!("ended with {s}"),
        }
    }

    #[cfg(not(unix))]
    fn describe(s: std::process::ExitStatus) -> String {
        format!("ended with {s}")
    }

    fn built(status: u16, headers: Vec<Header>, payload: Payload) -> Answer {
        Answer {
            head: Head::Built { status, headers },
            payload,
            encoding: Encoding::Identity,
            framing: Framing::Length,
            delivery: Delivery::Full,
        }
    }

    fn scenario(entry: Entry, after: After, answers: Vec<Answer>) -> Scenario {
        Scenario {
            entry,
            after,
            page_size: 2,
            read_ahead: 2,
            answers,
        }
    }

    fn literal(name: &str, value: &str) -> Header {
        Header::Literal(name.as_bytes().to_vec(), value.as_bytes().to_vec())
    }

    fn expect_error(r: &Report, kind: ErrorKind, code: &str) {
        match &r.outcome {
            Err(e) => assert!(
                e.kind == kind && e.code.as_deref() == Some(code),
                "expected {kind:?} with code {code}, got {:?} with code {:?}: {e}",
                e.kind,
                e.code
            ),
            Ok(v) => panic!("expected {kind:?} with code {code}, got a success ({v})"),
        }
    }

    // --- Rows of issue 18 (each expected to fail on the engine before the hostile-server fixes) ---

    /// Row 1: a `Content-Length` of 1e11 on a body that goes on past the limit.
    #[test]
    fn content_length_1e11_is_response_too_large() {
        isolated(
            "content_length_1e11_is_response_too_large",
            Duration::from_secs(60),
            || {
                let mut a = built(
                    200,
                    vec![],
                    Payload::Big {
                        size: 3,
                        zeros: false,
                    },
                );
                a.framing = Framing::LengthValue(0);
                let r = run(&scenario(Entry::Send, After::Close, vec![a]));
                expect_error(&r, ErrorKind::Vendor, "response_too_large");
            },
        );
    }

    /// Row 2: `X-Total-Count: 1000000000000` on a full page; the server keeps answering full pages.
    #[test]
    fn total_count_1e12_on_a_full_page_stays_bounded() {
        isolated(
            "total_count_1e12_on_a_full_page_stays_bounded",
            Duration::from_secs(60),
            || {
                let a = built(200, vec![Header::TotalCount(6)], Payload::Page);
                let r = run(&scenario(Entry::Stream, After::RepeatLast, vec![a]));
                if let Err(e) = &r.outcome {
                    assert_ne!(e.kind, ErrorKind::Internal, "{e}");
                }
                assert!(r.pages <= MAX_PAGES, "{} pages", r.pages);
            },
        );
    }

    /// Rows 9 and 10: `Retry-After: 1e30` on a 429, forever: a typed error at once, no panic.
    #[test]
    fn retry_after_1e30_is_a_typed_error() {
        isolated(
            "retry_after_1e30_is_a_typed_error",
            Duration::from_secs(60),
            || {
                let a = built(429, vec![literal("Retry-After", "1e30")], Payload::Empty);
                let r = run(&scenario(Entry::Send, After::RepeatLast, vec![a]));
                let e = r.outcome.as_ref().expect_err("a 429 forever is an error");
                assert!(
                    matches!(e.kind, ErrorKind::RateLimited | ErrorKind::Vendor),
                    "{:?}: {e}",
                    e.kind
                );
                assert!(r.elapsed < Duration::from_secs(2), "{:?}", r.elapsed);
            },
        );
    }

    /// Row 9: `Retry-After: 1000000000` with the client's default cap (120 s): `RateLimited` at once.
    #[test]
    fn retry_after_1e9_is_rate_limited_at_once() {
        isolated(
            "retry_after_1e9_is_rate_limited_at_once",
            Duration::from_secs(60),
            || {
                let a = built(
                    429,
                    vec![literal("Retry-After", "1000000000")],
                    Payload::Empty,
                );
                let options = Options {
                    max_retry_wait: RetryPolicy::default().max_retry_after,
                };
                let r = run_with(&scenario(Entry::Send, After::RepeatLast, vec![a]), options);
                let e = r.outcome.as_ref().expect_err("a 429 is an error");
                assert_eq!(e.kind, ErrorKind::RateLimited, "{e}");
                assert_eq!(r.requests, 1, "waited and asked again");
                assert!(r.elapsed < Duration::from_secs(2), "{:?}", r.elapsed);
            },
        );
    }

    /// Row 5: a gzip body of 64 KiB that inflates to 64 MiB (1000x).
    #[test]
    fn gzip_inflating_1000x_is_response_too_large() {
        isolated(
            "gzip_inflating_1000x_is_response_too_large",
            Duration::from_secs(60),
            || {
                let mut a = built(
                    200,
                    vec![],
                    Payload::Big {
                        size: 5,
                        zeros: true,
                    },
                );
                a.encoding = Encoding::Gzip;
                let r = run(&scenario(Entry::Send, After::Close, vec![a]));
                expect_error(&r, ErrorKind::Vendor, "response_too_large");
            },
        );
    }

    /// Row 5: a chunked body past the limit (4 MiB against 1 MiB).
    #[test]
    fn chunked_body_past_the_limit_is_response_too_large() {
        isolated(
            "chunked_body_past_the_limit_is_response_too_large",
            Duration::from_secs(60),
            || {
                let mut a = built(
                    200,
                    vec![],
                    Payload::Big {
                        size: 3,
                        zeros: false,
                    },
                );
                a.framing = Framing::Chunked(255);
                let r = run(&scenario(Entry::Send, After::Close, vec![a]));
                expect_error(&r, ErrorKind::Vendor, "response_too_large");
            },
        );
    }

    /// Row 12: a redirect to itself, forever.
    #[test]
    fn a_redirect_loop_is_redirect_loop() {
        isolated(
            "a_redirect_loop_is_redirect_loop",
            Duration::from_secs(60),
            || {
                let a = built(302, vec![Header::Location(0)], Payload::Empty);
                let r = run(&scenario(Entry::Send, After::RepeatLast, vec![a]));
                expect_error(&r, ErrorKind::Vendor, "redirect_loop");
            },
        );
    }

    /// Row 6: a `Link` to the next page on another origin: an error, and nothing reaches that origin.
    #[test]
    fn a_next_link_to_another_origin_is_refused() {
        isolated(
            "a_next_link_to_another_origin_is_refused",
            Duration::from_secs(60),
            || {
                let a = built(200, vec![Header::Link(3)], Payload::Page);
                let r = run(&scenario(Entry::Stream, After::Close, vec![a]));
                expect_error(&r, ErrorKind::Vendor, "cross_origin_link");
            },
        );
    }

    /// Row 8: endless distinct `next` links: a typed error after `max_pages`.
    #[test]
    fn endless_next_links_end_after_max_pages() {
        isolated(
            "endless_next_links_end_after_max_pages",
            Duration::from_secs(60),
            || {
                let a = built(200, vec![Header::Link(0)], Payload::Page);
                let r = run(&scenario(Entry::Stream, After::EndlessPages, vec![a]));
                let e = r.outcome.as_ref().expect_err("an endless list is an error");
                assert_eq!(e.kind, ErrorKind::Vendor, "{e}");
                assert!(
                    r.requests as u64 <= MAX_PAGES + 1,
                    "{} requests",
                    r.requests
                );
            },
        );
    }

    // --- Honest servers: the harness itself raises no false alarm (these pass today) ---

    #[test]
    fn honest_pages_are_read_to_the_end() {
        isolated(
            "honest_pages_are_read_to_the_end",
            Duration::from_secs(60),
            || {
                // Three pages of 2, 2 and 1 items: the total, a gzip page, a chunked page, a 503 retried.
                let page = |enc, framing| Answer {
                    encoding: enc,
                    framing,
                    ..built(200, vec![Header::TotalCount(4)], Payload::Page)
                };
                let mut last = built(200, vec![Header::TotalCount(4)], Payload::Items(1));
                last.framing = Framing::Chunked(0);
                let s = Scenario {
                    read_ahead: 1,
                    ..scenario(
                        Entry::Stream,
                        After::Close,
                        vec![
                            page(Encoding::Identity, Framing::Length),
                            built(503, vec![], Payload::Empty),
                            page(Encoding::Gzip, Framing::Chunked(3)),
                            last,
                        ],
                    )
                };
                let r = run(&s);
                assert_eq!(r.outcome.as_ref().ok(), Some(&5), "{:?}", r.outcome);
                assert_eq!(r.requests, 4);
                assert!(
                    r.peak_bytes.is_some(),
                    "the counting allocator is installed"
                );
            },
        );
    }

    #[test]
    fn honest_answers_to_a_send_pass() {
        isolated(
            "honest_answers_to_a_send_pass",
            Duration::from_secs(60),
            || {
                // A 429 with a short Retry-After, then a gzip, chunked body within the limit.
                let mut ok = built(
                    200,
                    vec![],
                    Payload::Big {
                        size: 0,
                        zeros: false,
                    },
                );
                ok.encoding = Encoding::Gzip;
                ok.framing = Framing::Chunked(200);
                let s = scenario(
                    Entry::Send,
                    After::Close,
                    vec![built(429, vec![Header::RetryAfter(2)], Payload::Empty), ok],
                );
                let r = run(&s);
                assert_eq!(
                    r.outcome.as_ref().ok(),
                    Some(&(64 << 10)),
                    "{:?}",
                    r.outcome
                );
                assert_eq!(r.requests, 2);
                // A redirect on the same origin is followed, a cross-origin one refused, untouched.
                let s = scenario(
                    Entry::Send,
                    After::Close,
                    vec![
                        built(307, vec![Header::Location(1)], Payload::Empty),
                        built(302, vec![Header::Location(2)], Payload::Empty),
                    ],
                );
                let r = run(&s);
                expect_error(&r, ErrorKind::Vendor, "cross_origin_redirect");
            },
        );
    }

    /// The seeds of the fuzz target are honest servers: each passes.
    #[test]
    fn fuzz_seeds_pass() {
        isolated("fuzz_seeds_pass", Duration::from_secs(60), || {
            let dir =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/http_response");
            let mut n = 0;
            for entry in std::fs::read_dir(&dir).expect("fuzz/seeds/http_response") {
                let path = entry.expect("a seed").path();
                let r = run(&Scenario::decode(&std::fs::read(&path).expect("a seed")));
                assert!(r.outcome.is_ok(), "{}: {:?}", path.display(), r.outcome);
                n += 1;
            }
            assert!(n >= 5, "{n} seeds");
        });
    }

    // --- The property test: arbitrary servers ---

    /// Cases of the property test (`LABELPORT_HOSTILE_CASES` overrides).
    const CASES: u32 = 256;

    #[test]
    fn arbitrary_servers_never_panic_hang_or_balloon() {
        isolated(
            "arbitrary_servers_never_panic_hang_or_balloon",
            Duration::from_secs(300),
            || {
                let cases = std::env::var("LABELPORT_HOSTILE_CASES")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(CASES);
                let mut runner = TestRunner::new(Config {
                    cases,
                    failure_persistence: None,
                    max_shrink_iters: 64,
                    max_shrink_time: 20_000,
                    ..Config::default()
                });
                let started = Instant::now();
                let result = runner.run(&proptest::collection::vec(any::<u8>(), 0..192), |bytes| {
                    // Printed before the case, so an abort leaves the input that caused it in the output.
                    eprintln!("hostile case: {}", hex::encode(&bytes));
                    run(&Scenario::decode(&bytes));
                    Ok(())
                });
                eprintln!(
                    "hostile: {cases} cases in {:.1} s",
                    started.elapsed().as_secs_f64()
                );
                if let Err(e) = result {
                    panic!("{e}");
                }
            },
        );
    }

    #[test]
    fn big_bodies_compress_to_what_they_are() {
        use std::io::Read;
        for size in [0, 1, 2, 3, 4, 5, 70_001, 70_002] {
            for zeros in [false, true] {
                let plain = big_body(size, zeros);
                assert_eq!(plain.len(), size);
                if !zeros && size >= 2 {
                    serde_json::from_slice::<Vec<u8>>(&plain).unwrap();
                }
                let gz = big_compressed(size, zeros, false);
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&gz[..])
                    .read_to_end(&mut out)
                    .unwrap();
                assert!(out == plain, "size {size}, zeros {zeros}");
            }
        }
    }

    proptest! {
        /// Decoding is total, and what a scenario encodes to decodes back to it.
        #[test]
        fn scenarios_encode_back(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let s = Scenario::decode(&bytes);
            prop_assert_eq!(Scenario::decode(&s.encode()), s);
        }
    }

    /// Writes the seeds of the `http_response` fuzz target (honest shapes; the fuzzer finds the rest):
    /// `cargo test --release --no-default-features write_fuzz_seeds -- --ignored`.
    #[test]
    #[ignore]
    fn write_fuzz_seeds() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/http_response");
        std::fs::create_dir_all(&dir).unwrap();
        let gz = |mut a: Answer| {
            a.encoding = Encoding::Gzip;
            a
        };
        let chunk = |mut a: Answer| {
            a.framing = Framing::Chunked(1);
            a
        };
        let seeds: Vec<(&str, Scenario)> = vec![
            (
                "send_ok",
                scenario(Entry::Send, After::Close, vec![built(200, vec![Header::ContentType(0)], Payload::Page)]),
            ),
            (
                "send_gzip_chunked",
                scenario(Entry::Send, After::Close, vec![chunk(gz(built(200, vec![], Payload::Items(40))))]),
            ),
            (
                "send_429_then_ok",
                scenario(
                    Entry::Send,
                    After::Close,
                    vec![
                        built(429, vec![Header::RetryAfter(0)], Payload::Empty),
                        built(200, vec![], Payload::Page),
                    ],
                ),
            ),
            (
                "send_500_then_ok",
                scenario(
                    Entry::Send,
                    After::Close,
                    vec![
                        built(500, vec![], Payload::Literal(b"{\"error\":\"oops\"}".to_vec())),
                        built(200, vec![], Payload::Page),
                    ],
                ),
            ),
            (
                "send_redirect_same_origin",
                scenario(
                    Entry::Send,
                    After::Close,
                    vec![
                        built(302, vec![Header::Location(1)], Payload::Empty),
                        built(200, vec![], Payload::Page),
                    ],
                ),
            ),
            (
                "send_raw",
                scenario(
                    Entry::Send,
                    After::Close,
                    vec![Answer {
                        head: Head::Raw(
                            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLink: <http://{SELF}/items?page=2>; rel=\"next\"\r\nContent-Length: 5\r\n\r\n[0,0]"
                                .to_vec(),
                        ),
                        ..built(200, vec![], Payload::Empty)
                    }],
                ),
            ),
            (
                "stream_total",
                scenario(
                    Entry::Stream,
                    After::Close,
                    vec![
                        built(200, vec![Header::TotalCount(4)], Payload::Page),
                        gz(built(200, vec![Header::TotalCount(4)], Payload::Page)),
                        chunk(built(200, vec![Header::TotalCount(4)], Payload::Items(1))),
                    ],
                ),
            ),
            (
                "stream_links",
                scenario(
                    Entry::Stream,
                    After::Close,
                    vec![
                        built(200, vec![Header::Link(0)], Payload::Page),
                        built(200, vec![Header::Link(8)], Payload::Page),
                        built(200, vec![], Payload::Items(1)),
                    ],
                ),
            ),
            (
                "stream_no_total",
                scenario(
                    Entry::Stream,
                    After::Close,
                    vec![
                        built(200, vec![], Payload::Page),
                        built(503, vec![Header::RetryAfter(2)], Payload::Empty),
                        built(200, vec![], Payload::Items(0)),
                    ],
                ),
            ),
        ];
        for (name, s) in seeds {
            let bytes = s.encode();
            assert_eq!(Scenario::decode(&bytes), s, "{name}");
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}
