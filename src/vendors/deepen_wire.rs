//! Deepen's answers, read loosely: what the documents name is read under every form they allow, and what they
//! do not name (TaskResource and FileResource fields) is never required. Wire facts and their sources:
//! docs/vendors/deepen.md.

use std::collections::HashMap;

use serde_json::Value;

use crate::vendors::model::Status;

/// A JSON number of milliseconds as a whole number: Deepen types its timestamps "float" (`[D-res]`), and its
/// examples write them as integers; anything else is no timestamp.
pub(super) fn millis(v: Option<&Value>) -> Option<i64> {
    let n = v?.as_number()?;
    n.as_i64()
        .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
}

/// A size in bytes written as an integer or a float (`[D-res]`'s example writes `18611529.0`).
pub(super) fn size(v: Option<&Value>) -> Option<u64> {
    let n = v?.as_number()?;
    n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0 && f.fract() == 0.0)
            .map(|f| f as u64)
    })
}

fn text<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

/// The last `/` segment of a name: an object path and a bare file name compare alike.
pub(super) fn last_segment(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// Words a task's status may read once its work is finished: `[D-life]` names the UI state "Accepted" and
/// gives the last stage a "Finish" action without naming what a finished task then reads.
const FINISHED_TASK_WORDS: &[&str] = &["accepted", "done", "finished", "completed", "complete"];

/// Where a dataset is, from `current_stage` / `current_stage_status` (`[D-res]`) and the older
/// `processing_status` (`[D-res1]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Phase {
    /// Created; its archives are not uploaded or not yet unpacked (`FileUpload`, `Processing`).
    Receiving,
    /// Preprocessing failed (`processing_status: preprocessing_error`), with Deepen's message.
    Failed(String),
    /// People are labelling (`Labelling` not `done`); `started` once its status left `waiting`/`ready`.
    Labelling { started: bool },
    /// Labelling is over: `Audit` (the customer's review, `[T4]` "Under Review"), or any stage reading
    /// `done` (`[T4]` get_annotation_status.py takes `done` as finished).
    Finished,
}

/// A dataset as labelport reads it.
#[derive(Debug, Clone)]
pub(super) struct DatasetView {
    pub(super) stage: String,
    pub(super) stage_status: String,
    pub(super) processing_status: String,
    pub(super) processing_message: Option<String>,
    /// The archives declared at creation: `(file_size, resumable_upload_url)` (`files[]`, `[D-res]`).
    pub(super) declared: Vec<(Option<u64>, Option<String>)>,
    /// Last path segments of `uploaded_files`, whatever form its elements take.
    pub(super) uploaded: Vec<String>,
    /// The dataset's tags as text, whatever form they take (`tag_text`).
    pub(super) tags: Vec<String>,
}

