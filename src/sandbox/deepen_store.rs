//! The Deepen simulator's state: datasets, their archives, files and pipeline tasks, and how tasks move
//! on the sandbox clock (see `deepen.rs` for the flow).

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    Auto,
    Manual,
    RejectOnce,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TaskStatus {
    Waiting,
    Ready,
    InProgress,
    Submitted,
    Accepted,
    Rejected,
}

impl TaskStatus {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Waiting => "waiting",
            TaskStatus::Ready => "ready",
            TaskStatus::InProgress => "in_progress",
            TaskStatus::Submitted => "submitted",
            TaskStatus::Accepted => "accepted",
            TaskStatus::Rejected => "rejected",
        }
    }
}

pub(super) struct Task {
    pub(super) id: String,
    pub(super) stage: usize,
    /// The unit of work: a file (frame_by_frame) or an object track (label_by_label).
    pub(super) unit: usize,
    pub(super) status: TaskStatus,
    pub(super) created_ms: i64,
    pub(super) updated_ms: i64,
    /// When the next automatic transition happens.
    pub(super) due: Option<i64>,
    pub(super) rejections: u32,
    pub(super) reason: Option<String>,
    pub(super) assignee: String,
}

pub(super) struct Archive {
    pub(super) file_name: String,
    pub(super) file_size: u64,
    pub(super) file_type: String,
    pub(super) upload_id: String,
    /// Bytes stored so far (a completed PUT).
    pub(super) uploaded: Option<u64>,
    pub(super) processed: bool,
}

pub(super) struct FileRec {
    pub(super) file_id: String,
    pub(super) size: u64,
    pub(super) created_ms: i64,
}

pub(super) struct Dataset {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) dataset_type: String,
    pub(super) dataset_format: Option<String>,
    pub(super) sequence: bool,
    pub(super) profile_id: String,
    pub(super) stages: Vec<Value>,
    pub(super) categories: Vec<String>,
    pub(super) label_type: String,
    pub(super) tags: Value,
    pub(super) created_ms: i64,
    pub(super) archives: Vec<Archive>,
    pub(super) files: Vec<FileRec>,
    pub(super) file_index: HashMap<String, usize>,
    /// Units of work: files, or object tracks of a sequence.
    pub(super) units: usize,
    pub(super) tasks: Vec<Task>,
    pub(super) processing_until: i64,
    pub(super) marked_done: bool,
    pub(super) user_scopes: Value,
    /// Set when preprocessing failed (`/_sim/deepen/preprocessing_error`): Deepen's message.
    pub(super) processing_error: Option<String>,
}

impl Dataset {
    pub(super) fn stage_id(&self, s: usize) -> &str {
        self.stages[s]
            .get("stage_id")
            .and_then(Value::as_str)
            .unwrap_or("stage")
    }

    pub(super) fn unit_tasks(&self, unit: usize) -> Vec<usize> {
        // Tasks of one unit sit next to each other, one per stage, in stage order.
        let n = self.stages.len();
        (unit * n..unit * n + n).collect()
    }
}

pub(super) struct Store {
    pub(super) datasets: HashMap<String, Dataset>,
    pub(super) order: Vec<String>,
    /// task id -> dataset id
    pub(super) task_owner: HashMap<String, String>,
    /// upload id -> (dataset id, archive index)
    pub(super) uploads: HashMap<String, (String, usize)>,
    pub(super) profiles: Vec<Value>,
    pub(super) counter: u64,
    pub(super) mode: Mode,
    /// The message every archive processed from now on fails with, when set.
    pub(super) fail_processing: Option<String>,
}

