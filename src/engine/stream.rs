//! Pages flow from the vendor to the consumer through a bounded channel. When the total is known, later
//! pages are fetched (and decoded) concurrently with bounded read-ahead, and handed over in order. Dropping
//! the stream aborts the producer and every fetch in flight.

use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use url::Url;

use super::error::{Error, Result};
use super::http::{HttpClient, Request, Response};
use super::pagination::{
    incomplete_listing, parse_link_header, with_query_param, PageBudget, PageInfo,
    PageNumberPaging, Step,
};
use super::runner::{deadline, with_deadline};

/// Turns one page's response into items. Runs on the runtime's threads, off the GIL.
pub type Decoder<T> = Arc<dyn Fn(&Response) -> Result<Vec<T>> + Send + Sync>;

/// Which decoded items to hand on (a filter the vendor cannot apply itself). Applied after the page's items
/// are counted, so a page thinned by the filter is not mistaken for the short last page.
pub type Keep<T> = Arc<dyn Fn(&T) -> bool + Send + Sync>;

/// Sends a page's items that `keep` accepts; false when the consumer is gone.
async fn emit<T>(
    tx: &mpsc::Sender<Result<Vec<T>>>,
    mut items: Vec<T>,
    keep: &Option<Keep<T>>,
) -> bool {
    if let Some(keep) = keep {
        items.retain(|i| keep(i));
    }
    tx.send(Ok(items)).await.is_ok()
}

/// Pages a consumer can hold at once before the producer waits.
pub const CHANNEL_PAGES: usize = 4;

/// A task that is aborted when this handle is dropped.
pub struct AbortOnDrop<T>(pub JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub struct PageStream<T> {
    rx: mpsc::Receiver<Result<Vec<T>>>,
    _producer: AbortOnDrop<()>,
}

impl<T: Send + 'static> PageStream<T> {
    /// The next page, `None` at the end. After an error the stream ends.
    pub async fn next_page(&mut self) -> Option<Result<Vec<T>>> {
        self.rx.recv().await
    }

    /// A stream fed by `produce`, which sends pages until the list ends or the receiver is gone. A panic in
    /// the producer ends the stream with an internal error, never silently (which would read as the end of
    /// the list, and lose the rest).
    pub fn spawn<F, Fut>(rt: &tokio::runtime::Handle, produce: F) -> Self
    where
        F: FnOnce(mpsc::Sender<Result<Vec<T>>>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(CHANNEL_PAGES);
        let on_panic = tx.clone();
        let fut = std::panic::AssertUnwindSafe(produce(tx));
        // The producer keeps the caller's deadline (a `wait(timeout=)` polling through a stream).
        let producer = AbortOnDrop(rt.spawn(with_deadline(deadline(), async move {
            if let Err(payload) = futures::FutureExt::catch_unwind(fut).await {
                let _ = on_panic.send(Err(Error::internal(&*payload))).await;
            }
        })));
        PageStream {
            rx,
            _producer: producer,
        }
    }

    /// A stream of one ready page (or error): for lists that come whole.
    pub fn ready(rt: &tokio::runtime::Handle, items: Result<Vec<T>>) -> Self {
        Self::spawn(rt, move |tx| async move {
            let _ = tx.send(items).await;
        })
    }

    /// Each page turned into a `P` (or an error) by `convert` on the runtime's threads, as it arrives, so the consumer (the
    /// Python thread) gets the page ready to use while the next ones download. An error ends the stream after
    /// it is handed on; a panic in `convert` is an internal error, never a silent end of the list.
    pub fn map_pages<P, F>(mut self, rt: &tokio::runtime::Handle, mut convert: F) -> MappedPages<P>
    where
        P: Send + 'static,
        F: FnMut(Vec<T>) -> Result<P> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(1);
        let task = AbortOnDrop(rt.spawn(async move {
            while let Some(page) = self.next_page().await {
                let out = page.and_then(|items| {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| convert(items)))
                        .unwrap_or_else(|payload| Err(Error::internal(&*payload)))
                });
                let failed = out.is_err();
                if tx.send(out).await.is_err() || failed {
                    return;
                }
            }
        }));
        MappedPages { rx, _task: task }
    }
}

