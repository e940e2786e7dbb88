//! The Playment API simulator (wire facts and their sources: docs/vendors/playment.md).
//!
//! Playment's model against the neutral one: project = project (seeded, read-only, with a Default
//! batch), Batch = batch, record = job (`data` + the client's `reference_id`, the record key,
//! unique per project), Job = the create-job calls of one upload, result = the job's result file,
//! a JSON file behind `result` (a URL), fetched through `/v1/attachments?url=` which redirects to
//! a signed URL.
//!
//! Every answer is the envelope `{"success": true, "data": ...}` or
//! `{"success": false, "error": {"code", "message"}}`: 200 for success (creates included), 400 for
//! validation and domain errors, 401 for a missing or unknown `x-api-key`, 5xx for faults.
//!
//! Simulator-defined where the vendor's documents are silent: non-terminal statuses
//! `created` and `in_progress`; `next_page_token` is the next job's creation cursor in
//! nanoseconds, `""` on the last page; the result file's `data` holds the job's `data` fields as
//! sent beside the labels (the documented image result echoes `image_url`, the video and sensor
//! results their frames); its completion time is the file's `Last-Modified`; the signed storage
//! URL refuses a request that carries `x-api-key` (credentials must never reach storage). Each of
//! these, and what else no source settles, can be served the other way by a dialect setting
//! (`DIALECT` below): the attachments answer, the labels' key, the status words, `Last-Modified`, a
//! create-batch that requires `label`, details that lag a create or lack job counts, the page length.

#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::clock::seconds_to_ms;
#[path = "playment_data.rs"]
mod data;
use super::dialect::{Kind, SettingSpec, Value as Setting};
use super::paging::{self, Envelope, Query};
use super::seeded::{self, hash, unit};
use super::{Routes, Shared, Simulator};
use data::frames_of;

/// What no source settles about the Playment API, as settings (`dialect.rs`; docs/vendors/playment.md, whose
/// findings the docs name).
pub(super) const DIALECT: &[SettingSpec] = &[
    SettingSpec {
        name: "attachments",
        kind: Kind::Word(&["redirect", "file", "json_url"]),
        changed: Setting::Word("json_url"),
        doc: "how GET /v1/attachments answers: a 302 to the signed URL (default), 200 with the result file itself, \
              or 200 with JSON naming the signed URL in data.url (finding 2: the page says redirect under a 200 tab)",
    },
    SettingSpec {
        name: "labels_key",
        kind: Kind::Word(&["documented", "annotations_data"]),
        changed: Setting::Word("annotations_data"),
        doc: "where a result file's labels sit: annotations (image) and annotation_data (video, sensor) as those \
              pages show (default), or annotations_data as the video segmentation page names it (finding 6)",
    },
    SettingSpec {
        name: "status_words",
        kind: Kind::Word(&["simulator", "callback"]),
        changed: Setting::Word("callback"),
        doc: "a job's status words: created, in_progress, completed, failed (default; only completed is \
              documented for the pull API) or PENDING, PROCESSING, COMPLETED, FAILED (the callback's case; \
              finding 4)",
    },
    SettingSpec {
        name: "no_last_modified",
        kind: Kind::Switch,
        changed: Setting::Switch(true),
        doc: "result files served without Last-Modified, labelport's only completion time (finding 5)",
    },
    SettingSpec {
        name: "require_label",
        kind: Kind::Switch,
        changed: Setting::Switch(true),
        doc: "create-batch refuses a body without label and project_id, which both code samples send (finding 3)",
    },
    SettingSpec {
        name: "details_lag",
        kind: Kind::Switch,
        changed: Setting::Switch(true),
        doc: "a new batch shows in the project details only from the second details read after its creation \
              (finding 3: the create answers data.batch_id; nothing says the details list it at once)",
    },
    SettingSpec {
        name: "no_batch_counts",
        kind: Kind::Switch,
        changed: Setting::Switch(true),
        doc: "project details without a batch's total_jobs and completed_jobs (finding 10)",
    },
    SettingSpec {
        name: "jobs_per_page",
        kind: Kind::Number { min: 1 },
        changed: Setting::Number(37),
        doc: "jobs a page of a batch's job list holds (documented: 100)",
    },
];

