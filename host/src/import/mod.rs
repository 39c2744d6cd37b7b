//! `$import`: the request (parsed at the edge) and the job that loads NDJSON
//! inputs into the store.
//!
//! Layout, in the order an import flows through it:
//! - `request`: the typed kick-off the edge persists as the job's request;
//! - `source`: where inputs are read from (allow-listed local files and
//!   HTTP prefixes, each a [`source::SourceKind`]) and their entity tags;
//!   `blob`: the Azure Blob kind, and error files written as blobs;
//! - `checkpoint`: the plan (sizes, tags, byte ranges, line numbering) and
//!   each range's progress; `ranges`: cutting an input into byte ranges and
//!   reading the lines each owns;
//! - `part`: one range's read → check → validate → store loop; `line`:
//!   the checks of one line, the store item it becomes, its error record;
//! - `run`: one attempt (plan, parts in parallel, error files); `result`:
//!   what the status endpoint answers; `error`: why an import stops.
//!
//! Exactly once: each store batch carries its range's progress (see
//! `checkpoint`), so a resumed range starts right after the last batch the
//! store applied. Duplicates are settled by the store in favour of a fixed
//! winner whatever order the parallel ranges write in (see
//! [`crate::store::ImportItem::precedence`]): under `InitialLoad` the line
//! with the highest `meta.versionId`, then the latest `meta.lastUpdated`,
//! then the first (input order, then line); under `IncrementalLoad`, for one
//! id and version, the first line.
//!
//! Cancelling stops every range at its next batch; what was imported stays
//! (the seed document does not roll imports back), as it does when a fatal
//! error (an input gone or changed, a store or plugin failure) fails the job.

pub mod blob;
mod checkpoint;
mod error;
mod error_files;
mod line;
mod part;
mod ranges;
pub mod request;
pub mod result;
mod run;
pub mod source;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use error::ImportError;
pub use request::{ImportInput, ImportMode, ImportRequest, SourceUrl};

use crate::fhir::ResourceType;
use crate::jobs::{JobContext, JobFailure, JobHandler, JobId, JobKind, JobRecord};
use crate::plugins::PluginRegistry;
use crate::store::{ImportSession, Store};
use source::ImportSources;

/// How imports read, check and report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImportConfig {
    /// Local folders `file://` inputs may be in.
    pub sources: Vec<PathBuf>,
    /// `http(s)` URL prefixes inputs may be fetched from; empty: none.
    pub allowed_http: Vec<String>,
    /// Error files go to `<error_dir>/<job id>/` (unless to a blob
    /// container, see [`blob`]).
    pub error_dir: PathBuf,
    /// Blob inputs allowed, the error container, retries of blob calls.
    pub blob: blob::BlobSettings,
    /// Byte ranges processed at once by one import.
    pub parallelism: usize,
    /// Size of a byte range.
    pub range_bytes: u64,
    /// Lines per validator call and store batch.
    pub batch_lines: usize,
    /// Longer lines are rejected unread.
    pub max_line_bytes: usize,
}

impl ImportConfig {
    pub const DEFAULT_PARALLELISM: usize = 2;
    pub const DEFAULT_RANGE_BYTES: u64 = 16 << 20;
    pub const DEFAULT_BATCH_LINES: usize = 1_000;
    pub const DEFAULT_MAX_LINE_BYTES: usize = 64 << 20;

    /// The defaults: inputs from `<data_dir>/import`, error files in
    /// `<data_dir>/import-errors`.
    pub fn for_data_dir(data_dir: &Path) -> Self {
        ImportConfig {
            sources: vec![data_dir.join("import")],
            allowed_http: Vec::new(),
            error_dir: data_dir.join("import-errors"),
            blob: blob::BlobSettings::default(),
            parallelism: Self::DEFAULT_PARALLELISM,
            range_bytes: Self::DEFAULT_RANGE_BYTES,
            batch_lines: Self::DEFAULT_BATCH_LINES,
            max_line_bytes: Self::DEFAULT_MAX_LINE_BYTES,
        }
    }
}

/// The name of the error file of input `input` (0-based) in its job's
/// folder: `<type>-<n>.ndjson`, `n` counting inputs from 1 and the type
/// being the declared one (`Resource` when none), e.g. `Patient-3.ndjson`.
pub fn error_file_name(rtype: Option<ResourceType>, input: usize) -> String {
    let rtype = rtype.map_or("Resource", |t| t.as_str());
    format!("{rtype}-{}.ndjson", input + 1)
}

/// Where error file `name` of import `job` is, if `name` is one this
/// module could have produced (anything else, e.g. with a `/` or `..`, is
/// `None`). The file exists only if the job's result lists it.
pub fn error_file_path(config: &ImportConfig, job: &JobId, name: &str) -> Option<PathBuf> {
    let (rtype, n) = name.strip_suffix(".ndjson")?.rsplit_once('-')?;
    let well_formed = !rtype.is_empty()
        && rtype.bytes().all(|b| b.is_ascii_alphabetic())
        && !n.is_empty()
        && !n.starts_with('0')
        && n.bytes().all(|b| b.is_ascii_digit());
    let job = JobId::parse(job.as_str())?;
    well_formed.then(|| config.error_dir.join(job.as_str()).join(name))
}

/// The store's name for the import run of `job`: stable across attempts and
/// restarts (a 64-bit FNV-1a of the id).
fn session_of(job: &JobId) -> ImportSession {
    let hash = job
        .as_str()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    ImportSession(hash)
}

/// Runs `$import` jobs.
pub struct ImportHandler {
    store: Arc<dyn Store>,
    plugins: Arc<PluginRegistry>,
    sources: Arc<ImportSources>,
    config: Arc<ImportConfig>,
}

impl ImportHandler {
    pub fn new(
        store: Arc<dyn Store>,
        plugins: Arc<PluginRegistry>,
        sources: Arc<ImportSources>,
        config: Arc<ImportConfig>,
    ) -> Self {
        ImportHandler {
            store,
            plugins,
            sources,
            config,
        }
    }
}

impl JobHandler for ImportHandler {
    fn kind(&self) -> JobKind {
        JobKind::Import
    }

    fn run(&self, job: &JobRecord, ctx: &JobContext) -> Result<serde_json::Value, JobFailure> {
        run::run(self, job, ctx).map_err(ImportError::into_failure)
    }
}

#[cfg(test)]
mod tests;
