//! Sama tasks as labelport's records and results: the key and input of a task, a delivered task's
//! completion time (read under each plausible name, or the read's own date: docs/vendors/sama.md finding 2).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::json;
use serde_json::value::RawValue;

use super::wire::{
    decode_tasks, decode_typed_tasks, neutral_status, raw_text_of, to_raw, RawObject, TaskDto,
};
use super::{DEFAULT_KEY_FIELD, UNDATED_READS, VENDOR};
use crate::engine::http::Response;
use crate::engine::Result;
use crate::vendors::model::{Envelope, Status};

/// Per neutral batch, the starts of its last results reads and the ids each returned without a delivery time.
pub(super) type UndatedReads = HashMap<String, Vec<(i64, HashSet<String>)>>;

/// Dates the undated tasks of one results read: by the server's `Date` on the read's first answer (whole
/// seconds, at or before the read reached the server), remembering their ids for the next read since then.
pub(super) struct Undated {
    pub memo: Arc<Mutex<UndatedReads>>,
    pub batch: String,
    pub start: Arc<Mutex<Option<i64>>>,
}

impl Undated {
    /// The read's start in microseconds, noting `id` as returned undated by the read that started then.
    fn date(&self, resp: &Response, id: &str) -> i64 {
        let answered = resp
            .header("date")
            .and_then(|d| chrono::DateTime::parse_from_rfc2822(d.trim()).ok())
            .map_or_else(
                || chrono::Utc::now().timestamp_micros(),
                |d| d.timestamp_micros(),
            );
        let start = {
            let mut start = self.start.lock();
            let earliest = start.map_or(answered, |s| s.min(answered));
            *start = Some(earliest);
            earliest
        };
        let mut memo = self.memo.lock();
        let reads = memo.entry(self.batch.clone()).or_default();
        let at = match reads.iter().position(|(at, _)| *at == start) {
            Some(i) => i,
            None => {
                if reads.len() >= UNDATED_READS {
                    reads.remove(0);
                }
                reads.push((start, HashSet::new()));
                reads.len() - 1
            }
        };
        reads[at].1.insert(id.to_string());
        start
    }
}

/// Per neutral batch, the tasks this client sent back with `reject()` and has not seen delivered again.
pub(super) type SentBack = Arc<Mutex<HashMap<String, HashSet<String>>>>;

/// What decoders running off the adapter need to turn tasks into envelopes.
#[derive(Clone)]
pub(super) struct SamaView {
    pub client_batch_field: String,
    pub key_field: String,
    pub sent_back: SentBack,
}

impl SamaView {
    /// A listed task's neutral status. Sama's `rejected` is `rejected`; a task this client rejected reads
    /// `rejected` until it is delivered again, whatever word Sama gives its rework meanwhile (`in progress`
    /// once a labeller takes it up: none of Sama's pages says), and is forgotten once delivered.
    pub(super) fn status_of(&self, batch_id: &str, id: &str, state: Option<&str>) -> Status {
        let status = neutral_status(state.unwrap_or("new"));
        let mut sent_back = self.sent_back.lock();
        let Some(ids) = sent_back.get_mut(batch_id) else {
            return status;
        };
        if status == Status::Completed {
            ids.remove(id);
            return status;
        }
        if ids.contains(id) {
            Status::Rejected
        } else {
            status
        }
    }

    /// Notes tasks this client sent back.
    pub(super) fn sent_back(&self, batch_id: &str, ids: impl IntoIterator<Item = String>) {
        self.sent_back
            .lock()
            .entry(batch_id.to_string())
            .or_default()
            .extend(ids);
    }

    /// The record key of a task: its key input, else the task id.
    pub(super) fn key_of(&self, id: &str, data: &RawObject) -> String {
        data.get(&self.key_field)
            .and_then(raw_text_of)
            .unwrap_or_else(|| id.to_string())
    }

