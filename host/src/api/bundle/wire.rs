//! The JSON shape of the Bundles Hearth writes (history, batch-response,
//! transaction-response). Stored resources are embedded byte for byte as
//! [`RawValue`]s: they are never parsed into a tree again.

use axum::http::StatusCode;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::fhir::OperationOutcome;
use crate::store::StoredVersion;

use crate::api::error::ApiError;
use crate::api::headers::etag;
use crate::api::response::status_line;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle<'a> {
    resource_type: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<u64>,
    // FHIR JSON forbids empty arrays.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    link: Vec<Link>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    entry: Vec<Entry<'a>>,
}

impl<'a> Bundle<'a> {
    pub fn new(kind: &'static str, link: Vec<Link>, entry: Vec<Entry<'a>>) -> Self {
        Bundle {
            resource_type: "Bundle",
            kind,
            total: None,
            link,
            entry,
        }
    }

    /// `Bundle.total` (searchsets only).
    pub fn with_total(self, total: Option<u64>) -> Self {
        Bundle { total, ..self }
    }

    pub fn to_vec(&self) -> Result<Vec<u8>, ApiError> {
        serde_json::to_vec(self).map_err(|e| ApiError::internal(format!("writing a Bundle: {e}")))
    }
}

#[derive(Serialize)]
pub struct Link {
    pub relation: &'static str,
    pub url: String,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Entry<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search: Option<Search>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<Request>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<Response>,
}

/// `Bundle.entry.search`
#[derive(Serialize)]
pub struct Search {
    pub mode: &'static str,
}

#[derive(Serialize)]
pub struct Request {
    pub method: &'static str,
    pub url: String,
}

#[derive(Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Response {
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<OperationOutcome>,
}

impl Response {
    /// The status, `etag` and `lastModified` of a version.
    pub fn of_version(status: StatusCode, version: &StoredVersion) -> Self {
        Response {
            status: status_line(status),
            etag: Some(etag(version.meta.version)),
            last_modified: Some(version.meta.last_updated.to_fhir()),
            ..Response::default()
        }
    }

    pub fn of_error(error: &ApiError) -> Self {
        Response {
            status: status_line(error.status()),
            outcome: Some(error.outcome()),
            ..Response::default()
        }
    }
}

/// `{base}/Patient/1`
pub fn full_url(base: &str, version: &StoredVersion) -> String {
    format!("{base}/{}/{}", version.rtype, version.id)
}

/// The stored bytes of a live version, to embed as they are. This checks
/// that they are one JSON value (a linear scan) without building a tree.
pub fn raw(version: &StoredVersion) -> Result<&RawValue, ApiError> {
    serde_json::from_slice(&version.body).map_err(|e| {
        ApiError::internal(format!(
            "stored {}/{} is not JSON: {e}",
            version.rtype, version.id
        ))
    })
}
