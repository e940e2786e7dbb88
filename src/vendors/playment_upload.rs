//! Playment's uploads: one create-job call per record (`reference_id` = the record key), resent after an
//! ambiguous failure because Playment refuses a second job with the same `reference_id` (`FS_0001`), which
//! then counts as created once the batch's job list shows it; the job settings (`tag` or v1 `work_flow_id`,
//! `priority_weight`) and the record checks made before anything is sent.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use reqwest::Method;
use serde_json::{json, Map, Value};
use url::Url;

use super::{by_code, data, Inner, DATA_SHAPES, VENDOR};
use crate::engine::concurrency::LimitConfig;
use crate::engine::http::Request;
use crate::engine::retry::{is_ambiguous, RequestKind};
use crate::engine::runner::{run, Step};
use crate::engine::{Error, ErrorKind, Result};
use crate::vendors::config::Options;
use crate::vendors::model::*;
use crate::vendors::upload::{in_chunks, Driver, Pieces, Plan, Wording};
use crate::vendors::{UploadCall, UploadProgress};

/// What one record's create came to.
enum Created {
    Job,
    /// `FS_0001`: the project already holds this reference_id.
    Duplicate,
    Refused(Failure),
    Error(Error),
}

/// The job settings a client or an upload may carry: `tag` or `work_flow_id`, `priority_weight`.
pub(super) fn check_job_options(o: &Options) -> Result<()> {
    for name in ["tag", "work_flow_id"] {
        if let Some(v) = o.get(name) {
            if v.as_str().is_none_or(|s| s.trim().is_empty()) {
                return Err(Error::invalid(format!("{name} must be a non-empty string"))
                    .vendor(VENDOR)
                    .field(name));
            }
        }
    }
    if let Some(v) = o.get("priority_weight") {
        if !v.as_i64().is_some_and(|w| (1..=10).contains(&w)) || v.is_f64() {
            return Err(Error::invalid(format!(
                "priority_weight must be an integer from 1 (lowest) to 10 (highest), not {v}"
            ))
            .vendor(VENDOR)
            .field("priority_weight"));
        }
    }
    Ok(())
}

/// The bounds of the adaptive upload concurrency: `max_concurrency` (client option, default 64, at most
/// 1,024) raises or lowers the ceiling; the limit starts at 4 (or the ceiling, if lower) and halves on 429/503.
pub(super) fn limit_config(o: &Options) -> Result<LimitConfig> {
    let mut limits = LimitConfig::default();
    if let Some(v) = o.get("max_concurrency") {
        let n = v
            .as_u64()
            .filter(|n| (1..=MAX_CONCURRENCY).contains(n) && !v.is_f64())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "max_concurrency must be an integer from 1 to {MAX_CONCURRENCY}, not {v}"
                ))
                .vendor(VENDOR)
                .field("max_concurrency")
            })?;
        limits.max = n as usize;
        limits.initial = limits.initial.min(limits.max);
    }
    Ok(limits)
}

/// More requests in flight than this is a denial of service, not an upload.
const MAX_CONCURRENCY: u64 = 1024;

/// A record must hold one of Playment's data shapes; the other fields travel along in `data`.
pub(super) fn check_record(r: &UploadRecord) -> Option<Failure> {
    if DATA_SHAPES.iter().any(|k| r.data.contains_key(*k)) {
        return None;
    }
    Some(Failure {
        key: r.key.clone(),
        field: Some("image_url".into()),
        code: Some("FS_0003".into()),
        message: "a Playment record needs the data to annotate: an image_url, video_data or sensor_data field".into(),
    })
}

/// The records holding data to annotate, and (with `collect`) a failure for each of the others; without
/// `collect`, the first record without data refuses the upload before anything is sent.
fn with_data(
    records: Vec<UploadRecord>,
    collect: bool,
) -> Result<(Vec<UploadRecord>, Vec<Failure>)> {
    let mut failures: Vec<Failure> = Vec::new();
    let mut good = Vec::with_capacity(records.len());
    for r in records {
        match check_record(&r) {
            None => good.push(r),
            Some(f) if collect => failures.push(f),
            Some(f) => {
                return Err(Error::invalid(format!("{}; nothing was sent", f.message))
                    .vendor(VENDOR)
                    .operation("upload")
                    .key(f.key)
                    .field("image_url")
                    .code("FS_0003"))
            }
        }
    }
    Ok((good, failures))
}

