//! The upload driver: the steps every adapter's `upload` shares, fed by the adapter's own pieces (`Pieces`:
//! how to list the keys a batch holds, how to split records into chunks, how to send one).
//!
//! Records whose key the batch holds already are skipped; the rest go in chunks, a few at once; the first
//! error stops the chunks not yet started. A chunk that failed ambiguously (it may or may not be stored) is
//! reconciled: the batch is asked which keys it holds and only the missing records are sent again, so nothing
//! is lost and nothing is sent twice. With `collect_errors`, a chunk the vendor refuses is halved until each
//! refusal names one record. `UploadProgress` counts as it goes, and an upload cut short says what is in the
//! batch, what was not sent, and that running the same upload again sends the rest.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{json, Value};

use super::model::{Failure, JobPhase, JobState, UploadRecord};
use super::{UploadOptions, UploadProgress};
use crate::engine::retry::{is_ambiguous, RetryPolicy};
use crate::engine::{Error, ErrorKind, Result};

/// A record in the vendor's form, known by its key.
pub trait Keyed {
    fn key(&self) -> &str;
}

impl Keyed for UploadRecord {
    fn key(&self) -> &str {
        &self.key
    }
}

impl<T: Keyed> Keyed for Arc<T> {
    fn key(&self) -> &str {
        (**self).key()
    }
}

/// Records that go to the vendor in one call.
pub trait Chunk: Send + Sync + Sized {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn keys(&self) -> Vec<String>;
    /// Keeps only the records whose key `present` does not hold.
    fn retain_missing(&mut self, present: &HashSet<String>);
    /// The two halves of a refused chunk, each sent on its own to find the records the vendor refuses.
    fn halves(self) -> (Self, Self);
}

impl<T: Keyed + Send + Sync> Chunk for Vec<T> {
    fn len(&self) -> usize {
        <[T]>::len(self)
    }
    fn keys(&self) -> Vec<String> {
        self.iter().map(|r| r.key().to_string()).collect()
    }
    fn retain_missing(&mut self, present: &HashSet<String>) {
        self.retain(|r| !present.contains(r.key()));
    }
    fn halves(mut self) -> (Self, Self) {
        let second = self.split_off(self.len() / 2);
        (self, second)
    }
}

/// `items` in chunks of at most `size`, in order.
pub fn in_chunks<T>(items: Vec<T>, size: usize) -> Vec<Vec<T>> {
    let mut chunks = Vec::new();
    let mut it = items.into_iter().peekable();
    while it.peek().is_some() {
        chunks.push(it.by_ref().take(size).collect());
    }
    chunks
}

/// An adapter's own pieces of one upload to one batch.
#[async_trait]
pub trait Pieces: Sync {
    /// One record in the vendor's form.
    type Item: Keyed + Send;
    type Chunk: Chunk;
    /// What the vendor answers for a chunk it took (a job id, a creation job), handed back in `Sent`.
    type Receipt: Send;

    /// The keys the batch holds: what is skipped, and what a reconciliation finds stored.
    async fn existing_keys(&self) -> Result<HashSet<String>>;
    fn chunks(&self, items: Vec<Self::Item>) -> Vec<Self::Chunk>;
    async fn send(&self, chunk: &Self::Chunk) -> Result<Self::Receipt>;
    /// How many of the `len` records of a chunk the vendor holds after answering `receipt`: all of them,
    /// unless the receipt says otherwise.
    fn landed(&self, _receipt: &Self::Receipt, len: usize) -> u64 {
        len as u64
    }
}

/// How the driver sends an adapter's chunks.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// The vendor's name, for the log lines.
    vendor: &'static str,
    /// Chunks in flight at once.
    concurrency: usize,
    /// After an ambiguous failure, reconcile the chunk and send the missing records again, paced and bounded
    /// by this policy; `None` where `send` already makes itself safe to repeat.
    reconcile: Option<RetryPolicy>,
    /// With `collect_errors`, halve a refused chunk until each refusal names one record; off where the
    /// vendor refuses records before or after the send, never a whole chunk.
    bisect: bool,
    /// A refused chunk may be partly stored (nothing says the vendor refuses all or nothing): before halving
    /// it, the batch is asked which of its keys it holds, and those are not sent again.
    refusals_may_store: bool,
}

