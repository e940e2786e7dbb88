//! The Deepen AI API simulator (`tools.deepen.ai/api/v2`; wire facts: docs/vendors/deepen.md).
//!
//! Deepen's model against the neutral one: project = the workspace's `clientId`, Batch = dataset,
//! record = a file inside an uploaded zip (its `file_id` is the entry name, which is the record
//! key), Job = an archive's upload and processing, result = the final-stage labels of a file.
//!
//! Flow as the vendor documents it: `POST /clients/{cid}/datasets` declares the archives
//! (`files: [{file_size, file_type}]`) and answers a `resumable_upload_url` per archive (a fake
//! object store served here under `/_sim/storage/`, called without the bearer token); the zip is
//! PUT there; `POST /datasets/{id}/process_uploaded_data {"file_name"}` unpacks it. Each file gets
//! one task per pipeline stage (`Labelling` then `QA` by default); tasks move
//! waiting -> ready -> in_progress -> submitted -> accepted (or rejected and back) on the sandbox
//! clock, lazily when read: `complete_after` seconds from processing to final labels. Modes
//! (`POST /_sim/deepen/mode`): `auto` (default), `manual` (only API calls move tasks) and
//! `reject_once` (the QA stage rejects each unit's labelling once before accepting it).
//!
//! A dataset is created with its archives declared and sized, as the sources show: a create without
//! sized `files` is refused, and no endpoint adds archives later (none is documented). Inferred, not
//! documented [I]: task statuses in lower snake case, `rejection_count` on a TaskResource, error
//! bodies `{"detail": ...}` (DRF). What no source settles is a dialect setting (`DIALECT`).
//! Uploaded archives are kept on disk, streamed in and out, never whole in memory.
//! No listing is paged (none is documented to be): each is answered whole, one page of everything.

// Errors here are finished HTTP answers, built at most once per request; boxing them buys nothing.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, RawPathParams, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put, MethodRouter};
use axum::{Json, Router};
use futures::StreamExt;
use parking_lot::Mutex;
use serde_json::{json, Map, Value};

use super::clock::seconds_to_ms;
use super::dialect::{Kind, SettingSpec, Value as DialectValue};
use super::paging::{Envelope, Query};
use super::seeded;
use super::{Routes, Shared, Simulator};

/// What no source settles about the Deepen API, as settings (`dialect.rs`; docs/vendors/deepen.md).
pub(super) const DIALECT: &[super::dialect::SettingSpec] = &[
    SettingSpec {
        name: "bare_tasks",
        kind: Kind::Switch,
        changed: DialectValue::Switch(true),
        doc: "tasks carry only stage_id and status: no task_id, file_id, label_id or timestamps \
              (TaskResource fields are undocumented; ledger finding 2)",
    },
    SettingSpec {
        name: "float_timestamps",
        kind: Kind::Switch,
        changed: DialectValue::Switch(true),
        doc: "every *_millis timestamp and file_size written as a float, 1591397296799.0 \
              (DatasetResource types them \"float\"; finding 6)",
    },
    SettingSpec {
        name: "uploaded_files",
        kind: Kind::Word(&["names", "paths", "objects"]),
        changed: DialectValue::Word("objects"),
        doc: "the form of a dataset's uploaded_files elements: archive names, object paths, or \
              {file_name, file_size} objects (\"List of uploaded files\", form undocumented; finding 7)",
    },
    SettingSpec {
        name: "finished_task_word",
        kind: Kind::Word(&["accepted", "Accepted", "done", "finished"]),
        changed: DialectValue::Word("done"),
        doc: "what a task whose work is finished reads (the Task Life Cycle page names UI states only; \
              finding 3)",
    },
    SettingSpec {
        name: "finished_stage",
        kind: Kind::Word(&["audit_ready", "audit_done", "labelling_done"]),
        changed: DialectValue::Word("labelling_done"),
        doc: "current_stage / current_stage_status once every task is finished: Audit ready (under \
              review), Audit done, or Labelling done (findings 3 and 4)",
    },
    SettingSpec {
        name: "tag_form",
        kind: Kind::Word(&["strings", "objects"]),
        changed: DialectValue::Word("objects"),
        doc: "the form of a dataset's tags: the strings the create call sent, or {tag_id, name} objects \
              (DatasetResource types tags TagResource[] without its fields; Tier IV sends strings; the \
              ledger's \"Records' fields\")",
    },
    SettingSpec {
        name: "datasets_map_without_ids",
        kind: Kind::Switch,
        changed: DialectValue::Switch(true),
        doc: "the values of GET /clients/{clientId}/datasets omit dataset_id: the map key is the id \
              (finding 12)",
    },
];