impl DeepenSim {
    /// Declares archives (`files: [{file_size, file_type}]`) on a dataset.
    pub(super) fn declare(
        &self,
        store: &mut Store,
        d: &mut Dataset,
        files: &[Value],
    ) -> Result<(), String> {
        let mut new = Vec::new();
        for (i, f) in files.iter().enumerate() {
            let size = f
                .get("file_size")
                .and_then(Value::as_u64)
                .ok_or_else(|| format!("files[{i}].file_size must be an integer"))?;
            let file_type = f
                .get("file_type")
                .and_then(Value::as_str)
                .unwrap_or("application/zip")
                .to_string();
            new.push((size, file_type));
        }
        for (size, file_type) in new {
            let upload_id = self.next_id(store, "upload", 20);
            let ext = if file_type.contains("mp4") {
                "mp4"
            } else {
                "zip"
            };
            let file_name = format!("{}_{}.{ext}", d.id, d.archives.len());
            store
                .uploads
                .insert(upload_id.clone(), (d.id.clone(), d.archives.len()));
            d.archives.push(Archive {
                file_name,
                file_size: size,
                file_type,
                upload_id,
                uploaded: None,
                processed: false,
            });
        }
        Ok(())
    }

    /// Applies every automatic transition due by `now`, in time order per unit.
    pub(super) fn tick(&self, d: &mut Dataset, now: i64, mode: Mode) {
        let n = d.stages.len();
        let q = self.step_ms(n);
        for unit in 0..d.units {
            let ids = d.unit_tasks(unit);
            loop {
                let next = ids
                    .iter()
                    .copied()
                    .filter_map(|i| d.tasks[i].due.map(|t| (t, i)))
                    .filter(|(t, _)| *t <= now)
                    .min();
                let Some((t, i)) = next else { break };
                d.tasks[i].due = None;
                let stage = d.tasks[i].stage;
                match d.tasks[i].status {
                    TaskStatus::Waiting => {
                        // Processing finished: the first stage can start.
                        set(&mut d.tasks[i], TaskStatus::Ready, t, human(mode, t + q));
                    }
                    TaskStatus::Ready => {
                        if stage > 0 && mode != Mode::Manual {
                            let prev = ids[stage - 1];
                            if mode == Mode::RejectOnce && d.tasks[prev].rejections == 0 {
                                d.tasks[prev].rejections += 1;
                                d.tasks[prev].reason = Some("sandbox reject_once".into());
                                set(&mut d.tasks[prev], TaskStatus::Rejected, t, Some(t + q));
                                set(&mut d.tasks[i], TaskStatus::Waiting, t, None);
                                continue;
                            }
                            set(&mut d.tasks[prev], TaskStatus::Accepted, t, None);
                        }
                        set(
                            &mut d.tasks[i],
                            TaskStatus::InProgress,
                            t,
                            human(mode, t + q),
                        );
                    }
                    TaskStatus::Rejected => {
                        set(
                            &mut d.tasks[i],
                            TaskStatus::InProgress,
                            t,
                            human(mode, t + q),
                        );
                    }
                    TaskStatus::InProgress => submit(d, &ids, i, t, mode, q),
                    TaskStatus::Submitted | TaskStatus::Accepted => {}
                }
            }
        }
    }
}

pub(super) fn labelled(t: &Task) -> bool {
    matches!(t.status, TaskStatus::Submitted | TaskStatus::Accepted)
}

pub(super) fn track_label(d: &Dataset, unit: usize) -> String {
    format!("{}:{}", d.categories[unit % d.categories.len()], unit + 1)
}

pub(super) fn set(t: &mut Task, status: TaskStatus, at: i64, due: Option<i64>) {
    t.status = status;
    t.updated_ms = at;
    t.due = due;
}

/// A step people take: scheduled in the auto modes, never in manual mode.
pub(super) fn human(mode: Mode, at: i64) -> Option<i64> {
    (mode != Mode::Manual).then_some(at)
}

/// Submits task `i` of a unit: the last stage finishes (accepted); otherwise the next stage's task
/// becomes ready.
pub(super) fn submit(d: &mut Dataset, ids: &[usize], i: usize, t: i64, mode: Mode, q: i64) {
    let stage = d.tasks[i].stage;
    if stage + 1 == ids.len() {
        set(&mut d.tasks[i], TaskStatus::Accepted, t, None);
    } else {
        set(&mut d.tasks[i], TaskStatus::Submitted, t, None);
        let next = ids[stage + 1];
        set(&mut d.tasks[next], TaskStatus::Ready, t, human(mode, t + q));
    }
}

