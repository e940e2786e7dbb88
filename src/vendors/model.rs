//! The neutral model every vendor adapter speaks: batches, records, jobs, statuses and the result envelope.

use serde::Serialize;
use serde_json::value::RawValue;

/// Neutral record statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pending,
    InProgress,
    Completed,
    Exception,
    Canceled,
    Rejected,
    Failed,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Pending,
        Status::InProgress,
        Status::Completed,
        Status::Exception,
        Status::Canceled,
        Status::Rejected,
        Status::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::InProgress => "in_progress",
            Status::Completed => "completed",
            Status::Exception => "exception",
            Status::Canceled => "canceled",
            Status::Rejected => "rejected",
            Status::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// A record in this status needs no more work.
    /// A rejected record is not final: it went back for rework and is delivered again (docs/contract.md).
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            Status::Pending | Status::InProgress | Status::Rejected
        )
    }
}

/// A batch as the vendor describes it.
#[derive(Debug, Clone)]
pub struct BatchInfo {
    pub id: String,
    pub name: Option<String>,
    pub created_at: Option<String>,
    /// The vendor's own object.
    pub raw: serde_json::Value,
}

/// One record to upload: its key (always a string on the wire) and its fields.
#[derive(Debug, Clone)]
pub struct UploadRecord {
    pub key: String,
    pub data: serde_json::Map<String, serde_json::Value>,
}

/// A record the vendor refused.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub key: String,
    pub field: Option<String>,
    pub code: Option<String>,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobPhase {
    Running,
    Completed,
    Failed,
}

/// One upload and what the vendor did with it.
#[derive(Debug, Clone, Serialize)]
pub struct JobState {
    pub id: String,
    pub batch_id: String,
    pub state: JobPhase,
    pub total: u64,
    /// Records the vendor holds now (sent by this job or already present).
    pub done: u64,
    pub failed: u64,
    /// Records skipped because the batch already held their key.
    pub skipped: u64,
    #[serde(skip)]
    pub failures: Vec<Failure>,
    /// The vendor's own job id where it has one.
    #[serde(skip)]
    pub vendor_job: Option<String>,
}

/// Record counts of a batch, from the vendor.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BatchCounts {
    pub total: u64,
    pub pending: u64,
    pub in_progress: u64,
    pub completed: u64,
    pub exception: u64,
    pub canceled: u64,
    pub rejected: u64,
    pub failed: u64,
}

impl BatchCounts {
    /// Records in a final state; a rejected one is not (it is being reworked).
    pub fn finished(&self) -> u64 {
        self.completed + self.exception + self.canceled + self.failed
    }

    /// Counts one record (or task) in `status`.
    pub fn count(&mut self, status: Status) {
        self.total += 1;
        *match status {
            Status::Pending => &mut self.pending,
            Status::InProgress => &mut self.in_progress,
            Status::Completed => &mut self.completed,
            Status::Exception => &mut self.exception,
            Status::Canceled => &mut self.canceled,
            Status::Rejected => &mut self.rejected,
            Status::Failed => &mut self.failed,
        } += 1;
    }

    /// Every record is in a final state.
    pub fn done(&self) -> bool {
        self.finished() >= self.total
    }
}

/// A result (or a listed record) in the neutral envelope. `input`, `output` and `raw` stay as the vendor's JSON
/// text, so the Python layer builds objects straight from it with no intermediate tree.
#[derive(Debug, Serialize)]
pub struct Envelope {
    pub id: String,
    pub batch_id: String,
    pub key: String,
    pub status: Status,
    pub input: Option<Box<RawValue>>,
    pub output: Option<Box<RawValue>>,
    pub created_at: Option<String>,
    pub completed_at: Option<String>,
    pub vendor: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<Box<RawValue>>,
    /// `completed_at` as microseconds since the epoch, for `since` filters and watermarks.
    #[serde(skip)]
    pub completed_us: Option<i64>,
}