/// "The first call returns the first 100 jobs", as the vendor documents the batch listing.
pub const PAGE_SIZE: usize = 100;
/// A batch's jobs, a page at a time, with the token of the next page (`""` on the last).
const JOBS: Envelope = Envelope {
    items: "jobs",
    total: None,
    page: None,
    size: None,
    next_token: Some("next_page_token"),
};
/// priority_weight: integers 1..=10, default 5, as the vendor documents it.
const MAX_PRIORITY: i64 = 10;
/// The v1 error table: `FS_00012` "priority_weight must be in the range of 1-9".
const MAX_PRIORITY_V1: i64 = 9;
const DEFAULT_PRIORITY: i64 = 5;
/// The tag the sandbox hands out "during the integration process".
pub const TAG: &str = "sandbox-annotation";
/// Signed result URLs live this long (sandbox clock).
const SIGNED_TTL_MS: i64 = 3_600_000;
const LABELS: [&str; 5] = ["Car", "Pedestrian", "Cyclist", "Truck", "Traffic Sign"];

type Answer = Result<Response, Response>;

struct Job {
    id: Uuid,
    reference_id: String,
    batch: usize,
    tag: Option<String>,
    work_flow_id: Option<String>,
    priority_weight: i64,
    data: Value,
    frames: u64,
    created_ms: i64,
    /// Creation order in nanoseconds, unique per project: the batch list's page token.
    cursor: u64,
    failed: bool,
}

struct Batch {
    id: Uuid,
    name: String,
    description: String,
    is_default: bool,
    created_ms: i64,
    jobs: Vec<usize>,
    /// Project-details reads still to leave it out of (dialect `details_lag`).
    hidden_reads: u32,
}

struct Project {
    id: Uuid,
    name: String,
    batches: Vec<Batch>,
    jobs: Vec<Job>,
    by_ref: HashMap<String, usize>,
    by_job: HashMap<Uuid, usize>,
    last_cursor: u64,
}

pub struct PlaymentSim {
    shared: Arc<Shared>,
    /// API key -> index of the project it may use.
    keys: Vec<(String, usize)>,
    projects: Vec<Mutex<Project>>,
    complete_after_ms: i64,
    signing_secret: [u8; 32],
}

/// The seeded API key.
pub fn api_key(seed: u64) -> String {
    format!("sandbox-{}", &hex::encode(hash(seed, "api_key", &[]))[..24])
}

fn fail(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"success": false, "error": {"code": code, "message": message}})),
    )
        .into_response()
}

fn bad(code: &str, message: &str) -> Response {
    fail(StatusCode::BAD_REQUEST, code, message)
}

fn ok(data: Value) -> Response {
    Json(json!({"success": true, "data": data})).into_response()
}

impl PlaymentSim {
    pub fn new(shared: Arc<Shared>) -> Self {
        let seed = shared.config.seed;
        let origin = shared.clock.origin_ms();
        let project = |n: u8, name: &str| {
            let id = seeded::uuid(seed, "project", &[n]);
            let default = Batch {
                id: seeded::uuid(seed, "default-batch", &[n]),
                name: "Default batch".into(),
                description: "Jobs created without a batch_id".into(),
                is_default: true,
                created_ms: origin - 86_400_000,
                jobs: vec![],
                hidden_reads: 0,
            };
            Mutex::new(Project {
                id,
                name: name.into(),
                batches: vec![default],
                jobs: vec![],
                by_ref: HashMap::new(),
                by_job: HashMap::new(),
                last_cursor: 0,
            })
        };
        PlaymentSim {
            keys: vec![(api_key(seed), 0), (format!("{}-other", api_key(seed)), 1)],
            projects: vec![project(0, "Sandbox project"), project(1, "Another team")],
            complete_after_ms: seconds_to_ms(shared.config.complete_after),
            signing_secret: hash(seed, "signing", &[]),
            shared,
        }
    }

    fn now(&self) -> i64 {
        self.shared.clock.now_ms()
    }

    fn switch(&self, name: &str) -> bool {
        self.shared.config.dialect.switch(name)
    }