/// A dataset id from a path: legacy `client:project:dataset` ids name the dataset last.
pub(super) fn dataset_key(raw: &str) -> &str {
    raw.rsplit(':').next().unwrap_or(raw)
}

impl DeepenSim {
    /// Runs `f` on a dataset brought up to date, or answers 404.
    pub(super) fn with_dataset<T>(
        &self,
        raw: &str,
        f: impl FnOnce(&DeepenSim, &mut Store, &mut Dataset) -> Result<T, Response>,
    ) -> Result<T, Response> {
        let mut store = self.store.lock();
        let id = dataset_key(raw).to_string();
        let mut d = store.datasets.remove(&id).ok_or_else(not_found)?;
        let mode = store.mode;
        self.tick(&mut d, self.now(), mode);
        let out = f(self, &mut store, &mut d);
        store.datasets.insert(id, d);
        out
    }

    /// Unpacks an uploaded archive: each entry becomes a file (its name the `file_id`) with one
    /// task per stage. An entry whose name the dataset already holds replaces it (counted again).
    pub(super) fn unpack(
        &self,
        store: &mut Store,
        d: &mut Dataset,
        k: usize,
    ) -> Result<usize, Response> {
        let path = self.archive_path(&d.archives[k].upload_id);
        let file =
            std::fs::File::open(&path).map_err(|_| bad("the uploaded data could not be found"))?;
        let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| {
            bad(&format!(
                "the uploaded file is not a valid zip archive: {e}"
            ))
        })?;
        let now = self.now();
        let processing = if self.shared.config.complete_after > 0.0 {
            seconds_to_ms(self.shared.config.complete_after) / 10
        } else {
            0
        };
        d.processing_until = d.processing_until.max(now + processing);
        let mut entries = Vec::new();
        for i in 0..zip.len() {
            let e = zip
                .by_index(i)
                .map_err(|e| bad(&format!("the uploaded archive is corrupt: {e}")))?;
            if e.is_dir() {
                continue;
            }
            entries.push((e.name().to_string(), e.size()));
        }
        let n = d.stages.len();
        let mut keys = Vec::new();
        for (name, size) in entries {
            if let Some(&i) = d.file_index.get(&name) {
                d.files[i].size = size;
                keys.push(name);
                continue;
            }
            let index = d.files.len();
            d.file_index.insert(name.clone(), index);
            d.files.push(FileRec {
                file_id: name.clone(),
                size,
                created_ms: now,
            });
            if !d.sequence {
                self.add_unit(store, d, now, n);
            }
            keys.push(name);
        }
        if d.sequence && d.units == 0 && !d.files.is_empty() {
            let tracks = 1 + (seeded(self.shared.config.seed, &d.id)[0] % 3) as usize;
            for _ in 0..tracks {
                self.add_unit(store, d, now, n);
            }
        }
        self.shared.stats.created(keys.iter().map(String::as_str));
        d.archives[k].processed = true;
        Ok(keys.len())
    }

    pub(super) fn add_unit(&self, store: &mut Store, d: &mut Dataset, now: i64, n: usize) {
        let unit = d.units;
        d.units += 1;
        for s in 0..n {
            let id = format!("t_{}", self.next_id(store, "task", 16));
            store.task_owner.insert(id.clone(), d.id.clone());
            d.tasks.push(Task {
                id,
                stage: s,
                unit,
                status: TaskStatus::Waiting,
                created_ms: now,
                updated_ms: now,
                due: (s == 0).then_some(d.processing_until),
                rejections: 0,
                reason: None,
                assignee: if s == 0 { LABELLER } else { REVIEWER }.to_string(),
            });
        }
    }
}