const API: &str = "/api/v2";
const LABELLER: &str = "sim-labeller@example.com";
const REVIEWER: &str = "sim-reviewer@example.com";
/// A task not accepted this long after its creation is "delayed" (sandbox clock).
const DELAY_MS: i64 = 7 * 24 * 3600 * 1000;

#[path = "deepen_storage.rs"]
mod storage;
#[path = "deepen_store.rs"]
mod store;
#[path = "deepen_views.rs"]
mod views;

use store::{
    dataset_key, human, set, submit, track_label, Archive, Dataset, Mode, Store, Task, TaskStatus,
};

pub struct DeepenSim {
    shared: Arc<Shared>,
    client_id: String,
    token: String,
    dir: PathBuf,
    store: Mutex<Store>,
}

type Answer = Result<Response, Response>;
type S = State<Arc<DeepenSim>>;

/// An authorised call: the bearer token is valid and, on a `/clients/{clientId}/...` route, the
/// client id is the workspace's. Extracted before anything else of the request is looked at.
struct Authed(Arc<DeepenSim>);

impl FromRequestParts<Arc<DeepenSim>> for Authed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, a: &Arc<DeepenSim>) -> Result<Self, Response> {
        let params = RawPathParams::from_request_parts(parts, a)
            .await
            .map_err(IntoResponse::into_response)?;
        a.authorize(&parts.headers)?;
        if let Some((_, cid)) = params.iter().find(|(k, _)| *k == "clientId") {
            a.check_client(cid)?;
        }
        Ok(Authed(Arc::clone(a)))
    }
}

fn seeded(seed: u64, what: &str) -> [u8; 32] {
    seeded::digest(seed, &[what.as_bytes()])
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

fn alnum(bytes: &[u8], n: usize) -> String {
    bytes
        .iter()
        .cycle()
        .take(n)
        .map(|b| ALNUM[*b as usize % ALNUM.len()] as char)
        .collect()
}

fn detail(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "detail": message }))).into_response()
}

fn bad(message: &str) -> Response {
    detail(StatusCode::BAD_REQUEST, message)
}

fn not_found() -> Response {
    detail(StatusCode::NOT_FOUND, "Not found.")
}

fn default_stages() -> Vec<Value> {
    vec![
        json!({"stage_id": "Labelling", "can_edit": true}),
        json!({"stage_id": "QA", "can_edit": false}),
    ]
}