    fn word(&self, name: &str) -> Option<&str> {
        self.shared.config.dialect.word(name)
    }

    /// Jobs a page of a batch listing holds.
    fn jobs_per_page(&self) -> usize {
        self.shared
            .config
            .dialect
            .number("jobs_per_page")
            .map_or(PAGE_SIZE, |n| n as usize)
    }

    /// A status as the wire spells it under the dialect's `status_words`.
    fn status_word(&self, status: &'static str) -> &'static str {
        if self.word("status_words") != Some("callback") {
            return status;
        }
        match status {
            "created" => "PENDING",
            "in_progress" => "PROCESSING",
            "completed" => "COMPLETED",
            "failed" => "FAILED",
            other => other,
        }
    }

    fn host(&self) -> String {
        format!("http://127.0.0.1:{}", self.shared.port)
    }

    /// 401 for a missing or unknown key, then the project: unknown `resource_error`, someone
    /// else's `unauthorized`.
    fn project(&self, headers: &HeaderMap, raw: &str) -> Result<&Mutex<Project>, Response> {
        let key = headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let Some(&(_, mine)) = self.keys.iter().find(|(k, _)| k == key) else {
            return Err(fail(
                StatusCode::UNAUTHORIZED,
                "auth-failure",
                "authentication key provided is incorrect",
            ));
        };
        let id = Uuid::parse_str(raw).ok();
        let Some(i) = self.projects.iter().position(|p| Some(p.lock().id) == id) else {
            return Err(bad("resource_error", "project_id not found"));
        };
        if i != mine {
            return Err(bad(
                "unauthorized",
                "the API key does not have access to this project",
            ));
        }
        Ok(&self.projects[i])
    }

    fn key_project(&self, headers: &HeaderMap) -> Option<usize> {
        let key = headers.get("x-api-key")?.to_str().ok()?;
        self.keys.iter().find(|(k, _)| k == key).map(|(_, p)| *p)
    }

    fn status(&self, job: &Job, now: i64) -> &'static str {
        let age = now - job.created_ms;
        let ca = self.complete_after_ms;
        if age >= ca {
            if job.failed {
                "failed"
            } else {
                "completed"
            }
        } else if age >= ca / 2 {
            "in_progress"
        } else {
            "created"
        }
    }

    fn completed_ms(&self, job: &Job) -> i64 {
        job.created_ms + self.complete_after_ms
    }

    fn result_url(&self, job: &Job) -> String {
        format!("{}/_sim/results/{}.json", self.host(), job.id)
    }

