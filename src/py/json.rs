//! JSON into Python straight from the text (no `serde_json::Value` tree in between), and Python records into
//! JSON values with errors that name the field at fault. Both directions stop at `MAX_JSON_DEPTH`: they
//! recurse once per level, on threads whose stacks are small (the runtime's), so a value nested without end
//! would overflow the stack instead of failing.

use std::cell::Cell;
use std::fmt;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::errors::to_py_err;
use crate::engine::{Error, ErrorKind};

/// How deep lists and dicts may nest in what labelport sends (a record, an option, a request body) and reads
/// (a vendor's JSON): a record is level 1, a list in it level 2, and so on. Exported as
/// `labelport.MAX_JSON_DEPTH`.
pub const MAX_JSON_DEPTH: usize = 128;

/// Why JSON text did not become a Python object.
pub enum JsonToPyError {
    /// Not JSON (serde's message).
    Invalid(serde_json::Error),
    /// Nested deeper than `MAX_JSON_DEPTH`.
    TooDeep,
    /// Python refused an object (out of memory).
    Python(PyErr),
}

impl From<JsonToPyError> for PyErr {
    /// JSON comes from a vendor: what it cannot be read as is a bad response.
    fn from(e: JsonToPyError) -> PyErr {
        let bad_response = |message: String| {
            to_py_err(Error::new(ErrorKind::Vendor, message).code("bad_response"))
        };
        match e {
            JsonToPyError::Invalid(e) => bad_response(format!("invalid JSON from the vendor: {e}")),
            JsonToPyError::TooDeep => bad_response(format!(
                "the vendor sent JSON nested deeper than {MAX_JSON_DEPTH} levels of lists and objects \
                 (labelport.MAX_JSON_DEPTH): labelport does not read it"
            )),
            JsonToPyError::Python(e) => e,
        }
    }
}

/// Builds a Python object from JSON text; a failure is a `VendorError` (`bad_response`).
pub fn json_to_py<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    Ok(decode_json(py, text)?)
}

/// Builds a Python object from JSON text, saying why not.
pub fn decode_json<'py>(py: Python<'py>, text: &str) -> Result<Bound<'py, PyAny>, JsonToPyError> {
    let text = negative_zero_as_zero(text);
    let stop = Cell::new(None);
    let mut de = serde_json::Deserializer::from_str(&text);
    // Our own limit instead of serde_json's (127): the seed counts levels and stops at MAX_JSON_DEPTH.
    de.disable_recursion_limit();
    let seed = PySeed {
        py,
        depth: 0,
        stop: &stop,
    };
    seed.deserialize(&mut de)
        .map_err(|e| stop.take().unwrap_or(JsonToPyError::Invalid(e)))
}

/// One envelope, written as a JSON object, as a dict: each of its values decoded as `decode_json` decodes a
/// value of its own (so `input` is level 1 of `MAX_JSON_DEPTH`, as when each value was decoded apart).
pub fn decode_envelope<'py>(
    py: Python<'py>,
    text: &str,
) -> Result<Bound<'py, PyDict>, JsonToPyError> {
    let text = negative_zero_as_zero(text);
    let stop = Cell::new(None);
    let mut de = serde_json::Deserializer::from_str(&text);
    de.disable_recursion_limit();
    let seed = EnvelopeSeed(PySeed {
        py,
        depth: 0,
        stop: &stop,
    });
    seed.deserialize(&mut de)
        .map_err(|e| stop.take().unwrap_or(JsonToPyError::Invalid(e)))
}

