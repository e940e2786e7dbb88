//! Alegion (legacy `app.alegion.com/api/v1`). Wire facts and their sources: docs/vendors/alegion.md (the ledger).
//!
//! Neutral model onto Alegion: `project` = workflow id; `Batch` = batch; record = input record
//! (`{data, metadata}`), its key carried in `metadata`; `Job` = the import calls of one upload (Alegion's
//! import is synchronous, so a job is complete when `upload` returns); result = result (`resultData`), its
//! neutral `id` the input record's id. Auth: log in for a bearer token, again on 401 and on the 500
//! "Incorrect token provided". Lists page by `page`/`pageSize` with `Link` and `X-Total-Count`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use url::Url;

use super::config::ClientConfig;
use super::kit::{self, Kit};
use super::model::*;
use super::resend;
use super::upload::{in_chunks, Driver, Pieces, Plan, Wording};
use super::{Adapter, NewBatch, PagePlan, PageRange, RecordQuery, ResultQuery, UploadCall};
use crate::engine::auth::LoginToken;
use crate::engine::http::{json_from_slice, request_url, HttpClient, Request, Response};
use crate::engine::pagination::with_query_param;
use crate::engine::retry::RequestKind;
use crate::engine::stream::{
    page_number_range_stream, page_number_stream, page_number_stream_filtered, Decoder, Keep,
    PageNumberList, PageStream,
};
use crate::engine::{Error, ErrorKind, Result};

const VENDOR: &str = "alegion";
/// The import endpoints take at most 1,000 records per call.
pub const IMPORT_LIMIT: usize = 1000;
/// The largest page the API is known to serve (alegion.md section 4).
const PAGE_SIZE: usize = 1000;
const UPLOAD_CONCURRENCY: usize = 4;
const READ_AHEAD: usize = 4;
const TOTAL_HEADER: &str = "x-total-count";

pub struct AlegionAdapter {
    cfg: ClientConfig,
    http: Arc<HttpClient>,
    api: Url,
    rt: tokio::runtime::Handle,
}

/// Alegion's error bodies are Spring's: `{"message", "error", "exception", "status", ...}`.
fn parse_error(_status: u16, body: &[u8]) -> (Option<String>, Option<String>) {
    #[derive(Deserialize)]
    struct Spring {
        message: Option<String>,
        error: Option<String>,
        exception: Option<String>,
    }
    match serde_json::from_slice::<Spring>(body) {
        Ok(s) => {
            let code = s
                .exception
                .map(|e| e.rsplit('.').next().unwrap_or(&e).to_string())
                .or(s.error);
            (code, s.message)
        }
        Err(_) => (None, None),
    }
}

