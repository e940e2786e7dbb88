//! Sama's wire forms (docs/vendors/sama.md has each fact's source): the error body, task states, the task
//! and creation-job objects as read (every name no source settles accepted in each plausible form), the
//! creation schema check, and the small text helpers the adapter's files share.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use super::VENDOR;
use crate::engine::http::{json_from_slice, Response};
use crate::engine::{Error, ErrorKind, Result};
use crate::vendors::model::{parse_rfc3339_us, Status};

/// `{"errors": [{"type": 401 | "InvalidInputSchema", "message": "..."}]}`.
pub(super) fn parse_error(_status: u16, body: &[u8]) -> (Option<String>, Option<String>) {
    #[derive(Deserialize)]
    struct Body {
        errors: Vec<Item>,
    }
    #[derive(Deserialize)]
    struct Item {
        #[serde(rename = "type")]
        kind: Option<Value>,
        message: Option<String>,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(b) if !b.errors.is_empty() => {
            let code = b.errors[0].kind.as_ref().map(|k| match k {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
            let messages: Vec<String> = b.errors.into_iter().filter_map(|e| e.message).collect();
            (code, (!messages.is_empty()).then(|| messages.join("; ")))
        }
        _ => (None, None),
    }
}

/// Sama's task states onto the neutral ones. A rejected task (sent back for rework, by `reject()` or by a
/// delivery callback's answer) reads `rejected` until Sama delivers it again: the SDK's `TaskStates.REJECTED`
/// and its `reject_task` ("Rejects a task to send it for rework").
pub fn neutral_status(state: &str) -> Status {
    match state {
        "new" => Status::Pending,
        "delivered" | "acknowledged" => Status::Completed,
        "rejected" => Status::Rejected,
        // "in progress", "completed" (awaiting review), "approved" (awaiting delivery)
        _ => Status::InProgress,
    }
}

/// A task as listed (multi-task status, delivered lists, one task). No source shows a delivery time on a
/// task (ledger finding 2): it is read under each plausible name, and may be missing.
#[derive(Deserialize)]
pub(super) struct TaskDto {
    pub id: String,
    pub state: Option<String>,
    #[serde(default)]
    pub data: RawObject,
    pub created_at: Option<String>,
    pub answers: Option<Box<RawValue>>,
    pub delivered_at: Option<String>,
    pub completion_date: Option<String>,
    pub delivery_date: Option<String>,
    pub completed_at: Option<String>,
    pub batch_id: Option<Value>,
}

impl TaskDto {
    /// When the task was delivered, as given and in microseconds, under the first name that holds a time.
    pub fn delivery_time(&self) -> Option<(&str, i64)> {
        [
            &self.delivered_at,
            &self.completion_date,
            &self.delivery_date,
            &self.completed_at,
        ]
        .into_iter()
        .flatten()
        .find_map(|t| parse_time_us(t).map(|us| (t.as_str(), us)))
    }

    /// `created_at` as RFC 3339 (Sama's examples write it without a zone, `20130715T04:45:57`: UTC); a form
    /// not understood is passed on as given.
    pub fn created_at_rfc3339(&self) -> Option<String> {
        let text = self.created_at.as_deref()?;
        Some(
            parse_time_us(text)
                .map(crate::vendors::model::format_rfc3339_us)
                .unwrap_or_else(|| text.to_string()),
        )
    }
}

/// A time as Sama may write it: RFC 3339, or its examples' zone-less forms (read as UTC).
pub(super) fn parse_time_us(text: &str) -> Option<i64> {
    let text = text.trim();
    parse_rfc3339_us(text).or_else(|| {
        [
            "%Y%m%dT%H:%M:%S",
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y-%m-%d %H:%M:%S%.f",
        ]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(text, f).ok())
        .map(|t| t.and_utc().timestamp_micros())
    })
}

#[derive(Deserialize)]
struct TasksPage {
    #[serde(default)]
    tasks: Vec<Box<RawValue>>,
}

#[derive(Deserialize)]
struct TypedTasksPage {
    #[serde(default)]
    tasks: Vec<TaskDto>,
}

/// A batch creation job's answer (`GET batches/{id}.json`). Sama documents what it holds (the job's status,
/// counts, the tasks with their creation status) but no field name (ledger finding 1): the state is read under
/// `state` or `status`, each count under the names below, and any of them may be missing.
#[derive(Debug, Clone, Default)]
pub(super) struct JobView {
    pub state: Option<String>,
    pub total: Option<u64>,
    pub created: Option<u64>,
    pub failed: Option<u64>,
    pub canceled: Option<u64>,
    pub tasks: Vec<Value>,
}

const JOB_STATE: &[&str] = &["state", "status"];
const JOB_TOTAL: &[&str] = &["tasks_count", "task_count", "total_count", "total_tasks"];
const JOB_CREATED: &[&str] = &["created_count", "created_tasks_count", "tasks_created"];
const JOB_FAILED: &[&str] = &["failed_count", "failed_tasks_count", "tasks_failed"];
const JOB_CANCELED: &[&str] = &[
    "canceled_count",
    "cancelled_count",
    "canceled_tasks_count",
    "tasks_canceled",
];

/// What a job state word says: finished (`Some(true)`), still going (`Some(false)`), or nothing known.
pub(super) fn job_word_finished(word: &str) -> Option<bool> {
    match word.trim().to_ascii_lowercase().as_str() {
        "completed" | "complete" | "finished" | "done" | "succeeded" | "failed" | "canceled"
        | "cancelled" => Some(true),
        "waiting" | "processing" | "queued" | "preprocessing" | "ready" | "in progress"
        | "in_progress" | "running" | "pending" | "creating" | "started" => Some(false),
        _ => None,
    }
}

/// A task's creation status in its job (`[KB-batchmon]`): `queued`, `preprocessing`, `ready` are on the way;
/// `created`, `failed`, `canceled` are over. An unknown word counts as on the way.
pub(super) fn task_creation_over(status: Option<&str>) -> bool {
    matches!(
        status.map(str::to_ascii_lowercase).as_deref(),
        Some("created" | "failed" | "canceled" | "cancelled")
    )
}

impl JobView {
    pub fn parse(v: &Value) -> JobView {
        let count = |names: &[&str]| {
            names.iter().find_map(|n| match v.get(n)? {
                Value::Number(x) => x.as_u64(),
                Value::String(s) => s.trim().parse().ok(),
                _ => None,
            })
        };
        JobView {
            state: JOB_STATE
                .iter()
                .find_map(|n| v.get(n)?.as_str().map(str::to_string)),
            total: count(JOB_TOTAL),
            created: count(JOB_CREATED),
            failed: count(JOB_FAILED),
            canceled: count(JOB_CANCELED),
            tasks: v
                .get("tasks")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// Whether the state word says the job is over, if it is a word we know.
    pub fn finished_by_state(&self) -> Option<bool> {
        job_word_finished(self.state.as_deref()?)
    }
}

/// Whether a page of `n` items ends a list whose largest page so far held `largest` (this one included): an
/// empty page, or one shorter than a page the server filled before. A server may cap its pages below the size
/// asked for (issue 20), so a first page shorter than asked says nothing yet.
pub(super) fn page_ends(n: usize, largest: usize) -> bool {
    n == 0 || n < largest
}

/// A creation job id as text: Sama's examples write a number, the SDK's test a string (ledger finding 8).
pub(super) fn job_id_text(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    }
}

/// The task object of a single-task answer: `{"task": {...}}` (SDK 0.5.12), `{"tasks": [{...}]}` (its earlier
/// version), or the bare task (ledger finding 7).
pub(super) fn single_task(v: &Value) -> Value {
    if let Some(t) = v.get("task").filter(|t| t.is_object()) {
        return t.clone();
    }
    if let Some(t) = v
        .get("tasks")
        .and_then(Value::as_array)
        .and_then(|ts| ts.first())
    {
        return t.clone();
    }
    if v.get("id").is_some() {
        return v.clone();
    }
    Value::Null
}

pub(super) fn bad(operation: &str, e: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Vendor,
        format!("unexpected {operation} answer: {e}"),
    )
    .vendor(VENDOR)
    .operation(operation)
    .code("bad_response")
}

/// A JSON object kept as its members' text, in order: a task's data goes on to Python without a tree being
/// built, cloned and written out again for each of 100,000 results.
#[derive(Default)]
pub(super) struct RawObject(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for RawObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = RawObject;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<RawObject, A::Error> {
                let mut out = Vec::with_capacity(m.size_hint().unwrap_or(8));
                while let Some(member) = m.next_entry::<String, Box<RawValue>>()? {
                    out.push(member);
                }
                Ok(RawObject(out))
            }
        }
        d.deserialize_map(Members)
    }
}

