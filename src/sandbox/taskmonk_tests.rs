//! The TaskMonk sandbox over real sockets, as the SDK and a client see it (docs/vendors/taskmonk.md).

use std::io::Write;

use base64::Engine;
use serde_json::{json, Value};

use super::super::test_http::{send, Answer};
use super::super::{Dialect, Faults, Sandbox, SandboxConfig, Setting};
use super::{ingest_offset_ms, progress_json, OTHER_PROJECT, PROJECT};
use crate::sandbox::taskmonk_files::{self as files, FileType};

struct Client {
    sb: Sandbox,
    http: reqwest::Client,
    token: String,
}

fn config(complete_after: f64) -> SandboxConfig {
    SandboxConfig {
        vendor: "taskmonk".into(),
        seed: 5,
        complete_after,
        ..Default::default()
    }
}

fn gzip_b64(bytes: &[u8]) -> String {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap())
}

fn csv_of(keys: &[String]) -> String {
    let mut s = String::from("image_url,external_id\n");
    for k in keys {
        s.push_str(&format!("https://img/{k}.jpg,{k}\n"));
    }
    s
}

fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:04}")).collect()
}

impl Client {
    async fn start(config: SandboxConfig) -> Client {
        let sb = Sandbox::start(config).unwrap();
        let mut c = Client {
            sb,
            http: reqwest::Client::new(),
            token: String::new(),
        };
        let t = c.token_call(&c.creds()).await;
        assert_eq!(t.status, 200, "{}", t.text);
        c.token = t.body["access_token"].as_str().unwrap().to_string();
        c
    }

