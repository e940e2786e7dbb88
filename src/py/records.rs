//! Python records into upload records: a list converted whole, anything else read in chunks, each keyed
//! (its key field, or a hash of its content) and checked for duplicate keys across the whole upload.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString};
use sha2::{Digest, Sha256};

use super::core::kwargs_to_options;
use super::errors::{invalid, to_py_err};
use super::json::dict_to_json;
use crate::engine::{Error, ErrorKind, Result};
use crate::vendors::config::VendorSpec;
use crate::vendors::{JobPhase, JobState, UploadOptions, UploadRecord};

/// Records sent per `adapter.upload` call when they come from a stream (a DataFrame, Arrow data, a file or an
/// iterator): each chunk is converted and checked before it is sent, and never more than one is held.
pub(super) const UPLOAD_CHUNK: usize = 50_000;

/// What `upload` was given, ready to send.
pub(super) enum UploadSource {
    /// A list or tuple of dicts: every record converted and checked before anything is sent.
    Whole(Vec<UploadRecord>),
    /// Anything else: chunks from `labelport._records`, converted and sent one after the other.
    Chunks(ChunkReader),
}

impl UploadSource {
    /// How many records there are, where known before reading them.
    pub(super) fn total(&self) -> Option<u64> {
        match self {
            UploadSource::Whole(r) => Some(r.len() as u64),
            UploadSource::Chunks(c) => c.total,
        }
    }
}

/// Pulls chunks of plain dicts from `labelport._records.chunks(...)` and converts each like a list upload,
/// with record numbers and the duplicate-key check running across chunks.
pub(super) struct ChunkReader {
    chunks: Py<PyAny>,
    rules: RecordRules,
    pub(super) total: Option<u64>,
    next_index: usize,
    seen: KeysSeen,
}

impl ChunkReader {
    /// The next chunk of converted records; `None` at the end.
    pub(super) fn next_chunk(&mut self, py: Python<'_>) -> PyResult<Option<Vec<UploadRecord>>> {
        let chunks = self.chunks.bind(py);
        let Some(chunk) = chunks.try_iter()?.next() else {
            return Ok(None);
        };
        let chunk = chunk?;
        let records = convert_records(
            &chunk.try_iter()?,
            &self.rules,
            self.next_index,
            &mut self.seen,
        )?;
        self.next_index += records.len();
        Ok(Some(records))
    }
}

/// How one vendor's records are keyed and carried.
pub(super) struct RecordRules {
    /// The field named by `key=`.
    pub key: Option<String>,
    /// Without `key=`, this field keys a record that has it (Deepen: `name`), before the content hash.
    pub default_key: Option<&'static str>,
    /// A field holding a file (Deepen: `file`): bytes travel as `{"base64": ...}`, paths as strings.
    pub file_field: Option<&'static str>,
}

impl RecordRules {
    pub(super) fn new(key: Option<&str>, spec: &VendorSpec) -> Self {
        RecordRules {
            key: key.map(str::to_string),
            default_key: spec.default_key,
            file_field: spec.file_field,
        }
    }
}

/// The record with its file field made JSON: bytes as base64, a path (`os.PathLike`) as its string.
fn with_file_field<'py>(dict: &Bound<'py, PyDict>, field: &str) -> PyResult<Bound<'py, PyDict>> {
    let Some(value) = dict.get_item(field)? else {
        return Ok(dict.clone());
    };
    let binary = value.cast::<PyBytes>().is_ok()
        || value.cast::<pyo3::types::PyByteArray>().is_ok()
        || value.cast::<pyo3::types::PyMemoryView>().is_ok();
    let converted = if binary {
        use base64::Engine as _;
        let bytes = dict.py().get_type::<PyBytes>().call1((&value,))?;
        let bytes = bytes.cast::<PyBytes>()?;
        let marker = PyDict::new(dict.py());
        marker.set_item(
            "base64",
            base64::engine::general_purpose::STANDARD.encode(bytes.as_bytes()),
        )?;
        marker.into_any()
    } else if value.hasattr("__fspath__")? {
        dict.py().import("os")?.call_method1("fspath", (&value,))?
    } else {
        return Ok(dict.clone());
    };
    let copy = dict.copy()?;
    copy.set_item(field, converted)?;
    Ok(copy)
}

