//! The TaskMonk simulator's state: batches, import and output jobs, and each task's status as computed
//! from the sandbox clock when asked (see `taskmonk.rs` for the timeline).

use std::collections::{BTreeMap, HashMap};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Map, Value};

use super::super::clock::parse_instant_us;
use super::super::seeded;
use super::super::taskmonk_files::{FileType, Table};
use super::{
    bad_request, cell, error, Answer, TaskMonkSim, KEY_COLUMN, OUTPUT_FIELDS, REWORK_MS, ROW_LIMIT,
};

pub(super) struct SimState {
    pub(super) next_batch: u64,
    pub(super) next_task: u64,
    pub(super) batches: BTreeMap<u64, Batch>,
    pub(super) jobs: HashMap<String, Job>,
    /// Output files by their unguessable token.
    pub(super) files: HashMap<String, OutFile>,
    pub(super) rows_per_second: f64,
    pub(super) stall: bool,
    pub(super) auto_complete: bool,
    pub(super) schema: Option<Vec<String>>,
    pub(super) next_taxonomy: u64,
}

pub(super) struct Batch {
    pub(super) id: u64,
    pub(super) project: String,
    pub(super) name: String,
    pub(super) priority: i64,
    pub(super) comments: String,
    pub(super) notifications: Value,
    pub(super) start_time: Option<String>,
    pub(super) state: String,
    /// Input columns in first-seen order over every upload.
    pub(super) input_fields: Vec<String>,
    /// Import job ids in creation order.
    pub(super) imports: Vec<String>,
    /// Tasks completed by `/_sim/batch/{b}/complete`: task id -> (ms, outputs).
    pub(super) manual: HashMap<u64, (i64, Map<String, Value>)>,
}

pub(super) enum JobKind {
    Import {
        batch: u64,
        rows: Vec<Map<String, Value>>,
        first_task: u64,
        rows_per_second: f64,
        /// Rows this job ever ingests (fewer than `rows.len()` when stalled).
        limit: usize,
        auto_complete: bool,
    },
    Output {
        ready_ms: i64,
        /// Rows in the file: the job's `total` where the dialect counts rows.
        rows: u64,
    },
}

pub(super) struct Job {
    pub(super) project: String,
    pub(super) created_ms: i64,
    pub(super) kind: JobKind,
}

pub(super) struct OutFile {
    pub(super) ready_ms: i64,
    pub(super) kind: FileType,
    pub(super) bytes: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum TaskStatus {
    New,
    InProgress { started: i64 },
    Completed { started: i64, done: i64 },
}

/// A task as seen at one instant.
pub(super) struct TaskView<'a> {
    pub(super) id: u64,
    pub(super) input: &'a Map<String, Value>,
    pub(super) status: TaskStatus,
    pub(super) outputs: Option<Map<String, Value>>,
}

impl TaskMonkSim {
    /// A seeded draw in [0, 1) for (what, task).
    fn draw(&self, what: &str, task: u64) -> f64 {
        let d = seeded::digest(
            self.shared.config.seed,
            &[what.as_bytes(), &task.to_le_bytes()],
        );
        seeded::unit(&d)
    }

    pub(super) fn seeded_outputs(&self, task: u64) -> Map<String, Value> {
        let mut out = Map::new();
        for (name, choices) in OUTPUT_FIELDS {
            let u = self.draw(name, task);
            let v = if choices.is_empty() {
                format!("{:.2}", 0.5 + u * 0.49)
            } else {
                choices[(u * choices.len() as f64) as usize % choices.len()].to_string()
            };
            out.insert(name.to_string(), Value::String(v));
        }
        out
    }

    /// The seeded outputs, but for the `label`, with a quality set, drawn from the record's truth (`truth`).
    fn labelled_outputs(&self, task: u64, row: &Map<String, Value>) -> Map<String, Value> {
        let mut out = self.seeded_outputs(task);
        if let Some(q) = self.shared.quality() {
            use crate::sandbox::truth;
            let id = truth::identity(row);
            let seed = self.shared.config.seed;
            let class = truth::labelled_class(q, seed, "taskmonk", &id, "label");
            out.insert("label".into(), Value::String(class.into()));
        }
        out
    }

    // ---- tasks -----------------------------------------------------------------------------

    /// Every ingested task of a batch at `now`, in task id order.
    pub(super) fn tasks<'a>(&self, st: &'a SimState, b: &'a Batch, now: i64) -> Vec<TaskView<'a>> {
        let ca = self.complete_after_ms();
        let mut out = Vec::new();
        for jid in &b.imports {
            let Some(job) = st.jobs.get(jid) else {
                continue;
            };
            let JobKind::Import {
                rows,
                first_task,
                rows_per_second,
                limit,
                auto_complete,
                ..
            } = &job.kind
            else {
                continue;
            };
            for (i, row) in rows.iter().enumerate().take(*limit) {
                let ingested = job.created_ms + ingest_offset_ms(i, *rows_per_second);
                if ingested > now {
                    break;
                }
                let id = first_task + i as u64;
                let (status, outputs) = if let Some((done, outputs)) = b.manual.get(&id) {
                    let started = (*done).min(ingested + ca / 2).max(ingested);
                    let s = TaskStatus::Completed {
                        started,
                        done: *done,
                    };
                    (s, Some(outputs.clone()))
                } else if !auto_complete {
                    (TaskStatus::New, None)
                } else {
                    let started = ingested + ca / 2;
                    let reworked = self.draw("exception", id) < self.shared.config.exception_rate;
                    let done = if reworked {
                        ingested + 2 * ca + REWORK_MS
                    } else {
                        ingested + ca
                    };
                    if now >= done {
                        let s = TaskStatus::Completed { started, done };
                        (s, Some(self.labelled_outputs(id, row)))
                    } else if now >= started && (ca > 0 || reworked) {
                        (TaskStatus::InProgress { started }, None)
                    } else {
                        (TaskStatus::New, None)
                    }
                };
                out.push(TaskView {
                    id,
                    input: row,
                    status,
                    outputs,
                });
            }
        }
        out
    }