/// A refused record as the error that stops an upload.
fn refusal(f: Failure) -> Error {
    let kind = if f.code.as_deref() == Some("FS_0001") {
        ErrorKind::DuplicateRecord
    } else {
        ErrorKind::InvalidInput
    };
    let mut e = Error::new(kind, f.message).vendor(VENDOR).key(f.key);
    e.code = f.code;
    e.field = f.field;
    e
}

/// What a create the vendor took came to.
enum Landed {
    Job,
    /// `FS_0001` for this key: the project holds a job with it already.
    Duplicate(String),
}

/// One upload's pieces for the driver: the batch's reference_ids, one create-job call per record.
struct Jobs<'a> {
    inner: &'a Arc<Inner>,
    batch_id: &'a str,
    url: Url,
    settings: Map<String, Value>,
}

#[async_trait::async_trait]
impl Pieces for Jobs<'_> {
    type Item = UploadRecord;
    type Chunk = Vec<UploadRecord>;
    type Receipt = Landed;

    async fn existing_keys(&self) -> Result<HashSet<String>> {
        Ok(self
            .inner
            .keys_in(self.batch_id)
            .await?
            .into_keys()
            .collect())
    }
    fn chunks(&self, records: Vec<UploadRecord>) -> Vec<Vec<UploadRecord>> {
        in_chunks(records, 1)
    }
    async fn send(&self, job: &Vec<UploadRecord>) -> Result<Landed> {
        let r = &job[0];
        match self
            .inner
            .create(&self.url, self.batch_id, &self.settings, r)
            .await
        {
            Created::Job => Ok(Landed::Job),
            Created::Duplicate => Ok(Landed::Duplicate(r.key.clone())),
            Created::Refused(f) => Err(refusal(f)),
            Created::Error(e) => Err(e),
        }
    }
    /// A duplicate counts once the batch is seen to hold it (`place_duplicates`).
    fn landed(&self, receipt: &Landed, _len: usize) -> u64 {
        matches!(receipt, Landed::Job) as u64
    }
}

impl Inner {
    /// FS_0001: created by an earlier attempt whose answer was lost, or by a run that was cut short. The
    /// batch's job list says which job holds it; a key held elsewhere in the project is refused.
    async fn place_duplicates(
        self: &Arc<Self>,
        batch_id: &str,
        keys: Vec<String>,
        progress: &UploadProgress,
        failures: &mut Vec<Failure>,
    ) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let now_present = self.keys_in(batch_id).await?;
        for key in keys {
            if now_present.contains_key(&key) {
                progress.sent.fetch_add(1, Ordering::Relaxed);
            } else {
                failures.push(Failure {
                    key,
                    field: Some("reference_id".into()),
                    code: Some("FS_0001".into()),
                    message: "this key (reference_id) is already used by a job in another batch of the project".into(),
                });
            }
        }
        Ok(())
    }
}

impl Inner {
    fn job_settings(&self, upload: &Options) -> Result<(Url, Map<String, Value>)> {
        check_job_options(upload)?;
        let get = |k: &str| upload.get(k).or_else(|| self.cfg.options.get(k)).cloned();
        let mut fields = Map::new();
        let url = match (get("work_flow_id"), get("tag")) {
            (Some(wf), _) => {
                fields.insert("work_flow_id".into(), wf);
                self.project_path("v1", "jobs")
            }
            (None, Some(tag)) => {
                fields.insert("tag".into(), tag);
                self.project_path("v0", "jobs")
            }
            (None, None) => {
                return Err(Error::invalid(
                    "Playment needs the tag (or work_flow_id) it gave you at integration: pass tag=... to Client or upload",
                )
                .vendor(VENDOR)
                .operation("upload")
                .field("tag"))
            }
        };
        if let Some(w) = get("priority_weight") {
            // v1 documents 1-9 (`FS_00012`, docs/vendors/playment.md finding 7); v0 documents 1 to 10.
            if fields.contains_key("work_flow_id") && w.as_i64() == Some(10) {
                return Err(Error::invalid(
                    "priority_weight must be from 1 to 9 with work_flow_id (Playment's v1 jobs take 1-9; 10 is v0's, with tag)",
                )
                .vendor(VENDOR)
                .operation("upload")
                .field("priority_weight"));
            }
            fields.insert("priority_weight".into(), w);
        }
        Ok((url, fields))
    }

