//! Vendor adapters: neutral operations onto each vendor's API, one file per vendor. Never imports pyo3 or
//! `sandbox/`: adapters and simulators meet over HTTP only.

pub mod alegion;
pub mod config;
pub mod deepen;
pub mod kit;
pub mod ledgers;
pub mod model;
pub mod playment;
pub mod profile;
pub mod resend;
pub mod sama;
pub mod spec;
pub mod taskmonk;
pub mod upload;
pub mod values;
pub mod wait;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::value::RawValue;
use url::Url;

pub use config::{
    check_options, resolve, resolve_reporting, ClientArgs, ClientConfig, Options, Secret,
    VendorSpec, SPECS,
};
pub use kit::Kit;
pub use model::*;

use crate::engine::http::HttpClient;
pub use crate::engine::stream::PageRange;
use crate::engine::stream::PageStream;
use crate::engine::{Error, Result};

/// What `upload` is asked to do beyond sending the records.
#[derive(Debug, Clone, Default)]
pub struct UploadOptions {
    /// Keep going past rejected records and report them in `JobState::failures`.
    pub collect_errors: bool,
    pub options: Options,
}

/// Counts an upload's progress as it goes, for progress bars and for saying what an interrupted upload sent.
#[derive(Debug, Default)]
pub struct UploadProgress {
    pub sent: std::sync::atomic::AtomicU64,
    pub skipped: std::sync::atomic::AtomicU64,
}

/// How a batch's results split into pages, for readers that each take a range of pages (Spark tasks, Dask
/// partitions): where the vendor gives a total and fetches a page by its number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagePlan {
    /// Finished records when asked.
    pub total: u64,
    /// Records per page.
    pub page_size: u64,
}

impl PagePlan {
    pub fn pages(&self) -> u64 {
        self.total.div_ceil(self.page_size.max(1))
    }
}

/// A `create_batch` call whose options and name `Adapter::create_batch` has checked.
pub struct NewBatch<'a> {
    pub name: &'a str,
    pub exist_ok: bool,
    pub options: &'a Options,
}

/// An `upload` call whose options `Adapter::upload` has checked against the vendor's spec.
pub struct UploadCall<'a> {
    pub batch: &'a BatchInfo,
    pub records: Vec<UploadRecord>,
    pub options: UploadOptions,
    pub progress: Arc<UploadProgress>,
}

/// What `results` reads: a batch's finished records, those completed after `since_us` (exclusive) if given.
#[derive(Clone, Copy)]
pub struct ResultQuery<'a> {
    pub batch_id: &'a str,
    pub since_us: Option<i64>,
    pub include_raw: bool,
}

/// What `records` reads: a batch's records, only those in `statuses` if given.
pub struct RecordQuery<'a> {
    pub batch_id: &'a str,
    pub statuses: Option<Vec<Status>>,
    pub include_raw: bool,
}

/// The neutral operations. Every vendor implements what it can; the rest answers `Unsupported`.
#[async_trait]
pub trait Adapter: Send + Sync {
    /// The adapter's config and HTTP client, from which the accessors below are read.
    fn kit(&self) -> Kit<'_>;
    /// Settings of this client that `capabilities()` shows besides the vendor's spec.
    fn capability_settings(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::Map::new()
    }