    /// The seeded labels of a job's result file, its `data` fields as sent beside them.
    fn result_file(&self, job: &Job) -> Value {
        let seed = self.shared.config.seed;
        let h = hash(seed, "labels", job.id.as_bytes());
        let mut data = job.data.as_object().cloned().unwrap_or_default();
        let n = 1 + (h[0] % 3) as usize;
        let label = |i: usize| LABELS[h[1 + i] as usize % LABELS.len()];
        let coord = |i: usize| (h[4 + i] as f64 / 255.0 * 0.5 * 1000.0).round() / 1000.0;
        let frame_ids: Vec<String> = ["video_data", "sensor_data"]
            .iter()
            .filter_map(|k| data.get(*k))
            .filter_map(|v| v.get("frames").and_then(Value::as_array))
            .flatten()
            .filter_map(|f| f.get("frame_id").and_then(Value::as_str).map(String::from))
            .collect();
        let id = |i: usize| {
            seeded::uuid(
                seed,
                "annotation",
                &[job.id.as_bytes(), &[i as u8][..]].concat(),
            )
            .to_string()
        };
        if let (Some(q), true) = (self.shared.quality(), data.contains_key("image_url")) {
            // Labels of known quality (`truth`): one rectangle, its class and corners from the truth.
            use crate::sandbox::truth;
            let key = truth::identity(&data);
            let [x, y, x2, y2] = truth::labelled_box(q, seed, "playment", &key);
            let label = truth::labelled_class(q, seed, "playment", &key, "label");
            let rect = json!({"_id": id(0), "label": label, "attributes": {},
                "coordinates": [{"x": x, "y": y}, {"x": x2, "y": y}, {"x": x2, "y": y2}, {"x": x, "y": y2}]});
            data.insert(
                "annotations".into(),
                json!({"rectangles": [rect], "polygons": [], "lines": [], "cuboids": [], "landmarks": []}),
            );
        } else if data.contains_key("image_url") {
            let rects: Vec<Value> = (0..n)
                .map(|i| {
                    let (x, y) = (coord(2 * i), coord(2 * i + 1));
                    let (x2, y2) = (x + 0.25, y + 0.25);
                    json!({"_id": id(i), "label": label(i), "attributes": {},
                        "coordinates": [{"x": x, "y": y}, {"x": x2, "y": y}, {"x": x2, "y": y2}, {"x": x, "y": y2}]})
                })
                .collect();
            data.insert(
                "annotations".into(),
                json!({"rectangles": rects, "polygons": [], "lines": [], "cuboids": [], "landmarks": []}),
            );
        } else {
            let sensor = data.contains_key("sensor_data");
            let trackers: Vec<Value> = (0..n)
                .map(|i| {
                    let frames: Map<String, Value> = frame_ids
                        .iter()
                        .map(|f| {
                            let shape = if sensor {
                                json!({"position": {"x": coord(i), "y": coord(i + 1), "z": 0.0},
                                    "rotation": {"x": 0.0, "y": 0.0, "z": coord(i + 2)},
                                    "dimensions": {"length": 4.2, "width": 1.8, "height": 1.5}})
                            } else {
                                let (x, y) = (coord(2 * i), coord(2 * i + 1));
                                json!({"coordinates": [{"x": x, "y": y}, {"x": x + 0.2, "y": y + 0.2}]})
                            };
                            (f.clone(), shape)
                        })
                        .collect();
                    json!({"_id": id(i), "type": if sensor { "cuboid" } else { "rectangle" },
                        "label": label(i), "attributes": {}, "frames": frames})
                })
                .collect();
            data.insert("annotation_data".into(), json!({ "annotations": trackers }));
        }
        if self.word("labels_key") == Some("annotations_data") {
            for k in ["annotations", "annotation_data"] {
                if let Some(v) = data.remove(k) {
                    data.insert("annotations_data".into(), v);
                }
            }
        }
        json!({ "data": data })
    }

    fn annotations(&self, job: &Job) -> u64 {
        1 + (hash(self.shared.config.seed, "labels", job.id.as_bytes())[0] % 3) as u64
    }

    fn signature(&self, job_id: &str, expires: i64) -> String {
        hex::encode(
            &Sha256::new()
                .chain_update(self.signing_secret)
                .chain_update(job_id.as_bytes())
                .chain_update(expires.to_le_bytes())
                .finalize()[..16],
        )
    }

    /// A job (of any project) by its result file name `{job_id}.json`.
    fn with_result<T>(&self, file: &str, f: impl FnOnce(usize, &Project, &Job) -> T) -> Option<T> {
        let id = Uuid::parse_str(file.strip_suffix(".json")?).ok()?;
        for (i, p) in self.projects.iter().enumerate() {
            let p = p.lock();
            if let Some(&j) = p.by_job.get(&id) {
                return Some(f(i, &p, &p.jobs[j]));
            }
        }
        None
    }

    fn serve_result(&self, file: &str) -> Answer {
        let now = self.now();
        self.with_result(file, |_, _, job| {
            if self.status(job, now) != "completed" {
                return Err(fail(
                    StatusCode::NOT_FOUND,
                    "NoSuchKey",
                    "The specified key does not exist.",
                ));
            }
            let mut res = Json(self.result_file(job)).into_response();
            if self.switch("no_last_modified") {
                return Ok(res);
            }
            let modified = chrono::DateTime::from_timestamp_millis(self.completed_ms(job))
                .unwrap_or_default()
                .format("%a, %d %b %Y %H:%M:%S GMT")
                .to_string();
            if let Ok(v) = HeaderValue::from_str(&modified) {
                res.headers_mut().insert(header::LAST_MODIFIED, v);
            }
            Ok(res)
        })
        .unwrap_or_else(|| {
            Err(fail(
                StatusCode::NOT_FOUND,
                "NoSuchKey",
                "The specified key does not exist.",
            ))
        })
    }
}

