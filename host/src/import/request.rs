//! An `$import` kick-off, parsed and checked once at the HTTP edge into the
//! typed request every later step uses; persisted as the job's request.

use serde::{Deserialize, Serialize};

use crate::fhir::ResourceType;

/// `mode`: how resources are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImportMode {
    /// Create-only bulk load into a server that takes no other writes
    /// meanwhile: REST writes answer 423 Locked until the job ends.
    InitialLoad,
    /// Loads next to live traffic, keeping `meta.versionId` and
    /// `meta.lastUpdated` when present (history in any order).
    #[default]
    IncrementalLoad,
}

/// Where an input file is read from, as the request named it. Kick-off
/// checks it against the configured import sources before a job exists.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourceUrl(pub String);

impl SourceUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One `input` parameter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportInput {
    /// `type`: every line must be of it, when given.
    pub resource_type: Option<ResourceType>,
    pub url: SourceUrl,
    /// `etag`: the source's entity tag the client saw; the job reads the
    /// input only while the source still has it.
    pub etag: Option<String>,
}

/// A checked `$import` kick-off.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRequest {
    /// The kick-off URL as received (for the status response's `request`).
    pub request_url: String,
    pub mode: ImportMode,
    /// The seed document's `allowNegativeVersions` (IncrementalLoad).
    pub allow_negative_versions: bool,
    /// 1..=10,000 inputs, no URL twice.
    pub inputs: Vec<ImportInput>,
    /// Where the per-input error files go when the request names a place
    /// (`errorContainerName` / storage detail); `None` = the configured
    /// default.
    pub error_location: Option<String>,
}