/// The text with every integer `-0` written `0`: serde_json reads `-0` as the float -0.0, Python's `json` module
/// (and orjson, and docs/contract.md: "each integer up to 64 bits the same int") as the int 0. `-0.0` and `-0e1`
/// stay floats. Borrowed, with no copy, when the text has no `-0` at all (the usual case).
fn negative_zero_as_zero(text: &str) -> std::borrow::Cow<'_, str> {
    let bytes = text.as_bytes();
    if !bytes.windows(2).any(|w| w == b"-0") {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let (mut i, mut copied) = (0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'-' if bytes.get(i + 1) == Some(&b'0')
                && !matches!(bytes.get(i + 2), Some(b'.' | b'e' | b'E' | b'0'..=b'9')) =>
            {
                out.push_str(&text[copied..i]);
                copied = i + 1; // drop the sign
            }
            _ => {}
        }
        i += 1;
    }
    if copied == 0 {
        return std::borrow::Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    std::borrow::Cow::Owned(out)
}

/// An object whose values are each a value of its own (depth 0): an envelope.
struct EnvelopeSeed<'a, 'py>(PySeed<'a, 'py>);

impl<'de, 'a, 'py> DeserializeSeed<'de> for EnvelopeSeed<'a, 'py> {
    type Value = Bound<'py, PyDict>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, 'a, 'py> Visitor<'de> for EnvelopeSeed<'a, 'py> {
    type Value = Bound<'py, PyDict>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an envelope (a JSON object)")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let seed = self.0;
        let dict = PyDict::new(seed.py);
        while let Some(key) = map.next_key_seed(KeySeed { py: seed.py })? {
            let value = map.next_value_seed(seed)?;
            dict.set_item(key, value).map_err(|e| seed.fail(e))?;
        }
        Ok(dict)
    }
}

/// How deep lists and objects nest in a JSON value (0 for a scalar), counting only as far as `cap`: the value is
/// within `MAX_JSON_DEPTH` when this is at most that. Cheap when it is: a value with no more opening brackets
/// than `cap` cannot nest deeper, and only a value with more is walked (strings skipped).
pub fn nesting_at_most(text: &str, cap: usize) -> bool {
    let bytes = text.as_bytes();
    if bytes.iter().filter(|&&b| b == b'{' || b == b'[').count() <= cap {
        return true;
    }
    let (mut depth, mut i) = (0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > cap {
                    return false;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    true
}

/// A `serde_json::Value` as a Python object (for small values: capabilities, error details).
pub fn json_value_to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    json_to_py(py, &v.to_string())
}

#[derive(Clone, Copy)]
struct PySeed<'a, 'py> {
    py: Python<'py>,
    /// Lists and objects enclosing the value this seed reads.
    depth: usize,
    /// Set when the seed itself stops the decoding, so the caller can tell it from a syntax error.
    stop: &'a Cell<Option<JsonToPyError>>,
}

impl<'a, 'py> PySeed<'a, 'py> {
    /// The seed for the items of a list or object this seed opens, unless that is one level too many.
    fn enter<E: de::Error>(self) -> Result<Self, E> {
        if self.depth >= MAX_JSON_DEPTH {
            self.stop.set(Some(JsonToPyError::TooDeep));
            return Err(E::custom("nested too deep"));
        }
        Ok(PySeed {
            depth: self.depth + 1,
            ..self
        })
    }

    fn fail<E: de::Error>(self, e: PyErr) -> E {
        self.stop.set(Some(JsonToPyError::Python(e)));
        E::custom("a Python error")
    }
}

impl<'de, 'a, 'py> DeserializeSeed<'de> for PySeed<'a, 'py> {
    type Value = Bound<'py, PyAny>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, 'a, 'py> Visitor<'de> for PySeed<'a, 'py> {
    type Value = Bound<'py, PyAny>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(PyBool::new(self.py, v).to_owned().into_any())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        let Ok(i) = v.into_pyobject(self.py);
        Ok(i.into_any())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        let Ok(i) = v.into_pyobject(self.py);
        Ok(i.into_any())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(PyFloat::new(self.py, v).into_any())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(PyString::new(self.py, v).into_any())
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(self.py.None().into_bound(self.py))
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.visit_unit()
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let inner = self.enter()?;
        let list = PyList::empty(self.py);
        while let Some(item) = seq.next_element_seed(inner)? {
            list.append(item).map_err(|e| self.fail(e))?;
        }
        Ok(list.into_any())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let inner = self.enter()?;
        let dict = PyDict::new(self.py);
        while let Some(key) = map.next_key_seed(KeySeed { py: self.py })? {
            let value = map.next_value_seed(inner)?;
            dict.set_item(key, value).map_err(|e| self.fail(e))?;
        }
        Ok(dict.into_any())
    }
}

struct KeySeed<'py> {
    py: Python<'py>,
}