/// Keys already seen in one upload (as 64-bit hashes, so a 10-million-record stream stays small), with the
/// number of the record that had each.
pub(super) struct KeysSeen {
    hasher: RandomState,
    first: HashMap<u64, usize>,
}

impl Default for KeysSeen {
    fn default() -> Self {
        KeysSeen {
            hasher: RandomState::new(),
            first: HashMap::new(),
        }
    }
}

/// One job state out of the parts of a chunked upload.
pub(super) fn merge_parts(parts: Vec<JobState>) -> JobState {
    let mut parts = parts.into_iter();
    let mut merged = parts.next().expect("an upload has at least one part");
    for p in parts {
        merged.total += p.total;
        merged.done += p.done;
        merged.failed += p.failed;
        merged.skipped += p.skipped;
        merged.failures.extend(p.failures);
        if p.state != JobPhase::Completed {
            merged.state = p.state;
        }
        merged.vendor_job = None;
    }
    merged
}

/// Checks the arguments of `upload`; a list or tuple is converted whole before anything is sent, anything else
/// is read in chunks.
pub(super) fn prepare_upload(
    records: &Bound<'_, PyAny>,
    spec: &VendorSpec,
    key: Option<&str>,
    on_error: &str,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<(UploadSource, UploadOptions)> {
    // `args::on_error` let only "raise" and "collect" through.
    let collect_errors = on_error == "collect";
    let options = kwargs_to_options(options)?;
    let source = if records.cast::<PyList>().is_ok()
        || records.cast::<pyo3::types::PyTuple>().is_ok()
        || records.cast::<PyDict>().is_ok()
    {
        UploadSource::Whole(collect_records(records, &RecordRules::new(key, spec))?)
    } else {
        let py = records.py();
        let chunks = py
            .import("labelport._records")?
            .call_method1("chunks", (records, UPLOAD_CHUNK))?;
        let total = chunks.getattr("total")?.extract::<Option<u64>>()?;
        UploadSource::Chunks(ChunkReader {
            chunks: chunks.unbind(),
            rules: RecordRules::new(key, spec),
            total,
            next_index: 0,
            seen: KeysSeen::default(),
        })
    };
    if source.total() == Some(0) {
        return Err(invalid("nothing to upload: records is empty", "records"));
    }
    Ok((
        source,
        UploadOptions {
            collect_errors,
            options,
        },
    ))
}

/// The record key: the `key` field's value, or a stable hash of the record's content.
fn record_key(
    index: usize,
    data: &serde_json::Map<String, serde_json::Value>,
    key: Option<&str>,
    default_key: Option<&str>,
) -> Result<String> {
    if key.is_none() {
        if let Some(serde_json::Value::String(s)) = default_key.and_then(|f| data.get(f)) {
            if !s.is_empty() {
                return Ok(s.clone());
            }
        }
    }
    match key {
        Some(field) => match data.get(field) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(serde_json::Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
            Some(serde_json::Value::String(_)) => {
                Err(Error::invalid(format!("record #{index} has an empty key")).field(field))
            }
            Some(other) => Err(Error::invalid(format!(
                "record #{index}: key field {field:?} must be a string or an integer, not {}",
                json_type(other)
            ))
            .field(field)),
            None => Err(Error::invalid(format!(
                "record #{index} has no key field {field:?}; its fields are {}",
                fields_of(data)
            ))
            .field(field)),
        },
        None => Ok(content_key(data)),
    }
}

/// A record's field names for a message: the first few, quoted, and how many more.
fn fields_of(data: &serde_json::Map<String, serde_json::Value>) -> String {
    const SHOWN: usize = 12;
    if data.is_empty() {
        return "none (an empty record)".to_string();
    }
    let mut names: Vec<String> = data.keys().take(SHOWN).map(|k| format!("{k:?}")).collect();
    if data.len() > SHOWN {
        names.push(format!("and {} more", data.len() - SHOWN));
    }
    names.join(", ")
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a bool",
        serde_json::Value::Number(_) => "a float",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "a dict",
    }
}