/// Pages converted on the runtime's threads (`PageStream::map_pages`). Dropping it stops the conversion and
/// the fetching behind it.
pub struct MappedPages<P> {
    rx: mpsc::Receiver<Result<P>>,
    _task: AbortOnDrop<()>,
}

impl<P: Send + 'static> MappedPages<P> {
    /// The next converted page, `None` at the end. After an error the stream ends.
    pub async fn next_page(&mut self) -> Option<Result<P>> {
        self.rx.recv().await
    }
}

/// How to walk a page-number list.
#[derive(Clone)]
pub struct PageNumberList {
    pub first: Url,
    pub page_param: &'static str,
    pub page_size: usize,
    pub total_header: &'static str,
    pub operation: &'static str,
    pub read_ahead: usize,
}

fn page_info(resp: &Response, items: usize, total_header: &str) -> PageInfo {
    PageInfo {
        items,
        total: resp
            .header(total_header)
            .and_then(|t| t.trim().parse().ok()),
        links: parse_link_header(
            resp.headers
                .get_all("link")
                .iter()
                .filter_map(|v| v.to_str().ok()),
            &resp.url,
        ),
    }
}

async fn fetch<T>(
    http: &HttpClient,
    url: Url,
    operation: &'static str,
    decode: &Decoder<T>,
) -> Result<(Response, Vec<T>)> {
    let resp = http.send(&Request::get(url, operation)).await?;
    let items = decode(&resp)?;
    Ok((resp, items))
}

/// Streams every page of a page-number list (`Link` + total count style).
pub fn page_number_stream<T: Send + 'static>(
    rt: &tokio::runtime::Handle,
    http: Arc<HttpClient>,
    list: PageNumberList,
    decode: Decoder<T>,
) -> PageStream<T> {
    page_number_stream_filtered(rt, http, list, decode, None)
}

/// Like `page_number_stream`, handing on only the items `keep` accepts.
pub fn page_number_stream_filtered<T: Send + 'static>(
    rt: &tokio::runtime::Handle,
    http: Arc<HttpClient>,
    list: PageNumberList,
    decode: Decoder<T>,
    keep: Option<Keep<T>>,
) -> PageStream<T> {
    page_number_range_stream(rt, http, list, decode, keep, PageRange::ALL)
}

/// A range of pages of a list: 0-based page indexes, `stop` exclusive; `stop: None` runs to the end of the
/// list (including pages that appear while it is read). How several readers (Spark tasks, Dask partitions)
/// each take their share of one list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRange {
    pub start: u64,
    pub stop: Option<u64>,
}

impl PageRange {
    pub const ALL: PageRange = PageRange {
        start: 0,
        stop: None,
    };
}