impl DatasetView {
    pub(super) fn of(d: &Value) -> DatasetView {
        let declared = d
            .get("files")
            .and_then(Value::as_array)
            .map(|fs| {
                fs.iter()
                    .map(|f| {
                        (
                            size(f.get("file_size")),
                            text(f, "resumable_upload_url").map(str::to_string),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let uploaded = d
            .get("uploaded_files")
            .and_then(Value::as_array)
            .map(|u| u.iter().filter_map(uploaded_name).collect())
            .unwrap_or_default();
        DatasetView {
            stage: text(d, "current_stage").unwrap_or("").to_string(),
            stage_status: text(d, "current_stage_status").unwrap_or("").to_string(),
            processing_status: text(d, "processing_status").unwrap_or("").to_string(),
            processing_message: ["processing_status_message", "processing_error_message"]
                .iter()
                .find_map(|k| text(d, k))
                .filter(|m| !m.is_empty())
                .map(str::to_string),
            declared,
            uploaded,
            tags: d
                .get("tags")
                .and_then(Value::as_array)
                .map(|ts| ts.iter().filter_map(tag_text).collect())
                .unwrap_or_default(),
        }
    }

    /// The records' own fields labelport kept in the dataset's tags, by file id (`input_tag`).
    pub(super) fn inputs(&self) -> HashMap<String, Value> {
        self.tags
            .iter()
            .filter_map(|t| {
                let body = t.strip_prefix(INPUT_TAG)?;
                match serde_json::from_str::<Value>(body).ok()? {
                    Value::Array(mut pair) if pair.len() == 2 && pair[1].is_object() => {
                        let input = pair.pop()?;
                        Some((pair.pop()?.as_str()?.to_string(), input))
                    }
                    _ => None,
                }
            })
            .collect()
    }

    /// The batch id labelport handed out for this dataset before creating it (`batch_tag`), if it did.
    pub(super) fn batch_id(&self) -> Option<String> {
        self.tags
            .iter()
            .find_map(|t| t.strip_prefix(BATCH_TAG))
            .filter(|id| Reservation::parse(id).is_some())
            .map(str::to_string)
    }

    pub(super) fn phase(&self) -> Phase {
        let word = |s: &str| s.to_ascii_lowercase().replace([' ', '-'], "_");
        let (stage, status) = (word(&self.stage), word(&self.stage_status));
        if word(&self.processing_status) == "preprocessing_error" {
            let message = self
                .processing_message
                .clone()
                .unwrap_or_else(|| "Deepen could not preprocess the uploaded files".into());
            return Phase::Failed(message);
        }
        match stage.as_str() {
            "fileupload" | "file_upload" | "processing" => Phase::Receiving,
            "audit" => Phase::Finished,
            _ if status == "done" => Phase::Finished,
            "labelling" | "labeling" => Phase::Labelling {
                started: !matches!(status.as_str(), "waiting" | "ready" | ""),
            },
            // No stage given: the older resource's `processing_status` (`[D-res1]`).
            "" => match word(&self.processing_status).as_str() {
                "files_getting_labelled" => Phase::Labelling { started: false },
                _ => Phase::Receiving,
            },
            _ => Phase::Labelling { started: true },
        }
    }

    /// Whether the archive named `file_name` reads as processed: named in `uploaded_files`, or the dataset is
    /// past `FileUpload`/`Processing` while holding one archive only.
    pub(super) fn processed(&self, file_name: &str) -> bool {
        let name = last_segment(file_name);
        self.uploaded.iter().any(|u| u == name)
            || (self.declared.len() <= 1
                && matches!(self.phase(), Phase::Labelling { .. } | Phase::Finished))
    }
}

/// An `uploaded_files` element: a name or path, or an object naming its file (form not documented: `[D-res]`
/// says only "List of uploaded files").
fn uploaded_name(v: &Value) -> Option<String> {
    let name = match v {
        Value::String(s) => s.as_str(),
        Value::Object(_) => ["file_name", "name", "file_id", "file_path", "path"]
            .iter()
            .find_map(|k| text(v, k))?,
        _ => return None,
    };
    Some(last_segment(name).to_string())
}

/// A tag's text: Tier IV sends tags as plain strings (`[T4]` upload_dataset.py:92); the DatasetResource's
/// `tags` is typed TagResource[] (`[D-res]`) without its fields, so an object's `name`, `tag`, `tag_name`,
/// `value` or `text` is read too.
fn tag_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(_) => ["name", "tag", "tag_name", "value", "text"]
            .iter()
            .find_map(|k| text(v, k))
            .map(str::to_string),
        _ => None,
    }
}

/// Tag prefix of a record's own fields: `labelport:input ["<file id>", {<fields>}]`.
const INPUT_TAG: &str = "labelport:input ";
/// Tag prefix of the batch id `create_batch` handed out: `labelport:batch reserved:...`.
const BATCH_TAG: &str = "labelport:batch ";

/// The tag keeping a record's own fields (the record without its `file`), with their JSON types.
pub(super) fn input_tag(file_id: &str, input: &serde_json::Map<String, Value>) -> String {
    format!("{INPUT_TAG}{}", serde_json::json!([file_id, input]))
}

/// The tag naming the batch id a dataset was created for.
pub(super) fn batch_tag(batch_id: &str) -> String {
    format!("{BATCH_TAG}{batch_id}")
}

/// One task, every field optional: Deepen documents no TaskResource field (`[S3]` line 16).
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct TaskView {
    pub(super) task_id: Option<String>,
    pub(super) stage_id: Option<String>,
    pub(super) file_id: Option<String>,
    pub(super) label_id: Option<String>,
    pub(super) status: Option<String>,
    pub(super) updated_ms: Option<i64>,
}

impl TaskView {
    pub(super) fn of(t: &Value) -> TaskView {
        let s = |keys: &[&str]| keys.iter().find_map(|k| text(t, k)).map(str::to_string);
        TaskView {
            task_id: s(&["task_id", "id"]),
            stage_id: s(&["stage_id", "stage"]),
            file_id: s(&["file_id"]),
            label_id: s(&["label_id"]),
            status: s(&["status", "task_status"]),
            updated_ms: millis(t.get("update_time_millis"))
                .or_else(|| millis(t.get("update_timestamp_millis"))),
        }
    }

    fn word(&self) -> String {
        self.status.as_deref().unwrap_or("").to_ascii_lowercase()
    }

    pub(super) fn finished(&self) -> bool {
        FINISHED_TASK_WORDS.contains(&self.word().as_str())
    }

    pub(super) fn submitted(&self) -> bool {
        self.word() == "submitted"
    }

    pub(super) fn rejected(&self) -> bool {
        self.word() == "rejected"
    }
}

/// A file's neutral status: the dataset's phase first; its own tasks (one per stage, in stage order) only
/// refine it while people are labelling.
pub(super) fn file_status(phase: &Phase, tasks: &[&TaskView]) -> Status {
    match phase {
        Phase::Receiving => return Status::Pending,
        Phase::Failed(_) => return Status::Failed,
        Phase::Finished => return Status::Completed,
        Phase::Labelling { .. } => {}
    }
    let known: Vec<&&TaskView> = tasks.iter().filter(|t| t.status.is_some()).collect();
    if known.is_empty() {
        return match phase {
            Phase::Labelling { started: true } => Status::InProgress,
            _ => Status::Pending,
        };
    }
    if known.iter().all(|t| t.finished()) {
        return Status::Completed;
    }
    // Work sent back by a review (`reject`, or the next stage's reviewer) until it is submitted again.
    if known.iter().any(|t| t.rejected()) {
        return Status::Rejected;
    }
    let untouched = known
        .iter()
        .enumerate()
        .all(|(i, t)| match t.word().as_str() {
            "waiting" => true,
            "ready" => i == 0,
            _ => false,
        });
    if untouched {
        Status::Pending
    } else {
        Status::InProgress
    }
}

/// Tasks by the file they belong to; tasks without a `file_id` (sequence datasets) under `None`.
pub(super) fn tasks_by_file(tasks: &[TaskView]) -> HashMap<Option<&str>, Vec<&TaskView>> {
    let mut out: HashMap<Option<&str>, Vec<&TaskView>> = HashMap::new();
    for t in tasks {
        out.entry(t.file_id.as_deref()).or_default().push(t);
    }
    out
}

/// When a file's work finished: the latest `update_time_millis` of its final labels (documented on
/// LabelResource, `[D-labels]`), else of its finished tasks.
pub(super) fn completed_ms(labels: Option<&Value>, tasks: &[&TaskView]) -> Option<i64> {
    let from_labels = labels.and_then(Value::as_array).and_then(|ls| {
        ls.iter()
            .filter_map(|l| millis(l.get("update_time_millis")))
            .max()
    });
    from_labels.or_else(|| {
        tasks
            .iter()
            .filter(|t| t.finished())
            .filter_map(|t| t.updated_ms)
            .max()
    })
}

/// A batch id `create_batch` hands out before the dataset exists: Deepen creates a dataset together with its
/// sized files, so the dataset is created by the first upload. The id carries what that creation needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Reservation {
    pub(super) name: String,
    pub(super) dataset_type: String,
    pub(super) labelling_profile_id: Option<String>,
}

const RESERVED: &str = "reserved:";

impl Reservation {
    pub(super) fn id(&self) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair("dataset_name", &self.name)
            .append_pair("dataset_type", &self.dataset_type);
        if let Some(p) = &self.labelling_profile_id {
            q.append_pair("labelling_profile_id", p);
        }
        format!("{RESERVED}{}", q.finish())
    }

    /// The reservation a batch id stands for; `None` for a dataset id.
    pub(super) fn parse(id: &str) -> Option<Reservation> {
        let q = id.strip_prefix(RESERVED)?;
        let pairs: HashMap<String, String> = url::form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect();
        Some(Reservation {
            name: pairs.get("dataset_name")?.clone(),
            dataset_type: pairs
                .get("dataset_type")
                .cloned()
                .unwrap_or_else(|| "images".into()),
            labelling_profile_id: pairs.get("labelling_profile_id").cloned(),
        })
    }

    /// The batch's description until the dataset exists.
    pub(super) fn raw(&self) -> Value {
        let mut raw = serde_json::json!({
            "dataset_name": self.name,
            "dataset_type": self.dataset_type,
            "reserved": true,
        });
        if let Some(p) = &self.labelling_profile_id {
            raw["labelling_profile_id"] = Value::from(p.as_str());
        }
        raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn task(stage: &str, status: &str) -> TaskView {
        TaskView::of(
            &json!({"task_id": "t", "stage_id": stage, "file_id": "a.png", "status": status}),
        )
    }

    fn phase(stage: &str, status: &str) -> Phase {
        DatasetView::of(&json!({"current_stage": stage, "current_stage_status": status})).phase()
    }

    #[test]
    fn the_dataset_phase_comes_from_its_stage_and_status() {
        assert_eq!(phase("FileUpload", "waiting"), Phase::Receiving);
        assert_eq!(phase("Processing", "in_progress"), Phase::Receiving);
        assert_eq!(
            phase("Labelling", "ready"),
            Phase::Labelling { started: false }
        );
        assert_eq!(
            phase("Labelling", "in_progress"),
            Phase::Labelling { started: true }
        );
        assert_eq!(phase("Labelling", "done"), Phase::Finished);
        assert_eq!(phase("Audit", "ready"), Phase::Finished);
        assert_eq!(phase("Audit", "done"), Phase::Finished);
        let failed = DatasetView::of(&json!({"current_stage": "Processing",
            "processing_status": "preprocessing_error", "processing_status_message": "bad zip"}));
        assert_eq!(failed.phase(), Phase::Failed("bad zip".into()));
        let older = DatasetView::of(&json!({"processing_status": "files_getting_labelled"}));
        assert_eq!(older.phase(), Phase::Labelling { started: false });
    }

    #[test]
    fn file_statuses_follow_the_dataset_then_the_tasks() {
        let labelling = Phase::Labelling { started: true };
        let s = |a: &str, b: &str| {
            let (x, y) = (task("Labelling", a), task("QA", b));
            file_status(&labelling, &[&x, &y])
        };
        assert_eq!(file_status(&labelling, &[]), Status::InProgress);
        assert_eq!(
            file_status(&Phase::Labelling { started: false }, &[]),
            Status::Pending
        );
        assert_eq!(s("waiting", "waiting"), Status::Pending);
        assert_eq!(s("ready", "waiting"), Status::Pending);
        assert_eq!(s("in_progress", "waiting"), Status::InProgress);
        assert_eq!(s("submitted", "ready"), Status::InProgress);
        assert_eq!(s("accepted", "in_progress"), Status::InProgress);
        assert_eq!(s("accepted", "accepted"), Status::Completed);
        assert_eq!(s("Accepted", "done"), Status::Completed);
        assert_eq!(s("rejected", "waiting"), Status::Rejected);
        assert_eq!(s("accepted", "rejected"), Status::Rejected);
        assert_eq!(s("accepted", "finished"), Status::Completed);
        let x = task("QA", "waiting");
        assert_eq!(file_status(&Phase::Finished, &[&x]), Status::Completed);
        assert_eq!(file_status(&Phase::Receiving, &[&x]), Status::Pending);
        assert_eq!(file_status(&Phase::Failed("x".into()), &[]), Status::Failed);
    }

    #[test]
    fn tasks_need_no_field() {
        let t = TaskView::of(
            &json!({"stage": "QA", "task_status": "submitted", "id": "t9",
            "update_time_millis": 1591397296799.0}),
        );
        assert_eq!(t.task_id.as_deref(), Some("t9"));
        assert!(t.submitted());
        assert_eq!(t.updated_ms, Some(1591397296799));
        assert_eq!(TaskView::of(&json!({})), TaskView::default());
    }

    #[test]
    fn tags_keep_inputs_and_the_batch_id_in_any_form() {
        let input = json!({"caption": "car", "count": 7, "score": 0.25, "flag": true});
        let reserved = Reservation {
            name: "n".into(),
            dataset_type: "images".into(),
            labelling_profile_id: None,
        }
        .id();
        let (a, b) = (
            input_tag("a.jpg", input.as_object().unwrap()),
            batch_tag(&reserved),
        );
        for tags in [
            json!([a, b, "user tag"]),
            json!([{"tag_id": "1", "name": a}, {"tag": b}, {"value": "user tag"}]),
        ] {
            let d = DatasetView::of(&json!({ "tags": tags }));
            assert_eq!(d.inputs().get("a.jpg"), Some(&input), "{tags}");
            assert_eq!(d.inputs().len(), 1);
            assert_eq!(d.batch_id().as_deref(), Some(reserved.as_str()));
        }
        let none = DatasetView::of(&json!({"tags": ["labelport:batch x", "labelport:input [1]"]}));
        assert!(none.inputs().is_empty() && none.batch_id().is_none());
        assert!(DatasetView::of(&json!({})).tags.is_empty());
    }

    #[test]
    fn numbers_may_be_floats() {
        assert_eq!(millis(Some(&json!(1591397296799.0))), Some(1591397296799));
        assert_eq!(millis(Some(&json!(1591397296799_i64))), Some(1591397296799));
        assert_eq!(millis(Some(&json!("1591397296799"))), None);
        assert_eq!(size(Some(&json!(18611529.0))), Some(18611529));
        assert_eq!(size(Some(&json!(1.5))), None);
    }

    #[test]
    fn uploaded_files_in_any_form_name_the_archive() {
        for form in [
            json!(["ds_0.zip"]),
            json!(["client/ds/ds_0.zip"]),
            json!([{"file_name": "ds_0.zip"}]),
            json!([{"name": "client/ds/ds_0.zip", "file_size": 3}]),
        ] {
            let d = DatasetView::of(
                &json!({"current_stage": "Processing", "uploaded_files": form,
                "files": [{}, {}]}),
            );
            assert!(d.processed("ds_0.zip"), "{form}");
            assert!(!d.processed("ds_1.zip"), "{form}");
        }
        let one = DatasetView::of(&json!({"current_stage": "Labelling", "files": [{}]}));
        assert!(one.processed("ds_0.zip"));
    }

    #[test]
    fn completion_time_prefers_the_labels() {
        let t = TaskView::of(&json!({"status": "accepted", "update_time_millis": 5}));
        let labels = json!([{"update_time_millis": 7.0}, {"update_time_millis": 9}]);
        assert_eq!(completed_ms(Some(&labels), &[&t]), Some(9));
        assert_eq!(completed_ms(Some(&json!([{}])), &[&t]), Some(5));
        assert_eq!(completed_ms(None, &[]), None);
    }

    #[test]
    fn reservations_round_trip_through_their_id() {
        let r = Reservation {
            name: "a/b: c&d=e".into(),
            dataset_type: "3d".into(),
            labelling_profile_id: Some("prof_1".into()),
        };
        let id = r.id();
        assert!(!id.contains('/'), "{id}");
        assert_eq!(Reservation::parse(&id), Some(r));
        assert_eq!(Reservation::parse("abc123"), None);
        assert_eq!(Reservation::parse("client:project:dataset"), None);
    }
}