fn batch_item(p: &Project, b: &Batch, sim: &PlaymentSim, now: i64) -> Value {
    let (mut done, mut frames, mut done_frames, mut annotations) = (0u64, 0u64, 0u64, 0u64);
    for &j in &b.jobs {
        let job = &p.jobs[j];
        frames += job.frames;
        if sim.status(job, now) == "completed" {
            done += 1;
            done_frames += job.frames;
            annotations += sim.annotations(job);
        }
    }
    let created = chrono::DateTime::from_timestamp_millis(b.created_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, false);
    json!({
        "id": b.id.to_string(), "name": b.name, "description": b.description, "is_default": b.is_default,
        "total_jobs": b.jobs.len(), "completed_jobs": done, "total_frames": frames,
        "completed_frames": done_frames, "annotations": annotations, "created_at": created,
        "status": if done as usize == b.jobs.len() { "Complete" } else { "In Progress" },
    })
}

// ---- handlers ----------------------------------------------------------------------------------

type S = State<Arc<PlaymentSim>>;

async fn create_job(
    State(a): S,
    Path(project): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let p = a.project(&headers, &project)?;
    let v1 = uri.path().starts_with("/v1/");
    let Ok(Value::Object(b)) = serde_json::from_slice::<Value>(&body) else {
        return Err(bad("GE_0001", "Invalid request body: malformed JSON"));
    };
    let reference_id = match b.get("reference_id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        None | Some(Value::Null) | Some(Value::String(_)) => {
            return Err(bad("FS_0002", "reference_id missing"))
        }
        Some(_) => return Err(bad("GE_0001", "reference_id must be a string")),
    };
    let text = |k: &str| {
        b.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(String::from)
    };
    let (tag, work_flow_id) = (text("tag"), text("work_flow_id"));
    if tag.is_none() && work_flow_id.is_none() {
        return Err(bad(
            "FS_0005",
            if v1 {
                "work_flow_id was not provided"
            } else {
                "tag missing"
            },
        ));
    }
    let data = match b.get("data") {
        Some(Value::Object(d)) if !d.is_empty() => d,
        _ => return Err(bad("FS_0004", "data missing")),
    };
    let frames =
        frames_of(data).map_err(|m| bad("FS_0003", &format!("Invalid data passed: {m}")))?;
    // v0 documents 1 to 10, v1's error table "1-9".
    let max_priority = if v1 { MAX_PRIORITY_V1 } else { MAX_PRIORITY };
    let priority_weight = match b.get("priority_weight") {
        None | Some(Value::Null) => DEFAULT_PRIORITY,
        Some(v) => match v.as_i64() {
            Some(w) if (1..=max_priority).contains(&w) && !v.is_f64() => w,
            _ => {
                return Err(bad(
                    "FS_00012",
                    &format!("priority_weight must be an integer in the range of 1-{max_priority}"),
                ))
            }
        },
    };
    let batch_id = match b.get("batch_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            Some(Uuid::parse_str(s).map_err(|_| bad("GE_0001", "Invalid UUID: batch_id"))?)
        }
        Some(_) => return Err(bad("GE_0001", "Invalid UUID: batch_id")),
    };
    let now = a.now();
    let seed = a.shared.config.seed;
    // The check and the insert under one lock: exactly one winner per reference_id.
    let mut guard = p.lock();
    let proj = &mut *guard;
    let batch = match batch_id {
        None => 0,
        Some(id) => proj
            .batches
            .iter()
            .position(|x| x.id == id)
            .ok_or_else(|| bad("GE_0001", "Invalid batch_id: no such batch in this project"))?,
    };
    if proj.by_ref.contains_key(&reference_id) {
        return Err(bad("FS_0001", "Duplicate Reference Id"));
    }
    let n = proj.jobs.len() as u64;
    let id = seeded::uuid(
        seed,
        "job",
        &[proj.id.as_bytes(), &n.to_le_bytes()[..]].concat(),
    );
    let cursor = (proj.last_cursor + 1).max(now as u64 * 1_000_000);
    proj.last_cursor = cursor;
    let failed = a.shared.config.exception_rate > 0.0
        && unit(&hash(seed, "failed", id.as_bytes())) < a.shared.config.exception_rate;
    let job = Job {
        id,
        reference_id: reference_id.clone(),
        batch,
        tag: tag.clone(),
        work_flow_id: work_flow_id.clone(),
        priority_weight,
        data: Value::Object(data.clone()),
        frames,
        created_ms: now,
        cursor,
        failed,
    };
    let idx = proj.jobs.len();
    proj.jobs.push(job);
    proj.by_ref.insert(reference_id.clone(), idx);
    proj.by_job.insert(id, idx);
    proj.batches[batch].jobs.push(idx);
    drop(guard);
    a.shared.stats.created([reference_id.as_str()]);
    let mut out = json!({"job_id": id.to_string(), "reference_id": reference_id});
    if v1 {
        out["work_flow_id"] = json!(work_flow_id.or(tag));
    } else {
        out["tag"] = json!(tag.or(work_flow_id));
    }
    Ok(ok(out))
}