/// 401, or the 500 Alegion answers for a malformed or unknown token.
fn is_token_refused(status: u16, body: &[u8]) -> bool {
    if status == 401 {
        return true;
    }
    if status != 500 {
        return false;
    }
    let (code, message) = parse_error(status, body);
    message.as_deref() == Some("Incorrect token provided")
        || code.as_deref() == Some("AccessDeniedException")
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchDto {
    id: String,
    name: Option<String>,
    created_at: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecordDto {
    id: String,
    created_at: Option<String>,
    metadata: Option<String>,
    data: Option<Box<RawValue>>,
    status: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResultDto {
    created_at: Option<String>,
    result_data: Option<Box<RawValue>>,
    input_record: RecordDto,
}

#[derive(Deserialize)]
struct KeyOnly {
    metadata: Option<String>,
}

fn neutral_status(s: &str) -> Status {
    // The API is Spring's, which writes an enum by its constant's name unless told otherwise: `COMPLETE` and
    // `IN_PROGRESS` are read as the tutorial's `complete` and `in-progress` (docs/vendors/alegion.md, ledger).
    let word = s.trim().to_ascii_lowercase().replace('_', "-");
    match word.as_str() {
        "queued" => Status::Pending,
        "in-progress" => Status::InProgress,
        // `complete` is a UI's word (docs/vendors/alegion.md [UI]); `completed` is read too (finding 4).
        "complete" | "completed" => Status::Completed,
        "exception" => Status::Exception,
        "canceled" | "cancelled" => Status::Canceled,
        "error" | "failed" => Status::Failed,
        // An open enum (alegion.md 7.10): an unknown state is treated as still being worked.
        _ => Status::InProgress,
    }
}

/// The `status` filter value of a neutral status: only the record states the tutorial shows ([S2]). Completed
/// and Failed have no documented word (`complete` and `error` come from a UI's colour map) and a Spring enum
/// answers 422 to an unknown one, so those are filtered here, not by the server (docs/vendors/alegion.md,
/// findings 2 and 5).
fn filter_word(s: Status) -> Option<&'static str> {
    match s {
        Status::Pending => Some("queued"),
        Status::InProgress => Some("in-progress"),
        Status::Exception => Some("exception"),
        Status::Canceled => Some("canceled"),
        Status::Completed | Status::Failed | Status::Rejected => None,
    }
}

/// A count by a `status` value the server may not know: a refusal of the value (400/422) counts 0.
fn refused_as_zero(r: Result<u64>) -> Result<u64> {
    match r {
        Err(e) if matches!(e.status, Some(400 | 422)) => Ok(0),
        other => other,
    }
}

fn batch_info(raw: serde_json::Value) -> Result<BatchInfo> {
    let dto: BatchDto = serde_json::from_value(raw.clone()).map_err(|e| {
        Error::new(ErrorKind::Vendor, format!("unexpected batch object: {e}")).vendor(VENDOR)
    })?;
    Ok(BatchInfo {
        id: dto.id,
        name: dto.name,
        created_at: dto.created_at,
        raw,
    })
}

/// Decodes a page of items as `T`, keeping each item's JSON text when `keep_raw`.
fn decode_items<T: for<'de> Deserialize<'de>>(
    resp: &Response,
    keep_raw: bool,
    operation: &str,
) -> Result<Vec<(T, Option<Box<RawValue>>)>> {
    let bad = |e: serde_json::Error| {
        Error::new(
            ErrorKind::Vendor,
            format!("unexpected {operation} page: {e}"),
        )
        .vendor(VENDOR)
        .operation(operation)
        .code("bad_response")
    };
    if keep_raw {
        let raws: Vec<Box<RawValue>> = json_from_slice(&resp.body).map_err(bad)?;
        raws.into_iter()
            .map(|r| Ok((serde_json::from_str(r.get()).map_err(bad)?, Some(r))))
            .collect()
    } else {
        let items: Vec<T> = json_from_slice(&resp.body).map_err(bad)?;
        Ok(items.into_iter().map(|t| (t, None)).collect())
    }
}

/// A list's `X-Total-Count`.
fn total_of(resp: &Response, operation: &'static str) -> Result<u64> {
    resp.header(TOTAL_HEADER)
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| {
            Error::new(ErrorKind::Vendor, "the list answered without X-Total-Count")
                .vendor(VENDOR)
                .operation(operation)
        })
}

impl AlegionAdapter {
    pub fn new(cfg: ClientConfig, rt: tokio::runtime::Handle) -> Result<Self> {
        let api = kit::api_root(&cfg, &["api", "v1"])?;
        let retry = cfg.retry_policy();
        let login_url = kit::under(&api, &["login"]);
        let body = json!({
            "username": cfg.credentials["username"].expose(),
            "password": cfg.credentials["password"].expose(),
        });
        let auth = LoginToken::new(
            VENDOR,
            login_url,
            body,
            "access_token",
            "expires_in",
            is_token_refused,
            retry,
        );
        let http = kit::http_client(&cfg, auth, parse_error)?;
        Ok(AlegionAdapter {
            cfg,
            http: Arc::new(http),
            api,
            rt,
        })
    }

    fn url(&self, segments: &[&str]) -> Url {
        kit::under(&self.api, segments)
    }

    fn list(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
        operation: &'static str,
    ) -> PageNumberList {
        let mut first = self.url(segments);
        {
            let mut q = first.query_pairs_mut();
            for (k, v) in query {
                q.append_pair(k, v);
            }
            q.append_pair("page", "1")
                .append_pair("pageSize", &PAGE_SIZE.to_string())
                .append_pair("sort", "+createdAt");
        }
        PageNumberList {
            first,
            page_param: "page",
            page_size: PAGE_SIZE,
            total_header: TOTAL_HEADER,
            operation,
            read_ahead: READ_AHEAD,
        }
    }

    /// `X-Total-Count` of a list, fetched with a one-item page.
    async fn count(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
        operation: &'static str,
    ) -> Result<u64> {
        let mut url = self.url(segments);
        url.query_pairs_mut()
            .extend_pairs(query)
            .append_pair("page", "1")
            .append_pair("pageSize", "1");
        let resp = self.http.send(&Request::get(url, operation)).await?;
        total_of(&resp, operation)
    }

    async fn collect<T: Send + 'static>(
        &self,
        list: PageNumberList,
        decode: Decoder<T>,
    ) -> Result<Vec<T>> {
        let mut stream = page_number_stream(&self.rt, self.http.clone(), list, decode);
        let mut out = Vec::new();
        while let Some(page) = stream.next_page().await {
            out.extend(page?);
        }
        Ok(out)
    }

    /// The keys (`metadata`) the batch already holds: how uploads stay idempotent and how they reconcile.
    async fn existing_keys(&self, batch_id: &str) -> Result<HashSet<String>> {
        if self
            .count(&["batches", batch_id, "records"], &[], "upload")
            .await?
            == 0
        {
            return Ok(HashSet::new());
        }
        let decode: Decoder<Option<String>> = Arc::new(|resp: &Response| {
            let items: Vec<KeyOnly> = resp.json(VENDOR, "upload")?;
            Ok(items.into_iter().map(|k| k.metadata).collect())
        });
        let keys = self
            .collect(
                self.list(&["batches", batch_id, "records"], &[], "upload"),
                decode,
            )
            .await?;
        Ok(keys.into_iter().flatten().collect())
    }

    /// An Alegion batch id is a UUID ([S2] 313-319: the server answers 422 with Spring's conversion error
    /// to any other): a malformed id names no batch, so it is `NotFound`, said without sending it.
    fn check_batch_id(&self, id: &str) -> Result<()> {
        kit::check_batch_id(VENDOR, id)?;
        if uuid::Uuid::parse_str(id.trim()).is_err() {
            return Err(Error::new(
                ErrorKind::NotFound,
                format!("no batch {id:?} in this account: an Alegion batch id is a UUID"),
            )
            .vendor(VENDOR)
            .operation("batch")
            .field("id"));
        }
        Ok(())
    }

    async fn post_import(&self, batch_id: &str, records: &[UploadRecord]) -> Result<()> {
        let body: Vec<serde_json::Value> = records
            .iter()
            .map(|r| json!({"data": r.data, "metadata": r.key}))
            .collect();
        let req = Request::json(
            Method::POST,
            self.url(&["batches", batch_id, "records", "import"]),
            &body,
            RequestKind::Create,
            "upload",
        )?;
        self.http.send(&req).await.map(|_| ())
    }
}

