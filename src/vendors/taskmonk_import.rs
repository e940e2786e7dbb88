//! TaskMonk's import: records as CSV rows (the key column last), chunked into import jobs, each sent as
//! base64 of the gzipped file; the driver's pieces (`upload.rs`) for one upload.

use std::collections::HashSet;
use std::io::Write;

use base64::Engine;
use reqwest::Method;
use serde_json::Value;

use super::super::model::*;
use super::super::upload::{Chunk, Keyed, Pieces};
use super::jobs::text_field;
use super::{TaskMonkAdapter, IMPORT_BYTES, IMPORT_ROWS, VENDOR};
use crate::engine::http::{Body, Request};
use crate::engine::retry::RequestKind;
use crate::engine::{Error, ErrorKind, Result};

/// A JSON value as the string a CSV cell holds: objects and lists as JSON text, null as empty.
pub fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
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
pub(super) fn chunks(rows: Vec<Row>) -> Vec<Vec<Row>> {
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

impl TaskMonkAdapter {
    pub(super) async fn post_import(
        &self,
        batch_id: &str,
        columns: &[String],
        rows: &[Row],
    ) -> Result<String> {
        let csv = write_csv(columns, rows)?;
        let mut url = self.url(true, &["batch", batch_id, "tasks", "import"]);
        url.query_pairs_mut().append_pair("fileType", "CSV");
        // Base64 text, sent as `text/plain` like both official SDKs and TaskMonk's Postman collection
        // (docs/vendors/taskmonk.md, finding 1): it is not JSON.
        let req = Request {
            method: Method::POST,
            url,
            body: Body::Text(encode_upload(&csv).into()),
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
}

/// Whether the batch keeps the key column, learned once per upload: from keys the batch already holds, or
/// by reading the first import back before any other is sent.
enum KeyCheck {
    Unknown,
    Kept,
    Dropped(Box<Error>),
}

/// One upload's pieces for the driver: the batch's keys, import jobs of CSV rows.
pub(super) struct Imports<'a> {
    adapter: &'a TaskMonkAdapter,
    batch_id: &'a str,
    /// Every column of the upload, the key column last.
    columns: Vec<String>,
    /// Held by the first import while it is read back: the other chunks wait for its verdict.
    key_check: tokio::sync::Mutex<KeyCheck>,
}

impl<'a> Imports<'a> {
    pub(super) fn new(
        adapter: &'a TaskMonkAdapter,
        batch_id: &'a str,
        columns: Vec<String>,
    ) -> Self {
        Imports {
            adapter,
            batch_id,
            columns,
            key_check: tokio::sync::Mutex::new(KeyCheck::Unknown),
        }
    }
}

/// The rows of one import job and the columns of its CSV file.
pub(super) struct Csv {
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
        let keys = self.adapter.existing_keys(self.batch_id).await?;
        // Keys came back: the column survives. (A chunk being verified holds the lock and decides itself.)
        if !keys.is_empty() {
            if let Ok(mut check) = self.key_check.try_lock() {
                if matches!(*check, KeyCheck::Unknown) {
                    *check = KeyCheck::Kept;
                }
            }
        }
        Ok(keys)
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
        let mut check = self.key_check.lock().await;
        match &*check {
            KeyCheck::Kept => {
                drop(check);
                return self
                    .adapter
                    .post_import(self.batch_id, &csv.columns, &csv.rows)
                    .await;
            }
            KeyCheck::Dropped(e) => return Err((**e).clone()),
            KeyCheck::Unknown => {}
        }
        // The first import: no source says TaskMonk keeps a column the project does not declare, so it
        // is read back before anything else is sent (docs/vendors/taskmonk.md, finding 2).
        let job = self
            .adapter
            .post_import(self.batch_id, &csv.columns, &csv.rows)
            .await?;
        let keys: Vec<&str> = csv.rows.iter().map(|r| r.key.as_str()).collect();
        match self
            .adapter
            .verify_key_column(self.batch_id, &job, &keys)
            .await
        {
            Ok(()) => {
                *check = KeyCheck::Kept;
                Ok(job)
            }
            Err(e) => {
                if e.code.as_deref() == Some("key_column_dropped") {
                    *check = KeyCheck::Dropped(Box::new(e.clone()));
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rec(key: &str, data: Value) -> UploadRecord {
        UploadRecord {
            key: key.into(),
            data: data.as_object().unwrap().clone(),
        }
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
}
