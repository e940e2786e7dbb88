//! Deepen's upload: records become zip entries (the entry name is the record key), packed on disk before
//! anything is sent, because Deepen creates a dataset together with its files declared and sized
//! (`[D-quick]` "We need the exact size of the zip file to create a new dataset"; `[T4]` upload_dataset.py
//! declares the sized zip in the create call). So the first upload to a batch creates the dataset with every
//! zip declared, PUTs each zip to the `resumable_upload_url` Deepen answered for it, and asks Deepen to unpack
//! it (`process_uploaded_data`). No source shows a way to add files to an existing dataset: a later upload
//! can only fill archives the dataset declared and never received (an upload cut short), matched by their
//! exact size; anything else is `UnsupportedOperation`, before anything is sent.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{json, Value};
use url::Url;

use super::wire::{batch_tag, last_segment, DatasetView, Reservation};
use super::{DeepenAdapter, VENDOR};
use crate::engine::redact::redact_url;
use crate::engine::retry::RequestKind;
use crate::engine::{Error, ErrorKind, Result};
use crate::vendors::model::UploadRecord;
use crate::vendors::resend;
use crate::vendors::upload::{in_chunks, Keyed, Pieces};

/// Files per zip: small enough that an interrupted upload loses little, large enough to be few calls.
pub const FILES_PER_ZIP: usize = 1000;
const READ_CHUNK: usize = 64 * 1024;

/// Standard base64 (with or without padding), for `{"base64": ...}` file contents.
pub(super) fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let clean: Vec<u8> = s
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    if clean.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= val(*c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

/// Where a record's file comes from.
#[derive(Debug, Clone)]
pub(super) enum Source {
    Path(PathBuf),
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) name: String,
    pub(super) source: Source,
}

impl Keyed for Entry {
    fn key(&self) -> &str {
        &self.name
    }
}

/// Checks a record and says what goes into the zip: the entry name (the key, or `name` when the key is the
/// content hash of a record without one) and where the bytes come from.
pub(super) fn entry_of(r: &UploadRecord, index: usize) -> Result<Entry> {
    let fail = |m: String, field: &str| {
        Error::invalid(format!("record #{index}: {m}"))
            .vendor(VENDOR)
            .operation("upload")
            .key(r.key.clone())
            .field(field)
    };
    let name = match r.data.get("name") {
        Some(Value::String(n)) if r.key.starts_with("sha256-") && !n.is_empty() => n.clone(),
        _ => r.key.clone(),
    };
    if name.starts_with('/')
        || name.contains('\\')
        || name
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(fail(
            format!("{name:?} cannot be a file name inside a zip (no leading '/', '..', empty or '\\' parts)"),
            "name",
        ));
    }
    let source = match r.data.get("file") {
        Some(Value::String(p)) => {
            let path = PathBuf::from(p);
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => Source::Path(path),
                Ok(_) => return Err(fail(format!("file {p:?} is not a regular file"), "file")),
                Err(e) => return Err(fail(format!("file {p:?} cannot be read: {e}"), "file")),
            }
        }
        Some(Value::Object(o)) => match o
            .get("base64")
            .and_then(Value::as_str)
            .and_then(decode_base64)
        {
            Some(b) => Source::Bytes(b),
            None => {
                return Err(fail(
                    "file must be a path, or {\"base64\": <standard base64 text>}".into(),
                    "file",
                ))
            }
        },
        Some(_) => {
            return Err(fail(
                "file must be a path to the file (a string)".into(),
                "file",
            ))
        }
        None => {
            return Err(fail(
                "every Deepen record needs a `file` (a path to the file)".into(),
                "file",
            ))
        }
    };
    Ok(Entry { name, source })
}

/// Every record's entry, checked before anything is sent; file names must be unique.
pub(super) fn entries_of(records: &[UploadRecord]) -> Result<Vec<Arc<Entry>>> {
    let mut entries = Vec::with_capacity(records.len());
    let mut seen = HashSet::new();
    for (i, r) in records.iter().enumerate() {
        let e = entry_of(r, i)?;
        if !seen.insert(e.name.clone()) {
            return Err(Error::new(
                ErrorKind::DuplicateRecord,
                format!(
                    "two records have the file name {:?}: a key must be unique within an upload",
                    e.name
                ),
            )
            .vendor(VENDOR)
            .operation("upload")
            .key(e.name));
        }
        entries.push(Arc::new(e));
    }
    Ok(entries)
}

