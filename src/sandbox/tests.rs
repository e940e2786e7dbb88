//! The Alegion sandbox over real sockets, as a client sees it.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use super::test_http::{send, Answer};
use super::{Faults, Sandbox, SandboxConfig};

struct Client {
    sb: Sandbox,
    http: reqwest::Client,
    token: String,
}

fn config() -> SandboxConfig {
    SandboxConfig {
        seed: 42,
        ..Default::default()
    }
}

impl Client {
    async fn start(config: SandboxConfig) -> Client {
        let sb = Sandbox::start(config).unwrap();
        let http = reqwest::Client::new();
        let mut c = Client {
            sb,
            http,
            token: String::new(),
        };
        c.token = c.login().await;
        c
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.sb.url(), path)
    }

    async fn login(&self) -> String {
        let creds: serde_json::Map<String, Value> = self
            .sb
            .credentials()
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        let a = send(self.http.post(self.url("/api/v1/login")).json(&creds)).await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert_eq!(a.body["token_type"], "bearer");
        a.body["access_token"].as_str().unwrap().to_string()
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Answer {
        send(req.bearer_auth(&self.token)).await
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(self.http.get(self.url(path))).await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(self.http.post(self.url(path)).json(&body)).await
    }

    async fn put(&self, path: &str, body: Value) -> Answer {
        self.send(self.http.put(self.url(path)).json(&body)).await
    }

    async fn create_batch(&self, name: &str) -> String {
        let a = self
            .post(
                &format!("/api/v1/workflows/{}/batches", self.sb.project()),
                json!({ "name": name }),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        a.body["id"].as_str().unwrap().to_string()
    }

    async fn import(&self, batch: &str, keys: impl IntoIterator<Item = String>) -> Answer {
        let records: Vec<Value> = keys
            .into_iter()
            .map(|k| json!({"data": {"image": format!("https://img/{k}.jpg")}, "metadata": k}))
            .collect();
        self.post(
            &format!("/api/v1/batches/{batch}/records/import"),
            Value::Array(records),
        )
        .await
    }

    async fn import_csv(&self, batch: &str, form: reqwest::multipart::Form) -> Answer {
        let url = self.url(&format!("/api/v1/batches/{batch}/records/import-csv"));
        self.send(self.http.post(url).multipart(form)).await
    }

    /// A client of a sandbox finishing records 10 s after import, and a batch of `n` records imported
    /// now: the batch id and the records' `createdAt` (ms).
    async fn timed(name: &str, n: usize) -> (Client, String, i64) {
        let c = Client::start(SandboxConfig {
            complete_after: 10.0,
            ..config()
        })
        .await;
        let batch = c.create_batch(name).await;
        let imported = c.import(&batch, keys(name, n)).await;
        let created = ms(&imported.items()[0]["createdAt"]);
        (c, batch, created)
    }

    /// The statistics, as `GET /_sim/stats` answers them.
    async fn sim_stats(&self) -> Value {
        send(self.http.get(self.url("/_sim/stats"))).await.body
    }

    async fn count(&self, batch: &str, what: &str) -> u64 {
        let a = self
            .get(&format!("/api/v1/batches/{batch}/{what}page=1&pageSize=1"))
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        a.total()
    }
}

fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:05}")).collect()
}

fn is_iso_ms(s: &str) -> bool {
    let b = s.as_bytes();
    s.len() == 24
        && b[4] == b'-'
        && b[10] == b'T'
        && b[19] == b'.'
        && b[23] == b'Z'
        && chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

fn ms(s: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s.as_str().unwrap())
        .unwrap()
        .timestamp_millis()
}