/// Streams the pages of `range` of a page-number list: page `start + 1` first, then (with the total known)
/// the rest of the range concurrently, in order.
pub fn page_number_range_stream<T: Send + 'static>(
    rt: &tokio::runtime::Handle,
    http: Arc<HttpClient>,
    list: PageNumberList,
    decode: Decoder<T>,
    keep: Option<Keep<T>>,
    range: PageRange,
) -> PageStream<T> {
    let rt2 = rt.clone();
    PageStream::spawn(rt, move |tx| async move {
        if let Err(e) = produce_page_number(rt2, http, list, decode, &keep, range, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    })
}

async fn produce_page_number<T: Send + 'static>(
    rt: tokio::runtime::Handle,
    http: Arc<HttpClient>,
    list: PageNumberList,
    decode: Decoder<T>,
    keep: &Option<Keep<T>>,
    range: PageRange,
    tx: &mpsc::Sender<Result<Vec<T>>>,
) -> Result<()> {
    // 1-based page numbers: `first_page` to `last_page` inclusive (or to the end).
    let first_page = range.start + 1;
    let last_page = range.stop;
    if last_page.is_some_and(|l| l < first_page) {
        return Ok(());
    }
    let mut budget = PageBudget::new(http.limits().max_pages);
    let mut paging = PageNumberPaging::starting_at(list.page_param, list.page_size, first_page);
    let first = if first_page == 1 {
        list.first.clone()
    } else {
        paging.url_for_page(&list.first, first_page)
    };
    paging.visit(&first)?;
    let (resp, items) = fetch(&http, first.clone(), list.operation, &decode).await?;
    budget.count(&resp.body, items.len())?;
    let info = page_info(&resp, items.len(), list.total_header);
    if !emit(tx, items, keep).await || last_page == Some(first_page) {
        return Ok(());
    }

    // Fetch the rest of the plan concurrently, in order. The plan is a range, turned into URLs only as
    // pages are fetched: a server's total may be any number.
    let Some(planned) = planned_last_page(first_page, last_page, &info, list.page_size) else {
        return match paging.next(&first, &info)? {
            Step::Done => Ok(()),
            Step::Next(url) => {
                let mut walk = Walk {
                    paging: &mut paging,
                    budget: &mut budget,
                };
                follow(&http, &mut walk, url, &list, &decode, keep, last_page, tx).await
            }
        };
    };
    paging.mark_visited(&list.first, first_page + 1, planned);
    let url_for = |n: u64| with_query_param(&list.first, list.page_param, &n.to_string());
    let mut fetched = futures::stream::iter(first_page + 1..=planned)
        .map(|n| {
            let (http, decode, url) = (http.clone(), decode.clone(), url_for(n));
            let fetch_page = async move { fetch(&http, url, list.operation, &decode).await };
            AbortOnDrop(rt.spawn(with_deadline(deadline(), fetch_page)))
        })
        .buffered(list.read_ahead.max(1));
    // Exact only for a walk from page 1: the plan below goes on past page 1 only for an explicit range.
    let mut seen = info.items as u64;
    let mut total = info.total;
    while let Some(joined) = fetched.next().await {
        let (resp, items) = joined_result(joined)?;
        budget.count(&resp.body, items.len())?;
        let n = items.len();
        seen += n as u64;
        total = page_info(&resp, n, list.total_header).total.or(total);
        if !emit(tx, items, keep).await {
            return Ok(());
        }
        if n == 0 {
            // Nothing comes after an empty page (the list is ordered; what arrives later lands past it).
            return match total {
                Some(t) if first_page == 1 && seen < t => Err(incomplete_listing(seen, t)),
                _ => Ok(()),
            };
        }
    }
    if last_page.is_some() || total.is_some_and(|t| seen >= t) {
        return Ok(());
    }
    // Items that arrived while we paged: carry on one page at a time from where the plan ended. The machine
    // resumes at page `planned + 1`, with the items seen so far (a fresh one would count from page 1 again and
    // take the page after as one already fetched).
    let mut paging = PageNumberPaging::resuming_at(
        list.page_param,
        list.page_size,
        &list.first,
        planned + 1,
        seen,
    );
    let next = paging.url_for_page(&list.first, planned + 1);
    let mut walk = Walk {
        paging: &mut paging,
        budget: &mut budget,
    };
    follow(&http, &mut walk, next, &list, &decode, keep, last_page, tx).await
}

/// The last page to fetch concurrently after page `first_page`, or `None` to walk one page at a time. An
/// explicit range past page 1 is fetched whole (an empty page ends it early). From page 1, the server's total
/// plans the rest, in pages of the size the server actually served: a first page shorter than asked while the
/// total says more is the server's own cap. A list without a total is walked.
fn planned_last_page(
    first_page: u64,
    last_page: Option<u64>,
    info: &PageInfo,
    asked: usize,
) -> Option<u64> {
    if info.items == 0 {
        return None;
    }
    let end = match (first_page, last_page, info.total) {
        (1, l, Some(total)) => {
            let served = if (info.items as u64) < total {
                info.items.min(asked)
            } else {
                asked
            };
            let pages = total.div_ceil(served.max(1) as u64);
            l.map_or(pages, |l| l.min(pages))
        }
        (_, Some(l), _) => l,
        _ => return None,
    };
    (end > first_page).then_some(end)
}

/// Where a one-page-at-a-time walk stands: the paging machine and the pages counted so far.
struct Walk<'a> {
    paging: &'a mut PageNumberPaging,
    budget: &'a mut PageBudget,
}