    fn creds(&self) -> Vec<(String, String)> {
        self.sb.credentials()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.sb.url(), path)
    }

    async fn token_call(&self, creds: &[(String, String)]) -> Answer {
        let mut q: Vec<(String, String)> = vec![("grant_type".into(), "client_credentials".into())];
        q.extend(creds.iter().cloned());
        send(
            self.http
                .post(self.url("/api/oauth2/token"))
                .query(&q)
                .header("accept", "application/json"),
        )
        .await
    }

    async fn get(&self, path: &str) -> Answer {
        send(self.http.get(self.url(path)).bearer_auth(&self.token)).await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        send(
            self.http
                .post(self.url(path))
                .bearer_auth(&self.token)
                .json(&body),
        )
        .await
    }

    async fn post_text(&self, path: &str, body: String) -> Answer {
        send(
            self.http
                .post(self.url(path))
                .bearer_auth(&self.token)
                .header("content-type", "text/plain")
                .body(body),
        )
        .await
    }

    async fn sim(&self, path: &str, body: Value) -> Value {
        let a = send(self.http.post(self.url(path)).json(&body)).await;
        assert_eq!(a.status, 200, "{}", a.text);
        a.body
    }

    async fn create_batch(&self, name: &str) -> String {
        let a = self
            .post(
                &format!("/api/project/{PROJECT}/batch"),
                json!({"batch_name": name, "priority": 0, "comments": "", "notifications": []}),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        a.body["id"].as_str().expect("a string id").to_string()
    }

    async fn import(&self, batch: &str, csv: &str) -> String {
        let a = self
            .post_text(
                &format!("/api/project/v2/{PROJECT}/batch/{batch}/tasks/import?fileType=CSV"),
                gzip_b64(csv.as_bytes()),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        a.body["job_id"].as_str().unwrap().to_string()
    }

    async fn job(&self, job: &str) -> Value {
        let a = self
            .get(&format!("/api/project/{PROJECT}/job/{job}/status"))
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        a.body
    }

    async fn batch_status(&self, batch: &str) -> Value {
        let a = self
            .get(&format!("/api/project/{PROJECT}/batch/{batch}/status"))
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        a.body
    }

    /// Starts an output job, waits for it, downloads the file without auth.
    async fn output(&self, path: &str, format: &str, body: Value) -> (files::Table, Answer) {
        let a = self
            .post(&format!("/api/project/{path}?output_format={format}"), body)
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        let url = a.body["file_url"]
            .as_str()
            .or(a.body["fileUrl"].as_str())
            .unwrap()
            .to_string();
        let job = a.body["job_id"]
            .as_str()
            .or(a.body["jobId"].as_str())
            .unwrap()
            .to_string();
        let early = send(self.http.get(&url)).await;
        assert_eq!(early.status, 404, "the file exists before its job is done");
        loop {
            let p = self.job(&job).await;
            if p["completed"] == p["total"] {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        }
        let file = send(self.http.get(&url)).await;
        assert_eq!(file.status, 200, "{}", file.text);
        let kind = if format.eq_ignore_ascii_case("csv") {
            FileType::Csv
        } else {
            FileType::Excel
        };
        assert_eq!(file.content_type(), kind.content_type());
        (files::parse(&file.bytes, kind).unwrap(), file)
    }

    async fn wait_job(&self, job: &str) -> Value {
        for _ in 0..200 {
            let p = self.job(job).await;
            if p["completed"] == p["total"] {
                return p;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("job {job} never finished");
    }
}

#[test]
fn pure_parts() {
    assert_eq!(ingest_offset_ms(0, 1000.0), 1);
    assert_eq!(ingest_offset_ms(999, 1000.0), 1000);
    assert!(ingest_offset_ms(0, 0.0) > 1 << 50);
    assert_eq!(progress_json(2, 3)["percentage"], 66);
    assert_eq!(progress_json(0, 0)["percentage"], 0);
}

#[tokio::test]
async fn token_endpoint_and_auth_errors() {
    let c = Client::start(config(0.0)).await;
    // Exactly the documented four keys.
    let t = c.token_call(&c.creds()).await;
    let mut names: Vec<&str> = t
        .body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["access_token", "expires_in", "refresh_token", "token_type"]
    );
    assert_eq!(t.body["token_type"], "Bearer");
    assert_eq!(t.body["expires_in"], 3500);

    let bad = c
        .token_call(&[
            ("client_id".into(), "sandbox-client".into()),
            ("client_secret".into(), "nope".into()),
        ])
        .await;
    assert_eq!(bad.status, 401);
    assert_eq!(bad.body["error"], "invalid_client");
    assert!(bad.content_type().starts_with("application/json"));

    let refresh = send(c.http.post(c.url("/api/oauth2/token")).query(&[
        ("grant_type", "refresh_token"),
        ("client_id", &c.creds()[0].1),
        ("client_secret", &c.creds()[1].1),
        ("refresh_token", t.body["refresh_token"].as_str().unwrap()),
    ]))
    .await;
    assert_eq!(refresh.status, 200, "{}", refresh.text);

    let none = send(c.http.get(c.url(&format!("/api/project/{PROJECT}/batch")))).await;
    assert_eq!(none.status, 401);
    assert_eq!(
        c.get(&format!("/api/project/{OTHER_PROJECT}/batch"))
            .await
            .status,
        403
    );
    assert_eq!(c.get("/api/project/999/batch").await.status, 404);
    assert_eq!(
        c.get(&format!("/api/project/{PROJECT}/batch")).await.status,
        200
    );
    c.sb.expire_tokens();
    let expired = c.get(&format!("/api/project/{PROJECT}/batch")).await;
    assert_eq!(expired.status, 401);
    assert_eq!(expired.body["message"], "Access token expired");
}

#[tokio::test]
async fn token_ttl_runs_on_the_sandbox_clock() {
    let c = Client::start(SandboxConfig {
        faults: Faults {
            token_ttl: Some(60.0),
            ..Default::default()
        },
        ..config(0.0)
    })
    .await;
    assert_eq!(
        c.get(&format!("/api/project/{PROJECT}/batch")).await.status,
        200
    );
    c.sb.advance(61.0);
    assert_eq!(
        c.get(&format!("/api/project/{PROJECT}/batch")).await.status,
        401
    );
}

#[tokio::test]
async fn batches_are_created_listed_and_updated() {
    let c = Client::start(config(0.0)).await;
    let a = c.create_batch("first").await;
    let b = c.create_batch("second").await;
    assert!(b.parse::<u64>().unwrap() > a.parse::<u64>().unwrap());
    let missing = c
        .post(
            &format!("/api/project/{PROJECT}/batch"),
            json!({"priority": 1}),
        )
        .await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.body["error"], "bad_request");

    let list = c.get(&format!("/api/project/{PROJECT}/batch")).await;
    let items = list.body.as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["id"], a.as_str());
    assert_eq!(items[0]["name"], "first");
    assert_eq!(items[0]["project_id"], PROJECT);
    assert_eq!(items[0]["status"], "Active");

    let put = send(c.http
            .put(c.url(&format!("/api/project/{PROJECT}/batch/{a}")))
            .bearer_auth(&c.token)
            .json(&json!({"batch_name": "first", "priority": 7, "comments": "hi", "notifications": []}))).await;
    assert_eq!(put.status, 200, "{}", put.text);
    let list = c.get(&format!("/api/project/{PROJECT}/batch")).await;
    assert_eq!(list.body[0]["priority"], 7);
    let state = send(
        c.http
            .put(c.url(&format!("/api/project/{PROJECT}/batch/{a}/state")))
            .bearer_auth(&c.token)
            .json(&json!({"state": "Paused"})),
    )
    .await;
    assert_eq!(state.body, json!({"id": a, "state": "Paused"}));
    assert_eq!(
        c.get(&format!("/api/project/{PROJECT}/batch/99999/status"))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn import_jobs_progress_and_batches_count_tasks() {
    let c = Client::start(config(0.0)).await;
    c.sim("/_sim/ingestion", json!({"rows_per_second": 1000.0}))
        .await;
    let batch = c.create_batch("b").await;
    let ks = keys("k", 300);
    let job = c.import(&batch, &csv_of(&ks)).await;
    let first = c.job(&job).await;
    assert_eq!(first["total"], 300);
    assert!(first["completed"].as_u64().unwrap() < 300, "{first}");
    let done = c.wait_job(&job).await;
    assert_eq!(
        done,
        json!({"completed": 300, "total": 300, "percentage": 100})
    );
    let status = c.batch_status(&batch).await;
    assert_eq!(
        status,
        json!({"new_count": 0, "in_progress": 0, "completed": 300, "total": 300})
    );
    // Upload progress of the whole batch (Java's isUploadComplete).
    let by_batch = c
        .get(&format!(
            "/api/project/{PROJECT}/job/{batch}/status?input_type=batch"
        ))
        .await;
    assert_eq!(by_batch.body["total"], 300);
    // Each key stored once, counted when the job was created.
    let stats = c.sb.stats();
    assert_eq!(stats["records_created"].as_object().unwrap().len(), 300);
    assert_eq!(stats["records_created"]["k0007"], 1);
    // A job belongs to its project.
    assert_eq!(
        c.get(&format!("/api/project/{PROJECT}/job/not-a-job/status"))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn import_variants_and_refusals() {
    let c = Client::start(config(0.0)).await;
    let batch = c.create_batch("b").await;
    // v1 answers in camelCase.
    let v1 = c
        .post_text(
            &format!("/api/project/{PROJECT}/batch/{batch}/tasks/import?fileType=csv"),
            gzip_b64(b"a,external_id\n1,x1\n"),
        )
        .await;
    assert_eq!(v1.status, 200, "{}", v1.text);
    assert_eq!(v1.body["batchId"], batch.as_str());
    assert!(v1.body["jobId"].is_string());
    // Excel, named by the Postman spelling; raw (not base64) gzip is tolerated.
    let xlsx = files::write(
        &files::Table {
            header: vec!["a".into(), "external_id".into()],
            rows: vec![vec!["2".into(), "x2".into()]],
        },
        FileType::Excel,
    )
    .unwrap();
    let excel = c
        .post_text(
            &format!("/api/batch/{batch}/tasks/import?file_type=excel"),
            gzip_b64(&xlsx),
        )
        .await;
    assert_eq!(excel.status, 200, "{}", excel.text);
    // The dictionary import, flat and with external_id.
    let dict = c
        .post(
            &format!("/api/project/{PROJECT}/batch/{batch}/tasks/import/dictionary"),
            json!([{"a": 3, "external_id": "x3"}, {"external_id": "x4", "data": {"a": "4"}}]),
        )
        .await;
    assert_eq!(dict.status, 200, "{}", dict.text);
    c.wait_job(dict.body["job_id"].as_str().unwrap()).await;
    let status = c.batch_status(&batch).await;
    assert_eq!(status["total"], 4);

    let import = format!("/api/project/v2/{PROJECT}/batch/{batch}/tasks/import?fileType=CSV");
    let empty = c.post_text(&import, gzip_b64(b"a,b\n")).await;
    assert_eq!(empty.status, 400);
    assert_eq!(empty.body["error"], "bad_request");
    let garbage = c.post_text(&import, "%%% not base64".into()).await;
    assert_eq!(garbage.status, 400, "{}", garbage.text);
    let missing = c
        .post_text(
            &format!("/api/project/v2/{PROJECT}/batch/424242/tasks/import?fileType=CSV"),
            gzip_b64(b"a\n1\n"),
        )
        .await;
    assert_eq!(missing.status, 404);

    c.sim(
        "/_sim/project/schema",
        json!({"input_fields": ["a", "external_id"]}),
    )
    .await;
    let unknown = c.post_text(&import, gzip_b64(b"a,zzz\n1,2\n")).await;
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.body["error"], "invalid_field");
}

/// The SDKs send the file as `text/plain` (the Java SDK with a charset); JSON is refused on every file
/// import route, before the body is read.
#[tokio::test]
async fn file_imports_refuse_a_json_content_type() {
    let c = Client::start(config(0.0)).await;
    let batch = c.create_batch("b").await;
    let body = gzip_b64(b"a,external_id\n1,x1\n");
    for path in [
        format!("/api/project/v2/{PROJECT}/batch/{batch}/tasks/import?fileType=CSV"),
        format!("/api/project/{PROJECT}/batch/{batch}/tasks/import?fileType=CSV"),
        format!("/api/batch/{batch}/tasks/import?fileType=CSV"),
    ] {
        let send_as = |content_type: &'static str| {
            send(
                c.http
                    .post(c.url(&path))
                    .bearer_auth(&c.token)
                    .header("content-type", content_type)
                    .body(body.clone()),
            )
        };
        let json = send_as("application/json").await;
        assert_eq!(json.status, 415, "{path}: {}", json.text);
        assert_eq!(json.body["error"], "unsupported_media_type");
        let java = send_as("text/plain; charset=ISO-8859-1").await;
        assert_eq!(java.status, 200, "{path}: {}", java.text);
    }
    // Only the three text imports were stored.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(c.batch_status(&batch).await["total"], 3);
}

#[tokio::test]
async fn output_files_csv_excel_and_per_user_columns() {
    let c = Client::start(config(10.0)).await;
    let batch = c.create_batch("out").await;
    let job = c.import(&batch, &csv_of(&keys("o", 4))).await;
    c.wait_job(&job).await;
    let base = format!("v2/{PROJECT}/batch/{batch}");
    let out = format!("{base}/output");
    let (t, _) = c
        .output(
            &out,
            "CSV",
            json!({"field_names": [], "completedOnly": true}),
        )
        .await;
    assert_eq!(
        t.header,
        [
            "image_url",
            "external_id",
            "label",
            "confidence",
            "is_occluded"
        ]
    );
    assert!(t.rows.is_empty(), "nothing is complete yet: {:?}", t.rows);
    let (t, _) = c
        .output(
            &out,
            "CSV",
            json!({"field_names": [], "completedOnly": false}),
        )
        .await;
    assert_eq!(t.rows.len(), 4);
    assert_eq!(t.rows[0][2], "", "no output before completion");

    c.sb.advance(5.0);
    assert_eq!(c.batch_status(&batch).await["in_progress"], 4);
    c.sb.advance(5.0);
    assert_eq!(c.batch_status(&batch).await["completed"], 4);
    let (csv, _) = c.output(&out, "CSV", json!({"completedOnly": true})).await;
    assert_eq!(csv.rows.len(), 4);
    assert_eq!(csv.rows[0][1], "o0000");
    assert!(["car", "truck", "bus", "bicycle"].contains(&csv.rows[0][2].as_str()));
    let (xlsx, _) = c
        .output(&out, "Excel", json!({"completedOnly": true}))
        .await;
    assert_eq!(xlsx, csv, "the Excel file holds what the CSV holds");

    let (users, _) = c
        .output(
            &format!("{PROJECT}/batch/{batch}/output/file"),
            "CSV",
            json!({"completedOnly": true}),
        )
        .await;
    let col = |name: &str| users.header.iter().position(|h| h == name).unwrap();
    assert_eq!(users.rows[0][col("L1_U1_User")], "L1_U1");
    assert!(users.rows[0][col("L1_U1_Completion_Date")].ends_with('Z'));

    let (only, _) = c
        .output(
            &out,
            "csv",
            json!({"field_names": ["external_id", "label"]}),
        )
        .await;
    assert_eq!(only.header, ["external_id", "label"]);
    let bad = c
        .post(
            &format!("/api/project/{base}/output?output_format=PDF"),
            json!({}),
        )
        .await;
    assert_eq!(bad.status, 400);
    // v1 answers in camelCase.
    let v1 = c
        .post(
            &format!("/api/project/{PROJECT}/batch/{batch}/output?output_format=CSV"),
            json!({"fieldNames": []}),
        )
        .await;
    assert!(
        v1.body["fileUrl"].is_string() && v1.body["jobId"].is_string(),
        "{}",
        v1.text
    );
    // The dictionary export pages.
    let page = c
        .post(
            &format!("/api/project/{PROJECT}/batch/{batch}/output/dictionary"),
            json!({"page": 2, "page_size": 3}),
        )
        .await;
    assert_eq!(page.body["total"], 4);
    assert_eq!(page.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(page.body["items"][0]["external_id"], "o0003");
}

#[tokio::test]
async fn stalled_jobs_never_finish_and_tasks_can_wait_forever() {
    let c = Client::start(config(0.0)).await;
    let batch = c.create_batch("stuck").await;
    c.sim("/_sim/ingestion", json!({"stall": true})).await;
    let job = c.import(&batch, &csv_of(&keys("s", 10))).await;
    c.sb.advance(1000.0);
    assert_eq!(
        c.job(&job).await,
        json!({"completed": 5, "total": 10, "percentage": 50})
    );
    c.sim("/_sim/ingestion", json!({"stall": false})).await;
    c.sim("/_sim/auto-complete", json!({"enabled": false}))
        .await;
    let job = c.import(&batch, &csv_of(&keys("n", 3))).await;
    c.wait_job(&job).await;
    c.sb.advance(1000.0);
    let status = c.batch_status(&batch).await;
    assert_eq!(status["new_count"], 3, "{status}");
    assert_eq!(status["completed"], 5);
    let done = c
        .sim(
            &format!("/_sim/batch/{batch}/complete"),
            json!({"outputs": {"label": "bus"}}),
        )
        .await;
    assert_eq!(done["completed"], 3);
    let status = c.batch_status(&batch).await;
    assert_eq!(status["completed"], 8);
}

#[tokio::test]
async fn commit_then_fail_stores_the_import() {
    let c = Client::start(config(0.0)).await;
    let batch = c.create_batch("f").await;
    c.sim(
        "/_sim/faults",
        json!({"status": 500, "path": "/tasks/import", "commit": true}),
    )
    .await;
    let a = c
        .post_text(
            &format!("/api/project/v2/{PROJECT}/batch/{batch}/tasks/import?fileType=CSV"),
            gzip_b64(csv_of(&keys("c", 2)).as_bytes()),
        )
        .await;
    assert_eq!(a.status, 500);
    assert_eq!(a.body["error"], "server_error");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(c.batch_status(&batch).await["total"], 2);
    let stats = c.sb.stats();
    assert_eq!(stats["records_created"]["c0001"], 1);
}

#[tokio::test]
async fn url_imports_external_tasks_and_taxonomies() {
    let c = Client::start(config(0.0)).await;
    let batch = c.create_batch("u").await;
    let dir = std::env::temp_dir().join(format!("tm-sandbox-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tasks.csv");
    std::fs::write(&file, csv_of(&keys("u", 3))).unwrap();
    let url = url::Url::from_file_path(&file).unwrap().to_string();
    let a = c
        .post(
            &format!("/api/project/{PROJECT}/batch/{batch}/tasks/import/url"),
            json!({"file_url": url, "file_type": "CSV"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.body["batchId"], batch.as_str());
    c.wait_job(a.body["jobId"].as_str().unwrap()).await;
    let refused = c
        .post(
            &format!("/api/project/{PROJECT}/batch/{batch}/tasks/import/url"),
            json!({"file_url": "https://example.com/x.csv", "file_type": "CSV"}),
        )
        .await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.body["error"], "fetch_failed");

    let task = c
        .post(
            &format!("/api/project/{PROJECT}/task/external"),
            json!({"externalId": "ext-1", "project_id": PROJECT, "batch_id": batch, "input": {"image_url": "https://img/e.jpg"}, "output": {}}),
        )
        .await;
    assert_eq!(task.status, 200, "{}", task.text);
    assert!(task.body["id"].as_str().unwrap().parse::<u64>().is_ok());
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(c.batch_status(&batch).await["total"], 4);
    assert_eq!(c.sb.stats()["records_created"]["ext-1"], 1);

    let tax = c
        .post(
            &format!("/api/project/{PROJECT}/taxonomy"),
            json!({"name": "vehicles"}),
        )
        .await;
    let tax_id = tax.body["id"].as_str().unwrap().to_string();
    let xlsx = files::write(
        &files::Table {
            header: vec!["category".into()],
            rows: vec![vec!["car".into()], vec!["bus".into()]],
        },
        FileType::Excel,
    )
    .unwrap();
    for path in [
        format!("/api/project/v2/{PROJECT}/taxonomy/import?file_type=Excel"),
        format!("/api/project/v2/{PROJECT}/taxonomy/{tax_id}/import?file_type=Excel"),
    ] {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(xlsx.clone()).file_name("file"),
        );
        let a = send(
            c.http
                .post(c.url(&path))
                .bearer_auth(&c.token)
                .multipart(form),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(a.body, json!({"count": 2}));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn files_refuse_credentials_and_expire() {
    let c = Client::start(config(0.0)).await;
    let batch = c.create_batch("files").await;
    c.wait_job(&c.import(&batch, &csv_of(&keys("f", 2))).await)
        .await;
    let a = c
        .post(
            &format!("/api/project/v2/{PROJECT}/batch/{batch}/output?output_format=CSV"),
            json!({}),
        )
        .await;
    let url = a.body["file_url"].as_str().unwrap().to_string();
    c.wait_job(a.body["job_id"].as_str().unwrap()).await;
    let with_token = send(c.http.get(&url).bearer_auth(&c.token)).await;
    assert_eq!(with_token.status, 400);
    assert_eq!(send(c.http.get(&url)).await.status, 200);
    // A later output job sweeps files past their hour.
    c.sb.advance(3601.0);
    let t = c.token_call(&c.creds()).await;
    let fresh = send(
        c.http
            .post(c.url(&format!(
                "/api/project/v2/{PROJECT}/batch/{batch}/output?output_format=CSV"
            )))
            .bearer_auth(t.body["access_token"].as_str().unwrap())
            .json(&json!({})),
    )
    .await;
    assert_eq!(fresh.status, 200, "{}", fresh.text);
    assert_eq!(send(c.http.get(&url)).await.status, 404);
}

#[tokio::test]
async fn exception_rate_sends_tasks_back_for_rework() {
    let start = || {
        Client::start(SandboxConfig {
            exception_rate: 0.5,
            ..config(0.0)
        })
    };
    let c = start().await;
    let batch = c.create_batch("rework").await;
    c.wait_job(&c.import(&batch, &csv_of(&keys("h", 40))).await)
        .await;
    let s = c.batch_status(&batch).await;
    let reworked = s["in_progress"].as_u64().unwrap();
    assert!(reworked > 5 && reworked < 35, "{s}");
    assert_eq!(s["completed"].as_u64().unwrap() + reworked, 40);
    // The same seed sends the same tasks back.
    let again = start().await;
    let b2 = again.create_batch("rework").await;
    again
        .wait_job(&again.import(&b2, &csv_of(&keys("h", 40))).await)
        .await;
    assert_eq!(again.batch_status(&b2).await["in_progress"], reworked);
    // Rework ends: every task completes.
    c.sb.advance(1.5);
    assert_eq!(c.batch_status(&batch).await["completed"], 40);
}

fn dialect_config(settings: &[(&str, Setting)]) -> SandboxConfig {
    let dialect = settings
        .iter()
        .fold(Dialect::default(), |d, (name, value)| {
            d.set(name, value.clone())
        });
    SandboxConfig {
        dialect,
        ..config(0.0)
    }
}

/// The dictionary export is the listing that takes a page size: `page_cap` lowers its cap.
#[tokio::test]
async fn dialect_page_cap_caps_the_dictionary_export() {
    let c = Client::start(dialect_config(&[("page_cap", Setting::Number(250))])).await;
    let batch = c.create_batch("capped").await;
    let job = c.import(&batch, &csv_of(&keys("p", 600))).await;
    c.wait_job(&job).await;
    let page = c
        .post(
            &format!("/api/project/{PROJECT}/batch/{batch}/output/dictionary"),
            json!({"page": 1, "page_size": 1000}),
        )
        .await;
    assert_eq!(page.body["total"], 600, "{}", page.text);
    assert_eq!(page.body["items"].as_array().unwrap().len(), 250);
    assert_eq!(page.body["page_size"], 250);
}

#[tokio::test]
async fn dialect_counts_statuses_and_refusals() {
    let c = Client::start(dialect_config(&[
        ("counts_as_strings", Setting::Switch(true)),
        ("batch_status_new", Setting::Word("not_started".into())),
        ("no_batch_import_progress", Setting::Switch(true)),
        ("refuse_start_time_update", Setting::Switch(true)),
        ("output_job_counts_rows", Setting::Switch(true)),
    ]))
    .await;
    let batch = c.create_batch("d").await;
    let job = c.import(&batch, &csv_of(&keys("d", 3))).await;
    let done = c.wait_job(&job).await;
    assert_eq!(done["completed"], "3");
    assert_eq!(done["total"], "3");
    let status = c.batch_status(&batch).await;
    assert!(status.get("new_count").is_none(), "{status}");
    assert!(status["not_started"].is_string() && status["total"] == "3");
    let by_batch = c
        .get(&format!(
            "/api/project/{PROJECT}/job/{batch}/status?input_type=batch"
        ))
        .await;
    assert_eq!(by_batch.status, 404);
    let put = |body: Value| {
        send(
            c.http
                .put(c.url(&format!("/api/project/{PROJECT}/batch/{batch}")))
                .bearer_auth(&c.token)
                .json(&body),
        )
    };
    let refused = put(json!({"batch_name": "d", "priority": 3, "start_time": "2026-01-01"})).await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    let taken = put(json!({"batch_name": "d", "priority": 3})).await;
    assert_eq!(taken.status, 200, "{}", taken.text);
    // An output job of an empty selection: 0 of 0.
    let nothing = c.create_batch("empty").await;
    let empty = c
        .post(
            &format!("/api/project/v2/{PROJECT}/batch/{nothing}/output?output_format=CSV"),
            json!({"field_names": [], "completedOnly": true}),
        )
        .await;
    let out = c.job(empty.body["job_id"].as_str().unwrap()).await;
    assert_eq!(
        (&out["completed"], &out["total"]),
        (&json!("0"), &json!("0"))
    );
}

#[tokio::test]
async fn dialect_drop_key_column_and_date_spellings() {
    let c = Client::start(dialect_config(&[
        ("drop_key_column", Setting::Switch(true)),
        ("date_columns", Setting::Word("spaced".into())),
    ]))
    .await;
    let batch = c.create_batch("k").await;
    let job = c.import(&batch, &csv_of(&keys("k", 2))).await;
    c.wait_job(&job).await;
    let by_name = c
        .post(
            &format!("/api/project/v2/{PROJECT}/batch/{batch}/output?output_format=CSV"),
            json!({"field_names": ["external_id"], "completedOnly": false}),
        )
        .await;
    assert_eq!(by_name.status, 400, "{}", by_name.text);
    let (table, _) = c
        .output(
            &format!("{PROJECT}/batch/{batch}/output/file"),
            "CSV",
            json!({"field_names": [], "completedOnly": false}),
        )
        .await;
    assert!(
        !table.header.iter().any(|h| h == "external_id"),
        "{:?}",
        table.header
    );
    assert!(
        table.header.iter().any(|h| h == "L1 U1 Completion Date"),
        "{:?}",
        table.header
    );
    // Counted all the same, by the dropped value.
    assert_eq!(c.sb.stats()["records_created"]["k0000"], 1);
}
