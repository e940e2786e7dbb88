//! Each vendor's ledger (docs/vendors/<vendor>.md), built in: `labelport check` probes a live account
//! for the facts it lists (python/labelport/_check.py), and tests/test_ledgers.py holds the adapters to it.

/// The ledger of `vendor`, as written in docs/vendors/.
pub fn ledger(vendor: &str) -> Option<&'static str> {
    Some(match vendor {
        "alegion" => include_str!("../../docs/vendors/alegion.md"),
        "deepen" => include_str!("../../docs/vendors/deepen.md"),
        "playment" => include_str!("../../docs/vendors/playment.md"),
        "sama" => include_str!("../../docs/vendors/sama.md"),
        "taskmonk" => include_str!("../../docs/vendors/taskmonk.md"),
        _ => return None,
    })
}