impl Plan {
    /// `concurrency` chunks at once; a failed chunk stops the upload.
    pub fn new(vendor: &'static str, concurrency: usize) -> Self {
        Plan {
            vendor,
            concurrency,
            reconcile: None,
            bisect: false,
            refusals_may_store: false,
        }
    }

    /// Reconciles a chunk after an ambiguous failure, paced and bounded by `retry`.
    pub fn reconciling(self, retry: RetryPolicy) -> Self {
        Plan {
            reconcile: Some(retry),
            ..self
        }
    }

    /// Halves a refused chunk when errors are collected.
    pub fn bisecting(self) -> Self {
        Plan {
            bisect: true,
            ..self
        }
    }

    /// Before halving a refused chunk, drops the records the batch holds: the vendor may have stored some.
    pub fn refusals_may_store(self) -> Self {
        Plan {
            refusals_may_store: true,
            ..self
        }
    }
}

/// What an upload's chunks (or one chunk) came to.
pub struct Sent<R> {
    /// Records skipped because the batch held their key already.
    pub skipped: u64,
    /// The vendor's receipts, one per chunk or part of a chunk it took.
    pub receipts: Vec<R>,
    /// Records a reconciliation found stored after an ambiguous failure.
    pub reconciled: u64,
    /// Records the vendor refused (only with `collect_errors`).
    pub failures: Vec<Failure>,
    /// Keys of the records not stored: their chunk never started, or failed.
    pub unsent: Vec<String>,
    /// What stopped the upload.
    pub error: Option<Error>,
}

impl<R> Default for Sent<R> {
    fn default() -> Self {
        Sent {
            skipped: 0,
            receipts: Vec::new(),
            reconciled: 0,
            failures: Vec::new(),
            unsent: Vec::new(),
            error: None,
        }
    }
}

impl<R> Sent<R> {
    fn failed(self, e: Error, pending: impl Chunk) -> Self {
        Sent {
            error: Some(e),
            unsent: pending.keys(),
            ..self
        }
    }

    /// Adds a part's counts; its error, if any, becomes this one's.
    fn absorb(&mut self, part: Sent<R>) {
        self.receipts.extend(part.receipts);
        self.reconciled += part.reconciled;
        self.failures.extend(part.failures);
        self.unsent.extend(part.unsent);
        if part.error.is_some() {
            self.error = part.error;
        }
    }

    /// The partial-upload error if the upload stopped, else what was sent.
    pub fn finish(
        mut self,
        total: u64,
        progress: &UploadProgress,
        wording: Wording,
    ) -> Result<Self> {
        match self.error.take() {
            None => Ok(self),
            Some(e) => Err(partial_upload(
                e,
                total,
                progress.sent.load(Ordering::Relaxed),
                self.skipped,
                &self.unsent,
                wording,
            )),
        }
    }

    /// The job of an upload whose records are all stored once it returns (an import the vendor answers
    /// when done); refused records count in `failed`, not as a failed job.
    pub fn stored_job(
        self,
        id: String,
        batch_id: &str,
        total: u64,
        progress: &UploadProgress,
    ) -> JobState {
        JobState {
            id,
            batch_id: batch_id.to_string(),
            state: JobPhase::Completed,
            total,
            done: progress.sent.load(Ordering::Relaxed) + self.skipped,
            failed: self.failures.len() as u64,
            skipped: self.skipped,
            failures: self.failures,
            vendor_job: None,
        }
    }
}

