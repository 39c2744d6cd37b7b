//! `$export`: the request (parsed at the edge), the job handler that plans
//! and runs it against store snapshots and plugins, the files it writes, and
//! the manifest the status endpoint answers.
//!
//! Layout, in the order an export flows through it:
//! - `request`: the typed kick-off the edge persists as the job's request;
//! - `plan`: types, patients, compiled `_typeFilter`s, `_elements`, units
//!   (a last one for referenced resources), warnings;
//! - `groups`: Group members through the group-resolver plugin, whose
//!   `fhir-read`/`fhir-search` imports it answers (searches run on the
//!   type-filter plugin), the kick-off's check, members added since `_since`;
//! - `snapshot`: the store as of the transaction time (also the plugin's
//!   `fhir-read`); `patients`: who is exported and under whom a shared
//!   resource goes; `select`: which versions, and deletions as what;
//! - `filter`, `elements`, `deleted`: the type-filter plugin, `_elements`,
//!   the `deleted` Bundles and the soft-delete marker;
//! - `unit`: one unit's scan → batch → filter → render → write loop;
//!   `files`: streams of files through the export-sink plugin to the
//!   destination, rollover and naming;
//! - `checkpoint`: the resume state; `run`: one attempt; `manifest`: the
//!   result and the HL7 manifest; `error`: why an export stops.

mod checkpoint;
mod deleted;
pub mod elements;
mod error;
mod files;
mod filter;
mod groups;
pub mod manifest;
mod patients;
mod plan;
pub mod request;
mod run;
mod select;
mod snapshot;
mod unit;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use deleted::{DELETED_STATE_URL, DELETED_STATE_VALUE};
pub use error::ExportError;
pub use groups::check_group;
pub use manifest::{ExportResult, manifest};
pub use request::{Associated, ExportLevel, ExportRequest, TypeFilter, Warning};

use crate::destinations::{Destination, DestinationKind, Download};
use crate::fhir::Instant;
use crate::fhir::ResourceType;
use crate::jobs::{JobContext, JobFailure, JobHandler, JobKind, JobRecord};
use crate::plugins::PluginRegistry;
use crate::store::Store;

/// How exports write their files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportConfig {
    /// Root of the local destination.
    pub output_dir: PathBuf,
    /// Lines per file before the next one starts (the seed docs' 5,000).
    pub file_max_resources: usize,
    /// Bytes of NDJSON per file before the next one starts (the seed docs'
    /// 64 MB).
    pub file_max_bytes: u64,
    /// Units (types, or patient partitions) one export runs at once.
    pub parallelism: usize,
    /// Lines per `_typeFilter` evaluation and export-sink write.
    pub batch_lines: usize,
    /// Types in no Patient compartment (Practitioner, Organization...) that
    /// Patient/Group exports add when their resources reference them.
    pub include_referenced: Vec<ResourceType>,
}

impl ExportConfig {
    pub const DEFAULT_FILE_MAX_RESOURCES: usize = 5_000;
    pub const DEFAULT_FILE_MAX_BYTES: u64 = 64 * 1024 * 1024;
    pub const DEFAULT_PARALLELISM: usize = 2;
    pub const DEFAULT_BATCH_LINES: usize = 1_000;

    /// The defaults, writing to `<data_dir>/exports`.
    pub fn for_data_dir(data_dir: &Path) -> Self {
        ExportConfig {
            output_dir: data_dir.join("exports"),
            file_max_resources: Self::DEFAULT_FILE_MAX_RESOURCES,
            file_max_bytes: Self::DEFAULT_FILE_MAX_BYTES,
            parallelism: Self::DEFAULT_PARALLELISM,
            batch_lines: Self::DEFAULT_BATCH_LINES,
            include_referenced: Vec::new(),
        }
    }
}

/// Runs `$export` jobs.
pub struct ExportHandler {
    store: Arc<dyn Store>,
    plugins: Arc<PluginRegistry>,
    destination: Arc<dyn Destination>,
    config: ExportConfig,
}

impl ExportHandler {
    pub fn new(
        store: Arc<dyn Store>,
        plugins: Arc<PluginRegistry>,
        destination: Arc<dyn Destination>,
        config: ExportConfig,
    ) -> Self {
        ExportHandler {
            store,
            plugins,
            destination,
            config,
        }
    }

    /// `export.include_referenced`: what a kick-off records in its request.
    pub fn include_referenced(&self) -> &[ResourceType] {
        &self.config.include_referenced
    }

    /// What the destination is (`_container` follows its naming rule).
    pub fn destination_kind(&self) -> DestinationKind {
        self.destination.kind()
    }

    /// The manifest of completed job `job`, and when its file URLs stop
    /// working if the destination signs them. Files are listed at the
    /// destination's own URLs, or under `files_base_url` when this server
    /// serves them.
    pub fn manifest(
        &self,
        job: &JobRecord,
        files_base_url: &str,
    ) -> Result<(serde_json::Value, Option<Instant>), ExportError> {
        let request = request_of(job)?;
        let folder = files::job_folder(job, &request)?;
        let base = files_base_url.trim_end_matches('/');
        let mut urls = HashMap::new();
        let mut expires: Option<Instant> = None;
        for file in ExportResult::of(job).files() {
            let url = match self.destination.direct_url(&folder, &file.file)? {
                Some(direct) => {
                    expires = match (expires, direct.expires) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    direct.url
                }
                None => format!("{base}/{}", file.file),
            };
            urls.insert(file.file.clone(), url);
        }
        let manifest = manifest::manifest(job, |name| {
            urls.get(name)
                .cloned()
                .unwrap_or_else(|| format!("{base}/{name}"))
        });
        Ok((manifest, expires))
    }

    /// Where to get file `name` of export job `job`: `None` unless the
    /// job's result lists it (a completed job) and it still exists.
    pub fn download(&self, job: &JobRecord, name: &str) -> Result<Option<Download>, ExportError> {
        if !ExportResult::of(job).lists(name) {
            return Ok(None);
        }
        let request = request_of(job)?;
        let folder = files::job_folder(job, &request)?;
        Ok(self.destination.locate(&folder, name)?)
    }

    /// Deletes every file of `job` (a completed export the client is done
    /// with, or one past retention).
    pub fn remove_files(&self, job: &JobRecord) -> Result<(), ExportError> {
        let request = request_of(job)?;
        let folder = files::job_folder(job, &request)?;
        Ok(self.destination.remove_folder(&folder)?)
    }
}

fn request_of(job: &JobRecord) -> Result<ExportRequest, ExportError> {
    serde_json::from_value(job.request.clone()).map_err(|e| ExportError::Corrupt {
        what: "request",
        message: e.to_string(),
    })
}

impl JobHandler for ExportHandler {
    fn kind(&self) -> JobKind {
        JobKind::Export
    }

    fn run(&self, job: &JobRecord, ctx: &JobContext) -> Result<serde_json::Value, JobFailure> {
        run::run(self, job, ctx).map_err(ExportError::into_failure)
    }
}
