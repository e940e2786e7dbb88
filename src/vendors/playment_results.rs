//! Playment's result files: a completed job's `result` URL, through `/v1/attachments` (a redirect to a signed
//! URL, or a 200 naming it or holding the file: docs/vendors/playment.md, finding 2), to the file, read
//! without following redirects automatically and never sending the key to the storage host; the file split
//! into the record as sent and its labels.

use std::time::Duration;

use reqwest::header::{HeaderValue, LOCATION};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use url::Url;

use super::{by_code, data, parse_error, parse_item, to_raw, Inner, JobDto, JobItem, VENDOR};
use crate::engine::http::{bad_response, read_limited, too_large, BodyError};
use crate::engine::redact::redact_url;
use crate::engine::retry::{is_retryable, read_retry_after, Outcome, RequestKind, RetryAfter};
use crate::engine::runner::{run, Step};
use crate::engine::{Error, ErrorKind, Result};
use crate::vendors::model::*;

impl Inner {
    /// One attempt without following redirects, paced like every request of the client; `with_key` adds
    /// the API key.
    async fn raw_get(
        &self,
        url: &Url,
        with_key: bool,
    ) -> std::result::Result<reqwest::Response, reqwest::Error> {
        self.http.pace().await;
        let rb = self.http.raw_unredirected().get(url.clone());
        let rb = if with_key {
            match self
                .http
                .auth()
                .authorize(self.http.raw_unredirected(), rb)
                .await
            {
                Ok((rb, _)) => rb,
                Err(_) => self.http.raw_unredirected().get(url.clone()),
            }
        } else {
            rb
        };
        rb.send().await
    }

    /// GET with the engine's retry rules for reads, for the two calls that must not follow redirects
    /// automatically. Returns the first answer that may not be retried, with its body; an answer still
    /// retryable when the retries run out is the error it stands for.
    async fn get_manual(
        &self,
        url: &Url,
        with_key: bool,
    ) -> Result<(u16, reqwest::header::HeaderMap, bytes::Bytes)> {
        let label = format!("GET {}", redact_url(url));
        run(&self.retry, &label, |_| self.get_once(url, with_key)).await
    }

    /// One try of `get_manual`.
    async fn get_once(
        &self,
        url: &Url,
        with_key: bool,
    ) -> Step<(u16, reqwest::header::HeaderMap, bytes::Bytes)> {
        let resp = match self.raw_get(url, with_key).await {
            Ok(resp) => resp,
            Err(_) => {
                return self.connection_lost(url);
            }
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = match read_limited(resp, self.http.limits().max_response_bytes).await {
            Ok(body) => body,
            Err(BodyError::TooLarge { limit }) => {
                return Step::Fail(too_large(
                    VENDOR,
                    "results",
                    &reqwest::Method::GET,
                    url,
                    limit,
                ))
            }
            Err(BodyError::Transport(_)) => {
                return self.connection_lost(url);
            }
        };
        if !is_retryable(RequestKind::Read, Outcome::Status(status)) {
            return Step::Done((status, headers, body));
        }
        if matches!(status, 429 | 503) {
            self.limit.overloaded();
        }
        let error = self.status_error(url, status, &body);
        match read_retry_after(&headers, &self.retry) {
            RetryAfter::TooLong(secs) => Step::TooLong {
                error: error.retry_after(secs),
                wait: Duration::from_secs_f64(secs),
            },
            RetryAfter::Implausible(secs) => Step::Fail(
                bad_response(
                    VENDOR,
                    "results",
                    url,
                    &format!("HTTP {status} with Retry-After {secs}"),
                )
                .http_status(status),
            ),
            after => Step::Retry {
                error,
                after: after.wait(),
                paced: status == 429 && after.wait().is_some(),
            },
        }
    }

    /// A read whose connection broke: tried again as the decision table allows.
    fn connection_lost<T>(&self, url: &Url) -> Step<T> {
        let retryable = is_retryable(RequestKind::Read, Outcome::TransportFailed);
        let error = Error::new(
            ErrorKind::Vendor,
            format!(
                "GET {}: the connection failed before an answer arrived",
                redact_url(url)
            ),
        )
        .vendor(VENDOR)
        .operation("results")
        .code("connection_lost");
        Step::retry_if(retryable, error)
    }

    fn status_error(&self, url: &Url, status: u16, body: &[u8]) -> Error {
        let (code, message) = parse_error(status, body);
        let kind = match status {
            401 | 403 => ErrorKind::Auth,
            404 => ErrorKind::NotFound,
            429 => ErrorKind::RateLimited,
            400 => ErrorKind::InvalidInput,
            _ => ErrorKind::Vendor,
        };
        let mut e = Error::new(
            kind,
            message.unwrap_or_else(|| format!("GET {} answered HTTP {status}", redact_url(url))),
        )
        .vendor(VENDOR)
        .operation("results");
        e.status = Some(status);
        e.code = code;
        by_code(e)
    }

    /// A finished job's result file: job -> result URL -> attachments redirect -> signed URL.
    pub(super) async fn result_of(
        &self,
        batch_id: &str,
        job: JobItem,
        include_raw: bool,
    ) -> Result<Envelope> {
        let resp = self
            .get(
                self.project_path("v0", &format!("jobs/{}", job.id)),
                "results",
            )
            .await?;
        let job_raw: Box<RawValue> = data(&resp, "results")?;
        let dto: JobDto = parse_item(&job_raw, "results")?;
        let result_url = dto.result.filter(|r| !r.is_empty()).ok_or_else(|| {
            Error::new(
                ErrorKind::Vendor,
                format!("job {} is completed but has no result URL", job.id),
            )
            .vendor(VENDOR)
            .operation("results")
            .key(job.reference_id.clone())
        })?;
        let mut attach = self.url("/v1/attachments");
        attach.query_pairs_mut().append_pair("url", &result_url);
        // An answer the vendor kept refusing names the record, as any other refusal of its result does.
        let with_key = |e: Error| match e.status {
            Some(_) => e.key(job.reference_id.clone()),
            None => e,
        };
        let (status, headers, body) = self.get_manual(&attach, true).await.map_err(with_key)?;
        // The page says "redirect" under a "200: OK" tab (docs/vendors/playment.md, finding 2): a redirect, a
        // 200 naming the signed URL in JSON, and a 200 holding the file itself are all read.
        let signed = match status {
            300..=399 => Some(
                headers
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|l| attach.join(l).ok())
                    .ok_or_else(|| self.status_error(&attach, status, &body))?,
            ),
            200 => signed_url_in(&body).and_then(|u| attach.join(&u).ok()),
            _ => {
                return Err(self
                    .status_error(&attach, status, &body)
                    .key(job.reference_id))
            }
        };
        let (headers, body) = match signed {
            None => (headers, body),
            Some(signed) => {
                let (status, headers, body) =
                    self.get_manual(&signed, false).await.map_err(with_key)?;
                if status != 200 {
                    return Err(self
                        .status_error(&signed, status, &body)
                        .key(job.reference_id));
                }
                (headers, body)
            }
        };
        let completed_us = headers
            .get(reqwest::header::LAST_MODIFIED)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
            .map(|d| d.timestamp_micros());
        let file: Value = serde_json::from_slice(&body).map_err(|e| {
            Error::new(
                ErrorKind::Vendor,
                format!("the result file of job {} is not JSON: {e}", job.id),
            )
            .vendor(VENDOR)
            .operation("results")
            .code("bad_response")
        })?;
        let (input, output) = split_result(&file);
        let raw = if include_raw {
            let job_v: Value = serde_json::from_str(job_raw.get()).unwrap_or(Value::Null);
            Some(to_raw(&json!({"job": job_v, "result": file}))?)
        } else {
            None
        };
        Ok(Envelope {
            id: job.id,
            batch_id: batch_id.to_string(),
            key: job.reference_id,
            status: Status::Completed,
            input: Some(to_raw(&input)?),
            output: Some(to_raw(&output)?),
            created_at: None,
            completed_at: completed_us.map(format_rfc3339_us),
            vendor: VENDOR,
            raw,
            completed_us,
        })
    }
}