/// How a vendor's partial-upload error says where the records went: "{sent} of {total} {noun} {landed}",
/// "({noun} already in the {container} are skipped)", and the vendor's own `details`.
pub struct Wording {
    pub noun: &'static str,
    pub container: &'static str,
    pub landed: String,
    pub details: Option<(&'static str, Value)>,
}

impl Wording {
    /// Records stored in the batch by the time the upload returns.
    pub fn stored() -> Self {
        Wording {
            noun: "records",
            container: "batch",
            landed: "are in the batch".into(),
            details: None,
        }
    }
}

/// The error of an upload cut short by `e`: what went wrong, how much is stored, what was not sent, and that
/// the same upload again sends the rest.
fn partial_upload(
    e: Error,
    total: u64,
    sent: u64,
    skipped: u64,
    unsent: &[String],
    wording: Wording,
) -> Error {
    let Wording {
        noun,
        container,
        landed,
        details: extra,
    } = wording;
    let there = if skipped > 0 {
        format!(" ({skipped} were there already)")
    } else {
        String::new()
    };
    let message = format!(
        "{}; {sent} of {total} {noun} {landed}{there}, {} were not sent: run the same upload again to send the rest ({noun} already in the {container} are skipped)",
        e.message,
        unsent.len()
    );
    let mut details = json!({"sent": sent, "skipped": skipped, "not_sent": unsent.len(),
        "not_sent_keys": unsent.iter().take(100).collect::<Vec<_>>()});
    if let Some((name, value)) = extra {
        details[name] = value;
    }
    Error { message, ..e }
        .in_operation("upload")
        .details(details)
}

/// Drives one upload through an adapter's pieces.
pub struct Driver<'a, P> {
    pieces: &'a P,
    plan: Plan,
    collect_errors: bool,
    progress: &'a UploadProgress,
}

impl<'a, P: Pieces> Driver<'a, P> {
    pub fn new(
        pieces: &'a P,
        plan: Plan,
        options: &UploadOptions,
        progress: &'a UploadProgress,
    ) -> Self {
        Driver {
            pieces,
            plan,
            collect_errors: options.collect_errors,
            progress,
        }
    }

    /// Skips the records the batch holds, then sends the rest in chunks until done or stopped.
    pub async fn run(&self, items: Vec<P::Item>) -> Result<Sent<P::Receipt>> {
        let given = items.len() as u64;
        let present = self.pieces.existing_keys().await?;
        let to_send: Vec<P::Item> = items
            .into_iter()
            .filter(|r| !present.contains(r.key()))
            .collect();
        let skipped = given - to_send.len() as u64;
        self.progress.skipped.store(skipped, Ordering::Relaxed);

        let stop = AtomicBool::new(false);
        let outcomes: Vec<Sent<P::Receipt>> = futures::stream::iter(self.pieces.chunks(to_send))
            .map(|chunk| {
                let stop = &stop;
                async move {
                    // After a failure, chunks not yet started are not sent at all.
                    if stop.load(Ordering::Relaxed) {
                        return Sent {
                            unsent: chunk.keys(),
                            ..Sent::default()
                        };
                    }
                    let out = self.send(chunk, self.collect_errors).await;
                    if out.error.is_some() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    out
                }
            })
            .buffer_unordered(self.plan.concurrency)
            .collect()
            .await;

        let mut all = Sent {
            skipped,
            ..Sent::default()
        };
        for mut o in outcomes {
            // The first error stopped the upload: that one is reported.
            if all.error.is_some() {
                o.error = None;
            }
            all.absorb(o);
        }
        Ok(all)
    }

    /// Drops from `pending` the records the batch holds already (counted as reconciled and sent); returns how
    /// many it dropped.
    async fn reconcile(&self, pending: &mut P::Chunk, out: &mut Sent<P::Receipt>) -> Result<u64> {
        let present = self.pieces.existing_keys().await?;
        let before = pending.len();
        pending.retain_missing(&present);
        let found = (before - pending.len()) as u64;
        out.reconciled += found;
        self.progress.sent.fetch_add(found, Ordering::Relaxed);
        Ok(found)
    }

