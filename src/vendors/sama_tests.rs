//! Unit tests of `sama.rs`.

use super::*;
use crate::engine::redact::redact_url;

#[test]
fn urls_keep_the_key_out() {
    let cfg = crate::vendors::resolve(
        crate::vendors::ClientArgs {
            vendor: "sama".into(),
            project: Some("117".into()),
            keywords: [("api_key".to_string(), json!("s3cr3t-key"))]
                .into_iter()
                .collect(),
            timeout: 30.0,
            max_retries: 2,
            ..Default::default()
        },
        |_| None,
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let s = SamaAdapter::new(cfg, rt.handle().clone()).unwrap();
    assert_eq!(
        s.url(&[]).as_str(),
        "https://api.sama.com/v2/projects/117.json"
    );
    assert_eq!(
        s.url(&["batches", "55", "continue.json"]).as_str(),
        "https://api.sama.com/v2/projects/117/batches/55/continue.json"
    );
    assert_eq!(
        s.api_url("projects/117/tasks.json").unwrap().as_str(),
        "https://api.sama.com/v2/projects/117/tasks.json"
    );
    assert_eq!(
        s.api_url("/v2/projects/117.json").unwrap().as_str(),
        "https://api.sama.com/v2/projects/117.json"
    );
    assert!(!format!("{:?}", s.http.auth().renewable()).is_empty());
    let shown = redact_url(
        &Url::parse("https://api.sama.com/v2/projects/117.json?access_key=s3cr3t-key&page=2")
            .unwrap(),
    );
    assert!(!shown.contains("s3cr3t-key"), "{shown}");
    let bad_project = crate::vendors::resolve(
        crate::vendors::ClientArgs {
            vendor: "sama".into(),
            project: Some("abc".into()),
            keywords: [("api_key".to_string(), json!("k"))].into_iter().collect(),
            timeout: 30.0,
            ..Default::default()
        },
        |_| None,
    )
    .unwrap();
    let e = SamaAdapter::new(bad_project, rt.handle().clone())
        .err()
        .unwrap();
    assert_eq!(e.field.as_deref(), Some("project"));
}

/// Sama's one status call a second is kept on its host (and any other non-loopback one); a sandbox on
/// this machine is unpaced unless `status_interval=` asks; a bad interval is `InvalidInput` naming it.
#[test]
fn the_status_interval_is_the_vendors_off_loopback_and_none_on_it_unless_asked() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let adapter = |base: Option<&str>, interval: Option<Value>| {
        let mut keywords: crate::vendors::config::Options =
            [("api_key".to_string(), json!("k"))].into_iter().collect();
        if let Some(i) = interval {
            keywords.insert("status_interval".into(), i);
        }
        let cfg = crate::vendors::resolve(
            crate::vendors::ClientArgs {
                vendor: "sama".into(),
                project: Some("117".into()),
                base_url: base.map(str::to_string),
                keywords,
                timeout: 30.0,
                ..Default::default()
            },
            |_| None,
        )?;
        SamaAdapter::new(cfg, rt.handle().clone())
    };
    let interval = |base, given| adapter(base, given).unwrap().status_gate.interval;
    assert_eq!(interval(None, None), STATUS_INTERVAL);
    assert_eq!(
        interval(Some("https://10.0.0.7:8443"), None),
        STATUS_INTERVAL
    );
    assert_eq!(
        interval(Some("http://127.0.0.1:4010"), None),
        Duration::ZERO
    );
    assert_eq!(
        interval(Some("http://localhost:4010"), None),
        Duration::ZERO
    );
    assert_eq!(
        interval(Some("http://127.0.0.1:4010"), Some(json!(1.05))),
        Duration::from_millis(1050)
    );
    assert_eq!(interval(None, Some(json!(0))), Duration::ZERO);
    for bad in [json!(-1), json!("1s"), json!(1e300)] {
        let e = adapter(None, Some(bad.clone())).err().unwrap();
        assert_eq!(e.field.as_deref(), Some("status_interval"), "{bad}");
    }
}
