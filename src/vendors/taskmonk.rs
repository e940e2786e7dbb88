//! TaskMonk (`api.taskmonk.io`, the REST API `taskmonk-sdk` 0.29 calls).
//!
//! Neutral model onto TaskMonk: `project` = project id (set up by the annotation partner); `Batch` =
//! batch (numeric string ids); record = task, one row of an uploaded CSV file; the record key travels
//! as an input column (`key_column=`, default `external_id`); `Job` = the import jobs of one upload
//! (polled until `completed == total`, `Stalled` when they stop moving for `stall_timeout=` seconds);
//! result = a row of the batch's output file (an output job, then a plain GET of its `file_url` with no
//! credentials), CSV or Excel (`export_format=`). TaskMonk files hold strings: `input` and `output`
//! values come back as strings. Output columns are `output_fields=` where given, else the columns after
//! the key column (labelport writes the key column last). The result `id` is the key (the output file
//! has no task id). Auth: OAuth2 client credentials in the token request's query string, then a bearer
//! token, renewed before expiry and on refusal.
//!
//! Uploads are idempotent by key: TaskMonk does not deduplicate, so before sending (and after any
//! ambiguous failure) the adapter waits until the batch's imports are ingested and asks for the keys the
//! batch holds (an output file of the key column), then sends only the missing rows.

// Errors carry the facts a user needs; boxing them buys nothing at these call rates.
#![allow(clippy::result_large_err)]

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use futures::StreamExt;
use parking_lot::Mutex;
use reqwest::Method;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use url::Url;

use super::config::{check_options, seconds, ClientConfig, Options, Zero};
use super::kit::{self, Kit};
use super::model::*;
use super::upload::{Chunk, Driver, Keyed, Pieces, Plan, Sent, Wording};
use super::{Adapter, UploadOptions, UploadProgress};
use crate::engine::auth::OAuth2ClientCredentials;
use crate::engine::http::{
    bad_response, read_limited, request_url, too_large, Body, BodyError, HttpClient, Request,
};
use crate::engine::retry::{is_ambiguous, read_retry_after, RequestKind, RetryAfter, RetryPolicy};
use crate::engine::runner::{run, Step};
use crate::engine::stream::PageStream;
use crate::engine::{Error, ErrorKind, Result};

const VENDOR: &str = "taskmonk";
/// Rows per import job: TaskMonk documents no limit; a thousand rows keeps each job (and each
/// reconciliation after a failure) small.
pub const IMPORT_ROWS: usize = 1000;
/// CSV bytes per import job, before gzip.
const IMPORT_BYTES: usize = 8 << 20;
const UPLOAD_CONCURRENCY: usize = 4;
/// Envelopes per page handed to Python.
const PAGE: usize = 1000;
const DEFAULT_KEY_COLUMN: &str = "external_id";
const DEFAULT_STALL_S: f64 = 600.0;
const POLL_FIRST: Duration = Duration::from_millis(100);
const POLL_MAX: Duration = Duration::from_secs(2);
/// Tries of a download whose file is not there yet (404) or failed transiently.
const DOWNLOAD_TRIES: u32 = 8;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FileFormat {
    Csv,
    Excel,
}

impl FileFormat {
    fn query_value(self) -> &'static str {
        match self {
            FileFormat::Csv => "CSV",
            FileFormat::Excel => "Excel",
        }
    }
}

/// One upload's import jobs, and when their progress last moved (for `Stalled`).
struct Track {
    ids: Vec<String>,
    /// Records done without a job of ours: already in the batch, or found there after a failure.
    base: u64,
    last_done: u64,
    last_change: Instant,
}

pub struct TaskMonkAdapter {
    cfg: ClientConfig,
    http: Arc<HttpClient>,
    rt: tokio::runtime::Handle,
    /// `{base}/api/project/{p}`
    project_url: Url,
    /// `{base}/api/project/v2/{p}`
    v2_url: Url,
    key_column: String,
    output_fields: Option<Vec<String>>,
    export_format: FileFormat,
    stall: Duration,
    retry: RetryPolicy,
    jobs: Mutex<HashMap<String, Track>>,
}

/// Error bodies: `{"error": code, "message": ...}` (the simulator's choice; the real shape is unknown,
/// so anything else falls back to the status line).
pub fn parse_error(_status: u16, body: &[u8]) -> (Option<String>, Option<String>) {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => {
            let text = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
            (
                text("error").or_else(|| text("code")),
                text("message").or_else(|| text("error_description")),
            )
        }
        _ => (None, None),
    }
}

/// A bad or expired token: 401, or 403 (what the Java SDK maps as "Unauthorised Access").
fn is_token_refused(status: u16, _body: &[u8]) -> bool {
    matches!(status, 401 | 403)
}

fn option_error(name: &str, message: impl Into<String>) -> Error {
    Error::invalid(message).vendor(VENDOR).field(name)
}

fn parse_client_options(
    options: &Options,
) -> Result<(String, Option<Vec<String>>, FileFormat, Duration)> {
    let key_column = match options.get("key_column") {
        None | Some(Value::Null) => DEFAULT_KEY_COLUMN.to_string(),
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(_) => {
            return Err(option_error(
                "key_column",
                "key_column must be a non-empty column name",
            ))
        }
    };
    let output_fields = match options.get("output_fields") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(
            s.split(',')
                .map(|f| f.trim().to_string())
                .filter(|f| !f.is_empty())
                .collect(),
        ),
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|v| {
                    v.as_str().map(str::to_string).ok_or_else(|| {
                        option_error("output_fields", "output_fields must be a list of names")
                    })
                })
                .collect::<Result<Vec<_>>>()?,
        ),
        Some(_) => {
            return Err(option_error(
                "output_fields",
                "output_fields must be a list of names",
            ))
        }
    };
    let format = match options.get("export_format") {
        None | Some(Value::Null) => FileFormat::Csv,
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "csv" => FileFormat::Csv,
            "excel" | "xlsx" => FileFormat::Excel,
            _ => {
                return Err(option_error(
                    "export_format",
                    format!("export_format must be \"csv\" or \"excel\", not {s:?}"),
                ))
            }
        },
        Some(_) => {
            return Err(option_error(
                "export_format",
                "export_format must be \"csv\" or \"excel\"",
            ))
        }
    };
    let stall = match options.get("stall_timeout") {
        None | Some(Value::Null) => DEFAULT_STALL_S,
        Some(v) => v.as_f64().ok_or_else(|| {
            option_error(
                "stall_timeout",
                "stall_timeout must be a positive number of seconds",
            )
        })?,
    };
    let stall = seconds("stall_timeout", stall, Zero::Refused).map_err(|e| e.vendor(VENDOR))?;
    Ok((key_column, output_fields, format, stall))
}