impl Envelope {
    /// Appends the envelope as a JSON object to `out`: byte for byte what `serde_json::to_writer` writes for it
    /// (the same keys in the same order, `raw` only when present, strings escaped alike), without serde's
    /// per-character escaping for the strings that need none. Every page of results is written this way on the
    /// runtime's threads (`src/py/envelope_pages.rs`), and `to_jsonl` writes these bytes.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"id\":");
        json_str(out, &self.id);
        out.extend_from_slice(b",\"batch_id\":");
        json_str(out, &self.batch_id);
        out.extend_from_slice(b",\"key\":");
        json_str(out, &self.key);
        out.extend_from_slice(b",\"status\":");
        json_str(out, self.status.as_str());
        out.extend_from_slice(b",\"input\":");
        json_raw(out, self.input.as_deref());
        out.extend_from_slice(b",\"output\":");
        json_raw(out, self.output.as_deref());
        out.extend_from_slice(b",\"created_at\":");
        json_opt_str(out, self.created_at.as_deref());
        out.extend_from_slice(b",\"completed_at\":");
        json_opt_str(out, self.completed_at.as_deref());
        out.extend_from_slice(b",\"vendor\":");
        json_str(out, self.vendor);
        if let Some(raw) = &self.raw {
            out.extend_from_slice(b",\"raw\":");
            out.extend_from_slice(raw.get().as_bytes());
        }
        out.push(b'}');
    }
}

/// Whether `s` goes into JSON as it is: no quote, backslash or control character to escape.
fn needs_no_escape(s: &str) -> bool {
    s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\')
}

/// `s` as a JSON string at the end of `out`, as `json_str` writes it.
pub fn push_json_str(out: &mut String, s: &str) {
    if needs_no_escape(s) {
        out.reserve(s.len() + 2);
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(s).expect("a string always serializes"));
    }
}

/// A JSON string: copied as it is when nothing in it needs escaping (no quote, backslash or control character),
/// else escaped by serde_json.
fn json_str(out: &mut Vec<u8>, s: &str) {
    if needs_no_escape(s) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, s).expect("a string always serializes");
    }
}

fn json_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => json_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

fn json_raw(out: &mut Vec<u8>, raw: Option<&RawValue>) {
    out.extend_from_slice(raw.map_or("null", RawValue::get).as_bytes());
}

/// Microseconds since the epoch of an RFC 3339 timestamp.
pub fn parse_rfc3339_us(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.timestamp_micros())
}

/// RFC 3339 (UTC, `Z`, microseconds only when needed) of microseconds since the epoch.
pub fn format_rfc3339_us(us: i64) -> String {
    let dt = chrono::DateTime::from_timestamp_micros(us).unwrap_or_default();
    if us % 1000 == 0 {
        dt.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    } else {
        dt.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_json_is_what_serde_writes() {
        let raw = |s: &str| Some(RawValue::from_string(s.to_string()).unwrap());
        let tricky = [
            "plain",
            "",
            "quote \" and backslash \\",
            "control \u{0}\u{1f}\n\t\r\u{8}\u{c}",
            "del \u{7f} slash / é ✓ 😀",
            "\u{2028}\u{2029}",
        ];
        for s in tricky {
            for (raw_field, created) in [(None, None), (raw(r#"{"a":[1,2.5,"x\u00e9"]}"#), Some(s))]
            {
                let e = Envelope {
                    id: s.to_string(),
                    batch_id: format!("b{s}"),
                    key: s.to_string(),
                    status: Status::InProgress,
                    input: raw(r#"{"k": "v" }"#),
                    output: None,
                    created_at: created.map(str::to_string),
                    completed_at: Some("2026-01-01T00:00:00Z".into()),
                    vendor: "alegion",
                    raw: raw_field,
                    completed_us: Some(1),
                };
                let mut mine = Vec::new();
                e.write_json(&mut mine);
                assert_eq!(
                    String::from_utf8(mine).unwrap(),
                    serde_json::to_string(&e).unwrap()
                );
            }
        }
    }

    #[test]
    fn timestamps_round_trip() {
        let us = parse_rfc3339_us("2019-11-14T21:02:36.491Z").unwrap();
        assert_eq!(format_rfc3339_us(us), "2019-11-14T21:02:36.491Z");
        assert_eq!(parse_rfc3339_us("2019-11-14T22:02:36.491+01:00"), Some(us));
        assert_eq!(parse_rfc3339_us("yesterday"), None);
    }

    #[test]
    fn statuses() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert!(!Status::Pending.is_final() && Status::Canceled.is_final());
        assert!(!Status::Rejected.is_final());
    }

    #[test]
    fn doneness() {
        let mut c = BatchCounts {
            total: 10,
            completed: 7,
            exception: 2,
            ..Default::default()
        };
        assert!(!c.done());
        c.rejected = 1;
        assert!(!c.done(), "a rejected record is being reworked");
        c.rejected = 0;
        c.canceled = 1;
        assert!(c.done());
    }
}