async fn create_batch(
    State(a): S,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let p = a.project(&headers, &project)?;
    let Ok(Value::Object(b)) = serde_json::from_slice::<Value>(&body) else {
        return Err(bad("GE_0001", "Invalid request body: malformed JSON"));
    };
    let Some(name) = b
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.trim().is_empty())
    else {
        return Err(bad("GE_0002", "parameter missing: name"));
    };
    let description = b
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if a.switch("require_label") {
        let given = |k: &str| b.get(k).and_then(Value::as_str).filter(|v| !v.is_empty());
        if given("label").is_none() {
            return Err(bad("GE_0002", "parameter missing: label"));
        }
        if given("project_id") != Some(project.as_str()) {
            return Err(bad("GE_0002", "parameter missing: project_id"));
        }
    }
    let now = a.now();
    let mut proj = p.lock();
    if proj.batches.iter().any(|x| x.name == name) {
        return Err(bad(
            "BATCH_CREATION",
            "pq: duplicate key value violates unique constraint \"batches_project_id_name_unique\"",
        ));
    }
    let n = proj.batches.len() as u64;
    let id = seeded::uuid(
        a.shared.config.seed,
        "batch",
        &[proj.id.as_bytes(), &n.to_le_bytes()[..]].concat(),
    );
    proj.batches.push(Batch {
        id,
        name: name.to_string(),
        description,
        is_default: false,
        created_ms: now,
        jobs: vec![],
        hidden_reads: a.switch("details_lag") as u32,
    });
    Ok(ok(json!({ "batch_id": id.to_string() })))
}