/// A JSON value as the string a CSV cell holds: objects and lists as JSON text, null as empty.
pub fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A file URL as it may be shown: scheme, host and file name only.
fn shown_file_url(url: &Url) -> String {
    let name = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or("");
    format!(
        "{}://{}/.../{name}",
        url.scheme(),
        url.host_str().unwrap_or("?")
    )
}

/// A downloaded output file: the header and the rows, every cell a string.
#[derive(Debug, Default, PartialEq)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

fn bad_file(message: String) -> Error {
    Error::new(ErrorKind::Vendor, message)
        .vendor(VENDOR)
        .code("bad_output_file")
}

/// Parses an output file: Excel when it is a zip (`.xlsx`), else CSV (UTF-8, BOM stripped, else latin-1).
pub fn parse_file(bytes: &[u8]) -> Result<Table> {
    if bytes.starts_with(b"PK\x03\x04") {
        return parse_excel(bytes);
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text: std::borrow::Cow<str> = match std::str::from_utf8(bytes) {
        Ok(s) => s.into(),
        Err(_) => bytes.iter().map(|&b| b as char).collect::<String>().into(),
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(text.as_bytes());
    let header = reader
        .headers()
        .map_err(|e| bad_file(format!("the output file is not valid CSV: {e}")))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let mut rows = Vec::new();
    for row in reader.records() {
        let row = row.map_err(|e| bad_file(format!("the output file is not valid CSV: {e}")))?;
        if row.iter().all(str::is_empty) {
            continue;
        }
        rows.push(row.iter().map(str::to_string).collect());
    }
    Ok(Table { header, rows })
}

fn parse_excel(bytes: &[u8]) -> Result<Table> {
    use calamine::{Data, Reader};
    let mut book = calamine::Xlsx::new(std::io::Cursor::new(bytes.to_vec()))
        .map_err(|e| bad_file(format!("the output file is not a valid Excel file: {e}")))?;
    let range = book
        .worksheet_range_at(0)
        .ok_or_else(|| bad_file("the Excel output file has no sheet".into()))?
        .map_err(|e| bad_file(format!("the output file is not a valid Excel file: {e}")))?;
    let text = |c: &Data| match c {
        Data::Empty => String::new(),
        Data::String(s) | Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        Data::Bool(b) => b.to_string(),
        other => other.to_string(),
    };
    let mut rows = range.rows();
    let header = match rows.next() {
        Some(r) => r.iter().map(|c| text(c).trim().to_string()).collect(),
        None => return Ok(Table::default()),
    };
    let rows = rows
        .map(|r| r.iter().map(text).collect::<Vec<_>>())
        .filter(|r| r.iter().any(|c| !c.is_empty()))
        .collect();
    Ok(Table { header, rows })
}

/// `L{level}_U{user}_{attribute}`: the per-level, per-user columns of a "batch and user" output file.
fn level_user_column(name: &str) -> Option<(u32, &str)> {
    let rest = name.strip_prefix('L')?;
    let (level, rest) = rest.split_once('_')?;
    let level: u32 = level.parse().ok()?;
    let rest = rest.strip_prefix('U')?;
    let (user, attribute) = rest.split_once('_')?;
    user.parse::<u32>().ok()?;
    Some((level, attribute))
}

/// A timestamp of an output file as microseconds: RFC 3339, else a date-time without offset (UTC).
pub fn parse_timestamp_us(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Some(us) = parse_rfc3339_us(s) {
        return Some(us);
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%d-%m-%Y %H:%M:%S",
        "%d/%m/%Y %H:%M:%S",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    None
}

/// Where things are in an output file.
#[derive(Debug)]
struct Layout {
    key: Option<usize>,
    id: Option<usize>,
    input: Vec<usize>,
    output: Vec<usize>,
    /// (level, column) of `..._Start_Date` and `..._Completion_Date`.
    starts: Vec<(u32, usize)>,
    completions: Vec<(u32, usize)>,
}

impl Layout {
    fn new(header: &[String], key_column: &str, output_fields: Option<&[String]>) -> Layout {
        let key = header.iter().position(|h| h == key_column);
        let id = header
            .iter()
            .position(|h| matches!(h.as_str(), "task_id" | "taskId" | "Task Id"));
        let mut layout = Layout {
            key,
            id,
            input: vec![],
            output: vec![],
            starts: vec![],
            completions: vec![],
        };
        for (i, name) in header.iter().enumerate() {
            if Some(i) == key || Some(i) == id || name.is_empty() {
                continue;
            }
            if let Some((level, attribute)) = level_user_column(name) {
                match attribute {
                    "Start_Date" => layout.starts.push((level, i)),
                    "Completion_Date" => layout.completions.push((level, i)),
                    _ => {}
                }
                continue;
            }
            let is_output = match output_fields {
                Some(fields) => fields.iter().any(|f| f == name),
                // labelport writes the key column last: what follows it is the project's output.
                None => key.is_some_and(|k| i > k),
            };
            if is_output {
                layout.output.push(i);
            } else {
                layout.input.push(i);
            }
        }
        layout
    }

    /// The status of a row and its completion time, from the per-level dates where the file has them.
    fn status(
        &self,
        row: &[String],
        completed_only: bool,
    ) -> (Status, Option<i64>, Option<String>) {
        let get = |i: usize| row.get(i).map(String::as_str).unwrap_or("");
        if self.completions.is_empty() && self.starts.is_empty() {
            let labelled = self.output.iter().any(|&i| !get(i).is_empty());
            let status = if completed_only || labelled {
                Status::Completed
            } else {
                Status::Pending
            };
            return (status, None, None);
        }
        let last = self.completions.iter().map(|(l, _)| *l).max().unwrap_or(0);
        let done = self
            .completions
            .iter()
            .filter(|(l, _)| *l == last)
            .filter_map(|&(_, i)| Some(get(i)).filter(|s| !s.is_empty()))
            .filter_map(|s| parse_timestamp_us(s).map(|us| (us, s.to_string())))
            .max();
        if let Some((us, _)) = done {
            return (Status::Completed, Some(us), Some(format_rfc3339_us(us)));
        }
        if completed_only {
            return (Status::Completed, None, None);
        }
        let started = self
            .starts
            .iter()
            .chain(self.completions.iter())
            .any(|&(_, i)| !get(i).is_empty());
        let status = if started {
            Status::InProgress
        } else {
            Status::Pending
        };
        (status, None, None)
    }
}

fn raw_of(map: &Map<String, Value>) -> Option<Box<RawValue>> {
    RawValue::from_string(Value::Object(map.clone()).to_string()).ok()
}

/// Rows of an output file as envelopes.
pub fn envelopes(
    table: &Table,
    batch_id: &str,
    key_column: &str,
    output_fields: Option<&[String]>,
    completed_only: bool,
    include_raw: bool,
) -> Vec<Envelope> {
    let layout = Layout::new(&table.header, key_column, output_fields);
    let name = |i: usize| table.header[i].clone();
    table
        .rows
        .iter()
        .enumerate()
        .map(|(n, row)| {
            let get = |i: usize| row.get(i).cloned().unwrap_or_default();
            let pick = |cols: &[usize]| -> Map<String, Value> {
                cols.iter()
                    .map(|&i| (name(i), Value::String(get(i))))
                    .collect()
            };
            let key = layout.key.map(get).unwrap_or_else(|| (n + 1).to_string());
            let (status, completed_us, completed_at) = layout.status(row, completed_only);
            let output = (status == Status::Completed).then(|| pick(&layout.output));
            let raw = include_raw
                .then(|| {
                    let all: Map<String, Value> = table
                        .header
                        .iter()
                        .enumerate()
                        .map(|(i, h)| (h.clone(), Value::String(get(i))))
                        .collect();
                    raw_of(&all)
                })
                .flatten();
            Envelope {
                id: layout.id.map(get).unwrap_or_else(|| key.clone()),
                batch_id: batch_id.to_string(),
                key,
                status,
                input: raw_of(&pick(&layout.input)),
                output: output.as_ref().and_then(raw_of),
                created_at: None,
                completed_at,
                vendor: VENDOR,
                raw,
                completed_us,
            }
        })
        .collect()
}

/// The CSV of one import: the header, then one row per record.
pub fn write_csv(columns: &[String], rows: &[Row]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let e = |e: csv::Error| Error::invalid(format!("could not write the CSV: {e}"));
    w.write_record(columns).map_err(e)?;
    for r in rows {
        w.write_record(&r.cells).map_err(e)?;
    }
    w.into_inner()
        .map_err(|e| Error::invalid(format!("could not write the CSV: {e}")))
}

/// What TaskMonk's import takes: base64 of gzip of the file.
pub fn encode_upload(file: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing into a Vec cannot fail.
    let _ = gz.write_all(file);
    let gz = gz.finish().unwrap_or_default();
    base64::engine::general_purpose::STANDARD
        .encode(gz)
        .into_bytes()
}

/// One record as a CSV row.
#[derive(Debug, Clone)]
pub struct Row {
    pub key: String,
    pub cells: Vec<String>,
}

impl Row {
    fn size(&self) -> usize {
        self.cells.iter().map(|c| c.len() + 3).sum::<usize>() + 1
    }
}

/// The columns of an upload (every field in first-seen order, the key column last) and its rows.
pub fn prepare_rows(records: &[UploadRecord], key_column: &str) -> Result<(Vec<String>, Vec<Row>)> {
    let mut columns: Vec<String> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    for r in records {
        for k in r.data.keys() {
            if k != key_column && seen.insert(k.as_str()) {
                columns.push(k.clone());
            }
        }
    }
    for r in records {
        if let Some(v) = r.data.get(key_column) {
            if cell(v) != r.key {
                return Err(Error::invalid(format!(
                    "field {key_column:?} is the column TaskMonk keys records by, and it holds {:?}, not the record key {:?}: rename the field, pass key={key_column:?}, or choose another key_column= on the Client",
                    cell(v),
                    r.key
                ))
                .vendor(VENDOR)
                .operation("upload")
                .key(r.key.clone())
                .field(key_column));
            }
        }
    }
    columns.push(key_column.to_string());
    let rows = records
        .iter()
        .map(|r| {
            let mut cells: Vec<String> = columns[..columns.len() - 1]
                .iter()
                .map(|c| r.data.get(c).map(cell).unwrap_or_default())
                .collect();
            cells.push(r.key.clone());
            Row {
                key: r.key.clone(),
                cells,
            }
        })
        .collect();
    Ok((columns, rows))
}

/// Drops the columns no row fills (the key column, last, always stays).
pub fn prune_columns(columns: &[String], rows: Vec<Row>) -> (Vec<String>, Vec<Row>) {
    let last = columns.len().saturating_sub(1);
    let keep: Vec<usize> = (0..columns.len())
        .filter(|&i| {
            i == last
                || rows
                    .iter()
                    .any(|r| r.cells.get(i).is_some_and(|c| !c.is_empty()))
        })
        .collect();
    let cols = keep.iter().map(|&i| columns[i].clone()).collect();
    let rows = rows
        .into_iter()
        .map(|r| Row {
            cells: keep
                .iter()
                .map(|&i| r.cells.get(i).cloned().unwrap_or_default())
                .collect(),
            key: r.key,
        })
        .collect();
    (cols, rows)
}

/// Splits rows into import jobs of at most `IMPORT_ROWS` rows and about `IMPORT_BYTES` of CSV.
fn chunks(rows: Vec<Row>) -> Vec<Vec<Row>> {
    let mut out: Vec<Vec<Row>> = Vec::new();
    let mut size = 0;
    for r in rows {
        let s = r.size();
        match out.last_mut() {
            Some(last) if last.len() < IMPORT_ROWS && size + s <= IMPORT_BYTES => {
                size += s;
                last.push(r);
            }
            _ => {
                size = s;
                out.push(vec![r]);
            }
        }
    }
    out
}

/// `{"completed", "total"}` of a job-status answer.
fn progress(v: &Value) -> Option<(u64, u64)> {
    let n = |k: &str| {
        v.get(k).and_then(|x| {
            x.as_u64()
                .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
        })
    };
    Some((n("completed")?, n("total")?))
}

fn text_field(v: &Value, names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| match v.get(*n) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(x)) => Some(x.to_string()),
        _ => None,
    })
}