/// Fetches pages one after another as the paging state machine says, up to page `last_page` if given.
#[allow(clippy::too_many_arguments)]
async fn follow<T: Send + 'static>(
    http: &HttpClient,
    walk: &mut Walk<'_>,
    mut url: Url,
    list: &PageNumberList,
    decode: &Decoder<T>,
    keep: &Option<Keep<T>>,
    last_page: Option<u64>,
    tx: &mpsc::Sender<Result<Vec<T>>>,
) -> Result<()> {
    loop {
        let (resp, items) = fetch(http, url.clone(), list.operation, decode).await?;
        walk.budget.count(&resp.body, items.len())?;
        let info = page_info(&resp, items.len(), list.total_header);
        if !emit(tx, items, keep).await || last_page.is_some_and(|l| walk.paging.page() >= l) {
            return Ok(());
        }
        match walk.paging.next(&url, &info)? {
            Step::Done => return Ok(()),
            Step::Next(next) => url = next,
        }
    }
}

fn joined_result<T>(joined: std::result::Result<Result<T>, tokio::task::JoinError>) -> Result<T> {
    joined.map_err(|e| {
        if e.is_panic() {
            Error::internal(&*e.into_panic())
        } else {
            Error::new(
                super::error::ErrorKind::Vendor,
                format!("a page fetch failed: {e}"),
            )
        }
    })?
}

