//! Sama's data (projects, batch creation jobs, tasks, consumer cursors) and how tasks progress over time.
//!
//! Nothing moves in the background: a task's state is computed from the sandbox clock when asked. A batch
//! creation job spreads its tasks' creation instants over `creation_ms` after `continue`; a created task is
//! `new`, `in progress`, `completed`, `approved`, then `delivered` at `created + complete_after` (a quarter
//! of that with `submit`, half of it for a negative priority). A rejected task is `rejected`, then
//! `in progress`, and is delivered again `complete_after` (at least 1 ms) after the rejection, with a new
//! delivery time. Only bookkeeping that must happen once (the `records_created` statistics, callbacks) is
//! done by `settle`, which every request and a 50 ms ticker run.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::clock::iso_ms;

/// The input that designates the client batch id in the seeded projects.
pub const CLIENT_BATCH_INPUT: &str = "client_batch_id";
/// The input the sandbox counts `records_created` by (labelport's default key input), else the task id.
pub const STATS_KEY_INPUT: &str = "labelport_key";

/// How a callback authenticates: the four methods Sama documents. The HMAC recipe is the sandbox's own
/// guess, not one Sama publishes.
#[derive(Clone, Debug)]
pub enum CallbackAuth {
    None,
    Basic { username: String, password: String },
    AccessKey(String),
    Token(String),
    Hmac { key_id: String, secret: String },
}

#[derive(Clone, Debug)]
pub struct Callback {
    pub url: String,
    pub auth: CallbackAuth,
}

pub struct Project {
    pub id: u64,
    pub name: String,
    /// Whether the sandbox's API key may use this project.
    pub accessible: bool,
    /// The creation schema a test set; `None` = any string and number inputs.
    pub schema: Option<Value>,
    /// Output names and the values the seeded "workers" choose from.
    pub outputs: Vec<(&'static str, &'static [&'static str])>,
    pub creation_callback: Option<Callback>,
    pub delivery_callback: Option<Callback>,
    pub callback_attempts: u32,
    pub callback_backoff_ms: u64,
}

pub struct SimBatch {
    pub id: u64,
    pub project: u64,
    pub created_ms: i64,
    pub token: String,
    pub signature: String,
    pub upload_expires_ms: i64,
    pub uploaded: Option<bytes::Bytes>,
    pub tasks_file_name: String,
    pub notification_email: Option<String>,
    pub continued_ms: Option<i64>,
    pub canceled_ms: Option<i64>,
    /// Indexes into `Store::tasks`, in file order.
    pub entries: Vec<usize>,
    pub messages: Vec<String>,
}

pub struct Task {
    pub id: String,
    pub project: u64,
    pub batch: u64,
    pub data: Map<String, Value>,
    pub priority: i64,
    pub submit: bool,
    /// When the creation job reaches this task: it is created (or fails) then.
    pub scheduled_ms: i64,
    /// Creation errors: the task is never created.
    pub errors: Option<Vec<Value>>,
    pub canceled: bool,
    pub deleted: bool,
    /// Last rejection: instant and reasons.
    pub rejected: Option<(i64, Vec<String>)>,
    /// The delivery time a delivery callback acknowledged.
    pub acknowledged: Option<i64>,
    /// Settled: counted in the statistics and its creation callback sent.
    pub settled: bool,
    /// The delivery time a delivery callback was sent for.
    pub delivery_notified: Option<i64>,
}

impl Task {
    /// A task the creation job reaches at `scheduled_ms`: priority 0, not submitted, nothing since.
    pub fn scheduled(
        id: String,
        project: u64,
        batch: u64,
        data: Map<String, Value>,
        at: i64,
    ) -> Task {
        Task {
            id,
            project,
            batch,
            data,
            priority: 0,
            submit: false,
            scheduled_ms: at,
            errors: None,
            canceled: false,
            deleted: false,
            rejected: None,
            acknowledged: None,
            settled: false,
            delivery_notified: None,
        }
    }
}

/// A task as Sama shows it, fields in Sama's order.
#[derive(serde::Serialize)]
struct TaskOut<'a> {
    id: &'a str,
    project_id: u64,
    batch_id: Value,
    client_batch_id: Option<std::borrow::Cow<'a, str>>,
    created_at: String,
    state: &'static str,
    priority: i64,
    data: &'a Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    answers: Option<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delivered_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completion_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rejection_reasons: Option<&'a Vec<String>>,
}

/// A task's creation status within its batch (batch status endpoint).
pub fn creation_status(b: &SimBatch, t: &Task, now: i64) -> &'static str {
    if t.canceled {
        return "canceled";
    }
    let start = b.continued_ms.unwrap_or(i64::MAX);
    if now >= t.scheduled_ms {
        return if t.errors.is_some() {
            "failed"
        } else {
            "created"
        };
    }
    let span = (t.scheduled_ms - start).max(1);
    let done = now - start;
    if done * 3 < span {
        "queued"
    } else if done * 3 < span * 2 {
        "preprocessing"
    } else {
        "ready"
    }
}