async fn get_job(
    State(a): S,
    Path((project, job)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Answer {
    let p = a.project(&headers, &project)?;
    let v1 = uri.path().starts_with("/v1/");
    let proj = p.lock();
    let not_found = || bad("FS_0006", "Job Unit not found");
    let id = Uuid::parse_str(&job).map_err(|_| not_found())?;
    let &j = proj.by_job.get(&id).ok_or_else(not_found)?;
    let job = &proj.jobs[j];
    let status = a.status(job, a.now());
    let tag = job.tag.clone().or(job.work_flow_id.clone());
    let mut out = json!({
        "project_id": proj.id.to_string(), "reference_id": job.reference_id, "job_id": job.id.to_string(),
        "batch_id": proj.batches[job.batch].id.to_string(), "status": a.status_word(status), "tag": tag,
        "priority_weight": job.priority_weight,
        "result": if status == "completed" { a.result_url(job) } else { String::new() },
    });
    if v1 {
        out["work_flow_id"] = json!(job.work_flow_id.clone().or(job.tag.clone()));
    }
    Ok(ok(out))
}

async fn get_batch(
    State(a): S,
    Path((project, batch)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Answer {
    let p = a.project(&headers, &project)?;
    let v1 = uri.path().starts_with("/v1/");
    let q = Query::parse(uri.query());
    let proj = p.lock();
    let id = Uuid::parse_str(&batch).map_err(|_| bad("GE_0001", "Invalid UUID: batch_id"))?;
    let b = proj
        .batches
        .iter()
        .find(|x| x.id == id)
        .ok_or_else(|| bad("resource_error", "batch not found"))?;
    let token = q.get("page_token");
    let per_page = a.jobs_per_page();
    let page = paging::token_range(token, per_page, b.jobs.len(), |t| {
        let cursor: u64 = t.parse().ok()?;
        b.jobs.iter().position(|&j| proj.jobs[j].cursor == cursor)
    })
    .map_err(|()| bad("invalid_request_error", "Invalid pageToken provided"))?;
    let now = a.now();
    let jobs: Vec<Value> = b.jobs[page.clone()]
        .iter()
        .map(|&j| {
            let job = &proj.jobs[j];
            let status = a.status(job, now);
            let mut item = json!({"id": job.id.to_string(), "reference_id": job.reference_id, "status": a.status_word(status),
                "frames": job.frames, "annotations": if status == "completed" { a.annotations(job) } else { 0 }});
            if !v1 {
                item["priority_weight"] = json!(job.priority_weight);
                item["tag"] = json!(job.tag.clone().or(job.work_flow_id.clone()));
                item["viewer_url"] = json!("");
            }
            item
        })
        .collect();
    let facts = paging::Facts {
        page: paging::Page {
            number: 1,
            size: per_page as u64,
        },
        total: b.jobs.len() as u64,
        next_token: b
            .jobs
            .get(page.end)
            .map(|&j| proj.jobs[j].cursor.to_string())
            .unwrap_or_default(),
    };
    let mut body =
        json!({"id": b.id.to_string(), "project_id": proj.id.to_string(), "name": b.name});
    JOBS.write(body.as_object_mut().expect("an object"), jobs, &facts);
    Ok(ok(body))
}

async fn details(State(a): S, Path(project): Path<String>, headers: HeaderMap) -> Answer {
    let p = a.project(&headers, &project)?;
    let mut proj = p.lock();
    let now = a.now();
    let mut shown = Vec::new();
    for (i, b) in proj.batches.iter_mut().enumerate() {
        if b.hidden_reads > 0 {
            b.hidden_reads -= 1;
        } else {
            shown.push(i);
        }
    }
    let batches: Vec<Value> = shown
        .into_iter()
        .map(|i| {
            let mut item = batch_item(&proj, &proj.batches[i], &a, now);
            if a.switch("no_batch_counts") {
                let fields = item.as_object_mut().expect("an object");
                fields.remove("total_jobs");
                fields.remove("completed_jobs");
            }
            item
        })
        .collect();
    Ok(ok(
        json!({"name": proj.name, "base": "IMAGE", "batches": batches}),
    ))
}

async fn stats(State(a): S, Path(project): Path<String>, headers: HeaderMap) -> Answer {
    let p = a.project(&headers, &project)?;
    let proj = p.lock();
    let now = a.now();
    let items: Vec<Value> = proj
        .batches
        .iter()
        .map(|b| batch_item(&proj, b, &a, now))
        .collect();
    let sum = |k: &str| {
        items
            .iter()
            .map(|i| i[k].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    let completed_batches = items.iter().filter(|i| i["status"] == "Complete").count();
    Ok(ok(
        json!({"name": proj.name, "base": "IMAGE", "total_batches": items.len(),
        "completed_batches": completed_batches, "total_jobs": sum("total_jobs"),
        "completed_jobs": sum("completed_jobs"), "total_frames": sum("total_frames"),
        "completed_frames": sum("completed_frames"), "annotations": sum("annotations")}),
    ))
}

/// `GET /v1/attachments?url=<result url>`: 302 to a signed URL of the file (or, under the dialect's
/// `attachments`, 200 with the file or with JSON naming the signed URL).
async fn attachments(State(a): S, uri: Uri, headers: HeaderMap) -> Answer {
    let Some(mine) = a.key_project(&headers) else {
        return Err(fail(
            StatusCode::UNAUTHORIZED,
            "auth-failure",
            "authentication key provided is incorrect",
        ));
    };
    let q = Query::parse(uri.query());
    let Some(url) = q.get("url").filter(|u| !u.is_empty()) else {
        return Err(bad("GE_0002", "parameter missing: url"));
    };
    let prefix = format!("{}/_sim/results/", a.host());
    let inaccessible = || bad("FS_0007", "attachment not accessible");
    let file = url.strip_prefix(&prefix).ok_or_else(inaccessible)?;
    let now = a.now();
    let found = a.with_result(file, |p, _, job| (p, a.status(job, now) == "completed"));
    match found {
        Some((p, true)) if p == mine => {}
        _ => return Err(inaccessible()),
    }
    let expires = now + SIGNED_TTL_MS;
    let sig = a.signature(file, expires);
    let location = format!(
        "{}/_sim/signed/{file}?expires={expires}&sig={sig}",
        a.host()
    );
    match a.word("attachments") {
        Some("file") => return a.serve_result(file),
        Some("json_url") => return Ok(ok(json!({ "url": location }))),
        _ => {}
    }
    let mut res = StatusCode::FOUND.into_response();
    res.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&location).map_err(|_| inaccessible())?,
    );
    Ok(res)
}

/// The private result file, as storage serves it at a signed URL.
async fn signed(State(a): S, Path(file): Path<String>, uri: Uri, headers: HeaderMap) -> Answer {
    if headers.contains_key("x-api-key") {
        return Err(fail(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "sandbox: the Playment API key was sent to the storage host",
        ));
    }
    let q = Query::parse(uri.query());
    let expires: i64 = q.get("expires").and_then(|e| e.parse().ok()).unwrap_or(0);
    let sig = q.get("sig").unwrap_or("");
    if sig != a.signature(&file, expires) || a.now() > expires {
        return Err(fail(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "Request has expired or the signature does not match",
        ));
    }
    a.serve_result(&file)
}

/// The result URL itself (lenient, as before 15 Jul 2021: it serves the file without a signature).
async fn result_direct(State(a): S, Path(file): Path<String>) -> Answer {
    a.serve_result(&file)
}

async fn not_found() -> Response {
    fail(StatusCode::NOT_FOUND, "GE_0002", "route not found")
}

impl Simulator for PlaymentSim {
    fn router(self: Arc<Self>, routes: &Routes) -> Router {
        type Route = MethodRouter<Arc<PlaymentSim>>;
        let table: Vec<(&'static str, Route)> = vec![
            ("/v0/projects/{projectId}/jobs", post(create_job)),
            ("/v1/projects/{projectId}/jobs", post(create_job)),
            ("/projectsvc/projects/{projectId}/jobs", post(create_job)),
            ("/v1/project/{projectId}/batch", post(create_batch)),
            ("/v1/projects/{projectId}/batch", post(create_batch)),
            ("/v0/projects/{projectId}/jobs/{jobId}", get(get_job)),
            ("/v1/projects/{projectId}/jobs/{jobId}", get(get_job)),
            ("/v0/projects/{projectId}/batch/{batchId}", get(get_batch)),
            ("/v1/projects/{projectId}/batch/{batchId}", get(get_batch)),
            ("/v0/projects/{projectId}/details", get(details)),
            ("/v1/projects/{projectId}/details", get(details)),
            ("/v0/projects/{projectId}/stats", get(stats)),
            ("/v1/attachments", get(attachments)),
            ("/_sim/results/{file}", get(result_direct)),
            ("/_sim/signed/{file}", get(signed)),
        ];
        let mut r: Router<Arc<PlaymentSim>> = Router::new();
        for (template, route) in table {
            r = r.route(template, routes.api(template, route));
        }
        r.fallback(not_found).with_state(self)
    }

    fn project(&self) -> String {
        self.projects[0].lock().id.to_string()
    }

    /// The key, and the tag Playment hands out with it at integration (a job needs one).
    fn credentials(&self) -> Vec<(String, String)> {
        vec![
            ("api_key".to_string(), self.keys[0].0.clone()),
            ("tag".to_string(), TAG.to_string()),
        ]
    }

    fn expire_tokens(&self) {}

    fn error_body(&self, status: StatusCode, message: &str, _path: &str) -> Value {
        let code = match status.as_u16() {
            429 => "rate_limited",
            s if s >= 500 => "FS_0000",
            _ => "api_error",
        };
        json!({"success": false, "error": {"code": code, "message": message}})
    }
}
