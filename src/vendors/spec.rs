//! The fixed facts of each vendor: its credential names, the options it takes, its default host, and what its
//! API can do (`capabilities()`).

use crate::engine::{Error, Result};

/// The fixed facts of a vendor: its credential names, the options it takes, its default host.
#[derive(Debug)]
pub struct VendorSpec {
    pub name: &'static str,
    pub credentials: &'static [&'static str],
    pub default_base_url: &'static str,
    pub client_options: &'static [&'static str],
    pub batch_options: &'static [&'static str],
    pub upload_options: &'static [&'static str],
    /// Without `key=`, the field that keys a record that has it (before the content hash).
    pub default_key: Option<&'static str>,
    /// A field that holds a file: bytes travel as `{"base64": ...}`, paths as strings.
    pub file_field: Option<&'static str>,
    /// The most records one request to the vendor carries (`capabilities()`).
    pub max_records_per_request: usize,
    /// The optional operations and whether the vendor's API has them (`capabilities()`).
    pub operations: &'static [(&'static str, bool)],
    /// The vendor's documented rate limit in requests per second: the pacing of a client of its real host that
    /// gives no `rate_limit=` (`ClientConfig::pacing`).
    pub default_rate_limit: Option<f64>,
    /// The vendor keeps no empty batch: a batch exists once its first upload created it, and before that
    /// `client.batch(id)` is NotFound (docs/contract.md, `batch_before_first_upload`). Tools that upload into a
    /// batch by id (the CLI, the Dask/Spark workers) then attach without reading it (`capabilities()`).
    pub batch_created_by_first_upload: bool,
}

/// What every vendor's API offers beyond the neutral core, and what most lack.
const READ_ONLY: &[(&str, bool)] = &[
    ("records", true),
    ("results_since", true),
    ("cancel", false),
    ("accept", false),
    ("reject", false),
];

pub const SPECS: &[VendorSpec] = &[
    VendorSpec {
        name: "alegion",
        credentials: &["username", "password"],
        default_base_url: "https://app.alegion.com",
        client_options: &[],
        batch_options: &["is_enabled"],
        default_key: None,
        file_field: None,
        max_records_per_request: super::alegion::IMPORT_LIMIT,
        operations: READ_ONLY,
        upload_options: &[],
        default_rate_limit: None,
        batch_created_by_first_upload: false,
    },
    VendorSpec {
        name: "taskmonk",
        credentials: &["client_id", "client_secret"],
        default_base_url: "https://api.taskmonk.io",
        client_options: &[
            "key_column",
            "output_fields",
            "export_format",
            "coerce",
            "stall_timeout",
        ],
        batch_options: &["priority", "comments", "start_time"],
        default_key: None,
        file_field: None,
        max_records_per_request: super::taskmonk::IMPORT_ROWS,
        operations: READ_ONLY,
        upload_options: &["priority"],
        default_rate_limit: None,
        batch_created_by_first_upload: false,
    },
    VendorSpec {
        name: "playment",
        credentials: &["api_key"],
        default_base_url: "https://api.playment.io",
        // A job needs the tag (or v1 work_flow_id) Playment hands out at integration: a client setting,
        // overridable per upload. Batches take only a name and a description.
        client_options: &["tag", "work_flow_id", "priority_weight", "max_concurrency"],
        batch_options: &["description"],
        default_key: None,
        file_field: None,
        max_records_per_request: 1,
        operations: READ_ONLY,
        upload_options: &["priority_weight", "tag", "work_flow_id"],
        // "QPS of 5", the only limit Playment documents (docs/vendors/playment.md, finding 1).
        default_rate_limit: Some(5.0),
        batch_created_by_first_upload: false,
    },
    VendorSpec {
        name: "deepen",
        credentials: &["api_token"],
        default_base_url: "https://tools.deepen.ai",
        client_options: &[],
        batch_options: &["dataset_type", "labelling_profile_id"],
        default_key: Some("name"),
        file_field: Some("file"),
        max_records_per_request: super::deepen::FILES_PER_ZIP,
        operations: &[
            ("records", true),
            ("results_since", true),
            ("cancel", false),
            ("accept", true),
            ("reject", true),
            ("tasks", true),
            ("user_tasks", true),
            ("delayed_tasks", true),
        ],
        upload_options: &[],
        default_rate_limit: None,
        batch_created_by_first_upload: true,
    },
    VendorSpec {
        name: "sama",
        credentials: &["api_key"],
        default_base_url: "https://api.sama.com",
        client_options: &[
            "client_batch_field",
            "key_field",
            "stall_timeout",
            "status_interval",
        ],
        batch_options: &[],
        default_key: None,
        file_field: None,
        max_records_per_request: super::sama::TASKS_PER_JOB,
        operations: &[
            ("records", true),
            ("results_since", true),
            ("results_consumer", true),
            ("cancel", true),
            ("accept", false),
            ("reject", true),
            ("list_batches", false),
        ],
        upload_options: &["priority", "submit"],
        default_rate_limit: None,
        batch_created_by_first_upload: true,
    },
];

pub fn spec(vendor: &str) -> Result<&'static VendorSpec> {
    let wanted = vendor.trim().to_ascii_lowercase();
    SPECS.iter().find(|s| s.name == wanted).ok_or_else(|| {
        let known: Vec<&str> = SPECS.iter().map(|s| s.name).collect();
        Error::invalid(format!(
            "unknown vendor {vendor:?}; labelport knows {}",
            known.join(", ")
        ))
        .field("vendor")
    })
}