/// The name of an upload URL's object, its last path segment (what Tier IV sends back).
fn last_segment(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

impl DeepenSim {
    pub fn new(shared: Arc<Shared>) -> Self {
        let seed = shared.config.seed;
        let client_id = format!("client_{}", alnum(&seeded(seed, "client"), 12));
        let token = hex::encode(&seeded(seed, "token")[..24]);
        let dir = std::env::temp_dir().join(format!(
            "labelport-deepen-{}-{}",
            std::process::id(),
            hex::encode(rand::random::<[u8; 6]>())
        ));
        let _ = std::fs::create_dir_all(&dir);
        let profile = json!({
            "profile_id": format!("prof_{}", alnum(&seeded(seed, "profile"), 12)),
            "profile_name": "Default",
            "features": {"box": {"attributes": {}, "label_category_ids": ["car", "pedestrian", "bicycle"]}},
            "instructions": {"text": ""},
            "auto_detect_objects_end_point": "",
            "notification_url": "",
            "pipeline_spec": default_stages(),
            "preferences": {},
        });
        DeepenSim {
            client_id,
            token,
            dir,
            store: Mutex::new(Store {
                datasets: HashMap::new(),
                order: Vec::new(),
                task_owner: HashMap::new(),
                uploads: HashMap::new(),
                profiles: vec![profile],
                counter: 0,
                mode: Mode::Auto,
                fail_processing: None,
            }),
            shared,
        }
    }

    fn now(&self) -> i64 {
        self.shared.clock.now_ms()
    }

    /// The time one human step of one stage takes in auto mode.
    fn step_ms(&self, stages: usize) -> i64 {
        seconds_to_ms(self.shared.config.complete_after) / (2 * stages.max(1) as i64)
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<(), Response> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(detail(
                StatusCode::UNAUTHORIZED,
                "Authentication credentials were not provided.",
            ));
        };
        let value = value.to_str().unwrap_or("").trim();
        match value.split_once(' ') {
            Some((scheme, token))
                if scheme.eq_ignore_ascii_case("bearer") && token.trim() == self.token =>
            {
                Ok(())
            }
            _ => Err(detail(StatusCode::UNAUTHORIZED, "Invalid token.")),
        }
    }

    fn check_client(&self, cid: &str) -> Result<(), Response> {
        if cid == self.client_id {
            Ok(())
        } else {
            Err(detail(
                StatusCode::FORBIDDEN,
                "You do not have permission to perform this action.",
            ))
        }
    }

    fn next_id(&self, store: &mut Store, what: &str, n: usize) -> String {
        store.counter += 1;
        let bytes = seeded(
            self.shared.config.seed,
            &format!("{what}:{}", store.counter),
        );
        alnum(&bytes, n)
    }

    fn upload_url(&self, d: &Dataset, a: &Archive) -> String {
        let name = format!("{}/{}/{}", self.client_id, d.id, a.file_name);
        let mut u = url::Url::parse(&format!(
            "http://127.0.0.1:{}/_sim/storage/upload",
            self.shared.port
        ))
        .expect("a valid URL");
        u.query_pairs_mut()
            .append_pair("uploadType", "resumable")
            .append_pair("name", &name)
            .append_pair("upload_id", &a.upload_id);
        u.to_string()
    }

    fn archive_path(&self, upload_id: &str) -> PathBuf {
        self.dir.join(format!("{upload_id}.zip"))
    }

    // ---- progression -----------------------------------------------------------------------
}

// ---- handlers ----------------------------------------------------------------------------------

fn json_body(body: &[u8]) -> Result<Value, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| bad(&format!("JSON parse error - {e}")))
}

async fn list_datasets(Authed(a): Authed) -> Answer {
    let mut store = a.store.lock();
    let (now, mode) = (a.now(), store.mode);
    let order = store.order.clone();
    let mut out = Map::new();
    for id in order {
        if let Some(d) = store.datasets.get_mut(&id) {
            a.tick(d, now, mode);
            let mut j = a.dataset_json(d, now);
            if a.shared.config.dialect.switch("datasets_map_without_ids") {
                if let Some(o) = j.as_object_mut() {
                    o.remove("dataset_id");
                }
            }
            out.insert(id.clone(), j);
        }
    }
    Ok(Json(Value::Object(out)).into_response())
}

async fn list_dataset_ids(Authed(a): Authed) -> Answer {
    let store = a.store.lock();
    let list: Vec<Value> = store
        .order
        .iter()
        .filter_map(|id| store.datasets.get(id))
        .map(|d| json!({"dataset_id": d.id, "dataset_name": d.name}))
        .collect();
    Ok(Json(Envelope::items("datasets").whole(list)).into_response())
}

