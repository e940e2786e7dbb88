//! Sama's creation-schema check (run on every record before upload) on arbitrary JSON: the input is two
//! JSON documents separated by a NUL byte, a schema and a record. Never panics, never loops.
#![no_main]

use labelport::vendors::sama::check_schema;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(2, |&b| b == 0);
    let (Some(a), Some(b)) = (parts.next(), parts.next()) else {
        return;
    };
    let (Ok(schema), Ok(record)) = (
        serde_json::from_slice::<Value>(a),
        serde_json::from_slice::<Value>(b),
    ) else {
        return;
    };
    let mut problems = Vec::new();
    check_schema(&schema, &record, "", &mut problems);
    for (path, message) in &problems {
        assert!(!message.is_empty(), "an empty message at {path:?}");
    }
});