impl TaskMonkAdapter {
    pub fn new(cfg: ClientConfig, rt: tokio::runtime::Handle) -> Result<Self> {
        let (key_column, output_fields, export_format, stall) = parse_client_options(&cfg.options)?;
        let root = kit::api_root(&cfg, &["api"])?;
        let mut project_url = root.clone();
        project_url
            .path_segments_mut()
            .expect("checked above")
            .extend(["project", &cfg.project]);
        let mut v2_url = root.clone();
        v2_url
            .path_segments_mut()
            .expect("checked above")
            .extend(["project", "v2", &cfg.project]);
        let mut token_url = root;
        token_url
            .path_segments_mut()
            .expect("checked above")
            .extend(["oauth2", "token"]);
        let retry = cfg.retry_policy();
        let auth = OAuth2ClientCredentials::new(
            VENDOR,
            token_url,
            cfg.credentials["client_id"].expose(),
            cfg.credentials["client_secret"].expose(),
            is_token_refused,
            retry,
        );
        let http = kit::http_client(&cfg, auth, parse_error)?;
        Ok(TaskMonkAdapter {
            cfg,
            http: Arc::new(http),
            rt,
            project_url,
            v2_url,
            key_column,
            output_fields,
            export_format,
            stall,
            retry,
            jobs: Mutex::new(HashMap::new()),
        })
    }

    fn url(&self, v2: bool, segments: &[&str]) -> Url {
        let mut u = if v2 {
            self.v2_url.clone()
        } else {
            self.project_url.clone()
        };
        u.path_segments_mut()
            .expect("the API root is a base")
            .extend(segments);
        u
    }