async fn create_dataset(Authed(a): Authed, body: Bytes) -> Answer {
    let v = json_body(&body)?;
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let name = text("dataset_name")
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| bad("dataset_name: This field is required."))?;
    let dataset_type =
        text("dataset_type").ok_or_else(|| bad("dataset_type: This field is required."))?;
    if !["images", "video", "3d"].contains(&dataset_type.as_str()) {
        return Err(bad(&format!(
            "dataset_type: \"{dataset_type}\" is not a valid choice."
        )));
    }
    let mode = text("labelling_mode").unwrap_or_else(|| "frame_by_frame".into());
    if !["frame_by_frame", "label_by_label"].contains(&mode.as_str()) {
        return Err(bad(&format!(
            "labelling_mode: \"{mode}\" is not a valid choice."
        )));
    }
    let format = text("dataset_format");
    if dataset_type == "3d" {
        match format.as_deref() {
            Some("json" | "default") => {}
            _ => {
                return Err(bad(
                    "dataset_format: must be \"json\" or \"default\" for 3d datasets.",
                ))
            }
        }
    }
    // "We need the exact size of the zip file to create a new dataset" (Quickstart): no archive, no dataset.
    let files =
        match v.get("files") {
            Some(Value::Array(f)) if !f.is_empty() => f.clone(),
            Some(Value::Array(_)) | None | Some(Value::Null) => return Err(bad(
                "files: the exact size of each file to upload is required (file_size, file_type).",
            )),
            Some(_) => return Err(bad("files: Expected a list of items.")),
        };
    let mut store = a.store.lock();
    let profile = if let Some(p) = v.get("labelling_profile").filter(|p| p.is_object()) {
        p.clone()
    } else if let Some(pid) = text("labelling_profile_id") {
        store
            .profiles
            .iter()
            .find(|p| p["profile_id"] == json!(pid))
            .cloned()
            .ok_or_else(|| {
                detail(
                    StatusCode::NOT_FOUND,
                    &format!("Labelling profile {pid} not found."),
                )
            })?
    } else {
        store.profiles[0].clone()
    };
    let stages = profile
        .get("pipeline_spec")
        .and_then(Value::as_array)
        .filter(|s| !s.is_empty())
        .cloned()
        .unwrap_or_else(default_stages);
    let (label_type, categories) = profile
        .get("features")
        .and_then(Value::as_object)
        .and_then(|f| {
            f.iter().find_map(|(t, spec)| {
                let cats: Vec<String> = spec
                    .get("label_category_ids")
                    .and_then(Value::as_array)?
                    .iter()
                    .filter_map(|c| c.as_str().map(str::to_string))
                    .collect();
                (!cats.is_empty()).then(|| (t.clone(), cats))
            })
        })
        .unwrap_or_else(|| {
            let t = if dataset_type == "3d" {
                "3d_bbox"
            } else {
                "box"
            };
            (t.to_string(), vec!["car".to_string()])
        });
    let id = a.next_id(&mut store, "dataset", 24);
    let mut d = Dataset {
        id: id.clone(),
        name,
        dataset_type,
        dataset_format: format,
        sequence: mode == "label_by_label",
        profile_id: profile
            .get("profile_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        stages,
        categories,
        label_type,
        tags: v.get("tags").cloned().unwrap_or(json!([])),
        created_ms: a.now(),
        archives: vec![],
        files: vec![],
        file_index: HashMap::new(),
        units: 0,
        tasks: vec![],
        processing_until: 0,
        marked_done: false,
        user_scopes: v.get("user_scopes").cloned().unwrap_or(json!([])),
        processing_error: None,
    };
    a.declare(&mut store, &mut d, &files).map_err(|m| bad(&m))?;
    let out = a.dataset_json(&d, a.now());
    store.order.push(id.clone());
    store.datasets.insert(id, d);
    Ok(Json(out).into_response())
}

async fn get_dataset(Authed(a): Authed, Path(did): Path<String>) -> Answer {
    let out = a.with_dataset(&did, |a, _, d| Ok(a.dataset_json(d, a.now())))?;
    Ok(Json(out).into_response())
}

async fn delete_dataset(Authed(a): Authed, Path(did): Path<String>) -> Answer {
    let mut store = a.store.lock();
    let id = dataset_key(&did).to_string();
    let d = store.datasets.remove(&id).ok_or_else(not_found)?;
    store.order.retain(|x| *x != id);
    for t in &d.tasks {
        store.task_owner.remove(&t.id);
    }
    for ar in &d.archives {
        store.uploads.remove(&ar.upload_id);
        let _ = std::fs::remove_file(a.archive_path(&ar.upload_id));
    }
    Ok(Json(json!({})).into_response())
}

async fn list_files(Authed(a): Authed, Path(did): Path<String>) -> Answer {
    let files = a.with_dataset(&did, |a, _, d| {
        Ok(d.files
            .iter()
            .map(|f| a.file_json(d, f))
            .collect::<Vec<_>>())
    })?;
    Ok(Json(json!({ "files": files })).into_response())
}

