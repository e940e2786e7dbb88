//! The Deepen sandbox over real sockets, as a client sees it (docs/vendors/deepen.md).

use std::io::Write;

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::super::test_http::send;
use super::super::{Sandbox, SandboxConfig};

struct C {
    sb: Sandbox,
    http: reqwest::Client,
    token: String,
    cid: String,
}

async fn call(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let a = send(req).await;
    (a.status, a.body)
}

/// The object an upload URL names (its `name` parameter's last segment): what processing is asked for.
fn object_name(upload_url: &str) -> String {
    let url = url::Url::parse(upload_url).unwrap();
    let (_, name) = url.query_pairs().find(|(k, _)| k == "name").unwrap();
    name.rsplit('/').next().unwrap().to_string()
}

fn zip_of(names: &[&str]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for n in names {
        w.start_file(*n, opts).unwrap();
        w.write_all(format!("\u{89}PNG {n}").as_bytes()).unwrap();
    }
    w.finish().unwrap().into_inner()
}

impl C {
    async fn start(complete_after: f64) -> C {
        let sb = Sandbox::start(SandboxConfig {
            vendor: "deepen".into(),
            seed: 3,
            complete_after,
            ..Default::default()
        })
        .unwrap();
        let token = sb.credentials()[0].1.clone();
        let cid = sb.project();
        C {
            sb,
            http: reqwest::Client::new(),
            token,
            cid,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api/v2{path}", self.sb.url())
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        call(
            self.http
                .get(self.url(path))
                .bearer_auth(&self.token)
                .header("content-type", "application/json"),
        )
        .await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        call(
            self.http
                .post(self.url(path))
                .bearer_auth(&self.token)
                .json(&body),
        )
        .await
    }

    async fn mode(&self, mode: &str) {
        let r = self
            .http
            .post(format!("{}/_sim/deepen/mode", self.sb.url()))
            .json(&json!({ "mode": mode }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    /// Creates a dataset with one zip of `names`, uploads it and processes it; the dataset id.
    async fn dataset_with(&self, name: &str, names: &[&str], mode: &str) -> String {
        let zip = zip_of(names);
        let (s, d) = self
            .post(
                &format!("/clients/{}/datasets", self.cid),
                json!({"dataset_name": name, "dataset_type": "images", "labelling_mode": mode,
                       "files": [{"file_size": zip.len(), "file_type": "application/zip"}]}),
            )
            .await;
        assert_eq!(s, 200, "{d}");
        let id = d["dataset_id"].as_str().unwrap().to_string();
        let upload = d["files"][0]["resumable_upload_url"].as_str().unwrap();
        let r = self
            .http
            .put(upload)
            .header("content-type", "application/zip")
            .body(zip)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let name = object_name(upload);
        let (s, b) = self
            .post(
                &format!("/datasets/{id}/process_uploaded_data"),
                json!({ "file_name": name }),
            )
            .await;
        assert_eq!(s, 200, "{b}");
        id
    }

    /// A sandbox in `mode` (`complete_after` 0) with one processed dataset: the client, the dataset id
    /// and its tasks.
    async fn in_mode(
        mode: &str,
        name: &str,
        files: &[&str],
        kind: &str,
    ) -> (C, String, Vec<Value>) {
        let c = C::start(0.0).await;
        c.mode(mode).await;
        let id = c.dataset_with(name, files, kind).await;
        let tasks = c.tasks(&id).await;
        (c, id, tasks)
    }

    async fn tasks(&self, id: &str) -> Vec<Value> {
        let (s, b) = self.get(&format!("/datasets/{id}/tasks")).await;
        assert_eq!(s, 200);
        b["tasks"].as_array().unwrap().clone()
    }
}

#[tokio::test]
async fn auth_is_a_bearer_token_and_errors_are_detail_bodies() {
    let c = C::start(0.0).await;
    let path = c.url(&format!("/clients/{}/datasets", c.cid));
    let (s, b) = call(c.http.get(&path)).await;
    assert_eq!(s, 401);
    assert!(b["detail"].is_string());
    let (s, _) = call(c.http.get(&path).bearer_auth("nope")).await;
    assert_eq!(s, 401);
    let (s, b) = c.get("/clients/someone_else/datasets").await;
    assert_eq!(s, 403, "{b}");
    let (s, b) = c.get(&format!("/clients/{}/datasets", c.cid)).await;
    assert_eq!((s, b), (StatusCode::OK, json!({})));
    let (s, b) = c.get("/datasets/nope").await;
    assert_eq!(s, 404);
    assert_eq!(b["detail"], "Not found.");
}

#[tokio::test]
async fn creation_validates_and_answers_upload_urls() {
    let c = C::start(0.0).await;
    let create = format!("/clients/{}/datasets", c.cid);
    for bad in [
        json!({"dataset_type": "images", "files": [{"file_size": 10}]}),
        // A dataset is created with its files declared and sized (Quickstart, Tier IV).
        json!({"dataset_name": "x", "dataset_type": "images"}),
        json!({"dataset_name": "x", "dataset_type": "images", "files": []}),
        json!({"dataset_name": "x", "dataset_type": "images", "files": [{"file_type": "application/zip"}]}),
        json!({"dataset_name": "x", "dataset_type": "pdf"}),
        json!({"dataset_name": "x", "dataset_type": "images", "labelling_mode": "whatever"}),
        json!({"dataset_name": "x", "dataset_type": "3d"}),
        json!({"dataset_name": "x", "dataset_type": "images", "files": [{"file_size": "big"}]}),
    ] {
        let (s, b) = c.post(&create, bad.clone()).await;
        assert_eq!(s, 400, "{bad} -> {b}");
        assert!(b["detail"].is_string());
    }
    let (s, _) = c
        .post(
            &create,
            json!({"dataset_name": "x", "dataset_type": "images", "labelling_profile_id": "nope",
                   "files": [{"file_size": 10}]}),
        )
        .await;
    assert_eq!(s, 404);

    let (s, d) = c
        .post(
            &create,
            json!({"dataset_name": "cars", "dataset_type": "images",
                   "files": [{"file_size": 10, "file_type": "application/zip"}]}),
        )
        .await;
    assert_eq!(s, 200);
    let id = d["dataset_id"].as_str().unwrap();
    assert_eq!(id.len(), 24);
    assert!(id.chars().all(|ch| ch.is_ascii_alphanumeric()));
    assert_eq!(
        (
            d["current_stage"].as_str(),
            d["current_stage_status"].as_str()
        ),
        (Some("FileUpload"), Some("waiting"))
    );
    assert_eq!(d["pipeline_spec"][0]["stage_id"], "Labelling");
    assert_eq!(d["pipeline_spec"][1]["stage_id"], "QA");
    let upload = d["files"][0]["resumable_upload_url"].as_str().unwrap();
    let u = url::Url::parse(upload).unwrap();
    let name = u.query_pairs().find(|(k, _)| k == "name").unwrap().1;
    assert!(name.starts_with(&format!("{}/{id}/", c.cid)), "{name}");

    // The object store takes no bearer token and refuses a size other than the declared one.
    let r = c.http.put(upload).body(vec![0u8; 3]).send().await.unwrap();
    assert_eq!(r.status(), 400);
    // Processing before the bytes arrived is refused.
    let (s, _) = c
        .post(
            &format!("/datasets/{id}/process_uploaded_data"),
            json!({"file_name": name.rsplit('/').next().unwrap()}),
        )
        .await;
    assert_eq!(s, 400);

    let (s, ids) = c.get(&format!("/clients/{}/datasets_ids", c.cid)).await;
    assert_eq!(s, 200);
    assert_eq!(
        ids["datasets"],
        json!([{"dataset_id": id, "dataset_name": "cars"}])
    );
    let (_, all) = c.get(&format!("/clients/{}/datasets", c.cid)).await;
    assert_eq!(all[id]["dataset_name"], "cars");
    // Legacy ids name the dataset last.
    let (s, _) = c.get(&format!("/datasets/{}:p:{id}", c.cid)).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn upload_process_labels_and_stats() {
    let c = C::start(0.0).await;
    let id = c
        .dataset_with("round", &["a.png", "b.png", "dir/c.png"], "frame_by_frame")
        .await;
    let (_, files) = c.get(&format!("/datasets/{id}/files")).await;
    let names: Vec<&str> = files["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["file_id"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a.png", "b.png", "dir/c.png"]);
    let (s, f) = c.get(&format!("/datasets/{id}/files/dir%2Fc.png")).await;
    assert_eq!(s, 200, "{f}");
    assert_eq!(f["sensors"], json!(["camera"]));

    // complete_after = 0: the dataset is through both stages at once.
    let (_, d) = c.get(&format!("/datasets/{id}")).await;
    assert_eq!(d["current_stage"], "Audit");
    assert_eq!(d["current_stage_status"], "ready");
    assert_eq!(
        d["pipeline_status_by_label_set_id"]["default"]["QA"]["accepted"],
        3
    );
    let tasks = c.tasks(&id).await;
    assert_eq!(tasks.len(), 6);
    assert!(tasks.iter().all(|t| t["status"] == "accepted"));

    let (_, l) = c
        .get(&format!(
            "/datasets/{id}/labels?labels_with_file_ids_order=true&final=true"
        ))
        .await;
    let by_file = l["labels"].as_object().unwrap();
    assert_eq!(by_file.len(), 3);
    for (file, labels) in by_file {
        let labels = labels.as_array().unwrap();
        assert!(!labels.is_empty());
        for x in labels {
            assert_eq!(x["file_id"], json!(file));
            assert_eq!(x["stage_id"], "QA");
            assert_eq!(x["label_type"], "box");
            let lid = x["label_id"].as_str().unwrap();
            let (cat, n) = lid.split_once(':').unwrap();
            assert_eq!(cat, x["label_category_id"].as_str().unwrap());
            n.parse::<u32>().unwrap();
            assert_eq!(x["box"].as_array().unwrap().len(), 4);
        }
    }
    let (_, all) = c.get(&format!("/datasets/{id}/labels")).await;
    let n_all = all["all_labels"].as_array().unwrap().len();
    let n_final: usize = by_file.values().map(|v| v.as_array().unwrap().len()).sum();
    assert_eq!(n_all, 2 * n_final, "both stages without final=true");

    let created = c.sb.stats()["records_created"].clone();
    assert_eq!(created, json!({"a.png": 1, "b.png": 1, "dir/c.png": 1}));
    // Processing the same archive again stores nothing twice.
    let name = d["uploaded_files"][0].as_str().unwrap().to_string();
    let (s, _) = c
        .post(
            &format!("/datasets/{id}/process_uploaded_data"),
            json!({ "file_name": name }),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(c.sb.stats()["records_created"], created);

    // No source shows a way to add archives to an existing dataset: the simulator has none either.
    let (s, _) = c
        .post(
            &format!("/datasets/{id}/files"),
            json!({"files": [{"file_size": 10, "file_type": "application/zip"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(c.tasks(&id).await.len(), 6);

    let (s, _) = call(
        c.http
            .delete(c.url(&format!("/datasets/{id}")))
            .bearer_auth(&c.token),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(c.get(&format!("/datasets/{id}")).await.0, 404);
}

#[tokio::test]
async fn stages_advance_on_the_sandbox_clock() {
    let c = C::start(100.0).await;
    let id = c.dataset_with("slow", &["a.png"], "frame_by_frame").await;
    let (_, d) = c.get(&format!("/datasets/{id}")).await;
    assert_eq!(d["current_stage"], "Processing");
    c.sb.advance(10.0);
    let (_, d) = c.get(&format!("/datasets/{id}")).await;
    assert_eq!(
        (
            d["current_stage"].as_str(),
            d["current_stage_status"].as_str()
        ),
        (Some("Labelling"), Some("ready"))
    );
    let (_, l) = c.get(&format!("/datasets/{id}/labels?final=true")).await;
    assert_eq!(l["all_labels"], json!([]));
    c.sb.advance(25.0);
    let t = c.tasks(&id).await;
    assert_eq!(
        (t[0]["status"].as_str(), t[1]["status"].as_str()),
        (Some("in_progress"), Some("waiting"))
    );
    c.sb.advance(25.0);
    let t = c.tasks(&id).await;
    assert_eq!(
        (t[0]["status"].as_str(), t[1]["status"].as_str()),
        (Some("submitted"), Some("ready"))
    );
    c.sb.advance(25.0);
    let t = c.tasks(&id).await;
    assert_eq!(
        (t[0]["status"].as_str(), t[1]["status"].as_str()),
        (Some("accepted"), Some("in_progress"))
    );
    c.sb.advance(25.0);
    let (_, d) = c.get(&format!("/datasets/{id}")).await;
    assert_eq!(d["current_stage"], "Audit");
    let (s, _) = c
        .post(&format!("/datasets/{id}/mark_labelling_done"), json!({}))
        .await;
    assert_eq!(s, 200);
    let (_, d) = c.get(&format!("/datasets/{id}")).await;
    assert_eq!(d["current_stage_status"], "done");
}

#[tokio::test]
async fn reject_once_reworks_every_unit_once() {
    let (_c, _id, tasks) = C::in_mode(
        "reject_once",
        "rework",
        &["a.png", "b.png"],
        "frame_by_frame",
    )
    .await;
    assert!(tasks.iter().all(|t| t["status"] == "accepted"));
    let labelling: Vec<&Value> = tasks
        .iter()
        .filter(|t| t["stage_id"] == "Labelling")
        .collect();
    assert_eq!(labelling.len(), 2);
    assert!(labelling.iter().all(|t| t["rejection_count"] == 1));
    assert!(tasks
        .iter()
        .filter(|t| t["stage_id"] == "QA")
        .all(|t| t["rejection_count"] == 0));
}

#[tokio::test]
async fn manual_mode_submit_accept_reject() {
    let (c, id, t) = C::in_mode("manual", "manual", &["a.png"], "frame_by_frame").await;
    let (lab, qa) = (
        t[0]["task_id"].as_str().unwrap(),
        t[1]["task_id"].as_str().unwrap(),
    );
    assert_eq!(t[0]["status"], "ready");
    assert_eq!(t[0]["file_id"], "a.png");
    assert_eq!(t[0]["task_type"], "file");
    // Illegal transitions are 400s.
    assert_eq!(
        c.post(&format!("/tasks/{lab}/accept"), json!({})).await.0,
        400
    );
    assert_eq!(
        c.post(&format!("/tasks/{qa}/submit"), json!({})).await.0,
        400
    );
    assert_eq!(c.post("/tasks/t_nope/submit", json!({})).await.0, 404);

    let (s, x) = c.post(&format!("/tasks/{lab}/submit"), json!({})).await;
    assert_eq!(
        (s, x["status"].as_str()),
        (StatusCode::OK, Some("submitted"))
    );
    assert_eq!(c.tasks(&id).await[1]["status"], "ready");
    let (_, x) = c
        .post(&format!("/tasks/{lab}/reject"), json!({"reason": "blurry"}))
        .await;
    assert_eq!(x["status"], "rejected");
    assert_eq!(x["rejection_reason"], "blurry");
    assert_eq!(c.tasks(&id).await[1]["status"], "waiting");
    c.post(&format!("/tasks/{lab}/submit"), json!({})).await;
    let (_, x) = c.post(&format!("/tasks/{lab}/accept"), json!({})).await;
    assert_eq!(x["status"], "accepted");
    assert_eq!(
        c.post(&format!("/tasks/{lab}/reject"), json!({})).await.0,
        400
    );
    let (_, x) = c.post(&format!("/tasks/{qa}/submit"), json!({})).await;
    assert_eq!(x["status"], "accepted", "the last stage's submit is Finish");
    let (_, d) = c.get(&format!("/datasets/{id}")).await;
    assert_eq!(d["current_stage"], "Audit");
}

#[tokio::test]
async fn user_delayed_and_sequence_tasks() {
    let (c, id, tasks) = C::in_mode(
        "manual",
        "seq",
        &["0.png", "1.png", "2.png"],
        "label_by_label",
    )
    .await;
    assert!(!tasks.is_empty() && tasks.iter().all(|t| t["task_type"] == "label"));
    assert!(tasks.iter().all(|t| t["label_id"].is_string()));

    let (s, u) = c
        .get(&format!(
            "/clients/{}/user_tasks?email=sim-labeller@example.com",
            c.cid
        ))
        .await;
    assert_eq!(s, 200);
    assert_eq!(u["file_tasks"], json!([]));
    assert_eq!(u["label_tasks"].as_array().unwrap().len(), tasks.len() / 2);
    assert_eq!(
        c.get(&format!("/clients/{}/user_tasks", c.cid)).await.0,
        400
    );

    let (_, d) = c.get(&format!("/clients/{}/delayed_tasks", c.cid)).await;
    assert_eq!(d["delayed_tasks"], json!([]));
    c.sb.advance(8.0 * 24.0 * 3600.0);
    let (_, d) = c.get(&format!("/clients/{}/delayed_tasks", c.cid)).await;
    assert_eq!(d["delayed_tasks"].as_array().unwrap().len(), tasks.len());
    assert_eq!(d["delayed tasks"], d["delayed_tasks"]);

    // Assignments, then the sequence's labels are tracks shared by every frame.
    let label = tasks[0]["label_id"].as_str().unwrap();
    let (s, b) = c
        .post(
            &format!("/datasets/{id}/label_tasks"),
            json!([{"stage_id": "Labelling", "email": "ann@example.com", "label_ids": [label]}]),
        )
        .await;
    assert_eq!((s, b), (StatusCode::OK, json!({})));
    assert_eq!(c.tasks(&id).await[0]["assignee_email"], "ann@example.com");
    let (s, _) = c
        .post(&format!("/datasets/{id}/mark_labelling_done"), json!({}))
        .await;
    assert_eq!(s, 200);
    let (_, l) = c
        .get(&format!(
            "/datasets/{id}/labels?labels_with_file_ids_order=true&final=true"
        ))
        .await;
    let per_file = l["labels"].as_object().unwrap();
    let ids = |f: &str| -> Vec<String> {
        per_file[f]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["label_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(!ids("0.png").is_empty());
    assert_eq!(ids("0.png"), ids("2.png"));
}

#[tokio::test]
async fn profiles() {
    let c = C::start(0.0).await;
    let (s, p) = c
        .get(&format!("/clients/{}/labelling_profiles", c.cid))
        .await;
    assert_eq!(s, 200);
    assert_eq!(p["profiles"].as_array().unwrap().len(), 1);
    let (s, made) = c
        .post(
            &format!("/clients/{}/labelling_profiles", c.cid),
            json!({"profile_name": "3d", "features": {"3d_bbox": {"attributes": {}, "label_category_ids": ["truck"]}},
                   "instructions": {"text": ""}, "pipeline_spec": [{"stage_id": "Labelling", "can_edit": true}]}),
        )
        .await;
    assert_eq!(s, 200);
    let pid = made["profile_id"].as_str().unwrap();
    let (s, got) = c.get(&format!("/labelling_profiles/{pid}")).await;
    assert_eq!(s, 200);
    assert_eq!(got["profile_name"], "3d");
    let (s, d) = c
        .post(
            &format!("/clients/{}/datasets", c.cid),
            json!({"dataset_name": "p", "dataset_type": "3d", "dataset_format": "json",
                   "labelling_profile_id": pid, "files": [{"file_size": 10}]}),
        )
        .await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["pipeline_spec"].as_array().unwrap().len(), 1);
}
