//! The Sama sandbox over real sockets, as a client sees it (docs/vendors/sama.md).

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::super::sama_store::{base64, hmac_sha256};
use super::super::{Sandbox, SandboxConfig};

struct Sbx {
    sb: Sandbox,
    http: reqwest::Client,
    key: String,
}

fn start(complete_after: f64) -> Sbx {
    let sb = Sandbox::start(SandboxConfig {
        vendor: "sama".into(),
        seed: 5,
        complete_after,
        ..Default::default()
    })
    .unwrap();
    let key = sb.credentials()[0].1.clone();
    Sbx {
        sb,
        http: reqwest::Client::new(),
        key,
    }
}

impl Sbx {
    fn url(&self, path: &str) -> String {
        let sep = if path.contains('?') { '&' } else { '?' };
        format!(
            "{}/v2/projects/117{path}{sep}access_key={}",
            self.sb.url(),
            self.key
        )
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut rb = self
            .http
            .request(method, self.url(path))
            .header("accept", "application/json")
            .header("content-type", "application/json");
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let res = rb.send().await.unwrap();
        let status = res.status();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, body).await
    }

    async fn sim(&self, path: &str, body: Value) -> Value {
        let res = self
            .http
            .post(format!("{}{path}", self.sb.url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{path}: {}", res.status());
        res.json().await.unwrap()
    }

    /// The SDK's three steps; returns the batch id.
    async fn create(&self, tasks: Vec<Value>) -> u64 {
        let (s, b) = self
            .post(
                "/batches.json",
                Some(json!({"notification_email": null, "tasks_file_name": "python_sdk"})),
            )
            .await;
        assert_eq!(s, 200, "{b}");
        let bid = b["batch_id"].as_u64().unwrap();
        let put_url = b["tasks_put_url"].as_str().unwrap();
        assert!(!put_url.contains("access_key"), "{put_url}");
        let res = self.http.put(put_url).json(&tasks).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let (s, c) = self
            .post(&format!("/batches/{bid}/continue.json"), None)
            .await;
        assert_eq!(s, 200, "{c}");
        assert_eq!(c, json!({"batch_id": bid}));
        bid
    }
}

fn tasks(cbid: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| json!({"data": {"url": format!("https://x/{i}.jpg"), "client_batch_id": cbid, "labelport_key": format!("{cbid}-{i}")}, "priority": 0, "submit": false}))
        .collect()
}