#[tokio::test]
async fn login_and_token_errors() {
    let c = Client::start(SandboxConfig {
        faults: Faults {
            token_ttl: Some(60.0),
            ..Default::default()
        },
        ..config()
    })
    .await;
    let bad = send(
        c.http
            .post(c.url("/api/v1/login"))
            .json(&json!({"username": "sandbox", "password": "nope"})),
    )
    .await;
    assert_eq!(bad.status, 401);
    assert_eq!(bad.body["error"], "Unauthorized");

    let login = send(
        c.http
            .post(c.url("/api/v1/login"))
            .json(&json!({"username": "sandbox", "password": c.sb.credentials()[1].1})),
    )
    .await;
    assert_eq!(login.body["expires_in"], 60);

    // No header: 401. Unknown token: 500 AccessDeniedException, exactly as documented.
    let none = send(c.http.get(c.url("/api/v1/workflows"))).await;
    assert_eq!(none.status, 401);
    let wrong = send(
        c.http
            .get(c.url("/api/v1/workflows?page=1"))
            .header("authorization", "Bearer not-a-token"),
    )
    .await;
    assert_eq!(wrong.status, 500);
    let keys: Vec<&String> = wrong.body.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "timestamp",
            "status",
            "error",
            "exception",
            "message",
            "path"
        ]
    );
    assert!(wrong.body["timestamp"].is_i64());
    assert_eq!(wrong.body["status"], 500);
    assert_eq!(wrong.body["error"], "Internal Server Error");
    assert_eq!(
        wrong.body["exception"],
        "org.springframework.security.access.AccessDeniedException"
    );
    assert_eq!(wrong.body["message"], "Incorrect token provided");
    assert_eq!(wrong.body["path"], "/api/v1/workflows");

    // Header name and scheme are case-insensitive.
    let ok = send(
        c.http
            .get(c.url("/api/v1/workflows"))
            .header("AUTHORIZATION", format!("bEaReR {}", c.token)),
    )
    .await;
    assert_eq!(ok.status, 200);

    // Past the TTL: 401 with the documented body (no `exception`, path without query).
    c.sb.advance(61.0);
    let expired = c.get("/api/v1/workflows?page=1&pageSize=5").await;
    assert_eq!(expired.status, 401);
    let keys: Vec<&String> = expired.body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["timestamp", "status", "error", "message", "path"]);
    assert_eq!(
        expired.body["message"],
        "Unable to authenticate using the Authorization header"
    );
    assert_eq!(expired.body["path"], "/api/v1/workflows");
    assert!(expired.body["timestamp"].is_i64());

    // A fresh login works; expire_tokens() expires it too, and so does the control endpoint.
    let mut c = c;
    c.token = c.login().await;
    assert_eq!(c.get("/api/v1/workflows").await.status, 200);
    c.sb.expire_tokens();
    assert_eq!(c.get("/api/v1/workflows").await.status, 401);
    c.token = c.login().await;
    let r = c
        .http
        .post(c.url("/_sim/expire-tokens"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(c.get("/api/v1/workflows").await.status, 401);
}

#[tokio::test]
async fn workflows_and_batches() {
    let c = Client::start(config()).await;
    let wf = c.get("/api/v1/workflows").await;
    assert_eq!(wf.status, 200);
    assert_eq!(wf.total(), 2);
    assert_eq!(wf.items()[0]["id"], c.sb.project());
    let keys: Vec<&String> = wf.items()[0].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "id",
            "name",
            "description",
            "isActive",
            "isVisible",
            "isArchived",
            "createdAt",
            "isLimitWorkerToOncePerInputRecord"
        ]
    );
    // Same seed, same workflow ids.
    let other = Sandbox::start(config()).unwrap();
    assert_eq!(other.project(), c.sb.project());
    assert_eq!(other.credentials(), c.sb.credentials());
    assert_eq!(c.sb.credentials()[0].0, "username");
    drop(other);

    let project = c.sb.project();
    let created = c
        .post(
            &format!("/api/v1/workflows/{project}/batches"),
            json!({"name": "cars"}),
        )
        .await;
    assert_eq!(created.status, 200);
    let b = &created.body;
    assert_eq!(b["name"], "cars");
    assert_eq!(b["workflowId"], project);
    assert_eq!(b["isEnabled"], true);
    assert_eq!(b["priority"], "normal");
    assert_eq!(b["isActive"], true);
    assert_eq!(b["lowWaterMark"], 200);
    assert_eq!(b["highWaterMark"], 500);
    assert!(is_iso_ms(b["createdAt"].as_str().unwrap()));
    let id = b["id"].as_str().unwrap().to_string();

    let disabled = c
        .post(
            &format!("/api/v1/workflows/{project}/batches/"),
            json!({"name": "off", "isEnabled": false}),
        )
        .await;
    assert_eq!(disabled.body["isEnabled"], false);
    let missing = c
        .post(
            &format!("/api/v1/workflows/{project}/batches"),
            json!({"isEnabled": true}),
        )
        .await;
    assert_eq!(missing.status, 400);

    let list = c.get(&format!("/api/v1/workflows/{project}/batches")).await;
    assert_eq!(list.total(), 2);
    // Ordered by createdAt, ties by id.
    let ids: Vec<&str> = list
        .items()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&id.as_str()));
    let keys: Vec<(i64, &str)> = list
        .items()
        .iter()
        .map(|b| (ms(&b["createdAt"]), b["id"].as_str().unwrap()))
        .collect();
    assert!(keys[0] < keys[1]);
    let got = c.get(&format!("/api/v1/batches/{id}")).await;
    assert_eq!(got.body, created.body);

    // PUT: all seven fields required.
    let partial = c
        .put(
            &format!("/api/v1/batches/{id}"),
            json!({"id": id, "name": "x", "isEnabled": true}),
        )
        .await;
    assert_eq!(partial.status, 400);
    assert_eq!(partial.body["status"], 400);
    let put = c
        .put(
            &format!("/api/v1/batches/{id}"),
            json!({
                "id": "739b1978-cb5b-4188-9d1d-37a394d67f5a", "name": "renamed",
                "workflowId": "dac402db-b594-4f44-a2c7-87a535cf26f9", "createdAt": "2019-01-01",
                "isEnabled": false, "priority": "normal", "isActive": true
            }),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.text);
    assert_eq!(put.body["id"], id.as_str());
    assert_eq!(put.body["name"], "renamed");
    assert_eq!(put.body["isEnabled"], false);
    assert_eq!(put.body["workflowId"], project);
    assert_eq!(put.body["createdAt"], created.body["createdAt"]);

    // Unknown workflow: 404 with a Spring body.
    let unknown = c
        .get("/api/v1/workflows/00000000-0000-4000-8000-000000000000/batches")
        .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body["error"], "Not Found");
}