    pub(super) fn batch_json(b: &Batch, now_ms: i64) -> Value {
        let scheduled = b
            .start_time
            .as_deref()
            .is_some_and(|t| parse_instant_us(t).is_some_and(|us| us / 1000 > now_ms));
        json!({
            "id": b.id.to_string(),
            "project_id": b.project,
            "name": b.name,
            "priority": b.priority,
            "comments": b.comments,
            "notifications": b.notifications,
            "start_time": b.start_time,
            "status": if scheduled { "Scheduled" } else { "Active" },
        })
    }

    pub(super) fn job_progress(&self, job: &Job, now: i64) -> (u64, u64) {
        match &job.kind {
            JobKind::Import {
                rows,
                rows_per_second,
                limit,
                ..
            } => {
                let elapsed = (now - job.created_ms).max(0);
                let ingested = (0..*limit)
                    .take_while(|&i| ingest_offset_ms(i, *rows_per_second) <= elapsed)
                    .count();
                (ingested as u64, rows.len() as u64)
            }
            JobKind::Output { ready_ms, rows } => {
                let total = if self.dialect().switch("output_job_counts_rows") {
                    *rows
                } else {
                    1
                };
                (if now >= *ready_ms { total } else { 0 }, total)
            }
        }
    }
}

/// When row `i` of an import job is ingested, in ms after the job started.
pub(super) fn ingest_offset_ms(i: usize, rows_per_second: f64) -> i64 {
    if rows_per_second <= 0.0 {
        return i64::MAX / 4;
    }
    ((i as f64 + 1.0) * 1000.0 / rows_per_second).floor() as i64
}

pub(super) fn progress_json(completed: u64, total: u64) -> Value {
    let percentage = (completed * 100).checked_div(total).unwrap_or(0);
    json!({"completed": completed, "total": total, "percentage": percentage})
}

/// Which reply shape an import endpoint uses.
#[derive(Clone, Copy)]
pub(super) enum Reply {
    /// v2 and the dictionary import: `{"job_id"}`.
    Snake,
    /// v1 and the URL import: `{"batchId", "jobId"}`.
    Camel,
    /// One task added by external id: `{"id": task id}`.
    Task,
}

impl TaskMonkSim {
    /// Stores rows as a new import job of batch `id`; answers once the row count is known.
    pub(super) fn create_import(
        &self,
        st: &mut SimState,
        id: u64,
        project: &str,
        table: Table,
        reply: Reply,
    ) -> Answer {
        let header: Vec<String> = table.header.clone();
        if header.iter().all(|h| h.is_empty()) {
            return Err(bad_request("The file has no header row"));
        }
        if table.rows.is_empty() {
            return Err(bad_request("The file has no data rows"));
        }
        if table.rows.len() > ROW_LIMIT {
            return Err(error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                &format!("At most {ROW_LIMIT} rows per import"),
            ));
        }
        if let Some(schema) = &st.schema {
            if let Some(unknown) = header.iter().find(|h| !schema.contains(h)) {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "invalid_field",
                    &format!("Unknown input field {unknown:?} for project {project}"),
                ));
            }
        }
        let rows: Vec<Map<String, Value>> = table
            .rows
            .into_iter()
            .map(|cells| {
                header
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| !h.is_empty())
                    .map(|(i, h)| {
                        (
                            h.clone(),
                            Value::String(cells.get(i).cloned().unwrap_or_default()),
                        )
                    })
                    .collect()
            })
            .collect();
        let first_task = st.next_task;
        st.next_task += rows.len() as u64;
        let keys: Vec<String> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| match r.get(KEY_COLUMN).map(cell) {
                Some(k) if !k.is_empty() => k,
                _ => (first_task + i as u64).to_string(),
            })
            .collect();
        self.shared.stats.created(keys.iter().map(String::as_str));
        // A project that does not declare the key column keeps no such field (counted above all the same).
        let (rows, header) = if self.dialect().switch("drop_key_column") {
            let rows = rows
                .into_iter()
                .map(|mut r| {
                    r.remove(KEY_COLUMN);
                    r
                })
                .collect();
            let header = header.into_iter().filter(|h| h != KEY_COLUMN).collect();
            (rows, header)
        } else {
            (rows, header)
        };
        let limit = if st.stall { rows.len() / 2 } else { rows.len() };
        let job_id = uuid::Uuid::new_v4().to_string();
        let batch = st.batches.get_mut(&id).expect("checked");
        for h in header {
            if !h.is_empty() && !batch.input_fields.contains(&h) {
                batch.input_fields.push(h);
            }
        }
        batch.imports.push(job_id.clone());
        let job = Job {
            project: project.to_string(),
            created_ms: self.now(),
            kind: JobKind::Import {
                batch: id,
                rows,
                first_task,
                rows_per_second: st.rows_per_second,
                limit,
                auto_complete: st.auto_complete,
            },
        };
        st.jobs.insert(job_id.clone(), job);
        Ok(match reply {
            Reply::Snake => Json(json!({"job_id": job_id})),
            Reply::Camel => Json(json!({"batchId": id.to_string(), "jobId": job_id})),
            Reply::Task => Json(json!({"id": first_task.to_string()})),
        }
        .into_response())
    }
}
