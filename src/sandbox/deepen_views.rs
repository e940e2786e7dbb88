//! Deepen's wire formats: datasets, files, tasks and labels as the API answers them.

use super::store::{labelled, track_label, Dataset, FileRec, Task, TaskStatus};
use super::*;

impl DeepenSim {
    pub(super) fn dataset_json(&self, d: &Dataset, now: i64) -> Value {
        let (stage, status, processing) = stage_of(d, now);
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
                    "file_size": a.file_size,
                    "file_type": a.file_type,
                    "resumable_upload_url": self.upload_url(d, a),
                })
            })
            .collect();
        let uploaded: Vec<Value> = d
            .archives
            .iter()
            .filter(|a| a.processed)
            .map(|a| json!(a.file_name))
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
            "create_timestamp_millis": d.created_ms,
            "tags": d.tags,
            "files": files,
            "current_stage": stage,
            "current_stage_status": status,
            "processing_status": processing,
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
            "file_size": f.size,
            "create_time_millis": f.created_ms,
        })
    }

    pub(super) fn task_json(&self, d: &Dataset, t: &Task) -> Value {
        let (task_type, file_id, label_id) = if d.sequence {
            ("label", Value::Null, json!(track_label(d, t.unit)))
        } else {
            ("file", json!(d.files[t.unit].file_id), Value::Null)
        };
        json!({
            "task_id": t.id,
            "dataset_id": d.id,
            "client_id": self.client_id,
            "stage_id": d.stage_id(t.stage),
            "label_set_id": "default",
            "task_type": task_type,
            "file_id": file_id,
            "label_id": label_id,
            "status": t.status.as_str(),
            "assignee_email": t.assignee,
            "rejection_count": t.rejections,
            "rejection_reason": t.reason,
            "create_time_millis": t.created_ms,
            "update_time_millis": t.updated_ms,
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
                    "create_time_millis": at,
                    "update_time_millis": at,
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

/// `(current_stage, current_stage_status, processing_status)`.
fn stage_of(d: &Dataset, now: i64) -> (&'static str, &'static str, &'static str) {
    if !d.archives.iter().any(|a| a.processed) {
        return ("FileUpload", "waiting", "waiting_for_upload");
    }
    if now < d.processing_until {
        return ("Processing", "in_progress", "processing");
    }
    if d.tasks.iter().all(|t| t.status == TaskStatus::Accepted) || d.marked_done {
        let status = if d.marked_done { "done" } else { "ready" };
        return ("Audit", status, "labelling_done");
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