async fn get_file(Authed(a): Authed, Path((did, fid)): Path<(String, String)>) -> Answer {
    let out = a.with_dataset(&did, |a, _, d| {
        let i = *d.file_index.get(&fid).ok_or_else(not_found)?;
        Ok(a.file_json(d, &d.files[i]))
    })?;
    Ok(Json(out).into_response())
}

async fn process_upload(Authed(a): Authed, Path(did): Path<String>, body: Bytes) -> Answer {
    let v = json_body(&body)?;
    let Some(name) = v.get("file_name").and_then(Value::as_str) else {
        return Err(bad("file_name: This field is required."));
    };
    let name = last_segment(name).to_string();
    let out = a.with_dataset(&did, |a, store, d| {
        let k = d
            .archives
            .iter()
            .position(|ar| ar.file_name == name)
            .ok_or_else(|| bad(&format!("No uploaded file named {name}.")))?;
        if d.archives[k].uploaded.is_none() {
            return Err(bad(&format!("File {name} has not been uploaded yet.")));
        }
        // [I] Processing an archive twice does nothing the second time.
        if let Some(message) = store.fail_processing.clone() {
            d.archives[k].processed = true;
            d.processing_error = Some(message);
        } else if !d.archives[k].processed {
            a.unpack(store, d, k)?;
        }
        Ok(json!({}))
    })?;
    Ok(Json(out).into_response())
}

async fn mark_done(Authed(a): Authed, Path(did): Path<String>) -> Answer {
    a.with_dataset(&did, |a, _, d| {
        let now = a.now();
        for t in d.tasks.iter_mut() {
            if t.status != TaskStatus::Accepted {
                set(t, TaskStatus::Accepted, now, None);
            }
        }
        d.marked_done = true;
        Ok(())
    })?;
    Ok(Json(json!({})).into_response())
}

async fn user_scopes(Authed(a): Authed, Path(did): Path<String>, body: Bytes) -> Answer {
    let v = json_body(&body)?;
    a.with_dataset(&did, |_, _, d| {
        if let Some(s) = v.get("user_scopes") {
            d.user_scopes = s.clone();
        }
        Ok(())
    })?;
    Ok(Json(json!({})).into_response())
}

/// `file_tasks` / `label_tasks` assignments: any JSON is accepted; recognisable items
/// `{stage_id, email, file_ids | label_ids}` set the assignee [I].
async fn assign(Authed(a): Authed, Path(did): Path<String>, body: Bytes) -> Answer {
    let v = json_body(&body)?;
    let items: Vec<Value> = match &v {
        Value::Array(items) => items.clone(),
        Value::Object(o) => o
            .values()
            .find_map(|x| x.as_array().cloned())
            .unwrap_or_else(|| vec![v.clone()]),
        _ => vec![],
    };
    a.with_dataset(&did, |_, _, d| {
        for item in items {
            let (Some(stage), Some(email)) = (
                item.get("stage_id").and_then(Value::as_str),
                item.get("email").and_then(Value::as_str),
            ) else {
                continue;
            };
            let ids: Vec<String> = item
                .get("file_ids")
                .or_else(|| item.get("label_ids"))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let Some(s) = (0..d.stages.len()).find(|&s| d.stage_id(s) == stage) else {
                continue;
            };
            let units: Vec<usize> = if d.sequence {
                (0..d.units)
                    .filter(|&u| ids.contains(&track_label(d, u)))
                    .collect()
            } else {
                ids.iter()
                    .filter_map(|f| d.file_index.get(f).copied())
                    .collect()
            };
            let n = d.stages.len();
            for u in units {
                d.tasks[u * n + s].assignee = email.to_string();
            }
        }
        Ok(())
    })?;
    Ok(Json(json!({})).into_response())
}