/// One upload's pieces for the driver: the batch's keys, imports of at most `IMPORT_LIMIT` records.
struct Imports<'a> {
    adapter: &'a AlegionAdapter,
    batch_id: &'a str,
}

#[async_trait::async_trait]
impl Pieces for Imports<'_> {
    type Item = UploadRecord;
    type Chunk = Vec<UploadRecord>;
    type Receipt = ();

    async fn existing_keys(&self) -> Result<HashSet<String>> {
        self.adapter.existing_keys(self.batch_id).await
    }
    fn chunks(&self, records: Vec<UploadRecord>) -> Vec<Vec<UploadRecord>> {
        in_chunks(records, IMPORT_LIMIT)
    }
    async fn send(&self, chunk: &Vec<UploadRecord>) -> Result<()> {
        self.adapter.post_import(self.batch_id, chunk).await
    }
}

#[async_trait::async_trait]
impl Adapter for AlegionAdapter {
    fn kit(&self) -> Kit<'_> {
        Kit::new(&self.cfg, &self.http)
    }

    async fn create_named_batch(&self, new: NewBatch<'_>) -> Result<BatchInfo> {
        let name = new.name;
        let is_enabled = match new.options.get("is_enabled") {
            None => true,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(_) => {
                return Err(Error::invalid("is_enabled must be True or False")
                    .vendor(VENDOR)
                    .field("is_enabled"))
            }
        };
        let url = self.url(&["workflows", &self.cfg.project, "batches"]);
        let req = Request::json(
            Method::POST,
            url,
            &json!({"name": name, "isEnabled": is_enabled}),
            RequestKind::Create,
            "create_batch",
        )?;
        // Looked up by name before the first attempt, and after an ambiguous failure: it may exist already.
        let find = || async {
            Ok(self
                .list_batches()
                .await?
                .into_iter()
                .find(|b| b.name.as_deref() == Some(name)))
        };
        if let Some(existing) = find().await? {
            if new.exist_ok {
                return Ok(existing);
            }
            return Err(kit::batch_name_taken(VENDOR, name, &existing.id));
        }
        let send =
            || async { batch_info(self.http.send(&req).await?.json(VENDOR, "create_batch")?) };
        resend::create_once(&self.cfg.retry_policy(), "create_batch", send, find).await
    }

    async fn get_batch(&self, id: &str) -> Result<BatchInfo> {
        self.check_batch_id(id)?;
        let resp = self
            .http
            .send(&Request::get(self.url(&["batches", id]), "batch"))
            .await
            .map_err(|e| match e.kind {
                ErrorKind::NotFound => Error {
                    message: format!("no batch {id:?} in this account"),
                    ..e
                },
                _ => e,
            })?;
        batch_info(resp.json(VENDOR, "batch")?)
    }

    async fn list_batches(&self) -> Result<Vec<BatchInfo>> {
        let decode: Decoder<serde_json::Value> =
            Arc::new(|resp: &Response| resp.json(VENDOR, "batches"));
        let raws = self
            .collect(
                self.list(&["workflows", &self.cfg.project, "batches"], &[], "batches"),
                decode,
            )
            .await?;
        raws.into_iter().map(batch_info).collect()
    }

    async fn send_records(&self, call: UploadCall<'_>) -> Result<JobState> {
        let total = call.records.len() as u64;
        let imports = Imports {
            adapter: self,
            batch_id: &call.batch.id,
        };
        // An import may be stored though its answer is lost; nothing says a refused one stored nothing
        // (docs/vendors/alegion.md, finding 3), so a refusal is reconciled before it is halved.
        let plan = Plan::new(VENDOR, UPLOAD_CONCURRENCY)
            .reconciling(self.cfg.retry_policy())
            .bisecting()
            .refusals_may_store();
        let driver = Driver::new(&imports, plan, &call.options, &call.progress);
        let sent =
            driver
                .run(call.records)
                .await?
                .finish(total, &call.progress, Wording::stored())?;
        let id = format!("alegion-import-{}", uuid::Uuid::new_v4());
        // Alegion's import is synchronous: the job ran to its end when the last import answered.
        Ok(sent.stored_job(id, &call.batch.id, total, &call.progress))
    }

    async fn batch_status(&self, batch_id: &str) -> Result<BatchCounts> {
        self.check_batch_id(batch_id)?;
        let records = ["batches", batch_id, "records"];
        let results = ["batches", batch_id, "results"];
        let by = |s: &'static str| [("status", s)];
        let (q, ip, ex, ca, er) = (
            by("queued"),
            by("in-progress"),
            by("exception"),
            by("canceled"),
            by("error"),
        );
        // `error` is a UI's word, not a documented filter value (finding 2): a server that refuses it counts 0.
        let (total, completed, pending, in_progress, exception, canceled, failed) = futures::try_join!(
            self.count(&records, &[], "status"),
            self.count(&results, &[], "status"),
            self.count(&records, &q, "status"),
            self.count(&records, &ip, "status"),
            self.count(&records, &ex, "status"),
            self.count(&records, &ca, "status"),
            async { refused_as_zero(self.count(&records, &er, "status").await) },
        )?;
        Ok(BatchCounts {
            total,
            pending,
            in_progress,
            completed,
            exception,
            canceled,
            rejected: 0,
            failed,
        })
    }

    fn results(&self, q: ResultQuery<'_>) -> PageStream<Envelope> {
        // minCreatedAt is inclusive and millisecond-precise: ask for a superset, then keep what is strictly newer.
        let since_q = q
            .since_us
            .map(|us| format_rfc3339_us(us.div_euclid(1000) * 1000));
        let query: Vec<(&str, &str)> = since_q
            .as_deref()
            .map(|s| vec![("minCreatedAt", s)])
            .unwrap_or_default();
        let list = self.list(&["batches", q.batch_id, "results"], &query, "results");
        let decode = results_decoder(q.batch_id, q.include_raw);
        let keep: Option<Keep<Envelope>> = q.since_us.map(|since| {
            Arc::new(move |e: &Envelope| e.completed_us.is_none_or(|done| done > since))
                as Keep<Envelope>
        });
        page_number_stream_filtered(&self.rt, self.http.clone(), list, decode, keep)
    }

    async fn result_pages(&self, batch_id: &str) -> Result<Option<PagePlan>> {
        self.check_batch_id(batch_id)?;
        // The first page itself, not a one-item count: a server that serves fewer than PAGE_SIZE a page
        // numbers its pages in its own size, and a plan in ours would leave readers unevenly loaded.
        let list = self.list(&["batches", batch_id, "results"], &[], "results");
        let resp = self.http.send(&Request::get(list.first, "results")).await?;
        let total = total_of(&resp, "results")?;
        let served = resp
            .json::<Vec<serde::de::IgnoredAny>>(VENDOR, "results")?
            .len() as u64;
        let page_size = if served > 0 && served < total {
            served
        } else {
            PAGE_SIZE as u64
        };
        Ok(Some(PagePlan { total, page_size }))
    }

    fn results_range(
        &self,
        batch_id: &str,
        range: PageRange,
        include_raw: bool,
    ) -> Result<PageStream<Envelope>> {
        self.check_batch_id(batch_id)?;
        // Sorted by creation (+createdAt): results finished later land on later pages, so the ranges of a
        // plan stay disjoint while the batch is still completing.
        let list = self.list(&["batches", batch_id, "results"], &[], "results");
        let decode = results_decoder(batch_id, include_raw);
        Ok(page_number_range_stream(
            &self.rt,
            self.http.clone(),
            list,
            decode,
            None,
            range,
        ))
    }

    fn records(&self, q: RecordQuery<'_>) -> Result<PageStream<Envelope>> {
        self.check_batch_id(q.batch_id)?;
        let wanted: Option<Vec<Status>> = q
            .statuses
            .map(|ss| ss.into_iter().filter(|s| *s != Status::Rejected).collect());
        if wanted.as_ref().is_some_and(Vec::is_empty) {
            // Only q.statuses Alegion never has (rejected) were asked for.
            return Ok(PageStream::ready(&self.rt, Ok(vec![])));
        }
        // The server filters when every wanted status has a documented word; else the whole list is read and
        // filtered here.
        let words: Option<Vec<&str>> = wanted
            .as_ref()
            .and_then(|ws| ws.iter().map(|s| filter_word(*s)).collect());
        let filter = words.map(|ws| ws.join(","));
        let keep: Option<Keep<Envelope>> = match (&filter, wanted) {
            (None, Some(ws)) => Some(Arc::new(move |e: &Envelope| ws.contains(&e.status))),
            _ => None,
        };
        let query: Vec<(&str, &str)> = filter
            .as_deref()
            .map(|f| vec![("status", f)])
            .unwrap_or_default();
        let list = self.list(&["batches", q.batch_id, "records"], &query, "records");
        let batch = q.batch_id.to_string();
        let include_raw = q.include_raw;
        let decode: Decoder<Envelope> = Arc::new(move |resp: &Response| {
            let items = decode_items::<RecordDto>(resp, include_raw, "records")?;
            Ok(items
                .into_iter()
                .map(|(rec, raw)| Envelope {
                    key: rec.metadata.unwrap_or_else(|| rec.id.clone()),
                    id: rec.id,
                    batch_id: batch.clone(),
                    status: rec
                        .status
                        .as_deref()
                        .map(neutral_status)
                        .unwrap_or(Status::Pending),
                    input: rec.data,
                    output: None,
                    created_at: rec.created_at,
                    completed_at: None,
                    vendor: VENDOR,
                    raw,
                    completed_us: None,
                })
                .collect())
        });
        // A record carries no labels: its output and completion time are its result's
        // (`/batches/{id}/results`, keyed by `inputRecord.id`), unless the statuses asked for exclude
        // `completed` (a status the server filters by never is). Both lists run in `createdAt` order, so the
        // results are read alongside, only as far as the completed records of the page in hand need: memory
        // holds the results read ahead of their records, not the batch's.
        let results = filter
            .is_none()
            .then(|| self.list(&["batches", q.batch_id, "results"], &[], "records"));
        let decode_results = results_decoder(q.batch_id, false);
        let (rt, http) = (self.rt.clone(), self.http.clone());
        Ok(PageStream::spawn(&self.rt, move |tx| async move {
            let mut finished: HashMap<String, Envelope> = HashMap::new();
            let mut results =
                results.map(|list| page_number_stream(&rt, http.clone(), list, decode_results));
            let mut pages = page_number_stream(&rt, http, list, decode);
            while let Some(page) = pages.next_page().await {
                let items = match page {
                    Ok(items) => items,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                while let Some(stream) = results.as_mut() {
                    let unmatched = items
                        .iter()
                        .any(|e| e.status == Status::Completed && !finished.contains_key(&e.id));
                    if !unmatched {
                        break;
                    }
                    match stream.next_page().await {
                        Some(Ok(rs)) => finished.extend(rs.into_iter().map(|e| (e.id.clone(), e))),
                        Some(Err(e)) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                        None => results = None,
                    }
                }
                let page: Vec<Envelope> = items
                    .into_iter()
                    .map(|e| with_result(e, &mut finished))
                    .filter(|e| keep.as_ref().is_none_or(|k| k(e)))
                    .collect();
                if tx.send(Ok(page)).await.is_err() {
                    return;
                }
            }
        }))
    }

    fn api_url(&self, path: &str) -> Result<Url> {
        request_url(&self.cfg.base_url, &self.api, Some("/api/"), path)
    }

    fn paginate(&self, url: Url) -> PageStream<Box<RawValue>> {
        let has = |k: &str| url.query_pairs().any(|(q, _)| q == k);
        let page_size = url
            .query_pairs()
            .find(|(q, _)| q == "pageSize")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(PAGE_SIZE);
        let mut first = with_query_param(&url, "page", "1");
        if !has("pageSize") {
            first = with_query_param(&first, "pageSize", &PAGE_SIZE.to_string());
        }
        let list = PageNumberList {
            first,
            page_param: "page",
            page_size,
            total_header: TOTAL_HEADER,
            operation: "request",
            read_ahead: READ_AHEAD,
        };
        let decode: Decoder<Box<RawValue>> =
            Arc::new(|resp: &Response| resp.json(VENDOR, "request"));
        page_number_stream(&self.rt, self.http.clone(), list, decode)
    }
}