/// A stable hash of a record's content, independent of key order: re-running the same upload gives the same
/// keys, so nothing is sent twice.
fn content_key(data: &serde_json::Map<String, serde_json::Value>) -> String {
    fn canonical(v: &serde_json::Value, out: &mut Vec<u8>) {
        match v {
            serde_json::Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push(b'{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend(serde_json::to_vec(k).unwrap_or_default());
                    out.push(b':');
                    canonical(&m[k], out);
                }
                out.push(b'}');
            }
            serde_json::Value::Array(a) => {
                out.push(b'[');
                for (i, item) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    canonical(item, out);
                }
                out.push(b']');
            }
            other => out.extend(serde_json::to_vec(other).unwrap_or_default()),
        }
    }
    let mut bytes = Vec::new();
    canonical(&serde_json::Value::Object(data.clone()), &mut bytes);
    let digest = Sha256::digest(&bytes);
    format!("sha256-{}", hex::encode(&digest[..16]))
}

/// Converts and checks every record before anything is sent.
pub(super) fn collect_records(
    records: &Bound<'_, PyAny>,
    rules: &RecordRules,
) -> PyResult<Vec<UploadRecord>> {
    if records.cast::<PyDict>().is_ok() {
        return Err(invalid(
            "records must be an iterable of dicts; got a single dict (wrap it in a list)",
            "records",
        ));
    }
    if records.cast::<PyString>().is_ok() || records.cast::<PyBytes>().is_ok() {
        return Err(invalid(
            "records must be an iterable of dicts, not a string",
            "records",
        ));
    }
    let iter = records.try_iter().map_err(|_| {
        let t = records
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default();
        invalid(
            format!("records must be an iterable of dicts, not {t}"),
            "records",
        )
    })?;
    convert_records(&iter, rules, 0, &mut KeysSeen::default())
}

/// Converts and checks records, numbering them from `first`.
fn convert_records(
    iter: &Bound<'_, pyo3::types::PyIterator>,
    rules: &RecordRules,
    first: usize,
    seen: &mut KeysSeen,
) -> PyResult<Vec<UploadRecord>> {
    let mut out = Vec::new();
    for (index, item) in iter.clone().enumerate() {
        let index = first + index;
        let item = item?;
        let dict = item.cast::<PyDict>().map_err(|_| {
            let t = item
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default();
            invalid(format!("record #{index} is a {t}, not a dict"), "records")
        })?;
        let key = rules.key.as_deref();
        let converted;
        let dict = match rules.file_field {
            Some(field) => {
                converted = with_file_field(dict, field)?;
                &converted
            }
            None => dict,
        };
        let data = dict_to_json(dict, "").map_err(|e| {
            let mut err = Error::invalid(format!(
                "record #{index}: field {:?}: {}",
                e.path, e.message
            ))
            .field(e.path);
            if let Some(k) = key
                .and_then(|k| dict.get_item(k).ok().flatten())
                .and_then(|v| v.str().ok())
            {
                err = err.key(k.to_string());
            }
            to_py_err(err)
        })?;
        let k = record_key(index, &data, key, rules.default_key).map_err(to_py_err)?;
        if let Some(first) = seen.first.insert(seen.hasher.hash_one(&k), index) {
            let what = if key.is_some() {
                "the same key"
            } else {
                "the same content"
            };
            return Err(to_py_err(
                Error::new(ErrorKind::DuplicateRecord, format!("records #{first} and #{index} have {what}: a key must be unique within an upload"))
                    .key(k),
            ));
        }
        out.push(UploadRecord { key: k, data });
    }
    Ok(out)
}
