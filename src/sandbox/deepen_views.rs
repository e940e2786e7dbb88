//! Deepen's wire formats: datasets, files, tasks and labels as the API answers them.

use super::store::{labelled, track_label, Dataset, FileRec, Task, TaskStatus};
use super::*;

impl DeepenSim {
    fn dialect(&self) -> &super::super::dialect::Dialect {
        &self.shared.config.dialect
    }

    /// A timestamp or size as this dialect writes numbers: integers, or floats (`float_timestamps`).
    pub(super) fn number(&self, n: i64) -> Value {
        if self.dialect().switch("float_timestamps") {
            json!(n as f64)
        } else {
            json!(n)
        }
    }

    /// What a finished task reads (`finished_task_word`).
    pub(super) fn status_word(&self, s: TaskStatus) -> &str {
        match s {
            TaskStatus::Accepted => self
                .dialect()
                .word("finished_task_word")
                .unwrap_or("accepted"),
            other => other.as_str(),
        }
    }

    /// An `uploaded_files` element in this dialect's form.
    fn uploaded_json(&self, d: &Dataset, a: &super::store::Archive) -> Value {
        match self.dialect().word("uploaded_files") {
            Some("paths") => json!(format!("{}/{}/{}", self.client_id, d.id, a.file_name)),
            Some("objects") => {
                json!({"file_name": a.file_name, "file_size": self.number(a.file_size as i64)})
            }
            _ => json!(a.file_name),
        }
    }

    /// A dataset's tags in this dialect's form (`tag_form`): as sent, or each string as a TagResource-like
    /// object.
    fn tags_json(&self, tags: &Value) -> Value {
        match (self.dialect().word("tag_form"), tags) {
            (Some("objects"), Value::Array(ts)) => ts
                .iter()
                .enumerate()
                .map(|(i, t)| match t {
                    Value::String(name) => json!({"tag_id": format!("tag_{i}"), "name": name}),
                    other => other.clone(),
                })
                .collect(),
            _ => tags.clone(),
        }
    }

    pub(super) fn dataset_json(&self, d: &Dataset, now: i64) -> Value {
        let (stage, status, processing) = stage_of(
            d,
            now,
            self.dialect()
                .word("finished_stage")
                .unwrap_or("audit_ready"),
        );
        let mut by_stage = Map::new();
        for s in 0..d.stages.len() {
            let mut counts = Map::new();
            for t in d.tasks.iter().filter(|t| t.stage == s) {
                let e = counts.entry(t.status.as_str()).or_insert(json!(0));
                *e = json!(e.as_u64().unwrap_or(0) + 1);
            }
            by_stage.insert(d.stage_id(s).to_string(), Value::Object(counts));
        }
        let files: Vec<Value> = d
            .archives
            .iter()
            .map(|a| {
                json!({
                    "file_size": self.number(a.file_size as i64),
                    "file_type": a.file_type,
                    "resumable_upload_url": self.upload_url(d, a),
                })
            })
            .collect();
        let uploaded: Vec<Value> = d
            .archives
            .iter()
            .filter(|a| a.processed)
            .map(|a| self.uploaded_json(d, a))
            .collect();
        json!({
            "dataset_id": d.id,
            "client_id": self.client_id,
            "dataset_name": d.name,
            "dataset_type": d.dataset_type,
            "dataset_format": d.dataset_format,
            "labelling_mode": if d.sequence { "label_by_label" } else { "frame_by_frame" },
            "labelling_profile_id": d.profile_id,
            "pipeline_spec": d.stages,
            "pipeline_status_by_label_set_id": {"default": by_stage},
            "sensor_config": {},
            "uploaded_files": uploaded,
            "fps": Value::Null,
            "frame_sizes": [],
            "create_timestamp_millis": self.number(d.created_ms),
            "tags": self.tags_json(&d.tags),
            "files": files,
            "current_stage": stage,
            "current_stage_status": status,
            "processing_status": processing,
            "processing_status_message": d.processing_error.clone().unwrap_or_default(),
            "user_scopes": d.user_scopes,
            "user_group_scopes": [],
        })
    }

    pub(super) fn file_json(&self, d: &Dataset, f: &FileRec) -> Value {
        let sensor = if d.dataset_type == "3d" {
            "lidar"
        } else {
            "camera"
        };
        json!({
            "file_id": f.file_id,
            "dataset_id": d.id,
            "sensors": [sensor],
            "file_size": self.number(f.size as i64),
            "create_time_millis": self.number(f.created_ms),
        })
    }

