//! `GET /OperationDefinition/import`: the definition of `$import` the
//! CapabilityStatement points at. No standard defines Azure's operation,
//! so Hearth publishes what it accepts (see `params`).

use axum::extract::State;
use axum::response::Response;
use serde_json::{Value, json};

use crate::api::AppState;
use crate::api::response;

use super::params::MAX_INPUTS;

/// Where the definition is served, under the base URL.
pub const DEFINITION_PATH: &str = "/OperationDefinition/import";

pub async fn handle(State(state): State<AppState>) -> Response {
    response::resource(&definition(&state.base_url))
}

fn definition(base_url: &str) -> Value {
    json!({
        "resourceType": "OperationDefinition",
        "id": "import",
        "url": format!("{base_url}{DEFINITION_PATH}"),
        "name": "Import",
        "title": "Bulk import of FHIR NDJSON files (Azure-style $import)",
        "status": "active",
        "kind": "operation",
        "affectsState": true,
        "code": "import",
        "system": true,
        "type": false,
        "instance": false,
        "description": "Registers an asynchronous import (Prefer: respond-async) of NDJSON files from the configured import sources; poll the Content-Location for its outcome.",
        "parameter": [
            parameter("inputFormat", 1, "1", "string", "application/fhir+ndjson, the only format"),
            parameter("mode", 0, "1", "code", "InitialLoad (create-only, REST writes answer 423 meanwhile) or IncrementalLoad (the default)"),
            parameter("allowNegativeVersions", 0, "1", "boolean", "Only false: true (versions below 1 for lines with lastUpdated and no versionId that fit before version 1) is refused with 400, this server stores no versions below 1"),
            parameter("errorContainerName", 0, "1", "string", "the folder (container) error files go to"),
            {
                "name": "input",
                "use": "in",
                "min": 1,
                "max": MAX_INPUTS.to_string(),
                "documentation": "one NDJSON file; no url twice",
                "part": [
                    parameter("type", 0, "1", "code", "the resource type of every line (not SearchParameter)"),
                    parameter("url", 1, "1", "uri", "the file, under a configured import source"),
                    parameter("etag", 0, "1", "string", "the file's entity tag when registered: the import reads it only while the source still has it"),
                ],
            },
        ],
    })
}

fn parameter(name: &str, min: u32, max: &str, kind: &str, documentation: &str) -> Value {
    json!({
        "name": name,
        "use": "in",
        "min": min,
        "max": max,
        "type": kind,
        "documentation": documentation,
    })
}