impl<T> std::future::Future for AbortOnDrop<T> {
    type Output = std::result::Result<T, tokio::task::JoinError>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_producer_ends_the_stream_with_an_internal_error() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mut s = PageStream::<u32>::spawn(rt.handle(), |tx| async move {
            let _ = tx.send(Ok(vec![1, 2])).await;
            panic!("producer exploded on purpose");
        });
        rt.block_on(async {
            assert_eq!(s.next_page().await.unwrap().unwrap(), vec![1, 2]);
            let e = s.next_page().await.unwrap().unwrap_err();
            assert_eq!(e.kind, super::super::error::ErrorKind::Internal);
            assert_eq!(e.code.as_deref(), Some("internal"));
            assert!(
                e.message.contains("producer exploded on purpose"),
                "{}",
                e.message
            );
            assert!(s.next_page().await.is_none());
        });
    }

    /// Reads every page of `/items` from a server on 127.0.0.1 answering with `page`, asking `page_size`
    /// items a page; the items, or the stream's error, and the number of requests the server saw.
    fn read_all<F>(page_size: usize, page: F) -> (Result<Vec<u64>>, usize)
    where
        F: Fn(u64, usize) -> (Option<u64>, Vec<u64>) + Clone + Send + Sync + 'static,
    {
        use axum::extract::Query;
        use axum::response::IntoResponse;
        use std::collections::HashMap;
        use std::sync::atomic::{AtomicUsize, Ordering};

        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        let handler = move |Query(q): Query<HashMap<String, String>>| {
            let page = page.clone();
            counted.fetch_add(1, Ordering::SeqCst);
            async move {
                let n: u64 = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
                let asked: usize = q.get("pageSize").and_then(|p| p.parse().ok()).unwrap_or(0);
                let (total, items) = page(n, asked);
                let mut resp = axum::Json(items).into_response();
                if let Some(t) = total {
                    resp.headers_mut()
                        .insert("x-total-count", t.to_string().parse().unwrap());
                }
                resp
            }
        };
        let rt = tokio::runtime::Runtime::new().unwrap();
        let got = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let app = axum::Router::new().route("/items", axum::routing::get(handler));
            tokio::spawn(async move { axum::serve(listener, app).await });
            let http = HttpClient::new(
                super::super::http::HttpConfig {
                    vendor: "test",
                    base_url: Url::parse(&format!("http://{addr}")).unwrap(),
                    limits: Default::default(),
                    rate_limit: None,
                    timeout: std::time::Duration::from_secs(5),
                    connect_timeout: std::time::Duration::from_secs(5),
                    retry: Default::default(),
                    tls_roots: vec![],
                    auth_hint: None,
                },
                Arc::new(super::super::auth::StaticKey::new(
                    super::super::auth::KeyPlacement::Header("x-test-key"),
                    "k",
                    |_, _| false,
                )),
                |_, _| (None, None),
            )
            .unwrap();
            let list = PageNumberList {
                first: Url::parse(&format!("http://{addr}/items?page=1&pageSize={page_size}"))
                    .unwrap(),
                page_param: "page",
                page_size,
                total_header: "x-total-count",
                operation: "test",
                read_ahead: 2,
            };
            let decode: Decoder<u64> =
                Arc::new(|r: &Response| Ok(serde_json::from_slice(&r.body).unwrap()));
            let mut s = page_number_stream(
                &tokio::runtime::Handle::current(),
                Arc::new(http),
                list,
                decode,
            );
            let mut got = Vec::new();
            while let Some(p) = s.next_page().await {
                match p {
                    Ok(items) => got.extend(items),
                    Err(e) => return Err(e),
                }
            }
            Ok(got)
        });
        (got, requests.load(Ordering::SeqCst))
    }

    /// Regression (found by the 10 x 5,000 fault matrix, Alegion seed 2): a list that grows while its
    /// planned pages are fetched concurrently. Page 1 says 40 items (pages 1 and 2 planned); page 2 says 60,
    /// so the streamer goes on with page 3, which has no `Link`. It used to restart its page counter and take
    /// page 2 for the page after page 3: "already fetched" (`pagination_loop`), and the upload failed.
    #[test]
    fn a_list_that_grows_while_paged_is_read_to_its_new_end() {
        let (got, _) = read_all(20, |n, _| {
            let total = if n == 1 { 40 } else { 60 };
            let items = if n <= 3 {
                ((n - 1) * 20..n * 20).collect()
            } else {
                vec![]
            };
            (Some(total), items)
        });
        assert_eq!(got.unwrap(), (0..60).collect::<Vec<u64>>());
    }

    /// Issue 20: a server that caps its pages at 7 items while 20 are asked, with a total of 50. The stream
    /// used to end on the first short page (7 of 50 items, silently); now it plans its concurrent reads in
    /// the server's own page size: 8 pages, each fetched once.
    #[test]
    fn a_server_capping_its_page_size_loses_nothing() {
        let (got, requests) = read_all(20, |n, asked| {
            let size = asked.min(7) as u64;
            let items = ((n - 1) * size..(n * size).min(50)).collect();
            (Some(50), items)
        });
        assert_eq!(got.unwrap(), (0..50).collect::<Vec<u64>>());
        assert_eq!(requests, 8);
    }

    /// Without a total, a short page is read past: only an empty page ends the list.
    #[test]
    fn without_a_total_a_capped_list_is_read_to_an_empty_page() {
        let (got, requests) = read_all(20, |n, asked| {
            let size = asked.min(7) as u64;
            let items = ((n - 1) * size..(n * size).min(50)).collect();
            (None, items)
        });
        assert_eq!(got.unwrap(), (0..50).collect::<Vec<u64>>());
        assert_eq!(requests, 9);
    }

    /// A server whose pages skip items (it caps its pages at 7 but counts its offsets in the 20 asked): the
    /// stream cannot read what the server never serves, and says so instead of ending short in silence.
    #[test]
    fn a_list_that_ends_short_of_its_total_is_incomplete_listing() {
        let (got, _) = read_all(20, |n, asked| {
            let from = (n - 1) * asked as u64;
            let items = (from..(from + 7).min(50)).collect();
            (Some(50), items)
        });
        let err = got.unwrap_err();
        assert_eq!(err.code.as_deref(), Some("incomplete_listing"), "{err:?}");
        assert!(err.message.contains("says 50"), "{}", err.message);
    }

    #[test]
    fn a_panicking_page_fetch_is_an_internal_error() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let joined = rt.block_on(rt.spawn(async { panic!("fetch exploded") as Result<u32> }));
        let e = joined_result(joined).unwrap_err();
        assert_eq!(e.kind, super::super::error::ErrorKind::Internal);
        assert!(e.message.contains("fetch exploded"));
    }
}