impl<'de, 'py> DeserializeSeed<'de> for KeySeed<'py> {
    type Value = Bound<'py, PyString>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, 'py> Visitor<'de> for KeySeed<'py> {
    type Value = Bound<'py, PyString>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(cached_key(self.py, v))
    }
}

/// Slots of the key cache: results repeat the same few dozen keys on every record.
const KEY_CACHE_SLOTS: usize = 1024;
/// Longer keys are rare and not worth caching.
const KEY_CACHE_MAX_LEN: usize = 64;

/// One slot of the key cache: the key's text and its interned Python string.
type KeySlot = Option<(Box<str>, Py<PyString>)>;

thread_local! {
    /// Recently seen object keys as interned Python strings, per thread (no lock on the hot path), in the
    /// manner of orjson: a hash-indexed table where a new key simply replaces the slot's old one.
    static KEY_CACHE: std::cell::RefCell<Vec<KeySlot>> =
        std::cell::RefCell::new((0..KEY_CACHE_SLOTS).map(|_| None).collect());
}

fn slot_of(key: &str) -> usize {
    // FNV-1a: cheap and good enough for short keys.
    let mut h: u32 = 0x811c_9dc5;
    for b in key.bytes() {
        h = (h ^ b as u32).wrapping_mul(0x0100_0193);
    }
    h as usize % KEY_CACHE_SLOTS
}

/// The key as a Python string, from the cache when it was seen recently.
fn cached_key<'py>(py: Python<'py>, key: &str) -> Bound<'py, PyString> {
    if key.len() > KEY_CACHE_MAX_LEN {
        return PyString::new(py, key);
    }
    let slot = slot_of(key);
    KEY_CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some((k, v)) = &cache[slot] {
            if &**k == key {
                return v.bind(py).clone();
            }
        }
        let fresh = PyString::intern(py, key);
        cache[slot] = Some((key.into(), fresh.clone().unbind()));
        fresh
    })
}

/// Why a Python value cannot be sent as JSON: the dotted path of the field, and what is wrong.
#[derive(Debug)]
pub struct ToJsonError {
    pub path: String,
    pub message: String,
}

fn join(path: &str, part: &str) -> String {
    if path.is_empty() {
        part.to_string()
    } else {
        format!("{path}.{part}")
    }
}

/// A Python value as JSON. Refuses what JSON cannot hold faithfully (NaN, infinities, non-string keys, objects
/// of other types, nesting deeper than `MAX_JSON_DEPTH`) instead of guessing.
pub fn py_to_json(obj: &Bound<'_, PyAny>, path: &str) -> Result<Value, ToJsonError> {
    value_to_json(obj, path, 0)
}

/// A Python dict (a record) as a JSON object; keys must be strings. The dict is level 1 of `MAX_JSON_DEPTH`.
pub fn dict_to_json(d: &Bound<'_, PyDict>, path: &str) -> Result<Map<String, Value>, ToJsonError> {
    object_to_json(d, path, 1)
}

/// Refuses a list or dict at `level` beyond `MAX_JSON_DEPTH`, before reading into it.
fn check_level(level: usize, path: &str) -> Result<(), ToJsonError> {
    if level <= MAX_JSON_DEPTH {
        return Ok(());
    }
    Err(ToJsonError {
        path: path.to_string(),
        message: format!(
            "lists and dicts nested deeper than {MAX_JSON_DEPTH} levels (labelport.MAX_JSON_DEPTH) cannot be sent"
        ),
    })
}