/// How tasks and creation jobs are written: the dialect's choices among the forms no source settles
/// (`DIALECT` in sama.rs; docs/vendors/sama.md).
#[derive(Default, Clone)]
pub struct TaskForm {
    /// The name a delivered task's delivery time goes under; `None`: no delivery time at all.
    pub delivery_field: Option<&'static str>,
    /// Delivered listings (and delivery callbacks) show delivered tasks as `completed`, as Sama's own
    /// examples do.
    pub delivered_reads_completed: bool,
    /// `created_at` in Sama's zone-less example form (`20130715T04:45:57`).
    pub created_zoneless: bool,
    /// Creation job ids as strings.
    pub ids_as_strings: bool,
    /// The name of the creation job's state (`state`, `status`); `None`: no job state.
    pub job_state_field: Option<&'static str>,
    /// The creation job's counts (`tasks_count`, `created_count`, ...) left out.
    pub job_counts_missing: bool,
    /// The project keeps no `labelport_key` input: creation drops it.
    pub drop_key_input: bool,
}

impl TaskForm {
    /// A creation job id as written.
    pub fn batch_id(&self, id: u64) -> Value {
        if self.ids_as_strings {
            json!(id.to_string())
        } else {
            json!(id)
        }
    }
}

pub struct SimConfig {
    pub complete_ms: i64,
    pub creation_ms: i64,
    pub upload_ttl_ms: i64,
    /// Sama's one multi-task status call a second, answered with 429 (`POST /_sim/config`): off unless a
    /// test asks, as labelport keeps no vendor limit on a loopback host unless its caller asks.
    pub status_rate_limit: bool,
}

/// The last delivered listing (see `Sama::delivered`): valid for the same filters while `generation` and
/// the number of tasks are unchanged and the clock is in `computed_at..valid_until`, the time the next
/// matching task is delivered.
pub struct DeliveredCache {
    pub key: String,
    pub generation: u64,
    pub tasks_len: usize,
    pub computed_at: i64,
    pub valid_until: i64,
    pub list: std::sync::Arc<Vec<(i64, usize)>>,
}

pub struct Store {
    pub seed: u64,
    pub projects: Vec<Project>,
    pub batches: BTreeMap<u64, SimBatch>,
    /// Read freely; change a task through `task_mut`, which tells the listing caches.
    pub tasks: Vec<Task>,
    /// Counts changes to tasks (see `task_mut`): a cached listing is stale once it has moved.
    pub generation: u64,
    pub delivered_cache: Option<DeliveredCache>,
    /// Every task before this index is settled (counted as created, creation callback sent) or canceled.
    pub settled_upto: usize,
    pub by_id: HashMap<String, usize>,
    pub next_batch: u64,
    pub next_task: u64,
    /// (project, consumer) -> the (task, delivery time) pairs already handed to that consumer.
    pub consumers: HashMap<(u64, String), HashSet<(usize, i64)>>,
    pub uploads: HashMap<String, u64>,
    pub last_status_call: Option<std::time::Instant>,
    pub config: SimConfig,
    pub form: TaskForm,
    /// Labels of known quality (`truth`), when the sandbox's setting is on.
    pub quality: crate::sandbox::truth::Setting,
}