    /// Sends one chunk: reconciled after an ambiguous failure, halved when refused and `collect`.
    async fn send(&self, chunk: P::Chunk, collect: bool) -> Sent<P::Receipt> {
        let mut pending = chunk;
        let mut out = Sent::default();
        let mut round = 0u32;
        loop {
            match self.pieces.send(&pending).await {
                Ok(receipt) => {
                    let landed = self.pieces.landed(&receipt, pending.len());
                    self.progress.sent.fetch_add(landed, Ordering::Relaxed);
                    out.receipts.push(receipt);
                    return out;
                }
                Err(e) if e.kind == ErrorKind::InvalidInput && collect && self.plan.bisect => {
                    if self.plan.refusals_may_store && pending.len() > 1 {
                        if let Err(e2) = self.reconcile(&mut pending, &mut out).await {
                            return out.failed(e2, pending);
                        }
                        if pending.is_empty() {
                            return out;
                        }
                    }
                    let part = self.bisect(pending, e).await;
                    out.absorb(part);
                    return out;
                }
                Err(e) if is_ambiguous(&e) => {
                    let Some(retry) = self.plan.reconcile.filter(|r| round < r.max_retries) else {
                        return out.failed(e, pending);
                    };
                    tokio::time::sleep(retry.delay(round, None)).await;
                    round += 1;
                    let before = pending.len();
                    let found = match self.reconcile(&mut pending, &mut out).await {
                        Ok(found) => found,
                        Err(e2) => return out.failed(e2, pending),
                    };
                    log::info!(
                        target: &format!("labelport::vendors::{}", self.plan.vendor),
                        "upload failed ambiguously ({e}); {found} of {before} records were stored, resending the rest"
                    );
                    if pending.is_empty() {
                        return out;
                    }
                }
                Err(e) => return out.failed(e, pending),
            }
        }
    }