/// `obj` (inside `depth` lists and dicts) as JSON.
fn value_to_json(obj: &Bound<'_, PyAny>, path: &str, depth: usize) -> Result<Value, ToJsonError> {
    let fail = |message: String| ToJsonError {
        path: path.to_string(),
        message,
    };
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return s
            .to_str()
            .map(|s| Value::String(s.to_string()))
            .map_err(|_| fail("a string that is not valid UTF-8 (lone surrogates)".into()));
    }
    if obj.cast::<PyInt>().is_ok() {
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(Value::Number(i.into()));
        }
        if let Ok(u) = obj.extract::<u64>() {
            return Ok(Value::Number(u.into()));
        }
        return Err(fail(
            "an integer too large for JSON (beyond 64 bits)".into(),
        ));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        let v = f.value();
        return Number::from_f64(v).map(Value::Number).ok_or_else(|| {
            fail(format!(
                "{v} has no JSON form (NaN and infinities cannot be sent)"
            ))
        });
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        return object_to_json(d, path, depth + 1).map(Value::Object);
    }
    if obj.cast::<PyList>().is_ok() || obj.cast::<PyTuple>().is_ok() {
        let level = depth + 1;
        check_level(level, path)?;
        let mut out = Vec::new();
        for (i, item) in obj.try_iter().map_err(|e| fail(e.to_string()))?.enumerate() {
            let item = item.map_err(|e| fail(e.to_string()))?;
            out.push(value_to_json(&item, &format!("{path}[{i}]"), level)?);
        }
        return Ok(Value::Array(out));
    }
    let type_name = obj
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into());
    Err(fail(format!("a value of type {type_name} cannot be sent as JSON; convert it to str, int, float, bool, None, list or dict first")))
}

/// A dict at `level` as a JSON object; keys must be strings.
fn object_to_json(
    d: &Bound<'_, PyDict>,
    path: &str,
    level: usize,
) -> Result<Map<String, Value>, ToJsonError> {
    check_level(level, path)?;
    let mut map = Map::with_capacity(d.len());
    for (k, v) in d.iter() {
        let key = match k.cast::<PyString>() {
            Ok(s) => s
                .to_str()
                .map_err(|_| ToJsonError {
                    path: path.to_string(),
                    message: "a key that is not valid UTF-8".into(),
                })?
                .to_string(),
            Err(_) => {
                let shown = k.repr().map(|r| r.to_string()).unwrap_or_default();
                return Err(ToJsonError {
                    path: path.to_string(),
                    message: format!(
                        "key {shown} is not a string; JSON objects only have string keys"
                    ),
                });
            }
        };
        let child = join(path, &key);
        let value = value_to_json(&v, &child, level)?;
        map.insert(key, value);
    }
    Ok(map)
}

/// Pauses Python's cyclic garbage collector while many objects that can hold no cycle are built and kept
/// (a page of result dicts going into one list): each collection would walk every object kept so far, so a
/// 100,000-result `to_list` spent a third of its time in the collector. The collector's previous state comes
/// back when the guard drops; allocations made meanwhile are collected by its next ordinary run.
pub struct GcPause<'py> {
    was_enabled: bool,
    _gil: std::marker::PhantomData<Python<'py>>,
}

impl<'py> GcPause<'py> {
    pub fn new(_py: Python<'py>) -> Self {
        // SAFETY: the GIL is held (a `Python` token is in hand); PyGC_Disable is in the stable ABI since 3.10.
        let was_enabled = unsafe { pyo3::ffi::PyGC_Disable() } == 1;
        GcPause {
            was_enabled,
            _gil: std::marker::PhantomData,
        }
    }
}

impl Drop for GcPause<'_> {
    fn drop(&mut self) {
        if self.was_enabled {
            // SAFETY: still under the GIL of the `Python<'py>` this guard was made with.
            unsafe {
                pyo3::ffi::PyGC_Enable();
            }
        }
    }
}