impl Store {
    pub fn new(seed: u64, complete_ms: i64) -> Self {
        let outputs: Vec<(&'static str, &'static [&'static str])> = vec![
            ("label", &["car", "truck", "bus", "bicycle"]),
            ("confidence", &["high", "medium", "low"]),
        ];
        let project = |id: u64, name: &str, accessible: bool| Project {
            id,
            name: name.to_string(),
            accessible,
            schema: None,
            outputs: outputs.clone(),
            creation_callback: None,
            delivery_callback: None,
            callback_attempts: 5,
            callback_backoff_ms: 1000,
        };
        Store {
            seed,
            projects: vec![
                project(117, "Vehicle classification", true),
                project(118, "Vehicle classification (second project)", true),
                project(999, "Another customer's project", false),
            ],
            batches: BTreeMap::new(),
            tasks: Vec::new(),
            by_id: HashMap::new(),
            next_batch: 58555,
            next_task: 1,
            consumers: HashMap::new(),
            uploads: HashMap::new(),
            last_status_call: None,
            quality: Default::default(),
            generation: 0,
            delivered_cache: None,
            settled_upto: 0,
            config: SimConfig {
                complete_ms,
                creation_ms: 0,
                upload_ttl_ms: 4 * 3600 * 1000,
                status_rate_limit: false,
            },
            form: TaskForm {
                delivery_field: Some("delivered_at"),
                job_state_field: Some("state"),
                ..TaskForm::default()
            },
        }
    }

    pub fn project(&self, id: u64) -> Option<&Project> {
        self.projects.iter().find(|p| p.id == id)
    }

    pub fn project_mut(&mut self, id: u64) -> Option<&mut Project> {
        self.projects.iter_mut().find(|p| p.id == id)
    }

    /// 24 hex digits, growing with creation (so id order is creation order), with a seeded prefix.
    pub fn new_task_id(&mut self) -> String {
        let prefix = Sha256::new()
            .chain_update(self.seed.to_le_bytes())
            .chain_update(b"sama-task")
            .finalize();
        let n = self.next_task;
        self.next_task += 1;
        format!("{}{:016x}", hex::encode(&prefix[..4]), n)
    }

    /// Whether the task exists as a task (created, not failed, canceled or deleted) at `now`.
    /// A task to change in a way a listing can see (state, visibility, priority).
    pub fn task_mut(&mut self, i: usize) -> &mut Task {
        self.generation += 1;
        &mut self.tasks[i]
    }

    pub fn visible(&self, t: &Task, now: i64) -> bool {
        !t.canceled && !t.deleted && t.errors.is_none() && now >= t.scheduled_ms
    }

    /// When the task is (next) delivered.
    pub fn deliver_ms(&self, t: &Task) -> i64 {
        let c = self.config.complete_ms;
        match &t.rejected {
            Some((at, _)) => at + c.max(1),
            None => {
                let work = if t.submit {
                    c / 4
                } else if t.priority < 0 {
                    c / 2
                } else {
                    c
                };
                t.scheduled_ms + work
            }
        }
    }

    /// The task's state at `now` (Sama's wire values).
    pub fn state(&self, t: &Task, now: i64) -> &'static str {
        let deliver = self.deliver_ms(t);
        if now >= deliver {
            return if t.acknowledged == Some(deliver) {
                "acknowledged"
            } else {
                "delivered"
            };
        }
        if let Some((at, _)) = &t.rejected {
            return if (now - at) * 2 < (deliver - at) {
                "rejected"
            } else {
                "in progress"
            };
        }
        let span = (deliver - t.scheduled_ms).max(1);
        let done = now - t.scheduled_ms;
        if t.submit {
            return if done * 2 < span {
                "completed"
            } else {
                "approved"
            };
        }
        match done * 4 / span {
            0 => "new",
            1 => "in progress",
            2 => "completed",
            _ => "approved",
        }
    }