/// Writes entries into a zip at `path`, streaming each file from disk; the zip's size. The same entries
/// always give the same size (stored, fixed timestamps): a resumed upload finds its declared archive by it.
fn write_zip(path: &Path, entries: &[Arc<Entry>]) -> std::io::Result<u64> {
    let file = std::fs::File::create(path)?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .last_modified_time(zip::DateTime::default())
        .large_file(false);
    for e in entries {
        zip.start_file(e.name.as_str(), opts)
            .map_err(std::io::Error::other)?;
        match &e.source {
            Source::Path(p) => {
                let mut f = std::fs::File::open(p)?;
                std::io::copy(&mut f, &mut zip)?;
            }
            Source::Bytes(b) => zip.write_all(b)?,
        }
    }
    let mut w = zip.finish().map_err(std::io::Error::other)?;
    w.flush()?;
    drop(w);
    Ok(std::fs::metadata(path)?.len())
}

/// A file's bytes as a request body, read by one thread into a small bounded channel: never whole in memory,
/// and the reads happen off the runtime's threads.
fn file_body(path: PathBuf) -> reqwest::Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    std::thread::spawn(move || {
        let mut f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        loop {
            let mut buf = vec![0u8; READ_CHUNK];
            match f.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.blocking_send(Ok(bytes::Bytes::from(buf))).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    reqwest::Body::wrap_stream(stream)
}

struct TempZip(PathBuf);

impl Drop for TempZip {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// One zip packed on disk and the archive of the dataset it fills.
struct Packed {
    zip: TempZip,
    size: u64,
    url: Url,
}

/// The archive's name Deepen unpacks by: the last `/` segment of the upload URL's `name=` parameter
/// (`[T4]` upload_dataset.py:139-143).
fn archive_name(url: &Url) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == "name")
        .map(|(_, v)| last_segment(&v).to_string())
}

/// Packs each chunk into a zip on disk: `(first key, zip, size)`.
async fn pack(chunks: Vec<Vec<Arc<Entry>>>) -> Result<Vec<(String, TempZip, u64)>> {
    tokio::task::spawn_blocking(move || {
        chunks
            .into_iter()
            .map(|entries| {
                let path = std::env::temp_dir()
                    .join(format!("labelport-deepen-{}.zip", uuid::Uuid::new_v4()));
                let zip = TempZip(path);
                let size = write_zip(&zip.0, &entries).map_err(|e| {
                    Error::invalid(format!("could not pack the files into a zip: {e}"))
                        .vendor(VENDOR)
                        .operation("upload")
                })?;
                Ok((entries[0].name.clone(), zip, size))
            })
            .collect()
    })
    .await
    .map_err(|e| Error::new(ErrorKind::Vendor, format!("packing the zips failed: {e}")))?
}

/// One upload's pieces for the driver: the files the dataset holds, and the zips packed and matched to the
/// dataset's archives before the driver starts.
pub(super) struct Zips<'a> {
    pub(super) adapter: &'a DeepenAdapter,
    pub(super) dataset_id: String,
    pub(super) present: HashSet<String>,
    /// First entry name of a chunk -> its zip.
    packed: Mutex<HashMap<String, Packed>>,
}

impl<'a> Zips<'a> {
    /// Everything before the first byte is sent: the dataset's files, the zips of the missing entries, and
    /// for each zip the archive it fills (declared now, when the upload creates the dataset).
    pub(super) async fn prepare(
        adapter: &'a DeepenAdapter,
        batch_id: &str,
        entries: &[Arc<Entry>],
        inputs: &HashMap<String, String>,
    ) -> Result<Zips<'a>> {
        let found = adapter.dataset_of(batch_id, "upload").await?;
        let present: HashSet<String> = match &found {
            Some(id) => adapter.file_ids(id, "upload").await?,
            None => HashSet::new(),
        };
        let missing: Vec<Arc<Entry>> = entries
            .iter()
            .filter(|e| !present.contains(&e.name))
            .cloned()
            .collect();
        let packed = pack(in_chunks(missing.clone(), FILES_PER_ZIP)).await?;
        let (dataset_id, dataset) = match found {
            Some(id) if packed.is_empty() => (id, Value::Null),
            None if packed.is_empty() => {
                return Err(Error::invalid("nothing to upload: records is empty")
                    .vendor(VENDOR)
                    .operation("upload"))
            }
            Some(id) => {
                let d = adapter.get_json(&["datasets", &id], "upload").await?;
                (id, d)
            }
            None => {
                let r = Reservation::parse(batch_id).ok_or_else(|| {
                    Error::new(ErrorKind::NotFound, format!("no dataset {batch_id:?}"))
                        .vendor(VENDOR)
                        .operation("upload")
                })?;
                let sizes: Vec<u64> = packed.iter().map(|(_, _, s)| *s).collect();
                // The dataset's tags keep what Deepen does not: the batch id handed out, and each record's
                // own fields (docs/vendors/deepen.md, "Records' fields").
                let tags: Vec<String> = std::iter::once(batch_tag(batch_id))
                    .chain(missing.iter().filter_map(|e| inputs.get(&e.name).cloned()))
                    .collect();
                adapter.create_dataset(&r, &sizes, &tags).await?
            }
        };
        let mut slots = open_archives(&DatasetView::of(&dataset));
        let mut by_key = HashMap::new();
        for (key, zip, size) in packed {
            let Some(i) = slots.iter().position(|(s, _)| *s == size) else {
                return Err(no_archive_left(&dataset_id, present.len(), size));
            };
            let (_, url) = slots.swap_remove(i);
            by_key.insert(key, Packed { zip, size, url });
        }
        Ok(Zips {
            adapter,
            dataset_id,
            present,
            packed: Mutex::new(by_key),
        })
    }
}