#[tokio::test]
async fn import_and_read_back() {
    let c = Client::start(config()).await;
    let batch = c.create_batch("two").await;
    let imported = c
        .post(
            &format!("/api/v1/batches/{batch}/records/import"),
            json!([
                {"data": {"input_fieldname_1": "v1", "n": 1}, "metadata": "sample_metadata"},
                {"data": {"input_fieldname_1": "v2"}}
            ]),
        )
        .await;
    assert_eq!(imported.status, 200, "{}", imported.text);
    let recs = imported.items();
    assert_eq!(recs.len(), 2);
    let keys: Vec<&String> = recs[0].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "id",
            "data",
            "metadata",
            "createdAt",
            "workflowStageId",
            "status"
        ]
    );
    assert_eq!(recs[0]["status"], "queued");
    assert_eq!(recs[0]["metadata"], "sample_metadata");
    assert_eq!(recs[1]["metadata"], Value::Null);
    assert!(is_iso_ms(recs[0]["createdAt"].as_str().unwrap()));

    let single = c
        .post(
            &format!("/api/v1/batches/{batch}/records"),
            json!({"data": {"input_fieldname_1": "v3"}, "metadata": "third"}),
        )
        .await;
    assert_eq!(single.status, 200);
    assert_eq!(single.body["metadata"], "third");

    let list = c
        .get(&format!(
            "/api/v1/batches/{batch}/records?sort=%2BcreatedAt"
        ))
        .await;
    assert_eq!(list.total(), 3);
    let items = list.items();
    assert_eq!(items[0]["id"], recs[0]["id"]);
    assert_eq!(items[1]["id"], recs[1]["id"]);
    assert_eq!(items[2]["id"], single.body["id"]);
    assert_eq!(items[0]["data"], json!({"input_fieldname_1": "v1", "n": 1}));
    // complete_after = 0: finished at import.
    assert_eq!(items[0]["status"], "complete");
    let results = c.get(&format!("/api/v1/batches/{batch}/results")).await;
    assert_eq!(results.total(), 3);
    let r = &results.items()[0];
    assert_ne!(r["id"], r["inputRecord"]["id"]);
    assert_eq!(r["inputRecord"]["id"], recs[0]["id"]);
    assert_eq!(r["inputRecord"]["status"], "complete");
    assert_eq!(r["createdAt"], recs[0]["createdAt"]);
    let label = r["resultData"]["label"].as_str().unwrap();
    assert!(["car", "pedestrian", "cyclist", "background"].contains(&label));
}

#[tokio::test]
async fn import_validation_is_all_or_nothing() {
    let c = Client::start(config()).await;
    let batch = c.create_batch("limits").await;
    let big = c.import(&batch, keys("k", 1001)).await;
    assert_eq!(big.status, 422);
    assert!(big.body["message"].as_str().unwrap().contains("1000"));
    let invalid = c
        .post(
            &format!("/api/v1/batches/{batch}/records/import"),
            json!([{"data": {"a": "1"}, "metadata": "ok"}, {"metadata": "no data"}]),
        )
        .await;
    assert_eq!(invalid.status, 400);
    let not_array = c
        .post(
            &format!("/api/v1/batches/{batch}/records/import"),
            json!({"data": {}}),
        )
        .await;
    assert_eq!(not_array.status, 400);
    assert_eq!(c.count(&batch, "records?").await, 0);
    assert_eq!(c.sb.stats()["records_total"], 0);
    assert_eq!(c.import(&batch, keys("k", 1000)).await.status, 200);
    assert_eq!(c.count(&batch, "records?").await, 1000);
}

#[tokio::test]
async fn pagination_headers_as_documented() {
    let c = Client::start(config()).await;
    let batch = c.create_batch("paging").await;
    assert_eq!(c.import(&batch, keys("p", 42)).await.status, 200);
    let port = c.sb.port();
    let base = format!("http://127.0.0.1:{port}/api/v1/batches/{batch}/records");

    let page2 = c
        .get(&format!(
            "/api/v1/batches/{batch}/records?page=2&pageSize=20&sort=-createdAt"
        ))
        .await;
    assert_eq!(page2.header("x-total-count"), "42");
    assert_eq!(
        page2.header("link"),
        format!(
            "<{base}?page=1&pageSize=20&sort=-createdAt>;rel=\"first\", \
             <{base}?page=1&pageSize=20&sort=-createdAt>;rel=\"prev\", \
             <{base}?page=3&pageSize=20&sort=-createdAt>;rel=\"next\", \
             <{base}?page=3&pageSize=20&sort=-createdAt>;rel=\"last\""
        )
    );
    assert_eq!(page2.items().len(), 20);

    let all_desc: Vec<Value> = {
        let mut v = Vec::new();
        for p in 1..=3 {
            let a = c
                .get(&format!(
                    "/api/v1/batches/{batch}/records?page={p}&pageSize=20&sort=-createdAt"
                ))
                .await;
            v.extend(a.items().iter().map(|r| r["metadata"].clone()));
        }
        v
    };
    let expected: Vec<Value> = keys("p", 42).into_iter().rev().map(Value::from).collect();
    assert_eq!(all_desc, expected);

    // Ascending by `+` sent raw (decodes to a space) and by `%2B`.
    for sort in ["+createdAt", "%2BcreatedAt"] {
        let a = c
            .get(&format!(
                "/api/v1/batches/{batch}/records?page=1&pageSize=20&sort={sort}"
            ))
            .await;
        assert_eq!(a.items()[0]["metadata"], "p00000");
        assert!(!a.header("link").contains("rel=\"prev\""));
    }
    let last = c
        .get(&format!(
            "/api/v1/batches/{batch}/records/?page=3&pageSize=20&_=12345"
        ))
        .await;
    assert_eq!(last.status, 200);
    assert_eq!(last.items().len(), 2);
    assert!(!last.header("link").contains("rel=\"next\""));
    let past = c
        .get(&format!(
            "/api/v1/batches/{batch}/records?page=9&pageSize=20"
        ))
        .await;
    assert_eq!(past.status, 200);
    assert_eq!(past.body, json!([]));
    assert_eq!(past.total(), 42);

    // Defaults: page 1, 20 per page; pageSize capped at 1000.
    let default = c.get(&format!("/api/v1/batches/{batch}/records")).await;
    assert_eq!(default.items().len(), 20);

    // Filters are carried into links; an empty result still has both headers.
    let filtered = c
        .get(&format!(
            "/api/v1/batches/{batch}/records?status=exception,canceled&page=1&pageSize=1"
        ))
        .await;
    assert_eq!(filtered.total(), 0);
    assert_eq!(
        filtered.header("link"),
        format!(
            "<{base}?page=1&pageSize=1&sort=%2BcreatedAt&status=exception%2Ccanceled>;rel=\"first\", \
             <{base}?page=1&pageSize=1&sort=%2BcreatedAt&status=exception%2Ccanceled>;rel=\"last\""
        )
    );

    let bad = c
        .get(&format!("/api/v1/batches/{batch}/records?page=two"))
        .await;
    assert_eq!(bad.status, 422);
    assert!(bad.body["message"]
        .as_str()
        .unwrap()
        .starts_with("Failed to convert value of type 'java.lang.String' to required type 'int'"));
    let bad_date = c
        .get(&format!(
            "/api/v1/batches/{batch}/results?minCreatedAt=yesterday"
        ))
        .await;
    assert_eq!(bad_date.status, 422);
}