#[tokio::test]
async fn auth_is_the_access_key_query_parameter() {
    let s = start(0.0);
    let bare = format!("{}/v2/projects/117.json", s.sb.url());
    let res = s.http.get(&bare).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body,
        json!({"errors": [{"type": 401, "message": "Not authorized."}]})
    );
    let wrong = s
        .http
        .get(format!("{bare}?access_key=nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    let (st, p) = s.get(".json").await;
    assert_eq!(st, 200);
    assert_eq!(p["id"], 117);
    for k in [
        "name",
        "state",
        "type",
        "asset_country_code",
        "project_group",
        "description",
        "client",
        "asset_s3_url",
    ] {
        assert!(p.get(k).is_some(), "{k} missing: {p}");
    }
    // A project of another account is not found.
    let other = format!("{}/v2/projects/999.json?access_key={}", s.sb.url(), s.key);
    assert_eq!(s.http.get(other).send().await.unwrap().status(), 404);
    // Unknown path and wrong method: the errors shape.
    let (st, e) = s.get("/nothing.json").await;
    assert_eq!(st, 404);
    assert_eq!(e["errors"][0]["type"], 404);
    let (st, e) = s.call(reqwest::Method::DELETE, "/batches.json", None).await;
    assert_eq!(st, 405);
    assert_eq!(e["errors"][0]["type"], 405);
}

#[tokio::test]
async fn three_step_creation_then_delivery() {
    let s = start(0.0);
    let bid = s.create(tasks("b1", 3)).await;
    let (st, status) = s
        .get(&format!(
            "/batches/{bid}.json?batch_id={bid}&omit_failed_task_data=false&page=1&page_size=1000"
        ))
        .await;
    assert_eq!(st, 200);
    assert_eq!(status["state"], "completed");
    assert_eq!(status["created_count"], 3);
    let entries = status["tasks"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    for e in entries {
        assert_eq!(e["status"], "created");
        assert_eq!(e["id"].as_str().unwrap().len(), 24);
        assert!(e.get("data").is_none(), "data only for failed tasks: {e}");
    }
    // page_size=0 omits the tasks array.
    let (_, bare) = s.get(&format!("/batches/{bid}.json?page_size=0")).await;
    assert!(bare.get("tasks").is_none());

    // A second continue is refused; so is a continue without an uploaded file.
    let (st, _) = s.post(&format!("/batches/{bid}/continue.json"), None).await;
    assert_eq!(st, 400);
    let (_, b2) = s.post("/batches.json", Some(json!({}))).await;
    let (st, _) = s
        .post(&format!("/batches/{}/continue.json", b2["batch_id"]), None)
        .await;
    assert_eq!(st, 400);

    let (_, d) = s
        .get("/tasks/delivered.json?client_batch_id=b1&page=1&page_size=1000")
        .await;
    let ds = d["tasks"].as_array().unwrap();
    assert_eq!(ds.len(), 3);
    for t in ds {
        assert_eq!(t["state"], "delivered");
        assert_eq!(t["client_batch_id"], "b1");
        assert_eq!(t["batch_id"], bid);
        assert!(t["answers"]["label"].is_string(), "{t}");
        assert!(t["delivered_at"].is_string());
    }
    let id = ds[0]["id"].as_str().unwrap();
    let (st, one) = s
        .get(&format!("/tasks/{id}.json?same_as_delivery=true"))
        .await;
    assert_eq!(st, 200);
    assert_eq!(one["task"]["id"], id);
    assert_eq!(s.sb.stats()["records_created"]["b1-0"], 1);
}

#[tokio::test]
async fn the_upload_url_is_signed_and_expires() {
    let s = start(0.0);
    let (_, b) = s.post("/batches.json", Some(json!({}))).await;
    let url = b["tasks_put_url"].as_str().unwrap().to_string();
    let unsigned = url.split('?').next().unwrap().to_string();
    let res = s.http.put(&unsigned).body("[]").send().await.unwrap();
    assert_eq!(res.status(), 403);
    s.sb.advance(4.0 * 3600.0 + 1.0);
    let res = s.http.put(&url).body("[]").send().await.unwrap();
    assert_eq!(res.status(), 403);
}

#[tokio::test]
async fn tasks_progress_on_the_clock_and_the_feeds_page() {
    let s = start(100.0);
    let bid = s.create(tasks("b2", 1500)).await;
    let (_, d) = s.get("/tasks/delivered.json?client_batch_id=b2").await;
    assert_eq!(d["tasks"].as_array().unwrap().len(), 0);
    s.sb.advance(30.0);
    let (_, t) = s
        .get(&format!(
            "/tasks.json?batch_id={bid}&state=in+progress&page=1&page_size=100"
        ))
        .await;
    assert_eq!(t["tasks"].as_array().unwrap().len(), 100);
    assert!(
        t["tasks"][0].get("answers").is_none(),
        "omit_answers defaults to true"
    );
    // One request per second on the multi-task status endpoint, once asked for (off by default).
    let (st, _) = s
        .get(&format!("/tasks.json?batch_id={bid}&page=2&page_size=100"))
        .await;
    assert_eq!(st, 200);
    s.sim("/_sim/config", json!({"status_rate_limit": true}))
        .await;
    s.get(&format!("/tasks.json?batch_id={bid}&page=2&page_size=100"))
        .await;
    let (st, e) = s
        .get(&format!("/tasks.json?batch_id={bid}&page=2&page_size=100"))
        .await;
    assert_eq!(st, 429, "{e}");
    s.sb.advance(71.0);
    let (_, p1) = s
        .get("/tasks/delivered.json?client_batch_id=b2&page=1&page_size=1000")
        .await;
    let (_, p2) = s
        .get("/tasks/delivered.json?client_batch_id=b2&page=2&page_size=1000")
        .await;
    let (p1, p2) = (
        p1["tasks"].as_array().unwrap(),
        p2["tasks"].as_array().unwrap(),
    );
    assert_eq!((p1.len(), p2.len()), (1000, 500));
    let mut ids: Vec<&str> = p1
        .iter()
        .chain(p2)
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    let keys: Vec<(String, String)> = p1
        .iter()
        .chain(p2)
        .map(|t| {
            (
                t["delivered_at"].as_str().unwrap().to_string(),
                t["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "ordered by (delivery time, id)");
    ids.dedup();
    assert_eq!(ids.len(), 1500);
    // `from` is inclusive.
    let last = p2[499]["delivered_at"].as_str().unwrap();
    let (_, tail) = s
        .get(&format!(
            "/tasks/delivered.json?client_batch_id=b2&from={last}"
        ))
        .await;
    assert!(!tail["tasks"].as_array().unwrap().is_empty());
}

/// The delivered listing is cached between pages: every change a client can make or wait for must still show
/// on the very next request with the same filters.
#[tokio::test]
async fn the_delivered_listing_shows_every_change_at_once() {
    let s = start(10.0);
    s.create(tasks("d1", 10)).await;
    let ids = |v: &Value| -> Vec<String> {
        v["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect()
    };
    let list = "/tasks/delivered.json?client_batch_id=d1&page=1&page_size=1000";
    assert_eq!(ids(&s.get(list).await.1).len(), 0);
    s.sb.advance(11.0);
    let first = ids(&s.get(list).await.1);
    assert_eq!(first.len(), 10, "the clock passing the deliveries");
    // A rejection takes the task out.
    let res = s
        .http
        .put(s.url(&format!("/tasks/{}/reject.json", first[0])))
        .json(&json!({"reasons": ["blurry"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let after_reject = ids(&s.get(list).await.1);
    assert_eq!(after_reject.len(), 9);
    assert!(!after_reject.contains(&first[0]));
    // A deletion too.
    let (st, d) = s
        .post(
            "/tasks/delete_tasks.json",
            Some(json!({"task_ids": [first[1].clone()]})),
        )
        .await;
    assert_eq!(st, 200, "{d}");
    assert_eq!(ids(&s.get(list).await.1).len(), 8);
    // New tasks are not delivered yet; the clock brings them, and the rejected one again.
    s.create(tasks("d1", 5)).await;
    assert_eq!(ids(&s.get(list).await.1).len(), 8);
    s.sb.advance(11.0);
    let last = ids(&s.get(list).await.1);
    assert_eq!(last.len(), 14);
    assert!(last.contains(&first[0]) && !last.contains(&first[1]));
    // Other filters are answered for themselves, not from the cached listing.
    let one = format!("/tasks/delivered.json?task_id={}", first[2]);
    assert_eq!(ids(&s.get(&one).await.1), vec![first[2].clone()]);
    assert_eq!(ids(&s.get(list).await.1).len(), 14);
}

#[tokio::test]
async fn consumers_never_get_a_delivery_twice() {
    let s = start(10.0);
    s.create(tasks("c1", 30)).await;
    s.create(tasks("c2", 5)).await;
    s.sb.advance(11.0);
    let body = |consumer: &str, limit: u64| json!({"batch_id": null, "client_batch_id": "c1", "client_batch_id_match_type": null, "consumer": consumer, "limit": limit});
    let (_, a1) = s
        .post(
            "/tasks/delivered.json?page=1&page_size=1000",
            Some(body("A", 20)),
        )
        .await;
    // The SDK adds page=2: ignored, the cursor goes on.
    let (_, a2) = s
        .post(
            "/tasks/delivered.json?page=2&page_size=1000",
            Some(body("A", 20)),
        )
        .await;
    let (_, a3) = s.post("/tasks/delivered.json", Some(body("A", 20))).await;
    let n = |v: &Value| v["tasks"].as_array().unwrap().len();
    assert_eq!((n(&a1), n(&a2), n(&a3)), (20, 10, 0));
    let mut ids: Vec<String> = a1["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .chain(a2["tasks"].as_array().unwrap())
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 30);
    // Another consumer has its own cursor.
    let (_, b1) = s.post("/tasks/delivered.json", Some(body("B", 1000))).await;
    assert_eq!(n(&b1), 30);
    // A rejected task is delivered again later, with a new delivery time.
    let id = ids[0].clone();
    let res = s
        .http
        .put(s.url(&format!("/tasks/{id}/reject.json")))
        .json(&json!({"reasons": ["blurry"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let res = s
        .http
        .put(s.url(&format!("/tasks/{id}/reject.json")))
        .json(&json!({"reasons": ["again"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400, "only delivered tasks can be rejected");
    let (_, t) = s.get(&format!("/tasks/{id}.json")).await;
    assert_eq!(t["task"]["state"], "rejected");
    s.sb.advance(11.0);
    let (_, again) = s.post("/tasks/delivered.json", Some(body("A", 1000))).await;
    assert_eq!(n(&again), 1);
    assert_eq!(again["tasks"][0]["id"], id.as_str());
}

#[tokio::test]
async fn schema_failures_and_cancel() {
    let s = start(0.0);
    s.sim(
        "/_sim/projects/117/schema",
        json!({
            "type": "object", "required": ["url"],
            "properties": {"url": {"type": "string"}, "client_batch_id": {"type": "string"}},
            "additionalProperties": false
        }),
    )
    .await;
    let (_, schema) = s.get("/schemas/create_task.json").await;
    assert_eq!(schema["required"], json!(["url"]));
    let bid = s
        .create(vec![
            json!({"data": {"url": "u", "client_batch_id": "s"}}),
            json!({"data": {"client_batch_id": "s"}}),
            json!({"data": {"url": "u", "output_bogus": "x", "client_batch_id": "s"}}),
        ])
        .await;
    let (_, st) = s.get(&format!("/batches/{bid}.json")).await;
    assert_eq!(st["created_count"], 1);
    assert_eq!(st["failed_count"], 2);
    let failed: Vec<&Value> = st["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["status"] == "failed")
        .collect();
    assert_eq!(failed[0]["errors"][0]["type"], "InvalidInputSchema");
    assert!(failed[0]["data"].is_object());
    assert!(failed[1]["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("Invalid seeded output name(s): bogus"));
    // Inline creation validates at once.
    let (code, e) = s
        .post(
            "/batches.json",
            Some(json!({"tasks": [{"data": {"nope": 1}}]})),
        )
        .await;
    assert_eq!(code, 400);
    assert_eq!(e["errors"][0]["type"], "InvalidInputSchema");
    s.sim("/_sim/projects/117/schema", Value::Null).await;

    // Cancel while creating: tasks not yet created become canceled.
    s.sim("/_sim/config", json!({"creation_s": 100.0})).await;
    let bid = s.create(tasks("k", 10)).await;
    s.sb.advance(35.0);
    let (code, c) = s.post(&format!("/batches/{bid}/cancel.json"), None).await;
    assert_eq!(code, 200, "{c}");
    let (_, st) = s.get(&format!("/batches/{bid}.json")).await;
    assert_eq!(st["state"], "canceled");
    assert_eq!(st["created_count"], 3);
    assert_eq!(st["canceled_count"], 7);
    let (code, _) = s.post(&format!("/batches/{bid}/cancel.json"), None).await;
    assert_eq!(code, 400);
}

/// A local receiver of callbacks: every request's headers, path and body.
async fn receiver(
    status: u16,
) -> (
    String,
    Arc<Mutex<Vec<(axum::http::HeaderMap, String, Vec<u8>)>>>,
) {
    use axum::routing::post;
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(
            move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let g = g.clone();
                async move {
                    let target = uri
                        .path_and_query()
                        .map(|p| p.to_string())
                        .unwrap_or_default();
                    g.lock().push((headers, target, body.to_vec()));
                    axum::http::StatusCode::from_u16(status).unwrap()
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

async fn wait_for<T>(got: &Mutex<Vec<T>>, n: usize) {
    for _ in 0..200 {
        if got.lock().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("only {} of {n} callbacks arrived", got.lock().len());
}

#[tokio::test]
async fn callbacks_with_each_auth_method() {
    let s = start(0.0);
    let (url, got) = receiver(200).await;
    let methods = [
        json!({"url": url, "auth": "basic", "username": "u", "password": "p"}),
        json!({"url": url, "auth": "access_key", "access_key": "cb-key"}),
        json!({"url": url, "auth": "token", "token": "tok"}),
        json!({"url": url, "auth": "hmac", "key_id": "kid", "secret": "sec"}),
    ];
    for (i, m) in methods.iter().enumerate() {
        s.sim(
            "/_sim/projects/117/callbacks",
            json!({"creation": m, "delivery": null}),
        )
        .await;
        s.create(tasks(&format!("cb{i}"), 1)).await;
        wait_for(&got, i + 1).await;
        let (headers, target, body) = got.lock()[i].clone();
        let payload: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(payload["task"]["data"]["client_batch_id"], format!("cb{i}"));
        assert_eq!(headers["content-type"], "application/json");
        match i {
            0 => assert_eq!(
                headers["authorization"],
                format!("Basic {}", base64(b"u:p"))
            ),
            1 => assert_eq!(target, "/hook?access_key=cb-key"),
            2 => assert_eq!(headers["x-auth-token"], "tok"),
            _ => {
                let date = headers["x-wsm-date"].to_str().unwrap();
                let mut msg = format!("POST\n/hook\n{date}\n").into_bytes();
                msg.extend_from_slice(&body);
                let want = format!("HMAC-SHA256 kid:{}", base64(&hmac_sha256(b"sec", &msg)));
                assert_eq!(headers["authorization"], want.as_str());
            }
        }
    }
    // Delivery callbacks too.
    s.sim(
        "/_sim/projects/117/callbacks",
        json!({"creation": null, "delivery": {"url": url, "auth": "token", "token": "d"}}),
    )
    .await;
    s.create(tasks("dl", 2)).await;
    wait_for(&got, 6).await;
    let payload: Value = serde_json::from_slice(&got.lock()[5].2).unwrap();
    assert_eq!(payload["task"]["state"], "delivered");
    // The 2xx acknowledged it.
    let id = payload["task"]["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, t) = s.get(&format!("/tasks/{id}.json")).await;
    assert_eq!(t["task"]["state"], "acknowledged");
}

#[tokio::test]
async fn a_failing_callback_is_tried_five_times_then_kept() {
    let s = start(0.0);
    let (url, got) = receiver(503).await;
    s.sim(
        "/_sim/projects/117/callbacks",
        json!({"creation": {"url": url, "auth": "token", "token": "t"}, "backoff_s": 0.005}),
    )
    .await;
    s.create(tasks("f", 1)).await;
    wait_for(&got, 5).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(got.lock().len(), 5);
    let log = s
        .http
        .get(format!("{}/_sim/callbacks", s.sb.url()))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(log["attempts"].as_array().unwrap().len(), 5);
    assert_eq!(log["unreachable"].as_array().unwrap().len(), 1);
    assert_eq!(log["unreachable"][0]["kind"], "creation");
}