/// The dataset's declared archives it has not unpacked yet: `(size, upload URL)`.
fn open_archives(d: &DatasetView) -> Vec<(u64, Url)> {
    d.declared
        .iter()
        .filter_map(|(size, url)| Some(((*size)?, Url::parse(url.as_deref()?).ok()?)))
        .filter(|(_, url)| archive_name(url).is_some_and(|n| !d.uploaded.contains(&n)))
        .collect()
}

fn no_archive_left(dataset_id: &str, held: usize, size: u64) -> Error {
    Error::unsupported(
        VENDOR,
        "add files to a dataset that already exists",
        &format!(
            "dataset {dataset_id} holds {held} files and declared no open archive of {size} bytes; Deepen \
             takes a dataset's files when the dataset is created (docs/vendors/deepen.md), so send new files \
             to a new batch (client.create_batch with another name). Re-running an upload that was cut short \
             fills the archives it declared; if one is still being processed, wait for its job and run the \
             same upload again"
        ),
    )
}

#[async_trait::async_trait]
impl Pieces for Zips<'_> {
    type Item = Arc<Entry>;
    type Chunk = Vec<Arc<Entry>>;
    type Receipt = ();

    async fn existing_keys(&self) -> Result<HashSet<String>> {
        Ok(self.present.clone())
    }
    fn chunks(&self, entries: Vec<Arc<Entry>>) -> Vec<Vec<Arc<Entry>>> {
        in_chunks(entries, FILES_PER_ZIP)
    }
    async fn send(&self, chunk: &Vec<Arc<Entry>>) -> Result<()> {
        let packed = self
            .packed
            .lock()
            .remove(&chunk[0].name)
            .ok_or_else(|| Error::new(ErrorKind::Internal, "a chunk was not packed"))?;
        self.adapter
            .put_zip(&packed.url, &packed.zip.0, packed.size)
            .await?;
        let name = archive_name(&packed.url).ok_or_else(|| {
            Error::new(
                ErrorKind::Vendor,
                "the upload URL carries no name= parameter",
            )
            .vendor(VENDOR)
            .operation("upload")
        })?;
        self.adapter.process(&self.dataset_id, &name).await
    }
}

impl DeepenAdapter {
    /// Creates the dataset with its archives declared by size; the dataset's id and Deepen's answer. Before
    /// every attempt the dataset is looked up by name: after an ambiguous failure it may exist, and its
    /// declared archives are then the ones to fill.
    pub(super) async fn create_dataset(
        &self,
        r: &Reservation,
        sizes: &[u64],
        tags: &[String],
    ) -> Result<(String, Value)> {
        let files: Vec<Value> = sizes
            .iter()
            .map(|s| json!({"file_size": s, "file_type": "application/zip"}))
            .collect();
        let mut body = json!({
            "dataset_name": r.name,
            "dataset_type": r.dataset_type,
            "labelling_mode": "frame_by_frame",
            "files": files,
            "tags": tags,
        });
        if r.dataset_type == "3d" {
            body["dataset_format"] = json!("default");
        }
        if let Some(p) = &r.labelling_profile_id {
            body["labelling_profile_id"] = json!(p);
        }
        let found = || async {
            Ok(match self.find_by_name(&r.name, "upload").await? {
                Some(id) => {
                    let d = self.get_json(&["datasets", &id], "upload").await?;
                    Some((id, d))
                }
                None => None,
            })
        };
        if let Some(existing) = found().await? {
            return Ok(existing);
        }
        let send = || async {
            let resp = self
                .post(
                    &["clients", &self.cfg.project, "datasets"],
                    &body,
                    RequestKind::Create,
                    "upload",
                )
                .await?;
            let d: Value = resp.json(VENDOR, "upload")?;
            let id = super::batch_info(d.clone(), None)?.id;
            Ok((id, d))
        };
        resend::create_once(&self.retry(), "create dataset", send, found).await
    }

