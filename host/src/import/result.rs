//! A finished import's result: what the job records and the status
//! endpoint answers with (the seed document's completed status body).

use serde::{Deserialize, Serialize};

use crate::fhir::{Instant, ResourceType};

/// The job's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportResult {
    /// When the import started (its first attempt).
    pub transaction_time: Instant,
    /// The kick-off URL.
    pub request: String,
    /// One entry per input, in request order.
    pub output: Vec<ImportOutput>,
    /// One entry per input with rejected lines.
    #[serde(default)]
    pub error: Vec<ImportErrorFile>,
    /// The error container the request named (`None`: the configured
    /// one, or the local error folder; see [`super::blob`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_location: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportOutput {
    /// The input's declared `type` (`None` when it declared none).
    #[serde(rename = "type")]
    pub resource_type: Option<ResourceType>,
    /// Lines imported: non-blank lines minus rejected ones. A soft-deleted
    /// resource counts (it was imported, as a deleted version).
    pub count: u64,
    pub input_url: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportErrorFile {
    /// Always `OperationOutcome`.
    #[serde(rename = "type")]
    pub resource_type: String,
    /// Rejected lines, one OperationOutcome each.
    pub count: u64,
    pub input_url: String,
    /// The file's name in the job's error folder (see
    /// [`super::error_file_path`]), or in its folder of the error container.
    pub file: String,
    /// The blob URL, when the file was written to a blob container (the
    /// status then answers it as `url`); `None`: a local file, served by
    /// the status endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl ImportErrorFile {
    pub const TYPE: &'static str = "OperationOutcome";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_like_the_status_body() {
        let result = ImportResult {
            transaction_time: Instant::parse("2024-05-01T12:00:00Z").unwrap(),
            request: "http://h/$import".into(),
            output: vec![ImportOutput {
                resource_type: ResourceType::parse("Patient"),
                count: 3,
                input_url: "file:///in/p.ndjson".into(),
            }],
            error: vec![ImportErrorFile {
                resource_type: ImportErrorFile::TYPE.into(),
                count: 1,
                input_url: "file:///in/p.ndjson".into(),
                file: "Patient-1.ndjson".into(),
                url: None,
            }],
            error_location: None,
        };
        let json = serde_json::to_value(&result).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "transactionTime": "2024-05-01T12:00:00.000Z",
                "request": "http://h/$import",
                "output": [{"type": "Patient", "count": 3, "inputUrl": "file:///in/p.ndjson"}],
                "error": [{"type": "OperationOutcome", "count": 1, "inputUrl": "file:///in/p.ndjson", "file": "Patient-1.ndjson"}]
            })
        );
        assert_eq!(
            serde_json::from_value::<ImportResult>(json).unwrap(),
            result
        );
    }
}