#[tokio::test]
async fn results_appear_after_complete_after() {
    let (c, batch, created) = Client::timed("timed", 5).await;
    let records = format!("/api/v1/batches/{batch}/records");
    let status_of = |a: &Answer| a.items()[0]["status"].as_str().unwrap().to_string();
    assert_eq!(status_of(&c.get(&records).await), "queued");
    assert_eq!(c.count(&batch, "results?").await, 0);
    c.sb.advance(6.0);
    assert_eq!(status_of(&c.get(&records).await), "in-progress");
    assert_eq!(c.count(&batch, "results?").await, 0);
    c.sb.advance(5.0);
    let recs = c.get(&records).await;
    assert_eq!(status_of(&recs), "complete");
    let results = c.get(&format!("/api/v1/batches/{batch}/results")).await;
    assert_eq!(results.total(), 5);
    for r in results.items() {
        assert_eq!(ms(&r["createdAt"]), created + 10_000);
        assert!(is_iso_ms(r["createdAt"].as_str().unwrap()));
    }
    // Deterministic labels: a second sandbox with the same seed labels the same way.
    let again = Client::start(SandboxConfig {
        complete_after: 0.0,
        ..config()
    })
    .await;
    let b2 = again.create_batch("timed").await;
    again.import(&b2, keys("timed", 5)).await;
    let r2 = again.get(&format!("/api/v1/batches/{b2}/results")).await;
    for (x, y) in results.items().iter().zip(r2.items()) {
        assert_eq!(x["resultData"], y["resultData"]);
    }
}

#[tokio::test]
async fn doneness_invariant_holds_with_exceptions() {
    let c = Client::start(SandboxConfig {
        complete_after: 10.0,
        exception_rate: 0.3,
        ..config()
    })
    .await;
    let batch = c.create_batch("exceptions").await;
    for chunk in 0..3 {
        c.import(&batch, keys(&format!("c{chunk}-"), 300)).await;
        c.sb.advance(3.0);
    }
    for _ in 0..6 {
        let total = c.count(&batch, "records?").await;
        let results = c.count(&batch, "results?").await;
        let finished_bad = c.count(&batch, "records?status=exception,canceled&").await;
        let pending = c.count(&batch, "records?status=queued,in-progress&").await;
        assert_eq!(total, 900);
        assert_eq!(total, results + finished_bad + pending);
        assert_eq!(results, c.count(&batch, "records?status=complete&").await);
        c.sb.advance(2.5);
    }
    let exceptions = c.count(&batch, "records?status=exception&").await;
    assert!(exceptions > 200 && exceptions < 340, "{exceptions}");

    // Staff restart one exception and cancel another (the `/_sim/` hook).
    let ex = c
        .get(&format!(
            "/api/v1/batches/{batch}/records?status=exception&pageSize=2"
        ))
        .await;
    let (e1, e2) = (
        ex.items()[0]["id"].as_str().unwrap().to_string(),
        ex.items()[1]["id"].as_str().unwrap().to_string(),
    );
    let set = |id: String, status: &str| {
        c.http
            .post(c.url(&format!("/_sim/records/{id}/status")))
            .json(&json!({ "status": status }))
            .send()
    };
    assert_eq!(set(e1.clone(), "in-progress").await.unwrap().status(), 200);
    assert_eq!(set(e2, "canceled").await.unwrap().status(), 200);
    assert_eq!(
        c.count(&batch, "records?status=exception&").await,
        exceptions - 2
    );
    assert_eq!(c.count(&batch, "records?status=canceled&").await, 1);
    let results_before = c.count(&batch, "results?").await;
    c.sb.advance(5.0);
    assert_eq!(c.count(&batch, "results?").await, results_before + 1);
    let newest = c
        .get(&format!(
            "/api/v1/batches/{batch}/results?sort=-createdAt&pageSize=1"
        ))
        .await;
    assert_eq!(newest.items()[0]["inputRecord"]["id"], e1.as_str());
    let total = c.count(&batch, "records?").await;
    let r = c.count(&batch, "results?").await;
    let bad = c.count(&batch, "records?status=exception,canceled&").await;
    let pending = c.count(&batch, "records?status=queued,in-progress&").await;
    assert_eq!(total, r + bad + pending);

    // Paging through all results gives each once, in order.
    let mut seen = Vec::new();
    for p in 1.. {
        let a = c
            .get(&format!(
                "/api/v1/batches/{batch}/results?page={p}&pageSize=100&sort=%2BcreatedAt"
            ))
            .await;
        if a.items().is_empty() {
            break;
        }
        seen.extend(
            a.items()
                .iter()
                .map(|x| (ms(&x["createdAt"]), x["id"].as_str().unwrap().to_string())),
        );
    }
    assert_eq!(seen.len() as u64, r);
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
}