    /// PUTs the zip to the upload URL: no bearer token, the body streamed from disk. Retried: a PUT of the same
    /// object replaces it.
    async fn put_zip(&self, url: &Url, path: &Path, size: u64) -> Result<()> {
        let request = || {
            self.http
                .raw()
                .put(url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/zip")
                .header(reqwest::header::CONTENT_LENGTH, size)
                .body(file_body(path.to_path_buf()))
        };
        let refused = |status: u16, body: &[u8]| {
            let (code, msg) = super::parse_error(status, body);
            let kind = if status == 400 {
                ErrorKind::InvalidInput
            } else {
                ErrorKind::Vendor
            };
            let mut e = Error::new(
                kind,
                msg.unwrap_or_else(|| format!("PUT {} answered HTTP {status}", redact_url(url))),
            )
            .vendor(VENDOR)
            .operation("upload");
            e.status = Some(status);
            e.code = code;
            e
        };
        resend::put_signed(&self.http, &self.retry(), VENDOR, url, request, refused).await
    }

    /// Asks Deepen to unpack the archive. After an ambiguous failure, the dataset says whether it was
    /// processed (`DatasetView::processed`); only if not is the call sent again.
    async fn process(&self, dataset_id: &str, file_name: &str) -> Result<()> {
        let body = json!({ "file_name": file_name });
        let send = || async {
            self.post(
                &["datasets", dataset_id, "process_uploaded_data"],
                &body,
                RequestKind::Create,
                "upload",
            )
            .await
            .map(|_| ())
        };
        let found = || async {
            let d = self.get_json(&["datasets", dataset_id], "upload").await?;
            Ok(DatasetView::of(&d).processed(file_name).then_some(()))
        };
        resend::create_once(&self.retry(), "process uploaded data", send, found).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8").unwrap(), b"hello");
        assert_eq!(decode_base64("/9j/").unwrap(), vec![0xff, 0xd8, 0xff]);
        assert!(decode_base64("a").is_none());
        assert!(decode_base64("a*bc").is_none());
    }

    #[test]
    fn entries_need_a_file_and_a_safe_name() {
        let rec = |key: &str, data: Value| UploadRecord {
            key: key.into(),
            data: data.as_object().unwrap().clone(),
        };
        let e = entry_of(
            &rec(
                "sha256-abc",
                json!({"name": "x.png", "file": {"base64": "AAEC"}}),
            ),
            0,
        )
        .unwrap();
        assert_eq!(e.name, "x.png");
        let e = entry_of(
            &rec(
                "k1.png",
                json!({"name": "x.png", "file": {"base64": "AAEC"}}),
            ),
            0,
        )
        .unwrap();
        assert_eq!(e.name, "k1.png");
        for (key, data) in [
            ("a.png", json!({})),
            ("a.png", json!({"file": 3})),
            ("a.png", json!({"file": "/definitely/not/here.png"})),
            ("../a.png", json!({"file": {"base64": "AA=="}})),
            ("/a.png", json!({"file": {"base64": "AA=="}})),
        ] {
            let err = entry_of(&rec(key, data), 4).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidInput, "{err}");
            assert!(err.message.starts_with("record #4"), "{err}");
        }
    }

    #[test]
    fn the_same_entries_pack_to_the_same_size() {
        let dir = std::env::temp_dir();
        let entries: Vec<Arc<Entry>> = (0..3)
            .map(|i| {
                Arc::new(Entry {
                    name: format!("f{i}.jpg"),
                    source: Source::Bytes(vec![i as u8; 10 + i]),
                })
            })
            .collect();
        let (a, b) = (
            TempZip(dir.join(format!("lp-test-{}.zip", uuid::Uuid::new_v4()))),
            TempZip(dir.join(format!("lp-test-{}.zip", uuid::Uuid::new_v4()))),
        );
        let size = write_zip(&a.0, &entries).unwrap();
        assert_eq!(write_zip(&b.0, &entries).unwrap(), size);
        assert_eq!(std::fs::read(&a.0).unwrap(), std::fs::read(&b.0).unwrap());
    }

    #[test]
    fn open_archives_are_the_declared_ones_not_unpacked() {
        let url = |n: u32| format!("http://h/u?uploadType=resumable&name=c/d/d_{n}.zip");
        let d = DatasetView::of(&json!({
            "files": [{"file_size": 10.0, "resumable_upload_url": url(0)},
                      {"file_size": 12, "resumable_upload_url": url(1)},
                      {"file_size": 12}],
            "uploaded_files": ["d_0.zip"],
        }));
        let open = open_archives(&d);
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].0, 12);
        assert_eq!(archive_name(&open[0].1).as_deref(), Some("d_1.zip"));
    }
}
