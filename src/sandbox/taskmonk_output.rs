//! TaskMonk's output endpoints: result files written by an output job and fetched from a
//! pre-authorised URL, and the JSON dictionary of tasks, a page at a time.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, MethodRouter};
use axum::Json;
use serde_json::{json, Map, Value};

use super::super::clock::iso_ms;
use super::super::paging::{Envelope, Facts, Paging, Query};
use super::super::taskmonk_files::{self as files, FileType, Table};
use super::store::{Job, JobKind, OutFile, TaskStatus, TaskView};
use super::{
    bad_request, cell, error, json_or_empty, with_batch, Answer, Project, TaskMonkSim, FILE_TTL_MS,
    KEY_COLUMN, LEVELS, OUTPUT_FIELDS, OUTPUT_LATENCY_MS, S,
};

/// Which output file an output endpoint writes.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum OutputKind {
    /// `output` (v1 and v2): input and output fields.
    Batch,
    /// `output/file`: plus per-level, per-user columns.
    BatchAndUser,
    /// `levels/output`: plus per-level outputs.
    Levels,
}

impl TaskMonkSim {
    #[allow(clippy::too_many_arguments)]
    fn output(
        &self,
        p: &str,
        b: &str,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
        kind: OutputKind,
        camel: bool,
    ) -> Answer {
        let q = Query::parse(uri.query());
        let format = match q.get("output_format") {
            None => FileType::Csv,
            Some(f) => match f.trim().to_ascii_lowercase().as_str() {
                "csv" => FileType::Csv,
                "excel" | "xlsx" => FileType::Excel,
                _ => {
                    return Err(bad_request(&format!(
                        "output_format must be CSV or Excel, not {f:?}"
                    )))
                }
            },
        };
        let v = json_or_empty(body)?;
        let names: Vec<String> = v
            .get("field_names")
            .or_else(|| v.get("fieldNames"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        let completed_only = v
            .get("completedOnly")
            .or_else(|| v.get("completed_only"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let now = self.now();
        let (table, id) = with_batch(self, p, b, |st, id| {
            let batch = &st.batches[&id];
            let outputs: Vec<String> = OUTPUT_FIELDS.iter().map(|(n, _)| n.to_string()).collect();
            let mut columns: Vec<String> = batch
                .input_fields
                .iter()
                .chain(outputs.iter())
                .cloned()
                .collect();
            if !names.is_empty() {
                // A project that keeps the key column knows it before any task has it.
                let keeps_key = !self.dialect().switch("drop_key_column");
                if keeps_key
                    && names.iter().any(|n| n == KEY_COLUMN)
                    && !columns.iter().any(|c| c == KEY_COLUMN)
                {
                    columns.push(KEY_COLUMN.to_string());
                }
                if let Some(unknown) = names.iter().find(|n| !columns.contains(n)) {
                    return Err(bad_request(&format!("Unknown field {unknown:?}")));
                }
                columns.retain(|c| names.contains(c));
            }
            let mut header = columns.clone();
            if kind == OutputKind::Levels {
                for l in 1..=LEVELS {
                    header.extend(outputs.iter().map(|o| format!("L{l}_{o}")));
                }
            }
            let date_columns = self.dialect().word("date_columns").unwrap_or("level_user");
            // Without a level prefix a file has only the dates (a user column would pass for a field).
            let per_user: &[&str] = if date_columns == "unprefixed" {
                &["Start_Date", "Completion_Date"]
            } else {
                &["User", "Start_Date", "Completion_Date"]
            };
            if kind == OutputKind::BatchAndUser {
                for l in 1..=LEVELS {
                    for a in per_user {
                        header.push(level_column(date_columns, l, a));
                    }
                }
            }
            let mut rows = Vec::new();
            for task in self.tasks(st, batch, now) {
                let done = matches!(task.status, TaskStatus::Completed { .. });
                if completed_only && !done {
                    continue;
                }
                let empty = Map::new();
                let out = task.outputs.as_ref().unwrap_or(&empty);
                let mut row: Vec<String> = columns
                    .iter()
                    .map(|c| {
                        task.input
                            .get(c)
                            .or_else(|| out.get(c))
                            .map(cell)
                            .unwrap_or_default()
                    })
                    .collect();
                if kind == OutputKind::Levels {
                    for _ in 1..=LEVELS {
                        row.extend(
                            outputs
                                .iter()
                                .map(|o| out.get(o).map(cell).unwrap_or_default()),
                        );
                    }
                }
                if kind == OutputKind::BatchAndUser {
                    for l in 1..=LEVELS {
                        let (user, start, end) = match task.status {
                            TaskStatus::New => (String::new(), String::new(), String::new()),
                            TaskStatus::InProgress { started } => {
                                (format!("L{l}_U1"), iso_ms(started), String::new())
                            }
                            TaskStatus::Completed { started, done } => {
                                (format!("L{l}_U1"), iso_ms(started), iso_ms(done))
                            }
                        };
                        if per_user.len() == 3 {
                            row.push(user);
                        }
                        row.extend([start, end]);
                    }
                }
                let _ = task.id;
                rows.push(row);
            }
            Ok((Table { header, rows }, id))
        })?;
        let rows = table.rows.len() as u64;
        let bytes = files::write(&table, format)
            .map_err(|m| error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &m))?;
        let job_id = uuid::Uuid::new_v4().to_string();
        let token = hex::encode(rand::random::<[u8; 16]>());
        let ready_ms = now + OUTPUT_LATENCY_MS;
        let file_url = format!(
            "{}/_files/{token}/{id}_{job_id}.{}",
            self.public_base(headers),
            format.extension()
        );
        let mut st = self.state.lock();
        // Files stay fetchable for an hour of sandbox time, then go (as expiring blob URLs do).
        st.files.retain(|_, f| f.ready_ms + FILE_TTL_MS > now);
        st.files.insert(
            token,
            OutFile {
                ready_ms,
                kind: format,
                bytes,
            },
        );
        st.jobs.insert(
            job_id.clone(),
            Job {
                project: p.to_string(),
                created_ms: now,
                kind: JobKind::Output { ready_ms, rows },
            },
        );
        let reply = if camel {
            json!({"fileUrl": file_url, "jobId": job_id})
        } else {
            json!({"file_url": file_url, "job_id": job_id})
        };
        Ok(Json(reply).into_response())
    }

    /// Absolute URLs point back at this server, by the host the client used.
    fn public_base(&self, headers: &HeaderMap) -> String {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .unwrap_or_else(|| format!("127.0.0.1:{}", self.shared.port));
        format!("http://{host}")
    }
}

/// A per-level, per-user column (`attribute` as `Start_Date`) as the dialect's `date_columns` spells it.
fn level_column(spelling: &str, level: u32, attribute: &str) -> String {
    match spelling {
        "spaced" => format!("L{level} U1 {}", attribute.replace('_', " ")),
        "lower_snake" => format!("l{level}_u1_{}", attribute.to_ascii_lowercase()),
        "unprefixed" => attribute.replace('_', " "),
        _ => format!("L{level}_U1_{attribute}"),
    }
}

/// The route of an output endpoint: which file it writes, and whether it answers in camelCase (v1).
pub(super) fn output_route(kind: OutputKind, camel: bool) -> MethodRouter<Arc<TaskMonkSim>> {
    post(
        move |Project(t, p): Project,
              Path((_, b)): Path<(String, String)>,
              uri: Uri,
              headers: HeaderMap,
              body: Bytes| async move { t.output(&p, &b, &uri, &headers, &body, kind, camel) },
    )
}

/// `output/dictionary` pages through the tasks as JSON, asked for in the request body.
const DICTIONARY_PAGING: Paging = Paging::new("page", "page_size", 100, 1000).lenient(1);
const DICTIONARY: Envelope = Envelope {
    items: "items",
    total: Some("total"),
    page: Some("page"),
    size: Some("page_size"),
    next_token: None,
};

pub(super) async fn output_dictionary(
    Project(t, p): Project,
    Path((_, b)): Path<(String, String)>,
    body: Bytes,
) -> Answer {
    let v = json_or_empty(&body)?;
    // The vendor's cap, lowered by the dialect's `page_cap`.
    let cap = t.dialect().page_cap();
    let paging = Paging {
        max_size: cap.map_or(DICTIONARY_PAGING.max_size, |c| {
            c.min(DICTIONARY_PAGING.max_size)
        }),
        ..DICTIONARY_PAGING
    };
    let page = paging.read_json(&v);
    let completed_only = v
        .get("completedOnly")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let now = t.now();
    with_batch(&t, &p, &b, |st, id| {
        let batch = &st.batches[&id];
        let tasks: Vec<TaskView> = t
            .tasks(st, batch, now)
            .into_iter()
            .filter(|x| !completed_only || matches!(x.status, TaskStatus::Completed { .. }))
            .collect();
        let total = tasks.len() as u64;
        let items: Vec<Value> = page
            .slice(&tasks[..])
            .iter()
            .map(|x| {
                let mut data: Map<String, Value> = x.input.clone();
                if let Some(o) = &x.outputs {
                    data.extend(o.clone());
                }
                json!({
                    "external_id": x.input.get(KEY_COLUMN).map(cell).unwrap_or_else(|| x.id.to_string()),
                    "batch_id": id.to_string(),
                    "data": data,
                })
            })
            .collect();
        let facts = Facts {
            page,
            total,
            next_token: String::new(),
        };
        Ok(Json(DICTIONARY.body(items, &facts)).into_response())
    })
}

/// `GET {file_url}`: a pre-authorised blob URL, 404 until the output job has written it. Like blob
/// storage given a URL that is already authorised, it refuses a request that also carries credentials
/// (so a client that leaks its token to the file host is caught).
pub(super) async fn download(
    State(t): S,
    Path((token, _name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if headers.contains_key(header::AUTHORIZATION) {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidAuthenticationInfo",
            "The file URL is pre-authorised: send no Authorization header",
        );
    }
    let now = t.now();
    let st = t.state.lock();
    match st.files.get(&token) {
        Some(f) if now >= f.ready_ms => {
            let mut res = f.bytes.clone().into_response();
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(f.kind.content_type()),
            );
            res
        }
        _ => (StatusCode::NOT_FOUND, "The specified blob does not exist.").into_response(),
    }
}
