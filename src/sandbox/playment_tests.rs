//! The Playment sandbox over real sockets, as a client sees it (docs/vendors/playment.md).

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::{Faults, Sandbox, SandboxConfig};

struct Client {
    sb: Sandbox,
    http: reqwest::Client,
    key: String,
    project: String,
}

fn config() -> SandboxConfig {
    SandboxConfig {
        vendor: "playment".into(),
        seed: 5,
        ..Default::default()
    }
}

impl Client {
    fn start(config: SandboxConfig) -> Client {
        let sb = Sandbox::start(config).unwrap();
        let key = sb.credentials()[0].1.clone();
        let project = sb.project();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Client {
            sb,
            http,
            key,
            project,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.sb.url(), path.replace("{p}", &self.project))
    }

    async fn send(
        &self,
        req: reqwest::RequestBuilder,
    ) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        let res = req.send().await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
        (status, body, headers)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let (s, b, _) = self
            .send(self.http.get(self.url(path)).header("x-api-key", &self.key))
            .await;
        (s, b)
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let (s, b, _) = self
            .send(
                self.http
                    .post(self.url(path))
                    .header("x-api-key", &self.key)
                    .json(&body),
            )
            .await;
        (s, b)
    }

    async fn batch(&self, name: &str) -> String {
        let (s, b) = self
            .post(
                "/v1/project/{p}/batch",
                json!({"name": name, "description": "d"}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        b["data"]["batch_id"].as_str().unwrap().to_string()
    }

    async fn job(&self, reference_id: &str, batch: Option<&str>) -> (StatusCode, Value) {
        self.post(
            "/v0/projects/{p}/jobs",
            json!({"id": null, "reference_id": reference_id, "tag": "t", "batch_id": batch,
                "data": {"image_url": "https://e.com/a/b.jpg", "metadata": null}, "priority_weight": 5}),
        )
        .await
    }
}

fn code(b: &Value) -> &str {
    assert_eq!(b["success"], json!(false), "{b}");
    b["error"]["code"].as_str().unwrap()
}

#[tokio::test]
async fn auth_and_tenancy() {
    let c = Client::start(config());
    let res = c
        .http
        .get(c.url("/v0/projects/{p}/details"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let b: Value = res.json().await.unwrap();
    assert_eq!(code(&b), "auth-failure");
    let (s, b, _) = c
        .send(
            c.http
                .get(c.url("/v0/projects/{p}/details"))
                .header("x-api-key", "nope"),
        )
        .await;
    assert_eq!((s, code(&b)), (StatusCode::UNAUTHORIZED, "auth-failure"));
    let (s, b) = c
        .get(&format!("/v0/projects/{}/details", uuid::Uuid::new_v4()))
        .await;
    assert_eq!((s, code(&b)), (StatusCode::BAD_REQUEST, "resource_error"));
    let (s, b) = c.get("/v1/projects/{p}/details").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["success"], json!(true));
    let batches = b["data"]["batches"].as_array().unwrap();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0]["is_default"], json!(true));
    let (s, b) = c.get("/v0/nothing/here").await;
    assert_eq!((s, code(&b)), (StatusCode::NOT_FOUND, "GE_0002"));
}