    pub(super) fn task_json(&self, d: &Dataset, t: &Task) -> Value {
        let (task_type, file_id, label_id) = if d.sequence {
            ("label", Value::Null, json!(track_label(d, t.unit)))
        } else {
            ("file", json!(d.files[t.unit].file_id), Value::Null)
        };
        if self.dialect().switch("bare_tasks") {
            return json!({"stage_id": d.stage_id(t.stage), "status": self.status_word(t.status)});
        }
        json!({
            "task_id": t.id,
            "dataset_id": d.id,
            "client_id": self.client_id,
            "stage_id": d.stage_id(t.stage),
            "label_set_id": "default",
            "task_type": task_type,
            "file_id": file_id,
            "label_id": label_id,
            "status": self.status_word(t.status),
            "assignee_email": t.assignee,
            "rejection_count": t.rejections,
            "rejection_reason": t.reason,
            "create_time_millis": self.number(t.created_ms),
            "update_time_millis": self.number(t.updated_ms),
        })
    }

    /// The labels of `file` at `stage` (present once that stage's work was submitted).
    pub(super) fn labels_of(&self, d: &Dataset, file: usize, stage: usize) -> Vec<Value> {
        let n = d.stages.len();
        let seed = self.shared.config.seed;
        let f = &d.files[file];
        let (units, done_ms): (Vec<usize>, Vec<i64>) = if d.sequence {
            (0..d.units)
                .filter_map(|u| {
                    let t = &d.tasks[u * n + stage];
                    labelled(t).then_some((u, t.updated_ms))
                })
                .unzip()
        } else {
            let t = &d.tasks[file * n + stage];
            if !labelled(t) {
                return vec![];
            }
            let k = 1 + (seeded(seed, &format!("{}:{}", d.id, f.file_id))[0] % 3) as usize;
            ((0..k).collect(), vec![t.updated_ms; k])
        };
        units
            .into_iter()
            .zip(done_ms)
            .map(|(j, at)| {
                let h = seeded(seed, &format!("{}:{}:{j}", d.id, f.file_id));
                let label_id = if d.sequence {
                    track_label(d, j)
                } else {
                    let cat = &d.categories[h[1] as usize % d.categories.len()];
                    format!("{cat}:{}", file * 4 + j + 1)
                };
                let category = label_id.split(':').next().unwrap_or("").to_string();
                let x = |i: usize| (h[i] as f64 * 3.0).round();
                let mut label = json!({
                    "file_id": f.file_id,
                    "label_id": label_id,
                    "label_category_id": category,
                    "label_type": d.label_type,
                    "stage_id": d.stage_id(stage),
                    "label_set_id": "default",
                    "sensor_id": if d.dataset_type == "3d" { "lidar" } else { "camera" },
                    "labeller_email": if stage == 0 { LABELLER } else { REVIEWER },
                    "create_time_millis": self.number(at),
                    "update_time_millis": self.number(at),
                    "version": 1,
                    "attributes": {},
                });
                if d.label_type == "3d_bbox" {
                    label["three_d_bbox"] = json!({"cx": x(2) / 10.0, "cy": x(3) / 10.0, "cz": 1.0,
                        "h": 1.5, "l": 4.2, "w": 1.8, "rot_z": 0.0});
                } else {
                    label["box"] = json!([x(2), x(3), x(4) + 8.0, x(5) + 8.0]);
                }
                label
            })
            .collect()
    }
}

/// `(current_stage, current_stage_status, processing_status)`, the last in the words of the older
/// DatasetResource page (`files_to_be_uploaded`, `files_uploaded`, `preprocessing_error`,
/// `files_getting_labelled`). `finished`: the `finished_stage` dialect word.
fn stage_of(d: &Dataset, now: i64, finished: &str) -> (&'static str, &'static str, &'static str) {
    if d.processing_error.is_some() {
        return ("Processing", "in_progress", "preprocessing_error");
    }
    if !d.archives.iter().any(|a| a.processed) {
        return ("FileUpload", "waiting", "files_to_be_uploaded");
    }
    if now < d.processing_until {
        return ("Processing", "in_progress", "files_uploaded");
    }
    if d.marked_done {
        return ("Audit", "done", "files_getting_labelled");
    }
    if d.tasks.iter().all(|t| t.status == TaskStatus::Accepted) {
        return match finished {
            "audit_done" => ("Audit", "done", "files_getting_labelled"),
            "labelling_done" => ("Labelling", "done", "files_getting_labelled"),
            _ => ("Audit", "ready", "files_getting_labelled"),
        };
    }
    let started = d.tasks.iter().any(|t| {
        !matches!(t.status, TaskStatus::Waiting | TaskStatus::Ready)
            || (t.stage > 0 && t.status != TaskStatus::Waiting)
    });
    (
        "Labelling",
        if started { "in_progress" } else { "ready" },
        "files_getting_labelled",
    )
}