    fn check_batch_id(&self, id: &str) -> Result<()> {
        if id.trim().is_empty() || id.contains('/') {
            return Err(Error::invalid(format!("{id:?} is not a TaskMonk batch id"))
                .vendor(VENDOR)
                .field("id"));
        }
        Ok(())
    }

    async fn get_json(&self, url: Url, operation: &'static str) -> Result<Value> {
        self.http
            .send(&Request::get(url, operation))
            .await?
            .json(VENDOR, operation)
    }

    async fn job_progress(&self, job: &str, operation: &'static str) -> Result<(u64, u64)> {
        let v = self
            .get_json(self.url(false, &["job", job, "status"]), operation)
            .await?;
        progress(&v).ok_or_else(|| {
            Error::new(
                ErrorKind::Vendor,
                format!("job {job}: unexpected status answer {v}"),
            )
            .vendor(VENDOR)
            .operation(operation)
            .code("bad_response")
        })
    }

    /// Polls until `completed >= total` (and, unless `zero_done`, `total > 0`), raising `Stalled` when
    /// the count does not move for the stall window.
    async fn wait_progress<F, Fut>(
        &self,
        what: &str,
        operation: &'static str,
        zero_done: bool,
        mut probe: F,
    ) -> Result<(u64, u64)>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(u64, u64)>>,
    {
        let mut last: Option<u64> = None;
        let mut since = Instant::now();
        let mut pause = POLL_FIRST;
        loop {
            let (done, total) = probe().await?;
            if done >= total && (zero_done || total > 0) {
                return Ok((done, total));
            }
            if last != Some(done) {
                last = Some(done);
                since = Instant::now();
            } else if since.elapsed() >= self.stall {
                return Err(self.stalled(what, done, total).operation(operation));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(POLL_MAX);
        }
    }

    fn stalled(&self, what: &str, done: u64, total: u64) -> Error {
        Error::new(
            ErrorKind::Stalled,
            format!(
                "{what} has not moved for {:.0} s ({done} of {total} done); TaskMonk reports no failure state, so it may never finish: ask the annotation partner, or raise stall_timeout=",
                self.stall.as_secs_f64()
            ),
        )
        .vendor(VENDOR)
        .code("stalled")
    }

    /// Waits until every import of the batch is ingested (the batch form of the job status). A vendor
    /// that does not know that form answers 404: then there is nothing to wait for.
    async fn wait_ingested(&self, batch_id: &str, operation: &'static str) -> Result<(u64, u64)> {
        let mut url = self.url(false, &["job", batch_id, "status"]);
        url.query_pairs_mut().append_pair("input_type", "batch");
        let what = format!("the imports of batch {batch_id}");
        let result = self
            .wait_progress(&what, operation, true, || {
                let url = url.clone();
                async move {
                    let v = self.get_json(url, operation).await?;
                    progress(&v).ok_or_else(|| {
                        Error::new(ErrorKind::Vendor, "unexpected import progress answer")
                            .vendor(VENDOR)
                            .operation(operation)
                    })
                }
            })
            .await;
        match result {
            Err(e) if e.kind == ErrorKind::NotFound => Ok((0, 0)),
            other => other,
        }
    }

    /// Starts an output job, waits for it, downloads and parses its file.
    async fn export(
        &self,
        batch_id: &str,
        per_user: bool,
        format: FileFormat,
        fields: &[&str],
        completed_only: bool,
        operation: &'static str,
    ) -> Result<Table> {
        let mut url = if per_user {
            self.url(false, &["batch", batch_id, "output", "file"])
        } else {
            self.url(true, &["batch", batch_id, "output"])
        };
        url.query_pairs_mut()
            .append_pair("output_format", format.query_value());
        // Starting another output job is harmless, so it retries like a read.
        let req = Request::json(
            Method::POST,
            url,
            &json!({"field_names": fields, "completedOnly": completed_only}),
            RequestKind::Read,
            operation,
        )?;
        let v: Value = self.http.send(&req).await?.json(VENDOR, operation)?;
        let (Some(file_url), Some(job)) = (
            text_field(&v, &["file_url", "fileUrl"]),
            text_field(&v, &["job_id", "jobId"]),
        ) else {
            return Err(Error::new(
                ErrorKind::Vendor,
                "the output request answered without file_url and job_id",
            )
            .vendor(VENDOR)
            .operation(operation)
            .code("bad_response"));
        };
        let what = format!("output job {job} of batch {batch_id}");
        self.wait_progress(&what, operation, false, || {
            self.job_progress(&job, operation)
        })
        .await?;
        let file_url = Url::parse(&file_url)
            .or_else(|_| self.cfg.base_url.join(&file_url))
            .map_err(|e| {
                Error::new(ErrorKind::Vendor, format!("file_url is not a URL: {e}"))
                    .vendor(VENDOR)
                    .operation(operation)
            })?;
        let bytes = self.download(&file_url, operation).await?;
        parse_file(&bytes).map_err(|e| e.operation(operation))
    }

    /// A plain GET of a pre-authorised file URL: no credentials go with it.
    async fn download(&self, url: &Url, operation: &'static str) -> Result<bytes::Bytes> {
        // A pre-authorised URL: its query (a signature) is redacted, and its path may be a token too.
        let shown = shown_file_url(url);
        let failed = |why: &str| {
            Error::new(
                ErrorKind::Vendor,
                format!("could not download the output file {shown}: {why}"),
            )
            .vendor(VENDOR)
            .operation(operation)
            .code("download_failed")
        };
        let again = |why: &str, after: Option<Duration>| Step::Retry {
            error: failed(why),
            after,
            paced: false,
        };
        // Its own budget of tries: a file not written yet answers 404 for a while.
        let policy = RetryPolicy {
            max_retries: DOWNLOAD_TRIES - 1,
            ..self.retry
        };
        run(&policy, &format!("GET {shown}"), |_| async {
            self.http.pace().await;
            let resp = match self.http.raw().get(url.clone()).send().await {
                Ok(resp) => resp,
                Err(e) if e.is_timeout() => return again("timed out", None),
                Err(_) => return again("the connection failed", None),
            };
            let status = resp.status().as_u16();
            if status != 200 {
                let why = format!("HTTP {status}");
                if !matches!(status, 404 | 429 | 500 | 502 | 503 | 504) {
                    return Step::Fail(failed(&why));
                }
                return match read_retry_after(resp.headers(), &policy) {
                    RetryAfter::TooLong(secs) => Step::TooLong {
                        error: Error::new(
                            if status == 429 {
                                ErrorKind::RateLimited
                            } else {
                                ErrorKind::Vendor
                            },
                            format!(
                                "could not download the output file {shown}: {why}, and the server asked to \
                                 wait {secs} s, more than the client's max_retry_wait of {} s",
                                policy.max_retry_after.as_secs_f64()
                            ),
                        )
                        .vendor(VENDOR)
                        .operation(operation)
                        .http_status(status)
                        .retry_after(secs),
                        wait: Duration::from_secs_f64(secs),
                    },
                    RetryAfter::Implausible(secs) => Step::Fail(
                        bad_response(
                            VENDOR,
                            operation,
                            url,
                            &format!("HTTP {status} with Retry-After {secs}"),
                        )
                        .http_status(status),
                    ),
                    after => again(&why, after.wait()),
                };
            }
            match read_limited(resp, self.http.limits().max_response_bytes).await {
                Ok(b) => Step::Done(b),
                Err(BodyError::TooLarge { limit }) => Step::Fail(too_large(
                    VENDOR,
                    operation,
                    &reqwest::Method::GET,
                    url,
                    limit,
                )),
                Err(_) => again("the download broke off", None),
            }
        })
        .await
    }

    /// The keys the batch holds, once its imports are ingested: how uploads stay idempotent and how
    /// they reconcile after an ambiguous failure.
    async fn existing_keys(&self, batch_id: &str) -> Result<HashSet<String>> {
        let (_, imported) = self.wait_ingested(batch_id, "upload").await?;
        if imported == 0 && self.vendor_counts(batch_id, "upload").await?.3 == 0 {
            return Ok(HashSet::new());
        }
        let table = match self
            .export(
                batch_id,
                false,
                FileFormat::Csv,
                &[self.key_column.as_str()],
                false,
                "upload",
            )
            .await
        {
            Ok(t) => t,
            // The batch has no key column at all: none of its tasks came from labelport.
            Err(e) if e.kind == ErrorKind::InvalidInput => return Ok(HashSet::new()),
            Err(e) => return Err(e),
        };
        let Some(k) = table.header.iter().position(|h| *h == self.key_column) else {
            return Ok(HashSet::new());
        };
        Ok(table
            .rows
            .into_iter()
            .filter_map(|mut r| (k < r.len()).then(|| std::mem::take(&mut r[k])))
            .filter(|k| !k.is_empty())
            .collect())
    }

    /// `(new_count, in_progress, completed, total)` of the batch status.
    async fn vendor_counts(
        &self,
        batch_id: &str,
        operation: &'static str,
    ) -> Result<(u64, u64, u64, u64)> {
        let v = self
            .get_json(self.url(false, &["batch", batch_id, "status"]), operation)
            .await?;
        let n = |k: &str| v.get(k).and_then(Value::as_u64);
        let completed = n("completed").unwrap_or(0);
        let in_progress = n("in_progress").unwrap_or(0);
        let total = n("total").unwrap_or(0);
        let new = n("new_count")
            .or_else(|| n("not_started"))
            .unwrap_or_else(|| total.saturating_sub(completed + in_progress));
        Ok((new, in_progress, completed, total))
    }

    async fn post_import(
        &self,
        batch_id: &str,
        columns: &[String],
        rows: &[Row],
    ) -> Result<String> {
        let csv = write_csv(columns, rows)?;
        let mut url = self.url(true, &["batch", batch_id, "tasks", "import"]);
        url.query_pairs_mut().append_pair("fileType", "CSV");
        // The body is base64 text; TaskMonk reads it whatever the Content-Type says.
        let req = Request {
            method: Method::POST,
            url,
            body: Body::Json(encode_upload(&csv).into()),
            kind: RequestKind::Create,
            operation: "upload",
            headers: vec![],
        };
        let v: Value = self.http.send(&req).await?.json(VENDOR, "upload")?;
        text_field(&v, &["job_id", "jobId"]).ok_or_else(|| {
            Error::new(ErrorKind::Vendor, "the import answered without a job_id")
                .vendor(VENDOR)
                .operation("upload")
                .code("bad_response")
        })
    }

    /// Sets the batch's priority for `upload(priority=...)`, keeping its other settings.
    async fn set_priority(&self, batch: &BatchInfo, priority: &Value) -> Result<()> {
        let name = match &batch.name {
            Some(n) => n.clone(),
            None => self.get_batch(&batch.id).await?.name.unwrap_or_default(),
        };
        let mut opts = Options::new();
        opts.insert("priority".into(), priority.clone());
        let mut body = Self::batch_body(&name, &opts)?;
        if let Some(raw) = batch.raw.as_object() {
            for k in ["comments", "notifications", "start_time"] {
                if let Some(v) = raw.get(k).filter(|v| !v.is_null()) {
                    body[k] = v.clone();
                }
            }
        }
        let req = Request::json(
            Method::PUT,
            self.url(false, &["batch", &batch.id]),
            &body,
            RequestKind::Read,
            "upload",
        )?;
        self.http.send(&req).await?;
        Ok(())
    }

    fn batch_body(name: &str, options: &Options) -> Result<Value> {
        let mut body =
            json!({"batch_name": name, "priority": 0, "comments": "", "notifications": []});
        if let Some(p) = options.get("priority") {
            let p = p.as_i64().ok_or_else(|| {
                option_error(
                    "priority",
                    "priority must be an integer (higher runs first)",
                )
            })?;
            body["priority"] = json!(p);
        }
        if let Some(c) = options.get("comments") {
            let c = c
                .as_str()
                .ok_or_else(|| option_error("comments", "comments must be a string"))?;
            body["comments"] = json!(c);
        }
        if let Some(s) = options.get("start_time") {
            let s = s.as_str().ok_or_else(|| {
                option_error(
                    "start_time",
                    "start_time must be a date string (YYYY-MM-DD)",
                )
            })?;
            body["start_time"] = json!(s);
        }
        Ok(body)
    }

    fn batch_info(raw: Value) -> Result<BatchInfo> {
        let id = text_field(&raw, &["id"]).ok_or_else(|| {
            Error::new(ErrorKind::Vendor, format!("unexpected batch object: {raw}"))
                .vendor(VENDOR)
                .code("bad_response")
        })?;
        Ok(BatchInfo {
            id,
            name: text_field(&raw, &["name", "batch_name"]),
            created_at: None,
            raw,
        })
    }
}

/// One upload's pieces for the driver: the batch's keys, import jobs of CSV rows.
struct Imports<'a> {
    adapter: &'a TaskMonkAdapter,
    batch_id: &'a str,
    /// Every column of the upload, the key column last.
    columns: Vec<String>,
}