    /// Creates one job. The vendor deduplicates by reference_id, so an ambiguous failure is simply sent
    /// again: the repeat either creates it or answers FS_0001.
    async fn create(
        &self,
        url: &Url,
        batch_id: &str,
        settings: &Map<String, Value>,
        r: &UploadRecord,
    ) -> Created {
        let mut body = settings.clone();
        body.insert("reference_id".into(), json!(r.key));
        body.insert("data".into(), Value::Object(r.data.clone()));
        body.insert("batch_id".into(), json!(batch_id));
        let req = match Request::json(
            Method::POST,
            url.clone(),
            &body,
            RequestKind::IdempotentCreate,
            "upload",
        ) {
            Ok(req) => req,
            Err(e) => return Created::Error(e.key(r.key.clone())),
        };
        // A create the vendor may or may not have applied is sent again: Playment refuses a second job
        // with the same reference_id (FS_0001), which counts as created.
        let sent = run(&self.retry, "upload", |_| async {
            let permit = self.limit.acquire().await;
            match self.http.send(&req).await.map_err(by_code) {
                Ok(resp) => {
                    permit.clean();
                    Step::Done(resp)
                }
                Err(e) => {
                    let again = is_ambiguous(&e) && e.code.as_deref() != Some("FS_0001");
                    Step::retry_if(again, e)
                }
            }
        })
        .await;
        match sent {
            Ok(resp) => match data::<Value>(&resp, "upload") {
                Ok(d) if d.get("job_id").and_then(Value::as_str).is_some() => Created::Job,
                Ok(_) => Created::Error(
                    Error::new(ErrorKind::Vendor, "the create-job answer has no job_id")
                        .vendor(VENDOR)
                        .operation("upload")
                        .key(r.key.clone()),
                ),
                Err(e) => Created::Error(e.key(r.key.clone())),
            },
            Err(e) if e.code.as_deref() == Some("FS_0001") => Created::Duplicate,
            Err(e) if e.kind == ErrorKind::InvalidInput => Created::Refused(Failure {
                key: r.key.clone(),
                field: e.field.clone(),
                code: e.code.clone(),
                message: e.message,
            }),
            Err(e) => Created::Error(e.key(r.key.clone())),
        }
    }
}

impl Inner {
    /// One upload: the records without data refused first, the rest through the driver, one create per
    /// record, then the `FS_0001` duplicates placed.
    pub(super) async fn upload(self: &Arc<Self>, call: UploadCall<'_>) -> Result<JobState> {
        let me = self;
        let (url, settings) = me.job_settings(&call.options.options)?;
        let total = call.records.len() as u64;
        // Records without data to annotate are refused here, before anything is sent.
        let (good, mut failures) = with_data(call.records, call.options.collect_errors)?;
        let jobs = Jobs {
            inner: me,
            batch_id: &call.batch.id,
            url,
            settings,
        };
        // The adaptive limit inside `create` decides how many are in flight; this only bounds it.
        // Not reconciled here: Playment deduplicates by reference_id, so `create` resends after an ambiguous
        // failure itself. A chunk is one record: bisecting it names it.
        let plan = Plan::new(VENDOR, me.limit.config().max).bisecting();
        let driver = Driver::new(&jobs, plan, &call.options, &call.progress);
        let mut sent = driver.run(good).await?;
        failures.append(&mut sent.failures);
        let duplicates = sent.receipts.drain(..).filter_map(|l| match l {
            Landed::Duplicate(key) => Some(key),
            Landed::Job => None,
        });
        me.place_duplicates(
            &call.batch.id,
            duplicates.collect(),
            &call.progress,
            &mut failures,
        )
        .await?;
        if sent.error.is_none() && !call.options.collect_errors {
            sent.error = failures.first().cloned().map(refusal);
        }
        sent.failures = failures;
        let sent = sent.finish(total, &call.progress, Wording::stored())?;
        let id = format!("playment-upload-{}", uuid::Uuid::new_v4());
        Ok(sent.stored_job(id, &call.batch.id, total, &call.progress))
    }
}