    /// The client batch id without copying it (the delivered list compares it for every task of a project).
    pub fn client_batch_id_ref(t: &Task) -> Option<std::borrow::Cow<'_, str>> {
        match t.data.get(CLIENT_BATCH_INPUT)? {
            Value::String(s) => Some(std::borrow::Cow::Borrowed(s.as_str())),
            Value::Number(n) => Some(std::borrow::Cow::Owned(n.to_string())),
            _ => None,
        }
    }

    pub fn client_batch_id(t: &Task) -> Option<String> {
        match t.data.get(CLIENT_BATCH_INPUT)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }

    /// The pre-annotations (`output_<name>` inputs) as default answers.
    pub fn default_answers(t: &Task) -> Map<String, Value> {
        t.data
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("output_")
                    .map(|n| (n.to_string(), v.clone()))
            })
            .collect()
    }

    /// Seeded answers: a pre-annotation where given, else a draw from the output's values (the `label`, with
    /// a quality set, from the record's truth: `truth`).
    pub fn answers(&self, t: &Task) -> Map<String, Value> {
        let mut out = Map::new();
        let defaults = Self::default_answers(t);
        let Some(p) = self.project(t.project) else {
            return out;
        };
        for (name, values) in &p.outputs {
            if let Some(v) = defaults.get(*name) {
                out.insert(name.to_string(), v.clone());
                continue;
            }
            if let (Some(q), "label") = (self.quality.get(), *name) {
                use crate::sandbox::truth;
                let id = truth::identity(&t.data);
                let class = truth::labelled_class(q, self.seed, "sama", &id, "label");
                out.insert(name.to_string(), json!(class));
                continue;
            }
            let h = Sha256::new()
                .chain_update(self.seed.to_le_bytes())
                .chain_update(t.id.as_bytes())
                .chain_update(name.as_bytes())
                .finalize();
            let i = (h[0] as usize) % values.len();
            out.insert(name.to_string(), json!(values[i]));
        }
        out
    }

    /// The task object (delivery format), with the simulator's extra delivery time (`form`).
    pub fn task_json(&self, t: &Task, now: i64, with_answers: bool) -> Value {
        serde_json::to_value(self.task_out(t, now, with_answers, false)).unwrap_or(Value::Null)
    }

    /// The task as a delivered listing or a delivery callback shows it.
    pub fn delivered_task_json(&self, t: &Task, now: i64) -> Value {
        serde_json::to_value(self.task_out(t, now, true, true)).unwrap_or(Value::Null)
    }

    /// `delivered_task_json` written straight into `out` as JSON text: listings of thousands of tasks skip
    /// building (and dropping) a `Value` tree per task.
    pub fn write_delivered_task_json(&self, out: &mut Vec<u8>, t: &Task, now: i64) {
        // Writing into a Vec cannot fail, and every field serializes.
        let _ = serde_json::to_writer(out, &self.task_out(t, now, true, true));
    }

    fn task_out<'a>(
        &'a self,
        t: &'a Task,
        now: i64,
        with_answers: bool,
        delivered_listing: bool,
    ) -> TaskOut<'a> {
        let state = self.state(t, now);
        let answers = with_answers.then(|| match state {
            "completed" | "approved" | "delivered" | "acknowledged" => self.answers(t),
            "rejected" => Self::default_answers(t),
            _ => Map::new(),
        });
        let delivered = matches!(state, "delivered" | "acknowledged");
        let delivery_time = |name: &str| {
            (delivered && self.form.delivery_field == Some(name))
                .then(|| iso_ms(self.deliver_ms(t)))
        };
        TaskOut {
            id: &t.id,
            project_id: t.project,
            batch_id: self.form.batch_id(t.batch),
            client_batch_id: Self::client_batch_id_ref(t),
            created_at: if self.form.created_zoneless {
                zoneless(t.scheduled_ms)
            } else {
                iso_ms(t.scheduled_ms)
            },
            state: if delivered && delivered_listing && self.form.delivered_reads_completed {
                "completed"
            } else {
                state
            },
            priority: t.priority,
            data: &t.data,
            answers,
            delivered_at: delivery_time("delivered_at"),
            completion_date: delivery_time("completion_date"),
            rejection_reasons: t.rejected.as_ref().map(|(_, reasons)| reasons),
        }
    }

    /// The batch creation job's state and counts.
    pub fn batch_summary(&self, b: &SimBatch, now: i64) -> (&'static str, [u64; 4]) {
        let (mut created, mut failed, mut canceled, mut open) = (0u64, 0u64, 0u64, 0u64);
        for &i in &b.entries {
            match creation_status(b, &self.tasks[i], now) {
                "created" => created += 1,
                "failed" => failed += 1,
                "canceled" => canceled += 1,
                _ => open += 1,
            }
        }
        let n = b.entries.len() as u64;
        let state = if b.continued_ms.is_none() {
            if b.canceled_ms.is_some() {
                "canceled"
            } else {
                "waiting"
            }
        } else if open > 0 {
            "processing"
        } else if b.canceled_ms.is_some() {
            "canceled"
        } else if failed == n && n > 0 {
            "failed"
        } else {
            "completed"
        };
        (state, [n, created, failed, canceled])
    }
}

/// Sama's example form of a time, `20130715T04:45:57` (UTC, no zone; `[S4]` in docs/vendors/sama.md).
fn zoneless(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y%m%dT%H:%M:%S")
        .to_string()
}

/// A seeded hex string (keys, tokens, signatures).
pub fn seeded_hex(seed: u64, what: &str, n: usize) -> String {
    hex::encode(&super::seeded::digest(seed, &[what.as_bytes()])[..n.min(32)])
}