#[tokio::test]
async fn created_at_filters_are_inclusive() {
    let c = Client::start(SandboxConfig {
        complete_after: 1.0,
        ..config()
    })
    .await;
    let batch = c.create_batch("filters").await;
    c.import(&batch, keys("a", 3)).await;
    c.sb.advance(100.0);
    c.import(&batch, keys("b", 4)).await;
    c.sb.advance(100.0);
    let all = c
        .get(&format!("/api/v1/batches/{batch}/results?pageSize=100"))
        .await;
    assert_eq!(all.total(), 7);
    let first_t = all.items()[0]["createdAt"].as_str().unwrap().to_string();
    let second_t = all.items()[3]["createdAt"].as_str().unwrap().to_string();
    let newer = c
        .get(&format!(
            "/api/v1/batches/{batch}/results?minCreatedAt={second_t}"
        ))
        .await;
    assert_eq!(newer.total(), 4);
    assert!(newer.header("link").contains("minCreatedAt="));
    let older = c
        .get(&format!(
            "/api/v1/batches/{batch}/results?maxCreatedAt={first_t}"
        ))
        .await;
    assert_eq!(older.total(), 3);
    let both = c
        .get(&format!(
            "/api/v1/batches/{batch}/results?minCreatedAt={first_t}&maxCreatedAt={second_t}"
        ))
        .await;
    assert_eq!(both.total(), 7);
    let none = c
        .get(&format!(
            "/api/v1/batches/{batch}/results?minCreatedAt=2100-01-01T00:00:00.000Z"
        ))
        .await;
    assert_eq!(none.total(), 0);
    assert_eq!(none.body, json!([]));
}

#[tokio::test]
async fn csv_import_and_csv_results() {
    let c = Client::start(config()).await;
    let batch = c.create_batch("csv").await;
    let csv = "\u{feff}image,metadata,caption\nhttps://i/1.jpg,r1,\"a, quoted\"\nhttps://i/2.jpg,r2,plain\n";
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(csv.as_bytes().to_vec()).file_name("records.csv"),
    );
    let a = c.import_csv(&batch, form).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.items().len(), 2);
    assert_eq!(a.items()[0]["metadata"], "r1");
    assert_eq!(
        a.items()[0]["data"],
        json!({"image": "https://i/1.jpg", "caption": "a, quoted"})
    );
    assert_eq!(a.items()[0]["status"], "queued");

    let mut big = String::from("image,metadata\n");
    for i in 0..1001 {
        big.push_str(&format!("https://i/{i}.jpg,m{i}\n"));
    }
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::text(big).file_name("big.csv"),
    );
    let a = c.import_csv(&batch, form).await;
    assert_eq!(a.status, 422);
    assert_eq!(c.count(&batch, "records?").await, 2);

    let results = c
        .send(
            c.http
                .get(c.url(&format!("/api/v1/batches/{batch}/results/?pageSize=1000")))
                .header("accept", "text/csv"),
        )
        .await;
    assert_eq!(results.status, 200);
    assert!(results.header("content-type").starts_with("text/csv"));
    assert_eq!(results.header("x-total-count"), "2");
    let mut reader = csv::Reader::from_reader(results.text.as_bytes());
    let header = reader.headers().unwrap().clone();
    assert_eq!(&header[0], "id");
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    let meta = header.iter().position(|h| h == "metadata").unwrap();
    assert_eq!(&rows[0][meta], "r1");
}