    fn vendor(&self) -> &'static str {
        self.kit().cfg.spec.name
    }
    fn project(&self) -> &str {
        &self.kit().cfg.project
    }
    fn base_url(&self) -> &Url {
        &self.kit().cfg.base_url
    }
    fn http(&self) -> &Arc<HttpClient> {
        self.kit().http
    }
    fn capabilities(&self) -> serde_json::Value {
        self.kit().capabilities(self.capability_settings())
    }

    /// Checks what every vendor checks (the options the spec lists, a non-empty name), then asks the vendor.
    async fn create_batch(
        &self,
        name: &str,
        exist_ok: bool,
        options: &Options,
    ) -> Result<BatchInfo> {
        let spec = self.kit().cfg.spec;
        check_options(spec.name, "create_batch", options, spec.batch_options)?;
        if name.trim().is_empty() {
            return Err(Error::invalid("a batch name cannot be empty")
                .vendor(spec.name)
                .operation("create_batch")
                .field("name"));
        }
        self.create_named_batch(NewBatch {
            name,
            exist_ok,
            options,
        })
        .await
    }
    /// The vendor's part of `create_batch`, given a checked call.
    async fn create_named_batch(&self, new: NewBatch<'_>) -> Result<BatchInfo>;
    async fn get_batch(&self, id: &str) -> Result<BatchInfo>;
    async fn list_batches(&self) -> Result<Vec<BatchInfo>>;

    /// Sends records not already in the batch; returns once the vendor has accepted them (or holds its job).
    async fn upload(
        &self,
        batch: &BatchInfo,
        records: Vec<UploadRecord>,
        options: UploadOptions,
        progress: Arc<UploadProgress>,
    ) -> Result<JobState> {
        let spec = self.kit().cfg.spec;
        check_options(spec.name, "upload", &options.options, spec.upload_options)?;
        self.send_records(UploadCall {
            batch,
            records,
            options,
            progress,
        })
        .await
    }
    /// The vendor's part of `upload`, given a call whose options the spec allows.
    async fn send_records(&self, call: UploadCall<'_>) -> Result<JobState>;
    /// The current state of a job this adapter started.
    async fn job_status(&self, job: &JobState) -> Result<JobState> {
        Ok(job.clone())
    }

    async fn batch_status(&self, batch_id: &str) -> Result<BatchCounts>;
    /// Finished records, oldest completion first; `since_us` is an exclusive lower bound on completion time.
    fn results(&self, query: ResultQuery<'_>) -> PageStream<Envelope>;
    /// Finished records delivered to a named consumer since its last read (a per-consumer cursor kept by the
    /// vendor), where the vendor has one.
    fn consumer_results(
        &self,
        _batch_id: &str,
        _consumer: &str,
        _include_raw: bool,
    ) -> Result<PageStream<Envelope>> {
        Err(Error::unsupported(
            self.vendor(),
            "deliver results to a consumer",
            "the vendor's API has no consumer cursors",
        ))
    }
    /// How `results(batch_id, None, ..)` splits into pages; `None` where the vendor cannot say or cannot
    /// fetch a page by number (readers then take the results whole).
    async fn result_pages(&self, _batch_id: &str) -> Result<Option<PagePlan>> {
        Ok(None)
    }
    /// The results on pages `range` of `results(batch_id, None, ..)` (0-based, `stop` exclusive; `stop: None`
    /// runs to the end), in the same order: disjoint ranges read disjoint results.
    fn results_range(
        &self,
        _batch_id: &str,
        _range: PageRange,
        _include_raw: bool,
    ) -> Result<PageStream<Envelope>> {
        Err(Error::unsupported(
            self.vendor(),
            "read results by page range",
            "the vendor's API cannot fetch a page of results by its number",
        ))
    }
    fn records(&self, query: RecordQuery<'_>) -> Result<PageStream<Envelope>>;

    async fn cancel(&self, _batch_id: &str) -> Result<()> {
        Err(Error::unsupported(
            self.vendor(),
            "cancel a batch",
            "the vendor's API has no way to stop work",
        ))
    }
    async fn accept(&self, _batch_id: &str, _ids: Vec<String>) -> Result<()> {
        Err(Error::unsupported(
            self.vendor(),
            "accept results",
            "the vendor's API has no review calls",
        ))
    }
    async fn reject(
        &self,
        _batch_id: &str,
        _ids: Vec<String>,
        _reason: Option<String>,
    ) -> Result<()> {
        Err(Error::unsupported(
            self.vendor(),
            "reject results",
            "the vendor's API has no review calls",
        ))
    }

    /// The vendor's work units behind a batch (Deepen: a dataset's tasks), as the vendor describes them.
    async fn tasks(&self, _batch_id: &str) -> Result<Vec<serde_json::Value>> {
        Err(Error::unsupported(
            self.vendor(),
            "list a batch's tasks",
            "the vendor's API has no task listing labelport reads",
        ))
    }
    /// The tasks assigned to one user of the vendor's tool, identified by `user` (Deepen: an email).
    async fn user_tasks(&self, _user: &str) -> Result<serde_json::Value> {
        Err(Error::unsupported(
            self.vendor(),
            "list a user's tasks",
            "the vendor's API has no per-user task listing",
        ))
    }
    /// Tasks the vendor reports as behind schedule, across the project.
    async fn delayed_tasks(&self) -> Result<Vec<serde_json::Value>> {
        Err(Error::unsupported(
            self.vendor(),
            "list delayed tasks",
            "the vendor's API has no delayed-task listing",
        ))
    }

    /// The URL of `path` for `client.request`: relative to the API root, or absolute on the same host.
    fn api_url(&self, path: &str) -> Result<Url>;
    /// Pages of items of any list endpoint, for `client.request(..., paginate=True)`.
    fn paginate(&self, url: Url) -> PageStream<Box<RawValue>>;
}

/// Builds the adapter for `config.vendor`.
pub fn connect(config: ClientConfig, rt: tokio::runtime::Handle) -> Result<Arc<dyn Adapter>> {
    match config.spec.name {
        "alegion" => Ok(Arc::new(alegion::AlegionAdapter::new(config, rt)?)),
        "taskmonk" => Ok(Arc::new(taskmonk::TaskMonkAdapter::new(config, rt)?)),
        "sama" => Ok(Arc::new(sama::SamaAdapter::new(config, rt)?)),
        "deepen" => Ok(Arc::new(deepen::DeepenAdapter::new(config, rt)?)),
        "playment" => Ok(Arc::new(playment::PlaymentAdapter::new(config, rt)?)),
        other => Err(Error::new(
            crate::engine::ErrorKind::Unsupported,
            format!("vendor {other:?} is not available in this version of labelport yet"),
        )
        .vendor(other)),
    }
}
