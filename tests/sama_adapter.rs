//! The Sama adapter against the Sama sandbox over real sockets, for what Python cannot reach yet: the
//! consumer-cursor results (`SamaAdapter::results_for_consumer`, for `batch.results(consumer=...)`).
//! `src/vendors` and `src/sandbox` never import each other; this test uses both, and they meet over HTTP.

use std::collections::HashSet;
use std::sync::Arc;

use labelport::engine::stream::PageStream;
use labelport::sandbox::{Sandbox, SandboxConfig};
use labelport::vendors::sama::SamaAdapter;
use labelport::vendors::{
    resolve, Adapter, ClientArgs, Envelope, UploadOptions, UploadProgress, UploadRecord,
};
use serde_json::json;

fn adapter(sb: &Sandbox) -> Arc<SamaAdapter> {
    let (name, key) = sb.credentials().remove(0);
    let cfg = resolve(
        ClientArgs {
            vendor: "sama".into(),
            project: Some(sb.project()),
            base_url: Some(sb.url()),
            keywords: [(name, json!(key))].into_iter().collect(),
            timeout: 30.0,
            max_retries: 5,
            ..Default::default()
        },
        |_| None,
    )
    .unwrap();
    Arc::new(SamaAdapter::new(cfg, tokio::runtime::Handle::current()).unwrap())
}

async fn drain(mut s: PageStream<Envelope>) -> Vec<Envelope> {
    let mut out = Vec::new();
    while let Some(page) = s.next_page().await {
        out.extend(page.unwrap());
    }
    out
}

async fn upload(a: &SamaAdapter, batch: &str, keys: std::ops::Range<usize>) {
    // A Sama batch exists once a task carries its id: a new one is attached through create_batch.
    let info = a
        .create_batch(batch, true, &Default::default())
        .await
        .unwrap();
    let records = keys
        .map(|i| UploadRecord {
            key: format!("k{i:04}"),
            data: serde_json::from_value(json!({"url": format!("u{i}")})).unwrap(),
        })
        .collect();
    let job = a
        .upload(
            &info,
            records,
            UploadOptions::default(),
            Arc::new(UploadProgress::default()),
        )
        .await
        .unwrap();
    let done = a.job_status(&job).await.unwrap();
    assert_eq!(done.failed, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn sama_consumer_results_never_repeat_a_delivery() {
    let sb = Sandbox::start(SandboxConfig {
        vendor: "sama".into(),
        seed: 2,
        ..Default::default()
    })
    .unwrap();
    let a = adapter(&sb);
    upload(&a, "feed", 0..1050).await;
    upload(&a, "other", 0..10).await;

    // More than one page (1,000 per call): the cursor moves on each call, no `page` is sent.
    let first = drain(a.results_for_consumer("feed", "etl", false).unwrap()).await;
    assert_eq!(first.len(), 1050);
    let ids: HashSet<&str> = first.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), 1050);
    assert!(first
        .iter()
        .all(|e| e.batch_id == "feed" && e.key.starts_with('k')));
    assert!(first.iter().all(|e| e.completed_us.is_some()));

    // Nothing new: nothing again.
    assert!(drain(a.results_for_consumer("feed", "etl", false).unwrap())
        .await
        .is_empty());
    // Another consumer has its own cursor; another batch is not mixed in.
    assert_eq!(
        drain(a.results_for_consumer("feed", "bi", false).unwrap())
            .await
            .len(),
        1050
    );
    // New deliveries reach the consumer once.
    upload(&a, "feed", 1050..1055).await;
    let late = drain(a.results_for_consumer("feed", "etl", true).unwrap()).await;
    let keys: Vec<&str> = late.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, vec!["k1050", "k1051", "k1052", "k1053", "k1054"]);
    assert!(late.iter().all(|e| e.raw.is_some()));
    assert!(a.results_for_consumer("feed", " ", false).is_err());

    let stats = sb.stats();
    let posts = stats["requests"]["POST /v2/projects/{projectId}/tasks/delivered.json 200"]
        .as_u64()
        .unwrap();
    // A read ends on an empty answer or one shorter than an earlier one (a server may hand out fewer than
    // `limit`): 1,000 + 50; nothing; 1,000 + 50; 5, then nothing.
    assert_eq!(posts, 2 + 1 + 2 + 2);
}