/// The rows of one import job and the columns of its CSV file.
struct Csv {
    columns: Vec<String>,
    rows: Vec<Row>,
}

impl Keyed for Row {
    fn key(&self) -> &str {
        &self.key
    }
}

impl Chunk for Csv {
    fn len(&self) -> usize {
        self.rows.len()
    }
    fn keys(&self) -> Vec<String> {
        self.rows.keys()
    }
    fn retain_missing(&mut self, present: &HashSet<String>) {
        self.rows.retain_missing(present);
    }
    fn halves(self) -> (Self, Self) {
        let (first, second) = self.rows.halves();
        // Only a half's own columns: a refused column then refuses only the rows that fill it.
        let half = |rows| {
            let (columns, rows) = prune_columns(&self.columns, rows);
            Csv { columns, rows }
        };
        (half(first), half(second))
    }
}

#[async_trait::async_trait]
impl Pieces for Imports<'_> {
    type Item = Row;
    type Chunk = Csv;
    /// The import job's id.
    type Receipt = String;

    async fn existing_keys(&self) -> Result<HashSet<String>> {
        self.adapter.existing_keys(self.batch_id).await
    }
    fn chunks(&self, rows: Vec<Row>) -> Vec<Csv> {
        chunks(rows)
            .into_iter()
            .map(|rows| Csv {
                columns: self.columns.clone(),
                rows,
            })
            .collect()
    }
    async fn send(&self, csv: &Csv) -> Result<String> {
        self.adapter
            .post_import(self.batch_id, &csv.columns, &csv.rows)
            .await
    }
}