#[tokio::test]
async fn path_uuids_are_validated_like_java() {
    let c = Client::start(config()).await;
    let batch = c.create_batch("uuids").await;
    let bad = c.get("/api/v1/batches/not-a-uuid/records").await;
    assert_eq!(bad.status, 422);
    assert_eq!(
        bad.body,
        json!({"message": "Failed to convert value of type 'java.lang.String' to required type 'java.util.UUID'; nested exception is java.lang.IllegalArgumentException: Invalid UUID string: not-a-uuid"})
    );
    let dashless = batch.replace('-', "");
    let a = c.get(&format!("/api/v1/batches/{dashless}")).await;
    assert_eq!(a.status, 422);
    let long = format!("{batch}0");
    let a = c.get(&format!("/api/v1/batches/{long}")).await;
    assert_eq!(a.status, 422);
    assert!(a.body["message"]
        .as_str()
        .unwrap()
        .ends_with("UUID string too large"));
    let lenient = c.get("/api/v1/batches/1-1-1-1-1").await;
    assert_eq!(lenient.status, 404);
    assert_eq!(lenient.body["status"], 404);
    let upper = c
        .get(&format!("/api/v1/batches/{}", batch.to_uppercase()))
        .await;
    assert_eq!(upper.status, 200);
    assert_eq!(upper.body["id"], batch.as_str());
    // Auth is checked before the path is converted.
    let r = c
        .http
        .get(c.url("/api/v1/batches/not-a-uuid"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn stats_count_requests_and_records() {
    let c = Client::start(config()).await;
    let batch = c.create_batch("stats").await;
    c.import(&batch, keys("s", 3)).await;
    c.import(&batch, vec!["s00000".to_string()]).await;
    c.get(&format!("/api/v1/batches/{batch}/records")).await;
    c.get("/api/v1/batches/nope/records").await;
    let s = c.sb.stats();
    let req = &s["requests"];
    assert_eq!(req["POST /api/v1/login 200"], 1);
    assert_eq!(req["POST /api/v1/batches/{batchId}/records/import 200"], 2);
    assert_eq!(req["GET /api/v1/batches/{batchId}/records 200"], 1);
    assert_eq!(req["GET /api/v1/batches/{batchId}/records 422"], 1);
    assert_eq!(s["requests_total"], 6);
    assert_eq!(s["records_created"]["s00000"], 2);
    assert_eq!(s["records_created"]["s00001"], 1);
    assert_eq!(s["records_total"], 4);
    assert!(s["peak_rps"].as_f64().unwrap() >= 1.0);
    let over_http: Value = c.sim_stats().await;
    assert_eq!(over_http["records_created"], s["records_created"]);
    let adv = c
        .http
        .post(c.url("/_sim/advance"))
        .json(&json!({"seconds": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(adv.status(), 200);
}

#[tokio::test]
async fn disabled_batches_freeze_progress() {
    let (c, batch, created) = Client::timed("freeze", 3).await;
    let path = format!("/api/v1/batches/{batch}");
    let put = |enabled: bool| {
        c.put(
            &path,
            json!({"id": batch, "name": "freeze", "workflowId": c.sb.project(),
                   "createdAt": "2019-01-01", "isEnabled": enabled, "priority": "normal", "isActive": true}),
        )
    };
    c.sb.advance(4.0);
    assert_eq!(put(false).await.status, 200);
    c.sb.advance(100.0);
    let recs = c.get(&format!("/api/v1/batches/{batch}/records")).await;
    assert_eq!(recs.items()[0]["status"], "queued");
    assert_eq!(c.count(&batch, "results?").await, 0);
    assert_eq!(put(true).await.status, 200);
    c.sb.advance(5.0);
    let recs = c.get(&format!("/api/v1/batches/{batch}/records")).await;
    assert_eq!(recs.items()[0]["status"], "in-progress");
    c.sb.advance(2.0);
    let results = c.get(&format!("/api/v1/batches/{batch}/results")).await;
    assert_eq!(results.total(), 3);
    let done = ms(&results.items()[0]["createdAt"]);
    assert!(done - created >= 110_000, "{}", done - created);
    assert!(done - created < 111_000, "{}", done - created);
}

fn faulty(f: Faults) -> SandboxConfig {
    SandboxConfig {
        seed: 7,
        faults: f,
        ..Default::default()
    }
}

/// `faulty` with the faults `set` changes from none.
fn faulty_with(set: impl FnOnce(&mut Faults)) -> SandboxConfig {
    let mut f = Faults::default();
    set(&mut f);
    faulty(f)
}

#[tokio::test]
async fn faults_rate_limit_and_server_error_store_nothing() {
    let c = Client::start(faulty_with(|f| f.rate_limit = 1.0)).await;
    let a = c.get("/api/v1/workflows").await;
    assert_eq!(a.status, 429);
    assert_eq!(a.header("retry-after"), "1");
    // Control endpoints are exempt.
    let s: Value = c.sim_stats().await;
    assert_eq!(s["requests"]["GET /api/v1/workflows 429"], 1);

    let c = Client::start(faulty_with(|f| f.server_error = 1.0)).await;
    let a = c
        .import("00000000-0000-4000-8000-000000000000", keys("x", 2))
        .await;
    assert!(a.status == 503 || a.status == 502);
    assert_eq!(c.sb.stats()["records_total"], 0);
}

#[tokio::test]
async fn faults_commit_then_fail_stores() {
    let mut cfg = faulty(Faults::default());
    cfg.faults.commit_then_fail = 1.0;
    let c = Client::start(cfg).await;
    // Batch creation is a write too: it is stored, then a 500 answered.
    let a = c
        .post(
            &format!("/api/v1/workflows/{}/batches", c.sb.project()),
            json!({"name": "ctf"}),
        )
        .await;
    assert_eq!(a.status, 500);
    assert_ne!(a.body["message"], "Incorrect token provided");
    let s = c.sb.stats();
    assert_eq!(
        s["requests"]["POST /api/v1/workflows/{workflowId}/batches 500"],
        1
    );
    // Find the stored batch without the API (every GET fails too): through a second sandbox
    // with the same seed, batch ids repeat.
    let twin = Client::start(config_seed(7)).await;
    let batch = twin.create_batch("ctf").await;
    let a = c.import(&batch, keys("ctf", 2)).await;
    assert_eq!(a.status, 500);
    let s = c.sb.stats();
    assert_eq!(s["records_total"], 2);
    assert_eq!(s["records_created"]["ctf00000"], 1);
}

fn config_seed(seed: u64) -> SandboxConfig {
    SandboxConfig {
        seed,
        ..Default::default()
    }
}

#[tokio::test]
async fn faults_reset_drops_the_connection() {
    let c = Client::start(faulty_with(|f| f.reset = 1.0)).await;
    let err = c
        .http
        .get(c.url("/api/v1/workflows"))
        .bearer_auth(&c.token)
        .send()
        .await
        .expect_err("a dropped connection, not an answer");
    assert!(!err.is_status());
    assert!(
        err.is_request() || err.is_connect() || err.is_body(),
        "{err:?}"
    );
    assert_eq!(c.sb.stats()["requests"]["GET /api/v1/workflows reset"], 1);
    // The server is still fine for the next connection (login is exempt).
    c.login().await;
}

#[tokio::test]
async fn faults_slow_delays_and_latency_adds() {
    let c = Client::start(faulty(Faults {
        slow: 1.0,
        slow_s: 0.3,
        ..Default::default()
    }))
    .await;
    let t = Instant::now();
    assert_eq!(c.get("/api/v1/workflows").await.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));

    let c = Client::start(SandboxConfig {
        latency: Some(0.2),
        ..config()
    })
    .await;
    let t = Instant::now();
    assert_eq!(c.get("/api/v1/workflows").await.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn faults_repeat_for_the_same_seed() {
    let run = || async {
        let c = Client::start(faulty_with(|f| f.server_error = 0.5)).await;
        let mut seen = Vec::new();
        for i in 0..20 {
            seen.push(
                c.get(&format!("/api/v1/workflows?page={}", i % 5))
                    .await
                    .status,
            );
        }
        seen
    };
    let a = run().await;
    assert_eq!(a, run().await);
    assert!(a.contains(&StatusCode::OK) && a.contains(&StatusCode::SERVICE_UNAVAILABLE));
}

#[test]
fn start_stop_and_errors() {
    let err = Sandbox::start(SandboxConfig {
        vendor: "nope".into(),
        ..Default::default()
    })
    .err()
    .unwrap();
    assert!(err.contains("unknown vendor"));
    assert!(Sandbox::start(SandboxConfig {
        exception_rate: 2.0,
        ..Default::default()
    })
    .is_err());
    let sb = Sandbox::start(SandboxConfig::default()).unwrap();
    assert!(sb.port() > 0);
    assert_eq!(sb.url(), format!("http://127.0.0.1:{}", sb.port()));
    assert_eq!(sb.vendor(), "alegion");
    // Bound before start returned: a plain connect succeeds at once.
    std::net::TcpStream::connect(("127.0.0.1", sb.port())).unwrap();
    sb.stop();
    sb.stop();
    assert!(std::net::TcpStream::connect(("127.0.0.1", sb.port())).is_err());
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Sandbox>();
}

/// The benchmark shape: 100,000 records in one batch, read back in 100 pages of 1,000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_batch_pages_stay_fast() {
    let c = Client::start(SandboxConfig {
        exception_rate: 0.1,
        ..config()
    })
    .await;
    let batch = c.create_batch("big").await;
    let t = Instant::now();
    let body: Vec<Value> = (0..1000)
        .map(|i| json!({"data": {"image": format!("https://img/{i}.jpg")}, "metadata": format!("m{i}")}))
        .collect();
    let body = serde_json::to_vec(&body).unwrap();
    for _ in 0..100 {
        let r = c
            .http
            .post(c.url(&format!("/api/v1/batches/{batch}/records/import")))
            .bearer_auth(&c.token)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    let imported = t.elapsed();
    let t = Instant::now();
    let mut n = 0;
    let total = c.count(&batch, "results?").await;
    for p in 1..=100 {
        let r = c
            .http
            .get(c.url(&format!(
                "/api/v1/batches/{batch}/results?page={p}&pageSize=1000&sort=%2BcreatedAt"
            )))
            .bearer_auth(&c.token)
            .send()
            .await
            .unwrap();
        let items: Vec<Value> = r.json().await.unwrap();
        n += items.len() as u64;
    }
    assert_eq!(n, total);
    let paged = t.elapsed();
    eprintln!("100k import {imported:?}, 100 pages {paged:?}");
    assert!(paged < Duration::from_secs(20), "{paged:?}");
}

#[tokio::test]
async fn scripted_one_shot_faults() {
    let c = Client::start(config()).await;
    let batch = c.create_batch("scripted").await;
    let script = |body: Value| c.http.post(c.url("/_sim/faults")).json(&body).send();
    let denied = json!({"timestamp": 1510865911864u64, "status": 500, "error": "Internal Server Error",
        "exception": "org.springframework.security.access.AccessDeniedException",
        "message": "Incorrect token provided", "path": "/x"});
    let r =
        script(json!({"status": 500, "body": denied, "method": "post", "path": "/records/import"}))
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    // A GET does not match; the next import does, once, and stores nothing.
    assert_eq!(
        c.get(&format!("/api/v1/batches/{batch}/records"))
            .await
            .status,
        200
    );
    let a = c.import(&batch, keys("s", 2)).await;
    assert_eq!(a.status, 500);
    assert_eq!(a.body, denied);
    assert_eq!(c.sb.stats()["records_total"], 0);
    assert_eq!(c.import(&batch, keys("s", 2)).await.status, 200);

    // Stored, then the connection dropped: the ambiguous failure a client must reconcile.
    script(json!({"reset": true, "commit": true, "path": "/records/import"}))
        .await
        .unwrap();
    let err = c
        .http
        .post(c.url(&format!("/api/v1/batches/{batch}/records/import")))
        .bearer_auth(&c.token)
        .json(&json!([{"data": {"a": "1"}, "metadata": "lost-answer"}]))
        .send()
        .await;
    assert!(err.is_err());
    assert_eq!(c.sb.stats()["records_created"]["lost-answer"], 1);
    assert_eq!(c.count(&batch, "records?").await, 3);

    let bad = script(json!({"path": "/x"})).await.unwrap();
    assert_eq!(bad.status(), 400);
    script(json!({"status": 503, "times": 5})).await.unwrap();
    let cleared = c.http.delete(c.url("/_sim/faults")).send().await.unwrap();
    assert_eq!(cleared.status(), 200);
    assert_eq!(c.get("/api/v1/workflows").await.status, 200);
}

#[tokio::test]
async fn batch_hook_restarts_every_exception() {
    let c = Client::start(SandboxConfig {
        complete_after: 2.0,
        exception_rate: 0.5,
        ..config()
    })
    .await;
    let batch = c.create_batch("restart").await;
    c.import(&batch, keys("r", 200)).await;
    c.sb.advance(3.0);
    let exceptions = c.count(&batch, "records?status=exception&").await;
    assert!(exceptions > 50);
    let r = c
        .http
        .post(c.url(&format!("/_sim/batches/{batch}/status")))
        .json(&json!({"status": "in-progress", "from": "exception"}))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["updated"], exceptions);
    assert_eq!(c.count(&batch, "records?status=exception&").await, 0);
    c.sb.advance(1.0);
    assert_eq!(c.count(&batch, "results?").await, 200);
    let unknown = c.get("/api/v1/nothing/here").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body["error"], "Not Found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_imports_lose_nothing() {
    let c = std::sync::Arc::new(Client::start(config()).await);
    let batch = c.create_batch("concurrent").await;
    let tasks: Vec<_> = (0..20)
        .map(|t| {
            let c = c.clone();
            let batch = batch.clone();
            tokio::spawn(async move { c.import(&batch, keys(&format!("t{t}-"), 50)).await.status })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(c.count(&batch, "records?").await, 1000);
    let s = c.sb.stats();
    assert_eq!(s["records_total"], 1000);
    assert!(s["records_created"]
        .as_object()
        .unwrap()
        .values()
        .all(|v| v == 1));
    // Creation order is (createdAt, id) order.
    let page = c
        .get(&format!("/api/v1/batches/{batch}/records?pageSize=1000"))
        .await;
    let order: Vec<(i64, String)> = page
        .items()
        .iter()
        .map(|r| (ms(&r["createdAt"]), r["id"].as_str().unwrap().to_string()))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn stop_does_not_wait_for_slow_answers() {
    let sb = Sandbox::start(faulty(Faults {
        slow: 1.0,
        slow_s: 30.0,
        ..Default::default()
    }))
    .unwrap();
    let url = format!("{}/api/v1/workflows", sb.url());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pending = rt.spawn(async move { reqwest::get(url).await });
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    sb.stop();
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let answer = rt.block_on(pending).unwrap();
    assert!(answer.is_err() || answer.unwrap().status() != 200);
}

#[tokio::test]
async fn dialect_page_cap_caps_every_listing() {
    use super::Setting;
    let c = Client::start(SandboxConfig {
        dialect: super::Dialect::default().set("page_cap", Setting::Number(250)),
        ..config()
    })
    .await;
    let batch = c.create_batch("capped").await;
    assert_eq!(c.import(&batch, keys("c", 600)).await.status, 200);
    for what in ["records", "results"] {
        let mut seen = std::collections::HashSet::new();
        for (p, want) in [(1, 250), (2, 250), (3, 100), (4, 0)] {
            let a = c
                .get(&format!(
                    "/api/v1/batches/{batch}/{what}?page={p}&pageSize=1000"
                ))
                .await;
            assert_eq!(a.status, 200, "{what} page {p}: {}", a.text);
            assert_eq!(a.header("x-total-count"), "600", "{what}: totals unchanged");
            assert_eq!(a.items().len(), want, "{what} page {p}");
            for item in a.items() {
                assert!(
                    seen.insert(item.to_string()),
                    "{what}: pages numbered in the cap"
                );
            }
        }
        assert_eq!(seen.len(), 600, "{what}");
    }
    let project = c.sb.project();
    for path in [
        "/api/v1/workflows?page=1&pageSize=1000".to_string(),
        format!("/api/v1/workflows/{project}/batches?page=1&pageSize=1000"),
    ] {
        let a = c.get(&path).await;
        assert_eq!(a.status, 200, "{path}: {}", a.text);
        assert!(a.header("link").contains("pageSize=250"), "{path}");
    }
}

#[test]
fn dialect_unknown_settings_are_refused_by_name() {
    use super::Setting;
    let start = |vendor: &str, name: &str, value: Setting| {
        Sandbox::start(SandboxConfig {
            vendor: vendor.into(),
            dialect: super::Dialect::default().set(name, value),
            ..Default::default()
        })
        .err()
    };
    let err = start("alegion", "pagecap", Setting::Number(1)).unwrap();
    assert!(
        err.contains("\"pagecap\"") && err.contains("settings: page_cap"),
        "{err}"
    );
    let err = start("sama", "no_such_setting", Setting::Number(250)).unwrap();
    assert!(
        err.contains("sama") && err.contains("unknown dialect setting"),
        "{err}"
    );
    let err = start("alegion", "page_cap", Setting::Word("250".into())).unwrap();
    assert!(err.contains("whole number"), "{err}");
    let err = start("alegion", "page_cap", Setting::Number(0)).unwrap();
    assert!(err.contains("at least 1"), "{err}");
    assert!(start("alegion", "page_cap", Setting::Number(250)).is_none());
}