impl RawObject {
    /// The last member named `name` (as a JSON parser keeps it).
    pub fn get(&self, name: &str) -> Option<&RawValue> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| &**v)
    }

    /// The object's text without the members named in `dropped`.
    pub fn without(&self, dropped: &[&str]) -> Result<Box<RawValue>> {
        let mut text = String::with_capacity(
            2 + self
                .0
                .iter()
                .map(|(k, v)| k.len() + v.get().len() + 4)
                .sum::<usize>(),
        );
        text.push('{');
        for (k, v) in self
            .0
            .iter()
            .filter(|(k, _)| !dropped.contains(&k.as_str()))
        {
            if text.len() > 1 {
                text.push(',');
            }
            crate::vendors::model::push_json_str(&mut text, k);
            text.push(':');
            text.push_str(v.get());
        }
        text.push('}');
        RawValue::from_string(text).map_err(|e| bad("results", e))
    }
}

/// A string or number member as text (keys and client batch ids may be either).
pub(super) fn raw_text_of(v: &RawValue) -> Option<String> {
    text_of(&serde_json::from_str::<Value>(v.get()).ok()?)
}

pub(super) fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// One violation of the creation schema: (field path, message).
type Problem = (String, String);

/// Checks `data` against the parts of JSON Schema Sama's creation schemas use (`type`, `properties`,
/// `required`, `additionalProperties`, `enum`, lengths, bounds, `format: date`); anything else is left to Sama.
pub fn check_schema(schema: &Value, data: &Value, path: &str, out: &mut Vec<Problem>) {
    let Some(s) = schema.as_object() else {
        if schema == &Value::Bool(false) {
            out.push((path.to_string(), "is not allowed".into()));
        }
        return;
    };
    let at = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    if let Some(t) = s.get("type") {
        let types: Vec<&str> = match t {
            Value::String(x) => vec![x.as_str()],
            Value::Array(xs) => xs.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let fits = |ty: &str| match ty {
            "string" => data.is_string(),
            // Sama's integers are 32-bit.
            "integer" => data.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
            "number" => data.is_number(),
            "boolean" => data.is_boolean(),
            "object" => data.is_object(),
            "array" => data.is_array(),
            "null" => data.is_null(),
            _ => true,
        };
        if !types.is_empty() && !types.iter().any(|ty| fits(ty)) {
            out.push((
                path.to_string(),
                format!("must be {} (got {})", types.join(" or "), json_kind(data)),
            ));
            return;
        }
    }
    if let Some(Value::Array(options)) = s.get("enum") {
        if !options.contains(data) {
            out.push((
                path.to_string(),
                format!("must be one of {}", Value::Array(options.clone())),
            ));
        }
    }
    if let Value::String(text) = data {
        let n = text.chars().count() as u64;
        if let Some(max) = s
            .get("maxLength")
            .and_then(Value::as_u64)
            .filter(|m| n > *m)
        {
            out.push((
                path.to_string(),
                format!("must be at most {max} characters"),
            ));
        }
        if let Some(min) = s
            .get("minLength")
            .and_then(Value::as_u64)
            .filter(|m| n < *m)
        {
            out.push((
                path.to_string(),
                format!("must be at least {min} characters"),
            ));
        }
        if s.get("format").and_then(Value::as_str) == Some("date")
            && chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_err()
        {
            out.push((path.to_string(), "must be a date YYYY-mm-dd".into()));
        }
    }
    if let Some(x) = data.as_f64() {
        if let Some(min) = s.get("minimum").and_then(Value::as_f64).filter(|m| x < *m) {
            out.push((path.to_string(), format!("must be >= {min}")));
        }
        if let Some(max) = s.get("maximum").and_then(Value::as_f64).filter(|m| x > *m) {
            out.push((path.to_string(), format!("must be <= {max}")));
        }
    }
    if let Value::Object(obj) = data {
        let props = s.get("properties").and_then(Value::as_object);
        if let Some(Value::Array(req)) = s.get("required") {
            for r in req.iter().filter_map(Value::as_str) {
                if !obj.contains_key(r) {
                    out.push((at(r), "is required".into()));
                }
            }
        }
        for (k, v) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(ps) => check_schema(ps, v, &at(k), out),
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        out.push((at(k), "is not an input of this project".into()))
                    }
                    Some(extra @ Value::Object(_)) => check_schema(extra, v, &at(k), out),
                    _ => {}
                },
            }
        }
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(n) if n.is_f64() => "a float",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a dict",
    }
}