#[async_trait::async_trait]
impl Adapter for TaskMonkAdapter {
    fn kit(&self) -> Kit<'_> {
        Kit::new(&self.cfg, &self.http)
    }

    fn capability_settings(&self) -> Map<String, Value> {
        let mut settings = Map::new();
        settings.insert("key_column".into(), json!(self.key_column));
        let format = match self.export_format {
            FileFormat::Csv => "csv",
            FileFormat::Excel => "excel",
        };
        settings.insert("export_format".into(), json!(format));
        settings
    }

    async fn create_batch(
        &self,
        name: &str,
        exist_ok: bool,
        options: &Options,
    ) -> Result<BatchInfo> {
        check_options(VENDOR, "create_batch", options, self.cfg.spec.batch_options)?;
        if name.trim().is_empty() {
            return Err(Error::invalid("a batch name cannot be empty")
                .vendor(VENDOR)
                .operation("create_batch")
                .field("name"));
        }
        let body = Self::batch_body(name, options)?;
        let req = Request::json(
            Method::POST,
            self.url(false, &["batch"]),
            &body,
            RequestKind::Create,
            "create_batch",
        )?;
        // Before every attempt, look for the batch by name: after an ambiguous failure it may exist.
        let (req, body) = (&req, &body);
        run(&self.retry, "create_batch", |tries| async move {
            let existing = match self.list_batches().await {
                Ok(batches) => batches
                    .into_iter()
                    .find(|b| b.name.as_deref() == Some(name)),
                Err(e) => return Step::Fail(e),
            };
            if let Some(existing) = existing {
                if exist_ok || tries.retry > 0 {
                    return Step::Done(existing);
                }
                return Step::Fail(
                    Error::new(
                        ErrorKind::DuplicateRecord,
                        format!(
                            "a batch named {name:?} already exists (id {}); pass exist_ok=True to use it",
                            existing.id
                        ),
                    )
                    .vendor(VENDOR)
                    .operation("create_batch")
                    .key(name),
                );
            }
            match self.http.send(req).await {
                Ok(resp) => {
                    let created = resp.json::<Value>(VENDOR, "create_batch").and_then(|v| {
                        let mut raw = body.clone();
                        raw["id"] = v.get("id").cloned().unwrap_or(Value::Null);
                        raw["name"] = json!(name);
                        raw["project_id"] = json!(self.cfg.project);
                        Self::batch_info(raw)
                    });
                    match created {
                        Ok(info) => Step::Done(info),
                        Err(e) => Step::Fail(e),
                    }
                }
                Err(e) => Step::retry_if(is_ambiguous(&e), e),
            }
        })
        .await
    }

    async fn get_batch(&self, id: &str) -> Result<BatchInfo> {
        self.check_batch_id(id)?;
        self.list_batches()
            .await?
            .into_iter()
            .find(|b| b.id == id)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    format!("no batch {id:?} in project {}", self.cfg.project),
                )
                .vendor(VENDOR)
                .operation("batch")
            })
    }

    async fn list_batches(&self) -> Result<Vec<BatchInfo>> {
        let v = self
            .get_json(self.url(false, &["batch"]), "batches")
            .await?;
        let Value::Array(items) = v else {
            return Err(
                Error::new(ErrorKind::Vendor, "the batch list is not a JSON array")
                    .vendor(VENDOR)
                    .operation("batches")
                    .code("bad_response"),
            );
        };
        items.into_iter().map(Self::batch_info).collect()
    }

    async fn upload(
        &self,
        batch: &BatchInfo,
        records: Vec<UploadRecord>,
        options: UploadOptions,
        progress: Arc<UploadProgress>,
    ) -> Result<JobState> {
        check_options(
            VENDOR,
            "upload",
            &options.options,
            self.cfg.spec.upload_options,
        )?;
        self.check_batch_id(&batch.id)?;
        let (columns, rows) = prepare_rows(&records, &self.key_column)?;
        if let Some(p) = options.options.get("priority") {
            self.set_priority(batch, p).await?;
        }
        let total = rows.len() as u64;
        let imports = Imports {
            adapter: self,
            batch_id: &batch.id,
            columns,
        };
        // TaskMonk does not deduplicate: an import that may have been stored is reconciled first.
        let plan = Plan::new(VENDOR, UPLOAD_CONCURRENCY)
            .reconciling(self.retry)
            .bisecting();
        let driver = Driver::new(&imports, plan, &options, &progress);
        let mut sent = driver.run(rows).await?;
        let jobs = std::mem::take(&mut sent.receipts);
        let wording = Wording {
            landed: "were accepted".into(),
            details: Some(("import_jobs", json!(jobs))),
            ..Wording::stored()
        };
        let Sent {
            skipped,
            reconciled,
            failures,
            ..
        } = sent.finish(total, &progress, wording)?;
        let base = skipped + reconciled;
        let id = if jobs.len() == 1 {
            jobs[0].clone()
        } else {
            format!("taskmonk-import-{}", uuid::Uuid::new_v4())
        };
        let state = if !jobs.is_empty() {
            JobPhase::Running
        } else if failures.is_empty() {
            JobPhase::Completed
        } else {
            JobPhase::Failed
        };
        self.jobs.lock().insert(
            id.clone(),
            Track {
                ids: jobs.clone(),
                base,
                last_done: base,
                last_change: Instant::now(),
            },
        );
        Ok(JobState {
            id,
            batch_id: batch.id.clone(),
            state,
            total,
            done: base,
            failed: failures.len() as u64,
            skipped,
            failures,
            vendor_job: Some(jobs.join(",")),
        })
    }

    async fn job_status(&self, job: &JobState) -> Result<JobState> {
        if job.state != JobPhase::Running {
            return Ok(job.clone());
        }
        let (ids, base) = {
            let tracks = self.jobs.lock();
            match tracks.get(&job.id) {
                Some(t) => (t.ids.clone(), t.base),
                None => (
                    job.vendor_job
                        .as_deref()
                        .unwrap_or("")
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect(),
                    job.skipped,
                ),
            }
        };
        let progress: Vec<(u64, u64)> = futures::stream::iter(ids.clone())
            .map(|id| async move { self.job_progress(&id, "job_status").await })
            .buffered(8)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_>>()?;
        let ingested: u64 = progress.iter().map(|p| p.0.min(p.1)).sum();
        let finished = progress.iter().all(|&(c, t)| t > 0 && c >= t);
        let done = base + ingested;
        let mut next = job.clone();
        next.done = done.min(job.total);
        if finished {
            next.state = if job.failed > 0 {
                JobPhase::Failed
            } else {
                JobPhase::Completed
            };
            self.jobs.lock().remove(&job.id);
            return Ok(next);
        }
        let mut tracks = self.jobs.lock();
        let track = tracks.entry(job.id.clone()).or_insert_with(|| Track {
            ids: ids.clone(),
            base,
            last_done: done,
            last_change: Instant::now(),
        });
        if done != track.last_done {
            track.last_done = done;
            track.last_change = Instant::now();
        } else if track.last_change.elapsed() >= self.stall {
            return Err(self
                .stalled(&format!("import job {}", job.id), done, job.total)
                .operation("wait"));
        }
        Ok(next)
    }

    async fn batch_status(&self, batch_id: &str) -> Result<BatchCounts> {
        self.check_batch_id(batch_id)?;
        let mut url = self.url(false, &["job", batch_id, "status"]);
        url.query_pairs_mut().append_pair("input_type", "batch");
        let (counts, imports) = futures::join!(
            self.vendor_counts(batch_id, "status"),
            self.get_json(url, "status")
        );
        let (new, in_progress, completed, total) = counts?;
        // Rows imported but not yet ingested are not tasks yet: they count as pending, so an upload
        // followed at once by batch.wait() does not see an empty, "done" batch.
        let waiting = match imports {
            Ok(v) => progress(&v).map_or(0, |(c, t)| t.saturating_sub(c)),
            Err(e) if matches!(e.kind, ErrorKind::NotFound | ErrorKind::InvalidInput) => 0,
            Err(e) => return Err(e),
        };
        Ok(BatchCounts {
            total: total + waiting,
            pending: new + waiting,
            in_progress,
            completed,
            ..Default::default()
        })
    }

    fn results(
        &self,
        batch_id: &str,
        since_us: Option<i64>,
        include_raw: bool,
    ) -> PageStream<Envelope> {
        let this = self.clone_parts();
        let batch = batch_id.to_string();
        PageStream::spawn(&self.rt, move |tx| async move {
            let run = async {
                let table = this
                    .export(&batch, true, this.export_format, &[], true, "results")
                    .await?;
                let mut items = envelopes(
                    &table,
                    &batch,
                    &this.key_column,
                    this.output_fields.as_deref(),
                    true,
                    include_raw,
                );
                // `since` is exclusive; results without a completion time cannot be filtered and stay.
                if let Some(since) = since_us {
                    items.retain(|e| e.completed_us.is_none_or(|t| t > since));
                }
                items.sort_by(|a, b| (a.completed_us, &a.key).cmp(&(b.completed_us, &b.key)));
                Ok::<_, Error>(items)
            };
            match run.await {
                Ok(items) => send_pages(&tx, items).await,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                }
            }
        })
    }

    fn records(
        &self,
        batch_id: &str,
        statuses: Option<Vec<Status>>,
        include_raw: bool,
    ) -> Result<PageStream<Envelope>> {
        self.check_batch_id(batch_id)?;
        let this = self.clone_parts();
        let batch = batch_id.to_string();
        Ok(PageStream::spawn(&self.rt, move |tx| async move {
            let run = async {
                let table = this
                    .export(&batch, true, this.export_format, &[], false, "records")
                    .await?;
                let mut items = envelopes(
                    &table,
                    &batch,
                    &this.key_column,
                    this.output_fields.as_deref(),
                    false,
                    include_raw,
                );
                if let Some(wanted) = &statuses {
                    items.retain(|e| wanted.contains(&e.status));
                }
                Ok::<_, Error>(items)
            };
            match run.await {
                Ok(items) => send_pages(&tx, items).await,
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                }
            }
        }))
    }

    fn api_url(&self, path: &str) -> Result<Url> {
        request_url(&self.cfg.base_url, &self.project_url, Some("/api/"), path)
    }

    /// TaskMonk's lists come whole (a JSON array), or as `{"items": [...]}`.
    fn paginate(&self, url: Url) -> PageStream<Box<RawValue>> {
        let http = self.http.clone();
        PageStream::spawn(&self.rt, move |tx| async move {
            let page = async {
                let resp = http.send(&Request::get(url, "request")).await?;
                #[derive(serde::Deserialize)]
                struct Items {
                    items: Vec<Box<RawValue>>,
                }
                // Untagged enums cannot hold raw values: look at the first byte instead.
                let is_list = resp
                    .body
                    .iter()
                    .find(|b| !b.is_ascii_whitespace())
                    .is_some_and(|&b| b == b'[');
                if is_list {
                    resp.json::<Vec<Box<RawValue>>>(VENDOR, "request")
                } else {
                    resp.json::<Items>(VENDOR, "request").map(|p| p.items)
                }
            };
            let _ = tx.send(page.await).await;
        })
    }
}