#[tokio::test]
async fn create_job_validation_in_order() {
    let c = Client::start(config());
    let p = "/v0/projects/{p}/jobs";
    let img = json!({"image_url": "https://e.com/a/b.jpg"});
    let cases = [
        (json!({"tag": "t", "data": img}), "FS_0002"),
        (
            json!({"reference_id": "", "tag": "t", "data": img}),
            "FS_0002",
        ),
        (json!({"reference_id": "r", "data": img}), "FS_0005"),
        (json!({"reference_id": "r", "tag": "t"}), "FS_0004"),
        (
            json!({"reference_id": "r", "tag": "t", "data": {}}),
            "FS_0004",
        ),
        (
            json!({"reference_id": "r", "tag": "t", "data": {"url": "x"}}),
            "FS_0003",
        ),
        (
            json!({"reference_id": "r", "tag": "t", "data": img, "priority_weight": 11}),
            "FS_00012",
        ),
        (
            json!({"reference_id": "r", "tag": "t", "data": img, "priority_weight": 0}),
            "FS_00012",
        ),
        (
            json!({"reference_id": "r", "tag": "t", "data": img, "priority_weight": 2.5}),
            "FS_00012",
        ),
        (
            json!({"reference_id": "r", "tag": "t", "data": img, "batch_id": "x"}),
            "GE_0001",
        ),
        (
            json!({"reference_id": "r", "tag": "t", "data": img, "batch_id": uuid::Uuid::new_v4().to_string()}),
            "GE_0001",
        ),
    ];
    for (body, want) in cases {
        let (s, b) = c.post(p, body.clone()).await;
        assert_eq!((s, code(&b)), (StatusCode::BAD_REQUEST, want), "{body}");
    }
    let (s, b, _) = c
        .send(
            c.http
                .post(c.url(p))
                .header("x-api-key", &c.key)
                .body("{nope"),
        )
        .await;
    assert_eq!((s, code(&b)), (StatusCode::BAD_REQUEST, "GE_0001"));
    assert_eq!(c.sb.stats()["records_total"], json!(0));

    // v0 answers with tag, v1 with work_flow_id; the SDK's path is an alias.
    let (s, b) = c.job("r0", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["data"]["tag"], json!("t"));
    assert_eq!(b["data"]["reference_id"], json!("r0"));
    let (_, b) = c
        .post(
            "/v1/projects/{p}/jobs",
            json!({"reference_id": "r1", "work_flow_id": "wf", "data": img}),
        )
        .await;
    assert_eq!(b["data"]["work_flow_id"], json!("wf"));
    let (s, _) = c
        .post(
            "/projectsvc/projects/{p}/jobs",
            json!({"reference_id": "r2", "tag": "t", "data": img}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = c.job("r0", None).await;
    assert_eq!((s, code(&b)), (StatusCode::BAD_REQUEST, "FS_0001"));
    assert_eq!(b["error"]["message"], json!("Duplicate Reference Id"));
}

#[tokio::test]
async fn duplicates_race_to_exactly_one_winner() {
    let c = std::sync::Arc::new(Client::start(config()));
    let batch = c.batch("race").await;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (c, batch) = (c.clone(), batch.clone());
            tokio::spawn(async move { c.job("same", Some(&batch)).await })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        let (s, b) = t.await.unwrap();
        if s == StatusCode::OK {
            wins += 1;
        } else {
            assert_eq!(code(&b), "FS_0001");
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(c.sb.stats()["records_created"]["same"], json!(1));
}

#[tokio::test]
async fn batches_page_by_token() {
    let c = Client::start(config());
    let batch = c.batch("b1").await;
    let (s, b) = c
        .post("/v1/projects/{p}/batch", json!({"name": "b1"}))
        .await;
    assert_eq!((s, code(&b)), (StatusCode::BAD_REQUEST, "BATCH_CREATION"));
    for i in 0..250 {
        assert_eq!(
            c.job(&format!("k{i:03}"), Some(&batch)).await.0,
            StatusCode::OK
        );
    }
    let mut token = String::new();
    let mut seen = vec![];
    let mut pages = 0;
    loop {
        let path = if token.is_empty() {
            format!("/v0/projects/{{p}}/batch/{batch}")
        } else {
            format!("/v0/projects/{{p}}/batch/{batch}?page_token={token}")
        };
        let (s, b) = c.get(&path).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        pages += 1;
        let d = &b["data"];
        assert_eq!(d["id"], json!(batch));
        for j in d["jobs"].as_array().unwrap() {
            for k in [
                "id",
                "reference_id",
                "status",
                "frames",
                "annotations",
                "priority_weight",
                "tag",
                "viewer_url",
            ] {
                assert!(j.get(k).is_some(), "{k} missing in {j}");
            }
            seen.push(j["reference_id"].as_str().unwrap().to_string());
        }
        token = d["next_page_token"].as_str().unwrap().to_string();
        if token.is_empty() {
            break;
        }
        assert!(token.bytes().all(|c| c.is_ascii_digit()));
    }
    assert_eq!(pages, 3);
    let want: Vec<String> = (0..250).map(|i| format!("k{i:03}")).collect();
    assert_eq!(seen, want);
    let (s, b) = c
        .get(&format!("/v0/projects/{{p}}/batch/{batch}?page_token=123"))
        .await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::BAD_REQUEST, "invalid_request_error")
    );
    let (_, b) = c.get("/v1/projects/{p}/details").await;
    let ours = b["data"]["batches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == json!(batch))
        .unwrap()
        .clone();
    assert_eq!(ours["total_jobs"], json!(250));
    assert_eq!(ours["completed_jobs"], json!(250));
    assert_eq!(ours["status"], json!("Complete"));
    let (_, b) = c.get("/v0/projects/{p}/stats").await;
    assert_eq!(b["data"]["total_jobs"], json!(250));
}

#[tokio::test]
async fn status_progression_and_results_behind_a_redirect() {
    let c = Client::start(SandboxConfig {
        complete_after: 10.0,
        ..config()
    });
    let (_, b) = c.job("r1", None).await;
    let job = b["data"]["job_id"].as_str().unwrap().to_string();
    let (_, b) = c.get(&format!("/v0/projects/{{p}}/jobs/{job}")).await;
    assert_eq!(b["data"]["status"], json!("created"));
    assert_eq!(b["data"]["result"], json!(""));
    c.sb.advance(5.0);
    let (_, b) = c.get(&format!("/v1/projects/{{p}}/jobs/{job}")).await;
    assert_eq!(b["data"]["status"], json!("in_progress"));
    assert_eq!(b["data"]["work_flow_id"], json!("t"));
    c.sb.advance(5.0);
    let (_, b) = c.get(&format!("/v0/projects/{{p}}/jobs/{job}")).await;
    let d = &b["data"];
    assert_eq!(d["status"], json!("completed"));
    for k in [
        "project_id",
        "reference_id",
        "job_id",
        "batch_id",
        "tag",
        "priority_weight",
    ] {
        assert!(d.get(k).is_some(), "{k}");
    }
    let result = d["result"].as_str().unwrap().to_string();
    assert!(result.starts_with("http://127.0.0.1:"), "{result}");

    let res = c
        .http
        .get(c.url("/v1/attachments"))
        .query(&[("url", &result)])
        .header("x-api-key", &c.key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FOUND);
    let location = res.headers()["location"].to_str().unwrap().to_string();
    assert!(location.contains("sig="), "{location}");
    // Storage must never see the key.
    let (s, _, _) = c
        .send(c.http.get(&location).header("x-api-key", &c.key))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let res = c.http.get(&location).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().contains_key("last-modified"));
    let file: Value = res.json().await.unwrap();
    assert_eq!(file["data"]["image_url"], json!("https://e.com/a/b.jpg"));
    let rects = file["data"]["annotations"]["rectangles"]
        .as_array()
        .unwrap();
    assert!(!rects.is_empty() && rects[0]["_id"].is_string());
    let res = c
        .http
        .get(location.replace("sig=", "sig=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    let (s, b, _) = c
        .send(
            c.http
                .get(c.url("/v1/attachments"))
                .query(&[("url", "https://elsewhere/x.json")])
                .header("x-api-key", &c.key),
        )
        .await;
    assert_eq!((s, code(&b)), (StatusCode::BAD_REQUEST, "FS_0007"));
    let (s, b) = c
        .get(&format!("/v0/projects/{{p}}/jobs/{}", uuid::Uuid::new_v4()))
        .await;
    assert_eq!((s, code(&b)), (StatusCode::BAD_REQUEST, "FS_0006"));
}

#[tokio::test]
async fn faults_answer_in_the_envelope_and_commit_then_fail_stores() {
    let c = Client::start(SandboxConfig {
        faults: Faults {
            commit_then_fail: 1.0,
            ..Default::default()
        },
        ..config()
    });
    let (s, b) = c.job("x", None).await;
    assert_eq!(
        (s, code(&b)),
        (StatusCode::INTERNAL_SERVER_ERROR, "FS_0000")
    );
    assert_eq!(c.sb.stats()["records_created"]["x"], json!(1));
    // The SDK's blind retry then sees the duplicate.
    let (s, b) = c.job("x", None).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    let _ = b;
    assert_eq!(c.sb.stats()["records_created"]["x"], json!(1));
    tokio::time::sleep(Duration::from_millis(1)).await;
}
