//! The two ways an adapter sends a request again beyond `HttpClient::send`'s own retries, both through the
//! engine's one retry loop (`engine::runner::run`: the policy's backoff and budget, the caller's deadline):
//! - [`put_signed`]: a PUT of a body to a URL the vendor handed out (pre-signed storage), which carries no
//!   credential and may lie on another origin, so it goes through the raw client. A PUT replaces the object:
//!   every failure may be tried again.
//! - [`create_once`]: a request that must not take effect twice. After an ambiguous failure (the request
//!   may have arrived) it asks the vendor whether it did before sending it again.

use std::future::Future;

use url::Url;

use crate::engine::http::{read_limited, HttpClient};
use crate::engine::redact::redact_url;
use crate::engine::retry::{is_ambiguous, RetryPolicy};
use crate::engine::runner::{run, Step};
use crate::engine::{Error, ErrorKind, Result};

/// PUTs to `url`, a URL the vendor handed out. `request` builds each attempt (so a streamed body is made
/// anew); `refused(status, body)` is the error of an answer that is not a success (`body` read within the
/// response limit, for the vendor's message). 429, 5xx and broken connections are tried again.
pub async fn put_signed<B, R>(
    http: &HttpClient,
    retry: &RetryPolicy,
    vendor: &'static str,
    url: &Url,
    request: B,
    refused: R,
) -> Result<()>
where
    B: Fn() -> reqwest::RequestBuilder,
    R: Fn(u16, &[u8]) -> Error,
{
    let label = format!("PUT {}", redact_url(url));
    let (request, refused, label_ref) = (&request, &refused, &label);
    let limit = http.limits().max_response_bytes;
    run(retry, &label, move |_| async move {
        match request().send().await {
            Ok(resp) if resp.status().is_success() => Step::Done(()),
            Ok(resp) => {
                let status = resp.status().as_u16();
                let body = read_limited(resp, limit).await.unwrap_or_default();
                let error = refused(status, &body);
                if status == 429 || status >= 500 {
                    Step::Retry {
                        error,
                        after: None,
                        paced: status == 429,
                    }
                } else {
                    Step::Fail(error)
                }
            }
            Err(e) => Step::Retry {
                error: Error::new(
                    ErrorKind::Vendor,
                    format!("{label_ref} failed: the connection broke"),
                )
                .vendor(vendor)
                .operation("upload")
                .code(if e.is_connect() {
                    "connect_failed"
                } else {
                    "connection_lost"
                }),
                after: None,
                paced: false,
            },
        }
    })
    .await
}

/// Sends a request that must not take effect twice: `send()`'s answer, or, after an ambiguous failure and
/// the policy's backoff, what `found()` finds of it at the vendor (`Some`: it took effect, and this stands
/// for its answer); only when `found()` finds nothing is it sent again. Other failures are final.
pub async fn create_once<T, S, SF, F, FF>(
    retry: &RetryPolicy,
    label: &str,
    send: S,
    found: F,
) -> Result<T>
where
    S: Fn() -> SF,
    SF: Future<Output = Result<T>>,
    F: Fn() -> FF,
    FF: Future<Output = Result<Option<T>>>,
{
    let (send, found) = (&send, &found);
    run(retry, label, move |tries| async move {
        if tries.retry > 0 {
            match found().await {
                Ok(Some(applied)) => {
                    log::info!(
                        target: "labelport::vendors",
                        "{label} failed ambiguously but had taken effect"
                    );
                    return Step::Done(applied);
                }
                Ok(None) => {}
                Err(e) => return Step::Fail(e),
            }
        }
        match send().await {
            Ok(answer) => Step::Done(answer),
            Err(e) if is_ambiguous(&e) => Step::Retry {
                error: e,
                after: None,
                paced: false,
            },
            Err(e) => Step::Fail(e),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    fn quick() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            base: Duration::from_millis(1),
            cap: Duration::from_millis(2),
            ..RetryPolicy::default()
        }
    }

    fn lost() -> Error {
        Error::new(ErrorKind::Vendor, "the answer was lost").code("connection_lost")
    }

    /// `create_once` over a send whose answer is always lost and a look-up that always finds `found`: what
    /// it returned, and how many times it sent and looked.
    async fn lost_answers<T: Clone>(found: Option<T>) -> (Result<T>, u32, u32) {
        let sent = AtomicU32::new(0);
        let looked = AtomicU32::new(0);
        let out = create_once(
            &quick(),
            "create",
            || async {
                sent.fetch_add(1, Ordering::SeqCst);
                Err(lost())
            },
            || async {
                looked.fetch_add(1, Ordering::SeqCst);
                Ok(found.clone())
            },
        )
        .await;
        (out, sent.into_inner(), looked.into_inner())
    }

    #[tokio::test]
    async fn an_ambiguous_failure_that_took_effect_is_not_sent_again() {
        let (out, sent, looked) = lost_answers(Some("found")).await;
        assert_eq!(out.unwrap(), "found");
        assert_eq!((sent, looked), (1, 1));
    }

    #[tokio::test]
    async fn it_is_sent_again_only_while_the_vendor_shows_nothing_and_the_budget_lasts() {
        let (out, sent, looked) = lost_answers::<()>(None).await;
        assert_eq!(out.unwrap_err().code.as_deref(), Some("connection_lost"));
        // The first send and three more, each after a look-up that found nothing.
        assert_eq!((sent, looked), (4, 3));
    }

    #[tokio::test]
    async fn a_clear_refusal_is_final_and_nothing_is_looked_up() {
        let looked = AtomicU32::new(0);
        let out = create_once(
            &quick(),
            "create",
            || async {
                let mut e = Error::new(ErrorKind::InvalidInput, "refused");
                e.status = Some(400);
                Err::<(), _>(e)
            },
            || async {
                looked.fetch_add(1, Ordering::SeqCst);
                Ok(Some(()))
            },
        )
        .await;
        assert_eq!(out.unwrap_err().status, Some(400));
        assert_eq!(looked.into_inner(), 0);
    }

    #[tokio::test]
    async fn a_failed_look_up_ends_it() {
        let out = create_once(
            &quick(),
            "create",
            || async { Err::<(), _>(lost()) },
            || async { Err(Error::new(ErrorKind::Auth, "token refused")) },
        )
        .await;
        assert_eq!(out.unwrap_err().kind, ErrorKind::Auth);
    }
}