    /// The record as uploaded: the inputs the client added (client batch id, default key input) removed.
    pub(super) fn input_of(&self, data: &RawObject) -> Result<Box<RawValue>> {
        if self.key_field == DEFAULT_KEY_FIELD {
            data.without(&[&self.client_batch_field, DEFAULT_KEY_FIELD])
        } else {
            data.without(&[&self.client_batch_field])
        }
    }

    /// Delivered tasks as results. A task without a delivery time is dated by `undated`'s read start, when
    /// given.
    pub(super) fn envelopes(
        &self,
        resp: &Response,
        batch_id: &str,
        include_raw: bool,
        undated: Option<&Undated>,
    ) -> Result<Vec<Envelope>> {
        // The tasks' own text is kept only for `raw`; without it, one pass reads the page.
        let items: Vec<(TaskDto, Option<Box<RawValue>>)> = if include_raw {
            decode_tasks(resp, "results")?
                .into_iter()
                .map(|(t, raw)| (t, Some(raw)))
                .collect()
        } else {
            decode_typed_tasks(resp, "results")?
                .into_iter()
                .map(|t| (t, None))
                .collect()
        };
        let mut out = Vec::with_capacity(items.len());
        for (t, raw) in items {
            let created_at = t.created_at_rfc3339();
            let (completed_at, completed_us) = match t.delivery_time() {
                Some((text, us)) => (Some(text.to_string()), Some(us)),
                None => (None, undated.map(|u| u.date(resp, &t.id))),
            };
            out.push(Envelope {
                key: self.key_of(&t.id, &t.data),
                input: Some(self.input_of(&t.data)?),
                output: Some(match t.answers {
                    Some(a) => a,
                    None => to_raw(&json!({}))?,
                }),
                created_at,
                id: t.id,
                batch_id: batch_id.to_string(),
                status: Status::Completed,
                completed_at,
                vendor: VENDOR,
                raw,
                completed_us,
            });
        }
        Ok(out)
    }

    pub(super) fn record(
        &self,
        mut t: TaskDto,
        raw: Box<RawValue>,
        batch_id: &str,
        status: Status,
        include_raw: bool,
    ) -> Result<Envelope> {
        // A delivered task's answers are its latest ones (the multi-task status read without
        // `omit_answers`), the delivered answers; `{}` when absent, as `envelopes` gives them.
        let output = match (status, t.answers.take()) {
            (Status::Completed, Some(a)) => Some(a),
            (Status::Completed, None) => Some(to_raw(&json!({}))?),
            _ => None,
        };
        Ok(Envelope {
            key: self.key_of(&t.id, &t.data),
            input: Some(self.input_of(&t.data)?),
            output,
            created_at: t.created_at_rfc3339(),
            completed_at: t.delivery_time().map(|(text, _)| text.to_string()),
            id: t.id,
            batch_id: batch_id.to_string(),
            status,
            vendor: VENDOR,
            raw: include_raw.then_some(raw),
            completed_us: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn inputs_added_by_the_client_are_removed() {
        let v = SamaView {
            client_batch_field: "client_batch_id".into(),
            key_field: DEFAULT_KEY_FIELD.into(),
            sent_back: SentBack::default(),
        };
        // Member order is kept, and a repeated member counts once, as the last one (as JSON parsers keep it).
        let data: RawObject = serde_json::from_str(
            r#"{"url": "x", "client_batch_id": "b", "labelport_key": "k1", "url": "u", "n": [1, {"a": null}]}"#,
        )
        .unwrap();
        let text =
            |r: Result<Box<RawValue>>| -> Value { serde_json::from_str(r.unwrap().get()).unwrap() };
        assert_eq!(
            text(v.input_of(&data)),
            json!({"url": "u", "n": [1, {"a": null}]})
        );
        assert_eq!(v.key_of("t", &data), "k1");
        let mine = SamaView {
            key_field: "url".into(),
            ..v
        };
        assert_eq!(
            text(mine.input_of(&data)),
            json!({"url": "u", "labelport_key": "k1", "n": [1, {"a": null}]})
        );
        assert_eq!(mine.key_of("t", &data), "u");
    }
}