async fn get_labels(Authed(a): Authed, Path(did): Path<String>, uri: Uri) -> Answer {
    let q = Query::parse(uri.query());
    let flag = |k: &str| q.get(k).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let (final_only, by_file, filter) = (
        flag("final"),
        flag("labels_with_file_ids_order"),
        flag("filter_existing_categories"),
    );
    let label_set = q.get("labelSetId").unwrap_or("default").to_string();
    let out = a.with_dataset(&did, |a, _, d| {
        let n = d.stages.len();
        let stages: Vec<usize> = if final_only {
            vec![n - 1]
        } else {
            (0..n).collect()
        };
        let mut per_file = Vec::with_capacity(d.files.len());
        for i in 0..d.files.len() {
            let mut labels = Vec::new();
            if label_set == "default" {
                for &s in &stages {
                    labels.extend(a.labels_of(d, i, s));
                }
            }
            if filter {
                labels.retain(|l| {
                    l["label_category_id"]
                        .as_str()
                        .is_some_and(|c| d.categories.iter().any(|x| x == c))
                });
            }
            per_file.push((d.files[i].file_id.clone(), labels));
        }
        Ok(if by_file {
            let map: Map<String, Value> = per_file
                .into_iter()
                .map(|(f, l)| (f, Value::Array(l)))
                .collect();
            json!({ "labels": map })
        } else {
            json!({ "all_labels": per_file.into_iter().flat_map(|(_, l)| l).collect::<Vec<_>>() })
        })
    })?;
    Ok(Json(out).into_response())
}

async fn list_tasks(Authed(a): Authed, Path(did): Path<String>) -> Answer {
    let tasks = a.with_dataset(&did, |a, _, d| {
        Ok(d.tasks
            .iter()
            .map(|t| a.task_json(d, t))
            .collect::<Vec<_>>())
    })?;
    Ok(Json(Envelope::items("tasks").whole(tasks)).into_response())
}

#[derive(Clone, Copy)]
enum Action {
    Submit,
    Accept,
    Reject,
}

async fn task_action(a: Arc<DeepenSim>, tid: String, body: Bytes, action: Action) -> Answer {
    let reason = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("reason").and_then(Value::as_str).map(str::to_string));
    let owner = a.store.lock().task_owner.get(&tid).cloned();
    let Some(did) = owner else {
        return Err(not_found());
    };
    let out = a.with_dataset(&did, |a, store, d| {
        let i = d
            .tasks
            .iter()
            .position(|t| t.id == tid)
            .ok_or_else(not_found)?;
        let ids = d.unit_tasks(d.tasks[i].unit);
        let (now, mode) = (a.now(), store.mode);
        let q = a.step_ms(d.stages.len());
        let status = d.tasks[i].status;
        let refuse = |what: &str| {
            bad(&format!(
                "Task {tid} cannot be {what}: it is {}.",
                status.as_str()
            ))
        };
        match action {
            Action::Submit => {
                if !matches!(
                    status,
                    TaskStatus::Ready | TaskStatus::InProgress | TaskStatus::Rejected
                ) {
                    return Err(refuse("submitted"));
                }
                submit(d, &ids, i, now, mode, q);
            }
            Action::Accept => {
                if status != TaskStatus::Submitted {
                    return Err(refuse("accepted"));
                }
                set(&mut d.tasks[i], TaskStatus::Accepted, now, None);
            }
            Action::Reject => {
                if status != TaskStatus::Submitted {
                    return Err(refuse("rejected"));
                }
                let t = &mut d.tasks[i];
                t.rejections += 1;
                t.reason = reason.clone();
                set(t, TaskStatus::Rejected, now, human(mode, now + q));
                let stage = d.tasks[i].stage;
                if let Some(&next) = ids.get(stage + 1) {
                    set(&mut d.tasks[next], TaskStatus::Waiting, now, None);
                }
            }
        }
        Ok(a.task_json(d, &d.tasks[i]))
    })?;
    Ok(Json(out).into_response())
}

/// The route of a task action: submit, accept or reject.
fn action_route(action: Action) -> MethodRouter<Arc<DeepenSim>> {
    post(
        move |Authed(a): Authed, Path(tid): Path<String>, body: Bytes| {
            task_action(a, tid, body, action)
        },
    )
}