async fn send_pages(tx: &tokio::sync::mpsc::Sender<Result<Vec<Envelope>>>, items: Vec<Envelope>) {
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        let page: Vec<Envelope> = items.by_ref().take(PAGE).collect();
        if tx.send(Ok(page)).await.is_err() {
            return;
        }
    }
}

impl TaskMonkAdapter {
    /// What a streaming task needs, owned (the adapter itself is behind an `Arc` we do not hold).
    fn clone_parts(&self) -> Arc<TaskMonkAdapter> {
        Arc::new(TaskMonkAdapter {
            cfg: self.cfg.clone(),
            http: self.http.clone(),
            rt: self.rt.clone(),
            project_url: self.project_url.clone(),
            v2_url: self.v2_url.clone(),
            key_column: self.key_column.clone(),
            output_fields: self.output_fields.clone(),
            export_format: self.export_format,
            stall: self.stall,
            retry: self.retry,
            jobs: Mutex::new(HashMap::new()),
        })
    }

    /// Downloads the batch's output file in `format` and returns its rows as they are (for comparing
    /// formats, and for users who want the vendor's file).
    pub async fn output_table(&self, batch_id: &str, format: FileFormat) -> Result<Table> {
        self.export(batch_id, true, format, &[], false, "results")
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, data: Value) -> UploadRecord {
        UploadRecord {
            key: key.into(),
            data: data.as_object().unwrap().clone(),
        }
    }

