//! Pages flow from the vendor to the consumer through a bounded channel. When the total is known, later
//! pages are fetched (and decoded) concurrently with bounded read-ahead, and handed over in order. Dropping
//! the stream aborts the producer and every fetch in flight.

use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use url::Url;

use super::error::Result;
use super::http::{HttpClient, Request, Response};
use super::pagination::{parse_link_header, PageInfo, PageNumberPaging, Step};

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

    /// A stream fed by `produce`, which sends pages until the list ends or the receiver is gone.
    pub fn spawn<F, Fut>(rt: &tokio::runtime::Handle, produce: F) -> Self
    where
        F: FnOnce(mpsc::Sender<Result<Vec<T>>>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel(CHANNEL_PAGES);
        let producer = AbortOnDrop(rt.spawn(produce(tx)));
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
    let mut paging = PageNumberPaging::starting_at(list.page_param, list.page_size, first_page);
    let first = if first_page == 1 {
        list.first.clone()
    } else {
        paging.url_for_page(&list.first, first_page)
    };
    paging.visit(&first)?;
    let (resp, items) = fetch(&http, first.clone(), list.operation, &decode).await?;
    let info = page_info(&resp, items.len(), list.total_header);
    if !emit(tx, items, keep).await || last_page == Some(first_page) {
        return Ok(());
    }

    // With the total known, fetch the remaining planned pages concurrently, in order.
    if let Some(total) = info.total {
        let pages = paging.page_count(total);
        let planned = last_page.map_or(pages, |l| l.min(pages));
        if planned > first_page && info.items >= list.page_size {
            let urls: Vec<Url> = (first_page + 1..=planned)
                .map(|n| paging.url_for_page(&list.first, n))
                .collect();
            for u in &urls {
                paging.visit(u)?;
            }
            let mut fetched = futures::stream::iter(urls)
                .map(|url| {
                    let (http, decode) = (http.clone(), decode.clone());
                    AbortOnDrop(
                        rt.spawn(async move { fetch(&http, url, list.operation, &decode).await }),
                    )
                })
                .buffered(list.read_ahead.max(1));
            let mut seen = (first_page - 1) * list.page_size as u64 + info.items as u64;
            let mut last = info;
            while let Some(joined) = fetched.next().await {
                let (resp, items) = joined_result(joined)?;
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
            if last_page.is_some_and(|l| planned >= l) {
                return Ok(());
            }
            // Items that arrived while we paged: carry on one page at a time from where the plan ended.
            let grown = last.total.is_some_and(|t| t > seen);
            if !grown {
                return Ok(());
            }
            let mut rest =
                PageNumberPaging::starting_at(list.page_param, list.page_size, planned + 1);
            let next = rest.url_for_page(&list.first, planned + 1);
            rest.visit(&next)?;
            return follow(&http, &mut rest, next, &list, &decode, keep, last_page, tx).await;
        }
    }
    match paging.next(&first, &info)? {
        Step::Done => Ok(()),
        Step::Next(url) => {
            follow(&http, &mut paging, url, &list, &decode, keep, last_page, tx).await
        }
    }
}

/// Fetches pages one after another as the paging state machine says, up to page `last_page` if given.
#[allow(clippy::too_many_arguments)]
async fn follow<T: Send + 'static>(
    http: &HttpClient,
    paging: &mut PageNumberPaging,
    mut url: Url,
    list: &PageNumberList,
    decode: &Decoder<T>,
    keep: &Option<Keep<T>>,
    last_page: Option<u64>,
    tx: &mpsc::Sender<Result<Vec<T>>>,
) -> Result<()> {
    loop {
        let (resp, items) = fetch(http, url.clone(), list.operation, decode).await?;
        let info = page_info(&resp, items.len(), list.total_header);
        if !emit(tx, items, keep).await || last_page.is_some_and(|l| paging.page() >= l) {
            return Ok(());
        }
        match paging.next(&url, &info)? {
            Step::Done => return Ok(()),
            Step::Next(next) => url = next,
        }
    }
}

fn joined_result<T>(joined: std::result::Result<Result<T>, tokio::task::JoinError>) -> Result<T> {
    joined.map_err(|e| {
        super::error::Error::new(
            super::error::ErrorKind::Vendor,
            format!("a page fetch failed: {e}"),
        )
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