/// Every task of the client, brought up to date, passed through `keep`.
fn client_tasks(a: &DeepenSim, keep: impl Fn(&Dataset, &Task) -> bool) -> (Vec<Value>, Vec<Value>) {
    let mut store = a.store.lock();
    let (now, mode) = (a.now(), store.mode);
    let order = store.order.clone();
    let (mut files, mut labels) = (Vec::new(), Vec::new());
    for id in order {
        let Some(d) = store.datasets.get_mut(&id) else {
            continue;
        };
        a.tick(d, now, mode);
        for t in d.tasks.iter().filter(|t| keep(d, t)) {
            let j = a.task_json(d, t);
            if d.sequence {
                labels.push(j);
            } else {
                files.push(j);
            }
        }
    }
    (files, labels)
}

async fn user_tasks(Authed(a): Authed, uri: Uri) -> Answer {
    let q = Query::parse(uri.query());
    let Some(email) = q.get("email").map(str::to_string) else {
        return Err(bad("email: This query parameter is required."));
    };
    let (files, labels) = client_tasks(&a, |_, t| t.assignee.eq_ignore_ascii_case(&email));
    Ok(Json(json!({"file_tasks": files, "label_tasks": labels})).into_response())
}

async fn delayed_tasks(Authed(a): Authed) -> Answer {
    let now = a.now();
    let (mut files, labels) = client_tasks(&a, |_, t| {
        t.status != TaskStatus::Accepted && now - t.created_ms > DELAY_MS
    });
    files.extend(labels);
    // Deepen's API reference spells the key "delayed tasks"; both spellings are answered.
    Ok(Json(json!({"delayed_tasks": files.clone(), "delayed tasks": files})).into_response())
}

async fn list_profiles(Authed(a): Authed) -> Answer {
    let profiles = a.store.lock().profiles.clone();
    Ok(Json(Envelope::items("profiles").whole(profiles)).into_response())
}

async fn create_profile(Authed(a): Authed, body: Bytes) -> Answer {
    let v = json_body(&body)?;
    let Some(name) = v.get("profile_name").and_then(Value::as_str) else {
        return Err(bad("profile_name: This field is required."));
    };
    let mut store = a.store.lock();
    let id = format!("prof_{}", a.next_id(&mut store, "profile", 12));
    let mut p = json!({
        "profile_id": id,
        "profile_name": name,
        "features": v.get("features").cloned().unwrap_or(json!({})),
        "instructions": v.get("instructions").cloned().unwrap_or(json!({"text": ""})),
        "auto_detect_objects_end_point": v.get("auto_detect_objects_end_point").cloned().unwrap_or(json!("")),
        "notification_url": v.get("notification_url").cloned().unwrap_or(json!("")),
        "pipeline_spec": v.get("pipeline_spec").cloned().unwrap_or(json!(default_stages())),
        "preferences": v.get("preferences").cloned().unwrap_or(json!({})),
    });
    if p["pipeline_spec"].as_array().is_none_or(|s| s.is_empty()) {
        p["pipeline_spec"] = json!(default_stages());
    }
    store.profiles.push(p);
    Ok(Json(json!({ "profile_id": id })).into_response())
}

async fn get_profile(Authed(a): Authed, Path(pid): Path<String>) -> Answer {
    let store = a.store.lock();
    let p = store
        .profiles
        .iter()
        .find(|p| p["profile_id"] == json!(pid))
        .cloned()
        .ok_or_else(not_found)?;
    Ok(Json(p).into_response())
}

/// `POST /_sim/deepen/mode {"mode": "auto" | "manual" | "reject_once"}`.
async fn sim_mode(State(a): S, body: Bytes) -> Response {
    let mode = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("mode").and_then(Value::as_str).map(str::to_string));
    let mode = match mode.as_deref() {
        Some("auto") => Mode::Auto,
        Some("manual") => Mode::Manual,
        Some("reject_once") => Mode::RejectOnce,
        _ => return (
            StatusCode::BAD_REQUEST,
            Json(json!({"detail": "expected {\"mode\": \"auto\" | \"manual\" | \"reject_once\"}"})),
        )
            .into_response(),
    };
    a.store.lock().mode = mode;
    Json(json!({ "mode": mode_name(mode) })).into_response()
}