pub(super) fn to_raw(v: &Value) -> Result<Box<RawValue>> {
    serde_json::value::to_raw_value(v).map_err(|e| bad("results", e))
}

/// `{"tasks": [...]}` as typed tasks, read in one pass (no task's text kept): for a caller that needs no `raw`.
pub(super) fn decode_typed_tasks(resp: &Response, operation: &str) -> Result<Vec<TaskDto>> {
    json_from_slice::<TypedTasksPage>(&resp.body)
        .map(|p| p.tasks)
        .map_err(|e| bad(operation, e))
}

/// `{"tasks": [...]}` as typed tasks with their JSON text.
pub(super) fn decode_tasks(
    resp: &Response,
    operation: &str,
) -> Result<Vec<(TaskDto, Box<RawValue>)>> {
    let raws: Vec<Box<RawValue>> = match json_from_slice::<TasksPage>(&resp.body) {
        Ok(p) => p.tasks,
        Err(e) => return Err(bad(operation, e)),
    };
    raws.into_iter()
        .map(|r| {
            Ok((
                serde_json::from_str(r.get()).map_err(|e| bad(operation, e))?,
                r,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_are_parsed() {
        let (code, msg) = parse_error(
            401,
            br#"{"errors":[{"type":401,"message":"Not authorized."}]}"#,
        );
        assert_eq!(
            (code.as_deref(), msg.as_deref()),
            (Some("401"), Some("Not authorized."))
        );
        let (code, msg) = parse_error(
            400,
            br#"{"errors":[{"type":"InvalidInputSchema","message":"The task input does not match the project schema"}]}"#,
        );
        assert_eq!(code.as_deref(), Some("InvalidInputSchema"));
        assert!(msg.unwrap().contains("project schema"));
        assert_eq!(parse_error(500, b"<html>"), (None, None));
        assert_eq!(parse_error(500, br#"{"errors":[]}"#), (None, None));
    }

    #[test]
    fn statuses() {
        assert_eq!(neutral_status("new"), Status::Pending);
        for s in ["in progress", "completed", "approved", "something new"] {
            assert_eq!(neutral_status(s), Status::InProgress, "{s}");
        }
        assert_eq!(neutral_status("rejected"), Status::Rejected);
        assert_eq!(neutral_status("delivered"), Status::Completed);
        assert_eq!(neutral_status("acknowledged"), Status::Completed);
    }

    #[test]
    fn schema_check_names_fields() {
        let schema = json!({
            "type": "object",
            "required": ["url"],
            "properties": {"url": {"type": "string"}, "n": {"type": "integer", "maximum": 10}, "day": {"type": "string", "format": "date"}},
            "additionalProperties": {"type": ["string", "number"]},
        });
        let mut out = vec![];
        check_schema(
            &schema,
            &json!({"url": "u", "n": 3, "day": "2024-01-31", "extra": 1.5}),
            "",
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
        check_schema(
            &schema,
            &json!({"n": 11, "day": "31/01/2024", "extra": {"a": 1}, "big": 3_000_000_000i64}),
            "",
            &mut out,
        );
        let fields: Vec<&str> = out.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(fields, vec!["url", "n", "day", "extra"], "{out:?}");
        // 3e9 is a number, so additionalProperties lets it through; as an integer property it would not.
        let mut out = vec![];
        check_schema(
            &schema,
            &json!({"url": "u", "n": 3_000_000_000i64}),
            "",
            &mut out,
        );
        assert_eq!(out[0].0, "n");
        assert!(out[0].1.contains("integer"), "{out:?}");
    }

    #[test]
    fn job_answers_are_read_under_every_name() {
        let named =
            JobView::parse(&json!({"state": "processing", "tasks_count": 5, "created_count": "2"}));
        assert_eq!(
            (
                named.state.as_deref(),
                named.total,
                named.created,
                named.failed
            ),
            (Some("processing"), Some(5), Some(2), None)
        );
        assert_eq!(named.finished_by_state(), Some(false));
        let status = JobView::parse(&json!({"status": "Completed"}));
        assert_eq!(status.finished_by_state(), Some(true));
        assert_eq!(status.created, None);
        let bare =
            JobView::parse(&json!({"batch_id": "7", "tasks": [{"id": "a", "status": "created"}]}));
        assert_eq!((bare.finished_by_state(), bare.state), (None, None));
        assert_eq!(bare.tasks.len(), 1);
        assert_eq!(
            JobView::parse(&json!({"state": "odd"})).finished_by_state(),
            None
        );
        assert!(task_creation_over(Some("created")) && task_creation_over(Some("canceled")));
        assert!(!task_creation_over(Some("ready")) && !task_creation_over(None));
    }

    #[test]
    fn lists_end_on_an_empty_page_or_one_shorter_than_served_before() {
        // A server capping pages at 250 when 1,000 are asked: a full 250 is not the end.
        assert!(!page_ends(250, 250));
        assert!(page_ends(100, 250));
        assert!(page_ends(0, 0));
        assert!(!page_ends(3, 3));
    }

    #[test]
    fn ids_tasks_and_times_in_each_form() {
        assert_eq!(job_id_text(&json!(58555)).as_deref(), Some("58555"));
        assert_eq!(job_id_text(&json!("58555")).as_deref(), Some("58555"));
        assert_eq!(job_id_text(&json!(null)), None);
        let t = json!({"id": "t1", "state": "delivered"});
        assert_eq!(single_task(&json!({"task": t})), t);
        assert_eq!(single_task(&json!({"tasks": [t]})), t);
        assert_eq!(single_task(&t), t);
        assert_eq!(single_task(&json!({"tasks": []})), Value::Null);
        let zoneless = parse_time_us("20130715T04:45:57").unwrap();
        assert_eq!(
            crate::vendors::model::format_rfc3339_us(zoneless),
            "2013-07-15T04:45:57.000Z"
        );
        assert_eq!(parse_time_us("2013-07-15T04:45:57Z"), Some(zoneless));
        let task: TaskDto = serde_json::from_value(json!({
            "id": "t", "created_at": "20130715T04:45:57", "completion_date": "2013-07-16T00:00:00Z"
        }))
        .unwrap();
        assert_eq!(
            task.created_at_rfc3339().as_deref(),
            Some("2013-07-15T04:45:57.000Z")
        );
        assert_eq!(task.delivery_time().unwrap().0, "2013-07-16T00:00:00Z");
        let odd: TaskDto =
            serde_json::from_value(json!({"id": "t", "created_at": "last week"})).unwrap();
        assert_eq!(odd.created_at_rfc3339().as_deref(), Some("last week"));
        assert!(odd.delivery_time().is_none());
    }
}