    /// Finds the records a refused chunk holds by sending each half on its own until each refusal names one
    /// record; everything else goes through.
    async fn bisect(&self, chunk: P::Chunk, err: Error) -> Sent<P::Receipt> {
        if chunk.len() == 1 {
            let failure = Failure {
                key: chunk.keys().remove(0),
                field: err.field,
                code: err.code,
                message: err.message,
            };
            return Sent {
                failures: vec![failure],
                ..Sent::default()
            };
        }
        let mut out = Sent::default();
        let (first, second) = chunk.halves();
        for half in [first, second] {
            let part = Box::pin(self.send(half, true)).await;
            out.absorb(part);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use parking_lot::Mutex;

    use super::*;

    /// A vendor in memory: an all-or-nothing import that refuses records whose key starts with "bad", and
    /// stores the first chunk it is sent but answers it with a 500 when `lose_first_answer`.
    #[derive(Default)]
    struct Memory {
        held: Mutex<HashMap<String, u32>>,
        lose_first_answer: Mutex<bool>,
        /// A refused chunk keeps the records before its first bad one (not all or nothing).
        stores_before_refusing: bool,
    }

    #[async_trait]
    impl Pieces for Memory {
        type Item = UploadRecord;
        type Chunk = Vec<UploadRecord>;
        type Receipt = usize;

        async fn existing_keys(&self) -> Result<HashSet<String>> {
            Ok(self.held.lock().keys().cloned().collect())
        }
        fn chunks(&self, items: Vec<UploadRecord>) -> Vec<Vec<UploadRecord>> {
            in_chunks(items, 3)
        }
        async fn send(&self, chunk: &Vec<UploadRecord>) -> Result<usize> {
            if let Some(at) = chunk.iter().position(|r| r.key.starts_with("bad")) {
                if self.stores_before_refusing {
                    for r in &chunk[..at] {
                        *self.held.lock().entry(r.key.clone()).or_default() += 1;
                    }
                }
                return Err(Error::invalid(format!("{} is refused", chunk[at].key)).field("f"));
            }
            for r in chunk {
                *self.held.lock().entry(r.key.clone()).or_default() += 1;
            }
            if std::mem::take(&mut *self.lose_first_answer.lock()) {
                let mut e = Error::new(ErrorKind::Vendor, "HTTP 500");
                e.status = Some(500);
                return Err(e);
            }
            Ok(chunk.len())
        }
    }

    fn records(keys: &[&str]) -> Vec<UploadRecord> {
        keys.iter()
            .map(|k| UploadRecord {
                key: k.to_string(),
                data: Default::default(),
            })
            .collect()
    }

    fn plan() -> Plan {
        let retry = RetryPolicy {
            base: Duration::from_millis(1),
            ..RetryPolicy::default()
        };
        Plan::new("memory", 1).reconciling(retry).bisecting()
    }

    async fn run(vendor: &Memory, keys: &[&str], collect_errors: bool) -> (Sent<usize>, u64) {
        run_with(vendor, plan(), keys, collect_errors).await
    }

    async fn run_with(
        vendor: &Memory,
        plan: Plan,
        keys: &[&str],
        collect_errors: bool,
    ) -> (Sent<usize>, u64) {
        let options = UploadOptions {
            collect_errors,
            ..Default::default()
        };
        let progress = UploadProgress::default();
        let sent = Driver::new(vendor, plan, &options, &progress)
            .run(records(keys))
            .await
            .unwrap();
        (sent, progress.sent.load(Ordering::Relaxed))
    }

    #[tokio::test]
    async fn held_keys_are_skipped_and_the_rest_sent_in_chunks() {
        let vendor = Memory::default();
        vendor.held.lock().insert("a".into(), 1);
        let (sent, count) = run(&vendor, &["a", "b", "c", "d", "e", "f", "g"], false).await;
        assert_eq!((sent.skipped, count), (1, 6));
        assert_eq!(sent.receipts, vec![3, 3]);
        assert!(sent.error.is_none() && sent.unsent.is_empty());
        assert!(vendor.held.lock().values().all(|&n| n == 1));
    }

    #[tokio::test]
    async fn a_chunk_stored_though_its_answer_was_lost_is_not_sent_again() {
        let vendor = Memory::default();
        *vendor.lose_first_answer.lock() = true;
        let (sent, count) = run(&vendor, &["a", "b", "c", "d"], false).await;
        assert_eq!((count, sent.reconciled), (4, 3));
        assert!(sent.error.is_none());
        let held = vendor.held.lock();
        assert_eq!(held.len(), 4);
        assert!(held.values().all(|&n| n == 1), "{held:?}");
    }

    #[tokio::test]
    async fn a_refused_chunk_is_halved_until_each_refusal_names_a_record() {
        let vendor = Memory::default();
        let (sent, count) = run(&vendor, &["a", "bad1", "c", "d", "bad2", "f"], true).await;
        let refused: Vec<&str> = sent.failures.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(refused, ["bad1", "bad2"]);
        assert_eq!(sent.failures[0].field.as_deref(), Some("f"));
        assert_eq!(count, 4);
        assert!(sent.error.is_none() && sent.unsent.is_empty());
    }

    #[tokio::test]
    async fn a_refused_chunk_partly_stored_is_halved_without_sending_anything_twice() {
        let vendor = Memory {
            stores_before_refusing: true,
            ..Memory::default()
        };
        let keys = ["a", "b", "bad1", "d", "e", "bad2", "g", "h"];
        let (sent, count) = run_with(&vendor, plan().refusals_may_store(), &keys, true).await;
        let refused: Vec<&str> = sent.failures.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(refused, ["bad1", "bad2"]);
        assert_eq!(count, 6);
        assert!(sent.error.is_none() && sent.unsent.is_empty());
        let held = vendor.held.lock();
        assert_eq!(held.len(), 6);
        assert!(held.values().all(|&n| n == 1), "{held:?}");
    }

    #[tokio::test]
    async fn the_first_error_stops_the_upload_and_says_what_was_not_sent() {
        let vendor = Memory::default();
        vendor.held.lock().insert("a".into(), 1);
        let keys = ["a", "b", "c", "d", "bad", "f", "g", "h", "i"];
        let (sent, count) = run(&vendor, &keys, false).await;
        assert_eq!(count, 3);
        assert_eq!(sent.unsent, ["bad", "f", "g", "h", "i"]);
        let progress = UploadProgress::default();
        progress.sent.store(count, Ordering::Relaxed);
        let e = sent.finish(9, &progress, Wording::stored()).err().unwrap();
        assert_eq!(e.kind, ErrorKind::InvalidInput);
        assert_eq!(
            e.message,
            "bad is refused; 3 of 9 records are in the batch (1 were there already), 5 were not sent: run the \
             same upload again to send the rest (records already in the batch are skipped)"
        );
        let d = e.details.unwrap();
        assert_eq!(
            (d["sent"].as_u64(), d["skipped"].as_u64()),
            (Some(3), Some(1))
        );
        assert_eq!(d["not_sent"].as_u64(), Some(5));
    }
}