/// The signed URL a 200 from `/v1/attachments` names in JSON (`url` or `signed_url`, at the top or under
/// `data`), if it names one; `None`: the answer is the file itself.
fn signed_url_in(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let is_url = |s: &&str| s.starts_with("https://") || s.starts_with("http://");
    ["/url", "/signed_url", "/data/url", "/data/signed_url"]
        .iter()
        .find_map(|p| v.pointer(p).and_then(Value::as_str).filter(is_url))
        .map(String::from)
}

/// Where a result file's labels sit: `annotations` (images), `annotation_data` (video, sensor) and
/// `annotations_data` (video segmentation), per docs/vendors/playment.md [V1R] and finding 6.
const LABEL_KEYS: [&str; 3] = ["annotations", "annotation_data", "annotations_data"];

/// The result file's `data` split into the record as sent and the labels (`LABEL_KEYS`).
fn split_result(file: &Value) -> (Value, Value) {
    let mut data = file
        .get("data")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut output = Map::new();
    for k in LABEL_KEYS {
        if let Some(v) = data.remove(k) {
            output.insert(k.to_string(), v);
        }
    }
    (Value::Object(data), Value::Object(output))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_files_split_into_input_and_labels() {
        let file = json!({"data": {"image_url": "https://e/x.jpg", "image_id": "k1",
            "annotations": {"rectangles": [{"_id": "a", "label": "Car"}]}}});
        let (input, output) = split_result(&file);
        assert_eq!(
            input,
            json!({"image_url": "https://e/x.jpg", "image_id": "k1"})
        );
        assert_eq!(
            output["annotations"]["rectangles"][0]["label"],
            json!("Car")
        );
    }

    #[test]
    fn a_200_from_attachments_names_the_signed_url_or_is_the_file() {
        let url = |v: Value| signed_url_in(v.to_string().as_bytes());
        assert_eq!(
            url(json!({"url": "https://s/x"})).as_deref(),
            Some("https://s/x")
        );
        assert_eq!(
            url(json!({"success": true, "data": {"url": "http://s/y"}})).as_deref(),
            Some("http://s/y")
        );
        assert_eq!(
            url(json!({"signed_url": "https://s/z"})).as_deref(),
            Some("https://s/z")
        );
        // A result file (its data holds no url) and a URL that is not http(s) are the file itself.
        assert_eq!(
            url(json!({"data": {"image_url": "https://e/x.jpg", "annotations": {}}})),
            None
        );
        assert_eq!(url(json!({"url": "s3://bucket/key"})), None);
        assert_eq!(signed_url_in(b"not json"), None);
        let (_, output) = split_result(
            &json!({"data": {"video_data": {}, "annotations_data": {"annotations": []}}}),
        );
        assert_eq!(output, json!({"annotations_data": {"annotations": []}}));
    }
}