/// `POST /_sim/deepen/preprocessing_error {"message": "..."}`: every archive processed from now on fails
/// preprocessing with that message (`processing_status: preprocessing_error`, the older DatasetResource
/// page); `{"message": null}` ends it.
async fn sim_preprocessing_error(State(a): S, body: Bytes) -> Response {
    let message = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string));
    a.store.lock().fail_processing = message.clone();
    Json(json!({ "message": message })).into_response()
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Auto => "auto",
        Mode::Manual => "manual",
        Mode::RejectOnce => "reject_once",
    }
}

async fn fallback(uri: Uri) -> Response {
    let _ = uri;
    not_found()
}

impl Simulator for DeepenSim {
    fn router(self: Arc<Self>, routes: &Routes) -> Router {
        type Route = MethodRouter<Arc<DeepenSim>>;
        let table: Vec<(&'static str, Route)> = vec![
            (
                "/api/v2/clients/{clientId}/datasets",
                get(list_datasets).post(create_dataset),
            ),
            (
                "/api/v2/clients/{clientId}/datasets_ids",
                get(list_dataset_ids),
            ),
            (
                "/api/v2/datasets/{datasetId}",
                get(get_dataset).delete(delete_dataset),
            ),
            ("/api/v2/datasets/{datasetId}/files", get(list_files)),
            ("/api/v2/datasets/{datasetId}/files/{fileId}", get(get_file)),
            (
                "/api/v2/datasets/{datasetId}/process_uploaded_data",
                post(process_upload),
            ),
            (
                "/api/v2/datasets/{datasetId}/mark_labelling_done",
                post(mark_done),
            ),
            (
                "/api/v2/datasets/{datasetId}/user_scopes",
                post(user_scopes),
            ),
            ("/api/v2/datasets/{datasetId}/file_tasks", post(assign)),
            ("/api/v2/datasets/{datasetId}/label_tasks", post(assign)),
            ("/api/v2/datasets/{datasetId}/labels", get(get_labels)),
            ("/api/v2/datasets/{datasetId}/tasks", get(list_tasks)),
            (
                "/api/v2/tasks/{taskId}/submit",
                action_route(Action::Submit),
            ),
            (
                "/api/v2/tasks/{taskId}/accept",
                action_route(Action::Accept),
            ),
            (
                "/api/v2/tasks/{taskId}/reject",
                action_route(Action::Reject),
            ),
            ("/api/v2/clients/{clientId}/user_tasks", get(user_tasks)),
            (
                "/api/v2/clients/{clientId}/delayed_tasks",
                get(delayed_tasks),
            ),
            (
                "/api/v2/clients/{clientId}/labelling_profiles",
                get(list_profiles).post(create_profile),
            ),
            ("/api/v2/labelling_profiles/{profileId}", get(get_profile)),
        ];
        let mut r: Router<Arc<DeepenSim>> = Router::new();
        for (template, route) in table {
            let route = routes.api(template, route);
            // Django answers with and without the trailing slash alike here.
            r = r
                .route(template, route.clone())
                .route(&format!("{template}/"), route);
        }
        debug_assert!(API.starts_with("/api"));
        // The object store is not Deepen's API: no bearer token, no faults (its body is streamed,
        // and the fault layer buffers bodies), latency and statistics only.
        r.route(
            "/_sim/storage/upload",
            routes.exempt("/_sim/storage/upload", put(storage::put)),
        )
        .route(
            "/_sim/deepen/mode",
            routes.control("/_sim/deepen/mode", post(sim_mode)),
        )
        .route(
            "/_sim/deepen/preprocessing_error",
            routes.control(
                "/_sim/deepen/preprocessing_error",
                post(sim_preprocessing_error),
            ),
        )
        .fallback(fallback)
        .with_state(self)
    }

    fn project(&self) -> String {
        self.client_id.clone()
    }

    fn credentials(&self) -> Vec<(String, String)> {
        vec![("api_token".to_string(), self.token.clone())]
    }

    /// Deepen tokens are static: nothing expires.
    fn expire_tokens(&self) {}

    fn error_body(&self, _status: StatusCode, message: &str, _path: &str) -> Value {
        json!({ "detail": message })
    }
}

impl Drop for DeepenSim {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
#[path = "deepen_tests.rs"]
mod tests;