/// Checks `data` against the subset of JSON Schema the creation schemas use: `type`, `properties`,
/// `required`, `additionalProperties`, `enum`, `minLength`/`maxLength`, `minimum`/`maximum`, `format: date`.
/// Returns (field path, message) per violation.
pub fn validate(schema: &Value, data: &Value, path: &str, out: &mut Vec<(String, String)>) {
    let Some(s) = schema.as_object() else {
        if schema == &Value::Bool(false) {
            out.push((path.to_string(), "is not allowed".into()));
        }
        return;
    };
    if let Some(t) = s.get("type") {
        let types: Vec<&str> = match t {
            Value::String(x) => vec![x.as_str()],
            Value::Array(xs) => xs.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !types.is_empty() && !types.iter().any(|ty| type_ok(ty, data)) {
            out.push((
                path.to_string(),
                format!("must be of type {}", types.join(" or ")),
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
        let len = text.chars().count() as u64;
        if let Some(max) = s.get("maxLength").and_then(Value::as_u64) {
            if len > max {
                out.push((
                    path.to_string(),
                    format!("must be at most {max} characters"),
                ));
            }
        }
        if let Some(min) = s.get("minLength").and_then(Value::as_u64) {
            if len < min {
                out.push((
                    path.to_string(),
                    format!("must be at least {min} characters"),
                ));
            }
        }
        if s.get("format").and_then(Value::as_str) == Some("date")
            && chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_err()
        {
            out.push((path.to_string(), "must be a date YYYY-mm-dd".into()));
        }
    }
    if let Some(x) = data.as_f64() {
        if let Some(min) = s.get("minimum").and_then(Value::as_f64) {
            if x < min {
                out.push((path.to_string(), format!("must be >= {min}")));
            }
        }
        if let Some(max) = s.get("maximum").and_then(Value::as_f64) {
            if x > max {
                out.push((path.to_string(), format!("must be <= {max}")));
            }
        }
    }
    if let Value::Object(obj) = data {
        let props = s.get("properties").and_then(Value::as_object);
        if let Some(Value::Array(req)) = s.get("required") {
            for r in req.iter().filter_map(Value::as_str) {
                if !obj.contains_key(r) {
                    out.push((join(path, r), "is required".into()));
                }
            }
        }
        for (k, v) in obj {
            let sub = join(path, k);
            match props.and_then(|p| p.get(k)) {
                Some(ps) => validate(ps, v, &sub, out),
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        out.push((sub, "is not an input of this project".into()))
                    }
                    Some(extra @ Value::Object(_)) => validate(extra, v, &sub, out),
                    _ => {}
                },
            }
        }
    }
}

fn join(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

fn type_ok(ty: &str, v: &Value) -> bool {
    match ty {
        "string" => v.is_string(),
        "integer" => v.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        "null" => v.is_null(),
        _ => true,
    }
}

/// HMAC-SHA-256 (RFC 2104) over SHA-256.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let (mut ipad, mut opad) = ([0x36u8; 64], [0x5cu8; 64]);
    for i in 0..64 {
        ipad[i] ^= k[i];
        opad[i] ^= k[i];
    }
    let inner = Sha256::new()
        .chain_update(ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(opad)
        .chain_update(inner)
        .finalize()
        .into()
}

pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"fooba"), "Zm9vYmE=");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
    }

    #[test]
    fn schema_subset() {
        let schema = json!({
            "type": "object",
            "properties": {"url": {"type": "string", "maxLength": 10}, "n": {"type": "integer"}},
            "required": ["url"],
            "additionalProperties": {"type": ["string", "number"]}
        });
        let mut out = vec![];
        validate(
            &schema,
            &json!({"url": "u", "n": 3, "x": "y"}),
            "",
            &mut out,
        );
        assert!(out.is_empty(), "{out:?}");
        validate(&schema, &json!({"n": 3.5, "x": true}), "", &mut out);
        let fields: Vec<&str> = out.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, vec!["url", "n", "x"]);
    }

    #[test]
    fn task_states_follow_the_clock() {
        let mut s = Store::new(1, 1000);
        let t = Task::scheduled(s.new_task_id(), 117, 1, Map::new(), 10_000);
        assert_eq!(t.id.len(), 24);
        let states: Vec<&str> = [10_000, 10_300, 10_600, 10_900, 11_000]
            .iter()
            .map(|&n| s.state(&t, n))
            .collect();
        assert_eq!(
            states,
            vec!["new", "in progress", "completed", "approved", "delivered"]
        );
        let mut r = t;
        r.rejected = Some((12_000, vec!["blurry".into()]));
        assert_eq!(s.state(&r, 12_100), "rejected");
        assert_eq!(s.state(&r, 12_600), "in progress");
        assert_eq!(s.state(&r, 13_000), "delivered");
        assert_eq!(s.deliver_ms(&r), 13_000);
    }
}
