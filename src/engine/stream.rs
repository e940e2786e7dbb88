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
    parse_link_header, with_query_param, PageBudget, PageInfo, PageNumberPaging, Step,
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

    // With the total known, fetch the remaining planned pages concurrently, in order. The plan is a range,
    // turned into URLs only as pages are fetched: a server's total may be any number.
    if let Some(total) = info.total {
        let pages = paging.page_count(total);
        let planned = last_page.map_or(pages, |l| l.min(pages));
        if planned > first_page && info.items >= list.page_size {
            paging.mark_visited(&list.first, first_page + 1, planned);
            let url_for = |n: u64| with_query_param(&list.first, list.page_param, &n.to_string());
            let mut fetched = futures::stream::iter(first_page + 1..=planned)
                .map(|n| {
                    let (http, decode, url) = (http.clone(), decode.clone(), url_for(n));
                    let fetch_page =
                        async move { fetch(&http, url, list.operation, &decode).await };
                    AbortOnDrop(rt.spawn(with_deadline(deadline(), fetch_page)))
                })
                .buffered(list.read_ahead.max(1));
            let mut seen = (first_page - 1) * list.page_size as u64 + info.items as u64;
            let mut last = info;
            let mut reached = first_page;
            while let Some(joined) = fetched.next().await {
                let (resp, items) = joined_result(joined)?;
                budget.count(&resp.body, items.len())?;
                reached += 1;
                seen += items.len() as u64;
                last = page_info(&resp, items.len(), list.total_header);
                let short = items.len() < list.page_size;
                if !emit(tx, items, keep).await {
                    return Ok(());
                }
                if short {
                    return Ok(());
                }
            }
            if last_page.is_some_and(|l| reached >= l) {
                return Ok(());
            }
            // Items that arrived while we paged: carry on one page at a time from where the plan ended.
            let grown = last.total.is_some_and(|t| t > seen);
            if !grown {
                return Ok(());
            }
            // The machine resumes at page `planned + 1`, with the items seen so far (a fresh one would count
            // from page 1 again and take the page after as one already fetched).
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
            return follow(&http, &mut walk, next, &list, &decode, keep, last_page, tx).await;
        }
    }
    match paging.next(&first, &info)? {
        Step::Done => Ok(()),
        Step::Next(url) => {
            let mut walk = Walk {
                paging: &mut paging,
                budget: &mut budget,
            };
            follow(&http, &mut walk, url, &list, &decode, keep, last_page, tx).await
        }
    }
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

    /// Regression (found by the 10 x 5,000 fault matrix, Alegion seed 2): a list that grows while its
    /// planned pages are fetched concurrently. Page 1 says 40 items (pages 1 and 2 planned); page 2 says 60,
    /// so the streamer goes on with page 3, which has no `Link`. It used to restart its page counter and take
    /// page 2 for the page after page 3: "already fetched" (`pagination_loop`), and the upload failed.
    #[test]
    fn a_list_that_grows_while_paged_is_read_to_its_new_end() {
        use axum::extract::Query;
        use axum::response::IntoResponse;
        use std::collections::HashMap;

        async fn page(Query(q): Query<HashMap<String, String>>) -> axum::response::Response {
            let n: u64 = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
            let total = if n == 1 { 40 } else { 60 };
            let items: Vec<u64> = if n <= 3 {
                ((n - 1) * 20..n * 20).collect()
            } else {
                vec![]
            };
            ([("x-total-count", total.to_string())], axum::Json(items)).into_response()
        }

        let rt = tokio::runtime::Runtime::new().unwrap();
        let got = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let app = axum::Router::new().route("/items", axum::routing::get(page));
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
                first: Url::parse(&format!("http://{addr}/items?page=1")).unwrap(),
                page_param: "page",
                page_size: 20,
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
                got.extend(p.expect("every page"));
            }
            got
        });
        assert_eq!(got, (0..60).collect::<Vec<u64>>());
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