    #[test]
    fn errors_are_parsed() {
        assert_eq!(
            parse_error(
                400,
                br#"{"error":"invalid_field","message":"Unknown input field"}"#
            ),
            (
                Some("invalid_field".into()),
                Some("Unknown input field".into())
            )
        );
        assert_eq!(parse_error(500, b"<html>"), (None, None));
        assert!(is_token_refused(401, b"") && is_token_refused(403, b""));
        assert!(!is_token_refused(404, b""));
    }

    #[test]
    fn rows_put_the_key_column_last_and_refuse_a_conflicting_one() {
        let records = vec![
            rec(
                "a",
                json!({"url": "u1", "n": 1, "tags": ["x"], "none": null}),
            ),
            rec("b", json!({"url": "u2", "extra": true})),
        ];
        let (cols, rows) = prepare_rows(&records, "external_id").unwrap();
        assert_eq!(cols, ["url", "n", "tags", "none", "extra", "external_id"]);
        assert_eq!(rows[0].cells, ["u1", "1", "[\"x\"]", "", "", "a"]);
        assert_eq!(rows[1].cells, ["u2", "", "", "", "true", "b"]);
        // The key field may be the key column itself.
        let same = vec![rec("k", json!({"external_id": "k", "x": 1}))];
        assert_eq!(
            prepare_rows(&same, "external_id").unwrap().0,
            ["x", "external_id"]
        );
        let clash = vec![rec("k", json!({"external_id": "other"}))];
        let e = prepare_rows(&clash, "external_id").unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidInput);
        assert_eq!(e.field.as_deref(), Some("external_id"));
    }

    #[test]
    fn pruning_keeps_filled_columns_and_the_key() {
        let cols: Vec<String> = ["a", "b", "external_id"].map(String::from).to_vec();
        let rows = vec![Row {
            key: "k".into(),
            cells: vec!["".into(), "x".into(), "k".into()],
        }];
        let (c, r) = prune_columns(&cols, rows);
        assert_eq!(c, ["b", "external_id"]);
        assert_eq!(r[0].cells, ["x", "k"]);
    }

    #[test]
    fn chunks_respect_rows_and_bytes() {
        let rows: Vec<Row> = (0..2500)
            .map(|i| Row {
                key: i.to_string(),
                cells: vec!["x".into()],
            })
            .collect();
        let c = chunks(rows);
        assert_eq!(
            c.iter().map(Vec::len).collect::<Vec<_>>(),
            [1000, 1000, 500]
        );
        let big: Vec<Row> = (0..3)
            .map(|i| Row {
                key: i.to_string(),
                cells: vec!["y".repeat(IMPORT_BYTES / 2)],
            })
            .collect();
        assert_eq!(chunks(big).len(), 3);
    }

    #[test]
    fn uploads_are_base64_gzip() {
        let body = encode_upload(b"a,b\n1,2\n");
        let gz = base64::engine::general_purpose::STANDARD
            .decode(&body)
            .unwrap();
        assert_eq!(&gz[..2], &[0x1f, 0x8b]);
        let mut out = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut out)
            .unwrap();
        assert_eq!(out, "a,b\n1,2\n");
    }

    fn table() -> Table {
        let csv =
            "url,external_id,label,confidence,L1_U1_User,L1_U1_Start_Date,L1_U1_Completion_Date\n\
                   u1,k1,car,0.9,L1_U1,2026-11-24T08:00:00.000Z,2026-11-24T08:00:02.500Z\n\
                   u2,k2,,,L1_U1,2026-11-24T08:00:01.000Z,\n\
                   u3,k3,,,,,\n";
        parse_file(csv.as_bytes()).unwrap()
    }

    #[test]
    fn output_rows_become_envelopes() {
        let t = table();
        let all = envelopes(&t, "331", "external_id", None, false, true);
        assert_eq!(all.len(), 3);
        let e = &all[0];
        assert_eq!((e.id.as_str(), e.key.as_str()), ("k1", "k1"));
        assert_eq!(e.status, Status::Completed);
        assert_eq!(e.input.as_ref().unwrap().get(), r#"{"url":"u1"}"#);
        assert_eq!(
            e.output.as_ref().unwrap().get(),
            r#"{"label":"car","confidence":"0.9"}"#
        );
        assert_eq!(e.completed_at.as_deref(), Some("2026-11-24T08:00:02.500Z"));
        assert!(e.raw.as_ref().unwrap().get().contains("L1_U1_User"));
        assert_eq!(all[1].status, Status::InProgress);
        assert!(all[1].output.is_none());
        assert_eq!(all[2].status, Status::Pending);

        // Declared output fields win over the position of the key column.
        let fields = vec!["label".to_string()];
        let e = &envelopes(&t, "331", "external_id", Some(&fields), false, false)[0];
        assert_eq!(
            e.input.as_ref().unwrap().get(),
            r#"{"url":"u1","confidence":"0.9"}"#
        );
        assert!(e.raw.is_none());
    }

    #[test]
    fn file_urls_are_shown_without_their_token() {
        let u = Url::parse("https://blob.example.net/out/s3cr3t-token/331_j.csv?sig=abc").unwrap();
        let shown = shown_file_url(&u);
        assert_eq!(shown, "https://blob.example.net/.../331_j.csv");
    }

    #[test]
    fn level_columns_and_timestamps() {
        assert_eq!(
            level_user_column("L1_U1_Completion_Date"),
            Some((1, "Completion_Date"))
        );
        assert_eq!(level_user_column("L12_U3_User"), Some((12, "User")));
        assert_eq!(level_user_column("L1_label"), None);
        assert_eq!(level_user_column("Label"), None);
        let us = parse_timestamp_us("2026-11-24T08:00:02.500Z").unwrap();
        assert_eq!(parse_timestamp_us("2026-11-24 08:00:02.5"), Some(us));
        assert_eq!(parse_timestamp_us(""), None);
        assert_eq!(parse_timestamp_us("soon"), None);
    }

    #[test]
    fn latin1_csv_and_options() {
        let t = parse_file(b"name,external_id\ncaf\xe9,k\n").unwrap();
        assert_eq!(t.rows[0][0], "café");
        let mut o = Options::new();
        o.insert("export_format".into(), json!("Excel"));
        o.insert("output_fields".into(), json!("label, confidence"));
        o.insert("stall_timeout".into(), json!(2.5));
        let (k, f, fmt, stall) = parse_client_options(&o).unwrap();
        assert_eq!(k, "external_id");
        assert_eq!(f.unwrap(), ["label", "confidence"]);
        assert_eq!(fmt, FileFormat::Excel);
        assert_eq!(stall, Duration::from_millis(2500));
        o.insert("stall_timeout".into(), json!(0));
        assert_eq!(
            parse_client_options(&o).unwrap_err().field.as_deref(),
            Some("stall_timeout")
        );
        // Beyond any clock: an error, not a panic.
        o.insert("stall_timeout".into(), json!(1e300));
        assert_eq!(
            parse_client_options(&o).unwrap_err().field.as_deref(),
            Some("stall_timeout")
        );
    }
}