/// A record's envelope completed by its result, where it has one: the result's output and completion time, and
/// status `completed`.
fn with_result(mut e: Envelope, finished: &mut HashMap<String, Envelope>) -> Envelope {
    if let Some(r) = finished.remove(&e.id) {
        e.status = Status::Completed;
        e.output = r.output;
        e.completed_at = r.completed_at;
        e.completed_us = r.completed_us;
        e.input = e.input.or(r.input);
        e.created_at = e.created_at.or(r.created_at);
    }
    e
}

/// Decodes a page of `/batches/{id}/results` into envelopes.
fn results_decoder(batch_id: &str, include_raw: bool) -> Decoder<Envelope> {
    let batch = batch_id.to_string();
    Arc::new(move |resp: &Response| {
        let items = decode_items::<ResultDto>(resp, include_raw, "results")?;
        Ok(items
            .into_iter()
            .map(|(r, raw)| {
                let rec = r.input_record;
                Envelope {
                    key: rec.metadata.unwrap_or_else(|| rec.id.clone()),
                    id: rec.id,
                    batch_id: batch.clone(),
                    status: Status::Completed,
                    input: rec.data,
                    output: r.result_data,
                    created_at: rec.created_at,
                    completed_us: r.created_at.as_deref().and_then(parse_rfc3339_us),
                    completed_at: r.created_at,
                    vendor: VENDOR,
                    raw,
                }
            })
            .collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_refusals() {
        assert!(is_token_refused(401, b"{}"));
        let bad = br#"{"timestamp":1,"status":500,"error":"Internal Server Error","exception":"org.springframework.security.access.AccessDeniedException","message":"Incorrect token provided","path":"/x"}"#;
        assert!(is_token_refused(500, bad));
        assert!(!is_token_refused(500, br#"{"message":"boom"}"#));
        assert!(!is_token_refused(422, bad));
    }

    #[test]
    fn spring_errors_are_parsed() {
        let (code, msg) = parse_error(422, br#"{"message":"Invalid UUID string: x"}"#);
        assert_eq!(
            (code, msg.as_deref()),
            (None, Some("Invalid UUID string: x"))
        );
        let (code, _) = parse_error(
            500,
            br#"{"exception":"org.springframework.security.access.AccessDeniedException"}"#,
        );
        assert_eq!(code.as_deref(), Some("AccessDeniedException"));
        assert_eq!(parse_error(500, b"<html>"), (None, None));
    }

    #[test]
    fn statuses_map_both_ways() {
        for s in Status::ALL {
            if let Some(a) = filter_word(s) {
                assert_eq!(neutral_status(a), s);
            }
        }
        assert_eq!(filter_word(Status::Completed), None);
        assert_eq!(filter_word(Status::Failed), None);
        assert_eq!(neutral_status("completed"), Status::Completed);
    }

    #[test]
    fn status_words_are_read_in_any_case_and_with_underscores() {
        for (word, s) in [
            ("COMPLETE", Status::Completed),
            ("Completed", Status::Completed),
            ("IN_PROGRESS", Status::InProgress),
            ("in_progress", Status::InProgress),
            ("QUEUED", Status::Pending),
            (" exception ", Status::Exception),
            ("CANCELLED", Status::Canceled),
            ("ERROR", Status::Failed),
            ("failed", Status::Failed),
            ("SOMETHING_NEW", Status::InProgress),
        ] {
            assert_eq!(neutral_status(word), s, "{word}");
        }
    }
}
