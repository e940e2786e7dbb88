//! TaskMonk's output-file reader (CSV in UTF-8 or latin-1, or an .xlsx zip) and the envelopes built from its
//! rows, on arbitrary bytes: an error or a table, never a panic; one envelope per row.
#![no_main]

use labelport::vendors::taskmonk::{envelopes, parse_file};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(table) = parse_file(data) else {
        return;
    };
    let outputs = vec!["label".to_string(), "Status".to_string()];
    for (completed_only, raw) in [(false, true), (true, false)] {
        let envs = envelopes(
            &table,
            "b1",
            "image_id",
            Some(&outputs),
            completed_only,
            raw,
        );
        assert_eq!(envs.len(), table.rows.len());
    }
    let envs = envelopes(&table, "b1", "", None, false, false);
    assert_eq!(envs.len(), table.rows.len());
});
